//! The deployment config (`ocellus run --config FILE`), validated at start-up.
//!
//! Pilots write this TOML file by hand, so everything is checked before anything starts: unknown
//! keys, wrong types, missing keys, every range, the names that end up in MQTT topics, the model
//! card (it must load) and the labels (they must exist in the card). The first problem found is
//! returned as [`Error::Config`] naming the file, the line and the dotted key, e.g.
//!
//! ```text
//! site.toml:14: `rules.line[0].a`: x = 1.5 is outside 0..=1 (coordinates are normalised: 0 is the left/top edge, 1 the right/bottom edge)
//! ```
//!
//! Relative paths in the file (`runtime.onnxruntime`, `source.path`, `source.device`,
//! `source.video`, `model.card`, `mqtt.ca_file`, `mqtt.client_cert`, `mqtt.client_key`,
//! `mqtt.password_file`, `queue.dir`) are resolved against the directory of the config file, never
//! against the working directory. The TLS files and the password are read (and checked) when the
//! config is loaded; a password never appears in a message. The format is
//! documented for pilots in `docs/config.md`; [`Config::example`] is a complete, commented example.
//!
//! ```no_run
//! # fn main() -> Result<(), ocellus::Error> {
//! let cfg = ocellus::config::Config::load(std::path::Path::new("site.toml"))?;
//! match &cfg.source {
//!     ocellus::config::SourceConfig::Video { input, .. } => println!("video {input:?}"),
//!     ocellus::config::SourceConfig::Images { pattern, .. } => println!("images {}", pattern.display()),
//!     ocellus::config::SourceConfig::Synthetic { frames, .. } => println!("{frames} synthetic frames"),
//!     ocellus::config::SourceConfig::Sensor { mode, fps, .. } => println!("sensor {mode:?} at {fps} fps"),
//!     other => println!("{}", other.kind()), // new kinds are added without a major version
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::card::ModelCard;
use crate::error::{Error, Result};
use crate::rules::{LineRule, RulesConfig, ZoneRule};
use crate::track::TrackerConfig;

/// Largest config file accepted.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// MQTT port used when an `mqtt://` URL names none.
pub const DEFAULT_MQTT_PORT: u16 = 1883;
/// MQTT port used when an `mqtts://` URL names none.
pub const DEFAULT_MQTTS_PORT: u16 = 8883;
/// Default `mqtt.topic_prefix`.
pub const DEFAULT_TOPIC_PREFIX: &str = "ocellus";
/// Default `mqtt.keep_alive_s`.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Default `source.address` of a sensor on a Linux I2C bus: the IMX219's 7-bit address.
pub const DEFAULT_SENSOR_ADDRESS: u8 = 0x10;

const MAX_DEVICE_ID: usize = 128;
const MAX_RULE_NAME: usize = 64;
const MAX_CLIENT_ID: usize = 128;
const MAX_TOPIC_PREFIX: usize = 256;
/// Largest `mqtt.password_file` read: a password is on its first line.
const MAX_PASSWORD_FILE: u64 = 64 << 10;
const MAX_POLYGON_POINTS: usize = 256;
const MIN_POLYGON_AREA: f64 = 1e-6;
const NAME_CHARS: &str = "letters A-Z a-z, digits 0-9, '.', '_' and '-'";
const DOCS: &str = "docs/config.md";

/// A validated deployment config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (as given to [`Config::load`] / [`Config::parse`]).
    pub path: PathBuf,
    /// `[device]`.
    pub device: DeviceConfig,
    /// `[runtime]`.
    pub runtime: RuntimeConfig,
    /// `[source]`.
    pub source: SourceConfig,
    /// `[model]`, with the model card loaded.
    pub model: ModelConfig,
    /// `[tracker]` (defaults when the section is absent).
    pub tracker: TrackerConfig,
    /// `[rules]`, `[[rules.line]]` and `[[rules.zone]]`.
    pub rules: RulesSection,
    /// `[mqtt]`; with `[cloud]`, the connection the cloud profile makes.
    pub mqtt: MqttConfig,
    /// `[cloud]`: Azure IoT Hub or AWS IoT Core (`None`: a plain MQTT broker).
    pub cloud: Option<CloudConfig>,
    /// `[queue]`: the on-disk event queue (defaults when the section is absent).
    pub queue: QueueConfig,
    /// `[health]` (defaults when the section is absent).
    pub health: HealthConfig,
}

/// `[device]`: who this camera is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Device id, 1 to 128 characters of `[A-Za-z0-9._-]` (it becomes part of MQTT topics).
    pub id: String,
}

/// `[runtime]`: how ONNX Runtime is found and run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The ONNX Runtime shared library, resolved against the config file's directory (`None`: the
    /// usual search, see `docs/onnxruntime.md`).
    pub onnxruntime: Option<PathBuf>,
    /// ORT intra-op threads, 1..=64 (`None`: ORT's default).
    pub threads: Option<usize>,
}

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
        /// Test pattern instead of the scene.
        test_pattern: SensorPattern,
        /// A picture walking through the simulated sensor's scene (`[source.sprite]`, `bus = "sim"`
        /// only): rehearse a deployment's lines and zones without a camera.
        sprite: Option<SpriteConfig>,
    },
    /// A V4L2 capture device such as a USB camera (`kind = "v4l2"`, Linux, the `v4l` feature).
    V4l2 {
        /// The device node, e.g. `/dev/video0`.
        device: PathBuf,
        /// The pixel format to ask for (`None`: the source picks the best the device offers).
        format: Option<crate::source::convert::PixelFormat>,
        /// The frame size to ask for (`None`: the device's current size).
        size: Option<(u32, u32)>,
        /// The frame rate to ask for (`None`: the device's current rate).
        fps: Option<f64>,
    },
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
    /// The `kind` as written in the file: `"video"`, `"images"`, `"synthetic"`, `"sensor"` or
    /// `"v4l2"`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Video { .. } => "video",
            SourceConfig::Images { .. } => "images",
            SourceConfig::Synthetic { .. } => "synthetic",
            SourceConfig::Sensor { .. } => "sensor",
            SourceConfig::V4l2 { .. } => "v4l2",
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

/// `source.test_pattern` of a sensor source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorPattern {
    /// The scene (no pattern).
    None,
    /// 100 % colour bars.
    ColourBars,
    /// Colour bars fading to grey.
    FadeToGrey,
    /// PN9 pseudo-random data.
    Pn9,
}

/// Where a `video` source reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoInput {
    /// A video file, resolved against the config file's directory.
    File(PathBuf),
    /// An `rtsp://` or `rtsps://` URL, as written.
    Url(String),
}

/// `[model]`: the detector.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The card file, resolved against the config file's directory.
    pub card_path: PathBuf,
    /// The loaded card.
    pub card: ModelCard,
    /// Score threshold, 0..=1 (`None`: the card's `score_threshold`).
    pub threshold: Option<f32>,
    /// Keep only detections with these labels (`None`: every label of the card).
    pub labels: Option<Vec<String>>,
}

impl ModelConfig {
    /// The threshold in effect: `threshold`, else the card's.
    pub fn effective_threshold(&self) -> f32 {
        self.threshold
            .unwrap_or_else(|| self.card.output.score_threshold())
    }
}

/// `[rules]`: lines and zones.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RulesSection {
    /// Settings shared by all rules.
    pub config: RulesConfig,
    /// `[[rules.line]]`, in file order.
    pub lines: Vec<LineRule>,
    /// `[[rules.zone]]`, in file order.
    pub zones: Vec<ZoneRule>,
}

/// `[mqtt]`: where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// Broker host name or IP address (IPv6 without the brackets).
    pub host: String,
    /// Broker port (default 1883, 8883 with `mqtts://`).
    pub port: u16,
    /// Topic prefix, one or more `/`-separated levels (default `ocellus`).
    pub topic_prefix: String,
    /// MQTT client id (default `ocellus-{device.id}`, cut to 128 characters).
    pub client_id: String,
    /// MQTT keep-alive interval.
    pub keep_alive: Duration,
    /// TLS: `Some` exactly when the URL is `mqtts://` (or `ssl://`, `tls://`). Its files were
    /// read and checked when the config was loaded.
    pub tls: Option<crate::transport::TlsSettings>,
    /// `mqtt.username` and the password (`password_file`, `password_env` or `password`).
    pub credentials: Option<crate::transport::Credentials>,
    /// `mqtt.allow_insecure`: plaintext `mqtt://` to a host that is not loopback was allowed.
    pub allow_insecure: bool,
}

/// `[cloud]`: a cloud IoT hub profile.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// The profile: identity, topics, credentials.
    pub profile: crate::cloud::Profile,
    /// `cloud.snapshots`: whether the `snapshot` direct method may send a frame (people
    /// hidden). Default false: no image leaves the device.
    pub snapshots: bool,
}

/// `[queue]`: the on-disk event queue. Events wait here until the broker has acknowledged them,
/// across broker outages and restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue directory, resolved against the config file's directory (default:
    /// `paths::state_dir()/queue/{device.id}`).
    pub dir: PathBuf,
    /// Bound on the queue's bytes on disk (`max_mb`, default 64 MiB).
    pub max_bytes: u64,
    /// Events older than this are dropped unsent (`max_age_s`, default 7 days).
    pub max_age: Duration,
    /// What happens to a new event when the queue is full.
    pub when_full: crate::spool::WhenFull,
    /// fsync at most this long after an event (`fsync_ms`; zero: after every event).
    pub fsync_interval: Duration,
}

impl QueueConfig {
    /// The defaults, with the queue in `paths::state_dir()/queue/{device_id}`.
    pub fn default_for(device_id: &str) -> QueueConfig {
        QueueConfig {
            dir: crate::paths::state_dir().join("queue").join(device_id),
            max_bytes: crate::spool::DEFAULT_MAX_BYTES,
            max_age: crate::spool::DEFAULT_MAX_AGE,
            when_full: crate::spool::WhenFull::default(),
            fsync_interval: crate::spool::DEFAULT_FSYNC_INTERVAL,
        }
    }
}

/// `[health]`: the retained health message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// How often it is published (`interval_s`, default 30 s).
    pub interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            interval: crate::health::DEFAULT_INTERVAL,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written: every value whose range is checked keeps its span, for the line number.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    device: RawDevice,
    #[serde(default)]
    runtime: RawRuntime,
    source: Spanned<RawSource>,
    model: RawModel,
    #[serde(default)]
    tracker: Option<Spanned<TrackerConfig>>,
    #[serde(default)]
    rules: Option<Spanned<RawRules>>,
    #[serde(default)]
    mqtt: Option<Spanned<RawMqtt>>,
    #[serde(default)]
    cloud: Option<Spanned<RawCloud>>,
    #[serde(default)]
    queue: Option<RawQueue>,
    #[serde(default)]
    health: Option<RawHealth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    onnxruntime: Option<Spanned<String>>,
    threads: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    fps: Option<Spanned<f64>>,
    #[serde(rename = "loop")]
    looped: Option<Spanned<bool>>,
    width: Option<Spanned<i64>>,
    height: Option<Spanned<i64>>,
    frames: Option<Spanned<i64>>,
    objects: Option<Spanned<i64>>,
    seed: Option<Spanned<i64>>,
    bus: Option<Spanned<String>>,
    address: Option<Spanned<i64>>,
    video: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    exposure_us: Option<Spanned<f64>>,
    analog_gain_db: Option<Spanned<f64>>,
    auto_exposure: Option<Spanned<bool>>,
    test_pattern: Option<Spanned<String>>,
    device: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    sprite: Option<Spanned<RawSprite>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSprite {
    image: Spanned<String>,
    from: Option<Spanned<Xy>>,
    to: Option<Spanned<Xy>>,
    size: Option<Spanned<f64>>,
    walk_s: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    card: Spanned<String>,
    threshold: Option<Spanned<f64>>,
    labels: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    line_hysteresis: Option<Spanned<f64>>,
    zone_debounce_frames: Option<Spanned<i64>>,
    #[serde(default)]
    line: Vec<RawLine>,
    #[serde(default)]
    zone: Vec<RawZone>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    name: Spanned<String>,
    a: Spanned<Xy>,
    b: Spanned<Xy>,
    labels: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    name: Spanned<String>,
    polygon: Spanned<Vec<Spanned<Xy>>>,
    dwell_s: Option<Spanned<f64>>,
    labels: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    url: Spanned<String>,
    topic_prefix: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    keep_alive_s: Option<Spanned<i64>>,
    username: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    allow_insecure: Option<Spanned<bool>>,
    /// Removed: refused with a message saying what replaced it.
    max_pending_events: Option<Spanned<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    kind: Spanned<String>,
    connection_string: Option<Spanned<String>>,
    connection_string_file: Option<Spanned<String>>,
    connection_string_env: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    sas_ttl_s: Option<Spanned<i64>>,
    keep_alive_s: Option<Spanned<i64>>,
    snapshots: Option<Spanned<bool>>,
    thing_name: Option<Spanned<String>>,
    telemetry_topic: Option<Spanned<String>>,
    shadow: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    dir: Option<Spanned<String>>,
    max_mb: Option<Spanned<i64>>,
    max_age_s: Option<Spanned<i64>>,
    when_full: Option<Spanned<String>>,
    fsync_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    interval_s: Option<Spanned<i64>>,
}

const EXAMPLE: &str = r#"# ocellus deployment config: `ocellus run --config THIS_FILE`.
# Reference: docs/config.md. Relative paths are relative to this file's directory.
# Coordinates are normalised: x from 0 (left edge) to 1 (right edge), y from 0 (top) to 1 (bottom).

[device]
id = "store-12-entrance"        # letters, digits, '.', '_', '-'; part of every MQTT topic

[runtime]
# onnxruntime = "/opt/onnxruntime/lib/libonnxruntime.so.1.31.1"   # default: the usual search
threads = 2                     # ONNX Runtime intra-op threads, 1..=64

[source]
kind = "video"                  # "video", "images", "synthetic", "sensor" or "v4l2"
path = "footage/vtest.avi"      # a video file, or rtsp://HOST/STREAM
fps = 10.0                      # pace the file at 10 frames/s (omit: as fast as inference allows)
loop = false                    # restart the file at its end

[model]
card = "models/ssd-mobilenet-v2-coco-cut.toml"   # the SSD with native post-processing (the default detector)
threshold = 0.5                 # 0..=1; omit to use the card's
labels = ["person"]             # keep only these labels of the card

[tracker]
confirm_hits = 3                # frames a track must be seen before it is reported
max_lost_frames = 30            # frames a track survives without being seen

[rules]
line_hysteresis = 0.01          # dead band around lines (normalised distance)
zone_debounce_frames = 2        # frames inside (outside) before entering (leaving) counts

# Counts tracks crossing from a to b's left-hand side to its right-hand side as `a_to_b`
# (for a horizontal line drawn left to right: from above it to below it), the other way as `b_to_a`.
[[rules.line]]
name = "door"
a = [0.05, 0.55]
b = [0.95, 0.55]
labels = ["person"]

[[rules.zone]]
name = "queue"
polygon = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]
dwell_s = 10                    # a `dwell` event after 10 s inside
labels = ["person"]

[mqtt]
url = "mqtt://127.0.0.1:1883"   # a broker on this device; across a network: mqtts://HOST (TLS, port 8883)
topic_prefix = "ocellus"        # events go to ocellus/store-12-entrance/...
keep_alive_s = 30
# With mqtts://:
# ca_file = "certs/ca.pem"      # the CA that signed the broker's certificate (default: the system's CAs)
# client_cert = "certs/store-12-entrance.pem"   # mutual TLS: this camera's certificate...
# client_key = "certs/store-12-entrance.key"    # ...and its private key
# username = "store-12-entrance"
# password_file = "/etc/ocellus/mqtt-password"  # its first line is the password

[queue]                         # events wait on disk until the broker has them
# dir = "/var/lib/ocellus/queue"  # default: ~/.local/state/ocellus/queue/DEVICE_ID ($OCELLUS_STATE_DIR)
max_mb = 64                     # bound on the queue on disk
max_age_s = 604800              # events older than 7 days are dropped unsent
when_full = "drop_oldest"       # or "refuse_new"
fsync_ms = 100                  # on disk at most 100 ms after the event (0: at every event)

[health]
interval_s = 30                 # publish the retained health message every 30 s
"#;

impl Config {
    /// Read (at most [`MAX_CONFIG_BYTES`]) and validate a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let fail = |message: String| Error::Config {
            path: path.to_path_buf(),
            line: None,
            message,
        };
        let file = std::fs::File::open(path)
            .map_err(|e| fail(format!("cannot open the config file: {e}")))?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot read the config file: {e}")))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "is larger than {MAX_CONFIG_BYTES} bytes; is this really an ocellus config?"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = e
                .as_bytes()
                .get(..e.utf8_error().valid_up_to())
                .map(|b| b.iter().filter(|&&c| c == b'\n').count() + 1);
            Error::Config {
                path: path.to_path_buf(),
                line,
                message: "is not UTF-8 text; save the file as UTF-8".to_owned(),
            }
        })?;
        Config::parse(&text, path)
    }

    /// Validate config text. `path` is used in messages and relative paths are resolved against
    /// its directory.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let cx = Cx { path, text };
        // Syntax first (so a syntax error is never blamed on a key), then keys and types.
        let doc = toml::de::DeTable::parse(text).map_err(|e| cx.syntax_error(&e))?;
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| cx.schema_error(&e, doc.get_ref()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };

        let device = DeviceConfig {
            id: check_name(&cx, &raw.device.id, "device.id", MAX_DEVICE_ID, "device id")?,
        };
        let runtime = runtime(&cx, &raw.runtime, &dir)?;
        let source = source(&cx, &raw.source, &dir)?;
        let model = model(&cx, &raw.model, &dir)?;
        let tracker = match raw.tracker {
            Some(t) => {
                let span = t.span();
                let cfg = t.into_inner();
                crate::track::Tracker::new(cfg.clone())
                    .map_err(|e| cx.option_error(e.into(), doc.get_ref(), span, "tracker"))?;
                cfg
            }
            None => TrackerConfig::default(),
        };
        let rules = match &raw.rules {
            Some(r) => rules(&cx, r, &model, doc.get_ref())?,
            None => RulesSection::default(),
        };
        let (mqtt, cloud) = match (&raw.mqtt, &raw.cloud) {
            (Some(m), None) => (mqtt(&cx, m.get_ref(), &device.id, &dir)?, None),
            (None, Some(c)) => {
                let (m, c) = cloud(&cx, c, &device.id, &dir)?;
                (m, Some(c))
            }
            (Some(m), Some(_)) => {
                return Err(cx.err(
                    Some(m.span()),
                    "mqtt",
                    "and [cloud] are both set: a cloud profile says where and how to connect; remove [mqtt] (its keep_alive_s is `cloud.keep_alive_s`), or remove [cloud] for a plain MQTT broker",
                ));
            }
            (None, None) => {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    line: None,
                    message: format!(
                        "`mqtt`: is required but missing: add [mqtt] with `url = \"mqtt://HOST:PORT\"` for an MQTT broker, or [cloud] for Azure IoT Hub or AWS IoT Core (see {DOCS} and docs/cloud.md)"
                    ),
                });
            }
        };
        let queue = queue(&cx, raw.queue.as_ref(), &device.id, &dir)?;
        let health = match &raw.health {
            Some(RawHealth {
                interval_s: Some(i),
            }) => HealthConfig {
                interval: Duration::from_secs(
                    int_in(&cx, i, "health.interval_s", 1, 86_400)? as u64
                ),
            },
            _ => HealthConfig::default(),
        };
        Ok(Config {
            path: path.to_path_buf(),
            device,
            runtime,
            source,
            model,
            tracker,
            rules,
            mqtt,
            cloud,
            queue,
            health,
        })
    }

    /// The publisher's profile: generic MQTT unless `[cloud]` says otherwise.
    pub fn cloud_profile(&self) -> crate::cloud::Profile {
        self.cloud
            .as_ref()
            .map(|c| c.profile.clone())
            .unwrap_or_default()
    }

    /// A complete, commented example config, the same as in `docs/config.md`. Its model card
    /// path, `models/ssd-mobilenet-v2-coco.toml`, resolves when the config sits at the root of the
    /// ocellus repository.
    pub fn example() -> &'static str {
        EXAMPLE
    }
}

