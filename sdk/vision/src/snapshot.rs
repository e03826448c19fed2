//! Snapshots for the cloud's `snapshot` direct method: one frame, people made unrecognisable,
//! the rules and tracks drawn on top, encoded as a JPEG under a size bound.
//!
//! Privacy first: every region to hide is pixelated and blurred at the frame's full resolution
//! before anything is drawn or scaled, and the result keeps so little detail that a face in it
//! cannot be recognised (see [`hide_regions`]).

use crate::error::{Error, Result};
use crate::preprocess::RgbFrame;
use crate::rules::{LineRule, ZoneRule};

/// What a snapshot shows.
#[derive(Debug, Clone, Copy)]
pub struct Scene<'a> {
    /// The frame as captured.
    pub frame: &'a RgbFrame,
    /// Regions to hide (people), normalised `[x0, y0, x1, y1]`.
    pub hide: &'a [[f32; 4]],
    /// Tracks to outline: id and normalised box.
    pub tracks: &'a [(u64, [f32; 4])],
    /// Lines to draw.
    pub lines: &'a [LineRule],
    /// Zones to outline.
    pub zones: &'a [ZoneRule],
}

/// What a replay adds to a [`Scene`] (`ocellus annotate`): short trails behind the tracks, and
/// the text shown on each line and zone, such as their running counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decorations<'a> {
    /// Past foot points (bottom-centres) of tracks, normalised, oldest first.
    pub trails: &'a [(u64, Vec<[f32; 2]>)],
    /// The text of each of the scene's lines, in order (a line without one shows its name).
    pub line_labels: &'a [String],
    /// The text of each of the scene's zones, in order (a zone without one shows its name).
    pub zone_labels: &'a [String],
}

/// An encoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// JPEG bytes.
    pub jpeg: Vec<u8>,
    /// Width of the encoded image (it may be scaled down from the frame to fit `max_bytes`).
    pub width: u32,
    /// Height of the encoded image.
    pub height: u32,
    /// Regions hidden: those of [`Scene::hide`] that are not empty once clamped to the frame.
    pub hidden: usize,
}

/// JPEG qualities tried at each size, best first.
const QUALITIES: [u8; 4] = [80, 65, 50, 35];

/// The long side is not scaled below this many pixels.
const MIN_LONG_SIDE: u32 = 64;

/// Each side of a hidden box grows by this fraction of the box's size.
const GROW: f32 = 0.05;

/// Smallest pixelation block, in pixels.
const MIN_BLOCK: usize = 8;

/// Blocks per shorter side of a hidden box (when that gives blocks over [`MIN_BLOCK`]).
const BLOCKS_PER_SIDE: usize = 6;

/// Float noise forgiven when turning a normalised box into pixels.
const EPS: f32 = 1e-3;

/// Longest rule name drawn, in characters.
const MAX_LABEL_CHARS: usize = 32;

const ZONE_COLOUR: [u8; 3] = [255, 225, 25];
const LINE_COLOUR: [u8; 3] = [70, 240, 240];
const TRACK_PALETTE: [[u8; 3]; 6] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [240, 50, 230],
];

/// Make each region unrecognisable in place: pixelate it into coarse blocks, then blur the
/// blocks.
///
/// Boxes are normalised `[x0, y0, x1, y1]`; each is clamped to the frame (inverted corners are
/// swapped; boxes with a NaN or empty after clamping are skipped), then grown by 5% of its size
/// on each side to cover the edges of the person. The grown box is cut into blocks of about
/// `max(8, shorter side / 6)` pixels, and each block is filled with the mean colour of its 3×3
/// block neighbourhood (a box blur of the block means), so neither the blocks nor the edges
/// between them keep any detail: a 40×40 pixel face ends as at most 36 flat blocks of similar
/// colour. Pixels outside every grown box are left untouched.
pub fn hide_regions(frame: &mut RgbFrame, regions: &[[f32; 4]]) {
    let (w, h) = (frame.width(), frame.height());
    if pixel_boxes(w, h, regions).next().is_none() {
        return;
    }
    let Ok(placeholder) = RgbFrame::new(1, 1, vec![0; 3]) else {
        return;
    };
    let mut data = std::mem::replace(frame, placeholder).into_raw();
    hide_in(&mut data, w as usize, h as usize, regions);
    // Same size and length as the frame taken out, so this cannot fail.
    if let Ok(hidden) = RgbFrame::new(w, h, data) {
        *frame = hidden;
    }
}

