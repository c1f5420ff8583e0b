"""Metrics of a batch run (names follow NeuroBench where one exists), from a SimResult.

Per sample: prediction (most output spikes, ties to the lowest index, -1 if silent), spikes,
effective synaptic operations, forward steps, and the latency of the first output spike and of
the first spike of the correct output neuron, in forward steps (global step index) and in
spikes emitted before it. :func:`summarize` averages a list of batches into run metrics.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from ..sim.functional import first_output


def predictions(out_counts: torch.Tensor) -> torch.Tensor:
    totals = out_counts.detach().sum(1)
    pred = totals.argmax(1)
    return torch.where(totals.amax(1) > 0, pred, torch.full_like(pred, -1))


def batch_metrics(result, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample metric arrays (numpy, length B) of one batch run."""
    labels = labels.to(result.out_counts.device)
    pred = predictions(result.out_counts)
    fs = result.first_spike
    g0, arg, has = first_output(fs)
    sb0 = result.spikes_before.gather(1, arg[:, None])[:, 0]
    fc = fs.gather(1, labels[:, None])[:, 0]
    sbc = result.spikes_before.gather(1, labels[:, None])[:, 0]
    nan = float("nan")

    def arr(t):
        return t.detach().double().cpu().numpy()

    return {
        "correct": arr((pred == labels).double()),
        "answered": arr((pred >= 0).double()),
        "spikes": arr(result.spike_counts.detach().sum(1)),
        "synops": arr(result.synops),
        "steps": arr(result.steps),
        "unreleased": arr(result.unreleased),
        "first_out_step": np.where(arr(has) > 0, arr(g0), nan),
        "first_out_spikes_before": np.where(arr(has) > 0, arr(sb0), nan),
        "first_correct_step": np.where(arr(fc) >= 0, arr(fc), nan),
        "first_correct_spikes_before": np.where(arr(fc) >= 0, arr(sbc), nan),
    }


def summarize(batches: Iterable[dict[str, np.ndarray]], n_neurons: int, n_frames: int) -> dict[str, float]:
    """Run metrics: means over samples (latencies over the samples that have one)."""
    cat: dict[str, list] = {}
    for b in batches:
        for k, v in b.items():
            cat.setdefault(k, []).append(np.asarray(v, np.float64))
    out: dict[str, float] = {}
    for k, parts in cat.items():
        v = np.concatenate(parts) if parts else np.zeros(0)
        valid = v[np.isfinite(v)]
        out[k] = float(valid.mean()) if valid.size else float("nan")
    if "correct" in out:
        out["accuracy"] = out.pop("correct")
    if "spikes" in out:
        out["spike_density"] = out["spikes"] / max(n_neurons, 1) / max(n_frames, 1)
    out["samples"] = float(sum(len(p) for p in cat.get("spikes", [])))
    return out
