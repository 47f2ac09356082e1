//! The plots: loss, metrics over steps or wall time, energy and interatomic-distance histograms
//! against the reference, ESS and throughput. Plain functions over [`RunData`], drawn by the
//! panels; histograms are recomputed only when a new batch arrives.

use bevy::prelude::*;
use bevy_egui::egui;
use egui_plot::{
    Bar, BarChart, Corner, HLine, Heatmap, Legend, Line, Plot, PlotPoint, PlotPoints, Points, Text,
    VLine,
};

use super::link::RunData;
use super::ticks::readable;
use crate::io::Matrix;
use crate::metrics::{Histogram, interatomic_distances};

const PLOT_HEIGHT: f32 = 150.0;
const BINS: usize = 60;

/// Plot options the user sets.
#[derive(Resource, Debug, Clone)]
pub struct PlotSettings {
    /// Weight of the previous value in the loss's exponential moving average (0 = raw).
    pub ema: f64,
    pub log_loss: bool,
    /// Metrics against wall-clock seconds instead of gradient steps.
    pub wall_time: bool,
    pub log_metrics: bool,
    /// Assumed milliseconds per energy evaluation in races (`compare --energy-ms`): 0 ranks the
    /// race by energy evaluations alone; above 0 the race plot's axis is the lanes' cost.
    pub energy_ms: f64,
}

impl Default for PlotSettings {
    fn default() -> Self {
        Self {
            ema: 0.95,
            log_loss: true,
            wall_time: false,
            log_metrics: true,
            energy_ms: 0.0,
        }
    }
}

/// Largest price per energy evaluation the race slider offers: ten seconds, a slow DFT step.
pub const MAX_ENERGY_MS: f64 = 10_000.0;

/// Histograms of the latest batch and of the reference on shared bins.
#[derive(Resource, Default)]
pub struct HistogramCache {
    version: Option<(u64, u64, bool)>,
    /// Whether the sample histograms are importance-reweighted (the batch has weights and the
    /// view asked for it).
    pub reweighted: bool,
    pub energy: Option<(Histogram, Histogram)>,
    pub distance: Option<(Histogram, Histogram)>,
}

/// Exponential moving average of a series (the first value starts it).
pub fn ema(points: &[[f64; 2]], alpha: f64) -> Vec<[f64; 2]> {
    let mut out = Vec::with_capacity(points.len());
    let mut acc: Option<f64> = None;
    for p in points {
        let v = match acc {
            Some(a) => alpha * a + (1.0 - alpha) * p[1],
            None => p[1],
        };
        acc = Some(v);
        out.push([p[0], v]);
    }
    out
}

/// Points a line keeps on screen: a plot is a few hundred pixels wide, so more only cost
/// tessellation and upload every frame.
pub const LINE_POINTS: usize = 1024;

