use super::*;

/// 32 bytes, base64 with `+` and `/` and `=` padding inside the value.
const KEY: &str = "q+/Zx1mP0Y7sK9vBf3a2LwTj8cR4nE6hU5gD1oIzWkA=";
const HOST: &str = "myhub.azure-devices.net";

fn device() -> ConnectionString {
    ConnectionString::parse(&format!(
        "HostName={HOST};DeviceId=cam-01;SharedAccessKey={KEY}"
    ))
    .unwrap()
}

fn module() -> ConnectionString {
    ConnectionString::parse(&format!(
        "HostName={HOST};DeviceId=cam-01;ModuleId=vision;SharedAccessKey={KEY}"
    ))
    .unwrap()
}

fn err(s: &str) -> String {
    let e = ConnectionString::parse(s).expect_err(s);
    assert!(!e.contains(KEY), "the key leaked: {e}");
    assert!(!e.contains("q+/Zx1"), "part of the key leaked: {e}");
    e
}

#[test]
fn parses_a_device_string() {
    let c = device();
    assert_eq!(c.host_name, HOST);
    assert_eq!(c.device_id, "cam-01");
    assert_eq!(c.module_id, None);
    assert_eq!(c.gateway_host_name, None);
    assert_eq!(c.shared_access_key.as_ref().unwrap().expose(), KEY);
    assert!(!c.x509);
    assert_eq!(c.endpoint_host(), HOST);
    let key = c.key().unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(key.first(), Some(&0xab));
}

#[test]
fn parses_every_key_in_any_order() {
    let c = ConnectionString::parse(&format!(
        "GatewayHostName=edge.local;SharedAccessKey={KEY};ModuleId=vision;\
         DeviceId=cam-01;HostName={HOST}"
    ))
    .unwrap();
    assert_eq!(c.host_name, HOST);
    assert_eq!(c.device_id, "cam-01");
    assert_eq!(c.module_id.as_deref(), Some("vision"));
    assert_eq!(c.gateway_host_name.as_deref(), Some("edge.local"));
    assert_eq!(c.endpoint_host(), "edge.local");
    // The SAS resource and user name name the hub, never the gateway.
    assert_eq!(
        c.resource_uri(),
        format!("{HOST}/devices/cam-01/modules/vision")
    );
    assert!(c.username().starts_with(HOST));
}

#[test]
fn parses_x509_whitespace_and_trailing_semicolons() {
    let c = ConnectionString::parse(&format!(
        "  \n HostName={HOST} ;  DeviceId=cam-01 ; x509=TRUE ;;\n "
    ))
    .unwrap();
    assert!(c.x509);
    assert_eq!(c.shared_access_key, None);
    assert_eq!(c.key(), None);
    assert_eq!(c.device_id, "cam-01");
    assert_eq!(c.host_name, HOST);
    let c = ConnectionString::parse(&format!("HostName={HOST};DeviceId=d;x509=true;")).unwrap();
    assert!(c.x509);
}

#[test]
fn the_key_keeps_its_equals_signs() {
    // 16 bytes: "==" padding, split at the first '=' only.
    let key16 = "AAECAwQFBgcICQoLDA0ODw==";
    let c = ConnectionString::parse(&format!(
        "HostName={HOST};DeviceId=d;SharedAccessKey={key16}"
    ))
    .unwrap();
    assert_eq!(c.shared_access_key.as_ref().unwrap().expose(), key16);
    assert_eq!(c.key().unwrap(), (0u8..16).collect::<Vec<_>>());
}

#[test]
fn debug_hides_the_key() {
    let shown = format!("{:?}", device());
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("***"), "{shown}");
}

