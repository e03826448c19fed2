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

/// A copy of the SSD card whose model is the first third of the real one, beside the manifest
/// that accepted the real one (or, with `record_truncated_sha`, one edited to accept the cut).
fn truncated_model_card(dir: &Path, record_truncated_sha: bool) -> std::path::PathBuf {
    let card_text =
        std::fs::read_to_string(common::card_path("ssd-mobilenet-v2-coco.toml")).unwrap();
    let card = ocellus::card::ModelCard::parse(&card_text, "x".into(), None).unwrap();
    let real = card.resolve_file().unwrap();
    let bytes = std::fs::read(&real).unwrap();
    let cut = &bytes[..bytes.len() / 3];
    let model = dir.join("cut.onnx");
    std::fs::write(&model, cut).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ocellus::manifest::path_for(&real)).unwrap())
            .unwrap();
    if record_truncated_sha {
        manifest["sha256"] = common::onnx::sha256_hex(cut).into();
    }
    std::fs::write(
        ocellus::manifest::path_for(&model),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let text = card_text.replace(&format!("file = \"{}\"", card.file), "file = \"cut.onnx\"");
    let p = dir.join("cut.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_truncated_model_is_refused_by_checksum_and_by_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let img = vtest0_png(dir.path());
    // the sha256 its manifest recorded catches it first
    let card = truncated_model_card(dir.path(), false);
    let (code, _, err) = run(common::bin()
        .args(["detect", "--model"])
        .arg(&card)
        .arg(&img));
    assert_eq!(code, 2);
    assert!(err.contains("sha256") && err.contains("cut.onnx"), "{err}");
    // with a manifest that matches the truncated file (or --no-verify), ONNX Runtime refuses it
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

/// The card the start-up and memory figures are about: the cut SSD, post-processed natively.
const SUMMARY_CARD: &str = "ssd-mobilenet-v2-coco-cut";

#[test]
fn run_summary_has_start_up_and_memory_in_json_and_text() {
    let broker = common::broker::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[device]
id = "cam-summary"

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

[mqtt]
url = "{url}"
topic_prefix = "summary"

[queue]
dir = "{queue}"
"#,
            video = common::footage("vtest.avi").display(),
            card = common::card_path(&format!("{SUMMARY_CARD}.toml")).display(),
            url = broker.url(),
            queue = dir.path().join("queue").display(),
        ),
    )
    .unwrap();
    let summary = dir.path().join("summary.json");
    let (code, _, err) = run(common::bin()
        .args(["run", "--quiet", "--frames", "20", "--config"])
        .arg(&config)
        .arg("--summary")
        .arg(&summary));
    assert_eq!(code, 0, "{err}\nmosquitto:\n{}", broker.log());

    let text = std::fs::read_to_string(&summary).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let num = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("`{k}` is not a number in {text}"))
    };
    assert_eq!(v["schema"], "ocellus.run-summary/1");
    assert_eq!(v["model"], SUMMARY_CARD);
    assert_eq!(v["frames_processed"], 20, "{text}");
    assert!(num("fps") > 0.0 && num("steady_fps") > 0.0, "{text}");
    for k in ["frames_dropped", "frames_skipped", "frames_failed"] {
        assert_eq!(v[k], 0, "{k}: {text}");
    }
    // the model file it names, and its size
    let model_file = std::path::PathBuf::from(v["model_file"].as_str().unwrap());
    let model_mib = std::fs::metadata(&model_file).unwrap().len() as f64 / (1024.0 * 1024.0);
    assert!((num("model_file_mib") - model_mib).abs() < 0.01, "{text}");
    // start-up: every part positive, the parts inside the whole, the first inference last
    let (first, ready) = (num("first_inference_ms"), num("startup_ms"));
    let (runtime, model, source) = (
        num("runtime_load_ms"),
        num("model_load_ms"),
        num("source_open_ms"),
    );
    assert!(runtime > 0.0 && model > 0.0 && source > 0.0, "{text}");
    assert!(runtime + model + source <= ready, "{text}");
    assert!(ready < first, "{text}");
    assert!(
        num("first_frame_ms") > 0.0 && num("first_frame_ms") < first,
        "{text}"
    );
    assert!(first < 600_000.0, "{text}");
    // memory: the model is loaded, so the peak is above its file; and it is not absurd
    let rss = num("rss_peak_mib");
    assert!(rss > model_mib && rss < 16_384.0, "{text}");
    assert!((num("rss_beyond_model_mib") - (rss - model_mib)).abs() < 0.01);
    // events and delivery
    let by_type: u64 = v["events"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(Some(by_type), v["event_count"].as_u64(), "{text}");
    assert_eq!(v["publish"]["flushed"], true, "{text}");
    assert_eq!(v["publish"]["acked"], v["publish"]["accepted"], "{text}");
    if by_type > 0 {
        assert!(num("frame_to_event_ms_p50") <= num("frame_to_event_ms_p99"));
    }

    // the same figures in the text summary on stderr
    let line = |prefix: &str| {
        err.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{err}"))
            .to_owned()
    };
    let startup = line("start-up: ");
    assert!(
        startup.contains("ms from process start to the first inference (model ")
            && startup.contains(" ms, source "),
        "{startup}"
    );
    let memory = line("memory: ");
    assert!(
        memory.contains("peak RSS ")
            && memory.contains("MiB (model file ")
            && memory.contains("MiB beyond it)"),
        "{memory}"
    );
}

