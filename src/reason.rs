//! Why a file failed or was skipped: the one word audit.log, error.list and report.jsonl carry
//! for it. The words are stable (users grep error.list for them, `retry` and the tracker read
//! them back), so [`Reason::as_str`] is the on-disk form and [`Reason::from_str`] its inverse.

use std::fmt;
use std::str::FromStr;

/// Every reason word the tool writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The path makes no valid object key.
    InvalidKey,
    /// The file changed (size, version, mtime) after it was listed, or the audit found
    /// another size at the destination.
    SizeNotMatch,
    /// The file was deleted after it was listed (or an http list names a URL that answers 404).
    FileNotFound,
    /// The source refused a read or could not be listed.
    ReadError,
    /// The destination failed a request after every retry.
    UploadError,
    /// A line of the http list that names no file (too few columns, not a URL).
    BadListLine,
    /// Audit: the object is not at the destination.
    Missing,
    /// Audit: the object is older than the file, or records another source mtime.
    MtimeNotMatch,
    /// Audit: Content-Type or our metadata differ.
    HeaderNotMatch,
    /// Audit: the content checksum differs.
    ChecksumNotMatch,
    /// Skipped: a folder marker of an object store's console (a key ending in `/`, 0 bytes).
    Folder,
    /// Skipped on retry: the file that had failed no longer exists.
    Removed,
    /// Skipped: already at the destination (`isSkipExistFile`).
    Exists,
    /// Skipped by an audit job: modified after `lastModify`.
    Modified,
    /// Skipped: an entry that could not be listed was listed again into new tasks.
    Relisted,
    /// The transfer of the file crashed (a panic), so it has no result of its own.
    Unexpected,
}

impl Reason {
    /// Every variant, for parsing and for tests.
    pub const ALL: [Reason; 16] = [
        Reason::InvalidKey,
        Reason::SizeNotMatch,
        Reason::FileNotFound,
        Reason::ReadError,
        Reason::UploadError,
        Reason::BadListLine,
        Reason::Missing,
        Reason::MtimeNotMatch,
        Reason::HeaderNotMatch,
        Reason::ChecksumNotMatch,
        Reason::Folder,
        Reason::Removed,
        Reason::Exists,
        Reason::Modified,
        Reason::Relisted,
        Reason::Unexpected,
    ];

    /// The word as it is written to audit.log and error.list.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidKey => "INVALID_KEY",
            Reason::SizeNotMatch => "SIZE_NOT_MATCH",
            Reason::FileNotFound => "FILE_NOT_FOUND",
            Reason::ReadError => "READ_ERROR",
            Reason::UploadError => "UPLOAD_ERROR",
            Reason::BadListLine => "BAD_LIST_LINE",
            Reason::Missing => "MISSING",
            Reason::MtimeNotMatch => "MTIME_NOT_MATCH",
            Reason::HeaderNotMatch => "HEADER_NOT_MATCH",
            Reason::ChecksumNotMatch => "CHECKSUM_NOT_MATCH",
            Reason::Folder => "FOLDER",
            Reason::Removed => "REMOVED",
            Reason::Exists => "EXISTS",
            Reason::Modified => "MODIFIED",
            Reason::Relisted => "RELISTED",
            Reason::Unexpected => "UNEXPECTED",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is no reason this tool writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason `{0}`")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(word: &str) -> Result<Reason, UnknownReason> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == word)
            .ok_or_else(|| UnknownReason(word.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_word() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
            assert_eq!(reason.to_string(), reason.as_str());
        }
    }

    #[test]
    fn the_words_are_the_ones_on_disk() {
        let words: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            words,
            [
                "INVALID_KEY",
                "SIZE_NOT_MATCH",
                "FILE_NOT_FOUND",
                "READ_ERROR",
                "UPLOAD_ERROR",
                "BAD_LIST_LINE",
                "MISSING",
                "MTIME_NOT_MATCH",
                "HEADER_NOT_MATCH",
                "CHECKSUM_NOT_MATCH",
                "FOLDER",
                "REMOVED",
                "EXISTS",
                "MODIFIED",
                "RELISTED",
                "UNEXPECTED",
            ]
        );
    }

    #[test]
    fn other_words_are_refused() {
        for word in ["-", "", "ok", "size_not_match", "AUDIT_FAILED"] {
            assert!(word.parse::<Reason>().is_err(), "{word}");
        }
    }
}
