"""Untrusted files: a crafted checkpoint cannot run code when a run is resumed or used to start
another; checkpoints are written without following planted files."""

from __future__ import annotations

import os

import pytest
import torch

from asyncsnn import InputError, checkpoints
from asyncsnn.train import load_config, resume, train

TINY = {"data.options": {"n_classes": 3, "train_per_class": 8, "test_per_class": 4, "n_channels": 20},
        "data.n_frames": 6, "data.dt": 8000, "model.hidden": [8], "train.batch_size": 8, "train.epochs": 1}


class Payload:
    """Unpickling this runs code (what a malicious checkpoint would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_cannot_run_code_on_resume(tmp_path):
    tr = train(load_config(None, {**TINY, "out": str(tmp_path / "runs")}), progress=False, log=lambda s: None)
    marker = tmp_path / "pwned"
    state = torch.load(tr.checkpoint_path, weights_only=True)
    state["history"].append(Payload(str(marker)))
    torch.save(state, tr.checkpoint_path)  # the attacker's file, in the run folder
    with pytest.raises(InputError, match="invalid checkpoint .*refused: loading other objects could run code"):
        resume(tr.run_dir, epochs=2, progress=False, log=lambda s: None)
    assert not marker.exists()


def test_a_crafted_spsn_checkpoint_cannot_run_code_through_init_from(tmp_path):
    cfg = load_config(None, {**TINY, "out": str(tmp_path / "runs"), "train.method": "spsn"})
    tr = train(cfg, progress=False, log=lambda s: None)
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(str(marker))}, tr.checkpoint_path)
    with pytest.raises(InputError, match="invalid checkpoint"):
        train(load_config(None, {**TINY, "out": str(tmp_path / "runs"), "model.init_from": str(tr.run_dir)}),
              progress=False, log=lambda s: None)
    assert not marker.exists()


def test_checkpoints_hold_plain_data_and_never_follow_a_planted_file(tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    path = tmp_path / "checkpoint.pt"
    for planted in (path.with_name("checkpoint.pt.tmp"), path.with_name(".checkpoint.pt.tmp")):
        planted.symlink_to(target)
    import numpy as np

    checkpoints.save(path, {"w": torch.ones(2), "history": [{"loss": np.float64(0.5)}], "epoch": np.int64(3)})
    assert target.read_text() == "keep me"
    state = checkpoints.load(path)
    assert state["epoch"] == 3 and type(state["history"][0]["loss"]) is float
    with pytest.raises(TypeError, match=r"checkpoint\['bad'\]: a object is not tensors or plain data"):
        checkpoints.save(path, {"bad": object()})
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match="invalid checkpoint"):
        checkpoints.load(path)


# ------------------------------------------------------------------ files and caches
def test_no_write_follows_a_planted_symlink(tmp_path):
    """Network files, JSON and CSV results are written through a fresh temporary file: a
    symlink planted at any temporary name is never written through."""
    import numpy as np

    from asyncsnn import runs
    from asyncsnn.generate import random_feedforward

    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    for name in ("net.npz.tmp.npz", "out.json.tmp", "rows.csv.tmp", ".net.npz.tmp"):
        (tmp_path / name).symlink_to(target)
    net = random_feedforward([4, 3], seed=0)
    net.save(tmp_path / "net.npz")
    runs.write_json(tmp_path / "out.json", {"a": 1})
    runs.write_csv(tmp_path / "rows.csv", [{"a": 1}])
    assert target.read_text() == "keep me"
    from asyncsnn import Network

    assert np.array_equal(Network.load(tmp_path / "net.npz").dense_weights(), net.dense_weights())


def test_the_frame_cache_stays_in_its_folder_whatever_the_options(tmp_path, monkeypatch):
    from asyncsnn import data
    from asyncsnn.data import generated

    monkeypatch.setattr(generated.ManifoldDataset, "cache_key", lambda self: "../../escaped-" + self.split)
    data.load("manifold", dt=5000, data_dir=tmp_path / "root", n_classes=2, train_per_class=2, test_per_class=1,
              progress=False)
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.frames"))
    assert len(made) == 2 and all(p.startswith("root/cache/manifold-") for p in made), made


def test_recorded_caches_follow_their_files(tmp_path):
    """Changed SHD labels and added N-MNIST files make a new frame cache, never a stale one."""
    import numpy as np

    from asyncsnn import data
    from test_datasets import write_nmnist_bin, write_shd_h5

    write_shd_h5(tmp_path / "SHD" / "shd_train.h5", [[0.0], [0.1]], [[1], [2]], [4, 5])
    write_shd_h5(tmp_path / "SHD" / "shd_test.h5", [[0.0]], [[1]], [2])
    assert data.load("shd", data_dir=tmp_path, dt=100_000, progress=False).train.labels().tolist() == [4, 5]
    write_shd_h5(tmp_path / "SHD" / "shd_train.h5", [[0.0], [0.1]], [[1], [2]], [7, 8])
    assert data.load("shd", data_dir=tmp_path, dt=100_000, progress=False).train.labels().tolist() == [7, 8]

    write_nmnist_bin(tmp_path / "NMNIST" / "Train" / "0" / "00001.bin", [(1, 1, 1, 10)])
    write_nmnist_bin(tmp_path / "NMNIST" / "Test" / "1" / "00001.bin", [(1, 2, 1, 10)])
    assert len(data.load("nmnist", data_dir=tmp_path, dt=1000, progress=False).train) == 1
    write_nmnist_bin(tmp_path / "NMNIST" / "Train" / "3" / "00002.bin", [(2, 2, 0, 20)])
    again = data.load("nmnist", data_dir=tmp_path, dt=1000, progress=False).train
    assert len(again) == 2 and sorted(again[i][1] for i in range(2)) == [0, 3]
    assert np.asarray(again[1][0]).shape[1] == 2312


# ------------------------------------------------------------------ no silent coercion, one error contract
@pytest.mark.parametrize("field, value, message", [
    ("refractory", "false", r"populations\[0\]\.refractory: 'false' \(str\) must be True or False"),
    ("size", 2.9, r"populations\[0\]\.size: 2\.9 \(float\) must be an integer"),
    ("theta", True, r"populations\[0\]\.theta: True \(bool\) must be a number"),
    ("reset", 0, r"populations\[0\]\.reset: 0 \(int\) must be a string"),
])
def test_network_fields_are_never_coerced(field, value, message):
    import numpy as np

    from asyncsnn import Network, NetworkError, Population, Projection

    pop = Population(**{"size": 2, field: value})
    w = np.eye(2, dtype=np.float32)
    with pytest.raises(NetworkError, match=message):
        Network(2, [pop], [Projection("input", 0, w)]).to_native()
    with pytest.raises(NetworkError, match=r"n_inputs: 2\.9 \(float\) must be an integer"):
        Network(2.9, [Population(2)], [Projection("input", 0, w)]).to_native()


@pytest.mark.parametrize("labels", [[0.0, float("nan")], [0.5, 1.0], [True, False]])
def test_labels_must_be_class_indices(labels):
    import numpy as np

    import asyncsnn
    from asyncsnn.generate import random_feedforward

    net = random_feedforward([4, 3], seed=0)
    with pytest.raises(InputError, match="labels: expected integer class indices"):
        asyncsnn.Chip.preset("ideal").run(net, np.ones((2, 2, 4), np.uint32), labels=labels)


@pytest.mark.parametrize("argv, message", [
    (["emulate", "--rate", "5"], "--rate: 5 is outside 0..1"),
    (["emulate", "--rate", "nan"], "--rate: nan is outside 0..1"),
    (["emulate", "--batch", "0"], "--batch: 0 is outside 1.."),
    (["evaluate", "x", "--limit", "-1"], "--limit: -1 is outside 1.."),
    (["evaluate", "x", "--limit", "0"], "--limit: 0 is outside 1.."),
    (["import", "x.nir", "-o", "y.npz", "--dt", "-1"], "--dt: -1 is outside"),
])
def test_cli_range_errors_are_one_line(argv, message, capsys):
    from asyncsnn.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_internal_errors_are_one_line_unless_debug(monkeypatch, capsys):
    from asyncsnn import cli

    def boom(args):
        raise RuntimeError("something unexpected\nmore lines")

    monkeypatch.setattr(cli, "cmd_emulate", boom)
    assert cli.main(["emulate"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: something unexpected" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "emulate"])


def test_no_cap_switches_the_runaway_guard_off_silently():
    import asyncsnn

    with pytest.raises(InputError, match=r"max_steps: 9223372036854775807 is above runaway_steps = 65536"):
        asyncsnn.RunOptions(max_steps=2**63 - 1)
    ok = asyncsnn.RunOptions(max_steps=2**20, runaway_steps=2**20)  # raised explicitly: allowed
    assert ok.step_limit == (2**20, False)


def test_empty_batches_keep_the_documented_shapes():
    import numpy as np

    import asyncsnn
    from asyncsnn.generate import random_feedforward

    net = random_feedforward([4, 5, 3], seed=0)
    r = asyncsnn.Chip.preset("ideal").run(net, np.zeros((0, 3, 4), np.uint32))
    assert r.out_counts.shape == (0, 3, 3) and r.v_final.shape == (0, 8) and r.first_spike.shape == (0, 3)
    r = asyncsnn.Chip.preset("ideal").run(net, np.zeros((2, 0, 4), np.uint32))
    assert r.out_counts.shape == (2, 0, 3) and r.v_final.shape == (2, 8)


def test_a_run_whose_results_cannot_fit_is_a_memory_error_not_a_crash(monkeypatch):
    """An output population of 2^20 neurons over 4 096 frames asks for about 70 GB of results:
    refused up front with MemoryError naming the request, for dense and event inputs (the
    machine's available memory fixed at 16 GB, so the test means the same everywhere)."""
    import numpy as np

    from asyncsnn import chip as chip_module

    monkeypatch.setattr(chip_module, "available_memory", lambda: 16 * 10**9)

    import asyncsnn
    from asyncsnn import Network, Population, Projection

    big = 2**20
    net = Network(1, [Population(big)], [Projection("input", 0, rows=np.arange(big), cols=np.zeros(big, np.int64),
                                                    values=np.ones(big, np.float32), shape=(big, 1))])
    chip = asyncsnn.Chip.preset("ideal")
    with pytest.raises(MemoryError, match=r"run: 4 samples x 4096 frames x 1048576 outputs need about \d+\.\d GB"):
        chip.run(net, np.zeros((4, 4096, 1), np.uint32))
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    with pytest.raises(MemoryError, match="4 samples x 4096 frames"):
        chip.place(net).run(events=[empty] * 4, n_frames=4096)


# ------------------------------------------------------------------ run folders survive interruption
def _tiny_cfg(tmp_path, epochs):
    return load_config(None, {**TINY, "out": str(tmp_path / "runs"), "train.epochs": epochs})


def test_ctrl_c_leaves_a_consistent_run_folder_that_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import json

    from asyncsnn.train.loop import Trainer

    full = train(_tiny_cfg(tmp_path, 3), progress=False, log=lambda s: None)
    assert json.loads((full.run_dir / "status.json").read_text())["state"] == "finished"
    real = Trainer.train_epoch
    calls = {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_tiny_cfg(tmp_path, 3), progress=False, log=lambda s: None)
    monkeypatch.undo()
    run = max((tmp_path / "runs").glob("train-*"), key=lambda p: p.stat().st_mtime_ns)
    status = json.loads((run / "status.json").read_text())
    assert status == {"state": "interrupted", "epochs_done": 1, "epochs": 3}
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 1
    cont = resume(run, progress=False, log=lambda s: None)
    assert all(torch.equal(a, b) for a, b in zip(full.sim.weights, cont.sim.weights))


def test_a_killed_training_process_resumes_to_the_same_weights(tmp_path):
    """`asyncsnn train` killed with SIGKILL at some point after its first checkpoint (perhaps
    during a save) leaves a checkpoint that loads, and resuming gives the uninterrupted run."""
    import json
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data": {"options": TINY["data.options"], "n_frames": 6, "dt": 8000},
                               "model": {"hidden": [8]}, "train": {"batch_size": 8, "epochs": 100_000}}))
    # far more epochs than can run before the kill below, on any machine: a 40-epoch run once
    # finished in the 0.7 s this test waits after the first checkpoint
    proc = subprocess.Popen([sys.executable, "-m", "asyncsnn", "-q", "train", "--config", str(cfg), "--out",
                             str(tmp_path / "killed"), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    ck = None
    while time.monotonic() < deadline and ck is None:
        found = list((tmp_path / "killed").glob("train-*/checkpoint.pt"))
        ck = found[0] if found else None
        time.sleep(0.05)
    assert ck is not None, "no checkpoint within 120 s"
    time.sleep(0.7)  # a few more epochs, and perhaps a save in flight
    assert proc.poll() is None, "the training process ended before it was killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = ck.parent
    done = int(checkpoints.load(ck)["epoch"])
    assert 1 <= done < 100_000
    cont = resume(run, epochs=done + 1, progress=False, log=lambda s: None)
    ref = train(load_config(cfg, {"out": str(tmp_path / "ref"), "train.epochs": done + 1}), progress=False,
                log=lambda s: None)
    assert all(torch.equal(a, b) for a, b in zip(ref.sim.weights, cont.sim.weights))


def test_sparse_indices_must_be_integers():
    import numpy as np

    from asyncsnn import Network, NetworkError, Population, Projection

    proj = Projection("input", 0, rows=np.array([0.0, 1.7]), cols=np.array([0, 1]), values=np.ones(2, np.float32),
                      shape=(2, 2))
    with pytest.raises(NetworkError, match=r"projections\[0\]\.rows: expected integer indices, got float64"):
        Network(2, [Population(2)], [proj]).to_native()
    with pytest.raises(NetworkError, match=r"projections\[0\]\.shape\[0\]: 2\.5"):
        Network(2, [Population(2)], [Projection("input", 0, rows=np.array([0]), cols=np.array([0]),
                                                values=np.ones(1, np.float32), shape=(2.5, 2))]).to_native()


# ------------------------------------------------------------------ fuzz: garbage at the public API
def _garbage():
    import numpy as np
    from hypothesis import strategies as st

    return st.one_of(
        st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=6), st.sampled_from(["../a", "inf", "fifo", "steps", "", "x"]),
        st.lists(st.integers(-3, 5), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.binary(max_size=4), st.sampled_from([np.int64(3), np.float32(1.5), np.array([1.0, 2.0]), np.zeros((2, 2)),
                                                np.array(["a"]), object()]))


FUZZ_COUNTS = {"tried": 0, "clear error": 0, "accepted and valid": 0}


def _fuzz_calls():
    import numpy as np

    import asyncsnn
    from asyncsnn import Chip, Network, Population, Projection, RunOptions, SpikeQueue
    from asyncsnn.generate import random_feedforward

    net = random_feedforward([4, 3, 2], seed=0)
    placement = Chip.preset("ideal").place(net)
    w = np.ones((3, 4), np.float32)
    ev = (np.array([0]), np.array([0]))

    def check_run(res, batch, frames):
        assert res.out_counts.shape == (batch, frames, 2) and res.v_final.shape == (batch, 5)
        assert res.first_spike.shape == (batch, 2)

    def run_inputs(g, _):
        a = np.asarray(g) if not isinstance(g, (dict, bytes)) and g is not object else g
        res = placement.run(g)
        check_run(res, a.shape[0], a.shape[1])

    return {
        "RunOptions": lambda g, k: RunOptions(**{k(RunOptions.names()): g}),
        "Chip.preset": lambda g, k: Chip.preset(g),
        "Chip": lambda g, k: Chip(**{k(["mesh_width", "tick_ns", "core_neurons", "arithmetic", "input_port",
                                        "link_buffer_depth", "hop_energy_pj"]): g}),
        "Population": lambda g, k: Network(4, [Population(3, **{k(["theta", "beta", "reset", "refractory", "kind",
                                                                   "alpha"]): g})],
                                           [Projection("input", 0, w)]).to_native(),
        "Projection.source": lambda g, k: Network(4, [Population(3)], [Projection(g, 0, w)]).to_native(),
        "Projection.weights": lambda g, k: Network(4, [Population(3)], [Projection("input", 0, g)]).to_native(),
        "Network.n_inputs": lambda g, k: Network(g, [Population(3)], [Projection("input", 0, w)]).to_native(),
        "Network.output": lambda g, k: Network(4, [Population(3)], [Projection("input", 0, w)], output=g).to_native(),
        "run(inputs)": run_inputs,
        "run(labels)": lambda g, k: check_run(placement.run(np.ones((2, 2, 4), np.uint32), labels=g), 2, 2),
        "run(events)": lambda g, k: placement.run(events=g),
        "run(events pair)": lambda g, k: placement.run(events=[(g, g)]),
        "run(dt)": lambda g, k: placement.run(events=[ev], dt=g),
        "run(n_frames)": lambda g, k: check_run(placement.run(events=[ev], n_frames=g), 1, 1 if g is None else int(g)),
        "run(option)": lambda g, k: check_run(placement.run(np.ones((1, 2, 4), np.uint32),
                                                            **{k(RunOptions.names()): g}), 1, 2),
        "place(mapping)": lambda g, k: Chip.preset("ideal").place(net, mapping=g),
        "SpikeQueue": lambda g, k: SpikeQueue(g, [0, 0, 1], [0, 0]),
        "SpikeQueue.push": lambda g, k: SpikeQueue(1, [0, 0, 1], [0, 0]).push(**{"source": 0, k(["source", "count", "frame", "step",
                                                                                  "overshoot"]): g}),
        "SpikeQueue.release": lambda g, k: SpikeQueue(1, [0, 0, 1], [0, 0]).release(
            **{"group": 0, "f": 1, "scheduler": "fifo", k(["group", "f", "scheduler", "frame", "step"]): g}),
        "hash_key": lambda g, k: asyncsnn.hash_key(g, 0, 0, 0, 0),
    }


from hypothesis import given as _given, settings as _settings, strategies as _st  # noqa: E402


@pytest.mark.parametrize("call", sorted(_fuzz_calls()))
@_settings(max_examples=60, deadline=None)
@_given(value=_garbage(), data=_st.data())
def test_garbage_at_the_public_api_gets_the_projects_errors_only(call, value, data):
    """Generated garbage (wrong types, huge or negative numbers, NaN, strings, arrays, objects)
    in every argument of the public entry points: the project's error classes only (or
    MemoryError), never a raw TypeError, OverflowError or a crash; an accepted call returns
    the documented shapes."""
    from asyncsnn import ConfigError, InputError, MappingError, NetworkError, RunawayError

    pick = lambda options: data.draw(_st.sampled_from(list(options)))  # noqa: E731
    FUZZ_COUNTS["tried"] += 1
    try:
        _fuzz_calls()[call](value, pick)
    except (ConfigError, InputError, MappingError, NetworkError, RunawayError, MemoryError):
        FUZZ_COUNTS["clear error"] += 1
        return
    FUZZ_COUNTS["accepted and valid"] += 1


# ----------------------------------------------------------------------------- --set overrides
def _config_keys() -> list[str]:
    from asyncsnn.train.config import Config

    d = Config().to_dict()
    return [f"{sec}.{k}" for sec, v in d.items() if isinstance(v, dict) for k in v] + \
        ["experiment.F", "experiment.only", "experiment.datasets", "experiment.schedulers", "out", "x", "", ".",
         "train.", "train.lr.x"]


_SET_TEXTS = ["", "=", "[", "{'a':1}", "[1,", "1e999", "-1e999", "nan", "inf", "-inf", "0x10", "1_000", "true",
              "None", "null", '"s"', "\u00e9", "\x00", "[[[[[]]]]]", "9" * 400, "-" + "9" * 400,
              '{"a": [1, {"b": 2}]}', "1,2,3", "inf,1", "momentum,", ",", "[null]", '["inf"]', "-0", "1e-400"]


@_settings(max_examples=300, deadline=None)
@_given(key=_st.sampled_from(_config_keys()),
        text=_st.one_of(_st.sampled_from(_SET_TEXTS), _st.text(max_size=30)),
        shape=_st.sampled_from(["{k}={t}", "{k}", "={t}", "{k}=={t}"]),
        experiment=_st.booleans())
def test_garbage_set_overrides_get_config_errors_only(key, text, shape, experiment):
    """Any `--set` argument, for `train` as for `experiment`, is accepted into a valid config or
    refused with a ConfigError (the CLI's exit 2 with the key named), never another exception."""
    from asyncsnn.cli import _key_values
    from asyncsnn.errors import ConfigError
    from asyncsnn.experiment import experiment_config

    arg = shape.format(k=key, t=text)
    try:
        overrides = _key_values([arg], "--set", ConfigError)
        if experiment:
            experiment_config(overrides=overrides).dataset_specs()
        else:
            load_config(None, overrides).train.run_options()
    except ConfigError:
        pass
