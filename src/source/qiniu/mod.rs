//! The Qiniu Kodo source (`srcType=qiniu`), on Qiniu's public HTTP APIs signed by hand.
//!
//! `srcDomain` is the bucket's download domain; listing and stat go to the rsf and rs API
//! hosts ([`api_hosts`]). Scan units are key prefixes found by `/list` with a `/` delimiter
//! down to `maxMultiThreadScanDepth`, each listed in key order page by page (the marker is
//! opaque, so a resumed unit lists again from its start and skips what it had sent). Bodies
//! are GETs of a private download URL (`e` + `token`, so private buckets work), ranged for
//! multipart, pinned to the listed hash: the download answers with `ETag: "<hash>"`.
//! `getObjectMetaMode` picks how an object is looked at again: `stat` asks rs `/stat`, `head`
//! sends HEAD to the download URL.

mod api;
pub mod sign;

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::{StreamExt, TryStreamExt};
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, ETAG, LAST_MODIFIED};
use tokio::sync::mpsc::Sender;

pub use api::QiniuSettings;
use api::{Conn, Failed, Item};

use super::endpoint::{key_prefix, prefixed_key, unprefixed};
use super::rest;
use super::{
    Body, LIST_BATCH, ListBatch, Probe, RelPath, Resume, ScanUnit, Scope, Source, SourceObject,
};
use crate::config::ObjectMetaMode;
use crate::error::{Error, Result};
use crate::payload::{ByteStream, ReadFault, ReadFaultKind, Reopen};

/// Qiniu's own hosts when the environment names none: the global rs and rsf hosts, which
/// serve buckets of every region.
const RS_HOST: &str = "https://rs.qbox.me";
const RSF_HOST: &str = "https://rsf.qbox.me";

/// Keys per listing page, the most `/list` gives.
const PAGE: u32 = 1000;

/// The rs and rsf API hosts: `OSSIMPORT_QINIU_RS_HOST` / `OSSIMPORT_QINIU_RSF_HOST` when set
/// (a private deployment, another region's hosts), Qiniu's global hosts otherwise.
pub fn api_hosts() -> (String, String) {
    let host = |var: &str, default: &str| {
        std::env::var(var)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    (
        host("OSSIMPORT_QINIU_RS_HOST", RS_HOST),
        host("OSSIMPORT_QINIU_RSF_HOST", RSF_HOST),
    )
}

pub struct QiniuSource {
    conn: Arc<Conn>,
    /// `srcPrefix` as a key prefix; relative paths are keys without it.
    prefix: String,
    meta_mode: ObjectMetaMode,
}

impl QiniuSource {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(at: QiniuSettings, src_prefix: &str, meta_mode: ObjectMetaMode) -> Result<Self> {
        Ok(QiniuSource {
            conn: Arc::new(Conn::new(at)?),
            prefix: key_prefix(src_prefix),
            meta_mode,
        })
    }

    fn key(&self, rel: &RelPath) -> String {
        prefixed_key(&self.prefix, rel)
    }

    fn rel(&self, key: &str) -> RelPath {
        unprefixed(&self.prefix, key)
    }

    fn object(&self, item: &Item) -> SourceObject {
        let mut obj = SourceObject::new(
            self.rel(&item.key),
            item.fsize,
            // putTime counts 100 ns.
            (item.put_time / 10_000_000) as i64,
        );
        obj.version = Some(item.hash.clone());
        obj.md5 = item
            .md5
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|m| crate::payload::is_md5_hex(m));
        obj
    }

    /// The folders directly under `dir`, as relative paths ending in `/`.
    async fn subfolders(&self, dir: &RelPath) -> Result<Vec<RelPath>> {
        let prefix = self.key(dir);
        let (mut out, mut marker) = (Vec::new(), String::new());
        loop {
            let page = self
                .conn
                .list(&prefix, true, &marker, PAGE)
                .await
                .map_err(source_error)?;
            for p in &page.common_prefixes {
                let rel = self.rel(p);
                if out.last() != Some(&rel) {
                    out.push(rel);
                }
            }
            if page.marker.is_empty() {
                return Ok(out);
            }
            if page.marker == marker {
                return Err(repeated_marker(&prefix));
            }
            marker = page.marker;
        }
    }

    /// Looks at `key` by HEAD of its download URL.
    async fn head(&self, path: &RelPath, key: &str) -> Result<Probe> {
        let resp = self
            .conn
            .download(Method::HEAD, key, None)
            .await
            .map_err(source_error)?;
        let Some(resp) = resp else {
            return Ok(Probe::Missing);
        };
        let h = resp.headers();
        let text = |name| {
            h.get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
        };
        let size = text(CONTENT_LENGTH)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Error::Source(format!(
                    "HEAD {}: the download domain gives no Content-Length",
                    sign::public_url(&self.conn.at.download, key)
                ))
            })?;
        let mtime = text(LAST_MODIFIED).map_or(0, rest::mtime);
        let mut obj = SourceObject::new(path.clone(), size, mtime);
        obj.version = text(ETAG).map(|e| e.trim_matches('"').to_string());
        Ok(Probe::Present(obj))
    }
}

