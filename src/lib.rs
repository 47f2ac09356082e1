//! Boltzmann Studio core: energies, reference MCMC, metrics, file formats and scenes.
//! No Bevy in here: everything runs headless.

pub mod energy;
pub mod error;
pub mod io;
pub mod metrics;
pub mod sampler;
pub mod scene;

pub use error::{Error, Result};
