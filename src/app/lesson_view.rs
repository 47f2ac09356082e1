//! Lessons in the app: entering steps (restarting the run, setting the view and hyperparameters),
//! advancing on arrow keys or when a step's condition holds, the caption over the view, and the
//! scripted `lesson --screenshot-steps DIR` run. A step that cannot be set up (its scene file is
//! gone, the worker refuses it) leaves a notice and the lesson goes on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::window::RequestRedraw;
use bevy_egui::egui;

use super::link::{Link, RunData, SceneEdit, UiAction};
use super::particles::ViewSettings;
use crate::lesson::{
    Advance, Block, Condition, Control, LoadedLesson, Panel, Progress, caption_blocks,
};
use crate::scene::Scene;
use crate::worker::Command;

/// The open lesson and where it is.
#[derive(Resource)]
pub struct LessonState {
    pub lesson: Option<LoadedLesson>,
    pub step: usize,
    /// The step whose settings are in force.
    pub applied: Option<usize>,
    /// Enter the next step with its full setup (opened there, or moved back) rather than only
    /// its own changes on top of the step before.
    jump: bool,
    /// Run generation when the step began; a step that restarts waits for a newer run.
    generation_at_entry: u64,
    waits_for_restart: bool,
    /// Snapshots seen when the step began (the scripted run waits for fresh data) ...
    pub snapshots_at_entry: u64,
    /// ... if the step sent the worker anything to answer.
    sent_commands: bool,
    /// Why the current step could not be set up.
    pub broken: Option<String>,
    /// Conditions advance the lesson by themselves (the scripted run advances after pictures).
    pub auto_advance: bool,
}

impl Default for LessonState {
    fn default() -> Self {
        Self {
            lesson: None,
            step: 0,
            applied: None,
            jump: true,
            generation_at_entry: 0,
            waits_for_restart: false,
            snapshots_at_entry: 0,
            sent_commands: false,
            broken: None,
            auto_advance: true,
        }
    }
}

impl LessonState {
    /// Opens a lesson at `step` (its setup is applied on the next frame).
    pub fn open(&mut self, lesson: LoadedLesson, step: usize) {
        let step = step.min(lesson.len().saturating_sub(1));
        *self = LessonState {
            lesson: Some(lesson),
            step,
            auto_advance: self.auto_advance,
            ..LessonState::default()
        };
    }

    /// Takes the lesson at `step` as already set up (a reopened session, whose scene is the state).
    pub fn resume(&mut self, lesson: LoadedLesson, step: usize) {
        self.open(lesson, step);
        self.applied = Some(self.step);
    }

    /// Whether the step's run is the one it asked for.
    pub fn ready(&self, data: &RunData) -> bool {
        !self.waits_for_restart
            || data
                .info
                .as_ref()
                .is_some_and(|i| i.generation > self.generation_at_entry)
    }

    /// Whether data from after the step began has arrived (a new run counts its snapshots afresh).
    pub fn fresh(&self, data: &RunData) -> bool {
        if self.waits_for_restart {
            self.ready(data) && data.snapshots >= 1
        } else {
            !self.sent_commands || data.snapshots > self.snapshots_at_entry
        }
    }

    pub fn current(&self) -> Option<&crate::lesson::Step> {
        self.lesson.as_ref().map(|l| &l.lesson.steps[self.step])
    }

    /// Panels shown: the lesson's choice, else all (in projector mode: none but the view).
    pub fn shows(&self, panel: Panel, projector: bool) -> bool {
        match self.lesson.as_ref().and_then(|l| l.panels_at(self.step)) {
            Some(list) => panel == Panel::View || list.contains(&panel),
            None => !projector || matches!(panel, Panel::View | Panel::Legend),
        }
    }

    pub fn locked(&self, c: Control) -> bool {
        self.lesson
            .as_ref()
            .is_some_and(|l| l.locked_at(self.step).contains(&c))
    }

    pub fn point_at(&self) -> Option<Panel> {
        self.current().and_then(|s| s.point_at)
    }

    fn go(&mut self, to: usize, jump: bool) {
        let Some(l) = &self.lesson else { return };
        let to = to.min(l.len() - 1);
        if to != self.step || self.applied.is_none() {
            self.step = to;
            self.applied = None;
            self.jump = jump;
        }
    }
}

