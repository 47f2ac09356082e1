//! `compare`: a fair race of sampler kinds on one scene (samplers.md §5). Each kind runs through
//! the same driver to the same budget, is judged at log-spaced energy-evaluation budgets on the
//! same reference rows, and leaves its final samples, a CSV, a JSON summary and a plot.

use std::path::PathBuf;
use std::time::{Duration, Instant};


use anyhow::{Context, bail};
use boltzmann_studio::io::csv::CsvWriter;
use boltzmann_studio::io::{Matrix, read_npy, write_npy};
use boltzmann_studio::run::{Budget, EvalPolicy, Evaluator, Outcome, Run, log_budgets};
use boltzmann_studio::sampler::{self, SampleOptions, SamplerKind};
use boltzmann_studio::scene::Scene;
use boltzmann_studio::cli::CompareArgs;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

const COLUMNS: [&str; 11] =
    ["kind", "point", "energy_evals", "network_passes", "wall_seconds", "energy_w2", "eq_w2", "x_w2", "dist_tv", "ess", "eval_energy_evals"];


/// One row of compare.csv.
#[derive(Debug, Clone, Serialize)]
struct Point {
    point: String,
    energy_evals: u64,
    network_passes: u64,
    wall_seconds: f64,
    energy_w2: f64,
    eq_w2: Option<f64>,
    x_w2: f64,
    dist_tv: f64,
    ess: Option<f64>,
    eval_energy_evals: u64,
}

