//! `ocellus bench --imx500`: the on-sensor path against the host-inference path, on the same
//! footage, model, tracker and rules (the demo's line and zone).
//!
//! The simulated IMX500 first records what the sensor would send for the clip (its DNN lines) to
//! a capture; that is the sensor's work and is not measured. Then the two paths run in turn in
//! this process: the host path decodes the footage (ffmpeg) and runs the model; the IMX500 path
//! replays the capture and parses the tensors. Each is measured in process CPU time (this
//! process and the children it waited for, so ffmpeg's decoding counts for the host path), in
//! bytes of pixels the host read, and in the events it produced.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use ocellus::core::{Event, EventType, FnSink, Source};
use ocellus::imx500::capture::CaptureWriter;
use ocellus::imx500::sim::Imx500Sim;
use ocellus::imx500::{Imx500Inference, Imx500Source, STRIDE_2560};
use ocellus::rules::{Direction, Rules};
use ocellus::{Detector, DetectorOptions, ModelCard, Pipeline};
use serde::Serialize;

use crate::args::Format;

/// What one path did.
#[derive(Debug, Serialize)]
struct PathReport {
    frames: u64,
    /// Passes over the clip the CPU time was measured on.
    passes: u32,
    cpu_ms_per_frame: f64,
    pixel_bytes: u64,
    events: BTreeMap<String, u64>,
    line_a_to_b: u64,
    line_b_to_a: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    frames: usize,
    network: String,
    stride: usize,
    capture_bytes_per_frame: u64,
    host: PathReport,
    imx500: PathReport,
    /// Host CPU per frame of the host path over the IMX500 path.
    cpu_ratio: f64,
}

/// CPU seconds of this process and its waited-for children (utime + stime + cutime + cstime).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // state is field 3 (index 0 here); utime is field 14 (index 11)
    let ticks: f64 = f.get(11..15).map_or(0.0, |v| v.iter().sum());
    ticks / 100.0
}

fn run_path(source: Box<dyn Source>, stage: Stage, frames: usize) -> ocellus::Result<PathReport> {
    let mut events: Vec<Event> = Vec::new();
    let rules = crate::run::demo_rules();
    let rules = Rules::new(rules.lines, rules.zones, rules.config)?;
    let before = cpu_seconds();
    let summary = {
        let sink = FnSink(|e: &Event| {
            events.push(e.clone());
            Ok(())
        });
        let builder = Pipeline::builder().boxed_source(source);
        let builder = match stage {
            Stage::Host(d) => builder.detector(*d),
            Stage::Sensor(i) => builder.inference(*i),
        };
        builder
            .rules(rules)
            .device("bench")
            .sink(sink)
            .max_frames(frames as u64)
            .build()?
            .run(&AtomicBool::new(false))?
    };
    let cpu = cpu_seconds() - before;
    let mut by_type = BTreeMap::new();
    for (k, v) in &summary.events {
        by_type.insert(k.as_str().to_owned(), *v);
    }
    let dir = |d: Direction| {
        events
            .iter()
            .filter(|e| e.kind == EventType::LineCrossed && e.direction == Some(d))
            .count() as u64
    };
    Ok(PathReport {
        frames: summary.frames_processed,
        passes: 1,
        cpu_ms_per_frame: cpu * 1e3 / summary.frames_processed.max(1) as f64,
        pixel_bytes: summary.raw_frame_bytes,
        events: by_type,
        line_a_to_b: dir(Direction::AToB),
        line_b_to_a: dir(Direction::BToA),
    })
}

enum Stage {
    Host(Box<Detector>),
    Sensor(Box<Imx500Inference>),
}

pub(crate) fn run(
    onnxruntime: Option<PathBuf>,
    frames: usize,
    video: Option<PathBuf>,
    format: Format,
) -> ocellus::Result<u8> {
    let video = video.unwrap_or_else(|| ocellus::paths::footage_dir().join("vtest.avi"));
    let card = ModelCard::builtin_ssd()?;
    let opts = DetectorOptions {
        labels: Some(vec!["person".into()]),
        ..Default::default()
    };
    let load = || -> ocellus::Result<Detector> {
        let runtime = ocellus::runtime::Runtime::init(&ocellus::runtime::Locator::from_env(
            onnxruntime.clone(),
        ))?;
        Detector::new(runtime, &card, &opts)
    };
    let open_video = || ocellus::source::FfmpegSource::open(&video.to_string_lossy(), None, false);

    // the sensor's work, not measured: record what it sends for the clip
    let dir = crate::run::TempDir::new("ocellus-bench-imx500")?;
    let capture = dir.path().join("clip.imx500");
    let mut sim = Imx500Sim::new(Box::new(open_video()?), load()?, STRIDE_2560)?;
    let mut writer = CaptureWriter::create(&capture, STRIDE_2560)?;
    let mut recorded = 0usize;
    while recorded < frames {
        let Some(f) = sim.next_frame(false)? else {
            break;
        };
        writer.write(f.t, &f.data)?;
        recorded += 1;
    }
    drop(sim);
    let (_, bytes) = writer.finish()?;

    let host = run_path(
        Box::new(open_video()?),
        Stage::Host(Box::new(load()?)),
        recorded,
    )?;
    // the on-sensor path takes so little CPU that one pass is a few clock ticks: replay the
    // capture until at least a second of CPU time has been measured, and report the first
    // pass's events
    let mut imx500 = None;
    let (mut cpu_ms, mut passes) = (0.0, 0u32);
    while passes < 1000 && (passes < 3 || cpu_ms < 1000.0) {
        let on_chip = Imx500Inference::new(&card, &opts, STRIDE_2560)?;
        let pass = run_path(
            Box::new(Imx500Source::replay(&capture, None)?),
            Stage::Sensor(Box::new(on_chip)),
            recorded,
        )?;
        cpu_ms += pass.cpu_ms_per_frame * pass.frames as f64;
        passes += 1;
        imx500.get_or_insert(pass);
    }
    let mut imx500 = imx500.ok_or_else(|| ocellus::Error::InvalidOption {
        name: "--frames".into(),
        message: "no frame was measured".into(),
    })?;
    imx500.cpu_ms_per_frame = cpu_ms / (f64::from(passes) * imx500.frames.max(1) as f64);
    imx500.passes = passes;
    let report = Report {
        frames: recorded,
        network: card.name.clone(),
        stride: STRIDE_2560,
        capture_bytes_per_frame: bytes / recorded.max(1) as u64,
        cpu_ratio: host.cpu_ms_per_frame / imx500.cpu_ms_per_frame.max(1e-6),
        host,
        imx500,
    };
    match format {
        Format::Json => println!("{}", serde_json::json!(report)),
        Format::Text => {
            println!(
                "{} frames of {} through {} (demo line and zone), host CPU per frame:",
                report.frames,
                video.display(),
                report.network
            );
            for (name, p) in [("host inference", &report.host), ("IMX500", &report.imx500)] {
                println!(
                    "  {name:<15} {:>8.3} ms/frame ({} pass(es)), {:>12} pixel bytes read, line a→b {} b→a {}, events {:?}",
                    p.cpu_ms_per_frame,
                    p.passes,
                    p.pixel_bytes,
                    p.line_a_to_b,
                    p.line_b_to_a,
                    p.events
                );
            }
            println!(
                "  ratio {:.0}x less host CPU on the IMX500 path; the sensor sends {} bytes a frame",
                report.cpu_ratio, report.capture_bytes_per_frame
            );
        }
    }
    Ok(0)
}
