//! `ocellus eval`: score a track file against a MOTChallenge ground truth: MOTA, IDF1 and the
//! line-count error, the crossings of both sides counted by the same rules engine.

use std::path::{Path, PathBuf};

use ocellus::config::Config;
use ocellus::eval::{self, Crossings, TrackingMetrics};
use ocellus::mot::{self, Sequence};
use ocellus::rules::{LineRule, RulesConfig};
use serde::Serialize;

use crate::args::Format;

/// Arguments of `ocellus eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// The ground truth, a MOTChallenge `gt.txt` (boxes marked 0 in the seventh column are left
    /// out, as MOTChallenge's tools do).
    #[arg(long, value_name = "FILE")]
    gt: PathBuf,
    /// The tracks to score, in the same format (`ocellus run --tracks FILE` writes it).
    #[arg(long, value_name = "FILE")]
    tracks: PathBuf,
    /// The frame size, `WIDTHxHEIGHT` (default: the sequence's `seqinfo.ini`, next to the
    /// ground truth's `gt/` directory).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// The config the tracks were made with: its `[rules]` settings count both sides, and its
    /// lines, if it has any, replace the random lines.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Random lines placed where the ground truth's people walk.
    #[arg(long, default_value_t = 24)]
    lines: usize,
    /// Seed of the random lines (the same seed gives the same lines on every machine).
    #[arg(long, default_value_t = 18)]
    seed: u64,
    /// Only ground-truth boxes of these classes (eighth column, MOT16 and later; 1 is
    /// pedestrian), when the file has classes.
    #[arg(long, value_delimiter = ',')]
    classes: Vec<i64>,
    /// IoU at which a track box matches a ground-truth box.
    #[arg(long, default_value_t = 0.5)]
    iou: f32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, e.g. 768x576, got {s:?}"))?;
    let num = |v: &str| v.trim().parse::<u32>().ok().filter(|&n| n > 0);
    match (num(w), num(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!(
            "expected WIDTHxHEIGHT in pixels, e.g. 768x576, got {s:?}"
        )),
    }
}

#[derive(Debug, Serialize)]
struct LineReport {
    name: String,
    a: [f32; 2],
    b: [f32; 2],
    truth: Crossings,
    counted: Crossings,
}

#[derive(Debug, Serialize)]
struct Report {
    ground_truth: String,
    tracks: String,
    width: u32,
    height: u32,
    iou: f32,
    #[serde(flatten)]
    metrics: TrackingMetrics,
    lines_from: String,
    lines: Vec<LineReport>,
    true_crossings: u64,
    line_abs_error: u64,
    /// `line_abs_error / true_crossings`.
    line_error: f64,
}

fn input(what: &str, key: &str, path: &Path) -> ocellus::Error {
    ocellus::Error::InvalidOption {
        name: key.to_owned(),
        message: format!("{}: {what}", path.display()),
    }
}

fn read_mot(path: &Path, key: &str) -> ocellus::Result<Vec<mot::MotBox>> {
    let text = std::fs::read_to_string(path).map_err(|source| ocellus::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    mot::parse(&text).map_err(|e| {
        input(
            &format!("{e} (a MOTChallenge file: frame,id,x,y,w,h,conf,...)"),
            key,
            path,
        )
    })
}

/// `imWidth`/`imHeight` of the `seqinfo.ini` of `SEQ/gt/gt.txt`.
fn seqinfo_size(gt: &Path) -> Option<(u32, u32)> {
    let ini = gt.parent()?.parent()?.join("seqinfo.ini");
    let text = std::fs::read_to_string(ini).ok()?;
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().parse::<u32>().ok())?
        })
    };
    Some((value("imWidth")?, value("imHeight")?))
}

