//! What the simulated sensor looks at: the pluggable [`Scene`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::scene_reflectance;

/// What the sensor looks at: reflectance per channel (`[r, g, b]`, nominally
/// in `0.0..=1.0`) at a point of the pixel array.
///
/// Install one with [`crate::SimHandle::set_scene`]; [`crate::SimHandle::capture`]
/// then renders it when `TEST_PATTERN` = 0, through the same brightness
/// model as the built-in scene: an 8-bit output value is
/// `min(255, round(reflectance · exposure_lines · analogue_gain ·
/// digital_gain · SCENE_COUNTS_PER_LINE))` (see
/// [`crate::SCENE_COUNTS_PER_LINE`]); negative and NaN results give 0.
/// Reflectances are not clipped to `0.0..=1.0` before the gains.
///
/// Closures `Fn(f32, f32, Duration) -> [f32; 3] + Send + Sync` are scenes:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ocellus_imx219_sim::SimImx219;
///
/// let sim = SimImx219::new();
/// // A bright 200-column band walking right at 1000 columns per second.
/// sim.set_scene(Arc::new(|ax: f32, _ay: f32, t: Duration| {
///     let left = 1000.0 * t.as_secs_f32();
///     if (left..left + 200.0).contains(&ax) { [1.0; 3] } else { [0.0; 3] }
/// }));
/// ```
pub trait Scene: Send + Sync {
    /// Reflectance at one point.
    ///
    /// `ax`, `ay`: position on the full pixel array **in pixel units**, as
    /// the built-in [`scene_reflectance`] takes it: `ax` in `0.0..3280.0`,
    /// `ay` in `0.0..2464.0`, `(0, 0)` = top-left corner of the array,
    /// *before* any mirroring or flipping (a flip changes which output pixel
    /// shows a point, not where the point is). The simulator samples once
    /// per output pixel, at the centre of the block of array pixels that
    /// output pixel covers (binned and/or sub-sampled), so e.g. `ax` =
    /// `X_ADDR_START + (column + 0.5) · step`.
    ///
    /// `t`: simulated time ([`crate::SimHandle::now`]) at the start of the
    /// frame being rendered; the same for every pixel of a frame.
    fn reflectance(&self, ax: f32, ay: f32, t: Duration) -> [f32; 3];
}

impl<F> Scene for F
where
    F: Fn(f32, f32, Duration) -> [f32; 3] + Send + Sync,
{
    fn reflectance(&self, ax: f32, ay: f32, t: Duration) -> [f32; 3] {
        self(ax, ay, t)
    }
}

/// The built-in, time-independent scene: [`scene_reflectance`]. It is what
/// a new simulator looks at, and what [`crate::SimHandle::reset_scene`]
/// restores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DefaultScene;

impl Scene for DefaultScene {
    fn reflectance(&self, ax: f32, ay: f32, _t: Duration) -> [f32; 3] {
        scene_reflectance(ax, ay)
    }
}

/// The scene slot of the simulator state (`dyn Scene` is not `Debug`).
#[derive(Clone)]
pub(crate) struct SceneSlot(pub(crate) Arc<dyn Scene>);

impl SceneSlot {
    /// The built-in scene.
    pub(crate) fn default_scene() -> Self {
        Self(Arc::new(DefaultScene))
    }
}

impl fmt::Debug for SceneSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scene")
    }
}
