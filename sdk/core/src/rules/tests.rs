use super::*;
use crate::track::TrackState;

#[test]
fn a_zone_that_crosses_itself_is_refused_even_with_an_area() {
    let zone = |polygon: Vec<[f32; 2]>| ZoneRule {
        name: "z".into(),
        polygon,
        dwell: None,
        labels: Vec::new(),
    };
    // an asymmetric bow tie: non-zero shoelace area, but not a simple polygon
    let bow = zone(vec![[0.1, 0.1], [0.9, 0.5], [0.9, 0.1], [0.1, 0.3]]);
    let msg = validate_zone(&bow).map(|_| ()).unwrap_err().to_string();
    assert!(
        msg.contains("crosses itself") && msg.contains("rules.zone.z.polygon"),
        "{msg}"
    );
    // a concave simple polygon is fine, and so is a triangle
    let concave = zone(vec![
        [0.1, 0.1],
        [0.9, 0.1],
        [0.5, 0.4],
        [0.9, 0.9],
        [0.1, 0.9],
    ]);
    assert!(validate_zone(&concave).is_ok());
    assert!(validate_zone(&zone(vec![[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]])).is_ok());
    // a vertex touching a non-adjacent edge is a crossing too
    let touch = zone(vec![
        [0.1, 0.1],
        [0.9, 0.1],
        [0.9, 0.9],
        [0.5, 0.1],
        [0.1, 0.9],
    ]);
    assert!(validate_zone(&touch).is_err());
}

const FRAME: u64 = 100; // ms per frame

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn t_of(frame: u64) -> Duration {
    ms(frame * FRAME)
}

/// A track whose feet (bottom centre of its box) are at `(x, y)`.
fn track(id: u64, label: &str, x: f32, y: f32) -> Track {
    Track {
        id,
        label: Arc::from(label),
        class_id: 0,
        score: 0.8,
        bbox: [x - 0.05, y - 0.2, x + 0.05, y],
        state: TrackState::Tracked,
        hits: 10,
        first_frame: 0,
        last_frame: 0,
    }
}

fn person(id: u64, x: f32, y: f32) -> Track {
    track(id, "person", x, y)
}

fn seen(observed: Vec<Track>) -> TrackerOutput {
    TrackerOutput {
        observed,
        ended: Vec::new(),
    }
}

fn line(name: &str, a: [f32; 2], b: [f32; 2]) -> LineRule {
    LineRule {
        name: name.to_owned(),
        a,
        b,
        labels: Vec::new(),
    }
}

fn square_zone(name: &str, dwell: Option<Duration>) -> ZoneRule {
    ZoneRule {
        name: name.to_owned(),
        polygon: vec![[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]],
        dwell,
        labels: Vec::new(),
    }
}

fn cfg(debounce: u32) -> RulesConfig {
    RulesConfig {
        line_hysteresis: 0.01,
        zone_debounce_frames: debounce,
        // most tests here are about geometry: a crossing counts at the first frame past a line
        line_debounce_frames: 1,
    }
}

/// What a test compares: (frame, rule, track, kind).
type Brief = (u64, String, Option<u64>, RuleEventKind);

fn brief(events: &[RuleEvent]) -> Vec<Brief> {
    events
        .iter()
        .map(|e| (e.frame, e.rule.to_string(), e.track, e.kind.clone()))
        .collect()
}

fn ev(frame: u64, rule: &str, track: Option<u64>, kind: RuleEventKind) -> Brief {
    (frame, rule.to_owned(), track, kind)
}

fn crossed(frame: u64, rule: &str, track: u64, direction: Direction) -> Brief {
    ev(
        frame,
        rule,
        Some(track),
        RuleEventKind::LineCrossed { direction },
    )
}

fn entered(frame: u64, rule: &str, track: u64) -> Brief {
    ev(frame, rule, Some(track), RuleEventKind::ZoneEntered)
}

fn exited(frame: u64, rule: &str, track: u64, dwell: Duration) -> Brief {
    ev(
        frame,
        rule,
        Some(track),
        RuleEventKind::ZoneExited { dwell },
    )
}

fn dwelled(frame: u64, rule: &str, track: u64, dwell: Duration) -> Brief {
    ev(frame, rule, Some(track), RuleEventKind::Dwell { dwell })
}

fn occupancy(frame: u64, rule: &str, count: u32) -> Brief {
    ev(frame, rule, None, RuleEventKind::Occupancy { count })
}

/// Feed one observed track per frame (frames `first..`, t = frame × 100 ms); collect events.
fn walk(rules: &mut Rules, first: u64, id: u64, points: &[(f32, f32)]) -> Vec<RuleEvent> {
    let mut events = Vec::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        let frame = first + i as u64;
        events.extend(rules.update(frame, t_of(frame), &seen(vec![person(id, x, y)])));
    }
    events
}

/// `n` points from `from` to `to` inclusive, evenly spaced.
fn path(from: (f32, f32), to: (f32, f32), n: usize) -> Vec<(f32, f32)> {
    (0..n)
        .map(|i| {
            let k = i as f32 / (n - 1) as f32;
            (from.0 + (to.0 - from.0) * k, from.1 + (to.1 - from.1) * k)
        })
        .collect()
}

