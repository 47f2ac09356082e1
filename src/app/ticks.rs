//! Grid marks that leave at least three labelled ticks on every axis of the small plots.
//!
//! egui_plot's default spacer puts grid lines at powers of ten and labels only those far enough
//! apart; on a plot 100 points high that is often a single label ("0" alone, or "1.0e10" alone),
//! and nobody can read a value off it. Here the labelled step is the densest "nice" step
//! (1, 2, 2.5 or 5 × 10ᵏ) whose labels stay `gap` points apart, with unlabelled minor lines
//! between; log axes (plot values are log₁₀ of the data) get decades, or 1-2-5 within decades,
//! or plain steps of the data, whichever gives three labels.

use bevy_egui::egui::Rangef;
use egui_plot::{AxisHints, GridInput, GridMark, Plot};

/// Least distance between labelled x ticks, in points (labels such as "1.0e4" are ~40 wide).
pub const X_LABEL_GAP: f64 = 46.0;
/// Least distance between labelled y ticks, in points (one line of text).
pub const Y_LABEL_GAP: f64 = 17.0;

/// egui_plot passes `base_step_size` as plot units per `grid_spacing.min`, 8 points by default.
const GRID_MIN_POINTS: f64 = 8.0;

/// Marks are labelled when their step is more than this fraction of the gap apart in points
/// (egui_plot fades labels in between the two ends of the range).
fn label_range(gap: f64) -> Rangef {
    Rangef::new((0.6 * gap) as f32, (0.9 * gap) as f32)
}

/// Readable axes on a plot: call first, before the axis labels and formatters.
pub fn readable<'a>(plot: Plot<'a>, x_log: bool, y_log: bool) -> Plot<'a> {
    plot.custom_x_axes(vec![
        AxisHints::new_x()
            .label_spacing(label_range(X_LABEL_GAP))
            .formatter(|m, _| tick_label(m.value, m.step_size)),
    ])
    .custom_y_axes(vec![
        AxisHints::new_y()
            .label_spacing(label_range(Y_LABEL_GAP))
            .formatter(|m, _| tick_label(m.value, m.step_size)),
    ])
    .x_grid_spacer(move |i| marks_for(&i, x_log, X_LABEL_GAP))
    .y_grid_spacer(move |i| marks_for(&i, y_log, Y_LABEL_GAP))
}

