"""The emulator's arbitration queue as a hypothesis state machine (through the Python API).

Random sequences of pushes (neurons firing with an overshoot, input events), step and frame
advances and releases of any group with any scheduler and ``F``. After every release:

* what comes out was pending, with its whole count, and is no longer pending; nothing else
  changes (nothing lost, nothing released twice; pushed = released + pending throughout);
* at most ``F`` per group, and exactly ``min(F, pending)``: a queue never idles with work;
* ``fifo``: nothing released became pending after something that stays;
* ``momentum``: nothing stays with a larger overshoot than something released;
* ``layered``: nothing stays from an earlier population than something released;
* ``random`` (and every tie): the order is the counter-based hash alone, computed here by
  :mod:`asyncsnn.hashing` on numpy arrays (its golden vectors are checked in ``test_golden.py``);
* a twin queue that received the same pushes in another memory order releases the same;
* the PyTorch simulator's selection (:func:`asyncsnn.sim.functional.select_neurons`,
  ``select_inputs``) releases the same sources from the same state.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import asyncsnn
from asyncsnn import Network, Population, Projection, SpikeQueue, hashing
from asyncsnn.sim import AsyncSimulator
from asyncsnn.sim import functional as fn

OVERSHOOTS = st.integers(0, 40).map(lambda k: k / 16)  # exact in float32: PyTorch orders float32


class QueueMachine(RuleBasedStateMachine):
    @initialize(n_in=st.integers(0, 4), sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3),
                n_cores=st.integers(1, 3), data=st.data(), seed=st.integers(0, 2**32 - 1),
                sample=st.integers(0, 1000))
    def setup(self, n_in, sizes, n_cores, data, seed, sample):
        n = sum(sizes)
        self.core = data.draw(st.lists(st.integers(0, n_cores - 1), min_size=n, max_size=n))
        self.pop = [i for i, s in enumerate(sizes) for _ in range(s)]
        self.n_in, self.n, self.n_cores = n_in, n, n_cores
        # inputs form their own group after the cores: the input port of `scheduled` mode
        self.group_of = [n_cores] * n_in + self.core
        self.seed, self.sample = seed, sample
        self.q = SpikeQueue(n_in, self.group_of, self.pop, seed=seed, sample=sample)
        self.twin = SpikeQueue(n_in, self.group_of, self.pop, seed=seed, sample=sample)
        self.count = [0] * (n_in + n)
        self.since = [0] * (n_in + n)
        self.over = [0.0] * (n_in + n)
        self.pushed = self.released = 0
        self.frame = self.step = 0
        self.buffer: dict[int, list] = {}  # pushes not yet given to the twin: source -> [count, overshoot]
        # the PyTorch side: a network with these populations, mapped to these cores
        pops = [Population(s, name=f"p{i}") for i, s in enumerate(sizes)]
        net = Network(max(n_in, 1), pops, [Projection("input", 0, np.ones((sizes[0], max(n_in, 1)), np.float32))],
                      output=len(sizes) - 1)
        self.params = AsyncSimulator(net, core_of=self.core).params()._replace(n_inputs=n_in)

    # ------------------------------------------------------------------ rules
    @rule(data=st.data(), n_pushes=st.integers(1, 5))
    def fire(self, data, n_pushes):
        """A fire phase: several sources become (more) pending at this step."""
        for _ in range(n_pushes):
            self.push(data.draw(st.integers(0, self.n_in + self.n - 1), label="source"),
                      data.draw(st.integers(1, 3), label="count"), data.draw(OVERSHOOTS, label="overshoot"))

    def push(self, s, count, overshoot):
        over = None if s < self.n_in else overshoot
        self.q.push(s, count, self.frame, self.step, over)
        if self.count[s] == 0:
            self.since[s] = (self.frame << 32) | self.step
        self.count[s] += count
        if over is not None:
            self.over[s] = over
        b = self.buffer.setdefault(s, [0, None])
        b[0] += count
        b[1] = over if over is not None else b[1]
        self.pushed += count

    def _flush_twin(self):
        """The twin gets this step's pushes merged per source, in descending source order."""
        for s in sorted(self.buffer, reverse=True):
            c, over = self.buffer[s]
            self.twin.push(s, c, self.frame, self.step, over)
        self.buffer = {}

    @rule()
    def next_step(self):
        self._flush_twin()
        self.step += 1

    @rule()
    def next_frame(self):
        self._flush_twin()
        self.frame += 1
        self.step = 0

    def _expected_order(self, group: int, scheduler: str) -> list[int]:
        members = [s for s, g in enumerate(self.group_of) if g == group and self.count[s] > 0]
        keys = hashing.key(self.seed, self.sample, self.frame, self.step, members).tolist()
        key = dict(zip(members, keys))

        def primary(s):
            if scheduler == "fifo":
                return self.since[s]
            if scheduler == "momentum":
                return 0 if s < self.n_in else -self.over[s]
            if scheduler == "layered":
                return 0 if s < self.n_in else self.pop[s - self.n_in] + 1
            return 0

        return sorted(members, key=lambda s: (primary(s), key[s], s))

    def _torch_release(self, group: int, scheduler: str, f):
        m = self.n_in
        t = lambda x, dt: torch.tensor([x], dtype=dt)  # noqa: E731
        state = fn.State(
            v=torch.zeros(1, self.n), p=t(self.count[m:], torch.float32), since=t(self.since[m:], torch.int64),
            over=t(self.over[m:], torch.float32), refr=torch.zeros(1, self.n, dtype=torch.bool),
            p_in=t(self.count[:m], torch.float32) if m else torch.zeros(1, 0), since_in=t(self.since[:m], torch.int64)
            if m else torch.zeros(1, 0, dtype=torch.int64))
        prefix = hashing.frame_prefix(self.seed, torch.tensor([self.sample]), self.frame)
        keys = fn.step_keys(prefix, torch.tensor([self.step]))[:, 0]
        # both orders of fifo: 64-bit `since` (two sorts) and packed into 32 bits (one sort)
        if group == self.n_cores:
            rels = [fn.select_inputs(state, scheduler, f, fn.source_keys(keys, torch.arange(m)), bits)[0]
                    for bits in (0, 16)]
            assert torch.equal(*rels)
            return sorted(int(i) for i in rels[0].nonzero()[:, 0])
        src = fn.source_keys(keys, self.params.slot_neuron + m)
        rels = [fn.select_neurons(state, self.params, scheduler, f, src, bits)[0] for bits in (0, 16)]
        assert torch.equal(*rels)
        rel = rels[0]
        return sorted(m + int(i) for i in rel.nonzero()[:, 0] if self.core[int(i)] == group)

    @rule(data=st.data(), f=st.one_of(st.integers(1, 2), st.none(), st.integers(3, 4)),
          scheduler=st.sampled_from(list(asyncsnn.SCHEDULERS)))
    def release(self, data, f, scheduler):
        self._flush_twin()
        group = data.draw(st.integers(0, self.q.n_groups - 1), label="group")
        order = self._expected_order(group, scheduler)
        torch_rel = self._torch_release(group, scheduler, f)
        got = self.q.release(group, f, scheduler, self.frame, self.step)
        twin = self.twin.release(group, f, scheduler, self.frame, self.step)
        out = [s for s, _ in got]
        stay = [s for s in order if s not in out]
        # nothing released that was not pending, each with its whole count
        assert all(c == self.count[s] and c > 0 for s, c in got)
        # at most F, and never idle while work waits
        assert len(got) == (len(order) if f is None else min(f, len(order)))
        if scheduler == "fifo":
            assert not out or not stay or max(self.since[s] for s in out) <= min(self.since[s] for s in stay)
        if scheduler == "momentum" and group < self.n_cores:
            assert not out or not stay or min(self.over[s] for s in out) >= max(self.over[s] for s in stay)
        if scheduler == "layered" and group < self.n_cores:
            pop = lambda s: self.pop[s - self.n_in]  # noqa: E731
            assert not out or not stay or max(pop(s) for s in out) <= min(pop(s) for s in stay)
        # the order is the documented one, ties and `random` by the hash alone
        assert out == sorted(order[:len(out)])
        assert twin == got, "the release depends on the order in which sources were pushed"
        assert torch_rel == out, "the PyTorch simulator selects differently"
        for s, c in got:
            self.count[s] = 0
            self.released += c

    # ------------------------------------------------------------------ invariants
    @invariant()
    def counts_match_and_nothing_is_lost(self):
        if not hasattr(self, "q"):
            return
        assert self.q.counts() == self.count
        assert self.pushed == self.released + sum(self.count)
        for g in range(self.q.n_groups):
            assert self.q.group_len(g) == sum(1 for s, gg in enumerate(self.group_of) if gg == g and self.count[s])

    @precondition(lambda self: hasattr(self, "q"))
    @rule(data=st.data())
    def bad_arguments_raise(self, data):
        """Out-of-range sources, groups, counts, F and schedulers raise InputError and change nothing."""
        import pytest

        before = self.q.counts()
        n_src = self.n_in + self.n
        for call, field in ((lambda: self.q.push(n_src + data.draw(st.integers(0, 5))), "source"),
                            (lambda: self.q.push(0, 0), "count"),
                            (lambda: self.q.release(self.q.n_groups + 1, 1, "fifo"), "group"),
                            (lambda: self.q.release(0, 0, "fifo"), "F"),
                            (lambda: self.q.release(0, 1, "lifo"), "scheduler")):
            with pytest.raises(asyncsnn.InputError, match=field):
                call()
        assert self.q.counts() == before


TestQueue = QueueMachine.TestCase
