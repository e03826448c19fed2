//! Detections from frames: the [`Inference`] trait.
//!
//! The SDK's ONNX Runtime detector implements it, and so does anything else that turns a frame
//! into detections: a sensor that runs the network on the chip (its output tensors parsed on the
//! host), a vendor accelerator, a remote model, a test double.

use crate::detection::Detection;
use crate::error::Result;
use crate::frame::RgbView;

/// Anything that turns a frame into detections.
///
/// The pipeline calls [`Inference::infer`] once per frame on its inference thread. Boxes are
/// normalised to the frame (`[x0, y0, x1, y1]`, 0..1, x right, y down), and a detection's `label`
/// is what rules and events report.
///
/// # Thresholds
/// [`Inference::score_threshold`] is the score at which a detection counts: tracks start and are
/// confirmed only from detections at or above it. Before a run, the pipeline calls
/// [`Inference::set_report_floor`] with a lower score: detections between the two keep existing
/// tracks alive through partial occlusion (ByteTrack's second pass). An implementation that cannot
/// report weaker detections may ignore it; tracking then loses only that second pass.
pub trait Inference: Send {
    /// The detections in `frame`.
    ///
    /// # Errors
    /// A failed frame is counted and skipped by the pipeline, which goes on with the next one;
    /// return [`crate::Error::Component`] with [`crate::Fault::Model`] or
    /// [`crate::Fault::Environment`] to say who has to act.
    fn infer(&mut self, frame: RgbView<'_>) -> Result<Vec<Detection>>;

    /// The score at or above which a detection counts (0..1).
    fn score_threshold(&self) -> f32;

    /// Report detections down to `floor` (at most [`Inference::score_threshold`]) from now on.
    /// The default ignores it.
    fn set_report_floor(&mut self, floor: f32) {
        let _ = floor;
    }

    /// What it is, for messages and logs.
    fn describe(&self) -> String {
        "inference".to_owned()
    }
}

impl<T: Inference + ?Sized> Inference for Box<T> {
    fn infer(&mut self, frame: RgbView<'_>) -> Result<Vec<Detection>> {
        (**self).infer(frame)
    }
    fn score_threshold(&self) -> f32 {
        (**self).score_threshold()
    }
    fn set_report_floor(&mut self, floor: f32) {
        (**self).set_report_floor(floor)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}
