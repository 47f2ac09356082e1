//! `compare`: a fair race of sampler kinds on one scene (samplers.md §5), through the same race
//! engine as the app's race view (`race`): the kinds take turns by energy evaluations up to the
//! same budget, are judged at the same log-spaced budget points on the same reference rows, and
//! leave their final samples, a CSV, a JSON summary and a plot.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use boltzmann_studio::cli::CompareArgs;
use boltzmann_studio::io::csv::CsvWriter;
use boltzmann_studio::io::{Matrix, read_npy, write_npy};
use boltzmann_studio::race::{self, RacePoint};
use boltzmann_studio::run::{Budget, EvalPolicy, Evaluator, Outcome, Run};
use boltzmann_studio::sampler::{SampleOptions, SamplerKind};
use boltzmann_studio::scene::Scene;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct KindSummary {
    kind: String,
    scene: String,
    seed: u64,
    #[serde(rename = "final")]
    last: RacePoint,
    gradient_steps: u64,
    train_seconds: f64,
    /// First budget point where E-W2 was below twice the best final E-W2 of all kinds.
    first_below_2x_best: Option<Reached>,
    /// What 1000 further samples cost once training stops (the amortised cost, samplers.md §1):
    /// seconds, and energy evaluations needed to draw them (none for a learned sampler; MCMC's
    /// chains must keep moving).
    seconds_per_1000_samples: f64,
    energy_evals_per_1000_samples: f64,
    /// With energy evaluations priced at `energy_ms`: the kind's total cost (training seconds
    /// plus priced evaluations) and that of 1000 further samples.
    cost_seconds: f64,
    further_1000_cost_seconds: f64,
    note: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct Reached {
    energy_evals: u64,
    wall_seconds: f64,
    energy_w2: f64,
    cost_seconds: f64,
}

#[derive(Serialize)]
struct Summary {
    scene: String,
    budget: String,
    /// The assumed milliseconds per energy evaluation of the cost columns.
    energy_ms: f64,
    threads: usize,
    reference: String,
    best_final_energy_w2: f64,
    /// Kinds by E-W2 at the last budget point every kind passed, leader first (the app's race
    /// table ranks the same way, `race::standings`).
    ranking: Vec<String>,
    ranked_at_energy_evals: Option<u64>,
    kinds: Vec<KindSummary>,
}

pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    // Every check before anything is written: a bad argument leaves no folder behind.
    boltzmann_studio::limits::flag(
        "--samples",
        args.samples,
        boltzmann_studio::limits::MAX_EVAL_SAMPLES,
        8 * args.samples.min(1 << 20) as u64,
    )?;
    let kinds: Vec<SamplerKind> = args
        .kinds
        .iter()
        .map(|k| {
            k.parse()
                .map_err(|e: String| anyhow::anyhow!("--kinds: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    // Minutes of training time (inside the sampler), so that evaluations cost no kind its turn.
    let budget = match (args.minutes, args.evals) {
        (Some(m), _) if m > 0.0 && m.is_finite() => Budget::TrainingSeconds(m * 60.0),
        (Some(m), _) => bail!("--minutes must be a positive number (got {m})"),
        (None, Some(n)) if n > 0 => Budget::EnergyEvals(n as u64),
        (None, Some(n)) => bail!("--evals must be at least 1 (got {n})"),
        (None, None) => bail!("say how long each kind runs: --minutes M or --evals N"),
    };
    if !(args.energy_ms.is_finite() && args.energy_ms >= 0.0) {
        bail!(
            "--energy-ms must be a cost in milliseconds, 0 or more (got {})",
            args.energy_ms
        );
    }
    let base = Scene::load(&args.scene)?;
    let lanes = race::lane_scenes(&base, &args.scene, &kinds, args.seed)
        .map_err(|e| anyhow::anyhow!("--kinds: {e}"))?;
    let reference_path = base.reference_path(&args.scene).with_context(|| {
        format!(
            "{} names no reference file to judge against",
            args.scene.display()
        )
    })?;
    let judge = race::judge(&base, &args.scene)?;
    let layout = base.energy().layout();
    let final_judge = Evaluator::new(&read_npy(&reference_path)?, layout, args.samples, 0)
        .with_context(|| format!("{}", reference_path.display()))?;
    if args.out.join("summary.json").exists() {
        bail!(
            "{} already holds a finished comparison; choose another --out",
            args.out.display()
        );
    }
    let points = race::points(args.per_decade);
    let mut runs: Vec<Run> = lanes
        .iter()
        .map(|(path, scene)| {
            let sampler = scene
                .build_sampler()
                .with_context(|| format!("{} ({})", path.display(), scene.sampler.kind.name()))?;
            Ok(race::make_lane(
                Run::new(sampler, None, EvalPolicy::Never, false, 1),
                &judge,
                &points,
            )?)
        })
        .collect::<anyhow::Result<_>>()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let summary_path = args.out.join("summary.json");
    let mut csv = CsvWriter::create(
        &args.out.join("compare.csv"),
        &race::columns(boltzmann_studio::metrics::Family::of(
            base.energy().as_ref(),
        )),
    )?;

    // A bar per kind; the kinds take turns, so all bars move together.
    let bars = MultiProgress::new();
    let starts: Vec<_> = runs.iter().map(|r| r.counters().clone()).collect();
    let lane_bars: Vec<ProgressBar> = kinds
        .iter()
        .zip(&starts)
        .map(|(kind, start)| {
            let (_, len, unit) = budget.progress(start, start, Duration::ZERO);
            let bar = bars.add(ProgressBar::new(len));
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix:>10}} [{{bar:25}}] {{pos}}/{{len}} {unit}  {{msg}}"
                ))
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(kind.name());
            bar
        })
        .collect();
    let mut curves: Vec<Vec<RacePoint>> = vec![Vec::new(); kinds.len()];
    let started = Instant::now();
    let mut last_draw = Instant::now();
    let (outcome, lane) =
        race::drive_lanes(&mut runs, budget, &|| false, &mut |lane, run, tick| {
            for e in tick.evaluations {
                let p = RacePoint::of(&e);
                csv.text_row(&p.row(kinds[lane], args.energy_ms))?;
                lane_bars[lane].set_message(format!(
                    "E-W2 {:.3} at {} evals{}",
                    p.energy_w2(),
                    p.energy_evals,
                    run.sampler
                        .stage()
                        .map(|s| format!("  [{s}]"))
                        .unwrap_or_default()
                ));
                curves[lane].push(p);
            }
            if last_draw.elapsed() > Duration::from_millis(300) {
                lane_bars[lane].set_position(
                    budget
                        .progress(run.counters(), &starts[lane], started.elapsed())
                        .0,
                );
                last_draw = Instant::now();
            }
            Ok(())
        })
        .context("the race stopped")?;
    if let (Outcome::Diverged, Some(l)) = (outcome, lane) {
        bail!(
            "{} diverged: {} gradient steps in a row were non-finite; lower its learning rate",
            kinds[l].label(),
            runs[l].skipped_in_a_row()
        );
    }

    let mut summaries = Vec::new();
    for (((kind, (path, scene)), run), bar) in kinds
        .iter()
        .zip(&lanes)
        .zip(runs.iter_mut())
        .zip(&lane_bars)
    {
        bar.set_position(bar.length().unwrap_or(0));
        bar.set_message(format!("drawing {} final samples", args.samples));
        let s = run.sampler.sample(
            args.samples,
            SampleOptions {
                weights: true,
                fill: true,
                ..SampleOptions::default()
            },
        )?;
        bar.set_message("timing further samples");
        let (draw_evals, draw_seconds) = run.sampler.draw_cost(1000)?;
        write_npy(
            &args.out.join(format!("{}.npy", kind.name())),
            &Matrix::new(args.samples, layout.dim(), s.x.clone()),
        )?;
        bar.set_message("judging the final samples (eq-W2 included)");
        let (m, _) = final_judge
            .judge(
                run.sampler.energy(),
                &s.x,
                &s.energies,
                final_judge.which(true),
            )
            .with_context(|| format!("judging {}", kind.label()))?;
        let ess = s.ess();
        let further = boltzmann_studio::run::Further {
            energy_evals: draw_evals,
            seconds: draw_seconds,
        };
        let last = RacePoint::new(None, run.counters(), &m, ess, Some(further));
        csv.text_row(&last.row(*kind, args.energy_ms))?;
        let (cost_seconds, further_1000_cost_seconds) = (
            last.cost_seconds(args.energy_ms),
            last.further_1000_seconds(args.energy_ms)
                .unwrap_or(f64::NAN),
        );
        bar.finish_and_clear();
        let c = run.counters();
        println!(
            "{:>8}: {}  after {} energy evals, {} gradient steps, {:.0} s of training",
            kind.name(),
            m.line(),
            c.energy_evals,
            c.gradient_steps,
            c.wall_seconds,
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
            cost_seconds,
            further_1000_cost_seconds,
            note: kind.info().samples_note,
        });
    }
    let standings = race::standings(&curves.iter().map(|c| c.as_slice()).collect::<Vec<_>>());
    if let Some(st) = &standings {
        let names: Vec<String> = st
            .order
            .iter()
            .map(|&l| {
                format!(
                    "{} {:.3} (at {} evals)",
                    kinds[l].label(),
                    st.judged[l].energy_w2(),
                    st.judged[l].energy_evals
                )
            })
            .collect();
        println!(
            "ranking by E-W2 at the budget point of {} energy evals: {}",
            st.budget,
            names.join(", ")
        );
    }
    let mut curves: Vec<(SamplerKind, Vec<RacePoint>)> =
        kinds.iter().copied().zip(curves).collect();
    let best = summaries
        .iter()
        .map(|s| s.last.energy_w2())
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    for (s, (_, pts)) in summaries.iter_mut().zip(&curves) {
        s.first_below_2x_best = pts
            .iter()
            .chain(std::iter::once(&s.last))
            .find(|p| p.energy_w2() < 2.0 * best)
            .map(|p| Reached {
                energy_evals: p.energy_evals,
                wall_seconds: p.wall_seconds,
                energy_w2: p.energy_w2(),
                cost_seconds: p.cost_seconds(args.energy_ms),
            });
    }
    for (s, (_, pts)) in summaries.iter().zip(curves.iter_mut()) {
        pts.push(s.last.clone());
    }
    if args.energy_ms > 0.0 {
        print_costs(&summaries, &curves, args.energy_ms);
    }
    let png = args.out.join("compare.png");
    let cost_label = if args.energy_ms > 0.0 {
        format!(
            "cost: training + energy at {} ms/evaluation (s)",
            args.energy_ms
        )
    } else {
        "training time (s)".to_string()
    };
    crate::plot::compare_png(
        &png,
        &base.name,
        &cost_label,
        &plot_series(&curves, args.energy_ms),
    )
    .with_context(|| format!("cannot draw {}", png.display()))?;
    let summary = Summary {
        scene: args.scene.display().to_string(),
        budget: match budget {
            Budget::TrainingSeconds(s) => format!("{} minutes of training per kind", s / 60.0),
            Budget::EnergyEvals(n) => format!("{n} energy evaluations per kind"),
            other => format!("{other:?} per kind"),
        },
        energy_ms: args.energy_ms,
        threads: rayon::current_num_threads(),
        reference: reference_path.display().to_string(),
        best_final_energy_w2: best,
        ranking: standings
            .as_ref()
            .map(|st| {
                st.order
                    .iter()
                    .map(|&l| kinds[l].name().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        ranked_at_energy_evals: standings.as_ref().map(|st| st.budget),
        kinds: summaries,
    };
    // Written last: a folder with summary.json is a finished comparison.
    std::fs::write(&summary_path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    println!(
        "wrote {}/compare.csv, summary.json, compare.png and {} sample files",
        args.out.display(),
        kinds.len()
    );
    Ok(())
}

/// Curves handed to the plot: (kind, [(energy evals, cost seconds, E-W2)]).
fn plot_series(
    curves: &[(SamplerKind, Vec<RacePoint>)],
    energy_ms: f64,
) -> Vec<(String, Vec<(f64, f64, f64)>)> {
    curves
        .iter()
        .map(|(k, pts)| {
            (
                k.label().to_string(),
                pts.iter()
                    .map(|p| {
                        (
                            p.energy_evals as f64,
                            p.cost_seconds(energy_ms),
                            p.energy_w2(),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

/// With priced energy evaluations: each kind's cost and that of 1000 further samples, and for
/// each pair where one kind cost more to train but less per further sample, how many further
/// samples make it the cheaper one overall (the amortisation a learned sampler is for).
fn print_costs(kinds: &[KindSummary], curves: &[(SamplerKind, Vec<RacePoint>)], energy_ms: f64) {
    println!("with an energy evaluation costing {energy_ms} ms:");
    // Quality at equal cost: each kind at the whole cost of the cheapest kind's run.
    let cheapest = kinds
        .iter()
        .map(|k| k.cost_seconds)
        .fold(f64::INFINITY, f64::min);
    let at: Vec<String> = curves
        .iter()
        .filter_map(|(k, pts)| {
            let p = race::at_cost(pts, energy_ms, cheapest)?;
            Some(format!(
                "{} {:.3} (at {:.1} s)",
                k.name(),
                p.energy_w2(),
                p.cost_seconds(energy_ms)
            ))
        })
        .collect();
    println!(
        "E-W2 at equal cost, each kind's first judgement at or past {cheapest:.1} s: {}",
        at.join(", ")
    );
    for k in kinds {
        println!(
            "{:>8}: {:.1} s to train, {:.3} s per 1000 further samples",
            k.kind, k.cost_seconds, k.further_1000_cost_seconds
        );
    }
    let costs: Vec<(f64, f64)> = kinds
        .iter()
        .map(|k| (k.cost_seconds, k.further_1000_cost_seconds))
        .collect();
    for (a, b, n) in race::break_evens(&costs) {
        println!(
            "{:>8} is cheaper than {} overall from {:.0} further samples on",
            kinds[a].kind, kinds[b].kind, n
        );
    }
}
