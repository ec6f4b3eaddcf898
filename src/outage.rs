//! Riding out an outage of an endpoint: when requests stop getting answers (connections
//! refused, timeouts, 5xx across the board), they wait instead of spending their retries, and
//! nothing new starts. One of the waiting requests probes the endpoint, every 2 s at first and
//! up to every 30 s; all go on when it answers. Past `workerMaxOutageSeconds` the job is
//! aborted (its files in flight are not failed: a later start resumes them).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Transient failures in a row, with no answer between them, that make an outage; a refused
/// or unresolvable connection makes one at once.
const IN_A_ROW: u32 = 3;
const FIRST_PROBE: Duration = Duration::from_secs(2);
const LAST_PROBE: Duration = Duration::from_secs(30);

/// How a request failed without an answer worth keeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// The endpoint cannot be reached at all: connection refused, no such host.
    Unreachable,
    /// A timeout, a broken connection, a 5xx or a throttle: one of these alone is no outage.
    Failing,
}

/// What the waiting requests see.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Up,
    /// The outage and how many times a prober gave up its turn (a waiter takes it over).
    Down(u64),
    /// Waited past the limit: the job is being aborted, requests wait for the end.
    GaveUp,
}

#[derive(Debug)]
struct Down {
    since: SystemTime,
    started: Instant,
    cause: String,
    probing: bool,
}

struct State {
    /// Only once the job's start checks passed: an endpoint unreachable at start is a
    /// setting to fix, not an outage to wait out.
    armed: bool,
    in_a_row: u32,
    /// Outages begun so far.
    epoch: u64,
    down: Option<Down>,
    gave_up: Option<String>,
}

pub struct Outage {
    /// "destination" or "source", for the words.
    side: &'static str,
    max: Duration,
    /// Where `stat` reads that the job is waiting.
    status_file: PathBuf,
    /// The job's token, cancelled when the outage lasts too long.
    cancel: CancellationToken,
    state: Mutex<State>,
    phase: watch::Sender<Phase>,
}

