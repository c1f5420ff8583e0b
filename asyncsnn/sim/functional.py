"""Pure functions of the asynchronous execution model in PyTorch.

State and parameters are typed tuples passed explicitly; nothing here holds state. The step
function implements one forward step of DESIGN's reference model (select, deliver, fire) for a
batch, with surrogate-gradient spikes so that autograd runs through the schedule ("unlayered
backprop"). On the exact weight grid the forward pass equals the emulator's `steps` mode bit
for bit.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch

from .. import hashing
from . import fixed
from .fixed import FixedPoint

# --------------------------------------------------------------------------------------- spikes
def _fast_sigmoid_grad(x: torch.Tensor, slope: float) -> torch.Tensor:
    return 1.0 / (1.0 + slope * x.abs()) ** 2


def _atan_grad(x: torch.Tensor, slope: float) -> torch.Tensor:
    return (slope / torch.pi) / (1.0 + (slope * x) ** 2)


def _sigmoid_grad(x: torch.Tensor, slope: float) -> torch.Tensor:
    s = torch.sigmoid(slope * x)
    return slope * s * (1 - s)


SURROGATE_GRADS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "fast_sigmoid": _fast_sigmoid_grad,
    "atan": _atan_grad,
    "sigmoid": _sigmoid_grad,
}
"""The derivative of each smooth stand-in of the step function: fast sigmoid
``x / (1 + slope |x|)`` (SuperSpike), ``atan(slope x) / pi``, ``sigmoid(slope x)``."""
SURROGATES = tuple(SURROGATE_GRADS)


class Surrogate(NamedTuple):
    """A surrogate gradient: the stand-in ``name`` (one of :data:`SURROGATES`) and its
    ``slope``. Build it with :meth:`of`, which checks both."""

    name: str = "fast_sigmoid"
    slope: float = 10.0

    @classmethod
    def of(cls, surrogate: "Surrogate | CustomSurrogate | str | Callable" = "fast_sigmoid",
           slope: float = 10.0) -> "Surrogate | CustomSurrogate":
        """A surrogate from a name (with ``slope``), a :class:`Surrogate`, or any function
        ``x -> d/dx`` of the stand-in (a :class:`CustomSurrogate`; define it at module level so
        that models using it pickle)."""
        if isinstance(surrogate, (Surrogate, CustomSurrogate)):
            return surrogate
        if callable(surrogate):
            custom = CustomSurrogate(surrogate)
            custom.grad(torch.linspace(-1.0, 1.0, 3))  # a wrong shape or type fails here, not in a backward
            return custom
        if surrogate not in SURROGATE_GRADS:
            raise ValueError(f"surrogate: {surrogate!r}; allowed: {', '.join(SURROGATES)}")
        if not slope > 0:
            raise ValueError(f"slope: {slope} must be > 0")
        return cls(str(surrogate), float(slope))

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative at ``x``."""
        return SURROGATE_GRADS[self.name](x, self.slope)


class CustomSurrogate(NamedTuple):
    """A surrogate gradient given as a function: ``grad(x)`` is the derivative of the smooth
    stand-in of the step function at ``x`` (the potential minus the threshold), returning a
    tensor of ``x``'s shape. Example: ``CustomSurrogate(lambda x: torch.exp(-x * x))``."""

    fn: Callable[[torch.Tensor], torch.Tensor]

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "custom")

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        g = self.fn(x)
        if not isinstance(g, torch.Tensor) or g.shape != x.shape:
            raise ValueError(f"surrogate: {self.name} must return a tensor of the input's shape {tuple(x.shape)}, "
                             f"got {type(g).__name__} {tuple(getattr(g, 'shape', ()))}")
        return g