/// The live run as lesson conditions see it.
pub fn progress(data: &RunData) -> Progress {
    let last = data.metrics.last();
    Progress {
        gradient_steps: data.counters.gradient_steps,
        energy_evals: data.energy_evals(),
        iterations: data.counters.outer_iterations,
        seconds: data.counters.wall_seconds,
        energy_w2: last.map(|m| m.metrics.energy_w2()),
        eq_w2: data
            .metrics
            .iter()
            .rev()
            .find_map(|m| m.metrics.get("eq_w2")),
        x_w2: last.and_then(|m| m.metrics.get("x_w2")),
        dist_tv: last.and_then(|m| m.metrics.get("dist_tv")),
        ess: last.map(|m| m.ess),
    }
}

/// The lessons folder: `lessons/` beside the scenes' folder, else in the working directory,
/// else in the source tree this was built from.
pub fn lessons_dir(scene_path: &Path) -> PathBuf {
    let beside = scene_path
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("lessons"));
    [
        beside,
        Some(PathBuf::from("lessons")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons")),
    ]
    .into_iter()
    .flatten()
    .find(|d| d.is_dir())
    .unwrap_or_else(|| PathBuf::from("lessons"))
}

pub fn plugin(app: &mut App) {
    app.init_resource::<LessonState>().add_systems(
        Update,
        (lesson_actions, enter_step, advance_on_condition, sync_locks)
            .chain()
            .after(super::link::dispatch),
    );
}

fn sync_locks(state: Res<LessonState>, mut locked: ResMut<super::link::Locked>) {
    let now: Vec<Control> = state
        .lesson
        .as_ref()
        .map(|l| l.locked_at(state.step).to_vec())
        .unwrap_or_default();
    if locked.0 != now {
        locked.0 = now;
    }
}

fn lesson_actions(
    mut actions: MessageReader<UiAction>,
    mut state: ResMut<LessonState>,
    mut data: ResMut<RunData>,
) {
    for a in actions.read() {
        match a {
            UiAction::NextStep => {
                let s = state.step + 1;
                state.go(s, false);
            }
            UiAction::PrevStep => {
                let s = state.step.saturating_sub(1);
                state.go(s, true);
            }
            UiAction::OpenLesson(p) => match LoadedLesson::load(p) {
                Ok(l) => {
                    data.notice(
                        false,
                        format!("lesson opened: {} ({} steps)", l.lesson.title, l.len()),
                    );
                    state.open(l, 0);
                }
                Err(e) => data.notice(true, format!("cannot open the lesson: {e}")),
            },
            UiAction::CloseLesson => {
                let auto = state.auto_advance;
                *state = LessonState {
                    auto_advance: auto,
                    ..LessonState::default()
                };
            }
            _ => {}
        }
    }
}

/// Applies the current step's settings once, when it is entered.
fn enter_step(
    mut state: ResMut<LessonState>,
    mut data: ResMut<RunData>,
    mut edit: ResMut<SceneEdit>,
    mut view: ResMut<ViewSettings>,
    link: Res<Link>,
) {
    let (Some(lesson), None) = (&state.lesson, state.applied) else {
        return;
    };
    let i = state.step;
    let step = lesson.lesson.steps[i].clone();
    let generation = data.info.as_ref().map_or(0, |info| info.generation);
    let mut commands = Vec::new();
    let mut broken = None;
    let restarts =
        step.scene.is_some() || step.seed.is_some() || step.restart || !step.race.is_empty();
    let mut restarting = false;
    if state.jump {
        let setup = lesson.setup_at(i);
        match Scene::load(&setup.scene) {
            Ok(scene) => {
                edit.path = setup.scene.clone();
                commands.push(restart(
                    scene,
                    setup.scene,
                    setup.seed,
                    &setup.hyper,
                    setup.race,
                ));
                restarting = true;
            }
            Err(e) => broken = Some(format!("step {}: its scene cannot be read: {e}", i + 1)),
        }
        *view = ViewSettings::default();
        setup.view.iter().for_each(|v| view.apply(v));
        if let Some(s) = setup.speed {
            commands.push(Command::SetSpeed(s));
            edit.speed = s;
        }
    } else {
        if restarts {
            let loaded = match &lesson.scenes[i] {
                Some(p) => Scene::load(p)
                    .map(|s| (s, p.clone()))
                    .map_err(|e| format!("step {}: its scene cannot be read: {e}", i + 1)),
                None => Ok((edit.scene.clone(), edit.path.clone())),
            };
            match loaded {
                Ok((scene, path)) => {
                    edit.path = path.clone();
                    commands.push(restart(
                        scene,
                        path,
                        step.seed,
                        std::slice::from_ref(&step.hyper),
                        step.race.clone(),
                    ));
                    restarting = true;
                }
                Err(e) => broken = Some(e),
            }
        } else if !step.hyper.is_empty() {
            // The step's edits go to the run's kind (lane 0 of a race) and to the scene the next
            // reset uses.
            step.hyper.apply(&mut edit.scene.sampler);
            let kind = data
                .config
                .as_ref()
                .map_or(edit.scene.sampler.kind, |c| c.kind);
            commands.push(Command::SetHyper {
                lane: 0,
                changes: step.hyper.changes_for(kind),
            });
        }
        view.apply(&step.view);
        if let Some(s) = step.speed {
            commands.push(Command::SetSpeed(s));
            edit.speed = s;
        }
    }
    match step.play {
        Some(true) => commands.push(Command::Play),
        Some(false) => commands.push(Command::Pause),
        None => {}
    }
    // A broken step's run is not restarted: what runs keeps running, the caption says why.
    state.sent_commands = !commands.is_empty();
    for c in commands {
        link.0.send(c);
    }
    if let Some(b) = &broken {
        data.notice(
            true,
            format!("lesson: {b}; the lesson goes on — next ▶ for the next step"),
        );
    }
    state.broken = broken;
    state.generation_at_entry = generation;
    state.waits_for_restart = restarting;
    state.snapshots_at_entry = data.snapshots;
    state.applied = Some(i);
    state.jump = false;
}

