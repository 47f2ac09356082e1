//! Hyperparameters as rows: each kind declares its own once (name, help, range, whether it
//! applies live or needs a reset, how to read and write it in the scene's `sampler` section),
//! and the panel, the fork view, lessons, sessions, validation, the change list and `info` all
//! iterate those rows. Values travel as f64; counts are whole numbers.

use super::SamplerConfig;
use crate::limits;

/// One hyperparameter of a kind.
#[derive(Clone, Copy)]
pub struct HyperRow {
    /// The name lessons, sessions and commands use (`learning_rate`, `mc_samples`); unique
    /// across kinds, and the same row wherever two kinds share it.
    pub key: &'static str,
    /// Where it sits under the scene's `sampler` (`learning_rate`, `idem.mc_samples`).
    pub field: &'static str,
    /// Shown in the panel.
    pub label: &'static str,
    /// The panel's tooltip and `info`'s description.
    pub help: &'static str,
    /// The values a scene, a lesson or an edit may give.
    pub bound: Bound,
    /// The panel's range (narrower than the bound: a slider over 10⁵ is no use).
    pub ui: (f64, f64),
    /// Edited on a logarithmic scale.
    pub log: bool,
    /// Applies to a running sampler at once (Adam's state and the buffer kept); otherwise the
    /// run must be reset.
    pub live: bool,
    pub get: fn(&SamplerConfig) -> f64,
    pub set: fn(&mut SamplerConfig, f64),
}

/// The values a row accepts.
#[derive(Clone, Copy)]
pub enum Bound {
    /// A whole number from `min` (0 or 1) to `max`; `bytes_each(dim, config)` is a lower
    /// estimate of the memory one unit costs for a system of `dim` coordinates (0: it costs time).
    Count {
        min: u64,
        max: u64,
        bytes_each: fn(u64, &SamplerConfig) -> u64,
    },
    /// A positive finite number.
    Positive,
    /// A number strictly between `lo` and `hi`.
    Open { lo: f64, hi: f64 },
    /// A number from `lo` to `hi`.
    Closed { lo: f64, hi: f64 },
}

impl HyperRow {
    /// Whether the row holds whole numbers.
    pub fn integer(&self) -> bool {
        matches!(self.bound, Bound::Count { .. })
    }

    /// Checks `value` for a system of `dim` coordinates (`cfg`: the rest of the settings, for
    /// the memory a count would need): `Err(what is wrong)`, to follow the field's name.
    pub fn check(&self, value: f64, dim: usize, cfg: &SamplerConfig) -> Result<(), String> {
        match self.bound {
            Bound::Count {
                min,
                max,
                bytes_each,
            } => {
                if !(value.is_finite() && value >= 0.0 && value.fract() == 0.0) {
                    return Err(format!("must be a whole number (got {value})"));
                }
                if value < min as f64 {
                    return Err(format!("must be at least {min}"));
                }
                // `limits::count` refuses 0 (as a count of rows must); a row that allows 0 has
                // passed above.
                limits::count(
                    (value.min(u64::MAX as f64) as u64).max(1),
                    max,
                    bytes_each(dim as u64, cfg),
                )
            }
            Bound::Positive if !(value > 0.0 && value.is_finite()) => {
                Err(format!("must be positive (got {value})"))
            }
            Bound::Open { lo, hi } if !(value > lo && value < hi) => {
                Err(format!("must be in ({lo}, {hi}) (got {value})"))
            }
            Bound::Closed { lo, hi } if !(value >= lo && value <= hi) => {
                Err(format!("must be between {lo} and {hi} (got {value})"))
            }
            _ => Ok(()),
        }
    }

    /// The value as the panel and `info` print it.
    pub fn format(&self, value: f64) -> String {
        if self.integer() {
            format!("{}", value as u64)
        } else {
            format!("{value}")
        }
    }

    /// The bound in words, for `info`.
    pub fn describe_bound(&self) -> String {
        match self.bound {
            Bound::Count { min, max, .. } => format!("{min} to {max}"),
            Bound::Positive => "> 0".into(),
            Bound::Open { lo, hi } => format!("({lo}, {hi})"),
            Bound::Closed { lo, hi } => format!("[{lo}, {hi}]"),
        }
    }
}

