//! The base process of Adjoint Sampling: geometric VE noise, Euler–Maruyama grid, the Brownian
//! bridge pinned at X₀ = 0, and the centre-of-mass projection of particle systems.
//!
//! science.md §2: σ(t) = σ_min · r^(1−t) · sqrt(2 ln r), r = σ_max/σ_min, so that
//! ν(t) = ∫₀ᵗ σ² = σ_max² (1 − r^(−2t)).

use rand::Rng;
use rand_distr::StandardNormal;

use crate::energy::{Layout, remove_com};

/// The geometric noise schedule σ(t) on t ∈ [0, 1] (large at t = 0, small at t = 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseSchedule {
    pub sigma_min: f64,
    pub sigma_max: f64,
}

impl NoiseSchedule {
    pub fn new(sigma_min: f64, sigma_max: f64) -> Self {
        assert!(
            0.0 < sigma_min && sigma_min < sigma_max,
            "need 0 < σ_min < σ_max"
        );
        Self {
            sigma_min,
            sigma_max,
        }
    }

    fn ln_r(&self) -> f64 {
        (self.sigma_max / self.sigma_min).ln()
    }

    /// σ(t).
    pub fn sigma(&self, t: f64) -> f64 {
        let ln_r = self.ln_r();
        self.sigma_min * (ln_r * (1.0 - t)).exp() * (2.0 * ln_r).sqrt()
    }

    /// ν(t) = ∫₀ᵗ σ(s)² ds, the variance the base process has accumulated by time t.
    pub fn nu(&self, t: f64) -> f64 {
        self.sigma_max.powi(2) * (1.0 - (-2.0 * self.ln_r() * t).exp())
    }

    /// ν(1) = σ_max² − σ_min².
    pub fn nu1(&self) -> f64 {
        self.nu(1.0)
    }
}

/// The Euler–Maruyama grid t_k = (k/N)^warp, k = 0..=N: warp 1 is uniform, warp > 1 puts more
/// of the steps at early times, where the geometric schedule adds most of its variance.
pub fn euler_time(k: usize, steps: usize, warp: f64) -> f64 {
    (k as f64 / steps as f64).powf(warp)
}

/// Path frames recorded on the grid [`euler_time`]`(k, N, warp)` re-read at the uniform times
/// j/N, linear between neighbouring frames: a scrubber over SDE time then maps time to frame
/// index the same way whatever the grid.
pub fn frames_at_uniform_times(frames: Vec<Vec<f32>>, warp: f64) -> Vec<Vec<f32>> {
    let steps = frames.len().saturating_sub(1);
    if warp == 1.0 || steps == 0 {
        return frames;
    }
    (0..=steps)
        .map(|j| {
            let tau = j as f64 / steps as f64;
            // The grid interval [t_k, t_k+1] holding τ: k = ⌊N τ^(1/warp)⌋.
            let k = ((steps as f64 * tau.powf(1.0 / warp)).floor() as usize).min(steps - 1);
            let (t0, t1) = (euler_time(k, steps, warp), euler_time(k + 1, steps, warp));
            let w = (((tau - t0) / (t1 - t0)).clamp(0.0, 1.0)) as f32;
            frames[k]
                .iter()
                .zip(&frames[k + 1])
                .map(|(&a, &b)| a + w * (b - a))
                .collect()
        })
        .collect()
}

/// Fills `out` with standard normal draws from the run's generator.
pub fn fill_normal(out: &mut [f32], rng: &mut impl Rng) {
    for v in out.iter_mut() {
        *v = rng.sample(StandardNormal);
    }
}

/// Draws X_t of the base process's bridge from X₀ = 0 to X₁ = `x1` (rows × dim) at per-row
/// times `t`: X_t = κ x₁ + sqrt(ν(1) κ (1 − κ)) ξ, κ = ν(t)/ν(1). The noise ξ is projected onto
/// the CoM-free subspace for particle systems, where the process lives.
pub fn bridge_sample(
    schedule: &NoiseSchedule,
    layout: Layout,
    x1: &[f32],
    t: &[f32],
    rng: &mut impl Rng,
) -> Vec<f32> {
    let dim = layout.dim();
    assert_eq!(x1.len(), t.len() * dim);
    let mut noise = vec![0.0f32; x1.len()];
    fill_normal(&mut noise, rng);
    remove_com(&mut noise, layout);
    let nu1 = schedule.nu1();
    let mut out = vec![0.0f32; x1.len()];
    for (i, &ti) in t.iter().enumerate() {
        let kappa = schedule.nu(ti as f64) / nu1;
        let std = (nu1 * kappa * (1.0 - kappa)).max(0.0).sqrt();
        for k in i * dim..(i + 1) * dim {
            out[k] = (kappa * x1[k] as f64 + std * noise[k] as f64) as f32;
        }
    }
    out
}

