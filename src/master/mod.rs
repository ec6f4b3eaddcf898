//! The master: lists the source unit by unit, splits the listing into tasks, persists each in
//! pending_tasks with its unit's checkpoint, and only then sends it to the dispatcher over a
//! bounded channel. In incremental mode a round starts only when the previous round's tasks
//! are all finished.
//!
//! Crash safety: entries the listing could not read are written (as a failed task) before the
//! checkpoint moves past them. The checkpoint is then written ahead of its task, marked
//! unconfirmed with the task's content hash; the task folder is complete before it appears
//! (built under a temp name and renamed). After a crash the advance is kept when that task
//! exists and undone when it does not, so a range is never lost and never split twice, even if
//! the source changed in between.

pub mod checkpoint;
mod scan;
mod store;
#[cfg(test)]
mod tests;

use std::fs;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::error::Result;
use crate::reason::Reason;
use crate::relpath::RelPath;
use crate::source::Source;
use crate::task::record::{FileRecord, Outcome};
use crate::task::{TaskId, TaskSpec};
use crate::workdir::{WorkDir, blocking, list_names, write_atomic};

/// The unit-id suffix of a task holding entries the listing could not read.
pub const UNLISTED_SUFFIX: &str = "#unlisted";

/// What the master tells the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// A round's scan begins: until it is finished, no round is done.
    RoundStarted(u32),
    /// A task is in pending_tasks.
    Task(TaskId),
    /// Every task of this round is in a task folder (its SCAN_FINISHED marker is written).
    RoundScanned(u32),
}

pub struct Master {
    pub job: Arc<JobConfig>,
    pub source: Arc<dyn Source>,
    pub workdir: WorkDir,
    pub cancel: CancellationToken,
    pub to_dispatcher: mpsc::Sender<Split>,
}

