//! Frame sources: video files and RTSP streams through an `ffmpeg` child process (raw RGB on a
//! pipe), directories or globs of images, and a synthetic scene with known ground truth.
//!
//! Every [`Frame`] carries its sequence number, its capture time (wall clock, for events) and its
//! media time `t` (monotonic: the position in a file, or the time since a live source started), which
//! the rules use for dwell times so that a file gives the same dwell however fast it is processed.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

mod config;
pub mod convert;
pub mod sensor;
pub mod v4l2;

pub use config::{DEFAULT_SENSOR_ADDRESS, SensorBus, SourceConfig, SpriteConfig, VideoInput};
pub use sensor::{SensorSettings, SensorSource};
pub use v4l2::V4l2Source;

use crate::error::{Error, Result};
use crate::preprocess::{MAX_FRAME_SIDE, RgbFrame, frame_size_problem};
use ocellus_core::Detection;
pub use ocellus_core::Source;
pub use ocellus_core::frame::{Frame, SourceStats};

fn tool_error(path: &Path, what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("{what}: {detail}")),
    }
}

/// How ffmpeg and ffprobe are told to read `input`, without a password on their command line.
///
/// A URL with credentials (`rtsp://admin:PASSWORD@10.0.0.5/stream1`) given with `-i` is visible
/// to every user of the machine in `ps`. Such a URL is written instead to an ffconcat file that
/// only this user can read (in a 0700 directory, removed when the [`InputArgs`] is dropped), and
/// ffmpeg reads it through its concat demuxer; per-input options go into the same file.
struct InputArgs {
    args: Vec<String>,
    _file: Option<PrivateFile>,
}

/// A file in a private temporary directory, removed with it on drop.
struct PrivateFile {
    dir: PathBuf,
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn input_args(input: &str, options: &[(&str, &str)]) -> Result<InputArgs> {
    if !crate::redact::has_password(input) {
        let mut args = Vec::with_capacity(2 * options.len() + 2);
        for (k, v) in options {
            args.push(format!("-{k}"));
            args.push((*v).to_owned());
        }
        args.push("-i".into());
        args.push(input.to_owned());
        return Ok(InputArgs { args, _file: None });
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ocellus-input-{}-{n}", std::process::id()));
    let shown = crate::redact::url(input);
    let io = |e: std::io::Error| {
        tool_error(
            Path::new(&shown),
            "cannot write the private input file for ffmpeg",
            e,
        )
    };
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).map_err(io)?;
    let guard = PrivateFile { dir: dir.clone() };
    let path = dir.join("input.ffconcat");
    // within single quotes nothing is special but the quote itself, written '\''
    let mut text = format!(
        "ffconcat version 1.0\nfile '{}'\n",
        input.replace('\'', "'\\''")
    );
    for (k, v) in options {
        text.push_str(&format!("option {k} {v}\n"));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&path).map_err(io)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)?;
    let args = [
        "-f",
        "concat",
        "-safe",
        "0",
        "-protocol_whitelist",
        "file,crypto,data,tcp,tls,udp,rtp,rtsp,rtsps,http,https,httpproxy,rtmp",
        "-i",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .chain(std::iter::once(path.to_string_lossy().into_owned()))
    .collect();
    Ok(InputArgs {
        args,
        _file: Some(guard),
    })
}

/// Video stream facts from `ffprobe`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second (`r_frame_rate`), when known.
    pub fps: Option<f64>,
    /// Number of frames, when the container says.
    pub frames: Option<u64>,
}

/// Probe the first video stream of a file or URL.
pub fn probe(input: &str) -> Result<VideoInfo> {
    let shown = crate::redact::url(input);
    let path = Path::new(&shown);
    let how = input_args(input, &[("rw_timeout", "10000000")])?;
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "stream=width,height,r_frame_rate,nb_frames",
            "-of",
            "default=nw=1",
        ])
        .args(&how.args)
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
            crate::redact::text(String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut info = VideoInfo {
        width: 0,
        height: 0,
        fps: None,
        frames: None,
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "width" => info.width = v.trim().parse().unwrap_or(0),
            "height" => info.height = v.trim().parse().unwrap_or(0),
            "nb_frames" => info.frames = v.trim().parse().ok(),
            "r_frame_rate" => {
                info.fps = v.split_once('/').and_then(|(n, d)| {
                    let (n, d) = (n.trim().parse::<f64>().ok()?, d.trim().parse::<f64>().ok()?);
                    (n > 0.0 && d > 0.0).then(|| n / d).and_then(sane_fps)
                })
            }
            _ => {}
        }
    }
    if let Some(problem) = frame_size_problem(info.width, info.height) {
        return Err(tool_error(
            path,
            &format!("ffprobe reported no usable video size ({problem})"),
            text.trim(),
        ));
    }
    Ok(info)
}

