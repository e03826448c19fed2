//! Ultralytics YOLO raw outputs: v8/v11 `[1, 4 + C, N]` and v5 `[1, N, 5 + C]`, boxes as
//! centre x, centre y, width, height in input pixels. NMS is done by the caller.

use super::{Candidate, OutputTensor};
use crate::card::YoloLayout;
use crate::error::{Error, Result};

/// Which layout an output of `shape` has for a model of `classes` classes.
pub fn resolve_layout(
    out: &OutputTensor<'_>,
    layout: YoloLayout,
    classes: usize,
) -> Result<YoloLayout> {
    if out.shape.len() != 3 || out.shape[0] != 1 {
        return Err(out.shape_error(&format!(
            "a YOLO output of shape [1, 4+C, N] or [1, N, 5+C] (C = {classes} labels in the card)"
        )));
    }
    let (d1, d2) = (out.shape[1], out.shape[2]);
    let Some(c) = i64::try_from(classes)
        .ok()
        .filter(|&c| c <= i64::from(u32::MAX))
    else {
        return Err(out.shape_error(&format!(
            "a YOLO output for at most {} classes, not {classes}",
            u32::MAX
        )));
    };
    let v8 = d1 == 4 + c;
    let v5 = d2 == 5 + c;
    match layout {
        YoloLayout::V8 if v8 => Ok(YoloLayout::V8),
        YoloLayout::V5 if v5 => Ok(YoloLayout::V5),
        YoloLayout::Auto if v8 && !v5 => Ok(YoloLayout::V8),
        YoloLayout::Auto if v5 && !v8 => Ok(YoloLayout::V5),
        YoloLayout::Auto if v5 && v8 => Err(Error::ModelOutput {
            output: out.name.to_owned(),
            message: format!(
                "shape {:?} fits both YOLO layouts; set output.layout = \"v8\" or \"v5\" in the card",
                out.shape
            ),
        }),
        _ => Err(out.shape_error(&format!(
            "layout {layout:?}: [1, {}, N] (v8) or [1, N, {}] (v5) for the card's {classes} labels",
            4 + c,
            5 + c
        ))),
    }
}

/// Decode candidates above `threshold`, boxes normalised by the input size `(w, h)`.
pub fn decode(
    out: &OutputTensor<'_>,
    layout: YoloLayout,
    classes: usize,
    input: (u32, u32),
    threshold: f32,
) -> Result<Vec<Candidate>> {
    let layout = resolve_layout(out, layout, classes)?;
    out.check_len()?;
    let (w, h) = (input.0 as f32, input.1 as f32);
    let d = out.data;
    let mut v = Vec::new();
    let mut push = |cx: f32, cy: f32, bw: f32, bh: f32, class_id: usize, score: f32| {
        let Some(score) = super::accept_score(score, threshold) else {
            return;
        };
        if !(bw > 0.0 && bh > 0.0) {
            return;
        }
        let Some(bbox) = super::usable_box([
            (cx - bw / 2.0) / w,
            (cy - bh / 2.0) / h,
            (cx + bw / 2.0) / w,
            (cy + bh / 2.0) / h,
        ]) else {
            return;
        };
        let Ok(class_id) = u32::try_from(class_id) else {
            return;
        };
        v.push(Candidate {
            class_id,
            score,
            bbox,
        });
    };
    match layout {
        YoloLayout::V8 => {
            // `check_len` passed: `d` holds (4 + classes) rows of `n`.
            let n = out.dim(2)?;
            if n == 0 {
                return Ok(v);
            }
            let rows: Vec<&[f32]> = d.chunks_exact(n).collect();
            let at = |row: usize, i: usize| {
                rows.get(row)
                    .and_then(|r| r.get(i))
                    .copied()
                    .unwrap_or(f32::NAN)
            };
            for i in 0..n {
                let (best, score) = argmax((0..classes).map(|c| at(4 + c, i)));
                push(at(0, i), at(1, i), at(2, i), at(3, i), best, score);
            }
        }
        _ => {
            let stride = classes
                .checked_add(5)
                .ok_or_else(|| out.shape_error("fewer classes"))?;
            for row in d.chunks_exact(stride) {
                let Some((&[cx, cy, bw, bh, obj], scores)) = row.split_first_chunk::<5>() else {
                    continue;
                };
                if !super::passes(obj, threshold) {
                    continue;
                }
                let (best, cls) = argmax(scores.iter().copied());
                push(cx, cy, bw, bh, best, obj * cls);
            }
        }
    }
    Ok(v)
}

