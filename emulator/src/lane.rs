//! Lanes: the neurons of one sample split into runs of whole cores that deliver and fire on
//! threads of their own, so that one large sample uses every thread.
//!
//! Within a forward step the cores are independent from the release to the end of the fire
//! phase: a delivery writes only its destination core's neurons, and a neuron's fire phase
//! reads only its own state. A lane is a run of consecutive cores whose neurons are a run of
//! consecutive neurons (the automatic mapping, and any mapping in core order). Each lane walks
//! the step's released sources in ascending order and delivers the part of each row that falls
//! in its neurons, so every neuron receives its inputs in the order it would on one thread,
//! and adds them in that order: the same bits for any number of lanes. The step's spikes are
//! then recorded lane by lane (ascending neurons), on one thread.

use crate::arith::Arith;
use crate::compiled::{Compiled, Rows, NO_BLOCK};

/// `flag` of a neuron in the fire phase's list already.
pub(crate) const TOUCHED: u8 = 1;
/// `flag` of a refractory neuron: it is not updated until the next frame.
pub(crate) const REFRACTORY: u8 = 2;

/// What a lane keeps between steps: its neurons and cores, and its lists. Aligned to two cache
/// lines: lanes on different threads write their own lists' lengths and counts all the time.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LaneLists {
    /// Its neurons and cores.
    pub bounds: Bounds,
    /// Neurons that received input since the last fire phase (ids).
    pub touched: Vec<u32>,
    /// Runs of neurons that received input since the last fire phase, as (first, length):
    /// ranges that were clean when first delivered (no neuron of them touched, refractory or
    /// with a synaptic trace), so that the fire phase updates them in one loop with no index.
    /// Their neurons are flagged touched, and are in no other run and not in `touched`.
    pub ranges: Vec<(u32, u32)>,
    /// Spikes of the last fire phase: neuron and overshoot `v - theta` (raw units).
    pub fired: Buf<(u32, f64)>,
    /// Neurons above threshold without input: they fire at the next fire phase.
    pub carry: Buf<u32>,
    next_carry: Buf<u32>,
    /// Synaptic operations and membrane updates of this lane since they were last collected.
    pub synops: u64,
    pub updates: u64,
    /// Synaptic operations into each of this lane's cores since they were last collected (its
    /// own array: lanes never write the same cache line).
    pub core_synops: Vec<u64>,
    /// This step's parts of released rows (more than one lane).
    pub parts: Vec<Part>,
}

/// A run of whole cores and their neurons.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Neurons `start..end` and cores `core_start..core_end`.
    pub start: usize,
    pub end: usize,
    pub core_start: usize,
    pub core_end: usize,
}

/// How a placed network splits into lanes, with where each source's row crosses from one lane
/// to the next: built once per lane count and kept with the emulator.
#[derive(Debug)]
pub struct LanePlan {
    pub(crate) bounds: Vec<Bounds>,
    /// `cut[s * (lanes + 1) + j]`: the first synapse (offset into the CSR) of source `s` in
    /// lane `j`, and the segment it starts (`j = lanes`: the row's end). Empty with one lane.
    cut: Vec<(u32, u32)>,
    /// Whether the lanes deliver with [`deliver_indexed_parts`]: more than one lane, segments
    /// of at least [`LONG_SEGMENT`] synapses on average, and at most one in [`RARE_RANGES`] a
    /// range (a random sparse network has a few by chance).
    pub(crate) long_segments: bool,
}

/// The mean synapses per segment from which lanes deliver a network with no range by
/// [`deliver_indexed_parts`]. Below it the call per part and the loop over segments cost more
/// than the values the lanes' copy of [`Lane::deliver_runs`] reloads (on the 1e6-neuron
/// network of `benchmarks/`, about one synapse per segment: two lanes 1.33-1.5x one lane with
/// that copy, 1.1-1.2x with the function; on the 1e5-neuron one, 20 synapses per segment:
/// 0.93-0.96x and 1.06-1.37x).
const LONG_SEGMENT: usize = 8;

/// See [`LanePlan::long_segments`]: each range segment stops [`deliver_indexed_parts`] once.
const RARE_RANGES: usize = 64;

/// The part of a released source's row that one lane delivers: source, count, synapses
/// `lo..hi` (offsets into the CSR), and the segment that starts at `lo`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part {
    pub src: u32,
    pub count: u32,
    pub lo: u32,
    pub hi: u32,
    pub seg: u32,
}

impl LanePlan {
    /// Lanes for `lanes` threads' worth of work: runs of whole cores of about equal work
    /// (synapses in, plus neurons), never empty. One lane when the cores are not in neuron
    /// order.
    pub fn new<A: Arith>(net: &Compiled<A>, lanes: usize) -> crate::Result<Self> {
        let bounds = bounds(net, lanes);
        let mut cut = Vec::new();
        if bounds.len() > 1 {
            let width = bounds.len() + 1;
            cut = crate::mem::filled(net.n_sources() * width, (0u32, 0u32), "lane cuts")?;
            // fewer than 2^31 synapses and 2^32 segments (checked when placed)
            #[allow(clippy::cast_possible_truncation)]
            let at = |i: usize, k: usize| (i as u32, k as u32);
            for (s, cuts) in cut.chunks_exact_mut(width).enumerate() {
                let (row_start, row_end) = (net.row[s], net.row[s + 1]);
                // the targets of a row ascend with their cores (cores in neuron order), and
                // lanes split at cores: every cut is where a segment starts
                let (mut i, mut k) = (row_start, net.seg[s]);
                for (j, b) in bounds.iter().enumerate() {
                    while i < row_end && (net.target[i] as usize) < b.start {
                        i = net.seg_end(k);
                        k += 1;
                    }
                    cuts[j] = at(i, k);
                }
                cuts[bounds.len()] = at(row_end, net.seg[s + 1]);
            }
        }
        let n_segments = net.seg.last().copied().unwrap_or(0);
        let long_segments = bounds.len() > 1
            && net.target.len() >= LONG_SEGMENT * n_segments.max(1)
            && (0..n_segments).filter(|&k| net.seg_is_range(k)).count() * RARE_RANGES <= n_segments;
        Ok(Self {
            bounds,
            cut,
            long_segments,
        })
    }

