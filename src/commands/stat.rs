//! `stat`: print the job's status block, or (`--json`) one JSON document, or (`--watch`)
//! follow the job with a progress bar.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::Console;
use crate::cli::StatArgs;
use crate::error::Result;
use crate::stat::{JobStat, JobState};
use crate::totals::{TallyCache, Totals, rate, to_json};
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
    // Abort is worse than Failed: a script that checks the code must not take it for done.
    Ok(u8::from(matches!(
        stat.state,
        JobState::Failed | JobState::Abort
    )))
}

/// Follows the job while it is Running; returns its status once it is not.
fn watch(workdir: &WorkDir, name: &str) -> Result<JobStat> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let mut ticks = 0u64;
    let mut cache = TallyCache::default();
    loop {
        let stat = JobStat::collect(workdir, name)?;
        let totals = Totals::collect_cached(workdir, name, &stat, &mut cache)?;
        let files = format!("files {}/{}", totals.files_done, totals.files_listed);
        let speed = speed_text(&totals, totals.elapsed(), stat.scan_finished);
        // During an outage the bar stands still: say why, instead of a rate.
        let speed = match stat.waiting.first() {
            Some(waiting) => format!("Waiting:{}", waiting.trim()),
            None => speed,
        };
        match &bar {
            Some(bar) => {
                bar.set_length(totals.bytes_listed);
                bar.set_position(totals.bytes_done.min(totals.bytes_listed));
                bar.set_message(format!("{files} {speed}"));
            }
            // Not a terminal: a plain line every 10 s, for logs.
            None if ticks.is_multiple_of(10) => eprintln!(
                "{} JobState:{} {files} bytes {}/{} {speed}",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
                stat.state.word(),
                totals.bytes_done,
                totals.bytes_listed,
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

/// The rate and ETA, each only once it is known: a rate once some bytes are done, an ETA
/// once the listing is complete too (before, the bytes still to come are unknown). Until
/// then it says so, instead of a "0 B/s" or "ETA 0s" that reads like a fact.
fn speed_text(totals: &Totals, elapsed: Option<f64>, scan_finished: bool) -> String {
    let Some(per_sec) = rate(totals.bytes_done, elapsed) else {
        return "rate: measuring".to_string();
    };
    let mut out = format!("rate: {}/s", HumanBytes(per_sec as u64));
    if scan_finished {
        let left = totals.bytes_listed.saturating_sub(totals.bytes_done);
        let eta = Duration::from_secs((left as f64 / per_sec).ceil() as u64);
        out.push_str(&format!(" ETA: {}", humantime::format_duration(eta)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(done: u64, listed: u64) -> Totals {
        Totals {
            bytes_done: done,
            bytes_listed: listed,
            ..Totals::default()
        }
    }

    #[test]
    fn rate_and_eta_show_only_once_known() {
        // Nothing done yet, or no time passed: no rate, and so no ETA either.
        assert_eq!(
            speed_text(&totals(0, 100), Some(5.0), true),
            "rate: measuring"
        );
        assert_eq!(speed_text(&totals(10, 100), None, true), "rate: measuring");
        assert_eq!(
            speed_text(&totals(10, 100), Some(0.0), true),
            "rate: measuring"
        );
        // A rate, but the listing goes on: how much is left is not known.
        let mib = 1024 * 1024;
        assert_eq!(
            speed_text(&totals(4 * mib, 100 * mib), Some(2.0), false),
            "rate: 2.00 MiB/s"
        );
        assert_eq!(
            speed_text(&totals(4 * mib, 364 * mib), Some(2.0), true),
            "rate: 2.00 MiB/s ETA: 3m"
        );
        assert_eq!(
            speed_text(&totals(4 * mib, 4 * mib), Some(2.0), true),
            "rate: 2.00 MiB/s ETA: 0s"
        );
    }
}
