//! Detections: what an [`Inference`](crate::Inference) reports for a frame, and the checks every
//! decoder applies to scores and boxes.

use std::sync::Arc;

use serde::Serialize;

/// One detected object. `bbox` is `[x0, y0, x1, y1]`, normalised to the frame (0..1, x right, y down).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Label from the card's label map.
    pub label: Arc<str>,
    /// Class id in the card's label map.
    pub class_id: u32,
    /// Confidence, 0..1.
    pub score: f32,
    /// `[x0, y0, x1, y1]`, normalised, top-left origin.
    pub bbox: [f32; 4],
}

/// A decoded box before labels and the frame transform are applied (model-input coordinates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Class id.
    pub class_id: u32,
    /// Confidence.
    pub score: f32,
    /// `[x0, y0, x1, y1]`, normalised to the model input.
    pub bbox: [f32; 4],
}

/// A finite score at or above the threshold (NaN never passes).
pub fn passes(score: f32, threshold: f32) -> bool {
    score.is_finite() && score >= threshold
}

/// The score a candidate reports: `None` unless it [`passes`]; an absurd score above 1 (a model
/// that does not output probabilities) is reported as 1, never as 1e30.
pub fn accept_score(score: f32, threshold: f32) -> Option<f32> {
    passes(score, threshold).then_some(score.min(1.0))
}

/// A box `[x0, y0, x1, y1]` clamped to `0..=1`, or `None` when a coordinate is not finite or the
/// clamped box is empty or inverted (`x1 <= x0` or `y1 <= y0`): a detection nobody can use.
pub fn usable_box(bbox: [f32; 4]) -> Option<[f32; 4]> {
    if !bbox.iter().all(|v| v.is_finite()) {
        return None;
    }
    let [x0, y0, x1, y1] = bbox.map(|v| v.clamp(0.0, 1.0));
    (x1 > x0 && y1 > y0).then_some([x0, y0, x1, y1])
}
