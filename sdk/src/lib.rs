//! # ocellus
//!
//! On-device vision for intelligent image sensors. Frames go through a detector (ONNX Runtime,
//! described by a [model card](card)), and only what the detector found leaves the device.
//!
//! ```no_run
//! use ocellus::{card::ModelCard, infer::Detector, runtime::Runtime};
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
//! Modules follow the data flow: [`preprocess`] → [`infer`]; [`card`] describes models and
//! [`runtime`] finds ONNX Runtime.

pub mod annotate;
pub mod card;
pub mod cloud;
pub mod config;
pub mod deploy;
pub mod error;
pub mod event;
pub mod health;
pub mod histogram;
pub mod infer;
pub mod manifest;
pub mod paths;
pub mod pipeline;
pub mod preprocess;
pub mod procinfo;
pub mod publish;
pub mod ratelimit;
pub mod redact;
pub mod rules;
pub mod runtime;
pub mod snapshot;
pub mod source;
pub mod spool;
pub mod track;
pub mod transport;

pub use error::{Error, Fault, Result};
pub use preprocess::{RgbFrame, RgbView};

/// Open and decode an image file as 8-bit RGB, with the decoder's limits (a header that claims a
/// huge image is an error, not an allocation).
pub fn load_rgb(path: impl AsRef<std::path::Path>) -> Result<RgbFrame> {
    source::load_image(path.as_ref())
}
