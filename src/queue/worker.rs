//! `ossimport worker`: a worker of distributed mode. It takes tasks off the queue, one per free
//! lane, runs their files with the same worker code as standalone mode, and forwards what that
//! code tells its tracker to the master's tracker over the results stream.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Answer, Report, TaskMessage, UploadState};
use super::{Queue, pause};
use crate::config::{JobConfig, SysConfig};
use crate::error::{Error, Result};
use crate::relpath::RelPath;
use crate::task::{TaskId, TaskSpec};
use crate::tracker::{Event, TrackerHandle};
use crate::workdir::{WorkDir, blocking};
use crate::worker::JobContext;
use crate::worker::multipart::state_dir_name;

/// Tasks run at once before the first job says how many it wants.
const FIRST_LANES: usize = 4;
/// How long a stop lets the files in flight finish and their results reach the master.
const DRAIN: Duration = Duration::from_secs(8);
/// How long the worker waits for the master's answer to an Open or an End before asking
/// again (the master may be down; its answer may have been lost in a reconnect).
const ANSWER_WAIT: Duration = Duration::from_secs(15);
/// Results published but not yet confirmed by the server.
const UNCONFIRMED: usize = 256;

/// How a task left this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The tracker finished it: ack.
    Finished,
    /// Files are left (this worker stops): give it back now.
    Resume,
    /// The master no longer has it: drop it.
    Gone,
    /// Stopped before the master answered: it comes back after the ack wait.
    Stopped,
}

struct Worker {
    queue: Arc<Queue>,
    sys: SysConfig,
    workdir: WorkDir,
    conf_dir: PathBuf,
    host: String,
    cancel: CancellationToken,
    /// Cancelled `DRAIN` after `cancel`: results not delivered by then are given up.
    give_up: CancellationToken,
    /// The open jobs, by their settings.
    contexts: Mutex<HashMap<String, Arc<JobContext>>>,
    lanes: Arc<Semaphore>,
    lane_count: std::sync::Mutex<usize>,
}

