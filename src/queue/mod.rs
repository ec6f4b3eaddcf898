//! Distributed mode (`queueUrl` in sys.properties): the NATS JetStream streams the master and
//! the workers share, their names, and the connection to them.
//!
//! ```text
//! master: dispatcher --TaskId--> publisher --{P}.tasks.<job>.<task>--> [{P}_TASKS] (work queue)
//!                                                                          |  one consumer,
//! workers (`ossimport worker`, any host) <---- one task at a time ---------+  {P}_workers
//!    |  Open / File / Part / End
//!    +--{P}.results.<job>--> [{P}_RESULTS] --{P}_tracker--> inbox --> tracker (master)
//!                     answers to Open and End <-- core NATS, the worker's inbox subject
//! ```
//!
//! The master's folders stay the durable record, as in standalone mode; the streams only carry
//! work and results between hosts. A worker acks a task only once the tracker answered its End,
//! that is once every result of the task is journaled on the master; a worker that dies leaves
//! the task unacked and JetStream hands it to another after `queueAckWaitSeconds`.

mod forward;
pub mod inbox;
pub mod publisher;
pub mod wire;
pub mod worker;

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use md5::{Digest, Md5};

use crate::config::SysConfig;
use crate::error::{Error, Result};

/// How long a request to the server (a publish's ack, a stream lookup) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection to the queue and the names derived from `queueStreamPrefix`.
pub struct Queue {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    prefix: String,
    /// `queueUrl` without any user or password, for messages.
    pub shown_url: String,
    ack_wait: Duration,
}

/// A NATS subject token for a job name, which may hold dots and spaces.
pub fn job_token(job: &str) -> String {
    Md5::digest(job.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A worker's reported host name as one folder name under `dispatched/` (it comes from the
/// wire): other characters become `-`, and an empty name is `unnamed`.
pub fn host_folder(name: &str) -> String {
    let folder: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if folder.is_empty() {
        "unnamed".to_string()
    } else {
        folder
    }
}

/// `queueUrl` without what may be a secret (`nats://user:pass@host` or a token).
fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        None => url.to_string(),
    }
}

