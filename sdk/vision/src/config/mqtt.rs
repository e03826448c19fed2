//! `[mqtt]`: the broker URL, topics, TLS files and credentials; and the secrets and TLS keys that
//! `[cloud]` shares with it.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::check::{check_name, int_in, resolve_path};
use super::{Cx, DOCS};
use crate::error::Result;
use crate::transport::{Credentials, Secret, TlsSettings};

/// MQTT port used when an `mqtt://` URL names none.
pub const DEFAULT_MQTT_PORT: u16 = 1883;
/// MQTT port used when an `mqtts://` URL names none.
pub const DEFAULT_MQTTS_PORT: u16 = 8883;
/// Default `mqtt.topic_prefix`.
pub const DEFAULT_TOPIC_PREFIX: &str = "ocellus";
/// Default `mqtt.keep_alive_s`.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Longest `mqtt.client_id` (and the cut of the default one).
pub(super) const MAX_CLIENT_ID: usize = 128;
const MAX_TOPIC_PREFIX: usize = 256;
/// Largest `mqtt.password_file` read: a password is on its first line.
const MAX_PASSWORD_FILE: u64 = 64 << 10;

/// `[mqtt]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqtt {
    url: Spanned<String>,
    topic_prefix: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    keep_alive_s: Option<Spanned<i64>>,
    username: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    allow_insecure: Option<Spanned<bool>>,
    /// Removed: refused with a message saying what replaced it.
    max_pending_events: Option<Spanned<serde::de::IgnoredAny>>,
}

/// `[mqtt]`: where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// Broker host name or IP address (IPv6 without the brackets).
    pub host: String,
    /// Broker port (default 1883, 8883 with `mqtts://`).
    pub port: u16,
    /// Topic prefix, one or more `/`-separated levels (default `ocellus`).
    pub topic_prefix: String,
    /// MQTT client id (default `ocellus-{device.id}`, cut to 128 characters).
    pub client_id: String,
    /// MQTT keep-alive interval.
    pub keep_alive: Duration,
    /// TLS: `Some` exactly when the URL is `mqtts://` (or `ssl://`, `tls://`). Its files were
    /// read and checked when the config was loaded.
    pub tls: Option<TlsSettings>,
    /// `mqtt.username` and the password (`password_file`, `password_env` or `password`).
    pub credentials: Option<Credentials>,
    /// `mqtt.allow_insecure`: plaintext `mqtt://` to a host that is not loopback was allowed.
    pub allow_insecure: bool,
}

/// `[mqtt]`.
pub(super) fn parse(cx: &Cx<'_>, raw: &RawMqtt, device_id: &str, dir: &Path) -> Result<MqttConfig> {
    if let Some(m) = &raw.max_pending_events {
        return Err(cx.at(
            m,
            "mqtt.max_pending_events",
            format!(
                "was removed: events now wait on disk, not in memory; bound them with [queue] max_mb (and max_age_s) and remove this key (see {DOCS})"
            ),
        ));
    }
    let url = parse_broker_url(raw.url.get_ref()).map_err(|m| cx.at(&raw.url, "mqtt.url", m))?;
    let topic_prefix = match &raw.topic_prefix {
        Some(t) => {
            check_topic_prefix(t.get_ref()).map_err(|m| cx.at(t, "mqtt.topic_prefix", m))?;
            t.get_ref().clone()
        }
        None => DEFAULT_TOPIC_PREFIX.to_owned(),
    };
    let client_id = match &raw.client_id {
        Some(c) => check_name(cx, c, "mqtt.client_id", MAX_CLIENT_ID, "client id")?,
        None => format!("ocellus-{device_id}")
            .chars()
            .take(MAX_CLIENT_ID)
            .collect(),
    };
    let keep_alive = match &raw.keep_alive_s {
        Some(k) => Duration::from_secs(int_in(cx, k, "mqtt.keep_alive_s", 5, 3600)? as u64),
        None => DEFAULT_KEEP_ALIVE,
    };
    let allow_insecure = raw.allow_insecure.as_ref().is_some_and(|a| *a.get_ref());
    let tls = if url.tls {
        if let Some(a) = raw.allow_insecure.as_ref().filter(|a| *a.get_ref()) {
            return Err(cx.at(
                a,
                "mqtt.allow_insecure",
                "only applies to plaintext mqtt:// URLs; with mqtts:// the broker's certificate is always checked. Remove it",
            ));
        }
        Some(tls_settings(cx, raw, dir)?)
    } else {
        check_plaintext(cx, raw, &url, allow_insecure)?;
        None
    };
    let credentials = credentials(cx, raw, dir)?;
    Ok(MqttConfig {
        host: url.host,
        port: url.port,
        topic_prefix,
        client_id,
        keep_alive,
        tls,
        credentials,
        allow_insecure,
    })
}

