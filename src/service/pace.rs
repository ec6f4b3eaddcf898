//! The pace of a running job, changed without a restart: `conf/sys.properties` is looked at
//! every 2 s, and a new `workerMaxThroughput(KB/s)` or `workerTaskThreadNum` applies at once
//! (fewer file slots: as files in flight end). Every change is logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::SysConfig;
use crate::worker::JobContext;

/// How often sys.properties is looked at.
const EVERY: Duration = Duration::from_secs(2);

/// The values in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    pub kbps: u64,
    pub threads: u32,
}

impl Pace {
    pub fn of(sys: &SysConfig) -> Pace {
        Pace {
            kbps: sys.worker_max_throughput_kbps,
            threads: sys.worker_task_thread_num.max(1),
        }
    }
}

/// Applies the changes of `path` to the job until `cancel`.
pub async fn watch(path: PathBuf, ctx: Arc<JobContext>, mut pace: Pace, cancel: CancellationToken) {
    let mut seen = modified(&path);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        let loaded = {
            let path = path.clone();
            crate::workdir::blocking(move || Ok(SysConfig::load(&path)?)).await
        };
        let wanted = match loaded {
            Ok(loaded) => Pace::of(&loaded.config),
            Err(e) => {
                tracing::warn!("sys.properties changed but cannot be used ({e}); the pace stays");
                continue;
            }
        };
        if wanted.kbps != pace.kbps {
            if let Some(limiter) = &ctx.limiter {
                limiter.set_kbps(wanted.kbps);
            }
            tracing::info!(
                "workerMaxThroughput(KB/s) changed from {} to {} (0 = no cap)",
                pace.kbps,
                wanted.kbps
            );
            pace.kbps = wanted.kbps;
        }
        if wanted.threads != pace.threads {
            tracing::info!(
                "workerTaskThreadNum changed from {} to {}",
                pace.threads,
                wanted.threads
            );
            let resized = resize(&ctx.file_permits, pace.threads, wanted.threads);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = resized => {}
            }
            pace.threads = wanted.threads;
        }
    }
}

/// Makes `from` file slots `to`: more at once, fewer as the files holding them end.
async fn resize(permits: &Arc<Semaphore>, from: u32, to: u32) {
    if to > from {
        permits.add_permits((to - from) as usize);
    } else if let Ok(taken) = permits.clone().acquire_many_owned(from - to).await {
        taken.forget();
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fewer_slots_are_taken_back_as_files_end_and_more_are_given_at_once() {
        let permits = Arc::new(Semaphore::new(4));
        let busy: Vec<_> = (0..3)
            .map(|_| permits.clone().try_acquire_owned().unwrap())
            .collect();
        // 4 -> 2 while 3 files run: it waits for one of them.
        let shrink = tokio::spawn({
            let permits = permits.clone();
            async move { resize(&permits, 4, 2).await }
        });
        tokio::task::yield_now().await;
        assert!(!shrink.is_finished());
        drop(busy);
        shrink.await.unwrap();
        assert_eq!(permits.available_permits(), 2);
        resize(&permits, 2, 6).await;
        assert_eq!(permits.available_permits(), 6);
    }
}
