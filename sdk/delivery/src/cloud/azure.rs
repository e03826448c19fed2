//! Azure IoT Hub's MQTT device protocol (MQTT 3.1.1 over TLS on port 8883): connection strings,
//! SAS tokens, and the topics of telemetry, the device twin, direct methods and cloud-to-device
//! messages. Pure functions: no I/O.
//!
//! Facts from Microsoft's "Communicate with an IoT hub using the MQTT protocol" and "Control
//! access to IoT Hub with shared access signatures".

use crate::transport::Secret;

/// The `api-version` in the MQTT user name.
pub const API_VERSION: &str = "2021-04-12";
/// IoT Hub's MQTT-over-TLS port.
pub const PORT: u16 = 8883;
/// Largest device-to-cloud message IoT Hub accepts (256 KB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Largest direct-method response payload IoT Hub accepts (128 KB).
pub const MAX_METHOD_RESPONSE_BYTES: usize = 128 * 1024;

/// A device (or module) connection string:
/// `HostName=…;DeviceId=…;SharedAccessKey=…` (or `…;x509=true`), optionally with `ModuleId=…`
/// and `GatewayHostName=…`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `HostName`: the hub, e.g. `myhub.azure-devices.net`.
    pub host_name: String,
    /// `DeviceId`.
    pub device_id: String,
    /// `ModuleId`, for a module identity.
    pub module_id: Option<String>,
    /// `GatewayHostName`: connect here (an IoT Edge gateway) instead of `HostName`.
    pub gateway_host_name: Option<String>,
    /// `SharedAccessKey`, base64 as given (checked to decode).
    pub shared_access_key: Option<Secret>,
    /// `x509=true`: the device authenticates with its certificate, no key.
    pub x509: bool,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .field("gateway_host_name", &self.gateway_host_name)
            .field("shared_access_key", &self.shared_access_key)
            .field("x509", &self.x509)
            .finish()
    }
}

impl ConnectionString {
    /// Parse a connection string. The message of an error says which part is wrong and never
    /// contains the key.
    pub fn parse(s: &str) -> Result<ConnectionString, String> {
        parse_connection_string(s)
    }

    /// The SAS resource URI, not encoded: `{host}/devices/{device}` (`…/modules/{module}`).
    pub fn resource_uri(&self) -> String {
        match &self.module_id {
            Some(module) => format!(
                "{}/devices/{}/modules/{module}",
                self.host_name, self.device_id
            ),
            None => format!("{}/devices/{}", self.host_name, self.device_id),
        }
    }

    /// The MQTT user name: `{host}/{device}/?api-version=2021-04-12` (module:
    /// `{host}/{device}/{module}/?api-version=…`).
    pub fn username(&self) -> String {
        match &self.module_id {
            Some(module) => format!(
                "{}/{}/{module}/?api-version={API_VERSION}",
                self.host_name, self.device_id
            ),
            None => format!(
                "{}/{}/?api-version={API_VERSION}",
                self.host_name, self.device_id
            ),
        }
    }

    /// The MQTT client id: the device id (module: `{device}/{module}`).
    pub fn client_id(&self) -> String {
        match &self.module_id {
            Some(module) => format!("{}/{module}", self.device_id),
            None => self.device_id.clone(),
        }
    }

    /// Where to connect: the gateway if given, else the hub.
    pub fn endpoint_host(&self) -> &str {
        self.gateway_host_name.as_deref().unwrap_or(&self.host_name)
    }

    /// The decoded shared access key (`None`: X.509).
    pub fn key(&self) -> Option<Vec<u8>> {
        if self.x509 {
            return None;
        }
        self.shared_access_key
            .as_ref()
            .and_then(|key| decode_key(key.expose()).ok())
    }

    /// The telemetry topic with its property bag:
    /// `devices/{device}/messages/events/{k=v&k=v}` (module:
    /// `devices/{device}/modules/{module}/messages/events/…`), keys and values URL-encoded.
    pub fn telemetry_topic(&self, properties: &[(&str, &str)]) -> String {
        let bag = property_bag(properties);
        match &self.module_id {
            Some(module) => format!(
                "devices/{}/modules/{module}/messages/events/{bag}",
                self.device_id
            ),
            None => format!("devices/{}/messages/events/{bag}", self.device_id),
        }
    }

    /// The topic filters a device subscribes to: twin responses, desired-property patches,
    /// direct methods, and (devices only, not modules) cloud-to-device messages.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut filters = vec![
            "$iothub/twin/res/#".to_owned(),
            "$iothub/twin/PATCH/properties/desired/#".to_owned(),
            "$iothub/methods/POST/#".to_owned(),
        ];
        // IoT Hub has no cloud-to-device messages for module identities.
        if self.module_id.is_none() {
            filters.push(format!("devices/{}/messages/devicebound/#", self.device_id));
        }
        filters
    }
}

