//! The machinery the learned kinds (Adjoint Sampling, ASBS, iDEM) share: the live
//! hyperparameters their loops read, and the outer iteration ("epoch") of simulating new samples
//! into a buffer and then taking gradient steps on it, cut into short units of work.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Advance, Batch, Counters, Phase, SamplerConfig, UnitSizer};
use crate::error::{Error, Result};

/// The live hyperparameters the learned kinds share, as their checkpoints store them
/// (`state.json`'s `hyper`) and as their training loops read them. The truth is the sampler's
/// [`SamplerConfig`]; this is refreshed from it whenever a row changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveHyper {
    pub learning_rate: f64,
    pub batch_size: usize,
    pub new_samples: usize,
    pub train_steps: usize,
    pub grad_clip: f64,
    pub sde_steps: usize,
    /// Steps when drawing samples; `None`: `sde_steps`.
    #[serde(default)]
    pub sample_steps: Option<usize>,
    pub buffer_size: usize,
}

impl LiveHyper {
    pub fn from_config(c: &SamplerConfig) -> Self {
        Self {
            learning_rate: c.learning_rate,
            batch_size: c.batch_size,
            new_samples: c.new_samples,
            train_steps: c.train_steps,
            grad_clip: c.grad_clip,
            sde_steps: c.sde_steps,
            sample_steps: c.sample_steps,
            buffer_size: c.buffer_size,
        }
    }

    /// Writes these values back into a scene's sampler section (the app's next reset uses them).
    pub fn apply_to(&self, c: &mut SamplerConfig) {
        c.learning_rate = self.learning_rate;
        c.batch_size = self.batch_size;
        c.new_samples = self.new_samples;
        c.train_steps = self.train_steps;
        c.grad_clip = self.grad_clip;
        c.sde_steps = self.sde_steps;
        c.sample_steps = self.sample_steps;
        c.buffer_size = self.buffer_size;
    }

    /// Checks the values with the rows' bounds (as a scene's are checked).
    pub fn validate(&self, dim: usize) -> Result<()> {
        let mut c = SamplerConfig::default();
        self.apply_to(&mut c);
        super::hyper::check_all(&super::hyper::learner_rows(), &c, dim)
            .map_err(|(f, m)| Error::Invalid(format!("{f} {m}")))
    }
}

/// Where a learned kind is in its outer iteration (epoch): simulating `sim_total` new samples in
/// units, then `train_left` gradient steps. Saved with checkpoints (a half-simulated batch is not:
/// its rows are in the buffer already, so a resumed run goes on with the training steps).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Epoch {
    /// Seed of this epoch's simulation (each row has its own stream, see [`row_rng`]).
    pub seed: u64,
    pub sim_total: usize,
    pub sim_done: usize,
    pub train_left: usize,
    /// The samples simulated so far this epoch (for the live view).
    #[serde(skip)]
    pub pending: Batch,
}

impl Epoch {
    /// After loading: a half-simulated batch counts as simulated.
    pub fn resumed(mut self) -> Self {
        self.sim_done = self.sim_done.max(self.sim_total);
        self
    }
}

/// The learned kinds (AS, ASBS, iDEM) as the shared epoch loop [`advance_epoch`] drives them:
/// each says how to simulate into its buffer and how to take one gradient step.
pub trait Learner {
    fn epoch(&mut self) -> &mut Epoch;
    fn sizer(&mut self) -> &mut UnitSizer;
    fn hyper(&self) -> &LiveHyper;
    fn counters_mut(&mut self) -> &mut Counters;
    fn next_seed(&mut self) -> u64;
    /// Simulates the epoch's next `n` rows into the buffer and onto `epoch().pending`.
    fn simulate_rows(&mut self, n: usize) -> Result<()>;
    /// One optimiser step; `None` when it was skipped as non-finite.
    fn gradient_step(&mut self) -> Result<Option<f32>>;
    /// Whether the buffer the next steps draw from is empty.
    fn buffer_empty(&self) -> bool;
    /// Called when an epoch ends (ASBS switches stages here).
    fn finish_epoch(&mut self) {}
}

/// One unit of a learned kind's epoch: a slice of its simulation, or one gradient step. Both
/// run on a rayon worker: called from the main thread, every small parallel loop inside is a
/// cross-thread hand-off and wake-up, which with one rayon thread cost more than the work
/// (LJ-13 trainer bench, RAYON_NUM_THREADS=1: 3.8 → 9.9 Adam steps/s; 2 threads: same).
pub fn advance_epoch<L: Learner + Send>(l: &mut L) -> Result<Advance> {
    let e = l.epoch();
    if e.sim_done >= e.sim_total && e.train_left == 0 {
        let (sim_total, train_left) = (l.hyper().new_samples, l.hyper().train_steps);
        let seed = l.next_seed();
        *l.epoch() = Epoch {
            seed,
            sim_total,
            sim_done: 0,
            train_left,
            pending: Batch::default(),
        };
    }
    let start = Instant::now();
    let mut out = Advance::default();
    let e = l.epoch();
    if e.sim_done < e.sim_total {
        let left = e.sim_total - e.sim_done;
        let mut sizer = l.sizer().clone();
        rayon::scope(|_| sizer.timed(left, |n| l.simulate_rows(n)))?;
        *l.sizer() = sizer;
        let e = l.epoch();
        out.phase = Phase::Simulating {
            done: e.sim_done,
            total: e.sim_total,
        };
        if e.sim_done >= e.sim_total {
            out.batch = Some(std::mem::take(&mut e.pending));
            if l.buffer_empty() {
                // Every sample was dropped: nothing to train on this epoch.
                l.epoch().train_left = 0;
                out.iteration_done = true;
            }
        }
    } else {
        let r = rayon::scope(|_| l.gradient_step())?;
        let c = l.counters_mut();
        match r {
            Some(loss) => {
                out.losses.push(loss);
                c.gradient_steps += 1;
            }
            None => {
                out.skipped += 1;
                c.skipped_steps += 1;
            }
        }
        let total = l.hyper().train_steps;
        let e = l.epoch();
        e.train_left -= 1;
        out.phase = Phase::Training {
            done: total.saturating_sub(e.train_left),
            total,
        };
        out.iteration_done = e.train_left == 0;
    }
    l.counters_mut().wall_seconds += start.elapsed().as_secs_f64();
    if out.iteration_done {
        l.counters_mut().outer_iterations += 1;
        l.finish_epoch();
    }
    Ok(out)
}
