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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use crate::source::{RelPath, SourceObject};
    use crate::task::record::{FileRecord, Outcome};
    use crate::tracker::{TaskJournal, finish_task};
    use crate::workdir::list_names;

    const JOB: &str = "j";

    /// A task of three files whose first attempt failed `b` only, finished by the tracker.
    fn failed_task(wd: &WorkDir) -> String {
        wd.create_job_layout(JOB).unwrap();
        let spec = TaskSpec {
            job: JOB.into(),
            round: 0,
            unit: "tree:".into(),
            attempt: 1,
            files: ["a", "b", "c"]
                .iter()
                .map(|p| SourceObject::new(RelPath(p.as_bytes().to_vec()), 10, 1))
                .collect(),
        };
        let id = TaskId::new(spec.content_hash());
        let dir = wd.task_dir(JOB, TaskState::Dispatched, &id.to_string());
        fs::create_dir_all(&dir).unwrap();
        write_atomic(&dir.join("TASK"), spec.to_text().as_bytes()).unwrap();
        let mut journal =
            TaskJournal::open(wd.worker_task_dir(JOB, &id.to_string()), &spec).unwrap();
        let rec = |outcome, why, path: &str| {
            FileRecord::new(outcome, why, 10, RelPath(path.into()), "test")
        };
        journal
            .append(vec![
                rec(Outcome::Ok, None, "a"),
                rec(Outcome::Failed, Some(Reason::UploadError), "b"),
                rec(Outcome::Ok, None, "c"),
            ])
            .unwrap();
        finish_task(wd, JOB, &id, &journal).unwrap();
        assert_eq!(
            list_names(&wd.state_dir(JOB, TaskState::Failed)).unwrap(),
            vec![id.to_string()]
        );
        id.to_string()
    }

    /// The one pending task left, checked to be the narrowed retry of `failed_task`.
    fn assert_one_retry_pending(wd: &WorkDir, old: &str) {
        assert_eq!(staged_count(wd, JOB), 0);
        let pending = list_names(&wd.state_dir(JOB, TaskState::Pending)).unwrap();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_ne!(pending[0], old, "a retry is a task of its own");
        assert!(
            list_names(&wd.state_dir(JOB, TaskState::Failed))
                .unwrap()
                .is_empty()
        );
        let dir = wd.task_dir(JOB, TaskState::Pending, &pending[0]);
        let spec = TaskSpec::read(&dir.join("TASK")).unwrap();
        assert_eq!(spec.attempt, 2);
        let paths: Vec<_> = spec.files.iter().map(|f| f.path.to_string()).collect();
        assert_eq!(paths, ["b"]);
        assert_eq!(
            TaskId::parse(&pending[0]).unwrap().hash,
            spec.content_hash()
        );
        let previous = fs::read_to_string(dir.join(PREVIOUS_AUDIT)).unwrap();
        assert!(
            previous.contains("# summary: ok=2 skipped=0 failed=1"),
            "{previous}"
        );
        assert_eq!(
            list_names(&dir).unwrap(),
            ["TASK", PREVIOUS_AUDIT],
            "no result of the old attempt is left to be mistaken for the new one's"
        );
    }

    #[test]
    fn a_failed_task_becomes_one_pending_task_of_its_failed_files() {
        let dir = tempfile::tempdir().unwrap();
        let wd = WorkDir::new(dir.path());
        let old = failed_task(&wd);
        assert_eq!(retry_failed(&wd, JOB).unwrap(), 1);
        assert_one_retry_pending(&wd, &old);
        assert_eq!(
            retry_failed(&wd, JOB).unwrap(),
            0,
            "nothing is failed any more"
        );
    }

    #[test]
    fn a_retry_cut_short_after_staging_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let wd = WorkDir::new(dir.path());
        let old = failed_task(&wd);
        // Where a crash right after `retry`'s first step leaves the task.
        let staged = wd.task_dir(JOB, TaskState::Pending, &format!("{STAGING_PREFIX}{old}"));
        rename_durable(&wd.task_dir(JOB, TaskState::Failed, &old), &staged).unwrap();
        assert_eq!(staged_count(&wd, JOB), 1, "stat counts it as pending");
        finish_staged(&wd, JOB).unwrap();
        assert_one_retry_pending(&wd, &old);
    }

    #[test]
    fn a_retry_cut_short_after_narrowing_is_finished_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        let wd = WorkDir::new(dir.path());
        let old = failed_task(&wd);
        let staged = wd.task_dir(JOB, TaskState::Pending, &format!("{STAGING_PREFIX}{old}"));
        rename_durable(&wd.task_dir(JOB, TaskState::Failed, &old), &staged).unwrap();
        // Where a crash in the middle of `convert` leaves it: the narrowed TASK written and
        // the audit.log moved aside, the old TASK and results still there.
        let mut spec = TaskSpec::read(&staged.join("TASK")).unwrap();
        spec.files.retain(|f| f.path.to_string() == "b");
        spec.attempt = 2;
        write_atomic(&staged.join("TASK.narrowed"), spec.to_text().as_bytes()).unwrap();
        rename_durable(&staged.join("audit.log"), &staged.join(PREVIOUS_AUDIT)).unwrap();
        finish_staged(&wd, JOB).unwrap();
        assert_one_retry_pending(&wd, &old);
    }
}
