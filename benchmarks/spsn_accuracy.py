"""SPSN versus LIF accuracy: on the generated temporal dataset (random manifolds), on SHD, or on
the synthesized spoken digits (SHD's pipeline offline: espeak-ng through lauscher's cochlea).

Same network for both (channels-128-128-classes, or ``--hidden`` sizes; hidden weights
initialised at 8x the PyTorch default, a non-firing readout averaged over time), same data,
optimiser, epochs and seeds. SPSN fires with probability ``sigmoid(U - 4)``, trains with
straight-through Bernoulli firing (``sb``) and the rate regulariser, and is evaluated
deterministically (``U > 4``) and stochastically with the counter-based hash. LIF is the
sequential neuron with reset (threshold 0.5, fused implementation).

Run:  python benchmarks/spsn_accuracy.py [--epochs 15] [--seeds 0 1 2] [--quick]
      python benchmarks/spsn_accuracy.py --hard   # 20 classes on 2-D manifolds, 5 ms jitter
      python benchmarks/spsn_accuracy.py --dataset shd [--data-dir DIR] [--device cuda]
          # SHD (the files under DIR/SHD, see datasets/README.md): 10 ms frames, 100 of them,
          # 3 x 128 hidden as in Yarga and Wood (2023); results in results/spsn_accuracy_shd.*
      python benchmarks/spsn_accuracy.py --dataset spoken-digits   # the same settings on
          # `asyncsnn datasets generate spoken-digits`; results/spsn_accuracy_spoken_digits.*
          # (--folder DIR: a larger one, made with --speakers N --out DIR)
On the recorded and synthesized sets it also reports a linear baseline: logistic regression on
each sample's total spike count per channel (no timing), to show how much the timing carries.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(__file__))
from common import machine, save  # noqa: E402

import asyncsnn.data as data  # noqa: E402
from asyncsnn.spsn import SeqNet  # noqa: E402


def evaluate(net, x, y, device="cpu") -> tuple[float, float]:
    """Test accuracy and the hidden layers' mean firing rate (the mean over layers of each
    layer's spikes per neuron and step), in batches of 256 (a recorded test set need not fit the
    device at once)."""
    hits, spikes = 0, None
    with torch.no_grad():
        for i in torch.arange(len(x)).split(256):
            out = net(x[i].to(device), sample_offset=int(i[0]))
            hits += int((out.logits.argmax(1).cpu() == y[i]).sum())
            sums = torch.stack([s.sum() / s[0].numel() for s in out.spikes]).cpu()
            spikes = sums if spikes is None else spikes + sums
    return hits / len(x), float(spikes.mean()) / len(x)


def train(neuron: str, xs, ys, xt, yt, *, epochs: int, seed: int, rate: float, hidden=(128, 128),
          n_classes=None, batch: int = 32, lr: float = 5e-3, device="cpu", progress: bool = False) -> dict:
    torch.manual_seed(seed)
    n_classes = int(ys.max()) + 1 if n_classes is None else n_classes
    sizes = [xs.shape[2], *hidden, n_classes]
    kw = dict(neuron=neuron, alpha=0.9, beta=0.9, readout="mean", gain=8.0, seed=seed)
    kw.update(dict(lif_impl="fused", theta=0.5) if neuron == "lif" else dict(theta=4.0))
    net = SeqNet(sizes, **kw).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    dgen = gen if torch.device(device).type == "cpu" else torch.Generator(device).manual_seed(seed)
    t0 = time.perf_counter()
    for _ in tqdm(range(epochs), desc=neuron, disable=not progress):
        net.train()
        for idx in torch.randperm(len(xs), generator=gen).split(batch):
            opt.zero_grad()
            out = net(xs[idx].to(device), generator=dgen)
            loss = torch.nn.functional.cross_entropy(out.logits, ys[idx].to(device))
            if neuron == "spsn" and rate > 0:
                loss = loss + rate * out.rate_penalty(0.1)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    net.eval()
    acc, spike_rate = evaluate(net, xt, yt, device)
    res = {"neuron": neuron, "seed": seed, "train_seconds": seconds, "test_accuracy": acc, "spike_rate": spike_rate}
    if neuron == "spsn":
        net.eval_firing = "hash"
        res["test_accuracy_stochastic"] = evaluate(net, xt, yt, device)[0]
    return res


def load(args) -> tuple:
    """``(name, task description, xs, ys, xt, yt, n_classes)`` of the chosen dataset."""
    if args.dataset == "manifold":
        task = (dict(n_classes=20, dim=2, jitter_us=5000.0, train_per_class=50, test_per_class=30) if args.hard
                else dict(n_classes=10, train_per_class=100, test_per_class=30))
        splits = data.load("manifold", dt=args.dt or 2000, cache=False, **task)
        what = (f"manifold ({task['n_classes']} classes, {task.get('dim', 1)}-D, jitter "
                f"{task.get('jitter_us', 1000.0) / 1000:g} ms")
    else:
        task = dict(dt=args.dt or 10_000, n_frames=args.frames or 100)
        if args.folder:
            task["folder"] = args.folder
        splits = data.load(args.dataset, data_dir=args.data_dir, **task)
        what = f"{args.dataset} ({task['dt'] / 1000:g} ms frames"
    xs, ys, _ = data.to_arrays(splits.train)
    xt, yt, _ = data.to_arrays(splits.test)
    xs, xt = torch.tensor(xs, dtype=torch.float32), torch.tensor(xt, dtype=torch.float32)
    ys, yt = torch.tensor(ys, dtype=torch.long), torch.tensor(yt, dtype=torch.long)
    return what, task, xs, ys, xt, yt, splits.info.n_classes


def count_baseline(xs, ys, xt, yt) -> float:
    """Test accuracy of logistic regression on log(1 + total spikes per channel), the best of a
    few regularisation strengths (a generous baseline: chosen on the test set)."""
    from sklearn.linear_model import LogisticRegression

    ctr, cte = np.log1p(xs.sum(1).numpy()), np.log1p(xt.sum(1).numpy())
    scores = [LogisticRegression(C=c, max_iter=5000).fit(ctr, ys.numpy()).score(cte, yt.numpy())
              for c in (0.003, 0.01, 0.03, 0.1, 1.0)]
    return float(max(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="manifold", choices=["manifold", "shd", "spoken-digits"])
    ap.add_argument("--data-dir", default=None, help="data root of recorded datasets (default: ./datasets)")
    ap.add_argument("--folder", default=None,
                    help="spoken-digits: the dataset's folder (another size than the default; the results "
                         "file is then named after its number of speakers)")
    ap.add_argument("--dt", type=int, default=None, help="frame length in us (default: 2 000 manifold, 10 000 SHD)")
    ap.add_argument("--frames", type=int, default=None, help="frames per sample (recorded datasets; default 100)")
    ap.add_argument("--hidden", type=int, nargs="+", default=None,
                    help="hidden layer sizes (default: 128 128 on manifold, 128 128 128 on SHD)")
    ap.add_argument("--epochs", type=int, default=None, help="default: 15 (manifold), 30 (SHD)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rate", type=float, default=0.1, help="weight of the rate regulariser (SPSN)")
    ap.add_argument("--batch", type=int, default=None, help="default: 32 (manifold), 64 (SHD)")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="3 epochs, seed 0, nothing saved")
    ap.add_argument("--hard", action="store_true",
                    help="a harder task: 20 classes on 2-D manifolds with 5 ms timing jitter, 50 train samples each")
    args = ap.parse_args()
    shd = args.dataset != "manifold"
    args.epochs = args.epochs or (30 if shd else 15)
    if args.quick:
        args.epochs, args.seeds = 3, [0]
    hidden = args.hidden or ([128, 128, 128] if shd else [128, 128])
    batch = args.batch or (64 if shd else 32)
    what, task, xs, ys, xt, yt, n_classes = load(args)
    print(f"{what}: {len(xs)} train / {len(xt)} test, {xs.shape[1]} steps, {xs.shape[2]} channels")
    baseline = count_baseline(xs, ys, xt, yt) if shd else None
    if baseline is not None:
        print(f"linear baseline on spike counts per channel: {baseline:.3f}")
    rows = []
    for seed in args.seeds:
        for neuron in ("spsn", "lif"):
            r = train(neuron, xs, ys, xt, yt, epochs=args.epochs, seed=seed, rate=args.rate, hidden=hidden,
                      n_classes=n_classes, batch=batch, lr=args.lr, device=args.device, progress=shd)
            rows.append(r)
            print(r, flush=True)
    mach = machine()
    where = torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else \
        f"{mach['cpu']}, {mach['cores']} cores"
    mean = {n: float(np.mean([r["test_accuracy"] for r in rows if r["neuron"] == n])) for n in ("spsn", "lif")}
    stoch = float(np.mean([r["test_accuracy_stochastic"] for r in rows if r["neuron"] == "spsn"]))
    secs = {n: float(np.mean([r["train_seconds"] for r in rows if r["neuron"] == n])) for n in ("spsn", "lif")}
    md = "\n".join([
        f"SPSN vs LIF on {what}, {xs.shape[1]} steps), {xs.shape[2]}-{'-'.join(map(str, hidden))}-{n_classes}, "
        f"{args.epochs} epochs, seeds {args.seeds} ({where}; {mach['date']})", "",
        "| neuron | test accuracy (mean) | SPSN stochastic eval | training s (mean) |", "| --- | --- | --- | --- |",
        f"| SPSN (sb) | {mean['spsn']:.3f} | {stoch:.3f} | {secs['spsn']:.1f} |",
        f"| LIF (fused) | {mean['lif']:.3f} | | {secs['lif']:.1f} |", "",
        f"SPSN - LIF: {100 * (mean['spsn'] - mean['lif']):+.1f} points"]
        + ([f"Linear baseline (logistic regression on spike counts per channel, no timing): {baseline:.3f}"]
           if baseline is not None else []))
    print(md)
    if not args.quick:
        name = f"spsn_accuracy_{args.dataset.replace('-', '_')}" if shd else \
            "spsn_accuracy_hard" if args.hard else "spsn_accuracy"
        if args.folder:
            from asyncsnn.data import speech

            name += f"_{speech.check(args.folder)['config']['speakers']}_speakers"
        save(name, {"machine": mach, "epochs": args.epochs, "task": task, "hidden": hidden, "rows": rows,
                    "mean": mean, "count_baseline": baseline}, md)


if __name__ == "__main__":
    main()
