//! Frames: packed 8-bit RGB pixels ([`RgbFrame`], [`RgbView`]) with the bounds every decoder
//! checks a header against, and a source's [`Frame`] (pixels with sequence number and times).

use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// Largest frame side accepted, to bound allocations from a hostile header.
pub const MAX_FRAME_SIDE: u32 = 16_384;

/// Most pixels a frame may have (64 Mi: 8192 x 8192, or 16384 x 4096), so that one RGB frame
/// is at most 192 MiB however its header lies; an 8K UHD frame (33 Mpx) fits.
pub const MAX_FRAME_PIXELS: u64 = 1 << 26;

/// Check a frame size against [`MAX_FRAME_SIDE`] and [`MAX_FRAME_PIXELS`]; the error says which
/// bound is broken (without the size, which the caller puts in front).
pub fn frame_size_problem(width: u32, height: u32) -> Option<String> {
    if width == 0 || height == 0 || width > MAX_FRAME_SIDE || height > MAX_FRAME_SIDE {
        return Some(format!("size is outside 1..={MAX_FRAME_SIDE} per side"));
    }
    let pixels = u64::from(width) * u64::from(height);
    (pixels > MAX_FRAME_PIXELS)
        .then(|| format!("{pixels} pixels is more than the {MAX_FRAME_PIXELS} a frame may have"))
}

/// `width * height * 3` for a frame size that passed [`frame_size_problem`]; `None` on overflow
/// (never for such a size, even with a 32-bit `usize`).
pub fn rgb_len(width: u32, height: u32) -> Option<usize> {
    usize::try_from(width)
        .ok()?
        .checked_mul(usize::try_from(height).ok()?)?
        .checked_mul(3)
}

/// An owned, packed 8-bit RGB frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbFrame {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

/// A borrowed, packed 8-bit RGB frame (`width * height * 3` bytes, rows top to bottom).
#[derive(Debug, Clone, Copy)]
pub struct RgbView<'a> {
    width: u32,
    height: u32,
    data: &'a [u8],
}

fn check_dims(width: u32, height: u32, len: usize) -> Result<()> {
    if let Some(problem) = frame_size_problem(width, height) {
        return Err(Error::Frame(format!("{width}x{height}: {problem}")));
    }
    let want = rgb_len(width, height)
        .ok_or_else(|| Error::Frame(format!("{width}x{height}: the size overflows")))?;
    if len != want {
        return Err(Error::Frame(format!(
            "{width}x{height} RGB needs {want} bytes, got {len}"
        )));
    }
    Ok(())
}

impl RgbFrame {
    /// Wrap a packed RGB buffer; its length must be `width * height * 3`.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self> {
        check_dims(width, height, data.len())?;
        Ok(RgbFrame {
            width,
            height,
            data,
        })
    }
    /// Borrow as a view.
    pub fn as_view(&self) -> RgbView<'_> {
        RgbView {
            width: self.width,
            height: self.height,
            data: &self.data,
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
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Give back the buffer.
    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }
    /// The part inside `bbox` (normalised `[x0, y0, x1, y1]`, as detections report it, clamped to
    /// the frame), as a new frame.
    ///
    /// # Errors
    /// [`Error::Frame`] when the box is empty after clamping.
    pub fn crop(&self, bbox: [f32; 4]) -> Result<RgbFrame> {
        self.as_view().crop(bbox)
    }
}

impl<'a> RgbView<'a> {
    /// Wrap a packed RGB slice; its length must be `width * height * 3`.
    pub fn new(width: u32, height: u32, data: &'a [u8]) -> Result<Self> {
        check_dims(width, height, data.len())?;
        Ok(RgbView {
            width,
            height,
            data,
        })
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
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
    /// The part inside `bbox` (normalised `[x0, y0, x1, y1]`, clamped to the frame), as a new
    /// frame.
    ///
    /// # Errors
    /// [`Error::Frame`] when the box is empty after clamping.
    pub fn crop(&self, bbox: [f32; 4]) -> Result<RgbFrame> {
        let (w, h) = (self.width as f32, self.height as f32);
        let px = |v: f32, side: f32| (v.clamp(0.0, 1.0) * side).round() as usize;
        let (x0, y0, x1, y1) = (
            px(bbox[0], w),
            px(bbox[1], h),
            px(bbox[2], w),
            px(bbox[3], h),
        );
        if x1 <= x0 || y1 <= y0 {
            return Err(Error::Frame(format!("crop box {bbox:?} is empty")));
        }
        let stride = self.width as usize * 3;
        let mut data = Vec::with_capacity((x1 - x0) * (y1 - y0) * 3);
        for row in self.data.chunks_exact(stride).skip(y0).take(y1 - y0) {
            data.extend_from_slice(row.get(x0 * 3..x1 * 3).unwrap_or_default());
        }
        RgbFrame::new((x1 - x0) as u32, (y1 - y0) as u32, data)
    }
}

/// One frame from a source: its pixels, what the sensor computed on the chip, or both.
///
/// A plain camera or file delivers pixels ([`Frame::new`]). An intelligent sensor that runs the
/// network itself (Sony's IMX500) delivers its output tensors in [`Frame::sensor_data`], and
/// pixels only when someone asked to see the scene ([`crate::Source::request_pixels`]): by
/// default the host reads no pixels at all ([`Frame::from_sensor`]).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Sequence number, from 0, increasing by one per frame delivered by the source.
    pub seq: u64,
    /// Wall-clock capture time.
    pub captured: SystemTime,
    /// Media time: position in a file, or time since a live source started.
    pub t: Duration,
    /// The pixels; `None` for a frame of on-sensor results with no pixels asked for.
    pub image: Option<RgbFrame>,
    /// What the sensor computed for this frame, in the sensor's own encoding (for an IMX500: the
    /// DNN lines of its embedded data, KPI, input and output tensors); `None` for plain sensors.
    /// An [`crate::Inference`] that knows the encoding turns it into detections.
    pub sensor_data: Option<Vec<u8>>,
}

impl Frame {
    /// A frame of pixels.
    pub fn new(seq: u64, captured: SystemTime, t: Duration, image: RgbFrame) -> Frame {
        Frame {
            seq,
            captured,
            t,
            image: Some(image),
            sensor_data: None,
        }
    }

    /// A frame of on-sensor results, with no pixels.
    pub fn from_sensor(seq: u64, captured: SystemTime, t: Duration, data: Vec<u8>) -> Frame {
        Frame {
            seq,
            captured,
            t,
            image: None,
            sensor_data: Some(data),
        }
    }

    /// Bytes of pixels in this frame (0 when it carries none).
    pub fn pixel_bytes(&self) -> usize {
        self.image.as_ref().map_or(0, |i| i.data().len())
    }
}

/// Counters a source keeps about what it could not deliver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Frames that could not be decoded and were skipped (corrupt image, truncated last frame).
    pub skipped: u64,
    /// Reconnections of a live stream, reopenings of a camera that went away.
    pub reconnects: u64,
    /// Frames the source knows it missed: frames a camera driver dropped (gaps in its sequence
    /// numbers) and, for a camera that went away, the frames the outage cost at its frame rate.
    pub lost: u64,
}
