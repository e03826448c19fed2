//! Detections from frames: the [`Inference`] trait.
//!
//! The SDK's ONNX Runtime detector implements it, and so does anything else that turns a frame
//! into detections: a sensor that runs the network on the chip (its output tensors parsed on the
//! host), a vendor accelerator, a remote model, a test double.

use crate::detection::Detection;
use crate::error::Result;
use crate::frame::{Frame, RgbView};

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

    /// The detections in a whole frame: what the pipeline calls. The default runs
    /// [`Inference::infer`] on the frame's pixels; an inference that reads what the sensor computed
    /// ([`Frame::sensor_data`]) overrides it, and needs no pixels.
    ///
    /// # Errors
    /// As [`Inference::infer`]; the default refuses a frame without pixels with
    /// [`crate::Error::Frame`].
    fn infer_frame(&mut self, frame: &Frame) -> Result<Vec<Detection>> {
        match &frame.image {
            Some(image) => self.infer(image.as_view()),
            None => Err(crate::Error::Frame(format!(
                "frame {}: {} needs pixels and the source delivered none (it sends only on-sensor results)",
                frame.seq,
                self.describe()
            ))),
        }
    }

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
    fn infer_frame(&mut self, frame: &Frame) -> Result<Vec<Detection>> {
        (**self).infer_frame(frame)
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