fn source_error(f: Failed) -> Error {
    Error::Source(f.message)
}

#[async_trait]
impl Source for QiniuSource {
    fn ride_outages(&self, outage: std::sync::Arc<crate::outage::Outage>) {
        self.conn.retry.ride_outages(outage);
    }

    async fn check(&self) -> Result<()> {
        let c = &self.conn;
        let bucket = &c.at.bucket;
        let page = c.list(&self.prefix, false, "", 1).await.map_err(|f| {
            let hint = match f.status {
                Some(401 | 403) => "check srcAccessKey/srcSecretKey",
                Some(631) => "check srcBucket",
                _ => {
                    "check that the Qiniu API hosts are reachable (OSSIMPORT_QINIU_RS_HOST / \
                     OSSIMPORT_QINIU_RSF_HOST when set)"
                }
            };
            Error::Source(format!("bucket `{bucket}`: {}; {hint}", f.message))
        })?;
        // The download domain is only used for the bytes: try it on the first object.
        if let Some(item) = page.items.first() {
            c.download(Method::HEAD, &item.key, None)
                .await
                .map_err(|f| {
                    let hint = match f.status {
                        Some(401 | 403) => {
                            "check that srcDomain is a download domain of this bucket and \
                             srcAccessKey/srcSecretKey"
                        }
                        _ => "check srcDomain (the bucket's download domain) is reachable",
                    };
                    Error::Source(format!("bucket `{bucket}`: {}; {hint}", f.message))
                })?;
        }
        Ok(())
    }

    async fn scan_units(&self, max_depth: u32) -> Result<Vec<ScanUnit>> {
        let this = self;
        super::folder_units(max_depth, |dir| async move { this.subfolders(&dir).await }).await
    }

    async fn list(&self, unit: &ScanUnit, resume: Resume, out: Sender<ListBatch>) -> Result<()> {
        let Scope::Tree { dir, recursive } = &unit.scope else {
            return Err(Error::Internal(format!("not a qiniu unit: {}", unit.id)));
        };
        let prefix = self.key(dir);
        // Keys come in byte order: everything up to the checkpoint's key was sent before.
        let after = resume.after.as_ref().map(|a| self.key(a));
        let mut marker = String::new();
        loop {
            let page = self
                .conn
                .list(&prefix, !recursive, &marker, PAGE)
                .await
                .map_err(source_error)?;
            let fresh = page
                .items
                .iter()
                .filter(|i| after.as_ref().is_none_or(|a| i.key.as_str() > a.as_str()));
            let mut batch: ListBatch = Vec::with_capacity(LIST_BATCH);
            for item in fresh {
                batch.push(Ok(self.object(item)));
                if batch.len() == LIST_BATCH && out.send(std::mem::take(&mut batch)).await.is_err()
                {
                    return Ok(());
                }
            }
            if !batch.is_empty() && out.send(batch).await.is_err() {
                return Ok(());
            }
            if page.marker.is_empty() {
                return Ok(());
            }
            if page.marker == marker {
                return Err(repeated_marker(&prefix));
            }
            marker = page.marker;
        }
    }

