//! How we reach the broker: TLS (rustls with the `ring` provider), credentials, and connection
//! errors explained. SKELETON: the interface is fixed, the implementation is being written.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A secret (a password): never printed. `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// TLS settings (`mqtts://`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file of the CA certificate(s) to trust; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for mutual TLS (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// User name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// MQTT user name.
    pub username: String,
    /// MQTT password, if any.
    pub password: Option<Secret>,
}

/// A connection problem in words, and whether retrying can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What happened and which config key to check. Never contains a secret.
    pub message: String,
    /// `true` for configuration problems (a wrong CA, password, certificate): retrying will not
    /// help. `false` for outages (refused, reset, timed out).
    pub permanent: bool,
}

/// Build the rustls client configuration. Errors name the config key and the file.
pub fn rustls_config(tls: &TlsSettings) -> Result<Arc<rustls::ClientConfig>> {
    let _ = tls;
    Err(Error::InvalidOption {
        name: "mqtt.ca_file".into(),
        message: "not implemented yet".into(),
    })
}

/// Explain a rumqttc connection error.
pub fn explain(e: &rumqttc::ConnectionError) -> Problem {
    Problem {
        message: e.to_string(),
        permanent: false,
    }
}
