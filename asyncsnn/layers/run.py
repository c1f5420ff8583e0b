"""Run a model built from layer modules as the asynchronous chip runs it, and put it on the chip.

* :func:`run` drives a model through frames and forward steps (the frame loop of the execution
  model) and returns a :class:`LayerRun` (a :class:`~asyncsnn.sim.SimResult` with the state to
  continue from), differentiable: this is unlayered backprop for a user's own model;
* :func:`to_network` turns a :class:`~asyncsnn.layers.Sequential` of ``nn.Linear`` and
  :class:`~asyncsnn.layers.AsyncLIF` layers into a chip :class:`~asyncsnn.Network` (with its
  core mapping), and :func:`chip_frames` gives the frames it takes (the bias channel appended).

The model is any ``nn.Module`` called as ``model(x, state, clock) -> (out, state)`` with the
input channels released at a step ``x`` ``(B, M)``; its :class:`~asyncsnn.layers.AsyncLIF`
layers are found through ``model.modules()``, in that order (the order of their populations and
of their neurons' hash ids), and exactly one of them is the output (``output=True``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import numpy as np
import torch

from ..errors import NetworkError, RunawayError
from ..network import Network, Population, Projection, append_bias_channel
from ..options import RunOptions
from ..sim import functional as fn
from ..sim.simulator import SimResult, first_spikes
from .clock import Clock
from .modules import AsyncLIF


class RunState(NamedTuple):
    """Where a run stopped, to continue it with the next frames of a stream (``run(...,
    state=result.state)``): the model's state, the next frame's index, the global step count,
    and which samples still have pending spikes (and input events, in ``scheduled`` mode)."""

    model: Any
    frame: int
    steps: torch.Tensor    # (B,) int64
    pending: torch.Tensor  # (B,) bool
    p_in: Optional[torch.Tensor]
    since_in: Optional[torch.Tensor]


@dataclass
class LayerRun(SimResult):
    """A :class:`~asyncsnn.sim.SimResult` (neurons in the order of the model's AsyncLIF layers)
    plus ``layer_spikes`` (each layer's spike counts ``(B, n)``, differentiable: for rate
    regularisers), ``layer_active`` (each layer's ``(B, T, n)`` bool: the neuron spiked in the
    frame; what activation sparsity counts) and ``state`` to continue from."""

    layer_spikes: Optional[list] = None
    layer_active: Optional[list] = None
    state: Optional[RunState] = None


def async_layers(model: torch.nn.Module) -> list[AsyncLIF]:
    """The model's :class:`AsyncLIF` layers in ``model.modules()`` order."""
    return [m for m in model.modules() if isinstance(m, AsyncLIF)]


def _output_layer(layers: list[AsyncLIF]) -> AsyncLIF:
    outs = [m for m in layers if m.output]
    if not layers:
        raise ValueError("model: has no AsyncLIF layer")
    if len(outs) != 1:
        raise ValueError(f"model: needs exactly one AsyncLIF layer with output=True (the output population), has "
                         f"{len(outs)}")
    return outs[0]


def _input_size(model: torch.nn.Module) -> Optional[int]:
    """The input channels a Sequential's first layer takes (``None``: not known)."""
    first = model
    while isinstance(first, torch.nn.Sequential) and len(first):
        first = first[0]
    return first.in_features if isinstance(first, torch.nn.Linear) else None


def _has_bias(layers: list[AsyncLIF]) -> bool:
    return any(m.bias is not None for m in layers)


def run(model: torch.nn.Module, frames, options: Optional[RunOptions] = None, *, state: Optional[RunState] = None,
        **run_options) -> LayerRun:
    """Run ``frames`` ``(B, T, M)`` of input event counts through ``model`` with ``options`` (a
    :class:`~asyncsnn.RunOptions`, or its fields as keywords: ``scheduler``, ``F``, ``seed``,
    ``sample_offset``, ``input_mode``, ``max_steps``, ``runaway_steps``, ``trace``): per frame
    the leak and the input, then forward steps until nothing is pending, each step one call
    ``model(x, state, clock)``. ``state``: continue a stream from an earlier result's
    ``state`` (frame indices, and so the schedule's hash, continue).

    On the same weights this is, bit for bit where the sums are exact,
    :class:`~asyncsnn.sim.AsyncSimulator` and the emulator's ``steps`` mode on
    :func:`to_network` of the model. Autograd runs through it (``loss.backward()``)."""
    opts = RunOptions.of(options, **run_options)
    if opts.mode != "steps":
        raise ValueError(f"mode: {opts.mode!r}; layer models run the steps model (the emulator runs events mode)")
    layers = async_layers(model)
    out_layer = _output_layer(layers)
    if not isinstance(frames, torch.Tensor):
        frames = torch.as_tensor(np.asarray(frames))
    ref = layers[0].theta
    if frames.ndim != 3:
        raise ValueError(f"frames: expected (batch, frames, channels), got shape {tuple(frames.shape)}")
    frames = frames.to(device=ref.device, dtype=ref.dtype)
    if frames.numel():
        lo, hi = torch.aminmax(frames)
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            raise ValueError("frames: contains NaN or infinite counts")
        if lo < 0:
            raise ValueError("frames: event counts must be >= 0")
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise ValueError(f"{name}: contains NaN or infinite values")
    bsz, t_frames, m = frames.shape
    want = _input_size(model)
    if want is not None and m != want:
        raise ValueError(f"frames: expected (batch, frames, {want}) for the model's first Linear layer, got "
                         f"{tuple(frames.shape)}")
    bias = _has_bias(layers)
    m_chip = m + int(bias)
    scheduled = opts.input_mode == "scheduled"
    dev, dtype = ref.device, ref.dtype
    if state is not None:
        if state.steps.shape != (bsz,):
            raise ValueError(f"state: from a batch of {state.steps.shape[0]}, not {bsz}")
        if scheduled != (state.p_in is not None):
            raise ValueError("state: from a run with another input_mode")
    start = 0 if state is None else state.frame
    clock = Clock(layers, m_chip, opts, bsz, dev, dtype, start)
    if state is not None:
        clock.pending = state.pending
    mstate = None if state is None else state.model
    steps = torch.zeros(bsz, dtype=torch.int64, device=dev) if state is None else state.steps
    p_in = since_in = None
    if scheduled:
        p_in = torch.zeros(bsz, m_chip, dtype=dtype, device=dev) if state is None else state.p_in
        since_in = torch.zeros(bsz, m_chip, dtype=torch.int64, device=dev) if state is None else state.since_in
    step_limit, limit_is_error = opts.step_limit
    emitted = torch.zeros(bsz, dtype=dtype, device=dev)
    out_counts, frame_start, fired_h, step_h, emitted_h = [], [], [], [], []
    active_frames = torch.zeros(bsz, dtype=torch.int64, device=dev)
    layer_active: list[list] = [[] for _ in layers]
    zeros_in = torch.zeros(bsz, m, dtype=dtype, device=dev)
    for f in range(t_frames):
        fr = start + f
        clock.begin_frame(fr)
        frame_start.append(steps)
        x = frames[:, f]
        if scheduled:
            events = torch.cat([x, torch.ones(bsz, int(bias), dtype=dtype, device=dev)], 1)
            since_in = torch.where((events > 0) & (p_in == 0), fr << 32, since_in)
            p_in = p_in + events
            active = (p_in > 0).any(1) | clock.pending
        else:
            active = (x > 0).any(1) | clock.pending | bias
        frame_out = torch.zeros(bsz, out_layer.size, dtype=dtype, device=dev)
        j = 0
        while True:
            clock.begin_step(j, active, None)
            if scheduled:  # the input port releases up to F pending channels, as a core does
                keys = clock.keys(0, m_chip) if opts.F is not None and opts.F < m_chip else None
                port = fn.State(p_in, p_in, since_in, p_in, p_in, p_in, since_in)
                rel = fn.select_inputs(port, opts.scheduler, opts.F, keys) & active[:, None]
                x_rel = p_in * rel.to(dtype)
                p_in = p_in - x_rel
                x_in = x_rel[:, :m]
                clock.bias = x_rel[:, m] if bias else None
            else:
                x_in = x * active[:, None].to(dtype) if j == 0 else zeros_in
                clock.bias = active.to(dtype) if (bias and j == 0) else None
            _, mstate = model(x_in, mstate, clock)
            out_s = clock.out_spikes
            if out_s is None:
                raise ValueError("model: its output layer (AsyncLIF with output=True) was not called in the step")
            frame_out = frame_out + out_s
            fired_h.append((out_s.detach() > 0)[None])
            step_h.append(steps[None])
            emitted_h.append(emitted[None])
            emitted = emitted + clock.step_spikes
            steps = steps + active.to(torch.int64)
            pend = clock.pending | ((p_in > 0).any(1) if scheduled else False)
            active = active & pend
            j += 1
            if not bool(active.any()):
                break
            if j >= step_limit:
                if limit_is_error:
                    raise RunawayError(f"runaway activity: frame {fr} did not settle within runaway_steps = "
                                       f"{step_limit} forward steps (a network that keeps exciting itself); set "
                                       "max_steps to cap the steps per frame, or raise runaway_steps")
                break
        out_counts.append(frame_out)
        active_frames = active_frames + clock.active_pairs()
        for k, layer in enumerate(layers):
            fired = clock.fired_frame.get(id(layer))
            layer_active[k].append(fired if fired is not None else
                                   torch.zeros(bsz, layer.size, dtype=torch.bool, device=dev))
    first = first_spikes(fired_h, step_h, emitted_h, frame_start, (bsz, out_layer.size), dtype, dev)
    keys = [id(m_) for m_ in layers]
    counts = [clock.spike_counts.get(k, torch.zeros(bsz, m_.size, dtype=dtype, device=dev))
              for k, m_ in zip(keys, layers)]
    last = [clock.last_state.get(k) for k in keys]
    v_final = torch.cat([s.v if s is not None else torch.zeros(bsz, m_.size, dtype=dtype, device=dev)
                         for s, m_ in zip(last, layers)], 1)
    unreleased = sum((s.p.detach().sum(1) for s in last if s is not None), torch.zeros(bsz, dtype=dtype, device=dev))
    if scheduled:
        unreleased = unreleased + p_in.sum(1)
    return LayerRun(
        out_counts=torch.stack(out_counts, 1) if out_counts else torch.zeros(bsz, 0, out_layer.size, device=dev),
        spike_counts=torch.cat(counts, 1),
        v_final=v_final,
        synaptic_operations=clock.synops,
        steps=steps,
        unreleased=unreleased,
        first_out=first.first_out,
        first_spike=first.first_spike,
        spikes_before=first.spikes_before,
        active_neuron_frames=active_frames,
        trace=clock.trace,
        layer_spikes=counts,
        layer_active=[torch.stack(a, 1) if a else torch.zeros(bsz, 0, m_.size, dtype=torch.bool, device=dev)
                      for a, m_ in zip(layer_active, layers)],
        state=RunState(mstate, start + t_frames, steps, clock.pending, p_in, since_in),
    )


# ------------------------------------------------------------------------------ to the chip
_PASS = (torch.nn.Flatten, torch.nn.Identity, torch.nn.Dropout)


def _leaves(model: torch.nn.Module) -> list:
    if not isinstance(model, torch.nn.Sequential):
        raise NetworkError(f"model: to_network maps an (asyncsnn.layers or torch.nn) Sequential of nn.Linear and "
                           f"AsyncLIF layers; got {type(model).__name__} (wrap the layers in a Sequential)")
    out = []
    for m in model:
        out.extend(_leaves(m) if isinstance(m, torch.nn.Sequential) else [m])
    return out


def to_network(model: torch.nn.Module, *, options: Optional[RunOptions] = None, dt: Optional[int] = None) -> Network:
    """The chip network of a Sequential of ``nn.Linear`` (without bias) and :class:`AsyncLIF`
    layers (``nn.Flatten``, ``nn.Identity`` and ``nn.Dropout`` pass through): each AsyncLIF a
    population fed by the Linear before it, the last one (``output=True``) the output. A
    layer's biases become the weights of one more input channel, the bias channel (last), which
    fires once per frame: feed the network :func:`chip_frames`. Each layer's neurons fill cores
    of ``core_size`` in order (``Network.core_of``), as :func:`run` arbitrates them.
    ``options`` and ``dt`` are recorded as what the network was trained for."""
    leaves = _leaves(model)
    layers = [m for m in leaves if isinstance(m, AsyncLIF)]
    out = _output_layer(layers) if layers else None
    if out is None:
        raise NetworkError("model: has no AsyncLIF layer")
    if layers[-1] is not out:
        raise NetworkError("model: the output AsyncLIF (output=True) must be the last layer")
    n_in: Optional[int] = None
    pops, projs, pending_w = [], [], None
    for i, m in enumerate(leaves):
        if isinstance(m, torch.nn.Linear):
            if pending_w is not None:
                raise NetworkError(f"model[{i}]: two Linear layers in a row; put an AsyncLIF between them")
            if m.bias is not None:
                raise NetworkError(f"model[{i}]: nn.Linear has a bias; on the chip a bias arrives once per frame, so it "
                                   "belongs to the neurons: use nn.Linear(..., bias=False) and AsyncLIF(..., bias=True)")
            if n_in is None:
                n_in = m.in_features
            pending_w = m.weight.detach().cpu().numpy().astype(np.float32)
        elif isinstance(m, AsyncLIF):
            if pending_w is None:
                raise NetworkError(f"model[{i}]: AsyncLIF without a Linear layer before it")
            if pending_w.shape[0] != m.size:
                raise NetworkError(f"model[{i}]: AsyncLIF of {m.size} neurons after a Linear of {pending_w.shape[0]} "
                                   "outputs")
            k = len(pops)
            pops.append(Population(m.size, theta=float(m.theta), beta=float(m.beta), reset=m.reset,
                                   refractory=m.refractory, name=f"lif{k}"))
            projs.append(Projection("input" if k == 0 else k - 1, k, pending_w))
            pending_w = None
        elif not isinstance(m, _PASS):
            raise NetworkError(f"model[{i}]: {type(m).__name__} has no chip counterpart here; to_network maps "
                               "nn.Linear, AsyncLIF, nn.Flatten, nn.Identity and nn.Dropout")
    if pending_w is not None:
        raise NetworkError("model: ends with a Linear layer; the last layer must be the output AsyncLIF")
    assert n_in is not None
    bias = _has_bias(layers)
    if bias:
        m_chip = n_in + 1
        first = projs[0].weights
        projs[0] = dataclasses.replace(projs[0], weights=np.concatenate(
            [first, np.zeros((first.shape[0], 1), np.float32)], 1))
        for k, layer in enumerate(layers):
            if layer.bias is None:
                continue
            b = layer.bias.detach().cpu().numpy().astype(np.float32)
            if k == 0:
                projs[0].weights[:, n_in] = b
            else:  # sparse: only the bias channel's column exists (a dense one would train skip weights)
                rows = np.arange(layer.size)
                projs.append(Projection("input", k, rows=rows, cols=np.full(layer.size, n_in), values=b,
                                        shape=(layer.size, m_chip)))
    cores, core_of = 0, []
    for layer in layers:
        idx = np.arange(layer.size) // layer.core_size
        core_of.append(cores + idx)
        cores += int(idx[-1]) + 1
    net = Network(n_in + int(bias), pops, projs, output=len(pops) - 1, core_of=np.concatenate(core_of),
                  run_options=options, dt=dt)
    net.to_native()  # validates
    return net


def chip_frames(model: torch.nn.Module, frames) -> np.ndarray:
    """Frames ``(B, T, M)`` as the chip network of :func:`to_network` takes them: ``uint32`` event
    counts, with the bias channel (one event per frame) appended when the model has biases."""
    a = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if a.ndim != 3:
        raise ValueError(f"frames: expected (batch, frames, channels), got shape {a.shape}")
    if a.size and (not np.all(np.isfinite(a)) or a.min() < 0 or np.any(a != np.round(a))):
        raise ValueError("frames: the chip takes whole, non-negative event counts")
    a = a.astype(np.uint32)
    return append_bias_channel(a) if _has_bias(async_layers(model)) else a
