//! Adjoint Sampling (Havens et al. 2025): a controlled SDE dX = σ² s_θ dt + σ dW from X₀ = 0,
//! trained by Reciprocal Adjoint Matching on (X₁, ∇g(X₁)) pairs from a replay buffer.
//!
//! One outer iteration: simulate `new_samples` end points with the current network (no
//! gradients), evaluate ∇E once per sample, push (X₁, a) into the buffer; then `train_steps`
//! Adam steps on ‖s_θ(X_t, t) + a‖² with X_t drawn from the base bridge between 0 and X₁.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::adam::{Adam, StepOutcome};
use crate::buffer::ReplayBuffer;
use crate::energy::{Energy, Layout, remove_com};
use crate::error::{Error, Result};
use crate::nn::{ControlNet, Init};
use crate::scene::{NetworkConfig, NetworkOutput, SamplerConfig, Scene};
use crate::sde::{NoiseSchedule, bridge_sample, euler_time, fill_normal, frames_at_uniform_times};

/// Hyperparameters that change while training, without a reset or losing Adam's moments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveHyper {
    pub learning_rate: f64,
    pub batch_size: usize,
    pub new_samples: usize,
    pub train_steps: usize,
    pub grad_clip: f64,
    pub sde_steps: usize,
    /// Steps when drawing samples ([`AdjointSampler::sample`]); `None`: `sde_steps`.
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

    fn validate(&self) -> Result<()> {
        let positive = [
            ("batch_size", self.batch_size),
            ("new_samples", self.new_samples),
            ("train_steps", self.train_steps),
            ("sde_steps", self.sde_steps),
            ("sample_steps", self.sample_steps.unwrap_or(1)),
            ("buffer_size", self.buffer_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::Invalid(format!("{name} must be at least 1")));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            return Err(Error::Invalid(format!("learning_rate must be in (0, 1) (got {})", self.learning_rate)));
        }
        if !(self.grad_clip > 0.0) {
            return Err(Error::Invalid(format!("grad_clip must be positive (got {})", self.grad_clip)));
        }
        Ok(())
    }
}

/// Running totals of a training run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub outer_iterations: u64,
    /// Adam updates applied.
    pub gradient_steps: u64,
    /// Energy (+ gradient) evaluations.
    pub energy_evals: u64,
    /// End points simulated (training and evaluation).
    pub samples_simulated: u64,
    /// Adam steps refused because the loss or a gradient was NaN/inf.
    pub skipped_steps: u64,
    /// Simulated samples dropped because X₁, E or ∇E was NaN/inf, or X₁ had blown up
    /// (a coordinate beyond 20 standard deviations of the base process).
    pub dropped_samples: u64,
    /// Seconds spent inside training calls.
    pub wall_seconds: f64,
}

/// What one outer iteration did.
#[derive(Debug, Clone, Default)]
pub struct IterationReport {
    /// Loss of each applied Adam step, in order.
    pub losses: Vec<f32>,
    pub skipped_steps: u64,
    pub dropped_samples: u64,
}

/// Options of [`AdjointSampler::sample`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleOptions {
    /// Keep the path of the first sample over SDE time (steps + 1 frames).
    pub trajectory: bool,
    /// Compute log importance weights of every sample.
    pub weights: bool,
}

/// Samples drawn from the current controlled SDE.
#[derive(Debug, Clone)]
pub struct Samples {
    /// End points X₁, n × dim (centre of mass removed for particle systems).
    pub x: Vec<f32>,
    /// Energies E(X₁) (NaN where not finite).
    pub energies: Vec<f64>,
    /// Frames of the first sample at t = k/steps, k = 0..=steps, each `dim` values.
    pub trajectory: Option<Vec<Vec<f32>>>,
    /// log w = −g(X₁) − Σₖ (√Δt uₖ·ξₖ + ½Δt‖uₖ‖²), science.md §2.
    pub log_weights: Option<Vec<f64>>,
}

/// End points simulated for training, as pushed into the buffer.
#[derive(Debug, Clone)]
pub struct Batch {
    /// n × dim, centre of mass removed for particle systems.
    pub x: Vec<f32>,
    /// E(X₁); NaN where not finite (those samples were not pushed).
    pub energies: Vec<f64>,
    /// Log importance weights, as in [`Samples::log_weights`].
    pub log_weights: Vec<f64>,
    pub dropped: u64,
}