/// Hide, draw and encode `scene` as a JPEG of at most `max_bytes`.
///
/// The regions in [`Scene::hide`] are hidden first, at the frame's full size (see
/// [`hide_regions`]); then the zones (outlined, named at their first vertex), lines (named near
/// their start point) and tracks (boxed, with `#id`) are drawn and the image is encoded at
/// quality 80, 65, 50 and 35. When none of those fits, the hidden frame is scaled down to half
/// the size and tried again, down to 64 pixels on the long side; the overlays are drawn anew at
/// each size so they stay sharp. Points and boxes outside the frame are clipped.
///
/// # Errors
/// [`Error::InvalidOption`] (`snapshot`) when nothing fits in `max_bytes`, saying the smallest
/// size reached; [`Error::Frame`] if the JPEG encoder fails.
pub fn render(scene: &Scene<'_>, max_bytes: usize) -> Result<Snapshot> {
    let (w, h) = (scene.frame.width(), scene.frame.height());
    let mut base = scene.frame.data().to_vec();
    let hidden = hide_in(&mut base, w as usize, h as usize, scene.hide);

    let mut smallest: Option<(u32, u32, u8, usize)> = None;
    for (sw, sh) in sizes(w, h) {
        let mut img = if (sw, sh) == (w, h) {
            base.clone()
        } else {
            downscale(&base, w as usize, h as usize, sw as usize, sh as usize)
        };
        draw_overlays(
            &mut img,
            sw as usize,
            sh as usize,
            scene,
            &Decorations::default(),
        );
        for q in QUALITIES {
            let jpeg = encode(&img, sw, sh, q)?;
            if jpeg.len() <= max_bytes {
                return Ok(Snapshot {
                    jpeg,
                    width: sw,
                    height: sh,
                    hidden,
                });
            }
            smallest = Some((sw, sh, q, jpeg.len()));
        }
    }
    let message = match smallest {
        Some((sw, sh, q, len)) => format!(
            "the snapshot does not fit in {max_bytes} bytes: the smallest, {sw}x{sh} at JPEG \
             quality {q}, takes {len} bytes"
        ),
        None => format!("the snapshot does not fit in {max_bytes} bytes"),
    };
    Err(Error::InvalidOption {
        name: "snapshot".into(),
        message,
    })
}

/// Draw `scene` with `decorations` on a copy of its frame at full size, its people hidden first
/// (see [`hide_regions`]) unless `hide` is false. For replays; [`render`] is for snapshots.
///
/// # Errors
/// [`Error::Frame`] only if the frame's buffer does not match its size.
pub fn draw(scene: &Scene<'_>, decorations: &Decorations<'_>, hide: bool) -> Result<RgbFrame> {
    let (w, h) = (scene.frame.width(), scene.frame.height());
    let mut img = scene.frame.data().to_vec();
    if hide {
        hide_in(&mut img, w as usize, h as usize, scene.hide);
    }
    draw_overlays(&mut img, w as usize, h as usize, scene, decorations);
    RgbFrame::new(w, h, img).map_err(|e| Error::Frame(format!("drawing a frame: {e}")))
}

/// The sizes to try: the frame's, then halved until the long side would go under
/// [`MIN_LONG_SIDE`], ending at exactly that long side.
fn sizes(w: u32, h: u32) -> Vec<(u32, u32)> {
    let mut out = vec![(w, h)];
    let long = w.max(h);
    let mut target = long;
    while target > MIN_LONG_SIDE {
        target = (target / 2).max(MIN_LONG_SIDE);
        let scale = |side: u32| -> u32 {
            let s = (u64::from(side) * u64::from(target) + u64::from(long) / 2) / u64::from(long);
            u32::try_from(s).unwrap_or(side).clamp(1, side.max(1))
        };
        out.push((scale(w), scale(h)));
    }
    out
}

fn encode(img: &[u8], w: u32, h: u32, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(img, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Frame(format!("cannot encode a {w}x{h} snapshot as JPEG: {e}")))?;
    Ok(out)
}

/// Area-average `src` (`w`×`h`) down to `nw`×`nh` (each at most the source's side, at least 1).
fn downscale(src: &[u8], w: usize, h: usize, nw: usize, nh: usize) -> Vec<u8> {
    let (nw, nh) = (nw.clamp(1, w.max(1)), nh.clamp(1, h.max(1)));
    let span = |i: usize, n: usize, side: usize| {
        let a = i * side / n;
        let b = ((i + 1) * side / n).max(a + 1).min(side);
        (a, b)
    };
    let stride = w * 3;
    let mut out = Vec::with_capacity(nw * nh * 3);
    for oy in 0..nh {
        let (y0, y1) = span(oy, nh, h);
        for ox in 0..nw {
            let (x0, x1) = span(ox, nw, w);
            let mut sum = [0u64; 3];
            let mut n = 0u64;
            for y in y0..y1 {
                let row = src
                    .get(y * stride + x0 * 3..y * stride + x1 * 3)
                    .unwrap_or(&[]);
                for px in row.chunks_exact(3) {
                    for (s, &v) in sum.iter_mut().zip(px) {
                        *s += u64::from(v);
                    }
                    n += 1;
                }
            }
            let n = n.max(1);
            out.extend(sum.iter().map(|&s| ((s + n / 2) / n) as u8));
        }
    }
    out
}

/// A hidden box in pixels, already grown: columns `x0..x1`, rows `y0..y1`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PixelBox {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

