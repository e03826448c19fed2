//! The recorded detections of vtest.avi (`fixtures/vtest-detections.jsonl`), shared by the
//! replay tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ocellus_core::Detection;
use ocellus_core::appearance::Appearance;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One recorded frame: its number, media time, detections and what each looks like.
pub struct Recorded {
    pub frame: u64,
    pub t: Duration,
    pub detections: Vec<Detection>,
    /// `looks[i]` belongs to `detections[i]` (the pipeline reads them from the pixels).
    pub looks: Vec<Option<Appearance>>,
}

/// The fixture's header: how the detections were made.
#[derive(Debug, serde::Deserialize)]
pub struct Header {
    pub source: String,
    pub card: String,
    pub labels: Vec<String>,
    pub threshold: f32,
    pub floor: f32,
    pub frames: u64,
}

#[derive(serde::Deserialize)]
struct Line {
    f: u64,
    t_ms: u64,
    d: Vec<[f32; 5]>,
    a: Vec<Option<String>>,
}

pub fn load() -> (Header, Vec<Recorded>) {
    load_from(&fixtures().join("vtest-detections.jsonl"))
}

/// Recorded detections in the fixture's format, from any file.
pub fn load_from(path: &std::path::Path) -> (Header, Vec<Recorded>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Header = serde_json::from_str(lines.next().expect("a header line")).unwrap();
    let label: Arc<str> = Arc::from("person");
    let frames = lines
        .map(|l| {
            let l: Line = serde_json::from_str(l).unwrap();
            assert_eq!(
                l.a.len(),
                l.d.len(),
                "frame {}: one look per detection",
                l.f
            );
            let looks =
                l.a.iter()
                    .map(|a| {
                        a.as_deref()
                            .map(|t| Appearance::decode(t).expect("a recorded look"))
                    })
                    .collect();
            Recorded {
                looks,
                frame: l.f,
                t: Duration::from_millis(l.t_ms),
                detections: l
                    .d
                    .iter()
                    .map(|&[score, x0, y0, x1, y1]| Detection {
                        label: label.clone(),
                        class_id: 1,
                        score,
                        bbox: [x0, y0, x1, y1],
                    })
                    .collect(),
            }
        })
        .collect();
    (header, frames)
}
