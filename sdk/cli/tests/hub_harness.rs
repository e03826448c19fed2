//! Self-tests of the cloud stand-ins in `common::hub` (Azure IoT Hub, SAS and X.509 modes) and
//! `common::aws` (AWS IoT Core), with rumqttc as the device, SAS tokens computed by python3
//! independently of the harness's own HMAC code, and certificate CNs checked against openssl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::aws::AwsIot;
use common::hub::{
    self, API_VERSION, AuthMode, Frame, HUB_HOST, Hub, client_config, connect_packet, mqtt_options,
    parse_connect, unix_now,
};
use rumqttc::QoS;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// helpers

/// A SAS token computed by python3 (hmac, base64, urllib.parse), not by the harness.
fn sas_token(device: &str, key_b64: &str, se: u64) -> String {
    const PY: &str = r#"
import sys, hmac, hashlib, base64, urllib.parse
host, dev, key, se = sys.argv[1:5]
sr = urllib.parse.quote(f"{host}/devices/{dev}", safe="")
sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
print(f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", PY, HUB_HOST, device, key_b64, &se.to_string()])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed to compute SAS tokens independently of the harness: {e}")
        });
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn key_of(hub: &Hub) -> String {
    let cs = hub.connection_string();
    let parts: Vec<&str> = cs.split(';').collect();
    assert_eq!(parts.len(), 3, "{cs}");
    assert_eq!(parts[0], format!("HostName={HUB_HOST}"));
    assert_eq!(parts[1], format!("DeviceId={}", hub.device_id()));
    let key = parts[2].strip_prefix("SharedAccessKey=").expect(&cs);
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    assert_eq!(raw, hub.key());
    assert_eq!(raw.len(), 32);
    key.to_owned()
}

fn user_for(device: &str) -> String {
    format!("{HUB_HOST}/{device}/?api-version={API_VERSION}")
}

fn now() -> u64 {
    unix_now() as u64
}

#[derive(Default)]
struct Seen {
    /// The first CONNACK (Ok) or connection error (Err, Debug form).
    connack: Option<Result<(), String>>,
    /// The first error after the CONNACK: (unix time, Debug form).
    dropped: Option<(f64, String)>,
    publishes: Vec<(String, Vec<u8>)>,
    subacks: Vec<Vec<rumqttc::SubscribeReasonCode>>,
    pubacks: usize,
}

/// A device played by rumqttc: records what it gets; stops at the first error (no reconnect).
struct Device {
    client: rumqttc::Client,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Device {
    fn start(opts: rumqttc::MqttOptions) -> Device {
        let (client, mut conn) = rumqttc::Client::new(opts, 256);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // long: cancelling rumqttc's poll mid-connect drops the connection; Drop
                    // wakes it with a DISCONNECT
                    match conn.recv_timeout(Duration::from_secs(1)) {
                        Ok(Ok(rumqttc::Event::Incoming(p))) => {
                            let mut s = seen.lock().unwrap();
                            match p {
                                rumqttc::Packet::ConnAck(_) => s.connack = Some(Ok(())),
                                rumqttc::Packet::Publish(p) => {
                                    s.publishes.push((p.topic.clone(), p.payload.to_vec()))
                                }
                                rumqttc::Packet::SubAck(a) => s.subacks.push(a.return_codes),
                                rumqttc::Packet::PubAck(_) => s.pubacks += 1,
                                _ => {}
                            }
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            let mut s = seen.lock().unwrap();
                            if s.connack.is_none() {
                                s.connack = Some(Err(format!("{e:?}")));
                            } else {
                                s.dropped = Some((unix_now(), format!("{e:?}")));
                            }
                            break;
                        }
                        Err(rumqttc::RecvTimeoutError::Timeout) => {}
                        Err(rumqttc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
        };
        Device {
            client,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The CONNACK (Ok) or the refusal.
    fn connack(&self) -> Result<(), String> {
        hub::poll_until(T, || self.seen.lock().unwrap().connack.clone())
            .unwrap_or_else(|| Err("no CONNACK and no error in 10 s".into()))
    }

    fn subscribe(&self, filters: &[&str]) -> Vec<rumqttc::SubscribeReasonCode> {
        let n = self.seen.lock().unwrap().subacks.len();
        self.client
            .subscribe_many(
                filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce)),
            )
            .unwrap();
        hub::poll_until(T, || self.seen.lock().unwrap().subacks.get(n).cloned())
            .expect("no SUBACK in 10 s")
    }

    fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .unwrap();
    }

    /// Wait for a message whose topic satisfies `pred`; removes nothing.
    fn wait_publish(&self, pred: impl Fn(&str) -> bool) -> Option<(String, Vec<u8>)> {
        hub::poll_until(T, || {
            self.seen
                .lock()
                .unwrap()
                .publishes
                .iter()
                .find(|(t, _)| pred(t))
                .cloned()
        })
    }

    fn wait_json(&self, pred: impl Fn(&str) -> bool) -> (String, Value) {
        let (t, p) = self
            .wait_publish(pred)
            .expect("an expected message never came");
        let v = if p.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&p).unwrap_or_else(|e| panic!("{t}: {e}"))
        };
        (t, v)
    }

    fn dropped(&self, timeout: Duration) -> Option<(f64, String)> {
        hub::poll_until(timeout, || self.seen.lock().unwrap().dropped.clone())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn azure_device(hub: &Hub, client_id: &str, user: &str, token: &str) -> Device {
    let mut o = mqtt_options(
        client_id,
        hub.front_port(),
        client_config(&hub.ca_file(), None),
    );
    o.set_credentials(user, token);
    Device::start(o)
}

/// A CONNECT built by hand: protocol `name`/`level`, client id, user name and password
/// (level 5: empty properties).
fn connect_bytes(name: &str, level: u8, id: &str, user: &str, pass: &str) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    }
    let mut body = Vec::new();
    s(&mut body, name.as_bytes());
    body.push(level);
    body.push(0x80 | 0x40 | 0x02);
    body.extend_from_slice(&30u16.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    s(&mut body, id.as_bytes());
    s(&mut body, user.as_bytes());
    s(&mut body, pass.as_bytes());
    let mut p = vec![0x10];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        p.push(b);
        if len == 0 {
            break;
        }
    }
    p.extend_from_slice(&body);
    p
}

