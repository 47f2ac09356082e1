//! The reference sampler against published MCMC data, and the metrics' finite-sample floors.
//!
//! Thresholds are the acceptance bars of the core issue: E-W2 ≤ 0.8 (LJ-13) and ≤ 0.3 (DW-4)
//! for 2000 fresh samples against 2000 shared reference samples, whose own half-vs-half floors
//! are ≈ 0.6 / 0.19 at 1000 samples (science.md §6); configurational temperature within 3% of 1.

use std::path::Path;

use boltzmann_studio::io::{Matrix, read_npy};
use boltzmann_studio::metrics::{configurational_temperature, energy_w2, x_w2};
use boltzmann_studio::sampler::mcmc::sample_reference;
use boltzmann_studio::scene::Scene;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

mod common;

fn scene(name: &str) -> (Scene, Matrix) {
    let path = common::repo(&format!("scenes/{name}.ron"));
    let scene = Scene::load(&path).unwrap();
    let reference = read_npy(&scene.reference_path(&path).unwrap()).unwrap();
    (scene, reference)
}

fn random_rows(m: &Matrix, n: usize, seed: u64) -> Matrix {
    m.select(&sample(&mut ChaCha8Rng::seed_from_u64(seed), m.rows, n).into_vec())
}

fn check_reference_sampler(name: &str, max_energy_w2: f64) {
    let (scene, reference) = scene(name);
    let energy = scene.energy();
    let out = sample_reference(
        energy.as_ref(),
        &scene.reference.mcmc,
        2000,
        11,
        &mut |_| {},
    )
    .unwrap();
    let ours = energy.batch_energy(&out.samples.data);
    let theirs = energy.batch_energy(&random_rows(&reference, 2000, 12).data);
    let w2 = energy_w2(&ours, &theirs).unwrap();
    let t = configurational_temperature(energy.as_ref(), &out.samples);
    println!("{name}: E-W2 {w2:.3}, T_conf {t:.4}");
    assert!(
        w2 <= max_energy_w2,
        "{name}: E-W2 {w2:.3} > {max_energy_w2}"
    );
    assert!(
        (0.97..=1.03).contains(&t),
        "{name}: configurational temperature {t:.4}"
    );
}

#[test]
fn lj13_reference_sampler_matches_published_samples() {
    check_reference_sampler("lj13", 0.8);
}

#[test]
fn dw4_reference_sampler_matches_published_samples() {
    check_reference_sampler("dw4", 0.3);
}

/// Two disjoint random halves of the published data (1000 each) sit at the finite-sample
/// floors of science.md §6 (LJ-13 E-W2 ≈ 0.6, x-W2 ≈ 3.6; DW-4 ≈ 0.19, ≈ 1.8). E-W2 of one
/// random split scatters widely (DW-4 over five seeds: 0.09–0.20, its tail is heavy), so the
/// band is 0.4–1.6× the floor; x-W2 is steadier (±20%).
#[test]
fn half_vs_half_reference_sits_at_the_published_floors() {
    for (name, e_floor, x_floor) in [("lj13", 0.6, 3.6), ("dw4", 0.19, 1.8)] {
        let (scene, reference) = scene(name);
        let layout = scene.energy().layout();
        let idx = sample(&mut ChaCha8Rng::seed_from_u64(3), reference.rows, 2000).into_vec();
        let (a, b) = (
            reference.select(&idx[..1000]),
            reference.select(&idx[1000..]),
        );
        let energy = scene.energy();
        let ew2 = energy_w2(&energy.batch_energy(&a.data), &energy.batch_energy(&b.data)).unwrap();
        let xw2 = x_w2(&a, &b, layout).unwrap();
        println!("{name}: half vs half E-W2 {ew2:.3}, x-W2 {xw2:.3}");
        assert!(
            (0.4 * e_floor..=1.6 * e_floor).contains(&ew2),
            "{name}: E-W2 floor {ew2:.3} vs ≈{e_floor}"
        );
        assert!(
            (xw2 - x_floor).abs() <= 0.2 * x_floor,
            "{name}: x-W2 floor {xw2:.3} vs ≈{x_floor}"
        );
    }
}

/// LJ-55 has no public reference: two independent runs must agree with each other and both sit
/// at T = 1. About two minutes of two cores each, so it runs on demand:
/// `cargo test --release --test reference_quality -- --ignored`.
#[test]
#[ignore]
fn lj55_reference_runs_agree_across_seeds() {
    let path = common::repo("scenes/lj55.ron");
    let scene = Scene::load(&path).unwrap();
    let energy = scene.energy();
    let runs: Vec<Matrix> = [21, 22]
        .iter()
        .map(|&seed| {
            sample_reference(
                energy.as_ref(),
                &scene.reference.mcmc,
                2000,
                seed,
                &mut |_| {},
            )
            .unwrap()
            .samples
        })
        .collect();
    for r in &runs {
        let t = configurational_temperature(energy.as_ref(), r);
        assert!(
            (0.97..=1.03).contains(&t),
            "configurational temperature {t:.4}"
        );
    }
    let w2 = energy_w2(
        &energy.batch_energy(&runs[0].data),
        &energy.batch_energy(&runs[1].data),
    )
    .unwrap();
    println!("LJ-55 seed vs seed E-W2 {w2:.3}");
    assert!(w2 <= 2.0, "E-W2 between seeds {w2:.3}");
    assert!(Path::new(&path).exists());
}