fn horizontal() -> Rules {
    Rules::new(
        vec![line("door", [0.1, 0.5], [0.9, 0.5])],
        Vec::new(),
        cfg(2),
    )
    .unwrap()
}

// ----- lines

#[test]
fn walking_down_across_a_horizontal_line_is_one_a_to_b_and_back_is_one_b_to_a() {
    let mut rules = horizontal();
    // y = 0.30, 0.35, …, 0.70 at frames 0..=8: y = 0.50 (frame 4) is in the dead band,
    // y = 0.55 (frame 5) commits below the line: s = 0.8 × (0.55 − 0.5) > 0 → a_to_b.
    let down = path((0.5, 0.3), (0.5, 0.7), 9);
    let events = walk(&mut rules, 0, 1, &down);
    assert_eq!(brief(&events), vec![crossed(5, "door", 1, Direction::AToB)]);
    // Back up at frames 9..=17: y = 0.65 … 0.25; 0.45 (frame 13) commits above → b_to_a.
    let up = path((0.5, 0.65), (0.5, 0.25), 9);
    let events = walk(&mut rules, 9, 1, &up);
    assert_eq!(
        brief(&events),
        vec![crossed(13, "door", 1, Direction::BToA)]
    );
}

#[test]
fn jitter_on_the_line_then_going_on_counts_once() {
    let mut rules = horizontal();
    let mut points = vec![(0.5, 0.4); 3];
    for i in 0..20 {
        let dy = if i % 2 == 0 { 0.005 } else { -0.005 };
        points.push((0.5, 0.5 + dy));
    }
    points.extend([(0.5, 0.6); 3]);
    let events = walk(&mut rules, 0, 1, &points);
    assert_eq!(
        brief(&events),
        vec![crossed(23, "door", 1, Direction::AToB)]
    );
}

