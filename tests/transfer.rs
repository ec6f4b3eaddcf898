//! The transfer engine against the sandbox on 127.0.0.1: multipart, resume after kill -9,
//! faults injected by a loopback proxy, the bandwidth cap, skip-existing, metadata, and
//! file-level faults.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::proxy::{Faults, Proxy};
use common::*;
use md5::{Digest, Md5};

const LONG: Duration = Duration::from_secs(240);
const MIB: usize = 1024 * 1024;

fn head(sandbox: &Sandbox, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    let client = sandbox.client();
    rt().block_on(client.head_object().bucket(BUCKET).key(key).send())
        .expect("head")
}

/// Every audit.log line of finished tasks: path → records (result, reason, detail).
fn audit_records(pkg: &Package) -> BTreeMap<String, Vec<(String, String, String)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for state in ["succeed_tasks", "failed_tasks"] {
        for task in pkg.task_dirs(state) {
            for line in std::fs::read_to_string(task.join("audit.log"))
                .unwrap()
                .lines()
            {
                if line.starts_with('#') {
                    continue;
                }
                let f: Vec<&str> = line.split('\t').collect();
                out.entry(f[4].to_string()).or_default().push((
                    f[1].to_string(),
                    f[2].to_string(),
                    f[5].to_string(),
                ));
            }
        }
    }
    out
}

fn error_lists(pkg: &Package) -> String {
    pkg.task_dirs("failed_tasks")
        .iter()
        .chain(pkg.task_dirs("succeed_tasks").iter())
        .map(|t| std::fs::read_to_string(t.join("error.list")).unwrap())
        .collect()
}

fn kill_service(pkg: &Package) {
    let pid = std::fs::read_to_string(pkg.path("master/service.pid")).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());
    // The lock is released when the process is gone.
    let started = Instant::now();
    while pkg.stat().contains("JobState:Running") && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn multipart_config(pkg: &mut Package) {
    pkg.set("multipartUploadThreshold", "5m");
    pkg.set("multipartUploadPartSize", "5m");
}

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
    for r in proxy.requests() {
        eprintln!(
            "{} {} {} {} {}",
            r.method, r.path, r.query, r.status, r.body_len
        );
    }
    eprintln!(
        "{}",
        std::fs::read_to_string(pkg.path("logs/ossimport2.log")).unwrap()
    );
    for n in &before {
        let sent = uploads
            .iter()
            .filter(|r| r.query_param("partNumber").unwrap() == n.to_string() && r.status == 200)
            .count();
        assert_eq!(
            sent, 1,
            "part {n} finished before the kill was sent {sent} times"
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

#[test]
fn the_bandwidth_cap_holds_20_mib_at_2048_kb_per_s_to_9_to_12_seconds() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set_sys("workerMaxThroughput(KB/s)", "2048");
    for i in 0..20 {
        pkg.file(&format!("f{i:02}.bin"), &content(i, MIB));
    }
    pkg.ok(&["submit"]);
    let started = Instant::now();
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    let secs = started.elapsed().as_secs_f64();
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    eprintln!("20 MiB at 2048 KB/s took {secs:.2} s");
    assert!((9.0..=12.0).contains(&secs), "took {secs:.2} s");
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn skip_existing_skips_unchanged_files_and_sends_changed_ones() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = Package::new(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    for i in 0..5 {
        pkg.file(&format!("f{i}.txt"), &content(i, 100));
    }
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    pkg.wait_for(&["Succeed"], LONG);
    pkg.ok(&["stop"]);
    pkg.ok(&["clean"]);

    pkg.set("isSkipExistFile", "true");
    pkg.file("f2.txt", &content(77, 150)); // changed: new size
    pkg.file("new.txt", b"new");
    let puts_before = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    let audit = audit_records(&pkg);
    for i in [0, 1, 3, 4] {
        let r = &audit[&format!("f{i}.txt")][0];
        assert_eq!((r.0.as_str(), r.1.as_str()), ("SKIPPED", "EXISTS"), "{r:?}");
    }
    assert_eq!(audit["f2.txt"][0].0, "OK");
    assert_eq!(audit["new.txt"][0].0, "OK");
    let puts = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count()
        - puts_before;
    assert_eq!(puts, 2, "only the changed and the new file were sent");
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn md5_metadata_and_server_side_encryption_are_requested() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = Package::new(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    pkg.set("isServerSideEncryption", "true");
    multipart_config(&mut pkg);
    pkg.set_sys("workerRecordMd5", "true");
    let small = content(1, 300_000);
    pkg.file("a.bin", &small);
    pkg.file("big.bin", &content(2, 6 * MIB));
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    let expected: String = Md5::digest(&small)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta = head(&sandbox, "a.bin");
    assert_eq!(meta.metadata().and_then(|m| m.get("md5")), Some(&expected));
    let writes: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| {
            (r.method == "PUT" && r.query_param("partNumber").is_none())
                || r.query_param("uploads").is_some()
        })
        .collect();
    assert!(writes.len() >= 3, "{writes:?}");
    for w in &writes {
        assert_eq!(
            w.header("x-amz-server-side-encryption"),
            Some("AES256"),
            "{} {}",
            w.method,
            w.path
        );
    }
    let audit = audit_records(&pkg);
    assert!(audit["a.bin"][0].2.contains(&format!("md5={expected}")));
    assert!(
        audit["big.bin"][0]
            .2
            .contains("md5=not-recorded(multipart)")
    );
}

#[test]
fn a_file_changed_during_upload_fails_with_size_not_match_and_the_job_goes_on() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set_sys("workerMaxThroughput(KB/s)", "1024");
    pkg.set_sys("workerTaskThreadNum", "2");
    pkg.file("changing.bin", &content(1, 4 * MIB));
    pkg.file("steady.txt", b"steady");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::File::options()
        .write(true)
        .open(pkg.src().join("changing.bin"))
        .unwrap()
        .set_len(MIB as u64)
        .unwrap();
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let errors = error_lists(&pkg);
    assert!(
        errors.starts_with("SIZE_NOT_MATCH\tchanging.bin\t"),
        "{errors}"
    );
    assert_eq!(errors.lines().count(), 1);
    assert_eq!(
        sandbox.objects().get("steady.txt").map(Vec::as_slice),
        Some(&b"steady"[..])
    );
}

#[test]
fn a_file_deleted_after_listing_fails_alone() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set_sys("workerMaxThroughput(KB/s)", "1024");
    pkg.set_sys("workerTaskThreadNum", "1");
    pkg.file("a.bin", &content(1, 2 * MIB));
    pkg.file("z.txt", b"deleted soon");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    assert!(wait_path(
        &pkg.path("master/jobs/local_test/checkpoints/0/SCAN_FINISHED"),
        LONG
    ));
    std::fs::remove_file(pkg.src().join("z.txt")).unwrap();
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let errors = error_lists(&pkg);
    assert!(errors.starts_with("FILE_NOT_FOUND\tz.txt\t"), "{errors}");
    assert_eq!(sandbox.objects().keys().collect::<Vec<_>>(), vec!["a.bin"]);
}

