"""NIR interchange (asyncsnn.nir): round trips, the conversion of NIR's continuous-time neurons,
and clear errors for what has no exact counterpart."""

from __future__ import annotations

import dataclasses

import nir
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import Network, NetworkError, Population, Projection
from asyncsnn import nir as anir
from helpers import trace_rows
from strategies import frames, networks, schedulers, seeds, f_values

DT = 1e-3


def chip_view(net: Network) -> tuple:
    """What the chip runs: populations with float32 parameters, dense weights, the output."""
    pops = [dataclasses.replace(p, theta=float(np.float32(p.theta)), beta=float(np.float32(p.beta)), name="")
            for p in net.populations]
    return pops, net.n_inputs, net.dense_weights().tolist(), net.output_index


def zero_reset(net: Network) -> Network:
    return dataclasses.replace(net, populations=[dataclasses.replace(p, reset="zero") for p in net.populations])


@settings(max_examples=40, deadline=None)
@given(net=networks(), data=st.data(), scheduler=schedulers, F=f_values, seed=seeds)
def test_round_trip_is_the_same_network_and_runs_spike_for_spike(tmp_path_factory, net, data, scheduler, F, seed):
    """Any graph (recurrent, skip, feedback, dense or sparse) of zero-reset LIF populations:
    through NIR and its HDF5 file and back, the same populations, weights and output, and the
    same spikes on the emulator."""
    net = zero_reset(net)
    path = tmp_path_factory.mktemp("nir") / "net.nir"
    anir.write(net, path, dt=DT)
    back = anir.from_nir(path, DT)
    assert chip_view(back) == chip_view(net)
    assert [p.name for p in back.populations] == [p.name for p in net.populations]
    x = data.draw(frames(net.n_inputs, max_frames=3, max_count=2))[None]
    chip = asyncsnn.Chip.preset("ideal")
    kw = dict(scheduler=scheduler, F=F, seed=seed, max_steps=40, trace=True)
    assert trace_rows(chip.run(back, x, **kw)) == trace_rows(chip.run(net, x, **kw))


def test_convolutions_pooling_and_flatten_round_trip():
    rng = np.random.default_rng(0)
    kern = (rng.integers(-32, 64, (3, 2, 3, 3)) / 64).astype(np.float32)
    conv = Projection.conv2d("input", 0, kern, (2, 6, 6), stride=1, padding=1)
    dense = Projection(0, 1, (rng.integers(-32, 64, (4, 3 * 6 * 6)) / 64).astype(np.float32))
    net = Network(2 * 6 * 6, [Population(3 * 6 * 6, 1.0, 0.75, name="conv"), Population(4, 1.0, 0.5, name="out")],
                  [conv, dense], output=1)
    g = anir.to_nir(net, DT)
    kinds = {type(v).__name__ for v in g.nodes.values()}
    assert {"Conv2d", "Flatten", "Linear", "LIF"} <= kinds
    back = anir.from_nir(g, DT)
    assert chip_view(back) == chip_view(net)
    assert sorted(p.kind for p in back.projections) == ["conv", "dense"]  # a convolution stays one
    # a SumPool2d between the convolution's neurons and a dense layer composes into the weights
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    nodes = {k: v for k, v in g.nodes.items() if k != "w1_in"}
    nodes["pool"] = pool
    nodes["flat"] = nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0)
    nodes["w1"] = nir.Linear(weight=np.ones((4, 27), np.float32) / 8)
    edges = [e for e in g.edges if e[0] not in ("w1_in",) and e[1] != "w1_in"]
    edges = [e for e in edges if e != ("w1", "pop1")] + [("pop0", "pool"), ("pool", "flat"), ("flat", "w1"),
                                                          ("w1", "pop1")]
    pooled = anir.from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), DT)
    (dense_w,) = [p.weights for p in pooled.projections if p.kind == "dense"]
    expect = np.zeros((4, 108), np.float32)
    for c in range(3):
        for y in range(6):
            for x in range(6):
                expect[:, (c * 6 + y) * 6 + x] = 1 / 8
    assert np.array_equal(dense_w, expect)


