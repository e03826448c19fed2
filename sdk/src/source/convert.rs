//! Camera pixel formats to packed RGB: the formats V4L2 devices deliver (YUYV, UYVY, NV12, RGB24,
//! BGR24, GREY, MJPEG).
//!
//! [`to_rgb`] turns one driver buffer, described by a [`Layout`], into an [`RgbFrame`]; the V4L2
//! source calls it on every frame it dequeues. [`required_bytes`] says how many bytes a layout needs.
//!
//! # Colour
//! The YUV formats (YUYV, UYVY, NV12) are read as ITU-R BT.601 Y'CbCr in limited ("studio")
//! range: Y' 16..=235, Cb and Cr 16..=240. That is what V4L2 reports by default for SD capture
//! (`V4L2_YCBCR_ENC_601`, `V4L2_QUANTIZATION_LIM_RANGE`) and what UVC webcams send. Values outside
//! the nominal range ("superblack", "superwhite") are clamped to 0..=255 after conversion. The
//! arithmetic is 16-bit fixed point in `i32`, with no floating point per pixel. GREY is full-range
//! luma copied to R, G and B.
//!
//! # Layout
//! `bytes_per_line` is the distance between the starts of two rows of the first plane; 0 means the
//! rows are tightly packed. Bytes past the end of a row (padding) are ignored. NV12's interleaved
//! CbCr plane starts right after the Y plane (`bytes_per_line * height` bytes) and has the same
//! stride. A buffer may be longer than the layout needs (drivers round buffer sizes up), never
//! shorter; the padding after the very last row need not be present.
//!
//! # MJPEG
//! Each frame is a JPEG, decoded with the `image` crate. Many UVC cameras leave out the Huffman
//! table (DHT) segment and rely on the decoder to assume the example tables of ITU-T T.81 Annex K.3;
//! when such a frame does not decode as it is, those tables are inserted before the start of scan
//! and it is decoded again.

use crate::error::{Error, Result};
use crate::preprocess::{RgbFrame, frame_size_problem};

/// A pixel format a camera delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelFormat {
    /// Packed 4:2:2 `Y0 U Y1 V` (V4L2 `YUYV`).
    Yuyv,
    /// Packed 4:2:2 `U Y0 V Y1` (V4L2 `UYVY`).
    Uyvy,
    /// Planar 4:2:0: a Y plane, then interleaved `U V` at half resolution (V4L2 `NV12`).
    Nv12,
    /// Packed `R G B` (V4L2 `RGB3`).
    Rgb24,
    /// Packed `B G R` (V4L2 `BGR3`).
    Bgr24,
    /// 8-bit luma only (V4L2 `GREY`).
    Grey,
    /// Motion JPEG: each frame a JPEG image (V4L2 `MJPG` or `JPEG`).
    Mjpeg,
}

/// How a frame's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next in the first (or only) plane, as the driver reports it
    /// (`bytesperline`); 0 means tightly packed. Ignored for MJPEG.
    pub bytes_per_line: u32,
}

impl PixelFormat {
    /// Every supported format.
    pub const ALL: [PixelFormat; 7] = [
        PixelFormat::Yuyv,
        PixelFormat::Uyvy,
        PixelFormat::Nv12,
        PixelFormat::Rgb24,
        PixelFormat::Bgr24,
        PixelFormat::Grey,
        PixelFormat::Mjpeg,
    ];

    /// The V4L2 four-character code (`MJPG` for MJPEG).
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Uyvy => *b"UYVY",
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::Rgb24 => *b"RGB3",
            PixelFormat::Bgr24 => *b"BGR3",
            PixelFormat::Grey => *b"GREY",
            PixelFormat::Mjpeg => *b"MJPG",
        }
    }

    /// The format of a V4L2 four-character code (`MJPG` and `JPEG` are both MJPEG).
    pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
        match &code {
            b"JPEG" => Some(PixelFormat::Mjpeg),
            _ => PixelFormat::ALL.into_iter().find(|f| f.fourcc() == code),
        }
    }

    /// The name used in configs: `yuyv`, `uyvy`, `nv12`, `rgb24`, `bgr24`, `grey`, `mjpeg`.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Uyvy => "uyvy",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgr24 => "bgr24",
            PixelFormat::Grey => "grey",
            PixelFormat::Mjpeg => "mjpeg",
        }
    }

    /// The format a config name means (see [`PixelFormat::name`]).
    pub fn from_name(name: &str) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The fewest bytes a frame of this layout needs, or `None` for MJPEG (whose frames vary in size)
/// and for layouts that cannot be converted (a zero or too large side, more than
/// [`MAX_FRAME_PIXELS`](crate::preprocess::MAX_FRAME_PIXELS) pixels, an odd width for YUYV/UYVY,
/// an odd width or height for NV12, `bytes_per_line` below the bytes a row needs, overflow).
///
/// Rows are `bytes_per_line` apart (a tight row when it is 0); the padding after the last row of a
/// plane is not counted. For NV12 that is the whole Y plane (`bytes_per_line * height`) and then
/// `height / 2` rows of CbCr at the same stride. A tightly packed 640x480 YUYV frame needs 614400.
pub fn required_bytes(layout: &Layout) -> Option<usize> {
    geometry(layout).ok().map(|g| g.needed)
}

/// Convert one frame to packed RGB.
///
/// YUV formats are read as BT.601 limited range (see the [module docs](self)); `data` may be longer
/// than the layout needs, and the padding at the end of each row is ignored.
///
/// # Errors
/// [`Error::Frame`] when `data` is shorter than the layout needs, the layout is impossible (odd
/// width for 4:2:2, odd size for NV12, `bytes_per_line` below the row size), or a JPEG does not
/// decode or decodes to another size.
pub fn to_rgb(layout: &Layout, data: &[u8]) -> Result<RgbFrame> {
    if layout.format == PixelFormat::Mjpeg {
        return mjpeg_to_rgb(layout, data);
    }
    let g = geometry(layout).map_err(|why| frame_error(layout, why))?;
    if data.len() < g.needed {
        return Err(frame_error(
            layout,
            format!("{} bytes, need {}", data.len(), g.needed),
        ));
    }
    let pixels = match layout.format {
        PixelFormat::Yuyv => packed_422(&g, data, |[y0, u, y1, v]| [y0, u, y1, v]),
        PixelFormat::Uyvy => packed_422(&g, data, |[u, y0, v, y1]| [y0, u, y1, v]),
        PixelFormat::Nv12 => nv12(&g, data),
        PixelFormat::Rgb24 => rgb24(&g, data),
        PixelFormat::Bgr24 => per_pixel::<3>(&g, data, |[b, g, r]| [r, g, b]),
        PixelFormat::Grey => per_pixel::<1>(&g, data, |[y]| [y, y, y]),
        PixelFormat::Mjpeg => None,
    };
    // `None` only if the checks above missed something: an error, never a panic or a bad frame.
    let pixels = pixels.ok_or_else(|| {
        frame_error(
            layout,
            format!("{} bytes do not hold the layout", data.len()),
        )
    })?;
    RgbFrame::new(layout.width, layout.height, pixels)
}

