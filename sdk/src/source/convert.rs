//! Camera pixel formats to packed RGB: the formats V4L2 devices deliver (YUYV, UYVY, NV12, RGB24,
//! BGR24, GREY, MJPEG).
//!
//! SKELETON: the types and signatures below are fixed; the bodies are filled in by the conversion
//! work.

use crate::error::{Error, Result};
use crate::preprocess::RgbFrame;

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

/// Convert one frame to packed RGB.
///
/// # Errors
/// [`Error::Frame`] when `data` is shorter than the layout needs, the layout is impossible (odd
/// width for 4:2:2, odd size for NV12, `bytes_per_line` below the row size), or a JPEG does not
/// decode or decodes to another size.
pub fn to_rgb(layout: &Layout, data: &[u8]) -> Result<RgbFrame> {
    let _ = data;
    Err(Error::Frame(format!(
        "{} conversion is not written yet",
        layout.format
    )))
}