class _Spike(torch.autograd.Function):
    """Heaviside step ``x > 0`` forward; a surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.grad(x), None


def spike(x: torch.Tensor, surrogate: "Surrogate | str" = "fast_sigmoid", slope: float = 10.0) -> torch.Tensor:
    """``1.0`` where ``x > 0`` (strict), with a surrogate gradient (a :class:`Surrogate`, or a
    name and a slope)."""
    return _Spike.apply(x, Surrogate.of(surrogate, slope))


# --------------------------------------------------------------------------------------- model
class Params(NamedTuple):
    """Per-neuron parameters (length ``N``) and the arbitration layout of the neurons.

    ``slot_neuron`` ``(C, P)`` lists each core's neurons in ascending order, padded with ``N``;
    ``neuron_slot`` ``(N,)`` is the flat slot of each neuron. Input channels form their own
    arbitration group (used in ``scheduled`` input mode)."""

    theta: torch.Tensor        # (N,) float
    beta: torch.Tensor         # (N,) float
    subtract: torch.Tensor     # (N,) bool
    refractory: torch.Tensor   # (N,) bool
    has_out: torch.Tensor      # (N,) bool: the neuron queues its spikes
    layer: torch.Tensor        # (N,) int64: population index + 1 (inputs are layer 0)
    slot_neuron: torch.Tensor  # (C, P) int64
    neuron_slot: torch.Tensor  # (N,) int64
    n_inputs: int
    contiguous: bool           # slot order is neuron order: the layout is a plain view


class State(NamedTuple):
    """State of a batch. Pending counts are floats so that spikes carry their gradient to the
    step that delivers them. ``since`` is ``(frame << 32) | step`` of becoming pending."""

    v: torch.Tensor         # (B, N)
    p: torch.Tensor         # (B, N) pending spikes of neurons
    since: torch.Tensor     # (B, N) int64
    over: torch.Tensor      # (B, N) overshoot of the most recent firing
    refr: torch.Tensor      # (B, N) bool
    p_in: torch.Tensor      # (B, M) pending input events (``scheduled`` input mode)
    since_in: torch.Tensor  # (B, M) int64


def initial_state(batch: int, params: Params, dtype=torch.float32, device=None, pending_inputs: bool = True) -> State:
    """Nothing pending, potentials at zero. ``pending_inputs=False`` (``all_at_once`` input, where
    no input event waits): ``p_in`` and ``since_in`` are ``(B, 0)``, carried for nothing."""
    n, m = params.theta.shape[0], params.n_inputs if pending_inputs else 0
    z = lambda k, dt: torch.zeros(batch, k, dtype=dt, device=device)  # noqa: E731
    return State(z(n, dtype), z(n, dtype), z(n, torch.int64), z(n, dtype), z(n, torch.bool), z(m, dtype),
                 z(m, torch.int64))


def _ordered(x: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 with the same order (integer potentials of the fixed-point path are
    already ordered)."""
    if not x.is_floating_point():
        return x
    b = x.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    return torch.where(b < 0, b ^ 0x7FFFFFFF, b)


