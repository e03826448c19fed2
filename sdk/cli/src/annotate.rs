//! `ocellus annotate`: replay a config's source through the pipeline and render what a pilot
//! looks at to trust the counts: boxes with track ids and short trails, the lines with running
//! counts per direction, the zones with their occupancy, people pixelated unless `--no-blur`.
//! Encoded by ffmpeg (H.264 MP4 or GIF) from raw frames on its stdin.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ocellus::config::Config;
use ocellus::pipeline::{Options, TrackTap, TracksSeen};
use ocellus::rules::{Direction, LineRule, RuleEventKind, ZoneRule};
use ocellus::snapshot::{self, Decorations, Scene};
use ocellus::source::{SourceConfig, VideoInput};
use ocellus::{Deployment, Error, Result};

/// Arguments of `ocellus annotate`.
#[derive(Debug, clap::Args)]
pub(crate) struct AnnotateArgs {
    /// The deployment's config: its source, model, tracker and rules.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The file to write: `.mp4` (H.264) or `.gif`.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Leave people as they are (by default every detected or tracked person is pixelated).
    #[arg(long)]
    no_blur: bool,
    /// Frames per second of the output (default: the video's own rate, else 10).
    #[arg(long)]
    fps: Option<f64>,
    /// How many past positions each track's trail shows.
    #[arg(long, default_value_t = 20)]
    trail: usize,
}

/// Longest trail, in positions.
const MAX_TRAIL: usize = 300;
/// Most trails kept (tracks seen recently); the tracker's own cap on live tracks is lower.
const MAX_TRAILS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Mp4,
    Gif,
}

impl Container {
    fn of(path: &Path) -> Result<Container> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("mp4") => Ok(Container::Mp4),
            Some("gif") => Ok(Container::Gif),
            _ => Err(Error::InvalidOption {
                name: "--out".into(),
                message: format!(
                    "{}: the file name must end in .mp4 or .gif (that picks the encoding)",
                    path.display()
                ),
            }),
        }
    }

    /// ffmpeg's output options.
    fn args(self) -> Vec<&'static str> {
        match self {
            Container::Mp4 => vec![
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ],
            Container::Gif => vec![
                "-filter_complex",
                "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer",
                "-f",
                "gif",
            ],
        }
    }
}

/// What a replay has seen so far: trails, line counts, zone occupancy (also the setup page's
/// live counts).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Foot points per track, oldest first, and the last frame it was seen in.
    trails: HashMap<u64, (VecDeque<[f32; 2]>, u64)>,
    /// Per line: `[a→b, b→a]`.
    pub(crate) lines: Vec<[u64; 2]>,
    /// Per zone: tracks inside now.
    pub(crate) zones: Vec<i64>,
}

impl Tally {
    pub(crate) fn new(lines: usize, zones: usize) -> Self {
        Tally {
            trails: HashMap::new(),
            lines: vec![[0; 2]; lines],
            zones: vec![0; zones],
        }
    }

    pub(crate) fn update(
        &mut self,
        seen: &TracksSeen<'_>,
        rules: (&[LineRule], &[ZoneRule]),
        trail: usize,
    ) {
        for t in &seen.tracks.observed {
            let foot = [(t.bbox[0] + t.bbox[2]) / 2.0, t.bbox[3]];
            let (points, last) = self.trails.entry(t.id).or_default();
            points.push_back(foot);
            while points.len() > trail {
                points.pop_front();
            }
            *last = seen.seq;
        }
        for t in &seen.tracks.ended {
            self.trails.remove(&t.id);
        }
        // a track lost for longer than its trail leaves no trail
        let horizon = seen.seq.saturating_sub(trail as u64);
        self.trails.retain(|_, (_, last)| *last >= horizon);
        if self.trails.len() > MAX_TRAILS {
            let mut by_age: Vec<(u64, u64)> =
                self.trails.iter().map(|(id, (_, l))| (*l, *id)).collect();
            by_age.sort_unstable();
            for (_, id) in by_age.iter().take(self.trails.len() - MAX_TRAILS) {
                self.trails.remove(id);
            }
        }
        for ev in seen.events {
            let line = rules.0.iter().position(|l| *l.name == *ev.rule);
            let zone = rules.1.iter().position(|z| *z.name == *ev.rule);
            match (&ev.kind, line, zone) {
                (RuleEventKind::LineCrossed { direction }, Some(i), _) => {
                    let slot = usize::from(*direction == Direction::BToA);
                    if let Some(c) = self.lines.get_mut(i) {
                        c[slot] += 1;
                    }
                }
                (RuleEventKind::ZoneEntered, _, Some(i)) => {
                    if let Some(n) = self.zones.get_mut(i) {
                        *n += 1;
                    }
                }
                (RuleEventKind::ZoneExited { .. }, _, Some(i)) => {
                    if let Some(n) = self.zones.get_mut(i) {
                        *n = (*n - 1).max(0);
                    }
                }
                _ => {}
            }
        }
    }

