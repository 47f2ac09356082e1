//! Sample-quality metrics as the papers compute them (science.md §6): E-W2, x-W2, eq-W2,
//! interatomic-distance histograms with total variation, the torsion metrics, ESS,
//! configurational temperature; [`evaluate`] computes a system family's named set of them.

pub mod family;
pub mod torsions;

pub use family::{Family, Metric, MetricSet};

use nalgebra::SMatrix;
use rayon::prelude::*;

use crate::energy::{Energy, Layout};
use crate::error::{Error, Result};
use crate::types::Matrix;

/// Number of bins of the pooled interatomic-distance histograms.
pub const DIST_BINS: usize = 200;

/// Which metrics [`evaluate`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    All,
    /// Everything but eq-W2 (its n² alignments are the expensive part).
    SkipEq,
}

/// Computes the metrics of `samples`' family against `reference` (both `n × dim`, equal `n`):
/// the one place where metrics are computed, for the driver, `eval` and `compare` alike.
pub fn evaluate(
    energy: &dyn Energy,
    samples: &Matrix,
    reference: &Matrix,
    which: Which,
) -> Result<MetricSet> {
    use family::*;
    let layout = energy.layout();
    check_pair(samples, reference, layout)?;
    let fam = Family::of(energy);
    if matches!(fam, Family::Ramachandran | Family::OneTorsion) {
        return Ok(evaluate_torsions(
            energy,
            samples,
            reference,
            torsions::RAMA_BINS,
            samples.rows,
        )?
        .0);
    }
    let e_w2 = energy_w2(
        &energy.batch_energy(&samples.data),
        &energy.batch_energy(&reference.data),
    )?;
    Ok(match fam {
        Family::Particles => MetricSet::new(
            fam,
            &[
                (&ENERGY_W2, Some(e_w2)),
                (&X_W2, Some(x_w2(samples, reference, layout)?)),
                (
                    &EQ_W2,
                    if which == Which::All {
                        Some(eq_w2(samples, reference, layout)?)
                    } else {
                        None
                    },
                ),
                (&DIST_TV, Some(distance_tv(samples, reference, layout))),
            ],
        ),
        Family::Mixture => MetricSet::new(
            fam,
            &[
                (&ENERGY_W2, Some(e_w2)),
                (&X_W2, Some(x_w2(samples, reference, layout)?)),
                (&MODES, energy.modes_covered(&samples.data).map(|c| c as f64)),
            ],
        ),
        _ => MetricSet::new(
            Family::Plane,
            &[
                (&ENERGY_W2, Some(e_w2)),
                (&X_W2, Some(x_w2(samples, reference, layout)?)),
            ],
        ),
    })
}

/// The torsion families' metrics (molecules.md §4), for sets of any sizes: histograms (`bins`
/// per torsion) on every row of both, E-W2 and torus-W2 on the first min(rows, `w2_rows`,
/// [`torsions::W2_ROWS`]) of each (pass shuffled sets for random subsets). Returns the basin
/// populations of both sets too (`eval` prints them).
pub fn evaluate_torsions(
    energy: &dyn Energy,
    samples: &Matrix,
    reference: &Matrix,
    bins: usize,
    w2_rows: usize,
) -> Result<(MetricSet, torsions::TorsionMetrics)> {
    use family::*;
    let Some(mol) = energy.molecule() else {
        return Err(Error::Invalid("torsion metrics need a molecule".into()));
    };
    let dim = energy.layout().dim();
    if samples.cols != dim || reference.cols != dim || samples.rows == 0 || reference.rows == 0 {
        return Err(Error::Invalid(format!(
            "torsion metrics need non-empty sets of {dim} torsions; got {}×{} and {}×{}",
            samples.rows, samples.cols, reference.rows, reference.cols
        )));
    }
    let w = samples
        .rows
        .min(reference.rows)
        .min(w2_rows)
        .min(torsions::W2_ROWS)
        .max(1);
    let f64s = |m: &Matrix| m.data.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let t = torsions::evaluate(
        &f64s(samples),
        &f64s(reference),
        dim,
        &mol.torsion_names(),
        bins,
        w,
    )?;
    let e_w2 = energy_w2(
        &energy.batch_energy(&samples.data[..w * dim]),
        &energy.batch_energy(&reference.data[..w * dim]),
    )?;
    let set = match Family::of(energy) {
        Family::Ramachandran => MetricSet::new(
            Family::Ramachandran,
            &[
                (&ENERGY_W2, Some(e_w2)),
                (&TORUS_W2, Some(t.torus_w2)),
                (&RAMA_TV, t.rama_tv),
                (&RAMA_KL, t.rama_kl),
            ],
        ),
        _ => MetricSet::new(
            Family::OneTorsion,
            &[
                (&ENERGY_W2, Some(e_w2)),
                (&TORUS_W2, Some(t.torus_w2)),
                (&TORSION_TV, t.torsion_tv),
            ],
        ),
    };
    Ok((set, t))
}

