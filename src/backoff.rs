//! The one retry policy for transient failures, source or destination: exponential backoff
//! with full jitter, a bounded number of tries; and, once the service hands it an
//! [`Outage`], failures without an answer across the board are waited out instead of
//! spending those tries.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::outage::{NoAnswer, Outage};

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

/// What a retry loop needs to know of a failure.
pub struct Verdict {
    /// Worth another try.
    pub transient: bool,
    /// There was no answer worth keeping (none at all, or a 5xx): how, and why in words.
    pub no_answer: Option<(NoAnswer, String)>,
    /// The endpoint answered (a refusal of this request): it is up.
    pub answered: bool,
}

/// How one endpoint's requests are tried again.
pub struct Retry {
    policy: ExponentialBuilder,
    outage: OnceLock<Arc<Outage>>,
    /// The outage of the endpoint this one's request bodies are read from (the source, for
    /// the destination).
    upstream: OnceLock<Arc<Outage>>,
}

impl Retry {
    pub fn new(tries: usize) -> Retry {
        Retry {
            policy: policy(tries),
            outage: OnceLock::new(),
            upstream: OnceLock::new(),
        }
    }

    /// From now on, outages of this endpoint are waited out (the service, once the job's start
    /// checks passed; the one-shot commands never do).
    pub fn ride_outages(&self, outage: Arc<Outage>) {
        let _ = self.outage.set(outage);
    }

    /// Failures while `upstream` (where request bodies are read from) went out are not this
    /// endpoint's: they spend no try and make no outage of it.
    pub fn bodies_from(&self, upstream: Arc<Outage>) {
        let _ = self.upstream.set(upstream);
    }

    /// Runs `call` until it succeeds, fails for good, or the tries are spent; during an
    /// outage, one waiting request probes the endpoint by running its `call` again (reads
    /// only: a probe's answer is dropped).
    ///
    /// # Errors
    /// The last failure, when it is final or the tries are spent.
    pub async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        call: &F,
        verdict: impl Fn(&E) -> Verdict,
    ) -> Result<T, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let probe = || async {
            match call().await {
                Err(e) => verdict(&e).no_answer.map_or(Ok(()), |(_, why)| Err(why)),
                Ok(_) => Ok(()),
            }
        };
        self.run_probing(what, call, &verdict, probe).await
    }

    /// As [`Retry::run`], with `probe` to ask the endpoint during an outage (`Err` with the
    /// cause while there is no answer), for requests that must not be sent twice.
    ///
    /// # Errors
    /// The last failure, when it is final or the tries are spent.
    pub async fn run_probing<T, E, F, Fut, P, PFut>(
        &self,
        what: &str,
        mut call: F,
        verdict: impl Fn(&E) -> Verdict,
        mut probe: P,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: FnMut() -> PFut,
        PFut: Future<Output = Result<(), String>>,
    {
        let outage = self.outage.get();
        let mut waits = self.policy.build();
        loop {
            // Nothing new starts while the endpoint is out.
            if let Some(outage) = outage {
                outage.wait(&mut probe).await;
            }
            let upstream_before = self.upstream.get().map_or(0, |u| u.epoch().0);
            let e = match call().await {
                Ok(done) => {
                    if let Some(outage) = outage {
                        outage.answered();
                    }
                    return Ok(done);
                }
                Err(e) => e,
            };
            let said = verdict(&e);
            if let Some(upstream) = self.upstream.get()
                && matches!(upstream.epoch(), (epoch, down) if down || epoch != upstream_before)
            {
                // The body comes from an endpoint that went out meanwhile (a source read in a
                // PUT): not this endpoint's failure, and no try of its own.
                tracing::debug!("{what}: failed while its body's source was out; again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if let Some(outage) = outage {
                match &said.no_answer {
                    Some((how, why)) if said.transient && outage.no_answer(*how, why) => continue,
                    _ if said.answered => outage.answered(),
                    _ => {}
                }
            }
            if !said.transient {
                return Err(e);
            }
            let Some(wait) = waits.next() else {
                return Err(e);
            };
            tracing::debug!("{what}: {}; retrying in {wait:?}", describe(&said));
            tokio::time::sleep(wait).await;
        }
    }
}

fn describe(said: &Verdict) -> &str {
    said.no_answer
        .as_ref()
        .map_or("a transient failure", |(_, why)| why.as_str())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio_util::sync::CancellationToken;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_while_the_bodies_source_is_out_spend_no_try() {
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(Outage::new(
            "source",
            Duration::from_secs(3600),
            dir.path().join("WAITING-source"),
            CancellationToken::new(),
        ));
        source.arm();
        let retry = Retry::new(2);
        retry.bodies_from(source.clone());
        let calls = AtomicU32::new(0);
        let call = || async {
            match calls.fetch_add(1, Ordering::SeqCst) + 1 {
                1 => {
                    source.no_answer(NoAnswer::Unreachable, "refused");
                    Err("the body broke")
                }
                2..=4 => Err("the body waits"),
                5 => {
                    source.answered();
                    Err("timed out while the body waited")
                }
                n => Ok(n),
            }
        };
        let verdict = |_: &&str| Verdict {
            transient: true,
            no_answer: None,
            answered: false,
        };
        let got = retry.run("PUT", &call, verdict).await;
        assert_eq!(
            got,
            Ok(6),
            "2 tries: only the failure after the outage counted"
        );
    }
}
