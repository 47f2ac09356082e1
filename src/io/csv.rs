//! Metrics as CSV: a header row, then one row per step; missing values are left empty.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A CSV file written a row at a time and flushed after each row, so a run that is killed
/// keeps everything up to its last row.
pub struct CsvWriter {
    path: PathBuf,
    out: BufWriter<File>,
    columns: usize,
}

impl CsvWriter {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path, header: &[&str]) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            columns: header.len(),
        };
        w.write_line(&header.join(","))?;
        Ok(w)
    }

    /// Opens `path` for appending, keeping its rows (for a resumed run).
    pub fn append(path: &Path, columns: usize) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            columns,
        })
    }

    /// Writes one row; `None` and non-finite values become empty cells.
    pub fn row(&mut self, values: &[Option<f64>]) -> Result<()> {
        assert_eq!(
            values.len(),
            self.columns,
            "CSV row has {} values, header has {}",
            values.len(),
            self.columns
        );
        let cells: Vec<String> = values
            .iter()
            .map(|v| match v {
                Some(x) if x.is_finite() => format!("{x}"),
                _ => String::new(),
            })
            .collect();
        self.write_line(&cells.join(","))
    }

    /// Writes one row of text cells (already formatted; no commas inside).
    pub fn text_row(&mut self, cells: &[String]) -> Result<()> {
        assert_eq!(
            cells.len(),
            self.columns,
            "CSV row has {} cells, header has {}",
            cells.len(),
            self.columns
        );
        self.write_line(&cells.join(","))
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_header_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        let mut w = CsvWriter::create(&p, &["step", "loss", "energy_w2"]).unwrap();
        w.row(&[Some(1.0), Some(0.5), None]).unwrap();
        w.row(&[Some(2.0), Some(f64::NAN), Some(0.25)]).unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "step,loss,energy_w2\n1,0.5,\n2,,0.25\n"
        );
    }
}