#[test]
fn missing_parts_are_named() {
    assert!(err("").contains("empty"));
    assert!(err("  ;; ").contains("HostName"));
    assert!(err(&format!("DeviceId=d;SharedAccessKey={KEY}")).contains("HostName"));
    assert!(err(&format!("HostName={HOST};SharedAccessKey={KEY}")).contains("DeviceId"));
    let e = err(&format!("HostName={HOST};DeviceId=d"));
    assert!(e.contains("SharedAccessKey") && e.contains("x509"), "{e}");
    let e = err(&format!("HostName={HOST};DeviceId=d;x509=false"));
    assert!(e.contains("neither"), "{e}");
}

#[test]
fn unknown_repeated_and_malformed_keys_are_refused() {
    let e = err(&format!(
        "HostName={HOST};DeviceId=d;Color=blue;SharedAccessKey={KEY}"
    ));
    assert!(e.contains("unknown key 'Color'"), "{e}");
    let e = err(&format!("hostname={HOST};DeviceId=d;SharedAccessKey={KEY}"));
    assert!(
        e.contains("case-sensitive") && e.contains("'HostName'"),
        "{e}"
    );
    let e = err(&format!(
        "HostName={HOST};DeviceId=d;DeviceId=e;SharedAccessKey={KEY}"
    ));
    assert!(e.contains("DeviceId is given twice"), "{e}");
    let e = err(&format!(
        "HostName={HOST};DeviceId=d;SharedAccessKey={KEY};SharedAccessKey={KEY}"
    ));
    assert!(e.contains("SharedAccessKey is given twice"), "{e}");
    // A pasted key on its own: not echoed, not even as a "key name".
    let e = err(&format!("HostName={HOST};DeviceId=d;{KEY}"));
    assert!(e.contains("part 3"), "{e}");
    let e = err(&format!(
        "HostName={HOST};DeviceId=d;{}",
        KEY.trim_end_matches('=')
    ));
    assert!(e.contains("part 3") && e.contains("no '='"), "{e}");
    let e = err(&format!(
        "HostName={HOST};=x;DeviceId=d;SharedAccessKey={KEY}"
    ));
    assert!(e.contains("empty key name"), "{e}");
    let e = err(&format!("HostName={HOST};DeviceId=d;x509=maybe"));
    assert!(e.contains("true or false"), "{e}");
}

#[test]
fn a_hub_policy_string_is_refused() {
    let e = err(&format!(
        "HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
    ));
    assert!(e.contains("SharedAccessKeyName"), "{e}");
    assert!(e.contains("device"), "{e}");
    assert!(e.contains("Primary connection string"), "{e}");
    let e = err(&format!(
        "HostName={HOST};DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=x&sig=y&se=1"
    ));
    assert!(e.contains("SharedAccessKey"), "{e}");
}

#[test]
fn key_and_x509_together_are_refused() {
    let e = err(&format!(
        "HostName={HOST};DeviceId=d;SharedAccessKey={KEY};x509=true"
    ));
    assert!(e.contains("both"), "{e}");
}

#[test]
fn bad_keys_are_refused_without_echoing_them() {
    let bad = "q+/Zx1mP0Y7sK9vBf3a2LwTj8cR4nE6hU5gD1oIzWk!=";
    let e = ConnectionString::parse(&format!("HostName={HOST};DeviceId=d;SharedAccessKey={bad}"))
        .unwrap_err();
    assert!(e.contains("not valid base64"), "{e}");
    assert!(!e.contains(bad) && !e.contains("q+/Zx1"), "{e}");
    // Wrong padding.
    let e = err(&format!(
        "HostName={HOST};DeviceId=d;SharedAccessKey=q+/Zx1mP0Y7s="
    ));
    assert!(e.contains("not valid base64"), "{e}");
    let e = err(&format!("HostName={HOST};DeviceId=d;SharedAccessKey="));
    assert!(e.contains("empty"), "{e}");
    let e = err(&format!("HostName={HOST};DeviceId=d;SharedAccessKey=="));
    assert!(e.contains("base64"), "{e}");
}

