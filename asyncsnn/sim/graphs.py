"""Replaying chunks of steps as CUDA graphs.

A forward step of the simulator is some sixty small kernels; on a GPU, launching them from
Python costs far more than running them. :class:`GraphCache` captures a pure tensor function
(a chunk of steps, or its backward) once per static signature as a CUDA graph and then
replays it: one launch for the whole chunk, plus one copy of the inputs into the graph's
static buffers and one copy of its outputs out of them.

The function must be pure (no in-place change of its inputs), free of host synchronisation,
and every shape in it must follow from the shapes of its inputs and from its non-tensor
arguments, which are part of the signature (a different chunk length is a different graph).
:class:`Eager` is the same interface without graphs: what runs on the CPU. :class:`EmulatedGraphs`
runs the graphed code path on the CPU with replay emulated: for tests, and for counting what a
GPU run would do (``benchmarks/graph_plan.py``).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import torch
from torch.utils import _pytree as pytree


class Eager:
    """Call the function directly."""

    def __call__(self, key: Hashable, fn: Callable, *args: Any) -> Any:
        return fn(*args)


def _signature(leaves: list) -> tuple:
    return tuple((tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else x for x in leaves)


class GraphCache:
    """CUDA graphs of pure functions, one per ``(key, signature of the arguments)``; all share
    one memory pool (outputs are copied out right after each replay, so graphs may reuse each
    other's memory)."""

    def __init__(self) -> None:
        self._graphs: dict = {}
        self._pool = None
        self.captures = 0
        self.replays = 0

    def __call__(self, key: Hashable, fn: Callable, *args: Any) -> Any:
        leaves, spec = pytree.tree_flatten(args)
        sig = (key, _signature(leaves))
        entry = self._graphs.get(sig)
        if entry is None:
            static_leaves = [x.clone() if isinstance(x, torch.Tensor) else x for x in leaves]
            replay, out = self._capture(fn, pytree.tree_unflatten(static_leaves, spec))
            out_leaves, out_spec = pytree.tree_flatten(out)
            odd = {type(t).__name__ for t in out_leaves if t is not None and not isinstance(t, torch.Tensor)}
            if odd:
                raise TypeError(f"GraphCache: a graphed function returns tensors or None, not {', '.join(sorted(odd))}")
            self.captures += 1
            entry = self._graphs[sig] = (replay, [x for x in static_leaves if isinstance(x, torch.Tensor)],
                                         out_leaves, out_spec)
        replay, static_in, static_out, out_spec = entry
        src = [x for x in leaves if isinstance(x, torch.Tensor)]
        if src:
            torch._foreach_copy_(static_in, src)
        replay()
        self.replays += 1
        outs = [None if t is None else torch.empty_like(t) for t in static_out]
        pairs = [(o, t) for o, t in zip(outs, static_out) if t is not None]
        if pairs:
            torch._foreach_copy_([o for o, _ in pairs], [t for _, t in pairs])
        return pytree.tree_unflatten(outs, out_spec)

    def _capture(self, fn: Callable, args: tuple) -> tuple[Callable[[], None], Any]:
        """Capture ``fn(*args)`` on static ``args``: returns the replay and the static outputs
        (which each replay overwrites)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up outside the capture (library handles, allocator)
            for _ in range(2):
                fn(*args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = fn(*args)
        if self._pool is None:
            self._pool = graph.pool()
        return graph.replay, out


class EmulatedGraphs(GraphCache):
    """:class:`GraphCache` with CUDA graph replay emulated on any device: a replay recomputes the
    function on the static inputs and overwrites the static outputs in place, as a graph does.
    Runs the graphed code path (chunked steps, static buffers, copies in and out) without a GPU.
    ``calls`` counts the calls per key: each is one round trip of the host."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict = {}

    def __call__(self, key: Hashable, fn: Callable, *args: Any) -> Any:
        self.calls[key] = self.calls.get(key, 0) + 1
        return super().__call__(key, fn, *args)

    def _run(self, fn: Callable, args: tuple) -> Any:
        """One execution of the captured function (capture and each replay)."""
        return fn(*args)

    def _capture(self, fn: Callable, args: tuple) -> tuple[Callable[[], None], Any]:
        out = self._run(fn, args)

        def replay() -> None:
            for old, new in zip(pytree.tree_leaves(out), pytree.tree_leaves(self._run(fn, args))):
                if old is not None:
                    old.copy_(new)

        return replay, out
