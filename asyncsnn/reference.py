"""A plain numpy implementation of the execution model, for checking and as a baseline.

It follows DESIGN's reference model literally, with a dense weight matrix and a dense
product at every forward step: slow, simple, and independent of the Rust emulator. The tests
use it as an oracle; ``benchmarks/`` uses it as the naive baseline.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from . import stochastic
from .network import Network

_M32 = np.uint64(0xFFFFFFFF)
_C = np.uint64(0x45D9F3B)
_S16 = np.uint64(16)


def mix(x):
    """The hash's mixer, vectorised over numpy ``uint64`` arrays (or Python ints)."""
    x = np.asarray(x, dtype=np.uint64) & _M32
    x = (((x >> _S16) ^ x) * _C) & _M32
    x = (((x >> _S16) ^ x) * _C) & _M32
    return (x >> _S16) ^ x


def hash_key(seed, sample, frame, step, source):
    """``key(seed, sample, frame, step, source)``, vectorised over ``source``."""
    u = np.uint64
    h = mix(u(seed))
    h = mix(h ^ u(sample))
    h = mix(h ^ u(frame))
    h = mix(h ^ u(step))
    return mix(h ^ np.asarray(source, dtype=np.uint64))


def dense_weights(net: Network) -> np.ndarray:
    """``W[target neuron, source]`` with sources numbered inputs first."""
    native = net.to_native()  # validates
    del native
    m, n = net.n_inputs, net.n_neurons
    starts = net.population_starts
    w = np.zeros((n, m + n), dtype=np.float32)
    for j, pr in enumerate(net.projections):
        t0 = starts[net._pop_index(pr.target, "target")]
        s0 = 0 if pr.source == "input" else m + starts[net._pop_index(pr.source, "source")]
        if pr.kind == "dense":
            a = np.asarray(pr.weights, dtype=np.float32)
            w[t0:t0 + a.shape[0], s0:s0 + a.shape[1]] += a
        else:
            rows, cols, vals = pr.triples()
            np.add.at(w, (t0 + np.asarray(rows), s0 + np.asarray(cols)), np.asarray(vals, np.float32))
    return w


def simulate(
    net: Network,
    frames: np.ndarray,
    *,
    scheduler: str = "fifo",
    F: Optional[int] = None,
    core_of: Optional[Sequence[int]] = None,
    seed: int = 0,
    sample: int = 0,
    input_mode: str = "all_at_once",
    max_steps: Optional[int] = None,
) -> dict:
    """Run one sample (``frames``: ``(frames, channels)`` counts) through the reference model.

    Stochastic and integrator populations follow the same model: a synaptic trace takes their
    input, and once the frame has settled they draw in population order, each draw the fire
    phase of a step of its own (see :class:`asyncsnn.Population`)."""
    frames = np.asarray(frames)
    m, n = net.n_inputs, net.n_neurons
    s_total = m + n
    w = dense_weights(net)
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
    f_lim = np.iinfo(np.int64).max if F is None else int(F)

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
            if not p.any() or (max_steps is not None and k >= max_steps):
                if next_draw == len(draws):
                    break
                d0, dn, fires = draws[next_draw]
                sl = slice(d0, d0 + dn)
                v[sl] = ((v[sl] * beta[sl]).astype(np.float32) + cur[sl]).astype(np.float32)
                if fires:
                    z = (v[sl] - theta[sl]).astype(np.float32)
                    keys = hash_key(seed, sample, f, stochastic.DRAW_STEP, m + np.arange(d0, d0 + dn))
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
                key = hash_key(seed, sample, f, k, cand).astype(np.int64)
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
                order = np.lexsort((cand, key, primary))
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
        "synops": synops,
        "steps": steps,
        "first_out": first_out,
        "unreleased": int(p.sum()),
        "v_final": v.astype(np.float64),
    }
