//! Model cards: the TOML file that tells ocellus everything it needs about a model.
//!
//! A card names the model file and how it is pinned (the sha256 of a file used as it was fetched,
//! or, for a model converted on this machine, a `[conformance]` section that the model must
//! reproduce and a manifest written when it did), where it came from and how it was made, its licence,
//! the input tensor (name, layout, dtype, size, normalisation, resize policy), the output decoder and
//! the label map. Pointing `--model` (or the config's `[model] card`) at another card swaps the
//! detector with no code change. The format is documented in `docs/model-card.md`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The card format this build reads.
pub const CARD_SCHEMA: &str = "ocellus.model-card/1";
/// Largest accepted input side, to bound tensor allocations.
pub const MAX_INPUT_SIDE: u32 = 4096;
/// Largest card file accepted (a label map of a few thousand classes fits easily).
const MAX_CARD_BYTES: u64 = 1 << 20;

/// A parsed and validated model card.
#[derive(Debug, Clone)]
pub struct ModelCard {
    /// Where the card was read from (`<built-in …>` for embedded cards).
    pub path: PathBuf,
    /// Short name.
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Model file name or path (relative names are looked up next to the card, then in the models cache).
    pub file: String,
    /// sha256 of the model file, lower-case hex, for a model used exactly as it was fetched
    /// (`None` for a converted model, which is pinned by [`ModelCard::conformance`] instead).
    pub sha256: Option<String>,
    /// What a converted model must compute on reference inputs to be accepted (`None` for a model
    /// pinned by [`ModelCard::sha256`]). See [`crate::manifest`].
    pub conformance: Option<Conformance>,
    /// SPDX licence id of the weights.
    pub licence: String,
    /// Provenance.
    pub source: Source,
    /// The input tensor.
    pub input: InputSpec,
    /// The outputs and how to decode them.
    pub output: OutputSpec,
    /// Class id → label.
    pub labels: BTreeMap<u32, Arc<str>>,
    dir: Option<PathBuf>,
}

/// Where a model came from and how it was made.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `pypi`, `npm`, `debian`, `crates.io` or `local`.
    pub registry: String,
    /// Package and exact version.
    pub package: String,
    /// Path of the file inside the package, if taken from one.
    #[serde(default)]
    pub member: Option<String>,
    /// sha256 of that file inside the package.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The graph inputs a converter is told to start from (`tf2onnx --inputs`), if converted.
    #[serde(default)]
    pub inputs: Option<String>,
    /// The graph outputs a converter is told to end at (`tf2onnx --outputs`), if converted.
    #[serde(default)]
    pub outputs: Option<String>,
    /// The card of the model this one was made from (a quantised model names its fp32 card),
    /// looked up next to this card, then among the built-in cards. `ocellus bench` and
    /// `ocellus model compare` measure the model against it.
    #[serde(default)]
    pub derived_from: Option<String>,
    /// The exact commands that made the model file.
    pub recipe: String,
}

/// Memory layout of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[1, H, W, 3]`.
    Nhwc,
    /// `[1, 3, H, W]`.
    Nchw,
}

/// Element type of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// Raw 0..255 pixels.
    Uint8,
    /// `(pixel / 255 - mean) / std`.
    Float32,
}

/// How a frame is fitted into the input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Scale each axis independently (aspect ratio not kept).
    #[default]
    Stretch,
    /// Keep the aspect ratio, centre, fill the rest with `pad`.
    Letterbox,
}

/// The input tensor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input name in the graph.
    pub name: String,
    /// Tensor layout.
    pub layout: Layout,
    /// Element type.
    pub dtype: DType,
    /// Width the frame is resized to.
    pub width: u32,
    /// Height the frame is resized to.
    pub height: u32,
    /// Resize policy.
    #[serde(default)]
    pub resize: Resize,
    /// Letterbox fill value (0..255, before normalisation).
    #[serde(default)]
    pub pad: u8,
    /// Per-channel mean on the 0..1 scale (float32 only; default 0).
    #[serde(default)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation on the 0..1 scale (float32 only; default 1).
    #[serde(default)]
    pub std: Option<[f32; 3]>,
}

/// Ultralytics output layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum YoloLayout {
    /// Decide from the output shape and the number of labels.
    #[default]
    Auto,
    /// YOLOv8/v11: `[1, 4 + C, N]`, rows cx, cy, w, h, class scores.
    V8,
    /// YOLOv5: `[1, N, 5 + C]`, columns cx, cy, w, h, objectness, class scores.
    V5,
}

