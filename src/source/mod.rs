//! The one trait every source implements, the neutral types it speaks, and the function that
//! picks a source by `srcType`.
//!
//! A source lists itself in [`ScanUnit`]s of its own kind (local folders, key prefixes, ranges
//! of lines of a URL list), looks at one object again ([`Source::probe`]) and opens a byte
//! range of it as a [`Body`] that can be read again for each attempt. The worker, the
//! verification and the destination never know which source they talk to.

pub mod azure;
pub mod endpoint;
pub mod http;
pub mod httplist;
pub mod local;
pub mod qiniu;
pub(crate) mod rest;
pub mod s3;
pub mod upyun;

use async_trait::async_trait;

pub use crate::payload::Body;
pub use crate::relpath::RelPath;

use crate::config::{JobConfig, SrcType};
use crate::error::{Error, Result};
use endpoint::{S3Vendor, s3_endpoint};

/// Listed objects travel in batches: one channel hand-off per entry would cost more than the
/// `stat` behind it.
pub type ListBatch = Vec<Result<SourceObject>>;

/// Entries per [`ListBatch`].
pub const LIST_BATCH: usize = 1024;

/// One object of the source as the listing (or a probe) saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    pub path: RelPath,
    pub size: u64,
    /// Last modification, unix seconds (the precision every source gives).
    pub mtime: i64,
    /// The source's own change marker when it has one (an object store's ETag, an HTTP
    /// server's ETag): a different marker means different bytes, even at the same size.
    pub version: Option<String>,
    /// CRC-64/XZ of the content as the source reports it (OSS `x-oss-hash-crc64ecma`).
    pub crc64: Option<u64>,
    /// MD5 of the content as the source reports it (hex): a single-part S3 ETag, a blob's
    /// Content-MD5. Only probes fill it; it is not kept in TASK files.
    pub md5: Option<String>,
    /// Where the source finds the object when its path does not say (an http list's URL).
    pub locator: Option<String>,
}

impl SourceObject {
    /// An object known by path, size and mtime only (a local file).
    pub fn new(path: RelPath, size: u64, mtime: i64) -> SourceObject {
        SourceObject {
            path,
            size,
            mtime,
            version: None,
            crc64: None,
            md5: None,
            locator: None,
        }
    }

    /// True when `now` is still the object that was listed as `self`.
    pub fn same_as(&self, now: &SourceObject) -> bool {
        match (&self.version, &now.version) {
            // The ETag names the bytes; Last-Modified may differ between a store's listing and
            // its HEAD, so it decides only where there is no ETag. Servers differ in quoting.
            (Some(a), Some(b)) => {
                self.size == now.size && a.trim_matches('"') == b.trim_matches('"')
            }
            _ => self.size == now.size && self.mtime == now.mtime,
        }
    }
}

/// What a scan unit covers, in the terms of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Local: a folder relative to `srcPrefix`. Object stores: a key prefix relative to
    /// `srcPrefix`, ending in `/` unless empty.
    Tree {
        dir: RelPath,
        /// False: only the entries directly in `dir`; true: the whole subtree.
        recursive: bool,
    },
    /// A URL list: `count` lines from line `first` (1-based), which starts at `offset`.
    Lines { first: u64, offset: u64, count: u64 },
}

/// A part of the job's listing that can be scanned on its own, in parallel with the others,
/// with its own checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanUnit {
    /// Stable identity of the unit (its checkpoint file is named by a hash of it).
    pub id: String,
    pub scope: Scope,
}

impl ScanUnit {
    /// A folder or key prefix: `files:<dir>` (its direct entries) or `tree:<dir>` (all below).
    pub fn tree(dir: RelPath, recursive: bool) -> ScanUnit {
        let kind = if recursive { "tree" } else { "files" };
        ScanUnit {
            id: format!("{kind}:{dir}"),
            scope: Scope::Tree { dir, recursive },
        }
    }
}

