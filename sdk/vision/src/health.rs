//! The health message (schema `ocellus.health/1`), published retained on
//! `{prefix}/{device}/health` every `health.interval_s` (and once more at the stop), so an operator
//! sees at a glance whether a camera is keeping up, whether events are piling up on its disk, and
//! what went wrong last.
//!
//! ```json
//! {"schema": "ocellus.health/1", "device": "store-12-entrance", "time": "2026-11-24T09:00:00.000Z",
//!  "uptime_s": 3600.0, "interval_s": 30.0,
//!  "frames": {"processed": 107990, "fps": 29.9, "dropped": 12, "skipped": 0, "failed": 0, "lost": 0},
//!  "source": {"reconnects": 0},
//!  "events": {"produced": 1711, "refused": 0, "store_errors": 0},
//!  "queue": {"depth": 0, "bytes": 0, "oldest_age_s": null, "max_bytes": 67108864,
//!            "when_full": "drop_oldest", "dropped_full": 0, "refused_full": 0, "expired": 0,
//!            "torn": 0, "lost": 0, "not_durable": 0, "volatile": 0, "reclaimed": 0,
//!            "write_errors": 0, "recovered": 0},
//!  "mqtt": {"connected": true, "connects": 1, "reconnects": 0, "acked": 1711},
//!  "degraded": [], "last_error": null}
//! ```
//!
//! `degraded` lists what needs attention, in words: the broker unreachable, events waiting or being
//! dropped, disk writes failing, frames dropped or skipped in the last interval.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::pipeline::LiveCounters;
use crate::publish::PublishHealth;
use crate::spool::SpoolStats;

/// The schema id of the health message.
pub const SCHEMA: &str = "ocellus.health/1";

/// Default `health.interval_s`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// The health message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Health {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// Device id.
    pub device: String,
    /// When it was made (RFC 3339, UTC, ms).
    pub time: String,
    /// Seconds since the deployment started.
    pub uptime_s: f64,
    /// Seconds since the previous report.
    pub interval_s: f64,
    /// Frames.
    pub frames: Frames,
    /// The source.
    pub source: SourceHealth,
    /// Events.
    pub events: Events,
    /// The on-disk queue.
    pub queue: Queue,
    /// The broker connection.
    pub mqtt: Mqtt,
    /// What needs attention now, in words (empty: all well).
    pub degraded: Vec<String>,
    /// The last connection or queue error.
    pub last_error: Option<String>,
}

/// Frame counters (totals since start; `fps` over the last interval).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Frames {
    /// Processed.
    pub processed: u64,
    /// Processed per second over the last interval.
    pub fps: f64,
    /// Dropped because inference was behind a live source.
    pub dropped: u64,
    /// Skipped by the source (undecodable).
    pub skipped: u64,
    /// The detector failed on them.
    pub failed: u64,
    /// The source knows it missed them (driver gaps, camera outages).
    pub lost: u64,
}

/// Source counters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceHealth {
    /// Reconnections of a stream or camera.
    pub reconnects: u64,
}

/// Event counters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Events {
    /// Produced by the rules.
    pub produced: u64,
    /// Not stored: the queue was full with `refuse_new`, or a disk write failed.
    pub refused: u64,
    /// Disk writes that failed.
    pub store_errors: u64,
}

