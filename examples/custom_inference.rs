//! Plug in your own [`Inference`]: anything that returns detections for a frame (an NPU, a
//! sensor that runs the network on the chip, a remote service). Here the "accelerator" plays
//! back recorded detections (one JSON line per frame, as in
//! `sdk/core/tests/fixtures/vtest-detections.jsonl`), so the example runs without a model.
//!
//! ```sh
//! cargo run -p ocellus-cli --example custom_inference -- sdk/core/tests/fixtures/vtest-detections.jsonl
//! ```
//!
//! The pipeline treats it like the SDK's own detector: it tells the inference how low to report
//! (the tracker's second pass uses weak detections), tracks, applies the rules and prints each
//! event (schema `ocellus.event/1`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use ocellus::rules::{LineRule, Rules, RulesConfig, ZoneRule};
use ocellus::{
    Detection, FnSink, Frame, Inference, Pipeline, RgbFrame, RgbView, Source, SourceStats,
};

/// Detections played back from a recording, one frame's worth per call.
struct Playback {
    frames: VecDeque<Vec<Detection>>,
    floor: f32,
}

impl Inference for Playback {
    fn infer(&mut self, _frame: RgbView<'_>) -> ocellus::core::Result<Vec<Detection>> {
        let mut dets = self.frames.pop_front().unwrap_or_default();
        // report down to the floor the pipeline asked for, as a real accelerator would
        dets.retain(|d| d.score >= self.floor);
        Ok(dets)
    }

    fn score_threshold(&self) -> f32 {
        0.5
    }

    fn set_report_floor(&mut self, floor: f32) {
        self.floor = floor;
    }

    fn describe(&self) -> String {
        "recorded detections".to_owned()
    }
}

/// Small blank frames at 10 fps, one per recorded result (its number and times). A sensor that
/// hands over tensors instead of pixels sends `Frame::from_sensor` and its inference overrides
/// `Inference::infer_frame`: see `examples/on_sensor.rs`.
struct Ticks {
    next: u64,
    count: u64,
}

impl Source for Ticks {
    fn next_frame(&mut self) -> ocellus::core::Result<Option<Frame>> {
        if self.next >= self.count {
            return Ok(None);
        }
        let seq = self.next;
        self.next += 1;
        let image = RgbFrame::new(16, 12, vec![0; 16 * 12 * 3])?;
        Ok(Some(Frame::new(
            seq,
            SystemTime::now(),
            Duration::from_millis(100 * seq),
            image,
        )))
    }
    fn is_live(&self) -> bool {
        false
    }
    fn len_hint(&self) -> Option<u64> {
        Some(self.count)
    }
    fn describe(&self) -> String {
        "ticks".to_owned()
    }
    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
}

#[derive(serde::Deserialize)]
struct Recorded {
    d: Vec<[f32; 5]>,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_inference: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> ocellus::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        return Err(ocellus::Error::InvalidOption {
            name: "DETECTIONS".into(),
            message: "usage: custom_inference DETECTIONS.jsonl".into(),
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ocellus::Error::Io {
        path: path.clone().into(),
        source,
    })?;
    let person: Arc<str> = Arc::from("person");
    let mut frames = VecDeque::new();
    // the first line describes the recording; one line per frame follows
    for (i, line) in text.lines().enumerate().skip(1) {
        let rec: Recorded = serde_json::from_str(line).map_err(|e| ocellus::Error::Config {
            path: path.clone().into(),
            line: Some(i + 1),
            message: format!("not a recorded frame: {e}"),
        })?;
        let dets = rec.d.iter().map(|&[score, x0, y0, x1, y1]| Detection {
            label: person.clone(),
            class_id: 1,
            score,
            bbox: [x0, y0, x1, y1],
        });
        frames.push_back(dets.collect());
    }
    let count = frames.len() as u64;
    let labels = vec!["person".to_owned()];
    let rules = Rules::new(
        vec![LineRule {
            name: "walkway".into(),
            a: [0.75, 0.3],
            b: [0.75, 0.75],
            labels: labels.clone(),
        }],
        vec![ZoneRule {
            name: "crossing".into(),
            polygon: vec![[0.25, 0.35], [0.75, 0.35], [0.75, 0.7], [0.25, 0.7]],
            dwell: Some(Duration::from_secs(5)),
            labels,
        }],
        RulesConfig::default(),
    )?;
    let summary = Pipeline::builder()
        .source(Ticks { next: 0, count })
        .inference(Playback { frames, floor: 0.0 })
        .rules(rules)
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
