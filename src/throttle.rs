//! The process-wide bandwidth cap (`workerMaxThroughput(KB/s)`): one token bucket shared by
//! every transfer.
//!
//! Callers take the bytes they are about to send and, when the bucket is in debt, sleep until
//! the debt is paid. Taking first and sleeping after keeps it fair between many concurrent
//! readers (each waits in proportion to what it took) and exact over time: the sum of bytes
//! let through after t seconds is at most `burst + rate * t`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct RateLimiter {
    /// Bytes per second.
    rate: f64,
    /// Most bytes let through at once after an idle period.
    burst: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    /// Tokens available; negative is debt.
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter for `kb_per_sec` KB/s (1 KB = 1024 bytes); `None` when 0 (unlimited).
    pub fn from_kbps(kb_per_sec: u64) -> Option<RateLimiter> {
        (kb_per_sec > 0).then(|| {
            let rate = kb_per_sec as f64 * 1024.0;
            // A tenth of a second of traffic: smooth at every scale the cap is measured at.
            let burst = (rate / 10.0).max(64.0 * 1024.0);
            RateLimiter {
                rate,
                burst,
                state: Mutex::new(Bucket {
                    tokens: burst,
                    last: Instant::now(),
                }),
            }
        })
    }

    /// Takes `bytes` from the bucket, waiting as long as the cap requires.
    pub async fn take(&self, bytes: usize) {
        let wait = {
            let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(b.last).as_secs_f64() * self.rate;
            b.tokens = (b.tokens + refill).min(self.burst) - bytes as f64;
            b.last = now;
            (b.tokens < 0.0).then(|| Duration::from_secs_f64(-b.tokens / self.rate))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn caps_the_rate_across_concurrent_takers() {
        let limiter = std::sync::Arc::new(RateLimiter::from_kbps(1024).unwrap()); // 1 MiB/s
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..40 {
                    l.take(64 * 1024).await; // 8 × 40 × 64 KiB = 20 MiB
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        // 20 MiB at 1 MiB/s, less the initial burst of 0.1 s.
        assert!((19.8..20.2).contains(&secs), "{secs}");
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(RateLimiter::from_kbps(0).is_none());
    }
}
