//! Helpers shared by the integration tests. These tests use the real parts: the ONNX Runtime
//! library, models and footage that `models/provision.sh` puts in the cache. If they are missing
//! the tests fail and say so; they never skip silently.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod aws;
pub mod broker;
pub mod faults;
pub mod hub;
pub mod onnx;
pub mod tls;

use std::path::PathBuf;

use ocellus::runtime::{Locator, Runtime};

pub fn runtime() -> &'static Runtime {
    Runtime::init(&Locator::from_env(None)).unwrap_or_else(|e| {
        panic!("{e}\n(the integration tests need `models/provision.sh` to have run)")
    })
}

pub fn footage(name: &str) -> PathBuf {
    let p = ocellus::paths::footage_dir().join(name);
    assert!(
        p.is_file(),
        "{} missing: run models/provision.sh",
        p.display()
    );
    p
}

pub fn repo_root() -> PathBuf {
    // sdk/cli -> the repository root
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn card_path(name: &str) -> PathBuf {
    repo_root().join("models").join(name)
}

/// Frame `n` of vtest.avi, decoded by ffmpeg.
pub fn vtest_frame(n: usize) -> ocellus::RgbFrame {
    let mut v = ocellus::source::read_video_frames(&footage("vtest.avi"), n, 1).unwrap();
    assert_eq!(v.len(), 1, "ffmpeg gave no frame {n}");
    v.remove(0)
}

/// A box in pixels, normalised by the image size.
pub fn px_box(b: [f32; 4], w: u32, h: u32) -> [f32; 4] {
    [
        b[0] / w as f32,
        b[1] / h as f32,
        b[2] / w as f32,
        b[3] / h as f32,
    ]
}

pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    ocellus::infer::nms::iou(a, b)
}

/// For each expected box, the best IoU of any detection with that label.
pub fn best_ious(dets: &[ocellus::infer::Detection], label: &str, want: &[[f32; 4]]) -> Vec<f32> {
    want.iter()
        .map(|w| {
            dets.iter()
                .filter(|d| &*d.label == label)
                .map(|d| iou(&d.bbox, w))
                .fold(0.0, f32::max)
        })
        .collect()
}

pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_ocellus"))
}

/// A `line_crossed` event on rule "door" for frame `frame` (direction alternating with the
/// frame), with a fresh id: what the broker and delivery tests publish.
pub fn line_event(device: &std::sync::Arc<str>, frame: u64) -> ocellus::event::Event {
    use ocellus::rules::{Direction, RuleEvent, RuleEventKind};
    let re = RuleEvent {
        kind: RuleEventKind::LineCrossed {
            direction: if frame.is_multiple_of(2) {
                Direction::AToB
            } else {
                Direction::BToA
            },
        },
        rule: std::sync::Arc::from("door"),
        frame,
        track: Some(frame + 1),
        label: Some(std::sync::Arc::from("person")),
        score: Some(0.9),
        bbox: Some([0.1, 0.2, 0.3, 0.4]),
    };
    ocellus::event::Event::from_rule(device, std::time::SystemTime::now(), &re)
}

/// A small tmpfs mounted by the test (root only), unmounted when dropped: a disk that fills up.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount a tmpfs of `kib` KiB. Fails the test with a clear message when it cannot (these
    /// tests need root, as CI and the development machines have).
    pub fn mount(kib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            out.status.success(),
            "mounting a {kib} KiB tmpfs failed (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
