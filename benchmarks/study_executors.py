"""The default study (``asyncsnn experiment``: manifold, 4 models, 3 schedulers x 2 F x 2 models
evaluated in PyTorch and on the chip) one piece after another and in the local process pool
(one worker per core), in the same run: wall times, their ratio, and whether the tables are the
same (they must be). With ``--ray`` also on a local Ray instance. Plots off (they are drawn in the
main process either way). Results go to benchmarks/results/study_executors.{json,md}.

Run:  python benchmarks/study_executors.py [--ray] [--workers N]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import machine, save  # noqa: E402

from asyncsnn.executors import make_executor  # noqa: E402
from asyncsnn.experiment import experiment_config, run_experiment  # noqa: E402


def tables(run: Path) -> dict:
    out = {}
    for name in ("cells", "relative", "decide_early", "training"):
        rows = list(csv.DictReader(open(run / f"{name}.csv")))
        for r in rows:
            r.pop("seconds", None)
        out[name] = rows
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ray", action="store_true", help="also on a local Ray instance")
    ap.add_argument("--workers", type=int, default=None, help="pool workers (default: one per core)")
    args = ap.parse_args()
    kinds = ["sequential", "pool"] + (["ray"] if args.ray else [])
    rows, ref = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            ex = make_executor(kind, workers=args.workers)
            cfg = experiment_config(overrides={"out": str(Path(tmp) / kind)})
            t0 = time.perf_counter()
            res = run_experiment(cfg, progress=False, plots=False, log=lambda s: None, executor=ex)
            seconds = time.perf_counter() - t0
            t = tables(res.run_dir)
            ref = ref or t
            rows.append({"executor": ex.describe() if kind != "ray" else "Ray (local)", "seconds": seconds,
                         "same_tables": t == ref})
            print(f"{kind:10s} {seconds:7.1f} s  same tables: {t == ref}", flush=True)
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = base / r["seconds"]
    m = machine()
    lines = [f"Default study (`asyncsnn experiment`, plots off) on {m['cpu']}, {m['cores']} cores, {m['date']}:", "",
             "| executor | wall time (s) | speed-up | same tables |", "|---|---|---|---|"]
    lines += [f"| {r['executor']} | {r['seconds']:.1f} | {r['speedup']:.2f}x | {r['same_tables']} |" for r in rows]
    md = "\n".join(lines)
    print(md)
    save("study_executors", {"machine": m, "rows": rows}, md)
    return 0 if all(r["same_tables"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
