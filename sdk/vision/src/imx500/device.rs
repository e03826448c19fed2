//! The V4L2 node that carries an IMX500's embedded data on a board ([`TensorFeed::Device`]).
//!
//! # What arrives on the node
//!
//! Facts from Raspberry Pi's kernel driver `drivers/media/i2c/imx500.c` and libcamera's
//! `cam_helper_imx500.cpp` (the code here is our own):
//!
//! - The sensor has two source pads (`enum pad_types { IMAGE_PAD, METADATA_PAD }`). The metadata
//!   pad's format (`imx500_update_metadata_pad_format`, also what `imx500_enum_frame_size` reports)
//!   is `MEDIA_BUS_FMT_SENSOR_DATA`, **height 1**, width `IMX500_MAX_EMBEDDED_SIZE +
//!   num_inference_lines * IMX500_INFERENCE_LINE_WIDTH`: the whole frame's embedded data as one
//!   long "line". `IMX500_MAX_EMBEDDED_SIZE` is `2 * ((((IMX500_PIXEL_ARRAY_WIDTH * 10) >> 3) + 15)
//!   & ~15)` = 2 × 5072 = 10 144 bytes: room for **two register lines** of a full-width RAW10 line,
//!   rounded up to 16 bytes. `IMX500_INFERENCE_LINE_WIDTH` is 2560 (also written to the sensor's
//!   `DD_CH0{6..9}_X_OUT_SIZE` registers in `mode_common_regs`); `num_inference_lines`
//!   (`imx500_calc_inference_lines`) is `IMX500_NUM_KPI_LINES` (1) + `IMX500_NUM_PQ_LINES` (1) +
//!   the input and output tensors' line counts the network firmware sets (`DD_CH07_Y_OUT_SIZE`,
//!   `DD_CH08_Y_OUT_SIZE`), and 0 when no network is loaded (image-only mode). libcamera sizes the
//!   embedded node's buffers to that pad width × height.
//! - The driver reserves the *maximum*; it does not say how wide the register lines actually are.
//!   libcamera (`CamHelperImx500::parseInferenceData`) finds the DNN lines after `StartLine = 2`
//!   lines of `bytesPerLine = mode width × bit depth / 8`, rounded up to 16 bytes when the platform's
//!   `dataBufferStrided` is set (Pi 4's unicam: yes; Pi 5's PiSP/rp1-cfe: no). The driver's modes
//!   (`imx500_supported_modes`) are 4056×3040 and 2028×1520, both RAW10, so a register line is
//!   **5070 or 2535 bytes on a Pi 5, 5072 or 2544 on a Pi 4**, depending on the image mode another
//!   component chose; and the DNN lines (KPI line, input tensor, output tensor, PQ line, each
//!   [`STRIDE_2560`](super::STRIDE_2560) bytes) follow the second register line directly. The
//!   unused rest of the reserved 10 144 bytes is slack at the end of the buffer.
//! - The register lines are SMIA/CCS embedded data: each line starts with the byte `0x0a`
//!   (libcamera's `MdParserSmia`, `LineStart`).
//!
//! # Stripping the register lines
//!
//! The node tells us neither the image mode nor the platform's padding, so the register-line width
//! is **detected per buffer** among the four widths above, not fixed: a width fits when the line
//! after the KPI line starts with a plausible DNN header (tensor type 0 or 1, `max_line_len` within
//! the stride). Fitting widths are ranked by evidence: an output-tensor header further down that
//! agrees with the input header on frame count, descriptor size and line length (libcamera's own
//! `imx500SplitTensors` rule) weighs 2, a `0x0a` line start where the second register line would
//! begin weighs 1; ties go to the width the previous buffer used. The best-ranked width wins; a
//! buffer no width fits is skipped. A fixed offset would be wrong for three of the four cases, and
//! a scan of every offset could find a "header" in register or pixel bytes.
//!
//! What [`EmbeddedNode::next`] returns is everything after the two register lines, cut to whole
//! `stride` lines: the KPI line first, as [`format::parse_frame`](super::format::parse_frame) and
//! captures expect (the PQ line and the slack ride along; the parser ignores them).
//!
//! # When the world misbehaves
//!
//! - **a corrupt buffer** (`V4L2_BUF_FLAG_ERROR`), a short one (less than 2 register lines + 2 DNN
//!   lines: the sensor runs no network, or the node's buffers are too small) or one with no DNN
//!   header where one belongs: skipped and counted in [`SourceStats::skipped`];
//!   [`Policy::max_consecutive_bad`] in a row end the stream with an [`Error::Device`] that says
//!   what to check.
//! - **the driver drops frames** (buffer sequence numbers jump): counted in [`SourceStats::lost`].
//! - **no buffer** for [`Policy::stall_timeouts`] × [`Policy::timeout`], or **the node goes away**
//!   (`ENODEV`, `EIO`): an [`Error::Device`] naming the node. Unlike
//!   [`V4l2Source`](crate::source::V4l2Source) there is no reopen loop: the embedded-data node only
//!   streams while whoever configured the camera pipeline (sensor mode, network firmware, image
//!   node) keeps it streaming, which this source cannot redo on its own.
//!
//! # The kernel side
//!
//! The stream logic talks to the kernel only through [`MetaOpener`] and [`MetaDevice`]; the kernel
//! implementation (`device/kernel.rs`, Linux with the `v4l` feature) is a thin layer over the `v4l`
//! crate. That crate has no call for meta formats (`VIDIOC_G_FMT`/`S_FMT` exist only for video
//! capture) and the workspace allows no `unsafe`, so the node is streamed **with the format it
//! has**: libcamera sets `V4L2_META_FMT_SENSOR_DATA` ('SENS') and the buffer size from the
//! metadata pad when it configures the camera. MMAP buffers are requested with
//! `Stream::with_buffers(&dev, Type::MetaCapture, 4)`; the crate queues them and starts streaming
//! (`VIDIOC_STREAMON`) at the first wait for a buffer, so a refusal to stream surfaces from the
//! first [`EmbeddedNode::next`], with the node named.
//!
//! Not verified on a board: the register-line widths on a live IMX500 (derived from libcamera's
//! arithmetic above), whether the node streams while another process drives the image node, and
//! the driver's `bytesused` on the embedded node.
//!
//! [`TensorFeed::Device`]: super::TensorFeed::Device

