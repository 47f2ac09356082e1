//! Sampler kinds behind one trait: Adjoint Sampling, ASBS, iDEM and MCMC. A kind implements
//! one small unit of work ([`Sampler::advance`]) and sampling; the run driver ([`crate::run`])
//! owns the loop, the evaluation cadence and divergence for every kind, in the CLI and the app.
//!
//! Adding a kind: its file here, one arm of [`SamplerKind`], one line in [`build`].

pub mod adam;
pub mod adjoint;
pub mod asbs;
pub mod idem;
pub mod mcmc;

use std::path::Path;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::scene::{SamplerConfig, Scene};

/// The seed of a sampler's stream of display and evaluation draws, derived from its seed.
pub(crate) fn sample_stream(seed: u64) -> u64 {
    seed ^ 0x5341_4d50_4c45_5321 // "SAMPLES!"
}

/// The sampler kinds a scene can name in `sampler.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SamplerKind {
    /// Adjoint Sampling (Havens et al. 2025): Dirac prior, Reciprocal Adjoint Matching.
    #[default]
    Adjoint,
    /// Adjoint Schrödinger Bridge Sampler (Liu et al. 2025): a prior, a learned corrector.
    Asbs,
    /// Iterated Denoising Energy Matching (Akhound-Sadegh et al. 2024).
    Idem,
    /// Hamiltonian Monte Carlo chains, optionally with parallel tempering.
    Mcmc,
}

impl SamplerKind {
    pub const ALL: [SamplerKind; 4] = [SamplerKind::Adjoint, SamplerKind::Asbs, SamplerKind::Idem, SamplerKind::Mcmc];

    /// Lower-case name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Adjoint => "adjoint",
            SamplerKind::Asbs => "asbs",
            SamplerKind::Idem => "idem",
            SamplerKind::Mcmc => "mcmc",
        }
    }

    /// Display name.
    pub fn label(self) -> &'static str {
        match self {
            SamplerKind::Adjoint => "Adjoint Sampling",
            SamplerKind::Asbs => "ASBS",
            SamplerKind::Idem => "iDEM",
            SamplerKind::Mcmc => "MCMC",
        }
    }

    /// Whether the kind learns a network (and so has live training hyperparameters).
    pub fn learns(self) -> bool {
        self != SamplerKind::Mcmc
    }
}

impl std::str::FromStr for SamplerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        SamplerKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            format!("unknown sampler kind '{s}' (known: {})", SamplerKind::ALL.map(|k| k.name()).join(", "))
        })
    }
}

/// Hyperparameters that change while training, without a reset or losing optimiser state.
/// One set for every kind; each kind reads the fields it has (see [`LiveHyper::applies_to`]).
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
    /// iDEM: Monte-Carlo points K of the score target (K energy evaluations per example).
    #[serde(default = "default_mc_samples")]
    pub mc_samples: usize,
}

fn default_mc_samples() -> usize {
    100
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
            mc_samples: c.idem.mc_samples,
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
        c.idem.mc_samples = self.mc_samples;
    }

    /// Whether `field` means something to `kind` (the app shows only those).
    pub fn applies_to(field: &str, kind: SamplerKind) -> bool {
        match kind {
            SamplerKind::Mcmc => false,
            SamplerKind::Idem => true,
            SamplerKind::Adjoint | SamplerKind::Asbs => field != "mc_samples",
        }
    }

    /// The range checks, shared by scene files, run state and live edits, for a system of `dim`
    /// coordinates: `Err((field, what is wrong))`.
    pub fn check(&self, dim: usize) -> std::result::Result<(), (&'static str, String)> {
        use crate::limits::*;
        let dim = dim as u64;
        // Lower estimates of memory per unit: a simulated sample holds its state, noise, control
        // and energy gradient (4 f32 per coordinate); a buffer row its x and target; a trajectory
        // step of the app's playback one frame of every sample.
        let sample = 16 * dim;
        for (name, v, max, bytes) in [
            ("sde_steps", self.sde_steps, MAX_SDE_STEPS, 4 * dim * self.new_samples.min(MAX_BATCH as usize) as u64),
            ("sample_steps", self.sample_steps.unwrap_or(1), MAX_SDE_STEPS, 4 * dim),
            ("batch_size", self.batch_size, MAX_BATCH, sample),
            ("new_samples", self.new_samples, MAX_BATCH, sample),
            ("buffer_size", self.buffer_size, MAX_BUFFER, 8 * dim + 8),
            ("train_steps", self.train_steps, MAX_ITERATION_STEPS, 0),
            ("mc_samples", self.mc_samples, MAX_MC_SAMPLES, sample * self.batch_size.min(MAX_BATCH as usize) as u64),
        ] {
            count_usize(v, max, bytes).map_err(|m| (name, m))?;
        }
        if !(self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            return Err(("learning_rate", format!("must be in (0, 1) (got {})", self.learning_rate)));
        }
        if !(self.grad_clip > 0.0) {
            return Err(("grad_clip", format!("must be positive (got {})", self.grad_clip)));
        }
        Ok(())
    }

    pub fn validate(&self, dim: usize) -> Result<()> {
        self.check(dim).map_err(|(f, m)| Error::Invalid(format!("{f} {m}")))
    }
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

