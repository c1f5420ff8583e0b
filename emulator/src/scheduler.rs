//! Per-group spike queues and the schedulers that order them.
//!
//! An arbitration group is a core (or the input port in `scheduled` input mode). Each forward
//! step a group releases its first `F` pending sources in scheduler order; ties fall to the
//! counter-based hash key, then to the lower source index.

use crate::chip::MAX_MESH_SIDE;
use crate::error::{Error, Result};
use crate::hash::{key_from_step, step_prefix};
use crate::mem;
use crate::options::Choice;

/// Order of pending spikes inside one arbitration group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheduler {
    /// Ascending `(frame, step)` at which the source became pending, then key.
    Fifo,
    /// Ascending key.
    Random,
    /// Descending overshoot of the source's most recent firing, then key.
    Momentum,
    /// Ascending population index (inputs first), then key.
    Layered,
}

impl Choice for Scheduler {
    const FIELD: &'static str = "scheduler";
    const ALL: &'static [Self] = &[Self::Fifo, Self::Random, Self::Momentum, Self::Layered];

    fn name(self) -> &'static str {
        match self {
            Self::Fifo => "fifo",
            Self::Random => "random",
            Self::Momentum => "momentum",
            Self::Layered => "layered",
        }
    }
}

/// Map an `f64` to a `u64` with the same order (total order, NaN-free inputs).
#[inline]
pub(crate) fn order_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The first `f` of `order` (packed sort keys, `source` of each) go to `out`, the others back to
/// `list`.
fn take_first<T: Ord + Copy>(
    order: &mut [T],
    f: usize,
    list: &mut Vec<u32>,
    out: &mut Vec<u32>,
    source: impl Fn(T) -> u32,
) {
    order.select_nth_unstable(f - 1);
    list.clear();
    out.extend(order[..f].iter().map(|&e| source(e)));
    list.extend(order[f..].iter().map(|&e| source(e)));
}

/// Pending counts of every source and the queue of every arbitration group.
#[derive(Debug, Clone)]
pub struct SpikeQueue {
    /// `p[s]`: spikes (or input events) waiting to be released.
    pub count: Vec<u32>,
    /// `(frame << 32) | step` at which `p[s]` became non-zero.
    pub since: Vec<u64>,
    /// Overshoot `v - theta` of the most recent firing (raw units).
    pub overshoot: Vec<f64>,
    /// Pending sources of each group (unordered).
    groups: Vec<Vec<u32>>,
    /// Groups that became non-empty since the last [`SpikeQueue::take_woken`].
    woken: Vec<u32>,
    /// Number of sources with `p[s] > 0`.
    pending_sources: usize,
    /// Scratch of `release`: (key, source) packed, for `random`.
    order64: Vec<u64>,
    /// Scratch of `release`: (primary, key, source) packed, for the other schedulers.
    order128: Vec<u128>,
    /// The first source whose count passed `u32::MAX` (it stays at `u32::MAX`).
    overflowed: Option<u32>,
}

impl SpikeQueue {
    /// Errors: [`Error::Memory`] when its per-source arrays cannot be allocated.
    pub fn new(n_sources: usize, n_groups: usize) -> Result<Self> {
        Ok(Self {
            count: mem::filled(n_sources, 0, "pending counts")?,
            since: mem::filled(n_sources, 0, "pending since")?,
            overshoot: mem::filled(n_sources, 0.0, "overshoots")?,
            groups: mem::filled(n_groups, Vec::new(), "arbitration groups")?,
            woken: Vec::new(),
            pending_sources: 0,
            order64: Vec::new(),
            order128: Vec::new(),
            overflowed: None,
        })
    }

