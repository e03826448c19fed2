//! `[rules]`, `[[rules.line]]` and `[[rules.zone]]`, and the same rules as JSON (a cloud twin's
//! desired property, a shadow's desired state, a `set_rules` method), checked the same way.
//!
//! The bounds that the rules engine itself enforces (zone area and vertex count, rule name
//! length) are taken from [`crate::rules`], so the config file, a hub's rules and a program that
//! builds [`Rules`](crate::rules::Rules) by hand are held to the same numbers; the checks here add
//! what only a file has: the line and the key of the mistake.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::check::{Xy, check_labels, check_name, int_in, point};
use super::{Cx, DOCS, ModelConfig};
use crate::error::{Error, Result};
use crate::rules::{
    LineRule, MAX_NAME_LEN, MAX_ZONE_VERTICES, MIN_ZONE_AREA, RulesConfig, ZoneRule, polygon_area,
};

/// `[rules]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    line_hysteresis: Option<Spanned<f64>>,
    zone_debounce_frames: Option<Spanned<i64>>,
    line_debounce_frames: Option<Spanned<i64>>,
    #[serde(default)]
    line: Vec<RawLine>,
    #[serde(default)]
    zone: Vec<RawZone>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    name: Spanned<String>,
    a: Spanned<Xy>,
    b: Spanned<Xy>,
    labels: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    name: Spanned<String>,
    polygon: Spanned<Vec<Spanned<Xy>>>,
    dwell_s: Option<Spanned<f64>>,
    labels: Option<Spanned<Vec<String>>>,
}

/// `[rules]`: lines and zones.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RulesSection {
    /// Settings shared by all rules.
    pub config: RulesConfig,
    /// `[[rules.line]]`, in file order.
    pub lines: Vec<LineRule>,
    /// `[[rules.zone]]`, in file order.
    pub zones: Vec<ZoneRule>,
}

/// `[rules]`: each rule checked with its key, then the whole set by the rules engine.
pub(super) fn parse(
    cx: &Cx<'_>,
    raw: &Spanned<RawRules>,
    model: &ModelConfig,
    doc: &toml::de::DeTable<'_>,
) -> Result<RulesSection> {
    let span = raw.span();
    let raw = raw.get_ref();
    let config = settings(cx, raw)?;
    let mut names = Names::default();
    let mut lines = Vec::with_capacity(raw.line.len());
    for (i, l) in raw.line.iter().enumerate() {
        lines.push(line(cx, l, &format!("rules.line[{i}]"), model, &mut names)?);
    }
    let mut zones = Vec::with_capacity(raw.zone.len());
    for (i, z) in raw.zone.iter().enumerate() {
        zones.push(zone(cx, z, &format!("rules.zone[{i}]"), model, &mut names)?);
    }
    crate::rules::Rules::new(lines.clone(), zones.clone(), config.clone())
        .map_err(|e| cx.option_error(e.into(), doc, span, "rules"))?;
    Ok(RulesSection {
        config,
        lines,
        zones,
    })
}

/// `rules.line_hysteresis`, `rules.zone_debounce_frames` and `rules.line_debounce_frames`.
fn settings(cx: &Cx<'_>, raw: &RawRules) -> Result<RulesConfig> {
    let mut config = RulesConfig::default();
    if let Some(h) = &raw.line_hysteresis {
        let v = *h.get_ref();
        if !(0.0..0.5).contains(&v) {
            return Err(cx.at(
                h,
                "rules.line_hysteresis",
                format!("must be at least 0 and less than 0.5 (a normalised distance, e.g. 0.01), got {v}"),
            ));
        }
        config.line_hysteresis = v as f32;
    }
    if let Some(d) = &raw.zone_debounce_frames {
        config.zone_debounce_frames = int_in(cx, d, "rules.zone_debounce_frames", 1, 100)? as u32;
    }
    if let Some(d) = &raw.line_debounce_frames {
        config.line_debounce_frames = int_in(cx, d, "rules.line_debounce_frames", 1, 100)? as u32;
    }
    Ok(config)
}

