//! The tracker over its channel: results become durable, a complete task is moved by it alone,
//! an incomplete one is left to resume, and crashed transfers get a failure record.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Ended, Tracker};
use crate::relpath::RelPath;
use crate::source::SourceObject;
use crate::task::record::{FileRecord, Outcome};
use crate::task::{TaskId, TaskSpec};
use crate::workdir::{TaskState, WorkDir};

fn task(workdir: &WorkDir, files: &[&str]) -> (TaskId, Arc<TaskSpec>) {
    let spec = TaskSpec {
        job: "unit_job".into(),
        round: 0,
        unit: "tree:".into(),
        attempt: 1,
        files: files
            .iter()
            .map(|f| SourceObject::new(RelPath(f.as_bytes().to_vec()), 5, 0))
            .collect(),
    };
    let id = TaskId::new(spec.content_hash());
    let dir = workdir.task_dir("unit_job", TaskState::Dispatched, &id.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("TASK"), spec.to_text()).unwrap();
    (id, Arc::new(spec))
}

fn ok(path: &str) -> FileRecord {
    FileRecord::new(Outcome::Ok, None, 5, RelPath(path.as_bytes().to_vec()), "")
}

#[tokio::test]
async fn finishes_complete_tasks_leaves_incomplete_ones_and_records_crashes() {
    let work = tempfile::tempdir().unwrap();
    let workdir = WorkDir::new(work.path());
    workdir.create_job_layout("unit_job").unwrap();
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let (tracker, handle) = Tracker::new(workdir.clone(), "unit_job".into(), 4, ended_tx);
    let run = tokio::spawn(tracker.run());

    let (complete, spec) = task(&workdir, &["a", "b"]);
    assert!(
        handle
            .open(complete.clone(), spec)
            .await
            .unwrap()
            .is_empty()
    );
    handle.file(complete.clone(), ok("a")).await;
    handle.file(complete.clone(), ok("b")).await;
    handle.end(complete.clone(), None).await;

    let (partial, spec) = task(&workdir, &["c", "d"]);
    handle.open(partial.clone(), spec.clone()).await.unwrap();
    handle.file(partial.clone(), ok("c")).await;
    handle.end(partial.clone(), None).await;

    let (crashed, crashed_spec) = task(&workdir, &["e", "f"]);
    handle.open(crashed.clone(), crashed_spec).await.unwrap();
    handle.file(crashed.clone(), ok("e")).await;
    handle.end(crashed.clone(), Some("panicked".into())).await;

    let outcome = |ok, failed| super::TaskOutcome {
        ok,
        skipped: 0,
        failed,
    };
    assert_eq!(
        ended.recv().await,
        Some(Ended::Finished(complete.clone(), outcome(2, 0)))
    );
    assert_eq!(
        ended.recv().await,
        Some(Ended::Interrupted(partial.clone()))
    );
    assert_eq!(
        ended.recv().await,
        Some(Ended::Finished(crashed.clone(), outcome(1, 1)))
    );
    let dir = |state, id: &TaskId| workdir.task_dir("unit_job", state, &id.to_string());
    assert!(dir(TaskState::Succeed, &complete).join("DONE").exists());
    let errors =
        std::fs::read_to_string(dir(TaskState::Failed, &crashed).join("error.list")).unwrap();
    assert_eq!(errors, "UNEXPECTED\tf\tpanicked\n");
    assert!(dir(TaskState::Dispatched, &partial).join("TASK").exists());

    // The interrupted task resumes with its durable result.
    let done = handle.open(partial.clone(), spec).await.unwrap();
    assert_eq!(done.len(), 1);
    drop(handle);
    run.await.unwrap().unwrap();
}

/// Distributed mode: a task taken over by a second worker (an Open while it runs) gets the
/// results so far, durable or not; a result sent twice counts once; the worker hears whether
/// its End finished the task; a finished task's folder left another worker's host folder.
#[tokio::test]
async fn a_task_taken_over_resumes_with_every_result_and_duplicates_count_once() {
    let work = tempfile::tempdir().unwrap();
    let workdir = WorkDir::new(work.path());
    workdir.create_job_layout("unit_job").unwrap();
    let (ended_tx, _ended) = mpsc::unbounded_channel();
    let (tracker, handle) = Tracker::new(workdir.clone(), "unit_job".into(), 4, ended_tx);
    let run = tokio::spawn(tracker.run());

    let (id, spec) = task(&workdir, &["a", "b", "c"]);
    handle.open(id.clone(), spec.clone()).await.unwrap();
    handle.file(id.clone(), ok("a")).await;
    // Taken over before the result was flushed: the new worker must not send `a` again.
    let done = handle.open(id.clone(), spec.clone()).await.unwrap();
    assert_eq!(done, [RelPath(b"a".to_vec())].into_iter().collect());
    handle.file(id.clone(), ok("a")).await;
    handle.file(id.clone(), ok("b")).await;
    assert!(!handle.end_confirmed(id.clone(), None).await.unwrap());

    // The task moved to the host folder of the worker that took it; it finishes from there.
    let from = workdir.task_dir("unit_job", TaskState::Dispatched, &id.to_string());
    let to = workdir.dispatched_to("unit_job", "host-b", &id.to_string());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::rename(&from, &to).unwrap();
    assert_eq!(
        workdir.find_dispatched("unit_job", &id.to_string()),
        Some(to)
    );
    let done = handle.open(id.clone(), spec.clone()).await.unwrap();
    assert_eq!(done.len(), 2);
    handle.file(id.clone(), ok("c")).await;
    handle.sync().await.unwrap();
    assert!(handle.end_confirmed(id.clone(), None).await.unwrap());
    // An End heard again (the master restarted before its ack) changes nothing.
    assert!(handle.end_confirmed(id.clone(), None).await.unwrap());

    let audit = std::fs::read_to_string(
        workdir
            .task_dir("unit_job", TaskState::Succeed, &id.to_string())
            .join("audit.log"),
    )
    .unwrap();
    assert!(audit.contains("ok=3 skipped=0 failed=0"), "{audit}");
    assert_eq!(workdir.dispatched_tasks("unit_job").unwrap(), vec![]);
    drop(handle);
    run.await.unwrap().unwrap();
}
