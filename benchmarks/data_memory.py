"""Memory of a binned dataset: the sparse, memory-mapped frame cache against dense frames.

A recorded event dataset the size of an N-MNIST training run (2312 channels, 300 ms samples of
about 4 000 events, frames of 1 ms) is made synthetically (the real files cannot be downloaded
here) and binned through ``asyncsnn.data.FrameDataset`` with a cache. Measured in the same run:

* the bytes the dense frames of the split would take (what the frame cache used to hold in
  memory, and wrote compressed) against the bytes of the sparse cache;
* the peak Python heap while building the cache (``tracemalloc``), and the resident memory
  added by opening it and reading every sample once;
* the time to build the cache, and to read one sample (dense) from it versus binning it afresh.

    python benchmarks/data_memory.py [--samples 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from common import machine, save

from asyncsnn.data import EVENT_DTYPE, DatasetInfo, EventDataset, FrameDataset


class SyntheticRecording(EventDataset):
    """N-MNIST-sized event streams, deterministic per index."""

    def __init__(self, n: int, channels: int = 2312, duration_us: int = 300_000, events: int = 4000) -> None:
        self.n, self.channels, self.duration, self.events = n, channels, duration_us, events
        self.split = "train"
        self.info = DatasetInfo("synthetic", channels, 10, tuple(map(str, range(10))), (2, 34, 34), duration_us,
                                "synthetic (benchmarks/data_memory.py)", "generated")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        r = np.random.default_rng(i)
        ev = np.zeros(self.events, EVENT_DTYPE)
        ev["t"] = np.sort(r.integers(0, self.duration, self.events))
        ev["c"] = r.integers(0, self.channels, self.events)
        return ev, i % 10

    def cache_key(self) -> str:
        return f"synthetic-{self.n}"


def rss_mb() -> float:
    """Resident memory now (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    ds = SyntheticRecording(args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        tracemalloc.start()
        t0 = time.perf_counter()
        frames = FrameDataset(ds, 1000, None, Path(tmp), progress=False)
        build_s = time.perf_counter() - t0
        _, build_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        store = frames._store
        lengths = np.asarray(store.lengths)
        dense_bytes = int((lengths * ds.channels * 4).sum())
        rss0 = rss_mb()
        again = FrameDataset(ds, 1000, None, Path(tmp), progress=False)
        t0 = time.perf_counter()
        total = 0.0
        for i in range(len(again)):
            total += float(again[i][0][0, 0])
        read_s = (time.perf_counter() - t0) / len(again)
        rss_read = rss_mb() - rss0
        t0 = time.perf_counter()
        for i in range(min(200, len(ds))):
            frames._bin(i)
        bin_s = (time.perf_counter() - t0) / min(200, len(ds))
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*.npy"))
    res = {
        "machine": machine(), "samples": args.samples, "channels": ds.channels, "frames_per_sample": int(lengths.max()),
        "events_per_sample": ds.events, "dense_bytes": dense_bytes, "sparse_bytes": store.nbytes, "disk_bytes": disk,
        "ratio_dense_over_sparse": dense_bytes / store.nbytes, "build_s": build_s,
        "build_peak_heap_bytes": build_peak, "rss_growth_reading_all_mb": rss_read,
        "read_one_sample_ms": read_s * 1e3, "bin_one_sample_ms": bin_s * 1e3,
    }
    m = res["machine"]
    md = "\n".join([
        f"# Frame cache memory ({args.samples} N-MNIST-sized samples, 1 ms frames)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['date']}.",
        "",
        "| what | value |",
        "|---|---|",
        f"| dense frames of the split (held in memory before) | {dense_bytes / 1e9:.2f} GB |",
        f"| sparse cache (memory-mapped now) | {store.nbytes / 1e6:.1f} MB ({res['ratio_dense_over_sparse']:.0f}x less) |",
        f"| peak Python heap while building the cache | {build_peak / 1e6:.1f} MB |",
        f"| resident memory added by reading every sample once | {rss_read:.0f} MB |",
        f"| build the cache | {build_s:.1f} s |",
        f"| read one sample from the cache / bin it afresh | {read_s * 1e3:.2f} ms / {bin_s * 1e3:.2f} ms |",
    ])
    save("data_memory", res, md)
    print(md)


if __name__ == "__main__":
    main()
