//! The library's error type: one enum, messages that tell the user what to do next.

use std::path::PathBuf;

use crate::config::ConfigError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("{context} `{}`: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}", path = path.display())]
    Corrupt { path: PathBuf, message: String },

    #[error("{0}")]
    Refused(String),

    #[error("internal error: {0}; please report it with logs/ossimport2.log")]
    Internal(String),

    #[error("destination: {0}")]
    Destination(String),

    #[error("source: {0}")]
    Source(String),

    /// One entry of the listing could not be read; the rest of the listing goes on.
    #[error("cannot list `{path}`: {message}")]
    Listing {
        path: crate::relpath::RelPath,
        /// Why, for error.list (READ_ERROR, BAD_LIST_LINE, FILE_NOT_FOUND).
        reason: crate::reason::Reason,
        message: String,
        /// Where the source finds the entry (an http list's URL), so `retry` can try it.
        locator: Option<String>,
    },
}

impl Error {
    /// Wraps an I/O error with what we were doing and on which path.
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }

    /// The process exit code for this error: 2 for usage, config and refused commands.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Refused(_) => 2,
            _ => 1,
        }
    }
}

/// Adds path context to `std::io::Result`.
pub trait IoContext<T> {
    fn ctx(self, context: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(context, path, e))
    }
}