use std::path::Path;
use std::time::{Duration, Instant};

use ocellus_core::SourceStats;

use super::format::{DnnHeader, TensorType};
use crate::error::{Error, Result};

/// Register lines in front of the DNN lines.
pub(super) const REGISTER_LINES: usize = 2;

/// The first byte of every SMIA/CCS embedded-data line.
const SMIA_LINE_START: u8 = 0x0a;

/// Bytes of one register line, for each image mode (4056 and 2028 pixels wide, RAW10) packed (Pi 5)
/// and rounded up to 16 bytes (Pi 4): see the [module docs](self).
pub(super) const REGISTER_LINE_WIDTHS: [usize; 4] = [
    register_line_bytes(4056, false),
    register_line_bytes(4056, true),
    register_line_bytes(2028, false),
    register_line_bytes(2028, true),
];

/// One RAW10 line of `width` pixels, in bytes, optionally rounded up to 16.
const fn register_line_bytes(width: usize, strided: bool) -> usize {
    let packed = width * 10 / 8;
    if strided {
        packed.next_multiple_of(16)
    } else {
        packed
    }
}

/// One filled buffer, borrowed from the node until the next call.
#[derive(Debug, Clone, Copy)]
pub(super) struct Buffer<'a> {
    /// The bytes the driver filled (`bytesused`).
    pub(super) data: &'a [u8],
    /// The driver's frame counter (`v4l2_buffer.sequence`); jumps mean dropped frames.
    pub(super) sequence: u32,
    /// The driver flagged the buffer as corrupt (`V4L2_BUF_FLAG_ERROR`).
    pub(super) corrupt: bool,
}

/// Why a node call failed. (The same contract as the video source's, kept here because this
/// module sits below `source` in the layers.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    not(all(feature = "v4l", target_os = "linux")),
    allow(
        dead_code,
        reason = "made by the V4L2 layer, which this build leaves out"
    )
)]
pub(super) enum DeviceError {
    /// The node is gone or broken (`ENODEV`, `EIO`, node missing).
    Gone(String),
    /// No buffer arrived within the timeout.
    Timeout,
    /// Anything else: the message says what to do.
    Fatal(String),
}

/// A node streaming metadata buffers.
pub(super) trait MetaDevice: Send {
    /// Set up streaming (buffers); the kernel layer starts the stream at the first wait.
    fn start(&mut self) -> std::result::Result<(), DeviceError>;
    /// Wait up to `timeout` for the next filled buffer.
    fn next_buffer(&mut self, timeout: Duration) -> std::result::Result<Buffer<'_>, DeviceError>;
}

/// Opens a metadata node.
pub(super) trait MetaOpener {
    /// Open the node and check that it captures metadata (not yet streaming).
    fn open(&mut self) -> std::result::Result<Box<dyn MetaDevice>, DeviceError>;
    /// The node, for messages (`/dev/video1`).
    fn name(&self) -> String;
}

