//! The real training thread, driven through its channels as the app drives it: play, live
//! hyperparameters, checkpoints, a failing command that must not kill it, and a prompt shutdown.

mod common;

use std::time::{Duration, Instant};

use boltzmann_studio::scene::Scene;
use boltzmann_studio::worker::{Command, Event, Snapshot, WorkerHandle};

/// DW-4 made small enough for a test: iterations of 32 samples and 10 steps.
fn small_scene() -> Scene {
    let mut s = Scene::load(&common::repo("scenes/dw4.ron")).unwrap();
    s.sampler.new_samples = 32;
    s.sampler.batch_size = 32;
    s.sampler.train_steps = 10;
    s.sampler.sde_steps = 20;
    s.network.hidden = 16;
    s.network.layers = 2;
    s.schedule.eval_every = 2;
    s
}

/// Waits (at most 60 s) for a snapshot satisfying `pred`, merging histories along the way.
fn wait_for(w: &WorkerHandle, what: &str, mut pred: impl FnMut(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(s) = w.snapshots.recv_timeout(Duration::from_millis(200)) {
            if pred(&s) {
                return s;
            }
        }
    }
    panic!("timed out waiting for {what}");
}

fn wait_event(w: &WorkerHandle, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    let e = w
        .events
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no event: {what}"));
    assert!(pred(&e), "{what}: got {e:?}");
    e
}

