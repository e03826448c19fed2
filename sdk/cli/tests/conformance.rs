//! Converted models are accepted by what they compute (`ocellus::conformance`), and the
//! accepted bytes are pinned by a manifest (`ocellus::manifest`).
//!
//! The real converted SSD (cut at the box predictor) from the provisioning cache is changed the
//! ways a converter on another CPU would change it (every weight moved by a few ulps: accepted)
//! and the ways a wrong model differs (one convolution's weights scaled, another card's model, a
//! truncated file: refused, naming the input, the output and by how much).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use ocellus::Error;
use ocellus::card::ModelCard;
use ocellus::conformance;
use ocellus::infer::{Detector, DetectorOptions};
use ocellus::manifest::{Manifest, path_for};

const CUT: &str = "ssd-mobilenet-v2-coco-cut.toml";
const FULL: &str = "ssd-mobilenet-v2-coco.toml";

fn card_named(name: &str) -> ModelCard {
    ModelCard::load(common::card_path(name)).unwrap()
}

fn real_model(card: &ModelCard) -> PathBuf {
    card.resolve_file().unwrap()
}

fn footage() -> PathBuf {
    common::footage("vtest.avi");
    ocellus::paths::footage_dir()
}

/// The real cut model with `edit` applied to its bytes, written to `dir/name`.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(real_model(&card_named(CUT))).unwrap();
    edit(&mut bytes);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Every float weight with its lowest three mantissa bits changed (up to 7 ulps), as a
/// converter folding constants with other floating-point kernels would.
fn ulps_moved(bytes: &mut [u8]) {
    let inits = common::onnx::float_initializers(bytes);
    assert!(
        inits.len() > 50,
        "the model's weights were found: {}",
        inits.len()
    );
    let mut state = 0x9e37_79b9_u32;
    let mut changed = 0usize;
    for (_, range) in inits {
        common::onnx::map_floats(bytes, range, |_, v| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let moved = f32::from_bits(v.to_bits() ^ (state & 7));
            changed += usize::from(moved.to_bits() != v.to_bits());
            moved
        });
    }
    assert!(changed > 1_000_000, "{changed} weights moved");
}

/// Convolution `k`'s weights multiplied by `factor`.
fn conv_scaled(k: usize, factor: f32) -> impl FnOnce(&mut Vec<u8>) {
    move |bytes: &mut Vec<u8>| {
        let convs = common::onnx::conv_weights(bytes);
        assert!(convs.len() > 50, "{} convolutions", convs.len());
        let name = &convs[k];
        let (_, range) = common::onnx::float_initializers(bytes)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no initializer {name}"));
        common::onnx::map_floats(bytes, range, |_, v| v * factor);
    }
}

fn conformance_error(r: ocellus::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(e @ Error::Conformance { .. }) => e.to_string(),
        other => panic!("expected a conformance failure, got {other:?}"),
    }
}

#[test]
fn weights_moved_by_a_few_ulps_conform() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let card = card_named(CUT);
    let model = edited(dir.path(), "ulps.onnx", |b| ulps_moved(b));
    assert_ne!(
        common::onnx::sha256_hex(&std::fs::read(&model).unwrap()),
        common::onnx::sha256_hex(&std::fs::read(real_model(&card)).unwrap()),
        "the bytes differ, as on another CPU"
    );
    let results = conformance::check(rt, &card, &model, &footage()).unwrap();
    assert_eq!(results.len(), card.conformance.as_ref().unwrap().case.len());
    for r in &results {
        assert!(r.detections > 0, "{r:?}");
        // far inside the tolerance: a few ulps are not what the tolerance is for
        assert!(r.max_tensor_ratio < 0.2, "{r:?}");
    }
}