/// The model's outputs and how they are decoded.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "decoder", deny_unknown_fields)]
pub enum OutputSpec {
    /// TensorFlow Object Detection API post-processed SSD outputs.
    #[serde(rename = "tf-ssd")]
    TfSsd {
        /// `[N, K, 4]` boxes (ymin, xmin, ymax, xmax), normalised.
        boxes: String,
        /// `[N, K]` scores.
        scores: String,
        /// `[N, K]` float class ids.
        classes: String,
        /// `[N]` number of valid rows.
        count: String,
        /// Default score threshold.
        #[serde(default = "default_threshold")]
        score_threshold: f32,
    },
    /// A TensorFlow Object Detection API SSD cut at the box predictor: raw box encodings and class
    /// logits per anchor; ocellus generates the anchors, decodes the boxes, applies the sigmoid
    /// and runs NMS as the API's post-processor does.
    #[serde(rename = "tf-ssd-raw")]
    TfSsdRaw {
        /// `[1, A, 4]` box encodings `(ty, tx, th, tw)` relative to each anchor.
        box_encodings: String,
        /// `[1, A, C]` class logits; the column is the class id.
        class_logits: String,
        /// The graph's own anchors `[A, 4]` (ymin, xmin, ymax, xmax), if the model exports them:
        /// never read at run time; tests compare the generated anchors with it.
        #[serde(default)]
        graph_anchors: Option<String>,
        /// The logit column of the background class, skipped (none if the model has none).
        #[serde(default)]
        background_class: Option<u32>,
        /// The box coder's scale factors `[y, x, height, width]` (Faster R-CNN box coder).
        box_scales: [f32; 4],
        /// NMS over all classes at once instead of per class.
        #[serde(default)]
        class_agnostic: bool,
        /// NMS IoU threshold (a box is suppressed above it).
        nms_iou: f32,
        /// Most boxes kept per class.
        max_per_class: usize,
        /// Most detections kept per frame.
        max_detections: usize,
        /// Default score threshold (on the sigmoid of the logit).
        #[serde(default = "default_threshold")]
        score_threshold: f32,
        /// How the anchors are generated.
        anchors: AnchorSpec,
    },
    /// MediaPipe BlazeFace raw outputs (anchors, sigmoid and NMS done by ocellus).
    #[serde(rename = "blazeface")]
    BlazeFace {
        /// Score logits per anchor layer, `[1, A, 1]`.
        scores: Vec<String>,
        /// Box regressors per anchor layer, `[1, A, 4 + 2K]`.
        boxes: Vec<String>,
        /// Grid size of each anchor layer.
        anchor_cells: Vec<u32>,
        /// Anchors per grid cell of each layer.
        anchors_per_cell: Vec<u32>,
        /// Default score threshold.
        #[serde(default = "default_threshold")]
        score_threshold: f32,
        /// NMS IoU threshold.
        #[serde(default = "default_nms_iou")]
        nms_iou: f32,
        /// Most detections kept per frame.
        #[serde(default = "default_max_detections")]
        max_detections: usize,
    },
    /// Ultralytics YOLOv5/v8/v11 raw output (NMS done by ocellus).
    #[serde(rename = "yolo")]
    Yolo {
        /// The output name.
        output: String,
        /// Output layout.
        #[serde(default)]
        layout: YoloLayout,
        /// Default score threshold.
        #[serde(default = "default_threshold")]
        score_threshold: f32,
        /// NMS IoU threshold.
        #[serde(default = "default_nms_iou")]
        nms_iou: f32,
        /// NMS over all classes at once instead of per class.
        #[serde(default)]
        class_agnostic: bool,
        /// Most detections kept per frame.
        #[serde(default = "default_max_detections")]
        max_detections: usize,
    },
}

pub use crate::anchors::AnchorSpec;

/// What a converted model must compute to be accepted: reference inputs taken from registry
/// packages, and what the model gave on them when the card was written, with tolerances.
///
/// A converted model's bytes depend on the CPU that converted it (the converter folds constants
/// with that CPU's floating-point kernels), so it cannot be pinned by a byte hash. Provisioning
/// runs the converted model on every case and accepts it only if all of them match; it then pins
/// the accepted bytes locally in a [`crate::manifest::Manifest`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Conformance {
    /// Detections scoring at least this are compared (the other way round too: a model may not
    /// report a detection the references lack, unless it scores below `threshold + score_tolerance`).
    pub threshold: f32,
    /// Largest accepted difference of a detection's score.
    pub score_tolerance: f32,
    /// Largest accepted difference of a box coordinate (normalised 0..1).
    pub box_tolerance: f32,
    /// A tensor statistic or sample `v` matches its reference `r` when
    /// `|v - r| <= tensor_atol + tensor_rtol * |r|`.
    pub tensor_atol: f32,
    /// See [`Conformance::tensor_atol`].
    pub tensor_rtol: f32,
    /// The reference inputs and their expected outputs.
    pub case: Vec<ConformanceCase>,
}

