//! V4L2 capture (`source.kind = "v4l2"`): a camera on `/dev/videoN`, MMAP streaming, frames
//! converted to RGB by [`convert`](super::convert).
//!
//! The stream logic lives in [`V4l2Source`] and talks to the kernel only through two small traits,
//! [`Opener`] and [`CaptureDevice`]. The kernel implementation ([`open_device`], behind the `v4l`
//! feature on Linux) is a thin layer over the `v4l` crate; tests drive the same logic with a
//! scripted fake device, so reopening, gap accounting and corrupt-buffer handling are tested
//! without a camera.
//!
//! What the source does when the world misbehaves:
//! - **the device disappears** (USB unplugged: `ENODEV`/`EIO`) or stops delivering (no buffer for
//!   [`ReopenPolicy::stall_timeouts`] × [`ReopenPolicy::timeout`]): it is closed and reopened with
//!   exponential backoff ([`ReopenPolicy::backoff_min`] → [`ReopenPolicy::backoff_max`]), for as long
//!   as it takes. When frames flow again the gap is reported: a warning with its length, one more
//!   [`SourceStats::reconnects`], and the frames the outage cost (at the negotiated rate) in
//!   [`SourceStats::lost`]. Frame media times keep following the wall clock, so the gap is also
//!   visible in [`Frame::t`].
//! - **the driver drops frames** (buffer sequence numbers jump): counted in [`SourceStats::lost`].
//! - **a buffer is corrupt** (`V4L2_BUF_FLAG_ERROR`, short, or an MJPEG frame that does not decode):
//!   skipped and counted in [`SourceStats::skipped`]; [`ReopenPolicy::max_consecutive_bad`] corrupt
//!   buffers in a row are treated like a stalled device.
//!
//! A stop request waits for at most one backoff step ([`ReopenPolicy::backoff_max`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::convert::{self, Layout, PixelFormat};
use super::{Frame, Source, SourceStats};
use crate::error::{Error, Result};

/// What a caller asks of a device; `None` keeps what the device has.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Request {
    /// Pixel format (`None`: the first of [`PREFERRED_FORMATS`] the device offers).
    pub format: Option<PixelFormat>,
    /// Frame size.
    pub size: Option<(u32, u32)>,
    /// Frame rate.
    pub fps: Option<f64>,
}

/// What a device agreed to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Negotiated {
    /// Format, size and stride of the buffers it will fill.
    pub layout: Layout,
    /// Frame rate it reports, when it does.
    pub fps: Option<f64>,
}

/// One filled buffer, borrowed from the device until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Buffer<'a> {
    /// The bytes the driver filled (`bytesused`).
    pub data: &'a [u8],
    /// The driver's frame counter (`v4l2_buffer.sequence`); jumps mean dropped frames.
    pub sequence: u32,
    /// The driver flagged the buffer as corrupt (`V4L2_BUF_FLAG_ERROR`).
    pub corrupt: bool,
}

/// Why a device call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// The device is gone or broken (`ENODEV`, `EIO`, node missing): close it and reopen later.
    Gone(String),
    /// No buffer arrived within the timeout.
    Timeout,
    /// A failure reopening cannot fix (no capture capability, no usable format, no permission).
    Fatal(String),
}

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceError::Gone(m) => write!(f, "device lost: {m}"),
            DeviceError::Timeout => f.write_str("no frame within the timeout"),
            DeviceError::Fatal(m) => f.write_str(m),
        }
    }
}

/// A capture device: negotiate, then hand out filled buffers.
pub trait CaptureDevice: Send {
    /// Negotiate format, size and rate, and start streaming.
    fn start(&mut self, request: &Request) -> std::result::Result<Negotiated, DeviceError>;
    /// Wait up to `timeout` for the next filled buffer.
    fn next_buffer(&mut self, timeout: Duration) -> std::result::Result<Buffer<'_>, DeviceError>;
}

/// Opens a device, again after it disappeared.
pub trait Opener: Send {
    /// Open the device (not yet streaming).
    fn open(&mut self) -> std::result::Result<Box<dyn CaptureDevice>, DeviceError>;
    /// The device, for messages (`/dev/video0`).
    fn name(&self) -> String;
}

/// Formats tried, in order, when the config names none: uncompressed first (no decode cost, no
/// JPEG artefacts), MJPEG before GREY (colour matters to the detector).
pub const PREFERRED_FORMATS: [PixelFormat; 7] = [
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Uyvy,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Mjpeg,
    PixelFormat::Grey,
];

