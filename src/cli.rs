//! The command line: every subcommand, flag and value check, as clap parses them. The commands
//! themselves live in the binary; this layer is in the library so that tests and the fuzzer can
//! parse argument lists without running anything.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const BIN: &str = "boltzmann-studio";

/// Watch a diffusion sampler learn a Boltzmann distribution from its energy alone.
#[derive(Parser)]
#[command(name = BIN, version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Energies of given samples: prints count, mean, std, min (or writes them with --out).
    Energy {
        /// Scene file naming the system (e.g. scenes/lj13.ron).
        scene: PathBuf,
        /// Samples as a .npy of shape (n, dim), float32 or float64.
        #[arg(long)]
        input: PathBuf,
        /// Write the n energies as a float64 .npy vector instead of printing statistics.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the gradients ∇E (of the energy the sampler sees: E/kT for molecules and
        /// formulas with a temperature) as a float64 .npy of shape (n, dim).
        #[arg(long)]
        grad: Option<PathBuf>,
    },
    /// Reference samples by HMC with parallel tempering (exact draws for GMM-40, and by grid
    /// quadrature for plane landscapes, formulas of one or two variables and molecules with one
    /// or two free torsions).
    Reference {
        /// Scene file naming the system; its `reference.mcmc` section sets the sampler.
        scene: PathBuf,
        /// Number of samples to draw.
        #[arg(long, allow_negative_numbers = true, value_parser = positive_count)]
        n: usize,
        /// Output .npy (float32, shape (n, dim): centre of mass removed; torsions in radians).
        /// Without it, a scene that names no reference file gets its cache beside the scene
        /// (SCENE_STEM.reference-HASH.npy), which `train`, `eval` and the app then use.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed of all random draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Use parallel tempering even where an exact reference exists (to validate one against
        /// the other).
        #[arg(long)]
        mcmc: bool,
    },
    /// Open the desktop app on a scene (the default command; LJ-13 without a scene).
    #[cfg(feature = "app")]
    App(AppArgs),
    /// Open a lesson (lessons/*.ron) in the app, or render each of its steps to PNGs.
    #[cfg(feature = "app")]
    Lesson(LessonArgs),
    /// Train the scene's sampler kind, with checkpoints and a metrics log.
    Train(TrainArgs),
    /// Draw samples from a trained run (.npy or extended .xyz).
    Sample(SampleArgs),
    /// log Z of a trained run from fresh paths: the ELBO (mean ℓ), the importance-weighted
    /// estimate (logmeanexp ℓ) with its standard error, and the exact value where the system has
    /// an exact grid. Z = ∫ exp(−E/kT) over the sampler's coordinates (dx dy, dφ in radians).
    Logz(LogzArgs),
    /// Race sampler kinds on one scene to the same budget: compare.csv, summary.json, compare.png.
    Compare(CompareArgs),
    /// What a scene will run: its system, sampler kind, hyperparameters (value, range, live or
    /// needing a reset) and the metrics it reports.
    Info {
        /// Scene file (or a run folder's scene.ron).
        scene: PathBuf,
    },
    /// Sample-quality metrics of samples against reference samples.
    Eval {
        /// Scene file naming the system (and the default reference file).
        scene: PathBuf,
        /// Samples to judge, .npy of shape (n, dim).
        #[arg(long)]
        samples: PathBuf,
        /// Reference samples, .npy of shape (m, dim); defaults to the scene's reference file.
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Samples drawn (without replacement, seeded) from each set for the comparison.
        #[arg(long, default_value_t = 2000, allow_negative_numbers = true, value_parser = positive_count)]
        n: usize,
        /// Seed of the subsampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object of the system family's metrics by key (particles: energy_w2, x_w2,
        /// eq_w2, dist_tv; plane: energy_w2, x_w2; molecules: energy_w2, torus_w2, rama_tv, rama_kl
        /// or torsion_tv, with basin populations) instead of a table.
        #[arg(long)]
        json: bool,
        /// Skip eq-W2, whose n² alignments dominate the time for large clusters (LJ-55).
        #[arg(long)]
        skip_eq: bool,
        /// Molecules: bins per torsion of the Ramachandran / torsion histograms.
        #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = positive_count)]
        bins: usize,
    },
}

#[cfg(feature = "app")]
#[derive(clap::Args)]
pub struct AppArgs {
    /// Scene file to open (default: scenes/lj13.ron).
    pub scene: Option<PathBuf>,
    /// Train, save a PNG of the whole window to this file, then close the window and exit.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Gradient steps to train before the --screenshot is taken (MCMC: blocks of sweeps).
    #[arg(long, default_value_t = 0, requires = "screenshot")]
    pub after_steps: u64,
    /// Print frame times and training throughput when the window closes.
    #[arg(long)]
    pub report: bool,
    /// Redraw every frame instead of only on input and new data (for frame-time measurements).
    #[arg(long)]
    pub continuous: bool,
    /// Seconds to stay paused before the --screenshot is taken.
    #[arg(long, default_value_t = 0.0, requires = "screenshot")]
    pub hold: f64,
    /// Open on a race of sampler kinds (two or more, comma-separated: adjoint,asbs,idem,gfn,mcmc).
    #[arg(long, value_delimiter = ',')]
    pub race: Vec<String>,
    /// Start the race's energy-cost slider here: assumed milliseconds per energy evaluation
    /// (as `compare --energy-ms`).
    #[arg(long, requires = "race", allow_negative_numbers = true)]
    pub energy_ms: Option<f64>,
    /// Compute the scene's reference at launch if it names none (as the button under Sample
    /// quality does): cached beside the scene, judged against once ready.
    #[arg(long)]
    pub compute_reference: bool,
    /// With --screenshot: train until the run (every lane of a race) has spent this many energy
    /// evaluations, instead of --after-steps.
    #[arg(long, requires = "screenshot", conflicts_with = "after_steps", allow_negative_numbers = true, value_parser = positive_count)]
    pub after_evals: Option<usize>,
    /// With --screenshot: show the trajectory view (one sample's path over SDE time) with the
    /// scrubber at this time, 0 to 1, instead of the grid of samples.
    #[arg(long, requires = "screenshot", value_parser = unit_interval)]
    pub trajectory_at: Option<f32>,
    /// Draw the learned control field (plane systems) at this SDE time, 0 to 1.
    #[arg(long, value_parser = unit_interval)]
    pub field_at: Option<f32>,
    /// Colour samples by energy, particle or (importance) weight.
    #[arg(long, value_parser = ["energy", "particle", "weight"])]
    pub color_by: Option<String>,
    /// Start in projector mode (high contrast, twice as large, panels hidden; P toggles).
    #[arg(long)]
    pub projector: bool,
}

