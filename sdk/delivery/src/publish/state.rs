//! The connection thread's state machine, without I/O.
//!
//! [`State`] decides what the MQTT connection does: what to offer the client next and when, which
//! packet id carries which queued record until its PUBACK, when a SAS token is replaced, how long
//! to wait after a failed connect, and how a clean stop ends. It owns no socket, thread or file:
//!
//! * [`State::tick`] runs once per turn of the connection thread, with a [`Turn`] (the time and
//!   what the publisher asked for) and an [`Outbox`] (rumqttc's request channel, the queue and the
//!   non-durable messages to draw from);
//! * [`State::handle`] takes one rumqttc event;
//! * [`State::failed`] takes a connection error.
//!
//! Each returns what the connection thread (`io.rs`) must carry out. The tests drive it with
//! hand-made rumqttc events and an in-memory outbox.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rumqttc::{Event as MqttEvent, Outgoing, Packet};

use super::Inbound;
use crate::cloud::{HealthRoute, Wire};
use crate::spool::Record;

/// rumqttc's request channel. Only the connection thread sends into it and it keeps fewer than
/// this many requests outstanding, so a send never finds it full.
pub(super) const REQUEST_CHANNEL: usize = 64;
/// QoS 1 messages in flight (sent, not yet acknowledged).
pub(super) const INFLIGHT: u16 = 200;
/// The wait after the first failed connect; it doubles with every failure after it.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// The longest wait between connect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Longest wait of a token renewal for the events in flight to be acknowledged (shorter for
/// short-lived tokens: a sixteenth of their life).
const RENEW_DRAIN: Duration = Duration::from_secs(3);
/// At a clean stop, how long the retained `offline` may wait for its PUBACK before the
/// DISCONNECT goes anyway.
const OFFLINE_WAIT: Duration = Duration::from_secs(1);
/// At a clean stop, how long the DISCONNECT may take to go out before the thread ends anyway.
const DISCONNECT_WAIT: Duration = Duration::from_millis(500);
/// After our DISCONNECT has gone out: time for the event loop to write it to the socket.
const LINGER: Duration = Duration::from_millis(50);

/// What a message offered to the client carries, until its PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    /// A queued record: its PUBACK removes it from the queue.
    Event(u64),
    /// The `offline` of a clean stop: its PUBACK lets the DISCONNECT go.
    Offline,
    /// Anything else (`online`, health, non-durable messages): nothing waits on its PUBACK.
    Other,
}

/// Where the connection is in a clean stop.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Closing {
    No,
    /// `offline` offered at this instant; waiting for its PUBACK.
    Offline(Instant),
    /// DISCONNECT requested at this instant.
    Disconnect(Instant),
}

/// Where the connection is in replacing its SAS token.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Renew {
    No,
    /// No new events offered since this instant; DISCONNECT once the window has drained.
    Draining(Instant),
    /// DISCONNECT requested (the renewal began at this instant).
    Disconnecting(Instant),
}

/// What a tick draws on and sends into: rumqttc's request channel and the publisher's queues.
/// The connection thread implements it over the client and the shared queue; the tests with
/// in-memory fakes.
pub(super) trait Outbox {
    /// Offer a QoS 1 publish to the client; `false`: the client refused the request.
    fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) -> bool;
    /// Ask the client to send a DISCONNECT; `false`: it refused the request.
    fn disconnect(&mut self) -> bool;
    /// The next queued record not handed out yet (`None`: none now, or the queue could not be
    /// read, which the implementation reports).
    fn next_record(&mut self) -> Option<Record>;
    /// The oldest non-durable message waiting to be sent: (topic, payload).
    fn next_transient(&mut self) -> Option<(String, Vec<u8>)>;
    /// Unacknowledged records in the queue.
    fn depth(&mut self) -> u64;
}

