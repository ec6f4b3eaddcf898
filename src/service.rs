//! The import service (`start`): master, dispatcher, worker and tracker as tokio tasks in one
//! process, running the job named in conf/local_job.cfg until `stop`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{JobConfig, SysConfig};
use crate::error::{Error, Result};
use crate::master::Master;
use crate::task::TaskId;
use crate::throttle::RateLimiter;
use crate::workdir::{TaskState, WorkDir, list_names, rename_durable, sweep_temps, write_atomic};
use crate::worker::{JobContext, run_task};

/// How long `stop` lets in-flight files finish before leaving them to resume at next start.
const DRAIN: Duration = Duration::from_secs(8);

/// Runs the service until a stop is requested.
///
/// # Errors
/// Only for faults that stop the whole service; a job's own faults are logged and recorded.
pub async fn run(conf_dir: PathBuf, sys: SysConfig, workdir: WorkDir) -> Result<()> {
    let cancel = CancellationToken::new();
    let _ = std::fs::remove_file(workdir.stop_request_file());
    tokio::spawn(watch_stop(workdir.clone(), cancel.clone()));
    let swept = sweep_temps(&workdir.master_dir()) + sweep_temps(&workdir.root().join("worker"));
    if swept > 0 {
        tracing::info!(swept, "removed temp files left by an earlier crash");
    }
    tracing::info!("import service started");
    // A job that hit a job-level fault stays marked Abort (with its reason, for `stat`) until
    // the service is restarted, instead of flapping between retries.
    let mut aborted = false;
    while !cancel.is_cancelled() {
        match find_job(&conf_dir, &workdir) {
            Ok(Some(job)) if !aborted => {
                let name = job.job_name.clone();
                if let Err(e) = run_job(Arc::new(job), &sys, &workdir, &cancel).await {
                    // Whatever stopped the job is shown by `stat` (JobState:Abort and the
                    // reason), so import.sh and users do not wait on a job that cannot move.
                    let abort_file = workdir.abort_file(&name);
                    if !abort_file.exists() {
                        let _ = write_atomic(&abort_file, e.to_string().as_bytes());
                    }
                    tracing::error!(
                        "{e}; fix the cause, then `console.sh stop` and `console.sh start`"
                    );
                    aborted = true;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!("{e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = cancel.cancelled() => {}
        }
    }
    tracing::info!("import service stopped");
    Ok(())
}

/// Cancels the service when `stop` asks (its request file), or on Ctrl-C / SIGTERM.
async fn watch_stop(workdir: WorkDir, cancel: CancellationToken) {
    crate::shutdown::requested(Some(workdir.stop_request_file())).await;
    tracing::info!("stop requested; finishing the files in flight");
    cancel.cancel();
}

/// The submitted job named in conf/local_job.cfg, with the credentials of that file (or the
/// environment): settings are frozen at submit, keys are not stored in the working dir.
fn find_job(conf_dir: &Path, workdir: &WorkDir) -> Result<Option<JobConfig>> {
    let conf = JobConfig::load(&conf_dir.join("local_job.cfg"))?.config;
    let name = conf.job_name.clone();
    let queued = workdir.queued_job_file(&name);
    if queued.exists() {
        workdir.create_job_layout(&name)?;
        rename_durable(&queued, &workdir.job_config_file(&name))?;
    }
    submitted_job(conf, workdir)
}

/// The settings the job `conf` names was submitted with (master/jobs/<job>/job.toml), with
/// the credentials of `conf` (or the environment); `None` when it has not been picked up.
///
/// # Errors
/// When job.toml cannot be read or parsed.
pub fn submitted_job(conf: JobConfig, workdir: &WorkDir) -> Result<Option<JobConfig>> {
    let settings_file = workdir.job_config_file(&conf.job_name);
    if !settings_file.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&settings_file)
        .map_err(|e| Error::io("cannot read", &settings_file, e))?;
    let mut job: JobConfig = toml::from_str(&text).map_err(|e| Error::Corrupt {
        path: settings_file.clone(),
        message: format!("{e}; run `console.sh clean` and submit again"),
    })?;
    job.dest_access_key = conf.dest_access_key;
    job.dest_secret_key = conf.dest_secret_key;
    job.src_access_key = conf.src_access_key;
    job.src_secret_key = conf.src_secret_key;
    job.apply_env_credentials();
    Ok(Some(job))
}

async fn run_job(
    job: Arc<JobConfig>,
    sys: &SysConfig,
    workdir: &WorkDir,
    service: &CancellationToken,
) -> Result<()> {
    // The job's own token: cancelled by `stop` (through the service's) or by a job abort.
    let cancel = &service.child_token();
    let name = job.job_name.clone();
    let abort_file = workdir.abort_file(&name);
    let _ = std::fs::remove_file(&abort_file);
    let abort = |message: String| {
        let _ = write_atomic(&abort_file, message.as_bytes());
        Error::Refused(format!("job {name} aborted: {message}"))
    };
    let dest = crate::dest::open(&job, crate::backoff::REQUEST_TRIES);
    tokio::select! {
        biased;
        () = cancel.cancelled() => return Ok(()),
        checked = dest.check_access() => checked.map_err(|e| abort(e.message))?,
    }
    let source = crate::source::open_source(&job).map_err(|e| abort(e.to_string()))?;
    // A wrong source key or a missing source bucket is one reason for the job, not one
    // failure per file.
    tokio::select! {
        biased;
        () = cancel.cancelled() => return Ok(()),
        checked = source.check() => checked.map_err(|e| abort(e.to_string()))?,
    }
    workdir.create_job_layout(&name)?;
    crate::retry::finish_staged(workdir, &name)?;
    let resume = crate::tracker::recover_finished(workdir, &name)?;

    let new_task = Arc::new(Notify::new());
    let master = Arc::new(Master {
        job: job.clone(),
        source: source.into(),
        workdir: workdir.clone(),
        new_task: new_task.clone(),
        cancel: cancel.clone(),
    });
    let ctx = Arc::new(JobContext {
        job: job.clone(),
        source: master.source.clone(),
        dest,
        workdir: workdir.clone(),
        file_permits: Arc::new(Semaphore::new(sys.worker_task_thread_num.max(1) as usize)),
        cancel: cancel.clone(),
        abort_on_unexpected: sys.worker_abort_when_uncatched_exception,
        limiter: RateLimiter::from_kbps(sys.worker_max_throughput_kbps).map(Arc::new),
        record_md5: sys.worker_record_md5,
        need_digests: sys.worker_record_md5
            || (job.is_audit_after_import && job.audit_mode == crate::config::AuditMode::Detailed),
        server_copy: crate::source::same_store(&job),
        abort_reason: std::sync::Mutex::new(None),
    });
    if ctx.server_copy {
        tracing::info!(
            "the source is the destination's own store (same endpoint and keys): objects are \
             copied server-side, their bytes do not pass through this machine"
        );
    }
    let mut master_run = tokio::spawn(master.clone().run());
    let mut master_done = false;

    let (task_tx, task_rx) = async_channel::bounded::<TaskId>(1);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut runners = tokio::task::JoinSet::new();
    for _ in 0..task_runners(&job, sys) {
        let (ctx, rx, in_flight, wake) = (
            ctx.clone(),
            task_rx.clone(),
            in_flight.clone(),
            new_task.clone(),
        );
        runners.spawn(async move {
            while let Ok(id) = rx.recv().await {
                if ctx.cancel.is_cancelled() {
                    // Left in dispatched: the next start resumes it.
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                match run_task(ctx.clone(), id.clone()).await {
                    Ok(Some(o)) => tracing::info!(task = %id, ok = o.ok, skipped = o.skipped, failed = o.failed, "task finished"),
                    Ok(None) => {}
                    Err(e) => ctx.abort(format!("task {id} could not go on: {e}")),
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
                wake.notify_one();
            }
        });
    }

    // Tasks an earlier run left dispatched go first; then pending ones, each moved to
    // dispatched only when a runner is ready for it.
    for id in resume {
        in_flight.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            sent = task_tx.send(id) => { sent.map_err(|_| Error::Internal("task runners stopped".into()))?; }
            () = cancel.cancelled() => break,
        }
    }
    let mut reported_round: Option<u32> = None;
    let pending_dir = workdir.state_dir(&name, TaskState::Pending);
    while !cancel.is_cancelled() {
        if !master_done && master_run.is_finished() {
            master_done = true;
            match (&mut master_run).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(abort(format!("listing the source failed: {e}"))),
                Err(e) => return Err(abort(format!("the master failed: {e}"))),
            }
        }
        for entry in list_names(&pending_dir)? {
            let Some(id) = TaskId::parse(&entry) else {
                continue;
            };
            // Moved first, so the runner finds it; a stop before the send leaves it in
            // dispatched, where the next start picks it up.
            rename_durable(
                &pending_dir.join(&entry),
                &workdir.task_dir(&name, TaskState::Dispatched, &entry),
            )?;
            in_flight.fetch_add(1, Ordering::SeqCst);
            reported_round = None;
            let sent = tokio::select! {
                sent = task_tx.send(id) => sent.is_ok(),
                () = cancel.cancelled() => false,
            };
            if !sent {
                break;
            }
        }
        let round = crate::master::current_round(workdir, &name);
        let idle = in_flight.load(Ordering::SeqCst) == 0
            && workdir.scan_finished_file(&name, round).exists()
            && list_names(&pending_dir)?.is_empty();
        if idle && reported_round != Some(round) {
            reported_round = Some(round);
            let lines = crate::report::write_report(workdir, &name, &job.dest_prefix)?;
            let stat = crate::stat::JobStat::collect(workdir, &name)?;
            tracing::info!(
                round,
                report_lines = lines,
                "job {name}: round finished, JobState:{}",
                stat.state.word()
            );
        }
        tokio::select! {
            () = new_task.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = cancel.cancelled() => {}
        }
    }
    task_tx.close();
    master_run.abort();
    if tokio::time::timeout(DRAIN, async {
        while runners.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("files still in flight after {DRAIN:?}; they resume at the next start");
    }
    match ctx.take_abort_reason() {
        Some(reason) => Err(abort(format!(
            "an unexpected error stopped the job (workerAbortWhenUncatchedException=true): {reason}"
        ))),
        None => Ok(()),
    }
}

/// Enough concurrent tasks to keep `workerTaskThreadNum` files in flight when tasks are
/// small, and only two when tasks are large (each holds its file list in memory).
fn task_runners(job: &JobConfig, sys: &SysConfig) -> usize {
    let threads = u64::from(sys.worker_task_thread_num.max(1));
    let per_task = job.task_object_count_limit.max(1);
    (threads * 2).div_ceil(per_task).clamp(2, threads.max(2)) as usize
}
