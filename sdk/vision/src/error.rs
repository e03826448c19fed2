//! Errors, grouped by who is at fault and worded so the message says what to do next.

use std::path::PathBuf;

pub use ocellus_core::Fault;

/// The ocellus error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// ONNX Runtime could not be found or loaded.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),

    /// A model card could not be read.
    #[error("cannot read model card {path}: {source}")]
    CardRead {
        /// The card.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A model card is not valid TOML or has unknown/missing keys.
    #[error("model card {path} is invalid: {message}")]
    CardParse {
        /// The card.
        path: PathBuf,
        /// What the TOML parser said, with line and column.
        message: String,
    },

    /// A model card parsed but a value is out of range or inconsistent.
    #[error("model card {path}: key `{key}` {message}")]
    CardInvalid {
        /// The card.
        path: PathBuf,
        /// The dotted key at fault, e.g. `input.width`.
        key: String,
        /// What is wrong with it.
        message: String,
    },

    /// The model file a card names does not exist in any of the places searched.
    #[error(
        "model file `{file}` of card {card} not found; looked in: {}. Run `models/provision.sh` to fetch and convert it, or set OCELLUS_MODELS_DIR",
        display_paths(looked)
    )]
    ModelMissing {
        /// The card.
        card: PathBuf,
        /// The file name in the card.
        file: String,
        /// Every path that was tried.
        looked: Vec<PathBuf>,
    },

    /// The model file's sha256 is not the one its card records.
    #[error(
        "model file {path} has sha256 {actual}, but its card {card} records {expected}: the file is corrupt, truncated or a different model. Delete it and run `models/provision.sh`, or point the card at the right file"
    )]
    ModelChecksum {
        /// The card.
        card: PathBuf,
        /// The model file.
        path: PathBuf,
        /// sha256 recorded in the card.
        expected: String,
        /// sha256 of the file.
        actual: String,
    },

    /// A converted model has no manifest: it was never accepted against its card's conformance
    /// references on this machine.
    #[error(
        "converted model {model} (card {card}) has no manifest {manifest}: a converted model is used only once it has reproduced its card's [conformance] references on this machine. Run `models/provision.sh`, or `ocellus model accept {card} {model}`"
    )]
    ModelUnaccepted {
        /// The card.
        card: PathBuf,
        /// The model file.
        model: PathBuf,
        /// Where the manifest was looked for.
        manifest: PathBuf,
    },

    /// A converted model's manifest is unreadable, written for another card, source or set of
    /// references, or records other bytes than the file now has.
    #[error("model manifest {manifest} {message}")]
    ModelManifest {
        /// The manifest.
        manifest: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },

    /// A converted model does not compute what its card's conformance references say.
    #[error(
        "model {path} does not conform to card {card}: {} of {checked} check(s) failed: {}",
        failures.len(),
        failures.join("; ")
    )]
    Conformance {
        /// The card.
        card: PathBuf,
        /// The model file.
        path: PathBuf,
        /// Checks made.
        checked: usize,
        /// Each failure: which input, which output, by how much (bounded).
        failures: Vec<String>,
    },

    /// ONNX Runtime refused the model file (truncated, not ONNX, unsupported operator).
    #[error("ONNX Runtime cannot load model {path}: {source}")]
    ModelLoad {
        /// The model file.
        path: PathBuf,
        /// The runtime's error.
        source: ort::Error,
    },

    /// The model's inputs or outputs do not match its card.
    #[error("model {path} does not match its card: {message}")]
    ModelMismatch {
        /// The model file.
        path: PathBuf,
        /// What does not match, naming the input or output.
        message: String,
    },

    /// A model output has an unexpected shape or element type at run time.
    #[error("model output `{output}`: {message}")]
    ModelOutput {
        /// The output's name.
        output: String,
        /// Expected vs found.
        message: String,
    },

    /// Running the model failed.
    #[error("inference failed: {0}")]
    Inference(#[source] ort::Error),

    /// An image could not be opened or decoded.
    #[error("cannot read image {path}: {source}")]
    Image {
        /// The image.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },

    /// A frame handed to the detector is inconsistent (buffer size vs. width × height × 3).
    #[error("invalid frame: {0}")]
    Frame(String),

    /// A frame's on-sensor results (an IMX500's DNN lines) are malformed; the frame is skipped.
    /// (The parser itself, `ocellus::imx500::format`, reports a typed `TensorError`.)
    #[error("on-sensor tensor data: {0}")]
    SensorData(String),

    /// The deployment config is invalid. `line` is 1-based when known.
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Config {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        /// What is wrong, naming the key (e.g. "`rules.line[0].a`: x = 1.5 is outside 0..=1").
        message: String,
    },

    /// An option passed by the caller is out of range.
    #[error("invalid option `{name}`: {message}")]
    InvalidOption {
        /// The option, as the user wrote it (e.g. `--threshold`).
        name: String,
        /// What is wrong.
        message: String,
    },

    /// A camera or a sensor's control bus failed: missing device node, no permission, a format
    /// the device does not offer, a chip that does not answer.
    #[error("{device}: {message}")]
    Device {
        /// The device (`/dev/video0`, `/dev/i2c-1`, `IMX219 (simulated)`).
        device: String,
        /// What went wrong and what to do.
        message: String,
    },

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

    /// A copy of a model optimised for this machine is damaged or unusable (it is rebuilt).
    #[error("optimised model copy {path}: {message}")]
    Prepared {
        /// The copy's directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A failure inside a component plugged into the pipeline (a user's source, inference or
    /// sink), with who has to act.
    #[error("{source}")]
    Component {
        /// Who has to act.
        fault: Fault,
        /// The component's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Any other I/O failure, with the path involved.
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
            Error::Runtime(_)
            | Error::Device { .. }
            | Error::Queue { .. }
            | Error::Broker { .. } => Fault::Environment,
            Error::CardRead { .. }
            | Error::CardParse { .. }
            | Error::CardInvalid { .. }
            | Error::Image { .. }
            | Error::Frame(_)
            | Error::SensorData(_)
            | Error::InvalidOption { .. }
            | Error::Config { .. }
            | Error::Io { .. } => Fault::Input,
            Error::ModelMissing { .. }
            | Error::ModelChecksum { .. }
            | Error::ModelUnaccepted { .. }
            | Error::ModelManifest { .. }
            | Error::Conformance { .. }
            | Error::ModelLoad { .. }
            | Error::ModelMismatch { .. }
            | Error::ModelOutput { .. }
            | Error::Prepared { .. }
            | Error::Inference(_) => Fault::Model,
            Error::Component { fault, .. } => *fault,
        }
    }
}

impl From<ocellus_core::Error> for Error {
    /// The core's errors, flattened into this one (a component's own [`Error`] comes back as
    /// itself).
    fn from(e: ocellus_core::Error) -> Error {
        use ocellus_core::Error as Core;
        match e {
            Core::Frame(m) => Error::Frame(m),
            Core::InvalidOption { name, message } => Error::InvalidOption { name, message },
            Core::Device { device, message } => Error::Device { device, message },
            Core::Io { path, source } => Error::Io { path, source },
            Core::Component { fault, source } => match source.downcast::<Error>() {
                Ok(own) => *own,
                Err(source) => match source.downcast::<ocellus_delivery::Error>() {
                    Ok(d) => Error::from(*d),
                    Err(source) => Error::Component { fault, source },
                },
            },
            other => Error::Component {
                fault: other.fault(),
                source: Box::new(other),
            },
        }
    }
}

impl From<ocellus_delivery::Error> for Error {
    /// Delivery's errors, flattened into this one.
    fn from(e: ocellus_delivery::Error) -> Error {
        use ocellus_delivery::Error as D;
        match e {
            D::Queue { dir, message } => Error::Queue { dir, message },
            D::Broker { broker, message } => Error::Broker { broker, message },
            D::InvalidOption { name, message } => Error::InvalidOption { name, message },
            D::Io { path, source } => Error::Io { path, source },
            other => Error::Component {
                fault: other.fault(),
                source: Box::new(other),
            },
        }
    }
}

impl From<Error> for ocellus_core::Error {
    /// For the core's traits: the variants they share map one to one, the others travel whole
    /// (and come back as themselves through `From<ocellus_core::Error>`).
    fn from(e: Error) -> ocellus_core::Error {
        use ocellus_core::Error as Core;
        match e {
            Error::Frame(m) => Core::Frame(m),
            Error::InvalidOption { name, message } => Core::InvalidOption { name, message },
            Error::Device { device, message } => Core::Device { device, message },
            Error::Io { path, source } => Core::Io { path, source },
            Error::Component { fault, source } => Core::Component { fault, source },
            other => Core::component(other.fault(), other),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nowhere)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
