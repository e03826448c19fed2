#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Fault injection against real parts on loopback: the broker restarted ten times while 10 000
//! events are published, and the `ocellus` program itself killed with SIGKILL four times during a
//! run on real footage. An independent subscriber with a persistent session (QoS 1) counts event ids:
//! every event must arrive at least once, and a duplicate must be the same event (same id, same
//! bytes).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::broker::free_port;
use common::faults::{Broker, PersistentSubscriber};
use ocellus::event::Event;
use ocellus::publish::{MqttSettings, Publisher};

use common::line_event as event;

#[test]
fn ten_broker_restarts_during_ten_thousand_events_lose_nothing() {
    const EVENTS: u64 = 10_000;
    const RESTARTS: u64 = 10;
    let port = free_port();
    let mut broker = Broker::on_port(port);
    broker.start();
    let sub = PersistentSubscriber::start(port, "independent-counter", "faults/+/events/#");

    let q = tempfile::tempdir().unwrap();
    let mut s = MqttSettings::new("127.0.0.1", port, "cam-restarts", q.path());
    s.topic_prefix = "faults".into();
    let publisher = Publisher::start(s).unwrap();
    let dev: Arc<str> = Arc::from("cam-restarts");
    let mut sent = Vec::with_capacity(EVENTS as usize);

    // 10 000 events in ten bursts; the broker is restarted in the middle of each burst's delivery
    let stats = publisher.stats();
    let acked = || stats.acked.load(Ordering::Relaxed);
    for round in 0..RESTARTS {
        let connected = wait_until(Duration::from_secs(30), || {
            stats.connected.load(Ordering::Relaxed)
        });
        assert!(connected, "no reconnect after restart {round}");
        let before = acked();
        for i in 0..EVENTS / RESTARTS {
            let e = event(&dev, round * 1000 + i);
            assert!(publisher.publish(&e), "the queue has room");
            sent.push(e);
        }
        wait_until(Duration::from_secs(10), || acked() >= before + 100);
        broker.restart();
    }
    let want: HashSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    let all = sub.wait_for(Duration::from_secs(90), |got| {
        want.iter().all(|id| got.contains_key(id))
    });
    let summary = publisher.shutdown(Duration::from_secs(20));
    let (got, _) = sub.events();
    let missing: Vec<usize> = sent
        .iter()
        .enumerate()
        .filter(|(_, e)| !got.contains_key(&e.id))
        .map(|(i, _)| i)
        .collect();
    assert!(
        all,
        "{} of {EVENTS} events never arrived (by index: {:?}…); publisher: {summary:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(summary.flushed, "{summary:?}");
    assert!(summary.connects > RESTARTS, "{summary:?}");
    // duplicates only as copies of the same event
    let by_id: std::collections::HashMap<&str, Vec<u8>> =
        sent.iter().map(|e| (e.id.as_str(), e.to_json())).collect();
    let mut dups = 0;
    for (id, copies) in &got {
        let original = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("an event nobody sent: {id}"));
        for c in copies {
            assert_eq!(c, original, "a duplicate of {id} differs from the event");
        }
        dups += copies.len() - 1;
    }
    eprintln!(
        "{EVENTS} events, {RESTARTS} broker restarts: all delivered, {dups} duplicate(s), {} connects",
        summary.connects
    );
}