/// Where a device's own connection string is found, for error messages.
const WHERE_TO_FIND: &str = "IoT Hub → Devices → the device → \"Primary connection string\"";

/// Longest device or module id IoT Hub accepts.
const MAX_ID_CHARS: usize = 128;

/// Longest DNS host name.
const MAX_HOST_CHARS: usize = 253;

/// The keys of a device connection string, as Azure writes them (case-sensitive).
const KNOWN_KEYS: [&str; 6] = [
    "HostName",
    "DeviceId",
    "ModuleId",
    "GatewayHostName",
    "SharedAccessKey",
    "x509",
];

fn parse_connection_string(s: &str) -> Result<ConnectionString, String> {
    let mut host_name: Option<&str> = None;
    let mut device_id: Option<&str> = None;
    let mut module_id: Option<&str> = None;
    let mut gateway: Option<&str> = None;
    let mut key: Option<&str> = None;
    let mut x509: Option<&str> = None;

    let s = s.trim();
    if s.is_empty() {
        return Err(format!(
            "the Azure connection string is empty: copy it from {WHERE_TO_FIND}"
        ));
    }
    for (index, part) in s.split(';').enumerate() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let number = index + 1;
        // Never echo a part we cannot name: it may be (a piece of) the key.
        let Some((name, value)) = part.split_once('=') else {
            return Err(format!(
                "part {number} of the Azure connection string has no '=': every part is \
                 Key=Value, separated by ';' (copy the whole string from {WHERE_TO_FIND})"
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        let slot = match name {
            "HostName" => &mut host_name,
            "DeviceId" => &mut device_id,
            "ModuleId" => &mut module_id,
            "GatewayHostName" => &mut gateway,
            "SharedAccessKey" => &mut key,
            "x509" => &mut x509,
            "SharedAccessKeyName" => {
                return Err(format!(
                    "this is a hub-level (service policy) connection string \
                     (it has SharedAccessKeyName), not a device's: use the device's own \
                     connection string, from {WHERE_TO_FIND}"
                ));
            }
            "SharedAccessSignature" => {
                return Err(format!(
                    "connection strings with a ready-made SharedAccessSignature are not \
                     supported: use the device's connection string with its SharedAccessKey, \
                     from {WHERE_TO_FIND}"
                ));
            }
            "" => {
                return Err(format!(
                    "part {number} of the Azure connection string has an empty key name \
                     (expected Key=Value)"
                ));
            }
            other => return Err(unknown_key(number, other)),
        };
        if slot.is_some() {
            return Err(format!(
                "{name} is given twice in the Azure connection string: keep one"
            ));
        }
        *slot = Some(value);
    }

    let host_name = host_name.ok_or_else(|| {
        format!("the Azure connection string has no HostName: copy it from {WHERE_TO_FIND}")
    })?;
    check_host("HostName", host_name)?;
    let device_id = device_id.ok_or_else(|| {
        format!("the Azure connection string has no DeviceId: copy it from {WHERE_TO_FIND}")
    })?;
    check_id("DeviceId", device_id)?;
    if let Some(module) = module_id {
        check_id("ModuleId", module)?;
    }
    if let Some(gateway) = gateway {
        check_host("GatewayHostName", gateway)?;
    }
    let x509 = match x509 {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err("x509 in the Azure connection string must be true or false".into());
        }
    };
    match (key, x509) {
        (None, false) => {
            return Err(format!(
                "the Azure connection string has neither SharedAccessKey nor x509=true: \
                 add the device's key (copy the connection string from {WHERE_TO_FIND}) or \
                 x509=true for a device that authenticates with its certificate"
            ));
        }
        (Some(_), true) => {
            return Err(
                "the Azure connection string has both SharedAccessKey and x509=true: keep \
                 SharedAccessKey for a symmetric-key device, or x509=true (and no key) for \
                 a certificate device"
                    .into(),
            );
        }
        (Some(k), false) => {
            decode_key(k)
                .map_err(|e| format!("SharedAccessKey in the Azure connection string: {e}"))?;
        }
        (None, true) => {}
    }

    Ok(ConnectionString {
        host_name: host_name.to_owned(),
        device_id: device_id.to_owned(),
        module_id: module_id.map(str::to_owned),
        gateway_host_name: gateway.map(str::to_owned),
        shared_access_key: key.map(Secret::new),
        x509,
    })
}

/// The error for a key we do not know. Names it only when it looks like a key name: a
/// "name" that is really a piece of a pasted key must not end up in a log.
fn unknown_key(number: usize, name: &str) -> String {
    let looks_like_name = name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !looks_like_name {
        return format!(
            "part {number} of the Azure connection string is not Key=Value with a known key \
             (HostName, DeviceId, ModuleId, GatewayHostName, SharedAccessKey, x509)"
        );
    }
    match KNOWN_KEYS.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        Some(known) => format!(
            "unknown key '{name}' in the Azure connection string: keys are case-sensitive, \
             write '{known}'"
        ),
        None => format!(
            "unknown key '{name}' in the Azure connection string: a device connection string \
             has HostName, DeviceId, SharedAccessKey (or x509=true), and optionally ModuleId \
             and GatewayHostName"
        ),
    }
}

