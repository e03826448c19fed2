//! `source.kind = "sensor"`: an IMX219 configured by the `ocellus-imx219` driver over its control
//! bus, with pixels from the same sensor.
//!
//! | bus | control | pixels |
//! |-----|---------|--------|
//! | `sim` | the simulated IMX219 (`ocellus-imx219-sim`) on its in-memory I²C bus | the simulator, rendered from its registers |
//! | `/dev/i2c-N` | `linux-embedded-hal` on the board's I²C adapter | V4L2 (`video = "/dev/videoN"`), e.g. the ISP's output node |
//!
//! The driver programs mode, frame rate, exposure, analogue gain and test pattern before streaming
//! starts. While streaming, the optional [`AutoExposure`] loop measures each frame's brightness and
//! steers exposure (then analogue gain) over the same bus. Register-level violations the simulator
//! records are logged as warnings: a driver bug shows up in the field logs, not as a silent
//! miscount.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use ocellus_imx219::{Imx219, Mode, Streaming, TestPattern};
use ocellus_imx219_sim::{SimHandle, SimImx219};

use super::{Frame, Source, SourceStats, sleep_until};
use crate::error::{Error, Result};
use crate::preprocess::RgbFrame;

pub use super::config::{SensorBus, SpriteConfig};

/// What to program into the sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorSettings {
    /// Readout mode.
    pub mode: Mode,
    /// Frame rate.
    pub fps: f32,
    /// Exposure in µs (`None`: the driver's default); the starting point with auto-exposure.
    pub exposure_us: Option<f32>,
    /// Analogue gain in dB (`None`: 0 dB).
    pub analog_gain_db: Option<f32>,
    /// Test pattern instead of the scene.
    pub pattern: TestPattern,
    /// Steer exposure and gain from the frame brightness.
    pub auto_exposure: bool,
    /// The control bus.
    pub bus: SensorBus,
    /// The V4L2 node that delivers the pixels (a device bus only).
    pub video: Option<PathBuf>,
    /// A picture walking through the simulated scene (the simulator only).
    pub sprite: Option<SpriteConfig>,
}

impl SensorSettings {
    /// The simulated sensor in `mode` at `fps`, everything else at its default.
    pub fn sim(mode: Mode, fps: f32) -> Self {
        SensorSettings {
            mode,
            fps,
            exposure_us: None,
            analog_gain_db: None,
            pattern: TestPattern::None,
            auto_exposure: false,
            bus: SensorBus::Sim,
            video: None,
            sprite: None,
        }
    }
}

/// The driver's controls that stay available while streaming, over any bus (object-safe, so the
/// source does not care which bus type the driver was built on).
pub trait SensorControl: Send {
    /// Exposure in lines.
    fn exposure_lines(&self) -> u16;
    /// The longest exposure the current frame length allows.
    fn max_exposure_lines(&self) -> u16;
    /// Set the exposure (clamped by the driver); returns what was written.
    fn set_exposure_lines(&mut self, lines: u16) -> Result<u16>;
    /// Analogue gain register code (gain = 256 / (256 − code)).
    fn analog_gain_code(&self) -> u8;
    /// Set the analogue gain code (clamped by the driver); returns what was written.
    fn set_analog_gain_code(&mut self, code: u8) -> Result<u8>;
}

fn bus_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Device {
        device: "IMX219".into(),
        message: format!("{what}: {e}"),
    }
}

impl<I, D> SensorControl for Imx219<I, D, Streaming>
where
    I: I2c + Send,
    D: DelayNs + Send,
{
    fn exposure_lines(&self) -> u16 {
        Imx219::exposure_lines(self)
    }
    fn max_exposure_lines(&self) -> u16 {
        Imx219::max_exposure_lines(self)
    }
    fn set_exposure_lines(&mut self, lines: u16) -> Result<u16> {
        Imx219::set_exposure_lines(self, lines).map_err(|e| bus_error("exposure", e))
    }
    fn analog_gain_code(&self) -> u8 {
        Imx219::analog_gain_code(self)
    }
    fn set_analog_gain_code(&mut self, code: u8) -> Result<u8> {
        Imx219::set_analog_gain_code(self, code).map_err(|e| bus_error("analogue gain", e))
    }
}