    /// Number of lanes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// Bytes the plan holds.
    #[must_use]
    pub fn nbytes(&self) -> usize {
        std::mem::size_of_val(&self.cut[..]) + std::mem::size_of_val(&self.bounds[..])
    }

    /// Hand each lane its part of every released `(source, count)` (ascending sources), in
    /// `lanes[j].parts` (more than one lane).
    pub(crate) fn split(&self, released: &[(u32, u32)], lanes: &mut [LaneLists]) {
        let w = self.bounds.len() + 1;
        for l in lanes.iter_mut() {
            l.parts.clear();
        }
        for &(src, count) in released {
            let s = src as usize;
            let cuts = &self.cut[s * w..(s + 1) * w];
            for (l, c) in lanes.iter_mut().zip(cuts.windows(2)) {
                if c[0].0 < c[1].0 {
                    l.parts.push(Part {
                        src,
                        count,
                        lo: c[0].0,
                        hi: c[1].0,
                        seg: c[0].1,
                    });
                }
            }
        }
    }
}

fn bounds<A: Arith>(net: &Compiled<A>, lanes: usize) -> Vec<Bounds> {
    let n_cores = net.n_cores;
    let whole = vec![Bounds {
        start: 0,
        end: net.n_neurons,
        core_start: 0,
        core_end: n_cores,
    }];
    if lanes <= 1 || !net.cores_in_order || n_cores < 2 {
        return whole;
    }
    let synapses = net.usage().synapses;
    let work: Vec<u64> = (0..n_cores)
        .map(|c| synapses[c] + net.core_neurons[c])
        .collect();
    let total: u64 = work.iter().sum();
    let mut out: Vec<Bounds> = Vec::new();
    let (mut core_start, mut start, mut done) = (0usize, 0usize, 0u64);
    for (c, &w) in work.iter().enumerate() {
        done += w;
        let k = out.len() as u64 + 1;
        let last = c + 1 == n_cores;
        // close a lane once its share of the work is reached (the last lane takes the rest)
        if last || (done * lanes as u64 >= total * k && (k as usize) < lanes) {
            let end = start
                + usize::try_from(net.core_neurons[core_start..=c].iter().sum::<u64>())
                    .unwrap_or(usize::MAX);
            if end > start {
                out.push(Bounds {
                    start,
                    end,
                    core_start,
                    core_end: c + 1,
                });
            } else if let Some(prev) = out.last_mut() {
                // cores without neurons join the lane before them
                prev.core_end = c + 1;
            }
            start = end;
            core_start = c + 1;
        }
    }
    if out.len() < 2 {
        return whole;
    }
    // cores without neurons before the first lane's join it
    out[0].core_start = 0;
    out
}

impl LaneLists {
    /// The empty lists of a lane within `b`.
    pub fn new(b: Bounds) -> Self {
        Self {
            core_synops: vec![0; b.core_end - b.core_start],
            bounds: b,
            ..Self::default()
        }
    }
}

/// One lane's view of a sample's state for one phase: its slices of the neuron arrays (its
/// neurons `lists.bounds.start..lists.bounds.end`, its cores) and its lists.
#[derive(Debug)]
pub(crate) struct Lane<'s, A: Arith> {
    pub net: &'s Compiled<A>,
    pub generation: u64,
    pub v: &'s mut [A::V],
    pub cur: &'s mut [A::V],
    pub acc: &'s mut [A::V],
    pub flag: &'s mut [u8],
    /// `(generation, length)` of the last range that started at each neuron (empty when the
    /// network has no ranges): a range from there of at most that length, in that generation,
    /// has its neurons touched already.
    pub stamp: &'s mut [(u64, u32)],
    pub lists: &'s mut LaneLists,
    pub plan: &'s LanePlan,
}

