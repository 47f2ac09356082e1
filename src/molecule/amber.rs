//! The AMBER energy in vacuum (molecules.md §1): harmonic bonds and angles, periodic proper and
//! improper torsions, Lennard-Jones and Coulomb over non-excluded pairs and the scaled 1-4 pairs,
//! no cutoff. kcal/mol and Å; analytic gradient, f64.

use std::collections::BTreeSet;

use super::prmtop::Prmtop;
use crate::error::{Error, Result};

/// Factor on qᵢqⱼ/r with the stored charges. AMBER stores e × 18.2223, which makes qᵢqⱼ/r
/// kcal/mol with a Coulomb constant of 18.2223² = 332.0522 kcal·Å/(mol·e²); OpenMM reads the
/// charges back as e and applies 332.0637 (138.935456 kJ·nm/(mol·e²)). We follow OpenMM, the
/// implementation users check against: sander's Coulomb energy is 3.5e-5 smaller, which near a
/// total energy of zero is more than the 1e-4 our fixture test allows.
pub const COULOMB_SCALE: f64 = 138.935456 / 4.184 * 10.0 / (18.2223 * 18.2223);

/// A pair interaction with its coefficients already scaled (1-4 pairs) and multiplied out.
#[derive(Debug, Clone, Copy)]
struct Pair {
    i: usize,
    j: usize,
    /// A/r¹² − B/r⁶.
    a: f64,
    b: f64,
    /// COULOMB_SCALE · qᵢqⱼ (stored charges: kcal/mol·Å).
    qq: f64,
}

/// The energy terms, each in kcal/mol.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Terms {
    pub bond: f64,
    pub angle: f64,
    pub torsion: f64,
    pub lennard_jones: f64,
    pub coulomb: f64,
}

impl Terms {
    pub fn total(&self) -> f64 {
        self.bond + self.angle + self.torsion + self.lennard_jones + self.coulomb
    }
}

/// The force field of one molecule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct ForceField {
    atoms: usize,
    bonds: Vec<(usize, usize, f64, f64)>,
    angles: Vec<([usize; 3], f64, f64)>,
    /// Atoms, PK, periodicity n, phase.
    torsions: Vec<([usize; 4], f64, f64, f64)>,
    /// Non-excluded pairs, then the 1-4 pairs (scaled).
    pairs: Vec<Pair>,
}

