"""The training layer: layered equivalence, gradients, readouts, regularisers, the training loop,
checkpoints and resume, export and side-by-side evaluation, the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import Network, Population, Projection
from asyncsnn.cli import main
from helpers import markdown_rows
from asyncsnn.errors import ConfigError
from asyncsnn.generate import random_feedforward
from asyncsnn.sim import AsyncSimulator, saved_tensor_bytes
from asyncsnn.sim.layered import layered_run
from asyncsnn.train import load_config, losses, resume, train
from asyncsnn.train.export import evaluate_side_by_side, export_network, quantize_network
from strategies import BETAS, grid_matrix

TINY = {"data.options": {"n_classes": 3, "train_per_class": 16, "test_per_class": 8, "n_channels": 40},
        "data.n_frames": 12, "data.dt": 8000, "model.hidden": [24], "train.batch_size": 16}


def tiny(tmp_path, **more):
    return load_config(None, {**TINY, "out": str(tmp_path / "runs"), **more})


# ------------------------------------------------------------------ layered equivalence
@st.composite
def chains(draw):
    sizes = [draw(st.integers(1, 6)) for _ in range(draw(st.integers(2, 4)))]
    pops = [Population(s, theta=draw(st.sampled_from([0.5, 1.0])), beta=draw(st.sampled_from(BETAS)), reset="zero",
                       refractory=True) for s in sizes[1:]]
    projs = [Projection("input" if i == 0 else i - 1, i, draw(grid_matrix(sizes[i + 1], sizes[i])))
             for i in range(len(pops))]
    return Network(sizes[0], pops, projs, output=len(pops) - 1)


@given(net=chains(), seed=st.integers(0, 2**32 - 1), frames=st.integers(1, 5))
def test_f_infinity_layered_equals_layer_synchronous_lif(net, seed, frames):
    """F = inf + layered scheduler + refractory + zero reset on a feed-forward chain is exactly
    layer-synchronous LIF: the same spikes, the same potentials, in the PyTorch loop and in the
    native engine."""
    x = torch.tensor(np.random.default_rng(seed).poisson(0.6, (3, frames, net.n_inputs)).astype(np.float32))
    sim = AsyncSimulator(net)
    b = layered_run(sim, x)
    for engine in ("manual", "native"):
        with torch.no_grad():  # (no gradient: "manual" is then the PyTorch step loop itself)
            a = sim(x, scheduler="layered", F=None, engine=engine)
        assert torch.equal(a.out_counts, b.out_counts), engine
        assert torch.equal(a.spike_counts, b.spike_counts), engine
        assert torch.allclose(a.v_final, b.v_final, atol=1e-6), engine
        assert torch.equal(a.synaptic_operations, b.synaptic_operations), engine


# ------------------------------------------------------------------ gradients
def silent_net(beta=0.5):
    """High thresholds: nothing fires, so the dynamics are smooth (linear) in the weights."""
    r = np.random.default_rng(0)
    pops = [Population(4, theta=1e6, beta=beta), Population(3, theta=1e6, beta=beta)]
    projs = [Projection("input", 0, r.normal(size=(4, 5)).astype(np.float32)),
             Projection(0, 1, r.normal(size=(3, 4)).astype(np.float32)),
             Projection(0, 0, r.normal(size=(4, 4)).astype(np.float32))]
    return Network(5, pops, projs, output=1)


class _Layered(torch.nn.Module):
    def __init__(self, sim):
        super().__init__()
        self.sim = sim

    def forward(self, x):
        return layered_run(self.sim, x)


@pytest.mark.parametrize("engine", ["async", "layered"])
def test_finite_difference_gradient_of_the_membrane_path(engine):
    """Through leak, recurrence and both layers, across frames and steps: autograd equals
    finite differences (float64)."""
    sim = AsyncSimulator(silent_net()).double()
    x = torch.tensor(np.random.default_rng(1).poisson(0.8, (2, 4, 5)), dtype=torch.float64)
    module, prefix = (sim, "") if engine == "async" else (_Layered(sim), "sim.")
    kw = {"scheduler": "momentum", "F": 2} if engine == "async" else {}

    def v_final(w_in, w_rec):
        params = {f"{prefix}weights.0": w_in, f"{prefix}weights.2": w_rec}
        return torch.func.functional_call(module, params, (x,), kw).v_final

    w_in = sim.weights[0].detach().clone().requires_grad_(True)
    w_rec = sim.weights[2].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(v_final, (w_in, w_rec), eps=1e-6, atol=1e-6)


def test_truncated_gradient_sees_only_the_current_of_the_last_step():
    """Nothing fires: v_final = sum_f beta^(T-1-f) W x_f. The full gradient of sum(v_final)
    with respect to W has every frame's input; the truncated one only the last frame's."""
    net = Network(3, [Population(2, theta=1e6, beta=0.5)], [Projection("input", 0, np.ones((2, 3), np.float32))],
                  output=0)
    x = torch.tensor([[[1.0, 0, 0], [0, 2, 0], [0, 0, 3]]])
    for gradient, expected_row in (("full", [0.25, 1.0, 3.0]), ("truncated", [0.0, 0.0, 3.0])):
        sim = AsyncSimulator(net)
        sim(x, gradient=gradient).v_final.sum().backward()
        assert sim.weights[0].grad.tolist() == [expected_row, expected_row], gradient


@pytest.mark.parametrize("engine", ["autograd", "manual"])
@pytest.mark.parametrize("gradient", ["full", "truncated"])
def test_gradient_does_not_depend_on_the_rest_of_the_batch(engine, gradient):
    """A sample that settles early sits through the masked steps of a longer one; those steps
    are no-ops for its gradient too, so it gets the gradient it gets alone."""
    net = random_feedforward([6, 5, 3], seed=2, gain=3.0)
    short = torch.tensor([[[1.0, 0, 0, 0, 0, 0]] * 2])
    long_ = torch.tensor([[[1.0, 2, 1, 2, 2, 1]] * 2])
    grads = []
    for x in (short, torch.cat([short, long_])):
        sim = AsyncSimulator(net)
        r = sim(x, F=1, gradient=gradient, engine=engine)
        assert int(r.steps[0]) < int(r.steps[-1]) or len(x) == 1
        (r.v_final[0].sum() + r.spike_counts[0].sum()).backward()
        grads.append([w.grad.clone() for w in sim.weights])
    assert grads[0][0].abs().sum() > 0
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_manual_engine_keeps_less_for_backward():
    """The manual engine keeps one tape per step (the same for either gradient choice), less
    than autograd keeps for either."""
    net = random_feedforward([40, 30, 20, 5], seed=0, gain=3.0)
    x = torch.tensor(np.random.default_rng(0).poisson(0.3, (8, 6, 40)).astype(np.float32))
    used = {}
    for engine in ("autograd", "manual"):
        for gradient in ("full", "truncated"):
            sim = AsyncSimulator(net)
            with saved_tensor_bytes() as counter:
                r = sim(x, scheduler="fifo", F=3, gradient=gradient, engine=engine)
            r.out_counts.sum().backward()
            used[engine, gradient] = counter.bytes
            assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in sim.weights)
    assert 0 < used["manual", "full"] == used["manual", "truncated"]
    assert used["manual", "full"] < 0.7 * min(used["autograd", "full"], used["autograd", "truncated"])


# ------------------------------------------------------------------ readouts and regularisers
def test_first_time_is_the_first_spike_step_and_differentiable():
    net = random_feedforward([20, 15, 4], seed=3, gain=3.0)
    sim = AsyncSimulator(net)
    x = torch.tensor(np.random.default_rng(2).poisson(0.5, (6, 5, 20)).astype(np.float32))
    r = sim(x, scheduler="random", F=2, first_time=True)
    fired = r.first_spike >= 0
    assert fired.any() and (~fired).any()
    assert torch.equal(r.first_time.detach()[fired], r.first_spike[fired].float())
    never = r.steps[:, None].expand_as(r.first_spike).float()
    assert torch.equal(r.first_time.detach()[~fired], never[~fired])
    z = losses.logits(r, "first_spike", tau=5.0)
    torch.nn.functional.cross_entropy(z, torch.arange(6) % 4).backward()
    assert sum(float(w.grad.abs().sum()) for w in sim.weights) > 0


def test_membrane_readout_matches_the_emulator_outputs():
    net = random_feedforward([12, 10, 3], seed=4, gain=2.5, grid=True)
    x = np.random.default_rng(3).poisson(0.5, (4, 5, 12)).astype(np.float32)
    sim = AsyncSimulator(net)
    r = sim(torch.tensor(x), scheduler="fifo", F=2)
    z = losses.logits(r, "membrane", theta_out=sim.theta[sim.out_slice], out_slice=sim.out_slice)
    emu = asyncsnn.Chip.preset("ideal").run(net, x, scheduler="fifo", F=2)
    o = sim.out_slice
    expected = emu.v_final[:, o] + 1.0 * emu.out_counts.sum(1)
    assert np.allclose(z.detach().numpy(), expected)


def test_input_dropout_drops_the_expected_fraction_deterministically():
    x = torch.tensor(np.random.default_rng(0).poisson(1.5, (64, 10, 30)).astype(np.float32))
    a = losses.input_dropout(x, 0.3, torch.Generator().manual_seed(1))
    b = losses.input_dropout(x, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert (a <= x).all()
    kept = float(a.sum() / x.sum())
    assert 0.66 < kept < 0.74
    with pytest.raises(ValueError, match="input_dropout"):
        losses.input_dropout(x, 1.0)


def test_spike_penalty_reduces_spikes(tmp_path):
    base = train(tiny(tmp_path, **{"train.epochs": 3}), progress=False, log=lambda s: None)
    pen = train(tiny(tmp_path, **{"train.epochs": 3, "train.spike_penalty": 20.0}), progress=False, log=lambda s: None)
    assert pen.history[-1]["test_spikes"] < 0.8 * base.history[-1]["test_spikes"]


# ------------------------------------------------------------------ training loop
@pytest.mark.parametrize("method", ["unlayered", "layered"])
def test_training_reduces_the_loss_and_beats_chance(tmp_path, method):
    cfg = load_config(None, {"out": str(tmp_path / "runs"), "train.method": method, "train.epochs": 6})
    tr = train(cfg, progress=False, log=lambda s: None)
    h = tr.history
    assert h[-1]["train_loss"] < 0.75 * h[0]["train_loss"]
    assert h[-1]["test_accuracy"] > 0.45  # 4 classes: chance is 0.25
    files = {p.name for p in tr.run_dir.iterdir()}
    assert {"config.json", "metrics.csv", "metrics.json", "checkpoint.pt", "network.npz"} <= files


def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    full = train(tiny(tmp_path, **{"train.epochs": 3}), progress=False, log=lambda s: None)
    part = train(tiny(tmp_path, **{"train.epochs": 2}), progress=False, log=lambda s: None)
    assert part.run_dir != full.run_dir  # never overwrites a run
    cont = resume(part.run_dir, epochs=3, progress=False, log=lambda s: None)
    for a, b in zip(full.sim.weights, cont.sim.weights):
        assert torch.equal(a, b)
    assert [r["train_loss"] for r in cont.history] == [r["train_loss"] for r in full.history]


def test_a_crash_while_saving_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    tr = train(tiny(tmp_path, **{"train.epochs": 1}), progress=False, log=lambda s: None)
    before = tr.checkpoint_path.read_bytes()

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    tr.epoch += 1
    with pytest.raises(OSError):
        tr.save_checkpoint()
    assert tr.checkpoint_path.read_bytes() == before
    monkeypatch.undo()
    state = torch.load(tr.checkpoint_path, weights_only=True)
    assert state["epoch"] == 1
    assert [p.name for p in tr.run_dir.iterdir() if p.name.endswith(".tmp")] == []  # no half-written file left


def test_same_seed_same_run(tmp_path):
    a = train(tiny(tmp_path, **{"train.epochs": 1, "train.scheduler": "random"}), progress=False, log=lambda s: None)
    b = train(tiny(tmp_path, **{"train.epochs": 1, "train.scheduler": "random"}), progress=False, log=lambda s: None)
    assert all(torch.equal(u, v) for u, v in zip(a.sim.weights, b.sim.weights))


@pytest.mark.parametrize("model", ["unlayered", "unlayered-manual", "unlayered-autograd", "spsn", "lif",
                                   "layers-spsn"])
def test_same_gradients_on_one_thread_and_on_two(model):
    """Bit-identical outputs and gradients whatever the thread count, on work large enough that
    PyTorch splits its kernels over threads (matrix products, reductions, sorts): an
    asynchronous run of a 2312-64-64-10 network on 64 samples (the default engine, and the
    PyTorch ones, whose input projection sums 2312 terms: MKL on AVX-512 splits such a sum by
    thread count unless its strict mode is on, which importing asyncsnn sets), and an SPSN and a
    LIF step at T = 300 (whose weight gradients sum over 19 200 rows), and a layer-module model
    of torch.nn.Linear and SPSN layers (whose weight gradients sum over 12 800 rows)."""
    import asyncsnn.layers as L
    from asyncsnn.spsn import SeqNet

    def grads(threads):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            if model.startswith("unlayered"):
                sim = AsyncSimulator(random_feedforward([2312, 64, 64, 10], seed=0, beta=0.875, gain=2.0))
                x = torch.tensor(np.random.default_rng(1).poisson(0.05, (64, 6, 2312)), dtype=torch.float32)
                engine = model.partition("-")[2] or "auto"
                r = sim(x, scheduler="momentum", F=4, seed=3, engine=engine)
                out, params, extra = r.out_counts.sum(1) + r.v_final.sum(1, keepdim=True), sim.weights, 0.0
            elif model == "layers-spsn":
                torch.manual_seed(0)
                net = L.Sequential(torch.nn.Linear(700, 256), L.SPSN(256), torch.nn.Linear(256, 20), L.LI(20))
                x = (torch.rand(32, 400, 700, generator=torch.Generator().manual_seed(1)) < 0.02).float()
                out, params, extra = net(x)[0].sum(1), list(net.parameters()), 0.0  # (output, state)
            else:
                torch.manual_seed(0)
                net = SeqNet([700, 128, 128, 20], gain=8.0, theta=4.0, neuron=model)
                x = (torch.rand(64, 300, 700, generator=torch.Generator().manual_seed(1)) < 0.02).float()
                o = net(x, generator=torch.Generator().manual_seed(2))
                out, params, extra = o.logits, list(net.parameters()), 0.1 * o.rate_penalty(0.01)
            loss = torch.nn.functional.cross_entropy(out, torch.arange(out.shape[0]) % out.shape[1]) + extra
            loss.backward()
            return [loss.detach(), out.detach()] + [p.grad for p in params]
        finally:
            torch.set_num_threads(before)

    one, two = grads(1), grads(2)
    assert one[2].abs().sum() > 0
    for a, b in zip(one, two):
        assert torch.equal(a, b)


# ------------------------------------------------------------------ export and evaluation
def test_exported_model_runs_identically_on_the_emulator(tmp_path):
    tr = train(tiny(tmp_path, **{"train.epochs": 1, "model.core_neurons": 8, "train.F": 2}), progress=False,
               log=lambda s: None)
    net = Network.load(tr.run_dir / "network.npz")
    assert np.array_equal(net.core_of, np.arange(27) // 8)
    x, y, _ = asyncsnn.data.to_arrays(tr.test_set)
    chip = asyncsnn.Chip.preset("ideal", mesh_width=4)
    rows = evaluate_side_by_side(net, x, y, chip=chip, scheduler="momentum", F=2, modes=("steps",))
    torch_row, emu_row = rows
    for k in ("accuracy", "spikes", "synaptic_operations", "steps", "first_out_step", "first_correct_step",
              "first_correct_spikes_before"):
        assert torch_row[k] == pytest.approx(emu_row[k], nan_ok=True), k
    assert torch_row["accuracy"] == pytest.approx(tr.evaluate()["accuracy"])


def test_quantised_export_is_on_the_chip_grid(tmp_path):
    net = random_feedforward([10, 6, 3], seed=0, gain=2.0)
    chip = asyncsnn.Chip.preset("edge")
    path = export_network(net, tmp_path / "q.npz", chip=chip, quantize=True)
    q = Network.load(path)
    scale = 2 ** chip.config["arithmetic"]["frac_bits"]
    for pr in q.projections:
        w = np.asarray(pr.weights) * scale
        assert np.array_equal(w, np.round(w)) and np.abs(w).max() <= 127
    with pytest.raises(ConfigError, match="fixed"):
        quantize_network(net, asyncsnn.Chip.preset("ideal").config["arithmetic"])


# ------------------------------------------------------------------ stop conditions and bad input
def test_stop_after_output_is_a_prefix_of_the_full_run():
    net = random_feedforward([20, 15, 4], seed=3, gain=3.0)
    sim = AsyncSimulator(net)
    x = torch.tensor(np.random.default_rng(2).poisson(0.5, (4, 6, 20)).astype(np.float32))
    full = sim(x, scheduler="fifo", F=2, trace=True)
    k = 3
    cut = sim(x, scheduler="fifo", F=2, trace=True, stop_after_output=k)
    for b in range(4):
        g0 = int(full.first_spike[b][full.first_spike[b] >= 0].min()) if (full.first_spike[b] >= 0).any() else None
        if g0 is None:
            assert cut.trace[b] == full.trace[b]
            continue
        assert int(cut.steps[b]) == min(g0 + k + 1, int(full.steps[b]))
        assert cut.trace[b] == full.trace[b][:len(cut.trace[b])]


@pytest.mark.parametrize("kwargs,match", [
    ({"scheduler": "lifo"}, "scheduler"),
    ({"gradient": "some"}, "gradient"),
    ({"max_steps": 0}, "max_steps"),
    ({"stop_after_output": -1}, "stop_after_output"),
])
def test_bad_run_arguments(kwargs, match):
    sim = AsyncSimulator(random_feedforward([4, 3], seed=0))
    with pytest.raises(ValueError, match=match):
        sim(torch.ones(1, 2, 4), **kwargs)


def test_bad_frames_and_weights():
    sim = AsyncSimulator(random_feedforward([4, 3], seed=0))
    with pytest.raises(ValueError, match="frames"):
        sim(torch.full((1, 2, 4), float("nan")))
    with pytest.raises(ValueError, match="frames"):
        sim(-torch.ones(1, 2, 4))
    with pytest.raises(ValueError, match="frames"):
        sim(torch.ones(2, 4))
    with torch.no_grad():
        sim.weights[0][0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"weights\[0\]"):
        sim(torch.ones(1, 2, 4))
    with pytest.raises(ValueError, match="core_of"):
        AsyncSimulator(random_feedforward([4, 3], seed=0), core_of=[0, 1])


@pytest.mark.parametrize("overrides,match", [
    ({"train.F": 0}, "train.F"),
    ({"train.scheduler": "lifo"}, "train.scheduler"),
    ({"model.beta": 1.5}, "model.beta"),
    ({"train.lr": -1}, "train.lr"),
    ({"model.hidden": [0]}, "model.hidden"),
    ({"train.nope": 1}, "train.nope"),
    ({"nosection.x": 1}, "nosection.x"),
    ({"train.readout": "votes"}, "train.readout"),
    ({"train.engine": "fast"}, "train.engine: 'fast'; allowed: auto, native, manual, autograd"),
    ({"train.cuda_graphs": "yes"}, "train.cuda_graphs"),
    ({"train.compile": 1}, "train.compile: 1; allowed: true, false"),
])
def test_bad_config(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_config_file_toml_with_infinite_F(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[train]\nF = "inf"\nepochs = 2\n[model]\nhidden = [32]\n')
    cfg = load_config(p)
    assert cfg.train.F is None and cfg.train.epochs == 2 and cfg.model.hidden == [32]
    p.write_text('[train]\nbatchsize = 3\n')
    with pytest.raises(ConfigError, match="train.batchsize"):
        load_config(p)


# ------------------------------------------------------------------ CLI
def test_cli_train_resume_evaluate_export(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data": {"options": TINY["data.options"], "n_frames": 12, "dt": 8000},
                               "model": {"hidden": [16], "core_neurons": 8}, "train": {"epochs": 1, "F": 2}}))
    out = tmp_path / "runs"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    run = next(out.glob("train-*"))
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 2
    capsys.readouterr()
    assert main(["evaluate", str(run), "--out", str(out), "--modes", "steps,events"]) == 0
    rows = {r["engine"]: r for r in markdown_rows(capsys.readouterr().out)}
    assert set(rows) == {"pytorch", "emulator-steps", "emulator-events"}
    for k in ("acc", "spikes/sample", "spikes/neuron/frame", "act. sparsity", "synops/sample", "steps"):
        assert rows["pytorch"][k] == rows["emulator-steps"][k], k  # the simulator and the chip agree
    q = tmp_path / "q.npz"
    assert main(["export", str(run), "-o", str(q), "--quantize", "--chip", "edge"]) == 0
    assert main(["emulate", "--network", str(q), "--chip", "edge", "--core-neurons", "0", "--no-plots",
                 "--no-progress", "--out", str(out), "--F", "2", "--scheduler", "momentum", "--batch", "4"]) == 0
    assert main(["train", "--set", "train.F=0", "--out", str(out)]) == 2


def test_a_trained_network_carries_what_it_was_trained_for(tmp_path, capsys):
    """network.npz records the run options and frame length of training; evaluate and emulate
    read them from the file (not from the run's config), export keeps them."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data": {"options": TINY["data.options"], "n_frames": 12, "dt": 8000},
                               "model": {"hidden": [16]},
                               "train": {"epochs": 1, "F": 3, "scheduler": "fifo", "max_steps": 40, "seed": 7}}))
    out = tmp_path / "runs"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    run = next(out.glob("train-*"))
    net = Network.load(run / "network.npz")
    assert net.run_options == asyncsnn.RunOptions(scheduler="fifo", F=3, max_steps=40, seed=7) and net.dt == 8000
    # a config that says otherwise does not change what the network runs with
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(cfg.read_text()), "train": {"scheduler": "random", "F": 1}}))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--config", str(other), "--out", str(out), "--modes", "steps"]) == 0
    text = capsys.readouterr().out
    assert "(frames of 8000 us), scheduler fifo, F=3" in text and "run options of the network file" in text
    assert main(["evaluate", str(run), "--out", str(out), "--modes", "steps", "--F", "inf"]) == 0
    assert "scheduler fifo, F=inf" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--out", str(out), "--F", "0"]) == 2
    assert "--F: 0 is outside 1.." in capsys.readouterr().err
    q = tmp_path / "q.npz"
    assert main(["export", str(run), "-o", str(q), "--quantize", "--chip", "edge"]) == 0
    assert Network.load(q).run_options == net.run_options and Network.load(q).dt == 8000
    assert main(["emulate", "--network", str(q), "--chip", "edge", "--core-neurons", "0", "--no-plots",
                 "--no-progress", "--out", str(out), "--batch", "4", "--mode", "steps"]) == 0
    text = capsys.readouterr().out
    assert "trained for fifo, F=3, all_at_once input" in text
    cells = [[c.strip() for c in line.split("|")[1:4]] for line in text.splitlines() if line.startswith("|")]
    assert [c for c in cells if c[0] == "steps"] == [["steps", "fifo", "3"]]


