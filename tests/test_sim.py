"""The PyTorch asynchronous simulator: golden cases, exact agreement with the emulator,
surrogate gradients, autograd through the schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import asyncsnn
from asyncsnn.generate import random_feedforward
from asyncsnn.sim import AsyncSimulator
from asyncsnn.sim import functional as fn
from helpers import golden_kwargs, golden_network, trace_rows
from strategies import f_values, frames, mappings, networks, schedulers, seeds

CAP = 60


def test_golden_cases(golden):
    for case in golden["cases"]:
        sim = AsyncSimulator(golden_network(case), core_of=case["core_of"])
        kw = golden_kwargs(case)
        r = sim(torch.tensor(np.array(case["frames"], np.float32))[None], trace=True, **kw)
        e = case["expected"]
        assert [list(t) for t in r.trace[0]] == e["trace"], case["name"]
        assert r.out_counts[0].tolist() == e["out_counts"]
        assert (int(r.synops[0]), int(r.steps[0]), int(r.unreleased[0])) == (e["synops"], e["steps"], e["unreleased"])
        assert r.v_final[0].tolist() == e["v_final"]
        first = None if r.first_out[0, 0] < 0 else r.first_out[0].tolist()
        assert first == e["first_out"]


def test_hash_matches_the_emulator(golden):
    for v in golden["hash_vectors"]:
        k = fn.hash_key(v["seed"], torch.tensor([v["sample"]]), v["frame"], torch.tensor([v["step"]]),
                        torch.tensor([v["source"]]))
        assert int(k[0, 0]) == v["key"]


@given(data=st.data(), net=networks(), scheduler=schedulers, F=f_values, seed=seeds,
       input_mode=st.sampled_from(["all_at_once", "scheduled"]))
def test_exact_agreement_with_the_emulator(data, net, scheduler, F, seed, input_mode):
    """A batch of samples: every spike (neuron, frame, step), output counts, synops, steps and
    final potentials equal the emulator's `steps` mode."""
    a = data.draw(frames(net.n_inputs, max_frames=3))
    b = data.draw(frames(net.n_inputs, max_frames=3))
    t = max(len(a), len(b))
    pad = lambda x: np.pad(x, ((0, t - len(x)), (0, 0)))  # noqa: E731
    batch = np.stack([pad(a), pad(b)])
    n_cores, core_of = data.draw(mappings(net.n_neurons))
    chip = asyncsnn.Chip.preset("ideal", mesh_width=n_cores)
    emu = chip.run(net, batch, mapping=core_of, scheduler=scheduler, F=F, seed=seed, sample_offset=3,
                   input_mode=input_mode, max_steps=CAP, trace=True)
    sim = AsyncSimulator(net, core_of=core_of)
    r = sim(torch.tensor(batch, dtype=torch.float32), scheduler=scheduler, F=F, seed=seed, sample_offset=3,
            input_mode=input_mode, max_steps=CAP, trace=True)
    for b in range(len(batch)):
        assert [list(x) for x in r.trace[b]] == trace_rows(emu, b)
    assert r.out_counts.detach().numpy().tolist() == emu.out_counts.tolist()
    assert r.synops.detach().numpy().astype(int).tolist() == emu.metrics["synops"].tolist()
    assert r.steps.numpy().tolist() == emu.metrics["steps"].tolist()
    assert r.unreleased.numpy().astype(int).tolist() == emu.metrics["unreleased"].tolist()
    assert r.v_final.detach().double().numpy().tolist() == emu.v_final.tolist()


@pytest.mark.parametrize("kind", fn.SURROGATES)
def test_surrogate_backward_matches_autograd_of_smooth_primitive(kind):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    slope = 5.0
    y = fn.spike(x, kind, slope)
    assert torch.equal(y.detach(), (x > 0).double())
    (g,) = torch.autograd.grad(y.sum(), x)
    xs = x.detach().clone().requires_grad_(True)
    smooth = {"fast_sigmoid": lambda z: z / (1 + slope * z.abs()),
              "atan": lambda z: torch.atan(slope * z) / torch.pi,
              "sigmoid": lambda z: torch.sigmoid(slope * z)}[kind](xs)
    (gs,) = torch.autograd.grad(smooth.sum(), xs)
    assert torch.allclose(g, gs, atol=1e-12)


def test_gradients_flow_through_the_schedule():
    torch.manual_seed(0)
    net = random_feedforward([12, 8, 3], seed=1, refractory=True)
    sim = AsyncSimulator(net, core_of=[0] * 4 + [1] * 4 + [0] * 3)
    x = (torch.rand(4, 5, 12) < 0.4).float()
    r = sim(x, scheduler="momentum", F=1, seed=2)
    loss = torch.nn.functional.cross_entropy(r.out_counts.sum(1), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    g = sim.weight.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert (g[~sim.mask] == 0).all()  # no gradient to weights that do not exist
    hidden_to_out = g[8:, 12:20]
    assert hidden_to_out.abs().sum() > 0  # through the spikes of the hidden layer


def test_bad_arguments():
    net = random_feedforward([4, 3], seed=0)
    sim = AsyncSimulator(net)
    x = torch.ones(1, 2, 4)
    with pytest.raises(ValueError, match="scheduler"):
        sim(x, scheduler="lifo")
    with pytest.raises(ValueError, match="frames"):
        sim(torch.ones(1, 2, 5))
    with pytest.raises(ValueError, match="F"):
        sim(x, F=0)
    with pytest.raises(ValueError, match="input_mode"):
        sim(x, input_mode="later")
    with pytest.raises(ValueError, match="core_of"):
        AsyncSimulator(net, core_of=[0, 1])
