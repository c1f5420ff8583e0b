"""The PyTorch asynchronous simulator: golden cases, exact agreement with the emulator,
surrogate gradients, autograd through the schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import Network, Population, Projection, hashing
from asyncsnn.generate import random_feedforward
from asyncsnn.sim import AsyncSimulator, saved_tensor_bytes
from asyncsnn.sim.simulator import GRAPH_LENGTHS, graph_length
from asyncsnn.sim import functional as fn
from helpers import DEVICES, EmulatedGraphs, HostSyncError, golden_kwargs, golden_network, trace_rows
from strategies import contended_networks, frames, mappings, seeds, small_f

CAP = 60


def test_golden_cases(golden):
    for case in golden["cases"]:
        sim = AsyncSimulator(golden_network(case), core_of=case["core_of"])
        kw = golden_kwargs(case)
        r = sim(torch.tensor(np.array(case["frames"], np.float32))[None], trace=True, **kw)
        e = case["expected"]
        assert [list(t) for t in r.trace[0]] == e["trace"], case["name"]
        assert r.out_counts[0].tolist() == e["out_counts"]
        assert (int(r.synaptic_operations[0]), int(r.steps[0]), int(r.unreleased[0])) == (e["synops"], e["steps"], e["unreleased"])
        assert r.v_final[0].tolist() == e["v_final"]
        first = None if r.first_out[0, 0] < 0 else r.first_out[0].tolist()
        assert first == e["first_out"]
        if kw["input_mode"] == "all_at_once":  # the native engine (no trace), the same bits
            n = sim(torch.tensor(np.array(case["frames"], np.float32))[None], engine="native", **kw)
            assert n.out_counts[0].tolist() == e["out_counts"], case["name"]
            assert (int(n.synaptic_operations[0]), int(n.steps[0]), int(n.unreleased[0])) == (
                e["synops"], e["steps"], e["unreleased"])
            assert n.v_final[0].tolist() == e["v_final"]
            assert (None if n.first_out[0, 0] < 0 else n.first_out[0].tolist()) == e["first_out"]


def test_hash_matches_the_emulator(golden):
    """The one Python hash (asyncsnn.hashing) on int64 tensors, in the stages the simulator
    uses, gives the golden keys (which the emulator reproduces in test_golden.py)."""
    for v in golden["hash_vectors"]:
        prefix = hashing.frame_prefix(v["seed"], torch.tensor([v["sample"]]), v["frame"])
        k = fn.source_keys(fn.step_keys(prefix, torch.tensor([v["step"]])), torch.tensor([v["source"]]))
        assert int(k[0, 0, 0]) == v["key"]
        assert int(hashing.key(v["seed"], torch.tensor(v["sample"]), v["frame"], v["step"], v["source"])) == v["key"]


@pytest.mark.parametrize("scheduler", asyncsnn.SCHEDULERS)
@given(data=st.data(), net=contended_networks, F=small_f, seed=seeds,
       input_mode=st.sampled_from(["all_at_once", "scheduled"]))
def test_exact_agreement_with_the_emulator(scheduler, data, net, F, seed, input_mode):
    """A batch of samples: every spike (neuron, frame, step), output counts, synops, steps and
    final potentials equal the emulator's `steps` mode (40 examples per scheduler in CI)."""
    a = data.draw(frames(net.n_inputs, max_frames=4, max_count=3))
    b = data.draw(frames(net.n_inputs, max_frames=4, max_count=3))
    t = max(len(a), len(b))
    pad = lambda x: np.pad(x, ((0, t - len(x)), (0, 0)))  # noqa: E731
    batch = np.stack([pad(a), pad(b)])
    n_cores, core_of = data.draw(mappings(net.n_neurons))
    chip = asyncsnn.Chip.preset("ideal", mesh_width=n_cores)
    emu = chip.run(net, batch, mapping=core_of, scheduler=scheduler, F=F, seed=seed, sample_offset=3,
                   input_mode=input_mode, max_steps=CAP, trace=True)
    sim = AsyncSimulator(net, core_of=core_of)
    r = sim(torch.tensor(batch, dtype=torch.float32), scheduler=scheduler, F=F, seed=seed, sample_offset=3,
            input_mode=input_mode, max_steps=CAP, trace=True)
    for b in range(len(batch)):
        assert [list(x) for x in r.trace[b]] == trace_rows(emu, b)
    assert r.out_counts.detach().numpy().tolist() == emu.out_counts.tolist()
    assert r.synaptic_operations.detach().numpy().astype(int).tolist() == emu.metrics["synaptic_operations"].tolist()
    assert r.steps.numpy().tolist() == emu.metrics["steps"].tolist()
    assert r.unreleased.numpy().astype(int).tolist() == emu.metrics["unreleased"].tolist()
    assert r.v_final.detach().double().numpy().tolist() == emu.v_final.tolist()
    assert r.first_spike.tolist() == emu.first_spike.tolist()
    if input_mode == "all_at_once":  # the native engine (no trace) gives the same run
        nat = sim(torch.tensor(batch, dtype=torch.float32), scheduler=scheduler, F=F, seed=seed, sample_offset=3,
                  input_mode=input_mode, max_steps=CAP, engine="native")
        for field in ("out_counts", "spike_counts", "v_final", "synaptic_operations", "steps", "unreleased",
                      "first_out", "first_spike", "spikes_before", "active_neuron_frames"):
            assert torch.equal(getattr(nat, field).detach(), getattr(r, field).detach()), field
    # one metric vocabulary: every metric both report is equal, "never happened" included
    labels = np.array([0, net.n_outputs - 1])
    ours, theirs = r.sample_metrics(labels), chip.run(net, batch, mapping=core_of, scheduler=scheduler, F=F, seed=seed,
                                                       sample_offset=3, input_mode=input_mode, max_steps=CAP,
                                                       labels=labels).sample_metrics()
    shared = set(ours) & set(theirs)
    assert {"correct", "answered", "spikes", "synaptic_operations", "activation_sparsity", "steps", "first_out_step",
            "first_out_frame", "first_out_step_in_frame", "first_out_spikes_before", "first_correct_step",
            "first_correct_spikes_before"} <= shared
    for k in sorted(shared):
        assert np.array_equal(ours[k], theirs[k], equal_nan=True), k


