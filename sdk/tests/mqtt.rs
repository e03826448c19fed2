#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The publisher against a real mosquitto on loopback: QoS 1 events on the documented topics,
//! retained status `online`/`offline`, a broker that comes up late, the in-memory bound.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::broker::{Mosquitto, Subscriber, free_port, retained};
use ocellus::event::Event;
use ocellus::publish::{MqttSettings, Publisher};
use ocellus::rules::{Direction, RuleEvent, RuleEventKind};

fn settings(port: u16, device: &str, max_pending: usize) -> MqttSettings {
    MqttSettings {
        host: "127.0.0.1".into(),
        port,
        client_id: format!("ocellus-test-{device}"),
        topic_prefix: "test/site".into(),
        device: Arc::from(device),
        keep_alive: Duration::from_secs(10),
        max_pending_events: max_pending,
    }
}

fn event(device: &Arc<str>, frame: u64) -> Event {
    let re = RuleEvent {
        kind: RuleEventKind::LineCrossed {
            direction: if frame.is_multiple_of(2) {
                Direction::AToB
            } else {
                Direction::BToA
            },
        },
        rule: Arc::from("door"),
        frame,
        track: Some(frame + 1),
        label: Some(Arc::from("person")),
        score: Some(0.9),
        bbox: Some([0.1, 0.2, 0.3, 0.4]),
    };
    Event::from_rule(device, SystemTime::now(), &re)
}

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
    let publisher = Publisher::start(settings(broker.port, "cam-1", 1000)).unwrap();
    let sent: Vec<Event> = (0..200).map(|i| event(&device, i)).collect();
    for e in &sent {
        assert!(publisher.publish(e));
    }
    let summary = publisher.shutdown(Duration::from_secs(10));
    assert!(summary.flushed, "{summary:?}");
    assert_eq!((summary.accepted, summary.dropped), (200, 0));
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
    let publisher = Publisher::start(settings(port, "cam-late", 1000)).unwrap();
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

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    // nobody listens on this port: nothing drains the queue
    let port = free_port();
    let device: Arc<str> = Arc::from("cam-full");
    let publisher = Publisher::start(settings(port, "cam-full", 10)).unwrap();
    let start = std::time::Instant::now();
    let accepted = (0..1000)
        .filter(|&i| publisher.publish(&event(&device, i)))
        .count();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "publish must not block"
    );
    // the sender thread may move up to the request channel's 64 out of the queue
    assert!((10..=10 + 64 + 1).contains(&accepted), "{accepted}");
    let summary = publisher.shutdown(Duration::from_millis(200));
    assert_eq!(summary.accepted + summary.dropped, 1000);
    assert!(!summary.flushed);
    // every accepted event is accounted for as undelivered: still queued, or handed to the MQTT
    // client without a PUBACK (no broker ever answered, so nothing was acknowledged)
    assert_eq!(summary.acked, 0, "{summary:?}");
    assert_eq!(
        summary.unsent + summary.unacked,
        summary.accepted,
        "{summary:?}"
    );
}
