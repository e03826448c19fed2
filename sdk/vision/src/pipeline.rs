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
//! event, and only then does [`run`] return.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::infer::{Detector, RawOutputs};
use crate::preprocess::{InputTensor, Transform};
use crate::rules::Rules;
use crate::source::{Source, SourceStats};
use crate::track::{Tracker, TrackerOutput};

/// Frames waiting for inference (live sources drop the oldest beyond this).
pub const FRAME_QUEUE: usize = 1;
/// Model outputs waiting for post-processing and the tracker.
pub const RESULT_QUEUE: usize = 2;
/// Input tensors and output buffers in circulation beyond the queues (one being filled, one in
/// use by the next stage).
const IN_HAND: usize = 2;

/// A bounded frame queue that either drops its oldest entry or makes the producer wait.
struct FrameQueue<T> {
    inner: Mutex<QueueState<T>>,
    changed: Condvar,
    cap: usize,
    drop_oldest: bool,
}

struct QueueState<T> {
    items: VecDeque<T>,
    closed: bool,
    dropped: u64,
}

/// What became of a pushed item.
enum Pushed<T> {
    /// Queued; the oldest entry was dropped to make room (live sources), and is given back.
    Queued(Option<T>),
    /// The consumer is gone; the item is given back.
    Closed(T),
}

impl<T> FrameQueue<T> {
    fn new(cap: usize, drop_oldest: bool) -> Self {
        FrameQueue {
            inner: Mutex::new(QueueState {
                items: VecDeque::with_capacity(cap),
                closed: false,
                dropped: 0,
            }),
            changed: Condvar::new(),
            cap: cap.max(1),
            drop_oldest,
        }
    }

    fn push(&self, item: T) -> Pushed<T> {
        let Ok(mut q) = self.inner.lock() else {
            return Pushed::Closed(item);
        };
        let mut dropped = None;
        while q.items.len() >= self.cap && !q.closed {
            if self.drop_oldest {
                dropped = q.items.pop_front();
                q.dropped += 1;
            } else {
                q = match self.changed.wait(q) {
                    Ok(q) => q,
                    Err(_) => return Pushed::Closed(item),
                };
            }
        }
        if q.closed {
            return Pushed::Closed(item);
        }
        q.items.push_back(item);
        self.changed.notify_all();
        Pushed::Queued(dropped)
    }

    fn pop(&self) -> Option<T> {
        let mut q = self.inner.lock().ok()?;
        loop {
            if let Some(f) = q.items.pop_front() {
                self.changed.notify_all();
                return Some(f);
            }
            if q.closed {
                return None;
            }
            q = self.changed.wait(q).ok()?;
        }
    }

    fn close(&self) {
        if let Ok(mut q) = self.inner.lock() {
            q.closed = true;
        }
        self.changed.notify_all();
    }

    fn dropped(&self) -> u64 {
        self.inner.lock().map(|q| q.dropped).unwrap_or(0)
    }
}

