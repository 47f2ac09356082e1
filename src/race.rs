//! One race of sampler kinds on one scene (samplers.md §5), for `compare` and the app's race view
//! alike: the lanes' scenes and seed, the judge (the same reference rows for every lane), the
//! budget points at which each lane is judged, whose turn it is (the lane with the fewest
//! energy evaluations), the rows of compare.csv and of the race table, and the standings.
//! The two fronts differ only in what they show; the same scene, kinds and seed rank the same.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::read_npy;
use crate::metrics::{Family, MetricSet};
use crate::run::{EvalPolicy, Evaluation, Evaluator, Further, Run, log_budgets};
pub use crate::run::{drive_lanes, next_lane};
use crate::sampler::{Counters, SamplerKind};
use crate::scene::Scene;

/// Budget points per decade of energy evaluations (`compare --per-decade`'s default).
pub const PER_DECADE: usize = 4;

/// The energy-evaluation budgets, 10² to 10¹², at which every lane is judged.
pub fn points(per_decade: usize) -> Vec<u64> {
    log_budgets(2.0, 12.0, per_decade)
}

/// One lane's scene: the kind's own scene for the system (`STEM-KIND.ron` beside `path` when
/// there is one, else the scene with `sampler.kind` switched), with the race's seed (`seed`, or
/// the given scene's) and judged against the given scene's reference.
pub fn lane_scenes(
    scene: &Scene,
    path: &Path,
    kinds: &[SamplerKind],
    seed: Option<u64>,
) -> Result<Vec<(PathBuf, Scene)>> {
    let mut seen = std::collections::HashSet::new();
    if let Some(k) = kinds.iter().find(|k| !seen.insert(**k)) {
        return Err(Error::Invalid(format!("'{}' is named twice", k.name())));
    }
    kinds
        .iter()
        .map(|&k| {
            let (p, mut s) = scene.for_kind(path, k)?;
            s.sampler.seed = seed.unwrap_or(scene.sampler.seed);
            s.reference = scene.with_absolute_reference(path).reference;
            Ok((p, s))
        })
        .collect()
}

/// The judge: `schedule.eval_samples` rows of the scene's reference file, chosen once with seed
/// 0, so that every lane and every budget point is judged on the same rows.
pub fn judge(scene: &Scene, path: &Path) -> Result<Evaluator> {
    let file = scene.reference_path(path).ok_or_else(|| {
        Error::Invalid(format!(
            "{} names no reference file to judge against",
            path.display()
        ))
    })?;
    let reference = read_npy(&file)?;
    Evaluator::new(
        &reference,
        scene.energy().layout(),
        scene.schedule.eval_samples,
        0,
    )
    .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))
}

/// Makes `run` a lane: judged by a copy of `judge` each time its energy evaluations pass the next
/// of `points` (its batch metrics, if any, keep the run's own evaluator).
pub fn make_lane(run: Run, judge: &Evaluator, points: &[u64]) -> Result<Run> {
    let copy = Evaluator::new(judge.reference(), judge.layout(), judge.len(), 0)?;
    Ok(run.judged_by(copy, EvalPolicy::AtEnergyEvals(points.to_vec())))
}

/// The columns of compare.csv, and of the app's race table (which adds the rank): the lane and
/// budget point, the metrics of the system's family (E-W2 first: it ranks) and ESS, what the
/// lane had spent and the judging cost, then the costs under an assumed price per energy
/// evaluation ([`RacePoint::row`]'s `energy_ms`).
pub fn columns(family: Family) -> Vec<&'static str> {
    let mut c = vec!["kind", "point"];
    c.extend(family.keys());
    c.extend([
        "ess",
        "energy_evals",
        "network_passes",
        "wall_seconds",
        "eval_energy_evals",
    ]);
    c.extend(COST_COLUMNS);
    c
}

