//! The queue's public operations: append, hand out, acknowledge, rewind, and its counters.

use std::time::{SystemTime, UNIX_EPOCH};

use super::files::qerr;
use super::format::{FIXED, HEADER};
use super::{Append, MAX_RECORDS, Record, Spool, SpoolConfig, SpoolStats, WhenFull, Why};
use crate::error::Result;

/// Removed entries tolerated inside the index before it is compacted.
pub(super) const INDEX_SLACK: usize = 1024;

/// 2020-01-01T00:00:00Z: older stamps come from an unset clock and are not expired by age.
pub(super) const PLAUSIBLE_UNIX_MS: u64 = 1_577_836_800_000;

impl Spool {
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

    pub(super) fn now_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        wall.saturating_add(self.clock_skew_ms)
    }

    pub(super) fn is_expired(&self, appended_ms: u64, now_ms: u64) -> bool {
        appended_ms >= PLAUSIBLE_UNIX_MS
            && u128::from(now_ms.saturating_sub(appended_ms)) > self.cfg.max_age.as_millis()
    }

    /// Every seq below it is acknowledged or removed.
    pub(super) fn low_water(&self) -> u64 {
        self.index.front().map_or(self.next_seq, |e| e.seq)
    }

    pub(super) fn remove_at(&mut self, i: usize, why: Why) {
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
}
