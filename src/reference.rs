//! Reference samples on demand, for a scene that names no reference file: exact draws where the
//! system allows (grid quadrature for plane systems, formulas of one or two variables and
//! molecules of one or two torsions; GMM-40's mixture), parallel tempering otherwise. The result
//! is cached beside the scene file as `STEM.reference-HASH.npy` (a run folder's:
//! `scene.reference-HASH.npy`), where [`crate::scene::Scene::reference_path`] finds it next time.
//! This module knows energies, not scenes: the scene hands it the system's text and its settings.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::energy::Energy;
use crate::error::Result;
use crate::io::Matrix;
use crate::sampler::mcmc::{McmcConfig, McmcProgress, sample_reference};

/// Reference rows computed on demand (as many as the app and `train` judge against).
pub const ON_DEMAND_ROWS: usize = 10_000;

/// Where the computed reference of a system, in the scene at `scene_path`, is cached: the file
/// name carries a hash of `system_key` (the system as text), so that an edited formula or
/// molecule never meets the reference of the one before. [`crate::scene::Scene::reference_cache`]
/// is the way in.
pub fn cached_path(system_key: &str, scene_path: &Path) -> PathBuf {
    let stem = scene_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scene");
    scene_path.with_file_name(format!(
        "{stem}.reference-{:016x}.npy",
        fnv1a(system_key.as_bytes())
    ))
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases (std's does not promise to),
/// for file names only.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The exact reference of a system that has closed-form or plane-grid draws (not torsion grids,
/// which cost a molecule's energy per cell and are offered with a progress bar instead), drawn in
/// memory with seed 0; `None` for the others.
pub fn exact_in_memory(energy: &dyn Energy) -> Option<Matrix> {
    if energy.torus() {
        return None;
    }
    crate::energy::exact_draws(energy, ON_DEMAND_ROWS, 0)
}

/// `n` exact draws of a molecule of one or two torsions by grid quadrature with 1° cells, with the
/// grid (for its probabilities and mean energy).
pub fn torsion_grid_draws(
    energy: &dyn Energy,
    n: usize,
    seed: u64,
) -> Result<(crate::molecule::grid::TorsionGrid, Matrix)> {
    let grid = crate::molecule::grid::TorsionGrid::compute(energy, 360)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = grid.sample(n, &mut rng).iter().map(|&v| v as f32).collect();
    Ok((grid, Matrix::new(n, energy.dim(), x)))
}

/// Whether the exact reference is cheap: a grid or closed-form draws, no Markov chain.
pub fn is_exact(energy: &dyn Energy) -> bool {
    (energy.torus() && energy.dim() <= 2)
        || energy
            .exact_sample(1, &mut ChaCha8Rng::seed_from_u64(0))
            .is_some()
}

/// `n` reference samples of `energy` (rows × dim, f32 as reference files hold them): exact where
/// [`is_exact`], else parallel tempering with `mcmc`. `progress` receives the fraction done,
/// 0 to 1, and may be called from this thread only.
pub fn compute(
    energy: &dyn Energy,
    mcmc: &McmcConfig,
    n: usize,
    seed: u64,
    progress: &mut dyn FnMut(f64),
) -> Result<Matrix> {
    if energy.torus() && energy.dim() <= 2 {
        let (_, m) = torsion_grid_draws(energy, n, seed)?;
        progress(1.0);
        return Ok(m);
    }
    let out = sample_reference(energy, mcmc, n, seed, &mut |p: McmcProgress| {
        progress(p.sweeps_done as f64 / p.sweeps_total.max(1) as f64)
    })?;
    Ok(out.samples)
}

/// Computes the reference of `energy` (see [`compute`]) and writes it to `path` whole (a reader
/// never sees half a file); returns `path`.
pub fn compute_and_cache(
    energy: &dyn Energy,
    mcmc: &McmcConfig,
    path: &Path,
    progress: &mut dyn FnMut(f64),
) -> Result<PathBuf> {
    let m = compute(energy, mcmc, ON_DEMAND_ROWS, 0, progress)?;
    let tmp = path.with_extension("npy.partial");
    crate::io::write_npy(&tmp, &m)?;
    std::fs::rename(&tmp, path).map_err(|e| crate::Error::io(path, e))?;
    Ok(path.to_path_buf())
}