def test_conversion_of_continuous_time_parameters():
    """LIF: beta = 1 - dt/tau, input gain dt r / tau on the weights, v_leak as a bias current
    through the bias channel; IF: gain dt r; LI: an integrator readout."""
    w = np.array([[0.5, 0.25], [1.0, -0.5]], np.float32)
    tau, dt = 4e-3, 1e-3
    g = nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([2])}),
        "aff": nir.Affine(weight=w, bias=np.array([0.125, 0.0], np.float32)),
        "lif": nir.LIF(tau=np.full(2, tau), r=np.full(2, 2.0 * tau / dt), v_leak=np.array([0.0, 0.5]),
                       v_threshold=np.full(2, 0.75), v_reset=np.zeros(2)),
        "lin": nir.Linear(weight=np.eye(2, dtype=np.float32)),
        "if": nir.IF(r=np.full(2, 500.0), v_threshold=np.full(2, 1.0), v_reset=np.zeros(2)),
        "lin2": nir.Linear(weight=np.ones((1, 2), np.float32)),
        "li": nir.LI(tau=np.full(1, 2e-3), r=np.full(1, 2.0), v_leak=np.zeros(1)),
        "out": nir.Output(output_type={"output": np.array([1])}),
    }, edges=[("in", "aff"), ("aff", "lif"), ("lif", "lin"), ("lin", "if"), ("if", "lin2"), ("lin2", "li"),
              ("li", "out")])
    net = anir.from_nir(g, dt)
    lif, iff, li = net.populations
    assert (lif.beta, lif.theta, lif.reset) == (0.75, 0.75, "zero")
    assert (iff.beta, iff.theta) == (1.0, 1.0) and (li.kind, li.beta, li.alpha) == ("integrator", 0.5, 0.0)
    assert net.n_inputs == 3  # the bias channel
    d = net.dense_weights()
    assert np.allclose(d[0:2, 0:2], 2.0 * w)                      # gain dt r / tau = 2
    assert np.allclose(d[0:2, 2], [2.0 * 0.125, 0.25 * 0.5])       # bias * gain, (dt/tau) v_leak
    assert np.allclose(d[2:4, 3:5], 0.5 * np.eye(2))               # IF gain dt r = 0.5
    assert np.allclose(d[4, 5:7], 1.0)                             # LI gain dt r / tau = 1
    x = anir.with_bias_channel(np.ones((1, 3, 2), np.uint32), net, 2)
    assert x.shape == (1, 3, 3) and (x[..., 2] == 1).all()


def _graph(**over):
    nodes = {"in": nir.Input(input_type={"input": np.array([2])}), "w": nir.Linear(weight=np.eye(2)),
             "lif": nir.LIF(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
             "out": nir.Output(output_type={"output": np.array([2])})}
    nodes.update(over)
    return nir.NIRGraph(nodes=nodes, edges=[("in", "w"), ("w", "lif"), ("lif", "out")], type_check=False)


@pytest.mark.parametrize("change, message", [
    (dict(lif=nir.CubaLIF(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),
                          v_threshold=np.ones(2))), "CubaLIF is not supported: the chip's LIF neuron has no synaptic"),
    (dict(lif=nir.LIF(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                      v_reset=np.full(2, 0.5))), "v_reset != 0"),
    (dict(lif=nir.LIF(tau=np.full(2, 5e-4), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))),
     "shorter than the frame"),
    (dict(lif=nir.LIF(tau=np.array([2e-3, 3e-3]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))),
     "tau differs across"),
    (dict(lif=nir.LIF(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.array([1.0, 2.0]))),
     "v_threshold differs"),
    (dict(lif=nir.LIF(tau=np.full(2, np.nan), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))), "NaN"),
    (dict(w=nir.Linear(weight=np.ones((2, 3)))), "takes 3 inputs but receives 2"),
    (dict(w=nir.Delay(delay=np.ones(2))), "Delay is not supported"),
    (dict(w=nir.Linear(weight=np.full((2, 2), np.inf))), "finite"),
])
def test_what_has_no_exact_counterpart_is_refused_by_name(change, message):
    with pytest.raises(NetworkError, match=message) as e:
        anir.from_nir(_graph(**change), DT)
    assert "node '" in str(e.value)


