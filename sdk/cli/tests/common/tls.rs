//! A throw-away PKI made with the `openssl` CLI, and a real mosquitto with a TLS listener on a
//! free loopback port that requires a client certificate and a user name and password.
//!
//! The PKI: a CA, an unrelated "wrong" CA, a server certificate for `127.0.0.1` / `localhost`
//! signed by the CA, a client certificate signed by the CA and one signed by the wrong CA.

use std::path::{Path, PathBuf};
use std::process::Command;

use ocellus::transport::{Credentials, Secret, TlsSettings};

use super::broker::{Mosquitto, Subscriber};

/// The user name the broker accepts.
pub const USER: &str = "ocellus-test";
/// Its password.
pub const PASSWORD: &str = "pw-7Hq2-not-a-real-secret";

pub const LEAF_CLIENT: &str = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n";
const LEAF_SERVER: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n";

/// The files of the throw-away PKI, all PEM, in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// An unrelated CA.
    pub wrong_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Signed by `ca`.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Signed by `wrong_ca`: a client certificate the broker does not trust.
    pub untrusted_client_cert: PathBuf,
    pub untrusted_client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed by the TLS tests (Debian: openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `name.pem` / `name.key` (ECDSA P-256).
fn make_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf `name.pem` / `name.key` signed by the CA `ca`, with the extensions `ext`.
pub fn make_leaf(dir: &Path, name: &str, serial: u32, ca: &str, cn: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &serial.to_string(),
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

impl Pki {
    /// Make the PKI in `dir`.
    pub fn create(dir: &Path) -> Pki {
        make_ca(dir, "ca", "ocellus test CA");
        make_ca(dir, "wrong-ca", "an unrelated CA");
        make_leaf(dir, "server", 1001, "ca", "localhost", LEAF_SERVER);
        make_leaf(
            dir,
            "client",
            1002,
            "ca",
            "ocellus-test-client",
            LEAF_CLIENT,
        );
        make_leaf(
            dir,
            "untrusted-client",
            1003,
            "wrong-ca",
            "ocellus-test-client",
            LEAF_CLIENT,
        );
        let p = |n: &str| dir.join(n);
        Pki {
            dir: dir.to_path_buf(),
            ca: p("ca.pem"),
            wrong_ca: p("wrong-ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            untrusted_client_cert: p("untrusted-client.pem"),
            untrusted_client_key: p("untrusted-client.key"),
        }
    }

    /// Mutual TLS with the trusted client certificate.
    pub fn client_settings(&self) -> TlsSettings {
        TlsSettings {
            ca_file: Some(self.ca.clone()),
            client_cert: Some(self.client_cert.clone()),
            client_key: Some(self.client_key.clone()),
        }
    }
}

/// The right user name and password.
pub fn credentials() -> Credentials {
    Credentials {
        username: USER.into(),
        password: Some(Secret::new(PASSWORD)),
    }
}

/// mosquitto with a TLS listener on 127.0.0.1: the server certificate of [`Pki`], client
/// certificates signed by its CA required (unless started with [`TlsBroker::start_with`]
/// `(false)`), and [`USER`] / [`PASSWORD`] required (no anonymous clients).
pub struct TlsBroker {
    pub pki: Pki,
    pub broker: Mosquitto,
    /// The file whose first line is [`PASSWORD`], for `mqtt.password_file`.
    pub password_file: PathBuf,
}

impl TlsBroker {
    /// Client certificate and password required.
    pub fn start() -> TlsBroker {
        TlsBroker::start_with(true)
    }

    /// Password required; a client certificate only if `require_certificate`.
    pub fn start_with(require_certificate: bool) -> TlsBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::create(dir.path());
        let passwd = dir.path().join("mosquitto.passwd");
        let out = Command::new("mosquitto_passwd")
            .arg("-c")
            .arg("-b")
            .arg(&passwd)
            .arg(USER)
            .arg(PASSWORD)
            .output()
            .expect("mosquitto_passwd not installed (Debian: mosquitto)");
        assert!(
            out.status.success(),
            "mosquitto_passwd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let password_file = dir.path().join("client-password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let (ca, cert, key) = (
            pki.ca.clone(),
            pki.server_cert.clone(),
            pki.server_key.clone(),
        );
        let broker = Mosquitto::start_with_config(
            move |port| {
                format!(
                    "per_listener_settings false\nallow_anonymous false\npassword_file {}\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\nuse_identity_as_username false\n",
                    passwd.display(),
                    ca.display(),
                    cert.display(),
                    key.display()
                )
            },
            dir,
        );
        TlsBroker {
            pki,
            broker,
            password_file,
        }
    }

    pub fn port(&self) -> u16 {
        self.broker.port
    }

    /// `mqtts://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port())
    }

    /// The `[mqtt]` keys of a config that reaches this broker (mutual TLS and the password
    /// file), without the section header.
    pub fn mqtt_toml(&self) -> String {
        format!(
            "url = \"{}\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\nusername = \"{USER}\"\npassword_file = \"{}\"\n",
            self.url(),
            self.pki.ca.display(),
            self.pki.client_cert.display(),
            self.pki.client_key.display(),
            self.password_file.display()
        )
    }

    /// An independent `mosquitto_sub` (QoS 1) on `topic`, over TLS with the trusted client
    /// certificate and the password.
    pub fn subscriber(&self, topic: &str) -> Subscriber {
        let (ca, cert, key) = (
            self.pki.ca.display().to_string(),
            self.pki.client_cert.display().to_string(),
            self.pki.client_key.display().to_string(),
        );
        Subscriber::start_with_args(
            self.port(),
            topic,
            &[
                "--cafile", &ca, "--cert", &cert, "--key", &key, "-u", USER, "-P", PASSWORD,
            ],
        )
    }

    /// mosquitto's log, for messages when a test fails.
    pub fn log(&self) -> String {
        self.broker.log()
    }
}
