//! Lessons: RON files in `lessons/` that walk a class through the app one step at a time. Each
//! step may restart the run on a scene (with a seed, hyperparameters, a race), set the view,
//! choose which panels are visible and which controls are locked, point at one panel, and show a
//! caption; it advances on a key or when a condition on the live run holds ("E-W2 < 3").
//!
//! Everything is checked when the file is read, and errors name the file, line and column, like
//! scenes: a typo in a panel's name, a condition that does not parse, a scene that cannot be read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sampler::{self, SamplerConfig, SamplerKind};
use crate::scene::Scene;
use crate::view::ViewEdit;
use crate::{Error, Result};

/// A lesson file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    pub title: String,
    /// One line for the lesson menu.
    #[serde(default)]
    pub description: String,
    /// About how long it takes in class.
    #[serde(default)]
    pub minutes: Option<u32>,
    pub steps: Vec<Step>,
}

/// One step. Fields left out keep what the previous step set (panels, locks, the run, the
/// view); `point_at`, `play` and `advance` are the step's own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Step {
    pub title: String,
    /// A few sentences, shown large. Blank lines separate paragraphs, lines starting with "- "
    /// are bullets, `**bold**`, `*emphasis*` and `` `code` `` are understood.
    pub caption: String,
    /// Restart the run on this scene file (relative to the lesson file).
    pub scene: Option<String>,
    /// Restart with this seed (on the step's scene, or the current one).
    pub seed: Option<u64>,
    /// Restart the current scene even without a new scene or seed.
    pub restart: bool,
    /// Race these sampler kinds (two or more) on the scene instead of a single run.
    pub race: Vec<SamplerKind>,
    /// Hyperparameters to change (live, or for the restart).
    pub hyper: HyperEdit,
    /// Gradient steps between screen updates.
    pub speed: Option<u64>,
    /// Start (`true`) or pause (`false`) training when the step begins.
    pub play: Option<bool>,
    /// The panels shown from this step on (`None`: as before; the lesson starts with all).
    pub panels: Option<Vec<Panel>>,
    /// The controls locked from this step on (`None`: as before; the lesson starts with none).
    pub locked: Option<Vec<Control>>,
    /// A panel to highlight during this step.
    pub point_at: Option<Panel>,
    pub view: ViewEdit,
    pub advance: Advance,
    /// For `lesson --screenshot-steps`: take the step's picture once this holds (a step that
    /// advances on a condition is pictured when that holds; others at once by default).
    pub picture: Option<Condition>,
}

/// What is running at a step when the lesson is entered there directly (opened at a step, a
/// session reopened, ← pressed): the latest restart at or before it, with the seed, race and
/// hyperparameter edits made since.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The step whose restart this is.
    pub from_step: usize,
    pub scene: PathBuf,
    pub seed: Option<u64>,
    pub race: Vec<SamplerKind>,
    pub hyper: Vec<HyperEdit>,
    pub view: Vec<ViewEdit>,
    pub speed: Option<u64>,
}

/// Live hyperparameters a step changes, by row key (`hyper: (learning_rate: 3e-4)`); the rest
/// stay as they are. Keys are those of the registered kinds' rows ([`sampler::hyper::all_keys`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct HyperEdit(pub BTreeMap<String, f64>);

impl<'de> Deserialize<'de> for HyperEdit {
    /// Read as a struct (the lesson's `(key: value)`), so that an unknown key is an error that
    /// lists the known ones.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = HyperEdit;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("hyperparameters as (key: value, ...)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<HyperEdit, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = m.next_key::<String>()? {
                    if sampler::hyper::any_row(&key).is_none() {
                        return Err(serde::de::Error::custom(format!(
                            "unknown hyperparameter `{key}` (known: {})",
                            sampler::hyper::all_keys().join(", ")
                        )));
                    }
                    out.insert(key, m.next_value::<f64>()?);
                }
                Ok(HyperEdit(out))
            }
        }
        d.deserialize_struct("HyperEdit", &[], V)
    }
}

impl HyperEdit {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes the edits into a sampler's settings.
    pub fn apply(&self, c: &mut SamplerConfig) {
        for (key, &value) in &self.0 {
            if let Some(r) = sampler::hyper::any_row(key) {
                (r.set)(c, value);
            }
        }
    }

