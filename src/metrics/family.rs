//! Which metrics a system reports. Each family — particles, torsions, plane — names its own, and
//! a [`MetricSet`] holds values under those names only, so that no value is stored, written or
//! shown under another metric's name (a molecule's torus-W2 is `torus_w2`, never `x_w2`). The
//! driver, `eval`, `compare`, `train`'s metrics.csv and the app's plots all read them from here.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// A named metric: its key in files (CSV columns, JSON), its label on screen, and what it means.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub help: &'static str,
}

pub const ENERGY_W2: Metric = Metric {
    key: "energy_w2",
    label: "E-W2",
    help: "Wasserstein-2 between the energy distributions of samples and reference (energy units; lower is better)",
};
pub const X_W2: Metric = Metric {
    key: "x_w2",
    label: "x-W2",
    help: "W2 on flattened coordinates (centre of mass removed for particles), no alignment",
};
pub const EQ_W2: Metric = Metric {
    key: "eq_w2",
    label: "eq-W2",
    help: "W2 with cost after the best permutation and rotation of each pair (the Adjoint Sampling table's W2); its n² alignments make it costly, so live batches skip it",
};
pub const DIST_TV: Metric = Metric {
    key: "dist_tv",
    label: "dist-TV",
    help: "Total variation between pooled interatomic-distance histograms, 0 to 1",
};
pub const MODES: Metric = Metric {
    key: "modes",
    label: "modes",
    help: "Modes covered: how many of a mixture's modes (GMM-40: 40) hold at least one sample within 3 standard deviations of their centre; higher is better, empty for other systems",
};
pub const TORUS_W2: Metric = Metric {
    key: "torus_w2",
    label: "torus-W2",
    help: "W2 on the torus of the torsions (φ, ψ), or the one torsion, in radians",
};
pub const RAMA_TV: Metric = Metric {
    key: "rama_tv",
    label: "Rama-TV",
    help: "Total variation between the 64 × 64 Ramachandran (φ, ψ) histograms, 0 to 1",
};
pub const RAMA_KL: Metric = Metric {
    key: "rama_kl",
    label: "Rama-KL",
    help: "KL(reference ‖ samples) of the 64 × 64 Ramachandran histograms (nats; empty bins floored)",
};
pub const TORSION_TV: Metric = Metric {
    key: "torsion_tv",
    label: "torsion-TV",
    help: "Total variation between the 64-bin histograms of the one torsion, 0 to 1",
};

/// The most metrics a family names.
pub const MAX_METRICS: usize = 4;

/// A family of systems, by what their samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Family {
    /// Clusters of particles (DW-4, LJ-13, LJ-55): symmetric under permutation and rotation.
    #[default]
    Particles,
    /// A point in a plane, or in a few dimensions (the 2-D landscapes, formulas).
    Plane,
    /// A point in a plane drawn from a mixture of separated modes (GMM-40): the plane's metrics
    /// and the modes it covers.
    Mixture,
    /// A molecule's torsions with φ and ψ (alanine dipeptide): angles on a torus.
    Ramachandran,
    /// A molecule with one torsion (butane).
    OneTorsion,
}

impl Family {
    /// The family of a system.
    pub fn of(energy: &dyn crate::energy::Energy) -> Family {
        match energy.molecule() {
            Some(m)
                if crate::metrics::torsions::ramachandran_columns(&m.torsion_names()).is_some() =>
            {
                Family::Ramachandran
            }
            Some(_) => Family::OneTorsion,
            None if energy.layout().com_free => Family::Particles,
            None if energy.modes_covered(&[]).is_some() => Family::Mixture,
            None => Family::Plane,
        }
    }

    /// Its metrics, E-W2 first (every family has it: it ranks races).
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Family::Particles => &[ENERGY_W2, X_W2, EQ_W2, DIST_TV],
            Family::Plane => &[ENERGY_W2, X_W2],
            Family::Mixture => &[ENERGY_W2, X_W2, MODES],
            Family::Ramachandran => &[ENERGY_W2, TORUS_W2, RAMA_TV, RAMA_KL],
            Family::OneTorsion => &[ENERGY_W2, TORUS_W2, TORSION_TV],
        }
    }

    /// Their keys, as CSV columns.
    pub fn keys(self) -> Vec<&'static str> {
        self.metrics().iter().map(|m| m.key).collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Particles => "particles",
            Family::Plane => "plane",
            Family::Mixture => "mixture in the plane",
            Family::Ramachandran => "torsions (φ, ψ)",
            Family::OneTorsion => "torsions (one)",
        }
    }
}

