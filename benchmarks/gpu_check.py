"""GPU correctness check: the simulator on CUDA gives the same spikes, counts and gradients as on
the CPU, for every scheduler, several F and mappings, with each engine (autograd, manual, manual
with CUDA graphs; run where a GPU is available). The reference is the CPU's autograd engine."""

from __future__ import annotations

import sys

import numpy as np
import torch

from asyncsnn.generate import poisson_frames, random_feedforward
from asyncsnn.sim import AsyncSimulator


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    net = random_feedforward([120, 40, 30, 10], seed=3, beta=0.875, reset="zero", gain=2.0, grid=True)
    x = torch.tensor(poisson_frames(16, 8, 120, 0.1, seed=4).astype(np.float32))
    y = torch.arange(16) % 10
    bad = checked = 0
    for core_of in (None, [0] * 40 + [1] * 30 + [2] * 10, list(np.arange(80) % 3)):
        for scheduler in ("fifo", "random", "momentum", "layered"):
            for F in (1, 4, None):
                for input_mode in ("all_at_once", "scheduled"):
                    variants = [("cpu", "autograd", False), ("cuda", "autograd", False)]
                    if input_mode == "all_at_once":
                        variants += [("cuda", "manual", False), ("cuda", "manual", True)]
                    res = {}
                    for dev, engine, graphs in variants:
                        sim = AsyncSimulator(net, core_of=core_of).to(dev)
                        r = sim(x.to(dev), scheduler=scheduler, F=F, seed=5, input_mode=input_mode, engine=engine,
                                cuda_graphs=graphs, first_time=True)
                        loss = torch.nn.functional.cross_entropy(r.out_counts.sum(1), y.to(dev))
                        loss = loss + 0.01 * r.first_time.mean() + 0.1 * (r.v_final ** 2).mean()
                        loss.backward()
                        res[dev, engine, graphs] = (r.out_counts.cpu(), r.steps.cpu(), r.synaptic_operations.cpu(),
                                                    r.first_spike.cpu(), [w.grad.cpu() for w in sim.weights])
                        if graphs:
                            with torch.no_grad():  # forward only, graphed
                                r2 = sim(x.to(dev), scheduler=scheduler, F=F, seed=5, cuda_graphs=True)
                            res[dev, "no_grad", graphs] = (r2.out_counts.cpu(), r2.steps.cpu(), r2.synaptic_operations.cpu(),
                                                           r2.first_spike.cpu(), res[dev, engine, graphs][4])
                    a = res["cpu", "autograd", False]
                    for key, b in res.items():
                        same = all(torch.equal(u, v) for u, v in zip(a[:4], b[:4]))
                        grads = all(torch.allclose(u, v, rtol=1e-4, atol=1e-5) for u, v in zip(a[4], b[4]))
                        checked += 1
                        if not (same and grads):
                            bad += 1
                            print("MISMATCH", core_of is not None, scheduler, F, input_mode, key, same, grads)
    print("gpu check:", f"{checked} comparisons,", "ok" if bad == 0 else f"{bad} mismatches")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
