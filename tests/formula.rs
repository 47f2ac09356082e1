//! Energies typed as formulas, end to end through the command line: scene errors that name the
//! field and column, `energy --grad` for every kind of system, exact references by quadrature and
//! their cache, the warning for a formula that is not normalisable on its bounds, and (ignored,
//! run by .ci/formula-acceptance) two minutes of Adjoint Sampling on two unequal wells.

mod common;

use std::path::{Path, PathBuf};

use boltzmann_studio::io::{Matrix, read_npy};
use boltzmann_studio::scene::{Scene, System};
use common::*;

fn scene_file(dir: &Path, name: &str, system: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "Scene(\n    name: \"own\",\n    system: {system},\n    network: (kind: Mlp, layers: 2, hidden: 16, output: Control),\n    sampler: (sde_steps: 20, batch_size: 64, new_samples: 64, buffer_size: 256, train_steps: 5, sigma_max: 2.0),\n    schedule: (eval_every: 2, eval_samples: 200),\n)\n"
        ),
    )
    .unwrap();
    p
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bs-formula-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bad_formulas_are_one_line_errors_naming_file_line_field_and_column() {
    let d = tmp("errors");
    let cases: &[(&str, &str)] = &[
        (
            r#"Formula((energy: "2*(x^2-1)*", variables: ["x", "y"]))"#,
            "own.ron:3:22: system.energy: column 11: expected an operand after '*'",
        ),
        (
            r#"Formula((energy: "x + z", variables: ["x", "y"]))"#,
            "system.energy: column 5: unknown name 'z': the variables are x, y",
        ),
        (
            r#"Formula((energy: "cosh(x)", variables: ["x"]))"#,
            "unknown name 'cosh'",
        ),
        (
            r#"Formula((energy: "x", variables: ["x", "x"]))"#,
            "system.variables: the variable 'x' is named twice",
        ),
        (
            r#"Formula((energy: "x^2", variables: ["x"], bounds: [(1.0, -1.0)]))"#,
            "system.bounds: [0] must be a finite range",
        ),
        (
            r#"Formula((energy: "x^2", variables: ["x"], bounds: [(-1.0, 1.0), (0.0, 1.0)]))"#,
            "system.bounds: gives 2 ranges for 1 variables",
        ),
        (
            r#"Formula((energy: "x^2", variables: ["x"], temperature: -1.0))"#,
            "system.temperature: must be between 0.001 and 1e6",
        ),
    ];
    for (system, expected) in cases {
        let p = scene_file(&d, "own.ron", system);
        let o = run(&["info", p.to_str().unwrap()]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{system} was accepted");
        assert!(err.contains(expected), "{system}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Too long, too deep: refused with the limit named.
    for (energy, expected) in [
        (format!("x{}", " + x".repeat(1100)), "at most 4096"),
        (format!("{}x{}", "(".repeat(70), ")".repeat(70)), "nested more than 64 deep"),
    ] {
        let p = scene_file(&d, "own.ron", &format!(r#"Formula((energy: "{energy}", variables: ["x"]))"#));
        let err = stderr(&run(&["info", p.to_str().unwrap()]));
        assert!(err.contains(expected), "{}", excerpt(&err));
    }
}

/// The gradient written by `energy --grad` against central differences of the energies it writes
/// (h = 1e-4 on f32 inputs, differenced over the step the f32 values actually take, so input
/// rounding does not enter; truncation O(h^2 E''') is about 1e-5 for LJ's steep walls, f64
/// rounding of E about 1e-16 x 40 / 1e-4: 2e-3 relative to max(|g|, 1) is slack for both).
#[test]
fn energy_writes_gradients_for_every_kind_of_system() {
    let d = tmp("grad");
    let formula = scene_file(
        &d,
        "f.ron",
        r#"Formula((energy: "exp(-a^2)*sin(b) + log(2 + c^2) + a*b*c", variables: ["a", "b", "c"], temperature: 2.0))"#,
    );
    for scene in [
        formula,
        repo("scenes/double_well_2d.ron"),
        repo("scenes/mueller_brown.ron"),
        repo("scenes/dw4.ron"),
        repo("scenes/lj13.ron"),
        repo("scenes/butane.ron"),
    ] {
        let energy = Scene::load(&scene).unwrap().energy();
        let dim = energy.dim();
        // A typical configuration: the first reference row, or a fixed point for the formula.
        let base: Vec<f32> = match Scene::load(&scene).unwrap().reference_path(&scene) {
            Some(p) => read_npy(&p).unwrap().data[..dim].to_vec(),
            None => vec![0.3, -0.7, 1.1],
        };
        let h = 1e-4f32;
        let mut rows = base.clone();
        for k in 0..dim {
            for s in [h, -h] {
                let mut r = base.clone();
                r[k] += s;
                rows.extend(r);
            }
        }
        let (e, g) = energies_of(&scene, &Matrix::new(1 + 2 * dim, dim, rows), &d, true);
        assert_eq!(g.len(), (1 + 2 * dim) * dim, "{}", scene.display());
        for k in 0..dim {
            // The inputs were rounded to f32: difference over the step actually taken.
            let step = (base[k] + h) as f64 - (base[k] - h) as f64;
            let fd = (e[1 + 2 * k] - e[2 + 2 * k]) / step;
            assert!(
                (g[k] - fd).abs() <= 2e-3 * g[k].abs().max(1.0),
                "{} ∂{k}: {} against {fd}",
                scene.display(),
                g[k]
            );
        }
    }
}


/// A two-variable formula gets an exact reference by quadrature: `reference` without --out
/// caches it beside the scene, and `train` and `eval` then judge against it.
#[test]
fn formulas_get_exact_references_that_are_cached_beside_the_scene() {
    let d = tmp("reference");
    let p = scene_file(
        &d,
        "wells.ron",
        r#"Formula((energy: "2.5*(x^2-1)^2 + 0.6*x + 0.4*x*y + y^2", variables: ["x", "y"], bounds: [(-2.5, 2.5), (-3.0, 3.0)]))"#,
    );
    let o = run(&["reference", p.to_str().unwrap(), "--n", "4000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scene = Scene::load(&p).unwrap();
    let cached = scene.reference_path(&p).expect("the cache is found");
    assert!(cached.starts_with(&d), "{}", cached.display());
    let x = read_npy(&cached).unwrap();
    assert_eq!((x.rows, x.cols), (4000, 2));
    // The left well's weight from the draws against the grid's own quadrature: the draws' binomial
    // standard error is sqrt(p(1−p)/4000) ≈ 0.0075; 4 of them.
    let System::Formula(f) = &scene.system else { unreachable!() };
    let grid = f.build().unwrap().grid().unwrap();
    let exact = grid.probability(|p| p[0] < 0.0);
    let left = x.data.chunks(2).filter(|r| r[0] < 0.0).count() as f64 / 4000.0;
    assert!((left - exact).abs() < 0.03, "{left} against {exact}");
    assert!(exact > 0.7 && exact < 0.95, "two unequal wells: {exact}");
    // An edited formula does not meet the old cache.
    let edited = scene_file(
        &d,
        "wells.ron",
        r#"Formula((energy: "3*(x^2-1)^2 + 0.6*x + 0.4*x*y + y^2", variables: ["x", "y"], bounds: [(-2.5, 2.5), (-3.0, 3.0)]))"#,
    );
    assert_eq!(Scene::load(&edited).unwrap().reference_path(&edited), None);
}

/// A formula that keeps falling toward the edge of its box is warned about before training; one
/// that is not finite somewhere says its samples there are dropped. Neither stops the run.
#[test]
fn formulas_that_are_not_normalisable_are_warned_about_before_training() {
    let d = tmp("warn");
    for (system, expected) in [
        (
            r#"Formula((energy: "-x^2 + y^2", variables: ["x", "y"]))"#,
            "still falling outward",
        ),
        (
            r#"Formula((energy: "log(x) + y^2", variables: ["x", "y"]))"#,
            "samples there are dropped",
        ),
    ] {
        let p = scene_file(&d, "w.ron", system);
        let out = d.join("run");
        let _ = std::fs::remove_dir_all(&out);
        let o = run(&[
            "train",
            p.to_str().unwrap(),
            "--steps",
            "5",
            "--out",
            out.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert!(err.contains("warning:") && err.contains(expected), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        if expected.contains("dropped") {
            let out = stdout(&o);
            assert!(out.contains("samples dropped (their energy"), "the count is reported: {out}");
        }
    }
}

/// The acceptance figure (about 3 minutes; `.ci/formula-acceptance` runs it): 2 minutes of
/// Adjoint Sampling on two unequal wells typed as a formula, then 10 000 samples, raw and
/// resampled by their importance weights (`sample --resample`). Gates: the raw samples' energy
/// W2 against 2000 exact draws at most 0.15 kT (finite-sample floor, exact against exact: about
/// 0.06), and the resampled samples' left-well fraction within 0.03 of the quadrature's
/// (binomial standard error of 10 000 draws: 0.004). The raw fraction is printed, not gated:
/// over three 2-minute runs it read 0.730 to 0.777 against 0.745 (the wells' weights still swing
/// with training time; see the README).
#[test]
#[ignore]
fn two_minutes_of_adjoint_sampling_find_both_wells_with_their_weights() {
    let d = tmp("acceptance");
    let scene = repo("tests/fixtures/formula/two_wells.ron");
    let run_dir = d.join("run");
    let o = run(&["train", scene.to_str().unwrap(), "--minutes", "2", "--out", run_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = Scene::load(&scene).unwrap();
    let System::Formula(f) = &s.system else { unreachable!() };
    let exact = f.build().unwrap().grid().unwrap().probability(|p| p[0] < 0.0);
    let mut figures = Vec::new();
    for (name, extra) in [("raw", None), ("resampled", Some("--resample"))] {
        let samples = d.join(format!("{name}.npy"));
        let mut args = vec!["sample", run_dir.to_str().unwrap(), "--n", "10000", "--seed", "0", "--out", samples.to_str().unwrap()];
        args.extend(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let x = read_npy(&samples).unwrap();
        let left = x.data.chunks(2).filter(|r| r[0] < 0.0).count() as f64 / x.rows as f64;
        let o = run(&["eval", scene.to_str().unwrap(), "--samples", samples.to_str().unwrap(), "--n", "2000", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let json: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
        let e_w2 = json["energy_w2"].as_f64().unwrap();
        println!("{name}: left-well fraction {left:.4} (exact {exact:.4}), E-W2 {e_w2:.4}");
        figures.push((left, e_w2));
    }
    assert!(figures[0].1 <= 0.15, "raw E-W2 {}", figures[0].1);
    assert!((figures[1].0 - exact).abs() <= 0.03, "resampled left {} against exact {exact}", figures[1].0);
}

/// A session keeps the formula the app was running (an edited one too), and reopens on it.
#[test]
fn sessions_keep_the_formula() {
    use boltzmann_studio::session::Session;
    let path = repo("scenes/triple_well.ron");
    let mut scene = Scene::load(&path).unwrap();
    let System::Formula(f) = &mut scene.system else { unreachable!() };
    f.energy = f.energy.replace("- 3*exp(-x^2 - (y-5/3)^2)", "- 4*exp(-x^2 - (y-5/3)^2)");
    f.temperature = 0.8;
    let d = tmp("session");
    let file = d.join("s.ron");
    Session::new(&scene, &path).save(&file).unwrap();
    let back = Session::load(&file).unwrap();
    assert_eq!(back.scene.system, scene.system);
    let System::Formula(g) = &back.scene.system else { unreachable!() };
    assert!(g.energy.contains("4*exp(-x^2 - (y-5/3)^2)") && g.temperature == 0.8);
}

/// `info` states the formula with its temperature and box, and a molecule's torsions and basins.
#[test]
fn info_shows_the_formula_and_a_molecules_own_names() {
    let out = stdout(&run(&["info", "scenes/mexican_hat.ron"]));
    assert!(
        out.contains("E(x, y) = 4*(x^2 + y^2 - 2)^2   at temperature 1, over x in [-2.5, 2.5], y in [-2.5, 2.5]"),
        "{out}"
    );
    let out = stdout(&run(&["info", "tests/fixtures/molecules/own/pentane.ron"]));
    assert!(out.contains("torsions a, b, c; basins none named"), "{out}");
    let out = stdout(&run(&["info", "scenes/alanine_dipeptide.ron"]));
    assert!(out.contains("torsions phi, psi; basins C5, C7eq, αR, αL"), "{out}");
}
