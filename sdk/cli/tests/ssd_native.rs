//! The SSD cut at the box predictor, post-processed by ocellus, against the same SSD's full graph
//! (its own anchors, box decoding and per-class NMS inside ONNX Runtime), on real footage.
//!
//! - The anchors ocellus generates from the card's facts must be the anchors the graph uses: the
//!   cut model exports them (a constant the converter folded out of the graph's anchor generator).
//! - On 300 frames of vtest.avi both must find the same people, boxes at IoU >= 0.9.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ocellus::card::{ModelCard, OutputSpec};
use ocellus::infer::{Decoder, Detection, Detector, DetectorOptions};
use ocellus::source::{FfmpegSource, Source};

fn cut_card() -> ModelCard {
    ModelCard::load(common::card_path("ssd-mobilenet-v2-coco-cut.toml")).unwrap()
}

#[test]
fn generated_anchors_are_the_graphs_anchors() {
    let card = cut_card();
    let OutputSpec::TfSsdRaw { graph_anchors, .. } = &card.output else {
        panic!("the cut card's decoder is tf-ssd-raw");
    };
    let graph_anchors = graph_anchors
        .as_deref()
        .expect("the cut card names graph_anchors");
    let model = card.resolve_file().unwrap();
    card.verify(&model).unwrap();
    let mut session = ort::session::Session::builder(common::runtime().environment())
        .unwrap()
        .commit_from_file(&model)
        .unwrap();
    let input = vec![0f32; 300 * 300 * 3];
    let value =
        ort::value::TensorRef::from_array_view(([1usize, 300, 300, 3], &input[..])).unwrap();
    let outputs = session
        .run(ort::inputs![card.input.name.as_str() => value])
        .unwrap();
    let (shape, graph) = outputs[graph_anchors].try_extract_tensor::<f32>().unwrap();
    assert_eq!(&**shape, &[1917, 4]);

    let decoder = Decoder::new(&card, 0.5, None).unwrap();
    let ours = decoder.ssd_anchors();
    assert_eq!(ours.len(), 1917, "19²×3 + (10² + 5² + 3² + 2² + 1²)×6");
    let mut worst = 0f32;
    for (i, (g, a)) in graph.chunks_exact(4).zip(ours).enumerate() {
        // the graph's anchors are corners (ymin, xmin, ymax, xmax); ours centre form
        let [ymin, xmin, ymax, xmax] = [g[0], g[1], g[2], g[3]];
        let want = [
            (ymin + ymax) / 2.0,
            (xmin + xmax) / 2.0,
            ymax - ymin,
            xmax - xmin,
        ];
        for k in 0..4 {
            let d = (want[k] - a[k]).abs();
            worst = worst.max(d);
            assert!(
                d < 1e-5,
                "anchor {i}: graph {want:?} (corners {g:?}), generated {a:?}"
            );
        }
    }
    eprintln!("1917 anchors, largest difference from the graph's {worst:e}");
}

/// Persons (class 1) at or above 0.5.
fn persons(dets: &[Detection]) -> Vec<Detection> {
    dets.iter().filter(|d| d.class_id == 1).cloned().collect()
}

#[test]
fn native_post_processing_finds_the_same_people_as_the_full_graph() {
    let rt = common::runtime();
    let full_card = ModelCard::load(common::card_path("ssd-mobilenet-v2-coco.toml")).unwrap();
    let opts = DetectorOptions::default();
    let mut full = Detector::new(rt, &full_card, &opts).unwrap();
    let mut cut = Detector::new(rt, &cut_card(), &opts).unwrap();

    let video = common::footage("vtest.avi");
    let mut source = FfmpegSource::open(&video.to_string_lossy(), None, false).unwrap();
    const FRAMES: usize = 300;
    let (mut frames, mut matched, mut borderline) = (0usize, 0usize, 0usize);
    let (mut min_iou, mut max_score_diff) = (1f32, 0f32);
    while frames < FRAMES {
        let Some(frame) = source.next_frame().unwrap() else {
            break;
        };
        let view = frame.image.as_ref().unwrap().as_view();
        let a = persons(&full.detect(&view).unwrap());
        let b = persons(&cut.detect(&view).unwrap());
        // every person of either side has a partner on the other at IoU >= 0.9, unless its
        // score is so close to the threshold that rounding may put it on either side
        for (side, mine, theirs) in [("full graph", &a, &b), ("native", &b, &a)] {
            for d in mine.iter() {
                let best = theirs
                    .iter()
                    .map(|o| (common::iou(&d.bbox, &o.bbox), o.score))
                    .max_by(|x, y| x.0.total_cmp(&y.0));
                match best {
                    Some((iou, score)) if iou >= 0.9 => {
                        min_iou = min_iou.min(iou);
                        max_score_diff = max_score_diff.max((score - d.score).abs());
                        matched += 1;
                    }
                    _ if (d.score - 0.5).abs() < 0.01 => borderline += 1,
                    _ => panic!(
                        "frame {}: the {side} found a person the other did not: {d:?}\nfull graph: {a:?}\nnative: {b:?}",
                        frame.seq
                    ),
                }
            }
        }
        assert_eq!(
            a.len().abs_diff(b.len()),
            0,
            "frame {}: {} persons from the full graph, {} from the native post-processing\nfull graph: {a:?}\nnative: {b:?}",
            frame.seq,
            a.len(),
            b.len()
        );
        frames += 1;
    }
    assert_eq!(frames, FRAMES, "vtest.avi has 795 frames");
    // vtest.avi has people in every frame: a decoder that finds nothing must not pass
    assert!(matched >= 2 * FRAMES, "only {matched} matched persons");
    assert!(
        borderline * 100 <= matched,
        "{borderline} borderline of {matched}"
    );
    eprintln!(
        "{frames} frames: {matched} person matches (both directions), {borderline} at the threshold, \
         smallest IoU {min_iou:.4}, largest score difference {max_score_diff:.5}"
    );
}
