//! The MOTChallenge text format, for track output and ground truth.
//!
//! One box per line, comma-separated: `frame,id,x,y,w,h,conf,x3d,y3d,z3d`, where `frame` counts
//! from 1, `(x, y)` is the box's top-left corner and `(w, h)` its size, in pixels. Ground-truth
//! files use the seventh column as a flag (0: ignore this box); MOT16 and later add a class in
//! the eighth column and a visibility in the ninth. The 3D columns are `-1` in track output.
//!
//! [`write_observed`] writes what a [`Tracker`](crate::Tracker) observed in one frame, so that any
//! of the field's tools (TrackEval, py-motmetrics) can score it; [`parse`] reads such a file or a
//! ground truth back, refusing a malformed line with its number.

use std::collections::BTreeMap;
use std::io::Write;

use crate::track::TrackerOutput;

/// Most boxes [`parse`] accepts from one file (MOT17's largest ground truth has ~150 000).
pub const MAX_ROWS: usize = 2_000_000;

/// One box of a MOTChallenge file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotBox {
    /// Frame number, from 1.
    pub frame: u64,
    /// Track or identity id.
    pub id: u64,
    /// Box `[x, y, w, h]` in pixels: top-left corner and size.
    pub xywh: [f64; 4],
    /// Seventh column: a tracker's confidence, or a ground truth's "consider" flag.
    pub conf: f64,
    /// Eighth column, when it is an integer class (MOT16 and later ground truth; 1 is pedestrian).
    pub class: Option<i64>,
}

impl MotBox {
    /// The box as `[x0, y0, x1, y1]`, normalised by the frame size.
    pub fn normalised(&self, width: f64, height: f64) -> [f32; 4] {
        let [x, y, w, h] = self.xywh;
        [x / width, y / height, (x + w) / width, (y + h) / height].map(|c| c as f32)
    }
}

/// A malformed MOTChallenge file: the line (from 1) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct MotError {
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong, and what is expected.
    pub message: String,
}

/// Read a MOTChallenge file. Empty lines are skipped; every other line needs at least the six
/// columns `frame,id,x,y,w,h` (frame ≥ 1, finite coordinates, `w, h ≥ 0`); the seventh is 1 when
/// absent.
pub fn parse(text: &str) -> Result<Vec<MotBox>, MotError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if rows.len() >= MAX_ROWS {
            return Err(MotError {
                line: line_no,
                message: format!("more than {MAX_ROWS} boxes; split the sequence"),
            });
        }
        rows.push(parse_line(line).map_err(|message| MotError {
            line: line_no,
            message,
        })?);
    }
    Ok(rows)
}

fn parse_line(line: &str) -> Result<MotBox, String> {
    let cols: Vec<&str> = line.split(',').map(str::trim).collect();
    if cols.len() < 6 {
        return Err(format!(
            "expected `frame,id,x,y,w,h[,conf,...]`, got {} column(s)",
            cols.len()
        ));
    }
    let num = |k: usize, what: &str| -> Result<f64, String> {
        let s = cols.get(k).copied().unwrap_or("");
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!(
                "column {} ({what}) is not a finite number: {s:?}",
                k + 1
            )),
        }
    };
    let whole = |k: usize, what: &str| -> Result<u64, String> {
        let v = num(k, what)?;
        if v < 0.0 || v.fract() != 0.0 || v > 1e15 {
            return Err(format!(
                "column {} ({what}) must be a whole number ≥ 0, got {v}",
                k + 1
            ));
        }
        Ok(v as u64)
    };
    let frame = whole(0, "frame")?;
    if frame == 0 {
        return Err("column 1 (frame) counts from 1, got 0".into());
    }
    let id = whole(1, "id")?;
    let xywh = [num(2, "x")?, num(3, "y")?, num(4, "w")?, num(5, "h")?];
    if xywh[2] < 0.0 || xywh[3] < 0.0 {
        return Err(format!("negative box size w={} h={}", xywh[2], xywh[3]));
    }
    let conf = if cols.len() > 6 { num(6, "conf")? } else { 1.0 };
    let class = cols
        .get(7)
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|c| *c >= 0);
    Ok(MotBox {
        frame,
        id,
        xywh,
        conf,
        class,
    })
}