/// The command that restarts on `scene` with a seed and hyperparameter edits applied (in
/// order), as a single run or a race.
fn restart(
    mut scene: Scene,
    path: PathBuf,
    seed: Option<u64>,
    hyper: &[crate::lesson::HyperEdit],
    race: Vec<crate::sampler::SamplerKind>,
) -> Command {
    if let Some(seed) = seed {
        scene.sampler.seed = seed;
    }
    hyper.iter().for_each(|e| e.apply(&mut scene.sampler));
    if race.is_empty() {
        Command::Reset {
            scene: Box::new(scene),
            path,
        }
    } else {
        Command::Race {
            scene: Box::new(scene),
            path,
            kinds: race,
        }
    }
}

fn advance_on_condition(mut state: ResMut<LessonState>, data: Res<RunData>) {
    if !state.auto_advance || state.applied != Some(state.step) || !state.ready(&data) {
        return;
    }
    let Some(Advance::When(c)) = state.current().map(|s| s.advance.clone()) else {
        return;
    };
    let last = state.lesson.as_ref().map_or(0, |l| l.len() - 1);
    if state.step < last && c.holds(&progress(&data)) {
        let next = state.step + 1;
        state.go(next, false);
    }
}

/// Fill of the caption box (its own colour, so that the window test can find it).
pub const CAPTION_FILL: egui::Color32 = egui::Color32::from_rgb(22, 28, 46);
pub const CAPTION_FILL_PROJECTOR: egui::Color32 = egui::Color32::from_rgb(255, 250, 222);
/// Caption text size in points (projector mode doubles every point).
pub const CAPTION_SIZE: f32 = 17.0;

