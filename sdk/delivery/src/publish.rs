//! Publishing events over MQTT (rumqttc) through a durable on-disk queue: every event is appended to
//! the [`spool`](crate::spool) before it is offered to the broker and removed only after its PUBACK.
//! [`Publisher::publish`] never blocks on the network.
//!
//! ```text
//! pipeline ──append──▶ [spool: segment files on disk, bounded by bytes and age] ◀──ack(seq)──┐
//!  (write(2) per event:          │ next_unsent()                                             │
//!   survives kill -9)            ▼                                                           │
//!                      connection thread ──try_publish──▶ rumqttc ──▶ broker ──PUBACK(pkid)──┘
//!                      (the only user of the MQTT client: offers a window of records, maps each
//!                       packet id back to its record, reconnects with backoff, and after every
//!                       reconnect offers every unacknowledged record again, oldest first)
//! ```
//!
//! Topics: events on `{prefix}/{device}/events/{type}` (QoS 1). Retained: `{prefix}/{device}/status`
//! (`online` after every connect, `offline` on a clean stop and as the Last Will, so a killed process
//! or a cut network also ends in `offline`) and `{prefix}/{device}/health` (see [`crate::health`]).
//!
//! Delivery is at least once: an event whose PUBACK was lost with the connection is sent again after
//! the reconnect, with the same `id`; subscribers de-duplicate on `id`. Nothing is lost to a broker
//! outage of any length or to a `kill -9` of this process: on restart the queue hands out the
//! unacknowledged events first, in order. Power loss can lose the events appended in the last fsync
//! interval (`queue.fsync_ms`). What the bounds remove (`queue.max_mb`, `queue.max_age_s`) is counted
//! and reported in the health topic, never silent.
//!
//! The MQTT session is clean (`clean_session = true`): the queue, not the broker's session store or
//! rumqttc's in-memory buffers, is the record of what is still owed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, Connection, Event as MqttEvent, LastWill, MqttOptions, Outgoing, Packet, QoS,
};

use crate::cloud::{HealthRoute, Profile, Renewal, Sas, Wire};
use crate::error::{Error, Result};
use crate::spool::{Append, OpenReport, Spool, SpoolConfig, SpoolStats};
use crate::transport::{Credentials, Problem, TlsSettings};
use ocellus_core::event::Event;

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
    /// TLS (`mqtts://`); `None`: plain TCP.
    pub tls: Option<TlsSettings>,
    /// User name and password.
    pub credentials: Option<Credentials>,
    /// The durable queue.
    pub queue: SpoolConfig,
    /// Which hub this is (generic MQTT, Azure IoT Hub, AWS IoT Core): topics and credentials.
    pub profile: Profile,
}