fn check_pair(a: &Matrix, b: &Matrix, layout: Layout) -> Result<()> {
    if a.cols != layout.dim() || b.cols != layout.dim() {
        return Err(Error::Invalid(format!(
            "samples have {} and {} coordinates per row; the system has {}",
            a.cols,
            b.cols,
            layout.dim()
        )));
    }
    if a.rows != b.rows || a.rows == 0 {
        return Err(Error::Invalid(format!(
            "W2 metrics compare sets of equal, non-zero size; got {} and {} samples",
            a.rows, b.rows
        )));
    }
    Ok(())
}

/// E-W2: sqrt of the 1-D W2² between two equal-size sets of energies (sort both, pair in order).
pub fn energy_w2(a: &[f64], b: &[f64]) -> Result<f64> {
    if a.len() != b.len() || a.is_empty() {
        return Err(Error::Invalid(format!(
            "E-W2 needs two equal, non-empty sets; got {} and {}",
            a.len(),
            b.len()
        )));
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let ms = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64;
    Ok(ms.sqrt())
}

/// Rows of `m` as f64 with the centre of mass removed (for particle systems).
fn centred_rows(m: &Matrix, layout: Layout) -> Vec<Vec<f64>> {
    (0..m.rows)
        .map(|i| {
            let mut r: Vec<f64> = m.row(i).iter().map(|&v| v as f64).collect();
            crate::energy::remove_com(&mut r, layout);
            r
        })
        .collect()
}

/// Exact optimal transport between two uniform empirical measures of equal size: a linear
/// assignment on the cost matrix (rows × rows), returning sqrt(mean assigned cost).
pub(crate) fn exact_ot_w2(cost: Vec<f64>, n: usize) -> Result<f64> {
    let (rows, cols) = lsap::solve(n, n, &cost, false)
        .map_err(|e| Error::Invalid(format!("assignment failed: {e}")))?;
    let total: f64 = rows.iter().zip(&cols).map(|(&i, &j)| cost[i * n + j]).sum();
    Ok((total / n as f64).max(0.0).sqrt())
}

/// x-W2: exact OT on flattened CoM-free coordinates with squared Euclidean cost.
pub fn x_w2(a: &Matrix, b: &Matrix, layout: Layout) -> Result<f64> {
    check_pair(a, b, layout)?;
    let (xa, xb) = (centred_rows(a, layout), centred_rows(b, layout));
    let n = a.rows;
    let cost: Vec<f64> = xa
        .par_iter()
        .flat_map_iter(|ra| {
            xb.iter()
                .map(move |rb| ra.iter().zip(rb).map(|(p, q)| (p - q).powi(2)).sum::<f64>())
        })
        .collect();
    exact_ot_w2(cost, n)
}

/// eq-W2: exact OT where the cost of a pair is the squared distance after the best particle
/// permutation and rotation (reflections allowed). Non-particle systems fall back to x-W2.
pub fn eq_w2(a: &Matrix, b: &Matrix, layout: Layout) -> Result<f64> {
    check_pair(a, b, layout)?;
    if !layout.com_free {
        return x_w2(a, b, layout);
    }
    let n = a.rows;
    let cost = match layout.spatial_dim {
        2 => aligned_cost_matrix::<2>(a, b, layout),
        3 => aligned_cost_matrix::<3>(a, b, layout),
        d => {
            return Err(Error::Invalid(format!(
                "eq-W2 supports 2-D and 3-D particles, not {d}-D"
            )));
        }
    };
    exact_ot_w2(cost, n)
}

/// A configuration prepared for alignment: CoM-free positions and a rotation-invariant
/// per-particle descriptor (the sorted distances to its nearest neighbours).
struct Prepared<const D: usize> {
    pos: Vec<[f64; D]>,
    norm2: f64,
    descriptor: Vec<f64>,
}

/// Descriptor length: enough neighbours to identify a particle, few enough for LJ-55.
const DESCRIPTOR_NEIGHBOURS: usize = 12;

impl<const D: usize> Prepared<D> {
    fn new(row: &[f64]) -> Self {
        let pos: Vec<[f64; D]> = row
            .chunks(D)
            .map(|c| std::array::from_fn(|k| c[k]))
            .collect();
        let n = pos.len();
        let k = DESCRIPTOR_NEIGHBOURS.min(n.saturating_sub(1));
        let mut descriptor = Vec::with_capacity(n * k);
        for i in 0..n {
            let mut d: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| dist2(&pos[i], &pos[j]).sqrt())
                .collect();
            d.sort_by(f64::total_cmp);
            descriptor.extend_from_slice(&d[..k]);
        }
        let norm2 = pos
            .iter()
            .map(|p| p.iter().map(|v| v * v).sum::<f64>())
            .sum();
        Self {
            pos,
            norm2,
            descriptor,
        }
    }
}

