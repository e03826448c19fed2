//! The kernel side of [`super::V4l2Source`]: `/dev/videoN` through the `v4l` crate (ioctls, MMAP
//! buffers). Everything here is a translation of V4L2 calls and errno values into the
//! [`super::CaptureDevice`] contract; the stream logic is not here.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use v4l::buffer::{Flags as BufFlags, Type};
use v4l::capability::Flags as CapFlags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::video::capture::Parameters;
use v4l::{Device, FourCC, Fraction};

use super::{
    Buffer, CaptureDevice, DeviceError, DeviceInfo, FormatInfo, Negotiated, Opener, Request,
    SizeInfo, choose_format,
};
use crate::source::convert::{Layout, PixelFormat};

/// MMAP buffers per stream: enough to absorb jitter, few enough to keep latency at a frame or two.
const BUFFERS: u32 = 4;

/// errno values that mean the device went away (unplugged, reset), as opposed to a refusal.
fn classify(what: &str, e: &io::Error) -> DeviceError {
    const ENOENT: i32 = 2;
    const EIO: i32 = 5;
    const ENXIO: i32 = 6;
    const ENODEV: i32 = 19;
    const EACCES: i32 = 13;
    const EPERM: i32 = 1;
    const EBUSY: i32 = 16;
    match e.raw_os_error() {
        Some(ENOENT | EIO | ENXIO | ENODEV) => DeviceError::Gone(format!("{what}: {e}")),
        Some(EACCES | EPERM) => DeviceError::Fatal(format!(
            "{what}: {e}; add this user to the `video` group (or run with access to the device)"
        )),
        Some(EBUSY) => DeviceError::Fatal(format!(
            "{what}: {e}; another program is streaming from this camera"
        )),
        _ if e.kind() == io::ErrorKind::TimedOut => DeviceError::Timeout,
        _ => DeviceError::Fatal(format!("{what}: {e}")),
    }
}

pub(super) struct KernelOpener {
    path: PathBuf,
}

impl KernelOpener {
    pub(super) fn new(path: &Path) -> Self {
        KernelOpener {
            path: path.to_path_buf(),
        }
    }
}

impl Opener for KernelOpener {
    fn open(&mut self) -> Result<Box<dyn CaptureDevice>, DeviceError> {
        let dev = Device::with_path(&self.path).map_err(|e| classify("open", &e))?;
        let caps = dev
            .query_caps()
            .map_err(|e| classify("VIDIOC_QUERYCAP", &e))?;
        if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE) {
            return Err(DeviceError::Fatal(format!(
                "{} ({}) is not a video capture node (capabilities: {}); `ocellus devices` lists the nodes that are",
                caps.card, caps.driver, caps.capabilities
            )));
        }
        if !caps.capabilities.contains(CapFlags::STREAMING) {
            return Err(DeviceError::Fatal(format!(
                "{} ({}) does not support streaming I/O",
                caps.card, caps.driver
            )));
        }
        Ok(Box::new(KernelDevice { dev, stream: None }))
    }
    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

struct KernelDevice {
    // the stream must go before the device: it unmaps and STREAMOFFs on drop
    stream: Option<Stream<'static>>,
    dev: Device,
}

impl CaptureDevice for KernelDevice {
    fn start(&mut self, request: &Request) -> Result<Negotiated, DeviceError> {
        let offered: Vec<[u8; 4]> = self
            .dev
            .enum_formats()
            .map_err(|e| classify("VIDIOC_ENUM_FMT", &e))?
            .into_iter()
            .map(|d| d.fourcc.repr)
            .collect();
        let format = choose_format(&offered, request.format).map_err(DeviceError::Fatal)?;
        let mut fmt = self
            .dev
            .format()
            .map_err(|e| classify("VIDIOC_G_FMT", &e))?;
        fmt.fourcc = FourCC::new(&format.fourcc());
        if let Some((w, h)) = request.size {
            fmt.width = w;
            fmt.height = h;
        }
        let got = self
            .dev
            .set_format(&fmt)
            .map_err(|e| classify("VIDIOC_S_FMT", &e))?;
        let got_format = PixelFormat::from_fourcc(got.fourcc.repr).ok_or_else(|| {
            DeviceError::Fatal(format!(
                "asked for {format}, the driver chose {} instead",
                got.fourcc
            ))
        })?;
        if let Some((w, h)) = request.size
            && (got.width, got.height) != (w, h)
        {
            tracing::warn!(
                "asked for {w}x{h}, the driver chose {}x{}",
                got.width,
                got.height
            );
        }
        if let Some(fps) = request.fps.filter(|f| f.is_finite() && *f > 0.0) {
            // interval = 1000 / (fps · 1000) s, so fractional rates such as 29.97 survive
            let denominator = (fps * 1000.0).round().clamp(1.0, u32::MAX as f64) as u32;
            let params = Parameters::new(Fraction::new(1000, denominator));
            if let Err(e) = self.dev.set_params(&params) {
                tracing::warn!("the driver refused {fps} fps: {e}");
            }
        }
        let fps = self.dev.params().ok().and_then(|p| {
            (p.interval.numerator > 0)
                .then(|| f64::from(p.interval.denominator) / f64::from(p.interval.numerator))
        });
        let stream = Stream::with_buffers(&self.dev, Type::VideoCapture, BUFFERS)
            .map_err(|e| classify("VIDIOC_REQBUFS/mmap", &e))?;
        self.stream = Some(stream);
        Ok(Negotiated {
            layout: Layout {
                format: got_format,
                width: got.width,
                height: got.height,
                bytes_per_line: got.stride,
            },
            fps,
        })
    }

