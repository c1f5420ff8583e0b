"""A plain numpy implementation of the execution model, for checking and as a baseline.

It follows DESIGN's reference model literally, with a dense weight matrix and a dense
product at every forward step: slow, simple, and independent of the Rust emulator. The tests
use it as an oracle; ``benchmarks/`` uses it as the naive baseline.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import stochastic
from .errors import RunawayError
from .hashing import DRAW_STEP, key
from .network import Network
from .options import RunOptions


def simulate(net: Network, frames: np.ndarray, options: Optional[RunOptions] = None, *,
             core_of: Optional[Sequence[int]] = None, **run_options: Any) -> dict:
    """Run one sample (``frames``: ``(frames, channels)`` counts) through the reference model
    with ``options`` (or the defaults changed by ``run_options`` keywords); the sample's hash
    index is ``options.sample_offset``, as for the first sample of a batch. ``steps`` mode only
    (``options.mode`` is not read).

    Stochastic and integrator populations follow the same model: a synaptic trace takes their
    input, and once the frame has settled they draw in population order, each draw the fire
    phase of a step of its own (see :class:`asyncsnn.Population`)."""
    opts = RunOptions.of(options, **run_options)
    scheduler, seed, sample, input_mode = opts.scheduler, opts.seed, opts.sample_offset, opts.input_mode
    step_limit, limit_is_error = opts.step_limit
    frames = np.asarray(frames)
    m, n = net.n_inputs, net.n_neurons
    s_total = m + n
    w = net.dense_weights()
    pops = net.populations
    arr = net.neuron_arrays()
    pop_of, theta, beta, subtract = arr.population, arr.theta, arr.beta, arr.subtract
    refr_pop, has_out = arr.refractory, arr.has_out
    starts = net.population_starts
    has_trace = np.concatenate([np.full(p.size, p.kind != "lif") for p in pops])
    alpha = np.concatenate([np.full(p.size, p.alpha, np.float32) for p in pops])
    draws = [(starts[i], p.size, p.kind == "stochastic") for i, p in enumerate(pops) if p.kind != "lif"]
    core = np.zeros(n, np.int64) if core_of is None else np.asarray(core_of, np.int64)
    group = np.concatenate([np.full(m, -1), core])  # -1: the input port
    layer = np.concatenate([np.zeros(m), pop_of + 1])
    o = net.output_index
    o0, osz = starts[o], pops[o].size
    f_lim = np.iinfo(np.int64).max if opts.F is None else int(opts.F)

    v = np.zeros(n, np.float32)
    cur = np.zeros(n, np.float32)
    out_potential = np.zeros((len(frames), osz), np.float64)
    p = np.zeros(s_total, np.int64)
    since = np.zeros(s_total, np.int64)
    over = np.zeros(s_total, np.float64)
    trace, out_counts = [], np.zeros((len(frames), osz), np.int64)
    synops = steps = 0
    first_out = None
    def emit(f: int, k: int, idx: np.ndarray, ov: np.ndarray) -> None:
        nonlocal first_out
        for nn, oo in zip(idx, ov):
            trace.append((f, k, int(nn)))
            if has_out[nn]:
                src = m + nn
                if p[src] == 0:
                    since[src] = (f << 32) | k
                p[src] += 1
                over[src] = float(oo)
            if o0 <= nn < o0 + osz:
                out_counts[f, nn - o0] += 1
                if first_out is None:
                    first_out = (f, k)

    for f, fr in enumerate(frames):
        v = np.where(has_trace, v, v * beta).astype(np.float32)
        cur = np.where(has_trace, cur * alpha, cur).astype(np.float32)
        refr = np.zeros(n, bool)
        new = (fr > 0) & (p[:m] == 0)
        since[:m][new] = f << 32
        p[:m] += fr.astype(np.int64)
        k = 0
        next_draw = 0
        while True:
            if p.any() and k >= step_limit and limit_is_error:
                raise RunawayError(f"runaway activity: frame {f} did not settle within runaway_steps = {step_limit} "
                                   "forward steps; set max_steps to cap the steps per frame")
            if not p.any() or k >= step_limit:
                if next_draw == len(draws):
                    break
                d0, dn, fires = draws[next_draw]
                sl = slice(d0, d0 + dn)
                v[sl] = ((v[sl] * beta[sl]).astype(np.float32) + cur[sl]).astype(np.float32)
                if fires:
                    z = (v[sl] - theta[sl]).astype(np.float32)
                    keys = key(seed, sample, f, DRAW_STEP, m + np.arange(d0, d0 + dn))
                    hit = stochastic.fires(keys, stochastic.index_f32(z))
                    emit(f, k, np.nonzero(hit)[0] + d0, z[hit])
                next_draw += 1
                k += 1
                steps += 1
                continue
            pend = np.nonzero(p)[0]
            rel = []
            for g in np.unique(group[pend]):
                cand = pend[group[pend] == g]
                if g == -1 and input_mode == "all_at_once":
                    rel.append(cand)
                    continue
                if len(cand) <= f_lim:
                    rel.append(cand)
                    continue
                hkey = key(seed, sample, f, k, cand)
                if scheduler == "fifo":
                    primary = since[cand].astype(np.float64)
                elif scheduler == "random":
                    primary = np.zeros(len(cand))
                elif scheduler == "momentum":
                    primary = np.where(cand >= m, -over[cand], 0.0)
                elif scheduler == "layered":
                    primary = layer[cand]
                else:
                    raise ValueError(f"scheduler {scheduler!r}")
                order = np.lexsort((cand, hkey, primary))
                rel.append(cand[order[:f_lim]])
            r = np.sort(np.concatenate(rel))
            counts = p[r].astype(np.float32)
            wr = w[:, r]
            synops += int(np.count_nonzero(wr))
            current = wr @ counts
            p[r] = 0
            cur = np.where(has_trace, (cur + current).astype(np.float32), cur).astype(np.float32)
            v = np.where(refr | has_trace, v, (v + current).astype(np.float32)).astype(np.float32)
            fire = ~refr & ~has_trace & (v > theta)
            idx = np.nonzero(fire)[0]
            ov = (v[idx] - theta[idx]).astype(np.float32)
            v[idx] = np.where(subtract[idx], ov, np.float32(0))
            refr[idx] |= refr_pop[idx]
            emit(f, k, idx, ov)
            k += 1
            steps += 1
        out_potential[f] = v[o0:o0 + osz]
    return {
        "out_potential": out_potential,
        "trace": trace,
        "out_counts": out_counts,
        "synaptic_operations": synops,
        "steps": steps,
        "first_out": first_out,
        "unreleased": int(p.sum()),
        "v_final": v.astype(np.float64),
    }
