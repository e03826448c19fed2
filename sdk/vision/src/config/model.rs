//! `[model]`: the card to load and what the deployment overrides of it.
//!
//! [`ModelConfig`] stays here rather than next to the card: it is the parsed section (where the
//! card file is, and the threshold and label filter this deployment puts on top of the card),
//! not a property of the model. The card itself is [`ModelCard`], and what the detector is told
//! is [`DetectorOptions`](crate::infer::DetectorOptions).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::Cx;
use super::check::{check_labels, float_in, resolve_path};
use crate::card::ModelCard;
use crate::error::{Error, Result};
use crate::tile::{MAX_TILES, Tiling};

/// `[model]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    card: Spanned<String>,
    threshold: Option<Spanned<f64>>,
    labels: Option<Spanned<Vec<String>>>,
    tiles: Option<Spanned<String>>,
    tile_overlap: Option<Spanned<f64>>,
}

/// `[model]`: the detector.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The card file, resolved against the config file's directory.
    pub card_path: PathBuf,
    /// The loaded card.
    pub card: ModelCard,
    /// Score threshold, 0..=1 (`None`: the card's `score_threshold`).
    pub threshold: Option<f32>,
    /// Keep only detections with these labels (`None`: every label of the card).
    pub labels: Option<Vec<String>>,
    /// Run the detector on overlapping tiles of each frame (`tiles`, default `"2x1"`: two tiles
    /// along the longer side): more recall on small and crowded people, one inference per tile.
    /// `None` (`tiles = "1x1"`): the whole frame once.
    pub tiling: Option<Tiling>,
}

impl ModelConfig {
    /// The threshold in effect: `threshold`, else the card's.
    pub fn effective_threshold(&self) -> f32 {
        self.threshold
            .unwrap_or_else(|| self.card.output.score_threshold())
    }
}

/// `[model]`: the card must load, the labels must be the card's.
pub(super) fn parse(cx: &Cx<'_>, raw: &RawModel, dir: &Path) -> Result<ModelConfig> {
    let card_path = resolve_path(cx, &raw.card, "model.card", dir)?;
    let card = ModelCard::load(&card_path).map_err(|e| {
        let hint = match &e {
            Error::CardRead { .. } => format!(
                "; relative paths are relative to the config file's directory ({})",
                dir.display()
            ),
            _ => String::new(),
        };
        cx.at(&raw.card, "model.card", format!("{e}{hint}"))
    })?;
    let threshold = match &raw.threshold {
        Some(t) => Some(float_in(cx, t, "model.threshold", 0.0, 1.0)? as f32),
        None => None,
    };
    let labels = match &raw.labels {
        Some(l) => Some(check_labels(cx, l, "model.labels", &card, None)?),
        None => None,
    };
    Ok(ModelConfig {
        card_path,
        card,
        threshold,
        labels,
        tiling: tiling(cx, raw)?,
    })
}

/// `tiles = "NxM"` and `tile_overlap`.
fn tiling(cx: &Cx<'_>, raw: &RawModel) -> Result<Option<Tiling>> {
    let Some(tiles) = &raw.tiles else {
        let overlap = match &raw.tile_overlap {
            Some(o) => float_in(cx, o, "model.tile_overlap", 0.0, 0.5)? as f32,
            None => Tiling::default().overlap,
        };
        return Ok(Some(Tiling {
            overlap,
            ..Tiling::default()
        }));
    };
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_TILES).contains(n))
    };
    let grid = match tiles.get_ref().split_once(['x', 'X']) {
        Some((a, b)) => side(a).zip(side(b)),
        None => None,
    };
    let Some(grid) = grid else {
        return Err(cx.at(
            tiles,
            "model.tiles",
            format!(
                "{:?} is not a grid: write \"COLUMNSxROWS\", each 1 to {MAX_TILES}, e.g. \"2x2\"",
                tiles.get_ref()
            ),
        ));
    };
    let overlap = match &raw.tile_overlap {
        Some(o) => float_in(cx, o, "model.tile_overlap", 0.0, 0.5)? as f32,
        None => Tiling::default().overlap,
    };
    let tiling = Tiling { grid, overlap };
    Ok((!tiling.is_whole_frame()).then_some(tiling))
}
