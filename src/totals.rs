//! Job-wide numbers behind `stat --json` and `stat --watch`: files and bytes listed and done,
//! per-file outcomes, and the average rate, read from the task folders.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::master::checkpoint::Checkpoint;
use crate::stat::JobStat;
use crate::task::TaskId;
use crate::tracker::PREVIOUS_AUDIT;
use crate::workdir::{TaskState, WorkDir, list_names};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Files and bytes the scan has split into tasks so far (all rounds).
    pub files_listed: u64,
    pub bytes_listed: u64,
    /// Files and bytes finished (in finished tasks, plus the progress of running ones).
    pub files_done: u64,
    pub bytes_done: u64,
    /// Per-file outcomes: each file counted once, by its latest attempt.
    pub files_ok: u64,
    pub files_skipped: u64,
    pub files_failed: u64,
    /// Unix seconds when the first round's scan started.
    pub started: Option<i64>,
}

/// What one audit.log adds up to, read record by record.
///
/// A retried task's audit.log holds one section per attempt (`# task <id>` opens each), and
/// each attempt records only its own files: the first all of the task's files, each later
/// one the files that failed in the one before. So the first section says how many files and
/// bytes the task has (the TASK file of a retry names only the files left), `ok` and
/// `skipped` add up over the sections, and only the last section's failures still stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    files: u64,
    bytes: u64,
    ok: u64,
    skipped: u64,
    failed: u64,
    failed_bytes: u64,
}

impl Tally {
    /// Reads `path` a line at a time, so a task of many files costs no memory; a missing
    /// file adds nothing.
    fn read(path: &Path) -> Tally {
        let Ok(file) = fs::File::open(path) else {
            return Tally::default();
        };
        let mut reader = BufReader::new(file);
        let mut tally = Tally::default();
        let mut sections = 0u32;
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if line.starts_with(b"# task ") {
                sections += 1;
                tally.failed = 0;
                tally.failed_bytes = 0;
            } else if let Some((outcome, size)) = record_fields(&line) {
                if sections <= 1 {
                    tally.files += 1;
                    tally.bytes += size;
                }
                match outcome {
                    b"OK" => tally.ok += 1,
                    b"SKIPPED" => tally.skipped += 1,
                    _ => {
                        tally.failed += 1;
                        tally.failed_bytes += size;
                    }
                }
            }
            line.clear();
        }
        tally
    }
}

/// The outcome word and the size of an audit.log record line (see `task::record`); `None`
/// for comment lines and anything else.
fn record_fields(line: &[u8]) -> Option<(&[u8], u64)> {
    let mut f = line.split(|b| *b == b'\t');
    let outcome = f.nth(1)?;
    if !matches!(outcome, b"OK" | b"SKIPPED" | b"FAILED") {
        return None;
    }
    let size = std::str::from_utf8(f.nth(1)?).ok()?.parse().ok()?;
    Some((outcome, size))
}

/// The tallies of audit files already read. A finished task's audit.log and a retried
/// task's previous_audit.log never change once their folder has its name (each is written
/// before the folder is renamed into place, and a retry gives the task a new name), so
/// `stat --watch` reads each once instead of every second.
#[derive(Debug, Default)]
pub struct TallyCache {
    tallies: HashMap<PathBuf, Tally>,
}

impl TallyCache {
    fn get(&mut self, seen: &mut HashMap<PathBuf, Tally>, path: PathBuf) -> Tally {
        let tally = match self.tallies.remove(&path) {
            Some(t) => t,
            None => Tally::read(&path),
        };
        seen.insert(path, tally);
        tally
    }
}

impl Totals {
    /// # Errors
    /// When the job's folders cannot be read.
    pub fn collect(workdir: &WorkDir, job: &str, stat: &JobStat) -> Result<Totals> {
        Self::collect_cached(workdir, job, stat, &mut TallyCache::default())
    }

