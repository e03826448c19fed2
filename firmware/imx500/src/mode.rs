//! Sensor modes: readout window, binning, output size and frame timing.

use crate::math::{ceil_to_u16, round_to_u16};
use crate::{
    FRAME_LENGTH_LINES_MAX, PIXEL_ARRAY_HEIGHT, PIXEL_ARRAY_WIDTH, PIXEL_RATE_HZ, VBLANK_MIN_LINES,
    registers,
};

/// Microseconds in one second.
const MICROSECONDS_PER_SECOND: f32 = 1_000_000.0;
/// Fraction of a line ignored when rounding a frame length up, so that
/// floating-point error in `lines_per_second / fps` never adds a line (a
/// frame rate computed from a frame length maps back to that length). An
/// `f32` near 65 500 has a resolution of 1/256 line, hence a few of those.
const FRAME_LENGTH_SLACK_LINES: f32 = 0.02;

/// A rectangle of the active pixel array (`0..4056` × `0..3040`), as
/// programmed into `X_ADDR_START` .. `Y_ADDR_END`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Window {
    /// First column read out (`X_ADDR_START`).
    pub x_start: u16,
    /// First row read out (`Y_ADDR_START`).
    pub y_start: u16,
    /// Number of columns read out.
    pub width: u16,
    /// Number of rows read out.
    pub height: u16,
}

impl Window {
    /// The whole active array, the window of both kernel modes.
    pub const FULL: Self = Self {
        x_start: 0,
        y_start: 0,
        width: PIXEL_ARRAY_WIDTH,
        height: PIXEL_ARRAY_HEIGHT,
    };

    /// Last column read out, inclusive (`X_ADDR_END`).
    #[must_use]
    pub const fn x_end(&self) -> u16 {
        self.x_start.saturating_add(self.width).saturating_sub(1)
    }

    /// Last row read out, inclusive (`Y_ADDR_END`).
    #[must_use]
    pub const fn y_end(&self) -> u16 {
        self.y_start.saturating_add(self.height).saturating_sub(1)
    }
}

/// Pixel binning applied on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Binning {
    /// Every pixel of the window is output.
    None,
    /// 2 × 2 binning: the window is halved on each axis.
    X2,
}

impl Binning {
    /// Number of sensor pixels per output pixel along each axis.
    #[must_use]
    pub const fn factor(self) -> u16 {
        match self {
            Self::None => 1,
            Self::X2 => 2,
        }
    }

    /// Values written to `BINNING_MODE`, `BINNING_TYPE` and
    /// `BINNING_WEIGHTING`, as in the kernel driver's mode tables.
    #[must_use]
    pub const fn register_values(self) -> [u8; 3] {
        match self {
            Self::None => [
                registers::BINNING_MODE_OFF,
                registers::BINNING_TYPE_1X1,
                registers::BINNING_WEIGHTING_FULL,
            ],
            Self::X2 => [
                registers::BINNING_MODE_ON,
                registers::BINNING_TYPE_2X2,
                registers::BINNING_WEIGHTING_BINNED,
            ],
        }
    }
}

/// The readout modes of the Raspberry Pi kernel driver
/// (`imx500_supported_modes`), RAW10 over 2 CSI-2 lanes.
///
/// Frame rates follow from the 744 Mpixel/s pixel rate, the mode's line
/// length and the 1117-line minimum vertical blanking; they are the rates
/// `rpicam-hello --list-cameras` reports for the AI Camera (10.00 and
/// 30.02 fps, rounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// 4056 × 3040, full field of view, no binning; line length 17 900
    /// pixel clocks; up to 9.9986 fps (the kernel default mode).
    #[default]
    Full4056x3040,
    /// 2028 × 1520, full field of view, 2 × 2 binned; line length 9398
    /// pixel clocks; up to 30.021 fps.
    Binned2028x1520,
}

impl Mode {
    /// Every mode, in the order of the kernel driver's mode table.
    pub const ALL: [Self; 2] = [Self::Full4056x3040, Self::Binned2028x1520];

    /// Output width in pixels (`X_OUTPUT_SIZE`).
    #[must_use]
    pub const fn width(self) -> u16 {
        self.crop().width / self.binning().factor()
    }

    /// Output height in lines (`Y_OUTPUT_SIZE`).
    #[must_use]
    pub const fn height(self) -> u16 {
        self.crop().height / self.binning().factor()
    }