    fn next_buffer(&mut self, timeout: Duration) -> Result<Buffer<'_>, DeviceError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(DeviceError::Fatal("next_buffer before start".into()));
        };
        stream.set_timeout(timeout);
        let (bytes, meta) = stream.next().map_err(|e| classify("VIDIOC_DQBUF", &e))?;
        let used = (meta.bytesused as usize).min(bytes.len());
        Ok(Buffer {
            data: bytes.get(..used).unwrap_or(bytes),
            sequence: meta.sequence,
            corrupt: meta.flags.contains(BufFlags::ERROR),
        })
    }
}

fn fps_of(f: Fraction) -> Option<f64> {
    (f.numerator > 0).then(|| f64::from(f.denominator) / f64::from(f.numerator))
}

/// Every `/dev/video*` node the kernel has, in index order. A node that cannot be opened is listed
/// with what went wrong as its card name, not skipped: the user is usually asking why.
pub(super) fn list() -> Vec<DeviceInfo> {
    let mut nodes = v4l::context::enum_devices();
    nodes.sort_by_key(|n| n.index());
    nodes.iter().map(|n| describe(n.path())).collect()
}

fn describe(path: &Path) -> DeviceInfo {
    let mut info = DeviceInfo {
        path: path.to_path_buf(),
        card: String::new(),
        driver: String::new(),
        bus: String::new(),
        capture: false,
        formats: Vec::new(),
    };
    let dev = match Device::with_path(path) {
        Ok(d) => d,
        Err(e) => {
            info.card = format!("(cannot open: {})", classify("open", &e));
            return info;
        }
    };
    match dev.query_caps() {
        Ok(caps) => {
            info.card = caps.card;
            info.driver = caps.driver;
            info.bus = caps.bus;
            info.capture = caps.capabilities.contains(CapFlags::VIDEO_CAPTURE);
        }
        Err(e) => info.card = format!("(VIDIOC_QUERYCAP failed: {e})"),
    }
    if !info.capture {
        return info;
    }
    for d in dev.enum_formats().unwrap_or_default() {
        let sizes = dev
            .enum_framesizes(d.fourcc)
            .unwrap_or_default()
            .into_iter()
            .map(|s| match s.size {
                FrameSizeEnum::Discrete(sz) => SizeInfo::Discrete {
                    width: sz.width,
                    height: sz.height,
                    fps: dev
                        .enum_frameintervals(d.fourcc, sz.width, sz.height)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|i| match i.interval {
                            FrameIntervalEnum::Discrete(f) => fps_of(f),
                            FrameIntervalEnum::Stepwise(s) => fps_of(s.min),
                        })
                        .collect(),
                },
                FrameSizeEnum::Stepwise(s) => SizeInfo::Stepwise {
                    min: (s.min_width, s.min_height),
                    max: (s.max_width, s.max_height),
                    step: (s.step_width, s.step_height),
                },
            })
            .collect();
        info.formats.push(FormatInfo {
            fourcc: String::from_utf8_lossy(&d.fourcc.repr).into_owned(),
            description: d.description,
            ocellus: PixelFormat::from_fourcc(d.fourcc.repr).map(PixelFormat::name),
            sizes,
        });
    }
    info
}
