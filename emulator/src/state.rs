//! Neuron state of one sample and the operations both timing modes share: leak, inject,
//! deliver one source's synapses to one core, and the fire phase. The neurons are split into
//! lanes ([`crate::lane`]) that a `steps` run updates on threads of their own.

use crate::arith::Arith;
use crate::compiled::Compiled;
use crate::error::{Error, Result};
use crate::lane::{Lane, LaneLists, LanePlan};
use crate::mem;
use crate::result::{Latency, Metrics, ReleaseRow, SampleResult, TraceRow};
use crate::scheduler::SpikeQueue;
use crate::stochastic;
use rayon::prelude::*;

/// The touched neurons and clean ranges of one busy core, waiting for it to be idle.
#[derive(Debug, Default)]
struct Waiting {
    touched: Vec<u32>,
    ranges: Vec<(u32, u32)>,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.touched.is_empty() && self.ranges.is_empty()
    }
}

/// The waiting lists of core `c` if it is busy (listing it among the waiting cores when they
/// were empty), else `None`.
fn hold<'w>(
    waiting: &'w mut [Waiting],
    cores: &mut Vec<u32>,
    busy: &dyn Fn(u32) -> bool,
    c: u32,
) -> Option<&'w mut Waiting> {
    if !busy(c) {
        return None;
    }
    let w = &mut waiting[c as usize];
    if w.is_empty() {
        cores.push(c);
    }
    Some(w)
}

