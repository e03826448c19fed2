//! The publisher as an [`EventSink`]. No broker: connecting fails in the background, and the
//! events wait in the queue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ocellus_core::EventSink;
use ocellus_core::event::{EventType, SCHEMA};

use super::*;
use crate::spool::WhenFull;

fn event(i: u32) -> Event {
    Event {
        schema: SCHEMA,
        id: format!("0190a1b2-c3d4-7e5f-8a9b-{i:012}"),
        kind: EventType::Occupancy,
        device: Arc::from("cam-1"),
        time: "2025-01-01T00:00:00.000Z".into(),
        frame: u64::from(i),
        track: None,
        label: None,
        score: None,
        bbox: None,
        rule: Arc::from("door"),
        direction: None,
        dwell_s: None,
        count: Some(i),
    }
}

/// A local port nothing listens on: connects are refused at once.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn the_sink_stores_events_and_names_the_one_the_queue_refuses() {
    let d = tempfile::tempdir().unwrap();
    let port = closed_port();
    let mut s = MqttSettings::new("127.0.0.1", port, "cam-1", d.path());
    // room for exactly one event
    let first = event(1);
    let topic = s.profile.event_topic(&s.topic_prefix, &first);
    s.queue.max_bytes = 8 + 18 + (topic.len() + first.to_json().len()) as u64;
    s.queue.when_full = WhenFull::RefuseNew;
    let mut p = Publisher::start(s).unwrap();
    let sink: &mut dyn EventSink = &mut p;
    sink.send(&first).unwrap();
    let second = event(2);
    let err = sink.send(&second).unwrap_err();
    assert_eq!(err.fault(), Fault::Environment);
    let msg = err.to_string();
    assert!(msg.contains(&second.id), "{msg}");
    assert!(msg.contains("refused by the queue's bounds"), "{msg}");
    assert_eq!(sink.describe(), format!("MQTT 127.0.0.1:{port}"));
    sink.flush().unwrap();
    let stats = p.stats();
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 1);
    assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
    // the accepted one waits on disk for the broker
    assert_eq!(p.health().queue.depth, 1);
}

#[test]
fn an_ipv6_broker_is_named_in_brackets() {
    let s = MqttSettings::new("::1", 8883, "cam-1", "/nonexistent");
    assert_eq!(s.host_port(), "[::1]:8883");
    assert_eq!(s.broker(), "mqtt://[::1]:8883");
    let s = MqttSettings::new("broker.example", 1883, "cam-1", "/nonexistent");
    assert_eq!(s.broker(), "mqtt://broker.example:1883");
}

/// What [`tiny_broker`] saw: every PUBLISH (topic, payload, retain), and whether a DISCONNECT
/// came.
#[derive(Default)]
struct Seen {
    published: Mutex<Vec<(String, Vec<u8>, bool)>>,
    disconnected: AtomicBool,
}

/// A broker of a few lines, for one client at a time: CONNACK, a PUBACK for every QoS 1 PUBLISH
/// (after noting it), PINGRESP. Enough to run the real connection thread end to end.
fn tiny_broker() -> (u16, Arc<Seen>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut serve = || -> std::io::Result<()> {
                loop {
                    let mut head = [0u8; 1];
                    s.read_exact(&mut head)?;
                    let (mut len, mut shift) = (0usize, 0);
                    loop {
                        let mut b = [0u8; 1];
                        s.read_exact(&mut b)?;
                        len |= usize::from(b[0] & 0x7f) << shift;
                        shift += 7;
                        if b[0] & 0x80 == 0 {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    s.read_exact(&mut body)?;
                    match head[0] >> 4 {
                        1 => s.write_all(&[0x20, 2, 0, 0])?,
                        3 => {
                            let qos = (head[0] >> 1) & 3;
                            let n = usize::from(u16::from_be_bytes([body[0], body[1]]));
                            let topic = String::from_utf8(body[2..2 + n].to_vec()).unwrap();
                            let at = if qos > 0 { 4 + n } else { 2 + n };
                            let retain = head[0] & 1 == 1;
                            let msg = (topic, body[at..].to_vec(), retain);
                            shared.published.lock().unwrap().push(msg);
                            if qos > 0 {
                                s.write_all(&[0x40, 2, body[2 + n], body[3 + n]])?;
                            }
                        }
                        12 => s.write_all(&[0xd0, 0])?,
                        14 => {
                            shared.disconnected.store(true, Ordering::Relaxed);
                            return Ok(());
                        }
                        _ => {}
                    }
                }
            };
            let _ = serve();
        }
    });
    (port, seen)
}

#[test]
fn events_reach_the_broker_once_each_and_the_stop_is_clean() {
    let (port, seen) = tiny_broker();
    let d = tempfile::tempdir().unwrap();
    let p = Publisher::start(MqttSettings::new("127.0.0.1", port, "cam-1", d.path())).unwrap();
    assert!(p.check_connect(Duration::from_secs(10)).unwrap());
    let events: Vec<Event> = (0..50).map(event).collect();
    for e in &events {
        assert!(p.publish(e));
    }
    p.post_health(b"{\"h\":1}".to_vec());
    let summary = p.shutdown(Duration::from_secs(10));
    assert!(summary.flushed, "{summary:?}");
    assert_eq!(
        (
            summary.accepted,
            summary.sent,
            summary.acked,
            summary.queued
        ),
        (50, 50, 50, 0)
    );
    assert_eq!(summary.connects, 1);
    let published = seen.published.lock().unwrap().clone();
    let status = |what: &[u8]| ("ocellus/cam-1/status".to_owned(), what.to_vec(), true);
    assert_eq!(published.first(), Some(&status(b"online")));
    assert_eq!(published.last(), Some(&status(b"offline")));
    let health = (
        "ocellus/cam-1/health".to_owned(),
        b"{\"h\":1}".to_vec(),
        true,
    );
    assert!(published.contains(&health), "{published:?}");
    let sent: Vec<&[u8]> = published
        .iter()
        .filter(|(topic, _, _)| topic.contains("/events/"))
        .map(|(_, payload, _)| payload.as_slice())
        .collect();
    let want: Vec<Vec<u8>> = events.iter().map(Event::to_json).collect();
    assert_eq!(sent, want, "every event once, in order");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.disconnected.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        seen.disconnected.load(Ordering::Relaxed),
        "a clean DISCONNECT"
    );
}
