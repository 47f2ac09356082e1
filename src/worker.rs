//! The training thread behind the desktop app, and the channel protocol it speaks.
//!
//! The worker owns the sampler and all training state; the UI sends [`Command`]s and receives
//! [`Snapshot`]s (through a one-slot channel where the newest wins: a stale snapshot is taken
//! back and merged into the next, so loss history is never lost and nothing queues up) and
//! [`Event`]s (rare: errors, files written, a new run). Work is done in small units — one Adam
//! step or a few dozen simulated samples — so that commands, pause and shutdown take effect
//! within a fraction of a second even on a slow CPU.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError, bounded, unbounded};

use crate::energy::{Energy, Layout};
use crate::error::{Error, Result};
use crate::io::{Matrix, read_npy};
use crate::metrics::{self, Which};
use crate::sampler::adjoint::{AdjointSampler, Counters, DIVERGED_AFTER, LiveHyper, SampleOptions};
use crate::scene::Scene;

/// UI → worker.
#[derive(Debug, Clone)]
pub enum Command {
    Play,
    Pause,
    /// Train this many gradient steps, then pause (simulation happens when it is due).
    Step(u64),
    /// Start a new run of `scene` (read from `path`, which anchors its reference file).
    Reset { scene: Box<Scene>, path: PathBuf },
    /// Live hyperparameters; Adam's moments and the buffer are kept.
    SetHyper(LiveHyper),
    /// Gradient steps between snapshots.
    SetSpeed(u64),
    /// Write a run folder (weights, optimizer, buffer, scene) that `sample` and `--resume` read.
    SaveCheckpoint(PathBuf),
    /// Replace the run by the one saved in a run folder.
    LoadCheckpoint(PathBuf),
    Shutdown,
}

/// Worker → UI, rare happenings.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new run started (reset or checkpoint loaded): the UI clears its history.
    Started(Arc<RunInfo>),
    /// A file or folder was written or read, with a line for the status bar.
    Done { message: String, path: PathBuf },
    /// Something failed; training is paused and the worker keeps serving commands.
    Error(String),
}

/// What does not change during a run.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Increases with every new run, so that stale snapshots can be told apart.
    pub generation: u64,
    pub scene: Scene,
    pub scene_path: PathBuf,
    pub layout: Layout,
    /// Energies and pooled interatomic distances of the reference subset (empty without one).
    pub reference_energies: Vec<f64>,
    pub reference_distances: Vec<f64>,
}

/// A batch of current samples (the end points of the latest outer iteration).
#[derive(Debug, Clone)]
pub struct SampleBatch {
    /// n × dim, particle-major.
    pub x: Vec<f32>,
    pub energies: Vec<f64>,
    pub layout: Layout,
    /// Normalised ESS of the batch's importance weights (0–1).
    pub ess: f64,
    /// Gradient steps when the batch was simulated.
    pub step: u64,
}

impl SampleBatch {
    pub fn len(&self) -> usize {
        self.x.len() / self.layout.dim().max(1)
    }
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

/// Metrics of one batch against as many reference samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    pub step: u64,
    pub wall_seconds: f64,
    /// Energy evaluations so far (one per simulated sample).
    pub energy_evals: u64,
    pub energy_w2: f64,
    pub x_w2: f64,
    pub eq_w2: Option<f64>,
    pub dist_tv: f64,
    pub ess: f64,
    /// Samples compared.
    pub n: usize,
}

/// What the worker is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Idle,
    Simulating { done: usize, total: usize },
    Training { done: usize, total: usize },
}

/// Worker → UI, frequent: everything new since the previous snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub generation: u64,
    pub running: bool,
    pub phase: Phase,
    pub counters: Counters,
    pub hyper: Option<LiveHyper>,
    /// (gradient step, loss) of every Adam step since the previous snapshot.
    pub losses: Vec<(u64, f32)>,
    pub metrics: Vec<MetricPoint>,
    /// Set when a new batch finished since the previous snapshot.
    pub samples: Option<Arc<SampleBatch>>,
    /// One path over SDE time, frames from t = 0 to 1 (each `dim` values).
    pub trajectory: Option<Arc<Vec<Vec<f32>>>>,
    /// Recent throughput while running.
    pub steps_per_second: f64,
    pub evals_per_second: f64,
}