/// The Adjoint Sampling trainer: network, optimizer, replay buffer, generator and counters.
pub struct AdjointSampler {
    energy: Box<dyn Energy>,
    layout: Layout,
    /// The SDE, network and buffer live in y = x / scale; samples leave as x.
    scale: f32,
    schedule: NoiseSchedule,
    /// How the network's output becomes s (see [`NetworkOutput`]).
    output: NetworkOutput,
    hyper: LiveHyper,
    varmap: VarMap,
    net: ControlNet,
    opt: Adam,
    buffer: ReplayBuffer,
    rng: ChaCha8Rng,
    device: Device,
    /// Moving average of the weights, used for simulating when the scene asks for it.
    ema: Option<Ema>,
    /// Gradient steps skipped as non-finite since the last applied one.
    skipped_in_a_row: u64,
    /// Exponent of the Euler grid t_k = (k/N)^time_warp (see [`SamplerConfig`]).
    time_warp: f64,
    pub counters: Counters,
}

/// Consecutive skipped (non-finite) gradient steps after which a run counts as diverged.
pub const DIVERGED_AFTER: u64 = 50;

/// An exponential moving average of the network's weights, in its own network.
struct Ema {
    decay: f64,
    varmap: VarMap,
    net: ControlNet,
}

impl Ema {
    fn new(decay: f64, network: &NetworkConfig, layout: Layout, input_scale: f64, weights: &VarMap, device: &Device) -> Result<Ema> {
        let varmap = VarMap::new();
        // The initial values are overwritten by the current weights below; this generator only
        // shapes the parameters and never touches the run's own.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let net = ControlNet::new(network, layout, input_scale, &mut Init { varmap: &varmap, rng: &mut rng, device })?;
        let ema = Ema { decay, varmap, net };
        ema.copy_from(weights)?;
        Ok(ema)
    }

    fn copy_from(&self, weights: &VarMap) -> Result<()> {
        let src = weights.data().lock().expect("varmap lock");
        for (name, v) in self.varmap.data().lock().expect("varmap lock").iter() {
            v.set(src[name].as_tensor())?;
        }
        Ok(())
    }

    /// ema ← d·ema + (1 − d)·w for every parameter.
    fn update(&self, weights: &VarMap) -> Result<()> {
        let src = weights.data().lock().expect("varmap lock");
        for (name, v) in self.varmap.data().lock().expect("varmap lock").iter() {
            let next = ((v.as_tensor() * self.decay)? + (src[name].as_tensor() * (1.0 - self.decay))?)?;
            v.set(&next)?;
        }
        Ok(())
    }
}

/// The most rows pushed through the network at once while simulating (bounds memory).
const SIM_CHUNK: usize = 1024;

