//! Metrics of torsion samples (molecules.md §4): Ramachandran histograms with forward KL and total
//! variation, torus-W2, and the populations of named basins.

use std::f64::consts::{PI, TAU};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::types::wrap_angle as wrap;

/// Bins per angle of the Ramachandran histogram (FAB's convention).
pub const RAMA_BINS: usize = 64;
/// Floor for empty model bins in the forward KL.
pub const KL_EPS: f64 = 1e-10;

/// A normalised histogram of columns `cols` (one or two) of `samples` (rows × dim, radians) on
/// `bins` equal cells per angle over (−π, π]; row-major, the last column fastest.
pub fn histogram(samples: &[f64], dim: usize, cols: &[usize], bins: usize) -> Vec<f64> {
    let mut h = vec![0.0; bins.pow(cols.len() as u32)];
    let rows = samples.len() / dim;
    let cell = |a: f64| (((wrap(a) + PI) / TAU * bins as f64) as usize).min(bins - 1);
    for r in samples.chunks(dim) {
        let idx = cols.iter().fold(0, |acc, &c| acc * bins + cell(r[c]));
        h[idx] += 1.0;
    }
    for v in &mut h {
        *v /= rows.max(1) as f64;
    }
    h
}

/// Total variation ½ Σ |p − q|.
pub fn total_variation(p: &[f64], q: &[f64]) -> f64 {
    0.5 * p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum::<f64>()
}

/// Forward KL(reference ‖ model) = Σ p log(p / max(q, ε)) over bins where p > 0.
pub fn kl_forward(reference: &[f64], model: &[f64]) -> f64 {
    reference
        .iter()
        .zip(model)
        .filter(|(p, _)| **p > 0.0)
        .map(|(p, q)| p * (p / q.max(KL_EPS)).ln())
        .sum()
}

/// Torus-W2 on columns `cols`: exact OT between two equal-size sets with the squared wrapped
/// distance Σ min(|Δ|, 2π − |Δ|)².
pub fn torus_w2(a: &[f64], b: &[f64], dim: usize, cols: &[usize]) -> Result<f64> {
    let n = a.len() / dim;
    if n == 0 || b.len() / dim != n {
        return Err(Error::Invalid(format!(
            "torus-W2 compares sets of equal, non-zero size; got {} and {}",
            n,
            b.len() / dim
        )));
    }
    let cost: Vec<f64> = a
        .par_chunks(dim)
        .flat_map_iter(|ra| {
            b.chunks(dim).map(move |rb| {
                cols.iter()
                    .map(|&c| {
                        let d = (ra[c] - rb[c]).rem_euclid(TAU);
                        d.min(TAU - d).powi(2)
                    })
                    .sum::<f64>()
            })
        })
        .collect();
    super::exact_ot_w2(cost, n)
}

/// A named region of torsion space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basin {
    /// C5 / β: φ < −110°, ψ > 100° or ψ < −150°.
    C5,
    /// C7eq / P_II: −110° < φ < 0, ψ > 0.
    C7eq,
    /// α_R: φ < 0, −100° < ψ < 0.
    AlphaR,
    /// α_L and C7ax: φ > 0.
    AlphaL,
    /// Anything else (the saddles between basins).
    Other,
}

impl Basin {
    pub const ALL: [Basin; 5] = [
        Basin::C5,
        Basin::C7eq,
        Basin::AlphaR,
        Basin::AlphaL,
        Basin::Other,
    ];

    /// The basin of (φ, ψ) in radians (molecules.md §4).
    pub fn of(phi: f64, psi: f64) -> Basin {
        let (f, s) = (wrap(phi).to_degrees(), wrap(psi).to_degrees());
        if f > 0.0 {
            Basin::AlphaL
        } else if f < -110.0 && (s > 100.0 || s < -150.0) {
            Basin::C5
        } else if f > -110.0 && s > 0.0 {
            Basin::C7eq
        } else if s > -100.0 && s < 0.0 {
            Basin::AlphaR
        } else {
            Basin::Other
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Basin::C5 => "C5",
            Basin::C7eq => "C7eq",
            Basin::AlphaR => "alpha_R",
            Basin::AlphaL => "alpha_L/C7ax",
            Basin::Other => "other",
        }
    }
}

/// Butane's conformers by φ (radians): trans |φ| > 120°, gauche± otherwise.
pub fn butane_state(phi: f64) -> &'static str {
    let f = wrap(phi).to_degrees();
    if f.abs() > 120.0 {
        "trans"
    } else if f > 0.0 {
        "gauche+"
    } else {
        "gauche-"
    }
}

/// Which columns are φ and ψ: the torsions named so (any case), else the first two.
pub fn ramachandran_columns(names: &[String]) -> Option<(usize, usize)> {
    let find = |n: &str| names.iter().position(|s| s.eq_ignore_ascii_case(n));
    match (find("phi"), find("psi")) {
        (Some(a), Some(b)) => Some((a, b)),
        _ if names.len() >= 2 => Some((0, 1)),
        _ => None,
    }
}

/// The named region of one configuration (a row of torsions): its Ramachandran basin for a
/// molecule with φ and ψ, butane's trans/gauche for one torsion.
pub fn region(row: &[f64], names: &[String]) -> &'static str {
    match ramachandran_columns(names) {
        Some((i, j)) => Basin::of(row[i], row[j]).label(),
        None => butane_state(row[0]),
    }
}

