"""Helpers shared by the tests: golden cases as asyncsnn objects, small random networks."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils import _pytree as pytree

import asyncsnn
from asyncsnn import Network, Population, Projection
from asyncsnn.sim.graphs import GraphCache


# Device-parametrized properties also run on a GPU where there is one.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def golden_network(case: dict) -> Network:
    pops = [Population(p["size"], p["theta"], p["beta"], p["reset"], p["refractory"]) for p in case["populations"]]
    projs = [Projection(pr["source"], pr["target"], np.array(pr["weight"], np.float32)) for pr in case["projections"]]
    return Network(case["n_inputs"], pops, projs, output=case["output"])


def golden_chip(case: dict) -> asyncsnn.Chip:
    n_cores = 1 if case["core_of"] is None else max(case["core_of"]) + 1
    return asyncsnn.Chip.preset("ideal", mesh_width=n_cores)


def golden_kwargs(case: dict) -> dict:
    return dict(scheduler=case["scheduler"], F=case["F"], seed=case["seed"], sample_offset=case["sample"],
                input_mode=case["input_mode"])


def trace_rows(res, sample: int = 0) -> list[list[int]]:
    t = res.trace[res.trace[:, 0] == sample]
    return [[int(r[1]), int(r[2]), int(r[4])] for r in t]


class EmulatedGraphs(GraphCache):
    """:class:`~asyncsnn.sim.graphs.GraphCache` with CUDA graph replay emulated on the CPU: a
    replay recomputes the function on the static inputs and overwrites the static outputs in
    place, as a graph does. Runs the graphed code path (chunked steps, static buffers, copies
    in and out) where there is no GPU."""

    def _capture(self, fn, args):
        out = fn(*args)

        def replay():
            for old, new in zip(pytree.tree_leaves(out), pytree.tree_leaves(fn(*args))):
                if old is not None:
                    old.copy_(new)

        return replay, out