@pytest.mark.parametrize("kind", fn.SURROGATES)
def test_surrogate_backward_matches_autograd_of_smooth_primitive(kind):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    slope = 5.0
    y = fn.spike(x, kind, slope)
    assert torch.equal(y.detach(), (x > 0).double())
    (g,) = torch.autograd.grad(y.sum(), x)
    xs = x.detach().clone().requires_grad_(True)
    smooth = {"fast_sigmoid": lambda z: z / (1 + slope * z.abs()),
              "atan": lambda z: torch.atan(slope * z) / torch.pi,
              "sigmoid": lambda z: torch.sigmoid(slope * z)}[kind](xs)
    (gs,) = torch.autograd.grad(smooth.sum(), xs)
    assert torch.allclose(g, gs, atol=1e-12)


def test_gradients_flow_through_the_schedule():
    torch.manual_seed(0)
    net = random_feedforward([12, 8, 3], seed=1, refractory=True)
    sim = AsyncSimulator(net, core_of=[0] * 4 + [1] * 4 + [0] * 3)
    x = (torch.rand(4, 5, 12) < 0.4).float()
    r = sim(x, scheduler="momentum", F=1, seed=2)
    loss = torch.nn.functional.cross_entropy(r.out_counts.sum(1), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    g_in, g_out = (w.grad for w in sim.weights)
    assert g_in.shape == (8, 12) and g_out.shape == (3, 8)
    assert torch.isfinite(g_in).all() and torch.isfinite(g_out).all()
    assert g_out.abs().sum() > 0
    assert g_in.abs().sum() > 0  # through the spikes of the hidden layer


def _backprop_random_loss(r, seed: int) -> tuple:
    """Backpropagate a random linear function (seeded) of every differentiable output of the
    run ``r`` (output counts, spike counts, final potentials, first-spike times); returns them."""
    g = torch.Generator().manual_seed(seed)
    outs = (r.out_counts, r.spike_counts, r.v_final, r.first_time)
    sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype).to(o.device)).sum() for o in outs).backward()
    return outs