/// The on-disk queue.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Queue {
    /// Events waiting for a PUBACK.
    pub depth: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Age of the oldest, seconds.
    pub oldest_age_s: Option<f64>,
    /// `queue.max_mb` in bytes.
    pub max_bytes: u64,
    /// `queue.when_full`.
    pub when_full: &'static str,
    /// Removed unsent to make room (`drop_oldest`).
    pub dropped_full: u64,
    /// Refused because full (`refuse_new`).
    pub refused_full: u64,
    /// Removed unsent: older than `queue.max_age_s`.
    pub expired: u64,
    /// Damaged places skipped at start (a torn write from a crash, a bad sector).
    pub torn: u64,
    /// Unacknowledged events lost to that damage.
    pub lost: u64,
    /// Events kept in memory only because the disk write failed (since the start).
    pub not_durable: u64,
    /// Of those, waiting for the broker now.
    pub volatile: u64,
    /// Fully acknowledged active segments deleted to keep the disk free.
    pub reclaimed: u64,
    /// Queue writes or fsyncs that failed (a full disk, an I/O error).
    pub write_errors: u64,
    /// Found unacknowledged at start (from an earlier run).
    pub recovered: u64,
}

/// The broker connection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mqtt {
    /// Connected now.
    pub connected: bool,
    /// Connections made.
    pub connects: u64,
    /// Reconnections (connections after the first).
    pub reconnects: u64,
    /// Events acknowledged.
    pub acked: u64,
}

/// Builds successive reports (it remembers the previous one for rates and changes).
#[derive(Debug)]
pub struct Reporter {
    device: String,
    started: Instant,
    last_at: Instant,
    last_processed: u64,
    last_dropped: u64,
    last_skipped: u64,
    last_failed: u64,
    last_write_errors: u64,
    max_bytes: u64,
    when_full: &'static str,
    recovered: u64,
}

impl Reporter {
    /// A reporter for `device`, counting uptime from now.
    pub fn new(device: &str, queue: &crate::spool::SpoolConfig, recovered: u64) -> Reporter {
        let now = Instant::now();
        Reporter {
            device: device.to_owned(),
            started: now,
            last_at: now,
            last_processed: 0,
            last_dropped: 0,
            last_skipped: 0,
            last_failed: 0,
            last_write_errors: 0,
            max_bytes: queue.max_bytes,
            when_full: queue.when_full.as_str(),
            recovered,
        }
    }

    /// The next report.
    pub fn report(&mut self, live: &LiveCounters, publish: &PublishHealth) -> Health {
        let now = Instant::now();
        let interval = now.duration_since(self.last_at).as_secs_f64();
        let processed = live.processed.load(Ordering::Relaxed);
        let dropped = live.dropped.load(Ordering::Relaxed);
        let skipped = live.skipped.load(Ordering::Relaxed);
        let fps = if interval > 0.0 {
            processed.saturating_sub(self.last_processed) as f64 / interval
        } else {
            0.0
        };
        let q = &publish.queue;
        let mut degraded = Vec::new();
        mqtt_degraded(publish, &mut degraded);
        self.queue_degraded(publish, interval, &mut degraded);
        let (failed, frame_error) =
            self.frames_degraded(live, interval, dropped, skipped, &mut degraded);
        self.last_at = now;
        self.last_processed = processed;
        self.last_dropped = dropped;
        self.last_skipped = skipped;
        self.last_write_errors = q.write_errors;
        self.last_failed = failed;
        Health {
            schema: SCHEMA,
            device: self.device.clone(),
            time: crate::event::rfc3339_millis(SystemTime::now()),
            uptime_s: round3(now.duration_since(self.started).as_secs_f64()),
            interval_s: round3(interval),
            frames: Frames {
                processed,
                fps: round3(fps),
                dropped,
                skipped,
                failed,
                lost: live.lost.load(Ordering::Relaxed),
            },
            source: SourceHealth {
                reconnects: live.reconnects.load(Ordering::Relaxed),
            },
            events: Events {
                produced: live.events.load(Ordering::Relaxed),
                refused: publish.refused,
                store_errors: publish.store_errors,
            },
            queue: self.queue_report(q),
            mqtt: mqtt_report(publish),
            degraded,
            last_error: frame_error.or_else(|| publish.last_error.clone()),
        }
    }