/// An [`Error::Frame`] that starts with the format and size, e.g. `yuyv 640x480: ...`.
fn frame_error(layout: &Layout, what: impl std::fmt::Display) -> Error {
    Error::Frame(format!(
        "{} {}x{}: {what}",
        layout.format, layout.width, layout.height
    ))
}

/// A validated uncompressed layout, in `usize`.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Width in pixels.
    width: usize,
    /// Height in pixels.
    height: usize,
    /// Bytes of pixel data in one row of the first plane (NV12: of either plane).
    row_bytes: usize,
    /// Bytes from the start of one row to the next, at least `row_bytes`.
    stride: usize,
    /// Fewest bytes the buffer needs.
    needed: usize,
}

/// Check a layout and work out its sizes; the error says what is wrong, without format and size.
fn geometry(layout: &Layout) -> std::result::Result<Geometry, String> {
    const OVERFLOW: &str = "the layout's size overflows";
    let (w, h) = (layout.width, layout.height);
    if let Some(problem) = frame_size_problem(w, h) {
        return Err(problem);
    }
    let bytes_per_pixel: usize = match layout.format {
        PixelFormat::Yuyv | PixelFormat::Uyvy => {
            if w % 2 != 0 {
                return Err("width must be even for 4:2:2".into());
            }
            2
        }
        PixelFormat::Nv12 => {
            if w % 2 != 0 || h % 2 != 0 {
                return Err("width and height must be even for 4:2:0".into());
            }
            1
        }
        PixelFormat::Rgb24 | PixelFormat::Bgr24 => 3,
        PixelFormat::Grey => 1,
        PixelFormat::Mjpeg => return Err("MJPEG frames have no fixed size".into()),
    };
    let width = usize::try_from(w).map_err(|_| OVERFLOW)?;
    let height = usize::try_from(h).map_err(|_| OVERFLOW)?;
    let row_bytes = width.checked_mul(bytes_per_pixel).ok_or(OVERFLOW)?;
    let stride = match layout.bytes_per_line {
        0 => row_bytes,
        n => usize::try_from(n).map_err(|_| OVERFLOW)?,
    };
    if stride < row_bytes {
        return Err(format!(
            "bytes_per_line {stride} is less than the {row_bytes} bytes a row needs"
        ));
    }
    // The bytes of a plane of `rows` rows: every row but the last with its padding.
    let plane = |rows: usize| -> Option<usize> {
        stride
            .checked_mul(rows.checked_sub(1)?)?
            .checked_add(row_bytes)
    };
    let needed = if layout.format == PixelFormat::Nv12 {
        stride
            .checked_mul(height)
            .and_then(|luma| luma.checked_add(plane(height / 2)?))
    } else {
        plane(height)
    }
    .ok_or(OVERFLOW)?;
    Ok(Geometry {
        width,
        height,
        row_bytes,
        stride,
        needed,
    })
}

/// The first `rows` rows of a plane, each cut to `row_bytes`; `None` if the plane is too short.
fn plane_rows(plane: &[u8], stride: usize, row_bytes: usize, rows: usize) -> Option<Vec<&[u8]>> {
    if stride == 0 {
        return None;
    }
    let cut: Vec<&[u8]> = plane
        .chunks(stride)
        .take(rows)
        .map(|row| row.get(..row_bytes))
        .collect::<Option<_>>()?;
    (cut.len() == rows).then_some(cut)
}

// BT.601 limited range Y'CbCr to R'G'B', with Kr = 0.299 and Kb = 0.114, Y' scaled by 255/219 and
// Cb, Cr by 255/224 (their nominal ranges are 16..=235 and 16..=240):
//
//   R = 1.164383 (Y - 16)                        + 1.596027 (Cr - 128)
//   G = 1.164383 (Y - 16) - 0.391762 (Cb - 128) - 0.812968 (Cr - 128)
//   B = 1.164383 (Y - 16) + 2.017232 (Cb - 128)
//
// where 1.164383 = 255/219, 1.596027 = 2 (1 - Kr) 255/224, 2.017232 = 2 (1 - Kb) 255/224,
// 0.391762 = 2 Kb (1 - Kb) / Kg 255/224 and 0.812968 = 2 Kr (1 - Kr) / Kg 255/224 (Kg = 0.587).
// The coefficients below are those times 2^16, rounded; the largest intermediate,
// 239 * 76309 + 127 * 132201, is far inside i32.
/// 255/219 in 16.16 fixed point.
const K_Y: i32 = 76_309;
/// Cr's weight in R.
const K_RV: i32 = 104_597;
/// Cb's weight in G (subtracted).
const K_GU: i32 = 25_675;
/// Cr's weight in G (subtracted).
const K_GV: i32 = 53_279;
/// Cb's weight in B.
const K_BU: i32 = 132_201;
/// Half of 2^16, so that the final shift rounds to nearest.
const ROUND: i32 = 1 << 15;

/// The chroma part of R, G and B for one Cb, Cr pair, with the rounding term folded in.
#[inline(always)]
fn chroma(cb: u8, cr: u8) -> [i32; 3] {
    let u = i32::from(cb) - 128;
    let v = i32::from(cr) - 128;
    [
        K_RV * v + ROUND,
        ROUND - K_GU * u - K_GV * v,
        K_BU * u + ROUND,
    ]
}

/// One RGB pixel from its luma and its pair's [`chroma`].
#[inline(always)]
fn pixel(y: u8, [r, g, b]: [i32; 3]) -> [u8; 3] {
    let luma = K_Y * (i32::from(y) - 16);
    [clamp(luma + r), clamp(luma + g), clamp(luma + b)]
}

/// Two horizontally adjacent RGB pixels that share one Cb, Cr pair.
#[inline(always)]
fn pixel_pair(y0: u8, y1: u8, c: [i32; 3]) -> [u8; 6] {
    let [r0, g0, b0] = pixel(y0, c);
    let [r1, g1, b1] = pixel(y1, c);
    [r0, g0, b0, r1, g1, b1]
}

/// A 16.16 fixed-point value to 0..=255.
#[inline(always)]
fn clamp(fixed: i32) -> u8 {
    // After the clamp the value fits a u8, so the cast cannot truncate.
    (fixed >> 16).clamp(0, 255) as u8
}

/// YUYV or UYVY: `order` turns 4 source bytes into `[Y0, Cb, Y1, Cr]`.
fn packed_422(g: &Geometry, data: &[u8], order: impl Fn([u8; 4]) -> [u8; 4]) -> Option<Vec<u8>> {
    let rows = plane_rows(data, g.stride, g.row_bytes, g.height)?;
    let mut out = vec![0u8; g.width.checked_mul(g.height)?.checked_mul(3)?];
    for (src, dst) in rows.into_iter().zip(out.chunks_exact_mut(g.width * 3)) {
        let (src, _) = src.as_chunks::<4>();
        let (dst, _) = dst.as_chunks_mut::<6>();
        for (s, d) in src.iter().zip(dst) {
            let [y0, cb, y1, cr] = order(*s);
            *d = pixel_pair(y0, y1, chroma(cb, cr));
        }
    }
    Some(out)
}

