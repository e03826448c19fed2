//! Pure conversions between physical units and register codes.
//!
//! None of these touch the bus; they are what the driver's setters use, and
//! are public so that an exposure / gain algorithm can plan in register units.
//!
//! Policy: a finite request outside the sensor's range saturates to the
//! nearest valid code (the setters return the code actually written); NaN has
//! no nearest code and is rejected (`None` here, `Error::InvalidInput` from the
//! setters).

use crate::math::{log10, round_to_u16};
use crate::{
    ANALOG_GAIN_CODE_MAX, DIGITAL_GAIN_CODE_MAX, DIGITAL_GAIN_CODE_MIN, LINE_LENGTH_PIXELS,
    PIXEL_RATE_HZ,
};

/// Numerator of the analogue gain law: gain = 256 / (256 − code).
const ANALOG_GAIN_NUMERATOR: f32 = 256.0;
/// Digital gain register code for a gain of 1.0 (unsigned 4.8 fixed point).
const DIGITAL_GAIN_CODE_PER_UNIT: f32 = 256.0;
/// `20 · log10(amplitude ratio)` gives decibels.
const DB_PER_DECADE: f32 = 20.0;
/// Microseconds in one second.
const MICROSECONDS_PER_SECOND: f32 = 1_000_000.0;

/// Lines read out per second: [`PIXEL_RATE_HZ`] / [`LINE_LENGTH_PIXELS`]
/// (≈ 52 900.23 lines/s, i.e. one line every ≈ 18.90 µs).
#[must_use]
pub fn lines_per_second() -> f32 {
    // 182_400_000 = 178_125 · 2^10 is exactly representable in an f32.
    #[allow(clippy::cast_precision_loss)]
    let pixel_rate = PIXEL_RATE_HZ as f32;
    pixel_rate / f32::from(LINE_LENGTH_PIXELS)
}

/// Frame rate in frames per second for a frame length (VTS) in lines.
///
/// `frame_rate = PIXEL_RATE_HZ / (LINE_LENGTH_PIXELS · frame_length_lines)`.
/// A frame length of 0 gives `f32::INFINITY`.
#[must_use]
pub fn frame_rate_from_frame_length(frame_length_lines: u16) -> f32 {
    lines_per_second() / f32::from(frame_length_lines)
}

/// Exposure time in microseconds for an exposure in lines.
#[must_use]
pub fn exposure_us_from_lines(lines: u16) -> f32 {
    f32::from(lines) * MICROSECONDS_PER_SECOND / lines_per_second()
}

/// Exposure in lines (rounded to nearest) for an exposure time in
/// microseconds; saturates to `0..=u16::MAX`, `None` for NaN.
///
/// The result is not yet limited by the frame length: the driver clamps it to
/// `EXPOSURE_MIN_LINES..=frame_length_lines - EXPOSURE_MARGIN_LINES`.
#[must_use]
pub fn exposure_lines_from_us(us: f32) -> Option<u16> {
    if us.is_nan() {
        return None;
    }
    Some(round_to_u16(
        us * lines_per_second() / MICROSECONDS_PER_SECOND,
    ))
}

/// Linear analogue gain for a register code: `256 / (256 − code)`.
///
/// Codes above [`ANALOG_GAIN_CODE_MAX`] (232) are treated as 232, the
/// sensor's maximum (10.67×).
#[must_use]
pub fn analog_gain_from_code(code: u8) -> f32 {
    let code = f32::from(code.min(ANALOG_GAIN_CODE_MAX));
    ANALOG_GAIN_NUMERATOR / (ANALOG_GAIN_NUMERATOR - code)
}

/// Analogue gain in dB for a register code: `20 · log10(256 / (256 − code))`.
///
/// Code 0 → 0 dB, code 128 → 6.02 dB, code 232 → 20.56 dB; codes above 232
/// are treated as 232.
#[must_use]
pub fn analog_gain_db_from_code(code: u8) -> f32 {
    DB_PER_DECADE * log10(analog_gain_from_code(code))
}