#[derive(Debug, Serialize)]
struct KindSummary {
    kind: String,
    scene: String,
    seed: u64,
    #[serde(rename = "final")]
    last: Point,
    gradient_steps: u64,
    train_seconds: f64,
    /// First budget point where E-W2 was below twice the best final E-W2 of all kinds.
    first_below_2x_best: Option<Reached>,
    /// What 1000 further samples cost once training stops (the amortised cost, samplers.md §1):
    /// seconds, and energy evaluations needed to draw them (none for a learned sampler; MCMC's
    /// chains must keep moving).
    seconds_per_1000_samples: f64,
    energy_evals_per_1000_samples: f64,
    note: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct Reached {
    energy_evals: u64,
    wall_seconds: f64,
    energy_w2: f64,
}

#[derive(Serialize)]
struct Summary {
    scene: String,
    budget: String,
    threads: usize,
    reference: String,
    best_final_energy_w2: f64,
    kinds: Vec<KindSummary>,
}

pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    // Every check before anything is written: a bad argument leaves no folder behind.
    boltzmann_studio::limits::flag("--samples", args.samples, boltzmann_studio::limits::MAX_EVAL_SAMPLES, 8 * args.samples.min(1 << 20) as u64)?;
    let kinds: Vec<SamplerKind> = args.kinds.iter().map(|k| k.parse().map_err(|e: String| anyhow::anyhow!("--kinds: {e}"))).collect::<anyhow::Result<_>>()?;
    let mut seen = std::collections::HashSet::new();
    if let Some(k) = kinds.iter().find(|k| !seen.insert(**k)) {
        bail!("--kinds: '{}' is named twice", k.name());
    }
    // Minutes of training time (inside the sampler), so that evaluations cost no kind its turn.
    let budget = match (args.minutes, args.evals) {
        (Some(m), _) if m > 0.0 && m.is_finite() => Budget::TrainingSeconds(m * 60.0),
        (Some(m), _) => bail!("--minutes must be a positive number (got {m})"),
        (None, Some(n)) if n > 0 => Budget::EnergyEvals(n as u64),
        (None, Some(n)) => bail!("--evals must be at least 1 (got {n})"),
        (None, None) => bail!("say how long each kind runs: --minutes M or --evals N"),
    };
    let base = Scene::load(&args.scene)?;
    let runs: Vec<(SamplerKind, PathBuf, Scene)> = kinds
        .iter()
        .map(|&k| {
            let (p, mut s) = base.for_kind(&args.scene, k).map_err(|e| anyhow::anyhow!("--kinds: {e}"))?;
            if let Some(seed) = args.seed {
                s.sampler.seed = seed;
            }
            Ok((k, p, s))
        })
        .collect::<anyhow::Result<_>>()?;
    let reference_path = base.reference_path(&args.scene).with_context(|| format!("{} names no reference file to judge against", args.scene.display()))?;
    let reference = read_npy(&reference_path)?;
    let layout = base.energy().layout();
    let curve = Evaluator::new(&reference, layout, base.schedule.eval_samples, 0).with_context(|| format!("{}", reference_path.display()))?;
    let final_judge = Evaluator::new(&reference, layout, args.samples, 0).with_context(|| format!("{}", reference_path.display()))?;
    if args.out.join("summary.json").exists() {
        bail!("{} already holds a finished comparison; choose another --out", args.out.display());
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let summary_path = args.out.join("summary.json");
    let mut csv = CsvWriter::create(&args.out.join("compare.csv"), &COLUMNS)?;
    let budgets = log_budgets(2.0, 12.0, args.per_decade);

    let mut curves: Vec<(SamplerKind, Vec<Point>)> = Vec::new();
    let mut summaries = Vec::new();
    for (kind, path, scene) in &runs {
        let sampler = scene.build_sampler().with_context(|| format!("{} ({})", path.display(), kind.name()))?;
        let mut run = Run::new(sampler, Some(Evaluator::new(curve.reference(), layout, curve.len(), 0)?), EvalPolicy::AtEnergyEvals(budgets.clone()), false, 1);
        let start = run.counters().clone();
        let (_, len, unit) = budget.progress(&start, &start, Duration::ZERO);
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(&format!("{{prefix:>10}} [{{bar:25}}] {{pos}}/{{len}} {unit}  {{msg}}"))
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(kind.name());
        let mut points = Vec::new();
        let started = Instant::now();
        let mut last_draw = Instant::now();
        let outcome = run
            .drive(budget, &|| false, &mut |run, tick| {
                if let Some(e) = tick.evaluation {
                    let p = point(&format!("{}", points.len()), &e.counters, &e.metrics, e.ess);
                    csv.text_row(&row(*kind, &p))?;
                    bar.set_message(format!("E-W2 {:.3} at {} evals{}", p.energy_w2, p.energy_evals, run.sampler.stage().map(|s| format!("  [{s}]")).unwrap_or_default()));
                    points.push(p);
                }
                if last_draw.elapsed() > Duration::from_millis(300) {
                    bar.set_position(budget.progress(run.counters(), &start, started.elapsed()).0);
                    last_draw = Instant::now();
                }
                Ok(())
            })
            .with_context(|| format!("{} stopped", kind.label()))?;
        if outcome == Outcome::Diverged {
            bail!("{} diverged: {} gradient steps in a row were non-finite; lower its learning rate", kind.label(), run.skipped_in_a_row());
        }
        bar.set_message(format!("drawing {} final samples", args.samples));
        let s = run.sampler.sample(args.samples, SampleOptions { weights: true, fill: true, ..SampleOptions::default() })?;
        bar.set_message("timing further samples");
        let (draw_evals, draw_seconds) = run.sampler.draw_cost(1000)?;
        write_npy(&args.out.join(format!("{}.npy", kind.name())), &Matrix::new(args.samples, layout.dim(), s.x.clone()))?;
        bar.set_message("judging the final samples (eq-W2 included)");
        let (m, _) = final_judge.judge(run.sampler.energy(), &s.x, &s.energies, final_judge.which(true)).with_context(|| format!("judging {}", kind.label()))?;
        let ess = s.log_weights.as_deref().map(boltzmann_studio::metrics::ess);
        let last = point("final", run.counters(), &m, ess);
        csv.text_row(&row(*kind, &last))?;
        bar.finish_and_clear();
        let c = run.counters();
        println!(
            "{:>8}: E-W2 {:.3}  eq-W2 {}  x-W2 {:.3}  dist-TV {:.4}  after {} energy evals, {} gradient steps, {:.0} s ({:.0} s wall)",
            kind.name(),
            m.energy_w2,
            m.eq_w2.map_or("–".into(), |v| format!("{v:.3}")),
            m.x_w2,
            m.dist_tv,
            c.energy_evals,
            c.gradient_steps,
            c.wall_seconds,
            started.elapsed().as_secs_f64()
        );
        summaries.push(KindSummary {
            kind: kind.name().into(),
            scene: path.display().to_string(),
            seed: scene.sampler.seed,
            last,
            gradient_steps: c.gradient_steps,
            train_seconds: c.wall_seconds,
            first_below_2x_best: None,
            seconds_per_1000_samples: draw_seconds,
            energy_evals_per_1000_samples: draw_evals,
            note: kind.info().samples_note,
        });
        curves.push((*kind, points));
    }
    let best = summaries.iter().map(|s| s.last.energy_w2).filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min);
    for (s, (_, pts)) in summaries.iter_mut().zip(&curves) {
        s.first_below_2x_best = pts
            .iter()
            .chain(std::iter::once(&s.last))
            .find(|p| p.energy_w2 < 2.0 * best)
            .map(|p| Reached { energy_evals: p.energy_evals, wall_seconds: p.wall_seconds, energy_w2: p.energy_w2 });
    }
    for (s, (_, pts)) in summaries.iter().zip(curves.iter_mut()) {
        pts.push(s.last.clone());
    }
    let png = args.out.join("compare.png");
    crate::plot::compare_png(&png, &base.name, &plot_series(&curves)).with_context(|| format!("cannot draw {}", png.display()))?;
    let summary = Summary {
        scene: args.scene.display().to_string(),
        budget: match budget {
            Budget::TrainingSeconds(s) => format!("{} minutes of training per kind", s / 60.0),
            Budget::EnergyEvals(n) => format!("{n} energy evaluations per kind"),
            other => format!("{other:?} per kind"),
        },
        threads: rayon::current_num_threads(),
        reference: reference_path.display().to_string(),
        best_final_energy_w2: best,
        kinds: summaries,
    };
    // Written last: a folder with summary.json is a finished comparison.
    std::fs::write(&summary_path, serde_json::to_string_pretty(&summary)?).with_context(|| format!("cannot write {}", summary_path.display()))?;
    println!("wrote {}/compare.csv, summary.json, compare.png and {} sample files", args.out.display(), kinds.len());
    Ok(())
}

