//! The detector: an ONNX Runtime session built once from a [model card](crate::card), fed by
//! [`crate::preprocess`], with the decoder the card names.
//!
//! Decoders work on plain `(shape, &[f32])` views ([`OutputTensor`]) so they are tested on known
//! tensors without a model. Every shape is checked against the data before it is indexed: a model
//! output of an unexpected shape or element type is an [`Error::ModelOutput`] naming the output.

pub mod blazeface;
pub mod nms;
pub mod ssd;
pub mod yolo;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, TensorRef, ValueType};
use serde::Serialize;

use crate::card::{DType, ModelCard, OutputSpec};
use crate::error::{Error, Result};
use crate::preprocess::{InputTensor, Preprocessor, RgbView, TensorData, Transform};
use crate::runtime::Runtime;

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
pub(crate) fn passes(score: f32, threshold: f32) -> bool {
    score.is_finite() && score >= threshold
}

/// The score a candidate reports: `None` unless it [`passes`]; an absurd score above 1 (a model
/// that does not output probabilities) is reported as 1, never as 1e30.
pub(crate) fn accept_score(score: f32, threshold: f32) -> Option<f32> {
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

/// A borrowed f32 model output: its name (for errors), shape and data.
#[derive(Debug, Clone, Copy)]
pub struct OutputTensor<'a> {
    /// Output name.
    pub name: &'a str,
    /// Shape as reported by the runtime.
    pub shape: &'a [i64],
    /// Row-major data.
    pub data: &'a [f32],
}

impl<'a> OutputTensor<'a> {
    /// Wrap a shape and its data.
    pub fn new(name: &'a str, shape: &'a [i64], data: &'a [f32]) -> Self {
        OutputTensor { name, shape, data }
    }

    /// Dimension `i`, or an error naming the output.
    pub fn dim(&self, i: usize) -> Result<usize> {
        match self.shape.get(i).map(|&d| usize::try_from(d)) {
            Some(Ok(d)) => Ok(d),
            _ => Err(self.shape_error(&format!("at least {} dimensions", i + 1))),
        }
    }

    /// Check the shape (`None` = any size) and that the data holds exactly that many elements.
    pub fn expect_shape(&self, want: &[Option<usize>]) -> Result<()> {
        let fits = self.shape.len() == want.len()
            && self
                .shape
                .iter()
                .zip(want)
                .all(|(&s, w)| usize::try_from(s).is_ok_and(|s| w.is_none_or(|w| s == w)));
        if !fits {
            let w: Vec<String> = want
                .iter()
                .map(|d| d.map_or("?".into(), |d| d.to_string()))
                .collect();
            return Err(self.shape_error(&format!("shape [{}]", w.join(", "))));
        }
        self.check_len()
    }

    /// Check that the data holds exactly as many elements as the shape says (no negative
    /// dimension, no overflow).
    pub fn check_len(&self) -> Result<()> {
        let n = self
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?));
        if n != Some(self.data.len()) {
            return Err(Error::ModelOutput {
                output: self.name.to_owned(),
                message: format!(
                    "shape {:?} does not match its {} elements",
                    self.shape,
                    self.data.len()
                ),
            });
        }
        Ok(())
    }

    pub(crate) fn shape_error(&self, expected: &str) -> Error {
        Error::ModelOutput {
            output: self.name.to_owned(),
            message: format!("expected {expected}, got shape {:?}", self.shape),
        }
    }
}

/// Detector settings beyond the card.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// ONNX Runtime intra-op threads (`None`: the runtime's default, one per core).
    pub intra_threads: Option<usize>,
    /// Override the card's score threshold.
    pub score_threshold: Option<f32>,
    /// Keep only these labels (`None`: all).
    pub labels: Option<Vec<String>>,
    /// Check the model file's sha256 against the card before loading (default on).
    pub verify_checksum: bool,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            intra_threads: None,
            score_threshold: None,
            labels: None,
            verify_checksum: true,
        }
    }
}

