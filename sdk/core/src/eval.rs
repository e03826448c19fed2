//! Scoring tracks against a ground truth: the field's tracking metrics (CLEAR MOT's MOTA, and
//! IDF1) and the error of line counts.
//!
//! Both sides are [`Sequence`]s: boxes by frame with ids, normalised to the frame (read from
//! MOTChallenge files with [`crate::mot`]).
//!
//! # CLEAR MOT (MOTA, MOTP)
//!
//! Frame by frame, a ground-truth box and a track box may match when their IoU is at least the
//! threshold (0.5 in MOTChallenge). Pairs matched in the previous frame in which they were both
//! present are kept first if they still may match; the other boxes are then matched by a minimum
//! cost assignment (cost `1 - IoU`) that first maximises the number of matches. A ground-truth
//! identity matched to a different track than its last match is an identity switch. With `FN`
//! the unmatched ground-truth boxes, `FP` the unmatched track boxes and `IDSW` the switches,
//! `MOTA = 1 - (FN + FP + IDSW) / GT` and MOTP is the mean IoU of the matches. This is what
//! py-motmetrics computes (`MOTAccumulator`, `distth = 0.5` on `1 - IoU`).
//!
//! # IDF1
//!
//! Over the whole sequence, each ground-truth identity is paired with at most one track id (and
//! the reverse) so that the number of boxes they share (same frame, IoU at least the threshold)
//! is largest, by one global assignment. With `IDTP` those shared boxes,
//! `IDF1 = 2 IDTP / (GT boxes + track boxes)`; IDP and IDR divide `IDTP` by the track boxes and
//! the ground-truth boxes.
//!
//! # Line counts
//!
//! [`line_counts`] runs the rules engine ([`Rules`]) over a sequence's bottom-centres, exactly as
//! `ocellus run` counts tracks, so ground-truth crossings and a tracker's crossings are derived by
//! the same hysteresis and segment test. [`line_error`] sums `|counted − truth|` over every line
//! and direction and divides by the true crossings.
//!
//! # Bounds
//!
//! At most [`MAX_IDS`] identities on either side (the global assignment is cubic in them) and
//! [`MAX_BOXES_PER_FRAME`] boxes per frame on either side; more is refused with an error that says
//! which.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::mot::Sequence;
use crate::nms::iou;
use crate::rules::{Direction, LineRule, RuleEventKind, Rules, RulesConfig};
use crate::track::{Track, TrackState, TrackerOutput};

/// Most distinct ids on one side of an evaluation (the identity assignment holds a matrix of
/// ground-truth ids × track ids).
pub const MAX_IDS: usize = 2_000;
/// Most boxes one frame may hold on one side.
pub const MAX_BOXES_PER_FRAME: usize = 1_000;
/// Most lines one [`line_counts`] call takes.
pub const MAX_LINES: usize = 1_000;

/// Tracking metrics of one sequence.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TrackingMetrics {
    /// Ground-truth boxes.
    pub gt_boxes: u64,
    /// Track boxes.
    pub track_boxes: u64,
    /// Ground-truth identities.
    pub gt_ids: u64,
    /// Track ids.
    pub track_ids: u64,
    /// Matched boxes (CLEAR MOT).
    pub matches: u64,
    /// Ground-truth boxes no track matched.
    pub false_negatives: u64,
    /// Track boxes that matched no ground truth.
    pub false_positives: u64,
    /// Identity switches.
    pub id_switches: u64,
    /// `1 - (FN + FP + IDSW) / GT`.
    pub mota: f64,
    /// Mean IoU of the matches.
    pub motp_iou: f64,
    /// Matched boxes over ground-truth boxes.
    pub recall: f64,
    /// Matched boxes over track boxes.
    pub precision: f64,
    /// Boxes shared by identity pairs in the best global assignment.
    pub idtp: u64,
    /// `2 IDTP / (GT + track boxes)`.
    pub idf1: f64,
    /// `IDTP / track boxes`.
    pub idp: f64,
    /// `IDTP / GT boxes`.
    pub idr: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn check_bounds(side: &str, seq: &Sequence) -> Result<BTreeSet<u64>> {
    let mut ids = BTreeSet::new();
    for (frame, boxes) in seq {
        if boxes.len() > MAX_BOXES_PER_FRAME {
            return Err(Error::InvalidOption {
                name: side.to_owned(),
                message: format!(
                    "frame {frame} has {} boxes, more than the {MAX_BOXES_PER_FRAME} an evaluation takes",
                    boxes.len()
                ),
            });
        }
        ids.extend(boxes.iter().map(|(id, _)| *id));
        if ids.len() > MAX_IDS {
            return Err(Error::InvalidOption {
                name: side.to_owned(),
                message: format!("more than {MAX_IDS} distinct ids"),
            });
        }
    }
    Ok(ids)
}