// ---------------------------------------------------------------------------------------------
// Sections.

fn runtime(cx: &Cx<'_>, raw: &RawRuntime, dir: &Path) -> Result<RuntimeConfig> {
    let onnxruntime = match &raw.onnxruntime {
        Some(p) => Some(resolve_path(cx, p, "runtime.onnxruntime", dir)?),
        None => None,
    };
    let threads = match &raw.threads {
        Some(t) => Some(int_in(cx, t, "runtime.threads", 1, 64)? as usize),
        None => None,
    };
    Ok(RuntimeConfig {
        onnxruntime,
        threads,
    })
}

/// What `source.kind` may be.
const SOURCE_KINDS: &str = "use \"video\", \"images\", \"synthetic\", \"sensor\" or \"v4l2\"";

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn quoted_or(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The first key (in file order) of `[source]` that `kind` does not use: its name, its span and
/// the kinds it applies to.
fn misplaced_source_key(
    raw: &RawSource,
    kind: &str,
) -> Option<(&'static str, Range<usize>, &'static [&'static str])> {
    const FILES: &[&str] = &["video", "images"];
    const SIZED: &[&str] = &["synthetic", "v4l2"];
    const SYNTHETIC: &[&str] = &["synthetic"];
    const SENSOR: &[&str] = &["sensor"];
    const V4L2: &[&str] = &["v4l2"];
    fn at<T>(v: &Option<Spanned<T>>) -> Option<Range<usize>> {
        v.as_ref().map(Spanned::span)
    }
    let keys = [
        ("path", at(&raw.path), FILES),
        ("loop", at(&raw.looped), FILES),
        ("width", at(&raw.width), SIZED),
        ("height", at(&raw.height), SIZED),
        ("frames", at(&raw.frames), SYNTHETIC),
        ("objects", at(&raw.objects), SYNTHETIC),
        ("seed", at(&raw.seed), SYNTHETIC),
        ("bus", at(&raw.bus), SENSOR),
        ("address", at(&raw.address), SENSOR),
        ("video", at(&raw.video), SENSOR),
        ("mode", at(&raw.mode), SENSOR),
        ("exposure_us", at(&raw.exposure_us), SENSOR),
        ("analog_gain_db", at(&raw.analog_gain_db), SENSOR),
        ("auto_exposure", at(&raw.auto_exposure), SENSOR),
        ("test_pattern", at(&raw.test_pattern), SENSOR),
        ("device", at(&raw.device), V4L2),
        ("format", at(&raw.format), V4L2),
        ("sprite", at(&raw.sprite), SENSOR),
    ];
    keys.into_iter()
        .filter(|(_, _, kinds)| !kinds.contains(&kind))
        .filter_map(|(name, span, kinds)| span.map(|s| (name, s, kinds)))
        .min_by_key(|(_, s, _)| s.start)
}

/// A device node (`source.device`, `source.video`): a local path, resolved like other paths.
fn device_path(cx: &Cx<'_>, v: &Spanned<String>, key: &str, dir: &Path) -> Result<PathBuf> {
    if v.get_ref().contains("://") {
        return Err(cx.at(
            v,
            key,
            format!(
                "\"{}\" is a URL; give a device node on this machine, e.g. \"/dev/video0\" (a stream is kind = \"video\")",
                v.get_ref()
            ),
        ));
    }
    resolve_path(cx, v, key, dir)
}

/// `source.address`: a 7-bit I2C address outside the reserved ranges.
fn i2c_address(cx: &Cx<'_>, v: &Spanned<i64>) -> Result<u8> {
    let a = *v.get_ref();
    match u8::try_from(a) {
        Ok(a) if (0x08..=0x77).contains(&a) => Ok(a),
        _ => {
            let shown = if a >= 0 {
                format!("{a:#04x}")
            } else {
                a.to_string()
            };
            Err(cx.at(
                v,
                "source.address",
                format!(
                    "{shown} is outside 0x08..=0x77 (a 7-bit I2C address; the IMX219 answers at {DEFAULT_SENSOR_ADDRESS:#04x})"
                ),
            ))
        }
    }
}

/// `kind = "sensor"`: the IMX219, simulated (`bus = "sim"`) or on a Linux I2C adapter.
fn sensor_source(
    cx: &Cx<'_>,
    raw: &RawSource,
    fps: Option<f64>,
    dir: &Path,
) -> Result<SourceConfig> {
    use ocellus_imx219::Mode;
    let bus = match raw.bus.as_ref() {
        Some(b) if Path::new(b.get_ref()).is_absolute() => SensorBus::Linux {
            path: PathBuf::from(b.get_ref()),
            address: match &raw.address {
                Some(a) => i2c_address(cx, a)?,
                None => DEFAULT_SENSOR_ADDRESS,
            },
        },
        Some(b) if b.get_ref() != "sim" => {
            return Err(cx.at(
                b,
                "source.bus",
                format!(
                    "\"{}\": use \"sim\" (the simulated IMX219) or the absolute path of a Linux I2C adapter, e.g. \"/dev/i2c-1\"",
                    b.get_ref()
                ),
            ));
        }
        _ => {
            if let Some(a) = &raw.address {
                return Err(cx.at(
                    a,
                    "source.address",
                    "does not apply with bus = \"sim\" (the simulated IMX219 has no I2C address); remove it, or set `source.bus` to the I2C adapter, e.g. \"/dev/i2c-1\"",
                ));
            }
            SensorBus::Sim
        }
    };
    let video = match (&bus, &raw.video, &raw.bus) {
        (SensorBus::Sim, Some(v), _) => {
            return Err(cx.at(
                v,
                "source.video",
                "does not apply with bus = \"sim\": the simulated IMX219 makes its own pixels; remove it",
            ));
        }
        (SensorBus::Sim, None, _) => None,
        (SensorBus::Linux { .. }, Some(v), _) => Some(device_path(cx, v, "source.video", dir)?),
        (SensorBus::Linux { path, .. }, None, b) => {
            return Err(cx.err(
                b.as_ref().map(Spanned::span),
                "source.video",
                format!(
                    "is required with bus = \"{}\": the V4L2 device the sensor's pixels arrive on, e.g. \"/dev/video0\"",
                    path.display()
                ),
            ));
        }
    };
    let mode = match raw.mode.as_ref() {
        None => Mode::Binned640x480,
        Some(m) => match m.get_ref().as_str() {
            "3280x2464" => Mode::Full3280x2464,
            "1920x1080" => Mode::Crop1920x1080,
            "1640x1232" => Mode::Binned1640x1232,
            "640x480" => Mode::Binned640x480,
            other => {
                return Err(cx.at(
                    m,
                    "source.mode",
                    format!(
                        "\"{other}\" is not an IMX219 mode; use \"3280x2464\", \"1920x1080\", \"1640x1232\" or \"640x480\""
                    ),
                ));
            }
        },
    };
    let fps = fps.unwrap_or(30.0);
    if fps < Mode::min_frame_rate() as f64 || fps > mode.max_frame_rate() as f64 {
        let key_span = raw.fps.as_ref().map(|f| f.span());
        return Err(cx.err(
            key_span,
            "source.fps",
            format!(
                "{fps} fps is outside what the IMX219 does in mode {}x{} ({:.2}..={:.2} fps)",
                mode.width(),
                mode.height(),
                Mode::min_frame_rate(),
                mode.max_frame_rate()
            ),
        ));
    }
    let exposure_us = match &raw.exposure_us {
        Some(e) if !(*e.get_ref() > 0.0 && *e.get_ref() <= 1_000_000.0) => {
            return Err(cx.at(
                e,
                "source.exposure_us",
                "must be more than 0 and at most 1000000 (µs)",
            ));
        }
        Some(e) => Some(*e.get_ref()),
        None => None,
    };
    let analog_gain_db = match &raw.analog_gain_db {
        Some(g) if !(0.0..=20.6).contains(g.get_ref()) => {
            return Err(cx.at(g, "source.analog_gain_db", "must be within 0..=20.6 dB"));
        }
        Some(g) => Some(*g.get_ref()),
        None => None,
    };
    let auto_exposure = raw.auto_exposure.as_ref().is_some_and(|a| *a.get_ref());
    let test_pattern = match raw.test_pattern.as_ref() {
        None => SensorPattern::None,
        Some(p) => match p.get_ref().as_str() {
            "none" => SensorPattern::None,
            "colour-bars" => SensorPattern::ColourBars,
            "fade-to-grey" => SensorPattern::FadeToGrey,
            "pn9" => SensorPattern::Pn9,
            other => {
                return Err(cx.at(
                    p,
                    "source.test_pattern",
                    format!(
                        "\"{other}\": use \"none\", \"colour-bars\", \"fade-to-grey\" or \"pn9\""
                    ),
                ));
            }
        },
    };
    let sprite = match &raw.sprite {
        None => None,
        Some(sp) if bus != SensorBus::Sim => {
            return Err(cx.at(
                sp,
                "source.sprite",
                "only applies with bus = \"sim\": a real sensor sees the real world; remove it",
            ));
        }
        Some(sp) => Some(sprite(cx, sp.get_ref(), dir)?),
    };
    Ok(SourceConfig::Sensor {
        sprite,
        bus,
        video,
        mode,
        fps,
        exposure_us,
        analog_gain_db,
        auto_exposure,
        test_pattern,
    })
}

/// `[source.sprite]`.
fn sprite(cx: &Cx<'_>, raw: &RawSprite, dir: &Path) -> Result<SpriteConfig> {
    let image = resolve_path(cx, &raw.image, "source.sprite.image", dir)?;
    let point = |v: &Option<Spanned<Xy>>, key: &str, default: [f32; 2]| match v {
        None => Ok(default),
        Some(p) if p.get_ref().iter().all(|c| (0.0..=1.0).contains(c)) => {
            Ok([p.get_ref()[0] as f32, p.get_ref()[1] as f32])
        }
        Some(p) => Err(cx.at(
            p,
            key,
            "both coordinates must be within 0..=1 (fractions of the frame)",
        )),
    };
    let from = point(&raw.from, "source.sprite.from", [0.15, 0.5])?;
    let to = point(&raw.to, "source.sprite.to", [0.85, 0.5])?;
    let size = match &raw.size {
        None => 0.6,
        Some(v) if (0.05..=1.0).contains(v.get_ref()) => *v.get_ref() as f32,
        Some(v) => {
            return Err(cx.at(
                v,
                "source.sprite.size",
                "must be within 0.05..=1 (a fraction of the frame height)",
            ));
        }
    };
    let walk = match &raw.walk_s {
        None => std::time::Duration::from_secs(6),
        Some(v) if (0.0..=3600.0).contains(v.get_ref()) => {
            std::time::Duration::from_secs_f64(*v.get_ref())
        }
        Some(v) => {
            return Err(cx.at(
                v,
                "source.sprite.walk_s",
                "must be within 0..=3600 (seconds)",
            ));
        }
    };
    Ok(SpriteConfig {
        image,
        from,
        to,
        size,
        walk,
    })
}

/// `kind = "v4l2"`: a V4L2 capture device.
fn v4l2_source(
    cx: &Cx<'_>,
    raw: &RawSource,
    section: Range<usize>,
    fps: Option<f64>,
    dir: &Path,
) -> Result<SourceConfig> {
    use crate::source::convert::PixelFormat;
    let Some(d) = &raw.device else {
        return Err(cx.err(
            Some(section),
            "source.device",
            "is required for kind = \"v4l2\": the capture device node, e.g. \"/dev/video0\"",
        ));
    };
    let device = device_path(cx, d, "source.device", dir)?;
    let format = match &raw.format {
        None => None,
        Some(f) => match PixelFormat::from_name(f.get_ref()) {
            Some(format) => Some(format),
            None => {
                let names: Vec<&str> = PixelFormat::ALL.iter().map(|p| p.name()).collect();
                return Err(cx.at(
                    f,
                    "source.format",
                    format!(
                        "\"{}\" is not a pixel format; use {}, or remove the key to let the source pick the best the device offers",
                        f.get_ref(),
                        quoted_or(&names)
                    ),
                ));
            }
        },
    };
    let both =
        "give both `source.width` and `source.height`, or neither for the device's current size";
    let size = match (&raw.width, &raw.height) {
        (None, None) => None,
        (Some(w), Some(h)) => Some((
            int_in(cx, w, "source.width", 16, 8192)? as u32,
            int_in(cx, h, "source.height", 16, 8192)? as u32,
        )),
        (Some(w), None) => {
            return Err(cx.at(
                w,
                "source.height",
                format!("is missing but `source.width` is set; {both}"),
            ));
        }
        (None, Some(h)) => {
            return Err(cx.at(
                h,
                "source.width",
                format!("is missing but `source.height` is set; {both}"),
            ));
        }
    };
    Ok(SourceConfig::V4l2 {
        device,
        format,
        size,
        fps,
    })
}

fn source(cx: &Cx<'_>, raw: &Spanned<RawSource>, dir: &Path) -> Result<SourceConfig> {
    let span = raw.span();
    let raw = raw.get_ref();
    let kind = raw.kind.get_ref().as_str();
    if !matches!(kind, "video" | "images" | "synthetic" | "sensor" | "v4l2") {
        return Err(cx.at(
            &raw.kind,
            "source.kind",
            format!("\"{kind}\" is not a source kind; {SOURCE_KINDS}"),
        ));
    }
    if let Some((name, key_span, kinds)) = misplaced_source_key(raw, kind) {
        return Err(cx.err(
            Some(key_span),
            &format!("source.{name}"),
            format!(
                "only applies to kind = {}, not \"{kind}\"; remove it",
                quoted_or(kinds)
            ),
        ));
    }
    let fps = match &raw.fps {
        Some(f) => {
            let v = *f.get_ref();
            if !(v > 0.0 && v <= 1000.0) {
                return Err(cx.at(
                    f,
                    "source.fps",
                    format!("must be more than 0 and at most 1000 (frames per second), got {v}"),
                ));
            }
            Some(v)
        }
        None => None,
    };
    match kind {
        "sensor" => return sensor_source(cx, raw, fps, dir),
        "v4l2" => return v4l2_source(cx, raw, span, fps, dir),
        "synthetic" => {
            let opt = |v: &Option<Spanned<i64>>, key: &str, lo: i64, hi: i64, default: i64| match v
            {
                Some(v) => int_in(cx, v, key, lo, hi),
                None => Ok(default),
            };
            return Ok(SourceConfig::Synthetic {
                width: opt(&raw.width, "source.width", 16, 4096, 640)? as u32,
                height: opt(&raw.height, "source.height", 16, 4096, 480)? as u32,
                frames: opt(&raw.frames, "source.frames", 1, 1_000_000, 300)? as u64,
                objects: opt(&raw.objects, "source.objects", 1, 64, 3)? as u32,
                seed: opt(&raw.seed, "source.seed", 0, i64::MAX, 0)? as u64,
                fps,
            });
        }
        _ => {}
    }
    let Some(p) = &raw.path else {
        let what = if kind == "video" {
            "a video file or an rtsp:// URL"
        } else {
            "a directory of images or a glob such as \"frames/*.png\""
        };
        return Err(cx.err(
            Some(span),
            "source.path",
            format!("is required for kind = \"{kind}\": {what}"),
        ));
    };
    let looped = raw.looped.as_ref().is_some_and(|l| *l.get_ref());
    let text = p.get_ref().as_str();
    if let Some((scheme, rest)) = text.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if kind != "video" || !(scheme == "rtsp" || scheme == "rtsps") {
            let allowed = if kind == "video" {
                "a file path or an rtsp:// or rtsps:// URL"
            } else {
                "a directory or a glob on this device"
            };
            return Err(cx.at(
                p,
                "source.path",
                format!(
                    "\"{text}\": {scheme}:// is not supported for kind = \"{kind}\"; use {allowed}"
                ),
            ));
        }
        if rest.is_empty() || rest.starts_with('/') {
            return Err(cx.at(
                p,
                "source.path",
                format!("\"{text}\" has no host; write it as {scheme}://HOST[:PORT]/STREAM"),
            ));
        }
        if let Some(l) = &raw.looped {
            return Err(cx.at(
                l,
                "source.loop",
                "only applies to files, not to a stream URL; remove it",
            ));
        }
        return Ok(SourceConfig::Video {
            input: VideoInput::Url(text.to_owned()),
            fps,
            looped: false,
        });
    }
    let resolved = resolve_path(cx, p, "source.path", dir)?;
    Ok(if kind == "video" {
        SourceConfig::Video {
            input: VideoInput::File(resolved),
            fps,
            looped,
        }
    } else {
        SourceConfig::Images {
            pattern: resolved,
            fps,
            looped,
        }
    })
}

fn model(cx: &Cx<'_>, raw: &RawModel, dir: &Path) -> Result<ModelConfig> {
    let card_path = resolve_path(cx, &raw.card, "model.card", dir)?;
    let card = ModelCard::load(&card_path).map_err(|e| {
        let hint = match &e {
            Error::CardRead { .. } => format!(
                "; relative paths are relative to the config file's directory ({})",
                dir.display()
            ),
            _ => String::new(),
        };
        cx.at(&raw.card, "model.card", format!("{e}{hint}"))
    })?;
    let threshold = match &raw.threshold {
        Some(t) => Some(float_in(cx, t, "model.threshold", 0.0, 1.0)? as f32),
        None => None,
    };
    let labels = match &raw.labels {
        Some(l) => Some(check_labels(cx, l, "model.labels", &card, None)?),
        None => None,
    };
    Ok(ModelConfig {
        card_path,
        card,
        threshold,
        labels,
    })
}

fn rules(
    cx: &Cx<'_>,
    raw: &Spanned<RawRules>,
    model: &ModelConfig,
    doc: &toml::de::DeTable<'_>,
) -> Result<RulesSection> {
    let span = raw.span();
    let raw = raw.get_ref();
    let mut config = RulesConfig::default();
    if let Some(h) = &raw.line_hysteresis {
        let v = *h.get_ref();
        if !(0.0..0.5).contains(&v) {
            return Err(cx.at(
                h,
                "rules.line_hysteresis",
                format!("must be at least 0 and less than 0.5 (a normalised distance, e.g. 0.01), got {v}"),
            ));
        }
        config.line_hysteresis = v as f32;
    }
    if let Some(d) = &raw.zone_debounce_frames {
        config.zone_debounce_frames = int_in(cx, d, "rules.zone_debounce_frames", 1, 100)? as u32;
    }
    let kept = model.labels.as_deref();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut unique = |name: &Spanned<String>, key: &str, rule: &str| -> Result<String> {
        let checked = check_name(cx, name, key, MAX_RULE_NAME, "rule name")?;
        if let Some(first) = names.get(&checked) {
            return Err(cx.at(
                name,
                key,
                format!(
                    "\"{checked}\" is already the name of `{first}`; rule names must be unique across lines and zones"
                ),
            ));
        }
        names.insert(checked.clone(), rule.to_owned());
        Ok(checked)
    };

    let mut lines = Vec::with_capacity(raw.line.len());
    for (i, l) in raw.line.iter().enumerate() {
        let key = format!("rules.line[{i}]");
        let name = unique(&l.name, &format!("{key}.name"), &key)?;
        let a = point(cx, &l.a, &format!("{key}.a"))?;
        let b = point(cx, &l.b, &format!("{key}.b"))?;
        if (a[0] - b[0]).hypot(a[1] - b[1]) < 1e-6 {
            return Err(cx.at(
                &l.b,
                &format!("{key}.b"),
                "is the same point as `a`; a line needs two different points",
            ));
        }
        let labels = match &l.labels {
            Some(v) => check_labels(cx, v, &format!("{key}.labels"), &model.card, kept)?,
            None => Vec::new(),
        };
        lines.push(LineRule {
            name,
            a: [a[0] as f32, a[1] as f32],
            b: [b[0] as f32, b[1] as f32],
            labels,
        });
    }

    let mut zones = Vec::with_capacity(raw.zone.len());
    for (i, z) in raw.zone.iter().enumerate() {
        let key = format!("rules.zone[{i}]");
        let name = unique(&z.name, &format!("{key}.name"), &key)?;
        let spanned = z.polygon.get_ref();
        let pkey = format!("{key}.polygon");
        if spanned.len() < 3 || spanned.len() > MAX_POLYGON_POINTS {
            return Err(cx.at(
                &z.polygon,
                &pkey,
                format!(
                    "has {} points; a zone needs 3 to {MAX_POLYGON_POINTS} points [x, y]",
                    spanned.len()
                ),
            ));
        }
        let mut pts = Vec::with_capacity(spanned.len());
        for (j, p) in spanned.iter().enumerate() {
            pts.push(point(cx, p, &format!("{pkey}[{j}]"))?);
        }
        if polygon_area(&pts) < MIN_POLYGON_AREA {
            return Err(cx.at(
                &z.polygon,
                &pkey,
                "has zero area (its points are repeated or on one line); a zone needs at least 3 points that enclose an area",
            ));
        }
        let dwell = match &z.dwell_s {
            Some(d) => {
                let v = *d.get_ref();
                if !(v > 0.0 && v <= 86_400.0) {
                    return Err(cx.at(
                        d,
                        &format!("{key}.dwell_s"),
                        format!(
                            "must be more than 0 and at most 86400 (seconds), got {v}; remove the key for no dwell events"
                        ),
                    ));
                }
                Some(Duration::from_secs_f64(v))
            }
            None => None,
        };
        let labels = match &z.labels {
            Some(v) => check_labels(cx, v, &format!("{key}.labels"), &model.card, kept)?,
            None => Vec::new(),
        };
        zones.push(ZoneRule {
            name,
            polygon: pts.iter().map(|p| [p[0] as f32, p[1] as f32]).collect(),
            dwell,
            labels,
        });
    }

    crate::rules::Rules::new(lines.clone(), zones.clone(), config.clone())
        .map_err(|e| cx.option_error(e.into(), doc, span, "rules"))?;
    Ok(RulesSection {
        config,
        lines,
        zones,
    })
}

fn mqtt(cx: &Cx<'_>, raw: &RawMqtt, device_id: &str, dir: &Path) -> Result<MqttConfig> {
    if let Some(m) = &raw.max_pending_events {
        return Err(cx.at(
            m,
            "mqtt.max_pending_events",
            format!(
                "was removed: events now wait on disk, not in memory; bound them with [queue] max_mb (and max_age_s) and remove this key (see {DOCS})"
            ),
        ));
    }
    let url = parse_broker_url(raw.url.get_ref()).map_err(|m| cx.at(&raw.url, "mqtt.url", m))?;
    let topic_prefix = match &raw.topic_prefix {
        Some(t) => {
            check_topic_prefix(t.get_ref()).map_err(|m| cx.at(t, "mqtt.topic_prefix", m))?;
            t.get_ref().clone()
        }
        None => DEFAULT_TOPIC_PREFIX.to_owned(),
    };
    let client_id = match &raw.client_id {
        Some(c) => check_name(cx, c, "mqtt.client_id", MAX_CLIENT_ID, "client id")?,
        None => format!("ocellus-{device_id}")
            .chars()
            .take(MAX_CLIENT_ID)
            .collect(),
    };
    let keep_alive = match &raw.keep_alive_s {
        Some(k) => Duration::from_secs(int_in(cx, k, "mqtt.keep_alive_s", 5, 3600)? as u64),
        None => DEFAULT_KEEP_ALIVE,
    };
    let allow_insecure = raw.allow_insecure.as_ref().is_some_and(|a| *a.get_ref());
    let tls = if url.tls {
        if let Some(a) = raw.allow_insecure.as_ref().filter(|a| *a.get_ref()) {
            return Err(cx.at(
                a,
                "mqtt.allow_insecure",
                "only applies to plaintext mqtt:// URLs; with mqtts:// the broker's certificate is always checked. Remove it",
            ));
        }
        Some(tls_settings(cx, raw, dir)?)
    } else {
        let tls_keys = [
            ("mqtt.ca_file", &raw.ca_file),
            ("mqtt.client_cert", &raw.client_cert),
            ("mqtt.client_key", &raw.client_key),
        ];
        if let Some((key, v)) = tls_keys
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .min_by_key(|(_, v)| v.span().start)
        {
            return Err(cx.at(
                v,
                key,
                format!(
                    "only applies to TLS, but `mqtt.url` is \"{}\" (plaintext): use mqtts://{} for TLS, or remove this key",
                    raw.url.get_ref(),
                    url_host(&url.host)
                ),
            ));
        }
        if !allow_insecure && !is_loopback_host(&url.host) {
            return Err(cx.at(
                &raw.url,
                "mqtt.url",
                format!(
                    "\"{}\" would send events (and any password) unencrypted over the network: use mqtts://{} (TLS, see {DOCS}), or, on a trusted network only, set `mqtt.allow_insecure = true`",
                    raw.url.get_ref(),
                    url_host(&url.host)
                ),
            ));
        }
        None
    };
    let credentials = credentials(cx, raw, dir)?;
    Ok(MqttConfig {
        host: url.host,
        port: url.port,
        topic_prefix,
        client_id,
        keep_alive,
        tls,
        credentials,
        allow_insecure,
    })
}

/// `mqtts://`: the TLS files, resolved and checked now (they must exist, be readable and hold
/// what they should), so a problem is reported at start-up with the line of its key.
fn tls_settings(cx: &Cx<'_>, raw: &RawMqtt, dir: &Path) -> Result<crate::transport::TlsSettings> {
    tls_files(
        cx,
        TlsKeys {
            section: "mqtt",
            anchor: raw.url.span(),
            ca_file: &raw.ca_file,
            client_cert: &raw.client_cert,
            client_key: &raw.client_key,
        },
        dir,
    )
}

/// The TLS keys of a section (`mqtt` or `cloud`).
struct TlsKeys<'r> {
    section: &'static str,
    /// Where to point when the problem has no key of its own.
    anchor: Range<usize>,
    ca_file: &'r Option<Spanned<String>>,
    client_cert: &'r Option<Spanned<String>>,
    client_key: &'r Option<Spanned<String>>,
}

