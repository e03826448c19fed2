//! `ocellus bench`: in one run on the same real frames, the raw inference of the model under test
//! and of a baseline (the full-graph SSD when the model is the cut one), preprocess + inference +
//! decode, and the whole pipeline; then start-up and peak memory of a child `ocellus run` on the
//! same clip, since this process (the decoded clip, maybe two models) is not what a device runs.
//! Raw and detect timings are interleaved frame by frame, and the baseline's raw inference block by
//! block ([`BLOCK`] frames), so machine load hits every side alike.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procinfo::MIB;
use ocellus::card::ModelCard;
use ocellus::infer::Detector;

use crate::args::{Format, ModelArgs, detector_for, load_card, ms, percentile};

/// The targets.
const RATIO_MIN: f64 = 0.95;
const OVER_BASELINE_MIN: f64 = 1.2;
const FIRST_INFERENCE_MAX_MS: f64 = 1000.0;
const RSS_BEYOND_MODEL_MAX_MIB: f64 = 60.0;
/// Peak resident memory of the default detector's `ocellus run`.
const RSS_PEAK_MAX_MIB: f64 = 100.0;
/// Process start to model and source ready, once a first run has prepared the model.
const STARTUP_MAX_MS: f64 = 250.0;

/// Frames per block of the interleaving with the baseline: the model under test on a block, then
/// the baseline on the same block. Frame by frame, every run of one session would start right
/// after the other's, with cold caches and the other session's ONNX Runtime worker threads still
/// spinning (in two runs on a loaded 2-core machine that made the model under test's raw inference
/// 5-9 % slower, flattering pipeline / raw); blocks of 10 frames still share the machine's load.
const BLOCK: usize = 10;

/// The full-graph card a `*-cut` card is compared with by default.
const FULL_GRAPH_CARD: &str = "ssd-mobilenet-v2-coco.toml";

/// What `ocellus bench` measures (besides the model options).
pub(crate) struct Options {
    pub frames: usize,
    pub video: Option<PathBuf>,
    pub baseline: Option<PathBuf>,
    /// Start-up and peak memory from a child `ocellus run`.
    pub child: bool,
}

#[derive(Serialize)]
struct Report {
    frames: usize,
    model: String,
    model_file_mib: Option<f64>,
    frame_size: [u32; 2],
    input_size: [u32; 2],
    /// this process: card, checksum, session
    model_load_ms: f64,
    raw_inference_fps: f64,
    raw_inference_ms_p50: f64,
    /// steady state, first to last frame
    pipeline_fps: f64,
    /// including start-up (ffmpeg spawn, first decode)
    pipeline_wall_fps: f64,
    /// pipeline_fps / raw_inference_fps (target >= 0.95)
    ratio: f64,
    baseline: Option<String>,
    baseline_load_ms: Option<f64>,
    baseline_raw_fps: Option<f64>,
    baseline_raw_ms_p50: Option<f64>,
    /// raw_inference_fps / baseline_raw_fps
    raw_over_baseline_raw: Option<f64>,
    /// pipeline_fps / baseline_raw_fps (target >= 1.2)
    pipeline_over_baseline_raw: Option<f64>,
    /// child `ocellus run`: process start to the end of the first inference (target < 1000)
    first_inference_ms: Option<f64>,
    /// child `ocellus run`: process start to the model and source being ready
    startup_ms: Option<f64>,
    /// child `ocellus run`: peak resident memory (VmHWM)
    rss_peak_mib: Option<f64>,
    /// rss_peak_mib - model_file_mib (target <= 60)
    rss_beyond_model_mib: Option<f64>,
    /// child `ocellus run`: steady pipeline fps, in a process of its own
    child_pipeline_fps: Option<f64>,
    /// The baseline measured as the model is (when it is the model this one was made from, or
    /// named with --baseline): its pipeline, and its own child `ocellus run`.
    baseline_side_by_side: Option<SideBySide>,
    frame_to_event_ms_p99: Option<f64>,
    /// CPU time per frame of the pipeline pass, by thread (and the ffmpeg decoder)
    pipeline_threads: Vec<ThreadCpu>,
    pipeline_events: u64,
    detect_fps: f64,
    /// detect_fps / raw_inference_fps
    detect_ratio: f64,
    detect_ms_p50: f64,
    preprocess_ms_p50: f64,
    preprocess_ms_p99: f64,
    decode_ms_p50: f64,
    targets: Targets,
}