/// The grown pixel boxes of the regions that are not empty once clamped to a `w`×`h` frame.
fn pixel_boxes(w: u32, h: u32, regions: &[[f32; 4]]) -> impl Iterator<Item = PixelBox> + '_ {
    let (wf, hf) = (w as f32, h as f32);
    regions.iter().filter_map(move |r| {
        if r.iter().any(|v| v.is_nan()) {
            return None;
        }
        let [a, b, c, d] = r.map(|v| v.clamp(0.0, 1.0));
        let (x0, x1) = (a.min(c) * wf, a.max(c) * wf);
        let (y0, y1) = (b.min(d) * hf, b.max(d) * hf);
        if x1 <= x0 || y1 <= y0 {
            return None;
        }
        // In whole pixels, forgiving float noise of a thousandth of a pixel.
        let span = |lo: f32, hi: f32, side: u32| {
            let last = side.saturating_sub(1) as f32;
            let a = (lo + EPS).floor().clamp(0.0, last);
            let b = (hi - EPS).ceil().max(a + 1.0);
            let g = (GROW * (hi - lo) - EPS).ceil().max(0.0);
            let clamp = |v: f32| v.clamp(0.0, side as f32) as usize;
            (clamp(a - g), clamp(b + g))
        };
        let (x0, x1) = span(x0, x1, w);
        let (y0, y1) = span(y0, y1, h);
        let pb = PixelBox { x0, y0, x1, y1 };
        (pb.x1 > pb.x0 && pb.y1 > pb.y0).then_some(pb)
    })
}

/// Hide `regions` in packed RGB `data` of `w`×`h`; returns how many were hidden.
fn hide_in(data: &mut [u8], w: usize, h: usize, regions: &[[f32; 4]]) -> usize {
    if data.len() != w * h * 3 {
        return 0;
    }
    let (Ok(wu), Ok(hu)) = (u32::try_from(w), u32::try_from(h)) else {
        return 0;
    };
    let mut means = Vec::new();
    let mut n = 0;
    for pb in pixel_boxes(wu, hu, regions) {
        let block = MIN_BLOCK.max((pb.x1 - pb.x0).min(pb.y1 - pb.y0) / BLOCKS_PER_SIDE);
        pixelate(data, w, pb, block, &mut means);
        n += 1;
    }
    n
}

/// Pixelate `pb`: tile it into `block`×`block` blocks from its top-left corner, take each
/// block's mean colour, box-blur those means over each block's 3×3 neighbourhood (edge blocks
/// repeated), and fill each block with its blurred mean. `means` is scratch space.
fn pixelate(data: &mut [u8], w: usize, pb: PixelBox, block: usize, means: &mut Vec<[u8; 3]>) {
    let stride = w * 3;
    let block = block.max(1);
    let (cols, rows) = (
        (pb.x1 - pb.x0).div_ceil(block),
        (pb.y1 - pb.y0).div_ceil(block),
    );
    // The pixels of block (i, j) in row y.
    let range = |i: usize, y: usize| {
        let x0 = pb.x0 + i * block;
        let x1 = (x0 + block).min(pb.x1);
        y * stride + x0 * 3..y * stride + x1 * 3
    };
    let rows_of = |j: usize| {
        let y0 = pb.y0 + j * block;
        y0..(y0 + block).min(pb.y1)
    };
    means.clear();
    for j in 0..rows {
        for i in 0..cols {
            let mut sum = [0u64; 3];
            let mut n = 0u64;
            for y in rows_of(j) {
                for px in data.get(range(i, y)).unwrap_or(&[]).chunks_exact(3) {
                    for (s, &v) in sum.iter_mut().zip(px) {
                        *s += u64::from(v);
                    }
                    n += 1;
                }
            }
            let n = n.max(1);
            means.push(sum.map(|s| ((s + n / 2) / n) as u8));
        }
    }
    let mean = |i: usize, j: usize| {
        means
            .get(j.min(rows.saturating_sub(1)) * cols + i.min(cols.saturating_sub(1)))
            .copied()
            .unwrap_or([0; 3])
    };
    for j in 0..rows {
        for i in 0..cols {
            let mut sum = [0u32; 3];
            for (ni, nj) in [i.saturating_sub(1), i, i + 1]
                .into_iter()
                .flat_map(|ni| [j.saturating_sub(1), j, j + 1].map(|nj| (ni, nj)))
            {
                for (s, v) in sum.iter_mut().zip(mean(ni, nj)) {
                    *s += u32::from(v);
                }
            }
            let colour = sum.map(|s| ((s + 4) / 9) as u8);
            for y in rows_of(j) {
                for px in data
                    .get_mut(range(i, y))
                    .unwrap_or(&mut [])
                    .chunks_exact_mut(3)
                {
                    px.copy_from_slice(&colour);
                }
            }
        }
    }
}

/// Packed RGB pixels to draw on; drawing outside is clipped.
struct Canvas<'a> {
    w: usize,
    h: usize,
    data: &'a mut [u8],
    /// Line thickness and text scale, from the image size.
    scale: i64,
}

