//! The firing rule of stochastic neurons, defined so that any implementation reproduces it bit
//! for bit (the PyTorch side does, in `asyncsnn.spsn.deploy`).
//!
//! A stochastic neuron with potential `v` and threshold `theta` fires with probability
//! `sigmoid(v - theta)`. Transcendental functions differ between libraries in the last bit, so
//! the probability is a table lookup:
//!
//! * the index is `floor((v - theta) * 256)`, clamped to `[-4096, 4096]` (`|v - theta| <= 16`);
//!   in fixed point the same floor of the raw difference shifted to 8 fractional bits;
//! * the table holds `T[i] = floor(sigmoid(i / 256) * 2^32)`, computed with IEEE double
//!   operations only (which are correctly rounded everywhere): `E[0] = 1`,
//!   `E[j] = E[j-1] * e` with `e` the double nearest `exp(1/256)` (bits `0x3ff0100802ab5577`),
//!   then `sigmoid = E[i] / (E[i] + 1)` for `i >= 0` and `1 / (1 + E[-i])` for `i < 0`;
//! * the neuron fires iff `key(seed, sample, frame, 2^32 - 1, source) < T[i]`, with the
//!   scheduler's hash and the neuron's source number `n_inputs + n`. The step `2^32 - 1` never
//!   occurs in a schedule, so draws are independent of the scheduler's keys.

use std::sync::OnceLock;

use crate::hash::mix;

/// Grid of the table's argument: `1/256`.
pub const LOGIT_SCALE: i64 = 256;
/// Largest table index in absolute value (`|v - theta| <= 16`).
pub const LOGIT_MAX: i64 = 4096;
/// The hash's step argument for draws.
pub const DRAW_STEP: u64 = 0xFFFF_FFFF;
/// The double nearest `exp(1/256)`.
const EXP_STEP_BITS: u64 = 0x3ff0_1008_02ab_5577;

/// `T[i + 4096]` for `i` in `-4096..=4096`: firing thresholds on the 32-bit hash.
#[must_use]
pub fn thresholds() -> &'static [u64] {
    static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    TABLE.get_or_init(build)
}

fn build() -> Vec<u64> {
    let step = f64::from_bits(EXP_STEP_BITS);
    // LOGIT_MAX is a small constant.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let m = LOGIT_MAX as usize;
    let mut e = Vec::with_capacity(m + 1);
    e.push(1.0f64);
    for j in 1..=m {
        e.push(e[j - 1] * step);
    }
    let mut table = Vec::with_capacity(2 * m + 1);
    for i in 0..=2 * m {
        let p = if i >= m {
            let x = e[i - m];
            x / (x + 1.0)
        } else {
            1.0 / (1.0 + e[m - i])
        };
        // p in (0, 1): the product is in (0, 2^32) and the cast exact after floor.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        table.push((p * 4_294_967_296.0).floor() as u64);
    }
    table
}

/// Whether the neuron with source number `source` fires, given the frame's hash prefix
/// (`frame_prefix(seed, sample, frame)`) and its table index.
#[inline]
#[must_use]
pub fn fires(prefix: u32, source: u64, index: i64) -> bool {
    let draw = mix(u64::from(mix(u64::from(prefix) ^ DRAW_STEP)) ^ source);
    let i = index.clamp(-LOGIT_MAX, LOGIT_MAX) + LOGIT_MAX;
    // i in 0..=2 * LOGIT_MAX
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = i as usize;
    u64::from(draw) < thresholds()[i]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{frame_prefix, key};

    #[test]
    fn table_is_a_monotone_sigmoid() {
        let t = thresholds();
        assert_eq!(t.len(), 8193);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(t[4096], 1 << 31);
        for (i, &v) in t.iter().enumerate().step_by(97) {
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_wrap)]
            let z = (i as i64 - LOGIT_MAX) as f64 / 256.0;
            let p = 1.0 / (1.0 + (-z).exp());
            #[allow(clippy::cast_precision_loss)]
            let got = v as f64 / 4_294_967_296.0;
            assert!((got - p).abs() < 1e-9, "index {i}: {got} vs {p}");
        }
    }

    #[test]
    fn draw_uses_the_scheduler_hash() {
        let (seed, sample, frame, src) = (7u64, 3u64, 5u64, 42u64);
        let k = u64::from(key(seed, sample, frame, DRAW_STEP, src));
        let prefix = frame_prefix(seed, sample, frame);
        // the smallest index whose threshold exceeds the key fires, the one below does not
        let t = thresholds();
        let first = t.iter().position(|&x| k < x).unwrap();
        #[allow(clippy::cast_possible_wrap)]
        let idx = first as i64 - LOGIT_MAX;
        assert!(fires(prefix, src, idx));
        assert!(!fires(prefix, src, idx - 1));
        assert!(fires(prefix, src, LOGIT_MAX + 100) == (k < t[8192]));
    }
}
