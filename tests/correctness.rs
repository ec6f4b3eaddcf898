//! The correctness pass (issue 9), end to end against the sandbox: a retried unlistable folder is
//! listed again, a listing error survives a kill right after the checkpoint passed it, `stat`
//! never says Succeed before the scan is finished, `stop` ends a deep scan quickly, and
//! incremental rounds never overlap. Crash and race windows are hit with the service's test
//! hooks (src/hooks.rs), not with timing.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::runner::{HookDir, Runner, chmod};
use common::*;

const LONG: Duration = Duration::from_secs(240);

#[cfg(unix)]
#[test]
fn retry_lists_a_folder_again_that_could_not_be_listed_and_uploads_every_file_in_it() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("ok.txt", b"fine");
    pkg.file("locked/a.txt", &content(1, 3000));
    pkg.file("locked/sub/b.txt", &content(2, 5000));
    let run = Runner::new(&pkg).unprivileged();
    chmod(&pkg.src().join("locked"), 0o000);
    run.ok(&["submit"]);
    run.ok(&["start"]);
    let stat = run.wait_for(&["Failed", "Succeed"]);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let errors = error_lists(&pkg);
    assert!(
        errors.contains("READ_ERROR\tlocked\tcannot list it"),
        "{errors}"
    );

    // Retried before the cause is fixed: it fails again, the job is not aborted.
    run.ok(&["retry"]);
    let stat = run.wait_for(&["Failed", "Succeed", "Abort"]);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    assert!(
        error_lists(&pkg).contains("READ_ERROR\tlocked\tcannot list it"),
        "{}",
        error_lists(&pkg)
    );

    chmod(&pkg.src().join("locked"), 0o777);
    run.ok(&["retry"]);
    let stat = run.wait_for(&["Succeed", "Failed"]);
    run.ok(&["stop"]);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(
        sandbox.objects(),
        pkg.source_files(),
        "every file of the folder is uploaded, and no object stands for the folder"
    );
    let records = audit_records(&pkg);
    let last = records["locked"].last().unwrap();
    assert_eq!(last.1, "RELISTED", "{records:?}");
}

#[cfg(unix)]
#[test]
fn a_listing_error_survives_a_kill_right_after_the_checkpoint_passed_it() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    // One unit `tree:d` whose walk meets the unreadable folder first, then five files, split
    // two per task: the first checkpoint moves past the folder.
    pkg.set("maxMultiThreadScanDepth", "1");
    pkg.set("taskObjectCountLimit", "2");
    pkg.file("d/a_locked/x.txt", b"never listed");
    for i in 1..=5 {
        pkg.file(&format!("d/b{i}.txt"), &content(i, 100));
    }
    let hooks = HookDir::new();
    let run = Runner::new(&pkg)
        .unprivileged()
        .hooks(hooks.path(), "master-task-created=kill");
    chmod(&pkg.src().join("d/a_locked"), 0o000);
    run.ok(&["submit"]);
    run.ok(&["start"]);
    let stat = run.wait_for(&["Abort"]);
    assert!(stat.contains("JobState:Abort"), "{stat}");
    let cpts = pkg.path("master/jobs/local_test/checkpoints/0");
    let saved: Vec<String> = std::fs::read_dir(&cpts)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cpt"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        saved.iter().any(|c| c.contains("last=d/b2.txt")),
        "killed right after the first checkpoint: {saved:?}"
    );

    let run = Runner::new(&pkg).unprivileged();
    // Opening up the package for `nobody` opened the folder too; it stays unreadable.
    chmod(&pkg.src().join("d/a_locked"), 0o000);
    run.ok(&["start"]);
    let stat = run.wait_for(&["Failed", "Succeed"]);
    run.ok(&["stop"]);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let errors = error_lists(&pkg);
    assert!(
        errors.contains("READ_ERROR\td/a_locked\tcannot list it"),
        "{errors}"
    );
    assert_eq!(errors.lines().count(), 1, "{errors}");
    let objects = sandbox.objects();
    assert_eq!(objects.len(), 5, "{:?}", objects.keys());
}