/// The rule names seen so far: a name is unique across lines and zones (it is the event's
/// `rule`).
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    /// `name`, checked and recorded as the name of `rule` (e.g. `rules.zone[1]`).
    fn unique(
        &mut self,
        cx: &Cx<'_>,
        name: &Spanned<String>,
        key: &str,
        rule: &str,
    ) -> Result<String> {
        let checked = check_name(cx, name, key, MAX_NAME_LEN, "rule name")?;
        if let Some(first) = self.0.get(&checked) {
            return Err(cx.at(
                name,
                key,
                format!(
                    "\"{checked}\" is already the name of `{first}`; rule names must be unique across lines and zones"
                ),
            ));
        }
        self.0.insert(checked.clone(), rule.to_owned());
        Ok(checked)
    }
}

/// A rule's `labels`: the card's, and kept by `model.labels` (else the rule never fires).
fn rule_labels(
    cx: &Cx<'_>,
    labels: &Option<Spanned<Vec<String>>>,
    key: &str,
    model: &ModelConfig,
) -> Result<Vec<String>> {
    match labels {
        Some(v) => check_labels(
            cx,
            v,
            &format!("{key}.labels"),
            &model.card,
            model.labels.as_deref(),
        ),
        None => Ok(Vec::new()),
    }
}

/// `[[rules.line]]` number `key`.
fn line(
    cx: &Cx<'_>,
    l: &RawLine,
    key: &str,
    model: &ModelConfig,
    names: &mut Names,
) -> Result<LineRule> {
    let name = names.unique(cx, &l.name, &format!("{key}.name"), key)?;
    let a = point(cx, &l.a, &format!("{key}.a"))?;
    let b = point(cx, &l.b, &format!("{key}.b"))?;
    if (a[0] - b[0]).hypot(a[1] - b[1]) < 1e-6 {
        return Err(cx.at(
            &l.b,
            &format!("{key}.b"),
            "is the same point as `a`; a line needs two different points",
        ));
    }
    let labels = rule_labels(cx, &l.labels, key, model)?;
    Ok(LineRule {
        name,
        a: [a[0] as f32, a[1] as f32],
        b: [b[0] as f32, b[1] as f32],
        labels,
    })
}

/// `[[rules.zone]]` number `key`.
fn zone(
    cx: &Cx<'_>,
    z: &RawZone,
    key: &str,
    model: &ModelConfig,
    names: &mut Names,
) -> Result<ZoneRule> {
    let name = names.unique(cx, &z.name, &format!("{key}.name"), key)?;
    let spanned = z.polygon.get_ref();
    let pkey = format!("{key}.polygon");
    if spanned.len() < 3 || spanned.len() > MAX_ZONE_VERTICES {
        return Err(cx.at(
            &z.polygon,
            &pkey,
            format!(
                "has {} points; a zone needs 3 to {MAX_ZONE_VERTICES} points [x, y]",
                spanned.len()
            ),
        ));
    }
    let mut pts = Vec::with_capacity(spanned.len());
    for (j, p) in spanned.iter().enumerate() {
        pts.push(point(cx, p, &format!("{pkey}[{j}]"))?);
    }
    // the rules engine's own bound, checked here too for the polygon's line and key
    if polygon_area(&pts) < MIN_ZONE_AREA {
        return Err(cx.at(
            &z.polygon,
            &pkey,
            "has zero area (its points are repeated or on one line); a zone needs at least 3 points that enclose an area",
        ));
    }
    let dwell = match &z.dwell_s {
        Some(d) => {
            let v = *d.get_ref();
            if !(v > 0.0 && v <= 86_400.0) {
                return Err(cx.at(
                    d,
                    &format!("{key}.dwell_s"),
                    format!(
                        "must be more than 0 and at most 86400 (seconds), got {v}; remove the key for no dwell events"
                    ),
                ));
            }
            Some(Duration::from_secs_f64(v))
        }
        None => None,
    };
    let labels = rule_labels(cx, &z.labels, key, model)?;
    Ok(ZoneRule {
        name,
        polygon: pts.iter().map(|p| [p[0] as f32, p[1] as f32]).collect(),
        dwell,
        labels,
    })
}

