//! AMBER topology files (prmtop): the fixed-width Fortran sections `%FLAG NAME`, `%FORMAT(…)`.
//!
//! Only what the energy needs is kept (molecules.md §1). Atom indices come out 0-based; the
//! file's coordinate offsets (3·index) and 1-based parameter indices are converted here, and
//! every error names the file, the flag and the line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One dihedral term of the topology.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DihedralTerm {
    /// 0-based atoms i, j, k, l.
    pub atoms: [usize; 4],
    /// 0-based index into the dihedral parameter arrays.
    pub param: usize,
    /// A negative third index in the file: this term adds no 1-4 pair (counted by another term).
    pub skip_14: bool,
    /// A negative fourth index in the file: an improper torsion.
    pub improper: bool,
}

/// The parts of an AMBER prmtop that the force field and the drawing need.
#[derive(Debug, Clone, PartialEq)]
pub struct Prmtop {
    /// Atom names (4-character fields, trimmed).
    pub atom_names: Vec<String>,
    /// AMBER atom types ("CT", "HC", …), whose first letters give the element.
    pub atom_types: Vec<String>,
    /// Charges as stored: e × 18.2223, so qᵢqⱼ/r is in kcal/mol.
    pub charges: Vec<f64>,
    /// Masses in g/mol.
    pub masses: Vec<f64>,
    /// 0-based Lennard-Jones type of each atom.
    pub lj_type: Vec<usize>,
    /// Number of Lennard-Jones types.
    pub ntypes: usize,
    /// NONBONDED_PARM_INDEX, ntypes² entries (1-based into the coefficient arrays; ≤ 0: a 10-12 term).
    pub nonbonded_index: Vec<i64>,
    pub lj_acoef: Vec<f64>,
    pub lj_bcoef: Vec<f64>,
    pub bond_k: Vec<f64>,
    pub bond_r0: Vec<f64>,
    pub angle_k: Vec<f64>,
    pub angle_theta0: Vec<f64>,
    pub dihedral_k: Vec<f64>,
    pub dihedral_n: Vec<f64>,
    pub dihedral_phase: Vec<f64>,
    /// 1-4 electrostatic and Lennard-Jones divisors per dihedral type (1.2 and 2.0 when absent).
    pub scee: Vec<f64>,
    pub scnb: Vec<f64>,
    /// (i, j, parameter) with and without hydrogen, together.
    pub bonds: Vec<(usize, usize, usize)>,
    pub angles: Vec<([usize; 3], usize)>,
    pub dihedrals: Vec<DihedralTerm>,
    /// Excluded partners of each atom (0-based, each pair listed once, under its lower atom).
    pub excluded: Vec<Vec<usize>>,
    /// Residue names and the first atom (0-based) of each.
    pub residue_labels: Vec<String>,
    pub residue_start: Vec<usize>,
}

/// One `%FLAG` section: its format and the raw lines, with their 1-based line numbers.
struct Section<'a> {
    flag: &'a str,
    count: usize,
    width: usize,
    kind: char,
    /// Line number of the `%FLAG` line.
    line: usize,
    lines: Vec<(usize, &'a str)>,
}

impl Prmtop {
    /// Reads a prmtop file.
    pub fn load(path: &Path) -> Result<Prmtop> {
        let text = crate::limits::read_text(path, crate::limits::MOLECULE_FILE_BYTES)?;
        Prmtop::parse(&text, path)
    }

