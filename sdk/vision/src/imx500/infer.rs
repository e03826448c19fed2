//! [`Imx500Inference`]: detections from the tensors an IMX500 computed, with no model on the host.

use std::time::Instant;

use ocellus_core::{Frame, Inference, RgbView};

use super::format::{self, Kpi, Tensor};
use crate::card::{ModelCard, OutputSpec};
use crate::error::{Error, Result};
use crate::infer::{Decoder, Detection, DetectorOptions, RawOutputs};
use crate::preprocess::Transform;

/// An [`Inference`] for a sensor that runs an SSD detector on the chip: it parses each frame's
/// DNN lines ([`Frame::sensor_data`]) and decodes the output tensors with the model card's
/// decoder, the card's threshold and labels applying as on the host path. It runs no model and
/// reads no pixels.
///
/// The card must use the `tf-ssd` decoder: the sensor's four output tensors (boxes, scores,
/// classes, count; see [`super::ssd_outputs`]) take the places of the card's `boxes`, `scores`,
/// `classes` and `count` outputs.
#[derive(Debug)]
pub struct Imx500Inference {
    decoder: Decoder,
    stride: usize,
    threshold: f32,
    /// The card's names for boxes, scores, classes and count.
    names: [String; 4],
    last_kpi: Kpi,
    parse_time: std::time::Duration,
}

impl Imx500Inference {
    /// For a card describing the network on the sensor, with lines of `stride` bytes
    /// ([`super::STRIDE_2560`] on current drivers).
    ///
    /// # Errors
    /// [`Error::CardInvalid`] when the card's decoder is not `tf-ssd`; [`Error::InvalidOption`] for
    /// a threshold outside 0..=1 or a stride too short to hold a header.
    pub fn new(card: &ModelCard, opts: &DetectorOptions, stride: usize) -> Result<Self> {
        let OutputSpec::TfSsd {
            boxes,
            scores,
            classes,
            count,
            ..
        } = &card.output
        else {
            return Err(Error::CardInvalid {
                path: card.path.clone(),
                key: "output.decoder".into(),
                message: "an on-sensor (IMX500) network is decoded as \"tf-ssd\" (boxes, scores, classes, count post-processed on the chip); use a card with that decoder".into(),
            });
        };
        if stride <= format::DNN_HEADER_LEN {
            return Err(Error::InvalidOption {
                name: "source.stride".into(),
                message: format!(
                    "{stride} bytes cannot hold a DNN header; IMX500 drivers use 2560 (current) or 4064 (older)"
                ),
            });
        }
        let threshold = opts
            .score_threshold
            .unwrap_or_else(|| card.output.score_threshold());
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Error::InvalidOption {
                name: "threshold".into(),
                message: format!("{threshold} is outside 0..=1"),
            });
        }
        let keep = opts.labels.as_ref().map(|l| card.class_ids_for(l));
        Ok(Imx500Inference {
            decoder: Decoder::new(card, threshold, keep)?,
            stride,
            threshold,
            names: [
                boxes.clone(),
                scores.clone(),
                classes.clone(),
                count.clone(),
            ],
            last_kpi: Kpi::default(),
            parse_time: std::time::Duration::ZERO,
        })
    }

    /// The detections in one frame's DNN lines.
    ///
    /// # Errors
    /// [`Error::SensorData`] for malformed lines; [`Error::ModelOutput`] when the tensors are not
    /// the four an SSD network on the sensor sends.
    pub fn detect(&mut self, data: &[u8]) -> Result<Vec<Detection>> {
        let t0 = Instant::now();
        let frame = format::parse_frame(data, self.stride, false)?;
        self.last_kpi = frame.kpi;
        let raw = self.raw_outputs(frame.outputs.tensors)?;
        let dets = self.decoder.decode(&raw, &Transform::IDENTITY);
        self.parse_time = t0.elapsed();
        dets
    }

    /// The sensor's timing counters of the last frame.
    pub fn last_kpi(&self) -> Kpi {
        self.last_kpi
    }

    /// Host time the last frame took to parse and decode.
    pub fn last_parse_time(&self) -> std::time::Duration {
        self.parse_time
    }

    /// The four SSD tensors under the card's output names, in the shapes its decoder reads.
    fn raw_outputs(&self, tensors: Vec<Tensor>) -> Result<RawOutputs> {
        let wrong = |message: String| Error::ModelOutput {
            output: "on-sensor tensors".into(),
            message,
        };
        let [boxes, scores, classes, count]: [Tensor; 4] = tensors.try_into().map_err(|t: Vec<_>| {
            wrong(format!(
                "{} tensors; an SSD network on the sensor sends 4 (boxes, scores, classes, count)",
                t.len()
            ))
        })?;
        let n = scores.data.len();
        if boxes.data.len() != 4 * n || classes.data.len() != n || count.data.len() != 1 {
            return Err(wrong(format!(
                "sizes {}, {}, {}, {} do not fit N boxes of 4, N scores, N classes and 1 count",
                boxes.data.len(),
                scores.data.len(),
                classes.data.len(),
                count.data.len()
            )));
        }
        let n = n as i64;
        Ok(RawOutputs::from_parts(
            self.names.to_vec(),
            vec![vec![1, n, 4], vec![1, n], vec![1, n], vec![1]],
            vec![boxes.data, scores.data, classes.data, count.data],
        ))
    }
}

impl Inference for Imx500Inference {
    fn infer(&mut self, _frame: RgbView<'_>) -> ocellus_core::Result<Vec<Detection>> {
        Err(ocellus_core::Error::Frame(
            "the network runs on the sensor: give frames with the sensor's DNN lines (Frame::sensor_data), not pixels".into(),
        ))
    }

    fn infer_frame(&mut self, frame: &Frame) -> ocellus_core::Result<Vec<Detection>> {
        let Some(data) = frame.sensor_data.as_deref() else {
            return Err(ocellus_core::Error::Frame(format!(
                "frame {}: no on-sensor results (the source sent no DNN lines)",
                frame.seq
            )));
        };
        Ok(self.detect(data)?)
    }

    fn score_threshold(&self) -> f32 {
        self.threshold
    }

    fn set_report_floor(&mut self, floor: f32) {
        self.decoder.set_threshold(floor.min(self.threshold));
    }

    fn describe(&self) -> String {
        format!("{} on the sensor (IMX500)", self.decoder.card().name)
    }
}
