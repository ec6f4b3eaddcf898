//! The UPYUN source (`srcType=youpai`): UPYUN's REST API at `srcDomain`, service `srcBucket`,
//! operator `srcAccessKey` with password `srcSecretKey`.
//!
//! UPYUN has real folders and lists one folder at a time ("获取目录文件列表", paged with
//! `x-list-iter`), so the scan units are folders: those above `maxMultiThreadScanDepth` list
//! their own files, the deepest ones their whole subtree, walked depth first in the name order
//! UPYUN lists each folder in. A unit resumes by walking again and skipping up to the last
//! persisted entry (the original could not resume a youpai listing at all). Bodies are GETs,
//! ranged for the parts of a large file, from the API or, with `isDownloadFromCdn`, from
//! `cdnDomain` + path. The signed requests are in `api`.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::mpsc::Sender;

mod api;

use super::{
    Body, LIST_BATCH, ListBatch, Probe, RelPath, Resume, ScanUnit, Scope, Source, SourceObject,
};
use crate::error::{Error, Result};
use crate::payload::{ByteStream, ReadFault, ReadFaultKind, Reopen};
use crate::source::endpoint::{prefixed_key, unprefixed};
use crate::source::rest;
use api::{Api, Entry, Failed, LIST_LIMIT};

pub struct UpyunSource {
    api: Arc<Api>,
    /// `srcPrefix` as a path in the service; relative paths are paths without it.
    prefix: String,
    /// `cdnDomain` when `isDownloadFromCdn=true`: bodies come from there, unsigned.
    cdn: Option<String>,
}

