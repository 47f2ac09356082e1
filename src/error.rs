//! The core's error type: every message names the file, position, field or value at fault.

use std::path::PathBuf;

/// Errors from the core. Displayed as one line that says what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed at the OS level. (Not a `source` field: the message
    /// already says it, and anyhow's chain would print it twice.)
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A file was read but its content is not what it must be.
    #[error("{}: {}", path.display(), quote(message))]
    Format { path: PathBuf, message: String },
    /// A scene file failed to parse or validate, with the position when known.
    #[error("{}:{line}:{col}: {}", path.display(), quote(message))]
    Scene {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    /// A tensor operation failed (shapes, devices, or a backend error).
    #[error("tensor computation failed: {}", short(.0))]
    Tensor(#[from] candle_core::Error),
    /// A value given by the user is out of range or inconsistent.
    #[error("{}", quote(.0))]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A message as shown: parsers quote the input they stopped at, and a 5 MB identifier must not
/// become a 5 MB line.
fn quote(message: &str) -> String {
    excerpt(message, 500)
}

/// A candle error as one line: with RUST_BACKTRACE set, candle appends a backtrace of thirty
/// lines to its message, which is for the developer's debugger, not for the user's terminal.
pub fn short(e: &candle_core::Error) -> String {
    let mut e = e;
    while let candle_core::Error::WithBacktrace { inner, .. } = e {
        e = inner;
    }
    let text = e.to_string();
    excerpt(text.lines().next().unwrap_or(""), 300)
}

/// At most `max` characters of `text`, with "…" and the full length when it was cut: error
/// messages quote the input, and a 5 MB identifier must not become a 5 MB line.
pub fn excerpt(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    format!("{head}… ({n} characters)")
}
