//! Helpers shared by the integration tests: run the real binary, find project files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of a file in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `boltzmann-studio` with `args` in `cwd`.
pub fn run_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_boltzmann-studio"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the binary runs")
}

/// Runs `boltzmann-studio` with `args` in the repository root.
pub fn run(args: &[&str]) -> Output {
    run_in(&repo("."), args)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The value after `key` on the line that starts with it in `text`.
pub fn field(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no '{key}' in output:\n{text}"))
}

/// The first 2000 characters of `text` (a failing test's stderr can be megabytes).
pub fn excerpt(text: &str) -> String {
    text.chars().take(2000).collect()
}

/// The folder holding a run's current checkpoint files (`RUN/gen-N`, or RUN for a flat one).
pub fn checkpoint(run: &Path) -> PathBuf {
    boltzmann_studio::checkpoint::current(run).expect("a readable run folder")
}

/// Copies a folder and the folders in it.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A `.npy` file's bytes by hand: a version-1 header with `descr` (e.g. "<f4") and `shape` (e.g.
/// "(3, 2)") as written, then `data` zero bytes, whatever the shape claims.
pub fn npy_bytes(descr: &str, shape: &str, data: usize) -> Vec<u8> {
    let mut text = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((text.len() as u16).to_le_bytes());
    bytes.extend(text.as_bytes());
    bytes.extend(vec![0u8; data]);
    bytes
}

/// Runs `energy SCENE` on the rows of `x` (written to DIR/x.npy) and reads back the energies it
/// writes with `--out` and, when `grad`, the gradients of `--grad` (float64, row-major).
pub fn energies_of(
    scene: &Path,
    x: &boltzmann_studio::io::Matrix,
    dir: &Path,
    grad: bool,
) -> (Vec<f64>, Vec<f64>) {
    let (input, e_out, g_out) = (dir.join("x.npy"), dir.join("e.npy"), dir.join("g.npy"));
    boltzmann_studio::io::write_npy(&input, x).unwrap();
    let mut args = vec![
        "energy",
        scene.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        e_out.to_str().unwrap(),
    ];
    if grad {
        args.extend(["--grad", g_out.to_str().unwrap()]);
    }
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |p: &Path| -> Vec<f64> {
        let bytes = std::fs::read(p).unwrap();
        npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
    };
    (read(&e_out), if grad { read(&g_out) } else { Vec::new() })
}
