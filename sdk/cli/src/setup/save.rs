//! Writing the setup page's lines and zones back into the config file's text, with
//! `toml_edit`: comments, key order and every unrelated key are kept. A rule that came from the
//! file keeps its table (its comments, `labels`, `dwell_s`); only its name and geometry change.

use serde::{Deserialize, Serialize};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, Value};

/// Most rules of each kind one save may carry (the config's own checks apply after this).
pub(crate) const MAX_RULES: usize = 256;
/// Most vertices of one zone.
pub(crate) const MAX_VERTICES: usize = 64;

/// A line as the page edits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LineEdit {
    pub(crate) name: String,
    pub(crate) a: [f64; 2],
    pub(crate) b: [f64; 2],
    /// Its index among the file's `[[rules.line]]` tables when it came from there.
    #[serde(default)]
    pub(crate) orig: Option<usize>,
}

/// A zone as the page edits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ZoneEdit {
    pub(crate) name: String,
    pub(crate) polygon: Vec<[f64; 2]>,
    /// Its index among the file's `[[rules.zone]]` tables when it came from there.
    #[serde(default)]
    pub(crate) orig: Option<usize>,
}

/// What the page saves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RulesEdit {
    pub(crate) lines: Vec<LineEdit>,
    pub(crate) zones: Vec<ZoneEdit>,
}

/// Coordinates are written with 4 decimals (a tenth of a pixel at 4K).
fn coord(v: f64) -> Value {
    Value::from((v * 1e4).round() / 1e4)
}

fn point(p: [f64; 2]) -> Value {
    let mut a = Array::new();
    a.push(coord(p[0]));
    a.push(coord(p[1]));
    Value::Array(a)
}

/// Set `key` in `table` to `value`, in place: the comments before the key and after the old
/// value stay.
fn set(table: &mut Table, key: &str, value: Value) {
    let mut value = value;
    if let Some(old) = table.get_mut(key).and_then(Item::as_value_mut) {
        *value.decor_mut() = old.decor().clone();
        *old = value;
        return;
    }
    table.insert(key, Item::Value(value));
}

/// The `[[rules.<kind>]]` tables of the document, cloned (empty when there are none).
fn old_tables(doc: &DocumentMut, kind: &str) -> Vec<Table> {
    doc.get("rules")
        .and_then(|r| r.get(kind))
        .and_then(Item::as_array_of_tables)
        .map(|a| a.iter().cloned().collect())
        .unwrap_or_default()
}

