//! "Save session" (Ctrl+S, the Files panel): the running scene with its live hyperparameters
//! and seed, the speed, the view, projector mode and the lesson step, as one RON file that
//! `boltzmann-studio app FILE` reopens.

use std::path::PathBuf;

use bevy::prelude::*;

use super::lesson_view::LessonState;
use super::link::{RunData, SceneEdit, UiAction};
use super::panels::slug;
use super::particles::ViewSettings;
use super::projector::Projector;
use crate::session::{LessonPlace, Session};

pub fn plugin(app: &mut App) {
    app.add_systems(Update, save.after(super::link::dispatch));
}

/// The session as it stands: `None` before the first run has started.
pub fn capture(
    data: &RunData,
    edit: &SceneEdit,
    view: &ViewSettings,
    projector: bool,
    lesson: &LessonState,
) -> Option<Session> {
    let info = data.info.as_ref()?;
    let mut scene = info.scene.clone();
    // The live edits of a single run (a race's lanes run their own kinds' scenes).
    if let (Some(c), false) = (&data.config, data.racing()) {
        scene.sampler = (**c).clone();
    }
    let mut s = Session::new(&scene, &info.scene_path);
    s.race = info.race.clone();
    s.speed = edit.speed;
    s.view = view.edit();
    s.projector = projector;
    s.lesson = lesson.lesson.as_ref().map(|l| LessonPlace {
        file: std::path::absolute(&l.path).unwrap_or_else(|_| l.path.clone()),
        step: lesson.step,
    });
    Some(s)
}

fn save(
    mut actions: MessageReader<UiAction>,
    mut data: ResMut<RunData>,
    edit: Res<SceneEdit>,
    view: Res<ViewSettings>,
    projector: Res<Projector>,
    lesson: Res<LessonState>,
) {
    for a in actions.read() {
        let UiAction::SaveSession(path) = a else {
            continue;
        };
        let Some(session) = capture(&data, &edit, &view, projector.0, &lesson) else {
            data.notice(true, "no run yet: nothing to save");
            continue;
        };
        let path = if path.as_os_str().is_empty() {
            let name = slug(&session.scene.name);
            PathBuf::from("sessions").join(format!(
                "{name}-seed{}-step{}.ron",
                session.scene.sampler.seed, data.counters.gradient_steps
            ))
        } else {
            path.clone()
        };
        match session.save(&path) {
            Ok(()) => data.notice(
                false,
                format!(
                    "session saved to {}; reopen with `boltzmann-studio app {}`",
                    path.display(),
                    path.display()
                ),
            ),
            Err(e) => data.notice(true, format!("cannot save the session: {e}")),
        }
    }
}
