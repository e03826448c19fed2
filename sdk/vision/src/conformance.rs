//! Conformance: a converted model is accepted by what it computes, not by its bytes.
//!
//! A card's `[conformance]` section ([`crate::card::Conformance`]) lists reference inputs taken
//! from registry packages (frames of the footage, images) and what the model computed on them
//! when the card was written: the detections above a threshold, and a summary of every raw output
//! the decoder reads. [`check`] runs a model file on each input with this build's ONNX Runtime
//! and compares, within the card's tolerances; [`accept`] does the same and, when every case
//! matches, pins the file in a [`Manifest`] beside it. [`record`] writes the references for a
//! new card.
//!
//! Why tolerances and not hashes: the converter folds constants with the CPU's own
//! floating-point kernels, and ONNX Runtime picks kernels by CPU, so the same conversion differs
//! in the last bits from one machine to the next. Those differences are a few ulps; a model that
//! is really different (another card's model, a layer's weights changed) moves detections and
//! output statistics by orders of magnitude more.

use std::path::Path;

use crate::card::{
    Conformance, ConformanceCase, ExpectedDetection, ModelCard, OutputSpec, QUANTILES,
    SAMPLE_COUNT, TensorSummary,
};
use crate::error::{Error, Result};
use crate::infer::{Detection, Detector, DetectorOptions};
use crate::manifest::{CaseResult, Manifest, SCHEMA};
use crate::runtime::Runtime;

/// Most failures quoted in one error (the count of the rest is given).
const MAX_QUOTED_FAILURES: usize = 12;

/// What a model computed on one reference input.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The reference input.
    pub input: String,
    /// Its detections at or above the threshold asked for, best first.
    pub detections: Vec<Detection>,
    /// A summary of each output the decoder reads.
    pub outputs: Vec<TensorSummary>,
}

/// Load one reference input from `footage`: `name` is an image file, `name#N` frame `N` of a video.
pub fn load_input(footage: &Path, input: &str) -> Result<crate::RgbFrame> {
    match input.rsplit_once('#') {
        Some((file, frame)) => {
            let n: usize = frame.parse().map_err(|_| Error::InvalidOption {
                name: "conformance input".into(),
                message: format!("`{input}`: the part after `#` must be a frame number"),
            })?;
            let path = footage.join(file);
            crate::source::read_video_frames(&path, n, 1)?
                .into_iter()
                .next()
                .ok_or_else(|| Error::InvalidOption {
                    name: "conformance input".into(),
                    message: format!("{} has no frame {n}", path.display()),
                })
        }
        None => crate::source::load_image(&footage.join(input)),
    }
}

/// Whether an output's positions mean the same thing from run to run: not for a list sorted by
/// score (a post-processed SSD's boxes), where two close scores may swap places.
fn positional(card: &ModelCard) -> bool {
    !matches!(card.output, OutputSpec::TfSsd { .. })
}

/// Summarise one output tensor.
pub fn summarise(name: &str, shape: &[i64], data: &[f32], positional: bool) -> TensorSummary {
    let n = data.len().max(1) as f64;
    let mean = data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = data
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let mut sorted: Vec<f32> = data.to_vec();
    sorted.sort_by(f32::total_cmp);
    let at = |v: &[f32], frac: f64| -> f64 {
        let last = v.len().saturating_sub(1);
        let i = ((last as f64) * frac).round() as usize;
        v.get(i.min(last)).map_or(0.0, |&x| f64::from(x))
    };
    let quantiles = QUANTILES.iter().map(|&q| at(&sorted, q)).collect();
    let samples = if positional && !data.is_empty() {
        (0..SAMPLE_COUNT)
            .map(|k| at(data, k as f64 / (SAMPLE_COUNT - 1) as f64))
            .collect()
    } else {
        Vec::new()
    };
    TensorSummary {
        name: name.to_owned(),
        shape: shape.to_vec(),
        mean,
        std: var.sqrt(),
        quantiles,
        samples,
    }
}

