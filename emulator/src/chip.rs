//! The chip description: mesh, per-core capacities, timing and energy costs, arithmetic.
//!
//! A [`ChipConfig`] is read from TOML (see `presets/`), from JSON, or built in code. All times
//! are integer ticks of `tick_ns` nanoseconds; all energies are picojoules.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Numeric format of weights and membrane potentials.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arithmetic {
    /// IEEE single precision, as the PyTorch simulator computes.
    F32,
    /// Signed fixed point with saturation, as a digital chip computes.
    ///
    /// A weight `w` is stored as `round(w * 2^frac_bits)` in `weight_bits` signed bits
    /// (saturating); thresholds use the same scale; potentials are `potential_bits` signed bits
    /// and saturate; the leak `beta` is stored as `round(beta * 2^leak_bits)` and applied as
    /// `v <- (v * beta_q) >> leak_bits` (arithmetic shift, i.e. rounding toward minus infinity).
    Fixed {
        weight_bits: u32,
        potential_bits: u32,
        frac_bits: u32,
        leak_bits: u32,
    },
}

/// What a full buffer does to a packet that wants in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Lossless flow control, as on Loihi and most neuromorphic meshes: a packet enters a
    /// buffer only when a slot is free, so a full buffer stalls the sender (which keeps the
    /// packet, and its own buffer slot, until then). Nothing is lost; the stall costs time.
    #[default]
    Backpressure,
    /// A packet in transit that finds its next buffer full is dropped and counted (chips with
    /// best-effort routing, such as SpiNNaker, drop). A core's own packets still wait in its
    /// injection queue.
    Drop,
}

/// When a core updates (integrates and thresholds) the neurons its packets fed, in `events` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeuronUpdate {
    /// Once the core has worked through the packets it has (its input buffer is empty and no
    /// packet is in progress): one update per neuron per burst of input, as a chip updates its
    /// neurons once per time step.
    #[default]
    WhenIdle,
    /// At the end of every tick in which a packet was delivered: an idealised asynchronous core
    /// that updates a neuron as each input lands (many more updates under load).
    OnArrival,
}

/// Per-core capacities. A mapping that exceeds one is rejected before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreCapacity {
    /// Neurons (compartments) per core.
    pub neurons: u64,
    /// Synapse memory: stored non-zero weights whose target is on the core.
    pub synapses: u64,
    /// Input axons: distinct sources (input channels or neurons) with a synapse into the core.
    pub fan_in: u64,
    /// Output axons: `(neuron on this core, destination core)` pairs.
    pub fan_out: u64,
}

/// Full chip description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChipConfig {
    /// Free-form name, reported with results.
    #[serde(default = "default_name")]
    pub name: String,
    /// Mesh width (cores along x).
    pub mesh_width: u32,
    /// Mesh height (cores along y).
    pub mesh_height: u32,
    /// Length of one tick in nanoseconds.
    pub tick_ns: f64,
    /// Capacity of every core.
    pub core: CoreCapacity,
    /// Router position `[x, y]` where input spikes enter the mesh.
    #[serde(default)]
    pub input_port: [u32; 2],
    /// Ticks for one packet to cross one link between neighbouring routers.
    pub hop_latency_ticks: u64,
    /// Energy of one packet crossing one link (pJ).
    pub hop_energy_pj: f64,
    /// Energy of creating one packet at its source core (pJ).
    pub packet_energy_pj: f64,
    /// Packets a link accepts per tick; absent = unlimited bandwidth.
    #[serde(default)]
    pub link_packets_per_tick: Option<u32>,
    /// Packets that may wait for one link; absent = unbounded. What a full buffer does is
    /// `overflow`'s choice (a core's own packets always wait in its injection queue).
    #[serde(default)]
    pub link_buffer_depth: Option<u32>,
    /// Packets that may wait at one core's input; absent = unbounded.
    #[serde(default)]
    pub input_buffer_depth: Option<u32>,
    /// A full link or input buffer: `backpressure` (the default; the sender stalls) or `drop`
    /// (the packet is lost and counted).
    #[serde(default)]
    pub overflow: Overflow,
    /// When a core updates the neurons it fed (`events` mode): `when_idle` (the default) or
    /// `on_arrival`.
    #[serde(default)]
    pub neuron_update: NeuronUpdate,
    /// Service time of one synaptic operation in a core (ticks).
    pub syn_op_ticks: u64,
    /// Energy of one synaptic operation (pJ).
    pub syn_op_energy_pj: f64,
    /// Time to update one neuron's state (the per-frame leak of each neuron on a core, ticks).
    pub neuron_update_ticks: u64,
    /// Energy of one neuron-state update (pJ).
    pub neuron_update_energy_pj: f64,
    /// Duration of one release round of a core's spike scheduler (ticks, at least 1).
    #[serde(default = "one")]
    pub release_ticks: u64,
    /// Idle ticks between the end of a frame's activity and the next frame (barrier sync).
    #[serde(default)]
    pub barrier_ticks: u64,
    /// Static power of the whole chip (mW); mW x ns = pJ.
    pub static_power_mw: f64,
    /// Numeric format.
    #[serde(default = "default_arith")]
    pub arithmetic: Arithmetic,
}

