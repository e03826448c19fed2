//! A local stand-in for Azure IoT Hub: a real mosquitto (TLS) behind a "front" that plays IoT
//! Hub's authentication (the SAS token in the MQTT CONNECT, or, in X.509 mode, a client
//! certificate whose subject CN is the device id), relays accepted connections to mosquitto and
//! cuts them off when their token expires, plus a [`Service`] that plays the hub's side of the
//! device twin, direct methods, telemetry and cloud-to-device messages.
//!
//! mosquitto 2.0.11 routes `$iothub/...` topics like any other: clients may publish to them and a
//! subscription that names the `$iothub` level explicitly (`$iothub/twin/res/#`, `$iothub/#`)
//! receives them (only `#` / `+` at the first level do not match `$` topics), so no topic
//! rewriting is needed.
//!
//! Also here, for the AWS stand-in too: TLS helpers (rustls with the `ring` provider), a JSON
//! merge patch, URL encoding and a tiny MQTT client runner for the service sides.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Map, Value};

use super::broker::Mosquitto;
use super::tls::Pki;

/// The IoT Hub host name in connection strings, tokens and user names.
pub const HUB_HOST: &str = "ocellus-test.azure-devices.net";
/// The API version IoT Hub expects in the MQTT user name.
pub const API_VERSION: &str = "2021-04-12";
/// The largest CONNECT packet the front reads.
pub const MAX_CONNECT: usize = 1 << 20;
/// How long the front waits for a device's TLS handshake and CONNECT.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Plaintext the relay holds per direction before it stops reading that side.
const RELAY_CAP: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// TLS helpers (rustls, `ring` provider, no process-wide default)

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let certs = CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!certs.is_empty(), "no certificate in {}", path.display());
    certs
}

pub fn load_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A client configuration trusting only `ca`, with a client certificate if `client` is given.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca) {
        roots.add(c).expect("CA certificate");
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    Arc::new(match client {
        Some((cert, key)) => b
            .with_client_auth_cert(load_certs(cert), load_key(key))
            .expect("client certificate and key"),
        None => b.with_no_client_auth(),
    })
}

/// A server configuration that REQUIRES a client certificate chaining to `ca` (webpki client
/// verifier: chain, validity, clientAuth EKU); a client with none, or an untrusted one, fails
/// the handshake.
pub fn server_config_client_auth(cert: &Path, key: &Path, ca: &Path) -> Arc<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca) {
        roots.add(c).expect("CA certificate");
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("client certificate verifier");
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(load_certs(cert), load_key(key))
            .expect("server certificate and key"),
    )
}

pub fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(load_certs(cert), load_key(key))
            .expect("server certificate and key"),
    )
}

/// rumqttc options for `127.0.0.1:port` over TLS with `tls`.
pub fn mqtt_options(
    client_id: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(tls),
    ))
    .set_keep_alive(Duration::from_secs(30))
    .set_max_packet_size(MAX_CONNECT, MAX_CONNECT)
    .set_clean_session(true);
    o
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// JSON merge patch (RFC 7386): objects recurse, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Percent-encoding of everything but the unreserved characters (`A-Z a-z 0-9 - _ . ~`).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Form-style URL decoding: `%XX` is a byte, `+` is a space; a bad escape or non-UTF-8 is `None`.
pub fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of `key` in the query string after the last `?` of `topic` (raw, not decoded).
pub fn query_param<'a>(topic: &'a str, key: &str) -> Option<&'a str> {
    let q = &topic[topic.rfind('?')? + 1..];
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Wait until `pred()` is `Some`, polling every 10 ms, or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut pred: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = pred() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// A service-side MQTT client: a rumqttc client on a background thread that hands every incoming
// PUBLISH to a handler, which may queue replies.

/// Replies queued by a handler: (topic, payload), published at QoS 1 by the client's thread.
pub type Outbox = VecDeque<(String, Vec<u8>)>;

