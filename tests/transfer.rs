//! The transfer engine against the sandbox on 127.0.0.1: multipart, resume after kill -9,
//! faults injected by a loopback proxy, the bandwidth cap, and stopping on uncaught errors.
//! Per-file behaviour is in tests/file_faults.rs.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{Faults, Proxy};
use common::*;

const LONG: Duration = Duration::from_secs(240);

#[test]
fn multipart_uploads_of_3_and_7_parts_read_back_equal_with_multipart_etags() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    multipart_config(&mut pkg);
    pkg.file("big/three.bin", &content(3, 12 * MIB + 17));
    pkg.file("big/seven.bin", &content(7, 33 * MIB));
    pkg.file("small.txt", b"small");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
    assert!(
        head(&sandbox, "big/three.bin")
            .e_tag()
            .unwrap()
            .ends_with("-3\"")
    );
    assert!(
        head(&sandbox, "big/seven.bin")
            .e_tag()
            .unwrap()
            .ends_with("-7\"")
    );
    assert!(!head(&sandbox, "small.txt").e_tag().unwrap().contains('-'));
}

#[test]
fn a_killed_multipart_upload_resumes_and_sends_each_finished_part_once() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = Package::new(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    multipart_config(&mut pkg);
    pkg.set("uploadThreadNumPerLargeFile", "1");
    pkg.set_sys("workerMaxThroughput(KB/s)", "5120");
    let data = content(40, 40 * MIB);
    pkg.file("large.bin", &data);
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);

    let state = pkg.path("worker/jobs/local_test/multipart");
    let parts_done = || -> Vec<String> {
        walkdir::WalkDir::new(&state)
            .into_iter()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let started = Instant::now();
    while parts_done().len() < 3 {
        assert!(started.elapsed() < LONG, "no parts checkpointed");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_service(&pkg);
    let before: Vec<i32> = parts_done()
        .iter()
        .map(|n| n[5..].parse().unwrap())
        .collect();
    assert!(before.len() >= 3 && before.len() < 8, "{before:?}");

    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects().get("large.bin"), Some(&data));

    let uploads: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.query_param("partNumber").is_some())
        .collect();
    for n in &before {
        let sends: Vec<_> = uploads
            .iter()
            .filter(|r| r.query_param("partNumber").unwrap() == n.to_string())
            .map(|r| (r.status, r.body_len))
            .collect();
        let sent = sends.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(
            sent, 1,
            "part {n} finished before the kill was sent {sent} times: (status, bytes) {sends:?}"
        );
    }
    let creates = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.query_param("uploads").is_some())
        .count();
    assert_eq!(creates, 1, "the upload was resumed, not restarted");
    let listed = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.query_param("uploadId").is_some())
        .count();
    assert!(listed >= 1, "ListParts confirmed the server's parts");
    let sent: u64 = uploads.iter().map(|r| r.body_len).sum();
    let resent = sent - data.len() as u64;
    eprintln!(
        "resume re-sent {resent} bytes of {} ({} parts finished before the kill)",
        data.len(),
        before.len()
    );
    assert!(
        resent <= 5 * MIB as u64,
        "more than the part in flight was re-sent: {resent}"
    );
    let audit = audit_records(&pkg);
    assert!(
        audit["large.bin"][0]
            .2
            .contains(&format!("resumed_parts={}", before.len())),
        "{audit:?}"
    );
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    multipart_config(&mut pkg);
    pkg.set("taskObjectCountLimit", "40");
    pkg.set_sys("workerMaxThroughput(KB/s)", "8192");
    pkg.set_sys("workerTaskThreadNum", "4");
    for i in 0..240 {
        pkg.file(
            &format!("s{}/f{i:03}.txt", i % 5),
            &content(i, 500 + i * 37),
        );
    }
    for i in 0..3 {
        pkg.file(&format!("large/l{i}.bin"), &content(1000 + i, 12 * MIB + i));
    }
    pkg.ok(&["submit"]);
    let mut seed = 12345u64;
    for round in 0..6 {
        pkg.ok(&["start"]);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = 300 + (seed >> 33) % 1500;
        std::thread::sleep(Duration::from_millis(wait));
        if pkg.stat().contains("JobState:Succeed") {
            eprintln!("finished before kill {round}");
            break;
        }
        kill_service(&pkg);
        eprintln!(
            "killed after {wait} ms: {}",
            pkg.stat()
                .lines()
                .filter(|l| l.contains("Tasks:"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if !pkg.stat().contains("JobState:Succeed") {
        pkg.ok(&["start"]);
    }
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(error_lists(&pkg), "");
    assert_eq!(sandbox.objects(), pkg.source_files());
    let audit = audit_records(&pkg);
    assert_eq!(audit.len(), 243);
    assert!(
        audit.values().all(|r| r.len() == 1),
        "a file finished twice"
    );
}

#[test]
fn resets_and_503s_from_the_network_are_retried_until_every_object_is_right() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(
        &sandbox.endpoint,
        Faults {
            reset_per_mille: 50,
            unavailable_per_mille: 50,
            seed: 7,
            ..Faults::default()
        },
    );
    let mut pkg = Package::new(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    multipart_config(&mut pkg);
    for i in 0..200 {
        pkg.file(&format!("d{}/f{i:03}.bin", i % 4), &content(i, 2000 + i));
    }
    pkg.file("large.bin", &content(99, 16 * MIB));
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(
        stat.contains("JobState:Succeed"),
        "{stat}\n{}",
        error_lists(&pkg)
    );
    assert_eq!(sandbox.objects(), pkg.source_files());
    let faults = proxy
        .requests()
        .iter()
        .filter(|r| r.status == 0 || r.status == 503)
        .count();
    assert!(faults >= 10, "only {faults} faults were injected");
}

/// The cap is measured from the service's own record, the time audit.log gives each file,
/// so start-up, scanning and polling do not count and a loaded machine slows nothing it
/// measures but the transfer itself.
#[test]
fn the_bandwidth_cap_holds_20_mib_at_2048_kb_per_s_by_the_audit_log_times() {
    const CAP: f64 = 2048.0 * 1024.0;
    const FILE: usize = 64 * 1024;
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set_sys("workerMaxThroughput(KB/s)", "2048");
    // Many small files: a file counts when it ends, so the bytes the other threads have
    // already read at the first file's end (at most 7 files of 64 KiB with 8 threads)
    // stretch the measure by at most 7 * 64 KiB over about 10 s: below 3 %.
    for i in 0..320 {
        pkg.file(&format!("f{i:03}.bin"), &content(i, FILE));
    }
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());

    let mut ends: Vec<std::time::SystemTime> = Vec::new();
    for task in pkg.task_dirs("succeed_tasks") {
        let audit = std::fs::read_to_string(task.join("audit.log")).unwrap();
        for line in audit.lines().filter(|l| !l.starts_with('#')) {
            let time = line.split('\t').next().unwrap();
            ends.push(humantime::parse_rfc3339(time).unwrap());
        }
    }
    assert_eq!(ends.len(), 320);
    ends.sort();
    // From the first file's end to the last's: the bytes of every file but the first.
    let secs = ends[319].duration_since(ends[0]).unwrap().as_secs_f64();
    let rate = (319 * FILE) as f64 / secs;
    eprintln!(
        "{:.0} KB/s over {secs:.2} s by the audit.log times",
        rate / 1024.0
    );
    assert!(
        (0.6 * CAP..=1.15 * CAP).contains(&rate),
        "{:.0} KB/s over {secs:.2} s; the cap is 2048 KB/s",
        rate / 1024.0
    );
}

#[test]
fn abort_when_uncatched_exception_stops_the_job_on_a_destination_that_refuses_the_files() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = Package::new(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    pkg.set_sys("workerAbortWhenUncatchedException", "true");
    pkg.set_sys("workerTaskThreadNum", "1");
    pkg.set_sys("workerMaxThroughput(KB/s)", "200");
    for i in 0..20 {
        pkg.file(&format!("f{i:02}.txt"), &content(i, 100_000));
    }
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    // Let the bucket check pass, then make every request fail.
    assert!(wait_path(
        &pkg.path("master/jobs/local_test/checkpoints/0/SCAN_FINISHED"),
        LONG
    ));
    // Refused, not unreachable: a store that answers 5xx to everything is an outage to wait
    // out (tests/outage.rs), one that refuses a file fails it.
    proxy.set_faults(Faults {
        forbid: Some("/f"),
        ..Faults::default()
    });
    let stat = pkg.wait_for(&["Abort", "Failed", "Succeed"], LONG);
    assert!(stat.contains("JobState:Abort\n"), "{stat}");
    assert!(
        stat.contains("workerAbortWhenUncatchedException")
            && stat.contains("access denied (403 AccessDenied: injected)"),
        "{stat}"
    );
    assert!(
        sandbox.objects().len() < 20,
        "the job stopped instead of going on"
    );
}

/// `stat --json`'s bytes done.
fn bytes_done(pkg: &Package) -> u64 {
    let out = pkg.run(&["stat", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    doc["bytes"]["done"].as_u64().unwrap_or(0)
}

/// Bytes per second done between `from` and `to` seconds after `t0`, from `stat --json`
/// polled every 200 ms.
fn rate_between(pkg: &Package, t0: Instant, from: f64, to: f64) -> f64 {
    while t0.elapsed().as_secs_f64() < from {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (start, at_start) = (t0.elapsed().as_secs_f64(), bytes_done(pkg));
    while t0.elapsed().as_secs_f64() < to {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (end, at_end) = (t0.elapsed().as_secs_f64(), bytes_done(pkg));
    (at_end - at_start) as f64 / (end - start)
}

#[test]
fn a_lower_bandwidth_cap_in_sys_properties_applies_to_the_running_job() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    for i in 0..128 {
        pkg.file(&format!("d/f{i:03}.bin"), &content(i, 64 * 1024));
    }
    pkg.set_sys("workerTaskThreadNum", "4");
    pkg.set_sys("workerMaxThroughput(KB/s)", "1024");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let t0 = Instant::now();
    let before = rate_between(&pkg, t0, 0.5, 3.0);
    pkg.set_sys("workerMaxThroughput(KB/s)", "256");
    let changed = t0.elapsed().as_secs_f64();
    // Looked at every 2 s; a batch of results is recorded up to 1 s after its uploads.
    let after = rate_between(&pkg, t0, changed + 3.5, changed + 7.5);
    pkg.set_sys("workerMaxThroughput(KB/s)", "0");
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    pkg.ok(&["stop"]);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
    let kib = |r: f64| r / 1024.0;
    eprintln!(
        "before {:.0} KiB/s, after {:.0} KiB/s",
        kib(before),
        kib(after)
    );
    assert!(
        kib(before) > 600.0 && kib(after) < 400.0 && after < before / 2.0,
        "before the change {:.0} KiB/s, after {:.0} KiB/s",
        kib(before),
        kib(after)
    );
    let log = std::fs::read_to_string(pkg.path("logs/ossimport2.log")).unwrap();
    assert!(
        log.contains("workerMaxThroughput(KB/s) changed from 1024 to 256"),
        "{log}"
    );
    assert!(
        log.contains("workerMaxThroughput(KB/s) changed from 256 to 0"),
        "{log}"
    );
}
