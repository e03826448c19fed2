//! Checks shared by the sections: ranges, points, names, paths and labels, each reported at the
//! value's line under its dotted key.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::Cx;
use crate::card::ModelCard;
use crate::error::Result;

/// What a name (device id, rule name, client id) may contain.
const NAME_CHARS: &str = "letters A-Z a-z, digits 0-9, '.', '_' and '-'";

fn range_text(lo: i64, hi: i64) -> String {
    if hi == i64::MAX {
        format!("{lo} or more")
    } else {
        format!("{lo}..={hi}")
    }
}

/// A whole number within `lo..=hi`.
pub(super) fn int_in(cx: &Cx<'_>, v: &Spanned<i64>, key: &str, lo: i64, hi: i64) -> Result<i64> {
    let x = *v.get_ref();
    if x < lo || x > hi {
        return Err(cx.at(v, key, format!("{x} is outside {}", range_text(lo, hi))));
    }
    Ok(x)
}

/// A number within `lo..=hi`.
pub(super) fn float_in(cx: &Cx<'_>, v: &Spanned<f64>, key: &str, lo: f64, hi: f64) -> Result<f64> {
    let x = *v.get_ref();
    if !(lo..=hi).contains(&x) {
        return Err(cx.at(v, key, format!("{x} is outside {lo}..={hi}")));
    }
    Ok(x)
}

fn check_xy(p: &[f64; 2]) -> std::result::Result<(), String> {
    for (axis, v) in [("x", p[0]), ("y", p[1])] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!(
                "{axis} = {v} is outside 0..=1 (coordinates are normalised: 0 is the left/top edge, 1 the right/bottom edge)"
            ));
        }
    }
    Ok(())
}

/// A point in normalised coordinates.
pub(super) fn point(cx: &Cx<'_>, p: &Spanned<Xy>, key: &str) -> Result<[f64; 2]> {
    check_xy(p.get_ref()).map_err(|m| cx.at(p, key, m))?;
    Ok(p.get_ref().0)
}

/// A point as written in the file: exactly two numbers `[x, y]` (a plain `[f64; 2]` would accept
/// `[x, y, z]` and drop the rest).
#[derive(Debug, Clone, Copy)]
pub(super) struct Xy(pub(super) [f64; 2]);

impl std::ops::Deref for Xy {
    type Target = [f64; 2];
    fn deref(&self) -> &[f64; 2] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Xy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Xy, D::Error> {
        let v = Vec::<f64>::deserialize(d)?;
        <[f64; 2]>::try_from(v.as_slice()).map(Xy).map_err(|_| {
            serde::de::Error::custom(format!(
                "a point is two numbers [x, y], this has {}",
                v.len()
            ))
        })
    }
}

/// 1..=max characters of `[A-Za-z0-9._-]`.
fn name_problem(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".to_owned());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!("\"{s}\" contains {c:?}"));
    }
    let n = s.chars().count();
    (n > max).then(|| format!("\"{s}\" is {n} characters long"))
}

/// A name that becomes part of MQTT topics and events (`what`: "device id", "rule name", ...).
pub(super) fn check_name(
    cx: &Cx<'_>,
    v: &Spanned<String>,
    key: &str,
    max: usize,
    what: &str,
) -> Result<String> {
    match name_problem(v.get_ref(), max) {
        Some(problem) => Err(cx.at(
            v,
            key,
            format!(
                "{problem}; a {what} is 1 to {max} characters: {NAME_CHARS} (it becomes part of MQTT topics and events)"
            ),
        )),
        None => Ok(v.get_ref().clone()),
    }
}

/// A path, relative ones resolved against the config file's directory (never the working
/// directory: a service's working directory is rarely where the pilot thinks).
pub(super) fn resolve_path(
    cx: &Cx<'_>,
    v: &Spanned<String>,
    key: &str,
    dir: &Path,
) -> Result<PathBuf> {
    let s = v.get_ref();
    if s.trim().is_empty() {
        return Err(cx.at(v, key, "is empty; give a path"));
    }
    let p = Path::new(s);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    })
}

/// Labels must be non-empty, exist in the card and (for rules) be kept by `model.labels`.
pub(super) fn check_labels(
    cx: &Cx<'_>,
    v: &Spanned<Vec<String>>,
    key: &str,
    card: &ModelCard,
    kept: Option<&[String]>,
) -> Result<Vec<String>> {
    let labels = v.get_ref();
    if labels.is_empty() {
        return Err(cx.at(
            v,
            key,
            "is an empty list; remove the key to keep every label",
        ));
    }
    for l in labels {
        if !card.labels.values().any(|c| &**c == l.as_str()) {
            let known: Vec<&str> = card.labels.values().map(|c| &**c).collect();
            return Err(cx.at(
                v,
                key,
                format!(
                    "\"{l}\" is not a label of model card {} (labels are case-sensitive); it has: {}",
                    card.path.display(),
                    known.join(", ")
                ),
            ));
        }
        if let Some(kept) = kept
            && !kept.contains(l)
        {
            return Err(cx.at(
                v,
                key,
                format!(
                    "\"{l}\" is never detected: `model.labels` keeps only {}; add it there or remove it here",
                    kept.join(", ")
                ),
            ));
        }
    }
    Ok(labels.clone())
}
