//! Molecules through the command line: scenes that name a topology, a structure and torsions;
//! the exact grid reference; energies in kT and kcal/mol; structure exports; and bad input that
//! must fail in one line naming the file and position.

mod common;

use std::path::Path;

use common::*;

const PRMTOP: &str = include_str!("../assets/molecules/alanine-dipeptide.prmtop");
const PDB: &str = include_str!("../assets/molecules/alanine-dipeptide.pdb");

/// A scene in `dir` over the files `top.prmtop` and `s.pdb` there, with these torsions.
fn write_scene(dir: &Path, torsions: &str) -> std::path::PathBuf {
    let scene = format!(
        "Scene(\n  name: \"test\",\n  system: Molecule((\n    topology: \"top.prmtop\",\n    structure: \"s.pdb\",\n    torsions: [\n{torsions}\n    ],\n  )),\n  sampler: (kind: Mcmc),\n)\n"
    );
    let p = dir.join("m.ron");
    std::fs::write(&p, scene).unwrap();
    p
}

const PHI_PSI: &str =
    "      (name: \"phi\", atoms: (4, 6, 8, 14)),\n      (name: \"psi\", atoms: (6, 8, 14, 16)),";

fn energy_error(dir: &Path, scene: &Path) -> String {
    let x = dir.join("x.npy");
    let o = run(&[
        "energy",
        scene.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "a bad molecule was accepted");
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn bad_molecules_fail_in_one_line_with_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("s.pdb"), PDB).unwrap();

    // A truncated prmtop: the scene's field, and the file's own line and flag.
    std::fs::write(
        d.join("top.prmtop"),
        &PRMTOP[..PRMTOP.find("%FLAG DIHEDRAL_FORCE_CONSTANT").unwrap() + 200],
    )
    .unwrap();
    let scene = write_scene(d, PHI_PSI);
    let e = energy_error(d, &scene);
    assert!(
        e.contains("m.ron:4:5: system.topology:") && e.contains("top.prmtop: line "),
        "{e}"
    );
    assert!(
        e.contains("%FLAG DIHEDRAL_FORCE_CONSTANT") || e.contains("missing %FLAG"),
        "{e}"
    );

    // A malformed number.
    std::fs::write(
        d.join("top.prmtop"),
        PRMTOP.replacen("1.00800000E+00", "1.0080000QE+00", 1),
    )
    .unwrap();
    let e = energy_error(d, &scene);
    assert!(
        e.contains("top.prmtop: line 24: %FLAG MASS: cannot read '1.0080000QE+00'"),
        "{e}"
    );

    // A PDB with an atom fewer than the topology.
    std::fs::write(d.join("top.prmtop"), PRMTOP).unwrap();
    let short: String = PDB
        .lines()
        .filter(|l| !l.contains("3HH3 NME"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(d.join("s.pdb"), short).unwrap();
    let e = energy_error(d, &scene);
    assert!(
        e.contains("m.ron:5:5: system.structure:")
            && e.contains("has 21 atoms")
            && e.contains("has 22"),
        "{e}"
    );
    std::fs::write(d.join("s.pdb"), PDB).unwrap();

    // A torsion whose atoms are not bonded in sequence (4–6 bonded, 6–14 not): its own line.
    let scene = write_scene(
        d,
        "      (name: \"phi\", atoms: (4, 6, 8, 14)),\n      (name: \"bad\", atoms: (4, 6, 14, 16)),",
    );
    let e = energy_error(d, &scene);
    assert!(
        e.contains("m.ron:8:21: system.torsions[1] (bad): atoms 6 and 14 are not bonded"),
        "{e}"
    );

    // A torsion about a bond in a ring: add a bond C(4)–CA(8), closing the ring 4–6–8.
    let start = PRMTOP.find("%FLAG BONDS_WITHOUT_HYDROGEN").unwrap();
    let end = PRMTOP.find("%FLAG ANGLES_INC_HYDROGEN").unwrap();
    let section = &PRMTOP[start..end];
    let with_ring = section.replace(
        "      48      54       8\n",
        "      48      54       8      12      24       1\n",
    );
    assert_ne!(with_ring, section);
    // MBONA and NBONA (POINTERS 4 and 13) go from 9 to 10 bonds.
    let ring = PRMTOP.replace(section, &with_ring).replacen(
        "      22       7      12       9      25",
        "      22       7      12      10      25",
        1,
    );
    let ring = ring.replacen(
        "      99       3       9      11",
        "      99       3      10      11",
        1,
    );
    std::fs::write(d.join("top.prmtop"), ring).unwrap();
    let scene = write_scene(d, PHI_PSI);
    let e = energy_error(d, &scene);
    assert!(
        e.contains("m.ron:7:21: system.torsions[0] (phi): its bond 6–8 lies in a ring"),
        "{e}"
    );
}

/// The grid reference of butane, then the energy and eval commands on its samples, and the
/// structure exports.
#[test]
fn butane_reference_energy_eval_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.npy");
    let o = run(&[
        "reference",
        "scenes/butane.ron",
        "--n",
        "4000",
        "--seed",
        "3",
        "--out",
        r.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("exact samples"), "{out}");
    // The quadrature's trans fraction, to the 4 decimals printed: that of the shipped reference.
    let trans = out.lines().find(|l| l.starts_with("trans")).unwrap();
    let exact: f64 = trans.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!((0.6..0.72).contains(&exact), "{trans}");

    let e = dir.path().join("e.npy");
    let o = run(&[
        "energy",
        "scenes/butane.ron",
        "--input",
        r.to_str().unwrap(),
        "--out",
        e.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("kcal/mol mean") && out.contains("E/kT     mean"),
        "{out}"
    );

    // Eval of the samples against the shipped reference: two exact sample sets.
    let o = run(&[
        "eval",
        "scenes/butane.ron",
        "--samples",
        r.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    // Two exact sets of 4000 and 10 000 on 64 bins: TV ≈ 0.04 (finite-sample floor).
    assert!(v["torsion_tv"].as_f64().unwrap() < 0.07, "{v}");
    assert!(
        (v["populations"]["trans"].as_f64().unwrap() - exact).abs() < 0.03,
        "{v}"
    );

    for ext in ["pdb", "xyz"] {
        // `sample` needs a run; the exporter is shared, so exercise it through a run of MCMC.
        let run_dir = dir.path().join("run");
        if !run_dir.exists() {
            let o = run(&[
                "train",
                "scenes/butane.ron",
                "--minutes",
                "0.05",
                "--out",
                run_dir.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
        }
        let f = dir.path().join(format!("s.{ext}"));
        let o = run(&[
            "sample",
            run_dir.to_str().unwrap(),
            "--n",
            "5",
            "--out",
            f.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&f).unwrap();
        if ext == "pdb" {
            assert_eq!(text.matches("MODEL").count(), 5);
            assert_eq!(text.matches("CONECT").count(), 3);
        } else {
            assert_eq!(text.lines().filter(|l| l.starts_with("C ")).count(), 20);
            assert!(text.contains("phi="), "{text}");
        }
    }
}

#[test]
fn alanine_dipeptide_grid_reference_has_the_known_basins() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.npy");
    let o = run(&[
        "reference",
        "scenes/alanine_dipeptide.ron",
        "--n",
        "2000",
        "--out",
        r.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let exact = |label: &str| -> f64 {
        out.lines()
            .find(|l| l.starts_with(label))
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap()
    };
    // Quadrature values (README): C5 0.7627, C7eq 0.2327 at 300 K. The grid is deterministic, so
    // these hold to the printed digits; 1e-4 allows for the last one's rounding.
    assert!((exact("C5") - 0.7627).abs() <= 1e-4, "{out}");
    assert!((exact("C7eq") - 0.2327).abs() <= 1e-4, "{out}");
}

/// A molecule the project did not ship (tests/fixtures/molecules/own, made with parmed and
/// checked by OpenMM in make_own_molecule.py): n-pentane with three torsions named a, b, c. The
/// E/kT that `energy --out` writes must match OpenMM's to 1e-5 relative (of max(|E/kT|, 1)):
/// both evaluate the same f32 torsion values in double precision, so only the force-field
/// arithmetic can differ (measured: 4e-10).
#[test]
fn a_brought_molecule_writes_openmms_energies() {
    use boltzmann_studio::io::Matrix;
    let dir = repo("tests/fixtures/molecules/own");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pentane-openmm.json")).unwrap())
            .unwrap();
    let configs = fixture["configurations"].as_array().unwrap();
    let x: Vec<f32> = configs
        .iter()
        .flat_map(|c| c["torsions"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect();
    let tmp = std::env::temp_dir().join(format!("bs-own-molecule-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let scene = dir.join("pentane.ron");
    let (e, _) = energies_of(&scene, &Matrix::new(configs.len(), 3, x), &tmp, false);
    for (c, (got, want)) in e.iter().zip(configs).enumerate() {
        let want = want["e_over_kt"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "configuration {c}: E/kT {got} against OpenMM's {want}"
        );
    }
    // Its torsions are its own: no φ/ψ, and the scene names no basins.
    let s = boltzmann_studio::scene::Scene::load(&scene).unwrap();
    let names = s.energy().molecule().unwrap().torsion_names();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(s.basins.is_empty());
}
