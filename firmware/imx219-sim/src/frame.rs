//! Frame synthesis from the register file: geometry checks, test patterns
//! and the synthetic scene.

use std::time::Duration;

use ocellus_imx219::registers as r;
use ocellus_imx219::{
    LINE_LENGTH_PIXELS, PIXEL_ARRAY_HEIGHT, PIXEL_ARRAY_WIDTH, analog_gain_from_code,
    digital_gain_from_code,
};

/// Brightness constant of the synthetic scene (`TEST_PATTERN` = 0): an
/// 8-bit output value is
///
/// `min(255, round(reflectance · exposure_lines · analogue_gain ·
/// digital_gain · SCENE_COUNTS_PER_LINE))`
///
/// with `reflectance` in `0.0..=1.0` per channel (see [`scene_reflectance`]).
/// So doubling the exposure (in lines) or either gain doubles every
/// unsaturated pixel, up to rounding.
pub const SCENE_COUNTS_PER_LINE: f32 = 0.1;

/// Order of the 100 % colour bars (`TEST_PATTERN` = 2 and the top row of
/// the fade-to-grey pattern), left to right before any mirroring: white,
/// yellow, cyan, green, magenta, red, blue, black. Bar `i` covers output
/// columns `i·w/8 .. (i+1)·w/8` (integer division).
pub const COLOUR_BARS: [[u8; 3]; 8] = [
    [255, 255, 255],
    [255, 255, 0],
    [0, 255, 255],
    [0, 255, 0],
    [255, 0, 255],
    [255, 0, 0],
    [0, 0, 255],
    [0, 0, 0],
];

/// Grey level the fade-to-grey bars reach on the last row.
pub const FADE_GREY: u8 = 128;

/// A packed 8-bit RGB frame from [`crate::SimHandle::capture`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbFrameData {
    /// Width in pixels (`X_OUTPUT_SIZE`).
    pub width: u32,
    /// Height in lines (`Y_OUTPUT_SIZE`).
    pub height: u32,
    /// Frame number: 0 for the first frame the simulator produced, then +1
    /// per capture (not reset by `SW_RESET` or standby).
    pub frame_number: u64,
    /// Simulated time at the end of the frame.
    pub timestamp: Duration,
    /// `width · height · 3` bytes, RGB, rows top to bottom.
    pub data: Vec<u8>,
}

impl RgbFrameData {
    /// The `[r, g, b]` pixel at `(x, y)`, `None` outside the frame.
    #[must_use]
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let index = (y as usize * self.width as usize + x as usize) * 3;
        let bytes = self.data.get(index..index + 3)?;
        Some([*bytes.first()?, *bytes.get(1)?, *bytes.get(2)?])
    }

    /// Mean of all bytes (all channels), 0 for an empty frame.
    #[must_use]
    pub fn mean(&self) -> f64 {
        if self.data.is_empty() {
            return 0.0;
        }
        let sum: u64 = self.data.iter().map(|&b| u64::from(b)).sum();
        #[allow(clippy::cast_precision_loss)]
        let mean = sum as f64 / self.data.len() as f64;
        mean
    }
}

/// Readout geometry decoded from the registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    x_start: u16,
    y_start: u16,
    step_x: u16,
    step_y: u16,
    pub(crate) width: u16,
    pub(crate) height: u16,
    h_mirror: bool,
    v_flip: bool,
}

/// Reads a register value from the file (big-endian for 2 bytes).
pub(crate) trait RegisterRead {
    /// 8-bit value at `addr`.
    fn u8_at(&self, addr: u16) -> u8;
    /// 16-bit big-endian value at `addr`, `addr + 1`.
    fn u16_at(&self, addr: u16) -> u16 {
        u16::from_be_bytes([self.u8_at(addr), self.u8_at(addr.wrapping_add(1))])
    }
}

/// Sensor pixels per output pixel for a `BINNING_MODE_*` value.
fn binning_factor(value: u8) -> Option<u16> {
    match value {
        0 => Some(1),
        1 | 3 => Some(2),
        2 => Some(4),
        _ => None,
    }
}

/// Sub-sampling factor for an `*_ODD_INC` value (1 = none, 3 = every other
/// pixel pair).
fn odd_inc_factor(value: u8) -> Option<u16> {
    match value {
        1 => Some(1),
        3 => Some(2),
        _ => None,
    }
}