/// The format to ask for: the requested one if the device offers it, else the first of
/// [`PREFERRED_FORMATS`] it offers. `offered` are V4L2 four-character codes.
///
/// # Errors
/// A message naming what was asked and what the device offers.
pub fn choose_format(
    offered: &[[u8; 4]],
    requested: Option<PixelFormat>,
) -> std::result::Result<PixelFormat, String> {
    let usable: Vec<PixelFormat> = offered
        .iter()
        .filter_map(|c| PixelFormat::from_fourcc(*c))
        .collect();
    let names = || {
        offered
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match requested {
        Some(f) if usable.contains(&f) => Ok(f),
        Some(f) => Err(format!(
            "the device does not offer {f} ({}); it offers: {}",
            String::from_utf8_lossy(&f.fourcc()),
            names()
        )),
        None => PREFERRED_FORMATS
            .into_iter()
            .find(|f| usable.contains(f))
            .ok_or_else(|| {
                format!(
                    "the device offers no format ocellus converts ({}); supported: {}",
                    names(),
                    PixelFormat::ALL.map(|f| f.name()).join(", ")
                )
            }),
    }
}

/// Timeouts and backoff of a [`V4l2Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReopenPolicy {
    /// How long one wait for a buffer lasts.
    pub timeout: Duration,
    /// Consecutive timeouts after which the device counts as stalled and is reopened.
    pub stall_timeouts: u32,
    /// Consecutive corrupt buffers after which the device is reopened.
    pub max_consecutive_bad: u32,
    /// First wait before reopening.
    pub backoff_min: Duration,
    /// Longest wait between reopen attempts.
    pub backoff_max: Duration,
}

impl Default for ReopenPolicy {
    fn default() -> Self {
        ReopenPolicy {
            timeout: Duration::from_secs(2),
            stall_timeouts: 3,
            max_consecutive_bad: 30,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// A live camera source over an [`Opener`]: negotiates once, converts every buffer to RGB, and
/// survives the device going away (see the [module docs](self)).
pub struct V4l2Source {
    opener: Box<dyn Opener>,
    request: Request,
    policy: ReopenPolicy,
    device: Option<Box<dyn CaptureDevice>>,
    negotiated: Negotiated,
    name: String,
    seq: u64,
    started: Instant,
    stats: SourceStats,
    last_sequence: Option<u32>,
    /// when the device was lost, while it is away
    lost_at: Option<Instant>,
    backoff: Duration,
    timeouts: u32,
    bad: u32,
}

impl std::fmt::Debug for V4l2Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Source")
            .field("device", &self.name)
            .field("negotiated", &self.negotiated)
            .finish_non_exhaustive()
    }
}

fn device_error(name: &str, e: &DeviceError) -> Error {
    let message = match e {
        DeviceError::Gone(m) => format!(
            "{m}; check that the camera is connected (`ls /dev/video*`, `ocellus devices`) and that this user may open it (the `video` group)"
        ),
        DeviceError::Timeout => "the camera delivered no frame".to_owned(),
        DeviceError::Fatal(m) => m.clone(),
    };
    Error::Device {
        device: name.to_owned(),
        message,
    }
}

impl V4l2Source {
    /// Open a V4L2 device node and start streaming with what `request` asks for.
    ///
    /// # Errors
    /// [`Error::Device`] when the node cannot be opened, is not a capture device, or offers no
    /// usable format; and when ocellus was built without the `v4l` feature or not for Linux.
    pub fn open(device: &Path, request: Request) -> Result<Self> {
        let opener = open_device(device)?;
        Self::with_opener(opener, request, ReopenPolicy::default())
    }

    /// Stream from any [`Opener`] (a fake device in tests, a vendor capture API on a board).
    /// The first open and negotiation must succeed: a camera that is not there at start-up is a
    /// set-up error, not a gap.
    ///
    /// # Errors
    /// [`Error::Device`] from the first open or negotiation.
    pub fn with_opener(
        mut opener: Box<dyn Opener>,
        request: Request,
        policy: ReopenPolicy,
    ) -> Result<Self> {
        let name = opener.name();
        let mut device = opener.open().map_err(|e| device_error(&name, &e))?;
        let negotiated = device
            .start(&request)
            .map_err(|e| device_error(&name, &e))?;
        tracing::info!(
            "{name}: {} {}x{}{}",
            negotiated.layout.format,
            negotiated.layout.width,
            negotiated.layout.height,
            negotiated
                .fps
                .map(|f| format!(" @ {f:.1} fps"))
                .unwrap_or_default()
        );
        Ok(V4l2Source {
            opener,
            request,
            policy,
            device: Some(device),
            negotiated,
            name,
            seq: 0,
            started: Instant::now(),
            stats: SourceStats::default(),
            last_sequence: None,
            lost_at: None,
            backoff: policy.backoff_min,
            timeouts: 0,
            bad: 0,
        })
    }

