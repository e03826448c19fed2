//! Reading a segment back at open: every record that checks out, resynchronising past damage, and
//! the damaged bytes set aside for inspection.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::files::{Private, private_file};
use super::format::{FIXED, HEADER, le_u32, le_u64, parse_body};

/// Smallest framed record: header and fixed fields, empty topic and payload.
const MIN_RECORD: u64 = HEADER + FIXED;

/// Most of one segment file read at open (far above `segment_bytes`; bytes beyond are damage).
pub(super) const MAX_SCAN_BYTES: u64 = 256 << 20;

/// Where damaged bytes found at open are set aside for inspection.
pub(super) const DAMAGED_DIR: &str = "damaged";

/// Most bytes kept in `damaged/` (older damage is not replaced; more is reported, not kept).
pub(super) const MAX_DAMAGED_KEPT: u64 = 4 << 20;

/// A record found by [`scan_segment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) seq: u64,
    pub(super) appended_ms: u64,
    pub(super) offset: u64,
    pub(super) size: u64,
}

/// What [`scan_segment`] found in one segment's bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    /// Every record that checks out (length, crc, body, seq order), in file order.
    pub(super) records: Vec<Found>,
    /// Byte ranges `[start, end)` that are not part of any such record.
    pub(super) damaged: Vec<(u64, u64)>,
}

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
pub(super) fn scan_segment(
    bytes: &[u8],
    base: u64,
    prev: Option<u64>,
    next_base: Option<u64>,
) -> Scan {
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

/// Bytes already kept in `damaged/`.
pub(super) fn damaged_kept_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir.join(DAMAGED_DIR)).map_or(0, |rd| {
        rd.flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Copy `bytes[from..to]` of segment `seg` to `damaged/<segment>.<from>-<to>.bin`, within
/// `budget`; the path written, or `None` (already kept, no budget left, or not writable).
pub(super) fn set_aside(
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
