//! Boltzmann Studio core: energies, reference MCMC, metrics, file formats and scenes.
//! No Bevy in the core: everything but `app` (behind the `app` feature) runs headless.

pub mod buffer;
pub mod checkpoint;
pub mod cli;
pub mod energy;
pub mod error;
pub mod field;
pub mod info;
pub mod io;
pub mod lesson;
pub mod logz;
pub mod limits;
pub mod metrics;
pub mod molecule;
pub mod nn;
pub mod pretrained;
pub mod race;
pub mod reference;
pub mod run;
pub mod sampler;
pub mod scene;
pub mod sde;
pub mod session;
pub mod types;
pub mod view;
pub mod worker;

#[cfg(feature = "app")]
pub mod app;

pub use error::{Error, Result};
