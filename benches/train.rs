//! Trainer throughput: EGNN forward and forward+backward per batch (LJ-13, LJ-55), Adam
//! steps/s, simulated samples/s and energy evaluations per gradient step, with 1 and 2 threads.
//!
//! Run: `cargo bench --bench train`. The binary re-runs itself with RAYON_NUM_THREADS=1 and 2
//! (candle's CPU kernels and the energies use that pool). BENCH_QUICK=1 shortens it.
//! BENCH_EGNN_ONLY=1 times only the fused LJ-13 kernels at batch 256 with 2 threads, with their
//! matrix-product GFLOP/s (the Rust side of `benches/egnn-pytorch.sh`).

use std::process::Command;
use std::time::Instant;

use boltzmann_studio::energy::{Energy, LennardJones};
use boltzmann_studio::nn::{ControlNet, Init};
use boltzmann_studio::sampler::SampleOptions;
use boltzmann_studio::sampler::adjoint::AdjointSampler;
use boltzmann_studio::scene::{NetworkConfig, NetworkKind, SamplerConfig};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let egnn_only = std::env::var("BENCH_EGNN_ONLY").is_ok();
    if egnn_only && std::env::var("BENCH_CHILD").is_err() {
        // SAFETY: set before any other thread starts (rayon's pool is built lazily).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "2") };
        for (layers, hidden) in [(3, 64), (5, 128)] {
            egnn_timing(13, layers, hidden, 256, 5, false);
        }
        return;
    }
    if std::env::var("BENCH_CHILD").is_err() {
        let exe = std::env::current_exe().expect("own path");
        for threads in ["1", "2"] {
            let status = Command::new(&exe)
                .env("BENCH_CHILD", "1")
                .env("RAYON_NUM_THREADS", threads)
                .status()
                .expect("re-run the benchmark");
            assert!(status.success());
        }
        return;
    }
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let reps = if quick { 1 } else { 3 };
    println!(
        "== threads: {} ==",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default()
    );
    for (particles, layers, hidden, batch) in [
        (13, 3, 64, 256),
        (13, 5, 128, 256),
        (55, 3, 64, 64),
        (55, 5, 128, 64),
    ] {
        egnn_timing(particles, layers, hidden, batch, reps, true);
    }
    trainer_timing(13, 3, 64, if quick { 1 } else { 3 });
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f(); // warm-up
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn egnn_timing(
    particles: usize,
    layers: usize,
    hidden: usize,
    batch: usize,
    reps: usize,
    candle: bool,
) {
    let layout = LennardJones::new(particles).layout();
    let varmap = VarMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let dev = Device::Cpu;
    let cfg = NetworkConfig {
        kind: NetworkKind::Egnn,
        layers,
        hidden,
        ..Default::default()
    };
    let net = {
        let mut init = Init {
            varmap: &varmap,
            rng: &mut rng,
            device: &dev,
        };
        ControlNet::new(&cfg, layout, 1.0, &mut init).unwrap()
    };
    let xs: Vec<f32> = (0..batch * layout.dim())
        .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
        .collect();
    let ts: Vec<f32> = (0..batch).map(|_| rng.random::<f32>()).collect();
    let x = Tensor::from_vec(xs, (batch, layout.dim()), &dev).unwrap();
    let t = Tensor::from_vec(ts, batch, &dev).unwrap();
    let kernels = net
        .cpu_kernels()
        .expect("EGNN on the CPU has fused kernels");
    let w = kernels.read(&varmap).unwrap();
    let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let tv: Vec<f32> = t.to_vec1().unwrap();
    let ffb = time(reps, || {
        kernels.loss_and_grad(&w, &xv, &tv, |first, out| {
            let dout = xv[first * layout.dim()..][..out.len()].to_vec();
            (
                out.iter().zip(&dout).map(|(o, d)| (o * d) as f64).sum(),
                dout,
            )
        });
    });
    if !candle {
        // Matrix products only, 2mnk each: per layer the per-node halves of the first edge
        // layer (2 × bn·h·h), the edge layer (e·h·h) and the node MLP (bn·2h·h + bn·h·h); the
        // backward pass does each product twice more (input and weight gradients), so 3×.
        let (n, bn) = (particles, batch * particles);
        let e = batch * n * (n - 1);
        let flops = 3.0 * layers as f64 * 2.0 * (hidden * hidden) as f64 * (e + 5 * bn) as f64;
        println!(
            "fused LJ-{particles} {layers}x{hidden} batch {batch}, {} threads: forward+backward {:.1} ms, {:.1} GFLOP/s (matrix products)",
            rayon::current_num_threads(),
            ffb * 1e3,
            flops / ffb / 1e9
        );
        return;
    }
    let fwd = time(reps, || {
        net.forward(&x, &t).unwrap().detach();
    });
    let fb = time(reps, || {
        let loss = net
            .forward(&x, &t)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        loss.backward().unwrap();
    });
    let ffwd = time(reps, || {
        kernels.forward(&w, &xv, &tv);
    });
    let finf = time(reps, || {
        kernels.infer(&w, &xv, &tv);
    });
    println!(
        "EGNN LJ-{particles} {layers}x{hidden} batch {batch}: fused forward {:7.1} ms, chunked inference {:7.1} ms ({:7.0} samples/s), forward+backward {:7.1} ms | candle autograd: {:7.1} / {:7.1} ms",
        ffwd * 1e3,
        finf * 1e3,
        batch as f64 / finf,
        ffb * 1e3,
        fwd * 1e3,
        fb * 1e3
    );
}

fn trainer_timing(particles: usize, layers: usize, hidden: usize, iters: usize) {
    let cfg = SamplerConfig {
        sde_steps: 100,
        batch_size: 256,
        new_samples: 256,
        train_steps: 20,
        learning_rate: 1e-3,
        ..SamplerConfig::default()
    };
    let net = NetworkConfig {
        kind: NetworkKind::Egnn,
        layers,
        hidden,
        ..Default::default()
    };
    let mut s = AdjointSampler::new(
        Box::new(LennardJones::new(particles)),
        &cfg,
        &net,
        Device::Cpu,
    )
    .unwrap();
    s.step().unwrap();
    let t = Instant::now();
    let sim = s.sample(cfg.new_samples, SampleOptions::default()).unwrap();
    let sim_s = t.elapsed().as_secs_f64();
    assert_eq!(sim.x.len(), cfg.new_samples * particles * 3);
    let before = s.counters.clone();
    let t = Instant::now();
    for _ in 0..iters {
        s.step().unwrap();
    }
    let total = t.elapsed().as_secs_f64();
    let steps = s.counters.gradient_steps - before.gradient_steps;
    let evals = s.counters.energy_evals - before.energy_evals;
    let train_s = total - iters as f64 * sim_s;
    println!(
        "trainer LJ-{particles} EGNN {layers}x{hidden}, batch 256, 100 SDE steps: {:.0} simulated samples/s, {:.1} Adam steps/s, \
         {:.2} energy evals per gradient step, {:.1} s per outer iteration",
        cfg.new_samples as f64 / sim_s,
        steps as f64 / train_s.max(1e-9),
        evals as f64 / steps as f64,
        total / iters as f64
    );
}