/// Score `tracks` against `truth`: CLEAR MOT and IDF1 at the IoU `threshold` (MOTChallenge:
/// 0.5). Errors when a side is beyond the bounds of the module docs.
pub fn tracking_metrics(
    truth: &Sequence,
    tracks: &Sequence,
    threshold: f32,
) -> Result<TrackingMetrics> {
    let gt_ids = check_bounds("ground truth", truth)?;
    let track_ids = check_bounds("tracks", tracks)?;
    let empty = Vec::new();
    let frames: BTreeSet<u64> = truth.keys().chain(tracks.keys()).copied().collect();

    // CLEAR MOT
    let mut last_match: HashMap<u64, u64> = HashMap::new(); // gt id → track id, ever
    let mut prev_pairs: HashMap<u64, u64> = HashMap::new(); // gt id → track id, previous frame
    let (mut matches, mut fn_, mut fp, mut idsw) = (0u64, 0u64, 0u64, 0u64);
    let mut iou_sum = 0.0f64;
    // IDF1: shared boxes of (gt id, track id)
    let mut shared: HashMap<(u64, u64), u64> = HashMap::new();
    let (mut gt_boxes, mut track_boxes) = (0u64, 0u64);
    for frame in frames {
        let g = truth.get(&frame).unwrap_or(&empty);
        let t = tracks.get(&frame).unwrap_or(&empty);
        gt_boxes += g.len() as u64;
        track_boxes += t.len() as u64;
        let overlap: Vec<Vec<f32>> = g
            .iter()
            .map(|(_, gb)| t.iter().map(|(_, tb)| iou(gb, tb)).collect())
            .collect();
        for (gi, (gid, _)) in g.iter().enumerate() {
            for (ti, (tid, _)) in t.iter().enumerate() {
                if overlap[gi][ti] >= threshold {
                    *shared.entry((*gid, *tid)).or_default() += 1;
                }
            }
        }
        let pairs = frame_pairs(g, t, &overlap, &prev_pairs, threshold);
        prev_pairs.clear();
        for &(gi, ti) in &pairs {
            let (gid, tid) = (g[gi].0, t[ti].0);
            if last_match.get(&gid).is_some_and(|&m| m != tid) {
                idsw += 1;
            }
            last_match.insert(gid, tid);
            prev_pairs.insert(gid, tid);
            iou_sum += f64::from(overlap[gi][ti]);
        }
        matches += pairs.len() as u64;
        fn_ += (g.len() - pairs.len()) as u64;
        fp += (t.len() - pairs.len()) as u64;
    }

    let idtp = identity_true_positives(&gt_ids, &track_ids, &shared);

    Ok(TrackingMetrics {
        gt_boxes,
        track_boxes,
        gt_ids: gt_ids.len() as u64,
        track_ids: track_ids.len() as u64,
        matches,
        false_negatives: fn_,
        false_positives: fp,
        id_switches: idsw,
        mota: if gt_boxes == 0 {
            0.0
        } else {
            1.0 - (fn_ + fp + idsw) as f64 / gt_boxes as f64
        },
        motp_iou: if matches == 0 {
            0.0
        } else {
            iou_sum / matches as f64
        },
        recall: ratio(matches, gt_boxes),
        precision: ratio(matches, track_boxes),
        idtp,
        idf1: ratio(2 * idtp, gt_boxes + track_boxes),
        idp: ratio(idtp, track_boxes),
        idr: ratio(idtp, gt_boxes),
    })
}

