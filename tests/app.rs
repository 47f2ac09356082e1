//! The app without a window: `MinimalPlugins`, the link plugin and a fake worker (the test holds
//! the other ends of the channels). Snapshots must update what the UI draws, UI actions and
//! shortcuts must become the right commands, and a burst of snapshots must not pile up.

#![cfg(feature = "app")]

mod common;

use std::sync::Arc;

use bevy::prelude::*;
use crossbeam_channel::{Receiver, Sender, unbounded};

use boltzmann_studio::app::link::{
    self, KeyboardFree, Link, MAX_LOSS_POINTS, RunData, SceneEdit, UiAction,
};
use boltzmann_studio::scene::Scene;
use boltzmann_studio::worker::{
    Command, Event, MetricPoint, RunInfo, SampleBatch, Snapshot, SnapshotSender, WorkerHandle,
    snapshot_channel,
};

struct Fake {
    app: App,
    commands: Receiver<Command>,
    snapshots: SnapshotSender,
    snapshot_rx: Receiver<Snapshot>,
    events: Sender<Event>,
    scene: Scene,
}

fn fake() -> Fake {
    let path = common::repo("scenes/dw4.ron");
    let scene = Scene::load(&path).unwrap();
    let (cmd_tx, commands) = unbounded();
    let (snapshots, snapshot_rx) = snapshot_channel();
    let (events, event_rx) = unbounded();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .init_resource::<ButtonInput<KeyCode>>()
        .insert_resource(Link(WorkerHandle::from_channels(
            cmd_tx,
            snapshot_rx.clone(),
            event_rx,
        )))
        .insert_resource(SceneEdit {
            scene: scene.clone(),
            path,
            speed: 10,
        })
        .add_plugins(link::plugin);
    Fake {
        app,
        commands,
        snapshots,
        snapshot_rx,
        events,
        scene,
    }
}

/// DW-4's metrics: E-W2 2, x-W2 1, eq-W2 as given, dist-TV 0.1.
fn particle_metrics(eq_w2: Option<f64>) -> boltzmann_studio::metrics::MetricSet {
    use boltzmann_studio::metrics::family::*;
    MetricSet::new(
        Family::Particles,
        &[
            (&ENERGY_W2, Some(2.0)),
            (&X_W2, Some(1.0)),
            (&EQ_W2, eq_w2),
            (&DIST_TV, Some(0.1)),
        ],
    )
}

fn started(f: &Fake, generation: u64) {
    let layout = f.scene.energy().layout();
    let info = RunInfo {
        generation,
        scene: f.scene.clone(),
        scene_path: common::repo("scenes/dw4.ron"),
        layout,
        family: boltzmann_studio::metrics::Family::Particles,
        reference_energies: vec![-22.0, -23.0],
        reference_distances: vec![4.0, 5.0],
        reference_torsions: Vec::new(),
        torsion_names: Vec::new(),
        race: Vec::new(),
        fork: None,
        log_z_exact: None,
    };
    f.events.send(Event::Started(Arc::new(info))).unwrap();
}

fn batch(step: u64, value: f32) -> Arc<SampleBatch> {
    let layout = boltzmann_studio::energy::Layout {
        particles: 4,
        spatial_dim: 2,
        com_free: true,
    };
    Arc::new(SampleBatch {
        x: vec![value; 16],
        energies: vec![value as f64; 2],
        layout,
        ess: 0.5,
        log_weights: None,
        step,
    })
}

fn drain(rx: &Receiver<Command>) -> Vec<Command> {
    rx.try_iter().collect()
}

