//! The run driver: the loop of a run — units of work, iteration bookkeeping, evaluation
//! cadence, divergence and metrics — written once for every sampler kind and used by the CLI
//! (`train`, `compare`) and by the app's worker. A kind implements a unit of work; this owns
//! everything around it (as argmin's Executor does for its solvers).

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::energy::{Energy, Layout};
use crate::error::{Error, Result};
use crate::io::Matrix;
use crate::metrics::{self, MetricSet, Which};
use crate::sampler::{Advance, Batch, Counters, SampleOptions, Sampler, Samples};

/// Consecutive skipped (non-finite) gradient steps after which a run counts as diverged, for
/// every kind.
pub const DIVERGED_AFTER: u64 = 50;

/// How long a run goes on: one type for `train` (`--minutes`: wall time, `--steps`), `compare`
/// (`--minutes`: training time, `--evals`), the app's worker (play: open) and its scripted
/// screenshot (`--after-steps`, `--after-evals`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Seconds of wall-clock time since the loop started (evaluations and checkpoints included).
    WallSeconds(f64),
    /// Seconds spent inside the sampler's training calls, in all (a resumed run's included): the
    /// fair clock of a race, which evaluations do not advance.
    TrainingSeconds(f64),
    /// Gradient steps in all (a resumed run's included).
    GradientSteps(u64),
    /// Energy evaluations charged to the run, in all.
    EnergyEvals(u64),
    /// No limit: until `stop` says so (the app's play button).
    Open,
}

impl Budget {
    /// Whether a run with counters `c`, `wall` after the loop started, has used the budget up.
    pub fn reached(&self, c: &Counters, wall: std::time::Duration) -> bool {
        match *self {
            Budget::WallSeconds(s) => wall.as_secs_f64() >= s,
            Budget::TrainingSeconds(s) => c.wall_seconds >= s,
            Budget::GradientSteps(n) => c.gradient_steps >= n,
            Budget::EnergyEvals(n) => c.energy_evals >= n,
            Budget::Open => false,
        }
    }

    /// For a progress bar: (done, total, unit), counted from the counters `start` the loop began
    /// with (a resumed run's bar starts empty).
    pub fn progress(
        &self,
        c: &Counters,
        start: &Counters,
        wall: std::time::Duration,
    ) -> (u64, u64, &'static str) {
        let (done, total, unit) = match *self {
            Budget::WallSeconds(s) => (wall.as_secs_f64(), s, "s"),
            Budget::TrainingSeconds(s) => (
                c.wall_seconds - start.wall_seconds,
                s - start.wall_seconds,
                "s",
            ),
            Budget::GradientSteps(n) => (
                c.gradient_steps as f64 - start.gradient_steps as f64,
                n as f64 - start.gradient_steps as f64,
                "steps",
            ),
            Budget::EnergyEvals(n) => (
                c.energy_evals as f64 - start.energy_evals as f64,
                n as f64 - start.energy_evals as f64,
                "evals",
            ),
            Budget::Open => (0.0, 0.0, ""),
        };
        let total = total.max(0.0);
        (done.clamp(0.0, total) as u64, total.ceil() as u64, unit)
    }
}

/// Why [`Run::drive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The budget is used up.
    Reached,
    /// `stop` said so (Ctrl-C, a closing window).
    Stopped,
    /// [`DIVERGED_AFTER`] gradient steps in a row were non-finite: the weights are the last good
    /// ones, and going on would make no progress. The caller saves or reports; the loop stops.
    Diverged,
}

/// A full evaluation: `n` fresh samples against the reference subset.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: MetricSet,
    /// Normalised effective sample size of the importance weights (0–1), where defined.
    pub ess: Option<f64>,
    /// The samples that were judged.
    pub samples: Samples,
    /// The run's counters when it was taken.
    pub counters: Counters,
    /// The largest energy-evaluation budget point the run had passed, for evaluations at budget
    /// points ([`EvalPolicy::AtEnergyEvals`]).
    pub budget: Option<u64>,
    /// What 1000 further samples would cost once training stops (race lanes only; measured once
    /// per lane, see [`Further`]).
    pub further: Option<Further>,
}

