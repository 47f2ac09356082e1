//! The egui panels: run controls and scene picker (top), hyperparameters, view and files
//! (left), plots (right), counters (bottom), the colour legend and the help overlay. Widgets only
//! write [`UiAction`]s and edit settings resources; they never touch the trainer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bevy::camera::Viewport;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::{EguiContexts, EguiInput, EguiPreUpdateSet, EguiPrimaryContextPass, egui};

use super::lesson_view::{self, LessonState};
use super::link::{KEYS, KeyboardFree, RunData, SceneEdit, UiAction};
use super::particles::{
    ColorBy, EnergyScale, LaneLabels, SCALE_STEPS, Show, ViewSettings, viridis,
};
use super::plots::{self, HistogramCache, PlotSettings};
use super::projector::Projector;
use crate::lesson::{Control, Panel};
use crate::sampler::{HyperRow, SamplerConfig, SamplerKind};
use crate::scene::{FormulaSystem, NetworkKind, Scene, System};
use crate::worker::Phase;

/// Panel state that is not a setting of the run.
#[derive(Resource, Default)]
pub struct PanelState {
    pub help: bool,
    /// Scene files found next to the current scene: (path, name, description).
    pub scenes: Vec<(PathBuf, String, String)>,
    scenes_dir: Option<PathBuf>,
    /// The live values being edited (synced from the run when it changes), and the lane of a
    /// race they belong to.
    hyper: Option<SamplerConfig>,
    /// The run's copy `hyper` was last read from (a snapshot brings a new one after every change).
    hyper_synced: Option<Arc<SamplerConfig>>,
    race_generation: u64,
    hyper_lane: usize,
    /// Where "Load checkpoint" reads from.
    pub load_path: String,
    /// Kinds ticked for a race.
    pub race: Vec<SamplerKind>,
    /// The hyperparameters a fork's new branch will get (edited in the Fork panel).
    fork: Option<SamplerConfig>,
    /// Lesson files in the lessons folder: (path, title or why it cannot be read).
    pub lessons: Option<Vec<(PathBuf, Result<String, String>)>>,
    /// The landscape formula being typed (re-read when the scene's system changes).
    formula: Option<FormulaDraft>,
}

impl PanelState {
    /// Re-reads the values the live panel edits from the run (the worker's copy, which a
    /// snapshot brings after every change), so that an edit made elsewhere — a lesson step, the
    /// other lane of a race — shows at once and the next touch of the panel does not send stale
    /// values back.
    pub fn sync_hyper(&mut self, data: &RunData) {
        let current = if data.racing() {
            data.lanes
                .get(self.hyper_lane)
                .and_then(|l| l.config.clone())
        } else {
            data.config.clone()
        };
        if let Some(c) = current.filter(|c| {
            !self
                .hyper_synced
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, c))
        }) {
            self.hyper = Some((*c).clone());
            self.hyper_synced = Some(c);
        }
    }

    /// The values the live panel shows.
    pub fn hyper(&self) -> Option<&SamplerConfig> {
        self.hyper.as_ref()
    }
}

/// What the panels may show and use in this frame: the lesson's choices and projector mode.
pub struct Layout<'a> {
    pub lesson: &'a LessonState,
    pub projector: bool,
}

impl Layout<'_> {
    pub fn shows(&self, p: Panel) -> bool {
        self.lesson.shows(p, self.projector)
    }
    pub fn free(&self, c: Control) -> bool {
        !self.lesson.locked(c)
    }
    /// Draws `add` if the panel is shown, framed in the highlight colour when the lesson points at it.
    pub fn section(&self, ui: &mut egui::Ui, p: Panel, add: impl FnOnce(&mut egui::Ui)) {
        if !self.shows(p) {
            return;
        }
        let r = ui.scope(add).response.rect;
        if self.lesson.point_at() == Some(p) {
            ui.painter().rect_stroke(
                r.expand(3.0),
                4.0,
                egui::Stroke::new(3.0, HIGHLIGHT),
                egui::StrokeKind::Outside,
            );
        }
    }
}

/// The formula field's text, the system it was read from, and the verdict on the text as last
/// checked: parsing, differentiating and probing the bounds (10⁴ evaluations) run when the text
/// changes, not on every frame.
struct FormulaDraft {
    draft: FormulaSystem,
    from: FormulaSystem,
    checked: Option<(FormulaSystem, Result<Option<String>, String>)>,
}

impl FormulaDraft {
    /// `Err(the error)` for a formula that does not build, else `Ok(a warning, if any)`.
    fn verdict(&mut self) -> &Result<Option<String>, String> {
        if self.checked.as_ref().is_none_or(|(c, _)| *c != self.draft) {
            let v = self
                .draft
                .build()
                .map(|f| f.check_bounds())
                .map_err(|(field, message)| format!("{field}: {message}"));
            self.checked = Some((self.draft.clone(), v));
        }
        &self.checked.as_ref().expect("just checked").1
    }
}

/// The colour a lesson points with.
pub const HIGHLIGHT: egui::Color32 = egui::Color32::from_rgb(255, 150, 0);

pub fn plugin(app: &mut App) {
    app.init_resource::<PanelState>()
        .init_resource::<PlotSettings>()
        .init_resource::<HistogramCache>()
        .add_systems(Update, toggle_help)
        .add_systems(
            PreUpdate,
            drop_unchanged_modifiers
                .after(EguiPreUpdateSet::ProcessInput)
                .before(EguiPreUpdateSet::BeginPass),
        )
        .add_systems(EguiPrimaryContextPass, ui);
}

/// bevy_egui 0.42 reports the modifier keys to egui every frame, and egui repaints immediately
/// on any input event: the app would redraw continuously and take the trainer's CPU. Only real
/// changes of the modifiers are passed on.
fn drop_unchanged_modifiers(
    mut inputs: Query<&mut EguiInput>,
    mut last: Local<Option<egui::Modifiers>>,
) {
    for mut input in &mut inputs {
        input.events.retain(|e| match e {
            egui::Event::ModifiersChanged(m) if Some(*m) == *last => false,
            egui::Event::ModifiersChanged(m) => {
                *last = Some(*m);
                true
            }
            _ => true,
        });
    }
}

fn toggle_help(mut actions: MessageReader<UiAction>, mut state: ResMut<PanelState>) {
    for a in actions.read() {
        if *a == UiAction::ToggleHelp {
            state.help = !state.help;
        }
    }
}

