//! `ocellus setup` in a real browser: headless Chromium (Debian's `chromium`) driven by npm's
//! `playwright-core`, both installed by `models/provision.sh`. The page runs against a real
//! pipeline (a vtest.avi frame as a looped image source, the real INT8 detector):
//!
//! * the overlay is drawn where the config says (the handles' positions, and the screenshot's
//!   pixels along the line);
//! * a save the config check refuses shows its error next to the rule and writes nothing;
//! * a drag and a rename are saved into the TOML with its comments kept, and it still validates;
//! * the served still has every detected person pixelated (a detail test, as the snapshot's);
//! * on a non-loopback bind nothing is served without the printed token.
//!
//! The screenshots land in `target/setup-shots/`; with `OCELLUS_DOCS_SHOTS=1` also in
//! `docs/img/` (as JPEG) for docs/setup.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CONFIG: &str = r#"# the shop's entrance camera: counting people through the walkway
[device]
id = "setup-cam"   # shown in every event

[source]
kind = "images"
path = "{frames}/*.png"

[model]
card = "{card}"
labels = ["person"]
# the whole frame, as `ocellus detect` (the test's reference for where people are) runs it
tiles = "1x1"

[[rules.line]]
# the walkway, counted both ways
name = "walkway"
a = [0.75, 0.3]   # top end
b = [0.75, 0.75]

[[rules.zone]]
name = "crossing"
polygon = [[0.25, 0.35], [0.55, 0.35], [0.55, 0.7], [0.25, 0.7]]
dwell_s = 5   # waiting

[mqtt]
url = "mqtt://127.0.0.1:1"

[queue]
dir = "{queue}"
"#;

