"""The layered baseline: the same network run layer-synchronously, for BPTT over frames.

Per frame ``f`` the populations update once each, in their order ``i = 0, 1, ...``:

    v_i <- beta_i v_i + W_in,i x_f + sum_{j < i} W_ij s_j(f) + sum_{j >= i} W_ij s_j(f - 1)
    s_i(f) = H(v_i - theta_i);  v_i <- v_i (1 - s_i)  (zero)  or  v_i - theta_i s_i  (subtract)

so feed-forward projections see this frame's spikes and recurrent (backward or self)
projections see the previous frame's. This is what layer-synchronous frameworks simulate, and
what the asynchronous model reduces to with ``F = infinity``, the ``layered`` scheduler and
refractory neurons with the *zero* reset on a feed-forward chain (a tested property). With the
subtract reset it does not, as this counter-example shows (2 inputs, 2 hidden with weights ``[[2, 0], [0, 2]]``, 1 output with weights
``[[3, -2.5]]``, theta 1, beta 1, refractory, subtract reset, frames ``[1, 0]``, ``[0, 1]``: the
asynchronous engines count ``[1, 1]`` output spikes, this update ``[1, 0]``). Each population update counts
as one forward step, so latencies are comparable in kind with the asynchronous ones.
"""

from __future__ import annotations

import torch

from . import functional as fn
from .simulator import AsyncSimulator, SimResult


def layered_run(sim: AsyncSimulator, frames: torch.Tensor, *, first_time: bool = False) -> SimResult:
    """Run ``frames`` ``(B, T, n_inputs)`` layer-synchronously with ``sim``'s weights and
    neurons (differentiable: backprop through time over frames)."""
    if frames.ndim != 3 or frames.shape[2] != sim.n_inputs:
        raise ValueError(f"frames: expected (batch, frames, {sim.n_inputs}), got {tuple(frames.shape)}")
    dev, dtype = sim.theta.device, sim.theta.dtype
    frames = torch.as_tensor(frames).to(device=dev, dtype=dtype)
    bsz, t_frames, _ = frames.shape
    net = sim.network
    starts = net.population_starts
    bounds = [(s, s + p.size) for s, p in zip(starts, net.populations)]
    n_pops = len(bounds)
    w_in, w_rec = sim.weight_matrices()
    fanout_in = (w_in.detach() != 0).sum(0).to(dtype)
    fanout_rec = (w_rec.detach() != 0).sum(0).to(dtype)
    i_in = frames @ w_in.t()  # (B, T, N) all frames at once
    syn = (frames > 0).to(dtype) @ fanout_in  # (B, T)
    o0, o1 = sim.out_slice.start, sim.out_slice.stop
    n_out = o1 - o0
    out_pop = net.output_index
    v = [torch.zeros(bsz, b - a, dtype=dtype, device=dev) for a, b in bounds]
    s_prev = [torch.zeros_like(x) for x in v]
    out_counts, totals = [], []
    synops = syn.sum(1)
    first_spike = torch.full((bsz, n_out), -1, dtype=torch.int64, device=dev)
    spikes_before = torch.full((bsz, n_out), -1, dtype=dtype, device=dev)
    emitted = torch.zeros(bsz, dtype=dtype, device=dev)
    alive = torch.ones(bsz, n_out, dtype=dtype, device=dev)
    t_first = torch.zeros(bsz, n_out, dtype=dtype, device=dev)
    for f in range(t_frames):
        s_now = list(s_prev)
        for i, (a, b) in enumerate(bounds):
            src = torch.cat(s_now, 1)  # j < i already updated this frame, j >= i from the last
            cur = i_in[:, f, a:b] + src @ w_rec[a:b].t()
            vi = sim.beta[a:b] * v[i] + cur
            theta = sim.theta[a:b]
            s = fn.spike(vi - theta, sim.surrogate)
            v[i] = torch.where(sim.subtract[a:b], vi - s * theta, vi * (1 - s))
            s_now[i] = s
            g = f * n_pops + i
            if i == out_pop:
                fired = s.detach() > 0
                new = fired & (first_spike < 0)
                first_spike = torch.where(new, torch.full_like(first_spike, g), first_spike)
                spikes_before = torch.where(new, emitted[:, None], spikes_before)
                t_first = t_first + alive * s * g
                alive = alive * (1 - s)
            emitted = emitted + s.detach().sum(1)
        s_all = torch.cat(s_now, 1)
        synops = synops + s_all.detach() @ fanout_rec
        totals.append(s_all)
        out_counts.append(s_all[:, o0:o1])
        s_prev = s_now
    spike_counts = torch.stack(totals, 1).sum(1) if totals else torch.zeros(bsz, sim.n_neurons, device=dev)
    n_steps = torch.full((bsz,), t_frames * n_pops, dtype=torch.int64, device=dev)
    first_out = torch.full((bsz, 2), -1, dtype=torch.int64, device=dev)
    g0, _, has = fn.first_output(first_spike)
    first_out = torch.where(has[:, None], torch.stack([g0 // n_pops, g0 % n_pops], 1), first_out)
    return SimResult(
        out_counts=torch.stack(out_counts, 1) if out_counts else torch.zeros(bsz, 0, n_out, device=dev),
        spike_counts=spike_counts,
        v_final=torch.cat(v, 1),
        synaptic_operations=synops,
        steps=n_steps,
        unreleased=torch.zeros(bsz, dtype=dtype, device=dev),
        first_out=first_out,
        first_spike=first_spike,
        spikes_before=spikes_before,
        active_neuron_frames=spike_counts.detach().sum(1).to(torch.int64),  # at most one spike per frame
        first_time=(t_first + alive * (t_frames * n_pops)) if first_time else None,
    )
