"""Every run is bounded and every request the machine cannot hold is an exception: memory
exhaustion under a hard address-space limit, work asked for up front, pending counts and chip
time that would overflow, and Ctrl-C during a long emulator run (issue 26)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import asyncsnn
from asyncsnn import InputError, Network, Population, Projection
from asyncsnn.generate import random_feedforward

# Runs in a child process under `ulimit -v` (RLIMIT_AS) of what it uses plus 1.5 GB. Each case
# prints one line: its name, the exception's class and the first words of its message. The
# Python estimate of a run's memory is switched off for the second pass, so that the core's own
# fallible allocation is what answers.
UNDER_A_LIMIT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import asyncsnn
    from asyncsnn import Network, Population, Projection, SpikeQueue
    from asyncsnn import chip as chip_module
    from asyncsnn.generate import random_feedforward

    small = random_feedforward([4, 5, 3], seed=0)
    asyncsnn.Chip.preset("ideal").run(small, np.ones((2, 2, 4), np.uint32))  # threads started
    vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 1500 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def many_frames():  # 8 samples x 2^24 frames: ~3 GB of frame lists alone
        asyncsnn.Chip.preset("ideal").place(small).run(events=[empty] * 8, n_frames=2**24, max_work=None)

    def wide_output():  # 2^20 output neurons x 4096 frames: ~17 GB of counts per sample
        big = 2**20
        net = Network(1, [Population(big)], [Projection("input", 0, rows=np.arange(big),
                      cols=np.zeros(big, np.int64), values=np.ones(big, np.float32), shape=(big, 1))])
        asyncsnn.Chip.preset("ideal").run(net, np.zeros((4, 4096, 1), np.uint32), max_work=None)

    def dense_network():  # 8192 x 8192 dense weights: 0.27 GB here, ~1.6 GB in the core
        w = np.full((8192, 8192), 0.01, np.float32)
        net = Network.feedforward([w])
        asyncsnn.Chip.preset("ideal", core_neurons=8192, core_synapses=2**27, core_fan_in=2**20).run(
            net, np.zeros((1, 1, 8192), np.uint32))

    def huge_queue():
        SpikeQueue(0, [2**29 - 1], [0])

    errors = (MemoryError, asyncsnn.InputError, asyncsnn.NetworkError, asyncsnn.ConfigError)
    for estimate in (True, False):
        if not estimate:
            chip_module.available_memory = lambda: None
        for case in (many_frames, wide_output, dense_network, huge_queue):
            try:
                case()
                print(case.__name__, estimate, "accepted", flush=True)
            except errors as e:
                print(case.__name__, estimate, type(e).__name__, str(e)[:60].replace(" ", "_"), flush=True)
    print("alive", flush=True)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_no_input_aborts_the_interpreter_under_a_memory_limit():
    """Under a hard address-space limit every request ends in MemoryError (or the project's
    error for a request that is invalid anyway), whether the Python estimate or the core's
    fallible allocation refuses it, and the process lives on: nothing aborts (SIGABRT)."""
    r = subprocess.run([sys.executable, "-c", UNDER_A_LIMIT], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "RAYON_NUM_THREADS": "2"})
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-2000:])
    lines = dict((tuple(l.split()[:2]), l.split()[2:]) for l in r.stdout.splitlines() if l != "alive")
    assert r.stdout.splitlines()[-1] == "alive"
    for estimate in ("True", "False"):
        for case in ("many_frames", "wide_output", "dense_network"):
            kind, message = lines[(case, estimate)]
            assert kind == "MemoryError", (case, estimate, kind, message)
        # with the estimate off, the core's allocation is what refused, and says what it was
        assert lines[("many_frames", "False")][1].startswith("out_of_memory:_input_frames")
        assert lines[("wide_output", "False")][1].startswith("out_of_memory:_output_counts")
        assert lines[("huge_queue", estimate)][0] == "InputError"  # 2^29 groups: no chip has them
    # the estimate names the request before anything is allocated
    assert lines[("wide_output", "True")][1].startswith("run:_4_samples_x_4096_frames")


def test_work_beyond_the_bound_is_refused_up_front_unless_asked_for():
    net = random_feedforward([4, 5, 3], seed=0)
    placement = asyncsnn.Chip.preset("ideal").place(net)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    with pytest.raises(InputError, match=r"max_work: 8 samples x 16777216 frames x \(8 neurons \+ 64\) = "
                                         r"9\.66e\+09 neuron updates is more than max_work = 1\.1e\+09"):
        placement.run(events=[empty] * 8, n_frames=2**24, max_work=2**40 // 1000)
    # the default bound (2^40) holds a request no one makes by accident
    with pytest.raises(InputError, match="1024 samples x 16777216 frames .* is more than max_work = 1.1e\\+12"):
        placement.run(events=[empty] * 1024, n_frames=2**24)
    # an explicit bound lets the same request through
    r = placement.run(events=[empty] * 2, n_frames=1000, max_work=2 * 1000 * 72)
    assert r.out_counts.shape == (2, 1000, 3)
    with pytest.raises(InputError, match="max_work: 2 samples x 1000 frames"):
        placement.run(events=[empty] * 2, n_frames=1000, max_work=2 * 1000 * 72 - 1)
    for bad in (0, -1, 2.5, True, "1"):
        with pytest.raises(InputError, match="max_work"):
            placement.run(events=[empty], n_frames=1, max_work=bad)


def _two_channels() -> Network:
    return Network(2, [Population(1, theta=1.0, beta=1.0, reset="zero", refractory=True)],
                   [Projection("input", 0, weights=np.array([[0.5, 0.5]], np.float32))])


def test_pending_counts_and_chip_time_that_would_overflow_are_errors():
    """A pending count past 2^32 - 1 and chip time past 2^62 ticks used to stop silently
    (saturate, wrap): both are InputErrors naming what overflowed."""
    m = 2**32 - 1
    placement = asyncsnn.Chip.preset("ideal").place(_two_channels())
    opts = asyncsnn.RunOptions(F=1, input_mode="scheduled", max_steps=1)
    for mode in ("steps", "events"):
        with pytest.raises(InputError, match="pending count: source [01] had more than 4294967295 .* frame 1"):
            placement.run(np.full((1, 2, 2), m, np.uint32), opts.replace(mode=mode))
        r = placement.run(np.full((1, 1, 2), m, np.uint32), opts.replace(mode=mode))
        assert r.metrics["unreleased"][0] == m
    q = asyncsnn.SpikeQueue(0, [0], [0])
    q.push(0, m)
    with pytest.raises(InputError, match="count: source 0 has 4294967295 pending; 1 more would pass"):
        q.push(0, 1)
    slow = asyncsnn.Chip.preset("ideal", barrier_ticks=2**40).place(_two_channels())
    one = (np.zeros(1, np.int64), np.zeros(1, np.int64))
    with pytest.raises(InputError, match="ticks: sample 0 passed 2\\^62 ticks .*barrier_ticks 1099511627776"):
        slow.run(events=[one], n_frames=2**22 + 2, mode="events")
    r = slow.run(events=[one], n_frames=1000, mode="events")
    assert r.metrics["ticks"][0] == 999 * (2**40 + 1) + 1


def _self_exciting() -> Network:
    return Network(1, [Population(1, theta=1.0, beta=1.0, reset="subtract", refractory=False)],
                   [Projection("input", 0, weights=np.array([[2.0]], np.float32)),
                    Projection(0, 0, weights=np.array([[2.0]], np.float32))])


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals go to the main thread")
@pytest.mark.parametrize("mode", ["steps", "events"])
def test_ctrl_c_stops_a_long_emulator_run(mode):
    """A runaway network under a guard raised to 2^28 steps runs for 15-45 s here before its
    RunawayError; SIGINT stops it with KeyboardInterrupt within a poll (50 ms) and a step, and
    the next run works. (A bound that the planted bug L4 can overrun without hanging.)"""
    placement = asyncsnn.Chip.preset("ideal").place(_self_exciting())
    opts = asyncsnn.RunOptions(mode=mode, runaway_steps=2**28)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        placement.run(np.ones((2, 1, 1), np.uint32), opts)
    assert time.perf_counter() - t0 < 3
    r = placement.run(np.zeros((1, 3, 1), np.uint32), opts)
    assert r.out_counts.shape == (1, 3, 1)


def _emulate_args(out) -> list[str]:
    return ["emulate", "--sizes", "30,20,5", "--batch", "6", "--frames", "8", "--scheduler", "fifo",
            "--F", "1,2,inf", "--out", str(out), "--no-progress", "--no-plots"]


def test_ctrl_c_during_emulate_keeps_the_finished_runs_and_resume_completes_them(tmp_path, monkeypatch, capsys):
    import csv
    import json

    from asyncsnn.chip import Placement
    from asyncsnn.cli import main

    assert main(_emulate_args(tmp_path / "full")) == 0
    (full,) = (tmp_path / "full").iterdir()
    real, calls = Placement.run, {"n": 0}

    def interrupted(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Placement, "run", interrupted)
    assert main(_emulate_args(tmp_path / "cut")) == 130
    monkeypatch.undo()
    (cut,) = (tmp_path / "cut").iterdir()
    assert "continue with: asyncsnn emulate --resume" in capsys.readouterr().err
    status = json.loads((cut / "status.json").read_text())
    assert status == {"command": "emulate", "state": "interrupted", "cells_done": 2, "cells": 6}
    partial = json.loads((cut / "results.json").read_text())
    assert partial["complete"] is False and len(partial["rows"]) == 2

    assert main(["emulate", "--resume", str(cut), "--no-progress"]) == 0
    assert json.loads((cut / "status.json").read_text())["state"] == "finished"
    assert json.loads((cut / "results.json").read_text())["complete"] is True
    a = list(csv.DictReader(open(full / "summary.csv")))
    b = list(csv.DictReader(open(cut / "summary.csv")))
    assert a == b and len(a) == 6  # the same table as the uninterrupted run, in the same order
    assert main(["emulate", "--resume", str(cut)]) == 2  # finished: nothing to resume
    assert "has finished already" in capsys.readouterr().err


def _study_config(out):
    from asyncsnn.experiment import experiment_config

    return experiment_config(overrides={
        "experiment.schedulers": "fifo", "experiment.F": [1, 2, "inf"], "experiment.test_limit": 8,
        "experiment.datasets": [{"name": "manifold", "label": "tiny", "dt": 20000, "n_frames": 5, "options": {
            "n_classes": 3, "train_per_class": 16, "test_per_class": 8, "n_channels": 20}}],
        "model.hidden": [12], "train.epochs": 2, "train.batch_size": 16, "out": str(out)})


def test_ctrl_c_during_the_study_keeps_what_finished_and_resume_completes_it(tmp_path, monkeypatch):
    """Interrupted in its evaluation (fourth model run) and, another time, in the second epoch of
    its second model's training, the study keeps what finished (``status.json`` interrupted,
    ``results.json`` complete: false, every (scheduler, F) whole or absent); ``experiment
    --resume`` (in the default process pool) ends with the tables of the uninterrupted study,
    row for row."""
    import csv
    import json

    from asyncsnn.cli import main
    from asyncsnn.experiment import run_experiment
    from asyncsnn.train import export
    from asyncsnn.train.loop import Trainer

    full = run_experiment(_study_config(tmp_path / "full"), progress=False, plots=False, log=lambda s: None)
    expected = list(csv.DictReader(open(full.run_dir / "cells.csv")))
    relative = list(csv.DictReader(open(full.run_dir / "relative.csv")))
    curves = list(csv.DictReader(open(full.run_dir / "decide_early.csv")))

    real_sbs, real_epoch, calls = export.run_side_by_side, Trainer.train_epoch, {"sbs": 0, "epoch": 0}

    def sbs(*a, **kw):
        calls["sbs"] += 1
        if calls["sbs"] == 4:  # F = 2's unlayered model: F = 2's layered cells are in, unpaired
            raise KeyboardInterrupt
        return real_sbs(*a, **kw)

    def epoch(self):
        calls["epoch"] += 1
        if calls["epoch"] == 4:  # the second epoch of the second model
            raise KeyboardInterrupt
        return real_epoch(self)

    for where, patch in (("evaluation", (export, "run_side_by_side", sbs)), ("training", (Trainer, "train_epoch", epoch))):
        out = tmp_path / where
        monkeypatch.setattr(*patch)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(_study_config(out), progress=False, plots=False, log=lambda s: None)
        monkeypatch.undo()
        (run,) = out.glob("experiment-*")
        status = json.loads((run / "status.json").read_text())
        results = json.loads((run / "results.json").read_text())
        assert status["state"] == "interrupted" and results["complete"] is False
        if where == "evaluation":
            assert status["models_trained"] == 2 and len(results["cells"]) == status["cells_done"] > 0
            # the finished (scheduler, F) only: F = 2's layered model ran, its pair did not
            assert {(c["model"], c["F"]) for c in results["cells"]} == {("layered", 1), ("unlayered", 1)}
        else:
            assert status["models_trained"] == 1 and results["cells"] == []
        plots = [] if where == "evaluation" else ["--no-plots"]  # (the first cell, done before, is drawn)
        assert main(["experiment", "--resume", str(run), "--no-progress", *plots]) == 0
        assert json.loads((run / "status.json").read_text())["state"] == "finished"
        assert list(csv.DictReader(open(run / "cells.csv"))) == expected, where
        assert list(csv.DictReader(open(run / "relative.csv"))) == relative, where
        assert list(csv.DictReader(open(run / "decide_early.csv"))) == curves, where
        assert bool(list(run.glob("raster-*.png"))) == (where == "evaluation")
    assert main(["experiment", "--resume", str(run)]) == 2  # finished: nothing to resume
    assert main(["experiment", "--resume", str(run), "--epochs", "3"]) == 2  # its own config only


def test_generated_dataset_options_that_cannot_fit_are_a_memory_error_up_front(monkeypatch):
    """``[data.options] train_per_class = 1e9`` passed 13 GB before failing; now the options that
    ask for it are named before anything is allocated (available memory fixed at 16 GB)."""
    from asyncsnn import chip as chip_module
    from asyncsnn.train import load_config

    monkeypatch.setattr(chip_module, "available_memory", lambda: 16 * 10**9)
    cfg = load_config(None, {"data.options": {"train_per_class": 10**9}})
    with pytest.raises(MemoryError, match=r"manifold: 10 classes x 1000000000 train samples per class x 100 "
                                          r"channels .* need about 8160\.0 GB; 16\.0 GB are available"):
        cfg.data.load()
    small = load_config(None, {"data.options": {"train_per_class": 3, "test_per_class": 2}}).data.load()
    assert len(small.train) == 30 and len(small.test) == 20


def test_a_placement_holds_one_compact_copy_of_a_large_network(monkeypatch):
    """A placed network holds its compiled form only: at most 12 bytes per synapse (a 32-bit
    target and a float32 weight, plus per-core segments) on random connectivity, the chip's worst
    case. A network past NATIVE_CACHE_ENTRIES keeps no native conversion of its own (it would be
    a second copy); it is converted again on each use and runs the same."""
    import asyncsnn.network as network_module

    rng = np.random.default_rng(0)
    sizes, k, prev = [400, 400, 10], 60, 300
    pops, projs = [], []
    for i, size in enumerate(sizes):
        rows = np.repeat(np.arange(size, dtype=np.int32), k)
        cols = ((rng.integers(0, prev, size)[:, None] + np.arange(k)[None, :] * (prev // k)) % prev).astype(np.int32)
        vals = rng.normal(0.3, 0.2, rows.size).astype(np.float32)
        pops.append(Population(size, 1.0, 0.9))
        projs.append(Projection("input" if i == 0 else i - 1, i, rows=rows, cols=cols.ravel(), values=vals,
                                shape=(size, prev)))
        prev = size
    net = Network(300, pops, projs, output=2)
    chip = asyncsnn.Chip.preset("ideal", mesh_width=3, mesh_height=3, core_neurons=100, core_fan_in=10**6,
                                core_fan_out=10**6, core_synapses=10**7)
    x = (rng.random((2, 3, 300)) < 0.1).astype(np.uint32)
    placed = chip.place(net)
    synapses = placed.native.n_synapses
    assert synapses == 810 * k
    held = placed.nbytes
    assert 8 * synapses < held <= 12 * synapses
    assert net._native_cache is not None  # a small network keeps its conversion
    before = placed.run(x, F=4)
    monkeypatch.setattr(network_module, "NATIVE_CACHE_ENTRIES", synapses - 1)
    big = Network(300, pops, projs, output=2)
    again = chip.place(big)
    assert big._native_cache is None and big.to_native() is not big.to_native()
    after = again.run(x, F=4)
    assert np.array_equal(before.out_counts, after.out_counts) and before.out_counts.sum() > 0
    # int32 indices go to the native side as they are; int64 ones place the same network
    wide = Network(300, pops, [Projection(p.source, p.target, rows=p.rows.astype(np.int64), cols=p.cols.astype(np.int64),
                                          values=p.values, shape=p.shape) for p in projs], output=2)
    i32 = np.array([0, 2], np.int32)
    assert [a.dtype for a in network_module._sparse_native(0, (3, 4), i32, i32, np.ones(2, np.float32))[1:3]] \
        == [np.int32, np.int32]
    placed64 = chip.place(wide)
    assert placed64.nbytes == held
    assert np.array_equal(placed64.run(x, F=4).out_counts, before.out_counts)
