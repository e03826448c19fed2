//! Opening a queue: the directory, the lock, every segment scanned and indexed, a torn tail cut.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::files::{io_message, is_full, make_private, prepare_dir, probe, qerr, take_lock};
use super::format::{ACK_FILE, AckState, decode_ack, parse_seg_name};
use super::scan::{
    MAX_DAMAGED_KEPT, MAX_SCAN_BYTES, Scan, damaged_kept_bytes, scan_segment, set_aside,
};
use super::{Entry, MAX_RECORDS, OpenReport, Segment, Spool, SpoolConfig, SpoolStats, Why};
use crate::error::Result;

/// Recently appended records kept in memory until handed out.
const CACHE_BYTES: usize = 2 << 20;

/// What [`Spool::load`] carries from one segment to the next.
struct Loader<'a> {
    ack: &'a AckState,
    /// The last intact seq found so far.
    last_seq: Option<u64>,
    /// Bytes `damaged/` may still take.
    kept_budget: u64,
}

/// One segment file as [`Spool::load`] meets it.
struct SegFile<'a> {
    base: u64,
    path: &'a Path,
    /// The next segment's base; `None`: this is the newest segment.
    next_base: Option<u64>,
    /// The last intact seq before this segment.
    prev: Option<u64>,
}

/// A segment file's bytes, read for the scan.
struct SegBytes {
    bytes: Vec<u8>,
    /// The file's length.
    len: u64,
    /// The bytes read: at most [`MAX_SCAN_BYTES`]; past them is damage, and never cut.
    take: u64,
}

impl Spool {
    /// Open (or create) the queue in `cfg.dir`.
    ///
    /// Errors ([`Error::Queue`](crate::Error::Queue)): the directory cannot be created, is a
    /// file, is not writable (a test file is created, written and fsynced), is locked by another
    /// process, or a segment cannot be read. Damaged records are not errors: they are skipped and
    /// counted.
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
        let names = list_segments(&dir)?;
        let ack = read_ack(&dir)?;
        let mut spool = Spool::unloaded(cfg, lock, write_errors);
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

    /// An empty queue holding the directory's lock, before [`Spool::load`].
    fn unloaded(cfg: SpoolConfig, lock: File, write_errors: u64) -> Spool {
        Spool {
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
        }
    }

