#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! TLS against a real mosquitto on loopback (see `common::tls`): mutual TLS and a password get a
//! QoS 1 message to an independent `mosquitto_sub`; a wrong CA, a wrong password and a missing
//! client certificate fail with a permanent [`ocellus::transport::Problem`] that names the key to
//! check. rumqttc is driven directly, with the rustls configuration from
//! [`ocellus::transport::rustls_config`]. Every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::tls::{PASSWORD, TlsBroker, USER, credentials};
use ocellus::transport::{Credentials, Problem, Secret, TlsSettings, explain, rustls_config};
use rumqttc::{
    Client, Connection, ConnectionError, Event, Incoming, MqttOptions, QoS, TlsConfiguration,
    Transport,
};

/// How long any connection attempt may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// A rumqttc client for the broker, with TLS from `tls` and, if given, the credentials.
fn client(
    broker: &TlsBroker,
    id: &str,
    tls: &TlsSettings,
    creds: Option<&Credentials>,
) -> (Client, Connection) {
    let mut options = MqttOptions::new(id, "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let config = rustls_config(tls).unwrap();
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    if let Some(c) = creds {
        options.set_credentials(
            c.username.clone(),
            c.password.as_ref().map(Secret::expose).unwrap_or_default(),
        );
    }
    Client::new(options, 10)
}

/// The first event matching `want`, or the first connection error, within [`DEADLINE`].
fn next(
    connection: &mut Connection,
    want: impl Fn(&Event) -> bool,
    broker: &TlsBroker,
) -> Result<Event, Box<ConnectionError>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!(
                "nothing within {DEADLINE:?}; mosquitto's log:\n{}",
                broker.log()
            );
        }
        match connection.recv_timeout(left) {
            Ok(Ok(event)) if want(&event) => return Ok(event),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Box::new(e)),
            Err(_) => {} // timed out: the deadline check above ends it
        }
    }
}

/// Connect and expect a failure; explain it.
fn refused(broker: &TlsBroker, tls: &TlsSettings, creds: Option<&Credentials>) -> Problem {
    let (_client, mut connection) = client(broker, "ocellus-tls-refused", tls, creds);
    match next(&mut connection, |_| false, broker) {
        Ok(e) => panic!("unexpected event {e:?}"),
        Err(e) => {
            let p = explain(&e);
            eprintln!("{e:?}\n→ {p:?}");
            assert!(
                !p.message.contains(PASSWORD),
                "the password is in the message: {p:?}"
            );
            p
        }
    }
}

#[test]
fn mutual_tls_and_password_deliver_a_qos1_message() {
    let broker = TlsBroker::start();
    let sub = broker.subscriber("tls-test/#");
    let (client, mut connection) = client(
        &broker,
        "ocellus-tls-ok",
        &broker.pki.client_settings(),
        Some(&credentials()),
    );
    let connack = next(
        &mut connection,
        |e| matches!(e, Event::Incoming(Incoming::ConnAck(_))),
        &broker,
    );
    assert!(connack.is_ok(), "{connack:?}\n{}", broker.log());
    client
        .publish(
            "tls-test/cam/event",
            QoS::AtLeastOnce,
            false,
            "hello over TLS",
        )
        .unwrap();
    let puback = next(
        &mut connection,
        |e| matches!(e, Event::Incoming(Incoming::PubAck(_))),
        &broker,
    );
    assert!(puback.is_ok(), "{puback:?}");
    assert!(
        sub.wait_for(DEADLINE, |lines| lines
            .iter()
            .any(|l| l == "tls-test/cam/event hello over TLS")),
        "the subscriber got {:?}\n{}",
        sub.lines(),
        broker.log()
    );
    client.disconnect().unwrap();
}

