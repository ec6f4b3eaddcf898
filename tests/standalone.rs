//! End to end: the built binary and scripts against the sandbox server on 127.0.0.1, every
//! object read back and compared byte for byte.

mod common;

use std::time::{Duration, SystemTime};

use common::*;

const LONG: Duration = Duration::from_secs(180);

fn expected_stat(state: &str, succeed: usize, failed: usize) -> String {
    format!(
        "---------------- job stat ------------------\nJobName:local_test\nJobState:{state}\n\
PendingTasks:0\nDispatchedTasks:0\nRunningTasks:0\nSucceedTasks:{succeed}\nFailedTasks:{failed}\n\
ScanFinished:true\nRunningTasks Progress:\n----------------------------------------\n"
    )
}

#[test]
fn migrates_every_kind_of_name_byte_for_byte_across_tasks() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("taskObjectCountLimit", "100");
    pkg.file("top.txt", b"top level");
    pkg.file("empty.bin", b"");
    pkg.file("a/b/c/d/deep.txt", &content(1, 3000));
    pkg.file("with space/file name.txt", &content(2, 10));
    pkg.file("unicode/数据 ünïcødé.md", &content(3, 77));
    pkg.file("odd/plus+percent%hash#question?.txt", &content(4, 123));
    for i in 0..500 {
        pkg.file(
            &format!("many/{:02}/f{i:04}.dat", i % 7),
            &content(100 + i, (i * 13) % 4096),
        );
    }
    let out = pkg.ok(&["submit"]);
    let cfg = pkg.path("conf/local_job.cfg");
    assert!(
        out.contains(&format!("submit job:{}", cfg.display())),
        "{out}"
    );
    assert!(out.contains("submit job:local_test success!"), "{out}");
    assert_eq!(pkg.ok(&["start"]).trim(), "Start import service completed.");
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);

    let succeed = pkg.task_dirs("succeed_tasks");
    // One unit per top-level folder plus one for the root's files (maxMultiThreadScanDepth=1):
    // many/ makes 5 tasks of 100 files, the 4 other folders and the root one each.
    assert_eq!(succeed.len(), 10);
    assert_eq!(stat, expected_stat("Succeed", succeed.len(), 0));
    assert_eq!(sandbox.objects(), pkg.source_files());

    for task in &succeed {
        let name = task.file_name().unwrap().to_string_lossy().into_owned();
        let (hash, rest) = name.split_once('_').unwrap();
        assert!(
            hash.len() == 32
                && hash
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert!(
            rest.len() == 13 + "@localhost".len() && rest.ends_with("@localhost"),
            "{name}"
        );
        for f in ["TASK", "STATUS", "DONE", "audit.log", "error.list"] {
            assert!(task.join(f).exists(), "{name} lacks {f}");
        }
        assert_eq!(
            std::fs::read_to_string(task.join("STATUS")).unwrap(),
            "Completed"
        );
        assert_eq!(
            std::fs::read_to_string(task.join("error.list")).unwrap(),
            ""
        );
    }
    let cpts = std::fs::read_dir(pkg.path("master/jobs/local_test/checkpoints/0"))
        .unwrap()
        .count();
    assert!(cpts >= 2, "checkpoint files: {cpts}");

    // Secrets never reach state files or logs.
    for entry in walkdir::WalkDir::new(pkg.dir.path()) {
        let entry = entry.unwrap();
        if entry.file_type().is_file()
            && !entry.path().starts_with(pkg.path("conf"))
            && !entry.path().starts_with(pkg.src())
        {
            let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
            assert!(
                !text.contains(SK) && !text.contains(AK),
                "secret in {}",
                entry.path().display()
            );
        }
    }
}

#[test]
fn import_since_leaves_older_files_out() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    let now = SystemTime::now();
    let cutoff = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 86_400;
    pkg.set("importSince", &cutoff.to_string());
    pkg.file("new/a.txt", b"new a");
    pkg.file("new/b.txt", b"new b");
    pkg.file("old/c.txt", b"old c");
    pkg.file("d.txt", b"old d");
    let old = now - Duration::from_secs(10 * 86_400);
    for f in ["old/c.txt", "d.txt"] {
        std::fs::File::options()
            .write(true)
            .open(pkg.src().join(f))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    let keys: Vec<String> = sandbox.objects().into_keys().collect();
    assert_eq!(keys, vec!["new/a.txt".to_string(), "new/b.txt".to_string()]);
}

