//! Arithmetic of membrane potentials: `f32`, or saturating fixed point.
//!
//! The simulators are generic over [`Arith`], so each format gets its own tight inner loop.

use std::fmt::Debug;

use crate::chip::Arithmetic;
use crate::error::{Error, Result};

/// Operations the simulators need on potentials (`V`), weights (`W`) and leak factors.
pub trait Arith: Copy + Send + Sync + Debug + 'static {
    /// Membrane potential (and synaptic current accumulator).
    type V: Copy + PartialOrd + Send + Sync + Debug + Default;
    /// Stored weight.
    type W: Copy + Send + Sync + Debug;
    /// Stored leak factor.
    type Leak: Copy + Send + Sync + Debug;

    /// Convert a weight; the flag says it was clipped to the representable range.
    fn weight(&self, w: f32) -> (Self::W, bool);
    /// Whether a stored weight is zero (zero weights are not stored and cost nothing).
    fn weight_is_zero(w: Self::W) -> bool;
    /// Convert a threshold; it must stay positive.
    fn threshold(&self, theta: f32) -> Result<Self::V>;
    /// Convert a leak factor.
    fn leak_factor(&self, beta: f32) -> Self::Leak;
    /// Add `w * count` to a current accumulator.
    fn accumulate(acc: Self::V, w: Self::W, count: u32) -> Self::V;
    /// `v + current` (saturating in fixed point).
    fn integrate(&self, v: Self::V, current: Self::V) -> Self::V;
    /// `beta * v`.
    fn leak(&self, v: Self::V, beta: Self::Leak) -> Self::V;
    /// `v - theta` (saturating in fixed point).
    fn subtract(&self, v: Self::V, theta: Self::V) -> Self::V;
    /// The value in network units (exact for both formats).
    fn to_f64(&self, v: Self::V) -> f64;
    /// The raw value as an `f64`, order-preserving (used by the momentum scheduler).
    fn raw(v: Self::V) -> f64;
    /// `floor(z * 256)` of a potential difference `z` in network units, saturated to the
    /// `i64` range (the index of the stochastic firing table, see [`crate::stochastic`]).
    fn logit_index(&self, z: Self::V) -> i64;
}

/// IEEE single precision.
#[derive(Debug, Clone, Copy, Default)]
pub struct F32;

impl Arith for F32 {
    type V = f32;
    type W = f32;
    type Leak = f32;

    fn weight(&self, w: f32) -> (f32, bool) {
        (w, false)
    }
    fn weight_is_zero(w: f32) -> bool {
        w == 0.0
    }
    fn threshold(&self, theta: f32) -> Result<f32> {
        Ok(theta)
    }
    fn leak_factor(&self, beta: f32) -> f32 {
        beta
    }
    #[inline]
    fn accumulate(acc: f32, w: f32, count: u32) -> f32 {
        // No branch on count == 1 (w * 1 is w, exactly): a count that changes from one
        // release to the next does not cost a mispredicted branch per block. Counts are small
        // integers, exact in f32 up to 2^24.
        #[allow(clippy::cast_precision_loss)]
        let c = count as f32;
        acc + w * c
    }
    #[inline]
    fn integrate(&self, v: f32, current: f32) -> f32 {
        v + current
    }
    #[inline]
    fn leak(&self, v: f32, beta: f32) -> f32 {
        v * beta
    }
    #[inline]
    fn subtract(&self, v: f32, theta: f32) -> f32 {
        v - theta
    }
    fn to_f64(&self, v: f32) -> f64 {
        f64::from(v)
    }
    fn raw(v: f32) -> f64 {
        f64::from(v)
    }
    fn logit_index(&self, z: f32) -> i64 {
        // z * 256 is exact (a power of two) unless it overflows to infinity; the cast saturates.
        #[allow(clippy::cast_possible_truncation)]
        let i = (z * 256.0).floor() as i64;
        i
    }
}

/// Signed saturating fixed point (see [`Arithmetic::Fixed`]).
#[derive(Debug, Clone, Copy)]
pub struct Fixed {
    w_min: i64,
    w_max: i64,
    v_min: i64,
    v_max: i64,
    scale: f64,
    frac_bits: u32,
    leak_bits: u32,
}

impl Fixed {
    /// From the chip's arithmetic description (which must be `Fixed`).
    #[must_use]
    pub fn new(weight_bits: u32, potential_bits: u32, frac_bits: u32, leak_bits: u32) -> Self {
        Self {
            w_min: -(1i64 << (weight_bits - 1)),
            w_max: (1i64 << (weight_bits - 1)) - 1,
            v_min: -(1i64 << (potential_bits - 1)),
            v_max: (1i64 << (potential_bits - 1)) - 1,
            scale: f64::from(frac_bits).exp2(),
            frac_bits,
            leak_bits,
        }
    }