/// Run `ocellus eval`.
pub(crate) fn run(args: &EvalArgs) -> ocellus::Result<u8> {
    let (width, height) = match args.size.or_else(|| seqinfo_size(&args.gt)) {
        Some(s) => s,
        None => {
            return Err(input(
                "no seqinfo.ini next to its gt/ directory to read the frame size from: pass --size WIDTHxHEIGHT",
                "--size",
                &args.gt,
            ));
        }
    };
    if !(args.iou > 0.0 && args.iou <= 1.0) {
        return Err(ocellus::Error::InvalidOption {
            name: "--iou".into(),
            message: format!("must be in (0, 1], got {}", args.iou),
        });
    }
    let truth = mot::sequence(&read_mot(&args.gt, "--gt")?, width, height, &args.classes);
    let tracks = mot::sequence(&read_mot(&args.tracks, "--tracks")?, width, height, &[]);
    if truth.is_empty() {
        return Err(input("no boxes to score against", "--gt", &args.gt));
    }
    let metrics = eval::tracking_metrics(&truth, &tracks, args.iou)?;
    // the rules settings (debounce, hysteresis) of the config the tracks were made with, so
    // that both sides are counted as that run counted; its lines, when it has any
    let (config_lines, rules_cfg) = match &args.config {
        Some(path) => {
            let cfg = Config::load(path)?;
            (cfg.rules.lines.clone(), cfg.rules.config.clone())
        }
        None => (Vec::new(), RulesConfig::default()),
    };
    let (lines, lines_from) = match (&args.config, config_lines.is_empty()) {
        (Some(path), false) => (config_lines, path.display().to_string()),
        _ => (
            eval::random_lines(args.lines, args.seed, &eval::feet(&truth)),
            format!("{} random lines, seed {}", args.lines, args.seed),
        ),
    };
    let report = report(
        args,
        (width, height),
        (&truth, &tracks),
        metrics,
        (lines, &rules_cfg, lines_from),
    )?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
        Format::Text => print_text(&report),
    }
    Ok(0)
}

fn report(
    args: &EvalArgs,
    (width, height): (u32, u32),
    (truth, tracks): (&Sequence, &Sequence),
    metrics: TrackingMetrics,
    (lines, rules_cfg, lines_from): (Vec<LineRule>, &RulesConfig, String),
) -> ocellus::Result<Report> {
    let want = eval::line_counts(truth, &lines, rules_cfg)?;
    let got = eval::line_counts(tracks, &lines, rules_cfg)?;
    let (abs, total, err) = eval::line_error(&want, &got);
    Ok(Report {
        ground_truth: args.gt.display().to_string(),
        tracks: args.tracks.display().to_string(),
        width,
        height,
        iou: args.iou,
        metrics,
        lines_from,
        lines: lines
            .iter()
            .zip(want.iter().zip(&got))
            .map(|(l, (t, c))| LineReport {
                name: l.name.clone(),
                a: l.a,
                b: l.b,
                truth: *t,
                counted: *c,
            })
            .collect(),
        true_crossings: total,
        line_abs_error: abs,
        line_error: err,
    })
}

fn print_text(r: &Report) {
    let m = &r.metrics;
    println!(
        "{} against {} ({}x{}, IoU >= {})",
        r.tracks, r.ground_truth, r.width, r.height, r.iou
    );
    println!(
        "MOTA {:.1} %   IDF1 {:.1} %   (IDP {:.1} %, IDR {:.1} %)   MOTP {:.3} IoU",
        100.0 * m.mota,
        100.0 * m.idf1,
        100.0 * m.idp,
        100.0 * m.idr,
        m.motp_iou
    );
    println!(
        "ground truth {} boxes, {} ids | tracks {} boxes, {} ids | matched {} (recall {:.1} %, precision {:.1} %) | FN {} FP {} ID switches {}",
        m.gt_boxes,
        m.gt_ids,
        m.track_boxes,
        m.track_ids,
        m.matches,
        100.0 * m.recall,
        100.0 * m.precision,
        m.false_negatives,
        m.false_positives,
        m.id_switches
    );
    println!("lines ({}): counted / true, per direction", r.lines_from);
    for l in &r.lines {
        println!(
            "  {:<16} a→b {:>4} / {:<4} b→a {:>4} / {:<4} ({:.2},{:.2})→({:.2},{:.2})",
            l.name,
            l.counted[0],
            l.truth[0],
            l.counted[1],
            l.truth[1],
            l.a[0],
            l.a[1],
            l.b[0],
            l.b[1]
        );
    }
    println!(
        "line-count error: {} of {} crossings off = {:.1} %",
        r.line_abs_error,
        r.true_crossings,
        100.0 * r.line_error
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn sizes_and_seqinfo_are_read() {
        assert_eq!(parse_size("768x576"), Ok((768, 576)));
        assert!(parse_size("768").unwrap_err().contains("WIDTHxHEIGHT"));
        assert!(parse_size("0x5").is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("gt")).unwrap();
        std::fs::write(
            dir.path().join("seqinfo.ini"),
            "[Sequence]\nname=X\nimWidth=768\nimHeight=576\n",
        )
        .unwrap();
        assert_eq!(
            seqinfo_size(&dir.path().join("gt/gt.txt")),
            Some((768, 576))
        );
        assert_eq!(seqinfo_size(Path::new("gt.txt")), None);
    }
}
