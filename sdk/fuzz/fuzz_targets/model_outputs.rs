//! Model outputs full of NaN, ±inf and absurd values into every decoder, NMS, the mapping to
//! detections, the tracker, the rules and the event topic.
//!
//! Input: byte 0 picks the decoder (`% 3`: SSD, YOLO, BlazeFace) and whether floats come from a
//! palette of awkward values (bit 7) or as raw little-endian `f32`s; bytes 1..=8 give sizes and
//! thresholds, bytes 9..=12 how made-up shapes differ from the real ones; the rest are the floats.
//! Shapes are consistent with the data when bit 6 of byte 0 is clear, and otherwise made up
//! (a dimension off by one, doubled, 0, -1 or `i64::MAX`), to test the shape checks.
//!
//! Properties beyond "no panic": every candidate and detection has a finite score in `0..=1` and
//! a finite, non-empty box inside `0..=1`; NMS keeps at most `max_keep`; the tracker's and rules'
//! outputs stay finite; an event topic has exactly the prefix's levels plus three and no wildcard.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use ocellus::card::{ModelCard, YoloLayout};
use ocellus::event::Event;
use ocellus::infer::{Candidate, Detection, OutputTensor, blazeface, nms, ssd, yolo};
use ocellus::preprocess::Transform;
use ocellus::rules::{LineRule, Rules, RulesConfig, ZoneRule};
use ocellus::track::{Tracker, TrackerConfig};

const PALETTE: [f32; 24] = [
    0.0,
    0.5,
    1.0,
    -1.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    1e30,
    -1e30,
    f32::MAX,
    f32::MIN,
    f32::MIN_POSITIVE,
    -0.0,
    0.9,
    0.1,
    32.0,
    16.0,
    64.0,
    2.0,
    0.25,
    0.75,
    1.0000001,
    1e-30,
    -f32::NAN,
];

/// Reads sizes and floats off the fuzz input; past its end it gives zeros.
struct Input<'a> {
    head: &'a [u8],
    floats: Vec<f32>,
    next: usize,
    /// Bytes 8..12: how made-up shapes differ from the real ones (see [`shape`]).
    shape_seed: u32,
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8], palette: bool) -> Self {
        let (head, rest) = data.split_at(data.len().min(12));
        let floats = if palette {
            rest.iter()
                .map(|&b| PALETTE[usize::from(b) % PALETTE.len()])
                .collect()
        } else {
            rest.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let seed = |i: usize| head.get(i).copied().unwrap_or(0);
        Input {
            head,
            floats,
            next: 0,
            shape_seed: u32::from_le_bytes([seed(8), seed(9), seed(10), seed(11)]),
        }
    }
    fn byte(&self, i: usize) -> u8 {
        self.head.get(i).copied().unwrap_or(0)
    }
    /// `n` floats (zeros past the end).
    fn take(&mut self, n: usize) -> Vec<f32> {
        let v = (0..n)
            .map(|i| self.floats.get(self.next + i).copied().unwrap_or(0.0))
            .collect();
        self.next += n;
        v
    }
    fn float(&mut self) -> f32 {
        self.take(1)[0]
    }
}

fn assert_sane_box(b: [f32; 4], what: &str) {
    assert!(
        b.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) && b[2] > b[0] && b[3] > b[1],
        "{what}: box {b:?}"
    );
}

fn assert_sane(cands: &[Candidate], what: &str) {
    for c in cands {
        assert!(
            c.score.is_finite() && (0.0..=1.0).contains(&c.score),
            "{what}: score {}",
            c.score
        );
        assert_sane_box(c.bbox, what);
    }
}

