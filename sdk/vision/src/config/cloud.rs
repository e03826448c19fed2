//! `[cloud]`: Azure IoT Hub or AWS IoT Core. A profile says where and how to connect, so it makes
//! the MQTT connection (`[mqtt]` is then refused) as well as the hub's identity and topics.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Cx;
use super::check::int_in;
use super::mqtt::{
    DEFAULT_KEEP_ALIVE, DEFAULT_MQTTS_PORT, DEFAULT_TOPIC_PREFIX, MqttConfig, TlsKeys,
    parse_broker_url, secret_from_env, secret_from_file, tls_files, url_host,
};
use crate::cloud::azure::ConnectionString;
use crate::cloud::{AwsProfile, AzureProfile, Profile};
use crate::error::Result;
use crate::transport::TlsSettings;

/// What `cloud.kind` may be.
const CLOUD_KINDS: &str = "\"azure-iot-hub\" or \"aws-iot-core\"";

/// `[cloud]` as written: the keys of both kinds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCloud {
    kind: Spanned<String>,
    connection_string: Option<Spanned<String>>,
    connection_string_file: Option<Spanned<String>>,
    connection_string_env: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    sas_ttl_s: Option<Spanned<i64>>,
    keep_alive_s: Option<Spanned<i64>>,
    snapshots: Option<Spanned<bool>>,
    thing_name: Option<Spanned<String>>,
    telemetry_topic: Option<Spanned<String>>,
    shadow: Option<Spanned<String>>,
}

/// `[cloud]`: a cloud IoT hub profile.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// The profile: identity, topics, credentials.
    pub profile: Profile,
    /// `cloud.snapshots`: whether the `snapshot` direct method may send a frame (people
    /// hidden). Default false: no image leaves the device.
    pub snapshots: bool,
}

/// The keys both kinds share, checked before the kind's own.
struct Shared {
    keep_alive: Duration,
    snapshots: bool,
}

/// `[cloud]`: the profile and the MQTT connection it makes.
pub(super) fn parse(
    cx: &Cx<'_>,
    raw: &Spanned<RawCloud>,
    device_id: &str,
    dir: &Path,
) -> Result<(MqttConfig, CloudConfig)> {
    let raw = raw.get_ref();
    let shared = Shared {
        keep_alive: match &raw.keep_alive_s {
            Some(k) => Duration::from_secs(int_in(cx, k, "cloud.keep_alive_s", 5, 1177)? as u64),
            None => DEFAULT_KEEP_ALIVE,
        },
        snapshots: raw.snapshots.as_ref().is_some_and(|s| *s.get_ref()),
    };
    match raw.kind.get_ref().as_str() {
        "azure-iot-hub" => {
            let aws_only = [
                ("thing_name", &raw.thing_name),
                ("telemetry_topic", &raw.telemetry_topic),
                ("shadow", &raw.shadow),
            ];
            misplaced(cx, &aws_only, "aws-iot-core")?;
            azure(cx, raw, shared, device_id, dir)
        }
        "aws-iot-core" => {
            let azure_only = [
                ("connection_string", &raw.connection_string),
                ("connection_string_file", &raw.connection_string_file),
                ("connection_string_env", &raw.connection_string_env),
            ];
            misplaced(cx, &azure_only, "azure-iot-hub")?;
            aws(cx, raw, shared, device_id, dir)
        }
        other => Err(cx.at(
            &raw.kind,
            "cloud.kind",
            format!("\"{other}\" is not a cloud profile: use {CLOUD_KINDS}; for a plain MQTT broker use [mqtt] instead of [cloud]"),
        )),
    }
}

/// The first of `keys` (which belong to the `other` kind) that is set, refused.
fn misplaced(cx: &Cx<'_>, keys: &[(&str, &Option<Spanned<String>>)], other: &str) -> Result<()> {
    match keys.iter().find_map(|(k, v)| v.as_ref().map(|v| (k, v))) {
        Some((k, v)) => Err(cx.at(
            v,
            &format!("cloud.{k}"),
            format!("only applies to kind = \"{other}\"; remove it"),
        )),
        None => Ok(()),
    }
}

/// `cloud.ca_file`, `cloud.client_cert` and `cloud.client_key`, checked like `[mqtt]`'s.
fn tls(cx: &Cx<'_>, raw: &RawCloud, dir: &Path) -> Result<TlsSettings> {
    tls_files(
        cx,
        TlsKeys {
            section: "cloud",
            anchor: raw.kind.span(),
            ca_file: &raw.ca_file,
            client_cert: &raw.client_cert,
            client_key: &raw.client_key,
        },
        dir,
    )
}

