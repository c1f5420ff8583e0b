"""Plots a person would rather look at than read: spike rasters and per-core activity."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _plt():
    from .extras import require

    matplotlib = require("matplotlib", "plots", "plotting (or pass --no-plots)")

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def spike_raster(trace: np.ndarray, sample: int, path: str | Path, *, boundaries: Optional[Sequence[int]] = None,
                 title: str = "", time_column: int = 3, time_label: str = "global step") -> Path:
    """Raster of one sample from a ``[sample, frame, step, time, neuron]`` trace."""
    plt = _plt()
    rows = trace[trace[:, 0] == sample]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(rows[:, time_column], rows[:, 4], s=4, marker="|", color="k")
    for b in boundaries or []:
        ax.axhline(b - 0.5, color="tab:blue", lw=0.5, alpha=0.5)
    ax.set_xlabel(time_label)
    ax.set_ylabel("neuron")
    ax.set_title(title or f"spike raster, sample {sample}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def core_heatmap(values: np.ndarray, mesh_width: int, mesh_height: int, path: str | Path, *,
                 title: str = "spikes per core", label: str = "spikes") -> Path:
    """Per-core values drawn on the mesh (core ``y * width + x``)."""
    plt = _plt()
    grid = np.asarray(values, dtype=float).reshape(mesh_height, mesh_width)
    fig, ax = plt.subplots(figsize=(max(5, mesh_width * 0.6 + 2), max(3.5, mesh_height * 0.6 + 1.2)))
    im = ax.imshow(grid, cmap="viridis", origin="lower")
    fig.colorbar(im, ax=ax, label=label)
    if grid.size <= 64:  # small meshes: the value in each core
        hi = float(np.nanmax(grid)) if grid.size else 0.0
        for (yy, xx), v in np.ndenumerate(grid):
            ax.text(xx, yy, f"{v:.3g}", ha="center", va="center", fontsize=7,
                    color="black" if hi > 0 and v > 0.6 * hi else "white")
    ax.set_xticks(range(mesh_width))
    ax.set_yticks(range(mesh_height))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title, fontsize=9, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def event_raster(events: np.ndarray, path: str | Path, *, title: str = "") -> Path:
    """Raster of an event stream (fields ``t`` in microseconds and ``c``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(events["t"] / 1000.0, events["c"], s=2, marker="|", color="k")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("channel")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def event_image(events: np.ndarray, sensor_size, path: str | Path, *, title: str = "") -> Path:
    """Event counts per pixel of a 2-D sensor ``(W, H, P)``, one panel per polarity
    (channel ``(p * H + y) * W + x``)."""
    plt = _plt()
    w, h = int(sensor_size[0]), int(sensor_size[1])
    p = int(sensor_size[2]) if len(sensor_size) > 2 else 1
    counts = np.bincount(events["c"], minlength=w * h * p).reshape(p, h, w)
    fig, axes = plt.subplots(1, p, figsize=(3.2 * p + 1, 3.4), squeeze=False)
    for k in range(p):
        ax = axes[0, k]
        im = ax.imshow(counts[k], cmap="magma")
        fig.colorbar(im, ax=ax, label="events")
        ax.set_title(("OFF", "ON")[k] if p == 2 else f"polarity {k}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