#[test]
fn worker_trains_saves_survives_errors_and_stops_quickly() {
    let mut w = WorkerHandle::spawn(small_scene(), common::repo("scenes/dw4.ron"), None);
    let info = match wait_event(&w, "run started", |e| matches!(e, Event::Started(_))) {
        Event::Started(i) => i,
        _ => unreachable!(),
    };
    assert_eq!(
        info.reference_energies.len(),
        2000,
        "live histograms get 2000 reference energies"
    );

    w.send(Command::SetSpeed(5));
    w.send(Command::Play);
    let mut losses = 0;
    let mut saw_samples = false;
    let mut saw_metrics = false;
    let s = wait_for(&w, "25 gradient steps with samples and metrics", |s| {
        losses += s.losses.len();
        saw_samples |= s
            .samples
            .as_ref()
            .is_some_and(|b| b.len() == 32 && b.energies.iter().all(|e| e.is_finite()));
        saw_metrics |= s.metrics.iter().any(|m| {
            m.metrics.energy_w2().is_finite() && m.metrics.get("eq_w2").is_some() && m.n == 32
        });
        s.counters.gradient_steps >= 25 && saw_samples && saw_metrics
    });
    assert!(s.running);
    assert!(
        losses as u64 >= 25 - 5,
        "loss points arrive with the snapshots ({losses})"
    );
    assert_eq!(
        s.counters.energy_evals % 32,
        0,
        "one energy evaluation per simulated sample"
    );

    // Live hyperparameters are applied without a reset.
    w.send(Command::SetHyper {
        lane: 0,
        changes: vec![("learning_rate".into(), 3e-4), ("train_steps".into(), 7.0)],
    });
    wait_for(&w, "new hyperparameters", |s| {
        s.config
            .as_ref()
            .is_some_and(|c| c.learning_rate == 3e-4 && c.train_steps == 7)
    });

    // Pause stops the counters.
    w.send(Command::Pause);
    let paused = wait_for(&w, "paused", |s| !s.running);
    std::thread::sleep(Duration::from_millis(500));
    let later = w.snapshots.try_iter().last().unwrap_or(paused.clone());
    assert_eq!(
        later.counters.gradient_steps,
        paused.counters.gradient_steps
    );

    // A checkpoint folder that `sample` can read.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    w.send(Command::SaveCheckpoint(run.clone()));
    wait_event(&w, "saved", |e| matches!(e, Event::Done { .. }));
    assert!(run.join("scene.ron").exists(), "scene.ron missing");
    for f in ["checkpoint.safetensors", "state.safetensors", "state.json"] {
        assert!(common::checkpoint(&run).join(f).exists(), "{f} missing");
    }
    let out = common::run(&[
        "sample",
        run.to_str().unwrap(),
        "--n",
        "8",
        "--out",
        dir.path().join("s.npy").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "sample from the app's checkpoint: {}",
        common::stderr(&out)
    );
    let resampled = dir.path().join("r.npy");
    let out = common::run(&[
        "sample",
        run.to_str().unwrap(),
        "--n",
        "8",
        "--resample",
        "--out",
        resampled.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "sample --resample: {}",
        common::stderr(&out)
    );
    assert!(
        common::stdout(&out).contains("resampled by importance weights: ESS"),
        "{}",
        common::stdout(&out)
    );
    let rows = boltzmann_studio::io::npy::read_npy(&resampled)
        .unwrap()
        .rows;
    assert_eq!(rows, 8, "resampling keeps the number of samples");

    // A corrupt checkpoint is an error message; the worker keeps serving.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(run.join("scene.ron"), bad.join("scene.ron")).unwrap();
    std::fs::write(bad.join("checkpoint.safetensors"), b"not a checkpoint").unwrap();
    w.send(Command::LoadCheckpoint(bad.clone()));
    wait_event(
        &w,
        "load error",
        |e| matches!(e, Event::Error(m) if m.contains("bad")),
    );
    w.send(Command::Step(3));
    let stepped = wait_for(&w, "3 more steps after the error", |s| {
        s.counters.gradient_steps >= paused.counters.gradient_steps + 3 && !s.running
    });
    assert_eq!(stepped.generation, info.generation, "the old run is kept");

    // Loading the good checkpoint starts a new run with the same counters.
    w.send(Command::LoadCheckpoint(run.clone()));
    wait_event(
        &w,
        "loaded: new run",
        |e| matches!(e, Event::Started(i) if i.generation == info.generation + 1),
    );

    // Shutdown in the middle of training joins within 2 s.
    w.send(Command::Play);
    wait_for(&w, "training again", |s| s.running);
    let took = w.shutdown();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

/// A new run opens on the untrained sampler's samples (one per grid cell) and a trajectory,
/// before Play: the window never starts on empty cells.
#[test]
fn a_new_run_shows_untrained_samples_before_play() {
    let scene = small_scene();
    let cells = scene.view.grid.max(1).pow(2);
    let w = WorkerHandle::spawn(scene, common::repo("scenes/dw4.ron"), None);
    let s = wait_for(&w, "samples before any training", |s| s.samples.is_some());
    let b = s.samples.as_ref().unwrap();
    assert_eq!(b.len(), cells);
    assert!(b.energies.iter().all(|e| e.is_finite()));
    assert_eq!(
        s.counters.gradient_steps, 0,
        "nothing was trained for the preview"
    );
    assert!(!s.running);
    assert!(
        s.trajectory.as_ref().is_some_and(|t| t.len() > 1),
        "a path to replay as well"
    );
}

/// Trains `steps` gradient steps with Step(n) and returns every (step, loss) seen.
fn losses_of(w: &WorkerHandle, steps: u64) -> Vec<(u64, f32)> {
    w.send(Command::Step(steps));
    let mut out = Vec::new();
    wait_for(w, "the steps done", |s| {
        out.extend(s.losses.iter().copied());
        !s.running && s.counters.gradient_steps >= steps && s.lanes.is_empty()
    });
    out
}

/// A fork copies the run exactly: with the same settings both branches go on as the unforked
/// run does; with a ten times larger learning rate branch B's losses equal A's at the first step
/// after the fork (computed before the first differing update) and differ from the next on,
/// while branch A goes on exactly as the unforked run. Exact equality is the right tolerance:
/// a fork restores weights, optimiser, buffer and random state bit for bit.
#[test]
fn a_fork_runs_two_branches_whose_curves_differ_only_after_the_fork() {
    let path = common::repo("scenes/dw4.ron");
    let straight = WorkerHandle::spawn(small_scene(), path.clone(), None);
    wait_event(&straight, "run started", |e| matches!(e, Event::Started(_)));
    let reference: Vec<(u64, f32)> = losses_of(&straight, 100);
    assert_eq!(reference.len(), 100);

    for factor in [1.0, 10.0] {
        let w = WorkerHandle::spawn(small_scene(), path.clone(), None);
        wait_event(&w, "run started", |e| matches!(e, Event::Started(_)));
        let before = losses_of(&w, 40);
        assert_eq!(
            before[..],
            reference[..40],
            "the same seed replays the same run"
        );
        let rate = small_scene().sampler.learning_rate;
        w.send(Command::Fork(vec![("learning_rate".into(), rate * factor)]));
        let info = match wait_event(&w, "fork started", |e| matches!(e, Event::Started(_))) {
            Event::Started(i) => i,
            _ => unreachable!(),
        };
        let fork = info.fork.clone().expect("a fork says so");
        assert_eq!(fork.step, 40);
        assert_eq!(
            fork.changes.len(),
            if factor == 1.0 { 0 } else { 1 },
            "{:?}",
            fork.changes
        );
        w.send(Command::Step(200));
        let mut lanes: [Vec<(u64, f32)>; 2] = Default::default();
        wait_for(&w, "both branches at 100 steps", |s| {
            for (k, l) in s.lanes.iter().enumerate() {
                lanes[k].extend(l.losses.iter().copied());
            }
            s.lanes.len() == 2 && s.lanes.iter().all(|l| l.counters.gradient_steps >= 100)
        });
        w.send(Command::Pause);
        let [a, b] = lanes;
        assert!(
            a[0].0 == 41 && b[0].0 == 41,
            "both branches go on from step 41: {:?} {:?}",
            a.first(),
            b.first()
        );
        assert_eq!(
            a[..60],
            reference[40..100],
            "branch A goes on as if nothing had happened"
        );
        if factor == 1.0 {
            assert_eq!(a[..60], b[..60], "an unchanged fork is an exact copy");
        } else {
            assert_eq!(
                a[0], b[0],
                "step 41's loss is computed before the first update with the new rate"
            );
            let differ = a[1..60]
                .iter()
                .zip(&b[1..60])
                .filter(|(x, y)| x != y)
                .count();
            assert_eq!(
                differ, 59,
                "after the fork every loss of branch B differs from A's"
            );
        }
    }
}

/// Regression: during a race, an edit of the panel was dropped silently (the worker applied
/// edits to single runs only). Now an edit names its lane, reaches that lane alone, and an edit
/// the lane's kind cannot take is an error, not silence.
#[test]
fn a_race_edit_reaches_its_lane_alone() {
    let path = common::repo("scenes/dw4.ron");
    let kinds = vec![
        boltzmann_studio::sampler::SamplerKind::named("adjoint"),
        boltzmann_studio::sampler::SamplerKind::named("asbs"),
    ];
    let w = WorkerHandle::spawn(small_scene(), path.clone(), None);
    wait_event(&w, "run started", |e| matches!(e, Event::Started(_)));
    w.send(Command::Race {
        scene: Box::new(small_scene()),
        path,
        kinds,
    });
    wait_event(
        &w,
        "race started",
        |e| matches!(e, Event::Started(i) if i.race.len() == 2),
    );
    let before = wait_for(&w, "both lanes' settings", |s| {
        s.lanes.len() == 2 && s.lanes.iter().all(|l| l.config.is_some())
    });
    let rate0 = before.lanes[0].config.as_ref().unwrap().learning_rate;
    w.send(Command::SetHyper {
        lane: 1,
        changes: vec![("learning_rate".into(), 0.0123)],
    });
    let after = wait_for(&w, "lane 1's new rate", |s| {
        s.lanes.len() == 2
            && s.lanes[1]
                .config
                .as_ref()
                .is_some_and(|c| c.learning_rate == 0.0123)
    });
    assert_eq!(
        after.lanes[0].config.as_ref().unwrap().learning_rate,
        rate0,
        "lane 0 keeps its rate"
    );
    // iDEM's K is not a row of Adjoint Sampling: refused with a message.
    w.send(Command::SetHyper {
        lane: 0,
        changes: vec![("mc_samples".into(), 4.0)],
    });
    match wait_event(&w, "the refusal", |e| matches!(e, Event::Error(_))) {
        Event::Error(m) => assert!(m.contains("mc_samples"), "{m}"),
        _ => unreachable!(),
    }
}
