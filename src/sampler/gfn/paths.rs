//! Trajectories of a GFlowNet diffusion sampler and their log-weights (samplers-next.md §1–3):
//! forward Euler–Maruyama paths scored by the policy's per-step Gaussian kernels, the fixed
//! backward process (a Brownian bridge to the origin in the plane, wrapped normals on the torus),
//! and ℓ(τ) = log R(x₁) + Σ log p_B − Σ log p_F − log μ₀(x₀), whose exponential has mean Z.
//!
//! Every kernel is normalised (CoM-free Gaussians count (N−1)·D degrees of freedom, wrapped
//! normals are summed over windings), so that mean ℓ ≤ log Z and logmeanexp ℓ → log Z hold as
//! identities, not up to a constant: `logz` compares kinds by them.

use std::f64::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::energy::{Layout, remove_com};
use crate::error::Result;
use crate::sampler::row_rng;
use crate::sde::{fill_normal, wrap_in_place, wrapped_normal};

/// The space paths live in and their fixed noise: the plane (a Dirac start at the origin and
/// per-step variance σ²/T) or the torus (a uniform start and the geometric schedule
/// σᵢ = σ_max^(1−i/T) σ_min^(i/T), step i adding σᵢ² − σᵢ₊₁²: the exact VE increments, the same
/// in the forward noise and the backward kernel, as samplers-next.md §3 recommends).
#[derive(Debug, Clone, Copy)]
pub struct PathSpace {
    pub layout: Layout,
    pub torus: bool,
    /// Euler steps T from the start to the end point.
    pub steps: usize,
    /// Plane: σ. Torus: σ_max of the schedule.
    pub sigma: f64,
    /// Torus: σ_min of the schedule (unused in the plane).
    pub sigma_min: f64,
}

/// The policy's field s(x, t) at rows `x` and one time `t` (rows × dim); a step's mean is
/// x + vₖ·s, so s is a score: its ideal at the end is ∇ log R.
pub type Drift<'a> = dyn FnMut(&[f32], f32) -> Result<Vec<f32>> + 'a;

/// Trajectories of `n` rows: the states x₀ … x_T (each n × dim) and each row's path sums.
#[derive(Debug, Clone)]
pub struct Trajectories {
    pub states: Vec<Vec<f32>>,
    /// Σₖ log p_F(xₖ₊₁ | xₖ) under the unexplored kernel, per row.
    pub log_pf: Vec<f64>,
    /// The same under the kernel the noise was drawn from (with exploration's extra variance):
    /// the proposal density of these paths, whose ℓ are their true importance weights.
    pub log_pf_drawn: Vec<f64>,
    /// Σₖ log p_B(xₖ | xₖ₊₁), per row.
    pub log_pb: Vec<f64>,
}

impl PathSpace {
    pub fn dim(&self) -> usize {
        self.layout.dim()
    }

    /// Degrees of freedom of one configuration: (N−1)·D on the CoM-free subspace.
    pub fn dof(&self) -> f64 {
        if self.layout.com_free {
            ((self.layout.particles - 1) * self.layout.spatial_dim) as f64
        } else {
            self.dim() as f64
        }
    }

    /// SDE time of state k.
    pub fn time(&self, k: usize) -> f32 {
        k as f32 / self.steps as f32
    }

    /// Variance added by step k → k+1.
    pub fn variance(&self, k: usize) -> f64 {
        if self.torus {
            let s = |i: usize| {
                let f = i as f64 / self.steps as f64;
                self.sigma.powf(1.0 - f) * self.sigma_min.powf(f)
            };
            s(k).powi(2) - s(k + 1).powi(2)
        } else {
            self.sigma * self.sigma / self.steps as f64
        }
    }

    /// log μ₀(x₀): 0 for the Dirac start, −m·log 2π for the uniform start on the torus.
    pub fn log_start(&self) -> f64 {
        if self.torus {
            -(self.dim() as f64) * TAU.ln()
        } else {
            0.0
        }
    }