#[test]
fn decode_key_checks() {
    assert_eq!(decode_key("AAECAw==").unwrap(), vec![0, 1, 2, 3]);
    assert!(decode_key("").unwrap_err().contains("empty"));
    for bad in [
        "AAECAw",
        "AAEC Aw==",
        "AAECAw=",
        "AA-_Aw==",
        "secret-value!",
    ] {
        let e = decode_key(bad).unwrap_err();
        assert!(!e.contains(bad), "{e}");
        assert!(e.contains("base64"), "{e}");
    }
}

#[test]
fn bad_host_names_are_refused() {
    for (host, word) in [
        ("https://myhub.azure-devices.net", "':'"),
        ("myhub.azure-devices.net:8883", "':'"),
        ("myhub.azure-devices.net/", "'/'"),
        ("my hub.azure-devices.net", "a space"),
        ("myhub..azure-devices.net", "empty label"),
        ("-myhub.azure-devices.net", "'-'"),
        ("myhüb.azure-devices.net", "non-ASCII"),
        ("myhub_x.azure-devices.net", "'_'"),
    ] {
        let e = err(&format!("HostName={host};DeviceId=d;SharedAccessKey={KEY}"));
        assert!(e.contains("HostName") && e.contains(word), "{host}: {e}");
    }
    let e = err(&format!(
        "HostName={HOST};DeviceId=d;GatewayHostName=edge/1;SharedAccessKey={KEY}"
    ));
    assert!(e.contains("GatewayHostName"), "{e}");
    let long = format!("{}.net", "a.".repeat(130));
    assert!(err(&format!("HostName={long};DeviceId=d;x509=true")).contains("longer"));
    let label = format!("{}.net", "a".repeat(64));
    assert!(err(&format!("HostName={label};DeviceId=d;x509=true")).contains("63"));
}

#[test]
fn bad_ids_are_refused() {
    for (id, word) in [
        ("cam/01", "'/'"),
        ("cam+01", "'+'"),
        ("cam#01", "'#'"),
        ("cam 01", "a space"),
        ("cam\t01", "control"),
        ("cam\u{7f}01", "control"),
        ("kamera-ü", "non-ASCII"),
        ("cam&01", "'&'"),
        ("cam\"01", "'\"'"),
    ] {
        let e = err(&format!(
            "HostName={HOST};DeviceId={id};SharedAccessKey={KEY}"
        ));
        assert!(e.contains("DeviceId") && e.contains(word), "{id:?}: {e}");
        let e = err(&format!(
            "HostName={HOST};DeviceId=d;ModuleId={id};x509=true"
        ));
        assert!(e.contains("ModuleId") && e.contains(word), "{id:?}: {e}");
    }
    // ';' cannot reach an id through a connection string; the check refuses it anyway.
    assert!(check_id("DeviceId", "cam;01").unwrap_err().contains("';'"));
    let e = err(&format!("HostName={HOST};DeviceId=cam/01;x509=true"));
    assert!(e.contains("wildcard"), "{e}");
    let ok = "a".repeat(128);
    assert!(ConnectionString::parse(&format!("HostName={HOST};DeviceId={ok};x509=true")).is_ok());
    let long = "a".repeat(129);
    assert!(err(&format!("HostName={HOST};DeviceId={long};x509=true")).contains("128"));
    assert!(err(&format!("HostName={HOST};DeviceId=;x509=true")).contains("empty"));
    assert!(err(&format!("HostName={HOST};DeviceId=d;ModuleId=;x509=true")).contains("empty"));
    // Every character Azure allows.
    let all = "Az09-.%_*?!(),:=@$'";
    let c = ConnectionString::parse(&format!(
        "HostName={HOST};DeviceId={all};ModuleId={all};x509=true"
    ))
    .unwrap();
    assert_eq!(c.device_id, all);
    assert_eq!(c.module_id.as_deref(), Some(all));
}

