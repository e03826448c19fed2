use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::rules::{RuleEvent, RuleEventKind};

fn event(frame: u64) -> Event {
    let re = RuleEvent {
        kind: RuleEventKind::ZoneEntered,
        rule: Arc::from("door"),
        frame,
        track: Some(1),
        label: Some(Arc::from("person")),
        score: Some(0.9),
        bbox: Some([0.1, 0.1, 0.2, 0.3]),
    };
    Event::from_rule(&Arc::from("cam"), UNIX_EPOCH + Duration::from_secs(1), &re)
}

#[test]
fn a_full_channel_refuses_and_never_blocks() {
    let (mut sink, rx) = ChannelSink::new(2);
    sink.send(&event(0)).unwrap();
    sink.send(&event(1)).unwrap();
    let err = sink.send(&event(2)).unwrap_err();
    assert_eq!(err.fault(), Fault::Environment);
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(rx.try_iter().map(|e| e.frame).collect::<Vec<_>>(), [0, 1]);
    drop(rx);
    let err = sink.send(&event(3)).unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
}

#[test]
fn json_lines_are_one_event_each_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let one = event(0).to_json().len() as u64 + 1;
    let mut sink = JsonLinesSink::append_bounded(&path, 2 * one).unwrap();
    sink.send(&event(0)).unwrap();
    sink.send(&event(1)).unwrap();
    let err = sink.send(&event(2)).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    sink.flush().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let frames: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["frame"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(frames, [0, 1]);
    // appending to an existing file counts what it already holds
    let mut again = JsonLinesSink::append_bounded(&path, 2 * one).unwrap();
    assert!(again.send(&event(3)).is_err());
}

#[test]
fn a_closure_sees_every_event_and_its_error_is_passed_on() {
    let mut seen = Vec::new();
    let mut sink = FnSink(|e: &Event| {
        seen.push(e.frame);
        if e.frame == 1 {
            Err(Error::invalid_option("x", "no"))
        } else {
            Ok(())
        }
    });
    sink.send(&event(0)).unwrap();
    assert!(sink.send(&event(1)).is_err());
    assert_eq!(seen, [0, 1]);
}
