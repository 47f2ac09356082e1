//! The training thread behind the desktop app, and the channel protocol it speaks.
//!
//! The worker owns the sampler and all training state; the UI sends [`Command`]s and receives
//! [`Snapshot`]s (through a one-slot channel where the newest wins: a stale snapshot is taken
//! back and merged into the next, so loss history is never lost and nothing queues up) and
//! [`Event`]s (rare: errors, files written, a new run). Work is done in small units — one Adam
//! step or a few dozen simulated samples — so that commands, pause and shutdown take effect
//! within a fraction of a second even on a slow CPU.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError, bounded, unbounded,
};

use crate::energy::Layout;
use crate::error::{Error, Result};
use crate::io::read_npy;
use crate::metrics;
use crate::race::{self, RacePoint};
use crate::run::{
    Budget, DIVERGED_AFTER, EvalPolicy, Evaluator, Outcome, Run as Driver, drive_lanes,
};
use crate::sampler::{self, Counters, SampleOptions, SamplerConfig, SamplerKind};
use crate::scene::Scene;

pub use crate::run::MetricPoint;
pub use crate::sampler::Phase;

/// UI → worker.
#[derive(Debug, Clone)]
pub enum Command {
    Play,
    Pause,
    /// Train this many gradient steps, then pause (simulation happens when it is due).
    Step(u64),
    /// Start a new run of `scene` (read from `path`, which anchors its reference file).
    Reset {
        scene: Box<Scene>,
        path: PathBuf,
    },
    /// Start a race of sampler kinds on `scene`'s system (see [`Scene::for_kind`]): they train
    /// in turn, the one with the fewest energy evaluations next, so their budgets stay equal.
    Race {
        scene: Box<Scene>,
        path: PathBuf,
        kinds: Vec<SamplerKind>,
    },
    /// Live hyperparameters of one lane (0 for a single run), as (row key, value); Adam's
    /// moments and the buffer are kept. Rows the lane's kind does not have are refused.
    SetHyper {
        lane: usize,
        changes: Vec<(String, f64)>,
    },
    /// Gradient steps between snapshots.
    SetSpeed(u64),
    /// Write a run folder (weights, optimizer, buffer, scene) that `sample` and `--resume` read.
    SaveCheckpoint(PathBuf),
    /// Replace the run by the one saved in a run folder.
    LoadCheckpoint(PathBuf),
    /// Send the learned control field at this SDE time with every snapshot (plane systems,
    /// kinds with a field), or stop sending it.
    ShowField(Option<f32>),
    /// Fork the single run: a copy (weights, optimizer, buffer, random state) continues with
    /// these live hyperparameters (row key, value) beside the original; the two train in turn.
    Fork(Vec<(String, f64)>),
    /// Keep one lane of a race or fork (by index) and drop the others.
    KeepLane(usize),
    /// Judge the single run from now on against this reference file (one computed while it
    /// trained); its training is untouched.
    AttachReference(PathBuf),
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
    /// The run's description changed (a reference was attached); its history stands.
    InfoChanged(Arc<RunInfo>),
}

/// What does not change during a run.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Increases with every new run, so that stale snapshots can be told apart.
    pub generation: u64,
    pub scene: Scene,
    pub scene_path: PathBuf,
    pub layout: Layout,
    /// Which named metrics the run reports.
    pub family: crate::metrics::Family,
    /// Energies and pooled interatomic distances of the reference subset (empty without one).
    pub reference_energies: Vec<f64>,
    pub reference_distances: Vec<f64>,
    /// A molecule's reference subset in torsion coordinates (rows × torsions, radians), and the
    /// torsions' names (both empty for other systems).
    pub reference_torsions: Vec<f32>,
    pub torsion_names: Vec<String>,
    /// The kinds of a race, in lane order (empty for a single run).
    pub race: Vec<SamplerKind>,
    /// Set when the lanes are the branches of a fork rather than a race of kinds.
    pub fork: Option<ForkInfo>,
    /// The exact log Z where the system has an exact grid (the log Z plot's reference line).
    pub log_z_exact: Option<f64>,
}

