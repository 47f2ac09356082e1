//! Adjoint Sampling (Havens et al. 2025): a controlled SDE dX = σ² s_θ dt + σ dW from X₀ = 0,
//! trained by Reciprocal Adjoint Matching on (X₁, ∇g(X₁)) pairs from a replay buffer.
//!
//! One outer iteration: simulate `new_samples` end points with the current network (no
//! gradients), evaluate ∇E once per sample, push (X₁, a) into the buffer; then `train_steps`
//! Adam steps on ‖s_θ(X_t, t) + a‖² with X_t drawn from the base bridge between 0 and X₁.
//! The simulation and its helpers ([`ControlledSde`], [`clipped_gradients`]) serve ASBS too.

use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::SamplerConfig;
use super::learner::{Epoch, Learner, LiveHyper, advance_epoch};
use super::registry::KindInfo;
use super::state::RngState;
use super::{Advance, Counters, SampleOptions, SamplerKind, Samples, UnitSizer, row_rng};
use crate::buffer::ReplayBuffer;
use crate::energy::{Energy, Layout, remove_com};
use crate::error::{Error, Result};
use crate::nn::{Inference, TrainedNet};
use crate::nn::{NetworkConfig, NetworkOutput};
use crate::sde::{
    NoiseSchedule, bridge_sample, euler_time, fill_normal, frames_at_uniform_times, lift,
    wrap_in_place, wrapped_normal,
};

/// Adjoint Sampling in the registry.
pub static KIND: KindInfo = KindInfo {
    variant: "Adjoint",
    name: "adjoint",
    label: "Adjoint Sampling",
    summary: "A controlled SDE from a Dirac start, trained by Reciprocal Adjoint Matching on (X₁, ∇E) pairs from a replay buffer (Havens et al. 2025); on a molecule's torsions, the torsional variant.",
    learns: true,
    samples_note: "raw samples (not importance-resampled)",
    loss_help: "Reciprocal Adjoint Matching loss ‖s(Xₜ, t) + ∇g(X₁)‖² per gradient step; it has a noise floor, so watch the trend",
    stage_help: "",
    weights: true,
    section: None,
    accepts: |_| Ok(()),
    build: |energy, sampler, network| {
        Ok(Box::new(AdjointSampler::new(
            energy,
            sampler,
            network,
            crate::nn::select_device(&sampler.device)?,
        )?))
    },
    rows: super::hyper::learner_rows,
};

/// What one outer iteration did (see [`AdjointSampler::step`]).
#[derive(Debug, Clone, Default)]
pub struct IterationReport {
    /// Loss of each applied Adam step, in order.
    pub losses: Vec<f32>,
    pub skipped_steps: u64,
    pub dropped_samples: u64,
}

/// The most rows pushed through the network at once while simulating (bounds memory).
const SIM_CHUNK: usize = 1024;

/// The controlled SDE dX = σ(t)² s dt + σ(t) dW on an Euler grid t_k = (k/N)^warp, with
/// s = output_scale(t) · network output (AS and ASBS).
#[derive(Debug, Clone, Copy)]
pub struct ControlledSde {
    pub schedule: NoiseSchedule,
    pub layout: Layout,
    pub output: NetworkOutput,
    pub time_warp: f64,
    /// The coordinates are angles: every Euler step wraps onto the torus (torsional variant).
    pub torus: bool,
}

impl ControlledSde {
    /// X_t drawn from the base process's bridge between the origin and each row of `x1`, at
    /// each row's time `t`. On the torus the bridge is lifted: each end point is unwrapped by a
    /// winding drawn from the base process's weights, bridged in the plane, and wrapped back.
    fn bridge(&self, layout: Layout, x1: &[f32], t: &[f32], rng: &mut ChaCha8Rng) -> Vec<f32> {
        if !self.torus {
            return bridge_sample(&self.schedule, layout, x1, t, rng);
        }
        let nu1 = self.schedule.nu1();
        let lifted: Vec<f32> = x1.iter().map(|&y| lift(y, nu1, rng)).collect();
        let mut xt = bridge_sample(&self.schedule, layout, &lifted, t, rng);
        wrap_in_place(&mut xt);
        xt
    }
}