/// The analogue gain code whose gain is closest, in dB, to `db`.
///
/// Out-of-range requests saturate: anything at or below 0 dB gives code 0,
/// anything at or above 20.56 dB gives code 232. Returns `None` for NaN.
///
/// Because the answer is the nearest code, `code → dB → code` round-trips
/// exactly for every code in `0..=232`.
#[must_use]
pub fn analog_gain_code_from_db(db: f32) -> Option<u8> {
    if db.is_nan() {
        return None;
    }
    if db <= 0.0 {
        return Some(0);
    }
    if db >= analog_gain_db_from_code(ANALOG_GAIN_CODE_MAX) {
        return Some(ANALOG_GAIN_CODE_MAX);
    }
    // Binary search for the first code whose gain is >= db; the dB value of
    // the codes is strictly increasing. Invariant: db(low - 1) < db <= db(high).
    let (mut low, mut high) = (1_u8, ANALOG_GAIN_CODE_MAX);
    while low < high {
        let mid = low + (high - low) / 2;
        if analog_gain_db_from_code(mid) < db {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    let above = low;
    let below = above - 1;
    let distance_above = analog_gain_db_from_code(above) - db;
    let distance_below = db - analog_gain_db_from_code(below);
    Some(if distance_below < distance_above {
        below
    } else {
        above
    })
}

/// Digital gain register code (unsigned 4.8 fixed point, `0x0100` = 1.0×)
/// for a linear gain, rounded to nearest.
///
/// Saturates to [`DIGITAL_GAIN_CODE_MIN`]`..=`[`DIGITAL_GAIN_CODE_MAX`]
/// (1.0× ..= 15.996×); `None` for NaN.
#[must_use]
pub fn digital_gain_code_from_gain(gain: f32) -> Option<u16> {
    if gain.is_nan() {
        return None;
    }
    let scaled = gain * DIGITAL_GAIN_CODE_PER_UNIT;
    Some(round_to_u16(scaled).clamp(DIGITAL_GAIN_CODE_MIN, DIGITAL_GAIN_CODE_MAX))
}

/// Linear digital gain for a register code: `code / 256`, with the code
/// saturated to [`DIGITAL_GAIN_CODE_MIN`]`..=`[`DIGITAL_GAIN_CODE_MAX`].
#[must_use]
pub fn digital_gain_from_code(code: u16) -> f32 {
    f32::from(code.clamp(DIGITAL_GAIN_CODE_MIN, DIGITAL_GAIN_CODE_MAX)) / DIGITAL_GAIN_CODE_PER_UNIT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tolerance: f32) -> bool {
        let difference = a - b;
        difference <= tolerance && difference >= -tolerance
    }

    #[test]
    fn analog_gain_edge_values() {
        assert_eq!(analog_gain_db_from_code(0), 0.0);
        assert!(close(analog_gain_db_from_code(128), 6.0206, 1e-3));
        assert!(close(analog_gain_db_from_code(232), 20.5606, 1e-3));
        assert!(close(analog_gain_from_code(232), 10.6667, 1e-3));
        // Codes above the maximum saturate.
        assert_eq!(analog_gain_db_from_code(255), analog_gain_db_from_code(232));

        assert_eq!(analog_gain_code_from_db(0.0), Some(0));
        assert_eq!(analog_gain_code_from_db(6.02), Some(128));
        assert_eq!(analog_gain_code_from_db(20.56), Some(232));
        assert_eq!(analog_gain_code_from_db(-3.0), Some(0));
        assert_eq!(analog_gain_code_from_db(30.0), Some(232));
        assert_eq!(analog_gain_code_from_db(f32::INFINITY), Some(232));
        assert_eq!(analog_gain_code_from_db(f32::NEG_INFINITY), Some(0));
        assert_eq!(analog_gain_code_from_db(f32::NAN), None);
    }

    #[test]
    fn analog_gain_round_trips_every_code() {
        for code in 0..=ANALOG_GAIN_CODE_MAX {
            let db = analog_gain_db_from_code(code);
            assert_eq!(
                analog_gain_code_from_db(db),
                Some(code),
                "code {code} ({db} dB)"
            );
        }
    }

    #[test]
    fn analog_gain_picks_the_nearest_code() {
        // Halfway (in dB) between codes 127 and 128, nudged either way.
        let mid = (analog_gain_db_from_code(127) + analog_gain_db_from_code(128)) / 2.0;
        assert_eq!(analog_gain_code_from_db(mid - 0.001), Some(127));
        assert_eq!(analog_gain_code_from_db(mid + 0.001), Some(128));
    }

    #[test]
    fn digital_gain_edges() {
        assert_eq!(digital_gain_code_from_gain(1.0), Some(0x0100));
        assert_eq!(digital_gain_code_from_gain(2.0), Some(0x0200));
        assert_eq!(digital_gain_code_from_gain(1.5), Some(0x0180));
        assert_eq!(digital_gain_code_from_gain(15.99), Some(0x0FFD));
        assert_eq!(digital_gain_code_from_gain(16.0), Some(0x0FFF));
        assert_eq!(digital_gain_code_from_gain(0.5), Some(0x0100));
        assert_eq!(digital_gain_code_from_gain(-1.0), Some(0x0100));
        assert_eq!(digital_gain_code_from_gain(f32::INFINITY), Some(0x0FFF));
        assert_eq!(digital_gain_code_from_gain(f32::NAN), None);
        assert_eq!(digital_gain_from_code(0x0100), 1.0);
        assert!(close(digital_gain_from_code(0x0FFF), 15.996, 1e-3));
        assert_eq!(digital_gain_from_code(0), 1.0);
        for code in DIGITAL_GAIN_CODE_MIN..=DIGITAL_GAIN_CODE_MAX {
            assert_eq!(
                digital_gain_code_from_gain(digital_gain_from_code(code)),
                Some(code)
            );
        }
    }

    #[test]
    fn timing() {
        assert!(close(lines_per_second(), 52_900.23, 0.01));
        assert!(close(exposure_us_from_lines(1), 18.9035, 1e-3));
        assert!(close(frame_rate_from_frame_length(1763), 30.006, 1e-3));
        assert!(close(frame_rate_from_frame_length(3526), 15.003, 1e-3));
        assert_eq!(exposure_lines_from_us(10_000.0), Some(529));
        assert_eq!(exposure_lines_from_us(-5.0), Some(0));
        assert_eq!(exposure_lines_from_us(1e9), Some(u16::MAX));
        assert_eq!(exposure_lines_from_us(f32::NAN), None);
    }
}