#[test]
fn snapshots_update_the_run_data() {
    let mut f = fake();
    started(&f, 1);
    let metric = MetricPoint {
        step: 3,
        wall_seconds: 1.5,
        energy_evals: 64,
        metrics: particle_metrics(Some(0.5)),
        ess: 0.2,
        log_z: -1.5,
        n: 2,
    };
    f.snapshots.send(Snapshot {
        generation: 1,
        running: true,
        losses: vec![(1, 5.0), (2, 4.0), (3, 3.0)],
        metrics: vec![metric],
        samples: Some(batch(3, 1.0)),
        trajectory: Some(Arc::new(vec![vec![0.0; 8], vec![1.0; 8]])),
        ..Snapshot::default()
    });
    f.app.update();
    let data = f.app.world().resource::<RunData>();
    assert!(data.running);
    assert_eq!(data.losses, vec![[1.0, 5.0], [2.0, 4.0], [3.0, 3.0]]);
    assert_eq!(data.metrics, vec![metric]);
    assert_eq!(data.samples.as_ref().unwrap().x, vec![1.0; 16]);
    assert_eq!(data.samples_version, 1);
    assert_eq!(data.trajectory.as_ref().unwrap().len(), 2);

    // A snapshot of a run that was replaced is ignored; a new run clears the history.
    f.snapshots.send(Snapshot {
        generation: 7,
        losses: vec![(9, 1.0)],
        ..Snapshot::default()
    });
    f.app.update();
    assert_eq!(f.app.world().resource::<RunData>().losses.len(), 3);
    started(&f, 2);
    f.app.update();
    let data = f.app.world().resource::<RunData>();
    assert!(data.losses.is_empty() && data.samples.is_none() && data.metrics.is_empty());
    assert_eq!(data.info.as_ref().unwrap().generation, 2);

    // Errors from the worker become visible notices.
    f.events
        .send(Event::Error("training stopped: boom".into()))
        .unwrap();
    f.app.update();
    let data = f.app.world().resource::<RunData>();
    assert!(
        data.notices
            .last()
            .is_some_and(|n| n.error && n.text.contains("boom"))
    );
}

#[test]
fn ui_actions_become_commands() {
    let mut f = fake();
    started(&f, 1);
    f.app.update();
    for a in [
        UiAction::Play,
        UiAction::SetSpeed(5),
        UiAction::Step,
        UiAction::Pause,
        UiAction::Reset,
    ] {
        f.app.world_mut().write_message(a);
    }
    f.app.update();
    let got = drain(&f.commands);
    assert!(matches!(got[0], Command::Play));
    assert!(matches!(got[1], Command::SetSpeed(5)));
    assert!(
        matches!(got[2], Command::Step(5)),
        "Step uses the speed setting: {:?}",
        got[2]
    );
    assert!(matches!(got[3], Command::Pause));
    match &got[4] {
        Command::Reset { scene, .. } => assert_eq!(scene.name, "DW-4"),
        c => panic!("expected a reset, got {c:?}"),
    }
    assert_eq!(got.len(), 5);

    // The seed edited in the panel goes with the next reset.
    f.app
        .world_mut()
        .resource_mut::<SceneEdit>()
        .scene
        .sampler
        .seed = 42;
    f.app.world_mut().write_message(UiAction::Reset);
    f.app.update();
    match drain(&f.commands).as_slice() {
        [Command::Reset { scene, .. }] => assert_eq!(scene.sampler.seed, 42),
        c => panic!("expected one reset, got {c:?}"),
    }

    // A scene that cannot be read is reported and sends nothing.
    f.app
        .world_mut()
        .write_message(UiAction::OpenScene(common::repo("tests/no-such-scene.ron")));
    f.app.update();
    assert!(drain(&f.commands).is_empty());
    let data = f.app.world().resource::<RunData>();
    assert!(
        data.notices
            .last()
            .is_some_and(|n| n.error && n.text.contains("no-such-scene.ron"))
    );
}