@given(data=st.data(), net=contended_networks, F=small_f, seed=seeds, scheduler=st.sampled_from(asyncsnn.SCHEDULERS),
       gradient=st.sampled_from(fn.GRADIENTS), surrogate=st.sampled_from(fn.SURROGATES),
       stop=st.one_of(st.none(), st.integers(0, 3)), cap=st.sampled_from([1, 2, 5, CAP]))
def test_manual_backward_equals_autograd(data, net, F, seed, scheduler, gradient, surrogate, stop, cap):
    """The manual engine (no graph recorded, hand-written backward) and the native one (the
    run and its backward in Rust, sample by sample) give autograd's outputs and gradients
    (float64, to rounding) for any graph, mapping, scheduler, F, gradient choice, surrogate,
    step cap and stop rule, through every differentiable output at once."""
    a = data.draw(frames(net.n_inputs, max_frames=4, max_count=3))
    x = np.stack([a, a[::-1]])
    n_cores, core_of = data.draw(mappings(net.n_neurons))
    r_seed = data.draw(seeds)
    got = {}
    # (the graphs variant on the CPU takes the CUDA-graph code path, multi-step chunks and static
    # buffers, with replay emulated; on a GPU, where there is one, real CUDA graphs)
    variants = [("cpu", "autograd"), ("cpu", "manual"), ("cpu", "graphs"), ("cpu", "native")] + [
        (d, e) for d in DEVICES[1:] for e in ("manual", "graphs")]
    for dev, engine in variants:
        sim = AsyncSimulator(net, core_of=core_of, surrogate=surrogate, slope=3.0).double().to(dev)
        if engine == "graphs" and dev == "cpu":
            sim._graph_cache = EmulatedGraphs()
        r = sim(torch.tensor(x, dtype=torch.float64, device=dev), scheduler=scheduler, F=F, seed=seed,
                gradient=gradient, first_time=True, stop_after_output=stop, max_steps=cap,
                engine=engine if engine in ("autograd", "native") else "manual", cuda_graphs=engine == "graphs")
        outs = _backprop_random_loss(r, r_seed)
        got[dev, engine] = [o.detach().cpu() for o in outs] + [w.grad.cpu() for w in sim.weights]
        if engine == "graphs":
            assert sim._graph_cache.replays >= sim._graph_cache.captures > 0
    for key in variants[1:]:
        for a, b in zip(got["cpu", "autograd"], got[key]):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), (key, a, b)


def test_emulated_capture_refuses_host_synchronisation():
    """The CPU emulation of a CUDA graph capture refuses what a real capture cannot hold: reading
    a value on the host, and results whose shape depends on the data."""
    x = torch.tensor([0.0, 2.0, -1.0])
    culprits = {"item": lambda t: t.sum().item() + t, "bool": lambda t: t * 2 if bool(t.any()) else t,
                "mask": lambda t: t[t > 0], "nonzero": lambda t: t.nonzero(), "unique": lambda t: torch.unique(t),
                "masked assignment": lambda t: t.clone().masked_fill_(t > 0, 0.0).index_put_((t < 0,), t[:1])}
    for name, culprit in culprits.items():
        with pytest.raises(HostSyncError, match="synchronises with the host"):
            EmulatedGraphs()(name, culprit, x)
    graphs = EmulatedGraphs()
    for _ in range(3):  # a function without any is captured once and replayed
        out = graphs("clean", lambda t: torch.where(t > 0, t, 0.0).sort().values[-1:] * (t.argmax() + 1), x)
    assert float(out) == 4.0 and graphs.captures == 1 and graphs.replays == graphs.calls["clean"] == 3


