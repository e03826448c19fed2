//! TensorFlow Object Detection API SSDs: the graph's own post-processed outputs ([`decode`]), or
//! the graph cut at the box predictor and post-processed here ([`anchors`], [`decode_raw`]).
//!
//! The native post-processing follows the API's SSD meta-architecture as its pipeline configs set
//! it up for `ssd_mobilenet_v2_coco`: anchors from the multiple-grid anchor generator, boxes from
//! the Faster R-CNN box coder (`ty, tx` scaled by 10, `th, tw` by 5), sigmoid scores, boxes clipped
//! to the image, then greedy NMS per class (a box is suppressed by a higher-scoring one of its class
//! when their IoU is above the threshold), at most `max_per_class` per class and `max_detections`
//! in all, best first.
//!
//! One shortcut, exact by construction: the sigmoid is monotonic, so a logit below the logit of the
//! score threshold can never be reported and is skipped without computing its sigmoid or its box.
//! Dropping those boxes before NMS changes nothing above the threshold, because greedy NMS only
//! lets a box be suppressed by a higher-scoring one.

use super::{Candidate, OutputTensor};
use crate::error::Result;

pub use crate::anchors::MAX_ANCHORS;

/// Decode `boxes [N,K,4]` (ymin, xmin, ymax, xmax), `scores [N,K]`, `classes [N,K]`, `count [N]`
/// for batch item 0. Rows past `count`, below `threshold`, with a non-finite score, class or box,
/// a negative class, or a box that is empty or inverted once clamped to `0..=1` are skipped; a
/// score above 1 is reported as 1.
pub fn decode(
    boxes: &OutputTensor<'_>,
    scores: &OutputTensor<'_>,
    classes: &OutputTensor<'_>,
    count: &OutputTensor<'_>,
    threshold: f32,
) -> Result<Vec<Candidate>> {
    let k = boxes.dim(1)?;
    boxes.expect_shape(&[Some(1), Some(k), Some(4)])?;
    scores.expect_shape(&[Some(1), Some(k)])?;
    classes.expect_shape(&[Some(1), Some(k)])?;
    count.expect_shape(&[Some(1)])?;
    let n = count.data.first().copied().unwrap_or(0.0);
    let n = if n.is_finite() && n > 0.0 {
        // Saturating: a count of 1e30 is read as "all rows".
        (n as usize).min(k)
    } else {
        0
    };
    let mut out = Vec::new();
    let rows = boxes
        .data
        .chunks_exact(4)
        .zip(scores.data)
        .zip(classes.data)
        .take(n);
    for ((b, &score), &class) in rows {
        let Some(score) = super::accept_score(score, threshold) else {
            continue;
        };
        if !class.is_finite() || class < 0.0 || class > u32::MAX as f32 {
            continue;
        }
        let &[ymin, xmin, ymax, xmax] = b else {
            continue;
        };
        let Some(bbox) = super::usable_box([xmin, ymin, xmax, ymax]) else {
            continue;
        };
        out.push(Candidate {
            // In range (checked above); `as` saturates anyway.
            class_id: class.round() as u32,
            score,
            bbox,
        });
    }
    Ok(out)
}

pub use crate::anchors::{Anchor, anchors};

/// The post-processing settings of a `tf-ssd-raw` card.
#[derive(Debug, Clone, Copy)]
pub struct RawSettings {
    /// Box coder scales `[y, x, height, width]`.
    pub box_scales: [f32; 4],
    /// The logit column of the background class, never reported.
    pub background_class: Option<u32>,
    /// NMS across classes.
    pub class_agnostic: bool,
    /// NMS IoU threshold.
    pub nms_iou: f32,
    /// Most boxes per class.
    pub max_per_class: usize,
    /// Most boxes in all.
    pub max_detections: usize,
}

/// The logit a score threshold corresponds to, lowered a little so rounding in the sigmoid can
/// never drop a box the exact check would keep (that check follows).
fn logit_floor(threshold: f32) -> f32 {
    if threshold <= 0.0 {
        f32::NEG_INFINITY
    } else if threshold >= 1.0 {
        // sigmoid reaches 1.0 in f32 around 17
        16.0
    } else {
        let t = f64::from(threshold);
        ((t / (1.0 - t)).ln() - 1e-3) as f32
    }
}

