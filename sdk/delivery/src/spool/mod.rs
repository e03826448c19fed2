//! The durable on-disk event queue (store-and-forward) between the event pipeline and MQTT.
//!
//! Every event is appended here before it is offered to the broker and removed only after the
//! broker's PUBACK ([`Spool::ack`]). The queue is one directory (`queue.dir`), used by one process
//! at a time.
//!
//! # Durability
//!
//! * When [`Spool::append`] returns [`Append::Stored`], the record has been handed to the kernel
//!   with `write(2)` (there is no user-space buffer): a `kill -9` or a crash of this process
//!   cannot lose it.
//! * Segment data is fsynced (`fdatasync`) lazily, in [`Spool::append`] and [`Spool::maintain`],
//!   once `fsync_interval` has passed since the first unsynced append;
//!   [`Duration::ZERO`](std::time::Duration::ZERO) fsyncs inside every append, and
//!   [`Spool::sync`] fsyncs at once. **Power loss** (or a kernel crash)
//!   can therefore lose the records appended in the last `fsync_interval` (plus the time until
//!   the next `append`/`maintain` call, 50 ms in the publisher); everything older is on disk.
//! * The acknowledgement position is persisted at most every `fsync_interval` (in `maintain`)
//!   and in [`Spool::sync`]. After a crash, records acknowledged since the last persist are
//!   handed out again: delivery is at least once (the same bytes, so the same event id). After
//!   [`Spool::sync`] (or dropping the [`Spool`], which syncs) nothing acknowledged is sent again.
//!
//! # Files
//!
//! * `lock`: held with an exclusive lock ([`File::try_lock`]) while the queue is open; holds the
//!   pid of its owner (informational).
//! * `NNNNNNNNNNNNNNNNNNNN.seg`: segments, named by the seq of their first record (20 decimal
//!   digits), records in increasing seq order. A new segment is started when the next record
//!   would take the current one past `segment_bytes`. A segment whose records are all
//!   acknowledged or removed is deleted (right after the ack position covering it is persisted);
//!   the segment being appended to is kept.
//! * `ack`: the acknowledgement position, replaced atomically (`ack.tmp`, fsync, rename, fsync of
//!   the directory).
//!
//! A segment record, little-endian, no padding (framed size = 8 + `len`):
//!
//! ```text
//! len u32 | crc32 u32 | seq u64 | appended_unix_ms u64 | topic_len u16 | topic | payload
//! ```
//!
//! `len` counts the bytes after the crc (18 + topic + payload); the crc32 (IEEE, `crc32fast`)
//! covers exactly those bytes. The topic is UTF-8.
//!
//! The `ack` file, little-endian:
//!
//! ```text
//! "OCSA" | version u32 = 1 | low_water u64 | next_seq u64 | n u32
//!        | n × (start u64, end u64) | crc32 u32
//! ```
//!
//! Every seq below `low_water` is acknowledged or removed, and so is every seq in the half-open
//! ranges `[start, end)` above it (acknowledgements that arrived out of order, removals);
//! `next_seq` is the next seq to use, so seqs are not reused even when every segment has been
//! deleted. The crc covers everything before it. A missing or damaged `ack` file only means that
//! records are sent again.
//!
//! # Recovery at [`Spool::open`]
//!
//! Every segment is read and checked (length, crc, seq order, UTF-8 topic). A damaged record in
//! the newest segment (a torn write: short, bad crc, absurd length, zeros) ends it: the file is
//! truncated at the last good record and appending continues there. Damage inside an older
//! segment skips the rest of that segment. Each damaged place counts once in
//! [`SpoolStats::torn`] / [`OpenReport::torn`]; none of this is fatal. The unacknowledged records
//! are then handed out first, in seq order, with their original bytes. (The seq of a record lost
//! in a torn tail may be given to a new record: it was never durable.)
//!
//! # Bounds
//!
//! * `max_bytes` bounds the framed bytes of unacknowledged records ([`WhenFull`] decides what
//!   happens at the bound; a single record larger than `max_bytes` is refused with an error).
//! * `max_age` removes older records unsent (in `maintain`, and when handing out). Records
//!   stamped before 2020 (a device clock not set yet) are not expired by age, so a clock that
//!   jumps forward at boot does not wipe the queue; `max_bytes` still bounds them.
//! * Memory: 32 bytes of index per unacknowledged record, at most [`MAX_RECORDS`] records (32 MiB;
//!   past it [`WhenFull`] applies as at `max_bytes`), plus at most as many entries for
//!   acknowledged ones waiting to be compacted out of the index; a cache of at most 2 MiB of
//!   recently appended records not handed out yet (other records are read back from the files);
//!   at most 1 MiB / 4 096 records held in memory when the disk fails ([`Append::Volatile`]); at
//!   open, one segment file at a time (at most 256 MiB) while it is scanned.
//! * Disk: the unacknowledged bytes, plus acknowledged records sharing a segment with
//!   unacknowledged ones; when those exceed `max(max_bytes, 2 × segment_bytes)`, `maintain`
//!   rewrites the segment holding the most of them with only its unacknowledged records.
//!
//! # Use
//!
//! A [`Spool`] is `Send`, not `Sync`: the publisher keeps it under a `Mutex`. Calls are short (a
//! `write(2)`, a read of one record, a binary search); an fsync happens only when due (in
//! `append`/`maintain`) or in `sync`. [`Spool::rewind`] hands out again every record not
//! acknowledged, including those handed out before it and still in flight; an ack that arrives
//! later for one of them still counts, and an ack for a record already removed is ignored.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