def test_approximate_normalises_thresholds_and_says_so_in_the_docs():
    g = _graph(lif=nir.LIF(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.array([1.0, 2.0])))
    net = anir.from_nir(g, DT, approximate=True)
    assert net.populations[0].theta == 1.0
    assert np.allclose(np.diag(net.projections[0].weights), np.array([1.0, 0.5]) * DT / 2e-3)
    assert "approximate=True" in anir.__doc__


def test_bad_graphs_and_files(tmp_path):
    g = _graph()
    no_out = nir.NIRGraph(nodes={k: v for k, v in g.nodes.items() if k != "out"},
                          edges=[e for e in g.edges if e[1] != "out"], type_check=False)
    with pytest.raises(NetworkError, match="one Input and one Output"):
        anir.from_nir(no_out, DT)
    loop = nir.NIRGraph(nodes=dict(g.nodes, w2=nir.Linear(weight=np.eye(2))),
                        edges=g.edges + [("w", "w2"), ("w2", "w")], type_check=False)
    with pytest.raises(NetworkError, match="loop without a neuron"):
        anir.from_nir(loop, DT)
    with pytest.raises(ValueError, match="dt"):
        anir.from_nir(g, 0.0)
    orphan = nir.NIRGraph(nodes=dict(g.nodes, extra=nir.Linear(weight=np.eye(2))), edges=g.edges, type_check=False)
    with pytest.raises(NetworkError, match="'extra': receives no edge"):
        anir.from_nir(orphan, DT)
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(NetworkError, match="invalid NIR file"):
        anir.from_nir(bad, DT)
    with pytest.raises(FileNotFoundError):
        anir.from_nir(tmp_path / "missing.nir", DT)


def test_what_nir_cannot_say_is_refused_on_export():
    net = Network(2, [Population(2, reset="subtract")], [Projection("input", 0, np.eye(2, dtype=np.float32))])
    with pytest.raises(NetworkError, match=r"populations\[0\]\.reset: 'subtract'"):
        anir.to_nir(net, DT)
    stoch = Network(2, [Population(2, kind="stochastic", alpha=0.5)], [Projection("input", 0, np.eye(2,
                                                                                               dtype=np.float32))])
    with pytest.raises(NetworkError, match="stochastic"):
        anir.to_nir(stoch, DT)


def test_cli_imports_exports_emulates_and_trains_from_nir(tmp_path, capsys):
    """`asyncsnn import`, `export -o X.nir`, `emulate --network X.nir` and training from a NIR
    file (model.init_from), chained as a user would."""
    import json

    from asyncsnn.cli import main
    from asyncsnn.generate import random_feedforward

    net = random_feedforward([40, 16, 3], seed=1, grid=True, reset="zero")
    src = tmp_path / "src.nir"
    anir.write(net, src, dt=8e-3)
    npz = tmp_path / "net.npz"
    assert main(["import", str(src), "-o", str(npz), "--dt", "8e-3"]) == 0
    assert "40 inputs -> 16-3" in capsys.readouterr().out
    assert chip_view(Network.load(npz)) == chip_view(net) and Network.load(npz).dt == 8000
    back = tmp_path / "back.nir"
    assert main(["export", str(npz), "-o", str(back)]) == 0  # the network's own dt
    assert "NIR, frames of 0.008 s" in capsys.readouterr().out
    assert chip_view(anir.from_nir(back, 8e-3)) == chip_view(net)
    args = ["--no-plots", "--no-progress", "--out", str(tmp_path / "runs"), "--batch", "4", "--frames", "3"]
    assert main(["emulate", "--network", str(back), "--nir-dt", "8e-3", "--mode", "steps", *args]) == 0
    assert "network 40->16-3" in capsys.readouterr().out
    assert main(["emulate", "--network", str(back), *args]) == 2
    assert "--nir-dt" in capsys.readouterr().err
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data": {"options": {"n_classes": 3, "train_per_class": 8, "test_per_class": 4,
                                                    "n_channels": 40}, "n_frames": 6, "dt": 8000},
                               "model": {"init_from": str(back)}, "train": {"epochs": 1}}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    capsys.readouterr()
    run = next((tmp_path / "runs").glob("train-*"))
    trained = Network.load(run / "network.npz")
    assert [p.size for p in trained.populations] == [16, 3]
    assert not np.array_equal(trained.dense_weights(), net.dense_weights())  # it trained from the NIR weights


