//! Scenes: RON files that say which system to sample and with which settings.
//!
//! Every field has a default, so a scene file states only what differs; unknown fields are
//! errors (a typo never passes silently). Errors name the file, line and column.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::energy::{DoubleWell, DoubleWell2d, Energy, Gmm40, LennardJones, MuellerBrown};
use crate::error::{Error, Result};
use crate::molecule::{AmberMolecule, Butane, LoadError, TorsionSpec};
pub use crate::nn::{NetworkConfig, NetworkKind, NetworkOutput};
pub use crate::sampler::SamplerConfig;
use crate::sampler::SamplerKind;
use crate::sampler::mcmc::McmcConfig;

/// A whole scene: the system and everything needed to train, evaluate and show a sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scene {
    /// Display name ("LJ-13"); a scene that gives none is named after its system.
    pub name: String,
    /// One line shown in the scene picker.
    pub description: String,
    /// The physical system, i.e. the energy.
    pub system: System,
    /// Which sampler, and its hyperparameters (each kind's own section read through the
    /// registry).
    #[serde(
        deserialize_with = "crate::sampler::config::read",
        serialize_with = "crate::sampler::config::write"
    )]
    pub sampler: SamplerConfig,
    /// The control network.
    pub network: NetworkConfig,
    /// How often to evaluate, and with how many samples.
    pub schedule: ScheduleConfig,
    /// Reference samples to compare against, and how to make new ones.
    pub reference: ReferenceConfig,
    /// How the app draws the samples.
    pub view: ViewConfig,
    /// Named regions of a molecule's torsion space, labelled on the app's torsion map (none
    /// are assumed: a molecule without them gets an unlabelled map).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub basins: Vec<BasinSpec>,
}

/// A named region of torsion space: a range of degrees for each torsion it constrains (by the
/// torsion's name; a range with low > high wraps through ±180°, so `(120, -120)` is |φ| > 120°).
/// E.g. `(name: "C5", ranges: {"phi": (-180, -110), "psi": (100, -150)})`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasinSpec {
    pub name: String,
    pub ranges: std::collections::BTreeMap<String, (f64, f64)>,
}

impl BasinSpec {
    /// The range of torsion `name`, if the basin constrains it.
    pub fn range(&self, name: &str) -> Option<(f64, f64)> {
        self.ranges.get(name).copied()
    }

    /// The middle of a range in degrees (through ±180° for a wrapping one), where its label goes.
    pub fn middle((lo, hi): (f64, f64)) -> f64 {
        if lo <= hi {
            (lo + hi) / 2.0
        } else {
            let m = (lo + hi + 360.0) / 2.0;
            if m > 180.0 { m - 360.0 } else { m }
        }
    }
}

impl Default for Scene {
    fn default() -> Self {
        Self {
            name: "LJ-13".into(),
            description: "13 Lennard-Jones atoms in a harmonic trap".into(),
            system: System::default(),
            sampler: SamplerConfig::default(),
            network: NetworkConfig::default(),
            schedule: ScheduleConfig::default(),
            reference: ReferenceConfig::default(),
            view: ViewConfig::default(),
            basins: Vec::new(),
        }
    }
}

/// The physical systems (science.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum System {
    /// 2-D mixture of 40 Gaussians.
    Gmm40,
    /// A point in the plane in a tilted double well (teaching: two wells, unequal weights).
    DoubleWell2d,
    /// The Müller–Brown potential divided by `temperature` (in the potential's units; 10–30
    /// shows its three minima and the paths between them).
    MuellerBrown { temperature: f64 },
    /// 4 particles in 2-D with a double-well pair potential.
    DoubleWell4,
    /// A Lennard-Jones cluster of `particles` atoms in 3-D (13 and 55 are the benchmarks).
    LennardJones { particles: usize },
    /// A molecule with an AMBER force field (prmtop + PDB) in torsion space: the sampler draws
    /// the listed torsions at `temperature` kelvin.
    Molecule(MoleculeSystem),
    /// TraPPE united-atom butane: one torsion, at `temperature` kelvin.
    Butane { temperature: f64 },
    /// An energy typed as a formula of 1 to 8 named variables.
    Formula(FormulaSystem),
}

