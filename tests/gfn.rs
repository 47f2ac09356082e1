//! The GFlowNet kind end to end, and log Z estimates: runs that resume exactly, the kinds' log Z
//! estimators against exact values, and the `logz` command.

mod common;

use std::path::Path;

use boltzmann_studio::energy::{Energy as _, Gaussian};
use boltzmann_studio::nn::{NetworkConfig, NetworkKind};
use boltzmann_studio::sampler::gfn::{GfnConfig, GfnLoss};
use boltzmann_studio::sampler::{SampleOptions, Sampler, SamplerConfig, SamplerKind, build};
use boltzmann_studio::scene::Scene;

fn target() -> Gaussian {
    Gaussian { mean: vec![1.0, -0.5], std: 0.5 }
}

/// log Z of N(μ, s²) in 2-D: log(2π s²).
fn exact_log_z() -> f64 {
    (2.0 * std::f64::consts::PI * 0.25f64).ln()
}

fn config(kind: &str, scale: f64, gfn: GfnConfig) -> (SamplerConfig, NetworkConfig) {
    let cfg = SamplerConfig {
        kind: SamplerKind::named(kind),
        sigma_min: 1e-2,
        sigma_max: 2.0,
        sde_steps: 50,
        batch_size: 64,
        new_samples: 64,
        buffer_size: 1024,
        train_steps: 5,
        learning_rate: 1e-3,
        scale,
        seed: 3,
        ..SamplerConfig::default()
    }
    .with_section(gfn);
    let net = NetworkConfig { kind: NetworkKind::Mlp, layers: 2, hidden: 32, ..Default::default() };
    (cfg, net)
}

fn sampler(kind: &str, scale: f64, gfn: GfnConfig) -> Box<dyn Sampler> {
    let (cfg, net) = config(kind, scale, gfn);
    build(Box::new(target()), &cfg, &net).unwrap()
}

fn with_ls() -> GfnConfig {
    GfnConfig { local_search: true, ls_every: 4, ls_steps: 20, ls_burn_in: 10, langevin: true, ..GfnConfig::default() }
}

/// E[exp ℓ] = Z holds for any policy, so the importance-weighted estimate of a barely trained
/// sampler lies within 4 standard errors of the exact log Z, in the system's coordinates
/// whatever the sampler's own scale (the offset d·log scale is part of the estimator): for
/// Adjoint Sampling and for the GFlowNet kind, TB and VarGrad, with and without the Langevin
/// parametrisation. 20 000 paths; the test also requires a standard error below 0.1, so that
/// it can fail.
#[test]
fn log_z_estimates_are_unbiased_for_every_kind_with_a_path_measure() {
    let exact = exact_log_z();
    let cases: Vec<(&str, f64, GfnConfig)> = vec![
        ("adjoint", 1.0, GfnConfig::default()),
        ("adjoint", 2.0, GfnConfig::default()),
        ("gfn", 1.0, GfnConfig::default()),
        ("gfn", 2.0, GfnConfig { loss: GfnLoss::VarGrad, ..GfnConfig::default() }),
        ("gfn", 1.0, with_ls()),
    ];
    for (kind, scale, gfn) in cases {
        let mut s = sampler(kind, scale, gfn.clone());
        for _ in 0..6 {
            s.advance().unwrap();
        }
        let z = boltzmann_studio::logz::estimate(s.as_mut(), 20_000, 11, Some(exact)).unwrap();
        assert!(z.stderr < 0.1, "{kind} scale {scale}: s.e. {}", z.stderr);
        assert!(
            (z.log_z_rw - exact).abs() < 4.0 * z.stderr,
            "{kind} scale {scale} {gfn:?}: {} ± {} against {exact}",
            z.log_z_rw,
            z.stderr
        );
        assert!(z.log_z_elbo < exact + 4.0 * z.stderr, "{kind}: ELBO {} above log Z", z.log_z_elbo);
        assert_eq!(z.energy_evals as usize, 20_000 * if gfn.langevin { 51 } else { 1 }, "{kind}");
    }
}

/// MCMC has no path measure: a clear error naming the kinds that do.
#[test]
fn log_z_of_a_kind_without_path_measure_is_refused() {
    let (mut cfg, net) = config("mcmc", 1.0, GfnConfig::default());
    cfg.kind = SamplerKind::named("mcmc");
    let mut s = build(Box::new(target()), &cfg, &net).unwrap();
    let e = boltzmann_studio::logz::estimate(s.as_mut(), 10, 0, None).unwrap_err().to_string();
    assert!(e.contains("no path measure") && e.contains("gfn"), "{e}");
}