impl Snapshot {
    /// Folds an older, undelivered snapshot into this one: histories are concatenated, the
    /// newest state wins.
    fn absorb_older(&mut self, old: Snapshot) {
        if old.generation != self.generation {
            return;
        }
        let mut losses = old.losses;
        losses.append(&mut self.losses);
        self.losses = losses;
        let mut m = old.metrics;
        m.append(&mut self.metrics);
        self.metrics = m;
        if self.samples.is_none() {
            self.samples = old.samples;
        }
        if self.trajectory.is_none() {
            self.trajectory = old.trajectory;
        }
    }
}

/// The sending end of the one-slot snapshot channel: the newest snapshot wins.
#[derive(Clone)]
pub struct SnapshotSender {
    tx: Sender<Snapshot>,
    /// A second receiver, used only to take back a snapshot the UI has not collected yet.
    reclaim: Receiver<Snapshot>,
}

/// A one-slot snapshot channel.
pub fn snapshot_channel() -> (SnapshotSender, Receiver<Snapshot>) {
    let (tx, rx) = bounded(1);
    (SnapshotSender { tx, reclaim: rx.clone() }, rx)
}

impl SnapshotSender {
    /// Delivers `snap`, merging it with an undelivered one. Returns false if the UI is gone.
    pub fn send(&self, mut snap: Snapshot) -> bool {
        loop {
            match self.tx.try_send(snap) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(s)) => {
                    snap = s;
                    if let Ok(old) = self.reclaim.try_recv() {
                        snap.absorb_older(old);
                    }
                }
            }
        }
    }
}

/// Wakes the UI's event loop after a snapshot (the app redraws only when something arrives).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The UI's handle on a running worker. Dropping it shuts the worker down and joins it.
pub struct WorkerHandle {
    pub commands: Sender<Command>,
    pub snapshots: Receiver<Snapshot>,
    pub events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Starts the training thread on `scene` (paused).
    pub fn spawn(scene: Scene, path: PathBuf, waker: Option<Waker>) -> Self {
        let (commands, cmd_rx) = unbounded();
        let (snap_tx, snapshots) = snapshot_channel();
        let (event_tx, events) = unbounded();
        commands.send(Command::Reset { scene: Box::new(scene), path }).expect("receiver alive");
        let thread = std::thread::Builder::new()
            .name("trainer".into())
            .spawn(move || Worker::new(cmd_rx, snap_tx, event_tx, waker).run())
            .expect("cannot start the training thread");
        Self { commands, snapshots, events, thread: Some(thread) }
    }

    /// A handle over channels someone else serves (tests use it as a fake worker).
    pub fn from_channels(commands: Sender<Command>, snapshots: Receiver<Snapshot>, events: Receiver<Event>) -> Self {
        Self { commands, snapshots, events, thread: None }
    }

    pub fn send(&self, c: Command) {
        // A worker that is gone has already reported why; nothing else to do here.
        let _ = self.commands.send(c);
    }