#[test]
fn shortcuts_send_commands_unless_typing() {
    let mut f = fake();
    started(&f, 1);
    f.app.update();
    let press = |f: &mut Fake, k: KeyCode| {
        let mut keys = f.app.world_mut().resource_mut::<ButtonInput<KeyCode>>();
        keys.clear();
        keys.release_all();
        keys.press(k);
    };
    press(&mut f, KeyCode::Space);
    f.app.update();
    assert!(
        matches!(drain(&f.commands).as_slice(), [Command::Play]),
        "Space plays when paused"
    );
    f.snapshots.send(Snapshot {
        generation: 1,
        running: true,
        ..Snapshot::default()
    });
    press(&mut f, KeyCode::Space);
    f.app.update();
    assert!(
        matches!(drain(&f.commands).as_slice(), [Command::Pause]),
        "Space pauses when running"
    );
    press(&mut f, KeyCode::KeyN);
    f.app.update();
    assert!(matches!(drain(&f.commands).as_slice(), [Command::Step(10)]));
    press(&mut f, KeyCode::KeyR);
    f.app.update();
    assert!(matches!(
        drain(&f.commands).as_slice(),
        [Command::Reset { .. }]
    ));
    // While a text field has the keyboard, keys are text, not shortcuts.
    f.app.world_mut().resource_mut::<KeyboardFree>().0 = false;
    press(&mut f, KeyCode::KeyR);
    f.app.update();
    assert!(drain(&f.commands).is_empty());
}

/// 1000 snapshots while the UI is not reading: the channel never holds more than one, the
/// newest state wins, and no loss point is lost on the way.
#[test]
fn a_burst_of_snapshots_does_not_pile_up() {
    let mut f = fake();
    started(&f, 1);
    f.app.update();
    for i in 0..1000u64 {
        f.snapshots.send(Snapshot {
            generation: 1,
            losses: vec![(2 * i, 1.0), (2 * i + 1, 2.0)],
            samples: Some(batch(i, i as f32)),
            ..Snapshot::default()
        });
        assert!(
            f.snapshot_rx.len() <= 1,
            "snapshots queue up: {}",
            f.snapshot_rx.len()
        );
    }
    f.app.update();
    let data = f.app.world().resource::<RunData>();
    assert_eq!(data.snapshots, 1, "one merged snapshot reaches the UI");
    assert_eq!(
        data.samples.as_ref().unwrap().step,
        999,
        "the newest samples win"
    );
    assert_eq!(
        data.losses.len(),
        2000,
        "loss history is merged, not dropped"
    );
    assert_eq!(data.losses.last().unwrap()[0], 1999.0);

    // A long run: the plotted loss history is thinned, so memory stays bounded.
    for i in 0..60u64 {
        let losses = (0..1000).map(|k| (10_000 + i * 1000 + k, 1.0)).collect();
        f.snapshots.send(Snapshot {
            generation: 1,
            losses,
            ..Snapshot::default()
        });
        f.app.update();
    }
    let data = f.app.world().resource::<RunData>();
    assert!(
        data.losses.len() <= MAX_LOSS_POINTS,
        "{} loss points kept",
        data.losses.len()
    );
    assert!(data.losses.len() > MAX_LOSS_POINTS / 4);
    assert!(
        data.losses.windows(2).all(|w| w[0][0] < w[1][0]),
        "thinning keeps the order"
    );
}

