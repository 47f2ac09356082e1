//! The core's error type: every message names the file, position, field or value at fault.

use std::path::PathBuf;

/// Errors from the core. Displayed as one line that says what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed at the OS level. (Not a `source` field: the message
    /// already says it, and anyhow's chain would print it twice.)
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    /// A file was read but its content is not what it must be.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// A scene file failed to parse or validate, with the position when known.
    #[error("{}:{line}:{col}: {message}", path.display())]
    Scene { path: PathBuf, line: usize, col: usize, message: String },
    /// A tensor operation failed (shapes, devices, or a backend error).
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A value given by the user is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause: source }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format { path: path.into(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