    /// The edits the kind `kind` has rows for, as a live edit sends them.
    pub fn changes_for(&self, kind: SamplerKind) -> Vec<(String, f64)> {
        let rows = kind.rows();
        self.0
            .iter()
            .filter(|(k, _)| sampler::hyper::row(&rows, k).is_some())
            .map(|(k, &v)| (k.clone(), v))
            .collect()
    }

    /// Each value against its row's bound (the memory a count would cost depends on the step's
    /// system, and is checked when the edit reaches the run).
    fn validate(&self) -> std::result::Result<(), (String, String)> {
        for (key, &v) in &self.0 {
            let r = sampler::hyper::any_row(key).ok_or_else(|| {
                (
                    format!("hyper.{key}"),
                    "is not a hyperparameter".to_string(),
                )
            })?;
            r.check(v, 0, &SamplerConfig::default())
                .map_err(|m| (format!("hyper.{key}"), m))?;
        }
        Ok(())
    }
}

/// The parts of the window a lesson shows, hides or points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Panel {
    /// The 3D / 2-D view of samples (always drawn; pointing at it frames it).
    View,
    /// The colour legend over the view.
    Legend,
    // Left panel sections.
    Hyperparameters,
    RestartSettings,
    Race,
    ViewOptions,
    Files,
    Messages,
    // Right panel plots.
    Loss,
    EnergyHistogram,
    /// Interatomic distances, or a molecule's torsions.
    Distances,
    Quality,
    Ess,
    Throughput,
}

impl Panel {
    pub const ALL: [Panel; 14] = [
        Panel::View,
        Panel::Legend,
        Panel::Hyperparameters,
        Panel::RestartSettings,
        Panel::Race,
        Panel::ViewOptions,
        Panel::Files,
        Panel::Messages,
        Panel::Loss,
        Panel::EnergyHistogram,
        Panel::Distances,
        Panel::Quality,
        Panel::Ess,
        Panel::Throughput,
    ];

    /// Whether the panel lives in the left column (settings) ...
    pub fn left(self) -> bool {
        matches!(
            self,
            Panel::Hyperparameters
                | Panel::RestartSettings
                | Panel::Race
                | Panel::ViewOptions
                | Panel::Files
                | Panel::Messages
        )
    }

    /// ... or in the right one (plots).
    pub fn right(self) -> bool {
        matches!(
            self,
            Panel::Loss
                | Panel::EnergyHistogram
                | Panel::Distances
                | Panel::Quality
                | Panel::Ess
                | Panel::Throughput
        )
    }
}

/// Controls a lesson can lock, so that a class follows the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Control {
    /// Play / pause and Step.
    Play,
    Reset,
    Seed,
    Speed,
    ScenePicker,
    Hyperparameters,
}

/// When a step gives way to the next one. Arrow keys always move between steps.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum Advance {
    /// On the → key or the "next" button.
    #[default]
    Key,
    /// As soon as the condition holds on the live run (or on the → key).
    When(Condition),
}

/// A condition on the live run: comparisons joined by "and", e.g. "gradient steps >= 500 and
/// E-W2 < 3". Read from a string; one that does not parse is an error at its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Condition {
    pub terms: Vec<Comparison>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub quantity: Quantity,
    pub op: Op,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Less,
    LessEq,
    Greater,
    GreaterEq,
}

/// What a condition can look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    GradientSteps,
    EnergyEvals,
    /// Outer iterations (MCMC: blocks of sweeps).
    Iterations,
    /// Seconds spent training.
    Seconds,
    EnergyW2,
    EqW2,
    XW2,
    DistTv,
    /// Normalised ESS, 0–1 ("ESS > 20%" is read as 0.2).
    Ess,
}

