//! # asyncsnn emulator
//!
//! A deterministic emulator of a multi-core neuromorphic chip, the Rust half of asyncsnn.
//!
//! * [`ChipConfig`] describes the chip: a `W x H` mesh of cores, per-core capacities, timing and
//!   energy costs, and the arithmetic (`f32` or saturating fixed point). Presets: `loihi`,
//!   `edge`, `ideal`.
//! * [`Network`] describes populations of LIF neurons and projections between them (any
//!   directed graph, dense or sparse weights).
//! * [`Emulator`] places a network on a chip ([`Mapping`]: automatic or explicit; every
//!   capacity violation is reported per core before anything runs) and runs batches of samples
//!   in parallel, in `steps` mode (the reference execution model, forward step by forward
//!   step) or `events` mode (integer-tick discrete-event simulation with routing latencies,
//!   buffers and service times).
//!
//! The execution model and the scheduler hash are documented in `docs/execution-model.md`
//! of the repository; [`hash`] defines the hash bit for bit.
//!
//! ```
//! use emulator::{ChipConfig, Emulator, Mapping, Network, Population, Projection, Reset,
//!                RunOptions, SampleInput, Source, Weights};
//! let pop = |size| Population::lif(size, 1.0, 1.0, Reset::Zero, true);
//! let net = Network::new(
//!     2,
//!     vec![pop(1)],
//!     vec![Projection { source: Source::Input, target: 0,
//!                       weights: Weights::Dense { rows: 1, cols: 2, data: vec![0.75, 0.5] } }],
//!     0,
//! ).unwrap();
//! let emu = Emulator::new(&net, ChipConfig::preset("ideal").unwrap(), &Mapping::Auto).unwrap();
//! let input = SampleInput::from_dense(&[1, 1], 1, 2).unwrap();
//! let out = emu.run(&[input], None, &RunOptions::default()).unwrap();
//! assert_eq!(out[0].out_counts, vec![1]);
//! ```

#![forbid(unsafe_code)]

pub mod arith;
pub mod chip;
pub mod compiled;
pub mod error;
mod events;
pub mod hash;
pub mod input;
mod lane;
pub mod mem;
pub mod network;
pub mod options;
pub mod result;
pub mod scheduler;
mod state;
mod steps;
pub mod stochastic;
pub mod train;

use crate::lane::LanePlan;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use std::sync::{Arc, Mutex, PoisonError};

pub use arith::{Arith, Fixed, F32};
pub use chip::{Arithmetic, ChipConfig, CoreCapacity, NeuronUpdate, Overflow, PRESETS};
pub use compiled::{Compiled, CoreUsage, Mapping};
pub use error::{CoreViolation, Error, Result};
pub use input::SampleInput;
pub use network::{Network, NeuronKind, Population, Projection, Reset, Source, Weights};
pub use options::{Choice, InputMode, Mode, RunOptions, RUNAWAY_STEPS};
pub use result::{Energy, Latency, Metrics, SampleResult, TraceRow};
pub use scheduler::{CheckedQueue, Scheduler, SpikeQueue};

/// The compiled network in the chip's arithmetic.
#[derive(Debug, Clone)]
enum Engine {
    F32(Compiled<F32>),
    Fixed(Compiled<Fixed>),
}

/// A network placed on a chip, ready to run batches of samples.
#[derive(Debug, Clone)]
pub struct Emulator {
    chip: ChipConfig,
    engine: Engine,
    n_inputs: usize,
    output_size: usize,
    /// Thread pools of the thread counts asked for, built once and kept (a clone shares them).
    pools: Arc<Mutex<Vec<Pool>>>,
    /// Lane plans of the lane counts used, built once and kept (a clone shares them).
    plans: Arc<Mutex<Vec<Plan>>>,
}

/// A lane count and its plan.
type Plan = (usize, Arc<LanePlan>);

/// A thread count and its pool.
pub(crate) type Pool = (usize, Arc<rayon::ThreadPool>);

/// Thread pools (and lane plans) an [`Emulator`] or the training engine keeps: the most
/// recently used counts.
const KEPT_POOLS: usize = 4;
/// Lanes a sample is split into for each thread it may use (see [`lane`]).
const LANES_PER_THREAD: usize = 4;

