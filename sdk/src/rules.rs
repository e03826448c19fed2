//! Rules: lines, zones, dwell and occupancy turn tracks into rule events.
//!
//! SKELETON — the public types below are the contract with `pipeline` and `event`; keep them.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::track::TrackerOutput;

/// Crossing direction of a line, as seen on screen (x right, y down): `AToB` is from the left-hand
/// side of a→b to its right-hand side (for a = (0, y), b = (1, y): from above the line to below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Left of a→b to right of a→b.
    AToB,
    /// Right of a→b to left of a→b.
    BToA,
}

/// A counting line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineRule {
    /// Rule name (used in events and topics).
    pub name: String,
    /// Start point, normalised.
    pub a: [f32; 2],
    /// End point, normalised.
    pub b: [f32; 2],
    /// Only these labels count (empty: all).
    pub labels: Vec<String>,
}

/// A zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneRule {
    /// Rule name.
    pub name: String,
    /// Polygon vertices, normalised, at least 3.
    pub polygon: Vec<[f32; 2]>,
    /// Emit `dwell` once per visit after this long inside (`None`: never).
    pub dwell: Option<Duration>,
    /// Only these labels count (empty: all).
    pub labels: Vec<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleEventKind {
    /// A track crossed a line.
    LineCrossed {
        /// Which way.
        direction: Direction,
    },
    /// A track entered a zone.
    ZoneEntered,
    /// A track left a zone (also when the track was lost or the run ended).
    ZoneExited {
        /// How long it was inside.
        dwell: Duration,
    },
    /// A track has been inside a zone for the zone's `dwell`.
    Dwell {
        /// How long it has been inside.
        dwell: Duration,
    },
    /// The number of tracks inside a zone changed.
    Occupancy {
        /// Tracks inside now.
        count: u32,
    },
}

/// One rule event, before it gets an id and a wall-clock time.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEvent {
    /// What happened.
    pub kind: RuleEventKind,
    /// The rule's name.
    pub rule: Arc<str>,
    /// Frame number it happened in.
    pub frame: u64,
    /// The track (`None` for occupancy).
    pub track: Option<u64>,
    /// The track's label (`None` for occupancy).
    pub label: Option<Arc<str>>,
    /// The track's last score (`None` for occupancy).
    pub score: Option<f32>,
    /// The track's last box (`None` for occupancy).
    pub bbox: Option<[f32; 4]>,
}

/// Rule settings shared by all rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesConfig {
    /// Dead band around a line, normalised distance: a track must be farther than this from the
    /// line on the new side for a crossing to count (jitter on the line never counts twice).
    pub line_hysteresis: f32,
    /// Consecutive observed frames inside (outside) a zone before it counts as entered (exited).
    pub zone_debounce_frames: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            line_hysteresis: 0.01,
            zone_debounce_frames: 2,
        }
    }
}

/// The rule engine.
#[derive(Debug)]
pub struct Rules {
    #[allow(dead_code)]
    lines: Vec<LineRule>,
    #[allow(dead_code)]
    zones: Vec<ZoneRule>,
}

impl Rules {
    /// Build the engine; errors name the rule and what is wrong.
    pub fn new(lines: Vec<LineRule>, zones: Vec<ZoneRule>, _cfg: RulesConfig) -> Result<Self> {
        Ok(Rules { lines, zones })
    }

    /// Process one frame's tracker output; `t` is the frame's capture time on a monotonic clock.
    pub fn update(&mut self, _frame: u64, _t: Duration, _tracks: &TrackerOutput) -> Vec<RuleEvent> {
        Vec::new()
    }

    /// End of the run: every track still inside a zone exits.
    pub fn finish(&mut self, _frame: u64, _t: Duration) -> Vec<RuleEvent> {
        Vec::new()
    }
}
