//! `ocellus run`, `ocellus demo` and `ocellus check-config`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procinfo::MIB;
use ocellus::card::ModelCard;
use ocellus::config::{Config, RulesSection};
use ocellus::deploy::{Deployment, Report};
use ocellus::event::{Event, EventType};
use ocellus::infer::DetectorOptions;
use ocellus::pipeline::{Options, Progress};
use ocellus::publish::MqttSettings;
use ocellus::rules::{LineRule, RulesConfig, ZoneRule};
use ocellus::source::{SourceConfig, VideoInput};

use crate::args::{Format, ms};

/// Ctrl-C / SIGTERM set the flag (a clean stop); a second Ctrl-C exits at once.
pub(crate) fn stop_flag() -> ocellus::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .map_err(|e| ocellus::Error::InvalidOption {
                name: "signals".into(),
                message: format!("cannot install the signal handler: {e}"),
            })?;
    }
    Ok(stop)
}

/// A one-line progress bar on stderr, for terminals only.
pub(crate) struct ProgressBar {
    enabled: bool,
    last_drawn: u64,
}

impl ProgressBar {
    pub(crate) fn new() -> Self {
        ProgressBar {
            enabled: std::io::stderr().is_terminal(),
            last_drawn: 0,
        }
    }
    pub(crate) fn draw(&mut self, p: &Progress) {
        if !self.enabled || (p.processed - self.last_drawn < 5 && Some(p.processed) != p.total) {
            return;
        }
        self.last_drawn = p.processed;
        let fps = p.processed as f64 / p.elapsed.as_secs_f64().max(1e-9);
        let line = match p.total {
            Some(total) if total > 0 => {
                let width = 30usize;
                let done = ((p.processed.min(total) * width as u64) / total) as usize;
                format!(
                    "[{}{}] {}/{} frames  {:.1} fps",
                    "#".repeat(done),
                    " ".repeat(width - done),
                    p.processed,
                    total,
                    fps
                )
            }
            _ => format!("{} frames  {:.1} fps", p.processed, fps),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }
    pub(crate) fn finish(&self) {
        if self.enabled && self.last_drawn > 0 {
            eprintln!();
        }
    }
}

fn print_event_line(ev: &Event, accepted: bool) {
    let what = match (ev.kind, ev.direction, ev.count, ev.dwell_s) {
        (EventType::LineCrossed, Some(d), _, _) => {
            format!(
                "{} {}",
                ev.rule,
                serde_json::to_string(&d)
                    .unwrap_or_default()
                    .trim_matches('"')
            )
        }
        (EventType::Occupancy, _, Some(c), _) => format!("{} count={c}", ev.rule),
        (_, _, _, Some(s)) => format!("{} after {s:.1}s", ev.rule),
        _ => ev.rule.to_string(),
    };
    let track = ev
        .track
        .map(|t| {
            format!(
                " track {t} ({} {:.2})",
                ev.label.as_deref().unwrap_or("?"),
                ev.score.unwrap_or(0.0)
            )
        })
        .unwrap_or_default();
    println!(
        "{:<13} {what}{track}  frame {}{}",
        ev.kind.as_str(),
        ev.frame,
        if accepted {
            ""
        } else {
            "  [NOT QUEUED: publisher full]"
        }
    );
}

/// Start-up and memory, from this process's start (`procinfo::mark_start` in `main`).
struct Figures {
    /// Process start → the end of the first frame's inference (the start-up figure).
    first_inference: Option<Duration>,
    /// Process start → detector and source ready.
    ready: Duration,
    /// Pipeline start → the first frame through inference and analytics.
    first_frame: Option<Duration>,
    /// `VmHWM`, bytes.
    rss_peak: Option<u64>,
    /// The model file's size, bytes.
    model_file: Option<u64>,
}

impl Figures {
    fn of(report: &Report) -> Figures {
        let start = crate::procinfo::start().unwrap_or(report.started_at);
        let since = |t: Instant| t.saturating_duration_since(start);
        Figures {
            first_inference: report.pipeline.first_result_at.map(since),
            ready: since(report.started_at + report.startup),
            first_frame: report.pipeline.first_frame,
            rss_peak: crate::procinfo::peak_rss_bytes(),
            model_file: std::fs::metadata(&report.model_path).ok().map(|m| m.len()),
        }
    }

