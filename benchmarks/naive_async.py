"""The straightforward per-step dense implementation of the asynchronous execution model: the
benchmark baseline for the PyTorch simulator (the approach of the reference work).

At every forward step it sorts *all* sources (inputs and neurons) with four stable sorts, applies
the whole dense weight matrix ``W[target, source]`` (inputs included), and asks the device
whether anything is still pending (one host synchronisation per step). It computes the same
spikes as :class:`asyncsnn.sim.AsyncSimulator` (checked by the benchmark before timing).
This was the project's first simulator; it is kept here, outside the package, as the baseline.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch

from asyncsnn.network import Network
from asyncsnn import hashing
from asyncsnn.options import RunOptions
from asyncsnn.sim.functional import spike



class Params(NamedTuple):
    """Per-neuron parameters and the network's wiring, as tensors."""

    theta: torch.Tensor       # (N,) float
    beta: torch.Tensor        # (N,) float
    subtract: torch.Tensor    # (N,) bool
    refractory: torch.Tensor  # (N,) bool
    has_out: torch.Tensor     # (N,) bool: the neuron queues its spikes
    group: torch.Tensor       # (S,) int64: core of each source; inputs in group n_cores
    layer: torch.Tensor       # (S,) int64: 0 for inputs, population index + 1 for neurons
    n_inputs: int
    n_cores: int


class State(NamedTuple):
    """State of a batch: potentials, pending counts, pending since, overshoot, refractory."""

    v: torch.Tensor       # (B, N)
    p: torch.Tensor       # (B, S) float counts (carry gradients of spikes)
    since: torch.Tensor   # (B, S) int64: (frame << 32) | step
    over: torch.Tensor    # (B, S) float: overshoot of the most recent firing
    refr: torch.Tensor    # (B, N) bool


def initial_state(batch: int, params: Params, dtype=torch.float32, device=None) -> State:
    n = params.theta.shape[0]
    s = params.group.shape[0]
    return State(
        v=torch.zeros(batch, n, dtype=dtype, device=device),
        p=torch.zeros(batch, s, dtype=dtype, device=device),
        since=torch.zeros(batch, s, dtype=torch.int64, device=device),
        over=torch.zeros(batch, s, dtype=dtype, device=device),
        refr=torch.zeros(batch, n, dtype=torch.bool, device=device),
    )


