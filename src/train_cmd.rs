//! `train` and `sample`: the headless trainer with a progress bar, checkpoints and a metrics log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use boltzmann_studio::cli::{SampleArgs, TrainArgs};
use boltzmann_studio::io::csv::CsvWriter;
use boltzmann_studio::io::{Matrix, read_npy, write_npy_f64};
use boltzmann_studio::metrics::Family;
use boltzmann_studio::run::{Budget, EvalPolicy, Evaluation, Evaluator, Outcome, Run, log_columns};
use boltzmann_studio::sampler::SampleOptions;
use boltzmann_studio::scene::Scene;
use boltzmann_studio::{checkpoint, limits, metrics};
use indicatif::{ProgressBar, ProgressStyle};

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    if args.minutes.is_none() && args.steps.is_none() {
        bail!("say how long to train: --minutes M or --steps N");
    }
    if let Some(m) = args.minutes {
        if !(m > 0.0 && m.is_finite()) {
            bail!("--minutes must be a positive number (got {m})");
        }
    }
    let run_dir = &args.out;
    let scene_in_run = run_dir.join("scene.ron");
    let (scene_path, mut scene) = if args.resume {
        (
            scene_in_run.clone(),
            Scene::load(&scene_in_run).context("cannot resume")?,
        )
    } else {
        (args.scene.clone(), Scene::load(&args.scene)?)
    };
    if let Some(seed) = args.seed {
        if args.resume && seed != scene.sampler.seed {
            bail!(
                "--seed {seed} differs from the resumed run's seed {}",
                scene.sampler.seed
            );
        }
        scene.sampler.seed = seed;
    }
    if args.steps.is_some() && !scene.sampler.kind.learns() {
        bail!(
            "--steps counts gradient steps, and {} takes none: give --minutes",
            scene.sampler.kind.label()
        );
    }
    for w in scene.warnings() {
        eprintln!("warning: {}: {w}", scene_path.display());
    }
    let reference_path = scene
        .reference_path(&scene_path)
        .or_else(|| scene.reference_path(&args.scene));
    // Held for the whole run: a second `train` on this folder is refused, and a `sample` run
    // meanwhile reads the current checkpoint without tidying the one being written.
    let writer = checkpoint::Writer::open(run_dir)?;

    let mut sampler = scene.build_sampler()?;
    // metrics.csv: one row per outer iteration; metrics only at evaluation points.
    let columns = log_columns(Family::of(sampler.energy()));
    let csv_path = run_dir.join("metrics.csv");
    let mut csv = if args.resume {
        sampler.load(&writer.current()?)?;
        let header = std::fs::read_to_string(&csv_path)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string));
        match header {
            Some(h) if h == columns.join(",") => {
                // Rows written after the checkpoint (before a kill) are written again as training goes on.
                checkpoint::trim_metrics(&csv_path, sampler.counters().outer_iterations)?;
                CsvWriter::append(&csv_path, columns.len())?
            }
            Some(_) => {
                // Written before the metrics were named by family: kept beside, and the resumed
                // run starts a new log.
                let old = run_dir.join("metrics.before-resume.csv");
                std::fs::rename(&csv_path, &old)
                    .with_context(|| format!("cannot move {} aside", csv_path.display()))?;
                eprintln!(
                    "note: {} had other columns; kept as {}",
                    csv_path.display(),
                    old.display()
                );
                CsvWriter::create(&csv_path, &columns)?
            }
            // A run folder made from a shipped run (which carries no log).
            None => CsvWriter::create(&csv_path, &columns)?,
        }
    } else {
        if checkpoint::exists(run_dir) {
            bail!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                run_dir.display()
            );
        }
        // The scene is copied with any reference path made absolute, so the run folder stands alone.
        let saved = scene.with_absolute_reference(&scene_path);
        checkpoint::write_atomic(&scene_in_run, saved.to_ron().as_bytes())?;
        CsvWriter::create(&csv_path, &columns)?
    };
    let evaluator = match &reference_path {
        Some(p) => {
            let reference = read_npy(p)?;
            Some(
                Evaluator::new(
                    &reference,
                    sampler.energy().layout(),
                    scene.schedule.eval_samples,
                    0,
                )
                .with_context(|| format!("{}", p.display()))?,
            )
        }
        None => match boltzmann_studio::reference::exact_in_memory(scene.energy().as_ref()) {
            Some(reference) => {
                eprintln!(
                    "note: the scene names no reference file; judging against {} exact draws by quadrature",
                    reference.rows
                );
                Some(Evaluator::new(
                    &reference,
                    sampler.energy().layout(),
                    scene.schedule.eval_samples,
                    0,
                )?)
            }
            None => {
                eprintln!(
                    "note: the scene names no reference file; training without evaluation (`reference` computes one)"
                );
                None
            }
        },
    };
    let mut run = Run::new(
        sampler,
        evaluator,
        EvalPolicy::EveryIterations(scene.schedule.eval_every as u64),
        false,
        1,
    );

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }

    let start = Instant::now();
    let start_counters = run.counters().clone();
    let budget = match (args.minutes, args.steps) {
        (Some(m), _) => Budget::WallSeconds(m * 60.0),
        (None, Some(s)) => Budget::GradientSteps(s),
        _ => unreachable!(),
    };
    let (_, len, unit) = budget.progress(&start_counters, &start_counters, Duration::ZERO);
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:25}}] {{pos}}/{{len}} {unit}  {{msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!(
        "{} {} train",
        scene.name,
        scene.sampler.kind.name()
    ));
    let mut loss_ema: Option<f64> = None;
    let mut last: Option<Evaluation> = None;
    let mut iteration_losses: Vec<f32> = Vec::new();
    let mut last_draw = Instant::now();
    let stopped = || stop.load(Ordering::SeqCst);
    let outcome = run.drive(budget, &stopped, &mut |run, tick| {
        iteration_losses.extend(&tick.advance.losses);
        for e in tick.evaluations {
            last = Some(e);
        }
        if !tick.advance.iteration_done {
            if last_draw.elapsed() > Duration::from_millis(500) {
                bar.set_position(
                    budget
                        .progress(run.counters(), &start_counters, start.elapsed())
                        .0,
                );
                last_draw = Instant::now();
            }
            return Ok(());
        }
        let c = run.counters().clone();
        let mean_loss = if iteration_losses.is_empty() {
            None
        } else {
            Some(
                iteration_losses.iter().map(|&l| l as f64).sum::<f64>()
                    / iteration_losses.len() as f64,
            )
        };
        iteration_losses.clear();
        if let Some(l) = mean_loss {
            loss_ema = Some(loss_ema.map_or(l, |e| 0.9 * e + 0.1 * l));
        }
        let mut row = vec![
            Some(c.gradient_steps as f64),
            Some(c.outer_iterations as f64),
            Some(c.wall_seconds),
            mean_loss,
            Some(c.energy_evals as f64),
        ];
        row.resize(columns.len(), None);
        let evaluated = last
            .as_ref()
            .filter(|e| e.counters.outer_iterations == c.outer_iterations);
        if let Some(e) = evaluated {
            row.truncate(5);
            row.extend(e.metrics.iter().map(|(_, v)| v));
            row.extend([e.ess, run.evaluator().map(|ev| ev.len() as f64)]);
        }
        // The row first: a kill between the two leaves a row past the checkpoint, which a resume
        // cuts and writes again; the other order would lose the row for good.
        csv.row(&row)?;
        if evaluated.is_some() {
            writer.save(|d| run.sampler.save(d))?;
        }
        let rate = (c.gradient_steps - start_counters.gradient_steps) as f64
            / start.elapsed().as_secs_f64();
        bar.set_position(budget.progress(&c, &start_counters, start.elapsed()).0);
        let stage = run
            .sampler
            .stage()
            .map(|s| format!("  [{s}]"))
            .unwrap_or_default();
        bar.set_message(format!(
            "step {}  loss {:.3}  {rate:.1} steps/s  {} energy evals  E-W2 {}{stage}",
            c.gradient_steps,
            loss_ema.unwrap_or(f64::NAN),
            c.energy_evals,
            last.as_ref()
                .map_or("–".into(), |e| format!("{:.2}", e.metrics.energy_w2())),
        ));
        Ok(())
    })?;
    if outcome == Outcome::Diverged {
        bar.finish_and_clear();
        writer.save(|d| run.sampler.save(d))?;
        bail!(
            "training diverged: the last {} gradient steps had a non-finite loss or gradient and were skipped \
             ({} skipped in all); the last good weights are saved in {} — lower the learning rate or the SDE step size",
            run.skipped_in_a_row(),
            run.counters().skipped_steps,
            run_dir.display()
        );
    }
    let interrupted = outcome == Outcome::Stopped;
    bar.finish_and_clear();
    writer.save(|d| run.sampler.save(d))?;
    let c = run.counters().clone();
    if interrupted {
        println!("interrupted: checkpoint saved; continue with --resume");
    }
    println!(
        "{} ({}): {} gradient steps, {} outer iterations, {} energy evaluations, {:.0} s of training ({:.2} evals per step)",
        scene.name,
        scene.sampler.kind.label(),
        c.gradient_steps,
        c.outer_iterations,
        c.energy_evals,
        c.wall_seconds,
        c.energy_evals as f64 / c.gradient_steps.max(1) as f64
    );
    if c.skipped_steps > 0 || c.dropped_samples > 0 {
        println!(
            "non-finite values: {} steps skipped, {} samples dropped (their energy, gradient or path was not finite)",
            c.skipped_steps, c.dropped_samples
        );
    }
    // An interrupted run exits at once; its last evaluation is in metrics.csv.
    if !interrupted {
        if let Some(e) = run.evaluate()? {
            let m = &e.metrics;
            println!(
                "final ({} samples): {}  ESS {}{}",
                run.evaluator().map_or(0, |ev| ev.len()),
                m.line(),
                e.ess.map_or("n/a".into(), |v| format!("{v:.4}")),
                if m.family.keys().contains(&"eq_w2") {
                    "   (eq-W2: boltzmann-studio sample + eval)"
                } else {
                    ""
                }
            );
        }
    }
    println!("run saved in {}", run_dir.display());
    Ok(())
}