/// Width and height of the first video stream, from `ffprobe`.
pub fn probe_size(path: &Path) -> Result<(u32, u32)> {
    probe(&path.to_string_lossy()).map(|info| (info.width, info.height))
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
    let frame_len = crate::preprocess::rgb_len(w, h)
        .ok_or_else(|| tool_error(path, "video size", format!("{w}x{h} overflows")))?;
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

/// `secs` seconds as a duration, saturating: negative or NaN is zero, too large is
/// [`Duration::MAX`] (`Duration::from_secs_f64` panics on those, and a crafted frame rate of
/// 1/10^20 makes `frames / fps` one of them).
pub(crate) fn secs(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(if secs > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// Slowest frame rate taken from a file's header or a caller: one frame a day. Below it (or not
/// finite) the rate is treated as unknown.
const MIN_FPS: f64 = 1.0 / 86_400.0;

/// Fastest frame rate taken from a file's header.
const MAX_FPS: f64 = 1000.0;

/// A frame rate within [`MIN_FPS`]..=[`MAX_FPS`], else `None`.
fn sane_fps(fps: f64) -> Option<f64> {
    (MIN_FPS..=MAX_FPS).contains(&fps).then_some(fps)
}

/// A caller's pacing rate: `None` when not finite or not above 0, at least [`MIN_FPS`] (so that
/// a pace of 1e-300 does not sleep for ever).
fn pace_fps(pace: Option<f64>) -> Option<f64> {
    pace.filter(|p| p.is_finite() && *p > 0.0)
        .map(|p| p.max(MIN_FPS))
}

/// Pacing: sleep until `due` after `started` (no-op when already late).
fn sleep_until(started: Instant, due: Duration) {
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
}

/// Keeps the last bytes a child wrote to stderr (bounded), drained by its own thread so the child
/// never blocks on a full pipe.
#[derive(Debug, Clone, Default)]
struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

const STDERR_KEEP: usize = 16 * 1024;

impl StderrTail {
    fn drain(child: &mut Child) -> StderrTail {
        let tail = StderrTail::default();
        if let Some(mut err) = child.stderr.take() {
            let t = tail.clone();
            let _ = std::thread::Builder::new()
                .name("ocellus-ffmpeg-stderr".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = err.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if let Ok(mut q) = t.0.lock() {
                            q.extend(&buf[..n]);
                            let excess = q.len().saturating_sub(STDERR_KEEP);
                            q.drain(..excess);
                        }
                    }
                });
        }
        tail
    }
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|q| {
                String::from_utf8_lossy(&q.iter().copied().collect::<Vec<u8>>())
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    }
}

/// A video file or an `rtsp://` stream decoded by an `ffmpeg` child process.
///
/// Files: frames are numbered and timed by their position (`t = seq / fps`); a stream that ends
/// mid-frame ends cleanly (the partial frame is counted as skipped); a file that ffmpeg cannot
/// decode at all is an error carrying ffmpeg's message. Optionally paced at `fps` and looped.
///
/// Streams (`rtsp://`, `rtsps://`, `http(s)://`): live; when the stream ends or breaks, ffmpeg is
/// restarted with exponential backoff (0.5 s → 30 s) and the reconnect is counted.
pub struct FfmpegSource {
    /// The input with any password masked, for messages.
    shown: String,
    /// How ffmpeg is given the input (a private file when the URL has a password).
    how: InputArgs,
    live: bool,
    info: VideoInfo,
    pace: Option<f64>,
    looped: bool,
    child: Option<(Child, ChildStdout, StderrTail)>,
    seq: u64,
    /// frames delivered by the current ffmpeg run (for file time and loop offsets)
    in_run: u64,
    /// media time at the start of the current run (loops continue the clock)
    run_offset: Duration,
    started: Instant,
    stats: SourceStats,
    backoff: Duration,
    /// buffers given back by [`Source::recycle`], read into before allocating
    spare: Vec<Vec<u8>>,
}

/// Most recycled frame buffers a source keeps.
const SPARE_FRAMES: usize = 2;

impl std::fmt::Debug for FfmpegSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FfmpegSource")
            .field("input", &self.shown)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn is_stream_url(input: &str) -> bool {
    [
        "rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://",
    ]
    .iter()
    .any(|p| input.starts_with(p))
}

impl FfmpegSource {
    /// Open a file or stream URL. `pace`: deliver at most this many frames per second (files);
    /// `looped`: restart a file at its end.
    pub fn open(input: &str, pace: Option<f64>, looped: bool) -> Result<Self> {
        let live = is_stream_url(input);
        let shown = crate::redact::url(input);
        if !live && !Path::new(input).is_file() {
            return Err(Error::Io {
                path: PathBuf::from(input),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "video file not found"),
            });
        }
        let info = probe(input)?;
        let mut options = Vec::new();
        if input.starts_with("rtsp") {
            options.push(("rtsp_transport", "tcp"));
        }
        if live {
            options.push(("rw_timeout", "10000000"));
        }
        let how = input_args(input, &options)?;
        let mut s = FfmpegSource {
            shown,
            how,
            live,
            info,
            pace: pace_fps(pace),
            looped: looped && !live,
            child: None,
            seq: 0,
            in_run: 0,
            run_offset: Duration::ZERO,
            started: Instant::now(),
            stats: SourceStats::default(),
            backoff: Duration::from_millis(500),
            spare: Vec::new(),
        };
        s.spawn()?;
        Ok(s)
    }

    /// The probed stream facts.
    pub fn info(&self) -> VideoInfo {
        self.info
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-v", "error"]);
        // One decoding thread: on a small device the model's threads already use every core, and
        // a second decoder thread only takes time from them (measured in docs/performance.md).
        cmd.args(["-threads", "1"]);
        cmd.args(&self.how.args)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
            .args([
                "-s",
                &format!("{}x{}", self.info.width, self.info.height),
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            tool_error(
                Path::new(&self.shown),
                "cannot run ffmpeg (install Debian ffmpeg: models/provision.sh)",
                e,
            )
        })?;
        let tail = StderrTail::drain(&mut child);
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| tool_error(Path::new(&self.shown), "ffmpeg", "no stdout pipe"))?;
        self.child = Some((child, stdout, tail));
        self.in_run = 0;
        Ok(())
    }

    /// Reap the current child; returns its stderr tail if it failed.
    fn reap(&mut self) -> Option<String> {
        let (mut child, stdout, tail) = self.child.take()?;
        drop(stdout);
        let status = child.wait().ok();
        let failed = status.is_some_and(|s| !s.success());
        // let the stderr thread finish copying
        std::thread::sleep(Duration::from_millis(20));
        failed.then(|| tail.text())
    }

    fn read_one(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let len = crate::preprocess::rgb_len(self.info.width, self.info.height)
            .ok_or_else(|| std::io::Error::other("the video size overflows"))?;
        let Some((_, stdout, _)) = self.child.as_mut() else {
            return Ok(None);
        };
        let mut buf = self.spare.pop().unwrap_or_default();
        // no allocation when a recycled buffer of this size came back
        buf.resize(len, 0);
        let mut got = 0;
        while got < len {
            match stdout.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got == len {
            Ok(Some(buf))
        } else {
            if got > 0 {
                self.stats.skipped += 1; // a frame cut short at the end of the stream
            }
            Ok(None)
        }
    }

    fn frame_time(&self) -> Duration {
        if self.live {
            return self.started.elapsed();
        }
        let fps = self.info.fps.unwrap_or(25.0);
        self.run_offset
            .saturating_add(secs(self.in_run as f64 / fps))
    }
}

