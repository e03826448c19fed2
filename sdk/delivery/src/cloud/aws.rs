//! AWS IoT Core: telemetry topic templates and named-shadow topics.

use ocellus_core::event::Event;

/// `$aws/things/{thing}/shadow/name/{shadow}/{op}` (`op`: `update`, `get`, `update/delta`, …).
pub fn shadow_topic(thing: &str, shadow: &str, op: &str) -> String {
    format!("$aws/things/{thing}/shadow/name/{shadow}/{op}")
}

/// The topic filters the device subscribes to: the named shadow's get answers, update
/// rejections and desired-state deltas.
pub fn subscriptions(thing: &str, shadow: &str) -> Vec<String> {
    [
        "get/accepted",
        "get/rejected",
        "update/rejected",
        "update/delta",
    ]
    .iter()
    .map(|op| shadow_topic(thing, shadow, op))
    .collect()
}

/// Fill a telemetry topic template: `{thing}`, `{device}`, `{type}`.
pub fn telemetry_topic(template: &str, thing: &str, event: &Event) -> String {
    fill(template, thing, &event.device, event.kind.as_str())
}

/// Fill a template with explicit values.
pub fn fill(template: &str, thing: &str, device: &str, kind: &str) -> String {
    template
        .replace("{thing}", thing)
        .replace("{device}", device)
        .replace("{type}", kind)
}

/// What is wrong with a telemetry topic template, if anything: it must be 1..=256 bytes once
/// filled, without wildcards, empty levels, a leading `$` or placeholders other than `{thing}`,
/// `{device}` and `{type}`.
pub fn template_problem(template: &str) -> Option<String> {
    let filled = fill(template, "t", "d", "line_crossed");
    if filled.contains('{') || filled.contains('}') {
        return Some(
            "has an unknown placeholder: only {thing}, {device} and {type} are replaced".into(),
        );
    }
    if template.is_empty() || filled.len() > 256 {
        return Some("must be 1 to 256 bytes (AWS IoT Core's topic limit)".into());
    }
    if filled.starts_with('$') {
        return Some("must not start with `$` (reserved topics)".into());
    }
    if filled.contains(['+', '#']) || filled.chars().any(char::is_control) {
        return Some("must not contain `+`, `#` or control characters".into());
    }
    if filled.split('/').any(str::is_empty) {
        return Some("has an empty level (a leading, trailing or double `/`)".into());
    }
    if filled.matches('/').count() > MAX_SLASHES {
        return Some(format!(
            "has more than {MAX_SLASHES} `/` (AWS IoT Core allows at most {MAX_SLASHES} in a topic)"
        ));
    }
    None
}

/// Most `/` AWS IoT Core allows in a topic.
pub const MAX_SLASHES: usize = 7;

/// What is wrong with a thing or shadow name, if anything: AWS allows 1 to `max` of
/// `a-z A-Z 0-9 : _ -` (no `.`).
pub fn name_problem(name: &str, max: usize) -> Option<String> {
    if name.is_empty() || name.len() > max {
        return Some(format!("must be 1 to {max} characters"));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')))
        .map(|c| {
            format!(
                "contains {c:?}; AWS IoT allows letters, digits, ':', '_' and '-' in thing and shadow names"
            )
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn shadow_topics_and_subscriptions() {
        assert_eq!(
            shadow_topic("door-1", "ocellus", "update"),
            "$aws/things/door-1/shadow/name/ocellus/update"
        );
        let subs = subscriptions("door-1", "counting");
        assert_eq!(subs.len(), 4);
        assert!(subs.contains(&"$aws/things/door-1/shadow/name/counting/update/delta".to_owned()));
        assert!(subs.contains(&"$aws/things/door-1/shadow/name/counting/get/accepted".to_owned()));
    }

    #[test]
    fn templates_are_filled_and_checked() {
        assert_eq!(
            fill("dt/{thing}/{device}/{type}", "t1", "cam", "dwell"),
            "dt/t1/cam/dwell"
        );
        assert_eq!(template_problem("ocellus/{thing}/events/{type}"), None);
        assert_eq!(template_problem("a/b/c/d/e/f/g/{type}"), None);
        for bad in [
            "",
            "a/b/c/d/e/f/g/h/{type}",
            "x/{kind}",
            "$aws/x",
            "a/+/b",
            "a//b",
            "/a",
        ] {
            assert!(template_problem(bad).is_some(), "{bad:?} was accepted");
        }
        assert!(template_problem(&"x".repeat(257)).is_some());
    }

    #[test]
    fn names_follow_aws() {
        for ok in ["door-1", "shop:7_door", "A"] {
            assert_eq!(name_problem(ok, 128), None, "{ok}");
        }
        for bad in ["", "shop.7", "a/b", "a b", "é"] {
            assert!(name_problem(bad, 128).is_some(), "{bad:?} was accepted");
        }
        assert!(name_problem(&"a".repeat(65), 64).is_some());
    }
}