/// At most `buckets` × 2 points tracing a long series: for each of `buckets` runs of equal
/// length, its lowest and highest point in the order they occur, so spikes stay visible. Once
/// the series is longer than that, the count is constant, so the plot's vertex buffers keep
/// their size while a run grows.
pub fn envelope(points: &[[f64; 2]], buckets: usize) -> Vec<[f64; 2]> {
    if buckets == 0 || points.len() <= 2 * buckets {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(2 * buckets);
    for k in 0..buckets {
        let run = &points[k * points.len() / buckets..(k + 1) * points.len() / buckets];
        let lo = run
            .iter()
            .enumerate()
            .min_by(|a, b| a.1[1].total_cmp(&b.1[1]))
            .map_or(0, |(i, _)| i);
        let hi = run
            .iter()
            .enumerate()
            .max_by(|a, b| a.1[1].total_cmp(&b.1[1]))
            .map_or(0, |(i, _)| i);
        out.push(run[lo.min(hi)]);
        out.push(run[lo.max(hi)]);
    }
    out
}

/// A loss series as a line draws it: its envelope, with `tr` (log or not) applied to the loss.
fn loss_line(points: &[[f64; 2]], tr: impl Fn(f64) -> f64) -> Vec<[f64; 2]> {
    envelope(points, LINE_POINTS / 2)
        .into_iter()
        .map(|p| [p[0], tr(p[1])])
        .collect()
}

/// Shared bins for a sample set and its reference: the reference's range widened by half its
/// width, so that a few very hot samples do not squash the picture (they fall in the end bins).
/// `weight(i)` weighs sample value i (1 for raw histograms).
fn shared(
    samples: &[f64],
    weight: impl Fn(usize) -> f64,
    reference: &[f64],
) -> Option<(Histogram, Histogram)> {
    let finite = |v: &[f64]| {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect::<Vec<_>>()
    };
    let r = finite(reference);
    // Non-finite samples get no weight (and no place on the axis).
    let s = finite(samples);
    if s.is_empty() {
        return None;
    }
    let weight = |i: usize| {
        if samples[i].is_finite() {
            weight(i)
        } else {
            0.0
        }
    };
    let base = if r.is_empty() { &s } else { &r };
    let lo = base.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = base.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = 0.5 * (hi - lo).max(1e-6);
    let (lo, hi) = (lo - pad * 0.3, hi + pad);
    Some((
        Histogram::weighted(samples, weight, lo, hi, BINS),
        Histogram::new(&r, lo, hi, BINS),
    ))
}

pub fn refresh_histograms(data: &RunData, cache: &mut HistogramCache, reweighted: bool) {
    let generation = data.info.as_ref().map(|i| i.generation).unwrap_or(0);
    let key = (generation, data.samples_version, reweighted);
    if cache.version == Some(key) {
        return;
    }
    cache.version = Some(key);
    let (Some(info), Some(b)) = (&data.info, &data.samples) else {
        cache.energy = None;
        cache.distance = None;
        return;
    };
    // Self-normalised importance weights wᵢ ∝ exp(log wᵢ − max), when asked for and defined.
    let weights: Option<Vec<f64>> = b.log_weights.as_ref().filter(|_| reweighted).map(|lw| {
        let max = lw
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        lw.iter()
            .map(|&v| if v.is_finite() { (v - max).exp() } else { 0.0 })
            .collect()
    });
    cache.reweighted = weights.is_some();
    let w = |i: usize| weights.as_ref().map_or(1.0, |w| w[i]);
    cache.energy = shared(&b.energies, w, &info.reference_energies);
    cache.distance = if b.layout.particles > 1 {
        let m = Matrix::new(b.len(), b.layout.dim(), b.x.clone());
        // Each sample's pairs carry its weight.
        let pairs = b.layout.particles * (b.layout.particles - 1) / 2;
        shared(
            &interatomic_distances(&m, b.layout),
            |k| w(k / pairs),
            &info.reference_distances,
        )
    } else {
        None
    };
}

const SAMPLES_COLOR: egui::Color32 = egui::Color32::from_rgb(86, 156, 214);
const REFERENCE_COLOR: egui::Color32 = egui::Color32::from_rgb(230, 140, 60);
const REWEIGHTED_COLOR: egui::Color32 = egui::Color32::from_rgb(120, 190, 110);

pub fn loss_plot(ui: &mut egui::Ui, data: &RunData, settings: &mut PlotSettings) {
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut settings.ema, 0.0..=0.995).text("smoothing"))
            .on_hover_text(
                "Exponential moving average of the loss: 0 shows every step, 0.99 a slow average.",
            );
        ui.checkbox(&mut settings.log_loss, "log scale")
            .on_hover_text("Plot log₁₀ of the loss.");
    });
    let tr = |v: f64| {
        if settings.log_loss {
            v.max(1e-12).log10()
        } else {
            v
        }
    };
    let raw: Vec<[f64; 2]> = loss_line(&data.losses, tr);
    let smooth: Vec<[f64; 2]> = loss_line(&ema(&data.losses, settings.ema), tr);
    let log = settings.log_loss;
    readable(Plot::new("loss"), false, log)
        .height(PLOT_HEIGHT)
        .x_axis_label("gradient step")
        .y_axis_label(if log { "loss (log₁₀)" } else { "loss" })
        .y_axis_formatter(move |m, _| {
            if log {
                short(10f64.powf(m.value))
            } else {
                short(m.value)
            }
        })
        .legend(Legend::default().position(Corner::RightTop))
        .show(ui, |p| {
            p.line(
                Line::new("per step", PlotPoints::from(raw))
                    .color(egui::Color32::from_gray(110))
                    .width(1.0),
            );
            p.line(
                Line::new("smoothed", PlotPoints::from(smooth))
                    .color(SAMPLES_COLOR)
                    .width(2.0),
            );
        });
}

/// A tick label with about three significant digits.
fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-2..1e4).contains(&a) {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.1e}")
    }
}