fn wait_until(timeout: Duration, pred: impl Fn() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while !pred() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

// ------------------------------------------------------------------------------------------------
// The program killed with SIGKILL.

fn config(dir: &Path, port: u16, queue: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"
[device]
id = "cam-kill"

[source]
kind = "video"
path = "{video}"
loop = true

[model]
card = "{card}"
labels = ["person"]

[[rules.line]]
name = "walkway"
a = [0.75, 0.3]
b = [0.75, 0.75]

[[rules.zone]]
name = "crossing"
polygon = [[0.25, 0.35], [0.75, 0.35], [0.75, 0.7], [0.25, 0.7]]

[mqtt]
url = "mqtt://127.0.0.1:{port}"
topic_prefix = "kill"

[queue]
dir = "{queue}"
fsync_ms = 100
"#,
        video = common::footage("vtest.avi").display(),
        card = common::card_path("ssd-mobilenet-v2-coco.toml").display(),
        queue = queue.display(),
    );
    let path = dir.join(format!("kill-{port}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `ocellus run --format json`: every event it prints has been stored in the queue.
struct Run {
    child: Child,
    ids: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Run {
    fn start(cfg: &Path, extra: &[&str]) -> Run {
        let mut child = common::bin()
            .args(["run", "--format", "json", "--config"])
            .arg(cfg)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let ids = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        {
            let ids = ids.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let v: serde_json::Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not an event: {e}: {line}"));
                    ids.lock()
                        .unwrap()
                        .push(v["id"].as_str().unwrap().to_owned());
                }
            });
        }
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        Run { child, ids, stderr }
    }

    fn wait_events(&self, n: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        while self.ids.lock().unwrap().len() < n {
            assert!(
                Instant::now() < end,
                "only {} events in {timeout:?}: {}",
                self.ids.lock().unwrap().len(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_9(mut self) -> Vec<String> {
        self.child.kill().unwrap(); // SIGKILL
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100)); // the reader thread sees EOF
        self.ids.lock().unwrap().clone()
    }

    fn wait(mut self, timeout: Duration) -> (Vec<String>, std::process::ExitStatus, String) {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("did not finish: {}", self.stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100));
        let ids = self.ids.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (ids, status, err)
    }
}

#[test]
fn kill_9_four_times_during_a_run_loses_no_event() {
    let port = free_port();
    let mut broker = Broker::on_port(port);
    broker.start();
    let sub = PersistentSubscriber::start(port, "kill-counter", "kill/cam-kill/events/#");
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let good = config(dir.path(), port, &queue);
    // the same device and queue, pointed at a port where nobody listens: events pile up on disk
    let dead = config(dir.path(), free_port(), &queue);

    let mut produced: Vec<Vec<String>> = Vec::new();
    // 1: killed while delivering
    let run = Run::start(&good, &[]);
    run.wait_events(12, Duration::from_secs(120));
    produced.push(run.kill_9());
    // 2: killed while the broker is unreachable: everything it produced waits in the queue
    let run = Run::start(&dead, &[]);
    run.wait_events(12, Duration::from_secs(120));
    produced.push(run.kill_9());
    // 3: killed again soon after it starts sending what run 2 left
    let run = Run::start(&good, &[]);
    run.wait_events(5, Duration::from_secs(120));
    produced.push(run.kill_9());
    // 3b: killed once more while the broker is unreachable, so that run 4 surely starts with
    // events on disk (whether run 3 had delivered all of its own before the kill is a race)
    let run = Run::start(&dead, &[]);
    run.wait_events(3, Duration::from_secs(120));
    produced.push(run.kill_9());
    // 4: runs to its end (a frame limit) and stops cleanly
    let run = Run::start(&good, &["--frames", "60"]);
    let (ids, status, stderr) = run.wait(Duration::from_secs(180));
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("recovered from an earlier run"), "{stderr}");
    produced.push(ids);

    let want: Vec<&String> = produced.iter().flatten().collect();
    assert!(want.len() >= 29, "{}", want.len());
    let all = sub.wait_for(Duration::from_secs(30), |got| {
        want.iter().all(|id| got.contains_key(*id))
    });
    let (got, order) = sub.events();
    let missing: Vec<_> = want.iter().filter(|id| !got.contains_key(**id)).collect();
    assert!(
        all,
        "{} of {} events the program stored never arrived: {missing:?}",
        missing.len(),
        want.len()
    );
    // what run 2 left on disk was delivered in the order it was produced
    let pos: std::collections::HashMap<&String, usize> =
        order.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let run2: Vec<usize> = produced[1].iter().map(|id| pos[id]).collect();
    assert!(
        run2.windows(2).all(|w| w[0] < w[1]),
        "run 2's events out of order: {run2:?}"
    );
    eprintln!(
        "events per run: {:?}; {} distinct delivered",
        produced.iter().map(Vec::len).collect::<Vec<_>>(),
        got.len()
    );
}

// ------------------------------------------------------------------------------------------------
// TLS: the publisher against mosquitto with a TLS listener, a client certificate and a password
// (a throw-away CA made with openssl by the harness).

fn tls_settings(
    b: &common::tls::TlsBroker,
    device: &str,
    queue: &Path,
) -> ocellus::publish::MqttSettings {
    let mut s = MqttSettings::new("127.0.0.1", b.port(), device, queue);
    s.topic_prefix = "tls".into();
    s.tls = Some(b.pki.client_settings());
    s.credentials = Some(common::tls::credentials());
    s
}

#[test]
fn events_over_mutual_tls_with_a_password_reach_the_subscriber() {
    let b = common::tls::TlsBroker::start();
    let sub = b.subscriber("tls/#");
    let q = tempfile::tempdir().unwrap();
    let publisher = Publisher::start(tls_settings(&b, "cam-tls", q.path())).unwrap();
    assert!(
        publisher.check_connect(Duration::from_secs(10)).unwrap(),
        "{}",
        b.log()
    );
    let dev: Arc<str> = Arc::from("cam-tls");
    let sent: Vec<Event> = (0..50).map(|i| event(&dev, i)).collect();
    for e in &sent {
        assert!(publisher.publish(e));
    }
    let summary = publisher.shutdown(Duration::from_secs(10));
    assert!(summary.flushed, "{summary:?}");
    let want: HashSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    let got = |l: &[String]| -> HashSet<String> {
        l.iter()
            .filter(|l| l.starts_with("tls/cam-tls/events/"))
            .filter_map(|l| l.split_once(' '))
            .map(|(_, p)| {
                serde_json::from_str::<serde_json::Value>(p).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert!(
        sub.wait_for(Duration::from_secs(10), |l| got(l) == want),
        "{} of 50 over TLS",
        got(&sub.lines()).len()
    );
}

#[test]
fn a_wrong_ca_or_password_is_a_clear_error_that_keeps_the_secret() {
    let b = common::tls::TlsBroker::start();
    let q = tempfile::tempdir().unwrap();

    let mut s = tls_settings(&b, "cam-wrong-ca", q.path());
    s.tls.as_mut().unwrap().ca_file = Some(b.pki.wrong_ca.clone());
    let p = Publisher::start(s).unwrap();
    let err = p.check_connect(Duration::from_secs(10)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ocellus::delivery::Error::Broker { .. }),
        "{msg}"
    );
    assert!(msg.contains("mqtt.ca_file"), "{msg}");
    drop(p);

    let wrong = "not-the-password-5521";
    let mut s = tls_settings(&b, "cam-wrong-pw", q.path());
    s.credentials.as_mut().unwrap().password = Some(ocellus::transport::Secret::new(wrong));
    let p = Publisher::start(s).unwrap();
    let err = p.check_connect(Duration::from_secs(10)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("password"), "{msg}");
    assert!(!msg.contains(wrong), "the password leaked: {msg}");
    let health = p.health();
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| !e.contains(wrong)),
        "{health:?}"
    );
    drop(p);
}

#[test]
fn ocellus_run_with_a_wrong_password_exits_2_naming_the_key() {
    let b = common::tls::TlsBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wrong-pw-88231";
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{wrong}\n")).unwrap();
    let mqtt = b.mqtt_toml().replace(
        &format!("password_file = \"{}\"", b.password_file.display()),
        &format!("password_file = \"{}\"", pw.display()),
    );
    assert!(mqtt.contains(&pw.display().to_string()));
    let cfg = dir.path().join("tls.toml");
    std::fs::write(
        &cfg,
        format!(
            "[device]\nid = \"cam-pw\"\n\n[source]\nkind = \"synthetic\"\nframes = 20\n\n[model]\ncard = \"{}\"\n\n[mqtt]\n{mqtt}\n[queue]\ndir = \"{}\"\n",
            common::card_path("ssd-mobilenet-v2-coco.toml").display(),
            dir.path().join("queue").display()
        ),
    )
    .unwrap();
    let out = common::bin()
        .args(["run", "--quiet", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("mqtt.password"), "{stderr}");
    assert!(
        !stderr.contains(wrong) && !stdout.contains(wrong),
        "{stderr}"
    );
}

// ------------------------------------------------------------------------------------------------
// A queue that cannot be written.

fn small_config(dir: &Path, port: u16, queue: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(config(dir, port, queue))
        .unwrap()
        .replace("loop = true", "loop = false")
        .replace(
            "fsync_ms = 100",
            "fsync_ms = 100\n\n[health]\ninterval_s = 1",
        );
    let path = dir.join("small.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_queue_directory_that_is_a_file_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let cfg = small_config(dir.path(), free_port(), &file);
    let started = Instant::now();
    let out = common::bin()
        .args(["run", "--quiet", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("event queue"),
        "{stderr}"
    );
    // refused before the model is loaded
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");
}

#[test]
fn a_disk_that_refuses_writes_is_reported_and_loses_nothing_while_the_broker_is_up() {
    let port = free_port();
    let mut broker = Broker::on_port(port);
    broker.start();
    let sub = PersistentSubscriber::start(port, "refusing-disk", "kill/cam-kill/events/#");
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), port, &dir.path().join("queue"));
    // a file-size limit of 1 KiB stands in for a disk that refuses writes (EFBIG): the queue
    // frees what is acknowledged, and what still does not fit is held in memory and delivered
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 2; exec '{}' run --format json --frames 200 --config '{}'",
            env!("CARGO_BIN_EXE_ocellus"),
            cfg.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "nothing was lost: {stderr}");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(ids.len() > 20, "{} events", ids.len());
    assert!(
        sub.wait_for(Duration::from_secs(20), |got| ids
            .iter()
            .all(|id| got.contains_key(id))),
        "every event the run produced reached the subscriber"
    );
    assert!(
        stderr.contains("disk write(s) failed (a full disk?)"),
        "{stderr}"
    );
    let health: serde_json::Value = serde_json::from_str(
        &common::broker::retained(port, "kill/cam-kill/health").expect("retained health"),
    )
    .unwrap();
    let q = &health["queue"];
    assert!(q["write_errors"].as_u64().unwrap() > 0, "{health}");
    // the retained health is the final word, made after the queue drained
    assert_eq!(q["depth"], 0, "{health}");
    assert_eq!(
        health["mqtt"]["acked"].as_u64(),
        Some(ids.len() as u64),
        "{health}"
    );
    assert!(q["reclaimed"].as_u64().unwrap() > 0, "{health}");
}

#[test]
fn a_queue_on_a_full_filesystem_loses_no_event_while_the_broker_is_up() {
    // 1 808 events of about 420 bytes (760 KB) through a queue on a 64 KiB filesystem
    const EVENTS: u64 = 1808;
    let port = free_port();
    let mut broker = Broker::on_port(port);
    broker.start();
    let sub = PersistentSubscriber::start(port, "full-disk-counter", "full/+/events/#");
    let disk = common::Tmpfs::mount(64);
    let mut s = MqttSettings::new("127.0.0.1", port, "cam-full", disk.path().join("queue"));
    s.topic_prefix = "full".into();
    let publisher = Publisher::start(s).unwrap();
    assert!(publisher.check_connect(Duration::from_secs(10)).unwrap());
    let dev: Arc<str> = Arc::from("cam-full");
    let mut sent = Vec::with_capacity(EVENTS as usize);
    for i in 0..EVENTS {
        let e = event(&dev, i);
        assert!(
            publisher.publish(&e),
            "event {i} was not kept: {:?}",
            publisher.health()
        );
        sent.push(e);
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let want: HashSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    let all = sub.wait_for(Duration::from_secs(60), |got| {
        want.iter().all(|id| got.contains_key(id))
    });
    let health = publisher.health();
    let summary = publisher.shutdown(Duration::from_secs(20));
    let (got, _) = sub.events();
    let missing = want.iter().filter(|id| !got.contains_key(*id)).count();
    assert!(
        all,
        "{missing} of {EVENTS} events lost; {summary:?}; {health:?}"
    );
    assert_eq!((summary.refused, summary.dropped), (0, 0), "{summary:?}");
    assert!(summary.flushed, "{summary:?}");
    // the filesystem really was too small for the events: acknowledged ones were freed for them
    assert!(health.queue.reclaimed > 0, "{health:?}");
    eprintln!(
        "{EVENTS} events through a 64 KiB queue filesystem: all delivered; {} reclaims, {} held in memory, {} write errors",
        health.queue.reclaimed, health.queue.not_durable, health.queue.write_errors
    );
    drop(disk);
}

#[test]
fn fsync_keeps_its_schedule_while_a_connect_hangs() {
    // a "broker" that accepts TCP and never answers CONNECT: each connect attempt waits seconds
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                held.lock().unwrap().push(conn); // keep it open, say nothing
            }
        });
    }
    let q = tempfile::tempdir().unwrap();
    let mut s = MqttSettings::new("127.0.0.1", port, "cam-hang", q.path());
    s.queue.fsync_interval = Duration::from_millis(100);
    let publisher = Publisher::start(s).unwrap();
    // the connection thread is inside a connect now
    assert!(wait_until(Duration::from_secs(5), || !held
        .lock()
        .unwrap()
        .is_empty()));
    let dev: Arc<str> = Arc::from("cam-hang");
    for round in 0..3 {
        assert!(publisher.publish(&event(&dev, round)));
        let written = Instant::now();
        assert!(publisher.health().queue.unsynced > 0);
        // fsync_ms (100) plus one maintenance tick (25) and generous slack for a loaded machine;
        // the connect it must not wait for lasts up to 6 s
        let synced = wait_until(Duration::from_secs(2), || {
            publisher.health().queue.unsynced == 0
        });
        assert!(
            synced,
            "round {round}: not fsynced {:?} after the write while a connect hangs",
            written.elapsed()
        );
        eprintln!("round {round}: fsynced after {:?}", written.elapsed());
    }
    assert_eq!(publisher.stats().connects.load(Ordering::Relaxed), 0);
    drop(publisher);
}

