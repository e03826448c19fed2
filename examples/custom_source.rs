//! Feed your own frames through a custom [`Source`]: here, raw RGB frames read from standard
//! input, as a camera API or a frame grabber of your own would hand them over.
//!
//! ```sh
//! ffmpeg -v error -i vtest.avi -f rawvideo -pix_fmt rgb24 - |
//!   cargo run -p ocellus-cli --example custom_source -- 768x576 10
//! ```
//!
//! The frames go through the SDK's person detector, the tracker and a counting line across the
//! walkway; each crossing is printed as an event (JSON, schema `ocellus.event/1`).

use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use ocellus::rules::{LineRule, Rules, RulesConfig};
use ocellus::runtime::Locator;
use ocellus::{
    Detector, DetectorOptions, FnSink, Frame, ModelCard, Pipeline, RgbFrame, Runtime, Source,
    SourceStats,
};

/// Raw packed RGB frames of a known size from any reader.
struct RawRgb<R> {
    reader: R,
    width: u32,
    height: u32,
    fps: f64,
    seq: u64,
    /// A buffer handed back by the pipeline, to read the next frame into.
    spare: Option<Vec<u8>>,
    short: u64,
}

impl<R: Read + Send> Source for RawRgb<R> {
    fn next_frame(&mut self) -> ocellus::core::Result<Option<Frame>> {
        let len = self.width as usize * self.height as usize * 3;
        let mut buf = self.spare.take().unwrap_or_default();
        buf.resize(len, 0);
        match self.reader.read_exact(&mut buf) {
            Ok(()) => {}
            // the end of the stream, or a truncated last frame (counted as skipped)
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.short += 1;
                return Ok(None);
            }
            Err(source) => {
                return Err(ocellus::core::Error::Io {
                    path: "<stdin>".into(),
                    source,
                });
            }
        }
        // media time from the frame rate: dwell times do not depend on processing speed
        let t = Duration::from_secs_f64(self.seq as f64 / self.fps);
        let image = RgbFrame::new(self.width, self.height, buf)?;
        let frame = Frame::new(self.seq, SystemTime::now(), t, image);
        self.seq += 1;
        Ok(Some(frame))
    }

    fn recycle(&mut self, image: RgbFrame) {
        self.spare = Some(image.into_raw());
    }

    fn is_live(&self) -> bool {
        // a pipe waits for the reader: every frame is processed
        false
    }

    fn len_hint(&self) -> Option<u64> {
        None
    }

    fn describe(&self) -> String {
        format!("raw RGB {}x{} on stdin", self.width, self.height)
    }

    fn stats(&self) -> SourceStats {
        SourceStats {
            skipped: self.short.saturating_sub(1),
            ..Default::default()
        }
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_source: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> ocellus::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || ocellus::Error::InvalidOption {
        name: "WIDTHxHEIGHT FPS".into(),
        message: "usage: custom_source WIDTHxHEIGHT FPS < frames.rgb".into(),
    };
    let (size, fps) = match args.as_slice() {
        [size, fps] => (size, fps.parse::<f64>().map_err(|_| usage())?),
        _ => return Err(usage()),
    };
    let (w, h) = size.split_once('x').ok_or_else(usage)?;
    let (width, height) = (
        w.parse().map_err(|_| usage())?,
        h.parse().map_err(|_| usage())?,
    );
    let source = RawRgb {
        reader: std::io::stdin(),
        width,
        height,
        fps,
        seq: 0,
        spare: None,
        short: 0,
    };
    let runtime = Runtime::init(&Locator::from_env(None))?;
    let detector = Detector::new(
        runtime,
        &ModelCard::builtin_ssd_cut()?,
        &DetectorOptions {
            labels: Some(vec!["person".into()]),
            ..Default::default()
        },
    )?;
    let walkway = LineRule {
        name: "walkway".into(),
        a: [0.75, 0.3],
        b: [0.75, 0.75],
        labels: vec!["person".into()],
    };
    let summary = Pipeline::builder()
        .source(source)
        .detector(detector)
        .rules(Rules::new(
            vec![walkway],
            Vec::new(),
            RulesConfig::default(),
        )?)
        .sink(FnSink(|event: &ocellus::Event| {
            println!("{}", String::from_utf8_lossy(&event.to_json()));
            Ok(())
        }))
        .build()?
        .run(&AtomicBool::new(false))?;
    eprintln!(
        "{} frames, {} events",
        summary.frames_processed,
        summary.event_count()
    );
    Ok(())
}