def _ordered(x: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 with the same order."""
    b = x.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    return torch.where(b < 0, b ^ 0x7FFFFFFF, b)


def select(
    state: State,
    params: Params,
    scheduler: str,
    f_limit: torch.Tensor,
    seed: int,
    sample: torch.Tensor,
    frame: int,
    step: torch.Tensor,
) -> torch.Tensor:
    """Which pending sources each group releases at this step: a bool ``(B, S)``.

    ``f_limit`` is the release limit per group ``(n_groups,)``. Order inside a group: the
    scheduler's primary key, then the hash key, then the source index (a stable lexicographic
    sort, least significant key first)."""
    pending = state.p.detach() > 0
    bsz, s = pending.shape
    src = torch.arange(s, device=pending.device)
    key = hashing.key(seed, sample[:, None], frame, step[:, None], src[None, :])
    m = params.n_inputs
    if scheduler == "fifo":
        primary = state.since
    elif scheduler == "random":
        primary = torch.zeros_like(key)
    elif scheduler == "momentum":
        primary = torch.where(src[None, :] >= m, -_ordered(state.over.detach()), torch.zeros_like(key))
    elif scheduler == "layered":
        primary = params.layer[None, :].expand(bsz, s)
    else:
        raise ValueError(f"scheduler: {scheduler!r}; allowed: fifo, random, momentum, layered")
    group = params.group[None, :].expand(bsz, s)
    idx = src[None, :].expand(bsz, s)
    for k in (key, primary, group, (~pending).to(torch.int64)):
        _, order = k.gather(1, idx).sort(dim=1, stable=True)
        idx = idx.gather(1, order)
    g_sorted = group.gather(1, idx)
    pos = torch.arange(s, device=pending.device)[None, :].expand(bsz, s)
    new = torch.ones_like(g_sorted, dtype=torch.bool)
    new[:, 1:] = g_sorted[:, 1:] != g_sorted[:, :-1]
    start = torch.where(new, pos, torch.zeros_like(pos)).cummax(dim=1).values
    rank = pos - start
    take = pending.gather(1, idx) & (rank < f_limit[g_sorted])
    released = torch.zeros_like(pending)
    return released.scatter(1, idx, take)


class StepOut(NamedTuple):
    state: State
    spikes: torch.Tensor    # (B, N) float, surrogate-differentiable
    released: torch.Tensor  # (B, S) bool
    synops: torch.Tensor    # (B,) float


def step(
    state: State,
    params: Params,
    weight: torch.Tensor,
    fanout: torch.Tensor,
    released: torch.Tensor,
    active: torch.Tensor,
    since_now: torch.Tensor,
    surrogate: str = "fast_sigmoid",
    slope: float = 10.0,
) -> StepOut:
    """Deliver the released sources and fire (one forward step for the ``active`` samples).

    ``weight`` is ``W[target, source]`` ``(N, S)``; ``fanout[s]`` the number of non-zero
    weights of source ``s``; ``since_now`` ``(B,)`` is ``(frame << 32) | step``."""
    m = params.n_inputs
    rel = released & active[:, None]
    relf = rel.to(state.p.dtype)
    counts = state.p * relf
    current = counts @ weight.t()
    synops = relf @ fanout
    p = state.p * (1 - relf)
    act = active[:, None]
    v = torch.where(state.refr | ~act, state.v, state.v + current)
    over = v - params.theta
    s = spike(over, surrogate, slope) * (~state.refr & act).to(v.dtype)
    fired = s.detach() > 0
    v = torch.where(params.subtract, v - s * params.theta, v * (1 - s))
    refr = state.refr | (fired & params.refractory)
    queue = fired & params.has_out
    newly = queue & (p[:, m:].detach() == 0)
    since = state.since.clone()
    since[:, m:] = torch.where(newly, since_now[:, None], state.since[:, m:])
    p_neurons = p[:, m:] + s * params.has_out.to(s.dtype)
    p = torch.cat([p[:, :m], p_neurons], dim=1)
    over_all = state.over.clone()
    over_all[:, m:] = torch.where(fired, over.detach(), state.over[:, m:])
    return StepOut(State(v, p, since, over_all, refr), s, rel, synops)


class NaiveAsyncSimulator(torch.nn.Module):
    """A network ready to run in PyTorch (CPU or GPU)."""

    def __init__(self, network: Network, core_of: Optional[Sequence[int]] = None, *,
                 surrogate: str = "fast_sigmoid", slope: float = 10.0) -> None:
        super().__init__()
        w = network.dense_weights()  # validates the network
        m, n = network.n_inputs, network.n_neurons
        pops = network.populations
        mask = np.zeros_like(w, dtype=bool)
        starts = network.population_starts
        for e in network.endpoints():
            s0 = 0 if e.source is None else m + e.source_start
            mask[e.target_start:e.target_start + e.target_size, s0:s0 + e.source_size] = True
        if core_of is None:
            core = np.zeros(n, np.int64)
        else:
            core = np.asarray(core_of, np.int64)
            if core.shape != (n,) or (core < 0).any():
                raise ValueError(f"core_of: expected {n} non-negative core indices, got shape {core.shape}")
        n_cores = int(core.max()) + 1 if n else 1
        self.weight = torch.nn.Parameter(torch.tensor(w))
        self.register_buffer("mask", torch.tensor(mask))
        arr = network.neuron_arrays()
        self.register_buffer("theta", torch.tensor(arr.theta))
        self.register_buffer("beta", torch.tensor(arr.beta))
        self.register_buffer("subtract", torch.tensor(arr.subtract))
        self.register_buffer("refractory", torch.tensor(arr.refractory))
        self.register_buffer("has_out", torch.tensor(arr.has_out))
        self.register_buffer("group", torch.tensor(np.concatenate([np.full(m, n_cores), core])))
        layer = np.concatenate([np.zeros(m, np.int64), arr.population + 1])
        self.register_buffer("layer", torch.tensor(layer))
        o = network.output_index
        self.out_slice = slice(starts[o], starts[o] + pops[o].size)
        self.n_inputs, self.n_neurons, self.n_cores = m, n, n_cores
        self.surrogate, self.slope = surrogate, slope

    def params(self) -> Params:
        return Params(self.theta, self.beta, self.subtract, self.refractory, self.has_out, self.group,
                         self.layer, self.n_inputs, self.n_cores)

    def forward(self, frames: torch.Tensor, options: Optional[RunOptions] = None, **run_options) -> dict:
        """Run input frames ``(B, T, n_inputs)`` of event counts with ``options`` (or keywords;
        ``steps`` mode, no runaway check)."""
        opts = RunOptions.of(options, **run_options)
        scheduler, F, seed, max_steps, trace = opts.scheduler, opts.F, opts.seed, opts.max_steps, opts.trace
        if frames.ndim != 3 or frames.shape[2] != self.n_inputs:
            raise ValueError(f"frames: expected (batch, frames, {self.n_inputs}), got {tuple(frames.shape)}")
        dev, dtype = self.weight.device, self.weight.dtype
        frames = frames.to(device=dev, dtype=dtype)
        bsz, t_frames, m = frames.shape
        params = self.params()
        weight = self.weight * self.mask
        fanout = (weight.detach() != 0).sum(dim=0).to(dtype)
        big = torch.iinfo(torch.int64).max // 4
        f_limit = torch.full((self.n_cores + 1,), big if F is None else int(F), dtype=torch.int64, device=dev)
        if opts.input_mode == "all_at_once":
            f_limit[self.n_cores] = big
        cap = big if max_steps is None else int(max_steps)
        state = initial_state(bsz, params, dtype, dev)
        sample = torch.arange(bsz, device=dev, dtype=torch.int64) + opts.sample_offset
        out_counts, spike_counts = [], torch.zeros(bsz, self.n_neurons, dtype=dtype, device=dev)
        synops = torch.zeros(bsz, dtype=dtype, device=dev)
        steps = torch.zeros(bsz, dtype=torch.int64, device=dev)
        first_out = torch.full((bsz, 2), -1, dtype=torch.int64, device=dev)
        traces: Optional[list] = [[] for _ in range(bsz)] if trace else None
        for f in range(t_frames):
            x = frames[:, f]
            v = state.v * params.beta
            p_in = state.p[:, :m]
            newly = (x > 0) & (p_in.detach() == 0)
            since = state.since.clone()
            since[:, :m] = torch.where(newly, torch.full_like(since[:, :m], f << 32), since[:, :m])
            p = torch.cat([p_in + x, state.p[:, m:]], dim=1)
            state = State(v, p, since, state.over, torch.zeros_like(state.refr))
            k = torch.zeros(bsz, dtype=torch.int64, device=dev)
            frame_out = torch.zeros(bsz, self.out_slice.stop - self.out_slice.start, dtype=dtype, device=dev)
            active = (state.p.detach() > 0).any(dim=1) & (k < cap)
            while bool(active.any()):
                released = select(state, params, scheduler, f_limit, seed, sample, f, k)
                since_now = (f << 32) | k
                res = step(state, params, weight, fanout, released, active, since_now, self.surrogate,
                              self.slope)
                state = res.state
                synops = synops + res.synops
                spike_counts = spike_counts + res.spikes
                out_spk = res.spikes[:, self.out_slice]
                frame_out = frame_out + out_spk
                fired_out = (out_spk.detach() > 0).any(dim=1) & (first_out[:, 0] < 0)
                first_out = torch.where(fired_out[:, None], torch.stack([torch.full_like(k, f), k], 1), first_out)
                if traces is not None:
                    for b, n in (res.spikes.detach() > 0).nonzero().tolist():
                        traces[b].append((f, int(k[b]), n))
                k = k + active.to(torch.int64)
                steps = steps + active.to(torch.int64)
                active = (state.p.detach() > 0).any(dim=1) & (k < cap)
            out_counts.append(frame_out)
        return dict(out_counts=torch.stack(out_counts, dim=1), spike_counts=spike_counts, synops=synops, steps=steps)
