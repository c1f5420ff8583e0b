"""The Python facade: chips, networks, placements, results, files, determinism, the stub."""

from __future__ import annotations

import inspect
import re
import threading
from pathlib import Path

import numpy as np
import pytest

import asyncsnn
from asyncsnn import Chip, Network, Population, Projection, _native
from asyncsnn.generate import poisson_frames, random_feedforward, random_sparse


def test_chip_from_preset_toml_and_keywords(tmp_path):
    loihi = Chip.preset("loihi")
    assert loihi.n_cores == 128 and loihi.config["syn_op_energy_pj"] == 23.6
    path = tmp_path / "chip.toml"
    path.write_text(loihi.to_toml())
    assert Chip.from_toml(path).config == loihi.config
    small = Chip.preset("loihi", mesh_width=6, mesh_height=7, core_neurons=512)
    assert small.n_cores == 42 and small.config["core"]["neurons"] == 512
    kw = Chip(mesh_width=2, mesh_height=3, hop_latency_ticks=4, arithmetic="fixed")
    assert kw.n_cores == 6 and kw.config["arithmetic"]["kind"] == "fixed"
    assert set(Chip.presets()) == {"loihi", "edge", "ideal"}
    assert Chip.preset("edge").config["arithmetic"]["weight_bits"] == 8


def test_network_save_load_round_trip(tmp_path):
    net = random_sparse(20, [8, 4], 5, seed=3)
    net.projections.append(Projection(1, 0, np.full((8, 4), 0.25, np.float32)))  # feedback, dense
    p = net.save(tmp_path / "net.npz")
    back = Network.load(p)
    x = poisson_frames(3, 4, 20, 0.3, seed=1)
    chip = Chip.preset("ideal")
    a = chip.run(net.validate(), x, scheduler="momentum", F=2, trace=True, max_steps=50)
    b = chip.run(back, x, scheduler="momentum", F=2, trace=True, max_steps=50)
    assert a.metrics["spikes"].sum() > 0
    assert np.array_equal(a.trace, b.trace) and np.array_equal(a.v_final, b.v_final)


def test_results_shapes_predictions_and_summary():
    net = random_feedforward([30, 12, 5], seed=0)
    x = poisson_frames(7, 6, 30, 0.3, seed=0)
    labels = np.arange(7) % 5
    res = Chip.preset("loihi").run(net, x, labels=labels, mode="events", scheduler="random", F=4, trace=True)
    assert res.out_counts.shape == (7, 6, 5)
    assert res.first_spike.shape == (7, 5)
    assert res.v_final.shape == (7, 17)
    assert res.trace.shape[1] == 5 and res.releases.shape[1] == 7
    assert res.core_spikes.shape == (7, 128)
    assert np.array_equal(res.core_spikes.sum(axis=1), res.metrics["spikes"])
    pred = res.predictions()
    assert pred.shape == (7,) and ((pred >= -1) & (pred < 5)).all()
    s = res.summary()
    assert 0.0 <= s["accuracy"] <= 1.0 and s["time_ns"] > 0 and s["energy_total_pj"] > 0
    # first-correct latency never precedes the first output spike
    fc, fo = res.metrics["first_correct_tick"], res.metrics["first_out_tick"]
    assert (np.isnan(fc) | (fc >= fo)).all() and np.isnan(fc).any() and not np.isnan(fo).any()
    steps = Chip.preset("loihi").run(net, x, labels=labels, scheduler="random", F=4)
    assert np.isnan(steps.metrics["first_out_ns"]).all() and (steps.metrics["ticks"] == 0).all()