/// Timeouts and limits of an [`EmbeddedNode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Policy {
    /// How long one wait for a buffer lasts.
    pub(super) timeout: Duration,
    /// Consecutive timeouts after which the node counts as stalled (an error).
    pub(super) stall_timeouts: u32,
    /// Consecutive unusable buffers (corrupt, short, no DNN lines) after which the stream ends
    /// with an error.
    pub(super) max_consecutive_bad: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            timeout: Duration::from_secs(2),
            stall_timeouts: 3,
            // 10 s at 10 fps, a few seconds at 30: long enough for a start-up hiccup
            max_consecutive_bad: 100,
        }
    }
}

/// An open embedded-data node, streaming.
pub(super) struct EmbeddedNode {
    device: Box<dyn MetaDevice>,
    name: String,
    stride: usize,
    policy: Policy,
    started: Instant,
    stats: SourceStats,
    last_sequence: Option<u32>,
    /// the register-line width of the last usable buffer
    register_line: Option<usize>,
    timeouts: u32,
    bad: u32,
}

impl std::fmt::Debug for EmbeddedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedNode")
            .field("node", &self.name)
            .field("stride", &self.stride)
            .field("register_line", &self.register_line)
            .finish_non_exhaustive()
    }
}

fn open_error(name: &str, e: &DeviceError) -> Error {
    let message = match e {
        DeviceError::Gone(m) => format!(
            "{m}; name the IMX500's embedded-data node (`media-ctl -p` lists it), and check that this user may open it (the `video` group)"
        ),
        DeviceError::Timeout => "the node did not answer".to_owned(),
        DeviceError::Fatal(m) => m.clone(),
    };
    Error::Device {
        device: name.to_owned(),
        message,
    }
}

impl EmbeddedNode {
    /// Open `node` and start streaming; each buffer's DNN lines are `stride` bytes long.
    pub(super) fn open(node: &Path, stride: usize) -> Result<Self> {
        let opener = open_node(node)?;
        Self::with_opener(opener, stride, Policy::default())
    }

    /// Stream from any [`MetaOpener`] (a scripted node in tests).
    pub(super) fn with_opener(
        mut opener: Box<dyn MetaOpener>,
        stride: usize,
        policy: Policy,
    ) -> Result<Self> {
        let name = opener.name();
        if stride <= super::format::DNN_HEADER_LEN {
            return Err(Error::Device {
                device: name,
                message: format!(
                    "a line stride of {stride} bytes cannot hold a DNN header (current drivers use 2560)"
                ),
            });
        }
        let mut device = opener.open().map_err(|e| open_error(&name, &e))?;
        device.start().map_err(|e| open_error(&name, &e))?;
        tracing::info!("{name}: streaming IMX500 embedded data, {stride}-byte DNN lines");
        Ok(EmbeddedNode {
            device,
            name,
            stride,
            policy,
            started: Instant::now(),
            stats: SourceStats::default(),
            last_sequence: None,
            register_line: None,
            timeouts: 0,
            bad: 0,
        })
    }

    /// What the node could not deliver so far: skipped buffers, frames the driver dropped.
    pub(super) fn stats(&self) -> SourceStats {
        self.stats.clone()
    }

    fn error(&self, message: String) -> Error {
        Error::Device {
            device: self.name.clone(),
            message,
        }
    }

    /// Account for a buffer's sequence number; returns the frames the driver dropped before it.
    fn sequence_gap(&mut self, sequence: u32) -> u64 {
        let gap = match self.last_sequence {
            Some(last) if sequence > last => u64::from(sequence - last - 1),
            _ => 0,
        };
        self.last_sequence = Some(sequence);
        gap
    }

    /// The next frame's DNN lines and media time (since the node was opened). A live node does
    /// not end: `None` is never returned, a node that stops delivering is an error.
    pub(super) fn next(&mut self) -> Result<Option<(Duration, Vec<u8>)>> {
        loop {
            let (sequence, lines) = match self.device.next_buffer(self.policy.timeout) {
                Ok(buf) if buf.corrupt => (
                    buf.sequence,
                    Err("the driver flagged the buffer as corrupt".to_owned()),
                ),
                Ok(buf) => (
                    buf.sequence,
                    dnn_lines(buf.data, self.stride, self.register_line),
                ),
                Err(DeviceError::Timeout) => {
                    self.timeouts = self.timeouts.saturating_add(1);
                    if self.timeouts >= self.policy.stall_timeouts {
                        let waited = self.policy.timeout.saturating_mul(self.timeouts);
                        return Err(self.error(format!(
                            "no embedded-data buffer for {waited:?}: is the camera streaming? (on a Raspberry Pi the sensor starts only when every enabled node of the camera pipeline streams); this source does not reopen the node"
                        )));
                    }
                    continue;
                }
                Err(DeviceError::Gone(m)) => {
                    return Err(self.error(format!(
                        "{m}; the embedded-data node went away (camera disconnected or driver reset); this source does not reopen it"
                    )));
                }
                Err(DeviceError::Fatal(m)) => return Err(self.error(m)),
            };
            self.timeouts = 0;
            let gap = self.sequence_gap(sequence);
            self.stats.lost += gap;
            match lines {
                Ok((register_line, data)) => {
                    if self.register_line != Some(register_line) {
                        tracing::info!(
                            "{}: register lines of {register_line} bytes before the DNN lines",
                            self.name
                        );
                        self.register_line = Some(register_line);
                    }
                    self.bad = 0;
                    return Ok(Some((self.started.elapsed(), data)));
                }
                Err(why) => {
                    self.stats.skipped += 1;
                    self.bad = self.bad.saturating_add(1);
                    tracing::debug!("{}: skipped a buffer: {why}", self.name);
                    if self.bad >= self.policy.max_consecutive_bad {
                        return Err(self.error(format!(
                            "{} buffers in a row carried no DNN lines (last: {why}); check that a network is loaded on the sensor (without one it sends only the register lines) and that the node's buffers hold the sensor's metadata pad (`media-ctl -p`)",
                            self.bad
                        )));
                    }
                }
            }
        }
    }
}

