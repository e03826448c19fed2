//! The SDK keeps its shape: crates by layer, with nothing heavy below where it is needed, no
//! cycles, no imports back up the layers, no file or function too long to read
//! (`.ci/structure.py` measures; docs/architecture.md draws the layers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

/// The crates `cargo tree` finds under `package` (normal dependencies, this platform).
fn tree(package: &str, features: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .current_dir(common::repo_root())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .args(features)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn has(tree: &str, krate: &str) -> bool {
    tree.lines().any(|l| l.split(' ').next() == Some(krate))
}

#[test]
fn the_core_pulls_in_no_inference_runtime_mqtt_or_tls() {
    let core = tree("ocellus-core", &[]);
    assert!(has(&core, "ocellus-core") && has(&core, "serde"), "{core}");
    for heavy in [
        "ort",
        "ndarray",
        "image",
        "rumqttc",
        "rustls",
        "ring",
        "ocellus-delivery",
    ] {
        assert!(
            !has(&core, heavy),
            "ocellus-core depends on {heavy}:\n{core}"
        );
    }
    let delivery = tree("ocellus-delivery", &[]);
    assert!(has(&delivery, "rumqttc"), "{delivery}");
    for heavy in ["ort", "image", "ocellus"] {
        assert!(
            !has(&delivery, heavy),
            "ocellus-delivery depends on {heavy}"
        );
    }
}

#[test]
fn the_library_carries_none_of_the_programs_dependencies() {
    let lib = tree("ocellus", &["--all-features"]);
    assert!(has(&lib, "ort") && has(&lib, "ocellus-delivery"), "{lib}");
    for cli in ["clap", "signal-hook", "tracing-subscriber", "rumqttd"] {
        assert!(!has(&lib, cli), "the ocellus library depends on {cli}");
    }
    let program = tree("ocellus-cli", &[]);
    assert!(
        has(&program, "clap") && has(&program, "rumqttd"),
        "{program}"
    );
}

#[test]
fn no_cycles_no_imports_back_up_no_overlong_files_or_functions() {
    let out = Command::new("python3")
        .current_dir(common::repo_root())
        .args([".ci/structure.py", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["cycles"], serde_json::json!([]), "{report:#}");
    assert!(
        report["back_imports"].as_array().unwrap().len() <= 2,
        "{report:#}"
    );
    assert_eq!(report["broken"], serde_json::json!([]), "{report:#}");
    assert!(out.status.success());
}
