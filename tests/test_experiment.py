"""`asyncsnn experiment`: the decide-early analysis by hand, the config, and a tiny end-to-end run."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from asyncsnn.cli import main
from asyncsnn.errors import ConfigError
from asyncsnn.experiment import (
    DEFAULT,
    decide_early,
    experiment_config,
    load_experiment_config,
    relative_row,
)


def test_decide_early_by_hand():
    # Two samples, outputs are neurons 10 and 11 (classes 0 and 1).
    # sample 0 (label 1): hidden, out0, hidden, out1, out1     -> decision 0 after 2 spikes, 1 after 5
    # sample 1 (label 0): hidden, hidden, out0                  -> decision 0 after 3 spikes
    trace = np.array([
        [0, 0, 0, 0, 3], [0, 0, 1, 1, 10], [0, 0, 1, 1, 4], [0, 0, 2, 2, 11], [0, 0, 3, 3, 11],
        [1, 0, 0, 0, 5], [1, 0, 1, 1, 6], [1, 0, 2, 2, 10],
    ])
    y = np.array([1, 0])
    acc = decide_early(trace, y, 10, 2, np.arange(7), "spikes")
    #            k: 0    1    2    3    4    5    6
    assert acc.tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    # by time (ties at equal time: every spike up to and including t)
    acc_t = decide_early(trace, y, 10, 2, np.arange(5), "time")
    #            t: 0    1    2    3    4
    assert acc_t.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    # rows out of time order (the analysis sorts them) give the same curve
    perm = np.random.default_rng(0).permutation(len(trace))
    assert decide_early(trace[perm], y, 10, 2, np.arange(5), "time").tolist() == acc_t.tolist()
    # a tie between outputs goes to the lower class, as in the chip's predictions
    tie = np.array([[0, 0, 0, 0, 11], [0, 0, 1, 1, 10]])
    assert decide_early(tie, np.array([0]), 10, 2, np.array([1, 2]), "spikes").tolist() == [0.0, 1.0]
    assert decide_early(np.zeros((0, 5)), np.array([0, 1]), 10, 2, np.array([0, 9]), "spikes").tolist() == [0.0, 0.0]


def test_relative_figures():
    lay = {"accuracy": 0.5, "spikes": 200.0, "synaptic_operations": 1000.0, "first_correct_step": 20.0,
           "first_correct_spikes_before": 40.0, "first_correct_ns": float("nan"), "energy_total_pj": 10.0}
    unl = {"accuracy": 0.8, "spikes": 100.0, "synaptic_operations": 250.0, "first_correct_step": 10.0,
           "first_correct_spikes_before": 10.0, "first_correct_ns": 5.0, "energy_total_pj": 8.0}
    r = relative_row(lay, unl)
    assert r["accuracy_gain_points"] == pytest.approx(30.0)
    assert r["spike_reduction"] == pytest.approx(0.5) and r["synaptic_operations_reduction"] == pytest.approx(0.75)
    assert r["speedup_first_correct_step"] == pytest.approx(2.0)
    assert r["speedup_first_correct_spikes"] == pytest.approx(4.0)
    assert math.isnan(r["speedup_first_correct_ns"])
    assert r["energy_reduction"] == pytest.approx(0.2)


def test_config_presets_and_errors(tmp_path):
    cfg = experiment_config()
    assert cfg.experiment.schedulers == ["random", "momentum", "fifo"] and cfg.experiment.F == [1, 4, 16, None]
    (spec,) = cfg.dataset_specs()
    assert spec.name == DEFAULT["data"]["name"] and cfg.dataset_config(spec).data.n_frames == 5
    full = experiment_config(full=True)
    names = [(s.name, s.optional) for s in full.dataset_specs()]
    assert names == [("manifold", False), ("digits", False), ("nmnist", True), ("shd", True),
                     ("spoken-digits", True)]
    assert [s.key for s in full.dataset_specs() if s.generate] == ["spoken-digits"]
    only = experiment_config(overrides={"experiment.only": "spoken-digits,digits"}, full=True)
    assert [s.key for s in only.dataset_specs()] == ["digits", "spoken-digits"]
    with pytest.raises(ConfigError, match=r"experiment.only: \['mnist'\]"):
        experiment_config(overrides={"experiment.only": "mnist"}, full=True).dataset_specs()
    assert full.dataset_config(full.dataset_specs()[2]).model.hidden == [256, 256]
    # overrides: experiment.* for the experiment, the others for every dataset (after its own settings)
    o = experiment_config(overrides={"experiment.F": [2, "inf"], "train.epochs": 1, "experiment.schedulers": "fifo",
                                     "out": str(tmp_path)}, full=True)
    assert o.experiment.F == [2, None] and o.experiment.schedulers == ["fifo"] and o.base.out == str(tmp_path)
    assert all(o.dataset_config(s).train.epochs == 1 for s in o.dataset_specs())
    bad = [
        ({"experiment.schedulers": ["layered"]}, "experiment.schedulers"),
        ({"experiment.schedulers": []}, "experiment.schedulers"),
        ({"experiment.F": [0]}, "experiment.F"),
        ({"experiment.F": "inf"}, "experiment.F"),
        ({"experiment.modes": ["fast"]}, "experiment.modes"),
        ({"experiment.colour": 1}, "experiment.colour"),
        ({"experiment.datasets": [{"name": "manifold", "dtt": 3}]}, "experiment.datasets[0].dtt"),
        ({"experiment.datasets": [{"name": "manifold"}, {"name": "manifold"}]}, "experiment.datasets"),
        ({"experiment.test_limit": 0}, "experiment.test_limit"),
        ({"train.lr": -1}, "train.lr"),
        ({"experiment.datasets": [{"name": "manifold", "set": {"model.beta": 2}}]}, "model.beta"),
    ]
    for over, field in bad:
        with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
            experiment_config(overrides=over)
    with pytest.raises(FileNotFoundError):
        load_experiment_config(tmp_path / "missing.toml")
    assert main(["experiment", "--set", "experiment.F=[0]", "--out", str(tmp_path)]) == 2


TINY_TOML = """
[experiment]
schedulers = ["momentum", "fifo"]
F = [2, "inf"]
test_limit = 48
curve_points = 20

