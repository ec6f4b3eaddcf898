//! The master: lists the source unit by unit and splits the listing into tasks, each persisted
//! in pending_tasks before its unit's checkpoint moves past it.
//!
//! Crash safety: a task folder is complete before it appears (built under a temp name and
//! renamed), and the checkpoint is saved after it. A crash between the two re-lists from the
//! previous checkpoint; the re-made task has the same content hash and is recognised, so it
//! is not created twice.

pub mod checkpoint;

use std::fs;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::error::{Error, IoContext, Result};
use crate::source::{RelPath, Resume, ScanUnit, Source, SourceObject};
use crate::task::record::{FileRecord, Outcome};
use crate::task::{TaskId, TaskSpec};
use crate::workdir::{
    TaskState, WorkDir, list_names, rename_durable, sync_dir, temp_sibling, write_atomic,
};
use checkpoint::{Checkpoint, unit_hash};

pub struct Master {
    pub job: Arc<JobConfig>,
    pub source: Arc<dyn Source>,
    pub workdir: WorkDir,
    /// Woken whenever a task lands in pending_tasks.
    pub new_task: Arc<Notify>,
    pub cancel: CancellationToken,
}

/// The newest scan round of a job (incremental mode adds one per interval); 0 before any.
pub fn current_round(workdir: &WorkDir, job: &str) -> u32 {
    let dir = workdir.job_dir(job).join("checkpoints");
    list_names(&dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
}

/// When a round's scan started (unix seconds), as recorded in its STARTED file.
pub fn round_started(workdir: &WorkDir, job: &str, round: u32) -> Option<i64> {
    let path = workdir.checkpoints_dir(job, round).join("STARTED");
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Which files a round takes: the first by `importSince` (strictly newer), later rounds of
/// incremental mode those modified since the previous round's scan started.
#[derive(Debug, Clone, Copy)]
enum Since {
    After(i64),
    AtOrAfter(i64),
}

impl Since {
    fn takes(self, mtime: i64) -> bool {
        match self {
            Since::After(t) => t <= 0 || mtime > t,
            Since::AtOrAfter(t) => mtime >= t,
        }
    }
}

impl Master {
    /// Lists and splits everything not yet split, round after round in incremental mode;
    /// returns when the (last) round is split, or early, resumable, when cancelled.
    ///
    /// # Errors
    /// When the source cannot be listed at all or state cannot be written.
    pub async fn run(self: Arc<Self>) -> Result<()> {
        let job = &self.job.job_name;
        let mut round = current_round(&self.workdir, job);
        loop {
            let since = match round {
                0 => Since::After(self.job.import_since),
                r => Since::AtOrAfter(round_started(&self.workdir, job, r - 1).unwrap_or(0)),
            };
            self.scan_round(round, since).await?;
            if self.cancel.is_cancelled() || !self.job.is_incremental {
                return Ok(());
            }
            let started = round_started(&self.workdir, job, round).unwrap_or_else(now_secs);
            let next = started + self.job.incremental_mode_interval as i64;
            let wait = (next - now_secs()).max(0) as u64;
            tracing::info!(
                round,
                next_in_secs = wait,
                "incremental mode: waiting for the next scan"
            );
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
                () = self.cancel.cancelled() => return Ok(()),
            }
            round += 1;
        }
    }

    async fn scan_round(self: &Arc<Self>, round: u32, since: Since) -> Result<()> {
        let job = &self.job.job_name;
        let finished_marker = self.workdir.scan_finished_file(job, round);
        if finished_marker.exists() {
            return Ok(());
        }
        let dir = self.workdir.checkpoints_dir(job, round);
        fs::create_dir_all(&dir).ctx("cannot create folder", &dir)?;
        let started = dir.join("STARTED");
        if !started.exists() {
            write_atomic(&started, now_secs().to_string().as_bytes())?;
        }
        let units = self
            .source
            .scan_units(self.job.max_multi_thread_scan_depth)
            .await?;
        tracing::info!(round, units = units.len(), "scan started");
        let queue = Arc::new(std::sync::Mutex::new(units.into_iter()));
        let mut scanners = tokio::task::JoinSet::new();
        for _ in 0..self.job.scan_thread_count.max(1) {
            let (this, queue) = (self.clone(), queue.clone());
            scanners.spawn(async move {
                loop {
                    let next = queue
                        .lock()
                        .map_err(|_| Error::Internal("scan queue poisoned".into()))?
                        .next();
                    let Some(unit) = next else {
                        return Ok::<_, Error>(());
                    };
                    this.scan_unit(&unit, round, since).await?;
                }
            });
        }
        let mut totals = Checkpoint::default();
        while let Some(done) = scanners.join_next().await {
            done.map_err(|e| Error::Internal(format!("scanner failed: {e}")))??;
        }
        if self.cancel.is_cancelled() {
            return Ok(());
        }
        for name in list_names(&dir)? {
            if name.ends_with(".cpt") {
                let cpt = Checkpoint::load(&dir.join(&name), "")?;
                totals.files += cpt.files;
                totals.bytes += cpt.bytes;
                totals.tasks += cpt.tasks;
            }
        }
        let summary = format!(
            "files={}\nbytes={}\ntasks={}\n",
            totals.files, totals.bytes, totals.tasks
        );
        write_atomic(&finished_marker, summary.as_bytes())?;
        tracing::info!(
            round,
            files = totals.files,
            bytes = totals.bytes,
            tasks = totals.tasks,
            "scan finished"
        );
        self.new_task.notify_one();
        Ok(())
    }

    async fn scan_unit(&self, unit: &ScanUnit, round: u32, since: Since) -> Result<()> {
        let job = &self.job.job_name;
        let cpt_path = self
            .workdir
            .checkpoint_file(job, round, &unit_hash(&unit.id));
        let mut cpt = Checkpoint::load(&cpt_path, &unit.id)?;
        if cpt.finished {
            return Ok(());
        }
        let (tx, mut rx) = mpsc::channel(8);
        let lister = {
            let resume = Resume {
                after: cpt.last.clone(),
                seen: cpt.seen,
            };
            let (source, unit) = (self.source.clone(), unit.clone());
            tokio::spawn(async move { source.list(&unit, resume, tx).await })
        };
        // Entries of this unit's listing consumed so far, and up to the batch's last file.
        let mut seen = cpt.seen;
        let mut batch_seen = seen;
        let mut batch: Vec<SourceObject> = Vec::new();
        let mut unlisted = Vec::new();
        let mut batch_bytes = 0u64;
        // The first task after a (re)start may have been persisted just before a crash that
        // came before its checkpoint: look for it (by content hash) before making it again.
        let mut check_duplicate = true;
        loop {
            let items = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    lister.abort();
                    return Ok(());
                }
                items = rx.recv() => items,
            };
            let Some(items) = items else { break };
            for item in items {
                seen += 1;
                let obj = match item {
                    Ok(obj) => obj,
                    Err(Error::Listing {
                        path,
                        reason,
                        message,
                        locator,
                    }) => {
                        tracing::warn!(
                            "scan: cannot list `{path}`: {message}; the rest of the listing goes on"
                        );
                        unlisted.push(Unlisted {
                            at: seen,
                            path,
                            reason,
                            message,
                            locator,
                        });
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if !since.takes(obj.mtime) {
                    continue;
                }
                let full = batch.len() as u64 >= self.job.task_object_count_limit
                    || batch_bytes.saturating_add(obj.size) > self.job.task_object_size_limit;
                if !batch.is_empty() && full {
                    // The entries the checkpoint moves past are recorded first: a restart
                    // lists after it and would never see them again.
                    let before: Vec<Unlisted> = {
                        let (before, after) = std::mem::take(&mut unlisted)
                            .into_iter()
                            .partition(|u| u.at <= batch_seen);
                        unlisted = after;
                        before
                    };
                    if !before.is_empty() {
                        self.persist_unlisted(unit, round, before)?;
                    }
                    cpt.seen = batch_seen;
                    self.persist(
                        (unit, round),
                        std::mem::take(&mut batch),
                        &mut cpt,
                        &cpt_path,
                        check_duplicate,
                    )?;
                    check_duplicate = false;
                    batch_bytes = 0;
                }
                batch_bytes += obj.size;
                batch.push(obj);
                batch_seen = seen;
            }
        }
        lister
            .await
            .map_err(|e| Error::Internal(format!("lister failed: {e}")))??;
        // Recorded before the last checkpoint moves past them, as in the loop.
        if !unlisted.is_empty() {
            self.persist_unlisted(unit, round, unlisted)?;
        }
        if !batch.is_empty() {
            cpt.seen = batch_seen;
            self.persist((unit, round), batch, &mut cpt, &cpt_path, check_duplicate)?;
        }
        if cpt.tasks == 0 && !cpt_path.exists() {
            // Nothing was split from this unit, so listing it again after a crash repeats
            // nothing: skipping its checkpoint saves two fsyncs per empty folder, which is
            // most of the cost of a scan that filters everything (importSince).
            return Ok(());
        }
        cpt.finished = true;
        cpt.save(&cpt_path)
    }

    /// Entries the listing could not read become a failed task of their own (error.list says
    /// READ_ERROR), so the job ends Failed and says which, instead of silently missing them.
    fn first_attempt(&self, unit: &ScanUnit, round: u32, files: Vec<SourceObject>) -> TaskSpec {
        TaskSpec {
            job: self.job.job_name.clone(),
            round,
            unit: unit.id.clone(),
            attempt: 1,
            files,
        }
    }

    fn persist_unlisted(&self, unit: &ScanUnit, round: u32, unlisted: Vec<Unlisted>) -> Result<()> {
        let files = unlisted
            .iter()
            .map(|u| {
                let mut file = SourceObject::new(u.path.clone(), 0, 0);
                file.locator = u.locator.clone();
                file
            })
            .collect();
        let mut spec = self.first_attempt(unit, round, files);
        // Its own hash: the same paths listed fine after a restart make a task of their own.
        spec.unit.push_str("#unlisted");
        let hash = spec.content_hash();
        if task_exists(&self.workdir, &spec.job, &hash)? {
            return Ok(());
        }
        let records: Vec<FileRecord> = unlisted
            .into_iter()
            .map(|u| {
                let detail = format!("cannot list it: {}", u.message);
                FileRecord::new(Outcome::Failed, u.reason, 0, u.path, detail)
            })
            .collect();
        let audit: String = records.iter().map(FileRecord::audit_line).collect();
        let errors: String = records.iter().map(FileRecord::error_line).collect();
        let id = TaskId::new(hash);
        let audit = format!("# task {id}\n{audit}");
        let files: [(&str, &[u8]); 3] = [
            ("audit.log", audit.as_bytes()),
            ("error.list", errors.as_bytes()),
            ("STATUS", b"Failed"),
        ];
        create_task(&self.workdir, TaskState::Failed, &spec, &id, &files)
    }

    fn persist(
        &self,
        (unit, round): (&ScanUnit, u32),
        files: Vec<SourceObject>,
        cpt: &mut Checkpoint,
        cpt_path: &std::path::Path,
        check_duplicate: bool,
    ) -> Result<()> {
        let spec = self.first_attempt(unit, round, files);
        let hash = spec.content_hash();
        if !(check_duplicate && task_exists(&self.workdir, &spec.job, &hash)?) {
            create_task(
                &self.workdir,
                TaskState::Pending,
                &spec,
                &TaskId::new(hash),
                &[],
            )?;
        }
        cpt.last = spec.files.last().map(|f| f.path.clone());
        cpt.files += spec.files.len() as u64;
        cpt.bytes += spec.total_bytes();
        cpt.tasks += 1;
        cpt.save(cpt_path)?;
        self.new_task.notify_one();
        Ok(())
    }
}

/// An entry the listing could not read, and how far into the unit's listing it came.
struct Unlisted {
    at: u64,
    path: RelPath,
    reason: &'static str,
    message: String,
    locator: Option<String>,
}

/// True when a task with this content hash exists in any state.
fn task_exists(workdir: &WorkDir, job: &str, hash: &str) -> Result<bool> {
    for state in TaskState::ALL {
        if list_names(&workdir.state_dir(job, state))?
            .iter()
            .any(|n| n.starts_with(hash))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Creates `<state>/<id>/` with its TASK file and `extra` files, all at once: built under a
/// temp name, then renamed into place.
fn create_task(
    workdir: &WorkDir,
    state: TaskState,
    spec: &TaskSpec,
    id: &TaskId,
    extra: &[(&str, &[u8])],
) -> Result<()> {
    let final_dir = workdir.task_dir(&spec.job, state, &id.to_string());
    let tmp = temp_sibling(&final_dir);
    fs::create_dir_all(&tmp).ctx("cannot create folder", &tmp)?;
    write_atomic(&tmp.join("TASK"), spec.to_text().as_bytes())?;
    for (name, bytes) in extra {
        write_atomic(&tmp.join(name), bytes)?;
    }
    sync_dir(&tmp).ctx("cannot sync folder", &tmp)?;
    rename_durable(&tmp, &final_dir)
}
