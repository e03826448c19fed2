//! The IMX500 on-sensor path as a user runs it: `ocellus sim imx500` records what the simulated
//! sensor sends (the real SSD through ONNX Runtime standing in for the chip, vtest.avi decoded by
//! ffmpeg), and `ocellus run` with `source.kind = "imx500"` replays it through the tracker and the
//! rules to a real mosquitto on loopback, reading no pixels; the counts match the host-inference
//! path with the same model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::broker::{Mosquitto, Subscriber};
use ocellus::core::Source;
use ocellus::imx500::capture::{CaptureReader, CaptureWriter};
use ocellus::imx500::{Imx500Source, STRIDE_2560};

/// A deployment config: the demo's line and zone, the full-graph SSD card, `source` as given.
fn config(dir: &Path, port: u16, device: &str, source: &str) -> PathBuf {
    let cfg = format!(
        r#"
[device]
id = "{device}"

[source]
{source}

[model]
card = "{card}"
labels = ["person"]
# the sensor runs the network on the whole frame: so does the host here, to compare the two
tiles = "1x1"

[[rules.line]]
name = "walkway"
a = [0.75, 0.3]
b = [0.75, 0.75]

[[rules.zone]]
name = "crossing"
polygon = [[0.25, 0.35], [0.75, 0.35], [0.75, 0.7], [0.25, 0.7]]
dwell_s = 5

[mqtt]
url = "mqtt://127.0.0.1:{port}"
topic_prefix = "imx"

[queue]
dir = "{queue}"
"#,
        queue = dir.join(format!("queue-{device}")).display(),
        card = common::card_path("ssd-mobilenet-v2-coco.toml").display(),
    );
    let path = dir.join(format!("{device}.toml"));
    std::fs::write(&path, cfg).unwrap();
    path
}

