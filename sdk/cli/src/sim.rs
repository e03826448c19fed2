//! `ocellus sim`: simulated sensors that record what they send.

use std::path::PathBuf;
use std::time::Instant;

use ocellus::imx500::capture::CaptureWriter;
use ocellus::imx500::sim::Imx500Sim;

use crate::args::Format;

/// What `ocellus sim` simulates.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SimCommand {
    /// A simulated IMX500: footage through a real model standing in for the network on the chip,
    /// written as the sensor sends it (DNN lines: KPI, input tensor when asked, quantised output
    /// tensors) to a capture that `source.kind = "imx500"` with `capture = FILE` replays.
    Imx500 {
        /// Video file the sensor looks at (default: vtest.avi from the provisioning cache).
        #[arg(long, value_name = "FILE")]
        footage: Option<PathBuf>,
        /// The capture to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The network's model card; its decoder must be `tf-ssd` (default: the built-in
        /// SSD-MobileNet-v2-COCO, post-processor in the graph as on the chip).
        #[arg(long, value_name = "CARD")]
        model: Option<PathBuf>,
        /// Stop after this many frames.
        #[arg(long)]
        frames: Option<u64>,
        /// Bytes per line: 2560 (current drivers) or 4064 (older ones).
        #[arg(long, default_value_t = ocellus::imx500::STRIDE_2560)]
        stride: usize,
        /// Record the network's input tensor (a low-resolution picture) with every frame, so that
        /// a replay can answer snapshot and setup requests.
        #[arg(long)]
        input_tensors: bool,
        /// ONNX Runtime intra-op threads for the stand-in network (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

pub(crate) fn run(onnxruntime: Option<PathBuf>, cmd: SimCommand) -> ocellus::Result<u8> {
    let SimCommand::Imx500 {
        footage,
        out,
        model,
        frames,
        stride,
        input_tensors,
        threads,
        format,
    } = cmd;
    let footage = footage.unwrap_or_else(|| ocellus::paths::footage_dir().join("vtest.avi"));
    let card = match &model {
        Some(p) => ocellus::ModelCard::load(p)?,
        None => ocellus::ModelCard::builtin_ssd()?,
    };
    let runtime =
        ocellus::runtime::Runtime::init(&ocellus::runtime::Locator::from_env(onnxruntime))?;
    let opts = ocellus::DetectorOptions {
        intra_threads: threads,
        ..Default::default()
    };
    let chip = ocellus::Detector::new(runtime, &card, &opts)?;
    let video = ocellus::source::FfmpegSource::open(&footage.to_string_lossy(), None, false)?;
    let mut sim = Imx500Sim::new(Box::new(video), chip, stride)?;
    let mut writer = CaptureWriter::create(&out, stride)?;
    let limit = frames.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut n = 0u64;
    while n < limit {
        let Some(f) = sim.next_frame(input_tensors)? else {
            break;
        };
        writer.write(f.t, &f.data)?;
        n += 1;
    }
    let skipped = sim.stats().skipped;
    let (written, bytes) = writer.finish()?;
    let secs = started.elapsed().as_secs_f64();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "out": out.display().to_string(),
                "footage": footage.display().to_string(),
                "network": card.name,
                "frames": written,
                "bytes": bytes,
                "bytes_per_frame": bytes.checked_div(written).unwrap_or(0),
                "stride": stride,
                "input_tensors": input_tensors,
                "skipped": skipped,
                "seconds": secs,
            })
        ),
        Format::Text => eprintln!(
            "simulated IMX500 ({}) on {}: {written} frames, {bytes} bytes ({} per frame, stride {stride}{}) → {} in {secs:.1} s",
            card.name,
            footage.display(),
            bytes.checked_div(written).unwrap_or(0),
            if input_tensors { ", input tensors" } else { "" },
            out.display()
        ),
    }
    Ok(0)
}