/// A shape for a tensor whose real shape is `real`: that one, or (when `made_up`) one whose
/// dimensions are each, by 3 bits of the input's shape seed, kept (most often: so that the
/// decoders' own checks pass and their indexing is reached), off by one, 0, -1 or `i64::MAX`.
fn shape(input: &mut Input<'_>, real: &[i64], made_up: bool) -> Vec<i64> {
    if !made_up {
        return real.to_vec();
    }
    real.iter()
        .map(|&d| {
            let pick = input.shape_seed & 7;
            input.shape_seed = input.shape_seed.rotate_right(3);
            match pick {
                0 => d + 1,
                1 => (d - 1).max(0),
                2 => match input.shape_seed & 3 {
                    0 => -1,
                    1 => 0,
                    2 => i64::MAX,
                    _ => d * 2,
                },
                _ => d,
            }
        })
        .collect()
}

fn decode_ssd(input: &mut Input<'_>, made_up: bool) -> Vec<Candidate> {
    let k = usize::from(input.byte(1) % 32);
    let threshold = f32::from(input.byte(2)) / 255.0;
    let (boxes, scores, classes, count) = (
        input.take(k * 4),
        input.take(k),
        input.take(k),
        input.take(1),
    );
    let ki = k as i64;
    let (bs, ss, cs, ns) = (
        shape(input, &[1, ki, 4], made_up),
        shape(input, &[1, ki], made_up),
        shape(input, &[1, ki], made_up),
        shape(input, &[1], made_up),
    );
    let result = ssd::decode(
        &OutputTensor::new("boxes", &bs, &boxes),
        &OutputTensor::new("scores", &ss, &scores),
        &OutputTensor::new("classes", &cs, &classes),
        &OutputTensor::new("count", &ns, &count),
        threshold,
    );
    if !made_up {
        assert!(result.is_ok(), "consistent SSD shapes refused: {result:?}");
    }
    let cands = result.unwrap_or_default();
    assert_sane(&cands, "ssd");
    cands
}

fn decode_yolo(input: &mut Input<'_>, made_up: bool) -> Vec<Candidate> {
    let classes = usize::from(input.byte(1) % 8) + 1;
    let n = usize::from(input.byte(2) % 32);
    let layout = [YoloLayout::Auto, YoloLayout::V8, YoloLayout::V5][usize::from(input.byte(3) % 3)];
    let v5 = match layout {
        YoloLayout::V5 => true,
        YoloLayout::V8 => false,
        YoloLayout::Auto => input.byte(3) & 0x80 != 0,
    };
    let size = (u32::from(input.byte(4)) * 4, u32::from(input.byte(5)) * 4);
    let threshold = f32::from(input.byte(6)) / 255.0;
    let real = if v5 {
        [1, n as i64, 5 + classes as i64]
    } else {
        [1, 4 + classes as i64, n as i64]
    };
    let data = input.take(real.iter().product::<i64>() as usize);
    let s = shape(input, &real, made_up);
    let out = OutputTensor::new("output0", &s, &data);
    let result = yolo::decode(&out, layout, classes, size, threshold);
    let cands = result.unwrap_or_default();
    assert_sane(&cands, "yolo");
    let iou = f32::from(input.byte(7)) / 255.0;
    let max_keep = usize::from(input.byte(5) % 16);
    let kept = nms::nms(cands, iou, input.byte(6) & 1 != 0, max_keep);
    assert!(kept.len() <= max_keep);
    assert_sane(&kept, "nms");
    kept
}

fn decode_blazeface(input: &mut Input<'_>, made_up: bool) -> Vec<Candidate> {
    let cells = [
        u32::from(input.byte(1) % 6) + 1,
        u32::from(input.byte(2) % 4) + 1,
    ];
    let per_cell = [
        u32::from(input.byte(3) % 3) + 1,
        u32::from(input.byte(4) % 3) + 1,
    ];
    let stride = 4 + usize::from(input.byte(5) % 3) * 2;
    let size = (u32::from(input.byte(6)) * 2, u32::from(input.byte(6)) * 2);
    let threshold = f32::from(input.byte(7)) / 255.0;
    let anchors = blazeface::anchors(&cells, &per_cell);
    let mut cands = Vec::new();
    let mut start = 0;
    for (&c, &k) in cells.iter().zip(&per_cell) {
        let a = blazeface::layer_anchors(c, k).unwrap_or(0);
        let layer = anchors.get(start..start + a).unwrap_or_default();
        start += a;
        let scores = input.take(a);
        let boxes = input.take(a * stride);
        let ss = shape(input, &[1, a as i64, 1], made_up);
        let bs = shape(input, &[1, a as i64, stride as i64], made_up);
        let result = blazeface::decode_layer(
            &OutputTensor::new("scores", &ss, &scores),
            &OutputTensor::new("boxes", &bs, &boxes),
            layer,
            size,
            threshold,
            &mut cands,
        );
        if !made_up {
            assert!(
                result.is_ok(),
                "consistent BlazeFace shapes refused: {result:?}"
            );
        }
    }
    assert_sane(&cands, "blazeface");
    let kept = nms::nms(cands, 0.3, true, 100);
    assert_sane(&kept, "nms");
    kept
}

