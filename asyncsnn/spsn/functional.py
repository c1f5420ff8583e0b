"""Stochastic parallelizable spiking neurons (SPSN, Yarga and Wood 2023) as pure functions.

An SPSN neuron has no reset, so its membrane is a linear, causal filter of its input and the
whole sequence is computed at once:

    I[t] = alpha I[t-1] + X[t]              (synaptic current, kernel l[n] = alpha^n)
    U[t] = beta U[t-1] + (1 - beta) I[t]    (membrane, kernel k[n] = (1 - beta) beta^n)

so ``U = h * X`` with the combined kernel ``h = k * l``,
``h[n] = (1 - beta) (alpha^(n+1) - beta^(n+1)) / (alpha - beta)`` (``(1 - beta)(n + 1) alpha^n``
when ``alpha == beta``). The neuron fires ``S ~ Bernoulli(sigmoid(U))``.

Time is dimension 1 of every ``(batch, time, neurons)`` tensor. Two ways to convolve:

* ``"fft"``: zero-padded to at least ``2T - 1`` (no wrap-around), ``O(T log T)``; the kernel's
  FFT is cached per length, decays, dtype and device;
* ``"direct"``: one product with the ``(T, T)`` lower-triangular Toeplitz matrix of ``h``,
  ``O(T^2)`` but a single matmul: faster for short sequences.

``"auto"`` picks direct up to :data:`DIRECT_MAX_T` steps.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

DIRECT_MAX_T = 1024  # on 2 CPU cores the Toeplitz product wins up to about here
METHODS = ("auto", "fft", "direct")
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


def kernel_fft(alpha: float, beta: float, length: int, n_fft: int, dtype, device) -> torch.Tensor:
    """``rfft`` of the combined kernel, cached."""
    key = (float(alpha), float(beta), int(length), int(n_fft), dtype, str(device))
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        h = combined_kernel(alpha, beta, length, torch.float64, device)
        hit = torch.fft.rfft(h, n=n_fft).to(torch.complex64 if dtype != torch.float64 else torch.complex128)
        _CACHE[key] = hit
    return hit


def toeplitz(alpha: float, beta: float, length: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The ``(T, T)`` matrix ``A[t, s] = h[t - s]`` for ``s <= t`` (else 0), cached."""
    key = ("toeplitz", float(alpha), float(beta), int(length), dtype, str(device))
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        h = combined_kernel(alpha, beta, length, dtype, device)
        i = torch.arange(length, device=device)
        d = i[:, None] - i[None, :]
        hit = torch.where(d >= 0, h[d.clamp(min=0)], torch.zeros((), dtype=dtype, device=device))
        _CACHE[key] = hit
    return hit


def membrane(x: torch.Tensor, alpha: float, beta: float, method: str = "auto") -> torch.Tensor:
    """``U = h * X`` over time for ``x`` ``(B, T, N)``, all steps at once (differentiable)."""
    if method not in METHODS:
        raise ValueError(f"method: {method!r}; allowed: {', '.join(METHODS)}")
    if x.ndim != 3:
        raise ValueError(f"x: expected (batch, time, neurons), got shape {tuple(x.shape)}")
    t = x.shape[1]
    if t == 0:
        return x.clone()
    if method == "auto":
        method = "direct" if t <= DIRECT_MAX_T else "fft"
    if method == "direct":
        return torch.einsum("ts,bsn->btn", toeplitz(alpha, beta, t, x.dtype, x.device), x)
    n_fft = _fft_len(t)
    xf = torch.fft.rfft(x.transpose(1, 2), n=n_fft, dim=-1)  # time last: contiguous transforms
    hf = kernel_fft(alpha, beta, t, n_fft, x.dtype, x.device)
    return torch.fft.irfft(xf * hf, n=n_fft, dim=-1)[..., :t].transpose(1, 2).to(x.dtype)


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
    p = torch.sigmoid(u)
    if firing == "sb":
        hard = (uniform < p).to(u.dtype)
        return p + (hard - p).detach()
    if firing == "gs":
        if not tau > 0:
            raise ValueError(f"tau: {tau} must be > 0")
        u01 = uniform.clamp(1e-7, 1 - 1e-7)
        z = u + torch.log(u01) - torch.log1p(-u01)
        soft = torch.sigmoid(z / tau)
        hard = (z > 0).to(u.dtype)
        return soft + (hard - soft).detach()
    hard = (u > 0).to(u.dtype)
    return p + (hard - p).detach()


def hash_keys(seed: int, sample: torch.Tensor, steps: int, n: int, offset: int = 0) -> torch.Tensor:
    """The draws of stochastic neurons on the chip: ``key(seed, sample, t, 2^32 - 1, offset + i)``
    for neuron ``i`` at step (frame) ``t``, ``(B, T, N)`` ``int64`` in ``[0, 2^32)``. The step
    ``2^32 - 1`` never occurs in a schedule, so these draws are independent of the scheduler's
    keys; ``offset + i`` is the chip's source number (inputs first, see
    :mod:`asyncsnn.stochastic`)."""
    from ..sim.functional import frame_prefix, mix

    out = torch.empty(sample.shape[0], steps, n, dtype=torch.int64, device=sample.device)
    src = torch.arange(offset, offset + n, device=sample.device, dtype=torch.int64)
    for t in range(steps):
        h = mix(frame_prefix(seed, sample, t) ^ 0xFFFFFFFF)
        out[:, t] = mix(h[:, None] ^ src[None])
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