/// The amortised cost of 1000 further samples from a sampler as it is (samplers.md §1): the
/// energy evaluations a draw needs (none for a learned kind; MCMC's chains must keep moving) and
/// its seconds. A race measures it once per lane, at its first judgement, from a draw of
/// [`FURTHER_PROBE`] samples scaled to 1000: it depends on the kind and the system, not on how
/// far training has gone.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Further {
    pub energy_evals: f64,
    pub seconds: f64,
}

/// Samples drawn to time a lane's further samples, scaled to 1000: a learned LJ-13 draw of
/// 1000 takes over a minute on a laptop core, and the probe holds the race up while it runs.
pub const FURTHER_PROBE: usize = 64;

/// Metrics of one batch (or evaluation) against as many reference samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    pub step: u64,
    pub wall_seconds: f64,
    /// Energy evaluations charged to the run so far.
    pub energy_evals: u64,
    /// The batch's metrics, named by the system's family.
    pub metrics: MetricSet,
    /// Normalised ESS of the batch's importance weights (NaN where the kind defines none).
    pub ess: f64,
    /// log Z estimated from the batch's weights (logmeanexp, see [`crate::logz`]); NaN for
    /// kinds whose weights are not exact.
    pub log_z: f64,
    /// Samples compared.
    pub n: usize,
}

/// Compares samples with a fixed random subset of the reference, so that successive
/// evaluations of one run, and runs of different kinds, are judged on the same rows.
pub struct Evaluator {
    reference: Matrix,
    layout: Layout,
}

impl Evaluator {
    /// Takes `n` reference rows (fewer if the file has fewer), chosen once by `seed`: reference
    /// files from MCMC chains are ordered in time.
    pub fn new(reference: &Matrix, layout: Layout, n: usize, seed: u64) -> Result<Self> {
        if reference.rows == 0 {
            return Err(Error::Invalid("the reference set is empty".into()));
        }
        if reference.cols != layout.dim() {
            return Err(Error::Invalid(format!(
                "reference rows have {} coordinates, the system has {}",
                reference.cols,
                layout.dim()
            )));
        }
        let n = n.min(reference.rows);
        let idx = sample(&mut ChaCha8Rng::seed_from_u64(seed), reference.rows, n).into_vec();
        Ok(Self {
            reference: reference.select(&idx),
            layout,
        })
    }

    /// Reference rows used.
    pub fn len(&self) -> usize {
        self.reference.rows
    }

    pub fn is_empty(&self) -> bool {
        self.reference.rows == 0
    }

