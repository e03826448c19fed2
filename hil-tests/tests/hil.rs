//! Hardware-in-the-loop tests.
//!
//! `sim::*` run the whole SDK (driver, sensor source, real detector through ONNX Runtime, tracker,
//! rules, MQTT publisher) against the simulated IMX219 and a real mosquitto on loopback; they always
//! run. `hw::*` run the same paths against a board when `OCELLUS_HIL_I2C` and/or
//! `OCELLUS_HIL_VIDEO` are set (see `hil-tests/README.md`); without them they are reported as
//! `ignored`, by name, never as passed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../sdk/cli/tests/common/broker.rs"]
#[allow(dead_code)]
mod broker;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use ocellus::config::Config;
use ocellus::deploy::Deployment;
use ocellus::event::EventType;
use ocellus::infer::{Detector, DetectorOptions};
use ocellus::rules::Direction;
use ocellus::source::sensor::mean_brightness;
use ocellus::source::{SensorBus, SensorSettings, SensorSource, Source};
use ocellus_hil_tests::Hardware;
use ocellus_imx219::{Mode, TestPattern, registers as r};
use ocellus_imx219_sim::{COLOUR_BARS, SimImx219};

fn main() {
    let args = Arguments::from_args();
    let hw = Hardware::from_env();
    let mut trials = vec![
        Trial::test("sim::colour_bars_reach_the_detector_path", || {
            colour_bars_reach_the_detector_path()
        }),
        Trial::test("sim::exposure_over_the_bus_changes_brightness", || {
            let mut s = SensorSource::open(&SensorSettings::sim(Mode::Binned640x480, 60.0))?;
            exposure_over_the_bus_changes_brightness(&mut s, 1.85..=2.15)?;
            // the register the driver wrote is the one the sensor holds
            let sim = s.sim_handle().ok_or("no simulator")?;
            let lines = sim.register_u16(r::COARSE_INTEGRATION_TIME)?;
            check(lines == 400, format!("COARSE_INTEGRATION_TIME = {lines}"))?;
            check(
                sim.violation_count() == 0,
                format!("{} bus violation(s)", sim.violation_count()),
            )
        }),
        Trial::test("sim::auto_exposure_settles_on_the_scene", || {
            auto_exposure_settles(SensorSettings {
                auto_exposure: true,
                exposure_us: Some(500.0),
                ..SensorSettings::sim(Mode::Binned640x480, 60.0)
            })
        }),
        Trial::test("sim::a_wrong_chip_id_is_refused_with_the_id", || {
            let sim = SimImx219::new();
            sim.poke(r::MODEL_ID, 0x02)?;
            sim.poke(r::MODEL_ID + 1, 0x19 + 1)?;
            let e = SensorSource::open_sim(&SensorSettings::sim(Mode::Binned640x480, 30.0), sim)
                .err()
                .ok_or("a wrong chip id was accepted")?;
            check(
                e.to_string().contains("unexpected chip id 0x021a"),
                e.to_string(),
            )
        }),
        Trial::test(
            "sim::a_person_walking_across_crosses_the_line_and_the_event_reaches_the_broker",
            person_walks_across,
        ),
    ];

    // the same paths on a board
    let board = hw.i2c.clone().zip(hw.video.clone());
    let on_board = |name: &str, needs: &'static str, f: fn(&Path, &Path) -> Result<(), Failed>| {
        let b = board.clone();
        Trial::test(name, move || match &b {
            Some((i2c, video)) => f(i2c, video),
            None => Err(format!("needs {needs}").into()),
        })
        .with_ignored_flag(board.is_none())
    };
    trials.push(on_board(
        "hw::the_sensor_answers_and_streams_the_mode_size",
        "OCELLUS_HIL_I2C and OCELLUS_HIL_VIDEO",
        |i2c, video| {
            let mut s = SensorSource::open(&board_settings(i2c, video, TestPattern::None))?;
            for _ in 0..30 {
                let f = s.next_frame()?.ok_or("the camera ended")?;
                check(
                    (
                        f.image.as_ref().unwrap().width(),
                        f.image.as_ref().unwrap().height(),
                    ) == (640, 480),
                    format!(
                        "{}x{}",
                        f.image.as_ref().unwrap().width(),
                        f.image.as_ref().unwrap().height()
                    ),
                )?;
            }
            Ok(())
        },
    ));
    trials.push(on_board(
        "hw::exposure_over_the_bus_changes_brightness",
        "OCELLUS_HIL_I2C and OCELLUS_HIL_VIDEO",
        |i2c, video| {
            let mut s = SensorSource::open(&board_settings(i2c, video, TestPattern::None))?;
            // the ISP's own gamma and white balance: ask only for a clear rise
            exposure_over_the_bus_changes_brightness(&mut s, 1.2..=4.0)
        },
    ));
    trials.push(on_board(
        "hw::colour_bars_from_the_sensor_reach_the_frame",
        "OCELLUS_HIL_I2C and OCELLUS_HIL_VIDEO",
        |i2c, video| {
            let mut s = SensorSource::open(&board_settings(i2c, video, TestPattern::ColourBars))?;
            let mut f = s.next_frame()?.ok_or("no frame")?;
            for _ in 0..5 {
                f = s.next_frame()?.ok_or("no frame")?; // let the ISP settle
            }
            // white bar on the left, black on the right, whatever the ISP does to colour
            let (w, h) = (
                f.image.as_ref().unwrap().width() as usize,
                f.image.as_ref().unwrap().height() as usize,
            );
            let px = |x: usize| {
                let i = ((h / 2) * w + x) * 3;
                f.image.as_ref().unwrap().data()[i..i + 3]
                    .iter()
                    .map(|&b| u32::from(b))
                    .sum::<u32>()
            };
            let (white, black) = (px(w / 16), px(w - w / 16));
            check(white > black + 300, format!("white {white}, black {black}"))
        },
    ));
    trials.push(on_board(
        "hw::auto_exposure_settles_on_the_scene",
        "OCELLUS_HIL_I2C and OCELLUS_HIL_VIDEO",
        |i2c, video| {
            auto_exposure_settles(SensorSettings {
                auto_exposure: true,
                ..board_settings(i2c, video, TestPattern::None)
            })
        },
    ));
    let video = hw.video.clone();
    trials.push(
        Trial::test("hw::the_v4l2_camera_streams_and_converts", move || {
            let Some(video) = &video else {
                return Err("needs OCELLUS_HIL_VIDEO".into());
            };
            let mut s = ocellus::source::V4l2Source::open(video, Default::default())?;
            let n = s.negotiated();
            for _ in 0..60 {
                let f = s.next_frame()?.ok_or("the camera ended")?;
                check(
                    (
                        f.image.as_ref().unwrap().width(),
                        f.image.as_ref().unwrap().height(),
                    ) == (n.layout.width, n.layout.height),
                    format!("{n:?}"),
                )?;
            }
            eprintln!("{}: {:?}", s.describe(), s.stats());
            Ok(())
        })
        .with_ignored_flag(hw.video.is_none()),
    );

    // an IMX500 (Raspberry Pi AI Camera): its embedded-data node, streaming with a network loaded
    let imx500 = std::env::var_os("OCELLUS_IMX500_NODE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    let node = imx500.clone();
    trials.push(
        Trial::test("hw::imx500_embedded_tensors", move || {
            let Some(node) = &node else {
                return Err("needs OCELLUS_IMX500_NODE".into());
            };
            imx500_embedded_tensors(node)
        })
        .with_ignored_flag(imx500.is_none()),
    );
    if imx500.is_none() {
        eprintln!(
            "hil: hw::imx500_embedded_tensors is ignored: set OCELLUS_IMX500_NODE=/dev/videoN (the IMX500's embedded-data node, `media-ctl -p`) to run it"
        );
    }

    if board.is_none() || hw.video.is_none() {
        eprintln!(
            "hil: hardware tests are ignored: set OCELLUS_HIL_I2C=/dev/i2c-N and OCELLUS_HIL_VIDEO=/dev/videoN to run them (hil-tests/README.md)"
        );
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Ten frames from the IMX500's embedded-data node parse and carry an output tensor. Frames the
/// sensor marks not valid (the network is slower than the frame rate) are tolerated, within 100.
fn imx500_embedded_tensors(node: &Path) -> Result<(), Failed> {
    use ocellus::imx500::{Imx500Source, STRIDE_2560, TensorError, format::parse_frame};
    let mut s = Imx500Source::device(node, STRIDE_2560)?;
    let (mut good, mut not_valid, mut first_error) = (0u32, 0u32, None::<String>);
    for _ in 0..100 {
        if good == 10 {
            break;
        }
        let f = s.next_frame()?.ok_or("the node ended")?;
        let data = f
            .sensor_data
            .as_deref()
            .ok_or("a frame without sensor data")?;
        match parse_frame(data, STRIDE_2560, false) {
            Ok(d) if !d.outputs.tensors.is_empty() => good += 1,
            Ok(_) => {
                first_error.get_or_insert_with(|| "a frame with no output tensors".into());
            }
            Err(TensorError::NotValid(_)) => not_valid += 1,
            Err(e) => {
                first_error.get_or_insert_with(|| format!("{e} ({} bytes)", data.len()));
            }
        }
    }
    eprintln!(
        "{}: {good} frames with output tensors, {not_valid} marked not valid; {:?}",
        s.describe(),
        s.stats()
    );
    check(
        good == 10,
        format!(
            "{good} of 10 frames parsed with an output tensor in 100 ({not_valid} marked not valid; first error: {first_error:?})"
        ),
    )
}

fn check(ok: bool, what: impl Into<String>) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

fn board_settings(i2c: &Path, video: &Path, pattern: TestPattern) -> SensorSettings {
    SensorSettings {
        pattern,
        bus: SensorBus::Linux {
            path: i2c.to_path_buf(),
            address: ocellus_imx219::I2C_ADDRESS,
        },
        video: Some(video.to_path_buf()),
        ..SensorSettings::sim(Mode::Binned640x480, 30.0)
    }
}

fn exposure_over_the_bus_changes_brightness(
    s: &mut SensorSource,
    expected: std::ops::RangeInclusive<f64>,
) -> Result<(), Failed> {
    let mean_after = |lines: u16, s: &mut SensorSource| -> Result<f64, Failed> {
        s.control().set_exposure_lines(lines)?;
        let mut m = 0.0;
        for _ in 0..3 {
            // sensors apply a new exposure one or two frames later
            m = mean_brightness(
                s.next_frame()?
                    .ok_or("no frame")?
                    .image
                    .as_ref()
                    .ok_or("no pixels")?,
            );
        }
        Ok(m)
    };
    let dim = mean_after(200, s)?;
    let bright = mean_after(400, s)?;
    check(
        expected.contains(&(bright / dim)),
        format!("200 lines: mean {dim:.1}; 400 lines: mean {bright:.1}"),
    )
}

fn auto_exposure_settles(settings: SensorSettings) -> Result<(), Failed> {
    let mut s = SensorSource::open(&settings)?;
    let first = mean_brightness(
        s.next_frame()?
            .ok_or("no frame")?
            .image
            .as_ref()
            .ok_or("no pixels")?,
    );
    let mut last = first;
    for _ in 0..60 {
        last = mean_brightness(
            s.next_frame()?
                .ok_or("no frame")?
                .image
                .as_ref()
                .ok_or("no pixels")?,
        );
    }
    let target = f64::from(ocellus::source::sensor::AutoExposure::default().target);
    check(
        (last - target).abs() <= target * 0.15,
        format!("mean {first:.0} → {last:.0}, target {target}"),
    )
}

fn colour_bars_reach_the_detector_path() -> Result<(), Failed> {
    let mut s = SensorSource::open(&SensorSettings {
        pattern: TestPattern::ColourBars,
        ..SensorSettings::sim(Mode::Binned640x480, 60.0)
    })?;
    let runtime = ocellus::runtime::Runtime::init(&ocellus::runtime::Locator::from_env(None))?;
    let card = ocellus::card::ModelCard::builtin_ssd()?;
    let mut detector = Detector::new(runtime, &card, &DetectorOptions::default())?;
    for _ in 0..5 {
        let f = s.next_frame()?.ok_or("no frame")?;
        // the bars as the sensor made them, at the centre of each of the 8 bars
        for (i, want) in COLOUR_BARS.iter().enumerate() {
            let x = i * 80 + 40;
            let at = (240 * 640 + x) * 3;
            check(
                &f.image.as_ref().unwrap().data()[at..at + 3] == want,
                format!(
                    "bar {i}: {:?}",
                    &f.image.as_ref().unwrap().data()[at..at + 3]
                ),
            )?;
        }
        // through preprocessing and the model: colour bars hold no person
        let found = detector.detect(&f.image.as_ref().ok_or("no pixels")?.as_view())?;
        check(
            found.iter().all(|d| &*d.label != "person" || d.score < 0.5),
            format!("{found:?}"),
        )?;
    }
    Ok(())
}

/// A person cut out of `messi5.jpg` (real footage, found by the real detector) walks left to right
/// through the simulated scene; a vertical line at x = 0.5 must report exactly one crossing, and
/// the event must arrive at an independent subscriber of a real mosquitto.
fn person_walks_across() -> Result<(), Failed> {
    let broker = broker::Mosquitto::start();
    let sub = broker::Subscriber::start(broker.port, "hil/#");

    let dir = tempfile::tempdir()?;
    let sprite = ocellus_hil_tests::person_sprite(
        &ocellus::paths::footage_dir().join("messi5.jpg"),
        dir.path(),
    )
    .map_err(|e| format!("{e} (run models/provision.sh)"))?;
    let cfg_path = dir.path().join("hil.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"
[device]
id = "hil-sim"

[source]
kind = "sensor"
bus = "sim"
mode = "640x480"
fps = 10
exposure_us = 48000
sprite = {{ image = "{sprite}", walk_s = 6 }}

[model]
card = "{card}"
labels = ["person"]

[[rules.line]]
name = "door"
a = [0.5, 0.05]
b = [0.5, 0.95]

[mqtt]
url = "mqtt://127.0.0.1:{}"
topic_prefix = "hil"

[queue]
dir = "{queue}"
"#,
            broker.port,
            queue = dir.path().join("queue").display(),
            sprite = sprite.display(),
            card = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models/ssd-mobilenet-v2-coco.toml")
                .display()
        ),
    )?;
    let cfg = Config::load(&cfg_path)?;
    let frames = 6 * 10 + 20; // the walk (6 s at 10 fps) and some frames to spare
    let deployment = Deployment::from_config(&cfg);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let report = deployment.run(
        &ocellus::pipeline::Options {
            max_frames: Some(frames),
            ..Default::default()
        },
        &AtomicBool::new(false),
        move |ev, _| seen2.lock().unwrap().push(ev.clone()),
        |_| {},
    )?;

    let crossings: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == EventType::LineCrossed)
        .cloned()
        .collect();
    check(
        crossings.len() == 1,
        format!(
            "{} crossings in {} frames ({} processed, {} dropped): {crossings:?}",
            crossings.len(),
            frames,
            report.pipeline.frames_processed,
            report.pipeline.frames_dropped
        ),
    )?;
    let c = &crossings[0];
    check(&*c.rule == "door", c.rule.to_string())?;
    // a = top, b = bottom: s(p) = cross(b - a, p - a) is positive left of the line, so walking
    // left to right goes from s > 0 to s < 0: b_to_a
    check(c.direction == Some(Direction::BToA), format!("{c:?}"))?;
    check(report.publish.flushed, format!("{:?}", report.publish))?;
    let id = c.id.clone();
    check(
        sub.wait_for(Duration::from_secs(5), |lines| {
            lines
                .iter()
                .any(|l| l.starts_with("hil/hil-sim/events/line_crossed ") && l.contains(&id))
        }),
        format!("event {id} not at the broker: {:?}", sub.lines()),
    )?;
    Ok(())
}