impl AdjointSampler {
    /// A fresh run: weights drawn from `seed`, empty buffer.
    pub fn new(energy: Box<dyn Energy>, sampler: &SamplerConfig, network: &NetworkConfig, device: Device) -> Result<Self> {
        let hyper = LiveHyper::from_config(sampler);
        hyper.validate()?;
        if !(sampler.sigma_min > 0.0 && sampler.sigma_min < sampler.sigma_max) {
            return Err(Error::Invalid("need 0 < sigma_min < sigma_max".into()));
        }
        // A scene file checks a narrower range; this guards callers that build a config in code:
        // t_k = (k/N)^w is an increasing grid from 0 to 1 only for a positive, finite w.
        if !(sampler.time_warp > 0.0 && sampler.time_warp.is_finite()) {
            return Err(Error::Invalid(format!("time_warp must be positive (got {})", sampler.time_warp)));
        }
        if !(sampler.scale > 0.0 && sampler.scale.is_finite()) {
            return Err(Error::Invalid(format!("scale must be positive (got {})", sampler.scale)));
        }
        if !(0.0..1.0).contains(&sampler.ema) {
            return Err(Error::Invalid(format!("ema must be in [0, 1) (got {})", sampler.ema)));
        }
        let layout = energy.layout();
        let schedule = NoiseSchedule::new(sampler.sigma_min, sampler.sigma_max);
        let mut rng = ChaCha8Rng::seed_from_u64(sampler.seed);
        let varmap = VarMap::new();
        let net = {
            let mut init = Init { varmap: &varmap, rng: &mut rng, device: &device };
            ControlNet::new(network, layout, sampler.sigma_max, &mut init)?
        };
        let vars: Vec<(String, candle_core::Var)> =
            varmap.data().lock().expect("varmap lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let opt = Adam::new(vars, hyper.learning_rate)?;
        let buffer = ReplayBuffer::new(layout.dim(), hyper.buffer_size);
        let scale = sampler.scale as f32;
        let ema = if sampler.ema > 0.0 { Some(Ema::new(sampler.ema, network, layout, sampler.sigma_max, &varmap, &device)?) } else { None };
        Ok(Self { energy, layout, scale, schedule, output: network.output, hyper, varmap, net, opt, buffer, rng, device, ema, skipped_in_a_row: 0, time_warp: sampler.time_warp, counters: Counters::default() })
    }

    /// A fresh run of a scene's system, sampler and network on the CPU.
    pub fn for_scene(scene: &Scene) -> Result<Self> {
        Self::new(scene.energy(), &scene.sampler, &scene.network, Device::Cpu)
    }

    pub fn energy(&self) -> &dyn Energy {
        self.energy.as_ref()
    }

    pub fn hyper(&self) -> &LiveHyper {
        &self.hyper
    }

    pub fn buffer_len(&self) -> usize {
        self.buffer.len()
    }

    /// Restarts the generator from `seed` (e.g. to draw a reproducible set of samples).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// The learned s_θ(x, t) at rows `x` (n × dim) and one time `t`, as n × dim values.
    pub fn control(&self, x: &[f32], t: f32) -> Result<Vec<f32>> {
        let dim = self.layout.dim();
        let n = x.len() / dim;
        let mut s = if let Some(k) = self.net.cpu_kernels() {
            k.infer(&k.read(&self.varmap)?, x, &vec![t; n])
        } else {
            let xt = Tensor::from_slice(x, (n, dim), &self.device)?;
            let tt = Tensor::from_vec(vec![t; n], n, &self.device)?;
            self.net.forward(&xt, &tt)?.detach().flatten_all()?.to_vec1()?
        };
        let c = self.output_scale(t);
        s.iter_mut().for_each(|v| *v *= c);
        Ok(s)
    }

    /// s = output_scale(t) · network output: 1, or 1/σ(t) when the network outputs the control.
    fn output_scale(&self, t: f32) -> f32 {
        match self.output {
            NetworkOutput::Score => 1.0,
            NetworkOutput::Control => (1.0 / self.schedule.sigma(t as f64)) as f32,
        }
    }

    /// Applies new live hyperparameters; Adam's moments and the buffer's contents are kept.
    pub fn set_hyper(&mut self, hyper: LiveHyper) -> Result<()> {
        hyper.validate()?;
        self.opt.lr = hyper.learning_rate;
        if hyper.buffer_size != self.buffer.capacity() {
            self.buffer.set_capacity(hyper.buffer_size);
        }
        self.hyper = hyper;
        Ok(())
    }

    /// One outer iteration: simulate and push new samples, then `train_steps` Adam steps.
    pub fn step(&mut self) -> Result<IterationReport> {
        let mut report = IterationReport::default();
        report.dropped_samples = self.simulate_batch(self.hyper.new_samples)?.dropped;
        if self.buffer_len() > 0 {
            for _ in 0..self.hyper.train_steps {
                match self.train_step()? {
                    Some(loss) => report.losses.push(loss),
                    None => report.skipped_steps += 1,
                }
            }
        }
        self.counters.outer_iterations += 1;
        Ok(report)
    }

    /// Simulates `n` end points with the current network, evaluates E and ∇E once each and
    /// pushes (X₁, a) into the buffer. The app calls this in small pieces to stay responsive.
    pub fn simulate_batch(&mut self, n: usize) -> Result<Batch> {
        let start = Instant::now();
        let (y, _, cost) = self.simulate(n, self.hyper.sde_steps, false)?;
        let (energies, dropped) = self.push_to_buffer(&y)?;
        let log_weights = self.log_weights(&y, &energies, &cost);
        let x = self.to_original(y);
        self.counters.dropped_samples += dropped;
        self.counters.wall_seconds += start.elapsed().as_secs_f64();
        Ok(Batch { x, energies, log_weights, dropped })
    }

    /// Adjoint targets a = clip(∇E(Y₁)) − Y₁/ν(1) (τ = 1) into the buffer, for end points `y`
    /// in the sampler's coordinates (E(y) means E(scale·y)). Returns the energies (NaN where not
    /// finite) and how many samples were dropped (non-finite or blown up).
    fn push_to_buffer(&mut self, y: &[f32]) -> Result<(Vec<f64>, u64)> {
        let dim = self.layout.dim();
        let n = y.len() / dim;
        let mut e = vec![0.0f32; n];
        let mut g = vec![0.0f32; n * dim];
        if self.scale == 1.0 {
            self.energy.batch_energy_grad(y, &mut e, &mut g);
        } else {
            // ∇_y E(scale·y) = scale · ∇E.
            self.energy.batch_energy_grad(&self.to_original(y.to_vec()), &mut e, &mut g);
            g.iter_mut().for_each(|v| *v *= self.scale);
        }
        self.counters.energy_evals += n as u64;
        remove_com(&mut g, self.layout);
        let d = self.layout.spatial_dim;
        let clip = self.hyper.grad_clip as f32;
        for p in g.chunks_mut(d) {
            let norm = p.iter().map(|v| v * v).sum::<f32>().sqrt();
            let scale = (clip / (norm + 1e-6)).min(1.0);
            p.iter_mut().for_each(|v| *v *= scale);
        }
        let inv_nu1 = (1.0 / self.schedule.nu1()) as f32;
        let far = (20.0 * self.schedule.nu1().sqrt()) as f32;
        let (mut xs, mut as_) = (Vec::with_capacity(n * dim), Vec::with_capacity(n * dim));
        let mut dropped = 0;
        for i in 0..n {
            let (xr, gr) = (&y[i * dim..(i + 1) * dim], &g[i * dim..(i + 1) * dim]);
            // An end point 20 base standard deviations out is a blown-up simulation, not a
            // sample: its target a ≈ −x/ν(1) would teach the network to blow up further.
            let blown_up = xr.iter().any(|v| v.abs() > far);
            if blown_up || !e[i].is_finite() || xr.iter().chain(gr).any(|v| !v.is_finite()) {
                dropped += 1;
                continue;
            }
            xs.extend_from_slice(xr);
            as_.extend(xr.iter().zip(gr).map(|(x, g)| g - x * inv_nu1));
        }
        self.buffer.push(&xs, &as_);
        let energies = e.iter().map(|&v| if v.is_finite() { v as f64 } else { f64::NAN }).collect();
        Ok((energies, dropped))
    }

    /// One Adam step of Reciprocal Adjoint Matching; `None` if it was skipped as non-finite.
    pub fn train_step(&mut self) -> Result<Option<f32>> {
        if self.buffer.is_empty() {
            return Err(Error::Invalid("the replay buffer is empty: simulate a batch first".into()));
        }
        let start = Instant::now();
        // Run on a rayon worker, so that the step's many small parallel loops are handed out
        // inside the pool rather than each one from this thread, which then sleeps until it is
        // done: with one rayon thread those cross-thread wake-ups cost more than the work
        // (LJ-13 trainer bench, RAYON_NUM_THREADS=1: 3.8 → 9.9 Adam steps/s; 2 threads: same).
        let result = rayon::scope(|_| self.train_step_inner());
        self.counters.wall_seconds += start.elapsed().as_secs_f64();
        match result {
            Ok(None) => {
                self.counters.skipped_steps += 1;
                self.skipped_in_a_row += 1;
            }
            Ok(Some(_)) => self.skipped_in_a_row = 0,
            Err(_) => {}
        }
        result
    }

    /// Gradient steps skipped as non-finite since the last applied one; [`DIVERGED_AFTER`] of
    /// them in a row mean the run has diverged (the weights themselves stay finite).
    pub fn skipped_in_a_row(&self) -> u64 {
        self.skipped_in_a_row
    }

    fn train_step_inner(&mut self) -> Result<Option<f32>> {
        let (bs, dim) = (self.hyper.batch_size, self.layout.dim());
        let (x1, a) = self.buffer.sample(bs, &mut self.rng);
        let t: Vec<f32> = (0..bs).map(|_| self.rng.random::<f32>()).collect();
        let xt = bridge_sample(&self.schedule, self.layout, &x1, &t, &mut self.rng);
        if let Some(kernels) = self.net.cpu_kernels() {
            // Loss mean‖s + a‖² and its gradient 2(s + a)/(B·dim), through the fused backward.
            let w = kernels.read(&self.varmap)?;
            let scale = 1.0 / (bs * dim) as f64;
            let c: Vec<f32> = t.iter().map(|&t| self.output_scale(t)).collect();
            let (sum, grad) = kernels.loss_and_grad(&w, &xt, &t, |first, out| {
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
                (loss, dout)
            });
            let value = (sum * scale) as f32;
            if !value.is_finite() {
                return Ok(None);
            }
            let named: HashMap<String, Tensor> = kernels.to_tensors(&grad, &self.device)?.into_iter().collect();
            let outcome = self.opt.step_named(&named)?;
            return Ok(self.count_step(outcome, value));
        }
        let xt = Tensor::from_vec(xt, (bs, dim), &self.device)?;
        let c: Vec<f32> = t.iter().map(|&t| self.output_scale(t)).collect();
        let tt = Tensor::from_vec(t, bs, &self.device)?;
        let a = Tensor::from_vec(a, (bs, dim), &self.device)?;
        let c = Tensor::from_vec(c, (bs, 1), &self.device)?;
        let s = self.net.forward(&xt, &tt)?.broadcast_mul(&c)?;
        let loss = (s + a)?.sqr()?.mean_all()?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Ok(None);
        }
        let outcome = self.opt.step(&loss.backward()?)?;
        Ok(self.count_step(outcome, value))
    }

