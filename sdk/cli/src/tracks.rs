//! `ocellus run --tracks FILE`: every confirmed track box of every frame, in the MOTChallenge
//! text format, for the field's scoring tools and `ocellus eval`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ocellus::mot;
use ocellus::pipeline::{TrackTap, TracksSeen};

/// Most bytes one run writes to the track file (a 24-hour run of a busy scene at 30 fps is far
/// below): past it the file is closed with a warning, so a forgotten flag cannot fill a disk.
const MAX_BYTES: u64 = 4 << 30;

#[derive(Debug)]
struct State {
    out: BufWriter<std::fs::File>,
    written: u64,
    /// The first write error, or why writing stopped.
    error: Option<String>,
    /// Frames whose source delivered no pixels (no size to write boxes in).
    sizeless: u64,
}

/// The track file of one run.
#[derive(Debug, Clone)]
pub(crate) struct TrackFile {
    path: PathBuf,
    state: Arc<Mutex<State>>,
}

/// Counts bytes on their way to the file.
struct Counting<'w, W: Write>(&'w mut W, u64);

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl TrackFile {
    /// Create (truncate) the file; an error names it.
    pub(crate) fn create(path: &Path) -> ocellus::Result<TrackFile> {
        let file = std::fs::File::create(path).map_err(|source| ocellus::Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(TrackFile {
            path: path.to_path_buf(),
            state: Arc::new(Mutex::new(State {
                out: BufWriter::new(file),
                written: 0,
                error: None,
                sizeless: 0,
            })),
        })
    }

    /// The pipeline's tap: writes each frame's observed tracks.
    pub(crate) fn tap(&self) -> TrackTap {
        let state = self.state.clone();
        TrackTap::new(move |seen: &TracksSeen<'_>| {
            let Ok(mut s) = state.lock() else {
                return;
            };
            if s.error.is_some() {
                return;
            }
            let Some((w, h)) = seen.size else {
                s.sizeless += 1;
                return;
            };
            let mut counting = Counting(&mut s.out, 0);
            let result = mot::write_observed(&mut counting, seen.seq, seen.tracks, w, h);
            let n = counting.1;
            s.written += n;
            if let Err(e) = result {
                s.error = Some(e.to_string());
            } else if s.written > MAX_BYTES {
                s.error = Some(format!("stopped at the {} GiB bound", MAX_BYTES >> 30));
            }
        })
    }

    /// Flush; `false` (with a warning printed) if the file is incomplete.
    pub(crate) fn finish(self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.error.is_none()
            && let Err(e) = s.out.flush()
        {
            s.error = Some(e.to_string());
        }
        if s.sizeless > 0 {
            eprintln!(
                "warning: {} frame(s) had no pixels (an on-sensor source without images), so no frame size to write their tracks in: they are not in {}",
                s.sizeless,
                self.path.display()
            );
        }
        match &s.error {
            None => true,
            Some(e) => {
                eprintln!(
                    "warning: the track file {} is incomplete: {e}",
                    self.path.display()
                );
                false
            }
        }
    }
}
