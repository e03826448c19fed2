//! `ocellus run`, `ocellus demo` and `ocellus check-config`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ocellus::card::ModelCard;
use ocellus::config::{Config, RulesSection, SourceConfig, VideoInput};
use ocellus::deploy::{Deployment, Report};
use ocellus::event::{Event, EventType};
use ocellus::infer::DetectorOptions;
use ocellus::pipeline::{Options, Progress};
use ocellus::publish::MqttSettings;
use ocellus::rules::{LineRule, RulesConfig, ZoneRule};

use crate::Format;

/// Ctrl-C / SIGTERM set the flag (a clean stop); a second Ctrl-C exits at once.
fn stop_flag() -> ocellus::Result<Arc<AtomicBool>> {
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
struct ProgressBar {
    enabled: bool,
    last_drawn: u64,
}

impl ProgressBar {
    fn new() -> Self {
        ProgressBar {
            enabled: std::io::stderr().is_terminal(),
            last_drawn: 0,
        }
    }
    fn draw(&mut self, p: &Progress) {
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
    fn finish(&self) {
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

fn print_summary(report: &Report) {
    let p = &report.pipeline;
    let m = &report.publish;
    eprintln!("---- summary");
    eprintln!(
        "frames:   {} processed at {:.1} fps, {} dropped (inference behind a live source), {} skipped (undecodable), {} failed",
        p.frames_processed,
        p.fps(),
        p.frames_dropped,
        p.source.skipped,
        p.frames_failed
    );
    let by_type: Vec<String> = EventType::ALL
        .iter()
        .map(|t| format!("{} {}", t.as_str(), p.events.get(t).copied().unwrap_or(0)))
        .collect();
    eprintln!("events:   {} ({})", p.event_count(), by_type.join(", "));
    let ratio = if m.event_bytes > 0 {
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
    if m.recovered + m.torn + m.dropped + m.refused > 0 {
        eprintln!(
            "queue:    {} recovered from an earlier run, {} damaged record(s) skipped, {} dropped by the bounds, {} refused",
            m.recovered, m.torn, m.dropped, m.refused
        );
    }
    eprintln!(
        "start-up: {:.0} ms (model, source)",
        report.startup.as_secs_f64() * 1e3
    );
    if let Some(e) = &p.source_error {
        eprintln!("source:   ended early: {e}");
    }
}

fn execute(
    d: Deployment,
    frames: Option<u64>,
    print_events: bool,
    format: Format,
) -> ocellus::Result<u8> {
    let stop = stop_flag()?;
    let queue_dir = d.mqtt.queue.dir.clone();
    let bar = std::cell::RefCell::new(ProgressBar::new());
    let opts = Options {
        max_frames: frames,
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
    print_summary(&report);
    // a source that could not deliver a single frame is a failed start, not a run
    if let (0, Some(e)) = (
        report.pipeline.frames_processed,
        &report.pipeline.source_error,
    ) {
        eprintln!("error: {e}");
        return Ok(crate::EXIT_SETUP);
    }
    let m = &report.publish;
    if m.dropped + m.refused > 0 {
        eprintln!(
            "warning: {} event(s) were lost to the queue bounds or a failed disk write (see [queue] in docs/config.md)",
            m.dropped + m.refused
        );
    }
    let lost = m.dropped + m.refused;
    if !m.flushed {
        eprintln!(
            "warning: the broker did not acknowledge everything before the stop: {} event(s) wait in {} and are sent first at the next start",
            m.queued,
            queue_dir.display()
        );
        return Ok(crate::EXIT_PARTIAL);
    }
    if lost > 0 {
        return Ok(crate::EXIT_PARTIAL);
    }
    Ok(0)
}

pub(crate) fn run(
    config: &Path,
    frames: Option<u64>,
    onnxruntime: Option<PathBuf>,
    quiet: bool,
    format: Format,
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
    execute(d, frames, !quiet, format)
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
        card: ModelCard::builtin_ssd()?,
        detector: DetectorOptions {
            labels: Some(vec!["person".into()]),
            ..Default::default()
        },
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
        "ocellus demo: vtest.avi → SSD-MobileNet-v2 person detector → tracker → line \"walkway\" + zone \"crossing\" → {}",
        d.mqtt.broker()
    );
    eprintln!("  watch with: mosquitto_sub -h {host} -p {port} -t 'ocellus/#' -v");
    execute(d, frames, true, Format::Text)
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> ocellus::Result<TempDir> {
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
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
