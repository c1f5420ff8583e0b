//! Neuron state of one sample and the operations both timing modes share: leak, inject,
//! deliver one source's synapses to one core, and the fire phase.

use crate::arith::Arith;
use crate::compiled::{Compiled, NO_RANGE};
use crate::error::{Error, Result};
use crate::mem;
use crate::result::{Latency, Metrics, ReleaseRow, SampleResult, TraceRow};
use crate::scheduler::SpikeQueue;
use crate::stochastic;

/// Where in time a fire phase happens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct When {
    pub frame: u32,
    /// Step in frame (`steps`) or tick offset in frame (`events`).
    pub step: u64,
    /// Global step (`steps`) or absolute tick (`events`).
    pub time: u64,
    /// Index of this step among all steps of the sample.
    pub global_step: u64,
}

/// `flag` of a neuron in the fire phase's list already.
const TOUCHED: u8 = 1;
/// `flag` of a refractory neuron: it is not updated until the next frame.
const REFRACTORY: u8 = 2;

#[derive(Debug)]
pub(crate) struct State<'c, A: Arith> {
    pub net: &'c Compiled<A>,
    pub v: Vec<A::V>,
    /// Synaptic trace of stochastic and integrator neurons.
    cur: Vec<A::V>,
    /// Input accumulated in this step. A delivery adds to every target, refractory or not, so
    /// that a dense block is one loop with no branch; a refractory neuron's sum is never read,
    /// and is cleared when the neuron leaves its refractory period (at the next frame's leak).
    acc: Vec<A::V>,
    /// [`TOUCHED`] and [`REFRACTORY`] bits of every neuron.
    flag: Vec<u8>,
    touched: Vec<u32>,
    /// Bumped whenever touched or refractory flags change outside a delivery (fire phase,
    /// leak): a target range stamped with the current generation has every non-refractory
    /// neuron touched already.
    generation: u64,
    range_stamp: Vec<u64>,
    /// Touched neurons of busy cores, kept for a later fire phase.
    deferred: Vec<u32>,
    carry: Vec<u32>,
    next_carry: Vec<u32>,
    fired: Vec<(u32, f64)>,
    pub queue: SpikeQueue,
    pub metrics: Metrics,
    pub out_counts: Vec<u32>,
    pub out_potential: Vec<f64>,
    pub first_spike: Vec<i64>,
    pub trace: Vec<TraceRow>,
    pub releases: Vec<ReleaseRow>,
    pub want_trace: bool,
    pub label: Option<u32>,
    pub core_spikes: Vec<u64>,
    pub core_synops: Vec<u64>,
    pub core_busy_ticks: Vec<u64>,
    spikes_before_step: u64,
    /// Frame of each neuron's latest spike (`u32::MAX`: none yet), for `active_neuron_frames`.
    last_spike_frame: Vec<u32>,
    /// A trace row that could not be kept (out of memory): reported at the end of the frame.
    failed: Option<Error>,
}

impl<'c, A: Arith> State<'c, A> {
    pub fn new(
        net: &'c Compiled<A>,
        n_groups: usize,
        n_frames: usize,
        want_trace: bool,
        label: Option<u32>,
    ) -> Result<Self> {
        let n = net.n_neurons;
        let per_frame = n_frames.saturating_mul(net.output_size);
        Ok(Self {
            net,
            v: mem::filled(n, A::V::default(), "membrane potentials")?,
            cur: mem::filled(n, A::V::default(), "synaptic currents")?,
            acc: mem::filled(n, A::V::default(), "input accumulators")?,
            flag: mem::filled(n, 0, "neuron flags")?,
            generation: 1,
            range_stamp: mem::filled(net.range_first.len(), 0, "target ranges")?,
            touched: Vec::new(),
            deferred: Vec::new(),
            carry: Vec::new(),
            next_carry: Vec::new(),
            fired: Vec::new(),
            queue: SpikeQueue::new(net.n_sources(), n_groups)?,
            metrics: Metrics::default(),
            out_counts: mem::filled(per_frame, 0, "output counts (frames x outputs)")?,
            out_potential: mem::filled(per_frame, 0.0, "output potentials (frames x outputs)")?,
            first_spike: mem::filled(net.output_size, -1, "first spikes")?,
            trace: Vec::new(),
            releases: Vec::new(),
            want_trace,
            label,
            core_spikes: mem::filled(net.n_cores, 0, "spikes per core")?,
            core_synops: mem::filled(net.n_cores, 0, "synaptic operations per core")?,
            core_busy_ticks: mem::filled(net.n_cores, 0, "busy ticks per core")?,
            spikes_before_step: 0,
            last_spike_frame: mem::filled(n, u32::MAX, "last spike frames")?,
            failed: None,
        })
    }