/// The cost columns (`compare --energy-ms`, the app's energy-cost slider): with an energy
/// evaluation assumed to cost `energy_ms` milliseconds (a DFT or ML potential rather than the
/// analytic energies here), the seconds the energy would have taken, the lane's total cost
/// (its own training seconds plus those), and what 1000 further samples would cost once
/// training stops: the energy evaluations a draw needs and its seconds with them priced in.
pub const COST_COLUMNS: [&str; 4] = [
    "energy_cost_seconds",
    "cost_seconds",
    "further_1000_energy_evals",
    "further_1000_seconds",
];

/// One judged point of a lane: a row of compare.csv and of the race table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RacePoint {
    /// The largest budget point (energy evaluations) the lane had passed when judged; `None`
    /// for the judgement of its final samples (compare.csv's "final").
    pub budget: Option<u64>,
    pub energy_evals: u64,
    pub network_passes: u64,
    /// Training seconds (the race's fair clock; evaluations not counted).
    pub wall_seconds: f64,
    pub metrics: MetricSet,
    pub ess: Option<f64>,
    pub eval_energy_evals: u64,
    /// What 1000 further samples cost (unpriced), where measured.
    pub further: Option<Further>,
}

impl RacePoint {
    pub fn new(
        budget: Option<u64>,
        c: &Counters,
        m: &MetricSet,
        ess: Option<f64>,
        further: Option<Further>,
    ) -> Self {
        Self {
            budget,
            energy_evals: c.energy_evals,
            network_passes: c.network_forward + c.network_backward,
            wall_seconds: c.wall_seconds,
            metrics: *m,
            ess,
            eval_energy_evals: c.eval_energy_evals,
            further,
        }
    }

    /// The point of an evaluation at a budget point.
    pub fn of(e: &Evaluation) -> Self {
        Self::new(e.budget, &e.counters, &e.metrics, e.ess, e.further)
    }

    /// Seconds the energy evaluations would have cost at `energy_ms` milliseconds each.
    pub fn energy_cost_seconds(&self, energy_ms: f64) -> f64 {
        self.energy_evals as f64 * energy_ms / 1000.0
    }

    /// The lane's cost so far: its training seconds plus its priced energy evaluations.
    pub fn cost_seconds(&self, energy_ms: f64) -> f64 {
        self.wall_seconds + self.energy_cost_seconds(energy_ms)
    }

    /// Seconds 1000 further samples would cost, their energy evaluations priced in.
    pub fn further_1000_seconds(&self, energy_ms: f64) -> Option<f64> {
        self.further
            .map(|f| f.seconds + f.energy_evals * energy_ms / 1000.0)
    }

    /// E-W2, which ranks the lanes.
    pub fn energy_w2(&self) -> f64 {
        self.metrics.energy_w2()
    }

    /// The row under [`columns`], as compare.csv writes it, with energy evaluations priced at
    /// `energy_ms` milliseconds.
    pub fn row(&self, kind: SamplerKind, energy_ms: f64) -> Vec<String> {
        let mut row = vec![
            kind.name().into(),
            self.budget.map_or("final".to_string(), |b| b.to_string()),
        ];
        row.extend(self.metrics.cells());
        row.extend([
            self.ess.map_or(String::new(), |v| format!("{v}")),
            self.energy_evals.to_string(),
            self.network_passes.to_string(),
            format!("{:.3}", self.wall_seconds),
            self.eval_energy_evals.to_string(),
            format!("{:.3}", self.energy_cost_seconds(energy_ms)),
            format!("{:.3}", self.cost_seconds(energy_ms)),
            self.further
                .map_or(String::new(), |f| format!("{:.0}", f.energy_evals)),
            self.further_1000_seconds(energy_ms)
                .map_or(String::new(), |s| format!("{s:.3}")),
        ]);
        row
    }
}

/// Further samples after which kind A (training cost `a` seconds, `fa` per 1000 further
/// samples) is cheaper in total than kind B (`b`, `fb`): where A cost more to train and less per
/// sample, the amortisation a learned sampler is for; `None` otherwise.
pub fn break_even(a: f64, fa: f64, b: f64, fb: f64) -> Option<f64> {
    (a > b && fa < fb && (a - b).is_finite() && (fb - fa).is_finite())
        .then(|| 1000.0 * (a - b) / (fb - fa))
}