/// `ocellus sim imx500` on vtest.avi; the JSON summary it prints.
fn record(out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = common::bin()
        .args(["sim", "imx500", "--format", "json", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `ocellus run --config cfg --summary`; the summary. The run must exit with `code` (0, or 1
/// when frames failed).
fn run(cfg: &Path, dir: &Path, name: &str, code: i32) -> serde_json::Value {
    let summary = dir.join(format!("{name}.summary.json"));
    let o = common::bin()
        .args(["run", "--quiet", "--config"])
        .arg(cfg)
        .arg("--summary")
        .arg(&summary)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap()
}

/// Events of `device` the subscriber saw: type (and direction for line crossings) → count.
fn counts(lines: &[String], device: &str) -> BTreeMap<String, u64> {
    let prefix = format!("imx/{device}/events/");
    let mut out = BTreeMap::new();
    for (_, payload) in lines
        .iter()
        .filter_map(|l| l.split_once(' '))
        .filter(|(t, _)| t.starts_with(&prefix))
    {
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        let mut key = v["type"].as_str().unwrap().to_owned();
        if let Some(d) = v["direction"].as_str() {
            key = format!("{key}:{d}");
        }
        *out.entry(key).or_default() += 1;
    }
    out
}

#[test]
fn a_replayed_capture_reaches_mosquitto_with_the_host_paths_counts_and_no_pixels() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, "imx/#");
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("vtest.imx500");
    let rec = record(&capture, &[]);
    let frames = rec["frames"].as_u64().unwrap();
    assert!(frames > 700, "{rec}");
    // only tensors: a KPI line, the output header line and four one-line tensors
    assert_eq!(
        rec["bytes_per_frame"].as_u64().unwrap(),
        6 * 2560 + 20,
        "{rec}"
    );

    let on_sensor = config(
        dir.path(),
        broker.port,
        "cam-imx500",
        &format!("kind = \"imx500\"\ncapture = \"{}\"", capture.display()),
    );
    let host = config(
        dir.path(),
        broker.port,
        "cam-host",
        &format!(
            "kind = \"video\"\npath = \"{}\"",
            common::footage("vtest.avi").display()
        ),
    );
    let s_imx = run(&on_sensor, dir.path(), "imx500", 0);
    let s_host = run(&host, dir.path(), "host", 0);
    assert_eq!(s_imx["frames_processed"].as_u64(), Some(frames), "{s_imx}");
    assert_eq!(s_imx["frames_failed"].as_u64(), Some(0), "{s_imx}");
    // the host read no pixels on the IMX500 path, and whole frames on the other
    assert_eq!(s_imx["raw_frame_bytes"].as_u64(), Some(0), "{s_imx}");
    assert!(s_host["raw_frame_bytes"].as_u64().unwrap() > frames * 768 * 576 * 3 / 2);

    let n_imx = s_imx["event_count"].as_u64().unwrap() as usize;
    let n_host = s_host["event_count"].as_u64().unwrap() as usize;
    assert!(n_imx > 100, "{s_imx}");
    let all = |l: &[String]| {
        counts(l, "cam-imx500").values().sum::<u64>() as usize >= n_imx
            && counts(l, "cam-host").values().sum::<u64>() as usize >= n_host
    };
    assert!(
        sub.wait_for(Duration::from_secs(15), all),
        "not every event arrived"
    );
    let lines = sub.lines();
    let (imx, host) = (counts(&lines, "cam-imx500"), counts(&lines, "cam-host"));
    assert_eq!(
        imx.values().sum::<u64>() as usize,
        n_imx,
        "every event once"
    );
    for key in [
        "line_crossed:a_to_b",
        "line_crossed:b_to_a",
        "zone_entered",
        "zone_exited",
    ] {
        let (a, b) = (
            imx.get(key).copied().unwrap_or(0),
            host.get(key).copied().unwrap_or(0),
        );
        assert!(b > 0, "the host path saw no {key}: {host:?}");
        assert!(
            a.abs_diff(b) <= 1,
            "{key}: {a} on the sensor against {b} on the host\n{imx:?}\n{host:?}"
        );
    }
}

#[test]
fn the_simulated_sensor_runs_live_in_a_deployment_and_the_host_still_reads_no_pixels() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, "imx/#");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        broker.port,
        "cam-sim",
        &format!(
            "kind = \"imx500\"\nfootage = \"{}\"",
            common::footage("vtest.avi").display()
        ),
    );
    let summary = dir.path().join("sim.summary.json");
    let o = common::bin()
        .args(["run", "--quiet", "--frames", "150", "--config"])
        .arg(&cfg)
        .arg("--summary")
        .arg(&summary)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["frames_processed"].as_u64(), Some(150), "{s}");
    assert_eq!(s["raw_frame_bytes"].as_u64(), Some(0), "{s}");
    let n = s["event_count"].as_u64().unwrap();
    assert!(n > 10, "{s}");
    assert!(
        sub.wait_for(Duration::from_secs(10), |l| counts(l, "cam-sim")
            .values()
            .sum::<u64>()
            >= n),
        "not every event arrived"
    );
}

#[test]
fn pixels_come_only_when_asked_for_as_the_networks_low_resolution_input() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("short.imx500");
    let rec = record(&capture, &["--frames", "4", "--input-tensors"]);
    assert_eq!(rec["frames"].as_u64(), Some(4), "{rec}");
    let mut s = Imx500Source::replay(&capture, None).unwrap();
    let f0 = s.next_frame().unwrap().unwrap();
    assert!(f0.image.is_none() && f0.sensor_data.is_some());
    s.request_pixels();
    let f1 = s.next_frame().unwrap().unwrap();
    let image = f1.image.as_ref().expect("pixels after request_pixels");
    // the SSD's input: 300x300, a picture of the scene, not a blank
    assert_eq!((image.width(), image.height()), (300, 300));
    let mean = image.data().iter().map(|&v| f64::from(v)).sum::<f64>() / image.data().len() as f64;
    assert!((40.0..220.0).contains(&mean), "mean {mean}");
    // once per request
    assert!(s.next_frame().unwrap().unwrap().image.is_none());
    assert_eq!(s.pixel_bytes(), 300 * 300 * 3);
}

