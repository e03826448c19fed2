//! Events out: the [`EventSink`] trait, and three sinks that need nothing else: a bounded
//! channel ([`ChannelSink`]), a JSON-lines file ([`JsonLinesSink`]) and a closure ([`FnSink`]).
//! The durable MQTT publisher (`ocellus-delivery`) is another.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use crate::error::{Error, Fault, Result};
use crate::event::Event;

/// Anything that takes events.
///
/// The pipeline calls [`EventSink::send`] on the thread that runs it (so a sink need not be
/// `Send`), for every event, in order.
/// A sink that blocks holds up the pipeline (a file source waits; a live source drops frames, and
/// counts them), so a slow destination belongs behind a queue of its own, as the MQTT publisher's
/// disk queue is.
pub trait EventSink {
    /// Take one event.
    ///
    /// # Errors
    /// The event was not taken (a full queue, a closed channel, a failed write). The pipeline
    /// counts it per sink and goes on; the other sinks still get the event.
    fn send(&mut self, event: &Event) -> Result<()>;

    /// Called once after the last event of a run.
    ///
    /// # Errors
    /// What could not be flushed.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// What it is, for messages and logs.
    fn describe(&self) -> String {
        "event sink".to_owned()
    }
}

impl<T: EventSink + ?Sized> EventSink for Box<T> {
    fn send(&mut self, event: &Event) -> Result<()> {
        (**self).send(event)
    }
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Events into a bounded channel, for another thread of the caller's program.
///
/// When the channel is full the event is refused (an error the pipeline counts), so a receiver
/// that stops reading never stalls the camera.
#[derive(Debug)]
pub struct ChannelSink {
    tx: SyncSender<Event>,
}

impl ChannelSink {
    /// A sink and the receiving end of its channel, which holds at most `capacity` events.
    pub fn new(capacity: usize) -> (ChannelSink, Receiver<Event>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        (ChannelSink { tx }, rx)
    }
}

impl EventSink for ChannelSink {
    fn send(&mut self, event: &Event) -> Result<()> {
        self.tx.try_send(event.clone()).map_err(|e| {
            let why = match e {
                TrySendError::Full(_) => "the channel is full: the receiver is behind",
                TrySendError::Disconnected(_) => "the receiver is gone",
            };
            Error::component(
                Fault::Environment,
                format!("event {} refused: {why}", event.id),
            )
        })
    }
    fn describe(&self) -> String {
        "channel".to_owned()
    }
}

/// Events appended to a file, one JSON object (schema `ocellus.event/1`) per line.
///
/// The file is bounded: once `max_bytes` are written, further events are refused.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    written: u64,
    max_bytes: u64,
}

impl JsonLinesSink {
    /// Default bound on the file: 256 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

    /// Append to `path` (created if missing), up to [`JsonLinesSink::DEFAULT_MAX_BYTES`].
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened.
    pub fn append(path: impl AsRef<Path>) -> Result<JsonLinesSink> {
        JsonLinesSink::append_bounded(path, JsonLinesSink::DEFAULT_MAX_BYTES)
    }

    /// Append to `path`, refusing events once the file holds `max_bytes`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened.
    pub fn append_bounded(path: impl AsRef<Path>, max_bytes: u64) -> Result<JsonLinesSink> {
        let path = path.as_ref().to_path_buf();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let written = file.metadata().map_err(io)?.len();
        Ok(JsonLinesSink {
            path,
            file: std::io::BufWriter::new(file),
            written,
            max_bytes,
        })
    }
}

impl EventSink for JsonLinesSink {
    fn send(&mut self, event: &Event) -> Result<()> {
        let mut line = event.to_json();
        line.push(b'\n');
        let len = line.len() as u64;
        if self.written.saturating_add(len) > self.max_bytes {
            return Err(Error::Io {
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!(
                        "the file holds its {} bytes: event {} refused (move the file away to go on)",
                        self.max_bytes, event.id
                    ),
                ),
            });
        }
        self.file.write_all(&line).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        self.written += len;
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }
    fn describe(&self) -> String {
        format!("JSON lines {}", self.path.display())
    }
}

/// Events to a closure.
pub struct FnSink<F>(pub F);

impl<F> std::fmt::Debug for FnSink<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnSink")
    }
}

impl<F: FnMut(&Event) -> Result<()>> EventSink for FnSink<F> {
    fn send(&mut self, event: &Event) -> Result<()> {
        (self.0)(event)
    }
    fn describe(&self) -> String {
        "closure".to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
