//! The little floating-point maths the driver needs, without `std` or `libm`.

use core::f32::consts::{LN_2, LN_10, SQRT_2};

/// Mask of the 23 fraction bits of an IEEE 754 `f32`.
const F32_FRACTION_MASK: u32 = 0x007F_FFFF;
/// Number of fraction bits of an `f32`.
const F32_FRACTION_BITS: u32 = 23;
/// Mask of the 8 exponent bits, once shifted down.
const F32_EXPONENT_MASK: u32 = 0xFF;
/// Exponent bias of an `f32`.
const F32_EXPONENT_BIAS: i32 = 127;
/// Bit pattern of `1.0_f32`: a zero biased exponent, ORed with a fraction
/// gives a number in `[1, 2)`.
const F32_ONE_BITS: u32 = 0x3F80_0000;

/// Natural logarithm of a positive, normal, finite `x`.
///
/// `x = m · 2^e` with `m` folded into `[1/√2, √2]`, then
/// `ln m = 2·atanh(s)`, `s = (m − 1)/(m + 1)`, `|s| ≤ 0.1716`, summed to the
/// `s⁹` term (truncation error below 1e-9, i.e. at `f32` precision).
/// Results for zero, negative, subnormal or non-finite input are meaningless;
/// the driver only calls it with gain ratios in `[1, 256]`.
pub(crate) fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    // The masked exponent is at most 0xFF: the cast is lossless.
    #[allow(clippy::cast_possible_wrap)]
    let biased = ((bits >> F32_FRACTION_BITS) & F32_EXPONENT_MASK) as i32;
    let mut exponent = biased - F32_EXPONENT_BIAS;
    let mut mantissa = f32::from_bits((bits & F32_FRACTION_MASK) | F32_ONE_BITS);
    if mantissa > SQRT_2 {
        mantissa *= 0.5;
        exponent += 1;
    }
    let s = (mantissa - 1.0) / (mantissa + 1.0);
    let s2 = s * s;
    let atanh = s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 / 9.0))));
    // |exponent| ≤ 128: exactly representable.
    #[allow(clippy::cast_precision_loss)]
    let exponent = exponent as f32;
    exponent * LN_2 + 2.0 * atanh
}

/// Base-10 logarithm of a positive, normal, finite `x` (see [`ln`]).
pub(crate) fn log10(x: f32) -> f32 {
    ln(x) / LN_10
}

/// Rounds a non-negative `x` to the nearest integer (halves away from zero)
/// and converts it, saturating at `u16::MAX`; negative or NaN input gives 0.
pub(crate) fn round_to_u16(x: f32) -> u16 {
    // `as` from float to integer saturates and maps NaN to 0 (no UB, no panic).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rounded = (x + 0.5) as u16;
    rounded
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn ln_matches_std_over_the_gain_range() {
        let mut x = 1.0_f32;
        while x <= 256.0 {
            let expected = std::primitive::f32::ln(x);
            let got = ln(x);
            assert!(
                (got - expected).abs() <= 2e-6 * expected.abs().max(1.0),
                "ln({x}) = {got}, std says {expected}"
            );
            x *= 1.01;
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn log10_of_powers_of_ten() {
        assert!((log10(10.0) - 1.0).abs() < 1e-6);
        assert!((log10(100.0) - 2.0).abs() < 1e-6);
        assert!((log10(2.0) - core::f32::consts::LOG10_2).abs() < 1e-6);
    }

    #[test]
    fn rounding_saturates() {
        assert_eq!(round_to_u16(1.49), 1);
        assert_eq!(round_to_u16(1.5), 2);
        assert_eq!(round_to_u16(-3.0), 0);
        assert_eq!(round_to_u16(f32::NAN), 0);
        assert_eq!(round_to_u16(1e9), u16::MAX);
    }
}
