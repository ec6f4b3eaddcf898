//! The end of a task: its audit.log, error.list, STATUS and DONE, and the move of its folder to
//! succeed_tasks or failed_tasks; and the repair of those moves after a crash.

use std::collections::HashSet;
use std::fs;

use super::journal::TaskJournal;
use crate::error::Result;
use crate::task::TaskId;
use crate::workdir::{TaskState, WorkDir, list_names, rename_durable, write_atomic};

/// In a retried task's folder: the audit.log of its earlier attempts.
pub const PREVIOUS_AUDIT: &str = "previous_audit.log";

/// How a finished task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOutcome {
    pub ok: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// Writes the finished task's files into its dispatched folder and moves it to
/// succeed_tasks or failed_tasks. Each step is atomic, and a crash between them is repaired
/// by [`recover_finished`] at the next start.
///
/// # Errors
/// When a file cannot be written or the folder cannot be moved.
pub fn finish_task(
    workdir: &WorkDir,
    job: &str,
    id: &TaskId,
    journal: &TaskJournal,
) -> Result<TaskOutcome> {
    let dir = workdir
        .find_dispatched(job, &id.to_string())
        .unwrap_or_else(|| workdir.task_dir(job, TaskState::Dispatched, &id.to_string()));
    let mut outcome = TaskOutcome {
        ok: 0,
        skipped: 0,
        failed: 0,
    };
    let mut errors = String::new();
    let mut lines = String::new();
    for r in journal.records() {
        match r.outcome {
            crate::task::record::Outcome::Ok => outcome.ok += 1,
            crate::task::record::Outcome::Skipped => outcome.skipped += 1,
            crate::task::record::Outcome::Failed => {
                outcome.failed += 1;
                errors.push_str(&r.error_line());
            }
        }
        lines.push_str(&r.audit_line());
    }
    // A retried task carries the audit.log of its earlier attempts; keep it above. Rebuilt
    // from that file and the journal, audit.log comes out the same if this step is redone.
    let audit_path = dir.join("audit.log");
    let mut audit = fs::read_to_string(dir.join(PREVIOUS_AUDIT)).unwrap_or_default();
    audit.push_str(&format!(
        "# task {id}\n# time\tresult\treason\tsize\tpath\tdetail\n"
    ));
    audit.push_str(&lines);
    audit.push_str(&format!(
        "# summary: ok={} skipped={} failed={}\n",
        outcome.ok, outcome.skipped, outcome.failed
    ));
    write_atomic(&audit_path, audit.as_bytes())?;
    write_atomic(&dir.join("error.list"), errors.as_bytes())?;
    let succeeded = outcome.failed == 0;
    if succeeded {
        write_atomic(&dir.join("DONE"), b"")?;
    }
    // STATUS last: its presence means every other file of the folder is complete.
    write_atomic(
        &dir.join("STATUS"),
        if succeeded { b"Completed" } else { b"Failed" },
    )?;
    move_finished(workdir, job, &dir, id, succeeded)?;
    let state = if succeeded {
        TaskState::Succeed
    } else {
        TaskState::Failed
    };
    let _ = fs::remove_file(
        workdir
            .task_dir(job, state, &id.to_string())
            .join(PREVIOUS_AUDIT),
    );
    let _ = fs::remove_dir_all(journal.dir());
    Ok(outcome)
}

fn move_finished(
    workdir: &WorkDir,
    job: &str,
    from: &std::path::Path,
    id: &TaskId,
    succeeded: bool,
) -> Result<()> {
    let to = if succeeded {
        TaskState::Succeed
    } else {
        TaskState::Failed
    };
    rename_durable(from, &workdir.task_dir(job, to, &id.to_string()))
}

/// Completes the moves a crash interrupted: dispatched folders that already have a STATUS,
/// and worker folders of tasks that are no longer dispatched. Returns the dispatched tasks
/// that still have to run.
///
/// # Errors
/// When the folders cannot be read or moved.
pub fn recover_finished(workdir: &WorkDir, job: &str) -> Result<Vec<TaskId>> {
    let mut to_run = Vec::new();
    for (name, dir) in workdir.dispatched_tasks(job)? {
        let Some(id) = TaskId::parse(&name) else {
            continue;
        };
        match fs::read_to_string(dir.join("STATUS")).ok().as_deref() {
            Some("Completed") => move_finished(workdir, job, &dir, &id, true)?,
            Some("Failed") => move_finished(workdir, job, &dir, &id, false)?,
            _ => to_run.push(id),
        }
    }
    forget_finished_relists(workdir, job, &to_run)?;
    let running: HashSet<String> = to_run.iter().map(TaskId::to_string).collect();
    let worker_dir = workdir.worker_tasks_dir(job);
    for name in list_names(&worker_dir)? {
        if !running.contains(&name) {
            let _ = fs::remove_dir_all(worker_dir.join(&name));
        }
    }
    Ok(to_run)
}

/// Removes the relisting markers whose task is no longer dispatched (a crash came between its
/// move and the marker's removal), so `stat` can call the scan finished again.
fn forget_finished_relists(workdir: &WorkDir, job: &str, running: &[TaskId]) -> Result<()> {
    let checkpoints = workdir.job_dir(job).join("checkpoints");
    for round in list_names(&checkpoints)? {
        for name in list_names(&checkpoints.join(&round))? {
            let Some(hash) = name.strip_prefix(crate::workdir::RELISTING_PREFIX) else {
                continue;
            };
            if !running.iter().any(|id| id.to_string().starts_with(hash)) {
                let _ = fs::remove_file(checkpoints.join(&round).join(&name));
            }
        }
    }
    Ok(())
}
