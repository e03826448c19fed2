//! MediaPipe BlazeFace: SSD-style anchors on fixed grids, sigmoid scores, boxes as offsets from the
//! anchor centre in input pixels; NMS outside the graph.

use super::{Candidate, OutputTensor};
use crate::error::Result;

pub use crate::anchors::{MAX_ANCHORS, layer_anchors, total_anchors};

/// Anchor centres, normalised: for each layer, rows top to bottom, cells left to right,
/// `per_cell` anchors at each cell centre `((x + 0.5) / cells, (y + 0.5) / cells)`.
///
/// Empty when the layout has more than [`MAX_ANCHORS`] anchors (a card refuses such a layout, so
/// this only guards hand-built ones; decoding then reports that the anchors do not fit).
pub fn anchors(cells: &[u32], per_cell: &[u32]) -> Vec<[f32; 2]> {
    let Some(total) = total_anchors(cells, per_cell) else {
        return Vec::new();
    };
    let mut v = Vec::with_capacity(total);
    for (&n, &k) in cells.iter().zip(per_cell) {
        for y in 0..n {
            for x in 0..n {
                let c = [(x as f32 + 0.5) / n as f32, (y as f32 + 0.5) / n as f32];
                v.extend(std::iter::repeat_n(c, k as usize));
            }
        }
    }
    v
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-80.0, 80.0)).exp())
}

/// Decode one anchor layer: `scores [1, A, 1]` logits, `boxes [1, A, >=4]` (dx, dy, w, h, …) in
/// input pixels; `anchors` are this layer's `A` anchor centres; `input` is (width, height).
pub fn decode_layer(
    scores: &OutputTensor<'_>,
    boxes: &OutputTensor<'_>,
    anchors: &[[f32; 2]],
    input: (u32, u32),
    threshold: f32,
    out: &mut Vec<Candidate>,
) -> Result<()> {
    let a = anchors.len();
    scores.expect_shape(&[Some(1), Some(a), Some(1)])?;
    let stride = boxes.dim(2)?;
    boxes.expect_shape(&[Some(1), Some(a), Some(stride.max(4))])?;
    let (w, h) = (input.0 as f32, input.1 as f32);
    for ((anchor, &logit), r) in anchors
        .iter()
        .zip(scores.data)
        .zip(boxes.data.chunks_exact(stride.max(4)))
    {
        let Some(score) = super::accept_score(sigmoid(logit), threshold) else {
            continue;
        };
        let &[dx, dy, bw, bh, ..] = r else {
            continue;
        };
        let (cx, cy) = (anchor[0] + dx / w, anchor[1] + dy / h);
        let (bw, bh) = (bw / w, bh / h);
        if !(bw > 0.0 && bh > 0.0) {
            continue;
        }
        let Some(bbox) =
            super::usable_box([cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0])
        else {
            continue;
        };
        out.push(Candidate {
            class_id: 0,
            score,
            bbox,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_layout_matches_blazeface_back() {
        let a = anchors(&[16, 8], &[2, 6]);
        assert_eq!(a.len(), 896);
        assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[1], a[0]);
        assert_eq!(a[2], [1.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[32], [0.5 / 16.0, 1.5 / 16.0]);
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[895], [7.5 / 8.0, 7.5 / 8.0]);
    }

    #[test]
    fn decodes_offsets_in_input_pixels() -> Result<()> {
        let anchors = [[0.25, 0.25], [0.75, 0.75]];
        // anchor 0: logit 2 (0.88), centre moved +32 px right, 64x32 px box on a 128x128 input
        // anchor 1: logit -2 (0.12), below threshold
        let scores = [2.0, -2.0];
        let boxes = [32.0, 0.0, 64.0, 32.0, 0.0, 0.0, 10.0, 10.0];
        let mut out = Vec::new();
        decode_layer(
            &OutputTensor::new("s", &[1, 2, 1], &scores),
            &OutputTensor::new("b", &[1, 2, 4], &boxes),
            &anchors,
            (128, 128),
            0.5,
            &mut out,
        )?;
        assert_eq!(out.len(), 1);
        assert!((out[0].score - 0.880_797).abs() < 1e-5);
        assert_eq!(out[0].bbox, [0.25, 0.125, 0.75, 0.375]);
        Ok(())
    }

    #[test]
    fn anchor_count_mismatch_is_an_error() {
        let mut out = Vec::new();
        let r = decode_layer(
            &OutputTensor::new("Identity:0", &[1, 3, 1], &[0.0; 3]),
            &OutputTensor::new("b", &[1, 2, 4], &[0.0; 8]),
            &[[0.5, 0.5], [0.5, 0.5]],
            (128, 128),
            0.5,
            &mut out,
        );
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("Identity:0"), "{msg}");
    }

    #[test]
    fn non_finite_and_degenerate_boxes_are_dropped() -> Result<()> {
        let anchors = [[0.5, 0.5]; 8];
        let nan = f32::NAN;
        let inf = f32::INFINITY;
        let scores = [2.0, nan, inf, 2.0, 2.0, 2.0, 2.0, 2.0];
        #[rustfmt::skip]
        let boxes = [
            0.0, 0.0, 32.0, 32.0, // kept
            0.0, 0.0, 32.0, 32.0, // NaN logit
            0.0, 0.0, 32.0, 32.0, // +inf logit: sigmoid 1, kept
            nan, 0.0, 32.0, 32.0,
            0.0, -inf, 32.0, 32.0,
            0.0, 0.0, -32.0, 32.0, // negative width
            0.0, 0.0, 32.0, f32::MAX, // absurdly tall: clamped to the frame's height
            1e9, 0.0, 32.0, 32.0, // far outside: empty once clamped
        ];
        let mut out = Vec::new();
        decode_layer(
            &OutputTensor::new("s", &[1, 8, 1], &scores),
            &OutputTensor::new("b", &[1, 8, 4], &boxes),
            &anchors,
            (128, 128),
            0.5,
            &mut out,
        )?;
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out.iter().all(|c| c.score.is_finite() && c.score <= 1.0));
        assert_eq!(out[0].bbox, [0.375, 0.375, 0.625, 0.625]);
        assert_eq!(out[2].bbox, [0.375, 0.0, 0.625, 1.0]);
        Ok(())
    }

    #[test]
    fn anchor_layouts_beyond_the_cap_give_no_anchors() {
        assert_eq!(layer_anchors(1024, 1024), Some(1 << 30));
        assert_eq!(total_anchors(&[1024], &[1024]), None);
        assert!(anchors(&[1024], &[1024]).is_empty());
        assert_eq!(total_anchors(&[16, 8], &[2, 6]), Some(896));
        assert_eq!(layer_anchors(u32::MAX, u32::MAX), None);
    }
}
