//! Sensor modes: readout window, binning, output size and frame timing.

use crate::conversion::{frame_rate_from_frame_length, lines_per_second};
use crate::math::round_to_u16;
use crate::{
    FRAME_LENGTH_LINES_MAX, PIXEL_ARRAY_HEIGHT, PIXEL_ARRAY_WIDTH, VBLANK_MIN_LINES, registers,
};

/// A rectangle of the active pixel array, in active-array coordinates
/// (`0..3280` × `0..2464`), as programmed into `X_ADDR_START` ..
/// `Y_ADDR_END`.
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
    /// A `width` × `height` window centred in the active array (rounded
    /// towards the top-left corner; sizes larger than the array saturate the
    /// start to 0).
    #[must_use]
    pub const fn centred(width: u16, height: u16) -> Self {
        Self {
            x_start: PIXEL_ARRAY_WIDTH.saturating_sub(width) / 2,
            y_start: PIXEL_ARRAY_HEIGHT.saturating_sub(height) / 2,
            width,
            height,
        }
    }

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
    /// 2 × 2 binning: the window is halved on each axis
    /// ([`registers::BINNING_X2`], the RAW10 binning of the Linux driver).
    X2,
}

impl Binning {
    /// Value written to `BINNING_MODE_H` and `BINNING_MODE_V`.
    #[must_use]
    pub const fn register_value(self) -> u8 {
        match self {
            Self::None => registers::BINNING_NONE,
            Self::X2 => registers::BINNING_X2,
        }
    }

    /// Number of sensor pixels per output pixel along each axis.
    #[must_use]
    pub const fn factor(self) -> u16 {
        match self {
            Self::None => 1,
            Self::X2 => 2,
        }
    }
}

/// The readout modes of the Linux driver / Raspberry Pi firmware, RAW10.
///
/// The maximum frame rates follow from the 182.4 Mpixel/s pixel rate, the
/// 3448-pixel line and the 32-line minimum vertical blanking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// 3280 × 2464, full field of view, no binning; up to 21.19 fps.
    #[default]
    Full3280x2464,
    /// 1920 × 1080, centre crop of the array (narrower field of view), no
    /// binning; up to 47.57 fps.
    Crop1920x1080,
    /// 1640 × 1232, full field of view, 2 × 2 binned; up to 41.85 fps.
    Binned1640x1232,
    /// 640 × 480, 2 × 2 binned from a 1280 × 960 centre crop; up to
    /// 103.32 fps.
    Binned640x480,
}

impl Mode {
    /// Every mode, in the order of the Linux driver's mode table.
    pub const ALL: [Self; 4] = [
        Self::Full3280x2464,
        Self::Crop1920x1080,
        Self::Binned1640x1232,
        Self::Binned640x480,
    ];

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

    /// The part of the active array that is read out.
    #[must_use]
    pub const fn crop(self) -> Window {
        match self {
            Self::Full3280x2464 | Self::Binned1640x1232 => {
                Window::centred(PIXEL_ARRAY_WIDTH, PIXEL_ARRAY_HEIGHT)
            }
            Self::Crop1920x1080 => Window::centred(1920, 1080),
            Self::Binned640x480 => Window::centred(1280, 960),
        }
    }

    /// Binning applied to the window.
    #[must_use]
    pub const fn binning(self) -> Binning {
        match self {
            Self::Full3280x2464 | Self::Crop1920x1080 => Binning::None,
            Self::Binned1640x1232 | Self::Binned640x480 => Binning::X2,
        }
    }

    /// Shortest frame allowed: output height + [`VBLANK_MIN_LINES`].
    #[must_use]
    pub const fn min_frame_length_lines(self) -> u16 {
        self.height().saturating_add(VBLANK_MIN_LINES)
    }

    /// Highest frame rate of the mode (at [`Self::min_frame_length_lines`]).
    #[must_use]
    pub fn max_frame_rate(self) -> f32 {
        frame_rate_from_frame_length(self.min_frame_length_lines())
    }

