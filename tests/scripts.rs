//! The user-facing scripts (console.sh, import.sh) driving the built binary, as a user runs
//! them from an unpacked package with the binary at bin/ossimport.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Puts the scripts and the binary into a package folder.
fn install(dir: &Path) {
    for script in ["console.sh", "import.sh"] {
        std::fs::copy(Path::new(REPO).join(script), dir.join(script)).unwrap();
    }
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(BIN, dir.join("bin/ossimport")).unwrap();
}

fn bash(dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("bash")
        .args(args)
        .current_dir(dir)
        .env("OSSIMPORT_STAT_INTERVAL", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn import_sh_runs_the_whole_migration_and_resumes_on_a_second_run() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    install(pkg.dir.path());
    pkg.file("a/one.txt", b"one");
    pkg.file("b/two words.txt", b"two");
    let out = bash(pkg.dir.path(), &["import.sh"], "");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("submit job:local_test success!"), "{all}");
    assert!(all.contains("Start import service completed."), "{all}");
    assert!(all.contains("JobState:Succeed"), "{all}");
    assert!(all.contains("Import to oss completed."), "{all}");
    assert!(
        all.contains("Stop import service completed."),
        "end of input stops the service: {all}"
    );
    let stat_log = std::fs::read_to_string(pkg.path("logs/job_stat.log")).unwrap();
    assert!(stat_log.contains("JobState:Succeed"), "{stat_log}");
    assert_eq!(sandbox.objects(), pkg.source_files());

    // A second run finds the job: "n" resumes it (already complete), nothing is redone.
    let out = bash(pkg.dir.path(), &["import.sh"], "n\n");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("Clean the previous job, Yes or No:"), "{all}");
    assert!(all.contains("Import to oss completed."), "{all}");

    // "y" cleans and imports again, picking up a new file.
    pkg.file("c/three.txt", b"three");
    let out = bash(pkg.dir.path(), &["import.sh"], "y\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sandbox.objects(), pkg.source_files());
}

#[test]
fn console_sh_takes_the_original_words_in_any_case() {
    let sandbox = Sandbox::start();
    let pkg = Package::new(&sandbox);
    install(pkg.dir.path());
    let out = bash(pkg.dir.path(), &["console.sh", "STAT"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no jobs is running or finished."
    );
    let out = bash(pkg.dir.path(), &["console.sh", "Version"], "");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ossimport-rs "),
        "{}",
        text(&out)
    );
    let out = bash(pkg.dir.path(), &["console.sh", "frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("Usage"), "{}", text(&out));
}

/// The README's quick start: the shipped conf/ and sample/ migrate into the embedded
/// sandbox on 127.0.0.1:9800 with one command.
#[test]
fn quick_start_migrates_the_bundled_sample_with_the_shipped_config() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path());
    for sub in ["conf", "sample"] {
        for e in walkdir::WalkDir::new(Path::new(REPO).join(sub)) {
            let e = e.unwrap();
            let to = dir.path().join(e.path().strip_prefix(REPO).unwrap());
            if e.file_type().is_dir() {
                std::fs::create_dir_all(&to).unwrap();
            } else {
                std::fs::copy(e.path(), &to).unwrap();
            }
        }
    }
    // "n" to "Stop the import service": the sandbox stays up so the bucket can be read back.
    let out = bash(dir.path(), &["import.sh"], "n\n");
    let all = text(&out);
    let stop = || {
        bash(dir.path(), &["console.sh", "stop"], "");
        bash(dir.path(), &["console.sh", "sandbox", "--stop"], "");
    };
    if out.status.code() != Some(0) {
        stop();
        panic!("{all}");
    }
    assert!(
        all.contains("Sandbox endpoint started at http://127.0.0.1:9800"),
        "{all}"
    );
    assert!(all.contains("Import to oss completed."), "{all}");
    let objects = Sandbox::read_bucket(
        "http://127.0.0.1:9800",
        "sample-bucket",
        "sandbox-access-key",
        "sandbox-secret-key",
    );
    stop();
    let sample = dir.path().join("sample");
    let mut expected = std::collections::BTreeMap::new();
    for e in walkdir::WalkDir::new(&sample) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(&sample)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            expected.insert(rel, std::fs::read(e.path()).unwrap());
        }
    }
    assert!(expected.len() >= 5, "{} sample files", expected.len());
    assert_eq!(objects, expected);
}