    /// Parses prmtop text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Prmtop> {
        let reader = Reader::split(text, path)?;
        let p = reader.ints("POINTERS", None)?;
        if p.len() < 20 {
            return Err(reader.err(
                "POINTERS",
                None,
                format!("has {} values, expected at least 20", p.len()),
            ));
        }
        let count = |i: usize, what: &str| -> Result<usize> {
            usize::try_from(p[i]).map_err(|_| {
                reader.err(
                    "POINTERS",
                    None,
                    format!("{what} (value {}) is negative", i + 1),
                )
            })
        };
        let natom = count(0, "NATOM")?;
        let ntypes = count(1, "NTYPES")?;
        let (nbonh, mbona, ntheth, mtheta, nphih, mphia) = (
            count(2, "NBONH")?,
            count(3, "MBONA")?,
            count(4, "NTHETH")?,
            count(5, "MTHETA")?,
            count(6, "NPHIH")?,
            count(7, "MPHIA")?,
        );
        let nnb = count(10, "NNB")?;
        let nres = count(11, "NRES")?;
        let (numbnd, numang, nptra) = (
            count(15, "NUMBND")?,
            count(16, "NUMANG")?,
            count(17, "NPTRA")?,
        );
        if natom == 0 {
            return Err(reader.err("POINTERS", None, "NATOM is 0: no atoms".into()));
        }

        // Sections are read in the order tleap writes them, so that a truncated file is reported
        // at the first section it lost.
        let atom_names = reader.strings("ATOM_NAME", Some(natom))?;
        let charges = reader.floats("CHARGE", Some(natom))?;
        let masses = reader.floats("MASS", Some(natom))?;
        let lj_type = reader
            .ints("ATOM_TYPE_INDEX", Some(natom))?
            .iter()
            .map(|&t| reader.index1("ATOM_TYPE_INDEX", t, ntypes))
            .collect::<Result<Vec<_>>>()?;
        let nexcl = reader.ints("NUMBER_EXCLUDED_ATOMS", Some(natom))?;
        let nonbonded_index = reader.ints("NONBONDED_PARM_INDEX", Some(ntypes * ntypes))?;
        let residue_labels = reader.strings("RESIDUE_LABEL", Some(nres))?;
        let residue_start = reader
            .ints("RESIDUE_POINTER", Some(nres))?
            .iter()
            .map(|&v| reader.index1("RESIDUE_POINTER", v, natom))
            .collect::<Result<Vec<_>>>()?;
        let bond_k = reader.floats("BOND_FORCE_CONSTANT", Some(numbnd))?;
        let bond_r0 = reader.floats("BOND_EQUIL_VALUE", Some(numbnd))?;
        let angle_k = reader.floats("ANGLE_FORCE_CONSTANT", Some(numang))?;
        let angle_theta0 = reader.floats("ANGLE_EQUIL_VALUE", Some(numang))?;
        let dihedral_k = reader.floats("DIHEDRAL_FORCE_CONSTANT", Some(nptra))?;
        let dihedral_n = reader.floats("DIHEDRAL_PERIODICITY", Some(nptra))?;
        let dihedral_phase = reader.floats("DIHEDRAL_PHASE", Some(nptra))?;
        let scee = if reader.has("SCEE_SCALE_FACTOR") {
            reader.floats("SCEE_SCALE_FACTOR", Some(nptra))?
        } else {
            vec![1.2; nptra]
        };
        let scnb = if reader.has("SCNB_SCALE_FACTOR") {
            reader.floats("SCNB_SCALE_FACTOR", Some(nptra))?
        } else {
            vec![2.0; nptra]
        };
        let ncoef = ntypes * (ntypes + 1) / 2;
        let lj_acoef = reader.floats("LENNARD_JONES_ACOEF", Some(ncoef))?;
        let lj_bcoef = reader.floats("LENNARD_JONES_BCOEF", Some(ncoef))?;
        for &v in &nonbonded_index {
            if v == 0 || v > ncoef as i64 {
                return Err(reader.err(
                    "NONBONDED_PARM_INDEX",
                    None,
                    format!("entry {v} is outside 1..={ncoef}"),
                ));
            }
        }