def test_event_streams_match_dense_frames():
    net = random_feedforward([10, 6, 3], seed=2)
    rng = np.random.default_rng(0)
    events, dense = [], np.zeros((3, 5, 10), np.uint32)
    for b in range(3):
        t = np.sort(rng.integers(0, 50, size=40))
        c = rng.integers(0, 10, size=40)
        events.append((t, c))
        np.add.at(dense[b], (t // 10, c), 1)
    chip = Chip.preset("ideal")
    a = chip.run(net, events=events, dt=10, n_frames=5, scheduler="fifo", F=1, trace=True)
    b = chip.run(net, dense, scheduler="fifo", F=1, trace=True)
    assert np.array_equal(a.trace, b.trace) and np.array_equal(a.out_counts, b.out_counts)


def test_deterministic_on_any_thread_count():
    net = random_feedforward([40, 20, 10, 4], seed=5)
    x = poisson_frames(16, 5, 40, 0.2, seed=5)
    place = Chip.preset("loihi", mesh_width=2, mesh_height=2, core_neurons=10).place(net)
    assert len(set(place.core_of.tolist())) == 4
    for mode in ("steps", "events"):
        runs = [place.run(x, mode=mode, scheduler="random", F=2, seed=11, threads=t, trace=True) for t in (1, 2, None)]
        for r in runs[1:]:
            assert np.array_equal(r.trace, runs[0].trace)
            assert all(np.array_equal(r.metrics[k], runs[0].metrics[k], equal_nan=True) for k in r.metrics)
        other = place.run(x, mode=mode, scheduler="random", F=2, seed=12, trace=True)
        assert not np.array_equal(other.trace, runs[0].trace)


def test_one_sample_in_lanes_is_the_same_on_any_thread_count():
    """A batch smaller than the threads splits each sample's cores into lanes that deliver and
    fire on threads of their own (networks of 2^18 synapses or more, steps of more than 2^14):
    same trace, potentials and metrics as on one thread."""
    net = random_feedforward([1000, 400, 300, 10], seed=2)
    x = poisson_frames(1, 4, 1000, 0.3, seed=2)
    place = Chip.preset("ideal", mesh_width=5, mesh_height=5, core_neurons=40).place(net)
    assert len(set(place.core_of.tolist())) >= 12
    assert place.native.n_synapses >= 2**18  # large enough to be split into lanes
    for F in (3, None):
        runs = [place.run(x, scheduler="momentum", F=F, seed=1, threads=t, trace=True) for t in (1, 2, 3)]
        assert runs[0].metrics["synaptic_operations"].sum() > 4 * 2**14
        for r in runs[1:]:
            assert np.array_equal(r.trace, runs[0].trace) and np.array_equal(r.v_final, runs[0].v_final)
            assert all(np.array_equal(r.metrics[k], runs[0].metrics[k], equal_nan=True) for k in r.metrics)


def test_interpreter_is_released_while_running():
    net = random_feedforward([200, 100, 100, 10], seed=1)
    x = poisson_frames(64, 30, 200, 0.2, seed=1)
    place = Chip.preset("ideal").place(net)
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(1)

    th = threading.Thread(target=count)
    th.start()
    try:
        place.run(x, scheduler="random", F=2, threads=1)
    finally:
        stop.set()
        th.join()
    assert len(ticks) > 100  # the other thread ran during the emulation


def test_usage_and_mapping_error_lists_every_core():
    net = random_feedforward([10, 6, 3], seed=0)
    chip = Chip.preset("loihi", mesh_width=2, mesh_height=1, core_neurons=5)
    u = chip.place(net).usage()
    assert u["neurons"].tolist() == [5, 4] and u["synapses"].sum() == 6 * 10 + 3 * 6
    with pytest.raises(asyncsnn.MappingError) as e:
        chip.place(net, mapping=[0] * 9)
    assert "core 0: neurons needed 9 > capacity 5" in str(e.value)
    assert e.value.violations == [(0, "neurons", 9, 5)]
    assert isinstance(e.value, asyncsnn.ConfigError) and isinstance(e.value, ValueError)


def test_fixed_point_chip_runs_and_reports_clipping():
    w = np.array([[0.5, 3.0, -0.25]], np.float32)
    net = Network(3, [Population(1, theta=1.0, beta=0.5)], [Projection("input", 0, w)], output=0)
    chip = Chip(arithmetic={"kind": "fixed", "weight_bits": 4, "potential_bits": 8, "frac_bits": 2, "leak_bits": 4})
    place = chip.place(net)
    assert place.native.clipped_weights == 1  # 3.0 * 4 = 12 > 7
    res = place.run(np.array([[[1, 0, 0], [1, 0, 1]]], np.uint32))
    # frame 0: v = 2/4; frame 1: leak (2 * 8) >> 4 = 1, + 2 - 1 = 2 -> 0.5 in network units
    assert res.v_final[0].tolist() == [0.5]


def test_stub_matches_the_native_module():
    stub = (Path(asyncsnn.__file__).parent / "_native.pyi").read_text()
    names = set(re.findall(r"^(?:class|def) (\w+)", stub, flags=re.M))
    names |= set(re.findall(r"^([A-Z_]+): ", stub, flags=re.M))  # the module's constants
    public = {n for n in dir(_native) if not n.startswith("_")}
    assert names == public
    for cls in ("ChipConfig", "Network", "Emulator", "SpikeQueue", "RunOptions"):
        body = stub.split(f"class {cls}:")[1].split("\nclass ")[0]
        stub_methods = set(re.findall(r"def (\w+)", body)) - {"__init__"}
        native = {n for n, _ in inspect.getmembers(getattr(_native, cls)) if not n.startswith("_")}
        assert stub_methods == native, cls
    assert (Path(asyncsnn.__file__).parent / "py.typed").exists()