/// The node_modules directory provision.sh fills (the same cache rules as the models).
fn node_modules() -> PathBuf {
    let cache = std::env::var_os("OCELLUS_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("ocellus")))
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/ocellus"));
    let dir = cache.join("node/node_modules");
    assert!(
        dir.join("playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "no playwright-core in {} or no /usr/bin/chromium: run models/provision.sh",
        dir.display()
    );
    dir
}

/// A temp dir with one vtest.avi frame as an image source, and the config.
fn scene(dir: &Path) -> (PathBuf, PathBuf) {
    let frames = dir.join("frames");
    std::fs::create_dir(&frames).unwrap();
    let png = frames.join("frame.png");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(common::footage("vtest.avi"))
        .args(["-vf", "select=eq(n\\,80)", "-frames:v", "1"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = CONFIG
        .replace("{frames}", &frames.display().to_string())
        .replace(
            "{card}",
            &common::card_path("ssd-mobilenet-v2-coco-person-int8.toml")
                .display()
                .to_string(),
        )
        .replace("{queue}", &dir.join("queue").display().to_string());
    let path = dir.join("setup.toml");
    std::fs::write(&path, cfg).unwrap();
    (path, png)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server, stopped (SIGKILL is enough: it holds nothing) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `ocellus setup` and wait for its "setup page: URL" line; (server, URL).
fn start(cfg: &Path, listen: &str) -> (Server, String) {
    let mut child = common::bin()
        .args(["setup", "--config"])
        .arg(cfg)
        .args(["--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("setup page: ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("ocellus setup printed no URL");
    (server, url)
}

/// A plain HTTP/1.1 GET on loopback: (status, headers, body).
fn get(port: u16, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

/// Wait until the pipeline has served a still.
fn still(port: u16, extra: &str) -> image::RgbImage {
    for _ in 0..600 {
        let (status, _, body) = get(port, "/api/frame.jpg", extra);
        if status == 200 {
            return image::load_from_memory(&body).unwrap().to_rgb8();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no still within 60 s");
}

/// Mean absolute difference of horizontal neighbours inside `b` (pixels): the detail that
/// pixelation removes.
fn detail(img: &image::RgbImage, b: [u32; 4]) -> f64 {
    let (mut sum, mut n) = (0u64, 0u64);
    for y in b[1]..b[3] {
        for x in b[0]..b[2].saturating_sub(1) {
            let (p, q) = (img.get_pixel(x, y), img.get_pixel(x + 1, y));
            for c in 0..3 {
                sum += u64::from(p[c].abs_diff(q[c]));
                n += 1;
            }
        }
    }
    sum as f64 / n.max(1) as f64
}

/// The people `ocellus detect` finds in `png` with the same card, in pixels, inner halves.
fn people(png: &Path) -> Vec<[u32; 4]> {
    let out = common::bin()
        .args(["detect", "--format", "json", "--model"])
        .arg(common::card_path("ssd-mobilenet-v2-coco-person-int8.toml"))
        .arg(png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (w, h) = (v["width"].as_f64().unwrap(), v["height"].as_f64().unwrap());
    v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b: Vec<f64> = d["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
            [
                ((b[0] + 0.25 * bw) * w) as u32,
                ((b[1] + 0.25 * bh) * h) as u32,
                ((b[2] - 0.25 * bw) * w) as u32,
                ((b[3] - 0.25 * bh) * h) as u32,
            ]
        })
        .filter(|b| b[2] > b[0] + 3 && b[3] > b[1] + 3)
        .collect()
}

#[test]
fn the_setup_page_draws_edits_and_saves_the_rules_with_people_pixelated() {
    let modules = node_modules();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, png) = scene(dir.path());
    let port = free_port();
    let (_server, url) = start(&cfg, &format!("127.0.0.1:{port}"));

    // privacy: every person the detector finds is pixelated in the served still
    let served = still(port, "");
    let original = image::open(&png).unwrap().to_rgb8();
    assert_eq!(served.dimensions(), original.dimensions());
    let boxes = people(&png);
    assert!(boxes.len() >= 3, "people in frame 80: {boxes:?}");
    let hidden: f64 = boxes.iter().map(|b| detail(&served, *b)).sum();
    let shown: f64 = boxes.iter().map(|b| detail(&original, *b)).sum();
    assert!(
        hidden < 0.4 * shown,
        "people must be pixelated: detail {hidden:.1} served vs {shown:.1} in the frame"
    );
    let grass = [40, 500, 300, 570];
    let (a, b) = (detail(&served, grass), detail(&original, grass));
    assert!(
        a > 0.5 * b,
        "the rest of the view keeps its detail: {a:.2} vs {b:.2}"
    );

    // the browser
    let shots = common::repo_root().join("target/setup-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(common::repo_root().join("sdk/cli/tests/browser/setup.mjs"))
        .arg(&url)
        .arg(&shots)
        .arg(r#"{"a": [0.75, 0.3], "b": [0.75, 0.75]}"#)
        .env("OCELLUS_NODE_MODULES", &modules)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser script failed: {stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("{r:#}");
    let near = |p: &serde_json::Value, q: &serde_json::Value, tol: f64| {
        let d = |i: usize| p[i].as_f64().unwrap() - q[i].as_f64().unwrap();
        d(0).hypot(d(1)) <= tol
    };
    // the overlay is where the config says, on an image shown at its own aspect ratio
    assert_eq!(r["natural"], serde_json::json!([768, 576]));
    assert!(near(&r["handleA"], &r["expectA"], 2.0), "{r}");
    assert!(near(&r["handleB"], &r["expectB"], 2.0), "{r}");
    let cyan = |c: &serde_json::Value| {
        let c: Vec<i64> = c
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        (c[0] - 0x46).abs() < 40 && (c[1] - 0xf0).abs() < 40 && (c[2] - 0xf0).abs() < 40
    };
    let colours = r["lineColours"].as_array().unwrap();
    assert!(
        colours[..3].iter().all(cyan),
        "the line is drawn along the config's line: {colours:?}"
    );
    assert!(!cyan(&colours[3]), "and not beside it: {colours:?}");

    // the refused save: its error next to the rule, the file untouched
    let refused = r["refusedError"].as_str().unwrap();
    assert!(refused.contains("rules.line[0].name"), "{r}");
    assert_eq!(r["refusedGeneral"], "", "{r}");

    // the saved edit
    assert!(r["status"].as_str().unwrap().starts_with("Saved to"), "{r}");
    assert_eq!(r["nameAfter"], "front-door");
    assert!(r["countText"].as_str().unwrap().contains("b>a"), "{r}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    for kept in [
        "# the shop's entrance camera: counting people through the walkway",
        "id = \"setup-cam\"   # shown in every event",
        "# the walkway, counted both ways",
        "# top end",
        "dwell_s = 5   # waiting",
    ] {
        assert!(text.contains(kept), "lost {kept:?}:\n{text}");
    }
    let saved = ocellus::Config::load(&cfg).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let line = &saved.rules.lines[0];
    assert_eq!(line.name, "front-door");
    let want = r["dragTo"].as_array().unwrap();
    for (got, want) in line.a.iter().zip(want) {
        assert!(
            (f64::from(*got) - want.as_f64().unwrap()).abs() < 0.01,
            "{:?} vs {want:?}",
            line.a
        );
    }
    assert_eq!(line.b, [0.75, 0.75]);
    assert_eq!(saved.rules.zones.len(), 1);
    // the running pipeline counts with the saved rules
    let (_, _, body) = get(port, "/api/counts", "");
    let counts: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(counts["lines"][0][0], "front-door", "{counts}");

    // another web page in the pilot's browser cannot save: not as a simple form post, not
    // through a rebinding name, not from another origin
    let before = std::fs::read_to_string(&cfg).unwrap();
    let evil = r#"{"lines":[],"zones":[]}"#;
    for (headers, want) in [
        ("Host: 127.0.0.1\r\nContent-Type: text/plain\r\n", 415),
        (
            "Host: evil.example\r\nContent-Type: application/json\r\n",
            403,
        ),
        (
            "Host: 127.0.0.1\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\n",
            403,
        ),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "POST /api/config HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{evil}",
            evil.len()
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {want}")),
            "{headers}: {reply}"
        );
    }
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), before);

    if std::env::var_os("OCELLUS_DOCS_SHOTS").is_some() {
        let docs = common::repo_root().join("docs/img");
        std::fs::create_dir_all(&docs).unwrap();
        // JPEG: a tenth of the PNG's bytes in git
        for name in ["setup", "setup-saved"] {
            let shot = image::open(shots.join(format!("{name}.png")))
                .unwrap()
                .to_rgb8();
            let out = std::fs::File::create(docs.join(format!("{name}.jpg"))).unwrap();
            image::codecs::jpeg::JpegEncoder::new_with_quality(out, 80)
                .encode_image(&shot)
                .unwrap();
        }
    }
}

#[test]
fn a_non_loopback_bind_serves_nothing_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = scene(dir.path());
    let port = free_port();
    let (_server, url) = start(&cfg, &format!("0.0.0.0:{port}"));
    let token = url.split("token=").nth(1).expect("a token in the URL");
    assert_eq!(token.len(), 32, "{url}");
    for path in ["/", "/api/config", "/api/counts", "/api/frame.jpg"] {
        let (status, _, body) = get(port, path, "");
        assert_eq!(status, 401, "{path}");
        assert!(String::from_utf8_lossy(&body).contains("token"), "{path}");
        let (status, ..) = get(port, &format!("{path}?token={}", "0".repeat(32)), "");
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, ..) = get(port, path, "Authorization: Bearer nope\r\n");
        assert_eq!(status, 401, "{path} with a wrong bearer");
    }
    let (status, head, body) = get(port, &format!("/?token={token}"), "");
    assert_eq!(status, 200, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("ocellus setup"));
    let (status, ..) = get(
        port,
        "/api/config",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(status, 200);
    // the frame too, once there is one
    still(port, &format!("Authorization: Bearer {token}\r\n"));
    // a POST without it changes nothing
    let before = std::fs::read_to_string(&cfg).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = r#"{"lines":[],"zones":[]}"#;
    write!(
        s,
        "POST /api/config HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), before);
}
