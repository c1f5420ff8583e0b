"""GPU correctness check: the simulator on CUDA gives the same spikes, counts and gradients as on
the CPU, for every scheduler, several F and mappings (run where a GPU is available)."""

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
    bad = 0
    for core_of in (None, [0] * 40 + [1] * 30 + [2] * 10, list(np.arange(80) % 3)):
        for scheduler in ("fifo", "random", "momentum", "layered"):
            for F in (1, 4, None):
                for input_mode in ("all_at_once", "scheduled"):
                    res = {}
                    for dev in ("cpu", "cuda"):
                        sim = AsyncSimulator(net, core_of=core_of).to(dev)
                        r = sim(x.to(dev), scheduler=scheduler, F=F, seed=5, input_mode=input_mode)
                        loss = torch.nn.functional.cross_entropy(r.out_counts.sum(1), y.to(dev))
                        loss.backward()
                        res[dev] = (r.out_counts.cpu(), r.steps.cpu(), r.synops.cpu(), r.first_spike.cpu(),
                                    [w.grad.cpu() for w in sim.weights])
                    a, b = res["cpu"], res["cuda"]
                    same = all(torch.equal(u, v) for u, v in zip(a[:4], b[:4]))
                    grads = all(torch.allclose(u, v, rtol=1e-4, atol=1e-5) for u, v in zip(a[4], b[4]))
                    if not (same and grads):
                        bad += 1
                        print("MISMATCH", core_of is not None, scheduler, F, input_mode, same, grads)
    print("gpu check:", "ok" if bad == 0 else f"{bad} mismatches")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
