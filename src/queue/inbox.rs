//! The master's side of distributed mode that receives: the inbox gives the workers' reports
//! to the tracker and answers their Open and End (see src/queue/mod.rs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::wire::{self, Answer, Report, UploadState};
use super::{Queue, pause};
use crate::error::{Error, Result};
use crate::relpath::RelPath;
use crate::task::record::{FileRecord, Outcome};
use crate::task::{TaskId, TaskSpec};
use crate::tracker::TrackerHandle;
use crate::workdir::{WorkDir, blocking, rename_durable, write_atomic};
use crate::worker::multipart::state_dir_name;

/// Reports handled between two syncs of the tracker (and acks of the stream).
const REPORT_BATCH: usize = 512;
/// Times a worker's End may ask before a task with a result still to come is ended as it is
/// (the worker asks every 15 s: two minutes, twice the default ack wait).
const END_WAITS: u32 = 8;

/// A dispatched task as [`Inbox::open`] finds it: its id, its spec, and the files with a
/// result when this call opened it at the tracker.
type Opened = (TaskId, Arc<TaskSpec>, Option<HashSet<RelPath>>);

/// Reads the workers' reports of the job and hands them to the tracker.
pub struct Inbox {
    pub queue: Arc<Queue>,
    pub job: String,
    pub workdir: WorkDir,
    pub tracker: TrackerHandle,
    pub cancel: CancellationToken,
    /// Stops the job with a reason a worker sent.
    abort: Box<dyn Fn(String) + Send + Sync>,
    /// Tasks opened at the tracker in this run of the master.
    opened: HashMap<TaskId, Arc<TaskSpec>>,
    /// Complete Ends heard while a result was still to come, by task.
    waits: HashMap<TaskId, u32>,
}

impl Inbox {
    pub fn new(
        queue: Arc<Queue>,
        job: String,
        workdir: WorkDir,
        tracker: TrackerHandle,
        cancel: CancellationToken,
        abort: Box<dyn Fn(String) + Send + Sync>,
    ) -> Inbox {
        Inbox {
            queue,
            job,
            workdir,
            tracker,
            cancel,
            abort,
            opened: HashMap::new(),
            waits: HashMap::new(),
        }
    }

