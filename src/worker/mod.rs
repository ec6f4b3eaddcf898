//! The worker: runs a dispatched task's files, `workerTaskThreadNum` at once across all tasks,
//! and sends each result to the tracker.

pub mod listed;
pub mod multipart;
pub mod parts;
pub mod transfer;
pub mod verify;

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::dest::{DestError, Destination};
use crate::error::Result;
use crate::payload::{DigestSlot, ReadFaultKind};
use crate::reason::Reason;
use crate::relpath::RelPath;
use crate::source::Source;
use crate::task::record::FileRecord;
use crate::task::{TaskId, TaskSpec};
use crate::throttle::RateLimiter;
use crate::tracker::TrackerHandle;
use crate::workdir::WorkDir;

use transfer::Transferred;

/// Why a file failed, on its way up to the file's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
    /// A destination request failed because its body could not be read from the source, this
    /// way: the transfer decides the file's real reason (or another way to send it) from it.
    pub read_fault: Option<ReadFaultKind>,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
            read_fault: None,
        }
    }
}

/// A destination request that failed after its retries: UPLOAD_ERROR, unless the transfer
/// finds the cause in the source.
impl From<DestError> for Failure {
    fn from(e: DestError) -> Failure {
        Failure {
            reason: Reason::UploadError,
            message: e.message,
            read_fault: e.read_fault,
        }
    }
}

/// Opens a range of a file as a body paced by the bandwidth cap and, when checksums are
/// wanted, hashed on the way; the slot receives the checksums once the body was sent.
pub(crate) async fn open_body(
    ctx: &JobContext,
    obj: &crate::source::SourceObject,
    offset: u64,
    len: u64,
) -> std::result::Result<(crate::payload::Body, Arc<DigestSlot>), Failure> {
    let slot = Arc::new(DigestSlot::default());
    let mut body = ctx
        .source
        .open(obj, offset, len)
        .await
        .map_err(|e| Failure::new(Reason::ReadError, e.to_string()))?
        .paced(ctx.limiter.clone());
    if ctx.need_digests {
        body = body.hashed(slot.clone());
    }
    Ok((body, slot))
}

/// Everything the tasks of one job share.
pub struct JobContext {
    pub job: Arc<JobConfig>,
    pub source: Arc<dyn Source>,
    pub dest: Arc<dyn Destination>,
    pub workdir: WorkDir,
    /// One permit per file in flight, shared by all running tasks.
    pub file_permits: Arc<Semaphore>,
    pub cancel: CancellationToken,
    /// `workerAbortWhenUncatchedException`: an unexpected error stops the job.
    pub abort_on_unexpected: bool,
    /// The process-wide bandwidth cap (`workerMaxThroughput(KB/s)`), if any.
    pub limiter: Option<Arc<RateLimiter>>,
    /// `workerRecordMd5`: store the file's MD5 as user metadata.
    pub record_md5: bool,
    /// Compute MD5 and CRC-64 of every body sent (MD5 metadata, detailed audit).
    pub need_digests: bool,
    /// The source is the destination's own store: copy objects server-side.
    pub server_copy: bool,
    /// Set with the reason when an unexpected error stops the job.
    pub abort_reason: std::sync::Mutex<Option<String>>,
    /// The outages of the destination and of a remote source, waited out by their requests.
    pub outages: [Arc<crate::outage::Outage>; 2],
}

impl JobContext {
    /// Stops the job with a reason `stat` shows (an unexpected error with
    /// `workerAbortWhenUncatchedException=true`, or state that cannot be read or written).
    pub fn abort(&self, reason: String) {
        let mut slot = self.abort_reason.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(reason);
        self.cancel.cancel();
    }

    /// Why the job stopped, if it was aborted, leaving the reason in place.
    pub fn abort_reason(&self) -> Option<String> {
        self.reason(|slot| slot.clone())
    }

    /// Why the job stopped, if it was aborted: an unexpected error, or an outage that
    /// lasted longer than `workerMaxOutageSeconds`.
    pub fn take_abort_reason(&self) -> Option<String> {
        self.reason(Option::take)
    }

    fn reason(&self, read: impl FnOnce(&mut Option<String>) -> Option<String>) -> Option<String> {
        let mut slot = self.abort_reason.lock().unwrap_or_else(|p| p.into_inner());
        read(&mut slot).or_else(|| self.outages.iter().find_map(|o| o.gave_up()))
    }
}

