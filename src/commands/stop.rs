//! `stop`: ask the service to stop and wait until it has.

use std::time::{Duration, Instant};

use super::Console;
use crate::error::{Error, Result};
use crate::workdir::{ServiceLock, write_atomic};

/// The service drains in-flight files for up to 8 s; leave room for writing state.
const WAIT: Duration = Duration::from_secs(30);

pub fn run(console: &Console) -> Result<u8> {
    let workdir = console.workdir()?;
    if !ServiceLock::is_held(&workdir)? {
        // A pid file without a lock holder is a crashed service: nothing to stop, and `stat`
        // should not call the job aborted once the user has acknowledged it with `stop`.
        let _ = std::fs::remove_file(workdir.pid_file());
        println!("No import service is running.");
        return Ok(0);
    }
    write_atomic(&workdir.stop_request_file(), b"stop")?;
    let started = Instant::now();
    while ServiceLock::is_held(&workdir)? {
        if started.elapsed() > WAIT {
            return Err(Error::Refused(format!(
                "the import service did not stop within {WAIT:?}; see logs/ossimport2.log"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(workdir.stop_request_file());
    println!("Stop import service completed.");
    Ok(0)
}
