"""Export a trained model to the chip, and evaluate it in PyTorch and on the emulator side by side.

``export_network`` writes the network with its neuron-to-core mapping to a ``.npz`` file that
``asyncsnn emulate --network`` and ``Chip.place`` load; with ``quantize`` the weights and
thresholds are rounded to the chip's fixed-point grid first (``round(w 2^frac_bits)``, clipped
to ``weight_bits`` signed bits), so the float simulator, the f32 emulator and the fixed-point
emulator see the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..chip import Chip, RunResult, predictions
from ..errors import ConfigError
from ..network import Network
from ..sim import AsyncSimulator
from ..sim.fixed import FixedPoint, format_of, quantize_array, threshold_grid
from . import metrics

# emulator metric name -> the training layer's name
_EMU_NAMES = {
    "spikes": "spikes", "synops": "synops", "steps": "steps", "unreleased": "unreleased",
    "first_out_global_step": "first_out_step", "first_out_spikes_before": "first_out_spikes_before",
    "first_correct_global_step": "first_correct_step", "first_correct_spikes_before": "first_correct_spikes_before",
    "first_out_ns": "first_out_ns", "first_correct_ns": "first_correct_ns", "energy_total_pj": "energy_total_pj",
    "time_ns": "time_ns", "dropped_link": "dropped_link", "dropped_buffer": "dropped_buffer",
    "spike_density": "spike_density",
}


def quantize_network(net: Network, arithmetic: dict) -> Network:
    """Weights and thresholds on the fixed-point grid of ``arithmetic`` (a chip's
    ``config["arithmetic"]`` with ``kind = "fixed"``)."""
    if arithmetic.get("kind") != "fixed":
        raise ConfigError("invalid config: arithmetic.kind: quantising needs a fixed-point chip (kind = \"fixed\")")
    fx = FixedPoint.of(arithmetic)
    q = lambda w: quantize_array(fx, w)  # noqa: E731
    projs = [replace(pr, values=q(pr.values)) if pr.kind == "sparse" else replace(pr, weights=q(pr.weights))
             for pr in net.projections]
    pops = [replace(p, theta=float(threshold_grid(fx, p.theta))) for p in net.populations]
    return Network(net.n_inputs, pops, projs, output=net.output, core_of=net.core_of).validate()


def export_network(model: AsyncSimulator | Network, path: str | Path, *, chip: Optional[Chip] = None,
                   quantize: bool = False) -> Path:
    """Save ``model`` for the chip (quantised to ``chip``'s fixed point with ``quantize``); if a
    chip is given, the placement is checked first (a :class:`MappingError` lists every
    over-full core)."""
    net = model.to_network() if isinstance(model, AsyncSimulator) else model
    if quantize:
        if chip is None:
            raise ConfigError("invalid config: chip: quantize needs the target chip")
        net = quantize_network(net, chip.config["arithmetic"])
    if chip is not None:
        chip.place(net)
    return net.save(path)


@dataclass
class SideBySide:
    """One test set through the PyTorch simulator and the emulator: ``rows`` (one per engine:
    ``pytorch``, ``emulator-steps``, ``emulator-events``), the simulator's per-sample metrics and
    output counts, and the emulator's :class:`~asyncsnn.chip.RunResult` per mode."""

    rows: list[dict]
    sim_samples: dict[str, np.ndarray]
    sim_out_counts: np.ndarray
    runs: dict[str, RunResult]
    sim_out_potential: Optional[np.ndarray] = None

    def steps_agree(self) -> Optional[bool]:
        """Whether the emulator's ``steps`` mode gave exactly the simulator's output counts,
        spikes, synaptic ops and forward steps for every sample (``None`` without a steps run).
        For a stochastic (SPSN) network: output potentials, spikes and synaptic ops."""
        run = self.runs.get("steps")
        if run is None:
            return None
        if not np.array_equal(run.out_counts, self.sim_out_counts):
            return False
        if self.sim_out_potential is not None and not np.array_equal(run.out_potential, self.sim_out_potential):
            return False
        return all(np.array_equal(np.asarray(run.metrics[k], np.float64), self.sim_samples[k])
                   for k in self.sim_samples)


def run_side_by_side(
    net: Network,
    frames: np.ndarray,
    labels: np.ndarray,
    *,
    chip: Chip,
    scheduler: str = "momentum",
    F: Optional[int] = None,
    seed: int = 0,
    input_mode: str = "all_at_once",
    max_steps: Optional[int] = None,
    modes: Sequence[str] = ("steps", "events"),
    batch_size: int = 256,
    device: str = "cpu",
    trace: bool = False,
) -> SideBySide:
    """The same test set through the PyTorch simulator and the emulator (each mode). In
    ``steps`` mode the two must agree exactly (the validation contract, see
    :meth:`SideBySide.steps_agree`); ``events`` mode adds time, energy and drops. With
    ``trace`` the emulator runs keep every spike (for rasters and decide-early curves).

    The simulator computes in the chip's arithmetic: on a fixed-point chip it runs the
    fixed-point path, so ``steps`` mode agrees exactly there too."""
    frames = np.asarray(frames, np.float32)
    labels = np.asarray(labels, np.int64)
    placement = chip.place(net)  # the simulator arbitrates with the chip's own mapping
    if net.is_lif:
        rows, samples, out_counts = _pytorch_lif(net, frames, labels, placement.core_of, chip, scheduler=scheduler,
                                                 F=F, seed=seed, input_mode=input_mode, max_steps=max_steps,
                                                 batch_size=batch_size, device=device)
        potential = None
    else:
        rows, samples, out_counts, potential = _pytorch_stochastic(net, frames, labels, chip, seed=seed,
                                                                   batch_size=batch_size, device=device)
    runs = {}
    for mode in modes:
        res = placement.run(frames, labels=labels, mode=mode, scheduler=scheduler, F=F, seed=seed,
                            input_mode=input_mode, max_steps=max_steps, trace=trace)
        runs[mode] = res
        s = res.summary()
        row = {"engine": f"emulator-{mode}", "accuracy": s["accuracy"], "answered": s["answered"]}
        row.update({ours: s[k] for k, ours in _EMU_NAMES.items() if k in s})
        row["samples"] = float(len(labels))
        rows.append(row)
    return SideBySide(rows, samples, out_counts, runs, potential)


def _pytorch_lif(net: Network, frames: np.ndarray, labels: np.ndarray, core_of, chip: Chip, *, scheduler, F, seed,
                 input_mode, max_steps, batch_size: int, device: str):
    sim = AsyncSimulator(net, core_of=core_of).to(device)
    rows: list[dict] = []
    batches, outs = [], []
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            x = torch.tensor(frames[i:i + batch_size], device=device)
            y = torch.tensor(labels[i:i + batch_size], device=device)
            r = sim(x, scheduler=scheduler, F=F, seed=seed, sample_offset=i, input_mode=input_mode, max_steps=max_steps,
                    arithmetic=chip.config["arithmetic"])
            batches.append(metrics.batch_metrics(r, y))
            outs.append(r.out_counts.cpu().numpy())
    n_frames = frames.shape[1] if frames.ndim == 3 else 0
    rows.append({"engine": "pytorch", **metrics.summarize(batches, net.n_neurons, n_frames)})
    samples = {k: np.concatenate([b[k] for b in batches]) if batches else np.zeros(0)
               for k in ("spikes", "synops", "steps")}
    out_counts = (np.concatenate(outs) if outs else np.zeros((0, n_frames, net.n_outputs))).astype(np.uint32)
    return rows, samples, out_counts


def _pytorch_stochastic(net: Network, frames: np.ndarray, labels: np.ndarray, chip: Chip, *, seed: int,
                        batch_size: int, device: str):
    """A network of stochastic / integrator populations (a deployed SPSN network) through
    :func:`asyncsnn.spsn.deploy.simulate` in the chip's arithmetic."""
    from ..reference import dense_weights
    from ..spsn import deploy

    counts = np.rint(frames).astype(np.int64)
    w = dense_weights(net)
    fx = format_of(chip.config["arithmetic"])
    if fx is not None:  # weights that round to zero are not stored on the chip
        w = quantize_array(fx, w)
    fanout = (w != 0).sum(axis=0).astype(np.float64)  # per source: inputs, then neurons
    m, n_frames = net.n_inputs, counts.shape[1] if counts.ndim == 3 else 0
    o0 = net.population_starts[net.output_index]
    pots, outs, spikes, synops = [], [], [], []
    for i in range(0, len(counts), batch_size):
        x = counts[i:i + batch_size]
        r = deploy.simulate(net, x, seed=seed, sample_offset=i, arithmetic=chip.config["arithmetic"], device=device)
        s = torch.cat(r["spikes"], 2).cpu().numpy()  # (B, T, neurons)
        pots.append(r["out_potential"].cpu().numpy())
        outs.append(s[:, :, o0:o0 + net.n_outputs].astype(np.uint32))
        spikes.append(s.sum(axis=(1, 2)).astype(np.float64))
        synops.append((x > 0).sum(axis=1) @ fanout[:m] + s.sum(axis=1) @ fanout[m:])
    empty = np.zeros(0)
    potential = np.concatenate(pots) if pots else np.zeros((0, n_frames, net.n_outputs))
    out_counts = np.concatenate(outs) if outs else np.zeros((0, n_frames, net.n_outputs), np.uint32)
    samples = {"spikes": np.concatenate(spikes) if spikes else empty,
               "synops": np.concatenate(synops) if synops else empty}
    integrator = net.populations[net.output_index].kind == "integrator"
    pred = predictions(out_counts, potential, "potential" if integrator else "counts")
    n = max(len(labels), 1)
    row = {"engine": "pytorch", "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
           "answered": float((pred >= 0).mean()) if len(labels) else float("nan"),
           "spikes": float(samples["spikes"].sum() / n), "synops": float(samples["synops"].sum() / n),
           "spike_density": float(samples["spikes"].sum() / n / max(net.n_neurons, 1) / max(n_frames, 1)),
           "samples": float(len(labels))}
    return [row], samples, out_counts, potential


def evaluate_side_by_side(net: Network, frames: np.ndarray, labels: np.ndarray, *, chip: Chip,
                          **kwargs) -> list[dict]:
    """One row of metrics per engine (see :func:`run_side_by_side` for the arguments)."""
    return run_side_by_side(net, frames, labels, chip=chip, **kwargs).rows