/// A DNN header that could start the input (or, without one, the output) tensor.
fn plausible_header(data: &[u8], stride: usize) -> Option<DnnHeader> {
    let h = DnnHeader::parse(data).ok()?;
    let usable = matches!(h.tensor_type, TensorType::Input | TensorType::Output)
        && h.max_line_len > 0
        && usize::from(h.max_line_len) <= stride;
    usable.then_some(h)
}

/// How well `register_line` explains `data`: `None` when the line after the KPI line holds no
/// plausible DNN header, else the weight of the evidence (see the [module docs](self)).
fn evidence(data: &[u8], stride: usize, register_line: usize) -> Option<u32> {
    let start = REGISTER_LINES * register_line;
    let lines = data.get(start..)?;
    if lines.len() < 2 * stride {
        return None;
    }
    let line = |l: usize| lines.get(l * stride..).unwrap_or_default();
    let first = plausible_header(line(1), stride)?;
    let mut score = 0;
    if first.tensor_type == TensorType::Output {
        score += 1;
    } else {
        let matched = (2..lines.len() / stride).any(|l| {
            DnnHeader::parse(line(l)).is_ok_and(|h| {
                h.tensor_type == TensorType::Output
                    && h.frame_count == first.frame_count
                    && h.ap_param_size == first.ap_param_size
                    && h.max_line_len == first.max_line_len
            })
        });
        if matched {
            score += 2;
        }
    }
    if data.get(register_line) == Some(&SMIA_LINE_START) {
        score += 1;
    }
    Some(score)
}

/// The DNN lines of one buffer (everything after the register lines, cut to whole lines) and the
/// register-line width that was stripped; `previous` wins ties. The error says why the buffer is
/// unusable.
pub(super) fn dnn_lines(
    data: &[u8],
    stride: usize,
    previous: Option<usize>,
) -> std::result::Result<(usize, Vec<u8>), String> {
    let shortest = REGISTER_LINE_WIDTHS.iter().copied().min().unwrap_or(0);
    let need = REGISTER_LINES * shortest + 2 * stride;
    if data.len() < need {
        return Err(format!(
            "{} bytes: 2 register lines and a KPI and a tensor line need at least {need}",
            data.len()
        ));
    }
    let candidates = previous.into_iter().chain(
        REGISTER_LINE_WIDTHS
            .into_iter()
            .filter(|&w| Some(w) != previous),
    );
    let mut best: Option<(u32, usize)> = None;
    for width in candidates {
        if let Some(score) = evidence(data, stride, width)
            && best.is_none_or(|(s, _)| score > s)
        {
            best = Some((score, width));
        }
    }
    let Some((_, width)) = best else {
        return Err(format!(
            "{} bytes with no DNN header after 2 register lines of {} bytes",
            data.len(),
            REGISTER_LINE_WIDTHS.map(|w| w.to_string()).join(", ")
        ));
    };
    let start = REGISTER_LINES * width;
    let whole = (data.len() - start) / stride * stride;
    Ok((
        width,
        data.get(start..start + whole).unwrap_or_default().to_vec(),
    ))
}

#[cfg(all(feature = "v4l", target_os = "linux"))]
mod kernel;

/// The kernel's V4L2 node at `path` as a [`MetaOpener`].
fn open_node(path: &Path) -> Result<Box<dyn MetaOpener>> {
    #[cfg(all(feature = "v4l", target_os = "linux"))]
    {
        Ok(Box::new(kernel::KernelOpener::new(path)))
    }
    #[cfg(not(all(feature = "v4l", target_os = "linux")))]
    {
        Err(Error::Device {
            device: path.display().to_string(),
            message: "this ocellus was built without V4L2 support, so it cannot read the IMX500's embedded data: build on Linux with the `v4l` feature (on by default)".into(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
