"""Plant each bug below in the working tree, run the properties that must catch it, restore.

    python tests/mutants/run.py              # every mutant (about 30 minutes on 2 cores)
    python tests/mutants/run.py S1 F2        # some of them
    python tests/mutants/run.py --list

A mutant is *caught* when at least one of its tests fails (pytest exit code 1, or a cargo test
reporting ``FAILED``); anything else (a test run that passes, a build error) is reported as it
is; a test that hangs past 30 minutes is killed and counts as caught. Rust mutants rebuild the
extension in place (``maturin develop --release --skip-install``); the original is rebuilt at
the end. Files are restored even when the run is interrupted (Ctrl-C or SIGTERM). The
table printed at the end is the one in ``tests/README.md``.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Mutant:
    id: str
    bug: str
    path: str
    old: str
    new: str
    pytest: list[str] = field(default_factory=list)
    cargo: list[str] = field(default_factory=list)  # integration test filters ("lib:" a unit test's)

    @property
    def rust(self) -> bool:
        return self.path.endswith(".rs")


SCHED = "emulator/src/scheduler.rs"
EVENTS = "emulator/src/events.rs"
FUNC = "asyncsnn/sim/functional.py"
SIM = "asyncsnn/sim/simulator.py"
FIXED = "asyncsnn/sim/fixed.py"

MUTANTS = [
    # ---------------------------------------------------------------- PyTorch simulator
    Mutant("P1", "PyTorch fifo ignores the time a spike became pending (orders by hash only)", FUNC,
           'primary, wide = fifo_primary(pad(state.since, 0)[:, slots].view(bsz, c, p), since_bits)',
           'primary = None',
           ["tests/test_sim.py::test_exact_agreement_with_the_emulator"]),
    Mutant("P2", "PyTorch counts synaptic ops of zero weights", SIM,
           "fanout_rec=(w_rec.detach() != 0).sum(dim=0).to(dtype)",
           "fanout_rec=torch.full_like(w_rec.detach(), 1.0).sum(dim=0).to(dtype)",
           ["tests/test_sim.py::test_exact_agreement_with_the_emulator"]),
    Mutant("P3", "PyTorch zero reset subtracts the threshold instead", FUNC,
           "v = torch.where(params.subtract, v_sub, v * (1 - s))", "v = v_sub",
           ["tests/test_train.py::test_f_infinity_layered_equals_layer_synchronous_lif"]),
    Mutant("P4", "the hash's multiplier mistyped on the Python side", "asyncsnn/hashing.py",
           "MULTIPLIER = 0x45D9F3B", "MULTIPLIER = 0x45D9F3D",
           ["tests/test_sim.py::test_hash_matches_the_emulator"]),
    Mutant("P5", "negative event counts accepted by the simulator", SIM,
           "            if lo < 0:", "            if False:",
           ["tests/test_errors.py::test_simulator_bad_input_raises_value_error"]),
    Mutant("M1", "manual backward: the surrogate flows at steps that brought no input", FUNC,
           "* tape.gate.to(g_v.dtype)", "* tape.can_fire.to(g_v.dtype)",
           ["tests/test_sim.py::test_manual_backward_equals_autograd"]),
    Mutant("M2", "manual backward: the zero reset's gradient uses the threshold, not the potential", FUNC,
           "g_v * torch.where(params.subtract, params.theta, v_fire)", "g_v * params.theta",
           ["tests/test_sim.py::test_manual_backward_equals_autograd"]),
    Mutant("M3", "truncated gradient cut at the masked steps of a finished sample", FUNC,
           "v_prev = torch.where(act, state.v.detach(), state.v) if", "v_prev = state.v.detach() if",
           ["tests/test_train.py::test_gradient_does_not_depend_on_the_rest_of_the_batch"]),
    Mutant("M4", "graph replay hands out its static outputs (the next replay overwrites them)", "asyncsnn/sim/graphs.py",
           "return pytree.tree_unflatten(outs, out_spec)", "return pytree.tree_unflatten(static_out, out_spec)",
           ["tests/test_sim.py::test_manual_backward_equals_autograd"]),
    Mutant("M5", "the compiled forward step drops the synaptic ops of the frame's input", SIM,
           'body = _compiled("forward") if spec.compile else _step',
           'body = (lambda s, w, c, i, rec: _compiled("forward")(s, w, c, i._replace(syn0=None), rec)) '
           'if spec.compile else _step',
           ["tests/test_sim.py::test_compiled_steps_equal_eager"]),
    Mutant("M6", "each forward step asks the host whether any sample is still active (same results)", SIM,
           "    pend = (state.p.detach() > 0).any(1)\n",
           "    pend = (state.p.detach() > 0).any(1) if bool(active.any()) else active\n",
           ["tests/test_sim.py::test_chunks_of_steps_never_wait_for_the_host"]),
    Mutant("M7", "the host checks for pending spikes after every step instead of every chunk", SIM,
           "k = graph_length(chunk, room) if graphed else min(chunk, room)", "k = 1",
           ["tests/test_sim.py::test_chunks_of_steps_never_wait_for_the_host"]),
    # ---------------------------------------------------------------- the run contract
    Mutant("O1", "the chip reports the step in the frame as the first output's step", "rust/src/result.rs",
           '("step", field(|l| l.global_step as f64)),', '("step", field(|l| l.step as f64)),',
           ["tests/test_sim.py::test_exact_agreement_with_the_emulator"]),
    Mutant("O2", "the PyTorch simulator lets a frame run one step past the run's step limit", SIM,
           "step_limit, limit_is_error = opts.step_limit",
           "step_limit, limit_is_error = opts.step_limit[0] + 1, opts.step_limit[1]",
           ["tests/test_sim.py::test_a_network_that_never_settles_raises_instead_of_hanging"]),
    Mutant("O3", "F = 0 accepted as a release limit", "asyncsnn/options.py",
           'return _count(value, field_name, 1, "(or \\"inf\\" for no limit)")',
           'return _count(value, field_name, 0, "(or \\"inf\\" for no limit)")',
           ["tests/test_errors.py::test_bad_run_inputs", "tests/test_sim.py::test_bad_arguments"]),
    Mutant("O4", "the chip counts every spike as an active (neuron, frame) pair", "emulator/src/state.rs",
           "let first_in_frame = last_spike_frame[n] != when.frame;", "let first_in_frame = true;",
           ["tests/test_sim.py::test_exact_agreement_with_the_emulator"],
           ["runs::step_cap_carries_over_and_reports_unreleased"]),
    # ---------------------------------------------------------------- fixed point
    Mutant("F1", "PyTorch rounds weights half to even (the chip rounds half away from zero)", FIXED,
           "return torch.sign(x) * torch.floor(x.abs() + 0.5)", "return torch.round(x)",
           ["tests/test_fixed.py::test_fixed_point_agrees_with_the_emulator"]),
    Mutant("F2", "PyTorch leak rounds toward zero (the chip floors)", FIXED,
           "out = hi * beta_q + ((lo * beta_q) >> lb)",
           "out = torch.div(v * beta_q, 1 << lb, rounding_mode='trunc')",
           ["tests/test_fixed.py::test_fixed_point_agrees_with_the_emulator"]),
    Mutant("F3", "PyTorch potential does not saturate on input", FUNC,
           "v_in = v_prev + cur if fx is None else fixed.saturate(fx, v_prev + cur)", "v_in = v_prev + cur",
           ["tests/test_fixed.py::test_fixed_point_agrees_with_the_emulator",
            "tests/test_fixed.py::test_saturation_rounding_and_leak_are_exercised"]),
    Mutant("F4", "emulator leak divides (rounds toward zero) instead of shifting", "emulator/src/arith.rs",
           "let p = (i128::from(v) * i128::from(beta)) >> self.leak_bits;",
           "let p = (i128::from(v) * i128::from(beta)) / (1i128 << self.leak_bits);",
           ["tests/test_fixed.py::test_fixed_point_agrees_with_the_emulator"]),
    # ---------------------------------------------------------------- scheduler and queue
    Mutant("S1", "momentum releases the smallest overshoot first", SCHED,
           "u64::MAX - order_bits(self.overshoot[s])", "order_bits(self.overshoot[s])",
           ["tests/test_scheduler_state.py", "tests/test_properties.py::test_steps_mode_equals_numpy_reference"],
           ["properties::"]),
    Mutant("S2", "ties of the primary key fall to the source index, not the hash key", SCHED,
           "(u128::from(primary) << 64) | u128::from((key(src) << 32) | u64::from(src))",
           "(u128::from(primary) << 64) | u128::from(u64::from(src))",
           ["tests/test_scheduler_state.py", "tests/test_properties.py::test_steps_mode_equals_numpy_reference"]),
    Mutant("S3", "a group with at most F pending releases them but keeps them queued", SCHED,
           "self.pending_sources -= list.len();\n            out.append(list);",
           "self.pending_sources -= list.len();\n            out.extend_from_slice(list);",
           ["tests/test_scheduler_state.py",
            "tests/test_properties.py::test_per_core_f_and_no_spike_lost_or_released_twice"],
           ["properties::per_core_f_and_release_conservation"]),
    Mutant("S4", "a core releases F + 1 per step", SCHED,
           "            take_first(order, f, list, out, |e| e as u32);\n        } else {",
           "            let more = (f + 1).min(order.len());\n            take_first(order, more, list, out, |e| e as u32);\n"
           "        } else {",
           ["tests/test_scheduler_state.py",
            "tests/test_properties.py::test_per_core_f_and_no_spike_lost_or_released_twice"],
           ["properties::per_core_f_and_release_conservation"]),
    # ---------------------------------------------------------------- events mode
    Mutant("E1", "a full input buffer drops a packet without counting it", EVENTS,
           "self.st.metrics.dropped_buffer += 1;\n            return;", "return;",
           ["tests/test_properties.py::test_packets_conserved_and_energy_is_counts_times_costs"],
           ["properties::packets_conserved_and_energy_additive"]),
    Mutant("E2", "a route on free links pays one hop's latency whatever its length", EVENTS,
           "let at = t.saturating_add(hops.saturating_mul(self.chip.hop_latency_ticks));",
           "let at = t.saturating_add(self.chip.hop_latency_ticks);",
           ["tests/test_properties.py::test_causality_in_events_mode"]),
    Mutant("E3", "a finished packet is not taken off its core: the ones queued behind it starve", EVENTS,
           "let Some(pkt) = self.cores[core as usize].current.take() else {",
           "let Some(pkt) = self.cores[core as usize].current else {",
           ["tests/test_properties.py::test_every_spike_reaches_its_whole_fan_out_exactly_once"]),
    Mutant("E4", "routing energy leaves out the per-hop part", EVENTS,
           "+ st.metrics.hops as f64 * chip.hop_energy_pj;", ";",
           ["tests/test_properties.py::test_packets_conserved_and_energy_is_counts_times_costs"],
           ["properties::packets_conserved_and_energy_additive"]),
    Mutant("E5", "routes take at least one tick per hop even on a zero-latency mesh", EVENTS,
           "let at = t.saturating_add(hops.saturating_mul(self.chip.hop_latency_ticks));",
           "let at = t.saturating_add(hops.saturating_mul(self.chip.hop_latency_ticks.max(1)));",
           ["tests/test_properties.py::test_free_routing_spikes_do_not_depend_on_the_mapping"],
           ["properties::events_on_free_chip_equal_steps"]),
    Mutant("E7", "backpressure: a packet that finds its buffer full is lost, not held", EVENTS,
           "self.waiters(buf).push_back(Waiter::Held(pkt, t));", "let _ = pkt;",
           ["tests/test_properties.py::test_packets_conserved_and_energy_is_counts_times_costs"],
           ["properties::packets_conserved_and_energy_additive"]),
    Mutant("E8", "backpressure: a packet leaves a link without holding a slot of its next buffer", EVENTS,
           "                    self.hold(nb);\n                } else {",
           "                } else {",
           ["tests/test_properties.py::test_packets_conserved_and_energy_is_counts_times_costs"],
           ["events_timing::backpressure_holds_packets_until_a_slot_is_free_and_loses_none"]),
    Mutant("E9", "events mode updates a core's neurons at every delivering tick (once per packet)", EVENTS,
           "let when_idle = self.chip.neuron_update == NeuronUpdate::WhenIdle;",
           "let when_idle = self.chip.neuron_update != NeuronUpdate::WhenIdle;",
           [],
           ["events_timing::injection_waits_for_the_link_and_is_never_dropped",
            "events_timing::backpressure_at_a_full_input_buffer_stalls_the_sender"]),
    Mutant("W1", "a core that waits rejoins the fire phase while still busy (its neurons update mid-input)",
           "emulator/src/state.rs",
           "let idle = !busy(c);",
           "let idle = true;",
           [],
           ["events_timing::injection_waits_for_the_link_and_is_never_dropped",
            "events_timing::backpressure_at_a_full_input_buffer_stalls_the_sender"]),
    Mutant("G1", "a fire phase keeps the range stamps: a dense block's neurons are not marked touched again",
           "emulator/src/state.rs",
           "            lane.fire();\n        });\n        self.generation += 1;",
           "            lane.fire();\n        });",
           ["tests/test_properties.py::test_steps_mode_equals_numpy_reference"]),
    Mutant("E6", "the hash's sample index is the worker thread, not the sample", "emulator/src/lib.rs",
           "let sample = opts.sample_offset.wrapping_add(i as u64);",
           "let sample = opts.sample_offset.wrapping_add(rayon::current_thread_index().unwrap_or(0) as u64 + "
           "(i as u64 & 0));",
           ["tests/test_properties.py::test_same_results_on_one_and_on_all_threads",
            "tests/test_api.py::test_deterministic_on_any_thread_count"]),
    # ---------------------------------------------------------------- stochastic neurons
    Mutant("Z1", "the emulator's firing-table index rounds up instead of down", "emulator/src/arith.rs",
           "let i = (z * 256.0).floor() as i64;", "let i = (z * 256.0).ceil() as i64;",
           ["tests/test_stochastic.py::test_firing_rate_is_the_sigmoid_of_the_potential_and_each_draw_is_the_"
            "documented_one"]),
    Mutant("Z2", "a draw happens in the step that settled instead of a step of its own", "emulator/src/steps.rs",
           "                next_draw += 1;\n                k += 1;\n                global_step += 1;",
           "                next_draw += 1;",
           ["tests/test_stochastic.py::test_mixed_networks_steps_mode_equals_numpy_reference",
            "tests/test_stochastic.py::test_mixed_networks_events_mode_on_free_routing_equals_steps"]),
    Mutant("Z3", "events mode draws in the tick of the frame's last event", EVENTS,
           "let t = last.map_or(start, |l| l + 1);", "let t = last.unwrap_or(start);",
           ["tests/test_stochastic.py::test_mixed_networks_events_mode_on_free_routing_equals_steps"]),
    Mutant("Z4", "the synaptic trace does not decay at the frame start", "emulator/src/lane.rs",
           "self.cur[l] = net.arith.leak(self.cur[l], net.trace_leak[n]);", "",
           ["tests/test_stochastic.py::test_pytorch_simulation_of_stochastic_networks_equals_the_emulator"]),
    Mutant("Z5", "PyTorch draws with the neuron's index instead of its chip source number", "asyncsnn/spsn/deploy.py",
           "+ net.n_inputs + starts[i]", "+ starts[i]",
           ["tests/test_stochastic.py::test_pytorch_simulation_of_stochastic_networks_equals_the_emulator"]),
    # ---------------------------------------------------------------- SPSN membrane
    Mutant("C1", "the chunked filter carries only U across chunks (the synaptic current I is lost)",
           "asyncsnn/spsn/functional.py",
           "carry = torch.stack([p[1] for p in powers])",
           "carry = torch.stack([p[1] * torch.tensor([0.0, 1.0], dtype=f) for p in powers])",
           ["tests/test_spsn.py::test_parallel_membrane_equals_the_sequential_recurrence"]),
    Mutant("C2", "the chunked backward carries the gradient forward in time, like the forward filter",
           "asyncsnn/spsn/functional.py",
           "        shifted[:, :-1] = s[:, 1:]\n", "        shifted[:, 1:] = s[:, :-1]\n",
           ["tests/test_spsn.py::test_chunked_membrane_and_its_adjoint_for_any_chunk_length"]),
    # ---------------------------------------------------------------- bad input
    Mutant("R1", "unsorted event times accepted", "emulator/src/input.rs",
           "if w[1] < w[0] {", "if w[1] < w[0] && false {",
           ["tests/test_errors.py::test_random_event_streams_run_or_raise_input_error"]),
    Mutant("R2", "a chip field of the wrong type is reported without its name", "emulator/src/chip.rs",
           'let field = if path.is_empty() || path == "." {', "let field = if true {",
           ["tests/test_errors.py::test_random_chip_configs_build_or_raise_config_error"]),
    Mutant("R4", "a leak factor outside [0, 1] is accepted", "emulator/src/network.rs",
           "if !(0.0..=1.0).contains(&p.beta) {", "if p.beta.is_nan() {",
           ["tests/test_errors.py::test_random_bad_networks_never_crash"]),
    Mutant("R3", "event counts above 2^32 - 1 wrap around instead of raising", "asyncsnn/chip.py",
           "if a.size and (a.min() < 0 or a.max() > _U32_MAX):", "if a.size and a.min() < 0:",
           ["tests/test_errors.py::test_random_bad_runs_never_crash"]),
    # ---------------------------------------------------------------- layer modules, NIR, untrusted files
    Mutant("L1", "layer modules: the bias arrives at every step of a frame, not once", "asyncsnn/layers/run.py",
           "clock.bias = active.to(dtype) if (bias and j == 0) else None",
           "clock.bias = active.to(dtype) if bias else None",
           ["tests/test_layers.py::test_layer_model_equals_simulator_and_emulator"]),
    Mutant("L2", "layer modules: momentum releases the smallest overshoot first", "asyncsnn/layers/functional.py",
           "primary = -fn._ordered(grid(state.over.detach(), 0.0))",
           "primary = fn._ordered(grid(state.over.detach(), 0.0))",
           ["tests/test_layers.py::test_layer_model_equals_simulator_and_emulator"]),
    Mutant("N1", "NIR: the leak read as dt / tau instead of 1 - dt / tau", "asyncsnn/nir.py",
           "            self.beta = 1.0 - dt / t\n", "            self.beta = dt / t\n",
           ["tests/test_nir.py::test_conversion_of_continuous_time_parameters",
            "tests/test_nir.py::test_snntorch_network_through_nir_runs_spike_for_spike"]),
    Mutant("N2", "NIR: the input gain dt r / tau not applied to the weights", "asyncsnn/nir.py",
           "scale = nk.gain * nk.norm  # per target neuron", "scale = nk.norm  # per target neuron",
           ["tests/test_nir.py::test_conversion_of_continuous_time_parameters"]),
    Mutant("N3", "NIR: a node of scalar parameters sized by its weights' inputs, not outputs", "asyncsnn/nir.py",
           "return int(np.shape(node.weight)[0]) if np.ndim(node.weight) == 2 else None",
           "return int(np.shape(node.weight)[1]) if np.ndim(node.weight) == 2 else None",
           ["tests/test_nir.py::test_scalar_parameters_take_their_size_from_the_input_or_are_refused",
            "tests/test_nir.py::test_norse_network_through_nir_runs_spike_for_spike"]),
    Mutant("T1", "native backward: a neuron that went refractory earlier in the frame still takes current gradient",
           "emulator/src/train.rs", "let gc = if r { T::ZERO } else { gv };", "let gc = gv;",
           ["tests/test_sim.py::test_manual_backward_equals_autograd"]),
    Mutant("T2", "native backward: a released source keeps the gradient of its pending count", "emulator/src/train.rs",
           "g_p[i] = g_p[i] * T::ZERO + acc;", "g_p[i] = g_p[i] + acc;",
           ["tests/test_sim.py::test_manual_backward_equals_autograd"]),
    Mutant("T3", "native forward: a core releases one more pending neuron than F", "emulator/src/train.rs",
           "if everything || cand.len() <= limit {", "if everything || cand.len() <= limit + 1 {",
           ["tests/test_sim.py::test_exact_agreement_with_the_emulator"]),
    Mutant("T4", "native forward without a tape drops a frame's input events before their current is summed",
           "emulator/src/train.rs",
           "            let has_input = tp.inputs.len() > events;\n",
           "            let has_input = tp.inputs.len() > events;\n            if !keep {\n                tp.inputs.truncate(events);\n            }\n",
           ["tests/test_sim.py::test_native_engine_keeps_no_tape_without_a_gradient"]),
    Mutant("T5", "the native engine keeps its tape under torch.no_grad()", "asyncsnn/sim/native.py",
           "tape = torch.is_grad_enabled() and (w_in.requires_grad or w_rec.requires_grad)",
           "tape = True",
           ["tests/test_sim.py::test_native_engine_keeps_no_tape_without_a_gradient"]),
    # ---------------------------------------------------------------- lanes (one sample on several threads)
    Mutant("K1", "lanes: a lane adds its parts of the released rows in descending source order",
           "emulator/src/lane.rs",
           "        for &(src, count) in released {\n            let s = src as usize;\n            let cuts",
           "        for &(src, count) in released.iter().rev() {\n            let s = src as usize;\n            let cuts",
           ["tests/test_api.py::test_one_sample_in_lanes_is_the_same_on_any_thread_count"],
           ["runs::one_sample_in_lanes_gives_the_same_results_on_any_thread_count"]),
    Mutant("K2", "lanes: a row's part in a lane starts one segment late (its first core is not fed)",
           "emulator/src/lane.rs",
           "                        seg: c[0].1,",
           "                        seg: c[0].1 + 1,",
           ["tests/test_api.py::test_one_sample_in_lanes_is_the_same_on_any_thread_count"],
           ["runs::one_sample_in_lanes_gives_the_same_results_on_any_thread_count"]),
    Mutant("H1", "a range is taken as clean with a refractory neuron in it (the fire phase updates that neuron)",
           "emulator/src/lane.rs",
           "if busy == 0 && !traced {",
           "if !traced {",
           ["tests/test_properties.py::test_steps_mode_equals_numpy_reference"]),
    Mutant("H2", "a range is taken as clean with stochastic or integrator neurons in it (updated as LIF)",
           "emulator/src/lane.rs",
           "if busy == 0 && !traced {",
           "if busy == 0 {",
           ["tests/test_stochastic.py::test_mixed_networks_steps_mode_equals_numpy_reference"]),
    Mutant("J1", "a clean range's fire phase does not reset the neurons that fired",
           "emulator/src/lane.rs",
           "vs[i] = if subtract[j] { u.over } else { A::V::default() };",
           "vs[i] = u.v;",
           ["tests/test_properties.py::test_steps_mode_equals_numpy_reference"],
           ["golden::"]),
    Mutant("J2", "the fire phase and the leak miss the last 8 of every 64 neurons above threshold",
           "emulator/src/lane.rs",
           "for (k, chunk) in bytes.chunks(8).enumerate() {",
           "for (k, chunk) in bytes.chunks(8).take(7).enumerate() {",
           ["tests/test_properties.py::test_wide_dense_layers_equal_numpy_reference"],
           ["golden::"]),
    Mutant("J3", "a delivery that joins released rows into one pass adds them in reverse order (other bits)",
           "emulator/src/lane.rs",
           "        for j in 0..N {\n            sum = A::accumulate(sum, w[j][i], c[j]);",
           "        for j in (0..N).rev() {\n            sum = A::accumulate(sum, w[j][i], c[j]);",
           [],
           ["properties::events_on_free_chip_equal_steps_on_dense_float_layers"]),
    Mutant("J4", "a delivery joins the next released row into a block it is not (any block row joins)",
           "emulator/src/lane.rs",
           "rows.block[s2] == block",
           "rows.block[s2] != NO_BLOCK",
           ["tests/test_properties.py::test_wide_dense_layers_equal_numpy_reference"],
           ["golden::"]),
    Mutant("J5", "a row of several range segments (a block split over cores) is taken as one block",
           "emulator/src/compiled.rs",
           "if base[s] != u32::MAX && seg[s + 1] - seg[s] == 1 {",
           "if base[s] != u32::MAX {",
           ["tests/test_properties.py::test_steps_mode_equals_numpy_reference"],
           ["golden::"]),
    Mutant("J6", "the leak of a lane of LIF neurons keeps the sums delivered to refractory neurons",
           "emulator/src/lane.rs",
           "*a = if refractory { A::V::default() } else { *a };",
           "*a = if refractory { *a } else { *a };",
           ["tests/test_properties.py::test_steps_mode_equals_numpy_reference"],
           ["golden::"]),
    Mutant("J7", "the leak of a lane of LIF neurons carries the neurons of every 64 as if they were the first 64",
           "emulator/src/lane.rs",
           "carry.push((start + c * 64 + i) as u32);",
           "carry.push((start + i) as u32);",
           ["tests/test_properties.py::test_wide_dense_layers_equal_numpy_reference"],
           ["golden::"]),
    Mutant("J8", "lanes: a part's segments after a range segment are not delivered",
           "emulator/src/lane.rs",
           "(i, at) = (i + j, Some((k + 1, end)));",
           "(i, at) = (i + j + 1, None);",
           [],
           ["lib:lane::tests::lanes_of_long_indexed_segments_give_the_results_of_one_lane"]),
    Mutant("J9", "lanes: the indexed parts' delivery adds each weight once, whatever the count",
           "emulator/src/lane.rs",
           "add_indexed::<A>(acc, flag, touched, targets, weights, first, c);",
           "add_indexed::<A>(acc, flag, touched, targets, weights, first, 1);",
           [],
           ["lib:lane::tests::lanes_of_long_indexed_segments_give_the_results_of_one_lane"]),
    Mutant("T6", "MKL's strict reproducibility mode not set on import (products split by thread count)",
           "asyncsnn/__init__.py",
           '_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")',
           '_os.environ.setdefault("MKL_CBWR_UNSET", "AUTO,STRICT")',
           ["tests/test_train.py::test_same_gradients_on_one_thread_and_on_two"]),
    Mutant("U1", "checkpoints loaded with weights_only=False (a crafted file runs code)", "asyncsnn/checkpoints.py",
           "torch.load(path, map_location=device, weights_only=True)",
           "torch.load(path, map_location=device, weights_only=False)",
           ["tests/test_safety.py::test_a_crafted_checkpoint_cannot_run_code_on_resume"]),
    Mutant("U2", "the frame cache of a recorded dataset keyed without its files", "asyncsnn/data/tonic_sets.py",
           'return f"{self._key}-src{source_fingerprint(Path(getattr(self.ds, \'location_on_system\', \'.\')))}"',
           "return self._key",
           ["tests/test_safety.py::test_recorded_caches_follow_their_files"]),
    Mutant("U3", "atomic writes through a fixed temporary name (a planted symlink is followed)", "asyncsnn/runs.py",
           'fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)',
           'tmp = str(path) + ".tmp"; fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)',
           ["tests/test_safety.py::test_no_write_follows_a_planted_symlink"]),
    Mutant("U4", "SpikeQueue hands its arguments to the binding unchecked (raw TypeError, OverflowError)",
           "asyncsnn/queue.py", "        self._q.push(_int(source, \"source\"), _int(count, \"count\"), _int(frame, \"frame\"), "
           "_int(step, \"step\"),", "        self._q.push(source, count, frame, step,",
           ["tests/test_safety.py::test_garbage_at_the_public_api_gets_the_projects_errors_only"]),
    Mutant("U5", "a recorded event past the sensor's edge is read (it lands on another pixel's channel)",
           "asyncsnn/data/tonic_sets.py", "                if lo < 0 or hi >= size:", "                if lo < 0:",
           ["tests/test_datasets.py::test_recorded_files_that_break_the_layout_or_the_sensor_are_refused"]),
    Mutant("U6", "N-MNIST files in a folder not named 0..9 are labelled by its last character",
           "asyncsnn/data/tonic_sets.py", "    if stray:\n", "    if False:\n",
           ["tests/test_datasets.py::test_recorded_files_that_break_the_layout_or_the_sensor_are_refused"]),
    Mutant("U7", "a --set argument without '=' raises a bare ValueError, not the ConfigError promised",
           "asyncsnn/cli.py", '            raise error(f"invalid input: {flag} {item!r}: expected KEY=VALUE")',
           '            raise ValueError(f"invalid input: {flag} {item!r}: expected KEY=VALUE")',
           ["tests/test_safety.py::test_garbage_set_overrides_get_config_errors_only"]),
    # ---------------------------------------------------------------- spoken-digits (cochlea, generator)
    Mutant("D1", "cochlea: the hazard sampler's fibre refractory period one sample short (11, not 12)",
           "asyncsnn/data/cochlea.py", "        return max(1, int(np.ceil(refrac_samples)))",
           "        return max(1, int(refrac_samples))",
           ["tests/test_speech.py::test_the_hazard_fibres_are_lauschers_fibres_in_distribution"]),
    Mutant("D5", "cochlea: the hazard sampler fires one sample late (searchsorted without the -1)",
           "asyncsnn/data/cochlea.py", "                t = np.searchsorted(hazard, target, side=\"left\") - 1",
           "                t = np.searchsorted(hazard, target, side=\"left\")",
           ["tests/test_speech.py::test_the_hazard_fibres_are_lauschers_fibres_in_distribution"]),
    Mutant("D2", "cochlea: the hair cell replenishes its free pool at the reprocessing rate",
           "asyncsnn/data/cochlea.py", "                replenish = ymdt - ydt * hair_q",
           "                replenish = ymdt - xdt * hair_q",
           ["tests/test_speech.py::test_the_cochlea_gives_lauschers_own_spikes_bit_for_bit"]),
    Mutant("D3", "spoken-digits: the first test speaker also lands in the training split", "asyncsnn/data/speech.py",
           "    test_from = cfg.speakers - cfg.n_test\n", "    test_from = cfg.speakers - cfg.n_test + 1\n",
           ["tests/test_speech.py::test_classes_are_balanced_and_speakers_split"]),
    Mutant("D4", "spoken-digits: a damaged file is loaded when its size is unchanged", "asyncsnn/data/speech.py",
           "        if path.stat().st_size != meta.get(\"bytes\") or _sha256(path) != meta.get(\"sha256\"):",
           "        if path.stat().st_size != meta.get(\"bytes\"):",
           ["tests/test_speech.py::test_corrupted_or_changed_folders_are_never_loaded"]),
    # ---------------------------------------------------------------- limits (memory, work, overflow, Ctrl-C)
    Mutant("B1", "the core allocates a sample's output counts infallibly (an abort under a memory limit)",
           "emulator/src/state.rs",
           '            out_counts: mem::filled(per_frame, 0, "output counts (frames x outputs)")?,',
           "            out_counts: vec![0; per_frame],",
           ["tests/test_limits.py::test_no_input_aborts_the_interpreter_under_a_memory_limit"]),
    Mutant("B2", "a pending count past 2^32 - 1 saturates silently", SCHED,
           "                self.overflowed.get_or_insert(src);", "",
           ["tests/test_limits.py::test_pending_counts_and_chip_time_that_would_overflow_are_errors"],
           ["runs::a_pending_count_past_u32_max_is_an_error_not_a_silent_cap"]),
    Mutant("B3", "events mode lets chip time pass 2^62 ticks (it saturates)", EVENTS,
           "        if end > MAX_TICK || start > MAX_TICK {", "        if false {",
           ["tests/test_limits.py::test_pending_counts_and_chip_time_that_would_overflow_are_errors"],
           ["runs::chip_time_past_2_pow_62_ticks_is_an_error_not_a_wrap"]),
    Mutant("B4", "steps mode never looks at the stop flag (Ctrl-C waits for the run to end)",
           "emulator/src/steps.rs", "            if stop.load(Ordering::Relaxed) {", "            if false {",
           ["tests/test_limits.py::test_ctrl_c_stops_a_long_emulator_run"],
           ["runs::a_set_stop_flag_ends_the_run_with_interrupted"]),
    Mutant("B5", "the work bound is not checked", "asyncsnn/chip.py",
           "    if max_work is not None and work > max_work:", "    if False:",
           ["tests/test_limits.py::test_work_beyond_the_bound_is_refused_up_front_unless_asked_for"]),
    Mutant("B8", "a generated dataset's options are not checked against the memory they ask for",
           "asyncsnn/data/generated.py", '        require_memory(f"manifold: ',
           '        (lambda *a: None)(f"manifold: ',
           ["tests/test_limits.py::test_generated_dataset_options_that_cannot_fit_are_a_memory_error_up_front"]),
    # ---------------------------------------------------------------- executors (issue 25)
    Mutant("X1", "a resumed or fresh study that had a piece fail finishes as if complete (missing cells unsaid)",
           "asyncsnn/experiment.py", "    if study.failed:\n", "    if False:\n",
           ["tests/test_executors.py::test_a_failed_piece_lists_its_missing_cells_and_resume_runs_it"]),
    Mutant("X2", "a pool worker that dies takes the whole sweep down instead of failing its task",
           "asyncsnn/executors.py",
           "                except cf.process.BrokenProcessPool:  # a worker died: which task killed it is unknown",
           "                except ZeroDivisionError:",
           ["tests/test_executors.py::test_a_worker_that_dies_is_a_failed_task_not_a_hang"]),
    Mutant("X3", "a sharded run's trace keeps each shard's own sample numbers", "asyncsnn/chip.py",
           "                    r[:, 0] += off\n", "                    pass\n",
           ["tests/test_executors.py::test_a_batch_sharded_over_workers_is_the_one_process_run"]),
    Mutant("X4", "each shard restarts the scheduler hash's sample numbering at 0", "asyncsnn/chip.py",
           "opts.replace(sample_offset=opts.sample_offset + lo)", "opts",
           ["tests/test_executors.py::test_a_batch_sharded_over_workers_is_the_one_process_run"]),
    Mutant("X5", "data-parallel training sums the ranks' mean gradients (twice the batch's gradient on 2 ranks)",
           "asyncsnn/train/loop.py", "(loss * (len(y) / n_batch) if dist.active else loss).backward()",
           "loss.backward()", ["tests/test_distributed.py::test_two_processes_train_to_the_weights_of_one"]),
    Mutant("B6", "a resumed study keeps a finished (scheduler, F)'s cells but drops its decide-early curves",
           "asyncsnn/experiment.py", "                        self.groups[key] = self.previous.group(key)",
           '                        self.groups[key] = {**self.previous.group(key), "curves": []}',
           ["tests/test_limits.py::test_ctrl_c_during_the_study_keeps_what_finished_and_resume_completes_it"]),
    Mutant("B7", "a resumed emulate run skips the runs it had finished but leaves them out of its table",
           "asyncsnn/cli.py", "    rows, first = list(done), None", "    rows, first = [], None",
           ["tests/test_limits.py::test_ctrl_c_during_emulate_keeps_the_finished_runs_and_resume_completes_them"]),
]


assert len({m.id for m in MUTANTS}) == len(MUTANTS), "two mutants share an id"

TIMEOUT = 1800  # seconds a mutant's test may run; a hang is reported as such (and counts as caught)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; past TIMEOUT the whole group is killed and the
    result has return code -9 and ``TIMEOUT`` in its output."""
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, **kw)
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return subprocess.CompletedProcess(cmd, -9, out, err + f"\nTIMEOUT after {TIMEOUT} s")
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)  # interrupted: no test outlives the runner
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def build() -> None:
    r = sh(["maturin", "develop", "--release", "--skip-install", "-q"])
    if r.returncode:
        raise RuntimeError(f"build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


REGRESSIONS = ROOT / "emulator/tests/proptest-regressions/properties.txt"


def run_mutant(m: Mutant) -> tuple[str, str]:
    path = ROOT / m.path
    text = path.read_text()
    regressions = REGRESSIONS.read_text() if REGRESSIONS.exists() else None
    if text.count(m.old) != 1:
        return "stale", f"the planted line was not found exactly once in {m.path}"
    path.write_text(text.replace(m.old, m.new))
    try:
        if m.rust:
            try:
                build()
            except RuntimeError as e:
                return "build error", str(e)[-500:]
        caught = []
        env = dict(os.environ, HYPOTHESIS_PROFILE=os.environ.get("HYPOTHESIS_PROFILE", "ci"))
        for t in m.pytest:
            r = sh([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", t], env=env)
            if r.returncode == 1 or "TIMEOUT after" in r.stderr:
                caught.append(t.split("::")[-1])
            elif r.returncode != 0:
                return "error", r.stdout[-800:] + r.stderr[-800:]
        for f in m.cargo:
            target = ["--lib", f[4:]] if f.startswith("lib:") else ["--test", "integration", f]
            r = sh(["cargo", "test", "-q", "-p", "asyncsnn-emulator", *target])
            if any(w in r.stdout + r.stderr for w in ("FAILED", "panicked", "TIMEOUT after")):
                caught.append(f"cargo {f}")
            elif r.returncode != 0:
                return "error", r.stdout[-800:] + r.stderr[-800:]
        return ("caught" if caught else "MISSED"), ", ".join(caught)
    finally:
        path.write_text(text)
        if regressions is not None:  # proptest saves the mutant's failures: not ours to keep
            REGRESSIONS.write_text(regressions)


def _terminated(signum, frame):  # SIGTERM runs the clean-up (files restored, original rebuilt)
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    if "--list" in argv:
        for m in MUTANTS:
            print(f"{m.id:4} {m.bug}")
        return 0
    chosen = [m for m in MUTANTS if not argv or m.id in argv]
    rows = []
    t0 = time.time()
    try:
        for m in chosen:
            t = time.time()
            status, detail = run_mutant(m)
            rows.append((m, status, detail))
            print(f"{m.id:4} {status:8} {time.time() - t:6.1f}s  {m.bug} -- {detail[:300]}", flush=True)
    finally:
        if any(m.rust for m in chosen):
            build()  # the original extension again
    print(f"\n{platform.node()} ({platform.machine()}, {os.cpu_count()} cores), {time.time() - t0:.0f} s\n")
    print("| id | planted bug | file | result | failing properties |")
    print("|---|---|---|---|---|")
    for m, status, detail in rows:
        print(f"| {m.id} | {m.bug} | `{m.path}` | {status} | {detail.replace('|', '/')} |")
    return 0 if all(s == "caught" for _, s, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