pub fn metrics_plot(ui: &mut egui::Ui, data: &RunData, settings: &mut PlotSettings) {
    // MCMC takes no gradient steps: its progress is the energy evaluations it has spent.
    let steps = data.kind.learns();
    ui.horizontal(|ui| {
        ui.selectable_value(
            &mut settings.wall_time,
            false,
            if steps {
                "over steps"
            } else {
                "over energy evaluations"
            },
        );
        ui.selectable_value(&mut settings.wall_time, true, "over wall time");
        ui.checkbox(&mut settings.log_metrics, "log scale");
    })
    .response
    .on_hover_text(
        "Metrics of each evaluated batch against as many reference samples; lower is better.",
    );
    let x = |m: &crate::worker::MetricPoint| match (settings.wall_time, steps) {
        (true, _) => m.wall_seconds,
        (false, true) => m.step as f64,
        (false, false) => m.energy_evals as f64,
    };
    let series = |f: &dyn Fn(&crate::worker::MetricPoint) -> Option<f64>| -> Vec<[f64; 2]> {
        data.metrics
            .iter()
            .filter_map(|m| f(m).map(|v| [x(m), v]))
            .collect()
    };
    let log = settings.log_metrics;
    let tr = |v: f64| if log { v.max(1e-6).log10() } else { v };
    // The family's W2 metrics (E-W2, x-W2 or torus-W2, eq-W2 on the evaluation cadence only);
    // its total variations live on another scale, in the exported CSV.
    const COLOURS: [egui::Color32; 3] = [
        egui::Color32::from_rgb(220, 90, 90),
        egui::Color32::from_rgb(120, 200, 120),
        egui::Color32::from_rgb(90, 160, 230),
    ];
    let family = data
        .metrics
        .first()
        .map(|m| m.metrics.family)
        .unwrap_or_default();
    let named: Vec<(&str, Vec<[f64; 2]>, egui::Color32)> = family
        .metrics()
        .iter()
        .filter(|m| m.key.ends_with("w2"))
        .zip(COLOURS)
        .map(|(metric, colour)| {
            (
                metric.label,
                series(&|m| m.metrics.get(metric.key).map(tr)),
                colour,
            )
        })
        .collect();
    readable(Plot::new("metrics"), false, log)
        .height(PLOT_HEIGHT)
        .x_axis_label(match (settings.wall_time, steps) {
            (true, _) => "training time (s)",
            (false, true) => "gradient step",
            (false, false) => "energy evaluations",
        })
        .y_axis_label(if log { "W2 (log scale)" } else { "W2" })
        .y_axis_formatter(move |m, _| {
            if log {
                short(10f64.powf(m.value))
            } else {
                short(m.value)
            }
        })
        .legend(Legend::default().position(Corner::RightTop))
        .show(ui, |p| {
            for (name, pts, color) in named {
                if pts.is_empty() {
                    continue;
                }
                p.line(
                    Line::new(name, PlotPoints::from(pts.clone()))
                        .color(color)
                        .width(1.5),
                );
                // Evaluations are sparse: a marker per point keeps the first ones visible.
                p.points(
                    Points::new(name, PlotPoints::from(pts))
                        .color(color)
                        .radius(2.5),
                );
            }
        });
}

fn histogram_plot(
    ui: &mut egui::Ui,
    id: &str,
    x_label: &str,
    h: &Option<(Histogram, Histogram)>,
    reference_available: bool,
    reweighted: bool,
) {
    let Some((s, r)) = h else {
        ui.label("no samples yet: press play");
        return;
    };
    let w = s.width();
    let bars: Vec<Bar> = s
        .density
        .iter()
        .enumerate()
        .map(|(k, &d)| Bar::new(s.lo + (k as f64 + 0.5) * w, d).width(w))
        .collect();
    let mut steps = Vec::with_capacity(2 * r.density.len());
    for (k, &d) in r.density.iter().enumerate() {
        steps.push([r.lo + k as f64 * w, d]);
        steps.push([r.lo + (k + 1) as f64 * w, d]);
    }
    readable(Plot::new(id), false, false)
        .height(PLOT_HEIGHT)
        .x_axis_label(x_label)
        .y_axis_label("density")
        .legend(Legend::default().position(Corner::RightTop))
        .show(ui, |p| {
            let name = if reweighted {
                "current samples, reweighted"
            } else {
                "current samples"
            };
            p.bar_chart(BarChart::new(name, bars).color(if reweighted {
                REWEIGHTED_COLOR
            } else {
                SAMPLES_COLOR
            }));
            if reference_available {
                p.line(
                    Line::new("reference samples", PlotPoints::from(steps))
                        .color(REFERENCE_COLOR)
                        .width(2.0),
                );
            }
        });
}

pub fn energy_histogram(ui: &mut egui::Ui, data: &RunData, cache: &HistogramCache) {
    let has_ref = data
        .info
        .as_ref()
        .is_some_and(|i| !i.reference_energies.is_empty());
    histogram_plot(
        ui,
        "energy_hist",
        "energy E (units of kT)",
        &cache.energy,
        has_ref,
        cache.reweighted,
    );
}

pub fn distance_histogram(ui: &mut egui::Ui, data: &RunData, cache: &HistogramCache) {
    if data.info.as_ref().is_some_and(|i| i.layout.particles < 2) {
        ui.label("a single point: no interatomic distances");
        return;
    }
    let has_ref = data
        .info
        .as_ref()
        .is_some_and(|i| !i.reference_distances.is_empty());
    histogram_plot(
        ui,
        "dist_hist",
        "interatomic distance r (length units)",
        &cache.distance,
        has_ref,
        cache.reweighted,
    );
}

