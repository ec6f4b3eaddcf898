//! `check`: what a 10-hour run needs, looked at in a few seconds before it starts. One line
//! per check, `OK`, `WARN` or `FAIL` with what to do about it; exit 0, or 1 when one failed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::config::{JobConfig, SysConfig};
use crate::dest::{Destination, PutOptions};
use crate::error::Result;
use crate::payload::{Body, Memory};

use super::Console;

/// Tries per destination request: a check reports, it does not wait out an outage.
const TRIES: usize = 2;
/// Clock skew worth a warning; signatures fail at 15 minutes.
const SKEW_WARN_SECS: u64 = 5 * 60;
/// Free space in the working folder below which a long run is refused, and warned about.
const FREE_FAIL: u64 = 100 << 20;
const FREE_WARN: u64 = 1 << 30;

enum Verdict {
    Ok(String),
    Warn(String),
    Fail(String),
}

/// # Errors
/// When the configuration cannot be read (exit 2, as for every command).
pub fn run(console: &Console) -> Result<u8> {
    let (job, _) = console.job()?;
    let (sys, _) = console.sys()?;
    let runtime = super::runtime()?;
    let results = runtime.block_on(checks(&job, &sys));
    let mut failed = false;
    for (what, verdict) in results {
        let (word, text) = match verdict {
            Verdict::Ok(t) => ("OK  ", t),
            Verdict::Warn(t) => ("WARN", t),
            Verdict::Fail(t) => {
                failed = true;
                ("FAIL", t)
            }
        };
        println!("{word} {what}: {text}");
    }
    Ok(u8::from(failed))
}

async fn checks(job: &JobConfig, sys: &SysConfig) -> Vec<(&'static str, Verdict)> {
    let mut out = Vec::new();
    let reachable = reachable(&job.dest_domain).await;
    let can_go_on = matches!(reachable, Verdict::Ok(_));
    out.push(("destination reachable", reachable));
    if can_go_on {
        let dest = crate::dest::open(job, TRIES, None);
        let keys = match dest.check_access().await {
            Ok(()) => Verdict::Ok(format!(
                "bucket {} answers a signed request",
                job.dest_bucket
            )),
            Err(e) => Verdict::Fail(e.message),
        };
        let keys_ok = matches!(keys, Verdict::Ok(_));
        out.push(("destination keys and bucket", keys));
        if keys_ok {
            out.push((
                "bucket writable",
                writable(dest.as_ref(), &job.dest_prefix).await,
            ));
        }
        out.push(("clock", clock(&job.dest_domain).await));
    }
    out.push(("source readable", source(job).await));
    out.push(("working folder", free_space(&sys.working_dir)));
    out
}

async fn reachable(domain: &str) -> Verdict {
    let Ok(url) = reqwest::Url::parse(domain) else {
        return Verdict::Fail(format!("destDomain {domain:?} is not an http(s) URL"));
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Verdict::Fail(format!("destDomain {domain:?} names no host"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Verdict::Ok(format!("{host}:{port} accepts connections")),
        Ok(Err(e)) => Verdict::Fail(format!(
            "cannot connect to {host}:{port} ({e}); check destDomain and the network"
        )),
        Err(_) => Verdict::Fail(format!(
            "no answer from {host}:{port} within 5 s; check destDomain, the firewall and proxies"
        )),
    }
}

/// Puts and deletes a small object under destPrefix.
async fn writable(dest: &dyn Destination, prefix: &str) -> Verdict {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let key = format!("{prefix}.ossimport-check-{}-{nanos}", std::process::id());
    let body = Body::new(
        Arc::new(Memory(Bytes::from_static(b"ossimport check"))),
        15,
        "probe",
    );
    let opts = PutOptions {
        content_type: "text/plain".into(),
        ..PutOptions::default()
    };
    if let Err(e) = dest.put(&key, body, &opts).await {
        return Verdict::Fail(format!(
            "{}; the keys need write access to destBucket under destPrefix",
            e.message
        ));
    }
    match dest.delete(&key).await {
        Ok(()) => Verdict::Ok(format!("put and deleted `{key}`")),
        Err(e) => Verdict::Warn(format!(
            "wrote `{key}` but cannot delete it ({}); remove it by hand",
            e.message
        )),
    }
}

/// This machine's clock against the server's `Date` header.
async fn clock(domain: &str) -> Verdict {
    let client = match crate::source::rest::client(reqwest::Client::builder().no_proxy()) {
        Ok(client) => client,
        Err(e) => return Verdict::Warn(e.to_string()),
    };
    let answer = match client.head(domain).send().await {
        Ok(answer) => answer,
        Err(e) => return Verdict::Warn(format!("cannot ask the server for its time: {e}")),
    };
    let said = answer
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let Some(server) = said else {
        return Verdict::Warn("the server sends no Date header; clock not compared".into());
    };
    let now = SystemTime::now();
    let skew = now
        .duration_since(server)
        .or_else(|_| server.duration_since(now))
        .map_or(0, |d| d.as_secs());
    if skew > SKEW_WARN_SECS {
        Verdict::Warn(format!(
            "this machine's clock is {skew} s off the server's; requests fail at 15 minutes: \
             set the time (NTP)"
        ))
    } else {
        Verdict::Ok(format!("{skew} s off the server's"))
    }
}

async fn source(job: &JobConfig) -> Verdict {
    let source = match crate::source::open_source(job) {
        Ok(source) => source,
        Err(e) => return Verdict::Fail(e.to_string()),
    };
    if let Err(e) = source.check().await {
        return Verdict::Fail(e.to_string());
    }
    // The first level of srcPrefix: the local folder read, or one listing of a remote source.
    match source.scan_units(1).await {
        Ok(units) => Verdict::Ok(format!(
            "{:?} source: srcPrefix lists {} scan unit(s)",
            job.src_type,
            units.len()
        )),
        Err(e) => Verdict::Fail(e.to_string()),
    }
}

fn free_space(dir: &Path) -> Verdict {
    let Some(free) = available(dir) else {
        return Verdict::Warn(format!(
            "free space of {} not measured on this platform",
            dir.display()
        ));
    };
    let gib = free as f64 / f64::from(1u32 << 30);
    let text = format!("{gib:.1} GiB free in {}", dir.display());
    match free {
        f if f < FREE_FAIL => Verdict::Fail(format!(
            "{text}; task files and logs need room: free some, or set workingDir elsewhere"
        )),
        f if f < FREE_WARN => Verdict::Warn(format!("{text}; a large job may need more")),
        _ => Verdict::Ok(text),
    }
}

/// Bytes available to this user in the file system of `dir` (or of its nearest existing
/// parent, before the first run creates it).
#[cfg(any(unix, windows))]
fn available(dir: &Path) -> Option<u64> {
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("."));
    fs4::available_space(existing).ok()
}

#[cfg(not(any(unix, windows)))]
fn available(_dir: &Path) -> Option<u64> {
    None
}
