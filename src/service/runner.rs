//! A task runner ("lane"): takes dispatched tasks off the dispatcher's channel one at a time and
//! runs each: its files through the worker, or, for a retried task of entries the listing could
//! not read, through the master, which lists them again.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use crate::error::Result;
use crate::master::{Master, UNLISTED_SUFFIX};
use crate::task::{TaskId, TaskSpec};
use crate::tracker::TrackerHandle;
use crate::workdir::{TaskState, blocking};
use crate::worker::JobContext;

#[derive(Clone)]
pub(super) struct Lane {
    pub ctx: Arc<JobContext>,
    pub master: Arc<Master>,
    pub tracker: TrackerHandle,
    pub tasks: Arc<Mutex<mpsc::Receiver<TaskId>>>,
}

impl Lane {
    pub async fn run(self) {
        loop {
            let next = self.tasks.lock().await.recv().await;
            let Some(id) = next else { return };
            if self.ctx.cancel.is_cancelled() {
                // Left in dispatched: the next start resumes it.
                continue;
            }
            if let Err(e) = self.run_one(id.clone()).await {
                self.ctx.abort(format!("task {id} could not go on: {e}"));
            }
        }
    }

    async fn run_one(&self, id: TaskId) -> Result<()> {
        let task_file = self
            .ctx
            .workdir
            .task_dir(
                &self.ctx.job.job_name,
                TaskState::Dispatched,
                &id.to_string(),
            )
            .join("TASK");
        let spec = Arc::new(blocking(move || TaskSpec::read(&task_file)).await?);
        if spec.unit.ends_with(UNLISTED_SUFFIX) {
            return self.relist(id, spec).await;
        }
        crate::worker::run_task(self.ctx.clone(), &self.tracker, id, spec).await
    }

    async fn relist(&self, id: TaskId, spec: Arc<TaskSpec>) -> Result<()> {
        let done = self.tracker.open(id.clone(), spec.clone()).await?;
        if let Some(records) = self.master.relist(&spec).await? {
            for record in records.into_iter().filter(|r| !done.contains(&r.path)) {
                self.tracker.file(id.clone(), record).await;
            }
        }
        self.tracker.end(id, None).await;
        Ok(())
    }
}
