//! One module per console command; this file loads what they share and dispatches.

mod check;
mod clean;
mod dry_run;
mod retry;
mod sandbox;
mod start;
mod stat;
mod stop;
mod submit;
mod worker;

use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command};
use crate::config::{ConfigWarning, JobConfig, SysConfig};
use crate::error::Result;
use crate::workdir::WorkDir;

/// What every command needs: where the conf files are and what they say.
pub struct Console {
    pub conf_dir: PathBuf,
}

impl Console {
    pub fn job_cfg_path(&self) -> PathBuf {
        self.conf_dir.join("local_job.cfg")
    }

    /// # Errors
    /// When conf/sys.properties is unreadable or malformed.
    pub fn sys(&self) -> Result<(SysConfig, Vec<ConfigWarning>)> {
        let loaded = SysConfig::load(&self.conf_dir.join("sys.properties"))?;
        Ok((loaded.config, loaded.warnings))
    }

    /// # Errors
    /// When conf/local_job.cfg is unreadable or malformed.
    pub fn job(&self) -> Result<(JobConfig, Vec<ConfigWarning>)> {
        let loaded = JobConfig::load(&self.job_cfg_path())?;
        Ok((loaded.config, loaded.warnings))
    }

    /// The working directory named by sys.properties (relative to the current directory, as
    /// the scripts run from the package root).
    ///
    /// # Errors
    /// When conf/sys.properties is unreadable or malformed.
    pub fn workdir(&self) -> Result<WorkDir> {
        Ok(WorkDir::new(self.sys()?.0.working_dir))
    }
}

/// Runs a command; returns the exit code (0 ok, 1 some files failed).
///
/// # Errors
/// Usage, configuration and refused commands (exit 2), and other faults (exit 1).
pub fn run(cli: Cli) -> Result<u8> {
    let console = Console {
        conf_dir: cli.conf_dir,
    };
    match cli.command {
        Command::Submit(args) if args.dry_run => dry_run::run(&console, args.json),
        Command::Submit(_) => submit::run(&console),
        Command::Clean => clean::run(&console),
        Command::Start => start::run(&console),
        Command::Stop => stop::run(&console),
        Command::Stat(args) => stat::run(&console, &args),
        Command::Retry => retry::run(&console),
        Command::Check => check::run(&console),
        Command::Version => {
            println!("ossimport-rs {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Sandbox(args) => sandbox::run(&console, args),
        Command::Serve => start::serve(&console),
        Command::Worker(args) => worker::run(&console, args.host_name),
    }
}

/// The runtime of a one-shot command's requests (the service builds its own).
///
/// # Errors
/// When tokio cannot start (no threads, no I/O driver).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::error::Error::Internal(format!("cannot start tokio: {e}")))
}

/// Prints configuration warnings the way every command does.
pub fn print_warnings(warnings: &[ConfigWarning]) {
    for w in warnings {
        eprintln!("Warning: {w}");
    }
}

/// Appends a line to a log under logs/ (best effort: a log is never worth failing a command).
pub fn append_log(workdir: &WorkDir, name: &str, line: &str) {
    use std::io::Write;
    let dir = workdir.logs_dir();
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
    {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let _ = writeln!(f, "{now} {line}");
    }
}

/// `path` made absolute against the current directory, for messages and stored settings.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
