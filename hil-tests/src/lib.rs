//! Hardware-in-the-loop support for `tests/hil.rs`: what the tests need to script the simulated
//! IMX219 (a person sprite walking through its scene) and to find a real board's devices.
//!
//! The tests themselves are in `tests/hil.rs`; `hil-tests/README.md` says how to run them on a
//! board.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ocellus::RgbFrame;
use ocellus_imx219::registers as r;
use ocellus_imx219_sim::{Scene, SimError, SimHandle};

/// The part of the pixel array the sensor reads out, in array pixels (from its registers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// First column.
    pub x0: f32,
    /// First row.
    pub y0: f32,
    /// One past the last column.
    pub x1: f32,
    /// One past the last row.
    pub y1: f32,
}

impl Window {
    /// The window the simulated sensor is programmed with now.
    ///
    /// # Errors
    /// A register outside the simulator's map (cannot happen for these four).
    pub fn of(sim: &SimHandle) -> Result<Window, SimError> {
        Ok(Window {
            x0: f32::from(sim.register_u16(r::X_ADDR_START)?),
            y0: f32::from(sim.register_u16(r::Y_ADDR_START)?),
            x1: f32::from(sim.register_u16(r::X_ADDR_END)?) + 1.0,
            y1: f32::from(sim.register_u16(r::Y_ADDR_END)?) + 1.0,
        })
    }

    /// Array pixel → position in the output frame, 0..1 each way.
    fn normalise(&self, ax: f32, ay: f32) -> (f32, f32) {
        (
            (ax - self.x0) / (self.x1 - self.x0),
            (ay - self.y0) / (self.y1 - self.y0),
        )
    }
}

/// A picture (e.g. a person cut out of real footage) moving in a straight line across a plain
/// background, as the simulated sensor's [`Scene`]. Positions are fractions of the output frame;
/// the motion follows the simulator's clock, so it does not depend on how fast the test runs.
#[derive(Debug, Clone)]
pub struct Sprite {
    /// Reflectances, row-major, `width × height`.
    pixels: Vec<[f32; 3]>,
    width: usize,
    height: usize,
    window: Window,
    /// Sprite height as a fraction of the frame height; the width keeps the aspect ratio.
    pub size: f32,
    /// Centre at `t = 0`.
    pub from: (f32, f32),
    /// Centre at `t = walk`; it stays there afterwards.
    pub to: (f32, f32),
    /// How long the walk takes on the sensor's clock.
    pub walk: Duration,
    /// Reflectance of the background.
    pub background: [f32; 3],
}

impl Sprite {
    /// Cut `bbox` (normalised `[x0, y0, x1, y1]`) out of `image` as a sprite for a sensor whose
    /// readout window is `window`. Returns `None` for an empty box.
    pub fn cut(image: &RgbFrame, bbox: [f32; 4], window: Window) -> Option<Sprite> {
        let (w, h) = (image.width() as f32, image.height() as f32);
        let x0 = (bbox[0].clamp(0.0, 1.0) * w) as usize;
        let y0 = (bbox[1].clamp(0.0, 1.0) * h) as usize;
        let x1 = (bbox[2].clamp(0.0, 1.0) * w) as usize;
        let y1 = (bbox[3].clamp(0.0, 1.0) * h) as usize;
        if x1 <= x0 || y1 <= y0 {
            return None;
        }
        let stride = image.width() as usize * 3;
        let mut pixels = Vec::with_capacity((x1 - x0) * (y1 - y0));
        for y in y0..y1 {
            let row = image.data().get(y * stride..(y + 1) * stride)?;
            for px in row.chunks_exact(3).skip(x0).take(x1 - x0) {
                pixels.push([
                    f32::from(px[0]) / 255.0,
                    f32::from(px[1]) / 255.0,
                    f32::from(px[2]) / 255.0,
                ]);
            }
        }
        Some(Sprite {
            pixels,
            width: x1 - x0,
            height: y1 - y0,
            window,
            size: 0.6,
            from: (0.15, 0.5),
            to: (0.85, 0.5),
            walk: Duration::from_secs(6),
            background: [0.42, 0.45, 0.4],
        })
    }

    /// The sprite's centre at time `t`.
    pub fn centre(&self, t: Duration) -> (f32, f32) {
        let k = if self.walk.is_zero() {
            1.0
        } else {
            (t.as_secs_f32() / self.walk.as_secs_f32()).min(1.0)
        };
        (
            self.from.0 + (self.to.0 - self.from.0) * k,
            self.from.1 + (self.to.1 - self.from.1) * k,
        )
    }

    /// Share as the simulator's scene.
    pub fn into_scene(self) -> Arc<dyn Scene> {
        Arc::new(self)
    }
}

impl Scene for Sprite {
    fn reflectance(&self, ax: f32, ay: f32, t: Duration) -> [f32; 3] {
        let (fx, fy) = self.window.normalise(ax, ay);
        let (cx, cy) = self.centre(t);
        let frame_aspect = (self.window.x1 - self.window.x0) / (self.window.y1 - self.window.y0);
        let sh = self.size;
        let sw = sh * self.width as f32 / self.height as f32 / frame_aspect;
        let (u, v) = ((fx - cx) / sw + 0.5, (fy - cy) / sh + 0.5);
        if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) {
            return self.background;
        }
        let (px, py) = (
            (u * self.width as f32) as usize,
            (v * self.height as f32) as usize,
        );
        self.pixels
            .get(py * self.width + px)
            .copied()
            .unwrap_or(self.background)
    }
}

/// The devices of a real board, from `OCELLUS_HIL_I2C` and `OCELLUS_HIL_VIDEO`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hardware {
    /// The sensor's I²C adapter (`/dev/i2c-10` on a Raspberry Pi 4 camera connector).
    pub i2c: Option<PathBuf>,
    /// The V4L2 node that delivers the sensor's pixels as YUYV/NV12/RGB/MJPEG.
    pub video: Option<PathBuf>,
}

impl Hardware {
    /// Read the environment; empty values count as unset.
    pub fn from_env() -> Hardware {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Hardware {
            i2c: var("OCELLUS_HIL_I2C"),
            video: var("OCELLUS_HIL_VIDEO"),
        }
    }
}