impl UpyunSource {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        domain: &str,
        service: &str,
        src_prefix: &str,
        operator: &str,
        password: &str,
        cdn: Option<&str>,
    ) -> Result<UpyunSource> {
        Ok(UpyunSource {
            api: Arc::new(Api::new(domain, service, operator, password)?),
            prefix: src_prefix.trim_start_matches('/').to_string(),
            cdn: cdn.map(|c| {
                let c = c.trim().trim_end_matches('/');
                // The original's template calls it a host ("cdnHost+key"): a bare host is http.
                if c.contains("://") {
                    c.to_string()
                } else {
                    format!("http://{c}")
                }
            }),
        })
    }

    fn key(&self, rel: &RelPath) -> String {
        prefixed_key(&self.prefix, rel)
    }

    fn rel(&self, key: &str) -> RelPath {
        unprefixed(&self.prefix, key)
    }

    /// The folder that lists `dir` and the start its entries' names must have there: a
    /// srcPrefix that does not end in `/` is a name prefix in its parent folder.
    fn folder(&self, dir: &RelPath) -> Frame {
        let full = self.key(dir);
        let cut = full.rfind('/').map_or(0, |i| i + 1);
        Frame::new(full[..cut].to_string(), full[cut..].to_string())
    }

    /// The next page of `frame`'s folder into its pending entries.
    async fn fill(&self, frame: &mut Frame) -> Result<()> {
        let page = self
            .api
            .page(&frame.folder, frame.iter.as_deref(), LIST_LIMIT)
            .await
            .map_err(|f| Error::Source(f.message))?;
        match page {
            // Gone since it was found (or srcPrefix names none): nothing to list.
            None => frame.done = true,
            Some(page) => {
                // A page that points at itself would be listed forever (a server fault).
                if page.next.is_some() && page.next == frame.iter {
                    return Err(Error::Source(format!(
                        "UPYUN answered the same x-upyun-list-iter twice for folder `{}`; the \
                         listing cannot go on",
                        frame.folder
                    )));
                }
                frame.done = page.next.is_none();
                frame.iter = page.next;
                let start = &frame.name_start;
                frame.pending = page
                    .entries
                    .into_iter()
                    .filter(|e| !e.name.is_empty() && e.name.starts_with(start.as_str()))
                    .collect();
            }
        }
        Ok(())
    }

    /// The folders directly in `dir`, as relative folders (`a/b/`).
    async fn subfolders(&self, dir: &RelPath) -> Result<Vec<RelPath>> {
        let mut frame = self.folder(dir);
        let mut out = Vec::new();
        loop {
            self.fill(&mut frame).await?;
            for e in frame.pending.drain(..).filter(Entry::is_folder) {
                out.push(self.rel(&format!("{}{}/", frame.folder, e.name)));
            }
            if frame.done {
                return Ok(out);
            }
        }
    }

    /// Lists `dir` (and below when `recursive`) into `out`, leaving out what `skip` skips;
    /// false when `out` was closed.
    async fn walk(
        &self,
        dir: &RelPath,
        recursive: bool,
        skip: &mut Skip,
        out: &Sender<ListBatch>,
    ) -> Result<bool> {
        let mut stack = vec![self.folder(dir)];
        let mut batch = Vec::with_capacity(LIST_BATCH);
        while let Some(top) = stack.last_mut() {
            let Some(entry) = top.pending.pop_front() else {
                if top.done {
                    stack.pop();
                } else {
                    self.fill(top).await?;
                }
                continue;
            };
            let key = format!("{}{}", top.folder, entry.name);
            if entry.is_folder() {
                // Depth first: the subfolder's entries come before the rest of this folder's,
                // an order that is the same on every walk.
                if recursive {
                    stack.push(Frame::new(format!("{key}/"), String::new()));
                }
                continue;
            }
            let obj = SourceObject::new(self.rel(&key), entry.length, entry.last_modified);
            if skip.skips(&obj.path) {
                continue;
            }
            batch.push(Ok(obj));
            if batch.len() >= LIST_BATCH && out.send(std::mem::take(&mut batch)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(batch.is_empty() || out.send(batch).await.is_ok())
    }
}

/// A folder being listed: where its next page starts and the entries not yet handled.
struct Frame {
    /// The folder's path in the service, ending in `/` (empty: the service's root).
    folder: String,
    name_start: String,
    iter: Option<String>,
    done: bool,
    pending: VecDeque<Entry>,
}

impl Frame {
    fn new(folder: String, name_start: String) -> Frame {
        Frame {
            folder,
            name_start,
            iter: None,
            done: false,
            pending: VecDeque::new(),
        }
    }
}

/// Where a resumed walk starts: after the entry `after`, or, when that one is gone, after
/// the first `seen` entries.
struct Skip {
    after: Option<RelPath>,
    count: u64,
    passed: u64,
    active: bool,
}

impl Skip {
    fn new(resume: &Resume) -> Skip {
        Skip {
            active: resume.after.is_some() || resume.seen > 0,
            after: resume.after.clone(),
            count: resume.seen,
            passed: 0,
        }
    }

    fn by_count(seen: u64) -> Skip {
        Skip {
            after: None,
            count: seen,
            passed: 0,
            active: seen > 0,
        }
    }

    /// True for an entry that was listed before the restart.
    fn skips(&mut self, path: &RelPath) -> bool {
        if !self.active {
            return false;
        }
        self.passed += 1;
        let last = match &self.after {
            Some(after) => after == path,
            None => self.passed >= self.count,
        };
        self.active = !last;
        true
    }

    /// The walk ended without meeting `after`: it was deleted since.
    fn missed(&self) -> bool {
        self.active && self.after.is_some()
    }
}

fn check_error(api: &Api, prefix: &str, f: Failed) -> Error {
    let hint = match (f.status, f.code) {
        (_, Some(40100002 | 40100016)) | (_, Some(40100001)) => {
            "check this machine's clock: UPYUN refuses a request whose Date is more than 30 \
             minutes off"
        }
        (_, Some(40100012..=40100014)) => "check srcBucket (the UPYUN service name)",
        (_, Some(40100007 | 40100008 | 40100017)) | (Some(403), _) => {
            "the operator may not read this service: grant it in UPYUN's console, or use \
             another operator"
        }
        (Some(401), _) => "check srcAccessKey (the UPYUN operator) and srcSecretKey (its password)",
        _ => {
            "check srcDomain (UPYUN's REST API, such as http://v0.api.upyun.com) and that it is reachable"
        }
    };
    Error::Source(format!(
        "UPYUN service `{}` at {} (srcPrefix `{prefix}`): {}; {hint}",
        api.service,
        api.domain(),
        f.message
    ))
}

#[async_trait]
impl Source for UpyunSource {
    fn ride_outages(&self, outage: std::sync::Arc<crate::outage::Outage>) {
        self.api.retry.ride_outages(outage);
    }

    async fn check(&self) -> Result<()> {
        let frame = self.folder(&RelPath(Vec::new()));
        match self.api.page(&frame.folder, None, 1).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::Source(format!(
                "UPYUN service `{}` has no folder `/{}`; check srcPrefix (a folder of the \
                 service, ending in /) and srcBucket",
                self.api.service, frame.folder
            ))),
            Err(f) => Err(check_error(&self.api, &self.prefix, f)),
        }
    }

    async fn scan_units(&self, max_depth: u32) -> Result<Vec<ScanUnit>> {
        let this = self;
        super::folder_units(max_depth, |dir| async move { this.subfolders(&dir).await }).await
    }

    async fn list(&self, unit: &ScanUnit, resume: Resume, out: Sender<ListBatch>) -> Result<()> {
        let Scope::Tree { dir, recursive } = &unit.scope else {
            return Err(Error::Internal(format!("not a folder unit: {}", unit.id)));
        };
        let mut skip = Skip::new(&resume);
        let open = self.walk(dir, *recursive, &mut skip, &out).await?;
        if open && skip.missed() {
            self.walk(dir, *recursive, &mut Skip::by_count(resume.seen), &out)
                .await?;
        }
        Ok(())
    }

    async fn probe(&self, listed: &SourceObject) -> Result<Probe> {
        match self.api.head(&self.key(&listed.path)).await {
            Ok(Some(head)) if !head.folder => Ok(Probe::Present(SourceObject::new(
                listed.path.clone(),
                head.size,
                head.mtime,
            ))),
            Ok(_) => Ok(Probe::Missing),
            Err(f) => Err(Error::Source(f.message)),
        }
    }

    async fn open(&self, obj: &SourceObject, offset: u64, len: u64) -> Result<Body> {
        let key = self.key(&obj.path);
        let what = format!("UPYUN file `/{}/{key}`", self.api.service);
        let range = FileRange {
            api: self.api.clone(),
            key,
            cdn: self.cdn.clone(),
            whole: offset == 0 && len == obj.size,
            size: obj.size,
            offset,
            len,
        };
        Ok(Body::new(Arc::new(range), len, what))
    }
}

