//! Frame synthesis from the register file: geometry checks, test patterns
//! and the rendering of the [`Scene`] (by default the synthetic scene).

use std::time::Duration;

use ocellus_imx219::registers as r;
use ocellus_imx219::{
    LINE_LENGTH_PIXELS, PIXEL_ARRAY_HEIGHT, PIXEL_ARRAY_WIDTH, analog_gain_from_code,
    digital_gain_from_code,
};

use crate::scene::Scene;

/// Brightness constant of the synthetic scene (`TEST_PATTERN` = 0): an
/// 8-bit output value is
///
/// `min(255, round(reflectance · exposure_lines · analogue_gain ·
/// digital_gain · SCENE_COUNTS_PER_LINE))`
///
/// with `reflectance` in `0.0..=1.0` per channel from the current
/// [`crate::Scene`] (by default [`scene_reflectance`]; see
/// [`crate::SimHandle::set_scene`]).
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
/// are visible). It does not change with time; [`crate::DefaultScene`] is it
/// as a [`crate::Scene`].
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

/// Scales an 8-bit value by a gain, rounding (half away from zero, as
/// [`f32::round`]) and clipping to `0..=255`; NaN gives 0.
///
/// Written without [`f32::round`], which is a library call on baseline
/// x86-64 and was most of the render time; the result is identical.
fn scale(value: f32, gain: f32) -> u8 {
    let x = value * gain;
    if x.is_nan() || x < 0.5 {
        // Rounds to 0 (or is negative / NaN).
        0
    } else if x >= 254.5 {
        // Rounds to 255 or more.
        255
    } else {
        // 0.5 <= x < 254.5: the truncation is in 0..=254 and the
        // fractional part `x - t` is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let t = x as u8;
        if x - f32::from(t) >= 0.5 { t + 1 } else { t }
    }
}

/// 10-bit test data register → 8 bits (drop the 2 LSBs).
fn ten_to_eight(value: u16) -> u8 {
    u8::try_from((value & 0x3FF) >> 2).unwrap_or(u8::MAX)
}

/// Everything needed to render one frame, read from the register file
/// (under the simulator's lock) so that rendering itself needs neither the
/// registers nor the lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Render {
    geometry: Geometry,
    /// `TEST_PATTERN` (already checked to be `0..=4`).
    pattern: u16,
    /// Digital gain (patterns and scene).
    digital: f32,
    /// exposure_lines · analogue_gain · digital_gain · [`SCENE_COUNTS_PER_LINE`].
    scene_gain: f32,
    /// The solid-colour pattern's 8-bit colour before the digital gain.
    solid: [u8; 3],
}

impl Render {
    /// Snapshot of the registers for one frame. `geometry` comes from
    /// [`geometry`]; `pattern` is the `TEST_PATTERN` value (already checked
    /// to be `0..=4`).
    pub(crate) fn new(regs: &impl RegisterRead, geometry: Geometry, pattern: u16) -> Self {
        let digital = digital_gain_from_code(regs.u16_at(r::DIGITAL_GAIN));
        let analog = analog_gain_from_code(regs.u8_at(r::ANALOG_GAIN));
        let exposure = f32::from(regs.u16_at(r::COARSE_INTEGRATION_TIME));
        let solid = [
            ten_to_eight(regs.u16_at(r::TEST_PATTERN_RED)),
            ten_to_eight(
                (regs.u16_at(r::TEST_PATTERN_GREEN_R) & 0x3FF)
                    .midpoint(regs.u16_at(r::TEST_PATTERN_GREEN_B) & 0x3FF),
            ),
            ten_to_eight(regs.u16_at(r::TEST_PATTERN_BLUE)),
        ];
        Self {
            geometry,
            pattern,
            digital,
            scene_gain: exposure * analog * digital * SCENE_COUNTS_PER_LINE,
            solid,
        }
    }

