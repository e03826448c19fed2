//! The bytes on disk: segment records and the `ack` file (documented in the [module docs](super)).

/// `len u32 | crc32 u32`.
pub(super) const HEADER: u64 = 8;

/// `seq u64 | appended_unix_ms u64 | topic_len u16`.
pub(super) const FIXED: u64 = 18;

const SEG_EXT: &str = "seg";

pub(super) const ACK_FILE: &str = "ack";

pub(super) const ACK_TMP: &str = "ack.tmp";

const ACK_MAGIC: &[u8; 4] = b"OCSA";

const ACK_VERSION: u32 = 1;

/// magic, version, low_water, next_seq, n.
const ACK_HEAD: usize = 4 + 4 + 8 + 8 + 4;

pub(super) fn seg_name(base: u64) -> String {
    format!("{base:020}.{SEG_EXT}")
}

pub(super) fn parse_seg_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub(super) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(super) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A record's body (after `len | crc`), decoded.
pub(super) struct Body<'a> {
    pub(super) seq: u64,
    pub(super) appended_ms: u64,
    pub(super) topic: &'a str,
    pub(super) payload: &'a [u8],
}

pub(super) fn parse_body(body: &[u8]) -> Option<Body<'_>> {
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
pub(super) fn encode(buf: &mut Vec<u8>, seq: u64, appended_ms: u64, topic: &str, payload: &[u8]) {
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

/// The decoded `ack` file.
#[derive(Debug, Default)]
pub(super) struct AckState {
    pub(super) low_water: u64,
    pub(super) next_seq: u64,
    pub(super) ranges: Vec<(u64, u64)>,
}

impl AckState {
    /// Whether `seq` is acknowledged or removed.
    pub(super) fn covers(&self, seq: u64) -> bool {
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
    pub(super) fn unacked_in(&self, a: u64, b: u64) -> u64 {
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

pub(super) fn encode_ack(state: &AckState) -> Vec<u8> {
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

pub(super) fn decode_ack(b: &[u8]) -> Option<AckState> {
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
