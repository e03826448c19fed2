//! The connection thread: it owns rumqttc's client and connection, feeds each turn and each
//! event into the [`State`] machine, and carries out what it decides (requests to the client,
//! the queue, the inbox, the shared counters, logs).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use ocellus_core::ratelimit::{self, Throttle};
use rumqttc::{Client, Connection, ConnectionError, LastWill, MqttOptions, QoS, RecvTimeoutError};

use super::state::{Action, Counts, Failure, INFLIGHT, Outbox, State, Turn};
use super::{Inbound, MqttSettings, Shared};
use crate::cloud::{Profile, Renewal, Sas, Wire};
use crate::error::Result;
use crate::spool::Record;

/// The longest wait for an event while connected: the turn's work (new records, health, a
/// clean stop) waits at most this long.
const POLL: Duration = Duration::from_millis(10);
/// Longest wait for one connect; rumqttc's own connection timeout (5 s) ends it first.
const CONNECT_WAIT: Duration = Duration::from_secs(6);
/// How often a back-off wait looks at the stop flag and the stop deadline.
const BACKOFF_STEP: Duration = Duration::from_millis(20);
/// Largest MQTT packet sent or received: IoT Hub's 256 KB message limit plus the topic.
const MAX_PACKET: usize = 256 * 1024 + 4096;

/// The client's options: keep-alive, a clean session, the in-flight window, packet sizes, the
/// Last Will, TLS and credentials; with a SAS signer and a user name, the first token and when
/// to replace it.
pub(super) fn mqtt_options(
    settings: &MqttSettings,
    wire: &Wire,
    sas: Option<&Sas>,
) -> Result<(MqttOptions, Option<Renewal>)> {
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
    let renewal = match (sas, &settings.credentials) {
        (Some(sas), Some(c)) => {
            let r = sas.token();
            opts.set_credentials(c.username.clone(), r.token.clone());
            Some(r)
        }
        _ => None,
    };
    Ok((opts, renewal))
}

/// What the connection thread needs besides the client, the queue and the state machine.
pub(super) struct Link {
    /// The profile (for its name and for rewording connection problems).
    pub(super) profile: Profile,
    /// Topic filters subscribed to after every connect.
    pub(super) subscriptions: Vec<String>,
    /// The SAS signer and the user name it goes with.
    pub(super) sas: Option<(Sas, String)>,
    /// Where inbound messages and connects go.
    pub(super) inbox: Option<SyncSender<Inbound>>,
}

impl Link {
    /// Put a fresh SAS token into the options of the next connect; when to replace it, and the
    /// longest its renewal may wait (`None`: no token).
    fn refresh(&self, connection: &mut Connection) -> Option<(Instant, Duration)> {
        let (sas, user) = self.sas.as_ref()?;
        let Renewal {
            token,
            renew_at,
            drain,
        } = sas.token();
        connection
            .eventloop
            .mqtt_options
            .set_credentials(user.clone(), token);
        Some((renew_at, drain))
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
}

/// The connection thread: the only user of the MQTT client and the only reader of the queue.
pub(super) fn drive(
    connection: Connection,
    client: Client,
    shared: &Shared,
    link: Link,
    state: State,
) {
    let mut io = Io {
        connection,
        client,
        shared,
        link,
        state,
        mirrored: Counts::default(),
        read_log: Throttle::default(),
        connect_log: Throttle::default(),
    };
    io.run();
    shared.stats.connected.store(false, Ordering::Relaxed);
}

struct Io<'a> {
    connection: Connection,
    client: Client,
    shared: &'a Shared,
    link: Link,
    state: State,
    /// The state machine's counters as last added to the shared ones.
    mirrored: Counts,
    // repeated failures: the first line, then one with a count every 10 s
    read_log: Throttle,
    connect_log: Throttle,
}

/// Where the loop goes after carrying out a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Wait for the next event.
    Poll,
    /// Start the next turn at once.
    Again,
    /// End the thread.
    Stop,
}