/// What the pipeline did.
#[derive(Debug, Clone, Default)]
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

    fn take_rules(&self) -> Option<Rules> {
        self.rules.lock().ok().and_then(|mut r| r.take())
    }

    fn take_snapshot(&self) -> Option<SnapshotRequest> {
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

/// Where a frame came from and when.
#[derive(Debug, Clone, Copy)]
struct FrameMeta {
    seq: u64,
    captured: SystemTime,
    t: Duration,
    read_at: Instant,
    bytes: u64,
}

/// A frame preprocessed by the capture stage, waiting for inference.
struct Prepared {
    meta: FrameMeta,
    tensor: InputTensor,
    transform: Result<Transform>,
    /// The frame itself, only when a snapshot was asked for.
    image: Option<crate::RgbFrame>,
}

/// A frame the model has run on, waiting for post-processing.
struct Detected {
    meta: FrameMeta,
    /// The model's outputs and the transform back to the frame, or why there are none.
    outputs: Result<(RawOutputs, Transform)>,
    image: Option<crate::RgbFrame>,
}

/// Run the pipeline to the end of the source, `max_frames`, or until `stop` is set.
/// `on_event` is called on the caller's thread for every event, in order.
#[allow(clippy::too_many_arguments)]
pub fn run(
    mut source: Box<dyn Source>,
    detector: &mut Detector,
    mut tracker: Tracker,
    mut rules: Rules,
    device: Arc<str>,
    opts: &Options,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&Event),
    mut on_progress: impl FnMut(&Progress),
) -> Result<Summary> {
    let started = Instant::now();
    let live = source.is_live();
    let total = match (source.len_hint(), opts.max_frames) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let queue = FrameQueue::<Prepared>::new(FRAME_QUEUE, live);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Detected>(RESULT_QUEUE);
    // buffers on their way back to the stage that fills them
    let (tensor_back, tensors_returned) =
        std::sync::mpsc::sync_channel::<InputTensor>(FRAME_QUEUE + IN_HAND);
    let (raw_back, raws_returned) =
        std::sync::mpsc::sync_channel::<RawOutputs>(RESULT_QUEUE + IN_HAND);
    let max_frames = opts.max_frames.unwrap_or(u64::MAX);
    let mut summary = Summary::default();
    let counters = opts.live.clone().unwrap_or_default();
    let control = opts.control.clone().unwrap_or_default();
    let (pre, engine, decoder) = detector.stages();

    std::thread::scope(|scope| -> Result<()> {
        let queue = &queue;
        let live_capture = counters.clone();
        let control_capture = control.clone();
        let capture = std::thread::Builder::new()
            .name("ocellus-capture".into())
            .spawn_scoped(scope, move || {
                let mut read = 0u64;
                let mut error = None;
                let mut spare: Vec<InputTensor> = Vec::new();
                while read < max_frames && !stop.load(Ordering::Relaxed) {
                    match source.next_frame() {
                        Ok(Some(frame)) => {
                            read += 1;
                            let read_at = Instant::now();
                            let st = source.stats();
                            live_capture.skipped.store(st.skipped, Ordering::Relaxed);
                            live_capture
                                .reconnects
                                .store(st.reconnects, Ordering::Relaxed);
                            live_capture.lost.store(st.lost, Ordering::Relaxed);
                            let transform = pre.run(frame.image.as_view());
                            spare.extend(tensors_returned.try_iter());
                            let mut tensor = spare.pop().unwrap_or_else(|| pre.new_tensor());
                            pre.swap_tensor(&mut tensor);
                            let meta = FrameMeta {
                                seq: frame.seq,
                                captured: frame.captured,
                                t: frame.t,
                                read_at,
                                bytes: frame.image.data().len() as u64,
                            };
                            let image = if control_capture.want_frame.swap(false, Ordering::Relaxed)
                            {
                                Some(frame.image)
                            } else {
                                source.recycle(frame.image);
                                None
                            };
                            let item = Prepared {
                                meta,
                                tensor,
                                transform,
                                image,
                            };
                            match queue.push(item) {
                                Pushed::Queued(None) => {}
                                Pushed::Queued(Some(old)) => {
                                    spare.push(old.tensor);
                                    if let Some(image) = old.image {
                                        source.recycle(image);
                                    }
                                }
                                Pushed::Closed(_) => break,
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            error = Some(e.to_string());
                            break;
                        }
                    }
                }
                queue.close();
                (read, source.stats(), error)
            })
            .map_err(thread_error)?;

        let infer = std::thread::Builder::new()
            .name("ocellus-infer".into())
            .spawn_scoped(scope, move || {
                let mut spare: Vec<RawOutputs> = Vec::new();
                while let Some(item) = queue.pop() {
                    let Prepared {
                        meta,
                        tensor,
                        transform,
                        image,
                    } = item;
                    let outputs = transform.and_then(|transform| {
                        spare.extend(raws_returned.try_iter());
                        let mut raw = spare.pop().unwrap_or_default();
                        engine.run(&tensor, &mut raw).map(|()| (raw, transform))
                    });
                    // the capture stage fills it again
                    let _ = tensor_back.try_send(tensor);
                    let msg = Detected {
                        meta,
                        outputs,
                        image,
                    };
                    if tx.send(msg).is_err() {
                        break;
                    }
                }
                queue.close();
            })
            .map_err(thread_error)?;

        let mut last = (0u64, Duration::ZERO, SystemTime::now(), Instant::now());
        let mut failed_log = crate::ratelimit::Throttle::default();
        for msg in rx.iter() {
            let first_result_at = Instant::now();
            let Detected {
                meta: d,
                outputs,
                image,
            } = msg;
            last = (d.seq, d.t, d.captured, d.read_at);
            let detections = outputs.and_then(|(raw, transform)| {
                let dets = decoder.decode(&raw, &transform);
                // the inference stage fills it again
                let _ = raw_back.try_send(raw);
                dets
            });
            let dets = match detections {
                Ok(dets) => dets,
                Err(e) => {
                    summary.frames_failed += 1;
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    let message = format!("frame {}: {e}", d.seq);
                    if let Some(n) = failed_log.ready() {
                        tracing::warn!(
                            "{message}{}",
                            crate::ratelimit::repeats(n, crate::ratelimit::DEFAULT_EVERY)
                        );
                    }
                    if let Ok(mut last) = counters.last_frame_error.lock() {
                        *last = Some(message);
                    }
                    Vec::new()
                }
            };
            let out = tracker.update(d.seq, &dets);
            if let Some(image) = &image
                && let Some(req) = control.take_snapshot()
            {
                let hide: Vec<[f32; 4]> = dets
                    .iter()
                    .map(|x| x.bbox)
                    .chain(out.observed.iter().map(|t| t.bbox))
                    .collect();
                let tracks: Vec<(u64, [f32; 4])> =
                    out.observed.iter().map(|t| (t.id, t.bbox)).collect();
                let scene = crate::snapshot::Scene {
                    frame: image,
                    hide: &hide,
                    tracks: &tracks,
                    lines: &req.lines,
                    zones: &req.zones,
                };
                let _ = req
                    .reply
                    .try_send(crate::snapshot::render(&scene, req.max_bytes).map(|s| (d.seq, s)));
            }
            if let Some(new) = control.take_rules() {
                let old = std::mem::replace(&mut rules, new);
                let mut old = old;
                for re in old.finish(d.seq, d.t) {
                    let ev = Event::from_rule(&device, d.captured, &re);
                    *summary.events.entry(ev.kind).or_default() += 1;
                    counters.events.fetch_add(1, Ordering::Relaxed);
                    on_event(&ev);
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
            for re in rules.update(d.seq, d.t, &out) {
                let ev = Event::from_rule(&device, d.captured, &re);
                *summary.events.entry(ev.kind).or_default() += 1;
                summary
                    .frame_to_event_ms
                    .record(d.read_at.elapsed().as_secs_f64() * 1e3);
                counters.events.fetch_add(1, Ordering::Relaxed);
                on_event(&ev);
            }
            summary.frames_processed += 1;
            counters
                .processed
                .store(summary.frames_processed, Ordering::Relaxed);
            counters.dropped.store(queue.dropped(), Ordering::Relaxed);
            summary.raw_frame_bytes += d.bytes;
            let now = started.elapsed();
            summary.first_frame.get_or_insert(now);
            summary.first_result_at.get_or_insert(first_result_at);
            summary.last_frame = Some(now);
            on_progress(&Progress {
                processed: summary.frames_processed,
                total,
                elapsed: started.elapsed(),
            });
        }
        let _ = infer.join();
        match capture.join() {
            Ok((read, stats, error)) => {
                summary.frames_read = read;
                summary.source = stats;
                summary.source_error = error;
            }
            Err(_) => summary.source_error = Some("the capture thread panicked".into()),
        }
        // end of run: every track ends, every zone visit gets its exit
        let (seq, t, captured, read_at) = last;
        let ended = TrackerOutput {
            observed: Vec::new(),
            ended: tracker.finish(),
        };
        let mut tail = rules.update(seq, t, &ended);
        tail.extend(rules.finish(seq, t));
        for re in tail {
            let ev = Event::from_rule(&device, captured, &re);
            *summary.events.entry(ev.kind).or_default() += 1;
            summary
                .frame_to_event_ms
                .record(read_at.elapsed().as_secs_f64() * 1e3);
            counters.events.fetch_add(1, Ordering::Relaxed);
            on_event(&ev);
        }
        Ok(())
    })?;
    summary.frames_dropped = queue.dropped();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn thread_error(e: std::io::Error) -> Error {
    Error::InvalidOption {
        name: "thread".into(),
        message: format!("cannot start a pipeline thread: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Frame, SyntheticSource};

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            captured: SystemTime::now(),
            t: Duration::ZERO,
            image: crate::RgbFrame::new(1, 1, vec![0; 3]).expect("1x1 frame"),
        }
    }

    fn queued<T>(p: Pushed<T>) -> Option<Option<T>> {
        match p {
            Pushed::Queued(old) => Some(old),
            Pushed::Closed(_) => None,
        }
    }

    #[test]
    fn live_queue_drops_the_oldest_and_counts() {
        let q = FrameQueue::new(2, true);
        let mut given_back = Vec::new();
        for s in 0..5 {
            let old = queued(q.push(frame(s))).expect("open queue");
            given_back.extend(old.map(|f| f.seq));
        }
        assert_eq!(q.dropped(), 3);
        // the dropped frames come back to the producer, to recycle their buffers
        assert_eq!(given_back, vec![0, 1, 2]);
        assert_eq!(q.pop().map(|f| f.seq), Some(3));
        assert_eq!(q.pop().map(|f| f.seq), Some(4));
        q.close();
        assert!(q.pop().is_none());
        assert!(
            queued(q.push(frame(5))).is_none(),
            "a closed queue gives the item back"
        );
    }

    #[test]
    fn file_queue_makes_the_producer_wait() {
        let q = Arc::new(FrameQueue::new(1, false));
        assert!(matches!(q.push(frame(0)), Pushed::Queued(None)));
        let q2 = q.clone();
        let producer =
            std::thread::spawn(move || matches!(q2.push(frame(1)), Pushed::Queued(None)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !producer.is_finished(),
            "push waits while the queue is full"
        );
        assert_eq!(q.pop().map(|f| f.seq), Some(0));
        assert!(producer.join().unwrap_or(false));
        assert_eq!(q.pop().map(|f| f.seq), Some(1));
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn synthetic_source_is_a_source() -> Result<()> {
        let mut s: Box<dyn Source> = Box::new(SyntheticSource::new(64, 64, 2, 1, 1, 10.0, false)?);
        assert!(s.next_frame()?.is_some());
        assert!(s.next_frame()?.is_some());
        assert!(s.next_frame()?.is_none());
        Ok(())
    }
}