/// The caption box at the top of the view: lesson and step, the caption, how it advances.
/// Returns the height it takes from the top of the view (0 without a lesson).
pub fn caption(
    ctx: &egui::Context,
    view: egui::Rect,
    state: &LessonState,
    data: &RunData,
    projector: bool,
    actions: &mut MessageWriter<UiAction>,
) -> f32 {
    let (Some(lesson), Some(step)) = (&state.lesson, state.current()) else {
        return 0.0;
    };
    let (fill, text, dim) = if projector {
        (
            CAPTION_FILL_PROJECTOR,
            egui::Color32::BLACK,
            egui::Color32::from_gray(60),
        )
    } else {
        (
            CAPTION_FILL,
            egui::Color32::from_gray(240),
            egui::Color32::from_gray(170),
        )
    };
    let width = (view.width() - 24.0).clamp(200.0, 820.0);
    let shown = egui::Area::new("lesson_caption".into())
        .fixed_pos(egui::pos2(view.center().x - width / 2.0, view.top() + 8.0))
        .show(ctx, |ui| {
            egui::Frame::new()
                .fill(fill)
                .inner_margin(12.0)
                .corner_radius(4.0)
                .stroke(egui::Stroke::new(1.0, dim))
                .show(ui, |ui| {
                    ui.set_width(width - 24.0);
                    let heading = format!(
                        "{} — step {} of {}{}",
                        lesson.lesson.title,
                        state.step + 1,
                        lesson.len(),
                        if step.title.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", step.title)
                        }
                    );
                    ui.label(
                        egui::RichText::new(heading)
                            .size(CAPTION_SIZE * 0.8)
                            .color(dim)
                            .strong(),
                    );
                    ui.add_space(4.0);
                    for b in caption_blocks(&step.caption) {
                        ui.label(layout_job(&b, CAPTION_SIZE, text));
                    }
                    if let Some(b) = &state.broken {
                        ui.colored_label(
                            egui::Color32::from_rgb(220, 60, 60),
                            format!("This step could not be set up: {b}"),
                        );
                    }
                    ui.add_space(4.0);
                    let last = state.step + 1 == lesson.len();
                    let hint = match &step.advance {
                        _ if last => "end of the lesson".to_string(),
                        Advance::Key => {
                            "next ▶ or the right-arrow key for the next step".to_string()
                        }
                        Advance::When(c) if !state.ready(data) => {
                            format!("starting the run… then on when {c}")
                        }
                        Advance::When(c) => {
                            format!("goes on when {} (or next ▶)", c.describe(&progress(data)))
                        }
                    };
                    // A condition's hint (long, with live values) gets a line of its own that wraps; the
                    // buttons stay on one line.
                    let waits = !last && matches!(step.advance, Advance::When(_));
                    let (row, wrap) = if waits {
                        (None, Some(hint))
                    } else {
                        (Some(hint), None)
                    };
                    ui.horizontal(|ui| {
                        if ui
                            .add_enabled(state.step > 0, egui::Button::new("◀"))
                            .on_hover_text("Previous step (left-arrow key)")
                            .clicked()
                        {
                            actions.write(UiAction::PrevStep);
                        }
                        if ui
                            .add_enabled(!last, egui::Button::new("next ▶"))
                            .on_hover_text("Next step (right-arrow key)")
                            .clicked()
                        {
                            actions.write(UiAction::NextStep);
                        }
                        if let Some(h) = row {
                            ui.label(egui::RichText::new(h).color(dim));
                        }
                        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                            if ui.small_button("close lesson").clicked() {
                                actions.write(UiAction::CloseLesson);
                            }
                        });
                    });
                    if let Some(h) = wrap {
                        ui.label(egui::RichText::new(h).color(dim));
                    }
                });
        });
    shown.response.rect.bottom() - view.top() + 4.0
}

/// One caption block as an egui text job (bold brighter, emphasis italic, code monospace).
fn layout_job(b: &Block, size: f32, color: egui::Color32) -> egui::text::LayoutJob {
    let mut job = egui::text::LayoutJob::default();
    let plain = egui::TextFormat {
        font_id: egui::FontId::proportional(size),
        color,
        ..Default::default()
    };
    if b.bullet {
        job.append("•  ", 0.0, plain.clone());
    }
    for s in &b.spans {
        let mut f = plain.clone();
        if s.code {
            f.font_id = egui::FontId::monospace(size * 0.95);
        }
        f.italics = s.italic;
        if s.bold {
            // egui's default fonts have no bold face: bold is drawn underlined-free but stronger.
            f.color = if color.r() > 128 {
                egui::Color32::WHITE
            } else {
                egui::Color32::BLACK
            };
            f.background = if color.r() > 128 {
                egui::Color32::from_rgb(50, 60, 90)
            } else {
                egui::Color32::from_rgb(255, 230, 150)
            };
        }
        job.append(&s.text, 0.0, f);
    }
    job
}

/// The scripted lesson run: enter each step, wait until its picture is due (its run started,
/// its condition or `picture` holding), pause, save `DIR/step-NN.png`, go on; close after the last.
#[derive(Resource)]
pub struct ScriptedLesson {
    pub dir: PathBuf,
    pub timeout: Duration,
    step: usize,
    stage: Stage,
    /// Frames drawn so far: the first picture waits for the renderer to warm up (its first
    /// frames are black).
    frames: u32,
    since: Instant,
    last_report: Instant,
}

#[derive(Debug, PartialEq)]
enum Stage {
    Waiting,
    /// Paused for the picture; frames left to draw, whether training was running.
    Settling(u32, bool),
    Capturing(PathBuf, bool),
    Done,
}

