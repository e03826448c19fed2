//! Multi-object tracking (ByteTrack-class): detections in, tracks with stable ids out.
//!
//! The rules downstream count line crossings and zone visits per track id, so the two failure
//! modes that inflate counts are what this tracker is built against: **id switches** (one person,
//! two ids) and **unconfirmed tracks** (a detector flicker reported as a person).
//!
//! # Algorithm
//!
//! Every [`Tracker::update`] runs these steps:
//!
//! 1. **Validate detections.** A detection with a non-finite score or box, an empty or inverted
//!    box, or a coordinate far outside the frame (outside `-1..=2`) is ignored, so it can neither
//!    crash the tracker nor poison a filter. At most 1024 detections per frame are used (the
//!    highest-scoring ones) so one corrupt frame cannot make association quadratic in its size.
//! 2. **Predict.** Each track carries a constant-velocity Kalman filter on `(cx, cy, w, h)` and
//!    their velocities, with ByteTrack's noise model (standard deviations proportional to the box
//!    height: 1/20 for positions, 1/160 for velocities). The state is predicted by the frame gap
//!    `frame - last_frame_predicted`, so frame numbers that jump (dropped or skipped frames) are
//!    handled. With this model the 8×8 filter splits exactly into four independent 2×2 filters
//!    (position, velocity) — that is how it is implemented.
//! 3. **First pass.** High detections (`score >= high_threshold`) are associated with *all* live
//!    tracks (tracked, lost and tentative) by IoU of the track's predicted box and the detection,
//!    only within the same `class_id`, accepting pairs with `IoU >= match_iou`. Association is
//!    **greedy by highest IoU** (ties: confirmed tracks first, then older tracks, then detection
//!    order), not Hungarian: for pedestrians the best-overlap pair is almost always right, greedy
//!    never trades a clear match for two mediocre ones, and it costs `O(P log P)` in the number of
//!    overlapping pairs instead of cubic time in the number of tracks.
//! 4. **Second pass** (the ByteTrack idea). Low detections (`low_threshold <= score <
//!    high_threshold`, typically partly occluded people) are associated with the confirmed tracks
//!    still unmatched that were `Tracked` in the previous frame, with the stricter IoU
//!    `max(match_iou, 0.5)` (ByteTrack's second-pass threshold). They keep a track alive through a
//!    partial occlusion but never start or revive one.
//! 5. **Third pass** (recovery). High detections still unmatched are associated with the
//!    confirmed tracks still unmatched (tracked in the last frame or lost) by the IoU of both
//!    boxes grown by `recover_buffer` of their width and height on every side, at `match_iou`:
//!    the buffered IoU of C-BIoU (Yang et al., 2023). A person who moved further than the motion
//!    model predicted, or came out of an occlusion away from the prediction, keeps the id
//!    instead of starting a new track, which would cost a count at a line (a new track's first
//!    position only sets its side). On PETS09-S2L1 it took the tracks from 79 to 41 ids for 19
//!    people (docs/accuracy.md).
//! 6. **Fourth pass** (re-identification), only when the update carries appearances. High
//!    detections still unmatched are given to the lost confirmed tracks whose running
//!    [`Appearance`] is within `reid_gate` of theirs and whose last box is within `reid_reach`
//!    box heights, closest look first: a person who was hidden for longer than motion can bridge
//!    keeps the id.
//!
//! **Appearance.** With [`Tracker::update_with_appearance`] each detection comes with a colour
//! histogram of the torso and the legs ([`crate::appearance`]), and each track keeps a running
//! one (each new look weighs 10 %). In every pass a pair whose appearances are farther apart than
//! `appearance_gate` is refused, and candidate pairs are ranked by `IoU − appearance_weight ·
//! distance` instead of the IoU alone, so when two people's boxes overlap, each keeps their own
//! id. On PETS09-S2L1 (docs/accuracy.md) it cut the identity switches by a quarter and the
//! line-count error by a third. Without appearances (a sensor that sends no pixels, or
//! [`Tracker::update`]) the tracker matches by motion alone.
//!
//! 7. **Lifecycle.** A matched track takes the detection's box and score and corrects its filter.
//!    A tentative track reaching `confirm_hits` hits is confirmed and gets the next id (1, 2, 3, …
//!    in confirmation order, never reused); a tentative track missing one update is deleted
//!    without trace, so flickers never consume ids. A confirmed track that is not matched becomes
//!    `Lost` and keeps being predicted; matched again it resumes as `Tracked` with the same id.
//!    When more than `max_lost_frames` frames have passed since its last hit it is removed and
//!    reported once in [`TrackerOutput::ended`]. (Tentative tracks count misses per update, not
//!    per frame number, so a camera that runs at every third frame still confirms tracks.)
//! 8. **Birth.** Unmatched high detections with `score >= new_track_threshold` start tentative
//!    tracks (with `confirm_hits == 1` they are confirmed at once and observed in that frame).
//!
//! # Keeping lost tracks sane
//!
//! A lost track coasts at full velocity for its first 5 missed frames (a short occlusion behind
//! a lamp post or another pedestrian, ~0.5 s at 10 fps), after which its velocity decays by a
//! factor 0.8 per frame, so its total drift is bounded by about 9 frames' worth of motion however
//! long it stays lost. Size velocities of lost tracks are zeroed (as ByteTrack does). Predicted
//! centres are clamped into the frame, sizes to `[0.0001, 3]`, centre speed to 0.1 and size speed
//! to 0.05 frame per frame; a filter that still becomes non-finite is re-initialised from the last
//! matched box.
//!
//! # Memory
//!
//! At most 1024 tracks are alive at once (tentative + tracked + lost): far more than a camera
//! frame holds people, small enough to bound memory and association time. When a new track needs
//! room, the oldest tentative track is dropped first; failing that the lost track silent the
//! longest is ended (and reported in `ended`); if every track is being tracked, the new detection
//! does not start a track.

