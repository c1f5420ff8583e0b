"""Pure functions of the asynchronous execution model in PyTorch.

State and parameters are typed tuples passed explicitly; nothing here holds state. The step
function implements one forward step of DESIGN's reference model (select, deliver, fire) for a
batch, with surrogate-gradient spikes so that autograd runs through the schedule ("unlayered
backprop"). On the exact weight grid the forward pass equals the emulator's `steps` mode bit
for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

_M32 = 0xFFFFFFFF
_MIX = 0x45D9F3B


# --------------------------------------------------------------------------------------- hash
def mix(x: torch.Tensor) -> torch.Tensor:
    """The hash's mixer on int64 tensors (every product stays below 2^59)."""
    x = x & _M32
    x = (((x >> 16) ^ x) * _MIX) & _M32
    x = (((x >> 16) ^ x) * _MIX) & _M32
    return (x >> 16) ^ x


def hash_key(seed: int, sample: torch.Tensor, frame: int, step: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``key(seed, sample, frame, step, source)`` for samples ``(B,)``, steps ``(B,)`` and
    sources ``(S,)``: an int64 tensor ``(B, S)``."""
    h = mix(torch.full_like(sample, int(seed) & _M32))
    h = mix(h ^ sample)
    h = mix(h ^ int(frame))
    h = mix(h ^ step)
    return mix(h[:, None] ^ source[None, :])


# --------------------------------------------------------------------------------------- spikes
class _Spike(torch.autograd.Function):
    """Heaviside step ``x > 0`` forward; a surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: int, slope: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.kind, ctx.slope = kind, slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.kind, ctx.slope), None, None


SURROGATES = ("fast_sigmoid", "atan", "sigmoid")


def surrogate_grad(x: torch.Tensor, kind: int, slope: float) -> torch.Tensor:
    """Derivative of the smooth stand-in of the step function: fast sigmoid
    ``x / (1 + slope |x|)`` (SuperSpike), ``atan(slope x) / pi``, or ``sigmoid(slope x)``."""
    if kind == 0:
        return 1.0 / (1.0 + slope * x.abs()) ** 2
    if kind == 1:
        return (slope / torch.pi) / (1.0 + (slope * x) ** 2)
    s = torch.sigmoid(slope * x)
    return slope * s * (1 - s)


def spike(x: torch.Tensor, surrogate: str = "fast_sigmoid", slope: float = 10.0) -> torch.Tensor:
    """``1.0`` where ``x > 0`` (strict), with a surrogate gradient."""
    return _Spike.apply(x, SURROGATES.index(surrogate), float(slope))


# --------------------------------------------------------------------------------------- model
class Params(NamedTuple):
    """Per-neuron parameters and the network's wiring, as tensors."""

    theta: torch.Tensor       # (N,) float
    beta: torch.Tensor        # (N,) float
    subtract: torch.Tensor    # (N,) bool
    refractory: torch.Tensor  # (N,) bool
    has_out: torch.Tensor     # (N,) bool: the neuron queues its spikes
    group: torch.Tensor       # (S,) int64: core of each source; inputs in group n_cores
    layer: torch.Tensor       # (S,) int64: 0 for inputs, population index + 1 for neurons
    n_inputs: int
    n_cores: int


class State(NamedTuple):
    """State of a batch: potentials, pending counts, pending since, overshoot, refractory."""

    v: torch.Tensor       # (B, N)
    p: torch.Tensor       # (B, S) float counts (carry gradients of spikes)
    since: torch.Tensor   # (B, S) int64: (frame << 32) | step
    over: torch.Tensor    # (B, S) float: overshoot of the most recent firing
    refr: torch.Tensor    # (B, N) bool


def initial_state(batch: int, params: Params, dtype=torch.float32, device=None) -> State:
    n = params.theta.shape[0]
    s = params.group.shape[0]
    return State(
        v=torch.zeros(batch, n, dtype=dtype, device=device),
        p=torch.zeros(batch, s, dtype=dtype, device=device),
        since=torch.zeros(batch, s, dtype=torch.int64, device=device),
        over=torch.zeros(batch, s, dtype=dtype, device=device),
        refr=torch.zeros(batch, n, dtype=torch.bool, device=device),
    )