    fn rss_peak_mib(&self) -> Option<f64> {
        self.rss_peak.map(|b| b as f64 / MIB)
    }

    fn model_file_mib(&self) -> Option<f64> {
        self.model_file.map(|b| b as f64 / MIB)
    }
}

fn print_summary(report: &Report, f: &Figures) {
    let p = &report.pipeline;
    let m = &report.publish;
    eprintln!("---- summary");
    eprintln!(
        "frames:   {} processed at {:.1} fps, {} dropped (inference behind a live source), {} skipped (undecodable), {} failed{}",
        p.frames_processed,
        p.fps(),
        p.frames_dropped,
        p.source.skipped,
        p.frames_failed,
        if p.source.lost > 0 {
            format!(
                ", {} lost at the source (not read in time, or a camera gap)",
                p.source.lost
            )
        } else {
            String::new()
        }
    );
    let by_type: Vec<String> = EventType::ALL
        .iter()
        .map(|t| format!("{} {}", t.as_str(), p.events.get(t).copied().unwrap_or(0)))
        .collect();
    eprintln!("events:   {} ({})", p.event_count(), by_type.join(", "));
    let ratio = if p.raw_frame_bytes == 0 {
        // a sensor that infers on the chip: the host read no pixels at all
        "the host read no pixels".to_owned()
    } else if m.event_bytes > 0 {
        format!(
            "{:.0}x less",
            p.raw_frame_bytes as f64 / m.event_bytes as f64
        )
    } else {
        "nothing sent".to_owned()
    };
    eprintln!(
        "bytes:    {} of events published vs {} of raw frames ({ratio})",
        m.event_bytes, p.raw_frame_bytes
    );
    eprintln!(
        "mqtt:     {} events queued, {} acknowledged by the broker ({} sent), {} still queued; {} connect(s){}",
        m.accepted,
        m.acked,
        m.sent,
        m.queued,
        m.connects,
        m.last_error
            .as_ref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default()
    );
    if m.write_errors > 0 {
        eprintln!(
            "queue:    {} disk write(s) failed (a full disk?): acknowledged events freed {} time(s) to make room, {} event(s) held in memory, not durable",
            m.write_errors, m.reclaimed, m.not_durable
        );
    }
    if m.recovered + m.torn + m.dropped + m.refused > 0 {
        eprintln!(
            "queue:    {} recovered from an earlier run, {} damaged place(s) skipped ({} event(s) lost with them), {} dropped by the bounds, {} refused",
            m.recovered, m.torn, m.lost, m.dropped, m.refused
        );
    }
    let split = format!(
        "model {:.0} ms, source {:.0} ms, ONNX Runtime {:.0} ms",
        ms(report.model_load),
        ms(report.source_open),
        ms(report.runtime_load)
    );
    match f.first_inference {
        Some(first) => {
            let first_frame = f.first_frame.unwrap_or_default();
            let other = first
                .saturating_sub(report.model_load + report.source_open + report.runtime_load)
                .saturating_sub(first_frame);
            eprintln!(
                "start-up: {:.0} ms from process start to the first inference ({split}, first frame {:.0} ms, other {:.0} ms)",
                ms(first),
                ms(first_frame),
                ms(other)
            );
        }
        None => eprintln!(
            "start-up: no inference ran; ready {:.0} ms after process start ({split})",
            ms(f.ready)
        ),
    }
    let model = match f.model_file_mib() {
        Some(m) => format!("model file {m:.1} MiB"),
        None => format!("model file {} unreadable", report.model_path.display()),
    };
    match (f.rss_peak_mib(), f.model_file_mib()) {
        (Some(rss), Some(m)) => eprintln!(
            "memory:   peak RSS {rss:.1} MiB ({model}, {:.1} MiB beyond it)",
            rss - m
        ),
        (Some(rss), None) => eprintln!("memory:   peak RSS {rss:.1} MiB ({model})"),
        (None, _) => eprintln!("memory:   peak RSS not available on this platform ({model})"),
    }
    if let Some(e) = &p.source_error {
        eprintln!("source:   ended early: {e}");
    }
}

/// `--summary FILE`: created before the run (a path that cannot be written is a set-up error),
/// filled after it.
struct SummaryFile {
    path: PathBuf,
    file: std::fs::File,
}

impl SummaryFile {
    fn create(path: &Path) -> ocellus::Result<SummaryFile> {
        let file = std::fs::File::create(path).map_err(|source| ocellus::Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SummaryFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Write the summary; false (with a warning printed) if the write failed.
    fn write(mut self, summary: &RunSummary<'_>) -> bool {
        let text = serde_json::to_string(summary).unwrap_or_default();
        match writeln!(self.file, "{text}").and_then(|_| self.file.flush()) {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "warning: cannot write the summary to {}: {e}",
                    self.path.display()
                );
                false
            }
        }
    }
}

/// The run's summary as JSON (`--summary FILE`); keys documented in docs/config.md.
#[derive(Serialize)]
struct RunSummary<'a> {
    schema: &'static str,
    device: &'a str,
    model: &'a str,
    model_file: String,
    frames_read: u64,
    frames_processed: u64,
    fps: f64,
    steady_fps: f64,
    frames_dropped: u64,
    frames_skipped: u64,
    frames_failed: u64,
    events: BTreeMap<&'static str, u64>,
    event_count: u64,
    raw_frame_bytes: u64,
    first_inference_ms: Option<f64>,
    startup_ms: f64,
    runtime_load_ms: f64,
    model_load_ms: f64,
    source_open_ms: f64,
    first_frame_ms: Option<f64>,
    rss_peak_mib: Option<f64>,
    model_file_mib: Option<f64>,
    rss_beyond_model_mib: Option<f64>,
    frame_to_event_ms_p50: Option<f64>,
    frame_to_event_ms_p99: Option<f64>,
    publish: PublishCounters<'a>,
    source_error: Option<&'a str>,
}