/// Decodes and checks the readout geometry. The reason string names the
/// inconsistency.
pub(crate) fn geometry(regs: &impl RegisterRead) -> Result<Geometry, &'static str> {
    let x_start = regs.u16_at(r::X_ADDR_START);
    let x_end = regs.u16_at(r::X_ADDR_END);
    let y_start = regs.u16_at(r::Y_ADDR_START);
    let y_end = regs.u16_at(r::Y_ADDR_END);
    if x_end < x_start || x_end >= PIXEL_ARRAY_WIDTH {
        return Err("X_ADDR_START..=X_ADDR_END is empty or outside the 3280-column array");
    }
    if y_end < y_start || y_end >= PIXEL_ARRAY_HEIGHT {
        return Err("Y_ADDR_START..=Y_ADDR_END is empty or outside the 2464-row array");
    }
    let bin_x =
        binning_factor(regs.u8_at(r::BINNING_MODE_H)).ok_or("unsupported BINNING_MODE_H")?;
    let bin_y =
        binning_factor(regs.u8_at(r::BINNING_MODE_V)).ok_or("unsupported BINNING_MODE_V")?;
    let inc_x = odd_inc_factor(regs.u8_at(r::X_ODD_INC)).ok_or("unsupported X_ODD_INC")?;
    let inc_y = odd_inc_factor(regs.u8_at(r::Y_ODD_INC)).ok_or("unsupported Y_ODD_INC")?;
    let step_x = bin_x * inc_x;
    let step_y = bin_y * inc_y;
    let width = regs.u16_at(r::X_OUTPUT_SIZE);
    let height = regs.u16_at(r::Y_OUTPUT_SIZE);
    if width == 0 || width > PIXEL_ARRAY_WIDTH || height == 0 || height > PIXEL_ARRAY_HEIGHT {
        return Err("output size is 0 or larger than 3280 x 2464");
    }
    if (x_end - x_start + 1) / step_x != width {
        return Err("X_OUTPUT_SIZE != window width / (binning x sub-sampling)");
    }
    if (y_end - y_start + 1) / step_y != height {
        return Err("Y_OUTPUT_SIZE != window height / (binning x sub-sampling)");
    }
    let orientation = regs.u8_at(r::IMG_ORIENTATION);
    Ok(Geometry {
        x_start,
        y_start,
        step_x,
        step_y,
        width,
        height,
        h_mirror: orientation & r::IMG_ORIENTATION_H_MIRROR != 0,
        v_flip: orientation & r::IMG_ORIENTATION_V_FLIP != 0,
    })
}

/// Frame period from `FRAME_LENGTH_LINES` × `LINE_LENGTH_PCK` at the
/// driver's 182.4 Mpixel/s pixel rate.
pub(crate) fn frame_duration(regs: &impl RegisterRead) -> Duration {
    let pixels = u64::from(regs.u16_at(r::FRAME_LENGTH_LINES))
        * u64::from(regs.u16_at(r::LINE_LENGTH_PCK).max(LINE_LENGTH_PIXELS));
    Duration::from_nanos(pixels * 1_000_000_000 / u64::from(ocellus_imx219::PIXEL_RATE_HZ))
}

/// Reflectance (`0.0..=1.0` per channel) of the synthetic scene at a point of
/// the active array (`ax` in `0..3280`, `ay` in `0..2464`): a diagonal
/// colour gradient, a bright disc in the centre, a dark square near the
/// top-left corner and a red bar near the bottom-right (asymmetric, so flips
/// are visible).
#[must_use]
pub fn scene_reflectance(ax: f32, ay: f32) -> [f32; 3] {
    let u = ax / f32::from(PIXEL_ARRAY_WIDTH);
    let v = ay / f32::from(PIXEL_ARRAY_HEIGHT);
    let aspect = f32::from(PIXEL_ARRAY_WIDTH) / f32::from(PIXEL_ARRAY_HEIGHT);
    let dx = (u - 0.5) * aspect;
    let dy = v - 0.5;
    if dx * dx + dy * dy < 0.15 * 0.15 {
        return [0.9, 0.9, 0.9];
    }
    if (0.08..0.22).contains(&u) && (0.1..0.28).contains(&v) {
        return [0.05, 0.05, 0.05];
    }
    if (0.7..0.9).contains(&u) && (0.75..0.85).contains(&v) {
        return [0.8, 0.1, 0.1];
    }
    [0.15 + 0.5 * u, 0.15 + 0.5 * v, 0.45 - 0.25 * u]
}

