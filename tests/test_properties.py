"""Properties of the emulator on random networks (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import Network, Population, Projection, reference
from asyncsnn.generate import random_feedforward
from helpers import trace_rows
from strategies import contended_networks, f_values, frames, mappings, networks, schedulers, seeds, small_f

CAP = 60  # step cap that keeps runaway recurrent draws short


@given(data=st.data(), net=contended_networks, scheduler=schedulers, F=small_f, seed=seeds,
       input_mode=st.sampled_from(["all_at_once", "scheduled"]))
def test_steps_mode_equals_numpy_reference(data, net, scheduler, F, seed, input_mode):
    x = data.draw(frames(net.n_inputs, max_count=3))
    n_cores, core_of = data.draw(mappings(net.n_neurons))
    chip = asyncsnn.Chip.preset("ideal", mesh_width=n_cores)
    res = chip.run(net, x[None], mapping=core_of, scheduler=scheduler, F=F, seed=seed, sample_offset=5,
                   input_mode=input_mode, max_steps=CAP, trace=True)
    ref = reference.simulate(net, x, scheduler=scheduler, F=F, core_of=core_of, seed=seed, sample_offset=5,
                             input_mode=input_mode, max_steps=CAP)
    assert trace_rows(res) == [list(t) for t in ref["trace"]]
    assert res.out_counts[0].tolist() == ref["out_counts"].tolist()
    assert int(res.metrics["synaptic_operations"][0]) == ref["synaptic_operations"]
    assert int(res.metrics["steps"][0]) == ref["steps"]
    assert int(res.metrics["unreleased"][0]) == ref["unreleased"]
    assert res.v_final[0].tolist() == ref["v_final"].tolist()


@given(data=st.data(), sizes=st.lists(st.integers(57, 150), min_size=1, max_size=3), scheduler=schedulers,
       F=st.sampled_from([None, 1, 8]), seed=seeds, reset=st.sampled_from(["subtract", "zero"]),
       refractory=st.booleans())
def test_wide_dense_layers_equal_numpy_reference(data, sizes, scheduler, F, seed, reset, refractory):
    # Layers of more than 56 neurons, each on one core: dense blocks whose fire phase takes the
    # neurons above threshold 64 at a time (every bit of the mask is used). Weights on the
    # 1/64 grid: sums exact in any order, as numpy adds them.
    net = random_feedforward([30, *sizes, 10], seed=seed % 1000, gain=3.0, reset=reset,
                             refractory=refractory, grid=True)
    x = data.draw(frames(net.n_inputs, max_frames=3))
    chip = asyncsnn.Chip.preset("ideal", mesh_width=4, mesh_height=1, core_neurons=150)
    res = chip.run(net, x[None], scheduler=scheduler, F=F, seed=seed, trace=True)
    core_of = chip.place(net).core_of
    ref = reference.simulate(net, x, scheduler=scheduler, F=F, core_of=core_of, seed=seed)
    assert trace_rows(res) == [list(t) for t in ref["trace"]]
    assert res.v_final[0].tolist() == ref["v_final"].tolist()
    assert int(res.metrics["synaptic_operations"][0]) == ref["synaptic_operations"]


def _with_observer(net: Network, rng: np.random.Generator) -> tuple[Network, np.ndarray]:
    """Add a population that never fires and listens to every source with grid weights: its
    final potential is the exact sum of every delivered spike times its weight."""
    big = 1e6
    obs = Population(3, theta=big, beta=1.0, reset="zero", refractory=False, name="observer")
    pops = list(net.populations) + [obs]
    k = len(pops) - 1
    projs = list(net.projections)
    w_all = []
    w_in = (rng.integers(1, 8, size=(3, net.n_inputs)) / 64).astype(np.float32)
    projs.append(Projection("input", k, w_in))
    w_all.append(w_in)
    for i, p in enumerate(net.populations):
        w = (rng.integers(1, 8, size=(3, p.size)) / 64).astype(np.float32)
        projs.append(Projection(i, k, w))
        w_all.append(w)
    return Network(net.n_inputs, pops, projs, output=net.output), np.concatenate(w_all, axis=1)


@given(data=st.data(), net=networks(), scheduler=schedulers, F=f_values, seed=seeds,
       mode=st.sampled_from(["steps", "events"]))
def test_every_spike_reaches_its_whole_fan_out_exactly_once(data, net, scheduler, F, seed, mode):
    rng = np.random.default_rng(seed)
    onet, w_obs = _with_observer(net, rng)
    x = data.draw(frames(net.n_inputs))
    n_cores, core_of = data.draw(mappings(onet.n_neurons))
    chip = asyncsnn.Chip.preset("loihi", mesh_width=n_cores, mesh_height=1, link_buffer_depth=None,
                                input_buffer_depth=None)
    res = chip.run(onet, x[None], mapping=core_of, mode=mode, scheduler=scheduler, F=F, seed=seed, trace=True,
                   max_steps=CAP)
    assume(int(res.metrics["unreleased"][0]) == 0)
    # Spikes of every source: input events, then neurons of the original network.
    spikes = np.zeros(net.n_inputs + net.n_neurons)
    spikes[:net.n_inputs] = x.sum(axis=0)
    neurons = res.trace[:, 4]
    neurons = neurons[neurons < net.n_neurons]
    np.add.at(spikes, net.n_inputs + neurons, 1)
    # Every population projects to the observer, so every spike is sent.
    assume(not (res.v_final[0, net.n_neurons:] > 1e5).any())
    expected = w_obs.astype(np.float64) @ spikes
    assert np.array_equal(res.v_final[0, net.n_neurons:], expected)


@given(data=st.data(), net=networks(), seed=seeds, depth=st.integers(1, 3),
       bandwidth=st.sampled_from([1, 2, None]), overflow=st.sampled_from(["backpressure", "drop"]),
       height=st.integers(1, 2))
def test_packets_conserved_and_energy_is_counts_times_costs(data, net, seed, depth, bandwidth, overflow, height):
    """Every packet is delivered or counted as dropped; under backpressure (the default) none
    is dropped, with one-slot buffers and one packet per link per tick on a 2-D mesh too, and
    the run ends (no packet is left waiting)."""
    x = data.draw(frames(net.n_inputs))
    n_cores, core_of = data.draw(mappings(net.n_neurons, max_cores=6))
    chip = asyncsnn.Chip.preset("loihi", mesh_width=-(-n_cores // height), mesh_height=height,
                                link_buffer_depth=depth, input_buffer_depth=depth,
                                link_packets_per_tick=bandwidth, overflow=overflow)
    res = chip.run(net, x[None], mapping=core_of, mode="events", scheduler="random", F=2, seed=seed,
                   max_steps=CAP)
    m = {k: float(v[0]) for k, v in res.metrics.items()}
    assert m["packets"] == m["packets_delivered"] + m["dropped_link"] + m["dropped_buffer"]
    if overflow == "backpressure":
        assert m["dropped_link"] == m["dropped_buffer"] == 0 and m["packets"] == m["packets_delivered"]
    c = chip.config
    assert np.isclose(m["energy_synaptic_pj"], m["synaptic_operations"] * c["syn_op_energy_pj"])
    assert np.isclose(m["energy_neuron_pj"], m["membrane_updates"] * c["neuron_update_energy_pj"])
    assert np.isclose(m["energy_routing_pj"], m["packets"] * c["packet_energy_pj"] + m["hops"] * c["hop_energy_pj"])
    assert np.isclose(m["energy_static_pj"], c["static_power_mw"] * m["ticks"] * c["tick_ns"])
    assert np.isclose(m["energy_total_pj"], sum(m[f"energy_{k}_pj"] for k in ("synaptic", "neuron", "routing",
                                                                                "static")))


@given(data=st.data(), seed=seeds, hop=st.integers(1, 9), syn=st.integers(0, 3), spread=st.integers(0, 2))
def test_causality_in_events_mode(data, seed, hop, syn, spread):
    """A spike of layer L+1 never precedes the earliest spike of layer L in the same frame plus
    one release tick plus the route latency between their cores (zero reset: no neuron starts a
    frame above threshold)."""
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(2, 7)) for _ in range(3)]
    mats, prev = [], 4
    for s in sizes:
        mats.append((rng.integers(-20, 90, size=(s, prev)) / 64).astype(np.float32))
        prev = s
    net = Network.feedforward(mats, theta=1.0, beta=0.5, reset="zero", refractory=False)
    x = data.draw(frames(4, max_frames=3, max_count=3))
    if spread:  # each layer on its own core, `spread` hops from the previous one, on a line
        width = 1 + spread * (len(sizes) - 1)
        core_of = np.repeat(np.arange(len(sizes)) * spread, sizes)
    else:  # neurons anywhere on a 3 x 2 mesh
        width = 3
        core_of = rng.integers(0, width * 2, size=net.n_neurons)
    chip = asyncsnn.Chip.preset("ideal", mesh_width=width, mesh_height=2, hop_latency_ticks=hop, syn_op_ticks=syn)
    res = chip.run(net, x[None], mapping=core_of, mode="events", scheduler="fifo", F=1, trace=True)
    starts = net.population_starts + [net.n_neurons]
    layer_of = np.searchsorted(starts, res.trace[:, 4], side="right") - 1
    xy = np.stack([np.asarray(core_of) % width, np.asarray(core_of) // width], axis=1)
    for f in np.unique(res.trace[:, 1]):
        for layer in range(1, len(sizes)):
            prev_rows = res.trace[(res.trace[:, 1] == f) & (layer_of == layer - 1)]
            rows = res.trace[(res.trace[:, 1] == f) & (layer_of == layer)]
            if len(rows) == 0:
                continue
            assert len(prev_rows) > 0, "a layer fired before anything reached it"
            src = xy[starts[layer - 1]:starts[layer]]
            dst = xy[starts[layer]:starts[layer + 1]]
            min_hops = np.abs(src[:, None, :] - dst[None, :, :]).sum(axis=2).min()
            assert rows[:, 3].min() >= prev_rows[:, 3].min() + 1 + hop * min_hops


@given(data=st.data(), net=networks(), scheduler=schedulers, F=st.integers(1, 3), seed=seeds,
       mode=st.sampled_from(["steps", "events"]))
def test_per_core_f_and_no_spike_lost_or_released_twice(data, net, scheduler, F, seed, mode):
    x = data.draw(frames(net.n_inputs))
    n_cores, core_of = data.draw(mappings(net.n_neurons))
    chip = asyncsnn.Chip.preset("ideal", mesh_width=n_cores, hop_latency_ticks=1 if mode == "events" else 0)
    res = chip.run(net, x[None], mapping=core_of, mode=mode, scheduler=scheduler, F=F, seed=seed, trace=True,
                   max_steps=CAP)
    rel = res.releases
    cores = rel[:, 4] < n_cores
    _, per_round = np.unique(rel[cores][:, [1, 3, 4]], axis=0, return_counts=True)
    assert (per_round <= F).all()
    if int(res.metrics["unreleased"][0]) == 0:
        released = np.bincount(rel[:, 5], weights=rel[:, 6], minlength=net.n_inputs + net.n_neurons)
        assert np.array_equal(released[:net.n_inputs], x.sum(axis=0))
        spikes = np.bincount(res.trace[:, 4], minlength=net.n_neurons)
        sent = released[net.n_inputs:]
        queued = sent > 0
        assert np.array_equal(sent[queued], spikes[queued])


@given(data=st.data(), net=networks(), scheduler=schedulers, seed=seeds,
       widths=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       neuron_update=st.sampled_from(["when_idle", "on_arrival"]))
def test_free_routing_spikes_do_not_depend_on_the_mapping(data, net, scheduler, seed, widths, neuron_update):
    """Zero-cost routing, unbounded buffers, no release limit: where the neurons sit changes no
    spike (events mode), and both equal steps mode, with either neuron-update policy (cores that
    take no time have always worked through their input)."""
    x = data.draw(frames(net.n_inputs))
    runs = []
    for w in widths:
        core_of = data.draw(st.lists(st.integers(0, w * 2 - 1), min_size=net.n_neurons, max_size=net.n_neurons))
        chip = asyncsnn.Chip.preset("ideal", mesh_width=w, mesh_height=2, neuron_update=neuron_update)
        runs.append(chip.run(net, x[None], mapping=core_of, mode="events", scheduler=scheduler, F=None, seed=seed,
                             trace=True, max_steps=CAP))
    steps = asyncsnn.Chip.preset("ideal").run(net, x[None], scheduler=scheduler, seed=seed, trace=True, max_steps=CAP)
    # the step cap means different things in the two modes: compare runs that settle on their own
    assume((steps.releases[:, 2] + 1 < CAP).all())
    for r in runs:
        assert trace_rows(r) == trace_rows(steps)
        assert np.array_equal(r.out_counts, steps.out_counts)
        assert np.array_equal(r.v_final, steps.v_final)


@given(data=st.data(), net=contended_networks, scheduler=schedulers, F=small_f, seed=seeds,
       mode=st.sampled_from(["steps", "events"]))
def test_same_results_on_one_and_on_all_threads(data, net, scheduler, F, seed, mode):
    # enough samples that the work is really split between threads
    x = data.draw(frames(net.n_inputs, max_frames=3, max_count=3))
    batch = np.stack([np.roll(x, k, axis=1) for k in range(64)])
    n_cores, core_of = data.draw(mappings(net.n_neurons))
    place = asyncsnn.Chip.preset("loihi", mesh_width=n_cores, mesh_height=1, link_buffer_depth=2,
                                 input_buffer_depth=2).place(net, mapping=core_of)
    kw = dict(mode=mode, scheduler=scheduler, F=F, seed=seed, trace=True, max_steps=CAP)
    one, every = place.run(batch, threads=1, **kw), place.run(batch, threads=None, **kw)
    assert np.array_equal(one.trace, every.trace)
    assert np.array_equal(one.releases, every.releases)
    for k in one.metrics:
        assert np.array_equal(one.metrics[k], every.metrics[k], equal_nan=True), k


@given(seed=seeds, sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4), n_in=st.integers(1, 6),
       hops=st.lists(st.integers(0, 40), min_size=2, max_size=2), scheduler=st.sampled_from(["fifo", "momentum",
                                                                                             "layered"]),
       F=st.sampled_from([1, 2, None]), frames_=st.integers(1, 3))
def test_latency_grows_monotonically_with_hop_cost(seed, sizes, n_in, hops, scheduler, F, frames_):
    """A layered network with one population per core along a line (each core fed by the one
    before it, over the same route): a higher hop cost delays every packet of a route by the
    same amount, so the chip makes the same spikes, frame for frame and neuron for neuron, each
    no earlier than before; the first output spike and the run's duration come no sooner.
    (Where a core hears from cores at different distances, a change of hop cost reorders its
    packets and changes what it computes: that is the asynchrony being studied, not a
    latency. So does a finite buffer: a slot is held while its packet crosses the link, so a
    longer hop lowers a link's throughput, and the stalls regroup the packets a core takes in
    one go. Links keep their bandwidth of one packet per tick here.)"""
    net = random_feedforward([n_in, *sizes], seed=seed % 2**31, reset="zero", gain=3.0)
    core_of = np.repeat(np.arange(len(sizes)), sizes)
    x = (np.random.default_rng(seed).random((frames_, n_in)) < 0.6).astype(np.uint32)
    lo, hi = sorted(hops)
    runs = []
    for hop in (lo, hi):
        chip = asyncsnn.Chip.preset("loihi", mesh_width=len(sizes), mesh_height=1, hop_latency_ticks=hop,
                                    neuron_update_ticks=0, link_buffer_depth=None, input_buffer_depth=None)
        runs.append(chip.run(net, x[None], mapping=core_of, mode="events", scheduler=scheduler, F=F, seed=seed,
                             trace=True, max_steps=CAP))
    a, b = runs
    assert np.array_equal(a.trace[:, [1, 4]], b.trace[:, [1, 4]])  # (frame, neuron), in order
    assert np.all(b.trace[:, 3] >= a.trace[:, 3])  # each spike's tick
    assert np.array_equal(a.out_counts, b.out_counts)
    for key in ("first_out_tick", "ticks"):
        ta, tb = float(a.metrics[key][0]), float(b.metrics[key][0])
        assert (np.isnan(ta) and np.isnan(tb)) or tb >= ta, key
    if hi > lo and a.trace.shape[0]:
        assert float(b.metrics["ticks"][0]) > float(a.metrics["ticks"][0]) or len(sizes) == 1
