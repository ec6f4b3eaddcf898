//! The local file-system source (`srcType=local`): a sorted walk under `srcPrefix` (see
//! [`walk`] for one unit's listing).

use std::fs;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use std::io::{self, Read, Seek};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;

use super::{Body, ListBatch, Probe, RelPath, Resume, ScanUnit, Scope, Source, SourceObject};
use crate::error::{Error, IoContext, Result};
use crate::payload::{ByteStream, ReadFault, ReadFaultKind, Reopen};
use crate::workdir::blocking;
use walk::UnitWalk;

mod walk;

/// Bytes read from a file per chunk.
const CHUNK: usize = 256 * 1024;

#[derive(Clone)]
pub struct LocalSource {
    root: PathBuf,
    allow_symlinks: bool,
}

impl LocalSource {
    pub fn new(root: PathBuf, allow_symlinks: bool) -> Self {
        LocalSource {
            root,
            allow_symlinks,
        }
    }

    fn full_path(&self, rel: &RelPath) -> PathBuf {
        if rel.0.is_empty() {
            return self.root.clone();
        }
        self.root.join(os_path(&rel.0))
    }

    fn collect_units(
        &self,
        dir: RelPath,
        level: u32,
        max_depth: u32,
        out: &mut Vec<ScanUnit>,
    ) -> Result<()> {
        if level >= max_depth {
            out.push(ScanUnit::tree(dir, true));
            return Ok(());
        }
        let full = self.full_path(&dir);
        let mut subdirs = Vec::new();
        for entry in fs::read_dir(&full).ctx("cannot list source folder", &full)? {
            let entry = entry.ctx("cannot list source folder", &full)?;
            // Directory links are never followed, as in the original.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                subdirs.push(name_bytes(&entry.file_name()));
            }
        }
        subdirs.sort();
        out.push(ScanUnit::tree(dir.clone(), false));
        for name in subdirs {
            self.collect_units(dir.join(&name), level + 1, max_depth, out)?;
        }
        Ok(())
    }

    fn stat(&self, rel: &RelPath, meta: &fs::Metadata) -> SourceObject {
        SourceObject::new(rel.clone(), meta.len(), mtime_secs(meta))
    }

    fn list_blocking(&self, unit: &ScanUnit, after: Option<RelPath>, out: &Sender<ListBatch>) {
        let Scope::Tree { dir, recursive } = &unit.scope else {
            return;
        };
        let walk = UnitWalk {
            base: self.full_path(dir),
            dir,
            recursive: *recursive,
            allow_symlinks: self.allow_symlinks,
            after: after.as_ref(),
        };
        walk.send(out);
    }
}

#[async_trait]
impl Source for LocalSource {
    async fn check(&self) -> Result<()> {
        // scan_units says the same with a better message; nothing to check before it.
        Ok(())
    }

    async fn scan_units(&self, max_depth: u32) -> Result<Vec<ScanUnit>> {
        let this = self.clone();
        blocking(move || {
            let meta = fs::metadata(&this.root).ctx("cannot read srcPrefix folder", &this.root)?;
            if !meta.is_dir() {
                return Err(Error::Source(format!(
                    "srcPrefix `{}` is not a folder; set srcPrefix in conf/local_job.cfg to the folder to migrate",
                    this.root.display()
                )));
            }
            let mut units = Vec::new();
            this.collect_units(RelPath(Vec::new()), 0, max_depth.max(1), &mut units)?;
            Ok(units)
        })
        .await
    }

    async fn relist_unit(&self, entry: &SourceObject) -> Result<Option<ScanUnit>> {
        let full = self.full_path(&entry.path);
        let rel = entry.path.clone();
        blocking(move || match fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_dir() => Ok(Some(ScanUnit::tree(rel, true))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read source folder", full, e)),
        })
        .await
    }

    async fn list(&self, unit: &ScanUnit, resume: Resume, out: Sender<ListBatch>) -> Result<()> {
        let after = resume.after;
        let this = LocalSource {
            root: self.root.clone(),
            allow_symlinks: self.allow_symlinks,
        };
        let unit = unit.clone();
        tokio::task::spawn_blocking(move || this.list_blocking(&unit, after, &out))
            .await
            .map_err(|e| Error::Source(format!("listing thread failed: {e}")))
    }

    fn pins_reads(&self) -> bool {
        true
    }