use std::sync::Arc;

use crate::appearance::Appearance;
use crate::detection::Detection;
use crate::error::{Error, Result};

/// Most tracks alive at once (tentative, tracked and lost together).
const MAX_TRACKS: usize = 1024;
/// Most detections used per frame (the highest-scoring ones).
const MAX_DETECTIONS: usize = 1024;
/// Upper bound accepted for `max_lost_frames`.
const MAX_LOST_FRAMES_LIMIT: u32 = 10_000;
/// Largest accepted `recover_buffer` (boxes grown to 11 times their size).
const MAX_RECOVER_BUFFER: f32 = 5.0;
/// Minimum IoU of the second (low-score) association pass, as in ByteTrack.
const SECOND_PASS_MIN_IOU: f32 = 0.5;
/// Largest accepted `appearance_weight`.
const MAX_APPEARANCE_WEIGHT: f32 = 10.0;
/// Largest accepted `reid_reach` (box heights).
const MAX_REID_REACH: f32 = 20.0;
/// How much of a track's running appearance each new look keeps.
const APPEARANCE_KEEP: f32 = 0.9;
/// Missed frames during which a lost track keeps its full velocity.
const LOST_COAST_FRAMES: u64 = 5;
/// Per-frame velocity decay of a lost track after the coasting frames.
const LOST_VELOCITY_DECAY: f64 = 0.8;
/// Largest centre speed, in frame widths/heights per frame.
const MAX_CENTER_SPEED: f64 = 0.1;
/// Largest size speed, in frame widths/heights per frame.
const MAX_SIZE_SPEED: f64 = 0.05;
/// Smallest predicted box side.
const MIN_SIZE: f64 = 1e-4;
/// Largest predicted box side.
const MAX_SIZE: f64 = 3.0;
/// Detection coordinates must lie in this range (normalised; boxes may stick out of the frame).
const COORD_MIN: f32 = -1.0;
/// See [`COORD_MIN`].
const COORD_MAX: f32 = 2.0;
/// Longest gap a single prediction step extrapolates over (older tracks have ended anyway).
const MAX_PREDICT_FRAMES: u64 = 20_000;
/// ByteTrack's position noise weight (standard deviation per unit of box height).
const STD_WEIGHT_POSITION: f64 = 1.0 / 20.0;
/// ByteTrack's velocity noise weight (standard deviation per unit of box height).
const STD_WEIGHT_VELOCITY: f64 = 1.0 / 160.0;

/// Tracker settings (all validated by [`Tracker::new`]).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Detections at or above this score take part in the first association pass.
    pub high_threshold: f32,
    /// Detections between this and `high_threshold` take part only in the second pass.
    pub low_threshold: f32,
    /// A new track starts only from an unmatched detection at or above this score.
    pub new_track_threshold: f32,
    /// Minimum IoU between a track's predicted box and a detection to associate them.
    pub match_iou: f32,
    /// Hits (matched frames) before a track is confirmed and reported.
    pub confirm_hits: u32,
    /// Frames a confirmed track is kept without a hit before it ends.
    pub max_lost_frames: u32,
    /// Third association pass: confirmed tracks and high detections left unmatched are matched
    /// by the IoU of their boxes grown by this fraction of their size on every side (0: off).
    pub recover_buffer: f32,
    /// Appearance gate: when the frame's pixels are at hand ([`Tracker::update_with_appearance`]),
    /// a track and a detection whose [`Appearance`]s are farther apart than this (0..=1) are not
    /// matched, however well their boxes overlap (1: off).
    pub appearance_gate: f32,
    /// How much the appearance distance counts against the overlap when ranking candidate
    /// matches (0: overlap alone).
    pub appearance_weight: f32,
    /// Re-identification: a lost track takes a free high detection no other pass matched when
    /// their appearances are closer than this and the detection lies within
    /// `reid_reach` box heights of where the track was lost (0: off).
    pub reid_gate: f32,
    /// See `reid_gate`: how far, in box heights, a lost track may be found again.
    pub reid_reach: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            high_threshold: 0.5,
            low_threshold: 0.1,
            new_track_threshold: 0.6,
            match_iou: 0.2,
            confirm_hits: 2,
            max_lost_frames: 30,
            recover_buffer: 1.0,
            appearance_gate: 0.4,
            appearance_weight: 1.0,
            reid_gate: 0.2,
            reid_reach: 2.0,
        }
    }
}

impl TrackerConfig {
    /// These settings coupled to a detector whose threshold is `model_threshold`, and the score
    /// down to which that detector should report.
    ///
    /// ByteTrack's second association pass lives on low-score detections, so the detector reports
    /// down to `low_threshold` (the returned floor), and the model threshold becomes the tracker's
    /// `high_threshold` (at least): tracks start and are confirmed only from detections the model
    /// threshold accepts, and weaker ones only keep existing tracks alive through partial
    /// occlusion.
    pub fn coupled_to(&self, model_threshold: f32) -> (f32, TrackerConfig) {
        let mut tracker = self.clone();
        tracker.high_threshold = tracker.high_threshold.max(model_threshold);
        tracker.new_track_threshold = tracker.new_track_threshold.max(tracker.high_threshold);
        tracker.low_threshold = tracker.low_threshold.min(tracker.high_threshold);
        (tracker.low_threshold, tracker)
    }