    /// The queue's `degraded` lines: events not stored, disk writes failing, events held in
    /// memory or lost, the queue's bounds dropping events, the queue nearly full.
    fn queue_degraded(&self, publish: &PublishHealth, interval: f64, degraded: &mut Vec<String>) {
        let q = &publish.queue;
        if publish.store_errors > 0 {
            degraded.push(format!(
                "queue: {} event(s) could not be written to disk",
                publish.store_errors
            ));
        }
        if q.write_errors > self.last_write_errors {
            degraded.push(format!(
                "queue: {} disk write(s) failed in the last {interval:.0} s (a full disk?); acknowledged events are freed to make room",
                q.write_errors - self.last_write_errors
            ));
        }
        if q.volatile_depth > 0 {
            degraded.push(format!(
                "queue: {} event(s) held in memory only (the disk write failed); they do not survive a restart",
                q.volatile_depth
            ));
        }
        if q.lost > 0 {
            degraded.push(format!(
                "queue: {} unacknowledged event(s) lost to damaged queue files at start ({} damaged place(s); the bytes are in the queue's damaged/ directory)",
                q.lost, q.torn
            ));
        }
        if q.dropped_full + q.refused_full + q.expired > 0 {
            degraded.push(format!(
                "queue: {} event(s) dropped by its bounds ({} oldest removed, {} refused, {} expired)",
                q.dropped_full + q.refused_full + q.expired,
                q.dropped_full,
                q.refused_full,
                q.expired
            ));
        }
        if self.max_bytes > 0 && q.bytes.saturating_mul(10) >= self.max_bytes.saturating_mul(9) {
            degraded.push(format!(
                "queue: {:.0}% full",
                q.bytes as f64 * 100.0 / self.max_bytes as f64
            ));
        }
    }

    /// The frames' `degraded` lines since the previous report: frames dropped, failed and
    /// skipped. `dropped` and `skipped` are the totals read at the start of the report; the
    /// failed total is read here, after the queue's lines, as it always was. Returns the failed
    /// total and, when frames failed, the last frame error.
    fn frames_degraded(
        &self,
        live: &LiveCounters,
        interval: f64,
        dropped: u64,
        skipped: u64,
        degraded: &mut Vec<String>,
    ) -> (u64, Option<String>) {
        if dropped > self.last_dropped {
            degraded.push(format!(
                "frames: {} dropped in the last {interval:.0} s (inference behind the camera)",
                dropped - self.last_dropped
            ));
        }
        let failed = live.failed.load(Ordering::Relaxed);
        let frame_error = if failed > self.last_failed {
            let last = live
                .last_frame_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default();
            degraded.push(format!(
                "frames: {} failed in the last {interval:.0} s, no detections from them (last: {last})",
                failed - self.last_failed
            ));
            Some(last)
        } else {
            None
        };
        if skipped > self.last_skipped {
            degraded.push(format!(
                "frames: {} undecodable frame(s) skipped in the last {interval:.0} s",
                skipped - self.last_skipped
            ));
        }
        (failed, frame_error)
    }

    /// The queue's section of the report.
    fn queue_report(&self, q: &SpoolStats) -> Queue {
        Queue {
            depth: q.depth,
            bytes: q.bytes,
            oldest_age_s: q.oldest_age_ms.map(|ms| ms as f64 / 1e3),
            max_bytes: self.max_bytes,
            when_full: self.when_full,
            dropped_full: q.dropped_full,
            refused_full: q.refused_full,
            expired: q.expired,
            torn: q.torn,
            lost: q.lost,
            not_durable: q.not_durable,
            volatile: q.volatile_depth,
            reclaimed: q.reclaimed,
            write_errors: q.write_errors,
            recovered: self.recovered,
        }
    }
}

/// The broker's `degraded` line, if it is not connected.
fn mqtt_degraded(publish: &PublishHealth, degraded: &mut Vec<String>) {
    if !publish.connected {
        degraded.push(if publish.connects == 0 {
            "mqtt: never connected; events wait on disk".to_owned()
        } else {
            "mqtt: disconnected; events wait on disk".to_owned()
        });
    }
}