#[test]
fn device_names_and_topics() {
    let c = device();
    assert_eq!(c.resource_uri(), "myhub.azure-devices.net/devices/cam-01");
    assert_eq!(
        c.username(),
        "myhub.azure-devices.net/cam-01/?api-version=2021-04-12"
    );
    assert_eq!(c.client_id(), "cam-01");
    assert_eq!(c.telemetry_topic(&[]), "devices/cam-01/messages/events/");
    assert_eq!(
        c.telemetry_topic(&[
            ("$.ct", "application/json"),
            ("$.ce", "utf-8"),
            ("kind", "a b")
        ]),
        "devices/cam-01/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&kind=a%20b"
    );
    assert_eq!(
        c.subscriptions(),
        vec![
            "$iothub/twin/res/#",
            "$iothub/twin/PATCH/properties/desired/#",
            "$iothub/methods/POST/#",
            "devices/cam-01/messages/devicebound/#",
        ]
    );
}

#[test]
fn module_names_and_topics() {
    let c = module();
    assert_eq!(
        c.resource_uri(),
        "myhub.azure-devices.net/devices/cam-01/modules/vision"
    );
    assert_eq!(
        c.username(),
        "myhub.azure-devices.net/cam-01/vision/?api-version=2021-04-12"
    );
    assert_eq!(c.client_id(), "cam-01/vision");
    assert_eq!(
        c.telemetry_topic(&[]),
        "devices/cam-01/modules/vision/messages/events/"
    );
    assert_eq!(
        c.telemetry_topic(&[("k", "v")]),
        "devices/cam-01/modules/vision/messages/events/k=v"
    );
    assert_eq!(
        c.subscriptions(),
        vec![
            "$iothub/twin/res/#",
            "$iothub/twin/PATCH/properties/desired/#",
            "$iothub/methods/POST/#",
        ]
    );
}

#[test]
fn url_encoding_round_trips() {
    assert_eq!(url_encode("AZaz09-._~"), "AZaz09-._~");
    assert_eq!(
        url_encode("a/b:c=d&e%f+g h"),
        "a%2Fb%3Ac%3Dd%26e%25f%2Bg%20h"
    );
    assert_eq!(url_encode("ü€😀"), "%C3%BC%E2%82%AC%F0%9F%98%80");
    assert_eq!(url_encode(""), "");
    for s in [
        "",
        "plain",
        "a/b:c=d&e%f+g h",
        "%%%",
        "%2F",
        "x=1&y=2",
        "ünïcödé € 😀",
        "\0\n\t\u{7f}",
        "~!*'();:@&=+$,/?#[]",
    ] {
        assert_eq!(url_decode(&url_encode(s)).as_deref(), Some(s), "{s:?}");
    }
    assert_eq!(url_decode("a+b").as_deref(), Some("a+b"));
    assert_eq!(url_decode("%2f%2F").as_deref(), Some("//"));
    for bad in ["%", "%2", "%zz", "%g0", "abc%", "%C3", "%FF", "%C3%28"] {
        assert_eq!(url_decode(bad), None, "{bad:?}");
    }
}

#[test]
fn property_bags() {
    assert_eq!(property_bag(&[]), "");
    assert_eq!(property_bag(&[("a", "1")]), "a=1");
    assert_eq!(
        property_bag(&[("a b", "x&y=z"), ("", "")]),
        "a%20b=x%26y%3Dz&="
    );
}

