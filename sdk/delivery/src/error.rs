//! Errors of delivery: the disk queue, the broker and its TLS set-up. Each says who has to act
//! ([`Fault`]) and never contains a secret.

use std::path::PathBuf;

pub use ocellus_core::Fault;

/// An error from the queue, the transport or the publisher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The on-disk event queue cannot be used (directory missing, read-only, full, locked by another
    /// process, or damaged beyond the torn tail it repairs itself).
    #[error("event queue {dir}: {message}")]
    Queue {
        /// The queue directory (`queue.dir`).
        dir: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
    /// The broker or the TLS set-up refused us in a way retrying will not fix (wrong CA, wrong
    /// password, a client certificate the broker does not accept).
    #[error("MQTT broker {broker}: {message}")]
    Broker {
        /// `host:port`.
        broker: String,
        /// What went wrong and which config key to check. Never contains a secret.
        message: String,
    },
    /// A setting out of range.
    #[error("invalid option `{name}`: {message}")]
    InvalidOption {
        /// The setting, as the user wrote it.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A file (CA, certificate, key) that cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// Who has to act to fix this error.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Queue { .. } | Error::Broker { .. } => Fault::Environment,
            Error::InvalidOption { .. } | Error::Io { .. } => Fault::Input,
        }
    }
}

impl From<Error> for ocellus_core::Error {
    fn from(e: Error) -> ocellus_core::Error {
        match e {
            Error::InvalidOption { name, message } => {
                ocellus_core::Error::InvalidOption { name, message }
            }
            Error::Io { path, source } => ocellus_core::Error::Io { path, source },
            other => ocellus_core::Error::component(other.fault(), other),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