/// Where a fork was made and what differs between its branches.
#[derive(Debug, Clone, PartialEq)]
pub struct ForkInfo {
    /// Gradient steps of the run when it was forked (both branches share everything up to it).
    pub step: u64,
    /// Each changed hyperparameter: (name, value in branch A, value in branch B).
    pub changes: Vec<(String, String, String)>,
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
    /// Each sample's log importance weight, for the kinds that define them.
    pub log_weights: Option<Vec<f64>>,
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

/// One lane of a race, in a snapshot: what is new since the previous one.
#[derive(Debug, Clone, Default)]
pub struct LaneSnapshot {
    pub kind: SamplerKind,
    /// (gradient step, loss) since the previous snapshot (branches of a fork plot them).
    pub losses: Vec<(u64, f32)>,
    pub counters: Counters,
    pub stage: Option<String>,
    pub metrics: Vec<MetricPoint>,
    /// The race's judgements of this lane at budget points since the previous snapshot (the rows
    /// `compare` writes to compare.csv).
    pub points: Vec<RacePoint>,
    pub samples: Option<Arc<SampleBatch>>,
    /// The lane's settings, live edits included.
    pub config: Option<Arc<SamplerConfig>>,
    /// The lane's off-policy training points, sent with each new batch.
    pub off_policy: Option<Arc<Vec<f32>>>,
}

/// Worker → UI, frequent: everything new since the previous snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub generation: u64,
    pub running: bool,
    pub phase: Phase,
    pub counters: Counters,
    /// The settings the (first lane's) sampler runs with, live edits included.
    pub config: Option<Arc<SamplerConfig>>,
    /// The sampler kind and its stage, where it has stages (ASBS, MCMC burn-in).
    pub kind: SamplerKind,
    pub stage: Option<String>,
    /// (gradient step, loss) of every Adam step since the previous snapshot.
    pub losses: Vec<(u64, f32)>,
    pub metrics: Vec<MetricPoint>,
    /// Set when a new batch finished since the previous snapshot.
    pub samples: Option<Arc<SampleBatch>>,
    /// One path over SDE time, frames from t = 0 to 1 (each `dim` values).
    pub trajectory: Option<Arc<Vec<Vec<f32>>>>,
    /// The learned control field, when asked for with [`Command::ShowField`].
    pub field: Option<Arc<crate::field::ControlField>>,
    /// Recent throughput while running.
    pub steps_per_second: f64,
    pub evals_per_second: f64,
    /// Every lane of a race (empty for a single run, whose data are the fields above).
    pub lanes: Vec<LaneSnapshot>,
    /// The sampler's off-policy training points (the GFlowNet kind's local-search samples),
    /// sent with each new batch.
    pub off_policy: Option<Arc<Vec<f32>>>,
}

