//! Pretrained run folders shipped with the app: `assets/pretrained/STEM/` holds the run of the
//! scene `scenes/STEM.ron` trained long on a 2-core machine (the files `train` writes), and
//! `quality.ron`, the sample quality it reaches (measured with `sample` + `eval`, which the tests
//! repeat). The scene picker's "⏭ trained" loads one: a class sees a converged sampler at once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a pretrained run reaches, measured on `samples` samples drawn with `seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// 0 for MCMC, whose runs are its chains.
    pub gradient_steps: u64,
    pub energy_evals: u64,
    pub train_minutes: f64,
    pub samples: usize,
    pub seed: u64,
    pub energy_w2: f64,
    pub eq_w2: Option<f64>,
}

/// The pretrained folder of a scene file (`scenes/x.ron` → `assets/pretrained/x/`), if one ships.
pub fn dir_for(scene_path: &Path) -> Option<PathBuf> {
    let stem = scene_path.file_stem()?;
    let dir = scene_path
        .parent()?
        .parent()
        .unwrap_or(Path::new("."))
        .join("assets/pretrained")
        .join(stem);
    dir.join("scene.ron").is_file().then_some(dir)
}

/// Every pretrained folder under `root` (`assets/pretrained`), sorted.
pub fn list(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scene.ron").is_file())
        .collect();
    out.sort();
    out
}

pub fn quality(dir: &Path) -> Result<Quality> {
    let path = dir.join("quality.ron");
    let text = crate::limits::read_text(&path, crate::limits::TEXT_FILE_BYTES)?;
    ron::Options::default()
        .from_str(&text)
        .map_err(|e| Error::Scene {
            path: path.clone(),
            line: e.position.line,
            col: e.position.col,
            message: e.code.to_string(),
        })
}