    /// Add `n` to `p[src]` in `group`, recording `since` if it was not pending. A count that
    /// would pass `u32::MAX` stays there and is remembered ([`SpikeQueue::overflowed`]): the
    /// runs turn it into an error at the end of the frame.
    #[inline(always)]
    pub fn push(&mut self, group: u32, src: u32, n: u32, since: u64) {
        let s = src as usize;
        if self.count[s] == 0 {
            self.since[s] = since;
            let g = &mut self.groups[group as usize];
            if g.is_empty() {
                self.woken.push(group);
            }
            g.push(src);
            self.pending_sources += 1;
        }
        match self.count[s].checked_add(n) {
            Some(c) => self.count[s] = c,
            None => {
                self.count[s] = u32::MAX;
                self.overflowed.get_or_insert(src);
            }
        }
    }

    /// The first source whose pending count passed `u32::MAX`, if any.
    #[must_use]
    pub fn overflowed(&self) -> Option<u32> {
        self.overflowed
    }

    /// Whether any source is pending.
    #[must_use]
    pub fn any_pending(&self) -> bool {
        self.pending_sources > 0
    }

    /// Pending sources of one group.
    #[must_use]
    pub fn group_len(&self, group: u32) -> usize {
        self.groups[group as usize].len()
    }

    /// Total pending count (spikes and input events).
    #[must_use]
    pub fn total_count(&self) -> u64 {
        self.count.iter().map(|&c| u64::from(c)).sum()
    }

    /// Groups that became non-empty since the last call.
    pub fn take_woken(&mut self, out: &mut Vec<u32>) {
        out.clear();
        out.append(&mut self.woken);
    }

    /// Release up to `f` sources of `group` in scheduler order; they are appended to `out`
    /// (in no particular order) and leave the queue; their counts stay in `count` for the
    /// caller to deliver and clear.
    #[allow(clippy::too_many_arguments)]
    pub fn release(
        &mut self,
        group: u32,
        f: usize,
        scheduler: Scheduler,
        prefix: u32,
        step: u64,
        population: &[u32],
        n_inputs: usize,
        out: &mut Vec<u32>,
    ) {
        let list = &mut self.groups[group as usize];
        if list.is_empty() {
            return;
        }
        if list.len() <= f {
            self.pending_sources -= list.len();
            out.append(list);
            return;
        }
        // One integer per pending source, ordered as (primary, key, source): a comparison is
        // one integer compare. The step's part of the key is computed once.
        let at_step = step_prefix(prefix, step);
        let key = |src: u32| u64::from(key_from_step(at_step, u64::from(src)));
        if scheduler == Scheduler::Random {
            let order = &mut self.order64;
            order.clear();
            order.extend(list.iter().map(|&src| (key(src) << 32) | u64::from(src)));
            // the low 32 bits are the source
            #[allow(clippy::cast_possible_truncation)]
            take_first(order, f, list, out, |e| e as u32);
        } else {
            let order = &mut self.order128;
            order.clear();
            order.extend(list.iter().map(|&src| {
                let s = src as usize;
                let primary = match scheduler {
                    Scheduler::Fifo => self.since[s],
                    Scheduler::Random => 0,
                    Scheduler::Momentum => {
                        if s < n_inputs {
                            0
                        } else {
                            u64::MAX - order_bits(self.overshoot[s])
                        }
                    }
                    Scheduler::Layered => {
                        if s < n_inputs {
                            0
                        } else {
                            u64::from(population[s - n_inputs]) + 1
                        }
                    }
                };
                (u128::from(primary) << 64) | u128::from((key(src) << 32) | u64::from(src))
            }));
            // the low 32 bits are the source
            #[allow(clippy::cast_possible_truncation)]
            take_first(order, f, list, out, |e| e as u32);
        }
        self.pending_sources -= f;
    }

    /// Release every pending source of `group`.
    pub fn release_all(&mut self, group: u32, out: &mut Vec<u32>) {
        let list = &mut self.groups[group as usize];
        self.pending_sources -= list.len();
        out.append(list);
    }
}

