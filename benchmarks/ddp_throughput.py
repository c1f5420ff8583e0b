"""Data-parallel training throughput: the same training (the study's default unlayered model on
manifold, larger training split) in one process and under ``torchrun --nproc-per-node 2`` (gloo,
CPU), in the same run. Samples per second from the per-epoch times the runs record (start-up
excluded), the ratio, and the largest weight difference at the end (float rounding only).
Results go to benchmarks/results/ddp_throughput.{json,md}.

Run:  python benchmarks/ddp_throughput.py [--epochs 3] [--per-class 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import machine, save  # noqa: E402


def run(out: Path, procs: int, settings: dict) -> Path:
    args = []
    for k, v in settings.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    cmd = [sys.executable, "-m", "asyncsnn", "--quiet", "train", *args, "--out", str(out), "--no-progress"]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               "-m", "asyncsnn", *cmd[3:]]
    threads = max(1, (os.cpu_count() or 1) // procs)
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    (folder,) = out.iterdir()
    return folder


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=300, help="training samples per class (10 classes)")
    args = ap.parse_args()
    import torch

    settings = {"data.options": {"train_per_class": args.per_class, "test_per_class": 10}, "train.epochs": args.epochs,
                "train.batch_size": 64}
    rows, weights = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for procs in (1, 2):
            folder = run(Path(tmp) / str(procs), procs, settings)
            hist = json.loads((folder / "metrics.json").read_text())["history"]
            seconds = sum(h["seconds"] for h in hist[1:]) or hist[0]["seconds"]  # first epoch: warm-up
            epochs = max(len(hist) - 1, 1)
            n = 10 * args.per_class * epochs
            rows.append({"processes": procs, "samples_per_s": n / seconds, "seconds_per_epoch": seconds / epochs,
                         "train_loss": hist[-1]["train_loss"]})
            weights[procs] = torch.load(folder / "checkpoint.pt", weights_only=True)["model"]
            print(f"{procs} process(es): {n / seconds:.0f} samples/s", flush=True)
    diff = max(float((weights[1][k].double() - weights[2][k].double()).abs().max()) for k in weights[1])
    ratio = rows[1]["samples_per_s"] / rows[0]["samples_per_s"]
    m = machine()
    md = "\n".join([
        f"Unlayered training (manifold, {10 * args.per_class} samples, batch 64, {args.epochs} epochs; the first "
        f"is warm-up) on {m['cpu']}, {m['cores']} cores, {m['date']}:", "",
        "| processes | samples/s | s per epoch | final train loss |", "|---|---|---|---|",
        *[f"| {r['processes']} | {r['samples_per_s']:.0f} | {r['seconds_per_epoch']:.2f} | {r['train_loss']:.4f} |"
          for r in rows],
        "", f"2 processes / 1 process: {ratio:.2f}x; largest weight difference at the end: {diff:.1e}"])
    print(md)
    save("ddp_throughput", {"machine": m, "rows": rows, "ratio": ratio, "max_weight_difference": diff}, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