impl Snapshot {
    /// Folds an older, undelivered snapshot into this one: histories are concatenated, the
    /// newest state wins.
    fn absorb_older(&mut self, old: Snapshot) {
        if old.generation != self.generation {
            return;
        }
        /// `old`'s items, then `new`'s, in `new`.
        fn older_first<T>(new: &mut Vec<T>, mut old: Vec<T>) {
            old.append(new);
            *new = old;
        }
        older_first(&mut self.losses, old.losses);
        older_first(&mut self.metrics, old.metrics);
        self.samples = self.samples.take().or(old.samples);
        self.trajectory = self.trajectory.take().or(old.trajectory);
        self.field = self.field.take().or(old.field);
        for (new, old) in self.lanes.iter_mut().zip(old.lanes) {
            older_first(&mut new.losses, old.losses);
            older_first(&mut new.metrics, old.metrics);
            older_first(&mut new.points, old.points);
            new.samples = new.samples.take().or(old.samples);
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
    (
        SnapshotSender {
            tx,
            reclaim: rx.clone(),
        },
        rx,
    )
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
        Self::spawn_with(
            Command::Reset {
                scene: Box::new(scene),
                path,
            },
            waker,
        )
    }

    /// Starts the training thread with `first` (a reset or a race) as its first command.
    pub fn spawn_with(first: Command, waker: Option<Waker>) -> Self {
        let (commands, cmd_rx) = unbounded();
        let (snap_tx, snapshots) = snapshot_channel();
        let (event_tx, events) = unbounded();
        commands.send(first).expect("receiver alive");
        let thread = std::thread::Builder::new()
            .name("trainer".into())
            .spawn(move || Worker::new(cmd_rx, snap_tx, event_tx, waker).run())
            .expect("cannot start the training thread");
        Self {
            commands,
            snapshots,
            events,
            thread: Some(thread),
        }
    }

    /// A handle over channels someone else serves (tests use it as a fake worker).
    pub fn from_channels(
        commands: Sender<Command>,
        snapshots: Receiver<Snapshot>,
        events: Receiver<Event>,
    ) -> Self {
        Self {
            commands,
            snapshots,
            events,
            thread: None,
        }
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

/// Automatic snapshots are at most this frequent: each one makes the app draw a frame, and a
/// software-rendered frame costs about 0.2 CPU-seconds that the trainer would otherwise use ...
const MIN_SNAPSHOT_INTERVAL: Duration = Duration::from_millis(750);
/// ... and at least this frequent while working, so that progress stays visible. Snapshots
/// answering a command (pause, a finished step) go out at once.
const MAX_SNAPSHOT_INTERVAL: Duration = Duration::from_millis(2000);

/// Whether an automatic snapshot is due, `elapsed` after the last, with `units` of training
/// since and new samples waiting or not.
fn snapshot_due(elapsed: Duration, units: u64, speed: u64, samples_waiting: bool) -> bool {
    (elapsed >= MIN_SNAPSHOT_INTERVAL && (units >= speed || samples_waiting))
        || elapsed >= MAX_SNAPSHOT_INTERVAL
}

/// Reference rows kept for the live histograms.
const REFERENCE_ROWS: usize = 2000;

struct Run {
    driver: Driver,
    info: Arc<RunInfo>,
}

/// What the app draws of a reference: its energies, pooled pair distances (particles) and
/// torsions (molecules); empty without one.
fn reference_parts(
    energy: &dyn crate::energy::Energy,
    evaluator: Option<&Evaluator>,
) -> (Vec<f64>, Vec<f64>, Vec<f32>) {
    let Some(ev) = evaluator else {
        return (Vec::new(), Vec::new(), Vec::new());
    };
    let m = ev.reference();
    let layout = energy.layout();
    (
        energy.batch_energy(&m.data),
        if layout.particles > 1 {
            metrics::interatomic_distances(m, layout)
        } else {
            Vec::new()
        },
        if energy.torus() {
            m.data.clone()
        } else {
            Vec::new()
        },
    )
}

/// A lane of the driver's loop is the run it holds.
impl std::borrow::Borrow<Driver> for Run {
    fn borrow(&self) -> &Driver {
        &self.driver
    }
}

impl std::borrow::BorrowMut<Driver> for Run {
    fn borrow_mut(&mut self) -> &mut Driver {
        &mut self.driver
    }
}

/// What a lane gathered since the last snapshot.
#[derive(Default)]
struct LaneOut {
    losses: Vec<(u64, f32)>,
    metrics: Vec<MetricPoint>,
    points: Vec<RacePoint>,
    samples: Option<Arc<SampleBatch>>,
}

struct Worker {
    commands: Receiver<Command>,
    snapshots: SnapshotSender,
    events: Sender<Event>,
    waker: Option<Waker>,
    /// One run, or the lanes of a race.
    runs: Vec<Run>,
    lane_out: Vec<LaneOut>,
    generation: u64,
    running: bool,
    /// Gradient steps still to do for Step(n) while paused.
    pending_steps: u64,
    speed: u64,
    /// SDE time of the control field to send with snapshots (`None`: not shown).
    field_t: Option<f32>,
    out: Snapshot,
    steps_since_snapshot: u64,
    last_snapshot: Instant,
    /// (time, gradient steps, energy evaluations) at the start of the throughput window.
    rate_mark: Option<(Instant, u64, u64)>,
}

impl Worker {
    fn new(
        commands: Receiver<Command>,
        snapshots: SnapshotSender,
        events: Sender<Event>,
        waker: Option<Waker>,
    ) -> Self {
        Self {
            commands,
            snapshots,
            events,
            waker,
            runs: Vec::new(),
            lane_out: Vec::new(),
            generation: 0,
            running: false,
            pending_steps: 0,
            speed: 10,
            field_t: None,
            out: Snapshot::default(),
            steps_since_snapshot: 0,
            last_snapshot: Instant::now(),
            rate_mark: None,
        }
    }

    fn busy(&self) -> bool {
        !self.runs.is_empty() && (self.running || self.pending_steps > 0)
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
                self.running = !self.runs.is_empty();
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
            Command::ShowField(t) => self.field_t = t.map(|t| t.clamp(0.0, 1.0)),
            Command::SetHyper { lane, changes } => {
                let errors: Vec<String> = match self.runs.get_mut(lane) {
                    Some(run) => changes
                        .iter()
                        .filter_map(|(k, v)| run.driver.sampler.set_hyper(k, *v).err())
                        .map(|e| e.to_string())
                        .collect(),
                    None => vec![format!("there is no lane {lane}")],
                };
                for e in errors {
                    self.fail(format!("hyperparameters not applied: {e}"));
                }
            }
            Command::Reset { scene, path } => {
                match Run::start(*scene, path, self.generation + 1, Vec::new()) {
                    Ok(run) => self.install(vec![run]),
                    Err(e) => self.fail(format!("cannot start the scene: {e}")),
                }
            }
            Command::Race { scene, path, kinds } => {
                match Run::race(&scene, &path, &kinds, self.generation + 1) {
                    Ok(runs) => self.install(runs),
                    Err(e) => self.fail(format!("cannot start the race: {e}")),
                }
            }
            Command::SaveCheckpoint(dir) => match self.save(&dir) {
                Ok(()) => self.done(format!("checkpoint saved to {}", dir.display()), dir),
                Err(e) => self.fail(format!("cannot save the checkpoint: {e}")),
            },
            Command::LoadCheckpoint(dir) => match Run::load(&dir, self.generation + 1) {
                Ok(run) => {
                    self.install(vec![run]);
                    self.done(format!("checkpoint loaded from {}", dir.display()), dir);
                }
                Err(e) => self.fail(format!("cannot load the checkpoint {}: {e}", dir.display())),
            },
            Command::Fork(h) => match self.fork(h) {
                Ok(()) => {}
                Err(e) => self.fail(format!("cannot fork: {e}")),
            },
            Command::KeepLane(i) => match self.keep_lane(i) {
                Ok(()) => {}
                Err(e) => self.fail(format!("cannot keep that lane: {e}")),
            },
            Command::AttachReference(path) => match self.attach_reference(&path) {
                Ok(()) => self.done(
                    format!("reference computed and cached in {}", path.display()),
                    path,
                ),
                Err(e) => self.fail(format!("cannot use the reference {}: {e}", path.display())),
            },
            Command::Shutdown => {}
        }
    }

    /// Copies the single run through a checkpoint (which restores it exactly, random state
    /// included) and sets the copy's hyperparameters; both continue as lanes.
    fn fork(&mut self, edits: Vec<(String, f64)>) -> Result<()> {
        let [run] = self.runs.as_slice() else {
            return Err(Error::Invalid(if self.runs.is_empty() {
                "no run to fork".into()
            } else {
                "already several lanes: keep one first".into()
            }));
        };
        if !run.driver.sampler.kind().learns() {
            return Err(Error::Invalid(format!(
                "{} learns nothing: no hyperparameters to fork on",
                run.driver.sampler.kind().label()
            )));
        }
        let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        run.driver.sampler.save(dir.path())?;
        let info = run.info.clone();
        let before = run.driver.sampler.config().clone();
        let mut sampler = info.scene.build_sampler()?;
        sampler.load(dir.path())?;
        for (key, value) in &edits {
            sampler.set_hyper(key, *value)?;
        }
        let generation = self.generation + 1;
        let step = run.driver.counters().gradient_steps;
        let kind = run.driver.sampler.kind();
        let fork = ForkInfo {
            step,
            changes: sampler::hyper::changes(&kind.rows(), &before, sampler.config()),
        };
        let mut shared = (*info).clone();
        shared.generation = generation;
        shared.race = vec![kind, kind];
        shared.fork = Some(fork);
        // The checkpoint carries the counters too: both branches' curves share one axis.
        let mut b = Run::with_sampler(
            sampler,
            shared.scene.clone(),
            shared.scene_path.clone(),
            generation,
            shared.race.clone(),
        )?;
        let shared = Arc::new(shared);
        b.info = shared.clone();
        self.runs[0].info = shared.clone();
        self.runs.push(b);
        self.generation = generation;
        self.running = false;
        self.pending_steps = 0;
        self.rate_mark = None;
        self.out = Snapshot {
            generation,
            ..Snapshot::default()
        };
        self.lane_out = self.runs.iter().map(|_| LaneOut::default()).collect();
        let _ = self.events.send(Event::Started(shared));
        self.wake();
        Ok(())
    }

    fn attach_reference(&mut self, path: &Path) -> Result<()> {
        let [run] = self.runs.as_mut_slice() else {
            return Err(Error::Invalid(
                "a race or fork is judged on the reference it started with: restart it to use the new one".into(),
            ));
        };
        let m = read_npy(path)?;
        let energy = run.info.scene.energy();
        let evaluator = Evaluator::new(&m, energy.layout(), REFERENCE_ROWS, 0)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let mut info = (*run.info).clone();
        (
            info.reference_energies,
            info.reference_distances,
            info.reference_torsions,
        ) = reference_parts(energy.as_ref(), Some(&evaluator));
        run.driver.set_evaluator(Some(evaluator));
        run.info = Arc::new(info);
        let _ = self.events.send(Event::InfoChanged(run.info.clone()));
        Ok(())
    }

    fn keep_lane(&mut self, i: usize) -> Result<()> {
        if i >= self.runs.len() || self.runs.len() < 2 {
            return Err(Error::Invalid(format!("there is no lane {i} to keep")));
        }
        let mut run = self.runs.swap_remove(i);
        let mut info = (*run.info).clone();
        info.generation = self.generation + 1;
        info.race = Vec::new();
        info.fork = None;
        if info.scene.sampler.kind != run.driver.sampler.kind() {
            info.scene.sampler.kind = run.driver.sampler.kind();
        }
        run.info = Arc::new(info);
        self.install(vec![run]);
        Ok(())
    }

    fn done(&mut self, message: String, path: PathBuf) {
        let _ = self.events.send(Event::Done { message, path });
        self.wake();
    }

    fn install(&mut self, runs: Vec<Run>) {
        self.generation = runs[0].info.generation;
        self.running = false;
        self.pending_steps = 0;
        self.rate_mark = None;
        self.out = Snapshot {
            generation: self.generation,
            ..Snapshot::default()
        };
        let _ = self.events.send(Event::Started(runs[0].info.clone()));
        self.lane_out = runs.iter().map(|_| LaneOut::default()).collect();
        self.runs = runs;
        self.preview();
        self.wake();
    }

    /// The untrained sampler's samples, so that a new run opens on something to look at (the
    /// grid's cells, or a point cloud's batch) rather than on empty cells until Play. MCMC has
    /// no samples before its chains have run, and shows none.
    fn preview(&mut self) {
        let race = self.runs.len() > 1;
        for (lane, run) in self.runs.iter_mut().enumerate() {
            if !run.driver.sampler.kind().learns() {
                continue;
            }
            let scene = &run.info.scene;
            let point_cloud = run.info.layout.particles == 1 && !scene.system.is_molecule();
            let n = if point_cloud {
                scene.sampler.new_samples.clamp(1, 256)
            } else {
                scene.view.grid.max(1).pow(2)
            };
            // A failure here shows up again, with its message, when training starts.
            let Ok(s) = run.driver.sampler.sample(
                n,
                SampleOptions {
                    trajectory: lane == 0,
                    weights: true,
                    ..SampleOptions::default()
                },
            ) else {
                continue;
            };
            let ess = s.ess().unwrap_or(f64::NAN);
            let batch = Arc::new(SampleBatch {
                x: s.x,
                energies: s.energies,
                layout: run.info.layout,
                ess,
                log_weights: s.log_weights,
                step: 0,
            });
            if race {
                self.lane_out[lane].samples = Some(batch.clone());
            }
            if lane == 0 {
                self.out.samples = Some(batch);
                self.out.trajectory = s.trajectory.map(Arc::new);
            }
        }
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let run = match self.runs.as_slice() {
            [run] => run,
            [] => return Err(Error::Invalid("no run to save".into())),
            _ => {
                return Err(Error::Invalid(
                    "a race has several runs: save one kind's run by opening its scene".into(),
                ));
            }
        };
        // The same code as `train`'s checkpoints: a kill mid-save leaves the previous one whole.
        let writer = crate::checkpoint::Writer::open(dir)?;
        let scene = run.info.scene.with_absolute_reference(&run.info.scene_path);
        crate::checkpoint::write_atomic(&dir.join("scene.ron"), scene.to_ron().as_bytes())?;
        writer.save(|d| run.driver.sampler.save(d))
    }

    /// Trains through the run driver's loop (the race's turn order, its divergence policy, its
    /// budget points) until a command waits, a snapshot is due or `Step(n)` is done.
    fn work(&mut self) -> Result<()> {
        let race = self.runs.len() > 1;
        // The loop holds the runs; the observer what goes out with the next snapshot.
        let Worker {
            runs,
            lane_out,
            out,
            pending_steps,
            steps_since_snapshot,
            running,
            commands,
            last_snapshot,
            speed,
            ..
        } = self;
        let stepping = !*running;
        let pending = Cell::new(*pending_steps);
        let since = Cell::new(*steps_since_snapshot);
        let has_samples = Cell::new(out.samples.is_some());
        let stop = || {
            !commands.is_empty()
                || (stepping && pending.get() == 0)
                || snapshot_due(
                    last_snapshot.elapsed(),
                    since.get(),
                    *speed,
                    has_samples.get(),
                )
        };
        let (outcome, _) = drive_lanes(
            runs.as_mut_slice(),
            Budget::Open,
            &stop,
            &mut |lane, run: &mut Run, tick| {
                let adv = tick.advance;
                let trained = !adv.losses.is_empty() || adv.skipped > 0;
                let step = run.driver.counters().gradient_steps;
                let n = adv.losses.len() as u64;
                let numbered: Vec<(u64, f32)> = adv
                    .losses
                    .into_iter()
                    .enumerate()
                    .map(|(k, l)| (step + 1 + k as u64 - n, l))
                    .collect();
                if race {
                    let o = &mut lane_out[lane];
                    o.losses.extend_from_slice(&numbered);
                    o.points.extend(tick.evaluations.iter().map(RacePoint::of));
                }
                if lane == 0 {
                    out.losses.extend(numbered);
                    out.phase = adv.phase;
                }
                if let Some(b) = adv.batch {
                    let ess = b.ess().unwrap_or(f64::NAN);
                    let batch = Arc::new(SampleBatch {
                        x: b.x,
                        energies: b.energies,
                        layout: run.info.layout,
                        ess,
                        log_weights: b.log_weights,
                        step,
                    });
                    if race {
                        lane_out[lane].samples = Some(batch.clone());
                        lane_out[lane].metrics.extend(tick.batch_point);
                    }
                    if lane == 0 {
                        out.samples = Some(batch);
                        has_samples.set(true);
                        out.metrics.extend(tick.batch_point);
                        let traj = run.driver.sampler.sample(
                            1,
                            SampleOptions {
                                trajectory: true,
                                ..SampleOptions::default()
                            },
                        )?;
                        out.trajectory = traj.trajectory.map(Arc::new);
                    }
                }
                // A unit without gradient steps (simulation, sweeps) counts as one step for Step(n),
                // so that stepping an MCMC run advances too.
                if trained || !run.driver.sampler.kind().learns() {
                    pending.set(pending.get().saturating_sub(1));
                    since.set(since.get() + 1);
                }
                Ok(())
            },
        )?;
        *pending_steps = pending.get();
        *steps_since_snapshot = since.get();
        if outcome == Outcome::Diverged {
            self.fail(format!(
                "training diverged: the last {DIVERGED_AFTER} steps had a non-finite loss or gradient and were skipped \
                 (the weights were not changed); lower the learning rate or reset"
            ));
        }
        Ok(())
    }

    /// Sends the accumulated snapshot if it is due (always when `now`).
    fn snapshot(&mut self, now: bool) {
        let due =
            now || snapshot_due(
                self.last_snapshot.elapsed(),
                self.steps_since_snapshot,
                self.speed,
                self.out.samples.is_some(),
            ) || !self.busy();
        if !due {
            return;
        }
        let Some(run) = self.runs.first() else { return };
        // Throughput of a race is summed over its lanes.
        let mut c = run.driver.counters().clone();
        for r in &self.runs[1..] {
            c.gradient_steps += r.driver.counters().gradient_steps;
            c.energy_evals += r.driver.counters().energy_evals;
        }
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
            counters: run.driver.counters().clone(),
            config: Some(Arc::new(run.driver.sampler.config().clone())),
            kind: run.driver.sampler.kind(),
            stage: run.driver.sampler.stage(),
            steps_per_second: self.out.steps_per_second,
            evals_per_second: self.out.evals_per_second,
            ..Snapshot::default()
        };
        snap.losses = std::mem::take(&mut self.out.losses);
        snap.metrics = std::mem::take(&mut self.out.metrics);
        snap.samples = self.out.samples.take();
        if snap.samples.is_some() {
            snap.off_policy = run.driver.sampler.off_policy_points().map(Arc::new);
        }
        snap.trajectory = self.out.trajectory.take();
        if let Some(t) = self.field_t {
            // A failed evaluation just leaves the previous field on screen.
            let sampler = self.runs[0].driver.sampler.as_mut();
            if let Some(Ok(f)) = crate::field::control_field_with_examples(
                sampler,
                t,
                crate::field::FIELD_GRID,
                crate::field::EXAMPLES,
            ) {
                snap.field = Some(Arc::new(f));
            }
        }
        if self.runs.len() > 1 {
            snap.lanes = self
                .runs
                .iter()
                .zip(self.lane_out.iter_mut())
                .map(|(r, out)| LaneSnapshot {
                    kind: r.driver.sampler.kind(),
                    losses: std::mem::take(&mut out.losses),
                    counters: r.driver.counters().clone(),
                    stage: r.driver.sampler.stage(),
                    metrics: std::mem::take(&mut out.metrics),
                    points: std::mem::take(&mut out.points),
                    off_policy: out
                        .samples
                        .is_some()
                        .then(|| r.driver.sampler.off_policy_points().map(Arc::new))
                        .flatten(),
                    samples: out.samples.take(),
                    config: Some(Arc::new(r.driver.sampler.config().clone())),
                })
                .collect();
        }
        self.snapshots.send(snap);
        self.steps_since_snapshot = 0;
        self.last_snapshot = Instant::now();
        self.wake();
    }
}

impl Run {
    fn start(scene: Scene, path: PathBuf, generation: u64, race: Vec<SamplerKind>) -> Result<Run> {
        let sampler = scene.build_sampler()?;
        Run::with_sampler(sampler, scene, path, generation, race)
    }

