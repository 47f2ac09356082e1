//! The `boltzmann-studio` command line: glue from parsed arguments to the core library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use boltzmann_studio::io::{Matrix, read_npy, write_npy, write_npy_f64};
use boltzmann_studio::run::Evaluator;
use boltzmann_studio::sampler::mcmc::sample_reference;
use boltzmann_studio::scene::Scene;
use boltzmann_studio::{limits, metrics};

#[cfg(feature = "app")]
use boltzmann_studio::cli::{AppArgs, LessonArgs};
use boltzmann_studio::cli::{BIN, Cli, Command};

mod compare_cmd;
mod plot;
mod train_cmd;

/// candle allocates a fresh buffer per tensor op; glibc returns large blocks to the OS on free,
/// so every op paid page faults (≈30% of an EGNN forward). mimalloc keeps and reuses them:
/// forward 150 → 55 ms, forward+backward 740 → 375 ms (LJ-13, batch 256, 2 threads).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "app")]
fn lesson_cmd(a: LessonArgs) -> anyhow::Result<()> {
    let lesson = boltzmann_studio::lesson::LoadedLesson::load(&a.file)?;
    if a.step > lesson.len() {
        bail!(
            "--step {}: the lesson {} has {} steps",
            a.step,
            a.file.display(),
            lesson.len()
        );
    }
    if let Some(dir) = &a.screenshot_steps {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        println!(
            "rendering {} steps of \"{}\" to {}",
            lesson.len() + 1 - a.step,
            lesson.lesson.title,
            dir.display()
        );
    }
    let mut opts = boltzmann_studio::app::AppOptions::new(a.file.clone());
    opts.lesson = Some(a.file);
    opts.lesson_step = a.step - 1;
    opts.projector = a.projector;
    opts.screenshot_steps = a.screenshot_steps;
    boltzmann_studio::app::run(opts)
}

/// scenes/lj13.ron from the working directory, else from the source tree this was built from.
#[cfg(feature = "app")]
fn default_scene() -> PathBuf {
    let local = PathBuf::from("scenes/lj13.ron");
    if local.exists() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes/lj13.ron")
    }
}

