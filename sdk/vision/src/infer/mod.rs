//! The detector: an ONNX Runtime session built once from a [model card](crate::card), fed by
//! [`crate::preprocess`], with the decoder the card names.
//!
//! Decoders work on plain `(shape, &[f32])` views ([`OutputTensor`]) so they are tested on known
//! tensors without a model. Every shape is checked against the data before it is indexed: a model
//! output of an unexpected shape or element type is an [`Error::ModelOutput`] naming the output.

pub mod blazeface;

pub mod prepared;
pub mod ssd;
pub mod yolo;

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::card::{DType, ModelCard, OutputSpec};
use crate::error::{Error, Result};
use crate::preprocess::{InputTensor, Preprocessor, RgbView, TensorData, Transform};
use crate::runtime::Runtime;

use ocellus_core::Inference;
pub use ocellus_core::detection::{Candidate, Detection, accept_score, passes, usable_box};
pub use ocellus_core::nms;

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
    /// Keep a copy of the model optimised for this machine and load that on later starts: faster
    /// and leaner start-up (see [`prepared`]; default on).
    pub prepare: bool,
    /// Where those copies are kept (`None`: `<cache>/prepared`, see [`prepared::default_root`]).
    pub prepared_dir: Option<PathBuf>,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            intra_threads: None,
            score_threshold: None,
            labels: None,
            verify_checksum: true,
            prepare: true,
            prepared_dir: None,
        }
    }
}

/// A loaded model, ready to run on frames: a [`Preprocessor`], an [`Engine`] (the ONNX Runtime
/// session) and a [`Decoder`] (the card's post-processing), with buffers reused frame after frame.
///
/// [`Detector::detect`] runs the three in turn on the caller's thread; the pipeline runs them on
/// three threads at once (see [`Detector::stages`]).
pub struct Detector {
    engine: Engine,
    pre: Preprocessor,
    decoder: Decoder,
    raw: RawOutputs,
    model_path: PathBuf,
    prepared: Option<PathBuf>,
    last_decode: std::time::Duration,
    /// The score at which a detection counts (the options' or the card's threshold); the decoder
    /// may report below it (see [`Inference::set_report_floor`]).
    threshold: f32,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("card", &self.decoder.card.name)
            .field("model", &self.model_path)
            .field("threshold", &self.decoder.threshold)
            .finish_non_exhaustive()
    }
}

/// The ONNX Runtime session of a detector, asked for the decoder's outputs only.
pub struct Engine {
    session: Session,
    input: String,
    outputs: Vec<String>,
    options: RunOptions<HasSelectedOutputs>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("input", &self.input)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// One run's outputs, copied out of ONNX Runtime into buffers that keep their capacity, so a
/// stage can hand them to the next while the session runs the next frame.
#[derive(Debug, Clone, Default)]
pub struct RawOutputs {
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
    data: Vec<Vec<f32>>,
}

impl RawOutputs {
    /// Outputs computed elsewhere (a sensor that runs the network on the chip), for a
    /// [`Decoder`]: one name, shape and value list per output.
    pub(crate) fn from_parts(
        names: Vec<String>,
        shapes: Vec<Vec<i64>>,
        data: Vec<Vec<f32>>,
    ) -> Self {
        RawOutputs {
            names,
            shapes,
            data,
        }
    }

    /// Every output of the last run, in the order the decoder asked for them.
    pub fn iter(&self) -> impl Iterator<Item = OutputTensor<'_>> {
        self.names
            .iter()
            .zip(&self.shapes)
            .zip(&self.data)
            .map(|((n, s), d)| OutputTensor::new(n, s, d))
    }

    /// Output `name` of the last run.
    pub fn get(&self, name: &str) -> Result<OutputTensor<'_>> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::ModelOutput {
                output: name.to_owned(),
                message: "missing from the model's results".into(),
            })?;
        match (self.names.get(i), self.shapes.get(i), self.data.get(i)) {
            (Some(n), Some(s), Some(d)) => Ok(OutputTensor::new(n, s, d)),
            _ => Err(Error::ModelOutput {
                output: name.to_owned(),
                message: "missing from the model's results".into(),
            }),
        }
    }
}