#[test]
fn a_scaled_convolution_is_refused_naming_input_output_and_size() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let card = card_named(CUT);
    // a middle layer of the feature extractor, doubled
    let model = edited(dir.path(), "scaled.onnx", conv_scaled(30, 2.0));
    let msg = conformance_error(conformance::check(rt, &card, &model, &footage()));
    assert!(msg.contains("scaled.onnx") && msg.contains(CUT), "{msg}");
    assert!(msg.contains("input vtest.avi#0"), "{msg}");
    assert!(msg.contains("off by"), "{msg}");
    assert!(msg.contains("tolerance"), "{msg}");
    // and a small change late in the network, which moves no detection past its tolerance, is
    // still caught by the output statistics, which name the output
    let model = edited(dir.path(), "nudged.onnx", conv_scaled(60, 1.05));
    let msg = conformance_error(conformance::check(rt, &card, &model, &footage()));
    assert!(
        msg.contains("output `Squeeze:0`") || msg.contains("output `concat_1:0`"),
        "{msg}"
    );
}

#[test]
fn another_cards_model_and_a_truncated_file_are_refused() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let cut = card_named(CUT);
    let full = card_named(FULL);
    // the full graph under the cut card: its input is not the card's
    let e = conformance::check(rt, &cut, &real_model(&full), &footage()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::ModelMismatch { .. }), "{msg}");
    assert!(
        msg.contains("Preprocessor/sub:0") && msg.contains("image_tensor:0"),
        "{msg}"
    );
    // BlazeFace under the cut card: another input
    let bf = card_named("blazeface-back-256.toml");
    let e = conformance::check(rt, &cut, &real_model(&bf), &footage()).unwrap_err();
    assert!(matches!(e, Error::ModelMismatch { .. }), "{e}");
    // a truncated file
    let model = edited(dir.path(), "truncated.onnx", |b| b.truncate(b.len() / 2));
    let e = conformance::check(rt, &cut, &model, &footage()).unwrap_err();
    assert!(matches!(e, Error::ModelLoad { .. }), "{e}");
    assert!(e.to_string().contains("truncated.onnx"), "{e}");
}

/// The cut card copied into `dir`, so that its model file resolves next to it.
fn card_in(dir: &Path, name: &str) -> ModelCard {
    let text = std::fs::read_to_string(common::card_path(name)).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    ModelCard::load(&p).unwrap()
}

fn load(card: &ModelCard) -> ocellus::Result<Detector> {
    let opts = DetectorOptions {
        prepare: false,
        ..Default::default()
    };
    Detector::new(common::runtime(), card, &opts)
}

#[test]
fn an_accepted_model_is_pinned_by_its_manifest() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let card = card_in(dir.path(), CUT);
    // another CPU's conversion: other bytes, the same results
    let model = edited(dir.path(), &card.file, |b| ulps_moved(b));

    // not accepted yet: refused, saying what to run
    let e = load(&card).unwrap_err();
    assert!(matches!(e, Error::ModelUnaccepted { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("models/provision.sh") && msg.contains(&card.file),
        "{msg}"
    );

    // accepted: the manifest records what was checked, and the model loads and detects
    let m = conformance::accept(rt, &card, &model, &footage(), "test converter").unwrap();
    assert_eq!(
        m.sha256,
        common::onnx::sha256_hex(&std::fs::read(&model).unwrap())
    );
    assert_eq!(m.card, card.name);
    assert_eq!(m.converter, "test converter");
    assert_eq!(m.source_sha256, card.source.sha256);
    assert!(m.onnxruntime.contains("1.31"), "{}", m.onnxruntime);
    assert_eq!(Manifest::for_model(&card, &model).unwrap(), m);
    let dets = load(&card)
        .unwrap()
        .detect(&common::vtest_frame(0).as_view())
        .unwrap();
    assert!(
        dets.iter().filter(|d| &*d.label == "person").count() >= 3,
        "{dets:?}"
    );

    // one byte changed after acceptance: refused, naming the manifest
    let mut bytes = std::fs::read(&model).unwrap();
    let (_, weights) = common::onnx::float_initializers(&bytes).swap_remove(0);
    bytes[weights.start] ^= 0x01;
    std::fs::write(&model, &bytes).unwrap();
    let e = load(&card).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::ModelManifest { .. }), "{msg}");
    assert!(msg.contains("changed after it was accepted"), "{msg}");
    assert!(
        msg.contains(&path_for(&model).display().to_string()),
        "{msg}"
    );

    // another card's manifest does not accept it either
    let full = card_named(FULL);
    std::fs::copy(path_for(&real_model(&full)), path_for(&model)).unwrap();
    let msg = load(&card).unwrap_err().to_string();
    assert!(
        msg.contains("ssd-mobilenet-v2-coco") && msg.contains("another card's model"),
        "{msg}"
    );

    // and a card whose references changed needs the model accepted again
    std::fs::remove_file(path_for(&model)).unwrap();
    let intact = edited(dir.path(), &card.file, |b| ulps_moved(b));
    conformance::accept(rt, &card, &intact, &footage(), "test converter").unwrap();
    let text = std::fs::read_to_string(&card.path)
        .unwrap()
        .replace("box_tolerance = 0.01", "box_tolerance = 0.02");
    std::fs::write(&card.path, text).unwrap();
    let changed = ModelCard::load(&card.path).unwrap();
    let msg = load(&changed).unwrap_err().to_string();
    assert!(msg.contains("other conformance references"), "{msg}");
}

