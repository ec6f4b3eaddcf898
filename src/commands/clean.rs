//! `clean`: delete the job's state, refused while the service runs.

use super::Console;
use crate::error::{Error, Result};
use crate::workdir::ServiceLock;

pub fn run(console: &Console) -> Result<u8> {
    let (job, _) = console.job()?;
    let workdir = console.workdir()?;
    let name = &job.job_name;
    if ServiceLock::is_held(&workdir)? {
        return Err(Error::Refused(format!(
            "the import service is running job:{name}; run `console.sh stop` first, then clean"
        )));
    }
    let queued = workdir.queued_job_file(name);
    if queued.exists() {
        std::fs::remove_file(&queued).map_err(|e| Error::io("cannot delete", &queued, e))?;
    }
    for dir in [workdir.job_dir(name), workdir.worker_job_dir(name)] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("cannot delete", &dir, e))?;
        }
    }
    let _ = std::fs::remove_file(workdir.pid_file());
    println!("Clean job:{name} completed.");
    Ok(0)
}