impl Io<'_> {
    fn run(&mut self) {
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let turn = self.turn();
            let mut out = Wires {
                client: &self.client,
                shared: self.shared,
                read_log: &mut self.read_log,
            };
            let actions = self.state.tick(turn, &mut out);
            match self.carry_out(actions) {
                Flow::Stop => break,
                Flow::Again => continue,
                Flow::Poll => {}
            }
            // While there is no connection, the poll is a connect (TCP, TLS, CONNECT, CONNACK):
            // give it rumqttc's whole connection timeout. A 10 ms poll would cancel every
            // connect that takes longer, so a broker a real network away (IoT Hub: a few hundred
            // ms) would never be reached.
            let wait = if self.connection.eventloop.network.is_none() {
                CONNECT_WAIT
            } else {
                POLL
            };
            let flow = match self.connection.recv_timeout(wait) {
                Ok(Ok(event)) => {
                    let actions = self.state.handle(event, Instant::now());
                    self.carry_out(actions)
                }
                Ok(Err(e)) => self.failed(&e),
                Err(RecvTimeoutError::Timeout) => Flow::Poll,
                Err(RecvTimeoutError::Disconnected) => Flow::Stop,
            };
            if flow == Flow::Stop {
                break;
            }
        }
    }

    /// What the publisher asks for now.
    fn turn(&self) -> Turn {
        let now = Instant::now();
        let mut c = self.shared.control();
        let health = if self.state.connected() {
            c.health.take()
        } else {
            None
        };
        Turn {
            now,
            close_by: c.close_by,
            health,
            last_health: c.last_health.is_some(),
        }
    }

    /// The shared counters first (they follow the state machine's decisions), then the actions
    /// in order.
    fn carry_out(&mut self, actions: Vec<Action>) -> Flow {
        self.mirror();
        let mut flow = Flow::Poll;
        for action in actions {
            match action {
                Action::Rewind => self.shared.spool().rewind(),
                Action::Ack(seq) => self.shared.spool().ack(seq),
                Action::KeepHealth(h) => {
                    self.shared.control().health.get_or_insert(h);
                }
                Action::KeepTransient(topic, payload) => {
                    self.shared.control().transient.push_front((topic, payload));
                }
                Action::Disconnect => {
                    let _ = self.client.try_disconnect();
                }
                Action::Reconnect => {
                    self.refresh();
                    self.connection.eventloop.clean();
                }
                Action::Connected { first } => self.connected(first),
                Action::Deliver(msg) => self.link.deliver(msg),
                Action::LastHealth => {
                    let last = self.shared.control().last_health.take();
                    if let Some(make) = last {
                        let payload = make(&self.shared.health());
                        self.shared.control().health = Some(payload);
                        flow = Flow::Again;
                    }
                }
                Action::Linger(d) => {
                    let _ = self.connection.recv_timeout(d);
                }
                Action::Stop => return Flow::Stop,
            }
        }
        flow
    }

    /// Add what the state machine counted since the last call to the shared counters.
    fn mirror(&mut self) {
        let now = self.state.counts();
        let was = self.mirrored;
        let s = &self.shared.stats;
        s.sent.fetch_add(now.sent - was.sent, Ordering::Relaxed);
        s.event_bytes
            .fetch_add(now.event_bytes - was.event_bytes, Ordering::Relaxed);
        s.acked.fetch_add(now.acked - was.acked, Ordering::Relaxed);
        s.connects
            .fetch_add(now.connects - was.connects, Ordering::Relaxed);
        s.connected.store(self.state.connected(), Ordering::Relaxed);
        self.mirrored = now;
    }

    fn connected(&mut self, first: bool) {
        let stats = &self.shared.stats;
        // the connection problem is over: it is no longer the last error either
        let solved = stats.problem.lock().ok().and_then(|mut p| p.take());
        if let (Some(old), Ok(mut last)) = (solved, stats.last_error.lock())
            && last.as_deref() == Some(old.message.as_str())
        {
            *last = None;
        }
        if !self.link.subscriptions.is_empty() {
            let filters = self
                .link
                .subscriptions
                .iter()
                .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
            if let Err(e) = self.client.try_subscribe_many(filters) {
                tracing::warn!("MQTT: could not subscribe: {e}");
            }
        }
        self.link.deliver(Inbound::Connected);
        if first {
            tracing::info!("connected to {}", self.link.profile.kind_name());
        } else {
            tracing::info!("connected to {} again", self.link.profile.kind_name());
        }
    }

    /// A connect failed or the connection was lost: report it, wait, and retry with a fresh
    /// token.
    fn failed(&mut self, e: &ConnectionError) -> Flow {
        let (was_connected, retry_in) = match self.state.failed() {
            Failure::Stop => return Flow::Stop,
            Failure::Retry {
                was_connected,
                retry_in,
            } => (was_connected, retry_in),
        };
        self.mirror();
        let problem = self.link.profile.reword(crate::transport::explain(e));
        if problem.permanent {
            if let Some(n) = self.connect_log.ready() {
                tracing::error!(
                    "MQTT: {}; retrying in {retry_in:?}{}",
                    problem.message,
                    ratelimit::repeats(n, ratelimit::DEFAULT_EVERY)
                );
            }
        } else if was_connected {
            tracing::warn!(
                "MQTT connection lost: {}; reconnecting (events wait on disk)",
                problem.message
            );
        } else {
            tracing::debug!(
                "MQTT connect failed: {}; retrying in {retry_in:?}",
                problem.message
            );
        }
        self.shared.note_error(problem.message.clone());
        if let Ok(mut p) = self.shared.stats.problem.lock() {
            *p = Some(problem);
        }
        self.back_off(retry_in);
        // a token may expire during an outage: every attempt gets a fresh one
        self.refresh();
        Flow::Poll
    }

    /// Wait `wait` before the next connect, cut short by a stop or the stop's deadline.
    fn back_off(&self, wait: Duration) {
        let until = Instant::now() + wait;
        while Instant::now() < until && !self.shared.stop.load(Ordering::Relaxed) {
            let past_deadline = self
                .shared
                .control()
                .close_by
                .is_some_and(|d| Instant::now() >= d);
            if past_deadline {
                break;
            }
            std::thread::sleep(BACKOFF_STEP);
        }
    }

    fn refresh(&mut self) {
        if let Some((renew_at, drain)) = self.link.refresh(&mut self.connection) {
            self.state.renewed(renew_at, drain);
        }
    }
}

/// The [`Outbox`] of a turn: rumqttc's request channel, the shared queue and the non-durable
/// messages.
struct Wires<'a> {
    client: &'a Client,
    shared: &'a Shared,
    read_log: &'a mut Throttle,
}

impl Outbox for Wires<'_> {
    fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) -> bool {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("MQTT client refused a request: {e}");
                false
            }
        }
    }

    fn disconnect(&mut self) -> bool {
        self.client.try_disconnect().is_ok()
    }

    fn next_record(&mut self) -> Option<Record> {
        let next = self.shared.spool().next_unsent();
        match next {
            Ok(rec) => rec,
            Err(e) => {
                if let Some(n) = self.read_log.ready() {
                    tracing::error!("{e}{}", ratelimit::repeats(n, ratelimit::DEFAULT_EVERY));
                }
                self.shared.note_error(e.to_string());
                None
            }
        }
    }

    fn next_transient(&mut self) -> Option<(String, Vec<u8>)> {
        self.shared.control().transient.pop_front()
    }

    fn depth(&mut self) -> u64 {
        self.shared.spool().pending()
    }
}
