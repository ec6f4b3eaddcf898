//! One round's scan: its units listed `scanThreadCount` at once, each split into tasks that
//! are persisted, checkpointed and sent to the dispatcher in that order.

use std::fs;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::checkpoint::{Checkpoint, unit_hash};
use super::{Master, Since, Split, Unlisted, now_secs, store, task_full};
use crate::error::{Error, IoContext, Result};
use crate::source::{Resume, ScanUnit, SourceObject};
use crate::task::TaskSpec;
use crate::workdir::{blocking, list_names, write_atomic};

impl Master {
    pub(super) async fn scan_round(self: &Arc<Self>, round: u32, since: Since) -> Result<()> {
        let job = self.job.job_name.clone();
        let finished_marker = self.workdir.scan_finished_file(&job, round);
        let dir = self.workdir.checkpoints_dir(&job, round);
        let already = {
            let (marker, dir) = (finished_marker.clone(), dir.clone());
            blocking(move || {
                if marker.exists() {
                    return Ok(true);
                }
                fs::create_dir_all(&dir).ctx("cannot create folder", &dir)?;
                let started = dir.join("STARTED");
                if !started.exists() {
                    write_atomic(&started, now_secs().to_string().as_bytes())?;
                }
                Ok(false)
            })
            .await?
        };
        if !already {
            let _ = self.to_dispatcher.send(Split::RoundStarted(round)).await;
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
            while let Some(done) = scanners.join_next().await {
                done.map_err(|e| Error::Internal(format!("scanner failed: {e}")))??;
            }
            if self.cancel.is_cancelled() {
                return Ok(());
            }
            crate::hooks::point("master-before-scan-finished").await;
            let totals = blocking(move || write_finished(&dir, &finished_marker)).await?;
            tracing::info!(
                round,
                files = totals.files,
                bytes = totals.bytes,
                tasks = totals.tasks,
                "scan finished"
            );
        }
        let _ = self.to_dispatcher.send(Split::RoundScanned(round)).await;
        Ok(())
    }

    pub(super) async fn scan_unit(&self, unit: &ScanUnit, round: u32, since: Since) -> Result<()> {
        let job = &self.job.job_name;
        let cpt_path = self
            .workdir
            .checkpoint_file(job, round, &unit_hash(&unit.id));
        let mut cpt = {
            let (path, id) = (cpt_path.clone(), unit.id.clone());
            let workdir = self.workdir.clone();
            let job = job.clone();
            blocking(move || {
                let mut cpt = Checkpoint::load(&path, &id)?;
                // Written ahead of its task: did the task come before the crash?
                if let Some(u) = &cpt.unconfirmed {
                    let exists = store::task_exists(&workdir, &job, &u.hash)?;
                    cpt.settle(exists);
                }
                Ok(cpt)
            })
            .await?
        };
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
                if task_full(&self.job, batch.len(), batch_bytes, obj.size) {
                    // The entries the checkpoint moves past are recorded first: a restart
                    // lists after it and would never see them again.
                    let (before, after) = std::mem::take(&mut unlisted)
                        .into_iter()
                        .partition(|u: &Unlisted| u.at <= batch_seen);
                    unlisted = after;
                    let spec = self.spec(unit, round, std::mem::take(&mut batch));
                    cpt = self
                        .persist(spec, before, cpt, batch_seen, &cpt_path)
                        .await?;
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
        if !batch.is_empty() || !unlisted.is_empty() {
            let spec = self.spec(unit, round, batch);
            cpt = self
                .persist(spec, unlisted, cpt, batch_seen, &cpt_path)
                .await?;
        }
        if cpt.tasks == 0 && !cpt_path.exists() {
            // Nothing was split from this unit, so listing it again after a crash repeats
            // nothing: skipping its checkpoint saves two fsyncs per empty folder, which is
            // most of the cost of a scan that filters everything (importSince).
            return Ok(());
        }
        cpt.finished = true;
        // Its last task exists: persist returned after writing it.
        cpt.unconfirmed = None;
        blocking(move || cpt.save(&cpt_path)).await
    }

    fn spec(&self, unit: &ScanUnit, round: u32, files: Vec<SourceObject>) -> TaskSpec {
        TaskSpec {
            job: self.job.job_name.clone(),
            round,
            unit: unit.id.clone(),
            attempt: 1,
            files,
        }
    }

    /// Persists the entries the listing could not read, then the checkpoint moved past the
    /// task (`seen` entries into the listing), then the task itself, on the blocking pool;
    /// then sends the task on. The checkpoint goes first, marked unconfirmed until the task
    /// exists (see [`Checkpoint::settle`]), so a restart neither loses the range nor splits it
    /// twice.
    async fn persist(
        &self,
        spec: TaskSpec,
        unlisted: Vec<Unlisted>,
        mut cpt: Checkpoint,
        seen: u64,
        cpt_path: &std::path::Path,
    ) -> Result<Checkpoint> {
        crate::hooks::point("master-before-task").await;
        let workdir = self.workdir.clone();
        let path = cpt_path.to_path_buf();
        let (id, cpt) = blocking(move || {
            if !unlisted.is_empty() {
                let files = unlisted
                    .iter()
                    .map(|u| {
                        let mut file = SourceObject::new(u.path.clone(), 0, 0);
                        file.locator = u.locator.clone();
                        file
                    })
                    .collect();
                let failed = TaskSpec {
                    files,
                    ..spec.clone()
                };
                store::create_unlisted(&workdir, failed, unlisted)?;
            }
            if spec.files.is_empty() {
                cpt.seen = seen;
                cpt.save(&path)?;
                return Ok((None, cpt));
            }
            cpt.advance(spec.content_hash(), &spec.files, seen);
            cpt.save(&path)?;
            crate::hooks::point_blocking("master-checkpoint-ahead");
            let id = store::create_pending(&workdir, &spec, false)?;
            crate::hooks::point_blocking("master-task-created");
            Ok((Some(id), cpt))
        })
        .await?;
        if let Some(id) = id {
            // A closed channel means the job is stopping; the task waits in pending_tasks.
            let _ = self.to_dispatcher.send(Split::Task(id)).await;
        }
        Ok(cpt)
    }
}

/// Sums the round's checkpoints into its SCAN_FINISHED marker.
fn write_finished(dir: &std::path::Path, marker: &std::path::Path) -> Result<Checkpoint> {
    let mut totals = Checkpoint::default();
    for name in list_names(dir)? {
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
    write_atomic(marker, summary.as_bytes())?;
    Ok(totals)
}
