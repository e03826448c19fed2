//! The `ocellus` binary: JSON output, annotation, and every documented error path (missing or old
//! ONNX Runtime, corrupt image, truncated model), each a clear message and an exit code, no panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Output;

fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    assert!(!err.contains("panicked"), "the binary panicked: {err}");
    (status.code().unwrap_or(-1), out, err)
}

fn vtest0_png(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("vtest0.png");
    let f = common::vtest_frame(0);
    image::save_buffer(&p, f.data(), f.width(), f.height(), image::ColorType::Rgb8).unwrap();
    p
}

#[test]
fn detect_json_has_exactly_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let img = vtest0_png(dir.path());
    let (code, out, err) = run(common::bin()
        .args(["detect", "--format", "json", "--labels", "person"])
        .arg(&img));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1);
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["detections", "height", "image", "width"]);
    assert_eq!(v["image"], img.display().to_string());
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(768), Some(576))
    );
    let dets = v["detections"].as_array().unwrap();
    assert_eq!(dets.len(), 3);
    for d in dets {
        let mut k: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        assert_eq!(k, ["bbox", "class_id", "label", "score"]);
        assert_eq!(d["label"], "person");
        assert_eq!(d["class_id"], 1);
        let b: Vec<f64> = d["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(
            b[0] < b[2] && b[1] < b[3] && b.iter().all(|x| (0.0..=1.0).contains(x)),
            "{b:?}"
        );
    }
}

#[test]
fn corrupt_image_gets_an_error_line_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let good = vtest0_png(dir.path());
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let garbage = dir.path().join("garbage.jpg");
    std::fs::write(&garbage, b"this is not a jpeg").unwrap();
    let missing = dir.path().join("missing.png");
    let ann = dir.path().join("annotated");
    let (code, out, err) = run(common::bin()
        .args(["detect", "--format", "json", "--annotate"])
        .arg(&ann)
        .args([&truncated, &good, &garbage, &missing]));
    assert_eq!(code, 1, "partial failure exits 1: {err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "one line per input: {out}");
    for (i, bad) in [(0, &truncated), (2, &garbage), (3, &missing)] {
        assert_eq!(lines[i]["image"], bad.display().to_string());
        let e = lines[i]["error"].as_str().unwrap();
        assert!(e.contains(&bad.display().to_string()), "{e}");
    }
    assert!(lines[1]["detections"].as_array().unwrap().len() >= 3);
    assert_eq!(err.matches("error: ").count(), 3, "{err}");
    assert!(
        err.contains("3 of 4 image(s) could not be processed"),
        "{err}"
    );
    // the good image was annotated: same size, and pixels changed where boxes were drawn
    let drawn = image::open(ann.join("vtest0.png")).unwrap().into_rgb8();
    assert_eq!(drawn.dimensions(), (768, 576));
    let original = image::open(&good).unwrap().into_rgb8();
    let changed = drawn
        .pixels()
        .zip(original.pixels())
        .filter(|(a, b)| a != b)
        .count();
    assert!(changed > 500, "{changed} pixels changed");
}

#[test]
fn missing_onnxruntime_says_where_it_looked_and_how_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let img = vtest0_png(dir.path());
    // ORT_DYLIB_PATH set to a missing file
    let (code, _, err) = run(common::bin()
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1")
        .arg("detect")
        .arg(&img));
    assert_eq!(code, 2);
    assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
    assert!(
        err.contains("/nonexistent/libonnxruntime.so.1.31.1"),
        "{err}"
    );
    assert!(err.contains("models/provision.sh"), "{err}");
    // nothing set and an empty cache
    let (code, _, err) = run(common::bin()
        .env_remove("ORT_DYLIB_PATH")
        .env("OCELLUS_CACHE", dir.path())
        .arg("detect")
        .arg(&img));
    assert_eq!(code, 2);
    assert!(err.contains("provisioning cache"), "{err}");
    assert!(
        err.contains(&dir.path().join("onnxruntime").display().to_string()),
        "{err}"
    );
    // --onnxruntime wins over the environment
    let (code, _, err) = run(common::bin()
        .env("ORT_DYLIB_PATH", "/also/missing.so")
        .args(["--onnxruntime", "/explicit/missing.so", "detect"])
        .arg(&img));
    assert_eq!(code, 2);
    assert!(
        err.contains("/explicit/missing.so") && !err.contains("/also/missing.so"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_onnxruntime_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = vtest0_png(dir.path());
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not an ELF file").unwrap();
    let (code, _, err) = run(common::bin()
        .env("ORT_DYLIB_PATH", &fake)
        .arg("detect")
        .arg(&img));
    assert_eq!(code, 2);
    assert!(err.contains("not a usable ONNX Runtime library"), "{err}");
    assert!(err.contains(&fake.display().to_string()), "{err}");
}

#[test]
fn an_old_onnxruntime_is_refused_with_its_version() {
    // A stand-in library that exports OrtGetApiBase and reports version 1.22.0, as an old
    // onnxruntime would; built with the system C compiler.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("old_ort.c");
    std::fs::write(
        &src,
        r#"
#include <stddef.h>
#include <stdint.h>
typedef struct { const void *(*GetApi)(uint32_t); const char *(*GetVersionString)(void); } OrtApiBase;
static const void *get_api(uint32_t v) { (void)v; return NULL; }
static const char *version(void) { return "1.22.0"; }
static const OrtApiBase base = { get_api, version };
const OrtApiBase *OrtGetApiBase(void) { return &base; }
"#,
    )
    .unwrap();
    let lib = dir.path().join("libonnxruntime.so.1.22.0");
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success(), "cc failed");
    let img = vtest0_png(dir.path());
    let (code, _, err) = run(common::bin()
        .env("ORT_DYLIB_PATH", &lib)
        .arg("detect")
        .arg(&img));
    assert_eq!(code, 2);
    assert!(err.contains("1.22.0"), "{err}");
    assert!(err.contains("1.31"), "{err}");
    assert!(err.contains("models/provision.sh"), "{err}");
}

