//! Rules: lines, zones, dwell and occupancy turn tracks into rule events.
//!
//! [`Rules::update`] takes one frame's [`TrackerOutput`] (the confirmed tracks observed in the
//! frame and the tracks that ended in it) and returns that frame's [`RuleEvent`]s;
//! [`Rules::finish`] closes the run. The engine is deterministic: the same input gives the same
//! events in the same order.
//!
//! # Geometry
//!
//! Coordinates are normalised (0..=1), x to the right, y down. For every rule a track is at the
//! **bottom centre of its box**, `((x0 + x1) / 2, y1)`: where its feet are. An observation whose
//! box has a non-finite coordinate (NaN, ±∞) is skipped for every rule, as if the track had not
//! been observed in that frame.
//!
//! # Lines
//!
//! A line runs from `a` to `b`. The signed side of a point `p` is
//! `s(p) = cross(b - a, p - a) = (bx - ax)(py - ay) - (by - ay)(px - ax)`, and its distance to the
//! line is `s(p) / |b - a|`. [`Direction::AToB`] is a move from `s < 0` to `s > 0` (for
//! `a = (0, 0.5)`, `b = (1, 0.5)`: from above the line to below it), [`Direction::BToA`] the
//! reverse.
//!
//! * **Hysteresis.** A track *commits* to a side only when it is farther than
//!   [`RulesConfig::line_hysteresis`] from the (infinite) line; positions inside that dead band
//!   change nothing. A track's first committed position only sets its side (no event).
//! * **Crossing.** When a track commits to the side opposite its committed side, the line is
//!   crossed if the movement from its *previous committed position* (the last position where it
//!   was outside the dead band, on the old side) to its current position intersects the segment
//!   `a`–`b` (the point where that movement meets the line lies between `a` and `b`, ends
//!   included). Either way the track is now committed to the new side, so a crossing of the
//!   line's extension outside the segment does not count, and crossing back later through the
//!   segment counts in the other direction. Tracks that are not observed for a while (lost, then
//!   found again by the tracker) are judged on their last committed position, so a crossing
//!   made while unobserved still counts once.
//! * Jitter on the line never counts twice: a crossing needs a commit on the new side, and
//!   the next one needs a commit back on the old side.
//!
//! # Zones
//!
//! A zone is a simple polygon (concave allowed); inside is decided by ray casting (even–odd
//! rule).
//!
//! * **Debounce.** A track is *entered* after [`RulesConfig::zone_debounce_frames`] consecutive
//!   observed frames inside and *exited* after as many consecutive observed frames outside
//!   (frames where the track is not observed neither extend nor break a run).
//! * **Times.** The entry time is the time of the first frame of the debounced run inside; the
//!   exit time of a debounced exit is the time of the first frame of the debounced run outside,
//!   so `ZoneExited::dwell` measures the time actually spent inside (at frame granularity).
//! * **Lost tracks.** A track still counts as inside while it is not observed, until it
//!   ends. When it appears in [`TrackerOutput::ended`] it exits in that update, with the update's
//!   `t` as the exit time (or the start of its pending run outside, if it was last seen outside
//!   but not yet debounced out). [`Rules::finish`] exits every track still inside the same way.
//!   Every `ZoneEntered` is followed by exactly one `ZoneExited` for the same track and zone.
//! * **Dwell.** `Dwell` is emitted once per visit, in the first update where the time inside
//!   (`t` − entry time, with `t` replaced by the start of a pending run outside, if any) is at
//!   least the zone's `dwell`. It is checked on every update for every track inside, observed
//!   or not; its `dwell` is that measured time, so it never exceeds the visit's exit dwell.
//! * **Occupancy.** After a zone's enter and exit events of a frame, if the number of tracks
//!   inside differs from the last reported number (initially 0), one `Occupancy` event with the
//!   new count is emitted (at most one per zone per frame).
//!
//! # Labels
//!
//! A rule with a non-empty `labels` list only sees tracks whose label is in that list.
//!
//! # Event order
//!
//! Within one call: line rules in the order given, then zone rules in the order given. Within
//! a line: by track id. Within a zone: exits (by track id), then entries (by track id), then
//! dwell events (by track id), then the occupancy event.
//!
//! # Event fields
//!
//! `frame` is the frame being processed (for [`Rules::finish`]: the frame passed in). Line,
//! enter, exit and dwell events carry the track's id, label, score and box as last observed
//! (for a track in `ended`: the values of that ended track); occupancy events carry `None`.
//!
//! # Memory
//!
//! Per-track state is removed when the track ends and at [`Rules::finish`]. Each rule keeps at
//! most [`MAX_TRACKS_PER_RULE`] track states: when a new track arrives at a full rule, the
//! state of the track observed least recently is dropped (in a zone, if that track was inside it
//! exits in that update, so enter/exit stay paired); if every state was observed in the current
//! frame, the new track is ignored by that rule for this frame.
//!
//! # Input assumptions
//!
//! A track id listed in both `observed` and `ended` of one output is treated as ended only;
//! a track id listed twice counts once. Frame numbers and times should not go backwards;
//! if they do, durations saturate at zero instead of failing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::track::{Track, TrackerOutput};

/// Most per-track states one rule keeps (see the module docs, "Memory").
pub const MAX_TRACKS_PER_RULE: usize = 4096;

/// Longest accepted rule name, in bytes (names are `[A-Za-z0-9._-]{1,64}`).
pub const MAX_NAME_LEN: usize = 64;

/// Smallest accepted zone area (normalised units; 1e-9 is about a thousandth of a pixel on a
/// 1000 × 1000 image): polygons below it are degenerate (collinear or repeated vertices).
const MIN_ZONE_AREA: f64 = 1e-9;

/// Most vertices a zone polygon may have (the config's limit too): every observation is tested
/// against every edge.
pub const MAX_ZONE_VERTICES: usize = 256;

/// Largest accepted `zone_debounce_frames`.
const MAX_DEBOUNCE_FRAMES: u32 = 100;

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
    lines: Vec<LineEngine>,
    zones: Vec<ZoneEngine>,
    hysteresis: f64,
    debounce: u32,
    cap: usize,
}

impl Rules {
    /// Build the engine; errors name the rule and what is wrong.
    ///
    /// Checks: `line_hysteresis` in `0..0.5`, `zone_debounce_frames` in `1..=100`; names match
    /// `[A-Za-z0-9._-]{1,64}` (they become MQTT topic levels) and are unique across lines and
    /// zones; every coordinate is finite and within `0..=1`; a line's `a != b`; a polygon has at
    /// least 3 and at most [`MAX_ZONE_VERTICES`] vertices and a non-zero area; a zone's `dwell`,
    /// if given, is greater than zero; labels are non-empty strings. Errors are
    /// [`Error::InvalidOption`] whose `name` is the path of the faulty field (e.g.
    /// `rules.line.door.a`, `rules.zone.shelf.polygon[2]`) and whose message names the rule.
    pub fn new(lines: Vec<LineRule>, zones: Vec<ZoneRule>, cfg: RulesConfig) -> Result<Self> {
        validate_config(&cfg)?;
        let mut names: HashMap<String, &'static str> = HashMap::new();
        for (index, line) in lines.iter().enumerate() {
            validate_name("line", index, &line.name, &mut names)?;
            validate_line(line)?;
        }
        for (index, zone) in zones.iter().enumerate() {
            validate_name("zone", index, &zone.name, &mut names)?;
            validate_zone(zone)?;
        }
        Ok(Rules {
            lines: lines.into_iter().map(LineEngine::new).collect(),
            zones: zones.into_iter().map(ZoneEngine::new).collect(),
            hysteresis: f64::from(cfg.line_hysteresis),
            debounce: cfg.zone_debounce_frames,
            cap: MAX_TRACKS_PER_RULE,
        })
    }

    /// Process one frame's tracker output; `t` is the frame's capture time on a monotonic clock.
    ///
    /// Returns the frame's events in the order described in the module docs.
    pub fn update(&mut self, frame: u64, t: Duration, tracks: &TrackerOutput) -> Vec<RuleEvent> {
        let mut ended: Vec<&Track> = tracks.ended.iter().collect();
        ended.sort_by_key(|track| track.id);
        ended.dedup_by_key(|track| track.id);
        let ended_ids: BTreeSet<u64> = ended.iter().map(|track| track.id).collect();

        let mut observed: Vec<(&Track, Point)> = tracks
            .observed
            .iter()
            .filter(|track| !ended_ids.contains(&track.id))
            .filter_map(|track| foot(track).map(|p| (track, p)))
            .collect();
        observed.sort_by_key(|(track, _)| track.id);
        observed.dedup_by_key(|(track, _)| track.id);

        let mut out = Vec::new();
        for line in &mut self.lines {
            line.update(
                frame,
                &observed,
                &ended_ids,
                self.hysteresis,
                self.cap,
                &mut out,
            );
        }
        for zone in &mut self.zones {
            zone.update(
                frame,
                t,
                &observed,
                &ended,
                self.debounce,
                self.cap,
                &mut out,
            );
        }
        out
    }