/// A trained run's scene and its sampler at the current checkpoint, after checking that `n`
/// samples (`bytes_each` per coordinate row) fit `--n`'s limit.
fn open_run(
    run_dir: &std::path::Path,
    n: usize,
    bytes_each: impl Fn(u64) -> u64,
) -> anyhow::Result<(Scene, Box<dyn boltzmann_studio::sampler::Sampler>)> {
    let scene = Scene::load(&run_dir.join("scene.ron"))
        .with_context(|| format!("{} is not a run folder", run_dir.display()))?;
    limits::flag("--n", n, limits::MAX_DRAW, bytes_each(scene.energy().dim() as u64))?;
    let mut sampler = scene.build_sampler()?;
    sampler.load(&checkpoint::current(run_dir)?)?;
    Ok((scene, sampler))
}

pub fn logz(args: boltzmann_studio::cli::LogzArgs) -> anyhow::Result<()> {
    let (scene, mut sampler) = open_run(&args.run_dir, args.n, |dim| 4 * dim + 16)?;
    if !boltzmann_studio::logz::supported(sampler.as_ref()) {
        // Say so before the exact grid is computed.
        boltzmann_studio::logz::estimate(sampler.as_mut(), 1, 0, None)?;
    }
    let exact = boltzmann_studio::logz::exact(scene.energy().as_ref());
    let bar = ProgressBar::new_spinner();
    bar.set_message(format!("simulating {} paths", args.n));
    bar.enable_steady_tick(Duration::from_millis(200));
    let z = boltzmann_studio::logz::estimate(sampler.as_mut(), args.n, args.seed, exact)?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&z)?);
        return Ok(());
    }
    println!("log Z estimates of {} ({} paths, {} energy evaluations):", scene.sampler.kind.label(), z.n, z.energy_evals);
    println!("  ELBO (mean ℓ)              {:.4}", z.log_z_elbo);
    println!("  reweighted (logmeanexp ℓ)  {:.4} ± {:.4}  (ESS {:.3})", z.log_z_rw, z.stderr, z.ess);
    if let Some(l) = z.log_z_learned {
        println!("  learned log Z (TB)         {l:.4}");
    }
    match z.log_z_exact {
        Some(e) => println!(
            "  exact (grid quadrature)    {e:.4}   Δlog Z: ELBO {:.4}, reweighted {:.4}",
            e - z.log_z_elbo,
            e - z.log_z_rw
        ),
        None => println!("  exact: none (the system has no exact grid)"),
    }
    println!("  Z = ∫ exp(−E/kT) over the sampler's coordinates (dx dy; dφ in radians; CoM-free for particles)");
    Ok(())
}