    /// Starting points of `n` rows (row i from its own stream of `seed`).
    pub fn start(&self, n: usize, seed: u64, first_row: usize) -> Vec<f32> {
        let dim = self.dim();
        let mut x = vec![0.0f32; n * dim];
        if self.torus {
            for (i, row) in x.chunks_mut(dim).enumerate() {
                // A stream of its own (word offset far past the path's noise) for the start.
                let mut r = row_rng(seed ^ 0x5354_4152_5421, first_row + i);
                row.iter_mut()
                    .for_each(|v| *v = r.random_range(-PI..PI) as f32);
            }
        }
        x
    }

    /// log density of the step residual `r` (one row) under variance `v`, and d/dr of it into
    /// `d` when given: a Gaussian on the (CoM-free) subspace, or a product of wrapped normals.
    pub fn log_kernel(&self, r: &[f32], v: f64, d: Option<&mut [f32]>) -> f64 {
        if self.torus {
            let mut sum = 0.0;
            match d {
                Some(d) => {
                    for (ri, di) in r.iter().zip(d.iter_mut()) {
                        let (l, g) = wrapped_normal(*ri as f64, v);
                        sum += l;
                        *di = g as f32;
                    }
                }
                None => {
                    for ri in r {
                        sum += wrapped_normal(*ri as f64, v).0;
                    }
                }
            }
            sum
        } else {
            let ss: f64 = r.iter().map(|&x| (x as f64).powi(2)).sum();
            if let Some(d) = d {
                for (ri, di) in r.iter().zip(d.iter_mut()) {
                    *di = (-(*ri as f64) / v) as f32;
                }
            }
            -0.5 * ss / v - 0.5 * self.dof() * (TAU * v).ln()
        }
    }

    /// The residual `to − from − shift` of one row (wrapped on the torus), in f64 arithmetic.
    pub fn residual(&self, from: &[f32], to: &[f32], shift: &[f32], out: &mut [f32]) {
        for j in 0..out.len() {
            let r = to[j] as f64 - from[j] as f64 - shift[j] as f64;
            out[j] = if self.torus {
                crate::types::wrap_angle(r) as f32
            } else {
                r as f32
            };
        }
    }

    /// log p_B(xₖ | xₖ₊₁) of one row. Plane: the bridge N((k/(k+1))·xₖ₊₁, σ²Δ·k/(k+1)) for
    /// k ≥ 1 and a point mass (0) for the step to x₀. Torus: WN(xₖ − xₖ₊₁; vₖ).
    pub fn log_pb(&self, k: usize, xk: &[f32], xk1: &[f32], scratch: &mut [f32]) -> f64 {
        if self.torus {
            let zero = vec![0.0f32; xk.len()];
            self.residual(xk1, xk, &zero, scratch);
            return self.log_kernel(scratch, self.variance(k), None);
        }
        if k == 0 {
            return 0.0;
        }
        let c = k as f64 / (k + 1) as f64;
        for j in 0..xk.len() {
            scratch[j] = (xk[j] as f64 - c * xk1[j] as f64) as f32;
        }
        self.log_kernel(scratch, self.variance(k) * c, None)
    }

    /// Draws xₖ given xₖ₊₁ from the backward kernel, for the rows of `xk1`.
    fn back_step(&self, k: usize, xk1: &[f32], rng: &mut ChaCha8Rng) -> Vec<f32> {
        let mut noise = vec![0.0f32; xk1.len()];
        if !self.torus && k == 0 {
            return noise; // x₀ = 0
        }
        fill_normal(&mut noise, rng);
        remove_com(&mut noise, self.layout);
        let (mean_c, v) = if self.torus {
            (1.0, self.variance(k))
        } else {
            let c = k as f64 / (k + 1) as f64;
            (c, self.variance(k) * c)
        };
        let sd = v.sqrt();
        let mut out: Vec<f32> = xk1
            .iter()
            .zip(&noise)
            .map(|(&x, &z)| (mean_c * x as f64 + sd * z as f64) as f32)
            .collect();
        if self.torus {
            wrap_in_place(&mut out);
        }
        out
    }

