//! `stat`: print the job's status block, or (`--json`) one JSON document, or (`--watch`)
//! follow the job with a progress bar.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::Console;
use crate::cli::StatArgs;
use crate::error::Result;
use crate::stat::{JobStat, JobState};
use crate::totals::{Totals, to_json};
use crate::workdir::WorkDir;

pub fn run(console: &Console, args: &StatArgs) -> Result<u8> {
    let (job, _) = console.job()?;
    let workdir = console.workdir()?;
    let name = &job.job_name;
    if !workdir.job_dir(name).exists() && !workdir.queued_job_file(name).exists() {
        println!("no jobs is running or finished.");
        return Ok(0);
    }
    let stat = if args.watch {
        watch(&workdir, name)?
    } else {
        JobStat::collect(&workdir, name)?
    };
    if args.json {
        let totals = Totals::collect(&workdir, name, &stat)?;
        println!("{}", to_json(&stat, &totals));
    } else {
        print!("{}", stat.render());
    }
    Ok(if stat.state == JobState::Failed { 1 } else { 0 })
}

/// Follows the job while it is Running; returns its status once it is not.
fn watch(workdir: &WorkDir, name: &str) -> Result<JobStat> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let mut ticks = 0u64;
    loop {
        let stat = JobStat::collect(workdir, name)?;
        let totals = Totals::collect(workdir, name, &stat)?;
        let files = format!("files {}/{}", totals.files_done, totals.files_listed);
        match &bar {
            Some(bar) => {
                bar.set_length(totals.bytes_listed);
                bar.set_position(totals.bytes_done.min(totals.bytes_listed));
                bar.set_message(files);
            }
            // Not a terminal: a plain line every 10 s, for logs.
            None if ticks.is_multiple_of(10) => eprintln!(
                "{} JobState:{} {files} bytes {}/{} rate {:.0} B/s",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
                stat.state.word(),
                totals.bytes_done,
                totals.bytes_listed,
                totals.bytes_per_sec()
            ),
            None => {}
        }
        if stat.state != JobState::Running {
            if let Some(bar) = &bar {
                bar.finish();
            }
            return Ok(stat);
        }
        ticks += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
}
