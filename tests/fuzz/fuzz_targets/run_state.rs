#![no_main]
//! Run folders: one file of a saved checkpoint (state.json, state.safetensors, the weights or
//! ASBS's corrector) replaced by the input, the others valid, then loaded by a sampler of that
//! kind. The first byte picks the kind (Adjoint Sampling, ASBS, iDEM, MCMC) and the file.
use std::path::PathBuf;
use std::sync::OnceLock;

use boltzmann_studio::sampler::SamplerKind;
use boltzmann_studio::scene::Scene;
use libfuzzer_sys::fuzz_target;

/// ASBS alone has a corrector; the other kinds' loaders never open that file.
const FILES: [&str; 4] = ["state.json", "state.safetensors", "checkpoint.safetensors", "corrector.safetensors"];

/// A tiny DW-4 scene per kind and a valid checkpoint of each, saved once.
struct Fixture {
    _dir: tempfile::TempDir,
    runs: Vec<(Scene, PathBuf)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // Every registered kind (the scene's `mcmc` section is ignored by the others).
        let runs = SamplerKind::all()
            .map(|kind| {
                let text = format!(
                    "Scene(system: DoubleWell4, sampler: (kind: {kind:?}, sde_steps: 5, batch_size: 8, new_samples: 8, buffer_size: 16, train_steps: 1, mcmc: (chains: 2, replicas: 1)), network: (kind: Egnn, layers: 1, hidden: 4, output: Control))"
                );
                let scene = Scene::parse(&text, std::path::Path::new("fuzz.ron")).unwrap();
                let run = dir.path().join(format!("{kind:?}"));
                std::fs::create_dir_all(&run).unwrap();
                scene.build_sampler().unwrap().save(&run).unwrap();
                (scene, run)
            })
            .collect();
        Fixture { _dir: dir, runs }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else { return };
    let (scene, valid) = &fixture().runs[pick as usize % fixture().runs.len()];
    let file = FILES[(pick as usize / fixture().runs.len()) % FILES.len()];
    let dir = tempfile::tempdir().unwrap();
    // Every file of the valid checkpoint, so that a loader gets past the files it reads first.
    for entry in std::fs::read_dir(valid).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(&from, dir.path().join(from.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join(file), content).unwrap();
    if let Ok(mut s) = scene.build_sampler() {
        let _ = s.load(dir.path());
    }
});
