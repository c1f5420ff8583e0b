"""The clock of a layered model's asynchronous run: where the run is (frame, step), which
samples take part, the hash keys of the step, and what the layers report back.

:func:`asyncsnn.layers.run` makes one and passes it to every call of the model; the
:class:`~asyncsnn.layers.AsyncLIF` layers read it and report to it. A model never makes one
itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional

import torch

from .. import hashing
from ..options import RunOptions

if TYPE_CHECKING:
    from .functional import LIFState


class Slot(NamedTuple):
    """Where a layer sits in the model's network: ``index`` (its population), ``start`` (its
    first neuron) and ``source`` (the hash source id of its first neuron: the chip's input
    channels come first)."""

    index: int
    start: int
    source: int


class Clock:
    """The run's position and bookkeeping, shared by the layers of one model for one run.

    Read by the layers: ``frame``, ``at`` (``frame << 32 | step``), ``active`` ``(B,)`` (samples
    with something pending: the others' states must not change), ``bias`` ``(B,)`` (events of
    the bias channel released at this step, or ``None``), ``scheduler``, ``limit`` (``F``) and
    :meth:`keys`. Written by them: :meth:`report` (spikes and state after a step),
    :meth:`count` and :meth:`count_linear` (synaptic operations)."""

    def __init__(self, layers: list, n_inputs: int, options: RunOptions, batch: int, device, dtype,
                 start_frame: int = 0) -> None:
        self.options = options
        self.scheduler, self.limit = options.scheduler, options.F
        self.batch, self.device, self.dtype = int(batch), device, dtype
        self.start_frame = self.frame = int(start_frame)
        self.step = 0
        self._slots: dict[int, Slot] = {}
        start = 0
        for i, layer in enumerate(layers):
            self._slots[id(layer)] = Slot(i, start, n_inputs + start)
            start += layer.size
        b = dict(device=device)
        self.active = torch.zeros(batch, dtype=torch.bool, **b)
        self.bias: Optional[torch.Tensor] = None
        self.pending = torch.zeros(batch, dtype=torch.bool, **b)
        self.synops = torch.zeros(batch, dtype=dtype, **b)
        self.spike_counts: dict[int, torch.Tensor] = {}
        self.last_state: dict[int, "LIFState"] = {}
        self.step_spikes = torch.zeros(batch, dtype=dtype, **b)
        self.out_spikes: Optional[torch.Tensor] = None
        self.fired_frame: dict[int, torch.Tensor] = {}
        self.trace: Optional[list] = [[] for _ in range(batch)] if options.trace else None
        self._sample = torch.arange(batch, dtype=torch.int64, **b) + options.sample_offset
        self._frame_prefix: Optional[torch.Tensor] = None
        self._step_prefix: Optional[torch.Tensor] = None
        self._sources = torch.arange(max(start, n_inputs, 1), dtype=torch.int64, **b)

    # ------------------------------------------------------------------ read by the layers
    @property
    def at(self) -> int:
        return (self.frame << 32) | self.step

    def slot(self, layer) -> Slot:
        try:
            return self._slots[id(layer)]
        except KeyError:
            raise ValueError(f"layer {layer!r} is not one of the model's AsyncLIF layers (the model given to "
                             "asyncsnn.layers.run finds them through model.modules())") from None

    def keys(self, source: int, n: int) -> torch.Tensor:
        """The hash keys ``(B, n)`` of sources ``source .. source + n - 1`` at this step."""
        if self._step_prefix is None:
            if self._frame_prefix is None:
                self._frame_prefix = hashing.frame_prefix(self.options.seed, self._sample, self.frame)
            self._step_prefix = hashing.step_prefix(self._frame_prefix, self.step)
        return hashing.source_key(self._step_prefix[:, None], self._sources[None, :n] + source)

    # ------------------------------------------------------------------ written by the layers
    def report(self, layer, spikes: torch.Tensor, state: "LIFState") -> None:
        """A layer's spikes ``(B, n)`` and state after this step."""
        key = id(layer)
        self.spike_counts[key] = self.spike_counts[key] + spikes if key in self.spike_counts else spikes
        fired = spikes.detach() > 0
        self.fired_frame[key] = self.fired_frame[key] | fired if key in self.fired_frame else fired
        self.last_state[key] = state
        self.pending = self.pending | (state.p.detach() > 0).any(1)
        self.step_spikes = self.step_spikes + spikes.detach().sum(1).to(self.dtype)
        if layer.output:
            self.out_spikes = spikes if self.out_spikes is None else self.out_spikes + spikes
        if self.trace is not None:
            start = self._slots[key].start
            for b, n in fired.nonzero().tolist():
                self.trace[b].append((self.frame, self.step, start + n))

    def count(self, released: torch.Tensor, fanout: torch.Tensor) -> None:
        """Synaptic operations of sources released at this step: ``released`` ``(B, S)`` (or
        ``(B,)``) counts and each source's number of non-zero weights ``fanout`` ``(S,)``."""
        rel = (released.detach() > 0).to(self.dtype)
        fan = fanout.to(self.dtype)
        self.synops = self.synops + (rel @ fan if rel.ndim == 2 else rel * fan)

    def count_linear(self, released: torch.Tensor, weight: torch.Tensor) -> None:
        """:meth:`count` for a weight matrix ``(targets, sources)`` fed ``released`` ``(B, sources)``."""
        if released.ndim == 2 and weight.ndim == 2 and released.shape[1] == weight.shape[1]:
            self.count(released, (weight.detach() != 0).sum(0))

    # ------------------------------------------------------------------ driven by run()
    def begin_frame(self, frame: int) -> None:
        self.frame, self.step = int(frame), 0
        self._frame_prefix = self._step_prefix = None
        self.fired_frame = {}

    def begin_step(self, step: int, active: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
        self.step, self.active, self.bias = int(step), active, bias
        self._step_prefix = None
        self.pending = torch.zeros_like(self.pending)
        self.step_spikes = torch.zeros_like(self.step_spikes)
        self.out_spikes = None

    def active_pairs(self) -> torch.Tensor:
        """(neuron, frame) pairs with a spike in the frame so far, per sample."""
        total = torch.zeros(self.batch, dtype=torch.int64, device=self.device)
        for fired in self.fired_frame.values():
            total = total + fired.sum(1)
        return total
