//! Molecules in torsion space (molecules.md): an AMBER force field read from prmtop + PDB, or
//! TraPPE butane, sampled over a few free torsion angles at a temperature.
//!
//! The sampler sees θ ∈ (−π, π]ⁿ and the reduced energy E(x(θ))/k_BT; the app and the exports
//! see atoms, elements, bonds and positions through [`Molecule`].

pub mod amber;
pub mod butane;
pub mod grid;
pub mod pdb;
pub mod prmtop;
pub mod torsion;

use std::path::Path;

pub use amber::ForceField;
pub use butane::Butane;
pub use prmtop::Prmtop;
pub use torsion::TorsionSpace;

use crate::energy::{Energy, Layout};
use crate::error::{Error, Result};

pub use crate::energy::{KB_KCAL_PER_MOL_K, Molecule};

/// A free torsion as a scene names it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorsionSpec {
    /// Shown in plots and written in file headers ("phi").
    pub name: String,
    /// 0-based atoms i, j, k, l, bonded in sequence; k's side of the j–k bond turns.
    pub atoms: [usize; 4],
}

/// A molecule with an AMBER force field, in torsion space, at a temperature.
#[derive(Debug, Clone)]
pub struct AmberMolecule {
    top: Prmtop,
    structure: pdb::Structure,
    ff: ForceField,
    space: TorsionSpace,
    names: Vec<String>,
    temperature: f64,
}

/// Where a molecule's definition failed: the file and position, or which torsion.
#[derive(Debug)]
pub enum LoadError {
    /// Reading the topology or the structure failed (the error names file and line).
    File(Error),
    /// The structure does not match the topology.
    Mismatch(String),
    /// A torsion is not a valid free coordinate: its index in the scene's list, and why.
    Torsion { index: usize, message: String },
}

impl AmberMolecule {
    /// Reads `topology` (prmtop) and `structure` (PDB) and frees `torsions` at `temperature` K.
    pub fn load(
        topology: &Path,
        structure: &Path,
        torsions: &[TorsionSpec],
        temperature: f64,
    ) -> Result<AmberMolecule, LoadError> {
        let top = Prmtop::load(topology).map_err(LoadError::File)?;
        let structure_data = pdb::load(structure).map_err(LoadError::File)?;
        if structure_data.atoms() != top.atoms() {
            return Err(LoadError::Mismatch(format!(
                "{}: has {} atoms, but the topology {} has {}",
                structure.display(),
                structure_data.atoms(),
                topology.display(),
                top.atoms()
            )));
        }
        let ff = ForceField::new(&top)
            .map_err(|e| LoadError::Mismatch(format!("{}: {e}", topology.display())))?;
        let quads: Vec<[usize; 4]> = torsions.iter().map(|t| t.atoms).collect();
        let bonds: Vec<(usize, usize)> = top.bonds.iter().map(|&(i, j, _)| (i, j)).collect();
        let space =
            TorsionSpace::new(structure_data.positions.clone(), &bonds, &quads).map_err(|e| {
                LoadError::Torsion {
                    index: e.index,
                    message: e.message,
                }
            })?;
        Ok(AmberMolecule {
            top,
            structure: structure_data,
            ff,
            space,
            names: torsions.iter().map(|t| t.name.clone()).collect(),
            temperature,
        })
    }

    /// The Cartesian force field (kcal/mol, Å).
    pub fn force_field(&self) -> &ForceField {
        &self.ff
    }

    /// The torsion coordinates.
    pub fn space(&self) -> &TorsionSpace {
        &self.space
    }

    /// E in kcal/mol at torsions `theta`, with ∂E/∂θ (kcal/mol/rad) in `grad`.
    pub fn energy_kcal_grad(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let x = self.space.positions(theta);
        let mut gx = vec![0.0; x.len()];
        let e = self.ff.energy_grad(&x, &mut gx);
        self.space.pull_back(&x, &gx, grad);
        e
    }
}