#[test]
fn sas_tokens_have_the_documented_shape() {
    let key = device().key().unwrap();
    let t = sas_token(
        "myhub.azure-devices.net/devices/cam-01",
        &key,
        1_700_000_000,
    );
    let rest = t
        .strip_prefix("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fcam-01&sig=")
        .unwrap();
    let (sig, se) = rest.split_once("&se=").unwrap();
    assert_eq!(se, "1700000000");
    let sig = url_decode(sig).unwrap();
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap();
    assert_eq!(raw.len(), 32);
    // It verifies with the same key over `enc(uri) + "\n" + expiry`.
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    ring::hmac::verify(
        &k,
        b"myhub.azure-devices.net%2Fdevices%2Fcam-01\n1700000000",
        &raw,
    )
    .unwrap();
    assert_ne!(
        t,
        sas_token(
            "myhub.azure-devices.net/devices/cam-01",
            &key,
            1_700_000_001
        )
    );
    assert_ne!(
        t,
        sas_token(
            "myhub.azure-devices.net/devices/cam-02",
            &key,
            1_700_000_000
        )
    );
    assert_ne!(
        t,
        sas_token(
            "myhub.azure-devices.net/devices/cam-01",
            &[1, 2, 3],
            1_700_000_000
        )
    );
}

#[test]
fn twin_responses() {
    assert_eq!(
        parse_inbound("$iothub/twin/res/200/?$rid=1", "d"),
        Some(Inbound::TwinResponse {
            status: 200,
            rid: "1".into(),
            version: None
        })
    );
    assert_eq!(
        parse_inbound("$iothub/twin/res/204/?$rid=a1f&$version=17", "d"),
        Some(Inbound::TwinResponse {
            status: 204,
            rid: "a1f".into(),
            version: Some(17)
        })
    );
    assert_eq!(
        parse_inbound("$iothub/twin/res/429/?$version=3&x=y&$rid=7", "d"),
        Some(Inbound::TwinResponse {
            status: 429,
            rid: "7".into(),
            version: Some(3)
        })
    );
    assert_eq!(
        parse_inbound("$iothub/twin/res/500/?$rid=7&$version=nope", "d"),
        Some(Inbound::TwinResponse {
            status: 500,
            rid: "7".into(),
            version: None
        })
    );
    for bad in [
        "$iothub/twin/res/",
        "$iothub/twin/res/200",
        "$iothub/twin/res/200/",
        "$iothub/twin/res/200/?",
        "$iothub/twin/res/200/?$rid=",
        "$iothub/twin/res/200/?rid=1",
        "$iothub/twin/res//?$rid=1",
        "$iothub/twin/res/abc/?$rid=1",
        "$iothub/twin/res/+200/?$rid=1",
        "$iothub/twin/res/99999/?$rid=1",
        "$iothub/twin/res/070/?$rid=1",
        "$iothub/twin/res/2000/?$rid=1",
    ] {
        assert_eq!(parse_inbound(bad, "d"), None, "{bad}");
    }
}

#[test]
fn desired_patches() {
    assert_eq!(
        parse_inbound("$iothub/twin/PATCH/properties/desired/?$version=42", "d"),
        Some(Inbound::DesiredPatch { version: Some(42) })
    );
    assert_eq!(
        parse_inbound("$iothub/twin/PATCH/properties/desired/?$version=x", "d"),
        Some(Inbound::DesiredPatch { version: None })
    );
    assert_eq!(
        parse_inbound("$iothub/twin/PATCH/properties/desired/", "d"),
        Some(Inbound::DesiredPatch { version: None })
    );
    assert_eq!(
        parse_inbound("$iothub/twin/PATCH/properties/desired/x", "d"),
        None
    );
    assert_eq!(
        parse_inbound("$iothub/twin/PATCH/properties/reported/?$rid=1", "d"),
        None
    );
}

#[test]
fn direct_methods() {
    assert_eq!(
        parse_inbound("$iothub/methods/POST/reboot/?$rid=1f", "d"),
        Some(Inbound::Method {
            name: "reboot".into(),
            rid: "1f".into()
        })
    );
    assert_eq!(
        parse_inbound("$iothub/methods/POST/set-rule/?x=1&$rid=req:7", "d"),
        Some(Inbound::Method {
            name: "set-rule".into(),
            rid: "req:7".into()
        })
    );
    for bad in [
        "$iothub/methods/POST/",
        "$iothub/methods/POST//?$rid=1",
        "$iothub/methods/POST/reboot",
        "$iothub/methods/POST/reboot/?$rid=",
        "$iothub/methods/POST/reboot/?",
        "$iothub/methods/POST/a/b/?$rid=1",
        "$iothub/methods/res/200/?$rid=1",
    ] {
        assert_eq!(parse_inbound(bad, "d"), None, "{bad}");
    }
}