/// A plaintext `mqtt://` URL: no TLS keys, and beyond this machine only with `allow_insecure`
/// (events, and any password, would cross the network in clear).
fn check_plaintext(
    cx: &Cx<'_>,
    raw: &RawMqtt,
    url: &BrokerUrl,
    allow_insecure: bool,
) -> Result<()> {
    let tls_keys = [
        ("mqtt.ca_file", &raw.ca_file),
        ("mqtt.client_cert", &raw.client_cert),
        ("mqtt.client_key", &raw.client_key),
    ];
    if let Some((key, v)) = tls_keys
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .min_by_key(|(_, v)| v.span().start)
    {
        return Err(cx.at(
            v,
            key,
            format!(
                "only applies to TLS, but `mqtt.url` is \"{}\" (plaintext): use mqtts://{} for TLS, or remove this key",
                raw.url.get_ref(),
                url_host(&url.host)
            ),
        ));
    }
    if !allow_insecure && !is_loopback_host(&url.host) {
        return Err(cx.at(
            &raw.url,
            "mqtt.url",
            format!(
                "\"{}\" would send events (and any password) unencrypted over the network: use mqtts://{} (TLS, see {DOCS}), or, on a trusted network only, set `mqtt.allow_insecure = true`",
                raw.url.get_ref(),
                url_host(&url.host)
            ),
        ));
    }
    Ok(())
}

/// `mqtts://`: the TLS files, resolved and checked now (they must exist, be readable and hold
/// what they should), so a problem is reported at start-up with the line of its key.
fn tls_settings(cx: &Cx<'_>, raw: &RawMqtt, dir: &Path) -> Result<TlsSettings> {
    tls_files(
        cx,
        TlsKeys {
            section: "mqtt",
            anchor: raw.url.span(),
            ca_file: &raw.ca_file,
            client_cert: &raw.client_cert,
            client_key: &raw.client_key,
        },
        dir,
    )
}

/// The TLS keys of a section (`mqtt` or `cloud`).
pub(super) struct TlsKeys<'r> {
    pub(super) section: &'static str,
    /// Where to point when the problem has no key of its own.
    pub(super) anchor: Range<usize>,
    pub(super) ca_file: &'r Option<Spanned<String>>,
    pub(super) client_cert: &'r Option<Spanned<String>>,
    pub(super) client_key: &'r Option<Spanned<String>>,
}

/// The TLS files of a section, loaded once now by the transport to check them; its complaint is
/// pointed at the key it names, in the section's name.
pub(super) fn tls_files(cx: &Cx<'_>, raw: TlsKeys<'_>, dir: &Path) -> Result<TlsSettings> {
    let section = raw.section;
    let path = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<PathBuf>> {
        v.as_ref()
            .map(|v| resolve_path(cx, v, &format!("{section}.{key}"), dir))
            .transpose()
    };
    let settings = TlsSettings {
        ca_file: path(raw.ca_file, "ca_file")?,
        client_cert: path(raw.client_cert, "client_cert")?,
        client_key: path(raw.client_key, "client_key")?,
    };
    crate::transport::rustls_config(&settings).map_err(|e| {
        let (name, message) = match e {
            ocellus_delivery::Error::InvalidOption { name, message } => (name, message),
            other => ("mqtt.url".to_owned(), other.to_string()),
        };
        // Point at the key named; when it is absent (a missing half of the client pair, no
        // ca_file and no system CAs), at the key that needs it, else at the URL.
        let at = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        // transport names the keys `mqtt.*`; in [cloud] they are `cloud.*`
        let name = match name.strip_prefix("mqtt.") {
            Some(k) => format!("{section}.{k}"),
            None => name,
        };
        let message = message.replace("`mqtt.", &format!("`{section}."));
        let span = match name.strip_prefix(section).unwrap_or_default() {
            ".ca_file" => at(raw.ca_file),
            ".client_cert" => at(raw.client_cert).or_else(|| at(raw.client_key)),
            ".client_key" => at(raw.client_key).or_else(|| at(raw.client_cert)),
            _ => None,
        }
        .unwrap_or_else(|| raw.anchor.clone());
        let message = if message.contains("cannot open it") {
            format!(
                "{message}; relative paths are relative to the config file's directory ({})",
                dir.display()
            )
        } else {
            message
        };
        cx.err(Some(span), &name, message)
    })?;
    Ok(settings)
}

