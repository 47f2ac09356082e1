//! Training throughput through the app's worker thread with no window: the baseline for the
//! app's `--report` ("throughput with the window open").
//!
//!     cargo bench --bench worker -- [SCENE] [STEPS]      (default scenes/lj13.ron, 300)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use boltzmann_studio::scene::Scene;
use boltzmann_studio::worker::{Command, WorkerHandle};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let path = PathBuf::from(
        args.first()
            .map(String::as_str)
            .unwrap_or("scenes/lj13.ron"),
    );
    let steps: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(300);
    let scene = Scene::load(&path).expect("a scene file");
    let w = WorkerHandle::spawn(scene, path.clone(), None);
    w.send(Command::SetSpeed(10));
    w.send(Command::Play);
    let (mut start, mut end) = (None, None);
    while end.is_none_or(|(_, s)| s < steps) {
        let Ok(s) = w.snapshots.recv_timeout(Duration::from_secs(120)) else {
            panic!("no snapshot for 2 minutes")
        };
        if s.running {
            let now = (Instant::now(), s.counters.gradient_steps);
            start.get_or_insert(now);
            end = Some(now);
        }
    }
    let ((t0, s0), (t1, s1)) = (start.unwrap(), end.unwrap());
    println!(
        "{}: headless worker {:.2} gradient steps/s ({} steps in {:.1} s, RAYON_NUM_THREADS={})",
        path.display(),
        (s1 - s0) as f64 / (t1 - t0).as_secs_f64(),
        s1 - s0,
        (t1 - t0).as_secs_f64(),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into())
    );
}