pub struct ServiceClient {
    pub client: rumqttc::Client,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServiceClient {
    /// Connect, subscribe to `filters` (QoS 1) and wait for the SUBACK (every filter granted).
    /// `handle(topic, payload, outbox)` runs on the client's thread for every message.
    pub fn start(
        opts: rumqttc::MqttOptions,
        filters: &[String],
        what: &str,
        mut handle: impl FnMut(&str, &[u8], &mut Outbox) + Send + 'static,
    ) -> ServiceClient {
        let (client, mut connection) = rumqttc::Client::new(opts, 1000);
        let stop = Arc::new(AtomicBool::new(false));
        // None: waiting; Some(Ok): subscribed; Some(Err): refused
        let ready: Arc<Mutex<Option<Result<(), String>>>> = Arc::new(Mutex::new(None));
        let thread = {
            let (client, stop, ready) = (client.clone(), stop.clone(), ready.clone());
            let filters: Vec<rumqttc::SubscribeFilter> = filters
                .iter()
                .map(|f| rumqttc::SubscribeFilter::new(f.clone(), rumqttc::QoS::AtLeastOnce))
                .collect();
            std::thread::spawn(move || {
                let mut outbox: Outbox = VecDeque::new();
                while !stop.load(Ordering::Relaxed) {
                    while let Some((t, p)) = outbox.pop_front() {
                        if client
                            .try_publish(t.clone(), rumqttc::QoS::AtLeastOnce, false, p.clone())
                            .is_err()
                        {
                            outbox.push_front((t, p));
                            break;
                        }
                    }
                    // a long timeout: cancelling rumqttc's poll while it connects (TLS handshake
                    // and CONNACK) drops that connection; [`ServiceClient::stop`] wakes it with a
                    // DISCONNECT
                    match connection.recv_timeout(Duration::from_secs(1)) {
                        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {
                            let _ = client.try_subscribe_many(filters.clone());
                        }
                        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)))) => {
                            let refused = ack
                                .return_codes
                                .iter()
                                .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                            *ready.lock().unwrap() = Some(if refused {
                                Err(format!("SUBACK refused a filter: {:?}", ack.return_codes))
                            } else {
                                Ok(())
                            });
                        }
                        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                            handle(&p.topic, &p.payload, &mut outbox);
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            let mut r = ready.lock().unwrap();
                            if r.is_none() {
                                *r = Some(Err(format!("connection failed: {e}")));
                            }
                            drop(r);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        Err(rumqttc::RecvTimeoutError::Timeout) => {}
                        Err(rumqttc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
        };
        let r = poll_until(Duration::from_secs(10), || ready.lock().unwrap().clone());
        match r {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("{what}: {e}"),
            None => panic!("{what}: no SUBACK within 10 s"),
        }
        ServiceClient {
            client,
            stop,
            thread: Some(thread),
        }
    }

    /// Publish at QoS 1 from the caller's thread.
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .expect("service publish");
    }

    /// Disconnect and join the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServiceClient {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The hub

/// One CONNECT the front has seen.
#[derive(Clone, Debug)]
pub struct ConnectRecord {
    pub client_id: String,
    pub username: String,
    pub protocol_level: u8,
    /// `se` of the SAS token, when it could be read.
    pub token_expiry: Option<u64>,
    pub accepted: bool,
    /// Why it was refused ("ok" when accepted), or why the relay ended ("ok; relay: …").
    pub reason: String,
    pub at: SystemTime,
    /// The front cut the connection because the token's `se` passed.
    pub closed_for_expiry: bool,
    /// The CONNECT carried a password (set in both modes; in X.509 mode any or none is fine).
    pub password_present: bool,
    /// The subject CN of the verified client certificate (X.509 mode; `None` in SAS mode or
    /// when it could not be read).
    pub client_cert_cn: Option<String>,
}

/// How the front authenticates devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// A SAS token in the CONNECT's password; no client certificate.
    Sas,
    /// X.509 CA authentication: a client certificate chaining to the hub's CA is required in
    /// the TLS handshake and its subject CN must be the device id; the password is ignored.
    X509,
}

pub struct Hub {
    device: String,
    key: Vec<u8>,
    mode: AuthMode,
    /// Serialises the making of device certificates ([`Hub::device_cert`]).
    certs: Mutex<()>,
    front: Front,
    service: Service,
    pki: Pki,
    // last: dropped after the front and the service have stopped
    mosquitto: Mosquitto,
}

impl Hub {
    /// Start mosquitto (TLS listener on a free port, server certificate from a fresh [`Pki`],
    /// anonymous clients allowed) and the front, and connect the [`Service`].
    pub fn start(device_id: &str) -> Hub {
        Hub::start_mode(device_id, AuthMode::Sas)
    }

    /// Like [`Hub::start`], but devices authenticate with X.509 (CA-signed) certificates: the
    /// front's TLS requires a client certificate chaining to the [`Pki`]'s CA, the subject CN of
    /// that certificate (read from its DER, see [`subject_cn`]) must be the device id (else
    /// CONNACK 5), the CONNECT still needs the right client id and user name, any password or
    /// none is accepted, and there is no token to expire. Certificates: [`Hub::device_cert`],
    /// [`Hub::other_device_cert`].
    pub fn start_x509(device_id: &str) -> Hub {
        Hub::start_mode(device_id, AuthMode::X509)
    }