/// Wraps every value into (−π, π]: the torus of torsion angles.
pub fn wrap_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = crate::types::wrap_angle(*v as f64) as f32;
    }
}

/// Windings k summed over for a wrapped normal of variance `nu`: the terms with |y + 2πk| up to
/// π + 8 standard deviations (the rest weigh below e⁻³²).
fn windings(nu: f64) -> i64 {
    ((std::f64::consts::PI + 8.0 * nu.sqrt()) / std::f64::consts::TAU).ceil() as i64
}

/// The wrapped normal WN(0, ν) on the circle at `y` (radians): log density and its derivative,
/// log Σₖ N(y + 2πk; 0, ν) and d/dy of it. The base process of the torsional sampler started
/// at 0 has this marginal at t = 1 (science.md §2).
pub fn wrapped_normal(y: f64, nu: f64) -> (f64, f64) {
    let kmax = windings(nu);
    let tau = std::f64::consts::TAU;
    let m = (-kmax..=kmax)
        .map(|k| -(y + tau * k as f64).powi(2) / (2.0 * nu))
        .fold(f64::NEG_INFINITY, f64::max);
    let (mut w, mut wz) = (0.0, 0.0);
    for k in -kmax..=kmax {
        let z = y + tau * k as f64;
        let e = (-(z * z) / (2.0 * nu) - m).exp();
        w += e;
        wz += e * z;
    }
    (m + w.ln() - 0.5 * (tau * nu).ln(), -wz / (w * nu))
}

/// A lift of `y` (radians) off the circle: y + 2πk with k drawn in proportion to N(y + 2πk; 0, ν),
/// the winding of a base path from 0 that ends at y. The bridge to the lifted point, wrapped,
/// is the base bridge on the torus.
pub fn lift(y: f32, nu: f64, rng: &mut impl Rng) -> f32 {
    let kmax = windings(nu);
    let tau = std::f64::consts::TAU;
    let y = y as f64;
    let logs: Vec<f64> = (-kmax..=kmax)
        .map(|k| -(y + tau * k as f64).powi(2) / (2.0 * nu))
        .collect();
    let m = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = logs.iter().map(|l| (l - m).exp()).collect();
    let mut u = rng.random::<f64>() * w.iter().sum::<f64>();
    for (i, wi) in w.iter().enumerate() {
        u -= wi;
        if u <= 0.0 {
            return (y + tau * (i as i64 - kmax) as f64) as f32;
        }
    }
    (y + tau * kmax as f64) as f32
}