/// Simulated paths: end points, the first path's frames (if asked), and each path's control cost
/// Σₖ (√Δνₖ s·ξₖ + ½Δνₖ‖s‖²), the discrete form of Σₖ (√Δt uₖ·ξₖ + ½Δt‖uₖ‖²).
pub struct Paths {
    pub x: Vec<f32>,
    pub frames: Option<Vec<Vec<f32>>>,
    pub cost: Vec<f64>,
}

impl ControlledSde {
    /// s = output_scale(t) · network output: 1, or 1/σ(t) when the network outputs the control.
    pub fn output_scale(&self, t: f32) -> f32 {
        match self.output {
            NetworkOutput::Score => 1.0,
            NetworkOutput::Control => (1.0 / self.schedule.sigma(t as f64)) as f32,
        }
    }

    /// Simulates the rows `x0` (n × dim starting points, e.g. zeros) forward to t = 1 with
    /// `steps` Euler steps. Row i draws its noise from [`row_rng`]`(seed, first_row + i)`, so
    /// the paths do not depend on how a simulation is split into calls.
    pub fn simulate(
        &self,
        net: &Inference,
        x0: Vec<f32>,
        steps: usize,
        seed: u64,
        first_row: usize,
        keep_path: bool,
    ) -> Result<Paths> {
        // On a rayon worker: called from the main thread, every small parallel loop is a
        // cross-thread hand-off (see `AdjointSampler::train_step`).
        rayon::scope(|_| {
            let dim = self.layout.dim();
            let n = x0.len() / dim;
            let mut x = x0;
            let mut cost = vec![0.0f64; n];
            let mut frames = keep_path.then(Vec::new);
            let mut lo = 0;
            while lo < n {
                let hi = (lo + SIM_CHUNK).min(n);
                let path = self.simulate_chunk(
                    net,
                    &mut x[lo * dim..hi * dim],
                    &mut cost[lo..hi],
                    steps,
                    seed,
                    first_row + lo,
                    keep_path && lo == 0,
                )?;
                if keep_path && lo == 0 {
                    frames = Some(path);
                }
                lo = hi;
            }
            Ok(Paths { x, frames, cost })
        })
    }

    fn simulate_chunk(
        &self,
        net: &Inference,
        x: &mut [f32],
        cost: &mut [f64],
        steps: usize,
        seed: u64,
        first_row: usize,
        keep_path: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let dim = self.layout.dim();
        let b = cost.len();
        let mut rngs: Vec<ChaCha8Rng> = (0..b).map(|i| row_rng(seed, first_row + i)).collect();
        let mut noise = vec![0.0f32; b * dim];
        let mut path = Vec::new();
        if keep_path {
            path.push(x[..dim].to_vec());
        }
        for k in 0..steps {
            let (t, t_next) = (
                euler_time(k, steps, self.time_warp),
                euler_time(k + 1, steps, self.time_warp),
            );
            // Each step adds exactly the base variance Δν = ν(t_k+1) − ν(t_k) (σ² Δt at the left end
            // would overshoot ν(1) by ~8% at 100 steps, all of it at early times, and bias the
            // fixed point of the reciprocal iteration toward hot samples).
            let dnu = self.schedule.nu(t_next) - self.schedule.nu(t);
            let mut s = net.run(x, &vec![t as f32; b])?;
            let c = self.output_scale(t as f32);
            if c != 1.0 {
                s.iter_mut().for_each(|v| *v *= c);
            }
            for (row, rng) in noise.chunks_mut(dim).zip(rngs.iter_mut()) {
                fill_normal(row, rng);
            }
            remove_com(&mut noise, self.layout);
            let (drift, diffusion) = (dnu as f32, dnu.sqrt() as f32);
            for i in 0..b {
                let mut dot = 0.0f64;
                let mut ss = 0.0f64;
                for j in i * dim..(i + 1) * dim {
                    x[j] += drift * s[j] + diffusion * noise[j];
                    dot += s[j] as f64 * noise[j] as f64;
                    ss += (s[j] as f64).powi(2);
                }
                // √Δt u·ξ + ½Δt‖u‖² with u = σ s and σ²Δt → Δν.
                cost[i] += dnu.sqrt() * dot + 0.5 * dnu * ss;
            }
            remove_com(x, self.layout);
            if self.torus {
                wrap_in_place(x);
            }
            if keep_path {
                path.push(x[..dim].to_vec());
            }
        }
        Ok(path)
    }
}

