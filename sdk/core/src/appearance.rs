//! A cheap appearance cue for the tracker: what colours a person wears.
//!
//! Motion alone cannot tell two people apart once their boxes overlap: people walking in a group
//! swap identities, and a person who reappears from behind another is taken for whoever is
//! nearest. An [`Appearance`] is a colour histogram of the two halves of a person's body (the
//! torso and the legs), read from the central part of the detection's box so that little of the
//! background gets in. Comparing two costs forty square roots; describing a box reads at most
//! [`MAX_SAMPLES`] pixels. No network and no model is involved, so it runs on any camera, but it
//! is a weak cue: two people in dark coats look alike. The tracker uses it only to refuse and to
//! break ties between matches that motion already allows (see [`TrackerConfig::appearance_gate`]).
//!
//! [`TrackerConfig::appearance_gate`]: crate::TrackerConfig::appearance_gate
//!
//! Colours are binned by hue and saturation where a pixel has colour, and by brightness where it
//! has almost none (black, grey and white clothes), so a histogram depends little on how bright
//! the scene is.

use crate::frame::RgbView;

/// Hue sectors of a coloured pixel.
const HUES: usize = 8;
/// Saturation levels of a coloured pixel.
const SATS: usize = 2;
/// Brightness levels of a grey pixel.
const GREYS: usize = 4;
/// Bins per body part.
const BINS: usize = HUES * SATS + GREYS;
/// Body parts: the torso and the legs.
const PARTS: usize = 2;
/// Most pixels read per box (the box is sampled on a grid that fits this).
pub const MAX_SAMPLES: usize = 2048;
/// A pixel below this saturation (or this brightness) counts as grey.
const GREY_SATURATION: f32 = 0.25;
const DARK: f32 = 0.12;
/// Fewer sampled pixels per part than this and the box is too small to describe.
const MIN_PIXELS_PER_PART: usize = 12;

/// What a person wears: a normalised colour histogram of the torso and of the legs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Appearance {
    bins: [[f32; BINS]; PARTS],
}

/// Number of values in an [`Appearance`] ([`Appearance::values`]).
pub const LEN: usize = BINS * PARTS;

impl Appearance {
    /// Its histogram as plain numbers (the torso's bins, then the legs'), for recording.
    pub fn values(&self) -> [f32; LEN] {
        let mut out = [0.0; LEN];
        for (slot, v) in out.iter_mut().zip(self.bins.iter().flatten()) {
            *slot = *v;
        }
        out
    }

    /// A compact text form for recordings: one hexadecimal digit per bin, the bin's square root
    /// in fifteenths ([`LEN`] characters). Distances are sums of square roots, so this keeps
    /// them within a few hundredths.
    pub fn encode(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.bins
            .iter()
            .flatten()
            .map(|v| {
                let q = (v.clamp(0.0, 1.0).sqrt() * 15.0).round() as usize;
                char::from(DIGITS.get(q).copied().unwrap_or(b'f'))
            })
            .collect()
    }

    /// The appearance [`encode`](Self::encode) wrote; `None` for any other text.
    pub fn decode(text: &str) -> Option<Appearance> {
        if text.len() != LEN {
            return None;
        }
        let mut values = [0.0f32; LEN];
        for (slot, c) in values.iter_mut().zip(text.chars()) {
            let q = c.to_digit(16)? as f32 / 15.0;
            *slot = q * q;
        }
        Appearance::from_values(&values)
    }

    /// An appearance from [`values`](Self::values) (each part normalised again); `None` unless
    /// there are exactly [`LEN`] finite, non-negative values with some weight in each part.
    pub fn from_values(values: &[f32]) -> Option<Appearance> {
        if values.len() != LEN || !values.iter().all(|v| v.is_finite() && *v >= 0.0) {
            return None;
        }
        let mut bins = [[0.0; BINS]; PARTS];
        for (part, chunk) in bins.iter_mut().zip(values.chunks(BINS)) {
            let total: f32 = chunk.iter().sum();
            if total <= 0.0 {
                return None;
            }
            for (slot, v) in part.iter_mut().zip(chunk) {
                *slot = v / total;
            }
        }
        Some(Appearance { bins })
    }

    /// How unlike two appearances are: 0 for the same colours, 1 for no colour in common
    /// (one minus the Bhattacharyya coefficient, averaged over the two body parts).
    pub fn distance(&self, other: &Appearance) -> f32 {
        let mut sum = 0.0;
        for (p, q) in self.bins.iter().zip(&other.bins) {
            let bc: f32 = p.iter().zip(q).map(|(a, b)| (a * b).sqrt()).sum();
            sum += bc.clamp(0.0, 1.0);
        }
        1.0 - sum / PARTS as f32
    }

