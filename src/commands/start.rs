//! `start`: run the import service in the background; `serve` is that service itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Console, print_warnings};
use crate::error::{Error, IoContext, Result};
use crate::workdir::{ServiceLock, WorkDir, write_atomic};

/// How long `start` waits for the service to report that it runs.
const STARTUP: Duration = Duration::from_secs(20);

pub fn run(console: &Console) -> Result<u8> {
    let (sys, warnings) = console.sys()?;
    print_warnings(&warnings);
    let workdir = WorkDir::new(&sys.working_dir);
    if ServiceLock::is_held(&workdir)? {
        return Err(already_running(&workdir));
    }
    let logs = workdir.logs_dir();
    std::fs::create_dir_all(&logs).ctx("cannot create folder", &logs)?;
    let stderr_log = workdir.service_stderr_log();
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_log)
        .ctx("cannot open log", &stderr_log)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find own binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--conf-dir")
        .arg(&console.conf_dir)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    detach(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Internal(format!("cannot start the service: {e}")))?;
    let started = Instant::now();
    let pid = child.id().to_string();
    loop {
        if std::fs::read_to_string(workdir.pid_file()).is_ok_and(|p| p.trim() == pid) {
            println!("Start import service completed.");
            return Ok(0);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Refused(format!(
                "the import service exited at once ({status}); see {} and logs/ossimport2.log",
                stderr_log.display()
            )));
        }
        if started.elapsed() > STARTUP {
            return Err(Error::Refused(format!(
                "the import service did not report within {STARTUP:?}; see logs/ossimport2.log"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(super) fn already_running(workdir: &WorkDir) -> Error {
    let pid = std::fs::read_to_string(workdir.pid_file()).unwrap_or_default();
    Error::Refused(format!(
        "the import service is already running (pid {}); run `console.sh stop` first",
        pid.trim()
    ))
}

/// Keeps the service alive when the terminal that started it closes or gets Ctrl-C.
#[cfg(unix)]
pub(super) fn detach(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

#[cfg(windows)]
pub(super) fn detach(cmd: &mut Command) {
    use std::os::windows::process::CommandExt;
    const DETACHED_PROCESS: u32 = 0x0000_0008;
    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
    cmd.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
}

#[cfg(not(any(unix, windows)))]
pub(super) fn detach(_cmd: &mut Command) {}

/// The crates of the AWS SDK, whose events below info can show credentials.
const SDK_LOG_TARGETS: [&str; 8] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_runtime",
    "aws_sdk_s3",
    "aws_sigv4",
    "aws_credential_types",
];

/// Sends the process's log to `logs/<name>` (rotated daily, 7 days kept); the guard flushes it
/// when dropped.
///
/// # Errors
/// When the log folder cannot be created or the file opened.
fn init_log(workdir: &WorkDir, name: &str) -> Result<tracing_appender::non_blocking::WorkerGuard> {
    let logs = workdir.logs_dir();
    std::fs::create_dir_all(&logs).ctx("cannot create folder", &logs)?;
    let log_file =
        crate::logfile::DailyLog::open(logs.clone(), name).ctx("cannot open the log in", &logs)?;
    let (writer, guard) = tracing_appender::non_blocking(log_file);
    // OSSIMPORT_LOG, else RUST_LOG, else info; OSSIMPORT_LOG_FORMAT=json for a log system.
    let filter = tracing_subscriber::EnvFilter::try_from_env("OSSIMPORT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The SDK's debug and trace events print its config, access key id included: whatever
    // level is asked for, its crates log at info at most.
    let filter = SDK_LOG_TARGETS.iter().fold(filter, |f, target| {
        f.add_directive(format!("{target}=info").parse().expect("a valid directive"))
    });
    let logger = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter);
    if std::env::var("OSSIMPORT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logger.json().init();
    } else {
        logger.init();
    }
    Ok(guard)
}

/// What a foreground process (the service, a worker) does once it holds the working folder's
/// lock: its log, the configuration's warnings there, its pid file. The guard flushes the log.
///
/// # Errors
/// When the log or the pid file cannot be written.
pub(super) fn begin(
    workdir: &WorkDir,
    log_name: &str,
    warnings: Vec<crate::config::ConfigWarning>,
) -> Result<tracing_appender::non_blocking::WorkerGuard> {
    let guard = init_log(workdir, log_name)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    write_atomic(
        &workdir.pid_file(),
        std::process::id().to_string().as_bytes(),
    )?;
    Ok(guard)
}

/// The service in the foreground: holds the lock for its whole life, logs to
/// logs/ossimport2.log (rotated daily, 7 days kept), runs until `stop`.
pub fn serve(console: &Console) -> Result<u8> {
    let (sys, warnings) = console.sys()?;
    let workdir = WorkDir::new(&sys.working_dir);
    // `stat` and `stop` probe the lock by taking it for an instant; retry briefly so such a
    // probe is not mistaken for a running service.
    let mut lock = ServiceLock::try_acquire(&workdir)?;
    for _ in 0..20 {
        if lock.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        lock = ServiceLock::try_acquire(&workdir)?;
    }
    let Some(_lock) = lock else {
        return Err(already_running(&workdir));
    };
    let _guard = begin(&workdir, WorkDir::service_log_name(), warnings)?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Error::Internal(format!("cannot start tokio: {e}")))?;
    let result = runtime.block_on(crate::service::run(
        console.conf_dir.clone(),
        sys,
        workdir.clone(),
    ));
    // Blocking work still running (a listing thread between two checks) must not hold up the
    // exit: everything it does is atomic and redone at the next start.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // A clean exit removes the pid file; one left behind without a lock holder means a crash.
    let _ = std::fs::remove_file(workdir.pid_file());
    let _ = std::fs::remove_file(workdir.stop_request_file());
    result.map(|()| 0)
}
