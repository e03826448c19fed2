//! Cloud profiles end to end, against local stand-ins made of a real mosquitto with TLS:
//! - Azure IoT Hub (`common::hub`): a TLS front that checks the SAS token like IoT Hub does and
//!   cuts the connection when the token expires, and a service client that plays the device twin,
//!   direct methods and cloud-to-device messages;
//! - AWS IoT Core (`common::aws`): mosquitto requiring a client certificate, with a per-thing ACL,
//!   and a service client that plays the named shadow.
//!
//! `ocellus run` runs vtest.avi through the real SSD; the rules are changed through the twin and
//! the events that follow change with them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::aws::AwsIot;
use common::hub::{HUB_HOST, Hub};
use ocellus::cloud::azure::ConnectionString;
use ocellus::cloud::{AzureProfile, Profile};
use ocellus::publish::{MqttSettings, Publisher};
use ocellus::transport::{Credentials, TlsSettings};

fn walkway() -> Value {
    json!({
        "line": [{"name": "walkway", "a": [0.75, 0.3], "b": [0.75, 0.75], "labels": ["person"]}],
        "zone": [{"name": "crossing", "polygon": [[0.25, 0.35], [0.75, 0.35], [0.75, 0.7], [0.25, 0.7]]}]
    })
}

/// A config for `ocellus run` on vtest.avi (looped, paced) with no rules of its own, connected
/// through `cloud` (the `[cloud]` keys).
fn config(dir: &Path, device: &str, cloud: &str) -> PathBuf {
    let text = format!(
        r#"
[device]
id = "{device}"

[source]
kind = "video"
path = "{video}"
fps = 20.0
loop = true

[model]
card = "{card}"
labels = ["person"]

[cloud]
{cloud}

[queue]
dir = "{queue}"

[health]
interval_s = 1
"#,
        video = common::footage("vtest.avi").display(),
        card = common::card_path("ssd-mobilenet-v2-coco.toml").display(),
        queue = dir.join("queue").display(),
    );
    let path = dir.join("cloud.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Run {
    child: Child,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl Run {
    fn start(config: &Path, env: &[(&str, &str)]) -> Run {
        let mut cmd = common::bin();
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .env("OCELLUS_LOG", "ocellus=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Run { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_stderr(&self, timeout: Duration, needle: &str) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGTERM, then wait for the exit.
    fn stop(mut self) -> (Option<i32>, String) {
        let pid = self.child.id();
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {pid}"))
            .status();
        let end = Instant::now() + Duration::from_secs(30);
        let mut code = None;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                code = s.code();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if code.is_none() {
            let _ = self.child.kill();
        }
        std::thread::sleep(Duration::from_millis(100));
        (code, self.stderr())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Telemetry events (type from the property bag, parsed payload) from the service's record.
fn telemetry_events(hub: &Hub, device: &str) -> Vec<(String, Value)> {
    let prefix = format!("devices/{device}/messages/events/");
    hub.service()
        .telemetry()
        .into_iter()
        .filter_map(|(topic, payload)| {
            let bag = topic.strip_prefix(&prefix)?.to_owned();
            let v: Value = serde_json::from_slice(&payload).ok()?;
            v.get("schema")?;
            Some((bag, v))
        })
        .collect()
}

#[test]
fn azure_twin_methods_and_telemetry_drive_a_running_camera() {
    let device = "cam-az-1";
    let hub = Hub::start(device);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        device,
        &format!(
            "kind = \"azure-iot-hub\"\nconnection_string_env = \"OCELLUS_TEST_AZURE_CS\"\nendpoint = \"{}\"\nca_file = \"{}\"\nsnapshots = true",
            hub.endpoint(),
            hub.ca_file().display()
        ),
    );
    let cs = hub.connection_string();
    let run = Run::start(&cfg, &[("OCELLUS_TEST_AZURE_CS", &cs)]);

    // start-up: twin GET, then the reported state with the config file's (empty) rules
    let reported = hub
        .service()
        .wait_reported(Duration::from_secs(60), |r| {
            r.pointer("/rules_status/source") == Some(&json!("config"))
        })
        .unwrap_or_else(|| panic!("no reported state\n{}\n{}", run.stderr(), hub.log()));
    assert!(hub.service().twin_gets() >= 1, "no twin GET");
    assert_eq!(reported["device"], json!(device));
    assert_eq!(reported["model"]["name"], json!("ssd-mobilenet-v2-coco"));
    assert_eq!(
        reported["methods"],
        json!(["ping", "get_config", "set_rules", "snapshot"])
    );
    let connects = hub.connects();
    assert!(
        connects.iter().any(|c| c.accepted
            && c.client_id == device
            && c.username == format!("{HUB_HOST}/{device}/?api-version=2021-04-12")
            && c.protocol_level == 4),
        "{connects:?}"
    );
    // no rules yet: no line crossings
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        telemetry_events(&hub, device)
            .iter()
            .all(|(_, e)| e["type"] != json!("line_crossed")),
        "line crossings without a line"
    );

    // a desired-property patch adds the rules: line crossings follow
    let v = hub.service().patch_desired(json!({"rules": walkway()}));
    let reported = hub
        .service()
        .wait_reported(Duration::from_secs(20), |r| {
            r.pointer("/rules_status/version") == Some(&json!(v))
        })
        .unwrap_or_else(|| panic!("patch {v} not acknowledged\n{}", run.stderr()));
    assert_eq!(reported["rules_status"]["code"], json!(200), "{reported}");
    assert_eq!(
        (&reported["rules"]["line"], &reported["rules"]["zone"]),
        (&walkway()["line"], &walkway()["zone"]),
        "reported rules are the desired ones"
    );
    let before = telemetry_events(&hub, device).len();
    assert!(
        hub.service().wait_telemetry(Duration::from_secs(60), |t| {
            t.len() > before
                && t.iter().any(|(_, p)| {
                    serde_json::from_slice::<Value>(p).is_ok_and(|e| {
                        e["type"] == json!("line_crossed") && e["rule"] == json!("walkway")
                    })
                })
        }),
        "no line crossing after the rules patch\n{}",
        run.stderr()
    );
    // every event telemetry message carries the property bag
    for (bag, e) in telemetry_events(&hub, device) {
        let props: Vec<&str> = bag.split('&').collect();
        assert!(props.contains(&"%24.ct=application%2Fjson"), "{bag}");
        assert!(props.contains(&"%24.ce=utf-8"), "{bag}");
        assert!(props.contains(&"schema=ocellus.event%2F1"), "{bag}");
        let kind = format!("type={}", e["type"].as_str().unwrap());
        assert!(props.contains(&kind.as_str()), "{bag}");
        let mid = format!("%24.mid={}", e["id"].as_str().unwrap());
        assert!(props.contains(&mid.as_str()), "{bag}");
    }

    // an invalid patch is refused, reported, and not applied
    let bad = hub.service().patch_desired(
        json!({"rules": {"line": [{"name": "bad", "a": [0.1, 0.1], "b": [2.0, 0.5]}]}}),
    );
    let reported = hub
        .service()
        .wait_reported(Duration::from_secs(20), |r| {
            r.pointer("/rules_status/version") == Some(&json!(bad))
        })
        .unwrap_or_else(|| panic!("bad patch {bad} not reported\n{}", run.stderr()));
    assert_eq!(reported["rules_status"]["code"], json!(400), "{reported}");
    let msg = reported["rules_status"]["message"].as_str().unwrap();
    assert!(msg.contains("rules.line[0].b"), "{msg}");
    assert_eq!(
        (&reported["rules"]["line"], &reported["rules"]["zone"]),
        (&walkway()["line"], &walkway()["zone"]),
        "the refused rules replaced the good ones"
    );

    // publish settings: only line crossings from now on
    let p = hub
        .service()
        .patch_desired(json!({"publish": {"event_types": ["line_crossed"]}}));
    hub.service()
        .wait_reported(Duration::from_secs(20), |r| {
            r.pointer("/publish_status/version") == Some(&json!(p))
        })
        .unwrap_or_else(|| panic!("publish patch not reported\n{}", run.stderr()));
    std::thread::sleep(Duration::from_millis(500));
    let mark = hub.service().telemetry().len();
    assert!(
        hub.service()
            .wait_telemetry(Duration::from_secs(60), |t| t.len() >= mark + 2),
        "no events after the publish patch\n{}",
        run.stderr()
    );
    std::thread::sleep(Duration::from_secs(1));
    let later: Vec<Value> = hub.service().telemetry()[mark..]
        .iter()
        .filter_map(|(_, p)| serde_json::from_slice::<Value>(p).ok())
        .filter(|e| e.get("schema").is_some())
        .collect();
    assert!(!later.is_empty());
    assert!(
        later.iter().all(|e| e["type"] == json!("line_crossed")),
        "other event types after the filter: {later:?}"
    );
    // removing the desired publish settings goes back to the config file's
    let p = hub.service().patch_desired(json!({"publish": null}));
    let reported = hub
        .service()
        .wait_reported(Duration::from_secs(20), |r| {
            r.pointer("/publish_status/version") == Some(&json!(p))
        })
        .unwrap_or_else(|| panic!("publish removal not reported\n{}", run.stderr()));
    assert_eq!(
        reported["publish"]["health_interval_s"],
        json!(1),
        "{reported}"
    );
    assert_eq!(
        reported["publish"]["event_types"].as_array().map(Vec::len),
        Some(5),
        "{reported}"
    );

    // direct methods
    let svc = hub.service();
    let (status, body) = svc
        .call_method("ping", json!({}), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        (status, &body["pong"], &body["device"]),
        (200, &json!(true), &json!(device))
    );
    let (status, body) = svc
        .call_method("get_config", Value::Null, Duration::from_secs(10))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rules"]["line"], walkway()["line"]);
    assert_eq!(body["profile"], json!("azure-iot-hub"));
    assert_eq!(body["queue"]["when_full"], json!("drop_oldest"));
    let key_b64 = cs.split("SharedAccessKey=").nth(1).unwrap();
    assert!(
        !body.to_string().contains(key_b64),
        "get_config leaked the key"
    );
    let (status, body) = svc
        .call_method(
            "set_rules",
            json!({"line": [{"name": "x", "a": [0.5, 0.5], "b": [0.5, 0.5]}]}),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("same point"),
        "{body}"
    );
    // the refusal is in the twin too, and the rules in effect did not change
    let reported = svc
        .wait_reported(Duration::from_secs(10), |r| {
            r.pointer("/rules_status/source") == Some(&json!("method"))
        })
        .unwrap_or_else(|| panic!("set_rules not reported\n{}", run.stderr()));
    assert_eq!(reported["rules_status"]["code"], json!(400), "{reported}");
    assert_eq!(reported["rules"]["line"], walkway()["line"]);
    let (status, body) = svc
        .call_method("snapshot", Value::Null, Duration::from_secs(15))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    use base64::Engine;
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(body["data"].as_str().unwrap())
        .unwrap();
    let img = image::load_from_memory(&jpeg).unwrap();
    assert_eq!(
        (img.width() as u64, img.height() as u64),
        (
            body["width"].as_u64().unwrap(),
            body["height"].as_u64().unwrap()
        )
    );
    assert!(jpeg.len() <= ocellus::deploy::SNAPSHOT_MAX_BYTES);
    let (status, body) = svc
        .call_method("reboot", Value::Null, Duration::from_secs(10))
        .unwrap();
    assert_eq!(status, 404, "{body}");

    // cloud-to-device messages are logged
    svc.send_c2d(b"hello camera", &[("origin", "test")]);
    assert!(
        run.wait_stderr(Duration::from_secs(10), "cloud-to-device message 1"),
        "C2D not logged\n{}",
        run.stderr()
    );

    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains(key_b64), "the key is in the log");
    // health went to the twin, and the stop left `offline` as status telemetry
    let reported = hub.service().reported();
    assert!(reported["health"]["queue"].is_object(), "{reported}");
    let status_topic =
        format!("devices/{device}/messages/events/%24.ct=text%2Fplain&%24.ce=utf-8&type=status");
    let statuses: Vec<String> = hub
        .service()
        .telemetry()
        .into_iter()
        .filter(|(t, _)| *t == status_topic)
        .map(|(_, p)| String::from_utf8_lossy(&p).into_owned())
        .collect();
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("online"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("offline"),
        "{statuses:?}"
    );
}

#[test]
fn snapshots_are_refused_unless_the_config_allows_them() {
    let device = "cam-az-2";
    let hub = Hub::start(device);
    let dir = tempfile::tempdir().unwrap();
    let cs_file = dir.path().join("azure.conn");
    std::fs::write(&cs_file, format!("{}\n", hub.connection_string())).unwrap();
    let cfg = config(
        dir.path(),
        device,
        &format!(
            "kind = \"azure-iot-hub\"\nconnection_string_file = \"{}\"\nendpoint = \"{}\"\nca_file = \"{}\"",
            cs_file.display(),
            hub.endpoint(),
            hub.ca_file().display()
        ),
    );
    let run = Run::start(&cfg, &[]);
    hub.service()
        .wait_reported(Duration::from_secs(60), |r| r["snapshots"] == json!(false))
        .unwrap_or_else(|| panic!("no reported state\n{}", run.stderr()));
    let (status, body) = hub
        .service()
        .call_method("snapshot", Value::Null, Duration::from_secs(10))
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("cloud.snapshots"),
        "{body}"
    );
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// `ocellus run` with `cfg` must fail at start-up (exit 2); its stderr.
fn start_up_error(cfg: &Path) -> String {
    let out = common::bin()
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn a_wrong_key_is_a_clear_start_up_error() {
    let device = "cam-az-3";
    let hub = Hub::start(device);
    let dir = tempfile::tempdir().unwrap();
    let wrong = format!(
        "HostName={HUB_HOST};DeviceId={device};SharedAccessKey={}",
        "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktISE="
    );
    let cfg = config(
        dir.path(),
        device,
        &format!(
            "kind = \"azure-iot-hub\"\nconnection_string = \"{wrong}\"\nendpoint = \"{}\"\nca_file = \"{}\"",
            hub.endpoint(),
            hub.ca_file().display()
        ),
    );
    let stderr = start_up_error(&cfg);
    assert!(stderr.contains("IoT Hub refused the device"), "{stderr}");
    assert!(stderr.contains("cloud.connection_string"), "{stderr}");
    assert!(
        !stderr.contains("d3Jvbmcta2V5"),
        "the key is in the message: {stderr}"
    );
    assert!(
        hub.connects().iter().all(|c| !c.accepted),
        "{:?}",
        hub.connects()
    );
}

/// Publisher settings for the hub stand-in with SAS tokens of `ttl`.
fn azure_settings(hub: &Hub, device: &str, queue: &Path, ttl: Duration) -> MqttSettings {
    let connection = ConnectionString::parse(&hub.connection_string()).unwrap();
    let port: u16 = hub.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    MqttSettings {
        client_id: connection.client_id(),
        tls: Some(TlsSettings {
            ca_file: Some(hub.ca_file()),
            client_cert: None,
            client_key: None,
        }),
        credentials: Some(Credentials {
            username: connection.username(),
            password: None,
        }),
        profile: Profile::Azure(Arc::new(AzureProfile {
            connection,
            sas_ttl: ttl,
        })),
        ..MqttSettings::new("127.0.0.1", port, device, queue)
    }
}

use common::line_event as event;

#[test]
fn sas_tokens_are_renewed_before_the_hub_cuts_the_connection_and_no_event_is_lost() {
    let device = "cam-az-4";
    let hub = Hub::start(device);
    let dir = tempfile::tempdir().unwrap();
    // 8 s tokens (7 to 8 s of real life: the expiry is whole seconds), replaced after 3/4 of it;
    // the stand-in cuts a connection whose token has expired, as IoT Hub does
    let publisher = Publisher::start(azure_settings(
        &hub,
        device,
        &dir.path().join("q"),
        Duration::from_secs(8),
    ))
    .unwrap();
    let ok = publisher.check_connect(Duration::from_secs(10));
    assert!(matches!(ok, Ok(true)), "{ok:?}\n{:?}", hub.connects());
    let dev: Arc<str> = Arc::from(device);
    let mut ids = HashSet::new();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(18) {
        for _ in 0..20 {
            let e = event(&dev, n);
            n += 1;
            ids.insert(e.id.clone());
            assert!(publisher.publish(&e));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let summary = publisher.shutdown(Duration::from_secs(20));
    assert!(summary.flushed, "{summary:?}");
    // every event was acknowledged by the broker; the service may still be reading them
    let ids_of = |t: &[(String, Vec<u8>)]| -> HashSet<String> {
        t.iter()
            .filter_map(|(_, p)| serde_json::from_slice::<Value>(p).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect()
    };
    hub.service()
        .wait_telemetry(Duration::from_secs(30), |t| ids_of(t).is_superset(&ids));
    let got = ids_of(&hub.service().telemetry());
    let missing = ids.difference(&got).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} events never reached the hub",
        ids.len()
    );
    let connects = hub.connects();
    let accepted: Vec<_> = connects.iter().filter(|c| c.accepted).collect();
    assert!(accepted.len() >= 3, "tokens were not renewed: {connects:?}");
    let expiries: HashSet<u64> = accepted.iter().filter_map(|c| c.token_expiry).collect();
    assert_eq!(
        expiries.len(),
        accepted.len(),
        "a token was reused: {connects:?}"
    );
    assert!(
        connects.iter().all(|c| !c.closed_for_expiry),
        "the hub had to cut an expired connection: {connects:?}"
    );
    assert_eq!(summary.connects as usize, accepted.len());
    eprintln!(
        "{} events over {} connections in {:.1} s",
        ids.len(),
        accepted.len(),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn aws_thing_reports_to_its_named_shadow_and_sends_events_on_its_topic() {
    let thing = "shop-7-door";
    let aws = AwsIot::start(thing);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "cam-aws",
        &format!(
            "kind = \"aws-iot-core\"\nendpoint = \"{}\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\nthing_name = \"{thing}\"\ntelemetry_topic = \"dt/ocellus/{{thing}}/{{type}}\"\nshadow = \"counting\"",
            aws.endpoint(),
            aws.ca_file().display(),
            aws.device_cert().display(),
            aws.device_key().display()
        ),
    );
    let run = Run::start(&cfg, &[]);
    let reported = aws
        .shadow()
        .wait_reported("counting", Duration::from_secs(60), |r| {
            r["health"].is_object() && r["rules_status"].is_object()
        })
        .unwrap_or_else(|| panic!("no shadow report\n{}\n{}", run.stderr(), aws.log()));
    assert_eq!(reported["device"], json!("cam-aws"));
    // desired rules through the shadow: applied, reported back as given, events follow
    aws.shadow()
        .set_desired("counting", json!({"rules": walkway()}));
    aws.shadow()
        .wait_reported("counting", Duration::from_secs(20), |r| {
            r["rules"]["line"] == walkway()["line"]
        })
        .unwrap_or_else(|| panic!("shadow rules not applied\n{}", run.stderr()));
    assert!(
        aws.shadow().wait_messages(Duration::from_secs(60), |m| m
            .iter()
            .any(|(t, _)| t == &format!("dt/ocellus/{thing}/line_crossed"))),
        "no line crossing on the thing's topic\n{}\n{}",
        run.stderr(),
        aws.log()
    );
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        aws.log().contains(thing),
        "client id is not the thing name:\n{}",
        aws.log()
    );
}

#[test]
fn aws_refuses_a_certificate_it_does_not_trust() {
    let thing = "shop-8-door";
    let aws = AwsIot::start(thing);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = aws.untrusted_cert();
    let cfg = config(
        dir.path(),
        thing,
        &format!(
            "kind = \"aws-iot-core\"\nendpoint = \"{}\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            aws.endpoint(),
            aws.ca_file().display(),
            cert.display(),
            key.display()
        ),
    );
    let stderr = start_up_error(&cfg);
    assert!(stderr.contains("cloud.client_cert"), "{stderr}");
}

#[test]
fn the_example_configs_check_out() {
    let root = common::repo_root();
    let out = common::bin()
        .arg("check-config")
        .arg(root.join("examples/azure-iot-hub.toml"))
        .env(
            "OCELLUS_AZURE_CONNECTION_STRING",
            "HostName=shop.azure-devices.net;DeviceId=store-12-entrance;SharedAccessKey=c2VjcmV0LWtleS1mb3Itb2NlbGx1cy10ZXN0cy0zMmI=",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("azure-iot-hub mqtts://shop.azure-devices.net:8883"),
        "{stdout}"
    );
    // the example configs run the INT8 person detector, as the demo does
    assert!(
        stdout.contains("model ssd-mobilenet-v2-coco-person-int8 "),
        "{stdout}"
    );
    // the AWS example names certificate files that only exist on a provisioned camera: the
    // error must say which key and which file
    let out = common::bin()
        .arg("check-config")
        .arg(root.join("examples/aws-iot-core.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`cloud.ca_file`") && stderr.contains("AmazonRootCA1.pem"),
        "{stderr}"
    );
}

#[test]
fn an_x509_azure_device_connects_with_its_certificate_and_no_token() {
    let device = "cam-az-x509";
    let hub = Hub::start_x509(device);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = hub.device_cert();
    let section = |cert: &Path, key: &Path| {
        format!(
            "kind = \"azure-iot-hub\"\nconnection_string = \"{}\"\nendpoint = \"{}\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            hub.connection_string(),
            hub.endpoint(),
            hub.ca_file().display(),
            cert.display(),
            key.display()
        )
    };
    let cfg = config(dir.path(), device, &section(&cert, &key));
    let run = Run::start(&cfg, &[]);
    hub.service()
        .wait_reported(Duration::from_secs(60), |r| r["device"] == json!(device))
        .unwrap_or_else(|| panic!("no reported state\n{}\n{}", run.stderr(), hub.log()));
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let connects = hub.connects();
    assert!(
        connects.iter().any(|c| c.accepted
            && c.client_cert_cn.as_deref() == Some(device)
            && !c.password_present
            && c.token_expiry.is_none()),
        "{connects:?}"
    );
    // another device's certificate: refused, and the message says which key to check
    let (other_cert, other_key) = hub.other_device_cert();
    let cfg = config(dir.path(), device, &section(&other_cert, &other_key));
    let stderr = start_up_error(&cfg);
    assert!(
        stderr.contains("refused the device's certificate") && stderr.contains("cloud.client_cert"),
        "{stderr}"
    );
}