/// Smallest network whose samples are split into lanes: a lane reads its part of each row,
/// which costs more per synapse than whole rows, and a small network's steps are too short
/// to gain it back (the 2312-64-64-64-10 network on 4 cores ran a third slower on 2 threads).
const LANE_MIN_SYNAPSES: usize = 1 << 18;

/// The value for `key` kept in `cache` (the [`KEPT_POOLS`] most recently used keys), made by
/// `make` at its first use.
fn kept<T>(
    cache: &Mutex<Vec<(usize, Arc<T>)>>,
    key: usize,
    make: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(k) = cache.iter().position(|(n, _)| *n == key) {
        let hit = cache.remove(k);
        let value = Arc::clone(&hit.1);
        cache.push(hit);
        return Ok(value);
    }
    let value = Arc::new(make()?);
    if cache.len() == KEPT_POOLS {
        cache.remove(0);
    }
    cache.push((key, Arc::clone(&value)));
    Ok(value)
}

/// The pool of `t` threads kept in `pools` (the [`KEPT_POOLS`] most recently used thread counts),
/// built on first use: a pool costs its threads and their allocator caches.
pub(crate) fn kept_pool(pools: &Mutex<Vec<Pool>>, t: usize) -> Result<Arc<rayon::ThreadPool>> {
    kept(pools, t, || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| Error::input("threads", e.to_string()))
    })
}

impl Emulator {
    /// Validate the chip, place the network, and check every core's capacity.
    pub fn new(net: &Network, chip: ChipConfig, mapping: &Mapping) -> Result<Self> {
        chip.validate()?;
        let core_of = mapping.resolve(net, &chip)?;
        let engine = match arith::fixed_of(&chip.arithmetic) {
            None => {
                let c = Compiled::new(net, &chip, F32, core_of)?;
                c.check_capacity(&chip)?;
                Engine::F32(c)
            }
            Some(fx) => {
                let c = Compiled::new(net, &chip, fx, core_of)?;
                c.check_capacity(&chip)?;
                Engine::Fixed(c)
            }
        };
        Ok(Self {
            chip,
            engine,
            n_inputs: net.n_inputs(),
            output_size: net.output_range().len(),
            pools: Arc::default(),
            plans: Arc::default(),
        })
    }

    /// The chip.
    #[must_use]
    pub fn chip(&self) -> &ChipConfig {
        &self.chip
    }

    /// Core of every neuron.
    #[must_use]
    pub fn core_of(&self) -> &[u32] {
        match &self.engine {
            Engine::F32(c) => &c.core_of,
            Engine::Fixed(c) => &c.core_of,
        }
    }

    /// Resource use per core.
    #[must_use]
    pub fn usage(&self) -> CoreUsage {
        match &self.engine {
            Engine::F32(c) => c.usage(),
            Engine::Fixed(c) => c.usage(),
        }
    }

    /// Stored (non-zero) synapses.
    #[must_use]
    pub fn n_synapses(&self) -> usize {
        match &self.engine {
            Engine::F32(c) => c.n_synapses(),
            Engine::Fixed(c) => c.n_synapses(),
        }
    }

    /// Bytes the placed network holds (the compiled form: per-neuron state, the synapses and
    /// their per-core segments; and the lane plans of one-sample runs on several threads,
    /// where each source's row crosses between lanes).
    #[must_use]
    pub fn nbytes(&self) -> usize {
        let plans: usize = (self.plans.lock().unwrap_or_else(PoisonError::into_inner))
            .iter()
            .map(|(_, p)| p.nbytes())
            .sum();
        plans
            + match &self.engine {
                Engine::F32(c) => c.nbytes(),
                Engine::Fixed(c) => c.nbytes(),
            }
    }

    /// Weights clipped when quantizing to the chip's fixed point (0 in `f32`).
    #[must_use]
    pub fn clipped_weights(&self) -> u64 {
        match &self.engine {
            Engine::F32(c) => c.clipped_weights,
            Engine::Fixed(c) => c.clipped_weights,
        }
    }