/// The baseline's figures that are measured like the model's when the two are compared side by
/// side (an INT8 model and its fp32 parent).
#[derive(Serialize)]
struct SideBySide {
    model_file_mib: Option<f64>,
    pipeline_fps: f64,
    pipeline_events: u64,
    pipeline_threads: Vec<ThreadCpu>,
    first_inference_ms: Option<f64>,
    startup_ms: Option<f64>,
    rss_peak_mib: Option<f64>,
    child_pipeline_fps: Option<f64>,
}

/// Each target and whether it was met (`null`: not measured in this run).
#[derive(Serialize)]
struct Targets {
    ratio_min: f64,
    pipeline_over_baseline_raw_min: f64,
    first_inference_ms_max: f64,
    rss_beyond_model_mib_max: f64,
    rss_peak_mib_max: f64,
    startup_ms_max: f64,
    ratio_met: bool,
    pipeline_over_baseline_raw_met: Option<bool>,
    first_inference_met: Option<bool>,
    rss_met: Option<bool>,
    rss_peak_met: Option<bool>,
    startup_met: Option<bool>,
}

/// The figures the targets are about.
struct Figures {
    ratio: f64,
    pipeline_over_baseline_raw: Option<f64>,
    first_inference_ms: Option<f64>,
    rss_beyond_model_mib: Option<f64>,
    rss_peak_mib: Option<f64>,
    startup_ms: Option<f64>,
}

impl Targets {
    /// The targets, and which of them the figures meet (`None` figures: not measured).
    fn evaluate(f: &Figures) -> Targets {
        Targets {
            ratio_min: RATIO_MIN,
            pipeline_over_baseline_raw_min: OVER_BASELINE_MIN,
            first_inference_ms_max: FIRST_INFERENCE_MAX_MS,
            rss_beyond_model_mib_max: RSS_BEYOND_MODEL_MAX_MIB,
            rss_peak_mib_max: RSS_PEAK_MAX_MIB,
            startup_ms_max: STARTUP_MAX_MS,
            ratio_met: f.ratio >= RATIO_MIN,
            pipeline_over_baseline_raw_met: f
                .pipeline_over_baseline_raw
                .map(|v| v >= OVER_BASELINE_MIN),
            first_inference_met: f.first_inference_ms.map(|v| v < FIRST_INFERENCE_MAX_MS),
            rss_met: f
                .rss_beyond_model_mib
                .map(|v| v <= RSS_BEYOND_MODEL_MAX_MIB),
            rss_peak_met: f.rss_peak_mib.map(|v| v <= RSS_PEAK_MAX_MIB),
            startup_met: f.startup_ms.map(|v| v <= STARTUP_MAX_MS),
        }
    }
}

/// Timings: detect and raw inference of the model under test interleaved frame by frame, raw
/// inference of the baseline on the same frames block by block.
#[derive(Default)]
struct Measure {
    pre: Vec<f64>,
    full: Vec<f64>,
    raw: Vec<f64>,
    decode: Vec<f64>,
    baseline_raw: Vec<f64>,
    raw_total: Duration,
    full_total: Duration,
    baseline_total: Duration,
}

impl Measure {
    /// `frames` block by block ([`BLOCK`] frames each), each through the model under test, then
    /// through the baseline.
    fn blocks(
        &mut self,
        det: &mut Detector,
        mut baseline: Option<&mut Detector>,
        frames: &[ocellus::RgbFrame],
    ) -> ocellus::Result<()> {
        for block in frames.chunks(BLOCK) {
            self.block(det, baseline.as_deref_mut(), block)?;
        }
        Ok(())
    }

    /// Every frame of `frames` (at most [`BLOCK`] of them) through the model under test, then
    /// through the baseline.
    fn block(
        &mut self,
        det: &mut Detector,
        baseline: Option<&mut Detector>,
        frames: &[ocellus::RgbFrame],
    ) -> ocellus::Result<()> {
        for f in frames {
            self.frame(det, f)?;
        }
        if let Some(base) = baseline {
            for f in frames {
                // its own input tensor (dtype, normalisation), prepared untimed
                base.preprocess(&f.as_view())?;
                let t = Instant::now();
                base.run_raw()?;
                let t = t.elapsed();
                self.baseline_raw.push(ms(t));
                self.baseline_total += t;
            }
        }
        Ok(())
    }

