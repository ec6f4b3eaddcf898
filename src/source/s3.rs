//! The S3-compatible sources (`srcType` oss, s3, cos, bos, ks3): one backend on aws-sdk-s3.
//!
//! Scan units are key prefixes found by delimiter listing down to `maxMultiThreadScanDepth`;
//! each unit is listed with ListObjectsV2 (1,000 keys a page) in key order, and resumes after
//! its checkpoint with `StartAfter`. Object bodies are ranged GETs pinned to the listed ETag
//! (`If-Match`), so an object rewritten between listing and copy fails instead of mixing two
//! versions. Transient failures are retried with the same policy as the destination.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use tokio::sync::mpsc::Sender;

use super::{
    Body, LIST_BATCH, ListBatch, ObjectLocation, Probe, RelPath, Resume, ScanUnit, Scope, Source,
    SourceObject,
};
use crate::error::{Error, Result};
use crate::payload::{ByteStream, ReadFault, ReadFaultKind, Reopen};
use crate::s3client::{CaptureHeader, ClientSettings, Failure, Wording, build_client, describe};
use crate::source::endpoint::{S3Endpoint, key_prefix, prefixed_key, unprefixed};

/// The pieces every request needs, shared by the source and the bodies it opens.
struct Conn {
    client: Client,
    bucket: String,
    /// `srcPrefix` as a key prefix; relative paths are keys without it.
    prefix: String,
    /// Scrubbed from every message.
    secrets: Vec<String>,
    /// `host:port`, for the words of a failure.
    authority: String,
    retry: crate::backoff::Retry,
}

pub struct S3Source {
    conn: Arc<Conn>,
}

impl S3Source {
    pub fn new(at: &S3Endpoint, src_prefix: &str, access_key: &str, secret_key: &str) -> Self {
        let client = build_client(&ClientSettings {
            endpoint: &at.url,
            region: &at.region,
            path_style: at.path_style,
            access_key,
            secret_key,
        });
        S3Source {
            conn: Arc::new(Conn {
                client,
                bucket: at.bucket.clone(),
                prefix: key_prefix(src_prefix),
                secrets: vec![access_key.to_string(), secret_key.to_string()],
                authority: crate::words::authority(&at.url),
                retry: crate::backoff::Retry::new(crate::backoff::REQUEST_TRIES),
            }),
        }
    }
}

impl Conn {
    fn fail<E>(&self, what: &str, key: &str, e: &SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let wording = Wording {
            authority: &self.authority,
            keys: "srcAccessKey/srcSecretKey",
            secrets: &self.secrets,
        };
        describe(what, key, e, &wording)
    }

    fn key(&self, rel: &RelPath) -> String {
        prefixed_key(&self.prefix, rel)
    }

    fn rel(&self, key: &str) -> RelPath {
        unprefixed(&self.prefix, key)
    }

    /// One ListObjectsV2 page, retried while the failure is transient.
    async fn page(&self, req: &PageRequest) -> std::result::Result<Page, Failure> {
        let call = || async {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&req.prefix)
                .set_delimiter(req.delimited.then(|| "/".to_string()))
                .set_start_after(req.start_after.clone())
                .set_continuation_token(req.token.clone())
                .max_keys(1000)
                .send()
                .await
                .map_err(|e| self.fail("LIST", &req.prefix, &e))?;
            let objects = out
                .contents()
                .iter()
                .filter_map(|o| {
                    let key = o.key()?;
                    let mut obj = SourceObject::new(
                        self.rel(key),
                        o.size().unwrap_or_default().max(0) as u64,
                        o.last_modified().map_or(0, |t| t.secs()),
                    );
                    obj.version = o.e_tag().map(str::to_string);
                    Some(obj)
                })
                .collect();
            let prefixes = out
                .common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_string))
                .collect();
            let next = match (
                out.is_truncated().unwrap_or(false),
                out.next_continuation_token(),
            ) {
                (false, _) => Next::Done,
                (true, Some(t)) => Next::Token(t.to_string()),
                // A store that says "more" without a token: go on after the page's last name.
                (true, None) => {
                    let last_key = out.contents().last().and_then(|o| o.key());
                    // After a common prefix, after every key under it too.
                    let last_prefix = out
                        .common_prefixes()
                        .last()
                        .and_then(|p| p.prefix())
                        .map(|p| format!("{p}{}", char::MAX));
                    let last = last_key
                        .map(str::to_string)
                        .into_iter()
                        .chain(last_prefix)
                        .max();
                    match last.filter(|l| req.start_after.as_ref().is_none_or(|s| l > s)) {
                        Some(last) => Next::After(last),
                        None => {
                            return Err(Failure {
                                message: format!(
                                    "LIST `{}`: the store says the listing goes on but gives \
                                     neither a continuation token nor a key past the last \
                                     page's to go on after",
                                    req.prefix
                                ),
                                transient: false,
                                status: None,
                                code: None,
                                no_answer: None,
                            });
                        }
                    }
                }
            };
            Ok(Page {
                objects,
                prefixes,
                next,
            })
        };
        self.retry.run("LIST", &call, verdict).await
    }

    /// The common prefixes directly under `prefix`, as relative folders (`a/b/`).
    async fn subfolders(&self, dir: &RelPath) -> Result<Vec<RelPath>> {
        let mut req = PageRequest {
            prefix: self.key(dir),
            delimited: true,
            start_after: None,
            token: None,
        };
        let mut out = Vec::new();
        loop {
            let page = self.page(&req).await.map_err(source_error)?;
            for p in &page.prefixes {
                // A store that repeats a prefix across pages must not make two units of it.
                let rel = self.rel(p);
                if out.last() != Some(&rel) {
                    out.push(rel);
                }
            }
            if !req.advance(page.next) {
                return Ok(out);
            }
        }
    }
}

