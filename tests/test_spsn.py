"""SPSN neurons: the parallel membrane equals the sequential recurrence, stochastic firing and
its gradients, the LIF baselines agree with each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import hashing
from asyncsnn.spsn import SeqNet
from asyncsnn.spsn import functional as F
from asyncsnn.spsn import lif
from helpers import DEVICES

DECAYS = st.floats(0.0, 0.995)


@pytest.mark.parametrize("device", DEVICES)
@given(t=st.integers(0, 400), n=st.integers(1, 4), alpha=DECAYS, beta=DECAYS, seed=st.integers(0, 2**32 - 1),
       method=st.sampled_from(F.METHODS))
def test_parallel_membrane_equals_the_sequential_recurrence(device, t, n, alpha, beta, seed, method):
    """On the CPU, and on a GPU where there is one (the parallel membrane there against the
    sequential recurrence on the CPU)."""
    x = torch.tensor(np.random.default_rng(seed).normal(size=(2, t, n)))  # float64
    par = F.membrane(x.to(device), alpha, beta, method).cpu()
    seq = F.membrane_sequential(x, alpha, beta)
    assert par.shape == seq.shape
    assert torch.allclose(par, seq, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
@given(t=st.integers(1, 300), chunk=st.integers(1, 70), alpha=DECAYS, beta=DECAYS, seed=st.integers(0, 2**32 - 1))
def test_chunked_membrane_and_its_adjoint_for_any_chunk_length(device, t, chunk, alpha, beta, seed):
    """Any chunk length, dividing T or not (the last chunk padded): the chunked filter equals
    the recurrence, and its written-out backward equals autograd through the direct product on
    the CPU (on a GPU too, where there is one)."""
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(2, t, 3)), requires_grad=True)
    g = torch.tensor(rng.normal(size=(2, t, 3)))
    xd = x.detach().to(device).requires_grad_()
    out = F.membrane(xd, alpha, beta, "chunked", chunk=chunk)
    assert torch.allclose(out.cpu(), F.membrane_sequential(x.detach(), alpha, beta), rtol=1e-9, atol=1e-9)
    (gx,) = torch.autograd.grad(out, xd, g.to(device))
    (ref,) = torch.autograd.grad(F.membrane(x, alpha, beta, "direct"), x, g)
    assert torch.allclose(gx.cpu(), ref, rtol=1e-9, atol=1e-9)


def test_chunk_lengths_and_the_automatic_method():
    assert [F.chunk_len(t) for t in (1, 64, 100, 1000, 10000, 97, 50000)] == [1, 64, 25, 25, 40, 32, 50]
    assert F.resolve_method("auto", 10) == "chunked" and F.resolve_method("auto", F.CHUNKED_MAX_T + 1) == "fft"
    with pytest.raises(ValueError, match="chunk"):
        F.membrane(torch.zeros(1, 100, 2), 0.9, 0.9, "chunked", chunk=0)
    with pytest.raises(ValueError, match="chunk: 1 cuts 5000 steps into 5000 chunks; at most 4096"):
        F.membrane(torch.zeros(1, 5000, 1), 0.9, 0.9, "chunked", chunk=1)
    assert all(-(-t // F.chunk_len(t)) <= F.MAX_CHUNKS for t in (F.CHUNKED_MAX_T, F.CHUNKED_MAX_T - 1))


def test_float32_long_sequences_and_the_kernel_cache():
    x = (torch.rand(2, 3000, 3, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    seq = F.membrane_sequential(x.double(), 0.95, 0.9)
    for method in ("fft", "direct", "chunked"):
        assert torch.allclose(F.membrane(x, 0.95, 0.9, method).double(), seq, atol=1e-4)
    a = F.kernel_fft(0.95, 0.9, 3000, F._fft_len(3000), torch.float32, "cpu")
    assert F.kernel_fft(0.95, 0.9, 3000, F._fft_len(3000), torch.float32, "cpu") is a  # cached
    n = F._fft_len(3000)
    assert n >= 2 * 3000 - 1 and n < 2 * 3000 + 200


def test_gradient_of_the_parallel_membrane():
    x = torch.randn(2, 30, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: F.membrane(y, 0.8, 0.7, "fft"), (x,))
    assert torch.autograd.gradcheck(lambda y: F.membrane(y, 0.8, 0.8, "direct"), (x,))
    assert torch.autograd.gradcheck(lambda y: F.membrane(y, 0.8, 0.7, "chunked", chunk=7), (x,))  # 5 chunks


def test_straight_through_firing():
    u = torch.linspace(-4, 4, 41, dtype=torch.float64, requires_grad=True)
    uni = torch.rand(41, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s = F.fire(u, "sb", uniform=uni)
    assert torch.equal(s.detach(), (uni < torch.sigmoid(u.detach())).double())
    (g,) = torch.autograd.grad(s.sum(), u)
    p = torch.sigmoid(u.detach())
    assert torch.allclose(g, p * (1 - p))
    d = F.fire(u, "deterministic")
    assert torch.equal(d.detach(), (u.detach() > 0).double())


def test_gumbel_softmax_fires_with_probability_sigmoid_u_and_its_gradient():
    u = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    draws = torch.stack([F.fire(u, "gs", tau=0.5, generator=gen).detach() for _ in range(20000)])
    p = torch.sigmoid(u)
    se = (p * (1 - p) / 20000).sqrt()
    assert ((draws.mean(0) - p).abs() < 5 * se + 1e-3).all()
    uu = u.clone().requires_grad_(True)
    uni = torch.full_like(u, 0.3)
    (g,) = torch.autograd.grad(F.fire(uu, "gs", uniform=uni, tau=0.5).sum(), uu)
    z = u + np.log(0.3) - np.log(0.7)
    sz = torch.sigmoid(z / 0.5)
    assert torch.allclose(g, sz * (1 - sz) / 0.5)


def test_hash_keys_are_the_documented_hash():
    sample = torch.tensor([0, 7])
    k = F.hash_keys(11, sample, 3, 5, offset=40)
    assert k.shape == (2, 3, 5) and k.dtype == torch.int64
    for b, smp in enumerate(sample.tolist()):
        for t in range(3):
            keys = hashing.key(11, smp, t, 2**32 - 1, np.arange(40, 45))
            assert np.array_equal(k[b, t].numpy(), keys.astype(np.int64))
    big = F.hash_keys(0, torch.arange(8), 50, 50)
    assert abs(float(big.double().mean()) / 2**32 - 0.5) < 0.01


def test_rate_penalty_acts():
    s = torch.zeros(2, 10, 3)
    s[:, :5, 0] = 1  # neuron 0 fires at rate 0.5
    assert float(F.rate_penalty(s, target=0.5)) == 0.0
    assert float(F.rate_penalty(s, target=0.1)) == pytest.approx(0.4**2 / 3)
    torch.manual_seed(0)
    net = SeqNet([10, 16, 3], alpha=0.5, beta=0.5)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x = (torch.rand(8, 20, 10) < 0.3).float()
    before = float(net(x).spikes[0].detach().mean())
    for _ in range(30):
        opt.zero_grad()
        net(x).rate_penalty(0.05).backward()
        opt.step()
    assert float(net(x).spikes[0].detach().mean()) < before / 3


def lif_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(4, 60, 9, generator=g) < 0.4).float()
    w = (torch.randn(7, 9, generator=g) * 0.8).requires_grad_(True)
    b = (torch.randn(7, generator=g) * 0.1).requires_grad_(True)
    return x, w, b


@pytest.mark.parametrize("impl", ["fused", "compiled"])
def test_lif_implementations_agree_with_the_plain_loop(impl):
    x, w, b = lif_case()
    weight = torch.arange(60.0)[None, :, None]
    ref = lif.lif_loop(x, w, 0.8, 0.9, 0.3, bias=b)
    gw_ref, gb_ref = torch.autograd.grad((ref * weight).sum(), (w, b))
    out = lif.LIF_IMPLS[impl](x, w, 0.8, 0.9, 0.3, bias=b)
    gw, gb = torch.autograd.grad((out * weight).sum(), (w, b))
    assert 0.05 < float(ref.detach().mean()) < 0.95
    assert torch.equal(out, ref)
    assert torch.allclose(gw, gw_ref, rtol=1e-4, atol=1e-4) and torch.allclose(gb, gb_ref, rtol=1e-4, atol=1e-4)


def test_lif_without_reset_is_the_spsn_membrane_thresholded():
    """With a threshold no potential reaches, LIF never resets: its pre-spike membrane is
    exactly SPSN's parallel membrane (same kernels)."""
    x, w, _ = lif_case(1)
    cur = x @ w.detach().t()
    seq = F.membrane_sequential(cur.double(), 0.8, 0.9)
    par = F.membrane(cur.double(), 0.8, 0.9, "fft")
    assert torch.allclose(seq, par, atol=1e-10)
    assert not lif.lif_loop(x, w.detach(), 0.8, 0.9, theta=float(seq.max()) + 1).any()