impl Molecule for AmberMolecule {
    fn elements(&self) -> Vec<&'static str> {
        self.top.elements()
    }
    fn atom_names(&self) -> Vec<String> {
        self.structure.names.clone()
    }
    fn residue_names(&self) -> Vec<String> {
        self.structure.residues.clone()
    }
    fn bonds(&self) -> Vec<(usize, usize)> {
        self.top.bonds.iter().map(|&(i, j, _)| (i, j)).collect()
    }
    fn torsion_names(&self) -> Vec<String> {
        self.names.clone()
    }
    fn positions(&self, theta: &[f64]) -> Vec<f64> {
        self.space.positions(theta)
    }
    fn temperature(&self) -> f64 {
        self.temperature
    }
}

impl Energy for AmberMolecule {
    fn name(&self) -> String {
        let residues = self.top.residue_labels.join("-");
        format!("{residues} ({} torsions)", self.space.len())
    }
    fn layout(&self) -> Layout {
        Layout {
            particles: 1,
            spatial_dim: self.space.len(),
            com_free: false,
        }
    }
    fn energy_grad(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let kt = self.kt_kcal();
        let e = self.energy_kcal_grad(theta, grad);
        for g in grad.iter_mut() {
            *g /= kt;
        }
        e / kt
    }
    fn laplacian(&self, theta: &[f64]) -> f64 {
        crate::energy::laplacian_by_differences(self, theta)
    }
    fn torus(&self) -> bool {
        true
    }
    fn molecule(&self) -> Option<&dyn Molecule> {
        Some(self)
    }
}

/// Writes torsion samples (rows of `m`, radians) as extended XYZ frames of the molecule's atoms,
/// centred, with element symbols and the torsion values and reduced energy in each comment line.
pub fn write_xyz(
    path: &Path,
    mol: &dyn Molecule,
    m: &crate::types::Matrix,
    energies: Option<&[f64]>,
) -> Result<()> {
    use std::fmt::Write as _;
    let elements = mol.elements();
    let names = mol.torsion_names();
    let mut out = String::new();
    for i in 0..m.rows {
        let theta: Vec<f64> = m.row(i).iter().map(|&v| v as f64).collect();
        let mut x = mol.positions(&theta);
        centre(&mut x);
        let _ = writeln!(out, "{}", elements.len());
        let _ = write!(
            out,
            "Properties=species:S:1:pos:R:3 pbc=\"F F F\" sample={i}"
        );
        for (n, t) in names.iter().zip(&theta) {
            let _ = write!(out, " {n}={:.6}", t.to_degrees());
        }
        if let Some(e) = energies {
            let _ = write!(out, " energy_kT={:.6}", e[i]);
        }
        out.push('\n');
        for (a, el) in elements.iter().enumerate() {
            let _ = writeln!(
                out,
                "{el} {:.6} {:.6} {:.6}",
                x[3 * a],
                x[3 * a + 1],
                x[3 * a + 2]
            );
        }
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// Moves the geometric centre of positions (atoms × 3) to the origin, for display.
pub fn centre(x: &mut [f64]) {
    let n = (x.len() / 3).max(1) as f64;
    for k in 0..3 {
        let c = x.iter().skip(k).step_by(3).sum::<f64>() / n;
        for v in x.iter_mut().skip(k).step_by(3) {
            *v -= c;
        }
    }
}

pub use crate::types::wrap_angle;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_angle_lands_in_half_open_interval() {
        use std::f64::consts::PI;
        for (a, want) in [
            (0.0, 0.0),
            (PI, PI),
            (-PI, PI),
            (3.0 * PI, PI),
            (-0.5, -0.5),
            (7.0, 7.0 - 2.0 * PI),
        ] {
            assert!(
                (wrap_angle(a) - want).abs() < 1e-12,
                "{a} → {}",
                wrap_angle(a)
            );
        }
    }
}