impl FfmpegSource {
    /// The next frame, with this crate's errors.
    fn read_next(&mut self) -> Result<Option<Frame>> {
        loop {
            match self.read_one() {
                Ok(Some(data)) => {
                    let t = self.frame_time();
                    if let Some(fps) = self.pace {
                        sleep_until(self.started, secs(self.seq as f64 / fps));
                    }
                    let image = RgbFrame::new(self.info.width, self.info.height, data)?;
                    let frame = Frame::new(self.seq, SystemTime::now(), t, image);
                    self.seq += 1;
                    self.in_run += 1;
                    self.backoff = Duration::from_millis(500);
                    return Ok(Some(frame));
                }
                Ok(None) | Err(_) => {
                    let delivered_in_run = self.in_run;
                    let fps = self.info.fps.unwrap_or(25.0);
                    let failure = self.reap();
                    if self.live {
                        tracing::warn!(
                            "stream {} ended ({}); reconnecting in {:?}",
                            self.shown,
                            crate::redact::text(failure.as_deref().unwrap_or("end of stream")),
                            self.backoff
                        );
                        std::thread::sleep(self.backoff);
                        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
                        self.stats.reconnects += 1;
                        if let Err(e) = self.spawn() {
                            tracing::warn!("reconnecting {} failed: {e}", self.shown);
                        }
                        continue;
                    }
                    if let Some(msg) = failure.filter(|m| !m.is_empty()) {
                        if delivered_in_run == 0 {
                            return Err(tool_error(
                                Path::new(&self.shown),
                                "ffmpeg could not decode",
                                crate::redact::text(&msg),
                            ));
                        }
                        tracing::warn!("{} ended early: {}", self.shown, crate::redact::text(&msg));
                    }
                    if self.looped && delivered_in_run > 0 {
                        self.run_offset = self
                            .run_offset
                            .saturating_add(secs(delivered_in_run as f64 / fps));
                        self.spawn()?;
                        continue;
                    }
                    return Ok(None);
                }
            }
        }
    }
}

