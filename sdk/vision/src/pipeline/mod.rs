//! The pipeline: source → preprocess → inference → post-processing, tracking, rules → events,
//! in three stages on their own threads, joined by bounded queues, so that decoding the next
//! frame and analysing the last one overlap the model run.
//!
//! ```text
//! capture thread ──[FrameQueue: 1]──▶ inference thread ──[channel: 2]──▶ caller's thread
//! (Source::next_frame,                (Engine::run: the ONNX          (Decoder::decode: anchors,
//!  Preprocessor: resize, normalise)    Runtime session only)           NMS; Tracker, Rules, on_event)
//!        ▲                                  │  ▲                             │
//!        └──────── input tensors ───────────┘  └──────── output buffers ─────┘
//! ```
//!
//! Buffers go round instead of being allocated per frame: frame pixels go back to the source
//! ([`Source::recycle`]) once preprocessed, input tensors back to the capture stage once the
//! model has run, output buffers back to the inference stage once decoded. Every pool is bounded
//! by the queues it travels through.
//!
//! When inference is slower than the source, a **live** source's oldest waiting frame is dropped
//! and counted (the camera does not wait); a **file** source waits for room, so files are paced by
//! inference and every frame is processed. Stopping (the `stop` flag, set on Ctrl-C/SIGTERM) stops
//! capture; frames already in flight are finished, tracks are ended, every zone visit gets its exit
//! event, and only then does [`Pipeline::run`] return.
//!
//! With an [`Inference`] other than the [`Detector`] (a sensor that infers on the chip, an
//! accelerator, your own code), the inference thread calls [`Inference::infer`] on the frame and
//! the capture stage only reads frames.
//!
//! Build one with [`Pipeline::builder`]:
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use ocellus::{Detector, ModelCard, Pipeline, Runtime, JsonLinesSink};
//! use ocellus::rules::{LineRule, RulesConfig, Rules};
//! use ocellus::source::FfmpegSource;
//!
//! # fn main() -> ocellus::Result<()> {
//! let runtime = Runtime::init(&ocellus::runtime::Locator::from_env(None))?;
//! let card = ModelCard::load("models/ssd-mobilenet-v2-coco-cut.toml")?;
//! let door = LineRule { name: "door".into(), a: [0.05, 0.55], b: [0.95, 0.55], labels: vec![] };
//! let summary = Pipeline::builder()
//!     .source(FfmpegSource::open("vtest.avi", None, false)?)
//!     .detector(Detector::new(runtime, &card, &Default::default())?)
//!     .rules(Rules::new(vec![door], vec![], RulesConfig::default())?)
//!     .sink(JsonLinesSink::append("events.jsonl")?)
//!     .build()?
//!     .run(&AtomicBool::new(false))?;
//! println!("{} events from {} frames", summary.event_count(), summary.frames_processed);
//! # Ok(())
//! # }
//! ```

mod queue;
mod run;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ocellus_core::{EventSink, Inference};

use crate::error::{Error, Result};
use crate::event::EventType;
use crate::infer::{Detection, Detector};
use crate::preprocess::RgbFrame;
use crate::rules::{Rules, RulesConfig};
use crate::source::{Source, SourceStats};
use crate::track::{Tracker, TrackerConfig, TrackerOutput};

/// Frames waiting for inference (live sources drop the oldest beyond this).
pub const FRAME_QUEUE: usize = 1;
/// Model outputs waiting for post-processing and the tracker.
pub const RESULT_QUEUE: usize = 2;
/// Input tensors and output buffers in circulation beyond the queues (one being filled, one in
/// use by the next stage).
const IN_HAND: usize = 2;

/// What the pipeline did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Summary {
    /// Frames read from the source.
    pub frames_read: u64,
    /// Frames that went through detection, tracking and rules.
    pub frames_processed: u64,
    /// Frames dropped because inference was behind a live source.
    pub frames_dropped: u64,
    /// Frames the detector failed on (counted, skipped).
    pub frames_failed: u64,
    /// What the source could not deliver.
    pub source: SourceStats,
    /// Events emitted, by type.
    pub events: BTreeMap<EventType, u64>,
    /// Events a sink did not take (counted per refusal: an event two sinks refused counts twice).
    pub sink_errors: u64,
    /// Bytes of the raw RGB frames processed (what a camera streaming video would have sent).
    pub raw_frame_bytes: u64,
    /// Wall time from start to the end of the last frame.
    pub elapsed: Duration,
    /// Wall time from start to the end of the first frame (start-up: source open, first decode,
    /// first inference).
    pub first_frame: Option<Duration>,
    /// Wall time from start to the end of the last frame's analytics.
    pub last_frame: Option<Duration>,
    /// When the first frame's detections reached the analytics stage (the end of the first
    /// inference and its decoding): with the process's own start time, the start-up figure.
    pub first_result_at: Option<Instant>,
    /// Milliseconds from a frame leaving the source to each of its events being emitted, as a
    /// fixed-size histogram (a run of any length keeps the same memory).
    pub frame_to_event_ms: crate::histogram::Histogram,
    /// The error that ended capture early, if any.
    pub source_error: Option<String>,
}