    /// Asks the worker to stop and waits for it; returns how long that took.
    pub fn shutdown(&mut self) -> Duration {
        let start = Instant::now();
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        start.elapsed()
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Samples simulated per unit of work at the start; the unit then adapts so that one takes
/// 0.15–0.5 s (bigger batches use the CPU better; shorter units keep pause and shutdown prompt).
const SIM_UNIT: usize = 32;
const SIM_UNIT_MAX: usize = 1024;
/// Automatic snapshots are at most this frequent: each one makes the app draw a frame, and a
/// software-rendered frame costs about 0.2 CPU-seconds that the trainer would otherwise use ...
const MIN_SNAPSHOT_INTERVAL: Duration = Duration::from_millis(750);
/// ... and at least this frequent while working, so that progress stays visible. Snapshots
/// answering a command (pause, a finished step) go out at once.
const MAX_SNAPSHOT_INTERVAL: Duration = Duration::from_millis(2000);
/// Reference rows kept for the live histograms.
const REFERENCE_ROWS: usize = 2000;

struct Run {
    sampler: AdjointSampler,
    info: Arc<RunInfo>,
    reference: Option<Matrix>,
    sim_left: usize,
    train_left: usize,
    /// Samples per simulation unit (adapted to the speed of the machine).
    sim_unit: usize,
    pending: Vec<f32>,
    pending_e: Vec<f64>,
    pending_w: Vec<f64>,
}

struct Worker {
    commands: Receiver<Command>,
    snapshots: SnapshotSender,
    events: Sender<Event>,
    waker: Option<Waker>,
    run: Option<Run>,
    generation: u64,
    running: bool,
    /// Gradient steps still to do for Step(n) while paused.
    pending_steps: u64,
    speed: u64,
    out: Snapshot,
    steps_since_snapshot: u64,
    last_snapshot: Instant,
    /// (time, gradient steps, energy evaluations) at the start of the throughput window.
    rate_mark: Option<(Instant, u64, u64)>,
}

impl Worker {
    fn new(commands: Receiver<Command>, snapshots: SnapshotSender, events: Sender<Event>, waker: Option<Waker>) -> Self {
        Self {
            commands,
            snapshots,
            events,
            waker,
            run: None,
            generation: 0,
            running: false,
            pending_steps: 0,
            speed: 10,
            out: Snapshot::default(),
            steps_since_snapshot: 0,
            last_snapshot: Instant::now(),
            rate_mark: None,
        }
    }

    fn busy(&self) -> bool {
        self.run.is_some() && (self.running || self.pending_steps > 0)
    }

    fn run(mut self) {
        loop {
            let cmd = if self.busy() {
                match self.commands.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                match self.commands.recv_timeout(MAX_SNAPSHOT_INTERVAL) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            if let Some(c) = cmd {
                if matches!(c, Command::Shutdown) {
                    return;
                }
                self.handle(c);
                self.snapshot(true);
                continue;
            }
            if self.busy() {
                if let Err(e) = self.work() {
                    self.fail(format!("training stopped: {e}"));
                }
                self.snapshot(false);
            }
        }
    }

    fn fail(&mut self, message: String) {
        self.running = false;
        self.pending_steps = 0;
        let _ = self.events.send(Event::Error(message));
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = &self.waker {
            w();
        }
    }

    fn handle(&mut self, c: Command) {
        match c {
            Command::Play => {
                self.running = self.run.is_some();
                self.rate_mark = None;
            }
            Command::Pause => {
                self.running = false;
                self.pending_steps = 0;
            }
            Command::Step(n) => {
                self.pending_steps += n;
                self.rate_mark = None;
            }
            Command::SetSpeed(n) => self.speed = n.max(1),
            Command::SetHyper(h) => {
                if let Some(run) = &mut self.run {
                    if let Err(e) = run.sampler.set_hyper(h) {
                        self.fail(format!("hyperparameters not applied: {e}"));
                    }
                }
            }
            Command::Reset { scene, path } => match Run::start(*scene, path, self.generation + 1) {
                Ok(run) => self.install(run),
                Err(e) => self.fail(format!("cannot start the scene: {e}")),
            },
            Command::SaveCheckpoint(dir) => match self.save(&dir) {
                Ok(()) => self.done(format!("checkpoint saved to {}", dir.display()), dir),
                Err(e) => self.fail(format!("cannot save the checkpoint: {e}")),
            },
            Command::LoadCheckpoint(dir) => match Run::load(&dir, self.generation + 1) {
                Ok(run) => {
                    self.install(run);
                    self.done(format!("checkpoint loaded from {}", dir.display()), dir);
                }
                Err(e) => self.fail(format!("cannot load the checkpoint {}: {e}", dir.display())),
            },
            Command::Shutdown => {}
        }
    }

    fn done(&mut self, message: String, path: PathBuf) {
        let _ = self.events.send(Event::Done { message, path });
        self.wake();
    }

    fn install(&mut self, run: Run) {
        self.generation = run.info.generation;
        self.running = false;
        self.pending_steps = 0;
        self.rate_mark = None;
        self.out = Snapshot { generation: self.generation, ..Snapshot::default() };
        let _ = self.events.send(Event::Started(run.info.clone()));
        self.run = Some(run);
        self.wake();
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let run = self.run.as_ref().ok_or_else(|| Error::Invalid("no run to save".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        run.sampler.save(dir)?;
        let scene = run.info.scene.with_absolute_reference(&run.info.scene_path);
        let path = dir.join("scene.ron");
        std::fs::write(&path, scene.to_ron()).map_err(|e| Error::io(&path, e))
    }

    /// One unit of work: a slice of simulation or one Adam step.
    fn work(&mut self) -> Result<()> {
        let run = self.run.as_mut().expect("busy implies a run");
        if run.sim_left == 0 && run.train_left == 0 {
            let h = run.sampler.hyper().clone();
            run.sim_left = h.new_samples;
            run.train_left = h.train_steps;
        }
        if run.sim_left > 0 {
            let n = run.sim_left.min(run.sim_unit);
            let started = Instant::now();
            let b = run.sampler.simulate_batch(n)?;
            let took = started.elapsed();
            if n == run.sim_unit && took < Duration::from_millis(150) {
                run.sim_unit = (run.sim_unit * 2).min(SIM_UNIT_MAX);
            } else if took > Duration::from_millis(500) {
                run.sim_unit = (run.sim_unit / 2).max(1);
            }
            run.pending.extend(b.x);
            run.pending_e.extend(b.energies);
            run.pending_w.extend(b.log_weights);
            run.sim_left -= n;
            let total = run.sampler.hyper().new_samples;
            self.out.phase = Phase::Simulating { done: total.saturating_sub(run.sim_left), total };
            if run.sim_left == 0 {
                let (batch, point) = run.finish_batch()?;
                self.out.samples = Some(Arc::new(batch));
                self.out.metrics.extend(point);
                let traj = run.sampler.sample(1, SampleOptions { trajectory: true, weights: false })?;
                self.out.trajectory = traj.trajectory.map(Arc::new);
            }
            return Ok(());
        }
        let loss = run.sampler.train_step()?;
        run.train_left -= 1;
        let total = run.sampler.hyper().train_steps;
        self.out.phase = Phase::Training { done: total.saturating_sub(run.train_left), total };
        if run.train_left == 0 {
            run.sampler.counters.outer_iterations += 1;
        }
        self.pending_steps = self.pending_steps.saturating_sub(1);
        self.steps_since_snapshot += 1;
        if let Some(l) = loss {
            self.out.losses.push((run.sampler.counters.gradient_steps, l));
        }
        // Pauses at 50, 100, … skipped steps in a row, so that resuming a still-diverged run
        // pauses again after another 50.
        let skipped = run.sampler.skipped_in_a_row();
        if skipped > 0 && skipped % DIVERGED_AFTER == 0 {
            self.fail(format!(
                "training diverged: the last {DIVERGED_AFTER} steps had a non-finite loss or gradient and were skipped \
                 (the weights were not changed); lower the learning rate or reset"
            ));
        }
        Ok(())
    }

    /// Sends the accumulated snapshot if it is due (always when `now`).
    fn snapshot(&mut self, now: bool) {
        let elapsed = self.last_snapshot.elapsed();
        let due = now
            || (elapsed >= MIN_SNAPSHOT_INTERVAL && (self.steps_since_snapshot >= self.speed || self.out.samples.is_some()))
            || elapsed >= MAX_SNAPSHOT_INTERVAL
            || !self.busy();
        if !due {
            return;
        }
        let Some(run) = &self.run else { return };
        let c = &run.sampler.counters;
        if self.busy() {
            // Averaged since play was pressed: an iteration alternates simulation (energy
            // evaluations) and training (gradient steps), so short windows would swing wildly.
            match self.rate_mark {
                Some((t, s, e)) => {
                    let dt = t.elapsed().as_secs_f64();
                    if dt > 1.0 {
                        self.out.steps_per_second = (c.gradient_steps - s) as f64 / dt;
                        self.out.evals_per_second = (c.energy_evals - e) as f64 / dt;
                    }
                }
                None => self.rate_mark = Some((Instant::now(), c.gradient_steps, c.energy_evals)),
            }
        } else {
            self.out.phase = Phase::Idle;
        }
        let mut snap = Snapshot {
            generation: self.generation,
            running: self.running,
            phase: self.out.phase,
            counters: c.clone(),
            hyper: Some(run.sampler.hyper().clone()),
            steps_per_second: self.out.steps_per_second,
            evals_per_second: self.out.evals_per_second,
            ..Snapshot::default()
        };
        snap.losses = std::mem::take(&mut self.out.losses);
        snap.metrics = std::mem::take(&mut self.out.metrics);
        snap.samples = self.out.samples.take();
        snap.trajectory = self.out.trajectory.take();
        self.snapshots.send(snap);
        self.steps_since_snapshot = 0;
        self.last_snapshot = Instant::now();
        self.wake();
    }
}

impl Run {
    fn start(scene: Scene, path: PathBuf, generation: u64) -> Result<Run> {
        let sampler = AdjointSampler::for_scene(&scene)?;
        Run::with_sampler(sampler, scene, path, generation)
    }

    fn load(dir: &Path, generation: u64) -> Result<Run> {
        let path = dir.join("scene.ron");
        let scene = Scene::load(&path)?;
        let mut sampler = AdjointSampler::for_scene(&scene)?;
        sampler.load(dir)?;
        Run::with_sampler(sampler, scene, path, generation)
    }

    fn with_sampler(sampler: AdjointSampler, scene: Scene, path: PathBuf, generation: u64) -> Result<Run> {
        let energy = scene.energy();
        let layout = energy.layout();
        let reference = match scene.reference_path(&path) {
            Some(p) => {
                let m = read_npy(&p)?;
                if m.cols != energy.dim() {
                    return Err(Error::Invalid(format!(
                        "{}: reference rows have {} coordinates, the system has {}",
                        p.display(),
                        m.cols,
                        energy.dim()
                    )));
                }
                // A seeded random subset: reference files from MCMC chains are ordered in time.
                let idx = rand::seq::index::sample(&mut ChaCha8Rng::seed_from_u64(0), m.rows, REFERENCE_ROWS.min(m.rows));
                Some(m.select(&idx.into_vec()))
            }
            None => None,
        };
        let (reference_energies, reference_distances) = match &reference {
            Some(m) => (energy.batch_energy(&m.data), if layout.particles > 1 { metrics::interatomic_distances(m, layout) } else { Vec::new() }),
            None => (Vec::new(), Vec::new()),
        };
        let info = RunInfo { generation, scene, scene_path: path, layout, reference_energies, reference_distances };
        Ok(Run {
            sampler,
            info: Arc::new(info),
            reference,
            sim_left: 0,
            train_left: 0,
            sim_unit: SIM_UNIT,
            pending: Vec::new(),
            pending_e: Vec::new(),
            pending_w: Vec::new(),
        })
    }

    /// Closes the batch of the current iteration; evaluates it when the schedule says so.
    fn finish_batch(&mut self) -> Result<(SampleBatch, Option<MetricPoint>)> {
        let layout = self.info.layout;
        let ess = metrics::ess(&self.pending_w);
        let batch = SampleBatch {
            x: std::mem::take(&mut self.pending),
            energies: std::mem::take(&mut self.pending_e),
            layout,
            ess,
            step: self.sampler.counters.gradient_steps,
        };
        self.pending_w.clear();
        // E-W2, x-W2 and dist-TV of a batch are cheap next to simulating it: every iteration.
        // eq-W2's n² alignments follow the scene's evaluation cadence (counted in completed
        // iterations, so a loaded checkpoint keeps its cadence).
        let every = self.info.scene.schedule.eval_every.max(1) as u64;
        let with_eq = self.sampler.counters.outer_iterations % every == 0;
        let point = match &self.reference {
            Some(reference) => Some(self.evaluate(&batch, reference, with_eq)?),
            None => None,
        };
        Ok((batch, point))
    }

    /// Metrics of the batch against as many reference rows. eq-W2 only when asked and for small
    /// systems: its n² alignments of n-particle clusters cost O(n³) each.
    fn evaluate(&self, batch: &SampleBatch, reference: &Matrix, with_eq: bool) -> Result<MetricPoint> {
        let energy: &dyn Energy = self.sampler.energy();
        let dim = energy.dim();
        let finite: Vec<usize> = (0..batch.len()).filter(|&i| batch.energies[i].is_finite()).collect();
        let n = finite.len().min(reference.rows);
        let mut x = Vec::with_capacity(n * dim);
        for &i in &finite[..n] {
            x.extend_from_slice(&batch.x[i * dim..(i + 1) * dim]);
        }
        let which = if with_eq && batch.layout.particles > 1 && batch.layout.particles <= 20 { Which::All } else { Which::SkipEq };
        let m = metrics::evaluate(energy, &Matrix::new(n, dim, x), &reference.head(n), which)?;
        Ok(MetricPoint {
            step: batch.step,
            wall_seconds: self.sampler.counters.wall_seconds,
            energy_evals: self.sampler.counters.energy_evals,
            energy_w2: m.energy_w2,
            x_w2: m.x_w2,
            eq_w2: m.eq_w2,
            dist_tv: m.dist_tv,
            ess: batch.ess,
            n,
        })
    }
}
