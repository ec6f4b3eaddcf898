//! `retry`: each failed task becomes a new pending task holding only its failed files.
//!
//! The failed folder is first renamed into pending_tasks under a hidden `.retry-` name (one
//! atomic step, so it is never in two places), rewritten there, then renamed to its new id.
//! A crash in between is finished by [`finish_staged`] at the next service start.

use std::collections::HashSet;
use std::fs;

use crate::error::Result;
use crate::task::record::parse_error_list;
use crate::task::{TaskId, TaskSpec};
use crate::tracker::PREVIOUS_AUDIT;
use crate::workdir::{TaskState, WorkDir, rename_durable, write_atomic};

const STAGING_PREFIX: &str = ".retry-";

/// Puts every failed task of `job` back to run; returns how many.
///
/// # Errors
/// When a task folder cannot be read, written or moved.
pub fn retry_failed(workdir: &WorkDir, job: &str) -> Result<usize> {
    let failed = crate::workdir::list_names(&workdir.state_dir(job, TaskState::Failed))?;
    for name in &failed {
        let staged = workdir.task_dir(job, TaskState::Pending, &format!("{STAGING_PREFIX}{name}"));
        rename_durable(&workdir.task_dir(job, TaskState::Failed, name), &staged)?;
        convert(workdir, job, &staged)?;
    }
    Ok(failed.len())
}

/// Completes retries that a crash interrupted.
///
/// # Errors
/// When a staged folder cannot be converted.
pub fn finish_staged(workdir: &WorkDir, job: &str) -> Result<()> {
    let pending = workdir.state_dir(job, TaskState::Pending);
    let Ok(entries) = fs::read_dir(&pending) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            convert(workdir, job, &entry.path())?;
        }
    }
    Ok(())
}

fn convert(workdir: &WorkDir, job: &str, staged: &std::path::Path) -> Result<()> {
    let task_file = staged.join("TASK");
    let mut spec = TaskSpec::read(&task_file)?;
    let error_list = staged.join("error.list");
    // No error.list means an earlier run already narrowed TASK down to the failed files.
    if let Ok(text) = fs::read_to_string(&error_list) {
        let failed: HashSet<_> = parse_error_list(&text).into_iter().collect();
        spec.files.retain(|f| failed.contains(&f.path));
        spec.attempt += 1;
        write_atomic(&task_file, spec.to_text().as_bytes())?;
        let audit = staged.join("audit.log");
        if audit.exists() {
            rename_durable(&audit, &staged.join(PREVIOUS_AUDIT))?;
        }
        for leftover in ["STATUS", "DONE", "error.list"] {
            let _ = fs::remove_file(staged.join(leftover));
        }
        crate::workdir::sync_dir(staged)
            .map_err(|e| crate::Error::io("cannot sync folder", staged, e))?;
    }
    let id = TaskId::new(spec.content_hash());
    rename_durable(
        staged,
        &workdir.task_dir(job, TaskState::Pending, &id.to_string()),
    )
}
