//! The app's side of the worker protocol: what the UI keeps of a run ([`RunData`]), what the
//! user asks for ([`UiAction`]) and the systems between them and the worker's channels.
//! Nothing here renders, so it runs under `MinimalPlugins` in the headless tests.

use std::path::PathBuf;
use std::sync::Arc;

use bevy::prelude::*;

use crate::sampler::{Counters, SamplerConfig, SamplerKind};
use crate::scene::Scene;
use crate::worker::{
    Command, Event, LaneSnapshot, MetricPoint, Phase, RunInfo, SampleBatch, Snapshot, WorkerHandle,
};

/// What a user asked for, from a button, a field or a key. Panels and shortcuts write these;
/// [`dispatch`] turns them into worker commands, other plugins react to their own.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum UiAction {
    Play,
    Pause,
    TogglePlay,
    /// One unit of gradient steps (the speed setting).
    Step,
    /// Restart the current scene with the current seed and restart-only settings.
    Reset,
    /// Switch to another scene file.
    OpenScene(PathBuf),
    /// Race these sampler kinds on the current scene's system and seed.
    StartRace(Vec<SamplerKind>),
    /// Back to a single run of the current scene.
    EndRace,
    /// Live hyperparameters of one lane (0 for a single run), as (row key, value).
    SetHyper {
        lane: usize,
        changes: Vec<(String, f64)>,
    },
    SetSpeed(u64),
    SaveCheckpoint(PathBuf),
    LoadCheckpoint(PathBuf),
    ExportSamples(PathBuf),
    ExportMetrics(PathBuf),
    Screenshot(PathBuf),
    FrameView,
    ToggleHelp,
    /// High contrast, everything twice as large, panels hidden unless a lesson shows them.
    ToggleProjector,
    /// Lessons: the next or previous step, open a lesson file, close it.
    NextStep,
    PrevStep,
    OpenLesson(PathBuf),
    CloseLesson,
    /// Write a session file (scene, seed, live hyperparameters, view, lesson step).
    SaveSession(PathBuf),
    /// Fork the run here: a copy continues with these hyperparameters beside it.
    Fork(Vec<(String, f64)>),
    /// Keep one lane (of a fork or race) and drop the others.
    KeepLane(usize),
    /// Compute the run's missing reference in the background, cache it beside the scene, and
    /// judge the run against it when it is ready.
    ComputeReference,
}

/// A reference being computed on a thread of its own (training goes on meanwhile).
pub struct ReferenceJob {
    /// The system it is for: the result is attached only if the run is still of this system.
    pub system: crate::scene::System,
    /// Fraction done, in millionths.
    pub progress: Arc<std::sync::atomic::AtomicU32>,
    pub done: crossbeam_channel::Receiver<Result<PathBuf, String>>,
    pub started: std::time::Instant,
}

impl ReferenceJob {
    /// Starts computing the reference of `scene` (read from `path`, beside which it is cached).
    pub fn start(scene: &Scene, path: &std::path::Path) -> ReferenceJob {
        use std::sync::atomic::{AtomicU32, Ordering};
        let progress = Arc::new(AtomicU32::new(0));
        let (tx, done) = crossbeam_channel::bounded(1);
        let (scene_copy, cache, p) = (scene.clone(), scene.reference_cache(path), progress.clone());
        std::thread::Builder::new()
            .name("reference".into())
            .spawn(move || {
                let energy = scene_copy.energy();
                let r = crate::reference::compute_and_cache(
                    energy.as_ref(),
                    &scene_copy.reference.mcmc,
                    &cache,
                    &mut |f| p.store((f.clamp(0.0, 1.0) * 1e6) as u32, Ordering::Relaxed),
                );
                let _ = tx.send(r.map_err(|e| e.to_string()));
            })
            .expect("a thread can be spawned");
        ReferenceJob {
            system: scene.system.clone(),
            progress,
            done,
            started: std::time::Instant::now(),
        }
    }

    /// Fraction done, 0 to 1.
    pub fn fraction(&self) -> f32 {
        self.progress.load(std::sync::atomic::Ordering::Relaxed) as f32 / 1e6
    }
}

