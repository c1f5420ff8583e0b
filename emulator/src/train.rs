//! The training engine: the `steps` model of a float LIF network run forward with a compact
//! tape, and its hand-written backward (unlayered backprop), sample by sample.
//!
//! This is the arithmetic of `asyncsnn.sim.functional.step` and `step_backward` (the PyTorch
//! simulator's `manual` engine), one sample at a time instead of a masked batch, so that a
//! sample runs only its own steps, a step touches only what it delivers, fires or gates, and the
//! tape keeps only that (the released sources and what they delivered, the neurons that fired,
//! and the overshoot of the neurons whose surrogate gradient flows). Every elementwise
//! operation is the PyTorch one in the same order, so the potentials agree bit for bit except
//! for the order in which a step's deliveries are summed (a matrix product there); on the exact
//! weight grid that order does not matter and the spikes are the emulator's.
//!
//! Samples are independent: a batch runs them in parallel and sums the weight gradient in
//! fixed groups of samples, in order, so any thread count gives the same bits.

use std::ops::{Add, Mul, Neg, Sub};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hash;
use crate::mem;
use crate::scheduler::{order_bits, Scheduler};

/// The float type of a run (`f32` or `f64`).
pub trait Real:
    Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + std::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f32(self) -> f32;
    fn abs(self) -> Self;
    fn recip(self) -> Self;
    fn exp(self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[allow(clippy::cast_possible_truncation)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[allow(clippy::cast_possible_truncation)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn recip(self) -> Self {
                1.0 / self
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
        }
    };
}
real!(f32);
real!(f64);

/// The surrogate derivative of the spike (see `asyncsnn.sim.functional.SURROGATE_GRADS`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Surrogate {
    /// `1 / (1 + slope |x|)^2`
    FastSigmoid(f64),
    /// `(slope / pi) / (1 + (slope x)^2)`
    Atan(f64),
    /// `slope s (1 - s)`, `s = sigmoid(slope x)`
    Sigmoid(f64),
}

impl Surrogate {
    /// The surrogate named `name` (`fast_sigmoid`, `atan`, `sigmoid`) with `slope > 0`.
    pub fn of(name: &str, slope: f64) -> Result<Self> {
        if !(slope > 0.0 && slope.is_finite()) {
            return Err(input(
                "slope",
                format!("{slope} must be a finite number > 0"),
            ));
        }
        match name {
            "fast_sigmoid" => Ok(Self::FastSigmoid(slope)),
            "atan" => Ok(Self::Atan(slope)),
            "sigmoid" => Ok(Self::Sigmoid(slope)),
            _ => Err(input(
                "surrogate",
                format!("{name:?}; allowed: fast_sigmoid, atan, sigmoid"),
            )),
        }
    }

    fn grad<T: Real>(self, x: T) -> T {
        match self {
            Self::FastSigmoid(k) => {
                let d = T::ONE + T::from_f64(k) * x.abs();
                (d * d).recip()
            }
            Self::Atan(k) => {
                let kx = T::from_f64(k) * x;
                T::from_f64(k / std::f64::consts::PI) * (T::ONE + kx * kx).recip()
            }
            Self::Sigmoid(k) => {
                let s = (T::ONE + (-(T::from_f64(k) * x)).exp()).recip();
                T::from_f64(k) * s * (T::ONE - s)
            }
        }
    }
}

