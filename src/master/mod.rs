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
use crate::source::{ScanUnit, Source, SourceObject};
use crate::task::{TaskId, TaskSpec};
use crate::workdir::{
    TaskState, WorkDir, list_names, rename_durable, sync_dir, temp_sibling, write_atomic,
};
use checkpoint::{Checkpoint, unit_hash};

/// Scan round of the job (incremental mode will add more).
pub const ROUND: u32 = 0;

pub struct Master {
    pub job: Arc<JobConfig>,
    pub source: Arc<dyn Source>,
    pub workdir: WorkDir,
    /// Woken whenever a task lands in pending_tasks.
    pub new_task: Arc<Notify>,
    pub cancel: CancellationToken,
}

impl Master {
    /// Lists and splits everything not yet split; writes SCAN_FINISHED at the end.
    /// Returns early, resumable, when cancelled.
    ///
    /// # Errors
    /// When the source cannot be listed at all or state cannot be written.
    pub async fn run(self: Arc<Self>) -> Result<()> {
        let job = &self.job.job_name;
        let finished_marker = self.workdir.scan_finished_file(job, ROUND);
        if finished_marker.exists() {
            return Ok(());
        }
        let dir = self.workdir.checkpoints_dir(job, ROUND);
        fs::create_dir_all(&dir).ctx("cannot create folder", &dir)?;
        let units = self
            .source
            .scan_units(self.job.max_multi_thread_scan_depth)
            .await?;
        tracing::info!(units = units.len(), "scan started");
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
                    this.scan_unit(&unit).await?;
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
            files = totals.files,
            bytes = totals.bytes,
            tasks = totals.tasks,
            "scan finished"
        );
        Ok(())
    }

    async fn scan_unit(&self, unit: &ScanUnit) -> Result<()> {
        let job = &self.job.job_name;
        let cpt_path = self
            .workdir
            .checkpoint_file(job, ROUND, &unit_hash(&unit.id));
        let mut cpt = Checkpoint::load(&cpt_path, &unit.id)?;
        if cpt.finished {
            return Ok(());
        }
        let resumed = cpt.tasks > 0;
        let (tx, mut rx) = mpsc::channel(1024);
        let lister = {
            let (source, unit, after) = (self.source.clone(), unit.clone(), cpt.last.clone());
            tokio::spawn(async move { source.list(&unit, after, tx).await })
        };
        let mut batch: Vec<SourceObject> = Vec::new();
        let mut batch_bytes = 0u64;
        let mut check_duplicate = resumed;
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                () = self.cancel.cancelled() => {
                    lister.abort();
                    return Ok(());
                }
            };
            let Some(item) = item else { break };
            let obj = match item {
                Ok(obj) => obj,
                Err(e) => {
                    tracing::warn!("scan: {e}; the rest of the listing goes on");
                    continue;
                }
            };
            if self.job.import_since > 0 && obj.mtime <= self.job.import_since {
                continue;
            }
            let full = batch.len() as u64 >= self.job.task_object_count_limit
                || batch_bytes.saturating_add(obj.size) > self.job.task_object_size_limit;
            if !batch.is_empty() && full {
                self.persist(
                    unit,
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
        }
        lister
            .await
            .map_err(|e| Error::Internal(format!("lister failed: {e}")))??;
        if !batch.is_empty() {
            self.persist(unit, batch, &mut cpt, &cpt_path, check_duplicate)?;
        }
        cpt.finished = true;
        cpt.save(&cpt_path)
    }

    fn persist(
        &self,
        unit: &ScanUnit,
        files: Vec<SourceObject>,
        cpt: &mut Checkpoint,
        cpt_path: &std::path::Path,
        check_duplicate: bool,
    ) -> Result<()> {
        let spec = TaskSpec {
            job: self.job.job_name.clone(),
            round: ROUND,
            unit: unit.id.clone(),
            attempt: 1,
            files,
        };
        let hash = spec.content_hash();
        if !(check_duplicate && task_exists(&self.workdir, &spec.job, &hash)?) {
            create_pending_task(&self.workdir, &spec, &TaskId::new(hash), &[])?;
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

/// Creates `pending_tasks/<id>/` with its TASK file (and `extra` files), all at once.
///
/// # Errors
/// When the folder cannot be written.
pub fn create_pending_task(
    workdir: &WorkDir,
    spec: &TaskSpec,
    id: &TaskId,
    extra: &[(&str, &[u8])],
) -> Result<()> {
    let final_dir = workdir.task_dir(&spec.job, TaskState::Pending, &id.to_string());
    let tmp = temp_sibling(&final_dir);
    fs::create_dir_all(&tmp).ctx("cannot create folder", &tmp)?;
    write_atomic(&tmp.join("TASK"), spec.to_text().as_bytes())?;
    for (name, bytes) in extra {
        write_atomic(&tmp.join(name), bytes)?;
    }
    sync_dir(&tmp).ctx("cannot sync folder", &tmp)?;
    rename_durable(&tmp, &final_dir)
}