    fn labels(&self, lines: &[LineRule], zones: &[ZoneRule]) -> (Vec<String>, Vec<String>) {
        (
            lines
                .iter()
                .zip(&self.lines)
                .map(|(l, c)| format!("{} a>b {} b>a {}", l.name, c[0], c[1]))
                .collect(),
            zones
                .iter()
                .zip(&self.zones)
                .map(|(z, n)| format!("{}: {n} in", z.name))
                .collect(),
        )
    }
}

/// The ffmpeg encoding the replay, started at the first frame (when the size is known).
struct Encoder {
    child: Child,
    stdin: Option<ChildStdin>,
    size: (u32, u32),
    frames: u64,
    log: PathBuf,
}

impl Encoder {
    fn start(
        size: (u32, u32),
        fps: f64,
        container: Container,
        part: &Path,
        log: &Path,
    ) -> Result<Encoder> {
        let log_file = std::fs::File::create(log).map_err(|source| Error::Io {
            path: log.to_path_buf(),
            source,
        })?;
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo"])
            .args(["-pix_fmt", "rgb24", "-s", &format!("{}x{}", size.0, size.1)])
            .args(["-framerate", &format!("{fps}"), "-i", "-"])
            .args(container.args())
            .arg(part)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| Error::Frame(format!("cannot start ffmpeg to encode the replay: {e} (install it: apt-get install ffmpeg)")))?;
        let stdin = child.stdin.take();
        Ok(Encoder {
            child,
            stdin,
            size,
            frames: 0,
            log: log.to_path_buf(),
        })
    }

    fn write(&mut self, rgb: &[u8]) -> std::io::Result<()> {
        match &mut self.stdin {
            Some(s) => s.write_all(rgb),
            None => Err(std::io::Error::other("ffmpeg's input is closed")),
        }?;
        self.frames += 1;
        Ok(())
    }

    /// Close the input and wait; ffmpeg's own words when it failed.
    fn finish(mut self) -> std::result::Result<u64, String> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(self.frames)
        } else {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            Err(format!(
                "ffmpeg failed ({status}): {}",
                log.lines().take(5).collect::<Vec<_>>().join(" | ")
            ))
        }
    }
}

/// Everything the tap works with, shared with the caller for the end of the run.
struct Replay {
    tally: Tally,
    encoder: Option<Encoder>,
    error: Option<String>,
    /// Frames that came without pixels (an on-sensor source): nothing to draw.
    sizeless: u64,
    /// Frames whose size differs from the first (ffmpeg takes one size).
    resized: u64,
}

/// Most of the frame one hidden box may cover. The tracker's weak candidates (down to its low
/// threshold) are hidden too, so that a person the detector is unsure of is not shown; the few
/// of them that span much of the frame are groups of objects, not one person, and hiding them
/// would hide the scene.
const MAX_HIDDEN_AREA: f32 = 0.12;

/// Whether a detection's box is hidden (see [`MAX_HIDDEN_AREA`]).
pub(crate) fn might_be_a_person(b: [f32; 4]) -> bool {
    (b[2] - b[0]).abs() * (b[3] - b[1]).abs() <= MAX_HIDDEN_AREA
}

/// The video's frame rate, from ffprobe (`None` for other sources, or when it cannot say).
pub(crate) fn probe_fps(cfg: &Config) -> Option<f64> {
    let SourceConfig::Video { input, fps, .. } = &cfg.source else {
        return None;
    };
    if let Some(f) = fps {
        return Some(*f);
    }
    let path = match input {
        VideoInput::File(p) => p.as_os_str().to_owned(),
        VideoInput::Url(_) => return None,
    };
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=avg_frame_rate", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (n, d) = text.trim().split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then_some(n / d)
}

