//! Reference samples by Hamiltonian Monte Carlo with parallel tempering.
//!
//! Each independent *group* holds one replica per temperature of a geometric ladder
//! 1 = T₀ < … < T_max. Every sweep, each replica takes one HMC move at its temperature; then
//! neighbouring replicas try to swap configurations (even pairs on even sweeps, odd on odd).
//! Hot replicas cross barriers and hand their states down, so the T = 1 chain mixes between
//! basins that plain HMC would leave only rarely. Step sizes adapt toward a target acceptance
//! during burn-in and are frozen afterwards, so the sampling phase is exact HMC.
//!
//! Groups run in parallel on rayon's pool, each with its own ChaCha stream, so the output
//! depends only on the seed, never on the thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::energy::{Energy, remove_com};
use crate::error::{Error, Result};
use crate::io::Matrix;

/// Settings of the reference sampler; every field has a default that suits LJ-13.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McmcConfig {
    /// Independent parallel-tempering groups (each yields one T = 1 chain).
    pub chains: usize,
    /// Temperatures per group, geometric from 1 to `t_max` (1 = plain HMC).
    pub replicas: usize,
    /// Hottest temperature of the ladder.
    pub t_max: f64,
    /// Sweeps discarded before recording (step sizes adapt during these).
    pub burn_in: usize,
    /// Sweeps between recorded samples of a chain.
    pub thin: usize,
    /// Mean number of leapfrog steps per HMC move (drawn uniformly in [L/2, 3L/2]).
    pub leapfrog_steps: usize,
    /// Initial leapfrog step size, before adaptation.
    pub step_size: f64,
    /// Acceptance rate that the burn-in adaptation aims for.
    pub target_accept: f64,
}

impl Default for McmcConfig {
    fn default() -> Self {
        Self {
            chains: 64,
            replicas: 4,
            t_max: 2.0,
            burn_in: 2000,
            thin: 20,
            leapfrog_steps: 10,
            step_size: 0.01,
            target_accept: 0.75,
        }
    }
}

impl McmcConfig {
    /// Checks ranges, naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, why: &str| Err(Error::Invalid(format!("reference.mcmc.{f} {why}")));
        if self.chains == 0 {
            return bad("chains", "must be at least 1");
        }
        if self.replicas == 0 {
            return bad("replicas", "must be at least 1");
        }
        if !(self.t_max >= 1.0 && self.t_max.is_finite()) {
            return bad("t_max", &format!("must be a finite number ≥ 1 (got {})", self.t_max));
        }
        if self.thin == 0 {
            return bad("thin", "must be at least 1");
        }
        if self.leapfrog_steps == 0 {
            return bad("leapfrog_steps", "must be at least 1");
        }
        if !(self.step_size > 0.0 && self.step_size.is_finite()) {
            return bad("step_size", &format!("must be positive (got {})", self.step_size));
        }
        if !(self.target_accept > 0.0 && self.target_accept < 1.0) {
            return bad("target_accept", &format!("must be in (0, 1) (got {})", self.target_accept));
        }
        Ok(())
    }

    /// The temperature ladder.
    pub fn temperatures(&self) -> Vec<f64> {
        if self.replicas == 1 {
            return vec![1.0];
        }
        (0..self.replicas).map(|k| self.t_max.powf(k as f64 / (self.replicas - 1) as f64)).collect()
    }

    /// Sweeps needed for `n` samples.
    pub fn total_sweeps(&self, n: usize) -> usize {
        self.burn_in + n.div_ceil(self.chains) * self.thin
    }
}

/// Progress of a run, reported between blocks of sweeps.
#[derive(Debug, Clone, Copy)]
pub struct McmcProgress {
    pub sweeps_done: usize,
    pub sweeps_total: usize,
    /// Mean HMC acceptance of the T = 1 replicas over the last block.
    pub accept_t1: f64,
}

