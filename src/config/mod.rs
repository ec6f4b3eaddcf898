//! The job file (`conf/local_job.cfg`) and the system file (`conf/sys.properties`), read once
//! into typed settings with line-numbered errors and warnings.
//!
//! # Layout
//! - `props`: the Java properties syntax (entries with line numbers).
//! - `keys`: the table-driven reader both files share (known keys, aliases, defaults).
//! - `units`: sizes such as `50m` or `5g`.
//! - `words`: the one-word settings ([`SrcType`], [`JobType`], [`AuditMode`], [`ObjectMetaMode`]).
//! - `job`: [`JobConfig`] and its key table.
//! - `validate`: [`JobConfig::validate`], what this version can run, and env credentials.
//! - `sys`: [`SysConfig`] and its key table, with the pre-2.2 `slave*` names.
//!
//! Nothing outside this module sees a raw key or value string: a key the table does not know
//! becomes a [`ConfigWarning`], a value that cannot mean anything becomes a [`ConfigError`] that
//! names the file, the line and the key, and says what is allowed.

#[cfg(test)]
mod fixtures;
mod job;
mod keys;
mod props;
mod sys;
mod units;
mod validate;
mod words;

use std::fmt;
use std::path::PathBuf;

pub use job::{AuditMode, JobConfig, JobType, ObjectMetaMode, SrcType};
pub use sys::SysConfig;
pub use units::{SizeError, format_size, parse_size};

/// A secret (access key / secret key). Debug and Display print `***`; never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that signs requests with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A warning about the configuration (unknown key, value clamped, ignored key), with location.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigWarning {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_location(f, &self.path, self.line, Some(&self.key))?;
        f.write_str(&self.message)
    }
}

/// A configuration that cannot be used as written: where, which key, and what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole (no line, no key).
    pub fn new(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    /// The same error, located at `line`.
    pub fn at_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    /// The same error, about `key`.
    pub fn for_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_location(f, &self.path, self.line, self.key.as_deref())?;
        f.write_str(&self.message)
    }
}

/// `path:line: key `k`: ` — the shape compilers use, so editors can jump to the line.
fn write_location(
    f: &mut fmt::Formatter<'_>,
    path: &std::path::Path,
    line: Option<usize>,
    key: Option<&str>,
) -> fmt::Result {
    write!(f, "{}", path.display())?;
    if let Some(line) = line {
        write!(f, ":{line}")?;
    }
    f.write_str(": ")?;
    if let Some(key) = key {
        write!(f, "key `{key}`: ")?;
    }
    Ok(())
}

/// A configuration together with the warnings produced while reading it; the caller decides
/// how to show them (the console prints them, the service logs them).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    pub config: T,
    pub warnings: Vec<ConfigWarning>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
        assert!(!s.is_empty());
        assert!(Secret::default().is_empty());
    }

    #[test]
    fn error_display_omits_missing_parts() {
        let e = ConfigError::new("conf/local_job.cfg", "is blank")
            .at_line(Some(41))
            .for_key("destBucket");
        assert_eq!(
            e.to_string(),
            "conf/local_job.cfg:41: key `destBucket`: is blank"
        );
        let e = ConfigError::new("conf/local_job.cfg", "cannot read");
        assert_eq!(e.to_string(), "conf/local_job.cfg: cannot read");
        let e = ConfigError::new("a.cfg", "m").for_key("k");
        assert_eq!(e.to_string(), "a.cfg: key `k`: m");
    }

    #[test]
    fn warning_display() {
        let w = ConfigWarning {
            path: "conf/local_job.cfg".into(),
            line: Some(12),
            key: "foo".into(),
            message: "unknown key, ignored".into(),
        };
        assert_eq!(
            w.to_string(),
            "conf/local_job.cfg:12: key `foo`: unknown key, ignored"
        );
    }
}