    /// Backward trajectories from end points `x1` (n × dim): the states x₀ … x_T, x_T = x1.
    pub fn backward(&self, x1: &[f32], rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
        let mut states = vec![Vec::new(); self.steps + 1];
        states[self.steps] = x1.to_vec();
        for k in (0..self.steps).rev() {
            states[k] = self.back_step(k, &states[k + 1], rng);
        }
        states
    }

    /// Forward trajectories of `n` rows under `drift`, row i drawing its noise from
    /// [`row_rng`]`(seed, first_row + i)`. `explore_var` adds that much variance per unit time
    /// to the noise (off-policy exploration); the paths are still scored under the unexplored
    /// kernel. `log_pb` is filled too.
    pub fn forward(
        &self,
        drift: &mut Drift,
        n: usize,
        seed: u64,
        first_row: usize,
        explore_var: f64,
    ) -> Result<Trajectories> {
        let dim = self.dim();
        let mut rngs: Vec<ChaCha8Rng> = (0..n).map(|i| row_rng(seed, first_row + i)).collect();
        let mut x = self.start(n, seed, first_row);
        let mut states = Vec::with_capacity(self.steps + 1);
        let mut log_pf = vec![0.0f64; n];
        let mut log_pf_drawn = vec![0.0f64; n];
        let mut noise = vec![0.0f32; n * dim];
        let mut r = vec![0.0f32; dim];
        for k in 0..self.steps {
            let v = self.variance(k);
            let mut s = drift(&x, self.time(k))?;
            remove_com(&mut s, self.layout);
            for (row, rng) in noise.chunks_mut(dim).zip(rngs.iter_mut()) {
                fill_normal(row, rng);
            }
            remove_com(&mut noise, self.layout);
            let drawn_var = v + explore_var / self.steps as f64;
            let sd = drawn_var.sqrt();
            let mut next = vec![0.0f32; n * dim];
            for i in 0..n {
                let rows = i * dim..(i + 1) * dim;
                for j in rows.clone() {
                    next[j] = (x[j] as f64 + v * s[j] as f64 + sd * noise[j] as f64) as f32;
                }
                if self.torus {
                    wrap_in_place(&mut next[rows.clone()]);
                }
                let shift: Vec<f32> = s[rows.clone()].iter().map(|&v_| (v * v_ as f64) as f32).collect();
                self.residual(&x[rows.clone()], &next[rows], &shift, &mut r);
                let lk = self.log_kernel(&r, v, None);
                log_pf[i] += lk;
                log_pf_drawn[i] += if explore_var > 0.0 {
                    self.log_kernel(&r, drawn_var, None)
                } else {
                    lk
                };
            }
            states.push(std::mem::replace(&mut x, next));
        }
        states.push(x);
        let log_pb = self.path_log_pb(&states);
        Ok(Trajectories {
            states,
            log_pf,
            log_pf_drawn,
            log_pb,
        })
    }

    /// Σₖ log p_B(xₖ | xₖ₊₁) of each row of `states`.
    pub fn path_log_pb(&self, states: &[Vec<f32>]) -> Vec<f64> {
        let dim = self.dim();
        let n = states[0].len() / dim;
        let mut scratch = vec![0.0f32; dim];
        (0..n)
            .map(|i| {
                let rows = i * dim..(i + 1) * dim;
                (0..self.steps)
                    .map(|k| {
                        self.log_pb(
                            k,
                            &states[k][rows.clone()],
                            &states[k + 1][rows.clone()],
                            &mut scratch,
                        )
                    })
                    .sum()
            })
            .collect()
    }

