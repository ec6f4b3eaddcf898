//! The dispatcher: takes the tasks the master persisted (over its channel, or from
//! pending_tasks when they were left by an earlier run, put back by `retry`, or more than its
//! queue holds), moves each to dispatched only when a task runner is free for it, and counts
//! the tasks in flight from the tracker's ends. When a round's scan is done and nothing is
//! left, it writes the report and tells the master the round is finished.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::error::Result;
use crate::master::Split;
use crate::task::TaskId;
use crate::tracker::Ended;
use crate::workdir::{TaskState, WorkDir, blocking, rename_durable};

/// Task ids held in memory; beyond this they wait in pending_tasks (the durable record) and
/// are read back from there, so a listing of millions of files never lives in memory.
const QUEUE_CAP: usize = 10_000;
/// How often pending_tasks is looked at for tasks another process put there (`retry`).
const FOLDER_EVERY: Duration = Duration::from_secs(2);

pub(super) struct Dispatcher {
    pub workdir: WorkDir,
    pub job: Arc<JobConfig>,
    pub cancel: CancellationToken,
    pub from_master: mpsc::Receiver<Split>,
    pub ended: mpsc::UnboundedReceiver<Ended>,
    pub to_workers: mpsc::Sender<TaskId>,
    /// The newest round whose tasks have all finished.
    pub rounds_done: watch::Sender<Option<u32>>,
}

/// A task to hand out; `claimed` when it is already in dispatched (resumed after a restart).
struct Queued {
    id: TaskId,
    claimed: bool,
}

