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
        "mqtt:     {} events accepted; {} of {} QoS 1 messages acknowledged; {} dropped (queue full), {} never handed over; {} connect(s){}",
        m.accepted,
        m.acked,
        m.sent,
        m.dropped,
        m.unsent,
        m.connects,
        m.last_error
            .as_ref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default()
    );
    eprintln!(
        "start-up: {:.0} ms (model, source)",
        report.startup.as_secs_f64() * 1e3
    );
    if let Some(e) = &p.source_error {
        eprintln!("source:   ended early: {e}");
    }
}

fn execute(d: Deployment, frames: Option<u64>, print_events: bool) -> ocellus::Result<u8> {
    let stop = stop_flag()?;
    let bar = std::cell::RefCell::new(ProgressBar::new());
    let opts = Options { max_frames: frames };
    let report = d.run(
        &opts,
        &stop,
        |ev, accepted| {
            if print_events {
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
    if !report.publish.flushed {
        let m = &report.publish;
        let lost = m.unacked + m.unsent + m.dropped;
        eprintln!(
            "warning: the broker did not acknowledge everything before the stop: up to {lost} message(s) were not delivered"
        );
        return Ok(crate::EXIT_PARTIAL);
    }
    Ok(0)
}

pub(crate) fn run(
    config: &Path,
    frames: Option<u64>,
    onnxruntime: Option<PathBuf>,
    quiet: bool,
) -> ocellus::Result<u8> {
    let cfg = Config::load(config)?;
    let mut d = Deployment::from_config(&cfg);
    if onnxruntime.is_some() {
        d.onnxruntime = onnxruntime;
    }
    eprintln!(
        "ocellus: device {} | source {} | model {} | {} line(s), {} zone(s) | mqtt://{}:{}/{}",
        d.device,
        cfg.source.kind(),
        d.card.name,
        d.rules.lines.len(),
        d.rules.zones.len(),
        d.mqtt.host,
        d.mqtt.port,
        d.mqtt.topic_prefix
    );
    execute(d, frames, !quiet)
}

pub(crate) fn check_config(config: &Path) -> ocellus::Result<u8> {
    let cfg = Config::load(config)?;
    println!(
        "{}: ok — device {}, source {}, model {} ({}), {} line(s), {} zone(s), broker {}:{}",
        config.display(),
        cfg.device.id,
        cfg.source.kind(),
        cfg.model.card.name,
        cfg.model.card_path.display(),
        cfg.rules.lines.len(),
        cfg.rules.zones.len(),
        cfg.mqtt.host,
        cfg.mqtt.port
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
    let (host, port) = match broker {
        Some(url) => ocellus::config::parse_mqtt_url(&url).map_err(|message| {
            ocellus::Error::InvalidOption {
                name: "--broker".into(),
                message,
            }
        })?,
        None => crate::broker::start_embedded(port)?,
    };
    let device: Arc<str> = Arc::from("ocellus-demo");
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
        mqtt: MqttSettings {
            host: host.clone(),
            port,
            client_id: "ocellus-demo".into(),
            topic_prefix: "ocellus".into(),
            device,
            keep_alive: Duration::from_secs(30),
            max_pending_events: 10_000,
        },
    };
    eprintln!(
        "ocellus demo: vtest.avi → SSD-MobileNet-v2 person detector → tracker → line \"walkway\" + zone \"crossing\" → mqtt://{host}:{port}"
    );
    eprintln!("  watch with: mosquitto_sub -h {host} -p {port} -t 'ocellus/#' -v");
    execute(d, frames, true)
}