    /// Number of input channels.
    #[must_use]
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// Number of output neurons.
    #[must_use]
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// Run a batch. Samples run in parallel; results do not depend on the thread count.
    /// `labels[i]` (the correct output neuron of sample `i`) enables the first-correct latency.
    pub fn run(
        &self,
        inputs: &[SampleInput],
        labels: Option<&[u32]>,
        opts: &RunOptions,
    ) -> Result<Vec<SampleResult>> {
        self.run_until(inputs, labels, opts, &AtomicBool::new(false))
    }

    /// [`Emulator::run`] that ends with [`Error::Interrupted`] soon after `stop` is set (every
    /// sample looks at it once per forward step, or every few thousand events).
    pub fn run_until(
        &self,
        inputs: &[SampleInput],
        labels: Option<&[u32]>,
        opts: &RunOptions,
        stop: &AtomicBool,
    ) -> Result<Vec<SampleResult>> {
        opts.validate()?;
        for (i, x) in inputs.iter().enumerate() {
            if x.n_channels != self.n_inputs {
                return Err(Error::input(
                    "inputs",
                    format!(
                        "sample {i} has {} channels; the network has {} inputs",
                        x.n_channels, self.n_inputs
                    ),
                ));
            }
        }
        if let Some(l) = labels {
            if l.len() != inputs.len() {
                return Err(Error::input(
                    "labels",
                    format!("{} labels for {} samples", l.len(), inputs.len()),
                ));
            }
            if let Some((i, &y)) = l
                .iter()
                .enumerate()
                .find(|(_, &y)| y as usize >= self.output_size)
            {
                return Err(Error::input(
                    "labels",
                    format!(
                        "label {y} of sample {i} is outside 0..{} (output neurons)",
                        self.output_size
                    ),
                ));
            }
        }
        let job = || -> Result<Vec<SampleResult>> {
            // Threads the batch leaves over go to each sample's lanes (one large sample uses
            // them all); the results are the same for any number. Four lanes a thread: a
            // layered network's activity is in one layer at a time, and each layer's cores
            // then still spread over the threads.
            let spare = rayon::current_num_threads() / inputs.len().max(1);
            let lanes = if spare > 1
                && opts.mode == Mode::Steps
                && self.n_synapses() >= LANE_MIN_SYNAPSES
            {
                LANES_PER_THREAD * spare
            } else {
                1
            };
            let plan = self.lane_plan(lanes)?;
            inputs
                .par_iter()
                .enumerate()
                .map(|(i, x)| {
                    if stop.load(Ordering::Relaxed) {
                        return Err(Error::Interrupted);
                    }
                    let label = labels.map(|l| l[i]);
                    let sample = opts.sample_offset.wrapping_add(i as u64);
                    match &self.engine {
                        Engine::F32(c) => self.run_one(c, x, label, sample, opts, stop, &plan),
                        Engine::Fixed(c) => self.run_one(c, x, label, sample, opts, stop, &plan),
                    }
                })
                .collect()
        };
        match opts.threads {
            None => job(),
            Some(t) => self.pool(t)?.install(job),
        }
    }

    /// The lane plan for `lanes` lanes, built at its first use and kept with the emulator (the
    /// [`KEPT_POOLS`] most recently used).
    fn lane_plan(&self, lanes: usize) -> Result<Arc<LanePlan>> {
        kept(&self.plans, lanes, || match &self.engine {
            Engine::F32(c) => LanePlan::new(c, lanes),
            Engine::Fixed(c) => LanePlan::new(c, lanes),
        })
    }

    /// The pool of `t` threads, built at its first use and kept with the emulator.
    fn pool(&self, t: usize) -> Result<Arc<rayon::ThreadPool>> {
        kept_pool(&self.pools, t)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_one<A: Arith>(
        &self,
        net: &Compiled<A>,
        x: &SampleInput,
        label: Option<u32>,
        sample: u64,
        opts: &RunOptions,
        stop: &AtomicBool,
        plan: &LanePlan,
    ) -> Result<SampleResult> {
        match opts.mode {
            Mode::Steps => steps::run_sample(net, &self.chip, x, label, sample, opts, stop, plan),
            Mode::Events => {
                let mut r = events::run_sample(net, &self.chip, x, label, sample, opts, stop)?;
                r.metrics.set_tick_ns(self.chip.tick_ns);
                Ok(r)
            }
        }
    }
}