fn input(field: &str, message: impl Into<String>) -> Error {
    Error::Input {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A float LIF network as the training engine sees it: per-neuron parameters, the arbitration
/// layout and the neuron-to-neuron weights as one list of (target, weight) per source over the
/// trainable support (zero weights of a dense block included: they have gradients).
#[derive(Debug, Clone)]
pub struct Model<T> {
    pub n_inputs: usize,
    pub theta: Vec<T>,
    pub beta: Vec<T>,
    pub subtract: Vec<bool>,
    pub refractory: Vec<bool>,
    pub has_out: Vec<bool>,
    /// Population index + 1 (the `layered` scheduler's primary key).
    pub layer: Vec<u64>,
    /// `(cores, slots)` row-major: each core's neurons ascending, padded with `n`.
    pub slot_neuron: Vec<u32>,
    pub slots: usize,
    /// The output population's neurons `[out.0, out.1)`.
    pub out: (usize, usize),
    /// `src_start[i]..src_start[i + 1]` index `target` and `weight` of source neuron `i`.
    pub src_start: Vec<usize>,
    pub target: Vec<u32>,
    pub weight: Vec<T>,
    /// Synaptic operations of a release of each source (its non-zero weights).
    pub fanout: Vec<T>,
    /// The input weights the same way, per input channel.
    pub in_start: Vec<usize>,
    pub in_target: Vec<u32>,
    pub in_weight: Vec<T>,
    pub in_fanout: Vec<T>,
}

impl<T: Real> Model<T> {
    fn n(&self) -> usize {
        self.theta.len()
    }

    /// Check the shapes and ranges (nothing indexes out of bounds later).
    pub fn validate(&self) -> Result<()> {
        let n = self.n();
        let net = |field: &str, message: String| Error::Network {
            field: field.to_owned(),
            message,
        };
        for (name, len) in [
            ("beta", self.beta.len()),
            ("subtract", self.subtract.len()),
            ("refractory", self.refractory.len()),
            ("has_out", self.has_out.len()),
            ("layer", self.layer.len()),
            ("fanout", self.fanout.len()),
        ] {
            if len != n {
                return Err(net(
                    name,
                    format!("length {len}, expected {n} (one per neuron)"),
                ));
            }
        }
        if self.src_start.len() != n + 1
            || self.src_start[0] != 0
            || self.src_start.windows(2).any(|w| w[0] > w[1])
            || self.src_start[n] != self.target.len()
            || self.target.len() != self.weight.len()
        {
            return Err(net(
                "support",
                format!(
                    "source offsets must rise from 0 to the {} targets ({} weights), one per neuron + 1",
                    self.target.len(),
                    self.weight.len()
                ),
            ));
        }
        if let Some(&t) = self.target.iter().find(|&&t| t as usize >= n) {
            return Err(net("support", format!("target {t} is outside 0..{n}")));
        }
        let m = self.n_inputs;
        if self.in_fanout.len() != m
            || self.in_start.len() != m + 1
            || self.in_start[0] != 0
            || self.in_start.windows(2).any(|w| w[0] > w[1])
            || self.in_start[m] != self.in_target.len()
            || self.in_target.len() != self.in_weight.len()
        {
            return Err(net(
                "input support",
                format!("channel offsets must rise from 0 to the {} targets, one per channel + 1 ({m} channels)", self.in_target.len()),
            ));
        }
        if let Some(&t) = self.in_target.iter().find(|&&t| t as usize >= n) {
            return Err(net(
                "input support",
                format!("target {t} is outside 0..{n}"),
            ));
        }
        if self.slots == 0 || !self.slot_neuron.len().is_multiple_of(self.slots) {
            return Err(net(
                "slot_neuron",
                format!("{} slots in rows of {}", self.slot_neuron.len(), self.slots),
            ));
        }
        if let Some(&s) = self.slot_neuron.iter().find(|&&s| s as usize > n) {
            return Err(net(
                "slot_neuron",
                format!("neuron {s} is outside 0..={n} ({n}: padding)"),
            ));
        }
        if self.out.0 > self.out.1 || self.out.1 > n {
            return Err(net(
                "out",
                format!("[{}, {}) is not inside 0..{n}", self.out.0, self.out.1),
            ));
        }
        Ok(())
    }
}

/// How a batch runs (the `RunOptions` of a `steps` run that the engine needs).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub scheduler: Scheduler,
    /// `F` per core and step; `None`: unlimited.
    pub limit: Option<usize>,
    pub seed: u64,
    pub sample_offset: u64,
    /// Forward steps per frame at most, and whether reaching it with spikes pending is an error.
    pub step_limit: usize,
    pub limit_is_error: bool,
    /// End a sample this many steps after its first output spike.
    pub stop_after_output: Option<u64>,
    /// Keep the tape that [`backward`] needs; without it (no gradient wanted) a run records
    /// only its outputs, and [`backward`] refuses it.
    pub tape: bool,
}

/// What one sample's forward run returns (the `SimResult` fields, one sample).
#[derive(Debug, Clone, Default)]
pub struct SampleOut<T> {
    pub out_counts: Vec<T>,   // (frames, outputs)
    pub spike_counts: Vec<T>, // (neurons,)
    pub v_final: Vec<T>,
    pub synops: T,
    pub steps: u64,
    pub unreleased: T,
    pub first_out: [i64; 2],
    pub first_spike: Vec<i64>, // (outputs,) global step, -1: never
    pub spikes_before: Vec<T>, // (outputs,) spikes emitted before it, -1: never
    pub active_neuron_frames: u64,
    /// The differentiable first-spike step's value: the first spike's step, or `steps`.
    pub first_time: Vec<T>,
}

/// What the backward needs of one sample's forward run.
#[derive(Debug, Clone, Default)]
pub struct SampleTape<T> {
    /// Per step, offsets into `released`, `fired` and `gate` (length steps + 1 each).
    rel_at: Vec<u32>,
    fired_at: Vec<u32>,
    gate_at: Vec<u32>,
    /// (source neuron, pending spikes it delivered)
    released: Vec<(u32, T)>,
    fired: Vec<u32>,
    /// (neuron, potential minus threshold) where the surrogate flows: it could fire and got input.
    gate: Vec<(u32, T)>,
    /// Per frame: the first step, the number of steps, whether the sample was live (leaked).
    frames: Vec<(u32, u32, bool)>,
    /// Per frame, offsets into `inputs` (length frames + 1): the (channel, count) of its events.
    input_at: Vec<u32>,
    inputs: Vec<(u32, T)>,
    /// Per output neuron: the step of its first spike (`steps`: never).
    first_k: Vec<u32>,
    steps: u32,
}

impl<T> SampleTape<T> {
    /// Bytes held.
    #[must_use]
    pub fn nbytes(&self) -> usize {
        let t = std::mem::size_of::<T>();
        4 * (self.rel_at.len()
            + self.fired_at.len()
            + self.gate_at.len()
            + self.fired.len()
            + self.first_k.len())
            + (4 + t) * (self.released.len() + self.gate.len() + self.inputs.len())
            + 4 * self.input_at.len()
            + 12 * self.frames.len()
    }
}

const NO_RUN: u32 = u32::MAX;

/// Per source, its first target where its targets are consecutive (a dense block's column),
/// else [`NO_RUN`]: those sources take a slice loop without index loads.
fn runs(start: &[usize], target: &[u32]) -> Vec<u32> {
    start
        .windows(2)
        .map(|w| {
            let t = &target[w[0]..w[1]];
            match t.first() {
                Some(&t0)
                    if t.iter()
                        .enumerate()
                        .all(|(e, &x)| x as usize == t0 as usize + e) =>
                {
                    t0
                }
                _ => NO_RUN,
            }
        })
        .collect()
}

/// `acc[target[e]] += k * weight[e]` over one source's entries (`run`: its first target if
/// they are consecutive).
#[inline]
fn scatter_add<T: Real>(acc: &mut [T], target: &[u32], weight: &[T], run: u32, k: T) {
    if run == NO_RUN {
        for (&t, &w) in target.iter().zip(weight) {
            acc[t as usize] = acc[t as usize] + k * w;
        }
    } else {
        let t0 = run as usize;
        for (a, &w) in acc[t0..t0 + weight.len()].iter_mut().zip(weight) {
            *a = *a + k * w;
        }
    }
}

/// How one sample's forward run ended: its outputs and tape, or activity that did not settle
/// within the step limit in a frame.
enum Outcome<T> {
    Done(Box<(SampleOut<T>, SampleTape<T>)>),
    Runaway(usize),
}

struct Runner<'a, T> {
    m: &'a Model<T>,
    s: &'a Schedule,
    runs: Vec<u32>,
    in_runs: Vec<u32>,
}

