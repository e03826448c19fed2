//! # ocellus-core
//!
//! The pure part of ocellus: frames, detections, the ByteTrack-class [tracker](track), the
//! line/zone/dwell/occupancy [rules](rules), [events](event) and their schema, and the three
//! traits the rest of the SDK and its users plug into:
//!
//! - [`Source`]: frames in (a camera, a file, a simulated sensor, your own);
//! - [`Inference`]: anything that turns a frame into detections (ONNX Runtime, a sensor that
//!   infers on the chip, your accelerator);
//! - [`EventSink`]: events out (the durable MQTT publisher, a channel, a file, a closure).
//!
//! It has no ONNX Runtime, MQTT or TLS in its dependency tree: a user of the tracker and rules
//! alone pulls in serde, thiserror and uuid.
//!
//! ```
//! use std::time::Duration;
//! use ocellus_core::{Detection, Rules, Tracker, TrackerConfig};
//! use ocellus_core::rules::{LineRule, RulesConfig};
//!
//! # fn main() -> ocellus_core::Result<()> {
//! let door = LineRule { name: "door".into(), a: [0.0, 0.5], b: [1.0, 0.5], labels: Vec::new() };
//! let mut rules = Rules::new(vec![door], Vec::new(), RulesConfig::default())?;
//! let mut tracker = Tracker::new(TrackerConfig::default())?;
//! let mut events = Vec::new();
//! for frame in 0..20u64 {
//!     // a person walking down the frame, feet crossing y = 0.5 at frame 10
//!     let y = 0.2 + 0.03 * frame as f32;
//!     let person = Detection { label: "person".into(), class_id: 1, score: 0.9,
//!                              bbox: [0.4, y - 0.2, 0.5, y] };
//!     let tracks = tracker.update(frame, &[person]);
//!     events.extend(rules.update(frame, Duration::from_millis(100 * frame), &tracks));
//! }
//! assert_eq!(events.len(), 1, "one crossing");
//! # Ok(())
//! # }
//! ```

pub mod appearance;
pub mod detection;
pub mod error;
pub mod eval;
pub mod event;
pub mod frame;
pub mod histogram;
pub mod inference;
pub mod mot;
pub mod nms;
pub mod ratelimit;
pub mod redact;
pub mod rules;
pub mod sink;
pub mod source;
pub mod tile;
pub mod track;

pub use detection::Detection;
pub use error::{Error, Fault, Result};
pub use event::{Event, EventType};
pub use frame::{Frame, RgbFrame, RgbView, SourceStats};
pub use inference::Inference;
pub use rules::{Rules, RulesConfig};
pub use sink::{ChannelSink, EventSink, FnSink, JsonLinesSink};
pub use source::Source;
pub use track::{Tracker, TrackerConfig, TrackerOutput};
