//! Distributed mode on one box: a master (`console start` with queueUrl) and worker processes
//! (`ossimport worker`), each in its own folder with its own host name, through a real
//! nats-server with JetStream, into the sandbox S3 server. The bucket is read back whole; a
//! proxy in front of it counts what was sent twice.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::{Nats, Worker};
use common::proxy::{Faults, Proxy};
use common::*;

const LONG: Duration = Duration::from_secs(400);
/// Size of the small files of the kill test.
const FILE_KIB: usize = 32;

/// A master package for the queue at `nats`, sending to `dest`.
fn master(dest: &str, nats: &Nats) -> Package {
    let mut pkg = Package::with_dest(dest);
    pkg.set("multipartUploadThreshold", "16m")
        .set("multipartUploadPartSize", "8m")
        .set_sys("queueUrl", &nats.url)
        .set_sys("queueAckWaitSeconds", "4");
    pkg
}

fn workers(pkg: &Package, hosts: &[&str], sys: &[(&str, &str)]) -> Vec<Worker> {
    hosts.iter().map(|h| Worker::start(pkg, h, sys)).collect()
}

/// Waits for the job's end; it must be Succeed, and the bucket must equal the source.
fn succeeds_with_every_byte(pkg: &Package, sandbox: &Sandbox, workers: &[Worker]) -> String {
    let stat = pkg.wait_for(&["Succeed", "Failed", "Abort"], LONG);
    let logs: String = workers.iter().map(Worker::log).collect();
    assert!(
        stat.contains("JobState:Succeed"),
        "{stat}\nworkers' logs:\n{}",
        tail(&logs)
    );
    assert_same(&sandbox.objects(), &pkg.source_files());
    stat
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Uploads (whole objects and parts) the store received more than once, counted at the proxy.
fn sent_twice(proxy: &Proxy) -> (usize, usize) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in proxy.requests() {
        if r.method == "PUT" && r.status == 200 {
            let part = r.query_param("partNumber").unwrap_or_default();
            *seen.entry(format!("{} {part}", r.path)).or_default() += 1;
        }
    }
    let total: usize = seen.values().sum();
    (total, total - seen.len())
}

fn small_files(pkg: &Package, count: usize, folders: usize, size: usize) {
    for i in 0..count {
        pkg.file(
            &format!("d{}/f{i}.bin", i % folders),
            &content(i, size + i % 97),
        );
    }
}

fn big_files(pkg: &Package, count: usize) {
    for i in 0..count {
        pkg.file(
            &format!("big/large-{i}.bin"),
            &content(1000 + i, (24 << 20) + i),
        );
    }
}

/// A job of 1,500 small files and one multipart file, run by 4 workers (hosts `<name>0..3`)
/// capped at 1 MiB/s each, once its first task has finished.
fn under_way(dest: &str, nats: &Nats, name: &str) -> (Package, Vec<Worker>) {
    let mut pkg = master(dest, nats);
    pkg.set("taskObjectCountLimit", "100");
    small_files(&pkg, 1500, 5, 4 << 10);
    big_files(&pkg, 1);
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let cap = [("workerMaxThroughput(KB/s)", "1024")];
    let hosts: Vec<String> = (0..4).map(|i| format!("{name}{i}")).collect();
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let workers = workers(&pkg, &hosts, &cap);
    assert!(
        wait_until(LONG, || !pkg.task_dirs("succeed_tasks").is_empty()),
        "no task finished"
    );
    (pkg, workers)
}

#[test]
fn four_workers_move_5000_files_and_3_multipart_files() {
    // 128 KiB messages at most: the TASK of 2,000 files goes through the object store.
    let nats = Nats::start_with(Some(128 * 1024));
    let sandbox = Sandbox::start();
    let pkg = master(&sandbox.endpoint, &nats);
    small_files(&pkg, 3000, 12, 700);
    for i in 0..2000 {
        pkg.file(
            &format!("wide/{i:05}-{}.txt", "x".repeat(40)),
            &content(i, 64),
        );
    }
    big_files(&pkg, 3);
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let hosts = ["host-a", "host-b", "host-c", "host-d"];
    let mut workers = workers(&pkg, &hosts, &[]);
    let stat = succeeds_with_every_byte(&pkg, &sandbox, &workers);
    assert!(stat.contains("FailedTasks:0"), "{stat}");
    // Every worker ran tasks, and each reported its own host: the master kept their tasks in
    // dispatched/<host>/ while they ran.
    for w in &workers {
        let log = w.log();
        assert!(
            log.contains("task started"),
            "{} ran nothing:\n{}",
            w.host,
            tail(&log)
        );
        let folder = pkg.path("master/jobs/local_test/dispatched").join(&w.host);
        assert!(folder.is_dir(), "no {}", folder.display());
    }
    // The wide folder's TASK is over the payload limit: it travelled in the object store,
    // the stream OBJ_OSSIMPORT_TASKFILES on the server's disk.
    let objects = nats
        .store()
        .join("jetstream/$G/streams/OBJ_OSSIMPORT_TASKFILES");
    assert!(objects.is_dir(), "no object store at {}", objects.display());
    // Keys never travel nor get logged.
    let logs: String = workers.iter().map(Worker::log).collect();
    assert!(
        !logs.contains(SK) && !logs.contains(AK),
        "a key in a worker's log"
    );
    // `stop` in a worker's folder stops that worker, as it stops a service.
    let out = workers[0].run(&["stop"]);
    let said = text(&out);
    assert!(said.contains("Stop import service completed."), "{said}");
    assert_eq!(workers[0].exit_code(Duration::from_secs(30)), Some(0));
}