/// Rules given as JSON (a twin's desired property, a shadow's desired state, a `set_rules`
/// method), in the shape of the config's `[rules]` table: `{"line_hysteresis": …,
/// "zone_debounce_frames": …, "line": [{"name", "a", "b", "labels"}], "zone": [{"name",
/// "polygon", "dwell_s", "labels"}]}`. Checked exactly as the config file's rules are, against
/// the model's labels. The error is a sentence naming the key (`rules.line[0].a`: …).
pub fn rules_from_json(
    value: &serde_json::Value,
    model: &ModelConfig,
) -> std::result::Result<RulesSection, String> {
    if !value.is_object() {
        return Err(format!(
            "`rules`: must be an object like {{\"line\": [...], \"zone\": [...]}}, got {}",
            json_kind(value)
        ));
    }
    if let Some(path) = null_inside(value, "rules") {
        return Err(format!(
            "`{path}`: is null; remove the key instead (null only clears a whole desired property)"
        ));
    }
    #[derive(serde::Serialize)]
    struct Wrap<'a> {
        rules: &'a serde_json::Value,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Unwrap {
        rules: Spanned<RawRules>,
    }
    // through TOML, so that the JSON is checked by the very code (and messages) of the file
    let text = toml::to_string(&Wrap { rules: value })
        .map_err(|e| format!("`rules`: cannot be read as rules: {e}"))?;
    let path = Path::new("rules");
    let cx = Cx { path, text: &text };
    let strip = |e: Error| match e {
        Error::Config { message, .. } => message.replace(&format!(" (see {DOCS})"), ""),
        other => other.to_string(),
    };
    let doc = toml::de::DeTable::parse(&text).map_err(|e| strip(cx.syntax_error(&e)))?;
    let raw: Unwrap =
        toml::from_str(&text).map_err(|e| strip(cx.schema_error(&e, doc.get_ref())))?;
    parse(&cx, &raw.rules, model, doc.get_ref()).map_err(strip)
}

/// The [`rules_from_json`] shape of `rules`, coordinates rounded to 6 decimals.
pub fn rules_to_json(rules: &RulesSection) -> serde_json::Value {
    use serde_json::json;
    let r6 = |v: f32| ((v as f64) * 1e6).round() / 1e6;
    let p = |p: [f32; 2]| json!([r6(p[0]), r6(p[1])]);
    let lines: Vec<serde_json::Value> = rules
        .lines
        .iter()
        .map(|l| {
            let mut o = json!({"name": l.name, "a": p(l.a), "b": p(l.b)});
            if !l.labels.is_empty() {
                o["labels"] = json!(l.labels);
            }
            o
        })
        .collect();
    let zones: Vec<serde_json::Value> = rules
        .zones
        .iter()
        .map(|z| {
            let mut o = json!({
                "name": z.name,
                "polygon": z.polygon.iter().map(|q| p(*q)).collect::<Vec<_>>(),
            });
            if let Some(d) = z.dwell {
                // whole seconds as an integer: `5`, as a person would write it, not `5.0`
                o["dwell_s"] = if d.subsec_nanos() == 0 {
                    json!(d.as_secs())
                } else {
                    json!(d.as_secs_f64())
                };
            }
            if !z.labels.is_empty() {
                o["labels"] = json!(z.labels);
            }
            o
        })
        .collect();
    json!({
        "line_hysteresis": r6(rules.config.line_hysteresis),
        "zone_debounce_frames": rules.config.zone_debounce_frames,
        "line": lines,
        "zone": zones,
    })
}

/// What a JSON value is, in a pilot's words.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "true/false",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The dotted path of the first null inside `v`, if any.
fn null_inside(v: &serde_json::Value, at: &str) -> Option<String> {
    match v {
        serde_json::Value::Null => Some(at.to_owned()),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| null_inside(x, &format!("{at}[{i}]"))),
        serde_json::Value::Object(o) => o
            .iter()
            .find_map(|(k, x)| null_inside(x, &format!("{at}.{k}"))),
        _ => None,
    }
}
