//! `submit --dry-run`: lists the source and splits it into tasks by the master's own rules,
//! and says what the job would do, writing nothing: tasks, files and bytes; the files
//! `importSince` leaves out; keys OSS refuses; entries the listing cannot read; and with
//! `isSkipExistFile`, the files already at the destination, found by listing each task's key
//! range in the bucket (about one request per 1,000 files), not by a HEAD per file.

mod report;

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Console;
use super::submit::{already_submitted, prepare};
use crate::config::JobConfig;
use crate::dest::Destination;
use crate::error::{Error, Result};
use crate::key::object_key;
use crate::master::{Since, task_full};
use crate::source::{Resume, ScanUnit, Source, SourceObject};
use crate::worker::listed::{list_keys, listable};
use crate::worker::transfer::{already_there, is_folder_marker, is_same};

use report::{Report, Task};

/// # Errors
/// A conf file or setting refused as by submit (exit 2); a source or destination that cannot
/// be reached or listed (exit 1).
pub fn run(console: &Console, json: bool) -> Result<u8> {
    let (sys, job) = prepare(console)?;
    let mut report = Report::new(json, &job);
    let workdir = crate::workdir::WorkDir::new(&sys.working_dir);
    if already_submitted(&workdir, &job.job_name) {
        report.note(&format!(
            "job:{} already exists: submit would refuse it until `console.sh clean`",
            job.job_name
        ));
    }
    let runtime = super::runtime()?;
    runtime.block_on(rehearse(&job, &mut report))?;
    Ok(report.finish())
}

/// What one rehearsal needs: the job, its source, and the destination when existing files are
/// to be found.
struct Rehearsal<'a> {
    job: &'a JobConfig,
    source: Arc<dyn Source>,
    dest: Option<Arc<dyn Destination>>,
}

async fn rehearse(job: &JobConfig, report: &mut Report) -> Result<()> {
    let source: Arc<dyn Source> = crate::source::open_source(job)?.into();
    source.check().await?;
    let dest = match job.is_skip_exist_file {
        true => {
            let dest = crate::dest::open(job, crate::backoff::REQUEST_TRIES, None);
            dest.check_access()
                .await
                .map_err(|e| Error::Destination(e.message))?;
            Some(dest)
        }
        false => None,
    };
    let rehearsal = Rehearsal { job, source, dest };
    let units = rehearsal
        .source
        .scan_units(job.max_multi_thread_scan_depth)
        .await?;
    for unit in units {
        rehearsal.unit(&unit, report).await?;
    }
    Ok(())
}

impl Rehearsal<'_> {
    /// Lists one scan unit from its start and splits it as the master does.
    async fn unit(&self, unit: &ScanUnit, report: &mut Report) -> Result<()> {
        let since = Since::first_round(self.job);
        let (tx, mut rx) = mpsc::channel(8);
        let lister = {
            let (source, unit) = (self.source.clone(), unit.clone());
            tokio::spawn(async move { source.list(&unit, Resume::default(), tx).await })
        };
        let mut batch: Vec<SourceObject> = Vec::new();
        let mut bytes = 0u64;
        while let Some(items) = rx.recv().await {
            for item in items {
                let obj = match item {
                    Ok(obj) => obj,
                    Err(Error::Listing { path, message, .. }) => {
                        report.unlisted(&path, &message);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if !since.takes(obj.mtime) {
                    report.left_out(&obj);
                    continue;
                }
                if task_full(self.job, batch.len(), bytes, obj.size) {
                    self.task(unit, std::mem::take(&mut batch), report).await?;
                    bytes = 0;
                }
                bytes += obj.size;
                batch.push(obj);
            }
        }
        lister
            .await
            .map_err(|e| Error::Internal(format!("lister failed: {e}")))??;
        if !batch.is_empty() {
            self.task(unit, batch, report).await?;
        }
        Ok(())
    }

    /// Reports one task: its files, the keys OSS would refuse, and what is already there.
    async fn task(
        &self,
        unit: &ScanUnit,
        files: Vec<SourceObject>,
        report: &mut Report,
    ) -> Result<()> {
        let mut task = Task::new(&unit.id, &files);
        let mut keyed = Vec::with_capacity(files.len());
        for file in &files {
            if is_folder_marker(self.source.as_ref(), file) {
                task.markers += 1;
                continue;
            }
            match object_key(&self.job.dest_prefix, &file.path) {
                Ok(key) => keyed.push((key, file)),
                Err(why) => {
                    task.invalid += 1;
                    report.invalid_key(file, &why);
                }
            }
        }
        if let Some(dest) = &self.dest {
            for (key, file) in self.existing(dest.as_ref(), keyed, &mut task).await? {
                task.existing += 1;
                task.existing_bytes += file.size;
                report.exists(&key, file);
            }
        }
        report.task(task);
        Ok(())
    }

    /// The files of `keyed` whose objects are already there by `isSkipExistFile`'s rule: the
    /// keys a listing can show are found by listing the task's key range; the rest (control
    /// characters, which XML listings cannot carry) with a HEAD each, as the worker does.
    async fn existing<'f>(
        &self,
        dest: &dyn Destination,
        mut keyed: Vec<(String, &'f SourceObject)>,
        task: &mut Task,
    ) -> Result<Vec<(String, &'f SourceObject)>> {
        let refused = |e: crate::dest::DestError| {
            Error::Destination(format!(
                "cannot look at the destination for isSkipExistFile: {}",
                e.message
            ))
        };
        let (listed, headed): (Vec<_>, Vec<_>) = keyed.drain(..).partition(|(k, _)| listable(k));
        let mut listed = listed;
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
        let (found, failed) = list_keys(dest, &keys, &mut task.listings).await;
        if let Some(e) = failed {
            return Err(refused(e));
        }
        let mut there = Vec::new();
        for ((key, file), obj) in listed.into_iter().zip(found) {
            if obj.is_some_and(|o| already_there(o.size, o.last_modified, file)) {
                there.push((key, file));
            }
        }
        for (key, file) in headed {
            task.heads += 1;
            let meta = dest.head(&key).await.map_err(refused)?;
            if meta.is_some_and(|m| is_same(&m, file)) {
                there.push((key, file));
            }
        }
        Ok(there)
    }
}
