//! Metric throughput on the shipped LJ-13 reference: x-W2 (one 2000×2000 assignment) and
//! eq-W2 (4 million permutation + rotation alignments, then the same assignment).
//!
//! Run: `cargo bench --bench metrics` (RAYON_NUM_THREADS=1 for one thread). Target: eq-W2 on
//! 2000 vs 2000 LJ-13 samples in under a minute on a 2-core laptop.

use std::path::Path;
use std::time::Instant;

use boltzmann_studio::energy::{Energy, LennardJones};
use boltzmann_studio::io::read_npy;
use boltzmann_studio::metrics::{eq_w2, x_w2};

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let all = read_npy(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/reference/lj13.npy"
    )))
    .expect("reference file");
    let a = all.select(&(0..n).collect::<Vec<_>>());
    let b = all.select(&(n..2 * n).collect::<Vec<_>>());
    let layout = LennardJones::new(13).layout();
    println!("threads: {}", rayon::current_num_threads());

    let t = Instant::now();
    let x = x_w2(&a, &b, layout).unwrap();
    println!(
        "x-W2   LJ-13 {n} vs {n}: {:7.2} s  (value {x:.3})",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let eq = eq_w2(&a, &b, layout).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "eq-W2  LJ-13 {n} vs {n}: {secs:7.2} s  (value {eq:.3}; {:.1} µs per aligned pair)",
        secs * 1e6 / (n * n) as f64
    );
}
