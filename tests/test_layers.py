"""Layer modules (asyncsnn.layers): a user's own model of AsyncLIF layers runs, bit for bit, as
the whole-network simulator and the emulator run its chip network; gradients agree; state
streams; SPSN layers carry their state; the modules pickle; bad models get clear errors."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import asyncsnn
import asyncsnn.layers as L
from asyncsnn.errors import NetworkError
from asyncsnn.sim import AsyncSimulator
from asyncsnn.sim import functional as fn
from asyncsnn.spsn import functional as spsn_fn
from asyncsnn.spsn.model import SeqNet
from helpers import trace_rows
from strategies import BETAS, GRID, f_values, frames, grid_matrix, seeds

CAP = 60


@st.composite
def layer_models(draw, max_inputs: int = 6, max_hidden: int = 2, max_size: int = 6):
    """A Sequential of Linear + AsyncLIF layers on the exact weight grid: random sizes, neuron
    parameters, biases (on the grid too), core sizes."""
    n_in = draw(st.integers(1, max_inputs))
    sizes = [draw(st.integers(1, max_size)) for _ in range(draw(st.integers(0, max_hidden)) + 1)]
    mods, prev = [], n_in
    for k, size in enumerate(sizes):
        lin = torch.nn.Linear(prev, size, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(draw(grid_matrix(size, prev))))
        lif = L.AsyncLIF(size, theta=draw(st.sampled_from([0.5, 1.0, 1.5])), beta=draw(st.sampled_from(BETAS)),
                         reset=draw(st.sampled_from(["zero", "subtract"])), refractory=draw(st.booleans()),
                         bias=draw(st.booleans()), output=k == len(sizes) - 1,
                         core_size=draw(st.one_of(st.none(), st.integers(1, size))))
        if lif.bias is not None:
            with torch.no_grad():
                lif.bias.copy_(torch.tensor(draw(grid_matrix(1, size, -32, 48)))[0])
        mods += [lin, lif]
        prev = size
    return L.Sequential(*mods)


@pytest.mark.parametrize("scheduler", asyncsnn.SCHEDULERS)
@given(data=st.data(), model=layer_models(), F=f_values, seed=seeds,
       input_mode=st.sampled_from(["all_at_once", "scheduled"]))
def test_layer_model_equals_simulator_and_emulator(scheduler, data, model, F, seed, input_mode):
    """A random layer model, run by asyncsnn.layers.run, gives every spike (neuron, frame,
    step), output count, synaptic operation, step, potential and first spike of the
    whole-network simulator and of the emulator's steps mode on to_network(model)."""
    n_in = model[0].in_features
    a = data.draw(frames(n_in, max_frames=4, max_count=3))
    b = data.draw(frames(n_in, max_frames=4, max_count=3))
    t = max(len(a), len(b))
    pad = lambda x: np.pad(x, ((0, t - len(x)), (0, 0)))  # noqa: E731
    batch = np.stack([pad(a), pad(b)])
    kw = dict(scheduler=scheduler, F=F, seed=seed, sample_offset=3, input_mode=input_mode, max_steps=CAP, trace=True)
    ours = L.run(model, torch.tensor(batch, dtype=torch.float32), **kw)
    net = L.to_network(model)
    x_chip = L.chip_frames(model, batch)
    sim = AsyncSimulator(net)(torch.tensor(x_chip, dtype=torch.float32), **kw)
    chip = asyncsnn.Chip.preset("ideal", mesh_width=int(net.core_of.max()) + 1)
    emu = chip.run(net, x_chip, **kw)
    for k in range(len(batch)):
        assert [list(x) for x in ours.trace[k]] == [list(x) for x in sim.trace[k]] == trace_rows(emu, k)
    assert ours.out_counts.detach().numpy().tolist() == emu.out_counts.tolist()
    assert ours.synaptic_operations.numpy().astype(int).tolist() == emu.metrics["synaptic_operations"].tolist()
    assert ours.steps.tolist() == emu.metrics["steps"].tolist()
    assert ours.unreleased.numpy().astype(int).tolist() == emu.metrics["unreleased"].tolist()
    assert ours.v_final.detach().double().numpy().tolist() == emu.v_final.tolist()
    assert ours.first_spike.tolist() == emu.first_spike.tolist() == sim.first_spike.tolist()
    labels = np.array([0, model[-1].size - 1])
    mine, theirs = ours.sample_metrics(labels), sim.sample_metrics(labels)
    assert set(mine) == set(theirs)
    for key in mine:
        assert np.array_equal(mine[key], theirs[key], equal_nan=True), key