/// A molecule's torsions. With φ and ψ: the latest samples (points, degrees) over the reference
/// density (a 36 × 36 heat map of 10° cells, square-root scaled so that sparse basins show),
/// the basins labelled. With one torsion (butane): its histogram against the reference's, with
/// trans (|φ| > 120°) and gauche marked.
/// The two torsions the map shows: the chosen pair where it is valid, else φ and ψ when the
/// molecule names them, else the first two.
pub fn torsion_pair(names: &[String], chosen: Option<(usize, usize)>) -> Option<(usize, usize)> {
    chosen
        .filter(|&(i, j)| i != j && i < names.len() && j < names.len())
        .or_else(|| crate::metrics::torsions::ramachandran_columns(names))
}

/// A torsion's axis name: φ and ψ as Greek letters, other names as the scene gives them.
pub fn torsion_label(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "phi" => "φ".into(),
        "psi" => "ψ".into(),
        _ => name.to_string(),
    }
}

pub fn torsion_plot(ui: &mut egui::Ui, data: &RunData, chosen: Option<(usize, usize)>) {
    use crate::metrics::torsions as tm;
    let Some(info) = &data.info else { return };
    let dim = info.layout.dim();
    let names = &info.torsion_names;
    let samples: Vec<f64> = data
        .samples
        .as_ref()
        .map(|b| b.x.iter().map(|&v| v as f64).collect())
        .unwrap_or_default();
    let reference: Vec<f64> = info.reference_torsions.iter().map(|&v| v as f64).collect();
    let basins = &info.scene.basins;
    if let Some((i, j)) = torsion_pair(names, chosen) {
        let (ni, nj) = (&names[i], &names[j]);
        const BINS: usize = 36;
        let h = tm::histogram(&reference, dim, &[i, j], BINS);
        // The histogram is row-major in the first torsion; the heat map's rows run along the
        // second, its first row at the bottom.
        let mut values = vec![0.0; BINS * BINS];
        for a in 0..BINS {
            for b in 0..BINS {
                values[b * BINS + a] = h[a * BINS + b].sqrt();
            }
        }
        let pts: Vec<[f64; 2]> = samples
            .chunks(dim)
            .map(|r| {
                [
                    crate::molecule::wrap_angle(r[i]).to_degrees(),
                    crate::molecule::wrap_angle(r[j]).to_degrees(),
                ]
            })
            .collect();
        let shading = if reference.is_empty() {
            "no reference yet"
        } else {
            "shading: reference density"
        };
        readable(Plot::new("ramachandran"), false, false)
            .height(PLOT_HEIGHT * 1.8)
            .data_aspect(1.0)
            .include_x(-180.0)
            .include_x(180.0)
            .include_y(-180.0)
            .include_y(180.0)
            .x_axis_label(format!(
                "{} (degrees) — points: current samples; {shading}",
                torsion_label(ni)
            ))
            .y_axis_label(format!("{} (degrees)", torsion_label(nj)))
            .show(ui, |p| {
                if !reference.is_empty() {
                    p.heatmap(
                        Heatmap::new(values, BINS)
                            .at(PlotPoint::new(-180.0, -180.0))
                            .size(360.0, 360.0)
                            .show_labels(false)
                            .palette(&[
                                egui::Color32::from_gray(18),
                                egui::Color32::from_rgb(70, 60, 120),
                                egui::Color32::from_rgb(230, 140, 60),
                            ])
                            .name("reference density"),
                    );
                }
                p.points(
                    Points::new("current samples", PlotPoints::from(pts))
                        .radius(1.5)
                        .color(SAMPLES_COLOR),
                );
                // Only the scene's own basins, and only those that constrain nothing but the two
                // torsions shown (a basin of others would be misplaced on this map).
                for b in basins.iter().filter(|b| b.ranges.keys().all(|k| k == ni || k == nj)) {
                    let at = |name: &str| {
                        b.range(name)
                            .map_or(0.0, crate::scene::BasinSpec::middle)
                    };
                    p.text(
                        Text::new(b.name.clone(), PlotPoint::new(at(ni), at(nj)), b.name.clone())
                            .color(egui::Color32::WHITE),
                    );
                }
            });
    } else {
        const BINS: usize = 72;
        let name = names.first().map_or("torsion".to_string(), |n| torsion_label(n));
        let w = 360.0 / BINS as f64;
        let hs = tm::histogram(&samples, dim, &[0], BINS);
        let hr = tm::histogram(&reference, dim, &[0], BINS);
        let bars: Vec<Bar> = hs
            .iter()
            .enumerate()
            .map(|(k, &v)| Bar::new(-180.0 + (k as f64 + 0.5) * w, v / w).width(w))
            .collect();
        let mut steps = Vec::with_capacity(2 * BINS);
        for (k, &v) in hr.iter().enumerate() {
            steps.push([-180.0 + k as f64 * w, v / w]);
            steps.push([-180.0 + (k + 1) as f64 * w, v / w]);
        }
        // The first basin's population in samples and reference, where the scene names basins.
        let first = names.first().and_then(|n| {
            let b = basins.iter().find(|b| b.ranges.len() == 1 && b.range(n).is_some())?;
            Some((b.name.clone(), b.range(n)?))
        });
        let share = |x: &[f64], (lo, hi): (f64, f64)| {
            x.chunks(dim)
                .filter(|r| {
                    let d = crate::molecule::wrap_angle(r[0]).to_degrees();
                    if lo <= hi { lo <= d && d < hi } else { d >= lo || d < hi }
                })
                .count() as f64
                / (x.len() / dim).max(1) as f64
        };
        let label = match &first {
            Some((b, r)) if !reference.is_empty() => format!(
                "{name} (degrees) — {b}: samples {:.3}, reference {:.3}",
                share(&samples, *r),
                share(&reference, *r)
            ),
            Some((b, r)) => format!("{name} (degrees) — {b}: samples {:.3}; no reference yet", share(&samples, *r)),
            None => format!("{name} (degrees)"),
        };
        readable(Plot::new("torsion"), false, false)
            .height(PLOT_HEIGHT)
            .include_x(-180.0)
            .include_x(180.0)
            .x_axis_label(label)
            .y_axis_label("density (1/degree)")
            .legend(Legend::default().position(Corner::RightTop))
            .show(ui, |p| {
                p.bar_chart(BarChart::new("current samples", bars).color(SAMPLES_COLOR));
                if !reference.is_empty() {
                    p.line(
                        Line::new("reference samples", PlotPoints::from(steps))
                            .color(REFERENCE_COLOR)
                            .width(2.0),
                    );
                }
                // Basin edges, each once.
                let mut edges: Vec<f64> = basins
                    .iter()
                    .filter_map(|b| names.first().and_then(|n| b.range(n)))
                    .flat_map(|(lo, hi)| [lo, hi])
                    .filter(|e| e.abs() < 180.0)
                    .collect();
                edges.sort_by(f64::total_cmp);
                edges.dedup();
                for x in edges {
                    p.vline(VLine::new("basin edges", x).color(egui::Color32::from_gray(150)));
                }
            });
    }
}