/// Scene files in `dir` with their names and one-line descriptions (unreadable ones say why).
pub fn list_scenes(dir: &Path) -> Vec<(PathBuf, String, String)> {
    crate::scene::ron_files(dir)
        .into_iter()
        .map(|p| match Scene::load(&p) {
            Ok(s) => (p, s.name, s.description),
            Err(e) => {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (p, name, format!("cannot be read: {e}"))
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub fn ui(
    mut contexts: EguiContexts,
    mut data: ResMut<RunData>,
    mut edit: ResMut<SceneEdit>,
    mut state: ResMut<PanelState>,
    mut view: ResMut<ViewSettings>,
    mut plot_settings: ResMut<PlotSettings>,
    mut cache: ResMut<HistogramCache>,
    scale: Res<EnergyScale>,
    mut free: ResMut<KeyboardFree>,
    mut actions: MessageWriter<UiAction>,
    mut camera: Single<(&mut Camera, &GlobalTransform), With<super::camera::Orbit>>,
    labels: Res<LaneLabels>,
    window: Single<&Window, With<PrimaryWindow>>,
    lesson_state: Res<LessonState>,
    projector: Res<Projector>,
) -> Result {
    let layout = Layout {
        lesson: &lesson_state,
        projector: projector.0,
    };
    let ctx = contexts.ctx_mut()?.clone();
    // The picker lists the folder of the scene the app was opened on; a loaded checkpoint (whose
    // scene.ron lives in its run folder) does not change it.
    if state.scenes_dir.is_none() {
        let dir = edit
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        state.scenes = list_scenes(&dir);
        state.scenes_dir = Some(dir);
    }
    if let Some(info) = data
        .info
        .as_ref()
        .filter(|i| i.generation != state.race_generation)
    {
        state.race_generation = info.generation;
        state.hyper_lane = 0;
        if !info.race.is_empty() {
            state.race = info.race.clone();
        }
    }
    state.sync_hyper(&data);
    plots::refresh_histograms(&data, &mut cache, view.reweighted);
    if state.lessons.is_none() {
        state.lessons = Some(crate::lesson::list_lessons(&lesson_view::lessons_dir(
            &edit.path,
        )));
    }

    let mut root = egui::Ui::new(
        ctx.clone(),
        "root".into(),
        egui::UiBuilder::new()
            .layer_id(egui::LayerId::background())
            .max_rect(ctx.viewport_rect()),
    );
    let top = egui::Panel::top("controls")
        .show(&mut root, |ui| {
            top_bar(ui, &data, &mut edit, &state, &layout, &mut actions)
        })
        .response
        .rect
        .height();
    let bottom = egui::Panel::bottom("status")
        .show(&mut root, |ui| status_bar(ui, &data))
        .response
        .rect
        .height();
    // Projector mode has its own panel ids, so that its narrower default widths apply.
    let p = if layout.projector { "_projector" } else { "" };
    let left = if Panel::ALL.iter().any(|&q| q.left() && layout.shows(q)) {
        egui::Panel::left(format!("settings{p}"))
            .resizable(true)
            .default_size(if layout.projector { 220.0 } else { 300.0 })
            .min_size(if layout.projector { 200.0 } else { 260.0 })
            .show(&mut root, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    left_panel(
                        ui,
                        &mut data,
                        &mut edit,
                        &mut state,
                        &mut view,
                        &layout,
                        &mut actions,
                    )
                });
            })
            .response
            .rect
            .width()
    } else {
        0.0
    };
    let right = if Panel::ALL.iter().any(|&q| q.right() && layout.shows(q)) {
        egui::Panel::right(format!("plots{p}"))
            .resizable(true)
            .default_size(if layout.projector { 300.0 } else { 470.0 })
            // Without a floor the panel shrinks to a short label ("no samples yet") and stays narrow.
            .min_size(if layout.projector { 260.0 } else { 380.0 })
            .show(&mut root, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    right_panel(ui, &data, &view, &mut plot_settings, &cache, &layout, &mut actions)
                });
            })
            .response
            .rect
            .width()
    } else {
        0.0
    };
    if layout.shows(Panel::Legend) {
        legend(&ctx, &data, &view, &scale, left, bottom);
    }
    let screen = ctx.viewport_rect();
    let view_rect = egui::Rect::from_min_max(
        egui::pos2(screen.left() + left, screen.top() + top),
        egui::pos2(screen.right() - right, screen.bottom() - bottom),
    );
    // The caption sits at the top of the view and the 3D view starts below it, so that it hides nothing.
    let caption = lesson_view::caption(
        &ctx,
        view_rect,
        &lesson_state,
        &data,
        layout.projector,
        &mut actions,
    );
    if lesson_state.point_at() == Some(Panel::View) {
        ctx.layer_painter(egui::LayerId::new(
            egui::Order::Foreground,
            "pointer".into(),
        ))
        .rect_stroke(
            view_rect.shrink(3.0),
            4.0,
            egui::Stroke::new(4.0, HIGHLIGHT),
            egui::StrokeKind::Inside,
        );
    }
    if state.help {
        egui::Window::new("Help")
            .collapsible(false)
            .open(&mut state.help)
            .show(&ctx, help);
    }
    free.0 = !ctx.egui_wants_keyboard_input();

    // The 3D view fills what the panels leave free. egui's points are physical pixels times the
    // window's scale factor times the zoom (2 in projector mode).
    let _ = &window;
    let sf = ctx.pixels_per_point();
    let pos = UVec2::new((left * sf) as u32, ((top + caption) * sf) as u32);
    let full = UVec2::new(window.physical_width(), window.physical_height());
    let used = pos + UVec2::new((right * sf) as u32, (bottom * sf) as u32);
    if full.x > used.x + 8 && full.y > used.y + 8 {
        let size = full - used;
        let vp = Viewport {
            physical_position: pos,
            physical_size: size,
            ..default()
        };
        if camera
            .0
            .viewport
            .as_ref()
            .map(|v| (v.physical_position, v.physical_size))
            != Some((pos, size))
        {
            camera.0.viewport = Some(vp);
        }
    }
    if data.racing() && view.show == Show::Samples {
        lane_labels(&ctx, &camera.0, camera.1, &labels);
    }
    Ok(())
}

fn top_bar(
    ui: &mut egui::Ui,
    data: &RunData,
    edit: &mut SceneEdit,
    state: &PanelState,
    layout: &Layout,
    actions: &mut MessageWriter<UiAction>,
) {
    ui.horizontal_wrapped(|ui| {
        if !layout.projector {
            ui.heading("Boltzmann Studio");
            ui.separator();
        }
        ui.menu_button("📖 Lessons", |ui| {
            let lessons = state.lessons.as_deref().unwrap_or(&[]);
            if lessons.is_empty() {
                ui.label("no lessons found (lessons/*.ron)");
            }
            for (path, title) in lessons {
                match title {
                    Ok(t) => {
                        if ui.button(t).on_hover_text(path.display().to_string()).clicked() {
                            actions.write(UiAction::OpenLesson(path.clone()));
                            ui.close();
                        }
                    }
                    Err(e) => {
                        ui.colored_label(egui::Color32::from_rgb(220, 80, 80), format!("{}: cannot be read", path.display())).on_hover_text(e);
                    }
                }
            }
            if layout.lesson.lesson.is_some() && ui.button("close the lesson").clicked() {
                actions.write(UiAction::CloseLesson);
                ui.close();
            }
        })
        .response
        .on_hover_text("Step-by-step lessons for a class: each sets up the app and explains what to watch");
        let mut on = layout.projector;
        if ui.toggle_value(&mut on, "🔆 Projector").on_hover_text("High contrast, everything twice as large, panels hidden unless the lesson shows them (P)").clicked() {
            actions.write(UiAction::ToggleProjector);
        }
        ui.separator();
        let current = data.info.as_ref().map(|i| i.scene.name.clone()).unwrap_or_else(|| "loading…".into());
        ui.add_enabled_ui(layout.free(Control::ScenePicker), |ui| egui::ComboBox::from_id_salt("scene")
            .selected_text(current)
            .width(110.0)
            .show_ui(ui, |ui| {
                for (path, name, description) in &state.scenes {
                    ui.horizontal(|ui| {
                        if ui.selectable_label(*path == edit.path, format!("{name} — {description}")).clicked() {
                            actions.write(UiAction::OpenScene(path.clone()));
                        }
                        if let Some(dir) = crate::pretrained::dir_for(path) {
                            let tip = match crate::pretrained::quality(&dir) {
                                Ok(q) => format!(
                                    "Jump to the end: load this scene's sampler trained for {} ({:.0} min of one core): E-W2 {:.3}{} on {} samples (lower is better; see the README's table)",
                                    if q.gradient_steps == 0 { "its chains' sweeps".to_string() } else { format!("{} gradient steps", q.gradient_steps) },
                                    q.train_minutes,
                                    q.energy_w2,
                                    q.eq_w2.map_or(String::new(), |e| format!(", eq-W2 {e:.3}")),
                                    q.samples
                                ),
                                Err(e) => format!("Jump to the end: load the pretrained run ({e})"),
                            };
                            if ui.small_button("⏭ trained").on_hover_text(tip).clicked() {
                                actions.write(UiAction::LoadCheckpoint(dir));
                            }
                        }
                    });
                }
            })
            .response
            .on_hover_text("Pick a physical system: the scene files in the current scene's folder."));
        ui.separator();
        let (label, tip) = if data.running { ("⏸ Pause", "Pause training (Space)") } else { ("▶ Play", "Train continuously (Space)") };
        let play = layout.free(Control::Play);
        if ui.add_enabled(play, egui::Button::new(label)).on_hover_text(tip).clicked() {
            actions.write(UiAction::TogglePlay);
        }
        if ui.add_enabled(play, egui::Button::new("⏭ Step")).on_hover_text("Train one update's worth of gradient steps, then pause (N)").clicked() {
            actions.write(UiAction::Step);
        }
        if ui.add_enabled(layout.free(Control::Reset), egui::Button::new("⟲ Reset")).on_hover_text("Start again from fresh random weights, with the seed and settings shown (R)").clicked() {
            actions.write(UiAction::Reset);
        }
        ui.separator();
        ui.label("seed");
        ui.add_enabled(layout.free(Control::Seed), egui::DragValue::new(&mut edit.scene.sampler.seed).speed(1))
            .on_hover_text("Seed of every random draw (weights, noise, buffer); applied at the next reset. Same seed, same run.");
        ui.label("speed");
        let mut speed = edit.speed;
        if ui
            .add_enabled(layout.free(Control::Speed), egui::DragValue::new(&mut speed).range(1..=1000).suffix(" steps/update"))
            .on_hover_text("Gradient steps between screen updates (and per press of Step). Fewer = livelier, more = less drawing overhead.")
            .changed()
        {
            actions.write(UiAction::SetSpeed(speed));
        }
        ui.separator();
        if data.racing() {
            let names: Vec<&str> = data.lanes.iter().map(|l| l.kind.label()).collect();
            ui.label(egui::RichText::new(format!("Race: {}", names.join(" vs "))).strong())
                .on_hover_text("Kinds training in turn on equal energy-evaluation budgets; Play, Step and Reset act on the whole race");
        } else {
            ui.label(egui::RichText::new(data.kind.label()).strong()).on_hover_text("The sampler kind of this scene (sampler.kind)");
        }
        if let Some(stage) = &data.stage {
            let help: Vec<&str> = if data.racing() { data.lanes.iter().map(|l| l.kind.info().stage_help).collect() } else { vec![data.kind.info().stage_help] };
            let help: Vec<&str> = help.into_iter().filter(|h| !h.is_empty()).collect();
            ui.label(format!("— {stage}")).on_hover_text(format!("The stage the sampler is in. {}", help.join("; ")));
        }
        if let Some(t) = data.info.as_ref().and_then(|i| i.scene.system.temperature()) {
            ui.separator();
            let kt = crate::molecule::KB_KCAL_PER_MOL_K * t;
            ui.label(format!("T = {t:.0} K")).on_hover_text(format!(
                "Temperature of the target density exp(−E/kT): kT = {kt:.3} kcal/mol; energies in the plots are E/kT"
            ));
        }
        ui.separator();
        ui.label(phase_text(data));
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.button("? Help").on_hover_text("Keyboard shortcuts and what the panels mean (H)").clicked() {
                actions.write(UiAction::ToggleHelp);
            }
        });
    });
}

