//! Hostile input everywhere the outside world touches ocellus: camera buffers and image files,
//! model cards and model files, model outputs, names that end up in MQTT topics, and configs.
//! Each case must end in a clear error (or a harmless result), never in a panic, an abort or an
//! allocation sized by a lying header. See docs/reliability.md, "Hostile input".
//!
//! The test binary counts, per thread, the largest single allocation, so that "refused before
//! allocating" is checked, not assumed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ocellus::card::ModelCard;
use ocellus::config::Config;
use ocellus::event::Event;
use ocellus::infer::{Detection, Detector, DetectorOptions};
use ocellus::rules::{LineRule, RuleEvent, RuleEventKind, Rules, RulesConfig, ZoneRule};
use ocellus::source::convert::{Layout, PixelFormat, required_bytes, to_rgb};
use ocellus::source::{ImageSource, Source, SyntheticSource};
use ocellus::track::{Track, TrackState, Tracker, TrackerConfig, TrackerOutput};
use ocellus::{Error, RgbFrame, RgbView};

// ---------------------------------------------------------------------------------------------
// Largest allocation per thread

/// The system allocator, noting the largest single request of each thread.
struct Largest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: a thread being torn down may still allocate. A const-initialised `Cell<usize>`
    // has no destructor and never allocates, so this is safe inside the allocator.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// Run `f` and return its result with the largest single allocation it made (on this thread).
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Helpers

fn layout(format: PixelFormat, width: u32, height: u32, bytes_per_line: u32) -> Layout {
    Layout {
        format,
        width,
        height,
        bytes_per_line,
    }
}

