"""Reusable hypothesis strategies: random networks on an exact weight grid, chips, inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import Network, Population, Projection

GRID = 64  # weights are multiples of 1/64: f32 sums stay exact
BETAS = [0.0, 0.25, 0.5, 0.75, 1.0]


@st.composite
def grid_matrix(draw, rows: int, cols: int, lo: int = -48, hi: int = 96, density: float = 0.7, fine: int = 1):
    """Weights in ``[lo, hi) / 64`` on the grid ``1 / (64 fine)``."""
    seed = draw(st.integers(0, 2**32 - 1))
    r = np.random.default_rng(seed)
    w = r.integers(lo * fine, hi * fine, size=(rows, cols)) / (GRID * fine)
    w[r.random((rows, cols)) > density] = 0.0
    return w.astype(np.float32)


@st.composite
def populations(draw, n: int, max_size: int = 6, kinds: bool = False):
    """``kinds``: populations may also be stochastic or integrator neurons (alpha on the grid)."""
    pops = []
    for i in range(n):
        kind = draw(st.sampled_from(["lif", "stochastic", "integrator"])) if kinds else "lif"
        pops.append(Population(
            size=draw(st.integers(1, max_size)),
            theta=draw(st.sampled_from([0.5, 1.0, 1.5])),
            beta=draw(st.sampled_from(BETAS)),
            reset=draw(st.sampled_from(["zero", "subtract"])),
            refractory=draw(st.booleans()),
            name=f"p{i}",
            kind=kind,
            alpha=draw(st.sampled_from(BETAS)) if kind != "lif" else 0.0,
        ))
    return pops


@st.composite
def networks(draw, max_inputs: int = 6, max_layers: int = 3, recurrent: bool = True, skip: bool = True,
             sparse: bool = True, min_layers: int = 1, max_size: int = 6, kinds: bool = False, fine: int = 1):
    """A random directed graph: a feed-forward chain plus optional recurrent and skip
    projections, dense or sparse weights on the exact grid (``1 / (64 fine)``; sums of a few
    frames stay exact in f32 up to ``fine = 64``). ``kinds``: any mix of LIF, stochastic and
    integrator populations."""
    n_in = draw(st.integers(1, max_inputs))
    n_layers = draw(st.integers(min_layers, max_layers))
    pops = draw(populations(n_layers, max_size=max_size, kinds=kinds))
    projs = []
    edges = [("input", 0)] + [(i - 1, i) for i in range(1, n_layers)]
    if recurrent:
        edges += [(i, i) for i in range(n_layers) if draw(st.booleans())]
    if skip and n_layers > 2 and draw(st.booleans()):
        edges.append(("input", n_layers - 1))
    if n_layers > 1 and recurrent and draw(st.booleans()):
        edges.append((n_layers - 1, 0))  # feedback from the output layer
    for src, tgt in edges:
        n_src = n_in if src == "input" else pops[src].size
        w = draw(grid_matrix(pops[tgt].size, n_src, lo=-40 if src == tgt else -48, hi=60 if src == tgt else 96,
                             fine=fine))
        if sparse and draw(st.booleans()):
            r, c = np.nonzero(w)
            projs.append(Projection(src, tgt, rows=r, cols=c, values=w[r, c], shape=w.shape))
        else:
            projs.append(Projection(src, tgt, w))
    return Network(n_in, pops, projs, output=n_layers - 1)


@st.composite
def frames(draw, n_inputs: int, max_frames: int = 4, max_count: int = 2):
    t = draw(st.integers(1, max_frames))
    seed = draw(st.integers(0, 2**32 - 1))
    r = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.2, 0.5, 0.9]))
    x = r.integers(1, max_count + 1, size=(t, n_inputs)) * (r.random((t, n_inputs)) < density)
    return x.astype(np.uint32)


schedulers = st.sampled_from(list(asyncsnn.SCHEDULERS))
f_values = st.one_of(st.none(), st.integers(1, 4))
# Networks and limits under which the order of release matters often: hidden populations that
# queue spikes, several of them per core, and a small F (used by the agreement properties).
contended_networks = networks(min_layers=2, max_layers=4, max_size=8)
small_f = st.one_of(st.integers(1, 2), st.none(), st.integers(3, 4))
seeds = st.integers(0, 2**32 - 1)


@st.composite
def mappings(draw, n_neurons: int, max_cores: int = 4):
    n_cores = draw(st.integers(1, max_cores))
    core_of = draw(st.lists(st.integers(0, n_cores - 1), min_size=n_neurons, max_size=n_neurons))
    return n_cores, core_of


@st.composite
def fixed_formats(draw, max_potential_bits: int = 16):
    """Fixed-point formats the strategy networks fit (every threshold quantizes into range);
    small potential widths make saturation common."""
    frac = draw(st.integers(0, 7))
    pbits = frac + draw(st.sampled_from([3, 3, 4, 5, max(3, max_potential_bits - frac)]))
    wbits = draw(st.integers(2, min(pbits, 12)))
    return {"kind": "fixed", "weight_bits": wbits, "potential_bits": pbits, "frac_bits": frac,
            "leak_bits": draw(st.integers(1, 10))}


# Networks of every neuron kind (LIF, stochastic, integrator), and networks of stochastic
# populations only (what an SPSN deployment is), the output stochastic or an integrator.
# A grid finer than the firing table's 1/256, so that the table index's rounding matters.
mixed_networks = networks(min_layers=1, max_layers=4, max_size=6, kinds=True, fine=16)


@st.composite
def stochastic_networks(draw):
    net = draw(networks(min_layers=1, max_layers=4, max_size=6, fine=16))
    last = len(net.populations) - 1
    pops = [Population(p.size, p.theta, p.beta, name=p.name, alpha=draw(st.sampled_from(BETAS)),
                       kind="integrator" if i == last and draw(st.booleans()) else "stochastic")
            for i, p in enumerate(net.populations)]
    return Network(net.n_inputs, pops, net.projections, output=net.output)
