"""Helpers for benchmarks: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rustc = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "rustc": rustc,
        "date": time.strftime("%Y-%m-%d"),
    }


def workload_a(batch: int):
    """Workload (a): a 2312-64-64-64-10 network (weights on the 1/64 grid, so that float sums
    are exact) and ``batch`` samples of 30 frames of N-MNIST-like input (5 % of the pixels)."""
    from asyncsnn.generate import poisson_frames, random_feedforward

    net = random_feedforward([2312, 64, 64, 64, 10], seed=0, beta=0.875, reset="subtract", gain=3.0, grid=True)
    return net, poisson_frames(batch, 30, 2312, 0.05, seed=1)


def workload_b(batch: int):
    """Workload (b): about 20 000 neurons and 3.5 million synapses (sparse, 175 per neuron) and
    ``batch`` samples of 10 frames; run it on a ``loihi`` chip with :data:`CHIP_B`."""
    from asyncsnn.generate import poisson_frames, random_sparse

    net = random_sparse(1000, [5000, 5000, 5000, 5000], 175, seed=3, beta=0.9, theta=1.0, refractory=True)
    return net, poisson_frames(batch, 10, 1000, 0.05, seed=4)


# Workload (b)'s chip: 42 cores; random (non-local) connectivity needs larger axon tables than
# Loihi's 4096 per core.
CHIP_B = dict(mesh_width=6, mesh_height=7, core_neurons=480, core_fan_in=16384, core_fan_out=16384)


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of `repeat` calls (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def save(name: str, data: dict, markdown: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown + "\n")
    return path
