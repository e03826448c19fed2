//! Segment files: appending to the active one, reading records back, deleting and rewriting
//! the ones whose records are acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use super::files::{Private, io_message, private_file, qerr, read_full, sync_dir};
use super::format::{HEADER, encode, le_u32, parse_body, seg_name};
use super::{Entry, Record, Segment, Spool};
use crate::error::Result;

/// Wait after a failed segment rewrite (a full disk) before trying again.
const COMPACT_RETRY: Duration = Duration::from_secs(10);

/// A fully acknowledged active segment at least this large is deleted (and a new one started),
/// so acknowledged events do not hold disk space while the broker keeps up.
pub(super) const RECLAIM_ACTIVE_BYTES: u64 = 64 << 10;

/// Segment size while the disk is short of space (a minute after a failed write).
const TIGHT_SEGMENT_BYTES: u64 = 8 << 10;

impl Spool {
    /// Write one record to the active segment (starting one if needed) and index it.
    pub(super) fn write_disk(
        &mut self,
        topic: &str,
        payload: &[u8],
        size: u64,
        now_ms: u64,
    ) -> Result<u64> {
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

    /// Stop appending to the current segment (fsync it first).
    pub(super) fn seal_writer(&mut self) {
        if let Err(e) = self.sync_writer("fsync of a full segment") {
            tracing::warn!("{e}");
        }
        self.writer = None;
    }

    /// The segment holding `seq`: the last one whose base is ≤ seq.
    pub(super) fn seg_idx(&self, seq: u64) -> Option<usize> {
        self.segments
            .partition_point(|s| s.base <= seq)
            .checked_sub(1)
    }

    /// Read one record back from its segment; `Ok(None)`: it is not intact.
    pub(super) fn read_record(&mut self, e: &Entry) -> Result<Option<Record>> {
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

    /// Delete the active segment if every record in it is acknowledged and it holds at least
    /// `min_bytes`; the next append starts a new one.
    pub(super) fn reclaim_active(&mut self, min_bytes: u64) -> bool {
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

    /// Delete segments with nothing unacknowledged left (not the one being appended to). Call only
    /// right after the ack position was persisted.
    pub(super) fn delete_dead_segments(&mut self) {
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
    pub(super) fn compact_if_needed(&mut self) -> Result<()> {
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

    pub(super) fn compact(&mut self, si: usize) -> io::Result<()> {
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
