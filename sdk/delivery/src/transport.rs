//! How we reach the broker: TLS (rustls with the `ring` provider), credentials, and connection
//! errors explained.
//!
//! [`rustls_config`] reads the PEM files named by `mqtt.ca_file`, `mqtt.client_cert` and
//! `mqtt.client_key` (or the system's CA certificates when there is no `mqtt.ca_file`) and builds
//! the rustls client configuration; every error names the config key and the file and says what
//! to do. [`configure`] puts it, and the user name and password, on [`rumqttc::MqttOptions`].
//! [`explain`] turns a [`rumqttc::ConnectionError`] into words and says whether retrying can help
//! ([`Problem::permanent`]): a wrong CA, a refused client certificate or a wrong password will not
//! fix themselves, a broker that is down or a network that drops may.
//!
//! Secrets: a password is held in a [`Secret`], which prints as `***`. No message made here
//! contains a password or the content of a key file. Never print [`rumqttc::MqttOptions`] with
//! `{:?}` once [`configure`] has run: its `Debug` shows the password.

use std::error::Error as StdError;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{ConnectReturnCode, ConnectionError, StateError, TlsError};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};

use crate::error::{Error, Result};

/// Largest PEM file read (a CA bundle of a few hundred certificates is well under 1 MiB).
const MAX_PEM_BYTES: u64 = 16 << 20;

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

// ---------------------------------------------------------------------------------------------
// TLS configuration.

fn option(name: &str, message: impl Into<String>) -> Error {
    Error::InvalidOption {
        name: name.to_owned(),
        message: message.into(),
    }
}

/// Build the rustls client configuration. Errors name the config key and the file.
///
/// Uses the `ring` provider explicitly (no process-wide default is needed or installed) and the
/// safe default protocol versions (TLS 1.2 and 1.3).
pub fn rustls_config(tls: &TlsSettings) -> Result<Arc<rustls::ClientConfig>> {
    // The pair first: a missing half is a clearer message than anything about the other file.
    let client = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(option(
                "mqtt.client_key",
                "is missing but `mqtt.client_cert` is set: mutual TLS needs the certificate and its private key; set `mqtt.client_key`, or remove `mqtt.client_cert`",
            ));
        }
        (None, Some(_)) => {
            return Err(option(
                "mqtt.client_cert",
                "is missing but `mqtt.client_key` is set: mutual TLS needs the certificate and its private key; set `mqtt.client_cert`, or remove `mqtt.client_key`",
            ));
        }
    };
    let roots = match &tls.ca_file {
        Some(path) => ca_roots(path)?,
        None => system_roots()?,
    };
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| option("mqtt.url", format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = client_chain(cert)?;
            let key_der = private_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| client_auth_error(cert, key, &e))?
        }
    };
    Ok(Arc::new(config))
}

/// A [`rumqttc::Transport`] for `tls`: TCP when `None`, TLS with [`rustls_config`] otherwise.
pub fn mqtt_transport(tls: Option<&TlsSettings>) -> Result<rumqttc::Transport> {
    Ok(match tls {
        None => rumqttc::Transport::tcp(),
        Some(tls) => rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
            rustls_config(tls)?,
        )),
    })
}

/// Put the transport (TLS or not) and the credentials on `options`. After this, never print
/// `options` with `{:?}`: rumqttc's `Debug` shows the password.
pub fn configure(
    options: &mut rumqttc::MqttOptions,
    tls: Option<&TlsSettings>,
    credentials: Option<&Credentials>,
) -> Result<()> {
    options.set_transport(mqtt_transport(tls)?);
    if let Some(c) = credentials {
        let password = c.password.as_ref().map(Secret::expose).unwrap_or_default();
        options.set_credentials(c.username.clone(), password);
    }
    Ok(())
}

/// Read a PEM file (bounded), with the key and the path in any error.
fn read_pem(path: &Path, key: &str) -> Result<Vec<u8>> {
    let fail = |what: String| option(key, format!("{}: {what}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open it: {e}")))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(fail("is a directory; give the PEM file".to_owned()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(fail(format!(
            "is larger than {MAX_PEM_BYTES} bytes; is this really a PEM file?"
        )));
    }
    Ok(bytes)
}