#[test]
fn jitter_on_the_line_then_returning_counts_nothing() {
    let mut rules = horizontal();
    let mut points = vec![(0.5, 0.4); 3];
    for i in 0..20 {
        let dy = if i % 2 == 0 { 0.005 } else { -0.005 };
        points.push((0.5, 0.5 + dy));
    }
    points.extend([(0.5, 0.4); 3]);
    let events = walk(&mut rules, 0, 1, &points);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn hovering_in_the_dead_band_after_a_crossing_does_not_count_again() {
    let mut rules = horizontal();
    // Crosses (frame 1), then hovers inside the band on both sides of the line, then
    // stays below: only the first commit below counts.
    let points = [
        (0.5, 0.4),
        (0.5, 0.52),
        (0.5, 0.495),
        (0.5, 0.505),
        (0.5, 0.492),
        (0.5, 0.52),
        (0.5, 0.6),
    ];
    let events = walk(&mut rules, 0, 1, &points);
    assert_eq!(brief(&events), vec![crossed(1, "door", 1, Direction::AToB)]);
}

#[test]
fn crossing_the_extension_of_the_line_outside_the_segment_counts_nothing() {
    let mut rules = Rules::new(
        vec![line("door", [0.2, 0.5], [0.6, 0.5])],
        Vec::new(),
        cfg(2),
    )
    .unwrap();
    // x = 0.8 is right of b = (0.6, 0.5): the infinite line is crossed, the segment is not.
    let events = walk(&mut rules, 0, 1, &path((0.8, 0.3), (0.8, 0.7), 9));
    assert!(events.is_empty(), "{events:?}");
    // The track is now committed below; walking up through the segment is a real crossing.
    // y = 0.70, 0.65, …: 0.45 (frame 14) commits above at x = 0.4, inside the segment.
    let events = walk(&mut rules, 9, 1, &path((0.4, 0.7), (0.4, 0.3), 9));
    assert_eq!(
        brief(&events),
        vec![crossed(14, "door", 1, Direction::BToA)]
    );
}

#[test]
fn diagonal_move_is_judged_where_it_meets_the_line() {
    let mut rules = Rules::new(
        vec![line("door", [0.2, 0.5], [0.6, 0.5])],
        Vec::new(),
        cfg(2),
    )
    .unwrap();
    // From (0.9, 0.4) to (0.1, 0.6): meets y = 0.5 at x = 0.5, inside the segment.
    let events = walk(&mut rules, 0, 1, &[(0.9, 0.4), (0.1, 0.6)]);
    assert_eq!(brief(&events), vec![crossed(1, "door", 1, Direction::AToB)]);
    // From (0.5, 0.6) to (1.0, 0.4): both ends overlap the segment's x range, but the move
    // meets y = 0.5 at x = 0.75 > 0.6, outside the segment → no crossing.
    let events = walk(&mut rules, 2, 1, &[(0.5, 0.6), (1.0, 0.4)]);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn vertical_line_directions_follow_the_cross_product() {
    // a = (0.5, 0.1), b = (0.5, 0.9): s(p) = (0)(py − 0.1) − (0.8)(px − 0.5) = 0.8 (0.5 − px).
    // Left of the line (px < 0.5): s > 0; right: s < 0.
    // Left → right: s > 0 → s < 0 = b_to_a. Right → left: s < 0 → s > 0 = a_to_b.
    let lines = vec![line("aisle", [0.5, 0.1], [0.5, 0.9])];
    let mut rules = Rules::new(lines, Vec::new(), cfg(2)).unwrap();
    let events = walk(&mut rules, 0, 1, &path((0.3, 0.5), (0.7, 0.5), 5));
    assert_eq!(
        brief(&events),
        vec![crossed(3, "aisle", 1, Direction::BToA)]
    );
    let events = walk(&mut rules, 5, 1, &path((0.7, 0.5), (0.3, 0.5), 5));
    assert_eq!(
        brief(&events),
        vec![crossed(8, "aisle", 1, Direction::AToB)]
    );
}

#[test]
fn first_observation_only_sets_the_side() {
    let mut rules = horizontal();
    // First seen below, stays below: nothing.
    assert!(walk(&mut rules, 0, 1, &[(0.5, 0.7), (0.5, 0.6)]).is_empty());
    // First seen on the line (dead band), then below: the first commit sets the side only.
    assert!(walk(&mut rules, 0, 2, &[(0.5, 0.5), (0.5, 0.6), (0.5, 0.7)]).is_empty());
}

#[test]
fn a_single_big_step_across_counts() {
    let mut rules = horizontal();
    let events = walk(&mut rules, 0, 1, &[(0.5, 0.2), (0.5, 0.8)]);
    assert_eq!(brief(&events), vec![crossed(1, "door", 1, Direction::AToB)]);
}

#[test]
fn a_crossing_made_while_unobserved_counts_when_the_track_is_seen_again() {
    let mut rules = horizontal();
    let mut events = walk(&mut rules, 0, 1, &[(0.5, 0.3), (0.5, 0.4)]);
    for frame in 2..10 {
        events.extend(rules.update(frame, t_of(frame), &TrackerOutput::default()));
    }
    events.extend(walk(&mut rules, 10, 1, &[(0.5, 0.7)]));
    assert_eq!(
        brief(&events),
        vec![crossed(10, "door", 1, Direction::AToB)]
    );
}

#[test]
fn line_labels_filter_tracks() {
    let mut l = line("door", [0.1, 0.5], [0.9, 0.5]);
    l.labels = vec!["person".to_owned()];
    let mut rules = Rules::new(vec![l], Vec::new(), cfg(2)).unwrap();
    let mut events = Vec::new();
    for (frame, y) in [(0, 0.3), (1, 0.7)] {
        let out = seen(vec![track(1, "car", 0.5, y), track(2, "person", 0.4, y)]);
        events.extend(rules.update(frame, t_of(frame), &out));
    }
    assert_eq!(brief(&events), vec![crossed(1, "door", 2, Direction::AToB)]);
}

#[test]
fn events_are_ordered_by_rule_then_track_id() {
    let lines = vec![
        line("second", [0.1, 0.5], [0.9, 0.5]),
        line("first", [0.1, 0.45], [0.9, 0.45]),
    ];
    let mut rules = Rules::new(lines, Vec::new(), cfg(2)).unwrap();
    rules.update(
        0,
        t_of(0),
        &seen(vec![person(7, 0.5, 0.3), person(3, 0.4, 0.3)]),
    );
    let events = rules.update(
        1,
        t_of(1),
        &seen(vec![person(7, 0.5, 0.7), person(3, 0.4, 0.7)]),
    );
    assert_eq!(
        brief(&events),
        vec![
            crossed(1, "second", 3, Direction::AToB),
            crossed(1, "second", 7, Direction::AToB),
            crossed(1, "first", 3, Direction::AToB),
            crossed(1, "first", 7, Direction::AToB),
        ]
    );
}

#[test]
fn ended_track_loses_its_line_state() {
    let mut rules = horizontal();
    walk(&mut rules, 0, 1, &[(0.5, 0.3)]);
    assert_eq!(rules.tracked_states(), 1);
    let out = TrackerOutput {
        observed: Vec::new(),
        ended: vec![person(1, 0.5, 0.3)],
    };
    assert!(rules.update(1, t_of(1), &out).is_empty());
    assert_eq!(rules.tracked_states(), 0);
    // Same id again (a new run of the tracker): first observation, no event.
    assert!(walk(&mut rules, 2, 1, &[(0.5, 0.7)]).is_empty());
}

#[test]
fn nan_positions_are_skipped() {
    let mut rules = Rules::new(
        vec![line("door", [0.1, 0.5], [0.9, 0.5])],
        vec![square_zone("shelf", None)],
        cfg(1),
    )
    .unwrap();
    // x = 0.7: on the line's extent, outside the zone.
    let mut nan = person(1, 0.7, 0.7);
    nan.bbox[3] = f32::NAN;
    let mut inf = person(1, 0.7, 0.7);
    inf.bbox[0] = f32::INFINITY;
    let mut events = walk(&mut rules, 0, 1, &[(0.7, 0.3)]);
    events.extend(rules.update(1, t_of(1), &seen(vec![nan])));
    events.extend(rules.update(2, t_of(2), &seen(vec![inf])));
    events.extend(walk(&mut rules, 3, 1, &[(0.7, 0.7)]));
    assert_eq!(brief(&events), vec![crossed(3, "door", 1, Direction::AToB)]);
}

// ----- zones

#[test]
fn zone_enter_dwell_exit_with_exact_durations() {
    let zones = vec![square_zone("shelf", Some(ms(1000)))];
    let mut rules = Rules::new(Vec::new(), zones, cfg(2)).unwrap();
    let mut points = vec![(0.1, 0.4); 2]; // frames 0, 1: outside
    points.extend(vec![(0.4, 0.4); 15]); // frames 2..=16: inside
    points.extend(vec![(0.8, 0.4); 4]); // frames 17..=20: outside
    let events = walk(&mut rules, 0, 1, &points);
    // Entry debounced at frame 3, entry time = frame 2 (200 ms).
    // Dwell: t − 200 ms ≥ 1000 ms first at frame 12.
    // Exit debounced at frame 18, exit time = frame 17 (1700 ms): dwell 1500 ms.
    assert_eq!(
        brief(&events),
        vec![
            entered(3, "shelf", 1),
            occupancy(3, "shelf", 1),
            dwelled(12, "shelf", 1, ms(1000)),
            exited(18, "shelf", 1, ms(1500)),
            occupancy(18, "shelf", 0),
        ]
    );
    assert_eq!(rules.occupancy("shelf"), Some(0));
    assert_eq!(rules.occupancy("nope"), None);
}

#[test]
fn dwell_fires_once_per_visit() {
    let zones = vec![square_zone("shelf", Some(ms(300)))];
    let mut rules = Rules::new(Vec::new(), zones, cfg(1)).unwrap();
    let mut points = vec![(0.4, 0.4); 5]; // 0..=4 inside
    points.push((0.8, 0.4)); // 5 outside
    points.extend(vec![(0.4, 0.4); 5]); // 6..=10 inside
    let events = walk(&mut rules, 0, 1, &points);
    assert_eq!(
        brief(&events),
        vec![
            entered(0, "shelf", 1),
            occupancy(0, "shelf", 1),
            dwelled(3, "shelf", 1, ms(300)),
            exited(5, "shelf", 1, ms(500)),
            occupancy(5, "shelf", 0),
            entered(6, "shelf", 1),
            occupancy(6, "shelf", 1),
            dwelled(9, "shelf", 1, ms(300)),
        ]
    );
}

#[test]
fn track_ending_inside_exits_in_that_update_and_dwell_counts_while_unobserved() {
    let zones = vec![square_zone("shelf", Some(ms(500)))];
    let mut rules = Rules::new(Vec::new(), zones, cfg(1)).unwrap();
    let mut events = walk(&mut rules, 0, 1, &[(0.4, 0.4); 3]); // 0..=2 inside
    for frame in 3..10 {
        events.extend(rules.update(frame, t_of(frame), &TrackerOutput::default()));
    }
    let mut last = person(1, 0.4, 0.4);
    last.score = 0.42;
    last.state = TrackState::Lost;
    let out = TrackerOutput {
        observed: Vec::new(),
        ended: vec![last.clone()],
    };
    let tail = rules.update(10, t_of(10), &out);
    events.extend(tail.clone());
    assert_eq!(
        brief(&events),
        vec![
            entered(0, "shelf", 1),
            occupancy(0, "shelf", 1),
            dwelled(5, "shelf", 1, ms(500)),
            exited(10, "shelf", 1, ms(1000)),
            occupancy(10, "shelf", 0),
        ]
    );
    // The exit carries the ended track's values.
    let exit = &tail[0];
    assert_eq!(exit.label.as_deref(), Some("person"));
    assert_eq!(exit.score, Some(0.42));
    assert_eq!(exit.bbox, Some(last.bbox));
    assert_eq!(rules.tracked_states(), 0);
    assert!(rules.finish(11, t_of(11)).is_empty());
}

#[test]
fn track_ending_while_pending_outside_exits_at_the_start_of_that_run() {
    let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(3)).unwrap();
    let mut points = vec![(0.4, 0.4); 5]; // 0..=4 inside, entered at 2 (time 0)
    points.push((0.8, 0.4)); // 5: outside, not yet debounced
    let mut events = walk(&mut rules, 0, 1, &points);
    let out = TrackerOutput {
        observed: Vec::new(),
        ended: vec![person(1, 0.8, 0.4)],
    };
    events.extend(rules.update(9, t_of(9), &out));
    assert_eq!(
        brief(&events),
        vec![
            entered(2, "shelf", 1),
            occupancy(2, "shelf", 1),
            exited(9, "shelf", 1, ms(500)),
            occupancy(9, "shelf", 0),
        ]
    );
}

#[test]
fn ended_track_that_never_entered_emits_nothing() {
    let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(3)).unwrap();
    let mut events = walk(&mut rules, 0, 1, &[(0.4, 0.4); 2]); // not yet debounced
    let out = TrackerOutput {
        observed: Vec::new(),
        ended: vec![person(1, 0.4, 0.4)],
    };
    events.extend(rules.update(2, t_of(2), &out));
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(rules.tracked_states(), 0);
}

