use super::*;

const W: f32 = 0.04;
const H: f32 = 0.15;

fn det(cx: f32, cy: f32, score: f32) -> Detection {
    det_class(cx, cy, score, 0)
}

fn det_class(cx: f32, cy: f32, score: f32, class_id: u32) -> Detection {
    Detection {
        label: Arc::from("person"),
        class_id,
        score,
        bbox: [cx - W / 2.0, cy - H / 2.0, cx + W / 2.0, cy + H / 2.0],
    }
}

/// The mechanics below are written for three hits to confirm (the default is two).
fn tracker() -> Result<Tracker> {
    Tracker::new(TrackerConfig {
        confirm_hits: 3,
        ..TrackerConfig::default()
    })
}

fn ids(tracks: &[Track]) -> Vec<u64> {
    tracks.iter().map(|t| t.id).collect()
}

fn center_x(track: &Track) -> f32 {
    (track.bbox[0] + track.bbox[2]) / 2.0
}

#[test]
fn one_object_constant_speed_one_id() -> Result<()> {
    let mut tracker = tracker()?;
    for f in 0..20u64 {
        let d = det(0.1 + 0.01 * f as f32, 0.5, 0.9);
        let out = tracker.update(f, std::slice::from_ref(&d));
        assert!(out.ended.is_empty());
        if f < 2 {
            assert!(out.observed.is_empty(), "frame {f}: {out:?}");
        } else {
            assert_eq!(ids(&out.observed), vec![1], "frame {f}");
            let t = &out.observed[0];
            assert_eq!(t.bbox, d.bbox);
            assert_eq!(t.score, 0.9);
            assert_eq!(t.state, TrackState::Tracked);
            assert_eq!(t.hits, f as u32 + 1);
            assert_eq!(t.first_frame, 0);
            assert_eq!(t.last_frame, f);
        }
    }
    let ended = tracker.finish();
    assert_eq!(ids(&ended), vec![1]);
    Ok(())
}

#[test]
fn confirm_hits_one_reports_immediately() -> Result<()> {
    let mut tracker = Tracker::new(TrackerConfig {
        confirm_hits: 1,
        ..TrackerConfig::default()
    })?;
    let out = tracker.update(7, &[det(0.5, 0.5, 0.9)]);
    assert_eq!(ids(&out.observed), vec![1]);
    assert_eq!(out.observed[0].first_frame, 7);
    Ok(())
}

#[test]
fn flicker_is_never_reported_and_consumes_no_id() -> Result<()> {
    let mut tracker = tracker()?;
    for f in 0..2u64 {
        let out = tracker.update(f, &[det(0.3, 0.5, 0.95)]);
        assert!(out.observed.is_empty() && out.ended.is_empty());
    }
    for f in 2..40u64 {
        let out = tracker.update(f, &[]);
        assert!(out.observed.is_empty() && out.ended.is_empty());
    }
    assert!(tracker.is_empty());
    // A flicker again, interrupted by one missing frame: never confirmed.
    tracker.update(40, &[det(0.3, 0.5, 0.95)]);
    tracker.update(41, &[det(0.3, 0.5, 0.95)]);
    tracker.update(42, &[]);
    let out = tracker.update(43, &[det(0.3, 0.5, 0.95)]);
    assert!(out.observed.is_empty());
    // A real object gets id 1.
    let mut seen = Vec::new();
    for f in 50..60u64 {
        let out = tracker.update(f, &[det(0.7, 0.5, 0.9)]);
        seen.extend(ids(&out.observed));
    }
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|&id| id == 1), "{seen:?}");
    Ok(())
}