impl<T: Real> Runner<'_, T> {
    /// Which pending neurons each core releases at step `j` of frame `f` (into `out`).
    #[allow(clippy::too_many_arguments)]
    fn select(
        &self,
        p: &[T],
        since: &[u64],
        over: &[T],
        prefix: u32,
        j: u64,
        cand: &mut Vec<(u64, u32, u32)>,
        out: &mut Vec<u32>,
    ) {
        let m = self.m;
        let n = m.n();
        let ps = m.slots;
        let everything = self.s.limit.is_none_or(|f| f >= ps);
        for core in m.slot_neuron.chunks_exact(ps) {
            cand.clear();
            for (pos, &nr) in core.iter().enumerate() {
                let i = nr as usize;
                if i < n && p[i] > T::ZERO {
                    cand.push((0, 0, pos as u32));
                }
            }
            let limit = self.s.limit.unwrap_or(usize::MAX);
            if everything || cand.len() <= limit {
                out.extend(cand.iter().map(|&(_, _, pos)| core[pos as usize]));
                continue;
            }
            let at_step = hash::step_prefix(prefix, j);
            for c in cand.iter_mut() {
                let i = core[c.2 as usize] as usize;
                // primary key, then hash, then slot position; the overshoot is ordered as the
                // float32 it is in PyTorch (descending), the queue's own order
                c.0 = match self.s.scheduler {
                    Scheduler::Random => 0,
                    Scheduler::Fifo => since[i],
                    Scheduler::Momentum => u64::MAX - order_bits(f64::from(over[i].to_f32())),
                    Scheduler::Layered => m.layer[i],
                };
                c.1 = hash::key_from_step(at_step, (m.n_inputs + i) as u64);
            }
            cand.select_nth_unstable(limit - 1);
            out.extend(cand[..limit].iter().map(|&(_, _, pos)| core[pos as usize]));
        }
    }

    /// One sample: `frames` `(frames, channels)` of input event counts.
    #[allow(clippy::too_many_lines)]
    fn forward(&self, sample: u64, frames: &[T], n_frames: usize) -> Result<Outcome<T>> {
        let m = self.m;
        let n = m.n();
        let (o0, o1) = m.out;
        let n_out = o1 - o0;
        let mut v = mem::filled(n, T::ZERO, "v")?;
        let mut p = mem::filled(n, T::ZERO, "pending")?;
        let mut since = mem::filled(n, 0u64, "since")?;
        let mut over_s = mem::filled(n, T::ZERO, "overshoot")?;
        let mut refr = mem::filled(n, false, "refractory")?;
        let mut cur = mem::filled(n, T::ZERO, "current")?;
        let mut x = mem::filled(n, T::ZERO, "input current")?;
        let n_in = m.n_inputs;
        let mut spiked = mem::filled(n, false, "spiked")?;
        let mut o = SampleOut {
            out_counts: mem::filled(n_frames * n_out, T::ZERO, "out_counts")?,
            spike_counts: mem::filled(n, T::ZERO, "spike_counts")?,
            first_out: [-1, -1],
            first_spike: mem::filled(n_out, -1i64, "first_spike")?,
            spikes_before: mem::filled(n_out, -T::ONE, "spikes_before")?,
            ..SampleOut::default()
        };
        let mut tp = SampleTape {
            rel_at: vec![0],
            fired_at: vec![0],
            gate_at: vec![0],
            input_at: vec![0],
            first_k: Vec::new(),
            ..SampleTape::default()
        };
        let mut first_k = vec![u32::MAX; n_out];
        let keep = self.s.tape;
        let mut synops = T::ZERO;
        let mut emitted = T::ZERO;
        let mut steps: u64 = 0;
        let mut done = false;
        let mut first_g: Option<u64> = None;
        let mut n_pending = 0usize;
        let (mut cand, mut rel) = (Vec::new(), Vec::new());
        for f in 0..n_frames {
            let live = !done;
            let start = u32::try_from(steps).unwrap_or(u32::MAX);
            if !live {
                tp.frames.push((start, 0, false));
                tp.input_at.push(tp.inputs.len() as u32);
                continue;
            }
            // the frame's events and their current (all at once, at its step 0)
            let events = tp.inputs.len();
            let mut syn_in = T::ZERO;
            for (c, &k) in frames[f * n_in..(f + 1) * n_in].iter().enumerate() {
                if k > T::ZERO {
                    tp.inputs.push((c as u32, k));
                    syn_in = syn_in + m.in_fanout[c];
                }
            }
            tp.input_at.push(tp.inputs.len() as u32);
            let has_input = tp.inputs.len() > events;
            if has_input {
                // (summed in ascending channel order; a matrix product in PyTorch)
                let mut acc = std::mem::take(&mut x);
                for &(c, k) in &tp.inputs[events..] {
                    let (a, b) = (m.in_start[c as usize], m.in_start[c as usize + 1]);
                    scatter_add(
                        &mut acc,
                        &m.in_target[a..b],
                        &m.in_weight[a..b],
                        self.in_runs[c as usize],
                        k,
                    );
                }
                x = acc;
            }
            if !keep {
                // the frame's events were only needed for its input current
                tp.inputs.clear();
            }
            for (vi, &b) in v.iter_mut().zip(&m.beta) {
                *vi = *vi * b;
            }
            refr.fill(false);
            spiked.fill(false);
            let mut active = has_input || n_pending > 0;
            let prefix = hash::frame_prefix(self.s.seed, sample, f as u64);
            let mut j = 0usize;
            while active {
                if j >= self.s.step_limit {
                    if self.s.limit_is_error {
                        return Ok(Outcome::Runaway(f));
                    }
                    break;
                }
                let at = ((f as u64) << 32) | j as u64;
                // select and deliver
                rel.clear();
                if n_pending > 0 {
                    self.select(&p, &since, &over_s, prefix, j as u64, &mut cand, &mut rel);
                    rel.sort_unstable();
                }
                for &i in &rel {
                    let i = i as usize;
                    let d = p[i];
                    let (a, b) = (m.src_start[i], m.src_start[i + 1]);
                    scatter_add(&mut cur, &m.target[a..b], &m.weight[a..b], self.runs[i], d);
                    synops = synops + m.fanout[i];
                    p[i] = p[i] - d;
                    n_pending -= 1;
                    if keep {
                        tp.released.push((i as u32, d));
                    }
                }
                if j == 0 {
                    for (c, xi) in cur.iter_mut().zip(x.iter_mut()) {
                        *c = *c + *xi;
                        *xi = T::ZERO;
                    }
                    synops = synops + syn_in;
                }
                // fire
                let g = steps;
                let mut fired_now = 0usize;
                for t in 0..n {
                    let c = cur[t];
                    cur[t] = T::ZERO;
                    let vt = if refr[t] { v[t] } else { v[t] + c };
                    let over = vt - m.theta[t];
                    let can = !refr[t];
                    if keep && can && c != T::ZERO {
                        tp.gate.push((t as u32, over));
                    }
                    if can && over > T::ZERO {
                        if keep {
                            tp.fired.push(t as u32);
                        }
                        fired_now += 1;
                        v[t] = if m.subtract[t] {
                            vt - m.theta[t]
                        } else {
                            vt * T::ZERO
                        };
                        if m.refractory[t] {
                            refr[t] = true;
                        }
                        if m.has_out[t] {
                            if p[t] == T::ZERO {
                                since[t] = at;
                                n_pending += 1;
                            }
                            p[t] = p[t] + T::ONE;
                        }
                        over_s[t] = over;
                        o.spike_counts[t] = o.spike_counts[t] + T::ONE;
                        spiked[t] = true;
                        if (o0..o1).contains(&t) {
                            let k = t - o0;
                            o.out_counts[f * n_out + k] = o.out_counts[f * n_out + k] + T::ONE;
                            if o.first_spike[k] < 0 {
                                o.first_spike[k] = g as i64;
                                o.spikes_before[k] = emitted;
                                first_k[k] = g as u32;
                                if o.first_out[0] < 0 {
                                    o.first_out = [f as i64, j as i64];
                                }
                            }
                            if first_g.is_none() {
                                first_g = Some(g);
                            }
                        }
                    } else {
                        v[t] = vt;
                    }
                }
                emitted = emitted + T::from_f64(fired_now as f64);
                steps += 1;
                j += 1;
                tp.rel_at.push(tp.released.len() as u32);
                tp.fired_at.push(tp.fired.len() as u32);
                tp.gate_at.push(tp.gate.len() as u32);
                active = n_pending > 0;
                if let (Some(k), Some(fg)) = (self.s.stop_after_output, first_g) {
                    if steps.saturating_sub(k) > fg {
                        done = true;
                        active = false;
                    }
                }
            }
            if j == 0 && has_input {
                x.fill(T::ZERO); // (a step cap of 0: the current was not delivered)
            }
            tp.frames
                .push((start, (steps - u64::from(start)) as u32, true));
            o.active_neuron_frames += spiked.iter().filter(|&&s| s).count() as u64;
        }
        o.v_final = v;
        o.synops = synops;
        o.steps = steps;
        o.unreleased = p.iter().fold(T::ZERO, |a, &x| a + x);
        let total = u32::try_from(steps).unwrap_or(u32::MAX);
        o.first_time = first_k
            .iter()
            .map(|&k| {
                T::from_f64(if k == u32::MAX {
                    steps as f64
                } else {
                    f64::from(k)
                })
            })
            .collect();
        tp.first_k = first_k
            .iter()
            .map(|&k| if k == u32::MAX { total } else { k })
            .collect();
        tp.steps = total;
        Ok(Outcome::Done(Box::new((o, tp))))
    }
}

