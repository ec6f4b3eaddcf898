//! `clean`: abort the job's unfinished multipart uploads at the destination, then delete the
//! job's state; refused while the service runs.

use super::{Console, append_log};
use crate::config::JobConfig;
use crate::dest::Destination;
use crate::error::{Error, Result};
use crate::key::object_key;
use crate::workdir::{ServiceLock, WorkDir, rename_durable, temp_sibling};
use crate::worker::multipart::{KnownUpload, known_uploads};

/// Tries per request: a destination that is down should not hold `clean` for minutes.
const CLEAN_TRIES: usize = 3;

pub fn run(console: &Console) -> Result<u8> {
    let (job, _) = console.job()?;
    let workdir = console.workdir()?;
    let name = job.job_name.clone();
    // Held for the whole clean, so no `start` can begin half way.
    let Some(_lock) = ServiceLock::try_acquire(&workdir)? else {
        return Err(Error::Refused(format!(
            "the import service is running job:{name}; run `console.sh stop` first, then clean"
        )));
    };
    abort_known_uploads(job, &workdir)?;
    let queued = workdir.queued_job_file(&name);
    if queued.exists() {
        std::fs::remove_file(&queued).map_err(|e| Error::io("cannot delete", &queued, e))?;
    }
    for dir in [workdir.job_dir(&name), workdir.worker_job_dir(&name)] {
        if dir.exists() {
            // One rename takes the job away at once; a crash while deleting leaves only a
            // temp folder, swept at the next start.
            let doomed = temp_sibling(&dir);
            rename_durable(&dir, &doomed)?;
            std::fs::remove_dir_all(&doomed).map_err(|e| Error::io("cannot delete", &doomed, e))?;
        }
    }
    let _ = std::fs::remove_file(workdir.pid_file());
    println!("Clean job:{name} completed.");
    Ok(0)
}

/// Aborts every multipart upload the job's state records, so their parts stop being billed.
///
/// Uploads that cannot be aborted (destination unreachable, keys refused) are listed on
/// stderr and in logs/clean.log, key and upload id, and the clean goes on: a user cleans to
/// start over, often because something is wrong with the destination, and refusing would
/// leave them stuck; the list is what they need to abort the uploads by other means.
fn abort_known_uploads(conf: JobConfig, workdir: &WorkDir) -> Result<()> {
    let name = conf.job_name.clone();
    let known = known_uploads(&workdir.multipart_dir(&name));
    if known.is_empty() {
        return Ok(());
    }
    // The uploads went where the job was submitted to, which conf/ may no longer say.
    let job = match crate::service::submitted_job(conf.clone(), workdir) {
        Ok(job) => job.unwrap_or(conf),
        Err(e) => {
            eprintln!(
                "Warning: {e}; aborting the uploads at the destination of conf/local_job.cfg"
            );
            conf
        }
    };
    let keyed: Vec<(String, &KnownUpload)> = known
        .iter()
        // A path without a valid key never had an upload started.
        .filter_map(|k| Some((object_key(&job.dest_prefix, &k.path).ok()?, k)))
        .collect();
    let runtime = super::runtime()?;
    let dest = crate::dest::open(&job, CLEAN_TRIES, None);
    let left = runtime.block_on(abort_all(dest.as_ref(), &keyed));
    let aborted = keyed.len() - left.len();
    if aborted > 0 {
        println!("Aborted {aborted} unfinished multipart upload(s) of job:{name}.");
    }
    if !left.is_empty() {
        eprintln!(
            "Warning: {} unfinished multipart upload(s) of job:{name} could not be aborted in \
             bucket {}; their parts stay stored (and billed) until they are aborted with \
             ossutil or the OSS console, or a lifecycle rule deletes them (also listed in \
             logs/clean.log):",
            left.len(),
            job.dest_bucket
        );
        for (key, upload_id, why) in &left {
            eprintln!("  key `{key}` upload id {upload_id}: {why}");
            append_log(
                workdir,
                "clean.log",
                &format!(
                    "job:{name} bucket {} key `{key}` upload id {upload_id} not aborted: {why}",
                    job.dest_bucket
                ),
            );
        }
    }
    Ok(())
}

/// Aborts each upload; returns those that could not be, with why (`key`, upload id, reason).
async fn abort_all(
    dest: &dyn Destination,
    uploads: &[(String, &KnownUpload)],
) -> Vec<(String, String, String)> {
    // One check first: an unreachable destination is one reason, not one per upload.
    if let Err(e) = dest.check_access().await {
        return uploads
            .iter()
            .map(|(key, k)| (key.clone(), k.upload_id.clone(), e.message.clone()))
            .collect();
    }
    let mut left = Vec::new();
    for (key, k) in uploads {
        if let Err(e) = dest.abort_multipart(key, &k.upload_id).await {
            left.push((key.clone(), k.upload_id.clone(), e.message));
        }
    }
    left
}
