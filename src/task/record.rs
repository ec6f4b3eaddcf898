//! The per-file result records of a task: audit.log lines, error.list lines, PROGRESS.
//!
//! audit.log line (tab-separated, one per file, in completion order):
//! `<UTC time>\t<OK|SKIPPED|FAILED>\t<REASON or ->\t<size>\t<escaped path>\t<detail>`
//! error.list line: `<REASON>\t<escaped path>\t<message>`.

use crate::escape::unescape;
use crate::reason::Reason;
use crate::relpath::RelPath;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Uploaded (and audited when enabled); `detail` says how it was proven.
    Ok,
    /// Not sent on purpose (e.g. already at the destination); not a failure.
    Skipped,
    /// The file did not make it; `reason` says why.
    Failed,
}

impl Outcome {
    fn word(&self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Skipped => "SKIPPED",
            Outcome::Failed => "FAILED",
        }
    }
}

/// The reason column of a record that has none (an OK file).
const NO_REASON: &str = "-";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub time: String,
    pub outcome: Outcome,
    /// `None` (written `-`) unless failed or skipped.
    pub reason: Option<Reason>,
    pub size: u64,
    pub path: RelPath,
    pub detail: String,
}

impl FileRecord {
    pub fn new(
        outcome: Outcome,
        reason: Option<Reason>,
        size: u64,
        path: RelPath,
        detail: impl Into<String>,
    ) -> Self {
        FileRecord {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            outcome,
            reason,
            size,
            path,
            detail: one_line(&detail.into()),
        }
    }

    pub fn is_failed(&self) -> bool {
        self.outcome == Outcome::Failed
    }

    /// The reason word as the record formats write it: `-` for none.
    pub fn reason_word(&self) -> &'static str {
        self.reason.map_or(NO_REASON, Reason::as_str)
    }

    pub fn audit_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            self.time,
            self.outcome.word(),
            self.reason_word(),
            self.size,
            self.path,
            self.detail
        )
    }

    /// Parses one audit.log line; `None` for header lines and torn or foreign lines.
    pub fn parse_audit_line(line: &str) -> Option<FileRecord> {
        let mut f = line.splitn(6, '\t');
        let time = f.next()?.to_string();
        let outcome = match f.next()? {
            "OK" => Outcome::Ok,
            "SKIPPED" => Outcome::Skipped,
            "FAILED" => Outcome::Failed,
            _ => return None,
        };
        // A word this tool does not write makes the line foreign, like a bad outcome.
        let reason = match f.next()? {
            NO_REASON => None,
            word => Some(word.parse().ok()?),
        };
        let size = f.next()?.parse().ok()?;
        let path = RelPath(unescape(f.next()?)?);
        let detail = f.next()?.to_string();
        Some(FileRecord {
            time,
            outcome,
            reason,
            size,
            path,
            detail,
        })
    }

    pub fn error_line(&self) -> String {
        format!("{}\t{}\t{}\n", self.reason_word(), self.path, self.detail)
    }
}

/// The paths named by an error.list text (for `retry`).
pub fn parse_error_list(text: &str) -> Vec<RelPath> {
    text.lines()
        .filter_map(|l| l.split('\t').nth(1))
        .filter_map(unescape)
        .map(RelPath)
        .collect()
}

/// A message squeezed onto one line so it cannot break the record formats.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `<doneBytes> <totalBytes> <doneFiles> <totalFiles>`, the content of a running task's
/// PROGRESS file and the numbers of its `stat` progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub done_files: u64,
    pub total_files: u64,
}

impl Progress {
    pub fn to_text(self) -> String {
        format!(
            "{} {} {} {}\n",
            self.done_bytes, self.total_bytes, self.done_files, self.total_files
        )
    }

    pub fn parse(text: &str) -> Option<Progress> {
        let n: Vec<u64> = text
            .split_whitespace()
            .map(|s| s.parse().ok())
            .collect::<Option<_>>()?;
        match n[..] {
            [done_bytes, total_bytes, done_files, total_files] => Some(Progress {
                done_bytes,
                total_bytes,
                done_files,
                total_files,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_line_round_trips_and_error_list_names_the_path() {
        let rec = FileRecord::new(
            Outcome::Failed,
            Some(Reason::InvalidKey),
            7,
            RelPath(b"a\tb/c d".to_vec()),
            "key is 1100 bytes;\nOSS allows 1023",
        );
        let line = rec.audit_line();
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(
            FileRecord::parse_audit_line(line.trim_end_matches('\n')),
            Some(rec.clone())
        );
        let errors = rec.error_line();
        assert!(errors.starts_with("INVALID_KEY\ta\\x09b/c d\t"), "{errors}");
        assert_eq!(parse_error_list(&errors), vec![rec.path]);
    }

    #[test]
    fn an_ok_record_has_no_reason_and_a_foreign_word_makes_a_foreign_line() {
        let rec = FileRecord::new(Outcome::Ok, None, 3, RelPath(b"f".to_vec()), "key=f");
        let line = rec.audit_line();
        assert_eq!(line.split('\t').nth(2), Some("-"), "{line}");
        assert_eq!(FileRecord::parse_audit_line(line.trim_end()), Some(rec));
        let foreign = "2024-01-01T00:00:00.000Z\tFAILED\tNO_SUCH_WORD\t3\tf\tx";
        assert_eq!(FileRecord::parse_audit_line(foreign), None);
    }

    #[test]
    fn progress_round_trips() {
        let p = Progress {
            done_bytes: 1,
            total_bytes: 2,
            done_files: 3,
            total_files: 4,
        };
        assert_eq!(Progress::parse(&p.to_text()), Some(p));
        assert_eq!(Progress::parse("1 2"), None);
    }
}
