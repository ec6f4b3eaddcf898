//! `submit --dry-run`: the rehearsal says what the real job then does (tasks, files, bytes,
//! what importSince leaves out, invalid keys, what isSkipExistFile skips), writes nothing,
//! and finds existing objects by bucket listing, counted at the server.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(180);

/// Every path under `dir`, to show that a dry run leaves it as it was.
fn tree(dir: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().path().display().to_string())
        .collect()
}

/// The JSON lines of `submit --dry-run --json`: (every object, the total).
fn rehearse_json(pkg: &Package) -> (Vec<Value>, Value) {
    let out = pkg.run(&["submit", "--dry-run", "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let total = lines.last().unwrap().clone();
    assert_eq!(total["kind"], "total", "{total}");
    (lines, total)
}

fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

fn set_mtime(path: &Path, secs: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn a_dry_run_splits_as_the_job_then_does_and_writes_nothing() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("taskObjectCountLimit", "3")
        .set("importSince", "1000000000");
    for i in 0..5 {
        pkg.file(&format!("a/{i}.txt"), &content(i, 100 + i));
    }
    pkg.file("b/x.bin", &content(7, 4000));
    pkg.file("b/y.bin", &content(8, 5000));
    for old in ["old/one.txt", "old/two.txt"] {
        pkg.file(old, b"from 2001");
        set_mtime(&pkg.src().join(old), 999_999_000);
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
        std::fs::write(pkg.src().join(name), b"not utf-8").unwrap();
    }
    let before = tree(pkg.dir.path());

    let out = pkg.run(&["submit", "--dry-run"]);
    let said = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an invalid key fails a file: {said}"
    );
    assert!(
        said.contains("Left out by importSince=1000000000 (2001-09-09T01:46:40Z): not modified after it: 2 files, 18 bytes"),
        "{said}"
    );
    assert!(
        said.contains("  old/one.txt (modified 2001-09-09T01:30:00Z)"),
        "{said}"
    );
    assert!(
        said.contains("Invalid keys: OSS would refuse them (each file fails INVALID_KEY): 1 files"),
        "{said}"
    );
    assert!(
        said.contains("bad\\xFF.txt: the file name is not valid UTF-8"),
        "{said}"
    );
    let bytes = 100 + 101 + 102 + 103 + 104 + 4000 + 5000 + 9;
    assert!(
        said.contains(&format!(
            "Total: 4 tasks, 8 files, {bytes} bytes; to send: 7 files, {} bytes",
            bytes - 9
        )),
        "{said}"
    );
    let (lines, total) = rehearse_json(&pkg);
    assert_eq!(of_kind(&lines, "task").len(), 4, "{lines:?}");
    assert_eq!(of_kind(&lines, "left_out").len(), 2);
    assert_eq!(of_kind(&lines, "invalid_key")[0]["path"], "bad\\xFF.txt");
    assert_eq!(total["files"], 8);
    assert_eq!(tree(pkg.dir.path()), before, "a dry run writes nothing");

    // The real job splits the same: the master's scan totals and the task folders.
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Failed"), "the invalid key: {stat}");
    let scanned =
        std::fs::read_to_string(pkg.path("master/jobs/local_test/checkpoints/0/SCAN_FINISHED"))
            .unwrap();
    assert_eq!(scanned, format!("files=8\nbytes={bytes}\ntasks=4\n"));
    let tasks = pkg.task_dirs("succeed_tasks").len() + pkg.task_dirs("failed_tasks").len();
    assert_eq!(tasks, 4);
    let mut sent = pkg.source_files();
    sent.retain(|k, _| !k.starts_with("old/") && !k.starts_with("bad"));
    assert_eq!(sandbox.objects(), sent);
}

#[test]
fn with_is_skip_exist_file_a_dry_run_lists_the_bucket_instead_of_a_head_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts");
    let sandbox = Sandbox::counting(&counts);
    let mut pkg = Package::new(&sandbox);
    pkg.set("taskObjectCountLimit", "10");
    for i in 0..30 {
        pkg.file(&format!("d{}/f{i:02}.txt", i % 2), &content(i, 50 + i));
    }
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    pkg.ok(&["stop"]);
    pkg.ok(&["clean"]);

    // One file changed since (another size), three new ones.
    pkg.file("d0/f00.txt", b"rewritten, longer than before");
    for i in 30..33 {
        pkg.file(&format!("d1/new{i}.txt"), &content(i, 10));
    }
    pkg.set("isSkipExistFile", "true");
    let before = request_counts(&counts);
    let (lines, total) = rehearse_json(&pkg);
    let after = request_counts(&counts);
    let asked = |kind: &str| after[kind] - before[kind];

    let existing: BTreeSet<String> = of_kind(&lines, "exists")
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(existing.len(), 29, "{lines:?}");
    assert!(!existing.contains("d0/f00.txt"));
    assert_eq!(total["existing"]["files"], 29, "{total}");
    assert_eq!(total["to_send"]["files"], 4, "{total}");
    let tasks = of_kind(&lines, "task").len() as u64;
    assert_eq!(total["existing"]["listing_requests"], tasks);
    assert_eq!(asked("LIST"), tasks, "one listing per task's key range");
    assert_eq!(asked("HEAD"), 1, "the bucket check only, no HEAD per file");
    assert_eq!(asked("PUT") + asked("DELETE"), 0);

    // And the job skips exactly those.
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    let puts = request_counts(&counts)["PUT"] - after["PUT"];
    assert_eq!(puts, 4, "the job sent what the dry run said");
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn json_needs_dry_run_and_console_sh_takes_both() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("a.txt", b"a");
    let out = pkg.run(&["submit", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--dry-run"), "{}", text(&out));

    install_console(&pkg);
    let out = console(&pkg, &["submit", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.ends_with("\n"), "{said}");
    let total: Value = serde_json::from_str(said.lines().last().unwrap()).unwrap();
    assert_eq!(total["files"], 1, "{total}");
    let out = console(&pkg, &["submit", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!pkg.path("master").exists());
}
