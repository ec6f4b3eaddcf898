//! The master on a real folder: splitting by count, the order of its hand-offs, and resuming
//! after a crash between a task and its checkpoint without making any task twice.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpoint, unit_hash};
use super::{Master, Split};
use crate::config::JobConfig;
use crate::source::ScanUnit;
use crate::task::TaskSpec;
use crate::workdir::{TaskState, WorkDir, list_names};

struct Setup {
    _src: tempfile::TempDir,
    _work: tempfile::TempDir,
    job: Arc<JobConfig>,
    workdir: WorkDir,
}

fn setup(files: usize, per_task: u64) -> Setup {
    let src = tempfile::tempdir().unwrap();
    for i in 0..files {
        std::fs::write(src.path().join(format!("f{i}.txt")), vec![b'x'; i + 1]).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let job = Arc::new(JobConfig {
        job_name: "unit_job".into(),
        src_prefix: format!("{}/", src.path().display()),
        task_object_count_limit: per_task,
        max_multi_thread_scan_depth: 1,
        ..JobConfig::default()
    });
    let workdir = WorkDir::new(work.path());
    workdir.create_job_layout(&job.job_name).unwrap();
    Setup {
        _src: src,
        _work: work,
        job,
        workdir,
    }
}

/// Runs the master to the end of round 0; returns what it sent the dispatcher.
fn run_master(s: &Setup) -> Vec<Split> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel(64);
        let master = Arc::new(Master {
            job: s.job.clone(),
            source: crate::source::open_source(&s.job).unwrap().into(),
            workdir: s.workdir.clone(),
            cancel: CancellationToken::new(),
            to_dispatcher: tx,
        });
        let (_rounds_tx, rounds_rx) = watch::channel(None);
        master.run(rounds_rx).await.unwrap();
        let mut sent = Vec::new();
        while let Ok(split) = rx.try_recv() {
            sent.push(split);
        }
        sent
    })
}

fn pending_specs(s: &Setup) -> Vec<TaskSpec> {
    let dir = s.workdir.state_dir(&s.job.job_name, TaskState::Pending);
    let mut specs: Vec<TaskSpec> = list_names(&dir)
        .unwrap()
        .iter()
        .map(|n| TaskSpec::read(&dir.join(n).join("TASK")).unwrap())
        .collect();
    specs.sort_by(|a, b| a.files[0].path.cmp(&b.files[0].path));
    specs
}

fn names(spec: &TaskSpec) -> Vec<String> {
    spec.files.iter().map(|f| f.path.to_string()).collect()
}

#[test]
fn splits_by_count_and_sends_each_task_after_it_is_persisted_then_the_round() {
    let s = setup(7, 3);
    let sent = run_master(&s);
    let specs = pending_specs(&s);
    let sizes: Vec<usize> = specs.iter().map(|t| t.files.len()).collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(names(&specs[0]), vec!["f0.txt", "f1.txt", "f2.txt"]);
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert_eq!(sent[0], Split::RoundStarted(0));
    assert_eq!(sent[4], Split::RoundScanned(0));
    for split in &sent[1..4] {
        let Split::Task(id) = split else {
            panic!("{sent:?}")
        };
        let dir = s
            .workdir
            .task_dir(&s.job.job_name, TaskState::Pending, &id.to_string());
        assert!(dir.join("TASK").exists(), "sent before it was persisted");
    }
    let marker = s.workdir.scan_finished_file(&s.job.job_name, 0);
    let summary = std::fs::read_to_string(marker).unwrap();
    assert_eq!(summary, "files=7\nbytes=28\ntasks=3\n");
}

/// Rewinds the job as if the service died in `persist` of the second task: its checkpoint
/// written ahead (unconfirmed), the task itself written or not (`task_written`), nothing after.
fn crash_at_second_task(s: &Setup, before: &[TaskSpec], task_written: bool) {
    let job = &s.job.job_name;
    let unit = ScanUnit::tree(crate::relpath::RelPath(Vec::new()), false);
    let cpt_path = s.workdir.checkpoint_file(job, 0, &unit_hash(&unit.id));
    let mut cpt = Checkpoint {
        unit: unit.id.clone(),
        ..Checkpoint::default()
    };
    cpt.advance(before[0].content_hash(), &before[0].files, 3);
    cpt.advance(before[1].content_hash(), &before[1].files, 6);
    cpt.save(&cpt_path).unwrap();
    std::fs::remove_file(s.workdir.scan_finished_file(job, 0)).unwrap();
    let pending = s.workdir.state_dir(job, TaskState::Pending);
    let gone = if task_written {
        &before[2..]
    } else {
        &before[1..]
    };
    for spec in gone {
        let name = list_names(&pending)
            .unwrap()
            .into_iter()
            .find(|n| n.starts_with(&spec.content_hash()))
            .unwrap();
        std::fs::remove_dir_all(pending.join(name)).unwrap();
    }
}

#[test]
fn resumes_after_a_crash_before_the_task_its_checkpoint_was_written_for() {
    let s = setup(7, 3);
    run_master(&s);
    let before = pending_specs(&s);
    crash_at_second_task(&s, &before, false);
    run_master(&s);
    assert_eq!(
        pending_specs(&s),
        before,
        "the second task is made again, once"
    );
    let summary =
        std::fs::read_to_string(s.workdir.scan_finished_file(&s.job.job_name, 0)).unwrap();
    assert_eq!(summary, "files=7\nbytes=28\ntasks=3\n");
}

#[test]
fn resumes_after_its_task_without_splitting_a_range_twice_when_the_source_changed() {
    let s = setup(7, 3);
    run_master(&s);
    let before = pending_specs(&s);
    crash_at_second_task(&s, &before, true);
    // A file appears inside the second task's range while the service is down: re-listing
    // that range would make a task of other content, and f4, f5 would be in two tasks.
    std::fs::write(s._src.path().join("f4a.txt"), b"new").unwrap();
    run_master(&s);
    assert_eq!(pending_specs(&s), before, "no path in two tasks");
}