/// A one-variable formula: the samples' histogram against the exact density over its bounds.
pub fn line_density(ui: &mut egui::Ui, data: &RunData, f: &crate::scene::FormulaSystem) {
    use crate::energy::Energy;
    const BINS: usize = 80;
    let [lo, hi] = f.bounds_or_default()[0];
    let Ok(energy) = f.build() else { return };
    let w = (hi - lo) / BINS as f64;
    let xs: Vec<f64> = data
        .samples
        .as_ref()
        .map(|b| b.x.iter().map(|&v| v as f64).collect())
        .unwrap_or_default();
    let mut h = vec![0.0; BINS];
    for &x in &xs {
        if (lo..hi).contains(&x) {
            h[(((x - lo) / w) as usize).min(BINS - 1)] += 1.0;
        }
    }
    let n = xs.len().max(1) as f64;
    let bars: Vec<Bar> = h
        .iter()
        .enumerate()
        .map(|(k, &c)| Bar::new(lo + (k as f64 + 0.5) * w, c / n / w).width(w))
        .collect();
    // The exact density at 400 points, normalised by the trapezoid rule over the bounds.
    const POINTS: usize = 400;
    let grid: Vec<f64> = (0..=POINTS).map(|k| lo + (hi - lo) * k as f64 / POINTS as f64).collect();
    let e: Vec<f64> = grid.iter().map(|&x| energy.energy(&[x])).collect();
    let e_min = e.iter().copied().filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min);
    let p: Vec<f64> = e.iter().map(|&v| if v.is_finite() { (e_min - v).exp() } else { 0.0 }).collect();
    let step = (hi - lo) / POINTS as f64;
    let z = p.windows(2).map(|q| (q[0] + q[1]) / 2.0 * step).sum::<f64>().max(f64::MIN_POSITIVE);
    let curve: Vec<[f64; 2]> = grid.iter().zip(&p).map(|(&x, &q)| [x, q / z]).collect();
    let outside = xs.iter().filter(|x| !(lo..hi).contains(*x)).count();
    readable(Plot::new("line-density"), false, false)
        .height(PLOT_HEIGHT)
        .include_x(lo)
        .include_x(hi)
        .x_axis_label(if outside > 0 {
            format!("{} ({outside} of {} samples outside the bounds)", f.variables[0], xs.len())
        } else {
            f.variables[0].clone()
        })
        .y_axis_label(format!("density (1/{})", f.variables[0]))
        .legend(Legend::default().position(Corner::RightTop))
        .show(ui, |p| {
            p.bar_chart(BarChart::new("current samples", bars).color(SAMPLES_COLOR));
            p.line(
                Line::new("exact density", PlotPoints::from(curve))
                    .color(REFERENCE_COLOR)
                    .width(2.0),
            );
        });
}

