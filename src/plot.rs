//! compare.png: sample quality (E-W2) against energy evaluations (log x) and against training
//! seconds, one line per sampler kind. Drawn with plotters' bitmap backend and the bundled
//! DejaVu Sans (assets/fonts), so no system font library is needed.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
/// A tick label that fits the label area: 0.25, 3, 150, 2e+05.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e4 {
        format!("{v:.0e}")
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(214, 69, 65),
    RGBColor(52, 120, 198),
    RGBColor(60, 160, 80),
    RGBColor(150, 90, 190),
    RGBColor(230, 150, 40),
    RGBColor(90, 90, 90),
];

/// `series`: (label, [(energy evaluations, training seconds, E-W2)]).
pub fn compare_png(
    path: &Path,
    title: &str,
    cost_label: &str,
    series: &[(String, Vec<(f64, f64, f64)>)],
) -> anyhow::Result<()> {
    // Registering twice is harmless; the error type says only that the bytes are not a font.
    register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the bundled font is not readable"))?;
    let finite = |v: f64| v.is_finite() && v > 0.0;
    let pts: Vec<&(f64, f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .filter(|p| finite(p.0) && finite(p.2))
        .collect();
    if pts.is_empty() {
        return Err(anyhow!("no finite quality measurement to plot"));
    }
    let (mut xlo, mut xhi) = (f64::INFINITY, 0.0f64);
    let (mut ylo, mut yhi) = (f64::INFINITY, 0.0f64);
    let mut shi = 0.0f64;
    for p in &pts {
        xlo = xlo.min(p.0);
        xhi = xhi.max(p.0);
        ylo = ylo.min(p.2);
        yhi = yhi.max(p.2);
        shi = shi.max(p.1);
    }
    let (xlo, xhi) = (xlo / 1.5, xhi * 1.5);
    // Early samples of an untrained sampler can be wildly off (E-W2 10¹⁵ with overlapping
    // atoms): the axis stops at 10⁴ and such points sit on its top edge.
    let yhi = yhi.min(1e4);
    let (ylo, yhi) = (ylo / 1.3, yhi * 1.3);
    let clamp = |v: f64| v.min(yhi);
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("{title}: sample quality against cost (lower is better)"),
        ("sans-serif", 24),
    )?;
    let (left, right) = root.split_horizontally(700);
    let mut a = ChartBuilder::on(&left)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
    a.configure_mesh()
        .x_desc("energy evaluations (log scale)")
        .y_desc("E-W2 (log scale)")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 15))
        .draw()?;
    let mut b = ChartBuilder::on(&right)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..shi.max(1.0) * 1.05, (ylo..yhi).log_scale())?;
    b.configure_mesh()
        .x_desc(cost_label)
        .y_desc("E-W2 (log scale)")
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 15))
        .draw()?;
    for (k, (label, p)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let by_evals: Vec<(f64, f64)> = p
            .iter()
            .filter(|p| finite(p.0) && finite(p.2))
            .map(|p| (p.0, clamp(p.2)))
            .collect();
        let by_time: Vec<(f64, f64)> = p
            .iter()
            .filter(|p| p.1.is_finite() && finite(p.2))
            .map(|p| (p.1, clamp(p.2)))
            .collect();
        a.draw_series(LineSeries::new(by_evals.clone(), color.stroke_width(2)))?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        a.draw_series(by_evals.iter().map(|&c| Circle::new(c, 3, color.filled())))?;
        b.draw_series(LineSeries::new(by_time.clone(), color.stroke_width(2)))?;
        b.draw_series(by_time.iter().map(|&c| Circle::new(c, 3, color.filled())))?;
    }
    a.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}
