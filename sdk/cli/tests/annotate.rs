//! `ocellus annotate` on real footage (vtest.avi, ffmpeg, the real INT8 detector): the files it
//! writes play, ffprobe confirms their frame count and size, and people are pixelated unless
//! `--no-blur` is given (checked where the run's own tracks say the people are). With
//! `OCELLUS_DOCS_SHOTS=1` the last frame goes to `docs/img/annotate.jpg` for docs/setup.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const FRAMES: u64 = 40;
const W: usize = 768;
const H: usize = 576;

fn write_config(dir: &Path) -> PathBuf {
    let cfg = format!(
        r#"
[device]
id = "annotate-cam"

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

[[rules.zone]]
name = "crossing"
polygon = [[0.25, 0.35], [0.75, 0.35], [0.75, 0.7], [0.25, 0.7]]

[mqtt]
url = "mqtt://127.0.0.1:1"

[queue]
dir = "{queue}"
"#,
        queue = dir.join("queue").display(),
        video = common::footage("vtest.avi").display(),
        card = common::card_path("ssd-mobilenet-v2-coco-person-int8.toml").display(),
    );
    let path = dir.join("annotate.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn annotate(cfg: &Path, out: &Path, frames: u64, extra: &[&str]) -> String {
    let o = common::bin()
        .args(["annotate", "--frames", &frames.to_string(), "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    stderr
}

/// (codec, width, height, frames) as ffprobe counts them by decoding.
fn probe(path: &Path) -> (String, usize, usize, u64) {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let f: Vec<&str> = text.trim().split(',').collect();
    (
        f[0].to_owned(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

/// Frame `n` (from 0) of a video as packed RGB.
fn frame(path: &Path, n: u64) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-vf", &format!("select=eq(n\\,{n})"), "-frames:v", "1"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert_eq!(
        o.stdout.len(),
        W * H * 3,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Mean absolute difference of horizontally neighbouring pixels in `[x0, x1) × [y0, y1)`:
/// detail, which pixelation takes away.
fn detail(rgb: &[u8], (x0, y0, x1, y1): (usize, usize, usize, usize)) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in y0..y1 {
        for x in x0..x1.saturating_sub(1) {
            for c in 0..3 {
                let a = rgb[(y * W + x) * 3 + c];
                let b = rgb[(y * W + x + 1) * 3 + c];
                sum += u64::from(a.abs_diff(b));
                n += 1;
            }
        }
    }
    sum as f64 / n.max(1) as f64
}

#[test]
fn annotate_writes_playable_files_with_people_pixelated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let mp4 = dir.path().join("run.mp4");
    let stderr = annotate(&cfg, &mp4, FRAMES, &[]);
    assert!(stderr.contains(&format!("({FRAMES} frames)")), "{stderr}");
    assert!(stderr.contains("walkway a>b"), "{stderr}");
    assert_eq!(probe(&mp4), ("h264".into(), W, H, FRAMES));
    let plain = dir.path().join("plain.mp4");
    annotate(&cfg, &plain, FRAMES, &["--no-blur"]);
    assert_eq!(probe(&plain).3, FRAMES);
    let gif = dir.path().join("run.gif");
    annotate(&cfg, &gif, 12, &[]);
    assert_eq!(probe(&gif), ("gif".into(), W, H, 12));
    // no partial files are left behind
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");

    // where are the people in the last frame? the same pipeline's tracks say
    let tracks = dir.path().join("tracks.txt");
    let o = common::bin()
        .args([
            "run",
            "--quiet",
            "--frames",
            &FRAMES.to_string(),
            "--config",
        ])
        .arg(&cfg)
        .arg("--tracks")
        .arg(&tracks)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    let text = std::fs::read_to_string(&tracks).unwrap();
    let boxes: Vec<(usize, usize, usize, usize)> = text
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|c| c[0] == FRAMES.to_string())
        .map(|c| {
            let v: Vec<f64> = c[2..6].iter().map(|s| s.parse().unwrap()).collect();
            // the inner part of the box: its outline and id label are drawn on the edge
            let (x, y, w, h) = (v[0], v[1], v[2], v[3]);
            (
                (x + 0.25 * w).max(0.0) as usize,
                (y + 0.25 * h).max(0.0) as usize,
                ((x + 0.75 * w) as usize).min(W),
                ((y + 0.75 * h) as usize).min(H),
            )
        })
        .filter(|b| b.2 > b.0 + 4 && b.3 > b.1 + 4)
        .collect();
    assert!(boxes.len() >= 3, "people in the last frame: {text}");
    let (blurred, clear) = (frame(&mp4, FRAMES - 1), frame(&plain, FRAMES - 1));
    let hidden: f64 = boxes.iter().map(|b| detail(&blurred, *b)).sum();
    let shown: f64 = boxes.iter().map(|b| detail(&clear, *b)).sum();
    assert!(
        hidden < 0.5 * shown,
        "people must be pixelated: detail {hidden:.1} blurred vs {shown:.1} without"
    );
    if std::env::var_os("OCELLUS_DOCS_SHOTS").is_some() {
        let docs = common::repo_root().join("docs/img");
        std::fs::create_dir_all(&docs).unwrap();
        let img = image::RgbImage::from_raw(W as u32, H as u32, blurred.clone()).unwrap();
        let out = std::fs::File::create(docs.join("annotate.jpg")).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(out, 80)
            .encode_image(&img)
            .unwrap();
    }
    // the grass at the bottom, where nobody walks, is the same in both
    let grass = (40, 500, 300, 570);
    let (a, b) = (detail(&blurred, grass), detail(&clear, grass));
    assert!((a - b).abs() < 0.15 * b.max(1.0), "grass {a:.2} vs {b:.2}");
}

#[test]
fn a_wrong_output_name_or_config_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let o = common::bin()
        .args(["annotate", "--config"])
        .arg(&cfg)
        .args(["--out", "run.avi"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--out") && stderr.contains(".mp4 or .gif"),
        "{stderr}"
    );
    let o = common::bin()
        .args(["annotate", "--config"])
        .arg(dir.path().join("absent.toml"))
        .arg("--out")
        .arg(dir.path().join("x.mp4"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("absent.toml"), "{stderr}");
    assert!(!dir.path().join("x.mp4").exists());
}