/// Two objects moving towards each other; returns id → x centres in frame order.
fn crossing(dy: f32) -> Result<Vec<(u64, Vec<f32>)>> {
    let mut tracker = tracker()?;
    let mut paths: Vec<(u64, Vec<f32>)> = Vec::new();
    for f in 0..40u64 {
        let a = det(0.2 + 0.01 * f as f32, 0.5, 0.9);
        let b = det(0.6 - 0.01 * f as f32, 0.5 + dy, 0.85);
        // Alternate the detection order so that order cannot carry the identities.
        let dets = if f % 2 == 0 { vec![a, b] } else { vec![b, a] };
        let out = tracker.update(f, &dets);
        assert!(out.ended.is_empty());
        if f >= 2 {
            assert_eq!(ids(&out.observed), vec![1, 2], "frame {f}");
        }
        for t in &out.observed {
            match paths.iter_mut().find(|(id, _)| *id == t.id) {
                Some((_, xs)) => xs.push(center_x(t)),
                None => paths.push((t.id, vec![center_x(t)])),
            }
        }
    }
    Ok(paths)
}

fn assert_monotonic(paths: &[(u64, Vec<f32>)]) {
    assert_eq!(paths.len(), 2);
    let mut directions = Vec::new();
    for (id, xs) in paths {
        let steps: Vec<f32> = xs.windows(2).map(|w| w[1] - w[0]).collect();
        let right = steps.iter().all(|&s| s > 0.0);
        let left = steps.iter().all(|&s| s < 0.0);
        assert!(right || left, "id {id} changed direction: {xs:?}");
        directions.push(right);
    }
    assert_ne!(directions[0], directions[1]);
}

#[test]
fn crossing_paths_do_not_swap_ids() -> Result<()> {
    // Vertically offset (the usual case: boxes overlap strongly while crossing).
    assert_monotonic(&crossing(0.03)?);
    // Exactly the same row: at the crossing the two boxes coincide, motion decides.
    assert_monotonic(&crossing(0.0)?);
    Ok(())
}

#[test]
fn short_occlusion_keeps_id() -> Result<()> {
    let mut tracker = tracker()?;
    let x = |f: u64| 0.1 + 0.01 * f as f32;
    for f in 0..10u64 {
        let out = tracker.update(f, &[det(x(f), 0.4, 0.9)]);
        assert!(out.ended.is_empty());
    }
    for f in 10..15u64 {
        let out = tracker.update(f, &[]);
        assert!(out.observed.is_empty() && out.ended.is_empty());
    }
    for f in 15..25u64 {
        let out = tracker.update(f, &[det(x(f), 0.4, 0.9)]);
        assert_eq!(ids(&out.observed), vec![1], "frame {f}");
        assert!(out.ended.is_empty());
    }
    Ok(())
}

#[test]
fn lost_exactly_max_lost_frames_is_recovered() -> Result<()> {
    let mut tracker = tracker()?;
    for f in 0..10u64 {
        tracker.update(f, &[det(0.5, 0.5, 0.9)]);
    }
    // Missing frames 10..=39: 30 frames = max_lost_frames.
    for f in 10..40u64 {
        let out = tracker.update(f, &[]);
        assert!(out.observed.is_empty() && out.ended.is_empty(), "frame {f}");
    }
    let out = tracker.update(40, &[det(0.5, 0.5, 0.9)]);
    assert_eq!(ids(&out.observed), vec![1]);
    assert!(out.ended.is_empty());
    Ok(())
}

#[test]
fn lost_too_long_ends_once_then_new_id() -> Result<()> {
    let mut tracker = tracker()?;
    for f in 0..10u64 {
        tracker.update(f, &[det(0.5, 0.5, 0.9)]);
    }
    let mut ended_at = Vec::new();
    for f in 10..70u64 {
        let out = tracker.update(f, &[]);
        assert!(out.observed.is_empty());
        for t in &out.ended {
            ended_at.push((f, t.id, t.state, t.last_frame));
        }
    }
    // Last hit at 9; missing 31 frames (10..=40) ends it in the update of frame 40.
    assert_eq!(ended_at, vec![(40, 1, TrackState::Lost, 9)]);
    assert!(tracker.is_empty());
    let mut seen = Vec::new();
    for f in 70..75u64 {
        seen.extend(ids(&tracker.update(f, &[det(0.5, 0.5, 0.9)]).observed));
    }
    assert_eq!(seen, vec![2, 2, 2]);
    assert!(tracker.finish().iter().all(|t| t.id == 2));
    Ok(())
}