fn phase_text(data: &RunData) -> String {
    let state = if data.running { "training" } else { "paused" };
    match data.phase {
        Phase::Simulating { done, total } => format!("{state}: simulating samples {done}/{total}"),
        Phase::Training { done, total } => {
            format!("{state}: gradient step {done}/{total} of this iteration")
        }
        Phase::Sweeping { done, total } => format!("{state}: sweep {done}/{total} of this block"),
        Phase::Idle => state.to_string(),
    }
}

fn status_bar(ui: &mut egui::Ui, data: &RunData) {
    let c = &data.counters;
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("step {}", c.gradient_steps)).on_hover_text("Adam updates of the network so far");
        ui.separator();
        ui.label(format!("{} energy evaluations", c.energy_evals)).on_hover_text("Each simulated sample costs one energy + gradient evaluation");
        ui.separator();
        ui.label(format!("{:.1} steps/s", data.steps_per_second)).on_hover_text("Gradient steps per second of wall time, recent");
        ui.label(format!("{:.0} evals/s", data.evals_per_second)).on_hover_text("Energy evaluations per second of wall time, recent");
        ui.separator();
        ui.label(format!("{:.0} s training", c.wall_seconds)).on_hover_text("Time spent inside training calls");
        if c.skipped_steps + c.dropped_samples > 0 {
            ui.separator();
            ui.colored_label(egui::Color32::from_rgb(230, 160, 60), format!("{} steps skipped, {} samples dropped (non-finite or blown up)", c.skipped_steps, c.dropped_samples))
                .on_hover_text("NaN or infinite losses, gradients or energies are never applied to the weights, and samples that flew off (20 noise widths out) never enter the buffer; they are counted here");
        }
        if let Some(n) = data.notices.last() {
            ui.separator();
            let color = if n.error { egui::Color32::from_rgb(240, 90, 90) } else { egui::Color32::from_rgb(140, 200, 140) };
            ui.colored_label(color, &n.text);
        }
    });
}

/// A labelled value editor with a plain-words tooltip; true when changed.
fn field<T: egui::emath::Numeric>(
    ui: &mut egui::Ui,
    label: &str,
    v: &mut T,
    range: std::ops::RangeInclusive<T>,
    log: bool,
    tip: &str,
) -> bool {
    ui.label(label).on_hover_text(tip);
    let changed = if log {
        ui.add(egui::Slider::new(v, range).logarithmic(true))
            .on_hover_text(tip)
            .changed()
    } else {
        ui.add(egui::DragValue::new(v).range(range))
            .on_hover_text(tip)
            .changed()
    };
    ui.end_row();
    changed
}

