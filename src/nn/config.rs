//! The scene's `network` section: which network parametrises the control, and its size.

use serde::{Deserialize, Serialize};

/// Which network parametrises the control, and its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub kind: NetworkKind,
    /// Message-passing layers (EGNN) or hidden layers (MLP).
    pub layers: usize,
    /// Width of the hidden features.
    pub hidden: usize,
    /// What the network's output stands for (the drift is σ(t)² s either way).
    pub output: NetworkOutput,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            kind: NetworkKind::Egnn,
            layers: 5,
            hidden: 128,
            output: NetworkOutput::Score,
        }
    }
}

/// How the network's output becomes the score-like field s of the drift σ(t)² s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NetworkOutput {
    /// The network outputs s itself.
    #[default]
    Score,
    /// The network outputs the control u = σ(t) s (the reference code's "AM SDE"), so s = out/σ(t):
    /// s may grow like 1/σ(t) late in the SDE, where restoring drifts must be strong, while the
    /// network's own output stays of order one.
    Control,
}

/// Network families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkKind {
    /// E(3)- and permutation-equivariant graph network, for particle systems.
    Egnn,
    /// Multilayer perceptron with a time embedding, for GMM-40.
    Mlp,
    /// The same MLP fed cos θ and sin θ of every angle: periodic, for a molecule's torsions.
    TorusMlp,
}