impl Queue {
    /// Connects to `queueUrl` (a server that is down is waited for: the client reconnects on
    /// its own) and makes sure the two streams exist.
    ///
    /// # Errors
    /// When `queueUrl` is empty or the server refuses the streams (JetStream off, a stream of
    /// that name with other settings).
    pub async fn connect(sys: &SysConfig, role: &str) -> Result<Queue> {
        if sys.queue_url.is_empty() {
            return Err(Error::Refused(
                "queueUrl is empty in conf/sys.properties: set it to the NATS server the master \
                 uses (like queueUrl=nats://10.0.0.5:4222) to run in distributed mode"
                    .into(),
            ));
        }
        let shown_url = shown(&sys.queue_url);
        let client = async_nats::ConnectOptions::new()
            .name(format!("ossimport {role}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(sys.queue_url.as_str())
            .await
            .map_err(|e| Error::Refused(format!("cannot use the queue {shown_url}: {e}")))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(REQUEST_TIMEOUT);
        let prefix = match sys.queue_stream_prefix.as_str() {
            "" => "OSSIMPORT".to_string(),
            p => p.to_string(),
        };
        let queue = Queue {
            client,
            js,
            prefix,
            shown_url,
            ack_wait: Duration::from_secs(sys.queue_ack_wait_seconds.max(2)),
        };
        queue.ensure_streams().await?;
        Ok(queue)
    }

    /// Creates the streams if missing, waiting while the server cannot be reached.
    async fn ensure_streams(&self) -> Result<()> {
        let mut warned = false;
        loop {
            match self.create_streams().await {
                Ok(()) => return Ok(()),
                Err(e) if is_unreachable(&e) => {
                    if !warned {
                        tracing::warn!(
                            "the queue {} does not answer ({e}); waiting for it",
                            self.shown_url
                        );
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => {
                    return Err(Error::Refused(format!(
                        "the queue {} refused the streams {}_TASKS and {}_RESULTS: {e}; is \
                         JetStream on (nats-server -js)?",
                        self.shown_url, self.prefix, self.prefix
                    )));
                }
            }
        }
    }

    async fn create_streams(&self) -> std::result::Result<(), async_nats::Error> {
        for (name, subjects) in [
            (self.tasks_stream(), format!("{}.tasks.>", self.prefix)),
            (self.results_stream(), format!("{}.results.>", self.prefix)),
        ] {
            self.js
                .get_or_create_stream(stream::Config {
                    name,
                    subjects: vec![subjects],
                    retention: stream::RetentionPolicy::WorkQueue,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await?;
        }
        Ok(())
    }

    pub fn tasks_stream(&self) -> String {
        format!("{}_TASKS", self.prefix)
    }

    pub fn results_stream(&self) -> String {
        format!("{}_RESULTS", self.prefix)
    }

    /// The subject of one task: one message per subject, so the master can ask whether a task
    /// is still queued.
    pub fn task_subject(&self, job: &str, task: &crate::task::TaskId) -> String {
        format!("{}.tasks.{}.{}", self.prefix, job_token(job), task.short())
    }

    pub fn results_subject(&self, job: &str) -> String {
        format!("{}.results.{}", self.prefix, job_token(job))
    }

    /// Where TASK files over the server's maximum payload go.
    pub fn task_store(&self) -> String {
        format!("{}_TASKFILES", self.prefix)
    }

    /// Largest message body that fits the server's maximum payload with its headers.
    pub fn max_message(&self) -> usize {
        self.client.server_info().max_payload.saturating_sub(4096)
    }

    /// The consumer every worker pulls tasks from.
    pub(crate) async fn workers_consumer(&self) -> Result<jetstream::consumer::PullConsumer> {
        self.consumer(
            self.tasks_stream(),
            format!("{}_workers", self.prefix),
            format!("{}.tasks.>", self.prefix),
        )
        .await
    }

    /// The consumer the master's tracker reads results from, made afresh: the results not
    /// yet acked (the master crashed, or lost the server, before it acked them) then come in
    /// the order they were sent, instead of after the newer ones once their ack wait ends, so
    /// a task's End never overtakes its files' results.
    async fn tracker_consumer(&self) -> Result<jetstream::consumer::PullConsumer> {
        if let Ok(stream) = self.js.get_stream(self.results_stream()).await {
            let _ = stream
                .delete_consumer(&format!("{}_tracker", self.prefix))
                .await;
        }
        self.consumer(
            self.results_stream(),
            format!("{}_tracker", self.prefix),
            format!("{}.results.>", self.prefix),
        )
        .await
    }

    async fn consumer(
        &self,
        stream: String,
        durable: String,
        filter: String,
    ) -> Result<jetstream::consumer::PullConsumer> {
        let failed = |e: &dyn std::fmt::Display| {
            Error::Refused(format!(
                "the queue {} cannot give the consumer {durable} of {stream}: {e}",
                self.shown_url
            ))
        };
        let stream = self.js.get_stream(&stream).await.map_err(|e| failed(&e))?;
        stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    filter_subject: filter,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed(&e))
    }
}

/// Whether a queue failure means the server could not be reached (to wait for), rather than
/// a refusal (to report).
fn is_unreachable(e: &async_nats::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    [
        "timed out",
        "timeout",
        "disconnected",
        "connection",
        "no responders",
        "broken pipe",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Waits `attempt`'s share of a 1, 2, 4 .. 16 s backoff, or less when `cancel` fires.
async fn pause(attempt: u32, cancel: &tokio_util::sync::CancellationToken) {
    let wait = Duration::from_secs(1 << attempt.min(4));
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = cancel.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown("nats://u:secret@10.0.0.5:4222"),
            "nats://10.0.0.5:4222"
        );
        assert_eq!(shown("nats://tok@h:1"), "nats://h:1");
        assert_eq!(shown("nats://h:1"), "nats://h:1");
    }

    #[test]
    fn job_tokens_are_subject_safe() {
        let t = job_token("my job.v2 *");
        assert_eq!(t.len(), 16);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t, job_token("other"));
    }

    #[test]
    fn host_names_stay_one_folder() {
        assert_eq!(host_folder("w1.example.com"), "w1-example-com");
        assert_eq!(host_folder("../succeed_tasks"), "---succeed_tasks");
        assert_eq!(host_folder("/tmp"), "-tmp");
        assert_eq!(host_folder(""), "unnamed");
    }
}