/// NV12: a Y plane, then `height / 2` rows of interleaved Cb, Cr at the same stride.
fn nv12(g: &Geometry, data: &[u8]) -> Option<Vec<u8>> {
    let (luma, chroma_plane) = data.split_at_checked(g.stride.checked_mul(g.height)?)?;
    let luma_rows = plane_rows(luma, g.stride, g.width, g.height)?;
    let chroma_rows = plane_rows(chroma_plane, g.stride, g.width, g.height / 2)?;
    let out_row = g.width * 3;
    let mut out = vec![0u8; out_row.checked_mul(g.height)?];
    for ((luma_pair, cbcr), dst_pair) in luma_rows
        .chunks_exact(2)
        .zip(chroma_rows)
        .zip(out.chunks_exact_mut(2 * out_row))
    {
        let [top, bottom] = luma_pair else {
            return None;
        };
        let (dst_top, dst_bottom) = dst_pair.split_at_mut_checked(out_row)?;
        let (cbcr, _) = cbcr.as_chunks::<2>();
        let pixels = top
            .as_chunks::<2>()
            .0
            .iter()
            .zip(bottom.as_chunks::<2>().0)
            .zip(cbcr)
            .zip(dst_top.as_chunks_mut::<6>().0)
            .zip(dst_bottom.as_chunks_mut::<6>().0);
        for ((((&[t0, t1], &[b0, b1]), &[cb, cr]), d_top), d_bottom) in pixels {
            let c = chroma(cb, cr);
            *d_top = pixel_pair(t0, t1, c);
            *d_bottom = pixel_pair(b0, b1, c);
        }
    }
    Some(out)
}

/// RGB24: the rows as they are, without their padding.
fn rgb24(g: &Geometry, data: &[u8]) -> Option<Vec<u8>> {
    if g.stride == g.row_bytes {
        return data
            .get(..g.row_bytes.checked_mul(g.height)?)
            .map(<[u8]>::to_vec);
    }
    let rows = plane_rows(data, g.stride, g.row_bytes, g.height)?;
    let mut out = Vec::with_capacity(g.row_bytes.checked_mul(g.height)?);
    for row in rows {
        out.extend_from_slice(row);
    }
    Some(out)
}

/// A format of `N` bytes a pixel, each pixel converted on its own by `convert`.
fn per_pixel<const N: usize>(
    g: &Geometry,
    data: &[u8],
    convert: impl Fn([u8; N]) -> [u8; 3],
) -> Option<Vec<u8>> {
    let rows = plane_rows(data, g.stride, g.row_bytes, g.height)?;
    let mut out = vec![0u8; g.width.checked_mul(g.height)?.checked_mul(3)?];
    for (src, dst) in rows.into_iter().zip(out.chunks_exact_mut(g.width * 3)) {
        for (s, d) in src
            .as_chunks::<N>()
            .0
            .iter()
            .zip(dst.as_chunks_mut::<3>().0)
        {
            *d = convert(*s);
        }
    }
    Some(out)
}

/// Decode an MJPEG frame, inserting the standard Huffman tables if it lacks them.
///
/// The JPEG's own size is read from its header and compared with the layout before anything is
/// decoded, so a frame whose header claims 65535x65535 costs no more than its own bytes.
fn mjpeg_to_rgb(layout: &Layout, data: &[u8]) -> Result<RgbFrame> {
    if let Some(problem) = frame_size_problem(layout.width, layout.height) {
        return Err(frame_error(layout, problem));
    }
    let want = (layout.width, layout.height);
    let decoded = match decode_jpeg(data, want) {
        Ok(decoded) => decoded,
        Err(first) => match with_standard_huffman_tables(data) {
            Some(fixed) => decode_jpeg(&fixed, want).map_err(|again| {
                frame_error(
                    layout,
                    format!(
                        "{} bytes do not decode as JPEG ({first}), nor with the standard Huffman tables inserted ({again})",
                        data.len()
                    ),
                )
            })?,
            None => {
                return Err(frame_error(
                    layout,
                    format!("{} bytes do not decode as JPEG: {first}", data.len()),
                ));
            }
        },
    };
    let image = match decoded {
        Jpeg::Image(image) => image,
        Jpeg::OtherSize(w, h) => {
            return Err(frame_error(
                layout,
                format!("the JPEG is {w}x{h}, not the negotiated size"),
            ));
        }
    };
    let rgb = image.into_rgb8();
    let (w, h) = rgb.dimensions();
    if (w, h) != want {
        return Err(frame_error(
            layout,
            format!("the JPEG is {w}x{h}, not the negotiated size"),
        ));
    }
    RgbFrame::new(w, h, rgb.into_raw())
}

/// A JPEG decoded, or the size its header claims when that is not the size wanted.
enum Jpeg {
    Image(image::DynamicImage),
    OtherSize(u32, u32),
}

/// Decode a JPEG whose header says it is `want` (width, height); any other size is reported
/// without decoding (and so without allocating for it).
fn decode_jpeg(bytes: &[u8], want: (u32, u32)) -> image::ImageResult<Jpeg> {
    use image::ImageDecoder;
    let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(bytes))?;
    let (w, h) = decoder.dimensions();
    if (w, h) != want {
        return Ok(Jpeg::OtherSize(w, h));
    }
    image::DynamicImage::from_decoder(decoder).map(Jpeg::Image)
}

// The example Huffman tables of ITU-T T.81 Annex K.3 (Tables K.3 to K.6), which MJPEG streams
// without a DHT segment assume (as AVI MJPEG and UVC payloads do). `*_BITS[i]` is the number of
// codes of length i + 1; `*_VALUES` are the symbols in order of increasing code length.

/// Table K.3: luminance DC code lengths.
const LUMA_DC_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
/// Table K.3: luminance DC symbols (difference categories).
const LUMA_DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
/// Table K.4: chrominance DC code lengths.
const CHROMA_DC_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
/// Table K.4: chrominance DC symbols.
const CHROMA_DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
/// Table K.5: luminance AC code lengths.
const LUMA_AC_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
/// Table K.5: luminance AC symbols (run << 4 | size).
#[rustfmt::skip]
const LUMA_AC_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];
/// Table K.6: chrominance AC code lengths.
const CHROMA_AC_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
/// Table K.6: chrominance AC symbols.
#[rustfmt::skip]
const CHROMA_AC_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
    0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

/// The four standard tables as `(Tc << 4 | Th, BITS, HUFFVAL)`: luminance (destination 0) DC and
/// AC, then chrominance (destination 1) DC and AC.
const STANDARD_TABLES: [(u8, &[u8; 16], &[u8]); 4] = [
    (0x00, &LUMA_DC_BITS, &LUMA_DC_VALUES),
    (0x10, &LUMA_AC_BITS, &LUMA_AC_VALUES),
    (0x01, &CHROMA_DC_BITS, &CHROMA_DC_VALUES),
    (0x11, &CHROMA_AC_BITS, &CHROMA_AC_VALUES),
];

