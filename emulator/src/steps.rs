//! `steps` timing mode: the reference execution model, forward step by forward step.

use crate::arith::Arith;
use crate::chip::ChipConfig;
use crate::compiled::Compiled;
use crate::error::{Error, Result};
use crate::hash::frame_prefix;
use crate::input::SampleInput;
use crate::lane::LanePlan;
use crate::options::{InputMode, RunOptions};
use crate::result::SampleResult;
use crate::state::{State, When};
use std::sync::atomic::{AtomicBool, Ordering};

/// A step delivers on the lanes' threads when its released rows hold at least this many
/// synapses (below it, the hand-off costs more than it saves; the results are the same).
const PARALLEL_STEP_SYNAPSES: usize = 1 << 14;

/// Run one sample in `steps` mode, its neurons in the lanes of `plan`, which deliver and fire on
/// threads of their own (see [`crate::lane`]; the results are the same for any number).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_sample<A: Arith>(
    net: &Compiled<A>,
    chip: &ChipConfig,
    input: &SampleInput,
    label: Option<u32>,
    sample: u64,
    opts: &RunOptions,
    stop: &AtomicBool,
    plan: &LanePlan,
) -> Result<SampleResult> {
    let n_cores = net.n_cores;
    // Groups: one per core, then the input port.
    // n_cores <= 2^20
    #[allow(clippy::cast_possible_truncation)]
    let input_group = n_cores as u32;
    let mut st = State::new(net, n_cores + 1, input.n_frames(), opts.trace, label, plan)?;
    let f_limit = opts.f_limit();
    let (step_limit, limit_is_error) = opts.step_limit();
    let mut released: Vec<u32> = Vec::new();
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    let mut active: Vec<u32> = Vec::new();
    let mut woken: Vec<u32> = Vec::new();
    let mut global_step = 0u64;
    for (f, events) in input.frames.iter().enumerate() {
        // frames <= 2^24
        #[allow(clippy::cast_possible_truncation)]
        let frame = f as u32;
        st.leak();
        let since = u64::from(frame) << 32;
        for &(ch, n) in events {
            st.queue.push(input_group, ch, n, since);
        }
        let prefix = frame_prefix(opts.seed, sample, u64::from(frame));
        let mut k = 0u64;
        let mut next_draw = 0usize;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let pending = st.queue.any_pending();
            if pending && k >= step_limit && limit_is_error {
                return Err(Error::Runaway {
                    message: format!(
                        "frame {frame} of sample {sample} did not settle within runaway_steps = {step_limit} \
                         forward steps; set max_steps to cap the steps per frame, or raise runaway_steps"
                    ),
                });
            }
            if !pending || k >= step_limit {
                // Settled (or capped: the rest stays pending). The next stochastic /
                // integrator population draws, as the fire phase of a step of its own; its
                // spikes are released from the next step on.
                if next_draw == net.draws.len() {
                    break;
                }
                let when = When {
                    frame,
                    step: k,
                    time: global_step,
                    global_step,
                };
                st.draw(next_draw, prefix, when);
                next_draw += 1;
                k += 1;
                global_step += 1;
                continue;
            }
            st.queue.take_woken(&mut woken);
            active.append(&mut woken);
            released.clear();
            for &g in &active {
                if g == input_group && opts.input_mode == InputMode::AllAtOnce {
                    st.queue.release_all(g, &mut released);
                } else {
                    st.queue.release(
                        g,
                        f_limit,
                        opts.scheduler,
                        prefix,
                        k,
                        &net.population,
                        net.n_inputs,
                        &mut released,
                    );
                }
            }
            active.retain(|&g| st.queue.group_len(g) > 0);
            released.sort_unstable();
            let when = When {
                frame,
                step: k,
                time: global_step,
                global_step,
            };
            pairs.clear();
            // counts in locals: fields of the state would be read and written per release
            let (mut synapses, mut packets, mut hops) = (0usize, 0u64, 0u64);
            for &s32 in &released {
                let c = st.take_release(when, s32);
                pairs.push((s32, c));
                let s = s32 as usize;
                synapses += net.row[s + 1] - net.row[s];
                packets += (net.seg[s + 1] - net.seg[s]) as u64;
                hops += net.hops_of_source[s];
            }
            st.metrics.packets += packets;
            st.metrics.hops += hops;
            st.step(&pairs, when, synapses >= PARALLEL_STEP_SYNAPSES);
            k += 1;
            global_step += 1;
        }
        // Groups left active by a step cap stay in `active` for the next frame.
        st.end_frame(frame)?;
    }
    st.metrics.steps = global_step;
    st.metrics.packets_delivered = st.metrics.packets;
    let e = &mut st.metrics.energy;
    // Counts are far below 2^53: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    {
        e.synaptic_pj = st.metrics.synaptic_operations as f64 * chip.syn_op_energy_pj;
        e.neuron_pj = st.metrics.membrane_updates as f64 * chip.neuron_update_energy_pj;
        e.routing_pj = st.metrics.packets as f64 * chip.packet_energy_pj
            + st.metrics.hops as f64 * chip.hop_energy_pj;
    }
    e.static_pj = 0.0;
    Ok(st.finish())
}
