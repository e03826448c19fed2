//! MediaPipe BlazeFace: SSD-style anchors on fixed grids, sigmoid scores, boxes as offsets from the
//! anchor centre in input pixels; NMS outside the graph.

use super::{Candidate, OutputTensor};
use crate::error::Result;

/// Anchor centres, normalised: for each layer, rows top to bottom, cells left to right,
/// `per_cell` anchors at each cell centre `((x + 0.5) / cells, (y + 0.5) / cells)`.
pub fn anchors(cells: &[u32], per_cell: &[u32]) -> Vec<[f32; 2]> {
    let mut v = Vec::new();
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
    for (i, anchor) in anchors.iter().enumerate() {
        let score = sigmoid(scores.data[i]);
        if !super::passes(score, threshold) {
            continue;
        }
        let r = &boxes.data[i * stride..i * stride + 4];
        let (cx, cy) = (anchor[0] + r[0] / w, anchor[1] + r[1] / h);
        let (bw, bh) = (r[2] / w, r[3] / h);
        let bbox = [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0];
        if bbox.iter().any(|v| !v.is_finite()) || bw <= 0.0 || bh <= 0.0 {
            continue;
        }
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
}
