//! The three stages of a run and the analytics at the end of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use ocellus_core::appearance::{self, Appearance};
use ocellus_core::{EventSink, Frame, Inference, RgbFrame};

use super::queue::{FrameQueue, Pushed};
use super::{FRAME_QUEUE, IN_HAND, LiveControl, LiveCounters, Pipeline, Progress, RESULT_QUEUE};
use super::{Stage, Summary};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::infer::{Decoder, Detection, Engine, RawOutputs};
use crate::preprocess::{InputTensor, Preprocessor, Transform};
use crate::ratelimit::{DEFAULT_EVERY, Throttle, repeats};
use crate::rules::{RuleEvent, Rules};
use crate::source::{Source, SourceStats};
use crate::track::{Tracker, TrackerOutput};

/// Where a frame came from and when.
#[derive(Debug, Clone, Copy)]
struct FrameMeta {
    seq: u64,
    captured: SystemTime,
    t: Duration,
    read_at: Instant,
    bytes: u64,
    size: Option<(u32, u32)>,
}

/// What the capture stage hands to inference.
enum Work {
    /// A preprocessed input tensor (the detector's staged path).
    Tensor {
        tensor: InputTensor,
        transform: Result<Transform>,
    },
    /// The frame itself (pixels, on-sensor results or both), for an [`Inference`] of the caller's.
    Frame(Frame),
    /// A frame the detector cannot run on: the source delivered no pixels.
    NoPixels,
}

/// A frame read by the capture stage, waiting for inference.
struct Prepared {
    meta: FrameMeta,
    work: Work,
    /// The frame, kept on the detector's path only when a snapshot was asked for.
    image: Option<RgbFrame>,
}

/// What inference made of a frame.
enum Outputs {
    /// The model's raw outputs, to be decoded on the analytics thread.
    Raw(RawOutputs, Transform),
    /// Detections, from an [`Inference`].
    Detections(Vec<Detection>),
}

/// A frame inference is done with, waiting for the analytics.
struct Detected {
    meta: FrameMeta,
    outputs: Result<Outputs>,
    image: Option<RgbFrame>,
}

/// The inference half of a [`Stage`], borrowed for the inference thread.
enum Infer<'s, 'a> {
    Engine(&'s mut Engine),
    Custom(&'s mut (dyn Inference + 'a)),
}