/// Energies and per-particle clipped gradients at rows `y` of the sampler's coordinates
/// (E(y) means E(scale·y), so ∇_y = scale·∇E), centre of mass removed from the gradients.
/// Energies come back NaN where not finite.
pub fn clipped_gradients(
    energy: &dyn Energy,
    y: &[f32],
    scale: f32,
    clip: f32,
) -> (Vec<f64>, Vec<f32>) {
    let layout = energy.layout();
    let dim = layout.dim();
    let n = y.len() / dim;
    let mut e = vec![0.0f32; n];
    let mut g = vec![0.0f32; n * dim];
    if scale == 1.0 {
        energy.batch_energy_grad(y, &mut e, &mut g);
    } else {
        let x: Vec<f32> = y.iter().map(|v| v * scale).collect();
        energy.batch_energy_grad(&x, &mut e, &mut g);
        g.iter_mut().for_each(|v| *v *= scale);
    }
    remove_com(&mut g, layout);
    for p in g.chunks_mut(layout.spatial_dim) {
        let norm = p.iter().map(|v| v * v).sum::<f32>().sqrt();
        let c = (clip / (norm + 1e-6)).min(1.0);
        p.iter_mut().for_each(|v| *v *= c);
    }
    (
        e.iter()
            .map(|&v| if v.is_finite() { v as f64 } else { f64::NAN })
            .collect(),
        g,
    )
}

/// Whether a simulated end point is unusable: non-finite, or 20 base standard deviations out
/// (a blown-up simulation, not a sample: its target a ≈ −x/ν(1) would teach the network to
/// blow up further).
pub fn unusable(x: &[f32], g: &[f32], energy: f64, far: f32) -> bool {
    !energy.is_finite()
        || x.iter().any(|v| v.abs() > far)
        || x.iter().chain(g).any(|v| !v.is_finite())
}

/// The Adjoint Sampling trainer: network, optimizer, replay buffer, generator and counters.
pub struct AdjointSampler {
    energy: Box<dyn Energy>,
    layout: Layout,
    /// The SDE, network and buffer live in y = x / scale; samples leave as x.
    scale: f32,
    sde: ControlledSde,
    /// The settings as they stand (live edits included).
    cfg: SamplerConfig,
    /// The live values the loop reads, refreshed from `cfg`.
    hyper: LiveHyper,
    net: TrainedNet,
    buffer: ReplayBuffer,
    /// Draw training pairs in proportion to their importance weights (scene `reweight_buffer`).
    reweight: bool,
    /// Simulate training samples with the weight average (scene `ema_in_training`).
    ema_in_training: bool,
    rng: ChaCha8Rng,
    /// Seeds of the samples drawn to show, judge or export (`sample`): a stream of their own, so
    /// that how often the app draws them never changes training (forks and sessions replay
    /// exactly). Not checkpointed: after a resume these draws start their stream again.
    sample_rng: ChaCha8Rng,
    epoch: Epoch,
    sizer: UnitSizer,
    pub counters: Counters,
}

