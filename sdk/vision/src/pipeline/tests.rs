//! The builder: what it refuses, the threshold coupling, and the fan-out to sinks, with an
//! `Inference` of the test's own (the ONNX Runtime path is covered by the system tests).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use ocellus_core::{ChannelSink, Detection, FnSink, Frame, RgbView};

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

/// Two people, red and blue, stand side by side and trade places at frame 10: the frames show
/// them in their colours, and the inference reports their boxes.
struct Trade {
    seq: u64,
}

fn trade_boxes(seq: u64) -> [[f32; 4]; 2] {
    let at = |cx: f32| [cx - 0.05, 0.3, cx + 0.05, 0.7];
    if seq < 10 {
        [at(0.45), at(0.56)]
    } else {
        [at(0.56), at(0.45)]
    }
}

impl Source for Trade {
    fn next_frame(&mut self) -> ocellus_core::Result<Option<Frame>> {
        if self.seq == 14 {
            return Ok(None);
        }
        let (w, h) = (100usize, 100usize);
        let mut data = vec![128u8; w * h * 3];
        for (b, colour) in trade_boxes(self.seq)
            .iter()
            .zip([[210u8, 30, 30], [30, 40, 200]])
        {
            for y in (b[1] * 100.0) as usize..(b[3] * 100.0) as usize {
                for x in (b[0] * 100.0) as usize..(b[2] * 100.0) as usize {
                    let i = (y * w + x) * 3;
                    data[i..i + 3].copy_from_slice(&colour);
                }
            }
        }
        let image = RgbFrame::new(w as u32, h as u32, data)?;
        let frame = Frame::new(
            self.seq,
            std::time::SystemTime::now(),
            Duration::from_millis(100 * self.seq),
            image,
        );
        self.seq += 1;
        Ok(Some(frame))
    }
    fn is_live(&self) -> bool {
        false
    }
    fn len_hint(&self) -> Option<u64> {
        Some(14)
    }
    fn describe(&self) -> String {
        "two people trading places".into()
    }
    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
}

/// Reports the two people's boxes, in a fixed order that carries no identity.
struct Boxes {
    seq: u64,
}

impl Inference for Boxes {
    fn infer(&mut self, _frame: RgbView<'_>) -> ocellus_core::Result<Vec<Detection>> {
        let dets = trade_boxes(self.seq)
            .iter()
            .map(|&bbox| Detection {
                label: Arc::from("person"),
                class_id: 1,
                score: 0.9,
                bbox,
            })
            .collect();
        self.seq += 1;
        Ok(dets)
    }
    fn score_threshold(&self) -> f32 {
        0.5
    }
    fn set_report_floor(&mut self, _floor: f32) {}
}

/// The track ids on the red person after the trade, by frame.
fn red_ids(tracker: TrackerConfig) -> Vec<u64> {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = ids.clone();
    Pipeline::builder()
        .source(Trade { seq: 0 })
        .inference(Boxes { seq: 0 })
        .tracker(tracker)
        .rules(door())
        .on_tracks(move |t: &TracksSeen<'_>| {
            let red = trade_boxes(t.seq)[0];
            if t.seq >= 10
                && let Some(track) = t.tracks.observed.iter().find(|k| k.bbox == red)
            {
                seen.lock().unwrap().push(track.id);
            }
        })
        .build()
        .unwrap()
        .run(&AtomicBool::new(false))
        .unwrap();
    ids.lock().unwrap().clone()
}

#[test]
fn the_pipeline_gives_the_tracker_what_people_look_like() {
    // the pipeline reads each person's colours from the frame: red keeps id 1
    assert_eq!(red_ids(TrackerConfig::default()), vec![1; 4]);
    // with appearance off, motion alone hands red's id to blue
    let off = TrackerConfig {
        appearance_gate: 1.0,
        appearance_weight: 0.0,
        reid_gate: 0.0,
        ..TrackerConfig::default()
    };
    assert_eq!(red_ids(off), vec![2; 4]);
}
