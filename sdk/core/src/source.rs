//! Frames in: the [`Source`] trait.

use crate::error::Result;
use crate::frame::{Frame, RgbFrame, SourceStats};

/// A source of frames.
pub trait Source: Send {
    /// The next frame; `Ok(None)` at the end of a finite source.
    fn next_frame(&mut self) -> Result<Option<Frame>>;

    /// Give a frame's pixels back once they are no longer needed, so the next frame can be
    /// read into the same buffer instead of a new one (the pipeline does this for every frame).
    /// Sources that cannot reuse buffers drop it.
    fn recycle(&mut self, image: RgbFrame) {
        drop(image);
    }
    /// Someone wants to see the scene (a snapshot, the setup page): deliver pixels with the next
    /// frame. Sources that always deliver pixels ignore it (the default); a sensor that runs the
    /// network on the chip reads no pixels until asked, then a low-resolution frame once.
    fn request_pixels(&mut self) {}
    /// Live sources (cameras, RTSP) drop frames when inference falls behind; file sources are paced.
    fn is_live(&self) -> bool;
    /// Number of frames, when known (for progress).
    fn len_hint(&self) -> Option<u64>;
    /// What the source reads, for messages.
    fn describe(&self) -> String;
    /// Skipped frames and reconnects so far.
    fn stats(&self) -> SourceStats;
}
