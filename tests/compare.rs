//! `compare`: all four kinds race on DW-4 to a small energy-evaluation budget through the real
//! binary and leave every file; bad input gives one line and no folder.

mod common;

use common::*;

/// A small race: every kind reaches the budget, writes its samples, and every row of the CSV
/// and the summary is well formed. The budget is tiny, so the metrics only need to be finite.
#[test]
fn compare_writes_all_its_files_for_four_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("race");
    let o = run(&[
        "compare",
        "scenes/dw4.ron",
        "--kinds",
        "adjoint,asbs,idem,mcmc",
        "--evals",
        "3000",
        "--samples",
        "300",
        "--per-decade",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "1",
        "--energy-ms",
        "2",
    ]);
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("with an energy evaluation costing 2 ms"),
        "{}",
        stdout(&o)
    );
    for kind in ["adjoint", "asbs", "idem", "mcmc"] {
        let m = boltzmann_studio::io::read_npy(&out.join(format!("{kind}.npy"))).unwrap();
        assert_eq!((m.rows, m.cols), (300, 8), "{kind}.npy");
        assert!(
            m.data.iter().all(|v| v.is_finite()),
            "{kind}.npy has non-finite values"
        );
    }
    let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "kind,point,energy_w2,x_w2,eq_w2,dist_tv,ess,energy_evals,network_passes,wall_seconds,eval_energy_evals,energy_cost_seconds,cost_seconds,further_1000_energy_evals,further_1000_seconds"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // Cost columns at 2 ms per evaluation: the energy's seconds, plus training's; every row has
    // the further-samples cost (timed once per lane), MCMC's with energy evaluations in it.
    let num = |c: &str| c.parse::<f64>().unwrap();
    for r in &rows {
        let (evals, wall, energy_cost, cost) = (num(r[7]), num(r[9]), num(r[11]), num(r[12]));
        assert!(
            (energy_cost - evals * 0.002).abs() <= 0.0015
                && (cost - wall - energy_cost).abs() <= 0.0025,
            "{r:?}"
        );
        let (further_evals, further_cost) = (num(r[13]), num(r[14]));
        if r[0] == "mcmc" {
            assert!(
                further_evals > 1000.0 && further_cost >= further_evals * 0.002 * 0.999,
                "{r:?}"
            );
        } else {
            assert!(further_evals == 0.0 && further_cost > 0.0, "{r:?}");
        }
    }
    for kind in ["adjoint", "asbs", "idem", "mcmc"] {
        let fin = rows
            .iter()
            .find(|r| r[0] == kind && r[1] == "final")
            .unwrap_or_else(|| panic!("no final row of {kind}:\n{csv}"));
        let evals: u64 = fin[7].parse().unwrap();
        assert!(evals >= 3000, "{kind} stopped before the budget: {evals}");
        let ew2: f64 = fin[2].parse().unwrap();
        assert!(ew2.is_finite(), "{kind}: E-W2 {ew2}");
        // eq-W2 is computed on the final samples of a 4-particle system.
        assert!(
            fin[4].parse::<f64>().unwrap().is_finite(),
            "{kind}: eq-W2 missing"
        );
    }
    // The kinds that define importance weights (Adjoint Sampling, ASBS) report an ESS; the others
    // leave the column empty.
    for r in &rows {
        let weighs = r[0].parse::<boltzmann_studio::sampler::SamplerKind>().unwrap().info().weights;
        assert_eq!(!r[6].is_empty(), weighs, "{}: ess '{}'\n{csv}", r[0], r[6]);
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["kinds"].as_array().unwrap().len(), 4);
    assert!(
        summary["best_final_energy_w2"]
            .as_f64()
            .unwrap()
            .is_finite()
    );
    // The amortised cost: a learned sampler draws without the energy, MCMC's chains must move.
    for k in summary["kinds"].as_array().unwrap() {
        let evals = k["energy_evals_per_1000_samples"].as_f64().unwrap();
        match k["kind"].as_str().unwrap() {
            "mcmc" => assert!(evals > 1000.0, "MCMC draws for free? {evals}"),
            _ => assert_eq!(evals, 0.0, "{k}"),
        }
        assert!(k["seconds_per_1000_samples"].as_f64().unwrap() > 0.0);
        let priced = k["seconds_per_1000_samples"].as_f64().unwrap() + evals * 0.002;
        assert!(
            (k["further_1000_cost_seconds"].as_f64().unwrap() - priced).abs()
                < 1e-9 * priced.max(1.0),
            "{k}"
        );
    }
    assert_eq!(summary["energy_ms"].as_f64(), Some(2.0));
    let best_kind = summary["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| !k["first_below_2x_best"].is_null())
        .count();
    assert!(
        best_kind >= 1,
        "the best kind reaches twice its own final E-W2: {summary}"
    );
    let png = image::open(out.join("compare.png"))
        .expect("compare.png is a PNG")
        .to_rgb8();
    assert!(png.width() >= 1000 && png.height() >= 400);
    let colours: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 20,
        "compare.png is nearly blank ({} colours)",
        colours.len()
    );
}