/// A byte range of one file, from the API or the CDN.
struct FileRange {
    api: Arc<Api>,
    key: String,
    cdn: Option<String>,
    /// The whole file: no Range header.
    whole: bool,
    /// The file's size as listed or probed.
    size: u64,
    offset: u64,
    len: u64,
}

impl Reopen for FileRange {
    fn open(&self) -> BoxFuture<'static, io::Result<ByteStream>> {
        let (api, key, cdn, size) = (
            self.api.clone(),
            self.key.clone(),
            self.cdn.clone(),
            self.size,
        );
        let range = (!self.whole).then(|| {
            format!(
                "bytes={}-{}",
                self.offset,
                (self.offset + self.len).saturating_sub(1)
            )
        });
        Box::pin(async move {
            let resp = api
                .get(&key, cdn.as_deref(), range.clone())
                .await
                .map_err(|f| {
                    // Answers that will be the same on every try stop the retries.
                    let (kind, why) = match f.status {
                        Some(416) => (
                            ReadFaultKind::Changed,
                            " (SIZE_NOT_MATCH: shorter than when it was listed)",
                        ),
                        Some(401 | 403) => (
                            ReadFaultKind::Refused,
                            " (READ_ERROR: the source refused the read)",
                        ),
                        _ => return io::Error::other(f.message),
                    };
                    ReadFault::io(kind, format!("{}{why}", f.message))
                })?
                .ok_or_else(|| {
                    ReadFault::io(
                        ReadFaultKind::Deleted,
                        format!("GET `{key}`: 404 (FILE_NOT_FOUND: deleted after it was listed)"),
                    )
                })?;
            rest::check_answer(&resp, range.as_deref(), size, &format!("GET `{key}`"))?;
            Ok(rest::byte_stream(resp))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath(s.as_bytes().to_vec())
    }

    #[test]
    fn a_resumed_walk_skips_through_the_last_entry_or_by_count_when_it_is_gone() {
        let mut skip = Skip::new(&Resume {
            after: Some(rel("b")),
            seen: 2,
        });
        let kept: Vec<&str> = ["a", "b", "c"]
            .into_iter()
            .filter(|p| !skip.skips(&rel(p)))
            .collect();
        assert_eq!(kept, ["c"]);
        assert!(!skip.missed());
        let mut gone = Skip::new(&Resume {
            after: Some(rel("x")),
            seen: 2,
        });
        assert!(["a", "c"].iter().all(|p| gone.skips(&rel(p))) && gone.missed());
        let mut count = Skip::by_count(2);
        let kept: Vec<&str> = ["a", "c", "d"]
            .into_iter()
            .filter(|p| !count.skips(&rel(p)))
            .collect();
        assert_eq!(kept, ["d"]);
    }

    #[test]
    fn a_prefix_without_a_slash_is_a_name_start_in_its_folder() {
        let src = UpyunSource::new(
            "http://h",
            "svc",
            "docs/a",
            "op",
            "pw",
            Some("cdn.example.com/"),
        )
        .unwrap();
        let f = src.folder(&rel(""));
        assert_eq!((f.folder.as_str(), f.name_start.as_str()), ("docs/", "a"));
        let f = src.folder(&rel("bc/"));
        assert_eq!(
            (f.folder.as_str(), f.name_start.as_str()),
            ("docs/abc/", "")
        );
        assert_eq!(src.cdn.as_deref(), Some("http://cdn.example.com"));
        assert_eq!(src.rel("docs/abc/x"), rel("bc/x"));
    }
}