/// One reference input and what the model must compute on it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConformanceCase {
    /// A file of the provisioned footage (`<cache>/footage`): an image (`messi5.jpg`) or a video
    /// frame (`vtest.avi#400`, frame 400 counted from 0, decoded by ffmpeg).
    pub input: String,
    /// The detections at or above [`Conformance::threshold`], best first.
    #[serde(default)]
    pub detections: Vec<ExpectedDetection>,
    /// A summary of each raw output tensor the decoder reads.
    pub outputs: Vec<TensorSummary>,
}

/// A reference detection.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDetection {
    /// The label.
    pub label: String,
    /// The score.
    pub score: f32,
    /// `[x0, y0, x1, y1]`, normalised, top-left origin.
    pub bbox: [f32; 4],
}

/// A summary of one output tensor: its shape, mean and standard deviation, the values at fixed
/// ranks of its sorted values (which a reordering cannot move, and a perturbation of every value
/// by at most `e` moves by at most `e`), and, where positions are meaningful, the values at fixed
/// positions.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSummary {
    /// The output's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Mean of all values.
    pub mean: f64,
    /// Standard deviation of all values.
    pub std: f64,
    /// Sorted values at the ranks [`QUANTILES`].
    pub quantiles: Vec<f64>,
    /// Values at [`SAMPLE_COUNT`] evenly spaced flat positions (empty where the positions are not
    /// stable, e.g. a list sorted by score).
    #[serde(default)]
    pub samples: Vec<f64>,
}

/// The ranks (fractions of the sorted values) a [`TensorSummary`] records.
pub const QUANTILES: [f64; 9] = [0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0];
/// How many positional samples a [`TensorSummary`] records.
pub const SAMPLE_COUNT: usize = 16;
/// Most reference cases a card may list (each is an inference at acceptance).
pub const MAX_CASES: usize = 64;

