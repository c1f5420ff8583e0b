//! Options of one run.

use crate::error::{Error, Result};
use crate::scheduler::Scheduler;

/// Timing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The reference model: forward step by forward step, no latencies.
    Steps,
    /// Integer-tick discrete-event simulation with routing, service times and buffers.
    Events,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "steps" => Ok(Self::Steps),
            "events" => Ok(Self::Events),
            other => Err(Error::input(
                "mode",
                format!("{other:?}; allowed: steps, events"),
            )),
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

impl InputMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "all_at_once" => Ok(Self::AllAtOnce),
            "scheduled" => Ok(Self::Scheduled),
            other => Err(Error::input(
                "input_mode",
                format!("{other:?}; allowed: all_at_once, scheduled"),
            )),
        }
    }
}

/// Safety limit on forward steps (or release rounds of one group) in one frame when no cap
/// is set; activity past it is reported as [`Error::Runaway`] instead of hanging.
pub const RUNAWAY_STEPS: u64 = 1 << 22;

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
            None => (RUNAWAY_STEPS, true),
        }
    }
}
