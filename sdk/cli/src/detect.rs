//! `ocellus detect`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::args::{EXIT_PARTIAL, Format, ModelArgs, load_detector};
use ocellus::infer::Detection;

#[derive(Serialize)]
struct ImageResult<'a> {
    image: &'a str,
    width: u32,
    height: u32,
    detections: &'a [Detection],
}

#[derive(Serialize)]
struct ImageError<'a> {
    image: &'a str,
    error: String,
}

pub(crate) fn run(
    onnxruntime: Option<PathBuf>,
    args: &ModelArgs,
    labels: Option<Vec<String>>,
    images: &[PathBuf],
    annotate: Option<&Path>,
    format: Format,
) -> ocellus::Result<u8> {
    let mut detector = load_detector(onnxruntime, args, labels)?;
    if let Some(dir) = annotate {
        std::fs::create_dir_all(dir).map_err(|source| ocellus::Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut used_names = HashSet::new();
    let mut failed = 0usize;
    let stdout = std::io::stdout();
    for path in images {
        let name = path.display().to_string();
        let outcome = detect_one(&mut detector, path, annotate, &mut used_names);
        let mut out = stdout.lock();
        let written = match (&outcome, format) {
            (Ok((w, h, dets)), Format::Json) => {
                let line = serde_json::to_string(&ImageResult {
                    image: &name,
                    width: *w,
                    height: *h,
                    detections: dets,
                })
                .unwrap_or_default();
                writeln!(out, "{line}")
            }
            (Ok((w, h, dets)), Format::Text) => {
                let mut r = writeln!(out, "{name} ({w}x{h}): {} detection(s)", dets.len());
                for d in dets {
                    r = r.and_then(|_| {
                        writeln!(
                            out,
                            "  {:<12} {:.2}  [{:.3}, {:.3}, {:.3}, {:.3}]",
                            d.label, d.score, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]
                        )
                    });
                }
                r
            }
            (Err(e), fmt) => {
                failed += 1;
                eprintln!("error: {e}");
                if fmt == Format::Json {
                    let line = serde_json::to_string(&ImageError {
                        image: &name,
                        error: e.to_string(),
                    })
                    .unwrap_or_default();
                    writeln!(out, "{line}")
                } else {
                    Ok(())
                }
            }
        };
        if written.is_err() {
            // stdout closed (e.g. piped into `head`): nothing more to report to
            return Ok(EXIT_PARTIAL);
        }
    }
    if failed > 0 {
        eprintln!(
            "{failed} of {} image(s) could not be processed",
            images.len()
        );
        return Ok(EXIT_PARTIAL);
    }
    Ok(0)
}

fn detect_one(
    detector: &mut ocellus::infer::Detector,
    path: &Path,
    annotate: Option<&Path>,
    used_names: &mut HashSet<PathBuf>,
) -> ocellus::Result<(u32, u32, Vec<Detection>)> {
    let frame = ocellus::load_rgb(path)?;
    let (w, h) = (frame.width(), frame.height());
    let dets = detector.detect(&frame.as_view())?;
    if let Some(dir) = annotate {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let mut out = dir.join(format!("{stem}.png"));
        let mut n = 2;
        while !used_names.insert(out.clone()) {
            out = dir.join(format!("{stem}-{n}.png"));
            n += 1;
        }
        let canvas = ocellus::annotate::draw(frame, &dets);
        let (cw, ch) = (canvas.width(), canvas.height());
        image::save_buffer(&out, &canvas.into_raw(), cw, ch, image::ColorType::Rgb8).map_err(
            |source| ocellus::Error::Image {
                path: out.clone(),
                source,
            },
        )?;
    }
    Ok((w, h, dets))
}