    /// The loss of an applied Adam step (counted), or `None` for a skipped one.
    fn count_step(&mut self, outcome: StepOutcome, loss: f32) -> Option<f32> {
        match outcome {
            StepOutcome::Applied { .. } => {
                self.counters.gradient_steps += 1;
                if let Some(ema) = &self.ema {
                    // The weights are finite here (Adam refuses non-finite steps), so is the average.
                    ema.update(&self.varmap).expect("parameters of matching shapes");
                }
                Some(loss)
            }
            StepOutcome::SkippedNonFinite => None,
        }
    }

    /// Draws `n` samples from the current controlled SDE (Euler–Maruyama, `sample_steps` steps).
    pub fn sample(&mut self, n: usize, opts: SampleOptions) -> Result<Samples> {
        let steps = self.hyper.sample_steps.unwrap_or(self.hyper.sde_steps);
        let (y, trajectory, logw) = self.simulate(n, steps, opts.trajectory)?;
        let x = self.to_original(y.clone());
        let energies = self.energy.batch_energy(&x);
        let log_weights = opts.weights.then(|| self.log_weights(&y, &energies, &logw));
        let trajectory = trajectory.map(|frames| frames_at_uniform_times(frames, self.time_warp).into_iter().map(|f| self.to_original(f)).collect());
        let out = Samples { x, energies, trajectory, log_weights };
        Ok(out)
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
        let nu = self.schedule.nu1();
        // The base marginal lives on the CoM-free subspace for particle systems.
        let d_eff = if self.layout.com_free { (self.layout.particles - 1) * self.layout.spatial_dim } else { dim } as f64;
        let log_norm = 0.5 * d_eff * (2.0 * std::f64::consts::PI * nu).ln();
        energies
            .iter()
            .zip(cost)
            .enumerate()
            .map(|(i, (&e, &c))| {
                if !e.is_finite() {
                    return f64::NEG_INFINITY;
                }
                let r2: f64 = x[i * dim..(i + 1) * dim].iter().map(|&v| (v as f64).powi(2)).sum();
                -(e - 0.5 * r2 / nu - log_norm) - c
            })
            .collect()
    }