#[test]
fn invalid_key_fails_that_file_only_and_retry_after_the_fix_succeeds() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("taskObjectCountLimit", "3");
    let long = format!("long/{}file.txt", format!("{}/", "d".repeat(200)).repeat(6));
    assert!(long.len() > 1023);
    pkg.file(&long, b"too long a key");
    for i in 0..5 {
        pkg.file(&format!("long/ok{i}.txt"), &content(i, 100));
    }
    pkg.file("other.txt", b"fine");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(
        stat.contains("JobState:Failed") && stat.contains("FailedTasks:1\n"),
        "{stat}"
    );
    assert_eq!(
        pkg.run(&["stat"]).status.code(),
        Some(1),
        "stat exits 1 when files failed"
    );

    let failed = pkg.task_dirs("failed_tasks");
    assert_eq!(failed.len(), 1);
    let errors = std::fs::read_to_string(failed[0].join("error.list")).unwrap();
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(
        errors.starts_with(&format!("INVALID_KEY\t{long}\t")),
        "{errors}"
    );
    assert_eq!(
        std::fs::read_to_string(failed[0].join("STATUS")).unwrap(),
        "Failed"
    );
    assert!(!failed[0].join("DONE").exists());
    let audit = std::fs::read_to_string(failed[0].join("audit.log")).unwrap();
    assert!(audit.contains("FAILED\tINVALID_KEY"), "{audit}");

    let mut expected = pkg.source_files();
    expected.remove(&long);
    assert_eq!(sandbox.objects(), expected, "every other file arrived");

    // The user removes the cause, then retries: only the failed file is re-run.
    std::fs::remove_file(pkg.src().join(&long)).unwrap();
    let succeed_before = pkg.task_dirs("succeed_tasks");
    assert_eq!(pkg.ok(&["retry"]).trim(), "Retry has been submitted.");
    let stat = pkg.wait_for(&["Succeed"], LONG);
    assert!(stat.contains("FailedTasks:0\n"), "{stat}");
    let succeed_after = pkg.task_dirs("succeed_tasks");
    assert_eq!(succeed_after.len(), succeed_before.len() + 1);
    assert!(
        succeed_before.iter().all(|t| succeed_after.contains(t)),
        "succeeded tasks untouched"
    );
    let retried = succeed_after
        .iter()
        .find(|t| !succeed_before.contains(t))
        .unwrap();
    let task = std::fs::read_to_string(retried.join("TASK")).unwrap();
    assert!(task.contains("attempt=2\nfiles=1\n"), "{task}");
    let audit = std::fs::read_to_string(retried.join("audit.log")).unwrap();
    assert!(
        audit.contains("FAILED\tINVALID_KEY") && audit.contains("SKIPPED\tREMOVED"),
        "history kept: {audit}"
    );
    assert_eq!(
        pkg.ok(&["retry"]).trim(),
        "None failed tasks for job:local_test."
    );
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn second_start_is_refused_and_stop_then_start_finishes_the_job() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("taskObjectCountLimit", "100");
    pkg.set_sys("workerTaskThreadNum", "1");
    for i in 0..1500 {
        pkg.file(&format!("d{}/f{i:04}.bin", i % 3), &content(i, 1024));
    }
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let second = pkg.run(&["start"]);
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{}",
        text(&second)
    );

    // Let some tasks finish, then stop in the middle of the job.
    let started = std::time::Instant::now();
    while pkg.task_dirs("succeed_tasks").is_empty() {
        assert!(started.elapsed() < LONG, "no task finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopping = std::time::Instant::now();
    assert_eq!(pkg.ok(&["stop"]).trim(), "Stop import service completed.");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stop drains within 10 s"
    );
    let stat = pkg.stat();
    assert!(
        stat.contains("JobState:Stopped\n"),
        "stopped mid-job: {stat}"
    );
    assert!(pkg.ok(&["stop"]).contains("No import service is running"));

    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
    let files: usize = pkg
        .task_dirs("succeed_tasks")
        .iter()
        .map(|t| {
            std::fs::read_to_string(t.join("TASK"))
                .unwrap()
                .lines()
                .skip_while(|l| !l.starts_with("---"))
                .count()
                - 1
        })
        .sum();
    assert_eq!(files, 1500, "every file in exactly one task");
}

