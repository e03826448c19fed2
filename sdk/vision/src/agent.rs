//! The device's side of cloud management: the Azure device twin and direct methods, the AWS named
//! shadow. It runs on its own thread next to the pipeline, reads what the hub sends from the
//! publisher's inbox and answers through [`Publisher::send`].
//!
//! Managed settings (the same JSON for an Azure twin's desired properties, an AWS shadow's
//! desired state and, for `rules`, the `set_rules` method):
//!
//! ```json
//! {
//!   "rules":   { "line_hysteresis": 0.01, "zone_debounce_frames": 2,
//!                "line": [{ "name": "door", "a": [0.1, 0.5], "b": [0.9, 0.5], "labels": ["person"] }],
//!                "zone": [{ "name": "queue", "polygon": [[0.1,0.1],[0.5,0.1],[0.5,0.5]], "dwell_s": 10 }] },
//!   "publish": { "health_interval_s": 30, "event_types": ["line_crossed", "dwell"] }
//! }
//! ```
//!
//! A change is checked exactly as the config file is. Valid: it takes effect from the next frame,
//! without a restart. Invalid: nothing changes, and the refusal is reported next to the value
//! (`rules_status` / `publish_status`: `{"code": 400, "version": …, "message": …}`). Removing a
//! desired `rules` (null) goes back to the config file's rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cloud::{Profile, aws, azure};
use crate::config::{ModelConfig, RulesSection};
use crate::event::EventType;
use crate::pipeline::{LiveControl, SnapshotRequest};
use crate::publish::{Inbound, Publisher};
use crate::rules::Rules;
use crate::spool::SpoolConfig;

/// Direct methods the device answers (Azure IoT Hub).
pub const METHODS: [&str; 4] = ["ping", "get_config", "set_rules", "snapshot"];
/// How long the `snapshot` method waits for a frame.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// The JPEG bound for a snapshot: base64 of it plus the JSON around it stays under IoT Hub's
/// 128 KB method-response limit.
pub const SNAPSHOT_MAX_BYTES: usize = (azure::MAX_METHOD_RESPONSE_BYTES - 2048) / 4 * 3;

/// Publish settings that can change while running (lock-free, read per event).
#[derive(Debug)]
pub struct LiveSettings {
    health_interval_ms: AtomicU64,
    event_mask: AtomicU8,
}

const ALL_TYPES: u8 = (1 << EventType::ALL.len()) - 1;

fn type_bit(t: EventType) -> u8 {
    let i = EventType::ALL.iter().position(|x| *x == t).unwrap_or(0);
    1 << i
}

impl LiveSettings {
    /// Every event type published, health every `health_interval`.
    pub fn new(health_interval: Duration) -> LiveSettings {
        LiveSettings {
            health_interval_ms: AtomicU64::new(health_interval.as_millis() as u64),
            event_mask: AtomicU8::new(ALL_TYPES),
        }
    }

    /// How often health is published now.
    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms.load(Ordering::Relaxed))
    }

    /// Whether events of this type are published now.
    pub fn allows(&self, t: EventType) -> bool {
        self.event_mask.load(Ordering::Relaxed) & type_bit(t) != 0
    }

    fn event_types(&self) -> Vec<&'static str> {
        EventType::ALL
            .iter()
            .filter(|t| self.allows(**t))
            .map(|t| t.as_str())
            .collect()
    }
}

/// What the agent needs to know about the deployment.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    /// Device id.
    pub device: Arc<str>,
    /// The hub.
    pub profile: Profile,
    /// `cloud.snapshots`.
    pub snapshots: bool,
    /// The model (rules are checked against its labels).
    pub model: ModelConfig,
    /// The config file's rules (what a removed desired `rules` goes back to).
    pub file_rules: RulesSection,
    /// The queue (for `get_config`).
    pub queue: SpoolConfig,
    /// Publish settings, shared with the deployment.
    pub live: Arc<LiveSettings>,
    /// The running pipeline.
    pub control: Arc<LiveControl>,
}

/// Where the rules in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Config,
    Desired,
    Method,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Desired => "desired",
            Origin::Method => "method",
        }
    }
}