/// The base bridge between rows `x0` and `x1` (ASBS, whose paths start from a prior):
/// X_t = (1 − κ) x₀ + κ x₁ + sqrt(ν(1) κ (1 − κ)) ξ. With x₀ = 0 it is [`bridge_sample`], draw
/// for draw.
pub fn bridge_between(
    schedule: &NoiseSchedule,
    layout: Layout,
    x0: &[f32],
    x1: &[f32],
    t: &[f32],
    rng: &mut impl Rng,
) -> Vec<f32> {
    let mut out = bridge_sample(schedule, layout, x1, t, rng);
    let dim = layout.dim();
    let nu1 = schedule.nu1();
    for (i, &ti) in t.iter().enumerate() {
        let kappa = (schedule.nu(ti as f64) / nu1) as f32;
        for k in i * dim..(i + 1) * dim {
            out[k] += (1.0 - kappa) * x0[k];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Re-read frames keep both ends, and a path linear in t on the warped grid (frame k holds
    /// t_k itself) comes back as the uniform times j/N, to f32 rounding.
    #[test]
    fn frames_are_reread_at_uniform_times() {
        let (steps, warp) = (50, 2.0);
        let frames: Vec<Vec<f32>> = (0..=steps)
            .map(|k| vec![euler_time(k, steps, warp) as f32, -1.0])
            .collect();
        let out = frames_at_uniform_times(frames.clone(), warp);
        assert_eq!(out.len(), steps + 1);
        for (j, f) in out.iter().enumerate() {
            assert!(
                (f[0] - j as f32 / steps as f32).abs() < 1e-6,
                "frame {j}: {}",
                f[0]
            );
            assert_eq!(f[1], -1.0);
        }
        assert_eq!(frames_at_uniform_times(frames.clone(), 1.0), frames);
    }

    /// ν must be the integral of σ²: trapezoid rule on 10⁵ points is exact to ~1e-8 relative.
    #[test]
    fn nu_is_the_integral_of_sigma_squared() {
        let s = NoiseSchedule::new(1e-3, 2.0);
        let m = 100_000;
        let mut acc = 0.0;
        for k in 0..m {
            let (a, b) = (k as f64 / m as f64, (k + 1) as f64 / m as f64);
            acc += 0.5 * (s.sigma(a).powi(2) + s.sigma(b).powi(2)) / m as f64;
            if k + 1 == m / 4 {
                assert!((acc - s.nu(0.25)).abs() < 1e-6 * s.nu(0.25));
            }
        }
        assert!((acc - s.nu1()).abs() < 1e-6 * s.nu1());
        assert!((s.nu1() - (4.0 - 1e-6)).abs() < 1e-12);
    }

    /// The wrapped normal integrates to 1 over the circle (midpoint rule, 10⁴ cells: far below
    /// 1e-9 for a smooth periodic integrand), its derivative matches central differences, and a
    /// narrow one is the plain normal.
    #[test]
    fn wrapped_normal_is_a_density_on_the_circle() {
        use std::f64::consts::PI;
        for nu in [0.05, 1.0, 9.0] {
            let m = 10_000;
            let total: f64 = (0..m)
                .map(|i| {
                    wrapped_normal(-PI + (i as f64 + 0.5) * 2.0 * PI / m as f64, nu)
                        .0
                        .exp()
                        * 2.0
                        * PI
                        / m as f64
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-9, "ν = {nu}: ∫ = {total}");
            for y in [-3.0, -0.4, 1.1, 3.1] {
                let h = 1e-6;
                let fd = (wrapped_normal(y + h, nu).0 - wrapped_normal(y - h, nu).0) / (2.0 * h);
                assert!((wrapped_normal(y, nu).1 - fd).abs() < 1e-6 * fd.abs().max(1.0));
            }
        }
        let (lp, d) = wrapped_normal(0.3, 0.01);
        assert!((lp - (-(0.09) / 0.02 - 0.5 * (2.0 * PI * 0.01).ln())).abs() < 1e-12);
        assert!((d + 30.0).abs() < 1e-9);
    }

    /// Lifts are y + 2πk; with ν = 9 the windings k = −1, 0, 1 all occur, in proportion to their
    /// normal weights (20 000 draws: 4 binomial std ≈ 0.014).
    #[test]
    fn lifts_follow_the_winding_weights() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (y, nu) = (2.5f32, 9.0);
        let n = 20_000;
        let mut count = std::collections::BTreeMap::new();
        for _ in 0..n {
            let l = lift(y, nu, &mut rng);
            let k = ((l - y) as f64 / std::f64::consts::TAU).round() as i64;
            assert!(((l - y) as f64 - k as f64 * std::f64::consts::TAU).abs() < 1e-5);
            *count.entry(k).or_insert(0) += 1;
        }
        let w = |k: f64| (-(2.5 + std::f64::consts::TAU * k).powi(2) / 18.0).exp();
        let total: f64 = (-4..=4).map(|k| w(k as f64)).sum();
        for k in [-1i64, 0, 1] {
            let got = count.get(&k).copied().unwrap_or(0) as f64 / n as f64;
            assert!((got - w(k as f64) / total).abs() < 0.014, "k = {k}: {got}");
        }
    }

    /// Bridge variance at t: ν(1)κ(1−κ) per coordinate; 20 000 draws give a sampling error of
    /// about 1% on a variance, so 4% is a safe bound. The mean is κx₁.
    #[test]
    fn bridge_has_the_right_moments() {
        let s = NoiseSchedule::new(1e-3, 2.0);
        let layout = Layout {
            particles: 1,
            spatial_dim: 1,
            com_free: false,
        };
        let n = 20_000;
        let x1 = vec![1.5f32; n];
        let t = vec![0.1f32; n];
        let xt = bridge_sample(&s, layout, &x1, &t, &mut ChaCha8Rng::seed_from_u64(1));
        let kappa = s.nu(0.1) / s.nu1();
        let mean = xt.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = xt.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let want = s.nu1() * kappa * (1.0 - kappa);
        assert!((mean - kappa * 1.5).abs() < 0.05, "mean {mean}");
        assert!((var / want - 1.0).abs() < 0.04, "var {var} vs {want}");
    }
}
