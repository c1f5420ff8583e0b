//! A network placed on a chip: per-neuron parameters in the chip's arithmetic, synapses stored
//! per source (CSR) and grouped by destination core, and the capacity check of the mapping.

use crate::arith::Arith;
use crate::chip::ChipConfig;
use crate::error::{CoreViolation, Error, Result};
use crate::mem;
use crate::network::{Network, NeuronKind, Reset, Source};

/// How neurons are assigned to cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Fill cores in neuron (population) order, moving to the next core when the neuron or
    /// synapse capacity would be exceeded.
    Auto,
    /// `core_of[neuron]`, core numbered row-major on the mesh.
    Explicit(Vec<u32>),
}

impl Mapping {
    /// The core of every neuron; errors name the neuron or the cores that do not fit.
    pub fn resolve(&self, net: &Network, chip: &ChipConfig) -> Result<Vec<u32>> {
        let n = net.n_neurons();
        let n_cores = chip.n_cores();
        match self {
            Self::Explicit(core_of) => {
                if core_of.len() != n {
                    return Err(Error::input(
                        "mapping",
                        format!(
                            "{} entries for {n} neurons (one core per neuron)",
                            core_of.len()
                        ),
                    ));
                }
                if let Some(i) = core_of.iter().position(|&c| c as usize >= n_cores) {
                    return Err(Error::input(
                        "mapping",
                        format!(
                            "neuron {i} is mapped to core {}, outside 0..{n_cores}",
                            core_of[i]
                        ),
                    ));
                }
                Ok(core_of.clone())
            }
            Self::Auto => auto_map(net, chip),
        }
    }
}

fn incoming_counts(net: &Network) -> Result<Vec<u64>> {
    let starts = net.starts();
    let mut counts = mem::filled(net.n_neurons(), 0u64, "synapses per neuron")?;
    for pr in net.projections() {
        let t0 = starts[pr.target];
        pr.weights.for_each(|t, _, w| {
            if w != 0.0 {
                counts[t0 + t] += 1;
            }
        });
    }
    Ok(counts)
}

fn auto_map(net: &Network, chip: &ChipConfig) -> Result<Vec<u32>> {
    let cap = chip.core;
    let incoming = incoming_counts(net)?;
    let n_cores = chip.n_cores();
    let mut core_of = mem::with_capacity(incoming.len(), "core of every neuron")?;
    let (mut core, mut neurons, mut synapses) = (0usize, 0u64, 0u64);
    for (i, &syn) in incoming.iter().enumerate() {
        if neurons > 0 && (neurons + 1 > cap.neurons || synapses + syn > cap.synapses) {
            core += 1;
            neurons = 0;
            synapses = 0;
        }
        if core >= n_cores {
            let remaining = incoming.len() - i;
            return Err(Error::Mapping {
                violations: vec![],
                message: format!(
                    "automatic mapping ran out of cores: {remaining} neurons left after filling all {n_cores} \
                     cores ({} neurons, {} synapses each)",
                    cap.neurons, cap.synapses
                ),
            });
        }
        neurons += 1;
        synapses += syn;
        // core < n_cores <= 2^20
        #[allow(clippy::cast_possible_truncation)]
        core_of.push(core as u32);
    }
    Ok(core_of)
}

/// A population of stochastic or integrator neurons, updated once per frame at its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawPopulation {
    /// First neuron.
    pub start: usize,
    /// Number of neurons.
    pub size: usize,
    /// Stochastic (fires by the hash) or integrator (never fires).
    pub fires: bool,
}

