//! One job's run: the destination and source checked, the earlier run's leftovers repaired,
//! then master, dispatcher, task runners and tracker started on their channels and supervised
//! until `stop` or an abort.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::dispatch::Dispatcher;
use super::runner;
use crate::config::{JobConfig, SysConfig};
use crate::error::{Error, Result};
use crate::master::Master;
use crate::outage::Outage;
use crate::throttle::RateLimiter;
use crate::tracker::Tracker;
use crate::workdir::{WorkDir, blocking, write_atomic};
use crate::worker::JobContext;

/// How long `stop` lets in-flight files finish before leaving them to resume at next start.
const DRAIN: Duration = Duration::from_secs(8);
/// Tasks the master may have sent ahead of the dispatcher.
const SPLIT_CHANNEL: usize = 16;
/// File results in the tracker's channel before workers wait for it.
const EVENT_CHANNEL: usize = 1024;
/// Distributed mode: tasks on the queue (waiting or running) at once: the lanes of 64 workers
/// (4 each, more for small tasks) with as many waiting. Each is a folder in dispatched/ and
/// one message on the queue.
const QUEUED_AHEAD: usize = 512;

pub(super) async fn run_job(
    job: Arc<JobConfig>,
    sys: &SysConfig,
    sys_path: &std::path::Path,
    workdir: &WorkDir,
    service: &CancellationToken,
) -> Result<()> {
    // The job's own token: cancelled by `stop` (through the service's) or by a job abort.
    let cancel = service.child_token();
    let name = job.job_name.clone();
    tracing::info!(job = %name, src_type = ?job.src_type, "job started");
    let abort_file = workdir.abort_file(&name);
    let _ = std::fs::remove_file(&abort_file);
    let abort = |message: String| {
        let _ = write_atomic(&abort_file, message.as_bytes());
        Error::Refused(format!("job {name} aborted: {message}"))
    };
    let Some(ctx) = open_job(&job, sys, workdir, &cancel)
        .await
        .map_err(|e| abort(e.to_string()))?
    else {
        return Ok(());
    };
    tokio::spawn(super::pace::watch(
        sys_path.to_path_buf(),
        ctx.clone(),
        super::pace::Pace::of(sys),
        cancel.clone(),
    ));
    let resume = {
        let (workdir, name) = (workdir.clone(), name.clone());
        blocking(move || {
            workdir.create_job_layout(&name)?;
            crate::retry::finish_staged(&workdir, &name)?;
            crate::tracker::recover_finished(&workdir, &name)
        })
        .await?
    };

    // Distributed mode: tasks go to the queue and results come back from it.
    let queue = match sys.queue_url.is_empty() {
        true => None,
        false => tokio::select! {
            biased;
            () = cancel.cancelled() => return Ok(()),
            q = crate::queue::Queue::connect(sys, "master") => {
                Some(Arc::new(q.map_err(|e| abort(e.to_string()))?))
            }
        },
    };

    let (split_tx, split_rx) = mpsc::channel(SPLIT_CHANNEL);
    let (tracker_ended_tx, tracker_ended_rx) = mpsc::unbounded_channel();
    let (ended_tx, ended_rx) = mpsc::unbounded_channel();
    let (rounds_tx, rounds_rx) = watch::channel(None);
    let (work_tx, work_rx) = mpsc::channel(1);
    let (tracker, tracker_handle) = Tracker::new(
        workdir.clone(),
        name.clone(),
        EVENT_CHANNEL,
        tracker_ended_tx,
    );
    let slots = Arc::new(Semaphore::new(QUEUED_AHEAD));
    tokio::spawn(pass_ends(
        tracker_ended_rx,
        ended_tx,
        queue.as_ref().map(|_| slots.clone()),
    ));
    let master = Arc::new(Master {
        job: job.clone(),
        source: ctx.source.clone(),
        workdir: workdir.clone(),
        cancel: cancel.clone(),
        to_dispatcher: split_tx,
    });
    let dispatcher = Dispatcher {
        workdir: workdir.clone(),
        job: job.clone(),
        cancel: cancel.clone(),
        from_master: split_rx,
        ended: ended_rx,
        to_workers: work_tx,
        rounds_done: rounds_tx,
    };

    let mut tracker_run = tokio::spawn(tracker.run());
    let mut master_run = tokio::spawn(master.clone().run(rounds_rx));
    let dispatcher_run = tokio::spawn(dispatcher.run(resume));
    let mut runners = tokio::task::JoinSet::new();
    let lane = |tasks| runner::Lane {
        ctx: ctx.clone(),
        master: master.clone(),
        tracker: tracker_handle.clone(),
        tasks: Arc::new(tokio::sync::Mutex::new(tasks)),
    };
    match &queue {
        None => {
            let lane = lane(work_rx);
            for _ in 0..task_runners(&job, sys) {
                runners.spawn(lane.clone().run());
            }
        }
        Some(queue) => {
            // Relisting needs the source's listing: the master runs those tasks itself.
            let (local_tx, local_rx) = mpsc::channel(1);
            runners.spawn(lane(local_rx).run());
            let publisher = crate::queue::publisher::Publisher {
                queue: queue.clone(),
                job: job.clone(),
                workdir: workdir.clone(),
                tasks: work_rx,
                local: local_tx,
                slots,
                cancel: cancel.clone(),
            };
            let aborts = ctx.clone();
            let inbox = crate::queue::inbox::Inbox::new(
                queue.clone(),
                name.clone(),
                workdir.clone(),
                tracker_handle.clone(),
                cancel.clone(),
                Box::new(move |why| aborts.abort(why)),
            );
            let (c1, c2) = (ctx.clone(), ctx.clone());
            runners.spawn(async move {
                if let Err(e) = publisher.run().await {
                    c1.abort(format!("tasks cannot be queued: {e}"));
                }
            });
            runners.spawn(async move {
                if let Err(e) = inbox.run().await {
                    c2.abort(format!("the workers' results cannot be recorded: {e}"));
                }
            });
        }
    }
    drop(tracker_handle);

    // Supervise: a failed master or tracker aborts the job; otherwise wait for `stop`.
    let mut master_done = false;
    let mut tracker_done = false;
    let mut fault = loop {
        tokio::select! {
            // First: at a stop, runners end too, and that is no fault.
            biased;
            () = cancel.cancelled() => break None,
            listed = &mut master_run, if !master_done => {
                master_done = true;
                match listed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Some(format!("listing the source failed: {e}")),
                    Err(e) => break Some(format!("the master failed: {e}")),
                }
            }
            tracked = &mut tracker_run => {
                tracker_done = true;
                break Some(tracker_fault(tracked));
            }
            // Runners end only when the dispatcher closes their channel, at a stop.
            Some(lane) = runners.join_next() => {
                break Some(match lane {
                    Ok(()) => "a task runner stopped early".to_string(),
                    Err(e) => format!("a task runner failed: {e}"),
                });
            }
        }
    };
    cancel.cancel();
    master_run.abort();
    let _ = dispatcher_run.await;
    if tokio::time::timeout(DRAIN, async {
        while runners.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("files still in flight after {DRAIN:?}; they resume at the next start");
        runners.shutdown().await;
    }
    let unexpected = ctx.take_abort_reason();
    drop((runners, master, ctx));
    // Every handle is gone: the tracker writes what it holds and ends.
    if !tracker_done {
        match tracker_run.await {
            Ok(Ok(())) => {}
            other => fault = fault.or(Some(tracker_fault(other))),
        }
    }
    let reason = fault.or(unexpected);
    match reason {
        Some(reason) => Err(abort(reason)),
        None => Ok(()),
    }
}

