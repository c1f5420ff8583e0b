"""Stochastic parallelizable spiking neurons (SPSN, Yarga and Wood 2023) as pure functions.

An SPSN neuron has no reset, so its membrane is a linear, causal filter of its input and the
whole sequence is computed at once:

    I[t] = alpha I[t-1] + X[t]              (synaptic current, kernel l[n] = alpha^n)
    U[t] = beta U[t-1] + (1 - beta) I[t]    (membrane, kernel k[n] = (1 - beta) beta^n)

so ``U = h * X`` with the combined kernel ``h = k * l``,
``h[n] = (1 - beta) (alpha^(n+1) - beta^(n+1)) / (alpha - beta)`` (``(1 - beta)(n + 1) alpha^n``
when ``alpha == beta``). The neuron fires ``S ~ Bernoulli(sigmoid(U))``.

Time is dimension 1 of every ``(batch, time, neurons)`` tensor. Three ways to convolve:

* ``"fft"``: zero-padded to at least ``2T - 1`` (no wrap-around), ``O(T log T)``; the kernel's
  FFT is cached per length, decays, dtype and device;
* ``"direct"``: one product with the ``(T, T)`` lower-triangular Toeplitz matrix of ``h``,
  ``O(T^2)`` but a single matmul: faster for short sequences;
* ``"chunked"``: the sequence cut into chunks of ``C`` steps (32 to 64, :func:`chunk_len`; one
  chunk, the direct product, up to 64 steps); inside a chunk the
  ``(C, C)`` Toeplitz product, across chunks the neuron's two-number state ``(I, U)`` at each
  chunk's end, all chunks' at once by one ``(2K, 2K)`` product (``K = T / C`` chunks). ``O(T C)``
  in a few matrix products, and a few passes over memory where the FFT makes a dozen over
  complex numbers: on 2 CPU cores 3-4x faster than either at ``T = 1 000`` and 2-3x at 10 000
  (``benchmarks/spsn_speed.py``).

The FFT and chunked methods write out their adjoint (the gradient of a causal filter is the
same filter run backwards in time), so nothing of ``x`` is kept for the backward pass.

``"auto"`` picks chunked up to :data:`CHUNKED_MAX_T` steps, FFT above. On 2 CPU cores the
chunked method was also faster than the direct one at every length measured (64 steps and up):
``baddbmm`` with the same ``(T, T)`` matrix beats ``einsum``'s batched copy.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch

CHUNK = 32  # the shortest chunk length the chunked method aims at (see chunk_len)
CHUNKED_MAX_T = 65536  # auto: chunked up to here, FFT above (the (2K, 2K) product grows as T^(4/3))
MAX_CHUNKS = 4096  # the chunked method's limit on K (its (2K, 2K) matrix)
METHODS = ("auto", "fft", "direct", "chunked")
FIRING = ("sb", "gs", "deterministic")

_CACHE: dict[tuple, torch.Tensor] = {}
_CACHE_MAX = 64


def combined_kernel(alpha: float, beta: float, length: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``h[n]`` for ``n < length``, computed in float64 then cast."""
    if not (0.0 <= alpha < 1.0 and 0.0 <= beta < 1.0):
        raise ValueError(f"alpha, beta: ({alpha}, {beta}) must lie in [0, 1)")
    n = torch.arange(length, dtype=torch.float64)
    if abs(alpha - beta) < 1e-12:
        h = (1 - beta) * (n + 1) * alpha ** n
    else:
        h = (1 - beta) * (alpha ** (n + 1) - beta ** (n + 1)) / (alpha - beta)
    return h.to(dtype=dtype, device=device)