@pytest.mark.parametrize("scheduler", asyncsnn.SCHEDULERS)
def test_chunks_of_steps_never_wait_for_the_host(scheduler):
    """On the graphed code path (replay emulated on the CPU) neither a chunk of forward steps nor
    its backward synchronises with the host, for every scheduler, gradient choice and readout,
    and the host checks on the run only once per chunk: a few times per frame, not per step."""
    net = random_feedforward([40, 30, 30, 8], seed=1, gain=2.0, refractory=True)
    x = torch.tensor(np.random.default_rng(0).random((4, 6, 40)) < 0.3, dtype=torch.float32)
    for F, gradient, extra in [(1, "full", dict(first_time=True)), (3, "truncated", dict(stop_after_output=5)),
                               (None, "full", {})]:
        sim = AsyncSimulator(net, core_of=[0, 1] * 34)
        sim._graph_cache = graphs = EmulatedGraphs()
        r = sim(x, scheduler=scheduler, F=F, seed=2, gradient=gradient, cuda_graphs=True, **extra)
        (r.out_counts.sum() + r.spike_counts.sum() + (r.first_time.sum() if r.first_time is not None else 0)).backward()
        assert sim.weights[0].grad.abs().sum() > 0
        trips = graphs.calls["forward"]
        assert trips == graphs.calls["backward"] and trips <= 3 * x.shape[1] + 6, (F, dict(graphs.calls))
        if F == 1:
            assert int(r.steps.max()) > 5 * trips, (int(r.steps.max()), trips)


@given(k=st.integers(1, 300), room=st.integers(1, 300))
def test_graph_length_fits_the_frame_and_wastes_little(k, room):
    """The graphed loop's chunk length is one of the few captured lengths, never runs past the
    steps left in the frame, covers the wanted steps where it can, and runs at most a quarter
    more than wanted (none more up to 8 steps)."""
    g = graph_length(k, room)
    assert g in GRAPH_LENGTHS and g <= room
    longest = max(x for x in GRAPH_LENGTHS if x <= room)
    if k <= longest:
        assert k <= g <= (k if k <= 8 else 1.25 * k)
    else:
        assert g == longest


def test_compiled_steps_equal_eager():
    """``compile=True`` (the single forward and backward steps through ``torch.compile``) gives
    the eager outputs exactly and the same gradients, for both engines, a non-contiguous
    mapping, every readout, the stop rule and scheduled input; also compiled steps on the graphed
    code path (replay emulated on the CPU; real CUDA graphs on a GPU, where there is one)."""
    net = random_feedforward([10, 8, 6, 3], seed=3, gain=2.5, refractory=True)
    core_of = [0, 1] * 7 + [1, 1, 0]
    x = torch.tensor(np.random.default_rng(0).integers(0, 3, (3, 4, 10)), dtype=torch.float64)
    cases = [dict(engine="manual", scheduler="momentum", F=2, gradient="truncated", first_time=True,
                  stop_after_output=2),
             dict(engine="autograd", scheduler="fifo", F=1, gradient="full", first_time=True),
             dict(engine="none", scheduler="random", F=2, input_mode="scheduled"),
             dict(engine="none", scheduler="layered", F=1, max_steps=3)]
    for dev in DEVICES:
        for case in cases:
            kw = dict(case)
            engine = kw.pop("engine")
            got = []
            for compiled, graphs in [(False, False), (True, False), (True, True)]:
                sim = AsyncSimulator(net, core_of=core_of, slope=3.0).double().to(dev)
                if graphs and dev == "cpu":
                    sim._graph_cache = EmulatedGraphs(refuse_sync=not compiled)
                with torch.set_grad_enabled(engine != "none"):
                    r = sim(x.to(dev), seed=4, compile=compiled, cuda_graphs=graphs,
                            **({} if engine == "none" else {"engine": engine}), **kw)
                outs = [r.out_counts, r.spike_counts, r.v_final, r.steps, r.synaptic_operations, r.first_spike]
                if engine != "none":
                    _backprop_random_loss(r, 1)
                    outs += [w.grad for w in sim.weights]
                got.append([o.detach().cpu() for o in outs])
                if graphs and engine != "autograd" and kw.get("input_mode") != "scheduled":  # (where graphs apply)
                    assert sim._graph_cache.replays >= sim._graph_cache.captures > 0
            assert got[0][1].sum() > 0, case  # (spikes happen)
            for other in got[1:]:
                for a, b in zip(got[0][:6], other[:6]):
                    assert torch.equal(a, b), (dev, case)
                for a, b in zip(got[0][6:], other[6:]):
                    assert a.abs().sum() > 0 and torch.allclose(a, b, rtol=1e-9, atol=1e-12), (dev, case)