/// The region labels for a molecule with these torsions, in display order: the Ramachandran
/// basins where torsions are named phi and psi, butane's conformers for a single phi, and none
/// for other names (a brought molecule's regions are not alanine's or butane's).
pub fn region_labels(names: &[String]) -> Vec<&'static str> {
    let named = |n: &str| names.iter().any(|s| s.eq_ignore_ascii_case(n));
    match ramachandran_columns(names) {
        Some(_) if named("phi") && named("psi") => Basin::ALL.iter().map(|b| b.label()).collect(),
        None if named("phi") => vec!["trans", "gauche+", "gauche-"],
        _ => Vec::new(),
    }
}

/// Fractions of samples (rows × dim) in each named region, in [`region_labels`] order.
pub fn populations(samples: &[f64], dim: usize, names: &[String]) -> Vec<(String, f64)> {
    let n = (samples.len() / dim).max(1) as f64;
    region_labels(names)
        .into_iter()
        .map(|label| {
            (
                label.to_string(),
                samples
                    .chunks(dim)
                    .filter(|r| region(r, names) == label)
                    .count() as f64
                    / n,
            )
        })
        .collect()
}

/// The torsion-space metrics of samples against reference samples (equal sizes for torus-W2).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TorsionMetrics {
    /// Forward KL(reference ‖ samples) of the Ramachandran histograms (two torsions or more).
    pub rama_kl: Option<f64>,
    /// Total variation of the same histograms.
    pub rama_tv: Option<f64>,
    /// Total variation of the histograms of the one torsion (butane).
    pub torsion_tv: Option<f64>,
    /// Torus-W2 on (φ, ψ), or on the one torsion.
    pub torus_w2: f64,
    /// Populations of the samples and of the reference, by region.
    pub populations: Vec<(String, f64)>,
    pub reference_populations: Vec<(String, f64)>,
}

/// Rows compared by torus-W2 at most (exact OT is cubic in them).
pub const W2_ROWS: usize = 2000;

/// Computes [`TorsionMetrics`]; `names` are the scene's torsion names. Histograms and
/// populations use every row of both sets; torus-W2 the first min(rows, `w2_rows`) of each
/// (pass shuffled sets for a random subset).
/// `bins` per torsion ([`RAMA_BINS`] by the paper's convention).
pub fn evaluate(
    samples: &[f64],
    reference: &[f64],
    dim: usize,
    names: &[String],
    bins: usize,
    w2_rows: usize,
) -> Result<TorsionMetrics> {
    let (cols, rama) = match ramachandran_columns(names) {
        Some((i, j)) => (vec![i, j], true),
        None => (vec![0], false),
    };
    let hs = histogram(samples, dim, &cols, bins);
    let hr = histogram(reference, dim, &cols, bins);
    let tv = total_variation(&hs, &hr);
    Ok(TorsionMetrics {
        rama_kl: rama.then(|| kl_forward(&hr, &hs)),
        rama_tv: rama.then_some(tv),
        torsion_tv: (!rama).then_some(tv),
        torus_w2: {
            let n = (samples.len() / dim)
                .min(reference.len() / dim)
                .min(w2_rows);
            torus_w2(&samples[..n * dim], &reference[..n * dim], dim, &cols)?
        },
        populations: populations(samples, dim, names),
        reference_populations: populations(reference, dim, names),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basins_follow_the_definitions() {
        let d = f64::to_radians;
        assert_eq!(Basin::of(d(-150.0), d(150.0)), Basin::C5);
        assert_eq!(Basin::of(d(-150.0), d(-170.0)), Basin::C5);
        assert_eq!(Basin::of(d(-80.0), d(70.0)), Basin::C7eq);
        assert_eq!(Basin::of(d(-70.0), d(-40.0)), Basin::AlphaR);
        assert_eq!(Basin::of(d(60.0), d(40.0)), Basin::AlphaL);
        assert_eq!(Basin::of(d(-150.0), d(50.0)), Basin::Other);
        // Wrapped input: φ = 200° is −160°.
        assert_eq!(Basin::of(d(200.0), d(150.0)), Basin::C5);
    }

    #[test]
    fn histograms_tv_kl_and_wrapped_w2() {
        let a = vec![0.1, 0.1, -3.1, 3.1];
        let h = histogram(&a, 2, &[0, 1], 4);
        assert_eq!(h.iter().sum::<f64>(), 1.0);
        assert_eq!(total_variation(&h, &h), 0.0);
        assert_eq!(kl_forward(&h, &h), 0.0);
        // Across the seam: 3.1 and −3.1 are 0.083 apart, not 6.2.
        let w = torus_w2(&[3.1], &[-3.1], 1, &[0]).unwrap();
        assert!((w - (TAU - 6.2)).abs() < 1e-12, "{w}");
        // Disjoint histograms: TV 1, KL = log(1/ε).
        let p = [1.0, 0.0];
        let q = [0.0, 1.0];
        assert_eq!(total_variation(&p, &q), 1.0);
        assert!((kl_forward(&p, &q) - (1.0 / KL_EPS).ln()).abs() < 1e-9);
    }
}