pub fn ess_plot(ui: &mut egui::Ui, data: &RunData) {
    // Kinds without importance weights (ASBS, iDEM, MCMC) report NaN: nothing to draw.
    let pts: Vec<[f64; 2]> = data
        .metrics
        .iter()
        .filter(|m| m.ess.is_finite())
        .map(|m| [m.step as f64, 100.0 * m.ess])
        .collect();
    if pts.is_empty() && !data.metrics.is_empty() {
        ui.label(format!(
            "{} defines no importance weights",
            data.kind.label()
        ));
        return;
    }
    readable(Plot::new("ess"), false, false)
        .height(PLOT_HEIGHT * 0.7)
        .x_axis_label("gradient step")
        .y_axis_label("ESS (%)")
        .include_y(0.0)
        .show(ui, |p| {
            p.line(Line::new("normalised ESS", PlotPoints::from(pts)).width(2.0));
        });
}

/// Each kind's log Z estimate (logmeanexp of its batches' exact log-weights) over training, with
/// the exact value where the system has one: Δlog Z is how the GFlowNet papers compare
/// samplers. A race draws every lane against its energy evaluations; a single run against
/// gradient steps.
pub fn log_z_plot(ui: &mut egui::Ui, data: &RunData) {
    let racing = data.racing();
    let lanes: Vec<(String, &[crate::run::MetricPoint], egui::Color32)> = if racing {
        data.lanes
            .iter()
            .enumerate()
            .map(|(k, l)| (l.kind.label().to_string(), l.metrics.as_slice(), lane_color(k)))
            .collect()
    } else {
        vec![(data.kind.label().to_string(), data.metrics.as_slice(), egui::Color32::from_rgb(90, 170, 255))]
    };
    let x = |m: &crate::run::MetricPoint| {
        if racing {
            (m.energy_evals.max(1) as f64).log10()
        } else {
            m.step as f64
        }
    };
    let any = lanes.iter().any(|(_, ms, _)| ms.iter().any(|m| m.log_z.is_finite()));
    if !any {
        if !data.metrics.is_empty() || data.lanes.iter().any(|l| !l.metrics.is_empty()) {
            ui.label("No log Z estimate: the kinds shown have no path measure with exact weights (Adjoint Sampling, ASBS and GFlowNet have).");
        }
        return;
    }
    let exact = data.info.as_ref().and_then(|i| i.log_z_exact);
    let mut plot = readable(Plot::new("log_z"), racing, false)
        .height(PLOT_HEIGHT * 0.8)
        .x_axis_label(if racing { "energy evaluations (log scale)" } else { "gradient step" })
        .y_axis_label("log Z (nats)")
        .legend(Legend::default().position(Corner::RightBottom));
    if racing {
        plot = plot.x_axis_formatter(|m, _| short(10f64.powf(m.value)));
    }
    plot.show(ui, |p| {
        for (name, ms, colour) in &lanes {
            let pts: Vec<[f64; 2]> = ms
                .iter()
                .filter(|m| m.log_z.is_finite())
                .map(|m| [x(m), m.log_z])
                .collect();
            p.line(Line::new(name.as_str(), PlotPoints::from(pts)).color(*colour).width(1.5));
        }
        if let Some(e) = exact {
            p.hline(HLine::new(format!("exact {e:.3}"), e).color(REFERENCE_COLOR).width(1.5));
        }
    });
}

/// Training speed over wall time, and energy evaluations against gradient steps (Adjoint
/// Sampling's point: a few evaluations per step, where PIS/DDS need hundreds).
pub fn throughput_plot(ui: &mut egui::Ui, data: &RunData) {
    if !data.kind.learns() {
        // Both plots count gradient steps, which MCMC never takes.
        ui.label(format!(
            "{} takes no gradient steps: {} energy evaluations so far, {:.0} per second.",
            data.kind.label(),
            data.counters.energy_evals,
            data.evals_per_second
        ));
        return;
    }
    let rate: Vec<[f64; 2]> = data
        .metrics
        .windows(2)
        .filter(|w| w[1].wall_seconds > w[0].wall_seconds)
        .map(|w| {
            [
                w[1].wall_seconds,
                (w[1].step - w[0].step) as f64 / (w[1].wall_seconds - w[0].wall_seconds),
            ]
        })
        .collect();
    let evals: Vec<[f64; 2]> = data
        .metrics
        .iter()
        .map(|m| [m.step as f64, m.energy_evals as f64])
        .collect();
    ui.columns(2, |cols| {
        readable(Plot::new("speed"), false, false)
            .height(PLOT_HEIGHT * 0.8)
            .x_axis_label("training time (s)")
            .y_axis_label("gradient steps/s")
            .include_y(0.0)
            .show(&mut cols[0], |p| {
                p.line(Line::new("steps/s", PlotPoints::from(rate)).width(2.0));
            });
        readable(Plot::new("evals"), false, false)
            .height(PLOT_HEIGHT * 0.8)
            .x_axis_label("gradient step")
            .y_axis_label("energy evaluations")
            .include_y(0.0)
            .show(&mut cols[1], |p| {
                p.line(Line::new("energy evaluations", PlotPoints::from(evals)).width(2.0));
            });
    });
}

