//! The connection's state machine, driven by hand-made rumqttc events and an in-memory outbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rumqttc::{ConnAck, ConnectReturnCode, PubAck, Publish, QoS};

use super::*;

/// The queue, rumqttc's request channel and the non-durable messages, in memory.
#[derive(Default)]
struct Fake {
    /// Unacknowledged records, in seq order.
    queue: Vec<Record>,
    /// Index in `queue` of the next record to hand out.
    cursor: usize,
    /// What the client took: (topic, payload, retain).
    sent: Vec<(String, Vec<u8>, bool)>,
    /// How many more requests the client takes (`None`: all).
    room: Option<usize>,
    disconnects: usize,
    transient: VecDeque<(String, Vec<u8>)>,
}

impl Fake {
    fn with_records(n: u64) -> Fake {
        let mut q = Fake::default();
        for seq in 0..n {
            q.push(seq);
        }
        q
    }

    fn push(&mut self, seq: u64) {
        self.queue.push(Record {
            seq,
            appended_unix_ms: 1_700_000_000_000,
            topic: format!("p/d/events/{seq}"),
            payload: format!("event {seq}").into_bytes(),
        });
    }

    /// Carry out what the state machine asked of the queue; the other actions are returned.
    fn apply(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut rest = Vec::new();
        for a in actions {
            match a {
                Action::Rewind => self.cursor = 0,
                Action::Ack(seq) => {
                    if let Some(i) = self.queue.iter().position(|r| r.seq == seq) {
                        self.queue.remove(i);
                        if i < self.cursor {
                            self.cursor -= 1;
                        }
                    }
                }
                Action::KeepTransient(topic, payload) => {
                    self.transient.push_front((topic, payload));
                }
                other => rest.push(other),
            }
        }
        rest
    }

    fn take_request(&mut self) -> bool {
        match &mut self.room {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    fn topics(&self) -> Vec<&str> {
        self.sent.iter().map(|(t, _, _)| t.as_str()).collect()
    }
}

impl Outbox for Fake {
    fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) -> bool {
        let taken = self.take_request();
        if taken {
            self.sent.push((topic.to_owned(), payload, retain));
        }
        taken
    }

    fn disconnect(&mut self) -> bool {
        let taken = self.take_request();
        if taken {
            self.disconnects += 1;
        }
        taken
    }

    fn next_record(&mut self) -> Option<Record> {
        let r = self.queue.get(self.cursor)?.clone();
        self.cursor += 1;
        Some(r)
    }

    fn next_transient(&mut self) -> Option<(String, Vec<u8>)> {
        self.transient.pop_front()
    }

    fn depth(&mut self) -> u64 {
        self.queue.len() as u64
    }
}

fn wire() -> Wire {
    Wire {
        status_topic: "p/d/status".into(),
        status_retain: true,
        health: HealthRoute::Retained("p/d/health".into()),
        subscriptions: Vec::new(),
    }
}

fn turn(now: Instant) -> Turn {
    Turn {
        now,
        close_by: None,
        health: None,
        last_health: false,
    }
}

fn connack() -> MqttEvent {
    MqttEvent::Incoming(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        false,
    )))
}

fn puback(pkid: u16) -> MqttEvent {
    MqttEvent::Incoming(Packet::PubAck(PubAck::new(pkid)))
}

/// rumqttc wrote the publishes offered so far, numbering them `first..first + n` in the order
/// they were offered.
fn written(s: &mut State, first: u16, n: usize) {
    for pkid in (first..).take(n) {
        let actions = s.handle(MqttEvent::Outgoing(Outgoing::Publish(pkid)), Instant::now());
        assert_eq!(actions, vec![]);
    }
}

/// Connected, the CONNACK's actions carried out.
fn connect(s: &mut State, q: &mut Fake) -> Vec<Action> {
    let actions = s.handle(connack(), Instant::now());
    q.apply(actions)
}

