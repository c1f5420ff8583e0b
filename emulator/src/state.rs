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

/// What a delivery reads and writes of one neuron, kept together so that a synapse costs one
/// load of one cache line: the input accumulated in this step, whether the neuron is in the
/// fire phase's list already, and whether it is refractory (deliveries to it are dropped).
#[derive(Debug, Clone, Copy, Default)]
struct Inbox<V> {
    acc: V,
    touched: bool,
    refractory: bool,
}

#[derive(Debug)]
pub(crate) struct State<'c, A: Arith> {
    pub net: &'c Compiled<A>,
    pub v: Vec<A::V>,
    /// Synaptic trace of stochastic and integrator neurons.
    cur: Vec<A::V>,
    inbox: Vec<Inbox<A::V>>,
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
            inbox: mem::filled(n, Inbox::default(), "input accumulators")?,
            generation: 1,
            range_stamp: mem::filled(net.n_ranges, 0, "target ranges")?,
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
            self.inbox[n].refractory = false;
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
        self.core_synops[net.core_at(begin) as usize] += (end - begin) as u64;
        self.metrics.synaptic_operations += (end - begin) as u64;
        let targets = &net.target[begin..end];
        let weights = &net.weight[begin..end];
        let (inbox, touched) = (&mut self.inbox, &mut self.touched);
        let r = net.seg_range[k];
        if r != NO_RANGE {
            // Consecutive targets: the touched flags once per range and fire phase, then a
            // loop over the block with no index loads and one branch a synapse.
            let t0 = targets[0] as usize;
            let cells = &mut inbox[t0..t0 + targets.len()];
            let stamp = &mut self.range_stamp[r as usize];
            if *stamp != self.generation {
                *stamp = self.generation;
                for (&t, cell) in targets.iter().zip(cells.iter_mut()) {
                    if !cell.refractory && !cell.touched {
                        cell.touched = true;
                        touched.push(t);
                    }
                }
            }
            for (cell, &w) in cells.iter_mut().zip(weights) {
                if !cell.refractory {
                    cell.acc = A::accumulate(cell.acc, w, c);
                }
            }
            return;
        }
        for (&t, &w) in targets.iter().zip(weights) {
            let cell = &mut inbox[t as usize];
            if !cell.refractory {
                cell.acc = A::accumulate(cell.acc, w, c);
                if !cell.touched {
                    cell.touched = true;
                    touched.push(t);
                }
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
            if !self.inbox[n].touched && !self.inbox[n].refractory && self.v[n] > net.theta[n] {
                self.fire_one(n);
            }
        }
        for i in 0..self.touched.len() {
            let n = self.touched[i] as usize;
            let acc = std::mem::take(&mut self.inbox[n].acc);
            self.inbox[n].touched = false;
            if net.has_trace[n] {
                self.cur[n] = net.arith.integrate(self.cur[n], acc);
                continue;
            }
            self.v[n] = net.arith.integrate(self.v[n], acc);
            if self.v[n] > net.theta[n] {
                self.fire_one(n);
            }
        }
        self.touched.clear();
        self.touched.append(&mut self.deferred);
        self.generation += 1;
        std::mem::swap(&mut self.carry, &mut self.next_carry);
        self.next_carry.clear();
        self.emit(when);
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
        self.fired.sort_unstable_by_key(|e| e.0);
        if self.want_trace {
            if let Err(e) = mem::reserve(&mut self.trace, self.fired.len(), "spike trace") {
                self.failed.get_or_insert(e);
                self.want_trace = false;
            }
        }
        let since = (u64::from(when.frame) << 32) | when.step.min(0xffff_ffff);
        let spikes_before = self.spikes_before_step;
        for i in 0..self.fired.len() {
            let (n32, overshoot) = self.fired[i];
            let n = n32 as usize;
            self.metrics.spikes += 1;
            if self.last_spike_frame[n] != when.frame {
                self.last_spike_frame[n] = when.frame;
                self.metrics.active_neuron_frames += 1;
            }
            self.core_spikes[net.core_of[n] as usize] += 1;
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
                self.queue.push(net.core_of[n], src, 1, since);
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

    #[inline]
    fn fire_one(&mut self, n: usize) {
        let net = self.net;
        let over = net.arith.subtract(self.v[n], net.theta[n]);
        self.v[n] = if net.subtract[n] {
            over
        } else {
            A::V::default()
        };
        if net.refractory[n] {
            self.inbox[n].refractory = true;
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
