//! Pure conversions between the analogue gain and its register code.
//!
//! Exposure and frame-rate conversions depend on the mode's line length and
//! are methods of [`Mode`](crate::Mode).
//!
//! Policy (as in `ocellus-imx219`): a finite request outside the sensor's
//! range saturates to the nearest valid code (the setters return the code
//! actually written); NaN has no nearest code and is rejected (`None` here,
//! `Error::InvalidInput` from the setters).

use crate::ANALOG_GAIN_CODE_MAX;
use crate::math::round_to_u16;

/// Numerator of the analogue gain law: gain = 1024 / (1024 − code).
const ANALOG_GAIN_NUMERATOR: f32 = 1024.0;

/// Linear analogue gain for a register code: `1024 / (1024 − code)`.
///
/// Code 0 → 1.0×, 512 → 2.0×, 978 → 22.26× (the maximum); codes above
/// [`ANALOG_GAIN_CODE_MAX`] are treated as 978.
#[must_use]
pub fn analog_gain_from_code(code: u16) -> f32 {
    let code = f32::from(code.min(ANALOG_GAIN_CODE_MAX));
    ANALOG_GAIN_NUMERATOR / (ANALOG_GAIN_NUMERATOR - code)
}

/// Register code for a linear analogue gain: `code = 1024 − 1024 / gain`,
/// rounded to the nearest code and saturated to
/// `0..=`[`ANALOG_GAIN_CODE_MAX`] (gains up to 1.0× give 0, gains above
/// 22.26× give 978); `None` for NaN.
///
/// libcamera's `CamHelperImx500::gainCode` truncates instead of rounding, so
/// its code can be one lower for the same gain.
#[must_use]
pub fn analog_gain_code_from_gain(gain: f32) -> Option<u16> {
    if gain.is_nan() {
        return None;
    }
    if gain <= 1.0 {
        return Some(0);
    }
    let code = ANALOG_GAIN_NUMERATOR - ANALOG_GAIN_NUMERATOR / gain;
    Some(round_to_u16(code).min(ANALOG_GAIN_CODE_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gain_law() {
        assert_eq!(analog_gain_from_code(0), 1.0);
        assert_eq!(analog_gain_from_code(512), 2.0);
        assert_eq!(analog_gain_from_code(768), 4.0);
        let max = analog_gain_from_code(978);
        assert!((max - 22.26).abs() < 0.01, "{max}");
        assert_eq!(analog_gain_from_code(1000), max);
        assert_eq!(analog_gain_from_code(u16::MAX), max);
    }

    #[test]
    fn codes_round_and_saturate() {
        assert_eq!(analog_gain_code_from_gain(1.0), Some(0));
        assert_eq!(analog_gain_code_from_gain(2.0), Some(512));
        assert_eq!(analog_gain_code_from_gain(8.0), Some(896));
        // 1024 - 1024 / 3 = 682.67 -> 683 (libcamera truncates to 682).
        assert_eq!(analog_gain_code_from_gain(3.0), Some(683));
        assert_eq!(analog_gain_code_from_gain(0.5), Some(0));
        assert_eq!(analog_gain_code_from_gain(-2.0), Some(0));
        assert_eq!(analog_gain_code_from_gain(100.0), Some(978));
        assert_eq!(analog_gain_code_from_gain(f32::INFINITY), Some(978));
        assert_eq!(analog_gain_code_from_gain(f32::NAN), None);
        for code in 0..=ANALOG_GAIN_CODE_MAX {
            assert_eq!(
                analog_gain_code_from_gain(analog_gain_from_code(code)),
                Some(code)
            );
        }
    }
}
