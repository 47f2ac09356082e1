//! Torsion space (molecules.md §2): bond lengths and angles stay as in a reference structure,
//! and a few chosen torsions are free. Each free torsion's value is the absolute IUPAC dihedral
//! of its four atoms; setting it rotates every atom on k's side of the j–k bond about j→k.

use std::collections::BTreeSet;

use super::amber::{cross, dihedral, dot, norm, scale, sub};

/// A molecule's rotatable-torsion coordinates around a fixed reference structure.
#[derive(Debug, Clone)]
pub struct TorsionSpace {
    reference: Vec<f64>,
    torsions: Vec<[usize; 4]>,
    /// Atoms on k's side of each torsion's j–k bond (k included; it lies on the axis).
    moving: Vec<Vec<usize>>,
}

/// Why a torsion cannot be a free coordinate: which torsion (0-based) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct TorsionError {
    pub index: usize,
    pub message: String,
}

impl TorsionSpace {
    /// Checks the torsions against the bond graph and finds the atoms each one moves.
    pub fn new(
        reference: Vec<f64>,
        bonds: &[(usize, usize)],
        torsions: &[[usize; 4]],
    ) -> Result<TorsionSpace, TorsionError> {
        let n = reference.len() / 3;
        let mut neighbours = vec![Vec::new(); n];
        for &(a, b) in bonds {
            neighbours[a].push(b);
            neighbours[b].push(a);
        }
        let bonded = |a: usize, b: usize| neighbours[a].contains(&b);
        let mut axes = BTreeSet::new();
        let mut moving = Vec::with_capacity(torsions.len());
        for (t, q) in torsions.iter().enumerate() {
            let fail = |message: String| TorsionError { index: t, message };
            if let Some(&a) = q.iter().find(|&&a| a >= n) {
                return Err(fail(format!(
                    "atom {a} does not exist (the molecule has {n} atoms, numbered from 0)"
                )));
            }
            let distinct: BTreeSet<_> = q.iter().collect();
            if distinct.len() != 4 {
                return Err(fail(format!(
                    "names atom {} twice",
                    q.iter()
                        .find(|a| q.iter().filter(|b| b == a).count() > 1)
                        .unwrap()
                )));
            }
            for w in q.windows(2) {
                if !bonded(w[0], w[1]) {
                    return Err(fail(format!(
                        "atoms {} and {} are not bonded: a torsion's atoms must be bonded in sequence i–j–k–l",
                        w[0], w[1]
                    )));
                }
            }
            let (j, k) = (q[1], q[2]);
            if !axes.insert((j.min(k), j.max(k))) {
                return Err(fail(format!(
                    "rotates about the bond {j}–{k}, as an earlier torsion does (one free torsion per bond)"
                )));
            }
            // Everything reachable from k without crossing the bond back to j.
            let mut side = vec![false; n];
            side[k] = true;
            let mut stack = vec![k];
            while let Some(a) = stack.pop() {
                for &b in &neighbours[a] {
                    if a == k && b == j {
                        continue;
                    }
                    if b == j {
                        return Err(fail(format!(
                            "its bond {j}–{k} lies in a ring: rotating about it would break the ring"
                        )));
                    }
                    if !side[b] {
                        side[b] = true;
                        stack.push(b);
                    }
                }
            }
            moving.push((0..n).filter(|&a| side[a]).collect());
        }
        Ok(TorsionSpace {
            reference,
            torsions: torsions.to_vec(),
            moving,
        })
    }

    /// Number of free torsions.
    pub fn len(&self) -> usize {
        self.torsions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.torsions.is_empty()
    }

    /// The four atoms of each free torsion.
    pub fn torsions(&self) -> &[[usize; 4]] {
        &self.torsions
    }

    /// The reference structure (atoms × 3).
    pub fn reference(&self) -> &[f64] {
        &self.reference
    }

    /// The free torsions' values in `x` (radians, (−π, π]).
    pub fn angles(&self, x: &[f64]) -> Vec<f64> {
        self.torsions
            .iter()
            .map(|&[i, j, k, l]| dihedral(at(x, i), at(x, j), at(x, k), at(x, l)))
            .collect()
    }

