//! The local file-system source (`srcType=local`): a sorted walk under `srcPrefix` (see
//! [`walk`] for one unit's listing).

use std::fs;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
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
        // Opening now turns a permission problem into a clear per-file error before any
        // request is made.
        if let Err(e) = tokio::fs::File::open(&full).await {
            if e.kind() == io::ErrorKind::NotFound {
                return Err(Error::Source(format!("`{}` {DELETED}", full.display())));
            }
            return Err(Error::io("cannot open source file", full, e));
        }
        let what = format!("`{}`", full.display());
        let range = FileRange {
            path: full,
            size: obj.size,
            offset,
            len,
        };
        Ok(Body::new(Arc::new(range), len, what))
    }
}

/// How a deleted file is worded in error.list.
const DELETED: &str = "was deleted after it was listed (FILE_NOT_FOUND)";

/// A range of a local file, read in chunks while it is sent (never whole in memory).
struct FileRange {
    path: PathBuf,
    /// The file's size as listed or probed.
    size: u64,
    offset: u64,
    len: u64,
}

impl Reopen for FileRange {
    fn open(&self) -> BoxFuture<'static, io::Result<ByteStream>> {
        let (path, size, offset, len) = (self.path.clone(), self.size, self.offset, self.len);
        Box::pin(async move {
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => ReadFault::io_as(
                        e.kind(),
                        ReadFaultKind::Deleted,
                        format!("`{}` {DELETED}", path.display()),
                    ),
                    _ => e,
                })?;
            // Another size is another file: reading `len` bytes of it would send a part of
            // the new content (or run short) under the listed size.
            let now = file.metadata().await?.len();
            if now != size {
                return Err(ReadFault::io(
                    ReadFaultKind::Changed,
                    format!(
                        "`{}` has {now} bytes, listed with {size}: it changed after it was \
                         listed (SIZE_NOT_MATCH)",
                        path.display()
                    ),
                ));
            }
            file.seek(io::SeekFrom::Start(offset)).await?;
            let chunks = stream::unfold(Some((file, len)), |state| async move {
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
                Some((
                    Ok(Bytes::from(buf)),
                    Some((file, remaining - filled as u64)),
                ))
            });
            Ok(chunks.boxed())
        })
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
        let obj = SourceObject::new(RelPath(b"f".to_vec()), data.len() as u64, 0);
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
