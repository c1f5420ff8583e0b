"""SPSN versus sequential LIF: time of one training step (forward, cross-entropy, backward).

Workload (issue 7): a 700-128-128-128-20 network, batch 64, T = 100, 1 000 and 10 000 steps of
SHD-like input (2 % of the 700 channels active per step), non-firing readout, max-over-time
cross-entropy. Implementations, all in the same run on the same input:

* ``spsn``: parallel in time (``auto``: the chunked filter at these lengths), plus ``spsn-fft``
  and ``spsn-direct`` forced (direct only up to 2 000 steps: it is O(T^2));
* ``lif-loop``: the plain per-step LIF loop (each step runs every layer; autograd through every
  step), the baseline;
* ``lif-fused``: projection batched over time, recurrence in one autograd function;
* ``lif-compiled``: the plain loop with its step compiled by ``torch.compile`` (compilation
  time reported apart).

Run:  python benchmarks/spsn_speed.py [--device cpu|cuda|all] [--T 100 1000 10000] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import machine, save  # noqa: E402

from asyncsnn.sim import saved_tensor_bytes  # noqa: E402
from asyncsnn.spsn import SeqNet  # noqa: E402
from asyncsnn.spsn import functional as F  # noqa: E402

SIZES = [700, 128, 128, 128, 20]
IMPLS = {
    "spsn": dict(neuron="spsn", method="auto"),
    "spsn-fft": dict(neuron="spsn", method="fft"),
    "spsn-direct": dict(neuron="spsn", method="direct"),
    "spsn-chunked": dict(neuron="spsn", method="chunked"),
    "lif-loop": dict(neuron="lif", lif_impl="loop"),
    "lif-fused": dict(neuron="lif", lif_impl="fused"),
    "lif-compiled": dict(neuron="lif", lif_impl="compiled"),
}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def step(net, x, y):
    net.zero_grad(set_to_none=True)
    out = net(x)
    torch.nn.functional.cross_entropy(out.logits, y).backward()


def measure(impl, x, y, dev, repeat):
    """``(best of `repeat` timed steps after a warm-up, the warm-up's time, peak CUDA memory in
    MB or None, MB that autograd kept for the backward or None)``. `repeat = 0`: the first call
    is the measurement (for the slow loops at long T, whose per-step work is already warm), and
    the kept bytes are not counted (the counting hook would be timed with it)."""
    torch.manual_seed(0)
    net = SeqNet(SIZES, **IMPLS[impl]).to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    counting = repeat > 0 and IMPLS[impl].get("lif_impl") != "compiled"  # (dynamo: no saved-tensor hooks)
    with saved_tensor_bytes() if counting else contextlib.nullcontext() as saved:
        step(net, x, y)  # warm-up (and compilation)
    sync(dev)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step(net, x, y)
        sync(dev)
        times.append(time.perf_counter() - t0)
    best = min(times) if times else first
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return best, first, peak, saved.bytes / 2**20 if counting else None


def run(dev: torch.device, lengths, quick: bool, only=None, on_row=None) -> dict:
    """Measure every implementation at every length; ``on_row`` gets the summary so far after
    each row (so that a run cut short keeps what it measured)."""
    rows = []
    for t in lengths:
        g = torch.Generator().manual_seed(t)
        x = (torch.rand(64, t, 700, generator=g) < 0.02).float().to(dev)
        y = torch.randint(0, 20, (64,), generator=g).to(dev)
        for impl in IMPLS:
            if (only and impl not in only) or (impl == "spsn-direct" and t > 2000):
                continue
            if impl.startswith("spsn-") and IMPLS[impl]["method"] == F.resolve_method("auto", t):
                continue  # the same as `spsn` (auto) there
            long = t >= 10000
            slow = impl in ("lif-loop", "lif-compiled") and long
            repeat = 0 if slow else 1 if long or quick else 3
            try:
                best, first, peak, kept = measure(impl, x, y, dev, repeat)
            except Exception as e:  # (one failing implementation must not cost the other rows)
                traceback.print_exc()
                print(f"{dev.type:4} T={t:6} {impl:13} failed: {type(e).__name__}", flush=True)
                continue
            rows.append({"T": t, "impl": impl, "seconds": best, "first_call_s": first, "peak_mb": peak,
                         "saved_for_backward_mb": kept})
            print(f"{dev.type:4} T={t:6} {impl:13} {best * 1000:10.1f} ms  (first call {first:.1f} s)", flush=True)
            if on_row is not None:
                on_row(_summary(dev, rows))
    return _summary(dev, rows)


def _summary(dev: torch.device, rows: list) -> dict:
    """The rows so far with their ratios (against the loop, and SPSN against each)."""
    by = {(r["T"], r["impl"]): r["seconds"] for r in rows}
    for r in rows:
        base = by.get((r["T"], "lif-loop"))
        r["speedup_vs_loop"] = base / r["seconds"] if base else None
        r["spsn_vs_this"] = r["seconds"] / by[(r["T"], "spsn")] if (r["T"], "spsn") in by else None
    return {"device": dev.type, "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "rows": rows}


def markdown(res: dict, mach: dict) -> str:
    where = res["gpu"] or f"{mach['cpu']}, {mach['cores']} cores"
    lines = [f"SPSN vs LIF training step, 700-128-128-128-20, batch 64 ({res['device']}: {where}; torch "
             f"{torch.__version__}; {mach['date']})", "",
             "| T | implementation | ms per step | speed-up of SPSN over it | kept for backward MB | "
             "peak memory MB (CUDA) |", "| --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        ratio = "" if r["spsn_vs_this"] is None else f"{r['spsn_vs_this']:.2f}x"
        peak = "" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
        kept = "" if r.get("saved_for_backward_mb") is None else f"{r['saved_for_backward_mb']:.0f}"
        lines.append(f"| {r['T']} | {r['impl']} | {r['seconds'] * 1000:.1f} | {ratio} | {kept} | {peak} |")
    lines += ["", *targets(res)]
    return "\n".join(lines)


# Issue 7's targets (stated for a GPU): SPSN's step this many times faster than the plain loop of
# the same run; and, for scale, figures quoted for this network at batch 64 on an H100 (ms per
# step): the plain PyTorch LIF loop, and SpikingJelly's triton fused LIF kernel.
TARGET_VS_LOOP = {1000: 10.0, 10000: 400.0}
QUOTED_H100_MS = {1000: {"loop": 1400.0, "spikingjelly": 6.8}, 10000: {"loop": 20000.0, "spikingjelly": 44.0}}


def targets(res: dict) -> list:
    """One line per target length measured: SPSN against the loop of this run (met or not; the
    targets are for a GPU), and against the quoted H100 figures where this run is on a GPU."""
    by = {(r["T"], r["impl"]): r["seconds"] * 1000 for r in res["rows"]}
    out = []
    for t, want in TARGET_VS_LOOP.items():
        spsn, loop = by.get((t, "spsn")), by.get((t, "lif-loop"))
        if spsn is None or loop is None:
            continue
        line = (f"T = {t}: SPSN {loop / spsn:.1f}x the plain loop of this run (target on a GPU: {want:g}x; "
                f"{'met' if loop / spsn >= want else 'not met'} here)")
        if res["device"] == "cuda":
            q = QUOTED_H100_MS[t]
            line += (f"; against the quoted H100 figures: {q['loop'] / spsn:.0f}x the {q['loop']:g} ms loop, "
                     f"{q['spikingjelly'] / spsn:.2f}x SpikingJelly's fused kernel ({q['spikingjelly']:g} ms)")
        out.append(line + ".")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "all"])
    ap.add_argument("--T", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--quick", action="store_true", help="T = 100 and 1000, one repeat")
    ap.add_argument("--only", nargs="+", choices=list(IMPLS), help="measure only these implementations")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    args = ap.parse_args()
    lengths = [100, 1000] if args.quick else args.T
    devs = ["cpu", "cuda"] if args.device == "all" else [args.device]
    mach = machine()
    for d in devs:
        if d == "cuda" and not torch.cuda.is_available():
            print("no CUDA device: skipped")
            continue
        def keep(res, d=d):
            if not args.quick:
                save(f"spsn_speed_{d}{args.tag}", {"machine": mach, **res}, markdown(res, mach))

        res = run(torch.device(d), lengths, args.quick, args.only, keep)
        keep(res)
        print(markdown(res, mach))


if __name__ == "__main__":
    main()