/// What the publisher has asked for, read once at the start of a turn.
#[derive(Debug)]
pub(super) struct Turn {
    /// The time of the turn.
    pub(super) now: Instant,
    /// Stop once the queue is empty or at this instant, whichever is first.
    pub(super) close_by: Option<Instant>,
    /// A health payload to publish. Take it only while [`State::connected`]: one that cannot be
    /// offered in this turn is dropped (the publisher posts a newer one soon).
    pub(super) health: Option<Vec<u8>>,
    /// A maker of the last health message is waiting ([`super::Publisher::shutdown_with_health`]).
    pub(super) last_health: bool,
}

/// What the connection thread must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// Hand out every unacknowledged record of the queue again, from the oldest.
    Rewind,
    /// The broker acknowledged this record: remove it from the queue.
    Ack(u64),
    /// Offer this health payload on the next connection, unless a newer one is waiting.
    KeepHealth(Vec<u8>),
    /// Put this message back at the front of the non-durable queue: (topic, payload).
    KeepTransient(String, Vec<u8>),
    /// Ask the client to send a DISCONNECT (whether it takes the request does not matter).
    Disconnect,
    /// Drop the connection now and connect again, with a fresh token.
    Reconnect,
    /// Connected: the connection problem is over; subscribe, and tell the inbox.
    Connected {
        /// The first connection of this publisher (for the log line).
        first: bool,
    },
    /// Hand this to the inbox.
    Deliver(Inbound),
    /// Make the last health message now that the queue has drained, then turn again at once.
    LastHealth,
    /// Let the event loop run this long without acting on it, so it writes our DISCONNECT.
    Linger(Duration),
    /// End the connection thread.
    Stop,
}

/// What to do after a connection error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The error ends our own DISCONNECT of a clean stop: stop.
    Stop,
    /// Report it, wait `retry_in` (unless the publisher stops), then connect again with a fresh
    /// token.
    Retry {
        /// The connection was up (a lost connection, not a failed connect).
        was_connected: bool,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

/// The connection thread's counters, added to [`super::PublishStats`] as they change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// Records handed to the client (a re-send after a reconnect counts again).
    pub(super) sent: u64,
    /// Their payload bytes.
    pub(super) event_bytes: u64,
    /// Record PUBACKs.
    pub(super) acked: u64,
    /// Connections made.
    pub(super) connects: u64,
}

/// The connection's state: what is in flight, what to offer next, backoff, renewal, stop.
#[derive(Debug)]
pub(super) struct State {
    /// The profile's topics: status, health route.
    wire: Wire,
    /// Offered to the client, its `Outgoing::Publish` not seen yet (rumqttc assigns packet ids in
    /// the order the requests were made, so the front gets the next id).
    waiting: VecDeque<Tag>,
    /// Packet id → what it carries, until its PUBACK.
    inflight: HashMap<u16, Tag>,
    connected: bool,
    /// `online` is due (after every connect).
    announce: bool,
    /// The wait after the next failed connect.
    backoff: Duration,
    closing: Closing,
    renewing: Renew,
    /// When the current SAS token should be replaced (`None`: there is no token).
    renew_at: Option<Instant>,
    /// Longest wait for the window to drain before the DISCONNECT of a renewal.
    renew_drain: Duration,
    /// The health payload offered on this connection: offered again after a reconnect (its
    /// PUBACK may have been lost), unless a newer one is waiting.
    health_sent: Option<Vec<u8>>,
    /// Numbers health messages (a twin update needs a request id of its own).
    health_seq: u64,
    counts: Counts,
}

impl State {
    /// Not connected yet. `token`: when the first SAS token should be replaced, and the longest
    /// a renewal may wait for the window to drain (`None`: no token to replace).
    pub(super) fn new(wire: Wire, token: Option<(Instant, Duration)>) -> State {
        State {
            wire,
            waiting: VecDeque::new(),
            inflight: HashMap::new(),
            connected: false,
            announce: false,
            backoff: BACKOFF_MIN,
            closing: Closing::No,
            renewing: Renew::No,
            renew_at: token.map(|t| t.0),
            renew_drain: token.map_or(RENEW_DRAIN, |t| t.1.min(RENEW_DRAIN)),
            health_sent: None,
            health_seq: 0,
            counts: Counts::default(),
        }
    }

