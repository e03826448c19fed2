//! Cloud IoT hub profiles: how ocellus connects to Azure IoT Hub or AWS IoT Core, which topics it
//! uses there, and how the hub manages the device (device twin or named shadow, direct methods).
//! The events themselves are the same as with a plain MQTT broker; a profile only changes the
//! connection and the topics. Generic MQTT ([`Profile::Generic`]) is the default.
//!
//! | | generic MQTT | Azure IoT Hub | AWS IoT Core |
//! |---|---|---|---|
//! | events | `{prefix}/{device}/events/{type}` | `devices/{device}/messages/events/{property bag}` | `cloud.telemetry_topic` |
//! | status (`online`/`offline`, Last Will) | `{prefix}/{device}/status`, retained | telemetry with `type=status` | `ocellus/{thing}/status`, retained |
//! | health | `{prefix}/{device}/health`, retained | twin reported property `health` | named shadow, reported `health` |
//! | management | – | twin desired properties, direct methods, C2D | named shadow desired state |
//! | authentication | user name + password and/or client certificate | SAS token (renewed) or X.509 | X.509 (mutual TLS) |

pub mod aws;
pub mod azure;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ocellus_core::event::Event;

/// How long a SAS token is valid by default (`cloud.sas_ttl_s`).
pub const DEFAULT_SAS_TTL: Duration = Duration::from_secs(3600);
/// The default AWS telemetry topic template (`cloud.telemetry_topic`).
pub const DEFAULT_AWS_TELEMETRY_TOPIC: &str = "ocellus/{thing}/events/{type}";
/// The default AWS named shadow (`cloud.shadow`).
pub const DEFAULT_AWS_SHADOW: &str = "ocellus";

/// Which hub the publisher talks to, and what that changes on the wire.
#[derive(Debug, Clone, Default)]
pub enum Profile {
    /// Any MQTT 3.1.1 broker: the topics of [`crate::publish`].
    #[default]
    Generic,
    /// Azure IoT Hub.
    Azure(Arc<AzureProfile>),
    /// AWS IoT Core.
    Aws(Arc<AwsProfile>),
}

/// Azure IoT Hub: the device identity and how its SAS tokens are made.
#[derive(Debug, Clone)]
pub struct AzureProfile {
    /// The parsed connection string.
    pub connection: azure::ConnectionString,
    /// Lifetime of each SAS token; a new one is used after three quarters of it.
    pub sas_ttl: Duration,
}

/// AWS IoT Core: the thing and its topics.
#[derive(Debug, Clone)]
pub struct AwsProfile {
    /// The thing name (also the MQTT client id).
    pub thing: String,
    /// The telemetry topic template: `{thing}`, `{device}` and `{type}` are replaced.
    pub telemetry_topic: String,
    /// The named shadow the device reports to.
    pub shadow: String,
}

/// Where health goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HealthRoute {
    /// Retained on this topic.
    Retained(String),
    /// A device-twin reported-properties patch `{"health": …}`.
    AzureReported,
    /// A named-shadow update `{"state":{"reported":{"health": …}}}` on this topic.
    AwsShadow(String),
}

/// The wire details the connection thread needs.
#[derive(Debug, Clone)]
pub(crate) struct Wire {
    pub status_topic: String,
    pub status_retain: bool,
    pub health: HealthRoute,
    pub subscriptions: Vec<String>,
}

