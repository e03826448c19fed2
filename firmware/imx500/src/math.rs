//! The little floating-point arithmetic the driver needs, without `std` or
//! `libm`.

/// Rounds a non-negative `x` to the nearest integer (halves away from zero)
/// and converts it, saturating at `u16::MAX`; negative or NaN input gives 0.
pub(crate) fn round_to_u16(x: f32) -> u16 {
    // `as` from float to integer saturates and maps NaN to 0 (no UB, no panic).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rounded = (x + 0.5) as u16;
    rounded
}

/// Smallest integer not below `x`, saturating at `u16::MAX`; negative or NaN
/// input gives 0.
pub(crate) fn ceil_to_u16(x: f32) -> u16 {
    // Truncation towards zero, saturating (see `round_to_u16`).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let truncated = x as u16;
    if f32::from(truncated) < x {
        truncated.saturating_add(1)
    } else {
        truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_saturates() {
        assert_eq!(round_to_u16(1.49), 1);
        assert_eq!(round_to_u16(1.5), 2);
        assert_eq!(round_to_u16(-3.0), 0);
        assert_eq!(round_to_u16(f32::NAN), 0);
        assert_eq!(round_to_u16(1e9), u16::MAX);
    }

    #[test]
    fn ceiling_saturates() {
        assert_eq!(ceil_to_u16(4156.0), 4156);
        assert_eq!(ceil_to_u16(4156.01), 4157);
        assert_eq!(ceil_to_u16(0.2), 1);
        assert_eq!(ceil_to_u16(-3.0), 0);
        assert_eq!(ceil_to_u16(f32::NAN), 0);
        assert_eq!(ceil_to_u16(1e9), u16::MAX);
    }
}