fn tls_files(cx: &Cx<'_>, raw: TlsKeys<'_>, dir: &Path) -> Result<crate::transport::TlsSettings> {
    let section = raw.section;
    let path = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<PathBuf>> {
        v.as_ref()
            .map(|v| resolve_path(cx, v, &format!("{section}.{key}"), dir))
            .transpose()
    };
    let settings = crate::transport::TlsSettings {
        ca_file: path(raw.ca_file, "ca_file")?,
        client_cert: path(raw.client_cert, "client_cert")?,
        client_key: path(raw.client_key, "client_key")?,
    };
    crate::transport::rustls_config(&settings).map_err(|e| {
        let (name, message) = match e {
            ocellus_delivery::Error::InvalidOption { name, message } => (name, message),
            other => ("mqtt.url".to_owned(), other.to_string()),
        };
        // Point at the key named; when it is absent (a missing half of the client pair, no
        // ca_file and no system CAs), at the key that needs it, else at the URL.
        let at = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        // transport names the keys `mqtt.*`; in [cloud] they are `cloud.*`
        let name = match name.strip_prefix("mqtt.") {
            Some(k) => format!("{section}.{k}"),
            None => name,
        };
        let message = message.replace("`mqtt.", &format!("`{section}."));
        let span = match name.strip_prefix(section).unwrap_or_default() {
            ".ca_file" => at(raw.ca_file),
            ".client_cert" => at(raw.client_cert).or_else(|| at(raw.client_key)),
            ".client_key" => at(raw.client_key).or_else(|| at(raw.client_cert)),
            _ => None,
        }
        .unwrap_or_else(|| raw.anchor.clone());
        let message = if message.contains("cannot open it") {
            format!(
                "{message}; relative paths are relative to the config file's directory ({})",
                dir.display()
            )
        } else {
            message
        };
        cx.err(Some(span), &name, message)
    })?;
    Ok(settings)
}

