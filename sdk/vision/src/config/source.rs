//! `[source]` and `[source.sprite]`: one parser per kind, filling in
//! [`SourceConfig`](crate::source::SourceConfig).

use std::ops::Range;
use std::path::{Path, PathBuf};

use ocellus_imx219::{Mode, TestPattern};
use serde::Deserialize;
use toml::Spanned;

use super::Cx;
use super::check::{Xy, int_in, resolve_path};
use crate::error::Result;
use crate::source::convert::PixelFormat;
use crate::source::{DEFAULT_SENSOR_ADDRESS, SensorBus, SourceConfig, SpriteConfig, VideoInput};

/// What `source.kind` may be.
const SOURCE_KINDS: &str =
    "use \"video\", \"images\", \"synthetic\", \"sensor\", \"v4l2\" or \"imx500\"";

/// `[source]` as written: the keys of every kind (which keys a kind takes is checked by
/// [`misplaced_source_key`], so a misplaced key is named with the kinds it belongs to).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    fps: Option<Spanned<f64>>,
    #[serde(rename = "loop")]
    looped: Option<Spanned<bool>>,
    width: Option<Spanned<i64>>,
    height: Option<Spanned<i64>>,
    frames: Option<Spanned<i64>>,
    objects: Option<Spanned<i64>>,
    seed: Option<Spanned<i64>>,
    bus: Option<Spanned<String>>,
    address: Option<Spanned<i64>>,
    video: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    exposure_us: Option<Spanned<f64>>,
    analog_gain_db: Option<Spanned<f64>>,
    auto_exposure: Option<Spanned<bool>>,
    test_pattern: Option<Spanned<String>>,
    device: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    sprite: Option<Spanned<RawSprite>>,
    capture: Option<Spanned<String>>,
    footage: Option<Spanned<String>>,
    stride: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSprite {
    image: Spanned<String>,
    from: Option<Spanned<Xy>>,
    to: Option<Spanned<Xy>>,
    size: Option<Spanned<f64>>,
    walk_s: Option<Spanned<f64>>,
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn quoted_or(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The first key (in file order) of `[source]` that `kind` does not use: its name, its span and
/// the kinds it applies to.
fn misplaced_source_key(
    raw: &RawSource,
    kind: &str,
) -> Option<(&'static str, Range<usize>, &'static [&'static str])> {
    const FILES: &[&str] = &["video", "images"];
    const SIZED: &[&str] = &["synthetic", "v4l2"];
    const SYNTHETIC: &[&str] = &["synthetic"];
    const SENSOR: &[&str] = &["sensor"];
    const V4L2: &[&str] = &["v4l2"];
    const DEVICE: &[&str] = &["v4l2", "imx500"];
    const IMX500: &[&str] = &["imx500"];
    fn at<T>(v: &Option<Spanned<T>>) -> Option<Range<usize>> {
        v.as_ref().map(Spanned::span)
    }
    let keys = [
        ("path", at(&raw.path), FILES),
        ("loop", at(&raw.looped), FILES),
        ("width", at(&raw.width), SIZED),
        ("height", at(&raw.height), SIZED),
        ("frames", at(&raw.frames), SYNTHETIC),
        ("objects", at(&raw.objects), SYNTHETIC),
        ("seed", at(&raw.seed), SYNTHETIC),
        ("bus", at(&raw.bus), SENSOR),
        ("address", at(&raw.address), SENSOR),
        ("video", at(&raw.video), SENSOR),
        ("mode", at(&raw.mode), SENSOR),
        ("exposure_us", at(&raw.exposure_us), SENSOR),
        ("analog_gain_db", at(&raw.analog_gain_db), SENSOR),
        ("auto_exposure", at(&raw.auto_exposure), SENSOR),
        ("test_pattern", at(&raw.test_pattern), SENSOR),
        ("device", at(&raw.device), DEVICE),
        ("format", at(&raw.format), V4L2),
        ("sprite", at(&raw.sprite), SENSOR),
        ("capture", at(&raw.capture), IMX500),
        ("footage", at(&raw.footage), IMX500),
        ("stride", at(&raw.stride), IMX500),
    ];
    keys.into_iter()
        .filter(|(_, _, kinds)| !kinds.contains(&kind))
        .filter_map(|(name, span, kinds)| span.map(|s| (name, s, kinds)))
        .min_by_key(|(_, s, _)| s.start)
}

/// `[source]`: the kind, the keys it takes, then the kind's own parser.
pub(super) fn parse(cx: &Cx<'_>, raw: &Spanned<RawSource>, dir: &Path) -> Result<SourceConfig> {
    let span = raw.span();
    let raw = raw.get_ref();
    let kind = raw.kind.get_ref().as_str();
    if !matches!(
        kind,
        "video" | "images" | "synthetic" | "sensor" | "v4l2" | "imx500"
    ) {
        return Err(cx.at(
            &raw.kind,
            "source.kind",
            format!("\"{kind}\" is not a source kind; {SOURCE_KINDS}"),
        ));
    }
    if let Some((name, key_span, kinds)) = misplaced_source_key(raw, kind) {
        return Err(cx.err(
            Some(key_span),
            &format!("source.{name}"),
            format!(
                "only applies to kind = {}, not \"{kind}\"; remove it",
                quoted_or(kinds)
            ),
        ));
    }
    let fps = source_fps(cx, raw)?;
    match kind {
        "sensor" => sensor_source(cx, raw, fps, dir),
        "v4l2" => v4l2_source(cx, raw, span, fps, dir),
        "synthetic" => synthetic_source(cx, raw, fps),
        "imx500" => imx500_source(cx, raw, span, fps, dir),
        _ => file_source(cx, raw, kind, span, fps, dir),
    }
}

/// `source.fps`, the general bound (a sensor checks its mode's range later).
fn source_fps(cx: &Cx<'_>, raw: &RawSource) -> Result<Option<f64>> {
    let Some(f) = &raw.fps else {
        return Ok(None);
    };
    let v = *f.get_ref();
    if !(v > 0.0 && v <= 1000.0) {
        return Err(cx.at(
            f,
            "source.fps",
            format!("must be more than 0 and at most 1000 (frames per second), got {v}"),
        ));
    }
    Ok(Some(v))
}

/// `kind = "synthetic"`: every key has a default.
fn synthetic_source(cx: &Cx<'_>, raw: &RawSource, fps: Option<f64>) -> Result<SourceConfig> {
    let opt = |v: &Option<Spanned<i64>>, key: &str, lo: i64, hi: i64, default: i64| match v {
        Some(v) => int_in(cx, v, key, lo, hi),
        None => Ok(default),
    };
    Ok(SourceConfig::Synthetic {
        width: opt(&raw.width, "source.width", 16, 4096, 640)? as u32,
        height: opt(&raw.height, "source.height", 16, 4096, 480)? as u32,
        frames: opt(&raw.frames, "source.frames", 1, 1_000_000, 300)? as u64,
        objects: opt(&raw.objects, "source.objects", 1, 64, 3)? as u32,
        seed: opt(&raw.seed, "source.seed", 0, i64::MAX, 0)? as u64,
        fps,
    })
}

/// `kind = "video"` or `"images"`: a path on this device, or (video only) an RTSP URL.
fn file_source(
    cx: &Cx<'_>,
    raw: &RawSource,
    kind: &str,
    section: Range<usize>,
    fps: Option<f64>,
    dir: &Path,
) -> Result<SourceConfig> {
    let Some(p) = &raw.path else {
        let what = if kind == "video" {
            "a video file or an rtsp:// URL"
        } else {
            "a directory of images or a glob such as \"frames/*.png\""
        };
        return Err(cx.err(
            Some(section),
            "source.path",
            format!("is required for kind = \"{kind}\": {what}"),
        ));
    };
    if let Some((scheme, rest)) = p.get_ref().split_once("://") {
        return stream_source(cx, raw, kind, p, (scheme, rest), fps);
    }
    let looped = raw.looped.as_ref().is_some_and(|l| *l.get_ref());
    let resolved = resolve_path(cx, p, "source.path", dir)?;
    Ok(if kind == "video" {
        SourceConfig::Video {
            input: VideoInput::File(resolved),
            fps,
            looped,
        }
    } else {
        SourceConfig::Images {
            pattern: resolved,
            fps,
            looped,
        }
    })
}

/// A `source.path` with a scheme: only `rtsp://` and `rtsps://`, for `kind = "video"`.
fn stream_source(
    cx: &Cx<'_>,
    raw: &RawSource,
    kind: &str,
    p: &Spanned<String>,
    (scheme, rest): (&str, &str),
    fps: Option<f64>,
) -> Result<SourceConfig> {
    let text = p.get_ref().as_str();
    let scheme = scheme.to_ascii_lowercase();
    if kind != "video" || !(scheme == "rtsp" || scheme == "rtsps") {
        let allowed = if kind == "video" {
            "a file path or an rtsp:// or rtsps:// URL"
        } else {
            "a directory or a glob on this device"
        };
        return Err(cx.at(
            p,
            "source.path",
            format!(
                "\"{text}\": {scheme}:// is not supported for kind = \"{kind}\"; use {allowed}"
            ),
        ));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(cx.at(
            p,
            "source.path",
            format!("\"{text}\" has no host; write it as {scheme}://HOST[:PORT]/STREAM"),
        ));
    }
    if let Some(l) = &raw.looped {
        return Err(cx.at(
            l,
            "source.loop",
            "only applies to files, not to a stream URL; remove it",
        ));
    }
    Ok(SourceConfig::Video {
        input: VideoInput::Url(text.to_owned()),
        fps,
        looped: false,
    })
}

/// A device node (`source.device`, `source.video`): a local path, resolved like other paths.
fn device_path(cx: &Cx<'_>, v: &Spanned<String>, key: &str, dir: &Path) -> Result<PathBuf> {
    if v.get_ref().contains("://") {
        return Err(cx.at(
            v,
            key,
            format!(
                "\"{}\" is a URL; give a device node on this machine, e.g. \"/dev/video0\" (a stream is kind = \"video\")",
                v.get_ref()
            ),
        ));
    }
    resolve_path(cx, v, key, dir)
}

/// `source.address`: a 7-bit I2C address outside the reserved ranges.
fn i2c_address(cx: &Cx<'_>, v: &Spanned<i64>) -> Result<u8> {
    let a = *v.get_ref();
    match u8::try_from(a) {
        Ok(a) if (0x08..=0x77).contains(&a) => Ok(a),
        _ => {
            let shown = if a >= 0 {
                format!("{a:#04x}")
            } else {
                a.to_string()
            };
            Err(cx.at(
                v,
                "source.address",
                format!(
                    "{shown} is outside 0x08..=0x77 (a 7-bit I2C address; the IMX219 answers at {DEFAULT_SENSOR_ADDRESS:#04x})"
                ),
            ))
        }
    }
}

/// `kind = "sensor"`: the IMX219, simulated (`bus = "sim"`) or on a Linux I2C adapter.
fn sensor_source(
    cx: &Cx<'_>,
    raw: &RawSource,
    fps: Option<f64>,
    dir: &Path,
) -> Result<SourceConfig> {
    let bus = sensor_bus(cx, raw)?;
    let video = sensor_video(cx, raw, &bus, dir)?;
    let mode = sensor_mode(cx, raw)?;
    let fps = sensor_fps(cx, raw, fps, mode)?;
    let exposure_us = match &raw.exposure_us {
        Some(e) if !(*e.get_ref() > 0.0 && *e.get_ref() <= 1_000_000.0) => {
            return Err(cx.at(
                e,
                "source.exposure_us",
                "must be more than 0 and at most 1000000 (µs)",
            ));
        }
        Some(e) => Some(*e.get_ref()),
        None => None,
    };
    let analog_gain_db = match &raw.analog_gain_db {
        Some(g) if !(0.0..=20.6).contains(g.get_ref()) => {
            return Err(cx.at(g, "source.analog_gain_db", "must be within 0..=20.6 dB"));
        }
        Some(g) => Some(*g.get_ref()),
        None => None,
    };
    let auto_exposure = raw.auto_exposure.as_ref().is_some_and(|a| *a.get_ref());
    let test_pattern = test_pattern(cx, raw)?;
    let sprite = match &raw.sprite {
        None => None,
        Some(sp) if bus != SensorBus::Sim => {
            return Err(cx.at(
                sp,
                "source.sprite",
                "only applies with bus = \"sim\": a real sensor sees the real world; remove it",
            ));
        }
        Some(sp) => Some(sprite(cx, sp.get_ref(), dir)?),
    };
    Ok(SourceConfig::Sensor {
        sprite,
        bus,
        video,
        mode,
        fps,
        exposure_us,
        analog_gain_db,
        auto_exposure,
        test_pattern,
    })
}

/// `source.bus` (and `source.address`, which only a real bus has).
fn sensor_bus(cx: &Cx<'_>, raw: &RawSource) -> Result<SensorBus> {
    match raw.bus.as_ref() {
        Some(b) if Path::new(b.get_ref()).is_absolute() => Ok(SensorBus::Linux {
            path: PathBuf::from(b.get_ref()),
            address: match &raw.address {
                Some(a) => i2c_address(cx, a)?,
                None => DEFAULT_SENSOR_ADDRESS,
            },
        }),
        Some(b) if b.get_ref() != "sim" => Err(cx.at(
            b,
            "source.bus",
            format!(
                "\"{}\": use \"sim\" (the simulated IMX219) or the absolute path of a Linux I2C adapter, e.g. \"/dev/i2c-1\"",
                b.get_ref()
            ),
        )),
        _ => match &raw.address {
            Some(a) => Err(cx.at(
                a,
                "source.address",
                "does not apply with bus = \"sim\" (the simulated IMX219 has no I2C address); remove it, or set `source.bus` to the I2C adapter, e.g. \"/dev/i2c-1\"",
            )),
            None => Ok(SensorBus::Sim),
        },
    }
}

/// `source.video`: required on a real bus, refused with the simulator.
fn sensor_video(
    cx: &Cx<'_>,
    raw: &RawSource,
    bus: &SensorBus,
    dir: &Path,
) -> Result<Option<PathBuf>> {
    match (bus, &raw.video) {
        (SensorBus::Sim, Some(v)) => Err(cx.at(
            v,
            "source.video",
            "does not apply with bus = \"sim\": the simulated IMX219 makes its own pixels; remove it",
        )),
        (SensorBus::Sim, None) => Ok(None),
        (SensorBus::Linux { .. }, Some(v)) => Ok(Some(device_path(cx, v, "source.video", dir)?)),
        (SensorBus::Linux { path, .. }, None) => Err(cx.err(
            raw.bus.as_ref().map(Spanned::span),
            "source.video",
            format!(
                "is required with bus = \"{}\": the V4L2 device the sensor's pixels arrive on, e.g. \"/dev/video0\"",
                path.display()
            ),
        )),
    }
}

/// `source.mode`, by its size as the pilot knows it.
fn sensor_mode(cx: &Cx<'_>, raw: &RawSource) -> Result<Mode> {
    let Some(m) = raw.mode.as_ref() else {
        return Ok(Mode::Binned640x480);
    };
    match m.get_ref().as_str() {
        "3280x2464" => Ok(Mode::Full3280x2464),
        "1920x1080" => Ok(Mode::Crop1920x1080),
        "1640x1232" => Ok(Mode::Binned1640x1232),
        "640x480" => Ok(Mode::Binned640x480),
        other => Err(cx.at(
            m,
            "source.mode",
            format!(
                "\"{other}\" is not an IMX219 mode; use \"3280x2464\", \"1920x1080\", \"1640x1232\" or \"640x480\""
            ),
        )),
    }
}

/// The sensor's frame rate (default 30), within what the driver does in `mode`.
fn sensor_fps(cx: &Cx<'_>, raw: &RawSource, fps: Option<f64>, mode: Mode) -> Result<f64> {
    let fps = fps.unwrap_or(30.0);
    if fps < Mode::min_frame_rate() as f64 || fps > mode.max_frame_rate() as f64 {
        let key_span = raw.fps.as_ref().map(|f| f.span());
        return Err(cx.err(
            key_span,
            "source.fps",
            format!(
                "{fps} fps is outside what the IMX219 does in mode {}x{} ({:.2}..={:.2} fps)",
                mode.width(),
                mode.height(),
                Mode::min_frame_rate(),
                mode.max_frame_rate()
            ),
        ));
    }
    Ok(fps)
}

/// `source.test_pattern`: the driver's patterns by the names the config uses (the driver's solid
/// colour is not offered: it needs four values and tells nothing the colour bars do not).
fn test_pattern(cx: &Cx<'_>, raw: &RawSource) -> Result<TestPattern> {
    let Some(p) = raw.test_pattern.as_ref() else {
        return Ok(TestPattern::None);
    };
    match p.get_ref().as_str() {
        "none" => Ok(TestPattern::None),
        "colour-bars" => Ok(TestPattern::ColourBars),
        "fade-to-grey" => Ok(TestPattern::FadeToGreyColourBars),
        "pn9" => Ok(TestPattern::Pn9),
        other => Err(cx.at(
            p,
            "source.test_pattern",
            format!("\"{other}\": use \"none\", \"colour-bars\", \"fade-to-grey\" or \"pn9\""),
        )),
    }
}

/// `[source.sprite]`.
fn sprite(cx: &Cx<'_>, raw: &RawSprite, dir: &Path) -> Result<SpriteConfig> {
    let image = resolve_path(cx, &raw.image, "source.sprite.image", dir)?;
    let point = |v: &Option<Spanned<Xy>>, key: &str, default: [f32; 2]| match v {
        None => Ok(default),
        Some(p) if p.get_ref().iter().all(|c| (0.0..=1.0).contains(c)) => {
            Ok([p.get_ref()[0] as f32, p.get_ref()[1] as f32])
        }
        Some(p) => Err(cx.at(
            p,
            key,
            "both coordinates must be within 0..=1 (fractions of the frame)",
        )),
    };
    let from = point(&raw.from, "source.sprite.from", [0.15, 0.5])?;
    let to = point(&raw.to, "source.sprite.to", [0.85, 0.5])?;
    let size = match &raw.size {
        None => 0.6,
        Some(v) if (0.05..=1.0).contains(v.get_ref()) => *v.get_ref() as f32,
        Some(v) => {
            return Err(cx.at(
                v,
                "source.sprite.size",
                "must be within 0.05..=1 (a fraction of the frame height)",
            ));
        }
    };
    let walk = match &raw.walk_s {
        None => std::time::Duration::from_secs(6),
        Some(v) if (0.0..=3600.0).contains(v.get_ref()) => {
            std::time::Duration::from_secs_f64(*v.get_ref())
        }
        Some(v) => {
            return Err(cx.at(
                v,
                "source.sprite.walk_s",
                "must be within 0..=3600 (seconds)",
            ));
        }
    };
    Ok(SpriteConfig {
        image,
        from,
        to,
        size,
        walk,
    })
}

/// `kind = "v4l2"`: a V4L2 capture device.
fn v4l2_source(
    cx: &Cx<'_>,
    raw: &RawSource,
    section: Range<usize>,
    fps: Option<f64>,
    dir: &Path,
) -> Result<SourceConfig> {
    let Some(d) = &raw.device else {
        return Err(cx.err(
            Some(section),
            "source.device",
            "is required for kind = \"v4l2\": the capture device node, e.g. \"/dev/video0\"",
        ));
    };
    let device = device_path(cx, d, "source.device", dir)?;
    let format = match &raw.format {
        None => None,
        Some(f) => Some(PixelFormat::from_name(f.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = PixelFormat::ALL.iter().map(|p| p.name()).collect();
            cx.at(
                f,
                "source.format",
                format!(
                    "\"{}\" is not a pixel format; use {}, or remove the key to let the source pick the best the device offers",
                    f.get_ref(),
                    quoted_or(&names)
                ),
            )
        })?),
    };
    let size = v4l2_size(cx, raw)?;
    Ok(SourceConfig::V4l2 {
        device,
        format,
        size,
        fps,
    })
}

/// `kind = "imx500"`: a sensor that runs the network itself; its DNN lines from a capture, the
/// simulator (footage through the `[model]` card's network) or the board's embedded-data node.
fn imx500_source(
    cx: &Cx<'_>,
    raw: &RawSource,
    section: Range<usize>,
    fps: Option<f64>,
    dir: &Path,
) -> Result<SourceConfig> {
    use crate::imx500::{Imx500Settings, STRIDE_2560, TensorFeed};
    let given: Vec<(&str, &Spanned<String>)> = [
        ("capture", &raw.capture),
        ("footage", &raw.footage),
        ("device", &raw.device),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let what = "where the sensor's tensors come from: `capture` (a recording from `ocellus sim imx500 --out FILE`), `footage` (the simulated IMX500 on a video file) or `device` (the embedded-data node of an IMX500 on this board, e.g. \"/dev/video1\")";
    let feed = match given.as_slice() {
        [] => {
            return Err(cx.err(
                Some(section),
                "source.capture",
                format!("kind = \"imx500\" needs one of {what}"),
            ));
        }
        [("capture", v)] => TensorFeed::Capture(resolve_path(cx, v, "source.capture", dir)?),
        [("footage", v)] => TensorFeed::Simulator(resolve_path(cx, v, "source.footage", dir)?),
        [(_, v)] => TensorFeed::Device(device_path(cx, v, "source.device", dir)?),
        [_, (second, v), ..] => {
            return Err(cx.at(
                v,
                &format!("source.{second}"),
                format!("give only one of {what}"),
            ));
        }
    };
    let stride = match &raw.stride {
        Some(v) => int_in(cx, v, "source.stride", 64, 65_535)? as usize,
        None => STRIDE_2560,
    };
    Ok(SourceConfig::Imx500(Imx500Settings { feed, stride, fps }))
}

/// `source.width` and `source.height` of a V4L2 device: both or neither.
fn v4l2_size(cx: &Cx<'_>, raw: &RawSource) -> Result<Option<(u32, u32)>> {
    let both =
        "give both `source.width` and `source.height`, or neither for the device's current size";
    match (&raw.width, &raw.height) {
        (None, None) => Ok(None),
        (Some(w), Some(h)) => Ok(Some((
            int_in(cx, w, "source.width", 16, 8192)? as u32,
            int_in(cx, h, "source.height", 16, 8192)? as u32,
        ))),
        (Some(w), None) => Err(cx.at(
            w,
            "source.height",
            format!("is missing but `source.width` is set; {both}"),
        )),
        (None, Some(h)) => Err(cx.at(
            h,
            "source.width",
            format!("is missing but `source.height` is set; {both}"),
        )),
    }
}
