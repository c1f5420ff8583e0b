"""Embedded, deterministic generated datasets: no download, same samples for the same seed.

* ``manifold`` (temporal): spike patterns on smooth random manifolds, in the style of Zenke and
  Vogels (2021). Each class is a smooth random map from an intrinsic coordinate
  ``theta in [0, 1]^dim`` to one spike time per channel; a sample is a random point on its
  class's manifold. Harder with more classes, a higher manifold dimension, rougher maps
  (smaller ``alpha``) and more timing jitter.
* ``digits`` (spatial): the 8 x 8 handwritten digits bundled with scikit-learn, turned into
  DVS-like events the way N-MNIST was recorded: the image moves along three small saccades in
  front of a simulated sensor whose pixels emit an ON (OFF) event each time their log intensity
  rises (falls) by a contrast threshold; two polarities, optional background noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..chip import require_memory
from ..extras import require
from .base import DatasetInfo, EventDataset, make_events


@dataclass(frozen=True)
class ManifoldConfig:
    n_channels: int = 100
    n_classes: int = 10
    dim: int = 1
    alpha: float = 2.0
    n_basis: int = 3
    duration_us: int = 100_000
    jitter_us: float = 1_000.0
    train_per_class: int = 100
    test_per_class: int = 30
    seed: int = 0


class ManifoldDataset(EventDataset):
    """One split of the random-manifold dataset (see the module docstring)."""

    def __init__(self, cfg: ManifoldConfig, split: str) -> None:
        if cfg.n_channels < 1 or cfg.n_classes < 2 or cfg.dim < 1 or cfg.n_basis < 1:
            raise ValueError("manifold: need n_channels >= 1, n_classes >= 2, dim >= 1, n_basis >= 1")
        if cfg.duration_us < 1 or cfg.jitter_us < 0 or cfg.alpha < 0:
            raise ValueError("manifold: need duration_us >= 1, jitter_us >= 0, alpha >= 0")
        self.cfg, self.split = cfg, split
        per_class = cfg.train_per_class if split == "train" else cfg.test_per_class
        # options that ask for more than fits are named up front (train_per_class = 1e9 took 13 GB)
        require_memory(f"manifold: {cfg.n_classes} classes x {per_class} {split} samples per class x "
                       f"{cfg.n_channels} channels (dim {cfg.dim}, n_basis {cfg.n_basis})",
                       8 * (cfg.n_classes * per_class * (cfg.n_channels + cfg.dim + 1)
                            + 2 * cfg.n_classes * cfg.n_channels * cfg.dim * cfg.n_basis), "lower these options")
        self.info = DatasetInfo("manifold", cfg.n_channels, cfg.n_classes,
                                tuple(str(k) for k in range(cfg.n_classes)), (cfg.n_channels,), cfg.duration_us,
                                "generated (asyncsnn.data.generated)", "generated")
        rng = np.random.default_rng([cfg.seed, 0])
        j = np.arange(1, cfg.n_basis + 1)
        shape = (cfg.n_classes, cfg.n_channels, cfg.dim, cfg.n_basis)
        self._amp = rng.random(shape) / j ** cfg.alpha
        self._phase = rng.random(shape)
        self._freq = j.astype(np.float64)
        per_class = cfg.train_per_class if split == "train" else cfg.test_per_class
        self._labels = np.repeat(np.arange(cfg.n_classes), per_class)
        srng = np.random.default_rng([cfg.seed, 1 if split == "train" else 2])
        self._theta = srng.random((len(self._labels), cfg.dim))
        self._noise = srng.normal(0.0, 1.0, (len(self._labels), cfg.n_channels))

    def __len__(self) -> int:
        return len(self._labels)

    def spike_times(self, label: int, theta: np.ndarray) -> np.ndarray:
        """The manifold of class ``label`` at ``theta``: one time (us) per channel."""
        a, ph = self._amp[label], self._phase[label]
        s = (a * np.sin(2 * np.pi * (self._freq * theta[None, :, None] + ph))).sum(axis=(1, 2))
        unit = 0.5 * (s / a.sum(axis=(1, 2)) + 1.0)  # in [0, 1]
        return unit * (self.cfg.duration_us - 1)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        y = int(self._labels[index])
        t = self.spike_times(y, self._theta[index]) + self.cfg.jitter_us * self._noise[index]
        t = np.clip(np.round(t), 0, self.cfg.duration_us - 1).astype(np.int64)
        return make_events(t, np.arange(self.cfg.n_channels)), y

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def cache_key(self) -> str:
        c = self.cfg
        return (f"manifold-{self.split}-c{c.n_channels}-k{c.n_classes}-d{c.dim}-a{c.alpha}-b{c.n_basis}"
                f"-T{c.duration_us}-j{c.jitter_us}-n{c.train_per_class}-{c.test_per_class}-s{c.seed}")


@dataclass(frozen=True)
class DigitsConfig:
    size: int = 20               # sensor side (pixels); the digit is drawn at 2x its 8 x 8 size
    saccade_px: float = 1.5      # amplitude of the sensor motion
    saccade_us: int = 100_000    # duration of one saccade (three per sample)
    step_us: int = 2_000         # sampling of the motion
    contrast: float = 0.15       # log-intensity change per event
    noise_hz: float = 0.0        # background events per pixel and second
    seed: int = 0
    test_fraction: float = 0.2


def _load_digits():
    load_digits = require("sklearn.datasets", "data", "the digits dataset").load_digits

    d = load_digits()
    return d.images.astype(np.float64) / 16.0, d.target.astype(np.int64)


def _int_shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Integer translation with zero fill."""
    h, w = img.shape
    out = np.zeros_like(img)
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    out[yd, xd] = img[ys, xs]
    return out


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Bilinear sub-pixel translation with zero fill (a uniform shift: four integer shifts)."""
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy
    return ((1 - fx) * (1 - fy) * _int_shift(img, ix, iy) + fx * (1 - fy) * _int_shift(img, ix + 1, iy)
            + (1 - fx) * fy * _int_shift(img, ix, iy + 1) + fx * fy * _int_shift(img, ix + 1, iy + 1))


class DigitsDataset(EventDataset):
    """One split of the DVS-like digits dataset (see the module docstring)."""

    def __init__(self, cfg: DigitsConfig, split: str) -> None:
        if cfg.size < 18 or cfg.contrast <= 0 or cfg.step_us < 1 or cfg.saccade_us < cfg.step_us:
            raise ValueError("digits: need size >= 18, contrast > 0, 1 <= step_us <= saccade_us")
        self.cfg, self.split = cfg, split
        images, labels = _load_digits()
        order = np.random.default_rng([cfg.seed, 3]).permutation(len(labels))
        n_test = int(round(cfg.test_fraction * len(labels)))
        idx = order[:n_test] if split == "test" else order[n_test:]
        self._images, self._labels = images[idx], labels[idx]
        s = cfg.size
        self.info = DatasetInfo("digits", s * s * 2, 10, tuple(str(k) for k in range(10)), (s, s, 2),
                                3 * cfg.saccade_us, "generated from scikit-learn's digits (UCI, CC BY 4.0)",
                                "CC BY 4.0 (source images)")

    def __len__(self) -> int:
        return len(self._labels)

    def _frame(self, index: int) -> np.ndarray:
        s = self.cfg.size
        big = np.kron(self._images[index], np.ones((2, 2)))  # 16 x 16
        canvas = np.zeros((s, s))
        o = (s - 16) // 2
        canvas[o:o + 16, o:o + 16] = big
        return canvas

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        cfg, s = self.cfg, self.cfg.size
        rng = np.random.default_rng([cfg.seed, 4, int(index), 0 if self.split == "train" else 1])
        img = self._frame(index)
        a = cfg.saccade_px
        corners = [(0.0, 0.0), (a, a), (2 * a, 0.0), (0.0, 0.0)]  # three saccades, as N-MNIST
        steps = cfg.saccade_us // cfg.step_us
        log_i = lambda im: np.log(im + 0.05)  # noqa: E731
        ref = log_i(img)
        ts, cs = [], []
        for k in range(3):
            (x0, y0), (x1, y1) = corners[k], corners[k + 1]
            for j in range(1, steps + 1):
                u = j / steps
                cur = log_i(_shift(img, x0 + u * (x1 - x0), y0 + u * (y1 - y0)))
                d = cur - ref
                n = np.floor(np.abs(d) / cfg.contrast).astype(np.int64)
                ys, xs = np.nonzero(n)
                if len(ys):
                    counts = n[ys, xs]
                    pol = (d[ys, xs] > 0).astype(np.int64)
                    ref[ys, xs] += np.sign(d[ys, xs]) * counts * cfg.contrast
                    ch = np.repeat((pol * s + ys) * s + xs, counts)
                    t0 = (k * steps + j - 1) * cfg.step_us
                    ts.append(t0 + rng.integers(0, cfg.step_us, size=len(ch)))
                    cs.append(ch)
        if cfg.noise_hz > 0:
            dur = 3 * cfg.saccade_us
            n_noise = rng.poisson(cfg.noise_hz * dur * 1e-6 * s * s * 2)
            ts.append(rng.integers(0, dur, size=n_noise))
            cs.append(rng.integers(0, s * s * 2, size=n_noise))
        t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
        c = np.concatenate(cs) if cs else np.zeros(0, np.int64)
        return make_events(t, c), int(self._labels[index])

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def cache_key(self) -> str:
        c = self.cfg
        return (f"digits-{self.split}-s{c.size}-a{c.saccade_px}-T{c.saccade_us}-st{c.step_us}-c{c.contrast}"
                f"-n{c.noise_hz}-seed{c.seed}-tf{c.test_fraction}")