#[test]
fn track_both_observed_and_ended_is_treated_as_ended() {
    let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(1)).unwrap();
    let mut events = walk(&mut rules, 0, 1, &[(0.4, 0.4)]);
    let out = TrackerOutput {
        observed: vec![person(1, 0.4, 0.4), person(2, 0.4, 0.4)],
        ended: vec![person(1, 0.4, 0.4), person(2, 0.4, 0.4)],
    };
    events.extend(rules.update(1, t_of(1), &out));
    assert_eq!(
        brief(&events),
        vec![
            entered(0, "shelf", 1),
            occupancy(0, "shelf", 1),
            exited(1, "shelf", 1, ms(100)),
            occupancy(1, "shelf", 0),
        ]
    );
}

#[test]
fn finish_exits_every_track_inside_and_reports_zero() {
    let lines = vec![line("door", [0.1, 0.5], [0.9, 0.5])];
    let zones = vec![
        square_zone("shelf", None),
        ZoneRule {
            name: "empty".to_owned(),
            polygon: vec![[0.7, 0.7], [0.9, 0.7], [0.8, 0.9]],
            dwell: None,
            labels: Vec::new(),
        },
    ];
    let mut rules = Rules::new(lines, zones, cfg(2)).unwrap();
    let mut events = Vec::new();
    // Tracks 2 and 5 inside from frame 0 (entered at frame 1); track 9 inside only from
    // frame 1 (pending, never entered); track 4 outside.
    let out0 = seen(vec![
        person(5, 0.4, 0.4),
        person(2, 0.3, 0.3),
        person(4, 0.8, 0.3),
    ]);
    events.extend(rules.update(0, t_of(0), &out0));
    let out1 = seen(vec![
        person(5, 0.4, 0.4),
        person(2, 0.3, 0.3),
        person(9, 0.45, 0.45),
        person(4, 0.8, 0.3),
    ]);
    events.extend(rules.update(1, t_of(1), &out1));
    events.extend(rules.finish(30, t_of(30)));
    assert_eq!(
        brief(&events),
        vec![
            entered(1, "shelf", 2),
            entered(1, "shelf", 5),
            occupancy(1, "shelf", 2),
            exited(30, "shelf", 2, ms(3000)),
            exited(30, "shelf", 5, ms(3000)),
            occupancy(30, "shelf", 0),
        ]
    );
    assert_eq!(rules.tracked_states(), 0);
    assert!(rules.finish(31, t_of(31)).is_empty());
    // Line state was dropped too: track 4 (last committed above) seen below is a first
    // observation, not a crossing.
    assert!(
        rules
            .update(32, t_of(32), &seen(vec![person(4, 0.3, 0.8)]))
            .is_empty()
    );
}

