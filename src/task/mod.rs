//! Tasks: their ids and the TASK file that describes one (see README "On-disk formats").

pub mod record;

use std::fmt;
use std::path::Path;

use md5::{Digest, Md5};

use crate::error::{Error, IoContext, Result};
use crate::escape;
use crate::source::{RelPath, SourceObject};

/// `<32 upper-case hex>_<13-digit epoch ms>@localhost`, as the original names task folders.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// Stable hash of the task's content: the same split gives the same hash.
    pub hash: String,
    /// When this attempt of the task was created.
    pub millis: u64,
}

impl TaskId {
    pub fn new(hash: String) -> Self {
        TaskId {
            hash,
            millis: now_millis(),
        }
    }

    /// The id without `@host`, as `stat` prints it.
    pub fn short(&self) -> String {
        format!("{}_{:013}", self.hash, self.millis)
    }

    pub fn parse(name: &str) -> Option<TaskId> {
        let (head, _host) = name.split_once('@')?;
        let (hash, millis) = head.split_once('_')?;
        let ok_hash = hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        (ok_hash && millis.len() == 13)
            .then(|| millis.parse().ok())
            .flatten()
            .map(|millis| TaskId {
                hash: hash.to_string(),
                millis,
            })
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@localhost", self.short())
    }
}

pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The content of a TASK file: which files a task moves, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub job: String,
    pub round: u32,
    /// The scan unit the files came from (`retry` tasks keep their original unit).
    pub unit: String,
    /// 1 for the first run; each `retry` adds one.
    pub attempt: u32,
    pub files: Vec<SourceObject>,
}

const TASK_MAGIC: &str = "# ossimport-rs task v1";
const PLAIN_COLUMNS: &str = "--- size mtime path";
/// `version` is the source's change marker, `locator` where the source finds the object (an
/// http list's URL); each escaped without spaces, `-` when there is none.
const VERSIONED_COLUMNS: &str = "--- size mtime version locator path";

/// An optional text as one column: no spaces, and `-` only when there is none.
fn column(v: Option<&str>) -> String {
    match v {
        None => "-".to_string(),
        Some("-") => "\\x2D".to_string(),
        Some(v) => escape::escape(v.as_bytes()).replace(' ', "\\x20"),
    }
}

/// The inverse of [`column`].
fn parse_column(v: &str) -> Option<Option<String>> {
    match v {
        "-" => Some(None),
        v => Some(Some(
            String::from_utf8_lossy(&escape::unescape(v)?).into_owned(),
        )),
    }
}

impl TaskSpec {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The stable content hash naming the task: upper-case hex MD5 of its text without the
    /// attempt, so re-splitting the same files after a crash finds the same task.
    pub fn content_hash(&self) -> String {
        let mut md5 = Md5::new();
        md5.update(format!(
            "{}\n{}\n{}\n{}\n",
            self.job, self.round, self.unit, self.attempt
        ));
        for f in &self.files {
            md5.update(&f.path.0);
            md5.update(b"\n");
        }
        md5.finalize().iter().map(|b| format!("{b:02X}")).collect()
    }

    pub fn to_text(&self) -> String {
        // Sources with a change marker add a column; local tasks keep the first format.
        let versioned = self
            .files
            .iter()
            .any(|f| f.version.is_some() || f.locator.is_some());
        let columns = if versioned {
            VERSIONED_COLUMNS
        } else {
            PLAIN_COLUMNS
        };
        let mut out = format!(
            "{TASK_MAGIC}\njob={}\nround={}\nunit={}\nattempt={}\nfiles={}\nbytes={}\n{columns}\n",
            self.job,
            self.round,
            escape::escape(self.unit.as_bytes()),
            self.attempt,
            self.files.len(),
            self.total_bytes()
        );
        for f in &self.files {
            if versioned {
                let version = column(f.version.as_deref());
                let locator = column(f.locator.as_deref());
                out.push_str(&format!(
                    "{} {} {version} {locator} {}\n",
                    f.size, f.mtime, f.path
                ));
            } else {
                out.push_str(&format!("{} {} {}\n", f.size, f.mtime, f.path));
            }
        }
        out
    }