impl Source for FfmpegSource {
    fn next_frame(&mut self) -> ocellus_core::Result<Option<Frame>> {
        Ok(self.read_next()?)
    }

    fn recycle(&mut self, image: RgbFrame) {
        if self.spare.len() < SPARE_FRAMES {
            self.spare.push(image.into_raw());
        }
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn len_hint(&self) -> Option<u64> {
        if self.live || self.looped {
            None
        } else {
            self.info.frames
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        if let Some((mut child, _, _)) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory or a glob (`dir/*.png`; `*` and `?` in the file name only) of images, in name order.
/// An image that cannot be decoded is skipped and counted, not fatal.
#[derive(Debug)]
pub struct ImageSource {
    files: Vec<PathBuf>,
    pos: usize,
    seq: u64,
    pace: Option<f64>,
    looped: bool,
    started: Instant,
    stats: SourceStats,
    pattern: String,
}

/// Largest number of files an image source lists (a bound on a runaway glob).
pub const MAX_IMAGE_FILES: usize = 1_000_000;

impl ImageSource {
    /// List a directory (every file with an image extension) or a glob.
    pub fn open(pattern: &str, pace: Option<f64>, looped: bool) -> Result<Self> {
        let p = Path::new(pattern);
        let (dir, name_pat) = if p.is_dir() {
            (p.to_path_buf(), None)
        } else {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (dir.to_path_buf(), Some(name))
        };
        let rd = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.is_file())
            .filter(|f| {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match &name_pat {
                    Some(pat) => glob_match(pat, &name),
                    None => {
                        let ext = f
                            .extension()
                            .map(|e| e.to_string_lossy().to_ascii_lowercase());
                        matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
                    }
                }
            })
            .take(MAX_IMAGE_FILES)
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::Io {
                path: PathBuf::from(pattern),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no images match"),
            });
        }
        Ok(ImageSource {
            files,
            pos: 0,
            seq: 0,
            pace: pace_fps(pace),
            looped,
            started: Instant::now(),
            stats: SourceStats::default(),
            pattern: pattern.to_owned(),
        })
    }
}

/// Most bytes the image decoder may allocate for one image file (the decoded pixels in the file's
/// own format, e.g. 16-bit RGBA): a little more than the largest RGB frame.
pub const MAX_IMAGE_DECODE_BYTES: u64 = 256 << 20;

/// Open and decode an image file (PNG, JPEG, by content) as packed RGB, with bounds: a header
/// that claims more than [`MAX_FRAME_SIDE`] per side, more than
/// [`MAX_FRAME_PIXELS`](crate::preprocess::MAX_FRAME_PIXELS) pixels, or a decoded size above
/// [`MAX_IMAGE_DECODE_BYTES`] is refused before the pixels are allocated. The image source reads
/// its files with this.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Image`] when it is not an image, is
/// corrupt or truncated, or is too large, [`Error::Frame`] when its size is out of bounds.
pub fn load_image(path: &Path) -> Result<RgbFrame> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = image::ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_FRAME_SIDE);
    limits.max_image_height = Some(MAX_FRAME_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|source| Error::Image {
        path: path.to_path_buf(),
        source,
    })?;
    let (width, height) = (image.width(), image.height());
    if let Some(problem) = frame_size_problem(width, height) {
        return Err(Error::Frame(format!(
            "{}: {width}x{height}: {problem}",
            path.display()
        )));
    }
    Ok(RgbFrame::new(width, height, image.into_rgb8().into_raw())?)
}

