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

from .. import metrics
from ..chip import Chip, RunResult
from ..errors import ConfigError
from ..network import Network
from ..options import RunOptions
from ..sim import AsyncSimulator
from ..sim.fixed import FixedPoint, format_of, quantize_array, threshold_grid


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
    return replace(net, populations=pops, projections=projs).validate()


def export_network(model: AsyncSimulator | Network, path: str | Path, *, chip: Optional[Chip] = None,
                   quantize: bool = False) -> Path:
    """Save ``model`` for the chip (quantised to ``chip``'s fixed point with ``quantize``). Given
    a chip, the network is placed first (a :class:`MappingError` lists every over-full core) and
    the file records that placement, so the chip runs it on the same cores."""
    net = model.to_network() if isinstance(model, AsyncSimulator) else model
    if quantize:
        if chip is None:
            raise ConfigError("invalid config: chip: quantize needs the target chip")
        net = quantize_network(net, chip.config["arithmetic"])
    if chip is not None:
        net = replace(net, core_of=chip.place(net).core_of.astype(np.int64))
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
    options: Optional[RunOptions] = None,
    *,
    chip: Chip,
    modes: Sequence[str] = ("steps", "events"),
    batch_size: int = 256,
    device: str = "cpu",
    **run_options,
) -> SideBySide:
    """The same test set through the PyTorch simulator and the emulator (each of ``modes``),
    with ``options`` (or the defaults changed by ``run_options`` keywords; its ``mode`` is
    replaced by each of ``modes``, and the PyTorch simulator runs ``steps``). In ``steps``
    mode the two must agree exactly (the validation contract, see
    :meth:`SideBySide.steps_agree`); ``events`` mode adds time, energy and drops. With
    ``trace`` the emulator runs keep every spike (for rasters and decide-early curves).

    The simulator computes in the chip's arithmetic: on a fixed-point chip it runs the
    fixed-point path, so ``steps`` mode agrees exactly there too."""
    opts = RunOptions.of(options, **run_options)
    frames = np.asarray(frames, np.float32)
    labels = np.asarray(labels, np.int64)
    placement = chip.place(net)  # the simulator arbitrates with the chip's own mapping
    if net.is_lif:
        rows, samples, out_counts = _pytorch_lif(net, frames, labels, placement.core_of, chip,
                                                 opts.replace(mode="steps", trace=False), batch_size=batch_size,
                                                 device=device)
        potential = None
    else:
        rows, samples, out_counts, potential = _pytorch_stochastic(net, frames, labels, chip, seed=opts.seed,
                                                                   batch_size=batch_size, device=device)
    runs = {}
    n_frames = frames.shape[1] if frames.ndim == 3 else 0
    for mode in modes:
        res = placement.run(frames, opts.replace(mode=mode), labels=labels)
        runs[mode] = res
        rows.append({"engine": f"emulator-{mode}",
                     **metrics.summarize([res.sample_metrics()], net.n_neurons, n_frames)})
    return SideBySide(rows, samples, out_counts, runs, potential)


def _pytorch_lif(net: Network, frames: np.ndarray, labels: np.ndarray, core_of, chip: Chip, opts: RunOptions, *,
                 batch_size: int, device: str):
    sim = AsyncSimulator(net, core_of=core_of).to(device)
    rows: list[dict] = []
    batches, outs = [], []
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            x = torch.tensor(frames[i:i + batch_size], device=device)
            r = sim(x, opts.replace(sample_offset=opts.sample_offset + i), arithmetic=chip.config["arithmetic"])
            batches.append(r.sample_metrics(labels[i:i + batch_size]))
            outs.append(r.out_counts.cpu().numpy())
    n_frames = frames.shape[1] if frames.ndim == 3 else 0
    rows.append({"engine": "pytorch", **metrics.summarize(batches, net.n_neurons, n_frames)})
    samples = {k: np.concatenate([b[k] for b in batches]) if batches else np.zeros(0)
               for k in ("spikes", "synaptic_operations", "steps")}
    out_counts = (np.concatenate(outs) if outs else np.zeros((0, n_frames, net.n_outputs))).astype(np.uint32)
    return rows, samples, out_counts


def _pytorch_stochastic(net: Network, frames: np.ndarray, labels: np.ndarray, chip: Chip, *, seed: int,
                        batch_size: int, device: str):
    """A network of stochastic / integrator populations (a deployed SPSN network) through
    :func:`asyncsnn.spsn.deploy.simulate` in the chip's arithmetic."""
    from ..spsn import deploy

    counts = np.rint(frames).astype(np.int64)
    w = net.dense_weights()
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
    n_spikes = np.concatenate(spikes) if spikes else empty
    samples = {"spikes": n_spikes, "synaptic_operations": np.concatenate(synops) if synops else empty}
    per_sample = {**metrics.outcome(metrics.predictions(potential if net.readout == "potential" else out_counts,
                                                        net.readout), labels), **samples}
    if n_frames and net.n_neurons:  # stochastic neurons fire at most once per frame
        per_sample["activation_sparsity"] = 1.0 - n_spikes / (net.n_neurons * n_frames)
    rows = [{"engine": "pytorch", **metrics.summarize([per_sample], net.n_neurons, n_frames)}]
    return rows, samples, out_counts, potential


def evaluate_side_by_side(net: Network, frames: np.ndarray, labels: np.ndarray, options: Optional[RunOptions] = None,
                          *, chip: Chip, **kwargs) -> list[dict]:
    """One row of metrics per engine (see :func:`run_side_by_side` for the arguments)."""
    return run_side_by_side(net, frames, labels, options, chip=chip, **kwargs).rows