#[test]
fn a_snapshot_request_gets_the_low_resolution_input_with_people_hidden_and_nothing_else() {
    use ocellus::imx500::Imx500Inference;
    use ocellus::pipeline::{LiveControl, Options, SnapshotRequest};
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("snap.imx500");
    record(&capture, &["--frames", "30", "--input-tensors"]);
    let card = ocellus::ModelCard::builtin_ssd().unwrap();
    let opts = ocellus::DetectorOptions {
        labels: Some(vec!["person".into()]),
        ..Default::default()
    };
    let control = std::sync::Arc::new(LiveControl::default());
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    control.request_snapshot(SnapshotRequest {
        max_bytes: 64 * 1024,
        lines: Vec::new(),
        zones: Vec::new(),
        reply,
    });
    let summary = ocellus::Pipeline::builder()
        .source(Imx500Source::replay(&capture, None).unwrap())
        .inference(Imx500Inference::new(&card, &opts, STRIDE_2560).unwrap())
        .options(Options {
            control: Some(control),
            ..Default::default()
        })
        .build()
        .unwrap()
        .run(&std::sync::atomic::AtomicBool::new(false))
        .unwrap();
    let (seq, snap) = answer.try_recv().expect("a snapshot").unwrap();
    assert_eq!(seq, 0, "the first frame answers");
    assert_eq!((snap.width, snap.height), (300, 300));
    assert!(snap.jpeg.starts_with(&[0xff, 0xd8]));
    // vtest.avi's first frame has people in it: they are hidden
    assert!(snap.hidden >= 1, "{} regions hidden", snap.hidden);
    // one low-resolution picture in 30 frames, and no other pixels
    assert_eq!(summary.frames_processed, 30);
    assert_eq!(summary.raw_frame_bytes, 300 * 300 * 3);
}

#[test]
fn damaged_and_malformed_records_are_skipped_and_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.imx500");
    record(&good, &["--frames", "20"]);
    // rewrite it: record 5 with a flipped byte on disk (CRC), record 9 with a valid CRC but
    // lines that are not DNN data (parse error), the rest as recorded
    let mut reader = CaptureReader::open(&good).unwrap();
    let bad = dir.path().join("bad.imx500");
    let mut w = CaptureWriter::create(&bad, STRIDE_2560).unwrap();
    let mut n = 0;
    while let Some(rec) = reader.next_record().unwrap() {
        let data = if n == 9 {
            vec![0x5a; rec.data.len()]
        } else {
            rec.data
        };
        w.write(rec.t, &data).unwrap();
        n += 1;
    }
    w.finish().unwrap();
    let mut bytes = std::fs::read(&bad).unwrap();
    let record_len = 20 + 6 * 2560;
    bytes[16 + 5 * record_len + 20 + 3000] ^= 0x40;
    std::fs::write(&bad, bytes).unwrap();

    let broker = Mosquitto::start();
    let cfg = config(
        dir.path(),
        broker.port,
        "cam-bad",
        &format!("kind = \"imx500\"\ncapture = \"{}\"", bad.display()),
    );
    let s = run(&cfg, dir.path(), "bad", 1);
    assert_eq!(s["frames_read"].as_u64(), Some(19), "{s}");
    assert_eq!(s["frames_skipped"].as_u64(), Some(1), "{s}");
    assert_eq!(s["frames_failed"].as_u64(), Some(1), "{s}");
}

#[test]
fn imx500_sources_are_checked_at_start_up_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("kind = \"imx500\"", "source.capture"),
        (
            "kind = \"imx500\"\ncapture = \"a.cap\"\nfootage = \"b.avi\"",
            "give only one of",
        ),
        (
            "kind = \"imx500\"\ncapture = \"a.cap\"\nstride = 12",
            "source.stride",
        ),
        (
            "kind = \"video\"\npath = \"a.avi\"\nstride = 2560",
            "only applies to kind = \"imx500\"",
        ),
        (
            "kind = \"imx500\"\ncapture = \"a.cap\"\nmode = \"1080p\"",
            "source.mode",
        ),
    ];
    for (i, (source, want)) in cases.iter().enumerate() {
        let cfg = config(dir.path(), 1883, &format!("c{i}"), source);
        let o = common::bin()
            .arg("check-config")
            .arg(&cfg)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{source}: accepted");
        assert!(stderr.contains(want), "{source}: {stderr}");
        assert!(stderr.contains(&format!("c{i}.toml")), "{stderr}");
    }
    // a file that is not a capture is refused when the run starts, naming it
    let not_cap = dir.path().join("not.cap");
    std::fs::write(&not_cap, b"hello, this is not a capture").unwrap();
    let cfg = config(
        dir.path(),
        Mosquitto::start().port,
        "cnot",
        &format!("kind = \"imx500\"\ncapture = \"{}\"", not_cap.display()),
    );
    let o = common::bin()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("not.cap") && stderr.contains("not a tensor capture"),
        "{stderr}"
    );
}
