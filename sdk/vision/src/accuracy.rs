//! How closely one detector follows another: a quantised model against the fp32 model it was made
//! from, frame by frame.
//!
//! The reference's detections stand in for the truth. In each frame a candidate detection matches
//! the reference detection of the same label with which it overlaps most (IoU at or above the
//! bar), best-scoring candidates first, and each reference detection is matched at most once (the
//! greedy assignment of the PASCAL VOC and COCO evaluations). Then recall is the share of the
//! reference's detections that were matched and precision the share of the candidate's.

use std::collections::BTreeMap;

use serde::Serialize;

use ocellus_core::Detection;
pub use ocellus_core::nms::iou;

/// Matched, missed and extra detections of one label, summed over frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Reference detections the candidate matched.
    pub matched: u64,
    /// Reference detections the candidate missed.
    pub missed: u64,
    /// Candidate detections that match no reference detection.
    pub extra: u64,
    /// Sum over the matches of the candidate's score minus the reference's.
    pub score_delta_sum: f64,
    /// Sum over the matches of their IoU.
    pub iou_sum: f64,
}

impl Counts {
    /// matched / (matched + missed); 1 when the reference found nothing.
    pub fn recall(&self) -> f64 {
        ratio(self.matched, self.matched + self.missed)
    }

    /// matched / (matched + extra); 1 when the candidate found nothing.
    pub fn precision(&self) -> f64 {
        ratio(self.matched, self.matched + self.extra)
    }

    /// The mean of the candidate's score minus the reference's over the matches (0 without
    /// matches): a quantised model that scores everything a little lower shows here first.
    pub fn mean_score_delta(&self) -> f64 {
        mean(self.score_delta_sum, self.matched)
    }

    /// The mean IoU of the matches (0 without matches).
    pub fn mean_iou(&self) -> f64 {
        mean(self.iou_sum, self.matched)
    }
}

