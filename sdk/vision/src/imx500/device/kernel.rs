//! The kernel side of [`super::EmbeddedNode`]: a metadata-capture node through the `v4l` crate
//! (ioctls, MMAP buffers). A translation of V4L2 calls and errno values into the
//! [`super::MetaDevice`] contract; the stream logic is not here.
//!
//! The `v4l` crate reads and sets formats only for video capture, so the node keeps the format it
//! has (libcamera sets 'SENS' and the buffer size when it configures the camera); its
//! `Stream::with_buffers` takes any buffer type, and the stream is started (all buffers queued,
//! `VIDIOC_STREAMON`) at the first `next`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use v4l::Device;
use v4l::buffer::{Flags as BufFlags, Type};
use v4l::capability::Flags as CapFlags;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;

use super::{Buffer, DeviceError, MetaDevice, MetaOpener};

/// MMAP buffers: a frame or two of latency, enough to ride out a slow consumer.
const BUFFERS: u32 = 4;

/// What the user should name instead of a node that is not the embedded-data node.
const WHICH_NODE: &str = "name the CSI-2 receiver's embedded-data node instead: `media-ctl -p` lists it (libcamera's Raspberry Pi pipelines use `rp1-cfe-embedded` on a Pi 5 and `unicam-embedded` on a Pi 4)";

/// errno values that mean the node went away, as opposed to a refusal.
pub(super) fn classify(what: &str, e: &io::Error) -> DeviceError {
    const EPERM: i32 = 1;
    const ENOENT: i32 = 2;
    const EIO: i32 = 5;
    const ENXIO: i32 = 6;
    const EACCES: i32 = 13;
    const EBUSY: i32 = 16;
    const ENODEV: i32 = 19;
    const EINVAL: i32 = 22;
    const EPIPE: i32 = 32;
    match e.raw_os_error() {
        Some(ENOENT | EIO | ENXIO | ENODEV) => DeviceError::Gone(format!("{what}: {e}")),
        Some(EACCES | EPERM) => DeviceError::Fatal(format!(
            "{what}: {e}; add this user to the `video` group (or run with access to the node)"
        )),
        Some(EBUSY) => DeviceError::Fatal(format!(
            "{what}: {e}; another program (libcamera: rpicam-apps, picamera2) is streaming from this node"
        )),
        Some(EPIPE) => DeviceError::Fatal(format!(
            "{what}: {e}; the camera pipeline's links or formats do not match (configure it, e.g. with libcamera or `media-ctl`, before streaming)"
        )),
        Some(EINVAL) => DeviceError::Fatal(format!(
            "{what}: {e}; the node refuses metadata buffers: is it set to 'SENS' (V4L2_META_FMT_SENSOR_DATA)?"
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

impl MetaOpener for KernelOpener {
    fn open(&mut self) -> Result<Box<dyn MetaDevice>, DeviceError> {
        let dev = Device::with_path(&self.path).map_err(|e| classify("open", &e))?;
        let caps = dev
            .query_caps()
            .map_err(|e| classify("VIDIOC_QUERYCAP", &e))?;
        if !caps.capabilities.contains(CapFlags::META_CAPTURE) {
            return Err(DeviceError::Fatal(format!(
                "{} ({}) is not a metadata capture node (capabilities: {}); {WHICH_NODE}",
                caps.card, caps.driver, caps.capabilities
            )));
        }
        if !caps.capabilities.contains(CapFlags::STREAMING) {
            return Err(DeviceError::Fatal(format!(
                "{} ({}) does not support streaming I/O",
                caps.card, caps.driver
            )));
        }
        if caps.capabilities.contains(CapFlags::VIDEO_CAPTURE) {
            tracing::warn!(
                "{}: {} captures video as well as metadata; streaming it as metadata (if no DNN lines arrive, {WHICH_NODE})",
                self.path.display(),
                caps.card
            );
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

impl MetaDevice for KernelDevice {
    fn start(&mut self) -> Result<(), DeviceError> {
        let stream = Stream::with_buffers(&self.dev, Type::MetaCapture, BUFFERS)
            .map_err(|e| classify("VIDIOC_REQBUFS/mmap (metadata capture)", &e))?;
        self.stream = Some(stream);
        Ok(())
    }

    fn next_buffer(&mut self, timeout: Duration) -> Result<Buffer<'_>, DeviceError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(DeviceError::Fatal("next_buffer before start".into()));
        };
        stream.set_timeout(timeout);
        let (bytes, meta) = stream
            .next()
            .map_err(|e| classify("VIDIOC_QBUF/STREAMON/DQBUF", &e))?;
        let used = (meta.bytesused as usize).min(bytes.len());
        Ok(Buffer {
            data: bytes.get(..used).unwrap_or(bytes),
            sequence: meta.sequence,
            corrupt: meta.flags.contains(BufFlags::ERROR),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_say_gone_or_what_to_do() {
        let e = |code| io::Error::from_raw_os_error(code);
        assert!(
            matches!(classify("DQBUF", &e(19)), DeviceError::Gone(m) if m.starts_with("DQBUF"))
        );
        assert!(matches!(classify("open", &e(2)), DeviceError::Gone(_)));
        assert!(
            matches!(classify("REQBUFS", &e(16)), DeviceError::Fatal(m) if m.contains("libcamera"))
        );
        assert!(
            matches!(classify("STREAMON", &e(32)), DeviceError::Fatal(m) if m.contains("media-ctl"))
        );
        assert!(matches!(classify("open", &e(13)), DeviceError::Fatal(m) if m.contains("video")));
        let timeout = io::Error::new(io::ErrorKind::TimedOut, "VIDIOC_DQBUF");
        assert_eq!(classify("DQBUF", &timeout), DeviceError::Timeout);
    }

    #[test]
    fn a_missing_node_is_gone_with_its_name() {
        let mut o = KernelOpener::new(Path::new("/dev/ocellus-no-such-node"));
        assert_eq!(o.name(), "/dev/ocellus-no-such-node");
        assert!(matches!(o.open(), Err(DeviceError::Gone(_))));
    }
}
