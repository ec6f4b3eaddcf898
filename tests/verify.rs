//! Verification, audit jobs, incremental mode and reports, against the sandbox on 127.0.0.1.

mod common;

use std::time::{Duration, SystemTime};

use common::proxy::{Faults, Proxy};
use common::*;

const LONG: Duration = Duration::from_secs(240);

fn put(sandbox: &Sandbox, key: &str, bytes: &[u8]) {
    let client = sandbox.client();
    rt().block_on(
        client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(bytes.to_vec().into())
            .send(),
    )
    .expect("put");
}

fn delete(sandbox: &Sandbox, key: &str) {
    let client = sandbox.client();
    rt().block_on(client.delete_object().bucket(BUCKET).key(key).send())
        .expect("delete");
}

/// `path → (result, reason, detail)` of the last attempt, from every finished task.
fn results(pkg: &Package) -> std::collections::BTreeMap<String, (String, String, String)> {
    audit_records(pkg)
        .into_iter()
        .filter_map(|(path, mut records)| records.pop().map(|last| (path, last)))
        .collect()
}

fn run_to_end(pkg: &Package) -> String {
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed", "Abort"], LONG);
    pkg.ok(&["stop"]);
    stat
}

/// Starts the same job over (clean, submit) with other settings.
fn again(pkg: &mut Package, settings: &[(&str, &str)]) -> String {
    pkg.ok(&["clean"]);
    for (k, v) in settings {
        pkg.set(k, v);
    }
    run_to_end(pkg)
}

#[test]
fn detailed_audit_catches_bytes_changed_on_the_server_and_general_says_it_did_not_look() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    let original = content(1, 100_000);
    pkg.file("doc.bin", &original);
    pkg.file("other.txt", b"untouched");
    assert!(run_to_end(&pkg).contains("JobState:Succeed"));

    // Change the stored bytes in the sandbox's data folder, same size. s3s-fs caches the
    // ETag it computed at upload in a sidecar; removing it makes the server report the
    // checksum of what it now stores, as a store does after its object changed.
    let mut changed = original.clone();
    changed[50_000] ^= 0xFF;
    std::fs::write(sandbox.data.join(BUCKET).join("doc.bin"), &changed).unwrap();
    for e in std::fs::read_dir(&sandbox.data).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".internal.json") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }

    let stat = again(&mut pkg, &[("jobType", "audit"), ("auditMode", "general")]);
    assert!(
        stat.contains("JobState:Succeed"),
        "general does not look at content: {stat}"
    );
    let r = results(&pkg);
    assert!(
        r["doc.bin"].2.contains("content not verified"),
        "{:?}",
        r["doc.bin"]
    );

    let stat = again(&mut pkg, &[("jobType", "audit"), ("auditMode", "detailed")]);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let r = results(&pkg);
    assert_eq!(
        (r["doc.bin"].0.as_str(), r["doc.bin"].1.as_str()),
        ("FAILED", "CHECKSUM_NOT_MATCH")
    );
    assert_eq!(r["other.txt"].0, "OK");
    assert!(
        r["other.txt"]
            .2
            .contains("audit=detailed(size,mtime,headers,etag)"),
        "{:?}",
        r["other.txt"]
    );
}

#[test]
fn multipart_etags_we_compute_match_the_server_for_1_2_and_11_parts() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("multipartUploadThreshold", "5m");
    pkg.set("multipartUploadPartSize", "6m");
    pkg.set("auditMode", "detailed");
    pkg.file("one.bin", &content(1, 5 * MIB + 100));
    pkg.file("two.bin", &content(2, 11 * MIB));
    pkg.file("eleven.bin", &content(11, 61 * MIB));
    pkg.file("single.bin", &content(3, 1000));
    let stat = run_to_end(&pkg);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    let r = results(&pkg);
    for (file, parts) in [("one.bin", 1), ("two.bin", 2), ("eleven.bin", 11)] {
        let detail = &r[file].2;
        assert!(detail.contains(&format!("-{parts}\"")), "{file}: {detail}");
        assert!(
            detail.contains("audit=detailed(size,mtime,headers,etag)"),
            "{file}: {detail}"
        );
    }
    assert!(
        r["single.bin"]
            .2
            .contains("audit=detailed(size,mtime,headers,etag)")
    );
    assert_eq!(sandbox.objects(), pkg.source_files());

    // An audit job recomputes the same ETags from the files alone.
    let stat = again(&mut pkg, &[("jobType", "audit")]);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert!(
        results(&pkg).values().all(|r| r.2.contains(",etag)")),
        "{:?}",
        results(&pkg)
    );
}