    /// Whether these settings use appearances at all (then a pipeline reads each detection's
    /// colours from the frame and calls [`Tracker::update_with_appearance`]).
    pub fn uses_appearance(&self) -> bool {
        self.appearance_gate < 1.0 || self.appearance_weight > 0.0 || self.reid_gate > 0.0
    }

    /// Check every setting; the error names the first bad one as `tracker.<field>`.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &str, message: String) -> Error {
            Error::InvalidOption {
                name: format!("tracker.{field}"),
                message,
            }
        }
        for (field, value) in [
            ("high_threshold", self.high_threshold),
            ("low_threshold", self.low_threshold),
            ("new_track_threshold", self.new_track_threshold),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(bad(
                    field,
                    format!("must be a score between 0 and 1, got {value}"),
                ));
            }
        }
        if self.low_threshold > self.high_threshold {
            return Err(bad(
                "low_threshold",
                format!(
                    "must not exceed tracker.high_threshold ({}), got {}",
                    self.high_threshold, self.low_threshold
                ),
            ));
        }
        if self.match_iou.is_nan() || self.match_iou <= 0.0 || self.match_iou > 1.0 {
            return Err(bad(
                "match_iou",
                format!(
                    "must be an IoU in (0, 1] (above 0, at most 1), got {}",
                    self.match_iou
                ),
            ));
        }
        if self.confirm_hits < 1 {
            return Err(bad("confirm_hits", "must be at least 1, got 0".to_string()));
        }
        if self.max_lost_frames > MAX_LOST_FRAMES_LIMIT {
            return Err(bad(
                "max_lost_frames",
                format!(
                    "must be at most {MAX_LOST_FRAMES_LIMIT}, got {}",
                    self.max_lost_frames
                ),
            ));
        }
        for (field, value, max, what) in [
            (
                "appearance_gate",
                self.appearance_gate,
                1.0,
                "an appearance distance, 1 is off",
            ),
            (
                "appearance_weight",
                self.appearance_weight,
                MAX_APPEARANCE_WEIGHT,
                "0 is off",
            ),
            (
                "reid_gate",
                self.reid_gate,
                1.0,
                "an appearance distance, 0 is off",
            ),
            ("reid_reach", self.reid_reach, MAX_REID_REACH, "box heights"),
        ] {
            if !(value.is_finite() && (0.0..=max).contains(&value)) {
                return Err(bad(
                    field,
                    format!("must be between 0 and {max} ({what}), got {value}"),
                ));
            }
        }
        let b = self.recover_buffer;
        if !(b.is_finite() && (0.0..=MAX_RECOVER_BUFFER).contains(&b)) {
            return Err(bad(
                "recover_buffer",
                format!(
                    "must be between 0 (off) and {MAX_RECOVER_BUFFER} (a fraction of the box size), got {b}"
                ),
            ));
        }
        Ok(())
    }
}

/// Lifecycle of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackState {
    /// Seen fewer than `confirm_hits` times: never reported.
    Tentative,
    /// Confirmed and matched in the current frame.
    Tracked,
    /// Confirmed, not matched in the current frame, still kept.
    Lost,
}

/// A track as reported to the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Stable id, unique for the tracker's lifetime, assigned at confirmation (1, 2, 3, … in
    /// confirmation order, so unconfirmed tracks never consume ids).
    pub id: u64,
    /// Label of the detections (fixed at creation).
    pub label: Arc<str>,
    /// Class id.
    pub class_id: u32,
    /// Score of the last matched detection.
    pub score: f32,
    /// Last matched detection's box `[x0, y0, x1, y1]`, normalised.
    pub bbox: [f32; 4],
    /// State after this frame.
    pub state: TrackState,
    /// Matched frames so far.
    pub hits: u32,
    /// Frame number of the first hit.
    pub first_frame: u64,
    /// Frame number of the last hit.
    pub last_frame: u64,
}

/// What one [`Tracker::update`] reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackerOutput {
    /// Confirmed tracks matched to a detection in this frame (state `Tracked`).
    pub observed: Vec<Track>,
    /// Confirmed tracks that ended in this frame (lost for more than `max_lost_frames`).
    pub ended: Vec<Track>,
}

// ---------------------------------------------------------------------------------------------
// Motion model
// ---------------------------------------------------------------------------------------------

/// One coordinate of the constant-velocity filter: state `(x, v)` and its 2×2 covariance.
#[derive(Debug, Clone, Copy)]
struct Axis {
    x: f64,
    v: f64,
    pxx: f64,
    pxv: f64,
    pvv: f64,
}

impl Axis {
    fn new(x: f64, std_x: f64, std_v: f64) -> Self {
        Axis {
            x,
            v: 0.0,
            pxx: std_x * std_x,
            pxv: 0.0,
            pvv: std_v * std_v,
        }
    }