    /// # Errors
    /// When the text is not a TASK file of this format; the error names `path` and the line.
    pub fn parse(text: &str, path: &Path) -> Result<TaskSpec> {
        let bad = |line: usize, what: &str| Error::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "line {line}: {what}; the task file is damaged, run `console.sh clean` and submit again"
            ),
        };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, TASK_MAGIC)) => {}
            _ => return Err(bad(1, "not an ossimport-rs TASK file")),
        }
        let mut spec = TaskSpec {
            job: String::new(),
            round: 0,
            unit: String::new(),
            attempt: 1,
            files: Vec::new(),
        };
        let mut expected_files = None;
        let mut versioned = false;
        for (n, line) in lines.by_ref() {
            if line.starts_with("---") {
                versioned = line == VERSIONED_COLUMNS;
                break;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad(n, "expected key=value"))?;
            match k {
                "job" => spec.job = v.to_string(),
                "round" => spec.round = v.parse().map_err(|_| bad(n, "bad round"))?,
                "unit" => {
                    let raw = escape::unescape(v).ok_or_else(|| bad(n, "bad unit"))?;
                    spec.unit = String::from_utf8_lossy(&raw).into_owned();
                }
                "attempt" => spec.attempt = v.parse().map_err(|_| bad(n, "bad attempt"))?,
                "files" => {
                    expected_files = Some(v.parse::<usize>().map_err(|_| bad(n, "bad files"))?)
                }
                _ => {} // newer header keys are ignored, so old binaries read new files
            }
        }
        for (n, line) in lines {
            let mut parts = line.splitn(if versioned { 5 } else { 3 }, ' ');
            let (Some(size), Some(mtime)) = (parts.next(), parts.next()) else {
                return Err(bad(n, "expected `<size> <mtime> <path>`"));
            };
            let (version, locator) = if versioned {
                let mut next = || {
                    parts.next().and_then(parse_column).ok_or_else(|| {
                        bad(n, "expected `<size> <mtime> <version> <locator> <path>`")
                    })
                };
                (next()?, next()?)
            } else {
                (None, None)
            };
            let Some(p) = parts.next() else {
                return Err(bad(n, "expected `<size> <mtime> <path>`"));
            };
            let mut file = SourceObject::new(
                RelPath(escape::unescape(p).ok_or_else(|| bad(n, "bad path escape"))?),
                size.parse().map_err(|_| bad(n, "bad size"))?,
                mtime.parse().map_err(|_| bad(n, "bad mtime"))?,
            );
            file.version = version;
            file.locator = locator;
            spec.files.push(file);
        }
        if !text.ends_with('\n') || expected_files.is_some_and(|n| n != spec.files.len()) {
            return Err(bad(0, "file count does not match the header (truncated?)"));
        }
        Ok(spec)
    }

    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn read(path: &Path) -> Result<TaskSpec> {
        let text = std::fs::read_to_string(path).ctx("cannot read task file", path)?;
        TaskSpec::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TaskSpec {
        TaskSpec {
            job: "local_test".into(),
            round: 0,
            unit: "tree:dir a".into(),
            attempt: 1,
            files: vec![
                SourceObject::new(RelPath(b"dir a/x y.txt".to_vec()), 5, 1700000000),
                SourceObject::new(RelPath(b"dir a/bad\xffname".to_vec()), 0, 1),
            ],
        }
    }

    #[test]
    fn task_file_round_trips() {
        let spec = sample();
        let text = spec.to_text();
        assert!(text.contains("5 1700000000 dir a/x y.txt\n"), "{text}");
        assert_eq!(TaskSpec::parse(&text, Path::new("TASK")).unwrap(), spec);
    }

    #[test]
    fn versions_round_trip_in_their_own_column() {
        let mut spec = sample();
        spec.files[0].version = Some("\"9b2cf535f27731c974343645a3985328\"".into());
        spec.files[1].version = Some("Wed, 21 Oct 2015 07:28:00 GMT".into());
        spec.files[1].locator = Some("http://h/a b".into());
        let text = spec.to_text();
        assert!(
            text.contains("--- size mtime version locator path\n"),
            "{text}"
        );
        assert!(text.contains(" - dir a/x y.txt\n"), "{text}");
        assert!(text.contains("Wed,\\x2021"), "{text}");
        assert_eq!(TaskSpec::parse(&text, Path::new("TASK")).unwrap(), spec);
    }

    #[test]
    fn truncated_task_file_is_an_error_naming_the_file() {
        let text = sample().to_text();
        let cut = &text[..text.len() - 10];
        let err = TaskSpec::parse(cut, Path::new("x/TASK"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x/TASK"), "{err}");
    }

    #[test]
    fn hash_is_stable_and_depends_on_attempt() {
        let a = sample();
        let mut b = sample();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_eq!(a.content_hash().len(), 32);
        b.attempt = 2;
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn task_id_round_trips() {
        let id = TaskId {
            hash: "A41506C07BF1DF2A3EDB4CE31756B93F".into(),
            millis: 1499744514501,
        };
        assert_eq!(
            id.to_string(),
            "A41506C07BF1DF2A3EDB4CE31756B93F_1499744514501@localhost"
        );
        assert_eq!(TaskId::parse(&id.to_string()), Some(id));
        assert_eq!(TaskId::parse("nonsense"), None);
    }
}
