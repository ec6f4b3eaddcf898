//! Real third-party servers for integration tests on 127.0.0.1: moto (an independent S3) and nginx (a plain HTTP source), installed on first use and killed on drop.
//!
//! Installs are cached under `$OSSIMPORT_TEST_CACHE` (default `$HOME/.cache/ossimport-rs-tests`)
//! behind `flock`, so concurrent test binaries install once and never see half an install.
//! `OSSIMPORT_TEST_MOTO=/path/to/moto_server` runs that moto instead of the pinned venv.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Panics with `format!(...)`, the log's path and its last lines.
macro_rules! fail {
    ($log:expr, $($what:tt)+) => { fail_with(&format!($($what)+), $log) };
}

/// Pinned so every machine tests against the same S3 behaviour, whatever moto is on PATH.
pub const MOTO_VERSION: &str = "5.2.5";
pub const NGINX: &str = "/usr/sbin/nginx";
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A port that was free a moment ago; the servers retry on another one if it gets taken.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to pick a free port")
}

/// Waits until `127.0.0.1:port` accepts a connection, or panics naming the server and its log.
pub fn wait_for_port(name: &str, port: u16, timeout: Duration, log: &Path) {
    if !wait_until(timeout, || answers(port)) {
        fail!(
            log,
            "{name} did not start on 127.0.0.1:{port} in {timeout:?}"
        );
    }
}

fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn fail_with(what: &str, log: &Path) -> ! {
    let text = fs::read_to_string(log).unwrap_or_else(|e| format!("<cannot read log: {e}>"));
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    panic!("{what}; see {}:\n{tail}", log.display())
}

