"""Bad input gets a clear exception naming the field and the allowed range; nothing panics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import Chip, Network, Population, Projection
from asyncsnn.generate import random_feedforward

NET = random_feedforward([4, 3, 2], seed=0)
X = np.ones((1, 2, 4), np.uint32)


def make(pops=None, projs=None, n_inputs=4, output=-1):
    pops = pops if pops is not None else [Population(3)]
    projs = projs if projs is not None else [Projection("input", 0, np.ones((3, 4), np.float32))]
    return Network(n_inputs, pops, projs, output=output).validate()


@pytest.mark.parametrize("kwargs, field", [
    (dict(mesh_width=0), "mesh_width"),
    (dict(mesh_height=5000), "mesh_height"),
    (dict(tick_ns=-1.0), "tick_ns"),
    (dict(hop_energy_pj=float("nan")), "hop_energy_pj"),
    (dict(core_neurons=0), "core.neurons"),
    (dict(input_port=[3, 0]), "input_port"),
    (dict(release_ticks=0), "release_ticks"),
    (dict(link_packets_per_tick=0), "link_packets_per_tick"),
    (dict(link_buffer_depth=0), "link_buffer_depth: must be >= 1"),
    (dict(input_buffer_depth=0), "input_buffer_depth: must be >= 1"),
    (dict(overflow="lossy"), "overflow: .lossy.; allowed: backpressure, drop"),
    (dict(overflow=None), "overflow: None; allowed: backpressure, drop"),
    (dict(neuron_update="sometimes"), "neuron_update: .sometimes.; allowed: when_idle, on_arrival"),
    (dict(arithmetic={"kind": "fixed", "weight_bits": 40, "potential_bits": 16, "frac_bits": 4, "leak_bits": 8}),
     "weight_bits"),
    (dict(arithmetic={"kind": "fixed", "weight_bits": 8, "potential_bits": 16, "frac_bits": 16, "leak_bits": 8}),
     "frac_bits"),
    (dict(no_such_field=1), "no_such_field"),
    (dict(arithmetic="float64"), "arithmetic"),
])
def test_bad_chip_configs(kwargs, field):
    with pytest.raises(asyncsnn.ConfigError, match=field):
        Chip(**kwargs)


def test_bad_chip_sources(tmp_path):
    with pytest.raises(asyncsnn.ConfigError, match="unknown preset.*loihi"):
        Chip.preset("truenorth")
    with pytest.raises(asyncsnn.ConfigError, match="toml"):
        Chip.from_toml("mesh_width = [")
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        Chip.from_toml(tmp_path / "nope.toml")


@pytest.mark.parametrize("build, field", [
    (lambda: make(pops=[Population(0)]), r"populations\[0\].size"),
    (lambda: make(pops=[Population(-3)]), r"populations\[0\].size"),
    (lambda: make(pops=[Population(3, theta=0.0)]), r"populations\[0\].theta"),
    (lambda: make(pops=[Population(3, theta=float("inf"))]), r"populations\[0\].theta"),
    (lambda: make(pops=[Population(3, beta=1.5)]), r"populations\[0\].beta"),
    (lambda: make(pops=[Population(3, reset="hard")]), r"populations\[0\].reset"),
    (lambda: make(projs=[Projection("input", 0, np.ones((3, 5), np.float32))]), r"projections\[0\].weights.*\(3, 4\)"),
    (lambda: make(projs=[Projection("input", 0, np.ones((3,), np.float32))]), r"projections\[0\].weights"),
    (lambda: make(projs=[Projection("input", 0, np.full((3, 4), np.nan, np.float32))]), "non-finite"),
    (lambda: make(projs=[Projection("input", 0, np.full((3, 4), np.inf))]), "non-finite"),
    (lambda: make(projs=[Projection("input", 0, np.full((3, 4), 1e300))]), "float32"),
    (lambda: make(projs=[Projection("input", 3, np.ones((3, 4), np.float32))]), r"projections\[0\].target"),
    (lambda: make(projs=[Projection(7, 0, np.ones((3, 3), np.float32))]), r"projections\[0\].source"),
    (lambda: make(projs=[Projection("input", 0, rows=np.array([0, 5]), cols=np.array([0, 0]),
                                    values=np.ones(2), shape=(3, 4))]), r"index \(5, 0\)"),
    # int32 indices go to the native side as they are (no int64 copy): checked the same way
    (lambda: make(projs=[Projection("input", 0, rows=np.array([0, 5], np.int32), cols=np.array([0, 0], np.int32),
                                    values=np.ones(2), shape=(3, 4))]), r"index \(5, 0\)"),
    (lambda: make(projs=[Projection("input", 0, rows=np.array([0, -1], np.int32), cols=np.array([0, 0], np.int32),
                                    values=np.ones(2), shape=(3, 4))]), r"index \(-1, 0\)"),
    # the float32 check finds the bad weight without a float64 copy, and names where it is
    (lambda: make(projs=[Projection("input", 0, np.where(np.eye(3, 4) > 0, -np.inf, 1).astype(np.float32))]),
     r"non-finite weight -inf at \[0, 0\]"),
    (lambda: make(output=4), "output"),
    (lambda: make(n_inputs=0), "n_inputs"),
    (lambda: make(pops=[]), "populations"),
])
def test_bad_networks(build, field):
    with pytest.raises(asyncsnn.NetworkError, match=field):
        build()


@pytest.mark.parametrize("kwargs, field", [
    (dict(inputs=np.ones((2, 4), np.uint32)), r"\(batch, frames, channels\)"),
    (dict(inputs=np.ones((1, 2, 5), np.uint32)), "5 channels"),
    (dict(inputs=-np.ones((1, 2, 4))), "0..="),
    (dict(inputs=np.full((1, 2, 4), 0.5)), "whole numbers"),
    (dict(inputs=np.full((1, 2, 4), np.nan)), "finite"),
    (dict(inputs=X, scheduler="lifo"), "scheduler.*fifo"),
    (dict(inputs=X, mode="async"), "mode"),
    (dict(inputs=X, input_mode="later"), "input_mode"),
    (dict(inputs=X, F=0), "F"),
    (dict(inputs=X, max_steps=0), "max_steps"),
    (dict(inputs=X, threads=0), "threads"),
    (dict(inputs=X, labels=[5]), r"label 5 of sample 0 is outside 0..2"),
    (dict(inputs=X, labels=[0, 1]), "2 labels for 1 samples"),
    (dict(inputs=X, labels=[-1]), "negative"),
    (dict(), "exactly one"),
    (dict(events=[(np.array([3, 1]), np.array([0, 0]))], dt=1), "sorted"),
    (dict(events=[(np.array([-3]), np.array([0]))], dt=1), "negative"),
    (dict(events=[(np.array([3]), np.array([9]))], dt=1), r"channel 9 of event 0 is outside 0..4"),
    (dict(events=[(np.array([3]), np.array([0]))], dt=0), "dt"),
    (dict(events=[(np.array([30]), np.array([0]))], dt=1, n_frames=2), "only 2 frames"),
    (dict(events=[(np.array([1.5]), np.array([0]))], dt=1), "integer"),
    (dict(events=[np.array([1])], dt=1), r"events\[0\]"),
])
def test_bad_run_inputs(kwargs, field):
    with pytest.raises(asyncsnn.InputError, match=field):
        Chip.preset("ideal").run(NET, **kwargs)


def test_bad_mappings():
    chip = Chip.preset("ideal", mesh_width=2)
    with pytest.raises(asyncsnn.InputError, match="neuron 1 is mapped to core 7, outside 0..2"):
        chip.place(NET, mapping=[0, 7, 0, 0, 0])
    with pytest.raises(asyncsnn.InputError, match="mapped to core -1"):
        chip.place(NET, mapping=[0, -1, 0, 0, 0])
    with pytest.raises(asyncsnn.InputError, match="3 entries for 5 neurons"):
        chip.place(NET, mapping=[0, 0, 0])
    with pytest.raises(asyncsnn.MappingError, match="ran out of cores"):
        Chip.preset("ideal", core_neurons=1).place(NET)


def test_runaway_activity_raises_instead_of_hanging():
    w = np.array([[2.0]], np.float32)
    net = Network(1, [Population(1, reset="subtract")], [Projection("input", 0, w), Projection(0, 0, w)], output=0)
    with pytest.raises(asyncsnn.RunawayError, match="max_steps"):
        Chip.preset("ideal").run(net, np.ones((1, 1, 1), np.uint32))
    capped = Chip.preset("ideal").run(net, np.ones((1, 1, 1), np.uint32), max_steps=10)
    assert capped.metrics["unreleased"][0] == 1


def test_missing_network_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="net.npz"):
        Network.load(tmp_path / "net.npz")


@st.composite
def population_args(draw):
    """A valid one-population network, then (mostly) one field corrupted."""
    size, theta, beta = draw(st.integers(1, 4)), draw(st.floats(0.1, 3)), draw(st.floats(0, 1))
    shape, fill = (size, 2), draw(st.floats(-2, 2))
    what = draw(st.sampled_from(["none", "size", "theta", "beta", "shape", "fill"]))
    any_float = st.floats(allow_nan=True, allow_infinity=True, width=32)
    if what == "size":
        size = draw(st.integers(-(2**62), 2**62))
    elif what == "theta":
        theta = draw(any_float)
    elif what == "beta":
        beta = draw(any_float)
    elif what == "shape":
        shape = draw(st.tuples(st.integers(0, 4), st.integers(0, 4)))
    elif what == "fill":
        fill = draw(st.floats(allow_nan=True, allow_infinity=True))
    return size, theta, beta, shape, fill


@given(args=population_args())
def test_random_bad_networks_never_crash(args):
    """Whatever the values, building a network either works or raises NetworkError."""
    size, theta, beta, shape, fill = args
    try:
        net = Network(2, [Population(size, theta, beta)], [Projection("input", 0, np.full(shape, fill))], output=0)
        net.validate()
    except asyncsnn.NetworkError as e:
        assert "invalid network" in str(e)
    else:
        assert 1 <= size and theta > 0 and 0 <= beta <= 1 and shape == (size, 2)
        assert np.isfinite(fill) and abs(fill) < 3.5e38 and np.isfinite(theta)


@st.composite
def dense_runs(draw):
    """A valid dense run, then (mostly) one corruption: counts above 2^32 - 1 or negative, a
    wrong channel count, no frames, a bad F or step cap."""
    counts, frames, channels = draw(st.integers(0, 3)), draw(st.integers(1, 5)), 4
    F = draw(st.one_of(st.none(), st.integers(1, 5)))
    max_steps = draw(st.one_of(st.none(), st.integers(1, 5)))
    what = draw(st.sampled_from(["none", "huge", "negative", "channels", "frames", "F", "max_steps"]))
    if what == "huge":
        counts = draw(st.integers(2**32 - 2, 2**33))
    elif what == "negative":
        counts = draw(st.integers(-5, -1))
    elif what == "channels":
        channels = draw(st.sampled_from([0, 3, 6]))
    elif what == "frames":
        frames = 0
    elif what == "F":
        F = draw(st.integers(-3, 0))
    elif what == "max_steps":
        max_steps = draw(st.integers(-3, 0))
    return counts, frames, channels, F, max_steps


@given(run=dense_runs())
def test_random_bad_runs_never_crash(run):
    counts, frames, channels, F, max_steps = run
    x = np.full((1, frames, channels), counts, dtype=np.int64)
    try:
        res = Chip.preset("ideal").run(NET, x, F=F, max_steps=max_steps)
    except asyncsnn.InputError as e:
        assert "invalid input" in str(e)
    except asyncsnn.RunawayError as e:  # huge counts under subtract reset: a clear stop, not a hang
        assert "max_steps" in str(e) and max_steps is None
    except OverflowError:
        pytest.fail("overflow leaked instead of InputError")
    else:
        assert res.out_counts.shape == (1, frames, 2)
        # it ran, so everything was in range (nothing wrapped or was silently clipped)
        assert frames == 0 or 0 <= counts <= 2**32 - 1
        assert (F is None or F >= 1) and (max_steps is None or max_steps >= 1)


ANY_INT = st.one_of(st.integers(-5, 40), st.integers(-(2**63), 2**63 - 1))


@st.composite
def event_streams(draw):
    """A valid stream of up to 8 events, then (mostly) one corruption: two times swapped, a
    negative or huge time, a channel out of range, a bad dt or too few frames."""
    k = draw(st.integers(0, 8))
    t = sorted(draw(st.lists(st.integers(0, 40), min_size=k, max_size=k)))
    c = draw(st.lists(st.integers(0, 3), min_size=k, max_size=k))
    dt = draw(st.integers(1, 5))
    n_frames = None
    what = draw(st.sampled_from(["none", "swap", "time", "channel", "dt", "n_frames"]))
    if what == "swap" and k >= 2:
        i = draw(st.integers(0, k - 2))
        t[i], t[i + 1] = t[i + 1] + 1, t[i]
    elif what == "time" and k:
        t[draw(st.integers(0, k - 1))] = draw(ANY_INT)
    elif what == "channel" and k:
        c[draw(st.integers(0, k - 1))] = draw(ANY_INT)
    elif what == "dt":
        dt = draw(st.one_of(st.integers(-2, 0), st.integers(2**40, 2**62)))
    elif what == "n_frames":
        n_frames = draw(ANY_INT)
    return t, c, dt, n_frames


@given(stream=event_streams())
def test_random_event_streams_run_or_raise_input_error(stream):
    """Unsorted, negative, huge or out-of-range events: a clear InputError (never a crash, hang
    or huge allocation); a valid stream runs and keeps every event."""
    times, channels, dt, n_frames = stream
    k = len(times)
    t, c = np.array(times, np.int64), np.array(channels, np.int64)
    valid = (dt >= 1 and (k == 0 or ((t >= 0).all() and (np.diff(t) >= 0).all() and (c >= 0).all()
                                      and (c < 4).all())))
    frames_needed = 0 if k == 0 or not valid else int(t.max()) // dt + 1
    n = frames_needed if n_frames is None else n_frames
    valid = valid and 0 <= n <= 2**24 and frames_needed <= n
    try:
        res = Chip.preset("ideal").run(NET, events=[(t, c)], dt=dt, n_frames=n_frames)
    except asyncsnn.InputError as e:
        assert "invalid input" in str(e)
        assert not valid, str(e)
    else:
        assert valid
        assert res.out_counts.shape == (1, n, 2)
        assert res.metrics["unreleased"][0] == 0


CHIP_FIELDS = ["mesh_width", "mesh_height", "tick_ns", "hop_latency_ticks", "hop_energy_pj", "release_ticks",
               "link_buffer_depth", "link_packets_per_tick", "input_buffer_depth", "core_neurons", "core_synapses",
               "static_power_mw", "syn_op_ticks", "overflow", "neuron_update"]


@given(fields=st.dictionaries(st.sampled_from(CHIP_FIELDS),
                              st.one_of(ANY_INT, st.floats(allow_nan=True, allow_infinity=True), st.none()),
                              max_size=4))
def test_random_chip_configs_build_or_raise_config_error(fields):
    """Random, absurd or non-numeric chip fields: a ConfigError naming a field, or a chip that
    places and runs a small network (or reports that it does not fit)."""
    try:
        chip = Chip(**fields)
    except asyncsnn.ConfigError as e:
        named = [f.replace("core_", "core.") for f in fields]
        assert any(f in str(e) for f in named), str(e)
        return
    try:
        res = chip.run(NET, X, mode="events", F=1, max_steps=100)
    except asyncsnn.MappingError as e:
        assert "core" in str(e)
    else:
        assert res.out_counts.shape == (1, 2, 2)


@st.composite
def simulator_runs(draw):
    """Valid simulator arguments, then (mostly) one corruption."""
    shape = [draw(st.integers(0, 3)), draw(st.integers(0, 3)), 4]
    fill = draw(st.integers(0, 3).map(float))
    F = draw(st.one_of(st.none(), st.integers(1, 3)))
    scheduler = draw(st.sampled_from(["fifo", "random"]))
    what = draw(st.sampled_from(["none", "shape", "fill", "F", "scheduler"]))
    if what == "shape":
        shape = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    elif what == "fill":
        shape = [max(shape[0], 1), max(shape[1], 1), 4]
        fill = draw(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.floats(-5, -0.01)))
    elif what == "F":
        F = draw(st.integers(-3, 0))
    elif what == "scheduler":
        scheduler = draw(st.sampled_from(["lifo", "", "Random"]))
    return shape, fill, F, scheduler


@given(run=simulator_runs())
def test_simulator_bad_input_raises_value_error(run):
    shape, fill, F, scheduler = run
    import torch

    from asyncsnn.sim import AsyncSimulator

    sim = AsyncSimulator(NET)
    valid = (len(shape) == 3 and shape[2] == 4 and (np.prod(shape) == 0 or (np.isfinite(fill) and fill >= 0))
             and (F is None or F >= 1) and scheduler in asyncsnn.SCHEDULERS)
    try:
        r = sim(torch.full(shape, fill), F=F, scheduler=scheduler, max_steps=50)
    except ValueError as e:
        assert not valid, str(e)
        assert any(w in str(e) for w in ("frames", "F:", "scheduler")), str(e)
    else:
        assert valid
        assert r.out_counts.shape == (shape[0], shape[1], 2)


@pytest.mark.parametrize("F, input_mode", [(None, "all_at_once"), (1, "scheduled")])
def test_simulator_runs_an_empty_batch(F, input_mode):
    """Found by the long hypothesis profile: a batch of 0 samples used to fail in a reduction."""
    import torch

    from asyncsnn.sim import AsyncSimulator

    r = AsyncSimulator(NET)(torch.zeros(0, 3, 4), F=F, input_mode=input_mode, scheduler="random")
    assert r.out_counts.shape == (0, 3, 2) and r.first_out.shape == (0, 2)
