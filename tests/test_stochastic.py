"""Stochastic and integrator neurons (the chip form of SPSN neurons): the shared firing table,
the draw rule of the execution model, agreement of emulator, numpy reference and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import Network, Population, Projection, hashing, reference, stochastic
from asyncsnn.spsn import deploy
from asyncsnn.spsn import functional as F
from asyncsnn.spsn.model import SeqNet
from helpers import trace_rows
from strategies import (f_values, fixed_formats, frames, mappings, mixed_networks, schedulers, seeds,
                        stochastic_networks)

CAP = 60


def test_firing_table_is_the_same_in_python_and_rust_and_is_a_sigmoid():
    t = stochastic.thresholds()
    assert np.array_equal(t, asyncsnn._native.stochastic_thresholds())
    assert t.shape == (8193,) and (np.diff(t.astype(np.int64)) >= 0).all() and t[4096] == 2**31
    z = np.arange(-4096, 4097) / 256
    assert np.abs(t / 2**32 - 1 / (1 + np.exp(-z))).max() < 1e-9
    # index: floor on the 1/256 grid, clamped; fixed point shifts the raw value to 8 bits
    assert stochastic.index_f32([0.0, 1 / 256, -1e-7, 100.0, -np.inf]).tolist() == [0, 1, -1, 4096, -4096]
    assert stochastic.index_fixed([3, -3, 1 << 20], frac_bits=6).tolist() == [12, -12, 4096]
    assert stochastic.index_fixed([1024, -1], frac_bits=10).tolist() == [256, -1]
    assert F.table_index(torch.tensor([0.0, 1 / 256, -1e-7, 100.0])).tolist() == [0, 1, -1, 4096]


def _chain(alpha=0.5, beta=0.5) -> Network:
    pops = [Population(1, theta=0.5, beta=beta, kind="stochastic", alpha=alpha, name="A"),
            Population(1, theta=0.5, beta=beta, kind="stochastic", alpha=alpha, name="B"),
            Population(1, theta=1.0, beta=beta, kind="integrator", alpha=alpha, name="C")]
    projs = [Projection("input", "A", np.array([[64.0]], np.float32)),
             Projection("A", "B", np.array([[64.0]], np.float32)),
             Projection("B", "C", np.array([[1.0]], np.float32))]
    return Network(1, pops, projs, output="C")


@pytest.mark.parametrize("mode", ["steps", "events"])
def test_hand_computed_chain(mode):
    """input -> A -> B (stochastic, far above threshold: they fire) -> C (integrator).
    Frame 0: the input is released at step 0, A draws when that settles (step 1), its spike is
    released at step 2, B draws at 3, released at 4, C draws at 5. Frame 1 has no input: A draws
    at once (step 0) on its decayed trace. C: frame 0 v = 1; frame 1 i = 0.5 + 1, v = 0.5 + 1.5."""
    net, seed = _chain(), 0
    for frame in range(2):  # the draws are below the top threshold: the spikes are certain
        keys = hashing.key(seed, 0, frame, hashing.DRAW_STEP, np.array([1, 2]))
        assert (keys < stochastic.thresholds()[-1]).all()
    x = np.array([[[1], [0]]], np.uint32)
    r = asyncsnn.Chip.preset("ideal").run(net, x, mode=mode, seed=seed, trace=True)
    assert trace_rows(r) == [[0, 1, 0], [0, 3, 1], [1, 0, 0], [1, 2, 1]]
    assert r.out_potential[0, :, 0].tolist() == [1.0, 2.0]
    assert int(r.metrics["steps"][0]) == 6 + 5
    assert r.readout == "potential" and r.predictions().tolist() == [0]
    ref = reference.simulate(net, x[0], seed=seed)
    assert [list(t) for t in ref["trace"]] == trace_rows(r) and ref["steps"] == 11


def test_firing_rate_is_the_sigmoid_of_the_potential_and_each_draw_is_the_documented_one():
    """64 stochastic neurons driven to constant potentials off the table's grid, 4 000 samples:
    every draw is ``key < T[floor((v - theta) 256)]`` (checked draw by draw against the numpy
    rule), and the rates are sigmoid(v - theta)."""
    z = np.linspace(-4.0, 4.0, 64).astype(np.float32)
    net = Network(1, [Population(64, theta=1.0, beta=0.0, kind="stochastic", alpha=0.0)],
                  [Projection("input", 0, (z + np.float32(1.0))[:, None])])
    n = 4000
    r = asyncsnn.Chip.preset("ideal").run(net, np.ones((n, 1, 1), np.uint32), seed=9)
    got = r.out_counts[:, 0].astype(bool)
    v = (z + np.float32(1.0)).astype(np.float32)
    index = stochastic.index_f32(v - np.float32(1.0))
    want = np.stack([stochastic.fires(hashing.key(9, b, 0, hashing.DRAW_STEP, 1 + np.arange(64)), index)
                     for b in range(n)])
    assert np.array_equal(got, want)
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    assert (np.abs(got.mean(0) - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-3).all()


@given(data=st.data(), net=mixed_networks, scheduler=schedulers, F=f_values, seed=seeds,
       input_mode=st.sampled_from(["all_at_once", "scheduled"]))
def test_mixed_networks_steps_mode_equals_numpy_reference(data, net, scheduler, F, seed, input_mode):
    """LIF, stochastic and integrator populations in any graph, any scheduler, F and mapping:
    the emulator equals the numpy reference step by step (draws included)."""
    x = data.draw(frames(net.n_inputs, max_count=3))
    n_cores, core_of = data.draw(mappings(net.n_neurons))
    chip = asyncsnn.Chip.preset("ideal", mesh_width=n_cores)
    res = chip.run(net, x[None], mapping=core_of, scheduler=scheduler, F=F, seed=seed, sample_offset=2,
                   input_mode=input_mode, max_steps=CAP, trace=True)
    ref = reference.simulate(net, x, scheduler=scheduler, F=F, core_of=core_of, seed=seed, sample_offset=2,
                             input_mode=input_mode, max_steps=CAP)
    assert trace_rows(res) == [list(t) for t in ref["trace"]]
    assert res.out_potential[0].tolist() == ref["out_potential"].tolist()
    assert int(res.metrics["synaptic_operations"][0]) == ref["synaptic_operations"]
    assert int(res.metrics["steps"][0]) == ref["steps"]
    assert int(res.metrics["unreleased"][0]) == ref["unreleased"]
    assert res.v_final[0].tolist() == ref["v_final"].tolist()


@given(data=st.data(), net=mixed_networks, scheduler=schedulers, seed=seeds, width=st.integers(1, 4))
def test_mixed_networks_events_mode_on_free_routing_equals_steps(data, net, scheduler, seed, width):
    x = data.draw(frames(net.n_inputs))
    core_of = data.draw(st.lists(st.integers(0, width * 2 - 1), min_size=net.n_neurons, max_size=net.n_neurons))
    chip = asyncsnn.Chip.preset("ideal", mesh_width=width, mesh_height=2)
    ev = chip.run(net, x[None], mapping=core_of, mode="events", scheduler=scheduler, seed=seed, trace=True,
                  max_steps=CAP)
    steps = asyncsnn.Chip.preset("ideal").run(net, x[None], scheduler=scheduler, seed=seed, trace=True, max_steps=CAP)
    assume((steps.releases[:, 2] + 1 < CAP).all())
    assert trace_rows(ev) == trace_rows(steps)
    assert np.array_equal(ev.out_potential, steps.out_potential)
    assert np.array_equal(ev.metrics["steps"], steps.metrics["steps"])


@given(data=st.data(), net=stochastic_networks(), seed=seeds, fixed_point=st.booleans(),
       mode=st.sampled_from(["steps", "events"]))
def test_pytorch_simulation_of_stochastic_networks_equals_the_emulator(data, net, seed, fixed_point, mode):
    """asyncsnn.spsn.deploy.simulate (batched PyTorch) against the emulator, in f32 on the weight
    grid and in any fixed-point format: same spikes, same potentials, bit for bit."""
    x1 = data.draw(frames(net.n_inputs, max_frames=5, max_count=3))
    x = np.stack([np.roll(x1, k, axis=0) for k in range(4)])  # four samples (own hash draws each)
    arith = data.draw(fixed_formats()) if fixed_point else None
    chip = asyncsnn.Chip.preset("ideal", **({"arithmetic": arith} if arith else {}))
    res = chip.run(net, x, mode=mode, seed=seed, sample_offset=1, trace=True)
    sim = deploy.simulate(net, x, seed=seed, sample_offset=1, arithmetic=arith)
    for b in range(x.shape[0]):
        rows = sorted((f, n) for f, n in zip(*np.nonzero(np.concatenate([s[b].numpy() for s in sim["spikes"]], 1))))
        got = sorted((int(r[1]), int(r[4])) for r in res.trace[res.trace[:, 0] == b])
        assert got == [(int(f), int(n)) for f, n in rows]
    assert np.array_equal(res.out_potential, sim["out_potential"].numpy())
    assert np.array_equal(res.v_final, sim["v_final"].numpy())


def _grid_seqnet(seed=0, bias=True) -> SeqNet:
    torch.manual_seed(seed)
    net = SeqNet([8, 12, 10, 4], alpha=0.5, beta=0.5, theta=0.5, gain=4, bias=bias).eval()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.copy_(torch.round(layer.weight * 32) / 32)
            if layer.bias is not None:
                layer.bias.copy_(torch.round(layer.bias * 32) / 32)
    return net


@pytest.mark.parametrize("bias", [True, False])
def test_exported_seqnet_on_the_emulator_makes_the_models_own_hash_draws(bias):
    """An SPSN SeqNet exported to the chip: the emulator's spikes are the draws of
    SeqNet(eval_firing="hash") with the same seed, and its readout potentials are the model's."""
    net = _grid_seqnet(bias=bias)
    x = (torch.rand(12, 10, 8, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    chip_net = deploy.export(net)
    assert chip_net.n_inputs == 8 + int(bias) == net.chip_inputs
    assert [p.kind for p in chip_net.populations] == ["stochastic", "stochastic", "integrator"]
    frames_ = deploy.with_bias(x, net)
    res = asyncsnn.Chip.preset("ideal").run(chip_net, frames_, seed=5, sample_offset=3, trace=True)
    net.eval_firing, net.seed = "hash", 5
    out = net(x, sample_offset=3)
    spikes = torch.cat([s.detach() for s in out.spikes], 2)  # (B, T, hidden neurons)
    for b in range(12):
        rows = res.trace[(res.trace[:, 0] == b) & (res.trace[:, 4] < spikes.shape[2])]
        chip_spikes = np.zeros(spikes.shape[1:], bool)
        chip_spikes[rows[:, 1], rows[:, 4]] = True
        assert np.array_equal(chip_spikes, spikes[b].numpy().astype(bool))
    assert np.allclose(res.out_potential, out.readout.detach().numpy(), atol=1e-5)
    assert np.array_equal(res.predictions(), out.logits.argmax(1).numpy())
    assert 0 < res.metrics["spikes"].mean() < 10 * 22


def test_bad_stochastic_inputs_raise_naming_the_field():
    pop = lambda **k: Population(2, **k)  # noqa: E731
    proj = [Projection("input", 0, np.ones((2, 1), np.float32))]
    with pytest.raises(asyncsnn.NetworkError, match=r"populations\[0\]\.alpha"):
        Network(1, [pop(kind="stochastic", alpha=1.5)], proj).validate()
    with pytest.raises(asyncsnn.NetworkError, match=r"populations\[0\]\.kind"):
        Network(1, [pop(kind="izhikevich")], proj).validate()
    net = Network(1, [pop(kind="stochastic", alpha=0.5)], proj)
    with pytest.raises(ValueError, match="AsyncSimulator runs LIF"):
        asyncsnn.sim.AsyncSimulator(net)
    with pytest.raises(ValueError, match="stochastic and integrator populations only"):
        deploy.simulate(Network(1, [pop()], proj), np.zeros((1, 2, 1), np.uint32))
    with pytest.raises(ValueError, match="frames: expected"):
        deploy.simulate(net, np.zeros((1, 2, 3), np.uint32))
    with pytest.raises(ValueError, match="frames: expected non-negative"):
        deploy.simulate(net, np.full((1, 2, 1), -1))
    with pytest.raises(ValueError, match="frames: expected non-negative integer"):
        deploy.simulate(net, np.full((1, 2, 1), 0.5))  # not truncated to 0
    with pytest.raises(ValueError, match="model.neuron"):
        deploy.export(SeqNet([3, 2], neuron="lif"))


def test_kinds_survive_save_and_load(tmp_path):
    net = deploy.export(_grid_seqnet())
    back = Network.load(net.save(tmp_path / "spsn.npz"))
    assert [(p.kind, p.alpha) for p in back.populations] == [(p.kind, p.alpha) for p in net.populations]
    x = deploy.with_bias(np.ones((2, 4, 8)))
    chip = asyncsnn.Chip.preset("ideal")
    assert np.array_equal(chip.run(back, x, seed=1).out_potential, chip.run(net, x, seed=1).out_potential)


@pytest.mark.parametrize("chip_name", ["ideal", "edge"])
def test_side_by_side_runs_a_deployed_spsn_network_exactly(chip_name):
    """`asyncsnn evaluate`'s engine comparison on an exported SPSN network, in f32 and on the
    fixed-point chip (quantised first): the PyTorch deployment and the emulator agree exactly."""
    from asyncsnn.train.export import quantize_network, run_side_by_side

    chip = asyncsnn.Chip.preset(chip_name)
    net = deploy.export(_grid_seqnet(seed=2))
    if chip.config["arithmetic"]["kind"] == "fixed":
        net = quantize_network(net, chip.config["arithmetic"])
    x = deploy.with_bias((np.random.default_rng(0).random((20, 12, 8)) < 0.3).astype(np.float32))
    y = np.arange(20) % 4
    sbs = run_side_by_side(net, x, y, chip=chip, seed=4, batch_size=8)
    assert sbs.steps_agree() is True
    rows = {r["engine"]: r for r in sbs.rows}
    for k in ("accuracy", "spikes", "synaptic_operations"):
        assert rows["pytorch"][k] == rows["emulator-steps"][k] == rows["emulator-events"][k], k
    assert rows["pytorch"]["spikes"] > 0
    sbs.sim_out_potential[0, 0, 0] += 1.0  # a planted difference is seen
    assert sbs.steps_agree() is False