    /// Blend `other` into `self`: `self = keep · self + (1 − keep) · other` (a track's
    /// running appearance; both stay normalised).
    pub fn blend(&mut self, other: &Appearance, keep: f32) {
        let keep = keep.clamp(0.0, 1.0);
        for (p, q) in self.bins.iter_mut().zip(&other.bins) {
            for (a, b) in p.iter_mut().zip(q) {
                *a = keep * *a + (1.0 - keep) * b;
            }
        }
    }
}

/// The bin of one pixel.
fn bin(r: u8, g: u8, b: u8) -> usize {
    let (r, g, b) = (
        f32::from(r) / 255.0,
        f32::from(g) / 255.0,
        f32::from(b) / 255.0,
    );
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    let sat = if max > 0.0 { chroma / max } else { 0.0 };
    if sat < GREY_SATURATION || max < DARK {
        let level = ((max * GREYS as f32) as usize).min(GREYS - 1);
        return HUES * SATS + level;
    }
    // hue in [0, 6)
    let hue = if max == r {
        ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        (b - r) / chroma + 2.0
    } else {
        (r - g) / chroma + 4.0
    };
    let h = ((hue / 6.0 * HUES as f32) as usize).min(HUES - 1);
    let s = if sat < 0.6 { 0 } else { 1 };
    h * SATS + s
}

/// The step of the sampling grid over a part of `cols` × `rows` pixels: the smallest that reads
/// at most `MAX_SAMPLES / PARTS` of them.
fn grid_step(cols: usize, rows: usize) -> usize {
    let budget = MAX_SAMPLES / PARTS;
    let mut step = 1usize;
    while cols.div_ceil(step) * rows.div_ceil(step) > budget {
        step += 1;
    }
    step
}

