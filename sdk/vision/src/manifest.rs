//! Manifests: what pins a converted model on the machine that accepted it.
//!
//! A model converted on this machine (tf2onnx, a quantiser) cannot be pinned by a sha256 in its
//! card: the converter folds constants with the CPU's own floating-point kernels, so its bytes
//! differ from one CPU to the next. Its card carries `[conformance]` references instead
//! ([`crate::card::Conformance`]); provisioning runs the converted file on them
//! ([`crate::conformance`]) and, when every case matches, writes a manifest beside it:
//! `<model file>.manifest.json`, with the card and source it was made for, the converter, the
//! results, and the file's own sha256. At load the file is checked against that sha256, so a
//! flipped byte is still refused; a converted model without a manifest is refused with a message
//! that says to run provisioning.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::card::{ModelCard, sha256_file};
use crate::error::{Error, Result};

/// The manifest's schema.
pub const SCHEMA: &str = "ocellus.model-manifest/1";
/// Largest manifest read (a few kilobytes in practice).
const MAX_BYTES: u64 = 1 << 20;

/// The manifest of an accepted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA`].
    pub schema: String,
    /// The card's name.
    pub card: String,
    /// The model file's name.
    pub file: String,
    /// sha256 of the model file as accepted.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// sha256 of the card file the model was accepted under (`None` for a built-in card):
    /// provisioning accepts the model again when the card file changes.
    #[serde(default)]
    pub card_sha256: Option<String>,
    /// sha256 of the source it was converted from (the card's `source.sha256`).
    pub source_sha256: Option<String>,
    /// [`crate::card::Conformance::digest`] of the references it was checked against.
    pub conformance_sha256: String,
    /// The converter and its environment, as provisioning reported them.
    pub converter: String,
    /// The ONNX Runtime build that ran the references.
    pub onnxruntime: String,
    /// When it was accepted (RFC 3339, UTC).
    pub accepted: String,
    /// How close each case came to its references.
    pub results: Vec<CaseResult>,
}

/// How one reference case went at acceptance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The reference input.
    pub input: String,
    /// Reference detections, all matched.
    pub detections: usize,
    /// Largest score difference of a matched detection.
    pub max_score_diff: f32,
    /// Largest box-coordinate difference of a matched detection.
    pub max_box_diff: f32,
    /// Largest tensor-statistic difference, as a fraction of its tolerance (1.0 = at the limit).
    pub max_tensor_ratio: f64,
}

/// Where the manifest of `model` lives: beside it, `<file>.manifest.json`.
pub fn path_for(model: &Path) -> PathBuf {
    let mut name = model
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".manifest.json");
    model.with_file_name(name)
}

impl Manifest {
    /// Read the manifest beside `model` and check that it was written for `card`: the same card
    /// name, source and conformance references. Missing: [`Error::ModelUnaccepted`]; anything
    /// else wrong: [`Error::ModelManifest`].
    pub fn for_model(card: &ModelCard, model: &Path) -> Result<Manifest> {
        let path = path_for(model);
        let bad = |message: String| Error::ModelManifest {
            manifest: path.clone(),
            message,
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ModelUnaccepted {
                    card: card.path.clone(),
                    model: model.to_path_buf(),
                    manifest: path,
                });
            }
            Err(source) => return Err(Error::Io { path, source }),
        };
        let mut text = String::new();
        file.take(MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| bad(format!("cannot be read: {e}")))?;
        if text.len() as u64 > MAX_BYTES {
            return Err(bad(format!("is larger than {MAX_BYTES} bytes")));
        }
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "is not a model manifest ({e}); delete it and run `{}`",
                crate::paths::PROVISION_COMMAND
            ))
        })?;
        let again = crate::paths::PROVISION_COMMAND;
        if m.schema != SCHEMA {
            return Err(bad(format!(
                "has schema \"{}\"; this build reads \"{SCHEMA}\". Run `{again}` to accept the model again",
                m.schema
            )));
        }
        if m.card != card.name {
            return Err(bad(format!(
                "was written for card `{}`, not `{}` ({}): the file is another card's model. Point the card at its own file, or run `{again}`",
                m.card,
                card.name,
                card.path.display()
            )));
        }
        if m.source_sha256 != card.source.sha256 {
            return Err(bad(format!(
                "was converted from a source with sha256 {}, but card {} names {}: run `{again}` to convert the card's source",
                m.source_sha256.as_deref().unwrap_or("(none)"),
                card.path.display(),
                card.source.sha256.as_deref().unwrap_or("(none)")
            )));
        }
        let digest = card
            .conformance
            .as_ref()
            .map(|c| c.digest())
            .unwrap_or_default();
        if m.conformance_sha256 != digest {
            return Err(bad(format!(
                "accepted the model against other conformance references than card {} now holds: run `{again}` to check it against the card's",
                card.path.display()
            )));
        }
        if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("has no valid `sha256`".into()));
        }
        Ok(m)
    }

    /// Write the manifest beside `model`, atomically (a temporary file, fsync, rename).
    pub fn write(&self, model: &Path) -> Result<PathBuf> {
        let path = path_for(model);
        let tmp = {
            let mut name = path
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            name.push(format!(".tmp-{}", std::process::id()));
            path.with_file_name(name)
        };
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Io { path: p, source }
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::ModelManifest {
            manifest: path.clone(),
            message: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&text)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(path)
    }
}

/// A card's pin on its model file: the card's own sha256, or the manifest that accepted the file.
/// (Here rather than in `card`, which knows nothing of manifests.)
impl ModelCard {
    /// The sha256 the model file must have: the card's own for a model used as fetched; for a
    /// converted model, the one its manifest recorded when provisioning accepted it (the manifest
    /// must be for this card, this source and these conformance references).
    pub fn expected_sha256(&self, model: &Path) -> Result<String> {
        match (&self.sha256, &self.conformance) {
            (Some(sha), _) => Ok(sha.clone()),
            (None, _) => Ok(Manifest::for_model(self, model)?.sha256),
        }
    }

    /// Check a model file against the card's sha256, or against the manifest that accepted it.
    pub fn verify(&self, model: &Path) -> Result<()> {
        let expected = self.expected_sha256(model)?;
        let actual = sha256_file(model)?;
        if actual == expected {
            return Ok(());
        }
        match &self.sha256 {
            Some(_) => Err(Error::ModelChecksum {
                card: self.path.clone(),
                path: model.to_path_buf(),
                expected,
                actual,
            }),
            None => Err(Error::ModelManifest {
                manifest: path_for(model),
                message: format!(
                    "records sha256 {expected} for {}, but the file now has {actual}: it changed after it was accepted. Delete both and run `{}`",
                    model.display(),
                    crate::paths::PROVISION_COMMAND
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_sits_beside_the_model() {
        assert_eq!(
            path_for(Path::new("/c/models/m.onnx")),
            PathBuf::from("/c/models/m.onnx.manifest.json")
        );
    }
}
