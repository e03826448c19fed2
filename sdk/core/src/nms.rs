//! Greedy non-maximum suppression.

use crate::detection::Candidate;

/// Intersection over union of two `[x0, y0, x1, y1]` boxes (0 when either is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Keep the highest-scoring candidates, dropping any that overlaps a kept one of the same class
/// (any class when `class_agnostic`) by more than `iou_threshold`. At most `max_keep` survive.
/// Candidates with non-finite scores or boxes are discarded first.
pub fn nms(
    mut cands: Vec<Candidate>,
    iou_threshold: f32,
    class_agnostic: bool,
    max_keep: usize,
) -> Vec<Candidate> {
    nms_capped(
        &mut cands,
        iou_threshold,
        class_agnostic,
        usize::MAX,
        max_keep,
    )
}

/// [`nms`] with a bound per class too, on a caller's buffer (sorted in place, left in any order):
/// the greedy pass in score order keeps at most `max_per_class` boxes of each class (with
/// `class_agnostic`, of all classes together) and `max_keep` in all, best first. The same result
/// as per-class NMS keeping `max_per_class` each, then the best `max_keep` of their union.
pub fn nms_capped(
    cands: &mut Vec<Candidate>,
    iou_threshold: f32,
    class_agnostic: bool,
    max_per_class: usize,
    max_keep: usize,
) -> Vec<Candidate> {
    cands.retain(|c| c.score.is_finite() && c.bbox.iter().all(|v| v.is_finite()));
    // stable: equal scores keep the model's order
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Candidate> = Vec::with_capacity(max_keep.min(cands.len()));
    for c in cands.iter() {
        if keep.len() >= max_keep {
            break;
        }
        let same = |k: &&Candidate| class_agnostic || k.class_id == c.class_id;
        if keep.iter().filter(same).count() >= max_per_class {
            continue;
        }
        let suppressed = keep
            .iter()
            .filter(same)
            .any(|k| iou(&k.bbox, &c.bbox) > iou_threshold);
        if !suppressed {
            keep.push(*c);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(class_id: u32, score: f32, bbox: [f32; 4]) -> Candidate {
        Candidate {
            class_id,
            score,
            bbox,
        }
    }

    #[test]
    fn iou_known_values() {
        let a = [0.0, 0.0, 2.0, 2.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[2.0, 2.0, 3.0, 3.0]), 0.0);
        // overlap 1x2 = 2, union 4 + 4 - 2 = 6
        assert!((iou(&a, &[1.0, 0.0, 3.0, 2.0]) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn suppresses_overlaps_within_a_class_only() {
        let out = nms(
            vec![
                c(0, 0.8, [0.0, 0.0, 1.0, 1.0]),
                c(0, 0.9, [0.05, 0.0, 1.05, 1.0]),
                c(1, 0.7, [0.0, 0.0, 1.0, 1.0]),
                c(0, 0.6, [2.0, 2.0, 3.0, 3.0]),
            ],
            0.5,
            false,
            10,
        );
        let got: Vec<(u32, f32)> = out.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (1, 0.7), (0, 0.6)]);
        let agnostic = nms(
            vec![
                c(0, 0.9, [0.0, 0.0, 1.0, 1.0]),
                c(1, 0.7, [0.0, 0.0, 1.0, 1.0]),
            ],
            0.5,
            true,
            10,
        );
        assert_eq!(agnostic.len(), 1);
    }

    #[test]
    fn non_finite_candidates_are_dropped_and_max_keep_holds() {
        let out = nms(
            vec![
                c(0, f32::NAN, [0.0, 0.0, 1.0, 1.0]),
                c(0, 0.5, [0.0, f32::INFINITY, 1.0, 1.0]),
                c(0, 0.4, [0.0, 0.0, 1.0, 1.0]),
                c(0, 0.3, [5.0, 5.0, 6.0, 6.0]),
            ],
            0.5,
            false,
            1,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 0.4);
    }
}