def test_seqnet_eval_with_the_hash_is_reproducible_and_bad_arguments_raise():
    net = SeqNet([6, 5, 2], eval_firing="hash", seed=4).eval()
    x = (torch.rand(3, 12, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    a, b = net(x).spikes[0], net(x).spikes[0]
    assert torch.equal(a, b) and 0 < float(a.detach().mean()) < 1
    assert not torch.equal(net(x, sample_offset=1).spikes[0], a)
    for kwargs, field in ((dict(neuron="izh"), "neuron"), (dict(firing="x"), "firing"), (dict(alpha=1.0), "alpha"),
                          (dict(method="wavelet"), "method"), (dict(lif_impl="cuda"), "lif_impl"),
                          (dict(readout="sum"), "readout")):
        with pytest.raises(ValueError, match=field):
            SeqNet([6, 5, 2], **kwargs)
    with pytest.raises(ValueError, match="x: expected"):
        net(torch.zeros(3, 12, 7))


def test_spsn_trains_through_asyncsnn_train_and_resumes(tmp_path, capsys):
    import json

    from asyncsnn.cli import main

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({
        "data": {"options": {"n_classes": 4, "train_per_class": 40, "test_per_class": 20}, "n_frames": 25,
                 "dt": 4000},
        "model": {"hidden": [32], "theta": 4.0, "gain": 8.0},
        "train": {"method": "spsn", "epochs": 6, "lr": 0.005, "batch_size": 16, "rate_penalty": 0.1}}))
    out = tmp_path / "runs"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "SPSN network 100-32-4" in text
    run = next(out.glob("train-spsn*"))
    hist = json.loads((run / "metrics.json").read_text())["history"]
    assert hist[-1]["test_accuracy"] > 0.6  # chance is 0.25
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["test_steps"] == 25 and hist[-1]["test_spikes"] > 0
    assert main(["train", "--resume", str(run), "--epochs", "7", "--no-progress"]) == 0
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 7
    # the run's network.npz is the chip form; `asyncsnn evaluate` runs it in PyTorch (the exact
    # deployed model) and on the emulator, which agree exactly in steps mode
    net = asyncsnn.Network.load(run / "network.npz")
    assert [p.kind for p in net.populations] == ["stochastic", "integrator"] and net.n_inputs == 101
    capsys.readouterr()
    assert main(["evaluate", str(run), "--out", str(tmp_path / "ev"), "--chip", "ideal", "--core-neurons", "0"]) == 0
    rows = json.loads(next((tmp_path / "ev").glob("evaluate*/results.json")).read_text())["rows"]
    acc = {r["engine"]: r["accuracy"] for r in rows}
    assert acc["pytorch"] == acc["emulator-steps"] == acc["emulator-events"] > 0.6
    spikes = {r["engine"]: r["spikes"] for r in rows}
    assert spikes["pytorch"] == spikes["emulator-steps"] > 0
    assert main(["train", "--set", "train.method=spsn", "--set", "model.firing=bernoulli", "--out", str(out)]) == 2
    assert "model.firing" in capsys.readouterr().err
    # fine-tune the SPSN network as an LIF network for the asynchronous scheduler
    assert main(["train", "--config", str(cfg), "--set", "train.method=unlayered", "--set", f"model.init_from={run}",
                 "--set", "train.epochs=2", "--set", "train.lr=0.002", "--out", str(out), "--no-progress"]) == 0
    ft = next(out.glob("train-unlayered*"))
    before = json.loads((ft / "conversion.json").read_text())["test"]
    after = json.loads((ft / "metrics.json").read_text())["history"][-1]
    assert before["samples"] == 80 and after["test_accuracy"] > max(0.6, before["accuracy"])  # chance is 0.25
    assert asyncsnn.Network.load(ft / "network.npz").n_inputs == 101  # with the bias channel
    for bad in (["--set", "train.method=spsn"], ["--set", f"model.init_from={ft}"]):
        assert main(["train", "--config", str(cfg), "--set", f"model.init_from={run}", *bad[-2:], "--out", str(out),
                     "--no-progress"] if bad[-1].startswith("train") else
                    ["train", "--config", str(cfg), "--set", "train.method=unlayered", *bad, "--out", str(out),
                     "--no-progress"]) == 2
        assert "model.init_from" in capsys.readouterr().err


def test_spsn_to_lif_keeps_the_membrane_where_the_dynamics_coincide():
    """With alpha = 0 and no firing (a threshold out of reach), the converted LIF neuron's
    potential is the SPSN membrane: v <- beta v + (1 - beta) W x. The output threshold is the
    median leading readout potential."""
    from asyncsnn.spsn.convert import to_lif

    torch.manual_seed(0)
    model = SeqNet([6, 5, 3], alpha=0.0, beta=0.75, theta=1e6).eval()
    x = (torch.rand(4, 9, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    net = to_lif(model, x)
    assert net.n_inputs == 7 and [p.reset for p in net.populations] == ["subtract", "subtract"]
    u = F.membrane_sequential(model.layers[0](x).double(), 0.0, 0.75)  # (B, T, 5)
    res = asyncsnn.Chip.preset("ideal").run(net, deploy_with_bias(x), scheduler="layered")
    assert np.allclose(res.v_final[:, :5], u[:, -1].detach().numpy(), atol=1e-4)
    top = model(x).readout.amax(2).flatten().double().detach()
    assert net.populations[1].theta == pytest.approx(max(float(torch.quantile(top, 0.5)), 1e-3), rel=1e-5)
    b = model.layers[1].bias.detach().double().numpy() * 0.25
    assert np.allclose(net.projections[-1].weights[:, 6], b, atol=1e-6)  # the output's bias column
    with pytest.raises(ValueError, match="calibration"):
        to_lif(model, x[:, :, :4])


def deploy_with_bias(x):
    from asyncsnn.spsn.deploy import with_bias

    return with_bias(x)


@pytest.mark.parametrize("impl", ["loop", "compiled"])
def test_seqnet_lif_implementations_agree(impl):
    """The step-by-step network loop (every layer at each step) and the layer-by-layer fused
    recurrence give the same spikes, logits and gradients."""
    x = (torch.rand(3, 40, 8, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    nets = {}
    for k in ("fused", impl):
        torch.manual_seed(5)
        nets[k] = SeqNet([8, 12, 10, 3], neuron="lif", lif_impl=k, gain=6.0, theta=0.5)
    outs = {k: n(x) for k, n in nets.items()}
    grads = {}
    for k, o in outs.items():
        o.logits.sum().backward()
        grads[k] = [p.grad for p in nets[k].parameters()]
    assert all(torch.equal(a, b) for a, b in zip(outs["fused"].spikes, outs[impl].spikes))
    assert 0.05 < float(outs["fused"].spikes[0].detach().mean()) < 0.95
    assert torch.allclose(outs["fused"].logits, outs[impl].logits, atol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(grads["fused"], grads[impl]))
