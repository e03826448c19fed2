//! What the commands share: output formats, the model options, loading a detector, figures.

use std::path::PathBuf;

use clap::ValueEnum;

/// Exit codes: 0 success, 1 some inputs failed, 2 the run could not start (usage, model, runtime).
pub(crate) const EXIT_PARTIAL: u8 = 1;
/// Exit status: nothing could start (config, model, runtime, source, queue).
pub(crate) const EXIT_SETUP: u8 = 2;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Options shared by the commands that load a model.
#[derive(Debug, clap::Args)]
pub(crate) struct ModelArgs {
    /// Model card (default: the built-in SSD-MobileNet-v2-COCO person detector).
    #[arg(long, value_name = "CARD")]
    pub(crate) model: Option<PathBuf>,
    /// Score threshold (default: the card's).
    #[arg(long)]
    pub(crate) threshold: Option<f32>,
    /// ONNX Runtime intra-op threads (default: one per core).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Skip the model file's sha256 check against its card.
    #[arg(long)]
    pub(crate) no_verify: bool,
}

/// The card `--model` names, or the built-in SSD.
pub(crate) fn load_card(args: &ModelArgs) -> ocellus::Result<ocellus::card::ModelCard> {
    use ocellus::card::ModelCard;
    match &args.model {
        Some(path) => ModelCard::load(path),
        None => ModelCard::builtin_ssd_cut(),
    }
}

/// Load the runtime, the card and the detector.
pub(crate) fn load_detector(
    onnxruntime: Option<PathBuf>,
    args: &ModelArgs,
    labels: Option<Vec<String>>,
) -> ocellus::Result<ocellus::infer::Detector> {
    let card = load_card(args)?;
    detector_for(onnxruntime, &card, args, labels)
}

/// Load the runtime and a detector for `card` with the options of `args` (its `model` aside).
pub(crate) fn detector_for(
    onnxruntime: Option<PathBuf>,
    card: &ocellus::card::ModelCard,
    args: &ModelArgs,
    labels: Option<Vec<String>>,
) -> ocellus::Result<ocellus::infer::Detector> {
    let runtime =
        ocellus::runtime::Runtime::init(&ocellus::runtime::Locator::from_env(onnxruntime))?;
    let opts = ocellus::infer::DetectorOptions {
        intra_threads: args.threads,
        score_threshold: args.threshold,
        labels,
        verify_checksum: !args.no_verify,
        ..Default::default()
    };
    ocellus::infer::Detector::new(runtime, card, &opts)
}

/// Milliseconds, as a float.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p` quantile (0..=1, nearest rank) of `v`, which it sorts; `None` for no values.
pub(crate) fn percentile(v: &mut [f64], p: f64) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let last = v.len().checked_sub(1)?;
    let i = ((last as f64 * p.clamp(0.0, 1.0)).round() as usize).min(last);
    v.get(i).copied()
}