/// Decode one frame of raw SSD outputs: `encodings [1, A, 4]` and `logits [1, A, C]` for the
/// `anchors` (centre form, from [`anchors`]). Candidates are appended to `scratch` (cleared first),
/// then NMS'd; the survivors come back best first, boxes `[x0, y0, x1, y1]` clipped to the input.
pub fn decode_raw(
    encodings: &OutputTensor<'_>,
    logits: &OutputTensor<'_>,
    anchors: &[Anchor],
    settings: &RawSettings,
    threshold: f32,
    scratch: &mut Vec<Candidate>,
) -> Result<Vec<Candidate>> {
    let a = anchors.len();
    encodings.expect_shape(&[Some(1), Some(a), Some(4)])?;
    let classes = logits.dim(2)?;
    logits.expect_shape(&[Some(1), Some(a), Some(classes)])?;
    if classes == 0 {
        return Err(logits.shape_error("at least one class column"));
    }
    let floor = logit_floor(threshold);
    let [sy, sx, sh, sw] = settings.box_scales;
    let background = settings.background_class.map(|b| b as usize);
    scratch.clear();
    let rows = logits
        .data
        .chunks_exact(classes)
        .zip(encodings.data.chunks_exact(4))
        .zip(anchors);
    for ((row, code), anchor) in rows {
        // the common case: nothing in this row is anywhere near the threshold
        if !row.iter().any(|&x| x >= floor) {
            continue;
        }
        let &[ty, tx, th, tw] = code else {
            continue;
        };
        let &[ya, xa, ha, wa] = anchor;
        let (h, w) = ((th / sh).exp() * ha, (tw / sw).exp() * wa);
        let (yc, xc) = (ty / sy * ha + ya, tx / sx * wa + xa);
        // clipped to the image before NMS, as the API clips to its window
        let Some(bbox) =
            super::usable_box([xc - 0.5 * w, yc - 0.5 * h, xc + 0.5 * w, yc + 0.5 * h])
        else {
            continue;
        };
        for (class, &x) in row.iter().enumerate() {
            if x < floor || Some(class) == background {
                continue;
            }
            let score = 1.0 / (1.0 + (-x).exp());
            let Some(score) = super::accept_score(score, threshold) else {
                continue;
            };
            scratch.push(Candidate {
                class_id: class as u32,
                score,
                bbox,
            });
        }
    }
    Ok(super::nms::nms_capped(
        scratch,
        settings.nms_iou,
        settings.class_agnostic,
        settings.max_per_class,
        settings.max_detections,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchors::AnchorSpec;

    #[test]
    fn decodes_rows_up_to_count_and_threshold() -> Result<()> {
        let boxes = [
            0.1, 0.2, 0.5, 0.4, // person
            0.0, 0.0, 1.0, 1.0, // below threshold
            0.3, 0.3, 0.4, 0.4, // past count
        ];
        let scores = [0.9, 0.2, 0.95];
        let classes = [1.0, 3.0, 1.0];
        let count = [2.0];
        let d = decode(
            &OutputTensor::new("b", &[1, 3, 4], &boxes),
            &OutputTensor::new("s", &[1, 3], &scores),
            &OutputTensor::new("c", &[1, 3], &classes),
            &OutputTensor::new("n", &[1], &count),
            0.5,
        )?;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class_id, 1);
        assert_eq!(d[0].bbox, [0.2, 0.1, 0.4, 0.5]);
        Ok(())
    }

    #[test]
    fn wrong_shapes_name_the_output() {
        let r = decode(
            &OutputTensor::new("detection_boxes:0", &[1, 3, 5], &[0.0; 15]),
            &OutputTensor::new("s", &[1, 3], &[0.0; 3]),
            &OutputTensor::new("c", &[1, 3], &[0.0; 3]),
            &OutputTensor::new("n", &[1], &[0.0]),
            0.5,
        );
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("detection_boxes:0"), "{msg}");
        let r = decode(
            &OutputTensor::new("b", &[1, 3, 4], &[0.0; 12]),
            &OutputTensor::new("detection_scores:0", &[1, 2], &[0.0; 2]),
            &OutputTensor::new("c", &[1, 3], &[0.0; 3]),
            &OutputTensor::new("n", &[1], &[0.0]),
            0.5,
        );
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("detection_scores:0"), "{msg}");
    }

    #[test]
    fn nan_count_and_scores_are_ignored() -> Result<()> {
        let d = decode(
            &OutputTensor::new("b", &[1, 1, 4], &[0.0, 0.0, 1.0, 1.0]),
            &OutputTensor::new("s", &[1, 1], &[f32::NAN]),
            &OutputTensor::new("c", &[1, 1], &[1.0]),
            &OutputTensor::new("n", &[1], &[1.0]),
            0.5,
        )?;
        assert!(d.is_empty());
        let d = decode(
            &OutputTensor::new("b", &[1, 1, 4], &[0.0, 0.0, 1.0, 1.0]),
            &OutputTensor::new("s", &[1, 1], &[0.9]),
            &OutputTensor::new("c", &[1, 1], &[1.0]),
            &OutputTensor::new("n", &[1], &[f32::INFINITY]),
            0.5,
        )?;
        assert!(d.is_empty());
        Ok(())
    }

    /// One-row SSD outputs.
    fn one(bbox: [f32; 4], score: f32, class: f32, count: f32) -> Result<Vec<Candidate>> {
        decode(
            &OutputTensor::new("b", &[1, 1, 4], &bbox),
            &OutputTensor::new("s", &[1, 1], &[score]),
            &OutputTensor::new("c", &[1, 1], &[class]),
            &OutputTensor::new("n", &[1], &[count]),
            0.5,
        )
    }

    #[test]
    fn non_finite_and_degenerate_rows_are_dropped() -> Result<()> {
        let good = [0.1, 0.2, 0.5, 0.4];
        assert_eq!(one(good, 0.9, 1.0, 1.0)?.len(), 1);
        for bad in [
            [f32::NAN, 0.2, 0.5, 0.4],
            [0.1, f32::INFINITY, 0.5, 0.4],
            [0.1, 0.2, f32::NEG_INFINITY, 0.4],
            [0.1, 0.2, 0.5, -f32::NAN],
            [0.5, 0.2, 0.1, 0.4], // inverted
            [0.1, 0.4, 0.5, 0.4], // zero width
            [1.5, 1.5, 2.0, 2.0], // entirely outside the frame: empty once clamped
        ] {
            assert!(one(bad, 0.9, 1.0, 1.0)?.is_empty(), "{bad:?}");
        }
        for score in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1e30] {
            assert!(one(good, score, 1.0, 1.0)?.is_empty(), "{score}");
        }
        for class in [f32::NAN, f32::INFINITY, -1.0, 1e30] {
            assert!(one(good, 0.9, class, 1.0)?.is_empty(), "{class}");
        }
        for count in [f32::NAN, f32::NEG_INFINITY, -3.0, 0.0] {
            assert!(one(good, 0.9, 1.0, count)?.is_empty(), "{count}");
        }
        // Absurd but usable: a huge count means all rows, a box sticking out is clamped, a score
        // above 1 is reported as 1.
        let d = one([-1.0, -5.0, 2.0, 0.5], 1e30, 1.0, 1e30)?;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].bbox, [0.0, 0.0, 0.5, 1.0]);
        assert_eq!(d[0].score, 1.0);
        Ok(())
    }

    fn grid(feature_maps: Vec<u32>) -> AnchorSpec {
        AnchorSpec::TfMultipleGrid {
            feature_maps,
            min_scale: 0.2,
            max_scale: 0.95,
            aspect_ratios: vec![1.0, 2.0, 0.5, 3.0, 0.3333],
            interpolated_scale_aspect_ratio: 1.0,
            reduce_boxes_in_lowest_layer: true,
        }
    }

    #[test]
    fn ssd_mobilenet_v2_anchor_facts() {
        let a = anchors(&grid(vec![19, 10, 5, 3, 2, 1])).unwrap_or_default();
        assert_eq!(a.len(), 19 * 19 * 3 + (100 + 25 + 9 + 4 + 1) * 6);
        let close = |x: f32, y: f32| (x - y).abs() < 1e-6;
        // first cell of the finest layer: centre 0.5/19, a 0.1 square, then scale 0.2 at 2:1, 1:2
        let c = 0.5 / 19.0;
        assert!(
            close(a[0][0], c) && close(a[0][1], c) && close(a[0][2], 0.1) && close(a[0][3], 0.1)
        );
        let r2 = 2f32.sqrt();
        assert!(
            close(a[1][2], 0.2 / r2) && close(a[1][3], 0.2 * r2),
            "{:?}",
            a[1]
        );
        assert!(
            close(a[2][2], 0.2 * r2) && close(a[2][3], 0.2 / r2),
            "{:?}",
            a[2]
        );
        // second cell moves right by one stride
        assert!(close(a[3][1], 1.5 / 19.0) && close(a[3][0], c));
        // second layer starts at 1083: scale 0.35, centre 0.05; its sixth box is sqrt(0.35 * 0.5)
        let l1 = 19 * 19 * 3;
        assert!(
            close(a[l1][0], 0.05) && close(a[l1][2], 0.35),
            "{:?}",
            a[l1]
        );
        assert!(
            close(a[l1 + 5][2], (0.35f32 * 0.5).sqrt()),
            "{:?}",
            a[l1 + 5]
        );
        // the last layer's one cell is centred, and its interpolated box is sqrt(0.95 * 1.0)
        let last = a[a.len() - 1];
        assert!(
            close(last[0], 0.5) && close(last[2], 0.95f32.sqrt()),
            "{last:?}"
        );
    }

    #[test]
    fn anchor_settings_are_checked() {
        let bad = |spec: AnchorSpec, key: &str| {
            let r = anchors(&spec);
            assert_eq!(r.as_ref().err().map(|e| e.0), Some(key), "{r:?}");
        };
        bad(grid(vec![]), "feature_maps");
        bad(grid(vec![19, 0]), "feature_maps");
        bad(grid(vec![1024; 400]), "feature_maps");
        let AnchorSpec::TfMultipleGrid { feature_maps, .. } = grid(vec![3]);
        for (min, max) in [
            (0.0, 0.9),
            (0.5, 0.2),
            (f32::NAN, 0.9),
            (0.2, f32::INFINITY),
        ] {
            bad(
                AnchorSpec::TfMultipleGrid {
                    feature_maps: feature_maps.clone(),
                    min_scale: min,
                    max_scale: max,
                    aspect_ratios: vec![1.0],
                    interpolated_scale_aspect_ratio: 0.0,
                    reduce_boxes_in_lowest_layer: false,
                },
                "min_scale",
            );
        }
        for ratios in [vec![], vec![1.0, 0.0], vec![f32::NAN]] {
            bad(
                AnchorSpec::TfMultipleGrid {
                    feature_maps: feature_maps.clone(),
                    min_scale: 0.2,
                    max_scale: 0.9,
                    aspect_ratios: ratios,
                    interpolated_scale_aspect_ratio: 0.0,
                    reduce_boxes_in_lowest_layer: false,
                },
                "aspect_ratios",
            );
        }
        // one layer: its scale is min_scale; no interpolated box without a ratio for it
        let one = anchors(&AnchorSpec::TfMultipleGrid {
            feature_maps: vec![2],
            min_scale: 0.3,
            max_scale: 0.9,
            aspect_ratios: vec![1.0],
            interpolated_scale_aspect_ratio: 0.0,
            reduce_boxes_in_lowest_layer: false,
        })
        .unwrap_or_default();
        assert_eq!(one.len(), 4);
        assert!((one[0][2] - 0.3).abs() < 1e-6);
    }

    const SETTINGS: RawSettings = RawSettings {
        box_scales: [10.0, 10.0, 5.0, 5.0],
        background_class: Some(0),
        class_agnostic: false,
        nms_iou: 0.6,
        max_per_class: 100,
        max_detections: 100,
    };

    /// Logit of a probability.
    fn logit(p: f32) -> f32 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn raw_boxes_are_decoded_against_their_anchor() {
        // two anchors; classes: background, person, car
        let anchors = [[0.5, 0.5, 0.2, 0.1], [0.25, 0.75, 0.1, 0.1]];
        // anchor 0: shifted down by 0.1 of its height (ty = 1 / 10), twice as wide (tw = 5 ln 2)
        let codes = [1.0, 0.0, 0.0, 5.0 * 2f32.ln(), 0.0, 0.0, 0.0, 0.0];
        let logits = [
            logit(0.99),
            logit(0.9),
            logit(0.1), // background is never reported
            logit(0.2),
            logit(0.3),
            logit(0.7),
        ];
        let out = decode_raw(
            &OutputTensor::new("enc", &[1, 2, 4], &codes),
            &OutputTensor::new("logits", &[1, 2, 3], &logits),
            &anchors,
            &SETTINGS,
            0.5,
            &mut Vec::new(),
        )
        .unwrap_or_default();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].class_id, 1);
        assert!((out[0].score - 0.9).abs() < 1e-5);
        // centre (0.52, 0.5), 0.2 high, 0.2 wide → x 0.4..0.6, y 0.42..0.62
        let want = [0.4, 0.42, 0.6, 0.62];
        for (g, w) in out[0].bbox.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{:?}", out[0].bbox);
        }
        assert_eq!(out[1].class_id, 2);
        assert!((out[1].score - 0.7).abs() < 1e-5);
    }

    #[test]
    fn nms_is_per_class_and_boxes_are_clipped_first() {
        // three anchors on the same spot, one hanging off the left edge
        let anchors = [
            [0.5, 0.5, 0.2, 0.2],
            [0.5, 0.51, 0.2, 0.2],
            [0.5, 0.0, 0.2, 0.2],
        ];
        let codes = [0.0; 12];
        // a logit of 0 is a score of 0.5, which passes 0.5: "nothing" is -10
        let n = -10.0;
        #[rustfmt::skip]
        let logits = [
            n, logit(0.9), n, // person
            n, logit(0.8), logit(0.85), // person (suppressed by the first), car (kept)
            n, logit(0.6), n, // person, clipped to x 0..0.1
        ];
        let enc = OutputTensor::new("enc", &[1, 3, 4], &codes);
        let log = OutputTensor::new("logits", &[1, 3, 3], &logits);
        let out =
            decode_raw(&enc, &log, &anchors, &SETTINGS, 0.5, &mut Vec::new()).unwrap_or_default();
        let got: Vec<(u32, f32)> = out
            .iter()
            .map(|c| (c.class_id, (c.score * 100.0).round()))
            .collect();
        assert_eq!(got, vec![(1, 90.0), (2, 85.0), (1, 60.0)]);
        assert!((out[2].bbox[0] - 0.0).abs() < 1e-6 && (out[2].bbox[2] - 0.1).abs() < 1e-6);
        // class-agnostic: the car overlaps the first person and goes too
        let agnostic = RawSettings {
            class_agnostic: true,
            ..SETTINGS
        };
        let out =
            decode_raw(&enc, &log, &anchors, &agnostic, 0.5, &mut Vec::new()).unwrap_or_default();
        assert_eq!(out.len(), 2, "{out:?}");
        // the caps hold
        let capped = RawSettings {
            max_per_class: 1,
            ..SETTINGS
        };
        let out =
            decode_raw(&enc, &log, &anchors, &capped, 0.5, &mut Vec::new()).unwrap_or_default();
        assert_eq!(out.iter().filter(|c| c.class_id == 1).count(), 1);
        let total = RawSettings {
            max_detections: 1,
            ..SETTINGS
        };
        let out =
            decode_raw(&enc, &log, &anchors, &total, 0.5, &mut Vec::new()).unwrap_or_default();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn raw_outputs_of_the_wrong_shape_or_with_nan_are_handled() {
        let anchors = [[0.5, 0.5, 0.2, 0.2]];
        let r = decode_raw(
            &OutputTensor::new("Squeeze:0", &[1, 2, 4], &[0.0; 8]),
            &OutputTensor::new("l", &[1, 1, 2], &[0.0; 2]),
            &anchors,
            &SETTINGS,
            0.5,
            &mut Vec::new(),
        );
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("Squeeze:0"), "{msg}");
        let r = decode_raw(
            &OutputTensor::new("e", &[1, 1, 4], &[0.0; 4]),
            &OutputTensor::new("concat_1:0", &[1, 1, 3], &[0.0; 2]),
            &anchors,
            &SETTINGS,
            0.5,
            &mut Vec::new(),
        );
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("concat_1:0"), "{msg}");
        // NaN logits, an exploding box code, a NaN box code: nothing reported, no panic
        for (code, logit_) in [
            ([0.0; 4], f32::NAN),
            ([0.0, 0.0, 1e30, 1e30], 5.0),
            ([f32::NAN, 0.0, 0.0, 0.0], 5.0),
        ] {
            let out = decode_raw(
                &OutputTensor::new("e", &[1, 1, 4], &code),
                &OutputTensor::new("l", &[1, 1, 2], &[0.0, logit_]),
                &anchors,
                &SETTINGS,
                0.5,
                &mut Vec::new(),
            )
            .unwrap_or_default();
            assert!(out.is_empty(), "{code:?} {logit_}: {out:?}");
        }
        // +inf logit: score 1
        let out = decode_raw(
            &OutputTensor::new("e", &[1, 1, 4], &[0.0; 4]),
            &OutputTensor::new("l", &[1, 1, 2], &[0.0, f32::INFINITY]),
            &anchors,
            &SETTINGS,
            0.5,
            &mut Vec::new(),
        )
        .unwrap_or_default();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 1.0);
    }

    #[test]
    fn the_logit_shortcut_drops_nothing_at_the_threshold() {
        for t in [0.0f32, 1e-6, 0.1, 0.3, 0.5, 0.77, 0.99, 0.999_9, 1.0] {
            let floor = logit_floor(t);
            // any logit whose sigmoid passes must be at or above the floor
            for k in -2000..=2000 {
                let x = k as f32 * 0.01;
                let score = 1.0 / (1.0 + (-x).exp());
                if crate::infer::passes(score, t) {
                    assert!(
                        x >= floor,
                        "threshold {t}: logit {x} (score {score}) below {floor}"
                    );
                }
            }
        }
    }
}