def _fft_len(t: int) -> int:
    """The smallest 5-smooth length >= 2t - 1 (fast for the FFT, and no wrap-around)."""
    m = max(2 * t - 1, 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _cached(key: tuple, make):
    """``_CACHE[key]``, made by ``make()`` on a miss (the oldest entry goes past ``_CACHE_MAX``)."""
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        hit = _CACHE[key] = make()
    return hit


def _lower_toeplitz(h: torch.Tensor) -> torch.Tensor:
    """The ``(T, T)`` matrix ``A[t, s] = h[t - s]`` for ``s <= t``, else 0."""
    i = torch.arange(h.shape[0], device=h.device)
    d = i[:, None] - i[None, :]
    return torch.where(d >= 0, h[d.clamp(min=0)], torch.zeros((), dtype=h.dtype, device=h.device))


def kernel_fft(alpha: float, beta: float, length: int, n_fft: int, dtype, device) -> torch.Tensor:
    """``rfft`` of the combined kernel, cached."""
    def make():
        h = combined_kernel(alpha, beta, length, torch.float64, device)
        return torch.fft.rfft(h, n=n_fft).to(torch.complex64 if dtype != torch.float64 else torch.complex128)

    return _cached((float(alpha), float(beta), int(length), int(n_fft), dtype, str(device)), make)


def toeplitz(alpha: float, beta: float, length: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The ``(T, T)`` matrix ``A[t, s] = h[t - s]`` for ``s <= t`` (else 0), cached."""
    return _cached(("toeplitz", float(alpha), float(beta), int(length), dtype, str(device)),
                   lambda: _lower_toeplitz(combined_kernel(alpha, beta, length, dtype, device)))


def resolve_method(method: str, t: int) -> str:
    """The method ``membrane`` runs for ``t`` steps (``auto`` resolved)."""
    if method not in METHODS:
        raise ValueError(f"method: {method!r}; allowed: {', '.join(METHODS)}")
    if method == "auto":
        return "chunked" if t <= CHUNKED_MAX_T else "fft"
    return method


def membrane(x: torch.Tensor, alpha: float, beta: float, method: str = "auto",
             chunk: Optional[int] = None) -> torch.Tensor:
    """``U = h * X`` over time for ``x`` ``(B, T, N)``, all steps at once (differentiable).
    ``chunk``: the chunked method's chunk length (default: :func:`chunk_len`)."""
    method = resolve_method(method, 0 if x.ndim != 3 else x.shape[1])
    if x.ndim != 3:
        raise ValueError(f"x: expected (batch, time, neurons), got shape {tuple(x.shape)}")
    t = x.shape[1]
    if t == 0:
        return x.clone()
    if method == "direct":
        return torch.einsum("ts,bsn->btn", toeplitz(alpha, beta, t, x.dtype, x.device), x)
    if method == "chunked":
        c = chunk_len(t) if chunk is None else int(chunk)
        if c < 1:
            raise ValueError(f"chunk: {chunk} must be >= 1")
        k = -(-t // c)
        if k > MAX_CHUNKS:
            raise ValueError(f"chunk: {c} cuts {t} steps into {k} chunks; at most {MAX_CHUNKS} (the product across "
                             f"chunks grows as their number squared): use a longer chunk or method='fft'")
        return _CausalChunked.apply(x, chunk_plan(alpha, beta, c, k, x.dtype, x.device))
    n_fft = _fft_len(t)
    return _CausalFFT.apply(x, kernel_fft(alpha, beta, t, n_fft, x.dtype, x.device), n_fft)


def _fft_filter(x: torch.Tensor, hf: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``irfft(rfft(x) hf)`` over time (dimension 1), cut to ``x``'s length."""
    t = x.shape[1]
    xf = torch.fft.rfft(x.transpose(1, 2), n=n_fft, dim=-1)  # time last: contiguous transforms
    return torch.fft.irfft(xf * hf, n=n_fft, dim=-1)[..., :t].transpose(1, 2).to(x.dtype)


class _CausalFFT(torch.autograd.Function):
    """The causal convolution ``h * x`` by FFT, with its adjoint written out: the gradient is
    the correlation ``sum_{t >= s} h[t - s] g[t]``, which is ``irfft(rfft(g) conj(H))`` (with
    ``n_fft >= 2T - 1`` the wrapped-around lags fall on the zero padding of ``h``). One real
    transform pair, as in the forward, where autograd's own backward of ``rfft`` runs a full
    complex transform and zero-fills; and nothing of ``x`` is kept for the backward."""

    @staticmethod
    def forward(ctx, x, hf, n_fft):
        ctx.save_for_backward(hf)
        ctx.n_fft = n_fft
        return _fft_filter(x, hf, n_fft)

    @staticmethod
    def backward(ctx, g):
        (hf,) = ctx.saved_tensors
        return _fft_filter(g, hf.conj(), ctx.n_fft), None, None


def chunk_len(t: int) -> int:
    """The chunked method's chunk length for ``t`` steps: ``t`` itself up to 64 steps (one
    chunk: the direct product). Above, the aim is ``c0 = max(CHUNK, (4 t)^(1/3))``, which
    balances the ``2 c`` operations per value inside chunks against the ``8 t / c^2`` of the
    ``(2K, 2K)`` product across them; the divisor of ``t`` in ``[c0 / 2, 2 c0]`` nearest ``c0``
    (no padding), else ``c0`` (the last chunk zero-padded)."""
    if t <= 64:
        return max(t, 1)
    c0 = max(CHUNK, round((4 * t) ** (1 / 3)))
    divisors = [c for c in range(c0 // 2, 2 * c0 + 1) if t % c == 0]
    return min(divisors, key=lambda c: (abs(c - c0), c)) if divisors else c0


class ChunkPlan(NamedTuple):
    """The matrices of the chunked filter for chunks of ``c`` steps, ``k`` chunks.

    With ``S_j = (I, U)`` the state at the end of chunk ``j`` and ``E_j`` what chunk ``j`` alone
    leaves there (zero state entering it): ``E_j = ends X_j``, ``S = cross E`` (``S_j = sum over
    i <= j`` of ``A^(c (j - i)) E_i``, ``A`` the neuron's one-step map of its state), and the
    membrane of chunk ``j`` is ``local X_j + carry S_(j-1)``."""

    local: torch.Tensor   # (c, c): h[t - s], s <= t
    ends: torch.Tensor    # (2, c): the (I, U) a unit input at step s leaves at the chunk's end
    carry: torch.Tensor   # (c, 2): U at step t of a chunk per unit of I and of U entering it
    cross: torch.Tensor   # (2k, 2k): rows and columns (I of chunks 0..k-1, U of chunks 0..k-1)


def chunk_plan(alpha: float, beta: float, c: int, k: int, dtype=torch.float32, device=None) -> ChunkPlan:
    """The :class:`ChunkPlan` (computed in float64, then cast; cached)."""
    return _cached(("chunk", float(alpha), float(beta), int(c), int(k), dtype, str(device)),
                   lambda: _make_chunk_plan(alpha, beta, c, k, dtype, device))


def _make_chunk_plan(alpha: float, beta: float, c: int, k: int, dtype, device) -> ChunkPlan:
    f = torch.float64
    h = combined_kernel(alpha, beta, c, f)
    i = torch.arange(c)
    ends = torch.stack([alpha ** (c - 1 - i.to(f)), h.flip(0)])
    step = torch.tensor([[alpha, 0.0], [(1 - beta) * alpha, beta]], dtype=f)  # (I, U) -> next, no input
    powers = [step]
    for _ in range(c - 1):
        powers.append(step @ powers[-1])
    carry = torch.stack([p[1] for p in powers])  # U's row of A^(t+1)
    per_chunk = [torch.eye(2, dtype=f)]
    for _ in range(k - 1):
        per_chunk.append(powers[-1] @ per_chunk[-1])
    blocks = torch.stack(per_chunk)  # (k, 2, 2): A^(c m)
    j = torch.arange(k)
    gap = j[:, None] - j[None, :]
    cross = torch.where((gap >= 0)[..., None, None], blocks[gap.clamp(min=0)], torch.zeros((), dtype=f))
    cross = cross.permute(2, 0, 3, 1).reshape(2 * k, 2 * k)
    return ChunkPlan(*(m.to(dtype=dtype, device=device).contiguous()
                       for m in (_lower_toeplitz(h), ends, carry, cross)))


def _chunk_filter(x: torch.Tensor, plan: ChunkPlan, adjoint: bool) -> torch.Tensor:
    """The chunked causal filter of ``x`` ``(B, T, N)``, or its adjoint (the transposed linear
    map: the same products transposed, the state carried from later chunks to earlier ones)."""
    b, t, n = x.shape
    c, k = plan.local.shape[0], plan.cross.shape[0] // 2
    if k * c != t:  # zeros after the end: nothing flows back into the first t steps
        x = torch.nn.functional.pad(x, (0, 0, 0, k * c - t))
    xr = x.reshape(b * k, c, n)
    local, first, last, cross = ((plan.local.T, plan.carry.T, plan.ends.T, plan.cross.T) if adjoint else
                                 (plan.local, plan.ends, plan.carry, plan.cross))
    e = torch.matmul(first, xr).view(b, k, 2, n)  # each chunk's own contribution to the states
    s = torch.matmul(cross, e.transpose(1, 2).reshape(b, 2 * k, n)).view(b, 2, k, n).transpose(1, 2)
    shifted = torch.zeros_like(s)  # the state entering chunk j (adjoint: leaving chunk j + 1)
    if adjoint:
        shifted[:, :-1] = s[:, 1:]
    else:
        shifted[:, 1:] = s[:, :-1]
    out = torch.matmul(last, shifted.reshape(b * k, 2, n))  # what the states bring in
    out = out.baddbmm_(local.expand(b * k, c, c), xr).view(b, k * c, n)  # plus the chunk's own input
    return out if k * c == t else out[:, :t]


class _CausalChunked(torch.autograd.Function):
    """:func:`_chunk_filter` with its adjoint as the backward (nothing of ``x`` kept)."""

    @staticmethod
    def forward(ctx, x, plan):
        ctx.plan = plan
        return _chunk_filter(x, plan, adjoint=False)

    @staticmethod
    def backward(ctx, g):
        return _chunk_filter(g.contiguous(), ctx.plan, adjoint=True), None


def membrane_sequential(x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """The reference recurrence, step by step (the definition ``membrane`` must equal)."""
    if x.shape[1] == 0:
        return x.clone()
    i = torch.zeros_like(x[:, 0])
    u = torch.zeros_like(x[:, 0])
    out = []
    for t in range(x.shape[1]):
        i = alpha * i + x[:, t]
        u = beta * u + (1 - beta) * i
        out.append(u)
    return torch.stack(out, 1) if out else x.clone()


# ------------------------------------------------------------------------------------ firing
def fire(u: torch.Tensor, firing: str = "sb", *, uniform: Optional[torch.Tensor] = None, tau: float = 1.0,
         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Spikes from membrane potentials.

    * ``"sb"``: ``S = [uniform < sigmoid(U)]`` forward; backward the straight-through estimate
      ``dS/dU = sigmoid'(U)`` (the derivative of the firing probability);
    * ``"gs"``: Gumbel-softmax (binary concrete) with temperature ``tau``: with logistic noise
      ``L = log(u) - log(1 - u)``, ``S = [U + L > 0]`` forward (so ``P(S = 1) = sigmoid(U)``) and
      the gradient of ``sigmoid((U + L) / tau)`` backward;
    * ``"deterministic"``: ``S = [U > 0]`` (the most likely value; for evaluation), with the SB
      gradient.

    ``uniform`` (same shape, in (0, 1)) supplies the randomness, e.g. from :func:`hash_uniform`;
    otherwise it is drawn from ``generator``.
    """
    if firing not in FIRING:
        raise ValueError(f"firing: {firing!r}; allowed: {', '.join(FIRING)}")
    if firing != "deterministic" and uniform is None:
        uniform = torch.rand(u.shape, dtype=u.dtype, device=u.device, generator=generator)
    if firing == "sb":
        return _StraightThrough.apply(u, lambda p: uniform < p)
    if firing == "gs":
        if not tau > 0:
            raise ValueError(f"tau: {tau} must be > 0")
        u01 = uniform.clamp(1e-7, 1 - 1e-7)
        z = u + torch.log(u01) - torch.log1p(-u01)
        soft = torch.sigmoid(z / tau)
        hard = (z > 0).to(u.dtype)
        return soft + (hard - soft).detach()
    return straight_through(u, u.detach() > 0)


def straight_through(u: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """``hard`` (spikes, any dtype; as ``u``'s dtype) forward, the gradient of ``sigmoid(u)``
    backward: the straight-through estimate of a neuron firing with probability ``sigmoid(u)``."""
    return _StraightThrough.apply(u, lambda p: hard)


class _StraightThrough(torch.autograd.Function):
    """Forward ``decide(sigmoid(u))`` as ``u``'s dtype, backward ``g sigmoid'(u)``: what
    ``p + (hard - p).detach()`` computes, without its two extra passes over memory."""

    @staticmethod
    def forward(ctx, u, decide):
        p = torch.sigmoid(u)
        ctx.save_for_backward(p)
        return decide(p).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        return torch.ops.aten.sigmoid_backward(g, p), None


def hash_keys(seed: int, sample: torch.Tensor, steps: int, n: int, offset: int = 0) -> torch.Tensor:
    """The draws of stochastic neurons on the chip: ``key(seed, sample, t, DRAW_STEP, offset + i)``
    for neuron ``i`` at step (frame) ``t``, ``(B, T, N)`` ``int64`` in ``[0, 2^32)`` (see
    :data:`asyncsnn.hashing.DRAW_STEP`); ``offset + i`` is the chip's source number (inputs
    first, see :mod:`asyncsnn.stochastic`)."""
    from .. import hashing

    out = torch.empty(sample.shape[0], steps, n, dtype=torch.int64, device=sample.device)
    src = torch.arange(offset, offset + n, device=sample.device, dtype=torch.int64)
    for t in range(steps):
        out[:, t] = hashing.key(seed, sample[:, None], t, hashing.DRAW_STEP, src[None])
    return out


_TABLES: dict[str, torch.Tensor] = {}


def table_index(z: torch.Tensor) -> torch.Tensor:
    """``floor(z * 256)`` of float32 ``z = U - theta`` clamped to ``[-4096, 4096]`` (``int64``)."""
    from ..stochastic import LOGIT_MAX, LOGIT_SCALE

    s = torch.floor(z.detach().to(torch.float32) * LOGIT_SCALE).nan_to_num(0.0)
    return s.clamp(-LOGIT_MAX, LOGIT_MAX).to(torch.int64)


def fire_table(index: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The chip's decision ``key < T[index]`` (bool), with the table of :mod:`asyncsnn.stochastic`."""
    from ..stochastic import LOGIT_MAX, thresholds

    dev = str(index.device)
    t = _TABLES.get(dev)
    if t is None:
        t = _TABLES[dev] = torch.tensor(thresholds().astype(np.int64), device=index.device)
    return keys < t[index + LOGIT_MAX]


def rate_penalty(spikes: torch.Tensor, target: float = 0.0) -> torch.Tensor:
    """The rate regulariser: mean squared excess of each neuron's firing rate over ``target``
    (``(B, T, N)`` spikes; zero when every rate is at most the target)."""
    rate = spikes.mean(dim=1)
    return torch.relu(rate - target).pow(2).mean()