/// A character for a message: printable ASCII as itself, a space in words, anything else as
/// `U+XXXX`.
fn describe_char(c: char) -> String {
    if c == ' ' {
        "a space".to_owned()
    } else if c.is_ascii_control() || c.is_control() {
        format!("the control character U+{:04X}", u32::from(c))
    } else if !c.is_ascii() {
        format!("the non-ASCII character U+{:04X}", u32::from(c))
    } else {
        format!("'{c}'")
    }
}

/// A DNS host name: labels of ASCII letters, digits and `-`, separated by dots.
fn check_host(what: &str, host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(format!("{what} in the Azure connection string is empty"));
    }
    if host.len() > MAX_HOST_CHARS {
        return Err(format!(
            "{what} in the Azure connection string is longer than {MAX_HOST_CHARS} characters"
        ));
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "{what} in the Azure connection string contains {}, which a host name cannot: give \
             the host name only (like myhub.azure-devices.net), without scheme, port or path",
            describe_char(c)
        ));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!(
                "{what} in the Azure connection string has an empty label (two dots in a row, or \
                 a dot at the start or end)"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "{what} in the Azure connection string has a label longer than 63 characters"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{what} in the Azure connection string has a label that starts or ends with '-'"
            ));
        }
    }
    Ok(())
}

/// A device or module id: 1 to 128 of ASCII letters, digits and `- . % _ * ? ! ( ) , : = @ $ '`.
/// Strict on purpose: the id becomes an MQTT topic level.
fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{what} in the Azure connection string is empty"));
    }
    let chars = id.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(format!(
            "{what} in the Azure connection string is {chars} characters long; IoT Hub allows \
             at most {MAX_ID_CHARS}"
        ));
    }
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '.'
                    | '%'
                    | '_'
                    | '*'
                    | '?'
                    | '!'
                    | '('
                    | ')'
                    | ','
                    | ':'
                    | '='
                    | '@'
                    | '$'
                    | '\''
            )
    };
    match id.chars().find(|c| !allowed(*c)) {
        None => Ok(()),
        Some(c @ ('/' | '+' | '#')) => Err(format!(
            "{what} in the Azure connection string contains '{c}': IoT Hub does not allow it in \
             an id, and in an MQTT topic '/' separates levels and '+' and '#' are wildcards"
        )),
        Some(c) => Err(format!(
            "{what} in the Azure connection string contains {}: IoT Hub allows only ASCII \
             letters, digits and - . % _ * ? ! ( ) , : = @ $ '",
            describe_char(c)
        )),
    }
}

/// Decode a base64 shared access key.
pub fn decode_key(b64: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    if b64.is_empty() {
        return Err(
            "the shared access key is empty: copy the device's primary key (base64) from \
                    IoT Hub → Devices → the device"
                .into(),
        );
    }
    // The decoder's own error names the offending byte and offset: a piece of the key. Say what
    // is wrong in general terms instead.
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| {
            "the shared access key is not valid base64 (standard alphabet A-Z a-z 0-9 + / with '=' \
             padding): copy the device's primary key again from IoT Hub → Devices → the device"
                .to_owned()
        })?;
    if key.is_empty() {
        return Err(
            "the shared access key decodes to no bytes: copy the device's primary key \
                    from IoT Hub → Devices → the device"
                .into(),
        );
    }
    Ok(key)
}