fn default_name() -> String {
    String::from("custom")
}
fn one() -> u64 {
    1
}
fn default_arith() -> Arithmetic {
    Arithmetic::F32
}

/// Names of the built-in presets.
pub const PRESETS: [&str; 3] = ["loihi", "edge", "ideal"];

const LOIHI_TOML: &str = include_str!("../presets/loihi.toml");
const EDGE_TOML: &str = include_str!("../presets/edge.toml");
const IDEAL_TOML: &str = include_str!("../presets/ideal.toml");

/// Largest mesh side accepted; keeps per-run allocations bounded.
pub const MAX_MESH_SIDE: u32 = 256;

impl ChipConfig {
    /// A built-in preset by name (`loihi`, `edge`, `ideal`).
    pub fn preset(name: &str) -> Result<Self> {
        let text = match name {
            "loihi" => LOIHI_TOML,
            "edge" => EDGE_TOML,
            "ideal" => IDEAL_TOML,
            other => {
                return Err(Error::config(
                    "preset",
                    format!("unknown preset {other:?}; allowed: {}", PRESETS.join(", ")),
                ))
            }
        };
        Self::from_toml(text)
    }

    /// Parse and validate a TOML description.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| Error::config("toml", e.to_string().trim().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parse and validate a JSON description (the Python keyword form travels as JSON).
    pub fn from_json(text: &str) -> Result<Self> {
        // The error names the field whose value does not fit (`core.neurons`, `mesh_width`).
        let mut de = serde_json::Deserializer::from_str(text);
        let cfg: Self = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path.is_empty() || path == "." {
                "json".to_string()
            } else {
                path
            };
            Error::config(field, e.into_inner().to_string())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialize to TOML (round-trips through [`ChipConfig::from_toml`]).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::config("toml", e.to_string()))
    }

    /// Serialize to JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::config("json", e.to_string()))
    }

    /// Check every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let side = |field: &str, v: u32| {
            if v == 0 || v > MAX_MESH_SIDE {
                Err(Error::config(
                    field,
                    format!("{v} is outside 1..={MAX_MESH_SIDE}"),
                ))
            } else {
                Ok(())
            }
        };
        side("mesh_width", self.mesh_width)?;
        side("mesh_height", self.mesh_height)?;
        finite_nonneg("tick_ns", self.tick_ns)?;
        if self.tick_ns <= 0.0 {
            return Err(Error::config("tick_ns", "must be > 0"));
        }
        for (field, v) in [
            ("hop_energy_pj", self.hop_energy_pj),
            ("packet_energy_pj", self.packet_energy_pj),
            ("syn_op_energy_pj", self.syn_op_energy_pj),
            ("neuron_update_energy_pj", self.neuron_update_energy_pj),
            ("static_power_mw", self.static_power_mw),
        ] {
            finite_nonneg(field, v)?;
        }
        for (field, v) in [
            ("core.neurons", self.core.neurons),
            ("core.synapses", self.core.synapses),
            ("core.fan_in", self.core.fan_in),
            ("core.fan_out", self.core.fan_out),
        ] {
            if v == 0 {
                return Err(Error::config(field, "must be >= 1"));
            }
        }
        if self.input_port[0] >= self.mesh_width || self.input_port[1] >= self.mesh_height {
            return Err(Error::config(
                "input_port",
                format!(
                    "{:?} is outside the {}x{} mesh (x in 0..{}, y in 0..{})",
                    self.input_port,
                    self.mesh_width,
                    self.mesh_height,
                    self.mesh_width,
                    self.mesh_height
                ),
            ));
        }
        if self.release_ticks == 0 {
            return Err(Error::config(
                "release_ticks",
                "must be >= 1 (one release round takes time)",
            ));
        }
        if let Some(0) = self.link_packets_per_tick {
            return Err(Error::config(
                "link_packets_per_tick",
                "must be >= 1 or absent (unlimited)",
            ));
        }
        for (field, v) in [
            ("link_buffer_depth", self.link_buffer_depth),
            ("input_buffer_depth", self.input_buffer_depth),
        ] {
            if v == Some(0) {
                return Err(Error::config(
                    field,
                    "must be >= 1 or absent (unbounded): a buffer of no slots passes nothing",
                ));
            }
        }
        let big = 1u64 << 40;
        for (field, v) in [
            ("hop_latency_ticks", self.hop_latency_ticks),
            ("syn_op_ticks", self.syn_op_ticks),
            ("neuron_update_ticks", self.neuron_update_ticks),
            ("release_ticks", self.release_ticks),
            ("barrier_ticks", self.barrier_ticks),
        ] {
            if v > big {
                return Err(Error::config(field, format!("{v} is outside 0..={big}")));
            }
        }
        if let Arithmetic::Fixed {
            weight_bits,
            potential_bits,
            frac_bits,
            leak_bits,
        } = self.arithmetic
        {
            if !(2..=32).contains(&weight_bits) {
                return Err(Error::config(
                    "arithmetic.weight_bits",
                    format!("{weight_bits} is outside 2..=32"),
                ));
            }
            if !(2..=48).contains(&potential_bits) {
                return Err(Error::config(
                    "arithmetic.potential_bits",
                    format!("{potential_bits} is outside 2..=48"),
                ));
            }
            if weight_bits > potential_bits {
                return Err(Error::config(
                    "arithmetic.weight_bits",
                    format!("{weight_bits} must be <= potential_bits ({potential_bits})"),
                ));
            }
            if frac_bits >= potential_bits {
                return Err(Error::config(
                    "arithmetic.frac_bits",
                    format!("{frac_bits} is outside 0..{potential_bits} (potential_bits)"),
                ));
            }
            if !(1..=24).contains(&leak_bits) {
                return Err(Error::config(
                    "arithmetic.leak_bits",
                    format!("{leak_bits} is outside 1..=24"),
                ));
            }
        }
        Ok(())
    }

    /// Number of cores on the mesh.
    #[must_use]
    pub fn n_cores(&self) -> usize {
        self.mesh_width as usize * self.mesh_height as usize
    }

    /// `(x, y)` of a core (row-major numbering).
    #[must_use]
    pub fn core_xy(&self, core: usize) -> (u32, u32) {
        let w = self.mesh_width as usize;
        // core < n_cores <= 2^20, so both fit in u32.
        #[allow(clippy::cast_possible_truncation)]
        ((core % w) as u32, (core / w) as u32)
    }

    /// Router index of the input port.
    #[must_use]
    pub fn input_router(&self) -> usize {
        self.input_port[1] as usize * self.mesh_width as usize + self.input_port[0] as usize
    }

    /// Hops of the dimension-ordered (XY) route between two routers.
    #[must_use]
    pub fn hops(&self, from: usize, to: usize) -> u64 {
        let (ax, ay) = self.core_xy(from);
        let (bx, by) = self.core_xy(to);
        u64::from(ax.abs_diff(bx)) + u64::from(ay.abs_diff(by))
    }
}

