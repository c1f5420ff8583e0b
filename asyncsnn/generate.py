"""Generated networks and inputs for demos, tests and benchmarks (deterministic per seed)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .network import Network, Population, Projection


def random_feedforward(
    sizes: Sequence[int],
    *,
    seed: int = 0,
    theta: float = 1.0,
    beta: float = 0.9,
    reset: str = "subtract",
    refractory: bool = False,
    gain: float = 2.0,
    grid: bool = False,
) -> Network:
    """A layered network ``sizes[0] -> ... -> sizes[-1]`` with Gaussian weights scaled by
    ``gain / sqrt(fan_in)``; ``grid=True`` rounds weights to multiples of 1/64 (exact in f32)."""
    rng = np.random.default_rng(seed)
    mats = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(0.0, gain / np.sqrt(a), size=(b, a)).astype(np.float32) + np.float32(gain / a)
        if grid:
            w = (np.round(w * 64) / 64).astype(np.float32)
        mats.append(w)
    pops = [Population(b, theta, beta, reset, refractory, name=f"layer{i}") for i, b in enumerate(sizes[1:])]
    projs = [Projection("input" if i == 0 else i - 1, i, w) for i, w in enumerate(mats)]
    return Network(int(sizes[0]), pops, projs, output=len(pops) - 1)


def random_sparse(
    n_inputs: int,
    sizes: Sequence[int],
    synapses_per_neuron: int,
    *,
    seed: int = 0,
    theta: float = 1.0,
    beta: float = 0.9,
    reset: str = "subtract",
    refractory: bool = False,
) -> Network:
    """A layered network with sparse random connectivity (``synapses_per_neuron`` inputs each)."""
    rng = np.random.default_rng(seed)
    pops, projs = [], []
    prev = n_inputs
    for i, size in enumerate(sizes):
        k = min(synapses_per_neuron, prev)
        rows = np.repeat(np.arange(size), k)
        cols = np.concatenate([rng.choice(prev, size=k, replace=False) for _ in range(size)])
        vals = rng.normal(1.5 / np.sqrt(k), 1.0 / np.sqrt(k), size=rows.size).astype(np.float32)
        pops.append(Population(size, theta, beta, reset, refractory, name=f"layer{i}"))
        projs.append(Projection("input" if i == 0 else i - 1, i, rows=rows, cols=cols, values=vals,
                                shape=(size, prev)))
        prev = size
    return Network(n_inputs, pops, projs, output=len(sizes) - 1)


def poisson_frames(batch: int, frames: int, channels: int, rate: float, *, seed: int = 0) -> np.ndarray:
    """Event counts ``(batch, frames, channels)``: each channel fires with probability ``rate``
    per frame (N-MNIST at 1 ms frames is about 0.5 to 2 percent of 2312 pixels)."""
    rng = np.random.default_rng(seed)
    return (rng.random((batch, frames, channels)) < rate).astype(np.uint32)