        let mut bonds = Vec::with_capacity(nbonh + mbona);
        for (flag, n) in [
            ("BONDS_INC_HYDROGEN", nbonh),
            ("BONDS_WITHOUT_HYDROGEN", mbona),
        ] {
            for t in reader.ints(flag, Some(3 * n))?.chunks(3) {
                bonds.push((
                    reader.atom(flag, t[0], natom)?,
                    reader.atom(flag, t[1], natom)?,
                    reader.index1(flag, t[2], numbnd)?,
                ));
            }
        }
        let mut angles = Vec::with_capacity(ntheth + mtheta);
        for (flag, n) in [
            ("ANGLES_INC_HYDROGEN", ntheth),
            ("ANGLES_WITHOUT_HYDROGEN", mtheta),
        ] {
            for t in reader.ints(flag, Some(4 * n))?.chunks(4) {
                let a = [
                    reader.atom(flag, t[0], natom)?,
                    reader.atom(flag, t[1], natom)?,
                    reader.atom(flag, t[2], natom)?,
                ];
                angles.push((a, reader.index1(flag, t[3], numang)?));
            }
        }
        let mut dihedrals = Vec::with_capacity(nphih + mphia);
        for (flag, n) in [
            ("DIHEDRALS_INC_HYDROGEN", nphih),
            ("DIHEDRALS_WITHOUT_HYDROGEN", mphia),
        ] {
            for t in reader.ints(flag, Some(5 * n))?.chunks(5) {
                let atoms = [
                    reader.atom(flag, t[0], natom)?,
                    reader.atom(flag, t[1], natom)?,
                    reader.atom(flag, t[2].abs(), natom)?,
                    reader.atom(flag, t[3].abs(), natom)?,
                ];
                dihedrals.push(DihedralTerm {
                    atoms,
                    param: reader.index1(flag, t[4], nptra)?,
                    skip_14: t[2] < 0,
                    improper: t[3] < 0,
                });
            }
        }

        let list = reader.ints("EXCLUDED_ATOMS_LIST", Some(nnb))?;
        let total: i64 = nexcl.iter().sum();
        if total != nnb as i64 || nexcl.iter().any(|&v| v < 0) {
            return Err(reader.err(
                "NUMBER_EXCLUDED_ATOMS",
                None,
                format!("counts add up to {total}, but NNB in POINTERS is {nnb}"),
            ));
        }
        let mut excluded = Vec::with_capacity(natom);
        let mut at = 0;
        for &k in &nexcl {
            let mut partners = Vec::new();
            for &v in &list[at..at + k as usize] {
                // 0 marks "no exclusions" for this atom.
                if v != 0 {
                    partners.push(reader.index1("EXCLUDED_ATOMS_LIST", v, natom)?);
                }
            }
            at += k as usize;
            excluded.push(partners);
        }
        let atom_types = reader.strings("AMBER_ATOM_TYPE", Some(natom))?;

        Ok(Prmtop {
            atom_names,
            atom_types,
            charges,
            masses,
            lj_type,
            ntypes,
            nonbonded_index,
            lj_acoef,
            lj_bcoef,
            bond_k,
            bond_r0,
            angle_k,
            angle_theta0,
            dihedral_k,
            dihedral_n,
            dihedral_phase,
            scee,
            scnb,
            bonds,
            angles,
            dihedrals,
            excluded,
            residue_labels,
            residue_start,
        })
    }

    /// Number of atoms.
    pub fn atoms(&self) -> usize {
        self.charges.len()
    }

    /// Element symbol of each atom, from its mass (the prmtop has no element column; masses are
    /// the standard atomic weights tleap writes).
    pub fn elements(&self) -> Vec<&'static str> {
        self.masses.iter().map(|&m| element_from_mass(m)).collect()
    }
}

/// The element whose standard atomic weight is nearest to `mass` (within 0.5), else "X".
pub fn element_from_mass(mass: f64) -> &'static str {
    const TABLE: [(&str, f64); 12] = [
        ("H", 1.008),
        ("C", 12.011),
        ("N", 14.007),
        ("O", 15.999),
        ("F", 18.998),
        ("Na", 22.99),
        ("P", 30.974),
        ("S", 32.06),
        ("Cl", 35.45),
        ("K", 39.098),
        ("Br", 79.904),
        ("I", 126.9),
    ];
    TABLE
        .iter()
        .find(|(_, w)| (w - mass).abs() < 0.5)
        .map_or("X", |(s, _)| s)
}