/// Describe the person in `bbox` (normalised `[x0, y0, x1, y1]`) of `frame`: the torso is the
/// band from 15 % to 50 % of the box's height, the legs from 50 % to 85 %, both over the middle
/// half of its width. `None` when the box is outside the frame, not finite, or too small to
/// sample.
pub fn describe(frame: RgbView<'_>, bbox: [f32; 4]) -> Option<Appearance> {
    if !bbox.iter().all(|c| c.is_finite()) {
        return None;
    }
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let [x0, y0, x1, y1] = bbox;
    let (bw, bh) = (x1 - x0, y1 - y0);
    if bw <= 0.0 || bh <= 0.0 {
        return None;
    }
    let px = |x: f32| (x * w).clamp(0.0, w) as usize;
    let py = |y: f32| (y * h).clamp(0.0, h) as usize;
    let (cx0, cx1) = (px(x0 + 0.25 * bw), px(x1 - 0.25 * bw));
    let parts = [
        (py(y0 + 0.15 * bh), py(y0 + 0.50 * bh)),
        (py(y0 + 0.50 * bh), py(y0 + 0.85 * bh)),
    ];
    let data = frame.data();
    let stride = frame.width() as usize * 3;
    let mut out = Appearance {
        bins: [[0.0; BINS]; PARTS],
    };
    for (hist, &(ry0, ry1)) in out.bins.iter_mut().zip(&parts) {
        let (cols, rows) = (cx1.saturating_sub(cx0), ry1.saturating_sub(ry0));
        if cols == 0 || rows == 0 {
            return None;
        }
        let step = grid_step(cols, rows);
        let mut n = 0usize;
        for y in (ry0..ry1).step_by(step) {
            for x in (cx0..cx1).step_by(step) {
                let i = y * stride + x * 3;
                if let Some(&[r, g, b]) = data.get(i..i + 3)
                    && let Some(slot) = hist.get_mut(bin(r, g, b))
                {
                    *slot += 1.0;
                    n += 1;
                }
            }
        }
        if n < MIN_PIXELS_PER_PART {
            return None;
        }
        let total = n as f32;
        for v in hist.iter_mut() {
            *v /= total;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::frame::RgbFrame;

    /// A 100×100 frame with a person at x 20..40 (red torso over blue legs) and another at
    /// x 60..80 (white torso over black legs), both from y 10 to 90, on grey.
    fn scene() -> RgbFrame {
        let (w, h) = (100u32, 100u32);
        let mut data = vec![128u8; (w * h * 3) as usize];
        for y in 10..90 {
            for x in 0..100 {
                let torso = y < 50;
                let c = match x {
                    20..=39 if torso => [200, 30, 30],
                    20..=39 => [30, 40, 190],
                    60..=79 if torso => [240, 240, 240],
                    60..=79 => [15, 15, 15],
                    _ => continue,
                };
                let i = (y * w as usize + x) * 3;
                data[i..i + 3].copy_from_slice(&c);
            }
        }
        RgbFrame::new(w, h, data).unwrap()
    }

    #[test]
    fn the_same_person_is_close_and_another_is_far() {
        let f = scene();
        let a = describe(f.as_view(), [0.2, 0.1, 0.4, 0.9]).unwrap();
        let a_shifted = describe(f.as_view(), [0.21, 0.11, 0.41, 0.9]).unwrap();
        let b = describe(f.as_view(), [0.6, 0.1, 0.8, 0.9]).unwrap();
        assert!(a.distance(&a) < 1e-6);
        assert!(a.distance(&a_shifted) < 0.1, "{}", a.distance(&a_shifted));
        assert!(a.distance(&b) > 0.9, "{}", a.distance(&b));
        assert!((a.distance(&b) - b.distance(&a)).abs() < 1e-6);
    }

    #[test]
    fn torso_and_legs_are_told_apart() {
        // the same two colours, upside down, are a different outfit
        let f = scene();
        let a = describe(f.as_view(), [0.2, 0.1, 0.4, 0.9]).unwrap();
        let mut flipped = a;
        flipped.bins.swap(0, 1);
        // (a row of torso falls into the legs' band: a few per cent of overlap costs ~0.2)
        assert!(a.distance(&flipped) > 0.75, "{}", a.distance(&flipped));
    }

    #[test]
    fn blending_moves_towards_the_new_look() {
        let f = scene();
        let a = describe(f.as_view(), [0.2, 0.1, 0.4, 0.9]).unwrap();
        let b = describe(f.as_view(), [0.6, 0.1, 0.8, 0.9]).unwrap();
        let mut m = a;
        m.blend(&b, 0.5);
        assert!(m.distance(&a) < a.distance(&b));
        assert!(m.distance(&b) < a.distance(&b));
        for part in &m.bins {
            assert!((part.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn the_text_form_keeps_distances() {
        let f = scene();
        let a = describe(f.as_view(), [0.2, 0.1, 0.4, 0.9]).unwrap();
        let b = describe(f.as_view(), [0.15, 0.1, 0.7, 0.9]).unwrap();
        let (ta, tb) = (a.encode(), b.encode());
        assert_eq!(ta.len(), LEN);
        let (da, db) = (
            Appearance::decode(&ta).unwrap(),
            Appearance::decode(&tb).unwrap(),
        );
        assert!(
            (da.distance(&db) - a.distance(&b)).abs() < 0.03,
            "{} {}",
            da.distance(&db),
            a.distance(&b)
        );
        assert!(da.distance(&a) < 0.01);
        assert_eq!(da.encode(), ta);
        for bad in [
            "",
            "0f",
            &"g".repeat(LEN),
            &"0".repeat(LEN),
            &format!("{ta}0"),
        ] {
            assert!(Appearance::decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn unusable_boxes_have_no_appearance() {
        let f = scene();
        assert!(
            describe(f.as_view(), [0.5, 0.5, 0.5, 0.9]).is_none(),
            "empty"
        );
        assert!(describe(f.as_view(), [f32::NAN, 0.1, 0.4, 0.9]).is_none());
        assert!(
            describe(f.as_view(), [1.2, 0.1, 1.4, 0.9]).is_none(),
            "outside"
        );
        assert!(
            describe(f.as_view(), [0.2, 0.1, 0.22, 0.12]).is_none(),
            "a few pixels"
        );
    }

    #[test]
    fn a_large_box_reads_a_bounded_number_of_pixels() {
        for (cols, rows) in [
            (1, 1),
            (10, 35),
            (45, 45),
            (46, 46),
            (1000, 700),
            (3840, 2160),
        ] {
            let step = grid_step(cols, rows);
            let read = cols.div_ceil(step) * rows.div_ceil(step);
            assert!(read <= MAX_SAMPLES / PARTS, "{cols}x{rows}: {read}");
            // and no coarser than needed
            if step > 1 {
                assert!(cols.div_ceil(step - 1) * rows.div_ceil(step - 1) > MAX_SAMPLES / PARTS);
            }
        }
        let f = RgbFrame::new(2000, 2000, vec![90; 2000 * 2000 * 3]).unwrap();
        let a = describe(f.as_view(), [0.0, 0.0, 1.0, 1.0]).unwrap();
        // all grey: everything in one grey bin of each part
        for part in &a.bins {
            assert!((part.iter().cloned().fold(0.0, f32::max) - 1.0).abs() < 1e-6);
        }
    }
}