fn dist2<const D: usize>(a: &[f64; D], b: &[f64; D]) -> f64 {
    (0..D).map(|k| (a[k] - b[k]).powi(2)).sum()
}

fn aligned_cost_matrix<const D: usize>(a: &Matrix, b: &Matrix, layout: Layout) -> Vec<f64> {
    let pa: Vec<Prepared<D>> = centred_rows(a, layout)
        .iter()
        .map(|r| Prepared::new(r))
        .collect();
    let pb: Vec<Prepared<D>> = centred_rows(b, layout)
        .iter()
        .map(|r| Prepared::new(r))
        .collect();
    pa.par_iter()
        .flat_map_iter(|x| pb.iter().map(move |y| aligned_dist2(x, y)))
        .collect()
}

/// Squared distance between `x` and the best permuted and rotated copy of `y`.
///
/// The permutation and rotation depend on each other, so this takes the best of two starts,
/// each refined once: (1) Hungarian on the raw particle distances, as the reference evaluation
/// does; (2) Hungarian on the rotation-invariant descriptors, which finds the right labelling
/// even when `y` is a rotated copy. Each start: permutation → Kabsch → re-match on the rotated
/// positions → Kabsch.
fn aligned_dist2<const D: usize>(x: &Prepared<D>, y: &Prepared<D>) -> f64 {
    let n = x.pos.len();
    let k = if n > 1 { x.descriptor.len() / n } else { 0 };
    let mut cost = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            cost[i * n + j] = dist2(&x.pos[i], &y.pos[j]);
        }
    }
    let raw_start = assign(&cost, n);
    for i in 0..n {
        for j in 0..n {
            let (di, dj) = (
                &x.descriptor[i * k..(i + 1) * k],
                &y.descriptor[j * k..(j + 1) * k],
            );
            cost[i * n + j] = di.iter().zip(dj).map(|(p, q)| (p - q).powi(2)).sum();
        }
    }
    let descriptor_start = assign(&cost, n);
    let mut best = f64::INFINITY;
    let starts = if descriptor_start == raw_start {
        vec![raw_start]
    } else {
        vec![raw_start, descriptor_start]
    };
    for perm in starts {
        let (r, d2) = kabsch(x, y, &perm);
        best = best.min(d2);
        // Re-match particles after rotating y, then align again (if the labelling changed).
        let ry: Vec<[f64; D]> = y.pos.iter().map(|p| rotate(&r, p)).collect();
        for i in 0..n {
            for j in 0..n {
                cost[i * n + j] = dist2(&x.pos[i], &ry[j]);
            }
        }
        let refined = assign(&cost, n);
        if refined != perm {
            best = best.min(kabsch(x, y, &refined).1);
        }
    }
    best.max(0.0)
}