/// The file split into sections, with typed accessors that check counts and name positions.
struct Reader<'a> {
    path: PathBuf,
    sections: HashMap<&'a str, Section<'a>>,
    last_line: usize,
}

impl<'a> Reader<'a> {
    fn split(text: &'a str, path: &Path) -> Result<Reader<'a>> {
        let fail =
            |line: usize, message: String| Error::format(path, format!("line {line}: {message}"));
        let mut sections: HashMap<&str, Section> = HashMap::new();
        let mut current: Option<Section> = None;
        let mut awaiting_format = false;
        let mut last_line = 0;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            last_line = n;
            let line = raw.trim_end_matches('\r');
            if let Some(rest) = line.strip_prefix("%FLAG") {
                if awaiting_format {
                    return Err(fail(
                        n,
                        format!(
                            "%FLAG {} has no %FORMAT line",
                            current.as_ref().map_or("", |s| s.flag)
                        ),
                    ));
                }
                if let Some(s) = current.take() {
                    sections.insert(s.flag, s);
                }
                let flag = rest.trim();
                if flag.is_empty() {
                    return Err(fail(n, "%FLAG without a name".into()));
                }
                current = Some(Section {
                    flag,
                    count: 0,
                    width: 0,
                    kind: ' ',
                    line: n,
                    lines: Vec::new(),
                });
                awaiting_format = true;
            } else if let Some(rest) = line.strip_prefix("%FORMAT") {
                let Some(s) = current.as_mut() else {
                    return Err(fail(n, "%FORMAT before any %FLAG".into()));
                };
                let (count, kind, width) = parse_format(rest).ok_or_else(|| {
                    fail(
                        n,
                        format!("%FLAG {}: cannot read the format '{}'", s.flag, rest.trim()),
                    )
                })?;
                (s.count, s.kind, s.width) = (count, kind, width);
                awaiting_format = false;
            } else if line.starts_with('%') {
                // %VERSION and %COMMENT lines carry nothing the energy needs.
                continue;
            } else if let Some(s) = current.as_mut() {
                if awaiting_format {
                    return Err(fail(n, format!("%FLAG {} has no %FORMAT line", s.flag)));
                }
                s.lines.push((n, line));
            } else if !line.trim().is_empty() {
                return Err(fail(
                    n,
                    "data before the first %FLAG: not a prmtop file".into(),
                ));
            }
        }
        if awaiting_format {
            return Err(fail(last_line, "the file ends after a %FLAG line".into()));
        }
        if let Some(s) = current.take() {
            sections.insert(s.flag, s);
        }
        if sections.is_empty() {
            return Err(Error::format(path, "no %FLAG sections: not a prmtop file"));
        }
        Ok(Reader {
            path: path.to_path_buf(),
            sections,
            last_line,
        })
    }

    fn has(&self, flag: &str) -> bool {
        self.sections.contains_key(flag)
    }

    fn err(&self, flag: &str, line: Option<usize>, message: String) -> Error {
        let line = line
            .or_else(|| self.sections.get(flag).map(|s| s.line))
            .unwrap_or(self.last_line);
        Error::format(&self.path, format!("line {line}: %FLAG {flag}: {message}"))
    }