[[experiment.datasets]]
name = "manifold"
label = "tiny"
dt = 20000
n_frames = 5
options = {n_classes = 3, train_per_class = 48, test_per_class = 16, n_channels = 40}

[[experiment.datasets]]
name = "shd"
optional = true
dt = 20000
n_frames = 5

[model]
hidden = [24]
core_neurons = 12

[train]
epochs = 6
batch_size = 16
lr = 0.02
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    (root / "tiny.toml").write_text(TINY_TOML)
    rc = main(["experiment", "--config", str(root / "tiny.toml"), "--out", str(root / "runs"), "--no-progress",
               "--set", f"data.data_dir={root / 'data'}"])
    assert rc == 0
    (run,) = list((root / "runs").iterdir())
    return run


def _strict_json(path):
    def no_constant(name):
        raise ValueError(f"{path}: non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constant)


def test_experiment_end_to_end(tiny_run):
    run = tiny_run
    for name in ("config.json", "results.json", "cells.csv", "relative.csv", "decide_early.csv", "training.csv",
                 "summary.md", "decide_early-tiny.png", "spike_density-tiny.png", "cores-tiny-layered.png",
                 "cores-tiny-unlayered.png", "raster-tiny-layered-steps.png", "raster-tiny-unlayered-events.png",
                 "tiny/layered/network.npz", "tiny/unlayered-fifo/network.npz", "tiny/unlayered-momentum/metrics.csv"):
        assert (run / name).exists(), name
    res = _strict_json(run / "results.json")
    # The missing optional dataset is skipped with the folder and URL to put its files in.
    (skip,) = res["skipped"]
    assert skip["dataset"] == "shd" and "shd" in skip["reason"] and "http" in skip["reason"]
    cells = res["cells"]
    assert len(cells) == 2 * 2 * 2 * 3  # schedulers x models x F x engines
    key = lambda c: (c["scheduler"], c["model"], c["F"])  # noqa: E731
    by = {(key(c), c["engine"]): c for c in cells}
    for c in cells:
        assert 0.0 <= c["accuracy"] <= 1.0 and c["samples"] == 48
        assert c["spikes"] > 0 and c["synaptic_operations"] > 0 and c["steps"] >= 5
        assert c["steps_agree"] is True
        if c["engine"] == "emulator-events":
            assert c["energy_total_pj"] > 0 and c["first_out_ns"] > 0
        # the chip's steps mode gives the simulator's figures exactly
        if c["engine"] == "emulator-steps":
            py = by[(key(c), "pytorch")]
            for k in ("accuracy", "spikes", "synaptic_operations", "steps", "first_correct_step", "first_correct_spikes_before"):
                assert c[k] == pytest.approx(py[k], rel=1e-12, abs=1e-12), k
    # Trained models beat chance (3 classes) clearly on their own schedule.
    unl = [c["accuracy"] for c in cells if c["model"] == "unlayered" and c["engine"] == "pytorch"]
    assert max(unl) > 0.6 and np.mean(unl) > 0.45
    # Relative figures are computed from the raw cells.
    assert len(res["relative"]) == 2 * 2 * 3
    for r in res["relative"]:
        lay = by[((r["scheduler"], "layered", r["F"]), r["engine"])]
        un = by[((r["scheduler"], "unlayered", r["F"]), r["engine"])]
        assert r["accuracy_gain_points"] == pytest.approx(100 * (un["accuracy"] - lay["accuracy"]))
        assert r["spike_reduction"] == pytest.approx(1 - un["spikes"] / lay["spikes"])
        assert r["speedup_first_correct_step"] == pytest.approx(lay["first_correct_step"] / un["first_correct_step"])
        if r["engine"] == "emulator-events":
            assert r["speedup_first_correct_ns"] == pytest.approx(lay["first_correct_ns"] / un["first_correct_ns"])
            assert r["energy_reduction"] == pytest.approx(1 - un["energy_total_pj"] / lay["energy_total_pj"])
    # Each decide-early curve ends at the cell's accuracy (all spikes integrated) and starts at 0.
    curves: dict = {}
    for row in csv.DictReader(open(run / "decide_early.csv")):
        curves.setdefault((row["scheduler"], row["model"], row["F"], row["engine"], row["axis"]), []).append(
            (float(row["x"]), float(row["accuracy"])))
    assert {k[4] for k in curves} == {"spikes", "steps", "ns"}
    assert len(curves) == 2 * 2 * 2 * 4  # schedulers x models x F x (steps: spikes, steps; events: spikes, ns)
    for (sched, model, F, engine, axis), pts in curves.items():
        xs, accs = zip(*pts)
        assert list(xs) == sorted(xs) and accs[0] == 0.0
        F = int(F) if F != "inf" else "inf"
        assert accs[-1] == pytest.approx(by[((sched, model, F), engine)]["accuracy"]), (sched, model, F, engine, axis)
    # The summary shows both tables; the training table names every model.
    md = (run / "summary.md").read_text()
    assert "acc layered" in md and "speed-up (ns)" in md and "unlayered-fifo" in md and "skipped shd" in md
    cfg = _strict_json(run / "config.json")
    assert cfg["experiment"]["F"] == [2, "inf"] and cfg["model"]["hidden"] == [24]


def test_experiment_is_deterministic(tiny_run, tmp_path):
    """The same config and seed give the same cells (training included)."""
    cfg = _strict_json(tiny_run / "config.json")
    (tmp_path / "again.json").write_text(json.dumps(cfg))
    assert main(["experiment", "--config", str(tmp_path / "again.json"), "--out", str(tmp_path / "runs"),
                 "--no-progress", "--no-plots"]) == 0
    (run,) = list((tmp_path / "runs").iterdir())
    a = list(csv.DictReader(open(tiny_run / "cells.csv")))
    b = list(csv.DictReader(open(run / "cells.csv")))
    assert a == b