    /// Positions with the free torsions set to `theta` (radians; any real value), into `out`.
    /// Torsions about different bonds do not disturb each other's values (a rotation about one
    /// bond moves each other torsion's four atoms rigidly, or leaves its end atom on the axis),
    /// so setting them one after the other gives every one its target value.
    pub fn positions_into(&self, theta: &[f64], out: &mut [f64]) {
        assert_eq!(theta.len(), self.len(), "one angle per free torsion");
        out.copy_from_slice(&self.reference);
        for (t, &[i, j, k, l]) in self.torsions.iter().enumerate() {
            let current = dihedral(at(out, i), at(out, j), at(out, k), at(out, l));
            let delta = theta[t] - current;
            let origin = at(out, k);
            let axis = sub(origin, at(out, j));
            let axis = scale(axis, 1.0 / norm(axis));
            let (s, c) = delta.sin_cos();
            for &a in &self.moving[t] {
                let v = sub(at(out, a), origin);
                let kv = cross(axis, v);
                let along = dot(axis, v) * (1.0 - c);
                for d in 0..3 {
                    out[3 * a + d] = origin[d] + v[d] * c + kv[d] * s + axis[d] * along;
                }
            }
        }
    }

    /// Positions with the free torsions set to `theta`.
    pub fn positions(&self, theta: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.reference.len()];
        self.positions_into(theta, &mut out);
        out
    }

    /// ∂E/∂θ from the Cartesian gradient `grad_x` at positions `x`:
    /// ∂E/∂θₜ = Σ_{a moved by t} ∇ₐE · (ê × (rₐ − r_k)).
    pub fn pull_back(&self, x: &[f64], grad_x: &[f64], grad_theta: &mut [f64]) {
        for (t, &[_, j, k, _]) in self.torsions.iter().enumerate() {
            let origin = at(x, k);
            let axis = sub(origin, at(x, j));
            let axis = scale(axis, 1.0 / norm(axis));
            grad_theta[t] = self.moving[t]
                .iter()
                .map(|&a| dot(at(grad_x, a), cross(axis, sub(at(x, a), origin))))
                .sum();
        }
    }
}

fn at(x: &[f64], a: usize) -> [f64; 3] {
    [x[3 * a], x[3 * a + 1], x[3 * a + 2]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain 0–1–2–3–4 with a branch 2–5, bent so no torsion is degenerate.
    fn chain() -> (Vec<f64>, Vec<(usize, usize)>) {
        let x = vec![
            0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.2, 1.5, 0.9, 0.4, 2.6, 0.8, 0.9, 1.2, -0.8,
            0.3,
        ];
        (x, vec![(0, 1), (1, 2), (2, 3), (3, 4), (2, 5)])
    }

    #[test]
    fn set_angles_read_back_and_bonds_keep_their_lengths() {
        let (x, bonds) = chain();
        let space = TorsionSpace::new(x.clone(), &bonds, &[[0, 1, 2, 3], [1, 2, 3, 4]]).unwrap();
        for theta in [[0.3, -2.0], [3.0, 1.0], [-3.1, 0.0]] {
            let p = space.positions(&theta);
            let got = space.angles(&p);
            for (g, w) in got.iter().zip(theta) {
                assert!((g - w).abs() < 1e-12, "{got:?} vs {theta:?}");
            }
            for &(a, b) in &bonds {
                let d0 = norm(sub(at(&x, a), at(&x, b)));
                let d1 = norm(sub(at(&p, a), at(&p, b)));
                assert!((d0 - d1).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn bad_torsions_are_refused() {
        let (x, mut bonds) = chain();
        let e = TorsionSpace::new(x.clone(), &bonds, &[[0, 1, 3, 4]]).unwrap_err();
        assert!(
            e.message.contains("atoms 1 and 3 are not bonded"),
            "{}",
            e.message
        );
        let e = TorsionSpace::new(x.clone(), &bonds, &[[0, 1, 2, 9]]).unwrap_err();
        assert!(e.message.contains("atom 9 does not exist"), "{}", e.message);
        let e = TorsionSpace::new(x.clone(), &bonds, &[[0, 1, 2, 3], [5, 2, 1, 0]]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.message.contains("as an earlier torsion"), "{}", e.message);
        bonds.push((5, 3)); // ring 2–3–5
        let e = TorsionSpace::new(x, &bonds, &[[1, 2, 3, 4]]).unwrap_err();
        assert!(e.message.contains("lies in a ring"), "{}", e.message);
    }
}
