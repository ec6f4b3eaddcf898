//! Riding out an outage: the real server stopped mid-job and started again on the same port
//! and data; a refusal of one key failing that file alone, at once; an outage longer than
//! workerMaxOutageSeconds aborting the job with its reason in words, and a start finishing
//! it. The messages people read are checked as text.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{Faults, Proxy};
use common::*;

const LONG: Duration = Duration::from_secs(300);

/// Every error.list line of the job's tasks.
fn error_lines(pkg: &Package) -> Vec<String> {
    ["succeed_tasks", "failed_tasks"]
        .iter()
        .flat_map(|state| pkg.task_dirs(state))
        .filter_map(|dir| std::fs::read_to_string(dir.join("error.list")).ok())
        .flat_map(|text| text.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// Polls stat until it shows every one of `needles`; returns it.
fn stat_showing(pkg: &Package, within: Duration, needles: &[&str]) -> String {
    let mut stat = String::new();
    let shown = wait_until(within, || {
        stat = pkg.stat();
        needles.iter().all(|n| stat.contains(n))
    });
    assert!(shown, "{needles:?} not in: {stat}");
    stat
}

/// Waits for the job's end and requires Succeed with no error.list line; returns the stat.
fn ends_succeed(pkg: &Package) -> String {
    let stat = pkg.wait_for(&["Succeed", "Failed", "Abort"], LONG);
    assert!(
        stat.contains("JobState:Succeed"),
        "{stat}\n{:?}",
        error_lines(pkg)
    );
    assert_eq!(error_lines(pkg), Vec::<String>::new());
    stat
}

/// A job of 1,500 small files and one 40 MiB file (multipart, 8 MiB parts), capped at
/// 4 MiB/s so that it is mid-way when the server goes.
fn outage_job(sandbox: &Sandbox) -> Package {
    let mut pkg = Package::new(sandbox);
    pkg.set("multipartUploadThreshold", "16m")
        .set("multipartUploadPartSize", "8m")
        .set_sys("workerMaxThroughput(KB/s)", "4096");
    for i in 0..1500 {
        pkg.file(&format!("o{}/{i}.bin", i % 3), &content(i, 1024));
    }
    pkg.file("big/forty.bin", &content(99, 40 << 20));
    pkg
}

#[test]
fn a_45_s_outage_mid_job_is_waited_out_and_the_job_succeeds_without_retry() {
    let mut sandbox = Sandbox::start();
    let pkg = outage_job(&sandbox);
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    std::thread::sleep(Duration::from_secs(6));
    assert!(pkg.stat().contains("JobState:Running"), "{}", pkg.stat());
    // What import.sh shows: `stat --watch` follows the job (plain lines off a terminal).
    let watching = std::process::Command::new(BIN)
        .args(["stat", "--watch"])
        .current_dir(pkg.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sandbox.stop();
    let down = Instant::now();
    let port = sandbox.endpoint.rsplit(':').next().unwrap().to_string();

    // stat says what the job waits for, in words: why the store is out now (the first
    // failures may have been connections cut by its fall).
    let expected =
        format!("(cannot connect to 127.0.0.1:{port} (connection refused)); retrying every");
    let waiting = stat_showing(&pkg, Duration::from_secs(20), &[&expected]);
    assert!(waiting.contains("JobState:Running\n"), "{waiting}");
    let line = waiting.lines().find(|l| l.starts_with("Waiting:")).unwrap();
    assert!(
        line.starts_with("Waiting:destination unreachable since "),
        "{line}"
    );
    let status = pkg.run(&["stat"]);
    assert_eq!(status.status.code(), Some(0), "Running is no failure");

    std::thread::sleep(Duration::from_secs(45).saturating_sub(down.elapsed()));
    assert!(
        pkg.stat().contains("JobState:Running"),
        "still waiting: {}",
        pkg.stat()
    );
    sandbox.restart();
    let outage = down.elapsed();
    let stat = ends_succeed(&pkg);
    assert!(!stat.contains("Waiting:"), "{stat}");
    let watched = watching.wait_with_output().unwrap();
    let watched = String::from_utf8_lossy(&watched.stderr);
    assert!(
        watched.contains("Waiting:destination unreachable since "),
        "stat --watch says why it stands still: {watched}"
    );
    assert_eq!(sandbox.objects(), pkg.source_files());

    let log = std::fs::read_to_string(pkg.path("logs/ossimport2.log")).unwrap();
    let began = log
        .lines()
        .find(|l| l.contains("destination unreachable ("))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        began.contains("files in flight wait and nothing new starts"),
        "{began}"
    );
    let ended = log
        .lines()
        .find(|l| l.contains("destination answers again after"))
        .unwrap_or_else(|| panic!("{log}"));
    eprintln!(
        "outage of {:.1} s; log: {began} / {ended}",
        outage.as_secs_f64()
    );
}

#[test]
fn a_refusal_of_one_key_fails_that_file_at_once_in_words() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(
        &sandbox.endpoint,
        Faults {
            forbid: Some("/locked.txt"),
            ..Faults::default()
        },
    );
    let mut pkg = Package::new(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    for i in 0..50 {
        pkg.file(&format!("d/{i}.txt"), &content(i, 100));
    }
    pkg.file("locked.txt", b"refused");
    pkg.ok(&["submit"]);
    let started = Instant::now();
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed", "Abort"], LONG);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no retries, no outage: {:?}",
        started.elapsed()
    );
    assert_eq!(
        error_lines(&pkg),
        [
            "UPLOAD_ERROR\tlocked.txt\tPUT locked.txt: access denied (403 AccessDenied: injected); \
          check destAccessKey/destSecretKey and their permissions"
        ]
    );
    let out = pkg.run(&["stat"]);
    assert_eq!(out.status.code(), Some(1), "Failed: {}", text(&out));
    let mut sent = pkg.source_files();
    sent.remove("locked.txt");
    assert_eq!(sandbox.objects(), sent);
}

#[test]
fn an_outage_past_the_limit_aborts_in_words_and_start_finishes_the_job() {
    let mut sandbox = Sandbox::start();
    let mut pkg = outage_job(&sandbox);
    pkg.set_sys("workerMaxOutageSeconds", "5");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    std::thread::sleep(Duration::from_secs(4));
    sandbox.stop();
    let port = sandbox.endpoint.rsplit(':').next().unwrap().to_string();
    let stat = pkg.wait_for(&["Abort", "Succeed", "Failed"], LONG);
    let reason = stat
        .lines()
        .find(|l| l.starts_with("AbortReason:"))
        .unwrap_or_else(|| panic!("{stat}"));
    let cause = format!("(cannot connect to 127.0.0.1:{port} (connection refused))");
    assert!(
        reason.contains("destination unreachable for 5 s since ")
            && reason.contains(&cause)
            && reason.contains("longer than workerMaxOutageSeconds=5")
            && reason.contains("`console.sh start` resumes the job"),
        "{reason}"
    );
    assert!(
        !reason.contains("DispatchFailure") && !reason.contains(SK),
        "{reason}"
    );
    let out = pkg.run(&["stat"]);
    assert_eq!(out.status.code(), Some(1), "Abort exits 1: {}", text(&out));
    assert_eq!(error_lines(&pkg), Vec::<String>::new(), "no file failed");

    sandbox.restart();
    pkg.ok(&["stop"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed", "Abort"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn an_unreachable_destination_at_start_aborts_with_one_sentence() {
    let mut sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("a.txt", b"a");
    sandbox.stop();
    let port = sandbox.endpoint.rsplit(':').next().unwrap().to_string();
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Abort", "Succeed", "Failed"], LONG);
    let reason = stat
        .lines()
        .find(|l| l.starts_with("AbortReason:"))
        .unwrap_or_else(|| panic!("{stat}"));
    assert_eq!(
        reason,
        format!(
            "AbortReason:HEAD bucket {BUCKET}: cannot connect to \
             127.0.0.1:{port} (connection refused); check destDomain and the network"
        )
    );
}

#[test]
fn an_outage_of_an_s3_source_is_waited_out_too() {
    let mut src = Sandbox::start();
    let objects: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("s/{i}.bin"), content(i, 8192)))
        .collect();
    put_objects(&src.client(), BUCKET, &objects);
    let dest = Sandbox::start();
    let overrides = [
        ("srcDomain", src.endpoint.as_str()),
        ("srcAccessKey", AK),
        ("srcSecretKey", SK),
        ("srcBucket", BUCKET),
        ("srcPrefix", ""),
        ("destPrefix", ""),
    ];
    let mut pkg = package("s3", &dest, &overrides);
    // Slow enough to be mid-way at the outage (sys.properties, not the job file).
    pkg.sys
        .insert("workerMaxThroughput(KB/s)".into(), "256".into());
    let sys: String = pkg.sys.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(pkg.path("conf/sys.properties"), sys).unwrap();
    submit_and_start(&pkg);
    std::thread::sleep(Duration::from_secs(3));
    src.stop();
    let port = src.endpoint.rsplit(':').next().unwrap().to_string();
    let expected = format!("(cannot connect to 127.0.0.1:{port} (connection refused))");
    let needles = ["Waiting:source unreachable since ", expected.as_str()];
    stat_showing(&pkg, Duration::from_secs(30), &needles);
    std::thread::sleep(Duration::from_secs(10));
    src.restart();
    ends_succeed(&pkg);
    let want: std::collections::BTreeMap<String, Vec<u8>> = objects.into_iter().collect();
    assert_eq!(dest.objects(), want);
}

/// The cost of an outage: the bytes sent more than once are those of the requests in flight
/// when the store went, counted at the proxy in front of it (the server behind it stopped and
/// started again; the proxy answers 502 meanwhile).
#[test]
fn an_outage_resends_only_the_requests_in_flight() {
    let mut sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = outage_job(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    std::thread::sleep(Duration::from_secs(6));
    sandbox.stop();
    let needles = [
        "Waiting:destination unreachable since ",
        "server error (502",
    ];
    stat_showing(&pkg, Duration::from_secs(20), &needles);
    std::thread::sleep(Duration::from_secs(20));
    sandbox.restart();
    ends_succeed(&pkg);
    assert_eq!(sandbox.objects(), pkg.source_files());

    let total: u64 = pkg.source_files().values().map(|b| b.len() as u64).sum();
    let puts = proxy.requests();
    let puts: Vec<_> = puts.iter().filter(|r| r.method == "PUT").collect();
    let sent: u64 = puts.iter().map(|r| r.body_len).sum();
    let twice = sent.saturating_sub(total);
    let failed = puts.iter().filter(|r| r.status != 200).count();
    eprintln!(
        "outage cost: {twice} bytes sent twice ({:.1} MiB) in {failed} failed PUTs of {}",
        twice as f64 / f64::from(1u32 << 20),
        puts.len()
    );
    // At most every file slot (8) with a part (8 MiB) in flight.
    assert!(twice <= 8 * (8 << 20), "{twice} bytes sent twice");
}
