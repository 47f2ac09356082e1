//! The desktop app: a thin Bevy layer over the core. Training runs on the worker thread
//! ([`crate::worker`]); these plugins only draw what arrives and send what the user asks for.
//!
//! - [`link`]: run data, UI actions, the channels to the worker (no rendering; tested headless)
//! - [`camera`]: orbit camera
//! - [`particles`]: the 3D view of samples and of one trajectory
//! - [`field_view`]: the learned control field of a plane system as arrows
//! - [`molecules`]: torsion-space samples drawn as ball-and-stick molecules in that view
//! - [`panels`], [`plots`]: egui panels and egui_plot plots; [`ticks`]: enough labelled ticks on their axes
//! - [`export`]: files, screenshots, the scripted screenshot run
//! - [`lesson_view`]: lessons (stepping, captions, conditions, the scripted lesson run);
//!   [`projector`]: projector mode; [`sessions`]: saving a session

pub mod camera;
pub mod export;
pub mod field_view;
pub mod lesson_view;
pub mod link;
pub mod molecules;
pub mod panels;
pub mod particles;
pub mod plots;
pub mod projector;
pub mod sessions;
pub mod ticks;

pub use plots::MAX_ENERGY_MS;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use bevy::app::{TaskPoolOptions, TerminalCtrlCHandlerPlugin};
use bevy::prelude::*;
use bevy::winit::{EventLoopProxyWrapper, WinitSettings, WinitUserEvent};
use bevy_egui::EguiPlugin;

use crate::scene::Scene;
use crate::worker::{Waker, WorkerHandle};
use link::{Link, SceneEdit};

/// How the app is launched.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub scene: PathBuf,
    /// Train `after_steps` gradient steps, save a PNG of the window here, close the window.
    pub screenshot: Option<PathBuf>,
    pub after_steps: u64,
    /// Print frame times and training throughput on exit.
    pub report: bool,
    /// Redraw continuously instead of only on input and new data (for frame-time measurements).
    pub continuous: bool,
    /// Seconds to stay paused before the scripted screenshot (to measure paused frames).
    pub hold: f64,
    /// Open on a race of these kinds (two or more) instead of the scene's own kind.
    pub race: Vec<crate::sampler::SamplerKind>,
    /// The race's energy-cost slider at start (ms per energy evaluation).
    pub energy_ms: f64,
    /// With `screenshot`: train until every lane (or the run) has spent this many energy
    /// evaluations, instead of `after_steps` gradient steps.
    pub after_evals: Option<u64>,
    /// Open on the trajectory view with the scrubber at this SDE time (0–1).
    pub trajectory_at: Option<f32>,
    /// Open with the control field drawn at this SDE time (0–1).
    pub field_at: Option<f32>,
    /// "energy", "particle" or "weight".
    pub color_by: Option<String>,
    /// Open this lesson (its first step's scene replaces `scene`) at step `lesson_step` (0-based).
    pub lesson: Option<PathBuf>,
    pub lesson_step: usize,
    /// Render every lesson step to DIR/step-NN.png, then close.
    pub screenshot_steps: Option<PathBuf>,
    /// Start in projector mode.
    pub projector: bool,
    /// Reopen a saved session (its scene, seed, hyperparameters, view and lesson step).
    pub session: Option<crate::session::Session>,
    /// Press "Compute a reference" as soon as the run has started (a scene without one).
    pub compute_reference: bool,
}

impl AppOptions {
    pub fn new(scene: PathBuf) -> Self {
        Self {
            scene,
            screenshot: None,
            after_steps: 0,
            report: false,
            continuous: false,
            hold: 0.0,
            race: Vec::new(),
            energy_ms: 0.0,
            after_evals: None,
            trajectory_at: None,
            field_at: None,
            color_by: None,
            lesson: None,
            lesson_step: 0,
            screenshot_steps: None,
            projector: false,
            session: None,
            compute_reference: false,
        }
    }
}

/// Gradient steps between snapshots at start (the speed control).
pub const DEFAULT_SPEED: u64 = 10;