#[test]
fn a_model_that_does_not_conform_gets_no_manifest() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let card = card_in(dir.path(), CUT);
    let model = edited(dir.path(), &card.file, conv_scaled(30, 2.0));
    conformance_error(conformance::accept(rt, &card, &model, &footage(), "x"));
    assert!(!path_for(&model).exists());
    assert!(matches!(
        load(&card).unwrap_err(),
        Error::ModelUnaccepted { .. }
    ));
}

#[test]
fn the_cli_checks_and_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let card = card_in(dir.path(), CUT);
    let good = edited(dir.path(), &card.file, |b| ulps_moved(b));
    let bad = edited(dir.path(), "bad.onnx", conv_scaled(30, 2.0));
    let out = common::bin()
        .args(["model", "check"])
        .arg(&card.path)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not conform") && err.contains("vtest.avi#0"),
        "{err}"
    );

    let out = common::bin()
        .args(["model", "accept", "--converter", "tf2onnx test"])
        .arg(&card.path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("conforms") && text.contains("accepted"),
        "{text}"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path_for(&good)).unwrap()).unwrap();
    assert_eq!(m["converter"], "tf2onnx test");
    assert_eq!(
        m["card_sha256"],
        common::onnx::sha256_hex(&std::fs::read(&card.path).unwrap())
    );
    // `detect` with the card now runs
    let out = common::bin()
        .args(["detect", "--format", "json", "--model"])
        .arg(&card.path)
        .arg(common::footage("messi5.jpg"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"person\""));
}

#[test]
fn recorded_references_reproduce_the_card() {
    // what `ocellus model record` writes for the accepted model is what the card holds, within
    // its own tolerances: the card's facts are those of this model, not of one machine's bytes
    let rt = common::runtime();
    let card = card_named(CUT);
    let conf = card.conformance.clone().unwrap();
    let inputs: Vec<String> = conf.case.iter().map(|c| c.input.clone()).collect();
    let again =
        conformance::record(rt, &card, &real_model(&card), &footage(), &inputs, &conf).unwrap();
    for (a, b) in again.case.iter().zip(&conf.case) {
        assert_eq!(a.input, b.input);
        assert_eq!(a.detections.len(), b.detections.len(), "{}", a.input);
        for (x, y) in a.detections.iter().zip(&b.detections) {
            assert_eq!(x.label, y.label);
            assert!(
                (x.score - y.score).abs() <= conf.score_tolerance,
                "{x:?} {y:?}"
            );
        }
    }
}
