//! The durable record of a running task's finished files.
//!
//! While a task runs, results go to `worker/jobs/<job>/tasks/<id>/journal-<seq>.log`
//! segments: each is written whole (temp, fsync, rename), holding every result that arrived
//! since the previous one (group commit). A file is "done" once its line is in a segment, so
//! after a crash the task resumes with exactly the files whose results were not yet durable.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::relpath::RelPath;
use crate::task::TaskSpec;
use crate::task::record::{FileRecord, Progress};
use crate::workdir::{list_names, write_atomic};

const SEGMENT_PREFIX: &str = "journal-";

/// The durable record of a running task's finished files.
pub struct TaskJournal {
    dir: PathBuf,
    next_seq: u64,
    records: Vec<FileRecord>,
    progress: Progress,
}

impl TaskJournal {
    /// Opens (or creates) the journal of a task, reading what an earlier run left.
    ///
    /// # Errors
    /// When the folder cannot be created or read.
    pub fn open(dir: PathBuf, spec: &TaskSpec) -> Result<TaskJournal> {
        fs::create_dir_all(&dir).ctx("cannot create folder", &dir)?;
        let mut records = Vec::new();
        let mut next_seq = 0;
        for name in list_names(&dir)? {
            let Some(seq) = name
                .strip_prefix(SEGMENT_PREFIX)
                .and_then(|s| s.strip_suffix(".log"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            next_seq = next_seq.max(seq + 1);
            let path = dir.join(&name);
            let text = fs::read_to_string(&path).ctx("cannot read journal", &path)?;
            records.extend(text.lines().filter_map(FileRecord::parse_audit_line));
        }
        let mut progress = Progress {
            total_bytes: spec.total_bytes(),
            total_files: spec.files.len() as u64,
            ..Progress::default()
        };
        for r in &records {
            progress.done_bytes += r.size;
            progress.done_files += 1;
        }
        let journal = TaskJournal {
            dir,
            next_seq,
            records,
            progress,
        };
        journal.write_progress(0)?;
        Ok(journal)
    }

    /// The files that already have a durable result.
    pub fn done_paths(&self) -> HashSet<RelPath> {
        self.records.iter().map(|r| r.path.clone()).collect()
    }

    /// Makes a batch of results durable in one new segment.
    ///
    /// # Errors
    /// When the segment cannot be written.
    pub fn append(&mut self, batch: Vec<FileRecord>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let text: String = batch.iter().map(FileRecord::audit_line).collect();
        let path = self
            .dir
            .join(format!("{SEGMENT_PREFIX}{:08}.log", self.next_seq));
        write_atomic(&path, text.as_bytes())?;
        self.next_seq += 1;
        for r in &batch {
            self.progress.done_bytes += r.size;
            self.progress.done_files += 1;
        }
        self.records.extend(batch);
        Ok(())
    }

    /// Rewrites the PROGRESS file `stat` reads: the finished files, plus `in_flight` bytes of
    /// large files whose finished parts are on the server but whose upload goes on.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_progress(&self, in_flight: u64) -> Result<()> {
        let mut progress = self.progress;
        progress.done_bytes = (progress.done_bytes + in_flight).min(progress.total_bytes);
        write_atomic(&self.dir.join("PROGRESS"), progress.to_text().as_bytes())
    }

    pub fn records(&self) -> &[FileRecord] {
        &self.records
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