/// The exit code of Bevy's terminal Ctrl-C handling (also SIGTERM: ctrlc's `termination` feature).
const INTERRUPTED: u8 = 130;

/// Opens the window and runs until it is closed.
pub fn run(mut opts: AppOptions) -> anyhow::Result<()> {
    let lesson = match &opts.lesson {
        Some(p) => Some(crate::lesson::LoadedLesson::load(p)?),
        None => None,
    };
    let session = opts.session.take();
    let (scene, race) = match (&session, &lesson) {
        (Some(s), _) => {
            opts.scene = s.scene_path.clone();
            (s.scene.clone(), s.race.clone())
        }
        (None, Some(l)) => {
            // The lesson's own setup is applied when its step is entered; open on its scene.
            opts.scene = l.setup_at(opts.lesson_step).scene;
            (Scene::load(&opts.scene)?, opts.race.clone())
        }
        (None, None) => (Scene::load(&opts.scene)?, opts.race.clone()),
    };
    // Ctrl-C and SIGTERM close the window as the close button does. The handler is ours, not
    // Bevy's plugin's: that one installs nothing when SIGINT arrives ignored (as it does for a
    // background job of a script), and a SIGTERM then killed the app without its report.
    let _ = ctrlc::set_handler(TerminalCtrlCHandlerPlugin::gracefully_exit);
    let mut app = App::new();
    app.add_plugins(
        DefaultPlugins
            .build()
            .disable::<TerminalCtrlCHandlerPlugin>()
            .set(WindowPlugin {
                primary_window: Some(Window {
                    title: "Boltzmann Studio".into(),
                    resolution: (1600, 900).into(),
                    ..default()
                }),
                ..default()
            })
            // Two cores are shared with the trainer: Bevy's pools get few threads.
            .set(TaskPoolPlugin {
                task_pool_options: TaskPoolOptions::with_num_threads(2),
            }),
    )
    .add_plugins(EguiPlugin::default())
    .add_systems(Update, TerminalCtrlCHandlerPlugin::exit_on_flag)
    .insert_resource(ClearColor(Color::srgb(0.08, 0.09, 0.11)))
    // Redraw on input and when the worker wakes the loop with new data, not continuously:
    // software rendering would otherwise take the trainer's CPU.
    .insert_resource(if opts.continuous {
        WinitSettings::continuous()
    } else {
        WinitSettings::desktop_app()
    });

    let waker: Option<Waker> = app
        .world()
        .get_resource::<EventLoopProxyWrapper>()
        .map(|p| {
            let proxy = Mutex::new((**p).clone());
            Arc::new(move || {
                if let Ok(p) = proxy.lock() {
                    // The loop may already be gone while shutting down; nothing to wake then.
                    let _ = p.send_event(WinitUserEvent::WakeUp);
                }
            }) as Waker
        });
    let first = if race.is_empty() {
        crate::worker::Command::Reset {
            scene: Box::new(scene.clone()),
            path: opts.scene.clone(),
        }
    } else {
        crate::worker::Command::Race {
            scene: Box::new(scene.clone()),
            path: opts.scene.clone(),
            kinds: race,
        }
    };
    let handle = WorkerHandle::spawn_with(first, waker);
    let speed = session.as_ref().map_or(DEFAULT_SPEED, |s| s.speed);
    app.insert_resource(Link(handle))
        .insert_resource(SceneEdit {
            scene,
            path: opts.scene.clone(),
            speed,
        });
    let mut view = particles::ViewSettings::default();
    let mut lesson_state = lesson_view::LessonState::default();
    let mut projector = opts.projector;
    if let Some(s) = &session {
        view.apply(&s.view);
        projector |= s.projector;
        if let Some(place) = &s.lesson {
            match crate::lesson::LoadedLesson::load(&place.file) {
                Ok(l) => lesson_state.resume(l, place.step),
                Err(e) => eprintln!("warning: the session's lesson cannot be opened: {e}"),
            }
        }
    }
    if let Some(l) = lesson {
        lesson_state.open(l, opts.lesson_step);
    }
    app.insert_resource(lesson_state)
        .insert_resource(projector::Projector(projector))
        .insert_resource(ClearColor(projector::clear_color(projector)));
    if let Some(t) = opts.trajectory_at {
        view = particles::ViewSettings {
            show: particles::Show::Trajectory,
            time: t,
            ..view
        };
    }
    if let Some(t) = opts.field_at {
        view = particles::ViewSettings {
            field: true,
            field_t: t,
            ..view
        };
    }
    view.color_by = match opts.color_by.as_deref() {
        Some("particle") => particles::ColorBy::ParticleIndex,
        Some("weight") => particles::ColorBy::LogWeight,
        _ => view.color_by,
    };
    app.insert_resource(view);
    app.insert_resource(plots::PlotSettings {
        energy_ms: opts.energy_ms,
        ..Default::default()
    });
    app.add_plugins((
        link::plugin,
        camera::plugin,
        particles::plugin,
        panels::plugin,
        export::plugin,
        lesson_view::plugin,
        projector::plugin,
        sessions::plugin,
    ));
    if let Some(dir) = &opts.screenshot_steps {
        app.insert_resource(lesson_view::ScriptedLesson::new(
            dir.clone(),
            std::time::Duration::from_secs(900),
        ))
        .add_plugins(lesson_view::scripted_plugin);
    }
    if let Some(p) = &opts.screenshot {
        let until = match opts.after_evals {
            Some(n) => crate::run::Budget::EnergyEvals(n),
            None => crate::run::Budget::GradientSteps(opts.after_steps),
        };
        app.insert_resource(export::Scripted::new(
            p.clone(),
            until,
            std::time::Duration::from_secs_f64(if opts.hold.is_finite() {
                opts.hold.max(0.0)
            } else {
                0.0
            }),
        ))
        .add_plugins(export::scripted_plugin);
    }
    if opts.report {
        app.add_plugins(export::report_plugin);
    }
    if opts.compute_reference {
        app.add_systems(Update, press_compute_reference);
    }
    app.world()
        .resource::<Link>()
        .0
        .send(crate::worker::Command::SetSpeed(speed));

    // Bevy's runner consumes the app: the world, and with it the worker handle (whose drop
    // stops and joins the training thread), is gone when this returns.
    let exit = app.run();
    if let Some(t) = export::CLOSE_REQUESTED_AT.get() {
        println!(
            "window closed: exited {:.0} ms after the close request, worker joined",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    if let Some(dir) = &opts.screenshot_steps {
        let n = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
                    .count()
            })
            .unwrap_or(0);
        println!("lesson pictures: {n} in {}", dir.display());
    }
    if export::REASON_GIVEN.load(std::sync::atomic::Ordering::SeqCst) {
        // The scripted run said why it stopped, in one line; no second line about the picture.
        std::process::exit(1);
    }
    if let AppExit::Error(code) = exit
        && code.get() == INTERRUPTED
    {
        // Ctrl-C or SIGTERM in the terminal: Bevy closed the window as a user would.
        eprintln!("interrupted: window closed");
        std::process::exit(INTERRUPTED.into());
    }
    if let Some(p) = &opts.screenshot {
        let meta = std::fs::metadata(p)
            .with_context(|| format!("the screenshot {} was not written", p.display()))?;
        println!("screenshot: {} ({} bytes)", p.display(), meta.len());
    }
    match exit {
        AppExit::Success => Ok(()),
        AppExit::Error(code) => {
            bail!("the app stopped with an error (code {code}); see the messages above")
        }
    }
}

/// `--compute-reference`: presses the button once the first run has started, if it has no
/// reference.
fn press_compute_reference(
    data: Res<link::RunData>,
    mut actions: MessageWriter<link::UiAction>,
    mut done: Local<bool>,
) {
    if *done {
        return;
    }
    if let Some(info) = &data.info {
        *done = true;
        if info.reference_energies.is_empty() {
            actions.write(link::UiAction::ComputeReference);
        }
    }
}