#[test]
fn an_audit_job_reports_exactly_the_missing_and_different_objects_and_uploads_nothing() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = Package::new(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    for i in 0..20 {
        pkg.file(&format!("f{i:02}.bin"), &content(i, 1000 + i));
    }
    assert!(run_to_end(&pkg).contains("JobState:Succeed"));
    for i in [1, 2, 3] {
        delete(&sandbox, &format!("f{i:02}.bin"));
    }
    put(&sandbox, "f04.bin", &content(4, 10));
    put(&sandbox, "f05.bin", &content(5, 5000));
    put(&sandbox, "f06.bin", &content(600, 1006));
    let requests_before = proxy.requests().len();

    let stat = again(&mut pkg, &[("jobType", "audit"), ("auditMode", "detailed")]);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let errors: Vec<String> = pkg
        .task_dirs("failed_tasks")
        .iter()
        .flat_map(|t| {
            std::fs::read_to_string(t.join("error.list"))
                .unwrap()
                .lines()
                .map(|l| l.split('\t').take(2).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut errors = errors;
    errors.sort();
    assert_eq!(
        errors,
        vec![
            "CHECKSUM_NOT_MATCH f06.bin",
            "MISSING f01.bin",
            "MISSING f02.bin",
            "MISSING f03.bin",
            "SIZE_NOT_MATCH f04.bin",
            "SIZE_NOT_MATCH f05.bin",
        ]
    );
    let writes = proxy.requests()[requests_before..]
        .iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .count();
    assert_eq!(writes, 0, "an audit job copies nothing");
    assert!(!sandbox.objects().contains_key("f01.bin"));
}

#[test]
fn incremental_mode_uploads_exactly_the_new_and_changed_files_in_the_next_round() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = Package::new(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    pkg.set("isIncremental", "true");
    pkg.set("incrementalModeInterval", "3");
    let past = SystemTime::now() - Duration::from_secs(600);
    for i in 0..10 {
        pkg.file(&format!("d/f{i}.txt"), &content(i, 100));
        let f = std::fs::File::options()
            .write(true)
            .open(pkg.src().join(format!("d/f{i}.txt")))
            .unwrap();
        f.set_modified(past).unwrap();
    }
    let out = std::process::Command::new(BIN)
        .arg("submit")
        .env("OSSIMPORT_MIN_INCREMENTAL_INTERVAL", "1")
        .current_dir(pkg.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    pkg.ok(&["start"]);
    let round_done = |round: u32| {
        let marker = pkg.path(&format!(
            "master/jobs/local_test/checkpoints/{round}/SCAN_FINISHED"
        ));
        let started = std::time::Instant::now();
        loop {
            // The marker first: a stat taken before the scan also shows no tasks.
            let scanned = marker.exists();
            let stat = pkg.stat();
            if scanned && stat.contains("PendingTasks:0\nDispatchedTasks:0\n") {
                return stat;
            }
            assert!(
                started.elapsed() < LONG,
                "round {round} did not finish: {stat}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let stat = round_done(0);
    assert!(
        stat.contains("JobState:Running"),
        "an incremental job stays Running: {stat}"
    );
    let puts_round0 = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts_round0, 10);

    for i in 0..3 {
        pkg.file(&format!("d/new{i}.txt"), &content(100 + i, 50));
    }
    pkg.file("d/f4.txt", &content(44, 120));
    let stat = round_done(1);
    assert!(stat.contains("JobState:Running"), "{stat}");
    let puts_round1: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .skip(puts_round0)
        .map(|r| r.path.clone())
        .collect();
    let mut puts_round1 = puts_round1;
    puts_round1.sort();
    assert_eq!(
        puts_round1,
        vec![
            "/test-bucket/d/f4.txt",
            "/test-bucket/d/new0.txt",
            "/test-bucket/d/new1.txt",
            "/test-bucket/d/new2.txt"
        ]
    );
    assert!(pkg.path("master/jobs/local_test/checkpoints/1").is_dir());
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn stat_json_matches_the_task_folders_and_the_report_lists_failed_files() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("taskObjectCountLimit", "4");
    for i in 0..10 {
        pkg.file(&format!("ok/f{i}.txt"), &content(i, 10 + i));
    }
    let long = format!("bad/{}x.txt", format!("{}/", "n".repeat(200)).repeat(6));
    pkg.file(&long, b"key too long");
    let stat = run_to_end(&pkg);
    assert!(stat.contains("JobState:Failed"), "{stat}");

    let out = pkg.run(&["stat", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stat --json is JSON");
    assert_eq!(doc["job"], "local_test");
    assert_eq!(doc["state"], "Failed");
    assert_eq!(
        doc["tasks"]["succeed"],
        pkg.task_dirs("succeed_tasks").len()
    );
    assert_eq!(doc["tasks"]["failed"], pkg.task_dirs("failed_tasks").len());
    assert_eq!(doc["tasks"]["pending"], 0);
    assert_eq!(doc["files"]["listed"], 11);
    assert_eq!(doc["files"]["done"], 11);
    assert_eq!(doc["files"]["ok"], 10);
    assert_eq!(doc["files"]["failed"], 1);
    let bytes: u64 = pkg.source_files().values().map(|b| b.len() as u64).sum();
    assert_eq!(doc["bytes"]["listed"], bytes);

    let report = std::fs::read_to_string(pkg.path("master/jobs/local_test/report.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{report}");
    assert_eq!(lines[0]["reason"], "INVALID_KEY");
    assert_eq!(lines[0]["path"], long.as_str());
    assert_eq!(lines[0]["result"], "FAILED");
    assert!(lines[0]["key"].is_null());
}

#[test]
fn stat_watch_prints_plain_lines_when_not_on_a_terminal_and_ends_with_the_block() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("a.txt", b"a");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let out = pkg.run(&["stat", "--watch"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("JobState:Succeed"), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("files "),
        "{}",
        text(&out)
    );
}

/// Object paths in the sandbox's data folder, for faults injected behind the tool's back.
fn stored(sandbox: &Sandbox, key: &str) -> std::path::PathBuf {
    sandbox.data.join(BUCKET).join(key)
}

/// Makes the sandbox report the checksum of what it stores now (it caches the ETag computed
/// at upload in `.internal.json` sidecars).
fn forget_etags(sandbox_data: &std::path::Path) {
    for e in std::fs::read_dir(sandbox_data).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".internal.json") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[test]
fn the_default_audit_lists_the_bucket_and_catches_objects_lost_or_cut_after_their_upload() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = Package::with_dest(&proxy.endpoint);
    multipart_config(&mut pkg);
    for i in 0..60 {
        pkg.file(&format!("d/f{i:03}.bin"), &content(i, 3000 + i));
    }
    pkg.file("d/gone.bin", &content(100, 5000));
    pkg.file("d/short.bin", &content(101, 5000));
    pkg.file("e/big.bin", &content(102, 12 << 20));
    // Right after the server stored them, before the tool hears back: one object vanishes,
    // one loses its tail. The tool's PUTs themselves succeed.
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (gone, short) = (
        stored(&sandbox, "d/gone.bin"),
        stored(&sandbox, "d/short.bin"),
    );
    let hook_armed = armed.clone();
    proxy.after_success(move |method, path, _| {
        if method != "PUT" || !hook_armed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if path.ends_with("/d/gone.bin") {
            std::fs::remove_file(&gone).unwrap();
        } else if path.ends_with("/d/short.bin") {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&short)
                .unwrap();
            f.set_len(4000).unwrap();
        }
    });

    let stat = run_to_end(&pkg);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let r = results(&pkg);
    assert_eq!(
        (r["d/gone.bin"].0.as_str(), r["d/gone.bin"].1.as_str()),
        ("FAILED", "MISSING"),
        "{:?}",
        r["d/gone.bin"]
    );
    assert_eq!(
        (r["d/short.bin"].0.as_str(), r["d/short.bin"].1.as_str()),
        ("FAILED", "SIZE_NOT_MATCH"),
        "{:?}",
        r["d/short.bin"]
    );
    assert!(r["d/short.bin"].2.contains("destination 4000 bytes"));
    for (path, (result, _, detail)) in r
        .iter()
        .filter(|(p, _)| !p.contains("gone") && !p.contains("short"))
    {
        assert_eq!(result, "OK", "{path}: {detail}");
        assert!(
            detail.contains("audit=general(listed: size,last-modified"),
            "{path}: {detail}"
        );
    }
    // The proof came from listings, not a HEAD per object: 63 files, a handful of requests.
    let seen = proxy.requests();
    let object_heads = seen
        .iter()
        .filter(|s| s.method == "HEAD" && s.path.trim_matches('/') != BUCKET)
        .count();
    let listings = seen
        .iter()
        .filter(|s| s.method == "GET" && s.query_param("list-type").is_some())
        .count();
    assert_eq!(object_heads, 0);
    assert!(
        (1..=8).contains(&listings),
        "{listings} listings for 63 files"
    );

    // Nothing is lost: retry sends the two again, and every object equals its file.
    armed.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(pkg.ok(&["retry"]).trim(), "Retry has been submitted.");
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed", "Abort"], LONG);
    pkg.ok(&["stop"]);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn detailed_audit_after_import_catches_bytes_changed_on_the_server_after_the_upload() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = Package::with_dest(&proxy.endpoint);
    pkg.set("auditMode", "detailed");
    pkg.file("keep.bin", &content(1, 20_000));
    pkg.file("flip.bin", &content(2, 20_000));
    let (flip, data) = (stored(&sandbox, "flip.bin"), sandbox.data.clone());
    proxy.after_success(move |method, path, _| {
        if method == "PUT" && path.ends_with("/flip.bin") {
            let mut bytes = std::fs::read(&flip).unwrap();
            bytes[10_000] ^= 0xFF;
            std::fs::write(&flip, bytes).unwrap();
            forget_etags(&data);
        }
    });
    let stat = run_to_end(&pkg);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let r = results(&pkg);
    assert_eq!(
        (r["flip.bin"].0.as_str(), r["flip.bin"].1.as_str()),
        ("FAILED", "CHECKSUM_NOT_MATCH"),
        "{:?}",
        r["flip.bin"]
    );
    assert_eq!(r["keep.bin"].0, "OK", "{:?}", r["keep.bin"]);
    assert!(
        r["keep.bin"].2.contains("audit=detailed("),
        "{:?}",
        r["keep.bin"]
    );
}
