#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The publisher against a real mosquitto on loopback: QoS 1 events on the documented topics,
//! retained status `online`/`offline`, a broker that comes up late, the disk queue's bounds and
//! policies, and events that outlive the publisher.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::broker::{Mosquitto, Subscriber, free_port, retained};
use ocellus::event::Event;
use ocellus::health::Reporter;
use ocellus::publish::{MqttSettings, Publisher};
use ocellus::spool::WhenFull;

fn settings(port: u16, device: &str, queue: &std::path::Path) -> MqttSettings {
    let mut s = MqttSettings::new("127.0.0.1", port, device, queue);
    s.client_id = format!("ocellus-test-{device}");
    s.topic_prefix = "test/site".into();
    s.keep_alive = Duration::from_secs(10);
    s
}

use common::line_event as event;

fn event_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains("/events/"))
        .filter_map(|l| l.split_once(' '))
        .map(|(_, payload)| {
            let v: serde_json::Value = serde_json::from_str(payload).expect("event JSON");
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

#[test]
fn events_and_status_reach_an_independent_subscriber() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, "test/site/#");
    let device: Arc<str> = Arc::from("cam-1");
    let q = tempfile::tempdir().unwrap();
    let publisher = Publisher::start(settings(broker.port, "cam-1", q.path())).unwrap();
    let sent: Vec<Event> = (0..200).map(|i| event(&device, i)).collect();
    for e in &sent {
        assert!(publisher.publish(e));
    }
    let summary = publisher.shutdown(Duration::from_secs(10));
    assert!(summary.flushed, "{summary:?}");
    assert_eq!(
        (summary.accepted, summary.dropped, summary.queued),
        (200, 0, 0)
    );
    assert!(
        sub.wait_for(Duration::from_secs(5), |l| event_ids(l).len() >= 200
            && l.last().is_some_and(|x| x.ends_with("offline")))
    );
    let lines = sub.lines();
    let mut ids = event_ids(&lines);
    let want: Vec<String> = sent.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, want, "every event, in order, once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert!(
        lines.iter().any(|l| l == "test/site/cam-1/status online"),
        "{:?}",
        &lines[..3]
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("/events/")
                || l.starts_with("test/site/cam-1/events/line_crossed "))
    );
    assert_eq!(
        retained(broker.port, "test/site/cam-1/status").as_deref(),
        Some("offline")
    );
}

#[test]
fn a_broker_that_comes_up_late_still_gets_every_event() {
    let port = free_port();
    let device: Arc<str> = Arc::from("cam-late");
    let q = tempfile::tempdir().unwrap();
    let publisher = Publisher::start(settings(port, "cam-late", q.path())).unwrap();
    let sent: Vec<Event> = (0..50).map(|i| event(&device, i)).collect();
    for e in &sent {
        assert!(
            publisher.publish(e),
            "publish never blocks and the queue has room"
        );
    }
    std::thread::sleep(Duration::from_millis(700)); // a few failed connects with backoff
    assert!(
        publisher.stats().last_error.lock().unwrap().is_some(),
        "connect failures are reported"
    );
    // now the broker appears on that port
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("m.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .unwrap();
    let mut child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .spawn()
        .unwrap();
    let sub_ready = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        && sub_ready.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let sub = Subscriber::start(port, "test/site/#");
    let summary = publisher.shutdown(Duration::from_secs(20));
    assert!(summary.flushed, "{summary:?}");
    assert!(sub.wait_for(Duration::from_secs(5), |l| event_ids(l).len() >= 50));
    let mut ids = event_ids(&sub.lines());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    let _ = child.kill();
    let _ = child.wait();
}

/// Fill a queue of `max_bytes` with 1000 events while no broker listens, then let a broker appear.
/// Returns the events, what the subscriber got, and the summary.
fn overfill(
    device: &str,
    when_full: WhenFull,
) -> (
    Vec<Event>,
    Vec<String>,
    ocellus::publish::PublishSummary,
    String,
) {
    let port = free_port();
    let q = tempfile::tempdir().unwrap();
    let mut s = settings(port, device, q.path());
    s.queue.max_bytes = 64 * 1024;
    s.queue.segment_bytes = 8 * 1024;
    s.queue.when_full = when_full;
    let dev: Arc<str> = Arc::from(device);
    let publisher = Publisher::start(s).unwrap();
    let sent: Vec<Event> = (0..1000).map(|i| event(&dev, i)).collect();
    let start = std::time::Instant::now();
    let accepted = sent.iter().filter(|e| publisher.publish(e)).count();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "publish must not wait for the network"
    );
    let h = publisher.health();
    assert!(h.queue.bytes <= 64 * 1024, "{h:?}");
    match when_full {
        WhenFull::DropOldest => {
            assert_eq!(accepted, 1000);
            assert!(h.queue.dropped_full > 0, "{h:?}");
            assert_eq!(h.queue.dropped_full + h.queue.depth, 1000, "{h:?}");
        }
        WhenFull::RefuseNew => {
            assert!(accepted < 1000);
            assert_eq!(h.queue.refused_full, 1000 - accepted as u64, "{h:?}");
            assert_eq!(h.refused, 1000 - accepted as u64, "{h:?}");
            assert_eq!(h.queue.depth, accepted as u64, "{h:?}");
        }
    }
    // the health topic reports it once the broker is there
    let mut reporter = Reporter::new(device, &publisher.settings().queue, 0);
    let live = ocellus::pipeline::LiveCounters::default();
    publisher.post_health(reporter.report(&live, &publisher.health()).to_json());
    let broker = start_mosquitto_on(port);
    let sub = Subscriber::start(port, "test/site/#");
    let summary = publisher.shutdown(Duration::from_secs(20));
    assert!(summary.flushed, "{summary:?}");
    let depth = h.queue.depth as usize;
    assert!(sub.wait_for(Duration::from_secs(10), |l| event_ids(l).len() >= depth));
    let health = retained(port, &format!("test/site/{device}/health")).expect("retained health");
    drop(broker);
    (sent, event_ids(&sub.lines()), summary, health)
}