/// Column assigned to each row of a small dense cost matrix (the particle matching).
///
/// The Hungarian method with potentials (O(n³), Kuhn–Munkres as in Jonker–Volgenant's shortest
/// augmenting paths), checked against lsap's optimum in the tests. lsap solves the big
/// 2000×2000 transport problem; for the 4 million small matchings of eq-W2 this version was
/// measured only ~3% faster (45.1 → 43.8 s on LJ-13): the O(n³) matching itself is the cost.
fn assign(cost: &[f64], n: usize) -> Vec<usize> {
    const INF: f64 = f64::INFINITY;
    // 1-based arrays as in the classic formulation; index 0 is the virtual start column.
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; n + 1];
    let mut p = vec![0usize; n + 1]; // p[j]: row matched to column j
    let mut way = vec![0usize; n + 1];
    let mut minv = vec![INF; n + 1];
    let mut used = vec![false; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        minv.fill(INF);
        used.fill(false);
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = INF;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            if j1 == 0 {
                // Only non-finite costs get here; the identity is as good a guess as any.
                return (0..n).collect();
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut cols = vec![0; n];
    for j in 1..=n {
        cols[p[j] - 1] = j - 1;
    }
    cols
}

/// Kabsch with reflections allowed: the orthogonal R minimising Σ‖xᵢ − R y_π(i)‖², and that
/// minimum, ‖x‖² + ‖y‖² − 2‖M‖_* with M = Σ xᵢ y_π(i)ᵀ and R = U Vᵀ from M = U S Vᵀ.
fn kabsch<const D: usize>(
    x: &Prepared<D>,
    y: &Prepared<D>,
    perm: &[usize],
) -> (SMatrix<f64, D, D>, f64) {
    let mut m = SMatrix::<f64, D, D>::zeros();
    for (i, &j) in perm.iter().enumerate() {
        for a in 0..D {
            for b in 0..D {
                m[(a, b)] += x.pos[i][a] * y.pos[j][b];
            }
        }
    }
    let (r, nuclear) = match D {
        2 => procrustes2(&nalgebra::Matrix2::from_fn(|a, b| m[(a, b)])),
        3 => procrustes3(&nalgebra::Matrix3::from_fn(|a, b| m[(a, b)])),
        _ => unreachable!("eq_w2 dispatches only 2-D and 3-D"),
    };
    (
        SMatrix::from_fn(|a, b| r[(a, b)]),
        x.norm2 + y.norm2 - 2.0 * nuclear,
    )
}

/// Orthogonal Procrustes for a fixed-size square matrix M = U S Vᵀ: (U Vᵀ, Σ S).
/// nalgebra's SVD needs a concrete dimension, hence one function per size.
macro_rules! procrustes_fn {
    ($name:ident, $mat:ty, $d:expr) => {
        fn $name(m: &$mat) -> (nalgebra::DMatrix<f64>, f64) {
            let svd = m.svd(true, true);
            let nuclear: f64 = svd.singular_values.iter().sum();
            let r = match (svd.u, svd.v_t) {
                (Some(u), Some(vt)) => u * vt,
                _ => <$mat>::identity(),
            };
            (
                nalgebra::DMatrix::from_fn($d, $d, |a, b| r[(a, b)]),
                nuclear,
            )
        }
    };
}
procrustes_fn!(procrustes2, nalgebra::Matrix2<f64>, 2);
procrustes_fn!(procrustes3, nalgebra::Matrix3<f64>, 3);

fn rotate<const D: usize>(r: &SMatrix<f64, D, D>, p: &[f64; D]) -> [f64; D] {
    std::array::from_fn(|a| (0..D).map(|b| r[(a, b)] * p[b]).sum())
}

/// A histogram with shared bin edges, normalised to a probability density.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    /// Density per bin (integrates to 1 over [lo, hi]).
    pub density: Vec<f64>,
}

