//! Multi-object tracking (ByteTrack-class): detections in, tracks with stable ids out.
//!
//! SKELETON — the public types below are the contract with `rules` and `pipeline`; keep them.

use std::sync::Arc;

use crate::error::Result;
use crate::infer::Detection;

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
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            high_threshold: 0.5,
            low_threshold: 0.1,
            new_track_threshold: 0.6,
            match_iou: 0.2,
            confirm_hits: 3,
            max_lost_frames: 30,
        }
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

/// The tracker.
#[derive(Debug)]
pub struct Tracker {
    #[allow(dead_code)]
    cfg: TrackerConfig,
}

impl Tracker {
    /// A tracker; errors name the bad setting.
    pub fn new(cfg: TrackerConfig) -> Result<Self> {
        Ok(Tracker { cfg })
    }

    /// Feed one frame's detections (frame numbers increase by at least 1 per call).
    pub fn update(&mut self, _frame: u64, _detections: &[Detection]) -> TrackerOutput {
        TrackerOutput::default()
    }

    /// End every confirmed track (end of the run); they are returned as ended.
    pub fn finish(&mut self) -> Vec<Track> {
        Vec::new()
    }
}