#[test]
fn cloud_to_device_messages() {
    assert_eq!(
        parse_inbound(
            "devices/cam-01/messages/devicebound/%24.to=%2Fdevices%2Fcam-01%2Fmessages%2FdeviceBound&%24.mid=abc&flag&x=%zz",
            "cam-01"
        ),
        Some(Inbound::CloudToDevice {
            properties: vec![
                ("$.to".into(), "/devices/cam-01/messages/deviceBound".into()),
                ("$.mid".into(), "abc".into()),
                ("flag".into(), String::new()),
                ("x".into(), "%zz".into()),
            ]
        })
    );
    assert_eq!(
        parse_inbound("devices/cam-01/messages/devicebound/", "cam-01"),
        Some(Inbound::CloudToDevice { properties: vec![] })
    );
    assert_eq!(
        parse_inbound("devices/cam-01/messages/devicebound", "cam-01"),
        Some(Inbound::CloudToDevice { properties: vec![] })
    );
    assert_eq!(
        parse_inbound("devices/cam-01/messages/devicebound/a=1=2&&b=", "cam-01"),
        Some(Inbound::CloudToDevice {
            properties: vec![("a".into(), "1=2".into()), ("b".into(), String::new())]
        })
    );
    for (topic, device) in [
        ("devices/cam-01/messages/devicebound/", "cam-02"),
        ("devices/cam-01/messages/devicebound/", "cam-0"),
        ("devices/cam-010/messages/devicebound/", "cam-01"),
        ("devices/cam-01/messages/deviceboundx", "cam-01"),
        ("devices/cam-01/messages/events/", "cam-01"),
        ("devices//messages/devicebound/", ""),
    ] {
        assert_eq!(parse_inbound(topic, device), None, "{topic} {device}");
    }
}

#[test]
fn garbage_is_not_recognised_and_never_panics() {
    for topic in [
        "",
        "/",
        "#",
        "$iothub",
        "$iothub/",
        "$iothub/twin",
        "$iothub/twin/res",
        "$iothub/methods/POST",
        "devices",
        "devices/",
        "telemetry/cam-01",
        "$IOTHUB/twin/res/200/?$rid=1",
        "\u{0}\u{ffff}",
        "ü/€/😀",
    ] {
        assert_eq!(parse_inbound(topic, "cam-01"), None, "{topic:?}");
    }
    // A cheap fuzz: every prefix and every single-byte truncation of valid topics.
    let valid = [
        "$iothub/twin/res/204/?$rid=a1f&$version=17",
        "$iothub/twin/PATCH/properties/desired/?$version=42",
        "$iothub/methods/POST/reboot/?$rid=1f",
        "devices/cam-01/messages/devicebound/%24.to=%2Fx&a=%C3%BC",
    ];
    for topic in valid {
        for (i, _) in topic.char_indices() {
            let _ = parse_inbound(topic.get(..i).unwrap(), "cam-01");
            let _ = parse_inbound(topic.get(i..).unwrap(), "cam-01");
        }
        assert!(parse_inbound(topic, "cam-01").is_some(), "{topic}");
    }
}

#[test]
fn outbound_topics() {
    assert_eq!(twin_get_topic("5"), "$iothub/twin/GET/?$rid=5");
    assert_eq!(
        twin_reported_topic("6"),
        "$iothub/twin/PATCH/properties/reported/?$rid=6"
    );
    assert_eq!(
        method_response_topic(200, "7"),
        "$iothub/methods/res/200/?$rid=7"
    );
}
