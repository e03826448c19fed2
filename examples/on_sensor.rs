//! A sensor that runs the network itself (Sony's IMX500): the host parses the tensors the sensor
//! sends and runs no model, reads no pixels. Here the sensor is a capture recorded from the
//! simulated IMX500; on a Raspberry Pi AI Camera, `Imx500Source::device("/dev/videoN", 2560)`
//! reads the same lines from the sensor's embedded-data node.
//!
//! ```sh
//! ocellus sim imx500 --out vtest.imx500          # record what the sensor sends for vtest.avi
//! cargo run -p ocellus-cli --example on_sensor -- vtest.imx500
//! ```
//!
//! Each event is printed as JSON (schema `ocellus.event/1`), then a summary on stderr.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use ocellus::imx500::{Imx500Inference, Imx500Source};
use ocellus::rules::{LineRule, Rules, RulesConfig};
use ocellus::{DetectorOptions, FnSink, ModelCard, Pipeline};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("on_sensor: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> ocellus::Result<()> {
    let Some(capture) = std::env::args().nth(1).map(PathBuf::from) else {
        return Err(ocellus::Error::InvalidOption {
            name: "CAPTURE".into(),
            message: "usage: on_sensor CAPTURE (record one with `ocellus sim imx500 --out FILE`)"
                .into(),
        });
    };
    let source = Imx500Source::replay(&capture, None)?;
    // the card describes the network on the sensor: its labels, threshold and decoder
    let card = ModelCard::builtin_ssd()?;
    let options = DetectorOptions {
        labels: Some(vec!["person".into()]),
        ..Default::default()
    };
    let on_chip = Imx500Inference::new(&card, &options, source.stride())?;
    let rules = Rules::new(
        vec![LineRule {
            name: "walkway".into(),
            a: [0.75, 0.3],
            b: [0.75, 0.75],
            labels: vec!["person".into()],
        }],
        Vec::new(),
        RulesConfig::default(),
    )?;
    let summary = Pipeline::builder()
        .source(source)
        .inference(on_chip)
        .rules(rules)
        .device("on-sensor-example")
        .sink(FnSink(|e: &ocellus::Event| {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
            Ok(())
        }))
        .build()?
        .run(&AtomicBool::new(false))?;
    eprintln!(
        "{} frames, {} events, {} failed, {} bytes of pixels read by the host",
        summary.frames_processed,
        summary.event_count(),
        summary.frames_failed,
        summary.raw_frame_bytes
    );
    Ok(())
}