fn left_panel(
    ui: &mut egui::Ui,
    data: &mut RunData,
    edit: &mut SceneEdit,
    state: &mut PanelState,
    view: &mut ViewSettings,
    layout: &Layout,
    actions: &mut MessageWriter<UiAction>,
) {
    layout.section(ui, Panel::Hyperparameters, |ui| {
        ui.add_enabled_ui(layout.free(Control::Hyperparameters), |ui| {
            egui::CollapsingHeader::new("Hyperparameters (apply at once)").default_open(true).show(ui, |ui| {
                if data.racing() && !data.forked() {
                    lane_picker(ui, data, state);
                }
                let Some(h) = state.hyper.as_mut() else {
                    ui.label("waiting for the trainer…");
                    return;
                };
                let kind = h.kind;
                let live: Vec<HyperRow> = kind.rows().into_iter().filter(|r| r.live).collect();
                if live.is_empty() {
                    ui.label(format!("{} has no settings that apply while it runs: its settings (under Needs a reset) restart it.", kind.label()));
                    return;
                }
                let mut changes = Vec::new();
                egui::Grid::new("live").num_columns(2).show(ui, |ui| {
                    for r in &live {
                        if row_field(ui, r, h, "") {
                            changes.push((r.key.to_string(), (r.get)(h)));
                        }
                    }
                });
                if !changes.is_empty() {
                    actions.write(UiAction::SetHyper { lane: if data.racing() { state.hyper_lane } else { 0 }, changes });
                }
            });
        });
    });
    layout.section(ui, Panel::RestartSettings, |ui| {
        formula_editor(ui, edit, state, actions);
    });
    layout.section(ui, Panel::RestartSettings, |ui| {
        ui.collapsing("Needs a reset ⟲", |ui| {
            ui.label("Changing these rebuilds the network or the noise; press the button to restart with them.");
            let s = &mut edit.scene;
            egui::Grid::new("restart").num_columns(2).show(ui, |ui| {
                ui.label("network").on_hover_text("EGNN respects rotations and particle swaps; MLP is a plain network (for GMM-40); TorusMlp sees cos and sin of a molecule's torsions.");
                egui::ComboBox::from_id_salt("kind").selected_text(format!("{:?}", s.network.kind)).show_ui(ui, |ui| {
                    ui.selectable_value(&mut s.network.kind, NetworkKind::Egnn, "Egnn");
                    ui.selectable_value(&mut s.network.kind, NetworkKind::Mlp, "Mlp");
                    ui.selectable_value(&mut s.network.kind, NetworkKind::TorusMlp, "TorusMlp");
                });
                ui.end_row();
                field(ui, "layers", &mut s.network.layers, 1..=12, false, "Number of network layers: deeper can represent more, trains slower.");
                field(ui, "hidden width", &mut s.network.hidden, 8..=512, false, "Neurons per layer: wider can represent more, trains slower.");
                for r in s.sampler.kind.rows().iter().filter(|r| !r.live) {
                    row_field(ui, r, &mut s.sampler, "");
                }
            });
            if ui.button("⟲ Reset with these").clicked() {
                actions.write(UiAction::Reset);
            }
        });
    });
    layout.section(ui, Panel::Race, |ui| {
        egui::CollapsingHeader::new("Race sampler kinds").default_open(data.racing()).show(ui, |ui| {
            ui.label("Train several kinds on this system and seed, in turn, on equal energy-evaluation budgets.")
                .on_hover_text("Each kind runs its own scene (the sibling file STEM-KIND.ron when there is one); all are judged against this scene's reference.");
            ui.horizontal_wrapped(|ui| {
                for kind in SamplerKind::all() {
                    let mut on = state.race.contains(&kind);
                    if ui.checkbox(&mut on, kind.label()).on_hover_text(kind.info().summary).changed() {
                        if on {
                            state.race.push(kind);
                        } else {
                            state.race.retain(|k| *k != kind);
                        }
                    }
                }
            });
            ui.horizontal(|ui| {
                let ok = state.race.len() >= 2;
                if ui.add_enabled(ok, egui::Button::new("Start race")).on_hover_text("Pick two kinds or more").clicked() {
                    actions.write(UiAction::StartRace(state.race.clone()));
                }
                if ui.add_enabled(data.racing() && !data.forked(), egui::Button::new("End race")).on_hover_text("Back to a single run of the scene's own kind").clicked() {
                    actions.write(UiAction::EndRace);
                }
            });
        });
        egui::CollapsingHeader::new("Fork and compare").default_open(data.forked()).show(ui, |ui| {
            fork_panel(ui, data, state, actions);
        });
    });
    layout.section(ui, Panel::ViewOptions, |ui| {
        egui::CollapsingHeader::new("View").default_open(true).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut view.show, Show::Samples, "current samples").on_hover_text("A grid of samples from the latest iteration");
                ui.selectable_value(&mut view.show, Show::Trajectory, "trajectory").on_hover_text(
                    "One sample's path over SDE time: from all particles at the origin (t = 0) to the final sample (t = 1); a molecule twists from all torsions at 0° and its heavy atoms trace their paths",
                );
            });
            if view.show == Show::Trajectory {
                ui.add(egui::Slider::new(&mut view.time, 0.0..=1.0).text("SDE time t")).on_hover_text("Scrub through the diffusion: t = 0 is the start, t = 1 the sample");
                ui.checkbox(&mut view.animate, "animate").on_hover_text("Replay the path over and over");
                if data.trajectory.is_none() {
                    ui.label("no trajectory yet: press play");
                }
            }
            let molecule = data.info.as_ref().is_some_and(|i| i.scene.system.is_molecule());
            let plane = data.info.as_ref().is_some_and(|i| i.layout.particles == 1 && i.layout.dim() == 2 && !i.scene.system.is_molecule());
            if plane && (0..data.lanes.len().max(1)).any(|k| data.lane_off_policy(k).is_some_and(|x| !x.is_empty())) {
                let [r, g, b] = super::particles::OFF_POLICY_COLOR;
                ui.colored_label(egui::Color32::from_rgb((r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8), "✚ local-search samples")
                    .on_hover_text("Pink crosses: the 600 newest local-search samples (MALA chains started from the sampler's own samples), which the GFlowNet trains on every other step as backward trajectories. Off-policy data: points it learns from but did not draw itself.");
            }
            if plane {
                ui.checkbox(&mut view.field, "control field").on_hover_text(
                    "The learned field s(x, t) as arrows (length ∝ √|s|, the longest a grid cell): the SDE's drift is σ(t)²·s. Late in SDE time it points downhill, early towards where the samples will end up. Shown for kinds that learn a field they can draw.",
                );
                if view.field {
                    ui.horizontal(|ui| {
                        ui.add(egui::Slider::new(&mut view.field_t, 0.0..=1.0).text("field time t")).on_hover_text("SDE time at which the field is drawn: 0 the start (all at the origin), 1 the end");
                        ui.checkbox(&mut view.field_animate, "play").on_hover_text("Sweep t from 0 to 1 over and over");
                    });
                    ui.checkbox(&mut view.field_examples, "show the loss's examples").on_hover_text(
                        "24 examples of the regression that fits the field, at this t: from a bridge point X_t (dot), its target −∇g(X₁) from a buffer sample (cyan) and the field's value there (orange). The loss is the squared gap between them, averaged; targets are noisy, the field learns their mean.",
                    );
                }
            }
            ui.horizontal(|ui| {
                ui.label("colour by");
                if molecule {
                    ui.selectable_value(&mut view.color_by, ColorBy::Energy, "element").on_hover_text(
                        "Atoms in element colours (C grey, H white, N blue, O red); each sample's frame in its energy's colour: dark blue = low energy (good), yellow = high",
                    );
                    ui.selectable_value(&mut view.color_by, ColorBy::ParticleIndex, "atom").on_hover_text("One colour per atom index, to follow an atom from sample to sample");
                } else {
                    ui.selectable_value(&mut view.color_by, ColorBy::Energy, "energy").on_hover_text("Dark blue = low energy (good), yellow = high; scale from the reference samples");
                    ui.selectable_value(&mut view.color_by, ColorBy::ParticleIndex, "particle").on_hover_text("One colour per particle index");
                    ui.selectable_value(&mut view.color_by, ColorBy::LogWeight, "weight").on_hover_text(
                        "Each sample's importance weight (target density over the sampler's, per path), relative to the batch's largest, on a log scale: yellow = high weight (the sampler draws this region too rarely), dark = 10 nats lower or less (too often). Even colours mean a high ESS. Only kinds that define importance weights have them.",
                    );
                }
            });
            ui.checkbox(&mut view.reweighted, "reweighted histograms").on_hover_text(
                "Histograms with each sample counted in proportion to its importance weight: unbiased for the target in the limit, but only as good as the ESS (a few heavy samples make spiky bars). Kinds without weights show raw histograms.",
            );
            if let Some(info) = data.info.as_ref().filter(|i| molecule && i.torsion_names.len() >= 3) {
                let names = &info.torsion_names;
                let (mut i, mut j) = plots::torsion_pair(names, view.torsion_pair).unwrap_or((0, 1));
                ui.horizontal(|ui| {
                    ui.label("torsion map").on_hover_text("The two torsions the map in the right panel shows (horizontal, vertical)");
                    for (id, k) in [("map-x", &mut i), ("map-y", &mut j)] {
                        egui::ComboBox::from_id_salt(id).selected_text(names[*k].as_str()).show_ui(ui, |ui| {
                            for (n, name) in names.iter().enumerate() {
                                ui.selectable_value(k, n, name.as_str());
                            }
                        });
                    }
                });
                if i != j {
                    view.torsion_pair = Some((i, j));
                }
            }
            if molecule {
                ui.label("bonds: from the topology").on_hover_text("Ball-and-stick: the sampler moves only the free torsions; bond lengths and angles stay as in the structure file");
            } else {
                ui.horizontal(|ui| {
                    ui.checkbox(&mut view.bonds, "bonds").on_hover_text("Draw a line between particles closer than the cutoff");
                    ui.add_enabled(view.bonds, egui::Slider::new(&mut view.bond_cutoff, 0.5..=8.0).text("cutoff (length units)"));
                });
            }
        });
    });
    layout.section(ui, Panel::Files, |ui| {
        egui::CollapsingHeader::new("Files").default_open(true).show(ui, |ui| {
            let name = data.info.as_ref().map(|i| slug(&i.scene.name)).unwrap_or_else(|| "run".into());
            let stem = format!("{name}-step{}", data.counters.gradient_steps);
            ui.horizontal_wrapped(|ui| {
                if ui.button("samples .xyz").on_hover_text("Current samples as extended XYZ (ASE, OVITO, VMD read it)").clicked() {
                    actions.write(UiAction::ExportSamples(PathBuf::from("exports").join(format!("{stem}.xyz"))));
                }
                if ui.button("samples .npy").on_hover_text("Current samples as a NumPy array (samples × coordinates)").clicked() {
                    actions.write(UiAction::ExportSamples(PathBuf::from("exports").join(format!("{stem}.npy"))));
                }
                if ui.button("metrics .csv").on_hover_text("Loss and metric history as CSV").clicked() {
                    actions.write(UiAction::ExportMetrics(PathBuf::from("exports").join(format!("{stem}-metrics.csv"))));
                }
                if ui.button("screenshot .png").on_hover_text("The whole window as a PNG").clicked() {
                    actions.write(UiAction::Screenshot(PathBuf::from("exports").join(format!("{stem}.png"))));
                }
            });
            ui.horizontal(|ui| {
                if ui.button("save checkpoint").on_hover_text("A run folder with weights, optimizer, buffer and scene; `boltzmann-studio sample` and `train --resume` read it").clicked() {
                    let dir = PathBuf::from("runs").join(&stem);
                    state.load_path = dir.display().to_string();
                    actions.write(UiAction::SaveCheckpoint(dir));
                }
                if ui.button("save session").on_hover_text("One RON file in sessions/ with the scene, seed, live hyperparameters, view and lesson step; `boltzmann-studio app FILE` reopens it (Ctrl+S)").clicked() {
                    actions.write(UiAction::SaveSession(PathBuf::new()));
                }
                if ui.button("load").on_hover_text("Replace the run by the checkpoint folder named in the field").clicked() {
                    actions.write(UiAction::LoadCheckpoint(PathBuf::from(state.load_path.trim())));
                }
            });
            ui.add(egui::TextEdit::singleline(&mut state.load_path).hint_text("run folder to load"));
        });
    });
    layout.section(ui, Panel::Messages, |ui| {
        ui.collapsing("Messages", |ui| {
            if data.notices.is_empty() {
                ui.label("none");
            }
            for n in data.notices.iter().rev() {
                let color = if n.error {
                    egui::Color32::from_rgb(240, 90, 90)
                } else {
                    ui.visuals().text_color()
                };
                ui.colored_label(color, &n.text);
            }
            if !data.notices.is_empty() && ui.button("clear").clicked() {
                data.notices.clear();
            }
        });
    });
}