def test_manual_engine_choice():
    net = random_feedforward([6, 5, 3], seed=0, gain=3.0)
    sim = AsyncSimulator(net)
    x = torch.ones(2, 3, 6)
    with pytest.raises(ValueError, match="engine: 'fast'; allowed: auto, native, manual, autograd"):
        sim(x, engine="fast")
    with pytest.raises(ValueError, match="engine: 'manual' runs float arithmetic with all_at_once input"):
        sim(x, engine="manual", input_mode="scheduled")
    # auto: the native engine where it runs, the manual one where it does not; one node each
    assert sim(x).out_counts.grad_fn.name().startswith("_NativeRun")
    assert sim(x, trace=True).out_counts.grad_fn.name().startswith("_ManualRun")
    assert sim(x, engine="manual").out_counts.grad_fn.name().startswith("_ManualRun")
    assert sim(x, engine="autograd").out_counts.grad_fn.name().startswith("Stack")
    with torch.no_grad():
        assert sim(x).out_counts.grad_fn is None


def test_surrogate_gradient_only_where_input_arrived():
    """Two neurons, both above threshold; only neuron 0 receives current this step. The
    surrogate gradient of the spikes reaches the carried potential of neuron 0 only."""
    n = 2
    params = fn.Params(theta=torch.ones(n), beta=torch.ones(n), subtract=torch.ones(n, dtype=torch.bool),
                       refractory=torch.zeros(n, dtype=torch.bool), has_out=torch.ones(n, dtype=torch.bool),
                       layer=torch.ones(n, dtype=torch.int64), slot_neuron=torch.arange(n)[None],
                       neuron_slot=torch.arange(n), n_inputs=1, contiguous=True)
    state = fn.initial_state(1, params)
    v0 = torch.tensor([[0.5, 2.5]], requires_grad=True)
    state = state._replace(v=v0)
    current = torch.tensor([[0.75, 0.0]])
    out = fn.step(state, params, torch.zeros(n, n), torch.zeros(n), torch.zeros(1, n, dtype=torch.bool),
                  current, torch.ones(1, dtype=torch.bool), 0)
    assert out.spikes.detach().tolist() == [[1.0, 1.0]]
    (g,) = torch.autograd.grad(out.spikes.sum(), v0)
    assert g[0, 0] > 0 and g[0, 1] == 0


def test_bad_arguments():
    net = random_feedforward([4, 3], seed=0)
    sim = AsyncSimulator(net)
    x = torch.ones(1, 2, 4)
    with pytest.raises(ValueError, match="scheduler"):
        sim(x, scheduler="lifo")
    with pytest.raises(ValueError, match="frames"):
        sim(torch.ones(1, 2, 5))
    with pytest.raises(ValueError, match="F"):
        sim(x, F=0)
    with pytest.raises(ValueError, match="input_mode"):
        sim(x, input_mode="later")
    with pytest.raises(ValueError, match="core_of"):
        AsyncSimulator(net, core_of=[0, 1])


def test_a_network_that_never_settles_raises_instead_of_hanging():
    """Two neurons exciting each other fire forever: without max_steps that is a RunawayError
    after `runaway_steps` steps of a frame (one limit, the same on the chip), with it the
    frame stops at the cap."""
    net = Network(1, [Population(2, theta=0.5, beta=1.0)],
                  [Projection("input", 0, np.ones((2, 1), np.float32)),
                   Projection(0, 0, np.array([[0, 1], [1, 0]], np.float32))], output=0)
    assert asyncsnn.RunOptions().runaway_steps == asyncsnn.RUNAWAY_STEPS == asyncsnn._native.RUNAWAY_STEPS
    sim = AsyncSimulator(net)
    x = torch.ones(1, 2, 1)
    for engine in ("autograd", "manual", "native"):
        with pytest.raises(asyncsnn.RunawayError, match="frame 0 did not settle within runaway_steps = 50 forward"):
            sim(x, runaway_steps=50, engine=engine)
        # a batch fails at the earliest frame any sample runs away in, whichever sample it is
        late_early = torch.tensor([[[0.0], [1.0]], [[1.0], [0.0]]])
        with pytest.raises(asyncsnn.RunawayError, match="frame 0 did not settle"):
            sim(late_early, runaway_steps=50, engine=engine)
    with pytest.raises(asyncsnn.RunawayError, match="runaway_steps = 50 forward"):
        asyncsnn.Chip.preset("ideal").run(net, x.numpy(), runaway_steps=50)
    for engine in ("manual", "native"):
        r = sim(x, max_steps=7, engine=engine)
        assert r.steps.tolist() == [14] and r.unreleased.tolist() == [2.0]


