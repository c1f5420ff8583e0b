"""Training throughput of unlayered backprop: samples per second of a full training step
(forward through the asynchronous schedule, spike-count cross-entropy, backward, Adam update).

Workload: a 2312-64-64-64-10 network (N-MNIST sized: 2312 = 34x34x2), batch 256, 30 input
frames of N-MNIST-like Poisson input (5 % of the pixels active per frame), `momentum`
scheduler, all neurons on one core, F in {16, 128, infinity}, on the CPU and on CUDA when
available.
Baseline, measured in the same run on the same inputs: the straightforward per-step dense
implementation (benchmarks/naive_async.py: a full sort of all sources and a dense product of
the whole weight matrix at every step, one host synchronisation per step). Both are checked to
produce the same spikes before timing. Also reported: the full and truncated gradient, the
engine (autograd through every step, or the manual engine's hand-written backward, eager or
with each step through torch.compile; on CUDA also both with CUDA graphs; on the CPU the native
engine, the run and its backward in Rust), and peak memory (CUDA allocator peak, or on the CPU
the bytes kept for backward: autograd's saved tensors plus the native engine's tape).

On the CPU every row runs on one thread (``torch.set_num_threads(1)``); the native engine also
on every thread of the machine (``--threads``), the speed-up over one thread reported.

Run:  python benchmarks/train_throughput.py [--quick] [--device cpu|cuda|all] [--engines manual,native]
      [--F 16,128,inf] [--gradients full,truncated] [--threads N] [--tag _suffix]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import RESULTS as RESULTS_DIR, machine, save  # noqa: E402
from naive_async import NaiveAsyncSimulator  # noqa: E402

from asyncsnn.generate import poisson_frames, random_feedforward  # noqa: E402
from asyncsnn.sim import AsyncSimulator, saved_tensor_bytes  # noqa: E402


def sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


ENGINES = {  # name: (engine, cuda_graphs, compile)
    "autograd": ("autograd", False, False),
    "manual": ("manual", False, False),
    "manual+compile": ("manual", False, True),
    "manual+graphs": ("manual", True, False),
    "manual+compile+graphs": ("manual", True, True),
    "native": ("native", False, False),
}
GPU_ONLY = ("manual+graphs", "manual+compile+graphs")
CPU_ONLY = ("native",)


def workload(batch: int):
    """The benchmark's network and data: 2312-64-64-64-10, ``batch`` samples of 30 frames of
    N-MNIST-like Poisson input and their labels (numpy)."""
    net = random_feedforward([2312, 64, 64, 64, 10], seed=0, beta=0.875, reset="zero", gain=2.0, grid=True)
    x = poisson_frames(batch, 30, 2312, 0.05, seed=1).astype(np.float32)
    y = np.random.default_rng(2).integers(0, 10, batch)
    return net, x, y


TARGET_SPEEDUP_F16 = 5.0  # issue 3: at least 5x the per-step dense baseline at F = 16, CPU and GPU
TARGET_H100_SAMPLES = 6000.0  # issue 3: training samples/s on an H100-class GPU (batch 256, 30 frames)
# Issue 22: on one CPU thread, at least 3x the seed's implementation (asynctorch, not on PyPI).
# Measured side by side on this machine (2026-11-29: the seed rebuilt at its commit 1f52eca in a
# scratch folder, this workload, batch 256, one thread, back to back with the manual engine), the
# seed ran 1.65x the manual engine at F = 16 (315 against 191 samples/s) and 1.28x at F = inf
# (428 against 335), so the target is stated against the manual engine of the same run:
# 3 x 1.65 = 5.0x at F = 16, 3 x 1.28 = 3.8x at F = inf. (When the issue was filed the ratios
# were 1.29x and 1.18x.)
SEED_VS_MANUAL = {"16": 1.65, "inf": 1.28}
TARGET_VS_SEED = 3.0
TARGET_MEMORY = 0.5  # issue 22: kept for backward at most half of the manual engine's


def targets(rows: list) -> list:
    """Issue 3's targets against the rows measured: per device, the best engine's speed-up over
    the baseline at F = 16, and on CUDA the best samples/s at each F against 6 000."""
    out = []
    ok = [r for r in rows if "samples_per_s" in r]
    for dev in sorted({r["device"] for r in ok}):
        f16 = [r for r in ok if r["device"] == dev and r["F"] == "16"]
        if f16:
            b = max(f16, key=lambda r: r["speedup"])
            out.append(f"{dev}, F = 16: best {b['speedup']:.1f}x the baseline ({_which(b)}); target "
                       f"{TARGET_SPEEDUP_F16:g}x: {'met' if b['speedup'] >= TARGET_SPEEDUP_F16 else 'not met'}.")
        if dev == "cuda":
            for f in sorted({r["F"] for r in ok if r["device"] == dev}, key=lambda f: float(f)):
                b = max((r for r in ok if r["device"] == dev and r["F"] == f), key=lambda r: r["samples_per_s"])
                out.append(f"cuda, F = {f}: best {b['samples_per_s']:.0f} samples/s ({_which(b)}); target on an "
                           f"H100-class GPU {TARGET_H100_SAMPLES:g}: "
                           f"{'met' if b['samples_per_s'] >= TARGET_H100_SAMPLES else 'not met'}.")
    # issue 22: the native engine against the manual one, one thread, full gradient
    cpu = {(r["F"], r["engine"], r.get("threads", 1)): r for r in ok if r["device"] == "cpu" and r["gradient"] == "full"}
    for f, seed in SEED_VS_MANUAL.items():
        nat, man = cpu.get((f, "native", 1)), cpu.get((f, "manual", 1))
        if nat and man:
            ratio = nat["samples_per_s"] / man["samples_per_s"]
            vs_seed = ratio / seed
            mem = nat["peak_memory_bytes"] / man["peak_memory_bytes"]
            out.append(f"cpu, F = {f}, one thread: native {nat['samples_per_s']:.0f} samples/s = {ratio:.1f}x the "
                       f"manual engine, {nat['speedup']:.1f}x the baseline; the seed ran {seed}x the manual engine, so "
                       f"about {vs_seed:.1f}x the seed (target {TARGET_VS_SEED:g}x: "
                       f"{'met' if vs_seed >= TARGET_VS_SEED else 'not met'}); kept for backward {mem:.2f}x the "
                       f"manual engine's (target <= {TARGET_MEMORY}: {'met' if mem <= TARGET_MEMORY else 'not met'}).")
        many = [r for (ff, e, t), r in cpu.items() if ff == f and e == "native" and t > 1]
        if nat and many:
            m = max(many, key=lambda r: r["threads"])
            out.append(f"cpu, F = {f}: native on {m['threads']} threads {m['samples_per_s']:.0f} samples/s, "
                       f"{m['samples_per_s'] / nat['samples_per_s']:.2f}x one thread.")
    return out


def _which(row: dict) -> str:
    """A row's engine and gradient (rows from before engines were named ran autograd)."""
    return f"{row.get('engine', 'autograd')}, {row['gradient']}"