impl MqttSettings {
    /// Plain TCP to `host:port`, the default client id `ocellus-{device}`, topic prefix `ocellus`,
    /// and the queue's defaults in `queue_dir`.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        device: &str,
        queue_dir: impl Into<std::path::PathBuf>,
    ) -> MqttSettings {
        MqttSettings {
            host: host.into(),
            port,
            client_id: format!("ocellus-{device}"),
            topic_prefix: "ocellus".into(),
            device: Arc::from(device),
            keep_alive: Duration::from_secs(30),
            tls: None,
            credentials: None,
            queue: SpoolConfig::new(queue_dir),
            profile: Profile::Generic,
        }
    }

    /// Where `online` / `offline` go: `{prefix}/{device}/status` with the generic profile.
    pub fn status_topic(&self) -> String {
        self.wire().status_topic
    }

    /// `{prefix}/{device}/health`: the retained health topic of the generic profile (Azure
    /// reports health as a twin property, AWS in the named shadow).
    pub fn health_topic(&self) -> String {
        format!("{}/{}/health", self.topic_prefix, self.device)
    }

    pub(crate) fn wire(&self) -> Wire {
        self.profile.wire(&self.topic_prefix, &self.device)
    }

    /// `mqtt://host:port` or `mqtts://host:port`, for messages.
    pub fn broker(&self) -> String {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Counters, shared with the connection thread.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Events stored in the queue by [`Publisher::publish`].
    pub accepted: AtomicU64,
    /// Events not stored: the queue was full and the policy is `refuse_new`.
    pub refused: AtomicU64,
    /// Events not stored because writing the queue failed (disk full, I/O error).
    pub store_errors: AtomicU64,
    /// Events handed to the MQTT client (a re-send after a reconnect counts again).
    pub sent: AtomicU64,
    /// Event PUBACKs received.
    pub acked: AtomicU64,
    /// Payload bytes of the events handed to the MQTT client.
    pub event_bytes: AtomicU64,
    /// Connections made (1 = the first connect; more = reconnects).
    pub connects: AtomicU64,
    /// Whether the client is connected now.
    pub connected: AtomicBool,
    /// The last connection or queue problem, if any (cleared problems stay here as history).
    pub last_error: Mutex<Option<String>>,
    /// The current connection problem: set on a failed connect, cleared on the next connect.
    pub problem: Mutex<Option<Problem>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishSummary {
    /// Events stored in the queue.
    pub accepted: u64,
    /// Events not stored: queue full with `refuse_new`, or the disk write failed.
    pub refused: u64,
    /// Events removed from the queue unsent: `drop_oldest` made room, or older than `max_age`.
    pub dropped: u64,
    /// Events handed to the MQTT client (re-sends included).
    pub sent: u64,
    /// Event PUBACKs received.
    pub acked: u64,
    /// Event payload bytes handed to the MQTT client.
    pub event_bytes: u64,
    /// Connections made.
    pub connects: u64,
    /// Unacknowledged events found in the queue at start (from an earlier run).
    pub recovered: u64,
    /// Damaged places found when the queue was opened (a torn tail, a bad sector); the intact
    /// records around them are kept.
    pub torn: u64,
    /// Unacknowledged events lost to that damage (counted from sequence-number gaps).
    pub lost: u64,
    /// Events whose disk write failed (a full disk): kept in memory and sent from there.
    pub not_durable: u64,
    /// Queue writes or fsyncs that failed.
    pub write_errors: u64,
    /// Times acknowledged events were deleted early to make room.
    pub reclaimed: u64,
    /// Events still in the queue at the stop: kept on disk, sent first at the next start.
    pub queued: u64,
    /// Whether the queue was empty (everything acknowledged) when the publisher stopped.
    pub flushed: bool,
    /// The last connection or queue error.
    pub last_error: Option<String>,
}

/// Live state for the health topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishHealth {
    /// Connected now.
    pub connected: bool,
    /// Connections made.
    pub connects: u64,
    /// Events stored.
    pub accepted: u64,
    /// Events refused (`refuse_new`) or lost to a failed disk write.
    pub refused: u64,
    /// Failed disk writes.
    pub store_errors: u64,
    /// Event PUBACKs.
    pub acked: u64,
    /// The queue.
    pub queue: SpoolStats,
    /// The last error.
    pub last_error: Option<String>,
}

/// What the connection thread hands to a [`Publisher`]'s inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Connected (again): the subscriptions are requested; state the hub should know is worth
    /// sending again (a clean session forgets nothing of ours, but the hub may have changed).
    Connected,
    /// A message on one of the profile's subscriptions.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
}

/// Messages waiting in [`Publisher::send`]'s queue (not durable; the oldest goes when full).
const TRANSIENT: usize = 64;

enum Tag {
    Event(u64),
    Offline,
    Other,
}

/// Makes the last health message from the publisher's final state ([`Publisher::shutdown_with_health`]).
pub type LastHealth = Box<dyn FnOnce(&PublishHealth) -> Vec<u8> + Send>;

#[derive(Default)]
struct Control {
    /// Health payload waiting to be published (the latest wins).
    health: Option<Vec<u8>>,
    /// Makes the last health message at the stop, once the queue has drained.
    last_health: Option<LastHealth>,
    /// Stop when the queue is empty or at this instant, whichever is first.
    close_by: Option<Instant>,
    /// Non-durable messages to send while connected: (topic, payload).
    transient: VecDeque<(String, Vec<u8>)>,
}

struct Shared {
    spool: Mutex<Spool>,
    stats: PublishStats,
    control: Mutex<Control>,
    stop: AtomicBool,
    /// Ends the queue-maintenance thread (after the connection thread has ended).
    stop_maintenance: AtomicBool,
    /// Events that could not be stored durably: logged once, then with a count every 10 s.
    store_log: Mutex<ocellus_core::ratelimit::Throttle>,
    open: OpenReport,
}

impl Shared {
    fn spool(&self) -> MutexGuard<'_, Spool> {
        // a panic while holding the lock cannot leave the spool half-written (each call finishes
        // its file operation first); keep going with it
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn store_log(&self) -> Option<u64> {
        self.store_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ready()
    }
    fn note_error(&self, msg: String) {
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = Some(msg);
        }
    }
}