/// A loaded model, ready to run on frames.
pub struct Detector {
    session: Session,
    pre: Preprocessor,
    card: ModelCard,
    model_path: PathBuf,
    threshold: f32,
    keep: Option<Vec<u32>>,
    anchors: Vec<[f32; 2]>,
    last_decode: std::time::Duration,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("card", &self.card.name)
            .field("model", &self.model_path)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

fn dtype_name(t: &ValueType) -> String {
    match t {
        ValueType::Tensor { ty, shape, .. } => format!("{ty:?} tensor {:?}", &**shape),
        other => format!("{other:?}"),
    }
}

fn tensor_ty(t: &ValueType) -> Option<TensorElementType> {
    match t {
        ValueType::Tensor { ty, .. } => Some(*ty),
        _ => None,
    }
}

impl Detector {
    /// Resolve, verify and load the card's model, and check its inputs and outputs against the card.
    pub fn new(runtime: &Runtime, card: &ModelCard, opts: &DetectorOptions) -> Result<Self> {
        let model_path = card.resolve_file()?;
        if opts.verify_checksum {
            card.verify(&model_path)?;
        }
        Self::load(runtime, card, &model_path, opts)
    }

    /// Load a specific model file with a card's description (no checksum check).
    pub fn load(
        runtime: &Runtime,
        card: &ModelCard,
        model_path: &Path,
        opts: &DetectorOptions,
    ) -> Result<Self> {
        if let Some(t) = opts.score_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(Error::InvalidOption {
                name: "threshold".into(),
                message: format!("{t} is outside 0..=1"),
            });
        }
        let load_err = |source: ort::Error| Error::ModelLoad {
            path: model_path.to_path_buf(),
            source,
        };
        let mut builder = Session::builder(runtime.environment())
            .map_err(load_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| load_err(e.into()))?
            .with_log_level(ort::logging::LogLevel::Error)
            .map_err(|e| load_err(e.into()))?;
        if let Some(n) = opts.intra_threads {
            builder = builder
                .with_intra_threads(n)
                .map_err(|e| load_err(e.into()))?;
        }
        let session = builder
            .commit_from_file(model_path)
            .map_err(|e| load_err(explain_load_error(e, card, model_path)))?;

