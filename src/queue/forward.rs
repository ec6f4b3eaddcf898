//! A distributed worker's side of one task's tracker: the events the worker code sends its
//! tracker go to the master, results on the results stream (each confirmed by the server),
//! Open and End as requests that the master answers on an inbox subject.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Answer, Report, UploadState};
use super::{Queue, pause};
use crate::error::{Error, Result};
use crate::relpath::RelPath;
use crate::task::TaskSpec;
use crate::tracker::Event;
use crate::workdir::blocking;
use crate::worker::JobContext;
use crate::worker::multipart::state_dir_name;

/// How long the worker waits for the master's answer to an Open or an End before asking
/// again (the master may be down; its answer may have been lost in a reconnect).
const ANSWER_WAIT: Duration = Duration::from_secs(15);
/// Results published but not yet confirmed by the server.
const UNCONFIRMED: usize = 256;

/// How a task left this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The tracker finished it: ack.
    Finished,
    /// Files are left (this worker stops): give it back now.
    Resume,
    /// The master no longer has it: drop it.
    Gone,
    /// Stopped before the master answered: it comes back after the ack wait.
    Stopped,
}

/// Carries one task's tracker events to the master: results on the results stream, each
/// confirmed by the server; Open and End as requests the master answers on an inbox subject.
pub(super) struct Forwarder {
    queue: Arc<Queue>,
    subject: String,
    task: String,
    host: String,
    multipart_dir: PathBuf,
    give_up: CancellationToken,
    /// The job's context on this worker: whether it was stopped, and why.
    ctx: Arc<JobContext>,
    /// Tells this run's message ids from another run's of the same task on the same host.
    run: u128,
    /// Checkpoint files already sent, by checkpoint folder.
    checkpoints: HashMap<String, HashSet<(String, String)>>,
    /// Reports sent so far, for their message ids (the server drops a resent duplicate).
    sent: u64,
    unconfirmed: VecDeque<Pending>,
    outcome: Outcome,
}

impl Forwarder {
    pub fn new(
        queue: Arc<Queue>,
        subject: String,
        task: String,
        host: String,
        multipart_dir: PathBuf,
        give_up: CancellationToken,
        ctx: Arc<JobContext>,
    ) -> Forwarder {
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Forwarder {
            queue,
            subject,
            task,
            host,
            multipart_dir,
            give_up,
            ctx,
            run,
            checkpoints: HashMap::new(),
            sent: 0,
            unconfirmed: VecDeque::new(),
            outcome: Outcome::Stopped,
        }
    }
}

struct Pending {
    msg_id: String,
    payload: bytes::Bytes,
    ack: async_nats::jetstream::context::PublishAckFuture,
}

impl Forwarder {
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) -> Outcome {
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
                        .unwrap_or(None)
                        .and_then(|u| self.not_yet_sent(u));
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
                    // Stopped by the worker's stop or by the job's own abort: not every file
                    // ran. An abort's reason goes to the master, which stops the job.
                    let complete = !self.ctx.cancel.is_cancelled();
                    let abort = self.ctx.abort_reason();
                    let answer = self
                        .request(|reply| Report::End {
                            id: id.clone(),
                            crashed: crashed.clone(),
                            complete,
                            abort: abort.clone(),
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
                // The worker code never asks these of its tracker; answered for completeness.
                Event::Sync { reply } => {
                    self.confirm_all().await;
                    let _ = reply.send(Ok(()));
                }
                Event::Results { reply, .. } => {
                    let _ = reply.send(Err(Error::Internal("results asked of a worker".into())));
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

    /// A message id no other report has: the server drops a resent one as a duplicate, so a
    /// report published again after a failed confirmation counts once, while the same task
    /// run again by the same host (within the server's 2-minute window) is not mistaken for it.
    fn next_id(&mut self) -> String {
        self.sent += 1;
        format!("{}:{}:{}:{}", self.host, self.task, self.run, self.sent)
    }

    /// The files of a checkpoint not sent before (parts are written once), so each report
    /// carries one part, not the whole checkpoint again.
    fn not_yet_sent(&mut self, mut upload: UploadState) -> Option<UploadState> {
        let sent = self.checkpoints.entry(upload.dir.clone()).or_default();
        upload
            .files
            .retain(|(name, text)| sent.insert((name.clone(), text.clone())));
        (!upload.files.is_empty()).then_some(upload)
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
            let payload = wire::encode(&make(inbox.clone()));
            let ack = self.publish(&msg_id, payload.clone()).await?;
            self.unconfirmed.push_back(Pending {
                msg_id,
                payload,
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
