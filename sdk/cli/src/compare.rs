//! `ocellus model compare`: the accuracy guard of a derived model (a quantised one, a sliced head)
//! against the model it was made from, on real footage.
//!
//! Pass 1 decodes the footage once and runs both models on every frame, at each card's own
//! threshold and on the labels both have; [`ocellus::accuracy::Agreement`] tallies recall and
//! precision of the model against the reference's detections. Passes 2 and 3 run the whole
//! pipeline (tracker, the demo's line and zone) once with each model and count the events, since a
//! few boxes more or less matter only if they change what a shop is told.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ocellus::accuracy::{Agreement, Counts};
use ocellus::core::{Event, EventType, FnSink, Source};
use ocellus::rules::{Direction, Rules};
use ocellus::{Detector, DetectorOptions, ModelCard, Pipeline};
use serde::Serialize;

use crate::args::{EXIT_PARTIAL, Format};
use crate::model_cmd::CompareArgs;

/// What the demo's rules counted in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
struct RuleCounts {
    frames: u64,
    line_a_to_b: u64,
    line_b_to_a: u64,
    zone_entered: u64,
    zone_exited: u64,
    dwell: u64,
    occupancy: u64,
}

impl RuleCounts {
    /// The larger difference between two passes' line counts, direction by direction: what the
    /// guard holds. Zone, dwell and occupancy counts are reported beside it but not held: a zone
    /// event is a track's box crossing the polygon's border, which the last bits of a box move
    /// (the fp32 full graph and the fp32 cut model, the same weights, differ there too).
    fn line_diff(&self, other: &RuleCounts) -> u64 {
        self.line_a_to_b
            .abs_diff(other.line_a_to_b)
            .max(self.line_b_to_a.abs_diff(other.line_b_to_a))
    }
}

#[derive(Debug, Serialize)]
struct LabelReport {
    label: String,
    #[serde(flatten)]
    counts: Counts,
    recall: f64,
    precision: f64,
    mean_score_delta: f64,
    mean_iou: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    model_file: PathBuf,
    reference: String,
    video: PathBuf,
    frames: u64,
    iou: f32,
    labels: Vec<LabelReport>,
    counts: Option<[RuleCounts; 2]>,
    min_recall: f64,
    min_precision: f64,
    count_tolerance: u64,
    /// Every bar met.
    holds: bool,
}

fn invalid(name: &str, message: String) -> ocellus::Error {
    ocellus::Error::InvalidOption {
        name: name.into(),
        message,
    }
}

/// The labels compared: those asked for, else every label both cards name.
fn labels(args: &CompareArgs, card: &ModelCard, reference: &ModelCard) -> Vec<String> {
    if !args.labels.is_empty() {
        return args.labels.clone();
    }
    let theirs: Vec<&str> = reference.labels.values().map(|l| &**l).collect();
    let mut v: Vec<String> = card
        .labels
        .values()
        .filter(|l| theirs.contains(&&***l))
        .map(|l| l.to_string())
        .collect();
    v.dedup();
    v
}

/// Pass 1: both models on every frame, read once.
fn agreement(
    video: &Path,
    frames: Option<u64>,
    model: &mut Detector,
    reference: &mut Detector,
    iou: f32,
) -> ocellus::Result<Agreement> {
    let mut source = ocellus::source::FfmpegSource::open(&video.to_string_lossy(), None, false)?;
    let mut a = Agreement::new(iou);
    while frames.is_none_or(|n| a.frames() < n) {
        let Some(frame) = source.next_frame()? else {
            break;
        };
        let Some(image) = frame.image.as_ref() else {
            continue;
        };
        let r = reference.detect(&image.as_view())?;
        let m = model.detect(&image.as_view())?;
        a.add(&r, &m);
    }
    if a.frames() == 0 {
        return Err(ocellus::Error::Frame(format!(
            "{} gave no frame",
            video.display()
        )));
    }
    Ok(a)
}

/// Passes 2 and 3: the pipeline with the demo's line and zone.
fn rule_counts(
    video: &Path,
    frames: Option<u64>,
    det: &mut Detector,
) -> ocellus::Result<RuleCounts> {
    let source = ocellus::source::FfmpegSource::open(&video.to_string_lossy(), None, false)?;
    let rules = crate::run::demo_rules();
    let rules = Rules::new(rules.lines, rules.zones, rules.config)?;
    let mut events: Vec<(EventType, Option<Direction>)> = Vec::new();
    let summary = {
        let sink = FnSink(|e: &Event| {
            events.push((e.kind, e.direction));
            Ok(())
        });
        let mut b = Pipeline::builder()
            .source(source)
            .borrowed_detector(det)
            .rules(rules)
            .device("compare")
            .sink(sink);
        if let Some(n) = frames {
            b = b.max_frames(n);
        }
        b.build()?.run(&AtomicBool::new(false))?
    };
    let count = |k: EventType, d: Option<Direction>| {
        events
            .iter()
            .filter(|(kind, dir)| *kind == k && (d.is_none() || *dir == d))
            .count() as u64
    };
    Ok(RuleCounts {
        frames: summary.frames_processed,
        line_a_to_b: count(EventType::LineCrossed, Some(Direction::AToB)),
        line_b_to_a: count(EventType::LineCrossed, Some(Direction::BToA)),
        zone_entered: count(EventType::ZoneEntered, None),
        zone_exited: count(EventType::ZoneExited, None),
        dwell: count(EventType::Dwell, None),
        occupancy: count(EventType::Occupancy, None),
    })
}

