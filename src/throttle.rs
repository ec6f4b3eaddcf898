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
    state: Mutex<Bucket>,
}

struct Bucket {
    /// Bytes per second; 0 = unlimited.
    rate: f64,
    /// Most bytes let through at once after an idle period.
    burst: f64,
    /// Tokens available; negative is debt.
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter for `kb_per_sec` KB/s (1 KB = 1024 bytes); 0 lets everything through. The
    /// cap can change while transfers run ([`RateLimiter::set_kbps`]).
    pub fn new(kb_per_sec: u64) -> RateLimiter {
        let (rate, burst) = rate_and_burst(kb_per_sec);
        RateLimiter {
            state: Mutex::new(Bucket {
                rate,
                burst,
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    /// A new cap from now on; debt already taken is paid at the new rate.
    pub fn set_kbps(&self, kb_per_sec: u64) {
        let (rate, burst) = rate_and_burst(kb_per_sec);
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        b.rate = rate;
        b.burst = burst;
        b.tokens = b.tokens.min(burst);
    }

    /// Takes `bytes` from the bucket, waiting as long as the cap requires.
    pub async fn take(&self, bytes: usize) {
        let wait = {
            let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if b.rate == 0.0 {
                return;
            }
            let now = Instant::now();
            let refill = now.duration_since(b.last).as_secs_f64() * b.rate;
            b.tokens = (b.tokens + refill).min(b.burst) - bytes as f64;
            b.last = now;
            (b.tokens < 0.0).then(|| Duration::from_secs_f64(-b.tokens / b.rate))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Bytes per second and the burst: a tenth of a second of traffic, smooth at every scale the
/// cap is measured at.
fn rate_and_burst(kb_per_sec: u64) -> (f64, f64) {
    let rate = kb_per_sec as f64 * 1024.0;
    (rate, (rate / 10.0).max(64.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn caps_the_rate_across_concurrent_takers() {
        let limiter = std::sync::Arc::new(RateLimiter::new(1024)); // 1 MiB/s
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

    #[tokio::test(start_paused = true)]
    async fn zero_means_unlimited_and_a_new_cap_applies_at_once() {
        let limiter = RateLimiter::new(0);
        let start = Instant::now();
        limiter.take(100 << 20).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.set_kbps(1024);
        let start = Instant::now();
        for _ in 0..20 {
            limiter.take(64 * 1024).await; // 1.25 MiB at 1 MiB/s, less the 0.1 s burst
        }
        let secs = start.elapsed().as_secs_f64();
        assert!((1.1..1.2).contains(&secs), "{secs}");
        limiter.set_kbps(0);
        let start = Instant::now();
        limiter.take(100 << 20).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