/// A tick label with as many decimals as its step needs (0.0025 → 4, where egui_plot's default
/// rounds to 3 and prints 0.003), in scientific notation beyond ±10⁵.
pub fn tick_label(value: f64, step: f64) -> String {
    if value.abs() >= 1e5 {
        return format!("{value:.1e}");
    }
    let decimals = (0..10).find(|&d| {
        let scaled = step * 10f64.powi(d);
        (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
    });
    let v = if value.abs() < step * 1e-9 {
        0.0
    } else {
        value
    };
    format!("{:.*}", decimals.unwrap_or(3) as usize, v)
}

fn marks_for(input: &GridInput, log: bool, gap: f64) -> Vec<GridMark> {
    let per_point = input.base_step_size / GRID_MIN_POINTS;
    if log {
        log_marks(input.bounds, per_point, gap)
    } else {
        linear_marks(input.bounds, per_point, gap)
    }
}

/// The smallest of 1, 2, 2.5, 5 × 10ᵏ that is ≥ `x` (> 0), with its number of minor divisions.
pub fn nice_at_least(x: f64) -> (f64, f64) {
    let p = 10f64.powf(x.log10().floor());
    for (m, minor) in [(1.0, 5.0), (2.0, 4.0), (2.5, 5.0), (5.0, 5.0), (10.0, 5.0)] {
        if m * p >= x * (1.0 - 1e-12) {
            return (m * p, minor);
        }
    }
    (10.0 * p, 5.0)
}

/// Marks on a linear axis showing `bounds`, `per_point` plot units per point: labelled ones
/// (their `step_size` the labelled step, at least `gap` points) and minor ones between.
pub fn linear_marks(bounds: (f64, f64), per_point: f64, gap: f64) -> Vec<GridMark> {
    let (lo, hi) = bounds;
    if !(per_point > 0.0 && hi > lo && lo.is_finite() && hi.is_finite()) {
        return Vec::new();
    }
    let (major, divisions) = nice_at_least(gap * per_point);
    let minor = major / divisions;
    let first = (lo / minor).ceil() as i64;
    let last = (hi / minor).floor() as i64;
    if last - first > 10_000 {
        return Vec::new();
    }
    (first..=last)
        .map(|k| {
            let value = k as f64 * minor;
            let on_major = (k as f64 / divisions).fract().abs() < 1e-9
                || (1.0 - (k as f64 / divisions).fract().abs()) < 1e-9;
            GridMark {
                value,
                step_size: if on_major { major } else { minor },
            }
        })
        .collect()
}

/// Marks on a log₁₀ axis (plot values are log₁₀ of the data).
pub fn log_marks(bounds: (f64, f64), per_point: f64, gap: f64) -> Vec<GridMark> {
    let (lo, hi) = bounds;
    if !(per_point > 0.0 && hi > lo && lo.is_finite() && hi.is_finite()) {
        return Vec::new();
    }
    // Whole decades (every k-th), when three or more fit; unlabelled decades between.
    let k = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        .into_iter()
        .find(|&k| k >= gap * per_point)
        .unwrap_or(100.0);
    if (hi - lo) / k >= 3.0 {
        let mut marks: Vec<GridMark> = Vec::new();
        for d in lo.ceil() as i64..=hi.floor() as i64 {
            let v = d as f64;
            let labelled = (v / k).fract().abs() < 1e-9;
            marks.push(GridMark {
                value: v,
                step_size: if labelled { k } else { k / 5.0 },
            });
        }
        return marks;
    }
    // 1, 2 and 5 in every decade.
    let (l2, l5) = (2f64.log10(), 5f64.log10());
    if l2 / per_point >= gap {
        let marks: Vec<GridMark> = (lo.floor() as i64..=hi.ceil() as i64)
            .flat_map(|d| [d as f64, d as f64 + l2, d as f64 + l5])
            .filter(|v| (lo..=hi).contains(v))
            .map(|value| GridMark {
                value,
                step_size: l2,
            })
            .collect();
        if marks.len() >= 3 {
            return marks;
        }
    }
    // Less than about a decade: steps of the data itself. Candidates are multiples of a nice
    // step; going up from the bottom, one is labelled when it is `gap` points above the last
    // labelled one (the log crowds them towards the top). The finest step giving three wins.
    let (vlo, vhi) = (10f64.powf(lo), 10f64.powf(hi));
    let mut step = nice_at_least(gap * per_point * vlo * std::f64::consts::LN_10 / 4.0).0;
    let mut best = Vec::new();
    for _ in 0..12 {
        let (first, last) = ((vlo / step).ceil() as i64, (vhi / step).floor() as i64);
        if last - first > 2_000 {
            step = nice_at_least(step * 1.01).0;
            continue;
        }
        let mut marks = Vec::new();
        let mut last_label = f64::NEG_INFINITY;
        let mut labels = 0;
        for k in (first..=last).filter(|&k| k > 0) {
            let value = (k as f64 * step).log10();
            let labelled = (value - last_label) / per_point >= gap;
            if labelled {
                last_label = value;
                labels += 1;
            }
            // Labelled marks carry a step that egui_plot labels, the others one it never does.
            marks.push(GridMark {
                value,
                step_size: if labelled {
                    gap * per_point
                } else {
                    0.5 * gap * per_point
                },
            });
        }
        if labels >= 3 {
            return marks;
        }
        if labels > 0 && best.is_empty() {
            best = marks;
        }
        step = nice_at_least(step * 1.01).0;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The marks egui_plot labels: step at least the label range's upper end apart in points.
    fn labelled(marks: &[GridMark], per_point: f64, gap: f64) -> Vec<f64> {
        marks
            .iter()
            .filter(|m| m.step_size / per_point >= label_range(gap).max as f64)
            .map(|m| m.value)
            .collect()
    }

    /// Labelled marks are ≥ 3, inside the bounds, and at least `gap` points apart.
    fn check(marks: &[GridMark], bounds: (f64, f64), points: f64, gap: f64, what: &str) {
        let per_point = (bounds.1 - bounds.0) / points;
        let l = labelled(marks, per_point, gap);
        assert!(
            l.len() >= 3,
            "{what}: {bounds:?} over {points} points: labelled {l:?}"
        );
        assert!(
            l.iter().all(|v| (bounds.0..=bounds.1).contains(v)),
            "{what}: {l:?}"
        );
        for w in l.windows(2) {
            assert!(
                (w[1] - w[0]) / per_point >= gap * 0.999,
                "{what}: {bounds:?}: {l:?} closer than {gap} points"
            );
        }
        // Nothing between labelled marks is labelled too (minor lines stay unlabelled).
        let faint = marks.iter().filter(|m| {
            let px = m.step_size / per_point;
            px > label_range(gap).min as f64 && px < label_range(gap).max as f64
        });
        assert_eq!(faint.count(), 0, "{what}: half-faded labels");
    }

    #[test]
    fn linear_axes_get_three_readable_labels() {
        // The cases of the plots as they are: a 0–1.5 energy axis, a 100-point-high loss axis,
        // negative energies, a 330-point-wide step axis, tiny and huge ranges.
        for (bounds, points, gap) in [
            ((0.0, 1.5), 330.0, X_LABEL_GAP),
            ((-45.0, -38.0), 330.0, X_LABEL_GAP),
            ((0.0, 3100.0), 330.0, X_LABEL_GAP),
            ((9.2, 9.6), 100.0, Y_LABEL_GAP),
            ((0.0, 1.2), 100.0, Y_LABEL_GAP),
            ((-3e-5, 7e-5), 90.0, Y_LABEL_GAP),
            ((0.0, 2.3e10), 100.0, Y_LABEL_GAP),
            ((17.0, 17.0 + 1e-3), 60.0, Y_LABEL_GAP),
        ] {
            let per_point = (bounds.1 - bounds.0) / points;
            check(
                &linear_marks(bounds, per_point, gap),
                bounds,
                points,
                gap,
                "linear",
            );
        }
    }

    #[test]
    fn log_axes_get_three_readable_labels() {
        // log₁₀ of: 1e-6 … 1e10 (a blow-up), 1 … 30, 8 … 12 (a loss that barely moves), 0.5 … 2.
        for (bounds, points) in [
            ((-6.0, 10.0), 100.0),
            ((0.0, 1.48), 100.0),
            ((0.9, 1.08), 100.0),
            ((-0.3, 0.3), 100.0),
            ((2.0, 9.0), 330.0),
        ] {
            let per_point = (bounds.1 - bounds.0) / points;
            let gap = if points > 200.0 {
                X_LABEL_GAP
            } else {
                Y_LABEL_GAP
            };
            check(
                &log_marks(bounds, per_point, gap),
                bounds,
                points,
                gap,
                "log",
            );
        }
    }

    #[test]
    fn tick_labels_have_the_decimals_of_their_step() {
        assert_eq!(tick_label(0.0025, 0.0025), "0.0025");
        assert_eq!(tick_label(0.0075, 0.0025), "0.0075");
        assert_eq!(tick_label(-40.0, 20.0), "-40");
        assert_eq!(tick_label(1.5, 0.5), "1.5");
        assert_eq!(tick_label(2.5e10, 5e9), "2.5e10");
        // Rounding noise at zero reads "0", not "-0.0000".
        assert_eq!(tick_label(-1e-17, 0.25), "0.00");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_at_least(0.13).0, 0.2);
        assert_eq!(nice_at_least(0.2).0, 0.2);
        assert_eq!(nice_at_least(2.1).0, 2.5);
        assert_eq!(nice_at_least(3.0).0, 5.0);
        assert_eq!(nice_at_least(7.0).0, 10.0);
    }
}