/// A formula system as a scene names it: `Formula((energy: "2*(x^2-1)^2 + y^2", variables:
/// ["x", "y"]))`. [`Scene::load`] parses it, so that a bad formula is reported at its column.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormulaSystem {
    /// The energy U(x) as text: `+ - * / ^`, parentheses, exp log sqrt sin cos tanh abs, pi, e.
    pub energy: String,
    /// The variables' names, in coordinate order.
    pub variables: Vec<String>,
    /// The density is exp(−U/temperature).
    #[serde(default = "one")]
    pub temperature: f64,
    /// The box of the density map and of the exact grid, one (low, high) per variable;
    /// empty means ±3 for each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bounds: Vec<(f64, f64)>,
}

fn one() -> f64 {
    1.0
}

/// Each variable's range when a formula scene gives no bounds.
pub const DEFAULT_FORMULA_BOUND: f64 = 3.0;

impl PartialEq for FormulaSystem {
    fn eq(&self, o: &Self) -> bool {
        (&self.energy, &self.variables, self.temperature, &self.bounds)
            == (&o.energy, &o.variables, o.temperature, &o.bounds)
    }
}

impl FormulaSystem {
    /// The bounds as given, or ±3 per variable.
    pub fn bounds_or_default(&self) -> Vec<[f64; 2]> {
        if self.bounds.is_empty() {
            vec![[-DEFAULT_FORMULA_BOUND, DEFAULT_FORMULA_BOUND]; self.variables.len()]
        } else {
            self.bounds.iter().map(|&(a, b)| [a, b]).collect()
        }
    }

    /// Parses and differentiates the formula: `Err((field, message))` names the field at fault
    /// (`energy` for the text, with its column; `variables`, `temperature` or `bounds`).
    pub fn build(&self) -> std::result::Result<crate::energy::Formula, (&'static str, String)> {
        if !self.bounds.is_empty() && self.bounds.len() != self.variables.len() {
            return Err((
                "bounds",
                format!(
                    "gives {} ranges for {} variables (one (low, high) each, or none for ±{DEFAULT_FORMULA_BOUND})",
                    self.bounds.len(),
                    self.variables.len()
                ),
            ));
        }
        if let Some((k, &(a, b))) = self
            .bounds
            .iter()
            .enumerate()
            .find(|(_, (a, b))| !(a.is_finite() && b.is_finite() && a < b && b - a <= 1e6))
        {
            return Err((
                "bounds",
                format!("[{k}] must be a finite range (low, high) with low < high, at most 1e6 wide (got ({a}, {b}))"),
            ));
        }
        if !(self.temperature.is_finite() && (1e-3..=1e6).contains(&self.temperature)) {
            return Err((
                "temperature",
                format!("must be between 0.001 and 1e6 (got {})", self.temperature),
            ));
        }
        crate::energy::Formula::new(
            &self.energy,
            &self.variables,
            self.temperature,
            Some(self.bounds_or_default()),
        )
        .map_err(|e| {
            // Problems of the names are reported at `variables`, the text's at `energy`.
            if e.message.contains("variable") && !e.message.contains("unknown name") {
                ("variables", e.message)
            } else {
                ("energy", e.to_string())
            }
        })
    }
}

/// A molecule as a scene names it. Paths are relative to the scene file; [`Scene::load`] makes
/// them absolute and loads the molecule, so that a bad file is reported at the scene's field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoleculeSystem {
    /// AMBER topology (prmtop).
    pub topology: String,
    /// Coordinates (PDB), atom for atom as in the topology: bond lengths, angles and all
    /// torsions not listed stay as here.
    pub structure: String,
    /// The free torsions, in coordinate order.
    pub torsions: Vec<TorsionSpec>,
    /// Temperature in kelvin.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(skip)]
    loaded: Option<std::sync::Arc<AmberMolecule>>,
}

fn default_temperature() -> f64 {
    300.0
}

impl PartialEq for MoleculeSystem {
    fn eq(&self, o: &Self) -> bool {
        (
            &self.topology,
            &self.structure,
            &self.torsions,
            self.temperature,
        ) == (&o.topology, &o.structure, &o.torsions, o.temperature)
    }
}

