//! A local stand-in for AWS IoT Core: a real mosquitto whose TLS listener requires a client
//! certificate signed by the test CA (the certificate's CN is the user name, as a thing name
//! is in AWS), an ACL in the style of an AWS IoT policy, and a [`Shadow`] service client that
//! plays the Device Shadow service for named shadows (and the classic shadow, as name `""`).
//!
//! mosquitto 2.0.11 routes `$aws/...` topics like any other; a subscription must name the `$aws`
//! level explicitly (`#` and `+` at the first level do not match `$` topics), in ACLs too.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::broker::Mosquitto;
use super::hub::{Outbox, ServiceClient, client_config, merge_patch, mqtt_options, poll_until};
use super::tls::Pki;

/// The CN (and so the user name) of the service client, which may read and write everything.
pub const SERVICE_CN: &str = "aws-service";

/// A client certificate `{name}.pem` / `{name}.key` in the PKI's directory with the subject
/// `CN={cn}`, signed by the PKI's CA (`ca.pem` / `ca.key`), made with the openssl CLI as
/// [`Pki::create`] makes its own.
pub fn make_client_cert(pki: &Pki, name: &str, cn: &str, serial: u32) -> (PathBuf, PathBuf) {
    super::tls::make_leaf(&pki.dir, name, serial, "ca", cn, super::tls::LEAF_CLIENT);
    (
        pki.dir.join(format!("{name}.pem")),
        pki.dir.join(format!("{name}.key")),
    )
}

pub struct AwsIot {
    thing: String,
    device_cert: PathBuf,
    device_key: PathBuf,
    shadow: Shadow,
    pki: Pki,
    // last: dropped after the shadow service has stopped
    mosquitto: Mosquitto,
}

impl AwsIot {
    /// mosquitto with a TLS listener that requires a client certificate signed by the PKI's CA,
    /// takes the certificate's CN as the user name, allows no anonymous clients and applies an
    /// ACL like an AWS IoT policy: a thing may read and write only `$aws/things/{thing}/shadow/#`,
    /// `ocellus/{thing}/#` and `dt/ocellus/{thing}/#`; [`SERVICE_CN`] may read and write
    /// everything. A device certificate with CN = `thing_name` is made, and the [`Shadow`]
    /// service connects.
    pub fn start(thing_name: &str) -> AwsIot {
        assert!(
            !thing_name.is_empty()
                && thing_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c)),
            "thing name {thing_name:?}: AWS allows [a-zA-Z0-9:_-]"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::create(dir.path());
        let (device_cert, device_key) = make_client_cert(&pki, "thing", thing_name, 2001);
        let (service_cert, service_key) = make_client_cert(&pki, "aws-service", SERVICE_CN, 2002);
        let acl = dir.path().join("acl");
        std::fs::write(
            &acl,
            format!(
                "# every client (the thing's certificate CN is %u)\n\
                 pattern readwrite $aws/things/%u/shadow/#\n\
                 pattern readwrite ocellus/%u/#\n\
                 pattern readwrite dt/ocellus/%u/#\n\
                 \n\
                 user {SERVICE_CN}\n\
                 topic readwrite #\n\
                 topic readwrite $aws/#\n"
            ),
        )
        .expect("write acl");
        let (ca, cert, key) = (
            pki.ca.display().to_string(),
            pki.server_cert.display().to_string(),
            pki.server_key.display().to_string(),
        );
        let acl = acl.display().to_string();
        // not `max_queued_messages 0` (no limit): with it, mosquitto 2.0.11 drops the connection
        // of a client whose PUBLISH the ACL denies ("Bad socket read/write ... Unknown error")
        // instead of discarding the message. `log_type all` logs each denied PUBLISH.
        let mosquitto = Mosquitto::start_with_config(
            move |port| {
                format!(
                    "per_listener_settings false\nallow_anonymous false\nacl_file {acl}\n\
                     max_queued_messages 1000000\n\
                     listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
                     require_certificate true\nuse_identity_as_username true\nlog_type all\n"
                )
            },
            dir,
        );
        let shadow = Shadow::start(
            thing_name,
            mosquitto.port,
            client_config(&pki.ca, Some((&service_cert, &service_key))),
        );
        AwsIot {
            thing: thing_name.to_owned(),
            device_cert,
            device_key,
            shadow,
            pki,
            mosquitto,
        }
    }

    pub fn thing_name(&self) -> &str {
        &self.thing
    }

    /// `mqtts://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.mosquitto.port)
    }

    pub fn port(&self) -> u16 {
        self.mosquitto.port
    }

    pub fn ca_file(&self) -> PathBuf {
        self.pki.ca.clone()
    }

    pub fn device_cert(&self) -> PathBuf {
        self.device_cert.clone()
    }

    pub fn device_key(&self) -> PathBuf {
        self.device_key.clone()
    }

    /// A certificate and key signed by a CA the broker does not trust.
    pub fn untrusted_cert(&self) -> (PathBuf, PathBuf) {
        (
            self.pki.untrusted_client_cert.clone(),
            self.pki.untrusted_client_key.clone(),
        )
    }

    /// Another certificate signed by the trusted CA, with CN = `cn` (another thing).
    pub fn make_cert(&self, name: &str, cn: &str, serial: u32) -> (PathBuf, PathBuf) {
        make_client_cert(&self.pki, name, cn, serial)
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    pub fn shadow(&self) -> &Shadow {
        &self.shadow
    }

    /// mosquitto's log, for failure messages.
    pub fn log(&self) -> String {
        self.mosquitto.log()
    }
}

