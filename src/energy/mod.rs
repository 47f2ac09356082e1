//! Target energies E(x) of the Boltzmann densities p(x) ∝ exp(−E(x)/τ), with analytic gradients.
//!
//! Energies are cheap and hot, so they stay out of autograd: each system evaluates one
//! configuration in f64 (exact enough for finite-difference checks) and the batched f32 entry
//! point converts at the edge and spreads rows over rayon's pool.

mod double_well;
pub mod formula;
mod gaussian;
mod gmm;
mod landscape;
mod lennard_jones;
mod molecule;
mod pair;

pub use double_well::DoubleWell;
pub use formula::Formula;
pub use gaussian::Gaussian;
pub use gmm::Gmm40;
pub use landscape::{DoubleWell2d, Landscape, MuellerBrown, QuadratureGrid};
pub use lennard_jones::LennardJones;
pub use molecule::{KB_KCAL_PER_MOL_K, Molecule};

use rayon::prelude::*;

pub use crate::types::{FromF64, Layout, remove_com};

/// A target energy. `x` is one configuration laid out as particle-major coordinates
/// (x₁, y₁, [z₁,] x₂, …), as in the reference .npy files.
pub trait Energy: Send + Sync {
    /// Short display name ("LJ-13").
    fn name(&self) -> String;
    /// Particle layout of one configuration.
    fn layout(&self) -> Layout;
    /// E(x) for one configuration, writing ∇E(x) into `grad` (same length as `x`).
    fn energy_grad(&self, x: &[f64], grad: &mut [f64]) -> f64;
    /// E(x) only.
    fn energy(&self, x: &[f64]) -> f64 {
        let mut g = vec![0.0; x.len()];
        self.energy_grad(x, &mut g)
    }
    /// ΔE(x), the Laplacian, used for the configurational temperature ⟨‖∇E‖²⟩/⟨ΔE⟩.
    fn laplacian(&self, x: &[f64]) -> f64;
    /// Exact i.i.d. samples where the density allows it (GMM-40); `None` means "use MCMC".
    fn exact_sample(&self, _n: usize, _rng: &mut dyn rand::RngCore) -> Option<Vec<f64>> {
        None
    }

    /// For a mixture with separated modes (GMM-40): how many of its modes hold at least one of
    /// the rows `x` within 3 standard deviations of their centre; `None` for other systems.
    fn modes_covered(&self, _x: &[f32]) -> Option<usize> {
        None
    }

    /// Typical distance between neighbouring particles (or the spread of a non-particle
    /// system), used to build starting configurations without overlaps.
    fn pair_spacing(&self) -> f64 {
        1.0
    }

    /// For a point in the plane: the box (x range, y range) that holds its density, where the
    /// app draws the density map; `None` for everything else.
    fn plane_box(&self) -> Option<([f64; 2], [f64; 2])> {
        None
    }

    /// Whether every coordinate is an angle in (−π, π] (a molecule's free torsions): the sampler
    /// then wraps its steps and its base distribution onto the torus.
    fn torus(&self) -> bool {
        false
    }

    /// The molecule behind torsion coordinates, for drawing and for structure files.
    fn molecule(&self) -> Option<&dyn Molecule> {
        None
    }

    /// Number of coordinates of one configuration.
    fn dim(&self) -> usize {
        self.layout().dim()
    }

    /// Batched energies and gradients of `x` (rows × dim, row-major f32) into caller-owned
    /// buffers `e` (rows) and `g` (rows × dim).
    fn batch_energy_grad(&self, x: &[f32], e: &mut [f32], g: &mut [f32]) {
        let dim = self.dim();
        assert_eq!(
            x.len(),
            e.len() * dim,
            "x has {} values, expected {} rows × {dim}",
            x.len(),
            e.len()
        );
        assert_eq!(
            g.len(),
            x.len(),
            "gradient buffer has {} values, expected {}",
            g.len(),
            x.len()
        );
        x.par_chunks(dim)
            .zip(e.par_iter_mut())
            .zip(g.par_chunks_mut(dim))
            .for_each_init(
                || (vec![0.0f64; dim], vec![0.0f64; dim]),
                |(xs, gs), ((xr, er), gr)| {
                    for (a, &b) in xs.iter_mut().zip(xr) {
                        *a = b as f64;
                    }
                    *er = self.energy_grad(xs, gs) as f32;
                    for (a, &b) in gr.iter_mut().zip(gs.iter()) {
                        *a = b as f32;
                    }
                },
            );
    }

    /// Batched energies only (rows of `x`), in f64.
    fn batch_energy(&self, x: &[f32]) -> Vec<f64> {
        let dim = self.dim();
        x.par_chunks(dim)
            .map_init(
                || (vec![0.0f64; dim], vec![0.0f64; dim]),
                |(xs, gs), xr| {
                    for (a, &b) in xs.iter_mut().zip(xr) {
                        *a = b as f64;
                    }
                    self.energy_grad(xs, gs)
                },
            )
            .collect()
    }
}