/// What a run produced, with diagnostics for the user.
#[derive(Debug, Clone)]
pub struct McmcOutput {
    /// `n × dim` samples at T = 1, centre of mass removed for particle systems.
    pub samples: Matrix,
    /// HMC acceptance rate per temperature during sampling.
    pub accept: Vec<f64>,
    /// Swap acceptance rate per neighbouring pair of temperatures during sampling.
    pub swap_accept: Vec<f64>,
    /// Adapted step size per temperature (mean over groups).
    pub step_sizes: Vec<f64>,
    /// Energy gradient evaluations spent.
    pub gradient_evals: u64,
}

/// One replica: a configuration at a temperature, with its own adapted step size.
#[derive(Clone)]
struct Replica {
    x: Vec<f64>,
    grad: Vec<f64>,
    energy: f64,
    step: f64,
    accepted: u64,
    tried: u64,
}

struct Group {
    replicas: Vec<Replica>,
    rng: ChaCha8Rng,
    swaps_accepted: Vec<u64>,
    swaps_tried: Vec<u64>,
    gradient_evals: u64,
    recorded: Vec<Vec<f64>>,
}

/// Draws `n` reference samples of `energy` at T = 1: exact i.i.d. draws where the system
/// allows (GMM-40), otherwise HMC with parallel tempering. `progress` is called between
/// blocks of sweeps.
pub fn sample_reference(
    energy: &dyn Energy,
    cfg: &McmcConfig,
    n: usize,
    seed: u64,
    progress: &mut dyn FnMut(McmcProgress),
) -> Result<McmcOutput> {
    cfg.validate()?;
    if n == 0 {
        return Err(Error::Invalid("the number of samples must be at least 1".into()));
    }
    let dim = energy.dim();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if let Some(x) = energy.exact_sample(n, &mut rng) {
        progress(McmcProgress { sweeps_done: 1, sweeps_total: 1, accept_t1: 1.0 });
        return Ok(McmcOutput {
            samples: Matrix::new(n, dim, x.into_iter().map(|v| v as f32).collect()),
            accept: vec![1.0],
            swap_accept: vec![],
            step_sizes: vec![],
            gradient_evals: 0,
        });
    }

    let temps = cfg.temperatures();
    let mut groups: Vec<Group> = (0..cfg.chains)
        .map(|g| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(g as u64 + 1);
            let replicas = temps
                .iter()
                .map(|_| {
                    let x = initial_configuration(energy, &mut rng);
                    let mut grad = vec![0.0; dim];
                    let e = energy.energy_grad(&x, &mut grad);
                    Replica { x, grad, energy: e, step: cfg.step_size, accepted: 0, tried: 0 }
                })
                .collect();
            Group {
                replicas,
                rng,
                swaps_accepted: vec![0; temps.len().saturating_sub(1)],
                swaps_tried: vec![0; temps.len().saturating_sub(1)],
                gradient_evals: temps.len() as u64,
                recorded: Vec::new(),
            }
        })
        .collect();

    let total = cfg.total_sweeps(n);
    let block = 25usize;
    let mut done = 0;
    while done < total {
        let this_block = block.min(total - done);
        let start = done;
        let before: u64 = groups.iter().map(|g| g.replicas[0].accepted).sum();
        let tried_before: u64 = groups.iter().map(|g| g.replicas[0].tried).sum();
        groups.par_iter_mut().for_each(|g| {
            for s in start..start + this_block {
                let adapting = s < cfg.burn_in;
                if s == cfg.burn_in {
                    g.reset_counters();
                }
                g.sweep(energy, cfg, &temps, s, adapting);
                if !adapting && (s + 1 - cfg.burn_in) % cfg.thin == 0 {
                    let mut x = g.replicas[0].x.clone();
                    remove_com(&mut x, energy.layout());
                    g.recorded.push(x);
                }
            }
        });
        done += this_block;
        let acc: u64 = groups.iter().map(|g| g.replicas[0].accepted).sum::<u64>().saturating_sub(before);
        let tried: u64 = groups.iter().map(|g| g.replicas[0].tried).sum::<u64>().saturating_sub(tried_before);
        progress(McmcProgress {
            sweeps_done: done,
            sweeps_total: total,
            accept_t1: if tried > 0 { acc as f64 / tried as f64 } else { 0.0 },
        });
    }

    // Round-major order: row r·chains + g is the r-th sample of chain g.
    let rounds = groups.iter().map(|g| g.recorded.len()).min().unwrap_or(0);
    let mut data = Vec::with_capacity(n * dim);
    'outer: for r in 0..rounds {
        for g in &groups {
            if data.len() == n * dim {
                break 'outer;
            }
            data.extend(g.recorded[r].iter().map(|&v| v as f32));
        }
    }
    let k = temps.len();
    let rate = |a: u64, t: u64| if t > 0 { a as f64 / t as f64 } else { 0.0 };
    Ok(McmcOutput {
        samples: Matrix::new(n, dim, data),
        accept: (0..k)
            .map(|t| rate(groups.iter().map(|g| g.replicas[t].accepted).sum(), groups.iter().map(|g| g.replicas[t].tried).sum()))
            .collect(),
        swap_accept: (0..k.saturating_sub(1))
            .map(|t| rate(groups.iter().map(|g| g.swaps_accepted[t]).sum(), groups.iter().map(|g| g.swaps_tried[t]).sum()))
            .collect(),
        step_sizes: (0..k).map(|t| groups.iter().map(|g| g.replicas[t].step).sum::<f64>() / groups.len() as f64).collect(),
        gradient_evals: groups.iter().map(|g| g.gradient_evals).sum(),
    })
}

