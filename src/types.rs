//! The core's plain data types, in a room of their own so that every module can use them
//! without importing another's: sample matrices, particle layouts, the centre-of-mass projection
//! and the torus wrap of angles.

/// A row-major matrix of samples: `rows` configurations of `cols` coordinates each.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    /// A matrix over `data`, which must hold `rows × cols` values.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data has {} values, expected {rows} × {cols}",
            data.len()
        );
        Self { rows, cols, data }
    }
    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
    /// The first `n` rows (all when `n ≥ rows`).
    pub fn head(&self, n: usize) -> Matrix {
        let n = n.min(self.rows);
        Matrix::new(n, self.cols, self.data[..n * self.cols].to_vec())
    }
    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Matrix {
        let data = indices
            .iter()
            .flat_map(|&i| self.row(i).iter().copied())
            .collect();
        Matrix::new(indices.len(), self.cols, data)
    }
    /// Position (row, column) of the first NaN or infinite value, if any.
    pub fn first_non_finite(&self) -> Option<(usize, usize)> {
        self.data
            .iter()
            .position(|v| !v.is_finite())
            .map(|k| (k / self.cols, k % self.cols))
    }
}

/// How the flat coordinate vector of one configuration is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Number of particles (1 for a plain point in R^d such as GMM-40).
    pub particles: usize,
    /// Spatial dimension of each particle (2 or 3).
    pub spatial_dim: usize,
    /// Whether the density lives on the centre-of-mass-free subspace (particle systems).
    pub com_free: bool,
}

impl Layout {
    /// Total number of coordinates of one configuration.
    pub fn dim(&self) -> usize {
        self.particles * self.spatial_dim
    }
}

/// Subtracts each particle's mean position (the centre of mass) from every row of `x`, in place.
/// Rows are `layout.dim()` long; a no-op for systems that are not CoM-free.
pub fn remove_com<T>(x: &mut [T], layout: Layout)
where
    T: Copy + Into<f64> + FromF64,
{
    if !layout.com_free {
        return;
    }
    let (n, d) = (layout.particles, layout.spatial_dim);
    for row in x.chunks_mut(n * d) {
        for k in 0..d {
            let mean = (0..n).map(|i| row[i * d + k].into()).sum::<f64>() / n as f64;
            for i in 0..n {
                row[i * d + k] = T::from_f64(row[i * d + k].into() - mean);
            }
        }
    }
}

/// Conversion back from f64 for the generic helpers here.
pub trait FromF64 {
    fn from_f64(v: f64) -> Self;
}
impl FromF64 for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl FromF64 for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// Wraps an angle into (−π, π].
pub fn wrap_angle(a: f64) -> f64 {
    use std::f64::consts::{PI, TAU};
    let w = a - TAU * ((a + PI) / TAU).floor();
    if w <= -PI { w + TAU } else { w }
}
