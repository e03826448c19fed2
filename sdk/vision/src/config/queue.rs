//! `[queue]`: the on-disk event queue, parsed straight into the queue's own
//! [`SpoolConfig`].

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Cx;
use super::check::{int_in, resolve_path};
use crate::error::Result;
use crate::spool::{SpoolConfig, WhenFull};

/// `[queue]` as written. The segment size is not a pilot's setting: it stays the queue's default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    dir: Option<Spanned<String>>,
    max_mb: Option<Spanned<i64>>,
    max_age_s: Option<Spanned<i64>>,
    when_full: Option<Spanned<String>>,
    fsync_ms: Option<Spanned<i64>>,
}

/// `[queue]`, the queue's defaults (in `paths::state_dir()/queue/{device_id}`) for what is absent.
pub(super) fn parse(
    cx: &Cx<'_>,
    raw: Option<&RawQueue>,
    device_id: &str,
    dir: &Path,
) -> Result<SpoolConfig> {
    let mut q = SpoolConfig::new(crate::paths::state_dir().join("queue").join(device_id));
    let Some(raw) = raw else {
        return Ok(q);
    };
    if let Some(d) = &raw.dir {
        q.dir = resolve_path(cx, d, "queue.dir", dir)?;
    }
    if let Some(m) = &raw.max_mb {
        q.max_bytes = (int_in(cx, m, "queue.max_mb", 1, 1_048_576)? as u64) << 20;
    }
    if let Some(a) = &raw.max_age_s {
        q.max_age = Duration::from_secs(int_in(cx, a, "queue.max_age_s", 60, 31_536_000)? as u64);
    }
    if let Some(w) = &raw.when_full {
        q.when_full = [WhenFull::DropOldest, WhenFull::RefuseNew]
            .into_iter()
            .find(|p| p.as_str() == w.get_ref())
            .ok_or_else(|| {
                cx.at(
                    w,
                    "queue.when_full",
                    format!(
                        "\"{}\": use \"drop_oldest\" (make room by dropping the oldest events) or \"refuse_new\" (keep what is queued, drop new events)",
                        w.get_ref()
                    ),
                )
            })?;
    }
    if let Some(f) = &raw.fsync_ms {
        q.fsync_interval =
            Duration::from_millis(int_in(cx, f, "queue.fsync_ms", 0, 10_000)? as u64);
    }
    Ok(q)
}
