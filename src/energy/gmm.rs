//! GMM-40: a 2-D mixture of 40 equal-weight isotropic Gaussians, E = −log p.

use rand::Rng;
use rand_distr::StandardNormal;

use super::{Energy, Layout};

/// Component means of the GMM-40 benchmark (science.md §4, from the public reference code).
const MEANS: [[f64; 2]; 40] = [
    [-0.2995, 21.4577],
    [-32.9218, -29.4376],
    [-15.4062, 10.7263],
    [-0.7925, 31.7156],
    [-3.5498, 10.5845],
    [-12.0885, -7.8626],
    [-38.2139, -26.4913],
    [-16.4889, 1.4817],
    [15.8134, 24.0009],
    [-27.1176, -17.4185],
    [14.5287, 33.2155],
    [-8.2320, 29.9325],
    [-6.4473, 4.2326],
    [36.2190, -37.1068],
    [-25.1815, -10.1266],
    [-15.5920, 34.5600],
    [-25.9272, -18.4133],
    [-27.9456, -37.4624],
    [-23.3496, 34.3839],
    [17.8487, 19.3869],
    [2.1037, -20.5073],
    [6.7674, -37.3478],
    [-28.9026, -20.6212],
    [25.2375, 23.4529],
    [-17.7398, -1.4433],
    [25.5824, 39.7653],
    [15.8753, 5.4037],
    [26.8195, -23.5521],
    [7.4538, -31.0122],
    [-27.7234, -20.6633],
    [18.0989, 16.0864],
    [-23.6941, 12.0843],
    [21.9589, -5.0487],
    [1.5273, 9.2682],
    [24.8151, 38.4078],
    [-30.8249, -14.6588],
    [15.7204, 33.1420],
    [34.8083, 35.2943],
    [7.9606, -34.7833],
    [3.6797, -25.0242],
];

/// softplus(1) = ln(1 + e), the components' standard deviation.
pub const GMM_STD: f64 = 1.313_261_687_518_222_8;

/// The GMM-40 target in its original coordinates (the reference code's x/50 rescaling is an
/// equivalent choice left to the sampler).
#[derive(Debug, Clone, Default)]
pub struct Gmm40;

impl Gmm40 {
    pub fn new() -> Self {
        Self
    }
    /// The 40 component means.
    pub fn means() -> &'static [[f64; 2]; 40] {
        &MEANS
    }

    /// How many of the 40 modes hold at least one of `x`'s points (rows of 2 coordinates)
    /// within `sigmas` standard deviations of their mean.
    pub fn modes_covered(x: &[f32], sigmas: f64) -> usize {
        let r2 = (sigmas * GMM_STD).powi(2);
        MEANS
            .iter()
            .filter(|m| {
                x.chunks(2)
                    .any(|p| (p[0] as f64 - m[0]).powi(2) + (p[1] as f64 - m[1]).powi(2) <= r2)
            })
            .count()
    }

    /// Log-responsibilities' ingredients: per-component −‖x − μ‖²/(2s²), and their log-sum-exp.
    fn log_terms(x: &[f64]) -> ([f64; 40], f64) {
        let inv2s2 = 0.5 / (GMM_STD * GMM_STD);
        let mut l = [0.0; 40];
        let mut max = f64::NEG_INFINITY;
        for (k, m) in MEANS.iter().enumerate() {
            let d2 = (x[0] - m[0]).powi(2) + (x[1] - m[1]).powi(2);
            l[k] = -d2 * inv2s2;
            max = max.max(l[k]);
        }
        let lse = max + l.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        (l, lse)
    }
}

impl Energy for Gmm40 {
    fn name(&self) -> String {
        "GMM-40".into()
    }
    fn modes_covered(&self, x: &[f32]) -> Option<usize> {
        Some(Gmm40::modes_covered(x, 3.0))
    }
    fn layout(&self) -> Layout {
        Layout {
            particles: 1,
            spatial_dim: 2,
            com_free: false,
        }
    }
    fn energy_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let (l, lse) = Self::log_terms(x);
        let s2 = GMM_STD * GMM_STD;
        grad.fill(0.0);
        for (k, m) in MEANS.iter().enumerate() {
            let w = (l[k] - lse).exp();
            grad[0] += w * (x[0] - m[0]) / s2;
            grad[1] += w * (x[1] - m[1]) / s2;
        }
        // −log p = −lse + log 40 + log(2π s²)
        -lse + (40.0f64).ln() + (2.0 * std::f64::consts::PI * s2).ln()
    }
    fn pair_spacing(&self) -> f64 {
        20.0
    }
    fn plane_box(&self) -> Option<([f64; 2], [f64; 2])> {
        Some(([-50.0, 50.0], [-50.0, 50.0]))
    }
    fn laplacian(&self, x: &[f64]) -> f64 {
        // ∇E = Σ wₖ (x − μₖ)/s²; ΔE = 2/s² − Var_w(x − μ)/s⁴ (trace of the responsibilities'
        // covariance), from differentiating the softmax weights.
        let (l, lse) = Self::log_terms(x);
        let s2 = GMM_STD * GMM_STD;
        let (mut m1, mut m2, mut sq) = (0.0, 0.0, 0.0);
        for (k, m) in MEANS.iter().enumerate() {
            let w = (l[k] - lse).exp();
            let (a, b) = (x[0] - m[0], x[1] - m[1]);
            m1 += w * a;
            m2 += w * b;
            sq += w * (a * a + b * b);
        }
        2.0 / s2 - (sq - m1 * m1 - m2 * m2) / (s2 * s2)
    }
    fn exact_sample(&self, n: usize, rng: &mut dyn rand::RngCore) -> Option<Vec<f64>> {
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let k = rng.random_range(0..MEANS.len());
            for c in 0..2 {
                let z: f64 = rng.sample(StandardNormal);
                out.push(MEANS[k][c] + GMM_STD * z);
            }
        }
        Some(out)
    }
}