/// The help line of a metric key of any family (for tables whose columns are keys).
pub fn help_of(key: &str) -> Option<&'static str> {
    [
        ENERGY_W2, X_W2, EQ_W2, DIST_TV, MODES, TORUS_W2, RAMA_TV, RAMA_KL, TORSION_TV,
    ]
    .iter()
    .find(|m| m.key == key)
    .map(|m| m.help)
}

/// The values of one judgement, under its family's names; a metric left out (eq-W2 between
/// evaluation points) is `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSet {
    pub family: Family,
    values: [Option<f64>; MAX_METRICS],
}

impl MetricSet {
    /// A set of `family` from (key, value) pairs.
    ///
    /// # Panics
    /// On a key the family does not name: that would store a value under another's name.
    pub fn new(family: Family, values: &[(&Metric, Option<f64>)]) -> Self {
        let mut out = Self {
            family,
            values: [None; MAX_METRICS],
        };
        for (m, v) in values {
            let i = family
                .metrics()
                .iter()
                .position(|f| f.key == m.key)
                .unwrap_or_else(|| {
                    panic!("{} is not a metric of the {} family", m.key, family.name())
                });
            out.values[i] = *v;
        }
        out
    }

    /// The value of `key`, if the family names it and it was computed.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.family
            .metrics()
            .iter()
            .position(|m| m.key == key)
            .and_then(|i| self.values[i])
    }

    /// E-W2, which every family reports.
    pub fn energy_w2(&self) -> f64 {
        self.values[0].unwrap_or(f64::NAN)
    }

    /// (metric, value) in the family's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Metric, Option<f64>)> + '_ {
        self.family.metrics().iter().zip(self.values)
    }

    /// One line for a terminal: "E-W2 1.234  x-W2 0.567  eq-W2 –  dist-TV 0.0891".
    pub fn line(&self) -> String {
        self.iter()
            .map(|(m, v)| {
                format!(
                    "{} {}",
                    m.label,
                    v.map_or("–".to_string(), |v| format!("{v:.4}"))
                )
            })
            .collect::<Vec<_>>()
            .join("  ")
    }

    /// The values as CSV cells, in the family's order (empty where not computed).
    pub fn cells(&self) -> Vec<String> {
        self.iter()
            .map(|(_, v)| v.map_or(String::new(), |v| format!("{v}")))
            .collect()
    }
}

/// As a map from key to value (null where not computed): `eval --json`.
impl Serialize for MetricSet {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.family.metrics().len()))?;
        for (m, v) in self.iter() {
            map.serialize_entry(m.key, &v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_live_under_their_own_names_only() {
        let m = MetricSet::new(
            Family::Ramachandran,
            &[
                (&ENERGY_W2, Some(1.0)),
                (&TORUS_W2, Some(0.5)),
                (&RAMA_TV, Some(0.1)),
            ],
        );
        assert_eq!(
            (
                m.energy_w2(),
                m.get("torus_w2"),
                m.get("x_w2"),
                m.get("rama_kl")
            ),
            (1.0, Some(0.5), None, None)
        );
        assert_eq!(m.cells(), ["1", "0.5", "0.1", ""]);
        assert_eq!(
            m.line(),
            "E-W2 1.0000  torus-W2 0.5000  Rama-TV 0.1000  Rama-KL –"
        );
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"energy_w2":1.0,"torus_w2":0.5,"rama_tv":0.1,"rama_kl":null}"#
        );
        // Every family starts with E-W2 and has distinct keys within MAX_METRICS.
        for f in [
            Family::Particles,
            Family::Plane,
            Family::Mixture,
            Family::Ramachandran,
            Family::OneTorsion,
        ] {
            let k = f.keys();
            assert!(k[0] == "energy_w2" && k.len() <= MAX_METRICS, "{f:?}");
            assert_eq!(
                k.iter().collect::<std::collections::HashSet<_>>().len(),
                k.len(),
                "{f:?}"
            );
            assert!(k.iter().all(|k| help_of(k).is_some()), "{f:?}");
        }
    }

    #[test]
    #[should_panic(expected = "x_w2 is not a metric of the torsions")]
    fn a_value_under_another_family_s_name_is_refused() {
        MetricSet::new(Family::Ramachandran, &[(&X_W2, Some(1.0))]);
    }
}
