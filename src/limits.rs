//! Bounds on everything a user can size: counts in scene files, run state, flags and UI fields,
//! and the files the program reads. A value is checked here before anything is allocated for
//! it, and the error says which field, what value, what bound, and what the value would cost.
//!
//! The bounds are far above what this app's systems use on a laptop (the largest shipped scene
//! uses batch 256, 1000 SDE steps, a 10 000-row buffer) and far below what exhausts memory.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Text files: scenes, lessons, sessions, run state (JSON), quality records.
pub const TEXT_FILE_BYTES: u64 = 16 << 20;
/// Molecule input files (AMBER prmtop, PDB): a solvated protein's prmtop is tens of MB.
pub const MOLECULE_FILE_BYTES: u64 = 256 << 20;
/// Sample files (.npy) and checkpoints (.safetensors).
pub const DATA_FILE_BYTES: u64 = 1 << 30;

/// Samples simulated or trained on at once (batch_size, new_samples, MCMC chains).
pub const MAX_BATCH: u64 = 100_000;
/// Rows kept in a replay buffer.
pub const MAX_BUFFER: u64 = 1_000_000;
/// Euler steps of an SDE (sde_steps, sample_steps).
pub const MAX_SDE_STEPS: u64 = 100_000;
/// Gradient steps per outer iteration; sweeps of burn-in and thinning.
pub const MAX_ITERATION_STEPS: u64 = 10_000_000;
/// iDEM's Monte-Carlo points per training example.
pub const MAX_MC_SAMPLES: u64 = 100_000;
/// Network width and depth.
pub const MAX_HIDDEN: u64 = 4096;
pub const MAX_LAYERS: u64 = 64;
/// Parallel-tempering replicas and leapfrog steps per HMC proposal.
pub const MAX_REPLICAS: u64 = 64;
pub const MAX_LEAPFROG: u64 = 10_000;
/// Samples compared by the metrics: exact optimal transport holds an n × n cost matrix (8 n²
/// bytes: 200 MB at 5000) and eq-W2 aligns n² pairs.
pub const MAX_EVAL_SAMPLES: u64 = 5000;
/// Samples drawn by `sample` into one file (held in memory, then written).
pub const MAX_DRAW: u64 = 1_000_000;
/// Cells of the app's sample grid per side.
pub const MAX_VIEW_GRID: u64 = 12;

/// Checks `1 ≤ value ≤ max`. `bytes_each` is a lower estimate of the memory one unit of the value
/// costs (0 when it costs time, not memory); the message names the bound and that cost. The
/// caller prefixes the field's name.
pub fn count(value: u64, max: u64, bytes_each: u64) -> std::result::Result<(), String> {
    if value == 0 {
        return Err("must be at least 1".into());
    }
    if value <= max {
        return Ok(());
    }
    let cost = if bytes_each == 0 {
        String::new()
    } else {
        format!(
            ", which would need at least {} of memory",
            human_bytes(value as f64 * bytes_each as f64)
        )
    };
    Err(format!("must be at most {max} (got {value}{cost})"))
}

/// `1 ≤ value ≤ max` for a `usize` field, as [`count`].
pub fn count_usize(value: usize, max: u64, bytes_each: u64) -> std::result::Result<(), String> {
    count(value as u64, max, bytes_each)
}

/// [`count`] for a command-line flag: the error names the flag.
pub fn flag(name: &str, value: usize, max: u64, bytes_each: u64) -> Result<()> {
    count_usize(value, max, bytes_each).map_err(|m| Error::Invalid(format!("{name} {m}")))
}

/// "1.2 GB", "3.4 TB": powers of 1000, as a user reads a disk or memory size.
pub fn human_bytes(bytes: f64) -> String {
    let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", units[0])
    } else if v < 10.0 {
        format!("{v:.1} {}", units[u])
    } else {
        format!("{v:.0} {}", units[u])
    }
}

/// Reads a whole file of at most `max` bytes. Devices, FIFOs and folders are refused before
/// reading (`/dev/zero` would never end), and so is a file over the limit; a file that grows
/// while it is read stops at `max + 1` bytes and is refused too.
pub fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a device, pipe or socket)"
        };
        return Err(Error::format(path, format!("is {what}; expected a file")));
    }
    if meta.len() > max {
        return Err(too_big(path, meta.len(), max));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(too_big(path, bytes.len() as u64, max));
    }
    Ok(bytes)
}

fn too_big(path: &Path, len: u64, max: u64) -> Error {
    Error::format(
        path,
        format!(
            "is {} long; files of this kind are limited to {}",
            human_bytes(len as f64),
            human_bytes(max as f64)
        ),
    )
}

/// Reads a UTF-8 text file of at most `max` bytes, without a leading byte-order mark (editors
/// on Windows write one; RON and JSON parsers would stop at it).
pub fn read_text(path: &Path, max: u64) -> Result<String> {
    let bytes = read_bytes(path, max)?;
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .map(<[u8]>::to_vec)
        .unwrap_or(bytes);
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..at]);
        let line = text.matches('\n').count() + 1;
        let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Error::Scene {
            path: path.to_path_buf(),
            line,
            col,
            message: "is not UTF-8 text (an invalid byte here)".into(),
        }
    })
}

pub use crate::error::excerpt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_name_bound_value_and_memory() {
        assert!(count(5, 10, 4).is_ok());
        assert_eq!(count(0, 10, 4).unwrap_err(), "must be at least 1");
        let m = count(1_000_000_000_000, MAX_BATCH, 156).unwrap_err();
        assert_eq!(
            m,
            "must be at most 100000 (got 1000000000000, which would need at least 156 TB of memory)"
        );
        let m = count(u64::MAX, MAX_BATCH, 156).unwrap_err();
        assert!(
            m.contains("18446744073709551615") && m.contains("EB"),
            "{m}"
        );
        assert!(!count(11, 10, 0).unwrap_err().contains("memory"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(999.0), "999 bytes");
        assert_eq!(human_bytes(1500.0), "1.5 KB");
        assert_eq!(human_bytes(16.0 * 1024.0 * 1024.0), "17 MB");
    }

    #[test]
    fn special_and_large_files_are_refused() {
        let e = read_bytes(Path::new("/dev/zero"), 100)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/dev/zero: is not a regular file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = read_bytes(dir.path(), 100).unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        let p = dir.path().join("big.ron");
        std::fs::write(&p, vec![b'x'; 2000]).unwrap();
        let e = read_text(&p, 1000).unwrap_err().to_string();
        assert!(
            e.contains("2.0 KB long") && e.contains("limited to 1.0 KB"),
            "{e}"
        );
    }

    #[test]
    fn text_loses_its_byte_order_mark_and_bad_bytes_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bom.ron");
        std::fs::write(&p, b"\xEF\xBB\xBFScene()").unwrap();
        assert_eq!(read_text(&p, 100).unwrap(), "Scene()");
        std::fs::write(&p, b"a\nbc\xFFd").unwrap();
        let e = read_text(&p, 100).unwrap_err().to_string();
        assert!(
            e.ends_with("bom.ron:2:3: is not UTF-8 text (an invalid byte here)"),
            "{e}"
        );
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("abc", 5), "abc");
        let long = "x".repeat(5_000_000);
        let e = excerpt(&long, 40);
        assert!(e.len() < 80 && e.ends_with("… (5000000 characters)"), "{e}");
    }
}