/// The MQTT publisher. Create with [`Publisher::start`], stop with [`Publisher::shutdown`].
pub struct Publisher {
    shared: Arc<Shared>,
    conn: Option<JoinHandle<()>>,
    maint: Option<JoinHandle<()>>,
    settings: MqttSettings,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("broker", &self.settings.broker())
            .field("client_id", &self.settings.client_id)
            .field("queue", &self.settings.queue.dir)
            .finish_non_exhaustive()
    }
}

/// rumqttc's request channel. Only the connection thread sends into it and it keeps fewer than
/// this many requests outstanding, so a send never finds it full.
const REQUEST_CHANNEL: usize = 64;
/// QoS 1 messages in flight (sent, not yet acknowledged).
const INFLIGHT: u16 = 200;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const MAINTAIN_EVERY: Duration = Duration::from_millis(50);
const POLL: Duration = Duration::from_millis(10);
/// Largest MQTT packet sent or received: IoT Hub's 256 KB message limit plus the topic.
const MAX_PACKET: usize = 256 * 1024 + 4096;
/// Longest wait for one connect; rumqttc's own connection timeout (5 s) ends it first.
const CONNECT_WAIT: Duration = Duration::from_secs(6);

/// A topic level we build from a name: letters, digits, '.', '_', '-' (no `/`, `+`, `#`).
fn check_level(what: &str, v: &str) -> Result<()> {
    match ocellus_core::event::topic_level_problem(v) {
        None => Ok(()),
        Some(problem) => Err(Error::InvalidOption {
            name: what.into(),
            message: format!("{v:?} cannot be an MQTT topic level: it {problem}"),
        }),
    }
}

impl Publisher {
    /// Open the queue and start the connection thread. Connecting happens in the background: a
    /// broker that is down now is retried with backoff while events wait on disk. Use
    /// [`Publisher::check_connect`] to find configuration problems (a wrong CA or password) early.
    ///
    /// Errors: the queue directory cannot be used, the TLS files cannot be read, or the device id or
    /// topic prefix would make topic levels of their own.
    pub fn start(settings: MqttSettings) -> Result<Publisher> {
        Publisher::start_with_inbox(settings, None)
    }

