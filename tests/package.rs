//! The release package as a user gets it: `cargo xtask dist` builds it, and it is unpacked
//! into a temp folder and run from another folder with no Rust toolchain on PATH. Its own
//! test binary: the shipped config serves the sandbox on 127.0.0.1:9800, as scripts.rs's
//! quick start does, and test binaries run one at a time. Unix only: Windows runs import.bat.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// `cargo xtask dist`, as the README says; returns the tarball it names on its last line.
fn build_package() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["xtask", "dist"])
        .current_dir(REPO)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "cargo xtask dist failed: {said}");
    PathBuf::from(said.lines().last().unwrap_or_default())
}

/// A folder of links to every program on PATH but Rust's, to be the whole PATH.
fn path_without_rust(dir: &Path) -> PathBuf {
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let rust = |name: &str| {
        ["cargo", "rustc", "rustup", "rustdoc", "rust-"]
            .iter()
            .any(|r| name.starts_with(r))
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    for folder in std::env::split_paths(&path) {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let to = tools.join(&name);
            if !rust(&name.to_string_lossy()) && !to.exists() {
                std::os::unix::fs::symlink(entry.path(), to).unwrap();
            }
        }
    }
    tools
}

/// `bash <script> args…` from `cwd`, with `path` as the whole PATH.
fn bash(cwd: &Path, path: &Path, script: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new("/bin/bash");
    cmd.arg(script)
        .args(args)
        .current_dir(cwd)
        .env("PATH", path)
        .env("OSSIMPORT_STAT_INTERVAL", "1");
    run_with_input(&mut cmd, stdin)
}

#[test]
fn the_unpacked_package_migrates_its_sample_with_no_rust_toolchain_on_path() {
    let tarball = build_package();
    let expected_name = format!(
        "ossimport-{}-{}-{}.tar.gz",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    assert_eq!(
        tarball.file_name().unwrap().to_string_lossy(),
        expected_name
    );
    assert!(
        tarball.parent().unwrap().ends_with("dist"),
        "{}",
        tarball.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(unpacked.success());
    let top = dir.path().join(expected_name.trim_end_matches(".tar.gz"));
    let mut layout: Vec<String> = files_under(&top)
        .into_keys()
        .filter(|p| !p.starts_with("sample/"))
        .collect();
    layout.sort();
    assert_eq!(
        layout,
        [
            "LICENSE",
            "README.md",
            "bin/ossimport",
            "conf/local_job.cfg",
            "conf/sys.properties",
            "console.bat",
            "console.sh",
            "import.bat",
            "import.sh",
            "worker.sh",
        ]
    );
    assert_eq!(
        files_under(&top.join("sample")),
        files_under(&Path::new(REPO).join("sample"))
    );
    assert_eq!(
        std::fs::read(top.join("conf/local_job.cfg")).unwrap(),
        std::fs::read(Path::new(REPO).join("conf/local_job.cfg")).unwrap(),
        "the shipped config, unedited"
    );
    #[cfg(target_os = "linux")]
    {
        let sections = Command::new("readelf")
            .arg("-S")
            .arg(top.join("bin/ossimport"))
            .output()
            .unwrap();
        let sections = String::from_utf8_lossy(&sections.stdout);
        assert!(sections.contains(".text"), "{sections}");
        assert!(
            [".symtab", ".debug_info", ".debug_line"]
                .iter()
                .all(|s| !sections.contains(s)),
            "bin/ossimport is not stripped: {sections}"
        );
    }

    let path = path_without_rust(dir.path());
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let which = bash(
        &elsewhere,
        &path,
        Path::new("-c"),
        &["command -v cargo || command -v rustc || echo none"],
        "",
    );
    assert_eq!(String::from_utf8_lossy(&which.stdout).trim(), "none");

    // "n" to "Stop the import service": the sandbox stays up so the bucket can be read back.
    let out = bash(&elsewhere, &path, &top.join("import.sh"), &[], "n\n");
    let console = |args: &[&str]| bash(&elsewhere, &path, &top.join("console.sh"), args, "");
    let stop = || {
        console(&["stop"]);
        console(&["sandbox", "--stop"]);
    };
    if out.status.code() != Some(0) {
        stop();
        panic!("{}", text(&out));
    }
    assert!(
        text(&out).contains("Import to oss completed."),
        "{}",
        text(&out)
    );
    let stat = console(&["stat"]);
    let objects = quick_start_bucket();
    stop();
    assert_eq!(stat.status.code(), Some(0), "{}", text(&stat));
    assert!(
        String::from_utf8_lossy(&stat.stdout).contains("JobState:Succeed"),
        "{}",
        text(&stat)
    );
    assert_eq!(objects, files_under(&top.join("sample")));
    assert!(
        top.join("logs/ossimport2.log").is_file(),
        "logs in the package"
    );
}
