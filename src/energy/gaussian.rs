//! An isotropic Gaussian N(μ, s² I): the test system where the optimal control is known in
//! closed form (used to check the trainer end to end).

use super::{Energy, Layout};

/// E(x) = ‖x − μ‖² / (2 s²).
#[derive(Debug, Clone)]
pub struct Gaussian {
    pub mean: Vec<f64>,
    pub std: f64,
}

impl Energy for Gaussian {
    fn name(&self) -> String {
        format!("Gaussian-{}d", self.mean.len())
    }
    fn layout(&self) -> Layout {
        Layout {
            particles: 1,
            spatial_dim: self.mean.len(),
            com_free: false,
        }
    }
    fn energy_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let s2 = self.std * self.std;
        let mut e = 0.0;
        for ((g, &xi), &m) in grad.iter_mut().zip(x).zip(&self.mean) {
            *g = (xi - m) / s2;
            e += (xi - m).powi(2) / (2.0 * s2);
        }
        e
    }
    fn laplacian(&self, _x: &[f64]) -> f64 {
        self.mean.len() as f64 / (self.std * self.std)
    }
    fn pair_spacing(&self) -> f64 {
        self.std
    }
    /// In the plane: the mean ± 4 standard deviations.
    fn plane_box(&self) -> Option<([f64; 2], [f64; 2])> {
        let [mx, my] = self.mean[..] else { return None };
        let r = 4.0 * self.std;
        Some(([mx - r, mx + r], [my - r, my + r]))
    }
}