    /// Σₖ log p_F(xₖ₊₁ | xₖ) of each row of `states` under the field values `s` (for each step k,
    /// the field at states[k], rows × dim), with d log p_F/d s per step into `grad` when given
    /// (laid out as `s`).
    pub fn path_log_pf(
        &self,
        states: &[Vec<f32>],
        s: &[Vec<f32>],
        mut grad: Option<&mut [Vec<f32>]>,
    ) -> Vec<f64> {
        let dim = self.dim();
        let n = states[0].len() / dim;
        let mut out = vec![0.0f64; n];
        let mut r = vec![0.0f32; dim];
        let mut d = vec![0.0f32; dim];
        let mut shift = vec![0.0f32; dim];
        for k in 0..self.steps {
            let v = self.variance(k);
            for i in 0..n {
                let rows = i * dim..(i + 1) * dim;
                for (sh, &sv) in shift.iter_mut().zip(&s[k][rows.clone()]) {
                    *sh = (v * sv as f64) as f32;
                }
                self.residual(&states[k][rows.clone()], &states[k + 1][rows.clone()], &shift, &mut r);
                out[i] += self.log_kernel(&r, v, Some(&mut d));
                if let Some(g) = grad.as_deref_mut() {
                    // r = Δx − v·s, so d/ds = −v·d/dr.
                    for (gj, &dj) in g[k][rows].iter_mut().zip(&d) {
                        *gj = (-v * dj as f64) as f32;
                    }
                }
            }
        }
        out
    }
}

