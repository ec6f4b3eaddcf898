//! `submit`: validate conf/local_job.cfg and register the job in master/jobqueue.

use std::path::Path;

use super::{Console, absolute, append_log, print_warnings};
use crate::config::{JobConfig, SrcType, SysConfig};
use crate::error::{Error, Result};
use crate::workdir::write_atomic;

pub fn run(console: &Console) -> Result<u8> {
    let (sys, job) = prepare(console)?;
    let cfg_path = absolute(&console.job_cfg_path());
    println!("submit job:{}", cfg_path.display());
    let workdir = crate::workdir::WorkDir::new(&sys.working_dir);
    let name = &job.job_name;
    if already_submitted(&workdir, name) {
        return Err(Error::Refused(format!(
            "job:{name} already exists; run `console.sh clean` first to start over, or `console.sh start` to resume it"
        )));
    }
    let settings = toml::to_string(&job)
        .map_err(|e| Error::Internal(format!("cannot encode the job: {e}")))?;
    let queue = workdir.jobqueue_dir();
    std::fs::create_dir_all(&queue).map_err(|e| Error::io("cannot create folder", &queue, e))?;
    write_atomic(&workdir.queued_job_file(name), settings.as_bytes())?;
    append_log(
        &workdir,
        "submit.log",
        &format!("submit job:{name} from {}", cfg_path.display()),
    );
    println!("submit job:{name} success!");
    Ok(0)
}

/// True when a job of this name is queued or has state.
pub(super) fn already_submitted(workdir: &crate::workdir::WorkDir, name: &str) -> bool {
    workdir.queued_job_file(name).exists() || workdir.job_dir(name).exists()
}

/// Reads and validates both conf files (printing their warnings) and freezes what the service
/// needs to find the source again from any folder: the job as submit stores it.
///
/// # Errors
/// A malformed conf file, a setting a source refuses, a missing srcPrefix folder or URL list.
pub(super) fn prepare(console: &Console) -> Result<(SysConfig, JobConfig)> {
    let (sys, sys_warnings) = console.sys()?;
    let (mut job, warnings) = console.job()?;
    print_warnings(&sys_warnings);
    print_warnings(&warnings);
    job.apply_env_credentials();
    job.validate()?;
    if job.src_type == SrcType::Local {
        let dir = Path::new(&job.src_prefix);
        if !dir.is_dir() {
            return Err(job
                .error_at(
                    "srcPrefix",
                    format!(
                        "`{}` is not an existing folder; set srcPrefix to the folder to migrate",
                        job.src_prefix
                    ),
                )
                .into());
        }
        // Frozen at submit: the service may run from another directory later.
        let mut abs = absolute(dir).to_string_lossy().replace('\\', "/");
        if !abs.ends_with('/') {
            abs.push('/');
        }
        job.src_prefix = abs;
    }
    if job.src_type == SrcType::Http {
        let list = Path::new(&job.http_list_file_path);
        if let Err(e) = std::fs::File::open(list) {
            return Err(job
                .error_at(
                    "httpListFilePath",
                    format!(
                        "cannot read `{}`: {e}; set httpListFilePath to the URL list file",
                        list.display()
                    ),
                )
                .into());
        }
        // Frozen at submit: the service may run from another directory later, and the list
        // must stay as it was (the service refuses to go on with an edited one).
        job.http_list_stamp = crate::source::http::list_stamp(list)
            .map_err(|e| Error::io("cannot read httpListFilePath", list, e))?;
        job.http_list_file_path = absolute(list).to_string_lossy().into_owned();
    }
    Ok((sys, job))
}
