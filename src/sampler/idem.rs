//! iDEM, Iterated Denoising Energy Matching (Akhound-Sadegh et al. 2024; science.md §3,
//! samplers.md §3): a score network s_θ(x, t) of a variance-exploding process with variance
//! h(t), regressed onto a Monte-Carlo estimate of the noised target's score
//!
//!   S_K(x, t) = Σ_k softmax_k(−E(x + √h(t) ε_k)) · (−∇E(x + √h(t) ε_k)),
//!
//! at noised buffer samples; the buffer is refilled by the reverse SDE of the current network
//! (first from the prior N(0, h(1))). Each training example costs K energy evaluations.
//!
//! h(t) = σ_min²((σ_max/σ_min)^(2t) − 1) is AS's ν run backwards, h(t) = ν(1) − ν(1 − t), so
//! the scene's `sigma_min` / `sigma_max` set it.

use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::SamplerConfig;
use super::learner::{Epoch, Learner, LiveHyper, advance_epoch};
use super::registry::{KindInfo, KindSection, SectionInfo};
use super::state::RngState;
use super::{Advance, Counters, SampleOptions, SamplerKind, Samples, UnitSizer, row_rng};
use crate::buffer::ReplayBuffer;
use crate::energy::{Energy, Layout, remove_com};
use crate::error::{Error, Result};
use crate::nn::{Inference, TrainedNet};
use crate::nn::{NetworkConfig, NetworkOutput};
use crate::sde::{NoiseSchedule, fill_normal};

/// iDEM in the registry.
pub static KIND: KindInfo = KindInfo {
    variant: "Idem",
    name: "idem",
    label: "iDEM",
    summary: "Iterated Denoising Energy Matching (Akhound-Sadegh et al. 2024): a score network regressed onto a Monte-Carlo estimate of the noised target's score, K energy evaluations per training example.",
    learns: true,
    samples_note: "raw samples",
    loss_help: "Denoising energy matching loss: the squared gap between the score network and the Monte-Carlo estimate of the noised target's score, per gradient step; the estimate is noisy, so watch the trend",
    stage_help: "",
    weights: false,
    section: Some(SectionInfo::of::<IdemConfig>()),
    accepts: super::registry::particles_only,
    build: |energy, sampler, network| {
        Ok(Box::new(IdemSampler::new(
            energy,
            sampler,
            network,
            crate::nn::select_device(&sampler.device)?,
        )?))
    },
    rows: idem_rows,
};

fn idem_rows() -> Vec<super::HyperRow> {
    use super::hyper::{Bound, HyperRow};
    let mut rows = super::hyper::learner_rows();
    rows.insert(
        6,
        HyperRow {
            key: "mc_samples",
            field: "idem.mc_samples",
            label: "MC points K",
            help: "iDEM: points of the Monte-Carlo score target per training example; each costs one energy evaluation, so a gradient step costs batch × K.",
            bound: Bound::Count { min: 1, max: crate::limits::MAX_MC_SAMPLES, bytes_each: |dim, c| 16 * dim * c.batch_size.min(crate::limits::MAX_BATCH as usize) as u64 },
            ui: (1.0, 10_000.0),
            log: true,
            live: true,
            get: |c| c.section::<IdemConfig>().mc_samples as f64,
            set: |c, v| c.section_mut::<IdemConfig>().mc_samples = v as usize,
        },
    );
    rows
}

/// iDEM settings (scene `sampler.idem`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdemConfig {
    /// Monte-Carlo points K per training example (the reference code uses 1000 for LJ-13).
    pub mc_samples: usize,
    /// Per-particle norm cap on the estimated score (reference code: 20).
    pub score_clip: f64,
}

impl Default for IdemConfig {
    fn default() -> Self {
        Self {
            mc_samples: 100,
            score_clip: 20.0,
        }
    }
}

impl KindSection for IdemConfig {
    const NAME: &'static str = "idem";
    fn check(&self, _dim: usize) -> std::result::Result<(), (&'static str, String)> {
        if self.mc_samples == 0 {
            return Err(("mc_samples", "must be at least 1".into()));
        }
        if !(self.score_clip > 0.0) {
            return Err((
                "score_clip",
                format!("must be positive (got {})", self.score_clip),
            ));
        }
        Ok(())
    }
}

/// The VE process: h(t) = ν(1) − ν(1 − t) of the geometric schedule.
#[derive(Debug, Clone, Copy)]
pub struct VeProcess {
    pub schedule: NoiseSchedule,
}

