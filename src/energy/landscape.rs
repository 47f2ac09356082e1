//! Two-dimensional teaching landscapes: a tilted double well and the Müller–Brown potential.
//! One point in the plane, so the density can be drawn as a map under the samples, and exact
//! samples come from quadrature on a fine grid over a box that holds all but a negligible part
//! of the mass.

use rand::Rng;

use super::{Energy, Layout};

/// A plane landscape: its energy and gradient at one point, and the box for maps and exact draws.
pub trait Landscape: Send + Sync {
    fn value_grad(&self, x: f64, y: f64) -> (f64, [f64; 2]);
    /// (x range, y range) holding the density's mass.
    fn bounds(&self) -> ([f64; 2], [f64; 2]);
}

/// E(x, y) = h (x² − 1)² + t x + y²: two wells at x ≈ ±1 separated by a barrier of about h,
/// the tilt t making the left one deeper (weights about e^{2t} : 1), so that a sampler has to get
/// both the wells and their weights right.
#[derive(Debug, Clone, PartialEq)]
pub struct DoubleWell2d {
    pub barrier: f64,
    pub tilt: f64,
}

impl Default for DoubleWell2d {
    fn default() -> Self {
        Self {
            barrier: 3.0,
            tilt: 0.5,
        }
    }
}

impl Landscape for DoubleWell2d {
    fn value_grad(&self, x: f64, y: f64) -> (f64, [f64; 2]) {
        let q = x * x - 1.0;
        let e = self.barrier * q * q + self.tilt * x + y * y;
        (e, [4.0 * self.barrier * q * x + self.tilt, 2.0 * y])
    }
    fn bounds(&self) -> ([f64; 2], [f64; 2]) {
        ([-2.5, 2.5], [-3.0, 3.0])
    }
}

/// The Müller–Brown potential (Müller & Brown 1979), divided by `temperature` (in the
/// potential's own units): three minima, at about (−0.56, 1.44), (0.62, 0.03) and (−0.05, 0.47),
/// with energies −146.7, −108.2 and −80.8, joined by curved paths — the classic surface for
/// showing rare transitions.
#[derive(Debug, Clone, PartialEq)]
pub struct MuellerBrown {
    pub temperature: f64,
}

const MB_A: [f64; 4] = [-200.0, -100.0, -170.0, 15.0];
const MB_LA: [f64; 4] = [-1.0, -1.0, -6.5, 0.7];
const MB_B: [f64; 4] = [0.0, 0.0, 11.0, 0.6];
const MB_C: [f64; 4] = [-10.0, -10.0, -6.5, 0.7];
const MB_X0: [f64; 4] = [1.0, 0.0, -0.5, -1.0];
const MB_Y0: [f64; 4] = [0.0, 0.5, 1.5, 1.0];

impl MuellerBrown {
    /// The potential itself (not divided by the temperature) and its gradient.
    pub fn potential(x: f64, y: f64) -> (f64, [f64; 2]) {
        let (mut v, mut g) = (0.0, [0.0; 2]);
        for k in 0..4 {
            let (dx, dy) = (x - MB_X0[k], y - MB_Y0[k]);
            let t = MB_A[k] * (MB_LA[k] * dx * dx + MB_B[k] * dx * dy + MB_C[k] * dy * dy).exp();
            v += t;
            g[0] += t * (2.0 * MB_LA[k] * dx + MB_B[k] * dy);
            g[1] += t * (MB_B[k] * dx + 2.0 * MB_C[k] * dy);
        }
        (v, g)
    }
}

impl Landscape for MuellerBrown {
    fn value_grad(&self, x: f64, y: f64) -> (f64, [f64; 2]) {
        let (v, g) = Self::potential(x, y);
        (
            v / self.temperature,
            [g[0] / self.temperature, g[1] / self.temperature],
        )
    }
    fn bounds(&self) -> ([f64; 2], [f64; 2]) {
        ([-1.8, 1.3], [-0.6, 2.3])
    }
}

/// Cells of the quadrature grid for exact draws: 600 per side in the plane, as many in all on a line.
const GRID: usize = 600;

/// Exact draws from exp(−E) restricted to the landscape's box: a cell by its probability
/// (inverse CDF over the grid's cells), then a uniform point inside it.
pub fn exact_draws(l: &dyn Landscape, n: usize, rng: &mut dyn rand::RngCore) -> Vec<f64> {
    let (bx, by) = l.bounds();
    QuadratureGrid::new(&[bx, by], &|p: &[f64]| l.value_grad(p[0], p[1]).0).draw(n, rng)
}

/// exp(−E) tabulated at the centres of a grid's cells over a box of one or two variables: the
/// exact reference of low-dimensional systems (draws, probabilities of regions, log Z).
pub struct QuadratureGrid {
    pub bounds: Vec<[f64; 2]>,
    /// Cells per side.
    pub cells: usize,
    /// Cumulative unnormalised weights exp(E_min − E) in cell order (first variable fastest);
    /// cells where E is not finite weigh nothing.
    cdf: Vec<f64>,
    /// The smallest finite E on the grid.
    pub e_min: f64,
}