/// The cut detector on looping footage, the queue in `queue`, fsync every 50 ms.
fn soak_config(dir: &Path, port: u16, queue: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(config(dir, port, queue))
        .unwrap()
        .replace(
            "ssd-mobilenet-v2-coco.toml",
            "ssd-mobilenet-v2-coco-cut.toml",
        )
        .replace("fsync_ms = 100", "fsync_ms = 50");
    let path = dir.join(format!("soak-{port}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Flip one byte in the middle of the newest queue segment; returns the id of the event whose
/// record holds that byte (it may be lost), read by walking the segment's record framing.
fn damage_newest_segment(queue: &Path) -> Option<String> {
    let mut segs: Vec<_> = std::fs::read_dir(queue)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let seg = segs.pop()?;
    let mut bytes = std::fs::read(&seg).unwrap();
    if bytes.len() < 64 {
        return None;
    }
    let at = bytes.len() / 2;
    // records: len u32 | crc u32 | body of len bytes (docs/reliability.md)
    let mut off = 0usize;
    let mut hit = None;
    while off + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        let end = off + 8 + len;
        if end > bytes.len() {
            break;
        }
        if (off..end).contains(&at) {
            let text = String::from_utf8_lossy(&bytes[off..end]).into_owned();
            hit = text
                .find("\"id\":\"")
                .map(|i| text[i + 6..].chars().take_while(|c| *c != '"').collect());
            break;
        }
        off = end;
    }
    bytes[at] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();
    hit
}

/// Fill the filesystem at `dir` with a file until writes fail; returns the file.
fn fill_disk(dir: &Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
fn fault_soak_broker_and_program_killed_a_damaged_byte_and_a_full_disk() {
    // three rounds of: the disk filled up while events flow, the broker killed with SIGKILL
    // while events are produced, ocellus killed with SIGKILL, one byte of the queue damaged;
    // then a clean run sends what is left. Every event a run stored must reach an independent
    // subscriber, but the one whose record held a damaged byte while it waited.
    const ROUNDS: usize = 3;
    let port = free_port();
    let mut broker = Broker::on_port(port);
    broker.start();
    let sub = PersistentSubscriber::start(port, "soak-counter", "kill/cam-kill/events/#");
    let dir = tempfile::tempdir().unwrap();
    let disk = common::Tmpfs::mount(128);
    let queue = disk.path().join("queue");
    let cfg = soak_config(dir.path(), port, &queue);
    let mut produced: Vec<String> = Vec::new();
    let mut damaged: Vec<String> = Vec::new();
    let more = |run: &Run, n: usize| {
        let have = run.ids.lock().unwrap().len();
        run.wait_events(have + n, Duration::from_secs(120));
    };
    for round in 0..ROUNDS {
        let run = Run::start(&cfg, &[]);
        more(&run, 3);
        // the disk fills while the broker is up: events keep flowing
        let filler = fill_disk(disk.path());
        more(&run, 8);
        std::fs::remove_file(filler).unwrap();
        more(&run, 2);
        // the broker dies: events wait on disk
        broker.kill_9();
        more(&run, 10);
        broker.start();
        more(&run, 3);
        // and the program dies
        produced.extend(run.kill_9());
        if let Some(id) = damage_newest_segment(&queue) {
            damaged.push(id);
        }
        eprintln!("round {round}: {} events stored so far", produced.len());
    }
    // a clean run sends the backlog
    let run = Run::start(&cfg, &["--frames", "40"]);
    let (ids, status, stderr) = run.wait(Duration::from_secs(180));
    produced.extend(ids);
    let want: HashSet<&String> = produced.iter().collect();
    let may_be_lost: HashSet<&String> = damaged.iter().collect();
    sub.wait_for(Duration::from_secs(30), |got| {
        want.iter()
            .all(|id| got.contains_key(*id) || may_be_lost.contains(id))
    });
    let (got, _) = sub.events();
    let missing: Vec<&&String> = want
        .iter()
        .filter(|id| !got.contains_key(**id) && !may_be_lost.contains(*id))
        .collect();
    let dups: usize = got.values().map(|v| v.len() - 1).sum();
    let lost = want.iter().filter(|id| !got.contains_key(**id)).count();
    eprintln!(
        "soak: {} events stored, {} delivered, {lost} lost to {} damaged byte(s), {dups} duplicate(s); last run: {status:?}",
        want.len(),
        want.len() - lost,
        damaged.len()
    );
    assert!(
        missing.is_empty(),
        "{} events lost that no damage touched: {missing:?}\n{stderr}",
        missing.len()
    );
    // duplicates are copies of one event (same id, same bytes)
    for (id, copies) in &got {
        assert!(
            copies.windows(2).all(|w| w[0] == w[1]),
            "{id} delivered with different bytes"
        );
    }
    assert!(want.len() >= 80, "{}", want.len());
    drop(disk);
}
