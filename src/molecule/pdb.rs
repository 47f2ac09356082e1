//! PDB coordinates: the ATOM/HETATM records of the first model, and a multi-model writer.
//!
//! Only the fixed columns the sampler needs are read (name 13–16, residue 18–20, x/y/z 31–54):
//! elements, bonds and charges come from the topology, which the structure must match atom for
//! atom. (A full PDB crate would parse a great deal we would then ignore; the format's fixed
//! columns make the reader a few lines, and its errors say the file, line and column.)

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};

/// The atoms of a structure, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Structure {
    /// Atom names (columns 13–16, trimmed).
    pub names: Vec<String>,
    /// Residue names (columns 18–20).
    pub residues: Vec<String>,
    /// Positions in Å, atoms × 3.
    pub positions: Vec<f64>,
}

impl Structure {
    pub fn atoms(&self) -> usize {
        self.names.len()
    }
}

/// Reads the first model of a PDB file.
pub fn load(path: &Path) -> Result<Structure> {
    let text = crate::limits::read_text(path, crate::limits::MOLECULE_FILE_BYTES)?;
    parse(&text, path)
}

/// Parses PDB text; `path` is used in messages only.
pub fn parse(text: &str, path: &Path) -> Result<Structure> {
    let mut s = Structure {
        names: Vec::new(),
        residues: Vec::new(),
        positions: Vec::new(),
    };
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("ENDMDL") {
            break;
        }
        if !(line.starts_with("ATOM") || line.starts_with("HETATM")) {
            continue;
        }
        let field = |a: usize, b: usize| line.get(a..b.min(line.len())).unwrap_or("");
        for (k, (a, b)) in [(30, 38), (38, 46), (46, 54)].into_iter().enumerate() {
            let raw = field(a, b);
            let v: f64 = raw
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!(
                            "line {}, column {}: cannot read the {} coordinate from '{}'",
                            i + 1,
                            a + 1,
                            ["x", "y", "z"][k],
                            raw.trim()
                        ),
                    )
                })?;
            s.positions.push(v);
        }
        s.names.push(field(12, 16).trim().to_string());
        s.residues.push(field(17, 20).trim().to_string());
    }
    if s.names.is_empty() {
        return Err(Error::format(
            path,
            "no ATOM or HETATM records: not a PDB structure",
        ));
    }
    Ok(s)
}

/// Writes configurations (each atoms × 3, Å) as a multi-model PDB that VMD, PyMOL, ChimeraX
/// and MDTraj read: one MODEL per configuration, atom names, residues and elements from the
/// topology, CONECT records for the bonds.
pub fn write_models(
    path: &Path,
    names: &[String],
    residues: &[String],
    elements: &[&str],
    bonds: &[(usize, usize)],
    configs: &[Vec<f64>],
) -> Result<()> {
    let mut out = String::new();
    let mut residue_number = 0;
    let mut residue_of = Vec::with_capacity(names.len());
    for (a, r) in residues.iter().enumerate() {
        if a == 0 || residues[a - 1] != *r {
            residue_number += 1;
        }
        residue_of.push(residue_number);
    }
    for (m, x) in configs.iter().enumerate() {
        let _ = writeln!(out, "MODEL     {:>4}", m + 1);
        for a in 0..names.len() {
            // Names of four characters start in column 13, shorter ones in column 14.
            let name = if names[a].len() >= 4 {
                names[a].clone()
            } else {
                format!(" {}", names[a])
            };
            let _ = writeln!(
                out,
                "ATOM  {:>5} {:<4} {:>3} A{:>4}    {:>8.3}{:>8.3}{:>8.3}  1.00  0.00          {:>2}",
                a + 1,
                name,
                residues[a],
                residue_of[a],
                x[3 * a],
                x[3 * a + 1],
                x[3 * a + 2],
                elements[a]
            );
        }
        let _ = writeln!(out, "ENDMDL");
    }
    for &(i, j) in bonds {
        let _ = writeln!(out, "CONECT{:>5}{:>5}", i + 1, j + 1);
    }
    out.push_str("END\n");
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = include_str!("../../assets/molecules/alanine-dipeptide.pdb");

    #[test]
    fn reads_the_shipped_structure() {
        let s = parse(FILE, Path::new("a.pdb")).unwrap();
        assert_eq!(s.atoms(), 22);
        assert_eq!(s.names[0], "1HH3");
        assert_eq!(s.names[8], "CA");
        assert_eq!(s.residues[8], "ALA");
        assert_eq!(&s.positions[..3], &[2.0, 1.0, -0.0]);
    }

    #[test]
    fn bad_coordinate_names_line_and_column() {
        let bad = FILE.replacen("   4.853", "   4.8x3", 1);
        let e = parse(&bad, Path::new("a.pdb")).unwrap_err().to_string();
        assert_eq!(
            e,
            "a.pdb: line 10, column 31: cannot read the x coordinate from '4.8x3'"
        );
        let e = parse("HELLO\n", Path::new("a.pdb"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no ATOM"), "{e}");
    }

    #[test]
    fn written_models_read_back() {
        let s = parse(FILE, Path::new("a.pdb")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.pdb");
        let elements = vec!["C"; 22];
        let mut second = s.positions.clone();
        second[0] += 1.5;
        write_models(
            &p,
            &s.names,
            &s.residues,
            &elements,
            &[(0, 1)],
            &[s.positions.clone(), second.clone()],
        )
        .unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back.names, s.names);
        assert_eq!(back.residues, s.residues);
        assert_eq!(back.positions, s.positions);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.matches("MODEL").count(), 2);
    }
}
