//! Every example in `examples/` runs and does what its header says, with the real model, real
//! footage and a real mosquitto. Cargo builds the examples of this package before its tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::BufRead;
use std::process::{Command, Output, Stdio};

use common::broker::{Mosquitto, Subscriber};

/// `target/<profile>/examples/<name>`, next to this test's own `deps/` directory.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: cargo builds examples with the tests (`cargo test -p ocellus-cli`)",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.current_dir(common::repo_root());
    cmd
}

fn ok(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {:?}\n{stderr}", out.status);
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn detect_image_finds_the_players() {
    let image = common::footage("basketball1.png");
    let out = example("detect_image").arg(&image).output().unwrap();
    let dets = events(&ok(&out, "detect_image"));
    let people = dets.iter().filter(|d| d["label"] == "person").count();
    assert!(people >= 2, "{dets:?}");
    for d in &dets {
        let b: Vec<f64> = serde_json::from_value(d["bbox"].clone()).unwrap();
        assert!(b[0] < b[2] && b[1] < b[3] && b.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    // a missing image is a clear error and exit 2, not a panic
    let out = example("detect_image")
        .arg("/nonexistent.png")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.png"));
}

#[test]
fn run_config_publishes_the_events_of_a_config_file() {
    let broker = Mosquitto::start();
    let port: u16 = broker.url().rsplit(':').next().unwrap().parse().unwrap();
    let sub = Subscriber::start(port, "example/#");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cam.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[device]
id = "cam-1"

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
url = "mqtt://127.0.0.1:{port}"
topic_prefix = "example"

[queue]
dir = "{queue}"
"#,
            video = common::footage("vtest.avi").display(),
            card = common::card_path("ssd-mobilenet-v2-coco-cut.toml").display(),
            queue = dir.path().join("queue").display(),
        ),
    )
    .unwrap();
    let out = example("run_config")
        .arg(&config)
        .arg("300")
        .output()
        .unwrap();
    let stdout = ok(&out, "run_config");
    let queued = events(&stdout);
    assert!(!queued.is_empty(), "no events in 300 frames");
    assert!(stdout.lines().all(|l| l.starts_with("queued ")), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{} events, {} acknowledged",
            queued.len(),
            queued.len()
        )),
        "{stderr}"
    );
    // what the broker got: every event, on the device's topics
    let got = sub.wait_for(std::time::Duration::from_secs(10), |lines| {
        lines
            .iter()
            .filter(|l| l.starts_with("example/cam-1/events/"))
            .count()
            >= queued.len()
    });
    assert!(got, "the broker did not get every event: {:?}", sub.lines());
    // a bad config is refused naming the file and the key
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("id = \"cam-1\"", "id = \"a b\"")).unwrap();
    let out = example("run_config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cam.toml") && stderr.contains("device.id"),
        "{stderr}"
    );
}

/// Raw RGB frames of vtest.avi, decoded by ffmpeg, on the example's standard input.
#[test]
fn custom_source_counts_crossings_in_raw_frames_from_stdin() {
    let video = common::footage("vtest.avi");
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&video)
        .args([
            "-frames:v",
            "400",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let frames = ffmpeg.stdout.take().unwrap();
    let out = example("custom_source")
        .args(["768x576", "10"])
        .stdin(frames)
        .output()
        .unwrap();
    assert!(ffmpeg.wait().unwrap().success());
    let evs = events(&ok(&out, "custom_source"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("400 frames"), "{stderr}");
    assert!(
        evs.iter()
            .any(|e| e["type"] == "line_crossed" && e["rule"] == "walkway"),
        "no crossing in 400 frames: {evs:?}"
    );
    for e in &evs {
        assert_eq!(e["schema"], "ocellus.event/1");
    }
}

#[test]
fn custom_sink_sends_every_event_to_the_collector_and_the_file() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let collector = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        std::io::BufReader::new(stream)
            .lines()
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let out = example("custom_sink")
        .arg(addr.to_string())
        .arg(&file)
        .arg("400")
        .output()
        .unwrap();
    ok(&out, "custom_sink");
    let received = collector.join().unwrap();
    let written: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!received.is_empty(), "no events in 400 frames");
    assert_eq!(received, written, "both sinks get every event, in order");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(", 0 refused by a sink"), "{stderr}");
    // a collector that is not there: every event refused and counted, the file still complete
    let gone = common::broker::free_port();
    let file2 = dir.path().join("events2.jsonl");
    let out = example("custom_sink")
        .arg(format!("127.0.0.1:{gone}"))
        .arg(&file2)
        .arg("400")
        .output()
        .unwrap();
    ok(&out, "custom_sink without a collector");
    let n = std::fs::read_to_string(&file2).unwrap().lines().count();
    assert_eq!(
        n,
        written.len(),
        "the file sink is not held up by the other"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(", {n} refused by a sink")),
        "{stderr}"
    );
}

/// The recorded detections through the example's own `Inference` and the pipeline give the
/// same events as the core's replay of the tracker and rules (the golden file).
#[test]
fn custom_inference_through_the_pipeline_gives_the_golden_events() {
    let fixtures = common::repo_root().join("sdk/core/tests/fixtures");
    let out = example("custom_inference")
        .arg(fixtures.join("vtest-detections.jsonl"))
        .output()
        .unwrap();
    let evs = events(&ok(&out, "custom_inference"));
    let golden: Vec<String> = std::fs::read_to_string(fixtures.join("vtest-events.golden"))
        .unwrap()
        .lines()
        .map(|l| {
            // frame, type, rule and track; the rest is per type
            l.split(' ').take(4).collect::<Vec<_>>().join(" ")
        })
        .collect();
    let got: Vec<String> = evs
        .iter()
        .map(|e| {
            let track = e["track"]
                .as_u64()
                .map_or("-".to_owned(), |t| t.to_string());
            format!(
                "{} {} {} track={track}",
                e["frame"],
                e["type"].as_str().unwrap(),
                e["rule"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(got, golden);
    let directions: Vec<&str> = evs.iter().filter_map(|e| e["direction"].as_str()).collect();
    let golden_dirs: Vec<String> = std::fs::read_to_string(fixtures.join("vtest-events.golden"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(" line_crossed "))
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(directions, golden_dirs);
}

#[test]
fn on_sensor_counts_crossings_from_a_recorded_imx500_without_pixels_or_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("vtest.imx500");
    let rec = common::bin()
        .args(["sim", "imx500", "--frames", "300", "--out"])
        .arg(&capture)
        .output()
        .unwrap();
    ok(&rec, "ocellus sim imx500");
    let out = example("on_sensor").arg(&capture).output().unwrap();
    let evs = events(&ok(&out, "on_sensor"));
    let crossings = evs
        .iter()
        .filter(|e| e["type"] == "line_crossed" && e["rule"] == "walkway")
        .count();
    // the first 300 frames of vtest.avi: people cross the walkway line both ways
    assert!(
        crossings >= 5,
        "{crossings} crossings in {} events",
        evs.len()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("300 frames")
            && stderr.contains("0 failed")
            && stderr.contains(" 0 bytes of pixels"),
        "{stderr}"
    );
    // without a capture it says how to make one
    let usage = example("on_sensor").output().unwrap();
    assert!(!usage.status.success());
    assert!(String::from_utf8_lossy(&usage.stderr).contains("ocellus sim imx500"));
}