/// The export buttons' writers: samples as .npy and extended XYZ, history as CSV.
#[test]
fn exports_write_files_people_can_read() {
    let mut f = fake();
    started(&f, 1);
    let metric = MetricPoint {
        step: 2,
        wall_seconds: 0.5,
        energy_evals: 32,
        metrics: particle_metrics(None),
        ess: 0.2,
        log_z: -1.5,
        n: 2,
    };
    f.snapshots.send(Snapshot {
        generation: 1,
        losses: vec![(1, 5.0), (2, 4.0)],
        metrics: vec![metric],
        samples: Some(batch(2, 0.5)),
        ..Snapshot::default()
    });
    f.app.update();
    let data = f.app.world().resource::<RunData>();
    let dir = tempfile::tempdir().unwrap();

    let npy = dir.path().join("out/s.npy");
    boltzmann_studio::app::export::write_samples(data, &npy).unwrap();
    let m = boltzmann_studio::io::read_npy(&npy).unwrap();
    assert_eq!((m.rows, m.cols), (2, 8));

    let xyz = dir.path().join("s.xyz");
    boltzmann_studio::app::export::write_samples(data, &xyz).unwrap();
    let text = std::fs::read_to_string(&xyz).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.trim() == "4").count(),
        2,
        "two frames of 4 particles:\n{text}"
    );
    assert!(text.contains("energy="));

    let csv = dir.path().join("m.csv");
    boltzmann_studio::app::export::write_metrics(data, &csv).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // train's metrics.csv columns (the app keeps no iteration per loss point).
    assert_eq!(
        lines[0],
        "step,iteration,wall_seconds,loss,energy_evals,energy_w2,x_w2,eq_w2,dist_tv,ess,samples_compared"
    );
    assert_eq!(lines.len(), 3, "header + one row per loss point:\n{text}");
    assert_eq!(
        lines[2], "2,,0.5,4,32,2,1,,0.1,0.2,2",
        "the metric lands on its step"
    );

    // Without samples an export is an error, not an empty file.
    f.app.world_mut().resource_mut::<RunData>().samples = None;
    let err = boltzmann_studio::app::export::write_samples(
        f.app.world().resource::<RunData>(),
        &dir.path().join("none.npy"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no samples"));
}

/// The fake app with lessons (and the view settings they change).
fn fake_with_lessons() -> Fake {
    let mut f = fake();
    f.app
        .init_resource::<boltzmann_studio::app::particles::ViewSettings>()
        .add_plugins(boltzmann_studio::app::lesson_view::plugin);
    f
}

#[test]
fn a_lesson_sets_up_its_steps_advances_on_conditions_and_survives_a_broken_step() {
    use boltzmann_studio::app::lesson_view::LessonState;
    use boltzmann_studio::lesson::{Control, LoadedLesson};
    let dir = tempfile::tempdir_in(common::repo("lessons")).unwrap();
    let scene = dir.path().join("dw.ron");
    std::fs::copy(common::repo("scenes/double_well_2d.ron"), &scene).unwrap();
    std::fs::write(
        dir.path().join("l.ron"),
        format!(
            r#"Lesson(title: "T", steps: [
                (scene: "dw.ron", seed: 7, hyper: (learning_rate: 0.005), play: false, locked: [Reset], caption: "One."),
                (play: true, advance: When("gradient steps >= 100"), view: (show: Trajectory), caption: "Two."),
                (scene: "{}", caption: "Three: its scene will be gone."),
                (caption: "Four."),
            ])"#,
            "dw.ron"
        ),
    )
    .unwrap();
    let lesson = LoadedLesson::load(&dir.path().join("l.ron")).unwrap();
    let mut f = fake_with_lessons();
    started(&f, 1);
    f.app
        .world_mut()
        .resource_mut::<LessonState>()
        .open(lesson, 0);
    f.app.update();

    // Step 1 restarts on its scene with its seed and learning rate, paused.
    let got = drain(&f.commands);
    let Command::Reset { scene: s, .. } = &got[0] else {
        panic!("expected a reset, got {got:?}")
    };
    assert_eq!(s.sampler.seed, 7);
    assert_eq!(s.sampler.learning_rate, 0.005);
    assert!(matches!(got.last(), Some(Command::Pause)));
    // Reset is locked in this step: the action is refused with a notice.
    assert_eq!(
        f.app.world().resource::<link::Locked>().0,
        vec![Control::Reset]
    );
    f.app.world_mut().write_message(UiAction::Reset);
    f.app.update();
    assert!(
        drain(&f.commands).is_empty(),
        "a locked control sends nothing"
    );
    assert!(
        f.app
            .world()
            .resource::<RunData>()
            .notices
            .last()
            .unwrap()
            .text
            .contains("locked")
    );

    // The right-arrow action moves on; step 2 plays and waits for 100 gradient steps.
    started(&f, 2);
    f.app.world_mut().write_message(UiAction::NextStep);
    f.app.update();
    f.app.update();
    assert!(
        drain(&f.commands)
            .iter()
            .any(|c| matches!(c, Command::Play))
    );
    assert_eq!(
        f.app
            .world()
            .resource::<boltzmann_studio::app::particles::ViewSettings>()
            .show,
        boltzmann_studio::view::Show::Trajectory
    );
    let counters = |n| boltzmann_studio::sampler::Counters {
        gradient_steps: n,
        ..Default::default()
    };
    f.snapshots.send(Snapshot {
        generation: 2,
        running: true,
        counters: counters(50),
        ..Snapshot::default()
    });
    f.app.update();
    assert_eq!(
        f.app.world().resource::<LessonState>().step,
        1,
        "not yet: 50 < 100"
    );
    // Step 3's scene disappears before it is reached: a notice, and the lesson goes on.
    std::fs::remove_file(&scene).unwrap();
    f.snapshots.send(Snapshot {
        generation: 2,
        running: true,
        counters: counters(120),
        ..Snapshot::default()
    });
    f.app.update();
    f.app.update();
    let state = f.app.world().resource::<LessonState>();
    assert_eq!(state.step, 2, "the condition held: on to step 3");
    assert!(
        state
            .broken
            .as_deref()
            .is_some_and(|b| b.contains("dw.ron")),
        "{:?}",
        state.broken
    );
    let data = f.app.world().resource::<RunData>();
    assert!(
        data.notices
            .last()
            .is_some_and(|n| n.error && n.text.contains("the lesson goes on"))
    );
    assert!(
        !drain(&f.commands)
            .iter()
            .any(|c| matches!(c, Command::Reset { .. })),
        "a broken step restarts nothing"
    );
    f.app.world_mut().write_message(UiAction::NextStep);
    f.app.update();
    let state = f.app.world().resource::<LessonState>();
    assert_eq!((state.step, state.broken.is_none()), (3, true));
}