/// A SAS token signer for the connection thread.
#[derive(Clone)]
pub(crate) struct Sas {
    resource_uri: String,
    key: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for Sas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sas")
            .field("resource_uri", &self.resource_uri)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Sas {
    /// A fresh token and when to replace it: after three quarters of its real life (the expiry
    /// is whole seconds, so up to a second shorter than the ttl), leaving the last quarter for
    /// the replacement.
    pub fn token(&self) -> Renewal {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let ttl = self.ttl.max(Duration::from_secs(2));
        let expiry = (now + ttl).as_secs();
        let life = Duration::from_secs(expiry).saturating_sub(now);
        Renewal {
            token: azure::sas_token(&self.resource_uri, &self.key, expiry),
            renew_at: Instant::now() + life.mul_f64(0.75),
            drain: life / 16,
        }
    }
}

/// A SAS token and its replacement plan.
pub(crate) struct Renewal {
    /// The token (the MQTT password).
    pub token: String,
    /// When to start replacing it.
    pub renew_at: Instant,
    /// Longest wait for the events in flight before the DISCONNECT: a sixteenth of the token's
    /// life (the connection is dropped after twice that), so the old connection is gone well
    /// before the token expires (IoT Hub cuts it then).
    pub drain: Duration,
}

impl Profile {
    /// The topic an event goes to.
    pub fn event_topic(&self, prefix: &str, event: &Event) -> String {
        match self {
            Profile::Generic => event.topic(prefix),
            Profile::Azure(a) => a.connection.telemetry_topic(&[
                ("$.mid", &event.id),
                ("$.ct", "application/json"),
                ("$.ce", "utf-8"),
                ("type", event.kind.as_str()),
                ("schema", ocellus_core::event::SCHEMA),
            ]),
            Profile::Aws(a) => aws::telemetry_topic(&a.telemetry_topic, &a.thing, event),
        }
    }

    /// A short name for logs and `get_config`: `mqtt`, `azure-iot-hub`, `aws-iot-core`.
    pub fn kind(&self) -> &'static str {
        match self {
            Profile::Generic => "mqtt",
            Profile::Azure(_) => "azure-iot-hub",
            Profile::Aws(_) => "aws-iot-core",
        }
    }