    fn start_mode(device_id: &str, mode: AuthMode) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::create(dir.path());
        let (ca, cert, key) = (
            pki.ca.display().to_string(),
            pki.server_cert.display().to_string(),
            pki.server_key.display().to_string(),
        );
        let mosquitto = Mosquitto::start_with_config(
            move |port| {
                format!(
                    "per_listener_settings false\nallow_anonymous true\nmax_queued_messages 1000000\n\
                     listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
                     require_certificate false\n"
                )
            },
            dir,
        );
        let mut hub_key = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut hub_key)
            .expect("random key");
        let server = match mode {
            AuthMode::Sas => server_config(&pki.server_cert, &pki.server_key),
            AuthMode::X509 => server_config_client_auth(&pki.server_cert, &pki.server_key, &pki.ca),
        };
        let front = Front::start(FrontConfig {
            device: device_id.to_owned(),
            key: hub_key.clone(),
            mode,
            server,
            upstream: client_config(&pki.ca, None),
            broker_port: mosquitto.port,
        });
        let service = Service::start(device_id, mosquitto.port, client_config(&pki.ca, None));
        Hub {
            device: device_id.to_owned(),
            key: hub_key,
            mode,
            certs: Mutex::new(()),
            front,
            service,
            pki,
            mosquitto,
        }
    }

    pub fn device_id(&self) -> &str {
        &self.device
    }

    /// `HostName=…;DeviceId=…;SharedAccessKey=…` for the device; in X.509 mode
    /// `HostName=…;DeviceId=…;x509=true`.
    pub fn connection_string(&self) -> String {
        match self.mode {
            AuthMode::Sas => format!(
                "HostName={HUB_HOST};DeviceId={};SharedAccessKey={}",
                self.device,
                base64::engine::general_purpose::STANDARD.encode(&self.key)
            ),
            AuthMode::X509 => format!("HostName={HUB_HOST};DeviceId={};x509=true", self.device),
        }
    }

    /// The device's shared access key (made in both modes; the front checks tokens signed with
    /// it only in SAS mode).
    pub fn key(&self) -> Vec<u8> {
        self.key.clone()
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// A device certificate and its key (PEM paths): CN = the device id, signed by the
    /// [`Pki`]'s CA, clientAuth EKU. Made on first use (in either mode), then the same files.
    pub fn device_cert(&self) -> (PathBuf, PathBuf) {
        self.cert_for("hub-device", 4001, &self.device)
    }

    /// A valid certificate of the same CA for another device, CN `someone-else`.
    pub fn other_device_cert(&self) -> (PathBuf, PathBuf) {
        self.cert_for("hub-other-device", 4002, "someone-else")
    }

    fn cert_for(&self, name: &str, serial: u32, cn: &str) -> (PathBuf, PathBuf) {
        let _one_at_a_time = self.certs.lock().unwrap();
        let dir = &self.pki.dir;
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        if !(cert.is_file() && key.is_file()) {
            super::tls::make_leaf(dir, name, serial, "ca", cn, super::tls::LEAF_CLIENT);
        }
        (cert, key)
    }

    /// `mqtts://127.0.0.1:{front port}`: where the device connects (the front, not mosquitto).
    pub fn endpoint(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.front.port)
    }

    pub fn front_port(&self) -> u16 {
        self.front.port
    }

    /// mosquitto's own port (behind the front; for harness checks only).
    pub fn broker_port(&self) -> u16 {
        self.mosquitto.port
    }

    /// The CA the device must trust.
    pub fn ca_file(&self) -> PathBuf {
        self.pki.ca.clone()
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Every CONNECT the front has seen, in order.
    pub fn connects(&self) -> Vec<ConnectRecord> {
        self.front.shared.records.lock().unwrap().clone()
    }

    /// Connections whose TLS handshake the front failed (no or an untrusted client certificate
    /// in X.509 mode, …), in order: `"{peer}: {error}"`. They never reach
    /// [`Hub::connects`].
    pub fn tls_failures(&self) -> Vec<String> {
        self.front.shared.tls_failures.lock().unwrap().clone()
    }

    /// The hub's service side, connected to mosquitto.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// mosquitto's log and the front's notes, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "--- mosquitto log ---\n{}--- front ---\n{}",
            self.mosquitto.log(),
            self.front.shared.notes.lock().unwrap()
        )
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.front.stop();
        self.service.client.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The front

struct FrontConfig {
    device: String,
    key: Vec<u8>,
    mode: AuthMode,
    server: Arc<rustls::ServerConfig>,
    upstream: Arc<rustls::ClientConfig>,
    broker_port: u16,
}

struct FrontShared {
    cfg: FrontConfig,
    stop: AtomicBool,
    records: Mutex<Vec<ConnectRecord>>,
    tls_failures: Mutex<Vec<String>>,
    notes: Mutex<String>,
}

impl FrontShared {
    fn note(&self, s: &str) {
        let t = unix_now();
        let mut n = self.notes.lock().unwrap();
        n.push_str(&format!("{t:.3}: {s}\n"));
    }
}

struct Front {
    port: u16,
    shared: Arc<FrontShared>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Front {
    fn start(cfg: FrontConfig) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").expect("front: bind");
        let port = listener.local_addr().expect("front: address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(FrontShared {
            cfg,
            stop: AtomicBool::new(false),
            records: Mutex::new(Vec::new()),
            tls_failures: Mutex::new(Vec::new()),
            notes: Mutex::new(String::new()),
        });
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (shared, conns) = (shared.clone(), conns.clone());
            std::thread::spawn(move || {
                while !shared.stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((tcp, peer)) => {
                            let s = shared.clone();
                            let h = std::thread::spawn(move || {
                                let r = serve(&s, tcp, peer);
                                s.note(&format!("{peer}: {r}"));
                            });
                            let mut c = conns.lock().unwrap();
                            c.retain(|h| !h.is_finished());
                            c.push(h);
                        }
                        Err(e) if would_block(&e) => std::thread::sleep(Duration::from_millis(5)),
                        Err(e) => {
                            shared.note(&format!("accept: {e}"));
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        };
        Front {
            port,
            shared,
            accept: Some(accept),
            conns,
        }
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        let conns: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        for c in conns {
            let _ = c.join();
        }
    }
}

/// One side of the relay: a non-blocking TCP socket and its rustls connection.
struct Side {
    tcp: TcpStream,
    tls: rustls::Connection,
    /// The peer closed (close_notify or TCP EOF) and every byte it sent has been taken.
    closed: bool,
}

impl Side {
    fn new(tcp: TcpStream, tls: impl Into<rustls::Connection>) -> io::Result<Side> {
        tcp.set_nonblocking(true)?;
        tcp.set_nodelay(true)?;
        let mut tls = tls.into();
        tls.set_buffer_limit(Some(4 << 20));
        Ok(Side {
            tcp,
            tls,
            closed: false,
        })
    }