impl AdjointSampler {
    /// A fresh run: weights drawn from `seed`, empty buffer.
    pub fn new(
        energy: Box<dyn Energy>,
        sampler: &SamplerConfig,
        network: &NetworkConfig,
        device: Device,
    ) -> Result<Self> {
        check_sde_config(sampler)?;
        let hyper = LiveHyper::from_config(sampler);
        hyper.validate(energy.layout().dim())?;
        let layout = energy.layout();
        let schedule = NoiseSchedule::new(sampler.sigma_min, sampler.sigma_max);
        let mut rng = ChaCha8Rng::seed_from_u64(sampler.seed);
        let net = TrainedNet::new(
            network,
            layout,
            sampler.sigma_max,
            hyper.learning_rate,
            sampler.ema,
            &mut rng,
            &device,
        )?;
        let buffer = ReplayBuffer::new(layout.dim(), hyper.buffer_size);
        let sde = ControlledSde {
            schedule,
            layout,
            output: network.output,
            time_warp: sampler.time_warp,
            torus: energy.torus(),
        };
        Ok(Self {
            energy,
            layout,
            scale: sampler.scale as f32,
            sde,
            cfg: sampler.clone(),
            hyper,
            net,
            buffer,
            reweight: sampler.reweight_buffer,
            ema_in_training: sampler.ema_in_training,
            rng,
            sample_rng: ChaCha8Rng::seed_from_u64(super::sample_stream(sampler.seed)),
            epoch: Epoch::default(),
            sizer: UnitSizer::new(32, SIM_CHUNK),
            counters: Counters::default(),
        })
    }

    pub fn hyper(&self) -> &LiveHyper {
        &self.hyper
    }

    pub fn buffer_len(&self) -> usize {
        self.buffer.len()
    }

    /// The learned s_θ(x, t) at rows `x` (n × dim) and one time `t`, as n × dim values.
    pub fn control(&self, x: &[f32], t: f32) -> Result<Vec<f32>> {
        let n = x.len() / self.layout.dim();
        let mut s = self.net.infer(x, &vec![t; n], false)?;
        let c = self.sde.output_scale(t);
        s.iter_mut().for_each(|v| *v *= c);
        Ok(s)
    }

    /// Applies new live hyperparameters; Adam's moments and the buffer's contents are kept.
    pub fn set_hyper(&mut self, hyper: LiveHyper) -> Result<()> {
        hyper.validate(self.layout.dim())?;
        self.net.set_learning_rate(hyper.learning_rate);
        if hyper.buffer_size != self.buffer.capacity() {
            self.buffer.set_capacity(hyper.buffer_size);
        }
        self.hyper = hyper;
        Ok(())
    }

    /// One whole outer iteration: simulate and push new samples, then `train_steps` Adam steps.
    pub fn step(&mut self) -> Result<IterationReport> {
        let mut report = IterationReport::default();
        let dropped_before = self.counters.dropped_samples;
        loop {
            let a = advance_epoch(self)?;
            report.losses.extend(a.losses);
            report.skipped_steps += a.skipped;
            if a.iteration_done {
                break;
            }
        }
        report.dropped_samples = self.counters.dropped_samples - dropped_before;
        Ok(report)
    }

    fn count_simulation(&mut self, n: usize, steps: usize) {
        self.counters.samples_simulated += n as u64;
        self.counters.network_forward += (n * steps) as u64;
    }

    /// Adjoint targets a = clip(∇E(Y₁)) − Y₁/ν(1) (τ = 1) into the buffer, with the paths' log
    /// importance weights (`cost`: their control costs). Returns the energies (NaN where not
    /// finite) and the log weights; unusable samples are dropped and counted.
    fn push_to_buffer(&mut self, y: &[f32], cost: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let dim = self.layout.dim();
        let (energies, g) = clipped_gradients(
            self.energy.as_ref(),
            y,
            self.scale,
            self.hyper.grad_clip as f32,
        );
        self.counters.energy_evals += energies.len() as u64;
        let targets = if self.sde.torus {
            torus_adjoint_targets(&self.sde.schedule, y, &g)
        } else {
            adjoint_targets(&self.sde.schedule, y, &g)
        };
        let log_w = self.log_weights(y, &energies, cost);
        let far = (20.0 * self.sde.schedule.nu1().sqrt()) as f32;
        let (mut xs, mut as_, mut ws) = (
            Vec::with_capacity(y.len()),
            Vec::with_capacity(y.len()),
            Vec::with_capacity(energies.len()),
        );
        for (i, &e) in energies.iter().enumerate() {
            let r = i * dim..(i + 1) * dim;
            if unusable(&y[r.clone()], &g[r.clone()], e, far) {
                self.counters.dropped_samples += 1;
                continue;
            }
            xs.extend_from_slice(&y[r.clone()]);
            as_.extend_from_slice(&targets[r]);
            ws.push(log_w[i]);
        }
        self.buffer.push_weighted(&xs, &as_, &ws);
        (energies, log_w)
    }