    pub fn reference(&self) -> &Matrix {
        &self.reference
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Metrics of the finite rows of `x` (with their `energies`) against as many reference rows.
    pub fn judge(
        &self,
        energy: &dyn Energy,
        x: &[f32],
        energies: &[f64],
        which: Which,
    ) -> Result<(MetricSet, usize)> {
        let dim = self.layout.dim();
        let finite: Vec<usize> = (0..energies.len())
            .filter(|&i| energies[i].is_finite())
            .collect();
        let n = finite.len().min(self.reference.rows);
        if n == 0 {
            return Err(Error::Invalid(
                "no sample with a finite energy to judge".into(),
            ));
        }
        let mut rows = Vec::with_capacity(n * dim);
        for &i in &finite[..n] {
            rows.extend_from_slice(&x[i * dim..(i + 1) * dim]);
        }
        Ok((
            metrics::evaluate(
                energy,
                &Matrix::new(n, dim, rows),
                &self.reference.head(n),
                which,
            )?,
            n,
        ))
    }

    /// eq-W2 when asked, and only for small systems: its n² alignments of n-particle clusters
    /// cost O(particles³) each.
    pub fn which(&self, with_eq: bool) -> Which {
        if with_eq && self.layout.particles > 1 && self.layout.particles <= 20 {
            Which::All
        } else {
            Which::SkipEq
        }
    }

    /// Draws as many samples as the reference subset has (from a generator seeded by `seed`
    /// when given) and judges them (eq-W2 as asked).
    pub fn evaluate(
        &self,
        sampler: &mut dyn Sampler,
        with_eq: bool,
        seed: Option<u64>,
    ) -> Result<Evaluation> {
        let s = sampler.sample(
            self.reference.rows,
            SampleOptions {
                trajectory: true,
                weights: true,
                seed,
                ..SampleOptions::default()
            },
        )?;
        let (metrics, _) = self.judge(sampler.energy(), &s.x, &s.energies, self.which(with_eq))?;
        let ess = s.ess();
        Ok(Evaluation {
            metrics,
            ess,
            samples: s,
            counters: sampler.counters().clone(),
            budget: None,
            further: None,
        })
    }
}

/// When a run takes full evaluations (fresh samples; their cost is not charged to the budget).
#[derive(Debug, Clone, PartialEq)]
pub enum EvalPolicy {
    Never,
    /// Every k completed outer iterations.
    EveryIterations(u64),
    /// Each time the energy evaluations pass the next of these budgets (ascending).
    AtEnergyEvals(Vec<u64>),
}

/// What one tick of the driver did.
#[derive(Debug, Default)]
pub struct Tick {
    pub advance: Advance,
    /// Metrics of a batch that the unit completed (when live metrics are on).
    pub batch_point: Option<MetricPoint>,
    /// The full evaluations that fell due: one at an iteration's cadence, or one per budget
    /// point the unit passed.
    pub evaluations: Vec<Evaluation>,
    /// Set on reaching [`DIVERGED_AFTER`], 2×, 3×… non-finite steps in a row: the weights are
    /// unchanged, but the run is making no progress.
    pub diverged: bool,
}

/// One run of one sampler, driven unit by unit.
pub struct Run {
    pub sampler: Box<dyn Sampler>,
    evaluator: Option<Evaluator>,
    /// Judges the full evaluations instead of `evaluator` (a race lane's shared judge; batch
    /// metrics keep `evaluator`).
    judge: Option<Evaluator>,
    policy: EvalPolicy,
    /// Judge each completed batch against as many reference rows (the app's live metrics).
    live_metrics: bool,
    /// eq-W2 of batches every this many iterations (its alignments are costly).
    eq_every: u64,
    next_budget: usize,
    skipped_in_a_row: u64,
    /// A race lane's cost of further samples, measured at its first judgement.
    further: Option<Further>,
}

impl Run {
    pub fn new(
        sampler: Box<dyn Sampler>,
        evaluator: Option<Evaluator>,
        policy: EvalPolicy,
        live_metrics: bool,
        eq_every: u64,
    ) -> Self {
        let mut run = Self {
            sampler,
            evaluator,
            judge: None,
            policy,
            live_metrics,
            eq_every: eq_every.max(1),
            next_budget: 0,
            skipped_in_a_row: 0,
            further: None,
        };
        run.skip_passed_budgets();
        run
    }

    pub fn evaluator(&self) -> Option<&Evaluator> {
        self.evaluator.as_ref()
    }

    /// Judges from now on against `evaluator` (a reference computed while the run trains).
    pub fn set_evaluator(&mut self, evaluator: Option<Evaluator>) {
        self.evaluator = evaluator;
    }

    /// This run, with full evaluations by `judge` under `policy` (see [`crate::race::make_lane`]).
    pub fn judged_by(mut self, judge: Evaluator, policy: EvalPolicy) -> Self {
        self.judge = Some(judge);
        self.policy = policy;
        self.next_budget = 0;
        self.skip_passed_budgets();
        self
    }

    pub fn counters(&self) -> &Counters {
        self.sampler.counters()
    }

    /// Gradient steps skipped as non-finite since the last applied one.
    pub fn skipped_in_a_row(&self) -> u64 {
        self.skipped_in_a_row
    }

    /// Budgets already behind a resumed run are not evaluated again.
    fn skip_passed_budgets(&mut self) {
        if let EvalPolicy::AtEnergyEvals(points) = &self.policy {
            let evals = self.sampler.counters().energy_evals;
            while self.next_budget < points.len() && points[self.next_budget] <= evals {
                self.next_budget += 1;
            }
        }
    }