    /// The part of the active array that is read out (the whole array for
    /// both modes).
    #[must_use]
    pub const fn crop(self) -> Window {
        Window::FULL
    }

    /// Binning applied to the window.
    #[must_use]
    pub const fn binning(self) -> Binning {
        match self {
            Self::Full4056x3040 => Binning::None,
            Self::Binned2028x1520 => Binning::X2,
        }
    }

    /// Line length in pixel clocks (`LINE_LENGTH_PCK`), fixed per mode by
    /// the kernel driver (`line_length_pix`).
    #[must_use]
    pub const fn line_length_pixels(self) -> u16 {
        match self {
            Self::Full4056x3040 => 17_900,
            Self::Binned2028x1520 => 9_398,
        }
    }

    /// Lines read out per second: `PIXEL_RATE_HZ / line_length_pixels`
    /// (≈ 41 564 lines/s at full resolution, one line every ≈ 24.06 µs;
    /// ≈ 79 167 lines/s binned, ≈ 12.63 µs).
    #[must_use]
    pub fn lines_per_second(self) -> f32 {
        // 744_000_000 = 1_453_125 · 2^9 is exactly representable in an f32.
        #[allow(clippy::cast_precision_loss)]
        let pixel_rate = PIXEL_RATE_HZ as f32;
        pixel_rate / f32::from(self.line_length_pixels())
    }

    /// Shortest frame allowed: output height + [`VBLANK_MIN_LINES`].
    #[must_use]
    pub const fn min_frame_length_lines(self) -> u16 {
        self.height().saturating_add(VBLANK_MIN_LINES)
    }

    /// Frame rate in frames per second for a frame length in lines. A
    /// frame length of 0 gives `f32::INFINITY`.
    #[must_use]
    pub fn frame_rate(self, frame_length_lines: u16) -> f32 {
        self.lines_per_second() / f32::from(frame_length_lines)
    }

    /// Highest frame rate of the mode (at [`Self::min_frame_length_lines`]).
    #[must_use]
    pub fn max_frame_rate(self) -> f32 {
        self.frame_rate(self.min_frame_length_lines())
    }

    /// Lowest frame rate of the mode (at [`FRAME_LENGTH_LINES_MAX`]; the
    /// driver does not use the long-exposure multiplier):
    /// ≈ 0.6346 fps at full resolution, ≈ 1.2086 fps binned.
    #[must_use]
    pub fn min_frame_rate(self) -> f32 {
        self.frame_rate(FRAME_LENGTH_LINES_MAX)
    }

    /// Frame length in lines for a frame rate: `lines_per_second / fps`
    /// rounded **up**, so the frame rate applied never exceeds `fps` (by
    /// more than float rounding: 1/50 of a line is ignored).
    ///
    /// Rounding up makes the nominal rates work: 10 fps at full resolution
    /// gives the shortest frame (4157 lines, 9.9986 fps), 30 fps binned
    /// gives 2639 lines (29.998 fps).
    ///
    /// `None` when `fps` is not a positive finite number, or when the
    /// length falls outside
    /// [`Self::min_frame_length_lines`]`..=`[`FRAME_LENGTH_LINES_MAX`].
    #[must_use]
    pub fn frame_length_lines_for(self, fps: f32) -> Option<u16> {
        if !fps.is_finite() || fps <= 0.0 {
            return None;
        }
        let lines = self.lines_per_second() / fps - FRAME_LENGTH_SLACK_LINES;
        if lines > f32::from(FRAME_LENGTH_LINES_MAX) {
            return None;
        }
        let rounded = ceil_to_u16(lines);
        (rounded >= self.min_frame_length_lines()).then_some(rounded)
    }

    /// Exposure time in microseconds for an exposure in lines.
    #[must_use]
    pub fn exposure_us_from_lines(self, lines: u16) -> f32 {
        f32::from(lines) * MICROSECONDS_PER_SECOND / self.lines_per_second()
    }

