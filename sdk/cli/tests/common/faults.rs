//! Fault-injection helpers: a mosquitto that keeps its state on disk and can be stopped and started
//! again on the same port, and an independent subscriber with a persistent session (QoS 1) that
//! rides out those restarts.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// mosquitto on a fixed loopback port with `persistence true`: sessions and queued QoS 1 messages
/// survive a stop (SIGTERM, which saves them) and a start.
pub struct Broker {
    pub port: u16,
    conf: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Write the config for `port` (not started yet: see [`Broker::start`]).
    pub fn on_port(port: u16) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        // started as root, mosquitto drops to the `mosquitto` user: it must be able to write its
        // persistence file here
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 autosave_interval 1\nmax_queued_messages 0\nmax_queued_bytes 0\nlog_dest none\n",
                dir.path().display()
            ),
        )
        .expect("write mosquitto.conf");
        Broker {
            port,
            conf,
            child: None,
            _dir: dir,
        }
    }

    /// Start (or start again) and wait until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = Command::new("mosquitto")
                .arg("-c")
                .arg(&self.conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto not installed: run models/provision.sh");
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port is still held by the previous instance's socket: retry
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop with SIGTERM (mosquitto saves its persistence file) and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // the shell's built-in kill: /bin/kill (procps) is not on every machine
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -TERM {}", child.id())])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill with SIGKILL: no goodbye, no persistence save.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An independent subscriber (rumqttc, its own client id, `clean_session = false`, QoS 1) that
/// reconnects by itself and records every message it gets, duplicates included.
/// (topic, payload) in arrival order.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

pub struct PersistentSubscriber {
    received: Received,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PersistentSubscriber {
    /// Connect, subscribe and wait for the SUBACK.
    pub fn start(port: u16, client_id: &str, filter: &str) -> PersistentSubscriber {
        let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = rumqttc::Client::new(opts, 64);
        let received: Received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop, subscribed) = (received.clone(), stop.clone(), subscribed.clone());
            let filter = filter.to_owned();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match connection.recv_timeout(Duration::from_millis(50)) {
                        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)))) => {
                            if !ack.session_present {
                                let _ = client.try_subscribe(&filter, rumqttc::QoS::AtLeastOnce);
                            }
                        }
                        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))) => {
                            subscribed.store(true, Ordering::Relaxed);
                        }
                        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                            received
                                .lock()
                                .unwrap()
                                .push((p.topic.clone(), p.payload.to_vec()));
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                        Err(rumqttc::RecvTimeoutError::Timeout) => {}
                        Err(rumqttc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                let _ = client.try_disconnect();
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !subscribed.load(Ordering::Relaxed) {
            assert!(
                Instant::now() < deadline,
                "the subscriber never got its SUBACK"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        PersistentSubscriber {
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Every message so far, in arrival order.
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.received.lock().unwrap().clone()
    }

    /// Event id → every payload received with it, and the ids in order of first arrival.
    pub fn events(&self) -> (HashMap<String, Vec<Vec<u8>>>, Vec<String>) {
        let mut by_id: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let mut order = Vec::new();
        for (topic, payload) in self.messages() {
            if !topic.contains("/events/") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&payload).expect("event JSON");
            let id = v["id"].as_str().expect("event id").to_owned();
            let e = by_id.entry(id.clone()).or_default();
            if e.is_empty() {
                order.push(id);
            }
            e.push(payload);
        }
        (by_id, order)
    }

    /// Wait until `pred` holds or the timeout passes.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&HashMap<String, Vec<Vec<u8>>>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.events().0) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PersistentSubscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