#[derive(Serialize)]
struct PublishCounters<'a> {
    accepted: u64,
    acked: u64,
    sent: u64,
    queued: u64,
    refused: u64,
    dropped: u64,
    recovered: u64,
    torn: u64,
    lost: u64,
    not_durable: u64,
    write_errors: u64,
    reclaimed: u64,
    connects: u64,
    event_bytes: u64,
    flushed: bool,
    last_error: Option<&'a str>,
}

impl<'a> RunSummary<'a> {
    fn new(device: &'a str, model: &'a str, report: &'a Report, f: &Figures) -> Self {
        let p = &report.pipeline;
        let m = &report.publish;
        RunSummary {
            schema: "ocellus.run-summary/1",
            device,
            model,
            model_file: report.model_path.display().to_string(),
            frames_read: p.frames_read,
            frames_processed: p.frames_processed,
            fps: p.fps(),
            steady_fps: p.steady_fps(),
            frames_dropped: p.frames_dropped,
            frames_skipped: p.source.skipped,
            frames_failed: p.frames_failed,
            events: EventType::ALL
                .iter()
                .map(|t| (t.as_str(), p.events.get(t).copied().unwrap_or(0)))
                .collect(),
            event_count: p.event_count(),
            raw_frame_bytes: p.raw_frame_bytes,
            first_inference_ms: f.first_inference.map(ms),
            startup_ms: ms(f.ready),
            runtime_load_ms: ms(report.runtime_load),
            model_load_ms: ms(report.model_load),
            source_open_ms: ms(report.source_open),
            first_frame_ms: f.first_frame.map(ms),
            rss_peak_mib: f.rss_peak_mib(),
            model_file_mib: f.model_file_mib(),
            rss_beyond_model_mib: f.rss_peak_mib().zip(f.model_file_mib()).map(|(r, m)| r - m),
            frame_to_event_ms_p50: p.frame_to_event_ms.quantile(0.5),
            frame_to_event_ms_p99: p.frame_to_event_ms.quantile(0.99),
            publish: PublishCounters {
                accepted: m.accepted,
                acked: m.acked,
                sent: m.sent,
                queued: m.queued,
                refused: m.refused,
                dropped: m.dropped,
                recovered: m.recovered,
                torn: m.torn,
                lost: m.lost,
                not_durable: m.not_durable,
                write_errors: m.write_errors,
                reclaimed: m.reclaimed,
                connects: m.connects,
                event_bytes: m.event_bytes,
                flushed: m.flushed,
                last_error: m.last_error.as_deref(),
            },
            source_error: p.source_error.as_deref(),
        }
    }
}