    /// Whether the connection is up (CONNACK seen, not lost or closed since).
    pub(super) fn connected(&self) -> bool {
        self.connected
    }

    /// The counters so far.
    pub(super) fn counts(&self) -> Counts {
        self.counts
    }

    /// A fresh token is in the options of the next connect: replace it at `renew_at`, and let
    /// its renewal wait at most `drain` for the window to drain.
    pub(super) fn renewed(&mut self, renew_at: Instant, drain: Duration) {
        self.renew_at = Some(renew_at);
        self.renew_drain = drain.min(RENEW_DRAIN);
    }

    /// One turn: replace the token if due, offer `online`, health, non-durable messages and a
    /// window of records, and take the next step of a clean stop.
    pub(super) fn tick(&mut self, turn: Turn, out: &mut impl Outbox) -> Vec<Action> {
        let mut actions = Vec::new();
        self.renew(turn.now, out, &mut actions);
        if self.connected && self.closing == Closing::No {
            if self.announce
                && offer(
                    out,
                    &mut self.waiting,
                    &self.wire.status_topic,
                    b"online".to_vec(),
                    self.wire.status_retain,
                    Tag::Other,
                )
            {
                self.announce = false;
            }
            if let Some(h) = turn.health {
                self.offer_health(h, out, &mut actions);
            }
            self.offer_transients(out, &mut actions);
            self.offer_records(out, &mut actions);
        }
        if let Some(deadline) = turn.close_by {
            self.close(turn.now, deadline, turn.last_health, out, &mut actions);
        }
        actions
    }