    /// [`Publisher::start`], handing every message that arrives on the profile's subscriptions
    /// (twin, methods, shadow) and every (re)connect to `inbox`. The inbox is bounded: when it is
    /// full a message is dropped with a warning, never waited for.
    pub fn start_with_inbox(
        settings: MqttSettings,
        inbox: Option<SyncSender<Inbound>>,
    ) -> Result<Publisher> {
        check_level("device.id", &settings.device)?;
        for level in settings.topic_prefix.split('/') {
            check_level("mqtt.topic_prefix", level)?;
        }
        let wire = settings.wire();
        let sas = settings.profile.sas();
        let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        opts.set_keep_alive(settings.keep_alive.max(Duration::from_secs(5)))
            .set_clean_session(true)
            .set_inflight(INFLIGHT)
            // rumqttc's default is 10 KiB each way: too small for a twin document or a snapshot
            // method response (IoT Hub takes messages up to 256 KB)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_last_will(LastWill::new(
                &wire.status_topic,
                "offline",
                QoS::AtLeastOnce,
                wire.status_retain,
            ));
        crate::transport::configure(
            &mut opts,
            settings.tls.as_ref(),
            settings.credentials.as_ref(),
        )?;
        let renewal = match (&sas, &settings.credentials) {
            (Some(sas), Some(c)) => {
                let r = sas.token();
                opts.set_credentials(c.username.clone(), r.token.clone());
                Some(r)
            }
            _ => None,
        };
        let (spool, open) = Spool::open(settings.queue.clone())?;
        if open.recovered > 0 {
            tracing::info!(
                "event queue {}: {} unacknowledged event(s) from an earlier run are sent first",
                settings.queue.dir.display(),
                open.recovered
            );
        }
        if open.torn > 0 {
            tracing::warn!(
                "event queue {}: {} damaged place(s) skipped, {} unacknowledged event(s) lost with them; every intact event is kept",
                settings.queue.dir.display(),
                open.torn,
                open.lost
            );
        }
        let (client, connection) = Client::new(opts, REQUEST_CHANNEL);
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            stats: PublishStats::default(),
            control: Mutex::new(Control::default()),
            stop: AtomicBool::new(false),
            stop_maintenance: AtomicBool::new(false),
            store_log: Mutex::new(ocellus_core::ratelimit::Throttle::default()),
            open,
        });
        let conn = {
            let shared = shared.clone();
            let link = Link {
                wire,
                profile: settings.profile.clone(),
                sas: sas.zip(settings.credentials.as_ref().map(|c| c.username.clone())),
                renew_at: renewal.as_ref().map(|r| r.renew_at),
                renew_drain: renewal
                    .as_ref()
                    .map(|r| r.drain.min(RENEW_DRAIN))
                    .unwrap_or(RENEW_DRAIN),
                inbox,
            };
            std::thread::Builder::new()
                .name("ocellus-mqtt".into())
                .spawn(move || drive(connection, client, &shared, link))
                .map_err(|e| Error::InvalidOption {
                    name: "thread".into(),
                    message: format!("cannot start the MQTT connection thread: {e}"),
                })?
        };
        // fsync, expiry, acknowledgement saves and disk reclaim on their own schedule: a connect
        // that hangs for seconds must not stretch the durability window
        let maint = {
            let shared = shared.clone();
            let tick =
                (settings.queue.fsync_interval / 4).clamp(Duration::from_millis(5), MAINTAIN_EVERY);
            std::thread::Builder::new()
                .name("ocellus-queue".into())
                .spawn(move || maintain_queue(&shared, tick))
                .map_err(|e| Error::InvalidOption {
                    name: "thread".into(),
                    message: format!("cannot start the queue maintenance thread: {e}"),
                })?
        };
        Ok(Publisher {
            shared,
            conn: Some(conn),
            maint: Some(maint),
            settings,
        })
    }

    /// Wait up to `timeout` for the first connection. A problem retrying will not fix (the broker's
    /// certificate is not trusted, the password is wrong, the client certificate is refused) is an
    /// [`Error::Broker`]; a broker that is merely unreachable is not an error: events wait on disk
    /// and the wait ends at the timeout with `Ok(false)`. `Ok(true)`: connected.
    pub fn check_connect(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.stats.connects.load(Ordering::Relaxed) > 0 {
                return Ok(true);
            }
            let problem = self
                .shared
                .stats
                .problem
                .lock()
                .ok()
                .and_then(|p| p.clone());
            if let Some(p) = problem.filter(|p| p.permanent) {
                return Err(Error::Broker {
                    broker: self.settings.broker(),
                    message: p.message,
                });
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Store an event in the queue for publishing. Never waits for the network. `false`: not
    /// stored (the queue is full with `refuse_new`, or the disk write failed), counted and reported
    /// in the health topic.
    pub fn publish(&self, event: &Event) -> bool {
        let topic = self
            .settings
            .profile
            .event_topic(&self.settings.topic_prefix, event);
        self.publish_raw(&topic, &event.to_json())
    }

    /// Send a message that need not survive a restart (a method response, a twin or shadow
    /// update) at QoS 1 on the current or next connection, ahead of queued events. Not stored
    /// on disk; at most 64 wait, and the oldest is dropped when more come.
    pub fn send(&self, topic: &str, payload: Vec<u8>) {
        let mut c = self.shared.control();
        if c.transient.len() >= TRANSIENT {
            c.transient.pop_front();
            tracing::warn!(
                "MQTT: more than {TRANSIENT} messages waiting to be sent; dropped the oldest"
            );
        }
        c.transient.push_back((topic.to_owned(), payload));
    }

    /// Store any message for publishing (QoS 1, not retained), like [`Publisher::publish`].
    pub fn publish_raw(&self, topic: &str, payload: &[u8]) -> bool {
        let stats = &self.shared.stats;
        let result = self.shared.spool().append(topic, payload);
        match result {
            Ok(Append::Stored(_)) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(Append::Volatile(_)) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                stats.store_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = self.shared.store_log() {
                    tracing::error!(
                        "the event queue cannot write to disk; events are kept in memory and sent from there, but do not survive a restart{}",
                        ocellus_core::ratelimit::repeats(n, ocellus_core::ratelimit::DEFAULT_EVERY)
                    );
                }
                self.shared
                    .note_error("the event queue cannot write to disk (full?): events are held in memory, not durable".into());
                true
            }
            Ok(Append::Refused) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(e) => {
                stats.store_errors.fetch_add(1, Ordering::Relaxed);
                stats.refused.fetch_add(1, Ordering::Relaxed);
                // so a full disk does not flood the log
                if let Some(n) = self.shared.store_log() {
                    tracing::error!(
                        "an event was not stored: {e}{}",
                        ocellus_core::ratelimit::repeats(n, ocellus_core::ratelimit::DEFAULT_EVERY)
                    );
                }
                self.shared.note_error(e.to_string());
                false
            }
        }
    }

    /// Hand the latest health message to the connection thread; it is published retained on
    /// `{prefix}/{device}/health` as soon as the broker is reachable (an older one not yet sent is
    /// replaced).
    pub fn post_health(&self, payload: Vec<u8>) {
        self.shared.control().health = Some(payload);
    }

    /// Unacknowledged events found in the queue at start.
    pub fn recovered(&self) -> u64 {
        self.shared.open.recovered
    }

    /// Live counters.
    pub fn stats(&self) -> &PublishStats {
        &self.shared.stats
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &MqttSettings {
        &self.settings
    }

    /// The state for the health topic.
    pub fn health(&self) -> PublishHealth {
        self.shared.health()
    }

    /// [`Publisher::shutdown`], with the last health message made by `last_health` from the
    /// publisher's state once the queue has drained (or the timeout has passed), just before the
    /// retained `offline`: the retained health then tells how the run really ended.
    pub fn shutdown_with_health(
        self,
        timeout: Duration,
        last_health: LastHealth,
    ) -> PublishSummary {
        self.shared.control().last_health = Some(last_health);
        self.shutdown(timeout)
    }
}

impl Shared {
    fn health(&self) -> PublishHealth {
        let s = &self.stats;
        PublishHealth {
            connected: s.connected.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            store_errors: s.store_errors.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            queue: self.spool().stats(),
            last_error: s.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

impl Publisher {
    /// Stop: keep sending until the queue is empty or `timeout` has passed, publish the retained
    /// `offline` status, disconnect, fsync the queue and join the thread. What is still queued
    /// stays on disk for the next start ([`PublishSummary::queued`]).
    pub fn shutdown(mut self, timeout: Duration) -> PublishSummary {
        self.shared.control().close_by = Some(Instant::now() + timeout);
        if let Some(h) = self.conn.take() {
            let _ = h.join();
        }
        self.stop_maintenance();
        // fsync, and leave nothing acknowledged on disk
        let sync = self.shared.spool().close();
        if let Err(e) = sync {
            tracing::error!("{e}");
            self.shared.note_error(e.to_string());
        }
        self.summary()
    }

    fn summary(&self) -> PublishSummary {
        let s = &self.shared.stats;
        let q = self.shared.spool().stats();
        PublishSummary {
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            dropped: q.dropped_full + q.expired,
            sent: s.sent.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            event_bytes: s.event_bytes.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            recovered: self.shared.open.recovered,
            torn: self.shared.open.torn,
            lost: self.shared.open.lost,
            not_durable: q.not_durable,
            write_errors: q.write_errors,
            reclaimed: q.reclaimed,
            queued: q.depth,
            flushed: q.depth == 0,
            last_error: s.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // shutdown() joins the thread; a publisher dropped without it stops it here, without
        // waiting for the broker (the queue keeps whatever was not acknowledged). Joining releases
        // the queue's lock before drop returns, so the next publisher can open it. The thread
        // checks the flag at least every 20 ms.
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.conn.take() {
            let _ = h.join();
        }
        self.stop_maintenance();
    }
}

impl Publisher {
    fn stop_maintenance(&mut self) {
        self.shared.stop_maintenance.store(true, Ordering::Relaxed);
        if let Some(h) = self.maint.take() {
            let _ = h.join();
        }
    }
}

/// The queue-maintenance thread: [`Spool::maintain`] every `tick` until stopped.
fn maintain_queue(shared: &Shared, tick: Duration) {
    let mut log = ocellus_core::ratelimit::Throttle::default();
    while !shared.stop_maintenance.load(Ordering::Relaxed) {
        let r = shared.spool().maintain();
        if let Err(e) = r {
            // a failing disk must not flood the log
            if let Some(n) = log.ready() {
                tracing::error!(
                    "{e}{}",
                    ocellus_core::ratelimit::repeats(n, ocellus_core::ratelimit::DEFAULT_EVERY)
                );
            }
            shared.note_error(e.to_string());
        }
        std::thread::sleep(tick);
    }
}

/// What the connection thread needs besides the client and the queue.
struct Link {
    wire: Wire,
    profile: Profile,
    /// The SAS signer and the user name it goes with.
    sas: Option<(Sas, String)>,
    /// When the current SAS token should be replaced.
    renew_at: Option<Instant>,
    /// Longest wait for the window to drain before the DISCONNECT of a renewal.
    renew_drain: Duration,
    inbox: Option<SyncSender<Inbound>>,
}

impl Link {
    /// Put a fresh SAS token into the options of the next connect.
    fn refresh(&mut self, connection: &mut Connection) {
        if let Some((sas, user)) = &self.sas {
            let Renewal {
                token,
                renew_at,
                drain,
            } = sas.token();
            connection
                .eventloop
                .mqtt_options
                .set_credentials(user.clone(), token);
            self.renew_at = Some(renew_at);
            self.renew_drain = drain.min(RENEW_DRAIN);
        }
    }

    fn deliver(&self, msg: Inbound) {
        if let Some(inbox) = &self.inbox {
            match inbox.try_send(msg) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(m)) => {
                    tracing::warn!("MQTT: the message handler is behind; dropped {m:?}")
                }
            }
        }
    }

    /// The health message as the profile sends it: (topic, payload, retain).
    fn health(&self, payload: Vec<u8>, seq: u64) -> (String, Vec<u8>, bool) {
        match &self.wire.health {
            HealthRoute::Retained(t) => (t.clone(), payload, true),
            HealthRoute::AzureReported => (
                crate::cloud::azure::twin_reported_topic(&format!("h{seq}")),
                wrap_json(b"{\"health\":", &payload, b"}"),
                false,
            ),
            HealthRoute::AwsShadow(t) => (
                t.clone(),
                wrap_json(b"{\"state\":{\"reported\":{\"health\":", &payload, b"}}}"),
                false,
            ),
        }
    }
}

fn wrap_json(head: &[u8], body: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(head.len() + body.len() + tail.len());
    v.extend_from_slice(head);
    v.extend_from_slice(body);
    v.extend_from_slice(tail);
    v
}

/// Where the connection thread is in replacing its SAS token.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Renew {
    No,
    /// No new events offered since this instant; DISCONNECT once the window has drained.
    Draining(Instant),
    /// DISCONNECT requested (the renewal began at this instant).
    Disconnecting(Instant),
}

/// Longest wait of a token renewal for the events in flight to be acknowledged (shorter for
/// short-lived tokens: a sixteenth of their life).
const RENEW_DRAIN: Duration = Duration::from_secs(3);

/// Where the connection thread is in a clean stop.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Closing {
    No,
    /// `offline` offered at this instant; waiting for its PUBACK.
    Offline(Instant),
    /// DISCONNECT requested at this instant.
    Disconnect(Instant),
}

/// The connection thread: the only user of the MQTT client and the only reader of the queue.
fn drive(mut connection: Connection, client: Client, shared: &Shared, mut link: Link) {
    let stats = &shared.stats;
    // offered to rumqttc, its Outgoing::Publish not seen yet (rumqttc assigns packet ids in order)
    let mut waiting: VecDeque<Tag> = VecDeque::new();
    // packet id → what it carries, until its PUBACK
    let mut inflight: HashMap<u16, Tag> = HashMap::new();
    let mut connected = false;
    let mut announce = false;
    let mut backoff = BACKOFF_MIN;
    let mut closing = Closing::No;
    // repeated failures: the first line, then one with a count every 10 s
    let mut read_log = ocellus_core::ratelimit::Throttle::default();
    let mut connect_log = ocellus_core::ratelimit::Throttle::default();
    let every = ocellus_core::ratelimit::DEFAULT_EVERY;
    let mut health_sent: Option<Vec<u8>> = None;
    let mut health_seq = 0u64;
    // a SAS token is being replaced: since when (no new events offered; DISCONNECT once the
    // window has drained)
    let mut renewing = Renew::No;

    let offer =
        |topic: &str, payload: Vec<u8>, retain: bool, tag: Tag, waiting: &mut VecDeque<Tag>| {
            waiting.push_back(tag);
            match client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
                Ok(()) => true,
                Err(e) => {
                    waiting.pop_back();
                    tracing::debug!("MQTT client refused a request: {e}");
                    false
                }
            }
        };

    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let (close_by, health) = {
            let mut c = shared.control();
            let h = if connected { c.health.take() } else { None };
            (c.close_by, h)
        };

        if connected
            && closing == Closing::No
            && renewing == Renew::No
            && link.renew_at.is_some_and(|at| now >= at)
        {
            tracing::debug!("MQTT: replacing the SAS token before it expires");
            renewing = Renew::Draining(now);
        }
        if let Renew::Draining(since) = renewing
            && connected
            && ((waiting.is_empty() && inflight.is_empty())
                || now.duration_since(since) > link.renew_drain)
            && client.try_disconnect().is_ok()
        {
            // a clean DISCONNECT (no Last Will); the next connect carries the new token
            renewing = Renew::Disconnecting(since);
        }
        // The DISCONNECT waits in rumqttc's queue behind publishes that wait for room in the
        // window; on a slow link the token could expire first, and the hub would cut the
        // connection anyway. After twice the drain time, drop the connection ourselves (the
        // broker then sends the Last Will, as it would on the hub's cut) and reconnect now.
        if let Renew::Draining(since) | Renew::Disconnecting(since) = renewing
            && connected
            && now.duration_since(since) > link.renew_drain * 2
        {
            tracing::debug!("MQTT: the token renewal's DISCONNECT is late; reconnecting now");
            link.refresh(&mut connection);
            connection.eventloop.clean();
            connected = false;
            stats.connected.store(false, Ordering::Relaxed);
            waiting.clear();
            inflight.clear();
            renewing = Renew::No;
        }

        if connected && closing == Closing::No {
            if announce
                && offer(
                    &link.wire.status_topic,
                    b"online".to_vec(),
                    link.wire.status_retain,
                    Tag::Other,
                    &mut waiting,
                )
            {
                announce = false;
            }
            if let Some(h) = health {
                health_seq += 1;
                let (topic, payload, retain) = link.health(h.clone(), health_seq);
                if offer(&topic, payload, retain, Tag::Other, &mut waiting) {
                    health_sent = Some(h);
                } else {
                    shared.control().health.get_or_insert(h);
                }
            }
            loop {
                if waiting.len() >= REQUEST_CHANNEL - 8 {
                    break;
                }
                let next = shared.control().transient.pop_front();
                let Some((topic, payload)) = next else { break };
                if !offer(&topic, payload.clone(), false, Tag::Other, &mut waiting) {
                    shared.control().transient.push_front((topic, payload));
                    break;
                }
            }
            // keep a window of records in flight
            let mut rewind = false;
            while renewing == Renew::No
                && waiting.len() < REQUEST_CHANNEL - 4
                && inflight.len() + waiting.len() < INFLIGHT as usize
            {
                let next = shared.spool().next_unsent();
                let rec = match next {
                    Ok(Some(rec)) => rec,
                    Ok(None) => break,
                    Err(e) => {
                        if let Some(n) = read_log.ready() {
                            tracing::error!("{e}{}", ocellus_core::ratelimit::repeats(n, every));
                        }
                        shared.note_error(e.to_string());
                        break;
                    }
                };
                let n = rec.payload.len() as u64;
                if !offer(
                    &rec.topic,
                    rec.payload,
                    false,
                    Tag::Event(rec.seq),
                    &mut waiting,
                ) {
                    rewind = true; // hand it out again later
                    break;
                }
                stats.sent.fetch_add(1, Ordering::Relaxed);
                stats.event_bytes.fetch_add(n, Ordering::Relaxed);
            }
            if rewind {
                shared.spool().rewind();
                waiting.clear();
                inflight.clear();
            }
        }

        if let Some(deadline) = close_by {
            let depth = shared.spool().stats().depth;
            match closing {
                Closing::No if connected && (depth == 0 || now >= deadline) => {
                    // the final counters first, made now that the queue has drained
                    let last = shared.control().last_health.take();
                    if let Some(make) = last {
                        let payload = make(&shared.health());
                        shared.control().health = Some(payload);
                        continue;
                    }
                    if offer(
                        &link.wire.status_topic,
                        b"offline".to_vec(),
                        link.wire.status_retain,
                        Tag::Offline,
                        &mut waiting,
                    ) {
                        closing = Closing::Offline(now);
                    } else {
                        closing = Closing::Offline(now - Duration::from_secs(2));
                    }
                }
                Closing::No if !connected && now >= deadline => break,
                Closing::Offline(at) if now.duration_since(at) > Duration::from_secs(1) => {
                    let _ = client.try_disconnect();
                    closing = Closing::Disconnect(now);
                }
                Closing::Disconnect(at) if now.duration_since(at) > Duration::from_millis(500) => {
                    break;
                }
                _ => {}
            }
        }

        // While there is no connection, the poll is a connect (TCP, TLS, CONNECT, CONNACK): give
        // it rumqttc's whole connection timeout. A 10 ms poll would cancel every connect that
        // takes longer, so a broker a real network away (IoT Hub: a few hundred ms) would never
        // be reached.
        let wait = if connection.eventloop.network.is_none() {
            CONNECT_WAIT
        } else {
            POLL
        };
        match connection.recv_timeout(wait) {
            Ok(Ok(MqttEvent::Incoming(Packet::ConnAck(_)))) => {
                connected = true;
                announce = true;
                backoff = BACKOFF_MIN;
                waiting.clear();
                inflight.clear();
                // clean session: whatever was in flight on the old connection is offered again
                shared.spool().rewind();
                if let Some(h) = health_sent.take() {
                    shared.control().health.get_or_insert(h);
                }
                stats.connects.fetch_add(1, Ordering::Relaxed);
                stats.connected.store(true, Ordering::Relaxed);
                // the connection problem is over: it is no longer the last error either
                let solved = stats.problem.lock().ok().and_then(|mut p| p.take());
                if let (Some(old), Ok(mut last)) = (solved, stats.last_error.lock())
                    && last.as_deref() == Some(old.message.as_str())
                {
                    *last = None;
                }
                renewing = Renew::No;
                if !link.wire.subscriptions.is_empty() {
                    let filters = link
                        .wire
                        .subscriptions
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::warn!("MQTT: could not subscribe: {e}");
                    }
                }
                link.deliver(Inbound::Connected);
                if stats.connects.load(Ordering::Relaxed) == 1 {
                    tracing::info!("connected to {}", link.profile.kind_name());
                } else {
                    tracing::info!("connected to {} again", link.profile.kind_name());
                }
            }
            Ok(Ok(MqttEvent::Incoming(Packet::Publish(p)))) => {
                link.deliver(Inbound::Message {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                });
            }
            Ok(Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid)))) => match waiting.pop_front() {
                Some(tag) if pkid != 0 => {
                    inflight.insert(pkid, tag);
                }
                Some(_) => {}
                None => tracing::debug!("MQTT publish {pkid} was not offered by us"),
            },
            Ok(Ok(MqttEvent::Incoming(Packet::PubAck(ack)))) => match inflight.remove(&ack.pkid) {
                Some(Tag::Event(seq)) => {
                    shared.spool().ack(seq);
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Some(Tag::Offline) => {
                    if let Closing::Offline(_) = closing {
                        let _ = client.try_disconnect();
                        closing = Closing::Disconnect(Instant::now());
                    }
                }
                Some(Tag::Other) | None => {}
            },
            Ok(Ok(MqttEvent::Outgoing(Outgoing::Disconnect))) => {
                connected = false;
                stats.connected.store(false, Ordering::Relaxed);
                if renewing != Renew::No && closing == Closing::No {
                    // reconnect at once with a fresh token; the clean session and the rewind
                    // on CONNACK offer whatever was still unacknowledged again
                    link.refresh(&mut connection);
                    connection.eventloop.clean();
                    waiting.clear();
                    inflight.clear();
                    continue;
                }
                if matches!(closing, Closing::Disconnect(_)) {
                    // give the event loop a moment to write the DISCONNECT packet
                    let _ = connection.recv_timeout(Duration::from_millis(50));
                    break;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) if matches!(closing, Closing::Disconnect(_)) => break,
            Ok(Err(e)) => {
                let was = connected;
                connected = false;
                stats.connected.store(false, Ordering::Relaxed);
                waiting.clear();
                inflight.clear();
                renewing = Renew::No;
                let problem = link.profile.reword(crate::transport::explain(&e));
                if problem.permanent {
                    if let Some(n) = connect_log.ready() {
                        tracing::error!(
                            "MQTT: {}; retrying in {backoff:?}{}",
                            problem.message,
                            ocellus_core::ratelimit::repeats(n, every)
                        );
                    }
                } else if was {
                    tracing::warn!(
                        "MQTT connection lost: {}; reconnecting (events wait on disk)",
                        problem.message
                    );
                } else {
                    tracing::debug!(
                        "MQTT connect failed: {}; retrying in {backoff:?}",
                        problem.message
                    );
                }
                shared.note_error(problem.message.clone());
                if let Ok(mut p) = stats.problem.lock() {
                    *p = Some(problem);
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
                    let past_deadline = shared
                        .control()
                        .close_by
                        .is_some_and(|d| Instant::now() >= d);
                    if past_deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                // a token may expire during an outage: every attempt gets a fresh one
                link.refresh(&mut connection);
            }
            Err(rumqttc::RecvTimeoutError::Timeout) => {}
            Err(rumqttc::RecvTimeoutError::Disconnected) => break,
        }
    }
    stats.connected.store(false, Ordering::Relaxed);
}
