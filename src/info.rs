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
        format!(
            "particles: {} in {}-D ({} coordinates{})",
            layout.particles,
            layout.spatial_dim,
            layout.dim(),
            if layout.com_free {
                ", centre of mass removed"
            } else {
                ""
            }
        )
    } else {
        format!("plane: {} coordinates", layout.dim())
    };
    let _ = writeln!(out, "system    {} ({family})", energy.name());
    if let crate::scene::System::Formula(f) = &scene.system {
        let _ = writeln!(
            out,
            "          E({}) = {}   at temperature {}, over {}",
            f.variables.join(", "),
            f.energy,
            f.temperature,
            f.variables
                .iter()
                .zip(f.bounds_or_default())
                .map(|(v, [a, b])| format!("{v} in [{a}, {b}]"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(m) = energy.molecule() {
        let basins: Vec<&str> = scene.basins.iter().map(|b| b.name.as_str()).collect();
        let _ = writeln!(
            out,
            "          torsions {}; basins {}",
            m.torsion_names().join(", "),
            if basins.is_empty() { "none named".to_string() } else { basins.join(", ") }
        );
    }
    let _ = writeln!(
        out,
        "kind      {} ({}): {}",
        kind.label(),
        kind.name(),
        kind.info().summary
    );
    if kind.learns() {
        let n = &scene.network;
        let _ = writeln!(
            out,
            "network   {:?}, {} layers × {} wide, output {:?}",
            n.kind, n.layers, n.hidden, n.output
        );
    }
    let _ = writeln!(out, "seed      {}", scene.sampler.seed);
    let _ = writeln!(
        out,
        "\nhyperparameters (live: applies while it runs; reset: restarts the run)"
    );
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
    let family = crate::metrics::Family::of(scene.energy().as_ref());
    let _ = writeln!(
        out,
        "\nmetrics of the {} family (against the reference samples, every {} iterations on {} samples)",
        family.name(),
        scene.schedule.eval_every,
        scene.schedule.eval_samples
    );
    for m in family.metrics() {
        let _ = writeln!(out, "  {:<10} {:<10} {}", m.key, m.label, m.help);
    }
    let _ = writeln!(
        out,
        "  {:<10} {:<10} normalised effective sample size of the importance weights (empty where the kind defines none)",
        "ess", "ESS"
    );
    out
}
