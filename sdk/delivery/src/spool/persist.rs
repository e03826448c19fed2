//! Durability: fsync of segment data and of the directory, and the persisted acknowledgement
//! position. [`Spool::maintain`] runs it on a schedule (the publisher's queue thread).

use std::fs;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::files::{io_message, private_file, qerr, sync_dir};
use super::format::{ACK_FILE, ACK_TMP, AckState, encode_ack};
use super::segments::RECLAIM_ACTIVE_BYTES;
use super::{Spool, Why};
use crate::error::Result;

/// Out-of-order ranges written by the periodic persist (all of them at `sync`).
const PERIODIC_RANGES: usize = 4096;

impl Spool {
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

    /// fdatasync the active segment. A failure is final for the records it covered: Linux
    /// reports a writeback error once and marks the pages clean, so a second fsync would succeed
    /// without them on disk (PostgreSQL's "fsyncgate"). So they are counted as not durable, the
    /// segment is sealed (later records go to a new file, whose fsync means something again), and
    /// the fsync is never retried as if it could still cover them.
    pub(super) fn sync_writer(&mut self, what: &str) -> Result<()> {
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

    pub(super) fn fsync_if_due(&mut self, force: bool) -> Result<()> {
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
    pub(super) fn ack_state(&self, full: bool) -> (AckState, bool) {
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
    pub(super) fn write_ack(&mut self, full: bool) -> Result<()> {
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
}