/// Run a pipeline: see [`Pipeline::run`].
pub(super) fn run(
    pipeline: Pipeline<'_>,
    stop: &AtomicBool,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Summary> {
    let started = Instant::now();
    let Pipeline {
        mut source,
        mut stage,
        tracker,
        rules,
        sinks,
        device,
        options,
    } = pipeline;
    let live = source.is_live();
    let total = match (source.len_hint(), options.max_frames) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let queue = FrameQueue::<Prepared>::new(FRAME_QUEUE, live);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Detected>(RESULT_QUEUE);
    // buffers on their way back to the stage that fills them
    let (tensors_back, tensors_returned) = std::sync::mpsc::sync_channel(FRAME_QUEUE + IN_HAND);
    let (raws_back, raws_returned) = std::sync::mpsc::sync_channel(RESULT_QUEUE + IN_HAND);
    let (frames_back, frames_returned) =
        std::sync::mpsc::sync_channel(FRAME_QUEUE + RESULT_QUEUE + IN_HAND);
    let max_frames = options.max_frames.unwrap_or(u64::MAX);
    let counters = options.live.clone().unwrap_or_default();
    let control = options.control.clone().unwrap_or_default();
    let (pre, infer, decoder) = match &mut stage {
        Stage::Detector(d) => {
            let (pre, engine, decoder) = d.stages();
            (Some(pre), Infer::Engine(engine), Some(decoder))
        }
        Stage::BorrowedDetector(d) => {
            let (pre, engine, decoder) = d.stages();
            (Some(pre), Infer::Engine(engine), Some(decoder))
        }
        Stage::Custom(i) => (None, Infer::Custom(&mut **i), None),
    };
    // the tracker tells people apart by their colours, read from the frame's pixels
    let looks = tracker.config().uses_appearance();
    let mut analytics = Analytics {
        tracker,
        looks,
        rules,
        emit: Emit {
            device,
            sinks,
            summary: Summary::default(),
            counters: counters.clone(),
            sink_log: Throttle::default(),
        },
        control: control.clone(),
        decoder,
        raws_back,
        frames_back,
        failed_log: Throttle::default(),
        last: (0, Duration::ZERO, SystemTime::now(), Instant::now()),
        on_tracks: options.tracks.clone(),
    };

    std::thread::scope(|scope| -> Result<()> {
        let queue = &queue;
        let capture = Capture {
            source: &mut *source,
            pre,
            max_frames,
            stop,
            counters: counters.clone(),
            control: control.clone(),
            tensors_returned,
            frames_returned,
            keep_pixels: looks || (options.tap_pixels && options.tracks.is_some()),
        };
        let capture = std::thread::Builder::new()
            .name("ocellus-capture".into())
            .spawn_scoped(scope, move || capture.run(queue))
            .map_err(thread_error)?;
        let inference = std::thread::Builder::new()
            .name("ocellus-infer".into())
            .spawn_scoped(scope, move || {
                infer_loop(queue, infer, &tx, &tensors_back, &raws_returned);
            })
            .map_err(thread_error)?;
        for msg in rx.iter() {
            analytics.frame(msg, queue);
            let summary = &mut analytics.emit.summary;
            let now = started.elapsed();
            summary.first_frame.get_or_insert(now);
            summary.last_frame = Some(now);
            on_progress(&Progress {
                processed: summary.frames_processed,
                total,
                elapsed: started.elapsed(),
            });
        }
        let _ = inference.join();
        let summary = &mut analytics.emit.summary;
        match capture.join() {
            Ok((read, stats, error)) => {
                summary.frames_read = read;
                summary.source = stats;
                summary.source_error = error;
            }
            Err(_) => summary.source_error = Some("the capture thread panicked".into()),
        }
        Ok(())
    })?;
    analytics.finish();
    let mut summary = analytics.emit.finish();
    summary.frames_dropped = queue.dropped();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The capture stage: reads frames, preprocesses them for the detector, and queues them.
struct Capture<'s, 'a> {
    source: &'s mut (dyn Source + 'a),
    pre: Option<&'s mut Preprocessor>,
    max_frames: u64,
    stop: &'s AtomicBool,
    counters: Arc<LiveCounters>,
    control: Arc<LiveControl>,
    tensors_returned: Receiver<InputTensor>,
    frames_returned: Receiver<RgbFrame>,
    /// Every frame's pixels go on to the analytics stage (for the track tap).
    keep_pixels: bool,
}

impl Capture<'_, '_> {
    /// Read until the end, the frame limit or the stop; (frames read, source stats, the error
    /// that ended capture early).
    fn run(mut self, queue: &FrameQueue<Prepared>) -> (u64, SourceStats, Option<String>) {
        let mut read = 0u64;
        let mut error = None;
        let mut spare: Vec<InputTensor> = Vec::new();
        while read < self.max_frames && !self.stop.load(Ordering::Relaxed) {
            if self.control.want_frame.load(Ordering::Relaxed) {
                // a sensor that sends only its results until asked puts pixels in the next frame
                self.source.request_pixels();
            }
            let frame = match self.source.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            };
            read += 1;
            let st = self.source.stats();
            self.counters.skipped.store(st.skipped, Ordering::Relaxed);
            self.counters
                .reconnects
                .store(st.reconnects, Ordering::Relaxed);
            self.counters.lost.store(st.lost, Ordering::Relaxed);
            for image in self.frames_returned.try_iter() {
                self.source.recycle(image);
            }
            let meta = FrameMeta {
                seq: frame.seq,
                captured: frame.captured,
                t: frame.t,
                read_at: Instant::now(),
                bytes: frame.pixel_bytes() as u64,
                size: frame.image.as_ref().map(|i| (i.width(), i.height())),
            };
            let item = match (self.pre.as_deref_mut(), frame.image) {
                (Some(pre), Some(image)) => {
                    let transform = pre.run(image.as_view());
                    spare.extend(self.tensors_returned.try_iter());
                    let mut tensor = spare.pop().unwrap_or_else(|| pre.new_tensor());
                    pre.swap_tensor(&mut tensor);
                    let image = if self.control.want_frame.swap(false, Ordering::Relaxed)
                        || self.keep_pixels
                    {
                        Some(image)
                    } else {
                        self.source.recycle(image);
                        None
                    };
                    let work = Work::Tensor { tensor, transform };
                    Prepared { meta, work, image }
                }
                (Some(_), None) => Prepared {
                    meta,
                    work: Work::NoPixels,
                    image: None,
                },
                (None, image) => {
                    if image.is_some() {
                        self.control.want_frame.store(false, Ordering::Relaxed);
                    }
                    let frame = Frame { image, ..frame };
                    Prepared {
                        meta,
                        work: Work::Frame(frame),
                        image: None,
                    }
                }
            };
            match queue.push(item) {
                Pushed::Queued(None) => {}
                Pushed::Queued(Some(old)) => self.recycle(old, &mut spare),
                Pushed::Closed(_) => break,
            }
        }
        queue.close();
        (read, self.source.stats(), error)
    }

    /// A dropped frame's buffers go back into circulation.
    fn recycle(&mut self, old: Prepared, spare: &mut Vec<InputTensor>) {
        match old.work {
            Work::Tensor { tensor, .. } => spare.push(tensor),
            Work::Frame(frame) => {
                if let Some(image) = frame.image {
                    self.source.recycle(image);
                }
            }
            Work::NoPixels => {}
        }
        if let Some(image) = old.image {
            self.source.recycle(image);
        }
    }
}

