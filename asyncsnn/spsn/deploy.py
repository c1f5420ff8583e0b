"""Deploy SPSN networks on the chip, and simulate the deployed network in PyTorch bit for bit.

:func:`export` turns a :class:`~asyncsnn.spsn.model.SeqNet` of SPSN neurons into an emulator
network: each hidden layer becomes a ``stochastic`` population, the readout an ``integrator``
population, and one frame of the chip is one time step of the model. The SPSN membrane

    I[t] = alpha I[t-1] + X[t],   U[t] = beta U[t-1] + (1 - beta) I[t]

is the chip's ``i <- alpha i + W' x``, ``v <- beta v + i`` with ``W' = (1 - beta) W``. Biases become
the weights of one extra input channel that fires once in every frame (:func:`with_bias`), so
neuron ``n`` is the chip's source ``chip_inputs + n`` and the hash draws of the chip, of
:func:`simulate` and of ``SeqNet(eval_firing="hash")`` are the same draws.

:func:`simulate` runs a network of stochastic and integrator populations (any graph) in PyTorch
exactly as the emulator does: per frame the traces decay and take the input, then the
populations draw in population order and each draw's spikes reach every target's trace at
once. In ``f32`` it equals the emulator bit for bit where the sums are exact (weights on a grid
such as multiples of 1/64, as in the validation contract); in the chip's fixed point it is
integer arithmetic, equal always (without a release limit ``F``; with one, a draw's spikes
arrive over several steps, which differs only where a trace saturates). ``SeqNet``'s own
``hash`` evaluation computes the membrane by convolution in floating point: it makes the same
draws from potentials equal to float rounding.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .. import hashing
from ..network import Network, Population, Projection, append_bias_channel
from ..sim import fixed
from ..stochastic import LOGIT_MAX
from . import functional as F
from .model import SeqNet


def export(model: SeqNet) -> Network:
    """The chip network of an SPSN ``SeqNet`` (hidden layers ``stochastic``, readout ``integrator``).

    The network has ``model.chip_inputs`` input channels: the model's inputs, then (when the
    layers have biases) the bias channel; feed it frames from :func:`with_bias`."""
    if model.neuron != "spsn":
        raise ValueError(f"model.neuron: {model.neuron!r}; export deploys SPSN networks (train LIF networks "
                         "for the chip with the asynchronous simulator instead)")
    pops = [Population(size, theta=model.theta, beta=model.beta, kind="stochastic", alpha=model.alpha,
                       name=f"hidden{k}") for k, size in enumerate(model.sizes[1:-1])]
    pops.append(Population(model.sizes[-1], theta=1.0, beta=model.beta, kind="integrator", alpha=model.alpha,
                           name="readout"))
    n_in, projs = seqnet_projections(model, 1.0 - model.beta)
    return Network(n_in, pops, projs, output=len(pops) - 1)


def seqnet_projections(model: SeqNet, scale: float) -> tuple[int, list]:
    """The inputs and projections of a ``SeqNet``'s layers with weights and biases times
    ``scale``: a chain of populations, the biases as weights of one more input channel (the
    bias channel, last)."""
    sizes, m = model.sizes, model.sizes[0]
    bias = model.layers[0].bias is not None
    n_in = m + int(bias)
    projs = []
    for k, layer in enumerate(model.layers):
        w = (layer.weight.detach().double().cpu().numpy() * scale).astype(np.float32)
        b = (layer.bias.detach().double().cpu().numpy() * scale).astype(np.float32) if bias else None
        if k == 0:
            full = np.zeros((sizes[1], n_in), np.float32)
            full[:, :m] = w
            if b is not None:
                full[:, m] = b
            projs.append(Projection("input", 0, full))
            continue
        projs.append(Projection(k - 1, k, w))
        if b is not None:
            col = np.zeros((sizes[k + 1], n_in), np.float32)
            col[:, m] = b
            projs.append(Projection("input", k, col))
    return n_in, projs


def with_bias(x, model: Optional[SeqNet] = None, *, bias: bool = True) -> np.ndarray:
    """Frames ``(B, T, M)`` of event counts with the bias channel appended (one event per frame),
    as ``uint32`` for the emulator. ``model``: append only if its layers have biases."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 3:
        raise ValueError(f"x: expected (batch, frames, channels), got shape {a.shape}")
    if model is not None:
        bias = model.layers[0].bias is not None
    a = a.astype(np.uint32)
    if not bias:
        return a
    return append_bias_channel(a)


def _blocks(net: Network) -> tuple[list, dict]:
    """Per target population: the dense weights from the input and from each source population,
    cut out of the reference model's dense matrix (duplicates summed in float32, as the chip
    merges them)."""
    w = net.dense_weights()
    m = net.n_inputs
    w_in: list = [None] * len(net.populations)
    w_pop: dict = {}
    for e in net.endpoints():
        rows = slice(e.target_start, e.target_start + e.target_size)
        if e.source is None:
            w_in[e.target] = w[rows, :m]
        else:
            w_pop[(e.target, e.source)] = w[rows, m + e.source_start:m + e.source_start + e.source_size]
    return w_in, w_pop