/// A GFlowNet run saved after k iterations and resumed gives, after m more, exactly the run of
/// k + m iterations: weights, log Z, both buffers, the MALA step and the generator are saved.
#[test]
fn gfn_runs_are_reproducible_and_resume_exactly() {
    let gfn = with_ls();
    let mut whole = sampler("gfn", 1.0, gfn.clone());
    for _ in 0..12 {
        whole.advance().unwrap();
    }
    let mut first = sampler("gfn", 1.0, gfn.clone());
    for _ in 0..7 {
        first.advance().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    first.save(dir.path()).unwrap();
    let mut resumed = sampler("gfn", 1.0, gfn);
    resumed.load(dir.path()).unwrap();
    for _ in 0..5 {
        resumed.advance().unwrap();
    }
    let opts = SampleOptions { weights: true, seed: Some(5), fill: true, ..SampleOptions::default() };
    let a = whole.sample(200, opts).unwrap();
    let b = resumed.sample(200, opts).unwrap();
    assert_eq!(a.x, b.x);
    assert_eq!(a.log_weights, b.log_weights);
    let counters = |s: &dyn Sampler| boltzmann_studio::sampler::Counters { wall_seconds: 0.0, ..s.counters().clone() };
    assert_eq!(counters(whole.as_ref()), counters(resumed.as_ref()));
    assert_eq!(whole.log_z_learned(), resumed.log_z_learned());
    assert!(whole.off_policy_points().is_some_and(|p| !p.is_empty()), "local search ran");
    assert_eq!(whole.off_policy_points(), resumed.off_policy_points());
}

/// Costs are counted as samplers.md §1 says: a forward iteration spends one energy evaluation
/// per path (plus one force per step with the Langevin parametrisation); a local-search round
/// spends one per chain per MALA step (plus the starts).
#[test]
fn gfn_counts_its_energy_evaluations() {
    let mut plain = sampler("gfn", 1.0, GfnConfig::default());
    plain.advance().unwrap();
    assert_eq!(plain.counters().energy_evals, 64);
    assert_eq!(plain.counters().gradient_steps, 1);
    assert_eq!(plain.counters().network_forward, 64 * 50, "the step reuses the simulation's pass");
    let gfn = GfnConfig { langevin: false, ..with_ls() };
    let mut ls = sampler("gfn", 1.0, gfn);
    ls.advance().unwrap(); // forward: 64
    ls.advance().unwrap(); // backward, with a local-search round first: 64 chains × 21
    assert_eq!(ls.counters().energy_evals, 64 + 64 * 21);
}

/// Training moves the GFlowNet toward its target: on the Gaussian, 300 iterations bring the
/// mean of 2000 samples within 0.15 of μ = (1, −0.5) (from the untrained walk's mean 0, 0).
/// The learned log Z rises toward the exact one as the sampler improves, and stays below it:
/// TB's log Z settles at the batch mean of ℓ, an ELBO.
#[test]
fn gfn_learns_a_gaussian_and_its_log_z() {
    let mut s = sampler("gfn", 1.0, GfnConfig { exploration: 0.0, ..GfnConfig::default() });
    let mut early = f64::NAN;
    for k in 0..300 {
        s.advance().unwrap();
        if k == 49 {
            early = s.log_z_learned().unwrap();
        }
    }
    let x = s.sample(2000, SampleOptions { seed: Some(1), fill: true, ..SampleOptions::default() }).unwrap().x;
    let mean = |j: usize| x.iter().skip(j).step_by(2).map(|&v| v as f64).sum::<f64>() / 2000.0;
    assert!((mean(0) - 1.0).abs() < 0.15 && (mean(1) + 0.5).abs() < 0.15, "mean ({}, {})", mean(0), mean(1));
    let learned = s.log_z_learned().unwrap();
    eprintln!("learned log Z after 50 iterations {early}, after 300 {learned}, exact {}", exact_log_z());
    assert!(learned > early + 0.2, "log Z did not rise: {early} → {learned}");
    assert!(learned < exact_log_z() + 0.1, "learned log Z {learned} above the exact one");
}

/// The `logz` command on a trained run: its JSON has the keys the issue names, and the exact
/// value for a plane landscape.
#[test]
fn logz_command_prints_estimates_and_the_exact_value() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = common::run(&[
        "train",
        common::repo("scenes/double_well_2d-gfn.ron").to_str().unwrap(),
        "--steps",
        "20",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = common::run(&["logz", run.to_str().unwrap(), "--n", "2000", "--json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&common::stdout(&out)).unwrap();
    for key in ["log_z_elbo", "log_z_rw", "stderr", "n", "energy_evals", "log_z_exact"] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    assert_eq!(v["n"], 2000);
    let exact = v["log_z_exact"].as_f64().unwrap();
    let energy = Scene::load(Path::new(&common::repo("scenes/double_well_2d.ron"))).unwrap().energy();
    // The same quadrature as the `reference` command prints.
    let (bx, by) = energy.plane_box().unwrap();
    let grid = boltzmann_studio::energy::QuadratureGrid::new(&[bx, by], &|p: &[f64]| energy.energy(p));
    assert!((exact - grid.log_z()).abs() < 1e-12);
    // A kind without a path measure: one line naming it.
    let mc = dir.path().join("mc");
    let out = common::run(&["train", common::repo("scenes/double_well_2d-mcmc.ron").to_str().unwrap(), "--minutes", "0.01", "--out", mc.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = common::run(&["logz", mc.to_str().unwrap(), "--n", "10"]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("no path measure"), "{}", common::stderr(&out));
}