impl Summary {
    /// Processed frames per second of wall time.
    pub fn fps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.frames_processed as f64 / s
        } else {
            0.0
        }
    }
    /// Steady-state throughput: frames per second between the first and the last processed frame
    /// (start-up excluded; see [`Summary::fps`] for the wall-clock figure).
    pub fn steady_fps(&self) -> f64 {
        match (self.first_frame, self.last_frame) {
            (Some(a), Some(b)) if b > a && self.frames_processed > 1 => {
                (self.frames_processed - 1) as f64 / (b - a).as_secs_f64()
            }
            _ => self.fps(),
        }
    }

    /// Total events.
    pub fn event_count(&self) -> u64 {
        self.events.values().sum()
    }
}

/// Progress, reported after every processed frame.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Frames processed so far.
    pub processed: u64,
    /// Frames expected in total, when known.
    pub total: Option<u64>,
    /// Wall time so far.
    pub elapsed: Duration,
}

/// Pipeline settings.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stop after this many frames from the source.
    pub max_frames: Option<u64>,
    /// Counters updated while the pipeline runs, for a health reporter on another thread.
    pub live: Option<Arc<LiveCounters>>,
    /// Changes made while it runs (new rules, snapshot requests), e.g. from a cloud hub.
    pub control: Option<Arc<LiveControl>>,
    /// Sees every frame's tracks (to write them out, or draw them).
    pub tracks: Option<TrackTap>,
    /// Keep every frame's pixels until the [`tracks`](Options::tracks) tap has seen them (to
    /// draw on them). Without it the tap sees pixels only where a snapshot was asked for.
    pub tap_pixels: bool,
}

/// Changes to a running pipeline, from another thread. The pipeline looks at it once per frame.
#[derive(Debug, Default)]
pub struct LiveControl {
    rules: Mutex<Option<Rules>>,
    snapshot: Mutex<Option<SnapshotRequest>>,
    want_frame: AtomicBool,
}

/// A request for the next frame as a privacy-safe snapshot.
#[derive(Debug)]
pub struct SnapshotRequest {
    /// The encoded JPEG's bound.
    pub max_bytes: usize,
    /// Lines to draw.
    pub lines: Vec<crate::rules::LineRule>,
    /// Zones to draw.
    pub zones: Vec<crate::rules::ZoneRule>,
    /// Where the snapshot (or why there is none) goes.
    pub reply: std::sync::mpsc::SyncSender<Result<(u64, crate::snapshot::Snapshot)>>,
}

impl LiveControl {
    /// Replace the rules from the next frame on. The old rules end first: every open zone visit
    /// gets its `zone_exited`, so no visit is left without an end.
    pub fn replace_rules(&self, rules: Rules) {
        if let Ok(mut r) = self.rules.lock() {
            *r = Some(rules);
        }
    }

    /// Ask for a snapshot of the next frame (people hidden); the answer, with the frame number,
    /// comes on `request.reply`. A newer request replaces one not yet served.
    pub fn request_snapshot(&self, request: SnapshotRequest) {
        if let Ok(mut s) = self.snapshot.lock() {
            *s = Some(request);
        }
        self.want_frame.store(true, Ordering::Relaxed);
    }

    pub(crate) fn take_rules(&self) -> Option<Rules> {
        self.rules.lock().ok().and_then(|mut r| r.take())
    }

    pub(crate) fn take_snapshot(&self) -> Option<SnapshotRequest> {
        self.snapshot.lock().ok().and_then(|mut s| s.take())
    }
}

/// Counters the pipeline updates as it goes (relaxed atomics: a consistent-enough view for health
/// reports; [`Summary`] has the exact figures at the end).
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Frames processed.
    pub processed: AtomicU64,
    /// Frames dropped because inference was behind a live source.
    pub dropped: AtomicU64,
    /// Frames the detector failed on.
    pub failed: AtomicU64,
    /// Frames the source skipped (undecodable).
    pub skipped: AtomicU64,
    /// Source reconnects.
    pub reconnects: AtomicU64,
    /// Frames the source knows it lost.
    pub lost: AtomicU64,
    /// Events emitted.
    pub events: AtomicU64,
    /// Why the last failed frame failed (one message, replaced by the next).
    pub last_frame_error: std::sync::Mutex<Option<String>>,
}