/// `cloud.endpoint`: an `mqtts://` URL (`None`: not given).
fn endpoint(cx: &Cx<'_>, raw: &RawCloud, default_port: u16) -> Result<Option<(String, u16)>> {
    let Some(e) = &raw.endpoint else {
        return Ok(None);
    };
    let url = parse_broker_url(e.get_ref()).map_err(|m| cx.at(e, "cloud.endpoint", m))?;
    if !url.tls {
        return Err(cx.at(
            e,
            "cloud.endpoint",
            format!(
                "must be mqtts:// (cloud hubs only take TLS), e.g. mqtts://{}:{default_port}",
                url_host(&url.host)
            ),
        ));
    }
    Ok(Some((url.host, url.port)))
}

/// `kind = "azure-iot-hub"`: the device's connection string says which hub and how it signs in.
fn azure(
    cx: &Cx<'_>,
    raw: &RawCloud,
    shared: Shared,
    device_id: &str,
    dir: &Path,
) -> Result<(MqttConfig, CloudConfig)> {
    let connection = azure_connection(cx, raw, device_id, dir)?;
    let sas_ttl = match &raw.sas_ttl_s {
        Some(t) => {
            if connection.x509 {
                return Err(cx.at(
                    t,
                    "cloud.sas_ttl_s",
                    "applies to SAS (SharedAccessKey) devices, not X.509; remove it",
                ));
            }
            Duration::from_secs(int_in(cx, t, "cloud.sas_ttl_s", 4, 31_536_000)? as u64)
        }
        None => crate::cloud::DEFAULT_SAS_TTL,
    };
    let tls = tls(cx, raw, dir)?;
    let (host, port) = endpoint(cx, raw, crate::cloud::azure::PORT)?.unwrap_or_else(|| {
        (
            connection.endpoint_host().to_owned(),
            crate::cloud::azure::PORT,
        )
    });
    let mqtt = MqttConfig {
        host,
        port,
        topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
        client_id: connection.client_id(),
        keep_alive: shared.keep_alive,
        tls: Some(tls),
        credentials: Some(crate::transport::Credentials {
            username: connection.username(),
            // the SAS token is made (and renewed) by the publisher
            password: None,
        }),
        allow_insecure: false,
    };
    let profile = Profile::Azure(Arc::new(AzureProfile {
        connection,
        sas_ttl,
    }));
    let snapshots = shared.snapshots;
    Ok((mqtt, CloudConfig { profile, snapshots }))
}

/// The Azure connection string, parsed and checked against `device.id` and the certificate keys.
fn azure_connection(
    cx: &Cx<'_>,
    raw: &RawCloud,
    device_id: &str,
    dir: &Path,
) -> Result<ConnectionString> {
    let (value, (key, at)) = connection_string(cx, raw, dir)?;
    let connection = ConnectionString::parse(&value).map_err(|m| cx.at(at, key, m))?;
    if connection.device_id != device_id {
        return Err(cx.at(
            at,
            key,
            format!(
                "names DeviceId \"{}\" but `device.id` is \"{device_id}\": they must be the same (events carry device.id; IoT Hub knows the device by DeviceId)",
                connection.device_id
            ),
        ));
    }
    if connection.x509 && (raw.client_cert.is_none() || raw.client_key.is_none()) {
        return Err(cx.at(
            at,
            key,
            "says x509=true: set `cloud.client_cert` and `cloud.client_key` to the device's certificate and private key",
        ));
    }
    if !connection.x509
        && let Some(c) = raw.client_cert.as_ref().or(raw.client_key.as_ref())
    {
        return Err(cx.at(
            c,
            if raw.client_cert.is_some() { "cloud.client_cert" } else { "cloud.client_key" },
            "applies to X.509 devices, but the connection string has a SharedAccessKey: use the X.509 device's connection string (…;x509=true), or remove the certificate keys",
        ));
    }
    Ok(connection)
}