pub(crate) fn run(onnxruntime: Option<PathBuf>, args: &CompareArgs) -> ocellus::Result<u8> {
    let (card, model_file, _) = args.target.open()?;
    let reference = match &args.reference {
        Some(p) => ModelCard::load(p)?,
        None => card.derived_from()?.ok_or_else(|| {
            invalid(
                "--reference",
                format!(
                    "{} names no source.derived_from: name the card to compare with",
                    card.path.display()
                ),
            )
        })?,
    };
    if !(0.0..=1.0).contains(&args.iou) {
        return Err(invalid("--iou", format!("{} is outside 0..=1", args.iou)));
    }
    let labels = labels(args, &card, &reference);
    if labels.is_empty() {
        return Err(invalid(
            "--label",
            format!(
                "{} and {} name no label in common",
                card.name, reference.name
            ),
        ));
    }
    let video = args
        .video
        .clone()
        .unwrap_or_else(|| ocellus::paths::footage_dir().join("vtest.avi"));
    let rt = crate::model_cmd::runtime(onnxruntime)?;
    let opts = DetectorOptions {
        intra_threads: args.threads,
        labels: Some(labels.clone()),
        ..Default::default()
    };
    // the model file as given (it may not be accepted yet), the reference as a deployment loads it
    let mut model = Detector::load(rt, &card, &model_file, &opts)?;
    let mut reference_det = Detector::new(rt, &reference, &opts)?;
    eprintln!(
        "comparing {} with {} on {} ({}), labels {labels:?}",
        card.name,
        reference.name,
        video.display(),
        args.frames
            .map_or_else(|| "every frame".to_owned(), |n| format!("{n} frames"))
    );
    let agreement = agreement(
        &video,
        args.frames,
        &mut model,
        &mut reference_det,
        args.iou,
    )?;
    let counts = if args.no_counts {
        None
    } else {
        let mine = rule_counts(&video, args.frames, &mut model)?;
        let theirs = rule_counts(&video, args.frames, &mut reference_det)?;
        Some([mine, theirs])
    };
    let labels: Vec<LabelReport> = labels
        .iter()
        .map(|l| {
            let c = agreement.counts(l);
            LabelReport {
                label: l.clone(),
                counts: c,
                recall: c.recall(),
                precision: c.precision(),
                mean_score_delta: c.mean_score_delta(),
                mean_iou: c.mean_iou(),
            }
        })
        .collect();
    let holds = labels
        .iter()
        .all(|l| l.recall >= args.min_recall && l.precision >= args.min_precision)
        && counts
            .as_ref()
            .is_none_or(|[a, b]| a.line_diff(b) <= args.count_tolerance);
    let report = Report {
        model: card.name.clone(),
        model_file,
        reference: reference.name.clone(),
        video,
        frames: agreement.frames(),
        iou: args.iou,
        labels,
        counts,
        min_recall: args.min_recall,
        min_precision: args.min_precision,
        count_tolerance: args.count_tolerance,
        holds,
    };
    match args.format {
        Format::Json => println!("{}", serde_json::json!(report)),
        Format::Text => print_text(&report),
    }
    Ok(if holds { 0 } else { EXIT_PARTIAL })
}

fn print_text(r: &Report) {
    println!(
        "{} ({}) against {} on {} frames of {}, IoU >= {}:",
        r.model,
        r.model_file.display(),
        r.reference,
        r.frames,
        r.video.display(),
        r.iou
    );
    for l in &r.labels {
        let mark = |v: f64, min: f64| if v >= min { "ok" } else { "BELOW" };
        println!(
            "  {:<10} recall {:.4} ({} of {}, {}), precision {:.4} ({} of {}, {})",
            l.label,
            l.recall,
            l.counts.matched,
            l.counts.matched + l.counts.missed,
            mark(l.recall, r.min_recall),
            l.precision,
            l.counts.matched,
            l.counts.matched + l.counts.extra,
            mark(l.precision, r.min_precision),
        );
        println!(
            "  {:<10} matches: mean IoU {:.3}, mean score {:+.4} against the reference's",
            "", l.mean_iou, l.mean_score_delta
        );
    }
    if let Some([mine, theirs]) = &r.counts {
        let mut rows: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        rows.insert("line a→b", (mine.line_a_to_b, theirs.line_a_to_b));
        rows.insert("line b→a", (mine.line_b_to_a, theirs.line_b_to_a));
        rows.insert("zone entered", (mine.zone_entered, theirs.zone_entered));
        rows.insert("zone exited", (mine.zone_exited, theirs.zone_exited));
        rows.insert("dwell", (mine.dwell, theirs.dwell));
        rows.insert("occupancy", (mine.occupancy, theirs.occupancy));
        println!(
            "  the demo's line and zone ({} / {}):",
            r.model, r.reference
        );
        for (k, (a, b)) in rows {
            println!("    {k:<13} {a:>4} / {b:<4}");
        }
    }
    println!(
        "guard (recall and precision >= {} / {}, line counts within {} per direction): {}",
        r.min_recall,
        r.min_precision,
        r.count_tolerance,
        if r.holds { "holds" } else { "FAILS" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_holds_the_line_counts_per_direction_and_reports_the_rest() {
        let fp32 = RuleCounts {
            frames: 795,
            line_a_to_b: 16,
            line_b_to_a: 11,
            zone_entered: 59,
            zone_exited: 59,
            dwell: 26,
            occupancy: 103,
        };
        let mut int8 = fp32.clone();
        int8.zone_entered = 53;
        int8.occupancy = 94;
        assert_eq!(int8.line_diff(&fp32), 0, "zone counts are not held");
        int8.line_b_to_a = 12;
        assert_eq!(int8.line_diff(&fp32), 1);
        // a direction cannot make up for the other: 17 + 10 is still 27 in all
        int8.line_a_to_b = 17;
        int8.line_b_to_a = 9;
        assert_eq!(int8.line_diff(&fp32), 2);
    }
}
