//! Azure IoT Hub SAS tokens, URL encoding, property bags and connection strings checked against
//! values computed independently by Python's standard library
//! (`sdk/cli/tests/fixtures/azure_sas_vectors.py`): once from the committed fixture, once live on
//! pseudo-random cases. python3 is required: a missing python3 fails the test, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use ocellus::cloud::azure::{self, ConnectionString};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn script() -> PathBuf {
    fixtures().join("azure_sas_vectors.py")
}

fn fixture() -> Value {
    let path = fixtures().join("azure_sas_vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Run the reference script with `args`, feeding `stdin`; its stdout as JSON.
fn python(args: &[&str], stdin: &str) -> Value {
    let mut child = Command::new("python3")
        .arg(script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): this test needs python3 (standard library only) to \
                 compute reference SAS tokens. Install python3 (e.g. `apt-get install python3`) \
                 and run the test again"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 {} failed: {}\n{}",
        script().display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Check everything ocellus computes from one connection string against Python's answers.
fn check_case(case: &Value) {
    let name = case["name"].as_str().unwrap_or("live case");
    let cs = case["connection_string"].as_str().unwrap();
    let expected = &case["expected"];
    let c = ConnectionString::parse(cs).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        c.host_name,
        expected["host_name"].as_str().unwrap(),
        "{name}"
    );
    assert_eq!(
        c.device_id,
        expected["device_id"].as_str().unwrap(),
        "{name}"
    );
    assert_eq!(
        c.module_id.as_deref(),
        opt_str(&expected["module_id"]),
        "{name}"
    );
    assert_eq!(
        c.gateway_host_name.as_deref(),
        opt_str(&expected["gateway_host_name"]),
        "{name}"
    );
    assert_eq!(
        c.shared_access_key.as_ref().map(|k| k.expose()),
        opt_str(&expected["shared_access_key"]),
        "{name}"
    );
    assert_eq!(c.x509, expected["x509"].as_bool().unwrap(), "{name}");
    assert_eq!(
        c.endpoint_host(),
        opt_str(&expected["gateway_host_name"]).unwrap_or(&c.host_name),
        "{name}"
    );
    assert_eq!(
        c.resource_uri(),
        case["resource_uri"].as_str().unwrap(),
        "{name}"
    );
    assert_eq!(c.username(), case["username"].as_str().unwrap(), "{name}");
    assert_eq!(c.client_id(), case["client_id"].as_str().unwrap(), "{name}");
    assert_eq!(
        c.telemetry_topic(&[]),
        case["telemetry_topic"].as_str().unwrap(),
        "{name}"
    );
    let key_hex = c
        .key()
        .map(|k| k.iter().map(|b| format!("{b:02x}")).collect::<String>());
    assert_eq!(key_hex.as_deref(), opt_str(&case["key_hex"]), "{name}");
    let expiry = case["expiry"].as_u64().unwrap();
    match (c.key(), case["token"].as_str()) {
        (Some(key), Some(token)) => {
            assert_eq!(
                azure::sas_token(&c.resource_uri(), &key, expiry),
                token,
                "{name}"
            );
        }
        (None, None) => {}
        (ours, theirs) => panic!("{name}: key {:?} vs token {theirs:?}", ours.is_some()),
    }
}

#[test]
fn fixture_vectors_match() {
    let f = fixture();
    assert_eq!(f["api_version"].as_str(), Some(azure::API_VERSION));
    let vectors = f["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8, "at least 8 vectors");
    for v in vectors {
        check_case(v);
    }
    // The fixture covers what it claims to.
    let key_lengths: Vec<usize> = vectors
        .iter()
        .filter_map(|v| v["key_hex"].as_str())
        .map(|h| h.len() / 2)
        .collect();
    for n in [16, 32, 64] {
        assert!(key_lengths.contains(&n), "a {n}-byte key");
    }
    assert!(vectors.iter().any(|v| {
        let k = v["expected"]["shared_access_key"].as_str().unwrap_or("");
        k.contains('+') && k.contains('/')
    }));
    let sig_matters = vectors.iter().any(|v| {
        v["signature_b64"]
            .as_str()
            .is_some_and(|s| s.contains('+') || s.contains('/'))
    });
    assert!(sig_matters, "a signature whose base64 has + or /");
    for expiry in [1_700_000_000u64, 4_102_444_800] {
        assert!(vectors.iter().any(|v| v["expiry"].as_u64() == Some(expiry)));
    }
}

#[test]
fn fixture_url_encoding_and_property_bags_match() {
    let f = fixture();
    for case in f["url_encode"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let output = case["output"].as_str().unwrap();
        assert_eq!(azure::url_encode(input), output, "{input:?}");
        assert_eq!(
            azure::url_decode(output).as_deref(),
            Some(input),
            "{output:?}"
        );
    }
    for case in f["property_bag"].as_array().unwrap() {
        let pairs: Vec<(&str, &str)> = case["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap()))
            .collect();
        assert_eq!(
            azure::property_bag(&pairs),
            case["output"].as_str().unwrap(),
            "{pairs:?}"
        );
    }
}

#[test]
fn fixture_is_what_the_script_writes() {
    let fresh = python(&[], "");
    assert!(
        fresh == fixture(),
        "sdk/cli/tests/fixtures/azure_sas_vectors.json is stale: regenerate it with \
         `python3 sdk/cli/tests/fixtures/azure_sas_vectors.py > sdk/cli/tests/fixtures/azure_sas_vectors.json`"
    );
}

/// A tiny deterministic xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick(&mut self, set: &[u8]) -> char {
        char::from(set[self.below(set.len() as u64) as usize])
    }
}

const ID_CHARS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.%_*?!(),:=@$'";
const LABEL_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_id(rng: &mut Rng) -> String {
    let max = if rng.below(4) == 0 { 128 } else { 24 };
    let len = 1 + rng.below(max);
    (0..len).map(|_| rng.pick(ID_CHARS)).collect()
}

fn random_host(rng: &mut Rng) -> String {
    let mut labels: Vec<String> = (0..1 + rng.below(3))
        .map(|_| {
            (0..1 + rng.below(12))
                .map(|_| rng.pick(LABEL_CHARS))
                .collect()
        })
        .collect();
    labels.push("azure-devices".into());
    labels.push("net".into());
    labels.join(".")
}

fn random_text(rng: &mut Rng) -> String {
    const TRICKY: [char; 16] = [
        '/', ':', '=', '&', '%', '+', ' ', '~', '$', '#', '?', 'ü', '€', '😀', '\n', '\'',
    ];
    (0..rng.below(16))
        .map(|_| match rng.below(3) {
            0 => TRICKY[rng.below(TRICKY.len() as u64) as usize],
            1 => rng.pick(ID_CHARS),
            _ => char::from_u32(0x20 + rng.below(0x2000) as u32).unwrap_or('?'),
        })
        .collect()
}

#[test]
fn live_python_agrees_on_random_cases() {
    let mut rng = Rng(0x0c31_1a5a_2e35_e57d);
    let mut cases = Vec::new();
    for i in 0..20 {
        let key_len = 1 + rng.below(64) as usize;
        let key: Vec<u8> = (0..key_len).map(|_| rng.next() as u8).collect();
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let module = if i % 3 == 0 {
            format!(";ModuleId={}", random_id(&mut rng))
        } else {
            String::new()
        };
        let gateway = if i % 4 == 1 {
            format!(";GatewayHostName={}", random_host(&mut rng))
        } else {
            String::new()
        };
        let cs = format!(
            "HostName={};DeviceId={}{module}{gateway};SharedAccessKey={key}",
            random_host(&mut rng),
            random_id(&mut rng)
        );
        let expiry = match i % 4 {
            0 => rng.next(),
            1 => rng.below(10_000_000_000),
            _ => 1_700_000_000 + rng.below(1 << 32),
        };
        cases.push(json!({ "connection_string": cs, "expiry": expiry }));
    }
    let texts: Vec<String> = (0..20).map(|_| random_text(&mut rng)).collect();
    let bags: Vec<Vec<(String, String)>> = (0..10)
        .map(|_| {
            (0..rng.below(4))
                .map(|_| (random_text(&mut rng), random_text(&mut rng)))
                .collect()
        })
        .collect();
    let request = json!({ "connection_strings": cases, "encode": texts, "bags": bags });
    let answer = python(&["--stdin"], &request.to_string());

    let answered = answer["connection_strings"].as_array().unwrap();
    assert_eq!(answered.len(), 20);
    for case in answered {
        check_case(case);
    }
    let encoded = answer["encode"].as_array().unwrap();
    for (text, theirs) in texts.iter().zip(encoded) {
        let theirs = theirs.as_str().unwrap();
        assert_eq!(azure::url_encode(text), theirs, "{text:?}");
        assert_eq!(azure::url_decode(theirs).as_deref(), Some(text.as_str()));
    }
    let bagged = answer["bags"].as_array().unwrap();
    for (bag, theirs) in bags.iter().zip(bagged) {
        let pairs: Vec<(&str, &str)> = bag.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            azure::property_bag(&pairs),
            theirs.as_str().unwrap(),
            "{pairs:?}"
        );
    }
}

#[test]
fn the_token_depends_on_key_uri_and_expiry() {
    let uri = "myhub.azure-devices.net/devices/cam-01";
    let key = [7u8; 32];
    let base = azure::sas_token(uri, &key, 1_700_000_000);
    let mut other_key = key;
    other_key[31] ^= 1;
    assert_ne!(
        base,
        azure::sas_token(uri, &other_key, 1_700_000_000),
        "key"
    );
    assert_ne!(
        base,
        azure::sas_token(uri, &key[..31], 1_700_000_000),
        "key length"
    );
    assert_ne!(
        base,
        azure::sas_token(
            "myhub.azure-devices.net/devices/cam-02",
            &key,
            1_700_000_000
        ),
        "uri"
    );
    assert_ne!(base, azure::sas_token(uri, &key, 1_700_000_001), "expiry");
    // Same inputs, same token.
    assert_eq!(base, azure::sas_token(uri, &key, 1_700_000_000));
    // The signature part alone changes with each input, not just the sr/se fields.
    let sig = |t: &str| {
        t.split("&sig=")
            .nth(1)
            .unwrap()
            .split("&se=")
            .next()
            .unwrap()
            .to_owned()
    };
    let sigs = [
        sig(&base),
        sig(&azure::sas_token(uri, &other_key, 1_700_000_000)),
        sig(&azure::sas_token(
            "myhub.azure-devices.net/devices/cam-02",
            &key,
            1_700_000_000,
        )),
        sig(&azure::sas_token(uri, &key, 1_700_000_001)),
    ];
    for (i, a) in sigs.iter().enumerate() {
        for b in sigs.iter().skip(i + 1) {
            assert_ne!(a, b);
        }
    }
}
