//! `ossimport worker`: a worker of distributed mode. It takes tasks off the queue, one per free
//! lane, runs their files with the same worker code as standalone mode, and forwards what that
//! code tells its tracker to the master's tracker over the results stream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::forward::{Forwarder, Outcome};
use super::wire::{self, Report, TaskMessage};
use super::{Queue, pause};
use crate::config::{JobConfig, SysConfig};
use crate::error::{Error, Result};
use crate::task::{TaskId, TaskSpec};
use crate::tracker::TrackerHandle;
use crate::workdir::WorkDir;
use crate::worker::JobContext;

/// Tasks run at once before the first job says how many it wants.
const FIRST_LANES: usize = 4;
/// How long a worker that cannot open a job takes no task.
const REST: Duration = Duration::from_secs(30);
/// How long a stop lets the files in flight finish and their results reach the master.
const DRAIN: Duration = Duration::from_secs(8);
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
    /// No task is taken before this: the last job could not be opened.
    rest_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Jobs this worker told the master it cannot open.
    troubled: std::sync::Mutex<std::collections::HashSet<String>>,
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
    let queue = tokio::select! {
        biased;
        () = cancel.cancelled() => return Ok(()),
        q = Queue::connect(&sys, "worker") => Arc::new(q?),
    };
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
        troubled: std::sync::Mutex::new(std::collections::HashSet::new()),
        rest_until: std::sync::Mutex::new(None),
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
            // After a job this worker cannot open, it takes nothing for a while, so that the
            // queue hands the tasks to workers that can.
            let resting = *worker.rest_until.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = resting {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break 'take,
                    () = tokio::time::sleep_until(until) => {}
                }
            }
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => break 'take,
                next = take_one(&consumer) => next,
            };
            match next {
                Ok(Some(message)) => {
                    attempt = 0;
                    // The consumer's own ack wait (its first creator's setting) paces the
                    // signs of life, whatever this worker's queueAckWaitSeconds says.
                    let ack_wait = consumer.cached_info().config.ack_wait;
                    running.spawn(worker.clone().run_message(message, ack_wait, permit));
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
        ack_wait: Duration,
        _lane: OwnedSemaphorePermit,
    ) {
        // Tells the queue the task is alive, so it is not handed to another worker.
        let heartbeat = {
            let every = (ack_wait / 3).max(Duration::from_secs(1));
            let message = message.clone();
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
            // Stopped before the master answered: to another worker now.
            Ok(Outcome::Stopped) => message.ack_with(AckKind::Nak(None)).await,
            Err(TaskError::Unreadable(e)) => {
                tracing::error!("{e}; the task is dropped from the queue");
                message.ack_with(AckKind::Term).await
            }
            Err(TaskError::Job(e)) => {
                tracing::error!(
                    "{e}; the task goes back to the queue, and this worker takes none for {REST:?}"
                );
                let until = tokio::time::Instant::now() + REST;
                *self.rest_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
                message.ack_with(AckKind::Nak(None)).await
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
            None => match self.task_file(&task.id).await.map_err(TaskError::Job)? {
                Some(text) => text,
                None => {
                    tracing::info!(task = %task.id, "its TASK is gone: finished already");
                    return Ok(Outcome::Gone);
                }
            },
        };
        let spec = TaskSpec::parse(&text, std::path::Path::new(&task.id))
            .map_err(TaskError::Unreadable)?;
        let id = TaskId::parse(&task.id).ok_or_else(|| {
            TaskError::Unreadable(Error::Refused(format!("bad task id {}", task.id)))
        })?;
        let opened = self.context(&task.job).await;
        self.tell_trouble(&spec.job, opened.as_ref().err()).await;
        let Some(ctx) = opened.map_err(TaskError::Job)? else {
            return Ok(Outcome::Stopped);
        };
        let (handle, events) = TrackerHandle::channel(1024);
        let forwarder = Forwarder::new(
            self.queue.clone(),
            self.queue.results_subject(&spec.job),
            task.id.clone(),
            self.host.clone(),
            self.workdir.multipart_dir(&spec.job),
            self.give_up.clone(),
            ctx.clone(),
        );
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

    /// Tells the master when this worker cannot open a job (wrong keys on this host, a store
    /// it cannot reach), so `stat` there says so instead of showing the task dispatched with
    /// nothing moving; and when it can again. Best effort: the log has it too.
    async fn tell_trouble(&self, job: &str, trouble: Option<&Error>) {
        {
            let mut troubled = self.troubled.lock().unwrap_or_else(|p| p.into_inner());
            // A trouble is told each time (its cause may change); its end once.
            let changed = match trouble {
                Some(_) => {
                    troubled.insert(job.to_string());
                    true
                }
                None => troubled.remove(job),
            };
            if !changed {
                return;
            }
        }
        let report = Report::Trouble {
            host: self.host.clone(),
            message: trouble.map(ToString::to_string),
        };
        let subject = self.queue.results_subject(job);
        let sent = match self.queue.js.publish(subject, wire::encode(&report)).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            tracing::debug!("cannot tell the master about this worker's trouble: {e}");
        }
    }

    /// A TASK over the server's maximum payload, from the object store; `None` when it is not
    /// there (any more).
    async fn task_file(&self, name: &str) -> Result<Option<String>> {
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
        let mut object = match store.get(name).await {
            Ok(object) => object,
            // The master removes it when the task finishes: this is a finished task whose
            // ack was lost.
            Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(failed(&e)),
        };
        let mut text = String::new();
        object
            .read_to_string(&mut text)
            .await
            .map_err(|e| failed(&e))?;
        Ok(Some(text))
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
        // The job's own token: an outage past workerMaxOutageSeconds stops this job's context,
        // not the worker.
        let token = self.cancel.child_token();
        let opened = crate::service::open_job_context(&job, &self.sys, &self.workdir, &token).await;
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
