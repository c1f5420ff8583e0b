//! Network description: populations of LIF neurons and weighted projections between them.
//!
//! Neurons are numbered `0..n_neurons` in population order; sources are numbered input
//! channels first (`0..n_inputs`), then neuron `n` as `n_inputs + n`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest number of neurons (and of input channels) accepted: the state of one sample stays
/// below a few hundred MB.
pub const MAX_ITEMS: usize = 1 << 24;

/// Largest number of synapses accepted.
pub const MAX_SYNAPSES: usize = 1 << 30;

/// What happens to the potential when a neuron fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reset {
    /// `v <- 0`.
    Zero,
    /// `v <- v - theta`.
    Subtract,
}

impl Reset {
    /// Parse `"zero"` / `"subtract"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "zero" => Ok(Self::Zero),
            "subtract" => Ok(Self::Subtract),
            other => Err(Error::network(
                "reset",
                format!("{other:?}; allowed: zero, subtract"),
            )),
        }
    }
}

/// The dynamics of a population's neurons.
///
/// * `Lif`: the LIF neuron of the execution model (input goes to the potential, the neuron fires
///   in the fire phase of any step in which `v > theta`).
/// * `Stochastic`: a stochastic neuron with a synaptic trace (the deployed form of an SPSN
///   neuron). Input goes to a current `i`; per frame `i <- alpha i` at the leak, then input
///   adds to `i` step by step. Once per frame, when the frame has settled (nothing pending), the
///   population *draws*: `v <- beta v + i` and the neuron fires with probability
///   `sigmoid(v - theta)`, decided by the counter-based hash (see [`crate::stochastic`]). No
///   reset: `v` keeps its value. Populations draw one at a time in ascending population index,
///   each after the spikes of the previous draw have been delivered and the frame has settled
///   again. `reset` and `refractory` do not apply.
/// * `Integrator`: the same trace and membrane, updated at its population's turn, but it never
///   fires (a non-firing readout: its potential after every frame is reported).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum NeuronKind {
    /// Leaky integrate-and-fire.
    #[default]
    Lif,
    /// Stochastic neuron with synaptic decay `alpha` in `[0, 1]`.
    Stochastic { alpha: f32 },
    /// Non-firing leaky integrator with synaptic decay `alpha` in `[0, 1]`.
    Integrator { alpha: f32 },
}

impl NeuronKind {
    /// Parse `"lif"`, `"stochastic"` or `"integrator"` (the latter two with their `alpha`).
    pub fn parse(s: &str, alpha: f32) -> Result<Self> {
        match s {
            "lif" => Ok(Self::Lif),
            "stochastic" => Ok(Self::Stochastic { alpha }),
            "integrator" => Ok(Self::Integrator { alpha }),
            other => Err(Error::network(
                "kind",
                format!("{other:?}; allowed: lif, stochastic, integrator"),
            )),
        }
    }

    /// Synaptic decay of a trace neuron (`None` for LIF).
    #[must_use]
    pub fn alpha(self) -> Option<f32> {
        match self {
            Self::Lif => None,
            Self::Stochastic { alpha } | Self::Integrator { alpha } => Some(alpha),
        }
    }
}

/// A group of neurons sharing parameters (a "layer").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Population {
    /// Number of neurons.
    pub size: usize,
    /// Firing threshold (`v > theta` fires), `theta > 0`.
    pub theta: f32,
    /// Leak factor applied once per frame, in `[0, 1]`.
    pub beta: f32,
    /// Reset mode.
    pub reset: Reset,
    /// A neuron that fired ignores input and cannot fire again until the next frame.
    pub refractory: bool,
    /// Neuron dynamics (LIF unless stated).
    #[serde(default)]
    pub kind: NeuronKind,
}

impl Population {
    /// A population of LIF neurons.
    #[must_use]
    pub fn lif(size: usize, theta: f32, beta: f32, reset: Reset, refractory: bool) -> Self {
        Self {
            size,
            theta,
            beta,
            reset,
            refractory,
            kind: NeuronKind::Lif,
        }
    }
}

/// Where a projection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The input channels.
    Input,
    /// A population, by index.
    Population(usize),
}

/// Weights of a projection, indexed `[target][source]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// Row-major `rows x cols` matrix: `rows` = target size, `cols` = source size.
    Dense {
        rows: usize,
        cols: usize,
        data: Vec<f32>,
    },
    /// Coordinate list `(target, source, weight)`; duplicates add up.
    Sparse {
        rows: usize,
        cols: usize,
        entries: Vec<(u32, u32, f32)>,
    },
}

impl Weights {
    /// `(rows, cols)`.
    #[must_use]
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Self::Dense { rows, cols, .. } | Self::Sparse { rows, cols, .. } => (*rows, *cols),
        }
    }

    /// Visit every stored `(target, source, weight)`.
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, f32)) {
        match self {
            Self::Dense { cols, data, .. } => {
                for (i, &w) in data.iter().enumerate() {
                    f(i / cols, i % cols, w);
                }
            }
            Self::Sparse { entries, .. } => {
                for &(t, s, w) in entries {
                    f(t as usize, s as usize, w);
                }
            }
        }
    }
}

/// A weighted connection from a source (inputs or population) to a target population.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub source: Source,
    pub target: usize,
    pub weights: Weights,
}

/// A validated network.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    n_inputs: usize,
    populations: Vec<Population>,
    projections: Vec<Projection>,
    output: usize,
    starts: Vec<usize>,
}

