//! Events: what leaves the device. Schema `ocellus.event/1` (JSON Schema in `docs/event.schema.json`).
//!
//! A [`RuleEvent`] from the rules becomes an [`Event`] with a UUIDv7 id (unique, time-ordered, and
//! the same on every redelivery so consumers can drop duplicates), the device id and the frame's
//! capture time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::rules::{Direction, RuleEvent, RuleEventKind};

/// The schema id every event carries.
pub const SCHEMA: &str = "ocellus.event/1";

/// Event types, as they appear in the `type` field and the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A track crossed a line.
    LineCrossed,
    /// A track entered a zone.
    ZoneEntered,
    /// A track left a zone.
    ZoneExited,
    /// A track stayed in a zone for the zone's dwell time.
    Dwell,
    /// A zone's count changed.
    Occupancy,
}

impl EventType {
    /// All types, in a stable order.
    pub const ALL: [EventType; 5] = [
        EventType::LineCrossed,
        EventType::ZoneEntered,
        EventType::ZoneExited,
        EventType::Dwell,
        EventType::Occupancy,
    ];

    /// The `type` string (also the last topic level).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::LineCrossed => "line_crossed",
            EventType::ZoneEntered => "zone_entered",
            EventType::ZoneExited => "zone_exited",
            EventType::Dwell => "dwell",
            EventType::Occupancy => "occupancy",
        }
    }
}

/// One event, ready to serialise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// UUIDv7, lower-case hyphenated.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The device id from the config.
    pub device: Arc<str>,
    /// Capture time of the frame, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Frame sequence number.
    pub frame: u64,
    /// Track id (absent for occupancy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track: Option<u64>,
    /// Track label (absent for occupancy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<Arc<str>>,
    /// Last detection score of the track (absent for occupancy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Last box of the track, normalised `[x0, y0, x1, y1]` (absent for occupancy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f32; 4]>,
    /// The rule's name.
    pub rule: Arc<str>,
    /// `line_crossed` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// `zone_exited` and `dwell`: seconds inside the zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dwell_s: Option<f64>,
    /// `occupancy`: tracks inside the zone now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

impl Event {
    /// Build an event from a rule event, captured at `captured`.
    pub fn from_rule(device: &Arc<str>, captured: SystemTime, e: &RuleEvent) -> Event {
        let (kind, direction, dwell, count) = match &e.kind {
            RuleEventKind::LineCrossed { direction } => {
                (EventType::LineCrossed, Some(*direction), None, None)
            }
            RuleEventKind::ZoneEntered => (EventType::ZoneEntered, None, None, None),
            RuleEventKind::ZoneExited { dwell } => {
                (EventType::ZoneExited, None, Some(*dwell), None)
            }
            RuleEventKind::Dwell { dwell } => (EventType::Dwell, None, Some(*dwell), None),
            RuleEventKind::Occupancy { count } => (EventType::Occupancy, None, None, Some(*count)),
        };
        Event {
            schema: SCHEMA,
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            kind,
            device: device.clone(),
            time: rfc3339_millis(captured),
            frame: e.frame,
            track: e.track,
            label: e.label.clone(),
            score: e.score.map(round4),
            bbox: e.bbox.map(|b| b.map(round4)),
            rule: e.rule.clone(),
            direction,
            dwell_s: dwell.map(|d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0),
            count,
        }
    }

    /// The MQTT topic: `{prefix}/{device}/events/{type}`.
    ///
    /// It always has exactly the levels of the prefix plus three, whatever the strings hold:
    /// [`Event`]'s fields are public, so a device id that never went through the config check
    /// could contain `/` (an extra level), `+` or `#` (wildcards, which a publish topic must not
    /// contain) or NUL. Every character of the device id outside `A-Z a-z 0-9 . _ -` becomes `_`
    /// (an empty id becomes `_`), and in the prefix every `+`, `#` and NUL becomes `_` (its `/`
    /// separators stay, an empty prefix becomes `_`). A valid config never triggers this; use
    /// [`topic_level_problem`] to refuse bad ids up front instead.
    pub fn topic(&self, prefix: &str) -> String {
        let prefix: String = if prefix.is_empty() {
            "_".to_owned()
        } else {
            prefix
                .chars()
                .map(|c| match c {
                    '+' | '#' | '\0' => '_',
                    c => c,
                })
                .collect()
        };
        format!(
            "{prefix}/{}/events/{}",
            topic_level(&self.device),
            self.kind.as_str()
        )
    }

    /// The JSON payload.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with no maps and no non-finite floats cannot fail; an empty payload
        // would be caught by the schema validation of any consumer.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Longest topic level (device id) that [`topic_level_problem`] accepts, in bytes (the config's
/// limit for `device.id`).
pub const MAX_TOPIC_LEVEL: usize = 128;

fn is_level_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// What is wrong with `s` as one MQTT topic level (a device id): `None` when it is 1 to
/// [`MAX_TOPIC_LEVEL`] characters of `A-Z a-z 0-9 . _ -`, else a message naming the problem.
pub fn topic_level_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".to_owned());
    }
    if let Some(c) = s.chars().find(|&c| !is_level_char(c)) {
        return Some(format!(
            "contains {c:?}; use only A-Z a-z 0-9 . _ - (it becomes one MQTT topic level)"
        ));
    }
    (s.len() > MAX_TOPIC_LEVEL)
        .then(|| format!("is {} bytes long; at most {MAX_TOPIC_LEVEL}", s.len()))
}