/// A start far from overlaps: particles on a jittered cubic/square lattice at the system's
/// preferred spacing, or a Gaussian blob for non-particle systems.
fn initial_configuration(energy: &dyn Energy, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let layout = energy.layout();
    let spacing = energy.pair_spacing();
    if !layout.com_free {
        return (0..layout.dim()).map(|_| spacing * rng.sample::<f64, _>(StandardNormal)).collect();
    }
    let (n, d) = (layout.particles, layout.spatial_dim);
    let side = (n as f64).powf(1.0 / d as f64).ceil() as usize;
    let mut sites: Vec<usize> = (0..side.pow(d as u32)).collect();
    for k in (1..sites.len()).rev() {
        sites.swap(k, rng.random_range(0..=k));
    }
    let mut x = Vec::with_capacity(n * d);
    for &site in &sites[..n] {
        let mut idx = site;
        for _ in 0..d {
            let jitter: f64 = rng.sample(StandardNormal);
            x.push(((idx % side) as f64 + 0.05 * jitter) * spacing);
            idx /= side;
        }
    }
    remove_com(&mut x, layout);
    x
}

impl Group {
    fn reset_counters(&mut self) {
        for r in &mut self.replicas {
            r.accepted = 0;
            r.tried = 0;
        }
        self.swaps_accepted.fill(0);
        self.swaps_tried.fill(0);
    }

    fn sweep(&mut self, energy: &dyn Energy, cfg: &McmcConfig, temps: &[f64], sweep: usize, adapting: bool) {
        for (t, &temp) in temps.iter().enumerate() {
            let lf = self.rng.random_range(cfg.leapfrog_steps.div_ceil(2)..=cfg.leapfrog_steps * 3 / 2).max(1);
            let accepted = hmc_move(energy, &mut self.replicas[t], temp, lf, &mut self.rng);
            self.gradient_evals += lf as u64;
            let r = &mut self.replicas[t];
            r.tried += 1;
            r.accepted += accepted as u64;
            if adapting {
                // Robbins–Monro style: nudge log(step) toward the target acceptance.
                let a = if accepted { 1.0 } else { 0.0 };
                r.step *= (0.05 * (a - cfg.target_accept)).exp();
            }
        }
        for t in (sweep % 2..temps.len().saturating_sub(1)).step_by(2) {
            let (bi, bj) = (1.0 / temps[t], 1.0 / temps[t + 1]);
            let log_a = (bi - bj) * (self.replicas[t].energy - self.replicas[t + 1].energy);
            self.swaps_tried[t] += 1;
            if log_a >= 0.0 || self.rng.random::<f64>() < log_a.exp() {
                self.replicas.swap(t, t + 1);
                // Step sizes belong to the temperature, not to the configuration.
                let (a, b) = self.replicas.split_at_mut(t + 1);
                std::mem::swap(&mut a[t].step, &mut b[0].step);
                std::mem::swap(&mut a[t].accepted, &mut b[0].accepted);
                std::mem::swap(&mut a[t].tried, &mut b[0].tried);
                self.swaps_accepted[t] += 1;
            }
        }
    }
}

