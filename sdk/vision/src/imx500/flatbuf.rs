//! Just enough FlatBuffers for the IMX500's `apParams` descriptor: a bounds-checked reader of
//! tables, scalars, strings and vectors of tables, and a writer that lays a table tree out
//! front to back (every offset points forward, as the format requires).
//!
//! Layout facts (from the FlatBuffers binary format): a buffer starts with a `u32` offset to the
//! root table; a table starts with an `i32` distance back to its vtable; a vtable is `u16` vtable
//! length, `u16` table length, then one `u16` offset per field (0: absent, the default applies);
//! strings and vectors are a `u32` length followed by the items, and an offset field holds a `u32`
//! distance forward from where it is stored. Everything is little-endian.

use super::format::TensorError;

/// A table in a buffer, with its vtable located and checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

fn bad(what: &str) -> TensorError {
    TensorError::ApParams(what.to_owned())
}

fn read<const N: usize>(buf: &[u8], pos: usize, what: &str) -> Result<[u8; N], TensorError> {
    pos.checked_add(N)
        .and_then(|end| buf.get(pos..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| {
            bad(&format!(
                "{what} at byte {pos} runs past the end ({} bytes)",
                buf.len()
            ))
        })
}

fn u32_at(buf: &[u8], pos: usize, what: &str) -> Result<u32, TensorError> {
    read::<4>(buf, pos, what).map(u32::from_le_bytes)
}

/// Follow the `u32` forward offset stored at `pos`.
fn follow(buf: &[u8], pos: usize, what: &str) -> Result<usize, TensorError> {
    let off = u32_at(buf, pos, what)? as usize;
    let to = pos
        .checked_add(off)
        .filter(|&to| to < buf.len())
        .ok_or_else(|| {
            bad(&format!(
                "{what}: offset {off} at byte {pos} points outside"
            ))
        })?;
    Ok(to)
}

impl<'a> Table<'a> {
    /// The root table of `buf`.
    pub(super) fn root(buf: &'a [u8]) -> Result<Table<'a>, TensorError> {
        let pos = follow(buf, 0, "root offset")?;
        Table::at(buf, pos, "root table")
    }

    fn at(buf: &'a [u8], pos: usize, what: &str) -> Result<Table<'a>, TensorError> {
        let back = i32::from_le_bytes(read::<4>(buf, pos, what)?);
        let vtable = i64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_sub(i64::from(back)))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| bad(&format!("{what}: its vtable lies before the buffer")))?;
        let vtable_len = usize::from(u16::from_le_bytes(read::<2>(buf, vtable, what)?));
        let table_len = usize::from(u16::from_le_bytes(read::<2>(
            buf,
            vtable.saturating_add(2),
            what,
        )?));
        if vtable_len < 4 || vtable_len % 2 != 0 {
            return Err(bad(&format!("{what}: vtable length {vtable_len}")));
        }
        if vtable.saturating_add(vtable_len) > buf.len()
            || pos.saturating_add(table_len) > buf.len()
        {
            return Err(bad(&format!("{what}: runs past the end")));
        }
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    /// Where field `slot` (the generated code's `VT_…` value: 4, 6, 8, …) is stored, if present.
    fn field(&self, slot: usize) -> Result<Option<usize>, TensorError> {
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let off = u16::from_le_bytes(read::<2>(self.buf, self.vtable + slot, "vtable entry")?);
        Ok((off != 0).then(|| self.pos + usize::from(off)))
    }

    /// A `u8` field, or its default (0).
    pub(super) fn u8(&self, slot: usize) -> Result<u8, TensorError> {
        match self.field(slot)? {
            Some(p) => read::<1>(self.buf, p, "u8 field").map(|b| b[0]),
            None => Ok(0),
        }
    }

    /// A `u16` field, or its default (0).
    pub(super) fn u16(&self, slot: usize) -> Result<u16, TensorError> {
        match self.field(slot)? {
            Some(p) => read::<2>(self.buf, p, "u16 field").map(u16::from_le_bytes),
            None => Ok(0),
        }
    }

    /// An `f32` field, or its default (0.0).
    pub(super) fn f32(&self, slot: usize) -> Result<f32, TensorError> {
        match self.field(slot)? {
            Some(p) => read::<4>(self.buf, p, "f32 field").map(f32::from_le_bytes),
            None => Ok(0.0),
        }
    }

    /// A string field (absent: empty); at most `max` bytes, UTF-8 (lossy).
    pub(super) fn string(&self, slot: usize, max: usize) -> Result<String, TensorError> {
        let Some(p) = self.field(slot)? else {
            return Ok(String::new());
        };
        let at = follow(self.buf, p, "string")?;
        let len = u32_at(self.buf, at, "string length")? as usize;
        if len > max {
            return Err(bad(&format!("a name of {len} bytes (at most {max})")));
        }
        let bytes = at
            .checked_add(4)
            .and_then(|s| self.buf.get(s..s.checked_add(len)?))
            .ok_or_else(|| bad("a string runs past the end"))?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// A vector-of-tables field (absent: empty), at most `max` long.
    pub(super) fn tables(&self, slot: usize, max: usize) -> Result<Vec<Table<'a>>, TensorError> {
        let Some(p) = self.field(slot)? else {
            return Ok(Vec::new());
        };
        let at = follow(self.buf, p, "vector")?;
        let len = u32_at(self.buf, at, "vector length")? as usize;
        if len > max {
            return Err(bad(&format!("a list of {len} entries (at most {max})")));
        }
        (0..len)
            .map(|i| {
                let slot = at + 4 + 4 * i;
                let table = follow(self.buf, slot, "vector entry")?;
                Table::at(self.buf, table, "vector entry")
            })
            .collect()
    }
}

/// A field value for [`TableBuilder`].
#[derive(Debug, Clone)]
pub(super) enum Value {
    U8(u8),
    U16(u16),
    F32(f32),
    Str(String),
    Tables(Vec<TableBuilder>),
}

/// A table to write: `(slot, value)` pairs, slots as in the generated code (`VT_…`).
#[derive(Debug, Clone, Default)]
pub(super) struct TableBuilder {
    fields: Vec<(u16, Value)>,
}

impl TableBuilder {
    /// Add a field.
    pub(super) fn with(mut self, slot: u16, value: Value) -> Self {
        self.fields.push((slot, value));
        self
    }

    /// The whole buffer with this table as its root.
    pub(super) fn finish(&self) -> Vec<u8> {
        let mut out = vec![0u8; 4];
        let root = self.write(&mut out);
        patch(&mut out, 0, root);
        out
    }

    /// Write the vtable, the table and then (forward) its strings and vectors; the table's position.
    fn write(&self, out: &mut Vec<u8>) -> usize {
        let slots = self.fields.iter().map(|(s, _)| *s).max().unwrap_or(2);
        let vtable_len = usize::from(slots) + 2;
        // the table's inline part: the vtable distance, then each field aligned to its size
        let mut inline: Vec<(u16, usize, usize)> = Vec::new(); // (slot, offset in table, size)
        let mut size = 4usize;
        for (slot, value) in &self.fields {
            let width = match value {
                Value::U8(_) => 1,
                Value::U16(_) => 2,
                Value::F32(_) | Value::Str(_) | Value::Tables(_) => 4,
            };
            size = size.next_multiple_of(width);
            inline.push((*slot, size, width));
            size += width;
        }
        align(out, 2);
        let vtable = out.len();
        out.extend_from_slice(&(vtable_len as u16).to_le_bytes());
        out.extend_from_slice(&(size as u16).to_le_bytes());
        let mut entries = vec![0u16; (vtable_len - 4) / 2];
        for (slot, off, _) in &inline {
            if let Some(e) = entries.get_mut(usize::from(*slot) / 2 - 2) {
                *e = *off as u16;
            }
        }
        for e in entries {
            out.extend_from_slice(&e.to_le_bytes());
        }
        align(out, 4);
        let table = out.len();
        out.extend_from_slice(&((table - vtable) as i32).to_le_bytes());
        out.resize(table + size, 0);
        let mut later = Vec::new();
        for ((_, value), (_, off, _)) in self.fields.iter().zip(&inline) {
            let at = table + off;
            match value {
                Value::U8(v) => out[at] = *v,
                Value::U16(v) => out[at..at + 2].copy_from_slice(&v.to_le_bytes()),
                Value::F32(v) => out[at..at + 4].copy_from_slice(&v.to_le_bytes()),
                Value::Str(_) | Value::Tables(_) => later.push((at, value)),
            }
        }
        for (at, value) in later {
            align(out, 4);
            let target = out.len();
            patch(out, at, target);
            match value {
                Value::Str(s) => {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                    out.push(0);
                }
                Value::Tables(items) => {
                    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
                    let first = out.len();
                    out.resize(first + 4 * items.len(), 0);
                    for (i, item) in items.iter().enumerate() {
                        let child = item.write(out);
                        patch(out, first + 4 * i, child);
                    }
                }
                _ => {}
            }
        }
        table
    }
}

fn align(out: &mut Vec<u8>, to: usize) {
    out.resize(out.len().next_multiple_of(to), 0);
}

/// Store at `at` the forward offset to `target`.
fn patch(out: &mut [u8], at: usize, target: usize) {
    let off = (target - at) as u32;
    out[at..at + 4].copy_from_slice(&off.to_le_bytes());
}