/// The inference stage: runs the model (or the caller's inference) on each queued frame.
fn infer_loop(
    queue: &FrameQueue<Prepared>,
    mut infer: Infer<'_, '_>,
    tx: &SyncSender<Detected>,
    tensors_back: &SyncSender<InputTensor>,
    raws_returned: &Receiver<RawOutputs>,
) {
    let mut spare: Vec<RawOutputs> = Vec::new();
    while let Some(Prepared { meta, work, image }) = queue.pop() {
        let (outputs, image) = match (work, &mut infer) {
            (Work::Tensor { tensor, transform }, Infer::Engine(engine)) => {
                let outputs = transform.and_then(|transform| {
                    spare.extend(raws_returned.try_iter());
                    let mut raw = spare.pop().unwrap_or_default();
                    engine
                        .run(&tensor, &mut raw)
                        .map(|()| Outputs::Raw(raw, transform))
                });
                // the capture stage fills it again
                let _ = tensors_back.try_send(tensor);
                (outputs, image)
            }
            (Work::Frame(frame), Infer::Custom(inference)) => {
                let outputs = inference
                    .infer_frame(&frame)
                    .map(Outputs::Detections)
                    .map_err(Error::from);
                // the pixels go on for a snapshot, then back to the source
                (outputs, frame.image)
            }
            (Work::NoPixels, _) => (
                Err(Error::Frame(format!(
                    "frame {}: the source delivered no pixels, and the detector runs on pixels",
                    meta.seq
                ))),
                image,
            ),
            // the capture stage prepares what this stage runs: tensors for the engine, frames
            // for the caller's inference; the two are never mixed
            _ => continue,
        };
        if tx
            .send(Detected {
                meta,
                outputs,
                image,
            })
            .is_err()
        {
            break;
        }
    }
    queue.close();
}

/// Sends events to every sink and counts them.
struct Emit<'a> {
    device: Arc<str>,
    sinks: Vec<Box<dyn EventSink + 'a>>,
    summary: Summary,
    counters: Arc<LiveCounters>,
    sink_log: Throttle,
}

impl Emit<'_> {
    /// One rule event: to an [`Event`], to every sink, into the counts; `read_at` (when the
    /// frame left the source) times frame-to-event, when given.
    fn event(&mut self, re: &RuleEvent, captured: SystemTime, read_at: Option<Instant>) {
        let ev = Event::from_rule(&self.device, captured, re);
        *self.summary.events.entry(ev.kind).or_default() += 1;
        if let Some(read_at) = read_at {
            self.summary
                .frame_to_event_ms
                .record(read_at.elapsed().as_secs_f64() * 1e3);
        }
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        for sink in &mut self.sinks {
            if let Err(e) = sink.send(&ev) {
                self.summary.sink_errors += 1;
                if let Some(n) = self.sink_log.ready() {
                    tracing::warn!("{}: {e}{}", sink.describe(), repeats(n, DEFAULT_EVERY));
                }
            }
        }
    }

    /// Flush every sink; the summary.
    fn finish(mut self) -> Summary {
        for sink in &mut self.sinks {
            if let Err(e) = sink.flush() {
                self.summary.sink_errors += 1;
                tracing::warn!("{}: {e}", sink.describe());
            }
        }
        self.summary
    }
}

/// The analytics stage, on the caller's thread: decoding, tracking, rules, events.
struct Analytics<'s, 'a> {
    tracker: Tracker,
    /// Whether the tracker uses appearances (each detection's colours are read from the frame).
    looks: bool,
    rules: Rules,
    emit: Emit<'a>,
    control: Arc<LiveControl>,
    decoder: Option<&'s Decoder>,
    raws_back: SyncSender<RawOutputs>,
    frames_back: SyncSender<RgbFrame>,
    failed_log: Throttle,
    /// The last frame seen: (seq, media time, capture time, read at), for the end of the run.
    last: (u64, Duration, SystemTime, Instant),
    on_tracks: Option<super::TrackTap>,
}

