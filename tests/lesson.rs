//! Lesson files: every shipped lesson loads (its scenes, panels and conditions checked), and a
//! bad lesson fails with one message naming the file, line and column of the fault.

mod common;

use std::path::Path;

use boltzmann_studio::lesson::{Advance, LoadedLesson, Panel, list_lessons};

#[test]
fn every_shipped_lesson_loads() {
    let lessons = list_lessons(&common::repo("lessons"));
    assert!(
        lessons.len() >= 7,
        "at least seven lessons ship, found {}",
        lessons.len()
    );
    for (path, title) in &lessons {
        let title = title
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let l = LoadedLesson::load(path).unwrap();
        assert!(
            !title.is_empty() && l.len() >= 4,
            "{}: {} steps",
            path.display(),
            l.len()
        );
        assert!(
            l.lesson.minutes.is_some_and(|m| (5..=10).contains(&m)),
            "{}: a lesson takes 5–10 minutes",
            path.display()
        );
        // Every step explains itself, and at least one waits on the live run.
        assert!(l.lesson.steps.iter().all(|s| !s.caption.trim().is_empty()));
        assert!(
            l.lesson
                .steps
                .iter()
                .any(|s| matches!(s.advance, Advance::When(_))),
            "{}: no step waits on the run",
            path.display()
        );
    }
}

/// Writes a lesson next to the scenes (so that "../scenes/x.ron" resolves) and loads it.
fn load(text: &str) -> String {
    let dir = tempfile::tempdir_in(common::repo("lessons")).unwrap();
    let path = dir.path().join("bad.ron");
    std::fs::write(&path, text).unwrap();
    let e = LoadedLesson::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&path.display().to_string()),
        "the error names the file: {e}"
    );
    e
}

const GOOD_STEP: &str = r#"(scene: "../../scenes/double_well_2d.ron", caption: "A caption.")"#;

fn lesson(steps: &str) -> String {
    format!(
        "Lesson(\n    title: \"Bad\",\n    steps: [\n        {GOOD_STEP},\n{steps}\n    ],\n)\n"
    )
}

#[test]
fn a_missing_scene_is_named_with_its_position() {
    let e = load(&lesson(
        r#"        (scene: "../../scenes/no_such_scene.ron", caption: "Two.")"#,
    ));
    assert!(
        e.contains(":5:10:") && e.contains("step 2") && e.contains("no_such_scene.ron"),
        "{e}"
    );
}

#[test]
fn an_unknown_panel_is_named_with_its_position() {
    let e = load(&lesson(
        r#"        (caption: "Two.", panels: [View, Histogram])"#,
    ));
    assert!(e.contains(":5:") && e.contains("Histogram"), "{e}");
}

#[test]
fn an_unparsable_condition_says_why_and_where() {
    let e = load(&lesson(
        r#"        (caption: "Two.", advance: When("E-W2 below 3"))"#,
    ));
    assert!(
        e.contains(":5:") && e.contains("no comparison") && e.contains("E-W2 below 3"),
        "{e}"
    );
    let e = load(&lesson(
        r#"        (caption: "Two.", advance: When("temperature < 3"))"#,
    ));
    assert!(
        e.contains(":5:") && e.contains("unknown quantity 'temperature'"),
        "{e}"
    );
}

#[test]
fn other_mistakes_are_caught_too() {
    let e = load(&lesson(r#"        (caption: "", play: true)"#));
    assert!(
        e.contains(":5:") && e.contains("step 2 has no caption"),
        "{e}"
    );
    let e = load(&lesson(
        r#"        (caption: "Two.", hyper: (batch_size: 0))"#,
    ));
    assert!(e.contains("hyper.batch_size must be at least 1"), "{e}");
    let e = load("Lesson(title: \"No scene\", steps: [(caption: \"One.\")])");
    assert!(
        e.contains(":1:") && e.contains("first step must name a scene"),
        "{e}"
    );
    let e = load(&lesson(r#"        (caption: "Two.", colour: Energy)"#));
    assert!(e.contains(":5:") && e.contains("colour"), "{e}");
}

#[test]
fn a_step_entered_directly_gets_the_setup_of_the_steps_before() {
    let l = LoadedLesson::load(&common::repo("lessons/04-adjoint-sampling.ron")).unwrap();
    let last = l.len() - 1;
    let s = l.setup_at(last);
    assert_eq!(s.from_step, 0);
    assert!(s.scene.ends_with(Path::new("scenes/double_well_2d.ron")));
    assert_eq!(s.seed, Some(0));
    // Panels and locks carry over from the step that last set them.
    assert!(l.panels_at(last).unwrap().contains(&Panel::Hyperparameters));
    assert!(!l.locked_at(last).is_empty());
}
