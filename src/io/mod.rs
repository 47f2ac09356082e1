//! File formats: NumPy .npy arrays, extended XYZ trajectories, metrics CSV.

pub mod csv;
pub mod npy;
pub mod xyz;

pub use npy::{Matrix, read_npy, write_npy, write_npy_f64};