impl ScriptedLesson {
    pub fn new(dir: PathBuf, timeout: Duration) -> Self {
        Self {
            dir,
            timeout,
            step: 0,
            stage: Stage::Waiting,
            frames: 0,
            since: Instant::now(),
            last_report: Instant::now(),
        }
    }
}

/// Frames before the first picture.
const FIRST_FRAMES: u32 = 30;

pub fn scripted_plugin(app: &mut App) {
    app.add_systems(
        Update,
        (scripted.after(enter_step), super::export::close_window),
    );
}

#[allow(clippy::too_many_arguments)]
fn scripted(
    mut s: ResMut<ScriptedLesson>,
    mut state: ResMut<LessonState>,
    data: Res<RunData>,
    link: Res<Link>,
    mut commands: Commands,
    mut redraw: MessageWriter<RequestRedraw>,
    mut exit: MessageWriter<AppExit>,
) {
    state.auto_advance = false;
    s.frames += 1;
    let Some(lesson) = &state.lesson else { return };
    let n = lesson.len();
    if !data.running || !matches!(s.stage, Stage::Waiting) {
        // Nothing else wakes a paused app.
        redraw.write(RequestRedraw);
    }
    match std::mem::replace(&mut s.stage, Stage::Done) {
        Stage::Waiting => {
            s.stage = Stage::Waiting;
            if state.step != s.step || state.applied != Some(s.step) {
                if s.last_report.elapsed() > Duration::from_secs(15) {
                    println!(
                        "lesson step {}/{n}: not entered yet (lesson at {}, applied {:?})",
                        s.step + 1,
                        state.step + 1,
                        state.applied
                    );
                    s.last_report = Instant::now();
                }
                return;
            }
            let step = &lesson.lesson.steps[s.step];
            let due: Option<Condition> = match &step.advance {
                Advance::When(c) => Some(c.clone()),
                Advance::Key => step.picture.clone(),
            };
            let p = progress(&data);
            let fresh = state.fresh(&data);
            let has_samples = data.samples.is_some()
                || data.lanes.iter().any(|l| l.samples.is_some())
                || (!data.running && !data.kind.learns());
            let holds = due.as_ref().is_none_or(|c| c.holds(&p));
            if s.last_report.elapsed() > Duration::from_secs(15) {
                let waiting = due.as_ref().filter(|_| fresh).map_or_else(
                    || format!("its run to start (snapshots {} since entry {}, ready {}, samples {has_samples})", data.snapshots, state.snapshots_at_entry, state.ready(&data)),
                    |c| c.describe(&p),
                );
                println!("lesson step {}/{n}: waiting for {waiting}", s.step + 1);
                s.last_report = Instant::now();
            }
            if fresh && (has_samples || state.broken.is_some()) && holds && s.frames > FIRST_FRAMES
            {
                if data.running {
                    link.0.send(Command::Pause);
                }
                s.stage = Stage::Settling(6, data.running);
            } else if s.since.elapsed() > s.timeout {
                let what = due.map_or("its run to start".to_string(), |c| c.describe(&p));
                eprintln!(
                    "error: lesson step {}/{n} still waits for {what} after {:.0} s; stopping",
                    s.step + 1,
                    s.timeout.as_secs_f64()
                );
                exit.write(AppExit::error());
            }
        }
        Stage::Settling(frames, was_running) => {
            if data.running {
                s.stage = Stage::Settling(frames, was_running);
            } else if frames > 0 {
                s.stage = Stage::Settling(frames - 1, was_running);
            } else {
                let path = s.dir.join(format!("step-{:02}.png", s.step + 1));
                let _ = std::fs::remove_file(&path);
                let last = s.step + 1 == n;
                super::export::take_screenshot(&mut commands, path.clone(), last);
                s.stage = Stage::Capturing(path, was_running);
            }
        }
        Stage::Capturing(path, was_running) => {
            if !path.exists() || s.step + 1 == n {
                s.stage = Stage::Capturing(path, was_running);
                return;
            }
            println!("lesson step {}/{n}: {}", s.step + 1, path.display());
            if was_running {
                link.0.send(Command::Play);
            }
            s.step += 1;
            s.since = Instant::now();
            let next = s.step;
            state.go(next, false);
            s.stage = Stage::Waiting;
        }
        Stage::Done => {}
    }
}
