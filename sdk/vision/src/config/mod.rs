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
//! This module only parses: each section has its own file here, and what a section is parsed into
//! lives with the component it configures where that component has a type for it (the source's
//! [`SourceConfig`], the queue's [`SpoolConfig`], the tracker's and the rules' settings).
//!
//! ```no_run
//! # fn main() -> Result<(), ocellus::Error> {
//! use ocellus::source::SourceConfig;
//! let cfg = ocellus::config::Config::load(std::path::Path::new("site.toml"))?;
//! match &cfg.source {
//!     SourceConfig::Video { input, .. } => println!("video {input:?}"),
//!     SourceConfig::Images { pattern, .. } => println!("images {}", pattern.display()),
//!     SourceConfig::Synthetic { frames, .. } => println!("{frames} synthetic frames"),
//!     SourceConfig::Sensor { mode, fps, .. } => println!("sensor {mode:?} at {fps} fps"),
//!     other => println!("{}", other.kind()), // new kinds are added without a major version
//! }
//! # Ok(())
//! # }
//! ```

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};
use crate::spool::SpoolConfig;
use crate::track::TrackerConfig;

mod check;
mod cloud;
mod health;
mod model;
mod mqtt;
mod queue;
mod rules;
mod source;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

// The `[source]` types live with the sources ([`crate::source`]).
use crate::source::SourceConfig;
pub use cloud::CloudConfig;
pub use health::HealthConfig;
pub use model::ModelConfig;
pub use mqtt::{
    BrokerUrl, DEFAULT_KEEP_ALIVE, DEFAULT_MQTT_PORT, DEFAULT_MQTTS_PORT, DEFAULT_TOPIC_PREFIX,
    MqttConfig, is_loopback_host, parse_broker_url, parse_mqtt_url,
};
pub use rules::{RulesSection, rules_from_json, rules_to_json};

/// Largest config file accepted.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

const MAX_DEVICE_ID: usize = 128;
/// Where messages send the reader.
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
    /// `[queue]`: the on-disk event queue (defaults when the section is absent). Events wait here
    /// until the broker has acknowledged them, across broker outages and restarts.
    pub queue: SpoolConfig,
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

// ---------------------------------------------------------------------------------------------
// The file as written: every value whose range is checked keeps its span, for the line number.
// Each section's raw table is declared next to its parser.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    device: RawDevice,
    #[serde(default)]
    runtime: RawRuntime,
    source: Spanned<source::RawSource>,
    model: model::RawModel,
    #[serde(default)]
    tracker: Option<Spanned<TrackerConfig>>,
    #[serde(default)]
    rules: Option<Spanned<rules::RawRules>>,
    #[serde(default)]
    mqtt: Option<Spanned<mqtt::RawMqtt>>,
    #[serde(default)]
    cloud: Option<Spanned<cloud::RawCloud>>,
    #[serde(default)]
    queue: Option<queue::RawQueue>,
    #[serde(default)]
    health: Option<health::RawHealth>,
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
card = "models/ssd-mobilenet-v2-coco-person-int8.toml"   # people only, INT8 (omit: the fp32 cut SSD, 90 classes)
threshold = 0.5                 # 0..=1; omit to use the card's
labels = ["person"]             # keep only these labels of the card

[tracker]
confirm_hits = 2                # frames a track must be seen before it is reported
max_lost_frames = 30            # frames a track survives without being seen
appearance_gate = 0.4           # people whose colours differ this much never swap ids (1: off)