/// The gradients coming into one sample's backward.
#[derive(Debug, Clone, Copy)]
pub struct SampleGrads<'a, T> {
    pub out_counts: &'a [T],   // (frames, outputs)
    pub spike_counts: &'a [T], // (neurons,)
    pub v_final: &'a [T],
    pub first_time: Option<&'a [T]>, // (outputs,)
}

/// Over one source's entries, with `g_cur = g_v` where the target can fire (else 0):
/// `g_w[e] += g_cur[target[e]] * d`, and returns `sum_e g_cur[target[e]] * weight[e]`.
#[inline]
fn gather_grad<T: Real>(
    g_v: &[T],
    refr: &[bool],
    target: &[u32],
    weight: &[T],
    g_w: &mut [T],
    run: u32,
    d: T,
) -> T {
    let mut acc = T::ZERO;
    if run == NO_RUN {
        for ((&t, &w), gw) in target.iter().zip(weight).zip(g_w.iter_mut()) {
            let gc = if refr[t as usize] {
                T::ZERO
            } else {
                g_v[t as usize]
            };
            acc = acc + gc * w;
            *gw = *gw + gc * d;
        }
    } else {
        let (t0, len) = (run as usize, weight.len());
        for (((&gv, &r), &w), gw) in g_v[t0..t0 + len]
            .iter()
            .zip(&refr[t0..t0 + len])
            .zip(weight)
            .zip(g_w.iter_mut())
        {
            let gc = if r { T::ZERO } else { gv };
            acc = acc + gc * w;
            *gw = *gw + gc * d;
        }
    }
    acc
}