/// Saving a session and reopening it: the same scene, seed and live hyperparameters, and the
/// same first 100 losses, bit for bit (same seed, same run; training never depends on what the
/// app draws). A real worker trains; the app runs headless.
#[test]
fn a_saved_session_reopens_the_same_run() {
    use boltzmann_studio::app::{lesson_view, projector, sessions};
    use boltzmann_studio::session::Session;
    let path = common::repo("scenes/double_well_2d.ron");
    let mut scene = Scene::load(&path).unwrap();
    scene.sampler.seed = 11;
    scene.sampler.train_steps = 20;
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .init_resource::<ButtonInput<KeyCode>>()
        .insert_resource(Link(WorkerHandle::spawn(scene.clone(), path.clone(), None)))
        .insert_resource(SceneEdit {
            scene: scene.clone(),
            path: path.clone(),
            speed: 10,
        })
        .init_resource::<boltzmann_studio::app::particles::ViewSettings>()
        .init_resource::<projector::Projector>()
        .add_plugins((link::plugin, lesson_view::plugin, sessions::plugin));
    let run_until = |app: &mut App, what: &str, done: &dyn Fn(&RunData) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !done(app.world().resource::<RunData>()) {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            app.update();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    run_until(&mut app, "the run to start", &|d| d.config.is_some());
    // Live edits before training, as a user makes them in the panel.
    app.world_mut().write_message(UiAction::SetHyper {
        lane: 0,
        changes: vec![
            ("learning_rate".into(), 0.004),
            ("batch_size".into(), 128.0),
        ],
    });
    app.world_mut().write_message(UiAction::SetSpeed(100));
    app.world_mut().write_message(UiAction::Step);
    run_until(&mut app, "100 gradient steps", &|d| {
        d.losses.len() >= 100 && !d.running
    });
    let first: Vec<[f64; 2]> = app.world().resource::<RunData>().losses[..100].to_vec();
    app.world_mut()
        .resource_mut::<boltzmann_studio::app::particles::ViewSettings>()
        .color_by = boltzmann_studio::view::ColorBy::LogWeight;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.ron");
    app.world_mut()
        .write_message(UiAction::SaveSession(file.clone()));
    app.update();
    assert!(
        app.world()
            .resource::<RunData>()
            .notices
            .last()
            .is_some_and(|n| !n.error && n.text.contains("session saved"))
    );
    drop(app);

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(Session::is_session(&text), "{text}");
    let s = Session::load(&file).unwrap();
    assert_eq!(s.scene.sampler.seed, 11);
    assert_eq!(
        (s.scene.sampler.learning_rate, s.scene.sampler.batch_size),
        (0.004, 128),
        "the live hyperparameters are kept"
    );
    assert_eq!(s.speed, 100);
    assert_eq!(
        s.view.color_by,
        Some(boltzmann_studio::view::ColorBy::LogWeight)
    );
    assert_eq!(s.scene_path, std::path::absolute(&path).unwrap());

    // Reopened: the same first 100 losses.
    let w = WorkerHandle::spawn(s.scene.clone(), s.scene_path.clone(), None);
    w.send(Command::Step(100));
    let mut again = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while again.len() < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out replaying the session"
        );
        if let Ok(snap) = w
            .snapshots
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            again.extend(snap.losses.iter().map(|&(k, l)| [k as f64, l as f64]));
        }
    }
    assert_eq!(
        again[..100],
        first[..],
        "same seed, same hyperparameters: the same losses"
    );
}

