//! The exact reference for one or two free torsions (molecules.md §3): the density on a grid of
//! cells over the torus, by the midpoint rule, and i.i.d. samples drawn from it (a cell in
//! proportion to its weight, then a uniform point inside it).

use std::f64::consts::{PI, TAU};

use rand::Rng;
use rayon::prelude::*;

use crate::energy::Energy;
use crate::error::{Error, Result};

/// The normalised Boltzmann weights of grid cells over (−π, π]ⁿ, n ≤ 2.
#[derive(Debug, Clone)]
pub struct TorsionGrid {
    /// Number of torsions (1 or 2).
    pub dims: usize,
    /// Cells per torsion.
    pub bins: usize,
    /// Probability of each cell (row-major: the last torsion varies fastest), summing to 1.
    pub weights: Vec<f64>,
    /// Reduced energy E/kT at each cell's centre.
    pub energies: Vec<f64>,
    /// Cumulative weights, for sampling.
    cumulative: Vec<f64>,
}

impl TorsionGrid {
    /// Evaluates `energy` (reduced, on one or two torsions) at the centres of `bins` cells per torsion.
    pub fn compute(energy: &dyn Energy, bins: usize) -> Result<TorsionGrid> {
        let dims = energy.dim();
        if !energy.torus() || !(1..=2).contains(&dims) {
            return Err(Error::Invalid(format!(
                "the exact grid reference needs a molecule with one or two free torsions ({} has {dims} coordinates{})",
                energy.name(),
                if energy.torus() { "" } else { ", not torsions" }
            )));
        }
        if bins < 4 {
            return Err(Error::Invalid(format!(
                "the grid needs at least 4 cells per torsion (got {bins})"
            )));
        }
        let cells = bins.pow(dims as u32);
        let energies: Vec<f64> = (0..cells)
            .into_par_iter()
            .map_init(
                || vec![0.0; dims],
                |theta, c| {
                    Self::centre_into(c, dims, bins, theta);
                    energy.energy(theta)
                },
            )
            .collect();
        let e_min = energies.iter().copied().fold(f64::INFINITY, f64::min);
        if !e_min.is_finite() {
            return Err(Error::Invalid(format!(
                "{}: no grid cell has a finite energy",
                energy.name()
            )));
        }
        let mut weights: Vec<f64> = energies
            .iter()
            .map(|&e| {
                if e.is_finite() {
                    (e_min - e).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        for w in &mut weights {
            *w /= total;
        }
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();
        Ok(TorsionGrid {
            dims,
            bins,
            weights,
            energies,
            cumulative,
        })
    }

    /// Width of a cell in radians.
    pub fn cell_width(&self) -> f64 {
        TAU / self.bins as f64
    }

    /// The centre of cell `c` (row-major index), radians.
    pub fn centre(&self, c: usize) -> Vec<f64> {
        let mut t = vec![0.0; self.dims];
        Self::centre_into(c, self.dims, self.bins, &mut t);
        t
    }

    fn centre_into(c: usize, dims: usize, bins: usize, out: &mut [f64]) {
        let w = TAU / bins as f64;
        let mut idx = c;
        for d in (0..dims).rev() {
            out[d] = -PI + (idx % bins) as f64 * w + 0.5 * w;
            idx /= bins;
        }
    }

    /// Probability of the region whose cell centres satisfy `inside` (angles in radians).
    pub fn probability(&self, inside: impl Fn(&[f64]) -> bool) -> f64 {
        (0..self.weights.len())
            .filter(|&c| inside(&self.centre(c)))
            .map(|c| self.weights[c])
            .sum()
    }

    /// log Z = log ∫ exp(−E/kT) dθ over the torus (radians), by the midpoint rule.
    pub fn log_z(&self) -> f64 {
        let m = self
            .energies
            .iter()
            .copied()
            .filter(|e| e.is_finite())
            .fold(f64::INFINITY, f64::min);
        let sum: f64 = self
            .energies
            .iter()
            .filter(|e| e.is_finite())
            .map(|e| (m - e).exp())
            .sum();
        sum.ln() - m + self.dims as f64 * self.cell_width().ln()
    }

    /// ⟨E/kT⟩ under the grid density.
    pub fn mean_energy(&self) -> f64 {
        self.weights
            .iter()
            .zip(&self.energies)
            .map(|(w, e)| if *w > 0.0 { w * e } else { 0.0 })
            .sum()
    }

    /// `n` i.i.d. draws (n × dims, radians in (−π, π]): a cell by weight, a uniform point in it.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Vec<f64> {
        let w = self.cell_width();
        let mut out = Vec::with_capacity(n * self.dims);
        for _ in 0..n {
            let u: f64 = rng.random::<f64>() * self.cumulative.last().copied().unwrap_or(1.0);
            let c = self
                .cumulative
                .partition_point(|&v| v < u)
                .min(self.weights.len() - 1);
            for t in self.centre(c) {
                out.push(t + w * (rng.random::<f64>() - 0.5));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::molecule::Butane;
    use rand::SeedableRng;

    /// A product of two von Mises densities, whose marginal probabilities are known.
    struct VonMises2;
    impl Energy for VonMises2 {
        fn name(&self) -> String {
            "von Mises".into()
        }
        fn layout(&self) -> crate::energy::Layout {
            crate::energy::Layout {
                particles: 1,
                spatial_dim: 2,
                com_free: false,
            }
        }
        fn energy_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
            g[0] = 2.0 * (x[0] - 1.0).sin();
            g[1] = 0.5 * x[1].sin();
            -2.0 * (x[0] - 1.0).cos() - 0.5 * x[1].cos()
        }
        fn laplacian(&self, _: &[f64]) -> f64 {
            0.0
        }
        fn torus(&self) -> bool {
            true
        }
    }

    /// For a von Mises centred at 1 the half-circle (1, 1 + π), i.e. θ₁ > 1 or θ₁ < 1 − π, holds
    /// ½; so does θ₂ > 0 for the one centred at 0. With 1° cells whose edges fall on 0 but not on
    /// 1, the first is off by at most one column of cells: ≈ 2e-3.
    #[test]
    fn symmetric_probabilities_and_samples() {
        let g = TorsionGrid::compute(&VonMises2, 360).unwrap();
        assert!((g.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((g.probability(|t| t[1] > 0.0) - 0.5).abs() < 1e-12);
        assert!((g.probability(|t| t[0] > 1.0 || t[0] < 1.0 - PI) - 0.5).abs() < 3e-3);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let s = g.sample(20_000, &mut rng);
        let frac = s.chunks(2).filter(|t| t[1] > 0.0).count() as f64 / 20_000.0;
        // Binomial std √(¼/20000) = 0.0035: 4 std.
        assert!((frac - 0.5).abs() < 0.014, "{frac}");
        assert!(s.iter().all(|v| (-PI..=PI).contains(v)));
    }

    #[test]
    fn butane_trans_fraction_converges_with_the_grid() {
        let b = Butane::new(300.0);
        let trans = |g: &TorsionGrid| g.probability(|t| t[0].abs() > 120f64.to_radians());
        let coarse = trans(&TorsionGrid::compute(&b, 360).unwrap());
        let fine = trans(&TorsionGrid::compute(&b, 3600).unwrap());
        // Midpoint rule on a smooth periodic density: the two agree far below the 0.02 bar the
        // trained sampler is held to.
        assert!((coarse - fine).abs() < 1e-3, "{coarse} vs {fine}");
        assert!((0.5..0.9).contains(&fine), "trans fraction {fine}");
    }

    #[test]
    fn refuses_systems_that_are_not_one_or_two_torsions() {
        let e = TorsionGrid::compute(&crate::energy::DoubleWell::dw4(), 90)
            .unwrap_err()
            .to_string();
        assert!(e.contains("one or two free torsions"), "{e}");
    }
}