    /// One event from rumqttc's event loop, `now`.
    pub(super) fn handle(&mut self, event: MqttEvent, now: Instant) -> Vec<Action> {
        match event {
            MqttEvent::Incoming(Packet::ConnAck(_)) => self.on_connack(),
            MqttEvent::Incoming(Packet::Publish(p)) => vec![Action::Deliver(Inbound::Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
            })],
            MqttEvent::Outgoing(Outgoing::Publish(pkid)) => {
                match self.waiting.pop_front() {
                    Some(tag) if pkid != 0 => {
                        self.inflight.insert(pkid, tag);
                    }
                    Some(_) => {}
                    None => tracing::debug!("MQTT publish {pkid} was not offered by us"),
                }
                Vec::new()
            }
            MqttEvent::Incoming(Packet::PubAck(ack)) => self.on_puback(ack.pkid, now),
            MqttEvent::Outgoing(Outgoing::Disconnect) => self.on_disconnect(),
            _ => Vec::new(),
        }
    }

    /// The connection failed (a connect, or a connection that was up).
    pub(super) fn failed(&mut self) -> Failure {
        if matches!(self.closing, Closing::Disconnect(_)) {
            return Failure::Stop;
        }
        let was_connected = self.connected;
        self.drop_connection();
        self.renewing = Renew::No;
        let retry_in = self.backoff;
        self.backoff = self.backoff.saturating_mul(2).min(BACKOFF_MAX);
        Failure::Retry {
            was_connected,
            retry_in,
        }
    }

    fn on_connack(&mut self) -> Vec<Action> {
        self.connected = true;
        self.announce = true;
        self.backoff = BACKOFF_MIN;
        self.waiting.clear();
        self.inflight.clear();
        self.renewing = Renew::No;
        self.counts.connects += 1;
        // clean session: whatever was in flight on the old connection is offered again
        let mut actions = vec![Action::Rewind];
        if let Some(h) = self.health_sent.take() {
            actions.push(Action::KeepHealth(h));
        }
        actions.push(Action::Connected {
            first: self.counts.connects == 1,
        });
        actions
    }

    fn on_puback(&mut self, pkid: u16, now: Instant) -> Vec<Action> {
        match self.inflight.remove(&pkid) {
            Some(Tag::Event(seq)) => {
                self.counts.acked += 1;
                vec![Action::Ack(seq)]
            }
            Some(Tag::Offline) if matches!(self.closing, Closing::Offline(_)) => {
                self.closing = Closing::Disconnect(now);
                vec![Action::Disconnect]
            }
            Some(Tag::Offline | Tag::Other) | None => Vec::new(),
        }
    }

    /// Our DISCONNECT went out.
    fn on_disconnect(&mut self) -> Vec<Action> {
        self.connected = false;
        if self.renewing != Renew::No && self.closing == Closing::No {
            // reconnect at once with a fresh token; the clean session and the rewind on CONNACK
            // offer whatever was still unacknowledged again
            self.drop_connection();
            return vec![Action::Reconnect];
        }
        if matches!(self.closing, Closing::Disconnect(_)) {
            return vec![Action::Linger(LINGER), Action::Stop];
        }
        Vec::new()
    }

    /// Not connected, and nothing in flight: a new connection starts from an empty window.
    fn drop_connection(&mut self) {
        self.connected = false;
        self.waiting.clear();
        self.inflight.clear();
    }

    /// Replace the SAS token before it expires: stop offering records, let the window drain (up
    /// to `renew_drain`), then a clean DISCONNECT; the reconnect carries a fresh token.
    fn renew(&mut self, now: Instant, out: &mut impl Outbox, actions: &mut Vec<Action>) {
        if self.connected
            && self.closing == Closing::No
            && self.renewing == Renew::No
            && self.renew_at.is_some_and(|at| now >= at)
        {
            tracing::debug!("MQTT: replacing the SAS token before it expires");
            self.renewing = Renew::Draining(now);
        }
        if let Renew::Draining(since) = self.renewing
            && self.connected
            && ((self.waiting.is_empty() && self.inflight.is_empty())
                || now.duration_since(since) > self.renew_drain)
            && out.disconnect()
        {
            // a clean DISCONNECT (no Last Will); the next connect carries the new token
            self.renewing = Renew::Disconnecting(since);
        }
        // The DISCONNECT waits in rumqttc's queue behind publishes that wait for room in the
        // window; on a slow link the token could expire first, and the hub would cut the
        // connection anyway. After twice the drain time, drop the connection ourselves (the
        // broker then sends the Last Will, as it would on the hub's cut) and reconnect now.
        if let Renew::Draining(since) | Renew::Disconnecting(since) = self.renewing
            && self.connected
            && now.duration_since(since) > self.renew_drain.saturating_mul(2)
        {
            tracing::debug!("MQTT: the token renewal's DISCONNECT is late; reconnecting now");
            actions.push(Action::Reconnect);
            self.drop_connection();
            self.renewing = Renew::No;
        }
    }

    fn offer_health(&mut self, h: Vec<u8>, out: &mut impl Outbox, actions: &mut Vec<Action>) {
        self.health_seq += 1;
        let (topic, payload, retain) = health_message(&self.wire.health, &h, self.health_seq);
        if offer(out, &mut self.waiting, &topic, payload, retain, Tag::Other) {
            self.health_sent = Some(h);
        } else {
            actions.push(Action::KeepHealth(h));
        }
    }

    /// Non-durable messages, leaving room in the request channel for records and a DISCONNECT.
    fn offer_transients(&mut self, out: &mut impl Outbox, actions: &mut Vec<Action>) {
        while self.waiting.len() < REQUEST_CHANNEL - 8 {
            let Some((topic, payload)) = out.next_transient() else {
                break;
            };
            if !offer(
                out,
                &mut self.waiting,
                &topic,
                payload.clone(),
                false,
                Tag::Other,
            ) {
                actions.push(Action::KeepTransient(topic, payload));
                break;
            }
        }
    }

    /// Keep a window of records in flight (none while a token renewal drains the window).
    fn offer_records(&mut self, out: &mut impl Outbox, actions: &mut Vec<Action>) {
        while self.renewing == Renew::No
            && self.waiting.len() < REQUEST_CHANNEL - 4
            && self.inflight.len() + self.waiting.len() < usize::from(INFLIGHT)
        {
            let Some(rec) = out.next_record() else {
                break;
            };
            let n = rec.payload.len() as u64;
            let tag = Tag::Event(rec.seq);
            if !offer(out, &mut self.waiting, &rec.topic, rec.payload, false, tag) {
                // hand it out again later, with everything else not acknowledged
                actions.push(Action::Rewind);
                self.waiting.clear();
                self.inflight.clear();
                return;
            }
            self.counts.sent += 1;
            self.counts.event_bytes += n;
        }
    }

    /// The next step of a clean stop: once the queue has drained (or at the deadline) the last
    /// health message, then the retained `offline`, its PUBACK, a DISCONNECT, and the end.
    fn close(
        &mut self,
        now: Instant,
        deadline: Instant,
        last_health: bool,
        out: &mut impl Outbox,
        actions: &mut Vec<Action>,
    ) {
        match self.closing {
            Closing::No if self.connected && (out.depth() == 0 || now >= deadline) => {
                if last_health {
                    // the final counters first, made now that the queue has drained
                    actions.push(Action::LastHealth);
                    return;
                }
                let offered = offer(
                    out,
                    &mut self.waiting,
                    &self.wire.status_topic,
                    b"offline".to_vec(),
                    self.wire.status_retain,
                    Tag::Offline,
                );
                // refused: no PUBACK to wait for, so the DISCONNECT goes at the next turn
                let since = if offered {
                    now
                } else {
                    now.checked_sub(OFFLINE_WAIT * 2).unwrap_or(now)
                };
                self.closing = Closing::Offline(since);
            }
            Closing::No if !self.connected && now >= deadline => actions.push(Action::Stop),
            Closing::Offline(at) if now.duration_since(at) > OFFLINE_WAIT => {
                actions.push(Action::Disconnect);
                self.closing = Closing::Disconnect(now);
            }
            Closing::Disconnect(at) if now.duration_since(at) > DISCONNECT_WAIT => {
                actions.push(Action::Stop);
            }
            _ => {}
        }
    }
}

