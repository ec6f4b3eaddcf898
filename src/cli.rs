//! The command line: the original console's words, plus the embedded sandbox endpoint.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ossimport",
    version,
    about = "Migrate local files into OSS (a Rust ossimport)"
)]
pub struct Cli {
    /// Folder holding local_job.cfg and sys.properties.
    #[arg(long, global = true, default_value = "conf")]
    pub conf_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate conf/local_job.cfg and register the job.
    Submit(SubmitArgs),
    /// Delete the job's state (the service must be stopped).
    Clean,
    /// Start the import service in the background.
    Start,
    /// Stop the import service; in-flight work finishes or resumes at the next start.
    Stop,
    /// Print the job's status.
    Stat(StatArgs),
    /// Put the failed files of failed tasks back to run.
    Retry,
    /// Check, before a long run, that the destination, the keys, the bucket, the clock, the
    /// source and the working folder are ready: one line per check; exit 1 on a FAIL.
    Check,
    /// Print the version.
    Version,
    /// Serve a folder as an S3-compatible endpoint on 127.0.0.1 (for trying and testing).
    Sandbox(SandboxArgs),
    /// Run the import service in the foreground (what `start` runs in the background).
    #[command(hide = true)]
    Serve,
    /// Distributed mode: join the queue of conf/sys.properties' queueUrl and run the tasks the
    /// master puts there, in the foreground, until stopped (Ctrl-C, SIGTERM, `stop`).
    Worker(WorkerArgs),
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The name this worker reports to the master (its dispatched/<host>/ folder); default
    /// workerHostName of sys.properties, else the machine's host name.
    #[arg(long, env = "OSSIMPORT_WORKER_HOST")]
    pub host_name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// List and split the source as the job would, and say what it would do (tasks, files,
    /// bytes; files importSince leaves out; invalid keys; with isSkipExistFile, files already
    /// at the destination); write nothing. Exit 1 when some files would fail.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: JSON lines, one object per task and per file reported, then a total.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatArgs {
    /// One JSON document: state, task counts, files, bytes, rates, running tasks.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Follow the job until it leaves Running: a progress bar on a terminal, plain lines
    /// otherwise; then the status block.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Start a background sandbox for conf/local_job.cfg's destDomain if it is a loopback
    /// http address with nothing listening; otherwise do nothing.
    #[arg(long, conflicts_with = "stop")]
    pub ensure: bool,
    /// Stop a sandbox that --ensure started.
    #[arg(long)]
    pub stop: bool,
    /// Folder of the stored data (one sub-folder per bucket).
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 9800)]
    pub port: u16,
    /// Bucket to create if missing (repeatable).
    #[arg(long)]
    pub bucket: Vec<String>,
    /// Access key the server accepts (also OSSIMPORT_SANDBOX_ACCESS_KEY).
    #[arg(long, env = "OSSIMPORT_SANDBOX_ACCESS_KEY", hide_env_values = true)]
    pub access_key: Option<String>,
    /// Secret key the server accepts (also OSSIMPORT_SANDBOX_SECRET_KEY).
    #[arg(long, env = "OSSIMPORT_SANDBOX_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// File whose appearance stops the server (used by --stop).
    #[arg(long, hide = true)]
    pub stop_file: Option<PathBuf>,
    /// Keep the number of requests served, by kind, in this file (for benchmarks).
    #[arg(long)]
    pub request_counts: Option<PathBuf>,
}
