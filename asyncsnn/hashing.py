"""The scheduler hash, once, for integer numpy arrays, torch tensors and Python ints.

Every random choice of the execution model is a counter-based hash, so that the chip, PyTorch
and anyone else compute the same order with no shared random state (the Rust definition is
``emulator/src/hash.rs``; the golden vectors fix both)::

    mix(x):  x = x mod 2^32
             x = ((x >> 16) XOR x) * 0x45d9f3b  mod 2^32
             x = ((x >> 16) XOR x) * 0x45d9f3b  mod 2^32
             return (x >> 16) XOR x
    key(seed, sample, frame, step, source) =
        mix(mix(mix(mix(mix(seed) XOR sample) XOR frame) XOR step) XOR source)

Every product stays below 2^59, so the arithmetic is exact in signed 64-bit integers: the
functions below take ``int64`` tensors, integer numpy arrays (any width, taken mod 2^32) or
Python ints, broadcast like the operators they use, and return the same kind. The key is built
in stages so that a loop can hash the fixed part once: :func:`frame_prefix` (seed, sample,
frame), then :func:`step_prefix` (step), then :func:`source_key` (source).

>>> key(0, 0, 0, 0, 0) == key(0, 0, 0, 0, [0])[0]
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

MASK = 0xFFFFFFFF
MULTIPLIER = 0x45D9F3B
DRAW_STEP = MASK
"""The step of a stochastic neuron's draw: ``key(seed, sample, frame, DRAW_STEP, source)``.
No schedule reaches step ``2^32 - 1``, so draws never coincide with a scheduler's keys."""


def _int(x: Any) -> Any:
    """``x`` as an integer of its kind that XORs exactly with the others: a Python int or an
    ``int64`` array mod 2^32; a tensor as it is (masking distributes over XOR, so :func:`mix`
    masks once, at its start)."""
    if isinstance(x, (int, np.integer)):
        return int(x) & MASK
    if isinstance(x, (np.ndarray, list, tuple)):
        a = np.asarray(x)
        if a.size == 0:
            a = a.astype(np.int64)
        if a.dtype.kind not in "iub":
            raise TypeError(f"hash: expected integers, got {a.dtype}")
        return (a.astype(np.uint64) & np.uint64(MASK)).astype(np.int64)
    return x  # an integer tensor


def mix(x: Any) -> Any:
    """The mixer, elementwise."""
    x = _int(x) & MASK
    x = (((x >> 16) ^ x) * MULTIPLIER) & MASK
    x = (((x >> 16) ^ x) * MULTIPLIER) & MASK
    return (x >> 16) ^ x


def frame_prefix(seed: Any, sample: Any, frame: Any) -> Any:
    """``mix(mix(mix(seed) ^ sample) ^ frame)``: the part of a key fixed for a whole frame."""
    return mix(mix(mix(seed) ^ _int(sample)) ^ _int(frame))


def step_prefix(prefix: Any, step: Any) -> Any:
    """``mix(prefix ^ step)``: the part of a key fixed for one step."""
    return mix(_int(prefix) ^ _int(step))


def source_key(prefix: Any, source: Any) -> Any:
    """``mix(prefix ^ source)``: the key of a source from its :func:`step_prefix`."""
    return mix(_int(prefix) ^ _int(source))


def key(seed: Any, sample: Any, frame: Any, step: Any, source: Any) -> Any:
    """``key(seed, sample, frame, step, source)``, elementwise with broadcasting."""
    return source_key(step_prefix(frame_prefix(seed, sample, frame), step), source)


__all__ = ["DRAW_STEP", "MASK", "MULTIPLIER", "frame_prefix", "key", "mix", "source_key", "step_prefix"]