struct PageRequest {
    prefix: String,
    delimited: bool,
    start_after: Option<String>,
    token: Option<String>,
}

struct Page {
    objects: Vec<SourceObject>,
    prefixes: Vec<String>,
    next: Next,
}

/// Where the listing goes on after a page.
enum Next {
    Done,
    Token(String),
    After(String),
}

impl PageRequest {
    /// Moves to the page after one; false when there is none.
    fn advance(&mut self, next: Next) -> bool {
        match next {
            Next::Done => false,
            Next::Token(t) => {
                self.token = Some(t);
                true
            }
            Next::After(key) => {
                self.token = None;
                self.start_after = Some(key);
                true
            }
        }
    }
}

/// How an S3 failure counts for retries and outages: only an endpoint that cannot be reached
/// at all makes a source outage (see `rest::verdict`).
fn verdict(f: &Failure) -> crate::backoff::Verdict {
    crate::backoff::Verdict {
        transient: f.transient,
        no_answer: f
            .no_answer
            .clone()
            .filter(|(how, _)| *how == crate::outage::NoAnswer::Unreachable),
        answered: f.no_answer.is_none() && f.status.is_some(),
    }
}

fn source_error(f: Failure) -> Error {
    Error::Source(f.message)
}

#[async_trait]
impl Source for S3Source {
    fn ride_outages(&self, outage: std::sync::Arc<crate::outage::Outage>) {
        self.conn.retry.ride_outages(outage);
    }

    async fn check(&self) -> Result<()> {
        let c = &self.conn;
        let req = PageRequest {
            prefix: c.prefix.clone(),
            delimited: true,
            start_after: None,
            token: None,
        };
        c.page(&req).await.map(|_| ()).map_err(|f| {
            // The words already say which keys to check on a 403.
            let hint = match (f.status, f.code.as_deref()) {
                (Some(404), _) | (_, Some("NoSuchBucket")) => {
                    "; check srcBucket (and appId for cos)"
                }
                (None, _) => "; check srcDomain and that the source endpoint is reachable",
                _ => "",
            };
            Error::Source(format!("bucket {}: {}{hint}", c.bucket, f.message))
        })
    }

    async fn scan_units(&self, max_depth: u32) -> Result<Vec<ScanUnit>> {
        // Breadth-first by level, so the unit list is in key order level by level; the order
        // only decides which unit a scanner takes first.
        let this = &*self.conn;
        super::folder_units(max_depth, |dir| async move { this.subfolders(&dir).await }).await
    }

    async fn list(&self, unit: &ScanUnit, resume: Resume, out: Sender<ListBatch>) -> Result<()> {
        let Scope::Tree { dir, recursive } = &unit.scope else {
            return Err(Error::Internal(format!(
                "not an object-store unit: {}",
                unit.id
            )));
        };
        let c = &self.conn;
        let mut req = PageRequest {
            prefix: c.key(dir),
            delimited: !recursive,
            start_after: resume.after.as_ref().map(|a| c.key(a)),
            token: None,
        };
        loop {
            let page = c.page(&req).await.map_err(source_error)?;
            let mut batch = Vec::with_capacity(LIST_BATCH);
            for obj in page.objects {
                batch.push(Ok(obj));
            }
            if !batch.is_empty() && out.send(batch).await.is_err() {
                return Ok(());
            }
            if !req.advance(page.next) {
                return Ok(());
            }
        }
    }