fn mean(sum: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { sum / n as f64 }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Most labels a [`Agreement`] keeps counts for; detections of further labels are counted under
/// [`OTHER_LABELS`].
pub const MAX_LABELS: usize = 256;
/// Where the detections of labels beyond [`MAX_LABELS`] are counted.
pub const OTHER_LABELS: &str = "(other labels)";

/// The agreement of a candidate detector with a reference, frame by frame, per label.
#[derive(Debug, Clone)]
pub struct Agreement {
    iou_min: f32,
    frames: u64,
    labels: BTreeMap<String, Counts>,
}

impl Agreement {
    /// Matches need an IoU of at least `iou_min` (0.5 in the PASCAL VOC sense).
    pub fn new(iou_min: f32) -> Agreement {
        Agreement {
            iou_min,
            frames: 0,
            labels: BTreeMap::new(),
        }
    }

    /// The IoU a match needs.
    pub fn iou_min(&self) -> f32 {
        self.iou_min
    }

    /// Frames added.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The counts of one label (all zero for a label never seen).
    pub fn counts(&self, label: &str) -> Counts {
        self.labels.get(label).copied().unwrap_or_default()
    }

    /// Every label seen, with its counts.
    pub fn labels(&self) -> &BTreeMap<String, Counts> {
        &self.labels
    }

    fn entry(&mut self, label: &str) -> &mut Counts {
        let key = if self.labels.contains_key(label) || self.labels.len() < MAX_LABELS {
            label
        } else {
            OTHER_LABELS
        };
        self.labels.entry(key.to_owned()).or_default()
    }

    /// One frame: what the reference and the candidate detected in it.
    pub fn add(&mut self, reference: &[Detection], candidate: &[Detection]) {
        self.frames += 1;
        let mut order: Vec<&Detection> = candidate.iter().collect();
        order.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut taken = vec![false; reference.len()];
        for c in order {
            let best = reference
                .iter()
                .enumerate()
                .filter(|(i, r)| !taken[*i] && r.label == c.label)
                .map(|(i, r)| (i, iou(&r.bbox, &c.bbox)))
                .filter(|&(_, v)| v >= self.iou_min)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((i, overlap)) => {
                    taken[i] = true;
                    let delta =
                        f64::from(c.score) - reference.get(i).map_or(0.0, |r| f64::from(r.score));
                    let e = self.entry(&c.label);
                    e.matched += 1;
                    e.score_delta_sum += delta;
                    e.iou_sum += f64::from(overlap);
                }
                None => self.entry(&c.label).extra += 1,
            }
        }
        for (r, taken) in reference.iter().zip(taken) {
            if !taken {
                self.entry(&r.label).missed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn det(label: &str, score: f32, bbox: [f32; 4]) -> Detection {
        Detection {
            label: Arc::from(label),
            class_id: 1,
            score,
            bbox,
        }
    }

    #[test]
    fn iou_of_boxes() {
        let a = [0.0, 0.0, 0.2, 0.2];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[0.5, 0.5, 0.6, 0.6]), 0.0);
        // half overlapping along x: 0.02 / (0.04 + 0.04 - 0.02)
        let v = iou(&a, &[0.1, 0.0, 0.3, 0.2]);
        assert!((v - 1.0 / 3.0).abs() < 1e-5, "{v}");
        assert_eq!(iou(&[0.1, 0.1, 0.1, 0.1], &[0.1, 0.1, 0.1, 0.1]), 0.0);
    }

    #[test]
    fn matches_missed_and_extra_are_counted_per_label() {
        let mut a = Agreement::new(0.5);
        let p1 = [0.1, 0.1, 0.2, 0.4];
        let p2 = [0.6, 0.1, 0.7, 0.4];
        let reference = [det("person", 0.9, p1), det("person", 0.8, p2)];
        // p1 found slightly shifted; p2 missed; one box where nothing is; a car on p1 is not a person
        let candidate = [
            det("person", 0.85, [0.11, 0.1, 0.21, 0.4]),
            det("person", 0.6, [0.8, 0.8, 0.9, 0.9]),
            det("car", 0.7, p1),
        ];
        a.add(&reference, &candidate);
        let p = a.counts("person");
        assert_eq!((p.matched, p.missed, p.extra), (1, 1, 1));
        assert_eq!(a.counts("car").extra, 1);
        assert!((p.recall() - 0.5).abs() < 1e-9 && (p.precision() - 0.5).abs() < 1e-9);
        assert!((p.mean_score_delta() - (0.85 - 0.9)).abs() < 1e-6);
        assert!((p.mean_iou() - 0.9 / 1.1).abs() < 1e-5, "{}", p.mean_iou());
        assert_eq!(a.frames(), 1);
    }

    #[test]
    fn each_reference_detection_is_matched_once_best_candidate_first() {
        let mut a = Agreement::new(0.5);
        let b = [0.1, 0.1, 0.3, 0.5];
        // two candidates on one reference box: the better-scoring one takes it, the other is extra
        a.add(
            &[det("person", 0.9, b)],
            &[det("person", 0.55, b), det("person", 0.95, b)],
        );
        let p = a.counts("person");
        assert_eq!((p.matched, p.missed, p.extra), (1, 0, 1));
    }

    #[test]
    fn a_box_below_the_iou_bar_does_not_match() {
        let mut a = Agreement::new(0.5);
        a.add(
            &[det("person", 0.9, [0.0, 0.0, 0.2, 0.2])],
            &[det("person", 0.9, [0.1, 0.0, 0.3, 0.2])],
        );
        let p = a.counts("person");
        assert_eq!((p.matched, p.missed, p.extra), (0, 1, 1));
        assert_eq!(Counts::default().recall(), 1.0);
    }

    #[test]
    fn labels_beyond_the_bound_share_one_entry() {
        let mut a = Agreement::new(0.5);
        for i in 0..MAX_LABELS + 10 {
            a.add(&[], &[det(&format!("l{i}"), 0.9, [0.0, 0.0, 0.1, 0.1])]);
        }
        assert_eq!(a.labels().len(), MAX_LABELS + 1);
        assert_eq!(a.counts(OTHER_LABELS).extra, 10);
    }
}
