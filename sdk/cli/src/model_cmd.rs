//! `ocellus model`: check a converted model against its card's conformance references, accept it
//! (write its manifest), or record references for a new card.

use std::path::{Path, PathBuf};

use ocellus::card::{Conformance, ModelCard};
use ocellus::conformance;

use crate::args::EXIT_PARTIAL;

/// What `ocellus model` does.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ModelCommand {
    /// Run a model on its card's conformance references and say how close it came (writes nothing).
    Check(Target),
    /// Check a converted model and, if it conforms, write its manifest beside it: from then on the
    /// SDK loads it, pinned to these bytes on this machine.
    Accept {
        #[command(flatten)]
        target: Target,
        /// What made the model (converter, versions), recorded in the manifest.
        #[arg(long, default_value = "unrecorded")]
        converter: String,
    },
    /// Print a `[conformance]` section for a card: what the model computes on reference inputs.
    /// Use it when writing a card, from a model that was checked by other means.
    Record {
        #[command(flatten)]
        target: Target,
        /// A reference input from the footage directory: `image.png` or `video.avi#FRAME`
        /// (repeat; default: the card's current cases).
        #[arg(long = "input", value_name = "INPUT")]
        inputs: Vec<String>,
        /// Detections at or above this score are recorded and compared.
        #[arg(long)]
        threshold: Option<f32>,
        /// Score tolerance.
        #[arg(long)]
        score_tolerance: Option<f32>,
        /// Box tolerance (normalised coordinates).
        #[arg(long)]
        box_tolerance: Option<f32>,
        /// Absolute tolerance of tensor statistics.
        #[arg(long)]
        tensor_atol: Option<f32>,
        /// Relative tolerance of tensor statistics.
        #[arg(long)]
        tensor_rtol: Option<f32>,
    },
    /// The accuracy guard: run a model and the model it was made from (a quantised model and its
    /// fp32 card) on every frame of the footage, and say how closely it follows: recall and
    /// precision of its detections against the reference's, and the counts of the demo's line and
    /// zone on both. Exit 1 if a bar is not met (recall, precision, the line's counts).
    Compare(CompareArgs),
}

/// What `ocellus model compare` measures, and the bars it holds the model to.
#[derive(Debug, clap::Args)]
pub(crate) struct CompareArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// The reference card (default: the card the model was made from, its `source.derived_from`).
    #[arg(long, value_name = "CARD")]
    pub(crate) reference: Option<PathBuf>,
    /// The footage (default: `<cache>/footage/vtest.avi`).
    #[arg(long, value_name = "VIDEO")]
    pub(crate) video: Option<PathBuf>,
    /// Frames to compare (default: all of them).
    #[arg(long)]
    pub(crate) frames: Option<u64>,
    /// Labels compared (repeat; default: every label both cards have).
    #[arg(long = "label", value_name = "LABEL")]
    pub(crate) labels: Vec<String>,
    /// IoU a detection needs to match the reference's.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) iou: f32,
    /// Least recall against the reference, per label.
    #[arg(long, default_value_t = 0.97)]
    pub(crate) min_recall: f64,
    /// Least precision against the reference, per label.
    #[arg(long, default_value_t = 0.97)]
    pub(crate) min_precision: f64,
    /// Most difference in the demo's line counts, per direction (the zone's counts are reported,
    /// not held).
    #[arg(long, default_value_t = 1)]
    pub(crate) count_tolerance: u64,
    /// Skip the counts (detections only: one pass instead of three).
    #[arg(long)]
    pub(crate) no_counts: bool,
    /// ONNX Runtime intra-op threads for both models (default: one per core).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::args::Format::Text)]
    pub(crate) format: crate::args::Format,
}

/// A card and the model file to hold against it.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The model card.
    #[arg(value_name = "CARD")]
    pub(crate) card: PathBuf,
    /// The model file (default: the card's, where it resolves).
    #[arg(value_name = "MODEL")]
    pub(crate) model: Option<PathBuf>,
    /// Where the reference inputs are (default: `<cache>/footage`).
    #[arg(long, value_name = "DIR")]
    pub(crate) footage: Option<PathBuf>,
}