    /// `state = F state`, `P = F P Fᵀ + Q` with `F = [[1, a], [0, d]]`, `Q = diag(qx, qv)`.
    fn predict(&mut self, a: f64, d: f64, qx: f64, qv: f64) {
        self.x += a * self.v;
        self.v *= d;
        let pxx = self.pxx + 2.0 * a * self.pxv + a * a * self.pvv + qx;
        let pxv = d * (self.pxv + a * self.pvv);
        let pvv = d * d * self.pvv + qv;
        self.pxx = pxx;
        self.pxv = pxv;
        self.pvv = pvv;
    }

    /// Measurement `z` of `x` with variance `r`.
    fn correct(&mut self, z: f64, r: f64) {
        let s = self.pxx + r;
        if s.is_nan() || s <= 0.0 {
            return;
        }
        let kx = self.pxx / s;
        let kv = self.pxv / s;
        let innovation = z - self.x;
        self.x += kx * innovation;
        self.v += kv * innovation;
        let pxx = (1.0 - kx) * self.pxx;
        let pxv = (1.0 - kx) * self.pxv;
        let pvv = self.pvv - kv * self.pxv;
        self.pxx = pxx.max(0.0);
        self.pxv = pxv;
        self.pvv = pvv.max(0.0);
    }

    fn clamp(&mut self, lo: f64, hi: f64, max_speed: f64) {
        self.x = self.x.clamp(lo, hi);
        self.v = self.v.clamp(-max_speed, max_speed);
    }

    fn is_finite(&self) -> bool {
        self.x.is_finite()
            && self.v.is_finite()
            && self.pxx.is_finite()
            && self.pxv.is_finite()
            && self.pvv.is_finite()
    }
}

/// Constant-velocity Kalman filter on `(cx, cy, w, h)`; the four axes are independent.
#[derive(Debug, Clone, Copy)]
struct Kalman {
    cx: Axis,
    cy: Axis,
    w: Axis,
    h: Axis,
}

