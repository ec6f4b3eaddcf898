//! The import service (`start`): runs the job named in conf/local_job.cfg until `stop`, as
//! tokio tasks in one process that hand work over bounded channels, with one cancellation
//! token:
//!
//! ```text
//! master --Split--> dispatcher --TaskId--> task runners (worker) --Event--> tracker
//!    ^                  ^  |                                                   |
//!    |                  |  +-- round done (watch) --> master                   |
//!    |                  +---------------------- Ended -------------------------+
//!    +-- relist (retried folders the listing could not read) <-- task runners
//! ```
//!
//! The folders stay the durable record, each step written by its owner before the next step
//! hears of it: the master writes a task into pending_tasks, the dispatcher moves it to
//! dispatched, the tracker journals results and alone moves finished tasks to
//! succeed_tasks/failed_tasks. A `kill -9` at any moment resumes by reading the folders.
//!
//! In distributed mode (`queueUrl`, see src/queue/) the task runners are replaced by a
//! publisher that puts dispatched tasks on a NATS JetStream stream for worker processes on
//! other hosts, and an inbox that hands their results to the same tracker.

mod dispatch;
mod job;
mod pace;
mod runner;

pub(crate) use job::{open_job as open_job_context, task_runners};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{JobConfig, SysConfig};
use crate::error::{Error, Result};
use crate::workdir::{WorkDir, rename_durable, sweep_temps, write_atomic};

/// Runs the service until a stop is requested.
///
/// # Errors
/// Only for faults that stop the whole service; a job's own faults are logged and recorded.
pub async fn run(conf_dir: PathBuf, sys: SysConfig, workdir: WorkDir) -> Result<()> {
    let cancel = CancellationToken::new();
    let sys_path = conf_dir.join("sys.properties");
    let _ = std::fs::remove_file(workdir.stop_request_file());
    tokio::spawn(watch_stop(workdir.clone(), cancel.clone()));
    // Before any task starts, so nothing is in flight yet.
    let swept = sweep_temps(&workdir.master_dir()) + sweep_temps(&workdir.root().join("worker"));
    if swept > 0 {
        tracing::info!(swept, "removed temp files left by an earlier crash");
    }
    tracing::info!("import service started");
    // A job that hit a job-level fault stays marked Abort (with its reason, for `stat`) until
    // the service is restarted, instead of flapping between retries.
    let mut aborted = false;
    while !cancel.is_cancelled() {
        let found = {
            let (conf_dir, workdir) = (conf_dir.clone(), workdir.clone());
            crate::workdir::blocking(move || find_job(&conf_dir, &workdir)).await
        };
        match found {
            Ok(Some(job)) if !aborted => {
                let name = job.job_name.clone();
                let run = job::run_job(Arc::new(job), &sys, &sys_path, &workdir, &cancel);
                if let Err(e) = run.await {
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