/// Each lane's name above its block of samples (projected from the 3D view).
/// The landscape as a formula, editable: the parse error (with its column) or a warning shows
/// under the field as one types, and "Reset with this landscape" restarts on it. Shown for
/// formula systems and for the built-in 2-D double well (typed out).
fn formula_editor(ui: &mut egui::Ui, edit: &mut SceneEdit, state: &mut PanelState, actions: &mut MessageWriter<UiAction>) {
    let Some(current) = edit.scene.system.as_formula() else {
        state.formula = None;
        return;
    };
    if state.formula.as_ref().is_none_or(|f| f.from != current) {
        state.formula = Some(FormulaDraft { draft: current.clone(), from: current, checked: None });
    }
    let Some(f) = state.formula.as_mut() else { return };
    egui::CollapsingHeader::new("Landscape formula ⟲").default_open(true).show(ui, |ui| {
        ui.label(format!("E({}) =", f.draft.variables.join(", ")))
            .on_hover_text("The energy as a formula of the variables: + − * / ^, parentheses, exp log sqrt sin cos tanh abs, and the constants pi and e. The density is exp(−E / temperature).");
        ui.add(egui::TextEdit::multiline(&mut f.draft.energy).desired_rows(2).desired_width(f32::INFINITY).font(egui::TextStyle::Monospace))
            .on_hover_text("Edit the energy; errors show below as you type. \"Reset with this landscape\" restarts training on it.");
        ui.horizontal(|ui| {
            ui.label("temperature").on_hover_text("kT in the formula's units: the density is exp(−E / temperature). Lower is colder: the wells matter more.");
            ui.add(egui::DragValue::new(&mut f.draft.temperature).range(0.001..=1e6).speed(0.01));
        });
        let ok = match f.verdict() {
            Err(e) => {
                ui.colored_label(egui::Color32::from_rgb(230, 90, 80), e.as_str());
                false
            }
            Ok(warning) => {
                if let Some(w) = warning {
                    ui.colored_label(egui::Color32::from_rgb(230, 160, 40), format!("warning: {w}"));
                }
                true
            }
        };
        let draft = &f.draft;
        let bounds = draft.bounds_or_default();
        ui.small(format!(
            "Map and exact grid over {}",
            draft.variables.iter().zip(&bounds).map(|(v, [a, b])| format!("{v} ∈ [{a}, {b}]")).collect::<Vec<_>>().join(", ")
        ));
        let changed = *draft != f.from;
        if ui
            .add_enabled(ok, egui::Button::new("⟲ Reset with this landscape"))
            .on_hover_text(if changed { "Restart training from fresh weights on this formula; the exact reference is recomputed by quadrature" } else { "Restart training on this formula (unchanged)" })
            .clicked()
        {
            if !matches!(edit.scene.system, System::Formula(_)) {
                edit.scene.name = format!("{} (as a formula)", edit.scene.name);
            }
            edit.scene.system = System::Formula(draft.clone());
            // The built-in's reference file is of the old landscape; the formula's is exact.
            edit.scene.reference.file = None;
            actions.write(UiAction::Reset);
        }
    });
}

fn lane_labels(ctx: &egui::Context, camera: &Camera, at: &GlobalTransform, labels: &LaneLabels) {
    for (k, (name, pos)) in labels.0.iter().enumerate() {
        // Window coordinates already (the viewport's offset included).
        let Ok(p) = camera.world_to_viewport(at, *pos) else {
            continue;
        };
        let c = plots::lane_color(k);
        egui::Area::new(egui::Id::new(("lane_label", k)))
            .fixed_pos(egui::pos2(p.x, p.y) - egui::vec2(50.0, 26.0))
            .interactable(false)
            .show(ctx, |ui| {
                ui.label(egui::RichText::new(name).size(17.0).strong().color(c));
            });
    }
}