impl Drop for AwsIot {
    fn drop(&mut self) {
        self.shadow.client.stop();
    }
}

/// One shadow document.
#[derive(Clone, Debug, Default)]
struct Doc {
    desired: Value,
    reported: Value,
    version: u64,
}

#[derive(Default)]
struct ShadowState {
    /// (thing, shadow name; "" for the classic shadow) → document
    docs: HashMap<(String, String), Doc>,
    messages: Vec<(String, Vec<u8>)>,
    requests: Vec<(String, Vec<u8>)>,
}

/// The keys of `desired` whose value differs from `reported` (recursing into objects), as AWS
/// computes a shadow's delta.
pub fn delta(desired: &Value, reported: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(d) = desired.as_object() else {
        return out;
    };
    for (k, v) in d {
        let r = reported.get(k);
        match (v, r) {
            (Value::Object(_), Some(r @ Value::Object(_))) => {
                let sub = delta(v, r);
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            _ => {
                if r != Some(v) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    out
}

fn now_secs() -> u64 {
    super::hub::unix_now() as u64
}

fn non_empty(v: &Value) -> bool {
    v.as_object().is_some_and(|m| !m.is_empty())
}

/// `$aws/things/T/shadow/name/S/{op}` or `$aws/things/T/shadow/{op}` → (T, S or "", op).
fn parse_shadow_topic(topic: &str) -> Option<(String, String, String)> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once("/shadow/")?;
    if let Some(named) = rest.strip_prefix("name/") {
        let (name, op) = named.split_once('/')?;
        Some((thing.into(), name.into(), op.into()))
    } else {
        Some((thing.into(), String::new(), rest.into()))
    }
}

fn prefix(thing: &str, shadow: &str) -> String {
    if shadow.is_empty() {
        format!("$aws/things/{thing}/shadow")
    } else {
        format!("$aws/things/{thing}/shadow/name/{shadow}")
    }
}

fn rejected(out: &mut Outbox, topic: String, code: u16, message: &str, token: Option<&Value>) {
    let mut r = json!({"code": code, "message": message, "timestamp": now_secs()});
    if let Some(t) = token {
        r["clientToken"] = t.clone();
    }
    out.push_back((topic, serde_json::to_vec(&r).expect("json")));
}

/// Publish `{prefix}/update/delta` if desired differs from reported.
fn push_delta(out: &mut Outbox, pre: &str, doc: &Doc, token: Option<&Value>) {
    let d = delta(&doc.desired, &doc.reported);
    if d.is_empty() {
        return;
    }
    let mut m = json!({"version": doc.version, "timestamp": now_secs(), "state": d});
    if let Some(t) = token {
        m["clientToken"] = t.clone();
    }
    out.push_back((
        format!("{pre}/update/delta"),
        serde_json::to_vec(&m).expect("json"),
    ));
}

fn handle_update(s: &mut ShadowState, thing: &str, shadow: &str, payload: &[u8], out: &mut Outbox) {
    let pre = prefix(thing, shadow);
    let req: Value = match serde_json::from_slice(payload) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return rejected(
                out,
                format!("{pre}/update/rejected"),
                400,
                "Payload contains invalid json",
                None,
            );
        }
    };
    let token = req.get("clientToken");
    let Some(state) = req.get("state").filter(|s| s.is_object()) else {
        return rejected(
            out,
            format!("{pre}/update/rejected"),
            400,
            "Missing required node: state",
            token,
        );
    };
    for part in ["desired", "reported"] {
        if let Some(v) = state.get(part)
            && !(v.is_object() || v.is_null())
        {
            return rejected(
                out,
                format!("{pre}/update/rejected"),
                400,
                &format!("State node {part} must be an object"),
                token,
            );
        }
    }
    let key = (thing.to_owned(), shadow.to_owned());
    let current = s.docs.get(&key).map(|d| d.version).unwrap_or(0);
    if let Some(v) = req.get("version").and_then(Value::as_u64)
        && v != current
    {
        return rejected(
            out,
            format!("{pre}/update/rejected"),
            409,
            "Version conflict",
            token,
        );
    }
    let doc = s.docs.entry(key).or_insert_with(|| Doc {
        desired: Value::Object(Map::new()),
        reported: Value::Object(Map::new()),
        version: 0,
    });
    for (part, target) in [
        ("desired", &mut doc.desired),
        ("reported", &mut doc.reported),
    ] {
        match state.get(part) {
            Some(Value::Null) => *target = Value::Object(Map::new()),
            Some(v) => merge_patch(target, v),
            None => {}
        }
    }
    doc.version += 1;
    let mut acc = json!({"state": state, "version": doc.version, "timestamp": now_secs()});
    if let Some(t) = token {
        acc["clientToken"] = t.clone();
    }
    out.push_back((
        format!("{pre}/update/accepted"),
        serde_json::to_vec(&acc).expect("json"),
    ));
    let doc = doc.clone();
    push_delta(out, &pre, &doc, token);
}

fn handle_get(s: &ShadowState, thing: &str, shadow: &str, payload: &[u8], out: &mut Outbox) {
    let pre = prefix(thing, shadow);
    let req: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let token = req.get("clientToken");
    let Some(doc) = s.docs.get(&(thing.to_owned(), shadow.to_owned())) else {
        let what = if shadow.is_empty() {
            format!("No shadow exists with name: '{thing}'")
        } else {
            format!("No shadow exists with name: '{shadow}'")
        };
        return rejected(out, format!("{pre}/get/rejected"), 404, &what, token);
    };
    // as AWS does, empty sections are left out
    let mut state = Map::new();
    if non_empty(&doc.desired) {
        state.insert("desired".into(), doc.desired.clone());
    }
    if non_empty(&doc.reported) {
        state.insert("reported".into(), doc.reported.clone());
    }
    let d = delta(&doc.desired, &doc.reported);
    if !d.is_empty() {
        state.insert("delta".into(), Value::Object(d));
    }
    let mut m = json!({"state": state, "version": doc.version, "timestamp": now_secs()});
    if let Some(t) = token {
        m["clientToken"] = t.clone();
    }
    out.push_back((
        format!("{pre}/get/accepted"),
        serde_json::to_vec(&m).expect("json"),
    ));
}

/// The Device Shadow service, connected as [`SERVICE_CN`].
pub struct Shadow {
    thing: String,
    state: Arc<Mutex<ShadowState>>,
    client: ServiceClient,
}

impl Shadow {
    fn start(thing: &str, port: u16, tls: Arc<rustls::ClientConfig>) -> Shadow {
        let state = Arc::new(Mutex::new(ShadowState::default()));
        let filters = [
            "$aws/things/+/shadow/name/+/update".to_owned(),
            "$aws/things/+/shadow/name/+/get".to_owned(),
            "$aws/things/+/shadow/update".to_owned(),
            "$aws/things/+/shadow/get".to_owned(),
            "ocellus/#".to_owned(),
            "dt/#".to_owned(),
        ];
        let st = state.clone();
        let handle = move |topic: &str, payload: &[u8], out: &mut Outbox| {
            let mut s = st.lock().unwrap();
            if let Some((thing, shadow, op)) = parse_shadow_topic(topic) {
                s.requests.push((topic.to_owned(), payload.to_vec()));
                match op.as_str() {
                    "update" => handle_update(&mut s, &thing, &shadow, payload, out),
                    "get" => handle_get(&s, &thing, &shadow, payload, out),
                    _ => {}
                }
            } else if topic.starts_with("ocellus/") || topic.starts_with("dt/") {
                s.messages.push((topic.to_owned(), payload.to_vec()));
            }
        };
        let client = ServiceClient::start(
            mqtt_options(SERVICE_CN, port, tls),
            &filters,
            "the shadow service client",
            handle,
        );
        Shadow {
            thing: thing.to_owned(),
            state,
            client,
        }
    }

    /// `state.reported` of the thing's shadow `shadow` ("" for the classic shadow), merged from
    /// every update so far (`{}` if none).
    pub fn reported(&self, shadow: &str) -> Value {
        let s = self.state.lock().unwrap();
        s.docs
            .get(&(self.thing.clone(), shadow.to_owned()))
            .map(|d| d.reported.clone())
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// `state.desired` of the shadow (`{}` if none).
    pub fn desired(&self, shadow: &str) -> Value {
        let s = self.state.lock().unwrap();
        s.docs
            .get(&(self.thing.clone(), shadow.to_owned()))
            .map(|d| d.desired.clone())
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// The shadow's version, `None` if it does not exist.
    pub fn version(&self, shadow: &str) -> Option<u64> {
        let s = self.state.lock().unwrap();
        s.docs
            .get(&(self.thing.clone(), shadow.to_owned()))
            .map(|d| d.version)
    }

    /// Whether the shadow `shadow` of thing `thing` exists (any thing, for ACL checks).
    pub fn exists(&self, thing: &str, shadow: &str) -> bool {
        let s = self.state.lock().unwrap();
        s.docs.contains_key(&(thing.to_owned(), shadow.to_owned()))
    }

    pub fn wait_reported(
        &self,
        shadow: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        poll_until(timeout, || {
            let r = self.reported(shadow);
            pred(&r).then_some(r)
        })
    }

    /// Merge `patch` into `state.desired` (null deletes), bump the version, and publish
    /// `{prefix}/update/accepted` (as AWS does for every accepted update) and, if some desired
    /// key differs from reported, `{prefix}/update/delta` with those keys.
    pub fn set_desired(&self, shadow: &str, patch: Value) {
        let mut out = Outbox::new();
        {
            let mut s = self.state.lock().unwrap();
            let payload = serde_json::to_vec(&json!({"state": {"desired": patch}})).expect("json");
            handle_update(&mut s, &self.thing, shadow, &payload, &mut out);
        }
        for (t, p) in out {
            self.client.publish(&t, p);
        }
    }

    /// Everything published under `ocellus/#` and `dt/#`, in arrival order.
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.state.lock().unwrap().messages.clone()
    }

    pub fn wait_messages(
        &self,
        timeout: Duration,
        pred: impl Fn(&[(String, Vec<u8>)]) -> bool,
    ) -> bool {
        poll_until(timeout, || {
            pred(&self.state.lock().unwrap().messages).then_some(())
        })
        .is_some()
    }

    /// Every shadow request (update / get, any thing) the service received: (topic, payload).
    pub fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.state.lock().unwrap().requests.clone()
    }
}
