"""Thin ``nn.Module`` wrappers over :mod:`asyncsnn.layers.functional`.

Each layer holds its parameters and takes its state explicitly (``forward(x, state) ->
(out, new_state)``, ``state=None`` at the start), so it fits in a user's own model and training
loop, and a stream can be fed in pieces. Weights live in the user's ``nn.Linear`` layers, as in
snnTorch and Norse; the neurons' biases live in the neuron layer, because on the chip a bias is an
input channel that fires once per frame (:func:`asyncsnn.layers.to_network`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from ..network import RESETS
from ..sim import functional as fn
from ..spsn import functional as spsn_fn
from . import functional as F
from .clock import Clock


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size: {size!r} must be an integer >= 1")
    return size


def _check_range(name: str, value: float, lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False) -> float:
    v = float(value)
    ok = math.isfinite(v) and (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)
    if not ok:
        raise ValueError(f"{name}: {value!r} is outside {'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}")
    return v


def _flat(current: torch.Tensor, size: int, name: str) -> torch.Tensor:
    """``(B, ...)`` -> ``(B, size)`` (a convolution's ``(B, C, H, W)`` output, channel-major as on
    the chip)."""
    if current.ndim < 2 or math.prod(current.shape[1:]) != size:
        raise ValueError(f"{name}: expected (batch, {size}) input current, got shape {tuple(current.shape)}")
    return current.reshape(current.shape[0], size)


class AsyncLIF(torch.nn.Module):
    """A population of LIF neurons as the asynchronous chip runs them (see
    :mod:`asyncsnn.layers.functional` for the equations).

    ``theta > 0`` threshold, ``beta`` in ``[0, 1]`` leak per frame, ``reset`` ``"zero"`` or
    ``"subtract"``, ``refractory`` (at most one spike per frame); ``bias=True`` adds a learnable
    bias current delivered once per frame at the frame's first step (on the chip: one input
    channel that fires every frame); ``output=True`` for the output population (its spikes are
    recorded when they happen and never wait in a queue); ``core_size`` neurons per core
    (default: the whole layer on one core), the unit that the release limit ``F`` applies to;
    ``surrogate`` a name (``fast_sigmoid``, ``atan``, ``sigmoid``, with ``slope``), a
    :class:`~asyncsnn.sim.functional.Surrogate` or any function ``x -> d/dx``.

    ``forward(current, state=None, clock=None) -> (out, state)``:

    * with a ``clock`` (one forward *step*, driven by :func:`asyncsnn.layers.run`): ``out`` is
      what the layer sends on at this step: its released pending spikes, or for an output layer
      its spikes;
    * without one (one *frame*, everything released at once): leak, integrate, fire; ``out``
      is the frame's spikes. This is the layer-synchronous LIF of a plain time-stepped loop, the
      baseline that ``F = inf`` reproduces in feed-forward networks.
    """

    def __init__(self, size: int, *, theta: float = 1.0, beta: float = 1.0, reset: str = "zero",
                 refractory: bool = False, bias: bool = False, output: bool = False, core_size: Optional[int] = None,
                 surrogate: "str | fn.Surrogate | Callable[[torch.Tensor], torch.Tensor]" = "fast_sigmoid",
                 slope: float = 10.0, gradient: str = "full") -> None:
        super().__init__()
        self.size = _check_size(size)
        if reset not in RESETS:
            raise ValueError(f"reset: {reset!r}; allowed: {', '.join(RESETS)}")
        if gradient not in fn.GRADIENTS:
            raise ValueError(f"gradient: {gradient!r}; allowed: {', '.join(fn.GRADIENTS)}")
        if core_size is not None and (isinstance(core_size, bool) or not isinstance(core_size, int) or core_size < 1):
            raise ValueError(f"core_size: {core_size!r} must be an integer >= 1 (or None: one core)")
        self.register_buffer("theta", torch.tensor(_check_range("theta", theta, 0.0, math.inf, open_lo=True,
                                                                open_hi=True), dtype=torch.float32))
        self.register_buffer("beta", torch.tensor(_check_range("beta", beta, 0.0, 1.0), dtype=torch.float32))
        self.reset, self.refractory, self.output = reset, bool(refractory), bool(output)
        self.core_size = self.size if core_size is None else min(int(core_size), self.size)
        self.surrogate = fn.Surrogate.of(surrogate, slope)
        self.gradient = gradient
        self.bias = torch.nn.Parameter(torch.zeros(self.size)) if bias else None

    @property
    def params(self) -> F.LIFParameters:
        return F.LIFParameters(self.theta, self.beta, self.reset == "subtract", self.refractory, not self.output)

    def initial_state(self, batch: int, dtype: Optional[torch.dtype] = None, device=None, frame: int = 0) -> F.LIFState:
        return F.lif_initial_state(batch, self.size, dtype or self.theta.dtype, device or self.theta.device, frame)

    def forward(self, current: Optional[torch.Tensor], state: Optional[F.LIFState] = None,
                clock: Optional[Clock] = None) -> tuple[torch.Tensor, F.LIFState]:
        shape = None
        if current is not None:
            shape = current.shape
            current = _flat(current, self.size, "current")
        if clock is None:
            return self._frame(current, state, shape)
        if state is None:
            state = self.initial_state(clock.batch, clock.dtype, clock.device, clock.start_frame)
        state = F.lif_leak(state, self.params, clock.frame)
        slot = clock.slot(self)
        keys = clock.keys(slot.source, self.size) if clock.limit is not None and clock.limit < self.core_size else None
        released = F.lif_release(state, keys, clock.scheduler, clock.limit, self.core_size, clock.active)
        if self.bias is not None and clock.bias is not None:
            b = clock.bias[:, None] * self.bias[None, :]
            current = b if current is None else current + b
            clock.count(clock.bias, (self.bias.detach() != 0).sum().to(clock.bias.dtype))
        res = F.lif_step(current, state, self.params, released=released, active=clock.active,
                         since_now=clock.at, surrogate=self.surrogate, gradient=self.gradient)
        clock.report(self, res.spikes, res.state)
        out = res.spikes if self.output else res.released
        return (out if shape is None else out.reshape(shape[:1] + (self.size,))), res.state

    def _frame(self, current: Optional[torch.Tensor], state: Optional[F.LIFState], shape) -> tuple:
        """One frame of the layer-synchronous LIF: leak, integrate (with the bias), fire."""
        if state is None:
            if current is None:
                raise ValueError("current: needed to know the batch when there is no state")
            state = self.initial_state(current.shape[0], current.dtype, current.device, 0)
            state = state._replace(frame=-1)  # the first call is frame 0: its leak acts on zeros
        state = F.lif_leak(state, self.params, state.frame + 1)
        if self.bias is not None:
            current = self.bias.expand_as(state.v) if current is None else current + self.bias
        res = F.lif_step(current, state, self.params._replace(queue=False), surrogate=self.surrogate,
                         gradient=self.gradient)
        return res.spikes, res.state

    def extra_repr(self) -> str:
        parts = [f"{self.size}", f"theta={float(self.theta):g}", f"beta={float(self.beta):g}"]
        parts += [f"reset={self.reset!r}"] * (self.reset != "zero") + ["refractory=True"] * self.refractory
        parts += ["bias=True"] * (self.bias is not None) + ["output=True"] * self.output
        parts += [f"core_size={self.core_size}"] * (self.core_size != self.size)
        return ", ".join(parts)


class SPSN(torch.nn.Module):
    """A layer of stochastic parallelizable spiking neurons (SPSN): the membrane of the whole
    sequence at once (:func:`asyncsnn.layers.functional.spsn_membrane`), then firing
    ``S ~ Bernoulli(sigmoid(U - theta))`` during training (``firing`` ``"sb"``, straight-through,
    or ``"gs"``, Gumbel-softmax with temperature ``tau``) and ``U > theta`` in evaluation
    (``eval_firing="deterministic"``, or the training rule). ``bias=True``: a learnable bias
    current at every time step.

    ``forward(x, state=None, generator=None) -> (spikes, state)`` on ``x`` ``(B, T, n)`` of input
    currents; ``state`` carries ``(I, U)`` to the next piece of a stream."""

    def __init__(self, size: int, *, alpha: float = 0.9, beta: float = 0.9, theta: float = 1.0, firing: str = "sb",
                 eval_firing: str = "deterministic", tau: float = 1.0, bias: bool = False, method: str = "auto") -> None:
        super().__init__()
        self.size = _check_size(size)
        self.alpha = _check_range("alpha", alpha, 0.0, 1.0, open_hi=True)
        self.beta = _check_range("beta", beta, 0.0, 1.0, open_hi=True)
        self.theta = _check_range("theta", theta, -math.inf, math.inf, open_lo=True, open_hi=True)
        self.tau = _check_range("tau", tau, 0.0, math.inf, open_lo=True, open_hi=True)
        for name, v in (("firing", firing), ("eval_firing", eval_firing)):
            if v not in spsn_fn.FIRING:
                raise ValueError(f"{name}: {v!r}; allowed: {', '.join(spsn_fn.FIRING)}")
        spsn_fn.resolve_method(method, 0)
        self.firing, self.eval_firing, self.method = firing, eval_firing, method
        self.bias = torch.nn.Parameter(torch.zeros(self.size)) if bias else None

    def forward(self, x: torch.Tensor, state: Optional[F.SPSNState] = None,
                generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, F.SPSNState]:
        if x.ndim != 3 or x.shape[2] != self.size:
            raise ValueError(f"x: expected (batch, time, {self.size}), got shape {tuple(x.shape)}")
        if self.bias is not None:
            x = x + self.bias
        u, state = F.spsn_membrane(x, state, self.alpha, self.beta, self.method)
        mode = self.firing if self.training else self.eval_firing
        return spsn_fn.fire(u - self.theta, mode, tau=self.tau, generator=generator), state

    def extra_repr(self) -> str:
        return (f"{self.size}, alpha={self.alpha:g}, beta={self.beta:g}, theta={self.theta:g}, firing={self.firing!r}"
                + ", bias=True" * (self.bias is not None))


class LI(torch.nn.Module):
    """A non-firing leaky integrator (the readout of SPSN networks): the SPSN membrane of the
    input currents ``(B, T, n)``, returned whole; ``state`` carries it across pieces of a
    stream."""

    def __init__(self, size: int, *, alpha: float = 0.9, beta: float = 0.9, method: str = "auto") -> None:
        super().__init__()
        self.size = _check_size(size)
        self.alpha = _check_range("alpha", alpha, 0.0, 1.0, open_hi=True)
        self.beta = _check_range("beta", beta, 0.0, 1.0, open_hi=True)
        spsn_fn.resolve_method(method, 0)
        self.method = method

    def forward(self, x: torch.Tensor, state: Optional[F.SPSNState] = None) -> tuple[torch.Tensor, F.SPSNState]:
        if x.ndim != 3 or x.shape[2] != self.size:
            raise ValueError(f"x: expected (batch, time, {self.size}), got shape {tuple(x.shape)}")
        return F.spsn_membrane(x, state, self.alpha, self.beta, self.method)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha:g}, beta={self.beta:g}"


STATEFUL = (AsyncLIF, SPSN, LI)


class Sequential(torch.nn.Sequential):
    """``nn.Sequential`` that threads the state of its neuron layers: ``forward(x, state=None,
    clock=None) -> (out, state)``, ``state`` a tuple with one entry per module (``None`` for
    stateless ones such as ``nn.Linear``). Under a ``clock`` it counts the synaptic operations
    of its ``nn.Linear`` layers (one per released source and non-zero weight)."""

    def forward(self, x: Any, state: Optional[tuple] = None, clock: Optional[Clock] = None) -> tuple[Any, tuple]:
        states = list(state) if state is not None else [None] * len(self)
        if len(states) != len(self):
            raise ValueError(f"state: expected {len(self)} entries (one per module), got {len(states)}")
        for i, m in enumerate(self):
            if isinstance(m, AsyncLIF):
                x, states[i] = m(x, states[i], clock)
            elif isinstance(m, STATEFUL):
                x, states[i] = m(x, states[i])
            else:
                if clock is not None and isinstance(m, torch.nn.Linear) and x is not None:
                    clock.count_linear(x, m.weight)
                x = m(x)
        return x, tuple(states)


__all__ = ["AsyncLIF", "LI", "SPSN", "STATEFUL", "Sequential"]