impl Analytics<'_, '_> {
    /// One frame through decoding, the tracker and the rules.
    fn frame(&mut self, msg: Detected, queue: &FrameQueue<Prepared>) {
        let arrived = Instant::now();
        let Detected {
            meta: d,
            outputs,
            image,
        } = msg;
        self.last = (d.seq, d.t, d.captured, d.read_at);
        let dets = match self.detections(outputs) {
            Ok(dets) => dets,
            Err(e) => {
                self.failed(d.seq, &e);
                Vec::new()
            }
        };
        let looks: Vec<Option<Appearance>> = match &image {
            Some(image) if self.looks => dets
                .iter()
                .map(|det| appearance::describe(image.as_view(), det.bbox))
                .collect(),
            _ => Vec::new(),
        };
        let out = self.tracker.update_with_appearance(d.seq, &dets, &looks);
        if let Some(image) = &image {
            self.snapshot(d.seq, image, &dets, &out);
        }
        if let Some(new) = self.control.take_rules() {
            let mut old = std::mem::replace(&mut self.rules, new);
            for re in old.finish(d.seq, d.t) {
                self.emit.event(&re, d.captured, None);
            }
            tracing::info!("frame {}: new rules in effect", d.seq);
        }
        for t in &out.observed {
            // OCELLUS_LOG=ocellus::pipeline=trace shows where each track's feet are: what
            // line and zone placement is judged on
            tracing::trace!(
                frame = d.seq,
                track = t.id,
                x = (t.bbox[0] + t.bbox[2]) / 2.0,
                y = t.bbox[3],
                "track"
            );
        }
        let events = self.rules.update(d.seq, d.t, &out);
        if let Some(tap) = &self.on_tracks {
            tap.call(&super::TracksSeen {
                seq: d.seq,
                t: d.t,
                size: d.size,
                tracks: &out,
                detections: &dets,
                events: &events,
                image: image.as_ref(),
            });
        }
        if let Some(image) = image {
            // a frame of the caller's inference goes back to the source
            let _ = self.frames_back.try_send(image);
        }
        for re in &events {
            self.emit.event(re, d.captured, Some(d.read_at));
        }
        let summary = &mut self.emit.summary;
        summary.frames_processed += 1;
        summary.raw_frame_bytes += d.bytes;
        summary.first_result_at.get_or_insert(arrived);
        let counters = &self.emit.counters;
        counters
            .processed
            .store(summary.frames_processed, Ordering::Relaxed);
        counters.dropped.store(queue.dropped(), Ordering::Relaxed);
    }

    /// Decode the model's outputs (the detector's path) or take the detections as they are.
    fn detections(&mut self, outputs: Result<Outputs>) -> Result<Vec<Detection>> {
        match outputs? {
            Outputs::Detections(dets) => Ok(dets),
            Outputs::Raw(raw, transform) => {
                let dets = match self.decoder {
                    Some(decoder) => decoder.decode(&raw, &transform),
                    None => Ok(Vec::new()),
                };
                // the inference stage fills it again
                let _ = self.raws_back.try_send(raw);
                dets
            }
        }
    }

    /// A failed frame: counted, logged (rate-limited), kept as the last error for health.
    fn failed(&mut self, seq: u64, e: &Error) {
        self.emit.summary.frames_failed += 1;
        let counters = &self.emit.counters;
        counters.failed.fetch_add(1, Ordering::Relaxed);
        let message = format!("frame {seq}: {e}");
        if let Some(n) = self.failed_log.ready() {
            tracing::warn!("{message}{}", repeats(n, DEFAULT_EVERY));
        }
        if let Ok(mut last) = counters.last_frame_error.lock() {
            *last = Some(message);
        }
    }

    /// Answer a snapshot request with this frame, people hidden.
    fn snapshot(&self, seq: u64, image: &RgbFrame, dets: &[Detection], out: &TrackerOutput) {
        let Some(req) = self.control.take_snapshot() else {
            return;
        };
        let hide: Vec<[f32; 4]> = dets
            .iter()
            .map(|x| x.bbox)
            .chain(out.observed.iter().map(|t| t.bbox))
            .collect();
        let tracks: Vec<(u64, [f32; 4])> = out.observed.iter().map(|t| (t.id, t.bbox)).collect();
        let scene = crate::snapshot::Scene {
            frame: image,
            hide: &hide,
            tracks: &tracks,
            lines: &req.lines,
            zones: &req.zones,
        };
        let _ = req
            .reply
            .try_send(crate::snapshot::render(&scene, req.max_bytes).map(|s| (seq, s)));
    }

    /// The end of the run: every track ends, every zone visit gets its exit.
    fn finish(&mut self) {
        let (seq, t, captured, read_at) = self.last;
        let ended = TrackerOutput {
            observed: Vec::new(),
            ended: self.tracker.finish(),
        };
        let mut tail = self.rules.update(seq, t, &ended);
        tail.extend(self.rules.finish(seq, t));
        for re in tail {
            self.emit.event(&re, captured, Some(read_at));
        }
    }
}

fn thread_error(e: std::io::Error) -> Error {
    Error::InvalidOption {
        name: "thread".into(),
        message: format!("cannot start a pipeline thread: {e}"),
    }
}