/// The Azure connection string from exactly one of `connection_string`,
/// `connection_string_file` and `connection_string_env`: (value, (key, its span holder)).
fn connection_string<'r>(
    cx: &Cx<'_>,
    raw: &'r RawCloud,
    dir: &Path,
) -> Result<(String, (&'static str, &'r Spanned<String>))> {
    let mut given: Vec<(&'static str, &Spanned<String>)> = [
        ("cloud.connection_string_file", &raw.connection_string_file),
        ("cloud.connection_string_env", &raw.connection_string_env),
        ("cloud.connection_string", &raw.connection_string),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    given.sort_by_key(|(_, v)| v.span().start);
    match given.as_slice() {
        [] => Err(cx.at(
            &raw.kind,
            "cloud.connection_string_file",
            "is required for Azure IoT Hub (or `cloud.connection_string_env`, or `cloud.connection_string`): the device's connection string, \"HostName=…;DeviceId=…;SharedAccessKey=…\" (see docs/cloud.md)",
        )),
        [(first, _), (second, v), ..] => Err(cx.at(
            v,
            second,
            format!("`{first}` is set too: give the connection string one way only"),
        )),
        [(key, v)] => {
            let value = match *key {
                "cloud.connection_string_file" => {
                    secret_from_file(cx, v, dir, key, "connection string")?
                }
                "cloud.connection_string_env" => secret_from_env(
                    cx,
                    v,
                    key,
                    "connection string",
                    "OCELLUS_AZURE_CONNECTION_STRING",
                )?,
                _ => v.get_ref().clone(),
            };
            Ok((value, (*key, *v)))
        }
    }
}

/// `kind = "aws-iot-core"`: the account's endpoint, the thing's certificate, its name and topics.
fn aws(
    cx: &Cx<'_>,
    raw: &RawCloud,
    shared: Shared,
    device_id: &str,
    dir: &Path,
) -> Result<(MqttConfig, CloudConfig)> {
    if let Some(t) = &raw.sas_ttl_s {
        return Err(cx.at(
            t,
            "cloud.sas_ttl_s",
            "only applies to kind = \"azure-iot-hub\"; remove it",
        ));
    }
    if let Some(s) = &raw.snapshots {
        return Err(cx.at(
            s,
            "cloud.snapshots",
            "only applies to kind = \"azure-iot-hub\" (AWS IoT Core has no direct methods); remove it",
        ));
    }
    let Some((host, port)) = endpoint(cx, raw, DEFAULT_MQTTS_PORT)? else {
        return Err(cx.err(
            Some(raw.kind.span()),
            "cloud.endpoint",
            "is required for AWS IoT Core: your account's device data endpoint, e.g. mqtts://abc123-ats.iot.eu-west-1.amazonaws.com:8883 (`aws iot describe-endpoint --endpoint-type iot:Data-ATS`)",
        ));
    };
    if raw.client_cert.is_none() || raw.client_key.is_none() {
        let at = raw
            .client_cert
            .as_ref()
            .or(raw.client_key.as_ref())
            .map(Spanned::span)
            .unwrap_or_else(|| raw.kind.span());
        return Err(cx.err(
            Some(at),
            if raw.client_cert.is_none() { "cloud.client_cert" } else { "cloud.client_key" },
            "is required for AWS IoT Core: the thing's certificate (client_cert) and private key (client_key), see docs/cloud.md",
        ));
    }
    let profile = aws_profile(cx, raw, device_id)?;
    let tls = tls(cx, raw, dir)?;
    let mqtt = MqttConfig {
        host,
        port,
        topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
        client_id: profile.thing.clone(),
        keep_alive: shared.keep_alive,
        tls: Some(tls),
        credentials: None,
        allow_insecure: false,
    };
    let profile = Profile::Aws(Arc::new(profile));
    let snapshots = shared.snapshots;
    Ok((mqtt, CloudConfig { profile, snapshots }))
}

/// `cloud.thing_name` (default `device.id`), `cloud.telemetry_topic` and `cloud.shadow`.
fn aws_profile(cx: &Cx<'_>, raw: &RawCloud, device_id: &str) -> Result<AwsProfile> {
    use crate::cloud::aws::{name_problem, template_problem};
    let thing = match &raw.thing_name {
        Some(t) => {
            if let Some(m) = name_problem(t.get_ref(), 128) {
                return Err(cx.at(t, "cloud.thing_name", m));
            }
            t.get_ref().clone()
        }
        None => {
            if let Some(m) = name_problem(device_id, 128) {
                return Err(cx.at(
                    &raw.kind,
                    "cloud.thing_name",
                    format!(
                        "defaults to `device.id` (\"{device_id}\"), which cannot be a thing name: it {m}; set `cloud.thing_name`"
                    ),
                ));
            }
            device_id.to_owned()
        }
    };
    let telemetry_topic = match &raw.telemetry_topic {
        Some(t) => {
            if let Some(m) = template_problem(t.get_ref()) {
                return Err(cx.at(t, "cloud.telemetry_topic", m));
            }
            t.get_ref().clone()
        }
        None => crate::cloud::DEFAULT_AWS_TELEMETRY_TOPIC.to_owned(),
    };
    let shadow = match &raw.shadow {
        Some(s) => {
            if let Some(m) = name_problem(s.get_ref(), 64) {
                return Err(cx.at(s, "cloud.shadow", m));
            }
            s.get_ref().clone()
        }
        None => crate::cloud::DEFAULT_AWS_SHADOW.to_owned(),
    };
    Ok(AwsProfile {
        thing,
        telemetry_topic,
        shadow,
    })
}
