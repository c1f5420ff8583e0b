//! The one error type of the emulator. Every failure that a caller can cause (a bad config,
//! a bad network, bad input, a mapping that does not fit) is a value of [`Error`], never a panic.

use std::fmt;

/// One core that a mapping over-fills, with the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreViolation {
    /// Core index (row-major on the mesh: `core = y * width + x`).
    pub core: usize,
    /// Which capacity is exceeded: `neurons`, `synapses`, `fan_in` or `fan_out`.
    pub resource: &'static str,
    /// How much the mapping needs on this core.
    pub needed: u64,
    /// How much the core has.
    pub capacity: u64,
}

impl fmt::Display for CoreViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "core {}: {} needed {} > capacity {}",
            self.core, self.resource, self.needed, self.capacity
        )
    }
}

/// Everything that can go wrong, grouped by who has to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A chip description field is missing, out of range or inconsistent.
    #[error("invalid chip config: {field}: {message}")]
    Config { field: String, message: String },
    /// A network description (population, projection, weight) is invalid.
    #[error("invalid network: {field}: {message}")]
    Network { field: String, message: String },
    /// A run input (frames, events, options) is invalid.
    #[error("invalid input: {field}: {message}")]
    Input { field: String, message: String },
    /// The mapping of neurons to cores does not fit the chip; every violation is listed.
    #[error(
        "mapping does not fit the chip: {}",
        format_mapping(message, violations)
    )]
    Mapping {
        violations: Vec<CoreViolation>,
        message: String,
    },
    /// Activity that does not stop by itself (a frame ran past the safety limit of steps).
    #[error("runaway activity: {message}")]
    Runaway { message: String },
    /// A buffer the request needs could not be allocated (`bytes`: what was asked for).
    #[error("out of memory: {what} needs {} more", human_bytes(*bytes))]
    Memory { what: String, bytes: u64 },
    /// The caller asked the run to stop (its stop flag was set); nothing is returned.
    #[error("interrupted")]
    Interrupted,
}

fn human_bytes(b: u64) -> String {
    // display only
    #[allow(clippy::cast_precision_loss)]
    let x = b as f64;
    if b >= 1 << 30 {
        format!("{:.1} GB ({b} bytes)", x / 1e9)
    } else {
        format!("{b} bytes")
    }
}

fn format_mapping(message: &str, v: &[CoreViolation]) -> String {
    if v.is_empty() {
        return message.to_string();
    }
    let list = v
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    format!("{message}: {list}")
}

impl Error {
    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            message: message.into(),
        }
    }
    pub(crate) fn network(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Network {
            field: field.into(),
            message: message.into(),
        }
    }
    pub(crate) fn input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Input {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;
