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
//! * **Debounce.** A track commits to the side opposite its committed side only after
//!   [`RulesConfig::line_debounce_frames`] consecutive observations there (beyond the dead band;
//!   an observation back on the committed side starts the count again). A box whose bottom edge
//!   jumps for a frame (a person half hidden by another, a detection of the upper body only)
//!   therefore does not count twice; the crossing is reported in the frame that completes the
//!   count.
//! * **Crossing.** When a track commits to the side opposite its committed side, the line is
//!   crossed if the movement from its *previous committed position* (the last position where it
//!   was outside the dead band, on the old side) to its *first position on the new side*
//!   intersects the segment `a`–`b` (the point where that movement meets the line lies between
//!   `a` and `b`, ends included). Either way the track is now committed to the new side, so a crossing of the
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

/// Smallest accepted zone area (normalised units; 1e-6 is one pixel of a 1000 × 1000 image):
/// polygons below it are degenerate (collinear or repeated vertices) or too small to hold anyone.
/// The config file and the rules a cloud hub sends are held to the same bound.
pub const MIN_ZONE_AREA: f64 = 1e-6;

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
    /// Consecutive observations on the new side of a line (beyond the hysteresis) before a
    /// crossing counts; 1 counts at the first. Default 2: a one-frame jump of a box's bottom edge
    /// across a line is not a crossing.
    pub line_debounce_frames: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            line_hysteresis: 0.01,
            zone_debounce_frames: 2,
            line_debounce_frames: 2,
        }
    }
}

/// The rule engine.
#[derive(Debug)]
pub struct Rules {
    lines: Vec<LineEngine>,
    zones: Vec<ZoneEngine>,
    hysteresis: f64,
    line_debounce: u32,
    debounce: u32,
    cap: usize,
}

impl Rules {
    /// Build the engine; errors name the rule and what is wrong.
    ///
    /// Checks: `line_hysteresis` in `0..0.5`, `zone_debounce_frames` and `line_debounce_frames`
    /// in `1..=100`; names match
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
            line_debounce: cfg.line_debounce_frames,
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
                (self.hysteresis, self.line_debounce),
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
    /// Observations on the other side not yet debounced: the first of them and how many.
    pending: Option<(Point, u32)>,
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
        (hysteresis, debounce): (f64, u32),
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
                pending: None,
                last_seen: frame,
            });
            state.last_seen = frame;
            let dist = self.seg.distance(p);
            if !dist.is_finite() || dist.abs() <= hysteresis {
                continue;
            }
            let positive = dist > 0.0;
            let Some((was_positive, from)) = state.committed else {
                state.committed = Some((positive, p));
                continue;
            };
            if was_positive == positive {
                state.committed = Some((positive, p));
                state.pending = None;
                continue;
            }
            let (first, seen) = state
                .pending
                .map_or((p, 1), |(q, n)| (q, n.saturating_add(1)));
            if seen < debounce {
                state.pending = Some((first, seen));
                continue;
            }
            if self.seg.within_extent(from, first) {
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
            state.pending = None;
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

/// A polygon's area (absolute, shoelace formula), in normalised units: compare with
/// [`MIN_ZONE_AREA`].
pub fn polygon_area(polygon: &[[f64; 2]]) -> f64 {
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
    let d = cfg.line_debounce_frames;
    if !(1..=MAX_DEBOUNCE_FRAMES).contains(&d) {
        return Err(invalid(
            "rules.line_debounce_frames".to_owned(),
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
    if polygon_area(&points) < MIN_ZONE_AREA {
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
mod tests;