/// One DHT segment (marker `FF C4`, length, then the four tables) holding [`STANDARD_TABLES`].
fn standard_dht_segment() -> Vec<u8> {
    let payload: Vec<u8> = STANDARD_TABLES
        .iter()
        .flat_map(|&(class_id, bits, values)| {
            std::iter::once(class_id)
                .chain(bits.iter().copied())
                .chain(values.iter().copied())
        })
        .collect();
    // 2 + 4 * 17 + 12 + 12 + 162 + 162 = 418: fits the 16-bit length field.
    let length = payload.len() + 2;
    let mut segment = vec![0xFF, 0xC4, (length >> 8) as u8, (length & 0xFF) as u8];
    segment.extend_from_slice(&payload);
    segment
}

/// The offset of the first start-of-scan marker (`FF DA`) of a JPEG when no DHT marker (`FF C4`)
/// comes before it; `None` when there is one, or when `data` is not a JPEG up to its first scan.
/// Walks the segments by their lengths, so bytes inside a segment (an EXIF thumbnail) are skipped.
fn sos_without_dht(data: &[u8]) -> Option<usize> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2usize;
    loop {
        if *data.get(at)? != 0xFF {
            return None;
        }
        // Any number of 0xFF fill bytes may come before a marker.
        let mut code_at = at.checked_add(1)?;
        while *data.get(code_at)? == 0xFF {
            code_at = code_at.checked_add(1)?;
        }
        match *data.get(code_at)? {
            0xDA => return Some(code_at - 1),
            // DHT before the scan; a second SOI, EOI or a stuffed zero: not what this handles.
            0xC4 | 0xD8 | 0xD9 | 0x00 => return None,
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => at = code_at.checked_add(1)?,
            _ => {
                let length = usize::from(u16::from_be_bytes([
                    *data.get(code_at.checked_add(1)?)?,
                    *data.get(code_at.checked_add(2)?)?,
                ]));
                if length < 2 {
                    return None;
                }
                at = code_at.checked_add(1)?.checked_add(length)?;
            }
        }
    }
}