fn right_panel(
    ui: &mut egui::Ui,
    data: &RunData,
    view: &ViewSettings,
    settings: &mut PlotSettings,
    cache: &HistogramCache,
    layout: &Layout,
    actions: &mut MessageWriter<UiAction>,
) {
    if data.forked() && layout.shows(Panel::Quality) {
        fork_summary(ui, data);
        ui.strong("Branches: loss").on_hover_text("Each branch's smoothed loss (the smoothing of the Loss plot below); the grey line is the fork: up to it the branches are one run");
        plots::fork_loss_plot(ui, data, settings);
        ui.strong("Branches: E-W2").on_hover_text("Each branch's E-W2 (energy-distribution Wasserstein-2 against the reference, lower is better) on its latest samples");
        plots::fork_metrics_plot(ui, data, settings);
        ui.separator();
        ui.label("The plots below are those of branch A.");
    } else if data.racing() {
        layout.section(ui, Panel::Quality, |ui| {
            ui.strong(if settings.energy_ms > 0.0 { "Race: E-W2 against cost" } else { "Race: E-W2 against energy evaluations" }).on_hover_text(
                "Each kind's E-W2 (energy-distribution Wasserstein-2 against the reference, lower is better) on its latest samples, against the energy evaluations it has spent (log scale): the kinds train in turn so their budgets stay equal",
            );
            plots::race_metrics_plot(ui, data, settings);
            ui.strong("Race: energy histograms").on_hover_text("Energies of each kind's latest samples (lines) over the reference (filled), same bins, density-normalised");
            plots::race_energy_histogram(ui, data);
            ui.strong("Race: standings").on_hover_text("Each lane's latest judgement at a budget point, with the columns of `compare`'s compare.csv; hover a kind for what it has spent so far");
            race_table(ui, data, settings.energy_ms);
            ui.separator();
            ui.label(format!("The plots below are those of the first lane ({}).", data.lanes[0].kind.label()));
        });
    }
    layout.section(ui, Panel::Loss, |ui| {
        let help = data.kind.info().loss_help;
        ui.strong("Loss").on_hover_text(if help.is_empty() {
            "This kind learns nothing: it has no loss"
        } else {
            help
        });
        plots::loss_plot(ui, data, settings);
    });
    layout.section(ui, Panel::EnergyHistogram, |ui| {
        let title = if cache.reweighted { "Energy histogram (reweighted)" } else { "Energy histogram" };
        ui.strong(title).on_hover_text("Energies of the latest samples (bars) against the reference samples (line), same bins, density-normalised; samples beyond the range are counted in the end bins. Reweighted: each sample counts in proportion to its importance weight (View panel)");
        plots::energy_histogram(ui, data, cache);
    });
    layout.section(ui, Panel::Distances, |ui| {
        if let Some(info) = data.info.as_ref().filter(|i| i.scene.system.is_molecule()) {
            let names = &info.torsion_names;
            let basins: Vec<&str> = info.scene.basins.iter().map(|b| b.name.as_str()).collect();
            let basin_text = if basins.is_empty() { "no basins named in the scene".to_string() } else { format!("basins from the scene: {}", basins.join(", ")) };
            match plots::torsion_pair(names, view.torsion_pair) {
                Some((i, j)) => {
                    ui.strong(format!("Torsion map ({}, {})", plots::torsion_label(&names[i]), plots::torsion_label(&names[j])))
                        .on_hover_text(format!("The latest samples' {} and {} (points) over the reference density (shading); {basin_text}. Choose the two torsions in View.", names[i], names[j]));
                }
                None => {
                    ui.strong(format!("Torsion {}", names.first().map_or(String::new(), |n| plots::torsion_label(n))))
                        .on_hover_text(format!("The latest samples' torsion (bars) against the reference (line); {basin_text}"));
                }
            }
            plots::torsion_plot(ui, data, view.torsion_pair);
        } else if let Some(f) = data.info.as_ref().and_then(|i| match &i.scene.system {
            System::Formula(f) if f.variables.len() == 1 => Some(f.clone()),
            _ => None,
        }) {
            ui.strong(format!("Density along {}", f.variables[0])).on_hover_text("The latest samples' histogram (bars) against the exact density exp(−E/T)/Z over the bounds (line, by quadrature)");
            plots::line_density(ui, data, &f);
        } else {
            ui.strong("Interatomic distances").on_hover_text("All pair distances of the latest samples against the reference");
            plots::distance_histogram(ui, data, cache);
        }
    });
    layout.section(ui, Panel::Quality, |ui| {
        ui.strong("Sample quality").on_hover_text("E-W2: Wasserstein-2 between energy distributions; eq-W2: between configurations after best rotation and permutation; x-W2: raw coordinates");
        if data.info.as_ref().is_some_and(|i| i.reference_energies.is_empty()) {
            no_reference(ui, data, actions);
        } else {
            plots::metrics_plot(ui, data, settings);
            if let Some(m) = data.metrics.iter().rev().find_map(|m| m.metrics.get("modes")) {
                ui.label(format!("modes covered: {m:.0} of 40 (latest samples)")).on_hover_text(crate::metrics::family::MODES.help);
            }
        }
    });
    layout.section(ui, Panel::Ess, |ui| {
        ui.strong("Effective sample size").on_hover_text("Importance-weight ESS of each evaluated batch, as a percentage of its size: how many exact samples the reweighted batch is worth. 100% = the sampler draws the target; often a few %, reported as it is.");
        plots::ess_plot(ui, data);
        ui.strong("log Z").on_hover_text("The importance-weighted estimate log mean exp(ℓ) of each evaluated batch, ℓ the path's exact log-weight (Adjoint Sampling, ASBS, GFlowNet), against the exact value (orange line) where the system has an exact grid. Z = ∫ exp(−E/kT) over the sampler's coordinates (dx dy; dφ in radians). Biased low for small batches and poor samplers: a gap to the exact line is Δlog Z, how the GFlowNet papers compare samplers. In a race, every lane against its energy evaluations.");
        plots::log_z_plot(ui, data);
    });
    layout.section(ui, Panel::Throughput, |ui| {
        ui.strong("Throughput").on_hover_text("Left: gradient steps per second of training time. Right: energy evaluations used so far, against gradient steps — the slope is the evaluations per step");
        plots::throughput_plot(ui, data);
    });
}