impl ForceField {
    /// Builds the term lists from a topology.
    pub fn new(top: &Prmtop) -> Result<ForceField> {
        let n = top.atoms();
        let bonds = top
            .bonds
            .iter()
            .map(|&(i, j, p)| (i, j, top.bond_k[p], top.bond_r0[p]))
            .collect();
        let angles = top
            .angles
            .iter()
            .map(|&(a, p)| (a, top.angle_k[p], top.angle_theta0[p]))
            .collect();
        let torsions = top
            .dihedrals
            .iter()
            .map(|d| {
                (
                    d.atoms,
                    top.dihedral_k[d.param],
                    top.dihedral_n[d.param],
                    top.dihedral_phase[d.param],
                )
            })
            .collect();

        let lj = |i: usize, j: usize| -> Result<(f64, f64)> {
            let idx = top.nonbonded_index[top.ntypes * top.lj_type[i] + top.lj_type[j]];
            if idx <= 0 {
                return Err(Error::Invalid(format!(
                    "atoms {} and {} use a 10-12 hydrogen-bond term (NONBONDED_PARM_INDEX {idx}), which this force field does not implement",
                    i + 1,
                    j + 1
                )));
            }
            Ok((
                top.lj_acoef[idx as usize - 1],
                top.lj_bcoef[idx as usize - 1],
            ))
        };

        let mut excluded = BTreeSet::new();
        for (i, partners) in top.excluded.iter().enumerate() {
            for &j in partners {
                excluded.insert((i.min(j), i.max(j)));
            }
        }
        let mut pairs = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                if !excluded.contains(&(i, j)) {
                    let (a, b) = lj(i, j)?;
                    pairs.push(Pair {
                        i,
                        j,
                        a,
                        b,
                        qq: COULOMB_SCALE * top.charges[i] * top.charges[j],
                    });
                }
            }
        }
        // 1-4 pairs: the outer atoms of each dihedral that owns its pair (no negative third
        // index); a pair reached by two such dihedrals (a ring) counts once.
        let mut seen = BTreeSet::new();
        for d in top.dihedrals.iter().filter(|d| !d.skip_14 && !d.improper) {
            let (i, l) = (d.atoms[0], d.atoms[3]);
            if !seen.insert((i.min(l), i.max(l))) {
                continue;
            }
            let (a, b) = lj(i, l)?;
            let (scee, scnb) = (top.scee[d.param], top.scnb[d.param]);
            let qq = COULOMB_SCALE * top.charges[i] * top.charges[l];
            pairs.push(Pair {
                i,
                j: l,
                a: a / scnb,
                b: b / scnb,
                qq: qq / scee,
            });
        }
        Ok(ForceField {
            atoms: n,
            bonds,
            angles,
            torsions,
            pairs,
        })
    }

    /// Number of atoms.
    pub fn atoms(&self) -> usize {
        self.atoms
    }

    /// E(x) in kcal/mol for positions `x` (atoms × 3, Å), with ∇E written into `grad`.
    pub fn energy_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.terms_grad(x, grad).total()
    }

    /// The energy by term, with the gradient of the total written into `grad`.
    pub fn terms_grad(&self, x: &[f64], grad: &mut [f64]) -> Terms {
        assert_eq!(x.len(), 3 * self.atoms, "positions must be atoms × 3");
        assert_eq!(grad.len(), x.len());
        grad.fill(0.0);
        let p = |a: usize| [x[3 * a], x[3 * a + 1], x[3 * a + 2]];
        let add = |grad: &mut [f64], a: usize, v: [f64; 3], s: f64| {
            for k in 0..3 {
                grad[3 * a + k] += s * v[k];
            }
        };
        let mut t = Terms::default();

        for &(i, j, k, r0) in &self.bonds {
            let d = sub(p(i), p(j));
            let r = norm(d);
            let dr = r - r0;
            t.bond += k * dr * dr;
            let s = 2.0 * k * dr / r;
            add(grad, i, d, s);
            add(grad, j, d, -s);
        }

        for &([i, j, l], k, theta0) in &self.angles {
            let (a, b) = (sub(p(i), p(j)), sub(p(l), p(j)));
            let (ra, rb) = (norm(a), norm(b));
            let (ua, ub) = (scale(a, 1.0 / ra), scale(b, 1.0 / rb));
            let c = dot(ua, ub).clamp(-1.0, 1.0);
            let theta = norm(cross(ua, ub)).atan2(dot(ua, ub));
            let d = theta - theta0;
            t.angle += k * d * d;
            // dθ/da = −(b̂ − cosθ â)/(|a| sinθ); sinθ is bounded away from 0 for real angles.
            let sin = (1.0 - c * c).sqrt().max(1e-12);
            let s = 2.0 * k * d;
            let ga = scale(sub(ub, scale(ua, c)), -1.0 / (ra * sin));
            let gb = scale(sub(ua, scale(ub, c)), -1.0 / (rb * sin));
            add(grad, i, ga, s);
            add(grad, l, gb, s);
            add(
                grad,
                j,
                [-(ga[0] + gb[0]), -(ga[1] + gb[1]), -(ga[2] + gb[2])],
                s,
            );
        }

        for &(atoms, pk, n, phase) in &self.torsions {
            let [i, j, k, l] = atoms;
            let (phi, g) = dihedral_grad(p(i), p(j), p(k), p(l));
            t.torsion += pk * (1.0 + (n * phi - phase).cos());
            let s = -pk * n * (n * phi - phase).sin();
            for (a, v) in atoms.iter().zip(g) {
                add(grad, *a, v, s);
            }
        }

        for q in &self.pairs {
            let d = sub(p(q.i), p(q.j));
            let r2 = dot(d, d);
            let inv2 = 1.0 / r2;
            let inv6 = inv2 * inv2 * inv2;
            let inv1 = inv2.sqrt();
            let lj = q.a * inv6 * inv6 - q.b * inv6;
            let coul = q.qq * inv1;
            t.lennard_jones += lj;
            t.coulomb += coul;
            // dE/dr · 1/r = (−12A/r¹² + 6B/r⁶ − qq/r) / r².
            let s = (-12.0 * q.a * inv6 * inv6 + 6.0 * q.b * inv6 - coul) * inv2;
            add(grad, q.i, d, s);
            add(grad, q.j, d, -s);
        }
        t
    }

    /// E(x) by term, in kcal/mol.
    pub fn terms(&self, x: &[f64]) -> Terms {
        let mut g = vec![0.0; x.len()];
        self.terms_grad(x, &mut g)
    }
}

/// The IUPAC signed dihedral of four points in (−π, π] (positive: looking from j to k, the front
/// bond j→i turns clockwise onto the back bond k→l).
pub fn dihedral(pi: [f64; 3], pj: [f64; 3], pk: [f64; 3], pl: [f64; 3]) -> f64 {
    let (b1, b2, b3) = (sub(pj, pi), sub(pk, pj), sub(pl, pk));
    let (c1, c2) = (cross(b2, b3), cross(b1, b2));
    (dot(b1, c1) * norm(b2)).atan2(dot(c1, c2))
}

