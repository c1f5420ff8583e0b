"""The run contract: one options type, one metric vocabulary, one hash, defined once and taken
by the chip, the PyTorch simulator, the numpy reference, the training config and the CLI."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import asyncsnn
from asyncsnn import Chip, Network, Population, Projection, RunOptions, _native, hashing, metrics, reference
from asyncsnn.errors import ConfigError, InputError
from asyncsnn.generate import poisson_frames, random_feedforward
from asyncsnn.sim import AsyncSimulator
from asyncsnn.sim.layered import layered_run
from asyncsnn.train import load_config

NET = random_feedforward([6, 5, 3], seed=0, grid=True)
X = poisson_frames(3, 4, 6, 0.5, seed=1)


def test_names_come_from_the_core():
    assert asyncsnn.SCHEDULERS == tuple(_native.SCHEDULERS) == ("fifo", "random", "momentum", "layered")
    assert asyncsnn.MODES == ("steps", "events") and asyncsnn.INPUT_MODES == ("all_at_once", "scheduled")
    for field, allowed in (("scheduler", asyncsnn.SCHEDULERS), ("mode", asyncsnn.MODES),
                           ("input_mode", asyncsnn.INPUT_MODES)):
        with pytest.raises(InputError, match=f"{field}: 'x'; allowed: {', '.join(allowed)}"):
            RunOptions(**{field: "x"})
        with pytest.raises(InputError, match=f"{field}: \"x\"; allowed: {', '.join(allowed)}"):
            _native.RunOptions(**{**RunOptions().to_native_kwargs(), field: "x"})


@pytest.mark.parametrize("value, want", [(None, None), ("inf", None), ("INF", None), ("none", None),
                                         (float("inf"), None), (3, 3), ("16", 16), (np.int64(2), 2)])
def test_f_parses_one_way(value, want):
    assert RunOptions(F=value).F == want
    assert asyncsnn.options.parse_f(value) == want


@pytest.mark.parametrize("kwargs, message", [
    (dict(F=0), r"F: 0 is outside 1\.\. \(or \"inf\" for no limit\)"),
    (dict(F=-2), "F: -2 is outside 1.."),
    (dict(F="many"), "F: 'many'; expected an integer >= 1"),
    (dict(F=True), "F: True is not an integer"),
    (dict(F=2.5), "F: 2.5 is not an integer"),
    (dict(F=4.0), "F: 4.0 is not an integer"),  # no silent coercion, not even of a whole float
    (dict(seed=-1), "seed: -1 is outside 0..="),
    (dict(seed=2**64), "seed: 18446744073709551616 is outside 0..="),
    (dict(sample_offset=-1), "sample_offset: -1 is outside"),
    (dict(max_steps=0), "max_steps: 0 is outside 1.."),
    (dict(runaway_steps=0), "runaway_steps: 0 is outside 1.."),
    (dict(threads=0), "threads: 0 is outside 1..=1024"),
    (dict(threads=2000), "threads: 2000 is outside 1..=1024"),
    (dict(trace="yes"), "trace: 'yes'; allowed: True, False"),
])
def test_bad_options_name_the_field(kwargs, message):
    with pytest.raises(InputError, match=message) as err:
        RunOptions(**kwargs)
    assert err.value.field == next(iter(kwargs))  # (what a config reports under its own name)


def test_options_are_frozen_values():
    a = RunOptions(scheduler="momentum", F="inf", seed=3)
    b = RunOptions(scheduler="momentum", seed=3)
    assert a == b and hash(a) == hash(b) and a.F is None and a.f_label == "inf"
    with pytest.raises(Exception):
        a.F = 4  # type: ignore[misc]
    c = a.replace(F=4)
    assert c.F == 4 and a.F is None and c != a
    assert RunOptions.of(None, F=2) == RunOptions(F=2) and RunOptions.of(a) is a
    with pytest.raises(TypeError, match="unknown run option 'f'; the options are: mode, scheduler, F"):
        RunOptions.of(a, f=2)
    with pytest.raises(TypeError, match="options: expected a RunOptions"):
        RunOptions.of({"F": 2})  # type: ignore[arg-type]
    assert RunOptions.from_dict(c.to_dict()) == c and c.to_dict()["F"] == 4 and a.to_dict()["F"] == "inf"
    with pytest.raises(InputError, match="bogus: unknown run option"):
        RunOptions.from_dict({"bogus": 1})
    assert pickle.loads(pickle.dumps(c)) == c
    assert c.step_limit == (asyncsnn.RUNAWAY_STEPS, True) and c.replace(max_steps=9).step_limit == (9, False)


def test_one_conversion_to_the_emulator():
    o = RunOptions(mode="events", scheduler="layered", F=3, seed=2**64 - 1, sample_offset=7, input_mode="scheduled",
                   max_steps=11, runaway_steps=99, trace=True, threads=2)
    n = o.to_native()
    assert n is o.to_native()  # made once
    assert (n.mode, n.scheduler, n.f, n.seed, n.sample_offset, n.input_mode, n.max_steps, n.runaway_steps, n.trace,
            n.threads) == ("events", "layered", 3, 2**64 - 1, 7, "scheduled", 11, 99, True, 2)
    assert n == _native.RunOptions(**o.to_native_kwargs()) and n != RunOptions().to_native()
    with pytest.raises(InputError, match="F: 0 is outside"):  # the core checks again for its own callers
        _native.RunOptions(**{**o.to_native_kwargs(), "f": 0})
    with pytest.raises(TypeError):  # no defaults on the native side: they live in RunOptions
        _native.RunOptions(mode="steps")


def test_every_entry_point_takes_the_same_options():
    """The emulator, the PyTorch simulator, the numpy reference and the side-by-side run take
    one RunOptions (or its keywords) and agree on what it means."""
    o = RunOptions(scheduler="random", F=1, seed=5, sample_offset=2, trace=True)
    place = Chip.preset("ideal").place(NET)
    a, b = place.run(X, o), place.run(X, scheduler="random", F=1, seed=5, sample_offset=2, trace=True)
    assert np.array_equal(a.trace, b.trace) and a.options == o and a.mode == "steps"
    sim = AsyncSimulator(NET)
    r = sim(torch.tensor(X, dtype=torch.float32), o)
    assert r.out_counts.detach().numpy().tolist() == a.out_counts.tolist()
    ref = reference.simulate(NET, X[0], o)
    assert [list(t) for t in ref["trace"]] == a.trace[a.trace[:, 0] == 0][:, [1, 2, 4]].tolist()
    with pytest.raises(ValueError, match="mode: 'events'; the PyTorch simulator runs the steps model"):
        sim(torch.tensor(X, dtype=torch.float32), o.replace(mode="events"))
    with pytest.raises(TypeError, match="unknown run option 'schedule'"):
        place.run(X, schedule="fifo")


def test_events_take_the_same_single_run():
    t, c = np.array([0, 3, 12]), np.array([1, 2, 5])
    res = Chip.preset("ideal").run(NET, events=[(t, c), (t[:1], c[:1])], dt=5)
    assert res.out_counts.shape == (2, 3, 3)  # one frame count for the batch: the latest event's
    dense = np.zeros((2, 3, 6), np.uint32)
    dense[0, 0, 1] = dense[0, 0, 2] = dense[0, 2, 5] = dense[1, 0, 1] = 1
    assert np.array_equal(res.out_counts, Chip.preset("ideal").run(NET, dense).out_counts)
    with pytest.raises(InputError, match="sample 1: events.t: event times must be sorted"):
        Chip.preset("ideal").run(NET, events=[(t, c), (t[::-1], c)], dt=5)
    with pytest.raises(InputError, match="n_frames: -1 is outside 0.."):
        Chip.preset("ideal").run(NET, events=[(t, c)], dt=5, n_frames=-1)


def test_the_metric_vocabulary_is_one_list():
    """Every metric any engine reports is in METRICS, with one convention for 'never'."""
    labels = np.array([0, 1, 2])
    reported = {}
    for mode in asyncsnn.MODES:
        reported[mode] = Chip.preset("loihi").run(NET, X, mode=mode, labels=labels).sample_metrics()
    sim = AsyncSimulator(NET)
    reported["pytorch"] = sim(torch.tensor(X, dtype=torch.float32)).sample_metrics(labels)
    reported["layered"] = layered_run(sim, torch.tensor(X, dtype=torch.float32)).sample_metrics(labels)
    for name, m in reported.items():
        assert set(m) <= set(metrics.METRICS), (name, set(m) - set(metrics.METRICS))
        assert all(v.dtype == np.float64 and v.shape == (3,) for v in m.values()), name
    steps = reported["steps"]
    assert np.isnan(steps["time_ns"]).all() and np.isnan(steps["first_out_ns"]).all()
    assert (reported["events"]["time_ns"] > 0).all()
    silent = Chip.preset("ideal").run(NET, np.zeros((1, 2, 6), np.uint32), labels=[0]).sample_metrics()
    assert all(np.isnan(silent[k]).all() for k in silent if k.startswith(("first_out", "first_correct")))
    assert silent["answered"][0] == 0 and silent["correct"][0] == 0 and silent["activation_sparsity"][0] == 1.0
    summary = metrics.summarize([steps], NET.n_neurons, X.shape[1])
    assert set(summary) <= set(metrics.METRICS) | set(metrics.SUMMARY) | {"accuracy"}
    assert summary["samples"] == 3 and summary["accuracy"] == pytest.approx(steps["correct"].mean())


def test_activation_sparsity_counts_neuron_frames_not_spikes():
    """A neuron that fires five times in a frame is one active (neuron, frame) pair, on the chip
    and in PyTorch alike."""
    net = Network(1, [Population(1, theta=0.5, beta=1.0, reset="subtract"), Population(1, theta=9.0)],
                  [Projection("input", 0, np.array([[3.0]], np.float32)),
                   Projection(0, 1, np.array([[0.0]], np.float32))], output=1)
    x = np.array([[[1], [0], [1]]], np.uint32)
    emu = Chip.preset("ideal").run(net, x).sample_metrics()
    r = AsyncSimulator(net)(torch.tensor(x, dtype=torch.float32)).sample_metrics()
    # the first neuron fires at v = 3, 2.5, ..., 1 in frame 0 and at 3.5, ..., 1 in frame 2
    assert emu["spikes"][0] == r["spikes"][0] == 11
    assert emu["activation_sparsity"][0] == r["activation_sparsity"][0] == 1 - 2 / 6


@pytest.mark.parametrize("outputs, readout, want", [
    (np.array([[[1, 2, 2], [0, 0, 1]], [[0, 0, 0], [0, 0, 0]]]), "counts", [2, -1]),
    (np.array([[[1, 1, 0]]]), "counts", [0]),  # ties: the lowest index
    (np.array([[[0.5, 0.1], [0.0, 0.3]]]), "potential", [0]),  # mean over frames: 0.25 > 0.2
    (np.zeros((2, 0, 3)), "potential", [-1, -1]),
    (np.array([[0.1, 0.9], [2.0, -1.0]]), "scores", [1, 0]),
])
def test_one_prediction_rule(outputs, readout, want):
    assert metrics.predictions(outputs, readout).tolist() == want
    assert metrics.predictions(torch.tensor(outputs), readout).tolist() == want
    with pytest.raises(ValueError, match="readout"):
        metrics.predictions(outputs, "votes")


def test_one_hash_for_numpy_torch_and_ints():
    rng = np.random.default_rng(0)
    args = [rng.integers(0, 2**32, 50, dtype=np.uint64) for _ in range(5)]
    ints = [hashing.key(*(int(a[i]) for a in args)) for i in range(50)]
    assert hashing.key(*args).tolist() == ints
    assert hashing.key(*(torch.tensor(a.astype(np.int64)) for a in args)).tolist() == ints
    assert ints == [asyncsnn.hash_key(*(int(a[i]) for a in args)) for i in range(50)]  # the Rust hash
    big = 2**64 - 1  # taken mod 2^32, as the emulator does
    assert hashing.key(big, 1, 2, 3, 4) == asyncsnn.hash_key(big, 1, 2, 3, 4) == hashing.key(2**32 - 1, 1, 2, 3, 4)
    assert hashing.key(0, 0, 0, 0, []).shape == (0,)
    with pytest.raises(TypeError, match="integers"):
        hashing.key(0, 0, 0, 0, [0.5])


def test_dense_weights_and_endpoints_are_network_methods():
    net = Network(2, [Population(2), Population(1)],
                  [Projection("input", 0, np.array([[1, 2], [3, 4]], np.float32)),
                   Projection(0, 1, rows=np.array([0]), cols=np.array([1]), values=np.array([5.0]), shape=(1, 2)),
                   Projection(1, 0, np.array([[6], [7]], np.float32))], output=1)
    e = net.endpoints()
    assert [(x.source, x.target, x.source_start, x.source_size, x.target_start, x.target_size) for x in e] == [
        (None, 0, 0, 2, 0, 2), (0, 1, 0, 2, 2, 1), (1, 0, 2, 1, 0, 2)]
    w = net.dense_weights()
    assert w.tolist() == [[1, 2, 0, 0, 6], [3, 4, 0, 0, 7], [0, 0, 0, 5, 0]]
    assert net.readout == "counts"


def test_a_training_config_checks_its_run_options_once():
    cfg = load_config(None, {"train.F": "inf", "train.scheduler": "fifo", "train.max_steps": 40})
    assert cfg.train.F is None
    assert cfg.train.run_options(seed=4) == RunOptions(scheduler="fifo", F=None, max_steps=40, seed=4)
    for key, value, message in (("train.F", 0, "train.F: 0 is outside 1.."),
                                ("train.scheduler", "lifo", "train.scheduler: 'lifo'; allowed: fifo"),
                                ("train.runaway_steps", 0, "train.runaway_steps: 0 is outside 1..")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, {key: value})


def test_network_files_record_the_run_options(tmp_path):
    import json
    import zipfile

    opts = RunOptions(scheduler="momentum", F=4, input_mode="scheduled", max_steps=30, seed=9)
    net = Network(NET.n_inputs, NET.populations, NET.projections, output=NET.output, run_options=opts, dt=2000)
    back = Network.load(net.save(tmp_path / "n.npz"))
    assert back.run_options == opts and back.dt == 2000
    assert AsyncSimulator(back).to_network().run_options == opts  # it travels through training
    plain = Network.load(NET.save(tmp_path / "plain.npz"))  # (files without them load as before)
    assert plain.run_options is None and plain.dt is None
    # a file whose run options are bad names the field
    with zipfile.ZipFile(tmp_path / "n.npz") as z:
        arrays = {n[:-4]: np.load(z.open(n)) for n in z.namelist()}
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta["run"]["F"] = 0
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(asyncsnn.NetworkError, match=r"run\.F: 0 is outside 1\.\."):
        Network.load(tmp_path / "bad.npz")
    with pytest.raises(asyncsnn.NetworkError, match="run_options: expected a RunOptions"):
        Network(1, [Population(1)], [Projection("input", 0, np.ones((1, 1), np.float32))], run_options={"F": 2})
    with pytest.raises(asyncsnn.NetworkError, match="dt: 0 is outside 1.."):
        Network(1, [Population(1)], [Projection("input", 0, np.ones((1, 1), np.float32))], dt=0)


def test_old_metric_names_say_where_they_went():
    res = Chip.preset("ideal").run(NET, X, labels=[0, 1, 2])
    for old, new in metrics.RENAMED.items():
        for d in (res.metrics, res.sample_metrics(), res.summary()):
            with pytest.raises(KeyError, match=f"'{old}' is called '{new}' now"):
                d[old]
            assert new in d
    with pytest.raises(KeyError, match="^'nope'$"):
        res.metrics["nope"]
