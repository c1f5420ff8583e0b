"""The PyTorch fixed-point path equals the emulator's fixed-point `steps` mode bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import Network, Population, Projection
from asyncsnn.sim import AsyncSimulator
from asyncsnn.sim import fixed
from asyncsnn.train.export import quantize_network
from helpers import trace_rows
from strategies import contended_networks, fixed_formats, frames, mappings, schedulers, seeds, small_f

CAP = 60


def run_both(net, batch, arithmetic, core_of=None, **kw):
    n_cores = 1 if core_of is None else max(core_of) + 1
    chip = asyncsnn.Chip.preset("ideal", mesh_width=n_cores, arithmetic=arithmetic)
    emu = chip.run(net, batch, mapping=core_of, trace=True, **kw)
    with torch.no_grad():
        sim = AsyncSimulator(net, core_of=core_of)(torch.tensor(batch, dtype=torch.float32), trace=True,
                                                    arithmetic=chip.config["arithmetic"], **kw)
    return chip, emu, sim


def assert_same(emu, sim, batch_size):
    for b in range(batch_size):
        assert [list(x) for x in sim.trace[b]] == trace_rows(emu, b)
    assert sim.out_counts.numpy().tolist() == emu.out_counts.tolist()
    assert sim.synaptic_operations.numpy().astype(int).tolist() == emu.metrics["synaptic_operations"].tolist()
    assert sim.steps.numpy().tolist() == emu.metrics["steps"].tolist()
    assert sim.unreleased.numpy().astype(int).tolist() == emu.metrics["unreleased"].tolist()
    assert sim.v_final.numpy().tolist() == emu.v_final.tolist()
    assert sim.first_spike.tolist() == emu.first_spike.tolist()


@given(data=st.data(), net=contended_networks, arithmetic=fixed_formats(), scheduler=schedulers, F=small_f, seed=seeds,
       input_mode=st.sampled_from(["all_at_once", "scheduled"]))
def test_fixed_point_agrees_with_the_emulator(data, net, arithmetic, scheduler, F, seed, input_mode):
    a = data.draw(frames(net.n_inputs, max_frames=3, max_count=3))
    b = data.draw(frames(net.n_inputs, max_frames=3, max_count=3))
    t = max(len(a), len(b))
    batch = np.stack([np.pad(x, ((0, t - len(x)), (0, 0))) for x in (a, b)])
    _, core_of = data.draw(mappings(net.n_neurons))
    chip, emu, sim = run_both(net, batch, arithmetic, core_of, scheduler=scheduler, F=F, seed=seed,
                              input_mode=input_mode, max_steps=CAP)
    assert_same(emu, sim, len(batch))
    # fixed-point state stays in range
    fx = fixed.FixedPoint.of(chip.config["arithmetic"])
    lo, hi = fx.v_range
    assert (emu.v_final * fx.scale >= lo).all() and (emu.v_final * fx.scale <= hi).all()


def test_saturation_rounding_and_leak_are_exercised():
    """A case built to saturate the potential both ways, round weights at ties and leak
    negative potentials: still identical, and the saturation really happened."""
    arithmetic = {"kind": "fixed", "weight_bits": 5, "potential_bits": 7, "frac_bits": 3, "leak_bits": 3}
    w_in = np.array([[1.9, 0.0625, -3.0], [-3.9, 0.1875, 2.0]], np.float32)  # 0.0625*8 = 0.5: a tie
    w_rec = np.array([[0.0, -2.0], [3.9, 0.0]], np.float32)
    net = Network(3, [Population(2, theta=5.0, beta=0.6, reset="subtract", refractory=False)],
                  [Projection("input", 0, w_in), Projection(0, 0, w_rec)], output=0)
    x = np.zeros((1, 6, 3), np.uint32)
    x[0, :3] = [9, 1, 0]
    x[0, 3:] = [0, 3, 9]
    _, emu, sim = run_both(net, x, arithmetic, scheduler="momentum", F=1, max_steps=CAP)
    assert_same(emu, sim, 1)
    fx = fixed.FixedPoint.of(arithmetic)
    # the weights clip where the emulator says they do (three input weights, one recurrent)
    w_in_q, c_in = fixed.quantize(fx, torch.tensor(w_in))
    w_rec_q, c_rec = fixed.quantize(fx, torch.tensor(w_rec))
    assert c_in + c_rec == asyncsnn.Chip.preset("ideal", arithmetic=arithmetic).place(net).native.clipped_weights == 4
    assert w_in_q[0, 1] == 1  # the tie rounds away from zero
    lo, hi = fx.v_range
    # at least one potential hit a bound in some frame: rerun frame by frame
    hit = False
    for t in range(1, 7):
        _, e, s = run_both(net, x[:, :t], arithmetic, scheduler="momentum", F=1, max_steps=CAP)
        assert s.v_final.numpy().tolist() == e.v_final.tolist()
        raw = e.v_final[0] * fx.scale
        hit |= bool((raw == lo).any() or (raw == hi).any())
    assert hit


def test_rounding_is_half_away_from_zero_and_leak_floors():
    fx = fixed.FixedPoint.of({"kind": "fixed", "weight_bits": 8, "potential_bits": 48, "frac_bits": 1,
                              "leak_bits": 24})
    q, clipped = fixed.quantize(fx, torch.tensor([0.25, -0.25, 0.75, -0.75, 100.0, -100.0]))
    assert q.tolist() == [1, -1, 2, -2, 127, -128] and clipped == 2
    # leak of the widest potentials with the widest leak factor, against Python's exact integers
    rng = np.random.default_rng(0)
    v = [int(x) for x in rng.integers(-(2**47), 2**47 - 1, size=200)] + [-(2**47), 2**47 - 1, -1, 1, 0]
    for beta in (0.0, 0.3, 0.5, 0.999, 1.0):
        bq = int(fixed.leak_factor(fx, torch.tensor([beta]))[0])
        got = fixed.leak(fx, torch.tensor(v), torch.tensor(bq)).tolist()
        assert got == [max(-(2**47), min(2**47 - 1, (x * bq) >> 24)) for x in v]


def test_quantize_network_uses_the_chip_rounding():
    arithmetic = {"kind": "fixed", "weight_bits": 4, "potential_bits": 12, "frac_bits": 2, "leak_bits": 8}
    w = np.array([[0.125, -0.125, 0.375, 5.0]], np.float32)  # ties at 0.5 and 1.5 steps, one clip
    net = Network(4, [Population(1)], [Projection("input", 0, w)], output=0)
    q = quantize_network(net, arithmetic)
    assert q.projections[0].weights.tolist() == [[0.25, -0.25, 0.5, 1.75]]


@pytest.mark.parametrize("arithmetic, field", [
    ({"kind": "fixed", "weight_bits": 40, "potential_bits": 48, "frac_bits": 4, "leak_bits": 8}, "weight_bits"),
    ({"kind": "fixed", "weight_bits": 8, "potential_bits": 6, "frac_bits": 4, "leak_bits": 8}, "weight_bits"),
    ({"kind": "fixed", "weight_bits": 8, "potential_bits": 16, "frac_bits": 16, "leak_bits": 8}, "frac_bits"),
    ({"kind": "fixed", "weight_bits": 8, "potential_bits": 16, "frac_bits": 4, "leak_bits": 0}, "leak_bits"),
    ({"kind": "fixed", "weight_bits": 8, "potential_bits": 16, "frac_bits": 4}, "leak_bits"),
    ({"kind": "fixed", "weight_bits": 8, "potential_bits": 6, "frac_bits": 0, "leak_bits": 4}, "weight_bits"),
    ({"kind": "fixed", "weight_bits": 4, "potential_bits": 4, "frac_bits": 3, "leak_bits": 4}, "theta"),
    ("float64", "arithmetic"),
])
def test_bad_fixed_point_formats(arithmetic, field):
    net = Network(2, [Population(2, theta=1.5)], [Projection("input", 0, np.ones((2, 2), np.float32))], output=0)
    with pytest.raises(ValueError, match=field):
        AsyncSimulator(net)(torch.ones(1, 1, 2), arithmetic=arithmetic)
    with pytest.raises(ValueError, match="whole event counts"):
        AsyncSimulator(net)(torch.full((1, 1, 2), 0.5), arithmetic={"kind": "fixed", "weight_bits": 8,
                                                                   "potential_bits": 16, "frac_bits": 4,
                                                                   "leak_bits": 8})


def test_side_by_side_on_a_fixed_point_chip_agrees_in_steps_mode():
    from asyncsnn.generate import random_feedforward
    from asyncsnn.train.export import run_side_by_side

    net = random_feedforward([12, 10, 8, 3], seed=4, gain=2.5)
    x = np.random.default_rng(4).poisson(0.6, (24, 5, 12)).astype(np.float32)
    y = np.arange(24) % 3
    chip = asyncsnn.Chip.preset("edge", mesh_width=3, core_neurons=8)
    assert chip.config["arithmetic"]["kind"] == "fixed"
    sbs = run_side_by_side(net, x, y, chip=chip, scheduler="momentum", F=1, modes=("steps",))
    assert sbs.steps_agree() is True
    assert sbs.sim_out_counts.sum() > 0
    # the float path would not agree on this chip: the fixed arithmetic really matters here
    with torch.no_grad():
        r = AsyncSimulator(net)(torch.tensor(x), scheduler="momentum", F=1)
    assert not np.array_equal(r.out_counts.numpy().astype(np.uint32), sbs.runs["steps"].out_counts)