impl Engine {
    /// Run the model on `input` and copy the decoder's outputs into `out` (no allocation once
    /// `out` has held a result of this model).
    pub fn run(&mut self, input: &InputTensor, out: &mut RawOutputs) -> Result<()> {
        let Engine {
            session,
            input: input_name,
            outputs: names,
            options,
        } = self;
        let results = run_session(session, input, input_name, options)?;
        out.names.resize_with(names.len(), String::new);
        out.shapes.resize_with(names.len(), Vec::new);
        out.data.resize_with(names.len(), Vec::new);
        for (i, name) in names.iter().enumerate() {
            let v = results
                .get(name.as_str())
                .ok_or_else(|| Error::ModelOutput {
                    output: name.clone(),
                    message: "missing from the model's results".into(),
                })?;
            let (shape, data) = v
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::ModelOutput {
                    output: name.clone(),
                    message: format!(
                        "expected a Float32 tensor, got {}: {e}",
                        dtype_name(v.dtype())
                    ),
                })?;
            if out.names[i] != *name {
                out.names[i].clone_from(name);
            }
            out.shapes[i].clear();
            out.shapes[i].extend_from_slice(shape);
            out.data[i].clear();
            out.data[i].extend_from_slice(data);
        }
        Ok(())
    }

    /// Run the model on `input` and drop the results (raw inference, for benchmarks).
    pub fn run_only(&mut self, input: &InputTensor) -> Result<()> {
        run_session(&mut self.session, input, &self.input, &self.options).map(drop)
    }
}

/// A card's post-processing: model outputs to labelled detections in frame coordinates.
#[derive(Debug)]
pub struct Decoder {
    card: ModelCard,
    threshold: f32,
    keep: Option<Vec<u32>>,
    /// BlazeFace anchor centres.
    anchors: Vec<[f32; 2]>,
    /// SSD anchors in centre form.
    ssd_anchors: Vec<ssd::Anchor>,
    /// Candidates before NMS, kept between frames (one decode at a time; never contended).
    scratch: std::sync::Mutex<Vec<Candidate>>,
}

fn thread_panicked() -> Error {
    Error::InvalidOption {
        name: "thread".into(),
        message: "a checksum thread panicked".into(),
    }
}

/// How a session is built.
#[derive(Debug, Clone, Copy)]
enum Build<'a> {
    /// All of ONNX Runtime's optimisations, at load.
    Optimise,
    /// The same, saving the optimised graph here (weights beside it as [`prepared::WEIGHTS`]).
    OptimiseAndSave(&'a Path),
    /// An already optimised graph: no optimisation at load.
    Prepared,
}

