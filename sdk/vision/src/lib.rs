//! # ocellus
//!
//! On-device vision for intelligent image sensors. Frames come from a [`Source`]; an
//! [`Inference`] (the ONNX Runtime [`Detector`] described by a [model card](card), a sensor that
//! infers on the chip, or your own accelerator) turns them into detections; the tracker and the
//! rules turn those into [`Event`]s; and one or more [`EventSink`]s take the events (the durable
//! MQTT [`Publisher`], a channel, a JSON-lines file, a closure). Only events leave the device.
//!
//! ```no_run
//! use ocellus::{Detector, ModelCard, Runtime};
//!
//! # fn main() -> Result<(), ocellus::Error> {
//! let runtime = Runtime::init(&ocellus::runtime::Locator::from_env(None))?;
//! let card = ModelCard::load("models/ssd-mobilenet-v2-coco.toml")?;
//! let mut detector = Detector::new(runtime, &card, &Default::default())?;
//! let image = ocellus::load_rgb("frame.png")?;
//! for d in detector.detect(&image.as_view())? {
//!     println!("{} {:.2} {:?}", d.label, d.score, d.bbox);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A whole pipeline, with your own sink, is built with [`Pipeline::builder`]; a deployment from a
//! config file with [`Config::load`] and [`Deployment::from_config`]. See `docs/embedding.md`.
//!
//! The SDK is three crates by layer, re-exported here: `ocellus-core` (frames, detections, the
//! tracker, rules, events and the three traits; no ONNX Runtime, MQTT or TLS), `ocellus-delivery`
//! (the disk queue, MQTT and the cloud profiles) and this one (ONNX Runtime, sources, the
//! pipeline, config).

pub mod accuracy;
mod agent;
mod anchors;
pub mod annotate;
pub mod card;
pub mod config;
pub mod conformance;
pub mod deploy;
pub mod error;
pub mod health;
pub mod imx500;
pub mod infer;
pub mod manifest;
pub mod paths;
pub mod pipeline;
pub mod preprocess;
pub mod runtime;
pub mod snapshot;
pub mod source;

pub use ocellus_core as core;
pub use ocellus_core::{
    appearance, eval, event, histogram, mot, nms, ratelimit, redact, rules, sink, tile, track,
};
pub use ocellus_delivery as delivery;
pub use ocellus_delivery::{cloud, publish, spool, transport};

pub use card::ModelCard;
pub use config::Config;
pub use deploy::Deployment;
pub use error::{Error, Fault, Result};
pub use infer::{Detector, DetectorOptions};
pub use ocellus_core::{
    ChannelSink, Detection, Event, EventSink, EventType, FnSink, Frame, Inference, JsonLinesSink,
    RgbFrame, RgbView, Rules, RulesConfig, Source, SourceStats, Tracker, TrackerConfig,
};
pub use ocellus_delivery::{MqttSettings, Publisher};
pub use pipeline::{Pipeline, PipelineBuilder, TrackTap, TracksSeen};
pub use runtime::Runtime;

/// Open and decode an image file as 8-bit RGB, with the decoder's limits (a header that claims a
/// huge image is an error, not an allocation).
pub fn load_rgb(path: impl AsRef<std::path::Path>) -> Result<RgbFrame> {
    source::load_image(path.as_ref())
}
