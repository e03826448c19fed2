//! Finding and loading the ONNX Runtime shared library, without panicking.
//!
//! ocellus links ONNX Runtime dynamically (`ort`'s `load-dynamic`): nothing is downloaded at build
//! time and the library is chosen at start-up, in this order — the first one that is *set* is used:
//!
//! 1. an explicit path (the config key `[runtime] onnxruntime` or `--onnxruntime` on the command line);
//! 2. the `ORT_DYLIB_PATH` environment variable;
//! 3. the provisioning cache, `<cache>/onnxruntime/libonnxruntime.so.1.31.1` (see [`crate::paths`]).
//!
//! A set path that does not exist is an error, not a reason to try the next one: a user who named a
//! library expects that library. A library older than 1.31 is refused with its version in the message.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::paths::PROVISION_COMMAND;

/// The ONNX Runtime version ocellus is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// The oldest ONNX Runtime minor version the `ort` bindings accept (1.x).
pub const ORT_MIN_MINOR: u32 = 31;

/// Where a candidate library path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The config key or command-line flag.
    Explicit,
    /// `ORT_DYLIB_PATH`.
    EnvVar,
    /// The provisioning cache.
    Cache,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Explicit => "config `[runtime] onnxruntime` / --onnxruntime",
            Origin::EnvVar => "ORT_DYLIB_PATH",
            Origin::Cache => "provisioning cache",
        })
    }
}

/// Why ONNX Runtime cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No library at the chosen path.
    #[error(
        "ONNX Runtime library not found: {origin} points to {path}, which does not exist. Run `{PROVISION_COMMAND}` to install ONNX Runtime {ORT_VERSION} into the cache{hint}"
    )]
    NotFound {
        /// Where the path came from.
        origin: Origin,
        /// The path that does not exist.
        path: PathBuf,
        /// Extra advice for explicit paths.
        hint: String,
    },
    /// The file exists but is not a loadable ONNX Runtime library.
    #[error(
        "{path} (from {origin}) is not a usable ONNX Runtime library: {message}. Run `{PROVISION_COMMAND}` to install ONNX Runtime {ORT_VERSION}"
    )]
    NotOrt {
        /// Where the path came from.
        origin: Origin,
        /// The library path.
        path: PathBuf,
        /// What the loader said.
        message: String,
    },
    /// The library is too old for the bindings.
    #[error(
        "{path} (from {origin}) is ONNX Runtime {found}, but ocellus needs 1.{ORT_MIN_MINOR} or newer (tested with {ORT_VERSION}). Run `{PROVISION_COMMAND}` to install ONNX Runtime {ORT_VERSION}, and unset ORT_DYLIB_PATH or point it at the new library"
    )]
    TooOld {
        /// Where the path came from.
        origin: Origin,
        /// The library path.
        path: PathBuf,
        /// The version the library reported.
        found: String,
    },
    /// The library loaded but creating the ONNX Runtime environment failed.
    #[error("ONNX Runtime {path} loaded but its environment could not be created: {source}")]
    Environment {
        /// The library path.
        path: PathBuf,
        /// The runtime's error.
        source: ort::Error,
    },
}

/// Chooses the ONNX Runtime library. Build it with [`Locator::from_env`], or by hand in tests.
#[derive(Debug, Clone)]
pub struct Locator {
    /// From the config key or command line.
    pub explicit: Option<PathBuf>,
    /// From `ORT_DYLIB_PATH`.
    pub env_var: Option<PathBuf>,
    /// The provisioning cache's library path.
    pub cache: PathBuf,
}

impl Locator {
    /// A locator reading `ORT_DYLIB_PATH` and the cache location from the environment.
    pub fn from_env(explicit: Option<PathBuf>) -> Self {
        Locator {
            explicit,
            env_var: std::env::var_os("ORT_DYLIB_PATH")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            cache: default_cache_library(),
        }
    }

