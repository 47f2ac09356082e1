//! Sampler kinds behind one trait. A kind implements one small unit of work
//! ([`Sampler::advance`]) and sampling; the run driver (`crate::run`) owns the loop, the
//! budget, the evaluation cadence, divergence and checkpoints for every kind, in the CLI and the
//! app.
//!
//! Adding a kind: its file or folder here with a `pub static KIND: KindInfo` (name, systems it
//! accepts, builder, hyperparameter rows), a `mod` line below, and one line in
//! [`registry::KINDS`].

pub mod adjoint;
pub mod asbs;
pub mod config;
pub mod gfn;
pub mod hyper;
pub mod idem;
pub mod learner;
pub mod mcmc;
pub mod registry;
pub mod state;

use std::path::Path;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::energy::Energy;
use crate::error::{Error, Result};

pub use config::SamplerConfig;
pub use hyper::HyperRow;
pub use learner::LiveHyper;
pub use registry::{KINDS, KindInfo, SamplerKind};

/// The seed of a sampler's stream of display and evaluation draws, derived from its seed.
pub(crate) fn sample_stream(seed: u64) -> u64 {
    seed ^ 0x5341_4d50_4c45_5321 // "SAMPLES!"
}

/// Running totals of a run: the costs of samplers.md §1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Outer iterations (AS/ASBS/iDEM epochs; MCMC blocks of sweeps).
    pub outer_iterations: u64,
    /// Optimiser updates applied.
    pub gradient_steps: u64,
    /// Energy (+ gradient) evaluations spent on training or, for MCMC, on the chains.
    pub energy_evals: u64,
    /// Rows pushed forward through a network (one per sample per SDE step).
    #[serde(default)]
    pub network_forward: u64,
    /// Rows back-propagated through a network (one per example per gradient step).
    #[serde(default)]
    pub network_backward: u64,
    /// Energy evaluations spent drawing samples to judge or export (not charged to the budget).
    #[serde(default)]
    pub eval_energy_evals: u64,
    /// End points simulated (training and evaluation).
    pub samples_simulated: u64,
    /// Optimiser steps refused because the loss or a gradient was NaN/inf.
    pub skipped_steps: u64,
    /// Simulated samples dropped because X₁, E or ∇E was NaN/inf, or X₁ had blown up.
    pub dropped_samples: u64,
    /// Seconds spent inside the sampler's training calls.
    pub wall_seconds: f64,
}

/// Options of [`Sampler::sample`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleOptions {
    /// Keep the path of the first sample over SDE time (steps + 1 frames).
    pub trajectory: bool,
    /// Compute log importance weights of every sample (where the kind defines them).
    pub weights: bool,
    /// Return exactly n samples even when the kind has fewer ready (MCMC early in a run: its
    /// chains then continue on a copy). Off, a kind may return fewer: an evaluation at a budget
    /// judges only what the run has drawn within it.
    pub fill: bool,
    /// Draw from a generator seeded by this, leaving the sampler's own streams untouched: the
    /// same seed gives the same samples (`sample --seed`, evaluations at a race's budget
    /// points). `None`: the next draws of the sampler's display stream.
    pub seed: Option<u64>,
}

/// Samples drawn from a sampler.
#[derive(Debug, Clone)]
pub struct Samples {
    /// n × dim, centre of mass removed for particle systems.
    pub x: Vec<f32>,
    /// Energies E(x) (NaN where not finite).
    pub energies: Vec<f64>,
    /// Frames of the first sample at t = k/steps, k = 0..=steps, each `dim` values.
    pub trajectory: Option<Vec<Vec<f32>>>,
    /// Log importance weights (Adjoint Sampling: science.md §2); `None` where not defined.
    pub log_weights: Option<Vec<f64>>,
}

impl Samples {
    /// Normalised ESS of the importance weights, where the kind defines them.
    pub fn ess(&self) -> Option<f64> {
        self.log_weights.as_deref().map(crate::metrics::ess)
    }
}

/// New samples a unit of training work finished (the app shows them; the driver judges them).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// n × dim.
    pub x: Vec<f32>,
    /// E(x); NaN where not finite.
    pub energies: Vec<f64>,
    /// Log importance weights where the kind defines them.
    pub log_weights: Option<Vec<f64>>,
}

impl Batch {
    /// Normalised ESS of the importance weights, where the kind defines them.
    pub fn ess(&self) -> Option<f64> {
        self.log_weights.as_deref().map(crate::metrics::ess)
    }
}

/// What a sampler is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Idle,
    Simulating {
        done: usize,
        total: usize,
    },
    Training {
        done: usize,
        total: usize,
    },
    /// MCMC: sweeps of the current block.
    Sweeping {
        done: usize,
        total: usize,
    },
}

/// What one unit of work did.
#[derive(Debug, Clone, Default)]
pub struct Advance {
    /// Loss of each applied optimiser step, in order.
    pub losses: Vec<f32>,
    /// Optimiser steps refused as non-finite.
    pub skipped: u64,
    /// Set when a batch of new samples was completed.
    pub batch: Option<Batch>,
    /// Set when the unit completed an outer iteration.
    pub iteration_done: bool,
    pub phase: Phase,
}