impl Histogram {
    /// Histogram of `values` over [lo, hi] with `bins` bins; values outside are clamped into the
    /// end bins so that no mass is lost.
    pub fn new(values: &[f64], lo: f64, hi: f64, bins: usize) -> Self {
        Self::weighted(values, |_| 1.0, lo, hi, bins)
    }
    /// The same with value i counted `weight(i)` times (importance weights; need not be
    /// normalised). Without positive total weight the density is all zero.
    pub fn weighted(
        values: &[f64],
        weight: impl Fn(usize) -> f64,
        lo: f64,
        hi: f64,
        bins: usize,
    ) -> Self {
        let width = (hi - lo) / bins as f64;
        let mut counts = vec![0.0; bins];
        let mut total = 0.0;
        for (i, &v) in values.iter().enumerate() {
            let w = weight(i);
            if !(w.is_finite() && w > 0.0) {
                continue;
            }
            let k = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
            counts[k] += w;
            total += w;
        }
        let norm = if total > 0.0 { total * width } else { 1.0 };
        Self {
            lo,
            hi,
            density: counts.into_iter().map(|c| c / norm).collect(),
        }
    }
    /// Bin width.
    pub fn width(&self) -> f64 {
        (self.hi - self.lo) / self.density.len() as f64
    }
    /// Total variation ½ Σ|pₖ − qₖ|·width to another histogram on the same bins.
    pub fn total_variation(&self, other: &Histogram) -> f64 {
        0.5 * self
            .density
            .iter()
            .zip(&other.density)
            .map(|(p, q)| (p - q).abs())
            .sum::<f64>()
            * self.width()
    }
}

/// Pooled interatomic distances rᵢⱼ (i < j) of every row.
pub fn interatomic_distances(m: &Matrix, layout: Layout) -> Vec<f64> {
    let (n, d) = (layout.particles, layout.spatial_dim);
    let mut out = Vec::with_capacity(m.rows * n * (n - 1) / 2);
    for r in 0..m.rows {
        let row = m.row(r);
        for i in 0..n {
            for j in (i + 1)..n {
                let s: f64 = (0..d)
                    .map(|k| (row[i * d + k] as f64 - row[j * d + k] as f64).powi(2))
                    .sum();
                out.push(s.sqrt());
            }
        }
    }
    out
}

/// Lowest and highest value of the union of two sets, for shared histogram bins.
pub fn joint_range(a: &[f64], b: &[f64]) -> (f64, f64) {
    let lo = a.iter().chain(b).copied().fold(f64::INFINITY, f64::min);
    let hi = a.iter().chain(b).copied().fold(f64::NEG_INFINITY, f64::max);
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    }
}

/// Total variation between pooled interatomic-distance histograms (200 shared bins).
pub fn distance_tv(a: &Matrix, b: &Matrix, layout: Layout) -> f64 {
    let (da, db) = (
        interatomic_distances(a, layout),
        interatomic_distances(b, layout),
    );
    let (lo, hi) = joint_range(&da, &db);
    Histogram::new(&da, lo, hi, DIST_BINS).total_variation(&Histogram::new(&db, lo, hi, DIST_BINS))
}

/// Weights exp(log wᵢ − max) (the largest is 1, so none overflows); non-finite log-weights
/// become 0. `None` if no log-weight is finite.
fn relative_weights(log_w: &[f64]) -> Option<Vec<f64>> {
    let max = log_w
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    max.is_finite().then(|| {
        log_w
            .iter()
            .map(|&l| if l.is_finite() { (l - max).exp() } else { 0.0 })
            .collect()
    })
}

/// log of the mean of exp(ℓ) (the importance-weighted log Z estimate), and its standard error
/// by the delta method: sd(w)/(√n·mean w). Non-finite ℓ count as zero weights.
pub fn log_mean_exp(l: &[f64]) -> (f64, f64) {
    let n = l.len() as f64;
    let m = l.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    let w: Vec<f64> = l.iter().map(|&v| if v.is_finite() { (v - m).exp() } else { 0.0 }).collect();
    let mean = w.iter().sum::<f64>() / n;
    let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m + mean.ln(), var.sqrt() / (n.sqrt() * mean))
}

/// Normalised effective sample size (Σw)² / (N Σw²) from log-weights, computed stably.
/// Non-finite log-weights count as zero weight.
pub fn ess(log_w: &[f64]) -> f64 {
    let Some(w) = relative_weights(log_w) else {
        return 0.0;
    };
    let s: f64 = w.iter().sum();
    let s2: f64 = w.iter().map(|v| v * v).sum();
    s * s / (log_w.len() as f64 * s2)
}