impl MoleculeSystem {
    /// Loads the molecule (paths as they stand: absolute once a scene has been loaded).
    pub fn load(&self) -> std::result::Result<AmberMolecule, LoadError> {
        AmberMolecule::load(
            Path::new(&self.topology),
            Path::new(&self.structure),
            &self.torsions,
            self.temperature,
        )
    }
}

impl Default for System {
    fn default() -> Self {
        System::LennardJones { particles: 13 }
    }
}

impl System {
    /// The energy function of this system.
    pub fn energy(&self) -> Box<dyn Energy> {
        match *self {
            System::Gmm40 => Box::new(Gmm40::new()),
            System::DoubleWell2d => Box::new(DoubleWell2d::default()),
            System::MuellerBrown { temperature } => Box::new(MuellerBrown { temperature }),
            System::DoubleWell4 => Box::new(DoubleWell::dw4()),
            System::LennardJones { particles } => Box::new(LennardJones::new(particles)),
            System::Butane { temperature } => Box::new(Butane::new(temperature)),
            System::Formula(ref f) => Box::new(f.build().unwrap_or_else(|(field, e)| {
                // Scene::parse and the app's formula field check it first.
                panic!("formula system.{field} was not checked: {e}")
            })),
            System::Molecule(ref m) => match &m.loaded {
                Some(loaded) => Box::new(AmberMolecule::clone(loaded)),
                // Only a scene built in code, not loaded from a file, gets here.
                None => Box::new(m.load().unwrap_or_else(|e| {
                    panic!("molecule {} could not be loaded: {e:?}", m.topology)
                })),
            },
        }
    }
    /// Chemical species written to XYZ files (ASE knows "X" as a dummy atom).
    pub fn species(&self) -> &'static str {
        match self {
            System::LennardJones { .. } => "Ar",
            System::Butane { .. } => "C",
            _ => "X",
        }
    }

    /// The temperature in kelvin, for systems that have one (molecules; the others are in
    /// reduced units, T = 1).
    pub fn temperature(&self) -> Option<f64> {
        match self {
            System::Molecule(m) => Some(m.temperature),
            System::Butane { temperature } => Some(*temperature),
            _ => None,
        }
    }

    /// The system as an editable formula: itself, or the built-in 2-D double well typed out (the
    /// same energies to 1e-12), so that a class can change its barrier; `None` for the others.
    pub fn as_formula(&self) -> Option<FormulaSystem> {
        match self {
            System::Formula(f) => Some(f.clone()),
            System::DoubleWell2d => {
                use crate::energy::Landscape;
                let (bx, by) = DoubleWell2d::default().bounds();
                Some(FormulaSystem {
                    energy: "3*(x^2-1)^2 + 0.5*x + y^2".into(),
                    variables: vec!["x".into(), "y".into()],
                    temperature: 1.0,
                    bounds: vec![(bx[0], bx[1]), (by[0], by[1])],
                })
            }
            _ => None,
        }
    }

    /// Whether the system lives in torsion space (a molecule).
    pub fn is_molecule(&self) -> bool {
        matches!(self, System::Molecule(_) | System::Butane { .. })
    }
}

/// When to measure sample quality during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Outer iterations between evaluations against the reference.
    pub eval_every: usize,
    /// Samples drawn for each evaluation (and taken from the reference).
    pub eval_samples: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            eval_every: 10,
            eval_samples: 2000,
        }
    }
}

/// Reference samples: a file to compare against, and MCMC settings to make new ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    /// A .npy of reference samples, relative to the scene file's folder.
    pub file: Option<String>,
    /// Settings of `boltzmann-studio reference`.
    pub mcmc: McmcConfig,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        Self {
            file: None,
            mcmc: McmcConfig::default(),
        }
    }
}

/// How the app shows samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewConfig {
    /// Samples shown side by side: a grid of `grid × grid`.
    pub grid: usize,
    /// Draw a bond between particles closer than this (length units of the system); 0 = none.
    pub bond_cutoff: f64,
    /// Sphere radius of a drawn particle.
    pub particle_radius: f64,
}

impl Default for ViewConfig {
    fn default() -> Self {
        Self {
            grid: 3,
            bond_cutoff: 1.3,
            particle_radius: 0.35,
        }
    }
}