    /// The fields of a section (each with its line number), `expected` of them if given.
    fn fields(
        &self,
        flag: &str,
        kind: char,
        expected: Option<usize>,
    ) -> Result<Vec<(usize, &'a str)>> {
        let s = self.sections.get(flag).ok_or_else(|| {
            Error::format(
                &self.path,
                format!(
                    "line {}: missing %FLAG {flag} (the file may be truncated)",
                    self.last_line
                ),
            )
        })?;
        if s.kind != kind {
            return Err(self.err(
                flag,
                None,
                format!("format has type '{}', expected '{kind}'", s.kind),
            ));
        }
        let mut out = Vec::new();
        for &(n, line) in &s.lines {
            let mut rest = line;
            let mut k = 0;
            while !rest.is_empty() && k < s.count {
                let cut = rest
                    .char_indices()
                    .nth(s.width)
                    .map_or(rest.len(), |(c, _)| c);
                let (field, tail) = rest.split_at(cut);
                out.push((n, field));
                rest = tail;
                k += 1;
            }
        }
        // A string section's last line may end in blank padding: drop blank fields at the end.
        if kind == 'a' {
            while out.last().is_some_and(|(_, f)| f.trim().is_empty())
                && expected.is_some_and(|e| out.len() > e)
            {
                out.pop();
            }
        }
        if let Some(e) = expected {
            if out.len() != e {
                let line = s.lines.last().map_or(s.line, |l| l.0);
                return Err(self.err(
                    flag,
                    Some(line),
                    format!(
                        "has {} values, expected {e} (truncated or malformed)",
                        out.len()
                    ),
                ));
            }
        }
        Ok(out)
    }

    fn ints(&self, flag: &str, expected: Option<usize>) -> Result<Vec<i64>> {
        self.fields(flag, 'I', expected)?
            .into_iter()
            .map(|(n, f)| {
                f.trim().parse::<i64>().map_err(|_| {
                    self.err(
                        flag,
                        Some(n),
                        format!("cannot read '{}' as an integer", f.trim()),
                    )
                })
            })
            .collect()
    }

    fn floats(&self, flag: &str, expected: Option<usize>) -> Result<Vec<f64>> {
        self.fields(flag, 'E', expected)?
            .into_iter()
            .map(|(n, f)| {
                let t = f.trim().replace(['D', 'd'], "E");
                t.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        self.err(
                            flag,
                            Some(n),
                            format!("cannot read '{}' as a number", f.trim()),
                        )
                    })
            })
            .collect()
    }

    fn strings(&self, flag: &str, expected: Option<usize>) -> Result<Vec<String>> {
        Ok(self
            .fields(flag, 'a', expected)?
            .into_iter()
            .map(|(_, f)| f.trim().to_string())
            .collect())
    }

    /// A 1-based index in `1..=n`, as 0-based.
    fn index1(&self, flag: &str, v: i64, n: usize) -> Result<usize> {
        if v >= 1 && v as usize <= n {
            Ok(v as usize - 1)
        } else {
            Err(self.err(flag, None, format!("index {v} is outside 1..={n}")))
        }
    }

    /// An atom given as a coordinate offset 3·index.
    fn atom(&self, flag: &str, v: i64, natom: usize) -> Result<usize> {
        if v >= 0 && v % 3 == 0 && (v / 3) < natom as i64 {
            Ok(v as usize / 3)
        } else {
            Err(self.err(
                flag,
                None,
                format!("atom offset {v} is not 3·index of one of {natom} atoms"),
            ))
        }
    }
}

