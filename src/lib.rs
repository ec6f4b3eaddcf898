//! ossimport-rs: a Rust re-creation of Alibaba Cloud's ossimport (standalone mode).
//!
//! # Layout
//! - [`config`]: `conf/local_job.cfg` and `conf/sys.properties` into typed settings.
//! - [`workdir`]: every path under `workingDir`, atomic writes, the service lock.
//! - [`task`]: task ids and the on-disk formats of a task folder (TASK, STATUS, audit.log, ...).
//! - [`reason`]: the one word that says why a file failed or was skipped.
//! - [`source`] / [`dest`]: the one trait for sources and the one for the destination, with
//!   our own neutral types between them.
//! - [`relpath`] / [`escape`] / [`payload`]: a file's relative path, its one-line escaped
//!   form in every state file, and the bytes that travel (a re-openable byte range, paced and
//!   hashed on the way).
//! - [`master`]: lists the source and splits it into persisted tasks, with checkpoints.
//! - [`worker`]: transfers the files of a task.
//! - [`throttle`]: the process-wide bandwidth cap.
//! - [`totals`]: job-wide numbers for `stat --json` and `stat --watch`.
//! - [`tracker`]: receives every file result, journals it, and alone moves finished tasks.
//! - [`report`]: report.jsonl, the failed and skipped files of the job.
//! - [`retry`]: failed tasks back to pending with only their failed files.
//! - [`service`]: master, dispatcher, task runners (worker) and tracker as tokio tasks in one
//!   process, handing work over bounded channels with one cancellation token.
//! - [`hooks`]: named pause/kill points for deterministic end-to-end tests (inert by default).
//! - [`shutdown`]: how long-running commands learn to stop.
//! - [`stat`]: the job's status as the `stat` command prints it.
//! - [`commands`]: one module per console command.
//! - [`sandbox`]: the embedded S3-compatible endpoint on 127.0.0.1.

pub mod backoff;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dest;
pub mod error;
pub mod escape;
pub mod hooks;
pub mod key;
pub mod logfile;
pub mod master;
pub mod outage;
pub mod payload;
pub mod queue;
pub mod reason;
pub mod relpath;
pub mod report;
pub mod retry;
pub mod s3client;
pub mod sandbox;
pub mod service;
pub mod shutdown;
pub mod source;
pub mod stat;
pub mod task;
pub mod throttle;
pub mod totals;
pub mod tracker;
pub mod words;
pub mod workdir;
pub mod worker;

pub use error::{Error, Result};