impl Scene {
    /// Reads and validates a scene file.
    pub fn load(path: &Path) -> Result<Scene> {
        let text = crate::limits::read_text(path, crate::limits::TEXT_FILE_BYTES)?;
        Scene::parse(&text, path)
    }

    /// Parses and validates scene text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Scene> {
        let mut scene: Scene =
            ron::Options::default()
                .from_str(text)
                .map_err(|e| Error::Scene {
                    path: path.to_path_buf(),
                    line: e.position.line,
                    col: e.position.col,
                    message: e.code.to_string(),
                })?;
        scene.load_molecule(text, path)?;
        if let System::Formula(f) = &scene.system {
            f.build().map_err(|(field, message)| {
                let (line, col) = locate_field(text, &format!("system.{field}"));
                Error::Scene {
                    path: path.to_path_buf(),
                    line,
                    col,
                    message: format!("system.{field}: {message}"),
                }
            })?;
        }
        // The default name is LJ-13's, the default system's: a DW-4 scene without a name must
        // not be shown as LJ-13.
        let default_name = Scene::default().name;
        if scene.name == default_name
            && scene.system != System::default()
            && !text.contains(&format!("\"{default_name}\""))
        {
            scene.name = scene.system.energy().name();
            scene.description = String::new();
        }
        scene.validate().map_err(|(field, message)| {
            let (line, col) = locate_field(text, &field);
            Error::Scene {
                path: path.to_path_buf(),
                line,
                col,
                message: format!("{field} {message}"),
            }
        })?;
        Ok(scene)
    }

    /// Resolves a molecule's files against the scene's folder (made absolute, so that a run
    /// folder's copy of the scene stands alone) and loads it; errors point at the scene's field
    /// and carry the file's own position.
    fn load_molecule(&mut self, text: &str, path: &Path) -> Result<()> {
        let System::Molecule(m) = &mut self.system else {
            return Ok(());
        };
        let at = |key: &str, message: String| {
            let (line, col) = locate(text, key);
            Error::Scene {
                path: path.to_path_buf(),
                line,
                col,
                message,
            }
        };
        let folder = path.parent().unwrap_or(Path::new("."));
        for file in [&mut m.topology, &mut m.structure] {
            let p = Path::new(file.as_str());
            if p.is_relative() {
                let joined = folder.join(p);
                *file = std::path::absolute(&joined)
                    .unwrap_or(joined)
                    .display()
                    .to_string();
            }
        }
        if !(m.temperature.is_finite() && (1.0..=10_000.0).contains(&m.temperature)) {
            return Err(at(
                "temperature",
                format!(
                    "system.temperature must be between 1 and 10000 K (got {})",
                    m.temperature
                ),
            ));
        }
        if m.torsions.is_empty() {
            return Err(at(
                "torsions",
                "system.torsions must name at least one free torsion".into(),
            ));
        }
        match m.load() {
            Ok(loaded) => {
                m.loaded = Some(std::sync::Arc::new(loaded));
                Ok(())
            }
            Err(LoadError::File(e)) => {
                let key = if e.to_string().starts_with(&m.structure) {
                    "structure"
                } else {
                    "topology"
                };
                Err(at(key, format!("system.{key}: {e}")))
            }
            Err(LoadError::Mismatch(message)) => {
                Err(at("structure", format!("system.structure: {message}")))
            }
            Err(LoadError::Torsion { index, message }) => {
                let (line, col) = locate_nth(text, "atoms", index);
                let name = &m.torsions[index].name;
                Err(Error::Scene {
                    path: path.to_path_buf(),
                    line,
                    col,
                    message: format!("system.torsions[{index}] ({name}): {message}"),
                })
            }
        }
    }

    /// The scene as pretty RON (what `train` writes into its run folder).
    pub fn to_ron(&self) -> String {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .expect("a Scene always serialises")
    }

    /// The scene to run `kind` on this scene's system (read from `path`): this scene if it is of
    /// that kind; else the sibling file `STEM-KIND.ron` when there is one (e.g.
    /// scenes/dw4-mcmc.ron, with that kind's tuned settings); else this scene with `sampler.kind`
    /// switched. Returns the scene's path too (it anchors the reference file).
    pub fn for_kind(&self, path: &Path, kind: SamplerKind) -> Result<(PathBuf, Scene)> {
        if self.sampler.kind == kind {
            return Ok((path.to_path_buf(), self.clone()));
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        // A sibling of the base scene: "dw4-asbs.ron" serves "dw4.ron" and "dw4-mcmc.ron" alike.
        let base = stem
            .rsplit_once('-')
            .filter(|(_, k)| k.parse::<SamplerKind>().is_ok())
            .map_or(stem, |(b, _)| b);
        let sibling = path.with_file_name(format!("{base}-{}.ron", kind.name()));
        let plain = path.with_file_name(format!("{base}.ron"));
        for candidate in [sibling, plain] {
            if candidate.exists() {
                let s = Scene::load(&candidate)?;
                if s.sampler.kind == kind && s.system == self.system {
                    return Ok((candidate, s));
                }
            }
        }
        let mut s = self.clone();
        s.sampler.kind = kind;
        crate::sampler::check_system(kind, s.energy().as_ref())?;
        Ok((path.to_path_buf(), s))
    }

    /// A fresh sampler of the scene's kind for its system.
    pub fn build_sampler(&self) -> Result<Box<dyn crate::sampler::Sampler>> {
        crate::sampler::build(self.energy(), &self.sampler, &self.network)
    }

    /// What to tell the user before training, though the scene is valid: a formula that does
    /// not look normalisable on its bounds.
    pub fn warnings(&self) -> Vec<String> {
        match &self.system {
            System::Formula(f) => f
                .build()
                .ok()
                .and_then(|e| e.check_bounds())
                .map(|w| format!("system.energy: {w}"))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The energy of the scene's system.
    pub fn energy(&self) -> Box<dyn Energy> {
        self.system.energy()
    }

    /// The reference file, resolved against the folder of the scene file at `scene_path`.
    /// Without a file, a reference computed on demand and cached beside the scene
    /// ([`Scene::reference_cache`]) is used when it exists.
    pub fn reference_path(&self, scene_path: &Path) -> Option<PathBuf> {
        let Some(file) = self.reference.file.as_ref() else {
            let cached = self.reference_cache(scene_path);
            return cached.is_file().then_some(cached);
        };
        let p = Path::new(file);
        Some(if p.is_absolute() {
            p.to_path_buf()
        } else {
            scene_path.parent().unwrap_or(Path::new(".")).join(p)
        })
    }

    /// Where a reference computed on demand for this scene's system is cached, beside the scene
    /// file at `scene_path` (named by a hash of the system).
    pub fn reference_cache(&self, scene_path: &Path) -> PathBuf {
        let key = ron::to_string(&self.system).unwrap_or_default();
        crate::reference::cached_path(&key, scene_path)
    }

    /// A copy whose reference file is an absolute path, so that a run folder written with it
    /// stands alone wherever it is moved to.
    pub fn with_absolute_reference(&self, scene_path: &Path) -> Scene {
        let mut out = self.clone();
        if let Some(p) = self.reference_path(scene_path) {
            out.reference.file = Some(std::path::absolute(&p).unwrap_or(p).display().to_string());
        }
        out
    }

    /// Range checks: `Err((field, what is wrong))`.
    fn validate(&self) -> std::result::Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        if let System::LennardJones { particles } = self.system {
            if !(2..=1000).contains(&particles) {
                return err(
                    "system.particles",
                    format!("must be between 2 and 1000 (got {particles})"),
                );
            }
        }
        if let System::Butane { temperature } = self.system {
            if !(temperature.is_finite() && (1.0..=10_000.0).contains(&temperature)) {
                return err(
                    "system.temperature",
                    format!("must be between 1 and 10000 K (got {temperature})"),
                );
            }
        }
        if let System::MuellerBrown { temperature } = self.system {
            if !(temperature.is_finite() && (0.1..=10_000.0).contains(&temperature)) {
                return err(
                    "system.temperature",
                    format!(
                        "must be between 0.1 and 10000 in the potential's units (got {temperature})"
                    ),
                );
            }
        }
        let s = &self.sampler;
        if !(s.sigma_min > 0.0 && s.sigma_min < s.sigma_max && s.sigma_max.is_finite()) {
            return err(
                "sampler.sigma_min",
                format!(
                    "must satisfy 0 < sigma_min < sigma_max (got {} and {})",
                    s.sigma_min, s.sigma_max
                ),
            );
        }
        // Beyond these the schedule's variances under- or overflow in f32 (the SDE's arithmetic).
        if !(1e-6..=1e3).contains(&s.sigma_min) {
            return err(
                "sampler.sigma_min",
                format!("must be between 1e-6 and 1000 (got {})", s.sigma_min),
            );
        }
        if s.sigma_max > 1e3 {
            return err(
                "sampler.sigma_max",
                format!("must be at most 1000 (got {})", s.sigma_max),
            );
        }
        let layout = self.system.energy().layout();
        let (dim, pairs) = (layout.dim(), (layout.particles * layout.particles) as u64);
        let hidden = self.network.hidden.min(crate::limits::MAX_HIDDEN as usize) as u64;
        for (name, v, max, bytes) in [
            // An EGNN layer keeps a message of `hidden` values per particle pair for backprop.
            (
                "network.layers",
                self.network.layers,
                crate::limits::MAX_LAYERS,
                4 * hidden * pairs,
            ),
            (
                "network.hidden",
                self.network.hidden,
                crate::limits::MAX_HIDDEN,
                4 * hidden,
            ),
            (
                "schedule.eval_every",
                self.schedule.eval_every,
                crate::limits::MAX_ITERATION_STEPS,
                0,
            ),
            (
                "schedule.eval_samples",
                self.schedule.eval_samples,
                crate::limits::MAX_EVAL_SAMPLES,
                8 * self.schedule.eval_samples.min(1 << 20) as u64,
            ),
            ("view.grid", self.view.grid, crate::limits::MAX_VIEW_GRID, 0),
        ] {
            if let Err(m) = crate::limits::count_usize(v, max, bytes) {
                return err(name, m);
            }
        }
        // Every kind's rows, whichever kind the scene runs: a race or a switch of kind uses them.
        let mut seen = std::collections::HashSet::new();
        for r in crate::sampler::KINDS.iter().flat_map(|k| (k.rows)()) {
            if seen.insert(r.key) {
                r.check((r.get)(s), dim, s)
                    .map_err(|m| (format!("sampler.{}", r.field), m))?;
            }
        }
        if !(0.0..1.0).contains(&s.ema) {
            return err("sampler.ema", format!("must be in [0, 1) (got {})", s.ema));
        }
        if !(0.25..=8.0).contains(&s.time_warp) {
            return err(
                "sampler.time_warp",
                format!("must be between 0.25 and 8 (got {})", s.time_warp),
            );
        }
        if !(s.scale > 0.0 && s.scale.is_finite()) {
            return err(
                "sampler.scale",
                format!("must be positive (got {})", s.scale),
            );
        }
        if !(self.view.bond_cutoff >= 0.0 && self.view.particle_radius > 0.0) {
            return err(
                "view.bond_cutoff",
                "and view.particle_radius must be non-negative and positive".into(),
            );
        }
        let torus = self.system.is_molecule();
        if torus != (self.network.kind == NetworkKind::TorusMlp) && s.kind.learns() {
            return err(
                "network.kind",
                if torus {
                    "must be TorusMlp for a molecule's torsions (periodic inputs)".into()
                } else {
                    "TorusMlp is for molecules' torsions only".into()
                },
            );
        }
        if torus && s.scale != 1.0 {
            return err(
                "sampler.scale",
                format!(
                    "must be 1 for torsions, which are angles in radians (got {})",
                    s.scale
                ),
            );
        }
        let names = self
            .energy()
            .molecule()
            .map(|m| m.torsion_names())
            .unwrap_or_default();
        for (k, b) in self.basins.iter().enumerate() {
            if names.is_empty() {
                return err("basins", "label a molecule's torsion map; this system has no torsions".into());
            }
            if b.ranges.is_empty() {
                return err(&format!("basins[{k}]"), format!("({}) must give the range of one torsion or more", b.name));
            }
            for (t, &(lo, hi)) in &b.ranges {
                if !names.contains(t) {
                    return err(
                        &format!("basins[{k}]"),
                        format!("({}): no torsion is named '{t}'; the torsions are {}", b.name, names.join(", ")),
                    );
                }
                if !((-180.0..=180.0).contains(&lo) && (-180.0..=180.0).contains(&hi)) {
                    return err(
                        &format!("basins[{k}]"),
                        format!("({}): the range of {t} must lie in [-180, 180] degrees (got ({lo}, {hi}))", b.name),
                    );
                }
            }
        }
        if let Err(e) = crate::nn::select_device(&s.device) {
            return err("sampler.device", e.to_string());
        }
        for (name, section) in s.sections.iter() {
            if let Some(info) = crate::sampler::registry::section_info(name) {
                (info.check)(section, dim).map_err(|(f, m)| (format!("sampler.{name}.{f}"), m))?;
            }
        }
        self.reference
            .mcmc
            .check_ranges(dim)
            .map_err(|(f, m)| (format!("reference.mcmc.{f}"), m))?;
        if let Err(e) = crate::sampler::check_system(s.kind, self.system.energy().as_ref()) {
            return err(
                "sampler.kind",
                e.to_string()
                    .trim_start_matches("sampler.kind ")
                    .to_string(),
            );
        }
        Ok(())
    }
}

/// The `*.ron` files directly in `dir`, sorted (none if it cannot be read): scenes, lessons.
pub fn ron_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    out.sort();
    out
}

