//! Distributed mode on one box: a real `nats-server` with JetStream (installed from the
//! distribution's packages on first use), and worker processes that each have their own
//! working folder and host name, as separate hosts would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::servers::{free_port, wait_for_port};
use super::{BIN, Package};

/// Where Debian's package puts the server.
const PACKAGED: &str = "/usr/sbin/nats-server";

/// One install at a time within this test binary.
static INSTALL: Mutex<()> = Mutex::new(());

/// The nats-server program, installed with apt-get (Debian's nats-server, 2.9.x) if missing.
pub fn nats_server() -> PathBuf {
    let _one = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let found = || {
        [PathBuf::from(PACKAGED)]
            .into_iter()
            .chain(
                std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|d| d.join("nats-server")),
            )
            .find(|p| p.is_file())
    };
    if let Some(path) = found() {
        return path;
    }
    let root = std::env::var("USER").is_ok_and(|u| u == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let installed = apt(&["install", "-y", "-qq", "nats-server"])
        || (apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "nats-server"]));
    assert!(
        installed,
        "nats-server is missing and `apt-get install nats-server` failed (as root or with \
         passwordless sudo); install it and run the tests again"
    );
    found().expect("nats-server installed but not found")
}

/// A NATS server with JetStream on 127.0.0.1, its storage in a temp folder; killed on drop.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
    max_payload: Option<usize>,
}

impl Nats {
    pub fn start() -> Nats {
        Nats::start_with(None)
    }

    /// With a smaller maximum payload, so that large TASKs go through the object store.
    pub fn start_with(max_payload: Option<usize>) -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut nats = Nats {
            child: None,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            dir,
            max_payload,
        };
        nats.spawn();
        nats
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("nats.conf");
        let payload = self
            .max_payload
            .map(|p| format!("max_payload: {p}\n"))
            .unwrap_or_default();
        std::fs::write(&conf, payload).unwrap();
        let log = self.dir.path().join("nats.log");
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(nats_server())
            .arg("-c")
            .arg(&conf)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("nats-server runs");
        self.child = Some(child);
        wait_for_port("nats-server", self.port, Duration::from_secs(30), &log);
    }

    /// Where the server keeps its streams (`-sd`).
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// `kill -9` of the server; its stored streams stay on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A worker process (`ossimport worker`) in its own folder, as on a host of its own.
pub struct Worker {
    pub host: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Worker {
    /// Starts a worker with the master's job file (for the keys) and `sys` settings.
    pub fn start(master: &Package, host: &str, sys: &[(&str, &str)]) -> Worker {
        let mut worker = Worker::prepare(master, host, sys);
        worker.spawn();
        worker
    }

    /// A worker's folder, as [`Worker::start`] makes it, without starting it.
    pub fn prepare(master: &Package, host: &str, sys: &[(&str, &str)]) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::copy(
            master.path("conf/local_job.cfg"),
            conf.join("local_job.cfg"),
        )
        .unwrap();
        let mut settings: Vec<(String, String)> = master
            .sys
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in sys {
            settings.retain(|(key, _)| key != k);
            settings.push((k.to_string(), v.to_string()));
        }
        let text: String = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(conf.join("sys.properties"), text).unwrap();
        Worker {
            host: host.to_string(),
            dir,
            child: None,
        }
    }

    pub fn spawn(&mut self) {
        let child = Command::new(BIN)
            .args(["worker", "--host-name", &self.host])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the worker runs");
        self.child = Some(child);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit; its exit code, if it did.
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Runs `ossimport <args>` in the worker's folder, as a user there would.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("binary runs")
    }

    pub fn log(&self) -> String {
        let logs = self.dir.path().join("logs");
        let mut text = String::new();
        for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("worker.log")
            {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        text
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}