    /// Simulates `n` paths in chunks: end points, the first path's frames (if asked) and each
    /// path's control cost Σₖ (√Δt uₖ·ξₖ + ½Δt‖uₖ‖²).
    fn simulate(&mut self, n: usize, steps: usize, trajectory: bool) -> Result<(Vec<f32>, Option<Vec<Vec<f32>>>, Vec<f64>)> {
        // On a rayon worker, as in `train_step`.
        rayon::scope(|_| self.simulate_in_pool(n, steps, trajectory))
    }

    fn simulate_in_pool(&mut self, n: usize, steps: usize, trajectory: bool) -> Result<(Vec<f32>, Option<Vec<Vec<f32>>>, Vec<f64>)> {
        let mut x = Vec::with_capacity(n * self.layout.dim());
        let (mut path, mut cost) = (None, Vec::with_capacity(n));
        let mut done = 0;
        while done < n {
            let b = SIM_CHUNK.min(n - done);
            let keep_path = trajectory && done == 0;
            let (xc, pc, cc) = self.simulate_chunk(b, steps, keep_path)?;
            if keep_path {
                path = Some(pc);
            }
            x.extend(xc);
            cost.extend(cc);
            done += b;
        }
        self.counters.samples_simulated += n as u64;
        Ok((x, path, cost))
    }

