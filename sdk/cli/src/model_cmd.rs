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
}

/// A card and the model file to hold against it.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The model card.
    #[arg(value_name = "CARD")]
    card: PathBuf,
    /// The model file (default: the card's, where it resolves).
    #[arg(value_name = "MODEL")]
    model: Option<PathBuf>,
    /// Where the reference inputs are (default: `<cache>/footage`).
    #[arg(long, value_name = "DIR")]
    footage: Option<PathBuf>,
}

impl Target {
    fn open(&self) -> ocellus::Result<(ModelCard, PathBuf, PathBuf)> {
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

fn runtime(onnxruntime: Option<PathBuf>) -> ocellus::Result<&'static ocellus::runtime::Runtime> {
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
    }
}