/// A self-contained, checked arbitration queue: the [`SpikeQueue`] that both timing modes use,
/// with every source's group and population fixed up front and every argument validated, so
/// that tools and tests can drive the scheduler directly (bad input is an [`Error`], never a
/// panic). Sources are numbered inputs first, as in the hash.
#[derive(Debug, Clone)]
pub struct CheckedQueue {
    queue: SpikeQueue,
    n_inputs: usize,
    group_of: Vec<u32>,
    population: Vec<u32>,
    seed: u64,
    sample: u64,
}

/// Largest number of sources of a [`CheckedQueue`] (as for networks).
pub const MAX_SOURCES: usize = 1 << 29;

/// Largest number of arbitration groups: every core of the largest mesh, and the input port.
pub const MAX_GROUPS: usize = (MAX_MESH_SIDE as usize) * (MAX_MESH_SIDE as usize) + 1;

impl CheckedQueue {
    /// `group_of[s]` is the arbitration group of source `s` (inputs first);
    /// `population[n]` the population of neuron `n` (for `layered`); `seed` and `sample` enter
    /// the hash.
    pub fn new(
        n_inputs: usize,
        group_of: Vec<u32>,
        population: Vec<u32>,
        seed: u64,
        sample: u64,
    ) -> Result<Self> {
        if group_of.len() > MAX_SOURCES {
            return Err(Error::input(
                "group_of",
                format!("{} sources; at most {MAX_SOURCES}", group_of.len()),
            ));
        }
        if n_inputs > group_of.len() {
            return Err(Error::input(
                "n_inputs",
                format!(
                    "{n_inputs} is outside 0..={} (the number of sources)",
                    group_of.len()
                ),
            ));
        }
        if population.len() != group_of.len() - n_inputs {
            return Err(Error::input(
                "population",
                format!(
                    "{} entries for {} neurons (sources after the inputs)",
                    population.len(),
                    group_of.len() - n_inputs
                ),
            ));
        }
        let n_groups = group_of.iter().max().map_or(0, |&g| g as usize + 1);
        if n_groups > MAX_GROUPS {
            return Err(Error::input(
                "group_of",
                format!(
                    "group {} is outside 0..{MAX_GROUPS} (a group is a core of the largest \
                     mesh, or the input port)",
                    n_groups - 1
                ),
            ));
        }
        Ok(Self {
            queue: SpikeQueue::new(group_of.len(), n_groups)?,
            n_inputs,
            group_of,
            population,
            seed,
            sample,
        })
    }

    fn check_source(&self, source: u32) -> Result<usize> {
        let s = source as usize;
        if s >= self.group_of.len() {
            return Err(Error::input(
                "source",
                format!("{source} is outside 0..{}", self.group_of.len()),
            ));
        }
        Ok(s)
    }

    /// Add `count` to `p[source]` at `(frame, step)`; a firing neuron also records its
    /// `overshoot` (used by `momentum`).
    pub fn push(
        &mut self,
        source: u32,
        count: u32,
        frame: u32,
        step: u32,
        overshoot: Option<f64>,
    ) -> Result<()> {
        let s = self.check_source(source)?;
        if count == 0 {
            return Err(Error::input("count", "0 is outside 1.."));
        }
        if let Some(o) = overshoot {
            if !o.is_finite() {
                return Err(Error::input("overshoot", format!("{o} is not finite")));
            }
            if s < self.n_inputs {
                return Err(Error::input(
                    "overshoot",
                    format!("source {source} is an input channel (inputs have no overshoot)"),
                ));
            }
            self.queue.overshoot[s] = o;
        }
        if self.queue.count[s].checked_add(count).is_none() {
            return Err(Error::input(
                "count",
                format!(
                    "source {source} has {} pending; {count} more would pass {}",
                    self.queue.count[s],
                    u32::MAX
                ),
            ));
        }
        let since = (u64::from(frame) << 32) | u64::from(step);
        self.queue.push(self.group_of[s], source, count, since);
        Ok(())
    }