#[test]
fn an_ack_removes_exactly_the_acked_record() {
    let now = Instant::now();
    let mut s = State::new(wire(), None);
    let mut q = Fake::with_records(3);
    assert_eq!(
        connect(&mut s, &mut q),
        vec![Action::Connected { first: true }]
    );
    assert_eq!(s.tick(turn(now), &mut q), vec![]);
    assert_eq!(
        q.topics(),
        ["p/d/status", "p/d/events/0", "p/d/events/1", "p/d/events/2"]
    );
    written(&mut s, 1, 4);
    // packet 3 carried the second record
    assert_eq!(s.handle(puback(3), now), vec![Action::Ack(1)]);
    q.apply(vec![Action::Ack(1)]);
    // a repeated PUBACK, and the PUBACK of `online`, acknowledge nothing
    assert_eq!(s.handle(puback(3), now), vec![]);
    assert_eq!(s.handle(puback(1), now), vec![]);
    assert_eq!(s.handle(puback(4), now), vec![Action::Ack(2)]);
    assert_eq!(
        s.counts(),
        Counts {
            sent: 3,
            event_bytes: 3 * 7,
            acked: 2,
            connects: 1
        }
    );
}

#[test]
fn a_reconnect_offers_again_what_was_in_flight() {
    let now = Instant::now();
    let mut s = State::new(wire(), None);
    let mut q = Fake::with_records(4);
    connect(&mut s, &mut q);
    s.tick(turn(now), &mut q);
    written(&mut s, 1, 5);
    let acked = s.handle(puback(2), now);
    assert_eq!(acked, vec![Action::Ack(0)]);
    q.apply(acked);
    // the connection is lost with records 1, 2 and 3 unacknowledged
    assert_eq!(
        s.failed(),
        Failure::Retry {
            was_connected: true,
            retry_in: BACKOFF_MIN
        }
    );
    assert!(!s.connected());
    q.sent.clear();
    assert_eq!(s.tick(turn(now), &mut q), vec![]);
    assert!(q.sent.is_empty(), "nothing is offered while disconnected");
    // the old connection's packet ids mean nothing now
    assert_eq!(s.handle(puback(3), now), vec![]);
    assert_eq!(
        s.handle(connack(), now),
        vec![Action::Rewind, Action::Connected { first: false }]
    );
    q.apply(vec![Action::Rewind]);
    s.tick(turn(now), &mut q);
    assert_eq!(
        q.topics(),
        ["p/d/status", "p/d/events/1", "p/d/events/2", "p/d/events/3"]
    );
    assert_eq!((s.counts().sent, s.counts().connects), (4 + 3, 2));
}