/// A copy of the SSD card whose model is the first third of the real one.
fn truncated_model_card(dir: &Path, record_truncated_sha: bool) -> std::path::PathBuf {
    let card_text =
        std::fs::read_to_string(common::card_path("ssd-mobilenet-v2-coco.toml")).unwrap();
    let card = ocellus::card::ModelCard::parse(&card_text, "x".into(), None).unwrap();
    let real = card.resolve_file().unwrap();
    let bytes = std::fs::read(&real).unwrap();
    let cut = &bytes[..bytes.len() / 3];
    std::fs::write(dir.join("cut.onnx"), cut).unwrap();
    let mut text = card_text.replace(&format!("file = \"{}\"", card.file), "file = \"cut.onnx\"");
    if record_truncated_sha {
        text = text.replace(
            &format!("sha256 = \"{}\"", card.sha256),
            &format!("sha256 = \"{}\"", common::onnx::sha256_hex(cut)),
        );
    }
    let p = dir.join("cut.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_truncated_model_is_refused_by_checksum_and_by_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let img = vtest0_png(dir.path());
    // the card's checksum catches it first
    let card = truncated_model_card(dir.path(), false);
    let (code, _, err) = run(common::bin()
        .args(["detect", "--model"])
        .arg(&card)
        .arg(&img));
    assert_eq!(code, 2);
    assert!(err.contains("sha256") && err.contains("cut.onnx"), "{err}");
    // with a card that matches the truncated file (or --no-verify), ONNX Runtime refuses it
    let card = truncated_model_card(dir.path(), true);
    let (code, _, err) = run(common::bin()
        .args(["detect", "--model"])
        .arg(&card)
        .arg(&img));
    assert_eq!(code, 2);
    assert!(
        err.contains("ONNX Runtime cannot load model") && err.contains("cut.onnx"),
        "{err}"
    );
}

#[test]
fn a_card_with_an_unknown_key_is_refused_with_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let img = vtest0_png(dir.path());
    let text = std::fs::read_to_string(common::card_path("ssd-mobilenet-v2-coco.toml")).unwrap();
    let card = dir.path().join("bad.toml");
    std::fs::write(
        &card,
        text.replace("[input]\n", "[input]\ncolour = \"bgr\"\n"),
    )
    .unwrap();
    let (code, _, err) = run(common::bin()
        .args(["detect", "--model"])
        .arg(&card)
        .arg(&img));
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml") && err.contains("colour") && err.contains("line"),
        "{err}"
    );
}

#[test]
fn devices_lists_every_v4l2_node_or_says_there_is_none() {
    let mut nodes: Vec<String> = std::fs::read_dir("/dev")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| {
            p.strip_prefix("/dev/video")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    nodes.sort();
    let (code, out, err) = run(common::bin().args(["devices"]));
    assert_eq!(code, 0, "{err}");
    if nodes.is_empty() {
        assert_eq!(out.trim(), "no V4L2 devices (/dev/video*) on this machine");
    } else {
        for n in &nodes {
            assert!(out.contains(&format!("{n}  ")), "{n} missing from:\n{out}");
        }
    }
    let (code, out, err) = run(common::bin().args(["devices", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let listed: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), nodes.len(), "{out}");
}