/// `[x0, y0, x1, y1]` → `(cx, cy, w, h)` in f64.
fn to_cxcywh(bbox: [f32; 4]) -> [f64; 4] {
    let [x0, y0, x1, y1] = bbox.map(f64::from);
    [(x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0]
}

impl Kalman {
    fn new(bbox: [f32; 4]) -> Self {
        let [cx, cy, w, h] = to_cxcywh(bbox);
        let scale = h.max(MIN_SIZE);
        let std_x = 2.0 * STD_WEIGHT_POSITION * scale;
        let std_v = 10.0 * STD_WEIGHT_VELOCITY * scale;
        Kalman {
            cx: Axis::new(cx, std_x, std_v),
            cy: Axis::new(cy, std_x, std_v),
            w: Axis::new(w, std_x, std_v),
            h: Axis::new(h, std_x, std_v),
        }
    }

    /// Predict `dt` frames ahead. For a lost track, `missed_before` is the number of frames
    /// already missed since its last hit: the first [`LOST_COAST_FRAMES`] missed frames keep the
    /// full velocity, later ones decay it by [`LOST_VELOCITY_DECAY`] per frame (closed form, so
    /// the cost does not depend on `dt`), and sizes stop changing.
    fn predict(&mut self, dt: u64, lost: Option<u64>) {
        if dt == 0 {
            return;
        }
        let dt = dt.min(MAX_PREDICT_FRAMES);
        let dtf = dt as f64;
        let scale = self.h.x.max(MIN_SIZE);
        let qx = (STD_WEIGHT_POSITION * scale).powi(2) * dtf;
        let qv = (STD_WEIGHT_VELOCITY * scale).powi(2) * dtf;
        match lost {
            None => {
                for axis in [&mut self.cx, &mut self.cy, &mut self.w, &mut self.h] {
                    axis.predict(dtf, 1.0, qx, qv);
                }
            }
            Some(missed_before) => {
                let coast = LOST_COAST_FRAMES.saturating_sub(missed_before).min(dt);
                let decayed = i32::try_from(dt - coast).unwrap_or(i32::MAX);
                let d = LOST_VELOCITY_DECAY.powi(decayed);
                // Σ_{k=1..decayed} decay^k: the distance covered while the velocity decays.
                let a =
                    coast as f64 + LOST_VELOCITY_DECAY * (1.0 - d) / (1.0 - LOST_VELOCITY_DECAY);
                self.cx.predict(a, d, qx, qv);
                self.cy.predict(a, d, qx, qv);
                for axis in [&mut self.w, &mut self.h] {
                    axis.v = 0.0;
                    axis.predict(0.0, 0.0, qx, qv);
                }
            }
        }
        self.sanitize();
    }

    fn correct(&mut self, bbox: [f32; 4]) {
        let [cx, cy, w, h] = to_cxcywh(bbox);
        let r = (STD_WEIGHT_POSITION * h.max(MIN_SIZE)).powi(2);
        self.cx.correct(cx, r);
        self.cy.correct(cy, r);
        self.w.correct(w, r);
        self.h.correct(h, r);
        self.sanitize();
    }

    fn sanitize(&mut self) {
        self.cx.clamp(0.0, 1.0, MAX_CENTER_SPEED);
        self.cy.clamp(0.0, 1.0, MAX_CENTER_SPEED);
        self.w.clamp(MIN_SIZE, MAX_SIZE, MAX_SIZE_SPEED);
        self.h.clamp(MIN_SIZE, MAX_SIZE, MAX_SIZE_SPEED);
    }

    fn is_finite(&self) -> bool {
        self.cx.is_finite() && self.cy.is_finite() && self.w.is_finite() && self.h.is_finite()
    }

    /// The filter's box `[x0, y0, x1, y1]`.
    fn bbox(&self) -> [f32; 4] {
        let (cx, cy) = (self.cx.x, self.cy.x);
        let w = self.w.x.max(MIN_SIZE) / 2.0;
        let h = self.h.x.max(MIN_SIZE) / 2.0;
        [cx - w, cy - h, cx + w, cy + h].map(|c| c as f32)
    }
}

// ---------------------------------------------------------------------------------------------
// Tracks
// ---------------------------------------------------------------------------------------------

/// A live track (any state).
#[derive(Debug, Clone)]
struct Live {
    /// Creation order (tie-break and eviction order).
    seq: u64,
    /// Assigned at confirmation.
    id: Option<u64>,
    label: Arc<str>,
    class_id: u32,
    score: f32,
    bbox: [f32; 4],
    state: TrackState,
    hits: u32,
    first_frame: u64,
    last_frame: u64,
    /// Motion model; its state refers to frame `kf_frame`.
    kf: Kalman,
    kf_frame: u64,
    /// Matched in the current update.
    matched: bool,
    /// Running appearance (when the updates carry appearances).
    appearance: Option<Appearance>,
}

impl Live {
    fn new(seq: u64, frame: u64, det: &Detection) -> Self {
        Live {
            seq,
            id: None,
            label: det.label.clone(),
            class_id: det.class_id,
            score: det.score,
            bbox: det.bbox,
            state: TrackState::Tentative,
            hits: 1,
            first_frame: frame,
            last_frame: frame,
            kf: Kalman::new(det.bbox),
            kf_frame: frame,
            matched: true,
            appearance: None,
        }
    }

    fn predict_to(&mut self, frame: u64) {
        let dt = frame.saturating_sub(self.kf_frame);
        let lost = match self.state {
            TrackState::Lost => Some(self.kf_frame.saturating_sub(self.last_frame)),
            TrackState::Tracked | TrackState::Tentative => None,
        };
        self.kf.predict(dt, lost);
        if !self.kf.is_finite() {
            self.kf = Kalman::new(self.bbox);
        }
        self.kf_frame = self.kf_frame.max(frame);
    }

    fn see(&mut self, app: Option<&Appearance>) {
        if let Some(a) = app {
            match &mut self.appearance {
                Some(mine) => mine.blend(a, APPEARANCE_KEEP),
                None => self.appearance = Some(*a),
            }
        }
    }

    fn hit(&mut self, frame: u64, det: &Detection) {
        self.kf.correct(det.bbox);
        if !self.kf.is_finite() {
            self.kf = Kalman::new(det.bbox);
        }
        self.score = det.score;
        self.bbox = det.bbox;
        self.hits = self.hits.saturating_add(1);
        self.last_frame = frame;
        self.matched = true;
        if self.state == TrackState::Lost {
            self.state = TrackState::Tracked;
        }
    }

    fn is_confirmed(&self) -> bool {
        self.id.is_some()
    }

    /// The public view; `None` for a tentative track.
    fn report(&self) -> Option<Track> {
        Some(Track {
            id: self.id?,
            label: self.label.clone(),
            class_id: self.class_id,
            score: self.score,
            bbox: self.bbox,
            state: self.state,
            hits: self.hits,
            first_frame: self.first_frame,
            last_frame: self.last_frame,
        })
    }
}

/// IoU of two `[x0, y0, x1, y1]` boxes (0 for empty or degenerate boxes).
fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let [ax0, ay0, ax1, ay1] = a;
    let [bx0, by0, bx1, by1] = b;
    let iw = (ax1.min(bx1) - ax0.max(bx0)).max(0.0);
    let ih = (ay1.min(by1) - ay0.max(by0)).max(0.0);
    let inter = iw * ih;
    let area_a = (ax1 - ax0).max(0.0) * (ay1 - ay0).max(0.0);
    let area_b = (bx1 - bx0).max(0.0) * (by1 - by0).max(0.0);
    let union = area_a + area_b - inter;
    if union > 0.0 && inter.is_finite() {
        (inter / union).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A detection the tracker may use: finite score, finite non-empty box near the frame.
fn is_usable(det: &Detection) -> bool {
    let [x0, y0, x1, y1] = det.bbox;
    det.score.is_finite()
        && det
            .bbox
            .iter()
            .all(|c| c.is_finite() && (COORD_MIN..=COORD_MAX).contains(c))
        && x1 > x0
        && y1 > y0
}

/// Greedy association by highest IoU: among the candidate tracks and detections, repeatedly take
/// the pair with the highest IoU (at least `min_iou`, same class) whose track and detection are
/// both still free. Ties go to confirmed tracks, then older tracks, then earlier detections.
/// Returns `(track index, detection index)` pairs.
/// The appearances of one update's detections (by detection index), and how the tracker uses
/// them.
#[derive(Clone, Copy)]
struct Looks<'a> {
    dets: &'a [Option<Appearance>],
    gate: f32,
    weight: f32,
}

impl Looks<'_> {
    /// The rank of a pair that overlaps by `overlap`, or `None` when the appearance gate refuses
    /// it.
    fn rank(&self, track: &Live, di: usize, overlap: f32) -> Option<f32> {
        let det = self.dets.get(di).and_then(Option::as_ref);
        match (track.appearance.as_ref(), det) {
            (Some(t), Some(d)) => {
                let dist = t.distance(d);
                if dist > self.gate {
                    None
                } else {
                    Some(overlap - self.weight * dist)
                }
            }
            _ => Some(overlap),
        }
    }
}