impl Quantity {
    /// Names a condition may use (compared lower-case, with spaces, '-' and '_' removed).
    const NAMES: [(&'static str, Quantity); 14] = [
        ("gradientsteps", Quantity::GradientSteps),
        ("steps", Quantity::GradientSteps),
        ("energyevals", Quantity::EnergyEvals),
        ("energyevaluations", Quantity::EnergyEvals),
        ("evals", Quantity::EnergyEvals),
        ("iterations", Quantity::Iterations),
        ("seconds", Quantity::Seconds),
        ("trainingseconds", Quantity::Seconds),
        ("ew2", Quantity::EnergyW2),
        ("eqw2", Quantity::EqW2),
        ("xw2", Quantity::XW2),
        ("disttv", Quantity::DistTv),
        ("ess", Quantity::Ess),
        ("effectivesamplesize", Quantity::Ess),
    ];

    pub fn label(self) -> &'static str {
        match self {
            Quantity::GradientSteps => "gradient steps",
            Quantity::EnergyEvals => "energy evals",
            Quantity::Iterations => "iterations",
            Quantity::Seconds => "seconds",
            Quantity::EnergyW2 => "E-W2",
            Quantity::EqW2 => "eq-W2",
            Quantity::XW2 => "x-W2",
            Quantity::DistTv => "dist-TV",
            Quantity::Ess => "ESS",
        }
    }

    fn parse(s: &str) -> Option<Quantity> {
        let key: String = s
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '_'))
            .collect::<String>()
            .to_ascii_lowercase();
        Quantity::NAMES
            .iter()
            .find(|(n, _)| *n == key)
            .map(|&(_, q)| q)
    }
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Less => a < b,
            Op::LessEq => a <= b,
            Op::Greater => a > b,
            Op::GreaterEq => a >= b,
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Op::Less => "<",
            Op::LessEq => "<=",
            Op::Greater => ">",
            Op::GreaterEq => ">=",
        }
    }
}

/// The live run as a condition sees it; metrics are `None` until the first evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub gradient_steps: u64,
    pub energy_evals: u64,
    pub iterations: u64,
    pub seconds: f64,
    pub energy_w2: Option<f64>,
    pub eq_w2: Option<f64>,
    pub x_w2: Option<f64>,
    pub dist_tv: Option<f64>,
    pub ess: Option<f64>,
}

impl Progress {
    pub fn get(&self, q: Quantity) -> Option<f64> {
        let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
        match q {
            Quantity::GradientSteps => Some(self.gradient_steps as f64),
            Quantity::EnergyEvals => Some(self.energy_evals as f64),
            Quantity::Iterations => Some(self.iterations as f64),
            Quantity::Seconds => Some(self.seconds),
            Quantity::EnergyW2 => finite(self.energy_w2),
            Quantity::EqW2 => finite(self.eq_w2),
            Quantity::XW2 => finite(self.x_w2),
            Quantity::DistTv => finite(self.dist_tv),
            Quantity::Ess => finite(self.ess),
        }
    }
}

impl Condition {
    /// Whether every comparison holds (a metric not yet measured never does).
    pub fn holds(&self, p: &Progress) -> bool {
        self.terms
            .iter()
            .all(|c| p.get(c.quantity).is_some_and(|v| c.op.holds(v, c.value)))
    }