fn execute(
    d: Deployment,
    frames: Option<u64>,
    print_events: bool,
    format: Format,
    (summary, tracks): (Option<&Path>, Option<&Path>),
) -> ocellus::Result<u8> {
    let summary_file = summary.map(SummaryFile::create).transpose()?;
    let track_file = tracks.map(crate::tracks::TrackFile::create).transpose()?;
    let (device, model) = (d.device.clone(), d.card.name.clone());
    let stop = stop_flag()?;
    let queue_dir = d.mqtt.queue.dir.clone();
    let bar = std::cell::RefCell::new(ProgressBar::new());
    let opts = Options {
        max_frames: frames,
        tracks: track_file.as_ref().map(crate::tracks::TrackFile::tap),
        ..Default::default()
    };
    let report = d.run(
        &opts,
        &stop,
        |ev, accepted| {
            if format == Format::Json {
                // only what is stored: a consumer can hold us to every line it saw
                if accepted {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&ev.to_json());
                    let _ = out.write_all(b"\n");
                    let _ = out.flush();
                }
            } else if print_events {
                let b = bar.borrow();
                if b.enabled && b.last_drawn > 0 {
                    eprint!("\r\x1b[K");
                }
                print_event_line(ev, accepted);
            }
        },
        |p| bar.borrow_mut().draw(p),
    )?;
    bar.borrow().finish();
    let figures = Figures::of(&report);
    print_summary(&report, &figures);
    let summary_written = summary_file
        .map(|f| f.write(&RunSummary::new(&device, &model, &report, &figures)))
        .unwrap_or(true)
        & track_file.is_none_or(crate::tracks::TrackFile::finish);
    // a source that could not deliver a single frame is a failed start, not a run
    if let (0, Some(e)) = (
        report.pipeline.frames_processed,
        &report.pipeline.source_error,
    ) {
        eprintln!("error: {}", ocellus::redact::text(&e.to_string()));
        return Ok(crate::args::EXIT_SETUP);
    }
    let m = &report.publish;
    if m.dropped + m.refused > 0 {
        eprintln!(
            "warning: {} event(s) were lost to the queue bounds or a failed disk write (see [queue] in docs/config.md)",
            m.dropped + m.refused
        );
    }
    if m.lost > 0 {
        eprintln!(
            "warning: {} unacknowledged event(s) were lost to damage in the queue files at {} (the damaged bytes are kept in its damaged/ directory)",
            m.lost,
            queue_dir.display()
        );
    }
    let failed = report.pipeline.frames_failed;
    if failed > 0 {
        eprintln!(
            "warning: the detector failed on {failed} frame(s), which gave no detections (see the log and health's last_error)"
        );
    }
    let lost = m.dropped + m.refused + m.lost;
    if !m.flushed {
        eprintln!(
            "warning: the broker did not acknowledge everything before the stop: {} event(s) wait in {} and are sent first at the next start",
            m.queued,
            queue_dir.display()
        );
        return Ok(crate::args::EXIT_PARTIAL);
    }
    if lost > 0 || failed > 0 || !summary_written {
        return Ok(crate::args::EXIT_PARTIAL);
    }
    Ok(0)
}

pub(crate) fn run(
    config: &Path,
    frames: Option<u64>,
    onnxruntime: Option<PathBuf>,
    quiet: bool,
    format: Format,
    (summary, tracks): (Option<&Path>, Option<&Path>),
) -> ocellus::Result<u8> {
    let cfg = Config::load(config)?;
    let mut d = Deployment::from_config(&cfg);
    if onnxruntime.is_some() {
        d.onnxruntime = onnxruntime;
    }
    eprintln!(
        "ocellus: device {} | source {} | model {} | {} line(s), {} zone(s) | {} | queue {}",
        d.device,
        cfg.source.kind(),
        d.card.name,
        d.rules.lines.len(),
        d.rules.zones.len(),
        match &cfg.cloud {
            Some(c) => format!("{} {}", c.profile.kind(), d.mqtt.broker()),
            None => format!("{}/{}", d.mqtt.broker(), d.mqtt.topic_prefix),
        },
        d.mqtt.queue.dir.display()
    );
    execute(d, frames, !quiet, format, (summary, tracks))
}