    /// Release up to `f` (`None`: all) pending sources of `group` in `scheduler` order at
    /// `(frame, step)`; returns `(source, count)` by ascending source, and clears their counts.
    pub fn release(
        &mut self,
        group: u32,
        f: Option<usize>,
        scheduler: Scheduler,
        frame: u32,
        step: u32,
    ) -> Result<Vec<(u32, u32)>> {
        if group as usize >= self.queue.groups.len() {
            return Err(Error::input(
                "group",
                format!("{group} is outside 0..{}", self.queue.groups.len()),
            ));
        }
        let mut out = Vec::new();
        match f {
            Some(0) => return Err(Error::input("F", "0 is outside 1.. (or None)")),
            Some(f) => {
                let prefix = crate::hash::frame_prefix(self.seed, self.sample, u64::from(frame));
                self.queue.release(
                    group,
                    f,
                    scheduler,
                    prefix,
                    u64::from(step),
                    &self.population,
                    self.n_inputs,
                    &mut out,
                );
            }
            None => self.queue.release_all(group, &mut out),
        }
        out.sort_unstable();
        Ok(out
            .into_iter()
            .map(|s| (s, std::mem::take(&mut self.queue.count[s as usize])))
            .collect())
    }

    /// Pending count of every source.
    #[must_use]
    pub fn counts(&self) -> &[u32] {
        &self.queue.count
    }

    /// Pending sources of `group` (0 for a group that does not exist).
    #[must_use]
    pub fn group_len(&self, group: u32) -> usize {
        self.queue.groups.get(group as usize).map_or(0, Vec::len)
    }

    /// Number of arbitration groups.
    #[must_use]
    pub fn n_groups(&self) -> usize {
        self.queue.groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_bits_is_monotone() {
        let xs = [-1e30, -2.5, -0.0, 0.0, 1e-30, 0.5, 3.0, 1e30];
        for w in xs.windows(2) {
            assert!(order_bits(w[0]) <= order_bits(w[1]), "{w:?}");
        }
    }

    #[test]
    fn checked_queue_rejects_bad_arguments_and_releases_counts() {
        assert!(CheckedQueue::new(3, vec![0, 0], vec![], 0, 0).is_err());
        assert!(CheckedQueue::new(1, vec![1, 0, 0], vec![0], 0, 0).is_err());
        let mut q = CheckedQueue::new(1, vec![1, 0, 0], vec![0, 1], 7, 3).unwrap();
        assert!(q.push(3, 1, 0, 0, None).is_err());
        assert!(q.push(1, 0, 0, 0, None).is_err());
        assert!(q.push(0, 1, 0, 0, Some(0.5)).is_err());
        assert!(q.push(1, 1, 0, 0, Some(f64::NAN)).is_err());
        q.push(1, 2, 0, 0, Some(0.25)).unwrap();
        q.push(2, 1, 0, 1, Some(0.75)).unwrap();
        assert!(q.release(2, Some(1), Scheduler::Fifo, 0, 0).is_err());
        assert!(q.release(0, Some(0), Scheduler::Fifo, 0, 0).is_err());
        assert_eq!(
            q.release(0, Some(1), Scheduler::Momentum, 0, 2).unwrap(),
            vec![(2, 1)]
        );
        assert_eq!(
            q.release(0, None, Scheduler::Fifo, 0, 2).unwrap(),
            vec![(1, 2)]
        );
        assert_eq!(q.counts(), &[0, 0, 0]);
    }

    #[test]
    fn release_respects_f_and_conserves() {
        let mut q = SpikeQueue::new(10, 1).unwrap();
        for s in 0..10 {
            q.push(0, s, 1, u64::from(10 - s));
        }
        let mut out = Vec::new();
        q.release(0, 3, Scheduler::Fifo, 1, 0, &[0; 10], 10, &mut out);
        out.sort_unstable();
        assert_eq!(out, vec![7, 8, 9]);
        assert_eq!(q.group_len(0), 7);
        q.release_all(0, &mut out);
        assert_eq!(out.len(), 10);
        assert!(!q.any_pending());
    }
}