/// The newest scan round of a job (incremental mode adds one per interval); 0 before any.
pub fn current_round(workdir: &WorkDir, job: &str) -> u32 {
    let dir = workdir.job_dir(job).join("checkpoints");
    list_names(&dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
}

/// When a round's scan started (unix seconds), as recorded in its STARTED file.
pub fn round_started(workdir: &WorkDir, job: &str, round: u32) -> Option<i64> {
    let path = workdir.checkpoints_dir(job, round).join("STARTED");
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Which files a round takes: the first by `importSince` (strictly newer), later rounds of
/// incremental mode those modified since the previous round's scan started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    After(i64),
    AtOrAfter(i64),
}

impl Since {
    /// The first round's rule: `importSince`.
    pub(crate) fn first_round(job: &JobConfig) -> Since {
        Since::After(job.import_since)
    }

    pub(crate) fn takes(self, mtime: i64) -> bool {
        match self {
            Since::After(t) => t <= 0 || mtime > t,
            Since::AtOrAfter(t) => mtime >= t,
        }
    }
}

/// True when a task of `files` files and `bytes` bytes has no room for one more of `next`
/// bytes (`taskObjectCountLimit`, `taskObjectSizeLimit`); a file is never alone in a task
/// that is too small for it, whatever its size.
pub(crate) fn task_full(job: &JobConfig, files: usize, bytes: u64, next: u64) -> bool {
    files > 0
        && (files as u64 >= job.task_object_count_limit
            || bytes.saturating_add(next) > job.task_object_size_limit)
}

/// An entry the listing could not read, and how far into the unit's listing it came.
struct Unlisted {
    at: u64,
    path: RelPath,
    reason: Reason,
    message: String,
    locator: Option<String>,
}

impl Master {
    /// Lists and splits everything not yet split, round after round in incremental mode;
    /// returns when the (last) round is split, or early, resumable, when cancelled.
    /// `rounds_done` carries the newest round whose tasks have all finished.
    ///
    /// # Errors
    /// When the source cannot be listed at all or state cannot be written.
    pub async fn run(self: Arc<Self>, mut rounds_done: watch::Receiver<Option<u32>>) -> Result<()> {
        let job = &self.job.job_name;
        let mut round = current_round(&self.workdir, job);
        loop {
            self.scan_round(round, self.since(round)).await?;
            if self.cancel.is_cancelled() || !self.job.is_incremental {
                return Ok(());
            }
            // Two live tasks must never hold the same path (they would share its multipart
            // state and abort each other's upload): the next round waits for this one.
            tokio::select! {
                done = rounds_done.wait_for(|d| d.is_some_and(|d| d >= round)) => {
                    if done.is_err() {
                        return Ok(());
                    }
                }
                () = self.cancel.cancelled() => return Ok(()),
            }
            let started = round_started(&self.workdir, job, round).unwrap_or_else(now_secs);
            let next = started + self.job.incremental_mode_interval as i64;
            let wait = (next - now_secs()).max(0) as u64;
            tracing::info!(
                round,
                next_in_secs = wait,
                "incremental mode: round finished, waiting for the next scan"
            );
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
                () = self.cancel.cancelled() => return Ok(()),
            }
            round += 1;
        }
    }

    fn since(&self, round: u32) -> Since {
        match round {
            0 => Since::first_round(&self.job),
            r => Since::AtOrAfter(
                round_started(&self.workdir, &self.job.job_name, r - 1).unwrap_or(0),
            ),
        }
    }

    /// A retried task of entries the listing could not read: folders are listed again (their
    /// files go into new tasks through the dispatcher), other entries go into one new task to
    /// be sent again. Returns one record per entry, or `None` when the job stopped first.
    ///
    /// # Errors
    /// When the source cannot be listed at all or state cannot be written.
    pub async fn relist(&self, spec: &TaskSpec) -> Result<Option<Vec<FileRecord>>> {
        let since = self.since(spec.round);
        // Its new tasks appear after the round's SCAN_FINISHED: until the tracker has finished
        // this task, `stat` must not take the scan for finished.
        let marker = self
            .workdir
            .relisting_file(&spec.job, spec.round, &spec.content_hash());
        blocking(move || write_atomic(&marker, b"")).await?;
        let mut records = Vec::new();
        let mut files = Vec::new();
        for entry in &spec.files {
            let listed = match self.source.relist_unit(entry).await {
                Ok(None) => {
                    files.push(entry.clone());
                    continue;
                }
                Ok(Some(mut unit)) => {
                    unit.id = format!("{}:relist{}:{}", spec.unit, spec.attempt, unit.id);
                    self.scan_unit(&unit, spec.round, since).await
                }
                Err(e) => Err(e),
            };
            if self.cancel.is_cancelled() {
                return Ok(None);
            }
            // One entry that still cannot be read fails alone, for the next `retry`.
            records.push(match listed {
                Ok(()) => FileRecord::new(
                    Outcome::Skipped,
                    Some(Reason::Relisted),
                    0,
                    entry.path.clone(),
                    "listed again; its files are in new tasks",
                ),
                Err(e) => FileRecord::new(
                    Outcome::Failed,
                    Some(Reason::ReadError),
                    0,
                    entry.path.clone(),
                    format!("cannot list it again: {e}"),
                ),
            });
        }
        if !files.is_empty() {
            let retry = TaskSpec {
                job: spec.job.clone(),
                round: spec.round,
                unit: format!("{}:resend{}", spec.unit, spec.attempt),
                attempt: spec.attempt,
                files,
            };
            let workdir = self.workdir.clone();
            let (id, retry) = blocking(move || {
                store::create_pending(&workdir, &retry, true).map(|id| (id, retry))
            })
            .await?;
            let _ = self.to_dispatcher.send(Split::Task(id.clone())).await;
            records.extend(retry.files.into_iter().map(|f| {
                let detail = format!("to be sent again in task {id}");
                FileRecord::new(Outcome::Skipped, Some(Reason::Relisted), 0, f.path, detail)
            }));
        }
        Ok(Some(records))
    }
}
