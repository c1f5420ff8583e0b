"""Helpers for benchmarks: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

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


def workload_scale(n_neurons: int, per_neuron: int, layers: int = 4, n_inputs: int = 1000, seed: int = 5):
    """A layered network of ``n_neurons`` LIF neurons in ``layers`` equal layers, each neuron
    with ``per_neuron`` synapses from the layer below (or the inputs): from a random start, every
    ``size / per_neuron``-th neuron, so no pair repeats and the targets of a source spread over
    the whole layer (the worst case for a chip's per-core segments). Sparse weights with int32
    indices (12 bytes per synapse in numpy). Built vectorised: 1e8 synapses in seconds."""
    from asyncsnn import Network, Population, Projection

    rng = np.random.default_rng(seed)
    size = n_neurons // layers
    pops, projs, prev = [], [], n_inputs
    for i in range(layers):
        k = min(per_neuron, prev)
        step = max(prev // k, 1)
        rows = np.repeat(np.arange(size, dtype=np.int32), k)
        cols = ((rng.integers(0, prev, size)[:, None] + np.arange(k)[None, :] * step) % prev).astype(np.int32).ravel()
        vals = rng.normal(1.5 / np.sqrt(k), 1.0 / np.sqrt(k), rows.size).astype(np.float32)
        pops.append(Population(size, 1.0, 0.9, "subtract", True))
        projs.append(Projection("input" if i == 0 else i - 1, i, rows=rows, cols=cols, values=vals, shape=(size, prev)))
        prev = size
    return Network(n_inputs, pops, projs, output=layers - 1)


def scale_chip(n_neurons: int) -> dict:
    """An ideal chip with 1024-neuron cores enough for ``n_neurons``, its synapse and fan
    capacities unbounded (random connectivity needs large axon tables)."""
    cores = -(-n_neurons // 1024)
    width = int(np.ceil(np.sqrt(cores)))
    return dict(mesh_width=width, mesh_height=-(-cores // width), core_neurons=1024, core_synapses=10**10,
                core_fan_in=10**9, core_fan_out=10**9)


def rss_bytes() -> int:
    """Resident memory of this process (Linux), bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def read_bandwidth(nbytes: int = 1 << 30, repeat: int = 3) -> float:
    """Bytes per second one thread reads from memory: the best of ``repeat`` sums over a float32
    array of ``nbytes`` (far larger than any cache)."""
    a = np.ones(nbytes // 4, np.float32)
    t = best_of(lambda: np.add.reduce(a), repeat)
    return nbytes / t


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