impl<A: Arith> Lane<'_, A> {
    /// Deliver the step's released sources `(source, count)` (ascending): the whole of each
    /// row with one lane, else this lane's parts of them ([`LanePlan::split`]).
    pub fn deliver(&mut self, released: &[(u32, u32)]) {
        let net = self.net;
        if self.plan.len() == 1 {
            let (seg, row) = (&net.seg[..], &net.row[..]);
            self.deliver_runs(released.iter().map(|&(s32, c)| {
                let s = s32 as usize;
                (s, seg[s], row[s], row[s + 1], c)
            }));
            return;
        }
        let parts = std::mem::take(&mut self.lists.parts);
        if self.plan.long_segments {
            // from part `i`, segment `k` at synapse `begin`
            let (mut i, mut at) = (0, None);
            while i < parts.len() {
                let lists = &mut *self.lists;
                let (synops, stop) = deliver_indexed_parts::<A>(
                    net.rows(),
                    &parts[i..],
                    at,
                    self.acc,
                    self.flag,
                    &mut lists.touched,
                    &mut lists.core_synops,
                    (lists.bounds.start, lists.bounds.core_start),
                );
                lists.synops += synops;
                let Some((j, k, begin)) = stop else { break };
                // a range segment: delivered as on one lane, then on with the rest
                let p = parts[i + j];
                let end = net.seg_end(k);
                self.deliver_runs(std::iter::once((p.src as usize, k, begin, end, p.count)));
                if end < p.hi as usize {
                    (i, at) = (i + j, Some((k + 1, end)));
                } else {
                    (i, at) = (i + j + 1, None);
                }
            }
            self.lists.parts = parts;
            return;
        }
        self.deliver_runs(parts.iter().map(|p| {
            (
                p.src as usize,
                p.seg as usize,
                p.lo as usize,
                p.hi as usize,
                p.count,
            )
        }));
        self.lists.parts = parts;
    }

    /// Deliver segment `k` (one destination core, from synapse `begin`) of released source
    /// `src` with count `c`.
    pub fn deliver_segment(&mut self, src: usize, k: usize, begin: usize, c: u32) {
        let end = self.net.seg_end(k);
        self.deliver_runs(std::iter::once((src, k, begin, end, c)));
    }

    /// Deliver runs `(src, k, begin, end, c)`: synapses `begin..end` of released source `src`
    /// with count `c`, whole segments, the first of them `k`. One function with the arrays in
    /// local slices, so that their addresses stay in registers through all the deliveries (as
    /// fields they would be read again after every store).
    #[inline]
    fn deliver_runs(&mut self, runs: impl Iterator<Item = (usize, usize, usize, usize, u32)>) {
        let net = self.net;
        let rows = net.rows();
        let has_trace = &net.has_trace[..];
        let (base, core_start, generation) = (
            self.lists.bounds.start,
            self.lists.bounds.core_start,
            self.generation,
        );
        let lists = &mut *self.lists;
        let (acc, flag, stamps) = (&mut self.acc[..], &mut self.flag[..], &mut self.stamp[..]);
        let (touched, ranges, core_synops) = (
            &mut lists.touched,
            &mut lists.ranges,
            &mut lists.core_synops[..],
        );
        let mut synops = 0u64;
        let mut runs = runs.peekable();
        while let Some((src, mut k, mut begin, end, c)) = runs.next() {
            while begin < end {
                let seg_end = rows.seg_end(k);
                let len = seg_end - begin;
                if rows.seg_is_range(k) {
                    // Consecutive targets, from the first: the touched flags once per range
                    // and fire phase, then one loop over the block with no index loads and no
                    // branch.
                    // a row that is one block: its first target and length in one word
                    let block = rows.block.get(src).copied().unwrap_or(NO_BLOCK);
                    #[allow(clippy::cast_possible_truncation)]
                    let t0 = if block == NO_BLOCK {
                        rows.range_start(src, k, begin)
                    } else {
                        (block >> 32) as usize
                    };
                    // The next runs that are one segment into the same range (the next
                    // sources of a layer whose rows are one block each) join this one: one
                    // pass over the range adds their rows in source order, as a pass each
                    // would (the same bits), and loads and stores the sums once.
                    let same = |s2: usize, k2: usize, b2: usize, e2: usize| {
                        if block == NO_BLOCK {
                            e2 - b2 == len
                                && rows.seg_end(k2) == e2
                                && rows.seg_is_range(k2)
                                && rows.range_start(s2, k2, b2) == t0
                        } else {
                            // a run of a block row is the whole row
                            rows.block[s2] == block
                        }
                    };
                    let mut group = [(begin, c); GROUP];
                    let mut n = 1;
                    while n < GROUP && seg_end == end {
                        match runs.peek() {
                            Some(&(s2, k2, b2, e2, c2)) if same(s2, k2, b2, e2) => {
                                group[n] = (b2, c2);
                                n += 1;
                                runs.next();
                            }
                            _ => break,
                        }
                    }
                    let ops = (len * n) as u64;
                    synops += ops;
                    core_synops[rows.core_of[t0] as usize - core_start] += ops;
                    let l0 = t0 - base;
                    let stamp = &mut stamps[l0];
                    if stamp.0 != generation || (stamp.1 as usize) < len {
                        // len < 2^31
                        #[allow(clippy::cast_possible_truncation)]
                        {
                            *stamp = (generation, len as u32);
                        }
                        let flags = &mut flag[l0..l0 + len];
                        // without a branch per neuron: the usual range is clean (a layer's
                        // first input in a step), and then the fire phase takes it as one run
                        let busy = flags.iter().fold(0, |a, &f| a | f);
                        let traced = has_trace[t0..t0 + len].iter().fold(false, |a, &h| a | h);
                        if busy == 0 && !traced {
                            flags.fill(TOUCHED);
                            // t0 < 2^28, len < 2^31
                            #[allow(clippy::cast_possible_truncation)]
                            ranges.push((t0 as u32, len as u32));
                        } else {
                            for (t, f) in (t0..).zip(flags) {
                                if *f == 0 {
                                    *f = TOUCHED;
                                    // t < 2^28
                                    #[allow(clippy::cast_possible_truncation)]
                                    touched.push(t as u32);
                                }
                            }
                        }
                    }
                    // A delivery adds to every target, refractory or not, so that the block
                    // is one loop with no branch; a refractory neuron's sum is never read, and
                    // is cleared when it leaves its refractory period (at the next frame's
                    // leak).
                    let acc = &mut acc[l0..l0 + len];
                    let w = |j: usize| &rows.weight[group[j].0..group[j].0 + len];
                    let c = |j: usize| group[j].1;
                    match n {
                        1 => add_rows::<A, 1>(acc, [w(0)], [c(0)]),
                        2 => add_rows::<A, 2>(acc, [w(0), w(1)], [c(0), c(1)]),
                        3 => add_rows::<A, 3>(acc, [w(0), w(1), w(2)], [c(0), c(1), c(2)]),
                        _ => add_rows::<A, 4>(
                            acc,
                            [w(0), w(1), w(2), w(3)],
                            [c(0), c(1), c(2), c(3)],
                        ),
                    }
                } else {
                    synops += len as u64;
                    let weights = &rows.weight[begin..seg_end];
                    let targets = &rows.target[begin..seg_end];
                    core_synops[rows.core_of[targets[0] as usize] as usize - core_start] +=
                        len as u64;
                    add_indexed::<A>(acc, flag, touched, targets, weights, base, c);
                }
                begin = seg_end;
                k += 1;
            }
        }
        lists.synops += synops;
    }

    /// Start of a frame: leak every neuron, clear refractory flags, and collect neurons that
    /// are already above threshold (they fire at the next fire phase). Stochastic and
    /// integrator neurons decay their synaptic trace; their potential moves at their draw.
    pub fn leak(&mut self) {
        let net = self.net;
        let base = self.lists.bounds.start;
        self.lists.carry.clear();
        let end = self.lists.bounds.end;
        if !net.has_trace[base..end].iter().any(|&h| h) {
            self.leak_lif();
            return;
        }
        for l in 0..end - base {
            let n = base + l;
            if net.has_trace[n] {
                self.cur[l] = net.arith.leak(self.cur[l], net.trace_leak[n]);
                continue;
            }
            self.v[l] = net.arith.leak(self.v[l], net.leak[n]);
            if self.flag[l] & REFRACTORY != 0 {
                self.flag[l] &= !REFRACTORY;
                self.acc[l] = A::V::default();
            }
            if self.v[l] > net.theta[n] {
                // n < 2^28
                #[allow(clippy::cast_possible_truncation)]
                self.lists.carry.push(n as u32);
            }
        }
    }

    /// [`Self::leak`] of a lane of LIF neurons only, in branch-free passes (which vectorise):
    /// leak, clear the refractory flags (and the sums delivered meanwhile), then the neurons
    /// above threshold, found 64 at a time by a mask, carry (in ascending order, as one loop
    /// would list them).
    fn leak_lif(&mut self) {
        let net = self.net;
        let (start, end) = (self.lists.bounds.start, self.lists.bounds.end);
        let (leak, theta) = (&net.leak[start..end], &net.theta[start..end]);
        let (vs, flag, acc) = (&mut self.v[..], &mut self.flag[..], &mut self.acc[..]);
        for (v, &beta) in vs.iter_mut().zip(leak) {
            *v = net.arith.leak(*v, beta);
        }
        for (f, a) in flag.iter_mut().zip(acc.iter_mut()) {
            let refractory = *f & REFRACTORY != 0;
            *f &= !REFRACTORY;
            *a = if refractory { A::V::default() } else { *a };
        }
        let carry = &mut self.lists.carry;
        for (c, (vs, theta)) in vs.chunks(64).zip(theta.chunks(64)).enumerate() {
            let mut bytes = [0u8; 64];
            for (b, (v, th)) in bytes.iter_mut().zip(vs.iter().zip(theta)) {
                *b = u8::from(v > th);
            }
            let mut above = bit_mask(&bytes);
            while above != 0 {
                let i = above.trailing_zeros() as usize;
                above &= above - 1;
                // n < 2^28
                #[allow(clippy::cast_possible_truncation)]
                carry.push((start + c * 64 + i) as u32);
            }
        }
    }

    /// Fire phase: neurons carried over fire first (unless they received input), then every
    /// touched neuron integrates its input and fires if above threshold. Spikes go to
    /// `lists.fired` (in no particular order).
    pub fn fire(&mut self) {
        self.lists.updates += self.lists.touched.len() as u64;
        self.lists.fired.clear();
        let ranges = std::mem::take(&mut self.lists.ranges);
        self.lists.updates += ranges.iter().map(|r| u64::from(r.1)).sum::<u64>();
        self.fire_carried();
        for &(t0, len) in &ranges {
            self.integrate_run(t0 as usize, len as usize);
        }
        self.lists.ranges = ranges;
        self.lists.ranges.clear();
        self.integrate_touched();
        self.lists.touched.clear();
        let lists = &mut *self.lists;
        std::mem::swap(&mut lists.carry, &mut lists.next_carry);
        lists.next_carry.clear();
    }

    /// The fire phase's update of every touched neuron: take its input, integrate, and fire
    /// if above threshold (see [`update`]).
    fn integrate_touched(&mut self) {
        let net = self.net;
        let base = self.lists.bounds.start;
        let lists = &mut *self.lists;
        let first = lists.fired.len();
        // The arrays as local slices: their addresses stay in registers through the loop.
        let (theta, subtract, refractory, has_trace) = (
            &net.theta[base..],
            &net.subtract[base..],
            &net.refractory[base..],
            &net.has_trace[base..],
        );
        let (acc, flag, vs, cur) = (
            &mut self.acc[..],
            &mut self.flag[..],
            &mut self.v[..],
            &mut self.cur[..],
        );
        let touched = &lists.touched[..];
        Out::fill(
            &mut lists.fired,
            &mut lists.next_carry,
            touched.len(),
            |out| {
                for &n32 in touched {
                    let n = n32 as usize - base;
                    let input = std::mem::take(&mut acc[n]);
                    if has_trace[n] {
                        flag[n] = 0;
                        cur[n] = net.arith.integrate(cur[n], input);
                        continue;
                    }
                    let u = update(
                        &net.arith,
                        vs[n],
                        input,
                        theta[n],
                        subtract[n],
                        refractory[n],
                    );
                    (vs[n], flag[n]) = (u.v, 0);
                    out.put::<A>(n32, &u);
                }
            },
        );
        self.reset_fired(first);
    }

    /// The fire phase's update of the run of `len` neurons from `t0`, a clean range (see
    /// [`LaneLists::ranges`]): as [`Self::integrate_touched`], with no index loads and no
    /// check for a synaptic trace. In two passes: every neuron integrates its input (one loop
    /// with no branch, vectorised), then only the neurons above threshold, found 64 at a time
    /// by a mask, fire and reset.
    fn integrate_run(&mut self, t0: usize, len: usize) {
        let net = self.net;
        let l0 = t0 - self.lists.bounds.start;
        let lists = &mut *self.lists;
        let (theta, subtract, refractory) = (
            &net.theta[t0..t0 + len],
            &net.subtract[t0..t0 + len],
            &net.refractory[t0..t0 + len],
        );
        let (acc, flag, vs) = (
            &mut self.acc[l0..l0 + len],
            &mut self.flag[l0..l0 + len],
            &mut self.v[l0..l0 + len],
        );
        // the flag says, for now, whether the neuron is above threshold
        for (((v, a), f), th) in vs
            .iter_mut()
            .zip(acc.iter_mut())
            .zip(flag.iter_mut())
            .zip(theta)
        {
            *v = net.arith.integrate(*v, std::mem::take(a));
            *f = u8::from(*v > *th);
        }
        Out::fill(&mut lists.fired, &mut lists.next_carry, len, |out| {
            for (c, (vs, flag)) in vs.chunks_mut(64).zip(flag.chunks_mut(64)).enumerate() {
                let mut above = bit_mask(flag);
                while above != 0 {
                    let i = above.trailing_zeros() as usize;
                    above &= above - 1;
                    let j = c * 64 + i;
                    let u = judge(&net.arith, vs[i], theta[j], subtract[j], refractory[j]);
                    // t0 + j < 2^28
                    #[allow(clippy::cast_possible_truncation)]
                    out.put::<A>((t0 + j) as u32, &u);
                    // the reset (see `reset_fired`)
                    vs[i] = if subtract[j] { u.over } else { A::V::default() };
                    flag[i] = u8::from(refractory[j]) * REFRACTORY;
                }
            }
        });
    }

    /// The reset of the neurons that fired in an update loop (`lists.fired[first..]`; the loop
    /// left them at their integrated potential): subtract the threshold or set zero, and the
    /// refractory flag. After the loop rather than in it, where a select between the reset
    /// and the potential would be a branch taken as often as not.
    fn reset_fired(&mut self, first: usize) {
        let net = self.net;
        let base = self.lists.bounds.start;
        let (theta, subtract, refractory) =
            (&net.theta[..], &net.subtract[..], &net.refractory[..]);
        let (vs, flag) = (&mut self.v[..], &mut self.flag[..]);
        for &(n32, _) in &self.lists.fired[first..] {
            let n = n32 as usize;
            let l = n - base;
            vs[l] = if subtract[n] {
                net.arith.subtract(vs[l], theta[n])
            } else {
                A::V::default()
            };
            flag[l] = u8::from(refractory[n]) * REFRACTORY;
        }
    }

    /// The neurons carried over fire, those that received no input since (a touched one is
    /// updated with its input instead): as in [`Self::integrate_touched`], with no input.
    fn fire_carried(&mut self) {
        let net = self.net;
        let base = self.lists.bounds.start;
        let lists = &mut *self.lists;
        let first = lists.fired.len();
        let (theta, subtract, refractory) = (
            &net.theta[base..],
            &net.subtract[base..],
            &net.refractory[base..],
        );
        let (flag, vs) = (&self.flag[..], &self.v[..]);
        let carry = &lists.carry[..];
        Out::fill(
            &mut lists.fired,
            &mut lists.next_carry,
            carry.len(),
            |out| {
                for &n32 in carry {
                    let n = n32 as usize - base;
                    let mut u = judge(&net.arith, vs[n], theta[n], subtract[n], refractory[n]);
                    // a neuron touched since is updated with its input instead
                    let untouched = flag[n] == 0;
                    (u.fires, u.carry) = (u.fires & untouched, u.carry & untouched);
                    out.put::<A>(n32, &u);
                }
            },
        );
        self.reset_fired(first);
    }
}