/// The colour of lane `k` of a race (also used for its label in the 3D view).
pub fn lane_color(k: usize) -> egui::Color32 {
    const C: [egui::Color32; 4] = [
        egui::Color32::from_rgb(230, 95, 90),
        egui::Color32::from_rgb(90, 160, 235),
        egui::Color32::from_rgb(120, 205, 120),
        egui::Color32::from_rgb(200, 140, 230),
    ];
    C[k % C.len()]
}

/// E-W2 of each lane against its energy evaluations, log x.
pub fn race_metrics_plot(ui: &mut egui::Ui, data: &RunData, settings: &mut PlotSettings) {
    ui.horizontal(|ui| {
        ui.checkbox(&mut settings.log_metrics, "log scale (E-W2)");
        ui.add(egui::Slider::new(&mut settings.energy_ms, 0.0..=MAX_ENERGY_MS).logarithmic(true).smallest_positive(0.01).text("ms per energy evaluation")).on_hover_text(
            "Energy-cost slider: what one energy evaluation is assumed to cost, in milliseconds. The energies here are analytic and nearly free; a DFT or ML potential costs 1 ms to seconds. Above 0 the plot's axis is each lane's cost (its training seconds plus its energy evaluations at this price), and the table's cost columns price them in, so you can see where a learned sampler overtakes MCMC when the energy is expensive. `compare --energy-ms` does the same.",
        );
    });
    let log = settings.log_metrics;
    let ms = settings.energy_ms;
    let tr = |v: f64| if log { v.max(1e-6).log10() } else { v };
    // Energy evaluations alone, or the cost in seconds (race::RacePoint::cost_seconds).
    let x = |m: &crate::run::MetricPoint| {
        if ms > 0.0 {
            m.wall_seconds + m.energy_evals as f64 * ms / 1000.0
        } else {
            m.energy_evals as f64
        }
    };
    let x_label = if ms > 0.0 {
        format!(
            "cost: training + energy at {} ms/evaluation (s, log scale)",
            short(ms)
        )
    } else {
        "energy evaluations (log scale)".to_string()
    };
    readable(Plot::new("race_metrics"), true, log)
        .height(PLOT_HEIGHT * 1.2)
        .x_axis_label(x_label)
        .y_axis_label(if log { "E-W2 (log scale)" } else { "E-W2" })
        .x_axis_formatter(|m, _| short(10f64.powf(m.value)))
        .y_axis_formatter(move |m, _| {
            if log {
                short(10f64.powf(m.value))
            } else {
                short(m.value)
            }
        })
        .legend(Legend::default().position(Corner::RightTop))
        .show(ui, |p| {
            for (k, lane) in data.lanes.iter().enumerate() {
                let pts: Vec<[f64; 2]> = lane
                    .metrics
                    .iter()
                    .filter(|m| {
                        m.energy_evals > 0 && x(m) > 0.0 && m.metrics.energy_w2().is_finite()
                    })
                    .map(|m| [x(m).log10(), tr(m.metrics.energy_w2())])
                    .collect();
                let c = lane_color(k);
                p.line(
                    Line::new(lane.kind.label(), PlotPoints::from(pts.clone()))
                        .color(c)
                        .width(1.5),
                );
                p.points(
                    Points::new(lane.kind.label(), PlotPoints::from(pts))
                        .color(c)
                        .radius(2.0),
                );
            }
        });
}

/// Each lane's latest energies (step lines) over the reference (bars), on shared bins.
pub fn race_energy_histogram(ui: &mut egui::Ui, data: &RunData) {
    let Some(info) = &data.info else { return };
    let all: Vec<f64> = data
        .lanes
        .iter()
        .filter_map(|l| l.samples.as_ref())
        .flat_map(|b| b.energies.iter().copied())
        .collect();
    let Some((_, r)) = shared(&all, |_| 1.0, &info.reference_energies) else {
        ui.label("no samples yet: press play");
        return;
    };
    let w = r.width();
    let bars: Vec<Bar> = r
        .density
        .iter()
        .enumerate()
        .map(|(k, &d)| Bar::new(r.lo + (k as f64 + 0.5) * w, d).width(w))
        .collect();
    readable(Plot::new("race_energy"), false, false)
        .height(PLOT_HEIGHT)
        .x_axis_label("energy E (units of kT)")
        .y_axis_label("density")
        .legend(Legend::default().position(Corner::RightTop))
        .show(ui, |p| {
            if !info.reference_energies.is_empty() {
                p.bar_chart(
                    BarChart::new("reference samples", bars).color(egui::Color32::from_gray(120)),
                );
            }
            for (k, lane) in data.lanes.iter().enumerate() {
                let Some(b) = &lane.samples else { continue };
                let e: Vec<f64> = b
                    .energies
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .collect();
                let h =
                    Histogram::new(&e, r.lo, r.lo + w * r.density.len() as f64, r.density.len());
                let mut steps = Vec::with_capacity(2 * h.density.len());
                for (j, &d) in h.density.iter().enumerate() {
                    steps.push([h.lo + j as f64 * w, d]);
                    steps.push([h.lo + (j + 1) as f64 * w, d]);
                }
                p.line(
                    Line::new(lane.kind.label(), PlotPoints::from(steps))
                        .color(lane_color(k))
                        .width(2.0),
                );
            }
        });
}

