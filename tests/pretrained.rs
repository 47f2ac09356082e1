//! The pretrained runs in assets/pretrained/: each is found from its scene (the picker's "⏭
//! trained" button), loads in the worker as the app loads it, and `sample` + `eval` from it
//! reproduce the quality its quality.ron (and the README) states.

mod common;

use std::time::Duration;

use boltzmann_studio::pretrained;
use boltzmann_studio::scene::Scene;
use boltzmann_studio::worker::{Command, Event, WorkerHandle};

fn pretrained_dirs() -> Vec<std::path::PathBuf> {
    let dirs = pretrained::list(&common::repo("assets/pretrained"));
    assert!(!dirs.is_empty(), "pretrained runs ship in assets/pretrained");
    dirs
}

#[test]
fn each_pretrained_run_belongs_to_a_scene_and_loads_in_the_worker() {
    for dir in pretrained_dirs() {
        let stem = dir.file_name().unwrap().to_string_lossy().into_owned();
        let scene_path = common::repo(&format!("scenes/{stem}.ron"));
        assert_eq!(pretrained::dir_for(&scene_path).as_deref(), Some(dir.as_path()), "the picker finds {stem}'s run");
        let scene = Scene::load(&scene_path).unwrap();
        let run_scene = Scene::load(&dir.join("scene.ron")).unwrap_or_else(|e| panic!("{stem}: {e}"));
        // The same system (a molecule's file paths differ: the run's are relative to its folder).
        let (a, b) = (run_scene.energy(), scene.energy());
        assert!(a.name() == b.name() && a.layout() == b.layout(), "{stem}: the run is of {}, the scene of {}", a.name(), b.name());
        assert_eq!(run_scene.system.temperature(), scene.system.temperature(), "{stem}: temperature");
        assert_eq!(run_scene.sampler.kind, scene.sampler.kind, "{stem}: sampler kind");
        // As in the app, the button loads the run into a worker that is running something else:
        // here the run's own scene (LJ-55's full-size scene would first draw its untrained preview
        // through 1000 SDE steps of a 5×128 network, minutes on a CPU).
        drop(scene);
        let w = WorkerHandle::spawn(run_scene, dir.join("scene.ron"), None);
        w.send(Command::LoadCheckpoint(dir.clone()));
        let mut loaded = false;
        while let Ok(e) = w.events.recv_timeout(Duration::from_secs(60)) {
            match e {
                Event::Done { message, .. } if message.contains("checkpoint loaded") => {
                    loaded = true;
                    break;
                }
                Event::Error(m) => panic!("{stem}: {m}"),
                _ => {}
            }
        }
        assert!(loaded, "{stem}: the worker loads the pretrained run");
    }
}

/// Tolerance: 10% of the stated value plus 0.01. The draw is seeded, so the samples repeat;
/// what may differ across machines is floating-point summation order in the network and the
/// metrics (thread counts), which moves a W2 by far less than that.
#[test]
fn sampling_a_pretrained_run_reproduces_its_stated_quality() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in pretrained_dirs() {
        let stem = dir.file_name().unwrap().to_string_lossy().into_owned();
        let q = pretrained::quality(&dir).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let out = tmp.path().join(format!("{stem}.npy"));
        let o = common::run(&["sample", dir.to_str().unwrap(), "--n", &q.samples.to_string(), "--out", out.to_str().unwrap(), "--seed", &q.seed.to_string()]);
        assert!(o.status.success(), "{stem}: {}", common::stderr(&o));
        let scene = format!("scenes/{stem}.ron");
        let mut args = vec!["eval", &scene, "--samples", out.to_str().unwrap(), "--json"];
        // No stated eq-W2: a molecule, or LJ-55, whose 4 M alignments would take hours.
        if q.eq_w2.is_none() {
            args.push("--skip-eq");
        }
        let o = common::run(&args);
        assert!(o.status.success(), "{stem}: {}", common::stderr(&o));
        let json = common::stdout(&o);
        let value = |key: &str| -> Option<f64> {
            let rest = json.split(&format!("\"{key}\":")).nth(1)?;
            rest.split([',', '}']).next()?.trim().parse().ok()
        };
        let close = |got: f64, want: f64| (got - want).abs() <= 0.1 * want.abs() + 0.01;
        let ew2 = value("energy_w2").unwrap();
        println!("{stem}: E-W2 {ew2:.4} (stated {:.4}), eq-W2 {:?} (stated {:?})", q.energy_w2, value("eq_w2"), q.eq_w2);
        assert!(close(ew2, q.energy_w2), "{stem}: E-W2 {ew2} against the stated {}", q.energy_w2);
        if let Some(want) = q.eq_w2 {
            let got = value("eq_w2").unwrap();
            assert!(close(got, want), "{stem}: eq-W2 {got} against the stated {want}");
        }
    }
}
