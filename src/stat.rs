//! The job's status as `stat` prints it, read from the task folders (no running service
//! needed, so it also works after a crash).

use std::fs;

use crate::error::Result;
use crate::task::TaskId;
use crate::task::record::Progress;
use crate::workdir::{ServiceLock, TaskState, WorkDir, list_names};

/// The job's state word; `Running`, `Succeed`, `Failed` and `Abort` are the original's and
/// scripts grep for them. `Stopped` (service not running, job not finished, no crash) is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeed,
    Failed,
    Abort,
    Stopped,
}

impl JobState {
    pub fn word(self) -> &'static str {
        match self {
            JobState::Running => "Running",
            JobState::Succeed => "Succeed",
            JobState::Failed => "Failed",
            JobState::Abort => "Abort",
            JobState::Stopped => "Stopped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStat {
    pub name: String,
    pub state: JobState,
    pub pending: usize,
    pub dispatched: usize,
    pub running: usize,
    pub succeed: usize,
    pub failed: usize,
    pub scan_finished: bool,
    /// `(task id without @host, progress)` of each running task.
    pub progress: Vec<(String, Progress)>,
    /// Why the job aborted, when it did.
    pub abort_reason: Option<String>,
    /// What the running job waits for, during an outage of the destination or the source.
    pub waiting: Vec<String>,
}

/// What the job's state word is decided from, each read once by [`JobStat::collect`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateInputs {
    /// A service holds the lock now.
    pub alive: bool,
    /// The pid file exists; without a lock holder it means the service crashed.
    pub pid_file: bool,
    /// The job's ABORT file exists.
    pub aborted: bool,
    pub incremental: bool,
    /// The current round's SCAN_FINISHED marker, read before any task folder.
    pub scan_finished: bool,
    /// Pending tasks, staged retries included.
    pub pending: usize,
    pub dispatched: usize,
    pub failed: usize,
}

/// The state machine of the job's state word; pure, so every case is testable.
pub fn decide(i: &StateInputs) -> JobState {
    // An incremental job never finishes while its service runs: between rounds it waits for
    // the next scan.
    let finished =
        i.scan_finished && i.pending == 0 && i.dispatched == 0 && !(i.incremental && i.alive);
    let crashed = !i.alive && i.pid_file;
    match () {
        () if finished && i.failed > 0 => JobState::Failed,
        () if finished => JobState::Succeed,
        () if i.aborted || crashed => JobState::Abort,
        () if i.alive => JobState::Running,
        () => JobState::Stopped,
    }
}

impl JobStat {
    /// # Errors
    /// When the job's folders cannot be read.
    pub fn collect(workdir: &WorkDir, job: &str) -> Result<JobStat> {
        // The end-to-end test of the read order pauses `stat` after its first read.
        Self::collect_observed(workdir, job, &mut |read| {
            if read == "scan_finished" {
                crate::hooks::point_blocking("stat-between-reads");
            }
        })
    }

    /// [`collect`](Self::collect), calling `after` with the name of each read as it is done,
    /// so a test can move tasks between the reads the way a running service does.
    fn collect_observed(
        workdir: &WorkDir,
        job: &str,
        after: &mut dyn FnMut(&str),
    ) -> Result<JobStat> {
        let count = |state| list_names(&workdir.state_dir(job, state)).map(|v| v.len());
        let alive = ServiceLock::is_held(workdir)?;
        // The marker first: the master writes it only after the round's last task is in
        // pending_tasks, so a marker seen now vouches for every task the counts below can
        // meet. Read last, it could appear after the count missed the last task, and a job
        // with work left would read as Succeed.
        let round = crate::master::current_round(workdir, job);
        let scan_finished =
            workdir.scan_finished_file(job, round).exists() && !workdir.is_relisting(job, round);
        after("scan_finished");
        // Then the folders in the order tasks flow through them (pending → dispatched →
        // succeed/failed): a task that moves on while we count is met again further on,
        // so it is counted once or twice, never missed. Twice only delays Succeed by a poll.
        let pending = count(TaskState::Pending)? + crate::retry::staged_count(workdir, job);
        after("pending");
        let dispatched_names: Vec<String> = workdir
            .dispatched_tasks(job)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        after("dispatched");
        let succeed = count(TaskState::Succeed)?;
        after("succeed");
        let failed = count(TaskState::Failed)?;
        after("failed");
        let mut progress = Vec::new();
        if alive {
            let dir = workdir.worker_tasks_dir(job);
            // A task's worker folder outlives it for a moment after it moved to
            // succeed/failed: only dispatched tasks are running.
            for name in list_names(&dir)?
                .into_iter()
                .filter(|n| dispatched_names.contains(n))
            {
                let Some(id) = TaskId::parse(&name) else {
                    continue;
                };
                let p = fs::read_to_string(dir.join(&name).join("PROGRESS"))
                    .ok()
                    .and_then(|t| Progress::parse(&t))
                    .unwrap_or_default();
                progress.push((id.short(), p));
            }
        }
        let abort_reason = fs::read_to_string(workdir.abort_file(job)).ok();
        let waiting: Vec<String> = ["destination", "source"]
            .iter()
            .map(|side| workdir.waiting_file(job, side))
            .chain(workdir.worker_trouble_files(job))
            .filter(|_| alive && abort_reason.is_none())
            .filter_map(|file| fs::read_to_string(file).ok())
            .collect();
        if abort_reason.is_some() {
            // An aborted job runs nothing, whatever its worker folders still hold.
            progress.clear();
        }
        let incremental = fs::read_to_string(workdir.job_config_file(job))
            .ok()
            .and_then(|t| toml::from_str::<crate::config::JobConfig>(&t).ok())
            .is_some_and(|j| j.is_incremental);
        let state = decide(&StateInputs {
            alive,
            pid_file: workdir.pid_file().exists(),
            aborted: abort_reason.is_some(),
            incremental,
            scan_finished,
            pending,
            dispatched: dispatched_names.len(),
            failed,
        });
        Ok(JobStat {
            name: job.to_string(),
            state,
            pending,
            dispatched: dispatched_names.len(),
            running: progress.len(),
            succeed,
            failed,
            scan_finished,
            progress,
            abort_reason,
            waiting,
        })
    }