#[test]
fn clean_then_submit_runs_the_job_again() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("x/one.txt", b"one");
    pkg.ok(&["submit"]);
    let dup = pkg.run(&["submit"]);
    assert_eq!(dup.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("job:local_test already exists"),
        "{}",
        text(&dup)
    );
    pkg.ok(&["start"]);
    pkg.wait_for(&["Succeed"], LONG);

    let refused = pkg.run(&["clean"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "clean refused while the service runs"
    );
    assert!(pkg.path("master/jobs/local_test").exists());
    pkg.ok(&["stop"]);
    assert_eq!(pkg.ok(&["clean"]).trim(), "Clean job:local_test completed.");
    assert!(!pkg.path("master/jobs/local_test").exists());
    assert_eq!(pkg.stat().trim(), "no jobs is running or finished.");

    pkg.file("x/two.txt", b"two");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed"], LONG);
    assert_eq!(stat, expected_stat("Succeed", 1, 0));
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn config_errors_name_the_file_line_and_key_and_exit_2() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("taskObjectCountLimit", "many");
    let out = pkg.run(&["submit"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("local_job.cfg:")
            && err.contains("taskObjectCountLimit")
            && err.contains("many"),
        "{err}"
    );

    pkg.set("taskObjectCountLimit", "10");
    // Azure without its endpoint suffix says what to put there.
    pkg.set("srcType", "azure");
    let out = pkg.run(&["submit"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("srcDomain") && err.contains("core.windows.net"),
        "{}",
        text(&out)
    );

    // A remote source without its endpoint names the key to fill.
    pkg.set("srcType", "oss");
    let out = pkg.run(&["submit"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("local_job.cfg") && err.contains("srcDomain"),
        "{}",
        text(&out)
    );

    pkg.set("srcType", "local");
    pkg.set("srcPrefix", "/nonexistent/folder/");
    let out = pkg.run(&["submit"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("srcPrefix"),
        "{}",
        text(&out)
    );
    assert!(
        !pkg.path("master/jobqueue/local_test.toml").exists(),
        "nothing registered"
    );
}

#[test]
fn wrong_credentials_abort_the_job_with_a_reason() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("destSecretKey", "not-the-secret");
    pkg.file("a.txt", b"a");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Abort"], LONG);
    // A HEAD answer has no body, so no error code: the status says it.
    assert!(
        stat.contains(&format!(
            "AbortReason:HEAD bucket {BUCKET}: access denied (403); check \
             destAccessKey/destSecretKey and their permissions\n"
        )),
        "{stat}"
    );
    assert!(!stat.contains("not-the-secret"));
    assert!(sandbox.objects().is_empty());
}

#[cfg(unix)]
#[test]
fn kill_9_mid_job_shows_abort_and_start_finishes_with_each_file_once() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("taskObjectCountLimit", "50");
    pkg.set_sys("workerTaskThreadNum", "1");
    for i in 0..600 {
        pkg.file(&format!("k{}/f{i:04}.bin", i % 4), &content(i, 2048));
    }
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let started = std::time::Instant::now();
    while pkg.task_dirs("succeed_tasks").len() < 2 {
        assert!(started.elapsed() < LONG, "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_service(&pkg);
    let stat = pkg.stat();
    assert!(
        stat.contains("JobState:Abort\n"),
        "a crashed service shows Abort: {stat}"
    );

    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
    // Every file is in exactly one finished task, and recorded once in its audit.log.
    let mut seen = std::collections::BTreeMap::new();
    for task in pkg.task_dirs("succeed_tasks") {
        for line in std::fs::read_to_string(task.join("audit.log"))
            .unwrap()
            .lines()
        {
            if let Some(path) = line.split('\t').nth(4).filter(|_| !line.starts_with('#')) {
                *seen.entry(path.to_string()).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(seen.len(), 600);
    assert!(seen.values().all(|n| *n == 1), "a file recorded twice");
}

#[test]
fn the_service_log_can_be_json_lines_at_debug_and_never_holds_a_secret() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("a/one.txt", b"one");
    pkg.file("b/two.txt", b"two");
    pkg.ok(&["submit"]);
    let started = std::process::Command::new(BIN)
        .arg("start")
        .current_dir(pkg.dir.path())
        .env("OSSIMPORT_LOG_FORMAT", "json")
        .env("OSSIMPORT_LOG", "debug")
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", text(&started));
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    pkg.ok(&["stop"]);
    assert!(stat.contains("JobState:Succeed"), "{stat}");

    let log = std::fs::read_to_string(pkg.path("logs/ossimport2.log")).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let message = |e: &serde_json::Value| e["fields"]["message"].as_str().unwrap_or("").to_string();
    assert!(
        events
            .iter()
            .any(|e| message(e) == "import service started")
    );
    let finished: Vec<_> = events
        .iter()
        .filter(|e| message(e) == "task finished")
        .collect();
    assert_eq!(finished.len(), 2, "{log}");
    assert!(
        finished
            .iter()
            .all(|e| e["level"] == "INFO" && e["fields"]["ok"] == 1)
    );
    assert!(
        events.iter().any(|e| e["level"] == "DEBUG"),
        "OSSIMPORT_LOG=debug is taken"
    );
    for entry in std::fs::read_dir(pkg.path("logs")).unwrap().flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
        assert!(
            !text.contains(SK) && !text.contains(AK),
            "secret in {}",
            entry.path().display()
        );
    }
}
