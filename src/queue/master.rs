//! The master's side of distributed mode: the publisher puts the tasks the dispatcher hands it
//! on the tasks stream, and the inbox gives the workers' reports to the tracker and answers
//! their Open and End.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::wire::{self, Answer, Report, TaskMessage, UploadState};
use super::{Queue, pause};
use crate::config::JobConfig;
use crate::error::{Error, Result};
use crate::master::UNLISTED_SUFFIX;
use crate::relpath::RelPath;
use crate::task::record::{FileRecord, Outcome};
use crate::task::{TaskId, TaskSpec};
use crate::tracker::TrackerHandle;
use crate::workdir::{WorkDir, blocking, rename_durable};
use crate::worker::multipart::state_dir_name;

/// Reports handled between two syncs of the tracker (and acks of the stream).
const REPORT_BATCH: usize = 512;

/// Puts dispatched tasks on the tasks stream, as many as `slots` allows at once.
pub struct Publisher {
    pub queue: Arc<Queue>,
    pub job: Arc<JobConfig>,
    pub workdir: WorkDir,
    pub tasks: mpsc::Receiver<TaskId>,
    /// Tasks the master runs itself: entries the listing could not read, listed again.
    pub local: mpsc::Sender<TaskId>,
    /// One permit per task queued or running; the tracker's ends give them back.
    pub slots: Arc<Semaphore>,
    pub cancel: CancellationToken,
}

impl Publisher {
    /// Runs until the job stops.
    ///
    /// # Errors
    /// When a dispatched task cannot be read.
    pub async fn run(mut self) -> Result<()> {
        let settings = toml::to_string(&*self.job)
            .map_err(|e| Error::Internal(format!("cannot write the job's settings: {e}")))?;
        loop {
            let permit = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ok(()),
                permit = self.slots.clone().acquire_owned() => {
                    permit.map_err(|_| Error::Internal("task slots closed".into()))?
                }
            };
            let id = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ok(()),
                id = self.tasks.recv() => match id {
                    Some(id) => id,
                    None => return Ok(()),
                },
            };
            // Given back when the tracker reports the task's end.
            permit.forget();
            let (workdir, job, name) = (
                self.workdir.clone(),
                self.job.job_name.clone(),
                id.to_string(),
            );
            let text = blocking(move || {
                let dir = workdir.find_dispatched(&job, &name).ok_or_else(|| {
                    Error::Internal(format!("task {name} vanished from dispatched"))
                })?;
                let path = dir.join("TASK");
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::io("cannot read", &path, e))?;
                let spec = TaskSpec::parse(&text, &path)?;
                Ok((text, spec.unit.ends_with(UNLISTED_SUFFIX)))
            })
            .await?;
            match text {
                (_, true) => {
                    let _ = self.local.send(id).await;
                }
                (text, false) => self.publish(&id, text, &settings).await?,
            }
        }
    }

    /// Publishes a task unless it is still on the stream from an earlier run of the master;
    /// waits while the queue cannot be reached.
    async fn publish(&self, id: &TaskId, text: String, settings: &str) -> Result<()> {
        let subject = self.queue.task_subject(&self.job.job_name, id);
        let mut attempt = 0;
        while !self.cancel.is_cancelled() {
            match self.try_publish(id, &subject, &text, settings).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(task = %id, "cannot queue the task yet: {e}; trying again");
                    pause(attempt, &self.cancel).await;
                    attempt += 1;
                }
            }
        }
        Ok(())
    }

    async fn try_publish(
        &self,
        id: &TaskId,
        subject: &str,
        text: &str,
        settings: &str,
    ) -> std::result::Result<(), async_nats::Error> {
        let q = &self.queue;
        let stream = q.js.get_stream(q.tasks_stream()).await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(_) => {
                tracing::debug!(task = %id, "still queued from an earlier run");
                return Ok(());
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
            Err(e) => return Err(e.into()),
        }
        let name = id.to_string();
        let inline = text.len() <= q.inline_limit();
        if !inline {
            let store = match q.js.get_object_store(q.task_store()).await {
                Ok(store) => store,
                Err(_) => {
                    q.js.create_object_store(async_nats::jetstream::object_store::Config {
                        bucket: q.task_store(),
                        storage: async_nats::jetstream::stream::StorageType::File,
                        ..Default::default()
                    })
                    .await?
                }
            };
            store.put(name.as_str(), &mut text.as_bytes()).await?;
        }
        let message = TaskMessage {
            id: name.clone(),
            job: settings.to_string(),
            task: inline.then(|| text.to_string()),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", name.as_str());
        q.js.publish_with_headers(subject.to_string(), headers, wire::encode(&message))
            .await?
            .await?;
        tracing::debug!(task = %id, inline, "queued");
        Ok(())
    }
}

/// Reads the workers' reports of the job and hands them to the tracker.
pub struct Inbox {
    pub queue: Arc<Queue>,
    pub job: String,
    pub workdir: WorkDir,
    pub tracker: TrackerHandle,
    pub cancel: CancellationToken,
    /// Tasks opened at the tracker in this run of the master.
    opened: HashMap<TaskId, Arc<TaskSpec>>,
}

impl Inbox {
    pub fn new(
        queue: Arc<Queue>,
        job: String,
        workdir: WorkDir,
        tracker: TrackerHandle,
        cancel: CancellationToken,
    ) -> Inbox {
        Inbox {
            queue,
            job,
            workdir,
            tracker,
            cancel,
            opened: HashMap::new(),
        }
    }

    /// Runs until the job stops. Reports are acked once the tracker made them durable; a
    /// report seen twice (after a crash of the master) changes nothing.
    ///
    /// # Errors
    /// When results cannot be recorded: the job must stop.
    pub async fn run(mut self) -> Result<()> {
        let subject = self.queue.results_subject(&self.job);
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
                    if m.subject.as_str() != subject {
                        tracing::debug!(subject = %m.subject, "a report of another job; dropped");
                        continue;
                    }
                    match wire::decode::<Report>("report", &m.payload) {
                        Ok(report) => self.handle(report, &mut finished_paths).await?,
                        Err(e) => tracing::warn!("{e}"),
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
                    Some((_, spec, done)) => self.opened_answer(&spec, &done).await,
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
            Report::End { id, crashed, reply } => {
                let answer = match self.open(&id, None).await? {
                    Some((task, _, _)) => {
                        let finished = self.tracker.end_confirmed(task.clone(), crashed).await?;
                        self.opened.remove(&task);
                        if finished {
                            self.forget_task_file(id.clone());
                        }
                        Answer::Ended { finished }
                    }
                    None => Answer::Gone,
                };
                self.answer(&reply, &answer).await;
            }
        }
        Ok(())
    }

    /// The task opened at the tracker (its spec and the files with a result), moved to
    /// `dispatched/<host>/` when a worker takes it; `None` when it is not dispatched.
    async fn open(
        &mut self,
        id: &str,
        host: Option<&str>,
    ) -> Result<Option<(TaskId, Arc<TaskSpec>, HashSet<RelPath>)>> {
        let Some(task) = TaskId::parse(id) else {
            tracing::warn!("a report names no task of ours: {id}");
            return Ok(None);
        };
        let (workdir, job, name, host) = (
            self.workdir.clone(),
            self.job.clone(),
            id.to_string(),
            host.map(str::to_string),
        );
        let cached = self.opened.get(&task).cloned();
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
        let done = self.tracker.open(task.clone(), spec.clone()).await?;
        self.opened.insert(task.clone(), spec.clone());
        Ok(Some((task, spec, done)))
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