    /// What the device agreed to (after a reopen: what it agreed to then).
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    fn lose_device(&mut self, why: &str) {
        if self.device.take().is_some() {
            tracing::warn!("{}: {why}; reopening", self.name);
            self.lost_at = Some(Instant::now());
            self.backoff = self.policy.backoff_min;
        }
        self.timeouts = 0;
        self.bad = 0;
        self.last_sequence = None;
    }

    /// One reopen attempt; sleeps the backoff first.
    fn try_reopen(&mut self) {
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(self.policy.backoff_max);
        let opened = self.opener.open().and_then(|mut d| {
            let n = d.start(&self.request)?;
            Ok((d, n))
        });
        match opened {
            Ok((device, negotiated)) => {
                if negotiated.layout != self.negotiated.layout {
                    tracing::warn!(
                        "{}: reopened with {:?} (was {:?})",
                        self.name,
                        negotiated.layout,
                        self.negotiated.layout
                    );
                }
                self.device = Some(device);
                self.negotiated = negotiated;
            }
            Err(e) => tracing::debug!("{}: reopen failed: {e}", self.name),
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

    fn report_gap(&mut self) {
        if let Some(at) = self.lost_at.take() {
            let outage = at.elapsed();
            let missed = self
                .negotiated
                .fps
                .map_or(0, |fps| (outage.as_secs_f64() * fps).round() as u64);
            self.stats.reconnects += 1;
            self.stats.lost += missed;
            tracing::warn!(
                "{}: frames again after a gap of {:.1} s (about {missed} frames lost)",
                self.name,
                outage.as_secs_f64()
            );
        }
    }
}

impl V4l2Source {
    /// The next frame, with this crate's errors.
    fn read_next(&mut self) -> Result<Option<Frame>> {
        loop {
            let Some(device) = self.device.as_mut() else {
                self.try_reopen();
                continue;
            };
            let (converted, sequence) = match device.next_buffer(self.policy.timeout) {
                Ok(buf) if buf.corrupt => (
                    Err(Error::Frame(
                        "the driver flagged the buffer as corrupt".into(),
                    )),
                    buf.sequence,
                ),
                Ok(buf) => (
                    convert::to_rgb(&self.negotiated.layout, buf.data),
                    buf.sequence,
                ),
                Err(DeviceError::Timeout) => {
                    self.timeouts = self.timeouts.saturating_add(1);
                    if self.timeouts >= self.policy.stall_timeouts {
                        let waited = self.policy.timeout.saturating_mul(self.timeouts);
                        self.lose_device(&format!("no frame for {waited:?}"));
                    }
                    continue;
                }
                Err(DeviceError::Gone(m)) => {
                    self.lose_device(&m);
                    continue;
                }
                Err(e @ DeviceError::Fatal(_)) => return Err(device_error(&self.name, &e)),
            };
            self.timeouts = 0;
            let gap = self.sequence_gap(sequence);
            self.stats.lost += gap;
            self.report_gap();
            match converted {
                Ok(image) => {
                    self.bad = 0;
                    let frame =
                        Frame::new(self.seq, SystemTime::now(), self.started.elapsed(), image);
                    self.seq += 1;
                    return Ok(Some(frame));
                }
                Err(e) => {
                    self.stats.skipped += 1;
                    self.bad = self.bad.saturating_add(1);
                    tracing::debug!("{}: skipped a frame: {e}", self.name);
                    if self.bad >= self.policy.max_consecutive_bad {
                        let n = self.bad;
                        self.lose_device(&format!("{n} corrupt frames in a row (last: {e})"));
                    }
                }
            }
        }
    }
}

impl Source for V4l2Source {
    fn next_frame(&mut self) -> ocellus_core::Result<Option<Frame>> {
        Ok(self.read_next()?)
    }
    fn is_live(&self) -> bool {
        true
    }
    fn len_hint(&self) -> Option<u64> {
        None
    }
    fn describe(&self) -> String {
        let l = self.negotiated.layout;
        format!("{} ({} {}x{})", self.name, l.format, l.width, l.height)
    }
    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

/// One V4L2 capture device, as `ocellus devices` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceInfo {
    /// The node, e.g. `/dev/video0`.
    pub path: PathBuf,
    /// The card name (`HD Pro Webcam C920`).
    pub card: String,
    /// The kernel driver (`uvcvideo`).
    pub driver: String,
    /// Where it is attached (`usb-0000:00:14.0-1`).
    pub bus: String,
    /// Whether it can capture video (metadata nodes of UVC cameras cannot).
    pub capture: bool,
    /// Its formats.
    pub formats: Vec<FormatInfo>,
}

/// One format of a device.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FormatInfo {
    /// The four-character code.
    pub fourcc: String,
    /// The driver's description.
    pub description: String,
    /// The config name, when ocellus converts this format.
    pub ocellus: Option<&'static str>,
    /// Frame sizes: discrete sizes with their rates, or a stepwise range.
    pub sizes: Vec<SizeInfo>,
}

/// A frame size of a format.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SizeInfo {
    /// A fixed size and the frame rates offered at it.
    Discrete {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Frame rates (frames per second).
        fps: Vec<f64>,
    },
    /// Any size in a range.
    Stepwise {
        /// Smallest (width, height).
        min: (u32, u32),
        /// Largest (width, height).
        max: (u32, u32),
        /// Step (width, height).
        step: (u32, u32),
    },
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}  {} ({}, {}){}",
            self.path.display(),
            self.card,
            self.driver,
            self.bus,
            if self.capture {
                ""
            } else {
                "  [not a capture device]"
            }
        )?;
        for fmt in &self.formats {
            let sizes: Vec<String> = fmt
                .sizes
                .iter()
                .map(|s| match s {
                    SizeInfo::Discrete { width, height, fps } if fps.is_empty() => {
                        format!("{width}x{height}")
                    }
                    SizeInfo::Discrete { width, height, fps } => format!(
                        "{width}x{height}@{}",
                        fps.iter()
                            .map(|r| format!("{r:.0}"))
                            .collect::<Vec<_>>()
                            .join("/")
                    ),
                    SizeInfo::Stepwise { min, max, step } => format!(
                        "{}x{}..{}x{} step {}x{}",
                        min.0, min.1, max.0, max.1, step.0, step.1
                    ),
                })
                .collect();
            writeln!(
                f,
                "  {:<4}  {:<24} {:<8} {}",
                fmt.fourcc,
                fmt.description,
                fmt.ocellus.unwrap_or("-"),
                sizes.join("  ")
            )?;
        }
        Ok(())
    }
}