/// One unsigned, bodiless HTTP/1.1 request; `headers` are "Name: value" lines.
/// Returns the status, the response head and the body.
pub fn http(port: u16, method: &str, path: &str, headers: &[&str]) -> (u16, String, Vec<u8>) {
    let what = format!("{method} http://127.0.0.1:{port}{path}");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    let last = ["Content-Length: 0", "Connection: close", ""];
    for h in headers.iter().chain(&last) {
        req.push_str(&format!("{h}\r\n"));
    }
    let mut raw = Vec::new();
    TcpStream::connect(("127.0.0.1", port))
        .and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.write_all(req.as_bytes())?;
            s.read_to_end(&mut raw)
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let end = end.unwrap_or_else(|| panic!("{what}: no end of headers in {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok());
    let status = status.unwrap_or_else(|| panic!("{what}: bad status line in {head:?}"));
    (status, head, raw[end + 4..].to_vec())
}

/// Appends a child's stdout and stderr to `log`, and returns a handle for our own notes.
fn to_log(cmd: &mut Command, log: &Path) -> File {
    let open = || OpenOptions::new().create(true).append(true).open(log);
    let msg = |e| panic!("cannot open log {}: {e}", log.display());
    let (out, err) = (open().unwrap_or_else(msg), open().unwrap_or_else(msg));
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    open().unwrap_or_else(msg)
}

/// A server process, killed on drop, with its temp dir. Both servers are set up to be a single
/// process (no moto reloader, no nginx master), so killing the pid leaves nothing behind; they stay
/// in the test's process group so that Ctrl-C or nextest's timeout reaches them if drop never runs.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

type Make<'a> = &'a dyn Fn(&Path, u16) -> Command;
type Owned<'a> = &'a dyn Fn(&Path, &Child, u16) -> bool;

impl Server {
    /// A bare connect could reach another test's server that took the same "free" port, so
    /// `owned` must confirm that the listener is this child's; a lost race retries on a new port.
    fn spawn(name: &str, log: &str, make: Make, owned: Owned) -> Server {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir for {name}: {e}"));
        let log = dir.path().join(log);
        for _ in 0..3 {
            let port = free_port();
            let seen = fs::metadata(&log).map_or(0, |m| m.len() as usize);
            let mut cmd = make(dir.path(), port);
            to_log(&mut cmd, &log);
            let child = cmd.spawn();
            let child = child.unwrap_or_else(|e| panic!("cannot run {name} ({cmd:?}): {e}"));
            let (mut child, mut exit, what) = (child, None, format!("{name} on 127.0.0.1:{port}"));
            let up = wait_until(START_TIMEOUT, || {
                exit = child.try_wait().ok().flatten();
                exit.is_some() || answers(port) && owned(dir.path(), &child, port)
            });
            if !up {
                let _ = child.kill();
                fail!(&log, "{what} did not start within {START_TIMEOUT:?}");
            }
            let Some(status) = exit else {
                return Server { child, port, dir };
            };
            let text = fs::read_to_string(&log).unwrap_or_default();
            if !text.get(seen..).is_some_and(|t| t.contains("in use")) {
                fail!(&log, "{what} exited with {status}");
            }
        }
        fail!(&log, "{name} lost the race for a free port 3 times")
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn read(&self, file: &str) -> String {
        fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache"));
    let base = home.unwrap_or_else(std::env::temp_dir);
    let default = base.join("ossimport-rs-tests");
    let dir = std::env::var_os("OSSIMPORT_TEST_CACHE").map_or(default, PathBuf::from);
    let made = fs::create_dir_all(&dir);
    made.unwrap_or_else(|e| panic!("cannot create test cache {}: {e}", dir.display()));
    dir
}

/// Runs `f` holding an exclusive flock, which the kernel releases if the holder dies mid-install.
fn locked<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let path = cache_dir().join(format!("{name}.lock"));
    let lock = File::create(&path).and_then(|l| l.lock().map(|_| l));
    let _lock = lock.unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    f()
}

/// Runs an install step with its output appended to `log`; false if it failed.
fn run(cmd: &mut Command, log: &Path) -> bool {
    let mut note = to_log(cmd, log);
    let _ = writeln!(note, "$ {cmd:?}");
    let status = cmd.status();
    if let Err(e) = &status {
        let _ = writeln!(note, "cannot run it: {e}");
    }
    status.is_ok_and(|s| s.success())
}

/// `apt-get install -y <pkg>`, as root or through `sudo -n`, unless `present()` turns true while
/// waiting for another test's install. apt fails at once, instead of waiting, when another dpkg
/// holds its lock, and finds nothing before the first `apt-get update`: so update and retry.
fn apt_install(pkg: &str, present: impl Fn() -> bool) {
    let log = cache_dir().join("apt.log");
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0); // owned by our euid
    let apt = |args: &str| {
        let sudo = if root { "" } else { "sudo -n " };
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!("{sudo}apt-get {args}"));
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    locked("apt", || {
        for attempt in 0..6 {
            let install = format!("install -y --no-install-recommends {pkg}");
            if present() || run(&mut apt(&install), &log) {
                return;
            }
            std::thread::sleep(Duration::from_secs(if attempt == 0 { 0 } else { 5 }));
            run(&mut apt("update"), &log);
        }
        fail!(&log, "apt-get install {pkg} failed")
    })
}

/// The pinned venv, built in `<name>.partial` and renamed so that a half install is never used.
/// It is run as `bin/python -m moto.server` because the rename breaks its scripts' shebangs.
fn moto_venv() -> PathBuf {
    let cache = cache_dir();
    let venv = cache.join(format!("moto-{MOTO_VERSION}"));
    if venv.join("bin/python").exists() {
        return venv;
    }
    locked("moto", || {
        if venv.join("bin/python").exists() {
            return;
        }
        let partial = cache.join(format!("moto-{MOTO_VERSION}.partial"));
        let log = cache.join("moto-install.log");
        let failed = |what: &str| fail!(&log, "{what} failed");
        let _ = fs::remove_dir_all(&partial);
        let _ = fs::remove_dir_all(&venv); // a venv whose base python has gone away
        let mut mkvenv = Command::new("python3");
        mkvenv.args(["-m", "venv"]).arg(&partial);
        if !run(&mut mkvenv, &log) {
            // Debian's own python3 has no ensurepip without python3-venv.
            let _ = fs::remove_dir_all(&partial);
            apt_install("python3-venv", || false);
            if !run(&mut mkvenv, &log) {
                failed("python3 -m venv");
            }
        }
        let spec = format!("moto[server]=={MOTO_VERSION}");
        let mut pip = Command::new(partial.join("bin/python"));
        pip.args(["-m", "pip", "install", "--disable-pip-version-check", &spec]);
        if !run(&mut pip, &log) {
            failed(&format!("pip install {spec}"));
        }
        if let Err(e) = fs::rename(&partial, &venv) {
            failed(&format!("renaming {} ({e}) has", partial.display()));
        }
    });
    venv
}

/// moto's S3, in memory, on a free port. It takes any credentials and any signature, and also
/// unsigned bucket requests; but an unsigned GET or HEAD of an object is refused with 403.
pub struct Moto {
    pub endpoint: String,
    pub port: u16,
    server: Server,
}

impl Moto {
    pub fn start() -> Moto {
        let (bin, args) = match std::env::var_os("OSSIMPORT_TEST_MOTO") {
            Some(bin) => (PathBuf::from(bin), vec![]),
            None => (moto_venv().join("bin/python"), vec!["-m", "moto.server"]),
        };
        let make = |_: &Path, port: u16| {
            let (mut c, port) = (Command::new(&bin), port.to_string());
            c.args(&args).args(["-H", "127.0.0.1", "-p", &port]);
            c.env("PYTHONUNBUFFERED", "1");
            c
        };
        // werkzeug logs "Running on <url>" only once it has bound the port itself.
        let owned = |dir: &Path, _: &Child, port: u16| {
            let line = format!("Running on http://127.0.0.1:{port}");
            fs::read_to_string(dir.join("moto.log")).is_ok_and(|t| t.contains(&line))
        };
        let server = Server::spawn("moto_server", "moto.log", &make, &owned);
        let (endpoint, port) = (server.endpoint(), server.port);
        Moto {
            endpoint,
            port,
            server,
        }
    }

    /// Creates a bucket in us-east-1 with an unsigned `PUT /<name>` (S3 names: 3 to 63 characters).
    pub fn create_bucket(&self, name: &str) {
        let (status, head, body) = http(self.port, "PUT", &format!("/{name}"), &[]);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "moto refused PUT /{name}: {head}\n{body}");
    }

    pub fn log(&self) -> String {
        self.server.read("moto.log")
    }
}

/// Debian's nginx serving the files under `root` on a free port, with its config and logs in a
/// temp dir. A single process (`master_process off`): as root it reads the test's files without
/// any `user` switch, and killing it leaves no workers behind.
pub struct Nginx {
    pub endpoint: String,
    pub port: u16,
    server: Server,
}

const NGINX_CONF: &str = r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events { worker_connections 512; }
http {
    log_format t '$request_method $request_uri $status $http_range';
    access_log {d}/access.log t;
    default_type application/octet-stream;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    server { listen 127.0.0.1:{port}; root "{root}"; {extra} }
}
"#;

impl Nginx {
    pub fn start(root: &Path) -> Nginx {
        Nginx::start_with(root, "")
    }

    /// [`Nginx::start`] with `extra` directives in its `server` block (locations that
    /// redirect, refuse HEAD or ignore Range).
    pub fn start_with(root: &Path, extra: &str) -> Nginx {
        if !Path::new(NGINX).exists() {
            apt_install("nginx", || Path::new(NGINX).exists());
        }
        let root = root.canonicalize();
        let root = root.unwrap_or_else(|e| panic!("nginx root: {e}"));
        let make = |dir: &Path, port: u16| {
            let (d, conf) = (dir.to_string_lossy(), dir.join("nginx.conf"));
            let port = port.to_string();
            let text = NGINX_CONF.replace("{d}", &d).replace("{port}", &port);
            let text = text.replace("{root}", &root.to_string_lossy());
            let text = text.replace("{extra}", extra);
            let written = fs::write(&conf, text);
            written.unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
            // -e: nginx opens its built-in error log before it reads the config.
            let mut c = Command::new(NGINX);
            for (flag, file) in [("-p", ""), ("-e", "error.log"), ("-c", "nginx.conf")] {
                c.arg(flag).arg(dir.join(file));
            }
            c
        };
        // nginx writes its pid file only after it has bound every listen socket.
        let owned = |dir: &Path, child: &Child, _| {
            let pid = fs::read_to_string(dir.join("nginx.pid"));
            pid.is_ok_and(|p| p.trim() == child.id().to_string())
        };
        let server = Server::spawn("nginx", "error.log", &make, &owned);
        let (endpoint, port) = (server.endpoint(), server.port);
        Nginx {
            endpoint,
            port,
            server,
        }
    }

    /// One line per request: `METHOD URI STATUS RANGE`, the URI as sent (still percent-encoded)
    /// and RANGE the Range header or `-`.
    pub fn access_log(&self) -> String {
        self.server.read("access.log")
    }

    pub fn error_log(&self) -> String {
        self.server.read("error.log")
    }
}

/// Pinned: 3.35.0 is the last Azurite that runs on Node 20 (3.37 needs a newer one).
pub const AZURITE_VERSION: &str = "3.35.0";
/// The emulator's well-known development account and its published key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `npm install azurite@<pinned>` under the cache, built in `<name>.partial` and renamed so that
/// a half install is never used (npm's `.bin` links are relative, so they survive the rename).
fn azurite_install() -> PathBuf {
    let cache = cache_dir();
    let dir = cache.join(format!("azurite-{AZURITE_VERSION}"));
    let bin = |d: &Path| d.join("node_modules/.bin/azurite-blob");
    if bin(&dir).exists() {
        return bin(&dir);
    }
    locked("azurite", || {
        if bin(&dir).exists() {
            return;
        }
        let partial = cache.join(format!("azurite-{AZURITE_VERSION}.partial"));
        let log = cache.join("azurite-install.log");
        let _ = fs::remove_dir_all(&partial);
        let _ = fs::remove_dir_all(&dir);
        let spec = format!("azurite@{AZURITE_VERSION}");
        // A fresh Debian has no Node: take Debian's (18 on Debian 12; Azurite 3.35 declares
        // node >= 10, tested here on 20).
        let has_npm = || {
            Command::new("npm")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !has_npm() {
            apt_install("npm", has_npm);
        }
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&partial)
            .arg(&spec);
        if !run(&mut npm, &log) {
            fail!(
                &log,
                "npm install {spec} failed (Node.js and npm are needed)"
            );
        }
        if let Err(e) = fs::rename(&partial, &dir) {
            fail!(&log, "renaming {} failed: {e}", partial.display());
        }
    });
    bin(&dir)
}

/// Azurite's blob service on a free port, its data in a temp dir. It checks Shared Key
/// signatures of `devstoreaccount1` exactly and answers path style
/// (`http://127.0.0.1:P/devstoreaccount1/<container>`).
pub struct Azurite {
    pub endpoint: String,
    pub port: u16,
    server: Server,
}

impl Azurite {
    pub fn start() -> Azurite {
        let bin = azurite_install();
        let make = |dir: &Path, port: u16| {
            let mut c = Command::new(&bin);
            c.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .arg("-l")
                .arg(dir.join("data"))
                .args(["--skipApiVersionCheck", "--loose", "--silent"])
                // Azurite reports usage to Microsoft unless told not to; tests stay on loopback.
                .arg("--disableTelemetry");
            c
        };
        // Azurite prints its URL only once the blob server listens.
        let owned = |dir: &Path, _: &Child, port: u16| {
            let line = format!("successfully listens on http://127.0.0.1:{port}");
            fs::read_to_string(dir.join("azurite.log")).is_ok_and(|t| t.contains(&line))
        };
        let server = Server::spawn("azurite-blob", "azurite.log", &make, &owned);
        let (endpoint, port) = (server.endpoint(), server.port);
        Azurite {
            endpoint,
            port,
            server,
        }
    }

    pub fn log(&self) -> String {
        self.server.read("azurite.log")
    }
}