fn greedy_match(
    tracks: &[Live],
    track_candidates: &[usize],
    predicted: &[[f32; 4]],
    detections: &[Detection],
    det_candidates: &[usize],
    min_iou: f32,
    looks: Looks<'_>,
) -> Vec<(usize, usize)> {
    let mut pairs: Vec<(f32, bool, u64, usize, usize)> = Vec::new();
    for &ti in track_candidates {
        let (Some(track), Some(&pred)) = (tracks.get(ti), predicted.get(ti)) else {
            continue;
        };
        for &di in det_candidates {
            let Some(det) = detections.get(di) else {
                continue;
            };
            if det.class_id != track.class_id {
                continue;
            }
            let overlap = iou(pred, det.bbox);
            if overlap < min_iou {
                continue;
            }
            if let Some(rank) = looks.rank(track, di, overlap) {
                pairs.push((rank, track.is_confirmed(), track.seq, ti, di));
            }
        }
    }
    pairs.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(a.2.cmp(&b.2))
            .then(a.4.cmp(&b.4))
    });
    take_free(
        pairs.into_iter().map(|(_, _, _, ti, di)| (ti, di)),
        tracks.len(),
        detections.len(),
    )
}

/// Walk `(track index, detection index)` pairs in order of preference and keep each pair whose
/// track and detection are both still free.
fn take_free(
    pairs: impl Iterator<Item = (usize, usize)>,
    n_tracks: usize,
    n_detections: usize,
) -> Vec<(usize, usize)> {
    let mut track_used = vec![false; n_tracks];
    let mut det_used = vec![false; n_detections];
    let mut matches = Vec::new();
    for (ti, di) in pairs {
        let (Some(t_used), Some(d_used)) = (track_used.get_mut(ti), det_used.get_mut(di)) else {
            continue;
        };
        if *t_used || *d_used {
            continue;
        }
        *t_used = true;
        *d_used = true;
        matches.push((ti, di));
    }
    matches
}

// ---------------------------------------------------------------------------------------------
// Tracker
// ---------------------------------------------------------------------------------------------

/// The tracker.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    /// Live tracks in creation order.
    tracks: Vec<Live>,
    /// Next id to assign at confirmation (ids start at 1).
    next_id: u64,
    /// Next creation sequence number.
    next_seq: u64,
}