/// Run `model` (described by `card`) on each of `inputs` from `footage`, reporting detections at or
/// above `threshold` and a summary of each output the decoder reads.
pub fn observe(
    runtime: &Runtime,
    card: &ModelCard,
    model: &Path,
    footage: &Path,
    inputs: &[String],
    threshold: f32,
) -> Result<Vec<Observed>> {
    let opts = DetectorOptions {
        score_threshold: Some(threshold.clamp(0.0, 1.0)),
        prepare: false,
        ..Default::default()
    };
    let mut det = Detector::load(runtime, card, model, &opts)?;
    let positional = positional(card);
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        let frame = load_input(footage, input)?;
        let detections = det.detect(&frame.as_view())?;
        let outputs = det
            .raw_outputs()
            .iter()
            .map(|t| summarise(t.name, t.shape, t.data, positional))
            .collect();
        out.push(Observed {
            input: input.clone(),
            detections,
            outputs,
        });
    }
    Ok(out)
}

fn box_diff(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn fmt_box(b: &[f32; 4]) -> String {
    format!("[{:.3}, {:.3}, {:.3}, {:.3}]", b[0], b[1], b[2], b[3])
}

/// What comparing one case has found so far: the checks made, the failures, how close it came.
struct Tally {
    checks: usize,
    failures: Vec<String>,
    result: CaseResult,
}

/// Compare one case; returns the checks made, the failures, and how close it came.
fn compare(
    conf: &Conformance,
    case: &ConformanceCase,
    obs: &Observed,
) -> (usize, Vec<String>, CaseResult) {
    let mut tally = Tally {
        checks: 0,
        failures: Vec::new(),
        result: CaseResult {
            input: case.input.clone(),
            detections: case.detections.len(),
            max_score_diff: 0.0,
            max_box_diff: 0.0,
            max_tensor_ratio: 0.0,
        },
    };
    let input = &case.input;
    let used = tally.references(conf, case, obs);
    tally.unreferenced(conf, input, obs, &used);
    for want in &case.outputs {
        tally.output(conf, input, want, obs);
    }
    (tally.checks, tally.failures, tally.result)
}

impl Tally {
    /// Detections: each reference one-to-one with an observed one of the same label, best
    /// reference first. Returns which observed detections the references took.
    fn references(
        &mut self,
        conf: &Conformance,
        case: &ConformanceCase,
        obs: &Observed,
    ) -> Vec<bool> {
        let input = &case.input;
        let mut used = vec![false; obs.detections.len()];
        let mut refs: Vec<&ExpectedDetection> = case.detections.iter().collect();
        refs.sort_by(|a, b| b.score.total_cmp(&a.score));
        for e in refs {
            self.checks += 1;
            let best = obs
                .detections
                .iter()
                .enumerate()
                .filter(|(i, d)| !used.get(*i).copied().unwrap_or(true) && *d.label == *e.label)
                .min_by(|(_, a), (_, b)| {
                    box_diff(&a.bbox, &e.bbox).total_cmp(&box_diff(&b.bbox, &e.bbox))
                });
            match best {
                Some((i, d))
                    if box_diff(&d.bbox, &e.bbox) <= conf.box_tolerance
                        && (d.score - e.score).abs() <= conf.score_tolerance =>
                {
                    if let Some(u) = used.get_mut(i) {
                        *u = true;
                    }
                    let r = &mut self.result;
                    r.max_box_diff = r.max_box_diff.max(box_diff(&d.bbox, &e.bbox));
                    r.max_score_diff = r.max_score_diff.max((d.score - e.score).abs());
                }
                Some((_, d)) => self.failures.push(format!(
                    "input {input}: reference {} {:.3} at {} not reproduced; nearest is {} {:.3} at {} (box off by {:.4}, tolerance {}; score off by {:.4}, tolerance {})",
                    e.label,
                    e.score,
                    fmt_box(&e.bbox),
                    d.label,
                    d.score,
                    fmt_box(&d.bbox),
                    box_diff(&d.bbox, &e.bbox),
                    conf.box_tolerance,
                    (d.score - e.score).abs(),
                    conf.score_tolerance
                )),
                None => self.failures.push(format!(
                    "input {input}: reference {} {:.3} at {} not reproduced; no {} detected",
                    e.label,
                    e.score,
                    fmt_box(&e.bbox),
                    e.label
                )),
            }
        }
        used
    }

    /// And nothing clearly above the threshold that the references lack.
    fn unreferenced(&mut self, conf: &Conformance, input: &str, obs: &Observed, used: &[bool]) {
        for (i, d) in obs.detections.iter().enumerate() {
            if used.get(i).copied().unwrap_or(true) {
                continue;
            }
            self.checks += 1;
            if d.score >= conf.threshold + conf.score_tolerance {
                self.failures.push(format!(
                    "input {input}: detection {} {:.3} at {} is not among the references",
                    d.label,
                    d.score,
                    fmt_box(&d.bbox)
                ));
            }
        }
    }

    /// One output's tensor: every statistic within atol + rtol * |reference|; the worst one is
    /// quoted.
    fn output(&mut self, conf: &Conformance, input: &str, want: &TensorSummary, obs: &Observed) {
        self.checks += 1;
        let Some(got) = obs.outputs.iter().find(|o| o.name == want.name) else {
            self.failures.push(format!(
                "input {input}: output `{}` is not among the model's outputs",
                want.name
            ));
            return;
        };
        if got.shape != want.shape {
            self.failures.push(format!(
                "input {input}: output `{}` has shape {:?}, the references {:?}",
                want.name, got.shape, want.shape
            ));
            return;
        }
        let stats = self.statistics(input, got, want);
        if let Some((ratio, what, g, w, tol)) = worst_statistic(conf, stats) {
            self.result.max_tensor_ratio = self.result.max_tensor_ratio.max(ratio);
            if ratio > 1.0 {
                self.failures.push(format!(
                    "input {input}: output `{}` {what} is {g:.6}, the reference {w:.6} (off by {:.6}, tolerance {tol:.6})",
                    want.name,
                    (g - w).abs()
                ));
            }
        }
    }

    /// The statistics to compare, `(what, got, reference)`: mean, std, quantiles, and the
    /// positional samples when both sides have as many (a failure otherwise).
    fn statistics(
        &mut self,
        input: &str,
        got: &TensorSummary,
        want: &TensorSummary,
    ) -> Vec<(String, f64, f64)> {
        let mut stats: Vec<(String, f64, f64)> = vec![
            ("mean".into(), got.mean, want.mean),
            ("std".into(), got.std, want.std),
        ];
        for (k, (g, w)) in got.quantiles.iter().zip(&want.quantiles).enumerate() {
            let q = QUANTILES.get(k).copied().unwrap_or(0.0);
            stats.push((format!("quantile {q}"), *g, *w));
        }
        if got.samples.len() == want.samples.len() {
            for (k, (g, w)) in got.samples.iter().zip(&want.samples).enumerate() {
                stats.push((format!("sample {k}"), *g, *w));
            }
        } else {
            self.failures.push(format!(
                "input {input}: output `{}` gave {} positional samples, the references {}",
                want.name,
                got.samples.len(),
                want.samples.len()
            ));
        }
        stats
    }
}

/// The statistic furthest off, as `(difference / tolerance, what, got, reference, tolerance)`
/// (the first of equals); `None` when there are none.
fn worst_statistic(
    conf: &Conformance,
    stats: Vec<(String, f64, f64)>,
) -> Option<(f64, String, f64, f64, f64)> {
    let mut worst: Option<(f64, String, f64, f64, f64)> = None;
    for (what, g, w) in stats {
        let tol = f64::from(conf.tensor_atol) + f64::from(conf.tensor_rtol) * w.abs();
        let diff = (g - w).abs();
        let ratio = if diff == 0.0 {
            0.0
        } else if tol > 0.0 && diff.is_finite() {
            diff / tol
        } else {
            f64::INFINITY
        };
        if worst.as_ref().is_none_or(|(r, ..)| ratio > *r) {
            worst = Some((ratio, what, g, w, tol));
        }
    }
    worst
}

/// Run `model` on the card's references and compare. `Ok` with how close each case came, or
/// [`Error::Conformance`] naming every input and output that is off, and by how much.
pub fn check(
    runtime: &Runtime,
    card: &ModelCard,
    model: &Path,
    footage: &Path,
) -> Result<Vec<CaseResult>> {
    let conf = card.conformance.as_ref().ok_or_else(|| Error::CardInvalid {
        path: card.path.clone(),
        key: "conformance".into(),
        message: "is missing: this card pins its model by `sha256`, there is nothing to check it against (write references with `ocellus model record`)".into(),
    })?;
    let inputs: Vec<String> = conf.case.iter().map(|c| c.input.clone()).collect();
    let threshold = (conf.threshold - conf.score_tolerance).max(0.0);
    let observed = observe(runtime, card, model, footage, &inputs, threshold)?;
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut results = Vec::with_capacity(conf.case.len());
    for (case, obs) in conf.case.iter().zip(&observed) {
        let (n, f, r) = compare(conf, case, obs);
        checked += n;
        failures.extend(f);
        results.push(r);
    }
    if failures.is_empty() {
        return Ok(results);
    }
    let more = failures.len().saturating_sub(MAX_QUOTED_FAILURES);
    failures.truncate(MAX_QUOTED_FAILURES);
    if more > 0 {
        failures.push(format!("and {more} more"));
    }
    Err(Error::Conformance {
        card: card.path.clone(),
        path: model.to_path_buf(),
        checked,
        failures,
    })
}

/// [`check`] the model and, when it conforms, write its [`Manifest`] beside it: the model is then
/// loaded like any other, its bytes pinned on this machine. `converter` says what made it.
pub fn accept(
    runtime: &Runtime,
    card: &ModelCard,
    model: &Path,
    footage: &Path,
    converter: &str,
) -> Result<Manifest> {
    // hash first: the bytes that were checked are the bytes pinned
    let sha256 = crate::card::sha256_file(model)?;
    let results = check(runtime, card, model, footage)?;
    let size = std::fs::metadata(model)
        .map_err(|source| Error::Io {
            path: model.to_path_buf(),
            source,
        })?
        .len();
    if crate::card::sha256_file(model)? != sha256 {
        return Err(Error::ModelManifest {
            manifest: crate::manifest::path_for(model),
            message: format!(
                "not written: {} changed while it was checked",
                model.display()
            ),
        });
    }
    let manifest = Manifest {
        schema: SCHEMA.into(),
        card: card.name.clone(),
        file: model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256,
        size,
        card_sha256: card
            .path
            .is_file()
            .then(|| crate::card::sha256_file(&card.path))
            .transpose()?,
        source_sha256: card.source.sha256.clone(),
        conformance_sha256: card
            .conformance
            .as_ref()
            .map(|c| c.digest())
            .unwrap_or_default(),
        converter: converter.to_owned(),
        onnxruntime: format!(
            "{} ({})",
            runtime
                .library()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ort::info()
        ),
        accepted: crate::event::rfc3339_millis(std::time::SystemTime::now()),
        results,
    };
    manifest.write(model)?;
    Ok(manifest)
}

/// Round to 7 significant digits: far below any tolerance, and a card stays readable.
fn round7(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 7 - (v.abs().log10().floor() as i32) - 1;
    let p = 10f64.powi(digits.clamp(-300, 300));
    (v * p).round() / p
}

/// The references for a card: `model`'s detections at or above `base.threshold` and its output
/// summaries on each of `inputs`, with the tolerances of `base` (its cases are replaced).
pub fn record(
    runtime: &Runtime,
    card: &ModelCard,
    model: &Path,
    footage: &Path,
    inputs: &[String],
    base: &Conformance,
) -> Result<Conformance> {
    let observed = observe(runtime, card, model, footage, inputs, base.threshold)?;
    let case = observed
        .into_iter()
        .map(|o| ConformanceCase {
            input: o.input,
            detections: o
                .detections
                .iter()
                .map(|d| ExpectedDetection {
                    label: d.label.to_string(),
                    score: round7(f64::from(d.score)) as f32,
                    bbox: d.bbox.map(|v| round7(f64::from(v)) as f32),
                })
                .collect(),
            outputs: o
                .outputs
                .into_iter()
                .map(|s| TensorSummary {
                    mean: round7(s.mean),
                    std: round7(s.std),
                    quantiles: s.quantiles.into_iter().map(round7).collect(),
                    samples: s.samples.into_iter().map(round7).collect(),
                    ..s
                })
                .collect(),
        })
        .collect();
    Ok(Conformance {
        case,
        ..base.clone()
    })
}

/// The `[conformance]` section of a card, as TOML.
pub fn to_toml(conf: &Conformance) -> Result<String> {
    #[derive(serde::Serialize)]
    struct Section<'a> {
        conformance: &'a Conformance,
    }
    toml::to_string(&Section { conformance: conf }).map_err(|e| Error::InvalidOption {
        name: "conformance".into(),
        message: format!("cannot be written as TOML: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_quantiles_ignore_order_and_samples_do_not() {
        let a: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let mut b = a.clone();
        b.reverse();
        let sa = summarise("x", &[100], &a, true);
        let sb = summarise("x", &[100], &b, true);
        assert_eq!(sa.quantiles, sb.quantiles);
        assert_eq!(sa.mean, sb.mean);
        assert_ne!(sa.samples, sb.samples);
        assert_eq!(sa.quantiles.first(), Some(&0.0));
        assert_eq!(sa.quantiles.last(), Some(&99.0));
        assert!(summarise("x", &[100], &a, false).samples.is_empty());
    }

    #[test]
    fn rounding_keeps_seven_digits() {
        assert_eq!(round7(0.123456789), 0.1234568);
        assert_eq!(round7(-4123.456789), -4123.457);
        assert_eq!(round7(0.0), 0.0);
    }

    fn conf() -> Conformance {
        Conformance {
            threshold: 0.5,
            score_tolerance: 0.02,
            box_tolerance: 0.01,
            tensor_atol: 0.01,
            tensor_rtol: 0.01,
            case: vec![ConformanceCase {
                input: "a.png".into(),
                detections: vec![ExpectedDetection {
                    label: "person".into(),
                    score: 0.8,
                    bbox: [0.1, 0.1, 0.3, 0.5],
                }],
                outputs: vec![summarise("o", &[4], &[1.0, 2.0, 3.0, 4.0], true)],
            }],
        }
    }

    fn det(score: f32, bbox: [f32; 4]) -> Detection {
        Detection {
            label: "person".into(),
            class_id: 1,
            score,
            bbox,
        }
    }

    #[test]
    fn small_differences_pass_and_large_ones_name_input_output_and_size() {
        let c = conf();
        let case = &c.case[0];
        let near = Observed {
            input: "a.png".into(),
            detections: vec![det(0.81, [0.105, 0.1, 0.3, 0.5])],
            outputs: vec![summarise("o", &[4], &[1.0, 2.0, 3.0, 4.001], true)],
        };
        let (_, f, r) = compare(&c, case, &near);
        assert!(f.is_empty(), "{f:?}");
        assert!(r.max_tensor_ratio < 1.0 && r.max_box_diff > 0.0);

        let far = Observed {
            input: "a.png".into(),
            detections: vec![
                det(0.81, [0.2, 0.1, 0.3, 0.5]),
                det(0.9, [0.6, 0.6, 0.7, 0.9]),
            ],
            outputs: vec![summarise("o", &[4], &[1.0, 2.0, 3.0, 8.0], true)],
        };
        let (_, f, _) = compare(&c, case, &far);
        assert_eq!(f.len(), 4, "{f:?}");
        assert!(
            f[0].contains("a.png") && f[0].contains("box off by 0.1"),
            "{f:?}"
        );
        // the moved box is not the reference's, and the new one is not either
        assert!(
            f[1].contains("0.810") && f[1].contains("not among the references"),
            "{f:?}"
        );
        assert!(
            f[2].contains("0.900") && f[2].contains("not among the references"),
            "{f:?}"
        );
        assert!(
            f[3].contains("output `o`") && f[3].contains("off by"),
            "{f:?}"
        );
    }

    #[test]
    fn a_detection_near_the_threshold_may_come_and_go() {
        let mut c = conf();
        c.case[0].detections.clear();
        let obs = Observed {
            input: "a.png".into(),
            detections: vec![det(0.51, [0.1, 0.1, 0.2, 0.2])],
            outputs: c.case[0].outputs.clone(),
        };
        let (_, f, _) = compare(&c, &c.case[0], &obs);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn recorded_section_parses_back() -> Result<()> {
        let text = to_toml(&conf())?;
        let back: std::collections::BTreeMap<String, Conformance> =
            toml::from_str(&text).map_err(|e| Error::Frame(e.to_string()))?;
        assert_eq!(back.get("conformance"), Some(&conf()));
        Ok(())
    }
}