/// The row named `key` among `rows`.
pub fn row<'a>(rows: &'a [HyperRow], key: &str) -> Option<&'a HyperRow> {
    rows.iter().find(|r| r.key == key)
}

/// Every row key some registered kind has, sorted, without repeats.
pub fn all_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = super::registry::KINDS
        .iter()
        .flat_map(|k| (k.rows)())
        .map(|r| r.key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The registered row named `key` (from the first kind that has it; kinds that share a key share
/// the row).
pub fn any_row(key: &str) -> Option<HyperRow> {
    super::registry::KINDS
        .iter()
        .flat_map(|k| (k.rows)())
        .find(|r| r.key == key)
}

/// Checks every row of `rows` in `cfg` for a system of `dim` coordinates:
/// `Err((scene field below sampler, what is wrong))`.
pub fn check_all(
    rows: &[HyperRow],
    cfg: &SamplerConfig,
    dim: usize,
) -> Result<(), (&'static str, String)> {
    for r in rows {
        r.check((r.get)(cfg), dim, cfg).map_err(|m| (r.field, m))?;
    }
    Ok(())
}

/// Sets the live row `key` of `rows` in `cfg` to `value`, after checking it.
pub fn set_live(
    rows: &[HyperRow],
    cfg: &mut SamplerConfig,
    key: &str,
    value: f64,
    dim: usize,
) -> crate::Result<()> {
    let r = row(rows, key).ok_or_else(|| {
        crate::Error::Invalid(format!("this sampler kind has no hyperparameter '{key}'"))
    })?;
    if !r.live {
        return Err(crate::Error::Invalid(format!(
            "{key} needs a reset to change"
        )));
    }
    r.check(value, dim, cfg)
        .map_err(|m| crate::Error::Invalid(format!("{key} {m}")))?;
    (r.set)(cfg, value);
    Ok(())
}

/// The rows whose values differ between `a` and `b`, as (label, value in a, value in b).
pub fn changes(
    rows: &[HyperRow],
    a: &SamplerConfig,
    b: &SamplerConfig,
) -> Vec<(String, String, String)> {
    rows.iter()
        .filter(|r| (r.get)(a) != (r.get)(b))
        .map(|r| {
            (
                r.label.to_string(),
                r.format((r.get)(a)),
                r.format((r.get)(b)),
            )
        })
        .collect()
}

// The rows the learned kinds (Adjoint Sampling, ASBS, iDEM) share. Lower estimates of memory
// per unit: a simulated sample holds its state, noise, control and energy gradient (4 f32 per
// coordinate); a buffer row its x and target; a trajectory step of the app's playback one frame.

fn per_sample(dim: u64, _: &SamplerConfig) -> u64 {
    16 * dim
}

pub fn learning_rate() -> HyperRow {
    HyperRow {
        key: "learning_rate",
        field: "learning_rate",
        label: "learning rate",
        help: "Size of each Adam step. Too large: the loss jumps or the run diverges; too small: slow learning.",
        bound: Bound::Open { lo: 0.0, hi: 1.0 },
        ui: (1e-6, 1e-1),
        log: true,
        live: true,
        get: |c| c.learning_rate,
        set: |c, v| c.learning_rate = v,
    }
}

pub fn batch_size() -> HyperRow {
    HyperRow {
        key: "batch_size",
        field: "batch_size",
        label: "batch size",
        help: "Buffer samples per gradient step. Larger = smoother gradients, slower steps.",
        bound: Bound::Count {
            min: 1,
            max: limits::MAX_BATCH,
            bytes_each: per_sample,
        },
        ui: (1.0, 4096.0),
        log: false,
        live: true,
        get: |c| c.batch_size as f64,
        set: |c, v| c.batch_size = v as usize,
    }
}

pub fn train_steps() -> HyperRow {
    HyperRow {
        key: "train_steps",
        field: "train_steps",
        label: "train steps / iteration",
        help: "Gradient steps taken on the buffer after each batch of new samples.",
        bound: Bound::Count {
            min: 1,
            max: limits::MAX_ITERATION_STEPS,
            bytes_each: |_, _| 0,
        },
        ui: (1.0, 1000.0),
        log: false,
        live: true,
        get: |c| c.train_steps as f64,
        set: |c, v| c.train_steps = v as usize,
    }
}

pub fn new_samples() -> HyperRow {
    HyperRow {
        key: "new_samples",
        field: "new_samples",
        label: "new samples / iteration",
        help: "Samples simulated with the current network (one energy evaluation each) per iteration.",
        bound: Bound::Count {
            min: 1,
            max: limits::MAX_BATCH,
            bytes_each: per_sample,
        },
        ui: (1.0, 4096.0),
        log: false,
        live: true,
        get: |c| c.new_samples as f64,
        set: |c, v| c.new_samples = v as usize,
    }
}

pub fn grad_clip() -> HyperRow {
    HyperRow {
        key: "grad_clip",
        field: "grad_clip",
        label: "gradient clip",
        help: "Each particle's force |∇E| is capped at this value before it becomes a training target; guards against overlapping atoms.",
        bound: Bound::Positive,
        ui: (0.1, 1000.0),
        log: true,
        live: true,
        get: |c| c.grad_clip,
        set: |c, v| c.grad_clip = v,
    }
}

pub fn sde_steps() -> HyperRow {
    HyperRow {
        key: "sde_steps",
        field: "sde_steps",
        label: "SDE steps",
        help: "Euler–Maruyama steps from t = 0 to 1 when simulating training samples. More = more accurate, slower.",
        bound: Bound::Count {
            min: 1,
            max: limits::MAX_SDE_STEPS,
            bytes_each: |dim, c| 4 * dim * c.new_samples.min(limits::MAX_BATCH as usize) as u64,
        },
        ui: (5.0, 2000.0),
        log: false,
        live: true,
        get: |c| c.sde_steps as f64,
        set: |c, v| c.sde_steps = v as usize,
    }
}

pub fn sample_steps() -> HyperRow {
    HyperRow {
        key: "sample_steps",
        field: "sample_steps",
        label: "sample SDE steps",
        help: "Euler–Maruyama steps when drawing samples to judge or export (metrics, exports). More = closer to the learned sampler, slower.",
        bound: Bound::Count {
            min: 1,
            max: limits::MAX_SDE_STEPS,
            bytes_each: |dim, _| 4 * dim,
        },
        ui: (5.0, 4000.0),
        log: false,
        live: true,
        get: |c| c.sample_steps.unwrap_or(c.sde_steps) as f64,
        set: |c, v| c.sample_steps = Some(v as usize),
    }
}

pub fn buffer_size() -> HyperRow {
    HyperRow {
        key: "buffer_size",
        field: "buffer_size",
        label: "buffer size",
        help: "How many recent samples the replay buffer keeps (FIFO). Shrinking it drops the oldest rows at once.",
        bound: Bound::Count {
            min: 1,
            max: limits::MAX_BUFFER,
            bytes_each: |dim, _| 8 * dim + 8,
        },
        ui: (1.0, 100_000.0),
        log: true,
        live: true,
        get: |c| c.buffer_size as f64,
        set: |c, v| c.buffer_size = v as usize,
    }
}

pub fn sigma_max() -> HyperRow {
    HyperRow {
        key: "sigma_max",
        field: "sigma_max",
        label: "σ max",
        help: "Largest noise level (at t = 0): should cover the size of the system.",
        bound: Bound::Closed { lo: 1e-6, hi: 1e3 },
        ui: (0.01, 100.0),
        log: true,
        live: false,
        get: |c| c.sigma_max,
        set: |c, v| c.sigma_max = v,
    }
}

pub fn sigma_min() -> HyperRow {
    HyperRow {
        key: "sigma_min",
        field: "sigma_min",
        label: "σ min",
        help: "Smallest noise level (at t = 1): sets the finest detail.",
        bound: Bound::Closed { lo: 1e-6, hi: 1e3 },
        ui: (1e-5, 1.0),
        log: true,
        live: false,
        get: |c| c.sigma_min,
        set: |c, v| c.sigma_min = v,
    }
}

/// The rows every learned kind (Adjoint Sampling, ASBS, iDEM) has, live ones first.
pub fn learner_rows() -> Vec<HyperRow> {
    vec![
        learning_rate(),
        batch_size(),
        train_steps(),
        new_samples(),
        grad_clip(),
        sde_steps(),
        sample_steps(),
        buffer_size(),
        sigma_max(),
        sigma_min(),
    ]
}