impl Tracker {
    /// A tracker; errors name the bad setting.
    pub fn new(cfg: TrackerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Tracker {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
            next_seq: 0,
        })
    }

    /// The settings this tracker runs with.
    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Number of live tracks, tentative ones included.
    pub fn live_tracks(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no track (of any state) is alive.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Feed one frame's detections (frame numbers increase by at least 1 per call).
    ///
    /// A frame number that does not increase is tolerated (nothing is predicted for it).
    pub fn update(&mut self, frame: u64, detections: &[Detection]) -> TrackerOutput {
        self.update_with_appearance(frame, detections, &[])
    }

    /// [`update`](Self::update) with what each detection looks like (`appearances[i]` belongs
    /// to `detections[i]`; see [`crate::appearance::describe`]): the tracker then refuses
    /// matches between people who look different and finds lost people again by their looks
    /// (`appearance_gate`, `appearance_weight`, `reid_gate`). Missing entries are matched by
    /// motion alone.
    pub fn update_with_appearance(
        &mut self,
        frame: u64,
        detections: &[Detection],
        appearances: &[Option<Appearance>],
    ) -> TrackerOutput {
        let looks = Looks {
            dets: appearances,
            gate: self.cfg.appearance_gate,
            weight: self.cfg.appearance_weight,
        };
        let mut out = TrackerOutput::default();
        let max_lost = u64::from(self.cfg.max_lost_frames);

        self.end_overdue(frame, max_lost, &mut out.ended);
        let predicted = self.predict_all(frame);
        let (high, low) = self.split_detections(detections);
        let (matches, det_used) = self.associate(&predicted, detections, &high, &low, looks);
        // Hits only after both passes: the second pass picks tracks by their state in the
        // previous frame, which a first-pass hit would change (a lost track becomes tracked).
        for (ti, di) in matches {
            if let (Some(track), Some(det)) = (self.tracks.get_mut(ti), detections.get(di)) {
                track.hit(frame, det);
                track.see(appearances.get(di).and_then(Option::as_ref));
            }
        }
        self.age(frame, max_lost, &mut out.ended);
        self.births(
            frame,
            detections,
            appearances,
            &high,
            &det_used,
            &mut out.ended,
        );

        out.observed = self
            .tracks
            .iter()
            .filter(|t| t.matched)
            .filter_map(Live::report)
            .collect();
        out.observed.sort_by_key(|t| t.id);
        out.ended.sort_by_key(|t| t.id);
        out
    }

    /// End the confirmed tracks whose silence already exceeded `max_lost_frames` before this
    /// frame (a frame gap), before they could match anything.
    fn end_overdue(&mut self, frame: u64, max_lost: u64, ended: &mut Vec<Track>) {
        let live = std::mem::take(&mut self.tracks);
        for track in live {
            let missed = frame.saturating_sub(track.last_frame);
            if track.is_confirmed() && missed > max_lost.saturating_add(1) {
                let mut overdue = track;
                overdue.state = TrackState::Lost;
                ended.extend(overdue.report());
            } else {
                self.tracks.push(track);
            }
        }
    }

    /// Predict every live track to `frame` and clear its match; returns the predicted boxes, by
    /// track index.
    fn predict_all(&mut self, frame: u64) -> Vec<[f32; 4]> {
        for track in &mut self.tracks {
            track.matched = false;
            track.predict_to(frame);
        }
        self.tracks.iter().map(|t| t.kf.bbox()).collect()
    }

    /// The usable detections, best first (at most [`MAX_DETECTIONS`]), split into high and low
    /// by score; those below `low_threshold` are left out.
    fn split_detections(&self, detections: &[Detection]) -> (Vec<usize>, Vec<usize>) {
        let mut usable: Vec<usize> = (0..detections.len())
            .filter(|&i| detections.get(i).is_some_and(is_usable))
            .collect();
        let score_of = |i: usize| detections.get(i).map_or(f32::NEG_INFINITY, |d| d.score);
        usable.sort_by(|&a, &b| score_of(b).total_cmp(&score_of(a)).then(a.cmp(&b)));
        usable.truncate(MAX_DETECTIONS);
        usable
            .into_iter()
            .filter(|&i| score_of(i) >= self.cfg.low_threshold)
            .partition(|&i| score_of(i) >= self.cfg.high_threshold)
    }

    /// Both association passes. Returns the `(track index, detection index)` matches, first
    /// pass then second, and which detections the first pass used (the second pass only uses
    /// low detections, which never start tracks).
    fn associate(
        &self,
        predicted: &[[f32; 4]],
        detections: &[Detection],
        high: &[usize],
        low: &[usize],
        looks: Looks<'_>,
    ) -> (Vec<(usize, usize)>, Vec<bool>) {
        // First pass: high detections vs every live track.
        let all: Vec<usize> = (0..self.tracks.len()).collect();
        let first = greedy_match(
            &self.tracks,
            &all,
            predicted,
            detections,
            high,
            self.cfg.match_iou,
            looks,
        );
        let mut det_used = vec![false; detections.len()];
        let mut track_used = vec![false; self.tracks.len()];
        for &(ti, di) in &first {
            if let Some(slot) = det_used.get_mut(di) {
                *slot = true;
            }
            if let Some(slot) = track_used.get_mut(ti) {
                *slot = true;
            }
        }

        // Second pass: low detections vs unmatched tracks that were tracked in the last frame.
        let was_tracked: Vec<usize> = self
            .tracks
            .iter()
            .enumerate()
            .filter(|&(i, t)| {
                t.state == TrackState::Tracked && !track_used.get(i).copied().unwrap_or(true)
            })
            .map(|(i, _)| i)
            .collect();
        let second = greedy_match(
            &self.tracks,
            &was_tracked,
            predicted,
            detections,
            low,
            self.cfg.match_iou.max(SECOND_PASS_MIN_IOU),
            looks,
        );
        for &(ti, _) in &second {
            if let Some(slot) = track_used.get_mut(ti) {
                *slot = true;
            }
        }
        let third = self.recover(predicted, detections, high, &det_used, &track_used, looks);
        for &(ti, di) in &third {
            if let Some(slot) = det_used.get_mut(di) {
                *slot = true;
            }
            if let Some(slot) = track_used.get_mut(ti) {
                *slot = true;
            }
        }
        let fourth = self.reidentify(detections, high, &det_used, &track_used, looks);
        for &(_, di) in &fourth {
            if let Some(slot) = det_used.get_mut(di) {
                *slot = true;
            }
        }
        (
            first
                .into_iter()
                .chain(second)
                .chain(third)
                .chain(fourth)
                .collect(),
            det_used,
        )
    }

    /// Third pass: high detections still free vs confirmed tracks still unmatched, by the IoU of
    /// boxes grown by `recover_buffer` of their width and height on every side (the buffered
    /// IoU of C-BIoU): a person who moved faster or further than the motion model expected,
    /// or came out of an occlusion away from the prediction, keeps the id instead of starting
    /// a new track.
    fn recover(
        &self,
        predicted: &[[f32; 4]],
        detections: &[Detection],
        high: &[usize],
        det_used: &[bool],
        track_used: &[bool],
        looks: Looks<'_>,
    ) -> Vec<(usize, usize)> {
        let b = self.cfg.recover_buffer;
        if b <= 0.0 {
            return Vec::new();
        }
        let grow = |[x0, y0, x1, y1]: [f32; 4]| {
            let (dx, dy) = ((x1 - x0) * b, (y1 - y0) * b);
            [x0 - dx, y0 - dy, x1 + dx, y1 + dy]
        };
        let tracks: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| {
                !track_used.get(i).copied().unwrap_or(true)
                    && self.tracks.get(i).is_some_and(Live::is_confirmed)
            })
            .collect();
        let dets: Vec<usize> = high
            .iter()
            .copied()
            .filter(|&i| !det_used.get(i).copied().unwrap_or(true))
            .collect();
        if tracks.is_empty() || dets.is_empty() {
            return Vec::new();
        }
        let grown_pred: Vec<[f32; 4]> = predicted.iter().map(|&p| grow(p)).collect();
        let grown_dets: Vec<Detection> = detections
            .iter()
            .map(|d| Detection {
                bbox: grow(d.bbox),
                ..d.clone()
            })
            .collect();
        greedy_match(
            &self.tracks,
            &tracks,
            &grown_pred,
            &grown_dets,
            &dets,
            self.cfg.match_iou,
            looks,
        )
    }

    /// Fourth pass: free high detections vs lost confirmed tracks, by appearance alone, within
    /// `reid_reach` box heights of the track's last box (closest look first).
    fn reidentify(
        &self,
        detections: &[Detection],
        high: &[usize],
        det_used: &[bool],
        track_used: &[bool],
        looks: Looks<'_>,
    ) -> Vec<(usize, usize)> {
        let gate = self.cfg.reid_gate;
        if gate <= 0.0 {
            return Vec::new();
        }
        let mut pairs: Vec<(f32, u64, usize, usize)> = Vec::new();
        for (ti, track) in self.tracks.iter().enumerate() {
            if track_used.get(ti).copied().unwrap_or(true)
                || track.state != TrackState::Lost
                || !track.is_confirmed()
            {
                continue;
            }
            let Some(mine) = track.appearance.as_ref() else {
                continue;
            };
            let [x0, y0, x1, y1] = track.bbox;
            let reach = self.cfg.reid_reach * (y1 - y0);
            let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            for &di in high {
                if det_used.get(di).copied().unwrap_or(true) {
                    continue;
                }
                let (Some(det), Some(Some(look))) = (detections.get(di), looks.dets.get(di)) else {
                    continue;
                };
                if det.class_id != track.class_id {
                    continue;
                }
                let [a0, b0, a1, b1] = det.bbox;
                let (dx, dy) = ((a0 + a1) / 2.0 - cx, (b0 + b1) / 2.0 - cy);
                if dx.hypot(dy) > reach {
                    continue;
                }
                let dist = mine.distance(look);
                if dist <= gate {
                    pairs.push((dist, track.seq, ti, di));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.3.cmp(&b.3)));
        take_free(
            pairs.into_iter().map(|(_, _, ti, di)| (ti, di)),
            self.tracks.len(),
            detections.len(),
        )
    }

    /// Confirm a tentative track that has reached `confirm_hits`: it gets the next id.
    fn confirm_if_due(&mut self, track: &mut Live) {
        if track.id.is_none() && track.hits >= self.cfg.confirm_hits {
            track.id = Some(self.next_id);
            self.next_id = self.next_id.saturating_add(1);
            track.state = TrackState::Tracked;
        }
    }

    /// Lifecycle after matching: confirm (in creation order), drop missed tentatives, lose and
    /// end tracks.
    fn age(&mut self, frame: u64, max_lost: u64, ended: &mut Vec<Track>) {
        let live = std::mem::take(&mut self.tracks);
        for mut track in live {
            if track.matched {
                self.confirm_if_due(&mut track);
                self.tracks.push(track);
                continue;
            }
            if !track.is_confirmed() {
                continue; // a tentative track that missed an update is forgotten
            }
            track.state = TrackState::Lost;
            if frame.saturating_sub(track.last_frame) > max_lost {
                ended.extend(track.report());
            } else {
                self.tracks.push(track);
            }
        }
    }

    /// Births from the high detections no track took (best first), above
    /// `new_track_threshold`, while there is room.
    fn births(
        &mut self,
        frame: u64,
        detections: &[Detection],
        appearances: &[Option<Appearance>],
        high: &[usize],
        det_used: &[bool],
        ended: &mut Vec<Track>,
    ) {
        let start_threshold = self.cfg.new_track_threshold;
        for &di in high {
            if det_used.get(di).copied().unwrap_or(true) {
                continue;
            }
            let Some(det) = detections.get(di) else {
                continue;
            };
            if det.score < start_threshold {
                continue;
            }
            if self.tracks.len() >= MAX_TRACKS && !self.make_room(ended) {
                break;
            }
            let mut track = Live::new(self.next_seq, frame, det);
            track.see(appearances.get(di).and_then(Option::as_ref));
            self.next_seq = self.next_seq.saturating_add(1);
            self.confirm_if_due(&mut track);
            self.tracks.push(track);
        }
    }

    /// Free one slot: drop the oldest tentative track, else end the lost track silent the
    /// longest. `false` if every live track is being tracked.
    fn make_room(&mut self, ended: &mut Vec<Track>) -> bool {
        let tentative = self
            .tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TrackState::Tentative)
            .min_by_key(|(_, t)| t.seq)
            .map(|(i, _)| i);
        if let Some(i) = tentative {
            self.tracks.remove(i);
            return true;
        }
        let lost = self
            .tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TrackState::Lost)
            .min_by_key(|(_, t)| (t.last_frame, t.seq))
            .map(|(i, _)| i);
        if let Some(i) = lost {
            let track = self.tracks.remove(i);
            ended.extend(track.report());
            return true;
        }
        false
    }

    /// End every confirmed track (end of the run); they are returned as ended.
    ///
    /// Tentative tracks are dropped; the tracker is empty afterwards (ids keep counting up).
    pub fn finish(&mut self) -> Vec<Track> {
        let mut ended: Vec<Track> = std::mem::take(&mut self.tracks)
            .iter()
            .filter_map(Live::report)
            .collect();
        ended.sort_by_key(|t| t.id);
        ended
    }
}

#[cfg(test)]
mod tests;
