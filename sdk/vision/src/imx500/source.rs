//! [`Imx500Source`]: frames of on-sensor results, from a capture, the simulator or a board.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ocellus_core::{Frame, RgbFrame, Source, SourceStats};

use super::capture::CaptureReader;
use super::device::EmbeddedNode;
use super::format;
use super::sim::Imx500Sim;
use crate::error::{Error, Result};

/// Where the DNN lines come from (`source.capture`, `source.footage`, `source.device`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TensorFeed {
    /// A recorded capture (`ocellus sim imx500 --out FILE`), replayed.
    Capture(PathBuf),
    /// The simulated sensor looking at this footage, running the `[model]` card's network.
    Simulator(PathBuf),
    /// The V4L2 node that carries the sensor's embedded data on a board (Linux, the `v4l`
    /// feature).
    Device(PathBuf),
}

/// `[source]` with `kind = "imx500"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Imx500Settings {
    /// Where the lines come from.
    pub feed: TensorFeed,
    /// Bytes per line: 2560 with current drivers, 4064 with older ones (a capture records its own).
    pub stride: usize,
    /// Pace a capture or the simulator at this many frames per second (`None`: as fast as the
    /// host takes them).
    pub fps: Option<f64>,
}

enum Feed {
    Capture(CaptureReader),
    Sim(Box<Imx500Sim>),
    Device(EmbeddedNode),
}

/// Frames of an IMX500's results: [`Frame::sensor_data`] holds each frame's DNN lines, and
/// [`Frame::image`] is `None` unless pixels were asked for ([`Source::request_pixels`]), when it
/// is the network's input tensor, once.
pub struct Imx500Source {
    feed: Feed,
    stride: usize,
    shown: String,
    pace: Option<Duration>,
    started: Instant,
    seq: u64,
    want_pixels: bool,
    pixel_bytes: u64,
    stats: SourceStats,
    len_hint: Option<u64>,
    no_picture_logged: bool,
}

impl std::fmt::Debug for Imx500Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imx500Source")
            .field("feed", &self.shown)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn pace(fps: Option<f64>) -> Option<Duration> {
    fps.filter(|f| f.is_finite() && *f > 0.0)
        .map(|f| Duration::from_secs_f64(1.0 / f))
}

impl Imx500Source {
    /// Replay a recorded capture.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Device`] when it is not a capture.
    pub fn replay(path: &Path, fps: Option<f64>) -> Result<Self> {
        let reader = CaptureReader::open(path)?;
        let stride = reader.stride();
        Ok(Self::with(
            Feed::Capture(reader),
            stride,
            format!("IMX500 capture {}", path.display()),
            fps,
            None,
        ))
    }

    /// Open what `settings` name; `simulate` makes the simulated sensor for a footage file
    /// (called only for [`TensorFeed::Simulator`]).
    ///
    /// # Errors
    /// As [`Imx500Source::replay`], the simulator's errors, and [`Error::Device`] for a device
    /// node that cannot stream the sensor's embedded data.
    pub fn open(
        settings: &Imx500Settings,
        simulate: impl FnOnce(&Path) -> Result<Imx500Sim>,
    ) -> Result<Self> {
        match &settings.feed {
            TensorFeed::Capture(path) => Self::replay(path, settings.fps),
            TensorFeed::Simulator(footage) => Ok(Self::simulated(simulate(footage)?, settings.fps)),
            TensorFeed::Device(node) => Self::device(node, settings.stride),
        }
    }

    /// An IMX500 on this board: its embedded-data V4L2 node (Linux, the `v4l` feature).
    ///
    /// # Errors
    /// [`Error::Device`] when the node cannot be opened or does not stream embedded data.
    pub fn device(node: &Path, stride: usize) -> Result<Self> {
        let n = EmbeddedNode::open(node, stride)?;
        Ok(Self::with(
            Feed::Device(n),
            stride,
            format!("IMX500 {}", node.display()),
            None,
            None,
        ))
    }

    /// The simulated sensor.
    pub fn simulated(sim: Imx500Sim, fps: Option<f64>) -> Self {
        let stride = sim.layout().stride;
        let shown = sim.describe();
        let len = sim.len_hint();
        Self::with(Feed::Sim(Box::new(sim)), stride, shown, fps, len)
    }

    fn with(
        feed: Feed,
        stride: usize,
        shown: String,
        fps: Option<f64>,
        len_hint: Option<u64>,
    ) -> Self {
        Imx500Source {
            feed,
            stride,
            shown,
            pace: pace(fps),
            started: Instant::now(),
            seq: 0,
            want_pixels: false,
            pixel_bytes: 0,
            stats: SourceStats::default(),
            len_hint,
            no_picture_logged: false,
        }
    }

    /// The line stride of the frames delivered.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Bytes of pixels delivered to the host so far (0 unless pixels were asked for).
    pub fn pixel_bytes(&self) -> u64 {
        self.pixel_bytes
    }

    fn wait_turn(&self) {
        if let Some(step) = self.pace {
            let due = step.saturating_mul(u32::try_from(self.seq).unwrap_or(u32::MAX));
            let now = self.started.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }

    /// The picture in a frame's input tensor, when it has one.
    fn picture(&mut self, data: &[u8]) -> Option<RgbFrame> {
        let pic = format::parse_frame(data, self.stride, true)
            .ok()
            .and_then(|f| f.input)
            .and_then(|i| RgbFrame::new(i.width, i.height, i.to_rgb()).ok());
        if pic.is_none() && !self.no_picture_logged {
            self.no_picture_logged = true;
            tracing::warn!(
                "{}: pixels were asked for, and the sensor's lines carry no input tensor (record captures with --input-tensors to have one)",
                self.shown
            );
        }
        pic
    }
}

impl Source for Imx500Source {
    fn next_frame(&mut self) -> ocellus_core::Result<Option<Frame>> {
        self.wait_turn();
        let want = std::mem::take(&mut self.want_pixels);
        let (t, data, image) = match &mut self.feed {
            Feed::Capture(reader) => {
                let Some(rec) = reader.next_record()? else {
                    self.stats.skipped = reader.skipped();
                    return Ok(None);
                };
                self.stats.skipped = reader.skipped();
                let image = if want { self.picture(&rec.data) } else { None };
                (rec.t, rec.data, image)
            }
            Feed::Device(node) => {
                let next = node.next();
                self.stats = node.stats();
                let Some((t, data)) = next? else {
                    return Ok(None);
                };
                let image = if want { self.picture(&data) } else { None };
                (t, data, image)
            }
            Feed::Sim(sim) => {
                let Some(f) = sim.next_frame(want)? else {
                    return Ok(None);
                };
                self.stats = sim.stats();
                (f.t, f.data, f.input)
            }
        };
        let mut frame = Frame::from_sensor(self.seq, SystemTime::now(), t, data);
        if let Some(image) = image {
            self.pixel_bytes += image.data().len() as u64;
            frame.image = Some(image);
        }
        self.seq += 1;
        Ok(Some(frame))
    }

    fn request_pixels(&mut self) {
        self.want_pixels = true;
    }

    fn is_live(&self) -> bool {
        // a sensor on a board runs at its own rate; a capture or the simulator waits for us
        matches!(self.feed, Feed::Device(_))
    }

    fn len_hint(&self) -> Option<u64> {
        self.len_hint
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

impl From<super::TensorError> for ocellus_core::Error {
    fn from(e: super::TensorError) -> Self {
        Error::from(e).into()
    }
}