/// Root reads any file, so the service runs as `nobody` here when the tests run as root.
#[cfg(unix)]
#[test]
fn an_unreadable_file_fails_alone() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("ok.txt", b"fine");
    pkg.file("secret.txt", b"no access");
    pkg.file("locked/inner.txt", b"in a folder nobody may list");
    let root = unsafe_is_root();
    let run = |args: &[&str]| {
        let mut cmd = if root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
            c
        } else {
            std::process::Command::new(BIN)
        };
        let out = cmd.args(args).current_dir(pkg.dir.path()).output().unwrap();
        assert!(
            out.status.success() || args == ["stat"],
            "{args:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for e in walkdir::WalkDir::new(pkg.dir.path()) {
        let e = e.unwrap();
        let mode = if e.file_type().is_dir() { 0o777 } else { 0o666 };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(
        pkg.src().join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(
        pkg.src().join("locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    run(&["submit"]);
    run(&["start"]);
    let started = Instant::now();
    let stat = loop {
        let stat = run(&["stat"]);
        if stat.contains("JobState:Failed") || stat.contains("JobState:Succeed") {
            break stat;
        }
        assert!(started.elapsed() < LONG, "{stat}");
        std::thread::sleep(Duration::from_millis(200));
    };
    run(&["stop"]);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let errors = error_lists(&pkg);
    assert!(
        errors.contains("READ_ERROR\tsecret.txt\t") && errors.contains("ermission denied"),
        "{errors}"
    );
    assert!(
        errors.contains("READ_ERROR\tlocked\tcannot list it"),
        "an unlistable folder is reported: {errors}"
    );
    assert_eq!(errors.lines().count(), 2, "{errors}");
    assert_eq!(sandbox.objects().keys().collect::<Vec<_>>(), vec!["ok.txt"]);
}

fn unsafe_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn abort_when_uncatched_exception_stops_the_job_on_a_destination_that_keeps_failing() {
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
    proxy.set_faults(Faults {
        unavailable_per_mille: 1000,
        ..Faults::default()
    });
    let stat = pkg.wait_for(&["Abort", "Failed", "Succeed"], LONG);
    assert!(stat.contains("JobState:Abort\n"), "{stat}");
    assert!(
        stat.contains("workerAbortWhenUncatchedException") && stat.contains("HTTP 503"),
        "{stat}"
    );
    assert!(
        sandbox.objects().len() < 20,
        "the job stopped instead of going on"
    );
}