/// `n` exact draws of `energy` from the generator seeded with `seed`, as an f32 matrix (the form
/// reference files hold); `None` where the system has no exact draws.
pub fn exact_draws(energy: &dyn Energy, n: usize, seed: u64) -> Option<crate::types::Matrix> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let x = energy.exact_sample(n, &mut rng)?;
    Some(crate::types::Matrix::new(
        n,
        energy.dim(),
        x.into_iter().map(|v| v as f32).collect(),
    ))
}

/// Puts configurations (rows of `x`) in the form samples are stored in: centre of mass removed
/// for particle systems, angles wrapped into (−π, π] for torsion systems.
pub fn canonicalise<T>(x: &mut [T], energy: &dyn Energy)
where
    T: Copy + Into<f64> + FromF64,
{
    remove_com(x, energy.layout());
    if energy.torus() {
        for v in x.iter_mut() {
            *v = T::from_f64(crate::types::wrap_angle((*v).into()));
        }
    }
}

/// Σₖ ∂²E/∂θₖ² by central differences of the analytic gradient (h = 1e-5 rad: truncation
/// O(h²) ≈ 1e-10, rounding O(ε|∇E|/h) ≈ 1e-10 relative; a handful of torsions make it cheap).
pub(crate) fn laplacian_by_differences(e: &dyn Energy, theta: &[f64]) -> f64 {
    let h = 1e-5;
    let n = theta.len();
    let (mut gp, mut gm) = (vec![0.0; n], vec![0.0; n]);
    let mut sum = 0.0;
    for k in 0..n {
        let (mut tp, mut tm) = (theta.to_vec(), theta.to_vec());
        tp[k] += h;
        tm[k] -= h;
        e.energy_grad(&tp, &mut gp);
        e.energy_grad(&tm, &mut gm);
        sum += (gp[k] - gm[k]) / (2.0 * h);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    fn systems() -> Vec<(Box<dyn Energy>, f64)> {
        // The second number is the scale of random test configurations: near typical samples,
        // so that finite differences probe the region that matters.
        vec![
            (Box::new(Gmm40::new()), 20.0),
            (Box::new(DoubleWell2d::default()), 1.0),
            (Box::new(MuellerBrown { temperature: 20.0 }), 0.5),
            (Box::new(DoubleWell::dw4()), 2.0),
            (Box::new(LennardJones::new(13)), 0.9),
            (Box::new(LennardJones::new(55)), 1.6),
        ]
    }

    fn random_config(e: &dyn Energy, scale: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let layout = e.layout();
        if layout.com_free {
            // Jittered points on a grid keep LJ pairs from overlapping, where E blows up and
            // finite differences say nothing.
            let n = layout.particles;
            let side = (n as f64).powf(1.0 / layout.spatial_dim as f64).ceil() as usize;
            let spacing = scale * 1.1;
            let mut x = Vec::with_capacity(layout.dim());
            for i in 0..n {
                let mut idx = i;
                for _ in 0..layout.spatial_dim {
                    let c = (idx % side) as f64 * spacing;
                    idx /= side;
                    let jitter: f64 = rng.sample(StandardNormal);
                    x.push(c + 0.1 * scale * jitter);
                }
            }
            x
        } else {
            (0..layout.dim())
                .map(|_| scale * rng.sample::<f64, _>(StandardNormal))
                .collect()
        }
    }

    /// Central differences in f64 with h = 1e-5 have truncation error O(h²·E''') and rounding
    /// error O(ε·|E|/h) ≈ 1e-11·|E|/1e-5; a relative tolerance of 1e-5 on the gradient norm
    /// leaves room for both.
    #[test]
    fn gradients_match_central_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (sys, scale) in systems() {
            for _ in 0..3 {
                let x = random_config(sys.as_ref(), scale, &mut rng);
                let mut g = vec![0.0; x.len()];
                sys.energy_grad(&x, &mut g);
                let h = 1e-5;
                let mut fd = vec![0.0; x.len()];
                for k in 0..x.len() {
                    let mut xp = x.clone();
                    let mut xm = x.clone();
                    xp[k] += h;
                    xm[k] -= h;
                    fd[k] = (sys.energy(&xp) - sys.energy(&xm)) / (2.0 * h);
                }
                let err: f64 = g
                    .iter()
                    .zip(&fd)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let norm: f64 = fd.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0);
                assert!(
                    err / norm < 1e-5,
                    "{}: |grad − fd| / |fd| = {:e}",
                    sys.name(),
                    err / norm
                );
            }
        }
    }

    /// The Laplacian against second central differences of E; h = 1e-4 gives O(h²) truncation and
    /// O(ε|E|/h²) ≈ 1e-8·|E| rounding per coordinate, so 1e-4 relative to Σ|∂²E| holds.
    #[test]
    fn laplacians_match_second_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for (sys, scale) in systems() {
            let x = random_config(sys.as_ref(), scale, &mut rng);
            let e0 = sys.energy(&x);
            let h = 1e-4;
            let mut lap = 0.0;
            let mut abs_sum = 0.0;
            for k in 0..x.len() {
                let mut xp = x.clone();
                let mut xm = x.clone();
                xp[k] += h;
                xm[k] -= h;
                let d2 = (sys.energy(&xp) - 2.0 * e0 + sys.energy(&xm)) / (h * h);
                lap += d2;
                abs_sum += d2.abs();
            }
            let got = sys.laplacian(&x);
            assert!(
                (got - lap).abs() <= 1e-4 * abs_sum.max(1.0),
                "{}: laplacian {got} vs finite differences {lap}",
                sys.name()
            );
        }
    }

    fn rotate(x: &[f64], d: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
        // A random orthogonal matrix from QR of a Gaussian matrix.
        let m = nalgebra::DMatrix::<f64>::from_fn(d, d, |_, _| rng.sample(StandardNormal));
        let q = m.qr().q();
        let mut out = x.to_vec();
        for (row_in, row_out) in x.chunks(d).zip(out.chunks_mut(d)) {
            for a in 0..d {
                row_out[a] = (0..d).map(|b| q[(a, b)] * row_in[b]).sum();
            }
        }
        out
    }

    /// Pair energies are invariant to rotation, translation and relabelling of particles; f64
    /// round-off on sums of ~1500 terms of size ≤ 1e2 stays below 1e-9 relative.
    #[test]
    fn particle_energies_are_invariant() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for (sys, scale) in systems() {
            let layout = sys.layout();
            if !layout.com_free {
                continue;
            }
            let d = layout.spatial_dim;
            let x = random_config(sys.as_ref(), scale, &mut rng);
            let e0 = sys.energy(&x);
            let tol = 1e-9 * e0.abs().max(1.0);

            let rotated = rotate(&x, d, &mut rng);
            assert!(
                (sys.energy(&rotated) - e0).abs() < tol,
                "{}: rotation",
                sys.name()
            );

            let shift: Vec<f64> = (0..d).map(|_| rng.random_range(-5.0..5.0)).collect();
            let shifted: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(k, v)| v + shift[k % d])
                .collect();
            assert!(
                (sys.energy(&shifted) - e0).abs() < tol,
                "{}: translation",
                sys.name()
            );

            let mut perm: Vec<usize> = (0..layout.particles).collect();
            perm.reverse();
            perm.swap(0, 1);
            let permuted: Vec<f64> = perm
                .iter()
                .flat_map(|&i| x[i * d..(i + 1) * d].to_vec())
                .collect();
            assert!(
                (sys.energy(&permuted) - e0).abs() < tol,
                "{}: permutation",
                sys.name()
            );
        }
    }

    #[test]
    fn batched_f32_matches_single_f64() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        for (sys, scale) in systems() {
            let rows: Vec<Vec<f64>> = (0..5)
                .map(|_| random_config(sys.as_ref(), scale, &mut rng))
                .collect();
            let x: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
            let mut e = vec![0.0f32; 5];
            let mut g = vec![0.0f32; x.len()];
            sys.batch_energy_grad(&x, &mut e, &mut g);
            for (i, row) in rows.iter().enumerate() {
                let row32: Vec<f64> = row.iter().map(|&v| v as f32 as f64).collect();
                let want = sys.energy(&row32);
                // f32 output rounding: 1e-6 relative.
                assert!(
                    (e[i] as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{}",
                    sys.name()
                );
            }
        }
    }

    #[test]
    fn gmm_mode_coverage_counts_modes() {
        let means = Gmm40::means();
        let x: Vec<f32> = means[..5]
            .iter()
            .flat_map(|m| [m[0] as f32 + 1.0, m[1] as f32])
            .collect();
        assert_eq!(Gmm40::modes_covered(&x, 3.0), 5);
        assert_eq!(Gmm40::modes_covered(&x, 0.5), 0);
    }

    #[test]
    fn remove_com_centres_rows() {
        let layout = Layout {
            particles: 3,
            spatial_dim: 2,
            com_free: true,
        };
        let mut x = vec![
            1.0f32, 2.0, 3.0, 4.0, 5.0, 9.0, 0.0, 0.0, 0.0, 0.0, 3.0, 3.0,
        ];
        remove_com(&mut x, layout);
        for row in x.chunks(6) {
            let mx: f32 = row.iter().step_by(2).sum();
            let my: f32 = row.iter().skip(1).step_by(2).sum();
            assert!(mx.abs() < 1e-6 && my.abs() < 1e-6);
        }
        assert_eq!(&x[0..2], &[-2.0, -3.0]);
    }
}