    /// "E-W2 < 3 (now 7.2)": what the caption says the step waits for.
    pub fn describe(&self, p: &Progress) -> String {
        self.terms
            .iter()
            .map(|c| {
                let now = match p.get(c.quantity) {
                    Some(v) if c.quantity == Quantity::Ess => format!("{:.1}%", 100.0 * v),
                    Some(v) if v.fract() == 0.0 => format!("{v}"),
                    Some(v) => format!("{v:.3}"),
                    None => "not measured yet".into(),
                };
                let target = if c.quantity == Quantity::Ess {
                    format!("{}%", 100.0 * c.value)
                } else {
                    format!("{}", c.value)
                };
                format!(
                    "{} {} {target} (now {now})",
                    c.quantity.label(),
                    c.op.symbol()
                )
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut terms = Vec::new();
        let lower = s.to_ascii_lowercase();
        let mut rest = lower.as_str();
        let mut original = s;
        loop {
            let (part, next) = match rest.find(" and ") {
                Some(i) => (&original[..i], Some(i + 5)),
                None => (original, None),
            };
            terms.push(
                parse_comparison(part.trim()).map_err(|e| format!("condition \"{s}\": {e}"))?,
            );
            match next {
                Some(i) => {
                    rest = &rest[i..];
                    original = &original[i..];
                }
                None => break,
            }
        }
        Ok(Condition { terms })
    }
}

fn parse_comparison(s: &str) -> std::result::Result<Comparison, String> {
    const HELP: &str =
        "write QUANTITY OP NUMBER, e.g. \"gradient steps >= 500\", \"E-W2 < 3\", \"ESS > 20%\"";
    if s.is_empty() {
        return Err(format!("an empty comparison; {HELP}"));
    }
    let (at, op) = ["<=", ">=", "≤", "≥", "<", ">"]
        .iter()
        .filter_map(|o| s.find(o).map(|i| (i, *o)))
        .min_by_key(|&(i, o)| (i, std::cmp::Reverse(o.len())))
        .ok_or_else(|| format!("'{s}' has no comparison (<, <=, >, >=); {HELP}"))?;
    let name = s[..at].trim();
    let number = s[at + op.len()..].trim();
    let quantity = Quantity::parse(name).ok_or_else(|| {
        format!("unknown quantity '{name}' (known: gradient steps, energy evals, iterations, seconds, E-W2, eq-W2, x-W2, dist-TV, ESS)")
    })?;
    let op = match op {
        "<" => Op::Less,
        "<=" | "≤" => Op::LessEq,
        ">" => Op::Greater,
        _ => Op::GreaterEq,
    };
    let (number, percent) = match number.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (number, false),
    };
    let mut value: f64 = number
        .parse()
        .map_err(|_| format!("'{number}' is not a number; {HELP}"))?;
    if !value.is_finite() {
        return Err(format!("'{number}' is not a finite number"));
    }
    if percent {
        if quantity != Quantity::Ess {
            return Err(format!(
                "only ESS is compared in percent, not {}",
                quantity.label()
            ));
        }
        value /= 100.0;
    }
    Ok(Comparison {
        quantity,
        op,
        value,
    })
}

impl TryFrom<String> for Condition {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|c| {
                let v = if c.quantity == Quantity::Ess {
                    format!("{}%", 100.0 * c.value)
                } else {
                    format!("{}", c.value)
                };
                format!("{} {} {v}", c.quantity.label(), c.op.symbol())
            })
            .collect();
        write!(f, "{}", parts.join(" and "))
    }
}

impl From<Condition> for String {
    fn from(c: Condition) -> String {
        c.to_string()
    }
}

/// A lesson read from a file, with each step's scene resolved against the lesson's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedLesson {
    pub lesson: Lesson,
    pub path: PathBuf,
    /// Step i's scene file, where the step names one.
    pub scenes: Vec<Option<PathBuf>>,
}

impl LoadedLesson {
    /// Reads and checks a lesson: syntax, names, conditions and every step's scene.
    pub fn load(path: &Path) -> Result<LoadedLesson> {
        let text = crate::limits::read_text(path, crate::limits::TEXT_FILE_BYTES)?;
        LoadedLesson::parse(&text, path)
    }

    /// Parses lesson text; `path` anchors the scene files and names the file in messages.
    pub fn parse(text: &str, path: &Path) -> Result<LoadedLesson> {
        let at = |(line, col): (usize, usize), message: String| Error::Scene {
            path: path.to_path_buf(),
            line,
            col,
            message,
        };
        // `seed: 3` as well as `seed: Some(3)`: lessons are written by hand, by teachers.
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let lesson: Lesson = options
            .from_str(text)
            .map_err(|e| at((e.position.line, e.position.col), e.code.to_string()))?;
        if lesson.steps.is_empty() {
            return Err(at(
                crate::scene::locate_nth(text, "steps", 0),
                "a lesson needs at least one step".into(),
            ));
        }
        if lesson.steps[0].scene.is_none() {
            return Err(at(
                crate::scene::locate_nth(text, "steps", 0),
                "the first step must name a scene (the lesson starts by opening it)".into(),
            ));
        }
        let folder = path.parent().unwrap_or(Path::new("."));
        let mut scenes = Vec::with_capacity(lesson.steps.len());
        let mut nth_scene = 0;
        for (i, step) in lesson.steps.iter().enumerate() {
            let n = i + 1;
            if step.caption.trim().is_empty() {
                return Err(at(
                    crate::scene::locate_nth(text, "caption", i),
                    format!("step {n} has no caption"),
                ));
            }
            if let Err((field, message)) = step.hyper.validate().and_then(|()| step.view.validate())
            {
                let key = field.rsplit('.').next().unwrap_or(&field).to_string();
                return Err(at(
                    crate::scene::locate_nth(text, &key, 0),
                    format!("step {n}: {field} {message}"),
                ));
            }
            if step.race.len() == 1 {
                return Err(at(
                    crate::scene::locate_nth(text, "race", 0),
                    format!("step {n}: a race needs two kinds or more"),
                ));
            }
            if step.speed == Some(0) {
                return Err(at(
                    crate::scene::locate_nth(text, "speed", 0),
                    format!("step {n}: speed must be at least 1"),
                ));
            }
            match &step.scene {
                Some(s) => {
                    let file = folder.join(s);
                    if let Err(e) = Scene::load(&file) {
                        return Err(at(
                            crate::scene::locate_nth(text, "scene", nth_scene),
                            format!("step {n}: the scene {s} cannot be used: {e}"),
                        ));
                    }
                    nth_scene += 1;
                    scenes.push(Some(file));
                }
                None => scenes.push(None),
            }
        }
        Ok(LoadedLesson {
            lesson,
            path: path.to_path_buf(),
            scenes,
        })
    }

