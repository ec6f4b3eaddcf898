//! The one retry policy for transient failures, source or destination: exponential backoff
//! with full jitter, a bounded number of tries.

use std::time::Duration;

use backon::ExponentialBuilder;

/// Attempts per request before a transient failure becomes the file's failure.
pub const REQUEST_TRIES: usize = 8;

/// `tries` attempts in all per request, waiting 200 ms, 400 ms, ... up to 10 s between.
pub fn policy(tries: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(tries.saturating_sub(1))
        .with_jitter()
}
