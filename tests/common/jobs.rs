//! Jobs the way a user runs them: the original's job templates with a few values changed,
//! console.sh in the package, objects put into a source bucket and compared when read back.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use super::*;

/// Writes conf/local_job.cfg as one of the original's templates
/// (tests/fixtures/conf/templates/<name>.job.cfg), comments and all, with the value of each
/// `overrides` key replaced; every key must be in the template. `Package::set` would replace
/// the file again.
pub fn write_template(pkg: &Package, name: &str, overrides: &[(&str, &str)]) {
    let text = template_text(name);
    let mut left: Vec<&str> = overrides.iter().map(|(k, _)| *k).collect();
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match overrides.iter().find(|(k, _)| Some(*k) == key) {
            Some((k, v)) if !line.starts_with('#') => {
                left.retain(|l| l != k);
                out.push_str(&format!("{k}={v}\n"));
            }
            _ => out.push_str(&format!("{line}\n")),
        }
    }
    assert!(left.is_empty(), "{name}.job.cfg has no {left:?}");
    std::fs::write(pkg.path("conf/local_job.cfg"), out).unwrap();
}

/// The value of `key` in template `name`, as written there.
pub fn template_value(name: &str, key: &str) -> String {
    let text = template_text(name);
    let line = text
        .lines()
        .find(|l| l.split_once('=').is_some_and(|(k, _)| k == key));
    let line = line.unwrap_or_else(|| panic!("{name}.job.cfg has no {key}"));
    line.split_once('=').unwrap().1.trim().to_string()
}

fn template_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/conf/templates/{name}.job.cfg"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Installs console.sh and bin/ossimport (a link to the built binary) into the package.
pub fn install_console(pkg: &Package) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("console.sh"), pkg.path("console.sh")).unwrap();
    std::fs::create_dir_all(pkg.path("bin")).unwrap();
    std::os::unix::fs::symlink(BIN, pkg.path("bin/ossimport")).unwrap();
}

/// `bash console.sh <args>` in the package.
pub fn console(pkg: &Package, args: &[&str]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("console.sh")
        .args(args)
        .envs(&pkg.env)
        .current_dir(pkg.dir.path());
    cmd.output().expect("console.sh runs")
}

/// Polls `console.sh stat` until it shows one of `states`; returns that stat text.
pub fn console_wait(pkg: &Package, states: &[&str], timeout: Duration) -> String {
    let stat = || String::from_utf8_lossy(&console(pkg, &["stat"]).stdout).into_owned();
    poll_stat(stat, states, timeout)
}

/// Puts each `(key, bytes)` into `bucket` with one PutObject.
/// Waits through console.sh for the job's end and requires Succeed; a failure shows the
/// error lists. Returns the stat text.
pub fn console_succeeds(pkg: &Package, timeout: Duration) -> String {
    let stat = console_wait(pkg, &["Succeed", "Failed", "Abort"], timeout);
    assert!(
        stat.contains("JobState:Succeed\n"),
        "{stat}\n{}",
        super::error_lists(pkg)
    );
    stat
}

pub fn put_objects(client: &aws_sdk_s3::Client, bucket: &str, objects: &[(String, Vec<u8>)]) {
    rt().block_on(async {
        for (key, bytes) in objects {
            let body = aws_sdk_s3::primitives::ByteStream::from(bytes.clone());
            let put = client.put_object().bucket(bucket).key(key).body(body);
            put.send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        }
    })
}

/// The keys both maps hold, then the bytes of each, without printing megabytes on failure.
pub fn assert_same(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) {
    let keys = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "destination keys");
    for (key, bytes) in want {
        let same = got[key] == *bytes;
        assert!(
            same,
            "{key}: {} bytes differ from the source's {}",
            got[key].len(),
            bytes.len()
        );
    }
}

/// A destination sandbox and a package with console.sh whose job file is `template` with
/// `overrides` and the destination's settings.
pub fn package(template: &str, dest: &Sandbox, overrides: &[(&str, &str)]) -> Package {
    let pkg = Package::new(dest);
    install_console(&pkg);
    let mut all = overrides.to_vec();
    for (key, value) in [
        ("destDomain", dest.endpoint.as_str()),
        ("destAccessKey", AK),
        ("destSecretKey", SK),
        ("destBucket", BUCKET),
        ("multipartUploadThreshold", "5m"),
        ("multipartUploadPartSize", "5m"),
    ] {
        if !all.iter().any(|(k, _)| *k == key) {
            all.push((key, value));
        }
    }
    write_template(&pkg, template, &all);
    pkg
}

pub fn submit_and_start(pkg: &Package) {
    let out = console(pkg, &["submit"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("submit job:local_test success!"),
        "{}",
        text(&out)
    );
    let out = console(pkg, &["start"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Asserts that `stat` (the job's stat once it stopped) is an abort before any task: one
/// AbortReason line, which it returns; no task failed or done; nothing in `dest`; and none of
/// `secrets` in the stat or in any file of the package outside conf/.
pub fn assert_aborted_at_start(
    pkg: &Package,
    dest: &Sandbox,
    stat: &str,
    secrets: &[&str],
) -> String {
    assert!(
        stat.contains("JobState:Abort\n") && stat.contains("FailedTasks:0\n"),
        "{stat}"
    );
    let reasons: Vec<&str> = stat
        .lines()
        .filter(|l| l.starts_with("AbortReason:"))
        .collect();
    assert_eq!(reasons.len(), 1, "{stat}");
    assert!(pkg.task_dirs("failed_tasks").is_empty() && pkg.task_dirs("succeed_tasks").is_empty());
    assert!(dest.objects().is_empty());
    for secret in secrets {
        assert!(!stat.contains(secret), "{stat}");
    }
    if !secrets.is_empty() {
        for entry in walkdir::WalkDir::new(pkg.dir.path()).into_iter().flatten() {
            if entry.file_type().is_file() && !entry.path().starts_with(pkg.path("conf")) {
                let bytes = std::fs::read(entry.path()).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                for secret in secrets {
                    assert!(!text.contains(secret), "{}", entry.path().display());
                }
            }
        }
    }
    reasons[0].to_string()
}
