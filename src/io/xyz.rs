//! Extended XYZ output: one frame per sample, readable by ASE (`ase.io.read(f, ":")`) and OVITO.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::energy::Layout;
use crate::error::{Error, Result};
use crate::types::Matrix;

/// Writes every row of `samples` as a frame. 2-D systems get z = 0. `energies`, when given,
/// go into each comment line as `energy=…`, which ASE reads into `atoms.info["energy"]`.
pub fn write_xyz(
    path: &Path,
    samples: &Matrix,
    layout: Layout,
    species: &str,
    energies: Option<&[f64]>,
) -> Result<()> {
    if samples.cols != layout.dim() {
        return Err(Error::Invalid(format!(
            "cannot write {}: samples have {} coordinates, the system has {}",
            path.display(),
            samples.cols,
            layout.dim()
        )));
    }
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(file);
    let d = layout.spatial_dim;
    let mut write_all = || -> std::io::Result<()> {
        for i in 0..samples.rows {
            writeln!(w, "{}", layout.particles)?;
            write!(w, "Properties=species:S:1:pos:R:3 pbc=\"F F F\" sample={i}")?;
            if let Some(e) = energies {
                write!(w, " energy={:.8}", e[i])?;
            }
            writeln!(w)?;
            for p in samples.row(i).chunks(d) {
                let z = if d == 3 { p[2] } else { 0.0 };
                writeln!(
                    w,
                    "{species} {:.6} {:.6} {:.6}",
                    p[0],
                    p.get(1).copied().unwrap_or(0.0),
                    z
                )?;
            }
        }
        w.flush()
    };
    write_all().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_frames_with_energy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.xyz");
        let layout = Layout {
            particles: 2,
            spatial_dim: 2,
            com_free: true,
        };
        let m = Matrix::new(2, 4, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        write_xyz(&p, &m, layout, "X", Some(&[-1.5, 2.0])).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(lines[0], "2");
        assert!(
            lines[1].contains("energy=-1.50000000")
                && lines[1].starts_with("Properties=species:S:1:pos:R:3")
        );
        assert_eq!(lines[3], "X 2.000000 3.000000 0.000000");
        assert!(lines[5].contains("sample=1"));
    }
}
