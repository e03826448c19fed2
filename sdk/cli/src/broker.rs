//! The in-process MQTT broker for `ocellus demo` (rumqttd, feature `embedded-broker`).

/// Start a broker on 127.0.0.1 (`port`, or a free one) in a background thread; returns (host, port).
#[cfg(feature = "embedded-broker")]
pub(crate) fn start_embedded(port: Option<u16>) -> ocellus::Result<(String, u16)> {
    let io = |message: String| ocellus::Error::InvalidOption {
        name: "embedded broker".into(),
        message,
    };
    let port = match port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| io(format!("no free port on 127.0.0.1: {e}")))?,
    };
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 64
max_outgoing_packet_count = 200
max_segment_size = 10485760
max_segment_count = 10
[v4.1]
name = "ocellus-demo"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 65536
max_inflight_count = 200
dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&text).map_err(|e| io(format!("broker config: {e}")))?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("ocellus-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                eprintln!("embedded broker stopped: {e}");
            }
        })
        .map_err(|e| io(format!("cannot start the broker thread: {e}")))?;
    // wait until it accepts connections
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            return Err(io(format!(
                "the embedded broker did not start on 127.0.0.1:{port}"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(("127.0.0.1".into(), port))
}

#[cfg(not(feature = "embedded-broker"))]
pub(crate) fn start_embedded(_port: Option<u16>) -> ocellus::Result<(String, u16)> {
    Err(ocellus::Error::InvalidOption {
        name: "--broker".into(),
        message: "this build has no embedded broker (feature `embedded-broker`): pass --broker mqtt://HOST:PORT".into(),
    })
}