/// Unknown kinds, kinds that cannot handle the system and empty budgets are refused up front,
/// in one line naming the flag, and leave no output folder behind.
#[test]
fn bad_compare_input_is_one_line_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("race");
    let o_ = out.to_str().unwrap();
    for (args, expect) in [
        (
            vec![
                "compare",
                "scenes/dw4.ron",
                "--kinds",
                "adjoint,hmc",
                "--evals",
                "100",
                "--out",
                o_,
            ],
            "--kinds: unknown sampler kind 'hmc'",
        ),
        (
            vec![
                "compare",
                "scenes/gmm40.ron",
                "--kinds",
                "asbs",
                "--evals",
                "100",
                "--out",
                o_,
            ],
            "--kinds",
        ),
        (
            vec![
                "compare",
                "scenes/dw4.ron",
                "--kinds",
                "adjoint",
                "--evals",
                "0",
                "--out",
                o_,
            ],
            "--evals must be at least 1",
        ),
        (
            vec![
                "compare",
                "scenes/dw4.ron",
                "--kinds",
                "adjoint",
                "--minutes",
                "0",
                "--out",
                o_,
            ],
            "--minutes must be a positive number",
        ),
        (
            vec![
                "compare",
                "scenes/dw4.ron",
                "--kinds",
                "adjoint,adjoint",
                "--evals",
                "10",
                "--out",
                o_,
            ],
            "named twice",
        ),
        (
            vec![
                "compare",
                "scenes/dw4.ron",
                "--kinds",
                "adjoint",
                "--evals",
                "10",
                "--energy-ms",
                "-1",
                "--out",
                o_,
            ],
            "--energy-ms",
        ),
    ] {
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: not one line:\n{err}"
        );
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{args:?} left {} behind", out.display());
    }
}

/// A scene whose kind cannot handle its system is an error at the scene's position.
#[test]
fn scene_with_a_kind_that_cannot_handle_its_system_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.ron");
    std::fs::write(
        &p,
        "Scene(\n  system: Gmm40,\n  sampler: (kind: Idem),\n)\n",
    )
    .unwrap();
    let o = run(&[
        "train",
        p.to_str().unwrap(),
        "--out",
        dir.path().join("r").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.ron:3:") && err.contains("sampler.kind"),
        "{err}"
    );
}

/// MCMC takes no gradient steps: `train --steps` on it is refused instead of running forever.
#[test]
fn train_steps_on_mcmc_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[
        "train",
        "scenes/dw4-mcmc.ron",
        "--out",
        dir.path().join("r").to_str().unwrap(),
        "--steps",
        "10",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--steps") && err.contains("--minutes"),
        "{err}"
    );
}