#[test]
fn a_worker_killed_mid_task_5_times_loses_nothing_and_another_finishes_its_tasks() {
    let nats = Nats::start();
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = master(&proxy.endpoint, &nats);
    pkg.set("taskObjectCountLimit", "100");
    small_files(&pkg, 800, 8, FILE_KIB << 10);
    big_files(&pkg, 2);
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    // Each worker host is capped at 1 MiB/s, so the job is mid-way at every kill.
    let cap = [("workerMaxThroughput(KB/s)", "1024")];
    let mut workers = workers(&pkg, &["w0", "w1", "w2", "w3"], &cap);
    let mut killed = Vec::new();
    // In flight on a worker: workerTaskThreadNum files being sent (a large file with its
    // uploadThreadNumPerLargeFile = 3 parts at once), and the uploads whose audit waits for
    // the task's next listing (gathered for 1 s; at the 1 MiB/s cap and a listing's time,
    // at most 2 s of uploads).
    let threads: usize = pkg.sys["workerTaskThreadNum"].parse().unwrap();
    let in_flight = threads + 2 * 2 + 2 * 1024 / FILE_KIB;
    for k in 0..5 {
        std::thread::sleep(Duration::from_secs(3));
        let victim = (0..workers.len())
            .find(|&i| workers[i].log().contains("task started"))
            .expect("some worker runs a task");
        let mut dead = workers.remove(victim);
        dead.kill();
        assert!(
            pkg.stat().contains("JobState:Running"),
            "the job ended before kill {k}: {}",
            pkg.stat()
        );
        killed.push(dead);
        workers.push(Worker::start(&pkg, &format!("w{}", 4 + k), &cap));
    }
    let stat = succeeds_with_every_byte(&pkg, &sandbox, &workers);
    assert!(stat.contains("FailedTasks:0"), "{stat}");
    let (total, twice) = sent_twice(&proxy);
    println!("kill -9 of a worker 5 times: {total} uploads, {twice} sent twice");
    // Only the files (or parts) in flight at each kill may be sent again.
    let bound = 5 * in_flight;
    assert!(twice <= bound, "{twice} uploads sent twice (bound {bound})");
    // A task of a killed worker was taken over with its results kept.
    let took_over = workers.iter().chain(&killed).any(|w| {
        w.log()
            .lines()
            .any(|l| l.contains("task started") && !l.contains("already_done=0"))
    });
    assert!(took_over, "no worker took over a started task");
}

#[test]
fn kill_9_of_the_master_then_start_finishes_the_job() {
    let nats = Nats::start();
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let (pkg, workers) = under_way(&proxy.endpoint, &nats, "m");
    kill_service(&pkg);
    // The workers go on and wait for the master's answers meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    pkg.ok(&["start"]);
    let stat = succeeds_with_every_byte(&pkg, &sandbox, &workers);
    assert!(stat.contains("FailedTasks:0"), "{stat}");
    let (total, twice) = sent_twice(&proxy);
    println!("kill -9 of the master: {total} uploads, {twice} sent twice");
    // The workers' results wait in the queue for the master: nothing is redone but, at
    // most, what a task's End overtook.
    let threads: usize = pkg.sys["workerTaskThreadNum"].parse().unwrap();
    assert!(
        twice <= threads,
        "{twice} uploads sent twice (bound {threads})"
    );
}

#[test]
fn the_nats_server_restarted_mid_job_and_the_job_finishes() {
    let mut nats = Nats::start();
    let sandbox = Sandbox::start();
    let (pkg, workers) = under_way(&sandbox.endpoint, &nats, "n");
    nats.kill();
    std::thread::sleep(Duration::from_secs(5));
    assert!(pkg.stat().contains("JobState:Running"), "{}", pkg.stat());
    nats.restart();
    let stat = succeeds_with_every_byte(&pkg, &sandbox, &workers);
    assert!(stat.contains("FailedTasks:0"), "{stat}");
}

#[test]
fn a_worker_that_cannot_open_the_job_is_shown_by_stat_and_the_others_finish_it() {
    let nats = Nats::start();
    let sandbox = Sandbox::start();
    let pkg = master(&sandbox.endpoint, &nats);
    small_files(&pkg, 300, 3, 8 << 10);
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    // This host has the wrong secret key in its conf/local_job.cfg.
    let mut bad = Worker::prepare(&pkg, "bad-host", &[]);
    let cfg = bad.path().join("conf/local_job.cfg");
    let wrong = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(SK, "not-the-secret-key");
    std::fs::write(&cfg, wrong).unwrap();
    bad.spawn();
    let mut stat = String::new();
    let shown = wait_until(Duration::from_secs(60), || {
        stat = pkg.stat();
        stat.contains("Waiting:worker bad-host: cannot run tasks of job local_test")
    });
    assert!(shown, "{stat}\n{}", tail(&bad.log()));
    assert!(stat.contains("check destAccessKey/destSecretKey"), "{stat}");
    assert!(
        !stat.contains("not-the-secret-key") && !stat.contains(SK),
        "{stat}"
    );
    let good = workers(&pkg, &["good-host"], &[]);
    let stat = succeeds_with_every_byte(&pkg, &sandbox, &good);
    assert!(stat.contains("FailedTasks:0"), "{stat}");
    assert!(!bad.log().contains("task started"), "{}", tail(&bad.log()));
}

#[test]
fn a_worker_without_a_queue_url_is_refused_with_the_key_to_set() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    let out = pkg.run(&["worker"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("queueUrl is empty"), "{said}");
    assert!(said.contains("sys.properties"), "{said}");
    let mut pkg = pkg;
    pkg.set_sys("queueUrl", "http://10.0.0.5");
    let out = pkg.run(&["worker"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("queueUrl"), "{}", text(&out));
}