/// Most released rows into one range that one pass of a delivery adds (see
/// [`Lane::deliver_runs`]).
const GROUP: usize = 4;

/// Add `N` weight rows, times their counts, to the sums `acc` (each row as long), row after
/// row for each sum: the order and bits of `N` passes, in one.
#[inline(always)]
fn add_rows<A: Arith, const N: usize>(acc: &mut [A::V], w: [&[A::W]; N], c: [u32; N]) {
    let len = acc.len();
    let w = w.map(|row| &row[..len]);
    for (i, a) in acc.iter_mut().enumerate() {
        let mut sum = *a;
        for j in 0..N {
            sum = A::accumulate(sum, w[j][i], c[j]);
        }
        *a = sum;
    }
}

/// Add a segment's weights `weights`, times count `c`, to the sums of its targets `targets`
/// (ids; `acc` and `flag` start at neuron `base`), and list the targets not touched yet.
#[inline(always)]
fn add_indexed<A: Arith>(
    acc: &mut [A::V],
    flag: &mut [u8],
    touched: &mut Vec<u32>,
    targets: &[u32],
    weights: &[A::W],
    base: usize,
    c: u32,
) {
    for (&t, &w) in targets.iter().zip(weights) {
        let l = t as usize - base;
        acc[l] = A::accumulate(acc[l], w, c);
        if flag[l] == 0 {
            flag[l] = TOUCHED;
            touched.push(t);
        }
    }
}