    fn frame(&mut self, det: &mut Detector, f: &ocellus::RgbFrame) -> ocellus::Result<()> {
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

/// `--baseline`; else the card the model was made from (`source.derived_from`: an INT8 model's
/// fp32 parent); else for a `*-cut` card the full-graph card next to it (the built-in one if
/// there is none there). The flag says whether the baseline is measured side by side with the
/// model (pipeline, start-up, memory), not for its raw inference alone.
fn baseline_card(
    card: &ModelCard,
    explicit: Option<&Path>,
) -> ocellus::Result<(Option<ModelCard>, bool)> {
    if let Some(path) = explicit {
        return ModelCard::load(path).map(|c| (Some(c), true));
    }
    if let Some(parent) = card.derived_from()? {
        return Ok((Some(parent), true));
    }
    Ok((full_graph_of(card)?, false))
}

/// `--model`, else the detector the demo and the example configs run (set beside its fp32 parent).
fn bench_card(args: &ModelArgs) -> ocellus::Result<ModelCard> {
    match &args.model {
        Some(_) => load_card(args),
        None => ModelCard::builtin_person_int8(),
    }
}

fn full_graph_of(card: &ModelCard) -> ocellus::Result<Option<ModelCard>> {
    if !card.name.ends_with("-cut") {
        return Ok(None);
    }
    match card.path.parent().map(|dir| dir.join(FULL_GRAPH_CARD)) {
        Some(path) if path.is_file() => ModelCard::load(path).map(Some),
        _ => ModelCard::builtin_ssd().map(Some),
    }
}

fn file_mib(path: &Path) -> Option<f64> {
    std::fs::metadata(path).ok().map(|m| m.len() as f64 / MIB)
}

/// The clip measured: `--video` (the footage's `vtest.avi` by default), its first
/// `--frames` frames (1..=10000) decoded up front.
fn read_clip(opts: &Options) -> ocellus::Result<(PathBuf, Vec<ocellus::RgbFrame>)> {
    let frames = opts.frames.clamp(1, 10_000);
    let video = opts
        .video
        .clone()
        .unwrap_or_else(|| ocellus::paths::footage_dir().join("vtest.avi"));
    let clip = ocellus::source::read_video_frames(&video, 0, frames)?;
    if clip.is_empty() {
        return Err(ocellus::Error::Frame(format!(
            "{} has no frames",
            video.display()
        )));
    }
    Ok((video, clip))
}

/// The baseline's detector, if there is a baseline, and how long it took to load.
fn load_baseline(
    onnxruntime: Option<PathBuf>,
    card: Option<&ModelCard>,
    args: &ModelArgs,
) -> ocellus::Result<Option<(Detector, Duration)>> {
    match card {
        Some(b) => {
            eprintln!(
                "loading the baseline {} ({}) for its raw inference; a full graph takes 7-14 s",
                b.name,
                b.path.display()
            );
            let t = Instant::now();
            let d = detector_for(onnxruntime, b, args, None)?;
            Ok(Some((d, t.elapsed())))
        }
        None => Ok(None),
    }
}

/// A few untimed runs first: the first runs allocate ORT's arenas.
fn warm_up(
    clip: &[ocellus::RgbFrame],
    det: &mut Detector,
    mut baseline: Option<&mut Detector>,
) -> ocellus::Result<()> {
    for f in clip.iter().take(3) {
        det.detect(&f.as_view())?;
        det.run_raw()?;
        if let Some(b) = baseline.as_deref_mut() {
            b.detect(&f.as_view())?;
            b.run_raw()?;
        }
    }
    Ok(())
}

/// A pipeline pass's summary and where its CPU time went.
type PassFigures = (ocellus::pipeline::Summary, Vec<ThreadCpu>);

/// CPU time of one group of threads over a pipeline pass, per frame.
#[derive(Serialize, Clone)]
struct ThreadCpu {
    thread: String,
    cpu_ms_per_frame: f64,
}

/// How often the threads' CPU times are read during a pass: the pipeline's threads end with it,
/// so their last reading stands for their total.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The whole pipeline on the same frames, from the file, with the same detector and threads; and
/// the CPU time each of this process's threads (and the ffmpeg decoder) spent on it, grouped by
/// what they do, in ms per frame.
fn pipeline_pass_by_thread(
    video: &Path,
    frames: usize,
    det: &mut Detector,
) -> ocellus::Result<(ocellus::pipeline::Summary, Vec<ThreadCpu>)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let before = crate::procinfo::thread_cpu();
    let children_before = crate::procinfo::children_cpu();
    let done = AtomicBool::new(false);
    let (summary, last) = std::thread::scope(|scope| {
        let sampler = std::thread::Builder::new()
            .name("bench-sampler".into())
            .spawn_scoped(scope, || {
                let mut last = crate::procinfo::thread_cpu();
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(SAMPLE_EVERY);
                    last.extend(crate::procinfo::thread_cpu());
                }
                last.extend(crate::procinfo::thread_cpu());
                last
            });
        let summary = (|| {
            let source =
                ocellus::source::FfmpegSource::open(&video.to_string_lossy(), None, false)?;
            let rules = crate::run::demo_rules();
            let rules = ocellus::rules::Rules::new(rules.lines, rules.zones, rules.config)?;
            let stop = AtomicBool::new(false);
            // the tracker as a deployment couples it to the detector's threshold
            ocellus::Pipeline::builder()
                .source(source)
                .borrowed_detector(det)
                .rules(rules)
                .device("bench")
                .max_frames(frames as u64)
                .build()?
                .run(&stop)
        })();
        done.store(true, Ordering::Relaxed);
        let last = match sampler {
            Ok(s) => s.join().unwrap_or_default(),
            Err(_) => Default::default(),
        };
        (summary, last)
    });
    let summary = summary?;
    let n = summary.frames_processed.max(1) as f64;
    let me = std::process::id();
    let mut groups: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for (tid, (name, cpu)) in &last {
        let spent = cpu - before.get(tid).map_or(0.0, |(_, c)| *c);
        let group = match name.as_str() {
            _ if *tid == me => "main: outputs → detections, tracker, rules",
            "ocellus-capture" => "ocellus-capture: read frames, preprocess",
            "ocellus-infer" => "ocellus-infer: ONNX Runtime (its calling thread)",
            "ocellus-ffmpeg-s" | "ocellus-ffmpeg-stderr" => "ffmpeg's stderr reader",
            "bench-sampler" => continue,
            _ => "other threads: ONNX Runtime's pool",
        };
        *groups.entry(group).or_default() += spent.max(0.0);
    }
    groups.insert(
        "ffmpeg (child process): decode, convert to RGB",
        (crate::procinfo::children_cpu() - children_before).max(0.0),
    );
    let threads = groups
        .into_iter()
        .map(|(thread, s)| ThreadCpu {
            thread: thread.to_owned(),
            cpu_ms_per_frame: s * 1e3 / n,
        })
        .collect();
    Ok((summary, threads))
}