def test_print_config_lists_every_key_with_its_default(capsys):
    import re

    from asyncsnn.train.config import DataConfig, ModelConfig, OptimConfig

    assert main(["train", "--print-config"]) == 0
    out = capsys.readouterr().out
    for section, model in (("data", DataConfig), ("model", ModelConfig), ("train", OptimConfig)):
        assert f"[{section}]" in out
        for name, field in model.model_fields.items():
            assert re.search(rf"^{name} = .*# {re.escape(field.description)}$", out, re.M), name
    assert "\nlr = 0.005 " in out and "\nF = 8 " in out and '\nscheduler = "momentum" ' in out
    assert main(["experiment", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert '\nF = [1, 4, 16, "inf"] ' in out and "\ncurve_points = 60 " in out and "[train]" in out


@pytest.mark.parametrize("key, value, message", [
    ("train.lr", "abc", "train.lr: 'abc': input should be a valid number"),
    ("train.epochs", 2.5, "train.epochs: 2.5: input should be a valid integer"),
    ("model.hidden", "big", "model.hidden: 'big': input should be a valid list"),
    ("model.hidden", [8, "x"], "model.hidden[1]: 'x': input should be a valid integer"),
    ("data.options", 3, "data.options: 3: input should be a valid dictionary"),
    ("model.refractory", "maybe", "model.refractory: 'maybe'; allowed: true, false"),
    ("train.F", [2], "train.F: [2] is not an integer"),
])
def test_config_values_of_the_wrong_type_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, {key: value})


def test_cli_reports_a_config_type_error_without_a_traceback(tmp_path, capsys):
    assert main(["train", "--set", "train.lr=abc", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "invalid config: train.lr: 'abc'" in err and "Traceback" not in err


def test_the_readme_flow_chains(tmp_path, capsys):
    """train -> export to a fixed-point chip -> emulate there (on the exported placement) ->
    emulate the run itself on its test data: every command defaults to the same chip, and the
    emulator's accuracy on the run equals evaluate's."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data": {"options": TINY["data.options"], "n_frames": 12, "dt": 8000},
                               "model": {"hidden": [16]}, "train": {"epochs": 1, "F": 2}}))
    out = tmp_path / "runs"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    run = next(out.glob("train-*"))
    q = tmp_path / "edge.npz"
    assert main(["export", str(run), "-o", str(q), "--quantize", "--chip", "edge"]) == 0
    exported = Network.load(q)
    placed = asyncsnn.Chip.preset("edge").place(Network.load(run / "network.npz"))
    assert np.array_equal(exported.core_of, placed.core_of)  # the file holds the placement it checked
    args = ["--no-plots", "--no-progress", "--out", str(out), "--batch", "16", "--mode", "steps"]
    assert main(["emulate", "--network", str(q), "--chip", "edge", *args]) == 0
    capsys.readouterr()
    assert main(["emulate", "--network", str(run), *args]) == 0
    text = capsys.readouterr().out
    assert "chip loihi" in text and "16 test samples of manifold (frames of 8000 us)" in text
    (row,) = markdown_rows(text)
    assert main(["evaluate", str(run), "--out", str(out), "--limit", "16"]) == 0
    text = capsys.readouterr().out
    assert "chip loihi" in text
    rows = {r["engine"]: r for r in markdown_rows(text)}
    assert float(rows["emulator-steps"]["acc"]) == pytest.approx(float(row["acc"]), abs=1e-3)
    assert float(rows["emulator-events"]["energy nJ"]) > 0  # energy on a real chip preset
