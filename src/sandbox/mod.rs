//! The embedded sandbox: a folder served as an S3-compatible endpoint on 127.0.0.1 (s3s-fs),
//! checking SigV4 signatures like a real store. The default config migrates into it, and the
//! tests use it as their server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::service::Service;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

use crate::error::{Error, IoContext, Result};

mod counts;

pub struct SandboxOptions {
    pub root: PathBuf,
    pub host: String,
    pub port: u16,
    pub buckets: Vec<String>,
    /// `(access key, secret key)`; without it any signature is accepted.
    pub credentials: Option<(String, String)>,
    /// The server stops when this file appears.
    pub stop_file: Option<PathBuf>,
    /// Where to keep the count of requests served, by kind (for benchmarks).
    pub request_counts: Option<PathBuf>,
}

/// Serves until Ctrl-C, SIGTERM or the stop file; calls `ready` with the bound address.
///
/// # Errors
/// When the folder cannot be used or the address cannot be bound.
pub async fn serve(opts: SandboxOptions, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    for bucket in &opts.buckets {
        let dir = opts.root.join(bucket);
        std::fs::create_dir_all(&dir).ctx("cannot create bucket folder", &dir)?;
    }
    std::fs::create_dir_all(&opts.root).ctx("cannot create folder", &opts.root)?;
    let fs = s3s_fs::FileSystem::new(&opts.root)
        .map_err(|e| Error::Internal(format!("cannot serve `{}`: {e:?}", opts.root.display())))?;
    let mut builder = S3ServiceBuilder::new(fs);
    if let Some((ak, sk)) = opts.credentials {
        builder.set_auth(SimpleAuth::from_single(ak, sk));
    }
    let service = builder.build();
    let counts = Arc::new(counts::Counts::default());
    if let Some(path) = opts.request_counts {
        tokio::spawn(counts::keep_written(counts.clone(), path));
    }
    let listener = TcpListener::bind((opts.host.as_str(), opts.port))
        .await
        .map_err(|e| {
            Error::Refused(format!("cannot listen on {}:{}: {e}", opts.host, opts.port))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("no local address: {e}")))?;
    ready(addr);
    let http = ConnBuilder::new(TokioExecutor::new());
    let stop = crate::shutdown::requested(opts.stop_file);
    tokio::pin!(stop);
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let (service, counts) = (service.clone(), counts.clone());
        let counted =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                counts.note(&req);
                Service::call(&service, req)
            });
        let conn = http
            .serve_connection(TokioIo::new(socket), counted)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    Ok(())
}