fn finite_nonneg(field: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(Error::config(
            field,
            format!("{v} is outside [0, inf) (finite)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_round_trip() {
        for name in PRESETS {
            let cfg = ChipConfig::preset(name).unwrap();
            let back = ChipConfig::from_toml(&cfg.to_toml().unwrap()).unwrap();
            assert_eq!(cfg, back, "{name}");
            let back = ChipConfig::from_json(&cfg.to_json().unwrap()).unwrap();
            assert_eq!(cfg, back, "{name}");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let mut cfg = ChipConfig::preset("loihi").unwrap();
        cfg.mesh_width = 0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("mesh_width"), "{err}");
        let mut cfg = ChipConfig::preset("loihi").unwrap();
        cfg.input_port = [100, 0];
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("input_port"));
        let err = ChipConfig::preset("nope").unwrap_err().to_string();
        assert!(err.contains("loihi"), "{err}");
        let mut json: serde_json::Value =
            serde_json::from_str(&ChipConfig::preset("ideal").unwrap().to_json().unwrap()).unwrap();
        json["core"]["neurons"] = serde_json::json!(-1);
        let err = ChipConfig::from_json(&json.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("core.neurons"), "{err}");
        let err = ChipConfig::from_toml("mesh_width = 2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn xy_hops() {
        let mut cfg = ChipConfig::preset("ideal").unwrap();
        cfg.mesh_width = 4;
        cfg.mesh_height = 3;
        assert_eq!(cfg.core_xy(5), (1, 1));
        assert_eq!(cfg.hops(0, 11), 3 + 2);
        assert_eq!(cfg.hops(7, 7), 0);
    }
}