/// The help window lists every key the app answers to (it is built from `KEYS`; this checks
/// that `KEYS` names every binding).
#[test]
fn keyboard_help_lists_every_key() {
    let listed: Vec<&str> = link::KEYS.iter().map(|(k, _)| *k).collect();
    let text = listed.join(" / ");
    for (ctrl, prefix) in [(false, ""), (true, "Ctrl+")] {
        for (key, _) in link::bindings(ctrl) {
            let name = format!("{key:?}");
            let name = match name.as_str() {
                "ArrowRight" => "Right arrow".to_string(),
                "ArrowLeft" => "Left arrow".to_string(),
                "PageDown" => "Page Down".to_string(),
                "PageUp" => "Page Up".to_string(),
                n => n.strip_prefix("Key").unwrap_or(n).to_string(),
            };
            let name = format!("{prefix}{name}");
            assert!(
                text.split([' ', '/']).any(|w| w == name) || text.contains(&name),
                "the help does not list {name}: {text}"
            );
        }
    }
}

/// Every character of every lesson (and the symbols on the app's lesson, fork and picker
/// buttons) is in egui's fonts: a missing glyph is drawn as an empty box, which a class reads
/// as a typo.
#[test]
fn every_character_a_lesson_shows_can_be_drawn() {
    use bevy_egui::egui;
    use boltzmann_studio::lesson::{LoadedLesson, list_lessons};
    let ctx = egui::Context::default();
    ctx.set_fonts(boltzmann_studio::app::projector::font_definitions());
    let _ = ctx.run_ui(egui::RawInput::default(), |_| {});
    // The characters of every face in the proportional family's fallback chain (`has_glyph`
    // reports the last fallback's characters as missing).
    let known: std::collections::BTreeSet<char> = ctx.fonts_mut(|f| {
        f.fonts
            .font(&egui::FontFamily::Proportional)
            .characters()
            .keys()
            .copied()
            .collect()
    });
    let mut missing = Vec::new();
    let mut check = |where_: String, text: &str| {
        for c in text.chars().filter(|c| !c.is_whitespace()) {
            if !known.contains(&c) {
                missing.push(format!("{where_}: '{c}' (U+{:04X})", c as u32));
            }
        }
    };
    // Every non-ASCII character in the app's code outside comments: labels, tooltips, units.
    for entry in std::fs::read_dir(common::repo("src/app")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim_start().starts_with("//"))
        {
            let code = line.split(" // ").next().unwrap_or(line);
            check(
                format!("{}:{}", path.display(), n + 1),
                &code.chars().filter(|c| !c.is_ascii()).collect::<String>(),
            );
        }
    }
    for (path, _) in list_lessons(&common::repo("lessons")) {
        let l = LoadedLesson::load(&path).unwrap();
        check(format!("{} title", path.display()), &l.lesson.title);
        for (i, s) in l.lesson.steps.iter().enumerate() {
            check(
                format!("{} step {}", path.display(), i + 1),
                &format!("{} {}", s.title, s.caption),
            );
        }
    }
    assert!(
        missing.is_empty(),
        "glyphs egui cannot draw:\n{}",
        missing.join("\n")
    );
}