/// The timed passes: A (raw vs detect, and the baseline's raw) on the first half of the clip,
/// the whole pipeline on all of it (then the baseline's, when `side_by_side`), B (the same as A)
/// on the second half.
fn timed_passes(
    clip: &[ocellus::RgbFrame],
    video: &Path,
    det: &mut Detector,
    mut baseline: Option<&mut Detector>,
    side_by_side: bool,
) -> ocellus::Result<(Measure, PassFigures, Option<PassFigures>)> {
    // A: raw vs detect (and the baseline's raw) on the first half
    let half = clip.len().div_ceil(2);
    let mut m = Measure::default();
    m.blocks(det, baseline.as_deref_mut(), &clip[..half])?;
    let summary = pipeline_pass_by_thread(video, clip.len(), det)?;
    let baseline_summary = match baseline.as_deref_mut() {
        Some(b) if side_by_side => {
            let s = pipeline_pass_by_thread(video, clip.len(), b)?;
            let threshold = ocellus::Inference::score_threshold(&*b);
            ocellus::Inference::set_report_floor(b, threshold);
            Some(s)
        }
        _ => None,
    };
    // B measures the detector as A did, at its own threshold
    let threshold = ocellus::Inference::score_threshold(&*det);
    ocellus::Inference::set_report_floor(det, threshold);
    // B: the same on the second half
    m.blocks(det, baseline, &clip[half..])?;
    Ok((m, summary, baseline_summary))
}

/// The baseline's figures beside the model's: its pipeline pass `summary`, and with `child` its
/// own child `ocellus run` on the same clip.
fn side_by_side_figures(
    onnxruntime: Option<PathBuf>,
    args: &ModelArgs,
    (card, (summary, threads), file_mib): (&ModelCard, &PassFigures, Option<f64>),
    (video, frames): (&Path, usize),
    child: bool,
) -> ocellus::Result<SideBySide> {
    let c = if child {
        Some(measure_child(onnxruntime, args, card, video, frames)?)
    } else {
        None
    };
    Ok(SideBySide {
        model_file_mib: file_mib,
        pipeline_fps: summary.steady_fps(),
        pipeline_events: summary.event_count(),
        pipeline_threads: threads.clone(),
        first_inference_ms: c.as_ref().and_then(|c| c.first_inference_ms),
        startup_ms: c.as_ref().and_then(|c| c.startup_ms),
        rss_peak_mib: c.as_ref().and_then(|c| c.rss_peak_mib),
        child_pipeline_fps: c.as_ref().and_then(|c| c.steady_fps),
    })
}

