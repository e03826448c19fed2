//! Value types for the image controls.

use crate::TEST_PATTERN_COLOUR_MAX;
use crate::registers;

/// Output of the built-in test pattern generator.
///
/// The pattern replaces the image from the pixel array but still goes
/// through the readout window, binning and digital gain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TestPattern {
    /// Test pattern off: normal image.
    #[default]
    None,
    /// A solid colour, given per Bayer channel as 10-bit values
    /// (`0..=0x3FF`; wider values are rejected with `Error::InvalidInput`).
    Solid {
        /// Red.
        r: u16,
        /// Green on red rows.
        gr: u16,
        /// Blue.
        b: u16,
        /// Green on blue rows.
        gb: u16,
    },
    /// 100 % colour bars.
    ColourBars,
    /// Colour bars fading to grey.
    FadeToGreyColourBars,
    /// PN9 pseudo-random pattern.
    Pn9,
}

impl TestPattern {
    /// Value written to `TEST_PATTERN`.
    #[must_use]
    pub const fn register_value(self) -> u16 {
        match self {
            Self::None => registers::TEST_PATTERN_DISABLED,
            Self::Solid { .. } => registers::TEST_PATTERN_SOLID_COLOUR,
            Self::ColourBars => registers::TEST_PATTERN_COLOUR_BARS,
            Self::FadeToGreyColourBars => registers::TEST_PATTERN_FADE_TO_GREY,
            Self::Pn9 => registers::TEST_PATTERN_PN9,
        }
    }

    /// Whether every colour value fits the 10-bit test-data registers.
    #[must_use]
    pub const fn is_valid(self) -> bool {
        match self {
            Self::Solid { r, gr, b, gb } => {
                r <= TEST_PATTERN_COLOUR_MAX
                    && gr <= TEST_PATTERN_COLOUR_MAX
                    && b <= TEST_PATTERN_COLOUR_MAX
                    && gb <= TEST_PATTERN_COLOUR_MAX
            }
            Self::None | Self::ColourBars | Self::FadeToGreyColourBars | Self::Pn9 => true,
        }
    }
}

/// Colour filter order of the first two rows of the output image, which
/// changes with mirroring and flipping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BayerOrder {
    /// R G / G B: no mirror, no flip.
    Rggb,
    /// G R / B G: horizontal mirror.
    Grbg,
    /// G B / R G: vertical flip.
    Gbrg,
    /// B G / G R: mirror and flip.
    Bggr,
}

impl BayerOrder {
    /// The order produced for the given mirror / flip settings.
    #[must_use]
    pub const fn from_flip(h_mirror: bool, v_flip: bool) -> Self {
        match (h_mirror, v_flip) {
            (false, false) => Self::Rggb,
            (true, false) => Self::Grbg,
            (false, true) => Self::Gbrg,
            (true, true) => Self::Bggr,
        }
    }
}