@pytest.mark.parametrize("scheduler", ["momentum", "fifo"])
def test_layer_gradients_equal_the_whole_network_simulator(scheduler):
    """Autograd through the layers' schedule gives the gradients of the whole-network simulator
    (float64) for the weights and the biases."""
    torch.manual_seed(0)
    model = L.Sequential(torch.nn.Linear(10, 8, bias=False), L.AsyncLIF(8, beta=0.75, bias=True, core_size=3),
                         torch.nn.Linear(8, 3, bias=False), L.AsyncLIF(3, beta=0.75, output=True)).double()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[1].bias.uniform_(0.0, 0.4)
        model[2].weight.mul_(2.0).add_(0.3)
        for p in model.parameters():  # what the chip network holds: float32 values
            p.copy_(p.float().double())
    x = (torch.rand(4, 6, 10, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    y = torch.tensor([0, 1, 2, 0])
    opts = asyncsnn.RunOptions(scheduler=scheduler, F=1, seed=5)
    res = L.run(model, x, opts)
    loss = torch.nn.functional.cross_entropy(res.out_counts.sum(1), y) + 0.01 * res.spike_counts.sum()
    loss.backward()
    assert res.out_counts.sum() > 0
    sim = AsyncSimulator(L.to_network(model)).double()
    r = sim(torch.tensor(L.chip_frames(model, x), dtype=torch.float64), opts, engine="autograd")
    assert torch.equal(r.out_counts, res.out_counts.detach())
    (torch.nn.functional.cross_entropy(r.out_counts.sum(1), y) + 0.01 * r.spike_counts.sum()).backward()
    g_in, g_hidden = sim.weights[0].grad, sim.weights[1].grad
    assert g_hidden.abs().sum() > 0
    torch.testing.assert_close(model[0].weight.grad, g_in[:, :10], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(model[1].bias.grad, g_in[:, 10], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(model[2].weight.grad, g_hidden, rtol=1e-9, atol=1e-12)


def _model(seed: int = 0, bias: bool = True) -> L.Sequential:
    torch.manual_seed(seed)
    model = L.Sequential(torch.nn.Linear(12, 10, bias=False), L.AsyncLIF(10, beta=0.5, bias=bias, core_size=4),
                         torch.nn.Linear(10, 4, bias=False), L.AsyncLIF(4, beta=0.5, output=True))
    with torch.no_grad():
        for lin in (model[0], model[2]):
            lin.weight.copy_(torch.round(lin.weight * 3 * GRID) / GRID + 0.25)
    return model


def test_a_stream_fed_in_pieces_equals_the_whole():
    """run(..., state=) continues a stream: frame indices (and so the hash schedule), pending
    spikes, potentials and the global step count carry over, with a step cap leaving spikes
    pending across the cut."""
    model = _model()
    x = (torch.rand(3, 9, 12, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    opts = asyncsnn.RunOptions(scheduler="random", F=1, seed=3, max_steps=3)
    whole = L.run(model, x, opts)
    first = L.run(model, x[:, :4], opts)
    assert first.unreleased.sum() > 0  # the cut falls where spikes are still pending
    second = L.run(model, x[:, 4:], opts, state=first.state)
    assert torch.equal(torch.cat([first.out_counts, second.out_counts], 1), whole.out_counts)
    assert torch.equal(second.steps, whole.steps)
    assert torch.equal(second.v_final, whole.v_final)
    assert torch.equal(first.spike_counts + second.spike_counts, whole.spike_counts)


def test_without_a_clock_an_async_lif_is_the_layer_synchronous_lif():
    """Called once per frame with no clock, AsyncLIF is the plain LIF loop; that loop equals
    F = inf with the layered scheduler for refractory, zero-reset neurons (DESIGN's
    equivalence)."""
    torch.manual_seed(4)
    model = L.Sequential(torch.nn.Linear(6, 5, bias=False), L.AsyncLIF(5, beta=0.75, refractory=True, bias=True),
                         torch.nn.Linear(5, 3, bias=False), L.AsyncLIF(3, beta=0.75, refractory=True, output=True))
    with torch.no_grad():
        model[0].weight.mul_(4).add_(0.2)
        model[2].weight.mul_(4).add_(0.3)
        model[1].bias.fill_(0.3)
    x = (torch.rand(2, 7, 6, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    state, outs = None, []
    for f in range(x.shape[1]):
        out, state = model(x[:, f], state)
        outs.append(out)
    loop = torch.stack(outs, 1)
    assert loop.sum() > 0
    res = L.run(model, x, scheduler="layered", F=None)
    assert torch.equal(loop, res.out_counts)


def _gauss(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-x * x)


def test_custom_surrogate_function_shapes_the_gradient():
    """A surrogate given as a function is the derivative used backward; a named one differs."""
    x = torch.linspace(-1, 1, 9, requires_grad=True)
    (g,) = torch.autograd.grad(fn.spike(x, _gauss).sum(), x)
    assert torch.allclose(g, _gauss(x.detach()))
    grads = []
    for surrogate in (_gauss, "fast_sigmoid"):
        model = _model()
        for m in model:
            if isinstance(m, L.AsyncLIF):
                m.surrogate = fn.Surrogate.of(surrogate)
        L.run(model, torch.ones(2, 3, 12), F=2).out_counts.sum().backward()
        grads.append(model[0].weight.grad.clone())
    assert grads[0].abs().sum() > 0 and not torch.allclose(grads[0], grads[1])
    with pytest.raises(ValueError, match="surrogate"):
        fn.spike(x, lambda z: z.sum())


def test_layer_models_pickle_deepcopy_and_torch_save():
    model = _model()
    model[1].surrogate = fn.Surrogate.of(_gauss)
    x = torch.ones(2, 3, 12)
    ref = L.run(model, x, F=2).out_counts
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    again = _model(seed=9)
    again.load_state_dict(torch.load(buf, weights_only=True))
    again[1].surrogate = model[1].surrogate
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model), again):
        assert torch.equal(L.run(other, x, F=2).out_counts, ref)


def test_user_model_with_its_own_forward_runs():
    """Any module that threads its layers' state runs (here with a skip connection)."""

    class Skip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(5, 6, bias=False)
            self.lif1 = L.AsyncLIF(6, beta=0.5)
            self.fc2 = torch.nn.Linear(6, 2, bias=False)
            self.skip = torch.nn.Linear(5, 2, bias=False)
            self.out = L.AsyncLIF(2, output=True)

        def forward(self, x, state=None, clock=None):
            s1, s2 = state or (None, None)
            z, s1 = self.lif1(self.fc1(x), s1, clock)
            y, s2 = self.out(self.fc2(z) + self.skip(x), s2, clock)
            return y, (s1, s2)

    torch.manual_seed(0)
    m = Skip()
    res = L.run(m, torch.ones(3, 4, 5), F=1)
    assert res.out_counts.shape == (3, 4, 2)
    res.out_counts.sum().backward()
    assert m.skip.weight.grad is not None


def test_bad_models_and_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="beta"):
        L.AsyncLIF(3, beta=1.5)
    with pytest.raises(ValueError, match="theta"):
        L.AsyncLIF(3, theta=0.0)
    with pytest.raises(ValueError, match="reset"):
        L.AsyncLIF(3, reset="hard")
    with pytest.raises(ValueError, match="size"):
        L.AsyncLIF(0)
    model = _model()
    with pytest.raises(ValueError, match="frames"):
        L.run(model, torch.ones(2, 12))
    with pytest.raises(ValueError, match="frames"):
        L.run(model, torch.full((2, 3, 12), float("nan")))
    with pytest.raises(ValueError, match=r"frames: expected \(batch, frames, 12\)"):
        L.run(model, torch.ones(2, 3, 11))
    with pytest.raises(ValueError, match=r"current: expected \(batch, 10\)"):
        model[1](torch.ones(2, 9))
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"0\.weight"):
        L.run(model, torch.ones(2, 3, 12))
    no_out = L.Sequential(torch.nn.Linear(3, 2, bias=False), L.AsyncLIF(2))
    with pytest.raises(ValueError, match="output=True"):
        L.run(no_out, torch.ones(1, 2, 3))
    with pytest.raises(NetworkError, match="bias"):
        L.to_network(L.Sequential(torch.nn.Linear(3, 2), L.AsyncLIF(2, output=True)))
    with pytest.raises(NetworkError, match="Conv1d"):
        L.to_network(L.Sequential(torch.nn.Conv1d(1, 1, 1), L.AsyncLIF(2, output=True)))
    with pytest.raises(NetworkError, match="Sequential"):
        L.to_network(torch.nn.Module())
    with pytest.raises(ValueError, match="mode"):
        L.run(_model(), torch.ones(1, 2, 12), mode="events")


def test_spsn_layer_streams_and_matches_seqnet():
    """The SPSN layer fed in pieces equals it fed whole (float64, 1e-10); a Sequential of
    Linear + SPSN + Linear + LI computes what SeqNet computes with the same weights."""
    torch.manual_seed(0)
    layer = L.SPSN(5, alpha=0.8, beta=0.6, eval_firing="deterministic", bias=True).double().eval()
    x = torch.randn(2, 40, 5, dtype=torch.float64)
    s_whole, st_whole = layer(x)
    s1, st = layer(x[:, :13])
    s2, st = layer(x[:, 13:], st)
    u_whole, _ = L.functional.spsn_membrane(x, None, 0.8, 0.6)
    u1, mid = L.functional.spsn_membrane(x[:, :13], None, 0.8, 0.6)
    u2, end = L.functional.spsn_membrane(x[:, 13:], mid, 0.8, 0.6)
    torch.testing.assert_close(torch.cat([u1, u2], 1), u_whole, rtol=0, atol=1e-10)
    torch.testing.assert_close(end.i, st_whole.i, rtol=0, atol=1e-10)
    assert torch.equal(torch.cat([s1, s2], 1), s_whole)
    seq = SeqNet([6, 5, 3], neuron="spsn", alpha=0.8, beta=0.6, eval_firing="deterministic", readout="mean").double()
    seq.eval()
    mine = L.Sequential(torch.nn.Linear(6, 5), L.SPSN(5, alpha=0.8, beta=0.6), torch.nn.Linear(5, 3),
                        L.LI(3, alpha=0.8, beta=0.6)).double().eval()
    mine[0].load_state_dict(seq.layers[0].state_dict())
    mine[2].load_state_dict(seq.layers[1].state_dict())
    xin = (torch.rand(4, 30, 6) < 0.3).double()
    u, _ = mine(xin)
    torch.testing.assert_close(u.mean(1), seq(xin).logits, rtol=1e-12, atol=1e-12)
    assert spsn_fn.resolve_method("auto", 30) == "chunked"


def test_the_own_model_example_trains_and_the_chip_agrees(capsys):
    """examples/own_model.py: a plain PyTorch loop over a user's model, then the chip gives the
    same output counts and accuracy."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "own_model.py"
    spec = importlib.util.spec_from_file_location("own_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--epochs", "1", "--per-class", "8"])
    assert out["same"] and out["accuracy"] == out["pytorch_accuracy"]
    assert "same output counts as PyTorch: True" in capsys.readouterr().out
