//! The pretrained runs in assets/pretrained/: each is found from its scene (the picker's "⏭
//! trained" button), loads in the worker as the app loads it, and `sample` + `eval` from it
//! draws the samples its fingerprint records. The full quality check (`sample` + `eval` of 2000
//! samples each against quality.ron, what the README states) is `.ci/pretrained-quality`.

mod common;

use std::time::{Duration, Instant};

use boltzmann_studio::pretrained;
use boltzmann_studio::sampler::SampleOptions;
use boltzmann_studio::scene::Scene;
use boltzmann_studio::worker::{Command, Event, WorkerHandle};

fn pretrained_dirs() -> Vec<std::path::PathBuf> {
    let dirs = pretrained::list(&common::repo("assets/pretrained"));
    assert!(
        !dirs.is_empty(),
        "pretrained runs ship in assets/pretrained"
    );
    dirs
}

#[test]
fn each_pretrained_run_belongs_to_a_scene_and_loads_in_the_worker() {
    for dir in pretrained_dirs() {
        let stem = dir.file_name().unwrap().to_string_lossy().into_owned();
        let scene_path = common::repo(&format!("scenes/{stem}.ron"));
        assert_eq!(
            pretrained::dir_for(&scene_path).as_deref(),
            Some(dir.as_path()),
            "the picker finds {stem}'s run"
        );
        let scene = Scene::load(&scene_path).unwrap();
        let run_scene =
            Scene::load(&dir.join("scene.ron")).unwrap_or_else(|e| panic!("{stem}: {e}"));
        // The same system (a molecule's file paths differ: the run's are relative to its folder).
        let (a, b) = (run_scene.energy(), scene.energy());
        assert!(
            a.name() == b.name() && a.layout() == b.layout(),
            "{stem}: the run is of {}, the scene of {}",
            a.name(),
            b.name()
        );
        assert_eq!(
            run_scene.system.temperature(),
            scene.system.temperature(),
            "{stem}: temperature"
        );
        assert_eq!(
            run_scene.sampler.kind, scene.sampler.kind,
            "{stem}: sampler kind"
        );
        // As in the app, the button loads the run into a worker that is running something else:
        // here the run's own scene (LJ-55's full-size scene would first draw its untrained preview
        // through 1000 SDE steps of a 5×128 network, minutes on a CPU).
        drop(scene);
        let w = WorkerHandle::spawn(run_scene, dir.join("scene.ron"), None);
        w.send(Command::LoadCheckpoint(dir.clone()));
        // A deadline, not a speed target: the loaded run's first preview is an SDE solve of the
        // run's network, and in CI this test shares two cores with the fingerprint test, which
        // made a 60-second silence between events too short for LJ-13 there.
        let start = Instant::now();
        let deadline = start + Duration::from_secs(600);
        let mut loaded = false;
        while let Ok(e) = w
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            match e {
                Event::Done { message, .. } if message.contains("checkpoint loaded") => {
                    // Shown with a failure (and under --nocapture): how close CI came.
                    eprintln!("{stem}: loaded in the worker after {:.1?}", start.elapsed());
                    loaded = true;
                    break;
                }
                Event::Error(m) => panic!("{stem}: {m}"),
                _ => {}
            }
        }
        assert!(
            loaded,
            "{stem}: the worker did not report the pretrained run loaded within {:.0?}",
            start.elapsed()
        );
    }
}

/// Samples per run in the fingerprint: enough that a changed network or sampling path moves the
/// mean energy far beyond the tolerance, few enough that all runs take about two minutes (the
/// full quality check of 2000 samples each, ~19 minutes, is `.ci/pretrained-quality`).
const FINGERPRINT_SAMPLES: usize = 200;

/// Each run, loaded as `sample` loads it, draws 200 samples with seed 0; their mean energy must
/// match the run's `fingerprint.ron` (written by `.ci/pretrained-quality --update`).
///
/// Tolerance: 1% of |mean| plus 0.01 (energy units of the system). The draw is seeded, so the
/// samples repeat exactly on one machine; across machines only floating-point summation order
/// (thread counts, SIMD width) differs, which moves a mean of 200 energies by orders of magnitude
/// less. A changed checkpoint, network or integrator moves it by far more (a sample's energy
/// varies by O(1) to O(10) between draws).
#[test]
fn each_pretrained_run_draws_its_fingerprint() {
    let update = std::env::var_os("BOLTZMANN_UPDATE_FINGERPRINTS").is_some();
    for dir in pretrained_dirs() {
        let stem = dir.file_name().unwrap().to_string_lossy().into_owned();
        let scene = Scene::load(&dir.join("scene.ron")).unwrap();
        let mut sampler = scene.build_sampler().unwrap();
        sampler
            .load(&boltzmann_studio::checkpoint::current(&dir).unwrap())
            .unwrap();
        let s = sampler
            .sample(
                FINGERPRINT_SAMPLES,
                SampleOptions {
                    fill: true,
                    seed: Some(0),
                    ..SampleOptions::default()
                },
            )
            .unwrap();
        let finite: Vec<f64> = s
            .energies
            .iter()
            .copied()
            .filter(|e| e.is_finite())
            .collect();
        let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
        let file = dir.join("fingerprint.ron");
        if update {
            let text = format!(
                "// tests/pretrained.rs: mean energy of {FINGERPRINT_SAMPLES} samples drawn with seed 0 (finite ones: {}).\n(samples: {FINGERPRINT_SAMPLES}, seed: 0, mean_energy: {mean:?}, finite: {})\n",
                finite.len(),
                finite.len()
            );
            std::fs::write(&file, text).unwrap();
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "{stem}: {} ({e}): run .ci/pretrained-quality --update",
                file.display()
            )
        });
        let want: Fingerprint = ron::from_str(
            text.lines()
                .filter(|l| !l.starts_with("//"))
                .collect::<String>()
                .as_str(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        println!(
            "{stem}: mean energy {mean:.6} (fingerprint {:.6}), {} finite",
            want.mean_energy,
            finite.len()
        );
        assert_eq!(
            (want.samples, want.seed, want.finite),
            (FINGERPRINT_SAMPLES, 0, finite.len()),
            "{stem}: samples, seed and finite count"
        );
        assert!(
            (mean - want.mean_energy).abs() <= 0.01 * want.mean_energy.abs() + 0.01,
            "{stem}: mean energy {mean} against the fingerprint's {}",
            want.mean_energy
        );
    }
}

#[derive(serde::Deserialize)]
struct Fingerprint {
    samples: usize,
    seed: u64,
    mean_energy: f64,
    finite: usize,
}