    pub fn len(&self) -> usize {
        self.lesson.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lesson.steps.is_empty()
    }

    /// The run and view as they stand at step `i` when it is reached step by step from the start.
    pub fn setup_at(&self, i: usize) -> Setup {
        let i = i.min(self.len() - 1);
        let steps = &self.lesson.steps;
        let restarts =
            |s: &Step| s.scene.is_some() || s.seed.is_some() || s.restart || !s.race.is_empty();
        let from = (0..=i).rev().find(|&k| restarts(&steps[k])).unwrap_or(0);
        let scene_step = (0..=from)
            .rev()
            .find(|&k| self.scenes[k].is_some())
            .unwrap_or(0);
        let scene = self.scenes[scene_step]
            .clone()
            .expect("the first step names a scene (checked on load)");
        let seed = (scene_step..=from).rev().find_map(|k| steps[k].seed);
        let race = steps[from].race.clone();
        Setup {
            from_step: from,
            scene,
            seed,
            race,
            hyper: steps[scene_step..=i]
                .iter()
                .map(|s| s.hyper.clone())
                .filter(|h| !h.is_empty())
                .collect(),
            view: steps[..=i].iter().map(|s| s.view.clone()).collect(),
            speed: steps[..=i].iter().rev().find_map(|s| s.speed),
        }
    }

    /// The panels visible at step `i`: the latest `panels` at or before it, else all.
    pub fn panels_at(&self, i: usize) -> Option<&[Panel]> {
        self.lesson.steps[..=i.min(self.len() - 1)]
            .iter()
            .rev()
            .find_map(|s| s.panels.as_deref())
    }

    /// The controls locked at step `i`: the latest `locked` at or before it, else none.
    pub fn locked_at(&self, i: usize) -> &[Control] {
        self.lesson.steps[..=i.min(self.len() - 1)]
            .iter()
            .rev()
            .find_map(|s| s.locked.as_deref())
            .unwrap_or(&[])
    }
}

/// The lesson files in a folder, sorted, with their titles (or why they cannot be read).
pub fn list_lessons(dir: &Path) -> Vec<(PathBuf, std::result::Result<String, String>)> {
    crate::scene::ron_files(dir)
        .into_iter()
        .map(|p| {
            let title = LoadedLesson::load(&p)
                .map(|l| l.lesson.title)
                .map_err(|e| e.to_string());
            (p, title)
        })
        .collect()
}

/// A piece of caption text with its style.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Span {
    pub text: String,
    pub bold: bool,
    pub italic: bool,
    pub code: bool,
}

/// A paragraph or a bullet of a caption.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Block {
    pub bullet: bool,
    pub spans: Vec<Span>,
}