/// Runs the worker until `cancel` (a stop, Ctrl-C, SIGTERM).
///
/// # Errors
/// When the queue refuses this worker (no JetStream, a misconfigured stream).
pub async fn run(
    conf_dir: PathBuf,
    sys: SysConfig,
    workdir: WorkDir,
    host: String,
    cancel: CancellationToken,
) -> Result<()> {
    let queue = Arc::new(Queue::connect(&sys, "worker").await?);
    tracing::info!(host, queue = %queue.shown_url, "worker started");
    let give_up = CancellationToken::new();
    let worker = Arc::new(Worker {
        queue: queue.clone(),
        sys,
        workdir,
        conf_dir,
        host,
        cancel: cancel.clone(),
        give_up: give_up.clone(),
        contexts: Mutex::new(HashMap::new()),
        lanes: Arc::new(Semaphore::new(FIRST_LANES)),
        lane_count: std::sync::Mutex::new(FIRST_LANES),
    });
    let mut running = JoinSet::new();
    let mut attempt = 0;
    'take: while !cancel.is_cancelled() {
        let consumer = match queue.workers_consumer().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{e}; trying again");
                pause(attempt, &cancel).await;
                attempt += 1;
                continue;
            }
        };
        loop {
            while running.try_join_next().is_some() {}
            let permit = tokio::select! {
                biased;
                () = cancel.cancelled() => break 'take,
                p = worker.lanes.clone().acquire_owned() => p.expect("lanes are never closed"),
            };
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => break 'take,
                next = take_one(&consumer) => next,
            };
            match next {
                Ok(Some(message)) => {
                    attempt = 0;
                    running.spawn(worker.clone().run_message(message, permit));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("cannot take tasks from the queue: {e}; trying again");
                    pause(attempt, &cancel).await;
                    attempt += 1;
                    continue 'take;
                }
            }
        }
    }
    tracing::info!("stop requested; finishing the files in flight");
    let drained = tokio::time::timeout(DRAIN, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    give_up.cancel();
    if drained.is_err() {
        tracing::warn!("tasks still running after {DRAIN:?}; the queue hands them to a worker");
        running.shutdown().await;
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// The next task, waiting a few seconds for one.
async fn take_one(
    consumer: &jetstream::consumer::PullConsumer,
) -> std::result::Result<Option<jetstream::Message>, async_nats::Error> {
    let mut batch = consumer
        .batch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    match batch.next().await {
        Some(Ok(m)) => Ok(Some(m)),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

impl Worker {
    async fn run_message(
        self: Arc<Self>,
        message: jetstream::Message,
        _lane: OwnedSemaphorePermit,
    ) {
        // Tells the queue the task is alive, so it is not handed to another worker.
        let heartbeat = {
            let (message, every) = (message.clone(), self.queue.ack_wait / 3);
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }))
        };
        let outcome = self.run_task(&message).await;
        drop(heartbeat);
        let settled = match outcome {
            Ok(Outcome::Finished | Outcome::Gone) => message.double_ack().await,
            Ok(Outcome::Resume) => message.ack_with(AckKind::Nak(None)).await,
            Ok(Outcome::Stopped) => Ok(()),
            Err(TaskError::Unreadable(e)) => {
                tracing::error!("{e}; the task is dropped from the queue");
                message.ack_with(AckKind::Term).await
            }
            Err(TaskError::Job(e)) => {
                tracing::error!("{e}; the task goes back to the queue");
                message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(30))))
                    .await
            }
        };
        if let Err(e) = settled {
            // Not acked: the queue hands the task out again, and its results are known.
            tracing::warn!("cannot settle a task with the queue: {e}");
        }
    }

    async fn run_task(
        &self,
        message: &jetstream::Message,
    ) -> std::result::Result<Outcome, TaskError> {
        let task: TaskMessage =
            wire::decode("task", &message.payload).map_err(TaskError::Unreadable)?;
        let text = match task.task {
            Some(text) => text,
            None => self.task_file(&task.id).await.map_err(TaskError::Job)?,
        };
        let spec = TaskSpec::parse(&text, std::path::Path::new(&task.id))
            .map_err(TaskError::Unreadable)?;
        let id = TaskId::parse(&task.id).ok_or_else(|| {
            TaskError::Unreadable(Error::Refused(format!("bad task id {}", task.id)))
        })?;
        let Some(ctx) = self.context(&task.job).await.map_err(TaskError::Job)? else {
            return Ok(Outcome::Stopped);
        };
        let (handle, events) = TrackerHandle::channel(1024);
        let forwarder = Forwarder {
            queue: self.queue.clone(),
            subject: self.queue.results_subject(&spec.job),
            task: task.id.clone(),
            host: self.host.clone(),
            multipart_dir: self.workdir.multipart_dir(&spec.job),
            give_up: self.give_up.clone(),
            sent: 0,
            unconfirmed: VecDeque::new(),
            outcome: Outcome::Stopped,
        };
        let forwarding = tokio::spawn(forwarder.run(events));
        let ran = crate::worker::run_task(ctx.clone(), &handle, id, Arc::new(spec)).await;
        drop(handle);
        let outcome = forwarding.await.unwrap_or(Outcome::Stopped);
        if let Err(e) = ran
            && outcome != Outcome::Gone
        {
            tracing::warn!(task = %task.id, "the task did not start: {e}");
        }
        if ctx.cancel.is_cancelled() && !self.cancel.is_cancelled() {
            // The job's context gave up (an outage past workerMaxOutageSeconds): open it
            // afresh for the next task.
            let why = ctx.take_abort_reason().unwrap_or_default();
            tracing::error!("job {} stopped on this worker: {why}", ctx.job.job_name);
            self.contexts
                .lock()
                .await
                .retain(|_, c| !Arc::ptr_eq(c, &ctx));
        }
        Ok(outcome)
    }

    /// A TASK over the server's maximum payload, from the object store.
    async fn task_file(&self, name: &str) -> Result<String> {
        let q = &self.queue;
        let failed = |e: &dyn std::fmt::Display| {
            Error::Refused(format!(
                "cannot read task {name} from the queue's object store: {e}"
            ))
        };
        let store =
            q.js.get_object_store(q.task_store())
                .await
                .map_err(|e| failed(&e))?;
        let mut object = store.get(name).await.map_err(|e| failed(&e))?;
        let mut text = String::new();
        object
            .read_to_string(&mut text)
            .await
            .map_err(|e| failed(&e))?;
        Ok(text)
    }

    /// The open job for these settings, opened (destination and source checked) on first use.
    /// `None` when the worker stops meanwhile.
    async fn context(&self, settings: &str) -> Result<Option<Arc<JobContext>>> {
        let mut contexts = self.contexts.lock().await;
        if let Some(ctx) = contexts.get(settings) {
            return Ok(Some(ctx.clone()));
        }
        let mut job: JobConfig = toml::from_str(settings).map_err(|e| {
            Error::Refused(format!(
                "the job's settings on the queue cannot be read: {e}"
            ))
        })?;
        // Keys never travel: this host's conf/local_job.cfg or environment has them.
        if let Ok(local) = JobConfig::load(&self.conf_dir.join("local_job.cfg")) {
            let local = local.config;
            job.dest_access_key = local.dest_access_key;
            job.dest_secret_key = local.dest_secret_key;
            job.src_access_key = local.src_access_key;
            job.src_secret_key = local.src_secret_key;
        }
        job.apply_env_credentials();
        let job = Arc::new(job);
        let opened =
            crate::service::open_job_context(&job, &self.sys, &self.workdir, &self.cancel).await;
        let ctx = match opened {
            Ok(Some(ctx)) => ctx,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(Error::Refused(format!(
                    "cannot run tasks of job {} on this worker: {e}",
                    job.job_name
                )));
            }
        };
        let want = crate::service::task_runners(&job, &self.sys);
        let mut count = self.lane_count.lock().unwrap_or_else(|p| p.into_inner());
        if want > *count {
            self.lanes.add_permits(want - *count);
            *count = want;
        }
        tracing::info!(job = %job.job_name, lanes = *count, "job opened on this worker");
        contexts.insert(settings.to_string(), ctx.clone());
        Ok(Some(ctx))
    }
}