/// Percent-encode everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// upper-case hex: what IoT Hub expects in SAS tokens and property bags.
pub fn url_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Percent-decode (`+` stays `+`); `None` if a `%` is not followed by two hex digits or the
/// result is not UTF-8.
pub fn url_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex_value(bytes.next()?)?;
            let lo = hex_value(bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The value of one hex digit (either case).
fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// A SAS token: `SharedAccessSignature sr={enc(uri)}&sig={enc(b64(hmac))}&se={expiry}` where the
/// HMAC-SHA256 is keyed with the decoded key over `enc(uri) + "\n" + expiry` and `expiry` is in
/// seconds since the Unix epoch.
pub fn sas_token(resource_uri: &str, key: &[u8], expiry: u64) -> String {
    use base64::Engine;
    use ring::hmac;
    // Encoding of `sr`: RFC 3986 percent-encoding (everything but `A-Z a-z 0-9 - . _ ~`), upper-case
    // hex, of the URI exactly as given (not lower-cased). Microsoft's Python sample uses
    // `urllib.parse.quote_plus(uri)`, which gives the same bytes for every character Azure allows
    // in host names and device/module ids (it keeps `- . _ ~`, encodes `/ : % * ? ! ( ) , = @ $ '`;
    // it differs only on a space, which ids cannot contain). The C# (`WebUtility.UrlEncode`) and
    // JavaScript (`encodeURIComponent`) samples leave some of `! * ( ) '` unencoded, so for ids
    // with those characters the SDKs disagree among themselves; presumably the hub verifies the
    // HMAC over the `sr` as written in the token (not checked against a live hub). Either way we
    // sign exactly the `sr` we send.
    let sr = url_encode(resource_uri);
    let to_sign = format!("{sr}\n{expiry}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry}",
        url_encode(&sig)
    )
}

/// `k=v&k=v`, keys and values URL-encoded.
pub fn property_bag(properties: &[(&str, &str)]) -> String {
    properties
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A message the hub sent, recognised from its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`: the answer to a twin GET or a
    /// reported-properties PATCH.
    TwinResponse {
        /// HTTP-like status (200 GET ok, 204 PATCH ok, 400, 429, 5xx).
        status: u16,
        /// The request id we sent.
        rid: String,
        /// The twin's new reported version (PATCH answers).
        version: Option<u64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}`: desired properties changed.
    DesiredPatch {
        /// The desired properties' new version.
        version: Option<u64>,
    },
    /// `$iothub/methods/POST/{name}/?$rid={rid}`: a direct method call.
    Method {
        /// Method name.
        name: String,
        /// Request id to answer with.
        rid: String,
    },
    /// `devices/{device}/messages/devicebound/{property bag}`: a cloud-to-device message.
    CloudToDevice {
        /// Its properties, decoded.
        properties: Vec<(String, String)>,
    },
}

/// Recognise a topic the hub publishes to (for `device`); `None`: not one of the hub's.
pub fn parse_inbound(topic: &str, device: &str) -> Option<Inbound> {
    if let Some(rest) = topic.strip_prefix("$iothub/twin/res/") {
        let (status, query) = rest.split_once("/?")?;
        let status = parse_status(status)?;
        let rid = query_param(query, "$rid").filter(|rid| !rid.is_empty())?;
        let version = query_param(query, "$version").and_then(|v| v.parse().ok());
        return Some(Inbound::TwinResponse {
            status,
            rid: rid.to_owned(),
            version,
        });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/") {
        let query = if rest.is_empty() {
            ""
        } else {
            rest.strip_prefix('?')?
        };
        let version = query_param(query, "$version").and_then(|v| v.parse().ok());
        return Some(Inbound::DesiredPatch { version });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/methods/POST/") {
        let (name, query) = rest.split_once("/?")?;
        if name.is_empty() || name.contains('/') {
            return None;
        }
        let rid = query_param(query, "$rid").filter(|rid| !rid.is_empty())?;
        return Some(Inbound::Method {
            name: name.to_owned(),
            rid: rid.to_owned(),
        });
    }
    if device.is_empty() {
        return None;
    }
    let rest = topic.strip_prefix("devices/")?.strip_prefix(device)?;
    let bag = match rest.strip_prefix("/messages/devicebound") {
        Some("") => "",
        Some(after) => after.strip_prefix('/')?,
        None => return None,
    };
    let properties = bag
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| url_decode(s).unwrap_or_else(|| s.to_owned());
            (decode(k), decode(v))
        })
        .collect();
    Some(Inbound::CloudToDevice { properties })
}

/// An HTTP-like status: one to three decimal digits, 100 to 599.
fn parse_status(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|status| (100..=599).contains(status))
}

/// The value of the first `name=value` in an `&`-separated query (`name` alone: empty value).
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

/// `$iothub/twin/GET/?$rid={rid}`.
pub fn twin_get_topic(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

/// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`.
pub fn twin_reported_topic(rid: &str) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

/// `$iothub/methods/res/{status}/?$rid={rid}`.
pub fn method_response_topic(status: u16, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