/// One HMC move at temperature `temp` (potential E/T, unit mass). Momenta are projected onto the
/// CoM-free subspace for particle systems, where E is translation invariant and the centre of
/// mass would otherwise drift. Returns whether the proposal was accepted.
fn hmc_move(energy: &dyn Energy, r: &mut Replica, temp: f64, steps: usize, rng: &mut ChaCha8Rng) -> bool {
    let layout = energy.layout();
    let beta = 1.0 / temp;
    let eps = r.step;
    let mut p: Vec<f64> = (0..r.x.len()).map(|_| rng.sample(StandardNormal)).collect();
    remove_com(&mut p, layout);
    let kinetic0: f64 = 0.5 * p.iter().map(|v| v * v).sum::<f64>();
    let h0 = beta * r.energy + kinetic0;

    let mut x = r.x.clone();
    let mut g = r.grad.clone();
    let mut e = r.energy;
    for (pk, gk) in p.iter_mut().zip(&g) {
        *pk -= 0.5 * eps * beta * gk;
    }
    for s in 0..steps {
        for (xk, pk) in x.iter_mut().zip(&p) {
            *xk += eps * pk;
        }
        e = energy.energy_grad(&x, &mut g);
        if !e.is_finite() {
            return false;
        }
        let scale = if s + 1 == steps { 0.5 } else { 1.0 };
        for (pk, gk) in p.iter_mut().zip(&g) {
            *pk -= scale * eps * beta * gk;
        }
    }
    let kinetic1: f64 = 0.5 * p.iter().map(|v| v * v).sum::<f64>();
    let log_a = h0 - (beta * e + kinetic1);
    if log_a.is_finite() && (log_a >= 0.0 || rng.random::<f64>() < log_a.exp()) {
        r.x = x;
        r.grad = g;
        r.energy = e;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::{DoubleWell, Gmm40};

    #[test]
    fn same_seed_same_samples_and_different_seed_differs() {
        let e = DoubleWell::dw4();
        let cfg = McmcConfig { chains: 4, burn_in: 50, thin: 2, ..Default::default() };
        let a = sample_reference(&e, &cfg, 20, 3, &mut |_| {}).unwrap();
        let b = sample_reference(&e, &cfg, 20, 3, &mut |_| {}).unwrap();
        let c = sample_reference(&e, &cfg, 20, 4, &mut |_| {}).unwrap();
        assert_eq!(a.samples, b.samples);
        assert_ne!(a.samples, c.samples);
        assert_eq!((a.samples.rows, a.samples.cols), (20, 8));
    }

    /// A 1-particle-free check of exactness: HMC on the GMM would take exact samples, so use
    /// the DW-4 energy mean against the reference value instead in the integration tests; here
    /// the exact GMM path must return the requested count.
    #[test]
    fn gmm_uses_exact_draws() {
        let out = sample_reference(&Gmm40::new(), &McmcConfig::default(), 100, 1, &mut |_| {}).unwrap();
        assert_eq!((out.samples.rows, out.samples.cols), (100, 2));
        assert_eq!(out.gradient_evals, 0);
    }

    #[test]
    fn rejects_bad_settings() {
        let e = DoubleWell::dw4();
        let cfg = McmcConfig { t_max: 0.5, ..Default::default() };
        assert!(sample_reference(&e, &cfg, 10, 0, &mut |_| {}).unwrap_err().to_string().contains("t_max"));
        assert!(sample_reference(&e, &McmcConfig::default(), 0, 0, &mut |_| {}).is_err());
    }
}