enum TaskError {
    /// The message is not a task this version can run.
    Unreadable(Error),
    /// The job cannot run here now (its store unreachable, keys missing).
    Job(Error),
}

/// Carries one task's tracker events to the master: results on the results stream, each
/// confirmed by the server; Open and End as requests the master answers on an inbox subject.
struct Forwarder {
    queue: Arc<Queue>,
    subject: String,
    task: String,
    host: String,
    multipart_dir: PathBuf,
    give_up: CancellationToken,
    /// Reports sent so far, for their message ids (the server drops a resent duplicate).
    sent: u64,
    unconfirmed: VecDeque<Pending>,
    outcome: Outcome,
}

struct Pending {
    msg_id: String,
    payload: bytes::Bytes,
    ack: async_nats::jetstream::context::PublishAckFuture,
}

impl Forwarder {
    async fn run(mut self, mut events: mpsc::Receiver<Event>) -> Outcome {
        while let Some(event) = events.recv().await {
            match event {
                Event::Open { spec, reply, .. } => {
                    let answer = self.opened(&spec).await;
                    let _ = reply.send(answer);
                }
                Event::File { record, .. } => {
                    let line = record.audit_line().trim_end_matches('\n').to_string();
                    let id = self.task.clone();
                    self.send(Report::File { id, line }).await;
                }
                Event::Part { path, bytes, .. } => {
                    let (dir, name) = (self.multipart_dir.clone(), state_dir_name(&path));
                    let upload = blocking(move || Ok(UploadState::read(&dir, &name)))
                        .await
                        .unwrap_or(None);
                    let id = self.task.clone();
                    let path = crate::escape::escape(&path.0);
                    self.send(Report::Part {
                        id,
                        bytes,
                        path,
                        upload,
                    })
                    .await;
                }
                Event::End { crashed, reply, .. } => {
                    let id = self.task.clone();
                    let answer = self
                        .request(|reply| Report::End {
                            id: id.clone(),
                            crashed: crashed.clone(),
                            reply,
                        })
                        .await;
                    self.outcome = match answer {
                        Some(Answer::Ended { finished: true }) => Outcome::Finished,
                        Some(Answer::Ended { finished: false }) => Outcome::Resume,
                        Some(Answer::Gone) => Outcome::Gone,
                        Some(Answer::Opened { .. }) | None => Outcome::Stopped,
                    };
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(self.outcome == Outcome::Finished));
                    }
                }
                Event::Sync { reply } => {
                    self.confirm_all().await;
                    let _ = reply.send(Ok(()));
                }
            }
        }
        self.outcome
    }

    /// Opens the task at the master; writes the checkpoints of its unfinished multipart
    /// uploads here, so they resume at their parts.
    async fn opened(&mut self, spec: &TaskSpec) -> Result<HashSet<RelPath>> {
        let (id, host) = (self.task.clone(), self.host.clone());
        let answer = self
            .request(|reply| Report::Open {
                id: id.clone(),
                host: host.clone(),
                reply,
            })
            .await;
        match answer {
            Some(Answer::Opened { done, uploads }) => {
                let dir = self.multipart_dir.clone();
                blocking(move || {
                    for upload in uploads {
                        upload.write(&dir)?;
                    }
                    Ok(())
                })
                .await?;
                Ok(done
                    .into_iter()
                    .filter_map(|i| spec.files.get(i as usize).map(|f| f.path.clone()))
                    .collect())
            }
            Some(Answer::Gone) => {
                self.outcome = Outcome::Gone;
                Err(Error::Refused(format!(
                    "task {} is no longer dispatched at the master (finished, or the job was \
                     cleaned)",
                    self.task
                )))
            }
            _ => Err(Error::Refused("the worker stops".into())),
        }
    }

    fn next_id(&mut self) -> String {
        self.sent += 1;
        format!("{}:{}:{}", self.host, self.task, self.sent)
    }

    /// Publishes a report; the server's confirmation is awaited later, a few hundred at once.
    async fn send(&mut self, report: Report) {
        let (msg_id, payload) = (self.next_id(), wire::encode(&report));
        match self.publish(&msg_id, payload.clone()).await {
            Some(ack) => self.unconfirmed.push_back(Pending {
                msg_id,
                payload,
                ack,
            }),
            None => return,
        }
        while self.unconfirmed.len() > UNCONFIRMED {
            self.confirm_first().await;
        }
    }

    /// Publishes until the client takes it; `None` once the worker gave up.
    async fn publish(
        &self,
        msg_id: &str,
        payload: bytes::Bytes,
    ) -> Option<async_nats::jetstream::context::PublishAckFuture> {
        let mut attempt = 0;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", msg_id);
            let published = self
                .queue
                .js
                .publish_with_headers(self.subject.clone(), headers, payload.clone())
                .await;
            match published {
                Ok(ack) => return Some(ack),
                Err(e) => tracing::warn!("cannot send a result to the master yet: {e}"),
            }
            if self.give_up.is_cancelled() {
                return None;
            }
            pause(attempt, &self.give_up).await;
            attempt += 1;
        }
    }

    async fn confirm_first(&mut self) {
        let Some(mut pending) = self.unconfirmed.pop_front() else {
            return;
        };
        let mut attempt = 0;
        loop {
            match pending.ack.await {
                Ok(_) => return,
                Err(e) => tracing::warn!("a result was not confirmed ({e}); sending it again"),
            }
            if self.give_up.is_cancelled() {
                return;
            }
            pause(attempt, &self.give_up).await;
            attempt += 1;
            match self.publish(&pending.msg_id, pending.payload.clone()).await {
                Some(ack) => pending.ack = ack,
                None => return,
            }
        }
    }

    async fn confirm_all(&mut self) {
        while !self.unconfirmed.is_empty() {
            self.confirm_first().await;
        }
    }

    /// Sends a request once every earlier report is confirmed (so the master sees them
    /// first), and waits for its answer, asking again while none comes.
    async fn request(&mut self, make: impl Fn(String) -> Report) -> Option<Answer> {
        self.confirm_all().await;
        let client = &self.queue.client;
        let inbox = client.new_inbox();
        let mut answers = loop {
            match client.subscribe(inbox.clone()).await {
                Ok(s) => break s,
                Err(e) if !self.give_up.is_cancelled() => {
                    tracing::warn!("cannot listen for the master's answer yet: {e}");
                    pause(2, &self.give_up).await;
                }
                Err(_) => return None,
            }
        };
        loop {
            let msg_id = self.next_id();
            let ack = self
                .publish(&msg_id, wire::encode(&make(inbox.clone())))
                .await?;
            self.unconfirmed.push_back(Pending {
                msg_id,
                payload: wire::encode(&make(inbox.clone())),
                ack,
            });
            self.confirm_all().await;
            let answer = tokio::select! {
                () = self.give_up.cancelled() => return None,
                answer = tokio::time::timeout(ANSWER_WAIT, answers.next()) => answer,
            };
            match answer {
                Ok(Some(m)) => match wire::decode::<Answer>("answer", &m.payload) {
                    Ok(answer) => return Some(answer),
                    Err(e) => tracing::warn!("{e}"),
                },
                Ok(None) => return None,
                Err(_) => tracing::info!(
                    task = %self.task,
                    "no answer from the master in {ANSWER_WAIT:?}; asking again"
                ),
            }
        }
    }
}