    async fn probe(&self, obj: &SourceObject) -> Result<Probe> {
        let path = obj.path.clone();
        let full = self.full_path(&path);
        let this = self.clone();
        blocking(move || match fs::metadata(&full) {
            // A folder is never sent as an object, whatever a task file says.
            Ok(meta) if meta.is_dir() => Err(Error::Source(format!(
                "`{}` is a folder, not a file",
                full.display()
            ))),
            Ok(meta) => Ok(Probe::Present(this.stat(&path, &meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Probe::Missing),
            Err(e) => Err(Error::io("cannot read source file", full, e)),
        })
        .await
    }

    async fn open(&self, obj: &SourceObject, offset: u64, len: u64) -> Result<Body> {
        let full = self.full_path(&obj.path);
        let what = format!("`{}`", full.display());
        let range = FileRange {
            path: full.clone(),
            size: obj.size,
            mtime: obj.mtime,
            offset,
            len,
        };
        // Opening now turns a permission problem into a clear per-file error before any
        // request is made. A small range is read whole in the same trip to the blocking pool:
        // for small files the trips, not the reads, are the cost.
        let (range, opened) = blocking(move || {
            let opened = match len <= CHUNK as u64 {
                true => range.read_whole().map(Some),
                false => fs::File::open(&range.path).map(|_| None),
            };
            Ok((range, opened))
        })
        .await?;
        let fault = |e: &io::Error| ReadFault::find(e).map(|f| f.kind);
        match opened {
            Ok(None) => Ok(Body::new(Arc::new(range), len, what)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::Source(format!("`{}` {DELETED}", full.display())))
            }
            // A file of another size fails its request, as when it is read while sent.
            Err(e) if fault(&e) == Some(ReadFaultKind::Changed) => {
                Ok(Body::new(Arc::new(Preread::failed(&e)), len, what))
            }
            Err(e) => Err(Error::io("cannot open source file", full, e)),
            // Kept for a retry of the request.
            Ok(Some(bytes)) => Ok(Body::new(Arc::new(Preread(Ok(bytes))), len, what)),
        }
    }
}

/// How a deleted file is worded in error.list.
const DELETED: &str = "was deleted after it was listed (FILE_NOT_FOUND)";

/// A range of a local file, read in chunks while it is sent (never whole in memory).
struct FileRange {
    path: PathBuf,
    /// The file's size and mtime as listed or probed: the version this range belongs to.
    size: u64,
    mtime: i64,
    offset: u64,
    len: u64,
}

impl FileRange {
    /// The file, opened at the range's start, if it is still the version listed.
    fn open_at_offset(&self) -> io::Result<fs::File> {
        let mut file = fs::File::open(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ReadFault::io_as(
                e.kind(),
                ReadFaultKind::Deleted,
                format!("`{}` {DELETED}", self.path.display()),
            ),
            _ => e,
        })?;
        self.check_version(&file.metadata()?, "")?;
        if self.offset > 0 {
            file.seek(io::SeekFrom::Start(self.offset))?;
        }
        Ok(file)
    }

    /// Another size or mtime is another file: reading `len` bytes of it would send a part of
    /// the new content (or run short) under the listed version. Checked when the file is
    /// opened and again on the open file once the range is read, so the read is pinned to
    /// the version listed as an object store's is, and no look before or after is needed.
    fn check_version(&self, meta: &fs::Metadata, when: &str) -> io::Result<()> {
        let (size, mtime) = (meta.len(), mtime_secs(meta));
        if (size, mtime) == (self.size, self.mtime) {
            return Ok(());
        }
        Err(ReadFault::io(
            ReadFaultKind::Changed,
            format!(
                "`{}` has {size} bytes at mtime {mtime}{when}, listed with {} bytes at mtime {}: \
                 it changed after it was listed (SIZE_NOT_MATCH)",
                self.path.display(),
                self.size,
                self.mtime
            ),
        ))
    }

    /// The whole range at once; shorter when the file ends early (the body reports it).
    fn read_whole(&self) -> io::Result<Bytes> {
        let mut buf = Vec::with_capacity(self.len as usize);
        let mut file = self.open_at_offset()?;
        (&mut file).take(self.len).read_to_end(&mut buf)?;
        self.check_version(&file.metadata()?, " after it was read")?;
        Ok(Bytes::from(buf))
    }
}

impl Reopen for FileRange {
    fn open(&self) -> BoxFuture<'static, io::Result<ByteStream>> {
        let this = Arc::new(FileRange {
            path: self.path.clone(),
            ..*self
        });
        Box::pin(async move {
            let opener = this.clone();
            let file = tokio::task::spawn_blocking(move || opener.open_at_offset())
                .await
                .map_err(io::Error::other)??;
            let file = tokio::fs::File::from_std(file);
            let chunks = stream::unfold(Some((file, this.len)), move |state| {
                let this = this.clone();
                async move {
                    let (mut file, remaining) = state?;
                    if remaining == 0 {
                        return None;
                    }
                    let mut buf = vec![0u8; CHUNK.min(remaining as usize)];
                    let mut filled = 0;
                    while filled < buf.len() {
                        match file.read(&mut buf[filled..]).await {
                            // The end of the file: the body adapter reports how short it is.
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) => return Some((Err(e), None)),
                        }
                    }
                    if filled == 0 {
                        return None;
                    }
                    buf.truncate(filled);
                    let remaining = remaining - filled as u64;
                    if remaining == 0 {
                        // Still the version it was when opened, or what is sent is mixed;
                        // checked before the last chunk goes, so the request fails.
                        let checked = match file.metadata().await {
                            Ok(meta) => this.check_version(&meta, " after it was read"),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = checked {
                            return Some((Err(e), None));
                        }
                    }
                    Some((Ok(Bytes::from(buf)), Some((file, remaining))))
                }
            });
            Ok(chunks.boxed())
        })
    }
}

