"""Saturating fixed-point arithmetic of the chip, as pure functions on ``int64`` tensors.

The same format as the emulator's ``fixed`` arithmetic (``emulator/src/arith.rs``), bit for bit:

* a weight ``w`` is stored as ``round(w 2^frac_bits)`` (half away from zero) clipped to
  ``weight_bits`` signed bits; a threshold uses the same scale and must land in
  ``1 .. 2^(potential_bits-1) - 1``;
* potentials are ``potential_bits`` signed integers; ``v + current`` and ``v - theta`` saturate;
  the current of a step is summed exactly (``int64``) before it is added;
* the leak ``beta`` is stored as ``round(beta 2^leak_bits)`` and applied as
  ``(v beta_q) >> leak_bits``, an arithmetic shift (rounding toward minus infinity).

:class:`FixedPoint` holds the bit widths; the simulator takes one through
``AsyncSimulator.forward(arithmetic=...)``.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import numpy as np
import torch

LIMITS = {"weight_bits": (2, 32), "potential_bits": (2, 48), "leak_bits": (1, 24)}


class FixedPoint(NamedTuple):
    weight_bits: int
    potential_bits: int
    frac_bits: int
    leak_bits: int

    @classmethod
    def of(cls, arithmetic: Union["FixedPoint", dict]) -> "FixedPoint":
        """From a chip's ``config["arithmetic"]`` (``kind = "fixed"``) or a ``FixedPoint``;
        checks the ranges the emulator checks."""
        if isinstance(arithmetic, FixedPoint):
            fx = arithmetic
        else:
            if not isinstance(arithmetic, dict) or arithmetic.get("kind", "fixed") != "fixed":
                raise ValueError(f"arithmetic: {arithmetic!r}; expected a fixed-point description "
                                 "(kind = \"fixed\", weight_bits, potential_bits, frac_bits, leak_bits)")
            try:
                fx = cls(*(int(arithmetic[k]) for k in cls._fields))
            except KeyError as e:
                raise ValueError(f"arithmetic.{e.args[0]}: missing") from None
        for name, (lo, hi) in LIMITS.items():
            val = getattr(fx, name)
            if not lo <= val <= hi:
                raise ValueError(f"arithmetic.{name}: {val} is outside {lo}..={hi}")
        if fx.weight_bits > fx.potential_bits:
            raise ValueError(f"arithmetic.weight_bits: {fx.weight_bits} must be <= potential_bits ({fx.potential_bits})")
        if not 0 <= fx.frac_bits < fx.potential_bits:
            raise ValueError(f"arithmetic.frac_bits: {fx.frac_bits} is outside 0..{fx.potential_bits} (potential_bits)")
        return fx

    @property
    def scale(self) -> float:
        return float(2 ** self.frac_bits)

    @property
    def v_range(self) -> tuple[int, int]:
        return -(1 << (self.potential_bits - 1)), (1 << (self.potential_bits - 1)) - 1

    @property
    def w_range(self) -> tuple[int, int]:
        return -(1 << (self.weight_bits - 1)), (1 << (self.weight_bits - 1)) - 1


def format_of(arithmetic) -> "FixedPoint | None":
    """``None`` for float arithmetic (``None``, ``"f32"`` or ``{"kind": "f32"}``), else the
    checked :class:`FixedPoint` (see :meth:`FixedPoint.of`)."""
    if arithmetic is None or arithmetic == "f32" or (isinstance(arithmetic, dict) and arithmetic.get("kind") == "f32"):
        return None
    return FixedPoint.of(arithmetic)


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties away from zero (Rust's ``f64::round``)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _on_grid(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``round(x * scale)`` as the emulator computes it: the ``float32`` value widened to
    ``float64``, scaled, rounded half away from zero (still ``float64``)."""
    return round_half_away(x.detach().to(torch.float32).to(torch.float64) * scale)


def quantize(fx: FixedPoint, w: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Weights (any float tensor, read as ``float32``) on the grid: ``int64`` tensor and the
    number of weights clipped to the ``weight_bits`` range."""
    q = _on_grid(w, fx.scale)
    lo, hi = fx.w_range
    clipped = int(((q < lo) | (q > hi)).sum())
    return q.clamp(lo, hi).to(torch.int64), clipped


def quantize_array(fx: FixedPoint, w: np.ndarray) -> np.ndarray:
    """:func:`quantize` for numpy arrays, back in network units (``float32``)."""
    q, _ = quantize(fx, torch.as_tensor(np.asarray(w, np.float32)))
    return (q.to(torch.float64) / fx.scale).numpy().astype(np.float32)


def threshold_grid(fx: FixedPoint, theta) -> np.ndarray:
    """Thresholds rounded to the grid and raised to its smallest step, in network units (for
    quantising a network before export; :func:`threshold` checks instead)."""
    q = _on_grid(torch.as_tensor(np.asarray(theta, np.float32)), fx.scale).clamp(min=1)
    return (q / fx.scale).numpy()


def threshold(fx: FixedPoint, theta: torch.Tensor) -> torch.Tensor:
    q = _on_grid(theta, fx.scale)
    bad = (q < 1) | (q > fx.v_range[1])
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"theta: threshold {float(theta[i])} of neuron {i} quantizes to {int(q[i])}, outside "
                         f"1..={fx.v_range[1]} of this fixed-point format")
    return q.to(torch.int64)


def leak_factor(fx: FixedPoint, beta: torch.Tensor) -> torch.Tensor:
    return _on_grid(beta, 2.0 ** fx.leak_bits).to(torch.int64)


def leak(fx: FixedPoint, v: torch.Tensor, beta_q: torch.Tensor) -> torch.Tensor:
    """``(v beta_q) >> leak_bits``, exact in ``int64``: ``v`` is split at ``leak_bits`` so that no
    product exceeds ``2^48`` (the emulator uses a 128-bit product)."""
    lb = fx.leak_bits
    hi = v >> lb
    lo = v & ((1 << lb) - 1)
    out = hi * beta_q + ((lo * beta_q) >> lb)
    return out.clamp(*fx.v_range)


def saturate(fx: FixedPoint, v: torch.Tensor) -> torch.Tensor:
    return v.clamp(*fx.v_range)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer product. The CPU multiplies ``int64`` directly; other devices have no integer
    matmul, so they use ``float64``, exact while every partial sum stays below ``2^53``."""
    if a.device.type == "cpu":
        return a @ b
    return torch.round(a.to(torch.float64) @ b.to(torch.float64)).to(torch.int64)