impl UiAction {
    /// The lesson control that, when locked, refuses this action.
    pub fn control(&self) -> Option<crate::lesson::Control> {
        use crate::lesson::Control;
        match self {
            UiAction::Play | UiAction::Pause | UiAction::TogglePlay | UiAction::Step => {
                Some(Control::Play)
            }
            UiAction::Reset
            | UiAction::StartRace(_)
            | UiAction::EndRace
            | UiAction::LoadCheckpoint(_) => Some(Control::Reset),
            UiAction::OpenScene(_) => Some(Control::ScenePicker),
            UiAction::SetHyper { .. } | UiAction::Fork(_) | UiAction::KeepLane(_) => {
                Some(Control::Hyperparameters)
            }
            UiAction::SetSpeed(_) => Some(Control::Speed),
            _ => None,
        }
    }
}

/// The controls the current lesson step locks (kept here so that dispatch can refuse them).
#[derive(Resource, Default, Debug, Clone)]
pub struct Locked(pub Vec<crate::lesson::Control>);

/// The worker handle (dropping it joins the training thread).
#[derive(Resource)]
pub struct Link(pub WorkerHandle);

/// The scene the UI is editing: the next reset uses it (seed and restart-only values included).
#[derive(Resource, Clone)]
pub struct SceneEdit {
    pub scene: Scene,
    pub path: PathBuf,
    /// Gradient steps between snapshots (and per press of Step).
    pub speed: u64,
}

/// A line in the message area.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub error: bool,
    pub text: String,
}

/// Everything the UI draws about the current run, filled from snapshots.
#[derive(Resource, Default)]
pub struct RunData {
    pub info: Option<Arc<RunInfo>>,
    /// A reference being computed for the run (see [`UiAction::ComputeReference`]).
    pub reference_job: Option<ReferenceJob>,
    pub running: bool,
    pub phase: Phase,
    pub counters: Counters,
    /// The settings the (first lane's) sampler runs with, live edits included.
    pub config: Option<Arc<SamplerConfig>>,
    pub kind: SamplerKind,
    /// The sampler's stage, where it has stages.
    pub stage: Option<String>,
    /// (gradient step, loss); thinned by half whenever it passes [`MAX_LOSS_POINTS`].
    pub losses: Vec<[f64; 2]>,
    /// Keep every `loss_stride`-th incoming loss (grows with thinning).
    pub loss_stride: u64,
    loss_seen: u64,
    pub metrics: Vec<MetricPoint>,
    pub samples: Option<Arc<SampleBatch>>,
    /// Increases whenever `samples` changes, so views know to redraw.
    pub samples_version: u64,
    pub trajectory: Option<Arc<Vec<Vec<f32>>>>,
    /// The learned control field, while the view asks for it.
    pub field: Option<Arc<crate::field::ControlField>>,
    pub steps_per_second: f64,
    pub evals_per_second: f64,
    pub notices: Vec<Notice>,
    /// Snapshots applied (for tests and the frame report).
    pub snapshots: u64,
    /// The lanes of a race (empty for a single run).
    pub lanes: Vec<LaneData>,
    /// The sampler's off-policy training points (local search), drawn over a plane's map.
    pub off_policy: Option<Arc<Vec<f32>>>,
}

/// What the UI keeps of one lane of a race.
#[derive(Debug, Clone, Default)]
pub struct LaneData {
    pub kind: SamplerKind,
    /// (gradient step, loss), for the branches of a fork (which start with the shared history).
    pub losses: Vec<[f64; 2]>,
    pub counters: Counters,
    pub stage: Option<String>,
    pub metrics: Vec<MetricPoint>,
    /// The race's judgements at budget points (compare.csv's rows for this kind).
    pub points: Vec<crate::race::RacePoint>,
    pub samples: Option<Arc<SampleBatch>>,
    /// The lane's settings, live edits included.
    pub config: Option<Arc<SamplerConfig>>,
    pub off_policy: Option<Arc<Vec<f32>>>,
}