/// The network in the chip's arithmetic, ready to simulate.
#[derive(Debug, Clone)]
pub struct Compiled<A: Arith> {
    pub arith: A,
    pub n_inputs: usize,
    pub n_neurons: usize,
    pub n_cores: usize,
    pub theta: Vec<A::V>,
    pub leak: Vec<A::Leak>,
    pub subtract: Vec<bool>,
    pub refractory: Vec<bool>,
    /// Whether input goes to a synaptic trace (stochastic and integrator neurons).
    pub has_trace: Vec<bool>,
    /// Decay of the synaptic trace per frame (`alpha`; unused for LIF neurons).
    pub trace_leak: Vec<A::Leak>,
    /// Stochastic and integrator populations in ascending population index.
    pub draws: Vec<DrawPopulation>,
    /// Population index of every neuron.
    pub population: Vec<u32>,
    /// Whether the neuron's population projects anywhere (else it never queues).
    pub has_out: Vec<bool>,
    pub core_of: Vec<u32>,
    /// Router of every source: input channels enter at the input port.
    pub router_of_source: Vec<u32>,
    /// CSR over sources: synapses of source `s` are `row[s]..row[s + 1]`, sorted by
    /// (destination core, target).
    pub row: Vec<usize>,
    pub target: Vec<u32>,
    pub weight: Vec<A::W>,
    /// Segments (one per destination core) of source `s`: `seg[s]..seg[s + 1]`.
    pub seg: Vec<usize>,
    /// Each segment in one word: its end offset into `target` ([`Compiled::seg_end`], 31 bits:
    /// a placement holds fewer than 2^31 synapses) and, in the top bit ([`RANGE`]), whether its
    /// targets are two or more consecutive neurons (a dense block: [`Compiled::seg_is_range`]).
    /// Its destination core is that of its targets ([`Compiled::core_at`] of its first synapse).
    seg_word: Vec<u32>,
    /// Whether any segment is a range.
    pub has_ranges: bool,
    /// For a source all of whose segments are ranges (a row of dense blocks), where the first
    /// targets of its segments start in `range_first`; else `u32::MAX`. A delivery to such a
    /// segment reads no target index.
    pub range_base: Vec<u32>,
    /// First targets of the segments of the sources that `range_base` lists.
    pub range_first: Vec<u32>,
    /// For a source whose row is one range (one segment of consecutive targets: a dense
    /// block on one core), its first target and length as `(first << 32) | length`; else
    /// [`NO_BLOCK`]. Empty when no row is one block. A delivery compares two such rows by one
    /// load each.
    pub block: Vec<u64>,
    /// Total route hops of one spike of each source (sum over its segments).
    pub hops_of_source: Vec<u64>,
    pub output_start: usize,
    pub output_size: usize,
    /// Weights clipped by the fixed-point range.
    pub clipped_weights: u64,
    /// Neurons per core.
    pub core_neurons: Vec<u64>,
    /// Whether every core's neurons are one run of consecutive neurons, in core order (the
    /// automatic mapping, and any mapping that does not decrease along the neurons): then a
    /// source's targets ascend with their cores, and a run of cores is a run of neurons that a
    /// thread of its own can update (see [`crate::lane`]).
    pub cores_in_order: bool,
}

/// [`Compiled::block`] of a source whose row is not one range.
pub(crate) const NO_BLOCK: u64 = u64::MAX;

/// Top bit of a segment word: its targets are consecutive neurons.
const RANGE: u32 = 1 << 31;

/// End offset of a segment, from its word.
#[inline]
fn word_end(word: u32) -> usize {
    (word & !RANGE) as usize
}

/// The synapse arrays of a [`Compiled`] network as slices held in locals: a delivery loop
/// that read them through the network would load each array's address again after every
/// store to the neuron state (the compiler cannot tell that the stores leave the network's
/// fields alone).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows<'a, W> {
    pub seg: &'a [usize],
    seg_word: &'a [u32],
    range_base: &'a [u32],
    range_first: &'a [u32],
    pub block: &'a [u64],
    pub target: &'a [u32],
    pub weight: &'a [W],
    pub core_of: &'a [u32],
}

impl<W> Rows<'_, W> {
    /// See [`Compiled::seg_end`].
    #[inline]
    pub fn seg_end(&self, k: usize) -> usize {
        word_end(self.seg_word[k])
    }

    /// See [`Compiled::seg_is_range`].
    #[inline]
    pub fn seg_is_range(&self, k: usize) -> bool {
        self.seg_word[k] & RANGE != 0
    }

    /// See [`Compiled::range_start`].
    #[inline]
    pub fn range_start(&self, src: usize, k: usize, begin: usize) -> usize {
        match self.range_base[src] {
            u32::MAX => self.target[begin] as usize,
            b => self.range_first[b as usize + k - self.seg[src]] as usize,
        }
    }
}

