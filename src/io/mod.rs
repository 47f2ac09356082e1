//! File formats: NumPy .npy arrays, extended XYZ trajectories, metrics CSV.

pub mod csv;
pub mod npy;
pub mod xyz;

pub use crate::types::Matrix;
pub use npy::{parse_npy, read_npy, write_npy, write_npy_f64};

use std::path::Path;

use crate::energy::Energy;
use crate::error::{Error, Result};

/// Writes samples by the file's extension: `.npy` (the sampler's coordinates: particle
/// positions, or torsion angles in radians), `.xyz` (extended XYZ; a molecule's atoms with their
/// elements), `.pdb` (molecules only: one MODEL per sample, with bonds). `energies` (reduced,
/// one per row) go into XYZ comment lines and PDB REMARKs.
pub fn write_samples(
    path: &Path,
    energy: &dyn Energy,
    species: &str,
    m: &Matrix,
    energies: Option<&[f64]>,
) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match (ext.as_str(), energy.molecule()) {
        ("npy", _) => write_npy(path, m),
        ("xyz", None) => xyz::write_xyz(path, m, energy.layout(), species, energies),
        ("xyz", Some(mol)) => crate::molecule::write_xyz(path, mol, m, energies),
        ("pdb", Some(mol)) => {
            let configs: Vec<Vec<f64>> = (0..m.rows)
                .map(|i| mol.positions(&m.row(i).iter().map(|&v| v as f64).collect::<Vec<_>>()))
                .collect();
            crate::molecule::pdb::write_models(
                path,
                &mol.atom_names(),
                &mol.residue_names(),
                &mol.elements(),
                &mol.bonds(),
                &configs,
            )
        }
        ("pdb", None) => Err(Error::Invalid(format!(
            "{}: PDB output is for molecules; {} has no atoms to name (use .xyz or .npy)",
            path.display(),
            energy.name()
        ))),
        _ => Err(Error::Invalid(format!(
            "{}: output must end in .npy or .xyz{}",
            path.display(),
            if energy.molecule().is_some() {
                " or .pdb"
            } else {
                ""
            }
        ))),
    }
}