/// Send `bytes` to the front over TLS and read everything it answers until it closes.
fn raw_exchange(hub: &Hub, bytes: &[u8]) -> Vec<u8> {
    let conn = rustls::ClientConnection::new(
        client_config(&hub.ca_file(), None),
        rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    )
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", hub.front_port())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(bytes).unwrap();
    s.flush().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Azure IoT Hub

#[test]
fn azure_twin_methods_c2d_and_telemetry() {
    let t0 = Instant::now();
    let hub = Hub::start("cam-01");
    assert!(hub.endpoint().starts_with("mqtts://127.0.0.1:"));
    assert_eq!(
        hub.endpoint(),
        format!("mqtts://127.0.0.1:{}", hub.front_port())
    );
    let se = now() + 3600;
    let token = sas_token("cam-01", &key_of(&hub), se);
    let dev = azure_device(&hub, "cam-01", &user_for("cam-01"), &token);
    dev.connack()
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    let recs = hub.connects();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert!(recs[0].accepted, "{recs:?}");
    assert_eq!(recs[0].client_id, "cam-01");
    assert_eq!(recs[0].username, user_for("cam-01"));
    assert_eq!(recs[0].protocol_level, 4);
    assert_eq!(recs[0].token_expiry, Some(se));
    assert!(!recs[0].closed_for_expiry);
    assert!(recs[0].password_present);
    assert_eq!(recs[0].client_cert_cn, None);
    assert_eq!(hub.mode(), AuthMode::Sas);

    let codes = dev.subscribe(&[
        "$iothub/twin/res/#",
        "$iothub/twin/PATCH/properties/desired/#",
        "$iothub/methods/POST/#",
        "devices/cam-01/messages/devicebound/#",
    ]);
    assert!(
        codes
            .iter()
            .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure)),
        "{codes:?}"
    );

    // twin GET
    let svc = hub.service();
    svc.set_desired(json!({"fps": 10, "zones": {"door": [0, 0, 1, 1]}}));
    dev.publish("$iothub/twin/GET/?$rid=1", "");
    let (_, twin) = dev.wait_json(|t| t == "$iothub/twin/res/200/?$rid=1");
    assert_eq!(twin["desired"]["fps"], 10);
    assert_eq!(twin["desired"]["$version"], 2, "{twin}");
    assert_eq!(twin["reported"]["$version"], 1, "{twin}");
    assert_eq!(svc.twin_gets(), 1);

    // reported PATCH: merged, 204 with the new version
    dev.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=2",
        r#"{"fw": "1.0", "state": {"a": 1, "b": 2}}"#,
    );
    dev.wait_publish(|t| t == "$iothub/twin/res/204/?$rid=2&$version=2")
        .expect("204 for rid 2");
    dev.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=3",
        r#"{"state": {"a": null, "c": 3}}"#,
    );
    dev.wait_publish(|t| t == "$iothub/twin/res/204/?$rid=3&$version=3")
        .expect("204 for rid 3");
    let r = svc
        .wait_reported(T, |r| r["$version"] == 3)
        .expect("reported version 3");
    assert_eq!(
        r,
        json!({"fw": "1.0", "state": {"b": 2, "c": 3}, "$version": 3})
    );
    dev.publish("$iothub/twin/PATCH/properties/reported/?$rid=4", "[1, 2]");
    dev.wait_publish(|t| t == "$iothub/twin/res/400/?$rid=4")
        .expect("400 for a non-object patch");
    assert_eq!(svc.reported()["$version"], 3);

    // desired PATCH
    let v = svc.patch_desired(json!({"fps": 15, "zones": null}));
    assert_eq!(v, 3);
    let (_, p) = dev.wait_json(|t| t == "$iothub/twin/PATCH/properties/desired/?$version=3");
    assert_eq!(p, json!({"fps": 15, "zones": null, "$version": 3}));
    assert_eq!(svc.desired(), (json!({"fps": 15}), 3));
    dev.publish("$iothub/twin/GET/?$rid=5", "");
    let (_, twin) = dev.wait_json(|t| t == "$iothub/twin/res/200/?$rid=5");
    assert_eq!(twin["desired"], json!({"fps": 15, "$version": 3}));
    assert_eq!(twin["reported"]["state"], json!({"b": 2, "c": 3}));
    assert_eq!(svc.twin_gets(), 2);

    // direct methods: the device answers from this thread
    std::thread::scope(|s| {
        let call = s.spawn(|| svc.call_method("reboot", json!({"delay": 1}), T));
        let (topic, body) = dev.wait_json(|t| t.starts_with("$iothub/methods/POST/reboot/"));
        assert_eq!(body, json!({"delay": 1}));
        let rid = hub::query_param(&topic, "$rid").unwrap().to_owned();
        dev.publish(
            &format!("$iothub/methods/res/200/?$rid={rid}"),
            r#"{"ok": true}"#,
        );
        assert_eq!(call.join().unwrap(), Some((200, json!({"ok": true}))));

        let call = s.spawn(|| svc.call_method("nope", Value::Null, T));
        let (topic, _) = dev.wait_json(|t| t.starts_with("$iothub/methods/POST/nope/"));
        let rid = hub::query_param(&topic, "$rid").unwrap().to_owned();
        dev.publish(
            &format!("$iothub/methods/res/404/?$rid={rid}"),
            "no such method",
        );
        assert_eq!(
            call.join().unwrap(),
            Some((404, Value::String("no such method".into())))
        );
    });
    // nobody answers: None at the timeout
    assert_eq!(
        svc.call_method("silent", json!({}), Duration::from_millis(300)),
        None
    );

    // cloud-to-device
    svc.send_c2d(b"hello", &[("k", "v w"), ("$.ct", "application/json")]);
    let (t, p) = dev
        .wait_publish(|t| t.starts_with("devices/cam-01/messages/devicebound/"))
        .expect("C2D");
    assert_eq!(
        t,
        "devices/cam-01/messages/devicebound/k=v%20w&%24.ct=application%2Fjson"
    );
    assert_eq!(p, b"hello");

    // telemetry
    dev.publish("devices/cam-01/messages/events/", r#"{"n": 1}"#);
    dev.publish(
        "devices/cam-01/messages/events/kind=det&%24.ct=application%2Fjson",
        r#"{"n": 2}"#,
    );
    assert!(
        svc.wait_telemetry(T, |m| m.len() == 2),
        "{:?}",
        svc.telemetry()
    );
    let tel = svc.telemetry();
    assert_eq!(tel[0].0, "devices/cam-01/messages/events/");
    assert_eq!(tel[0].1, br#"{"n": 1}"#);
    assert_eq!(
        tel[1].0,
        "devices/cam-01/messages/events/kind=det&%24.ct=application%2Fjson"
    );
    drop(dev);
    eprintln!("azure round trips: {:?}", t0.elapsed());
}

#[test]
fn azure_refusals_are_recorded_with_the_right_connack() {
    let hub = Hub::start("cam-01");
    let key = key_of(&hub);
    let se = now() + 3600;
    let good = sas_token("cam-01", &key, se);
    let refused = |id: &str, user: &str, token: &str| -> String {
        let d = azure_device(&hub, id, user, token);
        let r = d.connack();
        r.expect_err("the front accepted a bad CONNECT")
    };

    // a token signed with another key
    let other_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let e = refused(
        "cam-01",
        &user_for("cam-01"),
        &sas_token("cam-01", other_key, se),
    );
    assert!(e.contains("NotAuthorized"), "{e}");
    // another device id (its own user name and a token for it, made with this key)
    let e = refused(
        "cam-02",
        &user_for("cam-02"),
        &sas_token("cam-02", &key, se),
    );
    assert!(e.contains("BadClientId"), "{e}");
    // the right client id with a token for another device
    let e = refused(
        "cam-01",
        &user_for("cam-01"),
        &sas_token("cam-02", &key, se),
    );
    assert!(e.contains("NotAuthorized"), "{e}");
    // a user name without the API version
    let e = refused("cam-01", &format!("{HUB_HOST}/cam-01/"), &good);
    assert!(e.contains("BadUserNamePassword"), "{e}");
    // expired
    let e = refused(
        "cam-01",
        &user_for("cam-01"),
        &sas_token("cam-01", &key, now() - 10),
    );
    assert!(e.contains("NotAuthorized"), "{e}");
    // not a SAS token
    let e = refused("cam-01", &user_for("cam-01"), "hunter2");
    assert!(e.contains("NotAuthorized"), "{e}");
    // MQTT 3.1 and MQTT 5, by hand
    let v31 = raw_exchange(
        &hub,
        &connect_bytes("MQIsdp", 3, "cam-01", &user_for("cam-01"), &good),
    );
    assert_eq!(v31, [0x20, 0x02, 0x00, 0x01]);
    let v5 = raw_exchange(
        &hub,
        &connect_bytes("MQTT", 5, "cam-01", &user_for("cam-01"), &good),
    );
    assert_eq!(v5, [0x20, 0x02, 0x00, 0x01]);
    // not MQTT at all, and a CONNECT claiming to be over 1 MiB: closed with no CONNACK
    assert_eq!(raw_exchange(&hub, b"GET / HTTP/1.1\r\n\r\n"), b"");
    assert_eq!(raw_exchange(&hub, &[0x10, 0xff, 0xff, 0xff, 0x7f]), b"");

    // the fields in another order, by hand over the same TLS: accepted (CONNACK 0 from mosquitto)
    let (sr, rest) = good
        .strip_prefix("SharedAccessSignature ")
        .unwrap()
        .split_once('&')
        .unwrap();
    let reordered = format!("SharedAccessSignature {rest}&{sr}");
    let ok = raw_exchange(
        &hub,
        &[
            connect_bytes("MQTT", 4, "cam-01", &user_for("cam-01"), &reordered),
            vec![0xe0, 0x00], // DISCONNECT
        ]
        .concat(),
    );
    assert_eq!(ok, [0x20, 0x02, 0x00, 0x00], "{}", hub.log());

    let recs = hub.connects();
    let summary: Vec<(bool, u8, &str, &str)> = recs
        .iter()
        .map(|r| {
            (
                r.accepted,
                r.protocol_level,
                r.client_id.as_str(),
                r.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(recs.len(), 11, "{summary:#?}");
    assert!(recs[..10].iter().all(|r| !r.accepted), "{summary:#?}");
    assert!(recs[10].accepted, "{summary:#?}");
    assert!(recs[0].reason.contains("signature"), "{}", recs[0].reason);
    assert_eq!(recs[1].client_id, "cam-02");
    assert!(recs[2].reason.contains("sr"), "{}", recs[2].reason);
    assert!(recs[3].reason.contains("user name"), "{}", recs[3].reason);
    assert!(recs[4].reason.contains("expired"), "{}", recs[4].reason);
    assert!(recs[4].token_expiry.unwrap() < now());
    assert_eq!((recs[6].protocol_level, recs[7].protocol_level), (3, 5));
    assert!(recs[8].reason.contains("not a valid CONNECT"));
    assert!(recs[9].reason.contains("limit"), "{}", recs[9].reason);
    assert_eq!(recs[10].token_expiry, Some(se));
}

#[test]
fn azure_connect_parser_bounds() {
    let p = connect_bytes("MQTT", 4, "d", "u", "p");
    for cut in 0..p.len() {
        assert_eq!(connect_packet(&p[..cut]), Frame::Incomplete, "cut at {cut}");
    }
    assert_eq!(connect_packet(&p), Frame::Complete(p.len()));
    let c = parse_connect(&p).unwrap();
    assert_eq!(
        (c.client_id.as_str(), c.username.as_deref(), c.level),
        ("d", Some("u"), 4)
    );
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
    // a length field that lies: truncated strings are errors, not panics
    let mut bad = p.clone();
    let n = bad.len();
    bad[n - 2] = 0xff; // password length says 0xff01 bytes
    assert!(parse_connect(&bad).is_err());
    assert!(matches!(
        connect_packet(&[0x10, 0x80, 0x80, 0x80, 0x80]),
        Frame::Bad(_)
    ));
    assert!(matches!(connect_packet(&[0x30, 0]), Frame::Bad(_)));
    assert!(matches!(
        connect_packet(&[0x10, 0x81, 0x80, 0x40]),
        Frame::Bad(_)
    ));
}

#[test]
fn azure_front_cuts_the_connection_when_the_token_expires() {
    let hub = Hub::start("cam-01");
    let se = now() + 3;
    let token = sas_token("cam-01", &key_of(&hub), se);
    let dev = azure_device(&hub, "cam-01", &user_for("cam-01"), &token);
    dev.connack()
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    let connected = unix_now();
    let (at, why) = dev
        .dropped(Duration::from_secs(8))
        .unwrap_or_else(|| panic!("not cut off by se = {se}\n{}", hub.log()));
    eprintln!(
        "connected {:.2} s before se, cut {:.3} s after se: {why}",
        se as f64 - connected,
        at - se as f64
    );
    assert!(at >= se as f64 - 0.05, "cut at {at}, before se {se}");
    assert!(at < se as f64 + 2.0, "cut at {at}, long after se {se}");
    let rec = hub::poll_until(Duration::from_secs(2), || {
        hub.connects()
            .first()
            .filter(|r| r.closed_for_expiry)
            .cloned()
    })
    .unwrap_or_else(|| panic!("{:?}", hub.connects()));
    assert_eq!(hub.connects().len(), 1, "{:?}", hub.connects());
    assert!(rec.accepted);
    assert_eq!(rec.token_expiry, Some(se));
    // mosquitto saw the connection go without a DISCONNECT
    let gone = hub::poll_until(Duration::from_secs(2), || {
        let log = hub.log();
        log.lines()
            .find(|l| l.contains("cam-01") && l.contains("closed its connection"))
            .map(str::to_owned)
    });
    assert!(gone.is_some(), "{}", hub.log());
}

#[test]
fn azure_relay_carries_5000_qos1_messages_both_ways() {
    let hub = Hub::start("cam-01");
    let token = sas_token("cam-01", &key_of(&hub), now() + 3600);
    let dev = azure_device(&hub, "cam-01", &user_for("cam-01"), &token);
    dev.connack()
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    dev.subscribe(&["devices/cam-01/messages/devicebound/#"]);
    const N: usize = 5000;
    const C2D: usize = 2000;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..C2D {
                hub.service()
                    .send_c2d(format!("{i}").as_bytes(), &[("i", &i.to_string())]);
            }
        });
        for i in 0..N {
            dev.publish(
                "devices/cam-01/messages/events/",
                format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(i % 200)),
            );
        }
    });
    let svc = hub.service();
    let all = hub::poll_until(Duration::from_secs(20), || {
        (svc.telemetry_count() >= N && dev.seen.lock().unwrap().publishes.len() >= C2D)
            .then_some(())
    });
    let elapsed = t0.elapsed();
    let tel = svc.telemetry();
    let got: Vec<u64> = tel
        .iter()
        .map(|(_, p)| {
            serde_json::from_slice::<Value>(p).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let c2d = dev.seen.lock().unwrap().publishes.len();
    assert!(
        all.is_some(),
        "after {elapsed:?}: {} of {N} telemetry, {c2d} of {C2D} C2D\n{}",
        got.len(),
        hub.log()
    );
    assert_eq!(
        got,
        (0..N as u64).collect::<Vec<_>>(),
        "lost, duplicated or reordered"
    );
    let c2d: Vec<Vec<u8>> = dev
        .seen
        .lock()
        .unwrap()
        .publishes
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    let want: Vec<Vec<u8>> = (0..C2D).map(|i| i.to_string().into_bytes()).collect();
    assert_eq!(c2d, want);
    assert!(
        hub::poll_until(T, || (dev.seen.lock().unwrap().pubacks >= N).then_some(())).is_some(),
        "PUBACKs: {}",
        dev.seen.lock().unwrap().pubacks
    );
    eprintln!("relay: {N} telemetry + {C2D} C2D (QoS 1) in {elapsed:?}");
}

#[test]
fn azure_dropping_the_hub_stops_everything() {
    let hub = Hub::start("cam-01");
    let token = sas_token("cam-01", &key_of(&hub), now() + 3600);
    let dev = azure_device(&hub, "cam-01", &user_for("cam-01"), &token);
    dev.connack()
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    let (front, broker) = (hub.front_port(), hub.broker_port());
    let t0 = Instant::now();
    drop(hub);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(3), "drop took {took:?}");
    assert!(dev.dropped(Duration::from_secs(3)).is_some());
    assert!(TcpStream::connect(("127.0.0.1", front)).is_err());
    assert!(TcpStream::connect(("127.0.0.1", broker)).is_err());
    eprintln!("hub dropped in {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Azure IoT Hub, X.509 (CA-signed certificate) authentication

/// A device played by rumqttc over TLS with an optional client certificate; an empty `pass`
/// sends no password (rumqttc leaves the flag off).
fn x509_device(
    hub: &Hub,
    client_id: &str,
    user: &str,
    pass: &str,
    cert: Option<(&Path, &Path)>,
) -> Device {
    let mut o = mqtt_options(
        client_id,
        hub.front_port(),
        client_config(&hub.ca_file(), cert),
    );
    o.set_credentials(user, pass);
    Device::start(o)
}

/// The subject CN as openssl prints it (RFC 2253), not via the harness's DER walk.
fn openssl_cn(cert: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8(out.stdout).unwrap();
    s.trim()
        .strip_prefix("subject=")
        .and_then(|s| s.strip_prefix("CN="))
        .unwrap_or_else(|| panic!("subject {s:?}"))
        .to_owned()
}

#[test]
fn azure_x509_subject_cn_agrees_with_openssl() {
    let hub = Hub::start_x509("cam-01");
    let (dev, _) = hub.device_cert();
    let (other, _) = hub.other_device_cert();
    let pki = hub.pki();
    for (cert, want) in [
        (dev.as_path(), "cam-01"),
        (other.as_path(), "someone-else"),
        (pki.ca.as_path(), "ocellus test CA"),
        (pki.server_cert.as_path(), "localhost"),
    ] {
        assert_eq!(openssl_cn(cert), want, "{}", cert.display());
        assert_eq!(
            hub::subject_cn(&hub::load_certs(cert)[0]).as_deref(),
            Ok(want),
            "{}",
            cert.display()
        );
    }
    // the same files each time
    assert_eq!(hub.device_cert().0, dev);
    assert_eq!(hub.other_device_cert().0, other);
    // garbage and truncation are errors, not panics
    let der = hub::load_certs(&dev)[0].as_ref().to_vec();
    for cut in 0..der.len() {
        let _ = hub::subject_cn(&der[..cut]);
    }
    assert!(hub::subject_cn(&der[..der.len() / 2]).is_err());
    assert!(hub::subject_cn(b"\x30\x84\xff\xff\xff\xff").is_err());
}

#[test]
fn azure_x509_right_certificate_connects_and_twin_get_round_trips() {
    let hub = Hub::start_x509("cam-01");
    assert_eq!(hub.mode(), AuthMode::X509);
    assert_eq!(
        hub.connection_string(),
        format!("HostName={HUB_HOST};DeviceId=cam-01;x509=true")
    );
    let (cert, key) = hub.device_cert();
    let dev = x509_device(&hub, "cam-01", &user_for("cam-01"), "", Some((&cert, &key)));
    dev.connack().unwrap_or_else(|e| {
        panic!(
            "{e}
{}",
            hub.log()
        )
    });
    let recs = hub.connects();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = &recs[0];
    assert!(r.accepted, "{r:?}");
    assert_eq!(r.client_id, "cam-01");
    assert_eq!(r.username, user_for("cam-01"));
    assert_eq!(r.protocol_level, 4);
    assert!(!r.password_present, "{r:?}");
    assert_eq!(r.client_cert_cn.as_deref(), Some("cam-01"));
    assert_eq!(r.token_expiry, None);

    let codes = dev.subscribe(&["$iothub/twin/res/#"]);
    assert!(ok_codes(&codes), "{codes:?}");
    let svc = hub.service();
    svc.set_desired(json!({"fps": 12}));
    dev.publish("$iothub/twin/GET/?$rid=7", "");
    let (_, twin) = dev.wait_json(|t| t == "$iothub/twin/res/200/?$rid=7");
    assert_eq!(twin["desired"], json!({"fps": 12, "$version": 2}));
    assert_eq!(twin["reported"]["$version"], 1, "{twin}");
    assert_eq!(svc.twin_gets(), 1);
    dev.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=8",
        r#"{"auth": "x509"}"#,
    );
    dev.wait_publish(|t| t == "$iothub/twin/res/204/?$rid=8&$version=2")
        .expect("204 for rid 8");
    assert_eq!(svc.reported(), json!({"auth": "x509", "$version": 2}));
    // no token: nothing cuts the connection
    assert!(dev.dropped(Duration::from_millis(300)).is_none());
    drop(dev);

    // a password (here an expired SAS token) is ignored, not refused
    let stale = "SharedAccessSignature sr=x&sig=y&se=1";
    let dev = x509_device(
        &hub,
        "cam-01",
        &user_for("cam-01"),
        stale,
        Some((&cert, &key)),
    );
    dev.connack().unwrap_or_else(|e| {
        panic!(
            "{e}
{}",
            hub.log()
        )
    });
    let recs = hub.connects();
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(recs[1].accepted && recs[1].password_present, "{recs:?}");
    assert_eq!(recs[1].token_expiry, None);
    assert!(hub.tls_failures().is_empty(), "{:?}", hub.tls_failures());
}

#[test]
fn azure_x509_refuses_another_devices_certificate_with_connack_5() {
    let hub = Hub::start_x509("cam-01");
    let (cert, key) = hub.other_device_cert();
    let dev = x509_device(&hub, "cam-01", &user_for("cam-01"), "", Some((&cert, &key)));
    let e = dev
        .connack()
        .expect_err("another device's certificate was accepted");
    assert!(e.contains("NotAuthorized"), "{e}");
    let recs = hub.connects();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = &recs[0];
    assert!(!r.accepted, "{r:?}");
    assert!(r.reason.contains("certificate CN"), "{}", r.reason);
    assert!(r.reason.contains("someone-else"), "{}", r.reason);
    assert_eq!(r.client_cert_cn.as_deref(), Some("someone-else"));
    drop(dev);

    // the right certificate with the wrong client id or user name: refused as in SAS mode
    let (cert, key) = hub.device_cert();
    let e = x509_device(&hub, "cam-02", &user_for("cam-02"), "", Some((&cert, &key)))
        .connack()
        .expect_err("another client id was accepted");
    assert!(e.contains("BadClientId"), "{e}");
    let e = x509_device(
        &hub,
        "cam-01",
        &format!("{HUB_HOST}/cam-01/"),
        "",
        Some((&cert, &key)),
    )
    .connack()
    .expect_err("a user name without the API version was accepted");
    assert!(e.contains("BadUserNamePassword"), "{e}");
    let recs = hub.connects();
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert!(recs.iter().all(|r| !r.accepted), "{recs:?}");
    // every handshake succeeded: the refusals are MQTT's
    assert!(hub.tls_failures().is_empty(), "{:?}", hub.tls_failures());
}

#[test]
fn azure_x509_without_a_trusted_client_certificate_fails_the_handshake() {
    let hub = Hub::start_x509("cam-01");
    // no certificate, even with a SAS token that SAS mode would take
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode(hub.key());
    let token = sas_token("cam-01", &key, now() + 3600);
    let e = x509_device(&hub, "cam-01", &user_for("cam-01"), &token, None)
        .connack()
        .expect_err("a client without a certificate was accepted");
    assert!(!e.contains("ConnectionRefused"), "{e}");
    eprintln!("no certificate: {e}");
    // a certificate from another CA, CN and all
    let pki = hub.pki();
    let untrusted = (
        pki.untrusted_client_cert.as_path(),
        pki.untrusted_client_key.as_path(),
    );
    let e = x509_device(&hub, "cam-01", &user_for("cam-01"), "", Some(untrusted))
        .connack()
        .expect_err("an untrusted certificate was accepted");
    assert!(!e.contains("ConnectionRefused"), "{e}");
    eprintln!("untrusted certificate: {e}");
    let fails = hub::poll_until(T, || {
        let f = hub.tls_failures();
        (f.len() >= 2).then_some(f)
    })
    .unwrap_or_else(|| {
        panic!(
            "{:?}
{}",
            hub.tls_failures(),
            hub.log()
        )
    });
    eprintln!("front: {fails:#?}");
    assert_eq!(fails.len(), 2, "{fails:?}");
    assert!(hub.connects().is_empty(), "{:?}", hub.connects());
    // the right certificate still works
    let (cert, key) = hub.device_cert();
    x509_device(&hub, "cam-01", &user_for("cam-01"), "", Some((&cert, &key)))
        .connack()
        .unwrap_or_else(|e| {
            panic!(
                "{e}
{}",
                hub.log()
            )
        });
    assert_eq!(hub.connects().len(), 1);
    assert!(hub.connects()[0].accepted);
}

// ---------------------------------------------------------------------------------------------
// AWS IoT Core

fn aws_device(aws: &AwsIot, client_id: &str, cert: &Path, key: &Path) -> Device {
    Device::start(mqtt_options(
        client_id,
        aws.port(),
        client_config(&aws.ca_file(), Some((cert, key))),
    ))
}

fn ok_codes(codes: &[rumqttc::SubscribeReasonCode]) -> bool {
    codes
        .iter()
        .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure))
}