/// A sampler as the run driver sees it. Every kind implements this; nothing outside a kind's
/// file names its type.
pub trait Sampler: Send {
    fn kind(&self) -> SamplerKind;
    /// The target energy.
    fn energy(&self) -> &dyn Energy;
    /// One unit of work: a slice of a simulation, one gradient step, a block of sweeps. Short
    /// (a fraction of a second), so the app's pause and shutdown stay prompt.
    fn advance(&mut self) -> Result<Advance>;
    /// Draws `n` samples (their cost goes to `eval_energy_evals`, not the training budget).
    fn sample(&mut self, n: usize, opts: SampleOptions) -> Result<Samples>;
    /// The settings the sampler runs with now, live edits included: the one copy of the truth
    /// that the app's panels, forks and sessions read (through the kind's rows).
    fn config(&self) -> &SamplerConfig;
    /// Changes the live hyperparameter `key` (one of the kind's rows that applies live); Adam's
    /// moments and the buffer are kept.
    fn set_hyper(&mut self, key: &str, value: f64) -> Result<()>;
    fn counters(&self) -> &Counters;
    /// The stage of a kind with stages (ASBS: adjoint or corrector matching; MCMC: burn-in).
    fn stage(&self) -> Option<String> {
        None
    }
    /// The learned field s(x, t) at rows `x` and time `t` (in the system's coordinates), for the
    /// kinds that learn one that can be drawn; `None` for the others.
    fn control_field(&self, _x: &[f32], _t: f32) -> Option<Result<Vec<f32>>> {
        None
    }
    /// `n` examples of the regression the field is fitted by, at SDE time `t`: bridge points
    /// X_t from buffer rows and their targets (system coordinates for the points), for the kinds
    /// whose loss is such a regression; `None` for the others. Drawn from the display stream.
    fn regression_examples(&mut self, _n: usize, _t: f32) -> Option<Result<(Vec<f32>, Vec<f32>)>> {
        None
    }
    /// End points the kind trains on but did not draw itself (the GFlowNet kind's local-search
    /// samples), in the system's coordinates, for the app to show as off-policy data; `None`
    /// for kinds without such data.
    fn off_policy_points(&self) -> Option<Vec<f32>> {
        None
    }
    /// The constant that makes the kind's log importance weights exact: with it added,
    /// E[exp(log w)] = Z = ∫ exp(−E/kT) over the system's own coordinates, so logmeanexp is a
    /// log Z estimate and the mean an ELBO (`logz`). `None` where the kind has no path measure
    /// or its weights are known only up to a constant.
    fn log_weight_offset(&self) -> Option<f64> {
        None
    }
    /// A log Z the kind learns as a parameter (trajectory balance), in the same convention.
    fn log_z_learned(&self) -> Option<f64> {
        None
    }
    /// What `n` further samples cost once training stops: (energy evaluations, seconds). A
    /// learned kind needs no energy to draw (its energies are computed only to judge them); the
    /// default times a draw (from its own generator, so that training's stream is untouched).
    fn draw_cost(&mut self, n: usize) -> Result<(f64, f64)> {
        let start = Instant::now();
        self.sample(
            n,
            SampleOptions {
                fill: true,
                seed: Some(u64::MAX),
                ..SampleOptions::default()
            },
        )?;
        Ok((0.0, start.elapsed().as_secs_f64()))
    }
    /// Saves everything needed to resume into `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
    /// Restores a state saved by [`save`](Sampler::save) into a sampler built from the same scene.
    fn load(&mut self, dir: &Path) -> Result<()>;
}

/// A fresh sampler of the kind `sampler.kind` names, for the system of `energy`.
pub fn build(
    energy: Box<dyn Energy>,
    sampler: &SamplerConfig,
    network: &crate::nn::NetworkConfig,
) -> Result<Box<dyn Sampler>> {
    check_system(sampler.kind, energy.as_ref())?;
    (sampler.kind.info().build)(energy, sampler, network)
}

/// Whether `kind` can handle the system of `energy`: `Err` says why.
pub fn check_system(kind: SamplerKind, energy: &dyn Energy) -> Result<()> {
    (kind.info().accepts)(energy).map_err(|why| {
        let can: Vec<String> = SamplerKind::all()
            .filter(|k| (k.info().accepts)(energy).is_ok())
            .map(|k| format!("{k:?}"))
            .collect();
        Error::Invalid(format!(
            "sampler.kind {kind:?} cannot handle {}: {why}; kinds that can: {}",
            energy.name(),
            can.join(", ")
        ))
    })
}

/// Sizes units of work so that one takes 0.15–0.5 s: bigger units use the CPU better, shorter
/// ones keep pause and shutdown prompt. Results never depend on the size (see the kinds).
#[derive(Debug, Clone)]
pub struct UnitSizer {
    size: usize,
    max: usize,
}

impl UnitSizer {
    pub(crate) fn new(start: usize, max: usize) -> Self {
        Self {
            size: start.max(1),
            max: max.max(1),
        }
    }

    /// Records that a unit of `n` took `took`.
    pub(crate) fn update(&mut self, n: usize, took: Duration) {
        if n >= self.size && took < Duration::from_millis(150) {
            self.size = (self.size * 2).min(self.max);
        } else if took > Duration::from_millis(500) {
            self.size = (self.size / 2).max(1);
        }
    }

    /// Runs `f(n)` on a unit of at most `left` and updates the size by its time.
    pub(crate) fn timed<T>(&mut self, left: usize, f: impl FnOnce(usize) -> T) -> T {
        let n = self.size.min(left).max(1);
        let start = Instant::now();
        let out = f(n);
        self.update(n, start.elapsed());
        out
    }
}

/// The generator of row `row` of a simulation seeded `seed`: each simulated path draws its
/// noise from its own stream, so a simulation split into units of any size gives the same paths.
pub(crate) fn row_rng(seed: u64, row: usize) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(row as u64);
    r
}
