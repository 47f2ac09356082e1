//! Hostile input, as a user who means harm (or makes a typo of twelve zeros) would give it. Every
//! case ends with exit 1 or 2 and one line on stderr naming what is wrong: no panic (101), no
//! abort on allocation (134), no hang, and no allocation beyond a 4 GB address space.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the binary under a 4 GB address-space limit and a 120 s wall-clock limit (a hang is
/// killed, exit 137, and fails the check), with RUST_BACKTRACE set as a developer's shell has it.
fn hostile(args: &[&str]) -> (i32, String) {
    let o = Command::new("timeout")
        .args([
            "-s",
            "KILL",
            "120",
            "sh",
            "-c",
            "ulimit -v 4194304; exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_boltzmann-studio"),
        ])
        .args(args)
        .current_dir(common::repo("."))
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("timeout and sh run");
    (o.status.code().unwrap_or(-1), common::stderr(&o))
}

/// `args` fail cleanly with a message containing `want`.
#[track_caller]
fn refused(args: &[&str], want: &str) {
    let (code, err) = hostile(args);
    assert!(
        code == 1 || code == 2,
        "{args:?}: exit {code}, stderr:\n{}",
        common::excerpt(&err)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line on stderr, got:\n{}",
        common::excerpt(&err)
    );
    assert!(err.contains(want), "{args:?}: expected '{want}' in: {err}");
    assert!(
        err.len() < 1000,
        "{args:?}: a short message, got {} bytes",
        err.len()
    );
}

/// A DW-4 scene small enough to train in a second, with its reference given by absolute path.
fn tiny_scene(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let reference = common::repo("assets/reference/dw4.npy");
    let text = format!(
        "Scene(\n    system: DoubleWell4,\n    sampler: (\n        sde_steps: 10,\n        batch_size: 16,\n        new_samples: 16,\n        buffer_size: 64,\n        train_steps: 2,\n    ),\n    network: (kind: Egnn, layers: 1, hidden: 8),\n    schedule: (eval_every: 1000, eval_samples: 100),\n    reference: (file: Some(\"{}\"), mcmc: (chains: 4)),\n    view: (grid: 2),\n)\n",
        reference.display()
    );
    let p = dir.join("scene.ron");
    std::fs::write(&p, edit(text)).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Found 2: sizes with no upper bound aborted on allocation, panicked on capacity overflow, hung
/// or grew without limit. Each is now refused at its field, with the bound and the memory.
#[test]
fn scene_sizes_are_bounded_at_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cases: [(&str, &str, &str); 12] = [
        (
            "batch_size: 16",
            "batch_size: 1000000000000",
            "sampler.batch_size must be at most 100000 (got 1000000000000, which would need at least",
        ),
        (
            "batch_size: 16",
            "batch_size: 18446744073709551615",
            "sampler.batch_size must be at most 100000",
        ),
        (
            "new_samples: 16",
            "new_samples: 1000000000000",
            "sampler.new_samples must be at most 100000",
        ),
        (
            "hidden: 8",
            "hidden: 1000000000",
            "network.hidden must be at most 4096",
        ),
        (
            "layers: 1",
            "layers: 1000000000",
            "network.layers must be at most 64",
        ),
        (
            "sde_steps: 10",
            "sde_steps: 1000000000000",
            "sampler.sde_steps must be at most 100000",
        ),
        (
            "sde_steps: 10",
            "sde_steps: 10, sample_steps: Some(1000000000000)",
            "sampler.sample_steps must be at most 100000",
        ),
        (
            "chains: 4",
            "chains: 1000000000000",
            "reference.mcmc.chains must be at most 100000",
        ),
        (
            "eval_samples: 100",
            "eval_samples: 1000000000000",
            "schedule.eval_samples must be at most 5000",
        ),
        (
            "grid: 2",
            "grid: 1000000000",
            "view.grid must be at most 12",
        ),
        (
            "sde_steps: 10",
            "sde_steps: 10, sigma_min: 1e-300, sigma_max: 1e300",
            "sampler.sigma_min must be between 1e-6 and 1000",
        ),
        (
            "sde_steps: 10",
            "sde_steps: 10, sigma_min: 1e-3, sigma_max: 1e300",
            "sampler.sigma_max must be at most 1000",
        ),
    ];
    for (from, to, want) in cases {
        let scene = tiny_scene(dir.path(), |t| t.replacen(from, to, 1));
        refused(
            &["train", s(&scene), "--out", s(&out), "--steps", "1"],
            want,
        );
    }
    assert!(!out.exists(), "a refused scene leaves no run folder");
}