/// The broker's section of the report.
fn mqtt_report(publish: &PublishHealth) -> Mqtt {
    Mqtt {
        connected: publish.connected,
        connects: publish.connects,
        reconnects: publish.connects.saturating_sub(1),
        acked: publish.acked,
    }
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

impl Health {
    /// The JSON payload.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{SpoolConfig, SpoolStats};

    fn publish(connected: bool) -> PublishHealth {
        PublishHealth {
            connected,
            connects: 3,
            accepted: 10,
            refused: 0,
            store_errors: 0,
            acked: 7,
            queue: SpoolStats {
                depth: 3,
                bytes: 950,
                oldest_age_ms: Some(1500),
                dropped_full: 2,
                ..Default::default()
            },
            last_error: Some("connection refused".into()),
        }
    }

    #[test]
    fn a_report_carries_the_counters_and_says_what_is_wrong() {
        let mut cfg = SpoolConfig::new("/tmp/q");
        cfg.max_bytes = 1000;
        let mut r = Reporter::new("cam-1", &cfg, 4);
        let live = LiveCounters::default();
        live.processed.store(300, Ordering::Relaxed);
        live.dropped.store(5, Ordering::Relaxed);
        live.events.store(10, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        let h = r.report(&live, &publish(false));
        let v: serde_json::Value =
            serde_json::from_slice(&h.to_json()).unwrap_or(serde_json::Value::Null);
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["device"], "cam-1");
        assert_eq!(v["frames"]["processed"], 300);
        assert!(v["frames"]["fps"].as_f64().unwrap_or(0.0) > 0.0);
        assert_eq!(v["queue"]["depth"], 3);
        assert_eq!(v["queue"]["oldest_age_s"], 1.5);
        assert_eq!(v["queue"]["dropped_full"], 2);
        assert_eq!(v["queue"]["recovered"], 4);
        assert_eq!(v["mqtt"]["reconnects"], 2);
        assert_eq!(v["last_error"], "connection refused");
        let degraded = h.degraded.join(" | ");
        for want in [
            "disconnected",
            "2 event(s) dropped",
            "95% full",
            "5 dropped",
        ] {
            assert!(degraded.contains(want), "{want:?} missing from {degraded}");
        }
        // the next report only flags what changed since this one
        let h2 = r.report(&live, &publish(true));
        let degraded = h2.degraded.join(" | ");
        assert!(!degraded.contains("disconnected"), "{degraded}");
        assert!(!degraded.contains("frames:"), "{degraded}");
        assert_eq!(h2.frames.fps, 0.0);
    }

    #[test]
    fn failed_frames_are_degraded_and_the_last_error() {
        let cfg = SpoolConfig::new("/tmp/q");
        let mut r = Reporter::new("cam-1", &cfg, 0);
        let live = LiveCounters::default();
        let mut ok = publish(true);
        ok.last_error = None;
        let h = r.report(&live, &ok);
        assert!(
            h.degraded.iter().all(|d| !d.contains("failed")),
            "{:?}",
            h.degraded
        );
        live.failed.store(60, Ordering::Relaxed);
        if let Ok(mut e) = live.last_frame_error.lock() {
            *e = Some("frame 59: model output `Squeeze:0`: expected [1, 1935, 4]".into());
        }
        let h = r.report(&live, &ok);
        let d = h.degraded.join(" | ");
        assert!(d.contains("60 failed"), "{d}");
        assert_eq!(h.frames.failed, 60);
        assert!(
            h.last_error
                .as_deref()
                .is_some_and(|e| e.contains("Squeeze:0"))
        );
        // nothing new in the next interval: not degraded any more
        let h = r.report(&live, &ok);
        assert!(
            h.degraded.iter().all(|d| !d.contains("failed")),
            "{:?}",
            h.degraded
        );
    }
}