/// Forking: edit the new branch's hyperparameters, fork; while forked, keep one branch.
/// In place of the quality plot while the run has no reference: why, and a button that computes
/// one (with its progress while it runs).
fn no_reference(ui: &mut egui::Ui, data: &RunData, actions: &mut MessageWriter<UiAction>) {
    let Some(info) = &data.info else { return };
    ui.label("No reference yet: sample quality is measured against reference samples of the target, and this scene names none.");
    match &data.reference_job {
        Some(job) => {
            let f = job.fraction();
            let secs = job.started.elapsed().as_secs_f32();
            let eta = if f > 0.02 { format!(", about {:.0} s left", secs * (1.0 - f) / f) } else { String::new() };
            ui.add(egui::ProgressBar::new(f).show_percentage().text(format!("computing the reference: {:.0}%{eta}", 100.0 * f)))
                .on_hover_text("Training goes on meanwhile; the quality plot fills in when the reference is ready");
        }
        None => {
            // Built on hover only: it asks the energy (a molecule's copy, a formula's grid).
            let tip = |ui: &mut egui::Ui| {
                let how = if crate::reference::is_exact(info.scene.energy().as_ref()) {
                    "exact: quadrature on a grid (one or two torsions, or a plane); seconds"
                } else {
                    "parallel tempering with the scene's reference.mcmc settings; minutes for a molecule"
                };
                ui.label(format!(
                    "Draws {} reference samples ({how}) on a thread of its own, caches them beside the scene as {}, and judges the run against them from then on",
                    crate::reference::ON_DEMAND_ROWS,
                    info.scene.reference_cache(&info.scene_path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                ));
            };
            if ui.button("Compute a reference").on_hover_ui(tip).clicked() {
                actions.write(UiAction::ComputeReference);
            }
        }
    }
}

fn fork_panel(
    ui: &mut egui::Ui,
    data: &RunData,
    state: &mut PanelState,
    actions: &mut MessageWriter<UiAction>,
) {
    if data.forked() {
        ui.label("Both branches train in turn; their curves are overlaid on the right.");
        ui.horizontal(|ui| {
            for (k, name) in ["keep A", "keep B"].into_iter().enumerate() {
                if ui
                    .button(egui::RichText::new(name).color(plots::lane_color(k)))
                    .on_hover_text(
                        "Continue with this branch alone (its history plots start afresh)",
                    )
                    .clicked()
                {
                    actions.write(UiAction::KeepLane(k));
                }
            }
        });
        return;
    }
    if data.racing() || !data.kind.learns() {
        ui.label("Forking needs a single run of a learning kind.");
        return;
    }
    let Some(current) = &data.config else {
        ui.label("waiting for the trainer…");
        return;
    };
    ui.label("Continue a copy of this run from here with other settings, beside the original (TensorBoard-style runs compared).");
    let h = state.fork.get_or_insert_with(|| (**current).clone());
    let live: Vec<HyperRow> = current.kind.rows().into_iter().filter(|r| r.live).collect();
    egui::Grid::new("fork_hyper").num_columns(2).show(ui, |ui| {
        for r in &live {
            row_field(ui, r, h, "Branch B: ");
        }
    });
    let chosen: Vec<(String, f64)> = live
        .iter()
        .map(|r| (r.key.to_string(), (r.get)(h)))
        .filter(|(k, v)| live.iter().any(|r| r.key == k && (r.get)(current) != *v))
        .collect();
    let mut reset = false;
    ui.horizontal(|ui| {
        if ui.button("Fork here").on_hover_text("Branch A keeps the current settings, branch B takes these; both continue from this step").clicked() {
            actions.write(UiAction::Fork(chosen));
        }
        reset = ui.small_button("copy current").on_hover_text("Start again from the run's current values").clicked();
    });
    if reset {
        state.fork = Some((**current).clone());
    }
}

/// In a race, which lane's live hyperparameters the panel edits.
fn lane_picker(ui: &mut egui::Ui, data: &RunData, state: &mut PanelState) {
    let label = |k: usize| data.lanes.get(k).map_or("–", |l| l.kind.label());
    let before = state.hyper_lane;
    egui::ComboBox::from_label("lane")
        .selected_text(egui::RichText::new(label(before)).color(plots::lane_color(before)))
        .show_ui(ui, |ui| {
            for k in 0..data.lanes.len() {
                ui.selectable_value(
                    &mut state.hyper_lane,
                    k,
                    egui::RichText::new(label(k)).color(plots::lane_color(k)),
                );
            }
        })
        .response
        .on_hover_text(
            "The race lane whose settings these are: an edit applies to that lane alone",
        );
    if state.hyper_lane != before {
        state.hyper_synced = None;
        state.sync_hyper(data);
    }
}

/// A row's value editor: a logarithmic slider or a drag value over the row's panel range, with
/// the row's help as tooltip; true when changed (and then written into `cfg`).
fn row_field(ui: &mut egui::Ui, row: &HyperRow, cfg: &mut SamplerConfig, tip_prefix: &str) -> bool {
    let tip = format!(
        "{tip_prefix}{} (allowed: {})",
        row.help,
        row.describe_bound()
    );
    let mut v = (row.get)(cfg);
    let (lo, hi) = row.ui;
    ui.label(row.label).on_hover_text(&tip);
    let mut widget_changed = if row.log {
        let mut w = egui::Slider::new(&mut v, lo..=hi).logarithmic(true);
        if row.integer() {
            w = w.integer();
        }
        ui.add(w).on_hover_text(&tip).changed()
    } else {
        let mut w = egui::DragValue::new(&mut v).range(lo..=hi);
        if row.integer() {
            w = w.fixed_decimals(0).speed(1.0);
        }
        ui.add(w).on_hover_text(&tip).changed()
    };
    ui.end_row();
    if row.integer() {
        v = v.round();
    }
    if widget_changed {
        if let Err(m) = row.check(v, 0, cfg) {
            ui.colored_label(egui::Color32::RED, format!("{} {m}", row.label));
            ui.end_row();
            widget_changed = false;
        } else {
            (row.set)(cfg, v);
        }
    }
    widget_changed
}

/// What a fork changed, and buttons to keep one branch.
fn fork_summary(ui: &mut egui::Ui, data: &RunData) {
    let Some(fork) = data.info.as_ref().and_then(|i| i.fork.as_ref()) else {
        return;
    };
    ui.strong(format!("Fork at gradient step {}", fork.step)).on_hover_text("Both branches continue from one copy of the run (weights, optimizer, buffer, random state), training in turn");
    egui::Grid::new("fork_changes")
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            ui.strong("hyperparameter");
            ui.colored_label(plots::lane_color(0), "branch A");
            ui.colored_label(plots::lane_color(1), "branch B");
            ui.end_row();
            if fork.changes.is_empty() {
                ui.label("(none: the branches should stay identical)");
                ui.end_row();
            }
            for (name, a, b) in &fork.changes {
                ui.label(name);
                ui.label(a);
                ui.label(b);
                ui.end_row();
            }
        });
}

/// What each column of the race table (and of compare.csv) holds.
fn race_column_help(column: &str) -> &'static str {
    match column {
        "kind" => "The sampler kind of the lane (hover for what it has spent so far)",
        "point" => {
            "The budget point of the judgement: the largest of the log-spaced energy-evaluation budgets (4 a decade from 100) the lane had passed, as in `compare`"
        }
        "energy_evals" => "Energy evaluations the lane had spent when judged (the race's budget)",
        "network_passes" => "Rows pushed through or back-propagated through the network by then",
        "wall_seconds" => "Seconds of the lane's own training by then (evaluations not counted)",
        "eq_w2" => {
            "eq-W2 (alignment-invariant W2): computed by `compare` on final samples only, so empty here"
        }
        "ess" => {
            "Normalised effective sample size of the importance weights, where the kind defines them"
        }
        "eval_energy_evals" => "Energy evaluations spent judging (not charged to the budget)",
        "energy_cost_seconds" => {
            "Seconds the lane's energy evaluations would take at the slider's price per evaluation (ms per energy evaluation, above the plot)"
        }
        "cost_seconds" => {
            "The lane's total cost in seconds: its own training seconds plus its energy evaluations at the slider's price"
        }
        "further_1000_energy_evals" => {
            "Energy evaluations 1000 further samples need once training stops: none for a learned sampler, a block of chain sweeps for MCMC (timed once per lane, from 64 samples scaled to 1000)"
        }
        "further_1000_seconds" => {
            "Seconds 1000 further samples cost once training stops, their energy evaluations at the slider's price (the amortised cost)"
        }
        key => crate::metrics::family::help_of(key).unwrap_or(""),
    }
}

/// A CSV cell for the table: long decimals to 4 significant digits, the rest as written.
fn short_cell(cell: &str) -> String {
    match cell.parse::<f64>() {
        Ok(v) if cell.contains('.') && v.is_finite() && v != 0.0 => {
            let decimals = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
            format!("{v:.decimals$}")
        }
        _ => cell.to_string(),
    }
}

fn race_table(ui: &mut egui::Ui, data: &RunData, energy_ms: f64) {
    let lanes: Vec<&[crate::race::RacePoint]> =
        data.lanes.iter().map(|l| l.points.as_slice()).collect();
    let Some(info) = &data.info else { return };
    let columns = crate::race::columns(info.family);
    // compare.csv's columns; with a price on the energy, the cost columns move up beside E-W2
    // so that they are in view without scrolling.
    let order: Vec<usize> = {
        let cost = |c: &str| crate::race::COST_COLUMNS.contains(&c);
        let (head, tail) = (3.min(columns.len()), columns.len());
        let mut o: Vec<usize> = (0..head).collect();
        if energy_ms > 0.0 {
            o.extend((head..tail).filter(|&i| cost(columns[i])));
            o.extend((head..tail).filter(|&i| !cost(columns[i])));
        } else {
            o.extend(head..tail);
        }
        o
    };
    let standings = crate::race::standings(&lanes);
    let rank = |k: usize| {
        standings
            .as_ref()
            .and_then(|s| s.order.iter().position(|&l| l == k))
            .map_or("–".to_string(), |r| (r + 1).to_string())
    };
    egui::ScrollArea::horizontal().id_salt("race_table_scroll").show(ui, |ui| {
        egui::Grid::new("race_table").num_columns(columns.len() + 1).striped(true).show(ui, |ui| {
            ui.strong("rank").on_hover_text("Order by E-W2 at the last budget point every lane has passed (the ranking `compare` prints)");
            for &i in &order {
                ui.strong(columns[i]).on_hover_text(race_column_help(columns[i]));
            }
            ui.end_row();
            for (k, l) in data.lanes.iter().enumerate() {
                ui.label(rank(k));
                let spent = format!(
                    "now: {} energy evals, {} gradient steps, {:.0} s of training{}",
                    l.counters.energy_evals,
                    l.counters.gradient_steps,
                    l.counters.wall_seconds,
                    l.stage.as_ref().map(|s| format!("; {s}")).unwrap_or_default()
                );
                ui.colored_label(plots::lane_color(k), l.kind.label()).on_hover_text(spent);
                // The judgement ranked on (the same for every lane's budget), else the latest.
                match standings.as_ref().map(|s| &s.judged[k]).or(l.points.last()) {
                    Some(p) => {
                        let row = p.row(l.kind, energy_ms);
                        for &i in order.iter().skip(1) {
                            let cell = &row[i];
                            ui.label(if cell.is_empty() { "–".to_string() } else { short_cell(cell) });
                        }
                    }
                    None => {
                        for _ in 1..columns.len() {
                            ui.label("–");
                        }
                    }
                }
                ui.end_row();
            }
        });
    });
    match &standings {
        Some(s) => ui.small(format!("Ranked at the budget point of {} energy evaluations (each lane by its first judgement at or past it).", s.budget)),
        None => ui.small("Ranked once every lane has passed the first budget point (100 energy evaluations)."),
    };
    // Where a lane that cost more to train makes it up on further samples (at the slider's price).
    if let Some(s) = &standings {
        let costs: Vec<(f64, f64)> = s
            .judged
            .iter()
            .map(|p| {
                (
                    p.cost_seconds(energy_ms),
                    p.further_1000_seconds(energy_ms).unwrap_or(f64::NAN),
                )
            })
            .collect();
        for (a, b, n) in crate::race::break_evens(&costs) {
            ui.small(format!("{} is cheaper than {} overall from {:.0} further samples on (costs as in the table).", data.lanes[a].kind.label(), data.lanes[b].kind.label(), n));
        }
    }
    let mut notes: Vec<(&str, &str)> = data
        .lanes
        .iter()
        .map(|l| (l.kind.label(), l.kind.info().samples_note))
        .filter(|(_, n)| !n.is_empty())
        .collect();
    notes.dedup();
    for (label, note) in notes {
        ui.small(format!("{label}: {note}"));
    }
}

