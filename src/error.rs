//! The library's error type: every failure a user can cause names the file, column and row.

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in an input file a problem was found, so messages can point the user at it.
#[derive(Debug, Clone, Default)]
pub struct Location {
    pub file: PathBuf,
    pub column: Option<String>,
    /// 0-based row index within the file (the same index pandas and pyarrow show).
    pub row: Option<u64>,
    /// 1-based line number within a text file (the number editors and `sed -n Np` use).
    pub line: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ", line {l}")?;
        }
        if let Some(c) = &self.column {
            write!(f, ", column `{c}`")?;
        }
        if let Some(r) = self.row {
            write!(f, ", row {r}")?;
        }
        Ok(())
    }
}

/// Wrapped I/O, Parquet and JSON errors are shown in the message itself and deliberately not
/// exposed as `source()` (so their fields are named `cause`, which thiserror does not treat as a
/// source): error reporters print the whole chain, and the cause would appear twice.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input data is unusable as given (wrong type, nulls, NaN, duplicates ...).
    #[error("{location}: {message}")]
    Input { location: Location, message: String },
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: not a readable Parquet file: {cause}", path.display())]
    Parquet {
        path: PathBuf,
        cause: parquet::errors::ParquetError,
    },
    #[error("{}: {cause}", path.display())]
    Arrow {
        path: PathBuf,
        cause: arrow_schema::ArrowError,
    },
    /// A configuration value that cannot work (caught before any heavy work starts).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A saved quantizer or other artefact that is missing pieces or inconsistent.
    #[error("{}: {message}", path.display())]
    Artifact { path: PathBuf, message: String },
    /// A model that cannot be found or fetched (hub, cache, network).
    #[error("{0}")]
    Model(String),
    /// Training that went numerically wrong (NaN or infinite loss or weights); nothing was
    /// saved.
    #[error("{0}")]
    Training(String),
    /// An output that could not be written (disk full, permissions, ...), named by the path
    /// the user asked for rather than a temporary name or none at all.
    #[error("cannot write {}: {cause}", path.display())]
    Write { path: PathBuf, cause: String },
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{}: invalid JSON: {cause}", path.display())]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },
    /// Another process holds the output's lock: two writers would mix their files.
    #[error(
        "{}: is being written by {}; wait for it or stop it",
        path.display(),
        holder(*pid)
    )]
    Locked { path: PathBuf, pid: Option<u32> },
    /// An output path that is, contains or lies inside one of the command's inputs: writing it
    /// would destroy the input.
    #[error(
        "--out {}: {} {}; write the output somewhere else",
        out.display(),
        relation,
        input.display()
    )]
    OutputIsInput {
        out: PathBuf,
        input: PathBuf,
        /// "is the input", "contains the input" or "is inside the input".
        relation: &'static str,
    },
}

/// Who holds a lock, for [`Error::Locked`]: the pid is missing only in the instant between
/// the holder taking the lock and writing its pid.
fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("sidtool process {p}"),
        None => "another sidtool process".to_string(),
    }
}

impl Error {
    /// A model's weights that could not be loaded: candle's errors (including our own checks,
    /// which reach candle's `VarBuilder` as messages) become a plain message naming the tensor.
    pub fn weights(e: Error) -> Error {
        match e {
            Error::Tensor(c) => Error::Model(c.to_string()),
            other => other,
        }
    }

    pub fn input(
        file: &Path,
        column: Option<&str>,
        row: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        Error::Input {
            location: Location {
                file: file.to_path_buf(),
                column: column.map(str::to_string),
                row,
                line: None,
            },
            message: message.into(),
        }
    }

    /// A problem on a 1-based line of a text input, optionally in one column.
    pub(crate) fn at_line(
        file: &Path,
        line: u64,
        column: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Error::Input {
            location: Location {
                file: file.to_path_buf(),
                column: column.map(str::to_string),
                row: None,
                line: Some(line),
            },
            message: message.into(),
        }
    }

    pub fn io(path: &Path, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            cause,
        }
    }

    pub fn parquet(path: &Path, cause: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            path: path.to_path_buf(),
            cause,
        }
    }

    pub fn arrow(path: &Path, cause: arrow_schema::ArrowError) -> Self {
        Error::Arrow {
            path: path.to_path_buf(),
            cause,
        }
    }

    /// A failure writing the output `path`; `cause` is shown after it.
    pub fn write(path: &Path, cause: impl fmt::Display) -> Self {
        Error::Write {
            path: path.to_path_buf(),
            cause: cause.to_string(),
        }
    }

    pub(crate) fn artifact(path: &Path, message: impl Into<String>) -> Self {
        Error::Artifact {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
