//! How the master writes a task folder: whole or not at all (built under a temp name, then
//! renamed), and finds one by content hash after a restart.

use std::fs;

use crate::error::{IoContext, Result};
use crate::task::record::{FileRecord, Outcome};
use crate::task::{TaskId, TaskSpec};
use crate::workdir::{
    TaskState, WorkDir, list_names, rename_durable, sync_dir, temp_sibling, write_atomic,
};

use super::Unlisted;

/// True when a task with this content hash exists in any state.
pub(super) fn task_exists(workdir: &WorkDir, job: &str, hash: &str) -> Result<bool> {
    for state in TaskState::ALL {
        if list_names(&workdir.state_dir(job, state))?
            .iter()
            .any(|n| n.starts_with(hash))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Creates `<state>/<id>/` with its TASK file and `extra` files, all at once.
fn create_task(
    workdir: &WorkDir,
    state: TaskState,
    spec: &TaskSpec,
    id: &TaskId,
    extra: &[(&str, &[u8])],
) -> Result<()> {
    let final_dir = workdir.task_dir(&spec.job, state, &id.to_string());
    let tmp = temp_sibling(&final_dir);
    fs::create_dir_all(&tmp).ctx("cannot create folder", &tmp)?;
    write_atomic(&tmp.join("TASK"), spec.to_text().as_bytes())?;
    for (name, bytes) in extra {
        write_atomic(&tmp.join(name), bytes)?;
    }
    sync_dir(&tmp).ctx("cannot sync folder", &tmp)?;
    rename_durable(&tmp, &final_dir)
}

/// Puts a task in pending_tasks, unless `check_duplicate` finds it made before a crash; returns
/// its id either way.
pub(super) fn create_pending(
    workdir: &WorkDir,
    spec: &TaskSpec,
    check_duplicate: bool,
) -> Result<TaskId> {
    let hash = spec.content_hash();
    let id = TaskId::new(hash.clone());
    if !(check_duplicate && task_exists(workdir, &spec.job, &hash)?) {
        create_task(workdir, TaskState::Pending, spec, &id, &[])?;
    }
    Ok(id)
}

/// Entries the listing could not read become a failed task of their own (error.list says
/// why), so the job ends Failed and says which instead of silently missing them; `retry`
/// lists them again. Born failed, never run: the master writes it whole into failed_tasks.
pub(super) fn create_unlisted(
    workdir: &WorkDir,
    mut spec: TaskSpec,
    unlisted: Vec<Unlisted>,
) -> Result<()> {
    // Its own hash: the same paths listed fine after a restart make a task of their own.
    spec.unit.push_str(super::UNLISTED_SUFFIX);
    let hash = spec.content_hash();
    if task_exists(workdir, &spec.job, &hash)? {
        return Ok(());
    }
    let records: Vec<FileRecord> = unlisted
        .into_iter()
        .map(|u| {
            let detail = format!("cannot list it: {}", u.message);
            FileRecord::new(Outcome::Failed, Some(u.reason), 0, u.path, detail)
        })
        .collect();
    let audit: String = records.iter().map(FileRecord::audit_line).collect();
    let errors: String = records.iter().map(FileRecord::error_line).collect();
    let id = TaskId::new(hash);
    let audit = format!("# task {id}\n{audit}");
    let files: [(&str, &[u8]); 3] = [
        ("audit.log", audit.as_bytes()),
        ("error.list", errors.as_bytes()),
        ("STATUS", b"Failed"),
    ];
    create_task(workdir, TaskState::Failed, &spec, &id, &files)
}