/// The JPEG with [`standard_dht_segment`] inserted just before its first scan, when it has no DHT
/// segment before that scan; `None` otherwise.
fn with_standard_huffman_tables(data: &[u8]) -> Option<Vec<u8>> {
    let (head, tail) = data.split_at_checked(sos_without_dht(data)?)?;
    let segment = standard_dht_segment();
    let mut fixed = Vec::with_capacity(data.len() + segment.len());
    fixed.extend_from_slice(head);
    fixed.extend_from_slice(&segment);
    fixed.extend_from_slice(tail);
    Some(fixed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The 75% colour bars (EBU 100/0/75/0), left to right: the published BT.601 limited-range
    /// Y'CbCr of each bar, and its R'G'B' (191 = 0.75 * 255 per lit channel).
    const BARS_75: [([u8; 3], [u8; 3]); 8] = [
        ([180, 128, 128], [191, 191, 191]), // white
        ([162, 44, 142], [191, 191, 0]),    // yellow
        ([131, 156, 44], [0, 191, 191]),    // cyan
        ([112, 72, 58], [0, 191, 0]),       // green
        ([84, 184, 198], [191, 0, 191]),    // magenta
        ([65, 100, 212], [191, 0, 0]),      // red
        ([35, 212, 114], [0, 0, 191]),      // blue
        ([16, 128, 128], [0, 0, 0]),        // black
    ];

    /// Bytes that stand for driver padding.
    const GARBAGE: u8 = 0xAB;

    fn layout(format: PixelFormat, width: u32, height: u32, bytes_per_line: u32) -> Layout {
        Layout {
            format,
            width,
            height,
            bytes_per_line,
        }
    }

    /// A YUYV (or, with `uyvy`, UYVY) frame whose pixel (x, y) has the Y'CbCr `ycc(x, y)`; a
    /// pair's chroma is that of its left pixel. Each row is followed by `pad` garbage bytes.
    fn packed_frame(
        uyvy: bool,
        width: usize,
        height: usize,
        pad: usize,
        ycc: impl Fn(usize, usize) -> [u8; 3],
    ) -> Vec<u8> {
        let mut data = Vec::new();
        for y in 0..height {
            for x in (0..width).step_by(2) {
                let [y0, cb, cr] = ycc(x, y);
                let [y1, _, _] = ycc(x + 1, y);
                if uyvy {
                    data.extend_from_slice(&[cb, y0, cr, y1]);
                } else {
                    data.extend_from_slice(&[y0, cb, y1, cr]);
                }
            }
            data.extend(std::iter::repeat_n(GARBAGE, pad));
        }
        data
    }

    /// An NV12 frame like [`packed_frame`]: chroma from the top-left pixel of each 2x2 block;
    /// both planes' rows padded by `pad` garbage bytes.
    fn nv12_frame(
        width: usize,
        height: usize,
        pad: usize,
        ycc: impl Fn(usize, usize) -> [u8; 3],
    ) -> Vec<u8> {
        let mut data = Vec::new();
        for y in 0..height {
            data.extend((0..width).map(|x| ycc(x, y)[0]));
            data.extend(std::iter::repeat_n(GARBAGE, pad));
        }
        for y in (0..height).step_by(2) {
            for x in (0..width).step_by(2) {
                let [_, cb, cr] = ycc(x, y);
                data.extend_from_slice(&[cb, cr]);
            }
            data.extend(std::iter::repeat_n(GARBAGE, pad));
        }
        data
    }

    /// The Y'CbCr of pixel x of a frame of bars two pixels wide.
    fn bars_ycc(x: usize, _y: usize) -> [u8; 3] {
        BARS_75[(x / 2) % 8].0
    }

    fn pixel_at(frame: &RgbFrame, x: usize, y: usize) -> [u8; 3] {
        let view = frame.as_view();
        let at = (y * view.width() as usize + x) * 3;
        view.data()[at..at + 3].try_into().unwrap()
    }

    fn assert_close(got: [u8; 3], want: [u8; 3], tolerance: u8, what: &str) {
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.abs_diff(w) <= tolerance,
                "{what}: got {got:?}, want {want:?} (within {tolerance})"
            );
        }
    }

    /// Every pixel of a 16 x `height` bar frame is its bar's RGB within 2.
    fn assert_bars(frame: &RgbFrame, height: usize, what: &str) {
        for y in 0..height {
            for x in 0..16 {
                let want = BARS_75[x / 2].1;
                assert_close(
                    pixel_at(frame, x, y),
                    want,
                    2,
                    &format!("{what} ({x}, {y})"),
                );
            }
        }
    }

    fn frame_error_message(result: Result<RgbFrame>) -> String {
        match result {
            Err(Error::Frame(message)) => message,
            Err(other) => panic!("expected Error::Frame, got {other:?}"),
            Ok(frame) => panic!(
                "expected an error, got a {:?} frame",
                frame.as_view().width()
            ),
        }
    }

    #[test]
    fn fourcc_and_name_round_trip() {
        for format in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(format.fourcc()), Some(format));
            assert_eq!(PixelFormat::from_name(format.name()), Some(format));
            assert_eq!(format.to_string(), format.name());
        }
        assert_eq!(PixelFormat::from_fourcc(*b"JPEG"), Some(PixelFormat::Mjpeg));
        assert_eq!(PixelFormat::from_fourcc(*b"MJPG"), Some(PixelFormat::Mjpeg));
        assert_eq!(PixelFormat::from_fourcc(*b"H264"), None);
        assert_eq!(PixelFormat::from_name("YUYV"), None);
    }

    #[test]
    fn required_bytes_of_layouts() {
        let yuyv = layout(PixelFormat::Yuyv, 640, 480, 0);
        assert_eq!(required_bytes(&yuyv), Some(614_400));
        assert_eq!(
            required_bytes(&layout(PixelFormat::Yuyv, 640, 480, 1280)),
            Some(614_400)
        );
        // Padded rows: the last row's padding is not needed.
        assert_eq!(
            required_bytes(&layout(PixelFormat::Yuyv, 640, 480, 1536)),
            Some(1536 * 479 + 1280)
        );
        assert_eq!(required_bytes(&layout(PixelFormat::Uyvy, 2, 1, 0)), Some(4));
        assert_eq!(
            required_bytes(&layout(PixelFormat::Nv12, 640, 480, 0)),
            Some(460_800)
        );
        assert_eq!(
            required_bytes(&layout(PixelFormat::Nv12, 640, 480, 704)),
            Some(704 * 480 + 704 * 239 + 640)
        );
        assert_eq!(
            required_bytes(&layout(PixelFormat::Rgb24, 3, 2, 0)),
            Some(18)
        );
        assert_eq!(
            required_bytes(&layout(PixelFormat::Bgr24, 3, 2, 12)),
            Some(21)
        );
        assert_eq!(required_bytes(&layout(PixelFormat::Grey, 3, 2, 0)), Some(6));

        assert_eq!(
            required_bytes(&layout(PixelFormat::Mjpeg, 640, 480, 0)),
            None
        );
        assert_eq!(
            required_bytes(&layout(PixelFormat::Yuyv, 641, 480, 0)),
            None
        );
        assert_eq!(
            required_bytes(&layout(PixelFormat::Nv12, 640, 481, 0)),
            None
        );
        assert_eq!(
            required_bytes(&layout(PixelFormat::Yuyv, 640, 480, 1279)),
            None
        );
        assert_eq!(required_bytes(&layout(PixelFormat::Grey, 0, 480, 0)), None);
        assert_eq!(
            required_bytes(&layout(PixelFormat::Grey, 16_385, 1, 0)),
            None
        );
        assert_eq!(
            required_bytes(&layout(PixelFormat::Rgb24, 16_384, 4_096, u32::MAX)),
            u32::MAX
                .try_into()
                .ok()
                .and_then(|s: usize| s.checked_mul(4_095)?.checked_add(16_384 * 3))
        );
        // More pixels than MAX_FRAME_PIXELS, though each side is allowed.
        assert_eq!(
            required_bytes(&layout(PixelFormat::Grey, 16_384, 16_384, 0)),
            None
        );
    }

    #[test]
    fn yuyv_colour_bars() {
        let data = packed_frame(false, 16, 4, 0, bars_ycc);
        let frame = to_rgb(&layout(PixelFormat::Yuyv, 16, 4, 0), &data).unwrap();
        assert_bars(&frame, 4, "yuyv");
    }

    #[test]
    fn uyvy_colour_bars() {
        let data = packed_frame(true, 16, 4, 0, bars_ycc);
        let frame = to_rgb(&layout(PixelFormat::Uyvy, 16, 4, 0), &data).unwrap();
        assert_bars(&frame, 4, "uyvy");
    }

    #[test]
    fn nv12_colour_bars() {
        let data = nv12_frame(16, 4, 0, bars_ycc);
        assert_eq!(data.len(), 16 * 4 + 16 * 2);
        let frame = to_rgb(&layout(PixelFormat::Nv12, 16, 4, 0), &data).unwrap();
        assert_bars(&frame, 4, "nv12");
    }

    #[test]
    fn nv12_colour_bars_vary_by_row() {
        // Each pair of rows its own bar, so a mix-up of chroma rows shows.
        let ycc = |x: usize, y: usize| BARS_75[(x / 2 + y / 2) % 8].0;
        let frame = to_rgb(
            &layout(PixelFormat::Nv12, 16, 8, 0),
            &nv12_frame(16, 8, 0, ycc),
        )
        .unwrap();
        for y in 0..8 {
            for x in 0..16 {
                let want = BARS_75[(x / 2 + y / 2) % 8].1;
                assert_close(pixel_at(&frame, x, y), want, 2, &format!("({x}, {y})"));
            }
        }
    }

    #[test]
    fn full_white_black_and_clamping() {
        // (Y', expected grey level): 100% white and black, then superwhite and superblack.
        let cases = [(235, 255), (16, 0), (255, 255), (0, 0), (254, 255), (1, 0)];
        for (luma, want) in cases {
            let ycc = |_: usize, _: usize| [luma, 128, 128];
            let frames = [
                (PixelFormat::Yuyv, packed_frame(false, 4, 2, 0, ycc)),
                (PixelFormat::Uyvy, packed_frame(true, 4, 2, 0, ycc)),
                (PixelFormat::Nv12, nv12_frame(4, 2, 0, ycc)),
            ];
            for (format, data) in frames {
                let frame = to_rgb(&layout(format, 4, 2, 0), &data).unwrap();
                let expected: Vec<u8> = vec![want; 4 * 2 * 3];
                assert_eq!(frame.as_view().data(), expected, "{format} Y'={luma}");
            }
        }
        // Chroma far out of range saturates instead of wrapping; the reference says how far.
        let extremes = [[235, 255, 255], [16, 0, 0], [128, 255, 0], [128, 0, 255]];
        for [y, cb, cr] in extremes {
            let data = [y, cb, y, cr];
            let frame = to_rgb(&layout(PixelFormat::Yuyv, 2, 1, 0), &data).unwrap();
            let want = reference_rgb(y, cb, cr);
            assert_close(pixel_at(&frame, 0, 0), want, 1, &format!("{y},{cb},{cr}"));
        }
        assert_eq!(reference_rgb(235, 255, 255), [255, 102, 255]);
    }

    /// BT.601 limited range to R'G'B' in floating point, derived here from the standard's forward
    /// equations (Y' = Kr R + Kg G + Kb B, Cb = (B - Y') / (2 (1 - Kb)), Cr = (R - Y') / (2 (1 - Kr)),
    /// with Y' coded as 16 + 219 Y' and Cb, Cr as 128 + 224 Cb, Cr), not from the code's constants.
    fn reference_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (kr, kb) = (0.299, 0.114);
        let kg = 1.0 - kr - kb;
        let luma = (f64::from(y) - 16.0) / 219.0;
        let pb = (f64::from(cb) - 128.0) / 224.0;
        let pr = (f64::from(cr) - 128.0) / 224.0;
        let r = luma + 2.0 * (1.0 - kr) * pr;
        let b = luma + 2.0 * (1.0 - kb) * pb;
        let g = (luma - kr * r - kb * b) / kg;
        [r, g, b].map(|c| (c * 255.0).round().clamp(0.0, 255.0) as u8)
    }

    #[test]
    fn matches_the_floating_point_reference() {
        // Every Y' with a spread of Cb, Cr, in all three YUV layouts: within 1 of the reference.
        let chroma: Vec<u8> = (0..=255).step_by(15).collect();
        for &cb in &chroma {
            for &cr in &chroma {
                let ycc = |x: usize, _: usize| [(x / 2) as u8, cb, cr];
                let ycc_nv12 = |x: usize, _: usize| [x as u8, cb, cr];
                let yuyv = packed_frame(false, 512, 1, 0, ycc);
                let uyvy = packed_frame(true, 512, 1, 0, ycc);
                let nv12 = nv12_frame(256, 2, 0, ycc_nv12);
                let yuyv = to_rgb(&layout(PixelFormat::Yuyv, 512, 1, 0), &yuyv).unwrap();
                let uyvy = to_rgb(&layout(PixelFormat::Uyvy, 512, 1, 0), &uyvy).unwrap();
                let nv12 = to_rgb(&layout(PixelFormat::Nv12, 256, 2, 0), &nv12).unwrap();
                for y in 0..=255u8 {
                    let want = reference_rgb(y, cb, cr);
                    let what = format!("{y},{cb},{cr}");
                    let x = usize::from(y);
                    assert_close(pixel_at(&yuyv, 2 * x, 0), want, 1, &what);
                    assert_close(pixel_at(&uyvy, 2 * x + 1, 0), want, 1, &what);
                    assert_close(pixel_at(&nv12, x, 1), want, 1, &what);
                }
            }
        }
    }

    #[test]
    fn neutral_greys_are_proportional() {
        // With Cb = Cr = 128 every channel is (Y' - 16) * 255 / 219, rounded.
        let data: Vec<u8> = (16..=235u8).flat_map(|y| [y, 128, y, 128]).collect();
        let width = u32::try_from(data.len() / 2).unwrap();
        let frame = to_rgb(&layout(PixelFormat::Yuyv, width, 1, 0), &data).unwrap();
        for (i, y) in (16..=235u8).enumerate() {
            let want = ((f64::from(y) - 16.0) * 255.0 / 219.0).round() as u8;
            assert_eq!(pixel_at(&frame, 2 * i, 0), [want; 3], "Y'={y}");
            assert_eq!(pixel_at(&frame, 2 * i + 1, 0), [want; 3], "Y'={y}");
        }
    }

    #[test]
    fn nv12_stride_padding_is_ignored() {
        let tight = to_rgb(
            &layout(PixelFormat::Nv12, 16, 4, 0),
            &nv12_frame(16, 4, 0, bars_ycc),
        )
        .unwrap();
        let padded_data = nv12_frame(16, 4, 8, bars_ycc);
        let padded = to_rgb(&layout(PixelFormat::Nv12, 16, 4, 24), &padded_data).unwrap();
        assert_eq!(padded, tight);
        // Without the padding after the last chroma row, too.
        let cut = &padded_data[..padded_data.len() - 8];
        assert_eq!(
            cut.len(),
            required_bytes(&layout(PixelFormat::Nv12, 16, 4, 24)).unwrap()
        );
        assert_eq!(
            to_rgb(&layout(PixelFormat::Nv12, 16, 4, 24), cut).unwrap(),
            tight
        );
    }

    #[test]
    fn yuyv_and_uyvy_stride_padding_is_ignored() {
        for uyvy in [false, true] {
            let format = if uyvy {
                PixelFormat::Uyvy
            } else {
                PixelFormat::Yuyv
            };
            let tight = to_rgb(
                &layout(format, 16, 4, 0),
                &packed_frame(uyvy, 16, 4, 0, bars_ycc),
            )
            .unwrap();
            let padded = packed_frame(uyvy, 16, 4, 12, bars_ycc);
            let converted = to_rgb(&layout(format, 16, 4, 44), &padded).unwrap();
            assert_eq!(converted, tight, "{format}");
            assert_bars(&converted, 4, &format!("{format} padded"));
        }
    }

    #[test]
    fn longer_buffers_are_fine() {
        let mut data = packed_frame(false, 16, 2, 0, bars_ycc);
        let tight = to_rgb(&layout(PixelFormat::Yuyv, 16, 2, 0), &data).unwrap();
        data.extend_from_slice(&[GARBAGE; 100]);
        assert_eq!(
            to_rgb(&layout(PixelFormat::Yuyv, 16, 2, 0), &data).unwrap(),
            tight
        );
    }

    #[test]
    fn rgb24_is_copied() {
        let data: Vec<u8> = (0..2 * 3 * 3).collect();
        let frame = to_rgb(&layout(PixelFormat::Rgb24, 3, 2, 0), &data).unwrap();
        assert_eq!(frame.as_view().data(), data);
        // 3 pixels of 3 bytes and 2 bytes of padding per row.
        let padded = [
            1, 2, 3, 4, 5, 6, 7, 8, 9, GARBAGE, GARBAGE, 11, 12, 13, 14, 15, 16, 17, 18, 19,
        ];
        let frame = to_rgb(&layout(PixelFormat::Rgb24, 3, 2, 11), &padded).unwrap();
        assert_eq!(
            frame.as_view().data(),
            [
                1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19
            ]
        );
    }

    #[test]
    fn bgr24_swaps_red_and_blue() {
        // Pixels: pure blue, pure green, pure red, then (B 1, G 2, R 3), in B G R order.
        let data = [255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 2, 3];
        let frame = to_rgb(&layout(PixelFormat::Bgr24, 2, 2, 0), &data).unwrap();
        assert_eq!(
            frame.as_view().data(),
            [0, 0, 255, 0, 255, 0, 255, 0, 0, 3, 2, 1]
        );
        let padded = [255, 0, 0, 0, 255, 0, GARBAGE, 0, 0, 255, 1, 2, 3];
        let frame = to_rgb(&layout(PixelFormat::Bgr24, 2, 2, 7), &padded).unwrap();
        assert_eq!(
            frame.as_view().data(),
            [0, 0, 255, 0, 255, 0, 255, 0, 0, 3, 2, 1]
        );
    }

    #[test]
    fn grey_is_full_range() {
        let data = [0, 16, 128, 235, 255, 7];
        let frame = to_rgb(&layout(PixelFormat::Grey, 3, 2, 0), &data).unwrap();
        let want: Vec<u8> = data.iter().flat_map(|&y| [y, y, y]).collect();
        assert_eq!(frame.as_view().data(), want);
        let padded = [0, 16, 128, GARBAGE, 235, 255, 7];
        let frame = to_rgb(&layout(PixelFormat::Grey, 3, 2, 4), &padded).unwrap();
        assert_eq!(frame.as_view().data(), want);
    }

    #[test]
    fn short_buffers_are_errors() {
        let message = frame_error_message(to_rgb(
            &layout(PixelFormat::Yuyv, 640, 480, 0),
            &vec![0; 614_399],
        ));
        assert_eq!(message, "yuyv 640x480: 614399 bytes, need 614400");
        for format in PixelFormat::ALL {
            if format == PixelFormat::Mjpeg {
                continue;
            }
            for bytes_per_line in [0, 64] {
                let layout = layout(format, 16, 4, bytes_per_line);
                let needed = required_bytes(&layout).unwrap();
                for len in [0, 1, needed / 2, needed - 1] {
                    let message = frame_error_message(to_rgb(&layout, &vec![0; len]));
                    assert!(
                        message.starts_with(&format!("{format} 16x4: {len} bytes, need {needed}")),
                        "{message}"
                    );
                }
                assert!(to_rgb(&layout, &vec![0; needed]).is_ok(), "{format}");
            }
        }
    }

    #[test]
    fn impossible_layouts_are_errors() {
        let big = vec![0u8; 1 << 16];
        let cases = [
            (
                layout(PixelFormat::Yuyv, 15, 4, 0),
                "yuyv 15x4: width must be even",
            ),
            (
                layout(PixelFormat::Uyvy, 1, 1, 0),
                "uyvy 1x1: width must be even",
            ),
            (
                layout(PixelFormat::Nv12, 15, 4, 0),
                "nv12 15x4: width and height must be even",
            ),
            (
                layout(PixelFormat::Nv12, 16, 3, 0),
                "nv12 16x3: width and height must be even",
            ),
            (
                layout(PixelFormat::Yuyv, 16, 4, 31),
                "yuyv 16x4: bytes_per_line 31 is less than the 32 bytes a row needs",
            ),
            (
                layout(PixelFormat::Rgb24, 16, 4, 47),
                "rgb24 16x4: bytes_per_line 47 is less than the 48 bytes a row needs",
            ),
            (
                layout(PixelFormat::Nv12, 16, 4, 15),
                "nv12 16x4: bytes_per_line 15 is less than the 16 bytes a row needs",
            ),
            (
                layout(PixelFormat::Grey, 0, 4, 0),
                "grey 0x4: size is outside",
            ),
            (
                layout(PixelFormat::Bgr24, 4, 0, 0),
                "bgr24 4x0: size is outside",
            ),
            (
                layout(PixelFormat::Grey, 20_000, 1, 0),
                "grey 20000x1: size is outside",
            ),
        ];
        for (layout, start) in cases {
            let message = frame_error_message(to_rgb(&layout, &big));
            assert!(message.starts_with(start), "{message}");
            assert_eq!(required_bytes(&layout), None, "{message}");
        }
    }

    /// A `width` x `height` image of the eight 100% colour bars, left to right.
    fn full_bars(width: u32, height: u32) -> (Vec<u8>, [[u8; 3]; 8]) {
        let colours = [
            [255, 255, 255],
            [255, 255, 0],
            [0, 255, 255],
            [0, 255, 0],
            [255, 0, 255],
            [255, 0, 0],
            [0, 0, 255],
            [0, 0, 0],
        ];
        let bar = width / 8;
        let data = (0..height)
            .flat_map(|_| (0..width).flat_map(move |x| colours[(x / bar) as usize]))
            .collect();
        (data, colours)
    }

    fn encode_jpeg(rgb: &[u8], width: u32, height: u32, quality: u8) -> Vec<u8> {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
            .encode(rgb, width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        jpeg
    }

    /// The JPEG without its DHT segments, the DHT segments' payloads (after the length) in order,
    /// and the offset of the start-of-scan marker in the stripped JPEG.
    fn strip_dht(jpeg: &[u8]) -> (Vec<u8>, Vec<u8>, usize) {
        assert_eq!(jpeg[..2], [0xFF, 0xD8]);
        let mut stripped = jpeg[..2].to_vec();
        let mut tables = Vec::new();
        let mut at = 2;
        loop {
            assert_eq!(jpeg[at], 0xFF, "segment at {at}");
            let marker = jpeg[at + 1];
            if marker == 0xDA {
                let sos = stripped.len();
                stripped.extend_from_slice(&jpeg[at..]);
                return (stripped, tables, sos);
            }
            let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
            let segment = &jpeg[at..at + 2 + length];
            if marker == 0xC4 {
                tables.extend_from_slice(&segment[4..]);
            } else {
                stripped.extend_from_slice(segment);
            }
            at += 2 + length;
        }
    }

    #[test]
    fn mjpeg_colour_bars() {
        let (rgb, colours) = full_bars(64, 32);
        let jpeg = encode_jpeg(&rgb, 64, 32, 95);
        let frame = to_rgb(&layout(PixelFormat::Mjpeg, 64, 32, 0), &jpeg).unwrap();
        for (i, want) in colours.into_iter().enumerate() {
            assert_close(
                pixel_at(&frame, i * 8 + 4, 16),
                want,
                10,
                &format!("bar {i}"),
            );
        }
    }

    #[test]
    fn mjpeg_of_another_size_is_an_error() {
        let (rgb, _) = full_bars(64, 32);
        let jpeg = encode_jpeg(&rgb, 64, 32, 90);
        let message = frame_error_message(to_rgb(&layout(PixelFormat::Mjpeg, 32, 32, 0), &jpeg));
        assert_eq!(
            message,
            "mjpeg 32x32: the JPEG is 64x32, not the negotiated size"
        );
    }

    /// The JPEG with the size in its frame header (SOF0) replaced.
    fn with_header_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline JPEG");
        let mut patched = jpeg.to_vec();
        // FF C0, length (2), precision (1), height (2), width (2).
        patched[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        patched[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        patched
    }

    #[test]
    fn mjpeg_header_claiming_a_huge_size_is_refused_before_decoding() {
        let (rgb, _) = full_bars(64, 32);
        let jpeg = encode_jpeg(&rgb, 64, 32, 90);
        let huge = with_header_size(&jpeg, 65_535, 65_535);
        // Compared with the negotiated size from the header alone: the decoder is never asked
        // for 12 GiB (without the check `image` reports its allocation limit instead).
        let message = frame_error_message(to_rgb(&layout(PixelFormat::Mjpeg, 64, 32, 0), &huge));
        assert_eq!(
            message,
            "mjpeg 64x32: the JPEG is 65535x65535, not the negotiated size"
        );
        // The same without Huffman tables: the retry with the standard tables checks it too.
        let (stripped, _, _) = strip_dht(&huge);
        let message =
            frame_error_message(to_rgb(&layout(PixelFormat::Mjpeg, 64, 32, 0), &stripped));
        assert!(message.contains("65535x65535"), "{message}");
        // A negotiated size beyond the bounds is refused before the JPEG is looked at.
        for (w, h) in [(65_535, 65_535), (16_384, 16_384), (0, 32)] {
            let message = frame_error_message(to_rgb(&layout(PixelFormat::Mjpeg, w, h, 0), &huge));
            assert!(
                message.starts_with(&format!("mjpeg {w}x{h}: ")) && message.contains("size")
                    || message.contains("pixels"),
                "{message}"
            );
            assert!(!message.contains("JPEG is"), "{message}");
        }
    }

    #[test]
    fn huge_uncompressed_headers_are_errors_without_allocating() {
        // 65535x65535 and friends: refused by their size, whatever the buffer.
        let data = vec![0u8; 1024];
        for format in PixelFormat::ALL {
            for (w, h, stride) in [
                (65_535, 65_535, 0),
                (u32::MAX, u32::MAX, u32::MAX),
                (16_384, 16_384, 0),
                (16_384, 4_096, u32::MAX),
                (2, 2, u32::MAX),
            ] {
                let l = layout(format, w, h, stride);
                let message = frame_error_message(to_rgb(&l, &data));
                assert!(
                    message.starts_with(&format!("{format} {w}x{h}: ")),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn mjpeg_garbage_is_an_error() {
        let mjpeg = layout(PixelFormat::Mjpeg, 64, 32, 0);
        for data in [
            &b""[..],
            b"not a jpeg",
            &[0xFF, 0xD8],
            &[0xFF, 0xD8, 0xFF, 0xDA, 0, 2],
        ] {
            let message = frame_error_message(to_rgb(&mjpeg, data));
            assert!(message.starts_with("mjpeg 64x32: "), "{message}");
        }
        // Pseudo-random bodies after a JPEG start, and cut-off real JPEGs: any answer, no panic.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..50 {
            let mut data = vec![0xFF, 0xD8];
            for _ in 0..512 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                data.push(state as u8);
            }
            let _ = to_rgb(&mjpeg, &data);
        }
        let (rgb, _) = full_bars(64, 32);
        let jpeg = encode_jpeg(&rgb, 64, 32, 90);
        for cut in (0..jpeg.len()).step_by(37) {
            let _ = to_rgb(&mjpeg, &jpeg[..cut]);
            let (stripped, _, _) = strip_dht(&jpeg);
            let _ = to_rgb(&mjpeg, &stripped[..cut.min(stripped.len())]);
        }
    }

    #[test]
    fn standard_tables_are_complete_codes() {
        for (class_id, bits, values) in STANDARD_TABLES {
            let count: usize = bits.iter().map(|&n| usize::from(n)).sum();
            assert_eq!(count, values.len(), "table {class_id:#04x}");
            // Kraft: the codes fit, leaving out only the all-ones code of each length.
            let kraft: u32 = (0..16).map(|i| u32::from(bits[i]) << (15 - i)).sum();
            assert!(kraft < 1 << 16, "table {class_id:#04x}");
            let mut sorted = values.to_vec();
            sorted.sort_unstable();
            if class_id >> 4 == 0 {
                assert_eq!(sorted, (0..12).collect::<Vec<u8>>());
            } else {
                // Every (run, size) symbol once: EOB, ZRL and run 0..=15 with size 1..=10.
                let mut all = vec![0x00, 0xF0];
                all.extend((0..16u8).flat_map(|run| (1..=10u8).map(move |size| run << 4 | size)));
                all.sort_unstable();
                assert_eq!(sorted, all, "table {class_id:#04x}");
                // The 16-bit codes are the symbols not given a shorter one, in ascending order.
                let long = &values[values.len() - usize::from(bits[15])..];
                assert!(
                    long.windows(2).all(|w| w[0] < w[1]),
                    "table {class_id:#04x}"
                );
            }
        }
        let segment = standard_dht_segment();
        assert_eq!(segment[..4], [0xFF, 0xC4, 0x01, 0xA2]);
        assert_eq!(segment.len(), 2 + 418);
    }

    #[test]
    fn jpeg_encoder_writes_the_standard_tables() {
        // The premise of the DHT-less test below: `image`'s encoder writes the Annex K tables, not
        // optimised ones, so stripping them and inserting ours must give back the same JPEG.
        let (rgb, _) = full_bars(64, 32);
        let jpeg = encode_jpeg(&rgb, 64, 32, 90);
        let (_, tables, _) = strip_dht(&jpeg);
        assert_eq!(tables, standard_dht_segment()[4..]);
    }

    #[test]
    fn mjpeg_without_huffman_tables_decodes() {
        let (rgb, _) = full_bars(64, 32);
        let jpeg = encode_jpeg(&rgb, 64, 32, 90);
        let (stripped, _, _) = strip_dht(&jpeg);
        assert!(
            image::load_from_memory_with_format(&stripped, image::ImageFormat::Jpeg).is_err(),
            "the decoder alone should fail without tables, or this test tests nothing"
        );
        let mjpeg = layout(PixelFormat::Mjpeg, 64, 32, 0);
        let with_tables = to_rgb(&mjpeg, &jpeg).unwrap();
        let without = to_rgb(&mjpeg, &stripped).unwrap();
        assert_eq!(without, with_tables);
    }

    #[test]
    fn huffman_table_insertion_bytes() {
        let (rgb, _) = full_bars(64, 32);
        let jpeg = encode_jpeg(&rgb, 64, 32, 90);
        assert_eq!(with_standard_huffman_tables(&jpeg), None, "it has tables");
        let (stripped, _, sos) = strip_dht(&jpeg);
        let mut want = stripped[..sos].to_vec();
        want.extend_from_slice(&standard_dht_segment());
        want.extend_from_slice(&stripped[sos..]);
        assert_eq!(with_standard_huffman_tables(&stripped), Some(want));

        // A hand-made header: an APP0 whose payload looks like a DHT marker, then fill bytes
        // before SOS. The segment goes right before the `FF DA`, after the fill byte.
        let data = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xFF, 0xC4, 0xFF, 0xFF, 0xDA, 0x00, 0x02, 0x11,
        ];
        let mut want = data[..9].to_vec();
        want.extend_from_slice(&standard_dht_segment());
        want.extend_from_slice(&data[9..]);
        assert_eq!(with_standard_huffman_tables(&data), Some(want));

        // Not JPEGs, cut short, or broken: nothing to insert.
        for data in [
            &b""[..],
            b"not a jpeg",
            &[0xFF, 0xD8],
            &[0xFF, 0xD8, 0xFF],
            &[0xFF, 0xD8, 0xFF, 0xE0, 0x00],
            &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01, 0xFF, 0xDA],
            &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0xFF, 0xDA],
            &[0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA],
            &[0xFF, 0xD8, 0x00, 0xFF, 0xDA],
        ] {
            assert_eq!(with_standard_huffman_tables(data), None, "{data:02x?}");
        }
    }
}