/// A PEM syntax error in words, without the file's content.
fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "a PEM section has no -----END line (is the file truncated?)".to_owned()
        }
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(_) => {
            "a PEM section is not valid base64 (is the file damaged?)".to_owned()
        }
        pem::Error::Io(e) => format!("cannot read it: {e}"),
        pem::Error::SectionTooLarge => "a PEM section is too large".to_owned(),
        _ => "is not a valid PEM file".to_owned(),
    }
}

/// Why a file holds no PEM certificate, and what to do.
fn no_certificate_hint(bytes: &[u8], key: &str) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("PRIVATE KEY-----") {
        format!(
            "no PEM certificate found in it: it holds a private key; `{key}` is the certificate file (-----BEGIN CERTIFICATE-----)"
        )
    } else if bytes.first() == Some(&0x30) {
        "no PEM certificate found in it: it looks like binary DER; convert it with `openssl x509 -inform der -in FILE -out FILE.pem`".to_owned()
    } else {
        "no PEM certificate found in it: expected one or more -----BEGIN CERTIFICATE----- sections"
            .to_owned()
    }
}

/// The certificates of a PEM file, at least one.
fn pem_certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read_pem(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| option(key, format!("{}: {}", path.display(), pem_problem(&e))))?;
    if certs.is_empty() {
        return Err(option(
            key,
            format!("{}: {}", path.display(), no_certificate_hint(&bytes, key)),
        ));
    }
    Ok(certs)
}

/// `mqtt.ca_file`: the CA certificates to trust.
fn ca_roots(path: &Path) -> Result<RootCertStore> {
    let certs = pem_certificates(path, "mqtt.ca_file")?;
    let n = certs.len();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(option(
            "mqtt.ca_file",
            format!(
                "{}: none of its {n} PEM certificate(s) is a usable X.509 CA certificate; give the PEM certificate of the CA that signed the broker's certificate",
                path.display()
            ),
        ));
    }
    Ok(roots)
}

/// No `mqtt.ca_file`: the system's CA certificates (`/etc/ssl/certs` on Debian).
fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(option(
            "mqtt.ca_file",
            format!(
                "is not set and no system CA certificates were found{why}; install the system's CA certificates (Debian: the ca-certificates package) or set `mqtt.ca_file` to the PEM certificate of the CA that signed the broker's certificate"
            ),
        ));
    }
    Ok(roots)
}

/// `mqtt.client_cert`: the client's certificate chain, leaf first.
fn client_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    pem_certificates(path, "mqtt.client_cert")
}

/// `mqtt.client_key`: the client's private key.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let key = "mqtt.client_key";
    let bytes = read_pem(path, key)?;
    let fail = |what: String| option(key, format!("{}: {what}", path.display()));
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(k) => Ok(k),
        Err(pem::Error::NoItemsFound) => {
            let text = String::from_utf8_lossy(&bytes);
            Err(fail(if text.contains("ENCRYPTED PRIVATE KEY-----") {
                "is an encrypted private key; ocellus needs it unencrypted (protect the file with its permissions instead): `openssl pkey -in KEY -out KEY.plain`".to_owned()
            } else if text.contains("BEGIN CERTIFICATE-----") {
                "holds a certificate but no private key; `mqtt.client_key` is the private key of `mqtt.client_cert` (-----BEGIN PRIVATE KEY-----)".to_owned()
            } else {
                "not a PEM private key (PKCS#8, PKCS#1 or SEC1: -----BEGIN PRIVATE KEY-----, -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)".to_owned()
            }))
        }
        Err(e) => Err(fail(pem_problem(&e))),
    }
}

