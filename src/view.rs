//! What a view shows and how it colours samples: shared by the app, lessons and saved sessions
//! (which is why it lives in the core, with serde, and not in the app).

use serde::{Deserialize, Serialize};

/// How samples are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ColorBy {
    /// Energy on the viridis scale (molecules: element colours, frames by energy).
    #[default]
    Energy,
    ParticleIndex,
    /// Log importance weight relative to the batch's largest (kinds with weights).
    LogWeight,
}

/// What the 3D view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Show {
    /// A grid of current samples.
    #[default]
    Samples,
    /// One stored path from t = 0 (all particles at the origin) to t = 1.
    Trajectory,
}

/// The view settings a session keeps and a lesson step may set (all optional in a step).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewEdit {
    pub show: Option<Show>,
    pub color_by: Option<ColorBy>,
    /// Trajectory scrubber, SDE time 0–1.
    pub time: Option<f32>,
    /// Replay the trajectory over and over.
    pub animate: Option<bool>,
    /// Draw the control field (plane systems) ...
    pub field: Option<bool>,
    /// ... at this SDE time ...
    pub field_t: Option<f32>,
    /// ... or sweeping t from 0 to 1 ...
    pub field_animate: Option<bool>,
    /// ... with examples of the regression it is fitted by (target and output arrows).
    pub field_examples: Option<bool>,
    /// Histograms of samples reweighted by their importance weights instead of raw.
    pub reweighted: Option<bool>,
}

impl ViewEdit {
    /// The first out-of-range value, as (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, v) in [("time", self.time), ("field_t", self.field_t)] {
            if let Some(t) = v {
                if !(0.0..=1.0).contains(&t) {
                    return Err((
                        format!("view.{name}"),
                        format!("must be an SDE time between 0 and 1 (got {t})"),
                    ));
                }
            }
        }
        Ok(())
    }
}
