//! TensorFlow Object Detection API SSD outputs (post-processing inside the graph).

use super::{Candidate, OutputTensor};
use crate::error::Result;

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
}