/// How an abort by `workerAbortWhenUncatchedException=true` begins its reason.
const UNCAUGHT: &str =
    "an unexpected error stopped the job (workerAbortWhenUncatchedException=true): ";

tokio::task_local! {
    /// The task and file a transfer works for, so a multipart upload deep inside it can report
    /// its finished parts without every function in between carrying them.
    static PART_SINK: PartSink;
}

#[derive(Clone)]
struct PartSink {
    tracker: TrackerHandle,
    id: TaskId,
    path: RelPath,
}

/// Tells the tracker a part of the current file is on the server (for `stat` progress).
pub(crate) async fn part_sent(bytes: u64) {
    if let Ok(sink) = PART_SINK.try_with(Clone::clone) {
        sink.tracker.part(sink.id, sink.path, bytes).await;
    }
}

/// Hands a file's result to the tracker. Destination failures that survived every retry are
/// the "uncaught" errors of the original: with `workerAbortWhenUncatchedException=true` they
/// stop the job instead; the known file faults (bad key, changed, missing) never do.
async fn deliver(ctx: &JobContext, tracker: &TrackerHandle, id: &TaskId, record: FileRecord) {
    if ctx.abort_on_unexpected && record.is_failed() && record.reason == Some(Reason::UploadError) {
        ctx.abort(format!("{UNCAUGHT}{}: {}", record.path, record.detail));
        return;
    }
    tracker.file(id.clone(), record).await;
}

/// Runs the files of a task that have no durable result yet, `workerTaskThreadNum` files at
/// once across all tasks, and sends each result to the tracker, then the task's end. When the
/// job stops, files not started stay for the next start.
///
/// # Errors
/// When the tracker cannot open the task's journal.
pub async fn run_task(
    ctx: Arc<JobContext>,
    tracker: &TrackerHandle,
    id: TaskId,
    spec: Arc<TaskSpec>,
) -> Result<()> {
    let done = tracker.open(id.clone(), spec.clone()).await?;
    tracing::info!(task = %id, files = spec.files.len(), already_done = done.len(), "task started");
    let (to_list, uploads) = mpsc::channel(listed::QUEUE);
    // Ends with the task: a task cut short (a stop past its drain time, an outage past its
    // limit) leaves its unaudited uploads to the next start instead of an auditor that waits
    // on the store with the tracker's handle.
    let auditor = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(listed::run(
        ctx.clone(),
        tracker.clone(),
        id.clone(),
        uploads,
    )));
    let mut running = JoinSet::new();
    for (index, file) in spec.files.iter().enumerate() {
        if done.contains(&file.path) {
            continue;
        }
        let permit = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => break,
            permit = ctx.file_permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let (ctx, spec) = (ctx.clone(), spec.clone());
        let sink = PartSink {
            tracker: tracker.clone(),
            id: id.clone(),
            path: file.path.clone(),
        };
        let to_list = to_list.clone();
        running.spawn(PART_SINK.scope(sink.clone(), async move {
            let file = &spec.files[index];
            let done = transfer::transfer_file(&ctx, file, spec.attempt).await;
            drop(permit);
            match done {
                Transferred::Done(record) => deliver(&ctx, &sink.tracker, &sink.id, record).await,
                // Only gone when the auditor is, and then the job is stopping.
                Transferred::ToList(up) => drop(to_list.send(up).await),
            }
        }));
    }
    drop(to_list);
    let mut unexpected = Vec::new();
    while let Some(joined) = running.join_next().await {
        if let Err(e) = joined {
            unexpected.push(e.to_string());
        }
    }
    if let Err(e) = auditor.await {
        unexpected.push(e.to_string());
    }
    let crashed = if unexpected.is_empty() {
        None
    } else {
        tracing::error!(task = %id, "unexpected errors: {}", unexpected.join("; "));
        if ctx.abort_on_unexpected {
            ctx.abort(format!("{UNCAUGHT}{}", unexpected.join("; ")));
        }
        // Stopping: files without a result resume at the next start.
        (!ctx.cancel.is_cancelled()).then(|| unexpected.join("; "))
    };
    tracker.end(id, crashed).await;
    Ok(())
}