    /// One Adam step of Reciprocal Adjoint Matching; `None` if it was skipped as non-finite.
    fn train_step(&mut self) -> Result<Option<f32>> {
        if self.buffer.is_empty() {
            return Err(Error::Invalid(
                "the replay buffer is empty: simulate a batch first".into(),
            ));
        }
        let bs = self.hyper.batch_size;
        let (x1, a) = if self.reweight {
            self.buffer.sample_weighted(bs, &mut self.rng)
        } else {
            self.buffer.sample(bs, &mut self.rng)
        };
        let t: Vec<f32> = (0..bs).map(|_| self.rng.random::<f32>()).collect();
        let xt = self.sde.bridge(self.layout, &x1, &t, &mut self.rng);
        let c: Vec<f32> = t.iter().map(|&t| self.sde.output_scale(t)).collect();
        self.counters.network_backward += bs as u64;
        self.net.train_step(&xt, &t, |first, out| {
            regression_loss(out, &a, &c, first, self.layout.dim(), bs)
        })
    }

    /// Draws `n` samples from the current controlled SDE (Euler–Maruyama, `sample_steps` steps).
    pub fn sample(&mut self, n: usize, opts: SampleOptions) -> Result<Samples> {
        let steps = self.hyper.sample_steps.unwrap_or(self.hyper.sde_steps);
        let seed = opts.seed.unwrap_or_else(|| self.sample_rng.random());
        let paths = self.sde.simulate(
            &self.net.inference(true)?,
            vec![0.0; n * self.layout.dim()],
            steps,
            seed,
            0,
            opts.trajectory,
        )?;
        self.count_simulation(n, steps);
        let x = self.to_original(paths.x.clone());
        let energies = self.energy.batch_energy(&x);
        self.counters.eval_energy_evals += n as u64;
        let log_weights = opts
            .weights
            .then(|| self.log_weights(&paths.x, &energies, &paths.cost));
        let trajectory = paths.frames.map(|frames| {
            frames_at_uniform_times(frames, self.sde.time_warp)
                .into_iter()
                .map(|f| self.to_original(f))
                .collect()
        });
        Ok(Samples {
            x,
            energies,
            trajectory,
            log_weights,
        })
    }

    /// `n` buffer rows bridged to time `t`, with their regression targets −∇g(X₁): the pairs
    /// (X_t, target) that s(X_t, t) is fitted to, X_t in the system's coordinates. The display
    /// stream draws them, so showing them never changes training. Empty before the first batch.
    pub fn examples_at(&mut self, n: usize, t: f32) -> (Vec<f32>, Vec<f32>) {
        if self.buffer.is_empty() || n == 0 {
            return (Vec::new(), Vec::new());
        }
        let (x1, a) = self.buffer.sample(n, &mut self.sample_rng);
        let ts = vec![t; n];
        let xt = self.sde.bridge(self.layout, &x1, &ts, &mut self.sample_rng);
        // The buffer keeps ∇g(X₁) (clipped); the field is fitted to its negative.
        (self.to_original(xt), a.into_iter().map(|v| -v).collect())
    }

    /// Sampler coordinates → the system's coordinates.
    fn to_original(&self, mut y: Vec<f32>) -> Vec<f32> {
        if self.scale != 1.0 {
            y.iter_mut().for_each(|v| *v *= self.scale);
        }
        y
    }