/// The branches of a fork: each one's smoothed loss against gradient steps, the fork marked.
pub fn fork_loss_plot(ui: &mut egui::Ui, data: &RunData, settings: &PlotSettings) {
    let Some(fork) = data.info.as_ref().and_then(|i| i.fork.clone()) else {
        return;
    };
    let log = settings.log_loss;
    let tr = move |v: f64| if log { v.max(1e-12).log10() } else { v };
    readable(Plot::new("fork_loss"), false, log)
        .height(PLOT_HEIGHT)
        .x_axis_label("gradient step")
        .y_axis_label(if log {
            "smoothed loss (log₁₀)"
        } else {
            "smoothed loss"
        })
        .y_axis_formatter(move |m, _| {
            if log {
                short(10f64.powf(m.value))
            } else {
                short(m.value)
            }
        })
        .legend(Legend::default().position(Corner::RightTop))
        .show(ui, |p| {
            for (k, lane) in data.lanes.iter().enumerate().rev() {
                let pts: Vec<[f64; 2]> = loss_line(&ema(&lane.losses, settings.ema), tr);
                p.line(
                    Line::new(branch(k), PlotPoints::from(pts))
                        .color(lane_color(k))
                        .width(if k == 0 { 2.5 } else { 1.5 }),
                );
            }
            p.vline(VLine::new("fork", fork.step as f64).color(egui::Color32::from_gray(150)));
        });
}

/// The branches' E-W2 against gradient steps, the fork marked.
pub fn fork_metrics_plot(ui: &mut egui::Ui, data: &RunData, settings: &PlotSettings) {
    let Some(fork) = data.info.as_ref().and_then(|i| i.fork.clone()) else {
        return;
    };
    let log = settings.log_metrics;
    let tr = move |v: f64| if log { v.max(1e-6).log10() } else { v };
    readable(Plot::new("fork_metrics"), false, log)
        .height(PLOT_HEIGHT)
        .x_axis_label("gradient step")
        .y_axis_label(if log { "E-W2 (log scale)" } else { "E-W2" })
        .y_axis_formatter(move |m, _| {
            if log {
                short(10f64.powf(m.value))
            } else {
                short(m.value)
            }
        })
        .legend(Legend::default().position(Corner::RightTop))
        .show(ui, |p| {
            for (k, lane) in data.lanes.iter().enumerate().rev() {
                let pts: Vec<[f64; 2]> = lane
                    .metrics
                    .iter()
                    .filter(|m| m.metrics.energy_w2().is_finite())
                    .map(|m| [m.step as f64, tr(m.metrics.energy_w2())])
                    .collect();
                p.line(
                    Line::new(branch(k), PlotPoints::from(pts.clone()))
                        .color(lane_color(k))
                        .width(1.5),
                );
                p.points(
                    Points::new(branch(k), PlotPoints::from(pts))
                        .color(lane_color(k))
                        .radius(2.0),
                );
            }
            p.vline(VLine::new("fork", fork.step as f64).color(egui::Color32::from_gray(150)));
        });
}

fn branch(k: usize) -> &'static str {
    ["branch A", "branch B", "branch C", "branch D"][k.min(3)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_a_constant_size_and_keeps_spikes() {
        let short: Vec<[f64; 2]> = (0..100).map(|i| [i as f64, 1.0]).collect();
        assert_eq!(envelope(&short, 64), short);
        for n in [129, 1000, 4097, 20_000] {
            let mut s: Vec<[f64; 2]> = (0..n).map(|i| [i as f64, (i as f64 * 0.1).sin()]).collect();
            s[n / 3][1] = 50.0;
            s[2 * n / 3][1] = -50.0;
            let e = envelope(&s, 64);
            assert_eq!(e.len(), 128, "n = {n}");
            assert!(e.windows(2).all(|w| w[0][0] <= w[1][0]), "x stays in order");
            assert!(
                e.contains(&s[n / 3]) && e.contains(&s[2 * n / 3]),
                "both spikes survive"
            );
            let bucket = (n / 64 + 1) as f64;
            assert!(
                e[0][0] < bucket && e[127][0] >= n as f64 - bucket,
                "the whole run is covered"
            );
        }
    }
}
