"""What the CUDA-graph path runs on the train_throughput workload, counted without a GPU: per
batch, the steps the slowest sample needs, the steps run (the masked steps of finished samples
included), the round trips of the host (one check per chunk) and the bytes each graphed forward
and backward chunk copies in and out. Graph replay is emulated on the CPU (a replay calls the
function), so the counts are those of a real GPU run; the times are not measured here.

Run:  python benchmarks/graph_plan.py [--batch 256] [--F 16,128,inf] [--scheduler momentum]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

import torch
from torch.utils import _pytree as pytree

sys.path.insert(0, os.path.dirname(__file__))
from train_throughput import workload  # noqa: E402

from asyncsnn.sim import AsyncSimulator  # noqa: E402
from asyncsnn.sim.graphs import EmulatedGraphs  # noqa: E402


def _bytes(tree) -> int:
    return sum(t.numel() * t.element_size() for t in pytree.tree_leaves(tree) if isinstance(t, torch.Tensor))


class CountingGraphs(EmulatedGraphs):
    """Graph replay emulated on the CPU, counting steps and bytes per key."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0
        self.bytes_in: collections.Counter = collections.Counter()
        self.bytes_out: collections.Counter = collections.Counter()

    def __call__(self, key, fn, *args):
        self.bytes_in[key] += _bytes(args)
        out = super().__call__(key, fn, *args)
        self.bytes_out[key] += _bytes(out)
        if key == "forward":  # (a chunk returns its carry and its per-step records, step axis first)
            self.steps += out[1].step.shape[0]
        return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--F", default="16,128,inf")
    ap.add_argument("--scheduler", default="momentum")
    args = ap.parse_args()
    net, x_np, y_np = workload(args.batch)
    x, y = torch.tensor(x_np), torch.tensor(y_np)
    print(f"2312-64-64-64-10, batch {args.batch}, 30 frames, {args.scheduler}, manual engine, graphed path "
          "(replay emulated on the CPU)\n")
    print("| F | steps of the slowest sample | steps run | round trips | graphs captured "
          "| MB into / out of a forward chunk | MB into / out of a backward chunk |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for f_txt in args.F.split(","):
        sim = AsyncSimulator(net)
        sim._graph_cache = g = CountingGraphs()
        r = sim(x, scheduler=args.scheduler, F=None if f_txt == "inf" else int(f_txt), seed=0, cuda_graphs=True)
        torch.nn.functional.cross_entropy(r.out_counts.sum(1), y).backward()
        fw, bw = g.calls["forward"], g.calls["backward"]
        print(f"| {f_txt} | {int(r.steps.max())} | {g.steps} | {fw} | {g.captures} | "
              f"{g.bytes_in['forward'] / fw / 1e6:.1f} / {g.bytes_out['forward'] / fw / 1e6:.1f} | "
              f"{g.bytes_in['backward'] / bw / 1e6:.1f} / {g.bytes_out['backward'] / bw / 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