[rules]
line_hysteresis = 0.01          # dead band around lines (normalised distance)
zone_debounce_frames = 2        # frames inside (outside) before entering (leaving) counts
line_debounce_frames = 2        # frames past a line before the crossing counts

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
            id: check::check_name(&cx, &raw.device.id, "device.id", MAX_DEVICE_ID, "device id")?,
        };
        let runtime = runtime(&cx, &raw.runtime, &dir)?;
        let source = source::parse(&cx, &raw.source, &dir)?;
        let model = model::parse(&cx, &raw.model, &dir)?;
        let tracker = match &raw.tracker {
            Some(t) => tracker(&cx, t, doc.get_ref())?,
            None => TrackerConfig::default(),
        };
        let rules = match &raw.rules {
            Some(r) => rules::parse(&cx, r, &model, doc.get_ref())?,
            None => RulesSection::default(),
        };
        let (mqtt, cloud) = connection(&cx, &raw, &device.id, &dir)?;
        let queue = queue::parse(&cx, raw.queue.as_ref(), &device.id, &dir)?;
        let health = health::parse(&cx, raw.health.as_ref())?;
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

    /// What the publisher is given: the connection of `[mqtt]` (or the one `[cloud]` makes), the
    /// device id as the topic level, `[queue]` and the cloud profile. [`MqttConfig`] is kept
    /// apart from [`MqttSettings`](crate::publish::MqttSettings) because it also records
    /// `mqtt.allow_insecure`, which the publisher has no use for.
    pub fn mqtt_settings(&self) -> crate::publish::MqttSettings {
        let m = &self.mqtt;
        crate::publish::MqttSettings {
            host: m.host.clone(),
            port: m.port,
            client_id: m.client_id.clone(),
            topic_prefix: m.topic_prefix.clone(),
            device: std::sync::Arc::from(self.device.id.as_str()),
            keep_alive: m.keep_alive,
            tls: m.tls.clone(),
            credentials: m.credentials.clone(),
            queue: self.queue.clone(),
            profile: self.cloud_profile(),
        }
    }

    /// A complete, commented example config, the same as in `docs/config.md`. Its model card
    /// path, `models/ssd-mobilenet-v2-coco-person-int8.toml`, resolves when the config sits at the root of the
    /// ocellus repository.
    pub fn example() -> &'static str {
        EXAMPLE
    }
}

// ---------------------------------------------------------------------------------------------
// The small sections, and the choice between `[mqtt]` and `[cloud]`.

fn runtime(cx: &Cx<'_>, raw: &RawRuntime, dir: &Path) -> Result<RuntimeConfig> {
    let onnxruntime = match &raw.onnxruntime {
        Some(p) => Some(check::resolve_path(cx, p, "runtime.onnxruntime", dir)?),
        None => None,
    };
    let threads = match &raw.threads {
        Some(t) => Some(check::int_in(cx, t, "runtime.threads", 1, 64)? as usize),
        None => None,
    };
    Ok(RuntimeConfig {
        onnxruntime,
        threads,
    })
}

/// `[tracker]`: the tracker's own settings, checked by the tracker itself (one set of bounds),
/// its complaint pointed at the key it names.
fn tracker(
    cx: &Cx<'_>,
    raw: &Spanned<TrackerConfig>,
    doc: &toml::de::DeTable<'_>,
) -> Result<TrackerConfig> {
    let span = raw.span();
    let cfg = raw.get_ref().clone();
    crate::track::Tracker::new(cfg.clone())
        .map_err(|e| cx.option_error(e.into(), doc, span, "tracker"))?;
    Ok(cfg)
}

/// Exactly one of `[mqtt]` (a plain broker) and `[cloud]` (a hub profile, which makes its own
/// MQTT connection).
fn connection(
    cx: &Cx<'_>,
    raw: &RawConfig,
    device_id: &str,
    dir: &Path,
) -> Result<(MqttConfig, Option<CloudConfig>)> {
    match (&raw.mqtt, &raw.cloud) {
        (Some(m), None) => Ok((mqtt::parse(cx, m.get_ref(), device_id, dir)?, None)),
        (None, Some(c)) => {
            let (m, c) = cloud::parse(cx, c, device_id, dir)?;
            Ok((m, Some(c)))
        }
        (Some(m), Some(_)) => Err(cx.err(
            Some(m.span()),
            "mqtt",
            "and [cloud] are both set: a cloud profile says where and how to connect; remove [mqtt] (its keep_alive_s is `cloud.keep_alive_s`), or remove [cloud] for a plain MQTT broker",
        )),
        (None, None) => Err(Error::Config {
            path: cx.path.to_path_buf(),
            line: None,
            message: format!(
                "`mqtt`: is required but missing: add [mqtt] with `url = \"mqtt://HOST:PORT\"` for an MQTT broker, or [cloud] for Azure IoT Hub or AWS IoT Core (see {DOCS} and docs/cloud.md)"
            ),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Diagnostics: from a span in the text to the file, the line and the dotted key.

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

    /// The error for `key`, on the line where `span` starts (no line: `None`).
    fn err(&self, span: Option<Range<usize>>, key: &str, message: impl std::fmt::Display) -> Error {
        Error::Config {
            path: self.path.to_path_buf(),
            line: span.map(|s| self.line_of(s.start)),
            message: format!("`{key}`: {message}"),
        }
    }

    /// The error for `key`, on the line of `value`.
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

/// A key or array item of the parsed document, with its dotted path and spans.
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