#[test]
fn frame_gap_beyond_max_lost_ends_before_matching() -> Result<()> {
    let mut tracker = tracker()?;
    for f in 0..5u64 {
        tracker.update(f, &[det(0.5, 0.5, 0.9)]);
    }
    // Frames 5..=36 never looked at (32 missed frames > 30): ended, the detection is new.
    let out = tracker.update(37, &[det(0.5, 0.5, 0.9)]);
    assert_eq!(ids(&out.ended), vec![1]);
    assert!(out.observed.is_empty());
    Ok(())
}

#[test]
fn low_scores_keep_tracks_alive_but_never_start_them() -> Result<()> {
    let mut tracker = tracker()?;
    let x = |f: u64| 0.1 + 0.01 * f as f32;
    for f in 0..5u64 {
        tracker.update(f, &[det(x(f), 0.4, 0.9)]);
    }
    for f in 5..15u64 {
        // The low detection continues track 1; another low-only object appears elsewhere.
        let out = tracker.update(f, &[det(x(f), 0.4, 0.2), det(0.8, 0.8, 0.2)]);
        assert_eq!(ids(&out.observed), vec![1], "frame {f}");
        assert_eq!(out.observed[0].score, 0.2);
    }
    assert_eq!(tracker.live_tracks(), 1);
    // Once lost, a low detection does not revive the track (second pass needs Tracked).
    tracker.update(15, &[]);
    let out = tracker.update(16, &[det(x(16), 0.4, 0.2)]);
    assert!(out.observed.is_empty());
    // A high detection does.
    let out = tracker.update(17, &[det(x(17), 0.4, 0.7)]);
    assert_eq!(ids(&out.observed), vec![1]);
    // Between high and new_track thresholds: matches, but never starts a track.
    let mut fresh = Tracker::new(TrackerConfig::default())?;
    for f in 0..10u64 {
        assert!(fresh.update(f, &[det(0.5, 0.5, 0.55)]).observed.is_empty());
    }
    assert!(fresh.is_empty());
    Ok(())
}

#[test]
fn frame_gaps_still_associate() -> Result<()> {
    let mut tracker = tracker()?;
    // 0.015 per frame: jumps of 3 frames move the box 0.045, more than its width (0.04);
    // a one-frame prediction would lag 0.03 behind (IoU 0.14 < 0.2).
    let x = |f: u64| 0.1 + 0.015 * f as f32;
    for f in 0..10u64 {
        tracker.update(f, &[det(x(f), 0.5, 0.9)]);
    }
    for f in (12..55u64).step_by(3) {
        let out = tracker.update(f, &[det(x(f), 0.5, 0.9)]);
        assert_eq!(ids(&out.observed), vec![1], "frame {f}");
    }
    Ok(())
}

#[test]
fn strided_stream_confirms_tracks() -> Result<()> {
    let mut tracker = tracker()?;
    let mut confirmed_at = None;
    for (n, f) in (0..60u64).step_by(3).enumerate() {
        let out = tracker.update(f, &[det(0.2 + 0.004 * f as f32, 0.5, 0.9)]);
        if n >= 2 {
            assert_eq!(ids(&out.observed), vec![1], "frame {f}");
            confirmed_at.get_or_insert(f);
        } else {
            assert!(out.observed.is_empty());
        }
    }
    assert_eq!(confirmed_at, Some(6));
    Ok(())
}

#[test]
fn classes_are_not_mixed() -> Result<()> {
    let mut tracker = tracker()?;
    for f in 0..5u64 {
        tracker.update(f, &[det_class(0.5, 0.5, 0.9, 0)]);
    }
    let out = tracker.update(5, &[det_class(0.5, 0.5, 0.9, 1)]);
    assert!(out.observed.is_empty());
    Ok(())
}