    async fn probe(&self, listed: &SourceObject) -> Result<Probe> {
        let key = self.key(&listed.path);
        match self.meta_mode {
            ObjectMetaMode::Head => self.head(&listed.path, &key).await,
            ObjectMetaMode::Stat => match self.conn.stat(&key).await.map_err(source_error)? {
                None => Ok(Probe::Missing),
                Some(mut item) => {
                    item.key = key;
                    Ok(Probe::Present(self.object(&item)))
                }
            },
        }
    }

    fn pins_reads(&self) -> bool {
        true
    }

    async fn open(&self, obj: &SourceObject, offset: u64, len: u64) -> Result<Body> {
        let key = self.key(&obj.path);
        let what = format!(
            "source object `{}`",
            sign::public_url(&self.conn.at.download, &key)
        );
        let range = KeyRange {
            conn: self.conn.clone(),
            key,
            whole: offset == 0 && len == obj.size,
            hash: obj.version.clone(),
            size: obj.size,
            offset,
            len,
        };
        Ok(Body::new(Arc::new(range), len, what))
    }
}

/// A byte range of one version of an object.
struct KeyRange {
    conn: Arc<Conn>,
    key: String,
    /// The whole object: no Range header.
    whole: bool,
    /// The hash it was listed with; the download's ETag must be the same.
    hash: Option<String>,
    size: u64,
    offset: u64,
    len: u64,
}

impl Reopen for KeyRange {
    fn open(&self) -> BoxFuture<'static, std::io::Result<ByteStream>> {
        let (conn, key, hash) = (self.conn.clone(), self.key.clone(), self.hash.clone());
        let (offset, size) = (self.offset, self.size);
        let range = (!self.whole)
            .then(|| format!("bytes={offset}-{}", (offset + self.len).saturating_sub(1)));
        Box::pin(async move {
            let shown = sign::public_url(&conn.at.download, &key);
            let resp = conn
                .download(Method::GET, &key, range.as_deref())
                .await
                .map_err(|f| {
                    let (kind, why) = match f.status {
                        Some(416) => (
                            ReadFaultKind::Changed,
                            " (SIZE_NOT_MATCH: shorter than when it was listed)",
                        ),
                        Some(401 | 403) => (
                            ReadFaultKind::Refused,
                            " (READ_ERROR: the download domain refused the read)",
                        ),
                        _ => return std::io::Error::other(f.message),
                    };
                    ReadFault::io(kind, format!("{}{why}", f.message))
                })?
                .ok_or_else(|| {
                    ReadFault::io(
                        ReadFaultKind::Deleted,
                        format!("GET {shown}: 404 (FILE_NOT_FOUND: deleted after it was listed)"),
                    )
                })?;
            let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
            let sent = header(ETAG).map(|e| e.trim_start_matches("W/").trim_matches('"'));
            // The worker trusts these reads to be pinned (no look before and after a copy), so
            // an answer that cannot prove it is the listed version is not taken.
            if let (None, Some(listed)) = (sent, hash.as_deref()) {
                return Err(ReadFault::io(
                    ReadFaultKind::Refused,
                    format!(
                        "GET {shown}: the download domain sent no ETag, so the object cannot be \
                         proved to be the one listed (hash {listed}) (READ_ERROR); use the \
                         bucket's own download domain as srcDomain"
                    ),
                ));
            }
            if let (Some(sent), Some(listed)) = (sent, hash.as_deref())
                && sent != listed
            {
                return Err(ReadFault::io(
                    ReadFaultKind::Changed,
                    format!(
                        "GET {shown}: the object was rewritten after it was listed (hash \
                         {listed} then, {sent} now) (SIZE_NOT_MATCH)"
                    ),
                ));
            }
            rest::check_answer(&resp, range.as_deref(), size, &format!("GET {shown}"))?;
            Ok(resp
                .bytes_stream()
                .map_err(|e| std::io::Error::other(e.without_url().to_string()))
                .boxed())
        })
    }
}

/// A page that points at itself would end the listing early, or never (a server fault).
fn repeated_marker(prefix: &str) -> Error {
    Error::Source(format!(
        "the list API answered the same marker twice under `{prefix}`; the listing cannot go on"
    ))
}