/// What a sampler is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Idle,
    Simulating { done: usize, total: usize },
    Training { done: usize, total: usize },
    /// MCMC: sweeps of the current block.
    Sweeping { done: usize, total: usize },
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
    /// The live hyperparameters.
    fn live(&self) -> LiveHyper;
    /// Changes the hyperparameters that need no reset.
    fn set_live(&mut self, hyper: LiveHyper) -> Result<()>;
    fn counters(&self) -> &Counters;
    /// The stage of a kind with stages (ASBS: adjoint or corrector matching; MCMC: burn-in).
    fn stage(&self) -> Option<String> {
        None
    }
    /// Restarts the generator (to draw a reproducible set of samples).
    fn reseed(&mut self, seed: u64);
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
    /// What `n` further samples cost once training stops: (energy evaluations, seconds). A
    /// learned kind needs no energy to draw (its energies are computed only to judge them); the
    /// default times a draw.
    fn draw_cost(&mut self, n: usize) -> Result<(f64, f64)> {
        let start = Instant::now();
        self.sample(n, SampleOptions { fill: true, ..SampleOptions::default() })?;
        Ok((0.0, start.elapsed().as_secs_f64()))
    }
    /// Saves everything needed to resume into `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
    /// Restores a state saved by [`save`](Sampler::save) into a sampler built from the same scene.
    fn load(&mut self, dir: &Path) -> Result<()>;
}

/// The sampler a scene asks for (`sampler.kind`), fresh, on the scene's device.
pub fn build(scene: &Scene) -> Result<Box<dyn Sampler>> {
    let device = crate::nn::select_device(&scene.sampler.device)?;
    let kind = scene.sampler.kind;
    check_system(scene)?;
    Ok(match kind {
        SamplerKind::Adjoint => Box::new(adjoint::AdjointSampler::new(scene.energy(), &scene.sampler, &scene.network, device)?),
        SamplerKind::Asbs => Box::new(asbs::AsbsSampler::new(scene.energy(), &scene.sampler, &scene.network, device)?),
        SamplerKind::Idem => Box::new(idem::IdemSampler::new(scene.energy(), &scene.sampler, &scene.network, device)?),
        SamplerKind::Mcmc => Box::new(mcmc::McmcSampler::new(scene.energy(), &scene.sampler)?),
    })
}

/// Whether the scene's sampler kind can handle its system: `Err` names the field.
pub fn check_system(scene: &Scene) -> Result<()> {
    let energy = scene.energy();
    let layout = energy.layout();
    let kind = scene.sampler.kind;
    if energy.torus() && !matches!(kind, SamplerKind::Adjoint | SamplerKind::Mcmc) {
        return Err(Error::Invalid(format!(
            "sampler.kind {kind:?} cannot handle {}: molecules in torsion space are sampled by Adjoint (torsional) or Mcmc",
            scene.name
        )));
    }
    // The harmonic prior and the equivariant corrector need particles; iDEM's score network
    // here is the EGNN too.
    if matches!(kind, SamplerKind::Asbs | SamplerKind::Idem) && !layout.com_free {
        return Err(Error::Invalid(format!(
            "sampler.kind {kind:?} cannot handle {}: it is implemented for particle systems (DW-4, LJ-n) only",
            scene.name
        )));
    }
    Ok(())
}

/// Sizes units of work so that one takes 0.15–0.5 s: bigger units use the CPU better, shorter
/// ones keep pause and shutdown prompt. Results never depend on the size (see the kinds).
#[derive(Debug, Clone)]
pub(crate) struct UnitSizer {
    size: usize,
    max: usize,
}

impl UnitSizer {
    pub(crate) fn new(start: usize, max: usize) -> Self {
        Self { size: start.max(1), max: max.max(1) }
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

/// Saved generator state (JSON numbers lose precision past 2⁵³, so the word position is text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RngState {
    pub seed: Vec<u8>,
    pub stream: u64,
    pub word_pos: String,
}

impl RngState {
    pub(crate) fn of(r: &ChaCha8Rng) -> Self {
        Self { seed: r.get_seed().to_vec(), stream: r.get_stream(), word_pos: r.get_word_pos().to_string() }
    }

    pub(crate) fn restore(&self, path: &Path) -> Result<ChaCha8Rng> {
        let seed: [u8; 32] = self.seed.as_slice().try_into().map_err(|_| Error::format(path, "rng seed must have 32 bytes"))?;
        let word_pos: u128 = self.word_pos.parse().map_err(|_| Error::format(path, "rng word position is not a number"))?;
        let mut r = ChaCha8Rng::from_seed(seed);
        r.set_stream(self.stream);
        r.set_word_pos(word_pos);
        Ok(r)
    }
}

/// Reads a JSON state file, naming the file and position in errors.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = crate::limits::read_text(path, crate::limits::TEXT_FILE_BYTES)?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("line {}, column {}: {e}", e.line(), e.column())))
}

