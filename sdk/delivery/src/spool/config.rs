//! The queue's configuration: where it lives, its bounds and their defaults.

use std::path::PathBuf;
use std::time::Duration;

/// What [`Spool::append`](super::Spool::append) does when the queue is at `max_bytes`.
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

/// Most unacknowledged records (each costs 32 bytes of index): with small events and a large
/// `max_bytes` the count, not the bytes, is the bound. 1 Mi records = 32 MiB of index.
pub const MAX_RECORDS: u64 = 1 << 20;
