//! Test harness: a real sandbox S3 server on 127.0.0.1, a package folder with conf/, the
//! built binary run the way a user runs it, and an S3 client to read the bucket back.
#![allow(dead_code)]

pub mod azure;
#[cfg(unix)]
pub mod cluster;
mod jobs;
pub mod proxy;
pub mod qiniu_server;
#[cfg(unix)]
pub mod runner;
pub mod sandbox;
pub mod servers;
pub mod upyun_server;

#[allow(unused_imports)]
pub use jobs::*;
pub use sandbox::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ossimport");
pub const BUCKET: &str = "test-bucket";
pub const AK: &str = "test-access-key";
pub const SK: &str = "test-secret-key-123";

pub fn client(endpoint: &str, ak: &str, sk: &str) -> aws_sdk_s3::Client {
    proxy::client_with_attempts(endpoint, ak, sk, 3)
}

/// Deterministic bytes, different per seed (xorshift64).
pub fn content(seed: usize, len: usize) -> Vec<u8> {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An installed package: conf/, a source folder `src/`, and the binary at bin/ossimport.
pub struct Package {
    pub dir: tempfile::TempDir,
    pub job: BTreeMap<String, String>,
    pub sys: BTreeMap<String, String>,
    /// Environment of the processes console.sh starts (the Qiniu API hosts of a test server).
    pub env: BTreeMap<String, String>,
}

impl Package {
    pub fn new(sandbox: &Sandbox) -> Package {
        Package::with_dest(&sandbox.endpoint)
    }

    /// A package whose job file names `endpoint` as destDomain (with the sandbox's bucket
    /// and keys until changed).
    pub fn with_dest(endpoint: &str) -> Package {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::create_dir_all(dir.path().join("conf")).unwrap();
        let src = format!("{}/", dir.path().join("src").display());
        let job = [
            ("srcType", "local"),
            ("srcPrefix", src.as_str()),
            ("destDomain", endpoint),
            ("destBucket", BUCKET),
            ("destAccessKey", AK),
            ("destSecretKey", SK),
            ("destPrefix", ""),
            ("jobName", "local_test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sys = [("workingDir", "."), ("workerTaskThreadNum", "8")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let pkg = Package {
            dir,
            job,
            sys,
            env: BTreeMap::new(),
        };
        pkg.write_conf();
        pkg
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.job.insert(key.into(), value.into());
        self.write_conf();
        self
    }

    pub fn set_sys(&mut self, key: &str, value: &str) -> &mut Self {
        self.sys.insert(key.into(), value.into());
        self.write_conf();
        self
    }

    fn write_conf(&self) {
        let text = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect::<String>()
        };
        std::fs::write(self.path("conf/local_job.cfg"), text(&self.job)).unwrap();
        std::fs::write(self.path("conf/sys.properties"), text(&self.sys)).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn src(&self) -> PathBuf {
        self.path("src")
    }

    /// Writes a source file (creating folders).
    pub fn file(&self, rel: &str, bytes: &[u8]) {
        let p = self.src().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("binary runs")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stat(&self) -> String {
        String::from_utf8_lossy(&self.run(&["stat"]).stdout).into_owned()
    }

    /// Waits until `stat` shows one of `states`; returns that stat text.
    pub fn wait_for(&self, states: &[&str], timeout: Duration) -> String {
        poll_stat(|| self.stat(), states, timeout)
    }

    pub fn task_dirs(&self, state: &str) -> Vec<PathBuf> {
        let dir = self.path("master/jobs/local_test").join(state);
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every source file: object key (no destPrefix) → bytes.
    pub fn source_files(&self) -> BTreeMap<String, Vec<u8>> {
        files_under(&self.src())
    }
}

/// Runs `cmd` with `stdin` as its whole input (answers to a script's questions); its output.
pub fn run_with_input(cmd: &mut Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Every file under `dir`: its path relative to `dir`, with `/`, → its bytes.
pub fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, std::fs::read(e.path()).unwrap());
        }
    }
    out
}

impl Drop for Package {
    fn drop(&mut self) {
        // Never leave a service running behind a test.
        let _ = self.run(&["stop"]);
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn wait_path(path: &Path, timeout: Duration) -> bool {
    let started = Instant::now();
    while !path.exists() {
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A mebibyte.
pub const MIB: usize = 1024 * 1024;

pub fn head(sandbox: &Sandbox, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    let client = sandbox.client();
    rt().block_on(client.head_object().bucket(BUCKET).key(key).send())
        .expect("head")
}

/// Every audit.log line of finished tasks: path → records (result, reason, detail).
pub fn audit_records(pkg: &Package) -> BTreeMap<String, Vec<(String, String, String)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for state in ["succeed_tasks", "failed_tasks"] {
        for task in pkg.task_dirs(state) {
            for line in std::fs::read_to_string(task.join("audit.log"))
                .unwrap()
                .lines()
            {
                if line.starts_with('#') {
                    continue;
                }
                let f: Vec<&str> = line.split('\t').collect();
                if f.len() != 6 {
                    continue;
                }
                out.entry(f[4].to_string()).or_default().push((
                    f[1].to_string(),
                    f[2].to_string(),
                    f[5].to_string(),
                ));
            }
        }
    }
    out
}

pub fn error_lists(pkg: &Package) -> String {
    pkg.task_dirs("failed_tasks")
        .iter()
        .chain(pkg.task_dirs("succeed_tasks").iter())
        .map(|t| std::fs::read_to_string(t.join("error.list")).unwrap())
        .collect()
}

/// `kill -9` of the running service; returns once it is gone, which is when the OS has
/// released its lock (a zombie never reaped would still answer `kill -0`).
pub fn kill_service(pkg: &Package) {
    let pid = std::fs::read_to_string(pkg.path("master/service.pid")).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_until(Duration::from_secs(60), || !service_lock_held(pkg)),
        "the killed service still holds its lock"
    );
}

/// True while a process holds the service lock (taken and dropped at once when free).
pub fn service_lock_held(pkg: &Package) -> bool {
    let Ok(file) = std::fs::File::options()
        .write(true)
        .open(pkg.path("master/service.lock"))
    else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Polls `ready` until it is true or `timeout` passed; says which.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !ready() {
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

pub fn multipart_config(pkg: &mut Package) {
    pkg.set("multipartUploadThreshold", "5m");
    pkg.set("multipartUploadPartSize", "5m");
}

/// Calls `stat` until its text shows one of `states` (`JobState:<state>`); returns that text.
fn poll_stat(stat: impl Fn() -> String, states: &[&str], timeout: Duration) -> String {
    let started = Instant::now();
    loop {
        let stat = stat();
        if states
            .iter()
            .any(|s| stat.contains(&format!("JobState:{s}\n")))
        {
            return stat;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out waiting for {states:?}; last stat:\n{stat}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
