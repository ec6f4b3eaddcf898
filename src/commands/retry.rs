//! `retry`: put the failed files of failed tasks back to run.

use super::{Console, append_log};
use crate::error::Result;

pub fn run(console: &Console) -> Result<u8> {
    let (job, _) = console.job()?;
    let workdir = console.workdir()?;
    let name = &job.job_name;
    let n = crate::retry::retry_failed(&workdir, name)?;
    if n == 0 {
        println!("None failed tasks for job:{name}.");
    } else {
        append_log(
            &workdir,
            "retry.log",
            &format!("retry job:{name}: {n} failed tasks resubmitted"),
        );
        println!("Retry has been submitted.");
    }
    Ok(0)
}