/// Offer one QoS 1 publish; if the client took it, its tag waits for its packet id.
fn offer(
    out: &mut impl Outbox,
    waiting: &mut VecDeque<Tag>,
    topic: &str,
    payload: Vec<u8>,
    retain: bool,
    tag: Tag,
) -> bool {
    let taken = out.publish(topic, payload, retain);
    if taken {
        waiting.push_back(tag);
    }
    taken
}

/// The health message as the profile sends it: (topic, payload, retain).
fn health_message(route: &HealthRoute, payload: &[u8], seq: u64) -> (String, Vec<u8>, bool) {
    match route {
        HealthRoute::Retained(t) => (t.clone(), payload.to_vec(), true),
        HealthRoute::AzureReported => (
            crate::cloud::azure::twin_reported_topic(&format!("h{seq}")),
            wrap_json(b"{\"health\":", payload, b"}"),
            false,
        ),
        HealthRoute::AwsShadow(t) => (
            t.clone(),
            wrap_json(b"{\"state\":{\"reported\":{\"health\":", payload, b"}}}"),
            false,
        ),
    }
}

fn wrap_json(head: &[u8], body: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(head.len() + body.len() + tail.len());
    v.extend_from_slice(head);
    v.extend_from_slice(body);
    v.extend_from_slice(tail);
    v
}

#[cfg(test)]
mod tests;