# ------------------------------------------------------------------ real clients: snnTorch
def _on_grid(model, weight_step: int = 64):
    """Random weights ``round((U - 0.3) * 64) / weight_step`` and biases rounded to 1/64 in every
    ``Linear`` and ``Conv2d`` of ``model``: on such grids the float32 sums are exact."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.copy_(torch.round((torch.rand_like(m.weight) - 0.3) * 64) / weight_step)
                if m.bias is not None:
                    m.bias.copy_(torch.round(m.bias * 64) / 64)
    return model


def _grid_snntorch_model(seed: int):
    import snntorch as snn
    import torch

    torch.manual_seed(seed)
    leaky = lambda n, beta, **kw: snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), init_hidden=True,  # noqa: E731
                                            reset_mechanism="zero", reset_delay=False, **kw)
    model = torch.nn.Sequential(torch.nn.Linear(12, 8), leaky(8, 0.75), torch.nn.Linear(8, 3), leaky(3, 0.5, output=True))
    return _on_grid(model)


def _snntorch_spikes(model, x):
    """snnTorch's own time loop: ``x`` (B, T, C) -> output spikes (B, T, O)."""
    import torch
    from snntorch import utils

    utils.reset(model)
    out = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            s = model(torch.as_tensor(x[:, t], dtype=torch.float32))
            out.append(s[0] if isinstance(s, tuple) else s)
    return torch.stack(out, 1).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_snntorch_network_through_nir_runs_spike_for_spike(seed):
    """An snnTorch model (Linear + Leaky with zero reset, biases), exported with snnTorch's own
    NIR export (its convention: dt = 1e-4), imported here: asyncsnn's layer-synchronous mode
    (F = inf, layered) on the emulator gives snnTorch's own output spikes, frame for frame. Exact
    on the weight grid: snnTorch stores tau = dt / (1 - beta) in float32, and the gain
    dt r / tau read back is 1 to within 3e-8, under half a float32 ulp of any weight."""
    from snntorch.export_nir import export_to_nir

    model = _grid_snntorch_model(seed)
    x = (np.random.default_rng(seed).random((4, 20, 12)) < 0.4).astype(np.uint32)
    graph = export_to_nir(model, __import__("torch").zeros(12))
    net = anir.from_nir(graph, 1e-4)
    assert [p.beta for p in net.populations] == [0.75, 0.5] and net.n_inputs == 13  # biases: the bias channel
    ours = asyncsnn.Chip.preset("ideal").run(net, anir.with_bias_channel(x, net, 12), scheduler="layered", F=None)
    theirs = _snntorch_spikes(model, x)
    assert theirs.sum() > 20
    assert np.array_equal(ours.out_counts, theirs)


@pytest.mark.parametrize("seed", [3, 4])
def test_asyncsnn_network_loads_in_snntorch_with_the_same_spikes(seed):
    """The other direction: an asyncsnn network written as NIR (dt = 1e-4, snnTorch's) and read
    by snnTorch's NIR import spikes as the chip does (layer-synchronous, F = inf)."""
    from snntorch.import_nir import import_from_nir

    from asyncsnn.generate import random_feedforward

    net = random_feedforward([12, 8, 3], seed=seed, grid=True, reset="zero", beta=0.75, gain=4.0)
    model = import_from_nir(anir.to_nir(net, 1e-4))
    x = (np.random.default_rng(seed).random((4, 20, 12)) < 0.4).astype(np.uint32)
    ours = asyncsnn.Chip.preset("ideal").run(net, x, scheduler="layered", F=None)
    theirs = _snntorch_spikes(model, x)
    assert theirs.sum() > 20
    assert np.array_equal(ours.out_counts, theirs)