#[test]
fn flicker_at_the_border_does_not_spam_enter_or_exit() {
    let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(2)).unwrap();
    let inside = (0.59, 0.4);
    let outside = (0.61, 0.4);
    // Outside, flickering in for one frame at a time: never entered.
    let mut points = vec![outside; 2];
    for _ in 0..6 {
        points.push(inside);
        points.push(outside);
    }
    let events = walk(&mut rules, 0, 1, &points);
    assert!(events.is_empty(), "{events:?}");
    // Settles inside (frames 14, 15 → entered at 15), then flickers out for one frame at a
    // time: never exited.
    let mut points = vec![inside; 2];
    for _ in 0..6 {
        points.push(outside);
        points.push(inside);
    }
    let events = walk(&mut rules, 14, 1, &points);
    assert_eq!(
        brief(&events),
        vec![entered(15, "shelf", 1), occupancy(15, "shelf", 1)]
    );
    assert_eq!(rules.occupancy("shelf"), Some(1));
}

#[test]
fn zone_labels_filter_tracks() {
    let mut zone = square_zone("shelf", None);
    zone.labels = vec!["person".to_owned()];
    let mut rules = Rules::new(Vec::new(), vec![zone], cfg(1)).unwrap();
    let out = seen(vec![
        track(1, "car", 0.4, 0.4),
        track(2, "person", 0.3, 0.4),
    ]);
    let events = rules.update(0, t_of(0), &out);
    assert_eq!(
        brief(&events),
        vec![entered(0, "shelf", 2), occupancy(0, "shelf", 1)]
    );
}

#[test]
fn two_tracks_give_occupancy_one_two_one_zero() {
    let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(1)).unwrap();
    let inside = (0.4, 0.4);
    let outside = (0.8, 0.4);
    let frames = [
        (outside, outside), // 0
        (inside, outside),  // 1: 1 enters
        (inside, inside),   // 2: 2 enters
        (outside, inside),  // 3: 1 exits
        (outside, outside), // 4: 2 exits
    ];
    let mut events = Vec::new();
    for (frame, (p1, p2)) in frames.into_iter().enumerate() {
        let frame = frame as u64;
        let out = seen(vec![person(1, p1.0, p1.1), person(2, p2.0, p2.1)]);
        events.extend(rules.update(frame, t_of(frame), &out));
    }
    assert_eq!(
        brief(&events),
        vec![
            entered(1, "shelf", 1),
            occupancy(1, "shelf", 1),
            entered(2, "shelf", 2),
            occupancy(2, "shelf", 2),
            exited(3, "shelf", 1, ms(200)),
            occupancy(3, "shelf", 1),
            exited(4, "shelf", 2, ms(200)),
            occupancy(4, "shelf", 0),
        ]
    );
}