/// Start-up and peak memory from a child `ocellus run` on the same `frames` frames.
fn measure_child(
    onnxruntime: Option<PathBuf>,
    args: &ModelArgs,
    card: &ModelCard,
    video: &Path,
    frames: usize,
) -> ocellus::Result<ChildFigures> {
    eprintln!("start-up and memory: a child `ocellus run` on the same {frames} frames");
    child_run(onnxruntime, args, card, video, frames)
}

pub(crate) fn run(
    onnxruntime: Option<PathBuf>,
    args: &ModelArgs,
    opts: &Options,
    format: Format,
) -> ocellus::Result<u8> {
    let (video, clip) = read_clip(opts)?;
    let card = bench_card(args)?;
    let (baseline_card, side_by_side) = baseline_card(&card, opts.baseline.as_deref())?;
    let t0 = Instant::now();
    let mut det = detector_for(onnxruntime.clone(), &card, args, None)?;
    let model_load = t0.elapsed();
    let mut baseline = load_baseline(onnxruntime.clone(), baseline_card.as_ref(), args)?;

    warm_up(&clip, &mut det, baseline.as_mut().map(|(b, _)| b))?;
    let (m, (summary, pipeline_threads), baseline_summary) = timed_passes(
        &clip,
        &video,
        &mut det,
        baseline.as_mut().map(|(b, _)| b),
        side_by_side,
    )?;
    let model_path = det.model_path().to_path_buf();
    let model_file_mib = file_mib(&model_path);
    let baseline_file_mib = baseline
        .as_ref()
        .and_then(|(b, _)| file_mib(b.model_path()));
    // the two sessions' threads and memory are not the child's business
    drop(det);
    let baseline_load = baseline.map(|(_, load)| load);

    let child = opts
        .child
        .then(|| measure_child(onnxruntime.clone(), args, &card, &video, clip.len()))
        .transpose()?;
    let baseline_side_by_side = match (&baseline_card, baseline_summary) {
        (Some(b), Some(s)) => Some(side_by_side_figures(
            onnxruntime,
            args,
            (b, &s, baseline_file_mib),
            (&video, clip.len()),
            opts.child,
        )?),
        _ => None,
    };

    let Measure {
        mut pre,
        mut full,
        mut raw,
        mut decode,
        mut baseline_raw,
        raw_total,
        full_total,
        baseline_total,
    } = m;
    let n = clip.len();
    let fps = |total: Duration| n as f64 / total.as_secs_f64();
    let p = |v: &mut [f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    let raw_fps = fps(raw_total);
    let detect_fps = fps(full_total);
    let baseline_raw_fps = baseline_load.map(|_| fps(baseline_total));
    let pipeline_fps = summary.steady_fps();
    let rss_peak_mib = child.as_ref().and_then(|c| c.rss_peak_mib);
    let rss_beyond_model_mib = rss_peak_mib.zip(model_file_mib).map(|(r, m)| r - m);
    let first_inference_ms = child.as_ref().and_then(|c| c.first_inference_ms);
    let ratio = pipeline_fps / raw_fps;
    let pipeline_over_baseline_raw = baseline_raw_fps.map(|b| pipeline_fps / b);
    let r = Report {
        frames: n,
        model: card.name.clone(),
        model_file_mib,
        frame_size: [clip[0].width(), clip[0].height()],
        input_size: [card.input.width, card.input.height],
        model_load_ms: ms(model_load),
        raw_inference_fps: raw_fps,
        raw_inference_ms_p50: p(&mut raw, 0.5),
        pipeline_fps,
        pipeline_wall_fps: summary.fps(),
        ratio,
        baseline: baseline_card.as_ref().map(|b| b.name.clone()),
        baseline_load_ms: baseline_load.map(ms),
        baseline_raw_fps,
        baseline_raw_ms_p50: percentile(&mut baseline_raw, 0.5),
        raw_over_baseline_raw: baseline_raw_fps.map(|b| raw_fps / b),
        pipeline_over_baseline_raw,
        first_inference_ms,
        startup_ms: child.as_ref().and_then(|c| c.startup_ms),
        rss_peak_mib,
        rss_beyond_model_mib,
        child_pipeline_fps: child.as_ref().and_then(|c| c.steady_fps),
        baseline_side_by_side,
        frame_to_event_ms_p99: summary.frame_to_event_ms.quantile(0.99),
        pipeline_threads,
        pipeline_events: summary.event_count(),
        detect_fps,
        detect_ratio: detect_fps / raw_fps,
        detect_ms_p50: p(&mut full, 0.5),
        preprocess_ms_p50: p(&mut pre, 0.5),
        preprocess_ms_p99: p(&mut pre, 0.99),
        decode_ms_p50: p(&mut decode, 0.5),
        targets: Targets::evaluate(&Figures {
            ratio,
            pipeline_over_baseline_raw,
            first_inference_ms,
            rss_beyond_model_mib,
            rss_peak_mib,
            startup_ms: child.as_ref().and_then(|c| c.startup_ms),
        }),
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
        Format::Text => print_text(&r, &video, opts.child),
    }
    Ok(0)
}

fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

fn or_dash(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn print_text(r: &Report, video: &Path, child: bool) {
    let t = &r.targets;
    println!(
        "model {} ({}x{} input, file {} MiB), {} frames of {}x{} from {}",
        r.model,
        r.input_size[0],
        r.input_size[1],
        or_dash(r.model_file_mib, 1),
        r.frames,
        r.frame_size[0],
        r.frame_size[1],
        video.display()
    );
    println!(
        "model load (card, checksum, session): {:9.1} ms",
        r.model_load_ms
    );
    println!(
        "raw inference:                        {:9.2} fps  (p50 {:.2} ms)",
        r.raw_inference_fps, r.raw_inference_ms_p50
    );
    match (&r.baseline, r.baseline_raw_fps) {
        (Some(name), Some(fps)) => println!(
            "raw inference, baseline:              {fps:9.2} fps  (p50 {} ms; {name}, loaded in {} ms; the model under test is {}x as fast)",
            or_dash(r.baseline_raw_ms_p50, 2),
            or_dash(r.baseline_load_ms, 0),
            or_dash(r.raw_over_baseline_raw, 2)
        ),
        _ => println!("raw inference, baseline:                   none (--baseline CARD)"),
    }
    println!(
        "preprocess + inference + decode:      {:9.2} fps  (p50 {:.2} ms)",
        r.detect_fps, r.detect_ms_p50
    );
    println!(
        "ratio (detect / raw):                 {:9.3}",
        r.detect_ratio
    );
    println!(
        "pipeline (decode→infer→track→rules):  {:9.2} fps steady, {:.2} fps wall ({} events)",
        r.pipeline_fps, r.pipeline_wall_fps, r.pipeline_events
    );
    println!(
        "ratio (pipeline / raw):               {:9.3}  target >= {}: {}",
        r.ratio,
        t.ratio_min,
        met(Some(t.ratio_met))
    );
    println!(
        "pipeline / baseline raw:              {:>9}  target >= {}: {}",
        or_dash(r.pipeline_over_baseline_raw, 3),
        t.pipeline_over_baseline_raw_min,
        met(t.pipeline_over_baseline_raw_met)
    );
    println!(
        "frame → event emitted:                {:>9} ms p99",
        or_dash(r.frame_to_event_ms_p99, 1)
    );
    if child {
        println!(
            "start-up (child `ocellus run`):       {:>9} ms process start → first inference (ready at {} ms)  target < {}: {}",
            or_dash(r.first_inference_ms, 0),
            or_dash(r.startup_ms, 0),
            t.first_inference_ms_max,
            met(t.first_inference_met)
        );
        println!(
            "RSS peak (child `ocellus run`):       {:>9} MiB, model file {} MiB + {} MiB  target <= model + {} MiB: {}",
            or_dash(r.rss_peak_mib, 1),
            or_dash(r.model_file_mib, 1),
            or_dash(r.rss_beyond_model_mib, 1),
            t.rss_beyond_model_mib_max,
            met(t.rss_met)
        );
        println!(
            "pipeline in the child:                {:>9} fps steady",
            or_dash(r.child_pipeline_fps, 2)
        );
        println!(
            "start-up, model prepared:             {:>9} ms process start → model and source ready  target <= {}: {}",
            or_dash(r.startup_ms, 0),
            t.startup_ms_max,
            met(t.startup_met)
        );
        println!(
            "RSS peak:                             {:>9} MiB  target <= {} MiB: {}",
            or_dash(r.rss_peak_mib, 1),
            t.rss_peak_mib_max,
            met(t.rss_peak_met)
        );
    } else {
        println!("start-up, RSS peak:                   not measured (--no-child)");
    }
    println!(
        "preprocess alone:                     {:9.3} ms p50, {:.3} ms p99",
        r.preprocess_ms_p50, r.preprocess_ms_p99
    );
    println!(
        "decode alone (outputs → detections):  {:9.3} ms p50",
        r.decode_ms_p50
    );
    print_threads(r);
    if let (Some(b), Some(name)) = (&r.baseline_side_by_side, &r.baseline) {
        print_side_by_side(r, b, name);
    }
}

/// Where the pipeline pass's CPU time went, thread by thread, against the time the machine had.
fn print_threads(r: &Report) {
    let total: f64 = r.pipeline_threads.iter().map(|t| t.cpu_ms_per_frame).sum();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "pipeline CPU per frame, by thread:    {total:9.2} ms in all; the machine had {:.2} ms a frame ({cores} cores at {:.1} fps)",
        cores as f64 * 1e3 / r.pipeline_fps.max(1e-9),
        r.pipeline_fps
    );
    for t in &r.pipeline_threads {
        println!("  {:<52} {:7.2} ms", t.thread, t.cpu_ms_per_frame);
    }
}

/// The model and its baseline in columns, with the ratio of each figure.
fn print_side_by_side(r: &Report, b: &SideBySide, baseline: &str) {
    println!();
    println!(
        "side by side, measured in this run: {} | {baseline}",
        r.model
    );
    let row = |what: &str, model: Option<f64>, base: Option<f64>, decimals: usize| {
        let ratio = model
            .zip(base)
            .filter(|(_, b)| *b > 0.0)
            .map(|(m, b)| m / b);
        println!(
            "  {what:<32} {:>10} | {:<10} ratio {}",
            or_dash(model, decimals),
            or_dash(base, decimals),
            or_dash(ratio, 2)
        );
    };
    row("model file, MiB", r.model_file_mib, b.model_file_mib, 1);
    row(
        "raw inference, fps",
        Some(r.raw_inference_fps),
        r.baseline_raw_fps,
        1,
    );
    row(
        "pipeline, fps",
        Some(r.pipeline_fps),
        Some(b.pipeline_fps),
        1,
    );
    row(
        "pipeline events",
        Some(r.pipeline_events as f64),
        Some(b.pipeline_events as f64),
        0,
    );
    row(
        "pipeline in a child, fps",
        r.child_pipeline_fps,
        b.child_pipeline_fps,
        1,
    );
    row("start-up (ready), ms", r.startup_ms, b.startup_ms, 0);
    row(
        "start → first inference, ms",
        r.first_inference_ms,
        b.first_inference_ms,
        0,
    );
    row("RSS peak, MiB", r.rss_peak_mib, b.rss_peak_mib, 1);
    println!("  pipeline CPU per frame, ms, by thread:");
    for t in &r.pipeline_threads {
        let theirs = b
            .pipeline_threads
            .iter()
            .find(|x| x.thread == t.thread)
            .map(|x| x.cpu_ms_per_frame);
        row(
            &format!("  {}", t.thread.split(':').next().unwrap_or_default()),
            Some(t.cpu_ms_per_frame),
            theirs,
            2,
        );
    }
}

/// What the child `ocellus run` reported in its `--summary`.
struct ChildFigures {
    first_inference_ms: Option<f64>,
    startup_ms: Option<f64>,
    rss_peak_mib: Option<f64>,
    steady_fps: Option<f64>,
}

/// A TOML string (quoted and escaped).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn absolute(p: &Path) -> ocellus::Result<PathBuf> {
    std::path::absolute(p).map_err(|source| ocellus::Error::Io {
        path: p.to_path_buf(),
        source,
    })
}