    /// Exposure in lines (rounded to nearest) for an exposure time in
    /// microseconds; saturates to `0..=u16::MAX`, `None` for NaN.
    ///
    /// Not yet limited by the frame length: the driver clamps it to
    /// `EXPOSURE_MIN_LINES..=frame_length_lines - EXPOSURE_MARGIN_LINES`.
    #[must_use]
    pub fn exposure_lines_from_us(self, us: f32) -> Option<u16> {
        if us.is_nan() {
            return None;
        }
        Some(round_to_u16(
            us * self.lines_per_second() / MICROSECONDS_PER_SECOND,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f32, want: f32, tolerance: f32) -> bool {
        (got - want).abs() <= tolerance
    }

    #[test]
    fn sizes_and_windows_match_the_kernel_tables() {
        // Output sizes: 0x034C/0x034E = 0x0FD8/0x0BE0 and 0x07EC/0x05F0.
        assert_eq!(
            (Mode::Full4056x3040.width(), Mode::Full4056x3040.height()),
            (4056, 3040)
        );
        assert_eq!(
            (
                Mode::Binned2028x1520.width(),
                Mode::Binned2028x1520.height()
            ),
            (2028, 1520)
        );
        // Window: 0x0344..0x034B = 0, 0, 0x0FD7, 0x0BDF in both tables.
        for mode in Mode::ALL {
            let w = mode.crop();
            assert_eq!(
                (w.x_start, w.y_start, w.x_end(), w.y_end()),
                (0, 0, 0x0FD7, 0x0BDF)
            );
        }
        // Line lengths: 0x0342 = 0x45EC and 0x24B6.
        assert_eq!(Mode::Full4056x3040.line_length_pixels(), 0x45EC);
        assert_eq!(Mode::Binned2028x1520.line_length_pixels(), 0x24B6);
    }

    #[test]
    fn frame_rate_limits() {
        let full = Mode::Full4056x3040;
        let binned = Mode::Binned2028x1520;
        assert_eq!(full.min_frame_length_lines(), 4157);
        assert_eq!(binned.min_frame_length_lines(), 2637);
        assert!(close(full.max_frame_rate(), 9.9986, 1e-3));
        assert!(close(binned.max_frame_rate(), 30.021, 1e-3));
        assert!(close(full.min_frame_rate(), 0.6346, 1e-4));
        assert!(close(binned.min_frame_rate(), 1.2086, 1e-4));
        for mode in Mode::ALL {
            // The limits map back to the extreme frame lengths.
            assert_eq!(
                mode.frame_length_lines_for(mode.max_frame_rate()),
                Some(mode.min_frame_length_lines())
            );
            assert_eq!(
                mode.frame_length_lines_for(mode.min_frame_rate()),
                Some(FRAME_LENGTH_LINES_MAX)
            );
            // A line shorter than the minimum, or longer than the maximum,
            // is refused.
            let too_fast = mode.frame_rate(mode.min_frame_length_lines() - 1);
            assert_eq!(mode.frame_length_lines_for(too_fast), None);
            let too_slow = mode.frame_rate(FRAME_LENGTH_LINES_MAX) * 0.999;
            assert_eq!(mode.frame_length_lines_for(too_slow), None);
        }
    }

    #[test]
    fn frame_lengths_round_up() {
        // 41 564.25 lines/s / 10 = 4156.4 -> 4157.
        assert_eq!(Mode::Full4056x3040.frame_length_lines_for(10.0), Some(4157));
        // 41 564.25 / 5 = 8312.8 -> 8313.
        assert_eq!(Mode::Full4056x3040.frame_length_lines_for(5.0), Some(8313));
        // 79 166.84 / 30 = 2638.9 -> 2639; / 15 = 5277.8 -> 5278.
        assert_eq!(
            Mode::Binned2028x1520.frame_length_lines_for(30.0),
            Some(2639)
        );
        assert_eq!(
            Mode::Binned2028x1520.frame_length_lines_for(15.0),
            Some(5278)
        );
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY, 11.0] {
            assert_eq!(Mode::Full4056x3040.frame_length_lines_for(bad), None);
        }
    }

    #[test]
    fn exposure_conversions() {
        let full = Mode::Full4056x3040;
        let binned = Mode::Binned2028x1520;
        // 10 ms / 24.059 us = 415.6 -> 416; / 12.632 us = 791.7 -> 792.
        assert_eq!(full.exposure_lines_from_us(10_000.0), Some(416));
        assert_eq!(binned.exposure_lines_from_us(10_000.0), Some(792));
        assert!(close(full.exposure_us_from_lines(1), 24.059, 1e-3));
        assert!(close(binned.exposure_us_from_lines(1), 12.632, 1e-3));
        assert_eq!(full.exposure_lines_from_us(f32::NAN), None);
        assert_eq!(full.exposure_lines_from_us(-5.0), Some(0));
        assert_eq!(full.exposure_lines_from_us(1e12), Some(u16::MAX));
    }
}