    /// Take the pending count of a released source (logging the release with the trace).
    #[inline]
    pub fn take_release(&mut self, when: When, source: u32) -> u32 {
        let net = self.net;
        let count = std::mem::take(&mut self.queue.count[source as usize]);
        if self.want_trace {
            let s = source as usize;
            // n_cores <= 2^20
            #[allow(clippy::cast_possible_truncation)]
            let group = if s < net.n_inputs {
                net.n_cores as u32
            } else {
                net.core_of[s - net.n_inputs]
            };
            if let Err(e) = mem::reserve(&mut self.releases, 1, "release trace") {
                self.failed.get_or_insert(e);
                self.want_trace = false;
                return count;
            }
            self.releases.push(ReleaseRow {
                frame: when.frame,
                step: when.step,
                time: when.time,
                group,
                source,
                count,
            });
        }
        count
    }

    /// Start of a frame: leak every neuron, clear refractory flags, and collect neurons that
    /// are already above threshold (they fire at the next fire phase). Stochastic and
    /// integrator neurons decay their synaptic trace; their potential moves at their draw.
    pub fn leak(&mut self) {
        let net = self.net;
        self.carry.clear();
        for n in 0..net.n_neurons {
            if net.has_trace[n] {
                self.cur[n] = net.arith.leak(self.cur[n], net.trace_leak[n]);
                continue;
            }
            self.v[n] = net.arith.leak(self.v[n], net.leak[n]);
            if self.flag[n] & REFRACTORY != 0 {
                self.flag[n] &= !REFRACTORY;
                self.acc[n] = A::V::default();
            }
            if self.v[n] > net.theta[n] {
                // n < 2^28
                #[allow(clippy::cast_possible_truncation)]
                self.carry.push(n as u32);
            }
        }
        self.metrics.membrane_updates += net.n_neurons as u64;
        self.generation += 1;
    }

    /// Deliver segment `k` (one destination core) of a released source with count `c`.
    #[inline]
    pub fn deliver_segment(&mut self, k: usize, begin: usize, c: u32) {
        let net = self.net;
        let end = net.seg_end[k] as usize;
        let len = end - begin;
        self.metrics.synaptic_operations += len as u64;
        let weights = &net.weight[begin..end];
        let (acc, flag, touched) = (&mut self.acc, &mut self.flag, &mut self.touched);
        let r = net.seg_range[k];
        if r != NO_RANGE {
            // Consecutive targets, from the range's first: no target index is read. The
            // touched flags once per range and fire phase, then one loop over the block with
            // no branch.
            let t0 = net.range_first[r as usize] as usize;
            self.core_synops[net.core_of[t0] as usize] += len as u64;
            let stamp = &mut self.range_stamp[r as usize];
            if *stamp != self.generation {
                *stamp = self.generation;
                for (t, f) in (t0..).zip(&mut flag[t0..t0 + len]) {
                    if *f == 0 {
                        *f = TOUCHED;
                        // t < 2^28
                        #[allow(clippy::cast_possible_truncation)]
                        touched.push(t as u32);
                    }
                }
            }
            let cells = &mut acc[t0..t0 + len];
            if c == 1 {
                for (a, &w) in cells.iter_mut().zip(weights) {
                    *a = A::accumulate(*a, w, 1);
                }
            } else {
                for (a, &w) in cells.iter_mut().zip(weights) {
                    *a = A::accumulate(*a, w, c);
                }
            }
            return;
        }
        let targets = &net.target[begin..end];
        self.core_synops[net.core_of[targets[0] as usize] as usize] += len as u64;
        for (&t, &w) in targets.iter().zip(weights) {
            let t = t as usize;
            acc[t] = A::accumulate(acc[t], w, c);
            if flag[t] == 0 {
                flag[t] = TOUCHED;
                // t < 2^28
                #[allow(clippy::cast_possible_truncation)]
                touched.push(t as u32);
            }
        }
    }

