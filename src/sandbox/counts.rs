//! Counts of the requests the sandbox served, by kind, kept in a file for benchmarks that
//! compare how many requests each tool sends per file.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::{Method, Request};

/// GET (object reads), LIST (bucket listings), PUT, HEAD, POST, DELETE, other.
#[derive(Default)]
pub struct Counts([AtomicU64; 7]);

const NAMES: [&str; 7] = ["GET", "LIST", "PUT", "HEAD", "POST", "DELETE", "OTHER"];

impl Counts {
    pub fn note<B>(&self, req: &Request<B>) {
        let listing = req.uri().query().is_some_and(|q| q.contains("list-type="))
            || req.uri().path().trim_matches('/').split('/').count() == 1;
        let kind = match *req.method() {
            Method::GET if listing => 1,
            Method::GET => 0,
            Method::PUT => 2,
            Method::HEAD => 3,
            Method::POST => 4,
            Method::DELETE => 5,
            _ => 6,
        };
        self.0[kind].fetch_add(1, Ordering::Relaxed);
    }

    fn text(&self) -> String {
        let values: Vec<u64> = self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let mut out = format!("requests={}\n", values.iter().sum::<u64>());
        for (name, n) in NAMES.iter().zip(values) {
            out.push_str(&format!("{name}={n}\n"));
        }
        out
    }
}

/// Rewrites `path` (whole, by rename) every 200 ms while the counts change.
pub async fn keep_written(counts: Arc<Counts>, path: PathBuf) {
    let tmp = path.with_extension("tmp");
    let mut last = String::new();
    loop {
        let text = counts.text();
        if text != last {
            let written = std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                tracing::warn!("cannot write request counts to {}: {e}", path.display());
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