    /// [`collect`](Self::collect), reusing (and updating) what `cache` read before.
    ///
    /// # Errors
    /// When the job's folders cannot be read.
    pub fn collect_cached(
        workdir: &WorkDir,
        job: &str,
        stat: &JobStat,
        cache: &mut TallyCache,
    ) -> Result<Totals> {
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
                // Parsed, not searched: a path in `last=` may itself hold "files=".
                let path = cpts.join(&round).join(name);
                let text = fs::read_to_string(&path).unwrap_or_default();
                if let Ok(cpt) = Checkpoint::parse(&text, &path) {
                    t.files_listed += cpt.files;
                    t.bytes_listed += cpt.bytes;
                }
            }
        }
        // Each task once, by the last folder it was seen in: the folders are read in the
        // order tasks move through them, so a task that moved during the reads is seen
        // again later and that later look replaces the earlier one.
        let mut seen = HashMap::new();
        let mut by_task: HashMap<String, (Tally, bool)> = HashMap::new();
        for state in TaskState::ALL {
            let finished = matches!(state, TaskState::Succeed | TaskState::Failed);
            let dir = workdir.state_dir(job, state);
            for task in list_names(&dir)? {
                // A task waiting for (or running) its retry has its earlier attempts in
                // previous_audit.log; a finished one all its attempts in audit.log.
                let file = if finished {
                    "audit.log"
                } else {
                    PREVIOUS_AUDIT
                };
                let path = dir.join(&task).join(file);
                if !finished && !path.exists() {
                    by_task.remove(&task);
                    continue;
                }
                let tally = cache.get(&mut seen, path);
                by_task.insert(task, (tally, finished));
            }
        }
        cache.tallies = seen;
        let mut finished_tasks = HashSet::new();
        for (task, (tally, finished)) in by_task {
            t.files_ok += tally.ok;
            t.files_skipped += tally.skipped;
            if finished {
                t.files_done += tally.files;
                t.bytes_done += tally.bytes;
                t.files_failed += tally.failed;
                finished_tasks.extend(TaskId::parse(&task).map(|id| id.short()));
            } else {
                // Its failed files are being retried: not done yet, and counted by the
                // running attempt's PROGRESS once they are.
                t.files_done += tally.files.saturating_sub(tally.failed);
                t.bytes_done += tally.bytes.saturating_sub(tally.failed_bytes);
            }
        }
        // A running task's PROGRESS covers only its own (current attempt's) files, and a
        // task counted above as finished is left out here: nothing is counted twice.
        for (id, p) in &stat.progress {
            if !finished_tasks.contains(id) {
                t.files_done += p.done_files;
                t.bytes_done += p.done_bytes;
            }
        }
        Ok(t)
    }

    /// Seconds since the job started; `None` before it started, or if the clock says
    /// it has not.
    pub fn elapsed(&self) -> Option<f64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        Some(now - self.started? as f64).filter(|s| *s > 0.0)
    }

    /// Average bytes per second since the job started; `None` until some bytes are done.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        rate(self.bytes_done, self.elapsed())
    }

    pub fn files_per_sec(&self) -> Option<f64> {
        rate(self.files_done, self.elapsed())
    }
}