impl Conformance {
    /// Check ranges; the error names the key under `conformance.`.
    fn validate(&self) -> std::result::Result<(), (String, String)> {
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        if !unit(self.threshold) {
            return Err(("threshold".into(), "must be within 0..=1".into()));
        }
        for (key, v) in [
            ("score_tolerance", self.score_tolerance),
            ("box_tolerance", self.box_tolerance),
            ("tensor_atol", self.tensor_atol),
            ("tensor_rtol", self.tensor_rtol),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((key.into(), format!("is {v}; must be a finite number >= 0")));
            }
        }
        if self.case.is_empty() || self.case.len() > MAX_CASES {
            return Err((
                "case".into(),
                format!("lists {} case(s); give 1..={MAX_CASES}", self.case.len()),
            ));
        }
        for (i, c) in self.case.iter().enumerate() {
            if c.input.trim().is_empty() || c.input.contains('/') || c.input.contains("..") {
                return Err((
                    format!("case[{i}].input"),
                    "must name a file of the provisioned footage (e.g. \"messi5.jpg\" or \"vtest.avi#400\"), without a directory".into(),
                ));
            }
            if c.outputs.is_empty() {
                return Err((
                    format!("case[{i}].outputs"),
                    "is empty; summarise every output the decoder reads".into(),
                ));
            }
            for (j, o) in c.outputs.iter().enumerate() {
                if o.quantiles.len() != QUANTILES.len()
                    || !(o.samples.is_empty() || o.samples.len() == SAMPLE_COUNT)
                {
                    return Err((
                        format!("case[{i}].outputs[{j}]"),
                        format!(
                            "needs {} quantiles and 0 or {SAMPLE_COUNT} samples (write it with `ocellus model record`)",
                            QUANTILES.len()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// sha256 of the references (their JSON form): a manifest records it, so a card whose
    /// references change needs its model accepted again.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn default_threshold() -> f32 {
    0.5
}
fn default_nms_iou() -> f32 {
    0.45
}
fn default_max_detections() -> usize {
    300
}

impl OutputSpec {
    /// The default score threshold the card sets.
    pub fn score_threshold(&self) -> f32 {
        match self {
            OutputSpec::TfSsd {
                score_threshold, ..
            }
            | OutputSpec::TfSsdRaw {
                score_threshold, ..
            }
            | OutputSpec::BlazeFace {
                score_threshold, ..
            }
            | OutputSpec::Yolo {
                score_threshold, ..
            } => *score_threshold,
        }
    }

    /// Every output the decoder reads, with the card key that names it
    /// (`output.box_encodings`, `output.scores[1]`), in the order the decoder asks for them.
    pub fn keyed_outputs(&self) -> Vec<(String, &str)> {
        fn key<'a>(k: &str, name: &'a str) -> (String, &'a str) {
            (format!("output.{k}"), name)
        }
        fn listed<'a>(k: &str, names: &'a [String]) -> Vec<(String, &'a str)> {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("output.{k}[{i}]"), n.as_str()))
                .collect()
        }
        match self {
            OutputSpec::TfSsd {
                boxes,
                scores,
                classes,
                count,
                ..
            } => vec![
                key("boxes", boxes),
                key("scores", scores),
                key("classes", classes),
                key("count", count),
            ],
            OutputSpec::TfSsdRaw {
                box_encodings,
                class_logits,
                ..
            } => vec![
                key("box_encodings", box_encodings),
                key("class_logits", class_logits),
            ],
            OutputSpec::BlazeFace { scores, boxes, .. } => {
                let mut v = listed("scores", scores);
                v.extend(listed("boxes", boxes));
                v
            }
            OutputSpec::Yolo { output, .. } => vec![key("output", output)],
        }
    }

    /// The card key that names model output `output`.
    pub fn key_of(&self, output: &str) -> Option<String> {
        self.keyed_outputs()
            .into_iter()
            .find(|(_, n)| *n == output)
            .map(|(k, _)| k)
    }

    /// Every output name the decoder reads.
    pub fn output_names(&self) -> Vec<&str> {
        self.keyed_outputs().into_iter().map(|(_, n)| n).collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCard {
    schema: String,
    name: String,
    #[serde(default)]
    description: String,
    file: String,
    #[serde(default)]
    sha256: Option<String>,
    licence: String,
    #[serde(default)]
    #[allow(dead_code)]
    licence_note: String,
    source: Source,
    input: InputSpec,
    output: OutputSpec,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    conformance: Option<Conformance>,
}

/// The SSD-MobileNet-v2-COCO card, built into the binary so `ocellus detect` works from any directory.
pub const BUILTIN_SSD: &str = include_str!("../../../models/ssd-mobilenet-v2-coco.toml");
/// The SSD-MobileNet-v2-COCO card cut at the box predictor (native post-processing), built in:
/// the default detector.
pub const BUILTIN_SSD_CUT: &str = include_str!("../../../models/ssd-mobilenet-v2-coco-cut.toml");
/// The person detector the demo and the example configs run: the cut SSD, person-only, INT8.
pub const BUILTIN_SSD_PERSON_INT8: &str =
    include_str!("../../../models/ssd-mobilenet-v2-coco-person-int8.toml");
/// The BlazeFace card, built in.
pub const BUILTIN_BLAZEFACE: &str = include_str!("../../../models/blazeface-back-256.toml");

impl ModelCard {
    /// Read and validate a card file.
    pub fn load(path: impl AsRef<Path>) -> Result<ModelCard> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| Error::CardRead {
            path: path.to_path_buf(),
            source,
        })?;
        let mut text = String::new();
        file.take(MAX_CARD_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|source| Error::CardRead {
                path: path.to_path_buf(),
                source,
            })?;
        if text.len() as u64 > MAX_CARD_BYTES {
            return Err(Error::CardParse {
                path: path.to_path_buf(),
                message: format!(
                    "larger than {MAX_CARD_BYTES} bytes; is this really a model card?"
                ),
            });
        }
        let dir = path.parent().map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d.to_path_buf()
            }
        });
        Self::parse(&text, path.to_path_buf(), dir)
    }

    /// The built-in SSD person detector card.
    pub fn builtin_ssd() -> Result<ModelCard> {
        Self::parse(
            BUILTIN_SSD,
            PathBuf::from("<built-in ssd-mobilenet-v2-coco.toml>"),
            None,
        )
    }

    /// The built-in SSD person detector cut at the box predictor (native post-processing; loads
    /// in a fraction of a second): the default detector.
    pub fn builtin_ssd_cut() -> Result<ModelCard> {
        Self::parse(
            BUILTIN_SSD_CUT,
            PathBuf::from("<built-in ssd-mobilenet-v2-coco-cut.toml>"),
            None,
        )
    }

    /// The built-in person detector of the demo and the example configs: the cut SSD sliced to
    /// background + person and quantised to INT8.
    pub fn builtin_person_int8() -> Result<ModelCard> {
        Self::parse(
            BUILTIN_SSD_PERSON_INT8,
            PathBuf::from("<built-in ssd-mobilenet-v2-coco-person-int8.toml>"),
            None,
        )
    }

    /// The card this one's model was made from ([`Source::derived_from`]): the file next to this
    /// card, else the built-in card of that name; `None` if the card names none.
    pub fn derived_from(&self) -> Result<Option<ModelCard>> {
        let Some(name) = self.source.derived_from.as_deref() else {
            return Ok(None);
        };
        if let Some(dir) = &self.dir {
            let path = dir.join(name);
            if path.is_file() {
                return ModelCard::load(path).map(Some);
            }
        }
        let builtin = match name {
            "ssd-mobilenet-v2-coco-cut.toml" => BUILTIN_SSD_CUT,
            "ssd-mobilenet-v2-coco.toml" => BUILTIN_SSD,
            _ => {
                return Err(Error::CardInvalid {
                    path: self.path.clone(),
                    key: "source.derived_from".into(),
                    message: format!(
                        "names \"{name}\", which is neither next to the card nor a built-in card"
                    ),
                });
            }
        };
        Self::parse(builtin, PathBuf::from(format!("<built-in {name}>")), None).map(Some)
    }

    /// The built-in BlazeFace card.
    pub fn builtin_blazeface() -> Result<ModelCard> {
        Self::parse(
            BUILTIN_BLAZEFACE,
            PathBuf::from("<built-in blazeface-back-256.toml>"),
            None,
        )
    }

    /// Parse and validate card text. `dir` is where relative model files are looked up first.
    pub fn parse(text: &str, path: PathBuf, dir: Option<PathBuf>) -> Result<ModelCard> {
        let raw: RawCard = toml::from_str(text).map_err(|e| Error::CardParse {
            path: path.clone(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        let invalid = |key: &str, message: String| Error::CardInvalid {
            path: path.clone(),
            key: key.to_owned(),
            message,
        };
        if raw.schema != CARD_SCHEMA {
            return Err(invalid(
                "schema",
                format!("is \"{}\"; this build reads \"{CARD_SCHEMA}\"", raw.schema),
            ));
        }
        check_pin(&raw, &invalid)?;
        if raw.file.trim().is_empty() {
            return Err(invalid("file", "is empty".into()));
        }
        check_input(&raw.input, &invalid)?;
        let thr = raw.output.score_threshold();
        if !(0.0..=1.0).contains(&thr) {
            return Err(invalid(
                "output.score_threshold",
                format!("is {thr}; must be within 0..=1"),
            ));
        }
        check_output(&raw.output, &invalid)?;
        let labels = parse_labels(raw.labels, &invalid)?;
        Ok(ModelCard {
            path,
            name: raw.name,
            description: raw.description,
            file: raw.file,
            sha256: raw.sha256,
            conformance: raw.conformance,
            licence: raw.licence,
            source: raw.source,
            input: raw.input,
            output: raw.output,
            labels,
            dir,
        })
    }

    /// The places the model file is looked for, in order.
    pub fn file_candidates(&self) -> Vec<PathBuf> {
        let file = Path::new(&self.file);
        if file.is_absolute() {
            return vec![file.to_path_buf()];
        }
        let mut v = Vec::with_capacity(2);
        if let Some(dir) = &self.dir {
            v.push(dir.join(file));
        }
        v.push(crate::paths::models_dir().join(file));
        v
    }

    /// The model file: the first candidate that exists.
    pub fn resolve_file(&self) -> Result<PathBuf> {
        let looked = self.file_candidates();
        looked
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| Error::ModelMissing {
                card: self.path.clone(),
                file: self.file.clone(),
                looked,
            })
    }

    /// The label of a class id, or `class_<id>` for ids the card does not name.
    pub fn label(&self, class_id: u32) -> Arc<str> {
        self.labels
            .get(&class_id)
            .cloned()
            .unwrap_or_else(|| Arc::from(format!("class_{class_id}")))
    }

    /// Class ids whose label is one of `names`.
    pub fn class_ids_for(&self, names: &[String]) -> Vec<u32> {
        self.labels
            .iter()
            .filter(|(_, l)| names.iter().any(|n| n.as_str() == &***l))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// `sha256` or `[conformance]`: exactly one pins the model file, and it must be well-formed.
fn check_pin(raw: &RawCard, invalid: &dyn Fn(&str, String) -> Error) -> Result<()> {
    match (&raw.sha256, &raw.conformance) {
        (Some(sha), None) if !is_sha256(sha) => {
            return Err(invalid(
                "sha256",
                "must be 64 lower-case hex digits (the sha256 of the model file)".into(),
            ));
        }
        (Some(_), None) => {}
        (None, Some(c)) => c
            .validate()
            .map_err(|(key, message)| invalid(&format!("conformance.{key}"), message))?,
        (Some(_), Some(_)) => {
            return Err(invalid(
                "sha256",
                "and [conformance] are both set; a model used as fetched is pinned by `sha256`, a converted one by `[conformance]` (its bytes differ from CPU to CPU): keep one".into(),
            ));
        }
        (None, None) => {
            return Err(invalid(
                "sha256",
                "is missing: pin the model file by `sha256` (a file used as fetched) or by a `[conformance]` section (a converted model; see docs/model-card.md)".into(),
            ));
        }
    }
    Ok(())
}

/// The input's size, and mean/std only where they apply and are sane.
fn check_input(inp: &InputSpec, invalid: &dyn Fn(&str, String) -> Error) -> Result<()> {
    for (key, v) in [("input.width", inp.width), ("input.height", inp.height)] {
        if v == 0 || v > MAX_INPUT_SIDE {
            return Err(invalid(
                key,
                format!("is {v}; must be 1..={MAX_INPUT_SIDE}"),
            ));
        }
    }
    if inp.dtype == DType::Uint8 && (inp.mean.is_some() || inp.std.is_some()) {
        return Err(invalid(
            "input.mean",
            "mean/std only apply to dtype = \"float32\"; remove them for uint8 inputs".into(),
        ));
    }
    if inp.mean.is_some_and(|m| m.iter().any(|v| !v.is_finite())) {
        return Err(invalid("input.mean", "must be finite numbers".into()));
    }
    if inp
        .std
        .is_some_and(|s| s.iter().any(|v| !v.is_finite() || *v <= 0.0))
    {
        return Err(invalid("input.std", "must be finite numbers > 0".into()));
    }
    Ok(())
}

/// The output's per-decoder settings (the score threshold is checked before this).
fn check_output(output: &OutputSpec, invalid: &dyn Fn(&str, String) -> Error) -> Result<()> {
    match output {
        OutputSpec::BlazeFace {
            scores,
            boxes,
            anchor_cells,
            anchors_per_cell,
            nms_iou,
            max_detections,
            ..
        } => {
            let n = scores.len();
            if n == 0 || boxes.len() != n || anchor_cells.len() != n || anchors_per_cell.len() != n
            {
                return Err(invalid(
                    "output.scores",
                    "scores, boxes, anchor_cells and anchors_per_cell must be non-empty lists of the same length (one entry per anchor layer)".into(),
                ));
            }
            if anchor_cells
                .iter()
                .chain(anchors_per_cell)
                .any(|&c| c == 0 || c > 1024)
            {
                return Err(invalid(
                    "output.anchor_cells",
                    "grid sizes and anchors per cell must be 1..=1024".into(),
                ));
            }
            if crate::anchors::total_anchors(anchor_cells, anchors_per_cell).is_none() {
                return Err(invalid(
                    "output.anchor_cells",
                    format!(
                        "the layers have more than {} anchors in all (anchor_cells² × anchors_per_cell, summed)",
                        crate::anchors::MAX_ANCHORS
                    ),
                ));
            }
            check_nms(invalid, *nms_iou, *max_detections)?;
        }
        OutputSpec::Yolo {
            nms_iou,
            max_detections,
            ..
        } => check_nms(invalid, *nms_iou, *max_detections)?,
        OutputSpec::TfSsd { .. } => {}
        OutputSpec::TfSsdRaw {
            box_scales,
            nms_iou,
            max_per_class,
            max_detections,
            anchors,
            ..
        } => {
            if box_scales.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                return Err(invalid(
                    "output.box_scales",
                    "must be four finite numbers > 0 (y, x, height, width)".into(),
                ));
            }
            check_nms(invalid, *nms_iou, *max_detections)?;
            if *max_per_class == 0 {
                return Err(invalid("output.max_per_class", "must be at least 1".into()));
            }
            crate::anchors::anchors(anchors)
                .map_err(|(key, message)| invalid(&format!("output.anchors.{key}"), message))?;
        }
    }
    Ok(())
}

/// The `[labels]` table keyed by class id; at least one class.
fn parse_labels(
    raw: BTreeMap<String, String>,
    invalid: &dyn Fn(&str, String) -> Error,
) -> Result<BTreeMap<u32, Arc<str>>> {
    let mut labels = BTreeMap::new();
    for (k, v) in raw {
        let id: u32 = k.trim().parse().map_err(|_| {
            invalid(
                &format!("labels.{k}"),
                "label keys must be class ids (non-negative integers)".into(),
            )
        })?;
        labels.insert(id, Arc::<str>::from(v));
    }
    if labels.is_empty() {
        return Err(invalid(
            "labels",
            "is empty; list at least one class".into(),
        ));
    }
    Ok(labels)
}

fn check_nms(
    invalid: &dyn Fn(&str, String) -> Error,
    nms_iou: f32,
    max_detections: usize,
) -> Result<()> {
    if !(nms_iou > 0.0 && nms_iou <= 1.0) {
        return Err(invalid(
            "output.nms_iou",
            format!("is {nms_iou}; must be within 0 (exclusive)..=1"),
        ));
    }
    if max_detections == 0 || max_detections > 10_000 {
        return Err(invalid(
            "output.max_detections",
            format!("is {max_detections}; must be 1..=10000"),
        ));
    }
    Ok(())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yolo_card(extra_output: &str) -> String {
        format!(
            r#"
schema = "ocellus.model-card/1"
name = "t"
file = "t.onnx"
sha256 = "{}"
licence = "MIT"
[source]
registry = "local"
package = "test"
recipe = "made by the test"
[input]
name = "images"
layout = "nchw"
dtype = "float32"
width = 64
height = 64
resize = "letterbox"
pad = 114
[output]
decoder = "yolo"
output = "output0"
{extra_output}
[labels]
0 = "person"
1 = "car"
"#,
            "a".repeat(64)
        )
    }

    #[test]
    fn builtin_cards_parse() -> Result<()> {
        let ssd = ModelCard::builtin_ssd()?;
        assert_eq!(ssd.labels.get(&1).map(|l| &**l), Some("person"));
        assert_eq!(ssd.labels.get(&90).map(|l| &**l), Some("toothbrush"));
        assert_eq!(ssd.labels.len(), 80);
        assert!(matches!(ssd.output, OutputSpec::TfSsd { .. }));
        let bf = ModelCard::builtin_blazeface()?;
        assert!(matches!(bf.output, OutputSpec::BlazeFace { .. }));
        assert_eq!(bf.input.dtype, DType::Float32);
        Ok(())
    }

    #[test]
    fn yolo_card_parses_with_defaults() -> Result<()> {
        let c = ModelCard::parse(&yolo_card(""), "t.toml".into(), None)?;
        match c.output {
            OutputSpec::Yolo {
                layout,
                nms_iou,
                class_agnostic,
                ..
            } => {
                assert_eq!(layout, YoloLayout::Auto);
                assert!((nms_iou - 0.45).abs() < 1e-6);
                assert!(!class_agnostic);
            }
            _ => return Err(Error::Frame("wrong decoder".into())),
        }
        assert_eq!(c.class_ids_for(&["car".into()]), vec![1]);
        Ok(())
    }

    fn err_of(text: &str) -> String {
        match ModelCard::parse(text, "card.toml".into(), None) {
            Ok(_) => "parsed".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_key_is_refused_with_its_name_and_line() {
        let msg = err_of(&yolo_card("bogus_key = 1"));
        assert!(msg.contains("bogus_key"), "{msg}");
        assert!(msg.contains("line"), "{msg}");
        assert!(msg.contains("card.toml"), "{msg}");
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let msg = err_of(&yolo_card("nms_iou = 1.5"));
        assert!(msg.contains("output.nms_iou"), "{msg}");
        let msg = err_of(&yolo_card("").replace("width = 64", "width = 0"));
        assert!(msg.contains("input.width"), "{msg}");
        let msg = err_of(&yolo_card("").replace("0 = \"person\"", "x = \"person\""));
        assert!(msg.contains("labels.x"), "{msg}");
        let msg = err_of(&yolo_card("").replace(&"a".repeat(64), "abc"));
        assert!(msg.contains("sha256"), "{msg}");
        let msg = err_of(&yolo_card("").replace("decoder = \"yolo\"", "decoder = \"detr\""));
        assert!(msg.contains("detr"), "{msg}");
    }

    #[test]
    fn a_card_is_pinned_by_sha256_or_by_conformance_never_both_nor_neither() {
        let neither = yolo_card("").replace(&format!("sha256 = \"{}\"\n", "a".repeat(64)), "");
        let msg = err_of(&neither);
        assert!(
            msg.contains("`sha256` is missing") && msg.contains("[conformance]"),
            "{msg}"
        );
        let both = BUILTIN_SSD_CUT.replacen(
            "file = ",
            &format!("sha256 = \"{}\"\nfile = ", "a".repeat(64)),
            1,
        );
        let msg = err_of(&both);
        assert!(msg.contains("are both set"), "{msg}");
        // the built-in converted cards carry references, and no byte hash of the model
        let cut = ModelCard::builtin_ssd_cut().unwrap_or_else(|e| panic!("{e}"));
        assert!(cut.sha256.is_none());
        assert!(cut.conformance.as_ref().is_some_and(|c| c.case.len() >= 4));
        let bad = BUILTIN_SSD_CUT.replace("box_tolerance = 0.01", "box_tolerance = -1");
        let msg = err_of(&bad);
        assert!(msg.contains("conformance.box_tolerance"), "{msg}");
    }

    #[test]
    fn the_int8_card_names_its_fp32_parent() {
        let int8 = ModelCard::builtin_person_int8().unwrap_or_else(|e| panic!("{e}"));
        assert!(int8.sha256.is_none() && int8.conformance.is_some());
        assert_eq!(int8.labels.len(), 1);
        assert_eq!(&*int8.label(1), "person");
        // built in: the parent is the built-in card of that name
        let parent = int8.derived_from().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parent.map(|p| p.name).as_deref(),
            Some("ssd-mobilenet-v2-coco-cut")
        );
        // from a directory: the card file next to it wins over the built-in one
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sibling =
            BUILTIN_SSD_CUT.replace("name = \"ssd-mobilenet-v2-coco-cut\"", "name = \"my-fp32\"");
        std::fs::write(dir.path().join("ssd-mobilenet-v2-coco-cut.toml"), sibling)
            .unwrap_or_else(|e| panic!("{e}"));
        let here = ModelCard::parse(
            BUILTIN_SSD_PERSON_INT8,
            dir.path().join("int8.toml"),
            Some(dir.path().to_path_buf()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let parent = here.derived_from().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parent.map(|p| p.name).as_deref(), Some("my-fp32"));
        // a name that is neither is refused, naming the key
        let orphan = BUILTIN_SSD_PERSON_INT8.replace(
            "derived_from = \"ssd-mobilenet-v2-coco-cut.toml\"",
            "derived_from = \"nowhere.toml\"",
        );
        let c =
            ModelCard::parse(&orphan, "int8.toml".into(), None).unwrap_or_else(|e| panic!("{e}"));
        let msg = c
            .derived_from()
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("source.derived_from") && msg.contains("nowhere.toml"),
            "{msg}"
        );
        // the fp32 cards name no parent
        let cut = ModelCard::builtin_ssd_cut().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            cut.derived_from()
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
    }

    #[test]
    fn missing_model_file_lists_where_it_looked() {
        let c = ModelCard::parse(
            &yolo_card(""),
            "dir/card.toml".into(),
            Some(PathBuf::from("/nonexistent-dir")),
        );
        let msg = match c.and_then(|c| c.resolve_file()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        assert!(msg.contains("/nonexistent-dir/t.onnx"), "{msg}");
        assert!(msg.contains("models/provision.sh"), "{msg}");
    }

    #[test]
    fn blazeface_anchor_layouts_beyond_the_cap_are_refused() {
        let text = BUILTIN_BLAZEFACE
            .replace("anchor_cells = [16, 8]", "anchor_cells = [1024, 1024]")
            .replace(
                "anchors_per_cell = [2, 6]",
                "anchors_per_cell = [1024, 1024]",
            );
        assert_ne!(text, BUILTIN_BLAZEFACE);
        let msg = err_of(&text);
        assert!(msg.contains("output.anchor_cells"), "{msg}");
        assert!(msg.contains("anchors"), "{msg}");
    }
}