    /// Read every segment, build the index, resynchronise past damage (keeping every intact record,
    /// setting the damaged bytes aside), truncate a torn tail, pick the segment to append to.
    fn load(&mut self, names: &[(u64, PathBuf)], ack: &AckState) -> Result<()> {
        let mut loader = Loader {
            ack,
            last_seq: None,
            kept_budget: MAX_DAMAGED_KEPT.saturating_sub(damaged_kept_bytes(&self.cfg.dir)),
        };
        // only the newest segment can be appended to
        let mut appendable = false;
        for (k, (base, path)) in names.iter().enumerate() {
            let file = SegFile {
                base: *base,
                path,
                next_base: names.get(k + 1).map(|n| n.0),
                prev: loader.last_seq,
            };
            appendable = self.load_segment(&mut loader, &file)?;
        }
        let max_name = names.last().map(|n| n.0);
        self.next_seq = [
            ack.next_seq,
            ack.low_water,
            loader.last_seq.map_or(0, |s| s.saturating_add(1)),
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
                        &self.cfg.dir,
                        io_message("opening the newest segment for writing", &e),
                    )
                })?;
            self.writer = Some(f);
        }
        Ok(())
    }

    /// Scan one segment, index its unacknowledged records and account for its damage; `true`:
    /// it is the newest segment and new records may be appended to it.
    fn load_segment(&mut self, loader: &mut Loader<'_>, f: &SegFile<'_>) -> Result<bool> {
        let is_last = f.next_base.is_none();
        let data = read_segment(&self.cfg.dir, f.path)?;
        let mut scan = scan_segment(&data.bytes, f.base, f.prev, f.next_base);
        if data.len > data.take {
            scan.damaged.push((data.take, data.len));
        }
        let mut seg = Segment {
            base: f.base,
            path: f.path.to_path_buf(),
            file_len: data.len,
            live: 0,
            live_bytes: 0,
            reader: None,
            delete_warned: false,
        };
        for r in &scan.records {
            if !loader.ack.covers(r.seq) {
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
            loader.last_seq = Some(r.seq);
        }
        let tail_from = scan.damaged.last().filter(|d| d.1 >= data.len).map(|d| d.0);
        let scanned_all = data.len <= data.take;
        let mut appendable = is_last && scanned_all;
        for &damage in &scan.damaged {
            self.count_damage(loader, f, &scan, &data.bytes, damage);
        }
        // (a file larger than what was scanned is never cut: its end was not read)
        if let (true, Some(cut_at), true) = (is_last, tail_from, scanned_all) {
            appendable = self.cut_torn_tail(&mut seg, cut_at);
        }
        self.live_count += seg.live;
        self.live_bytes += seg.live_bytes;
        self.disk_bytes += seg.file_len;
        self.segments.push_back(seg);
        Ok(appendable)
    }

    /// Count one damaged place `[from, to)` of a segment: the unacknowledged records it may have
    /// held are lost; its bytes are set aside for inspection (within the budget).
    fn count_damage(
        &mut self,
        loader: &mut Loader<'_>,
        f: &SegFile<'_>,
        scan: &Scan,
        bytes: &[u8],
        (from, to): (u64, u64),
    ) {
        let ack = loader.ack;
        // the records the damage may have held: between the good ones around it
        let i = scan.records.partition_point(|r| r.offset < from);
        let before = i
            .checked_sub(1)
            .and_then(|j| scan.records.get(j))
            .map(|r| r.seq)
            .or(f.prev);
        let after = match scan.records.get(i) {
            Some(r) => r.seq,
            None if f.next_base.is_none() => ack.next_seq.max(before.map_or(f.base, |b| b + 1)),
            None => f.next_base.unwrap_or(0),
        };
        let first = before.map_or(f.base, |b| b.saturating_add(1)).max(f.base);
        let lost = ack.unacked_in(first, after);
        self.counters.torn += 1;
        self.counters.lost += lost;
        let dir = &self.cfg.dir;
        let kept = set_aside(dir, f.path, bytes, from, to, &mut loader.kept_budget);
        let intact_after = scan.records.len() - i;
        tracing::warn!(
            "event queue {}: {} is damaged at bytes {from}..{to}; {intact_after} intact \
             record(s) after it kept, {lost} unacknowledged record(s) lost{}",
            dir.display(),
            f.path.display(),
            match &kept {
                Some(p) => format!("; the damaged bytes are in {}", p.display()),
                None => String::new(),
            }
        );
    }

    /// A torn tail of the newest segment: nothing intact after `cut_at`, so the file is cut there
    /// and appending continues after the last good record. `false`: it could not be cut, and new
    /// records go to a new segment.
    fn cut_torn_tail(&self, seg: &mut Segment, cut_at: u64) -> bool {
        let cut = OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .and_then(|f| f.set_len(cut_at).and_then(|()| f.sync_data()));
        match cut {
            Ok(()) => {
                seg.file_len = cut_at;
                true
            }
            Err(e) => {
                tracing::warn!(
                    "event queue {}: {} cannot be truncated at its torn tail ({e}); new \
                     events go to a new segment",
                    self.cfg.dir.display(),
                    seg.path.display()
                );
                false
            }
        }
    }
}

/// The segment files in `dir`, by base; leftover `*.tmp` files (an interrupted rewrite) are
/// removed, and files left world-readable by an older version are made private.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries =
        fs::read_dir(dir).map_err(|e| qerr(dir, format!("cannot list the directory ({e})")))?;
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
    Ok(names)
}

/// The persisted acknowledgement position; a missing or damaged `ack` file is an empty one
/// (records are then sent again, never lost).
fn read_ack(dir: &Path) -> Result<AckState> {
    match fs::read(dir.join(ACK_FILE)) {
        Ok(bytes) => match decode_ack(&bytes) {
            Some(a) => Ok(a),
            None => {
                tracing::warn!(
                    "event queue {}: the `ack` file is damaged; unacknowledged and recently \
                     acknowledged records are sent again",
                    dir.display()
                );
                Ok(AckState::default())
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AckState::default()),
        Err(e) => Err(qerr(dir, format!("cannot read `ack` ({e})"))),
    }
}

/// Read a segment file for the scan (at most [`MAX_SCAN_BYTES`] of it).
fn read_segment(dir: &Path, path: &Path) -> Result<SegBytes> {
    let read_err = |e: io::Error| {
        qerr(
            dir,
            format!(
                "cannot read {} ({e}); the queue files must be readable and writable by this user",
                path.display()
            ),
        )
    };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let take = len.min(MAX_SCAN_BYTES);
    let mut bytes = Vec::with_capacity(take as usize);
    file.take(take).read_to_end(&mut bytes).map_err(read_err)?;
    Ok(SegBytes { bytes, len, take })
}