    /// log w = −g(Y₁) − control cost per path, in the sampler's coordinates (the Jacobian of
    /// x = scale·y is a constant, which normalised weights do not see) (science.md §2); −∞ where E is not finite.
    fn log_weights(&self, x: &[f32], energies: &[f64], cost: &[f64]) -> Vec<f64> {
        let dim = self.layout.dim();
        let nu = self.sde.schedule.nu1();
        // The base marginal lives on the CoM-free subspace for particle systems.
        let d_eff = if self.layout.com_free {
            (self.layout.particles - 1) * self.layout.spatial_dim
        } else {
            dim
        } as f64;
        let log_norm = 0.5 * d_eff * (2.0 * std::f64::consts::PI * nu).ln();
        // log p_base(Y₁): the wrapped normal on the torus, a Gaussian in the plane.
        let log_base = |row: &[f32]| -> f64 {
            if self.sde.torus {
                row.iter().map(|&v| wrapped_normal(v as f64, nu).0).sum()
            } else {
                -0.5 * row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / nu - log_norm
            }
        };
        energies
            .iter()
            .zip(cost)
            .enumerate()
            .map(|(i, (&e, &c))| {
                if !e.is_finite() {
                    return f64::NEG_INFINITY;
                }
                -(e + log_base(&x[i * dim..(i + 1) * dim])) - c
            })
            .collect()
    }

    /// Writes `checkpoint.safetensors` (weights) and `state.safetensors` + `state.json`
    /// (Adam moments, buffer, generator, counters, hyperparameters) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.net.save_weights(&dir.join("checkpoint.safetensors"))?;
        let mut tensors: std::collections::HashMap<String, Tensor> =
            self.net.state("")?.into_iter().collect();
        super::state::save_buffer(&mut tensors, "buffer", &self.buffer)?;
        super::state::write_tensors(&tensors, &dir.join("state.safetensors"))?;
        let json = TrainState {
            counters: self.counters.clone(),
            hyper: self.hyper.clone(),
            adam_step: self.net.adam_steps(),
            rng: RngState::of(&self.rng),
            iteration: self.epoch.clone(),
        };
        super::state::write_json(&dir.join("state.json"), &json)
    }

    /// Restores a run saved by [`save`](Self::save) into a sampler built from the same scene.
    /// A run saved in the middle of an iteration's simulation starts that iteration again.
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        self.net.load_weights(&dir.join("checkpoint.safetensors"))?;
        let state = dir.join("state.safetensors");
        let tensors = super::state::read_tensors(&state)?;
        let path = dir.join("state.json");
        let js: TrainState = super::state::read_json(&path)?;
        js.hyper
            .validate(self.layout.dim())
            .map_err(|e| Error::format(&path, e.to_string()))?;
        self.net.load_state(&tensors, "", js.adam_step, &state)?;
        if !tensors.contains_key("buffer.a") {
            return Err(Error::format(&state, "missing 'buffer.a'"));
        }
        let buffer = super::state::load_buffer(
            &tensors,
            "buffer",
            self.layout.dim(),
            js.hyper.buffer_size,
            &state,
        )?;
        js.hyper.apply_to(&mut self.cfg);
        self.set_hyper(js.hyper)?;
        self.buffer = buffer;
        self.rng = js.rng.restore(&path)?;
        self.counters = js.counters;
        self.epoch = js.iteration.resumed();
        Ok(())
    }
}