/// The PN9 byte sequence: 511 bytes, each 8 successive output bits (MSB
/// first) of the LFSR x⁹ + x⁵ + 1 seeded with all ones; since gcd(8, 511) = 1
/// the byte sequence also repeats every 511 bytes. Output byte `k` of a frame
/// (raster order before mirroring, 3 bytes per pixel) is `PN9[k % 511]`.
#[must_use]
pub fn pn9_bytes() -> [u8; 511] {
    let mut state: u16 = 0x1FF;
    let mut out = [0_u8; 511];
    for byte in &mut out {
        for _ in 0..8 {
            let bit = ((state >> 8) ^ (state >> 4)) & 1;
            state = ((state << 1) | bit) & 0x1FF;
            *byte = (*byte << 1) | u8::try_from(bit).unwrap_or(0);
        }
    }
    out
}

/// Scales an 8-bit value by a gain, rounding and clipping to 255.
fn scale(value: f32, gain: f32) -> u8 {
    let scaled = (value * gain).round();
    if scaled >= 255.0 {
        255
    } else if scaled <= 0.0 {
        0
    } else {
        // In 0..255 after the checks above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let v = scaled as u8;
        v
    }
}

/// 10-bit test data register → 8 bits (drop the 2 LSBs).
fn ten_to_eight(value: u16) -> u8 {
    u8::try_from((value & 0x3FF) >> 2).unwrap_or(u8::MAX)
}

/// Renders one frame. `geometry` comes from [`geometry`]; `pattern` is the
/// `TEST_PATTERN` value (already checked to be `0..=4`).
pub(crate) fn render(regs: &impl RegisterRead, g: &Geometry, pattern: u16) -> Vec<u8> {
    let w = usize::from(g.width);
    let h = usize::from(g.height);
    let mut data = vec![0_u8; w * h * 3];
    let digital = digital_gain_from_code(regs.u16_at(r::DIGITAL_GAIN));
    let analog = analog_gain_from_code(regs.u8_at(r::ANALOG_GAIN));
    let exposure = f32::from(regs.u16_at(r::COARSE_INTEGRATION_TIME));
    let scene_gain = exposure * analog * digital * SCENE_COUNTS_PER_LINE;
    let solid = [
        ten_to_eight(regs.u16_at(r::TEST_PATTERN_RED)),
        ten_to_eight(
            (regs.u16_at(r::TEST_PATTERN_GREEN_R) & 0x3FF)
                .midpoint(regs.u16_at(r::TEST_PATTERN_GREEN_B) & 0x3FF),
        ),
        ten_to_eight(regs.u16_at(r::TEST_PATTERN_BLUE)),
    ];
    let pn9 = pn9_bytes();
    for (oy, row) in data.chunks_exact_mut(w * 3).enumerate() {
        let sy = if g.v_flip { h - 1 - oy } else { oy };
        let ay = f32::from(g.y_start) + (sy as f32 + 0.5) * f32::from(g.step_y);
        for (ox, px) in row.chunks_exact_mut(3).enumerate() {
            let sx = if g.h_mirror { w - 1 - ox } else { ox };
            let rgb: [u8; 3] = match pattern {
                r::TEST_PATTERN_SOLID_COLOUR => solid.map(|c| scale(f32::from(c), digital)),
                r::TEST_PATTERN_COLOUR_BARS => {
                    let bar = COLOUR_BARS.get(sx * 8 / w).copied().unwrap_or([0; 3]);
                    bar.map(|c| scale(f32::from(c), digital))
                }
                r::TEST_PATTERN_FADE_TO_GREY => {
                    let bar = COLOUR_BARS.get(sx * 8 / w).copied().unwrap_or([0; 3]);
                    let t = if h > 1 {
                        sy as f32 / (h - 1) as f32
                    } else {
                        0.0
                    };
                    bar.map(|c| {
                        let c = f32::from(c);
                        scale(c + (f32::from(FADE_GREY) - c) * t, digital)
                    })
                }
                r::TEST_PATTERN_PN9 => {
                    let k = (sy * w + sx) * 3;
                    [0, 1, 2].map(|c| {
                        let byte = pn9.get((k + c) % pn9.len()).copied().unwrap_or(0);
                        scale(f32::from(byte), digital)
                    })
                }
                _ => {
                    let ax = f32::from(g.x_start) + (sx as f32 + 0.5) * f32::from(g.step_x);
                    scene_reflectance(ax, ay).map(|c| scale(c, scene_gain))
                }
            };
            px.copy_from_slice(&rgb);
        }
    }
    data
}
