//! Every path under `workingDir`, the atomic-write primitive and the service lock.
//!
//! Nothing else in the crate builds a path under the working directory by hand: the layout
//! of the original (`master/jobs/<job>/pending_tasks/...`) lives here and only here.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IoContext, Result};

/// Where a task folder lives; each state is one directory of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    Dispatched,
    Succeed,
    Failed,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [
        TaskState::Pending,
        TaskState::Dispatched,
        TaskState::Succeed,
        TaskState::Failed,
    ];

    fn dir_name(self) -> &'static str {
        match self {
            TaskState::Pending => "pending_tasks",
            TaskState::Dispatched => "dispatched/localhost",
            // In distributed mode a task moves on to dispatched/<worker host>/ when a worker
            // takes it: see [`WorkDir::dispatched_tasks`].
            TaskState::Succeed => "succeed_tasks",
            TaskState::Failed => "failed_tasks",
        }
    }
}

/// Prefix of every temporary name; swept at service start.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Names the files of [`WorkDir::worker_trouble_file`].
const WORKER_TROUBLE_PREFIX: &str = "WAITING-worker-";

/// Names the markers of [`WorkDir::relisting_file`].
pub const RELISTING_PREFIX: &str = "RELISTING-";

#[derive(Debug, Clone)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        WorkDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn service_log_name() -> &'static str {
        "ossimport2.log"
    }

    /// The log of a distributed worker (`ossimport worker`), in its own working folder.
    pub fn worker_log_name() -> &'static str {
        "worker.log"
    }

    pub fn service_stderr_log(&self) -> PathBuf {
        self.logs_dir().join("import.log")
    }

    pub fn master_dir(&self) -> PathBuf {
        self.root.join("master")
    }

    pub fn jobqueue_dir(&self) -> PathBuf {
        self.master_dir().join("jobqueue")
    }

    /// A submitted job not yet picked up by the service.
    pub fn queued_job_file(&self, job: &str) -> PathBuf {
        self.jobqueue_dir().join(format!("{job}.toml"))
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.master_dir().join("jobs")
    }

    pub fn job_dir(&self, job: &str) -> PathBuf {
        self.jobs_dir().join(job)
    }

    /// The job's settings as submitted (no secrets).
    pub fn job_config_file(&self, job: &str) -> PathBuf {
        self.job_dir(job).join("job.toml")
    }

    /// Present when the job stopped on a job-level fault; holds the reason for `stat`.
    pub fn abort_file(&self, job: &str) -> PathBuf {
        self.job_dir(job).join("ABORT")
    }

    /// Present while the running job waits out an outage of its `side` ("destination",
    /// "source"): what `stat` shows of it.
    pub fn waiting_file(&self, job: &str, side: &str) -> PathBuf {
        self.job_dir(job).join(format!("WAITING-{side}"))
    }

    /// Distributed mode: why the worker `host` cannot run the job's tasks, for `stat`.
    pub fn worker_trouble_file(&self, job: &str, host: &str) -> PathBuf {
        self.job_dir(job)
            .join(format!("{WORKER_TROUBLE_PREFIX}{host}"))
    }

    /// Every [`WorkDir::worker_trouble_file`] of the job, sorted.
    pub fn worker_trouble_files(&self, job: &str) -> Vec<PathBuf> {
        list_names(&self.job_dir(job))
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.starts_with(WORKER_TROUBLE_PREFIX))
            .map(|n| self.job_dir(job).join(n))
            .collect()
    }

    pub fn checkpoints_dir(&self, job: &str, round: u32) -> PathBuf {
        self.job_dir(job)
            .join("checkpoints")
            .join(round.to_string())
    }

    pub fn checkpoint_file(&self, job: &str, round: u32, unit_hash: &str) -> PathBuf {
        self.checkpoints_dir(job, round)
            .join(format!("{unit_hash}.cpt"))
    }

    /// Present once every scan unit of the round is listed and split.
    pub fn scan_finished_file(&self, job: &str, round: u32) -> PathBuf {
        self.checkpoints_dir(job, round).join("SCAN_FINISHED")
    }

    /// Present while a retried task of entries the scan could not list is listed again: its
    /// new tasks appear after the round's SCAN_FINISHED, so the scan is not finished yet.
    pub fn relisting_file(&self, job: &str, round: u32, task_hash: &str) -> PathBuf {
        self.checkpoints_dir(job, round)
            .join(format!("{RELISTING_PREFIX}{task_hash}"))
    }

    /// True while any task of `round` is being listed again.
    pub fn is_relisting(&self, job: &str, round: u32) -> bool {
        fs::read_dir(self.checkpoints_dir(job, round)).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(RELISTING_PREFIX)
            })
        })
    }

    pub fn state_dir(&self, job: &str, state: TaskState) -> PathBuf {
        self.job_dir(job).join(state.dir_name())
    }

    pub fn task_dir(&self, job: &str, state: TaskState, task_id: &str) -> PathBuf {
        self.state_dir(job, state).join(task_id)
    }

    pub fn worker_job_dir(&self, job: &str) -> PathBuf {
        self.root.join("worker").join("jobs").join(job)
    }

    pub fn worker_tasks_dir(&self, job: &str) -> PathBuf {
        self.worker_job_dir(job).join("tasks")
    }

    /// The worker's live state of one running task: journal segments and PROGRESS.
    pub fn worker_task_dir(&self, job: &str, task_id: &str) -> PathBuf {
        self.worker_tasks_dir(job).join(task_id)
    }

    /// Resumable multipart uploads of the job: one folder per file, kept across tasks so a
    /// `retry` resumes them too.
    pub fn multipart_dir(&self, job: &str) -> PathBuf {
        self.worker_job_dir(job).join("multipart")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.master_dir().join("service.lock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.master_dir().join("service.pid")
    }

    /// Written by `stop`; the service polls for it (works the same on every OS).
    pub fn stop_request_file(&self) -> PathBuf {
        self.master_dir().join("service.stop")
    }

    /// Creates the job's folder layout (idempotent).
    ///
    /// # Errors
    /// When a folder cannot be created.
    pub fn create_job_layout(&self, job: &str) -> Result<()> {
        for state in TaskState::ALL {
            let dir = self.state_dir(job, state);
            fs::create_dir_all(&dir).ctx("cannot create folder", &dir)?;
        }
        let dir = self.job_dir(job).join("checkpoints");
        fs::create_dir_all(&dir).ctx("cannot create folder", &dir)?;
        let dir = self.worker_tasks_dir(job);
        fs::create_dir_all(&dir).ctx("cannot create folder", &dir)?;
        Ok(())
    }

    /// `dispatched/<host>/<task>`: where a task a worker of `host` runs is kept (distributed
    /// mode; the master claims into `dispatched/localhost`).
    pub fn dispatched_to(&self, job: &str, host: &str, task_id: &str) -> PathBuf {
        self.job_dir(job)
            .join("dispatched")
            .join(host)
            .join(task_id)
    }

    /// Every dispatched task's folder, under any host, sorted by task name.
    ///
    /// # Errors
    /// When a folder exists but cannot be read.
    pub fn dispatched_tasks(&self, job: &str) -> Result<Vec<(String, PathBuf)>> {
        let root = self.job_dir(job).join("dispatched");
        let mut tasks = Vec::new();
        // Only folders: a stray file under dispatched/ is no task and no host.
        for host in list_names(&root)? {
            if !root.join(&host).is_dir() {
                continue;
            }
            for name in list_names(&root.join(&host))? {
                let dir = root.join(&host).join(&name);
                if dir.is_dir() {
                    tasks.push((name, dir));
                }
            }
        }
        tasks.sort();
        Ok(tasks)
    }

    /// The folder of a dispatched task under whichever host holds it, if it is dispatched.
    pub fn find_dispatched(&self, job: &str, task_id: &str) -> Option<PathBuf> {
        let claimed = self.task_dir(job, TaskState::Dispatched, task_id);
        if claimed.is_dir() {
            return Some(claimed);
        }
        let root = self.job_dir(job).join("dispatched");
        list_names(&root)
            .ok()?
            .into_iter()
            .map(|host| root.join(host).join(task_id))
            .find(|dir| dir.is_dir())
    }

    /// The names of jobs that have a folder under `master/jobs`.
    ///
    /// # Errors
    /// When `master/jobs` exists but cannot be read.
    pub fn job_names(&self) -> Result<Vec<String>> {
        list_names(&self.jobs_dir())
    }
}