/// Deliver a lane's `parts` of the released rows by index, the first from segment `k` at
/// synapse `begin` when `at` is `Some((k, begin))`; `base`: the lane's first neuron and first
/// core. Returns the synaptic operations, and where it stopped at a range segment, if it did
/// (`(part, k, begin)`: the caller delivers that one, [`LanePlan::long_segments`]).
///
/// In a function of its own: inlined into the lanes' copy of [`Lane::deliver_runs`], the
/// synapse loop kept the count, the lane's first neuron and a bound on the stack and loaded
/// them at every synapse (the one-lane copy keeps them in registers).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn deliver_indexed_parts<A: Arith>(
    rows: Rows<'_, A::W>,
    parts: &[Part],
    at: Option<(usize, usize)>,
    acc: &mut [A::V],
    flag: &mut [u8],
    touched: &mut Vec<u32>,
    core_synops: &mut [u64],
    base: (usize, usize),
) -> (u64, Option<(usize, usize, usize)>) {
    let (first, core_start) = base;
    let mut synops = 0u64;
    for (j, p) in parts.iter().enumerate() {
        let (mut k, mut begin) = match at {
            Some(a) if j == 0 => a,
            _ => (p.seg as usize, p.lo as usize),
        };
        let (end, c) = (p.hi as usize, p.count);
        while begin < end {
            if rows.seg_is_range(k) {
                return (synops, Some((j, k, begin)));
            }
            let seg_end = rows.seg_end(k);
            synops += (seg_end - begin) as u64;
            let targets = &rows.target[begin..seg_end];
            let weights = &rows.weight[begin..seg_end];
            core_synops[rows.core_of[targets[0] as usize] as usize - core_start] +=
                (seg_end - begin) as u64;
            add_indexed::<A>(acc, flag, touched, targets, weights, first, c);
            begin = seg_end;
            k += 1;
        }
    }
    (synops, None)
}

