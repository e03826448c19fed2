//! Recorded tensor streams: a file of one frame's DNN lines after another, so the host can replay
//! what a sensor (or the simulator) sent without the sensor or the model.
//!
//! Layout (little-endian): a 16-byte file header, `OCLX500\n`, format version `u16` (1), line
//! stride `u32`, 2 reserved bytes; then one record per frame: `FRAM`, data length `u32`, media time
//! in microseconds `u64`, CRC-32 of the data `u32`, the data. A record whose CRC does not match is
//! skipped and counted; after a damaged record header the reader looks for the next `FRAM`; a
//! torn last record (a recording cut off) ends the stream.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"OCLX500\n";
const VERSION: u16 = 1;
const RECORD: &[u8; 4] = b"FRAM";
const RECORD_HEADER: usize = 20;
/// Largest record accepted (one frame's DNN lines), to bound what a damaged length can make the
/// reader allocate.
pub const MAX_RECORD: usize = 16 << 20;

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn damaged(path: &Path, message: String) -> Error {
    Error::Device {
        device: path.display().to_string(),
        message,
    }
}

/// Writes a capture.
#[derive(Debug)]
pub struct CaptureWriter {
    path: PathBuf,
    out: BufWriter<File>,
    frames: u64,
    bytes: u64,
}

impl CaptureWriter {
    /// Create (or replace) a capture of lines `stride` bytes long.
    pub fn create(path: &Path, stride: usize) -> Result<Self> {
        let file = File::create(path).map_err(io(path))?;
        let mut out = BufWriter::new(file);
        let mut head = Vec::with_capacity(16);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&(stride as u32).to_le_bytes());
        head.extend_from_slice(&[0, 0]);
        out.write_all(&head).map_err(io(path))?;
        Ok(CaptureWriter {
            path: path.to_path_buf(),
            out,
            frames: 0,
            bytes: 16,
        })
    }

    /// Append one frame's DNN lines.
    pub fn write(&mut self, t: Duration, data: &[u8]) -> Result<()> {
        if data.len() > MAX_RECORD {
            return Err(Error::InvalidOption {
                name: "capture record".into(),
                message: format!("{} bytes (at most {MAX_RECORD})", data.len()),
            });
        }
        let mut head = [0u8; RECORD_HEADER];
        head[..4].copy_from_slice(RECORD);
        head[4..8].copy_from_slice(&(data.len() as u32).to_le_bytes());
        head[8..16].copy_from_slice(&(t.as_micros() as u64).to_le_bytes());
        head[16..20].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
        self.out.write_all(&head).map_err(io(&self.path))?;
        self.out.write_all(data).map_err(io(&self.path))?;
        self.frames += 1;
        self.bytes += (RECORD_HEADER + data.len()) as u64;
        Ok(())
    }

    /// Flush to disk; (frames, bytes) written.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        self.out.flush().map_err(io(&self.path))?;
        self.out.get_ref().sync_all().map_err(io(&self.path))?;
        Ok((self.frames, self.bytes))
    }
}

/// One recorded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Media time.
    pub t: Duration,
    /// The DNN lines.
    pub data: Vec<u8>,
}

/// Reads a capture.
#[derive(Debug)]
pub struct CaptureReader {
    path: PathBuf,
    input: BufReader<File>,
    /// Bytes read while looking for a record marker, to be read again first.
    pending: std::collections::VecDeque<u8>,
    stride: usize,
    skipped: u64,
}

impl CaptureReader {
    /// Open a capture and read its header.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io(path))?;
        let mut input = BufReader::new(file);
        let mut head = [0u8; 16];
        input.read_exact(&mut head).map_err(|_| {
            damaged(
                path,
                "too short to be a tensor capture (no 16-byte header)".into(),
            )
        })?;
        if &head[..8] != MAGIC {
            return Err(damaged(
                path,
                "not a tensor capture (record one with `ocellus sim imx500 --out FILE`)".into(),
            ));
        }
        let version = u16::from_le_bytes([head[8], head[9]]);
        if version != VERSION {
            return Err(damaged(
                path,
                format!("capture format version {version}; this build reads {VERSION}"),
            ));
        }
        let stride = u32::from_le_bytes([head[10], head[11], head[12], head[13]]) as usize;
        if !(64..=65_535).contains(&stride) {
            return Err(damaged(
                path,
                format!("line stride {stride} in its header (64..=65535): the capture is damaged"),
            ));
        }
        Ok(CaptureReader {
            path: path.to_path_buf(),
            input,
            pending: std::collections::VecDeque::new(),
            stride,
            skipped: 0,
        })
    }

    /// The line stride the capture was recorded with.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Damaged records skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next intact record; `None` at the end (or at a torn last record).
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            let mut head = [0u8; RECORD_HEADER];
            if !self.fill(&mut head)? {
                return Ok(None);
            }
            if &head[..4] != RECORD {
                // a damaged header: find the next record
                self.skipped += 1;
                if !self.resync(&head)? {
                    return Ok(None);
                }
                continue;
            }
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
            if len > MAX_RECORD {
                self.skipped += 1;
                if !self.resync(&head)? {
                    return Ok(None);
                }
                continue;
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&head[8..16]);
            let crc = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
            let mut data = vec![0u8; len];
            if !self.fill(&mut data)? {
                // a recording cut off in the middle of a frame
                self.skipped += 1;
                return Ok(None);
            }
            if crc32fast::hash(&data) != crc {
                self.skipped += 1;
                continue;
            }
            return Ok(Some(Record {
                t: Duration::from_micros(u64::from_le_bytes(t)),
                data,
            }));
        }
    }

    /// Read exactly `buf`; `false` at the end of the file (a partial read counts as the end).
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut got = self.pending.read(buf).unwrap_or(0);
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => return Ok(false),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(&self.path)(e)),
            }
        }
        Ok(true)
    }

    /// Find the next `FRAM` marker after the start of `head` (a damaged record header) and leave
    /// it to be read next; `false` when the file ends first.
    fn resync(&mut self, head: &[u8; RECORD_HEADER]) -> Result<bool> {
        let mut window: Vec<u8> = head[1..].to_vec();
        loop {
            if let Some(i) = window.windows(4).position(|w| w == RECORD) {
                let mut rest: std::collections::VecDeque<u8> = window.split_off(i).into();
                rest.extend(self.pending.drain(..));
                self.pending = rest;
                return Ok(true);
            }
            let keep = window.len().saturating_sub(3);
            window.drain(..keep);
            let mut chunk = [0u8; 4096];
            let n = match self.pending.read(&mut chunk) {
                Ok(n) if n > 0 => n,
                _ => self.input.read(&mut chunk).map_err(io(&self.path))?,
            };
            if n == 0 {
                return Ok(false);
            }
            window.extend_from_slice(&chunk[..n]);
        }
    }
}