def _ordered(x: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 with the same order."""
    b = x.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    return torch.where(b < 0, b ^ 0x7FFFFFFF, b)


def select(
    state: State,
    params: Params,
    scheduler: str,
    f_limit: torch.Tensor,
    seed: int,
    sample: torch.Tensor,
    frame: int,
    step: torch.Tensor,
) -> torch.Tensor:
    """Which pending sources each group releases at this step: a bool ``(B, S)``.

    ``f_limit`` is the release limit per group ``(n_groups,)``. Order inside a group: the
    scheduler's primary key, then the hash key, then the source index (a stable lexicographic
    sort, least significant key first)."""
    pending = state.p.detach() > 0
    bsz, s = pending.shape
    src = torch.arange(s, device=pending.device)
    key = hash_key(seed, sample, frame, step, src)
    m = params.n_inputs
    if scheduler == "fifo":
        primary = state.since
    elif scheduler == "random":
        primary = torch.zeros_like(key)
    elif scheduler == "momentum":
        primary = torch.where(src[None, :] >= m, -_ordered(state.over.detach()), torch.zeros_like(key))
    elif scheduler == "layered":
        primary = params.layer[None, :].expand(bsz, s)
    else:
        raise ValueError(f"scheduler: {scheduler!r}; allowed: fifo, random, momentum, layered")
    group = params.group[None, :].expand(bsz, s)
    idx = src[None, :].expand(bsz, s)
    for k in (key, primary, group, (~pending).to(torch.int64)):
        _, order = k.gather(1, idx).sort(dim=1, stable=True)
        idx = idx.gather(1, order)
    g_sorted = group.gather(1, idx)
    pos = torch.arange(s, device=pending.device)[None, :].expand(bsz, s)
    new = torch.ones_like(g_sorted, dtype=torch.bool)
    new[:, 1:] = g_sorted[:, 1:] != g_sorted[:, :-1]
    start = torch.where(new, pos, torch.zeros_like(pos)).cummax(dim=1).values
    rank = pos - start
    take = pending.gather(1, idx) & (rank < f_limit[g_sorted])
    released = torch.zeros_like(pending)
    return released.scatter(1, idx, take)


class StepOut(NamedTuple):
    state: State
    spikes: torch.Tensor    # (B, N) float, surrogate-differentiable
    released: torch.Tensor  # (B, S) bool
    synops: torch.Tensor    # (B,) float


def step(
    state: State,
    params: Params,
    weight: torch.Tensor,
    fanout: torch.Tensor,
    released: torch.Tensor,
    active: torch.Tensor,
    since_now: torch.Tensor,
    surrogate: str = "fast_sigmoid",
    slope: float = 10.0,
) -> StepOut:
    """Deliver the released sources and fire (one forward step for the ``active`` samples).

    ``weight`` is ``W[target, source]`` ``(N, S)``; ``fanout[s]`` the number of non-zero
    weights of source ``s``; ``since_now`` ``(B,)`` is ``(frame << 32) | step``."""
    m = params.n_inputs
    rel = released & active[:, None]
    relf = rel.to(state.p.dtype)
    counts = state.p * relf
    current = counts @ weight.t()
    synops = relf @ fanout
    p = state.p * (1 - relf)
    act = active[:, None]
    v = torch.where(state.refr | ~act, state.v, state.v + current)
    over = v - params.theta
    s = spike(over, surrogate, slope) * (~state.refr & act).to(v.dtype)
    fired = s.detach() > 0
    v = torch.where(params.subtract, v - s * params.theta, v * (1 - s))
    refr = state.refr | (fired & params.refractory)
    queue = fired & params.has_out
    newly = queue & (p[:, m:].detach() == 0)
    since = state.since.clone()
    since[:, m:] = torch.where(newly, since_now[:, None], state.since[:, m:])
    p_neurons = p[:, m:] + s * params.has_out.to(s.dtype)
    p = torch.cat([p[:, :m], p_neurons], dim=1)
    over_all = state.over.clone()
    over_all[:, m:] = torch.where(fired, over.detach(), state.over[:, m:])
    return StepOut(State(v, p, since, over_all, refr), s, rel, synops)
