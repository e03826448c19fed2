//! Frame sources. For now: decoding a video file through an `ffmpeg` child process (raw RGB on a
//! pipe). The streaming, reconnecting sources of the pipeline build on this.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::preprocess::{MAX_FRAME_SIDE, RgbFrame};

fn tool_error(path: &Path, what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("{what}: {detail}")),
    }
}

/// Width and height of the first video stream, from `ffprobe`.
pub fn probe_size(path: &Path) -> Result<(u32, u32)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=width,height", "-of", "csv=p=0:s=x"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            tool_error(
                path,
                "cannot run ffprobe (install Debian ffmpeg: models/provision.sh)",
                e,
            )
        })?;
    if !out.status.success() {
        return Err(tool_error(
            path,
            "ffprobe failed",
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.trim().split('x').map(|s| s.trim().parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(w)), Some(Ok(h)))
            if (1..=MAX_FRAME_SIDE).contains(&w) && (1..=MAX_FRAME_SIDE).contains(&h) =>
        {
            Ok((w, h))
        }
        _ => Err(tool_error(
            path,
            "ffprobe reported no usable video size",
            text.trim(),
        )),
    }
}

/// Decode up to `max_frames` frames of a video file, starting at frame `skip`, as RGB.
pub fn read_video_frames(path: &Path, skip: usize, max_frames: usize) -> Result<Vec<RgbFrame>> {
    let (w, h) = probe_size(path)?;
    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args([
            "-vf",
            &format!("select=gte(n\\,{skip})"),
            "-vsync",
            "passthrough",
        ])
        .args(["-frames:v", &max_frames.to_string()])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            tool_error(
                path,
                "cannot run ffmpeg (install Debian ffmpeg: models/provision.sh)",
                e,
            )
        })?;
    let frame_len = w as usize * h as usize * 3;
    let mut frames = Vec::new();
    let read_result = match child.stdout.take() {
        Some(mut stdout) => loop {
            if frames.len() >= max_frames {
                break Ok(());
            }
            let mut buf = vec![0u8; frame_len];
            match stdout.read_exact(&mut buf) {
                Ok(()) => frames.push(RgbFrame::new(w, h, buf)?),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
                Err(e) => break Err(e),
            }
        },
        None => Ok(()),
    };
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        // bounded: ffmpeg's own error text, not frame data
        let _ = s.by_ref().take(64 * 1024).read_to_string(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| tool_error(path, "waiting for ffmpeg", e))?;
    read_result.map_err(|e| tool_error(path, "reading frames from ffmpeg", e))?;
    if !status.success() && frames.is_empty() {
        return Err(tool_error(path, "ffmpeg failed", stderr.trim()));
    }
    Ok(frames)
}