        let mismatch = |message: String| Error::ModelMismatch {
            path: model_path.to_path_buf(),
            message,
        };
        let input = session
            .inputs()
            .iter()
            .find(|i| i.name() == card.input.name)
            .ok_or_else(|| {
                let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
                mismatch(format!(
                    "the card's input `{}` is not an input of the model (it has {names:?}); fix `input.name` in {}",
                    card.input.name,
                    card.path.display()
                ))
            })?;
        let want = match card.input.dtype {
            DType::Uint8 => TensorElementType::Uint8,
            DType::Float32 => TensorElementType::Float32,
        };
        if tensor_ty(input.dtype()) != Some(want) {
            return Err(mismatch(format!(
                "input `{}` is a {}, the card says {:?}; fix `input.dtype` in {}",
                card.input.name,
                dtype_name(input.dtype()),
                card.input.dtype,
                card.path.display()
            )));
        }
        if let ValueType::Tensor { shape, .. } = input.dtype() {
            let (w, h) = (i64::from(card.input.width), i64::from(card.input.height));
            let expected = match card.input.layout {
                crate::card::Layout::Nhwc => [1, h, w, 3],
                crate::card::Layout::Nchw => [1, 3, h, w],
            };
            // A dynamic dimension (-1) takes any size.
            let fits = shape.len() == expected.len()
                && shape.iter().zip(expected).all(|(&d, e)| d < 0 || d == e);
            if !fits {
                return Err(mismatch(format!(
                    "input `{}` has shape {:?}, but the card's {:?} {}x{} input is {expected:?}; fix `input.layout`, `input.width` and `input.height` in {}",
                    card.input.name,
                    &**shape,
                    card.input.layout,
                    card.input.width,
                    card.input.height,
                    card.path.display()
                )));
            }
        }
        for name in card.output.output_names() {
            let out = session
                .outputs()
                .iter()
                .find(|o| o.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
                    mismatch(format!(
                        "the card's output `{name}` is not an output of the model (it has {names:?}); fix the `output` names in {}",
                        card.path.display()
                    ))
                })?;
            if tensor_ty(out.dtype()) != Some(TensorElementType::Float32) {
                return Err(mismatch(format!(
                    "output `{name}` is a {}, the decoder needs Float32 (card {})",
                    dtype_name(out.dtype()),
                    card.path.display()
                )));
            }
        }
        let anchors = match &card.output {
            OutputSpec::BlazeFace {
                anchor_cells,
                anchors_per_cell,
                ..
            } => blazeface::anchors(anchor_cells, anchors_per_cell),
            _ => Vec::new(),
        };
        let keep = opts.labels.as_ref().map(|l| card.class_ids_for(l));
        Ok(Detector {
            session,
            pre: Preprocessor::new(&card.input),
            card: card.clone(),
            model_path: model_path.to_path_buf(),
            threshold: opts
                .score_threshold
                .unwrap_or_else(|| card.output.score_threshold()),
            keep,
            anchors,
            last_decode: std::time::Duration::ZERO,
        })
    }

    /// The card this detector was built from.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The model file loaded.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Preprocess, run and decode one frame.
    pub fn detect(&mut self, frame: &RgbView<'_>) -> Result<Vec<Detection>> {
        let transform = self.preprocess(frame)?;
        self.infer(transform)
    }

    /// Fill the input tensor from a frame (the first half of [`Detector::detect`]).
    pub fn preprocess(&mut self, frame: &RgbView<'_>) -> Result<Transform> {
        self.pre.run(*frame)
    }

    /// Run the model on the current input tensor and decode (the second half of [`Detector::detect`]).
    pub fn infer(&mut self, transform: Transform) -> Result<Vec<Detection>> {
        let Detector {
            session,
            pre,
            card,
            threshold,
            anchors,
            ..
        } = self;
        let outputs = run_session(session, pre.tensor(), &card.input.name)?;
        let decode_start = std::time::Instant::now();

        let get = |name: &str| -> Result<(&ort::value::Shape, &[f32])> {
            let v = outputs.get(name).ok_or_else(|| Error::ModelOutput {
                output: name.to_owned(),
                message: "missing from the model's results".into(),
            })?;
            v.try_extract_tensor::<f32>()
                .map_err(|e| Error::ModelOutput {
                    output: name.to_owned(),
                    message: format!(
                        "expected a Float32 tensor, got {}: {e}",
                        dtype_name(v.dtype())
                    ),
                })
        };
        let input_size = (card.input.width, card.input.height);
        let candidates = match &card.output {
            OutputSpec::TfSsd {
                boxes,
                scores,
                classes,
                count,
                ..
            } => {
                let (bs, bd) = get(boxes)?;
                let (ss, sd) = get(scores)?;
                let (cs, cd) = get(classes)?;
                let (ns, nd) = get(count)?;
                ssd::decode(
                    &OutputTensor::new(boxes, bs, bd),
                    &OutputTensor::new(scores, ss, sd),
                    &OutputTensor::new(classes, cs, cd),
                    &OutputTensor::new(count, ns, nd),
                    *threshold,
                )?
            }
            OutputSpec::BlazeFace {
                scores,
                boxes,
                anchor_cells,
                anchors_per_cell,
                nms_iou,
                max_detections,
                ..
            } => {
                let mut cands = Vec::new();
                let mut start = 0usize;
                for (i, (sname, bname)) in scores.iter().zip(boxes).enumerate() {
                    let layout_error = || Error::ModelOutput {
                        output: sname.clone(),
                        message: "anchor layout does not fit the card".into(),
                    };
                    let (cells, per_cell) = anchor_cells
                        .get(i)
                        .zip(anchors_per_cell.get(i))
                        .ok_or_else(layout_error)?;
                    let end = blazeface::layer_anchors(*cells, *per_cell)
                        .and_then(|n| start.checked_add(n))
                        .ok_or_else(layout_error)?;
                    let layer = anchors.get(start..end).ok_or_else(layout_error)?;
                    start = end;
                    let (ss, sd) = get(sname)?;
                    let (bs, bd) = get(bname)?;
                    blazeface::decode_layer(
                        &OutputTensor::new(sname, ss, sd),
                        &OutputTensor::new(bname, bs, bd),
                        layer,
                        input_size,
                        *threshold,
                        &mut cands,
                    )?;
                }
                nms::nms(cands, *nms_iou, true, *max_detections)
            }
            OutputSpec::Yolo {
                output,
                layout,
                nms_iou,
                class_agnostic,
                max_detections,
                ..
            } => {
                let classes = card.labels.keys().max().map_or(0, |m| *m as usize + 1);
                let (os, od) = get(output)?;
                let cands = yolo::decode(
                    &OutputTensor::new(output, os, od),
                    *layout,
                    classes,
                    input_size,
                    *threshold,
                )?;
                nms::nms(cands, *nms_iou, *class_agnostic, *max_detections)
            }
        };
        let dets = to_detections(candidates, &transform, self.keep.as_deref(), card);
        self.last_decode = decode_start.elapsed();
        Ok(dets)
    }

    /// How long decoding the outputs took in the last [`Detector::infer`] (output extraction,
    /// decoder, NMS, labels; not the model run).
    pub fn last_decode_time(&self) -> std::time::Duration {
        self.last_decode
    }

    /// Run the model on the current input tensor and discard the results (for benchmarks).
    pub fn run_raw(&mut self) -> Result<()> {
        run_session(&mut self.session, self.pre.tensor(), &self.card.input.name).map(drop)
    }
}

