"""The firing rule of stochastic neurons (deployed SPSN neurons), bit for bit as the emulator
computes it (``emulator/src/stochastic.rs``). Plain numpy: the numpy reference model and the
PyTorch deployment both use it.

A stochastic neuron with potential ``v`` and threshold ``theta`` fires with probability
``sigmoid(v - theta)``. Library ``exp`` functions differ in the last bit, so the probability is
a table lookup on a grid of 1/256:

* index ``i = floor((v - theta) * 256)`` clamped to ``[-4096, 4096]`` (in fixed point the same
  floor of the raw difference shifted to 8 fractional bits);
* ``T[i] = floor(sigmoid(i / 256) * 2^32)``, computed with IEEE double operations only
  (correctly rounded everywhere): ``E[0] = 1``, ``E[j] = E[j-1] * e`` with ``e`` the double
  nearest ``exp(1/256)``, then ``E[i] / (E[i] + 1)`` for ``i >= 0``, ``1 / (1 + E[-i])`` below;
* the neuron fires iff ``key(seed, sample, frame, DRAW_STEP, source) < T[i]``, with the
  scheduler's hash (:mod:`asyncsnn.hashing`; ``DRAW_STEP = 2^32 - 1``) and the neuron's
  source number ``n_inputs + n``.

The grid costs at most ``0.25 / 256 < 0.001`` of firing probability against the exact sigmoid.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

LOGIT_SCALE = 256
LOGIT_MAX = 4096
_EXP_STEP = float.fromhex("0x1.0100802ab5577p+0")  # the double nearest exp(1/256)


@lru_cache(maxsize=1)
def thresholds() -> np.ndarray:
    """``T[i + 4096]`` for ``i`` in ``-4096..=4096`` (``uint64``, read-only)."""
    e = [1.0]
    for _ in range(LOGIT_MAX):
        e.append(e[-1] * _EXP_STEP)
    out = []
    for i in range(-LOGIT_MAX, LOGIT_MAX + 1):
        p = e[i] / (e[i] + 1.0) if i >= 0 else 1.0 / (1.0 + e[-i])
        out.append(int(np.floor(p * 4294967296.0)))
    t = np.array(out, dtype=np.uint64)
    t.setflags(write=False)
    return t


def index_f32(z) -> np.ndarray:
    """Table index of float32 differences ``z = v - theta``."""
    z = np.asarray(z, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.floor(z * np.float32(LOGIT_SCALE)).astype(np.float64)
    return np.clip(np.nan_to_num(s, nan=0.0, posinf=LOGIT_MAX, neginf=-LOGIT_MAX), -LOGIT_MAX, LOGIT_MAX).astype(
        np.int64)


def index_fixed(z, frac_bits: int) -> np.ndarray:
    """Table index of raw fixed-point differences (``frac_bits`` fractional bits)."""
    z = np.asarray(z, dtype=np.int64)
    s = z >> (frac_bits - 8) if frac_bits >= 8 else z << (8 - frac_bits)
    return np.clip(s, -LOGIT_MAX, LOGIT_MAX)


def fires(keys, index) -> np.ndarray:
    """The decision: ``key < T[index]`` (``keys`` from the hash with step
    :data:`asyncsnn.hashing.DRAW_STEP`)."""
    t = thresholds()
    idx = np.clip(np.asarray(index, np.int64), -LOGIT_MAX, LOGIT_MAX) + LOGIT_MAX
    return np.asarray(keys, np.uint64) < t[idx]
