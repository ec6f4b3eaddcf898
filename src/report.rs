//! The job report, `master/jobs/<job>/report.jsonl`, written when a round's tasks have all
//! finished: one JSON object per line for every file that failed or was skipped.
//!
//! `{"round":0,"task":"<id>","key":"docs/a.txt","path":"docs/a.txt","size":12,"mtime":1700000000,
//!   "result":"FAILED","reason":"SIZE_NOT_MATCH","proof":null,"detail":"..."}`
//! `key` is null when the path makes no valid key; `proof` names the audit that was done
//! (e.g. `audit=detailed(size,mtime,headers,etag)`) when there was one.

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

use crate::error::Result;
use crate::key::object_key;
use crate::source::RelPath;
use crate::task::TaskSpec;
use crate::task::record::{FileRecord, Outcome};
use crate::workdir::{TaskState, WorkDir, list_names, write_atomic};

#[derive(Debug, Serialize)]
struct Line<'a> {
    round: u32,
    task: &'a str,
    key: Option<String>,
    path: String,
    size: u64,
    mtime: Option<i64>,
    result: &'static str,
    reason: &'static str,
    proof: Option<&'a str>,
    detail: &'a str,
}

/// Rewrites the report from the finished task folders; returns how many lines it has.
///
/// # Errors
/// When a task folder cannot be read or the report cannot be written.
pub fn write_report(workdir: &WorkDir, job: &str, dest_prefix: &str) -> Result<usize> {
    let mut out = String::new();
    let mut lines = 0;
    for state in [TaskState::Succeed, TaskState::Failed] {
        let dir = workdir.state_dir(job, state);
        for task in list_names(&dir)? {
            let spec = TaskSpec::read(&dir.join(&task).join("TASK"))?;
            let mtimes: BTreeMap<&RelPath, i64> =
                spec.files.iter().map(|f| (&f.path, f.mtime)).collect();
            let audit = fs::read_to_string(dir.join(&task).join("audit.log")).unwrap_or_default();
            // A retried task keeps its earlier attempts above: the last record of a file wins.
            let mut last: BTreeMap<RelPath, FileRecord> = BTreeMap::new();
            for rec in audit.lines().filter_map(FileRecord::parse_audit_line) {
                last.insert(rec.path.clone(), rec);
            }
            for rec in last.values().filter(|r| r.outcome != Outcome::Ok) {
                let line = Line {
                    round: spec.round,
                    task: &task,
                    key: object_key(dest_prefix, &rec.path).ok(),
                    path: rec.path.to_string(),
                    size: rec.size,
                    mtime: mtimes.get(&rec.path).copied(),
                    result: if rec.outcome == Outcome::Failed {
                        "FAILED"
                    } else {
                        "SKIPPED"
                    },
                    reason: rec.reason_word(),
                    proof: rec.detail.split(' ').find(|w| w.starts_with("audit=")),
                    detail: &rec.detail,
                };
                out.push_str(&serde_json::to_string(&line).unwrap_or_default());
                out.push('\n');
                lines += 1;
            }
        }
    }
    write_atomic(&workdir.job_dir(job).join("report.jsonl"), out.as_bytes())?;
    Ok(lines)
}
