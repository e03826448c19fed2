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
//! or a cut network also ends in `offline`) and `{prefix}/{device}/health` (see `ocellus::health`).
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
//!
//! The connection thread is split the way rumqttc splits its own event loop: a state machine
//! (`state.rs`: what is in flight by packet id, what to offer next, backoff, token renewal, the
//! clean stop; no sockets, no threads) and the I/O around it (`io.rs`: owns the client and the
//! connection, feeds events into the state machine and carries out what it decides). A second
//! thread runs [`Spool::maintain`] (fsync, expiry, acknowledgement saves) on its own schedule.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ocellus_core::Fault;
use ocellus_core::event::Event;
use rumqttc::Client;

use crate::cloud::{Profile, Wire};
use crate::error::{Error, Result};
use crate::spool::{Append, OpenReport, Spool, SpoolConfig, SpoolStats};
use crate::transport::{Credentials, Problem, TlsSettings};

// the connection thread: `state` decides, `io` carries it out (see the module docs)
mod io;
mod state;
#[cfg(test)]
mod tests;

use state::{REQUEST_CHANNEL, State};

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
        format!("{scheme}://{}", self.host_port())
    }

    /// `host:port`, an IPv6 address in brackets.
    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
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

/// How often the queue-maintenance thread runs at most (fsync, expiry, ack saves, reclaim).
const MAINTAIN_EVERY: Duration = Duration::from_millis(50);

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
        let (opts, renewal) = io::mqtt_options(&settings, &wire, sas.as_ref())?;
        let (spool, open) = Spool::open(settings.queue.clone())?;
        report_open(&settings.queue, &open);
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
            let link = io::Link {
                profile: settings.profile.clone(),
                subscriptions: wire.subscriptions.clone(),
                sas: sas.zip(settings.credentials.as_ref().map(|c| c.username.clone())),
                inbox,
            };
            let state = State::new(wire, renewal.map(|r| (r.renew_at, r.drain)));
            spawn("ocellus-mqtt", "MQTT connection thread", move || {
                io::drive(connection, client, &shared, link, state)
            })?
        };
        // fsync, expiry, acknowledgement saves and disk reclaim on their own schedule: a connect
        // that hangs for seconds must not stretch the durability window
        let maint = {
            let shared = shared.clone();
            let tick =
                (settings.queue.fsync_interval / 4).clamp(Duration::from_millis(5), MAINTAIN_EVERY);
            spawn("ocellus-queue", "queue maintenance thread", move || {
                maintain_queue(&shared, tick)
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

/// Log what opening the queue found: a backlog from an earlier run, damage.
fn report_open(queue: &SpoolConfig, open: &OpenReport) {
    if open.recovered > 0 {
        tracing::info!(
            "event queue {}: {} unacknowledged event(s) from an earlier run are sent first",
            queue.dir.display(),
            open.recovered
        );
    }
    if open.torn > 0 {
        tracing::warn!(
            "event queue {}: {} damaged place(s) skipped, {} unacknowledged event(s) lost with them; every intact event is kept",
            queue.dir.display(),
            open.torn,
            open.lost
        );
    }
}

/// Start a named thread; `what` names it in the error.
fn spawn(name: &str, what: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| Error::InvalidOption {
            name: "thread".into(),
            message: format!("cannot start the {what}: {e}"),
        })
}

/// The publisher as the pipeline's sink: every event goes into the durable queue, never waiting
/// for the network.
impl ocellus_core::EventSink for Publisher {
    /// [`Publisher::publish`]; an event the queue did not take is an error the pipeline counts.
    fn send(&mut self, event: &Event) -> ocellus_core::Result<()> {
        if self.publish(event) {
            return Ok(());
        }
        Err(ocellus_core::Error::component(
            Fault::Environment,
            format!(
                "event {} refused by the queue's bounds (queue.max_mb with queue.when_full = \
                 refuse_new), or the queue could not store it (see the publisher's last error)",
                event.id
            ),
        ))
    }

    /// Nothing to do: every event taken is already in the queue, and the deployment's shutdown
    /// ([`Publisher::shutdown`]) drains it to the broker with a timeout of its own.
    fn flush(&mut self) -> ocellus_core::Result<()> {
        Ok(())
    }

    /// `MQTT host:port`.
    fn describe(&self) -> String {
        format!("MQTT {}", self.settings.host_port())
    }
}