#[cfg(all(feature = "v4l", target_os = "linux"))]
mod kernel;

/// The kernel's V4L2 device at `path` as an [`Opener`].
///
/// # Errors
/// [`Error::Device`] when ocellus was built without V4L2 support.
pub fn open_device(path: &Path) -> Result<Box<dyn Opener>> {
    #[cfg(all(feature = "v4l", target_os = "linux"))]
    {
        Ok(Box::new(kernel::KernelOpener::new(path)))
    }
    #[cfg(not(all(feature = "v4l", target_os = "linux")))]
    {
        Err(not_built(path))
    }
}

/// Every V4L2 device node (`/dev/video*`) with its formats, sizes and rates.
///
/// # Errors
/// [`Error::Device`] when ocellus was built without V4L2 support.
pub fn list_devices() -> Result<Vec<DeviceInfo>> {
    #[cfg(all(feature = "v4l", target_os = "linux"))]
    {
        Ok(kernel::list())
    }
    #[cfg(not(all(feature = "v4l", target_os = "linux")))]
    {
        Err(not_built(Path::new("/dev/video*")))
    }
}

#[cfg(not(all(feature = "v4l", target_os = "linux")))]
fn not_built(path: &Path) -> Error {
    Error::Device {
        device: path.display().to_string(),
        message: "this ocellus was built without V4L2 support: build on Linux with the `v4l` feature (on by default)".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// What a fake device does on each `next_buffer` call.
    #[derive(Debug, Clone)]
    enum Step {
        Frame { sequence: u32, data: Vec<u8> },
        Corrupt { sequence: u32 },
        Timeout,
        Gone,
    }

    /// The scripts of successive opens: `None` = the open fails (device not there).
    #[derive(Default)]
    struct Script {
        opens: VecDeque<Option<(Negotiated, Vec<Step>)>>,
        open_calls: u32,
    }

    struct FakeOpener(Arc<Mutex<Script>>);
    struct FakeDevice {
        negotiated: Negotiated,
        steps: VecDeque<Step>,
        current: Vec<u8>,
    }

    impl Opener for FakeOpener {
        fn open(&mut self) -> std::result::Result<Box<dyn CaptureDevice>, DeviceError> {
            let mut s = self.0.lock().unwrap();
            s.open_calls += 1;
            match s.opens.pop_front() {
                Some(Some((negotiated, steps))) => Ok(Box::new(FakeDevice {
                    negotiated,
                    steps: steps.into(),
                    current: Vec::new(),
                })),
                _ => Err(DeviceError::Gone("No such device".into())),
            }
        }
        fn name(&self) -> String {
            "/dev/video-fake".into()
        }
    }

    impl CaptureDevice for FakeDevice {
        fn start(&mut self, request: &Request) -> std::result::Result<Negotiated, DeviceError> {
            if let Some(f) = request.format
                && f != self.negotiated.layout.format
            {
                return Err(DeviceError::Fatal(format!("no {f}")));
            }
            Ok(self.negotiated)
        }
        fn next_buffer(
            &mut self,
            _timeout: Duration,
        ) -> std::result::Result<Buffer<'_>, DeviceError> {
            match self.steps.pop_front() {
                Some(Step::Frame { sequence, data }) => {
                    self.current = data;
                    Ok(Buffer {
                        data: &self.current,
                        sequence,
                        corrupt: false,
                    })
                }
                Some(Step::Corrupt { sequence }) => Ok(Buffer {
                    data: &[],
                    sequence,
                    corrupt: true,
                }),
                Some(Step::Timeout) => Err(DeviceError::Timeout),
                Some(Step::Gone) | None => Err(DeviceError::Gone("ENODEV".into())),
            }
        }
    }

    const W: u32 = 4;
    const H: u32 = 2;

    fn grey_negotiated(fps: Option<f64>) -> Negotiated {
        Negotiated {
            layout: Layout {
                format: PixelFormat::Grey,
                width: W,
                height: H,
                bytes_per_line: 0,
            },
            fps,
        }
    }

    /// A GREY frame whose every pixel is `v` (GREY is full range: RGB = (v, v, v)).
    fn frame(sequence: u32, v: u8) -> Step {
        Step::Frame {
            sequence,
            data: vec![v; (W * H) as usize],
        }
    }

    fn fast() -> ReopenPolicy {
        ReopenPolicy {
            timeout: Duration::from_millis(1),
            stall_timeouts: 3,
            max_consecutive_bad: 3,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(40),
        }
    }

    fn source(opens: Vec<Option<(Negotiated, Vec<Step>)>>) -> (V4l2Source, Arc<Mutex<Script>>) {
        let script = Arc::new(Mutex::new(Script {
            opens: opens.into(),
            open_calls: 0,
        }));
        let s = V4l2Source::with_opener(
            Box::new(FakeOpener(script.clone())),
            Request::default(),
            fast(),
        )
        .unwrap();
        (s, script)
    }

    fn value(f: &Frame) -> u8 {
        let d = f.image.as_ref().unwrap().data();
        assert!(d.iter().all(|&b| b == d[0]), "uniform frame");
        d[0]
    }

    #[test]
    fn buffers_become_rgb_frames_with_consecutive_numbers() {
        let n = grey_negotiated(Some(30.0));
        let (mut s, _) = source(vec![Some((n, vec![frame(0, 10), frame(1, 20)]))]);
        let a = s.next_frame().unwrap().unwrap();
        let b = s.next_frame().unwrap().unwrap();
        assert_eq!((a.seq, value(&a), b.seq, value(&b)), (0, 10, 1, 20));
        assert_eq!(
            (
                a.image.as_ref().unwrap().width(),
                a.image.as_ref().unwrap().height()
            ),
            (W, H)
        );
        assert!(b.t >= a.t);
        assert!(s.is_live());
        assert_eq!(s.stats(), SourceStats::default());
        assert!(s.describe().contains("/dev/video-fake (grey 4x2)"));
    }

    #[test]
    fn a_device_that_disappears_is_reopened_and_the_gap_reported() {
        let n = grey_negotiated(Some(50.0));
        let (mut s, script) = source(vec![
            Some((n, vec![frame(0, 1), frame(1, 2), Step::Gone])),
            None, // still unplugged
            None,
            Some((n, vec![frame(0, 3), frame(1, 4)])), // back; the driver restarts its count
        ]);
        let values: Vec<(u64, u8, Duration)> = (0..4)
            .map(|_| {
                let f = s.next_frame().unwrap().unwrap();
                (f.seq, value(&f), f.t)
            })
            .collect();
        assert_eq!(
            values.iter().map(|v| (v.0, v.1)).collect::<Vec<_>>(),
            vec![(0, 1), (1, 2), (2, 3), (3, 4)],
            "frames continue in order and numbering after the reopen"
        );
        assert_eq!(script.lock().unwrap().open_calls, 4);
        let st = s.stats();
        assert_eq!(st.reconnects, 1);
        // three backoff waits: 20 + 40 + 40 ms at 50 fps ≈ 5 frames lost
        assert!((4..=30).contains(&st.lost), "{st:?}");
        // the gap shows in media time
        assert!(values[2].2 - values[1].2 >= Duration::from_millis(100));
        // the restart of the driver's sequence numbers is not a gap
        assert_eq!(st.skipped, 0);
    }

    #[test]
    fn jumps_in_driver_sequence_numbers_count_as_lost_frames() {
        let n = grey_negotiated(None);
        let (mut s, _) = source(vec![Some((
            n,
            vec![frame(7, 1), frame(8, 2), frame(12, 3), frame(13, 4)],
        ))]);
        for _ in 0..4 {
            s.next_frame().unwrap().unwrap();
        }
        assert_eq!(s.stats().lost, 3);
        assert_eq!(s.stats().reconnects, 0);
    }

    #[test]
    fn corrupt_and_short_buffers_are_skipped_and_counted() {
        let n = grey_negotiated(None);
        let short = Step::Frame {
            sequence: 2,
            data: vec![0; 3],
        };
        let (mut s, _) = source(vec![Some((
            n,
            vec![
                frame(0, 1),
                Step::Corrupt { sequence: 1 },
                short,
                frame(3, 9),
            ],
        ))]);
        let a = s.next_frame().unwrap().unwrap();
        let b = s.next_frame().unwrap().unwrap();
        assert_eq!((a.seq, value(&a), b.seq, value(&b)), (0, 1, 1, 9));
        assert_eq!(s.stats().skipped, 2);
        assert_eq!(s.stats().lost, 0, "skipped frames are not also lost");
    }

    #[test]
    fn a_stalled_device_is_reopened_after_repeated_timeouts() {
        let n = grey_negotiated(None);
        let (mut s, script) = source(vec![
            Some((
                n,
                vec![
                    frame(0, 1),
                    Step::Timeout,
                    Step::Timeout,
                    Step::Timeout,
                    frame(1, 99), // never read: the device was replaced
                ],
            )),
            Some((n, vec![frame(0, 5)])),
        ]);
        assert_eq!(value(&s.next_frame().unwrap().unwrap()), 1);
        assert_eq!(value(&s.next_frame().unwrap().unwrap()), 5);
        assert_eq!(script.lock().unwrap().open_calls, 2);
        assert_eq!(s.stats().reconnects, 1);
    }

    #[test]
    fn two_timeouts_are_not_a_stall() {
        let n = grey_negotiated(None);
        let (mut s, script) = source(vec![Some((
            n,
            vec![frame(0, 1), Step::Timeout, Step::Timeout, frame(1, 2)],
        ))]);
        s.next_frame().unwrap().unwrap();
        assert_eq!(value(&s.next_frame().unwrap().unwrap()), 2);
        assert_eq!(script.lock().unwrap().open_calls, 1);
    }

    #[test]
    fn too_many_corrupt_buffers_in_a_row_reopen_the_device() {
        let n = grey_negotiated(None);
        let bad = |sequence| Step::Corrupt { sequence };
        let (mut s, script) = source(vec![
            Some((n, vec![bad(0), bad(1), bad(2), frame(3, 99)])),
            Some((n, vec![frame(0, 7)])),
        ]);
        assert_eq!(value(&s.next_frame().unwrap().unwrap()), 7);
        assert_eq!(script.lock().unwrap().open_calls, 2);
        assert_eq!(s.stats().skipped, 3);
    }

    #[test]
    fn a_device_missing_at_start_up_is_a_clear_error() {
        let script = Arc::new(Mutex::new(Script::default()));
        let e = V4l2Source::with_opener(Box::new(FakeOpener(script)), Request::default(), fast())
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Device { .. }), "{e:?}");
        assert!(msg.contains("/dev/video-fake"), "{msg}");
        assert!(msg.contains("ocellus devices"), "{msg}");
    }

    #[test]
    fn a_format_the_device_refuses_is_a_clear_error() {
        let script = Arc::new(Mutex::new(Script {
            opens: vec![Some((grey_negotiated(None), vec![]))].into(),
            open_calls: 0,
        }));
        let e = V4l2Source::with_opener(
            Box::new(FakeOpener(script)),
            Request {
                format: Some(PixelFormat::Mjpeg),
                ..Request::default()
            },
            fast(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no mjpeg"), "{e}");
    }

    #[test]
    fn a_fatal_error_mid_stream_ends_the_source_with_the_device_named() {
        struct Broken;
        impl CaptureDevice for Broken {
            fn start(&mut self, _: &Request) -> std::result::Result<Negotiated, DeviceError> {
                Ok(grey_negotiated(None))
            }
            fn next_buffer(&mut self, _: Duration) -> std::result::Result<Buffer<'_>, DeviceError> {
                Err(DeviceError::Fatal("VIDIOC_DQBUF: Invalid argument".into()))
            }
        }
        struct OneBroken;
        impl Opener for OneBroken {
            fn open(&mut self) -> std::result::Result<Box<dyn CaptureDevice>, DeviceError> {
                Ok(Box::new(Broken))
            }
            fn name(&self) -> String {
                "/dev/video9".into()
            }
        }
        let mut s =
            V4l2Source::with_opener(Box::new(OneBroken), Request::default(), fast()).unwrap();
        let e = s.next_frame().unwrap_err();
        assert!(
            e.to_string().starts_with("/dev/video9: VIDIOC_DQBUF"),
            "{e}"
        );
    }

    #[test]
    fn the_format_is_chosen_from_what_the_device_offers() {
        assert_eq!(
            choose_format(&[*b"MJPG", *b"YUYV"], None),
            Ok(PixelFormat::Yuyv)
        );
        assert_eq!(
            choose_format(&[*b"MJPG", *b"H264"], None),
            Ok(PixelFormat::Mjpeg)
        );
        assert_eq!(
            choose_format(&[*b"MJPG", *b"YUYV"], Some(PixelFormat::Mjpeg)),
            Ok(PixelFormat::Mjpeg)
        );
        let e = choose_format(&[*b"YUYV"], Some(PixelFormat::Nv12)).unwrap_err();
        assert!(
            e.contains("does not offer nv12") && e.contains("YUYV"),
            "{e}"
        );
        let e = choose_format(&[*b"H264", *b"BA81"], None).unwrap_err();
        assert!(e.contains("H264, BA81") && e.contains("yuyv"), "{e}");
    }

    #[test]
    fn device_listings_read_like_v4l2_ctl() {
        let d = DeviceInfo {
            path: "/dev/video0".into(),
            card: "HD Webcam".into(),
            driver: "uvcvideo".into(),
            bus: "usb-0000:00:14.0-1".into(),
            capture: true,
            formats: vec![FormatInfo {
                fourcc: "YUYV".into(),
                description: "YUYV 4:2:2".into(),
                ocellus: Some("yuyv"),
                sizes: vec![
                    SizeInfo::Discrete {
                        width: 640,
                        height: 480,
                        fps: vec![30.0, 15.0],
                    },
                    SizeInfo::Stepwise {
                        min: (16, 16),
                        max: (1920, 1080),
                        step: (2, 2),
                    },
                ],
            }],
        };
        let text = d.to_string();
        assert!(
            text.starts_with("/dev/video0  HD Webcam (uvcvideo, usb-0000:00:14.0-1)\n"),
            "{text}"
        );
        assert!(text.contains("YUYV"), "{text}");
        assert!(text.contains("640x480@30/15"), "{text}");
        assert!(text.contains("16x16..1920x1080 step 2x2"), "{text}");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["formats"][0]["sizes"][0]["kind"], "discrete");
    }
}
