//! `ocellus bench-delivery`: events through the durable queue to a broker on loopback, measured in
//! one run: how fast events are stored (append, the pipeline's cost per event) and how fast they are
//! delivered (stored → PUBACK for all of them), with the queue's default fsync batching.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use ocellus::event::Event;
use ocellus::publish::{MqttSettings, Publisher};
use ocellus::rules::{Direction, RuleEvent, RuleEventKind};

use crate::args::Format;

#[derive(Serialize)]
struct Report {
    events: u64,
    payload_bytes: usize,
    broker: String,
    fsync_ms: f64,
    /// events stored per second (append only: what `Publisher::publish` costs the pipeline)
    store_events_per_s: f64,
    /// events acknowledged by the broker per second, from the first append to the last PUBACK
    delivered_events_per_s: f64,
    /// whether every event was acknowledged
    flushed: bool,
}

pub(crate) fn run(
    events: u64,
    broker: Option<String>,
    fsync_ms: u64,
    format: Format,
) -> ocellus::Result<u8> {
    let (host, port) = match broker {
        Some(url) => ocellus::config::parse_mqtt_url(&url).map_err(|message| {
            ocellus::Error::InvalidOption {
                name: "--broker".into(),
                message,
            }
        })?,
        None => crate::broker::start_embedded(None)?,
    };
    let dir = std::env::temp_dir().join(format!("ocellus-bench-queue-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut settings = MqttSettings::new(host.clone(), port, "bench", &dir);
    settings.client_id = format!("ocellus-bench-{}", std::process::id());
    settings.topic_prefix = "ocellus-bench".into();
    settings.queue.fsync_interval = Duration::from_millis(fsync_ms);
    settings.queue.max_bytes = 1 << 30;
    let publisher = Publisher::start(settings)?;
    if !publisher.check_connect(Duration::from_secs(5))? {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(ocellus::Error::InvalidOption {
            name: "--broker".into(),
            message: format!("no broker answered at {host}:{port} within 5 s"),
        });
    }
    let device: Arc<str> = Arc::from("bench");
    let sample = event(&device, 0);
    let t0 = Instant::now();
    for n in 0..events {
        if !publisher.publish(&event(&device, n)) {
            break;
        }
    }
    let stored = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    let stats = publisher.stats();
    while stats.acked.load(std::sync::atomic::Ordering::Relaxed) < events
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let delivered = t0.elapsed();
    let summary = publisher.shutdown(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
    let report = Report {
        events,
        payload_bytes: sample.to_json().len(),
        broker: format!("{host}:{port}"),
        fsync_ms: fsync_ms as f64,
        store_events_per_s: events as f64 / stored.as_secs_f64().max(1e-9),
        delivered_events_per_s: summary.acked.min(events) as f64
            / delivered.as_secs_f64().max(1e-9),
        flushed: summary.flushed && summary.acked >= events,
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
        Format::Text => {
            println!(
                "{} events of {} bytes to {} (fsync every {} ms)",
                report.events, report.payload_bytes, report.broker, fsync_ms
            );
            println!(
                "stored:    {:.0} events/s (append to the disk queue)",
                report.store_events_per_s
            );
            println!(
                "delivered: {:.0} events/s (first append to last PUBACK){}",
                report.delivered_events_per_s,
                if report.flushed {
                    ""
                } else {
                    "  [NOT ALL ACKNOWLEDGED]"
                }
            );
        }
    }
    Ok(if report.flushed {
        0
    } else {
        crate::args::EXIT_PARTIAL
    })
}

fn event(device: &Arc<str>, n: u64) -> Event {
    let re = RuleEvent {
        kind: RuleEventKind::LineCrossed {
            direction: Direction::AToB,
        },
        rule: Arc::from("door"),
        frame: n,
        track: Some(n % 1000),
        label: Some(Arc::from("person")),
        score: Some(0.9),
        bbox: Some([0.41, 0.30, 0.47, 0.52]),
    };
    Event::from_rule(device, SystemTime::now(), &re)
}