def train_step(sim, opt, x, y, F, gradient="full", naive=False, engine="auto", cuda_graphs=False, compile=False):
    opt.zero_grad(set_to_none=True)
    if naive:
        r = sim(x, scheduler="momentum", F=F, seed=1)
        out, steps, spikes = r["out_counts"], r["steps"], r["spike_counts"]
    else:
        r = sim(x, scheduler="momentum", F=F, seed=1, gradient=gradient, engine=engine, cuda_graphs=cuda_graphs,
                compile=compile)
        out, steps, spikes = r.out_counts, r.steps, r.spike_counts
    loss = torch.nn.functional.cross_entropy(out.sum(1), y)
    loss.backward()
    opt.step()
    train_step.tape_bytes = 0 if naive or r.tape_bytes is None else r.tape_bytes  # (the native engine's tape)
    return out.detach(), steps, spikes.detach()


def measure(make, x, y, F, dev, repeat, **kw):
    """Samples/s (best of `repeat` after one warm-up, which also pays any compilation and
    graph capture: its time is returned too) and the peak memory of one step."""
    sim = make().to(dev)
    opt = torch.optim.Adam(sim.parameters(), lr=0.0)  # lr 0: every repeat does the same work
    sync(dev)
    t0 = time.perf_counter()
    first = train_step(sim, opt, x, y, F, **kw)
    sync(dev)
    warm = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeat):
        sync(dev)
        t0 = time.perf_counter()
        train_step(sim, opt, x, y, F, **kw)
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_step(sim, opt, x, y, F, **kw)
        mem = torch.cuda.max_memory_allocated() - base
    else:
        with saved_tensor_bytes() as counter:
            train_step(sim, opt, x, y, F, **kw)
        mem = counter.bytes + train_step.tape_bytes
    return len(x) / best, warm, mem, first


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="batch 32, one repeat (a smoke run)")
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--engines", default=None,
                    help=f"comma-separated subset of {', '.join(ENGINES)} (default: all that apply to the device)")
    ap.add_argument("--F", default="16,128,inf", help="comma-separated release limits (inf: infinity)")
    ap.add_argument("--gradients", default="full,truncated")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="CPU threads of the native engine's extra rows (1: none)")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    args = ap.parse_args()
    batch = 32 if args.quick else args.batch
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    wanted = list(ENGINES) if args.engines is None else args.engines.split(",")
    unknown = [e for e in wanted if e not in ENGINES]
    if unknown:
        ap.error(f"--engines: {', '.join(unknown)}; allowed: {', '.join(ENGINES)}")
    f_values = [None if f == "inf" else int(f) for f in args.F.split(",")]
    torch.manual_seed(0)
    net, x_np, y_np = workload(batch)
    out = {"machine": machine(), "torch": torch.__version__, "batch": batch, "frames": 30, "rows": []}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    lines = ["| device | F | engine | threads | gradient | ours samples/s | baseline samples/s | speed-up | steps/sample "
             "| spikes/sample | peak memory MB | first step s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    name = "train_throughput" + ("_quick" if args.quick else "") + ("_" + "_".join(devices) if args.device != "all" else "")
    name += args.tag

    def write() -> None:  # after every row: a run cut short keeps what it measured
        md = "\n".join([
            "# Training throughput of unlayered backprop",
            "",
            f"2312-64-64-64-10, batch {batch}, 30 frames, momentum scheduler, all neurons on one chip core; "
            "CPU rows on one thread unless the threads column says otherwise. Machine: "
            f"{out['machine']['cpu']} ({out['machine']['cores']} cores)" + (f", GPU {out['gpu']}" if "gpu" in out else "")
            + f", torch {torch.__version__}. Baseline: benchmarks/naive_async.py in the same run. "
            "First step: the warm-up step's time (compilation, graph capture).",
            "",
            *lines,
            "",
            *targets(out["rows"]),
        ])
        save(name, out, md)

    threads0 = torch.get_num_threads()
    for dev in devices:
        x = torch.tensor(x_np, device=dev)
        y = torch.tensor(y_np, device=dev)
        repeat = 1 if args.quick else 3
        engines = [(e, 1) for e in wanted if (dev == "cuda" or e not in GPU_ONLY) and (dev == "cpu" or e not in CPU_ONLY)]
        if dev == "cpu" and "native" in wanted and args.threads > 1:
            engines.append(("native", args.threads))
        if dev == "cpu":
            torch.set_num_threads(1)
        for F in f_values:
            base, _, _, first_b = measure(lambda: NaiveAsyncSimulator(net), x, y, F, dev, 1, naive=True)
            f_txt = "inf" if F is None else str(F)
            for ename, threads in engines:
                engine, graphs, compiled = ENGINES[ename]
                for grad in args.gradients.split(","):
                    if dev == "cpu":
                        torch.set_num_threads(threads)
                    try:
                        sps, warm, mem, first = measure(lambda: AsyncSimulator(net), x, y, F, dev, repeat,
                                                        gradient=grad, engine=engine, cuda_graphs=graphs,
                                                        compile=compiled)
                    except Exception as e:  # (one failing engine must not cost the other rows)
                        traceback.print_exc()
                        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
                        out["rows"].append({"device": dev, "F": f_txt, "engine": ename, "threads": threads,
                                            "gradient": grad, "error": msg})
                        lines.append(f"| {dev} | {f_txt} | {ename} | {threads} | {grad} | failed: {msg} | {base:.1f} "
                                     "| | | | | |")
                        print(lines[-1], flush=True)
                        write()
                        continue
                    finally:
                        if dev == "cpu":
                            torch.set_num_threads(1)
                    assert torch.equal(first[0], first_b[0]) and torch.equal(first[1], first_b[1]), "spikes differ"
                    steps = float(first[1].float().mean())
                    spikes = float(first[2].sum(1).mean())
                    row = {"device": dev, "F": f_txt, "engine": ename, "threads": threads if dev == "cpu" else None,
                           "gradient": grad, "samples_per_s": sps,
                           "baseline_samples_per_s": base, "speedup": sps / base, "steps_per_sample": steps,
                           "spikes_per_sample": spikes, "peak_memory_bytes": mem, "first_step_s": warm}
                    out["rows"].append(row)
                    lines.append(f"| {dev} | {f_txt} | {ename} | {threads if dev == 'cpu' else ''} | {grad} | {sps:.0f} "
                                 f"| {base:.1f} | {sps / base:.1f}x | "
                                 f"{steps:.1f} | {spikes:.0f} | {mem / 2**20:.0f} | {warm:.1f} |")
                    print(lines[-1], flush=True)
                    write()
    torch.set_num_threads(threads0)
    write()
    print(RESULTS_DIR / f"{name}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
