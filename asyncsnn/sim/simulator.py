"""The asynchronous simulator: a batched, differentiable run of the execution model.

:class:`AsyncSimulator` is a thin module over :mod:`asyncsnn.sim.functional`. It holds one
parameter per projection of a :class:`~asyncsnn.network.Network` (a dense matrix, the values of
a sparse one, or a convolution kernel) and runs frames of input through forward steps with the
per-core release limit ``F`` and a scheduler, exactly as the emulator's ``steps`` mode does.

Speed without losing exactness:

* with ``all_at_once`` input delivery (the default) the input current of every frame is one
  batched product before the step loop; only neuron-to-neuron weights act inside it;
* each core's neurons sit in a padded ``(cores, slots)`` layout, so selection is one stable
  sort of short rows per step (the scheduler's 32-bit key packed above the 32-bit hash, see
  :func:`functional.rank_release`), and none at all when ``F`` is at least the core size; a
  chunk of steps hashes all its steps' keys at once;
* the loop never waits for the device at each step: it runs chunks of steps in which finished
  samples are masked (exact no-ops) and asks the device whether anything is still pending once
  per chunk. The chunk length follows the steps the last two frames needed;
* the ``manual`` engine (the default when a gradient is wanted) runs the steps without
  recording an autograd graph, keeps a small tape per step and backpropagates with the
  hand-written :func:`functional.step_backward`: the whole run is one autograd node;
* with ``cuda_graphs`` a chunk of steps (and its backward) is one CUDA graph replay
  (:mod:`asyncsnn.sim.graphs`) instead of some sixty kernel launches per step;
* with ``compile`` each single step, forward and backward, goes through ``torch.compile``: a
  few fused kernels around the sort and the matrix products (which, with ``cuda_graphs``,
  are what each replay runs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch

from .. import hashing, metrics
from ..errors import RunawayError
from ..network import Network
from ..options import RunOptions
from . import fixed, native
from . import functional as fn
from .graphs import Eager, GraphCache

ENGINES = ("auto", "native", "manual", "autograd")


@dataclass
class SimResult:
    """Outputs of a run; tensors are batch first. ``global step`` counts forward steps over
    all frames (the emulator's ``first_spike`` in ``steps`` mode). :meth:`sample_metrics` names
    them as the emulator does (:mod:`asyncsnn.metrics`)."""

    out_counts: torch.Tensor     # (B, T, O) float, differentiable
    spike_counts: torch.Tensor   # (B, N) float, differentiable
    v_final: torch.Tensor        # (B, N), differentiable
    synaptic_operations: torch.Tensor  # (B,) effective synaptic operations
    steps: torch.Tensor          # (B,) int64 forward steps
    unreleased: torch.Tensor     # (B,) spikes still pending at the end
    first_out: torch.Tensor      # (B, 2) int64 [frame, step] of the first output spike, -1 if none
    first_spike: torch.Tensor    # (B, O) int64 global step of each output neuron's first spike, -1
    spikes_before: torch.Tensor  # (B, O) spikes emitted in steps strictly before that one
    active_neuron_frames: torch.Tensor  # (B,) (neuron, frame) pairs with at least one spike
    first_time: Optional[torch.Tensor] = None  # (B, O) differentiable first-spike step (see forward)
    trace: Optional[list] = None  # per sample: list of (frame, step, neuron)
    tape_bytes: Optional[int] = None  # bytes the native engine keeps for the backward

    @property
    def total_steps(self) -> int:
        return int(self.steps.max()) if self.steps.numel() else 0

    def sample_metrics(self, labels=None) -> dict[str, np.ndarray]:
        """Per-sample metrics (``float64``, NaN: never happened) in the vocabulary of
        :data:`asyncsnn.metrics.METRICS`, with ``correct`` given ``labels``."""
        n = lambda t: t.detach().to(torch.float64).cpu().numpy()  # noqa: E731
        y = None if labels is None else metrics.to_numpy(labels).astype(np.int64)
        out = metrics.outcome(metrics.predictions(self.out_counts, "counts"), y)
        n_neurons, n_frames = self.spike_counts.shape[1], self.out_counts.shape[1]
        pairs = n_neurons * n_frames
        g0, arg, has = fn.first_output(self.first_spike)
        never = lambda ok, v: np.where(n(ok) > 0, n(v), np.nan)  # noqa: E731
        out.update({
            "spikes": n(self.spike_counts.sum(1)),
            "synaptic_operations": n(self.synaptic_operations),
            "activation_sparsity": 1.0 - n(self.active_neuron_frames) / pairs if pairs else
            np.full(len(g0), np.nan),
            "steps": n(self.steps),
            "unreleased": n(self.unreleased),
            "first_out_step": never(has, g0),
            "first_out_frame": never(has, self.first_out[:, 0]),
            "first_out_step_in_frame": never(has, self.first_out[:, 1]),
            "first_out_spikes_before": never(has, self.spikes_before.gather(1, arg[:, None])[:, 0]),
        })
        if y is not None:
            lab = torch.as_tensor(y, device=self.first_spike.device)[:, None]
            fc = self.first_spike.gather(1, lab)[:, 0]
            out["first_correct_step"] = never(fc >= 0, fc)
            out["first_correct_spikes_before"] = never(fc >= 0, self.spikes_before.gather(1, lab)[:, 0])
        return out


# Chunk lengths of the graphed loop: one CUDA graph per length, so a few; every length up to 8
# (a frame's few steps run without masked ones), then steps of about 1/8 up to 64.
GRAPH_LENGTHS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64)


def graph_length(k: int, room: int) -> int:
    """The chunk length the graphed loop runs for a wanted ``k`` steps with ``room`` steps left
    in the frame: the shortest of :data:`GRAPH_LENGTHS` that is at least ``k``, but no longer
    than the longest that fits ``room`` (a masked step costs less than one more round trip)."""
    fits = [g for g in GRAPH_LENGTHS if g <= room] or [1]
    return next((g for g in fits if g >= k), fits[-1])


class AsyncSimulator(torch.nn.Module):
    """A network ready to run in PyTorch (CPU or GPU).

    ``core_of`` maps every neuron to a core (default: the network's ``core_of``, else all on
    core 0); the release limit ``F``
    applies per core per step. ``weights`` lists one parameter per projection, in the network's
    order; :meth:`to_network` writes them back."""

    def __init__(self, network: Network, core_of: Optional[Sequence[int]] = None, *,
                 surrogate: str = "fast_sigmoid", slope: float = 10.0) -> None:
        super().__init__()
        network.to_native()  # validates the network
        if not network.is_lif:
            kinds = sorted({p.kind for p in network.populations} - {"lif"})
            raise ValueError(f"network: populations of kind {', '.join(kinds)}; the AsyncSimulator runs LIF "
                             "networks (simulate stochastic SPSN deployments with asyncsnn.spsn.deploy.simulate, "
                             "or any mix on the emulator)")
        self.surrogate = fn.Surrogate.of(surrogate, slope)
        self.network = network
        m, n = network.n_inputs, network.n_neurons
        self.weights = torch.nn.ParameterList()
        self._layout: list[tuple] = []
        for j, (pr, e) in enumerate(zip(network.projections, network.endpoints())):
            is_input, t0, s0 = e.source is None, e.target_start, e.source_start
            if pr.kind == "dense":
                w = np.asarray(pr.weights, np.float32)
                self.weights.append(torch.nn.Parameter(torch.tensor(w)))
                self._layout.append(("dense", is_input, t0, s0, w.shape))
            else:
                rows, cols, vals = pr.triples()
                if pr.kind == "conv":
                    k = np.asarray(pr.weights, np.float32)
                    _, _, kidx = pr.conv.connections(k.shape)  # type: ignore[union-attr]
                    self.weights.append(torch.nn.Parameter(torch.tensor(k)))
                else:
                    kidx = np.arange(len(vals))
                    self.weights.append(torch.nn.Parameter(torch.tensor(np.asarray(vals, np.float32))))
                self.register_buffer(f"_idx{j}", torch.tensor(np.stack([t0 + rows, s0 + cols, kidx])))
                self._layout.append((pr.kind, is_input, t0, s0, None))
        if core_of is None:
            core_of = network.core_of
        self.mapping = None if core_of is None else np.asarray(core_of, np.int64)
        if core_of is None:
            core = np.zeros(n, np.int64)
        else:
            core = np.asarray(core_of, np.int64)
            if core.shape != (n,) or (n and core.min() < 0):
                raise ValueError(f"core_of: expected {n} non-negative core indices, got shape {core.shape}")
        self.core_of = core
        arr = network.neuron_arrays()
        for name in ("theta", "beta", "subtract", "refractory", "has_out"):
            self.register_buffer(name, torch.tensor(getattr(arr, name)))
        self.register_buffer("layer", torch.tensor(arr.population + 1))
        used, core_dense = np.unique(core, return_inverse=True)
        n_cores = max(len(used), 1)
        size = max(int(np.bincount(core_dense).max()) if n else 1, 1)
        slot_neuron = np.full((n_cores, size), n, np.int64)
        neuron_slot = np.zeros(n, np.int64)
        fill = np.zeros(n_cores, np.int64)
        for i, c in enumerate(core_dense):  # ascending neuron order inside each core
            slot_neuron[c, fill[c]] = i
            neuron_slot[i] = c * size + fill[c]
            fill[c] += 1
        self.register_buffer("slot_neuron", torch.tensor(slot_neuron))
        self.register_buffer("neuron_slot", torch.tensor(neuron_slot))
        o = network.output_index
        o0 = network.population_starts[o]
        self.out_slice = slice(o0, o0 + network.populations[o].size)
        self.n_inputs, self.n_neurons, self.n_cores = m, n, n_cores
        self.contiguous = bool(np.array_equal(slot_neuron.reshape(-1), np.arange(n)))
        self._graph_cache: Optional[GraphCache] = None

    def __getstate__(self) -> dict:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else dict(self.__dict__)
        state = dict(state)
        state["_graph_cache"] = None  # (CUDA graphs belong to one process; they are captured again)
        return state

    # ----------------------------------------------------------------- weights
    def weight_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_in (N, M), W_rec (N, N))`` assembled from the projection parameters
        (differentiable; projections onto the same pairs add up)."""
        m, n = self.n_inputs, self.n_neurons
        ref = self.weights[0] if len(self.weights) else torch.zeros(0)
        w_in = torch.zeros(n, m, dtype=ref.dtype, device=ref.device)
        w_rec = torch.zeros(n, n, dtype=ref.dtype, device=ref.device)
        for j, (kind, is_input, t0, s0, shape) in enumerate(self._layout):
            w = w_in if is_input else w_rec
            p = self.weights[j]
            if kind == "dense":
                w[t0:t0 + shape[0], s0:s0 + shape[1]] += p
            else:
                idx = getattr(self, f"_idx{j}")
                w.index_put_((idx[0], idx[1]), p.reshape(-1)[idx[2]], accumulate=True)
        return w_in, w_rec

    def to_network(self) -> Network:
        """The network with the current weights (for the emulator and for saving); what it was
        trained for (``run_options``, ``dt``) comes along."""
        projs = []
        for pr, p in zip(self.network.projections, self.weights):
            w = p.detach().cpu().numpy().astype(np.float32)
            projs.append(dataclasses.replace(pr, **{"values" if pr.kind == "sparse" else "weights": w}))
        return dataclasses.replace(self.network, projections=projs, core_of=self.mapping)

    def params(self) -> fn.Params:
        return fn.Params(self.theta, self.beta, self.subtract, self.refractory, self.has_out, self.layer,
                         self.slot_neuron, self.neuron_slot, self.n_inputs, self.contiguous)

    # ----------------------------------------------------------------- run
    def forward(
        self,
        frames: torch.Tensor,
        options: Optional[RunOptions] = None,
        *,
        stop_after_output: Optional[int] = None,
        gradient: str = "full",
        first_time: bool = False,
        arithmetic: Optional[object] = None,
        engine: str = "auto",
        cuda_graphs: bool = False,
        compile: bool = False,
        **run_options,
    ) -> SimResult:
        """Run input frames ``(B, T, n_inputs)`` of event counts with ``options`` (a
        :class:`~asyncsnn.options.RunOptions`: scheduler, ``F``, seed, input mode, step caps,
        trace), or the defaults changed by ``run_options`` keywords (``scheduler="momentum",
        F=8``). This is the emulator's ``steps`` mode; ``threads`` does not apply.

        The other keywords say how PyTorch computes it:

        ``stop_after_output=k`` ends a sample ``k`` steps after its first output spike (its
        later frames are not injected; what is pending is reported as unreleased);
        ``gradient`` is ``"full"`` or ``"truncated"`` (see :func:`functional.step`);
        ``first_time`` adds a differentiable first-spike step per output neuron
        (``sum_k k s_k prod_{j<k}(1 - s_j)``, or the run's last step + 1 if it never fires).

        ``arithmetic`` is ``None`` or ``"f32"`` (float, differentiable) or a fixed-point format
        (a chip's ``config["arithmetic"]`` with ``kind = "fixed"``, or a
        :class:`~asyncsnn.sim.fixed.FixedPoint`): weights, thresholds, leaks and potentials are
        then the chip's saturating integers, bit for bit as the emulator's fixed-point ``steps``
        mode (no gradient; ``v_final`` in network units).

        ``engine`` says how the gradient is made: ``"autograd"`` records every step's operations
        for autograd; ``"manual"`` runs the steps without recording and backpropagates through
        them with the hand-written :func:`functional.step_backward` (same gradients, less
        memory and time; float arithmetic with ``all_at_once`` input); ``"auto"`` takes
        ``"manual"`` wherever it applies and a gradient is wanted.

        ``cuda_graphs=True`` replays the chunks of steps (and, with the manual engine, their
        backward) as CUDA graphs on a CUDA device (see :mod:`asyncsnn.sim.graphs`): the same
        arithmetic, a few launches per chunk instead of some sixty per step. It applies to float
        arithmetic with ``all_at_once`` input when nothing is recorded for autograd (the manual
        engine, or ``torch.no_grad``); elsewhere it changes nothing.

        ``compile=True`` runs each forward step (:func:`_step`) and each backward step of the
        manual engine (:func:`_step_backward`) through ``torch.compile`` (float arithmetic):
        their elementwise work becomes a few fused kernels around the sort and the products.
        The results are the eager ones (the test suite checks it); the first call of each shape
        and option pays the compilation."""
        opts = RunOptions.of(options, **run_options)
        if opts.mode != "steps":
            raise ValueError(f"mode: {opts.mode!r}; the PyTorch simulator runs the steps model (the emulator runs "
                             "events mode)")
        if gradient not in fn.GRADIENTS:
            raise ValueError(f"gradient: {gradient!r}; allowed: {', '.join(fn.GRADIENTS)}")
        if engine not in ENGINES:
            raise ValueError(f"engine: {engine!r}; allowed: {', '.join(ENGINES)}")
        if stop_after_output is not None and int(stop_after_output) < 0:
            raise ValueError(f"stop_after_output: {stop_after_output} is outside 0.. (or None)")
        if not isinstance(frames, torch.Tensor):
            frames = torch.as_tensor(np.asarray(frames))
        if frames.ndim != 3 or frames.shape[2] != self.n_inputs:
            raise ValueError(f"frames: expected (batch, frames, {self.n_inputs}), got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            frames = frames.to(torch.float32)
        if frames.numel():  # one pass and one synchronisation: min and max carry any NaN
            lo, hi = torch.aminmax(frames)
            lo, hi = torch.stack([lo, hi]).tolist()
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError("frames: contains NaN or infinite counts")
            if lo < 0:
                raise ValueError("frames: event counts must be >= 0")
        for j, p in enumerate(self.weights):
            if not bool(torch.isfinite(p).all()):
                raise ValueError(f"weights[{j}]: contains NaN or infinite values")
        fx = fixed.format_of(arithmetic)
        if fx is not None:
            if first_time:
                raise ValueError("first_time: the differentiable first-spike time needs f32 arithmetic")
            if frames.numel() and not bool((frames == frames.round()).all()):
                raise ValueError("frames: fixed-point runs take whole event counts")
        dev, dtype = self.theta.device, self.theta.dtype
        frames = frames.to(device=dev, dtype=dtype)
        params = self.params()
        w_in, w_rec = self.weight_matrices()
        if fx is not None:
            w_in, _ = fixed.quantize(fx, w_in)
            w_rec, _ = fixed.quantize(fx, w_rec)
            params = params._replace(theta=fixed.threshold(fx, params.theta), beta=fixed.leak_factor(fx, params.beta))
            frames = frames.to(torch.int64)
        scheduled = opts.input_mode == "scheduled"
        limit = None if opts.F is None else int(opts.F)
        # fifo packs `frame << since_bits | step` into 31 bits where the steps and frames fit
        since_bits = (opts.step_limit[0] - 1).bit_length()  # a frame's step indices stay below 2^since_bits
        packed = since_bits <= 31 and frames.shape[1] < 1 << (31 - since_bits)
        fanout_in = (w_in.detach() != 0).sum(dim=0).to(dtype)
        spec = _Spec(
            params=params, fanout_rec=(w_rec.detach() != 0).sum(dim=0).to(dtype), fx=fx, scheduler=opts.scheduler,
            limit=limit, scheduled=scheduled, gradient=gradient, surrogate=self.surrogate,
            out=(self.out_slice.start, self.out_slice.stop), first_time=first_time, trace=opts.trace,
            stop_after_output=stop_after_output,
            since_bits=since_bits if packed else 0,
            compile=bool(compile) and fx is None,
            # the input weights act inside the steps only with scheduled input
            w_in=w_in if scheduled else None,
            fanout_in=fanout_in if scheduled else None)
        run = _Run(spec, opts, frames, fanout_in, bool(cuda_graphs))
        why_not = native.unsupported(frames, self.surrogate, fx=fx, scheduled=scheduled, trace=opts.trace,
                                     compile=compile, cuda_graphs=cuda_graphs)
        if engine == "native" and why_not:
            raise ValueError(f"engine: 'native' {why_not}")
        if engine == "native" or (engine == "auto" and why_not is None):
            return native.run(self, run, w_in, w_rec, gradient)
        # all_at_once: every frame's input current in one product, delivered at its step 0
        i_in = None if scheduled else _matmul(fx)(frames, w_in.t())
        manual = fx is None and not scheduled and torch.is_grad_enabled() and engine != "autograd" and (
            i_in.requires_grad or w_rec.requires_grad)
        if engine == "manual" and (fx is not None or scheduled):
            raise ValueError("engine: 'manual' runs float arithmetic with all_at_once input (use 'auto')")
        if not manual:
            return self._loop(run, i_in, w_rec, None)
        box: list = []
        out_counts, spike_counts, v_final, t_first = _ManualRun.apply(i_in, w_rec, self, run, box)
        return dataclasses.replace(box[0], out_counts=out_counts, spike_counts=spike_counts, v_final=v_final,
                                   first_time=t_first if first_time else None)

    def _loop(self, r: "_Run", i_in: Optional[torch.Tensor], w_rec: torch.Tensor, tape: Optional[dict]) -> SimResult:
        """The frame loop of :meth:`forward`: per frame the leak and the input, then chunks of
        steps (:func:`_steps`) until nothing is pending. ``tape`` is filled with what
        :class:`_ManualRun` needs for its backward."""
        spec, opts, frames = r.spec, r.options, r.frames
        params, fx = spec.params, spec.fx
        vdtype = _value_dtype(spec)
        dev, dtype = self.theta.device, self.theta.dtype
        bsz, t_frames, m = frames.shape
        n, n_out = self.n_neurons, self.out_slice.stop - self.out_slice.start
        syn_in = None if spec.scheduled else (frames > 0).to(dtype) @ r.fanout_in
        record = tape is not None
        if record:
            tape.update(chunks=[], frames=[])
        step_limit, limit_is_error = opts.step_limit
        # with F below a core's (or the input port's) size, the scheduler orders by the hash
        needs_keys = spec.limit is not None and (
            spec.limit < params.slot_neuron.shape[1] or (spec.scheduled and spec.limit < self.n_inputs))
        i64 = dict(dtype=torch.int64, device=dev)
        zeros_b = torch.zeros(bsz, dtype=dtype, device=dev)
        timing = torch.zeros(bsz, n_out if spec.first_time else 0, dtype=dtype, device=dev)
        bools = torch.zeros(bsz, dtype=torch.bool, device=dev)
        c = _Carry(fn.initial_state(bsz, params, vdtype, dev, pending_inputs=spec.scheduled), bools, bools,
                   torch.zeros(bsz, **i64), zeros_b, zeros_b, torch.zeros(bsz, n, dtype=dtype, device=dev),
                   torch.zeros(bsz, n_out, dtype=dtype, device=dev), torch.full((bsz,), fn._NEVER, **i64),
                   timing + 1, timing)
        sample = torch.arange(bsz, **i64) + opts.sample_offset
        stepper = self._stepper(r, frames.device)
        graphed = isinstance(stepper, GraphCache)
        frame_at = torch.arange(t_frames, **i64) << 32
        out_counts, frame_start, hist = [], [], []
        active_frames = torch.zeros(bsz, **i64)
        traces: Optional[list] = [[] for _ in range(bsz)] if spec.trace else None
        # On the CPU a check costs nothing; on an accelerator it drains the queue, so check per
        # chunk of steps, sized by the most steps either of the last two frames needed.
        sync_free = frames.device.type == "cpu" and not graphed
        chunk, last = 1, 1
        for f in range(t_frames):
            x = frames[:, f]
            frame_start.append(c.steps)
            counts_before = c.spike_counts.detach()
            state, live = c.state, ~c.done
            leaked = state.v * params.beta if fx is None else fixed.leak(fx, state.v, params.beta)
            v = torch.where(live[:, None], leaked, state.v)
            p_in, since_in = state.p_in, state.since_in
            if spec.scheduled:
                x = x * live[:, None].to(x.dtype)
                newly = (x > 0) & (p_in.detach() == 0)
                since_in = torch.where(newly, f << 32, since_in)
                p_in = p_in + x
                pending_any = (p_in.detach() > 0).any(1) | (state.p.detach() > 0).any(1)
            else:
                has_input = (x > 0).any(1) & live
                pending_any = has_input | (state.p.detach() > 0).any(1)
            state = fn.State(v, state.p, state.since, state.over, state.refr & ~live[:, None], p_in, since_in)
            if record:
                tape["frames"].append((live, len(tape["chunks"])))
            active = pending_any & live
            c = c._replace(state=state, active=active, frame_out=torch.zeros_like(c.frame_out))
            prefix = hashing.frame_prefix(opts.seed, sample, f) if needs_keys else None
            current = syn0 = None
            if not spec.scheduled:  # all_at_once: the frame's input current arrives at its step 0
                current = i_in[:, f] * active[:, None].to(vdtype)
                syn0 = syn_in[:, f] * active.to(dtype)
            j = 0
            while True:
                room = step_limit - j  # steps left to the frame
                k = graph_length(chunk, room) if graphed else min(chunk, room)
                at = frame_at[f] + j  # (a device scalar made on the device: no copy from the host)
                c, out = stepper("forward", _steps, spec, w_rec, c, prefix, at, k, current, syn0, record)
                current = syn0 = None
                hist.append(out)
                if record:
                    tape["chunks"].append((f, j, out.tape, out.step))
                if traces is not None:
                    for i, b, nn_ in out.spikes.nonzero().tolist():
                        traces[b].append((f, j + i, nn_))
                j += k
                # one host synchronisation per chunk: is anything still pending in this frame?
                took = torch.cat([c.steps - frame_start[-1], c.steps.new_zeros(1)])  # (an empty batch took 0)
                still, needed = torch.stack([c.active.any().to(torch.int64), took.max()]).tolist()
                if not still:
                    break
                if j >= step_limit:
                    if limit_is_error:
                        raise RunawayError(f"runaway activity: frame {f} did not settle within runaway_steps = "
                                           f"{step_limit} forward steps (a network that keeps exciting itself); set "
                                           "max_steps to cap the steps per frame, or raise runaway_steps")
                    break
                chunk = 1 if sync_free else max(1, needed // 4)
            chunk, last = (1, 1) if sync_free else (max(1, needed, last), max(1, needed))
            out_counts.append(c.frame_out)
            active_frames = active_frames + ((c.spike_counts.detach() - counts_before) > 0).sum(1)
        state, steps = c.state, c.steps
        unreleased = state.p.detach().sum(1) + state.p_in.detach().sum(1)
        t_first = c.t_first + c.alive * steps.to(dtype)[:, None] if spec.first_time else None
        first = first_spikes([h.fired for h in hist], [h.step for h in hist], [h.emitted for h in hist], frame_start,
                             (bsz, n_out), dtype, dev)
        if record and first.first_k is not None:  # (the first-spike-time backward needs it too)
            tape["first_k"] = first.first_k
        first_spike, spikes_before, first_out = first.first_spike, first.spikes_before, first.first_out
        return SimResult(
            out_counts=torch.stack(out_counts, dim=1) if out_counts else torch.zeros(bsz, 0, n_out, device=dev),
            spike_counts=c.spike_counts,
            v_final=state.v if fx is None else state.v.to(torch.float64) / fx.scale,
            synaptic_operations=c.synops,
            steps=steps,
            unreleased=unreleased,
            first_out=first_out,
            first_spike=first_spike,
            spikes_before=spikes_before,
            active_neuron_frames=active_frames,
            first_time=t_first,
            trace=traces,
        )

    def _stepper(self, r: "_Run", device: torch.device):
        """How chunks of steps run: as CUDA graphs (``cuda_graphs`` on a CUDA device, float
        arithmetic, ``all_at_once`` input, nothing recorded for autograd), else directly."""
        if r.cuda_graphs and r.spec.fx is None and not r.spec.scheduled and not torch.is_grad_enabled():
            if self._graph_cache is None and device.type == "cuda":
                self._graph_cache = GraphCache()
            if self._graph_cache is not None:  # (tests set one that emulates replay on the CPU)
                return self._graph_cache
        return _EAGER


class FirstSpikes(NamedTuple):
    """When the output spiked first (see :func:`first_spikes`)."""

    first_spike: torch.Tensor    # (B, O) int64 global step of each output neuron's first spike, -1
    spikes_before: torch.Tensor  # (B, O) spikes emitted in steps strictly before that one, -1
    first_out: torch.Tensor      # (B, 2) int64 [frame, step] of the first output spike, -1
    first_k: Optional[torch.Tensor]  # (B, O) index of the step record of the first spike (K: never)


def first_spikes(fired: list, step: list, emitted: list, frame_start: list, shape: tuple[int, int], dtype,
                 device) -> FirstSpikes:
    """The first spike of each output neuron from a run's per-step records (no per-step
    bookkeeping): ``fired`` ``(K_i, B, O)`` bool, ``step`` ``(K_i, B)`` the global step of each
    record, ``emitted`` ``(K_i, B)`` the spikes emitted before it (lists of chunks), and
    ``frame_start`` the global step at which each frame began ``(B,)`` per frame."""
    bsz, n_out = shape
    i64 = dict(dtype=torch.int64, device=device)
    first_spike = torch.full((bsz, n_out), -1, **i64)
    spikes_before = torch.full((bsz, n_out), -1, dtype=dtype, device=device)
    first_k = None
    if fired:
        fired_h, g_h, e_h = torch.cat(fired), torch.cat(step), torch.cat(emitted)
        n_h = fired_h.shape[0]
        first_k = torch.where(fired_h, torch.arange(n_h, device=device)[:, None, None], n_h).amin(0)  # (B, O)
        has = first_k < n_h
        kk = first_k.clamp(max=n_h - 1)
        first_spike = torch.where(has, g_h.t().gather(1, kk), first_spike)
        spikes_before = torch.where(has, e_h.t().gather(1, kk), spikes_before)
    first_out = torch.full((bsz, 2), -1, **i64)
    if frame_start:
        g0, _, has_out = fn.first_output(first_spike)
        starts_ = torch.stack(frame_start, 1)
        fr = (starts_ <= g0[:, None]).sum(1) - 1
        st_ = g0 - starts_.gather(1, fr.clamp(min=0)[:, None])[:, 0]
        first_out = torch.where(has_out[:, None], torch.stack([fr, st_], 1), first_out)
    return FirstSpikes(first_spike, spikes_before, first_out, first_k)


def _matmul(fx: Optional[fixed.FixedPoint]):
    """The product of the run's arithmetic: float, or the chip's saturating fixed point."""
    return torch.matmul if fx is None else fixed.matmul


def _value_dtype(spec: "_Spec") -> torch.dtype:
    """The dtype of potentials, pending counts and currents: the float dtype of the run, or
    int64 in fixed point."""
    return torch.int64 if spec.fx is not None else spec.fanout_rec.dtype


class _Spec(NamedTuple):
    """What every step of a run sees: the neurons, the arbitration and the static choices.
    Nothing that changes from call to call (seed, sample offset, step cap): a graphed or
    compiled step is made once per spec (its non-tensor fields are part of the signature)."""

    params: fn.Params
    fanout_rec: torch.Tensor             # (N,) non-zero weights of each neuron's outgoing synapses
    fx: Optional[fixed.FixedPoint]       # fixed-point format, None for float
    scheduler: str
    limit: Optional[int]                 # F, None for unlimited
    scheduled: bool                      # input channels queue at the input port
    gradient: str                        # "full" or "truncated"
    surrogate: fn.Surrogate
    out: tuple[int, int]                 # the output population's neurons [o0, o1)
    first_time: bool                     # the differentiable first-spike time is wanted
    trace: bool                          # keep every step's spikes
    stop_after_output: Optional[int]
    since_bits: int                      # fifo: steps of a frame stay below 2^since_bits (0: unknown)
    compile: bool                        # run the torch.compile'd single steps
    w_in: Optional[torch.Tensor] = None  # (N, M) input weights (scheduled input only)
    fanout_in: Optional[torch.Tensor] = None  # (M,) (scheduled input only)


class _Run(NamedTuple):
    """A forward call's prepared inputs (see :meth:`AsyncSimulator.forward`)."""

    spec: _Spec
    options: RunOptions
    frames: torch.Tensor
    fanout_in: torch.Tensor  # (M,) non-zero weights of each input channel's synapses
    cuda_graphs: bool


def _steps(spec: _Spec, w_rec: torch.Tensor, c: "_Carry", prefix: Optional[torch.Tensor], at: torch.Tensor, k: int,
           current: Optional[torch.Tensor], syn0: Optional[torch.Tensor], record: bool) -> tuple["_Carry", "_StepsOut"]:
    """``k`` forward steps of a frame from step ``at & 0xffffffff`` (``at`` is the device
    scalar ``frame << 32 | step``): select, deliver, fire, and the per-step bookkeeping.
    Finished samples are masked (exact no-ops), nothing waits for the device and no shape
    depends on the data. ``current``/``syn0``: the input current and its synaptic ops,
    delivered at the first of the ``k`` steps."""
    params = spec.params
    keys = keys_in = None
    if prefix is not None:  # every step's hash keys of every slot (and input) at once
        steps_k = fn.step_keys(prefix, (at & 0xFFFFFFFF) + torch.arange(k, device=at.device))
        keys = fn.source_keys(steps_k, params.slot_neuron + params.n_inputs)  # (B, K, C, P)
        if spec.scheduled:
            keys_in = fn.source_keys(steps_k, torch.arange(params.n_inputs, device=at.device))
    body = _compiled("forward") if spec.compile else _step
    outs: list = []
    for i in range(k):
        c, out = body(spec, w_rec, c, _StepIn(keys[:, i] if keys is not None else None,
                                              keys_in[:, i] if keys_in is not None else None, at + i, current, syn0),
                      record)
        current = syn0 = None
        outs.append(out)
    stack = lambda i: torch.stack([o[i] for o in outs])  # noqa: E731
    tape = fn.Tape(*(torch.stack([o[4][q] for o in outs]) for q in range(len(fn.Tape._fields)))) if record else None
    return c, _StepsOut(stack(0), stack(1), stack(2), stack(3) if spec.trace else None, tape)


class _StepIn(NamedTuple):
    """What one forward step takes besides the carry."""

    keys: Optional[torch.Tensor]     # (B, C, P) hash keys of the core slots (None: F covers every core)
    keys_in: Optional[torch.Tensor]  # (B, M) hash keys of the input channels (scheduled input)
    at: torch.Tensor                 # device scalar frame << 32 | step
    current: Optional[torch.Tensor]  # (B, N) input current of the frame (at its first step)
    syn0: Optional[torch.Tensor]     # (B,) its synaptic operations


def _step(spec: _Spec, w_rec: torch.Tensor, c: "_Carry", inp: _StepIn, record: bool) -> tuple["_Carry", tuple]:
    """One forward step of :func:`_steps` (select, deliver, fire, bookkeeping). Pure, with
    static shapes: what ``compile`` compiles. Returns the carry after the step and the step's
    record (output spikes, global step and spikes emitted before it, all spikes for traces,
    the tape)."""
    params, fx = spec.params, spec.fx
    o0, o1 = spec.out
    state, active, done, steps, emitted, synops, spike_counts, frame_out, first_g, alive, t_first = c
    dtype = synops.dtype
    current = inp.current
    if spec.scheduled:
        vdtype = state.v.dtype
        rel_in = fn.select_inputs(state, spec.scheduler, spec.limit, inp.keys_in, spec.since_bits) & active[:, None]
        delivered_in = state.p_in * rel_in.to(vdtype)
        current = _matmul(fx)(delivered_in, spec.w_in.t())
        synops = synops + rel_in.to(dtype) @ spec.fanout_in
        state = state._replace(p_in=state.p_in - delivered_in)
    elif inp.syn0 is not None:
        synops = synops + inp.syn0
    released = fn.select_neurons(state, params, spec.scheduler, spec.limit, inp.keys, spec.since_bits)
    res = fn.step(state, params, w_rec, spec.fanout_rec, released, current, active, inp.at, spec.gradient,
                  spec.surrogate, fx, record=record)
    state, s = res.state, res.spikes
    synops = synops + res.synops
    spike_counts = spike_counts + s
    out_s = s[:, o0:o1]
    frame_out = frame_out + out_s
    fired_out = out_s.detach() > 0
    out = (fired_out, steps, emitted, s.detach() > 0 if spec.trace else None, res.tape)
    if spec.first_time:
        t_first = t_first + alive * out_s * steps.to(dtype)[:, None]
        alive = alive * (1 - out_s)
    emitted = emitted + s.detach().sum(1)
    g, steps = steps, steps + active.to(torch.int64)
    pend = (state.p.detach() > 0).any(1)
    if spec.scheduled:
        pend = pend | (state.p_in.detach() > 0).any(1)
    active = active & pend
    if spec.stop_after_output is not None:
        first_g = torch.where(fired_out.any(1) & (first_g == fn._NEVER), g, first_g)
        stop = steps - int(spec.stop_after_output) > first_g  # (no overflow when none fired)
        done = done | stop
        active = active & ~stop
    return _Carry(state, active, done, steps, emitted, synops, spike_counts, frame_out, first_g, alive, t_first), out


_EAGER = Eager()
_COMPILED: dict = {}


def _compiled(which: str):
    """``torch.compile`` of the single forward step (:func:`_step`) or backward step
    (:func:`_step_backward`), made once per process (static shapes; a new shape or option
    recompiles). Each scheduler, F, gradient choice, readout and first-step-of-a-frame flag is a
    variant of its own, so the recompile limit is raised from dynamo's default of 8: past the
    limit dynamo would silently run the step eagerly."""
    if which not in _COMPILED:
        dynamo = torch._dynamo.config
        limit = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"  # (older torch)
        setattr(dynamo, limit, max(getattr(dynamo, limit), 64))
        _COMPILED[which] = torch.compile(_step if which == "forward" else _step_backward, fullgraph=True, dynamic=False)
    return _COMPILED[which]


class _Carry(NamedTuple):
    """What a chunk of steps carries over to the next (see :func:`_steps`)."""

    state: fn.State
    active: torch.Tensor        # (B,) bool: the sample has pending spikes in this frame
    done: torch.Tensor          # (B,) bool: stopped after its first output spike
    steps: torch.Tensor         # (B,) int64 forward steps so far
    emitted: torch.Tensor       # (B,) spikes emitted so far
    synops: torch.Tensor        # (B,)
    spike_counts: torch.Tensor  # (B, N)
    frame_out: torch.Tensor     # (B, O) output spikes of this frame
    first_g: torch.Tensor       # (B,) int64 global step of the first output spike (stop rule)
    alive: torch.Tensor         # (B, O) no output spike yet (first_time only, else (B, 0))
    t_first: torch.Tensor       # (B, O) differentiable first-spike step so far


class _StepsOut(NamedTuple):
    """Per-step records of a chunk, stacked along a leading step axis."""

    fired: torch.Tensor             # (K, B, O) bool output spikes
    step: torch.Tensor              # (K, B) int64 global step of each step
    emitted: torch.Tensor           # (K, B) spikes emitted before each step
    spikes: Optional[torch.Tensor]  # (K, B, N) bool (trace only)
    tape: Optional[fn.Tape]         # stacked tapes (manual engine)


class _ManualRun(torch.autograd.Function):
    """The whole run as one autograd node: the forward runs the step loop without recording a
    graph and keeps each chunk's stacked :class:`~asyncsnn.sim.functional.Tape`; the backward
    walks the chunks in reverse (:func:`_steps_backward`, graphed like the forward on CUDA).

    Differentiable inputs: the input current of every frame ``(B, T, N)`` and ``W_rec``;
    differentiable outputs: ``out_counts``, ``spike_counts``, ``v_final`` and ``first_time``."""

    @staticmethod
    def forward(ctx, i_in, w_rec, sim, run, box):  # type: ignore[override]
        tape: dict = {}
        res = sim._loop(run, i_in, w_rec, tape)
        box.append(res)
        ctx.sim, ctx.run = sim, run
        ctx.frames = tape["frames"]
        ctx.meta = [(f, j) for f, j, _, _ in tape["chunks"]]
        flat = [t for _, _, tp, g in tape["chunks"] for t in (*tp, g)]
        ctx.save_for_backward(w_rec, res.steps, tape.get("first_k", res.steps), *flat)
        t_first = res.first_time if res.first_time is not None else res.out_counts.new_zeros(0)
        return res.out_counts, res.spike_counts, res.v_final, t_first

    @staticmethod
    def backward(ctx, g_out, g_counts, g_v, g_first):  # type: ignore[override]
        sim, run = ctx.sim, ctx.run
        spec = run.spec
        w_rec, steps, first_k, *flat = ctx.saved_tensors
        per = len(fn.Tape._fields) + 1
        chunks = [(fn.Tape(*flat[i:i + per - 1]), flat[i + per - 1]) for i in range(0, len(flat), per)]
        params = spec.params
        o0, o1 = spec.out
        bsz, t_frames, _ = run.frames.shape
        dev = g_v.device
        stepper = sim._stepper(run, dev)
        g_v = g_v.clone()
        g_p = torch.zeros_like(g_v)
        g_w = torch.zeros_like(w_rec)
        g_i = torch.zeros(bsz, t_frames, g_v.shape[1], dtype=g_v.dtype, device=dev)
        timed = spec.first_time and g_first.numel() > 0 and bool(chunks)
        if timed:  # reverse of t += alive_k s_k k (alive_k: no output spike before step k); t += alive_K K
            lam = g_first * steps.to(g_v.dtype)[:, None]
        starts = np.cumsum([0] + [g.shape[0] for _, g in chunks])
        zero = torch.zeros((), dtype=torch.int64, device=dev)
        bounds = [c for _, c in ctx.frames] + [len(chunks)]
        for f in range(len(ctx.frames) - 1, -1, -1):
            g_base = g_counts.clone()
            g_base[:, o0:o1] += g_out[:, f]
            for c in range(bounds[f + 1] - 1, bounds[f] - 1, -1):
                tape, step = chunks[c]
                timing = _Timing(g_first, first_k, zero + int(starts[c]), lam) if timed else None
                g_v, g_p, g_cur, lam_ = stepper("backward", _steps_backward, spec, w_rec, tape, step,
                                                _Grads(g_v, g_p, g_base), timing)
                if timed:
                    lam = lam_
                g_w.addmm_(g_cur.flatten(0, 1).t(), tape.delivered.flatten(0, 1))
                if ctx.meta[c][1] == 0:
                    g_i[:, f] += g_cur[0]
            g_v = g_v * torch.where(ctx.frames[f][0][:, None], params.beta, torch.ones_like(params.beta))
        return g_i, g_w, None, None, None


class _Grads(NamedTuple):
    """The gradients after a step (or chunk), walking backward."""

    v: torch.Tensor     # (B, N) of the potentials
    p: torch.Tensor     # (B, N) of the pending counts
    base: torch.Tensor  # (B, N) the loss's gradient of every spike of the frame


class _Timing(NamedTuple):
    """The first-spike-time adjoint of a backward chunk (or step): ``first_k`` is the loop index
    of each output's first spike, ``k`` the chunk's (step's) first loop index, ``lam`` the
    adjoint of "not fired yet"."""

    g_first: torch.Tensor  # (B, O) the loss's gradient of the first-spike times
    first_k: torch.Tensor  # (B, O) int64
    k: torch.Tensor        # device scalar int64
    lam: torch.Tensor      # (B, O)


def _steps_backward(spec: _Spec, w_rec: torch.Tensor, tape: fn.Tape, step: torch.Tensor, g: _Grads,
                    timing: Optional[_Timing]) -> tuple:
    """The backward of one chunk of ``k`` steps (stacked ``tape``, global ``step`` ``(k, B)``),
    from the gradients after it: those before it, the gradient of each step's input current
    ``(k, B, N)``, and the new first-spike-time adjoint. Pure: graphed on CUDA."""
    k = step.shape[0]
    g_curs: list = [None] * k
    body = _compiled("backward") if spec.compile else _step_backward
    lam = None if timing is None else timing.lam
    g_v, g_p = g.v, g.p
    for i in range(k - 1, -1, -1):
        tp = fn.Tape(*(t[i] for t in tape))
        t_i = None if timing is None else timing._replace(k=timing.k + i, lam=lam)
        g_v, g_p, g_curs[i], lam = body(spec, w_rec, tp, step[i], _Grads(g_v, g_p, g.base), t_i)
    return g_v, g_p, torch.stack(g_curs), (lam if timing is not None else g_v.new_zeros(0))


def _step_backward(spec: _Spec, w_rec: torch.Tensor, tp: fn.Tape, step: torch.Tensor, g: _Grads,
                   timing: Optional[_Timing]) -> tuple:
    """The backward of one step (its ``tape``, global ``step`` ``(B,)``) for
    :func:`_steps_backward`. Returns the gradients before the step, that of its input current
    and the new ``lam`` (``None`` without timing). Pure, with static shapes: what ``compile``
    compiles."""
    o0, o1 = spec.out
    g_v, g_s = g.v, g.base
    lam = None
    if timing is not None:
        alive = (timing.first_k >= timing.k).to(g_v.dtype)
        gk = step.to(g_v.dtype)[:, None]
        s_out = tp.spikes[:, o0:o1].to(g_v.dtype)
        g_s = g_s.clone()
        g_s[:, o0:o1] += alive * (timing.g_first * gk - timing.lam)
        lam = timing.g_first * s_out * gk + timing.lam * (1 - s_out)
    g_v, g_p, g_cur = fn.step_backward(tp, spec.params, w_rec, g_v, g.p, g_s, spec.gradient, spec.surrogate)
    return g_v, g_p, g_cur, lam