impl VeProcess {
    pub fn h(&self, t: f64) -> f64 {
        self.schedule.nu1() - self.schedule.nu(1.0 - t)
    }
}

/// The Monte-Carlo estimate S_K(x, t) at rows `x` (n × dim) with noise variance `h` per row,
/// from `k` points each (drawn from `rng`), clipped to `clip` per particle. Returns the scores
/// (n × dim) and spends n·k energy evaluations. Self-normalised importance sampling: consistent
/// as k grows, with an O(1/k) bias.
pub fn mc_score(
    energy: &dyn Energy,
    x: &[f32],
    h: &[f64],
    k: usize,
    clip: f32,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let layout = energy.layout();
    let dim = layout.dim();
    let n = h.len();
    let mut pts = vec![0.0f32; n * k * dim];
    fill_normal(&mut pts, rng);
    remove_com(&mut pts, layout);
    for i in 0..n {
        let sd = h[i].sqrt() as f32;
        for j in 0..k {
            let row = &mut pts[(i * k + j) * dim..(i * k + j + 1) * dim];
            for (p, &xi) in row.iter_mut().zip(&x[i * dim..(i + 1) * dim]) {
                *p = xi + sd * *p;
            }
        }
    }
    let mut e = vec![0.0f32; n * k];
    let mut g = vec![0.0f32; n * k * dim];
    energy.batch_energy_grad(&pts, &mut e, &mut g);
    let mut out = vec![0.0f32; n * dim];
    for i in 0..n {
        let es = &e[i * k..(i + 1) * k];
        let m = es
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| -v as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = es
            .iter()
            .map(|&v| {
                if v.is_finite() {
                    (-v as f64 - m).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let total: f64 = w.iter().sum();
        if !(total > 0.0) {
            out[i * dim..(i + 1) * dim].fill(f32::NAN);
            continue;
        }
        let o = &mut out[i * dim..(i + 1) * dim];
        for (j, wj) in w.iter().enumerate() {
            if *wj == 0.0 {
                continue;
            }
            let gr = &g[(i * k + j) * dim..(i * k + j + 1) * dim];
            for (a, &b) in o.iter_mut().zip(gr) {
                *a -= (wj / total) as f32 * b;
            }
        }
        for p in o.chunks_mut(layout.spatial_dim) {
            let norm = p.iter().map(|v| v * v).sum::<f32>().sqrt();
            let c = (clip / (norm + 1e-6)).min(1.0);
            p.iter_mut().for_each(|v| *v *= c);
        }
    }
    out
}

/// The iDEM trainer: score network, buffer of clean samples, generator and counters.
pub struct IdemSampler {
    energy: Box<dyn Energy>,
    layout: Layout,
    ve: VeProcess,
    output: NetworkOutput,
    idem: IdemConfig,
    /// The settings as they stand (live edits included).
    config: SamplerConfig,
    hyper: LiveHyper,
    net: TrainedNet,
    /// Clean samples (the target half of each row is unused).
    buffer: ReplayBuffer,
    epochs: u64,
    epoch: Epoch,
    rng: ChaCha8Rng,
    /// Seeds of the samples drawn to show, judge or export (`sample`): a stream of their own, so
    /// that how often the app draws them never changes training (forks and sessions replay
    /// exactly). Not checkpointed: after a resume these draws start their stream again.
    sample_rng: ChaCha8Rng,
    sizer: UnitSizer,
    pub counters: Counters,
}

impl IdemSampler {
    pub fn new(
        energy: Box<dyn Energy>,
        sampler: &SamplerConfig,
        network: &NetworkConfig,
        device: Device,
    ) -> Result<Self> {
        super::adjoint::check_sde_config(sampler)?;
        if sampler.scale != 1.0 {
            return Err(Error::Invalid(
                "iDEM samples in the system's own coordinates: sampler.scale must be 1".into(),
            ));
        }
        let hyper = LiveHyper::from_config(sampler);
        hyper.validate(energy.layout().dim())?;
        sampler
            .section::<IdemConfig>()
            .check(energy.layout().dim())
            .map_err(|(f, m)| Error::Invalid(format!("idem.{f} {m}")))?;
        let layout = energy.layout();
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
        Ok(Self {
            energy,
            layout,
            ve: VeProcess {
                schedule: NoiseSchedule::new(sampler.sigma_min, sampler.sigma_max),
            },
            output: network.output,
            idem: sampler.section::<IdemConfig>(),
            config: sampler.clone(),
            buffer: ReplayBuffer::new(layout.dim(), hyper.buffer_size),
            hyper,
            net,
            epochs: 0,
            epoch: Epoch::default(),
            rng,
            sample_rng: ChaCha8Rng::seed_from_u64(super::sample_stream(sampler.seed)),
            sizer: UnitSizer::new(32, 1024),
            counters: Counters::default(),
        })
    }

    /// Applies the live values the loop reads; Adam's state and the buffer's rows are kept.
    fn apply_hyper(&mut self, hyper: LiveHyper) -> Result<()> {
        hyper.validate(self.layout.dim())?;
        self.net.set_learning_rate(hyper.learning_rate);
        self.buffer.set_capacity(hyper.buffer_size);
        self.hyper = hyper;
        Ok(())
    }

    /// s = c(t) · network output: 1, or 1/√(h(t) + σ_min²) when the network outputs a scaled score.
    fn output_scale(&self, t: f32) -> f32 {
        match self.output {
            NetworkOutput::Score => 1.0,
            NetworkOutput::Control => {
                (1.0 / (self.ve.h(t as f64) + self.ve.schedule.sigma_min.powi(2)).sqrt()) as f32
            }
        }
    }

    /// Rows `first..first + n` of a reverse-SDE simulation seeded `seed` from N(0, h(1)) to
    /// t = 0 (`steps` steps); with `prior_only` the prior draws themselves. Each row has its own
    /// noise stream, so splitting a simulation into calls changes nothing.
    fn simulate(
        &self,
        net: Option<&Inference>,
        n: usize,
        steps: usize,
        seed: u64,
        first: usize,
        keep_path: bool,
    ) -> Result<(Vec<f32>, Option<Vec<Vec<f32>>>)> {
        let dim = self.layout.dim();
        let mut rngs: Vec<ChaCha8Rng> = (0..n).map(|i| row_rng(seed, first + i)).collect();
        let sd = self.ve.h(1.0).sqrt() as f32;
        let mut x = vec![0.0f32; n * dim];
        for (row, r) in x.chunks_mut(dim).zip(rngs.iter_mut()) {
            row.iter_mut()
                .for_each(|v| *v = sd * r.sample::<f32, _>(StandardNormal));
        }
        remove_com(&mut x, self.layout);
        let mut path = keep_path.then(|| vec![x[..dim].to_vec()]);
        let Some(net) = net else { return Ok((x, path)) };
        let mut noise = vec![0.0f32; n * dim];
        for k in 0..steps {
            let (t, t_next) = (
                1.0 - k as f64 / steps as f64,
                1.0 - (k + 1) as f64 / steps as f64,
            );
            let dh = self.ve.h(t) - self.ve.h(t_next);
            let mut s = net.run(&x, &vec![t as f32; n])?;
            let c = self.output_scale(t as f32);
            s.iter_mut().for_each(|v| *v *= c);
            for (row, r) in noise.chunks_mut(dim).zip(rngs.iter_mut()) {
                fill_normal(row, r);
            }
            remove_com(&mut noise, self.layout);
            let (drift, diffusion) = (dh as f32, dh.sqrt() as f32);
            for j in 0..x.len() {
                x[j] += drift * s[j] + diffusion * noise[j];
            }
            remove_com(&mut x, self.layout);
            if let Some(p) = path.as_mut() {
                p.push(x[..dim].to_vec());
            }
        }
        Ok((x, path))
    }

    fn simulate_into_buffer(&mut self, n: usize) -> Result<()> {
        let dim = self.layout.dim();
        let (seed, first) = (self.epoch.seed, self.epoch.sim_done);
        let steps = self.hyper.sde_steps;
        // The first epoch fills the buffer from the prior; later ones from the network.
        let inference = if self.epochs == 0 {
            None
        } else {
            Some(self.net.inference(true)?)
        };
        let (x, _) =
            rayon::scope(|_| self.simulate(inference.as_ref(), n, steps, seed, first, false))?;
        drop(inference);
        self.epoch.sim_done += n;
        self.counters.samples_simulated += n as u64;
        if self.epochs > 0 {
            self.counters.network_forward += (n * steps) as u64;
        }
        // iDEM needs no energy of its buffer samples; these are for the live view only.
        let energies = self.energy.batch_energy(&x);
        self.counters.eval_energy_evals += n as u64;
        let far = (20.0 * self.ve.h(1.0).sqrt()) as f32;
        let mut keep = Vec::with_capacity(x.len());
        for (i, row) in x.chunks(dim).enumerate() {
            if !energies[i].is_finite() || row.iter().any(|v| !v.is_finite() || v.abs() > far) {
                self.counters.dropped_samples += 1;
                continue;
            }
            keep.extend_from_slice(row);
        }
        let zeros = vec![0.0f32; keep.len()];
        self.buffer.push(&keep, &zeros);
        self.epoch.pending.x.extend(x);
        self.epoch.pending.energies.extend(energies);
        Ok(())
    }

    /// One Adam step on ‖c(t)·out(x_t, t) − S_K(x_t, t)‖²; `None` if skipped as non-finite.
    fn train_step(&mut self) -> Result<Option<f32>> {
        let (bs, dim) = (self.hyper.batch_size, self.layout.dim());
        let (x, _) = self.buffer.sample(bs, &mut self.rng);
        let t: Vec<f32> = (0..bs).map(|_| self.rng.random::<f32>()).collect();
        let h: Vec<f64> = t.iter().map(|&t| self.ve.h(t as f64)).collect();
        let mut noise = vec![0.0f32; bs * dim];
        fill_normal(&mut noise, &mut self.rng);
        remove_com(&mut noise, self.layout);
        let xt: Vec<f32> = x
            .iter()
            .zip(&noise)
            .enumerate()
            .map(|(j, (&xv, &z))| xv + h[j / dim].sqrt() as f32 * z)
            .collect();
        let k = self.idem.mc_samples;
        let score = mc_score(
            self.energy.as_ref(),
            &xt,
            &h,
            k,
            self.idem.score_clip as f32,
            &mut self.rng,
        );
        self.counters.energy_evals += (bs * k) as u64;
        self.counters.network_backward += bs as u64;
        let a: Vec<f32> = score.iter().map(|v| -v).collect();
        let c: Vec<f32> = t.iter().map(|&t| self.output_scale(t)).collect();
        self.net.train_step(&xt, &t, |first, out| {
            super::adjoint::regression_loss(out, &a, &c, first, dim, bs)
        })
    }

    fn sample_inner(&mut self, n: usize, opts: SampleOptions) -> Result<Samples> {
        let steps = self.hyper.sample_steps.unwrap_or(self.hyper.sde_steps);
        let seed = opts.seed.unwrap_or_else(|| self.sample_rng.random());
        let inference = self.net.inference(true)?;
        let (x, path) =
            rayon::scope(|_| self.simulate(Some(&inference), n, steps, seed, 0, opts.trajectory))?;
        drop(inference);
        self.counters.samples_simulated += n as u64;
        self.counters.network_forward += (n * steps) as u64;
        self.counters.eval_energy_evals += n as u64;
        let energies = self.energy.batch_energy(&x);
        Ok(Samples {
            x,
            energies,
            trajectory: path,
            log_weights: None,
        })
    }
}

impl Learner for IdemSampler {
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
    fn simulate_rows(&mut self, n: usize) -> Result<()> {
        self.simulate_into_buffer(n)
    }
    fn gradient_step(&mut self) -> Result<Option<f32>> {
        self.train_step()
    }
    fn buffer_empty(&self) -> bool {
        self.buffer.is_empty()
    }
    fn finish_epoch(&mut self) {
        self.epochs += 1;
    }
}

/// iDEM's live values as its checkpoints store them: the learners' shared ones and K.
#[derive(Serialize, Deserialize)]
struct IdemHyper {
    #[serde(flatten)]
    shared: LiveHyper,
    #[serde(default = "default_mc_samples")]
    mc_samples: usize,
}

fn default_mc_samples() -> usize {
    IdemConfig::default().mc_samples
}

#[derive(Serialize, Deserialize)]
struct IdemState {
    counters: Counters,
    hyper: IdemHyper,
    adam_step: u64,
    epochs: u64,
    rng: RngState,
    epoch: Epoch,
}

impl super::Sampler for IdemSampler {
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
        self.sample_inner(n, opts)
    }
    fn config(&self) -> &SamplerConfig {
        &self.config
    }
    fn set_hyper(&mut self, key: &str, value: f64) -> Result<()> {
        let mut cfg = self.config.clone();
        super::hyper::set_live(&(KIND.rows)(), &mut cfg, key, value, self.layout.dim())?;
        self.apply_hyper(LiveHyper::from_config(&cfg))?;
        self.idem = cfg.section::<IdemConfig>();
        self.config = cfg;
        Ok(())
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
    fn stage(&self) -> Option<String> {
        Some(format!(
            "{} energy evaluations per gradient step (K = {})",
            self.hyper.batch_size * self.idem.mc_samples,
            self.idem.mc_samples
        ))
    }
    fn save(&self, dir: &Path) -> Result<()> {
        self.net.save_weights(&dir.join("checkpoint.safetensors"))?;
        let mut tensors: std::collections::HashMap<String, Tensor> =
            self.net.state("")?.into_iter().collect();
        super::state::save_buffer(&mut tensors, "buffer", &self.buffer)?;
        super::state::write_tensors(&tensors, &dir.join("state.safetensors"))?;
        super::state::write_json(
            &dir.join("state.json"),
            &IdemState {
                counters: self.counters.clone(),
                hyper: IdemHyper {
                    shared: self.hyper.clone(),
                    mc_samples: self.idem.mc_samples,
                },
                adam_step: self.net.adam_steps(),
                epochs: self.epochs,
                rng: RngState::of(&self.rng),
                epoch: self.epoch.clone(),
            },
        )
    }
    fn load(&mut self, dir: &Path) -> Result<()> {
        self.net.load_weights(&dir.join("checkpoint.safetensors"))?;
        let state = dir.join("state.safetensors");
        let tensors = super::state::read_tensors(&state)?;
        let path = dir.join("state.json");
        let js: IdemState = super::state::read_json(&path)?;
        js.hyper
            .shared
            .validate(self.layout.dim())
            .map_err(|e| Error::format(&path, e.to_string()))?;
        let mut config = self.config.clone();
        js.hyper.shared.apply_to(&mut config);
        config.section_mut::<IdemConfig>().mc_samples = js.hyper.mc_samples;
        if let Err((f, m)) = super::hyper::check_all(&(KIND.rows)(), &config, self.layout.dim()) {
            return Err(Error::format(&path, format!("{f} {m}")));
        }
        self.net.load_state(&tensors, "", js.adam_step, &state)?;
        self.apply_hyper(js.hyper.shared)?;
        self.idem = config.section::<IdemConfig>();
        self.config = config;
        self.buffer = super::state::load_buffer(
            &tensors,
            "buffer",
            self.layout.dim(),
            self.hyper.buffer_size,
            &state,
        )?;
        self.epochs = js.epochs;
        self.rng = js.rng.restore(&path)?;
        self.counters = js.counters;
        self.epoch = js.epoch.resumed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::Gaussian;

    /// For a Gaussian target N(μ, s²I) the noised target is N(μ, (s² + h)I), whose score is
    /// −(x − μ)/(s² + h). With K = 50 000 points the self-normalised estimate's error is about
    /// √(dim/K_eff) of the score scale; K_eff ≥ K·s²/(s² + 2h)-ish here, so 5% relative error
    /// (over 20 probe points per noise level, RMS) is a safe bound at h ≤ 1.
    #[test]
    fn mc_score_matches_the_noised_gaussian_score() {
        let target = Gaussian {
            mean: vec![1.0, -0.5],
            std: 0.7,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for h in [0.01f64, 0.25, 1.0] {
            let x: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin() * 1.5).collect();
            let hs = vec![h; 20];
            let got = mc_score(&target, &x, &hs, 50_000, 1e6, &mut rng);
            let s2 = target.std * target.std + h;
            let (mut err, mut norm) = (0.0, 0.0);
            for (j, &g) in got.iter().enumerate() {
                let want = -(x[j] as f64 - target.mean[j % 2]) / s2;
                err += (g as f64 - want).powi(2);
                norm += want * want;
            }
            let rel = (err / norm).sqrt();
            assert!(rel < 0.05, "h = {h}: relative RMS error {rel:.4}");
        }
    }

    /// h(t) = σ_min²((σ_max/σ_min)^(2t) − 1) (science.md §3) equals ν(1) − ν(1 − t).
    #[test]
    fn ve_variance_matches_the_published_form() {
        let ve = VeProcess {
            schedule: NoiseSchedule::new(0.01, 2.0),
        };
        for t in [0.0, 0.3, 0.7, 1.0] {
            let want = 0.01f64.powi(2) * ((2.0f64 / 0.01).powf(2.0 * t) - 1.0);
            assert!(
                (ve.h(t) - want).abs() < 1e-9 * want.max(1.0),
                "t = {t}: {} vs {want}",
                ve.h(t)
            );
        }
    }
}
