//! `ocellus run --tracks FILE` and `ocellus eval` on real footage: vtest.avi through ffmpeg, the
//! real SSD and ORT. The track file must be MOTChallenge text that the field's tools read, the
//! evaluation of a track file against itself must be perfect and count the same crossings as
//! the run's own line events, and an evaluation against a damaged copy must show the damage.
//! Bad input is refused with the file, the line and what to do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const FRAMES: u64 = 150;

fn write_config(dir: &Path) -> PathBuf {
    let cfg = format!(
        r#"
[device]
id = "eval-cam"

[source]
kind = "video"
path = "{video}"

[model]
card = "{card}"
labels = ["person"]

[[rules.line]]
name = "walkway"
a = [0.75, 0.3]
b = [0.75, 0.75]

[[rules.line]]
name = "plaza"
a = [0.2, 0.45]
b = [0.8, 0.45]

[mqtt]
url = "mqtt://127.0.0.1:1"

[queue]
dir = "{queue}"
"#,
        queue = dir.join("queue").display(),
        video = common::footage("vtest.avi").display(),
        card = common::card_path("ssd-mobilenet-v2-coco.toml").display(),
    );
    let path = dir.join("eval.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// `(frame, id, [x, y, w, h], conf)` rows of a MOTChallenge file, checked for its format.
fn rows(text: &str) -> Vec<(u64, u64, [f64; 4], f64)> {
    text.lines()
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), 10, "frame,id,x,y,w,h,conf,-1,-1,-1: {line}");
            assert_eq!(&cols[7..], ["-1", "-1", "-1"], "{line}");
            let n = |i: usize| {
                cols[i]
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("{line}: {e}"))
            };
            (
                cols[0].parse().unwrap(),
                cols[1].parse().unwrap(),
                [n(2), n(3), n(4), n(5)],
                n(6),
            )
        })
        .collect()
}

fn eval(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = common::bin()
        .arg("eval")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, stderr)
}

#[test]
fn a_run_writes_mot_tracks_that_eval_scores_and_counts_like_the_rules_engine() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let tracks = dir.path().join("tracks.txt");
    let out = common::bin()
        .args(["run", "--frames", &FRAMES.to_string(), "--config"])
        .arg(&cfg)
        .arg("--tracks")
        .arg(&tracks)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // the broker is unreachable on purpose: events are queued, the run itself succeeds
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(&format!("{FRAMES} processed")), "{stderr}");

    // the file: 1-based frames in order, positive ids unique per frame, boxes inside 768×576
    let text = std::fs::read_to_string(&tracks).unwrap();
    let rows = rows(&text);
    assert!(
        rows.len() > 300,
        "people walk through every frame: {}",
        rows.len()
    );
    let mut per_frame: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut last_frame = 0;
    for &(frame, id, [x, y, w, h], conf) in &rows {
        assert!((1..=FRAMES).contains(&frame), "frame {frame}");
        assert!(frame >= last_frame, "frames in order");
        last_frame = frame;
        assert!(id >= 1);
        assert!(
            per_frame.entry(frame).or_default().insert(id),
            "id {id} twice in {frame}"
        );
        assert!(
            w > 0.0 && h > 0.0 && x > -1.0 && y > -1.0,
            "{x},{y},{w},{h}"
        );
        assert!(x + w <= 769.0 && y + h <= 577.0, "{x},{y},{w},{h}");
        assert!((0.0..=1.0).contains(&conf), "{conf}");
    }
    assert!(
        per_frame.len() as u64 > FRAMES * 9 / 10,
        "{}",
        per_frame.len()
    );
    let ids: BTreeSet<u64> = rows.iter().map(|r| r.1).collect();
    assert!(ids.len() >= 5, "{ids:?}");

    // against itself: perfect, and the lines count what the run's rules engine counted
    let (ok, report, stderr) = eval(&[
        "--gt",
        tracks.to_str().unwrap(),
        "--tracks",
        tracks.to_str().unwrap(),
        "--size",
        "768x576",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(report["mota"], 1.0, "{report}");
    assert_eq!(report["idf1"], 1.0, "{report}");
    assert_eq!(report["id_switches"], 0, "{report}");
    assert_eq!(report["gt_boxes"], rows.len() as u64, "{report}");
    assert_eq!(report["line_abs_error"], 0, "{report}");
    for line in report["lines"].as_array().unwrap() {
        let name = line["name"].as_str().unwrap();
        for (i, dir) in ["a_to_b", "b_to_a"].iter().enumerate() {
            let run_count = stdout
                .lines()
                .filter(|l| l.contains(&format!(" {name} {dir} track ")))
                .count() as u64;
            assert_eq!(
                line["counted"][i].as_u64().unwrap(),
                run_count,
                "{name} {dir}: eval vs the run's events\n{stdout}"
            );
        }
    }
    let crossings = report["true_crossings"].as_u64().unwrap();
    assert!(crossings >= 2, "{report}");

    // against a copy with every second identity's boxes moved aside: its people are missed,
    // its track boxes are false positives, and the counts on the lines move
    let odd: String = text
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            let id: u64 = cols[1].parse().unwrap();
            if id % 2 == 1 {
                let y: f64 = cols[3].parse().unwrap();
                format!(
                    "{},{},{},{},{}",
                    cols[0],
                    cols[1],
                    cols[2],
                    y - 300.0,
                    cols[4..].join(",")
                )
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let gt = dir.path().join("shifted.txt");
    std::fs::write(&gt, odd).unwrap();
    let (ok, shifted, stderr) = eval(&[
        "--gt",
        gt.to_str().unwrap(),
        "--tracks",
        tracks.to_str().unwrap(),
        "--size",
        "768x576",
        "--lines",
        "20",
    ]);
    assert!(ok, "{stderr}");
    let moved = rows.iter().filter(|r| r.1 % 2 == 1).count() as u64;
    assert_eq!(shifted["false_negatives"], moved, "{shifted}");
    assert_eq!(shifted["false_positives"], moved, "{shifted}");
    assert!(shifted["mota"].as_f64().unwrap() < 1.0, "{shifted}");
    assert!(shifted["idf1"].as_f64().unwrap() < 1.0, "{shifted}");
    assert_eq!(shifted["lines"].as_array().unwrap().len(), 20);
    assert!(shifted["line_abs_error"].as_u64().unwrap() > 0, "{shifted}");
}

#[test]
fn bad_ground_truth_is_refused_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(
        &good,
        "1,1,10,20,30,60,1,-1,-1,-1\n2,1,12,20,30,60,1,-1,-1,-1\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(
        &bad,
        "1,1,10,20,30,60,1,-1,-1,-1\n2,1,twelve,20,30,60,1,-1,-1,-1\n",
    )
    .unwrap();
    let (ok, _, stderr) = eval(&[
        "--gt",
        bad.to_str().unwrap(),
        "--tracks",
        good.to_str().unwrap(),
        "--size",
        "768x576",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("bad.txt") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(stderr.contains("--gt"), "{stderr}");
    // no size given and no seqinfo.ini to read it from
    let (ok, _, stderr) = eval(&[
        "--gt",
        good.to_str().unwrap(),
        "--tracks",
        good.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("--size WIDTHxHEIGHT"), "{stderr}");
    // a missing file is named
    let (ok, _, stderr) = eval(&[
        "--gt",
        good.to_str().unwrap(),
        "--tracks",
        dir.path().join("absent.txt").to_str().unwrap(),
        "--size",
        "768x576",
    ]);
    assert!(!ok);
    assert!(stderr.contains("absent.txt"), "{stderr}");
}