    /// Lowest frame rate of any mode (at [`FRAME_LENGTH_LINES_MAX`],
    /// ≈ 0.807 fps).
    #[must_use]
    pub fn min_frame_rate() -> f32 {
        frame_rate_from_frame_length(FRAME_LENGTH_LINES_MAX)
    }

    /// Frame length (VTS) in lines for a frame rate: the nearest whole number
    /// of lines to `PIXEL_RATE_HZ / (LINE_LENGTH_PIXELS · fps)`.
    ///
    /// `None` when `fps` is not a positive finite number, or when the frame
    /// length would fall outside
    /// [`Self::min_frame_length_lines`]`..=`[`FRAME_LENGTH_LINES_MAX`], i.e.
    /// the rate is above [`Self::max_frame_rate`] or below
    /// [`Self::min_frame_rate`].
    ///
    /// E.g. 30 fps → 1763 lines (30.006 fps), 15 fps → 3527 lines
    /// (14.9996 fps).
    #[must_use]
    pub fn frame_length_lines_for(self, fps: f32) -> Option<u16> {
        if !fps.is_finite() || fps <= 0.0 {
            return None;
        }
        let lines = lines_per_second() / fps;
        // Beyond this the nearest whole number of lines exceeds 0xFFFF.
        if lines >= f32::from(FRAME_LENGTH_LINES_MAX) + 0.5 {
            return None;
        }
        let rounded = round_to_u16(lines);
        (rounded >= self.min_frame_length_lines()).then_some(rounded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes() {
        let sizes: [(u16, u16); 4] = [(3280, 2464), (1920, 1080), (1640, 1232), (640, 480)];
        for (mode, size) in Mode::ALL.into_iter().zip(sizes) {
            assert_eq!((mode.width(), mode.height()), size, "{mode:?}");
        }
    }

    #[test]
    fn windows_match_the_linux_mode_table() {
        // (x_start, x_end, y_start, y_end) as in the Linux/RPi register lists.
        let expected: [(u16, u16, u16, u16); 4] = [
            (0, 3279, 0, 2463),
            (680, 2599, 692, 1771),
            (0, 3279, 0, 2463),
            (1000, 2279, 752, 1711),
        ];
        for (mode, (xs, xe, ys, ye)) in Mode::ALL.into_iter().zip(expected) {
            let w = mode.crop();
            assert_eq!(
                (w.x_start, w.x_end(), w.y_start, w.y_end()),
                (xs, xe, ys, ye),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn frame_rate_limits() {
        let max = [21.19, 47.57, 41.85, 103.32];
        for (mode, max) in Mode::ALL.into_iter().zip(max) {
            let got = mode.max_frame_rate();
            assert!(got > max - 0.01 && got < max + 0.01, "{mode:?}: {got}");
            // The advertised maximum itself is accepted and gives the
            // shortest frame; anything noticeably above is refused.
            assert_eq!(
                mode.frame_length_lines_for(got),
                Some(mode.min_frame_length_lines())
            );
            assert_eq!(mode.frame_length_lines_for(got * 1.01), None);
        }
        let min = Mode::min_frame_rate();
        assert!(min > 0.807 && min < 0.808, "{min}");
        assert_eq!(
            Mode::Full3280x2464.frame_length_lines_for(min),
            Some(0xFFFF)
        );
        assert_eq!(Mode::Full3280x2464.frame_length_lines_for(min * 0.99), None);
    }

    #[test]
    fn frame_length_for_common_rates() {
        assert_eq!(Mode::Full3280x2464.frame_length_lines_for(15.0), Some(3527));
        assert_eq!(
            Mode::Binned1640x1232.frame_length_lines_for(30.0),
            Some(1763)
        );
        assert_eq!(Mode::Binned640x480.frame_length_lines_for(90.0), Some(588));
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert_eq!(Mode::Binned640x480.frame_length_lines_for(bad), None);
        }
    }
}