def test_native_engine_refuses_what_it_does_not_run():
    """engine='native' names what it does not run; 'auto' takes the manual engine there."""
    net = random_feedforward([6, 5, 3], seed=0, gain=3.0)
    sim = AsyncSimulator(net)
    x = torch.ones(2, 3, 6)
    for kw, why in [(dict(input_mode="scheduled"), "all_at_once input"), (dict(trace=True), "keeps no trace"),
                    (dict(arithmetic={"kind": "fixed", "weight_bits": 8, "potential_bits": 16, "frac_bits": 4, "leak_bits": 4}),
                     "float arithmetic"), (dict(compile=True), "not compiled")]:
        with pytest.raises(ValueError, match=f"engine: 'native' .*{why}"):
            sim(x, engine="native", **kw)
    with pytest.raises(ValueError, match="engine: 'native' runs float32 or float64"):
        AsyncSimulator(net).half()(x.half(), engine="native")
    custom = AsyncSimulator(net, surrogate=fn.CustomSurrogate(torch.sigmoid))
    with pytest.raises(ValueError, match="engine: 'native' runs the named surrogates"):
        custom(x, engine="native")
    assert custom(x).out_counts.grad_fn.name().startswith("_ManualRun")


def test_native_engine_same_bits_on_any_thread_count():
    """Samples run in parallel and the weight gradient sums in fixed groups of samples: one
    thread and two give the same outputs and gradients bit for bit (more samples than a group,
    float32 weights off the grid)."""
    net = random_feedforward([30, 20, 20, 5], seed=4, gain=2.5, refractory=True)
    x = torch.tensor(np.random.default_rng(1).poisson(0.4, (21, 6, 30)), dtype=torch.float32)
    got = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            sim = AsyncSimulator(net, core_of=[0, 1] * 22 + [0])
            with torch.no_grad():
                for w in sim.weights:
                    w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) * 1e-3)
            r = sim(x, scheduler="momentum", F=2, seed=7, first_time=True, engine="native")
            _backprop_random_loss(r, 3)
            got.append([r.out_counts, r.spike_counts, r.v_final, r.first_time] + [w.grad for w in sim.weights])
    finally:
        torch.set_num_threads(before)
    assert got[0][0].sum() > 0
    for a, b in zip(*got):
        assert torch.equal(a, b)


def test_native_engine_keeps_less_for_backward():
    """What the native engine keeps for the backward (its tape, nothing for autograd) is less
    than a third of what the manual engine keeps, on a layered network with sparse input."""
    net = random_feedforward([200, 40, 30, 5], seed=0, gain=3.0)
    x = torch.tensor(np.random.default_rng(0).poisson(0.05, (8, 10, 200)).astype(np.float32))
    kept = {}
    for engine in ("manual", "native"):
        sim = AsyncSimulator(net)
        with saved_tensor_bytes() as counter:
            r = sim(x, scheduler="fifo", F=3, engine=engine)
        r.out_counts.sum().backward()
        kept[engine] = counter.bytes + (r.tape_bytes or 0)
        assert sim.weights[0].grad.abs().sum() > 0
    assert 0 < kept["native"] < kept["manual"] / 3, kept