/// `with_client_auth_cert` refused the pair.
fn client_auth_error(cert: &Path, key: &Path, e: &rustls::Error) -> Error {
    match e {
        rustls::Error::InconsistentKeys(_) => option(
            "mqtt.client_key",
            format!(
                "{}: the key does not match the certificate {} (`mqtt.client_cert`); give the private key that belongs to that certificate",
                key.display(),
                cert.display()
            ),
        ),
        rustls::Error::InvalidCertificate(_) => option(
            "mqtt.client_cert",
            format!(
                "{}: the first certificate cannot be used ({e}); it must be the client's own X.509 certificate, followed by any intermediates",
                cert.display()
            ),
        ),
        _ => option(
            "mqtt.client_key",
            format!(
                "{}: this key cannot be used ({e}); use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key",
                key.display()
            ),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Connection errors.

fn permanent(message: impl Into<String>) -> Problem {
    Problem {
        message: message.into(),
        permanent: true,
    }
}

fn transient(message: impl Into<String>) -> Problem {
    Problem {
        message: message.into(),
        permanent: false,
    }
}

/// Explain a rumqttc connection error.
pub fn explain(e: &rumqttc::ConnectionError) -> Problem {
    match e {
        ConnectionError::ConnectionRefused(code) => return refused(*code),
        ConnectionError::Tls(t) => {
            if let Some(p) = tls_setup_problem(t) {
                return p;
            }
        }
        ConnectionError::NetworkTimeout => {
            return transient(
                "timed out connecting to the broker (the network or the broker is down or slow)",
            );
        }
        ConnectionError::FlushTimeout => {
            return transient("timed out sending to the broker (the network is slow or down)");
        }
        ConnectionError::NotConnAck(_) => {
            return transient(
                "the broker did not answer the MQTT CONNECT with a CONNACK: is `mqtt.url` an MQTT 3.1.1 broker?",
            );
        }
        ConnectionError::RequestsDone => return transient("the MQTT client was stopped"),
        ConnectionError::MqttState(StateError::ConnectionAborted) => {
            return transient(
                "the broker closed the connection (it restarted or dropped us; a TLS-only port also does this to mqtt://: use mqtts://)",
            );
        }
        _ => {}
    }
    if let Some(r) = find_rustls(e) {
        return tls_problem(r);
    }
    if let Some(io) = find_io(e) {
        return io_problem(io);
    }
    transient(format!("connection to the broker failed: {e}"))
}

/// A CONNACK refusal.
fn refused(code: ConnectReturnCode) -> Problem {
    match code {
        ConnectReturnCode::BadUserNamePassword => permanent(
            "the broker refused the user name or password: check `mqtt.username` and the password (`mqtt.password_file`, `mqtt.password_env` or `mqtt.password`)",
        ),
        ConnectReturnCode::NotAuthorized => permanent(
            "the broker refused us as not authorized: check `mqtt.username` and the password (`mqtt.password_file`, `mqtt.password_env` or `mqtt.password`), and that the broker allows this user",
        ),
        ConnectReturnCode::BadClientId => permanent(
            "the broker rejected the client id: check `mqtt.client_id` (some brokers limit its length or characters)",
        ),
        ConnectReturnCode::RefusedProtocolVersion => permanent(
            "the broker does not accept MQTT 3.1.1: use a broker that does (mosquitto, EMQX, HiveMQ, … all do)",
        ),
        ConnectReturnCode::ServiceUnavailable => {
            transient("the broker is unavailable (it said so in its CONNACK)")
        }
        ConnectReturnCode::Success => transient("the broker accepted the connection"),
    }
}

/// TLS set-up errors from rumqttc itself (before any rustls handshake).
fn tls_setup_problem(t: &TlsError) -> Option<Problem> {
    Some(match t {
        TlsError::DNSName(_) | TlsError::Addr(_) => permanent(
            "the host in `mqtt.url` is not a valid TLS server name: use the DNS name or IP address the broker's certificate was issued for",
        ),
        TlsError::WebPki(e) => permanent(format!(
            "a certificate could not be checked ({e}): check `mqtt.ca_file`, `mqtt.client_cert` and `mqtt.client_key`"
        )),
        TlsError::NoValidCertInChain => permanent("no usable CA certificate: check `mqtt.ca_file`"),
        TlsError::NoValidClientCertInChain | TlsError::NoValidKeyInChain => permanent(
            "no usable client certificate or key: check `mqtt.client_cert` and `mqtt.client_key`",
        ),
        _ => return None,
    })
}

/// The first rustls error in `e`'s chain, looking inside I/O errors too (tokio-rustls wraps the
/// handshake's rustls error in an `io::Error`, whose `source()` skips it).
fn find_rustls<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    for _ in 0..32 {
        let err = cur?;
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            let inner: &(dyn StdError + 'static) = inner;
            if let Some(r) = find_rustls(inner) {
                return Some(r);
            }
        }
        cur = err.source();
    }
    None
}

/// The first I/O error in `e`'s chain.
fn find_io<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a std::io::Error> {
    let mut cur = Some(e);
    for _ in 0..32 {
        let err = cur?;
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// A rustls error during or after the handshake.
fn tls_problem(r: &rustls::Error) -> Problem {
    match r {
        rustls::Error::InvalidCertificate(c) => certificate_problem(r, c),
        rustls::Error::AlertReceived(a) => alert_problem(*a),
        rustls::Error::NoCertificatesPresented => permanent(
            "the broker presented no TLS certificate: check the broker's TLS listener (its certificate file)",
        ),
        rustls::Error::PeerIncompatible(_) => permanent(format!(
            "the broker and ocellus have no TLS version or cipher suite in common ({r}); ocellus speaks TLS 1.2 and 1.3: check the broker's TLS settings"
        )),
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => permanent(format!(
            "the broker did not answer in TLS ({r}): is the port in `mqtt.url` a TLS listener (usually 8883)? A plain MQTT listener needs mqtt://"
        )),
        rustls::Error::InconsistentKeys(_) => permanent(
            "the client key does not match the client certificate: check `mqtt.client_cert` and `mqtt.client_key`",
        ),
        _ => transient(format!("TLS error: {r}")),
    }
}

/// The broker's certificate failed verification.
fn certificate_problem(r: &rustls::Error, c: &CertificateError) -> Problem {
    match c {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            permanent(format!(
                "the broker's certificate name does not match the host in `mqtt.url` ({r}): write the name (or IP address) the certificate was issued for in `mqtt.url`, or reissue the certificate with this host in its subjectAltName"
            ))
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => permanent(format!(
            "the broker's certificate has expired ({r}): renew it on the broker (and check this device's clock)"
        )),
        // A device without a battery-backed clock starts in 1970 until NTP has run: wait for it.
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            transient(format!(
                "the broker's certificate is not valid yet ({r}): this device's clock is probably wrong; set it (NTP)"
            ))
        }
        CertificateError::Revoked => permanent(format!(
            "the broker's certificate has been revoked ({r}): the broker needs a new certificate"
        )),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            permanent(format!(
                "the broker's certificate is not a TLS server certificate ({r}): its extended key usage must allow serverAuth"
            ))
        }
        _ => permanent(format!(
            "the broker's certificate is not trusted ({r}): check `mqtt.ca_file`: it must hold the CA that signed the broker's certificate (without `mqtt.ca_file`, the system's CAs are used)"
        )),
    }
}

/// The broker sent a TLS alert.
fn alert_problem(a: AlertDescription) -> Problem {
    match a {
        AlertDescription::CertificateRequired => permanent(
            "the broker requires a client certificate (TLS alert certificate_required): set `mqtt.client_cert` and `mqtt.client_key` to a certificate signed by a CA the broker trusts",
        ),
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied
        | AlertDescription::DecryptError => permanent(format!(
            "the broker rejected our client certificate (TLS alert {a:?}): check `mqtt.client_cert` and `mqtt.client_key`: the certificate must be signed by a CA the broker trusts, be valid now, and match the key"
        )),
        AlertDescription::HandshakeFailure => permanent(
            "the broker refused the TLS handshake (alert handshake_failure): if it requires client certificates, check `mqtt.client_cert` and `mqtt.client_key`; otherwise check the broker's TLS versions and cipher suites",
        ),
        AlertDescription::ProtocolVersion | AlertDescription::InsufficientSecurity => {
            permanent(format!(
                "the broker and ocellus have no TLS version or cipher suite in common (TLS alert {a:?}); ocellus speaks TLS 1.2 and 1.3"
            ))
        }
        AlertDescription::UnrecognisedName => permanent(
            "the broker does not know the host name in `mqtt.url` (TLS alert unrecognised_name): use the name the broker serves",
        ),
        _ => transient(format!("the broker sent TLS alert {a:?}")),
    }
}

/// A plain network failure: worth retrying.
fn io_problem(io: &std::io::Error) -> Problem {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => transient(format!(
            "the broker refused the connection ({io}): is it running and listening on the port in `mqtt.url`?"
        )),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            transient(format!(
                "the broker closed the connection ({io}); it restarted or dropped us (a TLS-only port also does this to mqtt://: use mqtts://)"
            ))
        }
        K::TimedOut => transient(format!("timed out reaching the broker ({io})")),
        _ => transient(format!("cannot reach the broker: {io}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn message(e: Error) -> (String, String) {
        match e {
            Error::InvalidOption { name, message } => (name, message),
            other => panic!("not an InvalidOption: {other}"),
        }
    }

    fn fails(tls: &TlsSettings) -> (String, String) {
        message(rustls_config(tls).expect_err("should fail"))
    }

    #[test]
    fn secret_is_never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        let c = Credentials {
            username: "cam".into(),
            password: Some(s.clone()),
        };
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("cam"), "{shown}");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn half_a_client_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pem");
        let (name, msg) = fails(&TlsSettings {
            ca_file: None,
            client_cert: Some(f.clone()),
            client_key: None,
        });
        assert_eq!(name, "mqtt.client_key");
        assert!(msg.contains("`mqtt.client_cert` is set"), "{msg}");
        let (name, msg) = fails(&TlsSettings {
            ca_file: None,
            client_cert: None,
            client_key: Some(f),
        });
        assert_eq!(name, "mqtt.client_cert");
        assert!(msg.contains("`mqtt.client_key` is set"), "{msg}");
    }

    #[test]
    fn pem_problems_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let (name, msg) = fails(&TlsSettings {
            ca_file: Some(missing.clone()),
            ..Default::default()
        });
        assert_eq!(name, "mqtt.ca_file");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("cannot open"), "{msg}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        let (name, msg) = fails(&TlsSettings {
            ca_file: Some(empty.clone()),
            ..Default::default()
        });
        assert_eq!(name, "mqtt.ca_file");
        assert!(msg.contains("empty.pem"), "{msg}");
        assert!(msg.contains("no PEM certificate found in it"), "{msg}");

        let der = dir.path().join("ca.der");
        std::fs::write(&der, [0x30u8, 0x82, 0x01, 0x0a, 0x02]).unwrap();
        let (_, msg) = fails(&TlsSettings {
            ca_file: Some(der),
            ..Default::default()
        });
        assert!(msg.contains("DER"), "{msg}");

        let truncated = dir.path().join("trunc.pem");
        std::fs::write(&truncated, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let (_, msg) = fails(&TlsSettings {
            ca_file: Some(truncated),
            ..Default::default()
        });
        assert!(msg.contains("truncated"), "{msg}");

        // A certificate section whose content is not X.509.
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let (_, msg) = fails(&TlsSettings {
            ca_file: Some(junk),
            ..Default::default()
        });
        assert!(msg.contains("usable X.509"), "{msg}");

        let dir_as_file = fails(&TlsSettings {
            ca_file: Some(dir.path().to_path_buf()),
            ..Default::default()
        });
        assert!(dir_as_file.1.contains("directory"), "{}", dir_as_file.1);
    }

    #[test]
    fn key_problems_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let key = dir.path().join("key.pem");
        let secret_body = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
        for (content, expect) in [
            (
                format!(
                    "-----BEGIN ENCRYPTED PRIVATE KEY-----\n{secret_body}\n-----END ENCRYPTED PRIVATE KEY-----\n"
                ),
                "encrypted",
            ),
            (
                "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n".to_owned(),
                "holds a certificate but no private key",
            ),
            (
                "just text\n".to_owned(),
                "not a PEM private key (PKCS#8, PKCS#1 or SEC1",
            ),
            (
                format!(
                    "-----BEGIN PRIVATE KEY-----\n{secret_body}!!\n-----END PRIVATE KEY-----\n"
                ),
                "base64",
            ),
        ] {
            std::fs::write(&key, &content).unwrap();
            let e = private_key(&key).expect_err("should fail");
            let shown = e.to_string();
            let (name, msg) = message(e);
            assert_eq!(name, "mqtt.client_key");
            assert!(msg.contains("key.pem"), "{msg}");
            assert!(msg.contains(expect), "`{expect}` not in: {msg}");
            assert!(!shown.contains(secret_body), "{shown}");
        }
    }

    fn io_wrapping(kind: std::io::ErrorKind, r: rustls::Error) -> std::io::Error {
        std::io::Error::new(kind, r)
    }

    #[test]
    fn explain_tls_failures_as_permanent() {
        // A handshake failure as rumqttc reports it: Tls(Io(io::Error(rustls::Error))).
        let e = ConnectionError::Tls(TlsError::Io(io_wrapping(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        )));
        let p = explain(&e);
        assert!(p.permanent, "{p:?}");
        assert!(p.message.contains("not trusted"), "{p:?}");
        assert!(p.message.contains("mqtt.ca_file"), "{p:?}");

        let e = ConnectionError::Tls(TlsError::TLS(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        )));
        let p = explain(&e);
        assert!(p.permanent, "{p:?}");
        assert!(
            p.message.contains("does not match the host in `mqtt.url`"),
            "{p:?}"
        );

        let e = ConnectionError::Tls(TlsError::Io(io_wrapping(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        )));
        let p = explain(&e);
        assert!(p.permanent && p.message.contains("expired"), "{p:?}");

        let e = ConnectionError::Tls(TlsError::Io(io_wrapping(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::NotValidYet),
        )));
        let p = explain(&e);
        assert!(!p.permanent && p.message.contains("clock"), "{p:?}");
    }

    #[test]
    fn explain_client_certificate_rejections() {
        // After a TLS 1.3 handshake the broker's alert arrives with the CONNACK read.
        for alert in [
            AlertDescription::BadCertificate,
            AlertDescription::UnknownCA,
            AlertDescription::CertificateUnknown,
        ] {
            let e = ConnectionError::MqttState(StateError::Deserialization(rumqttc::Error::Io(
                io_wrapping(
                    std::io::ErrorKind::InvalidData,
                    rustls::Error::AlertReceived(alert),
                ),
            )));
            let p = explain(&e);
            assert!(p.permanent, "{p:?}");
            assert!(p.message.contains("mqtt.client_cert"), "{p:?}");
            assert!(p.message.contains("mqtt.client_key"), "{p:?}");
        }
        let e = ConnectionError::Io(io_wrapping(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        ));
        let p = explain(&e);
        assert!(
            p.permanent && p.message.contains("requires a client certificate"),
            "{p:?}"
        );
    }

    #[test]
    fn explain_connack_refusals() {
        for code in [
            ConnectReturnCode::BadUserNamePassword,
            ConnectReturnCode::NotAuthorized,
        ] {
            let p = explain(&ConnectionError::ConnectionRefused(code));
            assert!(p.permanent, "{p:?}");
            assert!(p.message.contains("mqtt.username"), "{p:?}");
            assert!(p.message.contains("mqtt.password_file"), "{p:?}");
        }
        let p = explain(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadClientId,
        ));
        assert!(p.permanent && p.message.contains("mqtt.client_id"), "{p:?}");
        let p = explain(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::ServiceUnavailable,
        ));
        assert!(!p.permanent, "{p:?}");
    }

    #[test]
    fn explain_outages_as_transient() {
        use std::io::ErrorKind as K;
        for kind in [
            K::ConnectionRefused,
            K::ConnectionReset,
            K::TimedOut,
            K::UnexpectedEof,
            K::NotFound,
        ] {
            let p = explain(&ConnectionError::Io(std::io::Error::new(kind, "x")));
            assert!(!p.permanent, "{kind:?}: {p:?}");
        }
        let p = explain(&ConnectionError::Io(std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        )));
        assert!(!p.permanent && p.message.contains("lookup"), "{p:?}");
        for e in [
            ConnectionError::NetworkTimeout,
            ConnectionError::MqttState(StateError::ConnectionAborted),
            ConnectionError::MqttState(StateError::Io(std::io::Error::new(
                K::ConnectionReset,
                "reset",
            ))),
        ] {
            let p = explain(&e);
            assert!(!p.permanent, "{e}: {p:?}");
        }
    }

    #[test]
    fn explain_never_shows_a_password() {
        // rumqttc's errors carry no password; make sure ours add none even via Debug of a packet.
        let mut connect = rumqttc::Connect::new("cam");
        connect.login = Some(rumqttc::Login::new("user", "hunter2"));
        let e = ConnectionError::NotConnAck(rumqttc::Packet::Connect(connect));
        let p = explain(&e);
        assert!(!p.message.contains("hunter2"), "{p:?}");
    }
}