/// `done / elapsed`, known only once something is done and time has passed.
pub fn rate(done: u64, elapsed: Option<f64>) -> Option<f64> {
    elapsed
        .filter(|s| *s > 0.0 && done > 0)
        .map(|s| done as f64 / s)
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
        "waiting": stat.waiting.iter().map(|w| w.trim()).collect::<Vec<_>>(),
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
            "files_per_sec": (totals.files_per_sec().unwrap_or(0.0) * 100.0).round() / 100.0,
            "bytes_per_sec": totals.bytes_per_sec().unwrap_or(0.0).round(),
        },
        "started": totals.started,
        "running_tasks": running,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use crate::source::{RelPath, SourceObject};
    use crate::task::TaskSpec;
    use crate::task::record::{FileRecord, Outcome};
    use crate::tracker::{TaskJournal, finish_task};
    use crate::workdir::{ServiceLock, write_atomic};

    const JOB: &str = "j";

    fn rec(outcome: Outcome, size: u64, path: &str) -> FileRecord {
        let why = (outcome == Outcome::Failed).then_some(Reason::UploadError);
        FileRecord::new(outcome, why, size, RelPath(path.into()), "test")
    }

    /// A job whose scan listed three files (100 + 200 + 300 bytes) of `unit` into one
    /// pending task.
    fn listed_job(wd: &WorkDir, unit: &str) {
        wd.create_job_layout(JOB).unwrap();
        fs::create_dir_all(wd.checkpoints_dir(JOB, 0)).unwrap();
        let spec = TaskSpec {
            job: JOB.into(),
            round: 0,
            unit: unit.into(),
            attempt: 1,
            files: ["a", "b", "c"]
                .iter()
                .zip([100, 200, 300])
                .map(|(p, size)| SourceObject::new(RelPath(p.as_bytes().to_vec()), size, 1))
                .collect(),
        };
        let cpt = Checkpoint {
            unit: spec.unit.clone(),
            files: 3,
            bytes: 600,
            tasks: 1,
            finished: true,
            ..Checkpoint::default()
        };
        write_atomic(&wd.checkpoint_file(JOB, 0, "U"), cpt.to_text().as_bytes()).unwrap();
        write_atomic(&wd.scan_finished_file(JOB, 0), b"").unwrap();
        let id = TaskId::new(spec.content_hash());
        let pending = wd.task_dir(JOB, TaskState::Pending, &id.to_string());
        fs::create_dir_all(&pending).unwrap();
        write_atomic(&pending.join("TASK"), spec.to_text().as_bytes()).unwrap();
    }

    /// Runs one attempt of the pending task the way the service does: dispatch it, journal
    /// `records`, then `between` (a look while it runs), and let the tracker finish it.
    fn run_attempt(wd: &WorkDir, records: Vec<FileRecord>, between: impl FnOnce()) {
        let name = list_names(&wd.state_dir(JOB, TaskState::Pending))
            .unwrap()
            .remove(0);
        let dispatched = wd.task_dir(JOB, TaskState::Dispatched, &name);
        fs::rename(wd.task_dir(JOB, TaskState::Pending, &name), &dispatched).unwrap();
        let spec = TaskSpec::read(&dispatched.join("TASK")).unwrap();
        let id = TaskId::parse(&name).unwrap();
        let mut journal = TaskJournal::open(wd.worker_task_dir(JOB, &name), &spec).unwrap();
        journal.append(records).unwrap();
        journal.write_progress(0).unwrap();
        between();
        finish_task(wd, JOB, &id, &journal).unwrap();
    }

    /// What `stat --watch` shows now, with `cache` kept from its earlier looks.
    fn totals(wd: &WorkDir, cache: &mut TallyCache) -> Totals {
        let stat = JobStat::collect(wd, JOB).unwrap();
        Totals::collect_cached(wd, JOB, &stat, cache).unwrap()
    }

    fn done(t: &Totals) -> (u64, u64, u64, u64, u64) {
        (
            t.files_done,
            t.bytes_done,
            t.files_ok,
            t.files_skipped,
            t.files_failed,
        )
    }

    #[test]
    fn a_retry_that_succeeds_brings_the_totals_to_everything_listed_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let wd = WorkDir::new(dir.path());
        listed_job(&wd, "tree:");
        let _lock = ServiceLock::try_acquire(&wd).unwrap().unwrap();
        let mut cache = TallyCache::default();

        let first = vec![
            rec(Outcome::Ok, 100, "a"),
            rec(Outcome::Failed, 200, "b"),
            rec(Outcome::Skipped, 300, "c"),
        ];
        run_attempt(&wd, first, || {});
        let t = totals(&wd, &mut cache);
        assert_eq!((t.files_listed, t.bytes_listed), (3, 600));
        assert_eq!(done(&t), (3, 600, 1, 1, 1));

        assert_eq!(crate::retry::retry_failed(&wd, JOB).unwrap(), 1);
        // Waiting for its retry, the task's first attempt still counts, less the failed file.
        assert_eq!(done(&totals(&wd, &mut cache)), (2, 400, 1, 1, 0));

        let mut while_running = None;
        run_attempt(&wd, vec![rec(Outcome::Ok, 200, "b")], || {
            while_running = Some(totals(&wd, &mut cache));
        });
        assert_eq!(done(&while_running.unwrap()), (3, 600, 1, 1, 0));
        let t = totals(&wd, &mut cache);
        assert_eq!(done(&t), (3, 600, 2, 1, 0));
        assert_eq!(
            (t.files_done, t.bytes_done),
            (t.files_listed, t.bytes_listed)
        );
    }

    #[test]
    fn a_task_header_longer_than_512_bytes_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let wd = WorkDir::new(dir.path());
        listed_job(&wd, &format!("tree:{}", "u".repeat(600)));
        let all_ok = vec![
            rec(Outcome::Ok, 100, "a"),
            rec(Outcome::Ok, 200, "b"),
            rec(Outcome::Ok, 300, "c"),
        ];
        run_attempt(&wd, all_ok, || {});
        let t = totals(&wd, &mut TallyCache::default());
        assert_eq!(done(&t), (3, 600, 3, 0, 0));
    }

    #[test]
    fn a_task_that_finished_after_its_progress_was_read_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let wd = WorkDir::new(dir.path());
        listed_job(&wd, "tree:");
        let _lock = ServiceLock::try_acquire(&wd).unwrap().unwrap();
        let records = vec![
            rec(Outcome::Ok, 100, "a"),
            rec(Outcome::Ok, 200, "b"),
            rec(Outcome::Ok, 300, "c"),
        ];
        let mut stale = None;
        run_attempt(&wd, records, || {
            stale = Some(JobStat::collect(&wd, JOB).unwrap());
        });
        let stale = stale.unwrap();
        assert_eq!(stale.progress.len(), 1, "{stale:?}");
        let t = Totals::collect(&wd, JOB, &stale).unwrap();
        assert_eq!(done(&t), (3, 600, 3, 0, 0));
    }

    #[test]
    fn each_attempt_of_an_audit_log_counts_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let line = |r: FileRecord| r.audit_line();
        let text = [
            "# task A\n".to_string(),
            line(rec(Outcome::Ok, 1, "a")),
            line(rec(Outcome::Failed, 2, "b")),
            line(rec(Outcome::Failed, 4, "c")),
            "# summary: ok=1 skipped=0 failed=2\n# task B\n".into(),
            line(rec(Outcome::Failed, 2, "b")),
            line(rec(Outcome::Skipped, 4, "c")),
            "# summary: ok=0 skipped=1 failed=1\n# task C\n".into(),
            line(rec(Outcome::Failed, 2, "b")),
            "# summary: ok=0 skipped=0 failed=1\n".into(),
        ]
        .concat();
        fs::write(&path, text).unwrap();
        let t = Tally::read(&path);
        assert_eq!(
            (t.files, t.bytes, t.ok, t.skipped, t.failed, t.failed_bytes),
            (3, 7, 1, 1, 1, 2)
        );
    }
}