/// One sample's backward: adds its weight gradients (per support entry) into `g_w` (neuron to
/// neuron) and `g_w_in` (input to neuron).
#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
fn backward_sample<T: Real>(
    m: &Model<T>,
    tp: &SampleTape<T>,
    g: SampleGrads<'_, T>,
    truncated: bool,
    surrogate: Surrogate,
    g_w: &mut [T],
    g_w_in: &mut [T],
    g_v: &mut Vec<T>,
    g_p: &mut Vec<T>,
    refr: &mut Vec<bool>,
    (runs, in_runs): (&[u32], &[u32]),
) {
    let n = m.n();
    let (o0, o1) = m.out;
    let n_out = o1 - o0;
    g_v.clear();
    g_v.extend_from_slice(g.v_final);
    g_p.clear();
    g_p.resize(n, T::ZERO);
    refr.clear();
    refr.resize(n, false);
    let steps = T::from_f64(f64::from(tp.steps));
    let mut lam: Vec<T> = g
        .first_time
        .map(|gf| gf.iter().map(|&x| x * steps).collect())
        .unwrap_or_default();
    let mut gs_out = vec![T::ZERO; n_out];
    let mut contrib: Vec<T> = Vec::new();
    for (f, &(start, len, live)) in tp.frames.iter().enumerate().rev() {
        let g_out = &g.out_counts[f * n_out..(f + 1) * n_out];
        refr.fill(false);
        let (s0, s1) = (start as usize, (start + len) as usize);
        for &t in &tp.fired[tp.fired_at[s0] as usize..tp.fired_at[s1] as usize] {
            if m.refractory[t as usize] {
                refr[t as usize] = true;
            }
        }
        for k in (s0..s1).rev() {
            let fired = &tp.fired[tp.fired_at[k] as usize..tp.fired_at[k + 1] as usize];
            let gate = &tp.gate[tp.gate_at[k] as usize..tp.gate_at[k + 1] as usize];
            let released = &tp.released[tp.rel_at[k] as usize..tp.rel_at[k + 1] as usize];
            for &t in fired {
                if m.refractory[t as usize] {
                    refr[t as usize] = false; // it fired here, so it could
                }
            }
            // the first-spike time's adjoint (outputs only)
            if let Some(gf) = g.first_time {
                let gk = T::from_f64(k as f64);
                for o in 0..n_out {
                    let alive = if tp.first_k[o] as usize >= k {
                        T::ONE
                    } else {
                        T::ZERO
                    };
                    gs_out[o] = alive * (gf[o] * gk - lam[o]);
                }
                for &t in fired {
                    let t = t as usize;
                    if (o0..o1).contains(&t) {
                        lam[t - o0] = gf[t - o0] * gk;
                    }
                }
            }
            // the surrogate where it flows, from the gradients after the step
            contrib.clear();
            for &(t, over) in gate {
                let t = t as usize;
                let mut gs = g.spike_counts[t];
                if (o0..o1).contains(&t) {
                    gs = gs + g_out[t - o0];
                    if g.first_time.is_some() {
                        gs = gs + gs_out[t - o0];
                    }
                }
                let h = if m.has_out[t] { T::ONE } else { T::ZERO };
                let x = if m.subtract[t] {
                    m.theta[t]
                } else {
                    over + m.theta[t]
                };
                gs = gs + g_p[t] * h - g_v[t] * x;
                contrib.push(gs * surrogate.grad(over));
            }
            for &t in fired {
                let t = t as usize;
                if !m.subtract[t] {
                    g_v[t] = g_v[t] * T::ZERO;
                }
            }
            for (&(t, _), &c) in gate.iter().zip(&contrib) {
                g_v[t as usize] = g_v[t as usize] + c;
            }
            // g_v now holds g_v1; g_cur = g_v1 where the neuron could fire
            for &(i, d) in released {
                let i = i as usize;
                let (a, b) = (m.src_start[i], m.src_start[i + 1]);
                let acc = gather_grad(
                    g_v,
                    refr,
                    &m.target[a..b],
                    &m.weight[a..b],
                    &mut g_w[a..b],
                    runs[i],
                    d,
                );
                g_p[i] = g_p[i] * T::ZERO + acc;
            }
            if k == s0 {
                // the frame's input current arrived at this step
                let events = &tp.inputs[tp.input_at[f] as usize..tp.input_at[f + 1] as usize];
                for &(c, x) in events {
                    let c = c as usize;
                    let (a, b) = (m.in_start[c], m.in_start[c + 1]);
                    gather_grad(
                        g_v,
                        refr,
                        &m.in_target[a..b],
                        &m.in_weight[a..b],
                        &mut g_w_in[a..b],
                        in_runs[c],
                        x,
                    );
                }
            }
            if truncated {
                for x in g_v.iter_mut() {
                    *x = *x * T::ZERO;
                }
            }
        }
        if live {
            for (x, &b) in g_v.iter_mut().zip(&m.beta) {
                *x = *x * b;
            }
        }
    }
}

