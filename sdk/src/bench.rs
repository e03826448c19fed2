//! `ocellus bench`: raw inference vs. preprocess + inference + decode, measured interleaved in one
//! run on the same real frames, so machine load affects both sides alike.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{Format, ModelArgs, load_detector};

#[derive(Serialize)]
struct Report {
    frames: usize,
    model: String,
    frame_size: [u32; 2],
    input_size: [u32; 2],
    startup_ms: f64,
    raw_inference_fps: f64,
    /// steady state, first to last frame
    pipeline_fps: f64,
    /// including start-up (ffmpeg spawn, first decode)
    pipeline_wall_fps: f64,
    /// pipeline_fps / raw_inference_fps
    ratio: f64,
    frame_to_event_ms_p99: f64,
    pipeline_events: u64,
    detect_fps: f64,
    /// detect_fps / raw_inference_fps
    detect_ratio: f64,
    raw_inference_ms_p50: f64,
    detect_ms_p50: f64,
    preprocess_ms_p50: f64,
    preprocess_ms_p99: f64,
    decode_ms_p50: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Raw inference and detect timings, interleaved frame by frame.
#[derive(Default)]
struct Measure {
    pre: Vec<f64>,
    full: Vec<f64>,
    raw: Vec<f64>,
    decode: Vec<f64>,
    raw_total: Duration,
    full_total: Duration,
}

impl Measure {
    fn frame(
        &mut self,
        det: &mut ocellus::infer::Detector,
        f: &ocellus::RgbFrame,
    ) -> ocellus::Result<()> {
        let a = Instant::now();
        let t = det.preprocess(&f.as_view())?;
        let b = Instant::now();
        det.infer(t)?;
        let c = Instant::now();
        let decoded = det.last_decode_time();
        // raw: the same input tensor (already at the model's size), inference only
        det.run_raw()?;
        let d = Instant::now();
        self.pre.push(ms(b - a));
        self.full.push(ms(c - a));
        self.raw.push(ms(d - c));
        self.decode.push(ms(decoded));
        self.full_total += c - a;
        self.raw_total += d - c;
        Ok(())
    }
}

pub(crate) fn run(
    onnxruntime: Option<PathBuf>,
    args: &ModelArgs,
    frames: usize,
    video: Option<PathBuf>,
    format: Format,
) -> ocellus::Result<u8> {
    let frames = frames.clamp(1, 10_000);
    let video = video.unwrap_or_else(|| ocellus::paths::footage_dir().join("vtest.avi"));
    let clip = ocellus::source::read_video_frames(&video, 0, frames)?;
    if clip.is_empty() {
        return Err(ocellus::Error::Frame(format!(
            "{} has no frames",
            video.display()
        )));
    }
    let t0 = Instant::now();
    let mut det = load_detector(onnxruntime, args, None)?;
    let startup = t0.elapsed();

    // warm-up: the first runs allocate ORT's arenas
    for f in clip.iter().take(3) {
        det.detect(&f.as_view())?;
        det.run_raw()?;
    }
    // A: raw vs detect on the first half, interleaved frame by frame
    let half = clip.len().div_ceil(2);
    let mut m = Measure::default();
    for f in &clip[..half] {
        m.frame(&mut det, f)?;
    }
    // the whole pipeline on the same frames, from the file, same detector and threads
    let source = ocellus::source::FfmpegSource::open(&video.to_string_lossy(), None, false)?;
    let tracker = ocellus::track::Tracker::new(Default::default())?;
    let rules = crate::run::demo_rules();
    let rules = ocellus::rules::Rules::new(rules.lines, rules.zones, rules.config)?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let summary = ocellus::pipeline::run(
        Box::new(source),
        &mut det,
        tracker,
        rules,
        std::sync::Arc::from("bench"),
        &ocellus::pipeline::Options {
            max_frames: Some(clip.len() as u64),
            ..Default::default()
        },
        &stop,
        |_| {},
        |_| {},
    )?;
    // B: raw vs detect on the second half
    for f in &clip[half..] {
        m.frame(&mut det, f)?;
    }
    let Measure {
        mut pre,
        mut full,
        mut raw,
        mut decode,
        raw_total,
        full_total,
    } = m;
    let n = clip.len();
    let raw_fps = n as f64 / raw_total.as_secs_f64();
    let detect_fps = n as f64 / full_total.as_secs_f64();
    let mut latencies = summary.frame_to_event_ms.clone();
    let card = det.card();
    let r = Report {
        frames: n,
        model: card.name.clone(),
        frame_size: [clip[0].width(), clip[0].height()],
        input_size: [card.input.width, card.input.height],
        startup_ms: ms(startup),
        raw_inference_fps: raw_fps,
        pipeline_fps: summary.steady_fps(),
        pipeline_wall_fps: summary.fps(),
        ratio: summary.steady_fps() / raw_fps,
        frame_to_event_ms_p99: percentile(&mut latencies, 0.99),
        pipeline_events: summary.event_count(),
        detect_fps,
        detect_ratio: detect_fps / raw_fps,
        raw_inference_ms_p50: percentile(&mut raw, 0.5),
        detect_ms_p50: percentile(&mut full, 0.5),
        preprocess_ms_p50: percentile(&mut pre, 0.5),
        preprocess_ms_p99: percentile(&mut pre, 0.99),
        decode_ms_p50: percentile(&mut decode, 0.5),
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
        Format::Text => {
            println!(
                "model {} ({}x{} input), {} frames of {}x{} from {}",
                r.model,
                r.input_size[0],
                r.input_size[1],
                r.frames,
                r.frame_size[0],
                r.frame_size[1],
                video.display()
            );
            println!(
                "start-up (card, checksum, session):  {:8.1} ms",
                r.startup_ms
            );
            println!(
                "raw inference:                        {:8.2} fps  (p50 {:.2} ms)",
                r.raw_inference_fps, r.raw_inference_ms_p50
            );
            println!(
                "preprocess + inference + decode:      {:8.2} fps  (p50 {:.2} ms)",
                r.detect_fps, r.detect_ms_p50
            );
            println!(
                "ratio (detect / raw):                 {:8.3}",
                r.detect_ratio
            );
            println!(
                "pipeline (decode→infer→track→rules):  {:8.2} fps steady, {:.2} fps wall ({} events)",
                r.pipeline_fps, r.pipeline_wall_fps, r.pipeline_events
            );
            println!("ratio (pipeline / raw):               {:8.3}", r.ratio);
            println!(
                "frame → event emitted:                {:8.1} ms p99",
                r.frame_to_event_ms_p99
            );
            println!(
                "preprocess alone:                     {:8.3} ms p50, {:.3} ms p99",
                r.preprocess_ms_p50, r.preprocess_ms_p99
            );
            println!(
                "decode alone (outputs → detections): {:8.3} ms p50",
                r.decode_ms_p50
            );
        }
    }
    Ok(0)
}
