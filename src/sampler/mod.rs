//! Samplers: the Adjoint Sampling trainer and the reference MCMC.

pub mod adam;
pub mod adjoint;
pub mod mcmc;

use std::path::Path;

use crate::error::Result;
use adjoint::{Counters, IterationReport, LiveHyper, SampleOptions, Samples};

/// A trainable sampler as the CLI and the app's worker drive it.
pub trait Sampler: Send {
    /// One outer iteration of training (simulate, buffer, optimiser steps).
    fn train_iteration(&mut self) -> Result<IterationReport>;
    /// Draws `n` samples, optionally with a trajectory and importance weights.
    fn sample(&mut self, n: usize, opts: SampleOptions) -> Result<Samples>;
    /// Changes the hyperparameters that need no reset.
    fn set_hyper(&mut self, hyper: LiveHyper) -> Result<()>;
    /// Saves everything needed to resume into `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
    /// Restores a state saved by [`save`](Sampler::save).
    fn load(&mut self, dir: &Path) -> Result<()>;
    /// Running totals.
    fn counters(&self) -> &Counters;
}