    /// End of the run: every track still inside a zone exits.
    ///
    /// Emits, per zone in rule order, `ZoneExited` for every track inside (by track id), then
    /// `Occupancy { count: 0 }` if the last reported count was not 0. All per-track state is
    /// dropped, so the engine can start a new run (where every track is new).
    pub fn finish(&mut self, frame: u64, t: Duration) -> Vec<RuleEvent> {
        let mut out = Vec::new();
        for line in &mut self.lines {
            line.tracks.clear();
        }
        for zone in &mut self.zones {
            zone.finish(frame, t, &mut out);
        }
        out
    }

    /// Tracks currently inside the zone named `zone` (`None` if there is no such zone).
    pub fn occupancy(&self, zone: &str) -> Option<u32> {
        self.zones
            .iter()
            .find(|z| z.rule.name == zone)
            .map(ZoneEngine::inside_count)
    }

    /// Number of per-track states held over all rules (bounded by
    /// [`MAX_TRACKS_PER_RULE`] per rule).
    pub fn tracked_states(&self) -> usize {
        self.lines.iter().map(|l| l.tracks.len()).sum::<usize>()
            + self.zones.iter().map(|z| z.tracks.len()).sum::<usize>()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

type Point = [f64; 2];

fn pt([x, y]: [f32; 2]) -> Point {
    [f64::from(x), f64::from(y)]
}

/// The bottom centre of a track's box, or `None` if the box is not finite.
fn foot(track: &Track) -> Option<Point> {
    if !track.bbox.iter().all(|v| v.is_finite()) {
        return None;
    }
    let [x0, _, x1, y1] = track.bbox;
    Some([(f64::from(x0) + f64::from(x1)) / 2.0, f64::from(y1)])
}

fn label_matches(labels: &[String], label: &str) -> bool {
    labels.is_empty() || labels.iter().any(|l| l == label)
}

/// A track's identity and last known values, as carried by events.
#[derive(Debug, Clone)]
struct Who {
    id: u64,
    label: Arc<str>,
    score: f32,
    bbox: [f32; 4],
}

impl Who {
    fn of(track: &Track) -> Self {
        Who {
            id: track.id,
            label: Arc::clone(&track.label),
            score: track.score,
            bbox: track.bbox,
        }
    }

    fn event(&self, kind: RuleEventKind, rule: &Arc<str>, frame: u64) -> RuleEvent {
        RuleEvent {
            kind,
            rule: Arc::clone(rule),
            frame,
            track: Some(self.id),
            label: Some(Arc::clone(&self.label)),
            score: Some(self.score),
            bbox: Some(self.bbox),
        }
    }
}

/// What to do before inserting a track's state into a rule's map.
enum Room {
    /// The track has a state, or there is room for one.
    Ready,
    /// Drop this track's state first.
    Evict(u64),
    /// Full of tracks observed in this frame: ignore the new track.
    Full,
}

fn make_room<S>(
    map: &BTreeMap<u64, S>,
    id: u64,
    frame: u64,
    cap: usize,
    last_seen: impl Fn(&S) -> u64,
) -> Room {
    if map.contains_key(&id) || map.len() < cap {
        return Room::Ready;
    }
    match map.iter().map(|(&k, s)| (last_seen(s), k)).min() {
        Some((seen, victim)) if seen < frame => Room::Evict(victim),
        _ => Room::Full,
    }
}

// ---------------------------------------------------------------------------------------------
// Lines

#[derive(Debug, Clone, Copy)]
struct Segment {
    a: Point,
    /// `b - a`.
    d: Point,
    len: f64,
    len2: f64,
}

impl Segment {
    fn new(a: [f32; 2], b: [f32; 2]) -> Self {
        let a = pt(a);
        let b = pt(b);
        let d = [b[0] - a[0], b[1] - a[1]];
        let len2 = d[0] * d[0] + d[1] * d[1];
        Segment {
            a,
            d,
            len: len2.sqrt(),
            len2,
        }
    }

    /// `cross(b - a, p - a)`.
    fn cross(&self, p: Point) -> f64 {
        self.d[0] * (p[1] - self.a[1]) - self.d[1] * (p[0] - self.a[0])
    }

    /// Signed perpendicular distance to the infinite line (positive on the `AToB` side).
    fn distance(&self, p: Point) -> f64 {
        self.cross(p) / self.len
    }

    /// Whether the movement `p0 → p1` (strictly on opposite sides of the line) meets the line
    /// between `a` and `b`, ends included.
    fn within_extent(&self, p0: Point, p1: Point) -> bool {
        let s0 = self.cross(p0);
        let s1 = self.cross(p1);
        let denom = s0 - s1;
        if denom == 0.0 || !denom.is_finite() {
            return false;
        }
        let lambda = s0 / denom;
        let x = [
            p0[0] + lambda * (p1[0] - p0[0]),
            p0[1] + lambda * (p1[1] - p0[1]),
        ];
        let u = ((x[0] - self.a[0]) * self.d[0] + (x[1] - self.a[1]) * self.d[1]) / self.len2;
        (0.0..=1.0).contains(&u)
    }
}

#[derive(Debug, Clone, Copy)]
struct LineTrack {
    /// Committed side (`true`: `s > 0`) and the last position committed on it.
    committed: Option<(bool, Point)>,
    last_seen: u64,
}

#[derive(Debug)]
struct LineEngine {
    rule: LineRule,
    name: Arc<str>,
    seg: Segment,
    tracks: BTreeMap<u64, LineTrack>,
}

impl LineEngine {
    fn new(rule: LineRule) -> Self {
        LineEngine {
            name: Arc::from(rule.name.as_str()),
            seg: Segment::new(rule.a, rule.b),
            rule,
            tracks: BTreeMap::new(),
        }
    }

    /// `observed` is sorted by track id, without duplicates or non-finite positions.
    fn update(
        &mut self,
        frame: u64,
        observed: &[(&Track, Point)],
        ended: &BTreeSet<u64>,
        hysteresis: f64,
        cap: usize,
        out: &mut Vec<RuleEvent>,
    ) {
        for &(track, p) in observed {
            if !label_matches(&self.rule.labels, &track.label) {
                continue;
            }
            match make_room(&self.tracks, track.id, frame, cap, |s| s.last_seen) {
                Room::Full => continue,
                Room::Evict(victim) => {
                    self.tracks.remove(&victim);
                }
                Room::Ready => {}
            }
            let state = self.tracks.entry(track.id).or_insert(LineTrack {
                committed: None,
                last_seen: frame,
            });
            state.last_seen = frame;
            let dist = self.seg.distance(p);
            if !dist.is_finite() || dist.abs() <= hysteresis {
                continue;
            }
            let positive = dist > 0.0;
            if let Some((was_positive, from)) = state.committed
                && was_positive != positive
                && self.seg.within_extent(from, p)
            {
                let direction = if positive {
                    Direction::AToB
                } else {
                    Direction::BToA
                };
                out.push(Who::of(track).event(
                    RuleEventKind::LineCrossed { direction },
                    &self.name,
                    frame,
                ));
            }
            state.committed = Some((positive, p));
        }
        for id in ended {
            self.tracks.remove(id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Zones

/// Even–odd ray casting.
fn point_in_polygon(polygon: &[Point], p: Point) -> bool {
    let Some(&last) = polygon.last() else {
        return false;
    };
    let [px, py] = p;
    let mut inside = false;
    let mut prev = last;
    for &v in polygon {
        let [xi, yi] = v;
        let [xj, yj] = prev;
        if (yi > py) != (yj > py) {
            let x = (xj - xi) * (py - yi) / (yj - yi) + xi;
            if px < x {
                inside = !inside;
            }
        }
        prev = v;
    }
    inside
}

/// Shoelace area (absolute).
fn polygon_area(polygon: &[Point]) -> f64 {
    let Some(&last) = polygon.last() else {
        return 0.0;
    };
    let mut prev = last;
    let mut twice = 0.0;
    for &v in polygon {
        twice += prev[0] * v[1] - v[0] * prev[1];
        prev = v;
    }
    (twice / 2.0).abs()
}

/// Twice the signed area of the triangle `a, b, c` (> 0: counter-clockwise).
fn orient(a: Point, b: Point, c: Point) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// Whether segments `p1–p2` and `q1–q2` share a point (touching and overlapping count).
fn segments_meet(p1: Point, p2: Point, q1: Point, q2: Point) -> bool {
    let on = |a: Point, b: Point, c: Point| {
        c[0] >= a[0].min(b[0])
            && c[0] <= a[0].max(b[0])
            && c[1] >= a[1].min(b[1])
            && c[1] <= a[1].max(b[1])
    };
    let (d1, d2) = (orient(q1, q2, p1), orient(q1, q2, p2));
    let (d3, d4) = (orient(p1, p2, q1), orient(p1, p2, q2));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    (d1 == 0.0 && on(q1, q2, p1))
        || (d2 == 0.0 && on(q1, q2, p2))
        || (d3 == 0.0 && on(p1, p2, q1))
        || (d4 == 0.0 && on(p1, p2, q2))
}

/// The first pair of edges `(i, j)` of a polygon that meet although they are not neighbours
/// (edge `i` runs from vertex `i` to vertex `i + 1`): the polygon is not simple.
fn self_crossing(polygon: &[Point]) -> Option<(usize, usize)> {
    let n = polygon.len();
    let edge = |i: usize| (polygon[i % n], polygon[(i + 1) % n]);
    for i in 0..n {
        for j in i + 2..n {
            if i == 0 && j == n - 1 {
                continue; // the first and last edges share vertex 0
            }
            let ((a, b), (c, d)) = (edge(i), edge(j));
            if segments_meet(a, b, c, d) {
                return Some((i, j));
            }
        }
    }
    None
}

#[derive(Debug, Clone)]
struct ZoneTrack {
    who: Who,
    last_seen: u64,
    /// Debounced state.
    inside: bool,
    /// Start of the current visit (valid while `inside`).
    enter_t: Duration,
    /// `Dwell` already emitted for the current visit.
    dwell_done: bool,
    /// Consecutive observed frames inside, and the time of the first of them.
    run_in: u32,
    run_in_start: Duration,
    /// Consecutive observed frames outside, and the time of the first of them.
    run_out: u32,
    run_out_start: Duration,
}

impl ZoneTrack {
    fn new(who: Who, frame: u64) -> Self {
        ZoneTrack {
            who,
            last_seen: frame,
            inside: false,
            enter_t: Duration::ZERO,
            dwell_done: false,
            run_in: 0,
            run_in_start: Duration::ZERO,
            run_out: 0,
            run_out_start: Duration::ZERO,
        }
    }

    /// Time inside so far for a track that is inside: up to `now`, or up to the first frame of a
    /// pending (not yet debounced) run outside.
    fn inside_for(&self, now: Duration) -> Duration {
        let until = if self.run_out > 0 {
            self.run_out_start
        } else {
            now
        };
        until.saturating_sub(self.enter_t)
    }
}

#[derive(Debug)]
struct ZoneEngine {
    rule: ZoneRule,
    name: Arc<str>,
    polygon: Vec<Point>,
    tracks: BTreeMap<u64, ZoneTrack>,
    /// Last reported occupancy.
    count: u32,
}

impl ZoneEngine {
    fn new(rule: ZoneRule) -> Self {
        ZoneEngine {
            name: Arc::from(rule.name.as_str()),
            polygon: rule.polygon.iter().copied().map(pt).collect(),
            rule,
            tracks: BTreeMap::new(),
            count: 0,
        }
    }

    fn inside_count(&self) -> u32 {
        u32::try_from(self.tracks.values().filter(|s| s.inside).count()).unwrap_or(u32::MAX)
    }

    /// `observed` is sorted by track id, without duplicates, ended tracks or non-finite
    /// positions; `ended` is sorted by id without duplicates.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        frame: u64,
        t: Duration,
        observed: &[(&Track, Point)],
        ended: &[&Track],
        debounce: u32,
        cap: usize,
        out: &mut Vec<RuleEvent>,
    ) {
        let mut exits: Vec<(Who, Duration)> = Vec::new();
        let mut enters: Vec<Who> = Vec::new();

        for &(track, p) in observed {
            if !label_matches(&self.rule.labels, &track.label) {
                continue;
            }
            match make_room(&self.tracks, track.id, frame, cap, |s| s.last_seen) {
                Room::Full => continue,
                Room::Evict(victim) => {
                    if let Some(old) = self.tracks.remove(&victim)
                        && old.inside
                    {
                        let dwell = old.inside_for(t);
                        exits.push((old.who, dwell));
                    }
                }
                Room::Ready => {}
            }
            let inside_now = point_in_polygon(&self.polygon, p);
            let who = Who::of(track);
            let state = self
                .tracks
                .entry(track.id)
                .or_insert_with(|| ZoneTrack::new(who.clone(), frame));
            state.who = who;
            state.last_seen = frame;
            if inside_now {
                state.run_out = 0;
                if state.run_in == 0 {
                    state.run_in_start = t;
                }
                state.run_in = state.run_in.saturating_add(1);
                if !state.inside && state.run_in >= debounce {
                    state.inside = true;
                    state.enter_t = state.run_in_start;
                    state.dwell_done = false;
                    enters.push(state.who.clone());
                }
            } else {
                state.run_in = 0;
                if state.run_out == 0 {
                    state.run_out_start = t;
                }
                state.run_out = state.run_out.saturating_add(1);
                if state.inside && state.run_out >= debounce {
                    let dwell = state.inside_for(t);
                    state.inside = false;
                    exits.push((state.who.clone(), dwell));
                }
            }
        }

        for &track in ended {
            if let Some(state) = self.tracks.remove(&track.id)
                && state.inside
            {
                exits.push((Who::of(track), state.inside_for(t)));
            }
        }

        exits.sort_by_key(|(who, _)| who.id);
        enters.sort_by_key(|who| who.id);
        for (who, dwell) in exits {
            out.push(who.event(RuleEventKind::ZoneExited { dwell }, &self.name, frame));
        }
        for who in enters {
            out.push(who.event(RuleEventKind::ZoneEntered, &self.name, frame));
        }
        if let Some(limit) = self.rule.dwell {
            for state in self.tracks.values_mut() {
                if !state.inside || state.dwell_done {
                    continue;
                }
                let dwell = state.inside_for(t);
                if dwell >= limit {
                    state.dwell_done = true;
                    out.push(
                        state
                            .who
                            .event(RuleEventKind::Dwell { dwell }, &self.name, frame),
                    );
                }
            }
        }
        self.report_occupancy(frame, out);
    }

    fn finish(&mut self, frame: u64, t: Duration, out: &mut Vec<RuleEvent>) {
        let tracks = std::mem::take(&mut self.tracks);
        for state in tracks.values().filter(|s| s.inside) {
            let dwell = state.inside_for(t);
            out.push(
                state
                    .who
                    .event(RuleEventKind::ZoneExited { dwell }, &self.name, frame),
            );
        }
        self.report_occupancy(frame, out);
    }

    fn report_occupancy(&mut self, frame: u64, out: &mut Vec<RuleEvent>) {
        let count = self.inside_count();
        if count != self.count {
            self.count = count;
            out.push(RuleEvent {
                kind: RuleEventKind::Occupancy { count },
                rule: Arc::clone(&self.name),
                frame,
                track: None,
                label: None,
                score: None,
                bbox: None,
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

fn invalid(name: String, message: String) -> Error {
    Error::InvalidOption { name, message }
}

fn validate_config(cfg: &RulesConfig) -> Result<()> {
    let h = cfg.line_hysteresis;
    if !(h.is_finite() && (0.0..0.5).contains(&h)) {
        return Err(invalid(
            "rules.line_hysteresis".to_owned(),
            format!("{h} is outside 0..0.5 (a normalised distance, e.g. 0.01)"),
        ));
    }
    let d = cfg.zone_debounce_frames;
    if !(1..=MAX_DEBOUNCE_FRAMES).contains(&d) {
        return Err(invalid(
            "rules.zone_debounce_frames".to_owned(),
            format!("{d} is outside 1..={MAX_DEBOUNCE_FRAMES}"),
        ));
    }
    Ok(())
}

fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn validate_name(
    kind: &'static str,
    index: usize,
    name: &str,
    names: &mut HashMap<String, &'static str>,
) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(
            format!("rules.{kind}[{index}].name"),
            format!(
                "{kind} rule #{index} has an empty name; use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ -"
            ),
        ));
    }
    if name.len() > MAX_NAME_LEN || !name.chars().all(valid_name_char) {
        return Err(invalid(
            format!("rules.{kind}.{name}.name"),
            format!(
                "{kind} `{name}`: a name must be 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 . _ - \
                 (it becomes an MQTT topic level, so `/`, `+`, `#` and spaces are not allowed)"
            ),
        ));
    }
    if let Some(other) = names.insert(name.to_owned(), kind) {
        return Err(invalid(
            format!("rules.{kind}.{name}.name"),
            format!(
                "{kind} `{name}`: the name is already used by a {other}; rule names must be unique across lines and zones"
            ),
        ));
    }
    Ok(())
}

fn validate_point(kind: &str, name: &str, field: &str, [x, y]: [f32; 2]) -> Result<()> {
    let ok = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
    if ok(x) && ok(y) {
        return Ok(());
    }
    Err(invalid(
        format!("rules.{kind}.{name}.{field}"),
        format!(
            "{kind} `{name}`: {field} = ({x}, {y}) is outside 0..=1 (coordinates are normalised to the image)"
        ),
    ))
}

fn validate_labels(kind: &str, name: &str, labels: &[String]) -> Result<()> {
    match labels.iter().position(|l| l.is_empty()) {
        Some(i) => Err(invalid(
            format!("rules.{kind}.{name}.labels"),
            format!("{kind} `{name}`: labels[{i}] is empty"),
        )),
        None => Ok(()),
    }
}

fn validate_line(line: &LineRule) -> Result<()> {
    let name = line.name.as_str();
    validate_point("line", name, "a", line.a)?;
    validate_point("line", name, "b", line.b)?;
    if line.a == line.b {
        return Err(invalid(
            format!("rules.line.{name}.b"),
            format!(
                "line `{name}`: a and b are the same point ({}, {}); a line needs two distinct points",
                line.a[0], line.a[1]
            ),
        ));
    }
    validate_labels("line", name, &line.labels)
}

fn validate_zone(zone: &ZoneRule) -> Result<()> {
    let name = zone.name.as_str();
    if zone.polygon.len() < 3 {
        return Err(invalid(
            format!("rules.zone.{name}.polygon"),
            format!(
                "zone `{name}`: the polygon has {} vertices, it needs at least 3",
                zone.polygon.len()
            ),
        ));
    }
    if zone.polygon.len() > MAX_ZONE_VERTICES {
        return Err(invalid(
            format!("rules.zone.{name}.polygon"),
            format!(
                "zone `{name}`: the polygon has {} vertices, at most {MAX_ZONE_VERTICES} are allowed",
                zone.polygon.len()
            ),
        ));
    }
    for (i, &p) in zone.polygon.iter().enumerate() {
        validate_point("zone", name, &format!("polygon[{i}]"), p)?;
    }
    let points: Vec<Point> = zone.polygon.iter().copied().map(pt).collect();
    if polygon_area(&points) <= MIN_ZONE_AREA {
        return Err(invalid(
            format!("rules.zone.{name}.polygon"),
            format!(
                "zone `{name}`: the polygon has no area (its vertices are collinear or repeated)"
            ),
        ));
    }
    // ray casting on a polygon that crosses itself counts part of it as outside: refuse it, even
    // when its area is not zero (an asymmetric bow tie)
    if let Some((i, j)) = self_crossing(&points) {
        let n = points.len();
        return Err(invalid(
            format!("rules.zone.{name}.polygon"),
            format!(
                "zone `{name}`: the polygon crosses itself (the edge from vertex {i} to {} meets the edge from vertex {j} to {}); list the vertices in order around the zone",
                (i + 1) % n,
                (j + 1) % n
            ),
        ));
    }
    if zone.dwell == Some(Duration::ZERO) {
        return Err(invalid(
            format!("rules.zone.{name}.dwell"),
            format!(
                "zone `{name}`: dwell must be greater than 0 (leave it out for no dwell events)"
            ),
        ));
    }
    validate_labels("zone", name, &zone.labels)
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::track::TrackState;

    #[test]
    fn a_zone_that_crosses_itself_is_refused_even_with_an_area() {
        let zone = |polygon: Vec<[f32; 2]>| ZoneRule {
            name: "z".into(),
            polygon,
            dwell: None,
            labels: Vec::new(),
        };
        // an asymmetric bow tie: non-zero shoelace area, but not a simple polygon
        let bow = zone(vec![[0.1, 0.1], [0.9, 0.5], [0.9, 0.1], [0.1, 0.3]]);
        let msg = validate_zone(&bow).map(|_| ()).unwrap_err().to_string();
        assert!(
            msg.contains("crosses itself") && msg.contains("rules.zone.z.polygon"),
            "{msg}"
        );
        // a concave simple polygon is fine, and so is a triangle
        let concave = zone(vec![
            [0.1, 0.1],
            [0.9, 0.1],
            [0.5, 0.4],
            [0.9, 0.9],
            [0.1, 0.9],
        ]);
        assert!(validate_zone(&concave).is_ok());
        assert!(validate_zone(&zone(vec![[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]])).is_ok());
        // a vertex touching a non-adjacent edge is a crossing too
        let touch = zone(vec![
            [0.1, 0.1],
            [0.9, 0.1],
            [0.9, 0.9],
            [0.5, 0.1],
            [0.1, 0.9],
        ]);
        assert!(validate_zone(&touch).is_err());
    }

    const FRAME: u64 = 100; // ms per frame

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn t_of(frame: u64) -> Duration {
        ms(frame * FRAME)
    }

    /// A track whose feet (bottom centre of its box) are at `(x, y)`.
    fn track(id: u64, label: &str, x: f32, y: f32) -> Track {
        Track {
            id,
            label: Arc::from(label),
            class_id: 0,
            score: 0.8,
            bbox: [x - 0.05, y - 0.2, x + 0.05, y],
            state: TrackState::Tracked,
            hits: 10,
            first_frame: 0,
            last_frame: 0,
        }
    }

    fn person(id: u64, x: f32, y: f32) -> Track {
        track(id, "person", x, y)
    }

    fn seen(observed: Vec<Track>) -> TrackerOutput {
        TrackerOutput {
            observed,
            ended: Vec::new(),
        }
    }

    fn line(name: &str, a: [f32; 2], b: [f32; 2]) -> LineRule {
        LineRule {
            name: name.to_owned(),
            a,
            b,
            labels: Vec::new(),
        }
    }

    fn square_zone(name: &str, dwell: Option<Duration>) -> ZoneRule {
        ZoneRule {
            name: name.to_owned(),
            polygon: vec![[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]],
            dwell,
            labels: Vec::new(),
        }
    }

    fn cfg(debounce: u32) -> RulesConfig {
        RulesConfig {
            line_hysteresis: 0.01,
            zone_debounce_frames: debounce,
        }
    }

    /// What a test compares: (frame, rule, track, kind).
    type Brief = (u64, String, Option<u64>, RuleEventKind);

    fn brief(events: &[RuleEvent]) -> Vec<Brief> {
        events
            .iter()
            .map(|e| (e.frame, e.rule.to_string(), e.track, e.kind.clone()))
            .collect()
    }

    fn ev(frame: u64, rule: &str, track: Option<u64>, kind: RuleEventKind) -> Brief {
        (frame, rule.to_owned(), track, kind)
    }

    fn crossed(frame: u64, rule: &str, track: u64, direction: Direction) -> Brief {
        ev(
            frame,
            rule,
            Some(track),
            RuleEventKind::LineCrossed { direction },
        )
    }

    fn entered(frame: u64, rule: &str, track: u64) -> Brief {
        ev(frame, rule, Some(track), RuleEventKind::ZoneEntered)
    }

    fn exited(frame: u64, rule: &str, track: u64, dwell: Duration) -> Brief {
        ev(
            frame,
            rule,
            Some(track),
            RuleEventKind::ZoneExited { dwell },
        )
    }

    fn dwelled(frame: u64, rule: &str, track: u64, dwell: Duration) -> Brief {
        ev(frame, rule, Some(track), RuleEventKind::Dwell { dwell })
    }

    fn occupancy(frame: u64, rule: &str, count: u32) -> Brief {
        ev(frame, rule, None, RuleEventKind::Occupancy { count })
    }

    /// Feed one observed track per frame (frames `first..`, t = frame × 100 ms); collect events.
    fn walk(rules: &mut Rules, first: u64, id: u64, points: &[(f32, f32)]) -> Vec<RuleEvent> {
        let mut events = Vec::new();
        for (i, &(x, y)) in points.iter().enumerate() {
            let frame = first + i as u64;
            events.extend(rules.update(frame, t_of(frame), &seen(vec![person(id, x, y)])));
        }
        events
    }

    /// `n` points from `from` to `to` inclusive, evenly spaced.
    fn path(from: (f32, f32), to: (f32, f32), n: usize) -> Vec<(f32, f32)> {
        (0..n)
            .map(|i| {
                let k = i as f32 / (n - 1) as f32;
                (from.0 + (to.0 - from.0) * k, from.1 + (to.1 - from.1) * k)
            })
            .collect()
    }

    fn horizontal() -> Rules {
        Rules::new(
            vec![line("door", [0.1, 0.5], [0.9, 0.5])],
            Vec::new(),
            cfg(2),
        )
        .unwrap()
    }

    // ----- lines

    #[test]
    fn walking_down_across_a_horizontal_line_is_one_a_to_b_and_back_is_one_b_to_a() {
        let mut rules = horizontal();
        // y = 0.30, 0.35, …, 0.70 at frames 0..=8: y = 0.50 (frame 4) is in the dead band,
        // y = 0.55 (frame 5) commits below the line: s = 0.8 × (0.55 − 0.5) > 0 → a_to_b.
        let down = path((0.5, 0.3), (0.5, 0.7), 9);
        let events = walk(&mut rules, 0, 1, &down);
        assert_eq!(brief(&events), vec![crossed(5, "door", 1, Direction::AToB)]);
        // Back up at frames 9..=17: y = 0.65 … 0.25; 0.45 (frame 13) commits above → b_to_a.
        let up = path((0.5, 0.65), (0.5, 0.25), 9);
        let events = walk(&mut rules, 9, 1, &up);
        assert_eq!(
            brief(&events),
            vec![crossed(13, "door", 1, Direction::BToA)]
        );
    }

    #[test]
    fn jitter_on_the_line_then_going_on_counts_once() {
        let mut rules = horizontal();
        let mut points = vec![(0.5, 0.4); 3];
        for i in 0..20 {
            let dy = if i % 2 == 0 { 0.005 } else { -0.005 };
            points.push((0.5, 0.5 + dy));
        }
        points.extend([(0.5, 0.6); 3]);
        let events = walk(&mut rules, 0, 1, &points);
        assert_eq!(
            brief(&events),
            vec![crossed(23, "door", 1, Direction::AToB)]
        );
    }

    #[test]
    fn jitter_on_the_line_then_returning_counts_nothing() {
        let mut rules = horizontal();
        let mut points = vec![(0.5, 0.4); 3];
        for i in 0..20 {
            let dy = if i % 2 == 0 { 0.005 } else { -0.005 };
            points.push((0.5, 0.5 + dy));
        }
        points.extend([(0.5, 0.4); 3]);
        let events = walk(&mut rules, 0, 1, &points);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn hovering_in_the_dead_band_after_a_crossing_does_not_count_again() {
        let mut rules = horizontal();
        // Crosses (frame 1), then hovers inside the band on both sides of the line, then
        // stays below: only the first commit below counts.
        let points = [
            (0.5, 0.4),
            (0.5, 0.52),
            (0.5, 0.495),
            (0.5, 0.505),
            (0.5, 0.492),
            (0.5, 0.52),
            (0.5, 0.6),
        ];
        let events = walk(&mut rules, 0, 1, &points);
        assert_eq!(brief(&events), vec![crossed(1, "door", 1, Direction::AToB)]);
    }

    #[test]
    fn crossing_the_extension_of_the_line_outside_the_segment_counts_nothing() {
        let mut rules = Rules::new(
            vec![line("door", [0.2, 0.5], [0.6, 0.5])],
            Vec::new(),
            cfg(2),
        )
        .unwrap();
        // x = 0.8 is right of b = (0.6, 0.5): the infinite line is crossed, the segment is not.
        let events = walk(&mut rules, 0, 1, &path((0.8, 0.3), (0.8, 0.7), 9));
        assert!(events.is_empty(), "{events:?}");
        // The track is now committed below; walking up through the segment is a real crossing.
        // y = 0.70, 0.65, …: 0.45 (frame 14) commits above at x = 0.4, inside the segment.
        let events = walk(&mut rules, 9, 1, &path((0.4, 0.7), (0.4, 0.3), 9));
        assert_eq!(
            brief(&events),
            vec![crossed(14, "door", 1, Direction::BToA)]
        );
    }

    #[test]
    fn diagonal_move_is_judged_where_it_meets_the_line() {
        let mut rules = Rules::new(
            vec![line("door", [0.2, 0.5], [0.6, 0.5])],
            Vec::new(),
            cfg(2),
        )
        .unwrap();
        // From (0.9, 0.4) to (0.1, 0.6): meets y = 0.5 at x = 0.5, inside the segment.
        let events = walk(&mut rules, 0, 1, &[(0.9, 0.4), (0.1, 0.6)]);
        assert_eq!(brief(&events), vec![crossed(1, "door", 1, Direction::AToB)]);
        // From (0.5, 0.6) to (1.0, 0.4): both ends overlap the segment's x range, but the move
        // meets y = 0.5 at x = 0.75 > 0.6, outside the segment → no crossing.
        let events = walk(&mut rules, 2, 1, &[(0.5, 0.6), (1.0, 0.4)]);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn vertical_line_directions_follow_the_cross_product() {
        // a = (0.5, 0.1), b = (0.5, 0.9): s(p) = (0)(py − 0.1) − (0.8)(px − 0.5) = 0.8 (0.5 − px).
        // Left of the line (px < 0.5): s > 0; right: s < 0.
        // Left → right: s > 0 → s < 0 = b_to_a. Right → left: s < 0 → s > 0 = a_to_b.
        let lines = vec![line("aisle", [0.5, 0.1], [0.5, 0.9])];
        let mut rules = Rules::new(lines, Vec::new(), cfg(2)).unwrap();
        let events = walk(&mut rules, 0, 1, &path((0.3, 0.5), (0.7, 0.5), 5));
        assert_eq!(
            brief(&events),
            vec![crossed(3, "aisle", 1, Direction::BToA)]
        );
        let events = walk(&mut rules, 5, 1, &path((0.7, 0.5), (0.3, 0.5), 5));
        assert_eq!(
            brief(&events),
            vec![crossed(8, "aisle", 1, Direction::AToB)]
        );
    }

    #[test]
    fn first_observation_only_sets_the_side() {
        let mut rules = horizontal();
        // First seen below, stays below: nothing.
        assert!(walk(&mut rules, 0, 1, &[(0.5, 0.7), (0.5, 0.6)]).is_empty());
        // First seen on the line (dead band), then below: the first commit sets the side only.
        assert!(walk(&mut rules, 0, 2, &[(0.5, 0.5), (0.5, 0.6), (0.5, 0.7)]).is_empty());
    }

    #[test]
    fn a_single_big_step_across_counts() {
        let mut rules = horizontal();
        let events = walk(&mut rules, 0, 1, &[(0.5, 0.2), (0.5, 0.8)]);
        assert_eq!(brief(&events), vec![crossed(1, "door", 1, Direction::AToB)]);
    }

    #[test]
    fn a_crossing_made_while_unobserved_counts_when_the_track_is_seen_again() {
        let mut rules = horizontal();
        let mut events = walk(&mut rules, 0, 1, &[(0.5, 0.3), (0.5, 0.4)]);
        for frame in 2..10 {
            events.extend(rules.update(frame, t_of(frame), &TrackerOutput::default()));
        }
        events.extend(walk(&mut rules, 10, 1, &[(0.5, 0.7)]));
        assert_eq!(
            brief(&events),
            vec![crossed(10, "door", 1, Direction::AToB)]
        );
    }

    #[test]
    fn line_labels_filter_tracks() {
        let mut l = line("door", [0.1, 0.5], [0.9, 0.5]);
        l.labels = vec!["person".to_owned()];
        let mut rules = Rules::new(vec![l], Vec::new(), cfg(2)).unwrap();
        let mut events = Vec::new();
        for (frame, y) in [(0, 0.3), (1, 0.7)] {
            let out = seen(vec![track(1, "car", 0.5, y), track(2, "person", 0.4, y)]);
            events.extend(rules.update(frame, t_of(frame), &out));
        }
        assert_eq!(brief(&events), vec![crossed(1, "door", 2, Direction::AToB)]);
    }

    #[test]
    fn events_are_ordered_by_rule_then_track_id() {
        let lines = vec![
            line("second", [0.1, 0.5], [0.9, 0.5]),
            line("first", [0.1, 0.45], [0.9, 0.45]),
        ];
        let mut rules = Rules::new(lines, Vec::new(), cfg(2)).unwrap();
        rules.update(
            0,
            t_of(0),
            &seen(vec![person(7, 0.5, 0.3), person(3, 0.4, 0.3)]),
        );
        let events = rules.update(
            1,
            t_of(1),
            &seen(vec![person(7, 0.5, 0.7), person(3, 0.4, 0.7)]),
        );
        assert_eq!(
            brief(&events),
            vec![
                crossed(1, "second", 3, Direction::AToB),
                crossed(1, "second", 7, Direction::AToB),
                crossed(1, "first", 3, Direction::AToB),
                crossed(1, "first", 7, Direction::AToB),
            ]
        );
    }

    #[test]
    fn ended_track_loses_its_line_state() {
        let mut rules = horizontal();
        walk(&mut rules, 0, 1, &[(0.5, 0.3)]);
        assert_eq!(rules.tracked_states(), 1);
        let out = TrackerOutput {
            observed: Vec::new(),
            ended: vec![person(1, 0.5, 0.3)],
        };
        assert!(rules.update(1, t_of(1), &out).is_empty());
        assert_eq!(rules.tracked_states(), 0);
        // Same id again (a new run of the tracker): first observation, no event.
        assert!(walk(&mut rules, 2, 1, &[(0.5, 0.7)]).is_empty());
    }

    #[test]
    fn nan_positions_are_skipped() {
        let mut rules = Rules::new(
            vec![line("door", [0.1, 0.5], [0.9, 0.5])],
            vec![square_zone("shelf", None)],
            cfg(1),
        )
        .unwrap();
        // x = 0.7: on the line's extent, outside the zone.
        let mut nan = person(1, 0.7, 0.7);
        nan.bbox[3] = f32::NAN;
        let mut inf = person(1, 0.7, 0.7);
        inf.bbox[0] = f32::INFINITY;
        let mut events = walk(&mut rules, 0, 1, &[(0.7, 0.3)]);
        events.extend(rules.update(1, t_of(1), &seen(vec![nan])));
        events.extend(rules.update(2, t_of(2), &seen(vec![inf])));
        events.extend(walk(&mut rules, 3, 1, &[(0.7, 0.7)]));
        assert_eq!(brief(&events), vec![crossed(3, "door", 1, Direction::AToB)]);
    }

    // ----- zones

    #[test]
    fn zone_enter_dwell_exit_with_exact_durations() {
        let zones = vec![square_zone("shelf", Some(ms(1000)))];
        let mut rules = Rules::new(Vec::new(), zones, cfg(2)).unwrap();
        let mut points = vec![(0.1, 0.4); 2]; // frames 0, 1: outside
        points.extend(vec![(0.4, 0.4); 15]); // frames 2..=16: inside
        points.extend(vec![(0.8, 0.4); 4]); // frames 17..=20: outside
        let events = walk(&mut rules, 0, 1, &points);
        // Entry debounced at frame 3, entry time = frame 2 (200 ms).
        // Dwell: t − 200 ms ≥ 1000 ms first at frame 12.
        // Exit debounced at frame 18, exit time = frame 17 (1700 ms): dwell 1500 ms.
        assert_eq!(
            brief(&events),
            vec![
                entered(3, "shelf", 1),
                occupancy(3, "shelf", 1),
                dwelled(12, "shelf", 1, ms(1000)),
                exited(18, "shelf", 1, ms(1500)),
                occupancy(18, "shelf", 0),
            ]
        );
        assert_eq!(rules.occupancy("shelf"), Some(0));
        assert_eq!(rules.occupancy("nope"), None);
    }

    #[test]
    fn dwell_fires_once_per_visit() {
        let zones = vec![square_zone("shelf", Some(ms(300)))];
        let mut rules = Rules::new(Vec::new(), zones, cfg(1)).unwrap();
        let mut points = vec![(0.4, 0.4); 5]; // 0..=4 inside
        points.push((0.8, 0.4)); // 5 outside
        points.extend(vec![(0.4, 0.4); 5]); // 6..=10 inside
        let events = walk(&mut rules, 0, 1, &points);
        assert_eq!(
            brief(&events),
            vec![
                entered(0, "shelf", 1),
                occupancy(0, "shelf", 1),
                dwelled(3, "shelf", 1, ms(300)),
                exited(5, "shelf", 1, ms(500)),
                occupancy(5, "shelf", 0),
                entered(6, "shelf", 1),
                occupancy(6, "shelf", 1),
                dwelled(9, "shelf", 1, ms(300)),
            ]
        );
    }

    #[test]
    fn track_ending_inside_exits_in_that_update_and_dwell_counts_while_unobserved() {
        let zones = vec![square_zone("shelf", Some(ms(500)))];
        let mut rules = Rules::new(Vec::new(), zones, cfg(1)).unwrap();
        let mut events = walk(&mut rules, 0, 1, &[(0.4, 0.4); 3]); // 0..=2 inside
        for frame in 3..10 {
            events.extend(rules.update(frame, t_of(frame), &TrackerOutput::default()));
        }
        let mut last = person(1, 0.4, 0.4);
        last.score = 0.42;
        last.state = TrackState::Lost;
        let out = TrackerOutput {
            observed: Vec::new(),
            ended: vec![last.clone()],
        };
        let tail = rules.update(10, t_of(10), &out);
        events.extend(tail.clone());
        assert_eq!(
            brief(&events),
            vec![
                entered(0, "shelf", 1),
                occupancy(0, "shelf", 1),
                dwelled(5, "shelf", 1, ms(500)),
                exited(10, "shelf", 1, ms(1000)),
                occupancy(10, "shelf", 0),
            ]
        );
        // The exit carries the ended track's values.
        let exit = &tail[0];
        assert_eq!(exit.label.as_deref(), Some("person"));
        assert_eq!(exit.score, Some(0.42));
        assert_eq!(exit.bbox, Some(last.bbox));
        assert_eq!(rules.tracked_states(), 0);
        assert!(rules.finish(11, t_of(11)).is_empty());
    }

    #[test]
    fn track_ending_while_pending_outside_exits_at_the_start_of_that_run() {
        let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(3)).unwrap();
        let mut points = vec![(0.4, 0.4); 5]; // 0..=4 inside, entered at 2 (time 0)
        points.push((0.8, 0.4)); // 5: outside, not yet debounced
        let mut events = walk(&mut rules, 0, 1, &points);
        let out = TrackerOutput {
            observed: Vec::new(),
            ended: vec![person(1, 0.8, 0.4)],
        };
        events.extend(rules.update(9, t_of(9), &out));
        assert_eq!(
            brief(&events),
            vec![
                entered(2, "shelf", 1),
                occupancy(2, "shelf", 1),
                exited(9, "shelf", 1, ms(500)),
                occupancy(9, "shelf", 0),
            ]
        );
    }

    #[test]
    fn ended_track_that_never_entered_emits_nothing() {
        let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(3)).unwrap();
        let mut events = walk(&mut rules, 0, 1, &[(0.4, 0.4); 2]); // not yet debounced
        let out = TrackerOutput {
            observed: Vec::new(),
            ended: vec![person(1, 0.4, 0.4)],
        };
        events.extend(rules.update(2, t_of(2), &out));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(rules.tracked_states(), 0);
    }

    #[test]
    fn track_both_observed_and_ended_is_treated_as_ended() {
        let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(1)).unwrap();
        let mut events = walk(&mut rules, 0, 1, &[(0.4, 0.4)]);
        let out = TrackerOutput {
            observed: vec![person(1, 0.4, 0.4), person(2, 0.4, 0.4)],
            ended: vec![person(1, 0.4, 0.4), person(2, 0.4, 0.4)],
        };
        events.extend(rules.update(1, t_of(1), &out));
        assert_eq!(
            brief(&events),
            vec![
                entered(0, "shelf", 1),
                occupancy(0, "shelf", 1),
                exited(1, "shelf", 1, ms(100)),
                occupancy(1, "shelf", 0),
            ]
        );
    }

    #[test]
    fn finish_exits_every_track_inside_and_reports_zero() {
        let lines = vec![line("door", [0.1, 0.5], [0.9, 0.5])];
        let zones = vec![
            square_zone("shelf", None),
            ZoneRule {
                name: "empty".to_owned(),
                polygon: vec![[0.7, 0.7], [0.9, 0.7], [0.8, 0.9]],
                dwell: None,
                labels: Vec::new(),
            },
        ];
        let mut rules = Rules::new(lines, zones, cfg(2)).unwrap();
        let mut events = Vec::new();
        // Tracks 2 and 5 inside from frame 0 (entered at frame 1); track 9 inside only from
        // frame 1 (pending, never entered); track 4 outside.
        let out0 = seen(vec![
            person(5, 0.4, 0.4),
            person(2, 0.3, 0.3),
            person(4, 0.8, 0.3),
        ]);
        events.extend(rules.update(0, t_of(0), &out0));
        let out1 = seen(vec![
            person(5, 0.4, 0.4),
            person(2, 0.3, 0.3),
            person(9, 0.45, 0.45),
            person(4, 0.8, 0.3),
        ]);
        events.extend(rules.update(1, t_of(1), &out1));
        events.extend(rules.finish(30, t_of(30)));
        assert_eq!(
            brief(&events),
            vec![
                entered(1, "shelf", 2),
                entered(1, "shelf", 5),
                occupancy(1, "shelf", 2),
                exited(30, "shelf", 2, ms(3000)),
                exited(30, "shelf", 5, ms(3000)),
                occupancy(30, "shelf", 0),
            ]
        );
        assert_eq!(rules.tracked_states(), 0);
        assert!(rules.finish(31, t_of(31)).is_empty());
        // Line state was dropped too: track 4 (last committed above) seen below is a first
        // observation, not a crossing.
        assert!(
            rules
                .update(32, t_of(32), &seen(vec![person(4, 0.3, 0.8)]))
                .is_empty()
        );
    }

    #[test]
    fn flicker_at_the_border_does_not_spam_enter_or_exit() {
        let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(2)).unwrap();
        let inside = (0.59, 0.4);
        let outside = (0.61, 0.4);
        // Outside, flickering in for one frame at a time: never entered.
        let mut points = vec![outside; 2];
        for _ in 0..6 {
            points.push(inside);
            points.push(outside);
        }
        let events = walk(&mut rules, 0, 1, &points);
        assert!(events.is_empty(), "{events:?}");
        // Settles inside (frames 14, 15 → entered at 15), then flickers out for one frame at a
        // time: never exited.
        let mut points = vec![inside; 2];
        for _ in 0..6 {
            points.push(outside);
            points.push(inside);
        }
        let events = walk(&mut rules, 14, 1, &points);
        assert_eq!(
            brief(&events),
            vec![entered(15, "shelf", 1), occupancy(15, "shelf", 1)]
        );
        assert_eq!(rules.occupancy("shelf"), Some(1));
    }

    #[test]
    fn zone_labels_filter_tracks() {
        let mut zone = square_zone("shelf", None);
        zone.labels = vec!["person".to_owned()];
        let mut rules = Rules::new(Vec::new(), vec![zone], cfg(1)).unwrap();
        let out = seen(vec![
            track(1, "car", 0.4, 0.4),
            track(2, "person", 0.3, 0.4),
        ]);
        let events = rules.update(0, t_of(0), &out);
        assert_eq!(
            brief(&events),
            vec![entered(0, "shelf", 2), occupancy(0, "shelf", 1)]
        );
    }

    #[test]
    fn two_tracks_give_occupancy_one_two_one_zero() {
        let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(1)).unwrap();
        let inside = (0.4, 0.4);
        let outside = (0.8, 0.4);
        let frames = [
            (outside, outside), // 0
            (inside, outside),  // 1: 1 enters
            (inside, inside),   // 2: 2 enters
            (outside, inside),  // 3: 1 exits
            (outside, outside), // 4: 2 exits
        ];
        let mut events = Vec::new();
        for (frame, (p1, p2)) in frames.into_iter().enumerate() {
            let frame = frame as u64;
            let out = seen(vec![person(1, p1.0, p1.1), person(2, p2.0, p2.1)]);
            events.extend(rules.update(frame, t_of(frame), &out));
        }
        assert_eq!(
            brief(&events),
            vec![
                entered(1, "shelf", 1),
                occupancy(1, "shelf", 1),
                entered(2, "shelf", 2),
                occupancy(2, "shelf", 2),
                exited(3, "shelf", 1, ms(200)),
                occupancy(3, "shelf", 1),
                exited(4, "shelf", 2, ms(200)),
                occupancy(4, "shelf", 0),
            ]
        );
    }

    #[test]
    fn exits_come_before_enters_and_an_unchanged_count_is_not_reported() {
        let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(1)).unwrap();
        let mut events = rules.update(
            0,
            t_of(0),
            &seen(vec![person(1, 0.8, 0.4), person(2, 0.4, 0.4)]),
        );
        events.extend(rules.update(
            1,
            t_of(1),
            &seen(vec![person(1, 0.4, 0.4), person(2, 0.8, 0.4)]),
        ));
        assert_eq!(
            brief(&events),
            vec![
                entered(0, "shelf", 2),
                occupancy(0, "shelf", 1),
                exited(1, "shelf", 2, ms(100)),
                entered(1, "shelf", 1),
            ]
        );
    }

    #[test]
    fn lines_come_before_zones_in_one_update() {
        let lines = vec![line("door", [0.1, 0.5], [0.9, 0.5])];
        let zones = vec![square_zone("shelf", None)];
        let mut rules = Rules::new(lines, zones, cfg(1)).unwrap();
        // Feet go from (0.4, 0.3) (inside the zone, above the line) to (0.4, 0.7) (outside the
        // zone, below the line): in frame 1 the crossing comes first, then the zone's events.
        let events = walk(&mut rules, 0, 1, &[(0.4, 0.3), (0.4, 0.7)]);
        assert_eq!(
            brief(&events),
            vec![
                entered(0, "shelf", 1),
                occupancy(0, "shelf", 1),
                crossed(1, "door", 1, Direction::AToB),
                exited(1, "shelf", 1, ms(100)),
                occupancy(1, "shelf", 0),
            ]
        );
    }

    #[test]
    fn concave_zone_excludes_its_notch() {
        // A U shape: the notch between x = 0.4 and 0.6, above y = 0.6, is outside.
        let zone = ZoneRule {
            name: "u".to_owned(),
            polygon: vec![
                [0.2, 0.2],
                [0.4, 0.2],
                [0.4, 0.6],
                [0.6, 0.6],
                [0.6, 0.2],
                [0.8, 0.2],
                [0.8, 0.8],
                [0.2, 0.8],
            ],
            dwell: None,
            labels: Vec::new(),
        };
        let mut rules = Rules::new(Vec::new(), vec![zone], cfg(1)).unwrap();
        let events = rules.update(
            0,
            t_of(0),
            &seen(vec![
                person(1, 0.5, 0.4), // notch: outside
                person(2, 0.3, 0.4), // left arm
                person(3, 0.5, 0.7), // bottom
            ]),
        );
        assert_eq!(
            brief(&events),
            vec![entered(0, "u", 2), entered(0, "u", 3), occupancy(0, "u", 2)]
        );
    }

    #[test]
    fn event_fields_come_from_the_track_and_occupancy_has_none() {
        let mut rules = Rules::new(
            vec![line("door", [0.1, 0.5], [0.9, 0.5])],
            vec![square_zone("shelf", None)],
            cfg(1),
        )
        .unwrap();
        walk(&mut rules, 0, 1, &[(0.4, 0.45)]);
        let mut t = person(1, 0.4, 0.55);
        t.score = 0.66;
        let events = rules.update(1, t_of(1), &seen(vec![t.clone()]));
        let crossing = RuleEvent {
            kind: RuleEventKind::LineCrossed {
                direction: Direction::AToB,
            },
            rule: Arc::from("door"),
            frame: 1,
            track: Some(1),
            label: Some(Arc::from("person")),
            score: Some(0.66),
            bbox: Some(t.bbox),
        };
        assert_eq!(events, vec![crossing]);
        let events = rules.update(2, t_of(2), &seen(vec![person(1, 0.8, 0.8)]));
        let occ = events.last().unwrap();
        assert_eq!(occ.kind, RuleEventKind::Occupancy { count: 0 });
        assert_eq!(
            (occ.track, occ.label.clone(), occ.score, occ.bbox),
            (None, None, None, None)
        );
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let zones = vec![square_zone("shelf", Some(ms(100)))];
        let mut rules = Rules::new(Vec::new(), zones, cfg(1)).unwrap();
        rules.update(10, ms(1000), &seen(vec![person(1, 0.4, 0.4)]));
        let events = rules.update(11, ms(500), &seen(vec![person(1, 0.8, 0.4)]));
        assert_eq!(brief(&events)[0], exited(11, "shelf", 1, Duration::ZERO));
        assert!(rules.finish(12, ms(0)).is_empty());
    }

    #[test]
    fn track_states_are_capped_and_evicted_zone_tracks_exit() {
        let mut rules = Rules::new(
            vec![line("door", [0.1, 0.5], [0.9, 0.5])],
            vec![square_zone("shelf", None)],
            cfg(1),
        )
        .unwrap();
        rules.cap = 2;
        let mut events = Vec::new();
        events.extend(rules.update(0, t_of(0), &seen(vec![person(1, 0.3, 0.3)])));
        events.extend(rules.update(1, t_of(1), &seen(vec![person(2, 0.4, 0.3)])));
        // Track 3 arrives at full rules: track 1 (seen least recently) is dropped and exits.
        events.extend(rules.update(2, t_of(2), &seen(vec![person(3, 0.5, 0.3)])));
        assert_eq!(rules.tracked_states(), 4);
        // Two new tracks at once while the rules are full of tracks seen earlier: 4 replaces 2,
        // then 5 finds only tracks observed in this frame and is ignored.
        events.extend(rules.update(
            3,
            t_of(3),
            &seen(vec![
                person(4, 0.3, 0.4),
                person(5, 0.4, 0.4),
                person(3, 0.5, 0.3),
            ]),
        ));
        assert_eq!(rules.tracked_states(), 4);
        events.extend(rules.finish(4, t_of(4)));
        assert_eq!(
            brief(&events),
            vec![
                entered(0, "shelf", 1),
                occupancy(0, "shelf", 1),
                entered(1, "shelf", 2),
                occupancy(1, "shelf", 2),
                exited(2, "shelf", 1, ms(200)),
                entered(2, "shelf", 3),
                exited(3, "shelf", 2, ms(200)),
                entered(3, "shelf", 4),
                exited(4, "shelf", 3, ms(200)),
                exited(4, "shelf", 4, ms(100)),
                occupancy(4, "shelf", 0),
            ]
        );
    }

    // ----- validation

    fn err_of(result: Result<Rules>) -> (String, String) {
        match result {
            Err(Error::InvalidOption { name, message }) => (name, message),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    fn bad_line(l: LineRule) -> (String, String) {
        err_of(Rules::new(vec![l], Vec::new(), RulesConfig::default()))
    }

    fn bad_zone(z: ZoneRule) -> (String, String) {
        err_of(Rules::new(Vec::new(), vec![z], RulesConfig::default()))
    }

    #[test]
    fn valid_rules_are_accepted() {
        let mut zone = square_zone("Shelf_2.left-side", Some(ms(1)));
        zone.labels = vec!["person".to_owned()];
        let name64 = "x".repeat(64);
        Rules::new(
            vec![
                line("entrance-1", [0.0, 0.0], [1.0, 1.0]),
                line(&name64, [0.0, 1.0], [1.0, 0.0]),
            ],
            vec![zone],
            RulesConfig {
                line_hysteresis: 0.0,
                zone_debounce_frames: 100,
            },
        )
        .unwrap();
        Rules::new(Vec::new(), Vec::new(), RulesConfig::default()).unwrap();
    }

    #[test]
    fn bad_names_are_rejected() {
        for name in [
            "door/1",
            "door+",
            "door#",
            "my door",
            "dör",
            &"x".repeat(65),
        ] {
            let (path, message) = bad_line(line(name, [0.1, 0.5], [0.9, 0.5]));
            assert_eq!(path, format!("rules.line.{name}.name"));
            assert!(message.contains(name), "{message}");
            let (path, message) = bad_zone(square_zone(name, None));
            assert_eq!(path, format!("rules.zone.{name}.name"));
            assert!(message.contains(name), "{message}");
        }
        let (path, message) = bad_line(line("", [0.1, 0.5], [0.9, 0.5]));
        assert_eq!(path, "rules.line[0].name");
        assert!(message.contains("empty"), "{message}");
    }

    #[test]
    fn duplicate_names_are_rejected_across_lines_and_zones() {
        let (path, message) = err_of(Rules::new(
            vec![line("door", [0.1, 0.5], [0.9, 0.5])],
            vec![square_zone("door", None)],
            RulesConfig::default(),
        ));
        assert_eq!(path, "rules.zone.door.name");
        assert!(
            message.contains("`door`") && message.contains("line"),
            "{message}"
        );
        let (path, message) = err_of(Rules::new(
            vec![
                line("door", [0.1, 0.5], [0.9, 0.5]),
                line("door", [0.1, 0.6], [0.9, 0.6]),
            ],
            Vec::new(),
            RulesConfig::default(),
        ));
        assert_eq!(path, "rules.line.door.name");
        assert!(message.contains("door"), "{message}");
    }

    #[test]
    fn bad_line_geometry_is_rejected() {
        let (path, message) = bad_line(line("door", [1.5, 0.5], [0.9, 0.5]));
        assert_eq!(path, "rules.line.door.a");
        assert!(
            message.contains("door") && message.contains("1.5"),
            "{message}"
        );
        let (path, message) = bad_line(line("door", [0.1, 0.5], [0.9, -0.1]));
        assert_eq!(path, "rules.line.door.b");
        assert!(message.contains("door"), "{message}");
        let (path, _) = bad_line(line("door", [f32::NAN, 0.5], [0.9, 0.5]));
        assert_eq!(path, "rules.line.door.a");
        let (path, message) = bad_line(line("door", [0.3, 0.3], [0.3, 0.3]));
        assert_eq!(path, "rules.line.door.b");
        assert!(
            message.contains("door") && message.contains("same"),
            "{message}"
        );
        let mut l = line("door", [0.1, 0.5], [0.9, 0.5]);
        l.labels = vec![String::new()];
        let (path, message) = bad_line(l);
        assert_eq!(path, "rules.line.door.labels");
        assert!(message.contains("door"), "{message}");
    }

    #[test]
    fn bad_zones_are_rejected() {
        let mut z = square_zone("shelf", None);
        z.polygon.truncate(2);
        let (path, message) = bad_zone(z);
        assert_eq!(path, "rules.zone.shelf.polygon");
        assert!(
            message.contains("shelf") && message.contains("3"),
            "{message}"
        );

        let mut z = square_zone("shelf", None);
        z.polygon = vec![[0.1, 0.2], [0.2, 0.4], [0.3, 0.6]];
        let (path, message) = bad_zone(z);
        assert_eq!(path, "rules.zone.shelf.polygon");
        assert!(
            message.contains("shelf") && message.contains("area"),
            "{message}"
        );

        let mut z = square_zone("shelf", None);
        z.polygon = vec![[0.1, 0.2], [0.1, 0.2], [0.1, 0.2], [0.1, 0.2]];
        let (path, _) = bad_zone(z);
        assert_eq!(path, "rules.zone.shelf.polygon");

        let mut z = square_zone("shelf", None);
        z.polygon[2] = [0.6, 1.01];
        let (path, message) = bad_zone(z);
        assert_eq!(path, "rules.zone.shelf.polygon[2]");
        assert!(message.contains("shelf"), "{message}");

        let mut z = square_zone("shelf", None);
        z.polygon[0] = [f32::INFINITY, 0.2];
        let (path, _) = bad_zone(z);
        assert_eq!(path, "rules.zone.shelf.polygon[0]");

        let (path, message) = bad_zone(square_zone("shelf", Some(Duration::ZERO)));
        assert_eq!(path, "rules.zone.shelf.dwell");
        assert!(message.contains("shelf"), "{message}");
    }

    #[test]
    fn bad_config_is_rejected() {
        for h in [0.5, -0.01, f32::NAN, f32::INFINITY] {
            let (path, _) = err_of(Rules::new(
                Vec::new(),
                Vec::new(),
                RulesConfig {
                    line_hysteresis: h,
                    zone_debounce_frames: 2,
                },
            ));
            assert_eq!(path, "rules.line_hysteresis");
        }
        for d in [0, 101] {
            let (path, _) = err_of(Rules::new(
                Vec::new(),
                Vec::new(),
                RulesConfig {
                    line_hysteresis: 0.01,
                    zone_debounce_frames: d,
                },
            ));
            assert_eq!(path, "rules.zone_debounce_frames");
        }
    }
}
