"""The asynchronous simulator: a batched, differentiable run of the execution model.

:class:`AsyncSimulator` wraps :mod:`asyncsnn.sim.functional`: it holds the network's weights as
one dense ``W[target, source]`` parameter (masked to the network's projections) and runs
frames of input through forward steps with the per-core release limit ``F`` and a scheduler,
exactly as the emulator's `steps` mode does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..network import Network
from ..reference import dense_weights
from . import functional as fn

SCHEDULERS = ("fifo", "random", "momentum", "layered")


@dataclass
class SimResult:
    """Outputs of a run; tensors are batch first."""

    out_counts: torch.Tensor   # (B, T, O) float, differentiable
    spike_counts: torch.Tensor  # (B, N) float, differentiable
    v_final: torch.Tensor       # (B, N)
    synops: torch.Tensor        # (B,)
    steps: torch.Tensor         # (B,) int64
    unreleased: torch.Tensor    # (B,)
    first_out: torch.Tensor     # (B, 2) int64 [frame, step], -1 if none
    trace: Optional[list] = None  # per sample: list of (frame, step, neuron)


class AsyncSimulator(torch.nn.Module):
    """A network ready to run in PyTorch (CPU or GPU)."""

    def __init__(self, network: Network, core_of: Optional[Sequence[int]] = None, *,
                 surrogate: str = "fast_sigmoid", slope: float = 10.0) -> None:
        super().__init__()
        w = dense_weights(network)  # validates the network
        m, n = network.n_inputs, network.n_neurons
        pops = network.populations
        mask = np.zeros_like(w, dtype=bool)
        starts = network.population_starts
        for pr in network.projections:
            t = network._pop_index(pr.target, "target")
            t0, t1 = starts[t], starts[t] + pops[t].size
            if pr.source == "input":
                s0, s1 = 0, m
            else:
                s = network._pop_index(pr.source, "source")
                s0, s1 = m + starts[s], m + starts[s] + pops[s].size
            mask[t0:t1, s0:s1] = True
        if core_of is None:
            core = np.zeros(n, np.int64)
        else:
            core = np.asarray(core_of, np.int64)
            if core.shape != (n,) or (core < 0).any():
                raise ValueError(f"core_of: expected {n} non-negative core indices, got shape {core.shape}")
        n_cores = int(core.max()) + 1 if n else 1
        self.weight = torch.nn.Parameter(torch.tensor(w))
        self.register_buffer("mask", torch.tensor(mask))
        arr = network.neuron_arrays()
        self.register_buffer("theta", torch.tensor(arr.theta))
        self.register_buffer("beta", torch.tensor(arr.beta))
        self.register_buffer("subtract", torch.tensor(arr.subtract))
        self.register_buffer("refractory", torch.tensor(arr.refractory))
        self.register_buffer("has_out", torch.tensor(arr.has_out))
        self.register_buffer("group", torch.tensor(np.concatenate([np.full(m, n_cores), core])))
        layer = np.concatenate([np.zeros(m, np.int64), arr.population + 1])
        self.register_buffer("layer", torch.tensor(layer))
        o = network.output_index
        self.out_slice = slice(starts[o], starts[o] + pops[o].size)
        self.n_inputs, self.n_neurons, self.n_cores = m, n, n_cores
        self.surrogate, self.slope = surrogate, slope

    def params(self) -> fn.Params:
        return fn.Params(self.theta, self.beta, self.subtract, self.refractory, self.has_out, self.group,
                         self.layer, self.n_inputs, self.n_cores)

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
        trace: bool = False,
    ) -> SimResult:
        """Run input frames ``(B, T, n_inputs)`` of event counts."""
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: {scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
        if input_mode not in ("all_at_once", "scheduled"):
            raise ValueError(f"input_mode: {input_mode!r}; allowed: all_at_once, scheduled")
        if frames.ndim != 3 or frames.shape[2] != self.n_inputs:
            raise ValueError(f"frames: expected (batch, frames, {self.n_inputs}), got {tuple(frames.shape)}")
        if F is not None and F < 1:
            raise ValueError(f"F: {F} is outside 1.. (or None)")
        dev, dtype = self.weight.device, self.weight.dtype
        frames = frames.to(device=dev, dtype=dtype)
        bsz, t_frames, m = frames.shape
        params = self.params()
        weight = self.weight * self.mask
        fanout = (weight.detach() != 0).sum(dim=0).to(dtype)
        big = torch.iinfo(torch.int64).max // 4
        f_limit = torch.full((self.n_cores + 1,), big if F is None else int(F), dtype=torch.int64, device=dev)
        if input_mode == "all_at_once":
            f_limit[self.n_cores] = big
        cap = big if max_steps is None else int(max_steps)
        state = fn.initial_state(bsz, params, dtype, dev)
        sample = torch.arange(bsz, device=dev, dtype=torch.int64) + int(sample_offset)
        out_counts, spike_counts = [], torch.zeros(bsz, self.n_neurons, dtype=dtype, device=dev)
        synops = torch.zeros(bsz, dtype=dtype, device=dev)
        steps = torch.zeros(bsz, dtype=torch.int64, device=dev)
        first_out = torch.full((bsz, 2), -1, dtype=torch.int64, device=dev)
        traces: Optional[list] = [[] for _ in range(bsz)] if trace else None
        for f in range(t_frames):
            x = frames[:, f]
            v = state.v * params.beta
            p_in = state.p[:, :m]
            newly = (x > 0) & (p_in.detach() == 0)
            since = state.since.clone()
            since[:, :m] = torch.where(newly, torch.full_like(since[:, :m], f << 32), since[:, :m])
            p = torch.cat([p_in + x, state.p[:, m:]], dim=1)
            state = fn.State(v, p, since, state.over, torch.zeros_like(state.refr))
            k = torch.zeros(bsz, dtype=torch.int64, device=dev)
            frame_out = torch.zeros(bsz, self.out_slice.stop - self.out_slice.start, dtype=dtype, device=dev)
            active = (state.p.detach() > 0).any(dim=1) & (k < cap)
            while bool(active.any()):
                released = fn.select(state, params, scheduler, f_limit, seed, sample, f, k)
                since_now = (f << 32) | k
                res = fn.step(state, params, weight, fanout, released, active, since_now, self.surrogate,
                              self.slope)
                state = res.state
                synops = synops + res.synops
                spike_counts = spike_counts + res.spikes
                out_spk = res.spikes[:, self.out_slice]
                frame_out = frame_out + out_spk
                fired_out = (out_spk.detach() > 0).any(dim=1) & (first_out[:, 0] < 0)
                first_out = torch.where(fired_out[:, None], torch.stack([torch.full_like(k, f), k], 1), first_out)
                if traces is not None:
                    for b, n in (res.spikes.detach() > 0).nonzero().tolist():
                        traces[b].append((f, int(k[b]), n))
                k = k + active.to(torch.int64)
                steps = steps + active.to(torch.int64)
                active = (state.p.detach() > 0).any(dim=1) & (k < cap)
            out_counts.append(frame_out)
        return SimResult(
            out_counts=torch.stack(out_counts, dim=1) if out_counts else torch.zeros(bsz, 0, 0),
            spike_counts=spike_counts,
            v_final=state.v,
            synops=synops,
            steps=steps,
            unreleased=state.p.detach().sum(dim=1),
            first_out=first_out,
            trace=traces,
        )