/// What a file that is not an ONNX model looks like, from its first bytes.
fn sniff_foreign(path: &Path) -> Option<&'static str> {
    use std::io::Read;
    let mut head = [0u8; 64];
    let mut file = std::fs::File::open(path).ok()?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    let head = &head[..n];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    Some(match head {
        [] => "an empty file",
        [0x89, b'P', b'N', b'G', ..] => "a PNG image",
        [0xFF, 0xD8, 0xFF, ..] => "a JPEG image",
        [b'P', b'K', 3, 4, ..] => "a ZIP archive (unpack the model from it)",
        [0x1F, 0x8B, ..] => "a gzip archive (unpack the model from it)",
        [b'G', b'I', b'F', b'8', ..] => "a GIF image",
        _ if text.starts_with("version https://git-lfs") => {
            "a Git LFS pointer (run `git lfs pull`, or fetch the model with models/provision.sh)"
        }
        _ if text.trim_start().starts_with("<!doctype")
            || text.trim_start().starts_with("<html") =>
        {
            "an HTML page (a failed download?)"
        }
        _ if text.trim_start().starts_with("schema") || text.trim_start().starts_with('[') => {
            "a text file (a model card instead of the model?)"
        }
        _ => return None,
    })
}

/// ONNX Runtime's refusal of a model file, with what the file looks like and what to do.
fn explain_load_error(e: ort::Error, card: &ModelCard, model: &Path) -> ort::Error {
    let looks = sniff_foreign(model)
        .map(|what| format!(" The file is {what}, not an ONNX model."))
        .unwrap_or_default();
    let said = e.to_string();
    let said = said.trim_end_matches(['.', ' ', '\n']);
    ort::Error::new_with_code(
        e.code(),
        format!(
            "{said}.{looks} Card {} names `{}`: a truncated download, another file renamed .onnx, or an opset newer than this ONNX Runtime all fail here. Fetch the model again with `models/provision.sh`, or point the card's `file` at the right model",
            card.path.display(),
            card.file
        ),
    )
}

/// Candidates to detections, best score first: only the classes in `keep` (all if `None`), boxes
/// mapped to the frame by `transform`. A candidate whose score is not finite, or whose box is not
/// finite or is empty once mapped (a box inside the letterbox padding, an inverted box), is dropped.
///
/// The last step of [`Detector::infer`]; public (and hidden) for the fuzz targets in `sdk/fuzz`.
#[doc(hidden)]
pub fn to_detections(
    candidates: Vec<Candidate>,
    transform: &Transform,
    keep: Option<&[u32]>,
    card: &ModelCard,
) -> Vec<Detection> {
    let mut dets: Vec<Detection> = candidates
        .into_iter()
        .filter(|c| keep.is_none_or(|k| k.contains(&c.class_id)))
        .filter(|c| c.score.is_finite())
        .filter_map(|c| {
            Some(Detection {
                label: card.label(c.class_id),
                class_id: c.class_id,
                score: c.score,
                bbox: usable_box(transform.to_frame(usable_box(c.bbox)?))?,
            })
        })
        .collect();
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    dets
}