/// The low bits of the 8 bytes of `word` (each 0 or 1), packed into the low 8 bits (byte `k`
/// to bit `k`).
#[inline(always)]
fn pack_bytes(word: u64) -> u64 {
    word.wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Bit `k` set where `bytes[k]` is 1 (at most 64 bytes, each 0 or 1): how the fire phase and
/// the leak find the neurons above threshold, 64 at a time.
#[inline(always)]
fn bit_mask(bytes: &[u8]) -> u64 {
    debug_assert!(bytes.len() <= 64);
    let mut mask = 0u64;
    for (k, chunk) in bytes.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        mask |= pack_bytes(u64::from_le_bytes(word)) << (8 * k);
    }
    mask
}

/// The fire phase's update of one LIF neuron (no synaptic trace): see [`update`].
struct Update<V> {
    /// The integrated potential (before any reset: see [`Lane::reset_fired`]).
    v: V,
    /// `v - theta` (raw units).
    over: V,
    fires: bool,
    /// Still above threshold after a subtractive reset: fires again at the next fire phase.
    carry: bool,
}

/// Integrate `input` into potential `v`, and whether the neuron fires (above `theta`) and is
/// carried. With no branch on either (each is as likely as not on busy layers).
#[inline(always)]
fn update<A: Arith>(
    arith: &A,
    v: A::V,
    input: A::V,
    theta: A::V,
    subtract: bool,
    refractory: bool,
) -> Update<A::V> {
    judge(
        arith,
        arith.integrate(v, input),
        theta,
        subtract,
        refractory,
    )
}

/// Whether a LIF neuron at potential `v` fires (above `theta`) and is carried, with its
/// overshoot: [`update`] after the integration, and the fire of a carried neuron (no input).
#[inline(always)]
fn judge<A: Arith>(
    arith: &A,
    v: A::V,
    theta: A::V,
    subtract: bool,
    refractory: bool,
) -> Update<A::V> {
    let over = arith.subtract(v, theta);
    Update {
        v,
        over,
        fires: v > theta,
        // `over > theta` implies that it fired (theta > 0)
        carry: subtract & !refractory & (over > theta),
    }
}

