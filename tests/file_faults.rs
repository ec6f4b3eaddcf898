//! Per-file behaviour of the transfer against the sandbox on 127.0.0.1: skip-existing, MD5
//! metadata and server-side encryption, and files that change, vanish or cannot be read.

mod common;

use std::time::Duration;

use common::proxy::{Faults, Proxy};
use common::*;
use md5::{Digest, Md5};

const LONG: Duration = Duration::from_secs(240);

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
    pkg.file("empty.bin", b"");
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
    // An empty file has an MD5 too (issue 9, point 9).
    let empty_md5 = "d41d8cd98f00b204e9800998ecf8427e".to_string();
    let meta = head(&sandbox, "empty.bin");
    assert_eq!(meta.metadata().and_then(|m| m.get("md5")), Some(&empty_md5));
    let writes: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| {
            // CreateMultipartUpload is `POST ?uploads`; `GET ?uploads` lists strays.
            (r.method == "PUT" && r.query_param("partNumber").is_none())
                || (r.method == "POST" && r.query_param("uploads").is_some())
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

/// The file grows while its parts are read, after each part has opened it (a part opened
/// later would refuse it then): every part is read to its listed length, and the parts still
/// being read see the new size on the open file when they end (or else the look at the file
/// after the upload does). Then the user's `retry` sends the file as it is now.
#[test]
fn a_file_changed_during_upload_fails_with_size_not_match_and_retry_sends_it_whole() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    multipart_config(&mut pkg);
    // Its 3 parts (5 + 5 + 2 MiB) all open at once and share 1 MiB/s: the first ends after
    // about 6 s, the others about 6 s later.
    pkg.set("uploadThreadNumPerLargeFile", "3");
    pkg.set_sys("workerMaxThroughput(KB/s)", "1024");
    pkg.set_sys("workerTaskThreadNum", "2");
    pkg.file("changing.bin", &content(1, 12 * MIB));
    pkg.file("steady.txt", b"steady");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    // A finished part is checkpointed: by then every part has the file open, and two are
    // still being read.
    let state = pkg.path("worker/jobs/local_test/multipart");
    let a_part_done = || {
        walkdir::WalkDir::new(&state)
            .into_iter()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("part-"))
    };
    assert!(wait_until(LONG, a_part_done), "no part was uploaded");
    let mut grown = std::fs::OpenOptions::new()
        .append(true)
        .open(pkg.src().join("changing.bin"))
        .unwrap();
    std::io::Write::write_all(&mut grown, b"appended while it was uploaded").unwrap();
    drop(grown);

    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let errors = error_lists(&pkg);
    assert!(
        errors.starts_with(
            "SIZE_NOT_MATCH\tchanging.bin\tchanged while it was uploaded: 12582912 bytes"
        ),
        "{errors}"
    );
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert_eq!(
        sandbox.objects().get("steady.txt").map(Vec::as_slice),
        Some(&b"steady"[..])
    );

    assert_eq!(pkg.ok(&["retry"]).trim(), "Retry has been submitted.");
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(
        stat.contains("JobState:Succeed"),
        "{stat}\n{}",
        error_lists(&pkg)
    );
    assert_same(&sandbox.objects(), &pkg.source_files());
    // Every file counted once, the one that succeeded at the first attempt too.
    let out = pkg.run(&["stat", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = &doc["files"];
    assert_eq!(
        (
            &files["listed"],
            &files["done"],
            &files["ok"],
            &files["failed"]
        ),
        (&2.into(), &2.into(), &2.into(), &0.into()),
        "{doc}"
    );
    assert_eq!(doc["bytes"]["done"], doc["bytes"]["listed"], "{doc}");
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
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("ok.txt", b"fine");
    pkg.file("secret.txt", b"no access");
    pkg.file("locked/inner.txt", b"in a folder nobody may list");
    let run = common::runner::Runner::new(&pkg).unprivileged();
    common::runner::chmod(&pkg.src().join("secret.txt"), 0o000);
    common::runner::chmod(&pkg.src().join("locked"), 0o000);
    run.ok(&["submit"]);
    run.ok(&["start"]);
    let stat = run.wait_for(&["Failed", "Succeed"]);
    run.ok(&["stop"]);
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