    /// What the logs call the far end.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Profile::Generic => "the MQTT broker",
            Profile::Azure(_) => "Azure IoT Hub",
            Profile::Aws(_) => "AWS IoT Core",
        }
    }

    pub(crate) fn wire(&self, prefix: &str, device: &str) -> Wire {
        match self {
            Profile::Generic => Wire {
                status_topic: format!("{prefix}/{device}/status"),
                status_retain: true,
                health: HealthRoute::Retained(format!("{prefix}/{device}/health")),
                subscriptions: Vec::new(),
            },
            Profile::Azure(a) => Wire {
                status_topic: a.connection.telemetry_topic(&[
                    ("$.ct", "text/plain"),
                    ("$.ce", "utf-8"),
                    ("type", "status"),
                ]),
                // IoT Hub has no retained messages
                status_retain: false,
                health: HealthRoute::AzureReported,
                subscriptions: a.connection.subscriptions(),
            },
            Profile::Aws(a) => Wire {
                status_topic: format!("ocellus/{}/status", a.thing),
                status_retain: true,
                health: HealthRoute::AwsShadow(aws::shadow_topic(&a.thing, &a.shadow, "update")),
                subscriptions: aws::subscriptions(&a.thing, &a.shadow),
            },
        }
    }

    pub(crate) fn sas(&self) -> Option<Sas> {
        match self {
            Profile::Azure(a) => a.connection.key().map(|key| Sas {
                resource_uri: a.connection.resource_uri(),
                key,
                ttl: a.sas_ttl,
            }),
            _ => None,
        }
    }

    /// A connection problem reworded for the profile's config keys.
    pub(crate) fn reword(&self, p: crate::transport::Problem) -> crate::transport::Problem {
        use crate::transport::Problem;
        let refused = p.permanent
            && ["user name or password", "not authorized", "client id"]
                .iter()
                .any(|m| p.message.contains(m));
        match self {
            Profile::Generic => p,
            Profile::Azure(a) if refused && a.connection.x509 => Problem {
                message: "IoT Hub refused the device's certificate: check `cloud.client_cert` (an X.509 device's certificate must be the one registered for it, or for a CA-signed device have the DeviceId as its subject CN) and `cloud.connection_string` (HostName, DeviceId), and that the device exists and is enabled".into(),
                permanent: true,
            },
            Profile::Azure(_) if refused => Problem {
                message: "IoT Hub refused the device: check `cloud.connection_string` (HostName, DeviceId and SharedAccessKey: a regenerated key invalidates the old one), that the device exists and is enabled, and that this device's clock is right (SAS tokens carry an expiry time)".into(),
                permanent: true,
            },
            // transport names the `[mqtt]` keys; the TLS ones have the same names in `[cloud]`
            _ => Problem {
                message: p.message.replace("`mqtt.", "`cloud."),
                permanent: p.permanent,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn event() -> Event {
        let re = ocellus_core::rules::RuleEvent {
            rule: Arc::from("door"),
            frame: 1,
            track: Some(3),
            label: Some(Arc::from("person")),
            score: Some(0.9),
            bbox: Some([0.1, 0.1, 0.2, 0.3]),
            kind: ocellus_core::rules::RuleEventKind::ZoneEntered,
        };
        Event::from_rule(&Arc::from("cam"), SystemTime::now(), &re)
    }

    fn azure() -> Profile {
        Profile::Azure(Arc::new(AzureProfile {
            connection: azure::ConnectionString::parse(
                "HostName=h.azure-devices.net;DeviceId=cam;SharedAccessKey=c2VjcmV0LWtleS1mb3Itb2NlbGx1cy10ZXN0cy0zMmI=",
            )
            .unwrap(),
            sas_ttl: Duration::from_secs(60),
        }))
    }

    #[test]
    fn each_profile_routes_events_status_and_health() {
        let e = event();
        assert_eq!(
            Profile::Generic.event_topic("shop", &e),
            "shop/cam/events/zone_entered"
        );
        let w = Profile::Generic.wire("shop", "cam");
        assert_eq!(
            (w.status_topic.as_str(), w.status_retain),
            ("shop/cam/status", true)
        );
        assert_eq!(w.health, HealthRoute::Retained("shop/cam/health".into()));
        assert!(w.subscriptions.is_empty());

        let az = azure();
        assert_eq!(
            az.event_topic("ignored", &e),
            format!(
                "devices/cam/messages/events/%24.mid={}&%24.ct=application%2Fjson&%24.ce=utf-8&type=zone_entered&schema=ocellus.event%2F1",
                e.id
            )
        );
        let w = az.wire("ignored", "cam");
        assert!(!w.status_retain, "IoT Hub keeps no retained messages");
        assert!(
            w.status_topic.ends_with("type=status"),
            "{}",
            w.status_topic
        );
        assert_eq!(w.health, HealthRoute::AzureReported);
        assert!(
            w.subscriptions
                .iter()
                .any(|s| s == "$iothub/methods/POST/#")
        );

        let aws = Profile::Aws(Arc::new(AwsProfile {
            thing: "door-1".into(),
            telemetry_topic: "dt/{thing}/{type}".into(),
            shadow: "counting".into(),
        }));
        assert_eq!(aws.event_topic("ignored", &e), "dt/door-1/zone_entered");
        let w = aws.wire("ignored", "cam");
        assert_eq!(w.status_topic, "ocellus/door-1/status");
        assert_eq!(
            w.health,
            HealthRoute::AwsShadow("$aws/things/door-1/shadow/name/counting/update".into())
        );
    }

    #[test]
    fn sas_tokens_are_fresh_and_renewed_at_three_quarters() {
        let sas = azure().sas().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let r = sas.token();
        let token = &r.token;
        let se: u64 = token.rsplit("se=").next().unwrap().parse().unwrap();
        assert!((now + 59..=now + 61).contains(&se), "{token}");
        assert!(
            token.starts_with("SharedAccessSignature sr=h.azure-devices.net%2Fdevices%2Fcam&sig=")
        );
        // renewal at 3/4 of the real life (59 to 60 s); the drain is a sixteenth of it
        let left = r.renew_at.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_millis(44_200) && left <= Duration::from_secs(45),
            "{left:?}"
        );
        assert!(
            r.drain <= Duration::from_millis(3_750) && r.drain > Duration::from_millis(3_500),
            "{:?}",
            r.drain
        );
        assert!(Profile::Generic.sas().is_none());
        assert!(!format!("{sas:?}").contains("c2VjcmV0"), "the key in Debug");
    }
}