#[test]
fn finish_returns_confirmed_tracks_once() -> Result<()> {
    let mut tracker = tracker()?;
    for f in 0..5u64 {
        let mut dets = vec![det(0.2, 0.5, 0.9), det(0.6, 0.5, 0.9)];
        if f >= 4 {
            dets.push(det(0.9, 0.2, 0.9)); // still tentative at the end
        }
        tracker.update(f, &dets);
    }
    // One of the two goes lost before the end: still returned.
    tracker.update(5, &[det(0.2, 0.5, 0.9), det(0.9, 0.2, 0.9)]);
    let ended = tracker.finish();
    assert_eq!(ids(&ended), vec![1, 2]);
    assert_eq!(ended[0].state, TrackState::Tracked);
    assert_eq!(ended[1].state, TrackState::Lost);
    assert!(tracker.is_empty());
    assert_eq!(tracker.live_tracks(), 0);
    assert!(tracker.finish().is_empty());
    // Ids are not reused after finish.
    let mut seen = Vec::new();
    for f in 10..13u64 {
        seen.extend(ids(&tracker.update(f, &[det(0.2, 0.5, 0.9)]).observed));
    }
    assert_eq!(seen, vec![3]);
    Ok(())
}

#[test]
fn non_finite_and_degenerate_detections_are_ignored() -> Result<()> {
    let mut tracker = tracker()?;
    let bad = |bbox: [f32; 4], score: f32| Detection {
        label: Arc::from("person"),
        class_id: 0,
        score,
        bbox,
    };
    let junk = [
        bad([0.5, 0.5, 0.6, 0.7], f32::NAN),
        bad([f32::NAN, 0.4, 0.52, 0.6], 0.9),
        bad([0.48, 0.4, f32::INFINITY, 0.6], 0.9),
        bad([0.52, 0.4, 0.48, 0.6], 0.9), // inverted
        bad([0.48, 0.4, 0.48, 0.6], 0.9), // empty
        bad([0.48, 0.4, 1e30, 0.6], 0.9), // absurd
        bad([0.48, 0.4, 0.52, 0.6], f32::INFINITY),
    ];
    for f in 0..20u64 {
        let mut dets = junk.to_vec();
        dets.insert(3, det(0.5, 0.5, 0.9));
        let out = tracker.update(f, &dets);
        if f >= 2 {
            assert_eq!(ids(&out.observed), vec![1], "frame {f}");
            assert_eq!(out.observed[0].bbox, det(0.5, 0.5, 0.9).bbox);
        }
        assert!(tracker.tracks.iter().all(|t| t.kf.is_finite()));
    }
    assert_eq!(tracker.live_tracks(), 1);
    let out = tracker.update(20, &junk);
    assert!(out.observed.is_empty());
    Ok(())
}

#[test]
fn lost_tracks_do_not_fly_away() -> Result<()> {
    let mut tracker = tracker()?;
    let v = 0.02;
    for f in 0..15u64 {
        tracker.update(f, &[det(0.1 + v * f as f32, 0.5, 0.9)]);
    }
    let last_cx = 0.1 + v * 14.0;
    for f in 15..45u64 {
        tracker.update(f, &[]);
        for t in &tracker.tracks {
            let [x0, y0, x1, y1] = t.kf.bbox();
            assert!(x1 > x0 && y1 > y0);
            let cx = (x0 + x1) / 2.0;
            assert!((0.0..=1.0).contains(&cx));
            // Coasting 5 frames plus a decaying tail: at most ~9 frames of motion.
            assert!(cx - last_cx <= 9.5 * v, "frame {f}: cx {cx}");
        }
    }
    Ok(())
}

