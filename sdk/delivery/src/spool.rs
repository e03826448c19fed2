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
//!   once `fsync_interval` has passed since the first unsynced append; [`Duration::ZERO`] fsyncs
//!   inside every append, and [`Spool::sync`] fsyncs at once. **Power loss** (or a kernel crash)
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
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Queue directories are 0700 and their files 0600: events name places and people's movements.
trait Private {
    fn mode_private(&mut self) -> &mut Self;
}

impl Private for fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        #[cfg(unix)]
        self.mode(0o700);
        self
    }
}

impl Private for OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        #[cfg(unix)]
        self.mode(0o600);
        self
    }
}

/// Create (or replace) a file readable by this user only.
fn private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode_private()
        .open(path)
}

/// Make an existing file or directory private (a queue made by an older version was 0755/0644).
fn make_private(path: &Path, dir: bool) {
    #[cfg(unix)]
    {
        let mode = if dir { 0o700 } else { 0o600 };
        if let Ok(m) = fs::metadata(path)
            && m.permissions().mode() & 0o777 != mode
            && let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode))
        {
            tracing::warn!("cannot restrict the permissions of {}: {e}", path.display());
        }
    }
    #[cfg(not(unix))]
    let _ = (path, dir);
}

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

/// `len u32 | crc32 u32`.
const HEADER: u64 = 8;
/// `seq u64 | appended_unix_ms u64 | topic_len u16`.
const FIXED: u64 = 18;
const SEG_EXT: &str = "seg";
const LOCK_FILE: &str = "lock";
const ACK_FILE: &str = "ack";
const ACK_TMP: &str = "ack.tmp";
const PROBE_FILE: &str = "probe.tmp";
const ACK_MAGIC: &[u8; 4] = b"OCSA";
const ACK_VERSION: u32 = 1;
/// magic, version, low_water, next_seq, n.
const ACK_HEAD: usize = 4 + 4 + 8 + 8 + 4;
/// Most unacknowledged records (each costs 32 bytes of index): with small events and a large
/// `max_bytes` the count, not the bytes, is the bound. 1 Mi records = 32 MiB of index.
pub const MAX_RECORDS: u64 = 1 << 20;
/// Recently appended records kept in memory until handed out.
const CACHE_BYTES: usize = 2 << 20;
/// Out-of-order ranges written by the periodic persist (all of them at `sync`).
const PERIODIC_RANGES: usize = 4096;
/// Removed entries tolerated inside the index before it is compacted.
const INDEX_SLACK: usize = 1024;
/// Wait after a failed segment rewrite (a full disk) before trying again.
const COMPACT_RETRY: Duration = Duration::from_secs(10);
/// Records held in memory when the disk fails ([`Append::Volatile`]): at most this many bytes…
const VOLATILE_BYTES: usize = 1 << 20;
/// …and this many records.
const VOLATILE_RECORDS: usize = 4096;
/// A fully acknowledged active segment at least this large is deleted (and a new one started),
/// so acknowledged events do not hold disk space while the broker keeps up.
const RECLAIM_ACTIVE_BYTES: u64 = 64 << 10;
/// Segment size while the disk is short of space (a minute after a failed write).
const TIGHT_SEGMENT_BYTES: u64 = 8 << 10;
/// Where damaged bytes found at open are set aside for inspection.
const DAMAGED_DIR: &str = "damaged";
/// Most bytes kept in `damaged/` (older damage is not replaced; more is reported, not kept).
const MAX_DAMAGED_KEPT: u64 = 4 << 20;
/// 2020-01-01T00:00:00Z: older stamps come from an unset clock and are not expired by age.
const PLAUSIBLE_UNIX_MS: u64 = 1_577_836_800_000;

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

/// The decoded `ack` file.
#[derive(Debug, Default)]
struct AckState {
    low_water: u64,
    next_seq: u64,
    ranges: Vec<(u64, u64)>,
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

fn qerr(dir: &Path, message: impl Into<String>) -> Error {
    Error::Queue {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

/// "`what` failed: …" with what to do about it.
fn io_message(what: &str, e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::StorageFull | K::FileTooLarge | K::QuotaExceeded => format!(
            "{what} failed: the disk is full ({e}); acknowledged events are freed to make room \
             and, while the disk stays full, new events are held in memory (not durable): free \
             space on that filesystem or lower queue.max_mb"
        ),
        K::PermissionDenied | K::ReadOnlyFilesystem => format!(
            "{what} failed: not writable ({e}); give this user write permission on the directory \
             or set queue.dir to a writable directory"
        ),
        _ => format!("{what} failed: {e}; check the disk (free space, `dmesg`) and queue.dir"),
    }
}

fn seg_name(base: u64) -> String {
    format!("{base:020}.{SEG_EXT}")
}

fn parse_seg_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A record's body (after `len | crc`), decoded.
struct Body<'a> {
    seq: u64,
    appended_ms: u64,
    topic: &'a str,
    payload: &'a [u8],
}

fn parse_body(body: &[u8]) -> Option<Body<'_>> {
    let seq = le_u64(body, 0)?;
    let appended_ms = le_u64(body, 8)?;
    let topic_len = usize::from(le_u16(body, 16)?);
    let rest = body.get(FIXED as usize..)?;
    let topic = std::str::from_utf8(rest.get(..topic_len)?).ok()?;
    let payload = rest.get(topic_len..)?;
    Some(Body {
        seq,
        appended_ms,
        topic,
        payload,
    })
}

/// Frame one record into `buf`.
fn encode(buf: &mut Vec<u8>, seq: u64, appended_ms: u64, topic: &str, payload: &[u8]) {
    let len = FIXED as usize + topic.len() + payload.len();
    buf.clear();
    buf.reserve(HEADER as usize + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&appended_ms.to_le_bytes());
    buf.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    buf.extend_from_slice(topic.as_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf[HEADER as usize..]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn encode_ack(state: &AckState) -> Vec<u8> {
    let mut b = Vec::with_capacity(ACK_HEAD + 16 * state.ranges.len() + 4);
    b.extend_from_slice(ACK_MAGIC);
    b.extend_from_slice(&ACK_VERSION.to_le_bytes());
    b.extend_from_slice(&state.low_water.to_le_bytes());
    b.extend_from_slice(&state.next_seq.to_le_bytes());
    b.extend_from_slice(&(state.ranges.len() as u32).to_le_bytes());
    for (start, end) in &state.ranges {
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&end.to_le_bytes());
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode_ack(b: &[u8]) -> Option<AckState> {
    let body_len = b.len().checked_sub(4)?;
    let body = b.get(..body_len)?;
    if le_u32(b, body_len)? != crc32fast::hash(body) || body.get(..4)? != ACK_MAGIC {
        return None;
    }
    if le_u32(b, 4)? != ACK_VERSION {
        return None;
    }
    let low_water = le_u64(b, 8)?;
    let next_seq = le_u64(b, 16)?;
    let n = le_u32(b, 24)? as usize;
    if body_len != ACK_HEAD + n.checked_mul(16)? || low_water > next_seq {
        return None;
    }
    let mut ranges = Vec::with_capacity(n);
    let mut floor = low_water;
    for i in 0..n {
        let start = le_u64(b, ACK_HEAD + 16 * i)?;
        let end = le_u64(b, ACK_HEAD + 16 * i + 8)?;
        if start < floor || end <= start || end > next_seq {
            return None;
        }
        floor = end;
        ranges.push((start, end));
    }
    Some(AckState {
        low_water,
        next_seq,
        ranges,
    })
}

/// A record found by [`scan_segment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    seq: u64,
    appended_ms: u64,
    offset: u64,
    size: u64,
}

/// What [`scan_segment`] found in one segment's bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// Every record that checks out (length, crc, body, seq order), in file order.
    records: Vec<Found>,
    /// Byte ranges `[start, end)` that are not part of any such record.
    damaged: Vec<(u64, u64)>,
}

/// Smallest framed record: header and fixed fields, empty topic and payload.
const MIN_RECORD: u64 = HEADER + FIXED;
/// Most of one segment file read at open (far above `segment_bytes`; bytes beyond are damage).
const MAX_SCAN_BYTES: u64 = 256 << 20;

/// The record at `off`, if one checks out there with a seq in `lo..hi`.
fn record_at(bytes: &[u8], off: usize, lo: u64, hi: u64) -> Option<Found> {
    let len = u64::from(le_u32(bytes, off)?);
    let size = HEADER.checked_add(len)?;
    let end = off.checked_add(usize::try_from(size).ok()?)?;
    if len < FIXED || end > bytes.len() {
        return None;
    }
    // the seq first: a cheap test that random bytes almost never pass, before the crc
    let seq = le_u64(bytes, off + HEADER as usize)?;
    if seq < lo || seq >= hi {
        return None;
    }
    let body = bytes.get(off + HEADER as usize..end)?;
    if crc32fast::hash(body) != le_u32(bytes, off + 4)? {
        return None;
    }
    let b = parse_body(body)?;
    Some(Found {
        seq,
        appended_ms: b.appended_ms,
        offset: off as u64,
        size,
    })
}

/// Read a segment's records, resynchronising past damage: where a record does not check out, the
/// scan moves on byte by byte until one does (its length, crc, body and a seq above the last good
/// one, below `next_base`, and no further above it than the bytes in between could have held).
/// `prev` is the last good seq before this segment.
fn scan_segment(bytes: &[u8], base: u64, prev: Option<u64>, next_base: Option<u64>) -> Scan {
    let mut scan = Scan::default();
    let mut lo = prev.map_or(base, |p| p.saturating_add(1)).max(base);
    let mut damage_from: Option<usize> = None;
    let mut good_end = 0usize;
    let mut off = 0usize;
    while off < bytes.len() {
        // seqs within a segment are consecutive but for rare skips: a record cannot be further
        // ahead than the records the bytes since the last good one could have held
        let room = (off - good_end) as u64 / MIN_RECORD + 64;
        let hi = next_base.unwrap_or(u64::MAX).min(lo.saturating_add(room));
        match record_at(bytes, off, lo, hi) {
            Some(r) => {
                if let Some(from) = damage_from.take() {
                    scan.damaged.push((from as u64, off as u64));
                }
                lo = r.seq.saturating_add(1);
                off += r.size as usize;
                good_end = off;
                scan.records.push(r);
            }
            None => {
                damage_from.get_or_insert(off);
                off += 1;
            }
        }
    }
    if let Some(from) = damage_from {
        scan.damaged.push((from as u64, bytes.len() as u64));
    }
    scan
}

impl AckState {
    /// Whether `seq` is acknowledged or removed.
    fn covers(&self, seq: u64) -> bool {
        seq < self.low_water
            || self
                .ranges
                .binary_search_by(|&(a, b)| {
                    if b <= seq {
                        std::cmp::Ordering::Less
                    } else if a > seq {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                })
                .is_ok()
    }

    /// Seqs in `a..b` that are neither acknowledged nor removed (bounded work: ranges, not seqs).
    fn unacked_in(&self, a: u64, b: u64) -> u64 {
        if b <= a {
            return 0;
        }
        let start = a.max(self.low_water);
        if start >= b {
            return 0;
        }
        let covered: u64 = self
            .ranges
            .iter()
            .map(|&(x, y)| y.min(b).saturating_sub(x.max(start)))
            .sum();
        (b - start).saturating_sub(covered)
    }
}

/// Bytes already kept in `damaged/`.
fn damaged_kept_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir.join(DAMAGED_DIR)).map_or(0, |rd| {
        rd.flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Copy `bytes[from..to]` of segment `seg` to `damaged/<segment>.<from>-<to>.bin`, within
/// `budget`; the path written, or `None` (already kept, no budget left, or not writable).
fn set_aside(
    dir: &Path,
    seg: &Path,
    bytes: &[u8],
    from: u64,
    to: u64,
    budget: &mut u64,
) -> Option<PathBuf> {
    let name = seg.file_name()?.to_string_lossy().into_owned();
    let path = dir
        .join(DAMAGED_DIR)
        .join(format!("{name}.{from}-{to}.bin"));
    if path.exists() {
        return Some(path);
    }
    let data = bytes.get(from as usize..(to as usize).min(bytes.len()))?;
    let n = data.len() as u64;
    if n > *budget {
        return None;
    }
    let r = fs::DirBuilder::new()
        .recursive(true)
        .mode_private()
        .create(dir.join(DAMAGED_DIR))
        .and_then(|()| private_file(&path))
        .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_data()));
    match r {
        Ok(()) => {
            *budget -= n;
            Some(path)
        }
        Err(e) => {
            let _ = fs::remove_file(&path);
            tracing::warn!("cannot keep damaged queue bytes in {}: {e}", path.display());
            None
        }
    }
}

/// `read_exact`, but a short file is `Ok(false)`.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Make sure `dir` is a usable directory.
fn prepare_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            make_private(dir, true);
            Ok(())
        }
        Ok(_) => Err(qerr(
            dir,
            "is not a directory (a file of that name exists); remove the file or set queue.dir \
             to a directory path",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode_private()
            .create(dir)
            .map_err(|e| {
                qerr(
                    dir,
                    format!(
                        "cannot create the directory ({e}); create it with write permission for \
                         this user, or set queue.dir to a writable place"
                    ),
                )
            }),
        Err(e) => Err(qerr(
            dir,
            format!(
                "cannot access the directory ({e}); check the permissions of it and its parents, \
                 or set queue.dir elsewhere"
            ),
        )),
    }
}

fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode_private()
        .open(&path)
        .map_err(|e| qerr(dir, io_message("creating the lock file `lock`", &e)))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another process (pid {holder})")
            };
            return Err(qerr(
                dir,
                format!(
                    "is locked by {who}: another ocellus is using this queue; stop it, or give \
                     each instance its own queue.dir"
                ),
            ));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(qerr(
                dir,
                format!(
                    "cannot lock `lock` ({e}); put queue.dir on a local filesystem that supports \
                     file locks"
                ),
            ));
        }
    }
    // informational: who holds it
    if f.set_len(0).is_ok() {
        let _ = f.seek(SeekFrom::Start(0));
        let _ = write!(f, "{}", std::process::id());
    }
    Ok(f)
}

/// Create, write, fsync and remove a file, so an unusable directory is found at open.
fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let r = (|| -> io::Result<()> {
        let mut f = private_file(&path)?;
        f.write_all(b"ocellus queue probe\n")?;
        f.sync_all()?;
        Ok(())
    })();
    let _ = fs::remove_file(&path);
    r
}

/// A full disk: the queue still opens (so its backlog can be sent and space freed), degraded.
fn is_full(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::FileTooLarge | K::QuotaExceeded
    )
}

impl Spool {
    /// Open (or create) the queue in `cfg.dir`.
    ///
    /// Errors ([`Error::Queue`]): the directory cannot be created, is a file, is not writable (a
    /// test file is created, written and fsynced), is locked by another process, or a segment
    /// cannot be read. Damaged records are not errors: they are skipped and counted.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, OpenReport)> {
        let dir = cfg.dir.clone();
        prepare_dir(&dir)?;
        let lock = take_lock(&dir)?;
        let mut write_errors = 0;
        if let Err(e) = probe(&dir) {
            let message = io_message("writing a test file", &e);
            if !is_full(&e) {
                return Err(qerr(&dir, message));
            }
            write_errors += 1;
            tracing::warn!("event queue {}: {message}", dir.display());
        }
        let entries = fs::read_dir(&dir)
            .map_err(|e| qerr(&dir, format!("cannot list the directory ({e})")))?;
        let mut names = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            } else if let Some(base) = parse_seg_name(name) {
                make_private(&entry.path(), false);
                names.push((base, entry.path()));
            }
        }
        names.sort();
        let ack = match fs::read(dir.join(ACK_FILE)) {
            Ok(bytes) => match decode_ack(&bytes) {
                Some(a) => a,
                None => {
                    tracing::warn!(
                        "event queue {}: the `ack` file is damaged; unacknowledged and recently \
                         acknowledged records are sent again",
                        dir.display()
                    );
                    AckState::default()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => AckState::default(),
            Err(e) => return Err(qerr(&dir, format!("cannot read `ack` ({e})"))),
        };
        let mut spool = Spool {
            cfg,
            _lock: lock,
            segments: VecDeque::new(),
            writer: None,
            index: VecDeque::new(),
            index_removed: 0,
            next_seq: 0,
            cursor: 0,
            live_count: 0,
            live_bytes: 0,
            disk_bytes: 0,
            volatile: std::collections::BTreeMap::new(),
            volatile_bytes: 0,
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_limit: CACHE_BYTES,
            buf: Vec::new(),
            counters: SpoolStats {
                write_errors,
                ..SpoolStats::default()
            },
            dirty_since: None,
            data_dirty: false,
            unsynced: 0,
            dir_dirty: false,
            ack_dirty: true,
            ack_partial: false,
            persisted_next_seq: 0,
            last_ack_write: Instant::now(),
            compact_after: None,
            last_reclaim: None,
            tight_until: None,
            clock_skew_ms: 0,
            // until loaded: a failed open must not write an `ack` from a partial index
            skip_sync_on_drop: true,
            #[cfg(test)]
            fail_fsync: false,
        };
        spool.load(&names, &ack)?;
        spool.skip_sync_on_drop = false;
        // a queue written with larger bounds (or by an older version): the oldest go, counted
        while spool.live_count > MAX_RECORDS || spool.live_bytes > spool.cfg.max_bytes {
            if spool.index.is_empty() {
                break;
            }
            spool.remove_at(0, Why::Dropped);
        }
        // Segments dead now are dead by the `ack` file read above (or damaged), so deleting them
        // is safe even if this write fails (a full disk: maintain() retries and reports it).
        if let Err(e) = spool.write_ack(true) {
            tracing::warn!("{e}");
        }
        spool.delete_dead_segments();
        let report = OpenReport {
            recovered: spool.live_count,
            torn: spool.counters.torn,
            lost: spool.counters.lost,
        };
        Ok((spool, report))
    }

    /// Read every segment, build the index, resynchronise past damage (keeping every intact record,
    /// setting the damaged bytes aside), truncate a torn tail, pick the segment to append to.
    fn load(&mut self, names: &[(u64, PathBuf)], ack: &AckState) -> Result<()> {
        let dir = self.cfg.dir.clone();
        let mut last_seq: Option<u64> = None;
        let mut max_name: Option<u64> = None;
        let mut appendable = false;
        let mut kept_budget = MAX_DAMAGED_KEPT.saturating_sub(damaged_kept_bytes(&dir));
        for (k, (base, path)) in names.iter().enumerate() {
            let is_last = k + 1 == names.len();
            let next_base = names.get(k + 1).map(|n| n.0);
            max_name = Some(*base);
            let read_err = |e: io::Error| {
                qerr(
                    &dir,
                    format!(
                        "cannot read {} ({e}); the queue files must be readable and writable by \
                         this user",
                        path.display()
                    ),
                )
            };
            let file = File::open(path).map_err(read_err)?;
            let file_len = file.metadata().map_err(read_err)?.len();
            let take = file_len.min(MAX_SCAN_BYTES);
            let mut bytes = Vec::with_capacity(take as usize);
            file.take(take).read_to_end(&mut bytes).map_err(read_err)?;
            let mut scan = scan_segment(&bytes, *base, last_seq, next_base);
            if file_len > take {
                scan.damaged.push((take, file_len));
            }
            let mut seg = Segment {
                base: *base,
                path: path.clone(),
                file_len,
                live: 0,
                live_bytes: 0,
                reader: None,
                delete_warned: false,
            };
            let seg_prev = last_seq;
            for r in &scan.records {
                if !ack.covers(r.seq) {
                    self.index.push_back(Entry {
                        seq: r.seq,
                        appended_ms: r.appended_ms,
                        offset: r.offset,
                        size: r.size as u32,
                        removed: false,
                        volatile: false,
                    });
                    seg.live += 1;
                    seg.live_bytes += r.size;
                }
                last_seq = Some(r.seq);
            }
            let tail_from = scan.damaged.last().filter(|d| d.1 >= file_len).map(|d| d.0);
            appendable = is_last && file_len <= take;
            for &(from, to) in &scan.damaged {
                // the records the damage may have held: between the good ones around it
                let i = scan.records.partition_point(|r| r.offset < from);
                let before = i
                    .checked_sub(1)
                    .and_then(|j| scan.records.get(j))
                    .map(|r| r.seq)
                    .or(seg_prev);
                let after = match scan.records.get(i) {
                    Some(r) => r.seq,
                    None if is_last => ack.next_seq.max(before.map_or(*base, |b| b + 1)),
                    None => next_base.unwrap_or(0),
                };
                let first = before.map_or(*base, |b| b.saturating_add(1)).max(*base);
                let lost = ack.unacked_in(first, after);
                self.counters.torn += 1;
                self.counters.lost += lost;
                let kept = set_aside(&dir, path, &bytes, from, to, &mut kept_budget);
                let intact_after = scan.records.len() - i;
                tracing::warn!(
                    "event queue {}: {} is damaged at bytes {from}..{to}; {intact_after} intact \
                     record(s) after it kept, {lost} unacknowledged record(s) lost{}",
                    dir.display(),
                    path.display(),
                    match &kept {
                        Some(p) => format!("; the damaged bytes are in {}", p.display()),
                        None => String::new(),
                    }
                );
            }
            // (a file larger than what was scanned is never cut: its end was not read)
            if let (true, Some(cut_at), true) = (is_last, tail_from, file_len <= take) {
                // a torn tail: nothing intact after it; append after the last good record
                let cut = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(cut_at).and_then(|()| f.sync_data()));
                match cut {
                    Ok(()) => {
                        seg.file_len = cut_at;
                        appendable = true;
                    }
                    Err(e) => {
                        appendable = false;
                        tracing::warn!(
                            "event queue {}: {} cannot be truncated at its torn tail ({e}); new \
                             events go to a new segment",
                            dir.display(),
                            path.display()
                        );
                    }
                }
            }
            self.live_count += seg.live;
            self.live_bytes += seg.live_bytes;
            self.disk_bytes += seg.file_len;
            self.segments.push_back(seg);
        }
        self.next_seq = [
            ack.next_seq,
            ack.low_water,
            last_seq.map_or(0, |s| s.saturating_add(1)),
            max_name.map_or(0, |s| s.saturating_add(1)),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        if let Some(seg) = self.segments.back()
            && appendable
            && seg.file_len < self.cfg.segment_bytes
        {
            let f = OpenOptions::new()
                .append(true)
                .open(&seg.path)
                .map_err(|e| {
                    qerr(
                        &dir,
                        io_message("opening the newest segment for writing", &e),
                    )
                })?;
            self.writer = Some(f);
        }
        Ok(())
    }

    /// Append one message.
    ///
    /// `Ok(Stored(seq))`: written with `write(2)` (see the module docs for when it is on disk).
    /// `Ok(Volatile(seq))`: the write failed even after every acknowledged record was freed (a
    /// full disk, an I/O error; counted in `write_errors`), and the record is held in a bounded
    /// memory buffer instead, sent from there like any other. `Ok(Refused)`: full with
    /// [`WhenFull::RefuseNew`]. `Err`: nothing was kept: the write failed and the memory buffer is
    /// full, the record alone is larger than `max_bytes` (counted in `refused_full`), or the
    /// topic is longer than 65535 bytes. An fsync that fails inside `append` does not make it fail (the
    /// record is stored); it is counted and reported by the next `maintain`/`sync`.
    pub fn append(&mut self, topic: &str, payload: &[u8]) -> Result<Append> {
        if topic.len() > usize::from(u16::MAX) {
            return Err(qerr(
                &self.cfg.dir,
                format!("topic of {} bytes is too long (at most 65535)", topic.len()),
            ));
        }
        let size = HEADER + FIXED + topic.len() as u64 + payload.len() as u64;
        if size > self.cfg.max_bytes || size > u64::from(u32::MAX) {
            self.counters.refused_full += 1;
            return Err(qerr(
                &self.cfg.dir,
                format!(
                    "an event of {size} bytes is larger than the whole queue (queue.max_mb = {} \
                     bytes); it is not stored: raise queue.max_mb or send smaller events",
                    self.cfg.max_bytes
                ),
            ));
        }
        if self.cfg.when_full == WhenFull::RefuseNew
            && (self.live_bytes + size > self.cfg.max_bytes || self.live_count >= MAX_RECORDS)
        {
            self.counters.refused_full += 1;
            return Ok(Append::Refused);
        }

        let now_ms = self.now_ms();
        let (seq, durable) = match self.write_disk(topic, payload, size, now_ms) {
            Ok(seq) => (seq, true),
            Err(first) => {
                // free what is acknowledged (the active segment included) and try once more
                let retried = if self.reclaim_space() {
                    self.write_disk(topic, payload, size, now_ms).ok()
                } else {
                    None
                };
                match retried {
                    Some(seq) => (seq, true),
                    None => match self.hold_in_memory(topic, payload, size, now_ms) {
                        Some(seq) => (seq, false),
                        None => return Err(first),
                    },
                }
            }
        };
        self.live_count += 1;
        self.live_bytes += size;
        self.counters.appended += 1;

        // make room: the new record alone fits, so this stops before it
        while (self.live_bytes > self.cfg.max_bytes || self.live_count > MAX_RECORDS)
            && self.index.front().is_some_and(|e| e.seq != seq)
        {
            self.remove_at(0, Why::Dropped);
        }

        if !durable {
            return Ok(Append::Volatile(seq));
        }
        if self.cache_limit > 0 {
            self.cache_bytes += topic.len() + payload.len() + 64;
            self.cache.push_back(Record {
                seq,
                appended_unix_ms: now_ms,
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            });
            while self.cache_bytes > self.cache_limit {
                match self.cache.pop_front() {
                    Some(r) => self.cache_bytes -= r.topic.len() + r.payload.len() + 64,
                    None => break,
                }
            }
        }

        if let Err(e) = self.fsync_if_due(false) {
            // the record is stored (survives kill -9); maintain()/sync() report the fsync failure
            tracing::warn!("{e}");
        }
        Ok(Append::Stored(seq))
    }

    /// Write one record to the active segment (starting one if needed) and index it.
    fn write_disk(&mut self, topic: &str, payload: &[u8], size: u64, now_ms: u64) -> Result<u64> {
        let seq = self.next_seq;
        // roll to a new segment when this record would take the current one past segment_bytes
        // (past a few KiB while the disk is short of space: small segments are deleted as soon
        // as their records are acknowledged)
        let roll_at = if self.tight_until.is_some_and(|t| Instant::now() < t) {
            self.cfg.segment_bytes.min(TIGHT_SEGMENT_BYTES)
        } else {
            self.cfg.segment_bytes
        };
        if self.writer.is_some()
            && self
                .segments
                .back()
                .is_some_and(|s| s.file_len > 0 && s.file_len + size > roll_at)
        {
            self.seal_writer();
        }
        if self.writer.is_none() {
            self.start_segment(seq)?;
        }
        let mut buf = std::mem::take(&mut self.buf);
        encode(&mut buf, seq, now_ms, topic, payload);
        let written = match self.writer.as_mut() {
            Some(w) => w.write_all(&buf),
            None => Err(io::Error::other("no segment open")),
        };
        self.buf = buf;
        if let Err(e) = written {
            self.write_failed();
            return Err(qerr(&self.cfg.dir, io_message("writing an event", &e)));
        }
        let offset = match self.segments.back_mut() {
            Some(seg) => {
                let offset = seg.file_len;
                seg.file_len += size;
                seg.live += 1;
                seg.live_bytes += size;
                offset
            }
            None => 0,
        };
        self.disk_bytes += size;
        self.index.push_back(Entry {
            seq,
            appended_ms: now_ms,
            offset,
            size: size as u32,
            removed: false,
            volatile: false,
        });
        self.next_seq = seq + 1;
        self.data_dirty = true;
        self.unsynced += 1;
        self.dirty_since.get_or_insert_with(Instant::now);
        Ok(seq)
    }

    /// Keep a record whose disk write failed in the memory buffer, if it has room.
    fn hold_in_memory(
        &mut self,
        topic: &str,
        payload: &[u8],
        size: u64,
        now_ms: u64,
    ) -> Option<u64> {
        let bytes = topic.len() + payload.len() + 64;
        if self.volatile.len() >= VOLATILE_RECORDS || self.volatile_bytes + bytes > VOLATILE_BYTES {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq = seq + 1;
        self.volatile.insert(
            seq,
            Record {
                seq,
                appended_unix_ms: now_ms,
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            },
        );
        self.volatile_bytes += bytes;
        self.index.push_back(Entry {
            seq,
            appended_ms: now_ms,
            offset: 0,
            size: size as u32,
            removed: false,
            volatile: true,
        });
        self.counters.not_durable += 1;
        Some(seq)
    }

    /// After a failed write: delete every fully acknowledged segment (the active one too; safe
    /// whether or not the acknowledgement position is saved: those records are never needed
    /// again) and, at most every 200 ms, save the acknowledgement position and rewrite the active
    /// segment without its acknowledged records if they are most of it. `true` if anything was
    /// freed.
    fn reclaim_space(&mut self) -> bool {
        self.tight_until = Some(Instant::now() + Duration::from_secs(60));
        let before = self.disk_bytes;
        let _ = self.reclaim_active(0);
        self.delete_dead_segments();
        let throttled = self
            .last_reclaim
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200));
        if self.disk_bytes >= before && !throttled {
            self.last_reclaim = Some(Instant::now());
            let _ = self.write_ack(true);
            if let Some(last) = self.segments.len().checked_sub(1)
                && let Some(seg) = self.segments.get(last)
                && seg.live > 0
                && seg.file_len.saturating_sub(seg.live_bytes) >= seg.file_len / 2
            {
                self.seal_writer();
                if let Err(e) = self.compact(last) {
                    self.counters.write_errors += 1;
                    tracing::debug!("rewriting the active segment to free space failed: {e}");
                }
            }
        }
        let freed = self.disk_bytes < before;
        if freed {
            self.counters.reclaimed += 1;
        }
        freed
    }

    /// Delete the active segment if every record in it is acknowledged and it holds at least
    /// `min_bytes`; the next append starts a new one.
    fn reclaim_active(&mut self, min_bytes: u64) -> bool {
        let Some(seg) = self.segments.back() else {
            return false;
        };
        if self.writer.is_none() || seg.live > 0 || seg.file_len < min_bytes.max(1) {
            return false;
        }
        self.writer = None;
        self.data_dirty = false;
        match fs::remove_file(&seg.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::debug!("cannot delete {}: {e}", seg.path.display());
                return false;
            }
        }
        let len = seg.file_len;
        self.segments.pop_back();
        self.disk_bytes = self.disk_bytes.saturating_sub(len);
        self.dir_dirty = true;
        self.dirty_since.get_or_insert_with(Instant::now);
        true
    }

    /// A write into the current segment failed: undo the partial write, or stop appending to that
    /// segment so the partial record reads as a damaged tail at the next open.
    fn write_failed(&mut self) {
        self.counters.write_errors += 1;
        let Some(seg) = self.segments.back_mut() else {
            self.writer = None;
            return;
        };
        let undone = match &self.writer {
            Some(w) => w.set_len(seg.file_len).is_ok(),
            None => false,
        };
        if !undone {
            if let Err(e) = self.sync_writer("fsync after a failed write") {
                tracing::warn!("{e}");
            }
            self.writer = None;
            let Some(seg) = self.segments.back_mut() else {
                return;
            };
            let len = fs::metadata(&seg.path).map_or(seg.file_len, |m| m.len());
            self.disk_bytes = self.disk_bytes - seg.file_len + len;
            seg.file_len = len;
            // the seq of the partial record is never used, so no file name can collide; record
            // that it was never stored, or the next open would count it lost (best effort: on a
            // full disk this write fails too)
            self.next_seq += 1;
            self.ack_dirty = true;
            let _ = self.write_ack(true);
        }
    }

    /// Stop appending to the current segment (fsync it first).
    fn seal_writer(&mut self) {
        if let Err(e) = self.sync_writer("fsync of a full segment") {
            tracing::warn!("{e}");
        }
        self.writer = None;
    }

    /// fdatasync the active segment. A failure is final for the records it covered: Linux
    /// reports a writeback error once and marks the pages clean, so a second fsync would succeed
    /// without them on disk (PostgreSQL's "fsyncgate"). So they are counted as not durable, the
    /// segment is sealed (later records go to a new file, whose fsync means something again), and
    /// the fsync is never retried as if it could still cover them.
    fn sync_writer(&mut self, what: &str) -> Result<()> {
        if !self.data_dirty {
            return Ok(());
        }
        let r = match &self.writer {
            Some(w) => w.sync_data(),
            None => Ok(()),
        };
        #[cfg(test)]
        let r = if self.fail_fsync {
            Err(io::Error::other("injected fsync failure"))
        } else {
            r
        };
        self.data_dirty = false;
        match r {
            Ok(()) => {
                self.unsynced = 0;
                Ok(())
            }
            Err(e) => {
                self.counters.write_errors += 1;
                let n = std::mem::take(&mut self.unsynced);
                self.counters.not_durable += n;
                self.writer = None;
                Err(qerr(
                    &self.cfg.dir,
                    format!(
                        "{}: the {n} event(s) written since the last successful fsync may not be on disk; they are still sent, counted as not durable, and new events go to a new segment",
                        io_message(what, &e)
                    ),
                ))
            }
        }
    }

    fn start_segment(&mut self, base: u64) -> Result<()> {
        let path = self.cfg.dir.join(seg_name(base));
        let f = match OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode_private()
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                self.counters.write_errors += 1;
                if e.kind() == io::ErrorKind::AlreadyExists {
                    self.next_seq += 1; // never wedge on a stray file
                }
                return Err(qerr(
                    &self.cfg.dir,
                    io_message(&format!("creating segment {}", path.display()), &e),
                ));
            }
        };
        self.segments.push_back(Segment {
            base,
            path,
            file_len: 0,
            live: 0,
            live_bytes: 0,
            reader: None,
            delete_warned: false,
        });
        self.writer = Some(f);
        self.dir_dirty = true;
        self.dirty_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// The next record not yet handed out since the last [`Spool::rewind`], in seq order.
    ///
    /// Records older than `max_age` are removed (counted) instead of handed out. A record that no
    /// longer reads back intact (damaged on disk after open) is skipped and counted in `torn`.
    /// `Err`: a segment cannot be read; the same record is tried again at the next call.
    pub fn next_unsent(&mut self) -> Result<Option<Record>> {
        let now_ms = self.now_ms();
        loop {
            let start = self.index.partition_point(|e| e.seq < self.cursor);
            let Some(i) = (start..self.index.len()).find(|&i| !self.index[i].removed) else {
                self.cursor = self.next_seq;
                return Ok(None);
            };
            let e = self.index[i];
            self.cursor = e.seq + 1;
            if self.is_expired(e.appended_ms, now_ms) {
                self.remove_at(i, Why::Expired);
                continue;
            }
            if e.volatile {
                if let Some(r) = self.volatile.get(&e.seq) {
                    return Ok(Some(r.clone()));
                }
                continue;
            }
            while self.cache.front().is_some_and(|r| r.seq < e.seq) {
                self.pop_cache();
            }
            if self.cache.front().is_some_and(|r| r.seq == e.seq)
                && let Some(rec) = self.pop_cache()
            {
                return Ok(Some(rec));
            }
            match self.read_record(&e) {
                Ok(Some(rec)) => return Ok(Some(rec)),
                Ok(None) => {
                    tracing::warn!(
                        "event queue {}: record {} no longer reads back intact; skipped",
                        self.cfg.dir.display(),
                        e.seq
                    );
                    if let Ok(i) = self.index.binary_search_by_key(&e.seq, |x| x.seq) {
                        self.remove_at(i, Why::Damaged);
                    }
                }
                Err(err) => {
                    self.cursor = e.seq;
                    return Err(err);
                }
            }
        }
    }

    fn pop_cache(&mut self) -> Option<Record> {
        let r = self.cache.pop_front()?;
        self.cache_bytes -= r.topic.len() + r.payload.len() + 64;
        Some(r)
    }

    /// Read one record back from its segment; `Ok(None)`: it is not intact.
    fn read_record(&mut self, e: &Entry) -> Result<Option<Record>> {
        let Some(si) = self.seg_idx(e.seq) else {
            return Ok(None);
        };
        let dir = &self.cfg.dir;
        let Some(seg) = self.segments.get_mut(si) else {
            return Ok(None);
        };
        let read_err =
            |err: io::Error| qerr(dir, format!("cannot read {} ({err})", seg.path.display()));
        let reader = match &mut seg.reader {
            Some(r) => r,
            None => seg.reader.insert(File::open(&seg.path).map_err(read_err)?),
        };
        let mut buf = vec![0u8; e.size as usize];
        reader.seek(SeekFrom::Start(e.offset)).map_err(read_err)?;
        if !read_full(reader, &mut buf).map_err(read_err)? {
            return Ok(None);
        }
        let body = buf.get(HEADER as usize..).unwrap_or_default();
        if le_u32(&buf, 0) != Some(body.len() as u32)
            || le_u32(&buf, 4) != Some(crc32fast::hash(body))
        {
            return Ok(None);
        }
        Ok(parse_body(body).filter(|b| b.seq == e.seq).map(|b| Record {
            seq: b.seq,
            appended_unix_ms: b.appended_ms,
            topic: b.topic.to_owned(),
            payload: b.payload.to_vec(),
        }))
    }

    /// The broker acknowledged `seq` (any order; unknown or already removed seqs are ignored).
    pub fn ack(&mut self, seq: u64) {
        if let Ok(i) = self.index.binary_search_by_key(&seq, |e| e.seq) {
            self.remove_at(i, Why::Acked);
        }
    }

    /// Hand out every unacknowledged record again, from the oldest (after a reconnect).
    ///
    /// Records handed out before and still unacknowledged are handed out again (an ack for one of
    /// them that arrives later is still accepted).
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// Periodic work: fsync if due, expire by age, delete acknowledged segments, persist the ack
    /// position.
    ///
    /// Cheap when nothing is due (call it every 20–100 ms). `Err`: an fsync, the ack persist or a
    /// segment rewrite failed (counted in `write_errors`); what could be done was done.
    pub fn maintain(&mut self) -> Result<()> {
        let now_ms = self.now_ms();
        while let Some(e) = self.index.front() {
            if !self.is_expired(e.appended_ms, now_ms) {
                break;
            }
            self.remove_at(0, Why::Expired);
        }
        let mut result = self.fsync_if_due(false);
        let since = self.last_ack_write.elapsed();
        // new records alone (nothing acknowledged: the broker is away) are recorded at most once
        // a second, so that a damaged tail's loss is counted at the next open
        let seq_lags = self.next_seq != self.persisted_next_seq
            && since >= self.cfg.fsync_interval.max(Duration::from_secs(1));
        if ((self.ack_dirty || self.ack_partial) && since >= self.cfg.fsync_interval) || seq_lags {
            match self.write_ack(false) {
                Ok(()) => {
                    let tight = self.tight_until.is_some_and(|t| Instant::now() < t);
                    let min = if tight { 0 } else { RECLAIM_ACTIVE_BYTES };
                    if self.reclaim_active(min) {
                        self.counters.reclaimed += 1;
                    }
                    self.delete_dead_segments();
                }
                Err(e) => result = result.and(Err(e)),
            }
        }
        if let Err(e) = self.compact_if_needed() {
            result = result.and(Err(e));
        }
        result
    }

    /// fsync everything now (at shutdown).
    ///
    /// Segment data, the directory and the full acknowledgement position (out-of-order acks
    /// included), then fully acknowledged segments are deleted: a restart after this sends nothing
    /// that was acknowledged.
    pub fn sync(&mut self) -> Result<()> {
        let mut result = self.fsync_if_due(true);
        if self.ack_dirty || self.ack_partial || self.next_seq != self.persisted_next_seq {
            match self.write_ack(true) {
                Ok(()) => self.delete_dead_segments(),
                Err(e) => result = result.and(Err(e)),
            }
        }
        result
    }

    /// [`Spool::sync`], then leave no acknowledged record on disk (a clean stop): a fully
    /// acknowledged active segment is deleted and every segment that still holds acknowledged
    /// records among unacknowledged ones is rewritten without them. What remains on disk is
    /// exactly what is owed to the broker.
    pub fn close(&mut self) -> Result<()> {
        let mut result = self.sync();
        let _ = self.reclaim_active(0);
        let mut i = 0;
        while i < self.segments.len() {
            let garbage = self
                .segments
                .get(i)
                .is_some_and(|s| s.live > 0 && s.file_len > s.live_bytes);
            if garbage {
                if i + 1 == self.segments.len() {
                    self.seal_writer();
                }
                if let Err(e) = self.compact(i) {
                    self.counters.write_errors += 1;
                    result = result.and(Err(qerr(
                        &self.cfg.dir,
                        io_message("rewriting a partly acknowledged segment at the stop", &e),
                    )));
                }
            }
            i += 1;
        }
        self.delete_dead_segments();
        if let Err(e) = self.fsync_if_due(true) {
            result = result.and(Err(e));
        }
        result
    }

    /// Counters and depth.
    pub fn stats(&self) -> SpoolStats {
        let now_ms = self.now_ms();
        SpoolStats {
            depth: self.live_count,
            bytes: self.live_bytes,
            oldest_age_ms: self
                .index
                .front()
                .map(|e| now_ms.saturating_sub(e.appended_ms)),
            volatile_depth: self.volatile.len() as u64,
            unsynced: self.unsynced,
            ..self.counters.clone()
        }
    }

    /// Unacknowledged records (the `depth` of [`Spool::stats`]).
    pub fn pending(&self) -> u64 {
        self.live_count
    }

    /// Whether every record has been acknowledged or removed.
    pub fn is_empty(&self) -> bool {
        self.live_count == 0
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    fn now_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        wall.saturating_add(self.clock_skew_ms)
    }

    fn is_expired(&self, appended_ms: u64, now_ms: u64) -> bool {
        appended_ms >= PLAUSIBLE_UNIX_MS
            && u128::from(now_ms.saturating_sub(appended_ms)) > self.cfg.max_age.as_millis()
    }

    /// Every seq below it is acknowledged or removed.
    fn low_water(&self) -> u64 {
        self.index.front().map_or(self.next_seq, |e| e.seq)
    }

    /// The segment holding `seq`: the last one whose base is ≤ seq.
    fn seg_idx(&self, seq: u64) -> Option<usize> {
        self.segments
            .partition_point(|s| s.base <= seq)
            .checked_sub(1)
    }

    fn remove_at(&mut self, i: usize, why: Why) {
        let Some(e) = self.index.get_mut(i) else {
            return;
        };
        if e.removed {
            return;
        }
        e.removed = true;
        let (seq, size, volatile) = (e.seq, u64::from(e.size), e.volatile);
        self.index_removed += 1;
        self.live_count = self.live_count.saturating_sub(1);
        self.live_bytes = self.live_bytes.saturating_sub(size);
        if volatile {
            if let Some(r) = self.volatile.remove(&seq) {
                self.volatile_bytes = self
                    .volatile_bytes
                    .saturating_sub(r.topic.len() + r.payload.len() + 64);
            }
        } else if let Some(si) = self.seg_idx(seq)
            && let Some(seg) = self.segments.get_mut(si)
        {
            seg.live = seg.live.saturating_sub(1);
            seg.live_bytes = seg.live_bytes.saturating_sub(size);
        }
        match why {
            Why::Acked => self.counters.acked += 1,
            Why::Dropped => self.counters.dropped_full += 1,
            Why::Expired => self.counters.expired += 1,
            Why::Damaged => self.counters.torn += 1,
        }
        self.ack_dirty = true;
        while self.index.front().is_some_and(|e| e.removed) {
            self.index.pop_front();
            self.index_removed -= 1;
        }
        if self.index_removed > INDEX_SLACK && self.index_removed > self.index.len() / 2 {
            self.index.retain(|e| !e.removed);
            self.index_removed = 0;
        }
    }

    fn fsync_if_due(&mut self, force: bool) -> Result<()> {
        let Some(since) = self.dirty_since else {
            return Ok(());
        };
        if !force && since.elapsed() < self.cfg.fsync_interval {
            return Ok(());
        }
        let data = self.sync_writer("fsync of the queue");
        if self.dir_dirty {
            if let Err(e) = sync_dir(&self.cfg.dir) {
                self.counters.write_errors += 1;
                return Err(qerr(
                    &self.cfg.dir,
                    io_message("fsync of the directory", &e),
                ));
            }
            self.dir_dirty = false;
        }
        self.dirty_since = None;
        data
    }

    /// The acknowledgement position: low-water mark and the removed ranges above it.
    fn ack_state(&self, full: bool) -> (AckState, bool) {
        let low_water = self.low_water();
        let mut ranges = Vec::new();
        let mut partial = false;
        let contiguous = self.index_removed == 0
            && match (self.index.front(), self.index.back()) {
                (Some(f), Some(b)) => b.seq - f.seq + 1 == self.index.len() as u64,
                _ => true,
            };
        let mut prev: Option<u64> = None;
        if contiguous {
            prev = self.index.back().map(|e| e.seq);
        } else {
            for e in self.index.iter().filter(|e| !e.removed) {
                if let Some(p) = prev
                    && e.seq > p + 1
                {
                    if !full && ranges.len() >= PERIODIC_RANGES {
                        partial = true;
                        break;
                    }
                    ranges.push((p + 1, e.seq));
                }
                prev = Some(e.seq);
            }
        }
        if !partial
            && let Some(p) = prev
            && self.next_seq > p + 1
        {
            ranges.push((p + 1, self.next_seq));
        }
        let state = AckState {
            low_water,
            next_seq: self.next_seq,
            ranges,
        };
        (state, partial)
    }

    /// Persist the acknowledgement position (tmp + fsync + rename + fsync of the directory).
    fn write_ack(&mut self, full: bool) -> Result<()> {
        let (state, partial) = self.ack_state(full);
        let bytes = encode_ack(&state);
        let tmp = self.cfg.dir.join(ACK_TMP);
        let r = (|| -> io::Result<()> {
            let mut f = private_file(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            fs::rename(&tmp, self.cfg.dir.join(ACK_FILE))?;
            sync_dir(&self.cfg.dir)
        })();
        self.last_ack_write = Instant::now();
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            self.counters.write_errors += 1;
            return Err(qerr(
                &self.cfg.dir,
                io_message("saving the acknowledgement position (`ack`)", &e),
            ));
        }
        self.ack_dirty = false;
        self.ack_partial = partial;
        self.persisted_next_seq = state.next_seq;
        Ok(())
    }

    /// Delete segments with nothing unacknowledged left (not the one being appended to). Call only
    /// right after the ack position was persisted.
    fn delete_dead_segments(&mut self) {
        let keep_last = self.writer.is_some();
        let mut i = 0;
        let mut removed_any = false;
        while i < self.segments.len() {
            let is_writer = keep_last && i + 1 == self.segments.len();
            let Some(seg) = self.segments.get_mut(i) else {
                break;
            };
            if seg.live > 0 || is_writer {
                i += 1;
                continue;
            }
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    if !seg.delete_warned {
                        seg.delete_warned = true;
                        tracing::warn!(
                            "event queue {}: cannot delete the acknowledged segment {} ({e})",
                            self.cfg.dir.display(),
                            seg.path.display()
                        );
                    }
                    i += 1;
                    continue;
                }
            }
            self.disk_bytes = self.disk_bytes.saturating_sub(seg.file_len);
            self.segments.remove(i);
            removed_any = true;
        }
        if removed_any {
            self.dir_dirty = true;
            self.dirty_since.get_or_insert_with(Instant::now);
        }
    }

    /// When acknowledged records that share segments with unacknowledged ones take too much disk,
    /// rewrite the sealed segment holding the most of them with only its unacknowledged records.
    fn compact_if_needed(&mut self) -> Result<()> {
        let limit = self
            .cfg
            .max_bytes
            .max(self.cfg.segment_bytes.saturating_mul(2));
        if self.disk_bytes.saturating_sub(self.live_bytes) <= limit
            || self.compact_after.is_some_and(|t| Instant::now() < t)
        {
            return Ok(());
        }
        let sealed = if self.writer.is_some() {
            self.segments.len().saturating_sub(1)
        } else {
            self.segments.len()
        };
        let best = (0..sealed)
            .filter_map(|i| {
                let s = self.segments.get(i)?;
                let garbage = s.file_len.saturating_sub(s.live_bytes);
                (s.live > 0 && garbage >= s.file_len / 2).then_some((garbage, i))
            })
            .max();
        let Some((_, si)) = best else {
            return Ok(());
        };
        self.compact(si).map_err(|e| {
            self.counters.write_errors += 1;
            self.compact_after = Some(Instant::now() + COMPACT_RETRY);
            qerr(
                &self.cfg.dir,
                io_message("rewriting a partly acknowledged segment", &e),
            )
        })
    }

    fn compact(&mut self, si: usize) -> io::Result<()> {
        let Some(seg) = self.segments.get(si) else {
            return Ok(());
        };
        let base = seg.base;
        let end = self.segments.get(si + 1).map_or(u64::MAX, |s| s.base);
        let path = seg.path.clone();
        let tmp = path.with_extension("seg.tmp");
        let lo = self.index.partition_point(|e| e.seq < base);
        let hi = self.index.partition_point(|e| e.seq < end);
        let mut moved = Vec::new();
        let r = (|| -> io::Result<u64> {
            let mut src = File::open(&path)?;
            let mut out = BufWriter::with_capacity(256 << 10, private_file(&tmp)?);
            let mut buf = Vec::new();
            let mut off = 0u64;
            for i in lo..hi {
                let Some(e) = self.index.get(i) else { break };
                if e.removed || e.volatile {
                    continue;
                }
                buf.resize(e.size as usize, 0);
                src.seek(SeekFrom::Start(e.offset))?;
                src.read_exact(&mut buf)?;
                out.write_all(&buf)?;
                moved.push((i, off));
                off += u64::from(e.size);
            }
            let f = out.into_inner().map_err(|e| e.into_error())?;
            f.sync_data()?;
            fs::rename(&tmp, &path)?;
            sync_dir(&self.cfg.dir)?;
            Ok(off)
        })();
        let new_len = match r {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        for (i, off) in moved {
            if let Some(e) = self.index.get_mut(i) {
                e.offset = off;
            }
        }
        if let Some(seg) = self.segments.get_mut(si) {
            self.disk_bytes = self.disk_bytes.saturating_sub(seg.file_len) + new_len;
            seg.file_len = new_len;
            seg.reader = None;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn cfg(dir: &Path) -> SpoolConfig {
        SpoolConfig {
            fsync_interval: Duration::ZERO,
            ..SpoolConfig::new(dir)
        }
    }

    /// A `kill -9`: nothing beyond the write syscalls already made.
    fn crash(mut s: Spool) {
        s.skip_sync_on_drop = true;
        drop(s);
    }

    fn payload(i: u64) -> Vec<u8> {
        // fixed size, so tests can compute framed sizes
        let mut p = format!("{{\"id\":\"event-{i:06}\"}}").into_bytes();
        p.extend_from_slice(&[0, 255, i as u8, b'\n']);
        p
    }

    fn stored(r: Result<Append>) -> u64 {
        match r.unwrap() {
            Append::Stored(s) => s,
            other => panic!("not stored on disk: {other:?}"),
        }
    }

    fn drain(s: &mut Spool) -> Vec<Record> {
        let mut v = Vec::new();
        while let Some(r) = s.next_unsent().unwrap() {
            v.push(r);
        }
        v
    }

    fn segs(dir: &Path) -> Vec<(String, u64)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                n.ends_with(".seg")
                    .then(|| (n, e.metadata().unwrap().len()))
            })
            .collect();
        v.sort();
        v
    }

    fn framed(topic: &str, payload: &[u8]) -> u64 {
        HEADER + FIXED + topic.len() as u64 + payload.len() as u64
    }

    fn queue_message(e: Error) -> String {
        match e {
            Error::Queue { message, .. } => message,
            other => panic!("not a queue error: {other}"),
        }
    }

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, rep) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(rep, OpenReport::default());
        for i in 0..3 {
            assert_eq!(stored(s.append("a/b/events/line", &payload(i))), i);
        }
        let got = drain(&mut s);
        assert_eq!(got.len(), 3);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.seq, i as u64);
            assert_eq!(r.topic, "a/b/events/line");
            assert_eq!(r.payload, payload(i as u64));
            assert!(r.appended_unix_ms > PLAUSIBLE_UNIX_MS);
        }
        assert_eq!(s.next_unsent().unwrap(), None);
        let st = s.stats();
        assert_eq!((st.depth, st.appended), (3, 3));
        assert_eq!(st.bytes, 3 * framed("a/b/events/line", &payload(0)));
        for i in 0..3 {
            s.ack(i);
        }
        let st = s.stats();
        assert_eq!((st.depth, st.bytes, st.acked), (0, 0, 3));
        assert_eq!(st.oldest_age_ms, None);
        assert!(s.is_empty());
        // appended after everything was handed out: handed out next
        assert_eq!(stored(s.append("t", b"x")), 3);
        assert_eq!(s.next_unsent().unwrap().unwrap().seq, 3);
    }

    #[test]
    fn reopen_keeps_order_and_bytes() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        let mut want = Vec::new();
        for i in 0..20 {
            let topic = format!("p/dev/events/t{}", i % 3);
            stored(s.append(&topic, &payload(i)));
            want.push((i, topic, payload(i)));
        }
        // hand some out (from the cache) and then "kill -9"
        s.next_unsent().unwrap().unwrap();
        s.next_unsent().unwrap().unwrap();
        crash(s);
        let (mut s, rep) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(rep.recovered, 20);
        assert_eq!(rep.torn, 0);
        let got = drain(&mut s);
        let got: Vec<_> = got
            .into_iter()
            .map(|r| (r.seq, r.topic, r.payload))
            .collect();
        assert_eq!(got, want);
        // ack some, clean shutdown, reopen: only the rest
        for i in 0..5 {
            s.ack(i);
        }
        s.sync().unwrap();
        drop(s);
        let (mut s, rep) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(rep.recovered, 15);
        let got = drain(&mut s);
        assert_eq!(got.first().unwrap().seq, 5);
        assert_eq!(got.len(), 15);
        assert_eq!(got[0].payload, payload(5));
    }

    #[test]
    fn out_of_order_acks_and_low_water() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        for i in 0..10 {
            stored(s.append("t", &payload(i)));
        }
        assert_eq!(drain(&mut s).len(), 10);
        for seq in [5, 3, 9, 0, 1, 2] {
            s.ack(seq);
        }
        assert_eq!(s.low_water(), 4);
        assert_eq!(s.stats().depth, 4);
        assert_eq!(s.stats().acked, 6);
        // duplicates and unknown seqs are ignored
        s.ack(3);
        s.ack(0);
        s.ack(1000);
        assert_eq!(s.stats().acked, 6);
        s.ack(4);
        assert_eq!(s.low_water(), 6);
        let (state, partial) = s.ack_state(true);
        assert!(!partial);
        assert_eq!(state.low_water, 6);
        assert_eq!(state.ranges, vec![(9, 10)]);
        // after a clean sync the acked 9 is not sent again
        s.sync().unwrap();
        drop(s);
        let (mut s, rep) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(rep.recovered, 3);
        let seqs: Vec<_> = drain(&mut s).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![6, 7, 8]);
    }

    #[test]
    fn out_of_order_acks_survive_index_compaction() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(SpoolConfig::new(d.path())).unwrap();
        let n = 4 * INDEX_SLACK as u64;
        for i in 0..n {
            stored(s.append("t", &payload(i)));
        }
        // every 4th one stuck, the others acked: compaction of the index must keep the gaps
        for i in (0..n).filter(|i| i % 4 != 0) {
            s.ack(i);
        }
        assert!(s.index.len() < n as usize / 2, "index was compacted");
        assert_eq!(s.stats().depth, n / 4);
        let want: Vec<_> = (0..n).step_by(4).collect();
        let seqs: Vec<_> = drain(&mut s).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, want);
        s.sync().unwrap();
        drop(s);
        let (mut s, rep) = Spool::open(SpoolConfig::new(d.path())).unwrap();
        assert_eq!(rep.recovered, n / 4);
        let seqs: Vec<_> = drain(&mut s).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, want);
    }

    #[test]
    fn rewind_hands_out_unacked_again() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        for i in 0..5 {
            stored(s.append("t", &payload(i)));
        }
        for want in 0..3 {
            assert_eq!(s.next_unsent().unwrap().unwrap().seq, want);
        }
        s.ack(0);
        s.ack(2);
        s.rewind();
        let got = drain(&mut s);
        let seqs: Vec<_> = got.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 3, 4]);
        // handed out again from disk with the same bytes
        assert_eq!(got[0].payload, payload(1));
        assert_eq!(got[1].payload, payload(3));
        // an ack for a record handed out before the rewind still counts
        s.ack(1);
        s.rewind();
        let seqs: Vec<_> = drain(&mut s).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 4]);
    }

    #[test]
    fn reads_from_disk_without_cache() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        s.cache_limit = 0;
        for i in 0..50 {
            stored(s.append("t/x", &payload(i)));
        }
        assert!(s.cache.is_empty());
        let got = drain(&mut s);
        assert_eq!(got.len(), 50);
        for (i, r) in got.iter().enumerate() {
            assert_eq!((r.seq, &r.payload[..]), (i as u64, &payload(i as u64)[..]));
        }
    }

    fn torn_setup(d: &Path) -> (PathBuf, u64) {
        let (mut s, _) = Spool::open(cfg(d)).unwrap();
        for i in 0..10 {
            stored(s.append("t", &payload(i)));
        }
        crash(s);
        let seg = d.join(seg_name(0));
        let len = fs::metadata(&seg).unwrap().len();
        (seg, len)
    }

    fn check_torn(d: &Path, seg: &Path, good_len: u64) {
        let (mut s, rep) = Spool::open(cfg(d)).unwrap();
        assert_eq!(
            rep,
            OpenReport {
                recovered: 9,
                torn: 1,
                lost: 0
            }
        );
        assert_eq!(s.stats().torn, 1);
        assert_eq!(fs::metadata(seg).unwrap().len(), good_len, "truncated");
        let got = drain(&mut s);
        assert_eq!(got.len(), 9);
        for (i, r) in got.iter().enumerate() {
            assert_eq!((r.seq, &r.payload[..]), (i as u64, &payload(i as u64)[..]));
        }
        // appending continues after the last good record
        let a = stored(s.append("t", b"after"));
        assert!(a >= 9);
        crash(s);
        let (mut s, rep) = Spool::open(cfg(d)).unwrap();
        assert_eq!(
            rep,
            OpenReport {
                recovered: 10,
                torn: 0,
                lost: 0
            }
        );
        let got = drain(&mut s);
        assert_eq!(got.last().unwrap().payload, b"after");
        assert_eq!(got.last().unwrap().seq, a);
    }

    #[test]
    fn torn_tail_short() {
        let d = tempfile::tempdir().unwrap();
        let (seg, len) = torn_setup(d.path());
        let one = framed("t", &payload(9));
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        check_torn(d.path(), &seg, len - one);
    }

    #[test]
    fn torn_tail_flipped_byte() {
        let d = tempfile::tempdir().unwrap();
        let (seg, len) = torn_setup(d.path());
        let one = framed("t", &payload(9));
        let mut bytes = fs::read(&seg).unwrap();
        let at = (len - 5) as usize;
        bytes[at] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        check_torn(d.path(), &seg, len - one);
    }

    #[test]
    fn torn_tail_zeros_and_absurd_length() {
        let d = tempfile::tempdir().unwrap();
        let (seg, len) = torn_setup(d.path());
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5, 6])
            .unwrap();
        drop(f);
        let (mut s, rep) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(
            rep,
            OpenReport {
                recovered: 10,
                torn: 1,
                lost: 0
            }
        );
        assert_eq!(fs::metadata(&seg).unwrap().len(), len);
        assert_eq!(drain(&mut s).len(), 10);
        drop(s);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0; 4096]).unwrap();
        drop(f);
        let (_s, rep) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(
            rep,
            OpenReport {
                recovered: 10,
                torn: 1,
                lost: 0
            }
        );
        assert_eq!(fs::metadata(&seg).unwrap().len(), len);
    }

    #[test]
    fn damage_in_older_segment_keeps_the_records_after_it() {
        let d = tempfile::tempdir().unwrap();
        let one = framed("t", &payload(0));
        let c = SpoolConfig {
            segment_bytes: 10 * one,
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c.clone()).unwrap();
        for i in 0..30 {
            stored(s.append("t", &payload(i)));
        }
        crash(s);
        let files = segs(d.path());
        assert_eq!(files.len(), 3);
        // damage record 3 of the first segment (seqs 0..10)
        let first = d.path().join(&files[0].0);
        let mut bytes = fs::read(&first).unwrap();
        bytes[(3 * one + 20) as usize] ^= 1;
        fs::write(&first, &bytes).unwrap();
        let (mut s, rep) = Spool::open(c).unwrap();
        assert_eq!(
            rep,
            OpenReport {
                recovered: 29,
                torn: 1,
                lost: 1
            }
        );
        let seqs: Vec<_> = drain(&mut s).iter().map(|r| r.seq).collect();
        let want: Vec<u64> = (0..3).chain(4..30).collect();
        assert_eq!(seqs, want);
        // the older segment is not truncated
        assert_eq!(fs::metadata(&first).unwrap().len(), 10 * one);
        assert_eq!(stored(s.append("t", b"x")), 30);
    }

    /// `n` records of one size in segments of `per_seg` records, crashed, damaged by `damage`
    /// (given the segment paths and the framed size), reopened: every record whose bytes the
    /// damage did not touch must come back, with its bytes; returns what came back and the report.
    fn damaged_queue(
        n: u64,
        per_seg: u64,
        damage: impl FnOnce(&[PathBuf], u64) -> Vec<(usize, std::ops::Range<u64>)>,
    ) -> (tempfile::TempDir, Vec<u64>, OpenReport) {
        let d = tempfile::tempdir().unwrap();
        let one = framed("t", &payload(0));
        let c = SpoolConfig {
            segment_bytes: per_seg * one,
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c.clone()).unwrap();
        for i in 0..n {
            stored(s.append("t", &payload(i)));
        }
        s.sync().unwrap();
        crash(s);
        let files: Vec<PathBuf> = segs(d.path())
            .iter()
            .map(|(name, _)| d.path().join(name))
            .collect();
        // (segment index, damaged byte range) → the seqs whose bytes it touches
        let hit = damage(&files, one);
        let touched: Vec<u64> = (0..n)
            .filter(|&seq| {
                let (si, at) = (seq / per_seg, (seq % per_seg) * one);
                hit.iter()
                    .any(|(s, r)| *s as u64 == si && r.start < at + one && at < r.end)
            })
            .collect();
        let (mut s, rep) = Spool::open(c.clone()).unwrap();
        let got = drain(&mut s);
        for r in &got {
            assert_eq!(r.payload, payload(r.seq), "seq {} intact", r.seq);
        }
        let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
        let want: Vec<u64> = (0..n).filter(|q| !touched.contains(q)).collect();
        assert_eq!(seqs, want, "every record the damage did not touch");
        assert_eq!(rep.lost, touched.len() as u64, "{rep:?}");
        assert_eq!(rep.recovered, want.len() as u64);
        // the damaged bytes are set aside, and the next open does not count the loss again
        assert!(
            fs::read_dir(d.path().join(DAMAGED_DIR)).unwrap().count() > 0,
            "damaged bytes kept"
        );
        drop(s);
        let (_s, again) = Spool::open(c).unwrap();
        assert_eq!(again.lost, 0, "{again:?}");
        assert_eq!(again.recovered, want.len() as u64);
        (d, seqs, rep)
    }

    fn flip(path: &Path, at: u64, mask: u8) {
        let mut b = fs::read(path).unwrap();
        b[at as usize] ^= mask;
        fs::write(path, b).unwrap();
    }

    #[test]
    fn a_byte_flipped_mid_segment_loses_only_its_record() {
        let (_d, seqs, rep) = damaged_queue(478, 1000, |f, one| {
            let at = 239 * one + 30;
            flip(&f[0], at, 0x10);
            vec![(0, at..at + 1)]
        });
        assert_eq!((seqs.len(), rep.lost, rep.torn), (477, 1, 1));
    }

    #[test]
    fn a_byte_flipped_in_the_first_record_loses_only_it() {
        let (_d, seqs, rep) = damaged_queue(478, 1000, |f, _| {
            flip(&f[0], 12, 0x01);
            vec![(0, 12..13)]
        });
        assert_eq!((seqs.len(), rep.lost), (477, 1));
        assert_eq!(seqs.first(), Some(&1));
    }

    #[test]
    fn a_huge_length_field_loses_only_its_record() {
        let (_d, seqs, rep) = damaged_queue(478, 1000, |f, one| {
            let mut b = fs::read(&f[0]).unwrap();
            let at = (5 * one) as usize;
            b[at..at + 4].copy_from_slice(&0x7fff_ffff_u32.to_le_bytes());
            fs::write(&f[0], b).unwrap();
            vec![(0, 5 * one..5 * one + 4)]
        });
        assert_eq!((seqs.len(), rep.lost), (477, 1));
        // and at the very first record
        let (_d, seqs, rep) = damaged_queue(478, 1000, |f, _| {
            let mut b = fs::read(&f[0]).unwrap();
            b[0..4].copy_from_slice(&0x7fff_ffff_u32.to_le_bytes());
            fs::write(&f[0], b).unwrap();
            vec![(0, 0..4)]
        });
        assert_eq!((seqs.len(), rep.lost), (477, 1));
    }

    #[test]
    fn a_zeroed_block_loses_only_the_records_it_covers() {
        let (_d, seqs, rep) = damaged_queue(478, 1000, |f, _| {
            let mut b = fs::read(&f[0]).unwrap();
            let (from, to) = (8192usize, 8192 + 4096);
            b[from..to].fill(0);
            fs::write(&f[0], b).unwrap();
            vec![(0, from as u64..to as u64)]
        });
        // 4096 bytes over 52-byte records: 79 or 80 records touched
        assert!(seqs.len() >= 478 - 80 && rep.lost >= 79, "{rep:?}");
    }

    #[test]
    fn an_older_segment_damaged_early_keeps_its_later_records() {
        // 1009 records in segments of 1000: damage record 5 of the first
        let (d, seqs, rep) = damaged_queue(1009, 1000, |f, one| {
            let at = 5 * one + 20;
            flip(&f[0], at, 0x04);
            vec![(0, at..at + 1)]
        });
        assert_eq!((seqs.len(), rep.lost), (1008, 1));
        // acknowledging the records before the damage does not delete the segment
        let (mut s, _) = Spool::open(SpoolConfig {
            segment_bytes: 1000 * framed("t", &payload(0)),
            ..cfg(d.path())
        })
        .unwrap();
        for seq in 0..5 {
            s.ack(seq);
        }
        s.sync().unwrap();
        assert_eq!(segs(d.path()).len(), 2);
        assert_eq!(drain(&mut s).len(), 1003);
    }

    #[test]
    fn a_torn_tail_after_damage_is_cut_and_appending_goes_on() {
        let (d, seqs, rep) = damaged_queue(100, 1000, |f, one| {
            let len = fs::metadata(&f[0]).unwrap().len();
            let f0 = OpenOptions::new().write(true).open(&f[0]).unwrap();
            f0.set_len(len - 7).unwrap();
            flip(&f[0], 50 * one + 9, 0x80);
            vec![(0, 99 * one..len), (0, 50 * one + 9..50 * one + 10)]
        });
        assert_eq!(seqs.len(), 98);
        assert_eq!(rep.torn, 2);
        let c = SpoolConfig {
            segment_bytes: 1000 * framed("t", &payload(0)),
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c).unwrap();
        let a = stored(s.append("t", &payload(1000)));
        assert!(a >= 100);
        let got = drain(&mut s);
        assert_eq!(got.len(), 99);
        assert_eq!(got.last().map(|r| r.seq), Some(a));
    }

    #[test]
    fn set_aside_damage_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let seg = d.path().join(seg_name(0));
        let bytes = vec![7u8; 100];
        let mut budget = 150;
        assert!(set_aside(d.path(), &seg, &bytes, 0, 100, &mut budget).is_some());
        assert_eq!(budget, 50);
        // already kept: not written twice
        assert!(set_aside(d.path(), &seg, &bytes, 0, 100, &mut budget).is_some());
        assert_eq!(budget, 50);
        assert!(set_aside(d.path(), &seg, &bytes, 10, 90, &mut budget).is_none());
        assert_eq!(damaged_kept_bytes(d.path()), 100);
    }

    #[cfg(unix)]
    #[test]
    fn queue_files_are_private() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("q");
        let (mut s, _) = Spool::open(cfg(&dir)).unwrap();
        stored(s.append("t", &payload(0)));
        s.sync().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for e in fs::read_dir(&dir).unwrap().flatten() {
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        }
        drop(s);
        // a queue left world-readable by an older version is made private at open
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let seg = dir.join(seg_name(0));
        fs::set_permissions(&seg, fs::Permissions::from_mode(0o644)).unwrap();
        let (_s, _) = Spool::open(cfg(&dir)).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&seg), 0o600);
    }

    #[test]
    fn scanning_random_bytes_is_quick_and_finds_nothing() {
        let mut x = 0x1234_5678_u32;
        let bytes: Vec<u8> = (0..(4 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let t = Instant::now();
        let scan = scan_segment(&bytes, 0, None, None);
        assert!(scan.records.is_empty());
        assert_eq!(scan.damaged, vec![(0, bytes.len() as u64)]);
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    }

    #[test]
    fn segments_roll_and_acked_ones_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        let one = framed("t", &payload(0));
        let c = SpoolConfig {
            segment_bytes: 4 * one,
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c.clone()).unwrap();
        for i in 0..10 {
            stored(s.append("t", &payload(i)));
        }
        let names: Vec<_> = segs(d.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            vec![seg_name(0), seg_name(4), seg_name(8)],
            "named by their first seq"
        );
        assert_eq!(segs(d.path())[0].1, 4 * one);
        // acking the first segment out of order deletes it; the second stays
        for i in [3, 1, 0, 2, 5] {
            s.ack(i);
        }
        s.maintain().unwrap();
        let names: Vec<_> = segs(d.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec![seg_name(4), seg_name(8)]);
        for i in 4..10 {
            s.ack(i);
        }
        s.maintain().unwrap();
        // only the segment being appended to remains
        let names: Vec<_> = segs(d.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec![seg_name(8)]);
        drop(s);
        let (mut s, rep) = Spool::open(c).unwrap();
        assert_eq!(rep.recovered, 0);
        assert_eq!(stored(s.append("t", b"x")), 10);
    }

    #[test]
    fn seq_never_reused_after_reopen() {
        let d = tempfile::tempdir().unwrap();
        let one = framed("t", &payload(0));
        let c = SpoolConfig {
            segment_bytes: 2 * one,
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c.clone()).unwrap();
        for i in 0..5 {
            stored(s.append("t", &payload(i)));
        }
        for i in 0..5 {
            s.ack(i);
        }
        s.sync().unwrap();
        // make every segment go away: the ack file alone carries next_seq
        s.writer = None;
        s.delete_dead_segments();
        drop(s);
        assert!(segs(d.path()).is_empty());
        let (mut s, _) = Spool::open(c.clone()).unwrap();
        assert_eq!(stored(s.append("t", b"a")), 5);
        crash(s);
        // no ack file at all: the segments give it
        fs::remove_file(d.path().join(ACK_FILE)).unwrap();
        let (mut s, rep) = Spool::open(c.clone()).unwrap();
        assert_eq!(rep.recovered, 1);
        assert_eq!(stored(s.append("t", b"b")), 6);
        crash(s);
        // a damaged ack file: ignored (records sent again), seqs still increase
        fs::write(d.path().join(ACK_FILE), b"OCSA garbage").unwrap();
        let (mut s, rep) = Spool::open(c).unwrap();
        assert_eq!(rep.recovered, 2);
        assert_eq!(stored(s.append("t", b"c")), 7);
    }

    #[test]
    fn drop_oldest_at_max_bytes() {
        let d = tempfile::tempdir().unwrap();
        let one = framed("t", &payload(0));
        let c = SpoolConfig {
            max_bytes: 10 * one,
            segment_bytes: 3 * one,
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c).unwrap();
        for i in 0..15 {
            assert_eq!(stored(s.append("t", &payload(i))), i);
        }
        let st = s.stats();
        assert_eq!((st.depth, st.bytes, st.dropped_full), (10, 10 * one, 5));
        // an ack for a dropped seq is ignored
        s.ack(2);
        assert_eq!(s.stats().acked, 0);
        let got = drain(&mut s);
        assert_eq!(got.first().unwrap().seq, 5);
        assert_eq!(got.len(), 10);
        // segments holding only dropped records are deleted
        s.maintain().unwrap();
        assert!(!segs(d.path()).iter().any(|(n, _)| *n == seg_name(0)));
        // a bigger record drops as many as needed
        let big = vec![7u8; (3 * one - 1 - framed("t", b"")) as usize];
        stored(s.append("t", &big));
        let st = s.stats();
        assert_eq!(st.dropped_full, 5 + 3);
        assert!(st.bytes <= 10 * one);
    }

    #[test]
    fn refuse_new_at_max_bytes() {
        let d = tempfile::tempdir().unwrap();
        let one = framed("t", &payload(0));
        let c = SpoolConfig {
            max_bytes: 10 * one,
            when_full: WhenFull::RefuseNew,
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c).unwrap();
        let mut results = Vec::new();
        for i in 0..15 {
            results.push(s.append("t", &payload(i)).unwrap());
        }
        let want: Vec<_> = (0..10)
            .map(Append::Stored)
            .chain(std::iter::repeat_n(Append::Refused, 5))
            .collect();
        assert_eq!(results, want);
        let st = s.stats();
        assert_eq!((st.depth, st.refused_full, st.dropped_full), (10, 5, 0));
        s.ack(4);
        assert_eq!(s.append("t", &payload(99)).unwrap(), Append::Stored(10));
        assert_eq!(s.append("t", &payload(99)).unwrap(), Append::Refused);
        assert_eq!(s.stats().refused_full, 6);
    }

    #[test]
    fn record_larger_than_max_bytes_is_refused() {
        let d = tempfile::tempdir().unwrap();
        for when_full in [WhenFull::DropOldest, WhenFull::RefuseNew] {
            let dir = d.path().join(when_full.as_str());
            let c = SpoolConfig {
                max_bytes: 200,
                when_full,
                ..cfg(&dir)
            };
            let (mut s, _) = Spool::open(c).unwrap();
            stored(s.append("t", b"small"));
            let msg = queue_message(s.append("t", &[1u8; 300]).unwrap_err());
            assert!(msg.contains("larger than the whole queue"), "{msg}");
            let st = s.stats();
            assert_eq!((st.depth, st.refused_full, st.dropped_full), (1, 1, 0));
            assert_eq!(stored(s.append("t", b"small again")), 1);
            assert_eq!(drain(&mut s).len(), 2);
        }
    }

    #[test]
    fn max_age_expires_in_maintain_and_when_handing_out() {
        let d = tempfile::tempdir().unwrap();
        let c = SpoolConfig {
            max_age: Duration::from_secs(60),
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c).unwrap();
        for i in 0..3 {
            stored(s.append("t", &payload(i)));
        }
        s.clock_skew_ms = 61_000;
        stored(s.append("t", &payload(3)));
        assert_eq!(s.stats().oldest_age_ms.map(|a| a >= 61_000), Some(true));
        s.maintain().unwrap();
        let st = s.stats();
        assert_eq!((st.depth, st.expired), (1, 3));
        assert_eq!(s.next_unsent().unwrap().unwrap().seq, 3);
        // when handing out, without maintain
        stored(s.append("t", &payload(4)));
        stored(s.append("t", &payload(5)));
        s.rewind();
        s.clock_skew_ms += 61_000;
        assert_eq!(s.next_unsent().unwrap(), None);
        assert_eq!(s.stats().expired, 6);
        assert_eq!(s.stats().depth, 0);
    }

    #[test]
    fn second_open_is_refused_by_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let (s, _) = Spool::open(cfg(d.path())).unwrap();
        let msg = queue_message(Spool::open(cfg(d.path())).unwrap_err());
        assert!(msg.contains("locked"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        drop(s);
        Spool::open(cfg(d.path())).unwrap();
    }

    #[test]
    fn dir_that_is_a_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("queue");
        fs::write(&path, b"not a dir").unwrap();
        let err = Spool::open(cfg(&path)).unwrap_err();
        assert!(matches!(&err, Error::Queue { dir, .. } if *dir == path));
        let msg = queue_message(err);
        assert!(msg.contains("not a directory"), "{msg}");
        // and a dir under a file cannot be created
        let msg = queue_message(Spool::open(cfg(&path.join("sub"))).unwrap_err());
        assert!(msg.contains("cannot"), "{msg}");
    }

    #[test]
    fn creates_missing_dir() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a/b/queue");
        let (mut s, _) = Spool::open(cfg(&path)).unwrap();
        stored(s.append("t", b"x"));
        assert!(path.join(seg_name(0)).is_file());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_keeps_the_record_in_memory_and_the_queue_consistent() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        stored(s.append("t", &payload(0)));
        stored(s.append("t", &payload(1)));
        // the disk fills up, and nothing acknowledged can be freed
        s.writer = Some(OpenOptions::new().write(true).open("/dev/full").unwrap());
        let v = match s.append("t", &payload(2)).unwrap() {
            Append::Volatile(seq) => seq,
            other => panic!("expected a record held in memory, got {other:?}"),
        };
        let st = s.stats();
        assert_eq!(
            (st.depth, st.appended, st.not_durable, st.volatile_depth),
            (3, 3, 1, 1)
        );
        assert!(st.write_errors >= 1);
        // space again: appending goes on, in a new segment
        let a = stored(s.append("t", &payload(3)));
        assert!(a > v);
        let got: Vec<_> = drain(&mut s)
            .into_iter()
            .map(|r| (r.seq, r.payload))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, payload(0)),
                (1, payload(1)),
                (v, payload(2)),
                (a, payload(3))
            ]
        );
        // handed out again after a reconnect, until acknowledged
        s.rewind();
        assert_eq!(drain(&mut s).len(), 4);
        s.ack(v);
        assert_eq!(s.stats().volatile_depth, 0);
        s.rewind();
        assert_eq!(drain(&mut s).len(), 3);
        // the memory buffer is bounded: past it a failed write is an error
        s.writer = Some(OpenOptions::new().write(true).open("/dev/full").unwrap());
        let mut held = 0;
        let err = loop {
            s.writer = Some(OpenOptions::new().write(true).open("/dev/full").unwrap());
            match s.append("t", &payload(9)) {
                Ok(Append::Volatile(_)) => held += 1,
                Ok(other) => panic!("{other:?}"),
                Err(e) => break queue_message(e),
            }
            assert!(held <= VOLATILE_RECORDS);
        };
        assert!(err.contains("disk is full"), "{err}");
        assert!(held > 100, "{held}");
        // what is on disk survives a crash; what was held in memory does not
        crash(s);
        let (mut s, rep) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(rep.recovered, 3);
        let got = drain(&mut s);
        assert_eq!(got[2].payload, payload(3));
    }

    #[test]
    fn a_full_disk_frees_the_acknowledged_active_segment_and_retries() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        for i in 0..20 {
            let seq = stored(s.append("t", &payload(i)));
            s.ack(seq);
        }
        // the active segment holds only acknowledged records; the disk is full
        let seg = d.path().join(seg_name(0));
        assert!(seg.exists());
        s.writer = Some(OpenOptions::new().write(true).open("/dev/full").unwrap());
        // the failed write frees it, and the retry goes to a new segment: stored, durable
        let a = stored(s.append("t", &payload(20)));
        assert!(!seg.exists(), "the acknowledged segment was deleted");
        assert_eq!(s.stats().not_durable, 0);
        assert!(s.stats().reclaimed >= 1);
        assert_eq!(
            drain(&mut s).iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![a]
        );
    }

    #[test]
    fn acknowledged_records_leave_the_disk() {
        let d = tempfile::tempdir().unwrap();
        let one = framed("t", &payload(0));
        let c = SpoolConfig {
            fsync_interval: Duration::ZERO,
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c.clone()).unwrap();
        // while the broker keeps up, a fully acknowledged active segment of 64 KiB or more goes
        let n = RECLAIM_ACTIVE_BYTES / one + 2;
        for i in 0..n {
            let seq = stored(s.append("t", &payload(i)));
            s.ack(seq);
        }
        s.maintain().unwrap();
        assert!(segs(d.path()).is_empty(), "{:?}", segs(d.path()));
        // at a clean stop, nothing acknowledged stays: 10 appended, 0..5 and 7 acknowledged
        for i in 0..10 {
            stored(s.append("t", &payload(i)));
        }
        for seq in (n..n + 5).chain([n + 7]) {
            s.ack(seq);
        }
        s.close().unwrap();
        let on_disk: u64 = segs(d.path()).iter().map(|(_, len)| len).sum();
        assert_eq!(on_disk, 4 * one, "{:?}", segs(d.path()));
        drop(s);
        let (mut s, rep) = Spool::open(c).unwrap();
        assert_eq!(rep.recovered, 4);
        let seqs: Vec<u64> = drain(&mut s).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![n + 5, n + 6, n + 8, n + 9]);
    }

    #[test]
    fn a_failed_fsync_is_never_retried_into_a_success() {
        let d = tempfile::tempdir().unwrap();
        let c = SpoolConfig {
            fsync_interval: Duration::from_secs(3600),
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c).unwrap();
        for i in 0..3 {
            stored(s.append("t", &payload(i)));
        }
        assert_eq!(s.stats().unsynced, 3);
        s.fail_fsync = true;
        let msg = queue_message(s.sync().unwrap_err());
        assert!(
            msg.contains("3 event(s) written since the last successful fsync"),
            "{msg}"
        );
        let st = s.stats();
        assert_eq!((st.not_durable, st.unsynced), (3, 0));
        assert!(st.write_errors >= 1);
        // the disk recovers: a second fsync does not pretend to cover the three
        s.fail_fsync = false;
        s.sync().unwrap();
        assert_eq!(s.stats().not_durable, 3);
        // they are still delivered, and new records go to a new segment whose fsync counts
        let a = stored(s.append("t", &payload(3)));
        assert_eq!(segs(d.path()).len(), 2);
        s.sync().unwrap();
        assert_eq!(s.stats().unsynced, 0);
        let seqs: Vec<u64> = drain(&mut s).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, a]);
    }

    #[test]
    fn partial_write_reads_as_torn() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        stored(s.append("t", &payload(0)));
        // a write cut short that could not be undone
        let seg = d.path().join(seg_name(0));
        let mut buf = Vec::new();
        encode(&mut buf, 1, 0, "t", &payload(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&buf[..buf.len() / 2]).unwrap();
        s.writer = Some(File::open(&seg).unwrap()); // read-only: the next write fails
        assert!(matches!(
            s.append("t", &payload(1)),
            Ok(Append::Volatile(_))
        ));
        let a = stored(s.append("t", &payload(2)));
        crash(s);
        let (mut s, rep) = Spool::open(cfg(d.path())).unwrap();
        // the record held in memory died with the process: counted as lost beside the damage its
        // failed write left (the failed write's own seq is not: it was never accepted)
        assert_eq!(
            rep,
            OpenReport {
                recovered: 2,
                torn: 1,
                lost: 1
            }
        );
        let got: Vec<_> = drain(&mut s)
            .into_iter()
            .map(|r| (r.seq, r.payload))
            .collect();
        assert_eq!(got, vec![(0, payload(0)), (a, payload(2))]);
    }

    #[test]
    fn partly_acked_segments_are_compacted() {
        let d = tempfile::tempdir().unwrap();
        let one = framed("t", &payload(0));
        let c = SpoolConfig {
            max_bytes: 20 * one,
            segment_bytes: 5 * one,
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c.clone()).unwrap();
        // every 10th record is never acked
        for i in 0..400 {
            stored(s.append("t", &payload(i)));
            if i % 10 != 0 {
                s.ack(i);
            }
            s.maintain().unwrap();
        }
        let disk: u64 = segs(d.path()).iter().map(|(_, l)| l).sum();
        assert!(disk <= 2 * 20 * one + 2 * 5 * one, "disk {disk}");
        // bounded by max_bytes: drop_oldest removed the oldest stuck ones (making room for a new
        // record before its ack)
        let depth = s.stats().depth;
        assert!((19..=20).contains(&depth), "{depth}");
        let want: Vec<_> = (400 - 10 * depth..400).step_by(10).collect();
        let seqs: Vec<_> = drain(&mut s).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, want);
        crash(s);
        let (mut s, rep) = Spool::open(c).unwrap();
        assert_eq!(rep.torn, 0);
        let got = drain(&mut s);
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
        assert!(got.iter().all(|r| r.payload == payload(r.seq)));
    }

    #[test]
    fn crash_resends_recent_acks_at_least_once() {
        let d = tempfile::tempdir().unwrap();
        let c = SpoolConfig {
            fsync_interval: Duration::from_secs(3600),
            ..cfg(d.path())
        };
        let (mut s, _) = Spool::open(c.clone()).unwrap();
        for i in 0..4 {
            stored(s.append("t", &payload(i)));
        }
        s.ack(0);
        s.ack(1);
        s.maintain().unwrap(); // not due: nothing persisted
        crash(s);
        let (mut s, rep) = Spool::open(c).unwrap();
        assert_eq!(rep.recovered, 4);
        assert_eq!(drain(&mut s)[0].payload, payload(0));
    }

    #[test]
    fn spool_is_send() {
        fn send<T: Send>() {}
        send::<Spool>();
    }

    /// Throughput of append + next_unsent + ack with the default fsync interval:
    /// `cargo test -p ocellus --lib --release spool::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(SpoolConfig::new(d.path())).unwrap();
        let body = vec![b'x'; 300];
        let n = 200_000u64;
        let t = Instant::now();
        let mut last = Instant::now();
        let mut inflight = VecDeque::new();
        for _ in 0..n {
            stored(s.append("ocellus/cam1/events/line_crossing", &body));
            while let Some(r) = s.next_unsent().unwrap() {
                inflight.push_back(r.seq);
            }
            // acks lag a window behind, a little out of order
            while inflight.len() > 100 {
                let a = inflight.pop_front().unwrap();
                let b = inflight.pop_front().unwrap();
                s.ack(b);
                s.ack(a);
            }
            if last.elapsed() >= Duration::from_millis(50) {
                s.maintain().unwrap();
                last = Instant::now();
            }
        }
        for seq in inflight {
            s.ack(seq);
        }
        s.sync().unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "live: {n} records of 300 bytes: {:.0} records/s ({:.1} MB/s); {:?}",
            n as f64 / secs,
            n as f64 * 300.0 / secs / 1e6,
            s.stats()
        );
        assert!(s.is_empty());

        // a backlog (broker away; 150k × 353 bytes fit in the default 64 MiB), then drained from
        // disk after a reopen
        let n = 150_000u64;
        let t = Instant::now();
        for _ in 0..n {
            stored(s.append("ocellus/cam1/events/line_crossing", &body));
            s.maintain().unwrap();
        }
        let append_secs = t.elapsed().as_secs_f64();
        s.sync().unwrap();
        drop(s);
        let t = Instant::now();
        let (mut s, rep) = Spool::open(SpoolConfig::new(d.path())).unwrap();
        let open_secs = t.elapsed().as_secs_f64();
        assert_eq!(rep.recovered, n);
        let t = Instant::now();
        while let Some(r) = s.next_unsent().unwrap() {
            s.ack(r.seq);
            s.maintain().unwrap();
        }
        let drain_secs = t.elapsed().as_secs_f64();
        println!(
            "backlog: append {:.0} records/s; reopen {n} records in {:.0} ms; drain from disk \
             {:.0} records/s",
            n as f64 / append_secs,
            open_secs * 1e3,
            n as f64 / drain_secs
        );
        assert!(s.is_empty());
    }
}