/// Splits a caption into paragraphs and bullets (lines joined as in Markdown) and each into
/// styled spans. Unclosed markers are kept as text.
pub fn caption_blocks(caption: &str) -> Vec<Block> {
    let mut blocks: Vec<(bool, String)> = Vec::new();
    let mut open = false;
    for line in caption.lines().map(str::trim) {
        if line.is_empty() {
            open = false;
        } else if let Some(item) = line.strip_prefix("- ").or_else(|| line.strip_prefix("• ")) {
            blocks.push((true, item.trim().to_string()));
            open = true;
        } else if open {
            let last = &mut blocks.last_mut().expect("open implies a block").1;
            last.push(' ');
            last.push_str(line);
        } else {
            blocks.push((false, line.to_string()));
            open = true;
        }
    }
    blocks
        .into_iter()
        .map(|(bullet, text)| Block {
            bullet,
            spans: spans(&text),
        })
        .collect()
}

fn spans(text: &str) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut style = Span::default();
    let mut current = String::new();
    let mut rest = text;
    let flush = |out: &mut Vec<Span>, current: &mut String, style: &Span| {
        if !current.is_empty() {
            out.push(Span {
                text: std::mem::take(current),
                ..style.clone()
            });
        }
    };
    while let Some(c) = rest.chars().next() {
        let (marker, toggles): (&str, fn(&mut Span)) = if rest.starts_with("**") {
            ("**", |s| s.bold = !s.bold)
        } else if c == '*' {
            ("*", |s| s.italic = !s.italic)
        } else if c == '`' {
            ("`", |s| s.code = !s.code)
        } else {
            current.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        // A marker opens only if it closes later; inside code only ` counts.
        let after = &rest[marker.len()..];
        let opening = match marker {
            "**" => !style.bold,
            "*" => !style.italic,
            _ => !style.code,
        };
        let usable = (!style.code || marker == "`") && (!opening || after.contains(marker));
        if usable {
            flush(&mut out, &mut current, &style);
            toggles(&mut style);
        } else {
            current.push_str(marker);
        }
        rest = after;
    }
    flush(&mut out, &mut current, &style);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_and_hold() {
        let c: Condition = "gradient steps >= 500 and E-W2 < 3".parse().unwrap();
        assert_eq!(c.terms.len(), 2);
        let mut p = Progress {
            gradient_steps: 499,
            energy_w2: Some(2.0),
            ..Progress::default()
        };
        assert!(!c.holds(&p));
        p.gradient_steps = 500;
        assert!(c.holds(&p));
        p.energy_w2 = None;
        assert!(
            !c.holds(&p),
            "an unmeasured metric never satisfies a condition"
        );
        let e: Condition = "ESS > 20%".parse().unwrap();
        assert_eq!(e.terms[0].value, 0.2);
        assert!(e.holds(&Progress {
            ess: Some(0.25),
            ..Progress::default()
        }));
        assert_eq!(e.to_string(), "ESS > 20%");
        let round: Condition = c.to_string().parse().unwrap();
        assert_eq!(round, c);
    }

    #[test]
    fn bad_conditions_say_why() {
        for (s, says) in [
            ("steps 500", "no comparison"),
            ("temperature > 3", "unknown quantity 'temperature'"),
            ("E-W2 < three", "'three' is not a number"),
            ("steps > 5%", "only ESS"),
            ("steps > 5 and ", "empty comparison"),
        ] {
            let e = s.parse::<Condition>().unwrap_err();
            assert!(e.contains(says), "{s}: {e}");
        }
    }

    #[test]
    fn captions_have_paragraphs_bullets_and_styles() {
        let b = caption_blocks(
            "The **Boltzmann** density\nis *exp(−E/kT)*.\n\n- one `kT`\n- two\n  continued\n\nLast * lone star",
        );
        assert_eq!(b.len(), 4);
        assert!(!b[0].bullet && b[1].bullet && b[2].bullet && !b[3].bullet);
        assert_eq!(
            b[0].spans[1],
            Span {
                text: "Boltzmann".into(),
                bold: true,
                ..Span::default()
            }
        );
        assert_eq!(b[0].spans[2].text, " density is ");
        assert!(b[0].spans[3].italic);
        assert_eq!(
            b[1].spans[1],
            Span {
                text: "kT".into(),
                code: true,
                ..Span::default()
            }
        );
        assert_eq!(b[2].spans[0].text, "two continued");
        assert_eq!(
            b[3].spans,
            vec![Span {
                text: "Last * lone star".into(),
                ..Span::default()
            }]
        );
    }
}
