//! Crash safety of run folders: `train --resume` is killed by SIGKILL inside each system call
//! that writes its checkpoints (strace's fault injection: the k-th write, rename, fsync, unlink,
//! mkdir of the process). After every kill, `sample` and `--resume` open the same complete
//! checkpoint, either one saved before the kill or the one being saved, and the folder holds no
//! stray file once it has been opened again. Needs `strace` (`.ci/run` installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_boltzmann-studio")
}

/// One thread: the checkpoint writes all happen on the main thread, whose system calls strace
/// counts; the runs are then also bit-for-bit deterministic, which the consistency check needs.
fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("RAYON_NUM_THREADS", "1")
        .current_dir(common::repo("."));
    c
}

fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what}: {:?}\n{}",
        o.status,
        common::excerpt(&common::stderr(&o))
    );
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// DW-4, tiny, evaluated (and so saved) after every outer iteration of 2 gradient steps.
fn tiny_scene(dir: &Path) -> PathBuf {
    let p = dir.join("scene.ron");
    let text = format!(
        "Scene(\n    name: \"DW-4 tiny\",\n    system: DoubleWell4,\n    sampler: (sde_steps: 10, batch_size: 16, new_samples: 16, buffer_size: 64, train_steps: 2),\n    network: (kind: Egnn, layers: 1, hidden: 8),\n    schedule: (eval_every: 1, eval_samples: 100),\n    reference: (file: Some(\"{}\"), mcmc: (chains: 4)),\n)\n",
        common::repo("assets/reference/dw4.npy").display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn resume(scene: &Path, run: &Path, steps: u64) -> Command {
    let mut c = cmd(bin());
    c.args([
        "train",
        s(scene),
        "--out",
        s(run),
        "--resume",
        "--steps",
        &steps.to_string(),
    ]);
    c
}

/// The bytes of the current checkpoint's weights and state.
fn checkpoint_bytes(run: &Path) -> (Vec<u8>, Vec<u8>) {
    let c = common::checkpoint(run);
    (
        std::fs::read(c.join("checkpoint.safetensors")).unwrap(),
        std::fs::read(c.join("state.safetensors")).unwrap(),
    )
}

fn entries(run: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Calls of `syscall` by the process (all its threads) in an uninterrupted resume.
fn count_calls(syscall: &str, scene: &Path, base: &Path, scratch: &Path) -> usize {
    let run = scratch.join(format!("count-{syscall}"));
    common::copy_tree(base, &run);
    let log = scratch.join(format!("{syscall}.log"));
    let inner = resume(scene, &run, 6);
    let o = cmd("strace")
        .args([
            "-f",
            "-o",
            s(&log),
            "-e",
            &format!("trace={syscall}"),
            bin(),
        ])
        .args(inner.get_args())
        .output()
        .expect("strace must be installed for the crash test (apt-get install strace)");
    ok(o, "the traced resume");
    // Lines "PID  write(…" (an interrupted call's "<… write resumed>" line is not a second call).
    let call = format!("{syscall}(");
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|w| w.starts_with(&call))
        })
        .count()
}

