//! Job-wide numbers behind `stat --json` and `stat --watch`: files and bytes listed and done,
//! per-file outcomes, and the average rate, read from the task folders.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::stat::JobStat;
use crate::workdir::{TaskState, WorkDir, list_names};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Files and bytes the scan has split into tasks so far (all rounds).
    pub files_listed: u64,
    pub bytes_listed: u64,
    /// Files and bytes finished (in finished tasks, plus the progress of running ones).
    pub files_done: u64,
    pub bytes_done: u64,
    /// Per-file outcomes of finished tasks.
    pub files_ok: u64,
    pub files_skipped: u64,
    pub files_failed: u64,
    /// Unix seconds when the first round's scan started.
    pub started: Option<i64>,
}

impl Totals {
    /// # Errors
    /// When the job's folders cannot be read.
    pub fn collect(workdir: &WorkDir, job: &str, stat: &JobStat) -> Result<Totals> {
        let mut t = Totals {
            started: crate::master::round_started(workdir, job, 0),
            ..Totals::default()
        };
        let cpts = workdir.job_dir(job).join("checkpoints");
        for round in list_names(&cpts)? {
            for name in list_names(&cpts.join(&round))?
                .iter()
                .filter(|n| n.ends_with(".cpt"))
            {
                let text = fs::read_to_string(cpts.join(&round).join(name)).unwrap_or_default();
                t.files_listed += field(&text, "files=");
                t.bytes_listed += field(&text, "bytes=");
            }
        }
        for state in [TaskState::Succeed, TaskState::Failed] {
            let dir = workdir.state_dir(job, state);
            for task in list_names(&dir)? {
                let head = read_head(&dir.join(&task).join("TASK"));
                t.files_done += field(&head, "files=");
                t.bytes_done += field(&head, "bytes=");
                let tail = read_tail(&dir.join(&task).join("audit.log"));
                if let Some(summary) = tail.lines().rev().find(|l| l.starts_with("# summary:")) {
                    t.files_ok += field(summary, "ok=");
                    t.files_skipped += field(summary, "skipped=");
                    t.files_failed += field(summary, "failed=");
                }
            }
        }
        for (_, p) in &stat.progress {
            t.files_done += p.done_files;
            t.bytes_done += p.done_bytes;
        }
        Ok(t)
    }

    /// Average bytes per second since the job started.
    pub fn bytes_per_sec(&self) -> f64 {
        self.elapsed().map_or(0.0, |s| self.bytes_done as f64 / s)
    }

    pub fn files_per_sec(&self) -> f64 {
        self.elapsed().map_or(0.0, |s| self.files_done as f64 / s)
    }

    fn elapsed(&self) -> Option<f64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        Some((now - self.started? as f64).max(1.0))
    }
}

/// The number after `key` in a `key=value` text (0 when absent).
fn field(text: &str, key: &str) -> u64 {
    text.split(['\n', ' '])
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The header of a TASK file (its file list can be long).
fn read_head(path: &Path) -> String {
    let mut buf = vec![0u8; 512];
    let n = fs::File::open(path)
        .and_then(|mut f| f.read(&mut buf))
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The last bytes of an audit.log, where its summary line is.
fn read_tail(path: &Path) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(256)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `stat --json`: one document with the state, task counts, totals, rates and the progress of
/// each running task.
pub fn to_json(stat: &JobStat, totals: &Totals) -> String {
    let running: Vec<serde_json::Value> = stat
        .progress
        .iter()
        .map(|(id, p)| {
            serde_json::json!({
                "id": id, "done_bytes": p.done_bytes, "total_bytes": p.total_bytes,
                "done_files": p.done_files, "total_files": p.total_files,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "job": stat.name,
        "state": stat.state.word(),
        "scan_finished": stat.scan_finished,
        "abort_reason": stat.abort_reason.as_deref().map(str::trim),
        "tasks": {
            "pending": stat.pending, "dispatched": stat.dispatched, "running": stat.running,
            "succeed": stat.succeed, "failed": stat.failed,
        },
        "files": {
            "listed": totals.files_listed, "done": totals.files_done, "ok": totals.files_ok,
            "skipped": totals.files_skipped, "failed": totals.files_failed,
        },
        "bytes": { "listed": totals.bytes_listed, "done": totals.bytes_done },
        "rate": {
            "files_per_sec": (totals.files_per_sec() * 100.0).round() / 100.0,
            "bytes_per_sec": totals.bytes_per_sec().round(),
        },
        "started": totals.started,
        "running_tasks": running,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_headers_and_summaries() {
        assert_eq!(field("job=x\nfiles=12\nbytes=34\n", "files="), 12);
        assert_eq!(field("# summary: ok=3 skipped=1 failed=2\n", "skipped="), 1);
        assert_eq!(field("nothing", "ok="), 0);
    }
}