/// Write the tracks observed in one frame (`seq` counts from 0, as a source's frames do) as
/// MOTChallenge lines, in pixels of a `width` × `height` frame, ordered by track id.
pub fn write_observed(
    out: &mut impl Write,
    seq: u64,
    tracks: &TrackerOutput,
    width: u32,
    height: u32,
) -> std::io::Result<()> {
    let (w, h) = (f64::from(width), f64::from(height));
    let mut observed: Vec<_> = tracks.observed.iter().collect();
    observed.sort_by_key(|t| t.id);
    for t in observed {
        let [x0, y0, x1, y1] = t.bbox.map(f64::from);
        if ![x0, y0, x1, y1].iter().all(|c| c.is_finite()) {
            continue;
        }
        writeln!(
            out,
            "{},{},{:.2},{:.2},{:.2},{:.2},{:.4},-1,-1,-1",
            seq.saturating_add(1),
            t.id,
            x0 * w,
            y0 * h,
            (x1 - x0) * w,
            (y1 - y0) * h,
            t.score
        )?;
    }
    Ok(())
}

/// Boxes by frame: `frame → [(id, [x0, y0, x1, y1] normalised)]`, ids ascending within a frame.
pub type Sequence = BTreeMap<u64, Vec<(u64, [f32; 4])>>;

/// Group boxes by frame, normalised by the frame size. Boxes with `conf == 0` (a ground truth's
/// "ignore") are left out, and so are those whose class is known and not in `classes` (when
/// `classes` is not empty). A box repeated for the same id in the same frame counts once.
pub fn sequence(boxes: &[MotBox], width: u32, height: u32, classes: &[i64]) -> Sequence {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let mut seq = Sequence::new();
    for b in boxes {
        if b.conf == 0.0 {
            continue;
        }
        if !classes.is_empty() && b.class.is_some_and(|c| !classes.contains(&c)) {
            continue;
        }
        seq.entry(b.frame)
            .or_default()
            .push((b.id, b.normalised(w, h)));
    }
    for boxes in seq.values_mut() {
        boxes.sort_by_key(|(id, _)| *id);
        boxes.dedup_by_key(|(id, _)| *id);
    }
    seq
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::track::{Track, TrackState};

    fn track(id: u64, bbox: [f32; 4], score: f32) -> Track {
        Track {
            id,
            label: "person".into(),
            class_id: 1,
            score,
            bbox,
            state: TrackState::Tracked,
            hits: 3,
            first_frame: 0,
            last_frame: 0,
        }
    }

    #[test]
    fn observed_tracks_round_trip_through_the_text_format() {
        let out = TrackerOutput {
            observed: vec![
                track(7, [0.5, 0.25, 0.75, 0.75], 0.9),
                track(2, [0.0, 0.0, 0.1, 0.2], 0.55),
            ],
            ended: vec![track(3, [0.1, 0.1, 0.2, 0.2], 0.8)],
        };
        let mut text = Vec::new();
        write_observed(&mut text, 4, &out, 800, 600).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(
            text,
            "5,2,0.00,0.00,80.00,120.00,0.5500,-1,-1,-1\n\
             5,7,400.00,150.00,200.00,300.00,0.9000,-1,-1,-1\n"
        );
        let rows = parse(&text).unwrap();
        assert_eq!(rows.len(), 2, "ended tracks are not boxes of this frame");
        let seq = sequence(&rows, 800, 600, &[]);
        assert_eq!(
            seq[&5],
            vec![(2, [0.0, 0.0, 0.1, 0.2]), (7, [0.5, 0.25, 0.75, 0.75])]
        );
    }

    #[test]
    fn ground_truth_flags_and_classes_filter_boxes() {
        // MOT15 style (3D columns), MOT16 style (class, visibility), an ignored box
        let text = "1,9,499,158,31.03,75.17,1,-4.1554,-7.3591,0\n\
                    \n\
                    2,4,10,20,30,40,1,1,0.8\n\
                    2,5,10,20,30,40,1,7,0.8\n\
                    3,6,10,20,30,40,0,1,0.8\n";
        let rows = parse(text).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[0].class, None,
            "-4.1554 is a world coordinate, not a class"
        );
        let seq = sequence(&rows, 768, 576, &[1]);
        assert_eq!(seq.len(), 2, "{seq:?}");
        assert_eq!(seq[&2].len(), 1, "class 7 (static person) left out");
        assert!(!seq.contains_key(&3), "conf 0 means ignore");
        assert_eq!(sequence(&rows, 768, 576, &[])[&2].len(), 2);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        for (text, want) in [
            ("1,2,3\n", "line 1: expected"),
            (
                "1,1,0,0,1,1\n0,1,0,0,1,1\n",
                "line 2: column 1 (frame) counts from 1",
            ),
            ("1,1,0,nan,1,1\n", "column 4 (y) is not a finite number"),
            ("1,1.5,0,0,1,1\n", "column 2 (id) must be a whole number"),
            ("1,1,0,0,-1,1\n", "negative box size"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