#[test]
fn backoff_grows_to_its_cap_and_resets_on_connect() {
    let mut s = State::new(wire(), None);
    let waits: Vec<u64> = (0..8)
        .map(|_| match s.failed() {
            Failure::Retry {
                was_connected: false,
                retry_in,
            } => retry_in.as_millis() as u64,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
    s.handle(connack(), Instant::now());
    assert_eq!(
        s.failed(),
        Failure::Retry {
            was_connected: true,
            retry_in: BACKOFF_MIN
        }
    );
}

#[test]
fn the_window_holds_at_most_inflight_messages() {
    let now = Instant::now();
    let mut s = State::new(wire(), None);
    let mut q = Fake::with_records(1000);
    connect(&mut s, &mut q);
    let mut next_pkid = 1u16;
    loop {
        let before = q.sent.len();
        assert_eq!(s.tick(turn(now), &mut q), vec![]);
        let offered = q.sent.len() - before;
        if offered == 0 {
            break;
        }
        assert!(offered < REQUEST_CHANNEL, "never fills the request channel");
        written(&mut s, next_pkid, offered);
        next_pkid += offered as u16;
    }
    // `online` and 199 records
    assert_eq!(q.sent.len(), usize::from(INFLIGHT));
    assert_eq!(s.counts().sent, u64::from(INFLIGHT) - 1);
    // one PUBACK makes room for exactly one more
    assert_eq!(s.handle(puback(2), now), vec![Action::Ack(0)]);
    s.tick(turn(now), &mut q);
    assert_eq!(q.topics().last(), Some(&"p/d/events/199"));
    assert_eq!(q.sent.len(), usize::from(INFLIGHT) + 1);
}

#[test]
fn a_refused_offer_rewinds_the_queue() {
    let now = Instant::now();
    let mut s = State::new(wire(), None);
    let mut q = Fake::with_records(5);
    connect(&mut s, &mut q);
    // the client takes `online` and two records, then refuses
    q.room = Some(3);
    assert_eq!(s.tick(turn(now), &mut q), vec![Action::Rewind]);
    assert_eq!(s.counts().sent, 2);
    q.apply(vec![Action::Rewind]);
    q.room = None;
    q.sent.clear();
    s.tick(turn(now), &mut q);
    let want: Vec<String> = (0..5).map(|i| format!("p/d/events/{i}")).collect();
    assert_eq!(q.topics(), want);
}

#[test]
fn non_durable_messages_go_first_and_a_refused_one_is_kept() {
    let now = Instant::now();
    let mut s = State::new(wire(), None);
    let mut q = Fake::with_records(1);
    connect(&mut s, &mut q);
    q.transient.push_back(("t/a".into(), b"1".to_vec()));
    q.transient.push_back(("t/b".into(), b"2".to_vec()));
    q.room = Some(2);
    let actions = s.tick(turn(now), &mut q);
    let rest = q.apply(actions);
    assert_eq!(rest, vec![]);
    assert_eq!(q.topics(), ["p/d/status", "t/a"]);
    assert_eq!(q.transient.front(), Some(&("t/b".into(), b"2".to_vec())));
    q.room = None;
    s.tick(turn(now), &mut q);
    assert_eq!(q.topics(), ["p/d/status", "t/a", "t/b", "p/d/events/0"]);
}

#[test]
fn health_is_offered_while_connected_and_again_after_a_reconnect() {
    let now = Instant::now();
    let mut s = State::new(wire(), None);
    let mut q = Fake::default();
    connect(&mut s, &mut q);
    let mut t = turn(now);
    t.health = Some(b"{\"ok\":1}".to_vec());
    s.tick(t, &mut q);
    assert_eq!(
        q.sent.last(),
        Some(&("p/d/health".into(), b"{\"ok\":1}".to_vec(), true))
    );
    s.failed();
    assert_eq!(
        s.handle(connack(), now),
        vec![
            Action::Rewind,
            Action::KeepHealth(b"{\"ok\":1}".to_vec()),
            Action::Connected { first: false }
        ]
    );
}

#[test]
fn inbound_messages_go_to_the_inbox() {
    let mut s = State::new(wire(), None);
    let p = Publish::new(
        "$iothub/twin/res/200/?$rid=1",
        QoS::AtLeastOnce,
        b"{}".to_vec(),
    );
    assert_eq!(
        s.handle(MqttEvent::Incoming(Packet::Publish(p)), Instant::now()),
        vec![Action::Deliver(Inbound::Message {
            topic: "$iothub/twin/res/200/?$rid=1".into(),
            payload: b"{}".to_vec()
        })]
    );
}

#[test]
fn a_clean_stop_sends_the_last_health_then_offline_then_disconnects() {
    let now = Instant::now();
    let mut s = State::new(wire(), None);
    let mut q = Fake::default();
    connect(&mut s, &mut q);
    s.tick(turn(now), &mut q);
    written(&mut s, 1, 1);
    let closing = |now: Instant, health: Option<&[u8]>, last_health: bool| Turn {
        now,
        close_by: Some(now + Duration::from_secs(10)),
        health: health.map(<[u8]>::to_vec),
        last_health,
    };
    // the queue is empty: the final health message first
    assert_eq!(
        s.tick(closing(now, None, true), &mut q),
        vec![Action::LastHealth]
    );
    assert_eq!(s.tick(closing(now, Some(b"last"), false), &mut q), vec![]);
    assert_eq!(q.topics(), ["p/d/status", "p/d/health", "p/d/status"]);
    assert_eq!(q.sent[2], ("p/d/status".into(), b"offline".to_vec(), true));
    written(&mut s, 2, 2);
    // the PUBACK of `offline` lets the DISCONNECT go; once it is out, the thread ends
    assert_eq!(s.handle(puback(3), now), vec![Action::Disconnect]);
    assert_eq!(
        s.handle(MqttEvent::Outgoing(Outgoing::Disconnect), now),
        vec![Action::Linger(LINGER), Action::Stop]
    );
}

#[test]
fn a_clean_stop_goes_on_without_acks() {
    let now = Instant::now();
    let mut s = State::new(wire(), None);
    let mut q = Fake::with_records(1);
    connect(&mut s, &mut q);
    let at = |now: Instant| Turn {
        now,
        close_by: Some(now),
        health: None,
        last_health: false,
    };
    // past the deadline with a record unacknowledged: `offline` anyway
    assert_eq!(s.tick(at(now), &mut q), vec![]);
    assert_eq!(q.sent.last().map(|m| m.1.as_slice()), Some(&b"offline"[..]));
    // no PUBACK for it: DISCONNECT after a second, the end half a second later
    let later = now + OFFLINE_WAIT + Duration::from_millis(1);
    assert_eq!(s.tick(at(later), &mut q), vec![Action::Disconnect]);
    let end = later + DISCONNECT_WAIT + Duration::from_millis(1);
    assert_eq!(s.tick(at(end), &mut q), vec![Action::Stop]);
    // not connected at the deadline: nothing to say goodbye on
    let mut s = State::new(wire(), None);
    assert_eq!(s.tick(at(now), &mut q), vec![Action::Stop]);
}

#[test]
fn a_token_renewal_drains_the_window_then_reconnects() {
    let now = Instant::now();
    let due = now + Duration::from_secs(60);
    let mut s = State::new(wire(), Some((due, Duration::from_secs(2))));
    let mut q = Fake::with_records(2);
    connect(&mut s, &mut q);
    s.tick(turn(now), &mut q);
    written(&mut s, 1, 3);
    q.push(2);
    // due: no new records, and no DISCONNECT while two are in flight
    assert_eq!(s.tick(turn(due), &mut q), vec![]);
    assert_eq!((q.sent.len(), q.disconnects), (3, 0));
    for pkid in 1..=3 {
        let actions = s.handle(puback(pkid), due);
        q.apply(actions);
    }
    assert_eq!(s.tick(turn(due), &mut q), vec![]);
    assert_eq!((q.sent.len(), q.disconnects), (3, 1));
    // the DISCONNECT is out: connect again at once, with a fresh token
    assert_eq!(
        s.handle(MqttEvent::Outgoing(Outgoing::Disconnect), due),
        vec![Action::Reconnect]
    );
    s.renewed(due + Duration::from_secs(60), Duration::from_secs(2));
    assert_eq!(
        connect(&mut s, &mut q),
        vec![Action::Connected { first: false }]
    );
    s.tick(turn(due), &mut q);
    assert_eq!(q.topics()[3..], ["p/d/status", "p/d/events/2"]);
}

#[test]
fn a_late_renewal_drops_the_connection() {
    let now = Instant::now();
    let due = now + Duration::from_secs(1);
    let mut s = State::new(wire(), Some((due, Duration::from_secs(2))));
    let mut q = Fake::with_records(1);
    connect(&mut s, &mut q);
    assert_eq!(s.tick(turn(now), &mut q), vec![]);
    written(&mut s, 1, 2);
    assert_eq!(s.tick(turn(due), &mut q), vec![]);
    assert_eq!(q.disconnects, 0);
    // the record is never acknowledged: DISCONNECT once the drain time has passed...
    let drained = due + Duration::from_millis(2001);
    assert_eq!(s.tick(turn(drained), &mut q), vec![]);
    assert_eq!(q.disconnects, 1);
    assert!(s.connected());
    // ...and when it has not gone out after twice that, drop the connection
    let late = due + Duration::from_millis(4001);
    assert_eq!(s.tick(turn(late), &mut q), vec![Action::Reconnect]);
    assert!(!s.connected());
}
