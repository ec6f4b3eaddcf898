//! The tracker: one tokio task that receives every file result from the workers over a bounded
//! channel, journals them (group commit), keeps each running task's PROGRESS, and when a task
//! ends writes its audit.log, error.list, STATUS and DONE and moves the folder to
//! succeed_tasks/failed_tasks. It alone moves finished tasks; the dispatcher hears of each end.

mod finish;
mod journal;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use finish::{PREVIOUS_AUDIT, TaskOutcome, finish_task, recover_finished};
pub use journal::TaskJournal;

use crate::error::{Error, Result};
use crate::reason::Reason;
use crate::relpath::RelPath;
use crate::task::record::{FileRecord, Outcome};
use crate::task::{TaskId, TaskSpec};
use crate::workdir::{WorkDir, blocking};

/// Longest a finished file's result waits before it is made durable. Results waiting count as
/// in flight: after a crash those files are sent again.
const JOURNAL_LINGER: Duration = Duration::from_millis(100);
/// Most results in one journal segment.
const JOURNAL_BATCH: usize = 1024;
/// How often the PROGRESS of a large file's finished parts is written.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the workers tell the tracker.
pub enum Event {
    /// A task starts or resumes; the reply holds the files that already have a durable result.
    Open {
        id: TaskId,
        spec: Arc<TaskSpec>,
        reply: oneshot::Sender<Result<HashSet<RelPath>>>,
    },
    /// One file's result.
    File { id: TaskId, record: FileRecord },
    /// A finished part of a large file still in flight.
    Part {
        id: TaskId,
        path: RelPath,
        bytes: u64,
    },
    /// The worker started every file it will: all of them, or fewer when the job stops.
    /// `crashed` says why some transfers ended without a result, if any did. `reply`, if
    /// any, hears whether the task finished (true) or was left to resume (false).
    End {
        id: TaskId,
        crashed: Option<String>,
        reply: Option<oneshot::Sender<Result<bool>>>,
    },
    /// Makes every result received so far durable, then answers.
    Sync { reply: oneshot::Sender<Result<()>> },
    /// How many files of a running task have a result (0 when it is not running).
    Results {
        id: TaskId,
        reply: oneshot::Sender<Result<usize>>,
    },
}

/// What the tracker tells the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Moved to succeed_tasks or failed_tasks.
    Finished(TaskId, TaskOutcome),
    /// Left in dispatched with files still to do; the next start resumes it.
    Interrupted(TaskId),
}

/// The workers' side of the tracker's channel.
#[derive(Clone)]
pub struct TrackerHandle {
    tx: mpsc::Sender<Event>,
}

impl TrackerHandle {
    /// A handle whose events go to `capacity`-deep channel the caller reads (a distributed
    /// worker forwards them to the master's tracker).
    pub fn channel(capacity: usize) -> (TrackerHandle, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity);
        (TrackerHandle { tx }, rx)
    }
}

fn gone() -> Error {
    Error::Internal("the tracker stopped".into())
}