/// A simple auto-exposure loop: keeps the mean brightness of the frame near a target by changing
/// the exposure first (up to the frame length), then the analogue gain; going darker, gain comes
/// down first. Each step moves part of the way (damping) so a sensor that applies new values a
/// frame or two late does not oscillate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoExposure {
    /// Target mean of all RGB bytes, 0..=255.
    pub target: f32,
    /// No change while the mean is within this fraction of the target.
    pub tolerance: f32,
    /// Fraction (in log space) of the correction applied per step, 0..=1.
    pub damping: f32,
    /// Adjust every this many frames (sensors apply new exposure 1–2 frames late).
    pub every: u32,
}

impl Default for AutoExposure {
    fn default() -> Self {
        AutoExposure {
            target: 110.0,
            tolerance: 0.08,
            damping: 0.7,
            every: 2,
        }
    }
}

/// Largest analogue gain code the loop uses (10.67×, the sensor's maximum).
const AE_MAX_GAIN_CODE: u8 = 232;

impl AutoExposure {
    /// One step from a frame whose mean brightness is `mean` (0..=255). Returns the new
    /// (exposure lines, gain code) when it changed anything.
    ///
    /// # Errors
    /// The bus write failed.
    pub fn step(&self, mean: f64, control: &mut dyn SensorControl) -> Result<Option<(u16, u8)>> {
        let target = f64::from(self.target);
        if (mean - target).abs() <= target * f64::from(self.tolerance) {
            return Ok(None);
        }
        // a black frame says nothing about how far off we are: step by the largest factor
        let ratio = (target / mean.max(1.0)).clamp(0.125, 8.0);
        let ratio = ratio.powf(f64::from(self.damping.clamp(0.05, 1.0)));
        let lines = f64::from(control.exposure_lines());
        let code = control.analog_gain_code();
        let gain = 256.0 / (256.0 - f64::from(code));
        let wanted = lines * gain * ratio;
        let max_lines = f64::from(control.max_exposure_lines());
        let (new_lines, new_gain) = if wanted <= max_lines {
            (wanted.max(1.0), 1.0)
        } else {
            (max_lines, wanted / max_lines)
        };
        let new_code = (256.0 - 256.0 / new_gain)
            .round()
            .clamp(0.0, f64::from(AE_MAX_GAIN_CODE)) as u8;
        let new_lines = new_lines.round().clamp(1.0, f64::from(u16::MAX)) as u16;
        if new_lines == control.exposure_lines() && new_code == code {
            return Ok(None); // at a limit: nothing more to do
        }
        let applied_lines = control.set_exposure_lines(new_lines)?;
        let applied_code = control.set_analog_gain_code(new_code)?;
        Ok(Some((applied_lines, applied_code)))
    }
}

/// Mean of every RGB byte over a sparse grid (every 4th pixel of every 4th row): plenty for
/// exposure control, and 16× cheaper than the whole frame.
pub fn mean_brightness(frame: &RgbFrame) -> f64 {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let data = frame.data();
    let (mut sum, mut n) = (0u64, 0u64);
    for y in (0..h).step_by(4) {
        let Some(row) = data.get(y * w * 3..(y + 1) * w * 3) else {
            break;
        };
        for px in row.chunks_exact(3).step_by(4) {
            sum += px.iter().map(|&b| u64::from(b)).sum::<u64>();
            n += 3;
        }
    }
    if n == 0 { 0.0 } else { sum as f64 / n as f64 }
}

/// The part of the pixel array a sensor reads out, in array pixels, from its registers.
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
    /// [`Error::Device`] if a window register is outside the simulator's map.
    pub fn of(sim: &SimHandle) -> Result<Window> {
        use ocellus_imx219::registers as r;
        let reg = |a| {
            sim.register_u16(a)
                .map(f32::from)
                .map_err(|e| Error::Device {
                    device: "IMX219 (simulated)".into(),
                    message: format!("window register {a:#06x}: {e}"),
                })
        };
        Ok(Window {
            x0: reg(r::X_ADDR_START)?,
            y0: reg(r::Y_ADDR_START)?,
            x1: reg(r::X_ADDR_END)? + 1.0,
            y1: reg(r::Y_ADDR_END)? + 1.0,
        })
    }

    fn normalise(&self, ax: f32, ay: f32) -> (f32, f32) {
        (
            (ax - self.x0) / (self.x1 - self.x0),
            (ay - self.y0) / (self.y1 - self.y0),
        )
    }
}