pub fn sample(args: SampleArgs) -> anyhow::Result<()> {
    let (scene, mut sampler) = open_run(&args.run_dir, args.n, |dim| 4 * dim + 8)?;
    let ext = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let molecule = scene.system.is_molecule();
    if !(ext == "npy" || ext == "xyz" || ext == "pdb" && molecule) {
        bail!(
            "{}: output must end in .npy or .xyz{}",
            args.out.display(),
            if molecule { " or .pdb" } else { "" }
        );
    }
    let bar = ProgressBar::new_spinner();
    bar.set_message(format!(
        "simulating {} samples ({} SDE steps)",
        args.n,
        scene
            .sampler
            .sample_steps
            .unwrap_or(scene.sampler.sde_steps)
    ));
    bar.enable_steady_tick(Duration::from_millis(200));
    let t = Instant::now();
    let s = sampler.sample(
        args.n,
        SampleOptions {
            weights: args.weights.is_some() || args.resample,
            fill: true,
            seed: Some(args.seed),
            ..SampleOptions::default()
        },
    )?;
    bar.finish_and_clear();
    if (args.weights.is_some() || args.resample) && s.log_weights.is_none() {
        let weighing: Vec<&str> = boltzmann_studio::sampler::SamplerKind::all()
            .filter(|k| k.info().weights)
            .map(|k| k.label())
            .collect();
        bail!(
            "{} defines no importance weights: --weights and --resample need a kind that weighs its samples ({})",
            scene.sampler.kind.label(),
            weighing.join(", ")
        );
    }
    let energy = scene.energy();
    let (mut m, mut energies) = (Matrix::new(args.n, energy.dim(), s.x), s.energies);
    if args.resample {
        let lw = s.log_weights.as_ref().expect("weights were asked for");
        let u = rand::Rng::random::<f64>(
            &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(args.seed),
        );
        let idx = metrics::systematic_resample(lw, u)
            .context("no sample has a finite importance weight: nothing to resample")?;
        let mut distinct = idx.clone();
        distinct.dedup();
        println!(
            "resampled by importance weights: ESS {:.4}, {} distinct of {} samples",
            metrics::ess(lw),
            distinct.len(),
            args.n
        );
        m = m.select(&idx);
        energies = idx.iter().map(|&i| energies[i]).collect();
    }
    boltzmann_studio::io::write_samples(
        &args.out,
        energy.as_ref(),
        scene.system.species(),
        &m,
        Some(&energies),
    )?;
    let finite: Vec<f64> = energies.iter().copied().filter(|e| e.is_finite()).collect();
    println!(
        "wrote {} samples to {} in {:.1} s",
        args.n,
        args.out.display(),
        t.elapsed().as_secs_f64()
    );
    if !finite.is_empty() {
        let st = crate::stats(&finite);
        println!(
            "energy   mean {:.2}  std {:.2}  min {:.2}  ({} non-finite)",
            st.mean,
            st.std,
            st.min,
            args.n - finite.len()
        );
    }
    if let (Some(path), Some(lw)) = (&args.weights, &s.log_weights) {
        write_npy_f64(path, &[lw.len()], lw)?;
        println!(
            "log-weights written to {}; normalised ESS {:.4}",
            path.display(),
            metrics::ess(lw)
        );
    }
    Ok(())
}