/// One frame's CLEAR MOT pairs `(truth index, track index)`: last frame's pairs that still
/// overlap enough are kept, then the rest get a minimum-cost assignment, most matches first.
fn frame_pairs(
    g: &[(u64, [f32; 4])],
    t: &[(u64, [f32; 4])],
    overlap: &[Vec<f32>],
    prev_pairs: &HashMap<u64, u64>,
    threshold: f32,
) -> Vec<(usize, usize)> {
    let mut g_used = vec![false; g.len()];
    let mut t_used = vec![false; t.len()];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    // keep last frame's pairs that still may match
    for (gi, (gid, _)) in g.iter().enumerate() {
        let Some(&tid) = prev_pairs.get(gid) else {
            continue;
        };
        if let Some(ti) = t.iter().position(|(id, _)| *id == tid)
            && !t_used[ti]
            && overlap[gi][ti] >= threshold
        {
            g_used[gi] = true;
            t_used[ti] = true;
            pairs.push((gi, ti));
        }
    }
    // then a minimum-cost assignment of the rest, most matches first
    let rows: Vec<usize> = (0..g.len()).filter(|&i| !g_used[i]).collect();
    let cols: Vec<usize> = (0..t.len()).filter(|&j| !t_used[j]).collect();
    if !rows.is_empty() && !cols.is_empty() {
        let cost: Vec<Vec<Option<f64>>> = rows
            .iter()
            .map(|&gi| {
                cols.iter()
                    .map(|&ti| {
                        let o = overlap[gi][ti];
                        (o >= threshold).then(|| 1.0 - f64::from(o))
                    })
                    .collect()
            })
            .collect();
        for (r, c) in assign_min_cost(&cost) {
            pairs.push((rows[r], cols[c]));
        }
    }
    pairs
}

/// The IDF1 numerator: one global assignment of identities that shares the most boxes.
fn identity_true_positives(
    gt_ids: &BTreeSet<u64>,
    track_ids: &BTreeSet<u64>,
    shared: &HashMap<(u64, u64), u64>,
) -> u64 {
    let gt_index: BTreeMap<u64, usize> =
        gt_ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let tr_index: BTreeMap<u64, usize> = track_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();
    // every pair is allowed (a pair sharing nothing costs the most), so a full assignment is
    // made and its cost, `pairs × top − shared boxes`, is least where the shared boxes are most
    let top = shared.values().copied().max().unwrap_or(0) as f64;
    let mut weight = vec![vec![Some(top); tr_index.len()]; gt_index.len()];
    for (&(g, t), &n) in shared {
        if let (Some(&gi), Some(&ti)) = (gt_index.get(&g), tr_index.get(&t)) {
            weight[gi][ti] = Some(top - n as f64);
        }
    }
    if gt_index.is_empty() || tr_index.is_empty() {
        return 0;
    }
    let (gts, trs): (Vec<u64>, Vec<u64>) = (
        gt_ids.iter().copied().collect(),
        track_ids.iter().copied().collect(),
    );
    assign_min_cost(&weight)
        .into_iter()
        .filter_map(|(gi, ti)| shared.get(&(*gts.get(gi)?, *trs.get(ti)?)))
        .sum()
}