impl LaneData {
    fn apply(&mut self, s: LaneSnapshot) {
        self.kind = s.kind;
        if s.config.is_some() {
            self.config = s.config;
        }
        self.counters = s.counters;
        self.stage = s.stage;
        self.losses
            .extend(s.losses.into_iter().map(|(k, l)| [k as f64, l as f64]));
        if self.losses.len() > MAX_LOSS_POINTS {
            self.losses = self.losses.iter().step_by(2).copied().collect();
        }
        self.metrics.extend(s.metrics);
        self.points.extend(s.points);
        if let Some(b) = s.samples {
            self.samples = Some(b);
        }
        if s.off_policy.is_some() {
            self.off_policy = s.off_policy;
        }
    }
}

/// Loss points kept for the plot; older ones are thinned, so memory stays bounded on long runs.
pub const MAX_LOSS_POINTS: usize = 20_000;
const MAX_NOTICES: usize = 50;

impl RunData {
    pub fn notice(&mut self, error: bool, text: impl Into<String>) {
        self.notices.push(Notice {
            error,
            text: text.into(),
        });
        if self.notices.len() > MAX_NOTICES {
            self.notices.remove(0);
        }
    }

    fn start(&mut self, info: Arc<RunInfo>) {
        let notices = std::mem::take(&mut self.notices);
        let reference_job = self.reference_job.take();
        // The branches of a fork share the history up to the fork: each lane starts with it.
        let (losses, metrics) = if info.fork.is_some() {
            (
                std::mem::take(&mut self.losses),
                std::mem::take(&mut self.metrics),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let lanes = info
            .race
            .iter()
            .map(|&kind| LaneData {
                kind,
                losses: losses.clone(),
                metrics: metrics.clone(),
                ..LaneData::default()
            })
            .collect();
        let stride = if info.fork.is_some() {
            self.loss_stride.max(1)
        } else {
            1
        };
        *self = RunData {
            info: Some(info),
            notices,
            reference_job,
            loss_stride: stride,
            lanes,
            losses,
            metrics,
            ..RunData::default()
        };
    }

    /// Whether the lanes are the branches of a fork.
    pub fn forked(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.fork.is_some())
    }

    /// Applies one snapshot; stale ones (from a run that was replaced) are ignored.
    pub fn apply(&mut self, s: Snapshot) {
        let generation = self.info.as_ref().map(|i| i.generation);
        if generation != Some(s.generation) {
            return;
        }
        self.snapshots += 1;
        self.running = s.running;
        self.phase = s.phase;
        self.counters = s.counters;
        if s.config.is_some() {
            self.config = s.config;
        }
        self.kind = s.kind;
        self.stage = s.stage;
        self.steps_per_second = s.steps_per_second;
        self.evals_per_second = s.evals_per_second;
        for (step, loss) in s.losses {
            if self.loss_seen % self.loss_stride.max(1) == 0 {
                self.losses.push([step as f64, loss as f64]);
            }
            self.loss_seen += 1;
        }
        if self.losses.len() > MAX_LOSS_POINTS {
            self.losses = self.losses.iter().step_by(2).copied().collect();
            self.loss_stride = self.loss_stride.max(1) * 2;
        }
        self.metrics.extend(s.metrics);
        if let Some(b) = s.samples {
            self.samples = Some(b);
            self.samples_version += 1;
        }
        if let Some(t) = s.trajectory {
            self.trajectory = Some(t);
        }
        if let Some(f) = s.field {
            self.field = Some(f);
        }
        if s.off_policy.is_some() {
            self.off_policy = s.off_policy;
        }
        let lanes_changed = !s.lanes.is_empty();
        for (lane, ls) in self.lanes.iter_mut().zip(s.lanes) {
            lane.apply(ls);
        }
        if lanes_changed {
            self.samples_version += 1;
        }
    }

    /// Whether a race is shown.
    pub fn racing(&self) -> bool {
        !self.lanes.is_empty()
    }

    /// The latest samples of lane `lane` of a race, or of the run when not racing.
    pub fn lane_samples(&self, lane: usize) -> Option<&SampleBatch> {
        if self.racing() {
            self.lanes.get(lane).and_then(|l| l.samples.as_deref())
        } else {
            self.samples.as_deref()
        }
    }

    /// The off-policy training points of lane `lane` (or of the run when not racing).
    pub fn lane_off_policy(&self, lane: usize) -> Option<&[f32]> {
        if self.racing() {
            self.lanes.get(lane).and_then(|l| l.off_policy.as_deref().map(|v| v.as_slice()))
        } else {
            self.off_policy.as_deref().map(|v| v.as_slice())
        }
    }

    /// Energy evaluations of the run, or of the race's slowest lane.
    pub fn energy_evals(&self) -> u64 {
        if self.racing() {
            self.lanes
                .iter()
                .map(|l| l.counters.energy_evals)
                .min()
                .unwrap_or(0)
        } else {
            self.counters.energy_evals
        }
    }
}

/// A lane's name: its kind in a race; "A (as it was)" and "B (…the change…)" in a fork.
pub fn lane_name(info: &RunInfo, lane: usize, kind: SamplerKind) -> String {
    match &info.fork {
        None => kind.label().to_string(),
        Some(_) if lane == 0 => "A: as it was".to_string(),
        Some(f) => {
            let changes: Vec<String> = f
                .changes
                .iter()
                .map(|(n, _, b)| format!("{n} {b}"))
                .collect();
            if changes.is_empty() {
                "B: same settings".to_string()
            } else {
                format!("B: {}", changes.join(", "))
            }
        }
    }
}

/// Whether keyboard shortcuts may fire (false while a text field has focus).
#[derive(Resource)]
pub struct KeyboardFree(pub bool);

pub fn plugin(app: &mut App) {
    app.add_message::<UiAction>()
        .init_resource::<RunData>()
        .insert_resource(KeyboardFree(true))
        .init_resource::<Locked>()
        .add_systems(PreUpdate, poll)
        .add_systems(Update, (shortcuts, dispatch).chain());
}

/// Drains the worker's channels into [`RunData`]. Only the newest snapshot is waiting (the
/// channel has one slot), so a slow frame never has a backlog to work through.
pub fn poll(link: Res<Link>, mut data: ResMut<RunData>, mut edit: ResMut<SceneEdit>) {
    while let Ok(e) = link.0.events.try_recv() {
        match e {
            Event::Started(info) => {
                edit.scene = info.scene.clone();
                edit.path = info.scene_path.clone();
                data.start(info);
            }
            Event::Done { message, .. } => data.notice(false, message),
            Event::Error(m) => data.notice(true, m),
            Event::InfoChanged(info) => data.info = Some(info),
        }
    }
    let finished = data.reference_job.as_ref().and_then(|j| match j.done.try_recv() {
        Ok(r) => Some(r),
        Err(crossbeam_channel::TryRecvError::Empty) => None,
        // The thread ended without a word (it panicked): say so rather than wait forever.
        Err(crossbeam_channel::TryRecvError::Disconnected) => {
            Some(Err("the reference thread stopped without a result".into()))
        }
    });
    if let Some(result) = finished {
        let job = data.reference_job.take().expect("a finished job");
        let same = data.info.as_ref().is_some_and(|i| i.scene.system == job.system);
        match result {
            Ok(path) if same => link.0.send(Command::AttachReference(path)),
            Ok(path) => data.notice(
                false,
                format!("reference cached in {} (for the scene before; used when it is opened again)", path.display()),
            ),
            Err(e) => data.notice(true, format!("cannot compute the reference: {e}")),
        }
    }
    while let Ok(s) = link.0.snapshots.try_recv() {
        data.apply(s);
    }
}

/// Every key the app answers to, with what it does: the shortcuts below and the help window
/// both read it, so the help cannot miss one. (Mouse gestures are listed in the help too.)
pub const KEYS: [(&str, &str); 9] = [
    ("Space", "play / pause training"),
    (
        "N",
        "one step (the speed setting's number of gradient steps)",
    ),
    ("R", "reset: fresh weights with the seed and settings shown"),
    ("F or double-click", "frame the view"),
    ("H or F1", "this help"),
    (
        "P",
        "projector mode: high contrast, twice as large, panels hidden unless a lesson shows them",
    ),
    ("Right arrow / Page Down", "lesson: next step"),
    ("Left arrow / Page Up", "lesson: previous step"),
    (
        "Ctrl+S",
        "save the session (scene, seed, hyperparameters, view, lesson step) to sessions/",
    ),
];

/// The key bindings; [`KEYS`] describes them.
pub fn bindings(ctrl: bool) -> Vec<(KeyCode, UiAction)> {
    if ctrl {
        return vec![(KeyCode::KeyS, UiAction::SaveSession(PathBuf::new()))];
    }
    vec![
        (KeyCode::Space, UiAction::TogglePlay),
        (KeyCode::KeyN, UiAction::Step),
        (KeyCode::KeyR, UiAction::Reset),
        (KeyCode::KeyF, UiAction::FrameView),
        (KeyCode::KeyH, UiAction::ToggleHelp),
        (KeyCode::F1, UiAction::ToggleHelp),
        (KeyCode::KeyP, UiAction::ToggleProjector),
        (KeyCode::ArrowRight, UiAction::NextStep),
        (KeyCode::PageDown, UiAction::NextStep),
        (KeyCode::ArrowLeft, UiAction::PrevStep),
        (KeyCode::PageUp, UiAction::PrevStep),
    ]
}

/// Turns key presses into actions (not while a text field has the keyboard). An empty
/// `SaveSession` path means "a new file in sessions/".
pub fn shortcuts(
    keys: Res<ButtonInput<KeyCode>>,
    free: Res<KeyboardFree>,
    mut out: MessageWriter<UiAction>,
) {
    if !free.0 {
        return;
    }
    let ctrl = keys.pressed(KeyCode::ControlLeft) || keys.pressed(KeyCode::ControlRight);
    for (key, action) in bindings(ctrl) {
        if keys.just_pressed(key) {
            out.write(action);
        }
    }
}

/// Turns actions into worker commands.
pub fn dispatch(
    mut actions: MessageReader<UiAction>,
    link: Res<Link>,
    mut data: ResMut<RunData>,
    mut edit: ResMut<SceneEdit>,
    locked: Res<Locked>,
) {
    for a in actions.read() {
        if let Some(c) = a.control().filter(|c| locked.0.contains(c)) {
            data.notice(false, format!("{c:?} is locked by the lesson in this step"));
            continue;
        }
        let cmd = match a {
            UiAction::Play => Command::Play,
            UiAction::Pause => Command::Pause,
            UiAction::TogglePlay if data.running => Command::Pause,
            UiAction::TogglePlay => Command::Play,
            UiAction::Step => Command::Step(edit.speed),
            // A race restarts as a race (same kinds, the seed shown).
            UiAction::Reset if data.racing() => Command::Race {
                scene: Box::new(edit.scene.clone()),
                path: edit.path.clone(),
                kinds: data.lanes.iter().map(|l| l.kind).collect(),
            },
            UiAction::Reset | UiAction::EndRace => Command::Reset {
                scene: Box::new(edit.scene.clone()),
                path: edit.path.clone(),
            },
            UiAction::StartRace(kinds) => Command::Race {
                scene: Box::new(edit.scene.clone()),
                path: edit.path.clone(),
                kinds: kinds.clone(),
            },
            UiAction::OpenScene(p) => match Scene::load(p) {
                Ok(scene) => Command::Reset {
                    scene: Box::new(scene),
                    path: p.clone(),
                },
                // The error names the file and position; shown like any other failure.
                Err(e) => {
                    data.notice(true, e.to_string());
                    continue;
                }
            },
            UiAction::SetHyper { lane, changes } => {
                // A single run's edits are also the scene's: the next reset keeps them.
                if !data.racing() {
                    for (key, value) in changes {
                        if let Some(row) = crate::sampler::hyper::any_row(key) {
                            (row.set)(&mut edit.scene.sampler, *value);
                        }
                    }
                }
                Command::SetHyper {
                    lane: *lane,
                    changes: changes.clone(),
                }
            }
            UiAction::SetSpeed(n) => {
                edit.speed = *n;
                Command::SetSpeed(*n)
            }
            UiAction::SaveCheckpoint(p) => Command::SaveCheckpoint(p.clone()),
            UiAction::Fork(h) => Command::Fork(h.clone()),
            UiAction::KeepLane(i) => Command::KeepLane(*i),
            UiAction::LoadCheckpoint(p) => Command::LoadCheckpoint(p.clone()),
            UiAction::ComputeReference => {
                if let (Some(info), None) = (&data.info, &data.reference_job) {
                    data.reference_job = Some(ReferenceJob::start(&info.scene, &info.scene_path));
                }
                continue;
            }
            _ => continue,
        };
        link.0.send(cmd);
    }
}