#[test]
fn live_tracks_are_capped() -> Result<()> {
    let mut tracker = Tracker::new(TrackerConfig {
        confirm_hits: 1,
        // the shifted grid must not be taken for the same people
        recover_buffer: 0.0,
        ..TrackerConfig::default()
    })?;
    let grid = |offset: f32| -> Vec<Detection> {
        let mut dets = Vec::new();
        for i in 0..25 {
            for j in 0..40 {
                let x0 = offset + i as f32 * 0.04;
                let y0 = j as f32 * 0.025;
                dets.push(Detection {
                    label: Arc::from("person"),
                    class_id: 0,
                    score: 0.9,
                    bbox: [x0, y0, x0 + 0.01, y0 + 0.01],
                });
            }
        }
        dets
    };
    let first = tracker.update(0, &grid(0.0));
    assert_eq!(first.observed.len(), 1000);
    let second = tracker.update(1, &grid(0.02));
    assert_eq!(tracker.live_tracks(), MAX_TRACKS);
    // Every confirmed track is accounted for: alive or reported as ended.
    assert_eq!(second.ended.len() + tracker.live_tracks(), 2000);
    assert_eq!(second.observed.len(), 1000);
    Ok(())
}

#[test]
fn non_increasing_frames_do_not_panic() -> Result<()> {
    let mut tracker = tracker()?;
    for f in [5u64, 5, 3, 6, 0, 7] {
        tracker.update(f, &[det(0.5, 0.5, 0.9)]);
    }
    assert_eq!(tracker.live_tracks(), 1);
    Ok(())
}

#[test]
fn invalid_config_is_rejected_with_field_name() {
    let base = TrackerConfig::default;
    let cases = [
        (
            TrackerConfig {
                high_threshold: 1.5,
                ..base()
            },
            "tracker.high_threshold",
        ),
        (
            TrackerConfig {
                low_threshold: f32::NAN,
                ..base()
            },
            "tracker.low_threshold",
        ),
        (
            TrackerConfig {
                new_track_threshold: -0.1,
                ..base()
            },
            "tracker.new_track_threshold",
        ),
        (
            TrackerConfig {
                low_threshold: 0.6,
                high_threshold: 0.5,
                ..base()
            },
            "tracker.low_threshold",
        ),
        (
            TrackerConfig {
                match_iou: 0.0,
                ..base()
            },
            "tracker.match_iou",
        ),
        (
            TrackerConfig {
                recover_buffer: -0.5,
                ..base()
            },
            "tracker.recover_buffer",
        ),
        (
            TrackerConfig {
                recover_buffer: f32::NAN,
                ..base()
            },
            "tracker.recover_buffer",
        ),
        (
            TrackerConfig {
                match_iou: 1.01,
                ..base()
            },
            "tracker.match_iou",
        ),
        (
            TrackerConfig {
                confirm_hits: 0,
                ..base()
            },
            "tracker.confirm_hits",
        ),
        (
            TrackerConfig {
                max_lost_frames: 10_001,
                ..base()
            },
            "tracker.max_lost_frames",
        ),
        (
            TrackerConfig {
                appearance_gate: 1.5,
                ..base()
            },
            "tracker.appearance_gate",
        ),
        (
            TrackerConfig {
                appearance_weight: f32::INFINITY,
                ..base()
            },
            "tracker.appearance_weight",
        ),
        (
            TrackerConfig {
                reid_gate: -0.1,
                ..base()
            },
            "tracker.reid_gate",
        ),
        (
            TrackerConfig {
                reid_reach: f32::NAN,
                ..base()
            },
            "tracker.reid_reach",
        ),
    ];
    for (cfg, field) in cases {
        match Tracker::new(cfg.clone()) {
            Err(err @ Error::InvalidOption { .. }) => {
                if let Error::InvalidOption { name, message } = &err {
                    assert_eq!(name, field, "{cfg:?}");
                    assert!(!message.is_empty());
                }
                assert!(err.to_string().contains(field), "{err}");
            }
            other => unreachable!("{cfg:?} gave {other:?}"),
        }
    }
    assert!(
        Tracker::new(TrackerConfig {
            match_iou: 1.0,
            max_lost_frames: 10_000,
            low_threshold: 0.5,
            ..base()
        })
        .is_ok()
    );
}