// One file per concern; each adds its part of `impl Spool`. The struct itself is defined here so
// that its fields stay private to this module and its children.
mod config; // SpoolConfig, WhenFull and the defaults
mod files; // the directory: lock, permissions, directory fsync, error messages
mod format; // the bytes of a segment record and of the `ack` file
mod full_disk; // a failed write: freeing acknowledged space, records held in memory
mod open; // open: scan every segment, index it, cut a torn tail
mod persist; // fsync, the persisted ack position, maintain/sync/close
mod queue; // append, hand out, ack, rewind, counters
mod scan; // reading a segment's bytes back, resynchronising past damage
mod segments; // segment files: append, read back, delete, rewrite
#[cfg(test)]
mod tests;

pub use config::{
    DEFAULT_FSYNC_INTERVAL, DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES, MAX_RECORDS,
    SpoolConfig, WhenFull,
};

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
    /// The disk write failed (a full disk, an I/O error) even after freeing what is acknowledged:
    /// the record is kept in a small memory buffer and sent from there. It survives neither a
    /// crash nor a restart (counted in [`SpoolStats::not_durable`]).
    Volatile(u64),
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
    /// Damaged places found when the queue was opened (a torn tail after a crash, a bad sector);
    /// the intact records after each are kept.
    pub torn: u64,
    /// Unacknowledged records lost to that damage (from the gaps in the sequence numbers around
    /// each damaged place).
    pub lost: u64,
    /// Writes or fsyncs that failed since open (disk full, I/O error).
    pub write_errors: u64,
    /// Records kept in memory only because the disk write failed ([`Append::Volatile`]).
    pub not_durable: u64,
    /// Of those, held now (unacknowledged).
    pub volatile_depth: u64,
    /// Records written to the active segment and not yet fsynced.
    pub unsynced: u64,
    /// Times acknowledged records were deleted early to free space: a fully acknowledged active
    /// segment of 64 KiB or more, or anything acknowledged after a failed write.
    pub reclaimed: u64,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Unacknowledged records found (sent first, in order).
    pub recovered: u64,
    /// Damaged places found (each one's intact neighbours are kept).
    pub torn: u64,
    /// Unacknowledged records lost to the damage.
    pub lost: u64,
}

/// One unacknowledged (or lazily removed) record in the in-memory index.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    appended_ms: u64,
    /// Byte offset in its segment.
    offset: u64,
    /// Framed size (header included).
    size: u32,
    removed: bool,
    /// Held in memory only: the disk write failed ([`Append::Volatile`]).
    volatile: bool,
}

#[derive(Debug)]
struct Segment {
    /// The seq in the file name: every record in it has seq ≥ base and < the next segment's base.
    base: u64,
    path: PathBuf,
    file_len: u64,
    /// Unremoved records in it.
    live: u64,
    live_bytes: u64,
    reader: Option<File>,
    delete_warned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Acked,
    Dropped,
    Expired,
    Damaged,
}

/// The queue.
pub struct Spool {
    cfg: SpoolConfig,
    /// Holds the directory's lock while open.
    _lock: File,
    segments: VecDeque<Segment>,
    /// Append handle of `segments.back()`; `None`: the next append starts a new segment.
    writer: Option<File>,
    /// Records in seq order; the front is never removed (removed ones are popped).
    index: VecDeque<Entry>,
    /// Removed entries still inside `index`.
    index_removed: usize,
    next_seq: u64,
    /// `next_unsent` hands out the first unremoved record with seq ≥ cursor.
    cursor: u64,
    live_count: u64,
    live_bytes: u64,
    disk_bytes: u64,
    /// Records whose disk write failed, by seq, until acknowledged or removed.
    volatile: std::collections::BTreeMap<u64, Record>,
    volatile_bytes: usize,
    /// Recently appended records not handed out yet, in seq order.
    cache: VecDeque<Record>,
    cache_bytes: usize,
    cache_limit: usize,
    buf: Vec<u8>,
    counters: SpoolStats,
    /// The oldest write (or directory change) not fsynced yet.
    dirty_since: Option<Instant>,
    data_dirty: bool,
    /// Records written to the active segment since its last successful fsync.
    unsynced: u64,
    dir_dirty: bool,
    /// The acknowledgement position changed since it was last persisted.
    ack_dirty: bool,
    /// The last persist left out some ranges.
    ack_partial: bool,
    /// `next_seq` as last persisted (a torn tail's loss is counted up to it at the next open).
    persisted_next_seq: u64,
    last_ack_write: Instant,
    /// No segment rewrite before this (after a failed one).
    compact_after: Option<Instant>,
    /// The last search for space after a failed write.
    last_reclaim: Option<Instant>,
    /// Until then (a minute after a failed write) a fully acknowledged active segment is deleted
    /// whatever its size: the disk is short of space.
    tight_until: Option<Instant>,
    /// Added to the wall clock (tests).
    clock_skew_ms: u64,
    /// Drop without syncing (tests: a simulated `kill -9`).
    skip_sync_on_drop: bool,
    /// Make every fsync of segment data fail (tests).
    #[cfg(test)]
    fail_fsync: bool,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.cfg.dir)
            .field("depth", &self.live_count)
            .field("bytes", &self.live_bytes)
            .field("next_seq", &self.next_seq)
            .field("cursor", &self.cursor)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Spool {
    /// Syncs (best effort): a dropped queue restarts without re-sending what was acknowledged.
    fn drop(&mut self) {
        if !self.skip_sync_on_drop
            && let Err(e) = self.sync()
        {
            tracing::warn!("{e}");
        }
    }
}