/// Every ordered pair (a, b) of kinds, given each kind's (training cost, cost per 1000 further
/// samples), where a becomes the cheaper one overall: with the further samples from which it
/// is. A NaN cost (not measured) takes part in no pair.
pub fn break_evens(costs: &[(f64, f64)]) -> Vec<(usize, usize, f64)> {
    let mut out = Vec::new();
    for (a, &(ca, fa)) in costs.iter().enumerate() {
        for (b, &(cb, fb)) in costs.iter().enumerate() {
            out.extend(break_even(ca, fa, cb, fb).map(|n| (a, b, n)));
        }
    }
    out
}

/// A lane's first judgement whose cost (energy evaluations at `energy_ms`) is at least
/// `cost` seconds, else its last: how good a kind was for a given spend.
pub fn at_cost(points: &[RacePoint], energy_ms: f64, cost: f64) -> Option<&RacePoint> {
    points
        .iter()
        .find(|p| p.cost_seconds(energy_ms) >= cost)
        .or(points.last())
}

/// Who leads: lanes ordered by E-W2 (lowest first; a non-finite one last) at the latest budget
/// point that every lane has passed, each lane judged by its first judgement at or past it. A
/// lane's unit of work can jump several budget points (an MCMC block of sweeps), so a lane may be
/// judged past the point; none is ranked on a budget the others have not had yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Standings {
    /// The budget point ranked on (energy evaluations).
    pub budget: u64,
    /// Lane indices, leader first.
    pub order: Vec<usize>,
    /// Each lane's judgement used (by lane index).
    pub judged: Vec<RacePoint>,
}