    /// Fire phase: integrate the accumulated current of every touched neuron, then every
    /// non-refractory neuron above threshold fires once (ascending neuron order in the trace).
    /// Stochastic and integrator neurons add the current to their trace and do not fire here.
    /// A neuron on a core that `busy` marks (`events` mode: the core still has packets to
    /// process) keeps accumulating: the core updates it once it has processed its input.
    pub fn fire(&mut self, when: When, busy: Option<&dyn Fn(u32) -> bool>) {
        let net = self.net;
        if let Some(busy) = busy {
            // neurons of busy cores wait in `deferred` for the next fire phase
            let deferred = &mut self.deferred;
            deferred.clear();
            self.touched.retain(|&n| {
                let wait = busy(net.core_of[n as usize]);
                if wait {
                    deferred.push(n);
                }
                !wait
            });
        }
        self.metrics.membrane_updates += self.touched.len() as u64;
        self.fired.clear();
        for i in 0..self.carry.len() {
            let n = self.carry[i] as usize;
            if self.flag[n] == 0 && self.v[n] > net.theta[n] {
                self.fire_one(n);
            }
        }
        self.integrate_touched();
        self.touched.clear();
        self.touched.append(&mut self.deferred);
        self.generation += 1;
        std::mem::swap(&mut self.carry, &mut self.next_carry);
        self.next_carry.clear();
        self.emit(when);
    }

    /// The fire phase's update of every touched neuron: take its input, integrate, and fire
    /// if above threshold. Written without a branch on whether a neuron fires (it is as likely
    /// as not): every neuron's spike is written to `fired` and kept only if it fired.
    fn integrate_touched(&mut self) {
        let net = self.net;
        let arith = &net.arith;
        let base = self.fired.len();
        self.fired.resize(base + self.touched.len(), (0, 0.0));
        let mut count = base;
        // The arrays as local slices: their addresses stay in registers through the loop.
        let (theta, subtract, refractory, has_trace) = (
            &net.theta[..],
            &net.subtract[..],
            &net.refractory[..],
            &net.has_trace[..],
        );
        let (acc, flag, vs, cur) = (
            &mut self.acc[..],
            &mut self.flag[..],
            &mut self.v[..],
            &mut self.cur[..],
        );
        let (fired, next_carry) = (&mut self.fired[..], &mut self.next_carry);
        for &n32 in &self.touched {
            let n = n32 as usize;
            let input = std::mem::take(&mut acc[n]);
            if has_trace[n] {
                flag[n] = 0;
                cur[n] = arith.integrate(cur[n], input);
                continue;
            }
            let v = arith.integrate(vs[n], input);
            let th = theta[n];
            let fires = v > th;
            let over = arith.subtract(v, th);
            let reset = if subtract[n] { over } else { A::V::default() };
            vs[n] = if fires { reset } else { v };
            flag[n] = u8::from(fires & refractory[n]) * REFRACTORY;
            // Still above threshold after a subtractive reset: fires again at the next fire
            // phase. Rare: the one branch. `over > theta` implies that it fired (theta > 0).
            if subtract[n] && over > th && !refractory[n] {
                next_carry.push(n32);
            }
            fired[count] = (n32, A::raw(over));
            count += usize::from(fires);
        }
        self.fired.truncate(count);
    }

    /// The draw of stochastic / integrator population `d` (index into `net.draws`): every
    /// neuron updates `v <- beta v + i`; a stochastic one fires by the hash of the frame
    /// (`prefix = frame_prefix(seed, sample, frame)`), see [`crate::stochastic`].
    pub fn draw(&mut self, d: usize, prefix: u32, when: When) {
        let net = self.net;
        let pop = net.draws[d];
        self.fired.clear();
        self.metrics.membrane_updates += pop.size as u64;
        for n in pop.start..pop.start + pop.size {
            let v = net.arith.leak(self.v[n], net.leak[n]);
            self.v[n] = net.arith.integrate(v, self.cur[n]);
            if pop.fires {
                let z = net.arith.subtract(self.v[n], net.theta[n]);
                let index = net.arith.logit_index(z);
                if stochastic::fires(prefix, (net.n_inputs + n) as u64, index) {
                    // n < 2^28
                    #[allow(clippy::cast_possible_truncation)]
                    self.fired.push((n as u32, A::raw(z)));
                }
            }
        }
        self.emit(when);
    }

