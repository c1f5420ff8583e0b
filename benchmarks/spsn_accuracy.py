"""SPSN versus LIF accuracy on the generated temporal dataset (random manifolds).

Same network for both (channels-128-128-classes, hidden weights initialised at 8x the PyTorch
default, a non-firing readout averaged over time), same data, optimiser, epochs and seeds.
SPSN fires with probability ``sigmoid(U - 4)``, trains with straight-through Bernoulli firing
(``sb``) and the rate regulariser, and is evaluated deterministically (``U > 4``) and
stochastically with the counter-based hash. LIF is the sequential neuron with reset
(threshold 0.5, fused implementation).

Run:  python benchmarks/spsn_accuracy.py [--epochs 15] [--seeds 0 1 2] [--quick]
      python benchmarks/spsn_accuracy.py --hard   # 20 classes on 2-D manifolds, 5 ms jitter
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import machine, save  # noqa: E402

import asyncsnn.data as data  # noqa: E402
from asyncsnn.spsn import SeqNet  # noqa: E402


def accuracy(net, x, y, **kw) -> float:
    with torch.no_grad():
        return float((net(x, **kw).logits.argmax(1) == y).float().mean())


def train(neuron: str, xs, ys, xt, yt, *, epochs: int, seed: int, rate: float) -> dict:
    torch.manual_seed(seed)
    sizes = [xs.shape[2], 128, 128, int(ys.max()) + 1]
    kw = dict(neuron=neuron, alpha=0.9, beta=0.9, readout="mean", gain=8.0, seed=seed)
    kw.update(dict(lif_impl="fused", theta=0.5) if neuron == "lif" else dict(theta=4.0))
    net = SeqNet(sizes, **kw)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(xs), generator=gen).split(32):
            opt.zero_grad()
            out = net(xs[idx], generator=gen)
            loss = torch.nn.functional.cross_entropy(out.logits, ys[idx])
            if neuron == "spsn" and rate > 0:
                loss = loss + rate * out.rate_penalty(0.1)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    net.eval()
    res = {"neuron": neuron, "seed": seed, "train_seconds": seconds, "test_accuracy": accuracy(net, xt, yt)}
    with torch.no_grad():
        res["spike_rate"] = float(torch.stack([s.mean() for s in net(xt).spikes]).mean())
    if neuron == "spsn":
        net.eval_firing = "hash"
        res["test_accuracy_stochastic"] = accuracy(net, xt, yt)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rate", type=float, default=0.1, help="weight of the rate regulariser (SPSN)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--hard", action="store_true",
                    help="a harder task: 20 classes on 2-D manifolds with 5 ms timing jitter, 50 train samples each")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.seeds = 3, [0]
    task = (dict(n_classes=20, dim=2, jitter_us=5000.0, train_per_class=50, test_per_class=30) if args.hard else
            dict(n_classes=10, train_per_class=100, test_per_class=30))
    splits = data.load("manifold", dt=2000, cache=False, **task)
    xs, ys, _ = data.to_arrays(splits.train)
    xt, yt, _ = data.to_arrays(splits.test)
    xs, xt = torch.tensor(xs, dtype=torch.float32), torch.tensor(xt, dtype=torch.float32)
    ys, yt = torch.tensor(ys, dtype=torch.long), torch.tensor(yt, dtype=torch.long)
    print(f"manifold: {len(xs)} train / {len(xt)} test, {xs.shape[1]} steps, {xs.shape[2]} channels")
    rows = []
    for seed in args.seeds:
        for neuron in ("spsn", "lif"):
            r = train(neuron, xs, ys, xt, yt, epochs=args.epochs, seed=seed, rate=args.rate)
            rows.append(r)
            print(r, flush=True)
    mach = machine()
    mean = {n: float(np.mean([r["test_accuracy"] for r in rows if r["neuron"] == n])) for n in ("spsn", "lif")}
    stoch = float(np.mean([r["test_accuracy_stochastic"] for r in rows if r["neuron"] == "spsn"]))
    secs = {n: float(np.mean([r["train_seconds"] for r in rows if r["neuron"] == n])) for n in ("spsn", "lif")}
    md = "\n".join([
        f"SPSN vs LIF on manifold ({task['n_classes']} classes, {task.get('dim', 1)}-D, jitter "
        f"{task.get('jitter_us', 1000.0) / 1000:g} ms, {xs.shape[1]} steps), {args.epochs} epochs, seeds {args.seeds} "
        f"({mach['cpu']}, {mach['cores']} cores; {mach['date']})", "",
        "| neuron | test accuracy (mean) | SPSN stochastic eval | training s (mean) |", "| --- | --- | --- | --- |",
        f"| SPSN (sb) | {mean['spsn']:.3f} | {stoch:.3f} | {secs['spsn']:.1f} |",
        f"| LIF (fused) | {mean['lif']:.3f} | | {secs['lif']:.1f} |", "",
        f"SPSN - LIF: {100 * (mean['spsn'] - mean['lif']):+.1f} points"])
    print(md)
    if not args.quick:
        save("spsn_accuracy_hard" if args.hard else "spsn_accuracy",
             {"machine": mach, "epochs": args.epochs, "task": task, "rows": rows, "mean": mean}, md)


if __name__ == "__main__":
    main()