impl Dispatcher {
    /// Runs until the job stops; `resume` are the tasks an earlier run left dispatched.
    pub async fn run(mut self, resume: Vec<TaskId>) {
        let mut queue: VecDeque<Queued> = resume
            .into_iter()
            .map(|id| Queued { id, claimed: true })
            .collect();
        let mut look_in_folder = true;
        let mut in_flight: HashSet<TaskId> = HashSet::new();
        // Distributed mode: a task resumed after a restart of the master may be finished from
        // the queue's results before it is handed out again; it is then not handed out.
        let mut ended_unsent: HashSet<TaskId> = HashSet::new();
        let mut scanned: Option<u32> = None;
        let mut reported: Option<u32> = None;
        let mut master_open = true;
        // Whether pending_tasks was looked at since the last dispatch: a round is finished
        // only when it holds nothing either (`retry` may have put tasks there).
        let mut folder_checked = false;
        let mut folder_tick = tokio::time::interval(FOLDER_EVERY);
        loop {
            if queue.is_empty() && look_in_folder {
                look_in_folder = false;
                match self.pending_tasks().await {
                    Ok((ids, more)) => {
                        queue.extend(ids.into_iter().map(|id| Queued { id, claimed: false }));
                        look_in_folder = more;
                    }
                    Err(e) => tracing::error!("cannot read pending_tasks: {e}"),
                }
            }
            if in_flight.is_empty() && queue.is_empty() && scanned.is_some() && scanned != reported
            {
                if !folder_checked {
                    folder_checked = true;
                    look_in_folder = true;
                    continue;
                }
                reported = scanned;
                if let Some(round) = scanned {
                    // The report reads every finished task; `stop` does not wait for it.
                    tokio::select! {
                        () = self.round_finished(round) => {}
                        () = self.cancel.cancelled() => return,
                    }
                }
            }
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                Some(ended) = self.ended.recv() => {
                    let id = match &ended {
                        Ended::Finished(id, _) | Ended::Interrupted(id) => id.clone(),
                    };
                    if !in_flight.remove(&id) {
                        ended_unsent.insert(id.clone());
                    }
                    if let Ended::Interrupted(id) = ended {
                        tracing::debug!(task = %id, "task left for the next start");
                    }
                }
                split = self.from_master.recv(), if master_open => match split {
                    Some(Split::Task(id)) if queue.len() < QUEUE_CAP => {
                        queue.push_back(Queued { id, claimed: false });
                    }
                    Some(Split::Task(_)) => look_in_folder = true,
                    Some(Split::RoundStarted(_)) => scanned = None,
                    Some(Split::RoundScanned(round)) => scanned = Some(round),
                    None => master_open = false,
                },
                permit = self.to_workers.reserve(), if !queue.is_empty() => {
                    let Ok(permit) = permit else {
                        tracing::error!("every task runner stopped; the job stops");
                        self.cancel.cancel();
                        return;
                    };
                    let Some(next) = queue.pop_front() else { continue };
                    if ended_unsent.remove(&next.id) {
                        continue;
                    }
                    if !next.claimed {
                        match self.claim(&next.id).await {
                            Ok(true) => {}
                            // Already dispatched (it came both ways) or taken back.
                            Ok(false) => continue,
                            Err(e) => {
                                tracing::error!("cannot dispatch task {}: {e}", next.id);
                                self.cancel.cancel();
                                return;
                            }
                        }
                    }
                    in_flight.insert(next.id.clone());
                    permit.send(next.id);
                    reported = None;
                    folder_checked = false;
                }
                _ = folder_tick.tick() => look_in_folder = true,
            }
        }
    }

    /// Moves a task from pending to dispatched before a runner sees it, so a stop or a crash
    /// after this leaves it where the next start resumes it. False when it is not pending.
    async fn claim(&self, id: &TaskId) -> Result<bool> {
        let name = id.to_string();
        let from = self
            .workdir
            .task_dir(&self.job.job_name, TaskState::Pending, &name);
        let to = self
            .workdir
            .task_dir(&self.job.job_name, TaskState::Dispatched, &name);
        blocking(move || {
            if !from.exists() {
                return Ok(false);
            }
            rename_durable(&from, &to).map(|()| true)
        })
        .await
    }

    /// Up to [`QUEUE_CAP`] tasks in pending_tasks, and whether there are more.
    async fn pending_tasks(&self) -> Result<(Vec<TaskId>, bool)> {
        let dir = self
            .workdir
            .state_dir(&self.job.job_name, TaskState::Pending);
        blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Ok((Vec::new(), false));
            };
            let mut ids = Vec::new();
            for entry in entries.flatten() {
                if let Some(id) = TaskId::parse(&entry.file_name().to_string_lossy()) {
                    if ids.len() == QUEUE_CAP {
                        return Ok((ids, true));
                    }
                    ids.push(id);
                }
            }
            Ok((ids, false))
        })
        .await
    }

    /// Every task of the round has ended: the report, a log line, and the master's go for
    /// the next round.
    async fn round_finished(&self, round: u32) {
        let (workdir, name, prefix) = (
            self.workdir.clone(),
            self.job.job_name.clone(),
            self.job.dest_prefix.clone(),
        );
        let summary = blocking(move || {
            let lines = crate::report::write_report(&workdir, &name, &prefix)?;
            let stat = crate::stat::JobStat::collect(&workdir, &name)?;
            Ok((lines, stat.state.word()))
        })
        .await;
        match summary {
            Ok((lines, state)) => tracing::info!(
                round,
                report_lines = lines,
                "job {}: round finished, JobState:{state}",
                self.job.job_name
            ),
            Err(e) => tracing::error!("cannot write the job's report: {e}"),
        }
        self.rounds_done.send_replace(Some(round));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::TaskOutcome;

    /// Distributed mode, after a restart of the master: a resumed task the queue's results
    /// finished before the dispatcher handed it out again is not handed out, and the round
    /// still ends (an in-flight count would wait for it for ever).
    #[tokio::test]
    async fn a_resumed_task_finished_before_it_is_handed_out_ends_the_round() {
        let work = tempfile::tempdir().unwrap();
        let workdir = WorkDir::new(work.path());
        let job = Arc::new(JobConfig {
            job_name: "unit_job".into(),
            ..JobConfig::default()
        });
        workdir.create_job_layout("unit_job").unwrap();
        let id = TaskId::new("0123456789ABCDEF0123456789ABCDEF".into());
        let (split_tx, from_master) = mpsc::channel(4);
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let (to_workers, mut workers) = mpsc::channel(1);
        let (rounds_done, mut rounds) = watch::channel(None);
        let cancel = CancellationToken::new();
        let finished = TaskOutcome {
            ok: 1,
            skipped: 0,
            failed: 0,
        };
        ended_tx
            .send(Ended::Finished(id.clone(), finished))
            .unwrap();
        split_tx.send(Split::RoundScanned(0)).await.unwrap();
        let dispatcher = Dispatcher {
            workdir,
            job,
            cancel: cancel.clone(),
            from_master,
            ended,
            to_workers,
            rounds_done,
        };
        let run = tokio::spawn(dispatcher.run(vec![id]));
        let ended_round =
            tokio::time::timeout(Duration::from_secs(10), rounds.wait_for(Option::is_some))
                .await
                .expect("the round ends")
                .map(|r| *r)
                .unwrap();
        assert_eq!(ended_round, Some(0));
        assert!(
            workers.try_recv().is_err(),
            "a finished task was handed out"
        );
        cancel.cancel();
        run.await.unwrap();
    }
}
