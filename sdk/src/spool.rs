//! The durable on-disk event queue (store-and-forward). SKELETON: the interface is fixed, the
//! implementation is being written.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// What [`Spool::append`] does when the queue is at `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Remove the oldest unacknowledged events to make room (each one counted).
    #[default]
    DropOldest,
    /// Keep what is queued and refuse the new event (counted).
    RefuseNew,
}

impl WhenFull {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::DropOldest => "drop_oldest",
            WhenFull::RefuseNew => "refuse_new",
        }
    }
}

/// Where and how big.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The queue directory (created if missing). One process at a time.
    pub dir: PathBuf,
    /// Bound on the bytes of unacknowledged records on disk.
    pub max_bytes: u64,
    /// Records older than this are removed unsent (counted as expired).
    pub max_age: Duration,
    /// Policy at `max_bytes`.
    pub when_full: WhenFull,
    /// fsync at most this long after an append ([`Duration::ZERO`]: every append).
    pub fsync_interval: Duration,
    /// Size at which a new segment file is started.
    pub segment_bytes: u64,
}

/// Default `queue.max_mb`: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Default `queue.max_age_s`: 7 days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default `queue.fsync_ms`.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Default segment size: 4 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 << 20;

impl SpoolConfig {
    /// The defaults for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: DEFAULT_MAX_AGE,
            when_full: WhenFull::DropOldest,
            fsync_interval: DEFAULT_FSYNC_INTERVAL,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the queue: strictly increasing, never reused, survives restarts.
    pub seq: u64,
    /// When it was appended (Unix time, ms).
    pub appended_unix_ms: u64,
    /// MQTT topic.
    pub topic: String,
    /// MQTT payload.
    pub payload: Vec<u8>,
}

/// What [`Spool::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Append {
    /// Written (in the kernel's page cache: survives a `kill -9`; on disk after the next fsync).
    Stored(u64),
    /// The queue is full and the policy is [`WhenFull::RefuseNew`].
    Refused,
}

/// Counters and the current depth.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpoolStats {
    /// Unacknowledged records on disk.
    pub depth: u64,
    /// Their bytes (record framing included).
    pub bytes: u64,
    /// Age of the oldest unacknowledged record.
    pub oldest_age_ms: Option<u64>,
    /// Records appended since open.
    pub appended: u64,
    /// Records acknowledged since open.
    pub acked: u64,
    /// Records removed unsent to make room ([`WhenFull::DropOldest`]).
    pub dropped_full: u64,
    /// Appends refused ([`WhenFull::RefuseNew`]).
    pub refused_full: u64,
    /// Records removed unsent because they were older than `max_age`.
    pub expired: u64,
    /// Damaged records skipped when the queue was opened (a torn tail after a crash, bad checksums).
    pub torn: u64,
    /// Writes or fsyncs that failed since open (disk full, I/O error).
    pub write_errors: u64,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Unacknowledged records found (sent first, in order).
    pub recovered: u64,
    /// Damaged records or tails skipped.
    pub torn: u64,
}

/// The queue.
#[derive(Debug)]
pub struct Spool {
    cfg: SpoolConfig,
}

impl Spool {
    /// Open (or create) the queue in `cfg.dir`.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, OpenReport)> {
        Err(Error::Queue {
            dir: cfg.dir,
            message: "not implemented yet".into(),
        })
    }

    /// Append one message.
    pub fn append(&mut self, _topic: &str, _payload: &[u8]) -> Result<Append> {
        Err(Error::Queue {
            dir: self.cfg.dir.clone(),
            message: "not implemented yet".into(),
        })
    }

    /// The next record not yet handed out since the last [`Spool::rewind`], in seq order.
    pub fn next_unsent(&mut self) -> Result<Option<Record>> {
        Ok(None)
    }

    /// The broker acknowledged `seq` (any order; unknown or already removed seqs are ignored).
    pub fn ack(&mut self, _seq: u64) {}

    /// Hand out every unacknowledged record again, from the oldest (after a reconnect).
    pub fn rewind(&mut self) {}

    /// Periodic work: fsync if due, expire by age, delete acknowledged segments, persist the ack
    /// position.
    pub fn maintain(&mut self) -> Result<()> {
        Ok(())
    }

    /// fsync everything now (at shutdown).
    pub fn sync(&mut self) -> Result<()> {
        Ok(())
    }

    /// Counters and depth.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats::default()
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }
}