/// `(10I8)` → (10, 'I', 8); `(5E16.8)` → (5, 'E', 16); `(20a4)` → (20, 'a', 4).
fn parse_format(s: &str) -> Option<(usize, char, usize)> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?.trim();
    let pos = inner.find(|c: char| c.is_ascii_alphabetic())?;
    let count = if pos == 0 {
        1
    } else {
        inner[..pos].parse().ok()?
    };
    let kind = match inner[pos..].chars().next()? {
        'a' | 'A' => 'a',
        'i' | 'I' => 'I',
        'e' | 'E' | 'f' | 'F' | 'd' | 'D' | 'g' | 'G' => 'E',
        _ => return None,
    };
    let width_str = inner[pos + 1..].split('.').next()?;
    let width: usize = width_str.parse().ok()?;
    (count > 0 && width > 0).then_some((count, kind, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = include_str!("../../assets/molecules/alanine-dipeptide.prmtop");

    fn parse(text: &str) -> Result<Prmtop> {
        Prmtop::parse(text, Path::new("ala.prmtop"))
    }

    #[test]
    fn reads_alanine_dipeptide() {
        let p = parse(FILE).unwrap();
        assert_eq!(p.atoms(), 22);
        assert_eq!(p.atom_names[1], "CH3");
        assert_eq!(p.atom_names[18], "CH3");
        assert_eq!(p.bonds.len(), 21);
        assert_eq!(p.angles.len(), 36);
        assert_eq!(p.dihedrals.len(), 52);
        // 99 entries in the list, one of them the 0 of the last atom, which has no partner left.
        assert_eq!(p.excluded.iter().map(Vec::len).sum::<usize>(), 98);
        assert_eq!(p.residue_labels, ["ACE", "ALA", "NME"]);
        assert_eq!(p.residue_start, [0, 6, 16]);
        assert_eq!(&p.elements()[..8], ["H", "C", "H", "H", "C", "O", "N", "H"]);
        // Net charge zero (in stored units).
        assert!(p.charges.iter().sum::<f64>().abs() < 1e-6);
    }

    #[test]
    fn formats() {
        assert_eq!(parse_format("(10I8)"), Some((10, 'I', 8)));
        assert_eq!(parse_format("(5E16.8)  "), Some((5, 'E', 16)));
        assert_eq!(parse_format("(20a4)"), Some((20, 'a', 4)));
        assert_eq!(parse_format("(1a80)"), Some((1, 'a', 80)));
        assert_eq!(parse_format("(a80)"), Some((1, 'a', 80)));
        assert_eq!(parse_format("10I8"), None);
        assert_eq!(parse_format("(10Q8)"), None);
    }

    #[test]
    fn truncated_file_names_the_missing_flag() {
        let cut = &FILE[..FILE.find("%FLAG BONDS_INC_HYDROGEN").unwrap()];
        let e = parse(cut).unwrap_err().to_string();
        assert!(e.starts_with("ala.prmtop: line "), "{e}");
        assert!(
            e.contains("missing %FLAG ") && e.contains("truncated"),
            "{e}"
        );
        // Cut in the middle of a section: the count is short.
        let mid = FILE.find("%FLAG MASS").unwrap() - 40;
        let e = parse(&FILE[..mid]).unwrap_err().to_string();
        assert!(
            e.contains("%FLAG CHARGE: has 20 values, expected 22"),
            "{e}"
        );
        assert!(e.contains("line 20"), "{e}");
    }

    #[test]
    fn malformed_number_names_flag_and_line() {
        let bad = FILE.replacen(
            "  2.04636429E+00 -6.67300626E+00",
            "  2.0463x429E+00 -6.67300626E+00",
            1,
        );
        let e = parse(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            "ala.prmtop: line 17: %FLAG CHARGE: cannot read '2.0463x429E+00' as a number"
        );
        let e = parse("hello\n").unwrap_err().to_string();
        assert!(e.contains("not a prmtop"), "{e}");
        let e = parse("").unwrap_err().to_string();
        assert!(e.contains("not a prmtop"), "{e}");
    }

    #[test]
    fn out_of_range_atom_is_an_error() {
        // The first bond with hydrogen is "3 6 3" (atoms 1 and 2): make it point past the last atom.
        let start = FILE.find("%FLAG BONDS_INC_HYDROGEN").unwrap();
        let data = start + FILE[start..].find("\n%FORMAT").unwrap() + 1;
        let data = data + FILE[data..].find('\n').unwrap() + 1;
        let mut bad = FILE.to_string();
        bad.replace_range(data..data + 8, &format!("{:>8}", 3 * 22));
        let e = parse(&bad).unwrap_err().to_string();
        assert!(
            e.contains("%FLAG BONDS_INC_HYDROGEN: atom offset 66"),
            "{e}"
        );
    }
}
