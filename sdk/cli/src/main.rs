//! The `ocellus` command-line program.

mod annotate;
mod args;
mod bench;
mod bench_delivery;
mod bench_imx500;
mod broker;
mod compare;
mod detect;
mod eval;
mod model_cmd;
mod procinfo;
mod run;
mod setup;
mod sim;
mod tracks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::args::{EXIT_SETUP, Format, ModelArgs};

/// On-device vision for intelligent image sensors.
#[derive(Debug, Parser)]
#[command(name = "ocellus", version, about)]
struct Cli {
    /// ONNX Runtime library (default: $ORT_DYLIB_PATH, then the provisioning cache).
    #[arg(long, global = true, value_name = "PATH")]
    onnxruntime: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Detect objects in images; one JSON object (or text block) per image.
    Detect {
        /// Image files (PNG, JPEG).
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// Keep only these labels (comma-separated, e.g. `person`).
        #[arg(long, value_delimiter = ',')]
        labels: Option<Vec<String>>,
        /// Write a PNG per image with boxes, labels and scores drawn into this directory.
        #[arg(long, value_name = "DIR")]
        annotate: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run a deployment: source → detector → tracker → rules → events over MQTT.
    Run {
        /// The config file (see docs/config.md).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Stop after this many frames.
        #[arg(long)]
        frames: Option<u64>,
        /// Do not print events as they are published.
        #[arg(long)]
        quiet: bool,
        /// How events are printed: `text` (one line each) or `json` (the event itself, one per
        /// line on stdout, printed once it is stored in the queue).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also write the run's summary (frames, fps, events, start-up, memory, delivery) to this
        /// file as one JSON object (keys: docs/config.md).
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
        /// Write every confirmed track box of every frame to this file in the MOTChallenge text
        /// format (`frame,id,x,y,w,h,conf,-1,-1,-1`, frames from 1, pixels), for `ocellus eval`
        /// or the field's scoring tools (docs/accuracy.md).
        #[arg(long, value_name = "FILE")]
        tracks: Option<PathBuf>,
    },
    /// The built-in demo: vtest.avi, the SSD person detector, a line and a zone, an in-process broker.
    Demo {
        /// Stop after this many frames.
        #[arg(long)]
        frames: Option<u64>,
        /// Publish to this broker (mqtt://HOST:PORT) instead of starting one.
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
        /// Port for the in-process broker (default: a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Also write the run's summary to this file as one JSON object (as `run --summary`).
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
    },
    /// Converted models: check one against its card's conformance references, accept it (write
    /// its manifest), record references for a new card (see docs/model-card.md), or compare a
    /// quantised model with the model it was made from (the accuracy guard).
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Simulated sensors: `ocellus sim imx500 --out CAPTURE` records what a simulated IMX500
    /// sends (its tensors, not pixels) for `source.kind = "imx500"` to replay.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Score tracks (`run --tracks FILE`) against a MOTChallenge ground truth: MOTA, IDF1 and
    /// the line-count error on random lines or a config's lines (docs/accuracy.md).
    Eval(eval::EvalArgs),
    /// Replay a config's source through the pipeline into an MP4 or GIF: boxes, track ids and
    /// trails, lines with running counts, zones with occupancy; people pixelated.
    Annotate(annotate::AnnotateArgs),
    /// Serve a local page to draw the config's lines and zones on the camera's view (people
    /// pixelated), with live counts; Save writes the file back with its comments.
    Setup(setup::SetupArgs),
    /// Validate a config file: errors name the key and the line.
    CheckConfig {
        /// The config file.
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
    /// List the V4L2 cameras (`/dev/video*`): driver, formats, sizes and frame rates.
    Devices {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Measure the delivery path: events through the disk queue to a broker, stored/s and delivered/s.
    BenchDelivery {
        /// Events to send.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Broker (mqtt://HOST:PORT; default: an in-process broker).
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
        /// fsync batching interval of the queue, ms (0: fsync every event).
        #[arg(long, default_value_t = 100)]
        fsync_ms: u64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Measure raw inference, the pipeline, start-up and memory on real footage. By default the
    /// INT8 person detector the demo runs, side by side with its fp32 parent (`--model CARD` for
    /// another card; a `*-cut` card is set against the full graph's raw inference).
    Bench {
        /// Frames to measure.
        #[arg(long, default_value_t = 100)]
        frames: usize,
        /// Video file (default: vtest.avi from the provisioning cache).
        #[arg(long, value_name = "FILE")]
        video: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// A model card measured on the same frames, interleaved, and side by side (pipeline,
        /// start-up, memory) (default: the card the model was made from, `source.derived_from`;
        /// for a card named `*-cut`, the raw inference of ssd-mobilenet-v2-coco.toml next to it;
        /// otherwise none).
        #[arg(long, value_name = "CARD")]
        baseline: Option<PathBuf>,
        /// Do not measure start-up and peak memory in a child `ocellus run`.
        #[arg(long)]
        no_child: bool,
        /// Measure the on-sensor (IMX500) path against host inference instead: host CPU per
        /// frame, pixel bytes read and events of each, on the same clip with the demo's rules.
        #[arg(long)]
        imx500: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

fn main() -> ExitCode {
    // before anything else: the start of the start-up figure
    crate::procinfo::mark_start();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OCELLUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off")),
        )
        .with_writer(|| RedactingStderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Detect {
            images,
            model,
            labels,
            annotate,
            format,
        } => detect::run(
            cli.onnxruntime,
            &model,
            labels,
            &images,
            annotate.as_deref(),
            format,
        ),
        Command::Bench {
            frames,
            video,
            imx500: true,
            format,
            ..
        } => bench_imx500::run(cli.onnxruntime, frames, video, format),
        Command::Bench {
            frames,
            video,
            model,
            baseline,
            no_child,
            format,
            ..
        } => bench::run(
            cli.onnxruntime,
            &model,
            &bench::Options {
                frames,
                video,
                baseline,
                child: !no_child,
            },
            format,
        ),
        Command::Run {
            config,
            frames,
            quiet,
            format,
            summary,
            tracks,
        } => run::run(
            &config,
            frames,
            cli.onnxruntime,
            quiet,
            format,
            (summary.as_deref(), tracks.as_deref()),
        ),
        Command::Demo {
            frames,
            broker,
            port,
            summary,
        } => run::demo(frames, broker, port, cli.onnxruntime, summary.as_deref()),
        Command::BenchDelivery {
            events,
            broker,
            fsync_ms,
            format,
        } => bench_delivery::run(events, broker, fsync_ms, format),
        Command::CheckConfig { config } => run::check_config(&config),
        Command::Eval(args) => eval::run(&args),
        Command::Annotate(args) => annotate::run(&args),
        Command::Setup(args) => run::stop_flag().and_then(|stop| setup::run(&args, &stop)),
        Command::Model(model_cmd::ModelCommand::Compare(args)) => {
            compare::run(cli.onnxruntime, &args)
        }
        Command::Model(cmd) => model_cmd::run(cli.onnxruntime, &cmd),
        Command::Sim(cmd) => sim::run(cli.onnxruntime, cmd),
        Command::Devices { format } => devices(format),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", ocellus::redact::text(&e.to_string()));
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// stderr for log lines, with any password in a URL masked (a log line may quote a source or
/// broker URL that carries credentials).
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(ocellus::redact::text(&line).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `ocellus devices`: every V4L2 node with what `source.kind = "v4l2"` can ask of it.
fn devices(format: Format) -> ocellus::Result<u8> {
    let devices = ocellus::source::v4l2::list_devices()?;
    match format {
        Format::Json => {
            // plain strings and numbers: serialisation cannot fail
            println!(
                "{}",
                serde_json::to_string_pretty(&devices).unwrap_or_default()
            );
        }
        Format::Text if devices.is_empty() => {
            println!("no V4L2 devices (/dev/video*) on this machine");
        }
        Format::Text => {
            for d in &devices {
                println!("{d}");
            }
            println!(
                "formats marked with a name can be used as `source.format`; `-` is a format ocellus does not convert"
            );
        }
    }
    Ok(0)
}