/// What [`mark_ranges`] finds (see the fields of [`Compiled`] of the same names).
struct Ranges {
    any: bool,
    base: Vec<u32>,
    first: Vec<u32>,
    block: Vec<u64>,
}

/// Mark every segment whose targets are two or more consecutive neurons (see
/// [`Compiled::seg_is_range`]), and list the first targets of the sources whose segments all
/// are ranges (`range_base`, `range_first`) and of those whose row is one range (`block`).
/// Returns them with whether any segment is a range. A single target is delivered as well by
/// index.
fn mark_ranges(
    row: &[usize],
    seg: &[usize],
    seg_word: &mut [u32],
    target: &[u32],
) -> Result<Ranges> {
    let n_src = seg.len().saturating_sub(1);
    let mut base = mem::filled(n_src, u32::MAX, "range rows")?;
    let mut first = Vec::new();
    let mut any = false;
    for s in 0..n_src {
        let mut begin = row[s];
        let mut all = seg[s] < seg[s + 1];
        for word in &mut seg_word[seg[s]..seg[s + 1]] {
            let end = word_end(*word);
            let ts = &target[begin..end];
            if ts.len() >= 2 && ts.windows(2).all(|p| p[1] == p[0] + 1) {
                *word |= RANGE;
                any = true;
            } else {
                all = false;
            }
            begin = end;
        }
        if let (true, Ok(b)) = (all, u32::try_from(first.len())) {
            base[s] = b;
            mem::reserve(&mut first, seg[s + 1] - seg[s], "range rows")?;
            let mut begin = row[s];
            for &word in &seg_word[seg[s]..seg[s + 1]] {
                first.push(target[begin]);
                begin = word_end(word);
            }
        }
    }
    let block = if any {
        let mut block = mem::filled(n_src, NO_BLOCK, "block rows")?;
        for (s, b) in block.iter_mut().enumerate() {
            if base[s] != u32::MAX && seg[s + 1] - seg[s] == 1 {
                // a first target < 2^28 and a length < 2^31
                *b = (u64::from(first[base[s] as usize]) << 32) | (row[s + 1] - row[s]) as u64;
            }
        }
        block
    } else {
        Vec::new()
    };
    // kept only where some row is one block (random sparse rows seldom are)
    let block = if block.iter().any(|&b| b != NO_BLOCK) {
        block
    } else {
        Vec::new()
    };
    Ok(Ranges {
        any,
        base,
        first,
        block,
    })
}

/// Per-core resource use of a compiled network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreUsage {
    pub neurons: Vec<u64>,
    pub synapses: Vec<u64>,
    pub fan_in: Vec<u64>,
    pub fan_out: Vec<u64>,
}

