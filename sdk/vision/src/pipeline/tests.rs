//! The builder: what it refuses, the threshold coupling, and the fan-out to sinks, with an
//! `Inference` of the test's own (the ONNX Runtime path is covered by the system tests).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use ocellus_core::{ChannelSink, Detection, FnSink, RgbView};

use super::*;
use crate::rules::LineRule;
use crate::source::SyntheticSource;

/// One person walking down the frame, crossing y = 0.5 at the 10th call.
struct Walker {
    calls: u64,
    floor: Arc<Mutex<Option<f32>>>,
}

impl Inference for Walker {
    fn infer(&mut self, _frame: RgbView<'_>) -> ocellus_core::Result<Vec<Detection>> {
        let y = 0.2 + 0.03 * self.calls as f32;
        self.calls += 1;
        Ok(vec![Detection {
            label: Arc::from("person"),
            class_id: 1,
            score: 0.9,
            bbox: [0.4, y - 0.2, 0.5, y],
        }])
    }
    fn score_threshold(&self) -> f32 {
        0.7
    }
    fn set_report_floor(&mut self, floor: f32) {
        *self.floor.lock().unwrap() = Some(floor);
    }
}

fn source() -> SyntheticSource {
    SyntheticSource::new(32, 32, 20, 1, 1, 10.0, false).unwrap()
}

fn door() -> Rules {
    let line = LineRule {
        name: "door".into(),
        a: [0.0, 0.5],
        b: [1.0, 0.5],
        labels: Vec::new(),
    };
    Rules::new(vec![line], Vec::new(), RulesConfig::default()).unwrap()
}

#[test]
fn a_pipeline_without_a_source_or_an_inference_is_refused_by_name() {
    let floor = Arc::new(Mutex::new(None));
    let e = Pipeline::builder()
        .inference(Walker { calls: 0, floor })
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidOption { name, .. } if name == "source"),
        "{e}"
    );
    let e = Pipeline::builder().source(source()).build().unwrap_err();
    assert!(
        matches!(&e, Error::InvalidOption { name, .. } if name == "inference"),
        "{e}"
    );
}

#[test]
fn the_inference_reports_down_to_the_trackers_floor_and_every_sink_gets_every_event() {
    let floor = Arc::new(Mutex::new(None));
    let (channel, rx) = ChannelSink::new(16);
    let mut refused = 0;
    let summary = Pipeline::builder()
        .source(source())
        .inference(Walker {
            calls: 0,
            floor: floor.clone(),
        })
        .rules(door())
        .device("cam-7")
        .sink(FnSink(|_: &crate::Event| {
            refused += 1;
            Err(ocellus_core::Error::invalid_option("sink", "refuses all"))
        }))
        .sink(channel)
        .build()
        .unwrap()
        .run(&AtomicBool::new(false))
        .unwrap();
    // the tracker's default low threshold, below the inference's own 0.7
    assert_eq!(*floor.lock().unwrap(), Some(0.1));
    assert_eq!(summary.frames_processed, 20);
    let events: Vec<_> = rx.try_iter().collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventType::LineCrossed);
    assert_eq!(&*events[0].device, "cam-7");
    assert_eq!(summary.event_count(), 1);
    assert_eq!(summary.sink_errors, 1, "the refusing sink is counted");
    assert_eq!(refused, 1);
}