#[test]
fn aws_shadow_update_get_delta_and_messages() {
    let aws = AwsIot::start("cam-01");
    assert_eq!(aws.endpoint(), format!("mqtts://127.0.0.1:{}", aws.port()));
    let dev = aws_device(&aws, "cam-01", &aws.device_cert(), &aws.device_key());
    dev.connack()
        .unwrap_or_else(|e| panic!("{e}\n{}", aws.log()));
    let pre = "$aws/things/cam-01/shadow/name/cfg";
    let codes = dev.subscribe(&[&format!("{pre}/update/+"), &format!("{pre}/get/+")]);
    assert!(ok_codes(&codes), "{codes:?}\n{}", aws.log());

    // no shadow yet
    dev.publish(&format!("{pre}/get"), r#"{"clientToken":"g0"}"#);
    let (_, r) = dev.wait_json(|t| t.ends_with("/get/rejected"));
    assert_eq!(
        (r["code"].clone(), r["clientToken"].clone()),
        (json!(404), json!("g0"))
    );

    // an update from the device
    dev.publish(
        &format!("{pre}/update"),
        r#"{"state":{"reported":{"fps":10,"mode":"a","extra":1}},"clientToken":"t1"}"#,
    );
    let (_, acc) = dev.wait_json(|t| t.ends_with("/update/accepted"));
    assert_eq!(acc["version"], 1);
    assert_eq!(acc["clientToken"], "t1");
    assert_eq!(acc["state"]["reported"]["fps"], 10);
    assert_eq!(
        aws.shadow().reported("cfg"),
        json!({"fps": 10, "mode": "a", "extra": 1})
    );

    dev.publish(&format!("{pre}/get"), r#"{"clientToken":"g1"}"#);
    let (_, g) = dev.wait_json(|t| t.ends_with("/get/accepted"));
    assert_eq!(g["state"]["reported"]["fps"], 10);
    assert_eq!(g["version"], 1);
    assert_eq!(g["clientToken"], "g1");
    assert!(g["state"].get("delta").is_none(), "{g}");
    assert!(g["state"].get("desired").is_none(), "{g}");

    // the cloud changes desired: a delta with only what differs
    aws.shadow()
        .set_desired("cfg", json!({"fps": 15, "mode": "a"}));
    let (_, d) = dev.wait_json(|t| t.ends_with("/update/delta"));
    assert_eq!(d["state"], json!({"fps": 15}));
    assert_eq!(d["version"], 2);

    // the device catches up (null deletes): version 3, and no new delta
    dev.publish(
        &format!("{pre}/update"),
        r#"{"state":{"reported":{"fps":15,"extra":null}},"clientToken":"t2"}"#,
    );
    let r = aws
        .shadow()
        .wait_reported("cfg", T, |r| r["fps"] == 15)
        .expect("reported fps 15");
    assert_eq!(r, json!({"fps": 15, "mode": "a"}));
    dev.publish(&format!("{pre}/get"), r#"{"clientToken":"g2"}"#);
    let (_, g) = hub::poll_until(T, || {
        dev.seen
            .lock()
            .unwrap()
            .publishes
            .iter()
            .filter(|(t, _)| t.ends_with("/get/accepted"))
            .filter_map(|(t, p)| Some((t.clone(), serde_json::from_slice::<Value>(p).ok()?)))
            .find(|(_, v)| v["clientToken"] == "g2")
    })
    .expect("get/accepted for g2");
    assert_eq!(g["version"], 3);
    assert_eq!(g["state"]["desired"], json!({"fps": 15, "mode": "a"}));
    assert!(g["state"].get("delta").is_none(), "{g}");
    let deltas = dev
        .seen
        .lock()
        .unwrap()
        .publishes
        .iter()
        .filter(|(t, _)| t.ends_with("/update/delta"))
        .count();
    assert_eq!(deltas, 1);

    // rejected: invalid JSON, missing state, version conflict
    dev.publish(&format!("{pre}/update"), "{not json");
    let (_, rej) = dev.wait_json(|t| t.ends_with("/update/rejected"));
    assert_eq!(rej["code"], 400);
    dev.publish(
        &format!("{pre}/update"),
        r#"{"state":{"reported":{"x":1}},"version":1,"clientToken":"old"}"#,
    );
    let conflict = hub::poll_until(T, || {
        dev.seen
            .lock()
            .unwrap()
            .publishes
            .iter()
            .filter(|(t, _)| t.ends_with("/update/rejected"))
            .filter_map(|(_, p)| serde_json::from_slice::<Value>(p).ok())
            .find(|v| v["clientToken"] == "old")
    })
    .expect("a version conflict");
    assert_eq!(conflict["code"], 409);
    assert_eq!(aws.shadow().version("cfg"), Some(3));

    // telemetry under the thing's own prefixes reaches the service
    dev.publish("ocellus/cam-01/events/det", r#"{"n":1}"#);
    dev.publish("dt/ocellus/cam-01/health", r#"{"ok":true}"#);
    assert!(
        aws.shadow().wait_messages(T, |m| m.len() == 2),
        "{:?}\n{}",
        aws.shadow().messages(),
        aws.log()
    );
    let m = aws.shadow().messages();
    assert_eq!(m[0].0, "ocellus/cam-01/events/det");
    assert_eq!(m[1].0, "dt/ocellus/cam-01/health");
}

#[test]
fn aws_refuses_a_certificate_from_an_untrusted_ca_and_no_certificate() {
    let aws = AwsIot::start("cam-01");
    let (cert, key) = aws.untrusted_cert();
    let dev = aws_device(&aws, "cam-01", &cert, &key);
    let e = dev
        .connack()
        .expect_err("an untrusted certificate was accepted");
    eprintln!("untrusted certificate: {e}");
    let anon = Device::start(mqtt_options(
        "cam-01",
        aws.port(),
        client_config(&aws.ca_file(), None),
    ));
    let e = anon
        .connack()
        .expect_err("a client without a certificate was accepted");
    eprintln!("no certificate: {e}");
    // the trusted one still works
    let ok = aws_device(&aws, "cam-01", &aws.device_cert(), &aws.device_key());
    ok.connack()
        .unwrap_or_else(|e| panic!("{e}\n{}", aws.log()));
}

#[test]
fn aws_acl_keeps_a_thing_to_its_own_topics() {
    let aws = AwsIot::start("cam-01");
    let dev = aws_device(&aws, "cam-01", &aws.device_cert(), &aws.device_key());
    dev.connack()
        .unwrap_or_else(|e| panic!("{e}\n{}", aws.log()));
    let (ocert, okey) = aws.make_cert("other", "cam-02", 3001);
    let other = aws_device(&aws, "cam-02", &ocert, &okey);
    other
        .connack()
        .unwrap_or_else(|e| panic!("{e}\n{}", aws.log()));

    // subscribing to another thing's shadow: mosquitto grants the SUBACK but delivers nothing
    // there (its ACL is checked on each delivery)
    let codes = dev.subscribe(&["$aws/things/cam-02/shadow/#"]);
    eprintln!("SUBACK for another thing's shadow: {codes:?}");
    let codes = other.subscribe(&["$aws/things/cam-02/shadow/name/cfg/update/accepted"]);
    assert!(ok_codes(&codes), "{codes:?}");
    let codes = dev.subscribe(&["$aws/things/cam-01/shadow/#", "ocellus/cam-01/#"]);
    assert!(ok_codes(&codes), "{codes:?}");

    // publishing to another thing's shadow and prefix: dropped by the broker
    dev.publish(
        "$aws/things/cam-02/shadow/name/cfg/update",
        r#"{"state":{"reported":{"evil":1}}}"#,
    );
    dev.publish("ocellus/cam-02/events/det", "spoof");
    dev.publish("dt/ocellus/cam-02/x", "spoof");
    dev.publish("ocellus/cam-01/marker", "after");
    assert!(
        aws.shadow()
            .wait_messages(T, |m| m.iter().any(|(t, _)| t == "ocellus/cam-01/marker")),
        "device: {:?}\n{}",
        dev.seen.lock().unwrap().dropped,
        aws.log()
    );
    // the other thing's own update is fine, and cam-01 gets none of its responses
    other.publish(
        "$aws/things/cam-02/shadow/name/cfg/update",
        r#"{"state":{"reported":{"good":1}}}"#,
    );
    other
        .wait_publish(|t| t == "$aws/things/cam-02/shadow/name/cfg/update/accepted")
        .expect("cam-02 got its own update/accepted");
    assert!(aws.shadow().exists("cam-02", "cfg"));
    assert!(!aws.shadow().exists("cam-01", "cfg"));
    // cam-01 subscribed to that topic too: give mosquitto time to (not) deliver it
    std::thread::sleep(Duration::from_millis(300));
    let reqs = aws.shadow().requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&reqs[0].1).unwrap()["state"]["reported"],
        json!({"good": 1})
    );
    let msgs: HashSet<String> = aws.shadow().messages().into_iter().map(|m| m.0).collect();
    assert_eq!(msgs, HashSet::from(["ocellus/cam-01/marker".to_owned()]));
    let got: Vec<String> = dev
        .seen
        .lock()
        .unwrap()
        .publishes
        .iter()
        .map(|m| m.0.clone())
        .collect();
    assert!(
        got.iter().all(|t| !t.contains("cam-02")),
        "cam-01 got another thing's messages: {got:?}"
    );
    // and its own loop-back works
    assert!(got.contains(&"ocellus/cam-01/marker".to_owned()), "{got:?}");
    // the broker says why, and the device stayed connected (AWS would disconnect it)
    let log = aws.log();
    let denied = log
        .lines()
        .filter(|l| l.contains("Denied PUBLISH from cam-01"))
        .count();
    assert_eq!(denied, 3, "{log}");
    assert!(dev.seen.lock().unwrap().dropped.is_none());
}
