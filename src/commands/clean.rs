//! `clean`: delete the job's state, refused while the service runs.

use super::Console;
use crate::error::{Error, Result};
use crate::workdir::{ServiceLock, rename_durable, temp_sibling};

pub fn run(console: &Console) -> Result<u8> {
    let (job, _) = console.job()?;
    let workdir = console.workdir()?;
    let name = &job.job_name;
    // Held for the whole clean, so no `start` can begin half way.
    let Some(_lock) = ServiceLock::try_acquire(&workdir)? else {
        return Err(Error::Refused(format!(
            "the import service is running job:{name}; run `console.sh stop` first, then clean"
        )));
    };
    let queued = workdir.queued_job_file(name);
    if queued.exists() {
        std::fs::remove_file(&queued).map_err(|e| Error::io("cannot delete", &queued, e))?;
    }
    for dir in [workdir.job_dir(name), workdir.worker_job_dir(name)] {
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