/// 1-based (line, column) of the first `key:` in `text`, or (1, 1) if the key is absent
/// (an invalid default is then reported at the top of the file).
fn locate(text: &str, key: &str) -> (usize, usize) {
    locate_nth(text, key, 0)
}

/// 1-based (line, column) of a dotted field ("network.kind"): each key searched after the one
/// before it, so that `kind:` is found inside `network:` and not in `sampler:`. Falls back to the
/// first occurrence of the last key.
fn locate_field(text: &str, field: &str) -> (usize, usize) {
    let keys: Vec<&str> = field
        .split('.')
        .map(|k| k.split('[').next().unwrap_or(k))
        .collect();
    let mut from = 0;
    for key in &keys {
        let pattern = format!("{key}:");
        let found = text[from..]
            .match_indices(&pattern)
            .map(|(i, _)| from + i)
            .find(|&i| {
                i == 0 || {
                    let b = text.as_bytes()[i - 1];
                    !b.is_ascii_alphanumeric() && b != b'_'
                }
            });
        match found {
            Some(i) => from = i,
            None => return locate(text, keys.last().copied().unwrap_or(field)),
        }
    }
    let line = text[..from].matches('\n').count() + 1;
    let col = from - text[..from].rfind('\n').map_or(0, |p| p + 1) + 1;
    (line, col)
}