/// Sorted names of the entries of `dir`, leaving out temporaries; empty if `dir` is missing.
///
/// # Errors
/// When the folder exists but cannot be read.
pub fn list_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crate::Error::io("cannot read folder", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.ctx("cannot read folder", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary sibling name of `path`, unique within this process and across processes.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{TEMP_PREFIX}{}-{n}-{name}", std::process::id()))
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content:
/// temp file, fsync, rename, fsync of the folder.
///
/// # Errors
/// When any step fails; the temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.ctx("cannot write", path)
}

/// Renames `from` to `to` and makes the rename durable.
///
/// # Errors
/// When the rename fails.
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).ctx("cannot move", from)?;
    if let Some(parent) = to.parent() {
        sync_dir(parent).ctx("cannot sync folder", parent)?;
    }
    if let Some(parent) = from.parent() {
        sync_dir(parent).ctx("cannot sync folder", parent)?;
    }
    Ok(())
}

/// Runs file-system work (fsyncs, renames, folder listings) on the blocking pool, so it never
/// holds up the async threads that drive transfers, listings and `stop`.
///
/// # Errors
/// The work's own error, or when the work panicked.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::Error::Internal(format!("background file work failed: {e}")))?
}

/// Makes a folder's entries (creations, renames) durable. A no-op where folders cannot be
/// opened (Windows), whose renames are durable by other means.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Removes temp files and folders left by a crash anywhere under `dir`; returns how many.
pub fn sweep_temps(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let gone = if kind.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed += usize::from(gone.is_ok());
        } else if kind.is_dir() {
            removed += sweep_temps(&path);
        }
    }
    removed
}

