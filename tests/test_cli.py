"""`asyncsnn emulate` end to end on a tiny configuration."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import asyncsnn
from asyncsnn.cli import main


def test_emulate_writes_a_complete_run_folder(tmp_path, capsys):
    args = ["emulate", "--sizes", "20,8,4", "--batch", "4", "--frames", "3", "--rate", "0.3",
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| mode |" in out.replace("  ", " ") or "mode" in out.splitlines()[1]
    (run,) = list(tmp_path.iterdir())
    for name in ("config.json", "summary.csv", "summary.md", "results.json", "raster.png", "cores.png",
                 "network.npz"):
        assert (run / name).exists(), name
    rows = list(csv.DictReader(open(run / "summary.csv")))
    assert len(rows) == 2 * 4 * 2  # modes x schedulers x F values
    assert {r["mode"] for r in rows} == {"steps", "events"}
    for r in rows:
        assert float(r["spikes"]) >= 0 and float(r["synaptic_operations"]) > 0
        if r["mode"] == "events":
            assert float(r["time_ns"]) > 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["chip"]["name"] == "loihi" and cfg["n_neurons"] == 12
    # A second run never overwrites the first; a saved network can be loaded back.
    assert main(args[:-1] + ["--network", str(run / "network.npz"), "--no-progress", "--no-plots"]) == 0
    runs = sorted(tmp_path.iterdir())
    assert len(runs) == 2
    rows2 = list(csv.DictReader(open(runs[1] / "summary.csv")))
    assert [r["spikes"] for r in rows2] == [r["spikes"] for r in rows]


def test_emulate_reports_bad_options_cleanly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "asyncsnn.cli", "emulate", "--chip", "truenorth",
                           "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown preset" in proc.stderr and "Traceback" not in proc.stderr
    assert main(["emulate", "--set", "hop_latency_ticks=-3", "--out", str(tmp_path)]) == 2
    assert main(["emulate", "--set", "nonsense", "--out", str(tmp_path)]) == 2


def test_emulate_spreads_the_network_over_cores(tmp_path):
    args = ["emulate", "--sizes", "20,8,4", "--batch", "2", "--frames", "2", "--core-neurons", "4",
            "--set", "hop_latency_ticks=7", "--mode", "events", "--scheduler", "fifo", "--F", "inf",
            "--out", str(tmp_path), "--no-progress", "--no-plots"]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["chip"]["core"]["neurons"] == 4 and cfg["chip"]["hop_latency_ticks"] == 7
    usage = json.loads((run / "results.json").read_text())["usage"]
    assert sum(1 for n in usage["neurons"] if n > 0) == 3


def test_python_dash_m_runs_the_command_line():
    out = subprocess.run([sys.executable, "-m", "asyncsnn", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"asyncsnn {asyncsnn.__version__}"


def test_dataset_options_belong_to_their_dataset(tmp_path):
    """The default dataset's options never reach another dataset (they used to make
    `--set data.name=shd` crash with a TypeError inside the loader)."""
    from asyncsnn import data
    from asyncsnn.train import load_config

    cfg = load_config(None, {"data.name": "digits"})
    assert cfg.data.options is None and cfg.data.dataset_options() == {}
    assert load_config(None).data.dataset_options() == {"n_classes": 4, "train_per_class": 64, "test_per_class": 32}
    with pytest.raises(ValueError, match=r"shd: unknown option\(s\) \['n_classes'\]; allowed: \["):
        data.load("shd", data_dir=tmp_path, n_classes=4)
    assert main(["train", "--set", "data.name=shd", "--set", f"data.data_dir={tmp_path}", "--out", str(tmp_path)]) == 2


def test_plots_show_the_output_neurons_chip_time_and_only_used_cores():
    from asyncsnn.plots import raster_points, used_box

    trace = np.array([[0, 0, 0, 10, 1], [0, 0, 1, 25, 4], [1, 0, 0, 5, 0]])
    t, n, out = raster_points(trace, 0, tick_ns=2.0, output=(4, 6))
    assert t.tolist() == [0.02, 0.05] and n.tolist() == [1, 4] and out.tolist() == [False, True]  # us
    assert raster_points(trace, 1)[0].tolist() == [5.0]  # global steps without a tick length
    used = np.zeros(8 * 16, bool)
    used[[0, 1, 8, 9, 10]] = True  # cores (0,0) (1,0) (0,1) (1,1) (2,1) of an 8 x 16 mesh
    assert used_box(used, 8, 16) == (slice(0, 2), slice(0, 3))
    assert used_box(np.zeros(4, bool), 2, 2) == (slice(0, 2), slice(0, 2))