fn downstream(input: &mut Input<'_>, card: &ModelCard, cands: Vec<Candidate>) {
    let transform = Transform {
        scale: [input.float(), input.float()],
        offset: [input.float(), input.float()],
    };
    let mut dets = ocellus::infer::to_detections(cands, &transform, None, card);
    for d in &dets {
        assert!(d.score.is_finite(), "detection score {}", d.score);
        assert_sane_box(d.bbox, "detection");
    }
    // Hand-made detections that skip the decoders' checks: the tracker must cope on its own.
    for _ in 0..4 {
        let raw = input.take(5);
        dets.push(Detection {
            label: Arc::from("person"),
            class_id: 1,
            score: raw[0],
            bbox: [raw[1], raw[2], raw[3], raw[4]],
        });
    }
    let Ok(mut tracker) = Tracker::new(TrackerConfig {
        confirm_hits: 1,
        ..TrackerConfig::default()
    }) else {
        return;
    };
    let Ok(mut rules) = Rules::new(
        vec![LineRule {
            name: "door".into(),
            a: [0.0, 0.5],
            b: [1.0, 0.5],
            labels: Vec::new(),
        }],
        vec![ZoneRule {
            name: "zone".into(),
            polygon: vec![[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]],
            dwell: Some(Duration::from_millis(200)),
            labels: Vec::new(),
        }],
        RulesConfig::default(),
    ) else {
        return;
    };
    let device: Arc<str> = Arc::from(String::from_utf8_lossy(input.head).as_ref());
    for frame in 0..4u64 {
        let out = tracker.update(frame, &dets);
        for t in out.observed.iter().chain(&out.ended) {
            assert!(
                t.bbox.iter().all(|v| v.is_finite()),
                "track box {:?}",
                t.bbox
            );
            assert!(t.score.is_finite(), "track score {}", t.score);
        }
        let t = Duration::from_millis(100 * frame);
        for e in rules.update(frame, t, &out) {
            let event = Event::from_rule(&device, SystemTime::UNIX_EPOCH, &e);
            let topic = event.topic("ocellus/site");
            assert_eq!(topic.split('/').count(), 5, "{topic}");
            assert!(!topic.contains(['+', '#', '\0']), "{topic}");
            assert!(!event.to_json().is_empty());
        }
        // The boxes drift: the same detections, shifted, for the next frame.
        for d in &mut dets {
            d.bbox[1] += 0.05;
            d.bbox[3] += 0.05;
        }
    }
    let _ = rules.finish(4, Duration::from_secs(1));
    let _ = tracker.finish();
}

fuzz_target!(|data: &[u8]| {
    let Some(&head) = data.first() else {
        return;
    };
    static CARD: OnceLock<Option<ModelCard>> = OnceLock::new();
    let Some(card) = CARD.get_or_init(|| ModelCard::builtin_ssd().ok()) else {
        return;
    };
    let mut input = Input::new(&data[1..], head & 0x80 != 0);
    let made_up = head & 0x40 != 0;
    let cands = match head % 3 {
        0 => decode_ssd(&mut input, made_up),
        1 => decode_yolo(&mut input, made_up),
        _ => decode_blazeface(&mut input, made_up),
    };
    downstream(&mut input, card, cands);
});