    /// One unit of work, then whatever metrics fell due.
    pub fn tick(&mut self) -> Result<Tick> {
        let advance = self.sampler.advance()?;
        let mut tick = Tick::default();
        if !advance.losses.is_empty() {
            self.skipped_in_a_row = 0;
        }
        self.skipped_in_a_row += advance.skipped;
        tick.diverged = advance.skipped > 0
            && self.skipped_in_a_row >= DIVERGED_AFTER
            && self.skipped_in_a_row % DIVERGED_AFTER < advance.skipped;
        if let (Some(batch), true) = (&advance.batch, self.live_metrics) {
            tick.batch_point = self.judge_batch(batch)?;
        }
        let iterations = self.sampler.counters().outer_iterations;
        let due = match &self.policy {
            EvalPolicy::Never => false,
            EvalPolicy::EveryIterations(k) => {
                advance.iteration_done && iterations % (*k).max(1) == 0
            }
            EvalPolicy::AtEnergyEvals(points) => {
                self.next_budget < points.len()
                    && self.sampler.counters().energy_evals >= points[self.next_budget]
            }
        };
        if due {
            if let EvalPolicy::AtEnergyEvals(_) = self.policy {
                // Every budget point the unit passed is judged (a unit can pass several: an MCMC
                // block of sweeps, an early simulation slice), so that the points a lane is
                // judged at do not depend on how its timing-sized units fell. The state is the
                // same at all of them; each draws with its own seed.
                let evals = self.sampler.counters().energy_evals;
                while let EvalPolicy::AtEnergyEvals(points) = &self.policy {
                    let Some(b) = points
                        .get(self.next_budget)
                        .copied()
                        .filter(|&b| b <= evals)
                    else {
                        break;
                    };
                    self.next_budget += 1;
                    if let Some(mut e) = self.evaluate()? {
                        e.budget = Some(b);
                        e.further = Some(self.further()?);
                        tick.evaluations.push(e);
                    }
                }
            } else {
                tick.evaluations.extend(self.evaluate()?);
            }
        }
        tick.advance = advance;
        Ok(tick)
    }

    /// Ticks until `budget` is used up, `stop()` holds or the run diverges, handing every tick to
    /// `observe` (progress bars, metrics logs, checkpoints after evaluations, snapshots): the one
    /// loop of `train`, and [`drive_lanes`] over one lane.
    pub fn drive(
        &mut self,
        budget: Budget,
        stop: &dyn Fn() -> bool,
        observe: &mut dyn FnMut(&mut Run, Tick) -> Result<()>,
    ) -> Result<Outcome> {
        drive_lanes(
            std::slice::from_mut(self),
            budget,
            stop,
            &mut |_, run, tick| observe(run, tick),
        )
        .map(|(o, _)| o)
    }

    /// A full evaluation now (eq-W2 left out: its alignments of thousands of pairs take
    /// minutes; `eval` computes it).
    pub fn evaluate(&mut self) -> Result<Option<Evaluation>> {
        // A race lane's judgement at budget point k draws with seed k, so that what else the
        // lane draws (the app's previews) leaves it unchanged: the app and `compare` see the
        // same samples.
        let seed = self.judge.as_ref().map(|_| self.next_budget as u64);
        match self.judge.as_ref().or(self.evaluator.as_ref()) {
            Some(ev) => Ok(Some(ev.evaluate(self.sampler.as_mut(), false, seed)?)),
            None => Ok(None),
        }
    }

    /// What 1000 further samples cost (measured on the first call, then kept).
    pub fn further(&mut self) -> Result<Further> {
        if self.further.is_none() {
            let (evals, seconds) = self.sampler.draw_cost(FURTHER_PROBE)?;
            let scale = 1000.0 / FURTHER_PROBE as f64;
            self.further = Some(Further {
                energy_evals: evals * scale,
                seconds: seconds * scale,
            });
        }
        Ok(self.further.expect("just measured"))
    }