#[test]
fn stat_never_says_succeed_while_the_scan_is_unfinished() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("only.txt", b"one task");
    let hooks = HookDir::new();
    // The master waits before it writes its only task; `stat` waits between its two reads.
    let run = Runner::new(&pkg).hooks(
        hooks.path(),
        "master-before-task=pause,stat-between-reads=pause",
    );
    run.ok(&["submit"]);
    run.ok(&["start"]);
    hooks.wait_reached("master-before-task");
    let stat = run
        .command(&["stat"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    hooks.wait_reached("stat-between-reads");
    // The task is made and the scan finished while `stat` is between its reads.
    hooks.release("master-before-task");
    let marker = pkg.path("master/jobs/local_test/checkpoints/0/SCAN_FINISHED");
    assert!(wait_path(&marker, LONG));
    hooks.release("stat-between-reads");
    let out = stat.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen.contains("JobState:Running") && seen.contains("ScanFinished:false"),
        "a stat that began before the task existed must not call the job done: {seen}"
    );
    let stat = run.wait_for(&["Succeed", "Failed"]);
    run.ok(&["stop"]);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn stop_ends_a_service_deep_in_a_scan_of_200000_entries_within_10_seconds() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    // On tmpfs where there is one, so creating the tree is quick.
    let shm = Path::new("/dev/shm");
    let tree = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    for d in 0..200 {
        let dir = tree.path().join(format!("d{d:03}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..1000 {
            std::fs::File::create(dir.join(format!("f{f:04}"))).unwrap();
        }
    }
    pkg.set("srcPrefix", &format!("{}/", tree.path().display()));
    // Nothing is newer than this: every entry is looked at and none is sent, a pure scan.
    pkg.set("importSince", "4102444800");
    pkg.set("scanThreadCount", "1");
    let hooks = HookDir::new();
    // The pause only tells whether the scan got to its end before `stop` came.
    let run = Runner::new(&pkg).hooks(hooks.path(), "master-before-scan-finished=pause");
    run.ok(&["submit"]);
    run.ok(&["start"]);
    let started_marker = pkg.path("master/jobs/local_test/checkpoints/0/STARTED");
    assert!(wait_path(&started_marker, LONG));
    let asked = Instant::now();
    run.ok(&["stop"]);
    let took = asked.elapsed();
    assert!(
        !run.stat().contains("JobState:Running"),
        "the service is gone after stop"
    );
    assert!(
        !hooks
            .path()
            .join("master-before-scan-finished.reached")
            .exists(),
        "stopped in the middle of the scan, not after it"
    );
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
}

#[test]
fn an_incremental_round_starts_only_when_the_previous_rounds_tasks_are_finished() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("isIncremental", "true");
    pkg.set("incrementalModeInterval", "1");
    multipart_config(&mut pkg);
    // About 6 s at the cap, against a 1 s interval.
    pkg.set_sys("workerMaxThroughput(KB/s)", "4096");
    pkg.file("big.bin", &content(7, 24 * MIB));
    // Older than round 0's start, so round 1 has nothing to take again.
    let past = std::time::SystemTime::now() - Duration::from_secs(600);
    std::fs::File::options()
        .write(true)
        .open(pkg.src().join("big.bin"))
        .unwrap()
        .set_modified(past)
        .unwrap();
    let run = Runner::new(&pkg).env("OSSIMPORT_MIN_INCREMENTAL_INTERVAL", "1");
    run.ok(&["submit"]);
    run.ok(&["start"]);
    let round1 = pkg.path("master/jobs/local_test/checkpoints/1");
    let started = Instant::now();
    while !round1.exists() {
        assert!(started.elapsed() < LONG, "round 1 never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dispatched: Vec<_> = pkg
        .task_dirs("dispatched")
        .iter()
        .flat_map(|host| std::fs::read_dir(host).unwrap().flatten().map(|e| e.path()))
        .collect();
    let pending = pkg.task_dirs("pending_tasks");
    let succeed = pkg.task_dirs("succeed_tasks");
    run.ok(&["stop"]);
    assert!(
        dispatched.is_empty() && pending.is_empty() && succeed.len() == 1,
        "round 1 began while round 0 ran: dispatched {dispatched:?}, pending {pending:?}"
    );
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn a_large_file_shows_its_finished_parts_in_stat_before_it_is_done() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    multipart_config(&mut pkg);
    // Five 5 MiB parts at about 4 MiB/s, one at a time: progress has seconds to show.
    pkg.set("uploadThreadNumPerLargeFile", "1");
    pkg.set_sys("workerMaxThroughput(KB/s)", "4096");
    let size = 25 * MIB;
    pkg.file("big.bin", &content(3, size));
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let started = Instant::now();
    let partial = loop {
        let stat = pkg.stat();
        assert!(
            !stat.contains("JobState:Succeed"),
            "the file finished before any part showed: {stat}"
        );
        // `<id>:<done bytes>/<total bytes> <done files>/<total files>`
        let progress = stat.lines().find_map(|l| {
            let (_, numbers) = l.split_once(':')?;
            let (bytes, files) = numbers.split_once(' ')?;
            let (done, total) = bytes.split_once('/')?;
            (total == size.to_string()).then(|| (done.parse::<u64>().ok(), files.to_string()))
        });
        if let Some((Some(done), files)) = progress
            && done > 0
        {
            break (done, files);
        }
        assert!(started.elapsed() < LONG, "no progress shown: {stat}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(partial.1, "0/1", "the file itself is not done yet");
    assert_eq!(
        partial.0 % (5 * MIB as u64),
        0,
        "whole parts: {}",
        partial.0
    );
    let stat = pkg.wait_for(&["Succeed", "Failed"], LONG);
    pkg.ok(&["stop"]);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[cfg(unix)]
#[test]
fn retry_of_files_that_could_not_be_looked_at_fails_them_again_or_sends_them_once_fixed() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    pkg.file("ok.txt", b"fine");
    pkg.file("d/a.txt", &content(4, 700));
    pkg.file("d/b.txt", &content(5, 900));
    let run = Runner::new(&pkg).unprivileged();
    // Readable but not searchable: its names list, its files cannot be looked at.
    chmod(&pkg.src().join("d"), 0o644);
    run.ok(&["submit"]);
    run.ok(&["start"]);
    let stat = run.wait_for(&["Failed", "Succeed", "Abort"]);
    assert!(stat.contains("JobState:Failed"), "{stat}");
    let errors = error_lists(&pkg);
    assert!(
        errors.contains("READ_ERROR\td/a.txt\tcannot list it"),
        "{errors}"
    );

    run.ok(&["retry"]);
    let stat = run.wait_for(&["Failed", "Succeed", "Abort"]);
    assert!(stat.contains("JobState:Failed"), "not an abort: {stat}");
    let errors = error_lists(&pkg);
    assert!(
        errors.contains("READ_ERROR\td/a.txt\tcannot list it again"),
        "{errors}"
    );

    chmod(&pkg.src().join("d"), 0o755);
    run.ok(&["retry"]);
    let stat = run.wait_for(&["Failed", "Succeed", "Abort"]);
    run.ok(&["stop"]);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn a_kill_right_after_a_task_is_written_then_a_changed_source_splits_no_file_twice() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("maxMultiThreadScanDepth", "1");
    pkg.set("taskObjectCountLimit", "2");
    for i in 1..=5 {
        pkg.file(&format!("d/b{i}.txt"), &content(i, 100));
    }
    let hooks = HookDir::new();
    let run = Runner::new(&pkg).hooks(hooks.path(), "master-task-created=kill");
    run.ok(&["submit"]);
    run.ok(&["start"]);
    run.wait_for(&["Abort"]);
    // Inside the first task's range (b1, b2), while the service is down.
    pkg.file("d/b1a.txt", b"added behind the scan");

    let run = Runner::new(&pkg);
    run.ok(&["start"]);
    let stat = run.wait_for(&["Failed", "Succeed"]);
    run.ok(&["stop"]);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    let records = audit_records(&pkg);
    for (path, tries) in &records {
        assert_eq!(
            tries.len(),
            1,
            "{path} is in more than one task: {records:?}"
        );
    }
    let mut want = pkg.source_files();
    // Behind the scan position when it appeared: the next incremental round takes it.
    want.remove("d/b1a.txt");
    assert_eq!(sandbox.objects(), want);
}
