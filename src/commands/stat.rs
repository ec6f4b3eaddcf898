//! `stat`: print the job's status block.

use super::Console;
use crate::error::Result;
use crate::stat::{JobStat, JobState};

pub fn run(console: &Console) -> Result<u8> {
    let (job, _) = console.job()?;
    let workdir = console.workdir()?;
    let name = &job.job_name;
    if !workdir.job_dir(name).exists() && !workdir.queued_job_file(name).exists() {
        println!("no jobs is running or finished.");
        return Ok(0);
    }
    let stat = JobStat::collect(&workdir, name)?;
    print!("{}", stat.render());
    Ok(if stat.state == JobState::Failed { 1 } else { 0 })
}