/// A list over storage that only grows: making room for `n` more entries writes nothing once
/// the storage has grown to the longest list seen (a `Vec::resize` at every fire phase wrote
/// every slot of the room it made).
#[derive(Debug, Default)]
pub(crate) struct Buf<T> {
    data: Vec<T>,
    len: usize,
}

impl<T: Copy + Default> Buf<T> {
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn push(&mut self, x: T) {
        if self.len == self.data.len() {
            self.data.push(x);
        } else {
            self.data[self.len] = x;
        }
        self.len += 1;
    }

    /// The `n` slots after the entries (holding whatever they last held).
    fn room(&mut self, n: usize) -> &mut [T] {
        let end = self.len + n;
        if self.data.len() < end {
            self.data.resize(end, T::default());
        }
        &mut self.data[self.len..end]
    }
}

impl<T> std::ops::Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.data[..self.len]
    }
}

impl<T> std::ops::DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.data[..self.len]
    }
}

/// Where a fire phase's loop writes spikes and carried neurons: each is written for every
/// neuron and kept only if it applies, so the loop has no branch on it. Slices rather than
/// the lists: a list's address and length would be loaded again after every store.
struct Out<'a> {
    fired: &'a mut [(u32, f64)],
    carry: &'a mut [u32],
    n_fired: usize,
    n_carry: usize,
}