/// Where a unit's listing resumes after a restart: after the last persisted object, which
/// was the `seen`-th entry the listing gave (sources whose order is not by path use that).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub after: Option<RelPath>,
    pub seen: u64,
}

/// An object's bucket and key in its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLocation {
    pub bucket: String,
    pub key: String,
}

/// What the worker learned when it looked at a file again just before sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Present(SourceObject),
    Missing,
}

#[async_trait]
pub trait Source: Send + Sync {
    /// Checks, before any work starts, that the source can be read with the job's settings
    /// and keys; a failure here aborts the job with one reason instead of failing every file.
    ///
    /// # Errors
    /// When the source is unreachable, the keys are wrong or the bucket does not exist.
    async fn check(&self) -> Result<()>;

    /// The units the listing is split into, scanned in parallel by `scanThreadCount` threads;
    /// levels down to `max_depth` (`maxMultiThreadScanDepth`) become units of their own.
    ///
    /// # Errors
    /// When the source root cannot be read.
    async fn scan_units(&self, max_depth: u32) -> Result<Vec<ScanUnit>>;

    /// Lists `unit` in a stable order, from `resume` on, sending each object to `out`.
    /// Stops early, without error, when `out` is closed.
    ///
    /// # Errors
    /// On a listing failure that loses the rest of the unit.
    async fn list(
        &self,
        unit: &ScanUnit,
        resume: Resume,
        out: tokio::sync::mpsc::Sender<ListBatch>,
    ) -> Result<()>;

    /// For an entry the listing could not read, which `retry` put back: the unit that lists it
    /// again when it is a folder or prefix, or `None` when it is one object, sent again as is.
    ///
    /// # Errors
    /// When the entry cannot be inspected.
    async fn relist_unit(&self, _entry: &SourceObject) -> Result<Option<ScanUnit>> {
        Ok(None)
    }

    /// Looks at one object again (the worker does this right before sending it); `obj` is
    /// the object as listed.
    ///
    /// # Errors
    /// When the object exists but cannot be inspected (permissions, I/O, the network).
    async fn probe(&self, obj: &SourceObject) -> Result<Probe>;

    /// From now on, outages of a remote source are waited out by its requests (the service
    /// calls it once the job's start checks passed); a local folder has none.
    fn ride_outages(&self, _outage: std::sync::Arc<crate::outage::Outage>) {}

    /// True when every read of an object checks, from the answer itself, that it is the
    /// version that was listed (ETag, size, last-modified) and fails with SIZE_NOT_MATCH or
    /// FILE_NOT_FOUND otherwise: the worker then needs no look before and after a copy.
    fn pins_reads(&self) -> bool {
        false
    }

    /// Where `obj` lives when the source is an object store: its bucket and key, so a job
    /// whose destination is the same store can copy it server-side.
    fn location(&self, _obj: &SourceObject) -> Option<ObjectLocation> {
        None
    }

    /// The bytes `offset..offset+len` of `obj`, as listed or probed. Sources with a change
    /// marker read exactly that version, so a rewrite in between fails instead of mixing two.
    ///
    /// # Errors
    /// When the object cannot be opened.
    async fn open(&self, obj: &SourceObject, offset: u64, len: u64) -> Result<Body>;
}

/// The scan units of a store with folders (key prefixes): each folder above `max_depth` lists
/// its direct entries, each folder at `max_depth` its whole subtree, so `scanThreadCount`
/// scanners can work side by side. `subfolders` names the folders directly in one.
///
/// # Errors
/// The first error of `subfolders`.
pub(crate) async fn folder_units<F, Fut>(max_depth: u32, mut subfolders: F) -> Result<Vec<ScanUnit>>
where
    F: FnMut(RelPath) -> Fut,
    Fut: Future<Output = Result<Vec<RelPath>>>,
{
    let mut units = Vec::new();
    let mut level = vec![RelPath(Vec::new())];
    for _ in 0..max_depth.max(1) {
        let mut next = Vec::new();
        for dir in level {
            next.extend(subfolders(dir.clone()).await?);
            units.push(ScanUnit::tree(dir, false));
        }
        level = next;
    }
    units.extend(level.into_iter().map(|dir| ScanUnit::tree(dir, true)));
    Ok(units)
}