/// The config of the child run: the clip, the card, the demo's line and zone, the broker.
fn child_config(
    args: &ModelArgs,
    card: &Path,
    video: &Path,
    port: u16,
    queue: &Path,
) -> ocellus::Result<String> {
    use std::fmt::Write;
    let mut c = String::new();
    let _ = writeln!(c, "[device]\nid = \"bench\"\n");
    if let Some(n) = args.threads {
        let _ = writeln!(c, "[runtime]\nthreads = {n}\n");
    }
    let _ = writeln!(
        c,
        "[source]\nkind = \"video\"\npath = {}\n",
        toml_str(&absolute(video)?.to_string_lossy())
    );
    let _ = writeln!(c, "[model]\ncard = {}", toml_str(&card.to_string_lossy()));
    if let Some(t) = args.threshold {
        let _ = writeln!(c, "threshold = {t}");
    }
    let rules = crate::run::demo_rules();
    let labels = |l: &[String]| {
        let v: Vec<String> = l.iter().map(|s| toml_str(s)).collect();
        format!("[{}]", v.join(", "))
    };
    for l in &rules.lines {
        let _ = writeln!(
            c,
            "\n[[rules.line]]\nname = {}\na = {:?}\nb = {:?}\nlabels = {}",
            toml_str(&l.name),
            l.a,
            l.b,
            labels(&l.labels)
        );
    }
    for z in &rules.zones {
        let _ = writeln!(
            c,
            "\n[[rules.zone]]\nname = {}\npolygon = {:?}\nlabels = {}",
            toml_str(&z.name),
            z.polygon,
            labels(&z.labels)
        );
        if let Some(d) = z.dwell {
            let _ = writeln!(c, "dwell_s = {}", d.as_secs_f64());
        }
    }
    let _ = writeln!(
        c,
        "\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\ntopic_prefix = \"ocellus-bench\"\n\n[queue]\ndir = {}",
        toml_str(&queue.to_string_lossy())
    );
    Ok(c)
}