impl QuadratureGrid {
    /// Tabulates `energy` over `bounds` (one or two ranges).
    pub fn new(bounds: &[[f64; 2]], energy: &(dyn Fn(&[f64]) -> f64 + Sync)) -> Self {
        use rayon::prelude::*;
        assert!((1..=2).contains(&bounds.len()), "a grid over 1 or 2 variables");
        let cells = if bounds.len() == 1 { GRID * GRID } else { GRID };
        let total = cells.pow(bounds.len() as u32);
        let grid = Self { bounds: bounds.to_vec(), cells, cdf: Vec::new(), e_min: 0.0 };
        let e: Vec<f64> = (0..total)
            .into_par_iter()
            .map_init(Vec::new, |p, c| {
                grid.centre(c, p);
                energy(p)
            })
            .collect();
        let e_min = e.iter().copied().filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min);
        let mut cdf = Vec::with_capacity(total);
        let mut sum = 0.0;
        for v in &e {
            if v.is_finite() {
                sum += (e_min - v).exp();
            }
            cdf.push(sum);
        }
        Self { cdf, e_min, ..grid }
    }

    fn width(&self, k: usize) -> f64 {
        (self.bounds[k][1] - self.bounds[k][0]) / self.cells as f64
    }

    /// The centre of cell `c` into `p`.
    fn centre(&self, c: usize, p: &mut Vec<f64>) {
        p.clear();
        let mut idx = c;
        for k in 0..self.bounds.len() {
            p.push(self.bounds[k][0] + ((idx % self.cells) as f64 + 0.5) * self.width(k));
            idx /= self.cells;
        }
    }

    /// log Z = log ∫ exp(−E) over the box (quadrature by cell centres).
    pub fn log_z(&self) -> f64 {
        let volume: f64 = (0..self.bounds.len()).map(|k| self.width(k)).product();
        self.cdf.last().copied().unwrap_or(0.0).ln() + volume.ln() - self.e_min
    }

    /// The probability of the cells whose centres satisfy `inside`.
    pub fn probability(&self, inside: impl Fn(&[f64]) -> bool) -> f64 {
        let mut p = Vec::new();
        let (mut hit, mut prev) = (0.0, 0.0);
        for (c, &v) in self.cdf.iter().enumerate() {
            self.centre(c, &mut p);
            if inside(&p) {
                hit += v - prev;
            }
            prev = v;
        }
        hit / prev.max(f64::MIN_POSITIVE)
    }

    /// `n` i.i.d. draws (rows of the box's dimension): a cell by its probability, then a uniform
    /// point inside it. Empty when no cell has a finite energy.
    pub fn draw(&self, n: usize, rng: &mut dyn rand::RngCore) -> Vec<f64> {
        let total = self.cdf.last().copied().unwrap_or(0.0);
        if !(total > 0.0) {
            return Vec::new();
        }
        let d = self.bounds.len();
        let mut out = Vec::with_capacity(d * n);
        for _ in 0..n {
            let u = rng.random::<f64>() * total;
            let mut c = self.cdf.partition_point(|&v| v < u).min(self.cdf.len() - 1);
            for k in 0..d {
                out.push(self.bounds[k][0] + ((c % self.cells) as f64 + rng.random::<f64>()) * self.width(k));
                c /= self.cells;
            }
        }
        out
    }
}

macro_rules! plane_energy {
    ($t:ty, $name:expr) => {
        impl Energy for $t {
            fn name(&self) -> String {
                $name.into()
            }
            fn layout(&self) -> Layout {
                Layout {
                    particles: 1,
                    spatial_dim: 2,
                    com_free: false,
                }
            }
            fn energy_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
                let (e, g) = self.value_grad(x[0], x[1]);
                grad.copy_from_slice(&g);
                e
            }
            fn laplacian(&self, x: &[f64]) -> f64 {
                super::laplacian_by_differences(self, x)
            }
            fn exact_sample(&self, n: usize, rng: &mut dyn rand::RngCore) -> Option<Vec<f64>> {
                Some(exact_draws(self, n, rng))
            }
            fn pair_spacing(&self) -> f64 {
                let (bx, by) = self.bounds();
                (bx[1] - bx[0]).max(by[1] - by[0]) / 4.0
            }
            fn plane_box(&self) -> Option<([f64; 2], [f64; 2])> {
                Some(self.bounds())
            }
        }
    };
}

plane_energy!(DoubleWell2d, "2-D double well");
plane_energy!(MuellerBrown, "Müller–Brown");

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mueller_brown_has_its_published_minima() {
        // Müller & Brown 1979 / the usual tables: minima to the digits they print.
        for ((x, y), v) in [
            ((-0.558, 1.442), -146.70),
            ((0.623, 0.028), -108.17),
            ((-0.050, 0.467), -80.77),
        ] {
            let (e, g) = MuellerBrown::potential(x, y);
            assert!((e - v).abs() < 0.05, "V({x}, {y}) = {e}, published {v}");
            // Three printed digits of the position leave a gradient of a few units.
            assert!(g[0].hypot(g[1]) < 5.0, "∇V at ({x}, {y}) = {g:?}");
        }
    }

    #[test]
    fn exact_draws_follow_the_double_wells_weights() {
        // Weights of the wells by 1-D quadrature in x (y separates): left/right by sign of x.
        let w = DoubleWell2d::default();
        let (mut left, mut all) = (0.0, 0.0);
        for k in 0..20_000 {
            let x = -2.5 + (k as f64 + 0.5) * 5.0 / 20_000.0;
            let p = (-w.value_grad(x, 0.0).0).exp();
            all += p;
            if x < 0.0 {
                left += p;
            }
        }
        let exact = left / all;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let d = exact_draws(&w, 20_000, &mut rng);
        let frac = d.chunks(2).filter(|p| p[0] < 0.0).count() as f64 / 20_000.0;
        // Binomial standard error at n = 20 000 is 0.0033; 0.015 is about 4.5 of them.
        assert!(
            (frac - exact).abs() < 0.015,
            "left well: draws {frac}, quadrature {exact}"
        );
        assert!(
            exact > 0.6 && exact < 0.9,
            "the tilt favours the left well: {exact}"
        );
    }
}