/// The device-management agent. Create with [`Agent::new`], run with [`Agent::run`].
#[derive(Debug)]
pub struct Agent {
    setup: AgentSetup,
    started: Instant,
    /// The full desired document as last known (merged patches).
    desired: Value,
    /// The desired `rules` / `publish` values last acted on (applied or refused).
    seen_rules: Option<Value>,
    seen_publish: Option<Value>,
    rules: RulesSection,
    rules_value: Value,
    rules_origin: Origin,
    rules_status: Value,
    publish_value: Value,
    publish_status: Value,
    rid: u64,
    twin_get: Option<String>,
    c2d: u64,
    /// The config file's health interval (what a removed desired `publish` goes back to).
    file_health_interval: Duration,
}

impl Agent {
    /// An agent with the config file's rules in effect.
    pub fn new(setup: AgentSetup) -> Agent {
        let rules = setup.file_rules.clone();
        let file_health_interval = setup.live.health_interval();
        let rules_value = crate::config::rules_to_json(&rules);
        let publish_value = json!({
            "health_interval_s": setup.live.health_interval().as_secs(),
            "event_types": setup.live.event_types(),
        });
        Agent {
            setup,
            started: Instant::now(),
            desired: json!({}),
            seen_rules: None,
            seen_publish: None,
            rules,
            rules_value,
            rules_origin: Origin::Config,
            rules_status: json!({"code": 200, "source": "config", "message": "the config file's rules"}),
            publish_value,
            publish_status: json!({"code": 200, "source": "config"}),
            rid: 0,
            twin_get: None,
            c2d: 0,
            file_health_interval,
        }
    }

