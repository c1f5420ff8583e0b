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


def raster_points(trace: np.ndarray, sample: int, *, tick_ns: Optional[float] = None,
                  output: Optional[tuple[int, int]] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(time, neuron, is_output)`` of one sample's spikes from a ``[sample, frame, step, time,
    neuron]`` trace: the time is the global step, or with ``tick_ns`` (an ``events`` trace)
    microseconds of chip time; ``output`` is the output population's neuron range."""
    rows = np.asarray(trace, np.int64).reshape(-1, 5)
    rows = rows[rows[:, 0] == sample]
    time = rows[:, 3].astype(np.float64)
    if tick_ns is not None:
        time = time * tick_ns / 1000.0
    neuron = rows[:, 4]
    is_out = np.zeros(len(rows), bool) if output is None else (neuron >= output[0]) & (neuron < output[1])
    return time, neuron, is_out


def spike_raster(trace: np.ndarray, sample: int, path: str | Path, *, boundaries: Optional[Sequence[int]] = None,
                 title: str = "", output: Optional[tuple[int, int]] = None, n_neurons: Optional[int] = None,
                 tick_ns: Optional[float] = None) -> Path:
    """Raster of one sample from a ``[sample, frame, step, time, neuron]`` trace: every neuron on
    the y axis (``n_neurons``), population ``boundaries`` drawn, the ``output`` population's band
    shaded and its spikes in red (visible even when sparse), time in global steps, or in
    microseconds of chip time for an ``events`` trace (``tick_ns``)."""
    plt = _plt()
    time, neuron, is_out = raster_points(trace, sample, tick_ns=tick_ns, output=output)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(time[~is_out], neuron[~is_out], s=4, marker="|", color="k")
    if output is not None:
        ax.axhspan(output[0] - 0.5, output[1] - 0.5, color="tab:red", alpha=0.08, lw=0)
        ax.scatter(time[is_out], neuron[is_out], s=30, marker="|", color="tab:red", label="output neurons")
        ax.legend(loc="upper right", fontsize=7)
    for b in boundaries or []:
        ax.axhline(b - 0.5, color="tab:blue", lw=0.5, alpha=0.5)
    if n_neurons:
        ax.set_ylim(-0.5, n_neurons - 0.5)
    ax.set_xlabel("time on chip (us)" if tick_ns is not None else "forward step (global)")
    ax.set_ylabel("neuron")
    ax.set_title(title or f"spike raster, sample {sample}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def used_box(used: np.ndarray, mesh_width: int, mesh_height: int) -> tuple[slice, slice]:
    """``(rows, cols)`` of the smallest rectangle of the mesh that holds every used core (core
    ``y * width + x``); the whole mesh when none is used."""
    grid = np.asarray(used, bool).reshape(mesh_height, mesh_width)
    ys, xs = np.nonzero(grid)
    if len(ys) == 0:
        return slice(0, mesh_height), slice(0, mesh_width)
    return slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1)


def core_heatmap(values: np.ndarray, mesh_width: int, mesh_height: int, path: str | Path, *,
                 title: str = "spikes per core", label: str = "spikes", used: Optional[np.ndarray] = None) -> Path:
    """Per-core values drawn on the mesh (core ``y * width + x``). With ``used`` (a flag per
    core: the cores that hold neurons) only the rectangle of the mesh that holds them is drawn,
    and unused cores inside it are grey."""
    plt = _plt()
    grid = np.asarray(values, dtype=float).reshape(mesh_height, mesh_width)
    rows, cols = slice(0, mesh_height), slice(0, mesh_width)
    if used is not None:
        rows, cols = used_box(used, mesh_width, mesh_height)
        grid = np.where(np.asarray(used, bool).reshape(mesh_height, mesh_width), grid, np.nan)
    grid = grid[rows, cols]
    h, w = grid.shape
    fig, ax = plt.subplots(figsize=(max(5, w * 0.6 + 2), max(3.5, h * 0.6 + 1.2)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, origin="lower",
                   extent=(cols.start - 0.5, cols.stop - 0.5, rows.start - 0.5, rows.stop - 0.5))
    fig.colorbar(im, ax=ax, label=label)
    if grid.size <= 64:  # small meshes: the value in each core
        hi = float(np.nanmax(grid)) if np.isfinite(grid).any() else 0.0
        for (yy, xx), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(cols.start + xx, rows.start + yy, f"{v:.3g}", ha="center", va="center", fontsize=7,
                        color="black" if hi > 0 and v > 0.6 * hi else "white")
    ax.set_xticks(range(cols.start, cols.stop))
    ax.set_yticks(range(rows.start, rows.stop))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if (h, w) != (mesh_height, mesh_width):
        title = f"{title}\n(the {w} x {h} cores of the {mesh_width} x {mesh_height} mesh that hold the network)"
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