    /// Runs until the job stops. Reports are acked once the tracker made them durable; a
    /// report seen twice (after a crash of the master) changes nothing.
    ///
    /// # Errors
    /// When results cannot be recorded: the job must stop.
    pub async fn run(mut self) -> Result<()> {
        let subject = self.queue.results_subject(&self.job);
        // What workers said at an earlier run is stale; they say it again on their next task.
        for file in self.workdir.worker_trouble_files(&self.job) {
            let _ = std::fs::remove_file(file);
        }
        let mut attempt = 0;
        while !self.cancel.is_cancelled() {
            let messages = match self.queue.tracker_consumer().await {
                Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("cannot read the workers' results yet: {e}; trying again");
                    pause(attempt, &self.cancel).await;
                    attempt += 1;
                    continue;
                }
            };
            attempt = 0;
            loop {
                let first = tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => return Ok(()),
                    next = messages.next() => next,
                };
                let first = match first {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::warn!("reading the workers' results: {e}; reconnecting");
                        break;
                    }
                    None => break,
                };
                let mut batch = vec![first];
                while batch.len() < REPORT_BATCH {
                    match messages.next().now_or_never() {
                        Some(Some(Ok(m))) => batch.push(m),
                        _ => break,
                    }
                }
                let mut finished_paths = Vec::new();
                for m in &batch {
                    let report = match wire::decode::<Report>("report", &m.payload) {
                        Ok(report) => report,
                        Err(e) => {
                            tracing::warn!("{e}");
                            continue;
                        }
                    };
                    if m.subject.as_str() == subject {
                        self.handle(report, &mut finished_paths).await?;
                    } else if let Report::Open { reply, .. } | Report::End { reply, .. } = report {
                        // A task of a job this master no longer runs (cleaned, or replaced):
                        // its worker drops it.
                        self.answer(&reply, &Answer::Gone).await;
                    }
                }
                self.tracker.sync().await?;
                self.forget_uploads(finished_paths).await;
                for m in batch {
                    // A lost ack only means the report is seen again, which changes nothing.
                    let _ = m.ack().await;
                }
            }
            pause(0, &self.cancel).await;
        }
        Ok(())
    }

    async fn handle(&mut self, report: Report, finished_paths: &mut Vec<RelPath>) -> Result<()> {
        match report {
            Report::Open { id, host, reply } => {
                let answer = match self.open(&id, Some(&host)).await? {
                    Some((task, spec, just_opened)) => {
                        // A task opened earlier in this run: its results since then.
                        let done = match just_opened {
                            Some(done) => done,
                            None => self.tracker.open(task, spec.clone()).await?,
                        };
                        self.opened_answer(&spec, &done).await
                    }
                    None => Answer::Gone,
                };
                self.answer(&reply, &answer).await;
            }
            Report::File { id, line } => {
                let Some((task, _, _)) = self.open(&id, None).await? else {
                    return Ok(());
                };
                match FileRecord::parse_audit_line(&line) {
                    Some(record) => {
                        if record.outcome == Outcome::Ok {
                            finished_paths.push(record.path.clone());
                        }
                        self.tracker.file(task, record).await;
                    }
                    None => tracing::warn!(task = %id, "a file result that cannot be read: {line}"),
                }
            }
            Report::Part {
                id,
                bytes,
                path,
                upload,
            } => {
                let Some((task, _, _)) = self.open(&id, None).await? else {
                    return Ok(());
                };
                if let Some(upload) = upload {
                    let dir = self.workdir.multipart_dir(&self.job);
                    if let Err(e) = blocking(move || upload.write(&dir)).await {
                        tracing::warn!(task = %id, "cannot keep a multipart checkpoint: {e}");
                    }
                }
                if let Some(path) = crate::escape::unescape(&path) {
                    self.tracker.part(task, RelPath(path), bytes).await;
                }
            }
            Report::Trouble { host, message } => {
                let file = self
                    .workdir
                    .worker_trouble_file(&self.job, &crate::queue::host_folder(&host));
                blocking(move || {
                    match message {
                        Some(why) => write_atomic(
                            &file,
                            format!(
                                "worker {host}: {why}; it takes no task for 30 s and tries again"
                            )
                            .as_bytes(),
                        )?,
                        None => {
                            let _ = std::fs::remove_file(&file);
                        }
                    }
                    Ok(())
                })
                .await?;
            }
            Report::End {
                id,
                crashed,
                complete,
                abort,
                reply,
            } => {
                let Some((task, spec, _)) = self.open(&id, None).await? else {
                    self.answer(&reply, &Answer::Gone).await;
                    return Ok(());
                };
                if let Some(why) = abort {
                    // As in standalone mode (workerAbortWhenUncatchedException, an outage past
                    // workerMaxOutageSeconds): the job stops with the reason, `stat` shows it.
                    (self.abort)(why);
                } else if complete && crashed.is_none() && !self.all_results(&task, &spec).await? {
                    // A result the worker sent before its End has not come yet (redelivered
                    // after a reconnect): the worker asks again.
                    return Ok(());
                }
                self.waits.remove(&task);
                let finished = self.tracker.end_confirmed(task.clone(), crashed).await?;
                self.opened.remove(&task);
                if finished {
                    self.forget_task_file(id.clone());
                }
                self.answer(&reply, &Answer::Ended { finished }).await;
            }
        }
        Ok(())
    }

    /// Whether the tracker has a result of every file of a task a worker says it finished.
    /// After [`END_WAITS`] asks it ends the task as it is (left to resume: the files without
    /// a result are sent again), rather than wait for ever on a result that never comes.
    async fn all_results(&mut self, task: &TaskId, spec: &TaskSpec) -> Result<bool> {
        let have = self.tracker.results(task.clone()).await?;
        if have >= spec.files.len() {
            return Ok(true);
        }
        let waits = self.waits.entry(task.clone()).or_default();
        *waits += 1;
        tracing::debug!(task = %task, have, waits = *waits, "a result is still to come");
        Ok(*waits > END_WAITS)
    }

    /// The task (its spec), opened at the tracker on first sight in this run (then with the
    /// files that have a result) and moved to `dispatched/<host>/` when a worker takes it;
    /// `None` when it is not dispatched.
    async fn open(&mut self, id: &str, host: Option<&str>) -> Result<Option<Opened>> {
        let Some(task) = TaskId::parse(id) else {
            tracing::warn!("a report names no task of ours: {id}");
            return Ok(None);
        };
        let cached = self.opened.get(&task).cloned();
        if let (Some(spec), None) = (&cached, host) {
            return Ok(Some((task, spec.clone(), None)));
        }
        let (workdir, job, name) = (self.workdir.clone(), self.job.clone(), id.to_string());
        // The name comes from the wire: it must stay one folder under dispatched/.
        let host = host.map(crate::queue::host_folder);
        let found = blocking(move || {
            let Some(mut dir) = workdir.find_dispatched(&job, &name) else {
                return Ok(None);
            };
            if let Some(host) = host {
                let to = workdir.dispatched_to(&job, &host, &name);
                if to != dir {
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| Error::io("cannot create folder", parent, e))?;
                    }
                    rename_durable(&dir, &to)?;
                    dir = to;
                }
            }
            match cached {
                Some(spec) => Ok(Some(spec)),
                None => TaskSpec::read(&dir.join("TASK")).map(|s| Some(Arc::new(s))),
            }
        })
        .await?;
        let Some(spec) = found else {
            self.opened.remove(&task);
            return Ok(None);
        };
        let just_opened = match self.opened.contains_key(&task) {
            true => None,
            false => {
                let done = self.tracker.open(task.clone(), spec.clone()).await?;
                self.opened.insert(task.clone(), spec.clone());
                Some(done)
            }
        };
        Ok(Some((task, spec, just_opened)))
    }

    /// The files of `spec` that have a result, by position, and the checkpoints the master
    /// holds of the others' multipart uploads.
    async fn opened_answer(&self, spec: &Arc<TaskSpec>, done: &HashSet<RelPath>) -> Answer {
        let mut indices = Vec::new();
        let mut open_files = Vec::new();
        for (i, f) in spec.files.iter().enumerate() {
            if done.contains(&f.path) {
                indices.push(i as u32);
            } else {
                open_files.push(state_dir_name(&f.path));
            }
        }
        let dir = self.workdir.multipart_dir(&self.job);
        let uploads = blocking(move || {
            Ok(open_files
                .iter()
                .filter_map(|name| UploadState::read(&dir, name))
                .collect())
        })
        .await
        .unwrap_or_default();
        Answer::Opened {
            done: indices,
            uploads,
        }
    }

    /// Answers a worker on its inbox subject. A lost answer is asked for again.
    async fn answer(&self, reply: &str, answer: &Answer) {
        if let Err(e) = self
            .queue
            .client
            .publish(reply.to_string(), wire::encode(answer))
            .await
        {
            tracing::debug!("cannot answer a worker: {e}");
        }
    }

    /// Drops the master's copies of the multipart checkpoints of files now uploaded.
    async fn forget_uploads(&self, paths: Vec<RelPath>) {
        if paths.is_empty() {
            return;
        }
        let dir = self.workdir.multipart_dir(&self.job);
        let _ = blocking(move || {
            for path in paths {
                let _ = std::fs::remove_dir_all(dir.join(state_dir_name(&path)));
            }
            Ok(())
        })
        .await;
    }

    /// Removes a finished task's TASK from the object store, if it was put there.
    fn forget_task_file(&self, name: String) {
        let queue = self.queue.clone();
        tokio::spawn(async move {
            if let Ok(store) = queue.js.get_object_store(queue.task_store()).await {
                let _ = store.delete(name).await;
            }
        });
    }
}