def step_keys(prefix: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """The hash up to the step (:func:`asyncsnn.hashing.step_prefix`), ``(B, K)`` for a frame's
    :func:`~asyncsnn.hashing.frame_prefix` ``(B,)`` and steps ``(K,)``. Computed once per chunk
    of steps so that a step costs one ``mix``."""
    return hashing.step_prefix(prefix[:, None], steps[None, :])


_NEVER = torch.iinfo(torch.int64).max


def first_output(first_spike: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From each output neuron's first-spike step ``(B, O)`` (-1: never): the step of the first
    output spike ``(B,)``, the output neuron that made it, and whether there is one."""
    g0, arg = torch.where(first_spike >= 0, first_spike, _NEVER).min(1)
    has = g0 < _NEVER
    return torch.where(has, g0, -1), arg, has


_NONE = torch.iinfo(torch.int64).max


def source_keys(keys: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """The hash keys (:func:`asyncsnn.hashing.source_key`) of every source: ``keys`` ``(...,)``
    (columns of :func:`step_keys`) and source ids ``(S...)`` give ``(..., S...)``, each in
    ``[0, 2^32)``. A chunk of steps computes all its steps' keys at once."""
    return hashing.source_key(keys.reshape(*keys.shape, *([1] * sources.ndim)), sources)


def rank_release(pending: torch.Tensor, key: torch.Tensor, primary: Optional[torch.Tensor], limit: int,
                 wide: bool = False) -> torch.Tensor:
    """Release the first ``limit`` pending entries of each row of ``(..., P)``, in the order of
    ascending ``primary`` (if given), then ascending ``key`` (the 32-bit hash), then position.
    Entries that are not pending never release.

    A ``primary`` that fits in 32 signed bits is packed with the key into one int64, so the
    whole order is one stable sort; ``wide=True`` (a 64-bit ``primary``) takes two stable
    sorts, the key first."""
    if primary is None or not wide:
        comp = key if primary is None else (primary << 32) | key
        _, order = torch.where(pending, comp, _NONE).sort(dim=-1, stable=True)
    else:
        _, order = torch.where(pending, key, _NONE).sort(dim=-1, stable=True)
        prim = torch.where(pending, primary, _NONE).gather(-1, order)
        _, order2 = prim.sort(dim=-1, stable=True)
        order = order.gather(-1, order2)
    first = order[..., :limit]
    return torch.zeros_like(pending).scatter(-1, first, pending.gather(-1, first))


def fifo_primary(since: torch.Tensor, since_bits: int) -> tuple[torch.Tensor, bool]:
    """The ``fifo`` sort key of ``since`` (``frame << 32 | step``): packed into 32 signed bits
    as ``frame << since_bits | step`` when the caller knows that steps stay below
    ``2^since_bits`` and frames below ``2^(31 - since_bits)`` (``since_bits > 0``), else as it
    is (``wide``)."""
    if since_bits <= 0:
        return since, True
    return ((since >> 32) << since_bits) | (since & ((1 << since_bits) - 1)), False


def select_neurons(state: State, params: Params, scheduler: str, limit: Optional[int], keys: Optional[torch.Tensor],
                   since_bits: int = 0) -> torch.Tensor:
    """Which pending neurons each core releases at this step: bool ``(B, N)``.

    ``keys`` ``(B, C, P)`` are this step's hash keys of the core slots
    (:func:`source_keys` of a :func:`step_keys` column and ``params.slot_neuron + n_inputs``);
    ``limit`` is ``F`` (``None`` for infinity). With ``F`` at least the core size everything
    pending is released at once (``keys`` may then be ``None``). ``since_bits``: see
    :func:`fifo_primary`."""
    pending = state.p.detach() > 0
    c, p = params.slot_neuron.shape
    if limit is None or limit >= p:
        return pending
    bsz, n = pending.shape
    if params.contiguous:  # cores hold consecutive, equal blocks of neurons
        pad = lambda x, fill: x  # noqa: E731
        slots = slice(None)
    else:
        pad = lambda x, fill: torch.cat([x, torch.full((bsz, 1), fill, dtype=x.dtype, device=x.device)], 1)  # noqa: E731
        slots = params.slot_neuron.reshape(-1)
    pend_s = pad(pending, False)[:, slots].view(bsz, c, p)
    wide = False
    if scheduler == "random":
        primary = None
    elif scheduler == "fifo":
        primary, wide = fifo_primary(pad(state.since, 0)[:, slots].view(bsz, c, p), since_bits)
    elif scheduler == "momentum":
        primary = -_ordered(pad(state.over.detach(), 0.0)[:, slots].view(bsz, c, p))
        wide = not state.over.is_floating_point()  # fixed-point potentials may be up to 48 bits
    elif scheduler == "layered":
        primary = pad(params.layer[None].expand(bsz, n), 0)[:, slots].view(bsz, c, p)
    else:
        raise ValueError(f"scheduler: {scheduler!r}; allowed: fifo, random, momentum, layered")
    rel = rank_release(pend_s, keys, primary, limit, wide).view(bsz, c * p)
    return rel if params.contiguous else rel[:, params.neuron_slot]


def select_inputs(state: State, scheduler: str, limit: Optional[int], keys: Optional[torch.Tensor],
                  since_bits: int = 0) -> torch.Tensor:
    """Which pending input channels the input port releases (``scheduled`` input mode);
    ``keys`` ``(B, M)`` are the channels' hash keys (:func:`source_keys` with sources
    ``0 .. M-1``)."""
    pending = state.p_in.detach() > 0
    m = pending.shape[1]
    if limit is None or limit >= m:
        return pending
    primary, wide = fifo_primary(state.since_in, since_bits) if scheduler == "fifo" else (None, False)
    return rank_release(pending, keys, primary, limit, wide)  # inputs have no overshoot, one layer


class Tape(NamedTuple):
    """What the hand-written backward (:func:`step_backward`) needs of a forward step."""

    delivered: torch.Tensor  # (B, N) pending spikes delivered (released neurons only)
    over: torch.Tensor       # (B, N) potential minus threshold before firing
    can_fire: torch.Tensor   # (B, N) bool: active sample, neuron not refractory
    gate: torch.Tensor       # (B, N) bool: can fire and received input (the surrogate flows)
    spikes: torch.Tensor     # (B, N) bool
    active: torch.Tensor     # (B,) bool: the sample took part in the step


class StepOut(NamedTuple):
    state: State
    spikes: torch.Tensor    # (B, N) float, surrogate-differentiable
    synops: torch.Tensor    # (B,) float
    tape: Optional[Tape] = None


GRADIENTS = ("full", "truncated")


def step(
    state: State,
    params: Params,
    w_rec: torch.Tensor,
    fanout_rec: torch.Tensor,
    released: torch.Tensor,
    current: Optional[torch.Tensor],
    active: torch.Tensor,
    since_now: int,
    gradient: str = "full",
    surrogate: Surrogate = Surrogate(),
    fx: Optional[FixedPoint] = None,
    record: bool = False,
) -> StepOut:
    """One forward step for the ``active`` samples: deliver the released neurons' pending
    spikes through ``w_rec`` ``W[target, source neuron]`` (plus ``current`` from inputs), then
    fire every non-refractory neuron above threshold.

    ``gradient="truncated"`` cuts the gradient through the potential carried over from earlier
    steps: a spike's gradient reaches only the current delivered at the step that triggered
    it. ``"full"`` keeps the whole history across steps and frames. In both, the surrogate
    gradient of a spike flows only at steps that brought the neuron input (the only steps at
    which it can newly cross threshold).

    With ``fx`` (a :class:`~asyncsnn.sim.fixed.FixedPoint`) the state, ``w_rec``, ``current`` and
    ``params.theta`` are ``int64`` on the fixed-point grid and the potential saturates, as on a
    fixed-point chip (no gradient).

    ``record=True`` also returns the step's :class:`Tape` for :func:`step_backward`."""
    rel = released & active[:, None]
    relf = rel.to(state.p.dtype)
    delivered = state.p * relf
    cur = delivered @ w_rec.t() if fx is None else fixed.matmul(delivered, w_rec.t())
    if current is not None:
        cur = cur + current
    synops = rel.to(fanout_rec.dtype) @ fanout_rec
    p = state.p - delivered
    act = active[:, None]
    # truncated: an active sample's carried potential is cut; a finished sample's step is a no-op
    # for the gradient too (else its v_final gradient would depend on who shares its batch)
    v_prev = torch.where(act, state.v.detach(), state.v) if gradient == "truncated" else state.v
    v_in = v_prev + cur if fx is None else fixed.saturate(fx, v_prev + cur)
    v = torch.where(state.refr | ~act, v_prev, v_in)
    over = v - params.theta
    # A neuron can only cross threshold at a step that brought it input: the surrogate gradient
    # flows only there (elsewhere the spike, a repeat firing under subtract reset, is constant).
    s = _Spike.apply(over, surrogate)
    can_fire = ~state.refr & act
    s = torch.where(cur.detach() != 0, s, s.detach()) * can_fire.to(v.dtype)
    fired = s.detach() > 0
    v_sub = v - s * params.theta if fx is None else fixed.saturate(fx, v - s * params.theta)
    v = torch.where(params.subtract, v_sub, v * (1 - s))
    refr = state.refr | (fired & params.refractory)
    queue = fired & params.has_out
    since = torch.where(queue & (p.detach() == 0), since_now, state.since)
    p = p + s * params.has_out.to(s.dtype)
    tape = Tape(delivered, over, can_fire, can_fire & (cur != 0), fired, active) if record else None
    over = torch.where(fired, over.detach(), state.over)
    return StepOut(State(v, p, since, over, refr, state.p_in, state.since_in), s, synops, tape)


def step_backward(tape: Tape, params: Params, w_rec: torch.Tensor, g_v: torch.Tensor, g_p: torch.Tensor,
                  g_s: torch.Tensor, gradient: str = "full", surrogate: Surrogate = Surrogate(),
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The vector-Jacobian product of one float :func:`step` from its :class:`Tape`, written
    out by hand (what autograd computes through :func:`step`, without recording a graph).

    ``g_v`` and ``g_p`` are the gradients of the potential and the pending counts after the
    step, ``g_s`` that of its spikes from the loss. Returns the gradients of the potential and
    the pending counts before the step, and of the step's input current ``cur`` (which
    gives ``W_rec``'s gradient ``g_cur^T delivered`` and, at a frame's first step, the input
    current's)."""
    s = tape.spikes.to(g_v.dtype)
    # spikes: what the loss, the pending queue and the reset make of them
    v_fire = tape.over + params.theta
    g_s = g_s + g_p * params.has_out.to(g_v.dtype) - g_v * torch.where(params.subtract, params.theta, v_fire)
    g_v1 = torch.where(params.subtract, g_v, g_v * (1 - s))
    g_v1 = g_v1 + g_s * surrogate.grad(tape.over) * tape.gate.to(g_v.dtype)
    g_cur = g_v1 * tape.can_fire.to(g_v.dtype)
    g_v0 = g_v1 * (~tape.active)[:, None].to(g_v.dtype) if gradient == "truncated" else g_v1
    rel = (tape.delivered != 0).to(g_v.dtype)
    g_p0 = g_p * (1 - rel) + (g_cur @ w_rec) * rel
    return g_v0, g_p0, g_cur