#[test]
fn configure_sets_tls_and_credentials_on_the_options() {
    let broker = TlsBroker::start();
    let mut options = MqttOptions::new("ocellus-tls-configure", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    ocellus::transport::configure(
        &mut options,
        Some(&broker.pki.client_settings()),
        Some(&credentials()),
    )
    .unwrap();
    let (client, mut connection) = Client::new(options, 10);
    let connack = next(
        &mut connection,
        |e| matches!(e, Event::Incoming(Incoming::ConnAck(_))),
        &broker,
    );
    assert!(connack.is_ok(), "{connack:?}\n{}", broker.log());
    client.disconnect().unwrap();
}

#[test]
fn a_broker_signed_by_another_ca_is_not_trusted() {
    let broker = TlsBroker::start();
    let tls = TlsSettings {
        ca_file: Some(broker.pki.wrong_ca.clone()),
        ..broker.pki.client_settings()
    };
    let p = refused(&broker, &tls, Some(&credentials()));
    assert!(p.permanent, "{p:?}");
    assert!(p.message.contains("not trusted"), "{p:?}");
    assert!(p.message.contains("mqtt.ca_file"), "{p:?}");
}

#[test]
fn the_system_roots_do_not_trust_a_private_ca() {
    let broker = TlsBroker::start();
    let tls = TlsSettings {
        ca_file: None,
        ..broker.pki.client_settings()
    };
    let p = refused(&broker, &tls, Some(&credentials()));
    assert!(p.permanent, "{p:?}");
    assert!(p.message.contains("mqtt.ca_file"), "{p:?}");
}

#[test]
fn a_wrong_password_is_permanent() {
    let broker = TlsBroker::start();
    let wrong = Credentials {
        username: USER.into(),
        password: Some(Secret::new("not-the-password")),
    };
    let p = refused(&broker, &broker.pki.client_settings(), Some(&wrong));
    assert!(p.permanent, "{p:?}");
    assert!(p.message.contains("mqtt.username"), "{p:?}");
    assert!(p.message.contains("mqtt.password_file"), "{p:?}");
    assert!(!p.message.contains("not-the-password"), "{p:?}");
    // No credentials at all: the broker allows no anonymous clients.
    let p = refused(&broker, &broker.pki.client_settings(), None);
    assert!(p.permanent && p.message.contains("mqtt.username"), "{p:?}");
}

#[test]
fn a_missing_client_certificate_is_permanent() {
    let broker = TlsBroker::start();
    let tls = TlsSettings {
        ca_file: Some(broker.pki.ca.clone()),
        client_cert: None,
        client_key: None,
    };
    let p = refused(&broker, &tls, Some(&credentials()));
    assert!(p.permanent, "{p:?}");
    assert!(p.message.contains("mqtt.client_cert"), "{p:?}");
}

#[test]
fn a_client_certificate_from_another_ca_is_permanent() {
    let broker = TlsBroker::start();
    let tls = TlsSettings {
        ca_file: Some(broker.pki.ca.clone()),
        client_cert: Some(broker.pki.untrusted_client_cert.clone()),
        client_key: Some(broker.pki.untrusted_client_key.clone()),
    };
    let p = refused(&broker, &tls, Some(&credentials()));
    assert!(p.permanent, "{p:?}");
    assert!(p.message.contains("mqtt.client_cert"), "{p:?}");
}

#[test]
fn the_certificate_name_must_match_the_host() {
    // The server certificate is for 127.0.0.1 and localhost. No other name reaches the loopback
    // broker portably, so run the handshake with rustls itself, for a name the certificate does
    // not carry, and explain the error as rumqttc would report it.
    let broker = TlsBroker::start();
    let config = rustls_config(&broker.pki.client_settings()).unwrap();
    let name = rustls::pki_types::ServerName::try_from("broker.example.com").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", broker.port())).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.set_write_timeout(Some(DEADLINE)).unwrap();
    let err = conn.complete_io(&mut tcp).unwrap_err();
    let p = explain(&ConnectionError::Tls(rumqttc::TlsError::Io(err)));
    assert!(p.permanent, "{p:?}");
    assert!(
        p.message.contains("does not match the host in `mqtt.url`"),
        "{p:?}"
    );
}

#[test]
fn plaintext_to_the_tls_port_is_transient_but_hints_at_mqtts() {
    let broker = TlsBroker::start();
    let mut options = MqttOptions::new("ocellus-plain", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (_client, mut connection) = Client::new(options, 10);
    let e = next(&mut connection, |_| false, &broker).unwrap_err();
    let p = explain(&e);
    eprintln!("{e:?}\n→ {p:?}");
    assert!(!p.permanent, "{p:?}");
    assert!(p.message.contains("mqtts://"), "{p:?}");
}

#[test]
fn pem_errors_name_the_key_and_the_file() {
    let broker = TlsBroker::start_with(false);
    // The server key is not a certificate; the CA certificate is not a key.
    let e = rustls_config(&TlsSettings {
        ca_file: Some(broker.pki.server_key.clone()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("mqtt.ca_file") && e.contains("server.key"),
        "{e}"
    );
    assert!(e.contains("no PEM certificate found in it"), "{e}");
    let e = rustls_config(&TlsSettings {
        ca_file: Some(broker.pki.ca.clone()),
        client_cert: Some(broker.pki.client_cert.clone()),
        client_key: Some(broker.pki.untrusted_client_key.clone()),
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("mqtt.client_key") && e.contains("the key does not match the certificate"),
        "{e}"
    );
    // Without a client certificate the broker started with `require_certificate false` takes
    // the password alone.
    let tls = TlsSettings {
        ca_file: Some(broker.pki.ca.clone()),
        ..Default::default()
    };
    let (client, mut connection) = client(&broker, "ocellus-tls-pw", &tls, Some(&credentials()));
    let connack = next(
        &mut connection,
        |e| matches!(e, Event::Incoming(Incoming::ConnAck(_))),
        &broker,
    );
    assert!(connack.is_ok(), "{connack:?}\n{}", broker.log());
    client.disconnect().unwrap();
}