/// Feed the input tensor to the session without copying it.
fn run_session<'s>(
    session: &'s mut Session,
    t: &InputTensor,
    input: &str,
) -> Result<ort::session::SessionOutputs<'s>> {
    match &t.data {
        TensorData::U8(d) => {
            let v =
                TensorRef::from_array_view((t.shape, d.as_slice())).map_err(Error::Inference)?;
            session.run(ort::inputs![input => v])
        }
        TensorData::F32(d) => {
            let v =
                TensorRef::from_array_view((t.shape, d.as_slice())).map_err(Error::Inference)?;
            session.run(ort::inputs![input => v])
        }
    }
    .map_err(Error::Inference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_tensor_checks_shape_against_data() {
        let t = OutputTensor::new("o", &[1, 2, 3], &[0.0; 5]);
        let msg = t
            .expect_shape(&[Some(1), None, Some(3)])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("`o`") && msg.contains("5 elements"), "{msg}");
        let t = OutputTensor::new("o", &[1, -1], &[]);
        assert!(t.expect_shape(&[Some(1), None]).is_err());
        assert!(t.dim(1).is_err());
        let ok = OutputTensor::new("o", &[2, 2], &[0.0; 4]);
        assert!(ok.expect_shape(&[None, Some(2)]).is_ok());
    }

    #[test]
    fn usable_boxes_are_finite_clamped_and_non_empty() {
        assert_eq!(
            usable_box([-0.5, 0.25, 0.5, 2.0]),
            Some([0.0, 0.25, 0.5, 1.0])
        );
        for bad in [
            [f32::NAN, 0.0, 1.0, 1.0],
            [0.0, f32::INFINITY, 1.0, 1.0],
            [0.0, 0.0, f32::NEG_INFINITY, 1.0],
            [0.5, 0.0, 0.4, 1.0],
            [0.5, 0.0, 0.5, 1.0],
            [1.5, 0.0, 2.5, 1.0],
            [-2.0, 0.0, -1.0, 1.0],
        ] {
            assert_eq!(usable_box(bad), None, "{bad:?}");
        }
        assert_eq!(accept_score(f32::NAN, 0.0), None);
        assert_eq!(accept_score(f32::INFINITY, 0.0), None);
        assert_eq!(accept_score(1e30, 0.5), Some(1.0));
        assert_eq!(accept_score(0.4, 0.5), None);
    }

    #[test]
    fn detections_in_the_letterbox_padding_or_non_finite_are_dropped() -> Result<()> {
        let card = ModelCard::builtin_ssd()?;
        let cand = |score: f32, bbox: [f32; 4]| Candidate {
            class_id: 1,
            score,
            bbox,
        };
        // The frame fills the middle half of the input's height.
        let letterbox = Transform {
            scale: [1.0, 0.5],
            offset: [0.0, 0.25],
        };
        let dets = to_detections(
            vec![
                cand(0.6, [0.1, 0.3, 0.2, 0.7]),
                cand(0.9, [0.1, 0.0, 0.2, 0.2]), // in the top padding
                cand(f32::NAN, [0.1, 0.3, 0.2, 0.7]),
                cand(0.8, [0.1, f32::NAN, 0.2, 0.7]),
                cand(0.7, [0.3, 0.3, 0.2, 0.7]), // inverted
            ],
            &letterbox,
            None,
            &card,
        );
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert_eq!(&*dets[0].label, "person");
        assert!(dets[0].bbox.iter().all(|v| v.is_finite()));
        // A transform that is itself broken (a zero or NaN scale) drops everything.
        for scale in [0.0, f32::NAN, f32::INFINITY] {
            let broken = Transform {
                scale: [scale, 1.0],
                offset: [0.0, 0.0],
            };
            let dets = to_detections(vec![cand(0.6, [0.1, 0.3, 0.2, 0.7])], &broken, None, &card);
            assert!(dets.is_empty(), "{scale}: {dets:?}");
        }
        Ok(())
    }
}