/// Found 1, 3: a .npy header whose shape overflows, and special files, as every input.
#[test]
fn npy_shapes_are_checked_and_special_files_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 2⁶² rows × 8 columns of f4: 2⁶⁷ bytes, which wrapped to 0 and passed the truncation check.
    let bytes = common::npy_bytes("<f4", "(4611686018427387904, 8)", 1600);
    let bad = dir.path().join("overflow.npy");
    std::fs::write(&bad, bytes).unwrap();
    let out = dir.path().join("e.npy");
    refused(
        &["eval", "scenes/dw4.ron", "--samples", s(&bad)],
        "more data than any file holds",
    );
    refused(
        &[
            "energy",
            "scenes/dw4.ron",
            "--input",
            s(&bad),
            "--out",
            s(&out),
        ],
        "more data than any file holds",
    );
    refused(
        &[
            "train",
            "/dev/zero",
            "--out",
            s(&dir.path().join("r")),
            "--steps",
            "1",
        ],
        "/dev/zero: is not a regular file",
    );
    refused(
        &[
            "energy",
            "scenes/dw4.ron",
            "--input",
            "/dev/zero",
            "--out",
            s(&out),
        ],
        "/dev/zero: is not a regular file",
    );
    refused(
        &[
            "eval",
            "scenes/dw4.ron",
            "--samples",
            "assets/reference/dw4.npy",
            "--reference",
            "/dev/zero",
        ],
        "/dev/zero: is not a regular file",
    );
    refused(
        &[
            "eval",
            "scenes/dw4.ron",
            "--samples",
            "assets/reference/dw4.npy",
            "--reference",
            "/tmp",
        ],
        "/tmp: is a folder",
    );
    let big = tiny_scene(dir.path(), |t| {
        t.replacen("Scene(", &format!("// {}\nScene(", "x".repeat(17 << 20)), 1)
    });
    refused(
        &[
            "train",
            s(&big),
            "--out",
            s(&dir.path().join("r")),
            "--steps",
            "1",
        ],
        "limited to 17 MB",
    );
}

/// Found 2 (flags) and 7: counts on the command line, negative numbers, a byte-order mark, and a
/// 5 MB identifier, which was echoed whole.
#[test]
fn flags_and_small_ones() {
    let dir = tempfile::tempdir().unwrap();
    refused(
        &[
            "train",
            "scenes/dw4.ron",
            "--out",
            s(&dir.path().join("r")),
            "--minutes",
            "-1",
        ],
        "--minutes must be a positive number (got -1)",
    );
    refused(
        &[
            "train",
            "scenes/dw4.ron",
            "--out",
            s(&dir.path().join("r")),
            "--steps",
            "-1",
        ],
        "must be at least 1 (got -1)",
    );
    refused(
        &[
            "eval",
            "scenes/dw4.ron",
            "--samples",
            "assets/reference/dw4.npy",
            "--n",
            "1000000000000",
        ],
        "--n must be at most 5000",
    );
    let bom = tiny_scene(dir.path(), |t| format!("\u{feff}{t}"));
    let (code, err) = hostile(&[
        "eval",
        s(&bom),
        "--samples",
        "assets/reference/dw4.npy",
        "--n",
        "50",
        "--skip-eq",
    ]);
    assert_eq!(code, 0, "a scene with a byte-order mark reads: {err}");
    let long = tiny_scene(dir.path(), |t| {
        t.replacen(
            "system: DoubleWell4",
            &format!("system: {}", "A".repeat(5 << 20)),
            1,
        )
    });
    refused(
        &[
            "train",
            s(&long),
            "--out",
            s(&dir.path().join("r")),
            "--steps",
            "1",
        ],
        "characters)",
    );
}

