//! Publishing events over MQTT (rumqttc): QoS 1, a retained `status` with a Last Will, reconnection
//! with backoff, and a bound on what waits in memory. [`Publisher::publish`] never blocks the caller.
//!
//! ```text
//! pipeline ──try_send──▶ [bounded queue: max_pending_events] ──▶ sender thread ──▶ rumqttc request
//!   (drops + counts                                               (blocks here,      channel (64)
//!    when full)                                                    not upstream)        │
//!                                                         connection thread ◀──────────┘
//!                                                         (drives the event loop, counts PUBACKs,
//!                                                          reconnects with backoff)
//! ```
//!
//! Topics: events on `{prefix}/{device}/events/{type}`; `{prefix}/{device}/status` is retained:
//! `online` after every connect, `offline` on a clean stop and as the Last Will, so a killed process
//! or a cut network also ends in `offline`.
//!
//! Delivery today: the session is persistent (`clean_session = false`), so QoS 1 messages in flight
//! when the connection drops are resent after reconnecting to a broker that kept the session. Events
//! wait in memory only (at most `max_pending_events` + 64 + the in-flight window); a broker that
//! restarts without its session store, or a full queue, loses them — counted in
//! [`PublishStats::dropped`]. The durable on-disk queue replaces the in-memory queue behind this same
//! interface.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event as MqttEvent, LastWill, MqttOptions, Packet, QoS};

use crate::error::{Error, Result};
use crate::event::Event;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id.
    pub client_id: String,
    /// Topic prefix (one or more levels).
    pub topic_prefix: String,
    /// Device id (a topic level).
    pub device: Arc<str>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Bound on events waiting in memory for the broker.
    pub max_pending_events: usize,
}

impl MqttSettings {
    /// `{prefix}/{device}/status`.
    pub fn status_topic(&self) -> String {
        format!("{}/{}/status", self.topic_prefix, self.device)
    }
}

/// Counters, shared with the publisher's threads.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Events accepted by [`Publisher::publish`].
    pub accepted: AtomicU64,
    /// Events refused because the in-memory queue was full.
    pub dropped: AtomicU64,
    /// QoS 1 messages handed to the MQTT client (events and status).
    pub sent: AtomicU64,
    /// Events handed to the MQTT client.
    pub events_sent: AtomicU64,
    /// PUBACKs received.
    pub acked: AtomicU64,
    /// Payload bytes of the events handed to the MQTT client.
    pub event_bytes: AtomicU64,
    /// Connections made (1 = the first connect; more = reconnects).
    pub connects: AtomicU64,
    /// Whether the client is connected now.
    pub connected: AtomicBool,
    /// The last connection error, if any.
    pub last_error: Mutex<Option<String>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishSummary {
    /// Events accepted.
    pub accepted: u64,
    /// Events dropped (queue full).
    pub dropped: u64,
    /// QoS 1 messages sent.
    pub sent: u64,
    /// PUBACKs received.
    pub acked: u64,
    /// Event payload bytes.
    pub event_bytes: u64,
    /// Connections made.
    pub connects: u64,
    /// Events accepted but never handed to the MQTT client before the shutdown deadline (the broker
    /// stayed unreachable): lost with the process until the durable queue exists.
    pub unsent: u64,
    /// QoS 1 messages handed to the MQTT client (events and status) without a PUBACK by the stop:
    /// possibly never delivered. With [`PublishSummary::unsent`] this accounts for every accepted
    /// event that is not known to be delivered.
    pub unacked: u64,
    /// Whether every event was sent and every QoS 1 message acknowledged before the publisher stopped.
    pub flushed: bool,
    /// The last connection error.
    pub last_error: Option<String>,
}

enum Msg {
    Publish { topic: String, payload: Vec<u8> },
}

