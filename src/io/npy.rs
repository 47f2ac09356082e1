//! NumPy `.npy` arrays of samples: 2-D, C order, float32 or float64.
//!
//! npyz parses the header; this module adds the checks a user's file needs (order, dtype, rank,
//! truncation, non-finite values) and error messages that name the file and the fault.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use npyz::{Order, WriterBuilder};

use crate::error::{Error, Result};
use crate::types::Matrix;

/// Reads a 2-D float32 or float64 `.npy` file (float64 is narrowed to f32).
///
/// A 1-D file of length `d` is read as one row. Fortran order, other dtypes, higher ranks,
/// truncated data and NaN/inf values are errors naming the file.
pub fn read_npy(path: &Path) -> Result<Matrix> {
    // Sample files are a few MB: reading them whole lets the header's length, and so any
    // truncation, be measured exactly.
    let bytes = crate::limits::read_bytes(path, crate::limits::DATA_FILE_BYTES)?;
    parse_npy(&bytes, path)
}

/// Parses the bytes of a `.npy` file as [`read_npy`] does; `path` is named in errors only.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<Matrix> {
    check_header_text(bytes)
        .map_err(|m| Error::format(path, format!("not a valid .npy file ({m})")))?;
    let mut rest: &[u8] = bytes;
    let header = npyz::NpyHeader::from_reader(&mut rest)
        .map_err(|e| Error::format(path, format!("not a valid .npy file ({e})")))?;
    if header.order() == Order::Fortran {
        return Err(Error::format(
            path,
            "array is in Fortran order; save it in C order (numpy.ascontiguousarray) and try again",
        ));
    }
    let (rows, cols) = match *header.shape() {
        [n] => (1, n),
        [r, c] => (r, c),
        ref s => {
            return Err(Error::format(
                path,
                format!("array has shape {s:?}; expected 2-D (samples × coordinates)"),
            ));
        }
    };
    let descr = header.dtype().descr();
    let item_size = match descr.trim_matches('\'') {
        "<f4" | ">f4" => 4,
        "<f8" | ">f8" => 8,
        other => {
            return Err(Error::format(
                path,
                format!("dtype '{other}' is not supported; expected float32 or float64"),
            ));
        }
    };
    // Checked: a header may claim 2⁶² rows, whose byte count wraps to a small number.
    let expected = rows
        .checked_mul(cols)
        .and_then(|v| v.checked_mul(item_size))
        .filter(|&v| v <= usize::MAX as u64);
    let Some(expected) = expected.map(|v| v as usize) else {
        return Err(Error::format(
            path,
            format!("header claims shape ({rows}, {cols}), more data than any file holds"),
        ));
    };
    let (rows, cols) = (rows as usize, cols as usize);
    if rest.len() < expected {
        return Err(Error::format(
            path,
            format!(
                "file is truncated: shape ({rows}, {cols}) needs {expected} data bytes, found {}",
                rest.len()
            ),
        ));
    }
    let npy = npyz::NpyFile::with_header(header, rest);
    let data: Vec<f32> = if item_size == 4 {
        npy.into_vec::<f32>()
    } else {
        npy.into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect())
    }
    .map_err(|e| Error::format(path, format!("could not read data ({e})")))?;
    let m = Matrix { rows, cols, data };
    if let Some((r, c)) = m.first_non_finite() {
        return Err(Error::format(
            path,
            format!(
                "row {r}, column {c} is {}; samples must be finite",
                m.data[r * cols + c]
            ),
        ));
    }
    Ok(m)
}

/// NumPy's own reader refuses headers over 10 000 bytes (`max_header_size`, for safety).
const MAX_HEADER: usize = 10_000;

/// Checks the header's size and nesting before npyz parses it: its Python-literal parser
/// backtracks exponentially on nested brackets (the fuzzer found a 169-byte file with 30 `{`
/// that never finished). A real header is a dict holding a tuple: two levels.
fn check_header_text(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("no NumPy magic string at the start".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("format version {v} is not known")),
    };
    if len > MAX_HEADER {
        return Err(format!(
            "header of {len} bytes; NumPy writes at most {MAX_HEADER}"
        ));
    }
    let header = &bytes[start..bytes.len().min(start + len)];
    // Brackets inside quotes count too: a real header has none there, and tracking quotes let a
    // backslash-escaped quote hide 60 `[` from the count (the fuzzer's second hang).
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &b in header {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > 3 {
        return Err(format!(
            "header nested {deepest} levels deep; a NumPy header has 2"
        ));
    }
    check_shape_product(header)
}

/// npyz multiplies the shape's entries unchecked: the fuzzer's (60023182, 7908188962817, 2)
/// panicked where overflow checks are on (debug builds) and wraps where they are off. Entries
/// are multiplied in npyz's order; one that is not a plain integer is left for npyz to refuse.
fn check_shape_product(header: &[u8]) -> std::result::Result<(), String> {
    let text = String::from_utf8_lossy(header);
    let Some(key) = text.find("'shape'").or_else(|| text.find("\"shape\"")) else {
        return Ok(());
    };
    let after = &text[key..];
    let (Some(open), Some(close)) = (after.find('('), after.find(')')) else {
        return Ok(());
    };
    if close < open {
        return Ok(());
    }
    let dims = &after[open + 1..close];
    let mut n: u64 = 1;
    for d in dims.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let Ok(v) = d.parse::<u64>() else { continue };
        n = n.checked_mul(v).ok_or_else(|| {
            format!(
                "header claims shape ({}), more data than any file holds",
                crate::limits::excerpt(dims.trim(), 80)
            )
        })?;
    }
    Ok(())
}