/// Passes the tracker's ends on to the dispatcher. In distributed mode (`slots`), a finished
/// task frees its slot on the queue, and a task left with files to do is not an end: the queue
/// hands it to another worker.
async fn pass_ends(
    mut from_tracker: mpsc::UnboundedReceiver<crate::tracker::Ended>,
    to_dispatcher: mpsc::UnboundedSender<crate::tracker::Ended>,
    slots: Option<Arc<Semaphore>>,
) {
    while let Some(ended) = from_tracker.recv().await {
        match (&ended, &slots) {
            (crate::tracker::Ended::Interrupted(_), Some(_)) => continue,
            (crate::tracker::Ended::Finished(..), Some(slots)) => slots.add_permits(1),
            _ => {}
        }
        if to_dispatcher.send(ended).is_err() {
            return;
        }
    }
}

fn tracker_fault(tracked: std::result::Result<Result<()>, tokio::task::JoinError>) -> String {
    match tracked {
        Ok(Ok(())) => "the tracker stopped early".into(),
        Ok(Err(e)) => format!("results cannot be recorded: {e}"),
        Err(e) => format!("the tracker failed: {e}"),
    }
}

/// Opens and checks the destination and the source; `None` when stopped meanwhile.
pub(crate) async fn open_job(
    job: &Arc<JobConfig>,
    sys: &SysConfig,
    workdir: &WorkDir,
    cancel: &CancellationToken,
) -> std::result::Result<Option<Arc<JobContext>>, String> {
    let outage = |side: &'static str| {
        let waiting = workdir.waiting_file(&job.job_name, side);
        let _ = std::fs::remove_file(&waiting);
        let max = Duration::from_secs(sys.worker_max_outage_seconds);
        Arc::new(Outage::new(side, max, waiting, cancel.clone()))
    };
    let (dest_outage, source_outage) = (outage("destination"), outage("source"));
    let outages = (dest_outage.clone(), source_outage.clone());
    let dest = crate::dest::open(job, crate::backoff::REQUEST_TRIES, Some(outages));
    tokio::select! {
        biased;
        () = cancel.cancelled() => return Ok(None),
        checked = dest.check_access() => checked.map_err(|e| e.message)?,
    }
    let source = crate::source::open_source(job).map_err(|e| e.to_string())?;
    // A wrong source key or a missing source bucket is one reason for the job, not one
    // failure per file.
    tokio::select! {
        biased;
        () = cancel.cancelled() => return Ok(None),
        checked = source.check() => checked.map_err(|e| e.to_string())?,
    }
    let ctx = Arc::new(JobContext {
        job: job.clone(),
        source: source.into(),
        dest,
        workdir: workdir.clone(),
        file_permits: Arc::new(Semaphore::new(sys.worker_task_thread_num.max(1) as usize)),
        cancel: cancel.clone(),
        abort_on_unexpected: sys.worker_abort_when_uncatched_exception,
        // Always there, so that a cap set while the job runs applies.
        limiter: Some(Arc::new(RateLimiter::new(sys.worker_max_throughput_kbps))),
        record_md5: sys.worker_record_md5,
        need_digests: sys.worker_record_md5
            || (job.is_audit_after_import && job.audit_mode == crate::config::AuditMode::Detailed),
        server_copy: crate::source::same_store(job),
        abort_reason: std::sync::Mutex::new(None),
        outages: [dest_outage.clone(), source_outage.clone()],
    });
    // From here on an unreachable store is an outage to wait out; before, at start, it is a
    // setting to fix, and the job aborts with it.
    ctx.source.ride_outages(source_outage);
    for outage in &ctx.outages {
        outage.arm();
    }
    if ctx.server_copy {
        tracing::info!(
            "the source is the destination's own store (same endpoint and keys): objects are \
             copied server-side, their bytes do not pass through this machine"
        );
    }
    Ok(Some(ctx))
}

/// Enough concurrent tasks to keep `workerTaskThreadNum` files in flight when tasks are
/// small, and four when tasks are large (each holds its file list in memory). Tasks are
/// often smaller than `taskObjectCountLimit` (one per folder), and a task's last files and
/// its audit leave file slots idle that other tasks fill: W1 (200-file tasks) took 3.37 s
/// with four against 3.70 s with two (medians of 5).
pub(crate) fn task_runners(job: &JobConfig, sys: &SysConfig) -> usize {
    let threads = u64::from(sys.worker_task_thread_num.max(1));
    let per_task = job.task_object_count_limit.max(1);
    (threads * 2).div_ceil(per_task).clamp(4, threads.max(4)) as usize
}