/// The text of the built-in card `card` was parsed from.
fn builtin_text(card: &ModelCard) -> Option<&'static str> {
    use ocellus::card::{BUILTIN_BLAZEFACE, BUILTIN_SSD, BUILTIN_SSD_CUT, BUILTIN_SSD_PERSON_INT8};
    [
        BUILTIN_SSD_PERSON_INT8,
        BUILTIN_SSD_CUT,
        BUILTIN_SSD,
        BUILTIN_BLAZEFACE,
    ]
    .into_iter()
    .find(|text| ModelCard::parse(text, card.path.clone(), None).is_ok_and(|c| c.name == card.name))
}

/// `ocellus run --summary` in a child process on the same clip and card, publishing to an
/// in-process broker: start-up and peak memory as a device running this model would see them.
fn child_run(
    onnxruntime: Option<PathBuf>,
    args: &ModelArgs,
    card: &ModelCard,
    video: &Path,
    frames: usize,
) -> ocellus::Result<ChildFigures> {
    let fail = |message: String| ocellus::Error::InvalidOption {
        name: "bench child run".into(),
        message: format!("{message} (--no-child skips this part)"),
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ocellus::Error::Io { path, source }
    };
    let dir = crate::run::TempDir::new("ocellus-bench-child")?;
    let card_path = if card.path.is_file() {
        absolute(&card.path)?
    } else {
        // a built-in card, as a file the config can name (the model is found in the cache)
        let text = builtin_text(card).ok_or_else(|| {
            fail(format!(
                "{} is neither a file nor a built-in card",
                card.path.display()
            ))
        })?;
        let p = dir.path().join(format!("{}.toml", card.name));
        std::fs::write(&p, text).map_err(io(&p))?;
        p
    };
    let (_, port) = crate::broker::start_embedded(None)?;
    let config = dir.path().join("bench.toml");
    let text = child_config(args, &card_path, video, port, &dir.path().join("queue"))?;
    std::fs::write(&config, text).map_err(io(&config))?;
    let summary = dir.path().join("summary.json");
    let exe = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    let mut cmd = std::process::Command::new(&exe);
    if let Some(ort) = &onnxruntime {
        cmd.arg("--onnxruntime").arg(ort);
    }
    let out = cmd
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--summary")
        .arg(&summary)
        .args(["--quiet", "--frames", &frames.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(io(&exe))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(fail(format!(
            "`ocellus run` on the clip exited with {}:\n{}",
            out.status,
            tail.join("\n")
        )));
    }
    let text = std::fs::read(&summary).map_err(io(&summary))?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| fail(format!("{} is not JSON: {e}", summary.display())))?;
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    if card.name.as_str() != v.get("model").and_then(|m| m.as_str()).unwrap_or_default() {
        return Err(fail(format!(
            "the child ran {:?}, not {}",
            v.get("model"),
            card.name
        )));
    }
    Ok(ChildFigures {
        first_inference_ms: num("first_inference_ms"),
        startup_ms: num("startup_ms"),
        rss_peak_mib: num("rss_peak_mib"),
        steady_fps: num("steady_fps"),
    })
}
