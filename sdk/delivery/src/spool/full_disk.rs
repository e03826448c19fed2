//! When a write fails (a full disk): freeing what is acknowledged, and holding records in memory.

use std::fs;
use std::time::{Duration, Instant};

use super::{Entry, Record, Spool};

/// Records held in memory when the disk fails
/// ([`Append::Volatile`](super::Append::Volatile)): at most this many bytes…
const VOLATILE_BYTES: usize = 1 << 20;

/// …and this many records.
pub(super) const VOLATILE_RECORDS: usize = 4096;

impl Spool {
    /// Keep a record whose disk write failed in the memory buffer, if it has room.
    pub(super) fn hold_in_memory(
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
    pub(super) fn reclaim_space(&mut self) -> bool {
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

    /// A write into the current segment failed: undo the partial write, or stop appending to that
    /// segment so the partial record reads as a damaged tail at the next open.
    pub(super) fn write_failed(&mut self) {
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
}
