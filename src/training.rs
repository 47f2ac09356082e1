//! Judging a sampler while it trains: draws against a fixed subset of the reference, so that
//! successive evaluations of one run are comparable.

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::metrics::{self, MetricSet, Which};
use crate::sampler::Sampler;
use crate::sampler::adjoint::{SampleOptions, Samples};

/// Evaluation of one moment of a run.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: MetricSet,
    /// Normalised effective sample size of the importance weights (0–1).
    pub ess: f64,
    /// The samples that were judged.
    pub samples: Samples,
}

/// Compares samples of a sampler with a fixed random subset of reference samples.
pub struct Evaluator {
    reference: Matrix,
    which: Which,
}

impl Evaluator {
    /// Takes `n` reference rows (fewer if the file has fewer), chosen once by `seed`.
    pub fn new(reference: &Matrix, n: usize, which: Which, seed: u64) -> Result<Self> {
        if reference.rows == 0 {
            return Err(Error::Invalid("the reference set is empty".into()));
        }
        let n = n.min(reference.rows);
        let idx = sample(&mut ChaCha8Rng::seed_from_u64(seed), reference.rows, n).into_vec();
        Ok(Self { reference: reference.select(&idx), which })
    }

    /// Samples compared per evaluation.
    pub fn len(&self) -> usize {
        self.reference.rows
    }

    pub fn is_empty(&self) -> bool {
        self.reference.rows == 0
    }

    /// The reference rows used.
    pub fn reference(&self) -> &Matrix {
        &self.reference
    }

    /// Draws as many samples as the reference subset has and computes every metric and the ESS.
    pub fn evaluate(&self, sampler: &mut dyn Sampler, energy: &dyn Energy) -> Result<Evaluation> {
        let n = self.reference.rows;
        let s = sampler.sample(n, SampleOptions { trajectory: true, weights: true })?;
        let m = Matrix::new(n, energy.dim(), s.x.clone());
        let metrics = metrics::evaluate(energy, &m, &self.reference, self.which)?;
        let ess = s.log_weights.as_deref().map(metrics::ess).unwrap_or(0.0);
        Ok(Evaluation { metrics, ess, samples: s })
    }
}
