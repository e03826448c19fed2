//! The replay fixtures (`sdk/core/tests/fixtures/vtest-detections.jsonl`, and
//! `vtest-detections-tiled.jsonl` on the default tiles) against the real model:
//! the detections recorded there are what the model sees on this machine's ONNX Runtime, within
//! the tolerance CPUs differ by, and so are the recorded looks of each box (the colour histograms
//! the tracker tells people apart by, `ocellus_core::appearance`). The replay itself (`sdk/core/tests/replay.rs`) then pins the
//! events exactly.
//!
//! Recording (once, or when the model or its card changes on purpose):
//! `OCELLUS_RECORD=1 cargo test -p ocellus-cli --release --test replay_fixture`, then re-bless
//! the golden events and commit both with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::path::PathBuf;

use ocellus::appearance::{self, Appearance};
use ocellus::card::ModelCard;
use ocellus::infer::{Detector, DetectorOptions};
use ocellus::source::FfmpegSource;
use ocellus::tile::{Tiled, Tiling};
use ocellus::{Detection, Inference, RgbView, Source, TrackerConfig};

fn fixture(name: &str) -> PathBuf {
    common::repo_root()
        .join("sdk/core/tests/fixtures")
        .join(name)
}

/// The demo's detector (the cut SSD card, people only) reporting down to the tracker's floor,
/// as a pipeline built with it does.
fn detector() -> (Detector, f32) {
    let card = ModelCard::builtin_ssd_cut().unwrap();
    let opts = DetectorOptions {
        labels: Some(vec!["person".into()]),
        ..Default::default()
    };
    let mut det = Detector::new(common::runtime(), &card, &opts).unwrap();
    let (floor, _) = TrackerConfig::default().coupled_to(det.score_threshold());
    det.set_report_floor(floor);
    (det, floor)
}

/// What each detection looks like, in the text form of `Appearance::encode` (`null` where the
/// box is too small to describe), as the pipeline computes it for the tracker.
fn looks(view: RgbView<'_>, dets: &[Detection]) -> Vec<Option<String>> {
    dets.iter()
        .map(|d| appearance::describe(view, d.bbox).map(|a| a.encode()))
        .collect()
}

fn round4(v: f32) -> f64 {
    (f64::from(v) * 1e4).round() / 1e4
}

fn record(dets: &[Detection]) -> Vec<[f64; 5]> {
    dets.iter()
        .map(|d| {
            let b = d.bbox;
            [d.score, b[0], b[1], b[2], b[3]].map(round4)
        })
        .collect()
}

#[derive(serde::Deserialize)]
struct Line {
    f: u64,
    d: Vec<[f32; 5]>,
    a: Vec<Option<String>>,
}

fn iou(a: &[f32], b: &[f32]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// Every detection of `a` clearly above the floor has a twin in `b`: same place, same score
/// within what CPUs differ by.
fn unmatched(a: &[[f32; 5]], b: &[[f32; 5]], floor: f32) -> Vec<[f32; 5]> {
    a.iter()
        .filter(|x| x[0] >= floor + 0.05)
        .filter(|x| {
            !b.iter()
                .any(|y| iou(&x[1..], &y[1..]) >= 0.9 && (x[0] - y[0]).abs() <= 0.03)
        })
        .copied()
        .collect()
}

#[test]
fn the_recorded_detections_are_what_the_model_sees() {
    let (mut det, floor) = detector();
    let card = det.card().name.clone();
    check_or_record("vtest-detections.jsonl", &mut det, &card, floor);
}

/// The same on two tiles, as deployments run the detector by default (`model.tiles`).
#[test]
fn the_recorded_tiled_detections_are_what_the_tiled_model_sees() {
    let (det, floor) = detector();
    let card = format!("{} on the default tiles", det.card().name);
    let mut tiled = Tiled::new(det, Tiling::default()).unwrap();
    check_or_record("vtest-detections-tiled.jsonl", &mut tiled, &card, floor);
}

fn check_or_record(name: &str, det: &mut dyn Inference, card: &str, floor: f32) {
    let video = common::footage("vtest.avi");
    let mut source = FfmpegSource::open(&video.to_string_lossy(), None, false).unwrap();
    let recording = std::env::var_os("OCELLUS_RECORD").is_some();
    if recording {
        let mut out = std::io::BufWriter::new(std::fs::File::create(fixture(name)).unwrap());
        let header = serde_json::json!({
            "source": "vtest.avi (opencv_extra via models/provision.sh)",
            "card": card,
            "labels": ["person"],
            "threshold": det.score_threshold(),
            "floor": floor,
            "frames": source.len_hint(),
        });
        writeln!(out, "{header}").unwrap();
        while let Some(frame) = source.next_frame().unwrap() {
            let view = frame.image.as_ref().unwrap().as_view();
            let dets = det.infer(view).unwrap();
            let line = serde_json::json!({
                "f": frame.seq,
                "t_ms": frame.t.as_millis() as u64,
                "d": record(&dets),
                "a": looks(view, &dets),
            });
            writeln!(out, "{line}").unwrap();
        }
        return;
    }
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let recorded: Vec<Line> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recorded.len(), 795);
    // every 53rd frame: 15 frames across the whole clip
    let mut checked = 0;
    let mut compared = 0;
    let mut looks_compared = 0;
    while let Some(frame) = source.next_frame().unwrap() {
        if frame.seq % 53 != 0 {
            continue;
        }
        let rec = &recorded[frame.seq as usize];
        assert_eq!(rec.f, frame.seq);
        let view = frame.image.as_ref().unwrap().as_view();
        let live_dets = det.infer(view).unwrap();
        let live_looks = looks(view, &live_dets);
        let live: Vec<[f32; 5]> = record(&live_dets)
            .iter()
            .map(|v| v.map(|x| x as f32))
            .collect();
        assert_eq!(
            rec.a.len(),
            rec.d.len(),
            "frame {}: one look per detection",
            frame.seq
        );
        // the recorded looks are what the pipeline sees in those boxes: the same colours, within
        // what the boxes' last digits move
        for (x, look) in live.iter().zip(&live_looks) {
            let twin = rec
                .d
                .iter()
                .zip(&rec.a)
                .find(|(y, _)| iou(&x[1..], &y[1..]) >= 0.95);
            if let (Some((_, Some(recorded))), Some(live)) = (twin, look) {
                let (r, l) = (
                    Appearance::decode(recorded).expect("an encoded appearance"),
                    Appearance::decode(live).unwrap(),
                );
                assert!(
                    r.distance(&l) <= 0.1,
                    "frame {}: the box at {:?} looks different from the recording ({:.3})",
                    frame.seq,
                    &x[1..],
                    r.distance(&l)
                );
                looks_compared += 1;
            }
        }
        let missing = unmatched(&live, &rec.d, floor);
        let extra = unmatched(&rec.d, &live, floor);
        assert!(
            missing.is_empty() && extra.is_empty(),
            "frame {}: the model sees {missing:?} that the fixture lacks, and the fixture has {extra:?} that the model no longer sees",
            frame.seq
        );
        compared += live.iter().filter(|x| x[0] >= floor + 0.05).count();
        checked += 1;
    }
    assert_eq!(checked, 15);
    assert!(compared >= 30, "only {compared} detections compared");
    assert!(looks_compared >= 30, "only {looks_compared} looks compared");
}
