//! DW-4: particles in 2-D bound pairwise by a double-well in their distance.

use super::pair::{Radial, pair_energy_grad, pair_laplacian};
use super::{Energy, Layout};

/// E = Σ_{i<j} [ a (r − d₀)⁴ + b (r − d₀)² ], with a = 0.9, b = −4, d₀ = 4 for DW-4
/// (the constants the reference data of Klein et al. 2023 was made with; science.md §4).
#[derive(Debug, Clone)]
pub struct DoubleWell {
    particles: usize,
    spatial_dim: usize,
    well: Quartic,
}

#[derive(Debug, Clone, Copy)]
struct Quartic {
    a: f64,
    b: f64,
    d0: f64,
}

impl Radial for Quartic {
    fn phi(&self, r: f64) -> (f64, f64, f64) {
        let u = r - self.d0;
        let u2 = u * u;
        (
            self.a * u2 * u2 + self.b * u2,
            4.0 * self.a * u2 * u + 2.0 * self.b * u,
            12.0 * self.a * u2 + 2.0 * self.b,
        )
    }
}

/// ε under the square root of rᵢⱼ, as in the reference code (keeps ∇E finite at r = 0).
const EPS: f64 = 1e-8;

impl DoubleWell {
    /// The DW-4 benchmark: 4 particles in 2-D.
    pub fn dw4() -> Self {
        Self {
            particles: 4,
            spatial_dim: 2,
            well: Quartic {
                a: 0.9,
                b: -4.0,
                d0: 4.0,
            },
        }
    }
}

impl Energy for DoubleWell {
    fn name(&self) -> String {
        format!("DW-{}", self.particles)
    }
    fn layout(&self) -> Layout {
        Layout {
            particles: self.particles,
            spatial_dim: self.spatial_dim,
            com_free: true,
        }
    }
    fn energy_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        grad.fill(0.0);
        pair_energy_grad(&self.well, x, self.spatial_dim, EPS, 1.0, grad)
    }
    fn pair_spacing(&self) -> f64 {
        self.well.d0
    }
    fn laplacian(&self, x: &[f64]) -> f64 {
        pair_laplacian(&self.well, x, self.spatial_dim, EPS, 1.0)
    }
}