/// A minimum-cost assignment of rows to columns, where `None` marks a pair that may not be
/// assigned: as many pairs as possible are assigned, and among those the cheapest set. Returns
/// `(row, column)` pairs. Costs are expected in `0..=1e6`.
///
/// The shortest-augmenting-path form of the Hungarian method (Jonker–Volgenant potentials),
/// `O(n² m)` for `n ≤ m`; forbidden pairs take a cost larger than any set of allowed ones and
/// are dropped from the result.
pub fn assign_min_cost(cost: &[Vec<Option<f64>>]) -> Vec<(usize, usize)> {
    let n_rows = cost.len();
    let n_cols = cost.iter().map(Vec::len).max().unwrap_or(0);
    if n_rows == 0 || n_cols == 0 {
        return Vec::new();
    }
    // forbidden: dearer than assigning every row at the dearest allowed cost
    let dearest = cost.iter().flatten().flatten().fold(0.0f64, |m, &c| {
        if c.is_finite() { m.max(c.abs()) } else { m }
    });
    let forbidden = (dearest + 1.0) * (n_rows.max(n_cols) as f64 + 1.0);
    let transpose = n_rows > n_cols;
    let (n, m) = if transpose {
        (n_cols, n_rows)
    } else {
        (n_rows, n_cols)
    };
    let at = |i: usize, j: usize| -> f64 {
        let (r, c) = if transpose { (j, i) } else { (i, j) };
        match cost.get(r).and_then(|row| row.get(c)).copied().flatten() {
            Some(v) if v.is_finite() => v,
            _ => forbidden,
        }
    };
    // 1-based arrays as in the textbook form: row 0 / column 0 are the virtual start
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut p = vec![0usize; m + 1]; // p[j]: row assigned to column j
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let cur = at(i0 - 1, j - 1) - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            if j1 == 0 {
                break; // cannot happen with finite costs; keeps the loop bounded regardless
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = Vec::new();
    for (j, &row) in p.iter().enumerate().skip(1) {
        if row == 0 {
            continue;
        }
        let (i, jj) = (row - 1, j - 1);
        let (r, c) = if transpose { (jj, i) } else { (i, jj) };
        if cost
            .get(r)
            .and_then(|row| row.get(c))
            .copied()
            .flatten()
            .is_some_and(f64::is_finite)
        {
            out.push((r, c));
        }
    }
    out.sort_unstable();
    out
}

/// Crossings of one line: `[a_to_b, b_to_a]`.
pub type Crossings = [u64; 2];

/// Count the crossings of every line by the sequence's bottom-centres, with the rules engine
/// (`cfg`'s hysteresis). Frames are visited in order; a frame missing from the sequence counts
/// as a frame in which nobody was observed.
pub fn line_counts(
    seq: &Sequence,
    lines: &[LineRule],
    cfg: &RulesConfig,
) -> Result<Vec<Crossings>> {
    if lines.len() > MAX_LINES {
        return Err(Error::InvalidOption {
            name: "lines".into(),
            message: format!("{} lines, at most {MAX_LINES}", lines.len()),
        });
    }
    let index: HashMap<&str, usize> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    let mut rules = Rules::new(lines.to_vec(), Vec::new(), cfg.clone())?;
    let mut counts = vec![[0u64; 2]; lines.len()];
    let label: std::sync::Arc<str> = std::sync::Arc::from("person");
    for (&frame, boxes) in seq {
        let observed = boxes
            .iter()
            .map(|&(id, bbox)| Track {
                id,
                label: label.clone(),
                class_id: 1,
                score: 1.0,
                bbox,
                state: TrackState::Tracked,
                hits: 1,
                first_frame: frame,
                last_frame: frame,
            })
            .collect();
        let out = TrackerOutput {
            observed,
            ended: Vec::new(),
        };
        for e in rules.update(frame, Duration::ZERO, &out) {
            if let (RuleEventKind::LineCrossed { direction }, Some(&i)) =
                (&e.kind, index.get(&*e.rule))
            {
                let k = match direction {
                    Direction::AToB => 0,
                    Direction::BToA => 1,
                };
                counts[i][k] += 1;
            }
        }
    }
    Ok(counts)
}

/// The line-count error: `Σ |counted − truth|` over every line and direction, and that sum over
/// the true crossings (0 when there are none).
pub fn line_error(truth: &[Crossings], counted: &[Crossings]) -> (u64, u64, f64) {
    let mut abs = 0u64;
    let mut total = 0u64;
    for (t, c) in truth.iter().zip(counted) {
        for k in 0..2 {
            abs += t[k].abs_diff(c[k]);
            total += t[k];
        }
    }
    (abs, total, ratio(abs, total))
}

/// `n` counting lines placed at random where people walk, reproducibly from `seed`: each is
/// centred on a bottom-centre drawn from `feet` (so busy places get more lines, as a pilot would
/// place them), at a uniform angle, 0.15 to 0.45 of the frame long, clipped to the frame. Named
/// `r00`, `r01`, …
pub fn random_lines(n: usize, seed: u64, feet: &[[f32; 2]]) -> Vec<LineRule> {
    let mut rng = SplitMix64(seed);
    let mut lines = Vec::new();
    if feet.is_empty() {
        return lines;
    }
    while lines.len() < n.min(MAX_LINES) {
        let k = (rng.next() % feet.len() as u64) as usize;
        let [cx, cy] = feet[k].map(f64::from);
        let angle = rng.unit() * std::f64::consts::PI;
        let half = (0.15 + 0.30 * rng.unit()) / 2.0;
        let (dx, dy) = (half * angle.cos(), half * angle.sin());
        let a = [
            (cx - dx).clamp(0.0, 1.0) as f32,
            (cy - dy).clamp(0.0, 1.0) as f32,
        ];
        let b = [
            (cx + dx).clamp(0.0, 1.0) as f32,
            (cy + dy).clamp(0.0, 1.0) as f32,
        ];
        let len = f32::hypot(b[0] - a[0], b[1] - a[1]);
        if len < 0.05 {
            continue; // clipped to a stub at a corner: draw again
        }
        lines.push(LineRule {
            name: format!("r{:02}", lines.len()),
            a,
            b,
            labels: Vec::new(),
        });
    }
    lines
}

/// Bottom-centres of every box in a sequence, in frame order (the walkable area, as seen).
pub fn feet(seq: &Sequence) -> Vec<[f32; 2]> {
    seq.values()
        .flatten()
        .map(|(_, [x0, _, x1, y1])| [(x0 + x1) / 2.0, *y1])
        .filter(|p| p.iter().all(|c| c.is_finite()))
        .collect()
}

/// A small, fixed pseudo-random generator (SplitMix64): the same seed gives the same lines on
/// every machine and in every version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn b(x: f32, y: f32) -> [f32; 4] {
        [x, y, x + 0.1, y + 0.2]
    }

    #[test]
    fn assignment_is_the_cheapest_of_the_largest() {
        let c = |v: f64| Some(v);
        // greedy would take (0,0) at 0.1 and leave row 1 alone; two matches are better
        let cost = vec![vec![c(0.1), c(0.2)], vec![c(0.3), None]];
        assert_eq!(assign_min_cost(&cost), vec![(0, 1), (1, 0)]);
        // rectangular both ways, forbidden pairs dropped
        let cost = vec![vec![c(0.5)], vec![c(0.2)], vec![None]];
        assert_eq!(assign_min_cost(&cost), vec![(1, 0)]);
        let cost = vec![vec![None, c(0.9), c(0.1)]];
        assert_eq!(assign_min_cost(&cost), vec![(0, 2)]);
        assert!(assign_min_cost(&[vec![None, None]]).is_empty());
        // a 3×3 with a known optimum (4 + 2 + 1 = 7 beats the diagonal's 1 + 5 + 9)
        let cost = vec![
            vec![c(1.0), c(4.0), c(5.0)],
            vec![c(2.0), c(5.0), c(1.0)],
            vec![c(4.0), c(2.0), c(9.0)],
        ];
        let pairs = assign_min_cost(&cost);
        let total: f64 = pairs.iter().map(|&(r, k)| cost[r][k].unwrap()).sum();
        assert_eq!(total, 4.0, "{pairs:?}");
    }

    #[test]
    fn a_perfect_tracker_scores_one_and_a_switch_is_counted() {
        let mut truth = Sequence::new();
        for f in 1..=10u64 {
            let x = f as f32 * 0.02;
            truth.insert(f, vec![(1, b(x, 0.1)), (2, b(0.8 - x, 0.6))]);
        }
        let m = tracking_metrics(&truth, &truth, 0.5).unwrap();
        assert_eq!((m.mota, m.idf1, m.id_switches), (1.0, 1.0, 0));
        // the tracker changes the id of identity 1 at frame 6 (one switch, IDF1 drops)
        let mut tracks = truth.clone();
        for (f, boxes) in tracks.iter_mut() {
            if *f >= 6 {
                boxes[0].0 = 9;
            }
        }
        let m = tracking_metrics(&truth, &tracks, 0.5).unwrap();
        assert_eq!(m.id_switches, 1);
        assert_eq!(m.matches, 20);
        assert!((m.mota - (1.0 - 1.0 / 20.0)).abs() < 1e-12, "{m:?}");
        assert_eq!(m.idtp, 15, "identity 1 keeps its 5 longer frames (track 9)");
        assert!((m.idf1 - 30.0 / 40.0).abs() < 1e-12, "{m:?}");
        // the identity assignment maximises shared boxes, not pairs: track 7 follows identity 1
        // for 10 frames, then identity 2 for one; track 8 has identity 1 for one frame. Pairing
        // (1, 8) and (2, 7) would make more pairs but share 2 boxes instead of 10.
        let (p1, p2) = (b(0.1, 0.1), b(0.6, 0.6));
        let mut gt = Sequence::new();
        let mut tr = Sequence::new();
        for f in 1..=11u64 {
            gt.insert(f, vec![(1, p1)]);
            tr.insert(f, vec![(if f == 11 { 8 } else { 7 }, p1)]);
        }
        gt.insert(12, vec![(2, p2)]);
        tr.insert(12, vec![(7, p2)]);
        let m = tracking_metrics(&gt, &tr, 0.5).unwrap();
        assert_eq!(m.idtp, 10, "{m:?}");
        // a missed box and a ghost
        let mut tracks = truth.clone();
        tracks.get_mut(&3).unwrap().remove(1);
        tracks.get_mut(&4).unwrap().push((5, b(0.5, 0.5)));
        let m = tracking_metrics(&truth, &tracks, 0.5).unwrap();
        assert_eq!((m.false_negatives, m.false_positives), (1, 1));
    }

    #[test]
    fn crossings_are_counted_per_line_and_direction() {
        // identity 1 walks down through a horizontal line, identity 2 up through it, identity 3
        // passes beside the segment
        let mut seq = Sequence::new();
        for f in 0..20u64 {
            let y = 0.1 + f as f32 * 0.03;
            seq.insert(
                f + 1,
                vec![
                    (1, [0.4, y - 0.2, 0.5, y]),
                    (2, [0.5, 0.8 - y, 0.6, 1.0 - y]),
                    (3, [0.9, y - 0.2, 0.95, y]),
                ],
            );
        }
        let line = LineRule {
            name: "l".into(),
            a: [0.2, 0.45],
            b: [0.8, 0.45],
            labels: Vec::new(),
        };
        let counts = line_counts(&seq, &[line], &RulesConfig::default()).unwrap();
        assert_eq!(counts, vec![[1, 1]]);
        assert_eq!(line_error(&[[3, 1]], &counts), (2, 4, 0.5));
    }

    #[test]
    fn random_lines_are_reproducible_and_inside_the_frame() {
        let feet: Vec<[f32; 2]> = (0..100).map(|i| [i as f32 / 100.0, 0.5]).collect();
        let a = random_lines(24, 18, &feet);
        assert_eq!(a.len(), 24);
        assert_eq!(a, random_lines(24, 18, &feet));
        assert_ne!(a, random_lines(24, 19, &feet));
        for l in &a {
            for c in l.a.iter().chain(&l.b) {
                assert!((0.0..=1.0).contains(c), "{l:?}");
            }
        }
        Rules::new(a, Vec::new(), RulesConfig::default()).unwrap();
    }
}
