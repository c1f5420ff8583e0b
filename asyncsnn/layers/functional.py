"""Pure functions of the layer modules: one population ("layer") of neurons at a time.

State and parameters are typed tuples passed explicitly (Norse's functional/module split);
:mod:`asyncsnn.layers.modules` wraps them as ``nn.Module``\\ s.

**Asynchronous LIF** (the execution model of the chip, one population): per frame the leak
``v <- beta v`` (and refractory flags clear); then, at each forward step ``k`` of the frame,

1. *release*: every core of the layer (blocks of ``core_size`` neurons) releases at most ``F``
   of its pending neurons, in the scheduler's order (:func:`lif_release`);
2. *integrate*: ``v <- v + I`` with the step's input current ``I`` (the weights times what the
   layers before released at this step);
3. *fire*: every non-refractory neuron with ``v > theta`` spikes once (surrogate gradient),
   resets (``v <- 0`` or ``v <- v - theta``) and, unless it is an output neuron, becomes pending.

Between layers a spike waits in its layer's queue until its core releases it: that is the
"unlayered" schedule that autograd runs through. Chained one population after another and run
by :func:`asyncsnn.layers.run`, these functions give the whole-network simulator's
(:class:`~asyncsnn.sim.AsyncSimulator`) and the emulator's ``steps`` results bit for bit on
exact weights (the test suite checks it).

**SPSN** (parallel in time): the membrane ``U = h * X`` of :mod:`asyncsnn.spsn.functional`
with a carried state ``(I, U)``, so a long sequence can be fed in pieces (:func:`spsn_membrane`).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..options import SCHEDULERS
from ..sim import functional as fn
from ..spsn import functional as spsn_fn


# ------------------------------------------------------------------------------ asynchronous LIF
class LIFParameters(NamedTuple):
    """Parameters of an asynchronous LIF population: threshold ``theta > 0`` and per-frame
    leak factor ``beta`` in ``[0, 1]`` (0-d float tensors, so that the arithmetic is the chip's
    float32), the reset (``subtract``: ``v - theta``, else zero), ``refractory`` (fires at most
    once per frame) and ``queue`` (spikes wait to be released; ``False`` for an output
    population, whose spikes are recorded when they happen)."""

    theta: torch.Tensor
    beta: torch.Tensor
    subtract: bool
    refractory: bool
    queue: bool


class LIFState(NamedTuple):
    """State of a batch of one population: potential ``v``, pending spike counts ``p`` (floats,
    so that a spike carries its gradient to the step that delivers it), ``since``
    (``frame << 32 | step`` of becoming pending, for ``fifo``), ``over`` (overshoot of the most
    recent firing, for ``momentum``), ``refr`` (fired this frame, refractory) and ``frame`` (the
    frame the state has leaked to)."""

    v: torch.Tensor      # (B, n)
    p: torch.Tensor      # (B, n)
    since: torch.Tensor  # (B, n) int64
    over: torch.Tensor   # (B, n)
    refr: torch.Tensor   # (B, n) bool
    frame: int


def lif_initial_state(batch: int, size: int, dtype=torch.float32, device=None, frame: int = 0) -> LIFState:
    """Potentials at zero, nothing pending."""
    z = lambda dt: torch.zeros(batch, size, dtype=dt, device=device)  # noqa: E731
    return LIFState(z(dtype), z(dtype), z(torch.int64), z(dtype), z(torch.bool), int(frame))


def lif_leak(state: LIFState, params: LIFParameters, frame: int) -> LIFState:
    """The state at the start of ``frame``: one ``v <- beta v`` per frame begun since
    ``state.frame`` (repeated, as the chip does it), refractory flags cleared."""
    if frame < state.frame:
        raise ValueError(f"frame: {frame} is before the state's frame {state.frame}")
    if frame == state.frame:
        return state
    v = state.v
    for _ in range(frame - state.frame):
        v = v * params.beta
    return state._replace(v=v, refr=torch.zeros_like(state.refr), frame=int(frame))


def lif_release(state: LIFState, keys: Optional[torch.Tensor], scheduler: str, limit: Optional[int],
                core_size: int, active: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Which pending neurons the layer's cores release at this step, bool ``(B, n)``.

    The neurons form cores of ``core_size`` consecutive neurons (the last may be smaller); each
    core releases its first ``limit`` (``F``; ``None``: all) pending neurons in the order of
    ``scheduler``, ties (and ``random``) broken by the hash ``keys`` ``(B, n)`` (see
    :mod:`asyncsnn.hashing`; needed only when ``limit < core_size``). ``layered`` orders by
    population, which is one within a layer's own cores: the key decides. ``active`` ``(B,)``:
    samples that take part in the step (others release nothing)."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler: {scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
    pending = state.p.detach() > 0
    if active is not None:
        pending = pending & active[:, None]
    bsz, n = pending.shape
    if limit is None or limit >= core_size or n == 0:
        return pending
    if keys is None:
        raise ValueError("keys: the hash keys are needed when F is below the core size")
    cores = -(-n // core_size)
    pad = cores * core_size - n
    shape = (bsz, cores, core_size)
    grid = lambda x, fill: torch.nn.functional.pad(x, (0, pad), value=fill).view(shape)  # noqa: E731
    primary, wide = None, False
    if scheduler == "fifo":
        primary, wide = grid(state.since, 0), True
    elif scheduler == "momentum":
        primary = -fn._ordered(grid(state.over.detach(), 0.0))
        wide = not state.over.is_floating_point()
    rel = fn.rank_release(grid(pending, False), grid(keys, 0), primary, limit, wide)
    return rel.view(bsz, cores * core_size)[:, :n]


class LIFStep(NamedTuple):
    """What one step of :func:`lif_step` gives: ``released`` (the pending counts the layer
    sent on at this step, what the next layer's weights multiply), ``spikes`` (fired at this
    step, surrogate-differentiable) and the new state."""

    released: torch.Tensor
    spikes: torch.Tensor
    state: LIFState


def lif_step(current: Optional[torch.Tensor], state: LIFState, params: LIFParameters, *,
             released: Optional[torch.Tensor] = None, active: Optional[torch.Tensor] = None, since_now: int = 0,
             surrogate: "fn.Surrogate" = fn.Surrogate(), gradient: str = "full") -> LIFStep:
    """One forward step of the population for the ``active`` samples (default: all): send on
    the ``released`` pending spikes (bool ``(B, n)`` from :func:`lif_release`), integrate the
    step's input ``current`` ``(B, n)`` (``None``: none), fire. ``since_now`` is
    ``frame << 32 | step``. ``gradient="truncated"`` cuts the gradient through the potential
    carried from earlier steps. The surrogate gradient of a spike flows only at steps that
    brought the neuron input, as in :func:`asyncsnn.sim.functional.step`."""
    if gradient not in fn.GRADIENTS:
        raise ValueError(f"gradient: {gradient!r}; allowed: {', '.join(fn.GRADIENTS)}")
    v0 = state.v
    act = torch.ones(v0.shape[0], dtype=torch.bool, device=v0.device) if active is None else active
    a = act[:, None]
    if released is None:
        out = torch.zeros_like(state.p)
    else:
        out = state.p * (released & a).to(state.p.dtype)
    p = state.p - out
    cur = torch.zeros_like(v0) if current is None else current
    v_prev = torch.where(a, v0.detach(), v0) if gradient == "truncated" else v0
    v = torch.where(state.refr | ~a, v_prev, v_prev + cur)
    over = v - params.theta
    s = fn._Spike.apply(over, surrogate)
    can_fire = ~state.refr & a
    s = torch.where(cur.detach() != 0, s, s.detach()) * can_fire.to(v.dtype)
    fired = s.detach() > 0
    v = v - s * params.theta if params.subtract else v * (1 - s)
    refr = state.refr | fired if params.refractory else state.refr
    since = state.since
    if params.queue:
        since = torch.where(fired & (p.detach() == 0), since_now, since)
        p = p + s
    over = torch.where(fired, over.detach(), state.over)
    return LIFStep(out, s, LIFState(v, p, since, over, refr, state.frame))


# ------------------------------------------------------------------------------ SPSN and LI
class SPSNState(NamedTuple):
    """The two numbers an SPSN neuron carries from one piece of a sequence to the next: the
    synaptic current ``i`` and the membrane ``u`` after the last time step, ``(B, n)`` each."""

    i: torch.Tensor
    u: torch.Tensor


def spsn_membrane(x: torch.Tensor, state: Optional[SPSNState], alpha: float, beta: float,
                  method: str = "auto") -> tuple[torch.Tensor, SPSNState]:
    """The membrane ``U`` ``(B, T, n)`` of ``I[t] = alpha I[t-1] + X[t]``,
    ``U[t] = beta U[t-1] + (1 - beta) I[t]`` over all time steps at once, starting from
    ``state`` (``None``: at rest), and the state after the last step.

    The carried state adds ``alpha^(t+1) i0`` to the current, so ``alpha i0 h[t] + beta^(t+1) u0``
    to the membrane (``h`` is the combined kernel of
    :func:`asyncsnn.spsn.functional.combined_kernel`): feeding a sequence in pieces gives the
    membrane of feeding it whole, to float rounding."""
    if x.ndim != 3:
        raise ValueError(f"x: expected (batch, time, neurons), got shape {tuple(x.shape)}")
    t = x.shape[1]
    u = spsn_fn.membrane(x, alpha, beta, method)
    # the current after the last step, I[T-1] = sum_s alpha^(T-1-s) X[s] (+ alpha^T i0)
    decay = torch.tensor(float(alpha), dtype=torch.float64) ** torch.arange(t - 1, -1, -1, dtype=torch.float64)
    i_last = torch.einsum("btn,t->bn", x, decay.to(x.dtype).to(x.device)) if t else x.new_zeros(x.shape[0], x.shape[2])
    if state is not None:
        if state.i.shape != (x.shape[0], x.shape[2]) or state.u.shape != state.i.shape:
            raise ValueError(f"state: expected (batch, neurons) = {(x.shape[0], x.shape[2])}, got "
                             f"{tuple(state.i.shape)} and {tuple(state.u.shape)}")
        steps = torch.arange(1, t + 1, dtype=torch.float64)
        h = spsn_fn.combined_kernel(alpha, beta, t, torch.float64)
        a_i = (float(alpha) * h).to(x.dtype).to(x.device)            # (T,)
        a_u = (float(beta) ** steps).to(x.dtype).to(x.device)        # (T,)
        u = u + a_i[None, :, None] * state.i[:, None, :] + a_u[None, :, None] * state.u[:, None, :]
        i_last = i_last + (float(alpha) ** t) * state.i
    u_last = u[:, -1] if t else (state.u if state is not None else x.new_zeros(x.shape[0], x.shape[2]))
    if t == 0 and state is not None:
        i_last = state.i
    return u, SPSNState(i_last, u_last)


__all__ = ["LIFParameters", "LIFState", "LIFStep", "SPSNState", "lif_initial_state", "lif_leak",
           "lif_release", "lif_step", "spsn_membrane"]
