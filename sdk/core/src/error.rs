//! Errors of the core: bad settings, bad frames, and failures reported by the components a user
//! plugs in (a [`Source`](crate::Source), an [`Inference`](crate::Inference), an
//! [`EventSink`](crate::EventSink)). Every error says who has to act ([`Fault`]).

use std::path::PathBuf;

/// Who has to act to fix an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The caller's input: a file, a config value, an option, a frame.
    Input,
    /// The model or its card.
    Model,
    /// The machine or the network: a missing library, a camera, a broker, a disk.
    Environment,
}

/// An error from the core, or from a component plugged into it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame that cannot be used (size, length, an empty crop).
    #[error("invalid frame: {0}")]
    Frame(String),
    /// An option out of range or inconsistent with another.
    #[error("invalid option `{name}`: {message}")]
    InvalidOption {
        /// The option.
        name: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// A device (camera, sensor bus, accelerator) failed or is missing.
    #[error("{device}: {message}")]
    Device {
        /// The device, as the user named it.
        device: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A failure inside a plugged-in component (a user's source, inference or sink, or one of the
    /// SDK's own built on other crates), with who has to act.
    #[error("{source}")]
    Component {
        /// Who has to act.
        fault: Fault,
        /// The component's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Who has to act to fix this error.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Device { .. } => Fault::Environment,
            Error::Frame(_) | Error::InvalidOption { .. } | Error::Io { .. } => Fault::Input,
            Error::Component { fault, .. } => *fault,
        }
    }

    /// Wrap a component's error, saying who has to act.
    pub fn component(
        fault: Fault,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Component {
            fault,
            source: source.into(),
        }
    }

    /// An [`Error::InvalidOption`].
    pub fn invalid_option(name: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidOption {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
