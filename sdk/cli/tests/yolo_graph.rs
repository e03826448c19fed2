//! The YOLO decoder and NMS end to end through ONNX Runtime, on graphs whose outputs are known
//! constants (no YOLO model ships in a registry package here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use ocellus::card::ModelCard;
use ocellus::infer::{Detector, DetectorOptions};

/// Write `model` and a YOLO card for it (64x64 letterboxed NCHW float input, 2 classes).
fn write_model(dir: &Path, model: &[u8], layout: &str) -> PathBuf {
    std::fs::write(dir.join("const.onnx"), model).unwrap();
    let card = format!(
        r#"
schema = "ocellus.model-card/1"
name = "const-yolo"
file = "const.onnx"
sha256 = "{sha}"
licence = "Apache-2.0"
[source]
registry = "local"
package = "ocellus tests"
recipe = "sdk/cli/tests/common/onnx.rs: constant_model"
[input]
name = "images"
layout = "nchw"
dtype = "float32"
width = 64
height = 64
resize = "letterbox"
pad = 114
[output]
decoder = "yolo"
output = "output0"
layout = "{layout}"
score_threshold = 0.25
nms_iou = 0.5
[labels]
0 = "person"
1 = "car"
"#,
        sha = common::onnx::sha256_hex(model)
    );
    let path = dir.join("const.toml");
    std::fs::write(&path, card).unwrap();
    path
}

/// A 128x64 frame: letterboxed into 64x64 it fills rows 16..48 (scale 0.5, offset 0.25 in y).
fn frame() -> ocellus::RgbFrame {
    ocellus::RgbFrame::new(128, 64, vec![80; 128 * 64 * 3]).unwrap()
}

fn close(a: [f32; 4], b: [f32; 4]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

#[test]
fn v8_layout_decodes_letterbox_maps_back_and_nms_suppresses() {
    // [1, 4 + 2, 4]: columns are candidates; rows cx, cy, w, h, p(person), p(car), in input pixels.
    #[rustfmt::skip]
    let data = [
        // cand: A      B (overlaps A)  C (car)  D (too weak)
        32.0,  33.0,  16.0,  50.0, // cx
        32.0,  32.0,  24.0,  10.0, // cy
        16.0,  16.0,   8.0,   4.0, // w
        32.0,  32.0,   8.0,   4.0, // h
        0.90,  0.80,  0.05,  0.10, // person
        0.10,  0.05,  0.70,  0.20, // car
    ];
    let model =
        common::onnx::constant_model("images", &[1, 3, 64, 64], "output0", &[1, 6, 4], &data);
    let dir = tempfile::tempdir().unwrap();
    let card = ModelCard::load(write_model(dir.path(), &model, "auto")).unwrap();
    let mut det = Detector::new(common::runtime(), &card, &DetectorOptions::default()).unwrap();
    let d = det.detect(&frame().as_view()).unwrap();
    assert_eq!(d.len(), 2, "{d:?}");
    // A: x 24..40 of 64; y 16..48 of 64 → the frame's full height after un-letterboxing
    assert_eq!((&*d[0].label, d[0].class_id), ("person", 0));
    assert!((d[0].score - 0.9).abs() < 1e-6);
    assert!(
        close(d[0].bbox, [0.375, 0.0, 0.625, 1.0]),
        "{:?}",
        d[0].bbox
    );
    // C: x 12..20, y 20..28 → y (20/64 - 0.25) / 0.5 = 0.125 .. 0.375
    assert_eq!(&*d[1].label, "car");
    assert!(
        close(d[1].bbox, [0.1875, 0.125, 0.3125, 0.375]),
        "{:?}",
        d[1].bbox
    );
}

#[test]
fn v5_layout_multiplies_objectness() {
    #[rustfmt::skip]
    let data = [
        // cx,   cy,   w,    h,    obj,  person, car
        32.0, 32.0, 16.0, 32.0, 0.9, 0.2, 0.8,
        32.0, 32.0, 16.0, 32.0, 0.1, 0.9, 0.1,
    ];
    let model =
        common::onnx::constant_model("images", &[1, 3, 64, 64], "output0", &[1, 2, 7], &data);
    let dir = tempfile::tempdir().unwrap();
    let card = ModelCard::load(write_model(dir.path(), &model, "v5")).unwrap();
    let mut det = Detector::new(common::runtime(), &card, &DetectorOptions::default()).unwrap();
    let d = det.detect(&frame().as_view()).unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(&*d[0].label, "car");
    assert!((d[0].score - 0.72).abs() < 1e-6);
}

#[test]
fn output_of_the_wrong_shape_is_an_error_naming_the_output() {
    // 7 rows for a 2-class card is neither [1, 6, N] nor [1, N, 7] with N = 3 ... [1, 7, 3] fits no layout
    let model =
        common::onnx::constant_model("images", &[1, 3, 64, 64], "output0", &[1, 8, 3], &[0.5; 24]);
    let dir = tempfile::tempdir().unwrap();
    let card = ModelCard::load(write_model(dir.path(), &model, "auto")).unwrap();
    // refused at load by the test inference, naming the output, its shape, the key and the card
    let err = Detector::new(common::runtime(), &card, &DetectorOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("output0"), "{err}");
    assert!(err.contains("[1, 8, 3]"), "{err}");
    assert!(err.contains("`output.output`"), "{err}");
    assert!(err.contains("const.toml"), "{err}");
}

#[test]
fn card_naming_a_missing_output_is_refused_at_load() {
    let model =
        common::onnx::constant_model("images", &[1, 3, 64, 64], "scores", &[1, 6, 1], &[0.0; 6]);
    let dir = tempfile::tempdir().unwrap();
    let card = ModelCard::load(write_model(dir.path(), &model, "auto")).unwrap();
    let err = Detector::new(common::runtime(), &card, &DetectorOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("`output0`") && err.contains("scores"), "{err}");
}

#[test]
fn a_model_file_that_differs_from_its_card_is_refused() {
    let model =
        common::onnx::constant_model("images", &[1, 3, 64, 64], "output0", &[1, 6, 1], &[0.0; 6]);
    let dir = tempfile::tempdir().unwrap();
    let card_path = write_model(dir.path(), &model, "auto");
    let mut tampered = model.clone();
    tampered.push(0);
    std::fs::write(dir.path().join("const.onnx"), &tampered).unwrap();
    let card = ModelCard::load(card_path).unwrap();
    let err = Detector::new(common::runtime(), &card, &DetectorOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sha256") && err.contains("const.onnx"),
        "{err}"
    );
}