    /// The original's `stat` block.
    pub fn render(&self) -> String {
        let mut out = format!(
            "---------------- job stat ------------------\n\
             JobName:{}\nJobState:{}\nPendingTasks:{}\nDispatchedTasks:{}\nRunningTasks:{}\n\
             SucceedTasks:{}\nFailedTasks:{}\nScanFinished:{}\n",
            self.name,
            self.state.word(),
            self.pending,
            self.dispatched,
            self.running,
            self.succeed,
            self.failed,
            self.scan_finished
        );
        for waiting in &self.waiting {
            out.push_str(&format!("Waiting:{}\n", waiting.trim()));
        }
        out.push_str("RunningTasks Progress:\n");
        for (id, p) in &self.progress {
            out.push_str(&format!(
                "{id}:{}/{} {}/{}\n",
                p.done_bytes, p.total_bytes, p.done_files, p.total_files
            ));
        }
        if let Some(reason) = &self.abort_reason {
            out.push_str(&format!("AbortReason:{}\n", reason.trim()));
        }
        out.push_str("----------------------------------------\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> StateInputs {
        StateInputs {
            alive: true,
            scan_finished: true,
            ..StateInputs::default()
        }
    }

    #[test]
    fn a_finished_scan_with_no_task_left_is_succeed_or_failed() {
        assert_eq!(decide(&inputs()), JobState::Succeed);
        let failed = StateInputs {
            failed: 2,
            ..inputs()
        };
        assert_eq!(decide(&failed), JobState::Failed);
        // Finished is finished with or without the service.
        let gone = StateInputs {
            alive: false,
            ..failed
        };
        assert_eq!(decide(&gone), JobState::Failed);
    }

    #[test]
    fn work_left_or_a_scan_not_finished_keeps_a_live_job_running() {
        for i in [
            StateInputs {
                scan_finished: false,
                ..inputs()
            },
            StateInputs {
                pending: 1,
                ..inputs()
            },
            StateInputs {
                dispatched: 1,
                ..inputs()
            },
        ] {
            assert_eq!(decide(&i), JobState::Running, "{i:?}");
        }
    }

    #[test]
    fn an_incremental_job_never_succeeds_while_its_service_runs() {
        let idle = StateInputs {
            incremental: true,
            ..inputs()
        };
        assert_eq!(decide(&idle), JobState::Running);
        let with_failures = StateInputs { failed: 1, ..idle };
        assert_eq!(decide(&with_failures), JobState::Running);
        let stopped = StateInputs {
            alive: false,
            ..idle
        };
        assert_eq!(decide(&stopped), JobState::Succeed);
    }

    #[test]
    fn an_abort_file_or_a_crash_is_abort_unless_the_job_finished() {
        let unfinished = StateInputs {
            pending: 3,
            ..inputs()
        };
        let aborted = StateInputs {
            aborted: true,
            ..unfinished
        };
        assert_eq!(decide(&aborted), JobState::Abort);
        let crashed = StateInputs {
            alive: false,
            pid_file: true,
            ..unfinished
        };
        assert_eq!(decide(&crashed), JobState::Abort);
        // A pid file while the lock is held is a live service, not a crash.
        let live = StateInputs {
            pid_file: true,
            ..unfinished
        };
        assert_eq!(decide(&live), JobState::Running);
        let aborted_at_the_end = StateInputs {
            aborted: true,
            ..inputs()
        };
        assert_eq!(decide(&aborted_at_the_end), JobState::Succeed);
    }

    #[test]
    fn an_unfinished_job_without_service_or_crash_is_stopped() {
        let i = StateInputs {
            alive: false,
            pending: 1,
            ..inputs()
        };
        assert_eq!(decide(&i), JobState::Stopped);
        let never_scanned = StateInputs {
            alive: false,
            ..StateInputs::default()
        };
        assert_eq!(decide(&never_scanned), JobState::Stopped);
    }

    /// A job folder with round 0 started, one finished task, and the service lock held.
    fn live_job() -> (tempfile::TempDir, WorkDir, ServiceLock) {
        let dir = tempfile::tempdir().unwrap();
        let wd = WorkDir::new(dir.path());
        wd.create_job_layout("j").unwrap();
        fs::create_dir_all(wd.checkpoints_dir("j", 0)).unwrap();
        fs::create_dir_all(wd.task_dir("j", TaskState::Succeed, &task_name(1))).unwrap();
        let lock = ServiceLock::try_acquire(&wd).unwrap().unwrap();
        (dir, wd, lock)
    }

    fn task_name(n: u64) -> String {
        TaskId {
            hash: format!("{n:032X}"),
            millis: 1_700_000_000_000 + n,
        }
        .to_string()
    }

    #[test]
    fn the_last_task_and_the_marker_written_during_a_stat_never_read_as_succeed() {
        let (_dir, wd, _lock) = live_job();
        let mut master_ran = false;
        // The master finishes its round after the first read, whichever that is.
        let stat = JobStat::collect_observed(&wd, "j", &mut |_| {
            if !master_ran {
                master_ran = true;
                fs::create_dir_all(wd.task_dir("j", TaskState::Pending, &task_name(2))).unwrap();
                fs::write(wd.scan_finished_file("j", 0), "files=2\n").unwrap();
            }
        })
        .unwrap();
        assert_eq!(stat.state, JobState::Running, "{stat:?}");
        // The next look sees both.
        let stat = JobStat::collect(&wd, "j").unwrap();
        assert_eq!((stat.state, stat.pending), (JobState::Running, 1));
    }

    #[test]
    fn a_task_dispatched_between_two_folder_reads_is_still_counted() {
        let (_dir, wd, _lock) = live_job();
        fs::write(wd.scan_finished_file("j", 0), "").unwrap();
        let name = task_name(2);
        fs::create_dir_all(wd.task_dir("j", TaskState::Pending, &name)).unwrap();
        let mut dispatched = false;
        // The dispatcher takes the task right after the first task folder is read.
        let stat = JobStat::collect_observed(&wd, "j", &mut |read| {
            if read != "scan_finished" && !dispatched {
                dispatched = true;
                let to = wd.task_dir("j", TaskState::Dispatched, &name);
                fs::rename(wd.task_dir("j", TaskState::Pending, &name), to).unwrap();
            }
        })
        .unwrap();
        assert!(dispatched);
        assert_eq!((stat.pending, stat.dispatched), (1, 1), "{stat:?}");
        assert_eq!(stat.state, JobState::Running);
    }

    #[test]
    fn renders_the_original_block() {
        let stat = JobStat {
            name: "local_test".into(),
            state: JobState::Running,
            pending: 0,
            dispatched: 1,
            running: 1,
            succeed: 0,
            failed: 0,
            scan_finished: true,
            progress: vec![(
                "8528637A126676A4FD0D2F981ED5E0EF_1544176618182".into(),
                Progress {
                    done_bytes: 0,
                    total_bytes: 191048,
                    done_files: 1,
                    total_files: 42,
                },
            )],
            abort_reason: None,
            waiting: Vec::new(),
        };
        let expected = "---------------- job stat ------------------\nJobName:local_test\nJobState:Running\n\
PendingTasks:0\nDispatchedTasks:1\nRunningTasks:1\nSucceedTasks:0\nFailedTasks:0\nScanFinished:true\n\
RunningTasks Progress:\n8528637A126676A4FD0D2F981ED5E0EF_1544176618182:0/191048 1/42\n\
----------------------------------------\n";
        assert_eq!(stat.render(), expected);
    }
}
