"""The metric vocabulary: what a run reports, under one set of names, on the chip and in PyTorch.

Every run (the emulator's :class:`~asyncsnn.RunResult`, the PyTorch simulator's
:class:`~asyncsnn.sim.SimResult`, the layered baseline, a deployed SPSN network) reports its
per-sample metrics as a dict of ``float64`` arrays named as in :data:`METRICS`; what never
happened (no output spike, no time in ``steps`` mode) is NaN, the one convention. Names follow
NeuroBench where it has one (``synaptic_operations``, ``activation_sparsity``,
``membrane_updates``). :func:`predictions` is the one rule that turns outputs into classes, and
:func:`summarize` the one way per-sample metrics become a run's figures.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import numpy as np

LATENCY_FIELDS: dict[str, str] = {
    "step": "global forward step (steps over all frames before it; events mode: release ticks)",
    "frame": "frame",
    "step_in_frame": "forward step in its frame (events mode: tick offset from the frame start)",
    "tick": "absolute tick (events mode; the global step in steps mode)",
    "ns": "time in nanoseconds (events mode)",
    "spikes_before": "spikes emitted in steps strictly before it",
}

METRICS: dict[str, str] = {
    "correct": "1 if the prediction (see predictions) is the label, else 0; its mean is `accuracy`",
    "answered": "1 if any output spiked (a potential readout always answers)",
    "spikes": "spikes emitted by all neurons",
    "synaptic_operations": "effective synaptic operations: released (source, target) pairs with a non-zero weight",
    "activation_sparsity": "share of (neuron, frame) pairs without a spike (NeuroBench, frames as time steps)",
    "membrane_updates": "neuron-state updates: one per neuron per frame (leak) plus integrations (chip)",
    "steps": "forward steps over all frames (events mode: ticks with a release)",
    "unreleased": "pending count left after the last frame (step cap, stop rule)",
    "packets": "packets created, one per spike and destination core (chip)",
    "packets_delivered": "packets processed by their destination core (chip)",
    "hops": "link traversals (chip)",
    "stall_ticks": "ticks packets waited for a link (events mode)",
    "stalled_packets": "packets that waited for a link (events mode)",
    "dropped_link": "packets dropped at a full link buffer (events mode)",
    "dropped_buffer": "packets dropped at a full core input buffer (events mode)",
    "ticks": "duration in ticks (events mode; 0 in steps mode)",
    "time_ns": "duration in nanoseconds (events mode)",
    **{f"energy_{part}_pj": f"{part} energy in picojoules (chip)"
       for part in ("synaptic", "neuron", "routing", "static", "total")},
    **{f"first_out_{k}": f"first output spike: {v}" for k, v in LATENCY_FIELDS.items()},
    **{f"first_correct_{k}": f"first spike of the labelled output neuron: {v}" for k, v in LATENCY_FIELDS.items()},
}
"""Per-sample metrics (name -> meaning); each engine reports those it has."""

RENAMED: dict[str, str] = {
    "synops": "synaptic_operations",
    "neuron_updates": "membrane_updates",
    "first_out_global_step": "first_out_step",
    "first_correct_global_step": "first_correct_step",
}
"""Names of earlier versions and what they are called now. The chip's ``first_out_step`` was
the step inside the frame: that is ``first_out_step_in_frame`` now, and ``first_out_step`` is
the global step on both sides."""


class Metrics(dict):
    """A dict of metrics whose missing keys say where an old name went."""

    def __missing__(self, key):
        if key in RENAMED:
            raise KeyError(f"{key!r} is called {RENAMED[key]!r} now (see asyncsnn.metrics.RENAMED)")
        raise KeyError(key)


SUMMARY: dict[str, str] = {
    "accuracy": "mean of `correct`",
    "spike_density": "spikes per neuron and frame",
    "samples": "samples summarised",
}
"""What :func:`summarize` adds to the means of :data:`METRICS`."""


def predictions(outputs, readout: str = "counts") -> np.ndarray:
    """The class of each sample (numpy arrays or tensors):

    * ``counts``: ``outputs`` are output spike counts ``(batch, frames, outputs)``; the output
      neuron with the most spikes wins (ties: the lowest index; -1 where no output spiked);
    * ``potential``: ``outputs`` are the potentials of a non-firing integrator output
      ``(batch, frames, outputs)``; the highest mean over frames wins (-1 without frames);
    * ``scores``: ``outputs`` are class scores ``(batch, classes)`` (a trained readout's
      logits); the highest wins."""
    a = to_numpy(outputs)
    if readout == "counts":
        totals = a.sum(axis=1)
        pred = totals.argmax(axis=1).astype(np.int64)
        pred[totals.max(axis=1, initial=0) <= 0] = -1
        return pred
    if readout == "potential":
        if a.shape[1] == 0:
            return np.full(a.shape[0], -1, np.int64)
        return a.mean(axis=1).argmax(axis=1).astype(np.int64)
    if readout == "scores":
        return a.argmax(axis=1).astype(np.int64)
    raise ValueError(f"readout: {readout!r}; allowed: counts, potential, scores")


def outcome(pred: np.ndarray, labels: Optional[np.ndarray]) -> dict[str, np.ndarray]:
    """``correct`` and ``answered`` per sample (``correct`` only with labels)."""
    out = Metrics(answered=(pred >= 0).astype(np.float64))
    if labels is not None:
        out["correct"] = (pred == np.asarray(labels)).astype(np.float64)
    return out


def summarize(batches: Iterable[Mapping[str, np.ndarray]], n_neurons: int, n_frames: int) -> dict[str, float]:
    """A run's figures from per-sample metrics (one dict per batch): the mean of each metric
    over the samples that have it (a latency over the samples with an output spike; NaN where
    none has one), ``accuracy`` (the mean of ``correct``), ``spike_density`` and ``samples``."""
    cat: dict[str, list] = {}
    for b in batches:
        for k, v in b.items():
            cat.setdefault(k, []).append(np.asarray(v, np.float64).reshape(-1))
    out: dict[str, float] = Metrics()
    for k, parts in cat.items():
        v = np.concatenate(parts)
        valid = v[np.isfinite(v)]
        out[k] = float(valid.mean()) if valid.size else float("nan")
    if "correct" in out:
        out["accuracy"] = out.pop("correct")
    if "spikes" in out:
        out["spike_density"] = out["spikes"] / max(n_neurons, 1) / max(n_frames, 1)
    out["samples"] = float(max((sum(len(p) for p in parts) for parts in cat.values()), default=0))
    return out


def to_numpy(x) -> np.ndarray:
    """A numpy array of ``x`` (a tensor, on any device, or anything numpy takes)."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


__all__ = ["LATENCY_FIELDS", "METRICS", "Metrics", "RENAMED", "SUMMARY", "outcome", "predictions", "summarize",
           "to_numpy"]