impl Target {
    pub(crate) fn open(&self) -> ocellus::Result<(ModelCard, PathBuf, PathBuf)> {
        let card = ModelCard::load(&self.card)?;
        let model = match &self.model {
            Some(m) => m.clone(),
            None => card.resolve_file()?,
        };
        let footage = self
            .footage
            .clone()
            .unwrap_or_else(ocellus::paths::footage_dir);
        Ok((card, model, footage))
    }
}

pub(crate) fn runtime(
    onnxruntime: Option<PathBuf>,
) -> ocellus::Result<&'static ocellus::runtime::Runtime> {
    Ok(ocellus::runtime::Runtime::init(
        &ocellus::runtime::Locator::from_env(onnxruntime),
    )?)
}

fn print_results(model: &Path, results: &[ocellus::manifest::CaseResult]) {
    println!("{} conforms:", model.display());
    for r in results {
        println!(
            "  {:<20} {} reference detection(s) matched, score within {:.4}, box within {:.4}; tensors at {:.0}% of tolerance",
            r.input,
            r.detections,
            r.max_score_diff,
            r.max_box_diff,
            r.max_tensor_ratio * 100.0
        );
    }
}

pub(crate) fn run(onnxruntime: Option<PathBuf>, cmd: &ModelCommand) -> ocellus::Result<u8> {
    match cmd {
        ModelCommand::Check(target) => {
            let (card, model, footage) = target.open()?;
            let rt = runtime(onnxruntime)?;
            match conformance::check(rt, &card, &model, &footage) {
                Ok(results) => {
                    print_results(&model, &results);
                    Ok(0)
                }
                Err(e @ ocellus::Error::Conformance { .. }) => {
                    eprintln!("error: {e}");
                    Ok(EXIT_PARTIAL)
                }
                Err(e) => Err(e),
            }
        }
        ModelCommand::Accept { target, converter } => {
            let (card, model, footage) = target.open()?;
            let rt = runtime(onnxruntime)?;
            match conformance::accept(rt, &card, &model, &footage, converter) {
                Ok(m) => {
                    print_results(&model, &m.results);
                    println!(
                        "accepted: sha256 {} recorded in {}",
                        m.sha256,
                        ocellus::manifest::path_for(&model).display()
                    );
                    Ok(0)
                }
                Err(e @ ocellus::Error::Conformance { .. }) => {
                    eprintln!("error: {e}");
                    eprintln!(
                        "not accepted: no manifest written. If the converter or its inputs changed on purpose, write new references with `ocellus model record` after checking the model by other means"
                    );
                    Ok(EXIT_PARTIAL)
                }
                Err(e) => Err(e),
            }
        }
        ModelCommand::Record {
            target,
            inputs,
            threshold,
            score_tolerance,
            box_tolerance,
            tensor_atol,
            tensor_rtol,
        } => {
            let (card, model, footage) = target.open()?;
            let old = card.conformance.clone();
            let base = old.clone().unwrap_or(Conformance {
                threshold: card.output.score_threshold(),
                score_tolerance: 0.02,
                box_tolerance: 0.01,
                tensor_atol: 0.02,
                tensor_rtol: 0.01,
                case: Vec::new(),
            });
            let base = Conformance {
                threshold: threshold.unwrap_or(base.threshold),
                score_tolerance: score_tolerance.unwrap_or(base.score_tolerance),
                box_tolerance: box_tolerance.unwrap_or(base.box_tolerance),
                tensor_atol: tensor_atol.unwrap_or(base.tensor_atol),
                tensor_rtol: tensor_rtol.unwrap_or(base.tensor_rtol),
                case: base.case,
            };
            let inputs: Vec<String> = if inputs.is_empty() {
                base.case.iter().map(|c| c.input.clone()).collect()
            } else {
                inputs.clone()
            };
            if inputs.is_empty() {
                return Err(ocellus::Error::InvalidOption {
                    name: "--input".into(),
                    message: "the card has no conformance cases yet: name the reference inputs (e.g. --input messi5.jpg --input vtest.avi#400)".into(),
                });
            }
            let rt = runtime(onnxruntime)?;
            let conf = conformance::record(rt, &card, &model, &footage, &inputs, &base)?;
            print!("{}", conformance::to_toml(&conf)?);
            Ok(0)
        }
        ModelCommand::Compare(_) => Err(ocellus::Error::InvalidOption {
            name: "model compare".into(),
            message: "is run by `ocellus model compare`, which the command line dispatches".into(),
        }),
    }
}