/// Keep the entries of `list[..n]` that `keep` picks, in order, followed by `list[n..]`.
fn keep_idle<T: Copy>(list: &mut Vec<T>, n: usize, mut keep: impl FnMut(&T) -> bool) {
    let mut k = 0;
    for i in 0..n {
        let e = list[i];
        if keep(&e) {
            list[k] = e;
            k += 1;
        }
    }
    list.copy_within(n.., k);
    list.truncate(list.len() - (n - k));
}

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
    /// [`lane::TOUCHED`] and [`lane::REFRACTORY`] bits of every neuron.
    flag: Vec<u8>,
    /// Bumped whenever touched or refractory flags change outside a delivery (fire phase,
    /// leak): a target range stamped with the current generation has every non-refractory
    /// neuron touched already.
    generation: u64,
    /// See [`Lane::stamp`].
    range_stamp: Vec<(u64, u32)>,
    /// The lanes: runs of whole cores, with their touched, fired and carried neurons.
    lanes: Vec<LaneLists>,
    plan: &'c LanePlan,
    /// Touched neurons and clean ranges of each busy core, kept with their core for the first
    /// fire phase at which it is idle (`events`, one lane; empty until then).
    waiting: Vec<Waiting>,
    /// The cores whose `waiting` lists are not empty.
    waiting_cores: Vec<u32>,
    /// Spikes of a draw.
    drawn: Vec<(u32, f64)>,
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
    /// The state of one sample, its neurons split into the lanes of `plan`. On the heap: its
    /// addresses do not move with the stack (a stack address that aliased the synapse arrays
    /// modulo 4 KiB stalled loads behind stores, and varied the speed by a third from one
    /// process to the next).
    pub fn new(
        net: &'c Compiled<A>,
        n_groups: usize,
        n_frames: usize,
        want_trace: bool,
        label: Option<u32>,
        plan: &'c LanePlan,
    ) -> Result<Box<Self>> {
        let n = net.n_neurons;
        let per_frame = n_frames.saturating_mul(net.output_size);
        Ok(Box::new(Self {
            net,
            v: mem::filled(n, A::V::default(), "membrane potentials")?,
            cur: mem::filled(n, A::V::default(), "synaptic currents")?,
            acc: mem::filled(n, A::V::default(), "input accumulators")?,
            flag: mem::filled(n, 0, "neuron flags")?,
            generation: 1,
            range_stamp: mem::filled(if net.has_ranges { n } else { 0 }, (0, 0), "target ranges")?,
            lanes: plan.bounds.iter().map(|&b| LaneLists::new(b)).collect(),
            plan,
            waiting: Vec::new(),
            waiting_cores: Vec::new(),
            drawn: Vec::new(),
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
        }))
    }

    /// Take the pending count of a released source (logging the release with the trace).
    #[inline]
    pub fn take_release(&mut self, when: When, source: u32) -> u32 {
        let count = std::mem::take(&mut self.queue.count[source as usize]);
        if self.want_trace {
            self.log_release(when, source, count);
        }
        count
    }

    /// Add a release to the trace.
    #[cold]
    #[inline(never)]
    fn log_release(&mut self, when: When, source: u32, count: u32) {
        let net = self.net;
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
            return;
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

    /// The view of the one lane of a state that has one (no allocation).
    fn whole(&mut self) -> Lane<'_, A> {
        Lane {
            net: self.net,
            generation: self.generation,
            v: &mut self.v,
            cur: &mut self.cur,
            acc: &mut self.acc,
            flag: &mut self.flag,
            stamp: &mut self.range_stamp,
            lists: &mut self.lanes[0],
            plan: self.plan,
        }
    }

    /// Every lane's view of the state (disjoint slices of the neuron arrays).
    fn views(&mut self) -> Vec<Lane<'_, A>> {
        let (net, plan) = (self.net, self.plan);
        let generation = self.generation;
        let ranges = !self.range_stamp.is_empty();
        let (mut v, mut cur, mut acc, mut flag) = (
            &mut self.v[..],
            &mut self.cur[..],
            &mut self.acc[..],
            &mut self.flag[..],
        );
        let mut stamp = &mut self.range_stamp[..];
        let mut out = Vec::with_capacity(self.lanes.len());
        for lists in &mut self.lanes {
            let len = lists.bounds.end - lists.bounds.start;
            let (a, rest) = std::mem::take(&mut v).split_at_mut(len);
            v = rest;
            let (b, rest) = std::mem::take(&mut cur).split_at_mut(len);
            cur = rest;
            let (c, rest) = std::mem::take(&mut acc).split_at_mut(len);
            acc = rest;
            let (d, rest) = std::mem::take(&mut flag).split_at_mut(len);
            flag = rest;
            let (e, rest) = std::mem::take(&mut stamp).split_at_mut(if ranges { len } else { 0 });
            stamp = rest;
            out.push(Lane {
                net,
                generation,
                v: a,
                cur: b,
                acc: c,
                flag: d,
                stamp: e,
                lists,
                plan,
            });
        }
        out
    }

    /// Run `f` on every lane: on threads of their own when `parallel`, else in turn. Either
    /// way each lane does the same work, so the results are the same.
    fn each_lane(&mut self, parallel: bool, f: impl Fn(&mut Lane<'_, A>) + Sync + Send) {
        if self.lanes.len() == 1 {
            f(&mut self.whole());
        } else {
            let mut views = self.views();
            if parallel {
                // one task a lane: only some lanes have work in a step, and any thread may take them
                views.par_iter_mut().with_max_len(1).for_each(f);
            } else {
                views.iter_mut().for_each(f);
            }
        }
        for l in &mut self.lanes {
            self.metrics.synaptic_operations += std::mem::take(&mut l.synops);
            self.metrics.membrane_updates += std::mem::take(&mut l.updates);
        }
    }

    /// Start of a frame: leak every neuron, clear refractory flags, and collect neurons that
    /// are already above threshold (they fire at the next fire phase). Stochastic and
    /// integrator neurons decay their synaptic trace; their potential moves at their draw.
    pub fn leak(&mut self) {
        debug_assert!(
            self.waiting_cores.is_empty(),
            "a core still waits at the frame's end"
        );
        let parallel = self.lanes.len() > 1;
        self.each_lane(parallel, |lane| lane.leak());
        self.metrics.membrane_updates += self.net.n_neurons as u64;
        self.generation += 1;
    }

    /// Deliver segment `k` (one destination core, from synapse `begin`) of released source
    /// `src` with count `c` (a state of one lane: `events` mode).
    #[inline]
    pub fn deliver_segment(&mut self, src: usize, k: usize, begin: usize, c: u32) {
        debug_assert_eq!(self.lanes.len(), 1);
        self.whole().deliver_segment(src, k, begin, c);
        let l = &mut self.lanes[0];
        self.metrics.synaptic_operations += std::mem::take(&mut l.synops);
    }

    /// One forward step after the release (`steps` mode): every lane delivers the released
    /// `(source, count)` pairs (ascending sources) and runs its fire phase, on threads of
    /// their own when `parallel`; then the spikes are recorded.
    pub fn step(&mut self, released: &[(u32, u32)], when: When, parallel: bool) {
        if self.lanes.len() > 1 {
            self.plan.split(released, &mut self.lanes);
        }
        self.each_lane(parallel, |lane| {
            lane.deliver(released);
            lane.fire();
        });
        self.generation += 1;
        self.emit_lanes(when);
    }

    /// Fire phase (`events` mode, one lane): integrate the accumulated current of every
    /// touched neuron, then every non-refractory neuron above threshold fires once.
    /// Stochastic and integrator neurons add the current to their trace and do not fire here.
    /// A neuron on a core that `busy` marks (the core still has packets to process) keeps
    /// accumulating: the core updates it once it has processed its input.
    pub fn fire(&mut self, when: When, busy: Option<&dyn Fn(u32) -> bool>) {
        debug_assert_eq!(self.lanes.len(), 1);
        if let Some(busy) = busy {
            self.hold_busy(busy);
        }
        self.each_lane(false, |lane| lane.fire());
        self.generation += 1;
        self.emit_lanes(when);
    }

    /// Before a fire phase that waits for busy cores: the neurons of the cores that waited
    /// and are idle now join it, and those touched since the last one on cores that are busy
    /// wait with their core. Each neuron is looked at once when it waits and once when it
    /// joins, however many fire phases its core stays busy through (a list of every waiting
    /// neuron, checked at each phase, cost a third of a Loihi-timed run).
    fn hold_busy(&mut self, busy: &dyn Fn(u32) -> bool) {
        let net = self.net;
        if self.waiting.len() < net.n_cores {
            self.waiting.resize_with(net.n_cores, Waiting::default);
        }
        let (waiting, cores) = (&mut self.waiting, &mut self.waiting_cores);
        let lane = &mut self.lanes[0];
        // touched since the last fire phase; the cores that turn idle add theirs after them
        let fresh = lane.touched.len();
        let fresh_ranges = lane.ranges.len();
        cores.retain(|&c| {
            let idle = !busy(c);
            if idle {
                let w = &mut waiting[c as usize];
                lane.touched.append(&mut w.touched);
                lane.ranges.append(&mut w.ranges);
            }
            !idle
        });
        keep_idle(&mut lane.touched, fresh, |&n| {
            let c = net.core_of[n as usize];
            hold(waiting, cores, busy, c)
                .map(|w| w.touched.push(n))
                .is_none()
        });
        // a range is on one core: its first neuron's
        keep_idle(&mut lane.ranges, fresh_ranges, |&r| {
            let c = net.core_of[r.0 as usize];
            hold(waiting, cores, busy, c)
                .map(|w| w.ranges.push(r))
                .is_none()
        });
    }

    /// Record the spikes of every lane's fire phase (lane by lane: ascending neurons).
    fn emit_lanes(&mut self, when: When) {
        let spikes_before = self.spikes_before_step;
        for i in 0..self.lanes.len() {
            let mut fired = std::mem::take(&mut self.lanes[i].fired);
            self.emit(&mut fired[..], when, spikes_before);
            self.lanes[i].fired = fired;
        }
        self.spikes_before_step = self.metrics.spikes;
    }

    /// The draw of stochastic / integrator population `d` (index into `net.draws`): every
    /// neuron updates `v <- beta v + i`; a stochastic one fires by the hash of the frame
    /// (`prefix = frame_prefix(seed, sample, frame)`), see [`crate::stochastic`].
    pub fn draw(&mut self, d: usize, prefix: u32, when: When) {
        let net = self.net;
        let pop = net.draws[d];
        let mut drawn = std::mem::take(&mut self.drawn);
        drawn.clear();
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
                    drawn.push((n as u32, A::raw(z)));
                }
            }
        }
        let spikes_before = self.spikes_before_step;
        self.emit(&mut drawn, when, spikes_before);
        self.spikes_before_step = self.metrics.spikes;
        self.drawn = drawn;
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

    /// Record the spikes `fired` (of one lane, or a draw) of a step in which
    /// `spikes_before` spikes came before: metrics, trace, queue, outputs.
    fn emit(&mut self, fired: &mut [(u32, f64)], when: When, spikes_before: u64) {
        let net = self.net;
        if fired.is_empty() {
            return;
        }
        if self.want_trace {
            // The trace lists a step's spikes by ascending neuron (lanes are ascending runs of
            // neurons); nothing else depends on their order (queues are ordered at release).
            fired.sort_unstable_by_key(|e| e.0);
            if let Err(e) = mem::reserve(&mut self.trace, fired.len(), "spike trace") {
                self.failed.get_or_insert(e);
                self.want_trace = false;
            }
        }
        let since = (u64::from(when.frame) << 32) | when.step.min(0xffff_ffff);
        self.metrics.spikes += fired.len() as u64;
        // Counts in locals, and the arrays as local slices: a field of `self` would be read again
        // after every store to any array.
        let want_trace = self.want_trace;
        let mut active = 0u64;
        let Self {
            last_spike_frame,
            core_spikes,
            queue,
            trace,
            out_counts,
            first_spike,
            metrics,
            label,
            ..
        } = self;
        let (last_spike_frame, core_spikes) = (&mut last_spike_frame[..], &mut core_spikes[..]);
        let (core_of, has_out) = (&net.core_of[..], &net.has_out[..]);
        let outputs = net.output_start..net.output_start + net.output_size;
        for &(n32, overshoot) in fired.iter() {
            let n = n32 as usize;
            let first_in_frame = last_spike_frame[n] != when.frame;
            last_spike_frame[n] = when.frame;
            active += u64::from(first_in_frame);
            let core = core_of[n];
            core_spikes[core as usize] += 1;
            if want_trace {
                trace.push(TraceRow {
                    frame: when.frame,
                    step: when.step,
                    time: when.time,
                    neuron: n32,
                });
            }
            if has_out[n] {
                // sources < 2^29
                #[allow(clippy::cast_possible_truncation)]
                let src = (net.n_inputs + n) as u32;
                queue.push(core, src, 1, since);
                queue.overshoot[src as usize] = overshoot;
            }
            if outputs.contains(&n) {
                let o = n - net.output_start;
                out_counts[when.frame as usize * net.output_size + o] += 1;
                let lat = Latency {
                    frame: when.frame,
                    step: when.step,
                    global_step: when.global_step,
                    tick: when.time,
                    spikes_before,
                    ns: None,
                };
                if first_spike[o] < 0 {
                    first_spike[o] = i64::try_from(when.time).unwrap_or(i64::MAX);
                }
                if metrics.first_out.is_none() {
                    metrics.first_out = Some(lat);
                }
                if metrics.first_correct.is_none() && label.is_some_and(|l| l as usize == o) {
                    metrics.first_correct = Some(lat);
                }
            }
        }
        metrics.active_neuron_frames += active;
    }

    /// Finish: potentials in network units and the result record.
    pub fn finish(mut self) -> SampleResult {
        for l in &self.lanes {
            for (all, own) in self.core_synops[l.bounds.core_start..l.bounds.core_end]
                .iter_mut()
                .zip(&l.core_synops)
            {
                *all += own;
            }
        }
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