/// Found 2 (run state) and 6: a run folder edited by hand, or left by a diverged run.
#[test]
fn run_folders_with_bad_state_are_refused() {
    use candle_core::{DType, Device, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let scene = tiny_scene(dir.path(), |t| t);
    let run = dir.path().join("run");
    let o = common::run(&["train", s(&scene), "--out", s(&run), "--steps", "2"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let npy = dir.path().join("x.npy");
    let sample = |run: &Path| hostile(&["sample", s(run), "--n", "10", "--out", s(&npy)]);
    assert_eq!(
        sample(&run).0,
        0,
        "the run samples before it is tampered with"
    );
    refused(
        &["sample", s(&run), "--n", "1000000000000", "--out", s(&npy)],
        "--n must be at most 1000000",
    );

    let copy = |name: &str| {
        let d = dir.path().join(name);
        common::copy_tree(&run, &d);
        d
    };
    // sde_steps = 10¹² in state.json: sample and resume hung.
    let huge = copy("huge");
    let state = common::checkpoint(&huge).join("state.json");
    let js = std::fs::read_to_string(&state).unwrap();
    assert!(js.contains("\"sde_steps\": 10"), "{js}");
    std::fs::write(
        &state,
        js.replacen("\"sde_steps\": 10", "\"sde_steps\": 1000000000000", 1),
    )
    .unwrap();
    refused(
        &["sample", s(&huge), "--n", "10", "--out", s(&npy)],
        "state.json: sde_steps must be at most 100000",
    );
    refused(
        &[
            "train",
            s(&scene),
            "--out",
            s(&huge),
            "--resume",
            "--steps",
            "4",
        ],
        "state.json: sde_steps must be at most 100000",
    );

    let rewrite = |d: &Path, file: &str, f: &dyn Fn(&str, Tensor) -> Tensor| {
        let p = common::checkpoint(d).join(file);
        let tensors = candle_core::safetensors::load(&p, &Device::Cpu).unwrap();
        let out: std::collections::HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, v)| (k.clone(), f(&k, v)))
            .collect();
        candle_core::safetensors::save(&out, &p).unwrap();
    };
    // All-NaN weights: sample wrote an all-NaN .npy and exit 0.
    let nan = copy("nan");
    rewrite(&nan, "checkpoint.safetensors", &|_, t| {
        (t.zeros_like().unwrap() * f64::NAN).unwrap()
    });
    refused(
        &["sample", s(&nan), "--n", "10", "--out", s(&npy)],
        "hold NaN or infinite values",
    );
    // A tensor of another shape: a 30-line candle backtrace with RUST_BACKTRACE set.
    let shape = copy("shape");
    rewrite(&shape, "checkpoint.safetensors", &|_, t| {
        Tensor::zeros(3, t.dtype(), &Device::Cpu).unwrap()
    });
    refused(
        &["sample", s(&shape), "--n", "10", "--out", s(&npy)],
        "checkpoint.safetensors: not a checkpoint of this scene's network",
    );
    // Another dtype in the state: the error named no file.
    let dtype = copy("dtype");
    rewrite(&dtype, "state.safetensors", &|_, t| {
        t.to_dtype(DType::F64).unwrap()
    });
    refused(
        &[
            "train",
            s(&scene),
            "--out",
            s(&dtype),
            "--resume",
            "--steps",
            "4",
        ],
        "state.safetensors",
    );
}