/// `mqtt.username` and at most one of `password_file`, `password_env`, `password`.
fn credentials(
    cx: &Cx<'_>,
    raw: &RawMqtt,
    dir: &Path,
) -> Result<Option<crate::transport::Credentials>> {
    use crate::transport::{Credentials, Secret};
    let mut given: Vec<(&str, &Spanned<String>)> = [
        ("mqtt.password_file", &raw.password_file),
        ("mqtt.password_env", &raw.password_env),
        ("mqtt.password", &raw.password),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    given.sort_by_key(|(_, v)| v.span().start);
    if let [(first, _), (second, v), ..] = given.as_slice() {
        return Err(cx.at(
            v,
            second,
            format!(
                "`{first}` is set too: give the password one way only (`mqtt.password_file`, `mqtt.password_env` or `mqtt.password`)"
            ),
        ));
    }
    let Some(user) = &raw.username else {
        return match given.first() {
            Some((key, v)) => Err(cx.at(
                v,
                key,
                "needs `mqtt.username`: a password goes with a user name; add `username = \"...\"`",
            )),
            None => Ok(None),
        };
    };
    let username = user.get_ref();
    if username.is_empty() {
        return Err(cx.at(
            user,
            "mqtt.username",
            "is empty; give the user name, or remove the key to connect without one",
        ));
    }
    if username.len() > 65_535 || username.chars().any(char::is_control) {
        return Err(cx.at(
            user,
            "mqtt.username",
            "must be at most 65535 bytes without control characters",
        ));
    }
    let password = match given.first() {
        None => None,
        Some((key, v)) => {
            let secret = match *key {
                "mqtt.password_file" => password_from_file(cx, v, dir)?,
                "mqtt.password_env" => password_from_env(cx, v)?,
                _ => v.get_ref().clone(),
            };
            if secret.is_empty() {
                let what = match *key {
                    "mqtt.password_file" => "the first line of the file is empty",
                    "mqtt.password_env" => "the environment variable is set but empty",
                    _ => "is empty",
                };
                return Err(cx.at(
                    v,
                    key,
                    format!(
                        "{what}; MQTT sends no empty password: give the password, or remove the key to connect without one"
                    ),
                ));
            }
            Some(Secret::new(secret))
        }
    };
    Ok(Some(Credentials {
        username: username.clone(),
        password,
    }))
}

/// `mqtt.password_file`: the first line of the file, without its line ending. Messages name the
/// file, never its content.
fn password_from_file(cx: &Cx<'_>, v: &Spanned<String>, dir: &Path) -> Result<String> {
    secret_from_file(cx, v, dir, "mqtt.password_file", "password")
}

/// A secret (`what`) on the first line of the file `v` names.
fn secret_from_file(
    cx: &Cx<'_>,
    v: &Spanned<String>,
    dir: &Path,
    key: &str,
    what: &str,
) -> Result<String> {
    let path = resolve_path(cx, v, key, dir)?;
    let fail = |what: String| cx.at(v, key, format!("{}: {what}", path.display()));
    let file = std::fs::File::open(&path).map_err(|e| {
        fail(format!(
            "cannot open it: {e}; relative paths are relative to the config file's directory ({})",
            dir.display()
        ))
    })?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(fail(format!(
            "is a directory; give the file whose first line is the {what}"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE {
        return Err(fail(format!(
            "is larger than {MAX_PASSWORD_FILE} bytes; it should hold the {what} on its first line"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| fail(format!("is not UTF-8 text; save the {what} as UTF-8")))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// `mqtt.password_env`: the value of the environment variable it names.
fn password_from_env(cx: &Cx<'_>, v: &Spanned<String>) -> Result<String> {
    secret_from_env(
        cx,
        v,
        "mqtt.password_env",
        "password",
        "OCELLUS_MQTT_PASSWORD",
    )
}

/// A secret (`what`) in the environment variable `v` names.
fn secret_from_env(
    cx: &Cx<'_>,
    v: &Spanned<String>,
    key: &str,
    what: &str,
    example: &str,
) -> Result<String> {
    let name = v.get_ref();
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(cx.at(
            v,
            key,
            format!(
                "\"{name}\" is not an environment variable name; give the name of the variable that holds the {what}, e.g. \"{example}\""
            ),
        ));
    }
    match std::env::var(name) {
        Ok(s) => Ok(s),
        Err(std::env::VarError::NotPresent) => Err(cx.at(
            v,
            key,
            format!(
                "the environment variable {name} is not set; set it where ocellus starts (e.g. systemd Environment= or EnvironmentFile=)"
            ),
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(cx.at(
            v,
            key,
            format!("the environment variable {name} is not valid UTF-8"),
        )),
    }
}

/// Rules given as JSON (a twin's desired property, a shadow's desired state, a `set_rules`
/// method), in the shape of the config's `[rules]` table: `{"line_hysteresis": …,
/// "zone_debounce_frames": …, "line": [{"name", "a", "b", "labels"}], "zone": [{"name",
/// "polygon", "dwell_s", "labels"}]}`. Checked exactly as the config file's rules are, against
/// the model's labels. The error is a sentence naming the key (`rules.line[0].a`: …).
pub fn rules_from_json(
    value: &serde_json::Value,
    model: &ModelConfig,
) -> std::result::Result<RulesSection, String> {
    if !value.is_object() {
        return Err(format!(
            "`rules`: must be an object like {{\"line\": [...], \"zone\": [...]}}, got {}",
            json_kind(value)
        ));
    }
    if let Some(path) = null_inside(value, "rules") {
        return Err(format!(
            "`{path}`: is null; remove the key instead (null only clears a whole desired property)"
        ));
    }
    #[derive(serde::Serialize)]
    struct Wrap<'a> {
        rules: &'a serde_json::Value,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Unwrap {
        rules: Spanned<RawRules>,
    }
    let text = toml::to_string(&Wrap { rules: value })
        .map_err(|e| format!("`rules`: cannot be read as rules: {e}"))?;
    let path = Path::new("rules");
    let cx = Cx { path, text: &text };
    let strip = |e: Error| match e {
        Error::Config { message, .. } => message.replace(&format!(" (see {DOCS})"), ""),
        other => other.to_string(),
    };
    let doc = toml::de::DeTable::parse(&text).map_err(|e| strip(cx.syntax_error(&e)))?;
    let raw: Unwrap =
        toml::from_str(&text).map_err(|e| strip(cx.schema_error(&e, doc.get_ref())))?;
    rules(&cx, &raw.rules, model, doc.get_ref()).map_err(strip)
}

/// The [`rules_from_json`] shape of `rules`, coordinates rounded to 6 decimals.
pub fn rules_to_json(rules: &RulesSection) -> serde_json::Value {
    use serde_json::json;
    let r6 = |v: f32| ((v as f64) * 1e6).round() / 1e6;
    let p = |p: [f32; 2]| json!([r6(p[0]), r6(p[1])]);
    let lines: Vec<serde_json::Value> = rules
        .lines
        .iter()
        .map(|l| {
            let mut o = json!({"name": l.name, "a": p(l.a), "b": p(l.b)});
            if !l.labels.is_empty() {
                o["labels"] = json!(l.labels);
            }
            o
        })
        .collect();
    let zones: Vec<serde_json::Value> = rules
        .zones
        .iter()
        .map(|z| {
            let mut o = json!({
                "name": z.name,
                "polygon": z.polygon.iter().map(|q| p(*q)).collect::<Vec<_>>(),
            });
            if let Some(d) = z.dwell {
                // whole seconds as an integer: `5`, as a person would write it, not `5.0`
                o["dwell_s"] = if d.subsec_nanos() == 0 {
                    json!(d.as_secs())
                } else {
                    json!(d.as_secs_f64())
                };
            }
            if !z.labels.is_empty() {
                o["labels"] = json!(z.labels);
            }
            o
        })
        .collect();
    json!({
        "line_hysteresis": r6(rules.config.line_hysteresis),
        "zone_debounce_frames": rules.config.zone_debounce_frames,
        "line": lines,
        "zone": zones,
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "true/false",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The dotted path of the first null inside `v`, if any.
fn null_inside(v: &serde_json::Value, at: &str) -> Option<String> {
    match v {
        serde_json::Value::Null => Some(at.to_owned()),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| null_inside(x, &format!("{at}[{i}]"))),
        serde_json::Value::Object(o) => o
            .iter()
            .find_map(|(k, x)| null_inside(x, &format!("{at}.{k}"))),
        _ => None,
    }
}

const CLOUD_KINDS: &str = "\"azure-iot-hub\" or \"aws-iot-core\"";

/// `[cloud]`: the profile and the MQTT connection it makes.
fn cloud(
    cx: &Cx<'_>,
    raw: &Spanned<RawCloud>,
    device_id: &str,
    dir: &Path,
) -> Result<(MqttConfig, CloudConfig)> {
    use crate::cloud::{AwsProfile, AzureProfile, Profile};
    let raw = raw.get_ref();
    let kind = raw.kind.get_ref().as_str();
    // keys that belong to the other kind
    let azure_only = [
        ("connection_string", &raw.connection_string),
        ("connection_string_file", &raw.connection_string_file),
        ("connection_string_env", &raw.connection_string_env),
    ];
    let aws_only = [
        ("thing_name", &raw.thing_name),
        ("telemetry_topic", &raw.telemetry_topic),
        ("shadow", &raw.shadow),
    ];
    let misplaced = |keys: &[(&str, &Option<Spanned<String>>)], other: &str| -> Result<()> {
        match keys.iter().find_map(|(k, v)| v.as_ref().map(|v| (k, v))) {
            Some((k, v)) => Err(cx.at(
                v,
                &format!("cloud.{k}"),
                format!("only applies to kind = \"{other}\"; remove it"),
            )),
            None => Ok(()),
        }
    };
    let keep_alive = match &raw.keep_alive_s {
        Some(k) => Duration::from_secs(int_in(cx, k, "cloud.keep_alive_s", 5, 1177)? as u64),
        None => DEFAULT_KEEP_ALIVE,
    };
    let snapshots = raw.snapshots.as_ref().is_some_and(|s| *s.get_ref());
    let tls = |cx: &Cx<'_>| {
        tls_files(
            cx,
            TlsKeys {
                section: "cloud",
                anchor: raw.kind.span(),
                ca_file: &raw.ca_file,
                client_cert: &raw.client_cert,
                client_key: &raw.client_key,
            },
            dir,
        )
    };
    let endpoint = |default_port: u16| -> Result<Option<(String, u16)>> {
        let Some(e) = &raw.endpoint else {
            return Ok(None);
        };
        let url = parse_broker_url(e.get_ref()).map_err(|m| cx.at(e, "cloud.endpoint", m))?;
        if !url.tls {
            return Err(cx.at(
                e,
                "cloud.endpoint",
                format!(
                    "must be mqtts:// (cloud hubs only take TLS), e.g. mqtts://{}:{default_port}",
                    url_host(&url.host)
                ),
            ));
        }
        Ok(Some((url.host, url.port)))
    };
    match kind {
        "azure-iot-hub" => {
            misplaced(&aws_only, "aws-iot-core")?;
            let text = connection_string(cx, raw, dir)?;
            let (value, key) = text;
            let connection = crate::cloud::azure::ConnectionString::parse(&value)
                .map_err(|m| cx.at(key.1, key.0, m))?;
            if connection.device_id != device_id {
                return Err(cx.at(
                    key.1,
                    key.0,
                    format!(
                        "names DeviceId \"{}\" but `device.id` is \"{device_id}\": they must be the same (events carry device.id; IoT Hub knows the device by DeviceId)",
                        connection.device_id
                    ),
                ));
            }
            if connection.x509 && (raw.client_cert.is_none() || raw.client_key.is_none()) {
                return Err(cx.at(
                    key.1,
                    key.0,
                    "says x509=true: set `cloud.client_cert` and `cloud.client_key` to the device's certificate and private key",
                ));
            }
            if !connection.x509
                && let Some(c) = raw.client_cert.as_ref().or(raw.client_key.as_ref())
            {
                return Err(cx.at(
                    c,
                    if raw.client_cert.is_some() { "cloud.client_cert" } else { "cloud.client_key" },
                    "applies to X.509 devices, but the connection string has a SharedAccessKey: use the X.509 device's connection string (…;x509=true), or remove the certificate keys",
                ));
            }
            let sas_ttl = match &raw.sas_ttl_s {
                Some(t) => {
                    if connection.x509 {
                        return Err(cx.at(
                            t,
                            "cloud.sas_ttl_s",
                            "applies to SAS (SharedAccessKey) devices, not X.509; remove it",
                        ));
                    }
                    Duration::from_secs(int_in(cx, t, "cloud.sas_ttl_s", 4, 31_536_000)? as u64)
                }
                None => crate::cloud::DEFAULT_SAS_TTL,
            };
            let tls = tls(cx)?;
            let (host, port) = endpoint(crate::cloud::azure::PORT)?.unwrap_or_else(|| {
                (
                    connection.endpoint_host().to_owned(),
                    crate::cloud::azure::PORT,
                )
            });
            let mqtt = MqttConfig {
                host,
                port,
                topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
                client_id: connection.client_id(),
                keep_alive,
                tls: Some(tls),
                credentials: Some(crate::transport::Credentials {
                    username: connection.username(),
                    // the SAS token is made (and renewed) by the publisher
                    password: None,
                }),
                allow_insecure: false,
            };
            let profile = Profile::Azure(std::sync::Arc::new(AzureProfile {
                connection,
                sas_ttl,
            }));
            Ok((mqtt, CloudConfig { profile, snapshots }))
        }
        "aws-iot-core" => {
            misplaced(&azure_only, "azure-iot-hub")?;
            if let Some(t) = &raw.sas_ttl_s {
                return Err(cx.at(
                    t,
                    "cloud.sas_ttl_s",
                    "only applies to kind = \"azure-iot-hub\"; remove it",
                ));
            }
            if let Some(s) = &raw.snapshots {
                return Err(cx.at(
                    s,
                    "cloud.snapshots",
                    "only applies to kind = \"azure-iot-hub\" (AWS IoT Core has no direct methods); remove it",
                ));
            }
            let Some((host, port)) = endpoint(DEFAULT_MQTTS_PORT)? else {
                return Err(cx.err(
                    Some(raw.kind.span()),
                    "cloud.endpoint",
                    "is required for AWS IoT Core: your account's device data endpoint, e.g. mqtts://abc123-ats.iot.eu-west-1.amazonaws.com:8883 (`aws iot describe-endpoint --endpoint-type iot:Data-ATS`)",
                ));
            };
            if raw.client_cert.is_none() || raw.client_key.is_none() {
                let at = raw
                    .client_cert
                    .as_ref()
                    .or(raw.client_key.as_ref())
                    .map(Spanned::span)
                    .unwrap_or_else(|| raw.kind.span());
                return Err(cx.err(
                    Some(at),
                    if raw.client_cert.is_none() { "cloud.client_cert" } else { "cloud.client_key" },
                    "is required for AWS IoT Core: the thing's certificate (client_cert) and private key (client_key), see docs/cloud.md",
                ));
            }
            let thing = match &raw.thing_name {
                Some(t) => {
                    if let Some(m) = crate::cloud::aws::name_problem(t.get_ref(), 128) {
                        return Err(cx.at(t, "cloud.thing_name", m));
                    }
                    t.get_ref().clone()
                }
                None => {
                    if let Some(m) = crate::cloud::aws::name_problem(device_id, 128) {
                        return Err(cx.at(
                            &raw.kind,
                            "cloud.thing_name",
                            format!(
                                "defaults to `device.id` (\"{device_id}\"), which cannot be a thing name: it {m}; set `cloud.thing_name`"
                            ),
                        ));
                    }
                    device_id.to_owned()
                }
            };
            let telemetry_topic = match &raw.telemetry_topic {
                Some(t) => {
                    if let Some(m) = crate::cloud::aws::template_problem(t.get_ref()) {
                        return Err(cx.at(t, "cloud.telemetry_topic", m));
                    }
                    t.get_ref().clone()
                }
                None => crate::cloud::DEFAULT_AWS_TELEMETRY_TOPIC.to_owned(),
            };
            let shadow = match &raw.shadow {
                Some(s) => {
                    if let Some(m) = crate::cloud::aws::name_problem(s.get_ref(), 64) {
                        return Err(cx.at(s, "cloud.shadow", m));
                    }
                    s.get_ref().clone()
                }
                None => crate::cloud::DEFAULT_AWS_SHADOW.to_owned(),
            };
            let tls = tls(cx)?;
            let mqtt = MqttConfig {
                host,
                port,
                topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
                client_id: thing.clone(),
                keep_alive,
                tls: Some(tls),
                credentials: None,
                allow_insecure: false,
            };
            let profile = Profile::Aws(std::sync::Arc::new(AwsProfile {
                thing,
                telemetry_topic,
                shadow,
            }));
            Ok((mqtt, CloudConfig { profile, snapshots }))
        }
        other => Err(cx.at(
            &raw.kind,
            "cloud.kind",
            format!("\"{other}\" is not a cloud profile: use {CLOUD_KINDS}; for a plain MQTT broker use [mqtt] instead of [cloud]"),
        )),
    }
}

/// The Azure connection string from exactly one of `connection_string`,
/// `connection_string_file` and `connection_string_env`: (value, (key, its span holder)).
fn connection_string<'r>(
    cx: &Cx<'_>,
    raw: &'r RawCloud,
    dir: &Path,
) -> Result<(String, (&'static str, &'r Spanned<String>))> {
    let mut given: Vec<(&'static str, &Spanned<String>)> = [
        ("cloud.connection_string_file", &raw.connection_string_file),
        ("cloud.connection_string_env", &raw.connection_string_env),
        ("cloud.connection_string", &raw.connection_string),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    given.sort_by_key(|(_, v)| v.span().start);
    match given.as_slice() {
        [] => Err(cx.at(
            &raw.kind,
            "cloud.connection_string_file",
            "is required for Azure IoT Hub (or `cloud.connection_string_env`, or `cloud.connection_string`): the device's connection string, \"HostName=…;DeviceId=…;SharedAccessKey=…\" (see docs/cloud.md)",
        )),
        [(first, _), (second, v), ..] => Err(cx.at(
            v,
            second,
            format!("`{first}` is set too: give the connection string one way only"),
        )),
        [(key, v)] => {
            let value = match *key {
                "cloud.connection_string_file" => {
                    secret_from_file(cx, v, dir, key, "connection string")?
                }
                "cloud.connection_string_env" => secret_from_env(
                    cx,
                    v,
                    key,
                    "connection string",
                    "OCELLUS_AZURE_CONNECTION_STRING",
                )?,
                _ => v.get_ref().clone(),
            };
            Ok((value, (*key, *v)))
        }
    }
}

/// `[queue]`, defaults for what is absent.
fn queue(cx: &Cx<'_>, raw: Option<&RawQueue>, device_id: &str, dir: &Path) -> Result<QueueConfig> {
    let mut q = QueueConfig::default_for(device_id);
    let Some(raw) = raw else {
        return Ok(q);
    };
    if let Some(d) = &raw.dir {
        q.dir = resolve_path(cx, d, "queue.dir", dir)?;
    }
    if let Some(m) = &raw.max_mb {
        q.max_bytes = (int_in(cx, m, "queue.max_mb", 1, 1_048_576)? as u64) << 20;
    }
    if let Some(a) = &raw.max_age_s {
        q.max_age = Duration::from_secs(int_in(cx, a, "queue.max_age_s", 60, 31_536_000)? as u64);
    }
    if let Some(w) = &raw.when_full {
        use crate::spool::WhenFull;
        q.when_full = [WhenFull::DropOldest, WhenFull::RefuseNew]
            .into_iter()
            .find(|p| p.as_str() == w.get_ref())
            .ok_or_else(|| {
                cx.at(
                    w,
                    "queue.when_full",
                    format!(
                        "\"{}\": use \"drop_oldest\" (make room by dropping the oldest events) or \"refuse_new\" (keep what is queued, drop new events)",
                        w.get_ref()
                    ),
                )
            })?;
    }
    if let Some(f) = &raw.fsync_ms {
        q.fsync_interval =
            Duration::from_millis(int_in(cx, f, "queue.fsync_ms", 0, 10_000)? as u64);
    }
    Ok(q)
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// Where errors point: the file and its text (for span → line).
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let before = self
            .text
            .as_bytes()
            .get(..offset)
            .unwrap_or(self.text.as_bytes());
        before.iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn err(&self, span: Option<Range<usize>>, key: &str, message: impl std::fmt::Display) -> Error {
        Error::Config {
            path: self.path.to_path_buf(),
            line: span.map(|s| self.line_of(s.start)),
            message: format!("`{key}`: {message}"),
        }
    }

    fn at<T>(&self, value: &Spanned<T>, key: &str, message: impl std::fmt::Display) -> Error {
        self.err(Some(value.span()), key, message)
    }

    /// A line of the file, unless the span is the empty one at 0 (the whole document).
    fn line_of_span(&self, span: Option<&Range<usize>>) -> Option<usize> {
        span.filter(|s| !(s.start == 0 && s.end == 0))
            .map(|s| self.line_of(s.start))
    }

    /// The text is not valid TOML.
    fn syntax_error(&self, e: &toml::de::Error) -> Error {
        let raw = e.message().trim().replace('\n', " | ");
        let span = e.span();
        let message = if raw == "duplicate key" {
            let name = span
                .as_ref()
                .and_then(|s| self.text.get(s.clone()))
                .unwrap_or_default();
            format!(
                "duplicate key `{name}`: a key (or [table]) may appear only once; remove one of them"
            )
        } else {
            format!("{raw} (this is not valid TOML; see {DOCS})")
        };
        Error::Config {
            path: self.path.to_path_buf(),
            line: self.line_of_span(span.as_ref()),
            message,
        }
    }

    /// An error from a section's own validation (`Tracker::new`, `Rules::new`): point at the
    /// key it names when the file has it, else at the section.
    fn option_error(
        &self,
        e: Error,
        doc: &toml::de::DeTable<'_>,
        section: Range<usize>,
        key: &str,
    ) -> Error {
        match e {
            Error::InvalidOption { name, message } => {
                let mut entries = Vec::new();
                collect_table(doc, "", 0, &mut entries);
                let span = entries
                    .iter()
                    .find(|e| e.path == name)
                    .and_then(|e| e.key.clone())
                    .unwrap_or(section);
                self.err(Some(span), &name, message)
            }
            other => self.err(Some(section), key, other),
        }
    }

    /// Valid TOML, but an unknown key, a missing key or a wrong type: name the dotted key found
    /// from the error's span.
    fn schema_error(&self, e: &toml::de::Error, doc: &toml::de::DeTable<'_>) -> Error {
        let mut raw = e.message().trim().replace('\n', " | ");
        for (from, to) in [
            ("expected f64", "expected a number"),
            ("expected f32", "expected a number"),
            ("expected i64", "expected a whole number"),
            ("expected u64", "expected a whole number"),
            ("expected u32", "expected a whole number"),
            ("expected usize", "expected a whole number"),
            ("expected a sequence", "expected a list [...]"),
            ("expected a boolean", "expected true or false"),
        ] {
            raw = raw.replace(from, to);
        }
        let span = e.span();
        let line = self.line_of_span(span.as_ref());
        let key = span.as_ref().and_then(|s| key_at(doc, s));
        let message = if let Some(field) = backticked_after(&raw, "missing field `") {
            let full = match &key {
                Some(k) => format!("{k}.{field}"),
                None => field.to_owned(),
            };
            format!("`{full}`: is required but missing (see {DOCS})")
        } else if let Some(field) = backticked_after(&raw, "unknown field `") {
            let rest = raw
                .strip_prefix(&format!("unknown field `{field}`"))
                .unwrap_or_default();
            let name = key.unwrap_or_else(|| field.to_owned());
            format!("`{name}`: unknown key{rest}; check the spelling (see {DOCS})")
        } else {
            match key {
                // a type error quotes the value: never for a secret
                Some(k) if crate::redact::is_secret_key(&k) => format!(
                    "`{k}`: has the wrong type; give it as a string in double quotes (the value is not shown: it is a secret)"
                ),
                Some(k) => format!("`{k}`: {raw}"),
                None => format!("{raw} (see {DOCS})"),
            }
        };
        Error::Config {
            path: self.path.to_path_buf(),
            line,
            message,
        }
    }
}

/// The name between `prefix` and the next backtick, if `message` starts with `prefix`.
fn backticked_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix)?.split('`').next()
}

struct Entry {
    path: String,
    key: Option<Range<usize>>,
    value: Range<usize>,
    depth: usize,
}

fn collect_table(table: &toml::de::DeTable<'_>, prefix: &str, depth: usize, out: &mut Vec<Entry>) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.push(Entry {
            path: path.clone(),
            key: Some(k.span()),
            value: v.span(),
            depth,
        });
        collect_value(v, &path, depth, out);
    }
}

fn collect_value(
    v: &Spanned<toml::de::DeValue<'_>>,
    path: &str,
    depth: usize,
    out: &mut Vec<Entry>,
) {
    match v.get_ref() {
        toml::de::DeValue::Table(t) => collect_table(t, path, depth + 1, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(Entry {
                    path: p.clone(),
                    key: None,
                    value: item.span(),
                    depth: depth + 1,
                });
                collect_value(item, &p, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// The dotted key (e.g. `rules.line[1].a`) that a TOML error's span points at.
fn key_at(doc: &toml::de::DeTable<'_>, span: &Range<usize>) -> Option<String> {
    if span.start == 0 && span.end == 0 {
        return None; // the document itself (e.g. a missing top-level table)
    }
    let mut entries = Vec::new();
    collect_table(doc, "", 0, &mut entries);
    if let Some(e) = entries.iter().find(|e| e.key.as_ref() == Some(span)) {
        return Some(e.path.clone());
    }
    if let Some(e) = entries
        .iter()
        .filter(|e| &e.value == span)
        .max_by_key(|e| e.depth)
    {
        return Some(e.path.clone());
    }
    entries
        .iter()
        .filter(|e| e.value.start <= span.start && span.end <= e.value.end && !e.value.is_empty())
        .min_by_key(|e| (e.value.len(), usize::MAX - e.depth))
        .map(|e| e.path.clone())
}

fn range_text(lo: i64, hi: i64) -> String {
    if hi == i64::MAX {
        format!("{lo} or more")
    } else {
        format!("{lo}..={hi}")
    }
}

fn int_in(cx: &Cx<'_>, v: &Spanned<i64>, key: &str, lo: i64, hi: i64) -> Result<i64> {
    let x = *v.get_ref();
    if x < lo || x > hi {
        return Err(cx.at(v, key, format!("{x} is outside {}", range_text(lo, hi))));
    }
    Ok(x)
}

fn float_in(cx: &Cx<'_>, v: &Spanned<f64>, key: &str, lo: f64, hi: f64) -> Result<f64> {
    let x = *v.get_ref();
    if !(lo..=hi).contains(&x) {
        return Err(cx.at(v, key, format!("{x} is outside {lo}..={hi}")));
    }
    Ok(x)
}

fn check_xy(p: &[f64; 2]) -> std::result::Result<(), String> {
    for (axis, v) in [("x", p[0]), ("y", p[1])] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!(
                "{axis} = {v} is outside 0..=1 (coordinates are normalised: 0 is the left/top edge, 1 the right/bottom edge)"
            ));
        }
    }
    Ok(())
}

fn point(cx: &Cx<'_>, p: &Spanned<Xy>, key: &str) -> Result<[f64; 2]> {
    check_xy(p.get_ref()).map_err(|m| cx.at(p, key, m))?;
    Ok(p.get_ref().0)
}

/// A point as written in the file: exactly two numbers `[x, y]` (a plain `[f64; 2]` would accept
/// `[x, y, z]` and drop the rest).
#[derive(Debug, Clone, Copy)]
struct Xy([f64; 2]);

impl std::ops::Deref for Xy {
    type Target = [f64; 2];
    fn deref(&self) -> &[f64; 2] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Xy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Xy, D::Error> {
        let v = Vec::<f64>::deserialize(d)?;
        <[f64; 2]>::try_from(v.as_slice()).map(Xy).map_err(|_| {
            serde::de::Error::custom(format!(
                "a point is two numbers [x, y], this has {}",
                v.len()
            ))
        })
    }
}

/// Absolute area of a simple polygon (shoelace formula).
fn polygon_area(pts: &[[f64; 2]]) -> f64 {
    let n = pts.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let p = pts[i];
            let q = pts[(i + 1) % n];
            p[0] * q[1] - q[0] * p[1]
        })
        .sum();
    (twice / 2.0).abs()
}

/// 1..=max characters of `[A-Za-z0-9._-]`.
fn name_problem(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".to_owned());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!("\"{s}\" contains {c:?}"));
    }
    let n = s.chars().count();
    (n > max).then(|| format!("\"{s}\" is {n} characters long"))
}

