//! `sandbox`: run the embedded S3-compatible endpoint, or (`--ensure`/`--stop`) manage the one
//! the quick start uses for the default config.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Console;
use crate::cli::SandboxArgs;
use crate::error::{Error, IoContext, Result};
use crate::sandbox::{SandboxOptions, serve};
use crate::workdir::{WorkDir, write_atomic};

pub fn run(console: &Console, args: SandboxArgs) -> Result<u8> {
    if args.ensure {
        return ensure(console);
    }
    if args.stop {
        return stop(console);
    }
    let root = args.root.ok_or_else(|| {
        Error::Refused("sandbox: --root <folder> is required (where objects are stored)".into())
    })?;
    let credentials = match (args.access_key, args.secret_key) {
        (Some(ak), Some(sk)) => Some((ak, sk)),
        (None, None) => None,
        _ => {
            return Err(Error::Refused(
                "sandbox: give both --access-key and --secret-key, or neither".into(),
            ));
        }
    };
    let opts = SandboxOptions {
        root,
        host: args.host,
        port: args.port,
        buckets: args.bucket,
        credentials,
        stop_file: args.stop_file,
        request_counts: args.request_counts,
    };
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Error::Internal(format!("cannot start tokio: {e}")))?;
    runtime.block_on(serve(opts, |addr| {
        // Tests and scripts read this line to learn the port when --port 0 was given.
        println!("sandbox listening on http://{addr}");
        let _ = std::io::stdout().flush();
    }))?;
    Ok(0)
}

/// The loopback address of destDomain, when it is a plain-http loopback endpoint.
fn loopback_endpoint(domain: &str) -> Option<SocketAddr> {
    let rest = domain.strip_prefix("http://")?.trim_end_matches('/');
    let addr = rest.to_socket_addrs().ok()?.next()?;
    addr.ip().is_loopback().then_some(addr)
}

fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

fn stop_file(workdir: &WorkDir) -> std::path::PathBuf {
    workdir.logs_dir().join("sandbox.stop")
}

/// Records which address `--ensure` started, so `--stop` never touches another server.
fn started_file(workdir: &WorkDir) -> std::path::PathBuf {
    workdir.logs_dir().join("sandbox.started")
}

fn ensure(console: &Console) -> Result<u8> {
    let (mut job, _) = console.job()?;
    job.apply_env_credentials();
    let Some(addr) = loopback_endpoint(&job.dest_domain) else {
        return Ok(0);
    };
    if listening(addr) {
        return Ok(0);
    }
    let workdir = console.workdir()?;
    let logs = workdir.logs_dir();
    std::fs::create_dir_all(&logs).ctx("cannot create folder", &logs)?;
    let log_path = logs.join("sandbox.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .ctx("cannot open log", &log_path)?;
    let data = workdir.root().join("sandbox-data");
    let _ = std::fs::remove_file(stop_file(&workdir));
    let exe = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find own binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "sandbox",
        "--host",
        &addr.ip().to_string(),
        "--port",
        &addr.port().to_string(),
    ])
    .arg("--root")
    .arg(&data)
    .arg("--bucket")
    .arg(&job.dest_bucket)
    .arg("--stop-file")
    .arg(stop_file(&workdir))
    // Keys go by environment, not arguments, so `ps` does not show them.
    .env("OSSIMPORT_SANDBOX_ACCESS_KEY", job.dest_access_key.expose())
    .env("OSSIMPORT_SANDBOX_SECRET_KEY", job.dest_secret_key.expose())
    .stdin(Stdio::null())
    .stdout(log.try_clone().ctx("cannot open log", &log_path)?)
    .stderr(log);
    // Outlives the terminal that ran import.sh / import.bat, as the service does.
    super::start::detach(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Internal(format!("cannot start the sandbox: {e}")))?;
    let started = Instant::now();
    while !listening(addr) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Refused(format!(
                "the sandbox exited ({status}); see {}",
                log_path.display()
            )));
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(Error::Refused(format!(
                "the sandbox did not start; see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    write_atomic(&started_file(&workdir), addr.to_string().as_bytes())?;
    println!(
        "Sandbox endpoint started at http://{addr} (bucket {}, data in {})",
        job.dest_bucket,
        data.display()
    );
    Ok(0)
}

fn stop(console: &Console) -> Result<u8> {
    let (job, _) = console.job()?;
    let Some(addr) = loopback_endpoint(&job.dest_domain) else {
        return Ok(0);
    };
    if !listening(addr) {
        return Ok(0);
    }
    let workdir = console.workdir()?;
    std::fs::create_dir_all(workdir.logs_dir()).ctx("cannot create folder", &workdir.logs_dir())?;
    write_atomic(&stop_file(&workdir), b"stop")?;
    let started = Instant::now();
    while listening(addr) && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(started_file(&workdir));
    println!("Sandbox endpoint stopped.");
    Ok(0)
}
