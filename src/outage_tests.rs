use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

fn outage(dir: &std::path::Path, max_secs: u64) -> (Arc<Outage>, CancellationToken) {
    let cancel = CancellationToken::new();
    let outage = Outage::new(
        "destination",
        Duration::from_secs(max_secs),
        dir.join("WAITING"),
        cancel.clone(),
    );
    (Arc::new(outage), cancel)
}

#[test]
fn refused_connections_make_an_outage_at_once_other_failures_only_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = outage(dir.path(), 60);
    assert!(
        !o.no_answer(NoAnswer::Unreachable, "refused"),
        "not armed: the start checks report it"
    );
    o.arm();
    assert!(!o.no_answer(NoAnswer::Failing, "503"));
    assert!(!o.no_answer(NoAnswer::Failing, "503"));
    o.answered();
    assert!(
        !o.no_answer(NoAnswer::Failing, "503"),
        "an answer resets the count"
    );
    assert!(!o.no_answer(NoAnswer::Failing, "503"));
    assert!(o.no_answer(NoAnswer::Failing, "503"), "three in a row");
    o.answered();
    assert!(o.no_answer(NoAnswer::Unreachable, "connection refused"));
}

#[tokio::test(start_paused = true)]
async fn requests_wait_while_one_probes_and_all_go_on_when_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (o, cancel) = outage(dir.path(), 3600);
    o.arm();
    for _ in 0..2 {
        assert!(!o.no_answer(NoAnswer::Failing, "reset"));
    }
    assert!(o.no_answer(NoAnswer::Failing, "reset"));
    let probes = Arc::new(AtomicU32::new(0));
    let started = tokio::time::Instant::now();
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (o, probes) = (o.clone(), probes.clone());
        waiters.spawn(async move {
            o.wait(|| {
                let probes = probes.clone();
                async move {
                    match probes.fetch_add(1, Ordering::SeqCst) + 1 {
                        4.. => Ok(()),
                        _ => Err("cannot connect to h:1 (connection refused)".to_string()),
                    }
                }
            })
            .await;
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = || std::fs::read_to_string(dir.path().join("WAITING")).unwrap();
    assert!(
        status().starts_with("destination unreachable since ")
            && status().ends_with("(reset); retrying every 2s"),
        "{}",
        status()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        status().ends_with("(cannot connect to h:1 (connection refused)); retrying every 4s"),
        "the cause of now: {}",
        status()
    );
    while waiters.join_next().await.is_some() {}
    assert_eq!(probes.load(Ordering::SeqCst), 4, "one prober at a time");
    // Probes after 2, 4, 8 and 16 s.
    assert_eq!(started.elapsed().as_secs(), 30);
    assert!(!dir.path().join("WAITING").exists());
    assert!(!cancel.is_cancelled());
    assert!(!o.no_answer(NoAnswer::Failing, "503"), "up again");
}

#[tokio::test(start_paused = true)]
async fn an_outage_past_the_limit_aborts_the_job_and_keeps_its_requests_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (o, cancel) = outage(dir.path(), 100);
    o.arm();
    assert!(o.no_answer(NoAnswer::Unreachable, "connection refused"));
    let waiter = {
        let o = o.clone();
        tokio::spawn(async move { o.wait(|| async { Err("connection refused".into()) }).await })
    };
    cancel.cancelled().await;
    let reason = o.gave_up().unwrap();
    assert!(
        reason.starts_with("destination unreachable for 100 s since ")
            && reason.contains("(connection refused), longer than workerMaxOutageSeconds=100"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!waiter.is_finished(), "the job's end drops it, unrecorded");
    waiter.abort();
}
