//! Options of one run: the one home of the run contract on the Rust side (names of modes,
//! schedulers and input modes, the runaway limit, the checks of every option).

use crate::error::{Error, Result};
use crate::scheduler::Scheduler;

/// A closed set of named choices of a run option: one list of names, one parser, one error
/// message (`"lifo"; allowed: fifo, random, momentum, layered`).
pub trait Choice: Copy + Sized + 'static {
    /// The option's name in error messages.
    const FIELD: &'static str;
    /// Every choice, in documentation order.
    const ALL: &'static [Self];

    /// The name [`Choice::parse`] accepts.
    fn name(self) -> &'static str;

    /// Every name, in the order of [`Choice::ALL`].
    #[must_use]
    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|c| c.name()).collect()
    }

    /// The choice called `s`, or an input error listing the allowed names.
    fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                Error::input(
                    Self::FIELD,
                    format!("{s:?}; allowed: {}", Self::names().join(", ")),
                )
            })
    }
}

/// Timing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The reference model: forward step by forward step, no latencies.
    Steps,
    /// Integer-tick discrete-event simulation with routing, service times and buffers.
    Events,
}

impl Choice for Mode {
    const FIELD: &'static str = "mode";
    const ALL: &'static [Self] = &[Self::Steps, Self::Events];

    fn name(self) -> &'static str {
        match self {
            Self::Steps => "steps",
            Self::Events => "events",
        }
    }
}

/// How input events enter the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// Step 0 of each frame releases every pending input channel, whatever `F`.
    AllAtOnce,
    /// Input channels queue at the input port, their own arbitration group with the same `F`.
    Scheduled,
}

impl Choice for InputMode {
    const FIELD: &'static str = "input_mode";
    const ALL: &'static [Self] = &[Self::AllAtOnce, Self::Scheduled];

    fn name(self) -> &'static str {
        match self {
            Self::AllAtOnce => "all_at_once",
            Self::Scheduled => "scheduled",
        }
    }
}

/// The default safety limit on forward steps (or release rounds of one group) in one frame
/// when no cap is set: activity past it is reported as [`Error::Runaway`] instead of hanging.
/// The PyTorch simulator uses the same default (`RunOptions.runaway_steps` in Python). 65 536
/// steps is 64 spikes per neuron and frame of a full 1 024-neuron core at `F = 1`; it keeps a
/// runaway's cost bounded where every step is expensive (PyTorch's autograd engine records
/// every step: at 2^20 steps a two-neuron runaway took more than 15 GB before it stopped).
/// A run whose frames legitimately take longer raises it with `runaway_steps`.
pub const RUNAWAY_STEPS: u64 = 1 << 16;

/// Everything that parameterises a run besides the network, chip and inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    pub mode: Mode,
    pub scheduler: Scheduler,
    /// Releases per core per step; `None` = unlimited.
    pub f: Option<usize>,
    pub seed: u64,
    /// Added to a sample's batch index to form the hash's `sample`.
    pub sample_offset: u64,
    pub input_mode: InputMode,
    /// Cap on forward steps per frame (`events`: release rounds per group per frame); what is
    /// still pending carries over to the next frame.
    pub max_steps: Option<u64>,
    /// Forward steps (`events`: release rounds per group) of one frame after which activity
    /// that has not settled is an error, when `max_steps` sets no cap.
    pub runaway_steps: u64,
    /// Record the full spike trace.
    pub trace: bool,
    /// Worker threads; `None` = all cores.
    pub threads: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Steps,
            scheduler: Scheduler::Fifo,
            f: None,
            seed: 0,
            sample_offset: 0,
            input_mode: InputMode::AllAtOnce,
            max_steps: None,
            runaway_steps: RUNAWAY_STEPS,
            trace: false,
            threads: None,
        }
    }
}

impl RunOptions {
    /// Check the option values.
    pub fn validate(&self) -> Result<()> {
        if self.f == Some(0) {
            return Err(Error::input(
                "F",
                "0 is outside 1.. (or None for unlimited)",
            ));
        }
        if self.max_steps == Some(0) {
            return Err(Error::input(
                "max_steps",
                "0 is outside 1.. (or None for no cap)",
            ));
        }
        if self.runaway_steps == 0 {
            return Err(Error::input("runaway_steps", "0 is outside 1.."));
        }
        if let Some(m) = self.max_steps {
            // a cap above the runaway limit would let a self-exciting frame run unbounded
            if m > self.runaway_steps {
                return Err(Error::input(
                    "max_steps",
                    format!(
                        "{m} is above runaway_steps = {}; raise runaway_steps explicitly for a larger cap",
                        self.runaway_steps
                    ),
                ));
            }
        }
        if let Some(t) = self.threads {
            if t == 0 || t > 1024 {
                return Err(Error::input(
                    "threads",
                    format!("{t} is outside 1..=1024 (or None for all cores)"),
                ));
            }
        }
        Ok(())
    }

    /// `F` as a number (unlimited = `usize::MAX`).
    #[must_use]
    pub fn f_limit(&self) -> usize {
        self.f.unwrap_or(usize::MAX)
    }

    /// The per-frame step limit and whether hitting it is an error (no user cap).
    #[must_use]
    pub fn step_limit(&self) -> (u64, bool) {
        match self.max_steps {
            Some(c) => (c, false),
            None => (self.runaway_steps, true),
        }
    }
}
