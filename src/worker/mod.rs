//! The worker: runs a dispatched task, `workerTaskThreadNum` files at once across all tasks.

pub mod multipart;
pub mod transfer;
pub mod verify;

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::dest::Destination;
use crate::error::{Error, Result};
use crate::payload::DigestSlot;
use crate::source::Source;
use crate::task::record::{FileRecord, Outcome, reason};
use crate::task::{TaskId, TaskSpec};
use crate::throttle::RateLimiter;
use crate::tracker::{self, TaskJournal, TaskOutcome};
use crate::workdir::{TaskState, WorkDir};

/// Opens a range of a file as a body paced by the bandwidth cap and, when checksums are
/// wanted, hashed on the way; the slot receives the checksums once the body was sent.
pub(crate) async fn open_body(
    ctx: &JobContext,
    obj: &crate::source::SourceObject,
    offset: u64,
    len: u64,
) -> std::result::Result<(crate::payload::Body, Arc<DigestSlot>), verify::Failure> {
    let slot = Arc::new(DigestSlot::default());
    let mut body = ctx
        .source
        .open(obj, offset, len)
        .await
        .map_err(|e| (crate::task::record::reason::READ_ERROR, e.to_string()))?
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
}

impl JobContext {
    /// Stops the job on an unexpected error (`workerAbortWhenUncatchedException=true`).
    pub fn abort(&self, reason: String) {
        let mut slot = self.abort_reason.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(reason);
        self.cancel.cancel();
    }

    pub fn take_abort_reason(&self) -> Option<String> {
        self.abort_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Runs a task to its end, resuming from its journal. Returns `None` when the service is
/// stopping and the task was left resumable in `dispatched`.
///
/// # Errors
/// When the task's files cannot be read or its state cannot be written.
pub async fn run_task(ctx: Arc<JobContext>, id: TaskId) -> Result<Option<TaskOutcome>> {
    let job = ctx.job.job_name.clone();
    let task_file = ctx
        .workdir
        .task_dir(&job, TaskState::Dispatched, &id.to_string())
        .join("TASK");
    let spec = Arc::new(TaskSpec::read(&task_file)?);
    let journal_dir = ctx.workdir.worker_task_dir(&job, &id.to_string());
    let journal = {
        let spec = spec.clone();
        blocking(move || TaskJournal::open(journal_dir, &spec)).await?
    };
    let done = journal.done_paths();
    tracing::info!(task = %id, files = spec.files.len(), already_done = done.len(), "task started");

    let (tx, rx) = mpsc::channel::<FileRecord>(1024);
    let writer = tokio::spawn(write_journal(journal, rx));
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
        let (ctx, tx, spec) = (ctx.clone(), tx.clone(), spec.clone());
        running.spawn(async move {
            let file = &spec.files[index];
            let record = transfer::transfer_file(&ctx, file, spec.attempt).await;
            drop(permit);
            // Destination failures that survived every retry are the "uncaught" errors of
            // the original; the known file faults (bad key, changed, missing) never stop a job.
            if ctx.abort_on_unexpected
                && record.is_failed()
                && record.reason == reason::UPLOAD_ERROR
            {
                ctx.abort(format!("{}: {}", record.path, record.detail));
                return;
            }
            let _ = tx.send(record).await;
        });
    }
    drop(tx);
    let mut unexpected = Vec::new();
    while let Some(joined) = running.join_next().await {
        if let Err(e) = joined {
            unexpected.push(e.to_string());
        }
    }
    let mut journal = writer
        .await
        .map_err(|e| Error::Internal(format!("journal writer failed: {e}")))??;
    if !unexpected.is_empty() {
        tracing::error!(task = %id, "unexpected errors: {}", unexpected.join("; "));
        if ctx.cancel.is_cancelled() {
            // Stopping: files without a record resume at the next start.
            return Ok(None);
        }
        if ctx.abort_on_unexpected {
            ctx.abort(unexpected.join("; "));
            return Ok(None);
        }
        // Files whose transfer crashed get a failure record, so the task can end.
        let recorded = journal.done_paths();
        let lost: Vec<FileRecord> = spec
            .files
            .iter()
            .filter(|f| !recorded.contains(&f.path))
            .map(|f| {
                FileRecord::new(
                    Outcome::Failed,
                    "UNEXPECTED",
                    f.size,
                    f.path.clone(),
                    unexpected.join("; "),
                )
            })
            .collect();
        journal = blocking(move || journal.append(lost).map(|()| journal)).await?;
    }
    if journal.records().len() < spec.files.len() {
        tracing::info!(task = %id, "task interrupted; it resumes at the next start");
        return Ok(None);
    }
    let workdir = ctx.workdir.clone();
    let outcome = blocking(move || tracker::finish_task(&workdir, &job, &id, &journal)).await?;
    Ok(Some(outcome))
}

/// Longest a finished file's result waits before it is made durable.
const JOURNAL_LINGER: std::time::Duration = std::time::Duration::from_millis(100);
/// Most results in one journal segment.
const JOURNAL_BATCH: usize = 1024;

/// Group commit: everything that arrived while the previous segment was written goes into
/// the next one, so a busy task writes few segments and a quiet one loses nothing.
async fn write_journal(
    mut journal: TaskJournal,
    mut rx: mpsc::Receiver<FileRecord>,
) -> Result<TaskJournal> {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Linger briefly so a busy task writes one segment per JOURNAL_LINGER instead of one
        // per few files: each segment is a new file and two fsyncs, and creating files is what
        // a small-file migration spends most kernel time on. Results waiting here count as
        // in flight: after a crash those files are sent again.
        let deadline = tokio::time::Instant::now() + JOURNAL_LINGER;
        while batch.len() < JOURNAL_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(more)) => batch.push(more),
                Ok(None) | Err(_) => break,
            }
        }
        journal = blocking(move || journal.append(batch).map(|()| journal)).await?;
    }
    Ok(journal)
}

/// Runs file-system work (fsync) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("background file work failed: {e}")))?
}
