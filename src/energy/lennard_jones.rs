//! LJ-n: Lennard-Jones clusters in 3-D held together by a weak harmonic trap.

use super::pair::{Radial, pair_energy_grad, pair_laplacian};
use super::{Energy, Layout};

/// E = Σ_{i≠j} [ r⁻¹² − 2 r⁻⁶ ] + ½ Σᵢ ‖xᵢ − x̄‖², r = sqrt(‖xᵢ − xⱼ‖² + 1e-6).
///
/// The pair sum runs over **ordered** pairs, twice the usual Σ_{i<j}: the reference data of
/// Klein et al. 2023 is at T = 1 only with that factor (its configurational temperature is
/// ≈ 1.0 with it and ≈ 0.5 without; science.md §4).
#[derive(Debug, Clone)]
pub struct LennardJones {
    particles: usize,
}

#[derive(Debug, Clone, Copy)]
struct Lj;

impl Radial for Lj {
    fn phi(&self, r: f64) -> (f64, f64, f64) {
        let inv = 1.0 / r;
        let i2 = inv * inv;
        let i6 = i2 * i2 * i2;
        let i12 = i6 * i6;
        (
            i12 - 2.0 * i6,
            (-12.0 * i12 + 12.0 * i6) * inv,
            (156.0 * i12 - 84.0 * i6) * i2,
        )
    }
}

const EPS: f64 = 1e-6;
/// Ordered pairs count each unordered pair twice.
const ORDERED_PAIRS: f64 = 2.0;
const DIM: usize = 3;

impl LennardJones {
    /// An LJ cluster of `particles` atoms (13 and 55 are the benchmarks).
    pub fn new(particles: usize) -> Self {
        Self { particles }
    }
}

impl Energy for LennardJones {
    fn name(&self) -> String {
        format!("LJ-{}", self.particles)
    }
    fn layout(&self) -> Layout {
        Layout {
            particles: self.particles,
            spatial_dim: DIM,
            com_free: true,
        }
    }
    fn energy_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        grad.fill(0.0);
        let mut e = pair_energy_grad(&Lj, x, DIM, EPS, ORDERED_PAIRS, grad);
        let n = self.particles as f64;
        let mut mean = [0.0f64; DIM];
        for p in x.chunks(DIM) {
            for k in 0..DIM {
                mean[k] += p[k] / n;
            }
        }
        // ∇ of ½Σ‖xᵢ − x̄‖² is xᵢ − x̄: the x̄ dependence cancels because Σᵢ(xᵢ − x̄) = 0.
        for (p, g) in x.chunks(DIM).zip(grad.chunks_mut(DIM)) {
            for k in 0..DIM {
                let c = p[k] - mean[k];
                e += 0.5 * c * c;
                g[k] += c;
            }
        }
        e
    }
    fn pair_spacing(&self) -> f64 {
        // Just past the pair minimum at r = 1, so starting forces are small.
        1.1
    }
    fn laplacian(&self, x: &[f64]) -> f64 {
        // The trap's Hessian is (I − 11ᵀ/n) ⊗ I₃, whose trace is 3(n − 1).
        pair_laplacian(&Lj, x, DIM, EPS, ORDERED_PAIRS) + (DIM * (self.particles - 1)) as f64
    }
}