fn frame_error(r: ocellus::Result<RgbFrame>) -> String {
    match r {
        Err(Error::Frame(m)) => m,
        Err(e) => panic!("not a frame error: {e:?}"),
        Ok(f) => panic!("converted to {}x{}", f.width(), f.height()),
    }
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, mut state: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let rgb = noise((width * height * 3) as usize, 7);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&rgb, width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img =
        image::RgbImage::from_raw(width, height, noise((width * height * 3) as usize, 3)).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A PNG that is only a signature, an IHDR claiming `width` x `height` RGB, the first bytes of a
/// deflate stream and an IEND: a decoder that trusts the header allocates for all the pixels
/// before it finds out there are none.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, adaptive, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9C, 0x63, 0x60, 0x18, 0x05]);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The JPEG with the size in its baseline frame header (SOF0) replaced.
fn with_jpeg_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut patched = jpeg.to_vec();
    patched[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    patched[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    patched
}

// ---------------------------------------------------------------------------------------------
// 1. Frames: corrupt, truncated, and whose buffer does not fit its header

#[test]
fn huge_frame_headers_are_refused_before_anything_is_allocated() {
    let data = noise(4096, 1);
    // (width, height, bytes_per_line, whether the layout itself is impossible)
    let huge = [
        (65_535, 65_535, 0, true),
        (65_536, 65_536, 0, true), // width * height = 2^32: overflows 32-bit arithmetic
        (u32::MAX, u32::MAX, u32::MAX, true),
        (16_384, 16_384, 0, true), // each side allowed, but 268 Mpx: above MAX_FRAME_PIXELS
        (0, 0, 0, true),
        (0, 480, 0, true),
        // Possible layouts whose stride asks for terabytes: refused by the buffer's length.
        (16_384, 4_096, u32::MAX, false),
        (2, 2, u32::MAX, false),
    ];
    for format in PixelFormat::ALL {
        for (w, h, stride, impossible) in huge {
            let l = layout(format, w, h, stride);
            let (message, largest) = largest_allocation(|| frame_error(to_rgb(&l, &data)));
            assert!(
                message.starts_with(&format!("{format} {w}x{h}: ")),
                "{message}"
            );
            assert!(largest < MIB, "{format} {w}x{h}: allocated {largest} bytes");
            if format == PixelFormat::Mjpeg || impossible {
                assert_eq!(required_bytes(&l), None, "{format} {w}x{h}");
            }
        }
    }
    for (w, h) in [(65_535, 65_535), (u32::MAX, 2), (16_384, 16_384), (0, 1)] {
        let (r, largest) = largest_allocation(|| RgbFrame::new(w, h, Vec::new()));
        let message = frame_error(r.map_err(Into::into));
        assert!(message.starts_with(&format!("{w}x{h}")), "{message}");
        assert!(largest < MIB);
        assert!(RgbView::new(w, h, &[]).is_err());
    }
}

#[test]
fn buffers_of_the_wrong_size_for_their_header_are_errors() {
    for format in PixelFormat::ALL {
        if format == PixelFormat::Mjpeg {
            continue;
        }
        for stride in [0, 100] {
            let l = layout(format, 32, 8, stride);
            let needed = required_bytes(&l).unwrap();
            for len in [0, 1, needed / 3, needed - 1] {
                let message = frame_error(to_rgb(&l, &noise(len, 2)));
                assert_eq!(
                    message,
                    format!("{format} 32x8: {len} bytes, need {needed}"),
                    "stride {stride}"
                );
            }
            // Longer is fine (drivers round buffer sizes up), and the frame has the header's size.
            let frame = to_rgb(&l, &noise(needed + 999, 2)).unwrap();
            assert_eq!((frame.width(), frame.height()), (32, 8));
            assert_eq!(frame.data().len(), 32 * 8 * 3);
        }
    }
    // An RGB buffer one byte short or long of width * height * 3.
    for len in [32 * 8 * 3 - 1, 32 * 8 * 3 + 1, 0] {
        let message = frame_error(RgbFrame::new(32, 8, vec![0; len]).map_err(Into::into));
        assert!(message.contains(&format!("got {len}")), "{message}");
    }
}

#[test]
fn mjpeg_claiming_65535_squared_is_refused_from_its_header() {
    let real = jpeg(64, 32);
    let huge = with_jpeg_size(&real, 65_535, 65_535);
    let l = layout(PixelFormat::Mjpeg, 64, 32, 0);
    let (message, largest) = largest_allocation(|| frame_error(to_rgb(&l, &huge)));
    assert_eq!(
        message,
        "mjpeg 64x32: the JPEG is 65535x65535, not the negotiated size"
    );
    // Decoding it would take 12 GiB; comparing its header takes a copy of its bytes.
    assert!(largest < 8 * MIB, "allocated {largest} bytes");
    // The negotiated size itself out of bounds: refused before the JPEG is read.
    for (w, h) in [(65_535, 65_535), (16_384, 16_384)] {
        let l = layout(PixelFormat::Mjpeg, w, h, 0);
        let (message, largest) = largest_allocation(|| frame_error(to_rgb(&l, &huge)));
        assert!(!message.contains("JPEG is"), "{message}");
        assert!(largest < MIB, "allocated {largest} bytes");
    }
}

#[test]
fn corrupt_and_truncated_mjpeg_frames_are_errors() {
    let real = jpeg(64, 32);
    let l = layout(PixelFormat::Mjpeg, 64, 32, 0);
    assert!(to_rgb(&l, &real).is_ok());
    for data in [
        Vec::new(),
        noise(5000, 9),
        b"\xFF\xD8\xFF".to_vec(),
        real[..20].to_vec(),
    ] {
        let message = frame_error(to_rgb(&l, &data));
        assert!(message.starts_with("mjpeg 64x32: "), "{message}");
    }
    // Cut anywhere, or with bytes flipped: an error or a 64x32 frame, never a panic.
    for cut in (0..real.len()).step_by(17) {
        if let Ok(f) = to_rgb(&l, &real[..cut]) {
            assert_eq!((f.width(), f.height()), (64, 32));
        }
    }
    for at in (0..real.len()).step_by(11) {
        let mut damaged = real.clone();
        damaged[at] ^= 0x5A;
        if let Ok(f) = to_rgb(&l, &damaged) {
            assert_eq!((f.width(), f.height()), (64, 32));
        }
    }
}

#[test]
fn image_source_skips_and_counts_corrupt_truncated_foreign_and_huge_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = png(8, 4);
    let big = png(96, 64);
    let files: [(&str, Vec<u8>); 9] = [
        ("a-good.png", good.clone()),
        ("b-random.png", noise(3000, 5)),
        ("c-truncated.png", big[..big.len() / 2].to_vec()),
        ("d-text.png", b"this is not an image\n".to_vec()),
        ("e-empty.png", Vec::new()),
        // 12000 x 12000 RGB: 432 MB decoded; the header alone must not make us allocate that.
        ("f-huge-header.png", png_header_only(12_000, 12_000)),
        ("g-too-wide.png", png_header_only(70_000, 1)),
        ("h-jpeg-named-png.png", jpeg(16, 8)), // a real image under the wrong name: fine
        ("i-good.png", good),
    ];
    for (name, data) in &files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let mut source =
        ImageSource::open(&dir.path().join("*.png").to_string_lossy(), None, false).unwrap();
    let (sizes, largest) = largest_allocation(|| {
        let mut sizes = Vec::new();
        while let Some(frame) = source.next_frame().unwrap() {
            sizes.push((
                frame.image.as_ref().unwrap().width(),
                frame.image.as_ref().unwrap().height(),
            ));
        }
        sizes
    });
    assert_eq!(sizes, vec![(8, 4), (16, 8), (8, 4)]);
    assert_eq!(source.stats().skipped, 6);
    assert!(largest < 64 * MIB, "allocated {largest} bytes");
    // The loader says which file and why.
    let e = ocellus::source::load_image(&dir.path().join("f-huge-header.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("f-huge-header.png"), "{e}");
    let e = ocellus::source::load_image(&dir.path().join("b-random.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("b-random.png"), "{e}");
}

#[test]
fn corrupt_and_truncated_video_files() {
    let dir = tempfile::tempdir().unwrap();
    // Random bytes: ffprobe refuses, the error names the file.
    let junk = dir.path().join("junk.avi");
    std::fs::write(&junk, noise(100_000, 11)).unwrap();
    let e = ocellus::source::FfmpegSource::open(&junk.to_string_lossy(), None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("junk.avi"), "{e}");
    assert!(ocellus::source::read_video_frames(&junk, 0, 1).is_err());
    // A real video cut short: the frames before the cut, then the end; no panic, no error.
    let full = std::fs::read(common::footage("vtest.avi")).unwrap();
    let cut = dir.path().join("cut.avi");
    std::fs::write(&cut, &full[..full.len().min(400_000)]).unwrap();
    if let Ok(mut source) = ocellus::source::FfmpegSource::open(&cut.to_string_lossy(), None, false)
    {
        let (w, h) = (source.info().width, source.info().height);
        let mut n = 0;
        while let Ok(Some(frame)) = source.next_frame() {
            assert_eq!(
                (
                    frame.image.as_ref().unwrap().width(),
                    frame.image.as_ref().unwrap().height()
                ),
                (w, h)
            );
            n += 1;
            assert!(n < 2000, "a 400 kB file does not hold {n} frames");
        }
    }
}

#[test]
fn synthetic_source_with_an_absurd_frame_rate_does_not_panic() {
    // 1e-300 frames/s: frame 1 would be 1e300 s in, beyond what a Duration holds.
    for fps in [1e-300, f64::MIN_POSITIVE, 5e-324] {
        let mut s = SyntheticSource::new(16, 16, 3, 1, 0, fps, false).unwrap();
        let mut last = Duration::ZERO;
        while let Some(frame) = s.next_frame().unwrap() {
            assert!(frame.t >= last);
            last = frame.t;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Model cards and model files

/// Write `model` as `<name>` and a YOLO card for it (64x64 NCHW float input named `images`,
/// output `output0`, 2 classes) with the sha256 of `sha_of`; returns the card's path.
fn write_yolo_card(dir: &Path, name: &str, model: &[u8], sha_of: &[u8], extra: &str) -> PathBuf {
    std::fs::write(dir.join(name), model).unwrap();
    let card = format!(
        r#"
schema = "ocellus.model-card/1"
name = "hostile"
file = "{name}"
sha256 = "{sha}"
licence = "Apache-2.0"
[source]
registry = "local"
package = "ocellus tests"
recipe = "sdk/cli/tests/hostile.rs"
[input]
name = "images"
layout = "nchw"
dtype = "float32"
width = 64
height = 64
resize = "letterbox"
pad = 114
[output]
decoder = "yolo"
output = "output0"
score_threshold = 0.25
{extra}
[labels]
0 = "person"
1 = "car"
"#,
        sha = common::onnx::sha256_hex(sha_of)
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, card).unwrap();
    path
}

fn yolo_model(data: &[f32], n: i64) -> Vec<u8> {
    common::onnx::constant_model("images", &[1, 3, 64, 64], "output0", &[1, 6, n], data)
}

fn detector_error(card: &Path) -> Error {
    let card = ModelCard::load(card).unwrap();
    Detector::new(common::runtime(), &card, &DetectorOptions::default()).unwrap_err()
}

#[test]
fn card_pointing_at_a_missing_file_says_where_it_looked_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let card = write_yolo_card(dir.path(), "gone.onnx", b"", b"", "");
    std::fs::remove_file(dir.path().join("gone.onnx")).unwrap();
    let e = detector_error(&card);
    assert!(matches!(e, Error::ModelMissing { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.contains(&card.display().to_string()), "{message}");
    assert!(
        message.contains(&dir.path().join("gone.onnx").display().to_string()),
        "{message}"
    );
    assert!(message.contains("models/provision.sh"), "{message}");
}

#[test]
fn foreign_files_renamed_onnx_are_refused_naming_card_file_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let real = yolo_model(&[0.0; 6], 1);
    let cases: [(&str, Vec<u8>, Option<&str>); 7] = [
        ("png.onnx", png(8, 8), Some("a PNG image")),
        ("jpeg.onnx", jpeg(8, 8), Some("a JPEG image")),
        ("random.onnx", noise(10_000, 13), None),
        ("empty.onnx", Vec::new(), Some("an empty file")),
        ("truncated.onnx", real[..real.len() / 2].to_vec(), None),
        (
            "lfs.onnx",
            b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n".to_vec(),
            Some("Git LFS pointer"),
        ),
        (
            "html.onnx",
            b"<!DOCTYPE html><html><body>404</body></html>".to_vec(),
            Some("an HTML page"),
        ),
    ];
    for (name, bytes, looks) in cases {
        // The card's sha256 is the file's: the checksum passes and ONNX Runtime gets the file.
        let card = write_yolo_card(dir.path(), name, &bytes, &bytes, "");
        let e = detector_error(&card);
        assert!(matches!(e, Error::ModelLoad { .. }), "{name}: {e:?}");
        assert_eq!(e.fault(), ocellus::Fault::Model);
        let message = e.to_string();
        assert!(message.contains(name), "{message}");
        assert!(
            message.contains(&card.display().to_string()),
            "{name}: {message}"
        );
        assert!(message.contains("models/provision.sh"), "{name}: {message}");
        if let Some(looks) = looks {
            assert!(message.contains(looks), "{name}: {message}");
        }
    }
}

#[test]
fn sha256_mismatch_names_card_file_both_sums_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let model = yolo_model(&[0.0; 6], 1);
    let card = write_yolo_card(dir.path(), "m.onnx", &model, b"another model", "");
    let e = detector_error(&card);
    assert!(matches!(e, Error::ModelChecksum { .. }), "{e:?}");
    let message = e.to_string();
    for part in [
        card.display().to_string(),
        dir.path().join("m.onnx").display().to_string(),
        common::onnx::sha256_hex(&model),
        common::onnx::sha256_hex(b"another model"),
        "models/provision.sh".to_owned(),
    ] {
        assert!(message.contains(&part), "{part} missing: {message}");
    }
}

#[test]
fn models_with_other_inputs_or_outputs_than_the_card_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let out = [0.0f32; 6];
    let cases = [
        (
            "name.onnx",
            common::onnx::constant_model("pixels", &[1, 3, 64, 64], "output0", &[1, 6, 1], &out),
            vec!["`images`", "pixels", "input.name"],
        ),
        (
            "size.onnx",
            common::onnx::constant_model("images", &[1, 3, 32, 32], "output0", &[1, 6, 1], &out),
            vec!["[1, 3, 32, 32]", "[1, 3, 64, 64]", "input.width"],
        ),
        (
            "layout.onnx",
            common::onnx::constant_model("images", &[1, 64, 64, 3], "output0", &[1, 6, 1], &out),
            vec!["[1, 64, 64, 3]", "input.layout"],
        ),
        (
            "rank.onnx",
            common::onnx::constant_model("images", &[3, 64, 64], "output0", &[1, 6, 1], &out),
            vec!["[3, 64, 64]"],
        ),
        (
            "output.onnx",
            common::onnx::constant_model("images", &[1, 3, 64, 64], "boxes", &[1, 6, 1], &out),
            vec!["`output0`", "boxes"],
        ),
    ];
    for (name, model, parts) in cases {
        let card = write_yolo_card(dir.path(), name, &model, &model, "");
        let e = detector_error(&card);
        assert!(matches!(e, Error::ModelMismatch { .. }), "{name}: {e:?}");
        let message = e.to_string();
        assert!(message.contains(name), "{message}");
        assert!(
            message.contains(&card.display().to_string()),
            "{name}: {message}"
        );
        for part in parts {
            assert!(message.contains(part), "{name}: {part} missing: {message}");
        }
    }
    // A uint8 card for a float model.
    let model = yolo_model(&out, 1);
    let card = write_yolo_card(dir.path(), "dtype.onnx", &model, &model, "");
    let text = std::fs::read_to_string(&card)
        .unwrap()
        .replace("dtype = \"float32\"", "dtype = \"uint8\"");
    std::fs::write(&card, text).unwrap();
    let message = detector_error(&card).to_string();
    assert!(
        message.contains("Uint8") && message.contains("input.dtype"),
        "{message}"
    );
}

#[test]
fn hostile_card_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Not text, too large, not a card.
    let binary = dir.path().join("png.toml");
    std::fs::write(&binary, png(4, 4)).unwrap();
    let e = ModelCard::load(&binary).unwrap_err();
    assert!(e.to_string().contains("png.toml"), "{e}");
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "# padding\n".repeat(200_000)).unwrap();
    let e = ModelCard::load(&big).unwrap_err().to_string();
    assert!(e.contains("big.toml") && e.contains("larger than"), "{e}");
    let deep = dir.path().join("deep.toml");
    std::fs::write(
        &deep,
        format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    assert!(ModelCard::load(&deep).is_err());
    // A BlazeFace layout of 1024 x 1024 cells x 1024 anchors: 2^30 anchors (8 GiB of centres).
    let blazeface = ocellus::card::BUILTIN_BLAZEFACE;
    let start = blazeface.find("anchor_cells").unwrap();
    let end = start + blazeface[start..].find("score_threshold").unwrap_or(0);
    let text = format!(
        "{}anchor_cells = [1024, 1024]\nanchors_per_cell = [1024, 1024]\n{}",
        &blazeface[..start],
        &blazeface[end..]
    );
    let (r, largest) = largest_allocation(|| ModelCard::parse(&text, "bf.toml".into(), None));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("output.anchor_cells"), "{e}");
    assert!(largest < MIB);
}

// ---------------------------------------------------------------------------------------------
// 3. NaN, infinities and absurd values in model outputs, the tracker and the rules

#[test]
fn nan_and_absurd_model_outputs_never_become_detections() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    // [1, 6, 9]: columns are candidates; rows cx, cy, w, h, p(person), p(car), in input pixels.
    #[rustfmt::skip]
    let data = [
        // good  NaN cx  inf w  NaN p  inf p   -w     huge   pad    1e30 p
        32.0,    nan,   32.0,  32.0,  32.0,   32.0,  1e30,  32.0,  32.0, // cx
        32.0,    32.0,  32.0,  32.0,  32.0,   32.0,  32.0,  8.0,   32.0, // cy
        16.0,    16.0,  inf,   16.0,  16.0,  -16.0,  16.0,  16.0,  8.0,  // w
        32.0,    32.0,  32.0,  32.0,  32.0,   32.0,  32.0,  8.0,   8.0,  // h
        0.9,     0.9,   0.9,   nan,   inf,    0.9,   0.9,   0.9,   1e30, // person
        0.1,     0.1,   0.1,   nan,   0.1,    0.1,   0.1,   0.1,   0.0,  // car
    ];
    let model = yolo_model(&data, 9);
    let dir = tempfile::tempdir().unwrap();
    let card = write_yolo_card(dir.path(), "nan.onnx", &model, &model, "nms_iou = 0.9");
    let card = ModelCard::load(card).unwrap();
    let mut det = Detector::new(common::runtime(), &card, &DetectorOptions::default()).unwrap();
    // 128x64 letterboxed into 64x64: the frame covers rows 16..48 of the input; the candidate
    // "pad" (y 4..12) lies entirely in the padding above it.
    let frame = RgbFrame::new(128, 64, vec![80; 128 * 64 * 3]).unwrap();
    let dets = det.detect(&frame.as_view()).unwrap();
    for d in &dets {
        assert!((0.0..=1.0).contains(&d.score), "{d:?}");
        assert!(
            d.bbox
                .iter()
                .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
            "{d:?}"
        );
        assert!(d.bbox[2] > d.bbox[0] && d.bbox[3] > d.bbox[1], "{d:?}");
    }
    // The good candidate, and the one whose absurd score is reported as 1.
    let scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
    assert_eq!(scores, vec![1.0, 0.9], "{dets:?}");
}

fn person(score: f32, bbox: [f32; 4]) -> Detection {
    Detection {
        label: Arc::from("person"),
        class_id: 1,
        score,
        bbox,
    }
}

#[test]
fn nan_boxes_poison_neither_the_tracker_nor_the_rules() {
    let nan = f32::NAN;
    let mut tracker = Tracker::new(TrackerConfig {
        confirm_hits: 1,
        ..TrackerConfig::default()
    })
    .unwrap();
    let mut rules = Rules::new(
        vec![LineRule {
            name: "door".into(),
            a: [0.0, 0.5],
            b: [1.0, 0.5],
            labels: Vec::new(),
        }],
        vec![ZoneRule {
            name: "hall".into(),
            polygon: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
            dwell: Some(Duration::from_millis(1)),
            labels: Vec::new(),
        }],
        RulesConfig::default(),
    )
    .unwrap();
    let mut events = Vec::new();
    for f in 0..12u64 {
        // One person walking down across the line, among junk.
        let y = 0.2 + 0.05 * f as f32;
        let dets = [
            person(nan, [0.4, y, 0.5, y + 0.2]),
            person(0.9, [nan, y, 0.5, y + 0.2]),
            person(0.9, [0.4, y, f32::INFINITY, y + 0.2]),
            person(0.9, [0.4, y, 0.4, y + 0.2]),
            person(0.9, [f32::MAX, f32::MIN, f32::MAX, f32::MAX]),
            person(0.9, [0.4, y, 0.5, y + 0.2]),
        ];
        let out = tracker.update(f, &dets);
        for t in out.observed.iter().chain(&out.ended) {
            assert!(t.bbox.iter().all(|v| v.is_finite()), "{t:?}");
            assert!(t.score.is_finite(), "{t:?}");
        }
        events.extend(rules.update(f, Duration::from_millis(100 * f), &out));
    }
    let crossings = events
        .iter()
        .filter(|e| matches!(e.kind, RuleEventKind::LineCrossed { .. }))
        .count();
    assert_eq!(crossings, 1, "{events:?}");
    assert_eq!(tracker.live_tracks(), 1);

    // A track handed to the rules directly with a NaN box is skipped, not counted.
    let track = |bbox: [f32; 4]| Track {
        id: 99,
        label: Arc::from("person"),
        class_id: 1,
        score: nan,
        bbox,
        state: TrackState::Tracked,
        hits: 5,
        first_frame: 0,
        last_frame: 20,
    };
    for (f, bbox) in [
        [0.4, 0.1, 0.5, 0.2],
        [nan, nan, nan, nan],
        [0.4, 0.8, 0.5, f32::INFINITY],
    ]
    .into_iter()
    .enumerate()
    {
        let out = TrackerOutput {
            observed: vec![track(bbox)],
            ended: Vec::new(),
        };
        for e in rules.update(20 + f as u64, Duration::from_secs(5), &out) {
            assert_ne!(e.track, Some(99), "{e:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Names that would inject MQTT topic levels

#[test]
fn rules_refuse_names_that_are_not_one_clean_topic_level() {
    let line = |name: &str| LineRule {
        name: name.to_owned(),
        a: [0.0, 0.5],
        b: [1.0, 0.5],
        labels: Vec::new(),
    };
    let zone = |name: &str, polygon: Vec<[f32; 2]>| ZoneRule {
        name: name.to_owned(),
        polygon,
        dwell: None,
        labels: Vec::new(),
    };
    let square = || vec![[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]];
    let long = "n".repeat(65);
    for name in [
        "",
        "door/1",
        "door/#",
        "+",
        "#",
        "a b",
        "dör",
        "door\0",
        "door\n",
        "../etc",
        "$SYS",
        long.as_str(),
    ] {
        for (lines, zones) in [
            (vec![line(name)], Vec::new()),
            (Vec::new(), vec![zone(name, square())]),
        ] {
            let kind = if lines.is_empty() { "zone" } else { "line" };
            match Rules::new(lines, zones, RulesConfig::default()).map_err(Error::from) {
                Err(Error::InvalidOption { name: key, message }) => {
                    assert!(key.starts_with(&format!("rules.{kind}")), "{key}");
                    assert!(key.ends_with("name"), "{key}");
                    if name.is_empty() {
                        assert!(message.contains("empty"), "{message}");
                    } else {
                        assert!(message.contains(name), "{message}");
                    }
                }
                other => panic!("{name:?} accepted as a {kind} name: {other:?}"),
            }
        }
    }
    let max = "n".repeat(64);
    for ok in ["door", "Door-2.b_c", max.as_str()] {
        assert!(Rules::new(vec![line(ok)], Vec::new(), RulesConfig::default()).is_ok());
    }
    // A zone of 100 000 vertices would be tested edge by edge for every track in every frame.
    let many: Vec<[f32; 2]> = (0..100_000)
        .map(|i| {
            let a = i as f32 / 100_000.0 * std::f32::consts::TAU;
            [0.5 + 0.4 * a.cos(), 0.5 + 0.4 * a.sin()]
        })
        .collect();
    let e = Rules::new(Vec::new(), vec![zone("big", many)], RulesConfig::default()).unwrap_err();
    assert!(e.to_string().contains("256"), "{e}");
}

#[test]
fn event_topics_never_gain_levels_or_wildcards() {
    let rule_event = RuleEvent {
        kind: RuleEventKind::ZoneEntered,
        rule: Arc::from("hall/#"),
        frame: 1,
        track: Some(1),
        label: Some(Arc::from("person/+")),
        score: Some(f32::NAN),
        bbox: Some([f32::NAN; 4]),
    };
    for device in [
        "store-12", "a/b", "a/b/c/d", "+", "#", "", "x\0y", "/", "dör", "$SYS",
    ] {
        let e = Event::from_rule(&Arc::from(device), SystemTime::UNIX_EPOCH, &rule_event);
        let topic = e.topic("ocellus");
        let levels: Vec<&str> = topic.split('/').collect();
        assert_eq!(levels.len(), 4, "{device:?}: {topic}");
        assert_eq!(
            (levels[0], levels[2], levels[3]),
            ("ocellus", "events", "zone_entered")
        );
        assert!(!levels[1].is_empty(), "{device:?}: {topic}");
        assert!(!topic.contains(['+', '#', '\0']), "{device:?}: {topic}");
        if device == "store-12" {
            assert_eq!(topic, "ocellus/store-12/events/zone_entered");
            assert_eq!(ocellus::event::topic_level_problem(device), None);
        } else {
            assert!(
                ocellus::event::topic_level_problem(device).is_some(),
                "{device:?}"
            );
        }
        // NaN never reaches the JSON.
        let json: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert!(json["score"].is_number(), "{json}");
    }
    // A prefix with wildcards keeps its levels but loses the wildcards.
    let e = Event::from_rule(&Arc::from("cam"), SystemTime::UNIX_EPOCH, &rule_event);
    assert_eq!(e.topic("acme/+/#"), "acme/_/_/cam/events/zone_entered");
}

// ---------------------------------------------------------------------------------------------
// 5. Oversized and malformed configs, through the public API

const MINIMAL: &str = r#"
[device]
id = "cam"
[source]
kind = "synthetic"
[model]
card = "models/ssd-mobilenet-v2-coco.toml"
[mqtt]
url = "mqtt://127.0.0.1:1883"
"#;

/// The config "file" the texts pretend to be: in the repository root, so that the card resolves.
fn site() -> PathBuf {
    common::repo_root().join("hostile-site.toml")
}

/// Parse `text`; it must fail with a config error naming the file and containing every `part`.
fn refused(text: &str, parts: &[&str]) {
    let (r, largest) = largest_allocation(|| Config::parse(text, &site()));
    match r {
        Err(e @ Error::Config { .. }) => {
            let message = e.to_string();
            assert!(message.contains("hostile-site.toml"), "{message}");
            for part in parts {
                assert!(message.contains(part), "{part} missing: {message}");
            }
            // The message may quote the offending value (today: in full, see
            // docs/reliability.md), but never grows beyond the text it is about.
            assert!(
                message.len() < 3 * text.len() + 1024,
                "a {} byte message",
                message.len()
            );
        }
        Err(e) => panic!("not a config error: {e:?}"),
        Ok(_) => panic!("accepted:\n{}", &text[..text.len().min(500)]),
    }
    assert!(largest < 64 * MIB, "allocated {largest} bytes");
}

#[test]
fn config_baseline_parses() {
    Config::parse(MINIMAL, &site()).unwrap();
}

#[test]
fn oversized_config_strings_are_refused() {
    let long = "x".repeat(100_000);
    refused(
        &MINIMAL.replace("id = \"cam\"", &format!("id = \"{long}\"")),
        &["device.id"],
    );
    refused(
        &format!("{MINIMAL}topic_prefix = \"{long}\"\n"),
        &["mqtt.topic_prefix"],
    );
    refused(
        &format!("{MINIMAL}[[rules.line]]\nname = \"{long}\"\na = [0.1, 0.5]\nb = [0.9, 0.5]\n"),
        &["name"],
    );
    refused(
        &MINIMAL.replace(
            "url = \"mqtt://127.0.0.1:1883\"",
            &format!("url = \"mqtt://{long}\""),
        ),
        &["mqtt.url"],
    );
    refused(&format!("{long} = 1\n{MINIMAL}"), &[]);
    refused(&MINIMAL.replace("cam", "cam/+/#"), &["device.id"]);
}

#[test]
fn oversized_and_non_finite_config_numbers_are_refused() {
    for value in [
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999", // beyond i64: a TOML error
        "-1",
        "0",
        "1e308",
        "inf",
        "nan",
    ] {
        refused(
            &format!("{MINIMAL}[runtime]\nthreads = {value}\n"),
            &["runtime.threads"],
        );
    }
    for (key, value) in [
        ("width", "4294967296"),
        ("height", "-480"),
        ("frames", "-1"),
        ("objects", "9223372036854775807"),
        ("fps", "inf"),
        ("fps", "nan"),
        ("fps", "-inf"),
        ("fps", "1e308"),
        ("fps", "0"),
    ] {
        let text = MINIMAL.replace(
            "kind = \"synthetic\"",
            &format!("kind = \"synthetic\"\n{key} = {value}"),
        );
        refused(&text, &[&format!("source.{key}")]);
    }
    refused(
        &format!("{MINIMAL}[[rules.line]]\nname = \"l\"\na = [nan, 0.5]\nb = [0.9, 0.5]\n"),
        &["rules.line"],
    );
    refused(
        &format!(
            "{MINIMAL}[[rules.zone]]\nname = \"z\"\npolygon = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]\ndwell_s = 1e300\n"
        ),
        &["dwell_s"],
    );
}

#[test]
fn oversized_and_malformed_config_arrays_are_refused() {
    let points: Vec<String> = (0..100_000)
        .map(|i| {
            let a = i as f64 / 100_000.0 * std::f64::consts::TAU;
            format!("[{:.4}, {:.4}]", 0.5 + 0.4 * a.cos(), 0.5 + 0.4 * a.sin())
        })
        .collect();
    refused(
        &format!(
            "{MINIMAL}[[rules.zone]]\nname = \"z\"\npolygon = [{}]\n",
            points.join(", ")
        ),
        &["polygon"],
    );
    // (`[0.1, 0.2, 0.3]` is accepted as (0.1, 0.2) today: see docs/reliability.md.)
    for (a, part) in [
        ("[0.1]", "rules.line"),
        ("\"left\"", "rules.line"),
        ("[]", "rules.line"),
    ] {
        refused(
            &format!("{MINIMAL}[[rules.line]]\nname = \"l\"\na = {a}\nb = [0.9, 0.5]\n"),
            &[part],
        );
    }
    let labels: Vec<&str> = std::iter::repeat_n("\"nobody\"", 100_000).collect();
    refused(
        &MINIMAL.replace(
            "[model]\ncard = \"models/ssd-mobilenet-v2-coco.toml\"",
            &format!(
                "[model]\ncard = \"models/ssd-mobilenet-v2-coco.toml\"\nlabels = [{}]",
                labels.join(", ")
            ),
        ),
        &["model.labels"],
    );
    // 10 000 line rules.
    let mut many = MINIMAL.to_owned();
    for i in 0..10_000 {
        many.push_str(&format!(
            "[[rules.line]]\nname = \"l{i}\"\na = [0.1, 0.5]\nb = [0.9, 0.5]\n"
        ));
    }
    let (r, largest) = largest_allocation(|| Config::parse(&many, &site()));
    if let Err(e) = r {
        assert!(e.to_string().contains("hostile-site.toml"), "{e}");
    }
    assert!(largest < 64 * MIB);
}

#[test]
fn deeply_nested_configs_are_refused_without_overflowing_the_stack() {
    let n = 100_000;
    for text in [
        format!("x = {}{}\n{MINIMAL}", "[".repeat(n), "]".repeat(n)),
        format!("x = {}1{}\n{MINIMAL}", "{a = ".repeat(n), "}".repeat(n)),
        format!("{MINIMAL}[{}]\n", vec!["a"; n].join(".")),
        format!("{MINIMAL}{} = 1\n", vec!["a"; n].join(".")),
        format!("{MINIMAL}[source.x]\n{}\n", "[source.x.y]\n".repeat(1000)),
    ] {
        // A thread with a small stack: recursion without a bound would overflow it and abort.
        let result = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                Config::parse(&text, &site())
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .unwrap()
            .join()
            .unwrap();
        let message = result.unwrap_err();
        assert!(message.contains("hostile-site.toml"), "{message}");
    }
}

#[test]
fn config_files_that_are_too_large_binary_or_odd_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let padding = "# padding padding padding padding padding padding padding padding\n";
    let mut text = MINIMAL.to_owned();
    while text.len() as u64 <= ocellus::config::MAX_CONFIG_BYTES {
        text.push_str(padding);
    }
    std::fs::write(&big, &text).unwrap();
    let (r, largest) = largest_allocation(|| Config::load(&big));
    let message = r.unwrap_err().to_string();
    assert!(
        message.contains("big.toml") && message.contains("larger than"),
        "{message}"
    );
    assert!(largest < 4 * MIB, "allocated {largest} bytes");
    // Valid up to the limit: the same padding just under 1 MiB parses.
    let mut fits = MINIMAL.to_owned();
    while (fits.len() + padding.len()) as u64 <= ocellus::config::MAX_CONFIG_BYTES {
        fits.push_str(padding);
    }
    let ok = dir.path().join("fits.toml");
    std::fs::write(&ok, &fits).unwrap();
    let ok = std::fs::read_to_string(&ok).unwrap();
    Config::parse(&ok, &site()).unwrap();

    for (name, bytes, part) in [
        ("png.toml", png(4, 4), "UTF-8"),
        (
            "latin1.toml",
            b"[device]\nid = \"caf\xe9\"\n".to_vec(),
            "UTF-8",
        ),
        ("empty.toml", Vec::new(), ""),
        ("nul.toml", b"[device]\nid = \"a\0b\"\n".to_vec(), ""),
        ("random.toml", noise(50_000, 17), ""),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let message = Config::load(&path).unwrap_err().to_string();
        assert!(message.contains(name), "{message}");
        assert!(message.contains(part), "{message}");
    }
    let dir_as_file = Config::load(dir.path()).unwrap_err().to_string();
    assert!(!dir_as_file.is_empty());
    let missing = Config::load(&dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("missing.toml"), "{missing}");
}
