//! Samplers: the reference MCMC (and, later, the Adjoint Sampling trainer).

pub mod mcmc;