/// 1-based (line, column) of the `n`-th (0-based) `key:` in `text`, else of the first, else (1, 1).
pub(crate) fn locate_nth(text: &str, key: &str, n: usize) -> (usize, usize) {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(off) = line[from..].find(&format!("{key}:")) {
            let c = from + off;
            let boundary = c == 0
                || !line.as_bytes()[c - 1].is_ascii_alphanumeric()
                    && line.as_bytes()[c - 1] != b'_';
            if boundary {
                found.push((i + 1, c + 1));
            }
            from = c + key.len() + 1;
        }
    }
    found.get(n).or(found.first()).copied().unwrap_or((1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scene> {
        Scene::parse(text, Path::new("test.ron"))
    }

    #[test]
    fn empty_scene_is_all_defaults() {
        assert_eq!(parse("()").unwrap(), Scene::default());
        assert_eq!(parse("Scene()").unwrap(), Scene::default());
        assert_eq!(
            parse("(system: DoubleWell4)").unwrap().name,
            "DW-4",
            "named after its system"
        );
        assert_eq!(
            parse("(name: \"mine\", system: DoubleWell4)").unwrap().name,
            "mine"
        );
    }

    /// The double well typed out for the app's formula field is the built-in one (to 1e-12, the
    /// two evaluating the same operations in another order), over the same box.
    #[test]
    fn the_double_well_as_a_formula_is_the_built_in() {
        let f = System::DoubleWell2d.as_formula().unwrap().build().unwrap();
        let dw = System::DoubleWell2d.energy();
        assert_eq!(f.plane_box(), dw.plane_box());
        for x in [[-1.3, 0.4], [0.0, 0.0], [2.2, -2.9], [0.7, 1.1]] {
            let (a, b) = (f.energy(&x), dw.energy(&x));
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{a} against {b}");
        }
        assert!(System::Gmm40.as_formula().is_none());
    }

    #[test]
    fn formula_scenes_round_trip_and_basins_are_checked() {
        let text = "Scene(system: Formula((energy: \"x^2 + y^2\", variables: [\"x\", \"y\"], temperature: 0.5)), network: (kind: Mlp))";
        let s = parse(text).unwrap();
        assert_eq!(parse(&s.to_ron()).unwrap(), s);
        assert_eq!(s.energy().plane_box(), Some(([-3.0, 3.0], [-3.0, 3.0])));
        let e = parse("Scene(system: DoubleWell2d, network: (kind: Mlp), basins: [(name: \"A\", ranges: {\"phi\": (0.0, 90.0)})])")
            .unwrap_err()
            .to_string();
        assert!(e.contains("basins") && e.contains("no torsions"), "{e}");
        let e = parse(&std::fs::read_to_string("scenes/butane.ron").unwrap().replace("\"phi\": (0.0, 120.0)", "\"chi\": (0.0, 120.0)"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("basins[1]") && e.contains("no torsion is named 'chi'"), "{e}");
    }

    #[test]
    fn round_trips_through_ron() {
        let s = Scene {
            system: System::DoubleWell4,
            ..Default::default()
        };
        assert_eq!(parse(&s.to_ron()).unwrap(), s);
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let e = parse("(\n  name: \"x\",\n  sampler: (sigma_mni: 0.1),\n)")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("test.ron:3:"), "{e}");
        assert!(e.contains("sigma_mni"), "{e}");
    }

    #[test]
    fn invalid_value_names_field_and_position() {
        let e = parse("(\n  sampler: (\n    batch_size: 0,\n  ),\n)")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "test.ron:3:5: sampler.batch_size must be at least 1");
        let e = parse("(reference: (mcmc: (t_max: 0.5)))")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reference.mcmc.t_max must be"), "{e}");
    }

    #[test]
    fn text_instead_of_ron_is_an_error() {
        let e = parse("this is not a scene").unwrap_err().to_string();
        assert!(e.starts_with("test.ron:1:"), "{e}");
    }

    /// A molecule scene's files resolve against the scene's folder; its network must be periodic,
    /// its scale 1 and its temperature in range, each reported at its field.
    #[test]
    fn molecule_scenes_are_checked_at_their_fields() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes/test.ron");
        let scene = |sampler: &str, network: &str, temperature: f64| {
            format!(
                "(\n  system: Molecule((\n    topology: \"../assets/molecules/alanine-dipeptide.prmtop\",\n    structure: \"../assets/molecules/alanine-dipeptide.pdb\",\n    torsions: [(name: \"phi\", atoms: (4, 6, 8, 14))],\n    temperature: {temperature:?},\n  )),\n  sampler: ({sampler}),\n  network: ({network}),\n)"
            )
        };
        let ok = Scene::parse(&scene("kind: Adjoint", "kind: TorusMlp", 300.0), &path).unwrap();
        assert_eq!(ok.system.temperature(), Some(300.0));
        assert!(ok.energy().torus());
        let e = Scene::parse(&scene("kind: Adjoint", "kind: Mlp", 300.0), &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test.ron:9:13: network.kind must be TorusMlp"),
            "{e}"
        );
        let e = Scene::parse(
            &scene("kind: Adjoint, scale: 2.0", "kind: TorusMlp", 300.0),
            &path,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sampler.scale must be 1 for torsions"), "{e}");
        let e = Scene::parse(&scene("kind: Adjoint", "kind: TorusMlp", 0.5), &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test.ron:6:5: system.temperature must be between 1 and 10000 K"),
            "{e}"
        );
        let e = Scene::parse(&scene("kind: Asbs", "kind: TorusMlp", 300.0), &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sampler.kind") && e.contains("kinds that can: Adjoint, Gfn, Mcmc"),
            "{e}"
        );
    }

    #[test]
    fn reference_path_is_relative_to_scene() {
        let s = parse("(reference: (file: Some(\"../assets/r.npy\")))").unwrap();
        assert_eq!(
            s.reference_path(Path::new("scenes/a.ron")).unwrap(),
            Path::new("scenes/../assets/r.npy")
        );
    }
}