/// A small range read at open, given again to every read of the body: its bytes, or the
/// fault, rebuilt each time since an `io::Error` cannot be cloned.
struct Preread(std::result::Result<Bytes, (io::ErrorKind, Option<ReadFault>, String)>);

impl Preread {
    fn failed(e: &io::Error) -> Preread {
        Preread(Err((e.kind(), ReadFault::find(e).cloned(), e.to_string())))
    }
}

impl Reopen for Preread {
    fn open(&self) -> BoxFuture<'static, io::Result<ByteStream>> {
        let read = match &self.0 {
            Ok(bytes) => Ok(stream::once(futures::future::ready(Ok(bytes.clone()))).boxed()),
            Err((kind, Some(fault), _)) => {
                Err(ReadFault::io_as(*kind, fault.kind, fault.message.clone()))
            }
            Err((kind, None, message)) => Err(io::Error::new(*kind, message.clone())),
        };
        Box::pin(futures::future::ready(read))
    }
}

fn mtime_secs(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(unix)]
fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().to_vec()
}

#[cfg(not(unix))]
fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    name.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
fn os_path(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
fn os_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;

    use super::*;
    use crate::payload::DigestSlot;

    #[tokio::test]
    async fn opens_a_range_again_for_every_read_and_hashes_it() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        let source = LocalSource::new(dir.path().to_path_buf(), false);
        let Probe::Present(obj) = source.probe(&listed("f", 0)).await.unwrap() else {
            panic!("the file is there");
        };
        let slot = Arc::new(DigestSlot::default());
        let body = source
            .open(&obj, 1000, 600_000)
            .await
            .unwrap()
            .hashed(slot.clone());
        for _ in 0..2 {
            let mut got = Vec::new();
            let mut s = body.stream();
            while let Some(chunk) = s.next().await {
                got.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(got, &data[1000..601_000]);
        }
        let want = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, &data[1000..601_000]);
        assert_eq!(slot.get().unwrap().crc64, want);
    }

    fn listed(path: &str, size: u64) -> SourceObject {
        SourceObject::new(RelPath(path.as_bytes().to_vec()), size, 0)
    }

    /// Every failure of reading `body`, in order.
    async fn read_faults(body: &Body) -> Vec<io::Error> {
        let mut s = body.stream();
        let mut faults = Vec::new();
        while let Some(chunk) = s.next().await {
            faults.extend(chunk.err());
        }
        faults
    }

    #[tokio::test]
    async fn a_file_rewritten_since_listing_at_the_same_size_fails_its_read_small_or_large() {
        let dir = tempfile::tempdir().unwrap();
        let source = LocalSource::new(dir.path().to_path_buf(), false);
        for (name, size) in [("small", 10_000usize), ("large", 600_000)] {
            std::fs::write(dir.path().join(name), vec![7u8; size]).unwrap();
            let Probe::Present(mut obj) = source.probe(&listed(name, 0)).await.unwrap() else {
                panic!("{name} is there");
            };
            obj.mtime -= 5;
            let body = source.open(&obj, 0, size as u64).await.unwrap();
            let faults = read_faults(&body).await;
            let kinds: Vec<_> = faults
                .iter()
                .map(|e| ReadFault::find(e).map(|f| f.kind))
                .collect();
            assert_eq!(kinds, [Some(ReadFaultKind::Changed)], "{name}: {faults:?}");
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_listed_is_size_not_match() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"short").unwrap();
        let source = LocalSource::new(dir.path().to_path_buf(), false);
        let obj = SourceObject::new(RelPath(b"f".to_vec()), 10, 0);
        let body = source.open(&obj, 0, 10).await.unwrap();
        let mut s = body.stream();
        let mut err = None;
        while let Some(chunk) = s.next().await {
            if let Err(e) = chunk {
                err = Some(e);
            }
        }
        let err = err.unwrap();
        assert!(err.to_string().contains("SIZE_NOT_MATCH"), "{err}");
        let fault = ReadFault::find(&err).map(|f| f.kind);
        assert_eq!(fault, Some(ReadFaultKind::Changed), "{err}");
    }
}