#[test]
fn exits_come_before_enters_and_an_unchanged_count_is_not_reported() {
    let mut rules = Rules::new(Vec::new(), vec![square_zone("shelf", None)], cfg(1)).unwrap();
    let mut events = rules.update(
        0,
        t_of(0),
        &seen(vec![person(1, 0.8, 0.4), person(2, 0.4, 0.4)]),
    );
    events.extend(rules.update(
        1,
        t_of(1),
        &seen(vec![person(1, 0.4, 0.4), person(2, 0.8, 0.4)]),
    ));
    assert_eq!(
        brief(&events),
        vec![
            entered(0, "shelf", 2),
            occupancy(0, "shelf", 1),
            exited(1, "shelf", 2, ms(100)),
            entered(1, "shelf", 1),
        ]
    );
}

#[test]
fn lines_come_before_zones_in_one_update() {
    let lines = vec![line("door", [0.1, 0.5], [0.9, 0.5])];
    let zones = vec![square_zone("shelf", None)];
    let mut rules = Rules::new(lines, zones, cfg(1)).unwrap();
    // Feet go from (0.4, 0.3) (inside the zone, above the line) to (0.4, 0.7) (outside the
    // zone, below the line): in frame 1 the crossing comes first, then the zone's events.
    let events = walk(&mut rules, 0, 1, &[(0.4, 0.3), (0.4, 0.7)]);
    assert_eq!(
        brief(&events),
        vec![
            entered(0, "shelf", 1),
            occupancy(0, "shelf", 1),
            crossed(1, "door", 1, Direction::AToB),
            exited(1, "shelf", 1, ms(100)),
            occupancy(1, "shelf", 0),
        ]
    );
}

#[test]
fn concave_zone_excludes_its_notch() {
    // A U shape: the notch between x = 0.4 and 0.6, above y = 0.6, is outside.
    let zone = ZoneRule {
        name: "u".to_owned(),
        polygon: vec![
            [0.2, 0.2],
            [0.4, 0.2],
            [0.4, 0.6],
            [0.6, 0.6],
            [0.6, 0.2],
            [0.8, 0.2],
            [0.8, 0.8],
            [0.2, 0.8],
        ],
        dwell: None,
        labels: Vec::new(),
    };
    let mut rules = Rules::new(Vec::new(), vec![zone], cfg(1)).unwrap();
    let events = rules.update(
        0,
        t_of(0),
        &seen(vec![
            person(1, 0.5, 0.4), // notch: outside
            person(2, 0.3, 0.4), // left arm
            person(3, 0.5, 0.7), // bottom
        ]),
    );
    assert_eq!(
        brief(&events),
        vec![entered(0, "u", 2), entered(0, "u", 3), occupancy(0, "u", 2)]
    );
}

#[test]
fn event_fields_come_from_the_track_and_occupancy_has_none() {
    let mut rules = Rules::new(
        vec![line("door", [0.1, 0.5], [0.9, 0.5])],
        vec![square_zone("shelf", None)],
        cfg(1),
    )
    .unwrap();
    walk(&mut rules, 0, 1, &[(0.4, 0.45)]);
    let mut t = person(1, 0.4, 0.55);
    t.score = 0.66;
    let events = rules.update(1, t_of(1), &seen(vec![t.clone()]));
    let crossing = RuleEvent {
        kind: RuleEventKind::LineCrossed {
            direction: Direction::AToB,
        },
        rule: Arc::from("door"),
        frame: 1,
        track: Some(1),
        label: Some(Arc::from("person")),
        score: Some(0.66),
        bbox: Some(t.bbox),
    };
    assert_eq!(events, vec![crossing]);
    let events = rules.update(2, t_of(2), &seen(vec![person(1, 0.8, 0.8)]));
    let occ = events.last().unwrap();
    assert_eq!(occ.kind, RuleEventKind::Occupancy { count: 0 });
    assert_eq!(
        (occ.track, occ.label.clone(), occ.score, occ.bbox),
        (None, None, None, None)
    );
}

#[test]
fn time_going_backwards_does_not_panic() {
    let zones = vec![square_zone("shelf", Some(ms(100)))];
    let mut rules = Rules::new(Vec::new(), zones, cfg(1)).unwrap();
    rules.update(10, ms(1000), &seen(vec![person(1, 0.4, 0.4)]));
    let events = rules.update(11, ms(500), &seen(vec![person(1, 0.8, 0.4)]));
    assert_eq!(brief(&events)[0], exited(11, "shelf", 1, Duration::ZERO));
    assert!(rules.finish(12, ms(0)).is_empty());
}