/// Index and value of the largest finite element (NaN never wins).
fn argmax(it: impl Iterator<Item = f32>) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, x) in it.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v8_layout_transposed_rows() -> Result<()> {
        // 2 classes, 3 anchors; rows: cx, cy, w, h, c0, c1
        let data = [
            32.0,
            10.0,
            0.0, // cx
            32.0,
            10.0,
            0.0, // cy
            16.0,
            4.0,
            0.0, // w
            32.0,
            4.0,
            0.0, // h
            0.1,
            0.7,
            0.0, // class 0
            0.9,
            0.2,
            f32::NAN, // class 1
        ];
        let out = OutputTensor::new("output0", &[1, 6, 3], &data);
        let d = decode(&out, YoloLayout::Auto, 2, (64, 64), 0.5)?;
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].class_id, d[0].score), (1, 0.9));
        assert_eq!(d[0].bbox, [0.375, 0.25, 0.625, 0.75]);
        assert_eq!((d[1].class_id, d[1].score), (0, 0.7));
        Ok(())
    }

    #[test]
    fn v5_layout_multiplies_objectness() -> Result<()> {
        let data = [
            32.0, 32.0, 16.0, 32.0, 0.8, 0.25, 1.0, // 0.8 * 1.0 class 1
            32.0, 32.0, 16.0, 32.0, 0.4, 1.0, 0.0, // objectness below threshold
        ];
        let out = OutputTensor::new("output0", &[1, 2, 7], &data);
        let d = decode(&out, YoloLayout::Auto, 2, (64, 64), 0.5)?;
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].class_id, d[0].score), (1, 0.8));
        Ok(())
    }

    #[test]
    fn shape_that_fits_no_layout_names_the_output() {
        let out = OutputTensor::new("output0", &[1, 9, 3], &[0.0; 27]);
        let msg = decode(&out, YoloLayout::Auto, 2, (64, 64), 0.5)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("output0"), "{msg}");
        assert!(msg.contains("[1, 6, N]"), "{msg}");
    }

    /// One YOLOv8 candidate (2 classes) on a 64x64 input.
    fn v8(cx: f32, cy: f32, w: f32, h: f32, p0: f32, p1: f32) -> Result<Vec<Candidate>> {
        let data = [cx, cy, w, h, p0, p1];
        decode(
            &OutputTensor::new("output0", &[1, 6, 1], &data),
            YoloLayout::V8,
            2,
            (64, 64),
            0.5,
        )
    }

    #[test]
    fn non_finite_and_degenerate_candidates_are_dropped() -> Result<()> {
        assert_eq!(v8(32.0, 32.0, 16.0, 16.0, 0.9, 0.1)?.len(), 1);
        let nan = f32::NAN;
        let inf = f32::INFINITY;
        for (cx, cy, w, h) in [
            (nan, 32.0, 16.0, 16.0),
            (32.0, inf, 16.0, 16.0),
            (32.0, 32.0, nan, 16.0),
            (32.0, 32.0, 16.0, -inf),
            (32.0, 32.0, inf, 16.0),
            (32.0, 32.0, -16.0, 16.0),
            (32.0, 32.0, 0.0, 16.0),
            (1e9, 1e9, 16.0, 16.0), // far outside the input: empty once clamped
        ] {
            assert!(v8(cx, cy, w, h, 0.9, 0.1)?.is_empty(), "{cx} {cy} {w} {h}");
        }
        for p in [nan, inf, -inf] {
            assert!(v8(32.0, 32.0, 16.0, 16.0, p, p)?.is_empty(), "{p}");
        }
        // NaN never wins the argmax; an absurd score is reported as 1.
        let d = v8(32.0, 32.0, 16.0, 16.0, nan, 0.8)?;
        assert_eq!((d[0].class_id, d[0].score), (1, 0.8));
        let d = v8(32.0, 32.0, 1e6, 1e6, 1e30, 0.0)?;
        assert_eq!((d[0].class_id, d[0].score), (0, 1.0));
        assert_eq!(d[0].bbox, [0.0, 0.0, 1.0, 1.0]);
        // A box as large as f32 allows is clamped to the frame.
        let d = v8(32.0, 32.0, f32::MAX, f32::MAX, 0.9, 0.0)?;
        assert_eq!(d[0].bbox, [0.0, 0.0, 1.0, 1.0]);
        // YOLOv5: NaN or infinite objectness, and a product that overflows.
        for (obj, cls) in [(nan, 0.9), (0.9, nan), (inf, 0.9), (1e30, 1e30)] {
            let data = [32.0, 32.0, 16.0, 16.0, obj, cls, 0.0];
            let d = decode(
                &OutputTensor::new("output0", &[1, 1, 7], &data),
                YoloLayout::V5,
                2,
                (64, 64),
                0.5,
            )?;
            assert!(d.is_empty(), "{obj} {cls}");
        }
        // A zero input size makes every box infinite: nothing, no panic.
        let data = [32.0, 32.0, 16.0, 16.0, 0.9, 0.1];
        let out = OutputTensor::new("output0", &[1, 6, 1], &data);
        assert!(decode(&out, YoloLayout::V8, 2, (0, 0), 0.5)?.is_empty());
        Ok(())
    }

    #[test]
    fn shape_that_does_not_match_the_data_is_an_error_not_a_panic() {
        for (shape, len) in [
            (vec![1, 6, 100], 6),
            (vec![1, 100, 7], 7),
            (vec![1, 6, -1], 6),
            (vec![1, 6, i64::MAX], 6),
        ] {
            let data = vec![0.5; len];
            let out = OutputTensor::new("output0", &shape, &data);
            for layout in [YoloLayout::Auto, YoloLayout::V8, YoloLayout::V5] {
                let msg = decode(&out, layout, 2, (64, 64), 0.5)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                assert!(msg.contains("output0"), "{shape:?} {layout:?}: {msg}");
            }
        }
        let out = OutputTensor::new("output0", &[1, 6, 1], &[0.0; 6]);
        assert!(decode(&out, YoloLayout::Auto, usize::MAX, (64, 64), 0.5).is_err());
    }
}