pub(crate) fn check_config(config: &Path) -> ocellus::Result<u8> {
    let cfg = Config::load(config)?;
    println!(
        "{}: ok — device {}, source {}, model {} ({}), {} line(s), {} zone(s), {}{}://{}:{}, queue {}",
        config.display(),
        cfg.device.id,
        cfg.source.kind(),
        cfg.model.card.name,
        cfg.model.card_path.display(),
        cfg.rules.lines.len(),
        cfg.rules.zones.len(),
        match &cfg.cloud {
            Some(c) => format!("{} ", c.profile.kind()),
            None => "broker ".to_owned(),
        },
        if cfg.mqtt.tls.is_some() {
            "mqtts"
        } else {
            "mqtt"
        },
        cfg.mqtt.host,
        cfg.mqtt.port,
        cfg.queue.dir.display()
    );
    Ok(0)
}

/// The demo's rules on vtest.avi: a line across the walkway and a zone on the crossing.
pub(crate) fn demo_rules() -> RulesSection {
    RulesSection {
        config: RulesConfig::default(),
        lines: vec![LineRule {
            name: "walkway".into(),
            // vertical, across the path people walk along in both directions; a→b points down, so
            // a_to_b is right → left on screen
            a: [0.75, 0.3],
            b: [0.75, 0.75],
            labels: vec!["person".into()],
        }],
        zones: vec![ZoneRule {
            name: "crossing".into(),
            polygon: vec![[0.25, 0.35], [0.75, 0.35], [0.75, 0.7], [0.25, 0.7]],
            dwell: Some(Duration::from_secs(5)),
            labels: vec!["person".into()],
        }],
    }
}

pub(crate) fn demo(
    frames: Option<u64>,
    broker: Option<String>,
    port: Option<u16>,
    onnxruntime: Option<PathBuf>,
    summary: Option<&Path>,
) -> ocellus::Result<u8> {
    let video = ocellus::paths::footage_dir().join("vtest.avi");
    if !video.is_file() {
        return Err(ocellus::Error::Io {
            path: video,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the demo footage is missing: run models/provision.sh",
            ),
        });
    }
    let (host, port, tls) = match broker {
        Some(url) => {
            let b = ocellus::config::parse_broker_url(&url).map_err(|message| {
                ocellus::Error::InvalidOption {
                    name: "--broker".into(),
                    message,
                }
            })?;
            // mqtts:// with the system's roots; plaintext only to a broker on this machine
            if !b.tls && !ocellus::config::is_loopback_host(&b.host) {
                return Err(ocellus::Error::InvalidOption {
                    name: "--broker".into(),
                    message: format!(
                        "\"{url}\" is plaintext to another machine: use mqtts://, or run `ocellus run` with a config that sets mqtt.allow_insecure = true"
                    ),
                });
            }
            (b.host, b.port, b.tls)
        }
        None => {
            let (h, p) = crate::broker::start_embedded(port)?;
            (h, p, false)
        }
    };
    let device: Arc<str> = Arc::from("ocellus-demo");
    let demo_queue = TempDir::new("ocellus-demo-queue")?;
    let d = Deployment {
        device: device.clone(),
        source: SourceConfig::Video {
            input: VideoInput::File(video),
            fps: None,
            looped: false,
        },
        // the INT8 person detector: it holds the accuracy guard against the fp32 cut model
        // (docs/performance.md) at a third of its inference time
        card: ModelCard::builtin_person_int8()?,
        detector: DetectorOptions {
            labels: Some(vec!["person".into()]),
            ..Default::default()
        },
        // as a config without `model.tiles`: two tiles (docs/accuracy.md)
        tiling: Some(Default::default()),
        onnxruntime,
        tracker: Default::default(),
        rules: demo_rules(),
        // a queue of its own per demo run: a demo never replays an earlier one's events
        mqtt: MqttSettings {
            tls: tls.then(Default::default),
            ..MqttSettings::new(host.clone(), port, &device, demo_queue.path())
        },
        health_interval: Duration::from_secs(5),
        snapshots: false,
    };
    eprintln!(
        "ocellus demo: vtest.avi → SSD-MobileNet-v2 person detector (INT8) → tracker → line \"walkway\" + zone \"crossing\" → {}",
        d.mqtt.broker()
    );
    eprintln!("  watch with: mosquitto_sub -h {host} -p {port} -t 'ocellus/#' -v");
    execute(d, frames, true, Format::Text, (summary, None))
}

/// A directory removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> ocellus::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| ocellus::Error::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(TempDir(dir))
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