#[test]
fn track_states_are_capped_and_evicted_zone_tracks_exit() {
    let mut rules = Rules::new(
        vec![line("door", [0.1, 0.5], [0.9, 0.5])],
        vec![square_zone("shelf", None)],
        cfg(1),
    )
    .unwrap();
    rules.cap = 2;
    let mut events = Vec::new();
    events.extend(rules.update(0, t_of(0), &seen(vec![person(1, 0.3, 0.3)])));
    events.extend(rules.update(1, t_of(1), &seen(vec![person(2, 0.4, 0.3)])));
    // Track 3 arrives at full rules: track 1 (seen least recently) is dropped and exits.
    events.extend(rules.update(2, t_of(2), &seen(vec![person(3, 0.5, 0.3)])));
    assert_eq!(rules.tracked_states(), 4);
    // Two new tracks at once while the rules are full of tracks seen earlier: 4 replaces 2,
    // then 5 finds only tracks observed in this frame and is ignored.
    events.extend(rules.update(
        3,
        t_of(3),
        &seen(vec![
            person(4, 0.3, 0.4),
            person(5, 0.4, 0.4),
            person(3, 0.5, 0.3),
        ]),
    ));
    assert_eq!(rules.tracked_states(), 4);
    events.extend(rules.finish(4, t_of(4)));
    assert_eq!(
        brief(&events),
        vec![
            entered(0, "shelf", 1),
            occupancy(0, "shelf", 1),
            entered(1, "shelf", 2),
            occupancy(1, "shelf", 2),
            exited(2, "shelf", 1, ms(200)),
            entered(2, "shelf", 3),
            exited(3, "shelf", 2, ms(200)),
            entered(3, "shelf", 4),
            exited(4, "shelf", 3, ms(200)),
            exited(4, "shelf", 4, ms(100)),
            occupancy(4, "shelf", 0),
        ]
    );
}

// ----- validation

fn err_of(result: Result<Rules>) -> (String, String) {
    match result {
        Err(Error::InvalidOption { name, message }) => (name, message),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("accepted"),
    }
}

fn bad_line(l: LineRule) -> (String, String) {
    err_of(Rules::new(vec![l], Vec::new(), RulesConfig::default()))
}

fn bad_zone(z: ZoneRule) -> (String, String) {
    err_of(Rules::new(Vec::new(), vec![z], RulesConfig::default()))
}

#[test]
fn valid_rules_are_accepted() {
    let mut zone = square_zone("Shelf_2.left-side", Some(ms(1)));
    zone.labels = vec!["person".to_owned()];
    let name64 = "x".repeat(64);
    Rules::new(
        vec![
            line("entrance-1", [0.0, 0.0], [1.0, 1.0]),
            line(&name64, [0.0, 1.0], [1.0, 0.0]),
        ],
        vec![zone],
        RulesConfig {
            line_hysteresis: 0.0,
            zone_debounce_frames: 100,
            line_debounce_frames: 100,
        },
    )
    .unwrap();
    Rules::new(Vec::new(), Vec::new(), RulesConfig::default()).unwrap();
}

