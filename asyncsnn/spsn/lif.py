"""Sequential LIF layers, the baselines SPSN is measured against (pure functions).

The same neuron as SPSN's membrane (synaptic current with decay ``alpha``, membrane with decay
``beta`` and gain ``1 - beta``) plus what makes it sequential: a strict threshold ``theta`` and
a subtractive reset (detached from the gradient, as is usual), with a surrogate gradient:

    I[t] = alpha I[t-1] + X[t];  V[t] = beta U[t-1] + (1 - beta) I[t];
    S[t] = [V[t] > theta];       U[t] = V[t] - theta S[t]

Three implementations of one layer over a whole sequence ``x`` ``(B, T, N_in)``:

* :func:`lif_loop`: the plain per-step loop, autograd through every step (the reference);
  :func:`lif_network_loop` runs a whole stack of layers that way, step by step;
* :func:`lif_fused`: the input projection for all steps in one product, then the recurrence as
  one autograd function whose forward and backward are tight loops over time that save only
  ``V`` (no per-step graph): the fastest plain-PyTorch LIF here;
* :func:`lif_compiled`: the plain loop with its step function compiled by ``torch.compile``.

All three give the same spikes and (to float rounding) the same gradients; a test checks it.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..sim.functional import Surrogate, spike


def lif_step(i: torch.Tensor, u: torch.Tensor, x: torch.Tensor, alpha: float, beta: float, theta: float,
             surrogate: str = "fast_sigmoid", slope: float = 10.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step: ``(I, U, S)`` from ``(I, U)`` and the input current ``x`` ``(B, N)``."""
    i = alpha * i + x
    v = beta * u + (1 - beta) * i
    s = spike(v - theta, surrogate, slope)
    return i, v - theta * s.detach(), s


def lif_loop(x: torch.Tensor, w: torch.Tensor, alpha: float, beta: float, theta: float = 1.0, *,
             bias: Optional[torch.Tensor] = None, surrogate: str = "fast_sigmoid", slope: float = 10.0,
             step: Optional[Callable] = None) -> torch.Tensor:
    """Spikes ``(B, T, N)`` of a layer with weights ``w`` ``(N, N_in)`` (and ``bias``), one
    step at a time."""
    step = lif_step if step is None else step
    b, t, _ = x.shape
    n = w.shape[0]
    i = torch.zeros(b, n, dtype=x.dtype, device=x.device)
    u = torch.zeros_like(i)
    out = []
    for k in range(t):
        cur = x[:, k] @ w.t() if bias is None else torch.addmm(bias, x[:, k], w.t())
        i, u, s = step(i, u, cur, alpha, beta, theta, surrogate, slope)
        out.append(s)
    return torch.stack(out, 1) if out else x.new_zeros(b, 0, n)


def lif_network_loop(x: torch.Tensor, weights: list, biases: list, alpha: float, beta: float, theta: float = 1.0,
                     *, surrogate: str = "fast_sigmoid", slope: float = 10.0,
                     step: Optional[Callable] = None) -> list:
    """A stack of LIF layers run the plain way: for each time step, every layer in turn (the
    spikes of a layer feed the next at the same step; nothing is sliced out of a sequence that
    needs a gradient). Returns each layer's spikes ``(B, T, N)``."""
    step = lif_step if step is None else step
    b, t, _ = x.shape
    state = [(x.new_zeros(b, w.shape[0]), x.new_zeros(b, w.shape[0])) for w in weights]
    outs: list = [[] for _ in weights]
    for k in range(t):
        h = x[:, k]
        for j, (w, bias) in enumerate(zip(weights, biases)):
            cur = h @ w.t() if bias is None else torch.addmm(bias, h, w.t())
            i, u, h = step(*state[j], cur, alpha, beta, theta, surrogate, slope)
            state[j] = (i, u)
            outs[j].append(h)
    return [torch.stack(o, 1) if o else x.new_zeros(b, 0, w.shape[0]) for o, w in zip(outs, weights)]


def compiled_step() -> Callable:
    """:func:`lif_step` compiled by ``torch.compile`` (once per process)."""
    if "step" not in _COMPILED:
        _COMPILED["step"] = torch.compile(lif_step, dynamic=False)
    return _COMPILED["step"]


class _Recurrence(torch.autograd.Function):
    """The LIF recurrence over a whole sequence of input currents ``(T, B, N)``."""

    @staticmethod
    def forward(ctx, cur: torch.Tensor, alpha: float, beta: float, theta: float,  # type: ignore[override]
                surrogate: Surrogate) -> torch.Tensor:
        t = cur.shape[0]
        v_all = torch.empty_like(cur)
        s_all = torch.empty_like(cur)
        i = torch.zeros_like(cur[0])
        u = torch.zeros_like(cur[0])
        for k in range(t):
            i.mul_(alpha).add_(cur[k])
            v = v_all[k]
            torch.add(u.mul_(beta), i, alpha=1 - beta, out=v)
            s = s_all[k]
            torch.gt(v, theta, out=s)  # bool -> float written in place
            torch.sub(v, s, alpha=theta, out=u)
        ctx.save_for_backward(v_all)
        ctx.consts = (alpha, beta, theta, surrogate)
        return s_all

    @staticmethod
    def backward(ctx, g_s: torch.Tensor):  # type: ignore[override]
        (v_all,) = ctx.saved_tensors
        alpha, beta, theta, surrogate = ctx.consts
        t = v_all.shape[0]
        g_x = torch.empty_like(v_all)
        g_u = torch.zeros_like(v_all[0])
        g_i = torch.zeros_like(v_all[0])
        for k in range(t - 1, -1, -1):
            g_v = g_s[k] * surrogate.grad(v_all[k] - theta) + g_u
            g_i = g_i.mul_(alpha).add_(g_v, alpha=1 - beta)
            g_x[k] = g_i
            g_u = g_v.mul_(beta)
        return g_x, None, None, None, None


def lif_fused(x: torch.Tensor, w: torch.Tensor, alpha: float, beta: float, theta: float = 1.0, *,
              bias: Optional[torch.Tensor] = None, surrogate: str = "fast_sigmoid",
              slope: float = 10.0) -> torch.Tensor:
    """:func:`lif_loop` with the projection batched over time and a fused recurrence."""
    cur = x @ w.t() if bias is None else x @ w.t() + bias
    cur = cur.transpose(0, 1).contiguous()  # (T, B, N)
    s = _Recurrence.apply(cur, float(alpha), float(beta), float(theta), Surrogate.of(surrogate, slope))
    return s.transpose(0, 1)


_COMPILED: dict = {}


def lif_compiled(x: torch.Tensor, w: torch.Tensor, alpha: float, beta: float, theta: float = 1.0, *,
                 bias: Optional[torch.Tensor] = None, surrogate: str = "fast_sigmoid",
                 slope: float = 10.0) -> torch.Tensor:
    """:func:`lif_loop` with its step function compiled by ``torch.compile`` (compiled once per
    process; the first call pays the compilation)."""
    return lif_loop(x, w, alpha, beta, theta, bias=bias, surrogate=surrogate, slope=slope, step=compiled_step())


LIF_IMPLS = {"loop": lif_loop, "fused": lif_fused, "compiled": lif_compiled}