#[test]
fn run_summary_to_an_unwritable_path_fails_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nid = \"cam\"\n\n[source]\nkind = \"synthetic\"\nframes = 2\n\n[model]\ncard = \"{}\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n\n[queue]\ndir = \"{}\"\n",
            common::card_path("ssd-mobilenet-v2-coco.toml").display(),
            dir.path().join("queue").display()
        ),
    )
    .unwrap();
    let bad = dir.path().join("no-such-dir").join("summary.json");
    let (code, _, err) = run(common::bin()
        .args(["run", "--quiet", "--config"])
        .arg(&config)
        .arg("--summary")
        .arg(&bad));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-such-dir"), "{err}");
    assert!(!err.contains("---- summary"), "{err}");
}

/// The cut SSD's card with `edit` applied, written to `dir` (its model still resolves to the
/// provisioned, accepted file).
fn edited_cut_card(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(common::card_path("ssd-mobilenet-v2-coco-cut.toml")).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed the card");
    let p = dir.join(name);
    std::fs::write(&p, edited).unwrap();
    p
}

#[test]
fn a_card_whose_outputs_do_not_fit_the_model_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let img = vtest0_png(dir.path());
    // the two outputs swapped
    let swapped = edited_cut_card(dir.path(), "swapped.toml", |t| {
        t.replace(
            "box_encodings = \"Squeeze:0\"",
            "box_encodings = \"concat_1:0\"",
        )
        .replace(
            "class_logits = \"concat_1:0\"",
            "class_logits = \"Squeeze:0\"",
        )
    });
    // an anchor layout with 1 947 anchors for a model with 1 917
    let anchors = edited_cut_card(dir.path(), "anchors.toml", |t| {
        t.replace(
            "feature_maps = [19, 10, 5, 3, 2, 1]",
            "feature_maps = [19, 10, 5, 3, 3, 1]",
        )
    });
    for card in [&swapped, &anchors] {
        let (code, out, err) = run(common::bin()
            .args(["detect", "--model"])
            .arg(card)
            .arg(&img));
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains(&card.display().to_string()),
            "names the card: {err}"
        );
        assert!(
            err.contains("`output.box_encodings`") || err.contains("`output.class_logits`"),
            "names the key: {err}"
        );
        assert!(err.contains("test inference"), "{err}");
        assert!(out.is_empty(), "no detections printed: {out}");
    }
}

#[test]
fn passwords_never_appear_in_a_message() {
    const PASSWORD: &str = "PW-31415926535";
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "[device]\nid = \"cam\"\n[model]\ncard = \"{}\"\n[source]\nkind = \"video\"\n{body}",
                common::card_path("ssd-mobilenet-v2-coco-cut.toml").display()
            ),
        )
        .unwrap();
        p
    };
    let video = common::footage("vtest.avi");
    let cases = [
        // a password in the broker URL
        write(
            "url.toml",
            &format!(
                "path = \"{}\"\n[mqtt]\nurl = \"mqtt://cam:{PASSWORD}@127.0.0.1:1883\"\n",
                video.display()
            ),
        ),
        // an unquoted password: a type error must not echo it
        write(
            "type.toml",
            &format!(
                "path = \"{}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"cam\"\npassword = {}\n",
                video.display(),
                &PASSWORD[3..]
            ),
        ),
    ];
    for cfg in &cases {
        for cmd in [&["check-config"][..], &["run", "--config"][..]] {
            let (code, out, err) = run(common::bin().args(cmd).arg(cfg));
            assert_eq!(code, 2, "{cfg:?} {cmd:?}: {out}{err}");
            assert!(
                !out.contains(&PASSWORD[3..]) && !err.contains(&PASSWORD[3..]),
                "{cfg:?} {cmd:?} quoted the password: {out}{err}"
            );
            assert!(err.contains("mqtt."), "names the key: {err}");
        }
    }
    // a camera URL with a password, unreachable: the error names it without the password
    let rtsp = write(
        "rtsp.toml",
        &format!(
            "path = \"rtsp://admin:{PASSWORD}@127.0.0.1:1/stream1\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n"
        ),
    );
    let (code, out, err) = run(common::bin()
        .args(["run", "--frames", "1", "--config"])
        .arg(&rtsp));
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "{out}{err}"
    );
    assert!(err.contains("admin:***@"), "{err}");
    // and through `demo --broker`
    let (code, out, err) = run(common::bin().args([
        "demo",
        "--frames",
        "1",
        "--broker",
        &format!("mqtt://cam:{PASSWORD}@127.0.0.1:1"),
    ]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "{out}{err}"
    );
}