/// A picture moving in a straight line across a plain background, as the simulated sensor's
/// [`Scene`](ocellus_imx219_sim::Scene): positions are fractions of the output frame, the motion
/// follows the sensor's clock (so it does not depend on how fast frames are consumed), and the
/// brightness still follows exposure and gain.
#[derive(Debug, Clone)]
pub struct Sprite {
    pixels: Vec<[f32; 3]>,
    width: usize,
    height: usize,
    window: Window,
    motion: SpriteConfig,
    /// Reflectance of the background.
    pub background: [f32; 3],
}

impl Sprite {
    /// `image` walking as `motion` says, for a sensor reading out `window`.
    pub fn new(image: &RgbFrame, window: Window, motion: &SpriteConfig) -> Sprite {
        let pixels = image
            .data()
            .chunks_exact(3)
            .map(|p| {
                [
                    f32::from(p[0]) / 255.0,
                    f32::from(p[1]) / 255.0,
                    f32::from(p[2]) / 255.0,
                ]
            })
            .collect();
        Sprite {
            pixels,
            width: image.width() as usize,
            height: image.height() as usize,
            window,
            motion: motion.clone(),
            background: [0.42, 0.45, 0.4],
        }
    }

    /// The sprite's centre at sensor time `t`, as fractions of the frame.
    pub fn centre(&self, t: Duration) -> (f32, f32) {
        let m = &self.motion;
        let k = if m.walk.is_zero() {
            1.0
        } else {
            (t.as_secs_f32() / m.walk.as_secs_f32()).min(1.0)
        };
        (
            m.from[0] + (m.to[0] - m.from[0]) * k,
            m.from[1] + (m.to[1] - m.from[1]) * k,
        )
    }
}

impl ocellus_imx219_sim::Scene for Sprite {
    fn reflectance(&self, ax: f32, ay: f32, t: Duration) -> [f32; 3] {
        let (fx, fy) = self.window.normalise(ax, ay);
        let (cx, cy) = self.centre(t);
        let w = &self.window;
        let frame_aspect = (w.x1 - w.x0) / (w.y1 - w.y0);
        let sh = self.motion.size;
        let sw = sh * self.width as f32 / self.height.max(1) as f32 / frame_aspect;
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

enum Pixels {
    Sim(SimHandle),
    // Built only with the `v4l` feature (a real board); the simulator needs no camera.
    #[cfg_attr(not(all(feature = "v4l", target_os = "linux")), allow(dead_code))]
    Camera(Box<dyn Source>),
}

/// An image sensor as a [`Source`]: see the [module docs](self).
pub struct SensorSource {
    control: Box<dyn SensorControl>,
    pixels: Pixels,
    auto_exposure: Option<AutoExposure>,
    period: Duration,
    seq: u64,
    /// Frame slots of the simulated sensor since it started (delivered or missed).
    tick: u64,
    started: Instant,
    stats: SourceStats,
    describe: String,
}

impl std::fmt::Debug for SensorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensorSource")
            .field("describe", &self.describe)
            .finish_non_exhaustive()
    }
}

/// Program a sensor in standby and start it streaming.
fn bring_up<I, D>(
    name: &str,
    i2c: I,
    delay: D,
    s: &SensorSettings,
) -> Result<Imx219<I, D, Streaming>>
where
    I: I2c,
    D: DelayNs,
    I::Error: std::fmt::Debug,
{
    let err = |what: &str, e: &dyn std::fmt::Display| Error::Device {
        device: name.to_owned(),
        message: format!("{what}: {e}"),
    };
    let mut cam = Imx219::new(i2c, delay).map_err(|(e, _, _)| {
        err(
            "no IMX219 answers (check the wiring, the bus number and that the camera is enabled)",
            &e,
        )
    })?;
    cam.set_mode(s.mode, s.fps).map_err(|e| err("mode", &e))?;
    if let Some(us) = s.exposure_us {
        cam.set_exposure_us(us).map_err(|e| err("exposure", &e))?;
    }
    if let Some(db) = s.analog_gain_db {
        cam.set_analog_gain_db(db)
            .map_err(|e| err("analogue gain", &e))?;
    }
    cam.set_test_pattern(s.pattern)
        .map_err(|e| err("test pattern", &e))?;
    cam.start_streaming()
        .map_err(|(e, _)| err("start streaming", &e))
}