fn check_name(
    cx: &Cx<'_>,
    v: &Spanned<String>,
    key: &str,
    max: usize,
    what: &str,
) -> Result<String> {
    match name_problem(v.get_ref(), max) {
        Some(problem) => Err(cx.at(
            v,
            key,
            format!(
                "{problem}; a {what} is 1 to {max} characters: {NAME_CHARS} (it becomes part of MQTT topics and events)"
            ),
        )),
        None => Ok(v.get_ref().clone()),
    }
}

fn resolve_path(cx: &Cx<'_>, v: &Spanned<String>, key: &str, dir: &Path) -> Result<PathBuf> {
    let s = v.get_ref();
    if s.trim().is_empty() {
        return Err(cx.at(v, key, "is empty; give a path"));
    }
    let p = Path::new(s);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    })
}

/// Labels must be non-empty, exist in the card and (for rules) be kept by `model.labels`.
fn check_labels(
    cx: &Cx<'_>,
    v: &Spanned<Vec<String>>,
    key: &str,
    card: &ModelCard,
    kept: Option<&[String]>,
) -> Result<Vec<String>> {
    let labels = v.get_ref();
    if labels.is_empty() {
        return Err(cx.at(
            v,
            key,
            "is an empty list; remove the key to keep every label",
        ));
    }
    for l in labels {
        if !card.labels.values().any(|c| &**c == l.as_str()) {
            let known: Vec<&str> = card.labels.values().map(|c| &**c).collect();
            return Err(cx.at(
                v,
                key,
                format!(
                    "\"{l}\" is not a label of model card {} (labels are case-sensitive); it has: {}",
                    card.path.display(),
                    known.join(", ")
                ),
            ));
        }
        if let Some(kept) = kept
            && !kept.contains(l)
        {
            return Err(cx.at(
                v,
                key,
                format!(
                    "\"{l}\" is never detected: `model.labels` keeps only {}; add it there or remove it here",
                    kept.join(", ")
                ),
            ));
        }
    }
    Ok(labels.clone())
}

/// A parsed broker URL: `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address (IPv6 without the brackets).
    pub host: String,
    /// Port (default [`DEFAULT_MQTT_PORT`], [`DEFAULT_MQTTS_PORT`] with TLS).
    pub port: u16,
    /// `mqtts://` (also `ssl://`, `tls://`): TLS.
    pub tls: bool,
}

/// The host as written in a URL: IPv6 addresses in brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or `::1` (also as `::ffff:127.x.y.z`).
/// Plaintext `mqtt://` to any other host needs `mqtt.allow_insecure = true`.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback(),
        Ok(std::net::IpAddr::V6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Plaintext `mqtt://HOST[:PORT]` → (host, port); the error says how to write it. A TLS URL
/// (`mqtts://`) is refused here: use [`parse_broker_url`] where TLS can be set up.
pub fn parse_mqtt_url(url: &str) -> std::result::Result<(String, u16), String> {
    // a password in the URL is never quoted back
    let shown = crate::redact::url(url);
    let b = parse_broker_url(url)?;
    if b.tls {
        return Err(format!(
            "\"{shown}\": TLS (mqtts://) is not available here; give an mqtt:// URL, or use a config file with mqtts:// (see {DOCS})"
        ));
    }
    Ok((b.host, b.port))
}

/// `mqtt://HOST[:PORT]` (also `tcp://`) or `mqtts://HOST[:PORT]` (also `ssl://`, `tls://`); the
/// error says how to write it.
pub fn parse_broker_url(url: &str) -> std::result::Result<BrokerUrl, String> {
    // a password in the URL is never quoted back
    let shown = crate::redact::url(url);
    let form = "write it as mqtts://HOST:PORT (TLS) or mqtt://HOST:PORT, e.g. mqtts://broker.example.com:8883 or mqtt://127.0.0.1:1883";
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("\"{shown}\" is not a URL; {form}"));
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" | "tls" => true,
        _ => {
            return Err(format!(
                "\"{shown}\": unsupported scheme {scheme}://; {form}"
            ));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err(format!(
            "\"{shown}\": user names and passwords in the URL are not supported; {form}"
        ));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!("\"{shown}\" has a path, query or fragment; {form}"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(format!(
                "\"{shown}\": unclosed '[' in the IPv6 address; {form}"
            ));
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!(
                "\"{shown}\": \"{host}\" is not an IPv6 address; {form}"
            ));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(format!("\"{shown}\": unexpected text after ']'; {form}")),
            },
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("\"{shown}\" has no host; {form}"));
    }
    if !rest.starts_with('[')
        && let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "\"{shown}\": the host \"{host}\" contains {c:?}; {form} (IPv6 addresses go in brackets: mqtt://[::1]:1883)"
        ));
    }
    let port = match port {
        None if tls => DEFAULT_MQTTS_PORT,
        None => DEFAULT_MQTT_PORT,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && p.chars().all(|c| c.is_ascii_digit()) => n as u16,
            _ => {
                return Err(format!(
                    "\"{shown}\": port \"{p}\" is not a number in 1..=65535; {form}"
                ));
            }
        },
    };
    Ok(BrokerUrl {
        host: host.to_owned(),
        port,
        tls,
    })
}