    async fn probe(&self, listed: &SourceObject) -> Result<Probe> {
        let path = &listed.path;
        let c = &self.conn;
        let key = c.key(path);
        let crc = CaptureHeader::default();
        let call = || async {
            c.client
                .head_object()
                .bucket(&c.bucket)
                .key(&key)
                .customize()
                .interceptor(crc.clone())
                .send()
                .await
        };
        let sent = c
            .retry
            .run("HEAD", &call, |e| verdict(&c.fail("HEAD", &key, e)))
            .await;
        match sent {
            Ok(head) => {
                let mut obj = SourceObject::new(
                    path.clone(),
                    head.content_length().unwrap_or_default().max(0) as u64,
                    head.last_modified().map_or(0, |t| t.secs()),
                );
                obj.version = head.e_tag().map(str::to_string);
                obj.crc64 = crc.crc64();
                // A plain 32-hex ETag is the content's MD5 on S3-compatible stores.
                obj.md5 = obj
                    .version
                    .as_deref()
                    .map(|e| e.trim_matches('"').to_ascii_lowercase())
                    .filter(|e| crate::payload::is_md5_hex(e));
                Ok(Probe::Present(obj))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(Probe::Missing),
            Err(e) => Err(Error::Source(c.fail("HEAD", &key, &e).message)),
        }
    }

    fn pins_reads(&self) -> bool {
        true
    }

    fn location(&self, obj: &SourceObject) -> Option<ObjectLocation> {
        Some(ObjectLocation {
            bucket: self.conn.bucket.clone(),
            key: self.conn.key(&obj.path),
        })
    }

    async fn open(&self, obj: &SourceObject, offset: u64, len: u64) -> Result<Body> {
        let key = self.conn.key(&obj.path);
        let what = format!("source object `{key}`");
        let range = ObjectRange {
            conn: self.conn.clone(),
            key,
            version: obj.version.clone(),
            size: obj.size,
            mtime: obj.mtime,
            offset,
            len,
        };
        Ok(Body::new(Arc::new(range), len, what))
    }
}

/// A byte range of one version of an object.
struct ObjectRange {
    conn: Arc<Conn>,
    key: String,
    version: Option<String>,
    /// The object's size and last-modified (unix s) as listed or probed.
    size: u64,
    mtime: i64,
    offset: u64,
    len: u64,
}

impl Reopen for ObjectRange {
    fn open(&self) -> BoxFuture<'static, io::Result<ByteStream>> {
        let (conn, key, version) = (self.conn.clone(), self.key.clone(), self.version.clone());
        let mtime = self.mtime;
        let (offset, size) = (self.offset, self.size);
        let range = format!("bytes={offset}-{}", (offset + self.len).saturating_sub(1));
        Box::pin(async move {
            let call = || async {
                conn.client
                    .get_object()
                    .bucket(&conn.bucket)
                    .key(&key)
                    .range(&range)
                    .set_if_match(version.clone())
                    .send()
                    .await
                    .map_err(|e| conn.fail("GET", &key, &e))
            };
            let out = conn.retry.run("GET", &call, verdict).await.map_err(|f| {
                // Answers that will be the same on every try stop the retries, and say
                // what happened to the object.
                f.status
                    .and_then(|s| ReadFault::of_status(s, f.transient, &f.message))
                    .unwrap_or_else(|| io::Error::other(f.message))
            })?;
            // Servers that ignore If-Match (s3s-fs does) still name the version they sent.
            let sent = out.e_tag().map(|e| e.trim_matches('"').to_string());
            let listed = version.as_deref().map(|e| e.trim_matches('"'));
            if let (Some(sent), Some(listed)) = (&sent, listed)
                && sent != listed
            {
                return Err(ReadFault::io(
                    ReadFaultKind::Changed,
                    format!(
                        "GET `{key}`: the object was rewritten after it was listed (ETag \
                         {listed} then, {sent} now) (SIZE_NOT_MATCH)"
                    ),
                ));
            }
            // Without an ETag to pin (s3s-fs lists none) the size still tells a rewrite: the
            // total after the slash of `bytes 0-99/1234`, or the whole length without a range.
            let total = match out.content_range() {
                Some(r) => r.rsplit('/').next().and_then(|t| t.parse::<u64>().ok()),
                None => out.content_length().and_then(|n| u64::try_from(n).ok()),
            };
            if let Some(total) = total
                && total != size
            {
                return Err(ReadFault::io(
                    ReadFaultKind::Changed,
                    format!(
                        "GET `{key}`: the object has {total} bytes, listed with {size} \
                         (SIZE_NOT_MATCH: rewritten after it was listed)"
                    ),
                ));
            }
            // Nor does a same-size rewrite escape: the answer's Last-Modified is the version's.
            let modified = out.last_modified().map(|t| t.secs());
            // Only without an ETag: stores differ in Last-Modified between listing and GET.
            let pinned_by_etag = version.is_some() && sent.is_some();
            if let Some(now) = modified.filter(|now| !pinned_by_etag && mtime > 0 && *now != mtime)
            {
                return Err(ReadFault::io(
                    ReadFaultKind::Changed,
                    format!(
                        "GET `{key}`: the object was modified at {now}, listed at {mtime} \
                         (SIZE_NOT_MATCH: rewritten after it was listed)"
                    ),
                ));
            }
            // A server that ignored Range sends the object from byte 0: wrong for any part
            // but the first, whatever its length.
            if offset > 0 && out.content_range().is_none() {
                return Err(io::Error::other(format!(
                    "GET `{key}`: the source server ignored the Range header; raise multipartUploadThreshold above this object's size to copy it in one request"
                )));
            }
            let chunks = stream::unfold(Some(out.body), move |body| async move {
                let mut body = body?;
                match body.next().await {
                    Some(Ok(bytes)) => Some((Ok(bytes), Some(body))),
                    Some(Err(e)) => Some((Err(io::Error::other(e)), None)),
                    None => None,
                }
            });
            Ok(chunks.boxed())
        })
    }
}
