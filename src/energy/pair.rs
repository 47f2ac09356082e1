//! Shared machinery for pair potentials φ(r) with r = sqrt(‖xᵢ − xⱼ‖² + ε).
//!
//! Writing φ as a function of s = ‖xᵢ − xⱼ‖² makes the gradient and the Laplacian exact and
//! uniform: with F(s) = φ(sqrt(s + ε)), ∇ₓᵢF = 2F'(s)(xᵢ − xⱼ) and
//! Δₓᵢ F = 2d·F'(s) + 4s·F''(s), the same for xⱼ.

/// A radial pair potential: value and first two derivatives in r.
pub(crate) trait Radial {
    /// (φ(r), φ'(r), φ''(r)).
    fn phi(&self, r: f64) -> (f64, f64, f64);
}

/// Σ over unordered pairs i<j of `weight`·φ(rᵢⱼ), with its gradient added into `grad`.
pub(crate) fn pair_energy_grad<P: Radial>(
    pot: &P,
    x: &[f64],
    d: usize,
    eps: f64,
    weight: f64,
    grad: &mut [f64],
) -> f64 {
    let n = x.len() / d;
    let mut e = 0.0;
    let mut diff = [0.0f64; 3];
    for i in 0..n {
        for j in (i + 1)..n {
            let mut s = 0.0;
            for k in 0..d {
                let v = x[i * d + k] - x[j * d + k];
                diff[k] = v;
                s += v * v;
            }
            let r = (s + eps).sqrt();
            let (f, df, _) = pot.phi(r);
            e += weight * f;
            // dF/ds = φ'(r) / (2r); ∇ₓᵢ = 2 dF/ds (xᵢ − xⱼ).
            let c = weight * df / r;
            for k in 0..d {
                grad[i * d + k] += c * diff[k];
                grad[j * d + k] -= c * diff[k];
            }
        }
    }
    e
}

/// Laplacian over all coordinates of Σ_{i<j} `weight`·φ(rᵢⱼ).
pub(crate) fn pair_laplacian<P: Radial>(
    pot: &P,
    x: &[f64],
    d: usize,
    eps: f64,
    weight: f64,
) -> f64 {
    let n = x.len() / d;
    let mut lap = 0.0;
    for i in 0..n {
        for j in (i + 1)..n {
            let s: f64 = (0..d).map(|k| (x[i * d + k] - x[j * d + k]).powi(2)).sum();
            let r = (s + eps).sqrt();
            let (_, df, d2f) = pot.phi(r);
            let fs = df / (2.0 * r);
            let fss = (d2f - df / r) / (4.0 * r * r);
            // Both particles of the pair contribute the same amount.
            lap += 2.0 * weight * (2.0 * d as f64 * fs + 4.0 * s * fss);
        }
    }
    lap
}
