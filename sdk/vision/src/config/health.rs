//! `[health]`: how often the retained health message is published.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Cx;
use super::check::int_in;
use crate::error::Result;

/// `[health]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    interval_s: Option<Spanned<i64>>,
}

/// `[health]`: the retained health message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// How often it is published (`interval_s`, default 30 s).
    pub interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            interval: crate::health::DEFAULT_INTERVAL,
        }
    }
}

/// `[health]`, the default for what is absent.
pub(super) fn parse(cx: &Cx<'_>, raw: Option<&RawHealth>) -> Result<HealthConfig> {
    match raw {
        Some(RawHealth {
            interval_s: Some(i),
        }) => Ok(HealthConfig {
            interval: Duration::from_secs(int_in(cx, i, "health.interval_s", 1, 86_400)? as u64),
        }),
        _ => Ok(HealthConfig::default()),
    }
}