impl SensorSource {
    /// Bring the sensor up as `settings` say: the simulator for [`SensorBus::Sim`], the Linux I²C
    /// adapter and a V4L2 node otherwise.
    ///
    /// # Errors
    /// [`Error::Device`] when the sensor does not answer, refuses a setting, or (on a board) the
    /// I²C adapter or video node cannot be opened.
    pub fn open(settings: &SensorSettings) -> Result<Self> {
        match &settings.bus {
            SensorBus::Sim => Self::open_sim(settings, SimImx219::new()),
            SensorBus::Linux { address, .. } if *address != ocellus_imx219::I2C_ADDRESS => {
                Err(Error::Device {
                    device: "IMX219".into(),
                    message: format!(
                        "source.address = {address:#04x}: the IMX219 answers at {:#04x} only",
                        ocellus_imx219::I2C_ADDRESS
                    ),
                })
            }
            SensorBus::Linux { path, .. } => Self::open_linux(settings, path),
        }
    }

    /// Bring up a simulated IMX219 the caller prepared (a scene set on its handle, a register
    /// poked to inject a fault).
    ///
    /// # Errors
    /// As [`SensorSource::open`].
    pub fn open_sim(settings: &SensorSettings, sim: SimImx219) -> Result<Self> {
        let handle = sim.handle();
        let delay = handle.delay();
        let name = "IMX219 (simulated)";
        let cam = bring_up(name, sim, delay, settings)?;
        if let Some(sp) = &settings.sprite {
            let image = super::load_image(&sp.image)?;
            let window = Window::of(&handle)?;
            handle.set_scene(std::sync::Arc::new(Sprite::new(&image, window, sp)));
        }
        Ok(Self::assemble(
            Box::new(cam),
            Pixels::Sim(handle.clone()),
            handle.frame_duration(),
            settings,
            format!(
                "{name} {}x{} @ {} fps",
                settings.mode.width(),
                settings.mode.height(),
                settings.fps
            ),
        ))
    }

    #[cfg(all(feature = "v4l", target_os = "linux"))]
    fn open_linux(settings: &SensorSettings, bus: &std::path::Path) -> Result<Self> {
        let name = bus.display().to_string();
        let i2c = linux_embedded_hal::I2cdev::new(bus).map_err(|e| Error::Device {
            device: name.clone(),
            message: format!(
                "cannot open the I2C adapter: {e} (is the bus enabled, e.g. dtparam=i2c_vc=on, and may this user open it?)"
            ),
        })?;
        let cam = bring_up(&name, i2c, linux_embedded_hal::Delay, settings)?;
        let video = settings.video.as_deref().ok_or_else(|| Error::Device {
            device: name.clone(),
            message: "a sensor on a device bus needs `source.video`, the V4L2 node of its pixels"
                .into(),
        })?;
        let camera = super::V4l2Source::open(
            video,
            super::v4l2::Request {
                format: None,
                size: Some((settings.mode.width().into(), settings.mode.height().into())),
                fps: Some(f64::from(settings.fps)),
            },
        )?;
        let period = Duration::from_secs_f32(1.0 / settings.fps.max(0.1));
        Ok(Self::assemble(
            Box::new(cam),
            Pixels::Camera(Box::new(camera)),
            period,
            settings,
            format!(
                "IMX219 on {name}, pixels from {} ({}x{} @ {} fps)",
                video.display(),
                settings.mode.width(),
                settings.mode.height(),
                settings.fps
            ),
        ))
    }

    #[cfg(not(all(feature = "v4l", target_os = "linux")))]
    fn open_linux(_settings: &SensorSettings, bus: &std::path::Path) -> Result<Self> {
        Err(Error::Device {
            device: bus.display().to_string(),
            message: "this ocellus was built without Linux I2C/V4L2 support: build on Linux with the `v4l` feature (on by default)".into(),
        })
    }

    fn assemble(
        control: Box<dyn SensorControl>,
        pixels: Pixels,
        period: Duration,
        settings: &SensorSettings,
        describe: String,
    ) -> Self {
        SensorSource {
            control,
            pixels,
            auto_exposure: settings.auto_exposure.then(AutoExposure::default),
            period,
            seq: 0,
            tick: 0,
            started: Instant::now(),
            stats: SourceStats::default(),
            describe,
        }
    }