/// Writes a JSON state file.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("state serialises");
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Where a learned kind is in its outer iteration (epoch): simulating `sim_total` new samples in
/// units, then `train_left` gradient steps. Saved with checkpoints (a half-simulated batch is not:
/// its rows are in the buffer already, so a resumed run goes on with the training steps).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Epoch {
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
    pub(crate) fn resumed(mut self) -> Self {
        self.sim_done = self.sim_done.max(self.sim_total);
        self
    }
}

/// The learned kinds (AS, ASBS, iDEM) as the shared epoch loop [`advance_epoch`] drives them:
/// each says how to simulate into its buffer and how to take one gradient step.
pub(crate) trait Learner {
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
pub(crate) fn advance_epoch<L: Learner + Send>(l: &mut L) -> Result<Advance> {
    let e = l.epoch();
    if e.sim_done >= e.sim_total && e.train_left == 0 {
        let (sim_total, train_left) = (l.hyper().new_samples, l.hyper().train_steps);
        let seed = l.next_seed();
        *l.epoch() = Epoch { seed, sim_total, sim_done: 0, train_left, pending: Batch::default() };
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
        out.phase = Phase::Simulating { done: e.sim_done, total: e.sim_total };
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
        out.phase = Phase::Training { done: total.saturating_sub(e.train_left), total };
        out.iteration_done = e.train_left == 0;
    }
    l.counters_mut().wall_seconds += start.elapsed().as_secs_f64();
    if out.iteration_done {
        l.counters_mut().outer_iterations += 1;
        l.finish_epoch();
    }
    Ok(out)
}

/// Puts a buffer's rows into a checkpoint's tensors as `NAME.x` and `NAME.a`.
pub(crate) fn save_buffer(tensors: &mut std::collections::HashMap<String, candle_core::Tensor>, name: &str, buf: &crate::buffer::ReplayBuffer) -> Result<()> {
    let (bx, ba, lw) = buf.ordered();
    let w = buf.dim();
    let rows = bx.len() / w;
    let dev = candle_core::Device::Cpu;
    tensors.insert(format!("{name}.x"), candle_core::Tensor::from_vec(bx, (rows, w), &dev)?);
    tensors.insert(format!("{name}.a"), candle_core::Tensor::from_vec(ba, (rows, w), &dev)?);
    tensors.insert(format!("{name}.log_w"), candle_core::Tensor::from_vec(lw, rows, &dev)?);
    Ok(())
}

/// Reads a buffer saved by [`save_buffer`] from `path`'s tensors; `NAME.a` may be absent (then
/// zeros, for buffers without targets), and `NAME.log_w` too (then equal weights).
pub(crate) fn load_buffer(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    name: &str,
    width: usize,
    capacity: usize,
    path: &Path,
) -> Result<crate::buffer::ReplayBuffer> {
    let get = |k: String| -> Result<Option<Vec<f32>>> {
        let Some(t) = tensors.get(&k) else { return Ok(None) };
        if t.dims().len() != 2 || t.dims()[1] != width || t.dtype() != candle_core::DType::F32 {
            return Err(Error::format(path, format!("'{k}' is {:?} of shape {:?}, expected F32 (rows, {width})", t.dtype(), t.dims())));
        }
        Ok(Some(t.flatten_all()?.to_vec1()?))
    };
    let x = get(format!("{name}.x"))?.ok_or_else(|| Error::format(path, format!("missing '{name}.x'")))?;
    let a = get(format!("{name}.a"))?.unwrap_or_else(|| vec![0.0; x.len()]);
    if a.len() != x.len() {
        return Err(Error::format(path, format!("'{name}.a' has {} values, '{name}.x' {}", a.len(), x.len())));
    }
    // Checkpoints from before importance weights were kept: all rows weigh the same.
    let log_w = match tensors.get(&format!("{name}.log_w")) {
        Some(t) => t.to_dtype(candle_core::DType::F64).and_then(|t| t.flatten_all()?.to_vec1::<f64>()).map_err(|e| Error::format(path, format!("'{name}.log_w': {}", crate::error::short(&e))))?,
        None => vec![0.0; x.len() / width],
    };
    if log_w.len() * width != x.len() {
        return Err(Error::format(path, format!("'{name}.log_w' has {} values for {} rows", log_w.len(), x.len() / width)));
    }
    Ok(crate::buffer::ReplayBuffer::from_ordered(width, capacity, x, a, log_w))
}

/// Reads a checkpoint's tensors (on the CPU), naming the file in errors.
pub(crate) fn read_tensors(path: &Path) -> Result<std::collections::HashMap<String, candle_core::Tensor>> {
    let bytes = crate::limits::read_bytes(path, crate::limits::DATA_FILE_BYTES)?;
    candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu)
        .map_err(|e| Error::format(path, format!("unreadable ({})", crate::error::short(&e))))
}

/// Writes a checkpoint's tensors, naming the file in errors.
pub(crate) fn write_tensors(tensors: &std::collections::HashMap<String, candle_core::Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(tensors, path).map_err(|e| Error::format(path, e.to_string()))
}
