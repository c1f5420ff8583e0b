"""The ``native`` engine: a run and its backward in the Rust core (``emulator::train``).

The same model as :func:`asyncsnn.sim.functional.step` and :func:`~asyncsnn.sim.functional.step_backward`
(the ``manual`` engine), computed one sample at a time: a sample runs only its own steps, a step
touches only the neurons it delivers to, fires or gates, and the tape keeps only those (the
released sources, the neurons that fired, the overshoot where the surrogate flows, the input
events). The input current is summed from each frame's events, not a dense product, and the
weight gradients are computed on the projections' entries only.

Float arithmetic agrees with the ``manual`` engine operation for operation except for the order
in which a step's deliveries (and a frame's input events) are summed: on the exact weight grid
the runs are the same bit for bit, in float64 the gradients agree to rounding. Samples run in
parallel on ``torch.get_num_threads()`` threads; any count gives the same bits.

What it does not run (``scheduled`` input, fixed point, traces, a custom surrogate, a device
other than the CPU, ``compile``/``cuda_graphs``) :func:`unsupported` names; ``engine="auto"``
then takes the ``manual`` engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np
import torch

from .. import _native
from . import functional as fn

if TYPE_CHECKING:  # pragma: no cover
    from .simulator import AsyncSimulator, SimResult, _Run


class Support(NamedTuple):
    """The entries of ``W_in`` ``(N, M)`` or ``W_rec`` ``(N, N)`` that some projection sets
    (a dense block's zeros included), ordered by source: ``start[s]:start[s + 1]`` index
    ``target``."""

    start: np.ndarray   # (sources + 1,) int64
    target: np.ndarray  # (nnz,) int64
    source: np.ndarray  # (nnz,) int64

    @classmethod
    def of(cls, pairs: list[tuple[np.ndarray, np.ndarray]], n_targets: int, n_sources: int) -> "Support":
        t = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
        s = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
        key = np.unique(s.astype(np.int64) * max(n_targets, 1) + t.astype(np.int64))
        source, target = key // max(n_targets, 1), key % max(n_targets, 1)
        start = np.searchsorted(source, np.arange(n_sources + 1)).astype(np.int64)
        return cls(start, target.astype(np.int64), source.astype(np.int64))


def supports(sim: "AsyncSimulator") -> tuple[Support, Support]:
    """The input and the neuron-to-neuron :class:`Support` of a simulator's projections (made
    once per simulator)."""
    cached = getattr(sim, "_native_supports", None)
    if cached is not None:
        return cached
    pairs: dict[bool, list] = {True: [], False: []}
    for j, (kind, is_input, t0, s0, shape) in enumerate(sim._layout):
        if kind == "dense":
            r, c = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
            pairs[is_input].append((t0 + r.ravel(), s0 + c.ravel()))
        else:
            idx = getattr(sim, f"_idx{j}").cpu().numpy()
            pairs[is_input].append((idx[0], idx[1]))
    n, m = sim.n_neurons, sim.n_inputs
    out = (Support.of(pairs[True], n, m), Support.of(pairs[False], n, n))
    sim._native_supports = out
    return out


def unsupported(frames: torch.Tensor, surrogate, *, fx, scheduled: bool, trace: bool, compile: bool,
                cuda_graphs: bool) -> Optional[str]:
    """Why the native engine cannot run this call (``None``: it can)."""
    if fx is not None:
        return "runs float arithmetic (use 'auto' for fixed point)"
    if frames.device.type != "cpu":
        return f"runs on the CPU (the run is on {frames.device})"
    if frames.dtype not in (torch.float32, torch.float64):
        return f"runs float32 or float64 (the run is {frames.dtype})"
    if scheduled:
        return "runs all_at_once input (use 'auto' for scheduled input)"
    if trace:
        return "keeps no trace (use 'auto' with trace=True)"
    if not isinstance(surrogate, fn.Surrogate):
        return "runs the named surrogates (a custom one needs 'auto')"
    if compile or cuda_graphs:
        return "is not compiled or graphed (compile and cuda_graphs are for the PyTorch engines)"
    return None


def _np(x: torch.Tensor, dtype=None) -> np.ndarray:
    a = x.detach().cpu().numpy()
    return np.ascontiguousarray(a if dtype is None else a.astype(dtype, copy=False))


class _NativeRun(torch.autograd.Function):
    """The whole run as one autograd node over the dense ``W_in`` and ``W_rec`` (whose
    gradients reach the projection parameters through :meth:`AsyncSimulator.weight_matrices`).
    Differentiable outputs: ``out_counts``, ``spike_counts``, ``v_final``, ``first_time``."""

    @staticmethod
    def forward(ctx, w_in, w_rec, sim, run, box, gradient, tape):  # type: ignore[override]
        spec, opts = run.spec, run.options
        params = spec.params
        sup_in, sup = supports(sim)
        dtype = np.float64 if run.frames.dtype == torch.float64 else np.float32
        w_in_d, w_rec_d = w_in.detach(), w_rec.detach()
        step_limit, is_error = opts.step_limit
        out, tape = _native.train_forward(
            _np(params.theta, dtype), _np(params.beta, dtype), _np(params.subtract, bool),
            _np(params.refractory, bool), _np(params.has_out, bool), _np(params.layer, np.int64),
            _np(params.slot_neuron, np.int64), int(params.n_inputs), tuple(spec.out),
            sup.start, sup.target, _np(w_rec_d[sup.target, sup.source], dtype), _np(spec.fanout_rec, dtype),
            sup_in.start, sup_in.target, _np(w_in_d[sup_in.target, sup_in.source], dtype), _np(run.fanout_in, dtype),
            _np(run.frames, dtype), opts.scheduler, spec.limit, int(opts.seed), int(opts.sample_offset),
            int(step_limit), bool(is_error), None if spec.stop_after_output is None else int(spec.stop_after_output),
            torch.get_num_threads(), tape)
        t = {k: torch.from_numpy(v) for k, v in out.items()}
        ctx.tape, ctx.sim, ctx.spec = tape, sim, spec
        ctx.gradient = gradient
        ctx.shapes = (w_in.shape, w_rec.shape, w_in.dtype)
        t["tape_bytes"] = int(tape.nbytes)
        box.append(t)
        t_first = t["first_time"] if spec.first_time else t["out_counts"].new_zeros(0)
        return t["out_counts"], t["spike_counts"], t["v_final"], t_first

    @staticmethod
    def backward(ctx, g_out, g_counts, g_v, g_first):  # type: ignore[override]
        sup_in, sup = supports(ctx.sim)
        spec = ctx.spec
        dtype = np.float64 if g_v.dtype == torch.float64 else np.float32
        sg = spec.surrogate
        g_wi, g_wr = ctx.tape.backward(
            _np(g_out, dtype), _np(g_counts, dtype), _np(g_v, dtype),
            _np(g_first, dtype) if spec.first_time and g_first is not None and g_first.numel() else None,
            ctx.gradient == "truncated", sg.name, float(sg.slope), torch.get_num_threads())
        (in_shape, rec_shape, wdtype) = ctx.shapes
        gi = torch.zeros(in_shape, dtype=wdtype)
        gi[sup_in.target, sup_in.source] = torch.from_numpy(g_wi).to(wdtype)
        gr = torch.zeros(rec_shape, dtype=wdtype)
        gr[sup.target, sup.source] = torch.from_numpy(g_wr).to(wdtype)
        return gi, gr, None, None, None, None, None


def run(sim: "AsyncSimulator", r: "_Run", w_in: torch.Tensor, w_rec: torch.Tensor, gradient: str) -> "SimResult":
    """The native engine's :meth:`AsyncSimulator.forward` (the caller checked
    :func:`unsupported`)."""
    from .simulator import SimResult

    box: list = []
    # Without a gradient to take (no_grad, or weights that need none) the run keeps no tape.
    tape = torch.is_grad_enabled() and (w_in.requires_grad or w_rec.requires_grad)
    out_counts, spike_counts, v_final, t_first = _NativeRun.apply(w_in, w_rec, sim, r, box, gradient, tape)
    t = box[0]
    dt = r.frames.dtype
    return SimResult(
        out_counts=out_counts, spike_counts=spike_counts, v_final=v_final,
        synaptic_operations=t["synaptic_operations"].to(dt), steps=t["steps"], unreleased=t["unreleased"].to(dt),
        first_out=t["first_out"], first_spike=t["first_spike"], spikes_before=t["spikes_before"].to(dt),
        active_neuron_frames=t["active_neuron_frames"],
        first_time=t_first if r.spec.first_time else None, tape_bytes=t["tape_bytes"])