/// A batch's forward run: every sample's outputs and tape.
#[derive(Debug, Clone)]
pub struct Run<T> {
    pub out: Vec<SampleOut<T>>,
    pub tapes: Vec<SampleTape<T>>,
    pub n_frames: usize,
    /// Whether the tapes were kept ([`Schedule::tape`]).
    pub taped: bool,
}

impl<T> Run<T> {
    /// Bytes the tapes hold.
    #[must_use]
    pub fn tape_bytes(&self) -> usize {
        self.tapes.iter().map(SampleTape::nbytes).sum()
    }
}

/// The training engine's pools (a training loop calls it twice per batch).
static POOLS: std::sync::Mutex<Vec<crate::Pool>> = std::sync::Mutex::new(Vec::new());

fn on_threads<R: Send>(threads: usize, work: impl FnOnce() -> R + Send) -> Result<R> {
    if threads <= 1 {
        return Ok(work());
    }
    Ok(crate::kept_pool(&POOLS, threads)?.install(work))
}

/// Run a batch forward: `frames` `(batch, frames, channels)` of input event counts (finite,
/// at least 0: the caller checks).
pub fn forward<T: Real>(
    m: &Model<T>,
    s: &Schedule,
    frames: &[T],
    batch: usize,
    n_frames: usize,
    threads: usize,
) -> Result<Run<T>> {
    m.validate()?;
    if frames.len() != batch * n_frames * m.n_inputs {
        return Err(input(
            "frames",
            format!(
                "{} counts for {batch} samples of {n_frames} frames and {} channels",
                frames.len(),
                m.n_inputs
            ),
        ));
    }
    if s.limit == Some(0) {
        return Err(input("F", "0 is outside 1.. (or None)"));
    }
    let r = Runner {
        m,
        s,
        runs: runs(&m.src_start, &m.target),
        in_runs: runs(&m.in_start, &m.in_target),
    };
    let one = |b: usize| {
        let sz = n_frames * m.n_inputs;
        r.forward(
            s.sample_offset + b as u64,
            &frames[b * sz..(b + 1) * sz],
            n_frames,
        )
    };
    let results: Vec<Result<Outcome<T>>> = if threads <= 1 {
        (0..batch).map(one).collect()
    } else {
        on_threads(threads, || (0..batch).into_par_iter().map(one).collect())?
    };
    // A batch fails as the batched engines fail: at the earliest frame in which a sample ran away.
    let mut out = Vec::with_capacity(batch);
    let mut tapes = Vec::with_capacity(batch);
    let mut runaway: Option<usize> = None;
    for res in results {
        match res? {
            Outcome::Done(done) => {
                let (o, t) = *done;
                out.push(o);
                tapes.push(t);
            }
            Outcome::Runaway(f) => runaway = Some(runaway.map_or(f, |g| g.min(f))),
        }
    }
    if let Some(f) = runaway {
        return Err(Error::Runaway {
            message: format!(
                "frame {f} did not settle within runaway_steps = {} forward steps (a network that keeps exciting \
                 itself); set max_steps to cap the steps per frame, or raise runaway_steps",
                s.step_limit
            ),
        });
    }
    Ok(Run {
        out,
        tapes,
        n_frames,
        taped: s.tape,
    })
}

/// Samples per group of the weight gradient's sum: a function of the batch size only (at least
/// 8 samples, at most about 16 groups), so that the sum is the same on any thread count.
fn group_size(batch: usize) -> usize {
    batch.div_ceil(16).max(8)
}

/// `parts[0] + parts[1] + ...` in that order, entry by entry (in parallel over entries).
fn sum_in_order<T: Real>(parts: &[Vec<T>], len: usize, parallel: bool) -> Result<Vec<T>> {
    let mut out = mem::filled(len, T::ZERO, "weight gradient")?;
    let add = |(c, chunk): (usize, &mut [T])| {
        let (lo, len) = (c * 4096, chunk.len());
        for p in parts {
            for (a, &x) in chunk.iter_mut().zip(&p[lo..lo + len]) {
                *a = *a + x;
            }
        }
    };
    if parallel {
        out.par_chunks_mut(4096).enumerate().for_each(add);
    } else {
        out.chunks_mut(4096).enumerate().for_each(add);
    }
    Ok(out)
}