    fn judge_batch(&self, batch: &Batch) -> Result<Option<MetricPoint>> {
        let Some(ev) = &self.evaluator else {
            return Ok(None);
        };
        if !batch.energies.iter().any(|e| e.is_finite()) {
            return Ok(None);
        }
        let c = self.sampler.counters();
        // eq-W2 follows the scene's cadence (counted in completed iterations, so a loaded
        // checkpoint keeps it).
        let with_eq = c.outer_iterations % self.eq_every == 0;
        let (m, n) = ev.judge(
            self.sampler.energy(),
            &batch.x,
            &batch.energies,
            ev.which(with_eq),
        )?;
        Ok(Some(MetricPoint {
            step: c.gradient_steps,
            wall_seconds: c.wall_seconds,
            energy_evals: c.energy_evals,
            metrics: m,
            ess: batch.ess().unwrap_or(f64::NAN),
            log_z: match (&batch.log_weights, self.sampler.log_weight_offset()) {
                (Some(w), Some(offset)) => crate::metrics::log_mean_exp(w).0 + offset,
                _ => f64::NAN,
            },
            n,
        }))
    }
}

/// The columns of a run's metrics log — `train`'s metrics.csv and the app's metrics export —
/// with the metrics of the system's family. (compare.csv's rows are lanes' budget points:
/// [`crate::race::columns`], with the same metric columns.)
pub fn log_columns(family: metrics::Family) -> Vec<&'static str> {
    let mut c = vec!["step", "iteration", "wall_seconds", "loss", "energy_evals"];
    c.extend(family.keys());
    c.extend(["ess", "samples_compared"]);
    c
}

/// The lane that works next: the one with the fewest energy evaluations (the first on a tie)
/// among those still `running`, so that every lane of a race has spent about the same budget at
/// any moment.
pub fn next_lane<'a>(lanes: impl IntoIterator<Item = (&'a Counters, bool)>) -> Option<usize> {
    lanes
        .into_iter()
        .enumerate()
        .filter(|(_, (_, running))| *running)
        .min_by_key(|(i, (c, _))| (c.energy_evals, *i))
        .map(|(i, _)| i)
}

/// The one loop: ticks the lane whose turn it is ([`next_lane`]) until every lane has used up
/// `budget`, `stop()` holds or a lane diverges, handing every tick to `observe` with its lane.
/// Returns why it ended and, for a divergence, which lane. One lane is a plain run (`train`);
/// several are a race (`compare`, the app's race and fork). A lane is anything that holds a
/// [`Run`] (the app's worker keeps what it shows beside each). The budget's wall clock is shared
/// by all lanes; an error of a race's lane names its kind.
pub fn drive_lanes<L: std::borrow::BorrowMut<Run>>(
    runs: &mut [L],
    budget: Budget,
    stop: &dyn Fn() -> bool,
    observe: &mut dyn FnMut(usize, &mut L, Tick) -> Result<()>,
) -> Result<(Outcome, Option<usize>)> {
    let started = std::time::Instant::now();
    let race = runs.len() > 1;
    loop {
        let wall = started.elapsed();
        let Some(lane) = next_lane(runs.iter().map(|r| {
            (
                r.borrow().counters(),
                !budget.reached(r.borrow().counters(), wall),
            )
        })) else {
            return Ok((Outcome::Reached, None));
        };
        if stop() {
            return Ok((Outcome::Stopped, None));
        }
        let run = runs[lane].borrow_mut();
        let tick = run.tick().map_err(|e| {
            if race {
                Error::Invalid(format!("{}: {e}", run.sampler.kind().label()))
            } else {
                e
            }
        })?;
        let diverged = tick.diverged;
        observe(lane, &mut runs[lane], tick)?;
        if diverged {
            return Ok((Outcome::Diverged, Some(lane)));
        }
    }
}