    /// End of frame `frame`: record the output population's potentials. Errors: a trace that
    /// could not be kept, a pending count that passed `u32::MAX` (see [`SpikeQueue::push`]).
    pub fn end_frame(&mut self, frame: u32) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if let Some(s) = self.queue.overflowed() {
            return Err(Error::input(
                "pending count",
                format!(
                    "source {s} had more than {} events or spikes pending by the end of frame \
                     {frame} (a step cap left them unreleased frame after frame); raise F or \
                     max_steps, or send fewer events per channel",
                    u32::MAX
                ),
            ));
        }
        let net = self.net;
        let o = frame as usize * net.output_size;
        for i in 0..net.output_size {
            self.out_potential[o + i] = net.arith.to_f64(self.v[net.output_start + i]);
        }
        Ok(())
    }

    /// Record the spikes in `self.fired` (sorted by neuron): metrics, trace, queue, outputs.
    fn emit(&mut self, when: When) {
        let net = self.net;
        if self.fired.is_empty() {
            return;
        }
        if self.want_trace {
            // The trace lists a step's spikes by ascending neuron; nothing else depends on
            // their order (queues are ordered at release).
            self.fired.sort_unstable_by_key(|e| e.0);
            if let Err(e) = mem::reserve(&mut self.trace, self.fired.len(), "spike trace") {
                self.failed.get_or_insert(e);
                self.want_trace = false;
            }
        }
        let since = (u64::from(when.frame) << 32) | when.step.min(0xffff_ffff);
        let spikes_before = self.spikes_before_step;
        self.metrics.spikes += self.fired.len() as u64;
        for i in 0..self.fired.len() {
            let (n32, overshoot) = self.fired[i];
            let n = n32 as usize;
            let first_in_frame = self.last_spike_frame[n] != when.frame;
            self.last_spike_frame[n] = when.frame;
            self.metrics.active_neuron_frames += u64::from(first_in_frame);
            let core = net.core_of[n];
            self.core_spikes[core as usize] += 1;
            if self.want_trace {
                self.trace.push(TraceRow {
                    frame: when.frame,
                    step: when.step,
                    time: when.time,
                    neuron: n32,
                });
            }
            if net.has_out[n] {
                // sources < 2^29
                #[allow(clippy::cast_possible_truncation)]
                let src = (net.n_inputs + n) as u32;
                self.queue.push(core, src, 1, since);
                self.queue.overshoot[src as usize] = overshoot;
            }
            if n >= net.output_start && n < net.output_start + net.output_size {
                let o = n - net.output_start;
                self.out_counts[when.frame as usize * net.output_size + o] += 1;
                let lat = Latency {
                    frame: when.frame,
                    step: when.step,
                    global_step: when.global_step,
                    tick: when.time,
                    spikes_before,
                    ns: None,
                };
                if self.first_spike[o] < 0 {
                    self.first_spike[o] = i64::try_from(when.time).unwrap_or(i64::MAX);
                }
                if self.metrics.first_out.is_none() {
                    self.metrics.first_out = Some(lat);
                }
                if self.metrics.first_correct.is_none()
                    && self.label.is_some_and(|l| l as usize == o)
                {
                    self.metrics.first_correct = Some(lat);
                }
            }
        }
        self.spikes_before_step = self.metrics.spikes;
    }

    #[inline(always)]
    fn fire_one(&mut self, n: usize) {
        let net = self.net;
        let over = net.arith.subtract(self.v[n], net.theta[n]);
        self.v[n] = if net.subtract[n] {
            over
        } else {
            A::V::default()
        };
        if net.refractory[n] {
            self.flag[n] = REFRACTORY;
        } else if net.subtract[n] && self.v[n] > net.theta[n] {
            // n < 2^28
            #[allow(clippy::cast_possible_truncation)]
            self.next_carry.push(n as u32);
        }
        // n < 2^28
        #[allow(clippy::cast_possible_truncation)]
        self.fired.push((n as u32, A::raw(over)));
    }

    /// Finish: potentials in network units and the result record.
    pub fn finish(mut self) -> SampleResult {
        self.metrics.unreleased = self.queue.total_count();
        let net = self.net;
        let v_final = self.v.iter().map(|&v| net.arith.to_f64(v)).collect();
        SampleResult {
            out_counts: self.out_counts,
            out_potential: self.out_potential,
            first_spike: self.first_spike,
            trace: self.trace,
            releases: self.releases,
            v_final,
            metrics: self.metrics,
            core_spikes: self.core_spikes,
            core_synops: self.core_synops,
            core_busy_ticks: self.core_busy_ticks,
        }
    }
}