/// The dihedral and its gradient with respect to the four points (Blondel & Karplus 1996, the
/// form without singularities at sin θ = 0 of the bond angles' complements).
pub fn dihedral_grad(
    pi: [f64; 3],
    pj: [f64; 3],
    pk: [f64; 3],
    pl: [f64; 3],
) -> (f64, [[f64; 3]; 4]) {
    let phi = dihedral(pi, pj, pk, pl);
    let f = sub(pi, pj);
    let g = sub(pj, pk);
    let h = sub(pl, pk);
    let a = cross(f, g);
    let b = cross(h, g);
    let (a2, b2) = (dot(a, a).max(1e-300), dot(b, b).max(1e-300));
    let gn = norm(g);
    let gi = scale(a, -gn / a2);
    let gl = scale(b, gn / b2);
    let fg = dot(f, g) / (a2 * gn);
    let hg = dot(h, g) / (b2 * gn);
    let gj = [
        -gi[0] + fg * a[0] - hg * b[0],
        -gi[1] + fg * a[1] - hg * b[1],
        -gi[2] + fg * a[2] - hg * b[2],
    ];
    let gk = [
        -gl[0] - fg * a[0] + hg * b[0],
        -gl[1] - fg * a[1] + hg * b[1],
        -gl[2] - fg * a[2] + hg * b[2],
    ];
    (phi, [gi, gj, gk, gl])
}

pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
pub(crate) fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}
pub(crate) fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn forcefield() -> ForceField {
        let top = Prmtop::parse(
            include_str!("../../assets/molecules/alanine-dipeptide.prmtop"),
            Path::new("a"),
        )
        .unwrap();
        ForceField::new(&top).unwrap()
    }

    fn pdb_positions() -> Vec<f64> {
        crate::molecule::pdb::parse(
            include_str!("../../assets/molecules/alanine-dipeptide.pdb"),
            Path::new("a.pdb"),
        )
        .unwrap()
        .positions
    }

    /// Central differences, h = 1e-6 Å: truncation O(h²E''') ≪ 1e-6 and rounding
    /// O(ε|E|/h) ≈ 1e-8 kcal/mol/Å; 1e-6 relative to ‖∇E‖ holds for both.
    #[test]
    fn gradient_matches_central_differences() {
        let ff = forcefield();
        let mut x = pdb_positions();
        // Move off the idealised structure, so that no term sits at a stationary point.
        for (k, v) in x.iter_mut().enumerate() {
            *v += 0.05 * ((k * 7919) % 13) as f64 / 13.0 - 0.025;
        }
        let mut g = vec![0.0; x.len()];
        ff.energy_grad(&x, &mut g);
        let h = 1e-6;
        let mut err = 0.0f64;
        for k in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[k] += h;
            xm[k] -= h;
            let fd = (ff.energy_grad(&xp, &mut vec![0.0; x.len()])
                - ff.energy_grad(&xm, &mut vec![0.0; x.len()]))
                / (2.0 * h);
            err = err.max((fd - g[k]).abs());
        }
        let gnorm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            err < 1e-6 * gnorm.max(1.0),
            "max |grad − fd| = {err:e}, |grad| = {gnorm}"
        );
    }

    #[test]
    fn dihedral_sign_and_range() {
        // Looking down j→k (the +z axis), i along +x and l rotated by +90° about z: IUPAC −90°?
        // No: the front bond turns clockwise (seen from j) onto the back bond for a positive angle.
        let i = [1.0, 0.0, 0.0];
        let j = [0.0, 0.0, 0.0];
        let k = [0.0, 0.0, 1.0];
        let trans = [-1.0, 0.0, 1.0];
        assert!((dihedral(i, j, k, trans).abs() - std::f64::consts::PI).abs() < 1e-12);
        let cis = [1.0, 0.0, 1.0];
        assert!(dihedral(i, j, k, cis).abs() < 1e-12);
        // l at +90° counter-clockwise about +z (seen from above, i.e. from k): the right-hand
        // rotation about j→k, which increases the dihedral.
        let l = [0.0, 1.0, 1.0];
        assert!((dihedral(i, j, k, l) - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
    }

    #[test]
    fn shipped_structure_energy_is_openmm_s() {
        // molecules.md §1: −21.05 kcal/mol at the shipped PDB (OpenMM: −21.04502). The full
        // fixture check is in tests/molecule.rs; here 1e-5 kcal/mol, far above f64 rounding.
        let e = forcefield().terms(&pdb_positions()).total();
        assert!((e + 21.04502).abs() < 1e-5, "E = {e}");
    }
}