/// How frames become detections.
enum Stage<'a> {
    /// The ONNX Runtime detector, with preprocessing, the model run and decoding on three threads.
    Detector(Box<Detector>),
    /// The same, borrowed.
    BorrowedDetector(&'a mut Detector),
    /// Anything else, one call per frame on the inference thread.
    Custom(Box<dyn Inference + 'a>),
}

/// A source, an inference, a tracker, rules and sinks, ready to run. Made by
/// [`Pipeline::builder`].
pub struct Pipeline<'a> {
    source: Box<dyn Source + 'a>,
    stage: Stage<'a>,
    tracker: Tracker,
    rules: Rules,
    sinks: Vec<Box<dyn EventSink + 'a>>,
    device: Arc<str>,
    options: Options,
}

impl std::fmt::Debug for Pipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match &self.stage {
            Stage::Detector(d) => d.describe(),
            Stage::BorrowedDetector(d) => d.describe(),
            Stage::Custom(i) => i.describe(),
        };
        f.debug_struct("Pipeline")
            .field("source", &self.source.describe())
            .field("inference", &stage)
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.describe()).collect::<Vec<_>>(),
            )
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl<'a> Pipeline<'a> {
    /// Start building a pipeline.
    pub fn builder() -> PipelineBuilder<'a> {
        PipelineBuilder::default()
    }

    /// Run to the end of the source, the frame limit, or until `stop` is set; then end every
    /// track and zone visit (their events go to the sinks too), and flush the sinks.
    ///
    /// # Errors
    /// Only a pipeline that cannot start its threads fails; failed frames, source errors and
    /// sink refusals are counted in the [`Summary`].
    pub fn run(self, stop: &AtomicBool) -> Result<Summary> {
        self.run_with_progress(stop, |_| {})
    }

    /// [`Pipeline::run`], calling `on_progress` after every processed frame.
    ///
    /// # Errors
    /// As [`Pipeline::run`].
    pub fn run_with_progress(
        self,
        stop: &AtomicBool,
        on_progress: impl FnMut(&Progress),
    ) -> Result<Summary> {
        run::run(self, stop, on_progress)
    }

    /// The detector, when the pipeline was built with one.
    pub fn detector(&self) -> Option<&Detector> {
        match &self.stage {
            Stage::Detector(d) => Some(d),
            Stage::BorrowedDetector(d) => Some(d),
            Stage::Custom(_) => None,
        }
    }
}

/// Builds a [`Pipeline`]: a source, an inference (the [`Detector`] or any [`Inference`]),
/// tracker settings, rules and any number of sinks.
///
/// [`PipelineBuilder::build`] couples the inference's threshold to the tracker
/// ([`TrackerConfig::coupled_to`]): the inference reports down to the tracker's low threshold for
/// its second association pass, and its own threshold becomes the score at which tracks start
/// and are confirmed.
#[must_use]
pub struct PipelineBuilder<'a> {
    source: Option<Box<dyn Source + 'a>>,
    stage: Option<Stage<'a>>,
    tracker: TrackerConfig,
    rules: Option<Rules>,
    sinks: Vec<Box<dyn EventSink + 'a>>,
    device: Arc<str>,
    options: Options,
}

/// What [`PipelineBuilder::on_tracks`] is shown after every frame.
#[derive(Debug, Clone, Copy)]
pub struct TracksSeen<'t> {
    /// The frame's sequence number (from 0, as the source numbers frames).
    pub seq: u64,
    /// Its media time.
    pub t: std::time::Duration,
    /// Its size in pixels, when the source delivered pixels (an on-sensor source may not).
    pub size: Option<(u32, u32)>,
    /// The tracker's output for it: the confirmed tracks observed and the tracks that ended.
    pub tracks: &'t TrackerOutput,
    /// The detections the tracker was given (down to its low threshold).
    pub detections: &'t [Detection],
    /// What the rules made of this frame (before the sinks saw it).
    pub events: &'t [crate::rules::RuleEvent],
    /// The frame's pixels, with [`Options::tap_pixels`] (on the detector's path or the caller's
    /// inference; an on-sensor source without pixels has none).
    pub image: Option<&'t RgbFrame>,
}

/// A callback that sees every frame's tracks ([`Options::tracks`], [`PipelineBuilder::on_tracks`]),
/// shareable so that [`Options`] stays `Clone`.
#[derive(Clone)]
pub struct TrackTap(Arc<Mutex<TrackFn>>);

/// The callback inside a [`TrackTap`].
type TrackFn = dyn FnMut(&TracksSeen<'_>) + Send;

impl TrackTap {
    /// Wrap a callback.
    pub fn new(f: impl FnMut(&TracksSeen<'_>) + Send + 'static) -> Self {
        TrackTap(Arc::new(Mutex::new(f)))
    }

    pub(crate) fn call(&self, seen: &TracksSeen<'_>) {
        if let Ok(mut f) = self.0.lock() {
            f(seen);
        }
    }
}

impl std::fmt::Debug for TrackTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrackTap")
    }
}

