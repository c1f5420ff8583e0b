"""Where a training step's time goes: one step of the train_throughput workload under
torch.profiler, per engine, as a table of the operations (CPU) or kernels (CUDA) that took the
most time, with their call counts. For deciding what to fuse next.

Run:  python benchmarks/profile_step.py [--device cpu|cuda] [--engine manual+compile] [--F 16] [--batch 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from train_throughput import ENGINES, sync, train_step, workload  # noqa: E402

from asyncsnn.sim import AsyncSimulator  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--engine", default="manual+compile", choices=list(ENGINES))
    ap.add_argument("--F", default="16")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args()
    dev = args.device
    F = None if args.F == "inf" else int(args.F)
    engine, graphs, compiled = ENGINES[args.engine]
    net, x_np, y_np = workload(args.batch)
    x, y = torch.tensor(x_np, device=dev), torch.tensor(y_np, device=dev)
    sim = AsyncSimulator(net).to(dev)
    opt = torch.optim.Adam(sim.parameters(), lr=0.0)
    kw = dict(engine=engine, cuda_graphs=graphs, compile=compiled)
    for _ in range(2):  # warm up: compilation, graph capture
        train_step(sim, opt, x, y, F, **kw)
    sync(dev)
    t0 = time.perf_counter()
    _, steps, _ = train_step(sim, opt, x, y, F, **kw)
    sync(dev)
    wall = time.perf_counter() - t0
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        train_step(sim, opt, x, y, F, **kw)
        sync(dev)
    print(f"{args.engine} F={args.F} batch {args.batch} on {dev}: {wall * 1e3:.1f} ms per training step, "
          f"{args.batch / wall:.0f} samples/s, mean steps per sample {float(steps.float().mean()):.1f}")
    sort_by = "self_device_time_total" if dev == "cuda" else "self_cpu_time_total"
    try:
        print(prof.key_averages().table(sort_by=sort_by, row_limit=args.rows))
    except Exception:  # (older torch names the column cuda)
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
