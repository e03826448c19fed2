//! Drawing detections onto a frame: boxes, labels and scores, for `ocellus detect --annotate`.

use crate::infer::Detection;
use crate::preprocess::RgbFrame;

const PALETTE: [[u8; 3]; 8] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
];

/// A packed RGB canvas to draw on.
pub struct Canvas {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl Canvas {
    /// Take ownership of a frame to draw on it.
    pub fn new(frame: RgbFrame) -> Self {
        let (width, height) = (frame.width(), frame.height());
        Canvas {
            width,
            height,
            data: frame.into_raw(),
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The packed pixels.
    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.data[i..i + 3].copy_from_slice(&c);
    }

    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0.max(0)..y1.min(self.height as i64) {
            for x in x0.max(0)..x1.min(self.width as i64) {
                self.put(x, y, c);
            }
        }
    }

    /// Draw a rectangle outline `t` pixels thick.
    pub fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, t: i64, c: [u8; 3]) {
        self.fill(x0, y0, x1 + 1, y0 + t, c);
        self.fill(x0, y1 - t + 1, x1 + 1, y1 + 1, c);
        self.fill(x0, y0, x0 + t, y1 + 1, c);
        self.fill(x1 - t + 1, y0, x1 + 1, y1 + 1, c);
    }

    /// Draw ASCII text with the 8×8 font, scaled by `s`, on a filled background. Returns its width.
    pub fn text(&mut self, x: i64, y: i64, s: i64, text: &str, fg: [u8; 3], bg: [u8; 3]) -> i64 {
        let w = text.chars().count() as i64 * 8 * s;
        self.fill(x, y, x + w + 2 * s, y + 8 * s + 2 * s, bg);
        glyphs(text.chars(), x + s, y + s, s, |px, py| {
            self.fill(px, py, px + s, py + s, fg)
        });
        w
    }
}

/// Draw each detection's box and `label score` on the frame.
pub fn draw(frame: RgbFrame, detections: &[Detection]) -> Canvas {
    let mut c = Canvas::new(frame);
    let (w, h) = (c.width as f32, c.height as f32);
    let scale = ((c.width.max(c.height) / 640).max(1)) as i64;
    for d in detections {
        let colour = PALETTE[d.class_id as usize % PALETTE.len()];
        let [x0, y0, x1, y1] = d.bbox;
        let (x0, y0) = ((x0 * w) as i64, (y0 * h) as i64);
        let (x1, y1) = (((x1 * w) as i64).max(x0), ((y1 * h) as i64).max(y0));
        c.rect(x0, y0, x1, y1, 2 * scale, colour);
        let label = format!("{} {:.2}", d.label, d.score);
        let ty = if y0 >= 10 * scale {
            y0 - 10 * scale
        } else {
            y0
        };
        c.text(x0, ty, scale, &label, [0, 0, 0], colour);
    }
    c
}

/// The 8x8 font's set pixels of `chars` written from `(x, y)` at scale `s`: `dot(px, py)` for the
/// top-left corner of each `s`×`s` dot. Characters the font lacks are drawn as `?`.
pub(crate) fn glyphs(
    chars: impl Iterator<Item = char>,
    x: i64,
    y: i64,
    s: i64,
    mut dot: impl FnMut(i64, i64),
) {
    for (i, ch) in chars.enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY
            .get(ch as usize)
            .or_else(|| font8x8::legacy::BASIC_LEGACY.get(usize::from(b'?')))
            .copied()
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    dot(x + (i as i64 * 8 + col) * s, y + row as i64 * s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn box_edges_are_drawn_in_the_class_colour() -> crate::Result<()> {
        let frame = RgbFrame::new(100, 100, vec![0; 100 * 100 * 3])?;
        let det = Detection {
            label: Arc::from("person"),
            class_id: 1,
            score: 0.9,
            bbox: [0.2, 0.5, 0.6, 0.9],
        };
        let c = draw(frame, &[det]);
        let px = |x: usize, y: usize| {
            let i = (y * 100 + x) * 3;
            [c.data[i], c.data[i + 1], c.data[i + 2]]
        };
        assert_eq!(px(20, 70), PALETTE[1]); // left edge
        assert_eq!(px(60, 70), PALETTE[1]); // right edge
        assert_eq!(px(40, 89), PALETTE[1]); // bottom edge
        assert_eq!(px(40, 70), [0, 0, 0]); // inside untouched
        // the label sits above the box
        assert!((40..50).any(|y| (20..80).any(|x| px(x, y) == PALETTE[1])));
        Ok(())
    }
}