fn start_mosquitto_on(port: u16) -> common::faults::Broker {
    let mut b = common::faults::Broker::on_port(port);
    b.start();
    b
}

#[test]
fn an_over_full_queue_drops_the_oldest_and_reports_it() {
    let (sent, got, summary, health) = overfill("cam-drop", WhenFull::DropOldest);
    let n = got.len();
    assert!(n > 50 && n < 1000, "{n}");
    // exactly the newest n, in order
    let want: Vec<String> = sent[1000 - n..].iter().map(|e| e.id.clone()).collect();
    assert_eq!(got, want);
    assert_eq!(summary.dropped, (1000 - n) as u64, "{summary:?}");
    let v: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(v["schema"], "ocellus.health/1");
    assert_eq!(v["queue"]["when_full"], "drop_oldest");
    assert_eq!(v["queue"]["dropped_full"], (1000 - n) as u64, "{health}");
    assert!(
        v["degraded"].to_string().contains("dropped by its bounds"),
        "{health}"
    );
}

#[test]
fn an_over_full_queue_refuses_new_events_and_reports_it() {
    let (sent, got, summary, health) = overfill("cam-refuse", WhenFull::RefuseNew);
    let n = got.len();
    assert!(n > 50 && n < 1000, "{n}");
    // exactly the oldest n, in order
    let want: Vec<String> = sent[..n].iter().map(|e| e.id.clone()).collect();
    assert_eq!(got, want);
    assert_eq!(summary.refused, (1000 - n) as u64, "{summary:?}");
    assert_eq!(summary.dropped, 0, "{summary:?}");
    let v: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(v["queue"]["when_full"], "refuse_new");
    assert_eq!(v["queue"]["refused_full"], (1000 - n) as u64, "{health}");
    assert_eq!(v["events"]["refused"], (1000 - n) as u64, "{health}");
}

#[test]
fn queued_events_outlive_the_publisher_and_go_first_in_order() {
    let port = free_port();
    let q = tempfile::tempdir().unwrap();
    let dev: Arc<str> = Arc::from("cam-restart");
    // no broker: 100 events wait on disk; the publisher goes away without a clean stop
    let first = Publisher::start(settings(port, "cam-restart", q.path())).unwrap();
    let old: Vec<Event> = (0..100).map(|i| event(&dev, i)).collect();
    for e in &old {
        assert!(first.publish(e));
    }
    drop(first);
    let _broker = start_mosquitto_on(port);
    let sub = Subscriber::start(port, "test/site/#");
    let second = Publisher::start(settings(port, "cam-restart", q.path())).unwrap();
    assert_eq!(second.recovered(), 100);
    let new: Vec<Event> = (100..150).map(|i| event(&dev, i)).collect();
    for e in &new {
        assert!(second.publish(e));
    }
    let summary = second.shutdown(Duration::from_secs(20));
    assert!(summary.flushed, "{summary:?}");
    assert_eq!(summary.recovered, 100);
    assert!(sub.wait_for(Duration::from_secs(10), |l| event_ids(l).len() >= 150));
    let want: Vec<String> = old.iter().chain(&new).map(|e| e.id.clone()).collect();
    assert_eq!(
        event_ids(&sub.lines()),
        want,
        "the old ones first, in order, once"
    );
    // and a third start finds nothing left to send
    let third = Publisher::start(settings(port, "cam-restart", q.path())).unwrap();
    assert_eq!(third.recovered(), 0);
    third.shutdown(Duration::from_secs(5));
}

#[test]
fn a_second_publisher_on_the_same_queue_is_refused_clearly() {
    let q = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = Publisher::start(settings(port, "cam-a", q.path())).unwrap();
    let err = Publisher::start(settings(port, "cam-a", q.path())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&q.path().display().to_string()), "{msg}");
    drop(first);
}

#[test]
fn topic_levels_cannot_be_injected_through_the_device_id() {
    let q = tempfile::tempdir().unwrap();
    for bad in ["a/b", "cam+", "#", ""] {
        let err = Publisher::start(settings(1883, bad, q.path())).unwrap_err();
        assert!(err.to_string().contains("topic level"), "{bad}: {err}");
    }
}