    /// Renders the frame: the test pattern, or (`TEST_PATTERN` = 0) `scene`
    /// as it is at time `t` (the start of the frame), sampled once per
    /// output pixel at the centre of the array block the pixel covers.
    pub(crate) fn run(&self, scene: &dyn Scene, t: Duration) -> Vec<u8> {
        let g = &self.geometry;
        let w = usize::from(g.width);
        let h = usize::from(g.height);
        let mut data = vec![0_u8; w * h * 3];
        if self.pattern == r::TEST_PATTERN_DISABLED {
            self.render_scene(&mut data, scene, t);
        } else {
            self.render_pattern(&mut data);
        }
        data
    }

    /// Array x coordinate (pixel units) sampled for output column `sx`
    /// (before mirroring).
    fn array_x(&self, sx: usize) -> f32 {
        let g = &self.geometry;
        f32::from(g.x_start) + (sx as f32 + 0.5) * f32::from(g.step_x)
    }

    /// Array y coordinate (pixel units) sampled for output row `sy` (before
    /// flipping).
    fn array_y(&self, sy: usize) -> f32 {
        let g = &self.geometry;
        f32::from(g.y_start) + (sy as f32 + 0.5) * f32::from(g.step_y)
    }

    fn render_scene(&self, data: &mut [u8], scene: &dyn Scene, t: Duration) {
        let g = &self.geometry;
        let w = usize::from(g.width);
        let h = usize::from(g.height);
        // Column coordinates are the same on every row.
        let columns: Vec<f32> = (0..w)
            .map(|ox| self.array_x(if g.h_mirror { w - 1 - ox } else { ox }))
            .collect();
        for (oy, row) in data.chunks_exact_mut(w * 3).enumerate() {
            let ay = self.array_y(if g.v_flip { h - 1 - oy } else { oy });
            for (px, &ax) in row.chunks_exact_mut(3).zip(&columns) {
                let rgb = scene
                    .reflectance(ax, ay, t)
                    .map(|c| scale(c, self.scene_gain));
                px.copy_from_slice(&rgb);
            }
        }
    }

    fn render_pattern(&self, data: &mut [u8]) {
        let g = &self.geometry;
        let w = usize::from(g.width);
        let h = usize::from(g.height);
        let digital = self.digital;
        let pn9 = pn9_bytes();
        for (oy, row) in data.chunks_exact_mut(w * 3).enumerate() {
            let sy = if g.v_flip { h - 1 - oy } else { oy };
            for (ox, px) in row.chunks_exact_mut(3).enumerate() {
                let sx = if g.h_mirror { w - 1 - ox } else { ox };
                let rgb: [u8; 3] = match self.pattern {
                    r::TEST_PATTERN_SOLID_COLOUR => {
                        self.solid.map(|c| scale(f32::from(c), digital))
                    }
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
                    // Checked by the caller to be 0..=4; 0 is the scene.
                    _ => [0; 3],
                };
                px.copy_from_slice(&rgb);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scale;

    /// The reference: what `scale` computed before it avoided `f32::round`.
    fn reference(value: f32, gain: f32) -> u8 {
        let scaled = (value * gain).round();
        if scaled >= 255.0 {
            255
        } else if scaled <= 0.0 {
            0
        } else {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let v = scaled as u8;
            v
        }
    }

    #[test]
    fn scale_matches_f32_round() {
        // Every f32 in -1.0..=300.0 near the rounding boundaries, and a
        // dense sweep in between.
        let mut values = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
        for k in -2..=600 {
            let edge = k as f32 * 0.5;
            let mut below = edge;
            let mut above = edge;
            for _ in 0..4 {
                below = below.next_down();
                above = above.next_up();
                values.extend([below, above]);
            }
            values.push(edge);
        }
        values.extend((0..3_000_000).map(|i| i as f32 * 1e-4 - 1.0));
        for v in values {
            assert_eq!(scale(v, 1.0), reference(v, 1.0), "{v:e}");
        }
        assert_eq!(scale(0.3, 20.000_000_3), reference(0.3, 20.000_000_3));
    }
}
