//! Hardware-in-the-loop support for `tests/hil.rs`: a person sprite for the simulated IMX219's
//! scene, cut out of real footage, and the devices of a real board.
//!
//! The tests themselves are in `tests/hil.rs`; `hil-tests/README.md` says how to run them on a
//! board.

use std::path::{Path, PathBuf};

use ocellus::infer::{Detector, DetectorOptions};

/// Cut the most confident person out of `photo` with the real detector and save it as a PNG in
/// `dir`: the sprite a `[source.sprite]` walks through the simulated scene.
///
/// # Errors
/// The runtime, the model or the photo is missing (run `models/provision.sh`), or there is no person.
pub fn person_sprite(photo: &Path, dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let image = ocellus::load_rgb(photo)?;
    let runtime = ocellus::runtime::Runtime::init(&ocellus::runtime::Locator::from_env(None))?;
    let card = ocellus::card::ModelCard::builtin_ssd()?;
    let person = Detector::new(runtime, &card, &DetectorOptions::default())?
        .detect(&image.as_view())?
        .into_iter()
        .filter(|d| &*d.label == "person")
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .ok_or_else(|| format!("no person in {}", photo.display()))?;
    let crop = image.crop(person.bbox)?;
    let out = dir.join("person.png");
    image::save_buffer(
        &out,
        crop.data(),
        crop.width(),
        crop.height(),
        image::ColorType::Rgb8,
    )?;
    Ok(out)
}

/// The devices of a real board, from `OCELLUS_HIL_I2C` and `OCELLUS_HIL_VIDEO`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hardware {
    /// The sensor's I²C adapter (`/dev/i2c-10` on a Raspberry Pi 4 camera connector).
    pub i2c: Option<PathBuf>,
    /// The V4L2 node that delivers the sensor's pixels as YUYV/NV12/RGB/MJPEG.
    pub video: Option<PathBuf>,
}

impl Hardware {
    /// Read the environment; empty values count as unset.
    pub fn from_env() -> Hardware {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Hardware {
            i2c: var("OCELLUS_HIL_I2C"),
            video: var("OCELLUS_HIL_VIDEO"),
        }
    }
}