    /// The lanes of a race, as `compare` makes them ([`crate::race`]): each kind's scene for the
    /// system with the given scene's seed, judged at the same budget points on the same
    /// reference rows (when the scene has a reference).
    fn race(
        scene: &Scene,
        path: &Path,
        kinds: &[SamplerKind],
        generation: u64,
    ) -> Result<Vec<Run>> {
        if kinds.len() < 2 {
            return Err(Error::Invalid("a race needs two kinds or more".into()));
        }
        let judge = scene
            .reference_path(path)
            .map(|_| race::judge(scene, path))
            .transpose()?;
        let points = race::points(race::PER_DECADE);
        race::lane_scenes(scene, path, kinds, None)?
            .into_iter()
            .map(|(_, s)| {
                let mut run = Run::start(s, path.to_path_buf(), generation, kinds.to_vec())?;
                if let Some(j) = &judge {
                    run.driver = race::make_lane(run.driver, j, &points)?;
                }
                Ok(run)
            })
            .collect()
    }

    fn load(dir: &Path, generation: u64) -> Result<Run> {
        let path = dir.join("scene.ron");
        let scene = Scene::load(&path)?;
        let mut sampler = scene.build_sampler()?;
        sampler.load(&crate::checkpoint::current(dir)?)?;
        Run::with_sampler(sampler, scene, path, generation, Vec::new())
    }

