//! A simulated IMX500: frames from footage go through a real model standing in for the network on
//! the chip (the SSD person detector, whose post-processor gives boxes, scores, classes and a
//! count as IMX500 SSD networks do), and come out as the sensor would send them: quantised,
//! serialized into DNN lines of the real format, with KPI counters and, when asked, the
//! network's input tensor (a low-resolution picture).
//!
//! The host side never sees the footage's pixels unless it asks: what leaves the simulator is
//! what leaves a real IMX500.

use std::time::{Duration, Instant};

use ocellus_core::{RgbFrame, Source};

use super::encode::{InputSpec, Layout};
use super::format::{Kpi, STRIDE_2560};
use super::{SSD_DETECTIONS, ssd_outputs};
use crate::card::OutputSpec;
use crate::error::{Error, Result};
use crate::infer::Detector;

/// Network id the simulator puts in its headers and descriptor.
pub const SIM_NETWORK_ID: u16 = 1;

/// One frame as the simulated sensor sends it.
#[derive(Debug, Clone)]
pub struct SimFrame {
    /// Media time of the footage frame.
    pub t: Duration,
    /// The DNN lines.
    pub data: Vec<u8>,
    /// The input tensor's picture, packed RGB, when it was asked for.
    pub input: Option<RgbFrame>,
}

/// The simulated sensor.
pub struct Imx500Sim {
    footage: Box<dyn Source>,
    chip: Detector,
    layout: Layout,
    frame_count: u8,
}

impl std::fmt::Debug for Imx500Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imx500Sim")
            .field("footage", &self.footage.describe())
            .field("network", &self.layout.network)
            .finish_non_exhaustive()
    }
}

impl Imx500Sim {
    /// A sensor looking at `footage`, running `chip` (a detector whose card uses the `tf-ssd`
    /// decoder), sending lines of `stride` bytes.
    ///
    /// # Errors
    /// [`Error::CardInvalid`] when the card is not an SSD with its post-processor in the graph.
    pub fn new(footage: Box<dyn Source>, chip: Detector, stride: usize) -> Result<Self> {
        let card = chip.card();
        if !matches!(card.output, OutputSpec::TfSsd { .. }) {
            return Err(Error::CardInvalid {
                path: card.path.clone(),
                key: "output.decoder".into(),
                message: "the simulated IMX500 runs an SSD network post-processed on the chip; use a \"tf-ssd\" card".into(),
            });
        }
        let max_line_len = u16::try_from(stride.min(usize::from(u16::MAX)))
            .unwrap_or(u16::MAX)
            .min(STRIDE_2560 as u16)
            & !3;
        let layout = Layout {
            stride,
            max_line_len,
            network_id: SIM_NETWORK_ID,
            network: card.name.clone(),
            input: Some(InputSpec {
                name: "input".into(),
                width: card.input.width as u16,
                height: card.input.height as u16,
                channels: 3,
            }),
            outputs: ssd_outputs(SSD_DETECTIONS),
        };
        Ok(Imx500Sim {
            footage,
            chip,
            layout,
            frame_count: 0,
        })
    }

    /// What the sensor's lines look like.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// What the footage is.
    pub fn describe(&self) -> String {
        format!(
            "simulated IMX500 running {} on {}",
            self.layout.network,
            self.footage.describe()
        )
    }

    /// Frames in the footage, when known.
    pub fn len_hint(&self) -> Option<u64> {
        self.footage.len_hint()
    }

    /// Frames the footage could not deliver.
    pub fn stats(&self) -> ocellus_core::SourceStats {
        self.footage.stats()
    }

    /// The next frame, with the input tensor when `with_input`; `None` at the end of the footage.
    pub fn next_frame(&mut self, with_input: bool) -> Result<Option<SimFrame>> {
        let Some(frame) = self.footage.next_frame()? else {
            return Ok(None);
        };
        let Some(image) = frame.image else {
            return Err(Error::Frame(
                "the simulated IMX500's footage delivered no pixels".into(),
            ));
        };
        let t0 = Instant::now();
        let transform = self.chip.preprocess(&image.as_view())?;
        self.chip.infer(transform)?;
        let dnn = t0.elapsed();
        let values = self.outputs(&transform)?;
        let input = if with_input {
            Some(self.input_picture(&image)?)
        } else {
            None
        };
        let planar = input.as_ref().map(planar);
        let kpi = Kpi {
            dnn_runtime_us: u32::try_from(dnn.as_micros()).unwrap_or(u32::MAX),
            dsp_runtime_us: 0,
        };
        let data = self
            .layout
            .frame(self.frame_count, kpi, planar.as_deref(), &values)?;
        self.frame_count = self.frame_count.wrapping_add(1);
        self.footage.recycle(image);
        Ok(Some(SimFrame {
            t: frame.t,
            data,
            input,
        }))
    }

    /// The chip's four outputs in the sensor's order and decoded layout, boxes in frame
    /// coordinates.
    fn outputs(&self, transform: &crate::preprocess::Transform) -> Result<Vec<Vec<f32>>> {
        let OutputSpec::TfSsd {
            boxes,
            scores,
            classes,
            count,
            ..
        } = &self.chip.card().output
        else {
            return Ok(Vec::new());
        };
        let raw = self.chip.raw_outputs();
        let n = usize::from(SSD_DETECTIONS);
        let take = |name: &str, per: usize| -> Result<Vec<f32>> {
            let t = raw.get(name)?;
            let mut v: Vec<f32> = t.data.iter().copied().take(n * per).collect();
            v.resize(n * per, 0.0);
            Ok(v)
        };
        let mut b = take(boxes, 4)?;
        for q in b.chunks_exact_mut(4) {
            // (ymin, xmin, ymax, xmax) in the model's input, to the frame
            let [x0, y0, x1, y1] = transform.to_frame([q[1], q[0], q[3], q[2]]);
            q.copy_from_slice(&[y0, x0, y1, x1]);
        }
        let mut c = take(count, 1)?;
        c.truncate(1);
        c.resize(1, 0.0);
        Ok(vec![b, take(scores, 1)?, take(classes, 1)?, c])
    }

    /// The frame at the network's input size: the picture the sensor's input tensor carries.
    fn input_picture(&self, image: &RgbFrame) -> Result<RgbFrame> {
        let Some(spec) = &self.layout.input else {
            return Err(Error::Frame(
                "the simulated network has no input tensor".into(),
            ));
        };
        let (w, h) = (u32::from(spec.width), u32::from(spec.height));
        let src = image::RgbImage::from_raw(image.width(), image.height(), image.data().to_vec())
            .ok_or_else(|| Error::Frame("frame buffer does not match its size".into()))?;
        let small = image::imageops::resize(&src, w, h, image::imageops::FilterType::Triangle);
        RgbFrame::new(w, h, small.into_raw()).map_err(Error::from)
    }
}

/// Packed RGB to planar (the input tensor's order: each channel's rows in turn).
fn planar(image: &RgbFrame) -> Vec<u8> {
    let px = image.data().len() / 3;
    let mut out = vec![0u8; px * 3];
    for (i, p) in image.data().chunks_exact(3).enumerate() {
        out[i] = p[0];
        out[px + i] = p[1];
        out[2 * px + i] = p[2];
    }
    out
}
