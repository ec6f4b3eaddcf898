//! The master's side of distributed mode that sends: the publisher puts the tasks the
//! dispatcher hands it on the tasks stream (see src/queue/mod.rs).

use std::sync::Arc;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::wire::{self, TaskMessage};
use super::{Queue, pause};
use crate::config::JobConfig;
use crate::error::{Error, Result};
use crate::master::UNLISTED_SUFFIX;
use crate::task::{TaskId, TaskSpec};
use crate::workdir::{WorkDir, blocking};

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
                // Finished meanwhile from results a worker sent before the master restarted:
                // its end gave the slot back already.
                let Some(dir) = workdir.find_dispatched(&job, &name) else {
                    return Ok(None);
                };
                let path = dir.join("TASK");
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::io("cannot read", &path, e))?;
                let spec = TaskSpec::parse(&text, &path)?;
                Ok(Some((text, spec.unit.ends_with(UNLISTED_SUFFIX))))
            })
            .await?;
            match text {
                None => tracing::debug!(task = %id, "finished before it was queued again"),
                Some((_, true)) => {
                    let _ = self.local.send(id).await;
                }
                Some((text, false)) => self.publish(&id, text, &settings).await?,
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
        let mut message = TaskMessage {
            id: name.clone(),
            job: settings.to_string(),
            task: Some(text.to_string()),
        };
        let mut payload = wire::encode(&message);
        let inline = payload.len() <= q.max_message();
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
            message.task = None;
            payload = wire::encode(&message);
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", name.as_str());
        q.js.publish_with_headers(subject.to_string(), headers, payload)
            .await?
            .await?;
        tracing::debug!(task = %id, inline, "queued");
        Ok(())
    }
}