def test_the_snntorch_example_runs_end_to_end(tmp_path, capsys):
    """examples/snntorch_via_nir.py (quick): snnTorch -> NIR -> the chip (layer-synchronous
    accuracy = snnTorch's), asynchronous table, fine-tuning, back to NIR, read by snnTorch
    with the chip's spikes."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "snntorch_via_nir.py"
    spec = importlib.util.spec_from_file_location("snntorch_via_nir", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--quick", "--out", str(tmp_path)])
    assert out["nir_layered_accuracy"] == pytest.approx(out["snntorch_accuracy"])
    assert out["snntorch_reads_back_same_counts"] == 1.0
    assert len(out["rows"]) == 12 and (tmp_path / "finetuned.nir").exists()
    assert "| momentum | 1 |" in capsys.readouterr().out


def test_bias_channel_written_as_affine_biases_round_trips_and_loads_in_snntorch():
    """to_nir(bias_channel=True): the last input channel's weights become Affine biases (a
    graph of one input less), from_nir makes them the bias channel again, and snnTorch, fed
    the inputs without the channel, spikes as the chip fed them with it."""
    from snntorch.import_nir import import_from_nir

    from asyncsnn.generate import random_feedforward

    base = random_feedforward([12, 8, 3], seed=5, grid=True, reset="zero", beta=0.75, gain=4.0)
    w0 = base.projections[0].weights
    bias = (np.random.default_rng(5).integers(-16, 32, (8, 1)) / 64).astype(np.float32)
    net = dataclasses.replace(base, n_inputs=13, projections=[Projection("input", 0, np.concatenate([w0, bias], 1)),
                                                              base.projections[1]])
    g = anir.to_nir(net, 1e-4, bias_channel=True)
    assert type(g.nodes["w0"]).__name__ == "Affine" and g.nodes["input"].input_type["input"].tolist() == [12]
    back = anir.from_nir(g, 1e-4)
    assert chip_view(back) == chip_view(net)
    x = (np.random.default_rng(6).random((4, 20, 12)) < 0.4).astype(np.uint32)
    ours = asyncsnn.Chip.preset("ideal").run(net, anir.with_bias_channel(x, net, 12), scheduler="layered", F=None)
    theirs = _snntorch_spikes(import_from_nir(g), x)
    assert theirs.sum() > 20 and np.array_equal(ours.out_counts, theirs)


def test_snntorch_recurrent_leaky_through_nir_equals_the_layered_baseline():
    """snnTorch's RLeaky (a recurrent Linear, its spikes fed back at the next time step) comes
    through NIR as a recurrent projection; asyncsnn's layer-synchronous baseline (layered_run:
    recurrent projections see the previous frame's spikes, as RLeaky does) gives snnTorch's
    output spikes exactly. (On the chip a recurrent spike arrives within the same frame, at the
    next forward step: the point of running it asynchronously.)"""
    import snntorch as snn
    import torch

    from asyncsnn.sim import AsyncSimulator, layered_run

    torch.manual_seed(0)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    model = torch.nn.Sequential(
        torch.nn.Linear(12, 8),
        snn.RLeaky(beta=torch.full((8,), 0.75), threshold=torch.ones(8), linear_features=8, **kw),
        torch.nn.Linear(8, 3), snn.Leaky(beta=torch.full((3,), 0.5), threshold=torch.ones(3), output=True, **kw))
    _on_grid(model)
    from snntorch.export_nir import export_to_nir

    net = anir.from_nir(export_to_nir(model, torch.zeros(12)), 1e-4)
    assert any(p.source == p.target for p in net.projections)  # the recurrent projection
    x = (np.random.default_rng(0).random((4, 20, 12)) < 0.4).astype(np.uint32)
    ours = layered_run(AsyncSimulator(net), torch.tensor(anir.with_bias_channel(x, net, 12), dtype=torch.float32))
    theirs = _snntorch_spikes(model, x)
    assert theirs.sum() > 20 and np.array_equal(ours.out_counts.detach().numpy(), theirs)


# ------------------------------------------------------------------ real clients: Norse
NORSE_DT = 2.0 ** -10  # Norse's frame; its LIF leak dt / tau_mem = 1/2 (tau_mem_inv = 512)


def _grid_norse_model(seed: int, readout: str):
    import norse.torch as nt
    import torch
    from norse.torch.module.leaky_integrator_box import LIBoxCell, LIBoxParameters
    from norse.torch.module.lif_box import LIFBoxCell, LIFBoxParameters

    lif = LIFBoxParameters(tau_mem_inv=torch.tensor(512.0), v_th=torch.tensor(1.0))
    last = (LIFBoxCell(lif, dt=NORSE_DT) if readout == "lif"
            else LIBoxCell(LIBoxParameters(tau_mem_inv=torch.tensor(256.0)), dt=NORSE_DT))
    model = nt.SequentialState(torch.nn.Linear(12, 8), LIFBoxCell(lif, dt=NORSE_DT), torch.nn.Linear(8, 3), last)
    torch.manual_seed(seed)
    return _on_grid(model, 32)


def _norse_outputs(model, x):
    """Norse's own time loop: ``x`` (B, T, C) -> the last node's output (B, T, O)."""
    import torch

    state, out = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            z, state = model(torch.as_tensor(x[:, t], dtype=torch.float32), state)
            out.append(z)
    return torch.stack(out, 1).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_norse_network_through_nir_runs_spike_for_spike(seed):
    """A Norse model (Linear + LIFBoxCell, biases), exported with Norse's own NIR export
    (1.1.0). Norse writes ``tau = dt / tau_mem_inv``, that is ``dt * tau``, as scalars; read
    with the frame ``dt**2``, the conversion gives Norse's own step exactly (leak
    1 - dt**2 / (dt tau) = 1 - dt/tau, gain dt/tau), and asyncsnn's layer-synchronous mode
    gives Norse's output spikes frame for frame. Exact, not only close: with the leak 1/2 and
    weights on the 1/32 grid, every potential of 12 frames is a float32 number, so Norse's
    ``v + g (I - v)`` and the chip's ``beta v + g I`` round to the same value."""
    import norse.torch as nt
    import torch

    model = _grid_norse_model(seed, "lif")
    net = anir.from_nir(nt.to_nir(model, torch.zeros(1, 12), dt=NORSE_DT), NORSE_DT ** 2)
    assert [(p.size, p.beta, p.theta) for p in net.populations] == [(8, 0.5, 1.0), (3, 0.5, 1.0)]
    x = (np.random.default_rng(seed).random((4, 12, 12)) < 0.4).astype(np.uint32)
    ours = asyncsnn.Chip.preset("ideal").run(net, anir.with_bias_channel(x, net, 12), scheduler="layered", F=None)
    theirs = _norse_outputs(model, x)
    assert theirs.sum() > 20
    assert np.array_equal(ours.out_counts, theirs)