/// The gradients of a batch given those of its outputs: `g_out` `(batch, frames, outputs)`,
/// `g_counts` and `g_v` `(batch, neurons)`, `g_first` `(batch, outputs)` (the first-spike
/// times', or `None`). Returns the gradients of the input weights and of the neuron-to-neuron
/// weights, one per support entry.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    m: &Model<T>,
    run: &Run<T>,
    g_out: &[T],
    g_counts: &[T],
    g_v: &[T],
    g_first: Option<&[T]>,
    truncated: bool,
    surrogate: Surrogate,
    threads: usize,
) -> Result<(Vec<T>, Vec<T>)> {
    if !run.taped {
        return Err(input(
            "tape",
            "the forward run kept no tape (it was run with tape = false, as without a gradient); \
             run it with tape = true to backpropagate",
        ));
    }
    let n = m.n();
    let b = run.tapes.len();
    let nf = run.n_frames;
    let n_out = m.out.1 - m.out.0;
    let bad = |field: &str, got: usize, want: usize| {
        input(field, format!("{got} values, expected {want}"))
    };
    if g_out.len() != b * nf * n_out {
        return Err(bad("g_out", g_out.len(), b * nf * n_out));
    }
    if g_counts.len() != b * n || g_v.len() != b * n {
        return Err(bad("g_counts", g_counts.len().min(g_v.len()), b * n));
    }
    if let Some(gf) = g_first {
        if gf.len() != b * n_out {
            return Err(bad("g_first", gf.len(), b * n_out));
        }
    }
    let (nnz, nnz_in) = (m.weight.len(), m.in_weight.len());
    let (src_runs, in_runs) = (
        runs(&m.src_start, &m.target),
        runs(&m.in_start, &m.in_target),
    );
    let size = group_size(b);
    let group = |gi: usize| -> (Vec<T>, Vec<T>) {
        let mut g_w = vec![T::ZERO; nnz];
        let mut g_w_in = vec![T::ZERO; nnz_in];
        let (mut gv, mut gp, mut refr) = (Vec::new(), Vec::new(), Vec::new());
        for s in gi * size..((gi + 1) * size).min(b) {
            let grads = SampleGrads {
                out_counts: &g_out[s * nf * n_out..(s + 1) * nf * n_out],
                spike_counts: &g_counts[s * n..(s + 1) * n],
                v_final: &g_v[s * n..(s + 1) * n],
                first_time: g_first.map(|gf| &gf[s * n_out..(s + 1) * n_out]),
            };
            backward_sample(
                m,
                &run.tapes[s],
                grads,
                truncated,
                surrogate,
                &mut g_w,
                &mut g_w_in,
                &mut gv,
                &mut gp,
                &mut refr,
                (&src_runs, &in_runs),
            );
        }
        (g_w_in, g_w)
    };
    let groups = b.div_ceil(size);
    if threads <= 1 || groups <= 1 {
        let parts: Vec<(Vec<T>, Vec<T>)> = (0..groups).map(group).collect();
        let (pi, pw): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        return Ok((
            sum_in_order(&pi, nnz_in, false)?,
            sum_in_order(&pw, nnz, false)?,
        ));
    }
    on_threads(threads, || {
        let parts: Vec<(Vec<T>, Vec<T>)> = (0..groups).into_par_iter().map(group).collect();
        let (pi, pw): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        Ok((
            sum_in_order(&pi, nnz_in, true)?,
            sum_in_order(&pw, nnz, true)?,
        ))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `inputs` -> population of `n` neurons (one chip core), support given per source.
    fn model(
        n_inputs: usize,
        n: usize,
        w_in: &[(u32, u32, f64)],
        w: &[(u32, u32, f64)],
    ) -> Model<f64> {
        let csc = |pairs: &[(u32, u32, f64)], sources: usize| {
            let mut p = pairs.to_vec();
            p.sort_by_key(|&(s, t, _)| (s, t));
            let mut start = vec![0usize; sources + 1];
            for &(s, _, _) in &p {
                start[s as usize + 1] += 1;
            }
            for i in 0..sources {
                start[i + 1] += start[i];
            }
            let fan = (0..sources)
                .map(|s| {
                    p.iter()
                        .filter(|&&(x, _, w)| x as usize == s && w != 0.0)
                        .count() as f64
                })
                .collect::<Vec<_>>();
            (
                start,
                p.iter().map(|&(_, t, _)| t).collect::<Vec<_>>(),
                p.iter().map(|&(_, _, w)| w).collect::<Vec<_>>(),
                fan,
            )
        };
        let (in_start, in_target, in_weight, in_fanout) = csc(w_in, n_inputs);
        let (src_start, target, weight, fanout) = csc(w, n);
        Model {
            n_inputs,
            theta: vec![1.0; n],
            beta: vec![1.0; n],
            subtract: vec![true; n],
            refractory: vec![false; n],
            has_out: vec![true; n],
            layer: vec![1; n],
            slot_neuron: (0..n as u32).collect(),
            slots: n,
            out: (n - 1, n),
            src_start,
            target,
            weight,
            fanout,
            in_start,
            in_target,
            in_weight,
            in_fanout,
        }
    }

    fn schedule(limit: Option<usize>) -> Schedule {
        Schedule {
            scheduler: Scheduler::Fifo,
            limit,
            seed: 1,
            sample_offset: 0,
            step_limit: 100,
            limit_is_error: true,
            stop_after_output: None,
            tape: true,
        }
    }

    #[test]
    fn a_chain_runs_and_backpropagates_as_computed_by_hand() {
        // input -(1.5)-> n0 -(0.75)-> n1: step 0 n0 fires (overshoot 0.5), step 1 delivers it
        let m = model(1, 2, &[(0, 0, 1.5)], &[(0, 1, 0.75)]);
        let run = forward(&m, &schedule(None), &[1.0], 1, 1, 1).unwrap();
        let o = &run.out[0];
        assert_eq!((o.steps, o.synops, o.unreleased), (2, 2.0, 0.0));
        assert_eq!(o.spike_counts, vec![1.0, 0.0]);
        assert_eq!(o.v_final, vec![0.5, 0.75]);
        assert_eq!(
            (o.out_counts.clone(), o.first_spike.clone()),
            (vec![0.0], vec![-1])
        );
        // d v1_final: the surrogate at n1's step (-0.25 under threshold) and at n0's (0.5 over)
        let sg = |x: f64| 1.0 / (1.0 + 10.0 * x.abs()).powi(2);
        let (g_w_in, g_w) = backward(
            &m,
            &run,
            &[0.0],
            &[0.0, 0.0],
            &[0.0, 1.0],
            None,
            false,
            Surrogate::of("fast_sigmoid", 10.0).unwrap(),
            1,
        )
        .unwrap();
        let g_cur1 = 1.0 - sg(-0.25);
        assert!((g_w[0] - g_cur1).abs() < 1e-15, "{g_w:?}");
        let g_p0 = g_cur1 * 0.75;
        assert!((g_w_in[0] - g_p0 * sg(0.5)).abs() < 1e-15, "{g_w_in:?}");
    }

    /// 12 inputs into neurons 0-5, which feed neurons 6-9: hashed weights in
    /// `[-shift, 96 / 64 - shift]`.
    fn two_layers(shift: f64) -> Model<f64> {
        let (ni, n) = (12usize, 10usize);
        let w = |k: u64| f64::from(hash::mix(k) % 97) / 64.0 - shift;
        let w_in: Vec<_> = (0..ni as u32)
            .flat_map(|s| (0..6).map(move |t| (s, t, w(u64::from(s * 31 + t)))))
            .collect();
        let rec: Vec<_> = (0..6u32)
            .flat_map(|s| (6..n as u32).map(move |t| (s, t, w(u64::from(900 + s * 17 + t)))))
            .collect();
        model(ni, n, &w_in, &rec)
    }

    #[test]
    fn same_bits_on_any_thread_count() {
        let (ni, n) = (12usize, 10usize);
        let mut m = two_layers(0.5);
        m.slot_neuron = vec![0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
        m.slots = 5;
        let batch = 19;
        let frames: Vec<f64> = (0..batch * 3 * ni)
            .map(|k| f64::from(hash::mix(k as u64 + 7) % 3))
            .collect();
        let runs: Vec<_> = [1, 3]
            .into_iter()
            .map(|threads| {
                let r = forward(&m, &schedule(Some(1)), &frames, batch, 3, threads).unwrap();
                let g = vec![1.0; batch * n];
                let g_out = vec![0.5; batch * 3 * (n - 9)];
                let grads = backward(
                    &m,
                    &r,
                    &g_out,
                    &g,
                    &g,
                    None,
                    false,
                    Surrogate::of("atan", 2.0).unwrap(),
                    threads,
                )
                .unwrap();
                (
                    r.out
                        .iter()
                        .map(|o| (o.steps, o.v_final.clone()))
                        .collect::<Vec<_>>(),
                    grads,
                )
            })
            .collect();
        assert!(runs[0].0.iter().any(|&(s, _)| s > 3));
        assert_eq!(runs[0], runs[1]);
    }

    #[test]
    fn a_run_without_tape_has_the_same_outputs_and_refuses_backward() {
        let (ni, n) = (12usize, 10usize);
        let m = two_layers(0.3);
        let frames: Vec<f64> = (0..4 * 3 * ni)
            .map(|k| f64::from(hash::mix(k as u64 + 3) % 3))
            .collect();
        let taped = forward(&m, &schedule(Some(2)), &frames, 4, 3, 1).unwrap();
        let bare = forward(
            &m,
            &Schedule {
                tape: false,
                ..schedule(Some(2))
            },
            &frames,
            4,
            3,
            1,
        )
        .unwrap();
        let key = |r: &Run<f64>| {
            r.out
                .iter()
                .map(|o| (o.steps, o.v_final.clone(), o.spike_counts.clone()))
                .collect::<Vec<_>>()
        };
        assert!(taped
            .out
            .iter()
            .any(|o| o.spike_counts.iter().sum::<f64>() > 0.0));
        assert_eq!(key(&taped), key(&bare));
        assert!(
            bare.tape_bytes() * 2 < taped.tape_bytes(),
            "{} {}",
            bare.tape_bytes(),
            taped.tape_bytes()
        );
        let g = vec![1.0; 4 * n];
        let g_out = vec![0.5; 4 * 3 * (n - 9)];
        let sg = Surrogate::of("atan", 2.0).unwrap();
        assert!(backward(&m, &taped, &g_out, &g, &g, None, false, sg, 1).is_ok());
        assert!(matches!(
            backward(&m, &bare, &g_out, &g, &g, None, false, sg, 1),
            Err(Error::Input { .. })
        ));
    }

    #[test]
    fn a_bad_support_or_input_is_an_error() {
        let mut m = model(1, 2, &[(0, 0, 1.5)], &[(0, 1, 0.75)]);
        m.target[0] = 5;
        assert!(matches!(
            forward(&m, &schedule(None), &[1.0], 1, 1, 1),
            Err(Error::Network { .. })
        ));
        let m = model(1, 2, &[(0, 0, 1.5)], &[(0, 1, 0.75)]);
        assert!(matches!(
            forward(&m, &schedule(None), &[1.0, 1.0], 1, 1, 1),
            Err(Error::Input { .. })
        ));
        assert!(matches!(
            forward(&m, &schedule(Some(0)), &[1.0], 1, 1, 1),
            Err(Error::Input { .. })
        ));
        assert!(Surrogate::of("step", 1.0).is_err() && Surrogate::of("atan", 0.0).is_err());
    }
}
