//! The one trait every source implements, the neutral types it speaks, and the function that
//! picks a source by `srcType`.

pub mod local;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{JobConfig, SrcType};
use crate::error::{Error, Result};
use crate::throttle::RateLimiter;

/// A file's path relative to `srcPrefix`, `/`-separated. Bytes, because a local file name
/// need not be UTF-8; whether it makes a valid OSS key is decided by [`crate::key`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(pub Vec<u8>);

impl RelPath {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Order of a sorted depth-first walk: component by component, so `a/b` < `a-c`.
    pub fn walk_cmp(&self, other: &RelPath) -> std::cmp::Ordering {
        self.0
            .split(|b| *b == b'/')
            .cmp(other.0.split(|b| *b == b'/'))
    }

    /// `self` joined with a child name.
    pub fn join(&self, name: &[u8]) -> RelPath {
        if self.0.is_empty() {
            return RelPath(name.to_vec());
        }
        let mut v = Vec::with_capacity(self.0.len() + 1 + name.len());
        v.extend_from_slice(&self.0);
        v.push(b'/');
        v.extend_from_slice(name);
        RelPath(v)
    }

    /// True when `self` is `dir` or lies under it.
    pub fn is_within(&self, dir: &RelPath) -> bool {
        dir.0.is_empty()
            || self.0 == dir.0
            || (self.0.starts_with(&dir.0) && self.0.get(dir.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::task::escape::escape(&self.0))
    }
}

/// Listed objects travel in batches: one channel hand-off per entry would cost more than the
/// `stat` behind it.
pub type ListBatch = Vec<Result<SourceObject>>;

/// Entries per [`ListBatch`].
pub const LIST_BATCH: usize = 1024;

/// One file of the source as the listing saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    pub path: RelPath,
    pub size: u64,
    /// Last modification, unix seconds.
    pub mtime: i64,
}

/// A part of the job's listing that can be scanned on its own, in parallel with the others,
/// with its own checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanUnit {
    /// Stable identity of the unit (its checkpoint file is named by a hash of it).
    pub id: String,
    /// Local: the folder, relative to `srcPrefix`.
    pub dir: RelPath,
    /// False: only the files directly in `dir`; true: the whole subtree.
    pub recursive: bool,
}

/// The bytes of a file range, ready to stream to the destination without holding them.
#[derive(Clone)]
pub enum Body {
    /// A range of a local file, read in chunks while it is sent.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        /// The process-wide bandwidth cap every chunk passes through.
        pace: Option<Arc<RateLimiter>>,
        /// Receives the checksums of the range once it has been read to the end.
        digests: Option<Arc<DigestSlot>>,
    },
}

impl Body {
    pub fn file(path: PathBuf, offset: u64, len: u64) -> Body {
        Body::File {
            path,
            offset,
            len,
            pace: None,
            digests: None,
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same bytes, sent no faster than `limiter` allows.
    pub fn paced(self, limiter: Option<Arc<RateLimiter>>) -> Body {
        match self {
            Body::File {
                path,
                offset,
                len,
                digests,
                ..
            } => Body::File {
                path,
                offset,
                len,
                pace: limiter,
                digests,
            },
        }
    }

    /// The same bytes, with MD5 and CRC-64 computed while they are sent.
    pub fn hashed(self, slot: Arc<DigestSlot>) -> Body {
        match self {
            Body::File {
                path,
                offset,
                len,
                pace,
                ..
            } => Body::File {
                path,
                offset,
                len,
                pace,
                digests: Some(slot),
            },
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::File {
                path, offset, len, ..
            } => write!(f, "File({}, {offset}+{len})", path.display()),
        }
    }
}

/// The checksums of a streamed body, computed while it is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digests {
    pub md5: [u8; 16],
    /// CRC-64/XZ (what OSS calls crc64ecma).
    pub crc64: u64,
}

/// Where a streamed body leaves its checksums: set only by a read that reached the end, so a
/// retried request (which reads again) leaves those of the bytes actually sent.
#[derive(Debug, Default)]
pub struct DigestSlot(std::sync::Mutex<Option<Digests>>);

impl DigestSlot {
    pub fn set(&self, digests: Digests) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(digests);
    }

    pub fn get(&self) -> Option<Digests> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the worker learned when it looked at a file again just before sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Present(SourceObject),
    Missing,
}

#[async_trait]
pub trait Source: Send + Sync {
    /// The units the listing is split into, scanned in parallel by `scanThreadCount` threads;
    /// folders down to `max_depth` (`maxMultiThreadScanDepth`) become units of their own.
    ///
    /// # Errors
    /// When the source root cannot be read.
    async fn scan_units(&self, max_depth: u32) -> Result<Vec<ScanUnit>>;

    /// Lists `unit` in a stable order, strictly after `after` when given (the checkpoint),
    /// sending each object to `out`. Stops early, without error, when `out` is closed.
    ///
    /// # Errors
    /// On a listing failure that loses the rest of the unit.
    async fn list(
        &self,
        unit: &ScanUnit,
        after: Option<RelPath>,
        out: tokio::sync::mpsc::Sender<ListBatch>,
    ) -> Result<()>;

    /// Looks at one file again (the worker does this right before sending it).
    ///
    /// # Errors
    /// When the file exists but cannot be inspected (permissions, I/O).
    async fn probe(&self, path: &RelPath) -> Result<Probe>;

    /// The file's path on this machine, when the source is local (for checksums and
    /// read-back verification).
    fn local_path(&self, _path: &RelPath) -> Option<PathBuf> {
        None
    }

    /// The bytes `offset..offset+len` of a file.
    ///
    /// # Errors
    /// When the file cannot be opened.
    async fn open(&self, path: &RelPath, offset: u64, len: u64) -> Result<Body>;
}

/// Picks the source for the job's `srcType`.
///
/// # Errors
/// For source types this version does not support yet.
pub fn open_source(job: &JobConfig) -> Result<Box<dyn Source>> {
    match job.src_type {
        SrcType::Local => Ok(Box::new(local::LocalSource::new(
            PathBuf::from(&job.src_prefix),
            job.is_allow_symbolic_link,
        ))),
        other => Err(Error::Source(format!(
            "srcType={other} is not supported yet by ossimport-rs; this version migrates srcType=local only"
        ))),
    }
}