    /// The simulator's handle (simulated sensors only): set a scene, read registers.
    pub fn sim_handle(&self) -> Option<SimHandle> {
        match &self.pixels {
            Pixels::Sim(h) => Some(h.clone()),
            Pixels::Camera(_) => None,
        }
    }

    /// The driver's live controls (exposure, gain) over the bus.
    pub fn control(&mut self) -> &mut dyn SensorControl {
        self.control.as_mut()
    }

    /// Replace the auto-exposure loop (`None` turns it off).
    pub fn set_auto_exposure(&mut self, ae: Option<AutoExposure>) {
        self.auto_exposure = ae;
    }

    /// Register-level violations the simulated sensor recorded since it was opened (0 when the
    /// driver behaves; always 0 for real sensors). Each is also logged as a warning with the
    /// frame that follows it.
    pub fn violation_count(&self) -> u64 {
        self.sim_handle().map_or(0, |h| h.violation_count())
    }

    fn capture(&mut self) -> Result<Option<(RgbFrame, Duration)>> {
        match &mut self.pixels {
            Pixels::Sim(sim) => {
                // A sensor streams whether or not it is read: slots that passed while the reader
                // was busy are frames the driver would have dropped (counted as lost), as a
                // real camera's would be.
                let slot = |tick: u64| self.period * u32::try_from(tick).unwrap_or(u32::MAX);
                let elapsed = self.started.elapsed();
                if !self.period.is_zero() && elapsed > slot(self.tick + 1) {
                    let now_tick = (elapsed.as_nanos() / self.period.as_nanos()) as u64;
                    let missed = now_tick.saturating_sub(self.tick);
                    self.stats.lost += missed;
                    self.tick = now_tick;
                }
                let t = slot(self.tick);
                self.tick += 1;
                sleep_until(self.started, t);
                let raw = sim.capture().map_err(|e| Error::Device {
                    device: "IMX219 (simulated)".into(),
                    message: format!("capture: {e}"),
                })?;
                // drained each frame: cheap when empty, and each violation is logged once
                let violations = sim.take_violations();
                if !violations.is_empty() {
                    tracing::warn!("the sensor recorded bus violation(s): {violations:?}");
                }
                Ok(Some((RgbFrame::new(raw.width, raw.height, raw.data)?, t)))
            }
            Pixels::Camera(cam) => {
                let f = cam.next_frame()?;
                self.stats = cam.stats();
                // a V4L2 camera always delivers pixels
                Ok(f.and_then(|f| f.image.map(|image| (image, f.t))))
            }
        }
    }
}

impl SensorSource {
    /// The next frame, with this crate's errors.
    fn read_next(&mut self) -> Result<Option<Frame>> {
        let Some((image, t)) = self.capture()? else {
            return Ok(None);
        };
        if let Some(ae) = self.auto_exposure
            && self.seq.is_multiple_of(u64::from(ae.every.max(1)))
        {
            let mean = mean_brightness(&image);
            if let Some((lines, code)) = ae.step(mean, self.control.as_mut())? {
                tracing::debug!("auto-exposure: mean {mean:.0} → {lines} lines, gain code {code}");
            }
        }
        let frame = Frame::new(self.seq, SystemTime::now(), t, image);
        self.seq += 1;
        Ok(Some(frame))
    }
}

impl Source for SensorSource {
    fn next_frame(&mut self) -> ocellus_core::Result<Option<Frame>> {
        Ok(self.read_next()?)
    }
    fn is_live(&self) -> bool {
        true
    }
    fn len_hint(&self) -> Option<u64> {
        None
    }
    fn describe(&self) -> String {
        self.describe.clone()
    }
    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn settings(pattern: TestPattern) -> SensorSettings {
        SensorSettings {
            pattern,
            ..SensorSettings::sim(Mode::Binned640x480, 90.0)
        }
    }