/// Checks of the SDE settings shared by AS and ASBS. A scene file checks narrower ranges; this
/// guards callers that build a config in code.
pub(crate) fn check_sde_config(sampler: &SamplerConfig) -> Result<()> {
    if !(sampler.sigma_min > 0.0 && sampler.sigma_min < sampler.sigma_max) {
        return Err(Error::Invalid("need 0 < sigma_min < sigma_max".into()));
    }
    // t_k = (k/N)^w is an increasing grid from 0 to 1 only for a positive, finite w.
    if !(sampler.time_warp > 0.0 && sampler.time_warp.is_finite()) {
        return Err(Error::Invalid(format!(
            "time_warp must be positive (got {})",
            sampler.time_warp
        )));
    }
    if !(sampler.scale > 0.0 && sampler.scale.is_finite()) {
        return Err(Error::Invalid(format!(
            "scale must be positive (got {})",
            sampler.scale
        )));
    }
    if !(0.0..1.0).contains(&sampler.ema) {
        return Err(Error::Invalid(format!(
            "ema must be in [0, 1) (got {})",
            sampler.ema
        )));
    }
    Ok(())
}

/// AS's adjoint targets a = ∇g(y) = clip(∇E(y)) − y/ν(1) for end points `y` and clipped
/// gradients `g` (τ = 1): the corrector of ASBS with a Dirac prior at 0, in closed form.
pub fn adjoint_targets(schedule: &NoiseSchedule, y: &[f32], g: &[f32]) -> Vec<f32> {
    let inv_nu1 = (1.0 / schedule.nu1()) as f32;
    y.iter().zip(g).map(|(x, g)| g - x * inv_nu1).collect()
}

/// The torsional variant's targets a = ∇g(y) = clip(∇E(y)) + ∇ log WN(y; 0, ν(1)): the base
/// marginal at t = 1 is the wrapped normal on the torus.
pub fn torus_adjoint_targets(schedule: &NoiseSchedule, y: &[f32], g: &[f32]) -> Vec<f32> {
    let nu1 = schedule.nu1();
    y.iter()
        .zip(g)
        .map(|(&x, &g)| g + wrapped_normal(x as f64, nu1).1 as f32)
        .collect()
}

/// The regression loss mean‖c·out + a‖² over a batch of `bs` rows, for the rows of one chunk
/// starting at `first`: (chunk's share of the loss, d loss / d out).
pub fn regression_loss(
    out: &[f32],
    a: &[f32],
    c: &[f32],
    first: usize,
    dim: usize,
    bs: usize,
) -> (f64, Vec<f32>) {
    let scale = 1.0 / (bs * dim) as f64;
    let mut loss = 0.0f64;
    let dout = out
        .iter()
        .enumerate()
        .map(|(k, &o)| {
            let i = first * dim + k;
            let r = c[i / dim] * o + a[i];
            loss += (r as f64).powi(2);
            (2.0 * scale) as f32 * r * c[i / dim]
        })
        .collect();
    (loss * scale, dout)
}

impl Learner for AdjointSampler {
    fn epoch(&mut self) -> &mut Epoch {
        &mut self.epoch
    }
    fn sizer(&mut self) -> &mut UnitSizer {
        &mut self.sizer
    }
    fn hyper(&self) -> &LiveHyper {
        &self.hyper
    }
    fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }
    fn next_seed(&mut self) -> u64 {
        self.rng.random()
    }
    /// Simulates the next `n` rows of the epoch, evaluates E and ∇E once each and pushes
    /// (X₁, a) into the buffer.
    fn simulate_rows(&mut self, n: usize) -> Result<()> {
        let dim = self.layout.dim();
        let (seed, first) = (self.epoch.seed, self.epoch.sim_done);
        let paths = self.sde.simulate(
            &self.net.inference(self.ema_in_training)?,
            vec![0.0; n * dim],
            self.hyper.sde_steps,
            seed,
            first,
            false,
        )?;
        self.count_simulation(n, self.hyper.sde_steps);
        let (energies, log_weights) = self.push_to_buffer(&paths.x, &paths.cost);
        let x = self.to_original(paths.x);
        let e = &mut self.epoch;
        e.sim_done += n;
        e.pending.x.extend(x);
        e.pending.energies.extend(energies);
        e.pending
            .log_weights
            .get_or_insert_with(Vec::new)
            .extend(log_weights);
        Ok(())
    }
    fn gradient_step(&mut self) -> Result<Option<f32>> {
        self.train_step()
    }
    fn buffer_empty(&self) -> bool {
        self.buffer.is_empty()
    }
}

