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
    Ok(RgbFrame::new(layout.width, layout.height, pixels)?)
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
    Ok(RgbFrame::new(w, h, rgb.into_raw())?)
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
mod tests;