    fn with_sampler(
        sampler: Box<dyn sampler::Sampler>,
        scene: Scene,
        path: PathBuf,
        generation: u64,
        race: Vec<SamplerKind>,
    ) -> Result<Run> {
        let energy = scene.energy();
        let layout = energy.layout();
        let evaluator = match scene.reference_path(&path) {
            Some(p) => {
                let m = read_npy(&p)?;
                Some(
                    Evaluator::new(&m, layout, REFERENCE_ROWS, 0)
                        .map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))?,
                )
            }
            // A typed formula or landscape without a file: its exact draws, in memory.
            None => crate::reference::exact_in_memory(energy.as_ref())
                .map(|m| Evaluator::new(&m, layout, REFERENCE_ROWS, 0))
                .transpose()?,
        };
        let (reference_energies, reference_distances, reference_torsions) =
            reference_parts(energy.as_ref(), evaluator.as_ref());
        let torsion_names = energy
            .molecule()
            .map(|m| m.torsion_names())
            .unwrap_or_default();
        // Live metrics judge each iteration's new samples (E-W2, x-W2 and dist-TV are cheap next
        // to simulating them); eq-W2 on the scene's evaluation cadence.
        let eq_every = scene.schedule.eval_every as u64;
        let driver = Driver::new(sampler, evaluator, EvalPolicy::Never, true, eq_every);
        let family = crate::metrics::Family::of(energy.as_ref());
        // For every kind: in a race the plot's line must not depend on which lane comes first.
        let log_z_exact = crate::logz::exact_cached(
            &ron::to_string(&scene.system).unwrap_or_default(),
            energy.as_ref(),
        );
        let info = RunInfo {
            generation,
            scene,
            scene_path: path,
            layout,
            family,
            reference_energies,
            reference_distances,
            reference_torsions,
            torsion_names,
            race,
            fork: None,
            log_z_exact,
        };
        Ok(Run {
            driver,
            info: Arc::new(info),
        })
    }
}
