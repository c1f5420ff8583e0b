"""Thin modules over :mod:`asyncsnn.spsn.functional` and :mod:`asyncsnn.spsn.lif`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from .. import metrics
from . import functional as F
from .lif import LIF_IMPLS, compiled_step, lif_network_loop

NEURONS = ("spsn", "lif")
READOUTS = ("max", "mean", "last")


@dataclass
class SeqOutput:
    logits: torch.Tensor          # (B, classes)
    readout: torch.Tensor         # (B, T, classes) membrane of the non-firing readout
    spikes: list                  # per hidden layer, (B, T, N)

    def rate_penalty(self, target: float = 0.0) -> torch.Tensor:
        return sum(F.rate_penalty(s, target) for s in self.spikes) / max(len(self.spikes), 1)

    def sample_metrics(self, labels=None) -> dict[str, np.ndarray]:
        """Per-sample metrics named as in :data:`asyncsnn.metrics.METRICS`: ``correct`` (the
        class with the highest logit), ``spikes`` of the hidden layers, ``steps`` (time steps)
        and ``activation_sparsity`` (each time step is a frame: at most one spike per neuron)."""
        y = None if labels is None else metrics.to_numpy(labels).astype(np.int64)
        out = metrics.outcome(metrics.predictions(self.logits, "scores"), y)
        b, t = self.readout.shape[:2]
        spikes = np.zeros(b)
        for s in self.spikes:
            spikes = spikes + s.detach().to(torch.float64).sum(dim=(1, 2)).cpu().numpy()
        pairs = sum(s.shape[2] for s in self.spikes) * t
        out.update(spikes=spikes, steps=np.full(b, float(t)),
                   activation_sparsity=1.0 - spikes / pairs if pairs else np.full(b, np.nan))
        return out


class SeqNet(torch.nn.Module):
    """A feed-forward network over time: hidden layers of SPSN or LIF neurons, then a
    non-firing readout (a leaky integrator, the SPSN membrane without firing) whose potential
    over time gives the class scores (``max``, ``mean`` or ``last`` over time). SPSN neurons fire
    with probability ``sigmoid(U - theta)``; LIF neurons when ``U > theta``.

    ``neuron="spsn"``: parallel in time, firing ``sb`` / ``gs`` / ``deterministic`` (evaluation
    uses ``eval_firing``: deterministic by default, or ``hash``: the chip's own stochastic draw
    with ``seed``, reproducible, see :mod:`asyncsnn.spsn.deploy`). ``neuron="lif"``: sequential, ``lif_impl`` one of
    ``loop``, ``fused``, ``compiled``. ``gain`` scales the initial hidden weights: sparse
    spike inputs need larger ones than PyTorch's default."""

    def __init__(self, sizes: Sequence[int], *, neuron: str = "spsn", alpha: float = 0.9, beta: float = 0.9,
                 theta: float = 1.0, firing: str = "sb", eval_firing: str = "deterministic", tau: float = 1.0,
                 method: str = "auto", lif_impl: str = "fused", readout: str = "mean", bias: bool = True,
                 gain: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if neuron not in NEURONS:
            raise ValueError(f"neuron: {neuron!r}; allowed: {', '.join(NEURONS)}")
        if firing not in F.FIRING or eval_firing not in F.FIRING + ("hash",):
            raise ValueError(f"firing: {firing!r} / {eval_firing!r}; allowed: {', '.join(F.FIRING)} (and 'hash' "
                             "for evaluation)")
        if lif_impl not in LIF_IMPLS:
            raise ValueError(f"lif_impl: {lif_impl!r}; allowed: {', '.join(LIF_IMPLS)}")
        if readout not in READOUTS:
            raise ValueError(f"readout: {readout!r}; allowed: {', '.join(READOUTS)}")
        if method not in F.METHODS:
            raise ValueError(f"method: {method!r}; allowed: {', '.join(F.METHODS)}")
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"sizes: {list(sizes)}; need at least inputs and classes, every size >= 1")
        for name, v in (("alpha", alpha), ("beta", beta)):
            if not 0 <= v < 1:
                raise ValueError(f"{name}: {v} is outside [0, 1)")
        self.sizes = [int(s) for s in sizes]
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(a, b, bias=bias) for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        with torch.no_grad():  # `gain` scales the hidden layers' default initialisation
            for layer in self.layers[:-1]:
                layer.weight.mul_(float(gain))
        self.neuron, self.alpha, self.beta, self.theta = neuron, float(alpha), float(beta), float(theta)
        self.firing, self.eval_firing, self.tau = firing, eval_firing, float(tau)
        self.method, self.lif_impl, self.readout_kind, self.seed = method, lif_impl, readout, int(seed)

    @property
    def n_neurons(self) -> int:
        """Neurons that spike: the hidden layers (the readout integrates without firing)."""
        return sum(self.sizes[1:-1])

    @property
    def chip_inputs(self) -> int:
        """Input channels of the deployed network: the inputs plus a bias channel (when the
        layers have biases), so neuron ``n`` is the chip's source ``chip_inputs + n``."""
        return self.sizes[0] + int(self.layers[0].bias is not None)

    def forward(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None,
                sample_offset: int = 0) -> SeqOutput:
        if x.ndim != 3 or x.shape[2] != self.sizes[0]:
            raise ValueError(f"x: expected (batch, time, {self.sizes[0]}), got {tuple(x.shape)}")
        hidden = self.layers[:-1]
        if self.neuron == "lif" and self.lif_impl != "fused":  # plain: every layer at each step
            spikes = lif_network_loop(x, [m.weight for m in hidden], [m.bias for m in hidden], self.alpha, self.beta,
                                      self.theta, step=compiled_step() if self.lif_impl == "compiled" else None)
        else:
            spikes = self._layer_by_layer(x, generator, sample_offset)
        h = spikes[-1] if spikes else x
        out = F.membrane(self.layers[-1](h), self.alpha, self.beta, self.method)
        if self.readout_kind == "max":
            logits = out.amax(1) if out.shape[1] else out.sum(1)
        elif self.readout_kind == "mean":
            logits = out.mean(1)
        else:
            logits = out[:, -1]
        return SeqOutput(logits, out, spikes)

    def _layer_by_layer(self, x: torch.Tensor, generator: Optional[torch.Generator], sample_offset: int) -> list:
        """Each hidden layer over the whole sequence in turn (SPSN, or the fused LIF)."""
        spikes = []
        h = x
        for k, layer in enumerate(self.layers[:-1]):
            if self.neuron == "lif":
                h = LIF_IMPLS[self.lif_impl](h, layer.weight, self.alpha, self.beta, self.theta, bias=layer.bias)
            else:
                u = F.membrane(layer(h), self.alpha, self.beta, self.method)
                mode = self.firing if self.training else self.eval_firing
                if mode == "hash":  # the chip's own draw (asyncsnn.stochastic), reproducible per seed
                    sample = torch.arange(x.shape[0], device=x.device) + int(sample_offset)
                    offset = self.chip_inputs + sum(self.sizes[1:k + 1])
                    keys = F.hash_keys(self.seed, sample, x.shape[1], u.shape[2], offset)
                    z = u - self.theta
                    h = F.straight_through(z, F.fire_table(F.table_index(z), keys))
                else:
                    h = F.fire(u - self.theta, mode, tau=self.tau, generator=generator)
            spikes.append(h)
        return spikes