def test_native_engine_keeps_no_tape_without_a_gradient():
    """Under torch.no_grad() (or with weights that need no gradient) the native engine's run
    has the same outputs and keeps almost nothing for a backward that cannot come (a tape-less
    run refuses to backpropagate: emulator/src/train.rs)."""
    net = random_feedforward([200, 40, 30, 5], seed=0, gain=3.0)
    x = torch.tensor(np.random.default_rng(0).poisson(0.05, (8, 10, 200)).astype(np.float32))
    sim = AsyncSimulator(net)
    kw = dict(scheduler="fifo", F=3, engine="native")
    taped = sim(x, **kw)
    with torch.no_grad():
        bare = sim(x, **kw)
    for w in sim.weights:
        w.requires_grad_(False)
    frozen = sim(x, **kw)
    assert taped.spike_counts.sum() > 0
    for r in (bare, frozen):
        for k in ("out_counts", "spike_counts", "v_final", "synaptic_operations", "steps"):
            assert torch.equal(getattr(r, k), getattr(taped, k)), k
        assert 0 < r.tape_bytes * 4 < taped.tape_bytes, (r.tape_bytes, taped.tape_bytes)


def conv_network(stride=1, padding=1):
    r = np.random.default_rng(0)
    kernel = (r.integers(-16, 48, size=(3, 2, 3, 3)) / 64).astype(np.float32)
    conv = asyncsnn.Projection.conv2d("input", 0, kernel, (2, 6, 5), stride=stride, padding=padding)
    out = conv.conv.out_shape(kernel.shape)
    pops = [asyncsnn.Population(int(np.prod(out)), theta=1.0, beta=0.5), asyncsnn.Population(4, theta=1.0)]
    head = asyncsnn.Projection(0, 1, (r.integers(-8, 40, size=(4, pops[0].size)) / 64).astype(np.float32))
    return asyncsnn.Network(60, pops, [conv, head], output=1), kernel


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (1, 0)])
def test_conv_projection_is_a_convolution(stride, padding):
    net, kernel = conv_network(stride, padding)
    sim = AsyncSimulator(net)
    w_in, _ = sim.weight_matrices()
    w_in = w_in[:net.populations[0].size]
    x = torch.rand(3, 60)
    ref = torch.nn.functional.conv2d(x.view(3, 2, 6, 5), torch.tensor(kernel), stride=stride, padding=padding)
    assert torch.allclose(x @ w_in.t(), ref.reshape(3, -1), atol=1e-5)
    # the gradient reaches the shared kernel exactly as through conv2d
    (x @ w_in.t()).square().sum().backward()
    k = torch.tensor(kernel, requires_grad=True)
    torch.nn.functional.conv2d(x.view(3, 2, 6, 5), k, stride=stride, padding=padding).square().sum().backward()
    assert torch.allclose(sim.weights[0].grad, k.grad, atol=1e-4)


def test_conv_network_agrees_with_the_emulator_and_round_trips(tmp_path):
    net, _ = conv_network()
    x = np.random.default_rng(1).poisson(0.4, size=(2, 4, 60)).astype(np.float32)
    emu = asyncsnn.Chip.preset("ideal").run(net, x, scheduler="momentum", F=3, seed=2)
    r = AsyncSimulator(net)(torch.tensor(x), scheduler="momentum", F=3, seed=2)
    assert r.out_counts.detach().numpy().tolist() == emu.out_counts.tolist()
    assert r.steps.tolist() == emu.metrics["steps"].tolist()
    loaded = asyncsnn.Network.load(net.save(tmp_path / "conv.npz"))
    assert loaded.projections[0].kind == "conv"
    assert np.array_equal(loaded.dense_weights(), net.dense_weights())


def test_conv_geometry_errors():
    net, kernel = conv_network()
    bad = asyncsnn.Projection.conv2d("input", 0, kernel, (2, 6, 6))  # 72 inputs, the source has 60
    with pytest.raises(asyncsnn.NetworkError, match=r"projections\[0\].conv.in_shape"):
        asyncsnn.Network(60, net.populations, [bad, net.projections[1]], output=1).validate()
    wrong_target = asyncsnn.Projection.conv2d("input", 0, kernel, (2, 6, 5), padding=0)
    with pytest.raises(asyncsnn.NetworkError, match="yields"):
        asyncsnn.Network(60, net.populations, [wrong_target, net.projections[1]], output=1).validate()
