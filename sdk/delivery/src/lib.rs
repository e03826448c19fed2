//! # ocellus-delivery
//!
//! Events off the device without losing one: every event is appended to an on-disk
//! [queue](spool) before it is offered to the broker and removed only when the broker
//! acknowledges it; MQTT over [TLS](transport); the [publisher](publish), a pure state machine
//! (`publish::state`, private) driven by a rumqttc I/O loop; and the [cloud profiles](cloud) for
//! Azure IoT Hub and AWS IoT Core. [`Publisher`] is an [`EventSink`](ocellus_core::EventSink).

pub mod cloud;
pub mod error;
pub mod publish;
pub mod spool;
pub mod transport;

pub use error::{Error, Fault, Result};
pub use publish::{MqttSettings, PublishHealth, PublishSummary, Publisher};
pub use spool::{Spool, SpoolConfig, WhenFull};