/// `s` as exactly one topic level: characters outside `A-Z a-z 0-9 . _ -` become `_`, an empty
/// string becomes `_`.
fn topic_level(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.is_empty() && s.chars().all(is_level_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    if s.is_empty() {
        return std::borrow::Cow::Borrowed("_");
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| if is_level_char(c) { c } else { '_' })
            .collect(),
    )
}

fn round4(v: f32) -> f32 {
    if v.is_finite() {
        (v * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

/// `2026-11-23T20:15:03.120Z` for a system time (times before 1970 clamp to the epoch).
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2026-11-23T20:15:03.120Z = 1795464903.120 s (computed with Python's datetime)
        let t = UNIX_EPOCH + Duration::from_millis(1_795_464_903_120);
        assert_eq!(rfc3339_millis(t), "2026-11-23T20:15:03.120Z");
        // leap day 2024-02-29T23:59:59.999Z = 1709251199.999 s
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_199_999);
        assert_eq!(rfc3339_millis(t), "2024-02-29T23:59:59.999Z");
    }

    fn rule_event(kind: RuleEventKind) -> RuleEvent {
        RuleEvent {
            kind,
            rule: Arc::from("door"),
            frame: 123,
            track: Some(7),
            label: Some(Arc::from("person")),
            score: Some(0.912_345),
            bbox: Some([0.41, 0.3, 0.47, 0.52]),
        }
    }

    #[test]
    fn line_event_json_has_the_documented_fields() {
        let dev: Arc<str> = Arc::from("store-12-entrance");
        let e = Event::from_rule(
            &dev,
            UNIX_EPOCH + Duration::from_millis(1_795_464_903_120),
            &rule_event(RuleEventKind::LineCrossed {
                direction: Direction::AToB,
            }),
        );
        assert_eq!(
            e.topic("ocellus"),
            "ocellus/store-12-entrance/events/line_crossed"
        );
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap_or_default();
        assert_eq!(v["schema"], "ocellus.event/1");
        assert_eq!(v["type"], "line_crossed");
        assert_eq!(v["direction"], "a_to_b");
        assert_eq!(v["time"], "2026-11-23T20:15:03.120Z");
        assert_eq!(v["frame"], 123);
        assert_eq!(v["track"], 7);
        assert_eq!(v["score"].as_f64().map(|s| (s * 1e4).round()), Some(9123.0));
        assert!(v.get("count").is_none() && v.get("dwell_s").is_none());
        // UUIDv7: version nibble 7, variant 10xx
        let id = v["id"].as_str().unwrap_or_default();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "7");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let dev: Arc<str> = Arc::from("d");
        let ev = rule_event(RuleEventKind::ZoneEntered);
        let ids: Vec<String> = (0..1000)
            .map(|_| Event::from_rule(&dev, SystemTime::now(), &ev).id)
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert_eq!(sorted, ids, "UUIDv7 ids sort in creation order");
    }

    #[test]
    fn occupancy_has_count_and_no_track_fields() {
        let dev: Arc<str> = Arc::from("d");
        let mut ev = rule_event(RuleEventKind::Occupancy { count: 2 });
        ev.track = None;
        ev.label = None;
        ev.score = None;
        ev.bbox = None;
        let e = Event::from_rule(&dev, UNIX_EPOCH, &ev);
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap_or_default();
        assert_eq!(v["count"], 2);
        assert!(v.get("track").is_none() && v.get("bbox").is_none());
    }

    #[test]
    fn topic_has_exactly_three_levels_after_the_prefix() {
        let ev = rule_event(RuleEventKind::ZoneEntered);
        for (device, level) in [
            ("cam-1", "cam-1"),
            ("a/b", "a_b"),
            ("+", "_"),
            ("#", "_"),
            ("", "_"),
            ("x\0y", "x_y"),
        ] {
            let e = Event::from_rule(&Arc::from(device), UNIX_EPOCH, &ev);
            assert_eq!(
                e.topic("p"),
                format!("p/{level}/events/zone_entered"),
                "{device:?}"
            );
        }
        let e = Event::from_rule(&Arc::from("d"), UNIX_EPOCH, &ev);
        assert_eq!(e.topic(""), "_/d/events/zone_entered");
        assert_eq!(e.topic("a/+/#"), "a/_/_/d/events/zone_entered");
        assert_eq!(topic_level_problem("cam-1.b_c"), None);
        for bad in [
            "",
            "a/b",
            "+",
            "#",
            "a b",
            "é",
            &"x".repeat(MAX_TOPIC_LEVEL + 1),
        ] {
            assert!(topic_level_problem(bad).is_some(), "{bad:?}");
        }
    }
}
