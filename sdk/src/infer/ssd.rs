//! TensorFlow Object Detection API SSD outputs (post-processing inside the graph).

use super::{Candidate, OutputTensor};
use crate::error::Result;

/// Decode `boxes [N,K,4]` (ymin, xmin, ymax, xmax), `scores [N,K]`, `classes [N,K]`, `count [N]`
/// for batch item 0. Rows past `count`, below `threshold` or non-finite are skipped.
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
    let n = count.data[0];
    let n = if n.is_finite() && n > 0.0 {
        (n as usize).min(k)
    } else {
        0
    };
    let mut out = Vec::new();
    for i in 0..n {
        let score = scores.data[i];
        if !super::passes(score, threshold) {
            continue;
        }
        let class = classes.data[i];
        if !class.is_finite() || class < 0.0 || class > u32::MAX as f32 {
            continue;
        }
        let b = &boxes.data[i * 4..i * 4 + 4];
        let (ymin, xmin, ymax, xmax) = (b[0], b[1], b[2], b[3]);
        let bbox = [
            xmin.clamp(0.0, 1.0),
            ymin.clamp(0.0, 1.0),
            xmax.clamp(0.0, 1.0),
            ymax.clamp(0.0, 1.0),
        ];
        if bbox.iter().any(|v| v.is_nan()) {
            continue;
        }
        out.push(Candidate {
            class_id: class.round() as u32,
            score,
            bbox,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