#[cfg(feature = "app")]
fn app_cmd(a: AppArgs) -> anyhow::Result<()> {
    let race: Vec<boltzmann_studio::sampler::SamplerKind> = a
        .race
        .iter()
        .map(|k| {
            k.parse()
                .map_err(|e: String| anyhow::anyhow!("--race: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    if race.len() == 1 {
        bail!("--race needs two kinds or more (got {})", a.race.join(","));
    }
    let scene = a.scene.unwrap_or_else(default_scene);
    // A session file (saved from the app) reopens that state; anything else is a scene.
    let session = match boltzmann_studio::limits::read_text(
        &scene,
        boltzmann_studio::limits::TEXT_FILE_BYTES,
    ) {
        Ok(text) if boltzmann_studio::session::Session::is_session(&text) => {
            Some(boltzmann_studio::session::Session::parse(&text, &scene)?)
        }
        _ => None,
    };
    if let Some(ms) = a
        .energy_ms
        .filter(|ms| !(ms.is_finite() && (0.0..=boltzmann_studio::app::MAX_ENERGY_MS).contains(ms)))
    {
        bail!(
            "--energy-ms must be a cost in milliseconds from 0 to {} (got {ms})",
            boltzmann_studio::app::MAX_ENERGY_MS
        );
    }
    let mut opts = boltzmann_studio::app::AppOptions::new(scene);
    opts.race = race;
    opts.energy_ms = a.energy_ms.unwrap_or(0.0);
    opts.compute_reference = a.compute_reference;
    opts.after_evals = a.after_evals.map(|n| n as u64);
    opts.screenshot = a.screenshot;
    opts.after_steps = a.after_steps;
    opts.report = a.report;
    opts.continuous = a.continuous;
    opts.hold = a.hold;
    opts.trajectory_at = a.trajectory_at;
    opts.field_at = a.field_at;
    opts.color_by = a.color_by;
    opts.projector = a.projector;
    opts.session = session;
    boltzmann_studio::app::run(opts)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: clap's first line, which says what was wrong, with the indented lines
            // that follow it (the names of missing arguments).
            let text = e.render().to_string();
            let mut lines = text.lines();
            let mut first = lines
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            for l in lines.take_while(|l| l.starts_with("  ")) {
                first.push(' ');
                first.push_str(l.trim());
            }
            eprintln!("{BIN}: error: {first} (see '{BIN} --help')");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{BIN}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        #[cfg(feature = "app")]
        None => app_cmd(AppArgs {
            scene: None,
            screenshot: None,
            after_steps: 0,
            report: false,
            continuous: false,
            projector: false,
            hold: 0.0,
            trajectory_at: None,
            field_at: None,
            color_by: None,
            race: Vec::new(),
            energy_ms: None,
            after_evals: None,
            compute_reference: false,
        }),
        #[cfg(not(feature = "app"))]
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            Ok(())
        }
        #[cfg(feature = "app")]
        Some(Command::App(args)) => app_cmd(args),
        #[cfg(feature = "app")]
        Some(Command::Lesson(args)) => lesson_cmd(args),
        Some(Command::Train(args)) => train_cmd::train(args),
        Some(Command::Sample(args)) => train_cmd::sample(args),
        Some(Command::Logz(args)) => train_cmd::logz(args),
        Some(Command::Compare(args)) => compare_cmd::compare(args),
        Some(Command::Info { scene }) => {
            print!(
                "{}",
                boltzmann_studio::info::describe(&Scene::load(&scene)?)
            );
            Ok(())
        }
        Some(Command::Energy {
            scene,
            input,
            out,
            grad,
        }) => energy_cmd(&scene, &input, out.as_deref(), grad.as_deref()),
        Some(Command::Reference {
            scene,
            n,
            out,
            seed,
            mcmc,
        }) => reference_cmd(&scene, n, out.as_deref(), seed, mcmc),
        Some(Command::Eval {
            scene,
            samples,
            reference,
            n,
            seed,
            json,
            skip_eq,
            bins,
        }) => eval_cmd(
            &scene,
            &samples,
            reference.as_deref(),
            n,
            seed,
            json,
            skip_eq,
            bins,
        ),
    }
}

/// Reads a sample file and checks it fits the scene's system.
pub(crate) fn load_samples(path: &Path, scene: &Scene) -> anyhow::Result<Matrix> {
    let m = read_npy(path)?;
    let dim = scene.energy().dim();
    if m.cols != dim {
        let what = if let boltzmann_studio::scene::System::Formula(f) = &scene.system {
            format!("the formula's variables {}", f.variables.join(", "))
        } else if scene.system.is_molecule() {
            format!(
                "torsion angles in radians, {}",
                scene
                    .energy()
                    .molecule()
                    .map(|m| m.torsion_names().join(", "))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "{} particles × {}-D",
                scene.energy().layout().particles,
                scene.energy().layout().spatial_dim
            )
        };
        bail!(
            "{}: rows have {} coordinates, but {} needs {dim} ({what})",
            path.display(),
            m.cols,
            scene.name
        );
    }
    if m.rows == 0 {
        bail!("{}: contains no samples", path.display());
    }
    Ok(m)
}

pub(crate) struct Stats {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

pub(crate) fn stats(v: &[f64]) -> Stats {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    Stats {
        mean,
        std: var.sqrt(),
        min: v.iter().copied().fold(f64::INFINITY, f64::min),
        max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

fn energy_cmd(
    scene_path: &Path,
    input: &Path,
    out: Option<&Path>,
    grad: Option<&Path>,
) -> anyhow::Result<()> {
    let scene = Scene::load(scene_path)?;
    let x = load_samples(input, &scene)?;
    let energy = scene.energy();
    let e = energy.batch_energy(&x.data);
    if let Some((i, v)) = e.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        bail!(
            "{}: sample {i} has energy {v} (overlapping particles? outside the formula's domain?)",
            input.display()
        );
    }
    if let Some(path) = grad {
        // Row by row in f64, as the energies are.
        let dim = energy.dim();
        let mut g = vec![0.0f64; x.data.len()];
        let mut row = vec![0.0f64; dim];
        for (xr, gr) in x.data.chunks(dim).zip(g.chunks_mut(dim)) {
            for (a, &b) in row.iter_mut().zip(xr) {
                *a = b as f64;
            }
            energy.energy_grad(&row, gr);
        }
        write_npy_f64(path, &[e.len(), dim], &g)?;
        println!(
            "wrote {} gradients ({} values each) to {}",
            e.len(),
            dim,
            path.display()
        );
    }
    if let Some(mol) = energy.molecule() {
        // The sampler sees E/kT; chemists read kcal/mol.
        let kt = mol.kt_kcal();
        let s = stats(&e);
        println!(
            "system   {} at {} K (kT = {kt:.4} kcal/mol)",
            energy.name(),
            mol.temperature()
        );
        println!("count    {}", e.len());
        println!(
            "E/kT     mean {:.3}  std {:.3}  min {:.3}  max {:.3}",
            s.mean, s.std, s.min, s.max
        );
        println!(
            "kcal/mol mean {:.3}  std {:.3}  min {:.3}  max {:.3}",
            s.mean * kt,
            s.std * kt,
            s.min * kt,
            s.max * kt
        );
        if let Some(out) = out {
            write_npy_f64(out, &[e.len()], &e)?;
            println!(
                "wrote {} reduced energies (E/kT) to {}",
                e.len(),
                out.display()
            );
        }
        return Ok(());
    }
    if let Some(out) = out {
        write_npy_f64(out, &[e.len()], &e)?;
        println!("wrote {} energies to {}", e.len(), out.display());
    } else {
        let s = stats(&e);
        let t_conf = metrics::configurational_temperature(energy.as_ref(), &x);
        println!("system   {}", energy.name());
        println!("count    {}", e.len());
        println!("mean     {:.2}", s.mean);
        println!("std      {:.2}", s.std);
        println!("min      {:.2}", s.min);
        println!("max      {:.2}", s.max);
        println!("T_conf   {t_conf:.3}   (<|grad E|^2> / <laplacian E>; 1 at equilibrium)");
    }
    Ok(())
}

fn reference_cmd(
    scene_path: &Path,
    n: usize,
    out: Option<&Path>,
    seed: u64,
    force_mcmc: bool,
) -> anyhow::Result<()> {
    let scene = Scene::load(scene_path)?;
    let cached;
    let out = match out {
        Some(o) => o,
        None if scene.reference.file.is_none() => {
            cached = scene.reference_cache(scene_path);
            &cached
        }
        None => bail!(
            "{}: the scene names its reference file {}; give --out to write a new one elsewhere",
            scene_path.display(),
            scene.reference.file.as_deref().unwrap_or_default()
        ),
    };
    let energy = scene.energy();
    limits::flag("--n", n, limits::MAX_DRAW, 4 * energy.dim() as u64)?;
    if energy.torus() && energy.dim() <= 2 && !force_mcmc {
        return grid_reference(energy.as_ref(), n, out, seed);
    }
    let cfg = &scene.reference.mcmc;
    let bar = ProgressBar::new(cfg.total_sweeps(n) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} sweeps  {msg}  ({elapsed}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{} reference", energy.name()));
    let start = Instant::now();
    let output = sample_reference(energy.as_ref(), cfg, n, seed, &mut |p| {
        bar.set_length(p.sweeps_total as u64);
        bar.set_position(p.sweeps_done as u64);
        bar.set_message(format!("accept(T=1) {:.2}", p.accept_t1));
    })?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    write_npy(out, &output.samples).with_context(|| "could not save the samples")?;
    let e = energy.batch_energy(&output.samples.data);
    let s = stats(&e);
    let t_conf = metrics::configurational_temperature(energy.as_ref(), &output.samples);
    println!(
        "wrote {} samples of {} to {} in {secs:.1} s",
        n,
        energy.name(),
        out.display()
    );
    println!(
        "energy   mean {:.2}  std {:.2}  min {:.2}",
        s.mean, s.std, s.min
    );
    println!("T_conf   {t_conf:.3}");
    if let Some(mol) = energy.molecule() {
        print_populations(&mol.torsion_names(), &output.samples, None);
    }
    if let boltzmann_studio::scene::System::Formula(f) = &scene.system {
        if let Some(grid) = f.build().ok().and_then(|f| f.grid()) {
            // What logz (issue: GFlowNet kinds) compares against: Z = ∫ exp(−E/T) over the box.
            println!(
                "log Z    {:.6}   (exact by quadrature over the bounds: Z = ∫ exp(−E/T) d{})",
                grid.log_z(),
                f.variables.join(" d")
            );
        }
    }
    if !output.step_sizes.is_empty() {
        let temps = cfg.temperatures();
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("ladder   T = {}", fmt(&temps));
        println!("accept   {}", fmt(&output.accept));
        println!("swaps    {}", fmt(&output.swap_accept));
        println!("steps    {}", fmt(&output.step_sizes));
        println!("gradient evaluations {}", output.gradient_evals);
    }
    Ok(())
}

/// The exact reference of one or two torsions: grid quadrature with 1° cells, and i.i.d. draws.
fn grid_reference(
    energy: &dyn boltzmann_studio::energy::Energy,
    n: usize,
    out: &Path,
    seed: u64,
) -> anyhow::Result<()> {
    let mol = energy
        .molecule()
        .context("a torsion system is a molecule")?;
    let start = Instant::now();
    let (grid, m) = boltzmann_studio::reference::torsion_grid_draws(energy, n, seed)?;
    write_npy(out, &m).with_context(|| "could not save the samples")?;
    println!(
        "wrote {n} exact samples of {} at {} K to {} ({} grid cells of 1°, {:.1} s)",
        energy.name(),
        mol.temperature(),
        out.display(),
        grid.weights.len(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "mean E/kT {:.4} (grid)   {:.4} kcal/mol",
        grid.mean_energy(),
        grid.mean_energy() * mol.kt_kcal()
    );
    let names = mol.torsion_names();
    let exact: Vec<(String, f64)> = boltzmann_studio::metrics::torsions::region_labels(&names)
        .into_iter()
        .map(|label| {
            (
                label.to_string(),
                grid.probability(|t| {
                    boltzmann_studio::metrics::torsions::region(t, &names) == label
                }),
            )
        })
        .collect();
    print_populations(&names, &m, Some(&exact));
    Ok(())
}

/// A metric set as a table: label, value, what it measures (and `notes` by key).
fn print_metrics(r: &metrics::MetricSet, notes: &[(&str, String)]) {
    for (m, v) in r.iter() {
        let note = notes
            .iter()
            .find(|(k, _)| *k == m.key)
            .map(|(_, n)| format!(" ({n})"))
            .unwrap_or_default();
        match v {
            Some(v) => println!("{:<10} {v:<9.4} {}{note}", m.label, m.help),
            None => println!("{:<10} {:<9} {}", m.label, "skipped", m.help),
        }
    }
}

/// Region populations of torsion samples, beside exact ones when given.
fn print_populations(names: &[String], samples: &Matrix, exact: Option<&[(String, f64)]>) {
    let x: Vec<f64> = samples.data.iter().map(|&v| v as f64).collect();
    let pops = boltzmann_studio::metrics::torsions::populations(&x, samples.cols, names);
    for (i, (label, p)) in pops.iter().enumerate() {
        match exact {
            Some(e) => println!("{label:<13} exact {:.4}   samples {p:.4}", e[i].1),
            None => println!("{label:<13} {p:.4}"),
        }
    }
}

fn eval_cmd(
    scene_path: &Path,
    samples_path: &Path,
    reference: Option<&Path>,
    n: usize,
    seed: u64,
    json: bool,
    skip_eq: bool,
    bins: usize,
) -> anyhow::Result<()> {
    // Exact optimal transport holds an n × n matrix of f64 costs.
    limits::flag(
        "--n",
        n,
        limits::MAX_EVAL_SAMPLES,
        8 * n.min(1 << 20) as u64,
    )?;
    let scene = Scene::load(scene_path)?;
    let exact = boltzmann_studio::reference::exact_in_memory(scene.energy().as_ref());
    let reference_path = match (reference, &exact) {
        (Some(p), _) => p.to_path_buf(),
        (None, exact) => match scene.reference_path(scene_path) {
            Some(p) => p,
            // A typed formula or landscape without a file: its exact draws, in memory.
            None if exact.is_some() => PathBuf::from("(exact draws by quadrature)"),
            None => bail!(
                "{} names no reference file; pass --reference, or compute one with `boltzmann-studio reference {}`",
                scene_path.display(),
                scene_path.display()
            ),
        },
    };
    let a = load_samples(samples_path, &scene)?;
    let b = match exact {
        Some(m) if reference.is_none() && scene.reference_path(scene_path).is_none() => m,
        _ => load_samples(&reference_path, &scene)?,
    };
    if scene.system.is_molecule() {
        return molecule_eval(&scene, &a, &b, n, seed, json, bins);
    }
    let m = n.min(a.rows).min(b.rows);
    if m < n {
        eprintln!(
            "note: comparing {m} samples from each set (asked for {n}; the smaller file has {m})"
        );
    }
    let a = a.select(&sample(&mut ChaCha8Rng::seed_from_u64(seed), a.rows, m).into_vec());
    let energy = scene.energy();
    let evaluator = Evaluator::new(&b, energy.layout(), m, seed.wrapping_add(1))
        .with_context(|| format!("{}", reference_path.display()))?;
    let spinner = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    spinner.set_message(format!(
        "computing metrics on {m} vs {m} samples (eq-W2 aligns {} pairs)",
        m * m
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let start = Instant::now();
    let what = if skip_eq {
        metrics::Which::SkipEq
    } else {
        metrics::Which::All
    };
    // Every sample is judged, a non-finite energy included (it makes E-W2 infinite: the truth).
    let r = metrics::evaluate(energy.as_ref(), &a, evaluator.reference(), what)?;
    spinner.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} samples vs {} reference samples of {}, {} metrics ({:.1} s)",
            m,
            m,
            scene.name,
            r.family.name(),
            start.elapsed().as_secs_f64()
        );
        print_metrics(&r, &[]);
    }
    Ok(())
}

/// Torsion-space metrics (molecules.md §4): histograms on every sample of both sets; E-W2 (in kT)
/// and torus-W2 on `n` of each, drawn without replacement.
fn molecule_eval(
    scene: &Scene,
    a: &Matrix,
    b: &Matrix,
    n: usize,
    seed: u64,
    json: bool,
    bins: usize,
) -> anyhow::Result<()> {
    use boltzmann_studio::metrics::torsions as tm;
    let energy = scene.energy();
    let mol = energy
        .molecule()
        .context("a torsion system is a molecule")?;
    let m = n.min(a.rows).min(b.rows).min(tm::W2_ROWS);
    // Shuffled, so that torus-W2 and E-W2 take random subsets of m rows.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let a = a.select(&sample(&mut rng, a.rows, a.rows).into_vec());
    let b = b.select(&sample(&mut rng, b.rows, b.rows).into_vec());
    // The torsion families' metrics, as the driver computes them (with this many bins).
    let (r, t) = metrics::evaluate_torsions(energy.as_ref(), &a, &b, bins, n)?;
    if json {
        let mut v = serde_json::to_value(r)?;
        let o = v.as_object_mut().context("a metric set is a JSON object")?;
        o.insert("bins".into(), bins.into());
        o.insert(
            "populations".into(),
            serde_json::json!(
                t.populations
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeMap<_, _>>()
            ),
        );
        o.insert(
            "reference_populations".into(),
            serde_json::json!(
                t.reference_populations
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeMap<_, _>>()
            ),
        );
        o.insert("samples".into(), a.rows.into());
        o.insert("reference_samples".into(), b.rows.into());
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} samples vs {} reference samples of {} at {} K",
        a.rows,
        b.rows,
        scene.name,
        mol.temperature()
    );
    print_metrics(
        &r,
        &[
            ("energy_w2", format!("kT, {m} vs {m}")),
            ("torus_w2", format!("rad, {m} vs {m}")),
            ("rama_kl", format!("{bins}×{bins} bins, all rows")),
            ("rama_tv", format!("{bins}×{bins} bins, all rows")),
            ("torsion_tv", format!("{bins} bins, all rows")),
        ],
    );
    for ((label, p), (_, r)) in t.populations.iter().zip(&t.reference_populations) {
        println!("{label:<13} samples {p:.4}   reference {r:.4}");
    }
    Ok(())
}