    /// Simulates `b` paths from X₀ = 0. Returns end points, the first path's frames (if asked),
    /// and per path Σₖ (√Δνₖ s_θ·ξₖ + ½Δνₖ‖s_θ‖²), the discrete form of Σₖ (√Δt uₖ·ξₖ + ½Δt‖uₖ‖²).
    fn simulate_chunk(&mut self, b: usize, steps: usize, keep_path: bool) -> Result<(Vec<f32>, Vec<Vec<f32>>, Vec<f64>)> {
        let dim = self.layout.dim();
        let warp = self.time_warp;
        let grid = |k: usize| euler_time(k, steps, warp);
        let mut x = vec![0.0f32; b * dim];
        let mut noise = vec![0.0f32; b * dim];
        let mut cost = vec![0.0f64; b];
        let mut path = Vec::new();
        if keep_path {
            path.push(x[..dim].to_vec());
        }
        // Simulation uses the averaged weights when there are any.
        let (net, varmap) = match &self.ema {
            Some(e) => (&e.net, &e.varmap),
            None => (&self.net, &self.varmap),
        };
        let fused = match net.cpu_kernels() {
            Some(k) => Some((k, k.read(varmap)?)),
            None => None,
        };
        for k in 0..steps {
            let (t, t_next) = (grid(k), grid(k + 1));
            // Each step adds exactly the base variance Δν = ν(t_k+1) − ν(t_k) (σ² Δt at the left end
            // would overshoot ν(1) by ~8% at 100 steps, all of it at early times, and bias the
            // fixed point of the reciprocal iteration toward hot samples).
            let dnu = self.schedule.nu(t_next) - self.schedule.nu(t);
            let mut s: Vec<f32> = match &fused {
                Some((kernels, w)) => kernels.infer(w, &x, &vec![t as f32; b]),
                None => {
                    let xt = Tensor::from_slice(&x, (b, dim), &self.device)?;
                    let tt = Tensor::from_vec(vec![t as f32; b], b, &self.device)?;
                    net.forward(&xt, &tt)?.detach().flatten_all()?.to_vec1()?
                }
            };
            let c = self.output_scale(t as f32);
            if c != 1.0 {
                s.iter_mut().for_each(|v| *v *= c);
            }
            fill_normal(&mut noise, &mut self.rng);
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
            remove_com(&mut x, self.layout);
            if keep_path {
                path.push(x[..dim].to_vec());
            }
        }
        Ok((x, path, cost))
    }