@pytest.mark.parametrize("seed", [0, 2])
def test_norse_leaky_integrator_readout_through_nir(seed):
    """Norse's LIBoxCell readout comes in as the chip's integrator readout; its potential per
    frame equals Norse's to 2e-7 (absolute, on values of order 1): the spikes below it are
    exact, and the readout's leak of 3/4 adds two bits a frame, so past about ten frames the
    two orders of operations round differently in the last float32 bit."""
    import norse.torch as nt
    import torch

    model = _grid_norse_model(seed, "li")
    net = anir.from_nir(nt.to_nir(model, torch.zeros(1, 12), dt=NORSE_DT), NORSE_DT ** 2)
    assert net.populations[-1].kind == "integrator" and net.populations[-1].beta == 0.75
    x = (np.random.default_rng(seed).random((4, 12, 12)) < 0.4).astype(np.uint32)
    ours = asyncsnn.Chip.preset("ideal").run(net, anir.with_bias_channel(x, net, 12), scheduler="layered", F=None)
    theirs = _norse_outputs(model, x)
    assert np.abs(theirs).max() > 0.1
    np.testing.assert_allclose(ours.out_potential, theirs, rtol=0, atol=2e-7)


def test_norse_current_based_lif_is_refused_by_name():
    """Norse's LIFCell has a synaptic current and exports CubaLIF: refused, naming the node."""
    import norse.torch as nt
    import torch

    model = nt.SequentialState(torch.nn.Linear(4, 3), nt.LIFCell())
    graph = nt.to_nir(model, torch.zeros(1, 4))
    with pytest.raises(NetworkError, match=r"node '1': CubaLIF is not supported: .*synaptic current"):
        anir.from_nir(graph, 1e-6)


