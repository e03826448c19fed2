//! Anchor grids, as model cards describe them: the SSD multiple-grid generator and BlazeFace's
//! per-layer cells. Pure arithmetic on the card's numbers, used by the card (to refuse a grid
//! that cannot fit the model) and by the decoders.

use serde::Deserialize;

/// An SSD anchor generator and its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "generator", deny_unknown_fields)]
pub enum AnchorSpec {
    /// The TF Object Detection API's `MultipleGridAnchorGenerator` as built by its
    /// `ssd_anchor_generator` config (`create_ssd_anchors`), for a square input.
    #[serde(rename = "tf-multiple-grid")]
    TfMultipleGrid {
        /// Feature map side of each layer, finest first (e.g. 19, 10, 5, 3, 2, 1 for 300x300).
        feature_maps: Vec<u32>,
        /// Scale of the finest layer (fraction of the input side).
        min_scale: f32,
        /// Scale of the coarsest layer.
        max_scale: f32,
        /// Aspect ratios (width / height) of every layer's anchors.
        aspect_ratios: Vec<f32>,
        /// Aspect ratio of the extra anchor at the scale between a layer's and the next's (0: none).
        #[serde(default)]
        interpolated_scale_aspect_ratio: f32,
        /// The finest layer has only three anchors: (0.1, 1:1), (min_scale, 2:1), (min_scale, 1:2).
        #[serde(default)]
        reduce_boxes_in_lowest_layer: bool,
    },
}

/// Most anchors a model may have over all its layers (BlazeFace has 896, its full-range variant
/// 2304): bounds what a card can make us allocate.
pub const MAX_ANCHORS: usize = 1 << 20;

/// Anchors of one layer, `cells * cells * per_cell`; `None` on overflow.
pub fn layer_anchors(cells: u32, per_cell: u32) -> Option<usize> {
    let cells = usize::try_from(cells).ok()?;
    cells
        .checked_mul(cells)?
        .checked_mul(usize::try_from(per_cell).ok()?)
}

/// Anchors over all layers; `None` on overflow or above [`MAX_ANCHORS`].
pub fn total_anchors(cells: &[u32], per_cell: &[u32]) -> Option<usize> {
    cells
        .iter()
        .zip(per_cell)
        .try_fold(0usize, |sum, (&n, &k)| {
            sum.checked_add(layer_anchors(n, k)?)
        })
        .filter(|&n| n <= MAX_ANCHORS)
}

/// An anchor in centre form: `[y_centre, x_centre, height, width]`, normalised to the input.
pub type Anchor = [f32; 4];

/// Generate the anchors a card describes, in the model's order (layer by layer, then row by row,
/// column by column, then the layer's box specs). A bad setting comes back as `(key, message)`.
///
/// `tf-multiple-grid` is `create_ssd_anchors` of the TF Object Detection API for a square input:
/// scales evenly spaced from `min_scale` to `max_scale` over the layers (and 1.0 after the last);
/// each layer has one box per aspect ratio at its scale, plus one of ratio
/// `interpolated_scale_aspect_ratio` at `sqrt(scale × next scale)`; with
/// `reduce_boxes_in_lowest_layer` the first layer has only (0.1, 1:1), (scale, 2:1), (scale, 1:2).
/// A box of scale `s` and ratio `r` is `s / sqrt(r)` high and `s × sqrt(r)` wide, centred on the
/// cell centres `(i + 0.5) / side`. The arithmetic is done in f32 in the API's order (corners first,
/// then back to centre form) so the anchors agree with the graph's to the last bits.
pub fn anchors(spec: &AnchorSpec) -> std::result::Result<Vec<Anchor>, (&'static str, String)> {
    let AnchorSpec::TfMultipleGrid {
        feature_maps,
        min_scale,
        max_scale,
        aspect_ratios,
        interpolated_scale_aspect_ratio,
        reduce_boxes_in_lowest_layer,
    } = spec;
    if feature_maps.is_empty() || feature_maps.iter().any(|&f| f == 0 || f > 1024) {
        return Err((
            "feature_maps",
            "must list each layer's feature map side, 1..=1024, finest first".into(),
        ));
    }
    let scale_ok = |v: f32| v.is_finite() && v > 0.0 && v <= 4.0;
    if !scale_ok(*min_scale) || !scale_ok(*max_scale) || min_scale > max_scale {
        return Err((
            "min_scale",
            format!(
                "min_scale {min_scale} and max_scale {max_scale} must be within 0 (exclusive)..=4, min_scale <= max_scale"
            ),
        ));
    }
    if aspect_ratios.is_empty() || aspect_ratios.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        return Err((
            "aspect_ratios",
            "must be a non-empty list of finite ratios > 0 (width / height)".into(),
        ));
    }
    let interp = *interpolated_scale_aspect_ratio;
    if !interp.is_finite() || interp < 0.0 {
        return Err((
            "interpolated_scale_aspect_ratio",
            "must be a finite ratio >= 0 (0: no interpolated box)".into(),
        ));
    }
    let layers = feature_maps.len();
    // The API computes the scales in Python floats (f64).
    let (lo, hi) = (f64::from(*min_scale), f64::from(*max_scale));
    let mut scales: Vec<f64> = (0..layers)
        .map(|i| {
            if layers > 1 {
                lo + (hi - lo) * i as f64 / (layers - 1) as f64
            } else {
                lo
            }
        })
        .collect();
    scales.push(1.0);
    let mut total = 0usize;
    let mut specs: Vec<Vec<(f32, f32)>> = Vec::with_capacity(layers);
    for (layer, pair) in scales.windows(2).enumerate() {
        let (scale, next) = (pair[0], pair[1]);
        let mut layer_specs = Vec::new();
        if layer == 0 && *reduce_boxes_in_lowest_layer {
            layer_specs.extend([(0.1, 1.0), (scale as f32, 2.0), (scale as f32, 0.5)]);
        } else {
            layer_specs.extend(aspect_ratios.iter().map(|&r| (scale as f32, r)));
            if interp > 0.0 {
                layer_specs.push(((scale * next).sqrt() as f32, interp));
            }
        }
        let side = feature_maps[layer] as usize;
        total = total.saturating_add(side * side * layer_specs.len());
        specs.push(layer_specs);
    }
    if total > MAX_ANCHORS {
        return Err((
            "feature_maps",
            format!("the layers make {total} anchors; at most {MAX_ANCHORS}"),
        ));
    }
    let mut out = Vec::with_capacity(total);
    for (&side, layer_specs) in feature_maps.iter().zip(&specs) {
        let stride = 1.0 / side as f32;
        let offset = 0.5 * stride;
        for row in 0..side {
            let yc = row as f32 * stride + offset;
            for col in 0..side {
                let xc = col as f32 * stride + offset;
                for &(scale, ratio) in layer_specs {
                    let sqrt_ratio = ratio.sqrt();
                    let (h, w) = (scale / sqrt_ratio, scale * sqrt_ratio);
                    let (ymin, xmin) = (yc - 0.5 * h, xc - 0.5 * w);
                    let (ymax, xmax) = (yc + 0.5 * h, xc + 0.5 * w);
                    out.push([
                        (ymin + ymax) / 2.0,
                        (xmin + xmax) / 2.0,
                        ymax - ymin,
                        xmax - xmin,
                    ]);
                }
            }
        }
    }
    Ok(out)
}