/// Log-spaced budgets from 10^lo to 10^hi, `per_decade` to a decade (rounded, distinct).
pub fn log_budgets(lo: f64, hi: f64, per_decade: usize) -> Vec<u64> {
    let per = per_decade.max(1) as f64;
    let mut out: Vec<u64> = Vec::new();
    let mut k = (lo * per).ceil() as i64;
    while (k as f64) / per <= hi + 1e-9 {
        let v = 10f64.powf(k as f64 / per).round() as u64;
        if out.last() != Some(&v) {
            out.push(v);
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::DoubleWell2d;
    use crate::sampler::{SamplerConfig, SamplerKind};

    /// A sampler that only counts: each unit is one gradient step of 10 energy evaluations and
    /// 0.25 s of training time (exact in binary, so sums compare exactly); 5 steps an
    /// iteration. A diverging one skips every step.
    struct Counting {
        counters: Counters,
        config: SamplerConfig,
        energy: DoubleWell2d,
        diverge: bool,
    }

    impl Counting {
        fn boxed(diverge: bool) -> Box<dyn Sampler> {
            Box::new(Counting {
                counters: Counters::default(),
                config: SamplerConfig::default(),
                energy: DoubleWell2d::default(),
                diverge,
            })
        }
    }

    impl Sampler for Counting {
        fn kind(&self) -> SamplerKind {
            SamplerKind::default()
        }
        fn energy(&self) -> &dyn Energy {
            &self.energy
        }
        fn advance(&mut self) -> Result<Advance> {
            let c = &mut self.counters;
            c.energy_evals += 10;
            c.wall_seconds += 0.25;
            let mut a = Advance::default();
            if self.diverge {
                c.skipped_steps += 1;
                a.skipped = 1;
            } else {
                c.gradient_steps += 1;
                a.losses.push(1.0);
                if c.gradient_steps % 5 == 0 {
                    c.outer_iterations += 1;
                    a.iteration_done = true;
                }
            }
            Ok(a)
        }
        fn sample(&mut self, n: usize, _: SampleOptions) -> Result<Samples> {
            let x = vec![0.5f32; 2 * n];
            let energies = self.energy.batch_energy(&x);
            Ok(Samples {
                x,
                energies,
                trajectory: None,
                log_weights: None,
            })
        }
        fn config(&self) -> &SamplerConfig {
            &self.config
        }
        fn set_hyper(&mut self, _: &str, _: f64) -> Result<()> {
            Ok(())
        }
        fn counters(&self) -> &Counters {
            &self.counters
        }
        fn save(&self, _: &std::path::Path) -> Result<()> {
            Ok(())
        }
        fn load(&mut self, _: &std::path::Path) -> Result<()> {
            Ok(())
        }
    }

    fn evaluator() -> Evaluator {
        Evaluator::new(
            &Matrix::new(4, 2, vec![0.0; 8]),
            DoubleWell2d::default().layout(),
            4,
            0,
        )
        .unwrap()
    }

    fn drive(
        budget: Budget,
        policy: EvalPolicy,
        diverge: bool,
    ) -> (Outcome, Counters, Vec<Counters>) {
        let mut run = Run::new(
            Counting::boxed(diverge),
            Some(evaluator()),
            policy,
            false,
            1,
        );
        let mut evaluations = Vec::new();
        let outcome = run
            .drive(budget, &|| false, &mut |_, tick| {
                evaluations.extend(tick.evaluations.into_iter().map(|e| e.counters));
                Ok(())
            })
            .unwrap();
        (outcome, run.counters().clone(), evaluations)
    }

    #[test]
    fn each_budget_stops_at_the_first_unit_that_reaches_it() {
        let (o, c, _) = drive(Budget::GradientSteps(12), EvalPolicy::Never, false);
        assert_eq!((o, c.gradient_steps), (Outcome::Reached, 12));
        // 10 evaluations a unit: 95 is passed at 100.
        let (o, c, _) = drive(Budget::EnergyEvals(95), EvalPolicy::Never, false);
        assert_eq!((o, c.energy_evals), (Outcome::Reached, 100));
        let (o, c, _) = drive(Budget::TrainingSeconds(1.0), EvalPolicy::Never, false);
        assert_eq!((o, c.gradient_steps), (Outcome::Reached, 4));
        let (o, c, _) = drive(Budget::WallSeconds(0.0), EvalPolicy::Never, false);
        assert_eq!((o, c.gradient_steps), (Outcome::Reached, 0));
        // A stop request ends the loop before the next unit.
        let mut run = Run::new(Counting::boxed(false), None, EvalPolicy::Never, false, 1);
        let o = run
            .drive(Budget::GradientSteps(100), &|| true, &mut |_, _| Ok(()))
            .unwrap();
        assert_eq!((o, run.counters().gradient_steps), (Outcome::Stopped, 0));
    }

    #[test]
    fn lanes_take_turns_by_energy_evaluations_until_each_reaches_the_budget() {
        // Lane 1 starts 30 evaluations ahead (a resumed run): lane 0 works alone until it catches
        // up, then they alternate, the first on a tie.
        let ahead = Box::new(Counting {
            counters: Counters {
                energy_evals: 30,
                ..Counters::default()
            },
            config: SamplerConfig::default(),
            energy: DoubleWell2d::default(),
            diverge: false,
        });
        let mut runs = vec![
            Run::new(Counting::boxed(false), None, EvalPolicy::Never, false, 1),
            Run::new(ahead, None, EvalPolicy::Never, false, 1),
        ];
        let mut turns = Vec::new();
        let (o, lane) = drive_lanes(
            &mut runs,
            Budget::EnergyEvals(60),
            &|| false,
            &mut |l, _, _| {
                turns.push(l);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!((o, lane), (Outcome::Reached, None));
        assert_eq!(turns, [0, 0, 0, 0, 1, 0, 1, 0, 1]);
        assert_eq!(
            runs.iter()
                .map(|r| r.counters().energy_evals)
                .collect::<Vec<_>>(),
            [60, 60]
        );
        // A diverging lane ends the race and is named.
        let mut runs = vec![
            Run::new(Counting::boxed(false), None, EvalPolicy::Never, false, 1),
            Run::new(Counting::boxed(true), None, EvalPolicy::Never, false, 1),
        ];
        let (o, lane) = drive_lanes(
            &mut runs,
            Budget::EnergyEvals(1_000_000),
            &|| false,
            &mut |_, _, _| Ok(()),
        )
        .unwrap();
        assert_eq!((o, lane), (Outcome::Diverged, Some(1)));
    }

    #[test]
    fn a_run_of_non_finite_steps_is_diverged_after_the_limit() {
        let (o, c, _) = drive(Budget::GradientSteps(1), EvalPolicy::Never, true);
        assert_eq!(
            (o, c.skipped_steps, c.gradient_steps),
            (Outcome::Diverged, DIVERGED_AFTER, 0)
        );
    }

    #[test]
    fn evaluations_fall_at_their_points() {
        // Budgets 25 and 50 energy evaluations: the first units at or past them (30, 50); 1000 is
        // never reached.
        let (_, _, e) = drive(
            Budget::GradientSteps(10),
            EvalPolicy::AtEnergyEvals(vec![25, 50, 1000]),
            false,
        );
        assert_eq!(
            e.iter().map(|c| c.energy_evals).collect::<Vec<_>>(),
            [30, 50]
        );
        // A unit that passes two points (31 and 35, both within the unit ending at 40) is judged
        // at each of them.
        let (_, _, e) = drive(
            Budget::GradientSteps(10),
            EvalPolicy::AtEnergyEvals(vec![31, 35, 60]),
            false,
        );
        assert_eq!(
            e.iter().map(|c| c.energy_evals).collect::<Vec<_>>(),
            [40, 40, 60]
        );
        // Every second iteration of 5 steps: steps 10 and 20.
        let (_, _, e) = drive(
            Budget::GradientSteps(20),
            EvalPolicy::EveryIterations(2),
            false,
        );
        assert_eq!(
            e.iter().map(|c| c.gradient_steps).collect::<Vec<_>>(),
            [10, 20]
        );
    }

    #[test]
    fn progress_counts_from_where_the_loop_began() {
        let start = Counters {
            gradient_steps: 100,
            energy_evals: 1000,
            ..Counters::default()
        };
        let now = Counters {
            gradient_steps: 150,
            energy_evals: 1500,
            ..Counters::default()
        };
        assert_eq!(
            Budget::GradientSteps(200).progress(&now, &start, std::time::Duration::ZERO),
            (50, 100, "steps")
        );
        assert_eq!(
            Budget::EnergyEvals(1200).progress(&now, &start, std::time::Duration::ZERO),
            (200, 200, "evals")
        );
        assert_eq!(
            Budget::WallSeconds(60.0).progress(&now, &start, std::time::Duration::from_secs(90)),
            (60, 60, "s")
        );
    }

    #[test]
    fn budgets_are_log_spaced_and_distinct() {
        let b = log_budgets(2.0, 4.0, 2);
        assert_eq!(b, vec![100, 316, 1000, 3162, 10000]);
        let dense = log_budgets(0.0, 1.0, 10);
        assert_eq!(dense.first(), Some(&1));
        assert_eq!(dense.last(), Some(&10));
        assert!(dense.windows(2).all(|w| w[0] < w[1]));
    }
}
