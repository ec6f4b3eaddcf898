//! The user-facing scripts (console.sh, import.sh) driving the built binary, as a user runs
//! them from an unpacked package with the binary at bin/ossimport.

mod common;

use std::path::Path;
use std::process::Command;

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
    let mut cmd = Command::new("bash");
    cmd.args(args)
        .current_dir(dir)
        .env("OSSIMPORT_STAT_INTERVAL", "1");
    run_with_input(&mut cmd, stdin)
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
    let objects = quick_start_bucket();
    stop();
    let expected = files_under(&dir.path().join("sample"));
    assert!(expected.len() >= 5, "{} sample files", expected.len());
    assert_eq!(objects, expected);
}

/// A source checkout for console.sh: the script, a Cargo.toml, a binary built earlier at
/// `$CARGO_TARGET_DIR/release/ossimport` that says "old binary", and a `tools/` folder to be
/// the whole PATH: the few programs console.sh needs, plus with `cargo` a fake cargo that
/// logs its arguments to cargo.log and, when FAKE_CARGO_COMPILES is set, "compiles" a binary
/// that says "new binary" (a real release build takes many minutes). Without a fake cargo
/// the PATH holds no cargo at all.
struct Checkout {
    dir: tempfile::TempDir,
}

impl Checkout {
    fn new(cargo: bool) -> Checkout {
        let checkout = Checkout {
            dir: tempfile::tempdir().unwrap(),
        };
        let root = checkout.dir.path();
        std::fs::copy(Path::new(REPO).join("console.sh"), root.join("console.sh")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[package]\nname = \"ossimport\"\n").unwrap();
        checkout.script("tgt/release/ossimport", "echo \"old binary $*\"");
        let tools = root.join("tools");
        std::fs::create_dir_all(&tools).unwrap();
        for tool in ["bash", "dirname", "tr", "cat", "mkdir", "chmod"] {
            let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{tool} is not on PATH"));
            std::os::unix::fs::symlink(found, tools.join(tool)).unwrap();
        }
        if cargo {
            checkout.script(
                "tools/cargo",
                r#"echo "$*" >> "$FAKE_CARGO_LOG"
if [ -n "${FAKE_CARGO_FAILS:-}" ]; then
    echo "error[E0425]: cannot find value in this scope" >&2
    exit 101
fi
if [ -n "${FAKE_CARGO_COMPILES:-}" ]; then
    echo "   Compiling ossimport v0.1.0 (/checkout)" >&2
    printf '#!/bin/sh\necho "new binary $*"\n' > "$CARGO_TARGET_DIR/release/ossimport"
fi
echo "    Finished \`release\` profile [optimized] target(s) in 0.02s" >&2"#,
            );
        }
        checkout
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes an executable shell script at `rel`.
    fn script(&self, rel: &str, body: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `console.sh version` with `env` added; returns the output and what cargo was asked.
    fn version(&self, env: &[(&str, &str)]) -> (std::process::Output, String) {
        let log = self.path("cargo.log");
        let _ = std::fs::remove_file(&log);
        let out = Command::new(self.path("tools/bash"))
            .args(["console.sh", "version"])
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", self.path("tools"))
            .env("CARGO_TARGET_DIR", self.path("tgt"))
            .env("FAKE_CARGO_LOG", &log)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out, std::fs::read_to_string(&log).unwrap_or_default())
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// After a `git pull` the binary is older than the sources: console.sh must build first.
#[test]
fn console_sh_in_a_source_checkout_builds_before_it_runs_the_binary() {
    let checkout = Checkout::new(true);
    let (out, asked) = checkout.version(&[("FAKE_CARGO_COMPILES", "1")]);
    assert_eq!(asked, "build --release --color never\n", "{}", text(&out));
    assert_eq!(stdout(&out), "new binary version\n", "{}", text(&out));
    assert!(text(&out).contains("Building ossimport"), "{}", text(&out));

    // Nothing to compile: cargo is still asked, and says nothing.
    let (out, asked) = checkout.version(&[]);
    assert_eq!(asked, "build --release --color never\n");
    assert_eq!(stdout(&out), "new binary version\n", "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "a fresh build is quiet"
    );

    // A failed build is reported with cargo's messages; the old binary is not run.
    let (out, _) = checkout.version(&[("FAKE_CARGO_FAILS", "1")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(stdout(&out), "");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("error[E0425]"), "{said}");
    assert!(said.contains("building ossimport failed"), "{said}");

    // import.sh has built once already.
    let (out, asked) = checkout.version(&[("OSSIMPORT_NO_BUILD", "1")]);
    assert_eq!(asked, "");
    assert_eq!(stdout(&out), "new binary version\n", "{}", text(&out));
}

#[test]
fn console_sh_runs_a_packaged_binary_as_is_and_a_built_one_without_cargo() {
    let checkout = Checkout::new(true);
    checkout.script("bin/ossimport", "echo \"packaged binary $*\"");
    let (out, asked) = checkout.version(&[("FAKE_CARGO_COMPILES", "1")]);
    assert_eq!(asked, "", "cargo is not asked for a package");
    assert_eq!(stdout(&out), "packaged binary version\n", "{}", text(&out));

    let checkout = Checkout::new(false);
    let (out, _) = checkout.version(&[]);
    assert_eq!(stdout(&out), "old binary version\n", "{}", text(&out));
    std::fs::remove_file(checkout.path("tgt/release/ossimport")).unwrap();
    let (out, _) = checkout.version(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("cargo is not installed"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_says_ok_on_a_ready_setup_and_names_each_fault_without_a_secret() {
    let sandbox = Sandbox::start();
    let mut pkg = Package::new(&sandbox);
    pkg.set("destPrefix", "in/");
    pkg.file("a.txt", b"a");
    let out = pkg.run(&["check"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    for what in [
        "destination reachable",
        "destination keys and bucket",
        "bucket writable",
        "clock",
        "source readable",
        "working folder",
    ] {
        assert!(
            said.lines()
                .any(|l| l.contains(&format!(" {what}: ")) && !l.starts_with("FAIL")),
            "{what}: {said}"
        );
    }
    // The probe object is gone again.
    assert!(
        sandbox.objects().is_empty(),
        "{:?}",
        sandbox.objects().keys()
    );

    pkg.set("destSecretKey", "not-the-secret");
    pkg.set(
        "srcPrefix",
        &format!("{}/", pkg.path("no-such-folder").display()),
    );
    let out = pkg.run(&["check"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("FAIL destination keys and bucket: "),
        "{said}"
    );
    assert!(said.contains("FAIL source readable: "), "{said}");
    assert!(
        !said.contains("not-the-secret") && !said.contains(AK),
        "{said}"
    );

    // Nothing listens there: a quick FAIL, and the destination's other checks are skipped.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    pkg.set("destDomain", &format!("http://127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let out = pkg.run(&["check"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("FAIL destination reachable: cannot connect"),
        "{said}"
    );
    assert!(!said.contains("bucket writable"), "{said}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}