/// The standings of lanes with these judgements (final ones are left out); `None` until every
/// lane has passed the first budget point.
pub fn standings(lanes: &[&[RacePoint]]) -> Option<Standings> {
    let budget = lanes
        .iter()
        .map(|pts| pts.iter().filter_map(|p| p.budget).max())
        .collect::<Option<Vec<u64>>>()?
        .into_iter()
        .min()?;
    let judged: Vec<RacePoint> = lanes
        .iter()
        .map(|pts| {
            pts.iter()
                .find(|p| p.budget.is_some_and(|b| b >= budget))
                .cloned()
        })
        .collect::<Option<_>>()?;
    let w2 = |l: usize| {
        if judged[l].energy_w2().is_finite() {
            judged[l].energy_w2()
        } else {
            f64::INFINITY
        }
    };
    let mut order: Vec<usize> = (0..lanes.len()).collect();
    order.sort_by(|&a, &b| w2(a).total_cmp(&w2(b)).then(a.cmp(&b)));
    Some(Standings {
        budget,
        order,
        judged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(budget: u64, evals: u64, w2: f64) -> RacePoint {
        let metrics = MetricSet::new(
            Family::Plane,
            &[(&crate::metrics::family::ENERGY_W2, Some(w2))],
        );
        RacePoint {
            budget: Some(budget),
            energy_evals: evals,
            network_passes: 0,
            wall_seconds: 0.0,
            metrics,
            ess: None,
            eval_energy_evals: 0,
            further: None,
        }
    }

    #[test]
    fn the_lane_with_the_fewest_evaluations_works_next() {
        let c = |e| Counters {
            energy_evals: e,
            ..Counters::default()
        };
        let (a, b, z) = (c(500), c(300), c(300));
        assert_eq!(
            next_lane([(&a, true), (&b, true), (&z, true)]),
            Some(1),
            "fewest, the first on a tie"
        );
        assert_eq!(
            next_lane([(&a, true), (&b, false), (&z, false)]),
            Some(0),
            "lanes at their budget wait"
        );
        assert_eq!(next_lane([(&a, false)]), None);
    }

    #[test]
    fn standings_rank_at_the_last_point_every_lane_passed() {
        // Lane 0 has passed 316 and is worse at 178; lane 1 has passed 178.
        let l0 = [pt(100, 100, 5.0), pt(178, 180, 3.0), pt(316, 320, 0.1)];
        let l1 = [pt(100, 120, 9.0), pt(178, 200, 2.0)];
        let s = standings(&[&l0, &l1]).unwrap();
        assert_eq!((s.budget, s.order), (178, vec![1, 0]));
        // A lane whose unit jumped past points is judged by its first judgement at or past the
        // point (here 5623 for 316); a NaN ranks last; a final judgement is not a budget point.
        let jump = [
            pt(5623, 8497, f64::NAN),
            RacePoint {
                budget: None,
                ..pt(0, 9999, 0.0)
            },
        ];
        let s = standings(&[&l0, &jump]).unwrap();
        assert_eq!(
            (s.budget, s.order, s.judged[1].energy_evals),
            (316, vec![0, 1], 8497)
        );
        assert_eq!(
            columns(Family::Plane),
            [
                "kind",
                "point",
                "energy_w2",
                "x_w2",
                "ess",
                "energy_evals",
                "network_passes",
                "wall_seconds",
                "eval_energy_evals",
                "energy_cost_seconds",
                "cost_seconds",
                "further_1000_energy_evals",
                "further_1000_seconds"
            ]
        );
        assert_eq!(
            RacePoint {
                budget: None,
                ..pt(0, 7, 0.5)
            }
            .row(SamplerKind::named("mcmc"), 0.0),
            [
                "mcmc", "final", "0.5", "", "", "7", "0", "0.000", "0", "0.000", "0.000", "", ""
            ]
        );
        assert_eq!(standings(&[&l0, &[]]), None);
    }

    #[test]
    fn priced_energy_evaluations_add_to_the_cost() {
        // 2000 evaluations at 1.5 ms are 3 s on top of 0.5 s of training; 1000 further samples
        // needing 4000 evaluations and 0.25 s cost 6.25 s at that price, 0.25 s when free.
        let p = RacePoint {
            wall_seconds: 0.5,
            further: Some(Further {
                energy_evals: 4000.0,
                seconds: 0.25,
            }),
            ..pt(1778, 2000, 1.0)
        };
        assert_eq!(
            (p.energy_cost_seconds(1.5), p.cost_seconds(1.5)),
            (3.0, 3.5)
        );
        assert_eq!(
            (p.further_1000_seconds(1.5), p.further_1000_seconds(0.0)),
            (Some(6.25), Some(0.25))
        );
        assert_eq!(
            p.row(SamplerKind::named("mcmc"), 1.5)[9..],
            ["3.000", "3.500", "4000", "6.250"]
        );
    }

    #[test]
    fn break_even_is_where_the_totals_cross() {
        // A: 100 s + 1 s/1000; B: 10 s + 10 s/1000: equal at n with 100 + n/1000 = 10 + 10n/1000.
        let n = break_even(100.0, 1.0, 10.0, 10.0).unwrap();
        assert!(
            (100.0 + n / 1000.0 - (10.0 + 10.0 * n / 1000.0)).abs() < 1e-9,
            "{n}"
        );
        assert_eq!(
            break_even(10.0, 10.0, 100.0, 1.0),
            None,
            "B is the one that amortises"
        );
        assert_eq!(
            break_evens(&[(10.0, 10.0), (100.0, 1.0), (50.0, f64::NAN)])
                .iter()
                .map(|&(a, b, _)| (a, b))
                .collect::<Vec<_>>(),
            [(1, 0)]
        );
        assert_eq!(
            break_even(100.0, 10.0, 10.0, 1.0),
            None,
            "A is dearer both ways"
        );
    }

    #[test]
    fn points_are_log_spaced_from_a_hundred() {
        let p = points(PER_DECADE);
        assert_eq!(&p[..5], &[100, 178, 316, 562, 1000]);
        assert_eq!(p.last(), Some(&1_000_000_000_000));
    }
}