impl<'a> Canvas<'a> {
    fn new(data: &'a mut [u8], w: usize, h: usize) -> Self {
        let scale = (w.max(h) / 640).max(1) as i64;
        Canvas { w, h, data, scale }
    }

    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        let clip = |v: i64, side: usize| v.clamp(0, side as i64) as usize;
        let (x0, x1) = (clip(x0, self.w), clip(x1, self.w));
        let (y0, y1) = (clip(y0, self.h), clip(y1, self.h));
        if x1 <= x0 {
            return;
        }
        let stride = self.w * 3;
        for y in y0..y1 {
            let row = self.data.get_mut(y * stride + x0 * 3..y * stride + x1 * 3);
            for px in row.unwrap_or(&mut []).chunks_exact_mut(3) {
                px.copy_from_slice(&c);
            }
        }
    }

    /// A normalised point in pixels, bounded so that wild values cannot make huge loops.
    fn to_px(&self, p: [f32; 2]) -> [f32; 2] {
        [
            p[0].clamp(-4.0, 5.0) * self.w as f32,
            p[1].clamp(-4.0, 5.0) * self.h as f32,
        ]
    }

    /// A line between normalised points, clipped to the image.
    fn line(&mut self, a: [f32; 2], b: [f32; 2], c: [u8; 3]) {
        if a.iter().chain(&b).any(|v| v.is_nan()) {
            return;
        }
        let (a, b) = (self.to_px(a), self.to_px(b));
        let max = [self.w as f32 - 0.5, self.h as f32 - 0.5];
        let Some((a, b)) = clip_segment(a, b, max) else {
            return;
        };
        let (mut x, mut y) = (a[0].floor() as i64, a[1].floor() as i64);
        let (x1, y1) = (b[0].floor() as i64, b[1].floor() as i64);
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (sx, sy) = ((x1 - x).signum(), (y1 - y).signum());
        let t = self.scale * 2;
        let mut err = dx + dy;
        // Both ends are inside the image, so this takes at most w + h steps.
        for _ in 0..=(self.w + self.h) {
            self.fill(x - t / 2, y - t / 2, x - t / 2 + t, y - t / 2 + t, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// A rectangle outline around a normalised box.
    fn rect(&mut self, bbox: [f32; 4], c: [u8; 3]) -> Option<(i64, i64)> {
        if bbox.iter().any(|v| v.is_nan()) {
            return None;
        }
        let [a, b] = self.to_px([bbox[0], bbox[1]]);
        let [cx, d] = self.to_px([bbox[2], bbox[3]]);
        let (x0, x1) = (a.min(cx) as i64, a.max(cx) as i64);
        let (y0, y1) = (b.min(d) as i64, b.max(d) as i64);
        let t = self.scale * 2;
        self.fill(x0, y0, x1 + 1, y0 + t, c);
        self.fill(x0, y1 - t + 1, x1 + 1, y1 + 1, c);
        self.fill(x0, y0, x0 + t, y1 + 1, c);
        self.fill(x1 - t + 1, y0, x1 + 1, y1 + 1, c);
        Some((x0, y0))
    }

    /// Text with the 8×8 font on a filled background, its top-left corner moved into the image.
    fn text(&mut self, x: i64, y: i64, text: &str, fg: [u8; 3], bg: [u8; 3]) {
        let s = self.scale;
        let chars: Vec<char> = text.chars().take(MAX_LABEL_CHARS).collect();
        let tw = chars.len() as i64 * 8 * s + 2 * s;
        let th = 10 * s;
        let x = x.min(self.w as i64 - tw).max(0);
        let y = y.min(self.h as i64 - th).max(0);
        self.fill(x, y, x + tw, y + th, bg);
        crate::annotate::glyphs(chars.iter().copied(), x + s, y + s, s, |px, py| {
            self.fill(px, py, px + s, py + s, fg)
        });
    }

    /// Top-left corner for a label next to a normalised point.
    fn label_at(&self, p: [f32; 2]) -> (i64, i64) {
        if p.iter().any(|v| v.is_nan()) {
            return (0, 0);
        }
        let [x, y] = self.to_px(p);
        (x as i64 + 2 * self.scale, y as i64 + 2 * self.scale)
    }
}

/// Clip the segment `a`–`b` to `[0, max[0]] × [0, max[1]]` (Liang–Barsky); `None` when it
/// misses.
fn clip_segment(a: [f32; 2], b: [f32; 2], max: [f32; 2]) -> Option<([f32; 2], [f32; 2])> {
    let d = [b[0] - a[0], b[1] - a[1]];
    let (mut t0, mut t1) = (0.0f32, 1.0f32);
    for axis in 0..2 {
        let (p0, dp, hi) = (a[axis], d[axis], max[axis]);
        for (p, q) in [(-dp, p0), (dp, hi - p0)] {
            if p == 0.0 {
                if q < 0.0 {
                    return None;
                }
            } else {
                let t = q / p;
                if p < 0.0 {
                    t0 = t0.max(t);
                } else {
                    t1 = t1.min(t);
                }
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    let at = |t: f32| [a[0] + t * d[0], a[1] + t * d[1]].map(|v| v.max(0.0));
    let clamp = |p: [f32; 2]| [p[0].min(max[0]), p[1].min(max[1])];
    Some((clamp(at(t0)), clamp(at(t1))))
}

/// Draw zones, lines, trails and tracks on packed RGB `img` of `w`×`h`.
fn draw_overlays(
    img: &mut [u8],
    w: usize,
    h: usize,
    scene: &Scene<'_>,
    decorations: &Decorations<'_>,
) {
    let mut c = Canvas::new(img, w, h);
    for (i, zone) in scene.zones.iter().enumerate() {
        let next = zone.polygon.iter().cycle().skip(1);
        if zone.polygon.len() >= 2 {
            for (&a, &b) in zone.polygon.iter().zip(next) {
                c.line(a, b, ZONE_COLOUR);
            }
        }
        if let Some(&first) = zone.polygon.first() {
            let (x, y) = c.label_at(first);
            let text = decorations.zone_labels.get(i).unwrap_or(&zone.name);
            c.text(x, y, text, [0, 0, 0], ZONE_COLOUR);
        }
    }
    for (i, rule) in scene.lines.iter().enumerate() {
        c.line(rule.a, rule.b, LINE_COLOUR);
        let (x, y) = c.label_at(rule.a);
        let text = decorations.line_labels.get(i).unwrap_or(&rule.name);
        c.text(x, y, text, [0, 0, 0], LINE_COLOUR);
    }
    for (id, points) in decorations.trails {
        let colour = track_colour(*id);
        for pair in points.windows(2) {
            c.line(pair[0], pair[1], colour);
        }
    }
    for &(id, bbox) in scene.tracks {
        let colour = track_colour(id);
        if let Some((x0, y0)) = c.rect(bbox, colour) {
            let ty = y0 - 10 * c.scale;
            c.text(x0, ty, &format!("#{id}"), [0, 0, 0], colour);
        }
    }
}

fn track_colour(id: u64) -> [u8; 3] {
    TRACK_PALETTE
        .get((id % TRACK_PALETTE.len() as u64) as usize)
        .copied()
        .unwrap_or(LINE_COLOUR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A frame of 1-pixel noise (each channel independent) from a xorshift generator.
    fn noise(w: u32, h: u32, seed: u64) -> RgbFrame {
        let mut s = seed.max(1);
        let data = (0..w * h * 3)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect();
        RgbFrame::new(w, h, data).unwrap()
    }

    /// A frame of 1-pixel grey noise (R = G = B).
    fn grey_noise(w: u32, h: u32, seed: u64) -> RgbFrame {
        let n = noise(w, h, seed);
        let data = n.data().chunks(3).flat_map(|p| [p[0]; 3]).collect();
        RgbFrame::new(w, h, data).unwrap()
    }

    fn px(data: &[u8], w: u32, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * w + x) * 3) as usize;
        [data[i], data[i + 1], data[i + 2]]
    }

    /// Pixels of `data` in columns `x0..x1`, rows `y0..y1`.
    fn patch(data: &[u8], w: u32, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> Vec<[u8; 3]> {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .map(|(x, y)| px(data, w, x, y))
            .collect()
    }

    fn distinct(p: &[[u8; 3]]) -> usize {
        p.iter().collect::<HashSet<_>>().len()
    }

    /// Mean over channels of the variance of each channel.
    fn variance(p: &[[u8; 3]]) -> f64 {
        let n = p.len() as f64;
        (0..3)
            .map(|c| {
                let mean = p.iter().map(|v| f64::from(v[c])).sum::<f64>() / n;
                p.iter()
                    .map(|v| (f64::from(v[c]) - mean).powi(2))
                    .sum::<f64>()
                    / n
            })
            .sum::<f64>()
            / 3.0
    }

    /// Mean absolute difference per channel.
    fn mad(a: &[[u8; 3]], b: &[[u8; 3]]) -> f64 {
        assert_eq!(a.len(), b.len());
        let sum: u64 = a
            .iter()
            .zip(b)
            .flat_map(|(p, q)| p.iter().zip(q).map(|(&x, &y)| u64::from(x.abs_diff(y))))
            .sum();
        sum as f64 / (a.len() * 3) as f64
    }

    #[test]
    fn hiding_destroys_the_detail_inside_a_box() {
        // A 40x40 "face" and a 120x120 "body" in 400x300 noise.
        for (bx, label) in [
            ((100, 80, 140, 120), "face"),
            ((200, 100, 320, 220), "body"),
        ] {
            let orig = noise(400, 300, 7);
            let mut f = orig.clone();
            let (x0, y0, x1, y1) = bx;
            let norm = [
                x0 as f32 / 400.0,
                y0 as f32 / 300.0,
                x1 as f32 / 400.0,
                y1 as f32 / 300.0,
            ];
            hide_regions(&mut f, &[norm]);
            let before = patch(orig.data(), 400, bx);
            let after = patch(f.data(), 400, bx);
            let (db, da) = (distinct(&before), distinct(&after));
            let (vb, va) = (variance(&before), variance(&after));
            assert!(da * 10 <= db, "{label}: {da} distinct colours of {db} left");
            assert!(va * 100.0 <= vb, "{label}: variance {vb} only down to {va}");
        }
    }

    /// A 40x40 "face" at (80, 80) in a 200x200 frame of noise: skin with noise, dark eyes and
    /// a mouth.
    fn face() -> RgbFrame {
        let n = noise(200, 200, 3);
        let mut data = n.data().to_vec();
        for y in 80..120u32 {
            for x in 80..120u32 {
                let i = ((y * 200 + x) * 3) as usize;
                let eye = (88..94).contains(&x) || (106..112).contains(&x);
                let c = if eye && (92..96).contains(&y) {
                    [10u8, 10, 10]
                } else if (92..108).contains(&x) && (110..113).contains(&y) {
                    [120, 20, 30]
                } else {
                    [220, 180, 150]
                };
                for k in 0..3 {
                    data[i + k] = c[k].saturating_add(data[i + k] / 16);
                }
            }
        }
        RgbFrame::new(200, 200, data).unwrap()
    }

    /// Largest difference between horizontally or vertically adjacent pixels of a `side`-wide
    /// patch, over all channels.
    fn max_step(p: &[[u8; 3]], side: usize) -> u8 {
        let step = |a: &[u8; 3], b: &[u8; 3]| a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max();
        let across = p
            .chunks(side)
            .flat_map(|r| r.windows(2).filter_map(|w| step(&w[0], &w[1])));
        let down = p
            .iter()
            .zip(p.iter().skip(side))
            .filter_map(|(a, b)| step(a, b));
        across.chain(down).max().unwrap_or(0)
    }

    #[test]
    fn a_face_ends_as_a_handful_of_soft_blocks() {
        let orig = face();
        let mut f = orig.clone();
        hide_regions(&mut f, &[[0.4, 0.4, 0.6, 0.6]]);
        let region = (80, 80, 120, 120);
        let before = patch(orig.data(), 200, region);
        let after = patch(f.data(), 200, region);
        assert!(distinct(&before) > 500);
        assert!(distinct(&after) <= 36, "{} colours", distinct(&after));
        // The eyes and mouth are gone: no sharp edge is left between neighbours.
        let (sb, sa) = (max_step(&before, 40), max_step(&after, 40));
        assert!(sb >= 200, "{sb}");
        assert!(sa <= 30, "a step of {sa} between neighbours is left");
        assert!(variance(&after) * 10.0 < variance(&before));
    }

    #[test]
    fn hiding_leaves_every_byte_outside_the_grown_box_alone() {
        let orig = noise(400, 300, 11);
        let mut f = orig.clone();
        // 40x40 px at (100, 80): grown by 2 px per side to 98..142 x 78..122.
        hide_regions(&mut f, &[[0.25, 80.0 / 300.0, 0.35, 0.4]]);
        let mut changed_in_margin = 0;
        for y in 0..300 {
            for x in 0..400 {
                let inside = (98..142).contains(&x) && (78..122).contains(&y);
                let (a, b) = (px(orig.data(), 400, x, y), px(f.data(), 400, x, y));
                if !inside {
                    assert_eq!(a, b, "pixel ({x}, {y}) outside the box changed");
                } else if !(100..140).contains(&x) && a != b {
                    changed_in_margin += 1;
                }
            }
        }
        assert!(changed_in_margin > 100, "the margin was not hidden");
        assert_eq!(f.width(), 400);
        assert_eq!(f.height(), 300);
    }

    #[test]
    fn hostile_boxes_do_not_panic_and_empty_ones_change_nothing() {
        let empty = [
            [f32::NAN, 0.1, 0.5, 0.5],
            [0.1, 0.1, 0.5, f32::NAN],
            [1.5, 1.5, 2.0, 2.0],
            [-2.0, -2.0, -0.5, -0.1],
            [0.3, 0.3, 0.3, 0.6],
            [0.3, 0.3, 0.6, 0.3],
            [1.0, 0.0, 1.0, 1.0],
            [f32::INFINITY, f32::INFINITY, f32::INFINITY, 0.5],
            [f32::NEG_INFINITY, 0.2, f32::NEG_INFINITY, 0.4],
        ];
        for (w, h) in [(1, 1), (2, 1), (1, 3), (64, 48)] {
            let orig = noise(w, h, 5);
            let mut f = orig.clone();
            hide_regions(&mut f, &empty);
            assert_eq!(f, orig, "{w}x{h}");
            let mut f = orig.clone();
            hide_regions(
                &mut f,
                &[
                    [-1.0, -1.0, 2.0, 2.0],
                    [f32::NEG_INFINITY, 0.0, f32::INFINITY, 1.0],
                    [0.9, 0.9, 1e30, 1e30],
                ],
            );
            assert_eq!((f.width(), f.height()), (w, h));
        }
        // Inverted corners are swapped, not skipped.
        let orig = noise(100, 100, 9);
        let (mut a, mut b) = (orig.clone(), orig.clone());
        hide_regions(&mut a, &[[0.6, 0.7, 0.2, 0.3]]);
        hide_regions(&mut b, &[[0.2, 0.3, 0.6, 0.7]]);
        assert_eq!(a, b);
        assert_ne!(a, orig);
        // Counted only when not empty.
        let all: Vec<[f32; 4]> = empty
            .iter()
            .copied()
            .chain([[0.2, 0.3, 0.6, 0.7]])
            .collect();
        assert_eq!(pixel_boxes(100, 100, &all).count(), 1);
    }

    fn scene<'a>(frame: &'a RgbFrame, hide: &'a [[f32; 4]]) -> Scene<'a> {
        Scene {
            frame,
            hide,
            tracks: &[],
            lines: &[],
            zones: &[],
        }
    }

    #[test]
    fn a_hidden_person_does_not_survive_into_the_jpeg() {
        let orig = grey_noise(320, 240, 13);
        // The person: 64x96 px at (32, 48); the control patch: the same size at (192, 96).
        let person = (32, 48, 96, 144);
        let control = (192, 96, 256, 192);
        let hide = [[0.1, 0.2, 0.3, 0.6]];
        let snap = render(&scene(&orig, &hide), 10_000_000).unwrap();
        assert_eq!((snap.width, snap.height, snap.hidden), (320, 240, 1));
        let decoded = image::load_from_memory(&snap.jpeg).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (320, 240));
        let dec = decoded.as_raw();
        let hidden_mad = mad(&patch(dec, 320, person), &patch(orig.data(), 320, person));
        let control_mad = mad(&patch(dec, 320, control), &patch(orig.data(), 320, control));
        assert!(hidden_mad > 40.0, "hidden region MAD {hidden_mad}");
        assert!(control_mad < 15.0, "control patch MAD {control_mad}");
    }

    #[test]
    fn render_shrinks_to_fit_max_bytes() {
        let frame = noise(1280, 720, 17);
        let snap = render(&scene(&frame, &[]), 30_000).unwrap();
        assert!(snap.jpeg.len() <= 30_000, "{} bytes", snap.jpeg.len());
        assert!(snap.width < 1280);
        let decoded = image::load_from_memory(&snap.jpeg).unwrap();
        assert_eq!(
            (decoded.width(), decoded.height()),
            (snap.width, snap.height)
        );
        assert_eq!(snap.width * 9, snap.height * 16);

        let err = render(&scene(&frame, &[]), 100).unwrap_err().to_string();
        assert!(err.contains("100 bytes"), "{err}");
        assert!(err.contains("64x36"), "{err}");
    }

    #[test]
    fn render_keeps_the_full_size_when_it_fits() {
        let frame = RgbFrame::new(64, 48, vec![90; 64 * 48 * 3]).unwrap();
        let snap = render(&scene(&frame, &[]), 90_000).unwrap();
        assert_eq!((snap.width, snap.height, snap.hidden), (64, 48, 0));
        let decoded = image::load_from_memory(&snap.jpeg).unwrap().to_rgb8();
        assert!(
            decoded
                .pixels()
                .all(|p| p.0.iter().all(|&v| v.abs_diff(90) <= 2))
        );
    }

    #[test]
    fn sizes_halve_down_to_64_on_the_long_side() {
        assert_eq!(
            sizes(1280, 720),
            vec![
                (1280, 720),
                (640, 360),
                (320, 180),
                (160, 90),
                (80, 45),
                (64, 36)
            ]
        );
        assert_eq!(
            sizes(100, 400),
            vec![(100, 400), (50, 200), (25, 100), (16, 64)]
        );
        assert_eq!(sizes(40, 30), vec![(40, 30)]);
        assert_eq!(sizes(1, 1), vec![(1, 1)]);
        assert_eq!(
            sizes(1000, 1),
            vec![(1000, 1), (500, 1), (250, 1), (125, 1), (64, 1)]
        );
    }

    #[test]
    fn downscale_averages_areas() {
        // 4x2: left half 0, right half 200 -> 2x1: 0 and 200.
        let src: Vec<u8> = (0..2)
            .flat_map(|_| [0, 0, 0, 0, 0, 0, 200, 200, 200, 200, 200, 200])
            .collect();
        assert_eq!(downscale(&src, 4, 2, 2, 1), vec![0, 0, 0, 200, 200, 200]);
        assert_eq!(downscale(&src, 4, 2, 1, 1), vec![100, 100, 100]);
    }

    fn line(name: &str, a: [f32; 2], b: [f32; 2]) -> LineRule {
        LineRule {
            name: name.into(),
            a,
            b,
            labels: vec![],
        }
    }

    fn zone(name: &str, polygon: Vec<[f32; 2]>) -> ZoneRule {
        ZoneRule {
            name: name.into(),
            polygon,
            dwell: None,
            labels: vec![],
        }
    }

    #[test]
    fn a_replay_draws_trails_and_its_own_labels_and_hides_only_when_asked() {
        let mut data = vec![0u8; 200 * 100 * 3];
        // detail in the box to hide: a checkerboard of 1-pixel squares
        for y in 40..80 {
            for x in 20..60 {
                if (x + y) % 2 == 0 {
                    data[(y * 200 + x) * 3..(y * 200 + x) * 3 + 3].copy_from_slice(&[255; 3]);
                }
            }
        }
        let frame = RgbFrame::new(200, 100, data).unwrap();
        let lines = [line("door", [0.1, 0.2], [0.9, 0.2])];
        let trails = [(3u64, vec![[0.5, 0.9], [0.9, 0.9]])];
        let long = ["door a>b 12 b>a 3".to_owned()];
        let hide = [[0.1, 0.4, 0.3, 0.8]];
        let s = Scene {
            frame: &frame,
            hide: &hide,
            tracks: &[],
            lines: &lines,
            zones: &[],
        };
        let deco = Decorations {
            trails: &trails,
            line_labels: &long,
            zone_labels: &[],
        };
        let shown = draw(&s, &deco, false).unwrap();
        let hidden = draw(&s, &deco, true).unwrap();
        // the trail, in the track's colour
        assert_eq!(px(shown.data(), 200, 140, 90), track_colour(3));
        // the label is the decoration's, longer than the name: drawn past where "door" ends
        let plain = draw(&s, &Decorations::default(), false).unwrap();
        let label_row = |img: &RgbFrame| {
            (22..170)
                .filter(|&x| (22..32).any(|y| px(img.data(), 200, x, y) == LINE_COLOUR))
                .max()
                .unwrap_or(0)
        };
        assert!(label_row(&shown) > label_row(&plain) + 40);
        // the checkerboard stays unless hiding is asked for
        let edges = |img: &RgbFrame| {
            (22..58)
                .filter(|&x| px(img.data(), 200, x, 60) != px(img.data(), 200, x + 1, 60))
                .count()
        };
        assert!(edges(&shown) >= 25, "{}", edges(&shown));
        assert!(2 * edges(&hidden) <= edges(&shown), "{}", edges(&hidden));
    }

    #[test]
    fn lines_zones_and_tracks_are_drawn() {
        let frame = RgbFrame::new(200, 100, vec![0; 200 * 100 * 3]).unwrap();
        let lines = [line("door", [0.1, 0.5], [0.9, 0.5])];
        let zones = [zone("till", vec![[0.1, 0.1], [0.4, 0.1], [0.4, 0.3]])];
        let tracks = [(7u64, [0.6, 0.1, 0.8, 0.4])];
        let s = Scene {
            frame: &frame,
            hide: &[],
            tracks: &tracks,
            lines: &lines,
            zones: &zones,
        };
        let mut img = frame.data().to_vec();
        draw_overlays(&mut img, 200, 100, &s, &Decorations::default());
        // The line, away from its label.
        assert_eq!(px(&img, 200, 150, 50), LINE_COLOUR);
        assert_eq!(px(&img, 200, 150, 45), [0; 3]);
        // The zone's top edge (y = 10) and its closing edge.
        assert_eq!(px(&img, 200, 60, 10), ZONE_COLOUR);
        assert_eq!(px(&img, 200, 50, 20), ZONE_COLOUR);
        // The track box's left and bottom edges, and a label near the line's start.
        let colour = TRACK_PALETTE[7 % TRACK_PALETTE.len()];
        assert_eq!(px(&img, 200, 120, 30), colour);
        assert_eq!(px(&img, 200, 140, 40), colour);
        assert_eq!(px(&img, 200, 140, 25), [0; 3]);
        assert!((52..62).any(|y| (22..60).any(|x| px(&img, 200, x, y) == LINE_COLOUR)));

        // The same through render: the line shows in the JPEG.
        let snap = render(&s, 90_000).unwrap();
        let decoded = image::load_from_memory(&snap.jpeg).unwrap().to_rgb8();
        let p = decoded.get_pixel(150, 50).0;
        assert!(
            p.iter().zip(LINE_COLOUR).all(|(&a, b)| a.abs_diff(b) < 30),
            "{p:?}"
        );
    }

    #[test]
    fn overlays_are_drawn_after_hiding() {
        let frame = noise(200, 200, 21);
        let tracks = [(0u64, [0.25, 0.25, 0.75, 0.75])];
        let hide = [[0.25, 0.25, 0.75, 0.75]];
        let lines = [line("across", [0.0, 0.5], [1.0, 0.5])];
        let s = Scene {
            frame: &frame,
            hide: &hide,
            tracks: &tracks,
            lines: &lines,
            zones: &[],
        };
        let snap = render(&s, 10_000_000).unwrap();
        let decoded = image::load_from_memory(&snap.jpeg).unwrap().to_rgb8();
        // The line crosses the hidden region and stays sharp there.
        let p = decoded.get_pixel(100, 100).0;
        assert!(
            p.iter().zip(LINE_COLOUR).all(|(&a, b)| a.abs_diff(b) < 40),
            "{p:?}"
        );
        let p = decoded.get_pixel(50, 100).0;
        let c = TRACK_PALETTE[0];
        assert!(p.iter().zip(c).all(|(&a, b)| a.abs_diff(b) < 40), "{p:?}");
    }

    #[test]
    fn wild_points_never_panic() {
        let wild = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1e30,
            1e30,
            -0.5,
            1.5,
            0.0,
            1.0,
        ];
        let mut lines = Vec::new();
        let mut zones = Vec::new();
        let mut tracks = Vec::new();
        for (i, &a) in wild.iter().enumerate() {
            for &b in &wild {
                lines.push(line("é\u{1F600}x", [a, b], [b, 0.5]));
                lines.push(line("", [0.5, a], [b, a]));
                zones.push(zone("z", vec![[a, b], [b, a], [0.5, 0.5]]));
                tracks.push((i as u64 * 1_000_003, [a, b, b, a]));
                tracks.push((u64::MAX, [a, 0.2, 0.3, b]));
            }
        }
        zones.push(zone("empty", vec![]));
        zones.push(zone("point", vec![[0.5, 0.5]]));
        lines.push(line(&"long name ".repeat(100), [0.9, 0.9], [0.1, 0.1]));
        for (w, h) in [(1, 1), (3, 2), (2, 5), (100, 60)] {
            let frame = noise(w, h, 1);
            let s = Scene {
                frame: &frame,
                hide: &[[f32::NAN, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]],
                tracks: &tracks,
                lines: &lines,
                zones: &zones,
            };
            let snap = render(&s, 1_000_000).unwrap();
            assert_eq!((snap.width, snap.height, snap.hidden), (w, h, 1));
        }
        // A line from far outside still crosses the image.
        let frame = RgbFrame::new(100, 100, vec![0; 100 * 100 * 3]).unwrap();
        let mut img = frame.data().to_vec();
        let lines = [line("", [-1e30, 0.5], [1e30, 0.5])];
        let s = Scene {
            frame: &frame,
            hide: &[],
            tracks: &[],
            lines: &lines,
            zones: &[],
        };
        draw_overlays(&mut img, 100, 100, &s, &Decorations::default());
        assert_eq!(px(&img, 100, 50, 50), LINE_COLOUR);
    }
}
