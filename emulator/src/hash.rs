//! The counter-based hash that orders pending spikes.
//!
//! Every scheduler tie (and the whole `random` order) comes from this function of
//! `(seed, sample, frame, step, source)`, so the emulator, the PyTorch simulator and anyone else
//! compute the same order with no shared RNG state:
//!
//! ```text
//! mix(x):  x = x mod 2^32
//!          x = ((x >> 16) XOR x) * 0x45d9f3b  mod 2^32
//!          x = ((x >> 16) XOR x) * 0x45d9f3b  mod 2^32
//!          return (x >> 16) XOR x
//! key(seed, sample, frame, step, source) =
//!     mix(mix(mix(mix(mix(seed) XOR sample) XOR frame) XOR step) XOR source)
//! ```
//!
//! `source` numbers input channel `c` as `c` and neuron `n` as `n_inputs + n`.

/// One round of the integer mixer (all arithmetic modulo 2^32).
#[inline]
#[must_use]
pub fn mix(x: u64) -> u32 {
    // Truncation to 32 bits is the definition of the hash.
    #[allow(clippy::cast_possible_truncation)]
    let mut x = x as u32;
    x = ((x >> 16) ^ x).wrapping_mul(0x045d_9f3b);
    x = ((x >> 16) ^ x).wrapping_mul(0x045d_9f3b);
    (x >> 16) ^ x
}

/// Scheduler key of one pending source at one forward step.
#[inline]
#[must_use]
pub fn key(seed: u64, sample: u64, frame: u64, step: u64, source: u64) -> u32 {
    let a = mix(seed);
    let b = mix(u64::from(a) ^ sample);
    let c = mix(u64::from(b) ^ frame);
    let d = mix(u64::from(c) ^ step);
    mix(u64::from(d) ^ source)
}

/// The prefix of [`key`] that does not depend on the step or the source; the simulators compute
/// it once per frame.
#[inline]
#[must_use]
pub fn frame_prefix(seed: u64, sample: u64, frame: u64) -> u32 {
    let a = mix(seed);
    let b = mix(u64::from(a) ^ sample);
    mix(u64::from(b) ^ frame)
}

/// The part of [`key`] that does not depend on the source, from a [`frame_prefix`]: the
/// simulators compute it once per step.
#[inline]
#[must_use]
pub fn step_prefix(prefix: u32, step: u64) -> u32 {
    mix(u64::from(prefix) ^ step)
}

/// Finish [`key`] from a [`step_prefix`].
#[inline]
#[must_use]
pub fn key_from_step(step_prefix: u32, source: u64) -> u32 {
    mix(u64::from(step_prefix) ^ source)
}

/// Finish [`key`] from a [`frame_prefix`].
#[inline]
#[must_use]
pub fn key_from_prefix(prefix: u32, step: u64, source: u64) -> u32 {
    key_from_step(step_prefix(prefix, step), source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_full_key() {
        for (s, n, f, k, src) in [
            (7u64, 0u64, 0u64, 0u64, 1u64),
            (2_131_554_104, 2844, 417, 242, 421_968),
        ] {
            assert_eq!(
                key(s, n, f, k, src),
                key_from_prefix(frame_prefix(s, n, f), k, src)
            );
        }
    }

    #[test]
    fn mix_reduces_modulo_2_32() {
        assert_eq!(mix(5), mix(5 + (1u64 << 32)));
    }
}
