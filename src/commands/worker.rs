//! `worker`: a worker of distributed mode in the foreground, in its own working folder, until
//! Ctrl-C, SIGTERM or `console.sh stop` there.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Console;
use super::start::{already_running, begin};
use crate::error::{Error, Result};
use crate::workdir::{ServiceLock, WorkDir};

pub fn run(console: &Console, host_name: Option<String>) -> Result<u8> {
    let (sys, warnings) = console.sys()?;
    super::print_warnings(&warnings);
    if sys.queue_url.is_empty() {
        return Err(Error::Refused(format!(
            "{}: queueUrl is empty, so there is no queue to join; set it to the NATS server \
             the master uses (like queueUrl=nats://10.0.0.5:4222)",
            console.conf_dir.join("sys.properties").display()
        )));
    }
    let host = match host_name.filter(|h| !h.is_empty()) {
        Some(h) => crate::queue::host_folder(&h),
        None if !sys.worker_host_name.is_empty() => sys.worker_host_name.clone(),
        None => crate::queue::host_folder(&machine_name()),
    };
    let workdir = WorkDir::new(&sys.working_dir);
    // One process per working folder: a worker beside the master needs a folder of its own.
    let Some(_lock) = ServiceLock::try_acquire(&workdir)? else {
        return Err(already_running(&workdir));
    };
    let _guard = begin(&workdir, WorkDir::worker_log_name(), warnings)?;
    let _ = std::fs::remove_file(workdir.stop_request_file());
    println!(
        "Worker {host} joins the queue of {}; log in {}",
        console.conf_dir.join("sys.properties").display(),
        workdir
            .logs_dir()
            .join(WorkDir::worker_log_name())
            .display()
    );
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Error::Internal(format!("cannot start tokio: {e}")))?;
    let result = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let stop = {
            let (file, cancel) = (workdir.stop_request_file(), cancel.clone());
            tokio::spawn(async move {
                crate::shutdown::requested(Some(file)).await;
                cancel.cancel();
            })
        };
        let ran =
            crate::queue::worker::run(console.conf_dir.clone(), sys, workdir.clone(), host, cancel)
                .await;
        stop.abort();
        ran
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_file(workdir.pid_file());
    let _ = std::fs::remove_file(workdir.stop_request_file());
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    result.map(|()| 0)
}

/// The machine's host name, as the kernel knows it.
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".to_string())
}