/// `*` any run of characters, `?` one character.
fn glob_match(pat: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pat.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl ImageSource {
    /// The next frame, with this crate's errors.
    fn read_next(&mut self) -> Result<Option<Frame>> {
        let mut failures = 0usize;
        loop {
            if self.pos >= self.files.len() {
                if !self.looped || failures >= self.files.len() {
                    return Ok(None);
                }
                self.pos = 0;
            }
            let path = self.files[self.pos].clone();
            self.pos += 1;
            match load_image(&path) {
                Ok(image) => {
                    let fps = self.pace.unwrap_or(1.0);
                    let t = secs(self.seq as f64 / fps);
                    if self.pace.is_some() {
                        sleep_until(self.started, t);
                    }
                    let frame = Frame::new(self.seq, SystemTime::now(), t, image);
                    self.seq += 1;
                    return Ok(Some(frame));
                }
                Err(e) => {
                    tracing::warn!("skipping frame: {e}");
                    self.stats.skipped += 1;
                    failures += 1;
                }
            }
        }
    }
}

impl Source for ImageSource {
    fn next_frame(&mut self) -> ocellus_core::Result<Option<Frame>> {
        Ok(self.read_next()?)
    }
    fn is_live(&self) -> bool {
        false
    }
    fn len_hint(&self) -> Option<u64> {
        (!self.looped).then_some(self.files.len() as u64)
    }
    fn describe(&self) -> String {
        self.pattern.clone()
    }
    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

/// A synthetic scene for tests: dark "people" (tall boxes) walking in straight lines over a grey
/// background, bouncing off the edges. Deterministic for a seed; the ground truth of every frame is
/// available from [`SyntheticSource::truth`].
#[derive(Debug, Clone)]
pub struct SyntheticSource {
    width: u32,
    height: u32,
    frames: u64,
    fps: f64,
    objects: Vec<SynthObject>,
    seq: u64,
    pace: bool,
    started: Instant,
}

#[derive(Debug, Clone, Copy)]
struct SynthObject {
    /// top-left, normalised
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
    w: f32,
    h: f32,
    shade: u8,
}

impl SyntheticSource {
    /// `objects` walkers on a `width`×`height` scene for `frames` frames at `fps` (media time), from `seed`.
    pub fn new(
        width: u32,
        height: u32,
        frames: u64,
        objects: usize,
        seed: u64,
        fps: f64,
        pace: bool,
    ) -> Result<Self> {
        if !(16..=4096).contains(&width)
            || !(16..=4096).contains(&height)
            || objects == 0
            || objects > 64
        {
            return Err(Error::InvalidOption {
                name: "source.synthetic".into(),
                message: "width/height 16..=4096 and 1..=64 objects".into(),
            });
        }
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
        };
        let objects = (0..objects)
            .map(|i| SynthObject {
                x: 0.05 + rnd() * 0.8,
                y: 0.1 + rnd() * 0.6,
                vx: (rnd() - 0.5) * 0.02,
                vy: (rnd() - 0.5) * 0.01,
                w: 0.05,
                h: 0.15,
                shade: 20 + (i as u8 % 8) * 10,
            })
            .collect();
        Ok(SyntheticSource {
            width,
            height,
            frames,
            fps: if fps.is_finite() && fps > 0.0 {
                fps.max(MIN_FPS)
            } else {
                10.0
            },
            objects,
            seq: 0,
            pace,
            started: Instant::now(),
        })
    }

    fn position(o: &SynthObject, n: u64) -> (f32, f32) {
        let bounce = |p0: f32, v: f32, span: f32| {
            let travel = (p0 + v * n as f32).rem_euclid(2.0 * span);
            if travel <= span {
                travel
            } else {
                2.0 * span - travel
            }
        };
        (bounce(o.x, o.vx, 1.0 - o.w), bounce(o.y, o.vy, 1.0 - o.h))
    }

    /// Ground truth of frame `n`: one `person` box per object, normalised.
    pub fn truth(&self, n: u64) -> Vec<Detection> {
        self.objects
            .iter()
            .map(|o| {
                let (x, y) = Self::position(o, n);
                Detection {
                    label: Arc::from("person"),
                    class_id: 1,
                    score: 1.0,
                    bbox: [x, y, x + o.w, y + o.h],
                }
            })
            .collect()
    }
}

impl SyntheticSource {
    /// The next frame, with this crate's errors.
    fn read_next(&mut self) -> Result<Option<Frame>> {
        if self.seq >= self.frames {
            return Ok(None);
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let mut data = vec![128u8; w * h * 3];
        for o in &self.objects {
            let (x, y) = Self::position(o, self.seq);
            let (x0, y0) = ((x * w as f32) as usize, (y * h as f32) as usize);
            let (x1, y1) = (
                ((x + o.w) * w as f32) as usize,
                ((y + o.h) * h as f32) as usize,
            );
            for row in y0.min(h)..y1.min(h) {
                let start = (row * w + x0.min(w)) * 3;
                let end = (row * w + x1.min(w)) * 3;
                data[start..end].fill(o.shade);
            }
        }
        let t = secs(self.seq as f64 / self.fps);
        if self.pace {
            sleep_until(self.started, t);
        }
        let frame = Frame::new(
            self.seq,
            SystemTime::now(),
            t,
            RgbFrame::new(self.width, self.height, data)?,
        );
        self.seq += 1;
        Ok(Some(frame))
    }
}

impl Source for SyntheticSource {
    fn next_frame(&mut self) -> ocellus_core::Result<Option<Frame>> {
        Ok(self.read_next()?)
    }
    fn is_live(&self) -> bool {
        false
    }
    fn len_hint(&self) -> Option<u64> {
        Some(self.frames)
    }
    fn describe(&self) -> String {
        format!(
            "synthetic {}x{} ({} objects)",
            self.width,
            self.height,
            self.objects.len()
        )
    }
    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_hostile_frame_rates_saturate() {
        assert_eq!(secs(1.5), Duration::from_millis(1500));
        assert_eq!(secs(1e300), Duration::MAX);
        assert_eq!(secs(f64::INFINITY), Duration::MAX);
        assert_eq!(secs(-1.0), Duration::ZERO);
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        // ffprobe's r_frame_rate of a crafted file: 1/10^20 frames per second is no rate.
        assert_eq!(sane_fps(1e-20), None);
        assert_eq!(sane_fps(f64::NAN), None);
        assert_eq!(sane_fps(1e6), None);
        assert_eq!(sane_fps(25.0), Some(25.0));
        assert_eq!(pace_fps(Some(1e-300)), Some(MIN_FPS));
        assert_eq!(pace_fps(Some(f64::NAN)), None);
        assert_eq!(pace_fps(Some(-2.0)), None);
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("*.png", "a.png"));
        assert!(glob_match("frame-??.jpg", "frame-01.jpg"));
        assert!(!glob_match("frame-??.jpg", "frame-1.jpg"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("*.png", "a.jpg"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
    }

    #[test]
    fn synthetic_frames_draw_their_ground_truth() -> Result<()> {
        let mut s = SyntheticSource::new(200, 100, 5, 3, 7, 10.0, false)?;
        let mut n = 0;
        while let Some(f) = s.next_frame()? {
            assert_eq!(f.seq, n);
            assert_eq!(f.t, Duration::from_secs_f64(n as f64 / 10.0));
            for d in s.truth(n) {
                // the centre pixel of every truth box is painted dark, not background grey
                let cx = ((d.bbox[0] + d.bbox[2]) / 2.0 * 200.0) as usize;
                let cy = ((d.bbox[1] + d.bbox[3]) / 2.0 * 100.0) as usize;
                assert_ne!(
                    f.image.as_ref().unwrap().data()[(cy * 200 + cx) * 3],
                    128,
                    "frame {n}"
                );
                assert!(d.bbox.iter().all(|v| (0.0..=1.0).contains(v)));
            }
            n += 1;
        }
        assert_eq!(n, 5);
        Ok(())
    }

    #[test]
    fn image_source_skips_and_counts_corrupt_files() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("ocellus-imgsrc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let ok = image::RgbImage::from_pixel(8, 4, image::Rgb([1, 2, 3]));
        ok.save(dir.join("a.png")).map_err(|source| Error::Image {
            path: dir.clone(),
            source,
        })?;
        std::fs::write(dir.join("b.png"), b"not a png").map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        ok.save(dir.join("c.png")).map_err(|source| Error::Image {
            path: dir.clone(),
            source,
        })?;
        let mut s = ImageSource::open(&dir.join("*.png").to_string_lossy(), None, false)?;
        let mut seqs = Vec::new();
        while let Some(f) = s.next_frame()? {
            seqs.push(f.seq);
        }
        assert_eq!(seqs, vec![0, 1]);
        assert_eq!(s.stats().skipped, 1);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