impl Out<'_> {
    /// Run `body` on room for `n` more neurons' spikes and carries after those of `fired` and
    /// `carry`, then keep those it put.
    #[inline(always)]
    fn fill(
        fired: &mut Buf<(u32, f64)>,
        carry: &mut Buf<u32>,
        n: usize,
        body: impl FnOnce(&mut Out<'_>),
    ) {
        let mut out = Out {
            fired: fired.room(n),
            carry: carry.room(n),
            n_fired: 0,
            n_carry: 0,
        };
        body(&mut out);
        let (nf, nc) = (out.n_fired, out.n_carry);
        fired.len += nf;
        carry.len += nc;
    }

    #[inline(always)]
    fn put<A: Arith>(&mut self, n: u32, u: &Update<A::V>) {
        self.fired[self.n_fired] = (n, A::raw(u.over));
        self.n_fired += usize::from(u.fires);
        self.carry[self.n_carry] = n;
        self.n_carry += usize::from(u.carry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::F32;
    use crate::chip::ChipConfig;
    use crate::network::{Network, Population, Projection, Reset, Source, Weights};

    fn compiled(core_of: Vec<u32>) -> Compiled<F32> {
        let pops = [30, 30, 10]
            .iter()
            .map(|&n| Population::lif(n, 1.0, 0.9, Reset::Subtract, false))
            .collect();
        let projs = (0..3)
            .map(|i| {
                let (rows, cols) = ([30, 30, 10][i], [5, 30, 30][i]);
                Projection {
                    source: if i == 0 {
                        Source::Input
                    } else {
                        Source::Population(i - 1)
                    },
                    target: i,
                    weights: Weights::Dense {
                        rows,
                        cols,
                        data: vec![0.5; rows * cols],
                    },
                }
            })
            .collect();
        let net = Network::new(5, pops, projs, 2).unwrap();
        let mut chip = ChipConfig::preset("ideal").unwrap();
        chip.mesh_width = 9;
        Compiled::new(&net, &chip, F32, core_of).unwrap()
    }

    #[test]
    fn bit_mask_sets_the_bits_of_the_ones() {
        for len in [1, 7, 8, 13, 63, 64] {
            let bytes: Vec<u8> = (0..len).map(|k| u8::from(k % 3 != 1)).collect();
            let expected = (0..len).fold(0u64, |m, k| m | u64::from(bytes[k]) << k);
            assert_eq!(bit_mask(&bytes), expected, "{len} bytes");
        }
    }

    #[test]
    fn pack_bytes_packs_every_pattern() {
        for bits in 0u64..256 {
            let word = (0..8).fold(0u64, |w, k| w | ((bits >> k) & 1) << (8 * k));
            assert_eq!(pack_bytes(word), bits, "{bits:08b}");
        }
    }

    #[test]
    fn lanes_are_runs_of_whole_cores_that_cover_every_neuron() {
        // cores 0..7 hold 10 neurons each, core 7 none, core 8 none
        let c = compiled((0..70).map(|i| i / 10).collect());
        for lanes in [2, 3, 4, 7, 50] {
            let plan = LanePlan::new(&c, lanes).unwrap();
            // every synapse of every row goes to exactly one lane, the one of its target
            let released: Vec<(u32, u32)> = (0..c.n_sources() as u32).map(|s| (s, 1)).collect();
            let mut lists: Vec<LaneLists> =
                plan.bounds.iter().map(|&b| LaneLists::new(b)).collect();
            plan.split(&released, &mut lists);
            let mut seen = vec![0usize; c.n_sources()];
            for (j, l) in lists.iter().enumerate() {
                for p in &l.parts {
                    let (lo, hi) = (p.lo as usize, p.hi as usize);
                    assert!(lo < hi && c.seg_begin(p.src as usize, p.seg as usize) == lo);
                    let b = plan.bounds[j];
                    assert!(c.target[lo..hi]
                        .iter()
                        .all(|&t| (b.start..b.end).contains(&(t as usize))));
                    seen[p.src as usize] += hi - lo;
                }
            }
            assert!((0..c.n_sources()).all(|s| seen[s] == c.row[s + 1] - c.row[s]));
            let plan = &plan.bounds;
            assert!(
                plan.len() > 1 && plan.len() <= lanes.min(7),
                "{lanes}: {}",
                plan.len()
            );
            assert_eq!((plan[0].start, plan[0].core_start), (0, 0));
            assert_eq!(plan.last().map(|l| (l.end, l.core_end)), Some((70, 9)));
            for w in plan.windows(2) {
                assert_eq!((w[0].end, w[0].core_end), (w[1].start, w[1].core_start));
            }
            for l in plan {
                // whole cores: a lane's neurons are exactly those of its cores
                assert!(l.start < l.end && l.start % 10 == 0 && (l.end % 10 == 0));
                assert!((l.start..l.end)
                    .all(|n| (l.core_start..l.core_end).contains(&(c.core_of[n] as usize))));
            }
        }
        assert_eq!(LanePlan::new(&c, 1).unwrap().len(), 1);
        // cores out of neuron order: one lane
        let mixed = compiled((0..70).map(|i| (i % 7) as u32).collect());
        assert!(!mixed.cores_in_order);
        assert_eq!(LanePlan::new(&mixed, 4).unwrap().len(), 1);
    }

    /// Lanes of a random sparse network deliver their parts of a row in one function, which
    /// stops at each of the few range segments for the usual delivery, then goes on with the
    /// rest of the part: the same results as one lane, with float weights (whose sums differ
    /// in any other order).
    #[test]
    fn lanes_of_long_indexed_segments_give_the_results_of_one_lane() {
        use crate::options::RunOptions;
        use crate::scheduler::Scheduler;
        use crate::{Emulator, Mapping, SampleInput};
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (n_in, n1, n2) = (800, 480, 40);
        // input rows: a quarter of weights zero (no range but by chance), and every 53rd a
        // range into each even core (40 neurons each): ranges in the middle of lanes' parts
        let mut w1 = vec![0f32; n1 * n_in];
        for t in 0..n1 {
            for s in 0..n_in {
                let r = next();
                let range = s % 53 == 0 && (t / 40) % 2 == 0;
                if range || r % 4 != 0 {
                    #[allow(clippy::cast_precision_loss)]
                    let w = ((r >> 11) % 1000) as f32 / 1000.0 * 0.3 - 0.1 + 1e-3;
                    w1[t * n_in + s] = w;
                }
            }
        }
        // hidden rows: 40 targets on one core, a quarter of weights zero (few ranges)
        #[allow(clippy::cast_precision_loss)]
        let w2 = (0..n2 * n1)
            .map(|_| match next() {
                r if r % 4 == 0 => 0.0,
                r => ((r >> 11) % 1000) as f32 / 1000.0 * 0.2 - 0.05,
            })
            .collect();
        let pops = vec![
            Population::lif(n1, 1.0, 0.9, Reset::Subtract, false),
            Population::lif(n2, 1.0, 0.9, Reset::Zero, false),
        ];
        let projs = vec![
            Projection {
                source: Source::Input,
                target: 0,
                weights: Weights::Dense {
                    rows: n1,
                    cols: n_in,
                    data: w1,
                },
            },
            Projection {
                source: Source::Population(0),
                target: 1,
                weights: Weights::Dense {
                    rows: n2,
                    cols: n1,
                    data: w2,
                },
            },
        ];
        let net = Network::new(n_in, pops, projs, 1).unwrap();
        let mut chip = ChipConfig::preset("ideal").unwrap();
        chip.mesh_width = 16;
        chip.core.neurons = 40;
        let emu = Emulator::new(&net, chip, &Mapping::Auto).unwrap();
        // split into lanes (crate::LANE_MIN_SYNAPSES)
        assert!(emu.n_synapses() >= crate::LANE_MIN_SYNAPSES);
        for lanes in [2, 3, 8, 12] {
            let plan = emu.lane_plan(lanes).unwrap();
            assert!(
                plan.len() == lanes && plan.long_segments,
                "{lanes}: {} lanes",
                plan.len()
            );
        }
        let frames = 4;
        let counts: Vec<u32> = (0..frames * n_in)
            .map(|_| u32::from(next() % 10 < 3) * (1 + u32::from(next() % 3 == 0)))
            .collect();
        let input = SampleInput::from_dense(&counts, frames, n_in).unwrap();
        for scheduler in [Scheduler::Random, Scheduler::Momentum] {
            for f in [Some(5), None] {
                let run = |threads| {
                    let opts = RunOptions {
                        scheduler,
                        f,
                        seed: 11,
                        trace: true,
                        threads: Some(threads),
                        ..RunOptions::default()
                    };
                    emu.run(std::slice::from_ref(&input), None, &opts).unwrap()
                };
                let one = run(1);
                assert!(one[0].metrics.spikes > 100, "{}", one[0].metrics.spikes);
                for threads in [2, 3] {
                    assert_eq!(one, run(threads), "{scheduler:?} F={f:?} threads={threads}");
                }
            }
        }
    }
}