#[test]
fn a_kill_inside_any_checkpoint_write_leaves_a_complete_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let scene = tiny_scene(dir.path());
    // The run to be resumed (saved at 2 steps), and the checkpoints a resume to 6 steps saves.
    let base = dir.path().join("base");
    ok(
        cmd(bin())
            .args(["train", s(&scene), "--out", s(&base), "--steps", "2"])
            .output()
            .unwrap(),
        "train",
    );
    let twin = dir.path().join("twin");
    ok(
        cmd(bin())
            .args(["train", s(&scene), "--out", s(&twin), "--steps", "2"])
            .output()
            .unwrap(),
        "train",
    );
    assert!(
        checkpoint_bytes(&twin) == checkpoint_bytes(&base),
        "the same seed and thread count give byte-identical checkpoints"
    );
    let mut valid = vec![(2, checkpoint_bytes(&base))];
    for steps in [4, 6] {
        let r = dir.path().join(format!("straight-{steps}"));
        common::copy_tree(&base, &r);
        ok(resume(&scene, &r, steps).output().unwrap(), "resume");
        valid.push((steps, checkpoint_bytes(&r)));
    }
    // Determinism, which the check below rests on: the same resume gives the same bytes.
    let again = dir.path().join("again");
    common::copy_tree(&base, &again);
    ok(resume(&scene, &again, 6).output().unwrap(), "resume");
    assert!(
        checkpoint_bytes(&again) == valid[2].1,
        "a resume is byte-for-byte repeatable"
    );

    let r = dir.path().join("straight-8");
    common::copy_tree(&base, &r);
    ok(resume(&scene, &r, 8).output().unwrap(), "resume");
    let straight_8 = checkpoint_bytes(&r);

    let mut matrix = Vec::new();
    for syscall in ["write", "rename", "renameat", "fsync", "unlinkat", "mkdir"] {
        let calls = count_calls(syscall, &scene, &base, dir.path());
        assert!(calls > 0 || syscall == "mkdir", "no {syscall} calls traced");
        let (mut killed, mut opened) = (0, std::collections::BTreeMap::new());
        for k in 1..=calls {
            let run = dir.path().join(format!("kill-{syscall}-{k}"));
            common::copy_tree(&base, &run);
            let inner = resume(&scene, &run, 6);
            let o = cmd("strace")
                .args([
                    "-f",
                    "-o",
                    "/dev/null",
                    "-e",
                    &format!("inject={syscall}:signal=SIGKILL:when={k}"),
                    bin(),
                ])
                .args(inner.get_args())
                .output()
                .unwrap();
            if o.status.code() != Some(0) {
                killed += 1;
            }
            // The next open: `sample` reads the checkpoint and tidies what the kill left.
            let npy = run.join("s.npy");
            ok(
                cmd(bin())
                    .args(["sample", s(&run), "--n", "4", "--out", s(&npy)])
                    .output()
                    .unwrap(),
                &format!("sample after a kill at {syscall} #{k}"),
            );
            std::fs::remove_file(&npy).unwrap();
            let names = entries(&run);
            let generation: Vec<&String> = names.iter().filter(|n| n.starts_with("gen-")).collect();
            assert_eq!(
                names.len(),
                4,
                "{syscall} #{k}: stray files after the next open: {names:?}"
            );
            assert!(
                names.contains(&"CURRENT".into())
                    && names.contains(&"metrics.csv".into())
                    && generation.len() == 1,
                "{syscall} #{k}: {names:?}"
            );
            // Weights and state from one and the same save.
            let bytes = checkpoint_bytes(&run);
            let Some((steps, _)) = valid.iter().find(|(_, b)| *b == bytes) else {
                panic!(
                    "{syscall} #{k}: the checkpoint matches none saved by an uninterrupted run (weights and state of different saves?)"
                );
            };
            *opened.entry(*steps).or_insert(0) += 1;
            // --resume opens it too, and metrics.csv ends with one row per iteration, in order.
            ok(
                resume(&scene, &run, 8).output().unwrap(),
                &format!("resume after a kill at {syscall} #{k}"),
            );
            let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
            let iterations: Vec<String> = csv
                .lines()
                .skip(1)
                .map(|l| l.split(',').nth(1).unwrap().to_string())
                .collect();
            assert_eq!(
                iterations,
                ["1", "2", "3", "4"],
                "{syscall} #{k}: metrics.csv iterations"
            );
            assert!(
                checkpoint_bytes(&run) == straight_8,
                "{syscall} #{k}: resumed after the kill, the run ends where a straight one does"
            );
            std::fs::remove_dir_all(&run).unwrap();
        }
        matrix.push(format!("{syscall:9} {calls:3} calls, {killed:3} killed; checkpoint opened after the kill (steps: count) {opened:?}"));
    }
    eprintln!(
        "kill matrix (resume from 2 to 6 steps, saves at 4 and 6 and at the end):\n{}",
        matrix.join("\n")
    );
}

/// SIGTERM (a `kill`, a service manager stopping the job) saves as Ctrl-C does.
#[test]
fn sigterm_saves_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let scene = tiny_scene(dir.path());
    let run = dir.path().join("run");
    let child = cmd(bin())
        .args(["train", s(&scene), "--out", s(&run), "--minutes", "5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !run.join("CURRENT").exists() {
        assert!(
            start.elapsed().as_secs() < 60,
            "no checkpoint within a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .output()
            .unwrap(),
        "kill",
    );
    let o = child.wait_with_output().unwrap();
    let out = common::stdout(&o);
    assert!(
        o.status.success() && out.contains("interrupted: checkpoint saved"),
        "{:?}: {out}",
        o.status
    );
    ok(
        resume(&scene, &run, 1).output().unwrap(),
        "resume after SIGTERM",
    );
}