/// The exclusive lock the running service holds for its whole life. The OS releases it when
/// the process dies, even by `kill -9`, so a stale pid file never blocks a new `start`.
pub struct ServiceLock {
    _file: File,
}

impl ServiceLock {
    /// Takes the lock, or returns `None` when another process holds it.
    ///
    /// # Errors
    /// When the lock file cannot be opened.
    pub fn try_acquire(workdir: &WorkDir) -> Result<Option<ServiceLock>> {
        let path = workdir.lock_file();
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).ctx("cannot create folder", parent)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("cannot open lock file", &path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ServiceLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(crate::Error::io("cannot lock", &path, e)),
        }
    }

    /// True when a service process holds the lock right now.
    ///
    /// # Errors
    /// When the lock file cannot be opened.
    pub fn is_held(workdir: &WorkDir) -> Result<bool> {
        if !workdir.lock_file().exists() {
            return Ok(false);
        }
        Ok(Self::try_acquire(workdir)?.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("STATUS");
        write_atomic(&path, b"Failed").unwrap();
        write_atomic(&path, b"Completed").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "Completed");
        assert_eq!(list_names(dir.path()).unwrap(), vec!["STATUS".to_string()]);
    }

    #[test]
    fn sweep_removes_temp_files_and_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".tmp-1-0-x"), b"half").unwrap();
        fs::create_dir_all(dir.path().join("a/.tmp-task/inner")).unwrap();
        fs::write(dir.path().join("a/keep"), b"ok").unwrap();
        assert_eq!(sweep_temps(dir.path()), 2);
        assert!(dir.path().join("a/keep").exists());
        assert!(!dir.path().join("a/.tmp-task").exists());
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let wd = WorkDir::new(dir.path());
        let lock = ServiceLock::try_acquire(&wd).unwrap().expect("first lock");
        assert!(ServiceLock::try_acquire(&wd).unwrap().is_none());
        assert!(ServiceLock::is_held(&wd).unwrap());
        drop(lock);
        assert!(!ServiceLock::is_held(&wd).unwrap());
    }
}