/// The MQTT publisher. Create with [`Publisher::start`], stop with [`Publisher::shutdown`].
pub struct Publisher {
    tx: Option<SyncSender<Msg>>,
    client: Client,
    stats: Arc<PublishStats>,
    stop: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    abandon: Arc<AtomicBool>,
    sender: Option<JoinHandle<()>>,
    conn: Option<JoinHandle<()>>,
    settings: MqttSettings,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field(
                "broker",
                &format!("{}:{}", self.settings.host, self.settings.port),
            )
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

const REQUEST_CHANNEL: usize = 64;
const INFLIGHT: u16 = 100;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Publisher {
    /// Start the publisher's threads. Connecting happens in the background: a broker that is down
    /// now is retried with backoff, and events wait (up to the bound) meanwhile.
    pub fn start(settings: MqttSettings) -> Result<Publisher> {
        if settings.max_pending_events == 0 {
            return Err(Error::InvalidOption {
                name: "mqtt.max_pending_events".into(),
                message: "must be at least 1".into(),
            });
        }
        let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        opts.set_keep_alive(settings.keep_alive.max(Duration::from_secs(5)))
            .set_clean_session(false)
            .set_inflight(INFLIGHT)
            .set_last_will(LastWill::new(
                settings.status_topic(),
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
        let (client, connection) = Client::new(opts, REQUEST_CHANNEL);
        let stats = Arc::new(PublishStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let announce = Arc::new(AtomicBool::new(false));
        let abandon = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::sync_channel(settings.max_pending_events);

        let conn = {
            let (stats, stop, announce) = (stats.clone(), stop.clone(), announce.clone());
            let closing = closing.clone();
            std::thread::Builder::new()
                .name("ocellus-mqtt-conn".into())
                .spawn(move || drive_connection(connection, &stats, &stop, &closing, &announce))
                .map_err(|e| Error::InvalidOption {
                    name: "thread".into(),
                    message: format!("cannot start the MQTT connection thread: {e}"),
                })?
        };
        let sender = {
            let (stats, client, status) = (stats.clone(), client.clone(), settings.status_topic());
            let abandon = abandon.clone();
            std::thread::Builder::new()
                .name("ocellus-mqtt-send".into())
                .spawn(move || send_loop(&rx, &client, &stats, &announce, &abandon, &status))
                .map_err(|e| Error::InvalidOption {
                    name: "thread".into(),
                    message: format!("cannot start the MQTT sender thread: {e}"),
                })?
        };
        Ok(Publisher {
            tx: Some(tx),
            client,
            stats,
            stop,
            closing,
            abandon,
            sender: Some(sender),
            conn: Some(conn),
            settings,
        })
    }

    /// Queue an event for publishing. Never blocks: returns `false` (and counts a drop) when the
    /// in-memory queue is full.
    pub fn publish(&self, event: &Event) -> bool {
        let msg = Msg::Publish {
            topic: event.topic(&self.settings.topic_prefix),
            payload: event.to_json(),
        };
        let Some(tx) = &self.tx else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match tx.try_send(msg) {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Live counters.
    pub fn stats(&self) -> &PublishStats {
        &self.stats
    }

    /// Stop: send what is queued, wait up to `timeout` for every PUBACK, publish the retained
    /// `offline` status, disconnect, and join the threads.
    pub fn shutdown(mut self, timeout: Duration) -> PublishSummary {
        let deadline = Instant::now() + timeout;
        drop(self.tx.take()); // the sender thread drains the queue, then exits
        if let Some(h) = self.sender.take() {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            // broker still unreachable at the deadline: stop trying, count what is left
            self.abandon.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
        let flushed = self.wait_acked(deadline) && self.unsent() == 0;
        let status = self.settings.status_topic();
        if self
            .client
            .try_publish(status, QoS::AtLeastOnce, true, "offline")
            .is_ok()
        {
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
            let _ = self.wait_acked(deadline.max(Instant::now() + Duration::from_secs(1)));
        }
        self.closing.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
        // give the event loop a moment to write DISCONNECT, then stop it
        let end = Instant::now() + Duration::from_millis(500);
        while self.stats.connected.load(Ordering::Relaxed) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.conn.take() {
            let _ = h.join();
        }
        self.summary(flushed)
    }

    fn unsent(&self) -> u64 {
        let s = &self.stats;
        s.accepted
            .load(Ordering::Relaxed)
            .saturating_sub(s.events_sent.load(Ordering::Relaxed))
    }

    fn wait_acked(&self, deadline: Instant) -> bool {
        loop {
            let sent = self.stats.sent.load(Ordering::Relaxed);
            let acked = self.stats.acked.load(Ordering::Relaxed);
            if acked >= sent {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn summary(&self, flushed: bool) -> PublishSummary {
        let s = &self.stats;
        PublishSummary {
            accepted: s.accepted.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            event_bytes: s.event_bytes.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            unsent: self.unsent(),
            unacked: s
                .sent
                .load(Ordering::Relaxed)
                .saturating_sub(s.acked.load(Ordering::Relaxed)),
            flushed,
            last_error: s.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // shutdown() takes the handles; a publisher dropped without it still stops its threads
        drop(self.tx.take());
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

fn send_loop(
    rx: &Receiver<Msg>,
    client: &Client,
    stats: &PublishStats,
    announce: &AtomicBool,
    abandon: &AtomicBool,
    status_topic: &str,
) {
    // Hand one message to rumqttc without ever blocking for good: while its request channel is
    // full (broker unreachable), retry until it has room or the publisher gives up.
    let offer = |topic: &str, payload: Vec<u8>, retain: bool| -> bool {
        loop {
            match client.try_publish(topic, QoS::AtLeastOnce, retain, payload.clone()) {
                Ok(()) => return true,
                Err(rumqttc::ClientError::TryRequest(_)) if !abandon.load(Ordering::Relaxed) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
    };
    loop {
        if announce.swap(false, Ordering::AcqRel) {
            if !offer(status_topic, b"online".to_vec(), true) {
                return;
            }
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Msg::Publish { topic, payload }) => {
                let n = payload.len() as u64;
                if !offer(&topic, payload, false) {
                    return;
                }
                stats.sent.fetch_add(1, Ordering::Relaxed);
                stats.events_sent.fetch_add(1, Ordering::Relaxed);
                stats.event_bytes.fetch_add(n, Ordering::Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn drive_connection(
    mut connection: Connection,
    stats: &PublishStats,
    stop: &AtomicBool,
    closing: &AtomicBool,
    announce: &AtomicBool,
) {
    let mut backoff = BACKOFF_MIN;
    while !stop.load(Ordering::Relaxed) {
        match connection.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(MqttEvent::Incoming(Packet::ConnAck(_)))) => {
                stats.connects.fetch_add(1, Ordering::Relaxed);
                stats.connected.store(true, Ordering::Relaxed);
                announce.store(true, Ordering::Release);
                backoff = BACKOFF_MIN;
                tracing::info!("connected to the MQTT broker");
            }
            Ok(Ok(MqttEvent::Incoming(Packet::PubAck(_)))) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect))) => {
                stats.connected.store(false, Ordering::Relaxed);
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) if closing.load(Ordering::Relaxed) => {
                // our own DISCONNECT: the broker closing the socket is expected, not an error
                stats.connected.store(false, Ordering::Relaxed);
                break;
            }
            Ok(Err(e)) => {
                let was = stats.connected.swap(false, Ordering::Relaxed);
                let msg = e.to_string();
                if was {
                    tracing::warn!("MQTT connection lost: {msg}; reconnecting");
                } else {
                    tracing::debug!("MQTT connect failed: {msg}; retrying in {backoff:?}");
                }
                if let Ok(mut last) = stats.last_error.lock() {
                    *last = Some(msg);
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(rumqttc::RecvTimeoutError::Timeout) => {}
            Err(rumqttc::RecvTimeoutError::Disconnected) => break,
        }
    }
    stats.connected.store(false, Ordering::Relaxed);
}