impl Network {
    /// Build and validate a network; the error names the offending field.
    pub fn new(
        n_inputs: usize,
        populations: Vec<Population>,
        projections: Vec<Projection>,
        output: usize,
    ) -> Result<Self> {
        if n_inputs == 0 || n_inputs > MAX_ITEMS {
            return Err(Error::network(
                "n_inputs",
                format!("{n_inputs} is outside 1..={MAX_ITEMS}"),
            ));
        }
        if populations.is_empty() {
            return Err(Error::network(
                "populations",
                "at least one population is required",
            ));
        }
        let mut starts = Vec::with_capacity(populations.len());
        let mut total = 0usize;
        for (i, p) in populations.iter().enumerate() {
            if p.size == 0 || p.size > MAX_ITEMS {
                return Err(Error::network(
                    format!("populations[{i}].size"),
                    format!("{} is outside 1..={MAX_ITEMS}", p.size),
                ));
            }
            if !(p.theta.is_finite() && p.theta > 0.0) {
                return Err(Error::network(
                    format!("populations[{i}].theta"),
                    format!("{} is outside (0, inf) (finite)", p.theta),
                ));
            }
            if !(0.0..=1.0).contains(&p.beta) {
                return Err(Error::network(
                    format!("populations[{i}].beta"),
                    format!("{} is outside [0, 1]", p.beta),
                ));
            }
            if let Some(alpha) = p.kind.alpha() {
                if !(0.0..=1.0).contains(&alpha) {
                    return Err(Error::network(
                        format!("populations[{i}].alpha"),
                        format!("{alpha} is outside [0, 1]"),
                    ));
                }
            }
            starts.push(total);
            total += p.size;
            if total > MAX_ITEMS {
                return Err(Error::network(
                    "populations",
                    format!("more than {MAX_ITEMS} neurons in total"),
                ));
            }
        }
        if output >= populations.len() {
            return Err(Error::network(
                "output",
                format!(
                    "{output} is outside 0..{} (population index)",
                    populations.len()
                ),
            ));
        }
        let mut synapses = 0usize;
        for (j, pr) in projections.iter().enumerate() {
            let field = |f: &str| format!("projections[{j}].{f}");
            if pr.target >= populations.len() {
                return Err(Error::network(
                    field("target"),
                    format!(
                        "{} is outside 0..{} (population index)",
                        pr.target,
                        populations.len()
                    ),
                ));
            }
            let src_size = match pr.source {
                Source::Input => n_inputs,
                Source::Population(s) => {
                    if s >= populations.len() {
                        return Err(Error::network(
                            field("source"),
                            format!("{s} is outside 0..{} (population index)", populations.len()),
                        ));
                    }
                    populations[s].size
                }
            };
            let tgt_size = populations[pr.target].size;
            let (rows, cols) = pr.weights.shape();
            if rows != tgt_size || cols != src_size {
                return Err(Error::network(
                    field("weights"),
                    format!("shape ({rows}, {cols}) must be (target size, source size) = ({tgt_size}, {src_size})"),
                ));
            }
            match &pr.weights {
                Weights::Dense { data, .. } => {
                    if data.len() != rows * cols {
                        return Err(Error::network(
                            field("weights"),
                            format!("{} values for a ({rows}, {cols}) matrix", data.len()),
                        ));
                    }
                    if let Some(i) = data.iter().position(|w| !w.is_finite()) {
                        return Err(Error::network(
                            field("weights"),
                            format!(
                                "non-finite weight {} at [{}, {}]",
                                data[i],
                                i / cols,
                                i % cols
                            ),
                        ));
                    }
                    synapses += data.len();
                }
                Weights::Sparse { entries, .. } => {
                    for &(t, s, w) in entries {
                        if t as usize >= rows || s as usize >= cols {
                            return Err(Error::network(
                                field("weights"),
                                format!("index ({t}, {s}) is outside the ({rows}, {cols}) matrix"),
                            ));
                        }
                        if !w.is_finite() {
                            return Err(Error::network(
                                field("weights"),
                                format!("non-finite weight {w} at [{t}, {s}]"),
                            ));
                        }
                    }
                    synapses += entries.len();
                }
            }
            if synapses > MAX_SYNAPSES {
                return Err(Error::network(
                    "projections",
                    format!("more than {MAX_SYNAPSES} synapses"),
                ));
            }
        }
        Ok(Self {
            n_inputs,
            populations,
            projections,
            output,
            starts,
        })
    }

    #[must_use]
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }
    #[must_use]
    pub fn populations(&self) -> &[Population] {
        &self.populations
    }
    #[must_use]
    pub fn projections(&self) -> &[Projection] {
        &self.projections
    }
    /// Index of the output population.
    #[must_use]
    pub fn output(&self) -> usize {
        self.output
    }
    /// First neuron index of each population.
    #[must_use]
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }
    /// Total number of neurons.
    #[must_use]
    pub fn n_neurons(&self) -> usize {
        self.starts.last().copied().unwrap_or(0) + self.populations.last().map_or(0, |p| p.size)
    }
    /// Neuron range of the output population.
    #[must_use]
    pub fn output_range(&self) -> std::ops::Range<usize> {
        let s = self.starts[self.output];
        s..s + self.populations[self.output].size
    }
    /// Population index of every neuron.
    pub fn population_of(&self) -> Result<Vec<u32>> {
        let mut out = crate::mem::with_capacity(self.n_neurons(), "population of every neuron")?;
        for (i, p) in self.populations.iter().enumerate() {
            // population count <= MAX_ITEMS < 2^32
            #[allow(clippy::cast_possible_truncation)]
            out.extend(std::iter::repeat_n(i as u32, p.size));
        }
        Ok(out)
    }
}
