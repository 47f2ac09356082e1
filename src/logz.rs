//! log Z estimates of the kinds that have a path measure (samplers-next.md §1): from n fresh
//! paths with exact log-weights ℓ (E[exp ℓ] = Z), the ELBO mean ℓ ≤ log Z and the
//! importance-weighted logmeanexp ℓ with its standard error; beside them the exact value where
//! the system has an exact grid. Z = ∫ exp(−E/kT) over the sampler's own coordinates: dx dy in
//! the plane, dφ in radians on the torus, the CoM-free subspace for particles.

use serde::Serialize;

use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::sampler::{SampleOptions, Sampler};

/// One log Z estimate (the JSON of `logz --json`).
#[derive(Debug, Clone, Serialize)]
pub struct LogZ {
    /// mean ℓ: a lower bound on log Z in expectation.
    pub log_z_elbo: f64,
    /// log mean exp ℓ: consistent, biased low for few samples.
    pub log_z_rw: f64,
    /// Standard error of `log_z_rw` (delta method).
    pub stderr: f64,
    pub n: usize,
    /// Energy evaluations the estimate spent (end points, and forces of a Langevin drift).
    pub energy_evals: u64,
    /// Exact log Z by quadrature where the system has an exact grid; `None` elsewhere.
    pub log_z_exact: Option<f64>,
    /// A log Z the sampler learned as a parameter (trajectory balance), where it has one.
    pub log_z_learned: Option<f64>,
    /// Normalised effective sample size of the weights.
    pub ess: f64,
}

/// Whether `sampler` can estimate log Z (its weights are exact, not up to a constant).
pub fn supported(sampler: &dyn Sampler) -> bool {
    sampler.log_weight_offset().is_some()
}

/// Estimates log Z from `n` paths drawn with `seed` (the sampler's streams are untouched);
/// `exact` is the value to report beside it (see [`exact`]).
pub fn estimate(sampler: &mut dyn Sampler, n: usize, seed: u64, exact: Option<f64>) -> Result<LogZ> {
    let offset = sampler.log_weight_offset().ok_or_else(|| {
        let kinds: Vec<&str> = crate::sampler::SamplerKind::all()
            .filter(|k| k.info().weights && k.learns())
            .map(|k| k.name())
            .collect();
        Error::Invalid(format!(
            "{} has no path measure with exact weights, so no log Z estimate (kinds with one: {})",
            sampler.kind().label(),
            kinds.join(", ")
        ))
    })?;
    let before = sampler.counters().eval_energy_evals;
    let s = sampler.sample(
        n,
        SampleOptions {
            weights: true,
            fill: true,
            seed: Some(seed),
            ..SampleOptions::default()
        },
    )?;
    let energy_evals = sampler.counters().eval_energy_evals - before;
    let lw = s
        .log_weights
        .ok_or_else(|| Error::Invalid("the sampler returned no weights".into()))?;
    let l: Vec<f64> = lw.iter().map(|v| v + offset).collect();
    let finite: Vec<f64> = l.iter().copied().filter(|v| v.is_finite()).collect();
    let elbo = if finite.len() == l.len() {
        finite.iter().sum::<f64>() / l.len() as f64
    } else {
        // A path whose end has no finite energy has weight 0: ℓ = −∞ pulls the mean with it.
        f64::NEG_INFINITY
    };
    let (rw, stderr) = crate::metrics::log_mean_exp(&l);
    Ok(LogZ {
        log_z_elbo: elbo,
        log_z_rw: rw,
        stderr,
        n,
        energy_evals,
        log_z_exact: exact,
        log_z_learned: sampler.log_z_learned(),
        ess: crate::metrics::ess(&l),
    })
}

/// The exact log Z of systems with an exact grid: plane landscapes (by quadrature over their
/// box) and molecules with one or two free torsions (360 cells per torsion); `None` elsewhere.
pub fn exact(energy: &dyn Energy) -> Option<f64> {
    if energy.torus() && energy.dim() <= 2 {
        return crate::molecule::grid::TorsionGrid::compute(energy, 360)
            .ok()
            .map(|g| g.log_z());
    }
    let (bx, by) = energy.plane_box()?;
    let grid = crate::energy::QuadratureGrid::new(&[bx, by], &|p: &[f64]| energy.energy(p));
    Some(grid.log_z())
}

/// [`exact`] for the system `key` names (its RON), computed once per process: the app asks on
/// every reset, and a two-torsion grid is 130 000 molecule energies.
pub fn exact_cached(key: &str, energy: &dyn Energy) -> Option<f64> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Option<f64>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().expect("log Z cache").get(key) {
        return *v;
    }
    let v = exact(energy);
    cache.lock().expect("log Z cache").insert(key.to_string(), v);
    v
}