fn check_topic_prefix(prefix: &str) -> std::result::Result<(), String> {
    let rule = "use one or more levels of letters, digits, '.', '_' and '-' separated by '/', e.g. \"ocellus\" or \"acme/store-12\"";
    if prefix.is_empty() {
        return Err(format!("is empty; {rule}"));
    }
    if prefix.len() > MAX_TOPIC_PREFIX {
        return Err(format!(
            "is {} characters long; at most {MAX_TOPIC_PREFIX}",
            prefix.len()
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        let why = match c {
            '+' | '#' => " (an MQTT wildcard)",
            _ => "",
        };
        return Err(format!("\"{prefix}\" contains {c:?}{why}; {rule}"));
    }
    if prefix.split('/').any(str::is_empty) {
        return Err(format!(
            "\"{prefix}\" has an empty level (a leading, trailing or doubled '/'); {rule}"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::spool::WhenFull;
    use crate::transport::{Credentials, Secret};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// A config in the repository root, so `models/…` resolves to the real card.
    fn site() -> PathBuf {
        repo().join("site.toml")
    }

    const BASE: &str = r#"[device]
id = "store-12-entrance"

[source]
kind = "video"
path = "footage/vtest.avi"

[model]
card = "models/ssd-mobilenet-v2-coco.toml"

[rules]

[[rules.line]]
name = "door"
a = [0.05, 0.55]
b = [0.95, 0.55]

[[rules.zone]]
name = "queue"
polygon = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]
dwell_s = 10

[mqtt]
url = "mqtt://127.0.0.1:1883"
"#;

    /// 1-based line of the first line of `text` containing `needle`.
    fn line_with(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("`{needle}` not in the text"))
    }

    /// Replace `from` (must occur) and return the new text.
    fn edit(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    }

    /// BASE with its `[source]` keys replaced by `body`.
    fn with_source(body: &str) -> String {
        edit("kind = \"video\"\npath = \"footage/vtest.avi\"", body)
    }

    /// Parse text that must fail; returns (line, message).
    fn fail(text: &str) -> (Option<usize>, String) {
        match Config::parse(text, &site()) {
            Ok(_) => panic!("parsed, but should have failed:\n{text}"),
            Err(Error::Config {
                path,
                line,
                message,
            }) => {
                assert_eq!(path, site());
                (line, message)
            }
            Err(other) => panic!("not a config error: {other}"),
        }
    }

    /// Assert that `text` fails on the line containing `marker`, with a message containing all `parts`.
    #[test]
    fn a_point_is_exactly_two_numbers() {
        for bad in ["a = [0.05, 0.55, 0.9]", "a = [0.05]"] {
            let text = edit("a = [0.05, 0.55]", bad);
            let (line, msg) = fail(&text);
            assert_eq!(line, Some(line_with(&text, bad)), "{msg}");
            assert!(msg.contains("two numbers [x, y]"), "{msg}");
        }
    }

    fn assert_fails(text: &str, marker: &str, parts: &[&str]) -> String {
        let (line, msg) = fail(text);
        assert_eq!(line, Some(line_with(text, marker)), "{msg}");
        for p in parts {
            assert!(msg.contains(p), "`{p}` not in: {msg}");
        }
        msg
    }

    #[test]
    fn base_and_example_parse() {
        let c = Config::parse(BASE, &site()).unwrap();
        assert_eq!(c.device.id, "store-12-entrance");
        assert_eq!(c.mqtt.client_id, "ocellus-store-12-entrance");
        let ex = Config::parse(Config::example(), &repo().join("ocellus.example.toml")).unwrap();
        assert_eq!(ex.model.labels.as_deref(), Some(&["person".to_owned()][..]));
        assert_eq!(ex.rules.lines.len(), 1);
        assert_eq!(ex.rules.zones.len(), 1);
        assert_eq!(ex.runtime.threads, Some(2));
        assert_eq!(ex.tracker.confirm_hits, 3);
        assert_eq!(ex.mqtt.tls, None);
        assert_eq!(ex.queue.max_bytes, 64 << 20);
        assert_eq!(ex.queue.when_full, WhenFull::DropOldest);
        assert_eq!(ex.health.interval, Duration::from_secs(30));
    }

    #[test]
    fn docs_show_the_example() {
        let docs = std::fs::read_to_string(repo().join("docs/config.md")).unwrap();
        let after = docs.split("## Complete example").nth(1).unwrap();
        let block = after.split("```toml\n").nth(1).unwrap();
        let block = block.split("```").next().unwrap();
        assert_eq!(
            block,
            Config::example(),
            "docs/config.md and Config::example() differ"
        );
    }

    #[test]
    fn full_config_parses_to_expected_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cards")).unwrap();
        std::fs::copy(
            repo().join("models/ssd-mobilenet-v2-coco.toml"),
            dir.path().join("cards/ssd.toml"),
        )
        .unwrap();
        let text = r#"
[device]
id = "store-12_entrance.A"

[runtime]
onnxruntime = "lib/libonnxruntime.so.1.31.1"
threads = 4

[source]
kind = "video"
path = "clips/door.avi"
fps = 12.5
loop = true

[model]
card = "cards/ssd.toml"
threshold = 0.4
labels = ["person", "dog"]

[tracker]
high_threshold = 0.55
max_lost_frames = 12

[rules]
line_hysteresis = 0.02
zone_debounce_frames = 3

[[rules.line]]
name = "door"
a = [0, 0.5]
b = [1, 0.5]
labels = ["person"]

[[rules.line]]
name = "side-door"
a = [0.9, 0.1]
b = [0.9, 0.9]

[[rules.zone]]
name = "queue"
polygon = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]
dwell_s = 2.5
labels = ["dog"]

[[rules.zone]]
name = "till"
polygon = [[0.6, 0.6], [0.9, 0.6], [0.75, 0.9]]

[mqtt]
url = "mqtt://broker.local"
allow_insecure = true
topic_prefix = "acme/stores"
client_id = "cam-12"
keep_alive_s = 60
username = "cam-12"
password_file = "secrets/mqtt-password"

[queue]
dir = "spool"
max_mb = 8
max_age_s = 3600
when_full = "refuse_new"
fsync_ms = 0

[health]
interval_s = 5
"#;
        let path = dir.path().join("site.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        std::fs::write(
            dir.path().join("secrets/mqtt-password"),
            "s3cret pw\nignored\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        let d = dir.path();
        assert_eq!(c.path, path);
        assert_eq!(c.device.id, "store-12_entrance.A");
        assert_eq!(
            c.runtime,
            RuntimeConfig {
                onnxruntime: Some(d.join("lib/libonnxruntime.so.1.31.1")),
                threads: Some(4),
            }
        );
        assert_eq!(
            c.source,
            SourceConfig::Video {
                input: VideoInput::File(d.join("clips/door.avi")),
                fps: Some(12.5),
                looped: true,
            }
        );
        assert_eq!(c.source.kind(), "video");
        assert_eq!(c.source.fps(), Some(12.5));
        assert_eq!(c.model.card_path, d.join("cards/ssd.toml"));
        assert_eq!(c.model.card.name, "ssd-mobilenet-v2-coco");
        assert_eq!(c.model.threshold, Some(0.4));
        assert!((c.model.effective_threshold() - 0.4).abs() < 1e-6);
        assert_eq!(
            c.model.labels,
            Some(vec!["person".to_owned(), "dog".to_owned()])
        );
        assert_eq!(
            c.tracker,
            TrackerConfig {
                high_threshold: 0.55,
                max_lost_frames: 12,
                ..TrackerConfig::default()
            }
        );
        assert_eq!(
            c.rules.config,
            RulesConfig {
                line_hysteresis: 0.02,
                zone_debounce_frames: 3,
            }
        );
        assert_eq!(
            c.rules.lines,
            vec![
                LineRule {
                    name: "door".into(),
                    a: [0.0, 0.5],
                    b: [1.0, 0.5],
                    labels: vec!["person".into()],
                },
                LineRule {
                    name: "side-door".into(),
                    a: [0.9, 0.1],
                    b: [0.9, 0.9],
                    labels: vec![],
                },
            ]
        );
        assert_eq!(
            c.rules.zones,
            vec![
                ZoneRule {
                    name: "queue".into(),
                    polygon: vec![[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]],
                    dwell: Some(Duration::from_millis(2500)),
                    labels: vec!["dog".into()],
                },
                ZoneRule {
                    name: "till".into(),
                    polygon: vec![[0.6, 0.6], [0.9, 0.6], [0.75, 0.9]],
                    dwell: None,
                    labels: vec![],
                },
            ]
        );
        assert_eq!(
            c.mqtt,
            MqttConfig {
                host: "broker.local".into(),
                port: 1883,
                topic_prefix: "acme/stores".into(),
                client_id: "cam-12".into(),
                keep_alive: Duration::from_secs(60),
                tls: None,
                credentials: Some(Credentials {
                    username: "cam-12".into(),
                    password: Some(Secret::new("s3cret pw")),
                }),
                allow_insecure: true,
            }
        );
        assert_eq!(
            c.queue,
            QueueConfig {
                dir: d.join("spool"),
                max_bytes: 8 << 20,
                max_age: Duration::from_secs(3600),
                when_full: WhenFull::RefuseNew,
                fsync_interval: Duration::ZERO,
            }
        );
        assert_eq!(c.health.interval, Duration::from_secs(5));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the password is printed"
        );
    }

    #[test]
    fn defaults_apply_when_optional_keys_are_absent() {
        let minimal = r#"
[device]
id = "cam"
[source]
kind = "synthetic"
[model]
card = "models/ssd-mobilenet-v2-coco.toml"
[mqtt]
url = "mqtt://[::1]"
"#;
        let c = Config::parse(minimal, &site()).unwrap();
        assert_eq!(c.runtime, RuntimeConfig::default());
        assert_eq!(
            c.source,
            SourceConfig::Synthetic {
                width: 640,
                height: 480,
                frames: 300,
                objects: 3,
                seed: 0,
                fps: None,
            }
        );
        assert_eq!(c.model.threshold, None);
        assert!((c.model.effective_threshold() - 0.5).abs() < 1e-6);
        assert_eq!(c.model.labels, None);
        assert_eq!(c.tracker, TrackerConfig::default());
        assert_eq!(c.rules, RulesSection::default());
        assert_eq!(c.mqtt.host, "::1");
        assert_eq!(c.mqtt.port, DEFAULT_MQTT_PORT);
        assert_eq!(c.mqtt.topic_prefix, "ocellus");
        assert_eq!(c.mqtt.client_id, "ocellus-cam");
        assert_eq!(c.mqtt.keep_alive, DEFAULT_KEEP_ALIVE);
        assert_eq!(c.mqtt.tls, None);
        assert_eq!(c.mqtt.credentials, None);
        assert!(!c.mqtt.allow_insecure);
        assert_eq!(
            c.queue,
            QueueConfig {
                dir: crate::paths::state_dir().join("queue").join("cam"),
                max_bytes: 64 << 20,
                max_age: Duration::from_secs(604_800),
                when_full: WhenFull::DropOldest,
                fsync_interval: Duration::from_millis(100),
            }
        );
        assert_eq!(c.health.interval, Duration::from_secs(30));
    }

    #[test]
    fn sources_resolve_urls_globs_and_synthetic_settings() {
        let c = Config::parse(
            &edit(
                "path = \"footage/vtest.avi\"",
                "path = \"rtsp://10.0.0.5:554/stream1\"",
            ),
            &site(),
        )
        .unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Video {
                input: VideoInput::Url("rtsp://10.0.0.5:554/stream1".into()),
                fps: None,
                looped: false,
            }
        );
        let c = Config::parse(
            &edit(
                "kind = \"video\"\npath = \"footage/vtest.avi\"",
                "kind = \"images\"\npath = \"frames/*.png\"\nfps = 2",
            ),
            &site(),
        )
        .unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Images {
                pattern: repo().join("frames/*.png"),
                fps: Some(2.0),
                looped: false,
            }
        );
        let c = Config::parse(
            &edit(
                "kind = \"video\"\npath = \"footage/vtest.avi\"",
                "kind = \"synthetic\"\nwidth = 320\nheight = 240\nframes = 50\nobjects = 5\nseed = 7",
            ),
            &site(),
        )
        .unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Synthetic {
                width: 320,
                height: 240,
                frames: 50,
                objects: 5,
                seed: 7,
                fps: None,
            }
        );
        assert_fails(
            &edit("kind = \"video\"", "kind = \"video\"\nwidth = 320"),
            "width = 320",
            &["`source.width`", "synthetic"],
        );
        assert_fails(
            &edit(
                "path = \"footage/vtest.avi\"",
                "path = \"http://cam/x.mjpg\"",
            ),
            "http://",
            &["`source.path`", "rtsp://"],
        );
        assert_fails(
            &edit(
                "path = \"footage/vtest.avi\"",
                "path = \"footage/vtest.avi\"\nfps = 0",
            ),
            "fps = 0",
            &["`source.fps`", "more than 0"],
        );
        assert_fails(
            &edit("kind = \"video\"", "kind = \"webcam\""),
            "webcam",
            &["`source.kind`", "\"webcam\" is not a source kind"],
        );
    }

    #[test]
    fn unknown_key_names_the_key_and_its_line() {
        let text = edit("kind = \"video\"", "kind = \"video\"\ncolour = 1");
        let msg = assert_fails(
            &text,
            "colour = 1",
            &["`source.colour`", "unknown key", "`kind`"],
        );
        assert!(msg.contains(DOCS), "{msg}");
        // in an array of tables and in [tracker] too
        let text = edit("b = [0.95, 0.55]", "b = [0.95, 0.55]\ndirection = \"in\"");
        assert_fails(
            &text,
            "direction",
            &["`rules.line[0].direction`", "unknown key"],
        );
        let text = edit("[rules]", "[tracker]\nmax_lost = 3\n\n[rules]");
        assert_fails(&text, "max_lost", &["`tracker.max_lost`", "unknown key"]);
        // an unknown table
        let text = edit("[rules]", "[rulez]\n\n[rules]");
        assert_fails(&text, "[rulez]", &["`rulez`", "unknown key"]);
    }

    #[test]
    fn wrong_types_and_missing_keys_name_the_key() {
        let text = edit("dwell_s = 10", "dwell_s = \"10s\"");
        assert_fails(
            &text,
            "dwell_s",
            &[
                "`rules.zone[0].dwell_s`",
                "invalid type",
                "expected a number",
            ],
        );
        let text = edit("id = \"store-12-entrance\"\n", "");
        assert_fails(&text, "[device]", &["`device.id`", "required"]);
        let text = edit("name = \"queue\"\n", "");
        assert_fails(
            &text,
            "[[rules.zone]]",
            &["`rules.zone[0].name`", "required"],
        );
        let text = edit("[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n", "");
        let (line, msg) = fail(&text);
        assert_eq!(line, None, "{msg}");
        assert!(msg.contains("`mqtt`") && msg.contains("required"), "{msg}");
        let text = edit("dwell_s = 10", "dwell_s = 10\ndwell_s = 11");
        assert_fails(&text, "dwell_s = 11", &["duplicate key `dwell_s`"]);
        let text = edit("[rules]", "[rules");
        assert_fails(&text, "[rules", &["TOML"]);
    }

    #[test]
    fn point_out_of_range_names_the_point_and_axis() {
        let text = edit("a = [0.05, 0.55]", "a = [1.5, 0.55]");
        let (line, msg) = fail(&text);
        assert_eq!(line, Some(line_with(&text, "a = [1.5")));
        assert!(
            msg.starts_with("`rules.line[0].a`: x = 1.5 is outside 0..=1"),
            "{msg}"
        );
        let text = edit("[0.5, 0.5], [0.1, 0.5]]", "[0.5, -0.2], [0.1, 0.5]]");
        assert_fails(
            &text,
            "polygon",
            &["`rules.zone[0].polygon[2]`", "y = -0.2 is outside 0..=1"],
        );
        let text = edit("b = [0.95, 0.55]", "b = [0.05, 0.55]");
        assert_fails(&text, "b = [0.05", &["`rules.line[0].b`", "same point"]);
    }

    #[test]
    fn device_id_refuses_topic_characters() {
        for bad in ["store/12", "store+12", "store#12", "store 12"] {
            let text = edit("id = \"store-12-entrance\"", &format!("id = \"{bad}\""));
            let c = bad.chars().find(|c| !c.is_ascii_alphanumeric()).unwrap();
            assert_fails(
                &text,
                "id = ",
                &["`device.id`", bad, &format!("contains {c:?}"), "1 to 128"],
            );
        }
        let long = "x".repeat(129);
        let text = edit("id = \"store-12-entrance\"", &format!("id = \"{long}\""));
        assert_fails(&text, "id = ", &["`device.id`", "129 characters"]);
        let text = edit("id = \"store-12-entrance\"", "id = \"\"");
        assert_fails(&text, "id = ", &["`device.id`", "is empty"]);
    }

    #[test]
    fn missing_model_card_names_key_path_and_line() {
        let text = edit("models/ssd-mobilenet-v2-coco.toml", "models/nope.toml");
        let msg = assert_fails(&text, "card = ", &["`model.card`", "nope.toml"]);
        assert!(
            msg.contains(&repo().join("models/nope.toml").display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains("relative to the config file's directory"),
            "{msg}"
        );
    }

    #[test]
    fn labels_must_exist_in_the_card() {
        let text = edit(
            "card = \"models/ssd-mobilenet-v2-coco.toml\"",
            "card = \"models/ssd-mobilenet-v2-coco.toml\"\nlabels = [\"person\", \"Person\"]",
        );
        assert_fails(
            &text,
            "labels = ",
            &[
                "`model.labels`",
                "\"Person\" is not a label",
                "ssd-mobilenet-v2-coco.toml",
                "person, bicycle",
            ],
        );
        let text = edit("dwell_s = 10", "dwell_s = 10\nlabels = [\"unicorn\"]");
        assert_fails(&text, "unicorn", &["`rules.zone[0].labels`", "\"unicorn\""]);
        // a rule label that model.labels filters out would never fire
        let text = edit(
            "card = \"models/ssd-mobilenet-v2-coco.toml\"",
            "card = \"models/ssd-mobilenet-v2-coco.toml\"\nlabels = [\"person\"]",
        )
        .replacen(
            "b = [0.95, 0.55]",
            "b = [0.95, 0.55]\nlabels = [\"car\"]",
            1,
        );
        assert_fails(
            &text,
            "\"car\"",
            &["`rules.line[0].labels`", "never detected"],
        );
        let text = edit("dwell_s = 10", "dwell_s = 10\nlabels = []");
        assert_fails(&text, "labels = []", &["`rules.zone[0].labels`", "empty"]);
        let text = edit(
            "card = \"models/ssd-mobilenet-v2-coco.toml\"",
            "card = \"models/ssd-mobilenet-v2-coco.toml\"\nthreshold = 1.2",
        );
        assert_fails(
            &text,
            "threshold",
            &["`model.threshold`", "1.2 is outside 0..=1"],
        );
    }

    #[test]
    fn rule_names_must_be_unique_and_valid() {
        let text = edit("name = \"queue\"", "name = \"door\"");
        let (line, msg) = fail(&text);
        for part in [
            "`rules.zone[0].name`",
            "\"door\"",
            "already",
            "`rules.line[0]`",
            "unique",
        ] {
            assert!(msg.contains(part), "`{part}` not in: {msg}");
        }
        assert_eq!(line, Some(line_with(&text, "polygon") - 1));
        let text = format!(
            "{}\n[[rules.line]]\nname = \"door\"\na = [0, 0]\nb = [1, 1]\n",
            BASE.replace("[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n", "")
        ) + "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n";
        let (line, msg) = fail(&text);
        assert!(msg.contains("`rules.line[1].name`"), "{msg}");
        assert_eq!(
            line,
            text.lines()
                .enumerate()
                .filter(|(_, l)| *l == "name = \"door\"")
                .map(|(i, _)| i + 1)
                .last()
        );
        let text = edit("name = \"door\"", "name = \"front door\"");
        assert_fails(
            &text,
            "front door",
            &["`rules.line[0].name`", "contains ' '"],
        );
    }

    #[test]
    fn degenerate_polygons_are_refused() {
        let text = edit(
            "[[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]",
            "[[0.1, 0.1], [0.3, 0.3], [0.5, 0.5]]",
        );
        assert_fails(&text, "polygon", &["`rules.zone[0].polygon`", "zero area"]);
        let text = edit(
            "[[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]",
            "[[0.1, 0.1], [0.5, 0.1]]",
        );
        assert_fails(
            &text,
            "polygon",
            &["`rules.zone[0].polygon`", "has 2 points"],
        );
    }

    #[test]
    fn dwell_must_be_positive() {
        for bad in ["0", "-1", "86401"] {
            let text = edit("dwell_s = 10", &format!("dwell_s = {bad}"));
            assert_fails(
                &text,
                "dwell_s",
                &["`rules.zone[0].dwell_s`", "more than 0"],
            );
        }
    }

    #[test]
    fn mqtt_url_and_topic_are_checked() {
        for (bad, why) in [
            ("127.0.0.1:1883", "not a URL"),
            ("mqtt://127.0.0.1:0", "1..=65535"),
            ("mqtt://127.0.0.1:99999", "1..=65535"),
            ("mqtt://:1883", "no host"),
            ("mqtt://user:pw@host", "passwords"),
            ("mqtt://host/topic", "path"),
            ("http://host", "unsupported scheme"),
        ] {
            let text = edit("mqtt://127.0.0.1:1883", bad);
            assert_fails(&text, "url = ", &["`mqtt.url`", why]);
        }
        let c = Config::parse(
            &edit("127.0.0.1:1883\"", "10.1.2.3:2883\"\nallow_insecure = true"),
            &site(),
        )
        .unwrap();
        assert_eq!((c.mqtt.host.as_str(), c.mqtt.port), ("10.1.2.3", 2883));
        for (bad, why) in [
            ("ocellus/+", "'+'"),
            ("ocellus/#", "'#'"),
            ("/ocellus", "empty level"),
            ("ocellus/", "empty level"),
            ("a//b", "empty level"),
            ("", "is empty"),
            ("shop 1", "' '"),
        ] {
            let text = edit(
                "url = \"mqtt://127.0.0.1:1883\"",
                &format!("url = \"mqtt://127.0.0.1:1883\"\ntopic_prefix = \"{bad}\""),
            );
            assert_fails(&text, "topic_prefix", &["`mqtt.topic_prefix`", why]);
        }
        let text = edit(
            "url = \"mqtt://127.0.0.1:1883\"",
            "url = \"mqtt://127.0.0.1:1883\"\nkeep_alive_s = 1",
        );
        assert_fails(
            &text,
            "keep_alive_s",
            &["`mqtt.keep_alive_s`", "1 is outside 5..=3600"],
        );
        for removed in ["0", "10000", "\"many\""] {
            let text = edit(
                "url = \"mqtt://127.0.0.1:1883\"",
                &format!("url = \"mqtt://127.0.0.1:1883\"\nmax_pending_events = {removed}"),
            );
            assert_fails(
                &text,
                "max_pending_events",
                &[
                    "`mqtt.max_pending_events`",
                    "was removed: events now wait on disk",
                    "[queue] max_mb",
                ],
            );
        }
    }

    #[test]
    fn long_device_id_gives_a_valid_default_client_id() {
        let id = "x".repeat(128);
        let c = Config::parse(
            &edit("id = \"store-12-entrance\"", &format!("id = \"{id}\"")),
            &site(),
        )
        .unwrap();
        assert_eq!(c.mqtt.client_id.len(), MAX_CLIENT_ID);
        assert!(c.mqtt.client_id.starts_with("ocellus-x"));
    }

    #[test]
    fn sensor_source_parses_and_checks_its_keys() {
        let sensor = "kind = \"sensor\"\nbus = \"sim\"\nmode = \"1640x1232\"\nfps = 25\nexposure_us = 8000\nanalog_gain_db = 6\ntest_pattern = \"colour-bars\"";
        let text = with_source(sensor);
        let c = Config::parse(&text, &site()).unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Sensor {
                sprite: None,
                bus: SensorBus::Sim,
                video: None,
                mode: ocellus_imx219::Mode::Binned1640x1232,
                fps: 25.0,
                exposure_us: Some(8000.0),
                analog_gain_db: Some(6.0),
                auto_exposure: false,
                test_pattern: SensorPattern::ColourBars,
            }
        );
        let bad_mode = text.replace("mode = \"1640x1232\"", "mode = \"4k\"");
        assert_fails(&bad_mode, "mode = ", &["`source.mode`", "4k", "640x480"]);
        let too_fast = text
            .replace("fps = 25", "fps = 60")
            .replace("1640x1232", "3280x2464");
        assert_fails(&too_fast, "fps = ", &["`source.fps`", "60", "3280x2464"]);
        let with_path = text.replace("bus = \"sim\"", "path = \"x.avi\"");
        assert_fails(&with_path, "path = ", &["`source.path`", "sensor"]);
        let pattern_on_video = edit(
            "path = \"footage/vtest.avi\"",
            "path = \"footage/vtest.avi\"\ntest_pattern = \"pn9\"",
        );
        assert_fails(
            &pattern_on_video,
            "test_pattern",
            &["`source.test_pattern`", "only applies"],
        );
    }

    #[test]
    fn sensor_defaults_to_the_simulator() {
        let c = Config::parse(&with_source("kind = \"sensor\""), &site()).unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Sensor {
                sprite: None,
                bus: SensorBus::Sim,
                video: None,
                mode: ocellus_imx219::Mode::Binned640x480,
                fps: 30.0,
                exposure_us: None,
                analog_gain_db: None,
                auto_exposure: false,
                test_pattern: SensorPattern::None,
            }
        );
        assert_eq!(c.source.kind(), "sensor");
        assert_eq!(c.source.fps(), Some(30.0));
    }

    #[test]
    fn sensor_on_a_linux_i2c_bus_parses() {
        let board = "kind = \"sensor\"\nbus = \"/dev/i2c-1\"\naddress = 0x36\nvideo = \"/dev/video0\"\nauto_exposure = true\nexposure_us = 5000";
        let c = Config::parse(&with_source(board), &site()).unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Sensor {
                sprite: None,
                bus: SensorBus::Linux {
                    path: PathBuf::from("/dev/i2c-1"),
                    address: 0x36,
                },
                video: Some(PathBuf::from("/dev/video0")),
                mode: ocellus_imx219::Mode::Binned640x480,
                fps: 30.0,
                exposure_us: Some(5000.0),
                analog_gain_db: None,
                auto_exposure: true,
                test_pattern: SensorPattern::None,
            }
        );
        // the IMX219's address by default; a relative `video` resolves against the config's directory
        let text = with_source("kind = \"sensor\"\nbus = \"/dev/i2c-0\"\nvideo = \"dev/video2\"");
        let c = Config::parse(&text, &site()).unwrap();
        match c.source {
            SourceConfig::Sensor { bus, video, .. } => {
                assert_eq!(
                    bus,
                    SensorBus::Linux {
                        path: PathBuf::from("/dev/i2c-0"),
                        address: DEFAULT_SENSOR_ADDRESS,
                    }
                );
                assert_eq!(DEFAULT_SENSOR_ADDRESS, 0x10);
                assert_eq!(video, Some(repo().join("dev/video2")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_sprite_walks_through_the_simulated_scene_only() {
        let text = with_source(
            "kind = \"sensor\"\nsprite = { image = \"people/walker.png\", to = [0.9, 0.6], walk_s = 4 }",
        );
        let cfg = Config::parse(&text, &site()).unwrap();
        let SourceConfig::Sensor { sprite, .. } = &cfg.source else {
            panic!("{:?}", cfg.source);
        };
        let sp = sprite.as_ref().unwrap();
        assert!(
            sp.image.ends_with("people/walker.png") && sp.image.is_absolute(),
            "{sp:?}"
        );
        assert_eq!((sp.from, sp.to, sp.size), ([0.15, 0.5], [0.9, 0.6], 0.6));
        assert_eq!(sp.walk, std::time::Duration::from_secs(4));
        let on_board = with_source(
            "kind = \"sensor\"\nbus = \"/dev/i2c-1\"\nvideo = \"/dev/video0\"\nsprite = { image = \"p.png\" }",
        );
        assert_fails(
            &on_board,
            "sprite = ",
            &["`source.sprite`", "bus = \"sim\""],
        );
        let big = with_source("kind = \"sensor\"\nsprite = { image = \"p.png\", size = 3 }");
        assert_fails(&big, "sprite = ", &["`source.sprite.size`", "0.05..=1"]);
        let off = with_source("kind = \"sensor\"\nsprite = { image = \"p.png\", from = [1.5, 0] }");
        assert_fails(&off, "sprite = ", &["`source.sprite.from`", "0..=1"]);
        let video =
            with_source("kind = \"video\"\npath = \"a.avi\"\nsprite = { image = \"p.png\" }");
        assert_fails(&video, "sprite = ", &["`source.sprite`"]);
    }

    #[test]
    fn sensor_bus_address_and_video_are_checked() {
        let board =
            "kind = \"sensor\"\nbus = \"/dev/i2c-1\"\naddress = 0x36\nvideo = \"/dev/video0\"";
        let text = with_source(board).replace("video = \"/dev/video0\"\n", "");
        assert_fails(
            &text,
            "bus = ",
            &[
                "`source.video`",
                "required",
                "\"/dev/i2c-1\"",
                "/dev/video0",
            ],
        );
        let sim_video = with_source("kind = \"sensor\"\nbus = \"sim\"\nvideo = \"/dev/video0\"");
        assert_fails(
            &sim_video,
            "video = ",
            &["`source.video`", "bus = \"sim\"", "own pixels"],
        );
        let sim_address = with_source("kind = \"sensor\"\nbus = \"sim\"\naddress = 0x10");
        assert_fails(
            &sim_address,
            "address = ",
            &["`source.address`", "bus = \"sim\"", "remove it"],
        );
        // no bus is bus = "sim"
        let default_address = with_source("kind = \"sensor\"\naddress = 0x10");
        assert_fails(&default_address, "address = ", &["`source.address`", "sim"]);
        for bad in ["i2c-1", "dev/i2c-1", "Sim", ""] {
            let text = with_source(&format!("kind = \"sensor\"\nbus = \"{bad}\""));
            assert_fails(
                &text,
                "bus = ",
                &[
                    "`source.bus`",
                    &format!("\"{bad}\""),
                    "\"sim\"",
                    "/dev/i2c-1",
                ],
            );
        }
        for (bad, shown) in [
            ("0x78", "0x78"),
            ("0x07", "0x07"),
            ("0", "0x00"),
            ("-1", "-1"),
        ] {
            let text = with_source(&board.replace("0x36", bad));
            assert_fails(
                &text,
                "address = ",
                &[
                    "`source.address`",
                    &format!("{shown} is outside 0x08..=0x77"),
                ],
            );
        }
        let url_video = with_source(&board.replace("/dev/video0", "rtsp://cam/1"));
        assert_fails(&url_video, "video = ", &["`source.video`", "is a URL"]);
        // the board keys belong to the sensor, the V4L2 keys to v4l2
        let on_video = edit(
            "path = \"footage/vtest.avi\"",
            "path = \"footage/vtest.avi\"\nauto_exposure = true",
        );
        assert_fails(
            &on_video,
            "auto_exposure",
            &[
                "`source.auto_exposure`",
                "only applies to kind = \"sensor\"",
            ],
        );
        let device_on_sensor = with_source(&format!("{board}\ndevice = \"/dev/video1\""));
        assert_fails(
            &device_on_sensor,
            "device = ",
            &["`source.device`", "\"v4l2\"", "not \"sensor\""],
        );
    }

    #[test]
    fn v4l2_source_parses_into_its_variant() {
        let v4l2 = "kind = \"v4l2\"\ndevice = \"/dev/video0\"\nformat = \"mjpeg\"\nwidth = 1280\nheight = 720\nfps = 30";
        let c = Config::parse(&with_source(v4l2), &site()).unwrap();
        assert_eq!(
            c.source,
            SourceConfig::V4l2 {
                device: PathBuf::from("/dev/video0"),
                format: Some(crate::source::convert::PixelFormat::Mjpeg),
                size: Some((1280, 720)),
                fps: Some(30.0),
            }
        );
        assert_eq!(c.source.kind(), "v4l2");
        assert_eq!(c.source.fps(), Some(30.0));
        for f in crate::source::convert::PixelFormat::ALL {
            let text = with_source(&v4l2.replace("mjpeg", f.name()));
            match Config::parse(&text, &site()).unwrap().source {
                SourceConfig::V4l2 { format, .. } => assert_eq!(format, Some(f)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn v4l2_defaults_leave_format_size_and_fps_to_the_device() {
        let text = with_source("kind = \"v4l2\"\ndevice = \"cams/front\"");
        let c = Config::parse(&text, &site()).unwrap();
        assert_eq!(
            c.source,
            SourceConfig::V4l2 {
                device: repo().join("cams/front"),
                format: None,
                size: None,
                fps: None,
            }
        );
        assert_eq!(c.source.fps(), None);
    }

    #[test]
    fn v4l2_size_comes_as_width_and_height() {
        let base = "kind = \"v4l2\"\ndevice = \"/dev/video0\"";
        let text = with_source(&format!("{base}\nwidth = 1280"));
        let msg = assert_fails(&text, "width = ", &["`source.height`", "`source.width`"]);
        assert!(msg.starts_with("`source.height`"), "{msg}");
        let text = with_source(&format!("{base}\nheight = 720"));
        let msg = assert_fails(&text, "height = ", &["`source.width`", "`source.height`"]);
        assert!(msg.starts_with("`source.width`"), "{msg}");
        let text = with_source(&format!("{base}\nwidth = 8193\nheight = 720"));
        assert_fails(
            &text,
            "width = ",
            &["`source.width`", "8193 is outside 16..=8192"],
        );
        let text = with_source(&format!("{base}\nwidth = 1280\nheight = 8"));
        assert_fails(
            &text,
            "height = ",
            &["`source.height`", "8 is outside 16..=8192"],
        );
        let text = with_source(&format!("{base}\nfps = 0"));
        assert_fails(&text, "fps = ", &["`source.fps`", "more than 0"]);
        let text = with_source(&format!("{base}\nfps = 1001"));
        assert_fails(&text, "fps = ", &["`source.fps`", "at most 1000"]);
    }

    #[test]
    fn v4l2_format_must_be_a_pixel_format_name() {
        for bad in ["h264", "MJPEG", ""] {
            let text = with_source(&format!(
                "kind = \"v4l2\"\ndevice = \"/dev/video0\"\nformat = \"{bad}\""
            ));
            assert_fails(
                &text,
                "format = ",
                &[
                    "`source.format`",
                    &format!("\"{bad}\" is not a pixel format"),
                    "\"yuyv\", \"uyvy\", \"nv12\", \"rgb24\", \"bgr24\", \"grey\" or \"mjpeg\"",
                ],
            );
        }
    }

    #[test]
    fn v4l2_refuses_unknown_missing_and_foreign_keys() {
        let base = "kind = \"v4l2\"\ndevice = \"/dev/video0\"";
        let text = with_source(&format!("{base}\ncolour = 1"));
        let msg = assert_fails(&text, "colour = 1", &["`source.colour`", "unknown key"]);
        assert!(
            msg.contains("`device`") && msg.contains("`format`"),
            "{msg}"
        );
        for (key, kinds) in [
            ("path = \"x.avi\"", "\"video\" or \"images\""),
            ("loop = true", "\"video\" or \"images\""),
            ("frames = 3", "\"synthetic\""),
            ("mode = \"640x480\"", "\"sensor\""),
            ("bus = \"sim\"", "\"sensor\""),
            ("video = \"/dev/video1\"", "\"sensor\""),
        ] {
            let name = key.split(' ').next().unwrap();
            let text = with_source(&format!("{base}\n{key}"));
            assert_fails(
                &text,
                key,
                &[
                    &format!("`source.{name}`"),
                    &format!("only applies to kind = {kinds}, not \"v4l2\""),
                ],
            );
        }
        // the first such key in the file is reported
        let text = with_source(&format!("{base}\nseed = 1\npath = \"x.avi\""));
        assert_fails(&text, "seed = ", &["`source.seed`"]);
        let text = with_source("kind = \"v4l2\"");
        assert_fails(
            &text,
            "[source]",
            &["`source.device`", "required", "/dev/video0"],
        );
        let text = with_source("kind = \"v4l2\"\ndevice = \"\"");
        assert_fails(&text, "device = ", &["`source.device`", "is empty"]);
        let text = with_source("kind = \"v4l2\"\ndevice = \"rtsp://cam/1\"");
        assert_fails(
            &text,
            "device = ",
            &["`source.device`", "is a URL", "kind = \"video\""],
        );
        // and the v4l2 keys apply to it only
        let text = edit(
            "path = \"footage/vtest.avi\"",
            "path = \"footage/vtest.avi\"\nformat = \"yuyv\"",
        );
        assert_fails(
            &text,
            "format = ",
            &[
                "`source.format`",
                "only applies to kind = \"v4l2\", not \"video\"",
            ],
        );
    }

    #[test]
    fn unknown_kind_lists_every_kind() {
        let text = edit("kind = \"video\"", "kind = \"webcam\"");
        assert_fails(
            &text,
            "kind = ",
            &[
                "`source.kind`",
                "\"webcam\" is not a source kind",
                "use \"video\", \"images\", \"synthetic\", \"sensor\" or \"v4l2\"",
            ],
        );
    }

    #[test]
    fn tracker_and_rule_settings_point_at_their_key() {
        let text = edit(
            "[rules]",
            "[tracker]\nconfirm_hits = 2\nmatch_iou = 7.0\n\n[rules]",
        );
        assert_fails(&text, "match_iou", &["`tracker.match_iou`", "7"]);
        let text = edit("[rules]", "[rules]\nline_hysteresis = 0.5");
        assert_fails(
            &text,
            "line_hysteresis",
            &["`rules.line_hysteresis`", "less than 0.5", "got 0.5"],
        );
        let text = edit("[rules]", "[rules]\nzone_debounce_frames = 0");
        assert_fails(
            &text,
            "zone_debounce_frames",
            &["`rules.zone_debounce_frames`", "0 is outside 1..=100"],
        );
    }

    #[test]
    fn runtime_threads_range() {
        let text = edit("[source]", "[runtime]\nthreads = 0\n\n[source]");
        assert_fails(
            &text,
            "threads",
            &["`runtime.threads`", "0 is outside 1..=64"],
        );
    }

    #[test]
    fn load_refuses_missing_and_huge_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        match Config::load(&missing) {
            Err(Error::Config {
                path,
                line,
                message,
            }) => {
                assert_eq!(path, missing);
                assert_eq!(line, None);
                assert!(message.contains("cannot open"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let huge = dir.path().join("huge.toml");
        std::fs::write(&huge, vec![b'#'; (MAX_CONFIG_BYTES + 1) as usize]).unwrap();
        match Config::load(&huge) {
            Err(Error::Config { message, .. }) => assert!(message.contains("larger"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    /// BASE with its `[mqtt]` section replaced by `body`.
    fn with_mqtt(body: &str) -> String {
        edit(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n",
            &format!("[mqtt]\n{body}\n"),
        )
    }

    /// A config at `dir/site.toml` with `[mqtt]` = `body` (and `extra` sections): parse it.
    fn parse_in(dir: &Path, body: &str, extra: &str) -> Result<Config> {
        let card = repo().join("models/ssd-mobilenet-v2-coco.toml");
        let text = format!(
            "[device]\nid = \"cam\"\n[source]\nkind = \"synthetic\"\n[model]\ncard = \"{}\"\n[mqtt]\n{body}\n{extra}",
            card.display()
        );
        Config::parse(&text, &dir.join("site.toml"))
    }

    /// The message of a config error, with the 1-based line of the first line of `text`
    /// containing `marker` checked.
    fn fails_in(dir: &Path, body: &str, marker: &str, parts: &[&str]) -> String {
        let text_line = 8 + body
            .lines()
            .position(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("`{marker}` not in the body"));
        match parse_in(dir, body, "") {
            Ok(_) => panic!("parsed, but should have failed:\n{body}"),
            Err(Error::Config { line, message, .. }) => {
                assert_eq!(line, Some(text_line), "{message}");
                for p in parts {
                    assert!(message.contains(p), "`{p}` not in: {message}");
                }
                message
            }
            Err(other) => panic!("not a config error: {other}"),
        }
    }

    /// A CA certificate, and a client certificate with its key, made by the openssl CLI.
    fn pki(dir: &Path) {
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("the openssl CLI is needed by these tests");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for (key, cert, cn) in [
            ("ca.key", "ca.pem", "test-ca"),
            ("cam.key", "cam.pem", "cam"),
            ("other.key", "other.pem", "other"),
        ] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
            ]);
        }
    }

    #[test]
    fn mqtts_urls_take_tls_files_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("certs")).unwrap();
        pki(&d.join("certs"));
        let c = parse_in(
            d,
            "url = \"mqtts://broker.example.com\"\nca_file = \"certs/ca.pem\"\nclient_cert = \"certs/cam.pem\"\nclient_key = \"certs/cam.key\"",
            "",
        )
        .unwrap();
        assert_eq!(
            (c.mqtt.host.as_str(), c.mqtt.port),
            ("broker.example.com", DEFAULT_MQTTS_PORT)
        );
        assert_eq!(
            c.mqtt.tls,
            Some(crate::transport::TlsSettings {
                ca_file: Some(d.join("certs/ca.pem")),
                client_cert: Some(d.join("certs/cam.pem")),
                client_key: Some(d.join("certs/cam.key")),
            })
        );
        // ssl:// and tls:// are mqtts:// too; without ca_file the system's CAs are trusted.
        for url in [
            "ssl://10.1.2.3:9883",
            "tls://10.1.2.3:9883",
            "mqtts://10.1.2.3:9883",
        ] {
            let c = parse_in(d, &format!("url = \"{url}\""), "").unwrap();
            assert_eq!(
                c.mqtt.tls,
                Some(crate::transport::TlsSettings::default()),
                "{url}"
            );
            assert_eq!(c.mqtt.port, 9883);
        }
    }

    #[test]
    fn tls_files_must_exist_and_hold_what_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        pki(d);
        let msg = fails_in(
            d,
            "url = \"mqtts://broker\"\nca_file = \"nope.pem\"",
            "ca_file",
            &[
                "`mqtt.ca_file`",
                "nope.pem",
                "cannot open it",
                "relative to the config file's directory",
            ],
        );
        assert!(msg.contains(&d.display().to_string()), "{msg}");
        fails_in(
            d,
            "url = \"mqtts://broker\"\nca_file = \"cam.key\"",
            "ca_file",
            &[
                "`mqtt.ca_file`",
                "cam.key",
                "no PEM certificate found in it",
            ],
        );
        fails_in(
            d,
            "url = \"mqtts://broker\"\nca_file = \"\"",
            "ca_file",
            &["`mqtt.ca_file`", "is empty"],
        );
        fails_in(
            d,
            "url = \"mqtts://broker\"\nclient_cert = \"cam.pem\"",
            "client_cert",
            &[
                "`mqtt.client_key`",
                "is missing but `mqtt.client_cert` is set",
            ],
        );
        fails_in(
            d,
            "url = \"mqtts://broker\"\nclient_key = \"cam.key\"",
            "client_key",
            &[
                "`mqtt.client_cert`",
                "is missing but `mqtt.client_key` is set",
            ],
        );
        fails_in(
            d,
            "url = \"mqtts://broker\"\nclient_cert = \"missing.pem\"\nclient_key = \"cam.key\"",
            "client_cert",
            &["`mqtt.client_cert`", "missing.pem", "cannot open it"],
        );
        fails_in(
            d,
            "url = \"mqtts://broker\"\nclient_cert = \"cam.pem\"\nclient_key = \"cam.pem\"",
            "client_key",
            &[
                "`mqtt.client_key`",
                "cam.pem",
                "holds a certificate but no private key",
            ],
        );
        fails_in(
            d,
            "url = \"mqtts://broker\"\nclient_cert = \"cam.pem\"\nclient_key = \"other.key\"",
            "client_key",
            &[
                "`mqtt.client_key`",
                "other.key",
                "the key does not match the certificate",
                "cam.pem",
            ],
        );
    }

    #[test]
    fn tls_keys_need_mqtts() {
        let dir = tempfile::tempdir().unwrap();
        for key in ["ca_file", "client_cert", "client_key"] {
            fails_in(
                dir.path(),
                &format!("url = \"mqtt://127.0.0.1\"\n{key} = \"x.pem\""),
                key,
                &[
                    &format!("`mqtt.{key}`"),
                    "only applies to TLS",
                    "use mqtts://127.0.0.1",
                ],
            );
        }
    }

    #[test]
    fn plaintext_beyond_loopback_needs_allow_insecure() {
        for url in [
            "mqtt://10.1.2.3",
            "mqtt://broker.local:1883",
            "tcp://[fd00::5]:1883",
            "mqtt://127.example.com",
        ] {
            let text = edit("mqtt://127.0.0.1:1883", url);
            assert_fails(
                &text,
                "url = ",
                &[
                    "`mqtt.url`",
                    "unencrypted",
                    "use mqtts://",
                    "`mqtt.allow_insecure = true`",
                ],
            );
        }
        let msg = assert_fails(
            &edit("mqtt://127.0.0.1:1883", "mqtt://[fd00::5]:1883"),
            "url = ",
            &[],
        );
        assert!(msg.contains("mqtts://[fd00::5]"), "{msg}");
        for url in [
            "mqtt://127.0.0.1",
            "mqtt://127.3.2.1:1999",
            "mqtt://localhost",
            "mqtt://LOCALHOST:1883",
            "mqtt://[::1]",
            "mqtt://[::ffff:127.0.0.1]",
        ] {
            let c = Config::parse(&edit("mqtt://127.0.0.1:1883", url), &site()).unwrap();
            assert!(!c.mqtt.allow_insecure, "{url}");
            assert_eq!(c.mqtt.tls, None);
        }
        let c = Config::parse(
            &with_mqtt("url = \"mqtt://10.1.2.3\"\nallow_insecure = true"),
            &site(),
        )
        .unwrap();
        assert!(c.mqtt.allow_insecure);
        assert_eq!(c.mqtt.port, DEFAULT_MQTT_PORT);
        // allow_insecure never weakens TLS.
        assert_fails(
            &with_mqtt("url = \"mqtts://10.1.2.3\"\nallow_insecure = true"),
            "allow_insecure",
            &[
                "`mqtt.allow_insecure`",
                "only applies to plaintext mqtt://",
                "always checked",
            ],
        );
        let c = Config::parse(
            &with_mqtt("url = \"mqtts://10.1.2.3\"\nallow_insecure = false"),
            &site(),
        )
        .unwrap();
        assert!(c.mqtt.tls.is_some());
        assert_fails(
            &with_mqtt("url = \"mqtt://10.1.2.3\"\nallow_insecure = \"yes\""),
            "allow_insecure",
            &["`mqtt.allow_insecure`", "expected true or false"],
        );
    }

    #[test]
    fn broker_urls_parse_with_their_scheme() {
        assert_eq!(
            parse_broker_url("mqtts://[fd00::5]").unwrap(),
            BrokerUrl {
                host: "fd00::5".into(),
                port: 8883,
                tls: true
            }
        );
        assert_eq!(
            parse_broker_url("MQTT://h:2").unwrap(),
            BrokerUrl {
                host: "h".into(),
                port: 2,
                tls: false
            }
        );
        assert_eq!(parse_mqtt_url("mqtt://h").unwrap(), ("h".to_owned(), 1883));
        let e = parse_mqtt_url("mqtts://h").unwrap_err();
        assert!(e.contains("mqtt:// URL"), "{e}");
        assert!(
            is_loopback_host("127.0.0.1")
                && is_loopback_host("::1")
                && is_loopback_host("localhost")
        );
        assert!(
            !is_loopback_host("128.0.0.1")
                && !is_loopback_host("localhost.example.com")
                && !is_loopback_host("::2")
        );
    }

    #[test]
    fn credentials_come_from_a_file_the_environment_or_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("pw"), "hunter2\r\nsecond line\n").unwrap();
        let c = parse_in(
            d,
            "url = \"mqtt://localhost\"\nusername = \"cam\"\npassword_file = \"pw\"",
            "",
        )
        .unwrap();
        assert_eq!(
            c.mqtt.credentials,
            Some(Credentials {
                username: "cam".into(),
                password: Some(Secret::new("hunter2"))
            })
        );
        assert!(!format!("{:?}", c.mqtt).contains("hunter2"));
        // An environment variable that is surely set (set_var would need unsafe).
        let path = std::env::var("PATH").unwrap();
        let c = parse_in(
            d,
            "url = \"mqtt://localhost\"\nusername = \"cam\"\npassword_env = \"PATH\"",
            "",
        )
        .unwrap();
        assert_eq!(c.mqtt.credentials.unwrap().password.unwrap().expose(), path);
        let c = parse_in(
            d,
            "url = \"mqtt://localhost\"\nusername = \"cam\"\npassword = \"inline pw\"",
            "",
        )
        .unwrap();
        assert_eq!(
            c.mqtt.credentials.unwrap().password.unwrap().expose(),
            "inline pw"
        );
        let c = parse_in(d, "url = \"mqtt://localhost\"\nusername = \"cam\"", "").unwrap();
        assert_eq!(
            c.mqtt.credentials,
            Some(Credentials {
                username: "cam".into(),
                password: None
            })
        );
    }

    #[test]
    fn credential_mistakes_name_the_key_but_never_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("pw"), "hunter2\n").unwrap();
        std::fs::write(d.join("empty"), "\nhunter2\n").unwrap();
        std::fs::write(d.join("binary"), [0xffu8, 0xfe, b'h', b'u', b'n']).unwrap();
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "url = \"mqtt://localhost\"\npassword = \"hunter2\"",
                "password",
                &["`mqtt.password`", "needs `mqtt.username`"],
            ),
            (
                "url = \"mqtt://localhost\"\npassword_file = \"pw\"",
                "password_file",
                &["`mqtt.password_file`", "needs `mqtt.username`"],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"u\"\npassword_file = \"pw\"\npassword = \"hunter2\"",
                "password =",
                &[
                    "`mqtt.password`",
                    "`mqtt.password_file` is set too",
                    "one way only",
                ],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"u\"\npassword_env = \"PATH\"\npassword_file = \"pw\"",
                "password_file",
                &["`mqtt.password_file`", "`mqtt.password_env` is set too"],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"u\"\npassword_file = \"nope\"",
                "password_file",
                &[
                    "`mqtt.password_file`",
                    "nope",
                    "cannot open it",
                    "relative to the config file's directory",
                ],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"u\"\npassword_file = \"empty\"",
                "password_file",
                &["`mqtt.password_file`", "first line of the file is empty"],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"u\"\npassword_file = \"binary\"",
                "password_file",
                &["`mqtt.password_file`", "binary", "not UTF-8"],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"u\"\npassword_file = \".\"",
                "password_file",
                &["`mqtt.password_file`", "is a directory"],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"u\"\npassword_env = \"OCELLUS_TEST_SURELY_UNSET_7F3A\"",
                "password_env",
                &[
                    "`mqtt.password_env`",
                    "OCELLUS_TEST_SURELY_UNSET_7F3A is not set",
                ],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"u\"\npassword_env = \"A=B\"",
                "password_env",
                &["`mqtt.password_env`", "not an environment variable name"],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"u\"\npassword = \"\"",
                "password",
                &["`mqtt.password`", "is empty"],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"\"",
                "username",
                &["`mqtt.username`", "is empty"],
            ),
            (
                "url = \"mqtt://localhost\"\nusername = \"a\\u0007b\"",
                "username",
                &["`mqtt.username`", "control characters"],
            ),
        ];
        for (body, marker, parts) in cases {
            let msg = fails_in(d, body, marker, parts);
            assert!(!msg.contains("hunter2"), "the password is in: {msg}");
        }
    }

    #[test]
    fn queue_and_health_sections_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let c = parse_in(
            d,
            "url = \"mqtt://localhost\"",
            "[queue]\ndir = \"/var/lib/ocellus/q\"\nwhen_full = \"drop_oldest\"\n",
        )
        .unwrap();
        assert_eq!(c.queue.dir, PathBuf::from("/var/lib/ocellus/q"));
        assert_eq!(c.queue.when_full, WhenFull::DropOldest);
        assert_eq!(c.queue.max_bytes, crate::spool::DEFAULT_MAX_BYTES);
        let c = parse_in(
            d,
            "url = \"mqtt://localhost\"",
            "[queue]\nmax_mb = 1048576\n[health]\ninterval_s = 86400\n",
        )
        .unwrap();
        assert_eq!(c.queue.max_bytes, 1 << 40);
        assert_eq!(c.health.interval, Duration::from_secs(86_400));
        for (section, bad, parts) in [
            (
                "[queue]\nmax_mb = 0",
                "max_mb",
                &["`queue.max_mb`", "0 is outside 1..=1048576"][..],
            ),
            (
                "[queue]\nmax_mb = 1048577",
                "max_mb",
                &["`queue.max_mb`", "1..=1048576"],
            ),
            (
                "[queue]\nmax_age_s = 59",
                "max_age_s",
                &["`queue.max_age_s`", "59 is outside 60..=31536000"],
            ),
            (
                "[queue]\nmax_age_s = 31536001",
                "max_age_s",
                &["`queue.max_age_s`", "60..=31536000"],
            ),
            (
                "[queue]\nfsync_ms = -1",
                "fsync_ms",
                &["`queue.fsync_ms`", "-1 is outside 0..=10000"],
            ),
            (
                "[queue]\nfsync_ms = 10001",
                "fsync_ms",
                &["`queue.fsync_ms`", "0..=10000"],
            ),
            (
                "[queue]\nwhen_full = \"block\"",
                "when_full",
                &[
                    "`queue.when_full`",
                    "\"block\"",
                    "\"drop_oldest\"",
                    "\"refuse_new\"",
                ],
            ),
            ("[queue]\ndir = \"\"", "dir", &["`queue.dir`", "is empty"]),
            (
                "[queue]\nmax_events = 5",
                "max_events",
                &["`queue.max_events`", "unknown key", "max_mb"],
            ),
            (
                "[health]\ninterval_s = 0",
                "interval_s",
                &["`health.interval_s`", "0 is outside 1..=86400"],
            ),
            (
                "[health]\ninterval_s = 86401",
                "interval_s",
                &["`health.interval_s`", "1..=86400"],
            ),
        ] {
            let text = format!("{BASE}\n{section}\n");
            assert_fails(&text, bad, parts);
        }
    }

    // ---- [cloud] --------------------------------------------------------------------------

    /// A config whose connection section is `section` (a `[cloud]` or `[mqtt]` table), in `dir`.
    fn cloud_in(dir: &Path, section: &str) -> Result<Config> {
        let card = repo().join("models/ssd-mobilenet-v2-coco.toml");
        let text = format!(
            "[device]\nid = \"cam\"\n[source]\nkind = \"synthetic\"\n[model]\ncard = \"{}\"\n{section}\n",
            card.display()
        );
        Config::parse(&text, &dir.join("site.toml"))
    }

    fn cloud_fails(dir: &Path, section: &str, marker: &str, parts: &[&str]) -> String {
        let line = 7 + section
            .lines()
            .position(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("`{marker}` not in the section"));
        match cloud_in(dir, section) {
            Ok(_) => panic!("parsed, but should have failed:\n{section}"),
            Err(Error::Config {
                line: l, message, ..
            }) => {
                assert_eq!(l, Some(line), "{message}");
                for p in parts {
                    assert!(message.contains(p), "`{p}` not in: {message}");
                }
                message
            }
            Err(other) => panic!("not a config error: {other}"),
        }
    }

    const KEY: &str = "c2VjcmV0LWtleS1mb3Itb2NlbGx1cy10ZXN0cy0zMmI=";

    #[test]
    fn an_azure_connection_string_sets_up_the_hub_connection() {
        let dir = tempfile::tempdir().unwrap();
        let c = cloud_in(
            dir.path(),
            &format!(
                "[cloud]\nkind = \"azure-iot-hub\"\nconnection_string = \"HostName=shop.azure-devices.net;DeviceId=cam;SharedAccessKey={KEY}\"\nsnapshots = true\nsas_ttl_s = 600"
            ),
        )
        .unwrap();
        assert_eq!(
            (c.mqtt.host.as_str(), c.mqtt.port, c.mqtt.client_id.as_str()),
            ("shop.azure-devices.net", 8883, "cam")
        );
        assert!(c.mqtt.tls.is_some(), "IoT Hub is TLS only");
        let creds = c.mqtt.credentials.clone().unwrap();
        assert_eq!(
            creds.username,
            "shop.azure-devices.net/cam/?api-version=2021-04-12"
        );
        assert!(
            creds.password.is_none(),
            "the SAS token is made at connect time"
        );
        let cloud = c.cloud.as_ref().unwrap();
        assert!(cloud.snapshots);
        match &cloud.profile {
            crate::cloud::Profile::Azure(a) => {
                assert_eq!(a.sas_ttl, Duration::from_secs(600));
                assert_eq!(a.connection.host_name, "shop.azure-devices.net");
            }
            other => panic!("{other:?}"),
        }
        // a stand-in or gateway endpoint replaces the host, not the identity
        let c = cloud_in(
            dir.path(),
            &format!(
                "[cloud]\nkind = \"azure-iot-hub\"\nconnection_string = \"HostName=shop.azure-devices.net;DeviceId=cam;SharedAccessKey={KEY}\"\nendpoint = \"mqtts://127.0.0.1:18883\""
            ),
        )
        .unwrap();
        assert_eq!((c.mqtt.host.as_str(), c.mqtt.port), ("127.0.0.1", 18883));
        assert!(!c.cloud.unwrap().snapshots, "snapshots are off by default");
    }

    #[test]
    fn the_connection_string_can_come_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let cs = format!("HostName=shop.azure-devices.net;DeviceId=cam;SharedAccessKey={KEY}");
        std::fs::write(dir.path().join("azure.conn"), format!("{cs}\n")).unwrap();
        let c = cloud_in(
            dir.path(),
            "[cloud]\nkind = \"azure-iot-hub\"\nconnection_string_file = \"azure.conn\"",
        )
        .unwrap();
        assert_eq!(c.mqtt.client_id, "cam");
        // the environment route is exercised end to end (tests/cloud.rs); here: unset is an error
        cloud_fails(
            dir.path(),
            "[cloud]\nkind = \"azure-iot-hub\"\nconnection_string_env = \"OCELLUS_TEST_SURELY_UNSET_AZ9\"",
            "connection_string_env",
            &["`cloud.connection_string_env`", "is not set"],
        );
        cloud_fails(
            dir.path(),
            "[cloud]\nkind = \"azure-iot-hub\"\nconnection_string_file = \"azure.conn\"\nconnection_string = \"x\"",
            "connection_string =",
            &["`cloud.connection_string`", "one way only"],
        );
    }

    #[test]
    fn cloud_mistakes_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let azure = |rest: &str| {
            format!(
                "[cloud]\nkind = \"azure-iot-hub\"\nconnection_string = \"HostName=shop.azure-devices.net;DeviceId=cam;SharedAccessKey={KEY}\"\n{rest}"
            )
        };
        cloud_fails(
            d,
            "[cloud]\nkind = \"gcp\"",
            "kind",
            &["`cloud.kind`", "azure-iot-hub", "aws-iot-core"],
        );
        let msg = cloud_fails(
            d,
            &format!(
                "[cloud]\nkind = \"azure-iot-hub\"\nconnection_string = \"HostName=shop.azure-devices.net;DeviceId=other;SharedAccessKey={KEY}\""
            ),
            "connection_string",
            &[
                "`cloud.connection_string`",
                "DeviceId \"other\"",
                "`device.id` is \"cam\"",
            ],
        );
        assert!(!msg.contains(KEY), "the key leaked: {msg}");
        let msg = cloud_fails(
            d,
            "[cloud]\nkind = \"azure-iot-hub\"\nconnection_string = \"HostName=shop.azure-devices.net;DeviceId=cam;SharedAccessKey=%%%notbase64\"",
            "connection_string",
            &["`cloud.connection_string`"],
        );
        assert!(!msg.contains("notbase64"), "the key leaked: {msg}");
        cloud_fails(
            d,
            "[cloud]\nkind = \"azure-iot-hub\"",
            "kind",
            &["`cloud.connection_string_file`", "HostName="],
        );
        cloud_fails(
            d,
            &azure("thing_name = \"x\""),
            "thing_name",
            &["`cloud.thing_name`", "aws-iot-core"],
        );
        cloud_fails(
            d,
            &azure("endpoint = \"mqtt://127.0.0.1:1883\""),
            "endpoint",
            &["`cloud.endpoint`", "mqtts://"],
        );
        cloud_fails(
            d,
            &azure("sas_ttl_s = 1"),
            "sas_ttl_s",
            &["`cloud.sas_ttl_s`"],
        );
        cloud_fails(
            d,
            "[cloud]\nkind = \"azure-iot-hub\"\nconnection_string = \"HostName=shop.azure-devices.net;DeviceId=cam;x509=true\"",
            "connection_string",
            &["x509=true", "`cloud.client_cert`"],
        );
        // [mqtt] and [cloud] together, and neither
        cloud_fails(
            d,
            &format!("[mqtt]\nurl = \"mqtt://127.0.0.1\"\n{}", azure("")),
            "[mqtt]",
            &["[cloud] are both set"],
        );
        match cloud_in(d, "") {
            Err(Error::Config { message, .. }) => {
                assert!(
                    message.contains("[mqtt]") && message.contains("[cloud]"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        // AWS
        cloud_fails(
            d,
            "[cloud]\nkind = \"aws-iot-core\"",
            "kind",
            &["`cloud.endpoint`", "describe-endpoint"],
        );
        cloud_fails(
            d,
            "[cloud]\nkind = \"aws-iot-core\"\nendpoint = \"mqtts://abc-ats.iot.eu-west-1.amazonaws.com\"",
            "kind",
            &["`cloud.client_cert`"],
        );
        cloud_fails(
            d,
            &format!(
                "[cloud]\nkind = \"aws-iot-core\"\nendpoint = \"mqtts://a.example\"\nconnection_string = \"HostName=h;DeviceId=cam;SharedAccessKey={KEY}\""
            ),
            "connection_string",
            &["azure-iot-hub"],
        );
    }

    #[test]
    fn aws_takes_the_thing_certificates_and_a_topic_template() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        pki(d);
        let base = "[cloud]\nkind = \"aws-iot-core\"\nendpoint = \"mqtts://abc-ats.iot.eu-west-1.amazonaws.com\"\nca_file = \"ca.pem\"\nclient_cert = \"cam.pem\"\nclient_key = \"cam.key\"";
        let c = cloud_in(d, base).unwrap();
        assert_eq!(
            (c.mqtt.host.as_str(), c.mqtt.port, c.mqtt.client_id.as_str()),
            ("abc-ats.iot.eu-west-1.amazonaws.com", 8883, "cam")
        );
        match c.cloud_profile() {
            crate::cloud::Profile::Aws(a) => {
                assert_eq!(a.thing, "cam");
                assert_eq!(a.shadow, "ocellus");
                assert_eq!(a.telemetry_topic, crate::cloud::DEFAULT_AWS_TELEMETRY_TOPIC);
            }
            other => panic!("{other:?}"),
        }
        let c = cloud_in(
            d,
            &format!("{base}\nthing_name = \"shop-7-door\"\ntelemetry_topic = \"dt/shop/{{thing}}/{{type}}\"\nshadow = \"counting\""),
        )
        .unwrap();
        assert_eq!(c.mqtt.client_id, "shop-7-door", "client id = thing name");
        for (bad, part) in [
            ("telemetry_topic = \"dt/+/{type}\"", "`+`"),
            ("telemetry_topic = \"dt//{type}\"", "empty level"),
            ("telemetry_topic = \"dt/{colour}\"", "placeholder"),
            ("telemetry_topic = \"$aws/x\"", "`$`"),
            ("shadow = \"a/b\"", "`cloud.shadow`"),
            ("thing_name = \"shop.7\"", "`cloud.thing_name`"),
            ("telemetry_topic = \"a/b/c/d/e/f/g/h/{type}\"", "at most 7"),
            ("snapshots = true", "direct methods"),
        ] {
            cloud_fails(d, &format!("{base}\n{bad}"), bad, &[part]);
        }
    }

    // ---- rules as JSON ----------------------------------------------------------------------

    fn model() -> ModelConfig {
        let card_path = repo().join("models/ssd-mobilenet-v2-coco.toml");
        ModelConfig {
            card: ModelCard::load(&card_path).unwrap(),
            card_path,
            threshold: None,
            labels: Some(vec!["person".into()]),
        }
    }

    #[test]
    fn json_rules_are_checked_like_the_config_file() {
        let m = model();
        let ok = serde_json::json!({
            "line_hysteresis": 0.02,
            "line": [{"name": "door", "a": [0.1, 0.5], "b": [0.9, 0.5], "labels": ["person"]}],
            "zone": [{"name": "till", "polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]], "dwell_s": 5}],
        });
        let r = rules_from_json(&ok, &m).unwrap();
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.zones[0].dwell, Some(Duration::from_secs(5)));
        assert!((r.config.line_hysteresis - 0.02).abs() < 1e-6);
        // back to JSON and in again: the same rules
        let again = rules_from_json(&rules_to_json(&r), &m).unwrap();
        assert_eq!(again, r);
        for (bad, part) in [
            (serde_json::json!([1]), "must be an object"),
            (
                serde_json::json!({"line": [{"name": "d", "a": [0.1, 0.5], "b": [1.5, 0.5]}]}),
                "`rules.line[0].b`",
            ),
            (
                serde_json::json!({"line": [{"name": "d", "a": [0.1, 0.5, 0.2], "b": [0.5, 0.5]}]}),
                "two numbers",
            ),
            (
                serde_json::json!({"zone": [{"name": "z", "polygon": [[0.1, 0.1], [0.2, 0.2]]}]}),
                "3 to",
            ),
            (
                serde_json::json!({"line": [{"name": "d", "a": [0.1, 0.5], "b": [0.9, 0.5], "labels": ["car"]}]}),
                "car",
            ),
            (
                serde_json::json!({"line": [{"name": "a/b", "a": [0.1, 0.5], "b": [0.9, 0.5]}]}),
                "`rules.line[0].name`",
            ),
            (serde_json::json!({"lines": []}), "unknown key"),
            (
                serde_json::json!({"line": [{"name": "d", "a": null, "b": [0.9, 0.5]}]}),
                "`rules.line[0].a`: is null",
            ),
        ] {
            let e = rules_from_json(&bad, &m).unwrap_err();
            assert!(e.contains(part), "`{part}` not in: {e}");
        }
    }
}