def test_scalar_parameters_take_their_size_from_the_input_or_are_refused():
    """A neuron node with scalar (0-d) parameters (Norse writes them; NIR's own type check
    refuses them, hence ``type_check=False``) has as many neurons as its input carries; where
    nothing says how many, the error names the node."""
    w = np.eye(3, 4, dtype=np.float32)
    lif = lambda: nir.LIF(tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0),  # noqa: E731
                          v_threshold=np.array(1.0), v_reset=np.array(0.0))
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([4])), "w": nir.Linear(w), "lif": lif(),
                            "output": nir.Output(np.array([3]))},
                     edges=[("input", "w"), ("w", "lif"), ("lif", "output")], type_check=False)
    net = anir.from_nir(g, DT)
    assert net.populations[0].size == 3 and net.populations[0].beta == pytest.approx(0.9)
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2, 2])), "c": nir.SumPool2d(np.array([1, 1]), np.array([1, 1]),
                                                                                      np.array([0, 0])),
                            "lif": lif(), "output": nir.Output(np.array([4]))},
                     edges=[("input", "c"), ("c", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(NetworkError, match="node 'lif': its parameters are scalars"):
        anir.from_nir(g, DT)


@pytest.mark.parametrize("bias", [True, False])
def test_snntorch_convolutional_network_through_nir_runs_spike_for_spike(bias):
    """An snnTorch Conv2d -> Leaky -> Flatten -> Linear -> Leaky model, exported with
    snnTorch's own export (``ignore_dims=[0]``: the sample's batch axis is not the network's;
    per-neuron ``beta`` and ``threshold`` of the convolution's output shape, which NIR's type
    check needs), spikes on the chip as in snnTorch. A convolution without bias stays a
    convolution projection; with a bias, the bias channel widens the input, and the
    convolution from the input becomes dense."""
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(1)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1, bias=bias),
        snn.Leaky(beta=torch.full((2, 5, 5), 0.75), threshold=torch.ones(2, 5, 5), **kw), torch.nn.Flatten(),
        torch.nn.Linear(50, 3, bias=bias),
        snn.Leaky(beta=torch.full((3,), 0.5), threshold=torch.ones(3), output=True, **kw))
    _on_grid(model, 32)
    net = anir.from_nir(export_to_nir(model, torch.zeros(1, 1, 5, 5), ignore_dims=[0]), 1e-4)
    assert [p.size for p in net.populations] == [50, 3]
    assert ("conv" in [p.kind for p in net.projections if p.source == "input"]) == (not bias)
    x = (np.random.default_rng(1).random((4, 20, 25)) < 0.4).astype(np.uint32)
    xin = anir.with_bias_channel(x, net, 25) if net.n_inputs == 26 else x
    ours = asyncsnn.Chip.preset("ideal").run(net, xin, scheduler="layered", F=None)
    theirs = _snntorch_spikes(model, x.reshape(4, 20, 1, 5, 5))
    assert theirs.sum() > 20
    assert np.array_equal(ours.out_counts, theirs)