/// Writes `m` as a float32 `.npy` file of shape (rows, cols).
pub fn write_npy(path: &Path, m: &Matrix) -> Result<()> {
    write_values(path, &[m.rows as u64, m.cols as u64], &m.data)
}

/// Writes `data` as a float64 `.npy` file of the given shape (row-major), e.g. `&[n]` for a
/// vector of energies.
pub fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    let shape: Vec<u64> = shape.iter().map(|&v| v as u64).collect();
    write_values(path, &shape, data)
}

fn write_values<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: &[T],
) -> Result<()> {
    assert_eq!(data.len() as u64, shape.iter().product::<u64>());
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let io_err = |e| Error::io(path, e);
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(io_err)?;
    w.extend(data.iter().copied()).map_err(io_err)?;
    w.finish().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        (dir, p)
    }

    #[test]
    fn round_trips_f32_and_f64() {
        let (_d, p) = tmp("a.npy");
        let m = Matrix::new(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        write_npy(&p, &m).unwrap();
        assert_eq!(read_npy(&p).unwrap(), m);
        write_npy_f64(&p, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let r = read_npy(&p).unwrap();
        assert_eq!((r.rows, r.cols), (3, 2));
        assert_eq!(r.data, m.data);
    }

    fn err_of(bytes: &[u8]) -> String {
        let (_d, p) = tmp("bad.npy");
        std::fs::write(&p, bytes).unwrap();
        read_npy(&p).unwrap_err().to_string()
    }

    fn header(descr: &str, fortran: bool, shape: &str) -> Vec<u8> {
        let mut text = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + text.len() + 1) % 64 != 0 {
            text.push(' ');
        }
        text.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((text.len() as u16).to_le_bytes());
        out.extend(text.as_bytes());
        out
    }

    #[test]
    fn rejects_bad_files_with_clear_messages() {
        assert!(err_of(b"hello world").contains("not a valid .npy"));
        let mut f = header("<f4", true, "(2, 2)");
        f.extend([0u8; 16]);
        assert!(err_of(&f).contains("Fortran order"));
        let mut i = header("<i8", false, "(2, 2)");
        i.extend([0u8; 32]);
        assert!(err_of(&i).contains("dtype '<i8'"));
        let mut t = header("<f4", false, "(4, 3)");
        t.extend([0u8; 20]);
        let msg = err_of(&t);
        assert!(msg.contains("truncated") && msg.contains("48"), "{msg}");
        let mut r3 = header("<f4", false, "(1, 2, 2)");
        r3.extend([0u8; 16]);
        assert!(err_of(&r3).contains("expected 2-D"));
        let mut nan = header("<f4", false, "(1, 2)");
        nan.extend(1.0f32.to_le_bytes());
        nan.extend(f32::NAN.to_le_bytes());
        assert!(err_of(&nan).contains("row 0, column 1 is NaN"));
        // Found by a hostile user: 2⁶² × 8 × 4 bytes wraps to 0 in unchecked arithmetic.
        let mut wrap = header("<f4", false, "(4611686018427387904, 8)");
        wrap.extend([0u8; 1600]);
        let msg = err_of(&wrap);
        assert!(msg.contains("more data than any file holds"), "{msg}");
        // Found by the fuzzer: npyz's header parser never finished on nested brackets.
        let mut nested = b"\x93NUMPY\x01\x00\x5b\x00{{'descr':".to_vec();
        nested.extend([b'{'; 30]);
        nested.extend(b"'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }");
        let start = std::time::Instant::now();
        let msg = err_of(&nested);
        assert!(
            msg.contains("nested 33 levels deep") && start.elapsed().as_secs() < 1,
            "{msg}"
        );
        // Found by the fuzzer: a backslash-escaped quote made the nesting check skip 60 `[`.
        let escaped = b"\x93NUMPY\x01\x00v\x00{'d(\x00\x00\x00': '>f4', 'fort': False, {'lr': False, {'d (6~  }\x5c\x5c\x5c'd \x5c\x5c\x5c%\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x00r':[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[(B'sha1',(B'sha1\x0d\x0a37UM, she':(5 , 2), e\x00\xff\xff\x10\x00\x00 \x00\x00   @";
        let start = std::time::Instant::now();
        let msg = err_of(escaped);
        assert!(
            msg.contains("levels deep") && start.elapsed().as_secs() < 1,
            "{msg}"
        );
        let mut long = b"\x93NUMPY\x02\x00".to_vec();
        long.extend(20_000u32.to_le_bytes());
        long.extend(vec![b' '; 20_000]);
        assert!(err_of(&long).contains("header of 20000 bytes"));
        // Found by the fuzzer: a shape whose entries' product overflows u64 (npyz multiplied
        // them unchecked: a panic with overflow checks on, a wrapped count without). Before,
        // the 3-D shape reached the rank check ("array has shape …") in a release build.
        let mut overflow = header(
            "<f8",
            false,
            "(0000000000000000000000000000060023182,7908188962817,    2)",
        );
        overflow.extend([0u8; 24]);
        let msg = err_of(&overflow);
        assert!(msg.contains("more data than any file holds"), "{msg}");
        let fuzzed = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (0000000000000000000000000000060023182,7908188962817,    2), }             UMPY\x01\x00[\x006\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x18";
        assert!(
            err_of(fuzzed).contains("more data than any file holds"),
            "{}",
            err_of(fuzzed)
        );
        let mut huge = header("<f8", false, "(1000000000000, 8)");
        huge.extend([0u8; 64]);
        assert!(err_of(&huge).contains("truncated"));
    }
}