/// Run `ocellus annotate`.
pub(crate) fn run(args: &AnnotateArgs) -> Result<u8> {
    let container = Container::of(&args.out)?;
    if args.trail > MAX_TRAIL {
        return Err(Error::InvalidOption {
            name: "--trail".into(),
            message: format!("at most {MAX_TRAIL} positions, got {}", args.trail),
        });
    }
    if let Some(f) = args
        .fps
        .filter(|f| !(f.is_finite() && *f > 0.0 && *f <= 240.0))
    {
        return Err(Error::InvalidOption {
            name: "--fps".into(),
            message: format!("must be in (0, 240], got {f}"),
        });
    }
    let cfg = Config::load(&args.config)?;
    let fps = args.fps.or_else(|| probe_fps(&cfg)).unwrap_or(10.0);
    let (lines, zones) = (cfg.rules.lines.clone(), cfg.rules.zones.clone());
    let dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = args
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part = dir.join(format!(".{name}.part"));
    let log = dir.join(format!(".{name}.ffmpeg.log"));

    let state = Arc::new(Mutex::new(Replay {
        tally: Tally::new(lines.len(), zones.len()),
        encoder: None,
        error: None,
        sizeless: 0,
        resized: 0,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let tap = {
        let (state, stop) = (state.clone(), stop.clone());
        let (lines, zones) = (lines.clone(), zones.clone());
        let (blur, trail, part, log) = (!args.no_blur, args.trail, part.clone(), log.clone());
        TrackTap::new(move |seen: &TracksSeen<'_>| {
            let Ok(mut s) = state.lock() else {
                return;
            };
            s.tally.update(seen, (&lines, &zones), trail);
            let Some(image) = seen.image else {
                s.sizeless += 1;
                return;
            };
            let size = (image.width(), image.height());
            if s.encoder.is_none() && s.error.is_none() {
                match Encoder::start(size, fps, container, &part, &log) {
                    Ok(e) => s.encoder = Some(e),
                    Err(e) => s.error = Some(e.to_string()),
                }
            }
            if s.encoder.as_ref().is_some_and(|e| e.size != size) {
                s.resized += 1;
                return;
            }
            let hide: Vec<[f32; 4]> = seen
                .detections
                .iter()
                .filter(|d| might_be_a_person(d.bbox))
                .map(|d| d.bbox)
                .chain(seen.tracks.observed.iter().map(|t| t.bbox))
                .collect();
            let tracks: Vec<(u64, [f32; 4])> = seen
                .tracks
                .observed
                .iter()
                .map(|t| (t.id, t.bbox))
                .collect();
            let trails: Vec<(u64, Vec<[f32; 2]>)> = s
                .tally
                .trails
                .iter()
                .map(|(id, (p, _))| (*id, p.iter().copied().collect()))
                .collect();
            let (line_labels, zone_labels) = s.tally.labels(&lines, &zones);
            let scene = Scene {
                frame: image,
                hide: &hide,
                tracks: &tracks,
                lines: &lines,
                zones: &zones,
            };
            let decorations = Decorations {
                trails: &trails,
                line_labels: &line_labels,
                zone_labels: &zone_labels,
            };
            let drawn = snapshot::draw(&scene, &decorations, blur);
            let written = match (drawn, s.encoder.as_mut()) {
                (Ok(frame), Some(enc)) => enc.write(frame.data()).map_err(|e| e.to_string()),
                (Err(e), _) => Err(e.to_string()),
                (_, None) => Err("no encoder".into()),
            };
            if let Err(e) = written {
                if s.error.is_none() {
                    s.error = Some(e);
                }
                stop.store(true, Ordering::Relaxed);
            }
        })
    };
    replay(args, &cfg, tap, &stop)?;
    finish(args, &state, (&part, &log), (&lines, &zones))
}

fn replay(args: &AnnotateArgs, cfg: &Config, tap: TrackTap, stop: &AtomicBool) -> Result<()> {
    let opts = Options {
        max_frames: args.frames,
        tracks: Some(tap),
        tap_pixels: true,
        ..Default::default()
    };
    let bar = std::cell::RefCell::new(crate::run::ProgressBar::new());
    let summary = Deployment::from_config(cfg).replay(&opts, stop, |p| bar.borrow_mut().draw(p));
    bar.borrow().finish();
    let summary = summary?;
    eprintln!(
        "frames: {} processed at {:.1} fps",
        summary.frames_processed,
        summary.fps()
    );
    Ok(())
}

fn finish(
    args: &AnnotateArgs,
    state: &Mutex<Replay>,
    (part, log): (&Path, &Path),
    (lines, zones): (&[LineRule], &[ZoneRule]),
) -> Result<u8> {
    let Ok(mut s) = state.lock() else {
        return Err(Error::Frame("the replay's state was poisoned".into()));
    };
    let encoded = s.encoder.take().map(Encoder::finish);
    let _ = std::fs::remove_file(log);
    let failed = |message: String| {
        let _ = std::fs::remove_file(part);
        Err(Error::Frame(format!(
            "{}: {message}; nothing was written",
            args.out.display()
        )))
    };
    if let Some(e) = s.error.take() {
        return failed(e);
    }
    let frames = match encoded {
        None => {
            return failed(format!(
                "no frame had pixels to draw on ({} without)",
                s.sizeless
            ));
        }
        Some(Err(e)) => return failed(e),
        Some(Ok(n)) => n,
    };
    std::fs::rename(part, &args.out).map_err(|source| Error::Io {
        path: args.out.clone(),
        source,
    })?;
    if s.sizeless + s.resized > 0 {
        eprintln!(
            "warning: {} frames without pixels and {} of another size were left out",
            s.sizeless, s.resized
        );
    }
    let (line_labels, zone_labels) = s.tally.labels(lines, zones);
    eprintln!("wrote {} ({frames} frames)", args.out.display());
    for l in line_labels.iter().chain(&zone_labels) {
        eprintln!("  {l}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_file_name_picks_the_encoding() {
        assert_eq!(
            Container::of(Path::new("a/run.mp4")).unwrap(),
            Container::Mp4
        );
        assert_eq!(Container::of(Path::new("RUN.GIF")).unwrap(), Container::Gif);
        let e = Container::of(Path::new("run.avi")).unwrap_err().to_string();
        assert!(e.contains("--out") && e.contains(".mp4 or .gif"), "{e}");
    }
}