fn point(name: &str, c: &sampler::Counters, m: &boltzmann_studio::metrics::MetricSet, ess: Option<f64>) -> Point {
    Point {
        point: name.into(),
        energy_evals: c.energy_evals,
        network_passes: c.network_forward + c.network_backward,
        wall_seconds: c.wall_seconds,
        energy_w2: m.energy_w2,
        eq_w2: m.eq_w2,
        x_w2: m.x_w2,
        dist_tv: m.dist_tv,
        ess,
        eval_energy_evals: c.eval_energy_evals,
    }
}

fn row(kind: SamplerKind, p: &Point) -> Vec<String> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    vec![
        kind.name().into(),
        p.point.clone(),
        p.energy_evals.to_string(),
        p.network_passes.to_string(),
        format!("{:.3}", p.wall_seconds),
        format!("{}", p.energy_w2),
        opt(p.eq_w2),
        format!("{}", p.x_w2),
        format!("{}", p.dist_tv),
        opt(p.ess),
        p.eval_energy_evals.to_string(),
    ]
}

/// Curves handed to the plot: (kind, [(energy evals, wall seconds, E-W2)]).
fn plot_series(curves: &[(SamplerKind, Vec<Point>)]) -> Vec<(String, Vec<(f64, f64, f64)>)> {
    curves.iter().map(|(k, pts)| (k.label().to_string(), pts.iter().map(|p| (p.energy_evals as f64, p.wall_seconds, p.energy_w2)).collect())).collect()
}