#[cfg(feature = "app")]
#[derive(clap::Args)]
pub struct LessonArgs {
    /// The lesson file.
    pub file: PathBuf,
    /// Start at this step (1-based).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = positive_count)]
    pub step: usize,
    /// Start in projector mode (high contrast, twice as large).
    #[arg(long)]
    pub projector: bool,
    /// Render every step to DIR/step-NN.png (training for real where a step waits on the run), then exit.
    #[arg(long, value_name = "DIR")]
    pub screenshot_steps: Option<PathBuf>,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Scene file (e.g. scenes/lj13.ron); with --resume, RUN_DIR/scene.ron is used instead.
    pub scene: PathBuf,
    /// Run folder: scene.ron, checkpoint.safetensors, state.*, metrics.csv go here.
    #[arg(long)]
    pub out: PathBuf,
    /// Train for this many minutes of wall-clock time.
    #[arg(long, conflicts_with = "steps", allow_negative_numbers = true)]
    pub minutes: Option<f64>,
    /// Train until this many gradient (Adam) steps in total.
    #[arg(long, allow_negative_numbers = true, value_parser = positive_u64)]
    pub steps: Option<u64>,
    /// Seed of the run (overrides the scene's sampler.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue the run saved in --out.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Args)]
pub struct SampleArgs {
    /// Run folder written by `train`.
    pub run_dir: PathBuf,
    /// Number of samples.
    #[arg(long, allow_negative_numbers = true, value_parser = positive_count)]
    pub n: usize,
    /// Output file: .npy (float32, n × dim) or .xyz (extended XYZ, one frame per sample).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the log importance weights (float64 vector) here.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Resample the n samples in proportion to their importance weights (systematic
    /// resampling): asymptotically exact draws of the target, with repeated rows; worth it
    /// while the printed ESS is not tiny.
    #[arg(long, conflicts_with = "weights")]
    pub resample: bool,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct LogzArgs {
    /// Run folder written by `train` (a kind with a path measure: adjoint, asbs, gfn).
    pub run_dir: PathBuf,
    /// Number of paths.
    #[arg(long, allow_negative_numbers = true, value_parser = positive_count)]
    pub n: usize,
    /// Seed of the paths' noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object (log_z_elbo, log_z_rw, stderr, n, energy_evals, log_z_exact, …).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Scene file. A kind other than the scene's own uses the sibling scene `STEM-KIND.ron`
    /// when there is one (e.g. scenes/dw4-mcmc.ron), else this scene with `sampler.kind` switched.
    /// Kinds are judged against this scene's reference file.
    pub scene: PathBuf,
    /// Comma-separated sampler kinds: adjoint, asbs, idem, gfn, mcmc.
    #[arg(long, value_delimiter = ',', required = true)]
    pub kinds: Vec<String>,
    /// Minutes of each kind's own training time (evaluations not counted).
    #[arg(long, conflicts_with = "evals", allow_negative_numbers = true)]
    pub minutes: Option<f64>,
    /// Energy evaluations per kind.
    #[arg(long, allow_negative_numbers = true)]
    pub evals: Option<i64>,
    /// Output folder: compare.csv, summary.json, compare.png, KIND.npy.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of every kind's run (default: the seed of SCENE, as in the app's race).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Budget points per decade of energy evaluations at which each kind is judged.
    #[arg(long, default_value_t = 4, value_parser = positive_count)]
    pub per_decade: usize,
    /// Final samples written per kind (and judged against as many reference rows).
    #[arg(long, default_value_t = 2000, value_parser = positive_count)]
    pub samples: usize,
    /// Assumed milliseconds per energy evaluation (an expensive energy: DFT, an ML potential),
    /// added to each kind's cost in compare.csv's cost columns, summary.json and the plot's
    /// right panel. 0 (the default) counts training seconds only.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub energy_ms: f64,
}

#[cfg(feature = "app")]
pub fn unit_interval(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a time between 0 and 1")),
    }
}

pub fn positive_u64(s: &str) -> Result<u64, String> {
    positive_count(s).map(|v| v as u64)
}

pub fn positive_count(s: &str) -> Result<usize, String> {
    let v: i64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number"))?;
    if v < 1 {
        return Err(format!("must be at least 1 (got {v})"));
    }
    usize::try_from(v).map_err(|e| e.to_string())
}
