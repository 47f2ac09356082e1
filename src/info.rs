//! `info SCENE`: what a scene will run, in words — the system, the sampler kind, every
//! hyperparameter of the kind with its value, range and whether it applies live, and the metrics
//! the run will report. Read from the registry and the rows, so a new kind is described without
//! an edit here.

use std::fmt::Write;

use crate::scene::Scene;

/// The description `info` prints.
pub fn describe(scene: &Scene) -> String {
    let energy = scene.energy();
    let layout = energy.layout();
    let kind = scene.sampler.kind;
    let mut out = String::new();
    let _ = writeln!(out, "scene     {}", scene.name);
    if !scene.description.is_empty() {
        let _ = writeln!(out, "          {}", scene.description);
    }
    let family = if energy.molecule().is_some() {
        format!("torsions: {} angles in radians", layout.dim())
    } else if layout.particles > 1 {
        format!("particles: {} in {}-D ({} coordinates{})", layout.particles, layout.spatial_dim, layout.dim(), if layout.com_free { ", centre of mass removed" } else { "" })
    } else {
        format!("plane: {} coordinates", layout.dim())
    };
    let _ = writeln!(out, "system    {} ({family})", energy.name());
    let _ = writeln!(out, "kind      {} ({}): {}", kind.label(), kind.name(), kind.info().summary);
    if kind.learns() {
        let n = &scene.network;
        let _ = writeln!(out, "network   {:?}, {} layers × {} wide, output {:?}", n.kind, n.layers, n.hidden, n.output);
    }
    let _ = writeln!(out, "seed      {}", scene.sampler.seed);
    let _ = writeln!(out, "\nhyperparameters (live: applies while it runs; reset: restarts the run)");
    let rows = kind.rows();
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    for r in &rows {
        let _ = writeln!(
            out,
            "  {:<width$}  {:>10}  {:<5}  allowed {:<14}  {}",
            r.key,
            r.format((r.get)(&scene.sampler)),
            if r.live { "live" } else { "reset" },
            r.describe_bound(),
            r.help
        );
    }
    let _ = writeln!(out, "\nmetrics (against the reference samples, every {} iterations on {} samples)", scene.schedule.eval_every, scene.schedule.eval_samples);
    for (name, what) in metric_names(scene) {
        let _ = writeln!(out, "  {name:<10} {what}");
    }
    out
}

/// The metrics a run of `scene` reports, as the metrics log names them, with what each measures
/// for this system.
pub fn metric_names(scene: &Scene) -> Vec<(&'static str, &'static str)> {
    let energy = scene.energy();
    let layout = energy.layout();
    let mut m = vec![("energy_w2", "W2 distance between the energy histograms of samples and reference")];
    if energy.molecule().is_some() {
        m.push(("x_w2", "torus W2 of the (φ, ψ) angles (wrapped distances)"));
        m.push(("dist_tv", "total variation between the Ramachandran histograms"));
    } else if layout.particles > 1 {
        m.push(("x_w2", "W2 of the coordinates (centre of mass removed)"));
        if layout.particles <= 20 {
            m.push(("eq_w2", "W2 after the best permutation and rotation of each pair"));
        }
        m.push(("dist_tv", "total variation between the interatomic distance histograms"));
    } else {
        m.push(("x_w2", "W2 of the coordinates"));
    }
    m.push(("ess", "normalised effective sample size of the importance weights (empty where the kind defines none)"));
    m
}