/// `mqtt.username` and at most one of `password_file`, `password_env`, `password`.
fn credentials(cx: &Cx<'_>, raw: &RawMqtt, dir: &Path) -> Result<Option<Credentials>> {
    let mut given: Vec<(&str, &Spanned<String>)> = [
        ("mqtt.password_file", &raw.password_file),
        ("mqtt.password_env", &raw.password_env),
        ("mqtt.password", &raw.password),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    given.sort_by_key(|(_, v)| v.span().start);
    if let [(first, _), (second, v), ..] = given.as_slice() {
        return Err(cx.at(
            v,
            second,
            format!(
                "`{first}` is set too: give the password one way only (`mqtt.password_file`, `mqtt.password_env` or `mqtt.password`)"
            ),
        ));
    }
    let Some(user) = &raw.username else {
        return match given.first() {
            Some((key, v)) => Err(cx.at(
                v,
                key,
                "needs `mqtt.username`: a password goes with a user name; add `username = \"...\"`",
            )),
            None => Ok(None),
        };
    };
    let username = user.get_ref();
    if username.is_empty() {
        return Err(cx.at(
            user,
            "mqtt.username",
            "is empty; give the user name, or remove the key to connect without one",
        ));
    }
    if username.len() > 65_535 || username.chars().any(char::is_control) {
        return Err(cx.at(
            user,
            "mqtt.username",
            "must be at most 65535 bytes without control characters",
        ));
    }
    let password = match given.first() {
        None => None,
        Some((key, v)) => Some(password(cx, key, v, dir)?),
    };
    Ok(Some(Credentials {
        username: username.clone(),
        password,
    }))
}

/// The password from the one key that gives it; never empty (MQTT has no empty password).
fn password(cx: &Cx<'_>, key: &str, v: &Spanned<String>, dir: &Path) -> Result<Secret> {
    let secret = match key {
        "mqtt.password_file" => secret_from_file(cx, v, dir, key, "password")?,
        "mqtt.password_env" => secret_from_env(cx, v, key, "password", "OCELLUS_MQTT_PASSWORD")?,
        _ => v.get_ref().clone(),
    };
    if secret.is_empty() {
        let what = match key {
            "mqtt.password_file" => "the first line of the file is empty",
            "mqtt.password_env" => "the environment variable is set but empty",
            _ => "is empty",
        };
        return Err(cx.at(
            v,
            key,
            format!(
                "{what}; MQTT sends no empty password: give the password, or remove the key to connect without one"
            ),
        ));
    }
    Ok(Secret::new(secret))
}

/// A secret (`what`) on the first line of the file `v` names, without its line ending. Messages
/// name the file, never its content.
pub(super) fn secret_from_file(
    cx: &Cx<'_>,
    v: &Spanned<String>,
    dir: &Path,
    key: &str,
    what: &str,
) -> Result<String> {
    let path = resolve_path(cx, v, key, dir)?;
    let fail = |what: String| cx.at(v, key, format!("{}: {what}", path.display()));
    let file = std::fs::File::open(&path).map_err(|e| {
        fail(format!(
            "cannot open it: {e}; relative paths are relative to the config file's directory ({})",
            dir.display()
        ))
    })?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(fail(format!(
            "is a directory; give the file whose first line is the {what}"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE {
        return Err(fail(format!(
            "is larger than {MAX_PASSWORD_FILE} bytes; it should hold the {what} on its first line"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| fail(format!("is not UTF-8 text; save the {what} as UTF-8")))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// A secret (`what`) in the environment variable `v` names.
pub(super) fn secret_from_env(
    cx: &Cx<'_>,
    v: &Spanned<String>,
    key: &str,
    what: &str,
    example: &str,
) -> Result<String> {
    let name = v.get_ref();
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(cx.at(
            v,
            key,
            format!(
                "\"{name}\" is not an environment variable name; give the name of the variable that holds the {what}, e.g. \"{example}\""
            ),
        ));
    }
    match std::env::var(name) {
        Ok(s) => Ok(s),
        Err(std::env::VarError::NotPresent) => Err(cx.at(
            v,
            key,
            format!(
                "the environment variable {name} is not set; set it where ocellus starts (e.g. systemd Environment= or EnvironmentFile=)"
            ),
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(cx.at(
            v,
            key,
            format!("the environment variable {name} is not valid UTF-8"),
        )),
    }
}

/// A parsed broker URL: `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address (IPv6 without the brackets).
    pub host: String,
    /// Port (default [`DEFAULT_MQTT_PORT`], [`DEFAULT_MQTTS_PORT`] with TLS).
    pub port: u16,
    /// `mqtts://` (also `ssl://`, `tls://`): TLS.
    pub tls: bool,
}

/// The host as written in a URL: IPv6 addresses in brackets.
pub(super) fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or `::1` (also as `::ffff:127.x.y.z`).
/// Plaintext `mqtt://` to any other host needs `mqtt.allow_insecure = true`.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback(),
        Ok(std::net::IpAddr::V6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Plaintext `mqtt://HOST[:PORT]` → (host, port); the error says how to write it. A TLS URL
/// (`mqtts://`) is refused here: use [`parse_broker_url`] where TLS can be set up.
pub fn parse_mqtt_url(url: &str) -> std::result::Result<(String, u16), String> {
    // a password in the URL is never quoted back
    let shown = crate::redact::url(url);
    let b = parse_broker_url(url)?;
    if b.tls {
        return Err(format!(
            "\"{shown}\": TLS (mqtts://) is not available here; give an mqtt:// URL, or use a config file with mqtts:// (see {DOCS})"
        ));
    }
    Ok((b.host, b.port))
}

/// How a broker URL is written, for the messages.
const URL_FORM: &str = "write it as mqtts://HOST:PORT (TLS) or mqtt://HOST:PORT, e.g. mqtts://broker.example.com:8883 or mqtt://127.0.0.1:1883";

/// `mqtt://HOST[:PORT]` (also `tcp://`) or `mqtts://HOST[:PORT]` (also `ssl://`, `tls://`); the
/// error says how to write it.
pub fn parse_broker_url(url: &str) -> std::result::Result<BrokerUrl, String> {
    // a password in the URL is never quoted back
    let shown = crate::redact::url(url);
    let form = URL_FORM;
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("\"{shown}\" is not a URL; {form}"));
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" | "tls" => true,
        _ => {
            return Err(format!(
                "\"{shown}\": unsupported scheme {scheme}://; {form}"
            ));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err(format!(
            "\"{shown}\": user names and passwords in the URL are not supported; {form}"
        ));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!("\"{shown}\" has a path, query or fragment; {form}"));
    }
    let (host, port) = split_host_port(&shown, rest)?;
    let port = match port {
        None if tls => DEFAULT_MQTTS_PORT,
        None => DEFAULT_MQTT_PORT,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && p.chars().all(|c| c.is_ascii_digit()) => n as u16,
            _ => {
                return Err(format!(
                    "\"{shown}\": port \"{p}\" is not a number in 1..=65535; {form}"
                ));
            }
        },
    };
    Ok(BrokerUrl {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// The host (checked) and the port text (not yet) of `rest`, the URL after its scheme; IPv6
/// addresses in brackets. `shown` is the URL as messages may quote it.
fn split_host_port<'r>(
    shown: &str,
    rest: &'r str,
) -> std::result::Result<(&'r str, Option<&'r str>), String> {
    let form = URL_FORM;
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(format!(
                "\"{shown}\": unclosed '[' in the IPv6 address; {form}"
            ));
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!(
                "\"{shown}\": \"{host}\" is not an IPv6 address; {form}"
            ));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(format!("\"{shown}\": unexpected text after ']'; {form}")),
            },
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("\"{shown}\" has no host; {form}"));
    }
    if !rest.starts_with('[')
        && let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "\"{shown}\": the host \"{host}\" contains {c:?}; {form} (IPv6 addresses go in brackets: mqtt://[::1]:1883)"
        ));
    }
    Ok((host, port))
}

/// `mqtt.topic_prefix`: one or more levels of name characters (no wildcards: it is published to).
fn check_topic_prefix(prefix: &str) -> std::result::Result<(), String> {
    let rule = "use one or more levels of letters, digits, '.', '_' and '-' separated by '/', e.g. \"ocellus\" or \"acme/store-12\"";
    if prefix.is_empty() {
        return Err(format!("is empty; {rule}"));
    }
    if prefix.len() > MAX_TOPIC_PREFIX {
        return Err(format!(
            "is {} characters long; at most {MAX_TOPIC_PREFIX}",
            prefix.len()
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        let why = match c {
            '+' | '#' => " (an MQTT wildcard)",
            _ => "",
        };
        return Err(format!("\"{prefix}\" contains {c:?}{why}; {rule}"));
    }
    if prefix.split('/').any(str::is_empty) {
        return Err(format!(
            "\"{prefix}\" has an empty level (a leading, trailing or doubled '/'); {rule}"
        ));
    }
    Ok(())
}