impl TrackerHandle {
    /// # Errors
    /// When the task's journal cannot be read or the tracker stopped.
    pub async fn open(&self, id: TaskId, spec: Arc<TaskSpec>) -> Result<HashSet<RelPath>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Event::Open { id, spec, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub async fn file(&self, id: TaskId, record: FileRecord) {
        let _ = self.tx.send(Event::File { id, record }).await;
    }

    pub async fn part(&self, id: TaskId, path: RelPath, bytes: u64) {
        let _ = self.tx.send(Event::Part { id, path, bytes }).await;
    }

    pub async fn end(&self, id: TaskId, crashed: Option<String>) {
        let reply = None;
        let _ = self.tx.send(Event::End { id, crashed, reply }).await;
    }

    /// Ends a task and says whether it finished (true) or was left to resume (false).
    ///
    /// # Errors
    /// When the task's results cannot be written or the tracker stopped.
    pub async fn end_confirmed(&self, id: TaskId, crashed: Option<String>) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        let reply = Some(reply);
        self.tx
            .send(Event::End { id, crashed, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// How many files of a running task have a result, durable or not.
    ///
    /// # Errors
    /// When the tracker stopped.
    pub async fn results(&self, id: TaskId) -> Result<usize> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Event::Results { id, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Returns once every result sent before is durable.
    ///
    /// # Errors
    /// When results cannot be written or the tracker stopped.
    pub async fn sync(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Event::Sync { reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Hands `result` to whoever asked and gives it back: a failure still stops the tracker.
fn answer<T: Copy>(reply: Option<oneshot::Sender<Result<T>>>, result: Result<T>) -> Result<T> {
    if let Some(reply) = reply {
        let copy = match &result {
            Ok(v) => Ok(*v),
            Err(e) => Err(Error::Internal(e.to_string())),
        };
        let _ = reply.send(copy);
    }
    result
}

/// A running task as the tracker sees it.
struct Running {
    spec: Arc<TaskSpec>,
    /// None while its journal is being written on the blocking pool.
    journal: Option<TaskJournal>,
    /// Files with a result, durable or in `batch`: a result sent twice (a task a second
    /// worker took over) counts once.
    done: HashSet<RelPath>,
    batch: Vec<FileRecord>,
    /// Bytes of finished parts of files still in flight.
    parts: HashMap<RelPath, u64>,
    progress_stale: bool,
}

pub struct Tracker {
    workdir: WorkDir,
    job: String,
    events: mpsc::Receiver<Event>,
    ended: mpsc::UnboundedSender<Ended>,
    running: HashMap<TaskId, Running>,
    /// When the buffered results (or part progress) must be written at the latest.
    flush_at: Option<Instant>,
}

impl Tracker {
    /// The tracker and the handle workers send through; its channel holds `capacity` events.
    pub fn new(
        workdir: WorkDir,
        job: String,
        capacity: usize,
        ended: mpsc::UnboundedSender<Ended>,
    ) -> (Tracker, TrackerHandle) {
        let (tx, events) = mpsc::channel(capacity);
        let tracker = Tracker {
            workdir,
            job,
            events,
            ended,
            running: HashMap::new(),
            flush_at: None,
        };
        (tracker, TrackerHandle { tx })
    }

    /// Runs until every handle is dropped, then makes what it holds durable.
    ///
    /// # Errors
    /// When a journal or a task folder cannot be written: results would be lost, so the job
    /// must stop.
    pub async fn run(mut self) -> Result<()> {
        loop {
            let event = match self.flush_at {
                Some(at) => tokio::select! {
                    event = self.events.recv() => event,
                    () = tokio::time::sleep_until(at) => {
                        self.flush().await?;
                        continue;
                    }
                },
                None => self.events.recv().await,
            };
            let Some(event) = event else { break };
            self.handle(event).await?;
        }
        self.flush().await
    }

    async fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Open { id, reply, .. } if self.running.contains_key(&id) => {
                // Taken over by another worker (distributed mode): its results so far.
                let flushed = self.flush().await;
                let done = self.running.get(&id).map(|t| t.done.clone());
                let _ = reply.send(flushed.map(|()| done.unwrap_or_default()));
            }
            Event::Open { id, spec, reply } => {
                let dir = self.workdir.worker_task_dir(&self.job, &id.to_string());
                let opened = {
                    let spec = spec.clone();
                    blocking(move || TaskJournal::open(dir, &spec)).await
                };
                match opened {
                    Ok(journal) => {
                        let done = journal.done_paths();
                        let _ = reply.send(Ok(done.clone()));
                        self.running.insert(
                            id,
                            Running {
                                spec,
                                journal: Some(journal),
                                done,
                                batch: Vec::new(),
                                parts: HashMap::new(),
                                progress_stale: false,
                            },
                        );
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Event::File { id, record } => {
                if let Some(task) = self.running.get_mut(&id) {
                    task.parts.remove(&record.path);
                    if !task.done.insert(record.path.clone()) {
                        return Ok(());
                    }
                    task.batch.push(record);
                    let full = task.batch.len() >= JOURNAL_BATCH;
                    self.flush_within(if full { Duration::ZERO } else { JOURNAL_LINGER });
                }
            }
            Event::Part { id, path, bytes } => {
                if let Some(task) = self.running.get_mut(&id) {
                    *task.parts.entry(path).or_default() += bytes;
                    task.progress_stale = true;
                    self.flush_within(PROGRESS_EVERY);
                }
            }
            Event::End { id, crashed, reply } => {
                let ended = self.end(id, crashed).await;
                answer(reply, ended)?;
            }
            Event::Sync { reply } => {
                let flushed = self.flush().await;
                answer(Some(reply), flushed)?;
            }
            Event::Results { id, reply } => {
                let _ = reply.send(Ok(self.running.get(&id).map_or(0, |t| t.done.len())));
            }
        }
        Ok(())
    }

    fn flush_within(&mut self, wait: Duration) {
        let at = Instant::now() + wait;
        self.flush_at = Some(self.flush_at.map_or(at, |t| t.min(at)));
    }

    /// Writes every buffered result (one segment per task) and the stale PROGRESS files, in
    /// one trip to the blocking pool.
    async fn flush(&mut self) -> Result<()> {
        self.flush_at = None;
        let mut work = Vec::new();
        for (id, task) in &mut self.running {
            if task.batch.is_empty() && !task.progress_stale {
                continue;
            }
            let Some(journal) = task.journal.take() else {
                continue;
            };
            let in_flight: u64 = task.parts.values().sum();
            work.push((
                id.clone(),
                journal,
                std::mem::take(&mut task.batch),
                in_flight,
            ));
            task.progress_stale = false;
        }
        if work.is_empty() {
            return Ok(());
        }
        let done = blocking(move || {
            let mut done = Vec::with_capacity(work.len());
            for (id, mut journal, batch, in_flight) in work {
                journal.append(batch)?;
                journal.write_progress(in_flight)?;
                done.push((id, journal));
            }
            Ok(done)
        })
        .await?;
        for (id, journal) in done {
            if let Some(task) = self.running.get_mut(&id) {
                task.journal = Some(journal);
            }
        }
        Ok(())
    }

    /// Ends a task; true when it finished, false when it was left to resume. A task that is
    /// not running (ended already) counts as finished.
    async fn end(&mut self, id: TaskId, crashed: Option<String>) -> Result<bool> {
        self.flush().await?;
        let Some(task) = self.running.remove(&id) else {
            return Ok(true);
        };
        let Some(mut journal) = task.journal else {
            return Err(Error::Internal(format!("task {id}: journal lost")));
        };
        if let Some(why) = crashed {
            // Files whose transfer crashed get a failure record, so the task can end.
            let recorded = journal.done_paths();
            let lost: Vec<FileRecord> = task
                .spec
                .files
                .iter()
                .filter(|f| !recorded.contains(&f.path))
                .map(|f| {
                    FileRecord::new(
                        Outcome::Failed,
                        Some(Reason::Unexpected),
                        f.size,
                        f.path.clone(),
                        why.clone(),
                    )
                })
                .collect();
            journal = blocking(move || journal.append(lost).map(|()| journal)).await?;
        }
        if journal.records().len() < task.spec.files.len() {
            tracing::info!(task = %id, "task interrupted; it resumes at the next start");
            let _ = self.ended.send(Ended::Interrupted(id));
            return Ok(false);
        }
        let (workdir, job, task_id) = (self.workdir.clone(), self.job.clone(), id.clone());
        let spec = task.spec.clone();
        let outcome = blocking(move || {
            let outcome = finish::finish_task(&workdir, &job, &task_id, &journal)?;
            if spec.unit.ends_with(crate::master::UNLISTED_SUFFIX) {
                let marker = workdir.relisting_file(&job, spec.round, &spec.content_hash());
                let _ = std::fs::remove_file(marker);
            }
            Ok(outcome)
        })
        .await?;
        tracing::info!(task = %id, ok = outcome.ok, skipped = outcome.skipped, failed = outcome.failed, "task finished");
        let _ = self.ended.send(Ended::Finished(id, outcome));
        Ok(true)
    }
}
