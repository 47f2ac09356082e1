//! The AMBER force field and the torsion map against OpenMM (tests/fixtures/molecules, made by
//! make_fixture.py beside it): energies, energy terms and forces at the shipped structure and
//! at 24 random settings of alanine dipeptide's seven rotatable torsions.

use std::path::Path;

use boltzmann_studio::energy::Energy;
use boltzmann_studio::molecule::{AmberMolecule, Molecule, TorsionSpec};
use serde_json::Value;

const PRMTOP: &str = "assets/molecules/alanine-dipeptide.prmtop";
const PDB: &str = "assets/molecules/alanine-dipeptide.pdb";

fn fixture() -> Value {
    let text =
        std::fs::read_to_string("tests/fixtures/molecules/alanine-dipeptide-openmm.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        _ => panic!("not a number: {v}"),
    }
}

fn molecule(torsions: &[[usize; 4]]) -> AmberMolecule {
    let specs: Vec<TorsionSpec> = torsions
        .iter()
        .enumerate()
        .map(|(i, &atoms)| TorsionSpec {
            name: format!("t{i}"),
            atoms,
        })
        .collect();
    match AmberMolecule::load(Path::new(PRMTOP), Path::new(PDB), &specs, 300.0) {
        Ok(m) => m,
        Err(e) => panic!("{e:?}"),
    }
}

fn fixture_torsions(f: &Value) -> Vec<[usize; 4]> {
    f["torsions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let v: Vec<usize> = t
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_u64().unwrap() as usize)
                .collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}

/// Energies to 1e-4 relative (of max(|E|, 1 kcal/mol)) and forces to 1e-4 relative in norm.
/// OpenMM's Reference platform computes in double precision and the JSON keeps 17 digits, so
/// the two should agree far closer (≈ 1e-10) if the terms are the same; 1e-4 is the bar.
#[test]
fn energies_and_forces_match_openmm() {
    let f = fixture();
    let mol = molecule(&fixture_torsions(&f));
    let ff = mol.force_field();
    let configs = f["configurations"].as_array().unwrap();
    assert!(
        configs.len() >= 21,
        "the fixture has the shipped structure and at least 20 random ones"
    );
    let mut worst_e = 0.0f64;
    let mut worst_f = 0.0f64;
    for (c, conf) in configs.iter().enumerate() {
        let x = floats(&conf["positions"]);
        let want_e = conf["energy"].as_f64().unwrap();
        let want_f = floats(&conf["forces"]);
        let mut g = vec![0.0; x.len()];
        let terms = ff.terms_grad(&x, &mut g);
        let rel_e = (terms.total() - want_e).abs() / want_e.abs().max(1.0);
        let diff: f64 = g
            .iter()
            .zip(&want_f)
            .map(|(g, f)| (-g - f).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = want_f.iter().map(|f| f * f).sum::<f64>().sqrt();
        let rel_f = diff / norm;
        assert!(
            rel_e < 1e-4,
            "configuration {c}: E = {} against OpenMM's {want_e}",
            terms.total()
        );
        assert!(
            rel_f < 1e-4,
            "configuration {c}: |F − F_openmm| / |F_openmm| = {rel_f:e}"
        );
        // Term by term, tightly, so that a mismatch says where: the same terms in double
        // precision agree to 1e-7 relative (the Coulomb constant is given to 9 digits).
        let t = &conf["terms"];
        // The non-bonded term is a small difference of large parts: its scale is |LJ| + |Coulomb|.
        let nb_scale = terms.lennard_jones.abs() + terms.coulomb.abs();
        for (ours, theirs, scale, name) in [
            (
                terms.bond,
                t["HarmonicBondForce"].as_f64().unwrap(),
                terms.bond.abs(),
                "bonds",
            ),
            (
                terms.angle,
                t["HarmonicAngleForce"].as_f64().unwrap(),
                terms.angle.abs(),
                "angles",
            ),
            (
                terms.torsion,
                t["PeriodicTorsionForce"].as_f64().unwrap(),
                terms.torsion.abs(),
                "torsions",
            ),
            (
                terms.lennard_jones + terms.coulomb,
                t["NonbondedForce"].as_f64().unwrap(),
                nb_scale,
                "non-bonded",
            ),
        ] {
            assert!(
                (ours - theirs).abs() < 1e-7 * scale.max(1.0),
                "configuration {c}, {name}: {ours} against {theirs}"
            );
        }
        worst_e = worst_e.max(rel_e);
        worst_f = worst_f.max(rel_f);
    }
    eprintln!(
        "{} configurations: worst relative energy error {worst_e:.1e}, force error {worst_f:.1e}",
        configs.len()
    );
}

/// The fixture's configurations were made by its own rotation code from the same torsion values:
/// our torsion map must land on the same positions (to 1e-6 Å: the JSON's values round-trip
/// exactly, the rotations differ in order of operations only).
#[test]
fn torsion_map_reproduces_the_fixture_positions() {
    let f = fixture();
    let mol = molecule(&fixture_torsions(&f));
    for (c, conf) in f["configurations"].as_array().unwrap().iter().enumerate() {
        let theta = floats(&conf["torsions"]);
        let want = floats(&conf["positions"]);
        let got = Molecule::positions(&mol, &theta);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-6, "configuration {c}: positions differ by {err} Å");
        let back = mol.space().angles(&got);
        for (a, b) in back.iter().zip(&theta) {
            let d = (a - b).rem_euclid(std::f64::consts::TAU);
            assert!(d.min(std::f64::consts::TAU - d) < 1e-9);
        }
    }
}

/// ∂(E/kT)/∂θ against central differences in θ (h = 1e-6 rad: truncation O(h²·E''') ≈ 1e-10,
/// rounding O(ε·|E|/h) ≈ 1e-9 kT), at random torsions of the seven-torsion molecule.
#[test]
fn torsion_gradient_matches_finite_differences() {
    let f = fixture();
    let mol = molecule(&fixture_torsions(&f));
    for conf in f["configurations"].as_array().unwrap().iter().take(8) {
        let theta = floats(&conf["torsions"]);
        let mut g = vec![0.0; theta.len()];
        mol.energy_grad(&theta, &mut g);
        let h = 1e-6;
        for k in 0..theta.len() {
            let (mut tp, mut tm) = (theta.clone(), theta.clone());
            tp[k] += h;
            tm[k] -= h;
            let fd = (mol.energy(&tp) - mol.energy(&tm)) / (2.0 * h);
            assert!(
                (g[k] - fd).abs() < 1e-5 * fd.abs().max(1.0),
                "torsion {k}: {} against {fd}",
                g[k]
            );
        }
    }
}

#[test]
fn reduced_energy_is_kcal_over_kt() {
    let mol = molecule(&[[4, 6, 8, 14], [6, 8, 14, 16]]);
    let theta = [-1.4, 1.2];
    let kt = 0.0019872041 * 300.0;
    let mut g = [0.0; 2];
    let e_kcal = mol.energy_kcal_grad(&theta, &mut g);
    assert!((mol.energy(&theta) - e_kcal / kt).abs() < 1e-9 * e_kcal.abs().max(1.0));
    assert!(mol.torus());
    assert_eq!(mol.layout().dim(), 2);
}
