//! A real mosquitto broker on a free loopback port, started and stopped by the test.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Mosquitto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        Mosquitto::start_with_config(
            |port| format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
            dir,
        )
    }

    /// Mosquitto with the configuration `conf(port)` (listener, TLS, authentication lines) on a
    /// free loopback port, its files in `dir` (kept until the broker is dropped). `persistence
    /// false`, a log in `dir/mosquitto.log` and, when run as root, `user root` (so mosquitto does
    /// not drop to a user that cannot read `dir`) are added.
    pub fn start_with_config(conf: impl Fn(u16) -> String, dir: tempfile::TempDir) -> Mosquitto {
        let log = dir.path().join("mosquitto.log");
        for attempt in 0..5 {
            let port = free_port();
            let conf_path: PathBuf = dir.path().join("mosquitto.conf");
            std::fs::write(
                &conf_path,
                format!(
                    "user root\npersistence false\nlog_dest file {}\n{}\n",
                    log.display(),
                    conf(port)
                ),
            )
            .expect("write mosquitto.conf");
            let child = Command::new("mosquitto")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto not installed: run models/provision.sh");
            let mut m = Mosquitto {
                port,
                child,
                _dir: tempfile::tempdir().expect("tempdir"),
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    m._dir = dir;
                    return m;
                }
                if let Ok(Some(_)) = m.child.try_wait() {
                    break; // port taken between probe and bind: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = m.child.kill();
            let _ = m.child.wait();
            eprintln!(
                "mosquitto did not start on port {port} (attempt {attempt}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("could not start mosquitto");
    }

    /// mosquitto's log so far (for messages when a test fails).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An independent subscriber: `mosquitto_sub` (QoS 1) printing `topic payload` lines.
pub struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    pub fn start(port: u16, topic: &str) -> Subscriber {
        Subscriber::start_with_args(port, topic, &[])
    }

    /// [`Subscriber::start`] with more `mosquitto_sub` arguments (TLS files, user name, password).
    pub fn start_with_args(port: u16, topic: &str, extra: &[&str]) -> Subscriber {
        let port = port.to_string();
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-v", "-t", topic])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub not installed: run models/provision.sh");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().expect("lock").push(line);
            }
        });
        // mosquitto_sub has no ready signal: give it a moment to subscribe
        std::thread::sleep(Duration::from_millis(300));
        Subscriber { child, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Wait until `pred` holds for the lines received so far, or the timeout passes.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(&self.lines()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        pred(&self.lines())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The retained message on `topic`, read by a fresh `mosquitto_sub -C 1`.
pub fn retained(port: u16, topic: &str) -> Option<String> {
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "2",
        ])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!s.is_empty()).then_some(s)
}
