//! The INT8 person detector (`models/ssd-mobilenet-v2-coco-person-int8.toml`), as provisioning
//! made it on this machine: its person-only head, the accuracy guard against its fp32 parent
//! (`ocellus model compare`), and the commands that run it by default (the demo, the bench).
//!
//! Provisioning already held the model to the guard on all 795 frames before installing it; the
//! test repeats it on the first frames with the real binary, and shows the guard refuses a model
//! whose numbers are off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use ocellus::card::ModelCard;
use ocellus::infer::{Detector, DetectorOptions};

const INT8: &str = "ssd-mobilenet-v2-coco-person-int8.toml";
const INT8_NAME: &str = "ssd-mobilenet-v2-coco-person-int8";
const CUT_NAME: &str = "ssd-mobilenet-v2-coco-cut";

fn int8_card() -> ModelCard {
    ModelCard::load(common::card_path(INT8)).unwrap()
}

fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ocellus model compare` on the INT8 card (with `model` as its file, if given), as JSON.
fn compare(model: Option<&Path>, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut cmd = common::bin();
    cmd.args(["model", "compare"]).arg(common::card_path(INT8));
    if let Some(m) = model {
        cmd.arg(m);
    }
    let (code, out, err) = run(cmd.args(["--format", "json"]).args(extra));
    let v = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
    (code, v, err)
}

#[test]
fn the_int8_person_detector_holds_the_guard_against_its_fp32_parent() {
    common::footage("vtest.avi");
    let (code, v, err) = compare(None, &["--frames", "150"]);
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(v["model"], INT8_NAME, "{v}");
    // the reference is the card the model was made from, found through `source.derived_from`
    assert_eq!(v["reference"], CUT_NAME, "{v}");
    assert_eq!(v["frames"], 150, "{v}");
    assert_eq!(v["holds"], true, "{v}");
    let labels = v["labels"].as_array().unwrap();
    assert_eq!(
        labels.len(),
        1,
        "the labels both cards name: person only: {v}"
    );
    let person = &labels[0];
    assert_eq!(person["label"], "person");
    // a frame of vtest.avi holds several people: hundreds of reference detections were compared
    assert!(person["matched"].as_u64().unwrap() > 300, "{v}");
    for k in ["recall", "precision"] {
        assert!(person[k].as_f64().unwrap() >= 0.97, "{k}: {v}");
    }
    assert!(person["mean_iou"].as_f64().unwrap() > 0.85, "{v}");
    let [mine, theirs] = [&v["counts"][0], &v["counts"][1]];
    for k in ["line_a_to_b", "line_b_to_a"] {
        let (a, b) = (mine[k].as_u64().unwrap(), theirs[k].as_u64().unwrap());
        assert!(a.abs_diff(b) <= 1, "{k}: {a} against {b}: {v}");
    }
    assert_eq!(mine["frames"], 150, "{v}");
}

/// The INT8 model with its first convolution (kept in fp32) scaled: what a broken quantiser or a
/// damaged file would do to the numbers.
fn damaged_model(dir: &Path, factor: f32) -> PathBuf {
    let card = int8_card();
    let mut bytes = std::fs::read(card.resolve_file().unwrap()).unwrap();
    let convs = common::onnx::conv_weights(&bytes);
    let floats = common::onnx::float_initializers(&bytes);
    let (_, range) = floats
        .into_iter()
        .find(|(n, _)| Some(n) == convs.first())
        .expect("the first convolution's weights are fp32 in the INT8 model");
    common::onnx::map_floats(&mut bytes, range, |_, v| v * factor);
    let p = dir.join("damaged.onnx");
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn the_guard_refuses_a_model_whose_numbers_are_off() {
    common::footage("vtest.avi");
    let dir = tempfile::tempdir().unwrap();
    let model = damaged_model(dir.path(), 0.6);
    let (code, v, err) = compare(Some(&model), &["--frames", "60", "--no-counts"]);
    assert_eq!(code, 1, "{v}\n{err}");
    assert_eq!(v["holds"], false, "{v}");
    let person = &v["labels"][0];
    let (recall, precision) = (
        person["recall"].as_f64().unwrap(),
        person["precision"].as_f64().unwrap(),
    );
    assert!(recall < 0.97 || precision < 0.97, "{v}");
    // and the text says which bar failed
    let (code, out, _) = run(common::bin()
        .args(["model", "compare"])
        .arg(common::card_path(INT8))
        .arg(&model)
        .args(["--frames", "60", "--no-counts"]));
    assert_eq!(code, 1);
    assert!(out.contains("BELOW") && out.contains("FAILS"), "{out}");
}

#[test]
fn the_head_is_person_only_and_finds_the_people_the_fp32_model_finds() {
    let rt = common::runtime();
    let card = int8_card();
    assert_eq!(card.labels.len(), 1);
    assert_eq!(&*card.label(1), "person");
    let fp32 = card.derived_from().unwrap().unwrap();
    assert_eq!(fp32.name, CUT_NAME);
    let opts = DetectorOptions::default();
    let mut int8 = Detector::new(rt, &card, &opts).unwrap();
    let mut reference = Detector::new(rt, &fp32, &opts).unwrap();
    let image = ocellus::load_rgb(common::footage("messi5.jpg")).unwrap();
    let got = int8.detect(&image.as_view()).unwrap();
    let want = reference.detect(&image.as_view()).unwrap();
    // the sliced head has two logit columns: background and person
    let logits = int8.raw_outputs().get("concat_1:0").unwrap();
    assert_eq!(logits.shape, [1, 1917, 2]);
    // the fp32 model also sees the ball; the person-only head cannot
    assert!(want.iter().any(|d| &*d.label == "sports ball"), "{want:?}");
    assert!(got.iter().all(|d| &*d.label == "person"), "{got:?}");
    let people: Vec<[f32; 4]> = want
        .iter()
        .filter(|d| &*d.label == "person")
        .map(|d| d.bbox)
        .collect();
    assert!(!people.is_empty());
    for (iou, b) in common::best_ious(&got, "person", &people)
        .iter()
        .zip(&people)
    {
        assert!(*iou > 0.9, "the person at {b:?}: best IoU {iou}: {got:?}");
    }
}

#[test]
fn the_demo_runs_the_int8_detector() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let (code, out, err) = run(common::bin()
        .args(["demo", "--frames", "20", "--summary"])
        .arg(&summary));
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("(INT8)"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(v["model"], INT8_NAME, "{v}");
    assert_eq!(v["frames_processed"], 20, "{v}");
}

#[test]
fn bench_sets_the_int8_detector_beside_its_fp32_parent() {
    let (code, out, err) =
        run(common::bin().args(["bench", "--frames", "12", "--no-child", "--format", "json"]));
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["model"], INT8_NAME, "{v}");
    assert_eq!(v["baseline"], CUT_NAME, "{v}");
    let side = &v["baseline_side_by_side"];
    assert!(side.is_object(), "{v}");
    // measured, not asserted on: speed is a benchmark's business, not a test's
    for k in ["pipeline_fps", "model_file_mib"] {
        assert!(side[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {v}");
    }
    assert!(v["raw_over_baseline_raw"].as_f64().is_some(), "{v}");
    // where the pipeline's CPU went, thread by thread, for both models: inference is seen on its
    // own thread and decoding in the ffmpeg child
    for threads in [&v["pipeline_threads"], &side["pipeline_threads"]] {
        let threads = threads.as_array().unwrap_or_else(|| panic!("{v}"));
        let cpu = |prefix: &str| {
            threads
                .iter()
                .find(|t| t["thread"].as_str().is_some_and(|n| n.starts_with(prefix)))
                .and_then(|t| t["cpu_ms_per_frame"].as_f64())
        };
        assert!(cpu("ocellus-infer").is_some_and(|ms| ms > 0.0), "{v}");
        assert!(cpu("ffmpeg").is_some_and(|ms| ms > 0.0), "{v}");
        assert!(cpu("ocellus-capture").is_some(), "{v}");
    }
    assert!(
        v["targets"]["startup_ms_max"].as_f64() == Some(250.0),
        "{v}"
    );
    assert!(
        v["targets"]["rss_peak_mib_max"].as_f64() == Some(100.0),
        "{v}"
    );
}
