"""Helpers shared by the tests: golden cases as asyncsnn objects, small random networks."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import asyncsnn
from asyncsnn import Network, Population, Projection
from asyncsnn.sim import graphs


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


# Operations that make the host wait for the device: a scalar read (``item``, ``bool``, ``int``), or
# a result whose shape depends on the data. Inside a CUDA graph capture they fail; outside one, in
# a step loop, each one stalls the GPU.
_SYNCING = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
            torch.ops.aten.equal.default, torch.ops.aten.nonzero.default, torch.ops.aten.masked_select.default,
            torch.ops.aten.masked_scatter.default, torch.ops.aten._unique2.default,
            torch.ops.aten.unique_consecutive.default, torch.ops.aten.unique_dim.default,
            torch.ops.aten.repeat_interleave.Tensor, torch.ops.aten.bincount.default}


class HostSyncError(AssertionError):
    """A function meant to run without host synchronisation synchronised."""


class NoHostSync(TorchDispatchMode):
    """Refuse, while active, every operation that makes the host wait for the device
    (:data:`_SYNCING`, and indexing with a boolean mask), naming it. Works on the CPU, where
    nothing would otherwise show that code written for a CUDA graph would stall or break one."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        bad = func in _SYNCING
        if func in (torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default, torch.ops.aten.index_put_.default):
            bad = any(i is not None and i.dtype == torch.bool for i in args[1])
        if bad:
            raise HostSyncError(f"{func} synchronises with the host")
        return func(*args, **(kwargs or {}))


class EmulatedGraphs(graphs.EmulatedGraphs):
    """:class:`asyncsnn.sim.graphs.EmulatedGraphs` (graph replay emulated on the CPU) that, as a
    capture does, refuses host synchronisation in the function (:class:`NoHostSync`;
    ``refuse_sync=False`` for ``torch.compile``d functions, which dynamo cannot trace under a
    dispatch mode, and whose ``fullgraph=True`` refuses the same operations)."""

    def __init__(self, refuse_sync: bool = True) -> None:
        super().__init__()
        self._mode = NoHostSync if refuse_sync else contextlib.nullcontext

    def _run(self, fn, args):
        with self._mode():
            return fn(*args)


def markdown_rows(text: str) -> list[dict]:
    """The rows of the first Markdown table printed in ``text``, as dicts by header (cells
    stripped of their padding)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    head, body = cells[0], [c for c in cells[2:] if len(c) == len(cells[0])]
    return [dict(zip(head, c)) for c in body]