fn legend(
    ctx: &egui::Context,
    data: &RunData,
    view: &ViewSettings,
    scale: &EnergyScale,
    left: f32,
    bottom: f32,
) {
    if view.color_by == ColorBy::ParticleIndex || view.show != Show::Samples || data.info.is_none()
    {
        return;
    }
    // Taller by a line of text when the scale is stretched.
    // Anchored by its bottom-left corner: its height varies (a stretched scale, the weight legend,
    // projector mode's larger text).
    egui::Area::new("legend".into())
        .anchor(
            egui::Align2::LEFT_BOTTOM,
            egui::vec2(left + 12.0, -(bottom + 12.0)),
        )
        .interactable(false)
        .show(ctx, |ui| {
            egui::Frame::popup(ui.style()).show(ui, |ui| {
                let molecule = data
                    .info
                    .as_ref()
                    .is_some_and(|i| i.scene.system.is_molecule());
                if view.color_by == ColorBy::LogWeight && !molecule {
                    weight_legend(ui, data);
                    return;
                }
                ui.label(if molecule {
                    "sample energy (kT), frame colour"
                } else {
                    "sample energy (kT)"
                });
                let (rect, _) =
                    ui.allocate_exact_size(egui::vec2(180.0, 10.0), egui::Sense::hover());
                let w = rect.width() / SCALE_STEPS as f32;
                for k in 0..SCALE_STEPS {
                    let [r, g, b] = viridis(k as f32 / (SCALE_STEPS - 1) as f32);
                    let x = rect.left() + k as f32 * w;
                    let c = egui::Color32::from_rgb(
                        (r * 255.0) as u8,
                        (g * 255.0) as u8,
                        (b * 255.0) as u8,
                    );
                    ui.painter().rect_filled(
                        egui::Rect::from_min_size(
                            egui::pos2(x, rect.top()),
                            egui::vec2(w + 0.5, rect.height()),
                        ),
                        0.0,
                        c,
                    );
                }
                // Labels under their places on the bar: the reference's range, and where the scale is
                // stretched above it (logarithmically, up to the samples' 95th percentile), its top.
                let (labels, _) =
                    ui.allocate_exact_size(egui::vec2(rect.width(), 16.0), egui::Sense::hover());
                let font = egui::TextStyle::Body.resolve(ui.style());
                let colour = ui.visuals().text_color();
                let put = |u: f64, text: String, align: egui::Align2| {
                    ui.painter().text(
                        egui::pos2(labels.left() + u as f32 * labels.width(), labels.top()),
                        align,
                        text,
                        font.clone(),
                        colour,
                    );
                };
                put(0.0, format!("{:.1}", scale.lo), egui::Align2::LEFT_TOP);
                if scale.stretched() {
                    // The reference's top sits at REFERENCE_SPAN of the bar, centred on its place
                    // unless that would run into the label at the bar's end: then it ends a gap
                    // before it (long numbers on a narrow bar).
                    let (mid, top) = (format!("{:.1}", scale.hi), short_energy(scale.top));
                    let width = |t: &str| {
                        ui.painter()
                            .layout_no_wrap(t.to_string(), font.clone(), colour)
                            .size()
                            .x as f64
                    };
                    let span = (labels.width() as f64).max(1.0);
                    let right_edge = super::particles::REFERENCE_SPAN + width(&mid) / 2.0 / span;
                    let top_left = 1.0 - (width(&top) + 6.0) / span;
                    if right_edge <= top_left {
                        put(super::particles::REFERENCE_SPAN, mid, egui::Align2::CENTER_TOP);
                    } else {
                        put(top_left, mid, egui::Align2::RIGHT_TOP);
                    }
                    put(1.0, top, egui::Align2::RIGHT_TOP);
                } else {
                    put(1.0, format!("{:.1}", scale.hi), egui::Align2::RIGHT_TOP);
                }
                if scale.stretched() {
                    ui.small("log scale above the reference's range");
                }
            });
        });
}

fn help(ui: &mut egui::Ui) {
    egui::Grid::new("keys").num_columns(2).show(ui, |ui| {
        let mouse = [
            ("left drag", "orbit the camera"),
            ("right / middle drag", "pan"),
            ("wheel", "zoom"),
        ];
        for (k, what) in KEYS.iter().chain(mouse.iter()) {
            ui.strong(*k);
            ui.label(*what);
            ui.end_row();
        }
    });
    ui.separator();
    ui.label(
        "A network learns a drift that carries particles from a single point at t = 0 to samples of \
         exp(−E/kT) at t = 1. It learns from its own samples: each iteration simulates new samples \
         (one energy evaluation each), stores them in a replay buffer, and takes gradient steps on them. \
         Watch the energy histogram slide onto the reference and E-W2 fall.",
    );
}

/// A file-name-safe form of a scene name ("LJ-13" → "lj-13").
pub fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// An energy for the legend: one decimal, or scientific notation when large.
fn short_energy(e: f64) -> String {
    if e.abs() < 1e4 {
        format!("{e:.1}")
    } else {
        format!("{e:.1e}")
    }
}

/// The weight colours' legend: log w − max over the scale, and the batch's ESS as a percentage.
fn weight_legend(ui: &mut egui::Ui, data: &RunData) {
    ui.label("log importance weight − batch max (nats)");
    let (rect, _) = ui.allocate_exact_size(egui::vec2(180.0, 10.0), egui::Sense::hover());
    let w = rect.width() / SCALE_STEPS as f32;
    for k in 0..SCALE_STEPS {
        let [r, g, b] = viridis(k as f32 / (SCALE_STEPS - 1) as f32);
        let c = egui::Color32::from_rgb((r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8);
        ui.painter().rect_filled(
            egui::Rect::from_min_size(
                egui::pos2(rect.left() + k as f32 * w, rect.top()),
                egui::vec2(w + 0.5, rect.height()),
            ),
            0.0,
            c,
        );
    }
    ui.horizontal(|ui| {
        ui.label(format!("≤ −{}", super::particles::LOG_WEIGHT_SPAN));
        ui.add_space(100.0);
        ui.label("0");
    });
    match data.samples.as_deref() {
        Some(b) if b.log_weights.is_some() => {
            ui.label(format!("ESS {:.1}% of the batch", 100.0 * b.ess)).on_hover_text(
                "Effective sample size: how many exact samples the reweighted batch is worth, as a share of its size. 100% = every weight equal (the sampler draws the target); a few % = a handful of samples carry the reweighting.",
            );
        }
        _ => {
            ui.label("this kind defines no importance weights");
        }
    }
}
