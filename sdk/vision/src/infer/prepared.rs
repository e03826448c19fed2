//! A model optimised for this machine once and loaded as is afterwards.
//!
//! ONNX Runtime's full optimisation (`ORT_ENABLE_ALL`) rewrites the graph for this CPU: on x86 it
//! moves convolutions to the blocked NCHWc layout and reorders their weights, which makes the SSD
//! a third faster than the lower levels. Done at every start it costs time and, above all, memory:
//! the file, the parsed weights and the reordered copies are all alive at once, about 3.5 times
//! the model's size at the peak.
//!
//! So the first start saves the optimised graph, with its weights in a separate file, under
//! `<cache>/prepared/<card>-<sha>-<machine>/`, and records the sha256 of both files and of the
//! model they came from in `manifest.json`. Later starts load that graph with optimisation off:
//! ONNX Runtime maps the weights file instead of copying it, the session is ready in tens of
//! milliseconds, and the weights are resident once. `<machine>` covers the ONNX Runtime build and
//! the CPU (model name and feature flags), because the rewrite is specific to both: another
//! machine or library gets its own copy. A copy whose files do not match the manifest is removed
//! and rebuilt from the verified model.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::card::{ModelCard, sha256_file};
use crate::error::{Error, Result};

/// The manifest's schema.
const SCHEMA: &str = "ocellus.prepared-model/1";
/// The optimised graph.
pub const MODEL: &str = "model.onnx";
/// Its weights (ONNX external data, mapped by ONNX Runtime).
pub const WEIGHTS: &str = "weights.bin";
const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Manifest {
    schema: String,
    /// sha256 of the model file the copy was made from (the card's, or its manifest's).
    source_sha256: String,
    /// What the rewrite depends on: the ONNX Runtime build and the CPU.
    machine: String,
    model_sha256: String,
    weights_sha256: String,
}

/// A prepared copy found in the cache, not yet verified.
#[derive(Debug, Clone)]
pub struct Prepared {
    dir: PathBuf,
    manifest: Manifest,
}

impl Prepared {
    /// The optimised graph to load.
    pub fn model(&self) -> PathBuf {
        self.dir.join(MODEL)
    }

    /// The directory holding the copy.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Check both files against the manifest.
    pub fn verify(&self) -> Result<()> {
        for (file, want) in [
            (MODEL, &self.manifest.model_sha256),
            (WEIGHTS, &self.manifest.weights_sha256),
        ] {
            let path = self.dir.join(file);
            let got = sha256_file(&path)?;
            if &got != want {
                return Err(Error::Prepared {
                    path,
                    message: format!("sha256 {got}, but its manifest records {want}"),
                });
            }
        }
        Ok(())
    }

    /// Remove a copy that failed its check or would not load (the next start rebuilds it).
    pub fn discard(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// What the optimised graph depends on besides the model: the ONNX Runtime build and the CPU.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "{} | {} | {} | {}",
        ort::info(),
        std::env::consts::ARCH,
        field("model name"),
        field("flags")
    )
}

fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where copies are kept by default: `<cache>/prepared`.
pub fn default_root() -> PathBuf {
    crate::paths::cache_dir().join("prepared")
}

/// Where the copy of a card's model (whose file has sha256 `model_sha`) for this machine lives
/// under `root`.
pub fn dir_for(root: &Path, card: &ModelCard, model_sha: &str, machine: &str) -> PathBuf {
    let name: String = card
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    root.join(format!(
        "{name}-{}-{}",
        model_sha.get(..16).unwrap_or(model_sha),
        short_hash(machine)
    ))
}

/// The card's copy for this machine, if one was made (its files are checked by
/// [`Prepared::verify`]). A manifest for another model or machine, or one that cannot be read,
/// counts as none.
pub fn find(root: &Path, card: &ModelCard, model_sha: &str, machine: &str) -> Option<Prepared> {
    let dir = dir_for(root, card, model_sha, machine);
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    (manifest.schema == SCHEMA
        && manifest.source_sha256 == model_sha
        && manifest.machine == machine)
        .then_some(Prepared { dir, manifest })
}

/// A directory for ONNX Runtime to write a new copy into; [`commit`] it once the session is built.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    root: PathBuf,
}

impl Staging {
    /// Where ONNX Runtime saves the optimised graph (its weights go next to it, as [`WEIGHTS`]).
    pub fn model(&self) -> PathBuf {
        self.dir.join(MODEL)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // committed: renamed away; otherwise an abandoned attempt
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Make a staging directory next to where the card's copy goes; `None` (with a warning) when the
/// cache is not writable: the model then runs without a saved copy.
pub fn stage(root: &Path, card: &ModelCard, model_sha: &str, machine: &str) -> Option<Staging> {
    let target = dir_for(root, card, model_sha, machine);
    let parent = root.to_path_buf();
    // unique per process and per call: two detectors of one process may build at once
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent.join(format!(".staging-{}-{n}", std::process::id()));
    remove_abandoned(&parent);
    match std::fs::create_dir_all(&dir) {
        Ok(()) => Some(Staging {
            dir,
            target,
            root: parent,
        }),
        Err(e) => {
            tracing::warn!(
                "cannot keep an optimised copy of {} in {}: {e}; the model is optimised at every start",
                card.name,
                parent.display()
            );
            None
        }
    }
}

/// Staging directories of processes killed while optimising (an hour is far longer than any
/// optimisation takes) would otherwise keep a model's worth of disk each.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let hour = std::time::Duration::from_secs(3600);
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > hour);
        if old && e.file_name().to_string_lossy().starts_with(".staging-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Record the hashes of what ONNX Runtime wrote and move the copy into place. Another process
/// that got there first wins; its copy is as good.
pub fn commit(
    staging: Staging,
    card: &ModelCard,
    model_sha: &str,
    machine: &str,
) -> Result<PathBuf> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let manifest = Manifest {
        schema: SCHEMA.into(),
        source_sha256: model_sha.to_owned(),
        machine: machine.to_owned(),
        model_sha256: sha256_file(&staging.dir.join(MODEL))?,
        weights_sha256: sha256_file(&staging.dir.join(WEIGHTS))?,
    };
    let path = staging.dir.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Prepared {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&path).map_err(io(&path))?;
    f.write_all(&text).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    if staging.target.exists() {
        // a damaged or stale copy was found before we started, or another process just made one
        if find(&staging.root, card, model_sha, machine).is_some() {
            return Ok(staging.target.clone());
        }
        std::fs::remove_dir_all(&staging.target).map_err(io(&staging.target))?;
    }
    match std::fs::rename(&staging.dir, &staging.target) {
        Ok(()) => Ok(staging.target.clone()),
        Err(_) if find(&staging.root, card, model_sha, machine).is_some() => {
            Ok(staging.target.clone())
        }
        Err(e) => Err(Error::Io {
            path: staging.target.clone(),
            source: e,
        }),
    }
}
