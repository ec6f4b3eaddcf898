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
    finish_staged(workdir, job)?;
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

/// Narrows a staged task to its failed files and makes it pending. Every step can be
/// redone after a crash with the same result: the narrowed TASK is first written beside the
/// old one (`TASK.narrowed`), and only then do the old files go.
fn convert(workdir: &WorkDir, job: &str, staged: &std::path::Path) -> Result<()> {
    let task_file = staged.join("TASK");
    let narrowed = staged.join("TASK.narrowed");
    let error_list = staged.join("error.list");
    if !narrowed.exists()
        && let Ok(text) = fs::read_to_string(&error_list)
    {
        let mut spec = TaskSpec::read(&task_file)?;
        let failed: HashSet<_> = parse_error_list(&text).into_iter().collect();
        spec.files.retain(|f| failed.contains(&f.path));
        spec.attempt += 1;
        write_atomic(&narrowed, spec.to_text().as_bytes())?;
    }
    if narrowed.exists() {
        let audit = staged.join("audit.log");
        if audit.exists() {
            rename_durable(&audit, &staged.join(PREVIOUS_AUDIT))?;
        }
        for leftover in ["STATUS", "DONE", "error.list"] {
            let _ = fs::remove_file(staged.join(leftover));
        }
        rename_durable(&narrowed, &task_file)?;
    }
    let spec = TaskSpec::read(&task_file)?;
    let id = TaskId::new(spec.content_hash());
    rename_durable(
        staged,
        &workdir.task_dir(job, TaskState::Pending, &id.to_string()),
    )
}

/// Retries staged but not yet pending (a `retry` interrupted by a crash); `stat` counts
/// them as pending.
pub fn staged_count(workdir: &WorkDir, job: &str) -> usize {
    fs::read_dir(workdir.state_dir(job, TaskState::Pending))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(STAGING_PREFIX))
                .count()
        })
        .unwrap_or(0)
}