/// A person seen walking steadily, then missed for two frames while they sped up (an occlusion):
/// they reappear a box width and a half beyond where the motion model expects them, with no
/// overlap at all. The recovery pass keeps the id; without it a new track (a new id) starts.
#[test]
fn a_track_is_recovered_past_the_prediction_by_buffered_iou() -> Result<()> {
    let run = |buffer: f32| -> Result<Vec<u64>> {
        let mut tracker = Tracker::new(TrackerConfig {
            recover_buffer: buffer,
            ..TrackerConfig::default()
        })?;
        let mut seen = Vec::new();
        let mut x = 0.2;
        for f in 0..12u64 {
            if f == 6 || f == 7 {
                x += 0.005;
                continue; // missed
            }
            if f == 8 {
                x += 1.5 * W + 0.015; // came out of the occlusion further on
            }
            x += 0.005;
            let out = tracker.update(f, &[det(x, 0.5, 0.9)]);
            seen.extend(ids(&out.observed));
        }
        seen.dedup();
        Ok(seen)
    };
    assert_eq!(run(1.0)?, vec![1], "one person, one id");
    assert_eq!(
        run(0.0)?,
        vec![1, 2],
        "without the third pass the id changes"
    );
    Ok(())
}

/// The third pass never takes a detection another track matched normally, and never starts
/// tracks: two people side by side keep their ids.
#[test]
fn recovery_does_not_steal_matched_detections() -> Result<()> {
    let mut tracker = tracker()?;
    for f in 0..10u64 {
        let dx = 0.004 * f as f32;
        let out = tracker.update(
            f,
            &[det(0.3 + dx, 0.5, 0.9), det(0.3 + 2.5 * W + dx, 0.5, 0.9)],
        );
        if f >= 2 {
            assert_eq!(ids(&out.observed), vec![1, 2], "frame {f}");
            assert!(center_x(&out.observed[0]) < center_x(&out.observed[1]));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Appearance

/// A 100×100 frame of grey with a red person and a blue one, where `boxes` say.
fn two_people(red: [f32; 4], blue: [f32; 4]) -> crate::frame::RgbFrame {
    let (w, h) = (100usize, 100usize);
    let mut data = vec![128u8; w * h * 3];
    for (b, colour) in [(red, [210u8, 30, 30]), (blue, [30, 40, 200])] {
        let px = |v: f32, n: usize| ((v * n as f32).round() as usize).min(n);
        for y in px(b[1], h)..px(b[3], h) {
            for x in px(b[0], w)..px(b[2], w) {
                let i = (y * w + x) * 3;
                data[i..i + 3].copy_from_slice(&colour);
            }
        }
    }
    crate::frame::RgbFrame::new(w as u32, h as u32, data).unwrap()
}

fn looks_of(frame: &crate::frame::RgbFrame, dets: &[Detection]) -> Vec<Option<Appearance>> {
    dets.iter()
        .map(|d| crate::appearance::describe(frame.as_view(), d.bbox))
        .collect()
}

/// Two people side by side (red left, blue right) stand still, then trade places in one frame
/// (two frames at a low frame rate, or a group where people overtake one another): each
/// detection then overlaps the other's track. Returns the ids of the tracks on the red person
/// and on the blue one after the step.
fn step_past(with_looks: bool) -> (u64, u64) {
    let mut tracker = Tracker::new(TrackerConfig::default()).unwrap();
    let box_at = |cx: f32| [cx - 0.05, 0.3, cx + 0.05, 0.7];
    let (mut red, mut blue) = (0.45f32, 0.56f32);
    let mut ids = (0, 0);
    for f in 0..12u64 {
        if f == 10 {
            (red, blue) = (blue, red);
        }
        let dets = vec![
            Detection {
                label: Arc::from("person"),
                class_id: 0,
                score: 0.9,
                bbox: box_at(red),
            },
            Detection {
                label: Arc::from("person"),
                class_id: 0,
                score: 0.9,
                bbox: box_at(blue),
            },
        ];
        let frame = two_people(box_at(red), box_at(blue));
        let looks = if with_looks {
            looks_of(&frame, &dets)
        } else {
            Vec::new()
        };
        let out = tracker.update_with_appearance(f, &dets, &looks);
        let id_at = |b: [f32; 4]| out.observed.iter().find(|t| t.bbox == b).map(|t| t.id);
        if f == 9 {
            assert_eq!(
                (id_at(box_at(red)), id_at(box_at(blue))),
                (Some(1), Some(2))
            );
        }
        if f == 11 {
            ids = (id_at(box_at(red)).unwrap(), id_at(box_at(blue)).unwrap());
        }
    }
    ids
}

#[test]
fn people_who_step_past_each_other_keep_their_ids_by_their_colours() {
    // by motion alone each track takes the box that overlaps its last one: a swap
    assert_eq!(step_past(false), (2, 1), "motion alone swaps them");
    // the colours refuse the swap, and the recovery pass gives each track its own person
    assert_eq!(step_past(true), (1, 2));
}

/// A red person is seen, hidden for 15 frames, and comes back `jump` to the right, where
/// neither motion nor the grown boxes reach; `looks_back` is what the returning person wears.
fn come_back(jump: f32, same_person: bool, reid_gate: f32) -> Vec<u64> {
    let mut tracker = Tracker::new(TrackerConfig {
        reid_gate,
        ..TrackerConfig::default()
    })
    .unwrap();
    let at = |cx: f32| Detection {
        label: Arc::from("person"),
        class_id: 0,
        score: 0.9,
        bbox: [cx - 0.05, 0.3, cx + 0.05, 0.5],
    };
    let mut seen = Vec::new();
    for f in 0..40u64 {
        let dets = match f {
            0..=9 => vec![at(0.3)],
            10..=24 => Vec::new(),
            _ => vec![at(0.3 + jump)],
        };
        let frame = if f < 25 || same_person {
            two_people(dets.first().map_or([0.0; 4], |d| d.bbox), [0.0; 4])
        } else {
            two_people([0.0; 4], dets[0].bbox)
        };
        let out = tracker.update_with_appearance(f, &dets, &looks_of(&frame, &dets));
        seen.extend(out.observed.iter().map(|t| t.id));
    }
    seen.dedup();
    seen
}

#[test]
fn a_person_hidden_longer_than_motion_bridges_is_found_again_by_their_colours() {
    // 0.3 to the right (1.5 box heights): the grown boxes of the recovery pass do not meet
    assert_eq!(come_back(0.3, true, 0.2), vec![1], "found again");
    assert_eq!(
        come_back(0.3, true, 0.0),
        vec![1, 2],
        "re-identification off"
    );
    assert_eq!(come_back(0.3, false, 0.2), vec![1, 2], "someone else");
    // beyond `reid_reach` (2 box heights)
    assert_eq!(come_back(0.5, true, 0.2), vec![1, 2], "too far");
}

#[test]
fn without_appearances_the_tracker_matches_by_motion_alone() {
    // `update` and `update_with_appearance` with no (or too few) looks are the same tracker
    let mut a = Tracker::new(TrackerConfig::default()).unwrap();
    let mut b = Tracker::new(TrackerConfig::default()).unwrap();
    for f in 0..30u64 {
        let dets = vec![det(0.2 + 0.01 * f as f32, 0.5, 0.9), det(0.7, 0.5, 0.8)];
        let short: Vec<Option<Appearance>> = vec![None];
        assert_eq!(
            a.update(f, &dets),
            b.update_with_appearance(f, &dets, &short)
        );
    }
}