/// One race engine: `compare` and the app's race (its worker) on the same scene, kinds and seed
/// judge each kind at the same budget points on the same samples and rank the kinds alike. The
/// judged samples are drawn with a seed per budget point, so the app's previews do not move them;
/// both run on this machine, so the E-W2 values agree to rounding (tolerance 1e-9 relative:
/// only the order of floating-point sums could differ between the two processes).
#[test]
fn compare_and_the_app_race_rank_alike() {
    use boltzmann_studio::race::{RacePoint, standings};
    use boltzmann_studio::sampler::SamplerKind;
    use boltzmann_studio::worker::{Command, WorkerHandle};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("race");
    let o = run(&[
        "compare",
        "scenes/dw4.ron",
        "--kinds",
        "adjoint,mcmc",
        "--evals",
        "2000",
        "--samples",
        "200",
        "--seed",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    let kinds = ["adjoint", "mcmc"];
    // compare.csv's budget-point rows per kind: (budget, E-W2).
    let cli: Vec<Vec<(u64, f64)>> = kinds
        .iter()
        .map(|k| {
            csv.lines()
                .skip(1)
                .map(|l| l.split(',').collect::<Vec<_>>())
                .filter(|r| r[0] == *k && r[1] != "final")
                .map(|r| (r[1].parse().unwrap(), r[2].parse().unwrap()))
                .collect()
        })
        .collect();
    assert!(
        cli.iter().all(|c| !c.is_empty()),
        "every kind is judged at a budget point:\n{csv}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let cli_ranking: Vec<String> = summary["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();

    let path = repo("scenes/dw4.ron");
    let mut scene = boltzmann_studio::scene::Scene::load(&path).unwrap();
    scene.sampler.seed = 0;
    let w = WorkerHandle::spawn_with(
        Command::Race {
            scene: Box::new(scene),
            path,
            kinds: kinds.iter().map(|k| SamplerKind::named(k)).collect(),
        },
        None,
    );
    w.send(Command::Play);
    // Until each lane has been judged at the last budget point compare judged it at.
    let mut app: Vec<Vec<RacePoint>> = vec![Vec::new(); 2];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while (0..2).any(|l| app[l].last().and_then(|p| p.budget) < cli[l].last().map(|c| c.0)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the app's race did not reach compare's budget points in 10 minutes: {app:?}"
        );
        if let Ok(s) = w
            .snapshots
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            for (l, lane) in s.lanes.into_iter().enumerate() {
                app[l].extend(lane.points);
            }
        }
    }
    w.send(Command::Pause);
    for l in 0..2 {
        let judged: Vec<(u64, f64)> = app[l]
            .iter()
            .filter(|p| p.budget <= cli[l].last().map(|c| c.0))
            .map(|p| (p.budget.unwrap(), p.energy_w2()))
            .collect();
        assert_eq!(
            judged.len(),
            cli[l].len(),
            "{}: the same budget points: app {judged:?}, compare {:?}",
            kinds[l],
            cli[l]
        );
        for ((b, a), (cb, c)) in judged.iter().zip(&cli[l]) {
            assert_eq!(b, cb, "{}: budget points", kinds[l]);
            assert!(
                (a - c).abs() <= 1e-9 * c.abs().max(1.0),
                "{} at {b}: app E-W2 {a}, compare {c}",
                kinds[l]
            );
        }
        app[l].retain(|p| p.budget <= cli[l].last().map(|c| c.0));
    }
    let st = standings(&[&app[0], &app[1]]).expect("both lanes judged");
    let app_ranking: Vec<String> = st.order.iter().map(|&l| kinds[l].to_string()).collect();
    assert_eq!(
        app_ranking, cli_ranking,
        "the app's race table ranks as compare does"
    );
    assert_eq!(
        Some(st.budget),
        summary["ranked_at_energy_evals"].as_u64(),
        "ranked at the same budget point"
    );
}