/// `text` with its lines and zones replaced by `edit`. Errors say what is wrong with the edit
/// itself (too many rules, not TOML); whether the result is a valid config is for
/// `Config::parse` to say.
pub(crate) fn apply(text: &str, edit: &RulesEdit) -> Result<String, String> {
    if edit.lines.len() > MAX_RULES || edit.zones.len() > MAX_RULES {
        return Err(format!("at most {MAX_RULES} lines and {MAX_RULES} zones"));
    }
    if let Some(z) = edit.zones.iter().find(|z| z.polygon.len() > MAX_VERTICES) {
        return Err(format!(
            "zone {:?} has {} vertices, at most {MAX_VERTICES}",
            z.name,
            z.polygon.len()
        ));
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("the config file is not TOML: {e}"))?;
    let (old_lines, old_zones) = (old_tables(&doc, "line"), old_tables(&doc, "zone"));
    let mut lines = ArrayOfTables::new();
    for l in &edit.lines {
        let mut t = l
            .orig
            .and_then(|i| old_lines.get(i).cloned())
            .unwrap_or_default();
        set(&mut t, "name", Value::from(l.name.as_str()));
        set(&mut t, "a", point(l.a));
        set(&mut t, "b", point(l.b));
        lines.push(t);
    }
    let mut zones = ArrayOfTables::new();
    for z in &edit.zones {
        let mut t = z
            .orig
            .and_then(|i| old_zones.get(i).cloned())
            .unwrap_or_default();
        set(&mut t, "name", Value::from(z.name.as_str()));
        let mut polygon = Array::new();
        for p in &z.polygon {
            polygon.push(point(*p));
        }
        set(&mut t, "polygon", Value::Array(polygon));
        zones.push(t);
    }
    if doc.get("rules").is_none() {
        let mut rules = Table::new();
        rules.set_implicit(true);
        doc.insert("rules", Item::Table(rules));
    }
    let Some(rules) = doc.get_mut("rules").and_then(Item::as_table_mut) else {
        return Err("`rules` in the config file is not a table".into());
    };
    for (kind, tables) in [("line", lines), ("zone", zones)] {
        if tables.is_empty() {
            rules.remove(kind);
        } else {
            rules.insert(kind, Item::ArrayOfTables(tables));
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const TEXT: &str = r#"# shop entrance camera
[device]
id = "cam-1"   # the door camera

[[rules.line]]
# counts people through the door
name = "door"
a = [0.5, 0.1]   # top of the door
b = [0.5, 0.9]
labels = ["person"]

[[rules.zone]]
name = "till"
polygon = [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]
dwell_s = 30     # a queue is 30 s

[mqtt]
url = "mqtt://127.0.0.1:1883"
"#;

    fn edit() -> RulesEdit {
        RulesEdit {
            lines: vec![
                LineEdit {
                    name: "front door".into(),
                    a: [0.6, 0.123456],
                    b: [0.5, 0.9],
                    orig: Some(0),
                },
                LineEdit {
                    name: "aisle".into(),
                    a: [0.1, 0.5],
                    b: [0.9, 0.5],
                    orig: None,
                },
            ],
            zones: vec![],
        }
    }

    #[test]
    fn an_edit_keeps_comments_and_unrelated_keys() {
        let out = apply(TEXT, &edit()).unwrap();
        for kept in [
            "# shop entrance camera",
            "id = \"cam-1\"   # the door camera",
            "# counts people through the door",
            "# top of the door",
            "labels = [\"person\"]",
            "url = \"mqtt://127.0.0.1:1883\"",
        ] {
            assert!(out.contains(kept), "lost {kept:?}:\n{out}");
        }
        let doc: toml::Table = toml::from_str(&out).unwrap();
        let lines = doc["rules"]["line"].as_array().unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["name"].as_str(), Some("front door"));
        assert_eq!(lines[0]["a"][1].as_float(), Some(0.1235));
        assert_eq!(lines[1]["name"].as_str(), Some("aisle"));
        assert!(lines[1].get("labels").is_none());
        // the zone was removed, the table with it
        assert!(doc["rules"].get("zone").is_none(), "{out}");
        assert!(!out.contains("dwell_s"), "{out}");
    }

    #[test]
    fn rules_can_be_added_to_a_file_without_any() {
        let text = "[device]\nid = \"x\"\n";
        let mut e = edit();
        e.lines[0].orig = Some(7); // not in the file: a new table
        e.zones.push(ZoneEdit {
            name: "queue".into(),
            polygon: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]],
            orig: None,
        });
        let out = apply(text, &e).unwrap();
        let doc: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(doc["rules"]["line"].as_array().unwrap().len(), 2);
        assert_eq!(
            doc["rules"]["zone"][0]["polygon"][2][1].as_float(),
            Some(1.0)
        );
        assert!(out.starts_with("[device]"), "{out}");
    }

    #[test]
    fn oversized_edits_and_broken_files_are_refused() {
        let mut e = edit();
        e.zones.push(ZoneEdit {
            name: "z".into(),
            polygon: vec![[0.5, 0.5]; MAX_VERTICES + 1],
            orig: None,
        });
        assert!(apply(TEXT, &e).unwrap_err().contains("vertices"));
        assert!(apply("[device", &edit()).unwrap_err().contains("not TOML"));
    }
}
