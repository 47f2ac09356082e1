//! The command line as a user runs it: the real binary, real files, exit codes and messages.

mod common;

use common::*;

/// Without a subcommand the binary opens the app (covered by tests/window.rs); --help lists
/// every subcommand.
#[test]
fn help_lists_every_subcommand() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for cmd in [
        "app",
        "train",
        "sample",
        "energy",
        "reference",
        "eval",
        "info",
    ] {
        assert!(out.contains(cmd), "help lacks {cmd}:\n{out}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for cmd in ["app", "energy", "reference", "eval"] {
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help failed");
        assert!(stdout(&o).contains("Usage:"));
    }
}

/// The shared reference data, with the energies of science.md §4, reproduces the published
/// statistics to the two decimals that are published.
#[test]
fn energy_of_reference_data_matches_published_statistics() {
    let o = run(&[
        "energy",
        "scenes/lj13.ron",
        "--input",
        "assets/reference/lj13.npy",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(field(&out, "count"), 10000.0);
    assert_eq!(format!("{:.2}", field(&out, "mean")), "-43.00");
    assert_eq!(format!("{:.2}", field(&out, "std")), "7.10");
    // The ordered-pair convention puts the data at T = 1 (≈ 0.5 without it); ±0.03 covers the
    // sampling error of 10 000 correlated MCMC samples.
    assert!((field(&out, "T_conf") - 1.0).abs() < 0.03, "{out}");

    let o = run(&[
        "energy",
        "scenes/dw4.ron",
        "--input",
        "assets/reference/dw4.npy",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(format!("{:.2}", field(&out, "mean")), "-22.47");
    assert_eq!(format!("{:.2}", field(&out, "std")), "1.90");
}

#[test]
fn energy_out_writes_a_vector() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e.npy");
    let o = run(&[
        "energy",
        "scenes/dw4.ron",
        "--input",
        "assets/reference/dw4.npy",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = boltzmann_studio::io::read_npy(&out).unwrap();
    assert_eq!((m.rows, m.cols), (1, 10000));
}

#[test]
fn reference_writes_samples_and_eval_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.npy");
    let o = run(&[
        "reference",
        "scenes/dw4.ron",
        "--n",
        "100",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("wrote 100 samples"));
    let m = boltzmann_studio::io::read_npy(&out).unwrap();
    assert_eq!((m.rows, m.cols), (100, 8));

    let o = run(&[
        "eval",
        "scenes/dw4.ron",
        "--samples",
        out.to_str().unwrap(),
        "--n",
        "100",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["dist_tv", "energy_w2", "eq_w2", "x_w2"]);
    assert!(obj.values().all(|x| x.as_f64().is_some_and(f64::is_finite)));
}

/// Every malformed input exits non-zero with one line on stderr naming the problem, no panic.
#[test]
fn malformed_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    let good = std::fs::read(repo("assets/reference/dw4.npy")).unwrap();
    std::fs::write(p("trunc.npy"), &good[..good.len() / 2]).unwrap();
    std::fs::write(p("text.ron"), "this is not a scene\n").unwrap();
    std::fs::write(
        p("unknown.ron"),
        "Scene(\n  system: DoubleWell4,\n  sampler: (batch_sise: 5),\n)\n",
    )
    .unwrap();
    std::fs::write(p("badvalue.ron"), "(\n  sampler: (sde_steps: 0),\n)\n").unwrap();
    let mut nan = boltzmann_studio::io::read_npy(&repo("assets/reference/dw4.npy"))
        .unwrap()
        .head(10);
    nan.data[13] = f32::NAN;
    boltzmann_studio::io::write_npy(&std::path::PathBuf::from(p("nan.npy")), &nan).unwrap();
    std::fs::write(p("notnpy.npy"), "hello").unwrap();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "energy".into(),
                "scenes/dw4.ron".into(),
                "--input".into(),
                p("trunc.npy"),
            ],
            "truncated",
        ),
        (
            vec![
                "energy".into(),
                "scenes/lj13.ron".into(),
                "--input".into(),
                "assets/reference/dw4.npy".into(),
            ],
            "coordinates",
        ),
        (
            vec![
                "energy".into(),
                p("text.ron"),
                "--input".into(),
                "assets/reference/dw4.npy".into(),
            ],
            "text.ron:1:",
        ),
        (
            vec![
                "energy".into(),
                p("unknown.ron"),
                "--input".into(),
                "assets/reference/dw4.npy".into(),
            ],
            "unknown.ron:3:",
        ),
        (
            vec![
                "energy".into(),
                p("badvalue.ron"),
                "--input".into(),
                "assets/reference/dw4.npy".into(),
            ],
            "badvalue.ron:2:13: sampler.sde_steps",
        ),
        (
            vec![
                "reference".into(),
                "scenes/dw4.ron".into(),
                "--n".into(),
                "-5".into(),
                "--out".into(),
                p("x.npy"),
            ],
            "at least 1",
        ),
        (
            vec![
                "reference".into(),
                "scenes/dw4.ron".into(),
                "--n".into(),
                "0".into(),
                "--out".into(),
                p("x.npy"),
            ],
            "at least 1",
        ),
        (
            vec![
                "energy".into(),
                "scenes/dw4.ron".into(),
                "--input".into(),
                p("nan.npy"),
            ],
            "NaN",
        ),
        (
            vec![
                "energy".into(),
                "scenes/dw4.ron".into(),
                "--input".into(),
                p("notnpy.npy"),
            ],
            "not a valid .npy",
        ),
        (
            vec![
                "energy".into(),
                "scenes/missing.ron".into(),
                "--input".into(),
                p("nan.npy"),
            ],
            "missing.ron",
        ),
        (
            vec![
                "eval".into(),
                "scenes/dw4.ron".into(),
                "--samples".into(),
                p("missing.npy"),
            ],
            "missing.npy",
        ),
        (vec!["frobnicate".into()], "frobnicate"),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let o = run(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?} printed more than one line:\n{err}"
        );
        assert!(
            err.starts_with("boltzmann-studio: error:"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(needle),
            "{args:?}: expected '{needle}' in: {err}"
        );
    }
}

/// `info` describes a scene from the registry and the rows: the kind's own hyperparameters with
/// their values and whether they apply live, and the metrics of the system's family.
#[test]
fn info_describes_the_scene_kind_rows_and_metrics() {
    let o = run(&["info", "scenes/dw4-idem.ron"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "DW-4",
        "iDEM",
        "particles: 4 in 2-D",
        "mc_samples",
        "learning_rate",
        "energy_w2",
        "eq_w2",
        "dist_tv",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    let row = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no row {key}:\n{text}"))
            .to_string()
    };
    assert!(
        row("buffer_size").contains("live"),
        "{}",
        row("buffer_size")
    );
    assert!(row("sigma_max").contains("reset"), "{}", row("sigma_max"));
    // A molecule reports its torsion metrics; MCMC has no learning rate.
    let o = run(&["info", "scenes/butane-mcmc.ron"]);
    let text = stdout(&o);
    assert!(
        text.contains("torsions") && text.contains("chains") && !text.contains("learning_rate"),
        "{text}"
    );
}