impl<A: Arith> Compiled<A> {
    /// Place `net` on `chip` with the given core of every neuron.
    pub fn new(net: &Network, chip: &ChipConfig, arith: A, core_of: Vec<u32>) -> Result<Self> {
        let n_in = net.n_inputs();
        let n = net.n_neurons();
        let n_src = n_in + n;
        let pops = net.populations();
        let population = net.population_of()?;
        let mut theta = mem::with_capacity(n, "thresholds")?;
        let mut leak = mem::with_capacity(n, "leak factors")?;
        let mut subtract = mem::with_capacity(n, "reset kinds")?;
        let mut refractory = mem::with_capacity(n, "refractory flags")?;
        let mut has_trace = mem::with_capacity(n, "neuron kinds")?;
        let mut trace_leak = mem::with_capacity(n, "trace leak factors")?;
        let mut draws = Vec::new();
        for (i, p) in pops.iter().enumerate() {
            let th = arith.threshold(p.theta).map_err(|e| match e {
                Error::Network { message, .. } => {
                    Error::network(format!("populations[{i}].theta"), message)
                }
                other => other,
            })?;
            let lk = arith.leak_factor(p.beta);
            let trace = p.kind.alpha();
            let tl = arith.leak_factor(trace.unwrap_or(0.0));
            if trace.is_some() {
                draws.push(DrawPopulation {
                    start: net.starts()[i],
                    size: p.size,
                    fires: matches!(p.kind, NeuronKind::Stochastic { .. }),
                });
            }
            for _ in 0..p.size {
                theta.push(th);
                leak.push(lk);
                subtract.push(trace.is_none() && p.reset == Reset::Subtract);
                refractory.push(trace.is_none() && p.refractory);
                has_trace.push(trace.is_some());
                trace_leak.push(tl);
            }
        }
        let mut has_out = mem::filled(n, false, "fan-out flags")?;
        for pr in net.projections() {
            if let Source::Population(s) = pr.source {
                let s0 = net.starts()[s];
                has_out[s0..s0 + pops[s].size]
                    .iter_mut()
                    .for_each(|h| *h = true);
            }
        }

        // Counting sort of synapses by source, then per-source sort by (core, target) and merge.
        let starts = net.starts();
        let mut counts = mem::filled(n_src + 1, 0usize, "synapses per source")?;
        for pr in net.projections() {
            let s0 = match pr.source {
                Source::Input => 0,
                Source::Population(s) => n_in + starts[s],
            };
            pr.weights.for_each(|_, s, w| {
                if w != 0.0 {
                    counts[s0 + s + 1] += 1;
                }
            });
        }
        for i in 0..n_src {
            counts[i + 1] += counts[i];
        }
        let total = counts[n_src];
        let mut fill = mem::copied(&counts, "synapses per source")?;
        let mut raw: Vec<(u32, u32, f32)> = mem::filled(total, (0, 0, 0.0), "synapses (sorting)")?;
        for pr in net.projections() {
            let s0 = match pr.source {
                Source::Input => 0,
                Source::Population(s) => n_in + starts[s],
            };
            let t0 = starts[pr.target];
            pr.weights.for_each(|t, s, w| {
                if w != 0.0 {
                    let src = s0 + s;
                    // n <= 2^28
                    #[allow(clippy::cast_possible_truncation)]
                    let tg = (t0 + t) as u32;
                    raw[fill[src]] = (core_of[t0 + t], tg, w);
                    fill[src] += 1;
                }
            });
        }
        let input_router = u32::try_from(chip.input_router()).unwrap_or(u32::MAX);
        let mut router_of_source = mem::with_capacity(n_src, "router of every source")?;
        router_of_source.resize(n_in, input_router);
        router_of_source.extend_from_slice(&core_of);

        let mut row = mem::with_capacity(n_src + 1, "synapse rows")?;
        let mut target = mem::with_capacity(total, "synapse targets")?;
        let mut weight = mem::with_capacity(total, "synapse weights")?;
        let mut seg = mem::with_capacity(n_src + 1, "segments per source")?;
        let mut seg_word: Vec<u32> = Vec::new();
        let end31 = |n: usize| match u32::try_from(n) {
            Ok(e) if e < RANGE => Ok(e),
            _ => Err(Error::network(
                "projections",
                format!("{total} synapses: at most 2^31 - 1 fit one placement"),
            )),
        };
        let mut hops_of_source = mem::filled(n_src, 0u64, "hops per source")?;
        let mut clipped = 0u64;
        row.push(0);
        seg.push(0);
        for src in 0..n_src {
            let syn = &mut raw[counts[src]..counts[src + 1]];
            syn.sort_unstable_by_key(|&(c, t, _)| (c, t));
            let mut cur_core: Option<u32> = None;
            let mut i = 0;
            while i < syn.len() {
                let (c, t, mut w) = syn[i];
                i += 1;
                while i < syn.len() && syn[i].1 == t {
                    w += syn[i].2;
                    i += 1;
                }
                let (q, clip) = arith.weight(w);
                clipped += u64::from(clip);
                if A::weight_is_zero(q) {
                    continue;
                }
                if cur_core != Some(c) {
                    if cur_core.is_some() {
                        seg_word.push(end31(target.len())?);
                    }
                    mem::reserve(&mut seg_word, 1, "segments")?;
                    hops_of_source[src] += chip.hops(router_of_source[src] as usize, c as usize);
                    cur_core = Some(c);
                }
                target.push(t);
                weight.push(q);
            }
            if cur_core.is_some() {
                seg_word.push(end31(target.len())?);
            }
            row.push(target.len());
            seg.push(seg_word.len());
        }
        let Ranges {
            any: has_ranges,
            base: range_base,
            first: range_first,
            block,
        } = mark_ranges(&row, &seg, &mut seg_word, &target)?;
        let out = net.output_range();
        let n_cores = chip.n_cores();
        let mut core_neurons = vec![0u64; n_cores];
        for &c in &core_of {
            core_neurons[c as usize] += 1;
        }
        let cores_in_order = core_of.windows(2).all(|p| p[0] <= p[1]);
        Ok(Self {
            arith,
            n_inputs: n_in,
            n_neurons: n,
            n_cores,
            theta,
            leak,
            subtract,
            refractory,
            has_trace,
            trace_leak,
            draws,
            population,
            has_out,
            core_of,
            router_of_source,
            row,
            target,
            weight,
            seg,
            seg_word,
            has_ranges,
            range_base,
            range_first,
            block,
            hops_of_source,
            output_start: out.start,
            output_size: out.len(),
            clipped_weights: clipped,
            core_neurons,
            cores_in_order,
        })
    }

