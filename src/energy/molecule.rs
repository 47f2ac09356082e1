//! The view of a molecule that energies in torsion space give to the app and the file writers
//! (atoms, bonds, positions for given torsions). Declared with the energies, which hand it out
//! through [`Energy::molecule`](super::Energy::molecule); the molecules themselves live in
//! `crate::molecule`.

/// Boltzmann's constant in kcal/(mol·K) (molecules.md §1).
pub const KB_KCAL_PER_MOL_K: f64 = 0.0019872041;

/// What the app and the file writers need to show a molecule in torsion coordinates.
pub trait Molecule: Send + Sync {
    /// Element symbols, one per atom.
    fn elements(&self) -> Vec<&'static str>;
    /// Atom names and residue names, one per atom (for PDB files).
    fn atom_names(&self) -> Vec<String>;
    fn residue_names(&self) -> Vec<String>;
    /// Bonds of the topology (0-based atom pairs).
    fn bonds(&self) -> Vec<(usize, usize)>;
    /// Names of the free torsions ("phi", "psi", …), in coordinate order.
    fn torsion_names(&self) -> Vec<String>;
    /// Atom positions (atoms × 3, Å) for torsion values `theta` (radians).
    fn positions(&self, theta: &[f64]) -> Vec<f64>;
    /// Temperature in kelvin.
    fn temperature(&self) -> f64;
    /// k_BT in kcal/mol: the unit of the reduced energy.
    fn kt_kcal(&self) -> f64 {
        KB_KCAL_PER_MOL_K * self.temperature()
    }
}