impl Default for PipelineBuilder<'_> {
    fn default() -> Self {
        PipelineBuilder {
            source: None,
            stage: None,
            tracker: TrackerConfig::default(),
            rules: None,
            sinks: Vec::new(),
            device: Arc::from("ocellus"),
            options: Options::default(),
        }
    }
}

impl std::fmt::Debug for PipelineBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("source", &self.source.as_ref().map(|s| s.describe()))
            .field("sinks", &self.sinks.len())
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl<'a> PipelineBuilder<'a> {
    /// Where frames come from.
    pub fn source(self, source: impl Source + 'a) -> Self {
        self.boxed_source(Box::new(source))
    }

    /// Where frames come from, already boxed.
    pub fn boxed_source(mut self, source: Box<dyn Source + 'a>) -> Self {
        self.source = Some(source);
        self
    }

    /// The ONNX Runtime detector: preprocessing, the model run and decoding overlap on three
    /// threads.
    pub fn detector(mut self, detector: Detector) -> Self {
        self.stage = Some(Stage::Detector(Box::new(detector)));
        self
    }

    /// [`PipelineBuilder::detector`], with a detector that stays the caller's after the run (a
    /// benchmark measures it before and after). For the run it reports down to the tracker's low
    /// threshold; `set_report_floor(score_threshold())` restores it.
    pub fn borrowed_detector(mut self, detector: &'a mut Detector) -> Self {
        self.stage = Some(Stage::BorrowedDetector(detector));
        self
    }

    /// Any other [`Inference`]: called once per frame on the inference thread.
    pub fn inference(mut self, inference: impl Inference + 'a) -> Self {
        self.stage = Some(Stage::Custom(Box::new(inference)));
        self
    }

    /// Tracker settings (default: [`TrackerConfig::default`]); its thresholds are coupled to the
    /// inference's at [`PipelineBuilder::build`].
    pub fn tracker(mut self, tracker: TrackerConfig) -> Self {
        self.tracker = tracker;
        self
    }

    /// Lines and zones (default: none; tracks are followed but no events are made).
    pub fn rules(mut self, rules: Rules) -> Self {
        self.rules = Some(rules);
        self
    }

    /// Add a sink; every event goes to every sink, in the order they were added.
    pub fn sink(mut self, sink: impl EventSink + 'a) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// The device id events carry (default `ocellus`).
    pub fn device(mut self, device: &str) -> Self {
        self.device = Arc::from(device);
        self
    }

    /// Call `f` after every frame with the tracker's output, on the analytics thread, before the
    /// rules see it: to write tracks out (`ocellus run --tracks` writes the MOTChallenge format
    /// with [`ocellus_core::mot::write_observed`]) or to draw them. Keep it quick: the pipeline
    /// waits for it.
    pub fn on_tracks(mut self, f: impl FnMut(&TracksSeen<'_>) + Send + 'static) -> Self {
        self.options.tracks = Some(TrackTap::new(f));
        self
    }

    /// Stop after this many frames from the source.
    pub fn max_frames(mut self, frames: u64) -> Self {
        self.options.max_frames = Some(frames);
        self
    }

    /// Counters to update while running (for a health reporter on another thread), changes to
    /// make while running (new rules, snapshots), and the frame limit.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Check the parts and couple the thresholds.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `source` or `inference` when one is missing, or the
    /// tracker setting that is out of range.
    pub fn build(self) -> Result<Pipeline<'a>> {
        let missing = |name: &str, what: &str| Error::InvalidOption {
            name: name.to_owned(),
            message: format!("a pipeline needs {what}: call PipelineBuilder::{name}"),
        };
        let source = self
            .source
            .ok_or_else(|| missing("source", "a source of frames"))?;
        let mut stage = self.stage.ok_or_else(|| {
            missing(
                "inference",
                "a detector or an inference (PipelineBuilder::detector)",
            )
        })?;
        let inference: &mut dyn Inference = match &mut stage {
            Stage::Detector(d) => &mut **d,
            Stage::BorrowedDetector(d) => *d,
            Stage::Custom(i) => i,
        };
        let (floor, tracker) = self.tracker.coupled_to(inference.score_threshold());
        inference.set_report_floor(floor);
        let rules = match self.rules {
            Some(r) => r,
            None => Rules::new(Vec::new(), Vec::new(), RulesConfig::default())?,
        };
        Ok(Pipeline {
            source,
            stage,
            tracker: Tracker::new(tracker)?,
            rules,
            sinks: self.sinks,
            device: self.device,
            options: self.options,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
