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
}

impl JobStat {
    /// # Errors
    /// When the job's folders cannot be read.
    pub fn collect(workdir: &WorkDir, job: &str) -> Result<JobStat> {
        let count = |state| list_names(&workdir.state_dir(job, state)).map(|v| v.len());
        let alive = ServiceLock::is_held(workdir)?;
        let mut progress = Vec::new();
        if alive {
            let dir = workdir.worker_tasks_dir(job);
            // A task's worker folder outlives it for a moment after it moved to
            // succeed/failed: only dispatched tasks are running.
            let dispatched = list_names(&workdir.state_dir(job, TaskState::Dispatched))?;
            for name in list_names(&dir)?
                .into_iter()
                .filter(|n| dispatched.contains(n))
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
        if abort_reason.is_some() {
            // An aborted job runs nothing, whatever its worker folders still hold.
            progress.clear();
        }
        let mut stat = JobStat {
            name: job.to_string(),
            state: JobState::Stopped,
            pending: count(TaskState::Pending)? + crate::retry::staged_count(workdir, job),
            dispatched: count(TaskState::Dispatched)?,
            running: progress.len(),
            succeed: count(TaskState::Succeed)?,
            failed: count(TaskState::Failed)?,
            scan_finished: workdir
                .scan_finished_file(job, crate::master::current_round(workdir, job))
                .exists(),
            progress,
            abort_reason,
        };
        // An incremental job never finishes: between rounds it waits for the next scan.
        let incremental = fs::read_to_string(workdir.job_config_file(job))
            .ok()
            .and_then(|t| toml::from_str::<crate::config::JobConfig>(&t).ok())
            .is_some_and(|j| j.is_incremental);
        let finished = stat.scan_finished
            && stat.pending == 0
            && stat.dispatched == 0
            && !(incremental && alive);
        let crashed = !alive && workdir.pid_file().exists();
        stat.state = match () {
            () if finished && stat.failed > 0 => JobState::Failed,
            () if finished => JobState::Succeed,
            () if stat.abort_reason.is_some() || crashed => JobState::Abort,
            () if alive => JobState::Running,
            () => JobState::Stopped,
        };
        Ok(stat)
    }

    /// The original's `stat` block.
    pub fn render(&self) -> String {
        let mut out = format!(
            "---------------- job stat ------------------\n\
             JobName:{}\nJobState:{}\nPendingTasks:{}\nDispatchedTasks:{}\nRunningTasks:{}\n\
             SucceedTasks:{}\nFailedTasks:{}\nScanFinished:{}\nRunningTasks Progress:\n",
            self.name,
            self.state.word(),
            self.pending,
            self.dispatched,
            self.running,
            self.succeed,
            self.failed,
            self.scan_finished
        );
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
        };
        let expected = "---------------- job stat ------------------\nJobName:local_test\nJobState:Running\n\
PendingTasks:0\nDispatchedTasks:1\nRunningTasks:1\nSucceedTasks:0\nFailedTasks:0\nScanFinished:true\n\
RunningTasks Progress:\n8528637A126676A4FD0D2F981ED5E0EF_1544176618182:0/191048 1/42\n\
----------------------------------------\n";
        assert_eq!(stat.render(), expected);
    }
}