impl Outage {
    pub fn new(
        side: &'static str,
        max: Duration,
        status_file: PathBuf,
        cancel: CancellationToken,
    ) -> Outage {
        Outage {
            side,
            max,
            status_file,
            cancel,
            state: Mutex::new(State {
                armed: false,
                in_a_row: 0,
                epoch: 0,
                down: None,
                gave_up: None,
            }),
            phase: watch::channel(Phase::Up).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, failures may make an outage.
    pub fn arm(&self) {
        self.state().armed = true;
    }

    /// Why the job was aborted, when the outage outlasted the limit.
    pub fn gave_up(&self) -> Option<String> {
        self.state().gave_up.clone()
    }

    /// The endpoint answered (any HTTP answer but a 5xx): the outage, if any, is over. A
    /// given-up outage stays so: the job is being aborted.
    pub fn answered(&self) {
        let mut state = self.state();
        state.in_a_row = 0;
        if state.gave_up.is_some() {
            return;
        }
        if let Some(down) = state.down.take() {
            tracing::info!(
                "{} answers again after {} s; the files in flight go on",
                self.side,
                down.started.elapsed().as_secs()
            );
            // Published under the lock, so that phases reach the waiters in state order.
            self.phase.send_replace(Phase::Up);
            let _ = std::fs::remove_file(&self.status_file);
        }
    }

    /// How many outages began so far, and whether one is on: a request of another endpoint
    /// whose body comes from this one tells by these that a failure was not its own.
    pub fn epoch(&self) -> (u64, bool) {
        let state = self.state();
        (state.epoch, state.down.is_some() || state.gave_up.is_some())
    }

    /// A request got no answer worth keeping; true when the endpoint is (now) out, so the
    /// request should wait ([`Outage::wait`]) and try again without counting a try.
    pub fn no_answer(&self, how: NoAnswer, cause: &str) -> bool {
        let mut state = self.state();
        if !state.armed {
            return false;
        }
        if state.down.is_some() || state.gave_up.is_some() {
            return true;
        }
        state.in_a_row += 1;
        if how == NoAnswer::Failing && state.in_a_row < IN_A_ROW {
            return false;
        }
        tracing::warn!(
            "{} unreachable ({cause}): files in flight wait and nothing new starts until it \
             answers; giving up after {} s (workerMaxOutageSeconds)",
            self.side,
            self.max.as_secs()
        );
        state.epoch += 1;
        state.down = Some(Down {
            since: SystemTime::now(),
            started: Instant::now(),
            cause: cause.to_string(),
            probing: false,
        });
        self.phase.send_replace(Phase::Down(0));
        true
    }

    /// Returns when the endpoint is up; while it is out, this request may be the one that
    /// probes it with `probe` (`Err` with the cause while there is no answer). Never returns once the job
    /// is being aborted for a too long outage: the job's end drops the request, so that its
    /// file stays unrecorded and resumes at the next start.
    pub async fn wait<F, Fut>(&self, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut phase = self.phase.subscribe();
        loop {
            let now = phase.borrow_and_update().clone();
            match now {
                Phase::Up => return,
                Phase::GaveUp => return std::future::pending().await,
                Phase::Down(_) => {}
            }
            if self.take_probe_turn() {
                let turn = ProbeTurn(self);
                self.probe_until_up(&mut probe).await;
                drop(turn);
                continue;
            }
            if phase.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    fn take_probe_turn(&self) -> bool {
        let mut state = self.state();
        match state.down.as_mut() {
            Some(down) if !down.probing => {
                down.probing = true;
                true
            }
            _ => false,
        }
    }

    async fn probe_until_up<F, Fut>(&self, probe: &mut F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut every = FIRST_PROBE;
        loop {
            let Some((since, started, cause)) = self
                .state()
                .down
                .as_ref()
                .map(|d| (d.since, d.started, d.cause.clone()))
            else {
                return;
            };
            if started.elapsed() >= self.max {
                self.give_up(since, &cause);
                return;
            }
            self.write_status(since, &cause, every).await;
            tokio::time::sleep(every.min(self.max.saturating_sub(started.elapsed()))).await;
            match probe().await {
                Ok(()) => {
                    self.answered();
                    return;
                }
                // What stat shows is why it is out now, not why it went.
                Err(now) => {
                    if let Some(down) = self.state().down.as_mut() {
                        down.cause = now;
                    }
                }
            }
            every = (every * 2).min(LAST_PROBE);
        }
    }

    fn give_up(&self, since: SystemTime, cause: &str) {
        let reason = format!(
            "{} unreachable for {} s since {} ({cause}), longer than workerMaxOutageSeconds={}; \
             nothing is lost: `console.sh start` resumes the job once it answers",
            self.side,
            self.max.as_secs(),
            clock(since),
            self.max.as_secs()
        );
        tracing::error!("{reason}");
        let mut state = self.state();
        state.gave_up = Some(reason);
        self.phase.send_replace(Phase::GaveUp);
        let _ = std::fs::remove_file(&self.status_file);
        drop(state);
        self.cancel.cancel();
    }

    async fn write_status(&self, since: SystemTime, cause: &str, every: Duration) {
        let text = format!(
            "{} unreachable since {} ({cause}); retrying every {}s",
            self.side,
            clock(since),
            every.as_secs()
        );
        let path = self.status_file.clone();
        let written =
            crate::workdir::blocking(move || crate::workdir::write_atomic(&path, text.as_bytes()))
                .await;
        if let Err(e) = written {
            tracing::warn!("cannot record the outage for stat: {e}");
        }
        // The outage may have ended while the file was written: no stale line in stat.
        let state = self.state();
        if state.down.is_none() || state.gave_up.is_some() {
            let _ = std::fs::remove_file(&self.status_file);
        }
    }
}

/// Gives the probe turn back when its holder stops waiting (its request was cancelled): the
/// next waiter takes it.
struct ProbeTurn<'a>(&'a Outage);

impl Drop for ProbeTurn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        if let Some(down) = state.down.as_mut() {
            down.probing = false;
            self.0.phase.send_modify(|p| {
                if let Phase::Down(n) = p {
                    *n += 1;
                }
            });
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as the log shows times: an outage may last past midnight.
fn clock(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
#[path = "outage_tests.rs"]
mod tests;