    /// Writes `checkpoint.safetensors` (weights) and `state.safetensors` + `state.json`
    /// (Adam moments, buffer, generator, counters, hyperparameters) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let weights = dir.join("checkpoint.safetensors");
        self.varmap.save(&weights).map_err(|e| Error::format(&weights, e.to_string()))?;
        let mut tensors: HashMap<String, Tensor> = self.opt.state().into_iter().collect();
        let (bx, ba) = self.buffer.ordered();
        let rows = bx.len() / self.layout.dim();
        tensors.insert("buffer.x".into(), Tensor::from_vec(bx, (rows, self.layout.dim()), &Device::Cpu)?);
        tensors.insert("buffer.a".into(), Tensor::from_vec(ba, (rows, self.layout.dim()), &Device::Cpu)?);
        if let Some(ema) = &self.ema {
            for (name, v) in ema.varmap.data().lock().expect("varmap lock").iter() {
                tensors.insert(format!("ema.{name}"), v.as_tensor().copy()?);
            }
        }
        let state = dir.join("state.safetensors");
        candle_core::safetensors::save(&tensors, &state).map_err(|e| Error::format(&state, e.to_string()))?;
        let json = TrainState {
            counters: self.counters.clone(),
            hyper: self.hyper.clone(),
            adam_step: self.opt.step,
            rng_seed: self.rng.get_seed().to_vec(),
            rng_stream: self.rng.get_stream(),
            rng_word_pos: self.rng.get_word_pos().to_string(),
        };
        let path = dir.join("state.json");
        let text = serde_json::to_string_pretty(&json).expect("state serialises");
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }

    /// Restores a run saved by [`save`](Self::save) into a sampler built from the same scene.
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        let weights = dir.join("checkpoint.safetensors");
        if !weights.exists() {
            return Err(Error::format(&weights, "no checkpoint here (was the run saved?)"));
        }
        self.varmap.load(&weights).map_err(|e| Error::format(&weights, format!("not a checkpoint of this scene's network ({e})")))?;
        let state = dir.join("state.safetensors");
        let tensors = candle_core::safetensors::load(&state, &self.device).map_err(|e| Error::format(&state, format!("unreadable ({e})")))?;
        self.opt.load_state(&tensors).map_err(|e| Error::format(&state, e))?;
        let dim = self.layout.dim();
        let get = |k: &str| -> Result<Vec<f32>> {
            let t = tensors.get(k).ok_or_else(|| Error::format(&state, format!("missing '{k}'")))?;
            if t.dims().len() != 2 || t.dims()[1] != dim {
                return Err(Error::format(&state, format!("'{k}' has shape {:?}, expected (rows, {dim})", t.dims())));
            }
            Ok(t.flatten_all()?.to_vec1()?)
        };
        let (bx, ba) = (get("buffer.x")?, get("buffer.a")?);
        if let Some(ema) = &self.ema {
            // A run saved without an average starts one from its weights.
            ema.copy_from(&self.varmap)?;
            for (name, v) in ema.varmap.data().lock().expect("varmap lock").iter() {
                if let Some(t) = tensors.get(&format!("ema.{name}")) {
                    v.set(t).map_err(|e| Error::format(&state, format!("'ema.{name}': {e}")))?;
                }
            }
        }
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let js: TrainState = serde_json::from_str(&text)
            .map_err(|e| Error::format(&path, format!("line {}, column {}: {e}", e.line(), e.column())))?;
        let seed: [u8; 32] = js.rng_seed.as_slice().try_into().map_err(|_| Error::format(&path, "rng_seed must have 32 bytes"))?;
        let word_pos: u128 = js.rng_word_pos.parse().map_err(|_| Error::format(&path, "rng_word_pos is not a number"))?;
        self.set_hyper(js.hyper)?;
        self.buffer = ReplayBuffer::from_ordered(dim, self.hyper.buffer_size, bx, ba);
        self.opt.step = js.adam_step;
        self.rng = ChaCha8Rng::from_seed(seed);
        self.rng.set_stream(js.rng_stream);
        self.rng.set_word_pos(word_pos);
        self.counters = js.counters;
        Ok(())
    }
}

/// The JSON part of a checkpoint.
#[derive(Serialize, Deserialize)]
struct TrainState {
    counters: Counters,
    hyper: LiveHyper,
    adam_step: u64,
    rng_seed: Vec<u8>,
    rng_stream: u64,
    /// u128 as a decimal string (JSON numbers lose precision past 2⁵³).
    rng_word_pos: String,
}

impl super::Sampler for AdjointSampler {
    fn train_iteration(&mut self) -> Result<IterationReport> {
        self.step()
    }
    fn sample(&mut self, n: usize, opts: SampleOptions) -> Result<Samples> {
        AdjointSampler::sample(self, n, opts)
    }
    fn set_hyper(&mut self, hyper: LiveHyper) -> Result<()> {
        AdjointSampler::set_hyper(self, hyper)
    }
    fn save(&self, dir: &Path) -> Result<()> {
        AdjointSampler::save(self, dir)
    }
    fn load(&mut self, dir: &Path) -> Result<()> {
        AdjointSampler::load(self, dir)
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}