    #[test]
    fn the_simulated_sensor_delivers_colour_bars_of_the_mode_size() {
        let mut s = SensorSource::open(&settings(TestPattern::ColourBars)).unwrap();
        assert!(s.is_live());
        for n in 0..3 {
            let f = s.next_frame().unwrap().unwrap();
            assert_eq!(
                (
                    f.seq,
                    f.image.as_ref().unwrap().width(),
                    f.image.as_ref().unwrap().height()
                ),
                (n, 640, 480)
            );
            // the first bar is white, the last black (centre pixels of the bars)
            assert_eq!(
                &f.image.as_ref().unwrap().data()[(240 * 640 + 40) * 3..][..3],
                &[255, 255, 255]
            );
            assert_eq!(
                &f.image.as_ref().unwrap().data()[(240 * 640 + 600) * 3..][..3],
                &[0, 0, 0]
            );
        }
        assert_eq!(s.violation_count(), 0);
    }

    #[test]
    fn a_frame_rate_the_mode_cannot_reach_is_an_error() {
        let r = SensorSource::open(&SensorSettings::sim(Mode::Full3280x2464, 60.0));
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Device { .. }), "{e:?}");
        assert!(e.to_string().contains("mode"), "{e}");
    }

    #[test]
    fn a_chip_that_is_not_an_imx219_is_refused_with_the_id_it_gave() {
        let sim = SimImx219::new();
        sim.poke(0x0000, 0x04).unwrap();
        sim.poke(0x0001, 0x77).unwrap();
        let e = SensorSource::open_sim(&settings(TestPattern::None), sim).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("no IMX219 answers"), "{msg}");
        assert!(msg.contains("unexpected chip id 0x0477"), "{msg}");
    }

    #[test]
    fn exposure_written_over_the_bus_changes_the_brightness() {
        let mut s = SensorSource::open(&settings(TestPattern::None)).unwrap();
        s.control().set_exposure_lines(100).unwrap();
        let dim = mean_brightness(s.next_frame().unwrap().unwrap().image.as_ref().unwrap());
        s.control().set_exposure_lines(200).unwrap();
        let bright = mean_brightness(s.next_frame().unwrap().unwrap().image.as_ref().unwrap());
        let ratio = bright / dim;
        assert!((1.85..=2.15).contains(&ratio), "{dim} → {bright}");
    }

    #[test]
    fn auto_exposure_brings_a_dark_scene_to_the_target_and_a_bright_one_down() {
        for start_lines in [20u16, 600] {
            let mut s = SensorSource::open(&SensorSettings {
                auto_exposure: true,
                ..settings(TestPattern::None)
            })
            .unwrap();
            s.control().set_exposure_lines(start_lines).unwrap();
            let first = mean_brightness(s.next_frame().unwrap().unwrap().image.as_ref().unwrap());
            let mut last = first;
            for _ in 0..40 {
                last = mean_brightness(s.next_frame().unwrap().unwrap().image.as_ref().unwrap());
            }
            let target = f64::from(AutoExposure::default().target);
            assert!(
                (last - target).abs() <= target * 0.12,
                "start {start_lines} lines: mean {first:.0} → {last:.0}, target {target}"
            );
            assert!((first - target).abs() > target * 0.3, "{first}");
            assert_eq!(s.violation_count(), 0);
        }
    }

    #[test]
    fn auto_exposure_raises_gain_once_the_exposure_is_at_the_frame_length() {
        struct Fake {
            lines: u16,
            code: u8,
        }
        impl SensorControl for Fake {
            fn exposure_lines(&self) -> u16 {
                self.lines
            }
            fn max_exposure_lines(&self) -> u16 {
                1000
            }
            fn set_exposure_lines(&mut self, lines: u16) -> Result<u16> {
                self.lines = lines.min(1000);
                Ok(self.lines)
            }
            fn analog_gain_code(&self) -> u8 {
                self.code
            }
            fn set_analog_gain_code(&mut self, code: u8) -> Result<u8> {
                self.code = code;
                Ok(code)
            }
        }
        let ae = AutoExposure {
            damping: 1.0,
            ..AutoExposure::default()
        };
        let mut c = Fake {
            lines: 1000,
            code: 0,
        };
        // a quarter of the target: 4x more light needed, exposure is at its maximum → gain 4x
        ae.step(27.5, &mut c).unwrap().unwrap();
        assert_eq!((c.lines, c.code), (1000, 192)); // 256 / (256 - 192) = 4
        // far too bright now: gain comes down first, then exposure
        ae.step(110.0 * 8.0, &mut c).unwrap().unwrap();
        assert_eq!(c.code, 0);
        assert_eq!(c.lines, 500);
        // on target: nothing
        assert_eq!(ae.step(112.0, &mut c).unwrap(), None);
    }
}