/// ℓ = log R + Σ log p_B − Σ log p_F − log μ₀ per row; −∞ where log R is not finite.
pub fn log_weights(space: &PathSpace, log_r: &[f64], log_pf: &[f64], log_pb: &[f64]) -> Vec<f64> {
    let l0 = space.log_start();
    log_r
        .iter()
        .zip(log_pf)
        .zip(log_pb)
        .map(|((&r, &f), &b)| {
            if r.is_finite() {
                r + b - f - l0
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::log_mean_exp;
    use rand::SeedableRng;

    fn plane(dim: usize, steps: usize, sigma: f64) -> PathSpace {
        PathSpace {
            layout: Layout { particles: 1, spatial_dim: dim, com_free: false },
            torus: false,
            steps,
            sigma,
            sigma_min: 0.0,
        }
    }

    fn torus(dim: usize, steps: usize) -> PathSpace {
        PathSpace {
            layout: Layout { particles: 1, spatial_dim: dim, com_free: false },
            torus: true,
            steps,
            sigma: PI,
            sigma_min: 0.01 * PI,
        }
    }

    fn zero(x: &[f32], _t: f32) -> Result<Vec<f32>> {
        Ok(vec![0.0; x.len()])
    }

    /// log N(x; 0, σ²I) summed over rows: the zero-drift sampler's own end marginal.
    fn gauss_log_r(space: &PathSpace, x1: &[f32]) -> Vec<f64> {
        let d = space.dim();
        let v = space.sigma * space.sigma;
        x1.chunks(d)
            .map(|r| {
                -0.5 * r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v
                    - 0.5 * space.dof() * (TAU * v).ln()
            })
            .collect()
    }

    /// samplers-next.md §2 test 1: the zero-drift walk from 0 against its own Gaussian end
    /// marginal with log Z = 0 has ℓ = 0 on every path, forward and backward-sampled. Any
    /// off-by-one in the bridge's mean or variance, the k = 0 point mass or a normaliser moves
    /// ℓ by O(1); 1e-5 is f64 round-off over 100 steps with a wide margin.
    #[test]
    fn exact_sampler_has_zero_trajectory_balance_residual_in_the_plane() {
        for (dim, com_free) in [(2usize, false), (6, true)] {
            let mut space = plane(dim, 100, 1.7);
            if com_free {
                space.layout = Layout { particles: 3, spatial_dim: 2, com_free: true };
            }
            let t = space.forward(&mut zero, 64, 7, 0, 0.0).unwrap();
            let l = log_weights(&space, &gauss_log_r(&space, &t.states[100]), &t.log_pf, &t.log_pb);
            assert!(l.iter().all(|v| v.abs() < 1e-5), "forward: {:?}", &l[..4]);
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let mut x1 = vec![0.0f32; 64 * dim];
            fill_normal(&mut x1, &mut rng);
            remove_com(&mut x1, space.layout);
            let states = space.backward(&x1, &mut rng);
            let s: Vec<Vec<f32>> = states.iter().map(|x| vec![0.0; x.len()]).collect();
            let lpf = space.path_log_pf(&states, &s, None);
            let lpb = space.path_log_pb(&states);
            let l = log_weights(&space, &gauss_log_r(&space, &x1), &lpf, &lpb);
            assert!(l.iter().all(|v| v.abs() < 1e-5), "backward: {:?}", &l[..4]);
        }
    }

    /// §3 test 2: on the torus, a uniform target with zero score and symmetric kernels gives
    /// ℓ = log Z = m·log 2π on every path, forward and backward.
    #[test]
    fn exact_sampler_has_constant_log_weight_on_the_torus() {
        let space = torus(2, 20);
        let log_z = 2.0 * TAU.ln();
        let t = space.forward(&mut zero, 50, 11, 0, 0.0).unwrap();
        let l = log_weights(&space, &[0.0; 50], &t.log_pf, &t.log_pb);
        assert!(l.iter().all(|v| (v - log_z).abs() < 1e-5), "{:?}", &l[..4]);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let x1: Vec<f32> = (0..100).map(|_| rng.random_range(-PI..PI) as f32).collect();
        let states = space.backward(&x1, &mut rng);
        let s: Vec<Vec<f32>> = states.iter().map(|x| vec![0.0; x.len()]).collect();
        let l = log_weights(&space, &[0.0; 50], &space.path_log_pf(&states, &s, None), &space.path_log_pb(&states));
        assert!(l.iter().all(|v| (v - log_z).abs() < 1e-5), "{:?}", &l[..4]);
    }

    /// §3 test 1: the normalised wrapped normal integrates to 1 over one turn.
    #[test]
    fn wrapped_normal_integrates_to_one() {
        for sd in [0.03f64, 1.0, PI] {
            let n = 200_000;
            let h = TAU / n as f64;
            let z: f64 = (0..n)
                .map(|i| wrapped_normal(-PI + (i as f64 + 0.5) * h, sd * sd).0.exp() * h)
                .sum();
            assert!((z - 1.0).abs() < 1e-6, "σ = {sd}: {z}");
        }
    }

    /// §2 test 3: the bridge from x₁ has mean t·x₁ and variance σ²t(1−t) at time t = k/T.
    /// Tolerance: 4 standard errors of 40 000 draws.
    #[test]
    fn bridge_has_the_brownian_bridge_moments() {
        let space = plane(1, 10, 2.0);
        let n = 40_000;
        let x1 = vec![3.0f32; n];
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let states = space.backward(&x1, &mut rng);
        assert!(states[0].iter().all(|&v| v == 0.0));
        for k in [2usize, 5, 8] {
            let t = k as f64 / 10.0;
            let xs = &states[k];
            let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let want_var = 4.0 * t * (1.0 - t);
            assert!((mean - 3.0 * t).abs() < 4.0 * (want_var / n as f64).sqrt(), "k {k}: mean {mean}");
            assert!((var / want_var - 1.0).abs() < 4.0 * (2.0 / n as f64).sqrt(), "k {k}: var {var}");
        }
    }

    /// §2 test 2: for a non-zero policy, E[exp ℓ] = Z exactly, so logmeanexp ℓ over 10⁵ paths
    /// lies within 3 standard errors of the known log Z, and mean ℓ (the ELBO) below it. Target:
    /// E = (x−1)²/(2·0.5) + (y+0.5)²/2, Z = 2π·√0.5; the policy is a fixed nonlinear field.
    #[test]
    fn importance_weights_are_unbiased_for_z() {
        let space = plane(2, 20, 1.5);
        let mut drift = |x: &[f32], t: f32| -> Result<Vec<f32>> {
            Ok(x.iter().enumerate().map(|(j, &v)| if j % 2 == 0 { 0.4 - 0.3 * v * t } else { (0.5 * v).sin() - 0.2 }).collect())
        };
        let n = 100_000;
        let t = space.forward(&mut drift, n, 21, 0, 0.0).unwrap();
        let log_r: Vec<f64> = t.states[20]
            .chunks(2)
            .map(|r| {
                let (x, y) = (r[0] as f64, r[1] as f64);
                -(x - 1.0).powi(2) / 1.0 - (y + 0.5).powi(2) / 2.0
            })
            .collect();
        let l = log_weights(&space, &log_r, &t.log_pf, &t.log_pb);
        let (rw, se) = log_mean_exp(&l);
        let exact = (TAU * 0.5f64.sqrt()).ln();
        assert!((rw - exact).abs() < 3.0 * se, "RW {rw} ± {se}, exact {exact}");
        let elbo = l.iter().sum::<f64>() / n as f64;
        assert!(elbo < exact, "ELBO {elbo} > log Z {exact}");
        assert!(se < 0.05, "the test has power: s.e. {se}");
    }

    /// The same identity on the torus: a von Mises target exp(κ cos θ) with Z = 2π·I₀(κ).
    #[test]
    fn importance_weights_are_unbiased_on_the_torus() {
        let space = torus(1, 20);
        let mut drift = |x: &[f32], _t: f32| -> Result<Vec<f32>> { Ok(x.iter().map(|&v| -0.8 * v.sin()).collect()) };
        let n = 100_000;
        let kappa = 2.0f64;
        let t = space.forward(&mut drift, n, 4, 0, 0.0).unwrap();
        let log_r: Vec<f64> = t.states[20].iter().map(|&v| kappa * (v as f64).cos()).collect();
        let l = log_weights(&space, &log_r, &t.log_pf, &t.log_pb);
        let (rw, se) = log_mean_exp(&l);
        // I₀(2) by its series.
        let i0: f64 = (0..30).map(|k| (kappa / 2.0).powi(2 * k) / (1..=k).map(|j| (j * j) as f64).product::<f64>()).sum();
        let exact = (TAU * i0).ln();
        assert!((rw - exact).abs() < 3.0 * se, "RW {rw} ± {se}, exact {exact}");
    }

    /// d log p_F / d s matches a central difference of log p_F in s.
    #[test]
    fn log_pf_gradient_matches_finite_differences() {
        for space in [plane(2, 5, 1.3), torus(2, 5)] {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let states: Vec<Vec<f32>> = (0..6).map(|_| (0..6).map(|_| rng.random_range(-2.0..2.0)).collect()).collect();
            let s: Vec<Vec<f32>> = (0..6).map(|_| (0..6).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
            let mut g: Vec<Vec<f32>> = s.iter().map(|v| vec![0.0; v.len()]).collect();
            space.path_log_pf(&states, &s, Some(&mut g));
            let h = 1e-2f32;
            for (k, j) in [(0usize, 0usize), (2, 3), (4, 5)] {
                let (mut up, mut dn) = (s.clone(), s.clone());
                up[k][j] += h;
                dn[k][j] -= h;
                let fd = (space.path_log_pf(&states, &up, None)[j / 2] - space.path_log_pf(&states, &dn, None)[j / 2]) / (2.0 * h as f64);
                assert!((fd - g[k][j] as f64).abs() < 1e-3 * (1.0 + fd.abs()), "torus {}: fd {fd}, analytic {}", space.torus, g[k][j]);
            }
        }
    }
}