/// The S3 dialect of a source type, for the types that speak S3.
pub fn s3_vendor(src_type: SrcType) -> Option<S3Vendor> {
    match src_type {
        SrcType::Oss => Some(S3Vendor::Oss),
        SrcType::S3 => Some(S3Vendor::S3),
        SrcType::Cos => Some(S3Vendor::Cos),
        SrcType::Bos => Some(S3Vendor::Bos),
        SrcType::Ks3 => Some(S3Vendor::Ks3),
        _ => None,
    }
}

/// True when the job's source is the destination's own store (same endpoint, same keys), so
/// objects can be copied server-side instead of streamed through this machine.
pub fn same_store(job: &JobConfig) -> bool {
    let Some(vendor) = s3_vendor(job.src_type) else {
        return false;
    };
    let Ok(at) = s3_endpoint(vendor, &job.src_domain, &job.src_bucket, job.app_id) else {
        return false;
    };
    let norm = |u: &str| u.trim_end_matches('/').to_ascii_lowercase();
    norm(&at.url) == norm(&job.dest_domain)
        && job.src_access_key.expose() == job.dest_access_key.expose()
        && job.src_secret_key.expose() == job.dest_secret_key.expose()
}

/// Picks the source for the job's `srcType`.
///
/// # Errors
/// For source types this version does not support yet, and settings a source refuses.
pub fn open_source(job: &JobConfig) -> Result<Box<dyn Source>> {
    let vendor = match job.src_type {
        SrcType::Local => {
            return Ok(Box::new(local::LocalSource::new(
                std::path::PathBuf::from(&job.src_prefix),
                job.is_allow_symbolic_link,
            )));
        }
        SrcType::Http => {
            return Ok(Box::new(http::HttpSource::new(
                std::path::PathBuf::from(&job.http_list_file_path),
                // Incremental mode rescans the list each round: lines may be added between
                // rounds, and each round lists the whole file again under its own checkpoints.
                if job.is_incremental {
                    String::new()
                } else {
                    job.http_list_stamp.clone()
                },
                job.http_prefix_column,
                job.relative_path_column,
                job.task_object_count_limit,
            )?));
        }
        SrcType::Azure => {
            return Ok(Box::new(azure::AzureSource::new(
                &job.src_domain,
                job.src_access_key.expose(),
                job.src_secret_key.expose(),
                &job.src_bucket,
                &job.src_prefix,
            )?));
        }
        SrcType::Youpai => {
            return Ok(Box::new(upyun::UpyunSource::new(
                &job.src_domain,
                &job.src_bucket,
                &job.src_prefix,
                job.src_access_key.expose(),
                job.src_secret_key.expose(),
                job.is_download_from_cdn.then_some(job.cdn_domain.as_str()),
            )?));
        }
        SrcType::Qiniu => {
            let (rs, rsf) = qiniu::api_hosts();
            let at = qiniu::QiniuSettings {
                download: job.src_domain.trim().to_string(),
                rs,
                rsf,
                bucket: job.src_bucket.trim().to_string(),
                access_key: job.src_access_key.expose().to_string(),
                secret_key: job.src_secret_key.expose().to_string(),
            };
            return Ok(Box::new(qiniu::QiniuSource::new(
                at,
                &job.src_prefix,
                job.get_object_meta_mode,
            )?));
        }
        other => s3_vendor(other).ok_or_else(|| {
            Error::Source(format!(
                "srcType={other} is not supported yet by ossimport-rs"
            ))
        })?,
    };
    let at = s3_endpoint(vendor, &job.src_domain, &job.src_bucket, job.app_id)
        .map_err(|e| Error::Source(e.message))?;
    Ok(Box::new(s3::S3Source::new(
        &at,
        &job.src_prefix,
        job.src_access_key.expose(),
        job.src_secret_key.expose(),
    )))
}