@torch.no_grad()
def simulate(net: Network, frames, *, seed: int = 0, sample_offset: int = 0, arithmetic=None,
             device: Optional[str] = None) -> dict:
    """Run a network of stochastic and integrator populations on frames ``(B, T, n_inputs)``
    of event counts, as the emulator does in either timing mode. Returns ``spikes`` (one
    ``(B, T, size)`` bool tensor per population), ``out_potential`` ``(B, T, outputs)`` and
    ``v_final`` ``(B, neurons)``, both in network units (``float64``)."""
    if any(p.kind == "lif" for p in net.populations):
        raise ValueError("network: simulate runs stochastic and integrator populations only; run LIF "
                         "populations with AsyncSimulator or on the emulator")
    net.validate()
    a = np.asarray(frames.cpu() if isinstance(frames, torch.Tensor) else frames)
    if a.ndim != 3 or a.shape[2] != net.n_inputs:
        raise ValueError(f"frames: expected (batch, frames, {net.n_inputs}), got shape {tuple(a.shape)}")
    if a.dtype.kind not in "iu" or (a.size and a.min() < 0):
        raise ValueError(f"frames: expected non-negative integer event counts, got {a.dtype}")
    x = torch.as_tensor(a.astype(np.int64), device=device)
    fx = fixed.format_of(arithmetic)
    dev = x.device
    b, n_t = x.shape[0], x.shape[1]
    pops = net.populations
    w_in, w_pop = _blocks(net)
    if fx is None:
        dt = torch.float32
        q = lambda w: torch.tensor(w, device=dev)  # noqa: E731
        x_in = x.to(dt)
        th = [torch.tensor(np.float32(p.theta), device=dev) for p in pops]
        beta = [torch.tensor(np.float32(p.beta), device=dev) for p in pops]
        alpha = [torch.tensor(np.float32(p.alpha), device=dev) for p in pops]
        mm = lambda a, w: a @ w.t()  # noqa: E731
        add = lambda a, c: a + c  # noqa: E731
        decay = lambda v, f: v * f  # noqa: E731
        sub = lambda v, t: v - t  # noqa: E731
        index = F.table_index
        units = lambda v: v.to(torch.float64)  # noqa: E731
    else:
        dt = torch.int64
        q = lambda w: fixed.quantize(fx, torch.tensor(w))[0].to(dev)  # noqa: E731
        x_in = x.to(dt)
        th = [fixed.threshold(fx, torch.tensor([np.float32(p.theta)]))[0].to(dev) for p in pops]
        beta = [fixed.leak_factor(fx, torch.tensor(np.float32(p.beta))).to(dev) for p in pops]
        alpha = [fixed.leak_factor(fx, torch.tensor(np.float32(p.alpha))).to(dev) for p in pops]
        mm = lambda a, w: fixed.matmul(a, w.t())  # noqa: E731
        add = lambda a, c: fixed.saturate(fx, a + c)  # noqa: E731
        decay = lambda v, f: fixed.leak(fx, v, f)  # noqa: E731
        sub = lambda v, t: fixed.saturate(fx, v - t)  # noqa: E731

        def index(z: torch.Tensor) -> torch.Tensor:
            s = z >> (fx.frac_bits - 8) if fx.frac_bits >= 8 else z << (8 - fx.frac_bits)
            return s.clamp(-LOGIT_MAX, LOGIT_MAX)

        units = lambda v: v.to(torch.float64) / fx.scale  # noqa: E731
    w_in_q = [None if w is None else q(w) for w in w_in]
    w_pop_q = {k: q(w) for k, w in w_pop.items()}
    targets: dict[int, list] = {}
    for (t, s) in w_pop_q:
        targets.setdefault(s, []).append(t)
    starts = net.population_starts
    cur = [torch.zeros(b, p.size, dtype=dt, device=dev) for p in pops]
    v = [torch.zeros(b, p.size, dtype=dt, device=dev) for p in pops]
    spikes = [torch.zeros(b, n_t, p.size, dtype=torch.bool, device=dev) for p in pops]
    o = net.output_index
    out_potential = torch.zeros(b, n_t, pops[o].size, dtype=torch.float64, device=dev)
    sample = torch.arange(b, device=dev, dtype=torch.int64) + int(sample_offset)
    for f in range(n_t):
        for j in range(len(pops)):
            cur[j] = decay(cur[j], alpha[j])
            if w_in_q[j] is not None and bool(x[:, f].any()):
                cur[j] = add(cur[j], mm(x_in[:, f], w_in_q[j]))
        draw = None
        for i, p in enumerate(pops):
            v[i] = add(decay(v[i], beta[i]), cur[i])
            if p.kind != "stochastic":
                continue
            if draw is None:
                draw = hashing.step_prefix(hashing.frame_prefix(seed, sample, f), hashing.DRAW_STEP)
            src = torch.arange(p.size, device=dev, dtype=torch.int64) + net.n_inputs + starts[i]
            s = F.fire_table(index(sub(v[i], th[i])), hashing.source_key(draw[:, None], src[None]))
            spikes[i][:, f] = s
            if bool(s.any()):
                for t in targets.get(i, []):
                    cur[t] = add(cur[t], mm(s.to(dt), w_pop_q[(t, i)]))
        out_potential[:, f] = units(v[o])
    return {"spikes": spikes, "out_potential": out_potential, "v_final": torch.cat([units(a) for a in v], 1)}