#[test]
fn bad_names_are_rejected() {
    for name in [
        "door/1",
        "door+",
        "door#",
        "my door",
        "dör",
        &"x".repeat(65),
    ] {
        let (path, message) = bad_line(line(name, [0.1, 0.5], [0.9, 0.5]));
        assert_eq!(path, format!("rules.line.{name}.name"));
        assert!(message.contains(name), "{message}");
        let (path, message) = bad_zone(square_zone(name, None));
        assert_eq!(path, format!("rules.zone.{name}.name"));
        assert!(message.contains(name), "{message}");
    }
    let (path, message) = bad_line(line("", [0.1, 0.5], [0.9, 0.5]));
    assert_eq!(path, "rules.line[0].name");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn duplicate_names_are_rejected_across_lines_and_zones() {
    let (path, message) = err_of(Rules::new(
        vec![line("door", [0.1, 0.5], [0.9, 0.5])],
        vec![square_zone("door", None)],
        RulesConfig::default(),
    ));
    assert_eq!(path, "rules.zone.door.name");
    assert!(
        message.contains("`door`") && message.contains("line"),
        "{message}"
    );
    let (path, message) = err_of(Rules::new(
        vec![
            line("door", [0.1, 0.5], [0.9, 0.5]),
            line("door", [0.1, 0.6], [0.9, 0.6]),
        ],
        Vec::new(),
        RulesConfig::default(),
    ));
    assert_eq!(path, "rules.line.door.name");
    assert!(message.contains("door"), "{message}");
}

#[test]
fn bad_line_geometry_is_rejected() {
    let (path, message) = bad_line(line("door", [1.5, 0.5], [0.9, 0.5]));
    assert_eq!(path, "rules.line.door.a");
    assert!(
        message.contains("door") && message.contains("1.5"),
        "{message}"
    );
    let (path, message) = bad_line(line("door", [0.1, 0.5], [0.9, -0.1]));
    assert_eq!(path, "rules.line.door.b");
    assert!(message.contains("door"), "{message}");
    let (path, _) = bad_line(line("door", [f32::NAN, 0.5], [0.9, 0.5]));
    assert_eq!(path, "rules.line.door.a");
    let (path, message) = bad_line(line("door", [0.3, 0.3], [0.3, 0.3]));
    assert_eq!(path, "rules.line.door.b");
    assert!(
        message.contains("door") && message.contains("same"),
        "{message}"
    );
    let mut l = line("door", [0.1, 0.5], [0.9, 0.5]);
    l.labels = vec![String::new()];
    let (path, message) = bad_line(l);
    assert_eq!(path, "rules.line.door.labels");
    assert!(message.contains("door"), "{message}");
}

#[test]
fn bad_zones_are_rejected() {
    let mut z = square_zone("shelf", None);
    z.polygon.truncate(2);
    let (path, message) = bad_zone(z);
    assert_eq!(path, "rules.zone.shelf.polygon");
    assert!(
        message.contains("shelf") && message.contains("3"),
        "{message}"
    );

    let mut z = square_zone("shelf", None);
    z.polygon = vec![[0.1, 0.2], [0.2, 0.4], [0.3, 0.6]];
    let (path, message) = bad_zone(z);
    assert_eq!(path, "rules.zone.shelf.polygon");
    assert!(
        message.contains("shelf") && message.contains("area"),
        "{message}"
    );

    let mut z = square_zone("shelf", None);
    z.polygon = vec![[0.1, 0.2], [0.1, 0.2], [0.1, 0.2], [0.1, 0.2]];
    let (path, _) = bad_zone(z);
    assert_eq!(path, "rules.zone.shelf.polygon");

    let mut z = square_zone("shelf", None);
    z.polygon[2] = [0.6, 1.01];
    let (path, message) = bad_zone(z);
    assert_eq!(path, "rules.zone.shelf.polygon[2]");
    assert!(message.contains("shelf"), "{message}");

    let mut z = square_zone("shelf", None);
    z.polygon[0] = [f32::INFINITY, 0.2];
    let (path, _) = bad_zone(z);
    assert_eq!(path, "rules.zone.shelf.polygon[0]");

    let (path, message) = bad_zone(square_zone("shelf", Some(Duration::ZERO)));
    assert_eq!(path, "rules.zone.shelf.dwell");
    assert!(message.contains("shelf"), "{message}");
}

#[test]
fn bad_config_is_rejected() {
    for h in [0.5, -0.01, f32::NAN, f32::INFINITY] {
        let (path, _) = err_of(Rules::new(
            Vec::new(),
            Vec::new(),
            RulesConfig {
                line_hysteresis: h,
                ..RulesConfig::default()
            },
        ));
        assert_eq!(path, "rules.line_hysteresis");
    }
    for d in [0, 101] {
        let (path, _) = err_of(Rules::new(
            Vec::new(),
            Vec::new(),
            RulesConfig {
                zone_debounce_frames: d,
                ..RulesConfig::default()
            },
        ));
        assert_eq!(path, "rules.zone_debounce_frames");
        let (path, _) = err_of(Rules::new(
            Vec::new(),
            Vec::new(),
            RulesConfig {
                line_debounce_frames: d,
                ..RulesConfig::default()
            },
        ));
        assert_eq!(path, "rules.line_debounce_frames");
    }
}

/// With the default line debounce, a box bottom that jumps across the line for one frame (an
/// upper-body detection, a person half hidden) counts nothing; a real crossing counts once, at
/// the second frame on the new side, judged from the first one.
#[test]
fn line_debounce_ignores_a_one_frame_jump_and_counts_a_crossing_late() {
    let mut rules = Rules::new(
        vec![line("door", [0.1, 0.5], [0.9, 0.5])],
        Vec::new(),
        RulesConfig::default(),
    )
    .unwrap();
    assert_eq!(RulesConfig::default().line_debounce_frames, 2);
    // above, a one-frame jump below, above again: nothing
    let jitter = [
        (0.5, 0.4),
        (0.5, 0.45),
        (0.5, 0.56),
        (0.5, 0.45),
        (0.5, 0.44),
    ];
    assert!(brief(&walk(&mut rules, 0, 1, &jitter)).is_empty());
    // then a real crossing: below for two frames
    let events = walk(&mut rules, 5, 1, &[(0.5, 0.56), (0.5, 0.6), (0.5, 0.65)]);
    assert_eq!(brief(&events), vec![crossed(6, "door", 1, Direction::AToB)]);
    // with debounce 1 the jump would have counted twice
    let mut eager = Rules::new(
        vec![line("door", [0.1, 0.5], [0.9, 0.5])],
        Vec::new(),
        cfg(2),
    )
    .unwrap();
    assert_eq!(walk(&mut eager, 0, 1, &jitter).len(), 2);
}

/// The crossing is judged from the first position past the line: a track that crosses inside
/// the segment and then walks along beyond its end still counts; one that crosses the line's
/// extension does not, however it walks afterwards.
#[test]
fn a_debounced_crossing_is_judged_where_it_happened() {
    let rules = || {
        Rules::new(
            vec![line("door", [0.1, 0.5], [0.5, 0.5])],
            Vec::new(),
            RulesConfig::default(),
        )
        .unwrap()
    };
    let inside = [(0.45, 0.45), (0.45, 0.55), (0.7, 0.6)];
    assert_eq!(walk(&mut rules(), 0, 1, &inside).len(), 1);
    let outside = [(0.7, 0.45), (0.7, 0.55), (0.45, 0.6)];
    assert!(walk(&mut rules(), 0, 1, &outside).is_empty());
}