/// Systematic resampling: `log_w.len()` indices drawn in proportion to the weights with one
/// uniform offset `u` ∈ [0, 1), so row i appears ⌊N wᵢ⌋ or ⌈N wᵢ⌉ times (the lowest-variance
/// standard scheme). Non-finite log-weights count as zero weight. `None` if no weight is finite.
pub fn systematic_resample(log_w: &[f64], u: f64) -> Option<Vec<usize>> {
    let w = relative_weights(log_w)?;
    let total: f64 = w.iter().sum();
    let n = w.len();
    let (mut out, mut cum, mut i) = (Vec::with_capacity(n), w[0] / total, 0);
    for k in 0..n {
        let target = (u + k as f64) / n as f64;
        while cum < target && i + 1 < n {
            i += 1;
            cum += w[i] / total;
        }
        out.push(i);
    }
    Some(out)
}

/// Configurational temperature ⟨‖∇E‖²⟩ / ⟨ΔE⟩, which equals τ for exact samples at τ.
pub fn configurational_temperature(energy: &dyn Energy, samples: &Matrix) -> f64 {
    let dim = energy.dim();
    let (g2, lap) = (0..samples.rows)
        .into_par_iter()
        .map(|i| {
            let x: Vec<f64> = samples.row(i).iter().map(|&v| v as f64).collect();
            let mut g = vec![0.0; dim];
            energy.energy_grad(&x, &mut g);
            (g.iter().map(|v| v * v).sum::<f64>(), energy.laplacian(&x))
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    g2 / lap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::LennardJones;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    fn random_matrix(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Matrix {
        Matrix::new(
            rows,
            cols,
            (0..rows * cols)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect(),
        )
    }

    #[test]
    fn energy_w2_of_shifted_set_is_the_shift() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a: Vec<f64> = (0..500).map(|_| rng.sample(StandardNormal)).collect();
        let c = 1.75;
        let b: Vec<f64> = a.iter().rev().map(|v| v + c).collect();
        // Sorting pairs each value with its own shifted copy; only round-off remains.
        assert!((energy_w2(&a, &b).unwrap() - c).abs() < 1e-12);
    }

    fn rotation3(rng: &mut ChaCha8Rng) -> SMatrix<f64, 3, 3> {
        let m = SMatrix::<f64, 3, 3>::from_fn(|_, _| rng.sample(StandardNormal));
        m.qr().q()
    }

    /// A set against a permuted, rotated, translated copy of itself (rows shuffled too) has
    /// eq-W2 = 0 up to f32 storage of the copy: |Δx| ≈ 1e-7 per coordinate, so 1e-3 is ample.
    #[test]
    fn eq_w2_of_permuted_rotated_copy_is_zero() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let layout = LennardJones::new(13).layout();
        let a = random_matrix(40, 39, &mut rng);
        let mut rows = Vec::new();
        for i in (0..a.rows).rev() {
            let r = rotation3(&mut rng);
            let mut perm: Vec<usize> = (0..13).collect();
            for k in (1..13).rev() {
                perm.swap(k, rng.random_range(0..=k));
            }
            let shift: [f64; 3] = std::array::from_fn(|_| rng.random_range(-3.0..3.0));
            let row = a.row(i);
            for &p in &perm {
                let v: [f64; 3] = std::array::from_fn(|k| row[p * 3 + k] as f64);
                let rv = rotate(&r, &v);
                rows.extend((0..3).map(|k| (rv[k] + shift[k]) as f32));
            }
        }
        let b = Matrix::new(a.rows, 39, rows);
        let eq = eq_w2(&a, &b, layout).unwrap();
        assert!(eq < 1e-3, "eq-W2 = {eq}");
        // The unaligned distance of the same pair is far from zero: the test can fail.
        assert!(x_w2(&a, &b, layout).unwrap() > 1.0);
    }

    #[test]
    fn x_w2_of_identical_sets_is_zero_and_of_shifted_is_shift() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let layout = Layout {
            particles: 1,
            spatial_dim: 2,
            com_free: false,
        };
        let a = random_matrix(100, 2, &mut rng);
        assert!(x_w2(&a, &a, layout).unwrap() < 1e-12);
        // A rigid shift by (3, 4) of a set is optimally transported onto itself: W2 = 5 exactly.
        let b = Matrix::new(
            100,
            2,
            a.data
                .chunks(2)
                .flat_map(|p| [p[0] + 3.0, p[1] + 4.0])
                .collect(),
        );
        assert!((x_w2(&a, &b, layout).unwrap() - 5.0).abs() < 1e-5);
    }

    #[test]
    fn histograms_and_tv() {
        let h = Histogram::new(&[0.1, 0.2, 0.6, 5.0], 0.0, 1.0, 2);
        // 2 values in [0, .5), 2 (one clamped) in [.5, 1]; density = count / (4 · 0.5).
        assert_eq!(h.density, vec![1.0, 1.0]);
        let g = Histogram::new(&[0.1, 0.1, 0.1, 0.1], 0.0, 1.0, 2);
        assert!((h.total_variation(&g) - 0.5).abs() < 1e-12);
        assert!(h.total_variation(&h).abs() < 1e-12);
    }

    /// The small Hungarian solver finds assignments as cheap as lsap's (ties may differ).
    #[test]
    fn small_assignment_matches_lsap() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for n in [1, 2, 5, 13, 30] {
            for _ in 0..20 {
                let cost: Vec<f64> = (0..n * n).map(|_| rng.random_range(0.0..10.0)).collect();
                let mine = assign(&cost, n);
                let mut seen = vec![false; n];
                for &j in &mine {
                    assert!(!seen[j], "not a permutation");
                    seen[j] = true;
                }
                let (_, cols) = lsap::solve(n, n, &cost, false).unwrap();
                let total = |c: &[usize]| {
                    c.iter()
                        .enumerate()
                        .map(|(i, &j)| cost[i * n + j])
                        .sum::<f64>()
                };
                assert!((total(&mine) - total(&cols)).abs() < 1e-9, "n = {n}");
            }
        }
    }

    #[test]
    fn ess_of_equal_and_degenerate_weights() {
        assert!((ess(&[0.3; 10]) - 1.0).abs() < 1e-12);
        let mut lw = vec![-1000.0; 10];
        lw[3] = 0.0;
        assert!((ess(&lw) - 0.1).abs() < 1e-12);
        assert_eq!(ess(&[f64::NAN, f64::NEG_INFINITY]), 0.0);
    }

    #[test]
    fn systematic_resampling_follows_the_weights() {
        // Equal weights keep every row once, whatever the offset.
        for u in [1e-9, 0.37, 0.999] {
            assert_eq!(
                systematic_resample(&[0.7; 5], u).unwrap(),
                vec![0, 1, 2, 3, 4]
            );
        }
        // Weights 1/2, 1/4, 1/4, 0 over 4 draws: exactly 2, 1, 1, 0 copies (N·w are integers).
        let lw = [
            (0.5f64).ln(),
            (0.25f64).ln(),
            (0.25f64).ln(),
            f64::NEG_INFINITY,
        ];
        assert_eq!(systematic_resample(&lw, 0.5).unwrap(), vec![0, 0, 1, 2]);
        // Non-integer N·w: counts are the floor or the ceiling of N·w.
        let lw: Vec<f64> = [5.0f64, 1.0, 1.0, 3.0]
            .iter()
            .map(|w| (w / 10.0).ln())
            .collect();
        for u in [0.05, 0.5, 0.95] {
            let idx = systematic_resample(&lw, u).unwrap();
            let count = |i| idx.iter().filter(|&&j| j == i).count() as f64;
            for (i, w) in [0.5, 0.1, 0.1, 0.3].iter().enumerate() {
                assert!(
                    (count(i) - 4.0 * w).abs() < 1.0,
                    "row {i}: {} copies for weight {w}",
                    count(i)
                );
            }
        }
        assert_eq!(
            systematic_resample(&[f64::NAN, f64::NEG_INFINITY], 0.5),
            None
        );
    }
}