/// Regression: a lesson's live edit was reverted by the next touch of the panel (the panel kept
/// its own copy of every value and sent all of them back). The panel now re-reads the run's
/// copy whenever a snapshot brings a new one, and sends only the row that was touched.
#[test]
fn the_panel_follows_edits_made_elsewhere() {
    use boltzmann_studio::app::panels::PanelState;
    let mut f = fake();
    let mut data = RunData::default();
    let mut state = PanelState::default();
    let mut cfg = f.scene.sampler.clone();
    data.config = Some(Arc::new(cfg.clone()));
    state.sync_hyper(&data);
    assert_eq!(state.hyper().unwrap().learning_rate, cfg.learning_rate);
    // A lesson step sets the rate; the run's next snapshot carries it.
    cfg.learning_rate = 0.0042;
    data.config = Some(Arc::new(cfg.clone()));
    state.sync_hyper(&data);
    assert_eq!(
        state.hyper().unwrap().learning_rate,
        0.0042,
        "the panel shows the lesson's value"
    );
    // A touch of another row sends that row alone.
    f.app.world_mut().write_message(UiAction::SetHyper {
        lane: 0,
        changes: vec![("batch_size".into(), 64.0)],
    });
    f.app.update();
    let sent: Vec<Command> = f.commands.try_iter().collect();
    assert!(
        sent.iter().any(|c| matches!(c, Command::SetHyper { lane: 0, changes } if changes == &vec![("batch_size".to_string(), 64.0)])),
        "{sent:?}"
    );
    assert_eq!(
        f.app
            .world()
            .resource::<SceneEdit>()
            .scene
            .sampler
            .batch_size,
        64,
        "a single run's edit is also the next reset's"
    );
}

/// "Compute a reference" on a run without one: a job with progress runs beside the worker, the
/// reference is cached beside the scene (named by a hash of the system), and the worker is told
/// to judge against it; a second press while it runs starts nothing.
#[test]
fn compute_a_reference_caches_it_and_attaches_it_to_the_run() {
    let dir = std::env::temp_dir().join(format!("bs-app-reference-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ring.ron");
    std::fs::copy(common::repo("scenes/mexican_hat.ron"), &path).unwrap();
    let scene = Scene::load(&path).unwrap();
    let mut f = fake();
    let info = RunInfo {
        generation: 1,
        scene: scene.clone(),
        scene_path: path.clone(),
        layout: scene.energy().layout(),
        family: boltzmann_studio::metrics::Family::Plane,
        reference_energies: Vec::new(),
        reference_distances: Vec::new(),
        reference_torsions: Vec::new(),
        torsion_names: Vec::new(),
        race: Vec::new(),
        fork: None,
        log_z_exact: None,
    };
    f.events.send(Event::Started(Arc::new(info))).unwrap();
    f.app.update();
    f.app.world_mut().write_message(UiAction::ComputeReference);
    f.app.world_mut().write_message(UiAction::ComputeReference);
    f.app.update();
    assert!(f.app.world().resource::<RunData>().reference_job.is_some());
    let start = std::time::Instant::now();
    let attached = loop {
        f.app.update();
        if let Some(Command::AttachReference(p)) = drain(&f.commands).into_iter().next() {
            break p;
        }
        assert!(start.elapsed().as_secs() < 120, "the reference never arrived");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        attached,
        scene.reference_cache(&path)
    );
    let m = boltzmann_studio::io::read_npy(&attached).unwrap();
    assert_eq!((m.rows, m.cols), (boltzmann_studio::reference::ON_DEMAND_ROWS, 2));
    // The ring's radius² is 2: exact draws sit near it (E = 4(r² − 2)², so |r² − 2| < 1.5 for
    // all but a vanishing share).
    let near = m.data.chunks(2).filter(|r| ((r[0] * r[0] + r[1] * r[1]) - 2.0).abs() < 1.5).count();
    assert!(near as f64 > 0.999 * m.rows as f64, "{near}");
    assert!(f.app.world().resource::<RunData>().reference_job.is_none());
    assert_eq!(Scene::load(&path).unwrap().reference_path(&path), Some(attached));
}