    /// First synapse (offset into the CSR) of segment `seg` of source `src`.
    #[inline]
    #[must_use]
    pub fn seg_begin(&self, src: usize, seg: usize) -> usize {
        if seg == self.seg[src] {
            self.row[src]
        } else {
            self.seg_end(seg - 1)
        }
    }

    /// End offset (into `target`) of segment `k`.
    #[inline]
    #[must_use]
    pub fn seg_end(&self, k: usize) -> usize {
        self.rows().seg_end(k)
    }

    /// Whether the targets of segment `k` are two or more consecutive neurons.
    #[inline]
    #[must_use]
    pub fn seg_is_range(&self, k: usize) -> bool {
        self.rows().seg_is_range(k)
    }

    /// First target of segment `k` of source `src`, a range starting at synapse `begin`:
    /// from `range_first` where the source has its row there (no load of the target array).
    #[inline]
    #[must_use]
    pub fn range_start(&self, src: usize, k: usize, begin: usize) -> usize {
        self.rows().range_start(src, k, begin)
    }

    /// The synapse arrays as plain slices (see [`Rows`]).
    #[inline]
    #[must_use]
    pub(crate) fn rows(&self) -> Rows<'_, A::W> {
        Rows {
            seg: &self.seg,
            seg_word: &self.seg_word,
            range_base: &self.range_base,
            range_first: &self.range_first,
            block: &self.block,
            target: &self.target,
            weight: &self.weight,
            core_of: &self.core_of,
        }
    }

    /// The core of the target of synapse `i` (a segment's destination core, from its first).
    #[inline]
    #[must_use]
    pub fn core_at(&self, i: usize) -> u32 {
        self.core_of[self.target[i] as usize]
    }

    /// Bytes the compiled network holds (its arrays' contents).
    #[must_use]
    pub fn nbytes(&self) -> usize {
        fn b<T>(v: &[T]) -> usize {
            std::mem::size_of_val(v)
        }
        b(&self.theta)
            + b(&self.leak)
            + b(&self.subtract)
            + b(&self.refractory)
            + b(&self.has_trace)
            + b(&self.trace_leak)
            + b(&self.draws)
            + b(&self.population)
            + b(&self.has_out)
            + b(&self.core_of)
            + b(&self.router_of_source)
            + b(&self.row)
            + b(&self.target)
            + b(&self.weight)
            + b(&self.seg)
            + b(&self.seg_word)
            + b(&self.range_base)
            + b(&self.range_first)
            + b(&self.block)
            + b(&self.hops_of_source)
            + b(&self.core_neurons)
    }

    /// Number of sources (input channels then neurons).
    #[must_use]
    pub fn n_sources(&self) -> usize {
        self.n_inputs + self.n_neurons
    }

    /// Stored synapses.
    #[must_use]
    pub fn n_synapses(&self) -> usize {
        self.target.len()
    }

    /// Resource use per core.
    #[must_use]
    pub fn usage(&self) -> CoreUsage {
        let nc = self.n_cores;
        let mut synapses = vec![0u64; nc];
        let mut fan_in = vec![0u64; nc];
        let mut fan_out = vec![0u64; nc];
        for src in 0..self.n_sources() {
            let mut begin = self.row[src];
            for k in self.seg[src]..self.seg[src + 1] {
                let c = self.core_at(begin) as usize;
                synapses[c] += (self.seg_end(k) - begin) as u64;
                begin = self.seg_end(k);
                fan_in[c] += 1;
                if src >= self.n_inputs {
                    fan_out[self.core_of[src - self.n_inputs] as usize] += 1;
                }
            }
        }
        CoreUsage {
            neurons: self.core_neurons.clone(),
            synapses,
            fan_in,
            fan_out,
        }
    }

    /// Every capacity violation, per core, with numbers; `Ok` when the mapping fits.
    pub fn check_capacity(&self, chip: &ChipConfig) -> Result<()> {
        let u = self.usage();
        let cap = chip.core;
        let mut violations = Vec::new();
        for c in 0..self.n_cores {
            for (resource, needed, capacity) in [
                ("neurons", u.neurons[c], cap.neurons),
                ("synapses", u.synapses[c], cap.synapses),
                ("fan_in", u.fan_in[c], cap.fan_in),
                ("fan_out", u.fan_out[c], cap.fan_out),
            ] {
                if needed > capacity {
                    violations.push(CoreViolation {
                        core: c,
                        resource,
                        needed,
                        capacity,
                    });
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            let message = format!("{} capacity violation(s)", violations.len());
            Err(Error::Mapping {
                violations,
                message,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::F32;
    use crate::network::{Population, Projection, Weights};

    /// Input 0 reaches neurons 0..3 (one core) and 4..6 (the next): two ranges. Input 1
    /// reaches neurons 1 and 2 (a range) and 5 alone (not a range). Input 2 reaches 7 only.
    #[test]
    fn ranges_are_marked_and_their_first_targets_listed_for_whole_rows() {
        let entries = [0, 1, 2, 3, 4, 5, 6]
            .iter()
            .map(|&t| (t, 0, 0.5))
            .chain([(1, 1, 0.5), (2, 1, 0.5), (5, 1, 0.5), (7, 2, 0.5)])
            .collect();
        let net = Network::new(
            3,
            vec![Population::lif(8, 1.0, 0.9, Reset::Subtract, false)],
            vec![Projection {
                source: Source::Input,
                target: 0,
                weights: Weights::Sparse {
                    rows: 8,
                    cols: 3,
                    entries,
                },
            }],
            0,
        )
        .unwrap();
        let mut chip = ChipConfig::preset("ideal").unwrap();
        chip.mesh_width = 2;
        let c = Compiled::new(&net, &chip, F32, vec![0, 0, 0, 0, 1, 1, 1, 1]).unwrap();
        let ranges: Vec<Vec<bool>> = (0..3)
            .map(|s| {
                (c.seg[s]..c.seg[s + 1])
                    .map(|k| c.seg_is_range(k))
                    .collect()
            })
            .collect();
        assert_eq!(
            ranges,
            vec![vec![true, true], vec![true, false], vec![false]]
        );
        assert!(c.has_ranges);
        // only input 0's row is all ranges: its first targets are listed, the others read them
        assert_eq!(
            c.range_base,
            vec![
                0,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX
            ]
        );
        assert_eq!(c.range_first, vec![0, 4]);
        // a row of two ranges is not one block (and none is: none is kept); on one core,
        // input 0's row is (targets 0..7)
        assert!(c.block.is_empty());
        let one = Compiled::new(&net, &chip, F32, vec![0; 8]).unwrap();
        let mut block = vec![NO_BLOCK; 11];
        block[0] = 7;
        assert_eq!(one.block, block);
        for s in 0..2 {
            for k in c.seg[s]..c.seg[s + 1] {
                let begin = c.seg_begin(s, k);
                if c.seg_is_range(k) {
                    assert_eq!(c.range_start(s, k, begin), c.target[begin] as usize);
                }
            }
        }
        assert_eq!(c.seg_end(c.seg[1]), 9);
        assert_eq!(c.n_synapses(), 11);
    }
}