/// Run `check` on a thread of its own while `load` runs here, and keep what `load` made only if
/// `check` passed. Hashing a model file and building its session each take a good part of
/// start-up and neither needs the other. (ONNX Runtime reads the file itself; a file swapped
/// between the two is caught by the next start, as it would be between a check and a load done one
/// after the other.)
fn checked_while<T>(
    check: impl Fn() -> Result<()> + Sync,
    load: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let check = &check;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("ocellus-verify".into())
            .spawn_scoped(scope, check);
        match handle {
            Ok(handle) => {
                let loaded = load();
                match handle.join() {
                    Ok(checked) => checked.and(loaded),
                    Err(_) => Err(thread_panicked()),
                }
            }
            // no thread to spare: one after the other
            Err(_) => check().and_then(|()| load()),
        }
    })
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
    /// Resolve, verify and load the card's model, and check its inputs and outputs against the
    /// card. With [`DetectorOptions::prepare`], a copy optimised for this machine is loaded when
    /// the cache has one (checked against its manifest), and made when it has not.
    pub fn new(runtime: &Runtime, card: &ModelCard, opts: &DetectorOptions) -> Result<Self> {
        if !opts.prepare {
            return Self::from_card_file(runtime, card, opts, None);
        }
        let model_path = card.resolve_file()?;
        // the sha256 the file must have: the card's, or the manifest that accepted a converted
        // model (read now: it names the optimised copy; the file itself is hashed below)
        let model_sha = match card.expected_sha256(&model_path) {
            Ok(sha) => sha,
            Err(e) if opts.verify_checksum => return Err(e),
            // unchecked and unpinned: no copy can be matched to it
            Err(_) => return Self::from_card_file(runtime, card, opts, None),
        };
        let machine = prepared::machine();
        let root = opts
            .prepared_dir
            .clone()
            .unwrap_or_else(prepared::default_root);
        if let Some(copy) = prepared::find(&root, card, &model_sha, &machine) {
            let load = || Self::load_with(runtime, card, &copy.model(), opts, Build::Prepared);
            // The card's own file is still checked (a damaged model is reported, not hidden by the
            // copy), and so is the copy; both hashes run beside the session build.
            let (original, copy_ok, loaded) = if opts.verify_checksum {
                std::thread::scope(|scope| {
                    let original = scope.spawn(|| card.verify(&model_path));
                    let copy_ok = scope.spawn(|| copy.verify());
                    let loaded = load();
                    (
                        original.join().unwrap_or_else(|_| Err(thread_panicked())),
                        copy_ok.join().unwrap_or_else(|_| Err(thread_panicked())),
                        loaded,
                    )
                })
            } else {
                (Ok(()), Ok(()), load())
            };
            original?;
            match copy_ok.and(loaded) {
                Ok(mut det) => {
                    det.model_path = model_path;
                    det.prepared = Some(copy.dir().to_path_buf());
                    return Ok(det);
                }
                Err(e) => {
                    tracing::warn!("{e}; making it again from {}", model_path.display());
                    copy.discard();
                }
            }
        }
        let staging = prepared::stage(&root, card, &model_sha, &machine);
        let mut det =
            Self::from_card_file(runtime, card, opts, staging.as_ref().map(|s| s.model()))?;
        if let Some(staging) = staging {
            match prepared::commit(staging, card, &model_sha, &machine) {
                Ok(dir) => {
                    tracing::info!(
                        "kept a copy of {} optimised for this machine in {}",
                        card.name,
                        dir.display()
                    );
                    det.prepared = Some(dir);
                }
                Err(e) => tracing::warn!("could not keep the optimised copy: {e}"),
            }
        }
        Ok(det)
    }

    /// The card's own model file, checked against the card while the session is built.
    fn from_card_file(
        runtime: &Runtime,
        card: &ModelCard,
        opts: &DetectorOptions,
        save: Option<PathBuf>,
    ) -> Result<Self> {
        let model_path = card.resolve_file()?;
        let build = match &save {
            Some(path) => Build::OptimiseAndSave(path),
            None => Build::Optimise,
        };
        let load = || Self::load_with(runtime, card, &model_path, opts, build);
        if opts.verify_checksum {
            checked_while(|| card.verify(&model_path), load)
        } else {
            load()
        }
    }

    /// The directory of the optimised copy this detector loaded or made, if any.
    pub fn prepared(&self) -> Option<&Path> {
        self.prepared.as_deref()
    }

    /// Load a specific model file with a card's description (no checksum check, no optimised copy).
    pub fn load(
        runtime: &Runtime,
        card: &ModelCard,
        model_path: &Path,
        opts: &DetectorOptions,
    ) -> Result<Self> {
        Self::load_with(runtime, card, model_path, opts, Build::Optimise)
    }

    fn load_with(
        runtime: &Runtime,
        card: &ModelCard,
        model_path: &Path,
        opts: &DetectorOptions,
        build: Build<'_>,
    ) -> Result<Self> {
        if let Some(t) = opts.score_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(Error::InvalidOption {
                name: "threshold".into(),
                message: format!("{t} is outside 0..=1"),
            });
        }
        let session = Self::build_session(runtime, card, model_path, opts, build)?;
        let mismatch = |message: String| Error::ModelMismatch {
            path: model_path.to_path_buf(),
            message,
        };
        Self::check_input(&session, card, &mismatch)?;
        Self::check_outputs(&session, card, &mismatch)?;
        let outputs: Vec<String> = card
            .output
            .output_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let selector = outputs
            .iter()
            .fold(OutputSelector::no_default(), |sel, n| sel.with(n.as_str()));
        let options = RunOptions::new()
            .map_err(Error::Inference)?
            .with_outputs(selector);
        let keep = opts.labels.as_ref().map(|l| card.class_ids_for(l));
        let threshold = opts
            .score_threshold
            .unwrap_or_else(|| card.output.score_threshold());
        let decoder = Decoder::new(card, threshold, keep)?;
        let mut det = Detector {
            engine: Engine {
                session,
                input: card.input.name.clone(),
                outputs,
                options,
            },
            pre: Preprocessor::new(&card.input),
            decoder,
            raw: RawOutputs::default(),
            model_path: model_path.to_path_buf(),
            prepared: None,
            last_decode: std::time::Duration::ZERO,
            threshold,
        };
        det.dry_run()?;
        Ok(det)
    }

    /// The ONNX Runtime session for `model_path`, optimised as `build` asks, with the card's
    /// load errors explained.
    fn build_session(
        runtime: &Runtime,
        card: &ModelCard,
        model_path: &Path,
        opts: &DetectorOptions,
        build: Build<'_>,
    ) -> Result<Session> {
        let load_err = |source: ort::Error| Error::ModelLoad {
            path: model_path.to_path_buf(),
            source,
        };
        let level = match build {
            Build::Optimise | Build::OptimiseAndSave(_) => GraphOptimizationLevel::All,
            Build::Prepared => GraphOptimizationLevel::Disable,
        };
        let mut builder = Session::builder(runtime.environment())
            .map_err(load_err)?
            .with_optimization_level(level)
            .map_err(|e| load_err(e.into()))?
            .with_log_level(ort::logging::LogLevel::Error)
            .map_err(|e| load_err(e.into()))?;
        if let Build::OptimiseAndSave(path) = build {
            builder = builder
                .with_optimized_model_path(path)
                .map_err(|e| load_err(e.into()))?
                // the weights in their own file, which a later start maps instead of copying
                .with_config_entry(
                    "session.optimized_model_external_initializers_file_name",
                    prepared::WEIGHTS,
                )
                .map_err(|e| load_err(e.into()))?
                .with_config_entry(
                    "session.optimized_model_external_initializers_min_size_in_bytes",
                    "1024",
                )
                .map_err(|e| load_err(e.into()))?;
        }
        if let Some(n) = opts.intra_threads {
            builder = builder
                .with_intra_threads(n)
                .map_err(|e| load_err(e.into()))?;
        }
        builder
            .commit_from_file(model_path)
            .map_err(|e| load_err(explain_load_error(e, card, model_path)))
    }

    /// The card's input is an input of the model, of the card's element type and shape.
    fn check_input(
        session: &Session,
        card: &ModelCard,
        mismatch: &dyn Fn(String) -> Error,
    ) -> Result<()> {
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
        Ok(())
    }

    /// Every output the decoder reads is a Float32 output of the model.
    fn check_outputs(
        session: &Session,
        card: &ModelCard,
        mismatch: &dyn Fn(String) -> Error,
    ) -> Result<()> {
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
        Ok(())
    }

    /// One inference on a blank frame at load, so that outputs whose shapes do not fit the card
    /// (swapped names, another anchor count, another class count) are refused at start-up, naming
    /// the card and the key, instead of failing every frame of a run.
    fn dry_run(&mut self) -> Result<()> {
        let card = &self.decoder.card;
        let (w, h) = (card.input.width, card.input.height);
        let blank = crate::RgbFrame::new(w, h, vec![0; w as usize * h as usize * 3])?;
        match self.detect(&blank.as_view()) {
            Ok(_) => Ok(()),
            Err(Error::ModelOutput { output, message }) => {
                let card = &self.decoder.card;
                let key = card
                    .output
                    .key_of(&output)
                    .unwrap_or_else(|| "output".to_owned());
                let also = match card.output {
                    OutputSpec::TfSsdRaw { .. } => " and [output.anchors]",
                    OutputSpec::BlazeFace { .. } => " and `output.anchor_cells`",
                    _ => "",
                };
                Err(Error::ModelMismatch {
                    path: self.model_path.clone(),
                    message: format!(
                        "a test inference on a blank frame gave output `{output}` that the card cannot decode: {message}. Check `{key}`{also} in {}",
                        card.path.display()
                    ),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The card this detector was built from.
    pub fn card(&self) -> &ModelCard {
        &self.decoder.card
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
        self.engine.run(self.pre.tensor(), &mut self.raw)?;
        let decode_start = std::time::Instant::now();
        let dets = self.decoder.decode(&self.raw, &transform);
        self.last_decode = decode_start.elapsed();
        dets
    }

    /// How long decoding the outputs took in the last [`Detector::infer`] (decoder, NMS, labels;
    /// not the model run).
    pub fn last_decode_time(&self) -> std::time::Duration {
        self.last_decode
    }

    /// The raw outputs of the last [`Detector::infer`] (or [`Detector::detect`]).
    pub fn raw_outputs(&self) -> &RawOutputs {
        &self.raw
    }

    /// Run the model on the current input tensor and discard the results (for benchmarks).
    pub fn run_raw(&mut self) -> Result<()> {
        self.engine.run_only(self.pre.tensor())
    }

    /// The preprocessor, the session and the post-processing apart, for a pipeline that runs them
    /// on different threads (with buffers of its own in between).
    pub fn stages(&mut self) -> (&mut Preprocessor, &mut Engine, &Decoder) {
        (&mut self.pre, &mut self.engine, &self.decoder)
    }
}

/// The ONNX Runtime detector as an [`Inference`]. A pipeline given a [`Detector`] itself (through
/// [`crate::pipeline::PipelineBuilder::detector`]) runs its stages on separate threads instead;
/// this is for callers that want one call per frame.
impl Inference for Detector {
    fn infer(&mut self, frame: RgbView<'_>) -> ocellus_core::Result<Vec<Detection>> {
        Ok(self.detect(&frame)?)
    }

    fn score_threshold(&self) -> f32 {
        self.threshold
    }

    fn set_report_floor(&mut self, floor: f32) {
        self.decoder.threshold = floor.min(self.threshold);
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.decoder.card.name, self.model_path.display())
    }
}

impl Decoder {
    /// The post-processing a card describes, with a score threshold and the class ids to keep.
    pub fn new(card: &ModelCard, threshold: f32, keep: Option<Vec<u32>>) -> Result<Self> {
        let anchors = match &card.output {
            OutputSpec::BlazeFace {
                anchor_cells,
                anchors_per_cell,
                ..
            } => blazeface::anchors(anchor_cells, anchors_per_cell),
            _ => Vec::new(),
        };
        let ssd_anchors = match &card.output {
            OutputSpec::TfSsdRaw { anchors, .. } => {
                ssd::anchors(anchors).map_err(|(key, message)| Error::CardInvalid {
                    path: card.path.clone(),
                    key: format!("output.anchors.{key}"),
                    message,
                })?
            }
            _ => Vec::new(),
        };
        Ok(Decoder {
            card: card.clone(),
            threshold,
            keep,
            anchors,
            ssd_anchors,
            scratch: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Report detections down to `threshold` from now on.
    pub(crate) fn set_threshold(&mut self, threshold: f32) {
        self.threshold = threshold;
    }

    /// The anchors generated for a `tf-ssd-raw` card, centre form `[yc, xc, h, w]` (empty for
    /// other decoders).
    pub fn ssd_anchors(&self) -> &[ssd::Anchor] {
        &self.ssd_anchors
    }

    /// Decode one run's outputs; boxes are mapped to the frame by `transform`.
    pub fn decode(&self, raw: &RawOutputs, transform: &Transform) -> Result<Vec<Detection>> {
        let Decoder {
            card,
            threshold,
            anchors,
            ssd_anchors,
            ..
        } = self;
        let threshold = *threshold;
        let input_size = (card.input.width, card.input.height);
        let candidates = match &card.output {
            OutputSpec::TfSsd {
                boxes,
                scores,
                classes,
                count,
                ..
            } => ssd::decode(
                &raw.get(boxes)?,
                &raw.get(scores)?,
                &raw.get(classes)?,
                &raw.get(count)?,
                threshold,
            )?,
            OutputSpec::TfSsdRaw {
                box_encodings,
                class_logits,
                background_class,
                box_scales,
                class_agnostic,
                nms_iou,
                max_per_class,
                max_detections,
                ..
            } => {
                let mut fresh = Vec::new();
                let mut held = self.scratch.lock();
                let scratch = match held.as_mut() {
                    Ok(s) => &mut **s,
                    // a decode panicked mid-way elsewhere: use a new buffer
                    Err(_) => &mut fresh,
                };
                ssd::decode_raw(
                    &raw.get(box_encodings)?,
                    &raw.get(class_logits)?,
                    ssd_anchors,
                    &ssd::RawSettings {
                        box_scales: *box_scales,
                        background_class: *background_class,
                        class_agnostic: *class_agnostic,
                        nms_iou: *nms_iou,
                        max_per_class: *max_per_class,
                        max_detections: *max_detections,
                    },
                    threshold,
                    scratch,
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
                    blazeface::decode_layer(
                        &raw.get(sname)?,
                        &raw.get(bname)?,
                        layer,
                        input_size,
                        threshold,
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
                let cands =
                    yolo::decode(&raw.get(output)?, *layout, classes, input_size, threshold)?;
                nms::nms(cands, *nms_iou, *class_agnostic, *max_detections)
            }
        };
        Ok(to_detections(
            candidates,
            transform,
            self.keep.as_deref(),
            card,
        ))
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
    options: &'s RunOptions<HasSelectedOutputs>,
) -> Result<ort::session::SessionOutputs<'s>> {
    match &t.data {
        TensorData::U8(d) => {
            let v =
                TensorRef::from_array_view((t.shape, d.as_slice())).map_err(Error::Inference)?;
            session.run_with_options(ort::inputs![input => v], options)
        }
        TensorData::F32(d) => {
            let v =
                TensorRef::from_array_view((t.shape, d.as_slice())).map_err(Error::Inference)?;
            session.run_with_options(ort::inputs![input => v], options)
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
