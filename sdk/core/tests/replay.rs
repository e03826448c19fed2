//! Behaviour pinned by a replay: the detections the real model made on all 795 frames of
//! vtest.avi (recorded once, `tests/fixtures/vtest-detections.jsonl`; see
//! `sdk/cli/tests/replay_fixture.rs` for how, and for the check that the model still sees them)
//! go through the tracker and the demo's rules, and the events must be exactly the golden
//! sequence in `tests/fixtures/vtest-events.golden` (type, rule, track, frame, direction).
//!
//! Any change in tracking or rules shows here as a diff of event lines, on any machine: the input
//! is recorded, not computed, so no CPU difference reaches it. When a change of events is
//! intended, rewrite the golden with `OCELLUS_BLESS=1 cargo test -p ocellus-core --test replay`
//! and commit the diff with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ocellus_core::rules::{Direction, LineRule, RuleEvent, RuleEventKind, RulesConfig, ZoneRule};
use ocellus_core::{Rules, Tracker, TrackerConfig};

mod common;

use common::{Recorded, fixtures, load};

/// The rules of `ocellus demo` (sdk/cli/src/run.rs, `demo_rules`).
fn demo_rules() -> Rules {
    let person = vec!["person".to_owned()];
    Rules::new(
        vec![LineRule {
            name: "walkway".into(),
            a: [0.75, 0.3],
            b: [0.75, 0.75],
            labels: person.clone(),
        }],
        vec![ZoneRule {
            name: "crossing".into(),
            polygon: vec![[0.25, 0.35], [0.75, 0.35], [0.75, 0.7], [0.25, 0.7]],
            dwell: Some(Duration::from_secs(5)),
            labels: person,
        }],
        RulesConfig::default(),
    )
    .unwrap()
}

/// One event as a golden line: frame, type, rule, track, and what the type adds.
fn line(e: &RuleEvent) -> String {
    let track = e.track.map_or("-".to_owned(), |t| t.to_string());
    let (kind, extra) = match &e.kind {
        RuleEventKind::LineCrossed { direction } => (
            "line_crossed",
            match direction {
                Direction::AToB => "a_to_b".to_owned(),
                Direction::BToA => "b_to_a".to_owned(),
            },
        ),
        RuleEventKind::ZoneEntered => ("zone_entered", String::new()),
        RuleEventKind::ZoneExited { dwell } => ("zone_exited", format!("{}ms", dwell.as_millis())),
        RuleEventKind::Dwell { dwell } => ("dwell", format!("{}ms", dwell.as_millis())),
        RuleEventKind::Occupancy { count } => ("occupancy", format!("count={count}")),
    };
    format!("{} {kind} {} track={track} {extra}", e.frame, e.rule)
        .trim_end()
        .to_owned()
}

/// Tracker → rules over the recorded frames, the run's end included, as golden lines.
fn replay(frames: &[Recorded], threshold: f32) -> Vec<String> {
    let (_floor, cfg) = TrackerConfig::default().coupled_to(threshold);
    let mut tracker = Tracker::new(cfg).unwrap();
    let mut rules = demo_rules();
    let mut out = Vec::new();
    for r in frames {
        // by motion alone: the golden is also what an `Inference` of the caller's gives on
        // frames without pictures (`examples/custom_inference.rs`); the looks are scored by the
        // counting test (`counts.rs`)
        let tracks = tracker.update(r.frame, &r.detections);
        out.extend(rules.update(r.frame, r.t, &tracks).iter().map(line));
    }
    let last = frames.last().expect("frames");
    let ended = ocellus_core::TrackerOutput {
        observed: Vec::new(),
        ended: tracker.finish(),
    };
    out.extend(rules.update(last.frame, last.t, &ended).iter().map(line));
    out.extend(rules.finish(last.frame, last.t).iter().map(line));
    out
}

#[test]
fn vtest_detections_through_tracker_and_rules_give_the_golden_events() {
    let (header, frames) = load();
    assert_eq!(header.frames, 795, "{header:?}");
    assert!(header.source.starts_with("vtest.avi"), "{header:?}");
    assert!(
        header.card.starts_with("ssd-mobilenet-v2-coco"),
        "{header:?}"
    );
    assert_eq!(header.labels, ["person"]);
    assert!(header.floor < header.threshold, "{header:?}");
    assert_eq!(frames.len(), 795, "every frame of vtest.avi is recorded");
    assert!(
        frames.iter().enumerate().all(|(i, r)| r.frame == i as u64),
        "frames in order, none missing"
    );
    let got = replay(&frames, header.threshold);
    let path = fixtures().join("vtest-events.golden");
    if std::env::var_os("OCELLUS_BLESS").is_some() {
        std::fs::write(&path, got.join("\n") + "\n").unwrap();
    }
    let want: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (OCELLUS_BLESS=1 writes it)", path.display()))
        .lines()
        .map(str::to_owned)
        .collect();
    if got != want {
        let mut diff = String::new();
        for i in 0..got.len().max(want.len()) {
            let (g, w) = (got.get(i), want.get(i));
            if g != w {
                diff += &format!(
                    "event {i}:\n  golden: {}\n  now:    {}\n",
                    w.map_or("(none)", String::as_str),
                    g.map_or("(none)", String::as_str)
                );
            }
        }
        panic!(
            "the events changed ({} now, {} golden); first differences:\n{}",
            got.len(),
            want.len(),
            diff.lines().take(30).collect::<Vec<_>>().join("\n")
        );
    }
    // the footage has people crossing the walkway both ways and visiting the crossing zone
    for kind in [
        "line_crossed walkway",
        "zone_entered crossing",
        "zone_exited",
        "occupancy",
    ] {
        assert!(got.iter().any(|l| l.contains(kind)), "no {kind} event");
    }
}