    /// Smallest and largest potential.
    #[must_use]
    pub fn potential_range(&self) -> (i64, i64) {
        (self.v_min, self.v_max)
    }

    fn quantize(&self, x: f32) -> i64 {
        // Clamped to the i64 range by the saturating float-to-int cast.
        #[allow(clippy::cast_possible_truncation)]
        let q = (f64::from(x) * self.scale).round() as i64;
        q
    }
}

impl Arith for Fixed {
    type V = i64;
    type W = i64;
    type Leak = i64;

    fn weight(&self, w: f32) -> (i64, bool) {
        let q = self.quantize(w);
        let c = q.clamp(self.w_min, self.w_max);
        (c, c != q)
    }
    fn weight_is_zero(w: i64) -> bool {
        w == 0
    }
    fn threshold(&self, theta: f32) -> Result<i64> {
        let q = self.quantize(theta);
        if q < 1 || q > self.v_max {
            return Err(Error::network(
                "theta",
                format!(
                    "threshold {theta} quantizes to {q}, outside 1..={} of this fixed-point format",
                    self.v_max
                ),
            ));
        }
        Ok(q)
    }
    fn leak_factor(&self, beta: f32) -> i64 {
        // beta in [0, 1] and leak_bits <= 24: fits.
        #[allow(clippy::cast_possible_truncation)]
        let q = (f64::from(beta) * f64::from(self.leak_bits).exp2()).round() as i64;
        q
    }
    #[inline]
    fn accumulate(acc: i64, w: i64, count: u32) -> i64 {
        acc.saturating_add(w.saturating_mul(i64::from(count)))
    }
    #[inline]
    fn integrate(&self, v: i64, current: i64) -> i64 {
        v.saturating_add(current).clamp(self.v_min, self.v_max)
    }
    #[inline]
    fn leak(&self, v: i64, beta: i64) -> i64 {
        let p = (i128::from(v) * i128::from(beta)) >> self.leak_bits;
        // |v| < 2^47 and beta <= 2^24, so the shifted product fits in i64.
        #[allow(clippy::cast_possible_truncation)]
        let p = p as i64;
        p.clamp(self.v_min, self.v_max)
    }
    #[inline]
    fn subtract(&self, v: i64, theta: i64) -> i64 {
        v.saturating_sub(theta).clamp(self.v_min, self.v_max)
    }
    fn to_f64(&self, v: i64) -> f64 {
        // |v| < 2^47: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let x = v as f64;
        x / self.scale
    }
    fn raw(v: i64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let x = v as f64;
        x
    }
    fn logit_index(&self, z: i64) -> i64 {
        // |z| < 2^48, so an 8-bit left shift fits; the right shift floors.
        if self.frac_bits >= 8 {
            z >> (self.frac_bits - 8)
        } else {
            z << (8 - self.frac_bits)
        }
    }
}

/// Build a [`Fixed`] from a chip's arithmetic, if it is fixed point.
#[must_use]
pub fn fixed_of(a: &Arithmetic) -> Option<Fixed> {
    match *a {
        Arithmetic::F32 => None,
        Arithmetic::Fixed {
            weight_bits,
            potential_bits,
            frac_bits,
            leak_bits,
        } => Some(Fixed::new(
            weight_bits,
            potential_bits,
            frac_bits,
            leak_bits,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_saturates_everywhere() {
        let a = Fixed::new(4, 8, 2, 4);
        assert_eq!(a.weight(100.0), (7, true));
        assert_eq!(a.weight(-100.0), (-8, true));
        assert_eq!(a.weight(0.5), (2, false));
        assert_eq!(a.integrate(120, 20), 127);
        assert_eq!(a.integrate(-120, -20), -128);
        assert_eq!(a.subtract(-120, 100), -128);
        assert_eq!(Fixed::accumulate(i64::MAX - 1, 7, 3), i64::MAX);
        // leak: (v * beta_q) >> leak_bits, rounding toward minus infinity
        let b = a.leak_factor(0.5);
        assert_eq!(b, 8);
        assert_eq!(a.leak(7, b), 3);
        assert_eq!(a.leak(-7, b), -4);
        assert!(a.threshold(0.1).is_err());
        assert_eq!(a.threshold(1.0).unwrap(), 4);
        assert!((a.to_f64(6) - 1.5).abs() < 1e-12);
    }
}