    /// Read TLS from the socket and move the plaintext into `into` while it holds less than
    /// `cap` bytes. Returns whether anything happened.
    fn read_into(&mut self, into: &mut Vec<u8>, cap: usize) -> io::Result<bool> {
        let mut progress = false;
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..32 {
            loop {
                if into.len() >= cap || self.closed {
                    return Ok(progress);
                }
                match self.tls.reader().read(&mut buf) {
                    Ok(0) => self.closed = true,
                    Ok(n) => {
                        into.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => self.closed = true,
                    Err(e) => return Err(e),
                }
            }
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => {
                    // EOF (or close_notify seen): the reader hands out what is left, then
                    // reports the close
                    progress = true;
                    if let Err(e) = self.tls.process_new_packets() {
                        return Err(io::Error::other(e));
                    }
                }
                Ok(_) => {
                    progress = true;
                    if let Err(e) = self.tls.process_new_packets() {
                        let _ = self.flush();
                        return Err(io::Error::other(e));
                    }
                }
                Err(e) if would_block(&e) => return Ok(progress),
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Hand as much of `from` to rustls as it takes.
    fn write_from(&mut self, from: &mut Vec<u8>) -> io::Result<bool> {
        if from.is_empty() {
            return Ok(false);
        }
        let n = self.tls.writer().write(from)?;
        from.drain(..n);
        Ok(n > 0)
    }

    /// Write pending TLS records to the socket until it would block.
    fn flush(&mut self) -> io::Result<bool> {
        let mut progress = false;
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => break,
                Ok(_) => progress = true,
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Flush everything within `wait` (for a last packet before closing).
    fn flush_all(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while self.tls.wants_write() && Instant::now() < deadline {
            if self.flush().is_err() {
                return;
            }
            if self.tls.wants_write() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Serve one device connection; the result is a note for the log.
fn serve(shared: &FrontShared, tcp: TcpStream, peer: std::net::SocketAddr) -> String {
    let tls = match rustls::ServerConnection::new(shared.cfg.server.clone()) {
        Ok(t) => t,
        Err(e) => return format!("TLS set-up: {e}"),
    };
    let mut dev = match Side::new(tcp, tls) {
        Ok(s) => s,
        Err(e) => return format!("socket: {e}"),
    };
    // the TLS handshake and the CONNECT
    let mut inbuf = Vec::new();
    let deadline = Instant::now() + CONNECT_WAIT;
    let connect = loop {
        if shared.stop.load(Ordering::Relaxed) {
            return "stopped before CONNECT".into();
        }
        if Instant::now() > deadline {
            return "no CONNECT in time".into();
        }
        match connect_packet(&inbuf) {
            Frame::Incomplete => {}
            Frame::Bad(why) => break Err(why),
            Frame::Complete(n) => break Ok(parse_connect(&inbuf[..n])),
        }
        let progress = match dev
            .read_into(&mut inbuf, MAX_CONNECT + 8)
            .and_then(|a| dev.flush().map(|b| a || b))
        {
            Ok(p) => p,
            Err(e) => {
                if dev.tls.is_handshaking() {
                    let why = format!("TLS handshake: {e}");
                    shared
                        .tls_failures
                        .lock()
                        .unwrap()
                        .push(format!("{peer}: {e}"));
                    return why;
                }
                return format!("before CONNECT: {e}");
            }
        };
        if dev.closed && connect_packet(&inbuf) == Frame::Incomplete {
            if dev.tls.is_handshaking() {
                shared
                    .tls_failures
                    .lock()
                    .unwrap()
                    .push(format!("{peer}: closed during the handshake"));
            }
            return "closed before a complete CONNECT".into();
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let mut rec = ConnectRecord {
        client_id: String::new(),
        username: String::new(),
        protocol_level: 0,
        token_expiry: None,
        accepted: false,
        reason: String::new(),
        at: SystemTime::now(),
        closed_for_expiry: false,
        password_present: false,
        client_cert_cn: None,
    };
    // X.509 mode: the end-entity certificate rustls verified in the handshake
    let peer_cert: Option<Vec<u8>> = match shared.cfg.mode {
        AuthMode::Sas => None,
        AuthMode::X509 => dev
            .tls
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec()),
    };
    rec.client_cert_cn = peer_cert.as_deref().and_then(|d| subject_cn(d).ok());
    // the CONNACK return code to send (0: accepted), or None to close without one
    let code: Option<u8> = match connect {
        Ok(Ok(c)) => {
            let v = check_connect(&shared.cfg, &c, unix_now(), peer_cert.as_deref());
            rec.password_present = c.password.is_some();
            rec.client_id = c.client_id;
            rec.username = c.username.unwrap_or_default();
            rec.protocol_level = c.level;
            rec.token_expiry = v.expiry;
            rec.accepted = v.code == 0;
            rec.reason = v.reason;
            Some(v.code)
        }
        Ok(Err(bad)) => {
            rec.client_id = bad.client_id.unwrap_or_default();
            rec.protocol_level = bad.level.unwrap_or(0);
            rec.reason = bad.reason;
            // an unknown protocol level gets CONNACK 1; other malformed packets just a close
            bad.level.filter(|l| !matches!(l, 3..=5)).map(|_| 1)
        }
        Err(why) => {
            rec.reason = format!("not a valid CONNECT: {why}");
            None
        }
    };
    let expiry = rec.token_expiry;
    let reason = rec.reason.clone();
    let index = {
        let mut r = shared.records.lock().unwrap();
        r.push(rec);
        r.len() - 1
    };
    if code != Some(0) {
        if let Some(code) = code {
            let _ = dev.tls.writer().write_all(&[0x20, 0x02, 0x00, code]);
        }
        dev.tls.send_close_notify();
        dev.flush_all(Duration::from_millis(500));
        let _ = dev.tcp.shutdown(Shutdown::Both);
        return format!("refused (CONNACK {code:?}): {reason}");
    }
    let outcome = relay(shared, &mut dev, inbuf, expiry.unwrap_or(u64::MAX));
    if matches!(outcome, RelayEnd::Expired) {
        shared.records.lock().unwrap()[index].closed_for_expiry = true;
    }
    let note = format!("relay ended: {outcome:?}");
    shared.records.lock().unwrap()[index].reason = format!("ok; {note}");
    note
}

#[derive(Debug)]
enum RelayEnd {
    Expired,
    Stopped,
    DeviceClosed,
    BrokerClosed,
    DeviceError(String),
    BrokerError(String),
}

/// Relay between the device and mosquitto until either side closes, the token expires (the
/// device's connection is then dropped with no DISCONNECT) or the front stops.
fn relay(shared: &FrontShared, dev: &mut Side, mut d2b: Vec<u8>, expiry: u64) -> RelayEnd {
    // the original CONNECT (and anything the device sent after it) goes first, unchanged
    let tcp = match TcpStream::connect_timeout(
        &([127, 0, 0, 1], shared.cfg.broker_port).into(),
        Duration::from_secs(5),
    ) {
        Ok(t) => t,
        Err(e) => return RelayEnd::BrokerError(format!("connect: {e}")),
    };
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let conn = match rustls::ClientConnection::new(shared.cfg.upstream.clone(), name) {
        Ok(c) => c,
        Err(e) => return RelayEnd::BrokerError(format!("TLS: {e}")),
    };
    let mut brk = match Side::new(tcp, conn) {
        Ok(s) => s,
        Err(e) => return RelayEnd::BrokerError(e.to_string()),
    };
    let mut b2d: Vec<u8> = Vec::new();
    let end = loop {
        if shared.stop.load(Ordering::Relaxed) {
            break RelayEnd::Stopped;
        }
        if unix_now() >= expiry as f64 {
            break RelayEnd::Expired;
        }
        let mut progress = false;
        match dev.read_into(&mut d2b, RELAY_CAP) {
            Ok(p) => progress |= p,
            Err(e) => break RelayEnd::DeviceError(e.to_string()),
        }
        match brk.write_from(&mut d2b) {
            Ok(p) => progress |= p,
            Err(e) => break RelayEnd::BrokerError(e.to_string()),
        }
        match brk.read_into(&mut b2d, RELAY_CAP) {
            Ok(p) => progress |= p,
            Err(e) => break RelayEnd::BrokerError(e.to_string()),
        }
        match dev.write_from(&mut b2d) {
            Ok(p) => progress |= p,
            Err(e) => break RelayEnd::DeviceError(e.to_string()),
        }
        match brk.flush() {
            Ok(p) => progress |= p,
            Err(e) => break RelayEnd::BrokerError(e.to_string()),
        }
        match dev.flush() {
            Ok(p) => progress |= p,
            Err(e) => break RelayEnd::DeviceError(e.to_string()),
        }
        if dev.closed && d2b.is_empty() {
            break RelayEnd::DeviceClosed;
        }
        if brk.closed && b2d.is_empty() {
            break RelayEnd::BrokerClosed;
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    match end {
        RelayEnd::Expired => {
            // abrupt, as IoT Hub does: no DISCONNECT, no close_notify
            let _ = dev.tcp.shutdown(Shutdown::Both);
            let _ = brk.tcp.shutdown(Shutdown::Both);
        }
        _ => {
            brk.flush_all(Duration::from_millis(200));
            dev.flush_all(Duration::from_millis(200));
            let _ = dev.tcp.shutdown(Shutdown::Both);
            let _ = brk.tcp.shutdown(Shutdown::Both);
        }
    }
    end
}

// ---------------------------------------------------------------------------------------------
// The CONNECT packet

#[derive(Debug, PartialEq)]
pub enum Frame {
    /// Need more bytes.
    Incomplete,
    /// A whole CONNECT packet of this many bytes (fixed header included) is there.
    Complete(usize),
    /// Not a CONNECT, or too big.
    Bad(String),
}

/// Whether `buf` starts with a whole CONNECT packet.
pub fn connect_packet(buf: &[u8]) -> Frame {
    let Some(&first) = buf.first() else {
        return Frame::Incomplete;
    };
    if first != 0x10 {
        return Frame::Bad(format!("first byte {first:#04x}, not CONNECT (0x10)"));
    }
    let mut len: usize = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Frame::Incomplete;
        };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if len > MAX_CONNECT {
                return Frame::Bad(format!("CONNECT of {len} bytes (limit {MAX_CONNECT})"));
            }
            let total = 2 + i + len;
            return if buf.len() >= total {
                Frame::Complete(total)
            } else {
                Frame::Incomplete
            };
        }
    }
    Frame::Bad("remaining length longer than 4 bytes".into())
}

/// A parsed CONNECT.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    pub protocol_name: String,
    pub level: u8,
    pub flags: u8,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<(String, Vec<u8>)>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

/// A CONNECT that could not be parsed: what was learnt before the problem.
#[derive(Debug)]
pub struct BadConnect {
    pub level: Option<u8>,
    pub client_id: Option<String>,
    pub reason: String,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn binary(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn string(&mut self) -> Result<String, String> {
        let b = self.binary()?;
        String::from_utf8(b.to_vec()).map_err(|_| "a string is not UTF-8".to_owned())
    }
    fn varint(&mut self) -> Result<usize, String> {
        let mut v = 0usize;
        for i in 0..4 {
            let b = self.u8()?;
            v |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("variable byte integer longer than 4 bytes".into())
    }
}

/// Parse a whole CONNECT packet (fixed header included) of protocol level 3 (MQTT 3.1), 4
/// (3.1.1) or 5 (properties skipped); the protocol name is returned, not checked.
pub fn parse_connect(packet: &[u8]) -> Result<Connect, BadConnect> {
    let mut level = None;
    let mut client_id = None;
    let r = (|| -> Result<Connect, String> {
        let mut c = Cursor { b: packet, at: 0 };
        if c.u8()? != 0x10 {
            return Err("not a CONNECT".into());
        }
        let len = c.varint()?;
        if c.at + len != packet.len() {
            return Err("remaining length does not match the packet".into());
        }
        let protocol_name = c.string()?;
        let lv = c.u8()?;
        level = Some(lv);
        if !matches!(lv, 3..=5) {
            return Err(format!("unknown protocol level {lv} ({protocol_name:?})"));
        }
        let flags = c.u8()?;
        if flags & 1 != 0 {
            return Err("reserved CONNECT flag set".into());
        }
        let keep_alive = c.u16()?;
        if lv == 5 {
            let n = c.varint()?;
            c.take(n)?;
        }
        let id = c.string()?;
        client_id = Some(id.clone());
        let will = if flags & 0x04 != 0 {
            if lv == 5 {
                let n = c.varint()?;
                c.take(n)?;
            }
            let t = c.string()?;
            Some((t, c.binary()?.to_vec()))
        } else {
            None
        };
        let username = if flags & 0x80 != 0 {
            Some(c.string()?)
        } else {
            None
        };
        let password = if flags & 0x40 != 0 {
            Some(c.binary()?.to_vec())
        } else {
            None
        };
        if c.at != packet.len() {
            return Err(format!("{} bytes after the payload", packet.len() - c.at));
        }
        Ok(Connect {
            protocol_name,
            level: lv,
            flags,
            keep_alive,
            client_id: id,
            will,
            username,
            password,
        })
    })();
    r.map_err(|reason| BadConnect {
        level,
        client_id,
        reason: format!("malformed CONNECT: {reason}"),
    })
}

struct Verdict {
    /// CONNACK return code: 0 accepted.
    code: u8,
    reason: String,
    expiry: Option<u64>,
}

/// IoT Hub's checks on a CONNECT; `peer_cert`: the DER of the device's verified certificate
/// (X.509 mode).
fn check_connect(cfg: &FrontConfig, c: &Connect, now: f64, peer_cert: Option<&[u8]>) -> Verdict {
    let mut expiry = None;
    let (code, reason) = (|| {
        if c.level != 4 || c.protocol_name != "MQTT" {
            return (
                1,
                format!(
                    "protocol {:?} level {} (IoT Hub wants \"MQTT\" 4, MQTT 3.1.1)",
                    c.protocol_name, c.level
                ),
            );
        }
        if c.client_id != cfg.device {
            return (
                2,
                format!(
                    "client id {:?} is not the device id {:?}",
                    c.client_id, cfg.device
                ),
            );
        }
        let want_user = format!("{HUB_HOST}/{}/?api-version={API_VERSION}", cfg.device);
        match &c.username {
            Some(u) if *u == want_user => {}
            Some(u) => return (4, format!("user name {u:?}, expected {want_user:?}")),
            None => return (4, "no user name".to_owned()),
        }
        if cfg.mode == AuthMode::X509 {
            // the TLS handshake verified the chain; the CN names the device; no token
            let Some(der) = peer_cert else {
                return (5, "no client certificate (X.509 mode)".to_owned());
            };
            return match subject_cn(der) {
                Ok(cn) if cn == cfg.device => (0, "ok".to_owned()),
                Ok(cn) => (
                    5,
                    format!(
                        "certificate CN {cn:?} is not the device id {:?}",
                        cfg.device
                    ),
                ),
                Err(e) => (5, format!("certificate CN unreadable: {e}")),
            };
        }
        let Some(pw) = &c.password else {
            return (5, "no password (SAS token)".to_owned());
        };
        let Ok(pw) = std::str::from_utf8(pw) else {
            return (5, "the password is not UTF-8".to_owned());
        };
        let Some(fields) = pw.strip_prefix("SharedAccessSignature ") else {
            return (
                5,
                "the password does not start with \"SharedAccessSignature \"".to_owned(),
            );
        };
        let mut map: HashMap<&str, &str> = HashMap::new();
        for kv in fields.split('&') {
            let Some((k, v)) = kv.split_once('=') else {
                return (5, format!("token field {kv:?} has no '='"));
            };
            if map.insert(k, v).is_some() {
                return (5, format!("token field {k:?} twice"));
            }
        }
        let (Some(sr), Some(sig), Some(se)) = (map.get("sr"), map.get("sig"), map.get("se")) else {
            return (5, format!("token lacks sr, sig or se: {fields:?}"));
        };
        let Ok(se_n) = se.parse::<u64>() else {
            return (5, format!("se {se:?} is not unix seconds"));
        };
        expiry = Some(se_n);
        let want_sr = format!("{HUB_HOST}/devices/{}", cfg.device);
        match url_decode(sr) {
            Some(d) if d.eq_ignore_ascii_case(&want_sr) => {}
            Some(d) => return (5, format!("sr {d:?} (sent {sr:?}), expected {want_sr:?}")),
            None => return (5, format!("sr {sr:?} is not URL-encoded properly")),
        }
        if (se_n as f64) <= now {
            return (5, format!("token expired: se {se_n} <= now {now:.0}"));
        }
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &cfg.key);
        let tag = ring::hmac::sign(&k, format!("{sr}\n{se}").as_bytes());
        let want_sig = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        match url_decode(sig) {
            Some(d) if d == want_sig => {}
            Some(d) => {
                return (
                    5,
                    format!(
                        "signature mismatch: got {d:?} (sent {sig:?}), expected {want_sig:?} over {sr:?}\\n{se}"
                    ),
                );
            }
            None => return (5, format!("sig {sig:?} is not URL-encoded properly")),
        }
        (0, "ok".to_owned())
    })();
    Verdict {
        code,
        reason,
        expiry,
    }
}

// ---------------------------------------------------------------------------------------------
// The certificate's subject CN (a minimal DER walk)

/// One DER TLV at the start of `b`: (tag, contents, the rest).
fn der_tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, r) = b.split_first().ok_or("DER: truncated tag")?;
    let (&l0, r) = r.split_first().ok_or("DER: truncated length")?;
    let (len, r) = if l0 < 0x80 {
        (usize::from(l0), r)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || r.len() < n {
            return Err(format!("DER: bad length form {l0:#04x}"));
        }
        let len = r[..n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x));
        (len, &r[n..])
    };
    if r.len() < len {
        return Err(format!("DER: {len} bytes wanted, {} there", r.len()));
    }
    Ok((tag, &r[..len], &r[len..]))
}

fn der_expect<'a>(b: &'a [u8], want: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    let (tag, body, rest) = der_tlv(b)?;
    if tag != want {
        return Err(format!("DER: {what}: tag {tag:#04x}, expected {want:#04x}"));
    }
    Ok((body, rest))
}

/// The subject's commonName (OID 2.5.4.3) of a DER X.509 certificate: Certificate →
/// tbsCertificate → skip [0] version, serial, signature, issuer, validity → subject (RDN SETs of
/// type/value SEQUENCEs). UTF8String, PrintableString, IA5String, T61String (read as UTF-8) and
/// BMPString values are read; no CN, or more than one, is an error.
pub fn subject_cn(der: &[u8]) -> Result<String, String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let (cert, _) = der_expect(der, 0x30, "Certificate")?;
    let (tbs, _) = der_expect(cert, 0x30, "tbsCertificate")?;
    let mut r = tbs;
    if r.first() == Some(&0xa0) {
        r = der_tlv(r)?.2;
    }
    r = der_expect(r, 0x02, "serialNumber")?.1;
    r = der_expect(r, 0x30, "signature")?.1;
    r = der_expect(r, 0x30, "issuer")?.1;
    r = der_expect(r, 0x30, "validity")?.1;
    let (mut subject, _) = der_expect(r, 0x30, "subject")?;
    let mut found = Vec::new();
    while !subject.is_empty() {
        let (mut rdn, rest) = der_expect(subject, 0x31, "RelativeDistinguishedName")?;
        subject = rest;
        while !rdn.is_empty() {
            let (atv, rest) = der_expect(rdn, 0x30, "AttributeTypeAndValue")?;
            rdn = rest;
            let (oid, value) = der_expect(atv, 0x06, "attribute type")?;
            if oid != CN {
                continue;
            }
            let (tag, v, _) = der_tlv(value)?;
            let s = match tag {
                0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(v.to_vec())
                    .map_err(|_| "DER: the CN is not UTF-8".to_owned())?,
                0x1e => {
                    if v.len() % 2 != 0 {
                        return Err("DER: odd-length BMPString".into());
                    }
                    let units: Vec<u16> = v
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    String::from_utf16(&units)
                        .map_err(|_| "DER: the CN is not UTF-16".to_owned())?
                }
                t => return Err(format!("DER: CN of string type {t:#04x}")),
            };
            found.push(s);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err("no CN in the subject".into()),
        n => Err(format!("{n} CNs in the subject: {found:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The service side

#[derive(Default)]
struct TwinState {
    desired: Value,
    desired_version: u64,
    reported: Value,
    reported_version: u64,
    gets: usize,
    /// rid → (status, payload)
    method_responses: HashMap<String, (u16, Value)>,
    telemetry: Vec<(String, Vec<u8>)>,
}

/// The hub's service side: device twin, direct methods, telemetry and C2D messages.
pub struct Service {
    device: String,
    state: Arc<Mutex<TwinState>>,
    rid: AtomicU64,
    client: ServiceClient,
}

fn with_version(doc: &Value, v: u64) -> Value {
    let mut d = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    d.insert("$version".into(), v.into());
    Value::Object(d)
}

fn method_payload(raw: &[u8]) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()))
}

impl Service {
    fn start(device: &str, port: u16, tls: Arc<rustls::ClientConfig>) -> Service {
        let state = Arc::new(Mutex::new(TwinState {
            desired: Value::Object(Map::new()),
            desired_version: 1,
            reported: Value::Object(Map::new()),
            reported_version: 1,
            ..TwinState::default()
        }));
        let events = format!("devices/{device}/messages/events");
        let filters = [
            "$iothub/twin/GET/#".to_owned(),
            "$iothub/twin/PATCH/properties/reported/#".to_owned(),
            "$iothub/methods/res/#".to_owned(),
            format!("{events}/#"),
        ];
        let st = state.clone();
        let handle = move |topic: &str, payload: &[u8], out: &mut Outbox| {
            let rid = query_param(topic, "$rid").unwrap_or("").to_owned();
            let mut s = st.lock().unwrap();
            if topic.starts_with("$iothub/twin/GET/") {
                s.gets += 1;
                let doc = serde_json::json!({
                    "desired": with_version(&s.desired, s.desired_version),
                    "reported": with_version(&s.reported, s.reported_version),
                });
                out.push_back((
                    format!("$iothub/twin/res/200/?$rid={rid}"),
                    serde_json::to_vec(&doc).expect("json"),
                ));
            } else if topic.starts_with("$iothub/twin/PATCH/properties/reported/") {
                match serde_json::from_slice::<Value>(payload) {
                    Ok(v @ Value::Object(_)) => {
                        merge_patch(&mut s.reported, &v);
                        s.reported_version += 1;
                        out.push_back((
                            format!(
                                "$iothub/twin/res/204/?$rid={rid}&$version={}",
                                s.reported_version
                            ),
                            Vec::new(),
                        ));
                    }
                    _ => out.push_back((
                        format!("$iothub/twin/res/400/?$rid={rid}"),
                        br#"{"message":"the reported patch is not a JSON object"}"#.to_vec(),
                    )),
                }
            } else if let Some(rest) = topic.strip_prefix("$iothub/methods/res/") {
                let status = rest
                    .split('/')
                    .next()
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(0);
                s.method_responses
                    .insert(rid, (status, method_payload(payload)));
            } else if topic == events || topic.starts_with(&format!("{events}/")) {
                s.telemetry.push((topic.to_owned(), payload.to_vec()));
            }
        };
        let client = ServiceClient::start(
            mqtt_options("hub-service", port, tls),
            &filters,
            "the hub's service client",
            handle,
        );
        Service {
            device: device.to_owned(),
            state,
            rid: AtomicU64::new(0),
            client,
        }
    }

    /// Replace the desired document (without `$version`) used to answer twin GETs; the desired
    /// version goes up by one (as IoT Hub does on any change). Nothing is published.
    pub fn set_desired(&self, doc: Value) {
        let mut s = self.state.lock().unwrap();
        s.desired = doc;
        s.desired_version += 1;
    }

    /// The desired document and its version.
    pub fn desired(&self) -> (Value, u64) {
        let s = self.state.lock().unwrap();
        (s.desired.clone(), s.desired_version)
    }

    /// Merge `patch` into desired, bump the version and publish
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}` with the patch plus `$version`.
    pub fn patch_desired(&self, patch: Value) -> u64 {
        let v = {
            let mut s = self.state.lock().unwrap();
            merge_patch(&mut s.desired, &patch);
            s.desired_version += 1;
            s.desired_version
        };
        self.client.publish(
            &format!("$iothub/twin/PATCH/properties/desired/?$version={v}"),
            serde_json::to_vec(&with_version(&patch, v)).expect("json"),
        );
        v
    }

    /// The reported document merged from the device's PATCHes so far, with `$version`.
    pub fn reported(&self) -> Value {
        let s = self.state.lock().unwrap();
        with_version(&s.reported, s.reported_version)
    }

    /// Wait until `pred(reported)` holds; the document, or `None` at the timeout.
    pub fn wait_reported(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        poll_until(timeout, || {
            let r = self.reported();
            pred(&r).then_some(r)
        })
    }

    /// Number of twin GET requests received.
    pub fn twin_gets(&self) -> usize {
        self.state.lock().unwrap().gets
    }

    /// Invoke a direct method and wait for the device's answer: (status, payload: parsed JSON,
    /// `Null` if empty, the raw text as a string if not JSON), or `None` at the timeout.
    pub fn call_method(
        &self,
        name: &str,
        payload: Value,
        timeout: Duration,
    ) -> Option<(u16, Value)> {
        let rid = format!("{:x}", self.rid.fetch_add(1, Ordering::Relaxed) + 1);
        self.client.publish(
            &format!("$iothub/methods/POST/{name}/?$rid={rid}"),
            serde_json::to_vec(&payload).expect("json"),
        );
        poll_until(timeout, || {
            self.state.lock().unwrap().method_responses.remove(&rid)
        })
    }

    /// Publish a cloud-to-device message on
    /// `devices/{device}/messages/devicebound/{url-encoded k=v&…}`.
    pub fn send_c2d(&self, payload: &[u8], properties: &[(&str, &str)]) {
        let bag: Vec<String> = properties
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect();
        self.client.publish(
            &format!(
                "devices/{}/messages/devicebound/{}",
                self.device,
                bag.join("&")
            ),
            payload.to_vec(),
        );
    }

    /// Telemetry received on `devices/{device}/messages/events/#`: (topic, payload), in order.
    pub fn telemetry(&self) -> Vec<(String, Vec<u8>)> {
        self.state.lock().unwrap().telemetry.clone()
    }

    /// The number of telemetry messages so far (cheaper than [`Service::telemetry`]).
    pub fn telemetry_count(&self) -> usize {
        self.state.lock().unwrap().telemetry.len()
    }

    pub fn wait_telemetry(
        &self,
        timeout: Duration,
        pred: impl Fn(&[(String, Vec<u8>)]) -> bool,
    ) -> bool {
        poll_until(timeout, || {
            pred(&self.state.lock().unwrap().telemetry).then_some(())
        })
        .is_some()
    }
}