/// The JSON part of a checkpoint.
#[derive(Serialize, Deserialize)]
struct TrainState {
    counters: Counters,
    hyper: LiveHyper,
    adam_step: u64,
    rng: RngState,
    #[serde(default)]
    iteration: Epoch,
}

impl super::Sampler for AdjointSampler {
    fn control_field(&self, x: &[f32], t: f32) -> Option<Result<Vec<f32>>> {
        // The network works in x / scale.
        let y: Vec<f32> = x.iter().map(|v| v / self.scale).collect();
        Some(self.control(&y, t))
    }
    fn regression_examples(&mut self, n: usize, t: f32) -> Option<Result<(Vec<f32>, Vec<f32>)>> {
        Some(Ok(self.examples_at(n, t)))
    }
    fn kind(&self) -> SamplerKind {
        SamplerKind::of(&KIND)
    }
    fn energy(&self) -> &dyn Energy {
        self.energy.as_ref()
    }
    fn advance(&mut self) -> Result<Advance> {
        advance_epoch(self)
    }
    fn sample(&mut self, n: usize, opts: SampleOptions) -> Result<Samples> {
        AdjointSampler::sample(self, n, opts)
    }
    fn config(&self) -> &SamplerConfig {
        &self.cfg
    }
    fn set_hyper(&mut self, key: &str, value: f64) -> Result<()> {
        let mut cfg = self.cfg.clone();
        super::hyper::set_live(&(KIND.rows)(), &mut cfg, key, value, self.layout.dim())?;
        AdjointSampler::set_hyper(self, LiveHyper::from_config(&cfg))?;
        self.cfg = cfg;
        Ok(())
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
    fn log_weight_offset(&self) -> Option<f64> {
        // The weights live in y = x / scale (see `log_weights`): Z_x = scale^dof · Z_y.
        let dof = if self.layout.com_free {
            (self.layout.particles - 1) * self.layout.spatial_dim
        } else {
            self.layout.dim()
        };
        Some(dof as f64 * (self.scale as f64).ln())
    }
    fn save(&self, dir: &Path) -> Result<()> {
        AdjointSampler::save(self, dir)
    }
    fn load(&mut self, dir: &Path) -> Result<()> {
        AdjointSampler::load(self, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::DoubleWell;
    use crate::nn::NetworkKind;

    /// Each simulated row draws its noise from its own stream, so a simulation split into
    /// calls of any size gives the same paths bit for bit (the app and the CLI adapt their unit
    /// of work to the machine's speed; a run must not depend on it).
    #[test]
    fn simulations_do_not_depend_on_how_they_are_split() {
        let layout = DoubleWell::dw4().layout();
        let net_cfg = NetworkConfig {
            kind: NetworkKind::Egnn,
            layers: 2,
            hidden: 16,
            output: NetworkOutput::Control,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let net =
            TrainedNet::new(&net_cfg, layout, 2.0, 1e-3, 0.0, &mut rng, &Device::Cpu).unwrap();
        let sde = ControlledSde {
            schedule: NoiseSchedule::new(1e-2, 2.0),
            layout,
            output: NetworkOutput::Control,
            time_warp: 1.0,
            torus: false,
        };
        let inf = net.inference(false).unwrap();
        let dim = layout.dim();
        let whole = sde
            .simulate(&inf, vec![0.0; 10 * dim], 30, 99, 0, false)
            .unwrap();
        let a = sde
            .simulate(&inf, vec![0.0; 3 * dim], 30, 99, 0, false)
            .unwrap();
        let b = sde
            .simulate(&inf, vec![0.0; 7 * dim], 30, 99, 3, false)
            .unwrap();
        let mut split = a.x.clone();
        split.extend(b.x);
        assert_eq!(whole.x, split);
        let mut cost = a.cost.clone();
        cost.extend(b.cost);
        assert_eq!(whole.cost, cost);
    }
}