    /// Handle what arrives until `done` is set.
    pub fn run(&mut self, publisher: &Publisher, inbox: &Receiver<Inbound>, done: &AtomicBool) {
        while !done.load(Ordering::Relaxed) {
            match inbox.recv_timeout(Duration::from_millis(50)) {
                Ok(msg) => self.handle(publisher, msg),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// Handle one message from the hub.
    pub fn handle(&mut self, publisher: &Publisher, msg: Inbound) {
        match (&self.setup.profile, msg) {
            (Profile::Generic, _) => {}
            (Profile::Azure(_), Inbound::Connected) => {
                let rid = self.next_rid("get");
                publisher.send(&azure::twin_get_topic(&rid), Vec::new());
                self.twin_get = Some(rid);
                self.report(publisher);
            }
            (Profile::Aws(a), Inbound::Connected) => {
                publisher.send(
                    &aws::shadow_topic(&a.thing, &a.shadow, "get"),
                    b"{}".to_vec(),
                );
                self.report(publisher);
            }
            (Profile::Azure(_), Inbound::Message { topic, payload }) => {
                self.azure_message(publisher, &topic, &payload)
            }
            (Profile::Aws(a), Inbound::Message { topic, payload }) => {
                let prefix = aws::shadow_topic(&a.thing, &a.shadow, "");
                let op = topic.strip_prefix(&prefix).unwrap_or_default().to_owned();
                self.aws_message(publisher, &op, &payload)
            }
        }
    }

    fn next_rid(&mut self, what: &str) -> String {
        self.rid += 1;
        format!("{what}{}", self.rid)
    }

    fn azure_message(&mut self, publisher: &Publisher, topic: &str, payload: &[u8]) {
        match azure::parse_inbound(topic, &self.setup.device) {
            Some(azure::Inbound::TwinResponse { status, rid, .. }) => {
                if self.twin_get.as_deref() == Some(rid.as_str()) {
                    self.twin_get = None;
                    if status != 200 {
                        tracing::warn!("IoT Hub answered the twin GET with status {status}");
                        return;
                    }
                    let twin: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
                    let desired = twin.get("desired").cloned().unwrap_or_else(|| json!({}));
                    let version = desired.get("$version").and_then(Value::as_u64);
                    self.desired = desired;
                    self.apply_desired(publisher, version);
                } else if !(200..300).contains(&status) {
                    tracing::warn!(
                        "IoT Hub refused a reported-properties update (request {rid}): status {status}"
                    );
                }
            }
            Some(azure::Inbound::DesiredPatch { version }) => {
                match serde_json::from_slice::<Value>(payload) {
                    Ok(patch @ Value::Object(_)) => {
                        merge_patch(&mut self.desired, &patch);
                        self.apply_desired(publisher, version);
                    }
                    _ => tracing::warn!(
                        "IoT Hub sent a desired-properties patch that is not a JSON object; ignored"
                    ),
                }
            }
            Some(azure::Inbound::Method { name, rid }) => {
                let (status, body) = self.method(&name, payload);
                let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
                if bytes.len() > azure::MAX_METHOD_RESPONSE_BYTES {
                    bytes = serde_json::to_vec(&json!({"error": "the response is larger than IoT Hub's 128 KB method limit"})).unwrap_or_default();
                }
                tracing::info!("direct method {name}: status {status}");
                publisher.send(&azure::method_response_topic(status, &rid), bytes);
                if name == "set_rules" {
                    // what runs now, and how the change went, in the twin too
                    self.report(publisher);
                }
            }
            Some(azure::Inbound::CloudToDevice { properties }) => {
                self.c2d += 1;
                let text = std::str::from_utf8(payload)
                    .map(|t| t.chars().take(200).collect::<String>())
                    .unwrap_or_else(|_| "(binary)".into());
                tracing::info!(
                    "cloud-to-device message {}: {} bytes, properties {:?}: {}",
                    self.c2d,
                    payload.len(),
                    properties,
                    text.escape_debug()
                );
            }
            None => tracing::debug!("MQTT message on {topic} ignored"),
        }
    }

    fn aws_message(&mut self, publisher: &Publisher, op: &str, payload: &[u8]) {
        let body: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let version = body.get("version").and_then(Value::as_u64);
        match op {
            "get/accepted" => {
                self.desired = body
                    .pointer("/state/desired")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                self.apply_desired(publisher, version);
            }
            "get/rejected" => {
                // 404: no shadow yet; the reported update creates it
                tracing::debug!("shadow get rejected: {body}");
            }
            "update/delta" => {
                if let Some(state) = body.get("state").filter(|s| s.is_object()) {
                    merge_patch(&mut self.desired, state);
                    self.apply_desired(publisher, version);
                }
            }
            "update/rejected" => {
                tracing::warn!("AWS IoT refused a shadow update: {body}");
            }
            _ => {}
        }
    }

    /// Act on the desired document: apply what changed, refuse what is invalid, report.
    fn apply_desired(&mut self, publisher: &Publisher, version: Option<u64>) {
        let rules = self.desired.get("rules").filter(|v| !v.is_null()).cloned();
        if rules != self.seen_rules {
            self.seen_rules = rules.clone();
            match rules {
                Some(value) => {
                    let _ = self.set_rules(&value, Origin::Desired, version);
                }
                None if self.rules_origin != Origin::Config => {
                    let file = self.setup.file_rules.clone();
                    if self.install(file) {
                        self.rules_origin = Origin::Config;
                        self.rules_status = json!({"code": 200, "version": version, "source": "config",
                            "message": "desired rules removed: back to the config file's rules"});
                    }
                }
                None => {}
            }
        }
        let publish = self
            .desired
            .get("publish")
            .filter(|v| !v.is_null())
            .cloned();
        if publish != self.seen_publish {
            self.seen_publish = publish.clone();
            let value = publish.unwrap_or_else(|| json!({}));
            match publish_settings(&value) {
                Ok((interval, mask)) => {
                    let live = &self.setup.live;
                    // what is not given goes back to the config file's setting
                    let interval = interval.unwrap_or(self.file_health_interval);
                    live.health_interval_ms
                        .store(interval.as_millis() as u64, Ordering::Relaxed);
                    live.event_mask
                        .store(mask.unwrap_or(ALL_TYPES), Ordering::Relaxed);
                    self.publish_value = if value.as_object().is_some_and(|o| !o.is_empty()) {
                        value
                    } else {
                        json!({
                            "health_interval_s": live.health_interval().as_secs(),
                            "event_types": live.event_types(),
                        })
                    };
                    self.publish_status =
                        json!({"code": 200, "version": version, "source": "desired"});
                    tracing::info!("publish settings changed: {}", self.publish_value);
                }
                Err(message) => {
                    tracing::warn!("refused desired publish settings: {message}");
                    self.publish_status = json!({"code": 400, "version": version, "source": "desired", "message": message});
                }
            }
        }
        self.report(publisher);
    }

    /// Check and apply rules; on error nothing changes and the status says why.
    fn set_rules(
        &mut self,
        value: &Value,
        origin: Origin,
        version: Option<u64>,
    ) -> Result<(usize, usize), String> {
        let checked = crate::config::rules_from_json(value, &self.setup.model);
        match checked {
            Ok(section) => {
                let (lines, zones) = (section.lines.len(), section.zones.len());
                if !self.install(section) {
                    return Err("the rules engine refused them".into());
                }
                self.rules_origin = origin;
                let message = format!("applied: {lines} line(s), {zones} zone(s)");
                tracing::info!("rules from the {}: {message}", origin.as_str());
                self.rules_status = json!({"code": 200, "version": version, "source": origin.as_str(), "message": message});
                Ok((lines, zones))
            }
            Err(message) => {
                tracing::warn!("refused rules from the {}: {message}", origin.as_str());
                self.rules_status = json!({"code": 400, "version": version, "source": origin.as_str(), "message": message});
                Err(message)
            }
        }
    }

    /// Hand new rules to the pipeline.
    fn install(&mut self, section: RulesSection) -> bool {
        match Rules::new(
            section.lines.clone(),
            section.zones.clone(),
            section.config.clone(),
        ) {
            Ok(rules) => {
                self.setup.control.replace_rules(rules);
                // the normalised form, every key present: a reported-properties patch merges
                // into the twin, so a key left out would keep its old value there
                self.rules_value = crate::config::rules_to_json(&section);
                self.rules = section;
                true
            }
            Err(e) => {
                tracing::warn!("rules refused: {e}");
                false
            }
        }
    }

    /// The reported state: what runs, and how the last desired change went.
    pub fn reported(&self) -> Value {
        let card = &self.setup.model.card;
        let mut doc = json!({
            "software": {"name": "ocellus", "version": env!("CARGO_PKG_VERSION")},
            "device": &*self.setup.device,
            "model": {
                "name": card.name,
                "file": card.file,
                "sha256": card.sha256,
                "source_sha256": card.source.sha256,
                "labels": self.setup.model.labels.clone().unwrap_or_else(|| card.labels.values().map(|l| l.to_string()).collect()),
            },
            "rules": self.rules_value,
            "rules_status": self.rules_status,
            "publish": self.publish_value,
            "publish_status": self.publish_status,
        });
        if let Profile::Azure(_) = self.setup.profile {
            doc["methods"] = json!(METHODS);
            doc["snapshots"] = json!(self.setup.snapshots);
        }
        doc
    }

    fn report(&mut self, publisher: &Publisher) {
        let doc = self.reported();
        match &self.setup.profile {
            Profile::Generic => {}
            Profile::Azure(_) => {
                let rid = self.next_rid("r");
                publisher.send(
                    &azure::twin_reported_topic(&rid),
                    serde_json::to_vec(&doc).unwrap_or_default(),
                );
            }
            Profile::Aws(a) => {
                let body = json!({"state": {"reported": doc}});
                publisher.send(
                    &aws::shadow_topic(&a.thing, &a.shadow, "update"),
                    serde_json::to_vec(&body).unwrap_or_default(),
                );
            }
        }
    }

    /// A direct method: (status, response body).
    fn method(&mut self, name: &str, payload: &[u8]) -> (u16, Value) {
        let args: Result<Value, String> = if payload.iter().all(u8::is_ascii_whitespace) {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(payload).map_err(|e| format!("the payload is not JSON: {e}"))
        };
        match name {
            "ping" => (
                200,
                json!({
                    "pong": true,
                    "device": &*self.setup.device,
                    "time": crate::event::rfc3339_millis(std::time::SystemTime::now()),
                    "uptime_s": self.started.elapsed().as_secs(),
                }),
            ),
            "get_config" => (200, self.config_view()),
            "set_rules" => {
                let value = match args {
                    Ok(v) => v.get("rules").cloned().unwrap_or(v),
                    Err(e) => return (400, json!({"error": e})),
                };
                match self.set_rules(&value, Origin::Method, None) {
                    Ok((lines, zones)) => (
                        200,
                        json!({"applied": true, "lines": lines, "zones": zones}),
                    ),
                    Err(e) => (400, json!({"applied": false, "error": e})),
                }
            }
            "snapshot" => self.snapshot(),
            other => (
                404,
                json!({"error": format!("unknown method {other:?}; this device has {}", METHODS.join(", "))}),
            ),
        }
    }

    fn config_view(&self) -> Value {
        let q = &self.setup.queue;
        json!({
            "device": &*self.setup.device,
            "profile": self.setup.profile.kind(),
            "model": {"name": self.setup.model.card.name, "sha256": self.setup.model.card.sha256,
                      "source_sha256": self.setup.model.card.source.sha256,
                      "threshold": self.setup.model.threshold, "labels": self.setup.model.labels},
            "rules": self.rules_value,
            "rules_status": self.rules_status,
            "publish": self.publish_value,
            "queue": {"dir": q.dir.display().to_string(), "max_mb": q.max_bytes / (1 << 20),
                      "max_age_s": q.max_age.as_secs(), "when_full": q.when_full.as_str()},
            "snapshots": self.setup.snapshots,
        })
    }

    fn snapshot(&mut self) -> (u16, Value) {
        if !self.setup.snapshots {
            return (
                403,
                json!({"error": "snapshots are off on this device: set `cloud.snapshots = true` in its config file to allow them"}),
            );
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.setup.control.request_snapshot(SnapshotRequest {
            max_bytes: SNAPSHOT_MAX_BYTES,
            lines: self.rules.lines.clone(),
            zones: self.rules.zones.clone(),
            reply: tx,
        });
        match rx.recv_timeout(SNAPSHOT_WAIT) {
            Ok(Ok((frame, snap))) => {
                use base64::Engine;
                (
                    200,
                    json!({
                        "content_type": "image/jpeg",
                        "encoding": "base64",
                        "frame": frame,
                        "width": snap.width,
                        "height": snap.height,
                        "hidden": snap.hidden,
                        "data": base64::engine::general_purpose::STANDARD.encode(&snap.jpeg),
                    }),
                )
            }
            Ok(Err(e)) => (500, json!({"error": e.to_string()})),
            Err(_) => (
                503,
                json!({"error": format!("no frame within {} s: is the source delivering frames?", SNAPSHOT_WAIT.as_secs())}),
            ),
        }
    }
}

/// `publish` settings: (health interval, event-type mask); `None`: not given.
fn publish_settings(v: &Value) -> Result<(Option<Duration>, Option<u8>), String> {
    let Some(obj) = v.as_object() else {
        return Err("`publish`: must be an object like {\"health_interval_s\": 30, \"event_types\": [\"line_crossed\"]}".into());
    };
    let mut interval = None;
    let mut mask = None;
    for (k, val) in obj {
        match k.as_str() {
            "health_interval_s" => match val.as_u64() {
                Some(n) if (1..=86_400).contains(&n) => interval = Some(Duration::from_secs(n)),
                _ => {
                    return Err(format!(
                        "`publish.health_interval_s`: must be a whole number of seconds in 1..=86400, got {val}"
                    ));
                }
            },
            "event_types" => {
                let Some(list) = val.as_array() else {
                    return Err("`publish.event_types`: must be a list of event types".into());
                };
                let mut m = 0u8;
                for t in list {
                    let name = t.as_str().unwrap_or_default();
                    match EventType::ALL.iter().find(|e| e.as_str() == name) {
                        Some(e) => m |= type_bit(*e),
                        None => {
                            return Err(format!(
                                "`publish.event_types`: {t} is not an event type; use {}",
                                EventType::ALL.map(|e| e.as_str()).join(", ")
                            ));
                        }
                    }
                }
                mask = Some(m);
            }
            other if other.starts_with('$') => {}
            other => {
                return Err(format!(
                    "`publish.{other}`: unknown setting; use health_interval_s and event_types"
                ));
            }
        }
    }
    Ok((interval, mask))
}

/// JSON merge patch (RFC 7396): objects merge recursively, null removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1, 2]});
        merge_patch(&mut doc, &json!({"a": [3], "b": {"c": null}}));
        assert_eq!(doc, json!({"a": [3], "b": {}}));
    }

    #[test]
    fn publish_settings_are_checked() {
        let (i, m) =
            publish_settings(&json!({"health_interval_s": 5, "event_types": ["dwell"]})).unwrap();
        assert_eq!(i, Some(Duration::from_secs(5)));
        assert_eq!(m, Some(type_bit(EventType::Dwell)));
        assert_eq!(publish_settings(&json!({})).unwrap(), (None, None));
        for bad in [
            json!({"health_interval_s": 0}),
            json!({"health_interval_s": "5"}),
            json!({"event_types": ["nope"]}),
            json!({"event_types": "dwell"}),
            json!({"colour": 1}),
            json!(3),
        ] {
            assert!(publish_settings(&bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn live_settings_filter_event_types() {
        let live = LiveSettings::new(Duration::from_secs(30));
        assert!(EventType::ALL.iter().all(|t| live.allows(*t)));
        live.event_mask
            .store(type_bit(EventType::LineCrossed), Ordering::Relaxed);
        assert!(live.allows(EventType::LineCrossed));
        assert!(!live.allows(EventType::Dwell));
        assert_eq!(live.event_types(), vec!["line_crossed"]);
    }
}
