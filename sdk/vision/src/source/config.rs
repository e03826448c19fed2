//! What a source is asked to be: the `[source]` section of a deployment config, once checked.
//!
//! These types live with the sources rather than with the config parser so that a source (and a
//! program that builds one by hand) never depends on the TOML layer; `crate::config` fills them
//! in from the file and reports its errors.

use std::path::PathBuf;

use super::convert::PixelFormat;

/// Default `source.address` of a sensor on a Linux I2C bus: the IMX219's 7-bit address.
pub const DEFAULT_SENSOR_ADDRESS: u8 = 0x10;

/// `[source]`: where frames come from. New kinds are added without a breaking change.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SourceConfig {
    /// A video file or an RTSP stream (`kind = "video"`).
    Video {
        /// The file (resolved against the config file's directory) or the URL.
        input: VideoInput,
        /// Pace the source at this many frames per second (`None`: as fast as inference allows).
        fps: Option<f64>,
        /// Restart at the end of the file (`loop = true`; always `false` for URLs).
        looped: bool,
    },
    /// A directory of images or a glob such as `dir/*.png` (`kind = "images"`).
    Images {
        /// The directory or glob, resolved against the config file's directory.
        pattern: PathBuf,
        /// Pace the source at this many frames per second (`None`: as fast as inference allows).
        fps: Option<f64>,
        /// Start again after the last image.
        looped: bool,
    },
    /// An IMX219 image sensor configured over its control bus by the `ocellus-imx219` driver
    /// (`kind = "sensor"`): the simulated sensor (`bus = "sim"`), or a real one on a Linux I2C
    /// adapter with its pixels from a V4L2 device.
    Sensor {
        /// How the driver reaches the sensor's registers.
        bus: SensorBus,
        /// Where the pixels come from on a board (`Some` exactly when `bus` is
        /// [`SensorBus::Linux`]; the simulator makes its own pixels).
        video: Option<PathBuf>,
        /// Readout mode.
        mode: ocellus_imx219::Mode,
        /// Sensor frame rate.
        fps: f64,
        /// Exposure time in microseconds (`None`: the driver's default); with `auto_exposure`,
        /// the starting value.
        exposure_us: Option<f64>,
        /// Analogue gain in dB (`None`: 0 dB).
        analog_gain_db: Option<f64>,
        /// Exposure (and then analogue gain) follow the frame brightness.
        auto_exposure: bool,
        /// Test pattern instead of the scene (the config names `none`, `colour-bars`,
        /// `fade-to-grey` and `pn9`).
        test_pattern: ocellus_imx219::TestPattern,
        /// A picture walking through the simulated sensor's scene (`[source.sprite]`, `bus = "sim"`
        /// only): rehearse a deployment's lines and zones without a camera.
        sprite: Option<SpriteConfig>,
    },
    /// A V4L2 capture device such as a USB camera (`kind = "v4l2"`, Linux, the `v4l` feature).
    V4l2 {
        /// The device node, e.g. `/dev/video0`.
        device: PathBuf,
        /// The pixel format to ask for (`None`: the source picks the best the device offers).
        format: Option<PixelFormat>,
        /// The frame size to ask for (`None`: the device's current size).
        size: Option<(u32, u32)>,
        /// The frame rate to ask for (`None`: the device's current rate).
        fps: Option<f64>,
    },
    /// A sensor that runs the network itself, Sony's IMX500 (`kind = "imx500"`): the host reads
    /// its output tensors, not pixels, and runs no model.
    Imx500(crate::imx500::Imx500Settings),
    /// Generated frames with moving boxes, for tests and demos (`kind = "synthetic"`).
    Synthetic {
        /// Frame width in pixels, 16..=4096 (default 640).
        width: u32,
        /// Frame height in pixels, 16..=4096 (default 480).
        height: u32,
        /// Number of frames, 1..=1,000,000 (default 300).
        frames: u64,
        /// Number of moving objects, 1..=64 (default 3).
        objects: u32,
        /// Random seed (default 0): the same seed gives the same frames.
        seed: u64,
        /// Pace the source at this many frames per second (`None`: as fast as inference allows).
        fps: Option<f64>,
    },
}

impl SourceConfig {
    /// The `kind` as written in the file: `"video"`, `"images"`, `"synthetic"`, `"sensor"`,
    /// `"v4l2"` or `"imx500"`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Video { .. } => "video",
            SourceConfig::Images { .. } => "images",
            SourceConfig::Synthetic { .. } => "synthetic",
            SourceConfig::Sensor { .. } => "sensor",
            SourceConfig::V4l2 { .. } => "v4l2",
            SourceConfig::Imx500(_) => "imx500",
        }
    }

    /// The frame rate asked for: the pacing rate of a file, the sensor's frame rate, the rate
    /// requested from a V4L2 device (`None`: as fast as inference allows, or the device's own).
    pub fn fps(&self) -> Option<f64> {
        match self {
            SourceConfig::Video { fps, .. }
            | SourceConfig::Images { fps, .. }
            | SourceConfig::Synthetic { fps, .. }
            | SourceConfig::V4l2 { fps, .. } => *fps,
            SourceConfig::Sensor { fps, .. } => Some(*fps),
            SourceConfig::Imx500(s) => s.fps,
        }
    }
}

/// `[source.sprite]`: a picture (e.g. a person cut out of a photo) that walks in a straight line
/// through the simulated sensor's scene, on the sensor's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct SpriteConfig {
    /// The picture (PNG or JPEG), resolved against the config file's directory.
    pub image: PathBuf,
    /// Centre at the start, as fractions of the frame (default `[0.15, 0.5]`).
    pub from: [f32; 2],
    /// Centre at the end, where it stays (default `[0.85, 0.5]`).
    pub to: [f32; 2],
    /// Height as a fraction of the frame height, 0.05..=1 (default 0.6).
    pub size: f32,
    /// How long the walk takes, in seconds of sensor time, 0..=3600 (default 6).
    pub walk: std::time::Duration,
}

/// `source.bus` of a sensor source: how the driver reaches the sensor's registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorBus {
    /// The simulated IMX219 (`bus = "sim"`).
    Sim,
    /// A Linux I2C adapter (`bus = "/dev/i2c-N"`) and the sensor's 7-bit address.
    Linux {
        /// The adapter's device node, e.g. `/dev/i2c-1`.
        path: PathBuf,
        /// The sensor's 7-bit address, 0x08..=0x77 (default [`DEFAULT_SENSOR_ADDRESS`]).
        address: u8,
    },
}

/// Where a `video` source reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoInput {
    /// A video file, resolved against the config file's directory.
    File(PathBuf),
    /// An `rtsp://` or `rtsps://` URL, as written.
    Url(String),
}
