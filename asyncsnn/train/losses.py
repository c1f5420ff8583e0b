"""Readouts, losses and regularisers (pure functions of a :class:`~asyncsnn.sim.SimResult`).

Readouts turn a run into class logits:

* ``count``: output spike counts summed over frames (spike-count cross-entropy);
* ``first_spike``: ``-first_time / tau``, where ``first_time`` is the differentiable step of
  each output neuron's first spike (earlier is more confident): trains for early decisions;
* ``membrane``: ``v_final + theta * count`` of the output neurons, the potential they would
  hold without resets (a smooth readout that still has a gradient when nothing fires; it is
  computed from quantities the emulator returns, so it evaluates the same on the chip).
"""

from __future__ import annotations

from typing import Optional

import torch

READOUTS = ("count", "first_spike", "membrane")


def logits(result, readout: str, *, theta_out: Optional[torch.Tensor] = None, out_slice: Optional[slice] = None,
           tau: float = 10.0) -> torch.Tensor:
    """Class scores ``(B, O)`` of a run for ``readout`` (see the module docstring)."""
    counts = result.out_counts.sum(1)
    if readout == "count":
        return counts
    if readout == "first_spike":
        if result.first_time is None:
            raise ValueError("readout: first_spike needs the run's first_time (run with first_time=True)")
        return -result.first_time / float(tau)
    if readout == "membrane":
        if theta_out is None or out_slice is None:
            raise ValueError("readout: membrane needs theta_out and out_slice")
        return result.v_final[:, out_slice] + theta_out * counts
    raise ValueError(f"readout: {readout!r}; allowed: {', '.join(READOUTS)}")


def spike_penalty(spike_counts: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Mean spikes per neuron and frame (the spike density): added with a weight to the loss,
    it trades accuracy for fewer spikes."""
    return spike_counts.sum(1).mean() / max(spike_counts.shape[1], 1) / max(n_frames, 1)


def input_dropout(frames: torch.Tensor, p: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Drop each input event independently with probability ``p`` (counts thin binomially;
    seeded by ``generator``, drawn on the CPU so that every device drops the same events)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"input_dropout: {p} is outside [0, 1)")
    if p == 0.0:
        return frames
    counts = frames.detach().round().clamp(min=0).cpu()
    out = torch.zeros_like(counts)
    n_max = int(counts.max().item()) if counts.numel() else 0
    for k in range(n_max):
        u = torch.rand(counts.shape, generator=generator)
        out = out + ((counts > k) & (u >= p)).to(counts.dtype)
    return out.to(frames.device)
