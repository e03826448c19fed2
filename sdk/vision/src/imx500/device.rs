//! The V4L2 node that carries an IMX500's embedded data on a board.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// An open embedded-data node, streaming.
#[derive(Debug)]
pub(super) struct EmbeddedNode {
    stride: usize,
}

impl EmbeddedNode {
    /// Open `node` and start streaming; each buffer's DNN lines are `stride` bytes long.
    pub(super) fn open(node: &Path, stride: usize) -> Result<Self> {
        let _ = stride;
        Err(Error::Device {
            device: node.display().to_string(),
            message: "reading an IMX500's embedded data from V4L2 is not built yet".into(),
        })
    }

    /// The next frame's DNN lines and media time; `None` when the stream ends.
    pub(super) fn next(&mut self) -> Result<Option<(Duration, Vec<u8>)>> {
        let _ = self.stride;
        Ok(None)
    }
}
