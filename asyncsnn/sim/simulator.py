"""The asynchronous simulator: a batched, differentiable run of the execution model.

:class:`AsyncSimulator` is a thin module over :mod:`asyncsnn.sim.functional`. It holds one
parameter per projection of a :class:`~asyncsnn.network.Network` (a dense matrix, the values of
a sparse one, or a convolution kernel) and runs frames of input through forward steps with the
per-core release limit ``F`` and a scheduler, exactly as the emulator's ``steps`` mode does.

Speed without losing exactness:

* with ``all_at_once`` input delivery (the default) the input current of every frame is one
  batched product before the step loop; only neuron-to-neuron weights act inside it;
* each core's neurons sit in a padded ``(cores, slots)`` layout, so selection is one sort
  (``random``) or two (``fifo``, ``momentum``, ``layered``) of short rows, and none at all when
  ``F`` is at least the core size;
* the loop never waits for the device at each step: it runs chunks of steps in which finished
  samples are masked (exact no-ops) and asks the device whether anything is still pending once
  per chunk. The chunk length follows the steps the previous frame needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..network import Network
from ..reference import dense_weights
from . import fixed
from . import functional as fn

SCHEDULERS = ("fifo", "random", "momentum", "layered")
INPUT_MODES = ("all_at_once", "scheduled")


@dataclass
class SimResult:
    """Outputs of a run; tensors are batch first. ``global step`` counts forward steps over
    all frames (the emulator's ``first_spike`` in ``steps`` mode)."""

    out_counts: torch.Tensor     # (B, T, O) float, differentiable
    spike_counts: torch.Tensor   # (B, N) float, differentiable
    v_final: torch.Tensor        # (B, N), differentiable
    synops: torch.Tensor         # (B,) effective synaptic operations
    steps: torch.Tensor          # (B,) int64 forward steps
    unreleased: torch.Tensor     # (B,) spikes still pending at the end
    first_out: torch.Tensor      # (B, 2) int64 [frame, step] of the first output spike, -1 if none
    first_spike: torch.Tensor    # (B, O) int64 global step of each output neuron's first spike, -1
    spikes_before: torch.Tensor  # (B, O) spikes emitted in steps strictly before that one
    first_time: Optional[torch.Tensor] = None  # (B, O) differentiable first-spike step (see forward)
    trace: Optional[list] = None  # per sample: list of (frame, step, neuron)

    @property
    def total_steps(self) -> int:
        return int(self.steps.max()) if self.steps.numel() else 0


class AsyncSimulator(torch.nn.Module):
    """A network ready to run in PyTorch (CPU or GPU).

    ``core_of`` maps every neuron to a core (default: the network's ``core_of``, else all on
    core 0); the release limit ``F``
    applies per core per step. ``weights`` lists one parameter per projection, in the network's
    order; :meth:`to_network` writes them back."""

    def __init__(self, network: Network, core_of: Optional[Sequence[int]] = None, *,
                 surrogate: str = "fast_sigmoid", slope: float = 10.0) -> None:
        super().__init__()
        dense_weights(network)  # validates the network
        if not network.is_lif:
            kinds = sorted({p.kind for p in network.populations} - {"lif"})
            raise ValueError(f"network: populations of kind {', '.join(kinds)}; the AsyncSimulator runs LIF "
                             "networks (simulate stochastic SPSN deployments with asyncsnn.spsn.deploy.simulate, "
                             "or any mix on the emulator)")
        if surrogate not in fn.SURROGATES:
            raise ValueError(f"surrogate: {surrogate!r}; allowed: {', '.join(fn.SURROGATES)}")
        if not slope > 0:
            raise ValueError(f"slope: {slope} must be > 0")
        self.network = network
        m, n = network.n_inputs, network.n_neurons
        starts = network.population_starts
        self.weights = torch.nn.ParameterList()
        self._layout: list[tuple] = []
        for j, pr in enumerate(network.projections):
            t0 = starts[network._pop_index(pr.target, "target")]
            is_input = pr.source == "input"
            s0 = 0 if is_input else starts[network._pop_index(pr.source, "source")]
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
        self.out_slice = slice(starts[o], starts[o] + network.populations[o].size)
        self.n_inputs, self.n_neurons, self.n_cores = m, n, n_cores
        self.contiguous = bool(np.array_equal(slot_neuron.reshape(-1), np.arange(n)))
        self.surrogate, self.slope = surrogate, slope

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
        """The network with the current weights (for the emulator and for saving)."""
        from dataclasses import replace

        projs = []
        for pr, p in zip(self.network.projections, self.weights):
            w = p.detach().cpu().numpy().astype(np.float32)
            projs.append(replace(pr, values=w) if pr.kind == "sparse" else replace(pr, weights=w))
        return Network(self.network.n_inputs, list(self.network.populations), projs, output=self.network.output,
                       core_of=self.mapping)

    def params(self) -> fn.Params:
        return fn.Params(self.theta, self.beta, self.subtract, self.refractory, self.has_out, self.layer,
                         self.slot_neuron, self.neuron_slot, self.n_inputs, self.contiguous)

    # ----------------------------------------------------------------- run
    def forward(
        self,
        frames: torch.Tensor,
        *,
        scheduler: str = "fifo",
        F: Optional[int] = None,
        seed: int = 0,
        sample_offset: int = 0,
        input_mode: str = "all_at_once",
        max_steps: Optional[int] = None,
        stop_after_output: Optional[int] = None,
        gradient: str = "full",
        first_time: bool = False,
        trace: bool = False,
        arithmetic: Optional[object] = None,
    ) -> SimResult:
        """Run input frames ``(B, T, n_inputs)`` of event counts.

        ``max_steps`` caps the forward steps of a frame (what is pending carries over);
        ``stop_after_output=k`` ends a sample ``k`` steps after its first output spike (its
        later frames are not injected; what is pending is reported as unreleased);
        ``gradient`` is ``"full"`` or ``"truncated"`` (see :func:`functional.step`);
        ``first_time`` adds a differentiable first-spike step per output neuron
        (``sum_k k s_k prod_{j<k}(1 - s_j)``, or the run's last step + 1 if it never fires).

        ``arithmetic`` is ``None`` or ``"f32"`` (float, differentiable) or a fixed-point format
        (a chip's ``config["arithmetic"]`` with ``kind = "fixed"``, or a
        :class:`~asyncsnn.sim.fixed.FixedPoint`): weights, thresholds, leaks and potentials are
        then the chip's saturating integers, bit for bit as the emulator's fixed-point ``steps``
        mode (no gradient; ``v_final`` in network units)."""
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: {scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode: {input_mode!r}; allowed: {', '.join(INPUT_MODES)}")
        if gradient not in fn.GRADIENTS:
            raise ValueError(f"gradient: {gradient!r}; allowed: {', '.join(fn.GRADIENTS)}")
        if not isinstance(frames, torch.Tensor):
            frames = torch.as_tensor(np.asarray(frames))
        if frames.ndim != 3 or frames.shape[2] != self.n_inputs:
            raise ValueError(f"frames: expected (batch, frames, {self.n_inputs}), got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            frames = frames.to(torch.float32)
        if not bool(torch.isfinite(frames).all()):
            raise ValueError("frames: contains NaN or infinite counts")
        if frames.numel() and bool((frames < 0).any()):
            raise ValueError("frames: event counts must be >= 0")
        for name, val, lo in (("F", F, 1), ("max_steps", max_steps, 1), ("stop_after_output", stop_after_output, 0)):
            if val is not None and int(val) < lo:
                raise ValueError(f"{name}: {val} is outside {lo}.. (or None)")
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
        bsz, t_frames, m = frames.shape
        n, o0, o1 = self.n_neurons, self.out_slice.start, self.out_slice.stop
        n_out = o1 - o0
        params = self.params()
        w_in, w_rec = self.weight_matrices()
        mm = torch.matmul
        vdtype = dtype  # dtype of potentials, pending counts and currents
        if fx is not None:
            w_in, _ = fixed.quantize(fx, w_in)
            w_rec, _ = fixed.quantize(fx, w_rec)
            params = params._replace(theta=fixed.threshold(fx, params.theta), beta=fixed.leak_factor(fx, params.beta))
            frames = frames.to(torch.int64)
            mm, vdtype = fixed.matmul, torch.int64
        fanout_in = (w_in.detach() != 0).sum(dim=0).to(dtype)
        fanout_rec = (w_rec.detach() != 0).sum(dim=0).to(dtype)
        scheduled = input_mode == "scheduled"
        limit = None if F is None else int(F)
        cap = None if max_steps is None else int(max_steps)
        needs_keys = limit is not None and (limit < self.slot_neuron.shape[1] or (scheduled and limit < m))
        # all_at_once: every frame's input current in one product, delivered at its step 0
        i_in = None if scheduled else mm(frames, w_in.t())
        syn_in = None if scheduled else (frames > 0).to(dtype) @ fanout_in

        state = fn.initial_state(bsz, params, vdtype, dev)
        sample = torch.arange(bsz, device=dev, dtype=torch.int64) + int(sample_offset)
        zeros_b = torch.zeros(bsz, dtype=dtype, device=dev)
        i64 = dict(dtype=torch.int64, device=dev)
        out_counts = []
        spike_counts = torch.zeros(bsz, n, dtype=dtype, device=dev)
        synops = zeros_b
        steps = torch.zeros(bsz, **i64)
        emitted = zeros_b  # spikes emitted so far (for spikes_before)
        frame_start = []  # global step at each frame's start, to locate the first output spike
        big = torch.iinfo(torch.int64).max
        first_g = torch.full((bsz,), big, **i64)  # global step of the first output spike (stop rule)
        hist: list = []  # per loop step: (output fired (B, O), global step (B,), spikes before (B,))
        alive = torch.ones(bsz, n_out, dtype=dtype, device=dev) if first_time else None
        t_first = torch.zeros(bsz, n_out, dtype=dtype, device=dev) if first_time else None
        done = torch.zeros(bsz, dtype=torch.bool, device=dev)
        traces: Optional[list] = [[] for _ in range(bsz)] if trace else None
        # On the CPU a check costs nothing; on an accelerator it drains the queue, so check per
        # chunk of steps, sized by the steps the previous frame needed.
        sync_free = frames.device.type == "cpu"
        chunk = 1
        for f in range(t_frames):
            x = frames[:, f]
            frame_start.append(steps)
            live = ~done
            leaked = state.v * params.beta if fx is None else fixed.leak(fx, state.v, params.beta)
            v = torch.where(live[:, None], leaked, state.v)
            p_in, since_in = state.p_in, state.since_in
            if scheduled:
                x = x * live[:, None].to(x.dtype)
                newly = (x > 0) & (p_in.detach() == 0)
                since_in = torch.where(newly, f << 32, since_in)
                p_in = p_in + x
                pending_any = (p_in.detach() > 0).any(1) | (state.p.detach() > 0).any(1)
            else:
                has_input = (x > 0).any(1) & live
                pending_any = has_input | (state.p.detach() > 0).any(1)
            state = fn.State(v, state.p, state.since, state.over, state.refr & ~live[:, None], p_in, since_in)
            active = pending_any & live
            frame_out = torch.zeros(bsz, n_out, dtype=dtype, device=dev)
            j = 0
            while True:
                n_chunk = chunk if cap is None else max(0, min(chunk, cap - j))
                if n_chunk == 0:
                    break
                keys = None
                if needs_keys:
                    keys = fn.step_keys(seed, sample, f, torch.arange(j, j + n_chunk, **i64))
                for i in range(n_chunk):
                    kcol = keys[:, i] if keys is not None else None
                    current = None
                    if scheduled:
                        rel_in = fn.select_inputs(state, scheduler, limit, kcol) & active[:, None]
                        delivered_in = state.p_in * rel_in.to(vdtype)
                        current = mm(delivered_in, w_in.t())
                        synops = synops + rel_in.to(dtype) @ fanout_in
                        state = state._replace(p_in=state.p_in - delivered_in)
                    elif j == 0:
                        current = i_in[:, f] * active[:, None].to(vdtype)
                        synops = synops + syn_in[:, f] * active.to(dtype)
                    released = fn.select_neurons(state, params, scheduler, limit, kcol)
                    res = fn.step(state, params, w_rec, fanout_rec, released, current, active, (f << 32) | j,
                                  gradient, self.surrogate, self.slope, fx)
                    state, s = res.state, res.spikes
                    synops = synops + res.synops
                    spike_counts = spike_counts + s
                    out_s = s[:, o0:o1]
                    frame_out = frame_out + out_s
                    g = steps  # global step index of this step, per sample
                    fired_out = out_s.detach() > 0
                    hist.append((fired_out, g, emitted))
                    if first_time:
                        gf = g.to(dtype)[:, None]
                        t_first = t_first + alive * out_s * gf
                        alive = alive * (1 - out_s)
                    if traces is not None:
                        for b, nn_ in (s.detach() > 0).nonzero().tolist():
                            traces[b].append((f, j, nn_))
                    emitted = emitted + s.detach().sum(1)
                    steps = steps + active.to(torch.int64)
                    j += 1
                    pend = (state.p.detach() > 0).any(1)
                    if scheduled:
                        pend = pend | (state.p_in.detach() > 0).any(1)
                    active = active & pend
                    if stop_after_output is not None:
                        first_g = torch.where(fired_out.any(1) & (first_g == big), g, first_g)
                        stop = steps - int(stop_after_output) > first_g  # (no overflow when none fired)
                        done = done | stop
                        active = active & ~stop
                    if cap is not None and j >= cap:
                        break
                # one host synchronisation per chunk: is anything still pending in this frame?
                took = torch.cat([steps - frame_start[-1], steps.new_zeros(1)])  # (an empty batch took 0)
                still, needed = torch.stack([active.any().to(torch.int64), took.max()]).tolist()
                if not still or (cap is not None and j >= cap):
                    break
                chunk = 1 if sync_free else max(1, needed // 4)
            chunk = 1 if sync_free else max(1, needed)
            out_counts.append(frame_out)
        unreleased = state.p.detach().sum(1) + state.p_in.detach().sum(1)
        if first_time:
            t_first = t_first + alive * steps.to(dtype)[:, None]
        # first spike of each output neuron, from the per-step history (no per-step bookkeeping)
        first_spike = torch.full((bsz, n_out), -1, **i64)
        spikes_before = torch.full((bsz, n_out), -1, dtype=dtype, device=dev)
        if hist:
            fired_h = torch.stack([h[0] for h in hist], 1)  # (B, K, O)
            g_h = torch.stack([h[1] for h in hist], 1)      # (B, K)
            e_h = torch.stack([h[2] for h in hist], 1)      # (B, K)
            k_idx = torch.arange(len(hist), device=dev)[None, :, None]
            first_k = torch.where(fired_h, k_idx, len(hist)).amin(1)  # (B, O)
            has = first_k < len(hist)
            kk = first_k.clamp(max=len(hist) - 1)
            first_spike = torch.where(has, g_h.gather(1, kk), first_spike)
            spikes_before = torch.where(has, e_h.gather(1, kk), spikes_before)
        first_out = torch.full((bsz, 2), -1, **i64)
        if t_frames:
            g0, _, has_out = fn.first_output(first_spike)
            starts_ = torch.stack(frame_start, 1)
            fr = (starts_ <= g0[:, None]).sum(1) - 1
            st_ = g0 - starts_.gather(1, fr.clamp(min=0)[:, None])[:, 0]
            first_out = torch.where(has_out[:, None], torch.stack([fr, st_], 1), first_out)
        return SimResult(
            out_counts=torch.stack(out_counts, dim=1) if out_counts else torch.zeros(bsz, 0, n_out, device=dev),
            spike_counts=spike_counts,
            v_final=state.v if fx is None else state.v.to(torch.float64) / fx.scale,
            synops=synops,
            steps=steps,
            unreleased=unreleased,
            first_out=first_out,
            first_spike=first_spike,
            spikes_before=spikes_before,
            first_time=t_first,
            trace=traces,
        )
