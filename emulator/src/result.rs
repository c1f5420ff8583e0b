//! What a run returns per sample.

use serde::Serialize;

/// When the first (or first correct) output spike happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Frame of the spike.
    pub frame: u32,
    /// Forward step inside the frame (`steps` mode) or tick offset from the frame start
    /// (`events` mode).
    pub step: u64,
    /// Forward steps counted over all frames up to and including this one, minus one (the
    /// index of the step; `steps` mode), or release ticks likewise (`events` mode).
    pub global_step: u64,
    /// Absolute tick (`events` mode); equal to `global_step` in `steps` mode.
    pub tick: u64,
    /// Spikes emitted in steps strictly before this one.
    pub spikes_before: u64,
    /// `tick` in nanoseconds (`events` mode; `None` in `steps` mode, which has no time).
    pub ns: Option<f64>,
}

/// Energy split in picojoules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Energy {
    pub synaptic_pj: f64,
    pub neuron_pj: f64,
    pub routing_pj: f64,
    pub static_pj: f64,
}

impl Energy {
    #[must_use]
    pub fn total_pj(&self) -> f64 {
        self.synaptic_pj + self.neuron_pj + self.routing_pj + self.static_pj
    }
}

/// Counters of one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Spikes emitted by all neurons.
    pub spikes: u64,
    /// `(neuron, frame)` pairs in which the neuron spiked at least once: the non-zero
    /// activations of NeuroBench's activation sparsity, with frames as its time steps.
    pub active_neuron_frames: u64,
    /// Effective synaptic operations: released `(source, target)` pairs with a non-zero weight.
    pub synaptic_operations: u64,
    /// Neuron-state updates: one per neuron per frame (leak) plus one per neuron and step in
    /// which it received input.
    pub membrane_updates: u64,
    /// Packets created (one per spike and destination core, input spikes included).
    pub packets: u64,
    /// Packets that reached their core and were processed.
    pub packets_delivered: u64,
    /// Link traversals.
    pub hops: u64,
    /// Ticks packets spent waiting for a link (`events` mode).
    pub stall_ticks: u64,
    /// Packets that waited at least one tick for a link (`events` mode).
    pub stalled_packets: u64,
    /// Packets dropped at a full link buffer (`events` mode).
    pub dropped_link: u64,
    /// Packets dropped at a full core input buffer (`events` mode).
    pub dropped_buffer: u64,
    /// Forward steps over all frames (`events` mode: ticks in which some group released).
    pub steps: u64,
    /// Pending count left when the last frame ended (only with a step cap).
    pub unreleased: u64,
    /// Duration in ticks (`events` mode; 0 in `steps` mode).
    pub ticks: u64,
    /// Duration in nanoseconds (`events` mode; `None` in `steps` mode).
    pub time_ns: Option<f64>,
    /// First output spike, if any.
    pub first_out: Option<Latency>,
    /// First output spike of the labelled class, if a label was given and it fired.
    pub first_correct: Option<Latency>,
    pub energy: Energy,
}

impl Metrics {
    /// NeuroBench's activation sparsity: the share of `(neuron, frame)` pairs without a
    /// spike (`None` for a network or a run without any).
    #[must_use]
    pub fn activation_sparsity(&self, n_neurons: usize, n_frames: usize) -> Option<f64> {
        let pairs = n_neurons.checked_mul(n_frames).filter(|&p| p > 0)?;
        #[allow(clippy::cast_precision_loss)]
        Some(1.0 - self.active_neuron_frames as f64 / pairs as f64)
    }

    /// Give the run's ticks their length in nanoseconds (`events` mode).
    pub(crate) fn set_tick_ns(&mut self, tick_ns: f64) {
        #[allow(clippy::cast_precision_loss)]
        let ns = |ticks: u64| ticks as f64 * tick_ns;
        self.time_ns = Some(ns(self.ticks));
        for lat in [&mut self.first_out, &mut self.first_correct]
            .into_iter()
            .flatten()
        {
            lat.ns = Some(ns(lat.tick));
        }
    }
}

/// One row of the spike trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TraceRow {
    pub frame: u32,
    /// Step in frame (`steps`) or tick offset in frame (`events`).
    pub step: u64,
    /// Global step (`steps`) or absolute tick (`events`).
    pub time: u64,
    pub neuron: u32,
}

/// One release of a pending source by its arbitration group (recorded with the trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReleaseRow {
    pub frame: u32,
    /// Step in frame (`steps`) or tick offset in frame (`events`).
    pub step: u64,
    /// Global step (`steps`) or absolute tick (`events`).
    pub time: u64,
    /// Arbitration group: the core, or `n_cores` for the input port.
    pub group: u32,
    /// Source released (input channel `c` as `c`, neuron `n` as `n_inputs + n`).
    pub source: u32,
    /// Pending count delivered by this release.
    pub count: u32,
}

/// Everything a run reports for one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleResult {
    /// Output spike counts, `frames x output_size`, row-major.
    pub out_counts: Vec<u32>,
    /// Potential of every output neuron at the end of every frame (network units),
    /// `frames x output_size`, row-major: the readout of a non-firing (integrator) output.
    pub out_potential: Vec<f64>,
    /// Per output neuron: global step (`steps`) or tick (`events`) of its first spike, or -1.
    pub first_spike: Vec<i64>,
    /// Full spike trace in firing order (empty unless requested).
    pub trace: Vec<TraceRow>,
    /// Every release, in release order (empty unless the trace is requested).
    pub releases: Vec<ReleaseRow>,
    /// Potential of every neuron after the last frame (network units).
    pub v_final: Vec<f64>,
    pub metrics: Metrics,
    /// Spikes emitted by neurons of each core.
    pub core_spikes: Vec<u64>,
    /// Synaptic operations performed by each core.
    pub core_synops: Vec<u64>,
    /// Ticks each core was busy (leak, synaptic processing, release rounds; `events` mode).
    pub core_busy_ticks: Vec<u64>,
}