    /// The path that will be used, and where it came from.
    pub fn choose(&self) -> (Origin, &Path) {
        if let Some(p) = &self.explicit {
            (Origin::Explicit, p)
        } else if let Some(p) = &self.env_var {
            (Origin::EnvVar, p)
        } else {
            (Origin::Cache, &self.cache)
        }
    }

    /// Check that the chosen path exists.
    pub fn locate(&self) -> Result<(Origin, PathBuf), RuntimeError> {
        let (origin, path) = self.choose();
        if path.is_file() {
            return Ok((origin, path.to_path_buf()));
        }
        let hint = match origin {
            Origin::Cache => String::new(),
            _ => format!(
                " ({}), or remove the setting to use the cache at {}",
                self.cache.display(),
                self.cache.display()
            ),
        };
        Err(RuntimeError::NotFound {
            origin,
            path: path.to_path_buf(),
            hint,
        })
    }
}

/// The library path the provisioning script installs.
pub fn default_cache_library() -> PathBuf {
    crate::paths::cache_dir()
        .join("onnxruntime")
        .join(format!("libonnxruntime.so.{ORT_VERSION}"))
}

/// The process-wide ONNX Runtime: the loaded library and its one environment.
#[derive(Debug)]
pub struct Runtime {
    env: ort::environment::Environment,
    library: PathBuf,
    origin: Origin,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

impl Runtime {
    /// Load ONNX Runtime once per process. Later calls return the runtime loaded first, whatever
    /// the locator says (ONNX Runtime allows one environment per process).
    pub fn init(locator: &Locator) -> Result<&'static Runtime, RuntimeError> {
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        let (origin, path) = locator.locate()?;
        let builder = ort::init_from(&path).map_err(|e| load_error(origin, &path, e))?;
        let env = builder
            .with_name("ocellus")
            .with_telemetry(false)
            .build()
            .map_err(|source| RuntimeError::Environment {
                path: path.clone(),
                source,
            })?;
        let rt = Runtime {
            env,
            library: path,
            origin,
        };
        // A concurrent caller may have won the race; either runtime is the same library.
        Ok(RUNTIME.get_or_init(|| rt))
    }

    /// The environment sessions are built in.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.env
    }

    /// The library that was loaded.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Where the library path came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

fn load_error(origin: Origin, path: &Path, e: ort::LoadDynamicError) -> RuntimeError {
    use ort::LoadDynamicError as L;
    match e {
        L::BadVersion { version_str, .. } => RuntimeError::TooOld {
            origin,
            path: path.to_path_buf(),
            found: version_str,
        },
        L::Dlopen { error, .. } => RuntimeError::NotOrt {
            origin,
            path: path.to_path_buf(),
            message: error.to_string(),
        },
        L::MissingApi { .. } => RuntimeError::NotOrt {
            origin,
            path: path.to_path_buf(),
            message: "it does not export OrtGetApiBase".to_owned(),
        },
        other => RuntimeError::NotOrt {
            origin,
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locator(explicit: Option<&str>, env: Option<&str>) -> Locator {
        Locator {
            explicit: explicit.map(PathBuf::from),
            env_var: env.map(PathBuf::from),
            cache: PathBuf::from("/cache/libonnxruntime.so.1.31.1"),
        }
    }

    #[test]
    fn precedence_explicit_then_env_then_cache() {
        assert_eq!(
            locator(Some("/a.so"), Some("/b.so")).choose(),
            (Origin::Explicit, Path::new("/a.so"))
        );
        assert_eq!(
            locator(None, Some("/b.so")).choose(),
            (Origin::EnvVar, Path::new("/b.so"))
        );
        assert_eq!(
            locator(None, None).choose(),
            (Origin::Cache, Path::new("/cache/libonnxruntime.so.1.31.1"))
        );
    }

    #[test]
    fn a_set_but_missing_path_is_an_error_naming_it_and_the_fix() {
        let err = locator(None, Some("/nonexistent/libonnxruntime.so"))
            .locate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
        assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
        assert!(err.contains(PROVISION_COMMAND), "{err}");
    }
}
