//! Multipart upload of one large file, resumable after a crash.
//!
//! Parts are streamed from their file ranges, `uploadThreadNumPerLargeFile` at once. The upload
//! id and each finished part are checkpointed under `worker/jobs/<job>/multipart/<hash>/`
//! (`UPLOAD`, then one `part-NNNNN` file per finished part, each written atomically). A later
//! run asks the server (ListParts) which of those parts it really holds and sends only the
//! rest; if the file changed since (size or mtime), the stale upload is aborted and the file
//! starts over. Before a new upload starts, uploads of the same key that no record knows of
//! (a crash between CreateMultipartUpload and writing `UPLOAD`) are aborted, where the store
//! lists them; `clean` aborts the recorded ones ([`known_uploads`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt, stream};
use md5::{Digest, Md5};

use crate::dest::{CopySource, PartInfo, PutOptions};
use crate::error::{Error, IoContext, Result};
use crate::payload::Digests;
use crate::source::{RelPath, SourceObject};

use super::parts::{Expected, hex, multipart_etag, part_size};
use crate::escape::{escape, unescape};
use crate::reason::Reason;
use crate::workdir::{blocking, write_atomic};

use super::{Failure, JobContext, open_body};

mod orphans;
pub use orphans::{KnownUpload, known_uploads};

const MAGIC: &str = "# ossimport-rs multipart v1";

/// What a file's multipart upload was started for; a mismatch means the file changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UploadRecord {
    /// The file the upload is for; its key is `destPrefix` + this path.
    path: RelPath,
    size: u64,
    mtime: i64,
    /// The source's change marker, when it has one.
    version: Option<String>,
    part_size: u64,
    upload_id: String,
}

impl UploadRecord {
    fn to_text(&self) -> String {
        let version = self
            .version
            .as_deref()
            .map(|v| format!("version={}\n", escape(v.as_bytes())))
            .unwrap_or_default();
        format!(
            "{MAGIC}\npath={}\nsize={}\nmtime={}\n{version}part_size={}\nupload_id={}\n",
            self.path, self.size, self.mtime, self.part_size, self.upload_id
        )
    }

    fn parse(text: &str) -> Option<UploadRecord> {
        let mut lines = text.lines();
        (lines.next()? == MAGIC).then_some(())?;
        let mut map = BTreeMap::new();
        for line in lines {
            let (k, v) = line.split_once('=')?;
            map.insert(k, v);
        }
        Some(UploadRecord {
            path: RelPath(unescape(map.get("path")?)?),
            size: map.get("size")?.parse().ok()?,
            mtime: map.get("mtime")?.parse().ok()?,
            version: match map.get("version") {
                Some(v) => Some(String::from_utf8_lossy(&unescape(v)?).into_owned()),
                None => None,
            },
            part_size: map.get("part_size")?.parse().ok()?,
            upload_id: map.get("upload_id")?.to_string(),
        })
    }
}

/// The checkpoint folder of one file's upload.
fn state_dir(ctx: &JobContext, file: &SourceObject) -> PathBuf {
    ctx.workdir
        .multipart_dir(&ctx.job.job_name)
        .join(state_dir_name(&file.path))
}

/// The name of a file's checkpoint folder under the job's multipart folder.
pub fn state_dir_name(path: &RelPath) -> String {
    Md5::digest(escape(&path.0).as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// A finished part and the checksums of what was sent for it.
#[derive(Debug, Clone)]
struct PartDone {
    info: PartInfo,
    digests: Option<Digests>,
}

impl PartDone {
    /// `<etag> <size> [<md5 hex> <crc64>]`
    fn to_text(&self) -> String {
        let mut line = format!("{} {}", self.info.etag, self.info.size);
        if let Some(d) = self.digests {
            line.push_str(&format!(" {} {}", hex(&d.md5), d.crc64));
        }
        line + "\n"
    }

    fn parse(number: i32, text: &str) -> Option<PartDone> {
        let mut f = text.split_whitespace();
        let etag = f.next()?.to_string();
        let size = f.next()?.parse().ok()?;
        let digests = match (f.next(), f.next()) {
            (Some(md5), Some(crc)) => {
                let mut bytes = [0u8; 16];
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = u8::from_str_radix(md5.get(i * 2..i * 2 + 2)?, 16).ok()?;
                }
                Some(Digests {
                    md5: bytes,
                    crc64: crc.parse().ok()?,
                })
            }
            _ => None,
        };
        Some(PartDone {
            info: PartInfo { number, etag, size },
            digests,
        })
    }
}

fn read_parts(dir: &Path) -> BTreeMap<i32, PartDone> {
    let mut parts = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return parts;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(number) = name
            .strip_prefix("part-")
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        if let Some(part) = PartDone::parse(number, &text) {
            parts.insert(number, part);
        }
    }
    parts
}

/// What the object's ETag and CRC-64 must be, when every part's checksums are known.
fn expected(parts: &[PartDone]) -> Option<Expected> {
    let digests: Vec<(Digests, u64)> = parts
        .iter()
        .map(|p| p.digests.map(|d| (d, p.info.size)))
        .collect::<Option<_>>()?;
    let etag = multipart_etag(digests.iter().map(|(d, _)| d.md5));
    let mut crc = digests.first()?.0.crc64;
    for (d, len) in &digests[1..] {
        crc = crc_fast::checksum_combine(crc_fast::CrcAlgorithm::Crc64Xz, crc, d.crc64, *len);
    }
    Some(Expected {
        etag: Some(etag),
        crc64: Some(crc),
    })
}

fn state_err(e: Error) -> Failure {
    Failure::new(
        Reason::UploadError,
        format!("cannot save upload progress: {e}"),
    )
}

/// What a multipart upload produced.
pub struct Uploaded {
    pub etag: String,
    /// Parts that were already on the server from an earlier attempt.
    pub resumed: usize,
    /// The checksums the object must have, when every part's are known.
    pub expected: Option<Expected>,
}

/// Uploads `file` in parts, resuming an earlier attempt when the file is unchanged; with
/// `from`, each part is copied inside the store (UploadPartCopy) instead of streamed.
pub async fn upload(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    opts: &PutOptions,
    from: Option<&CopySource>,
) -> Result<Uploaded, Failure> {
    let size = part_size(file.size, ctx.job.multipart_upload_part_size);
    let count = file.size.div_ceil(size);
    let dir = state_dir(ctx, file);
    let (upload_id, done) = resume(ctx, key, file, size, &dir).await?;
    let upload_id = match upload_id {
        Some(id) => id,
        None => {
            orphans::abort_strays(ctx, key).await;
            let id = ctx
                .dest
                .create_multipart(key, opts)
                .await
                .map_err(Failure::from)?;
            let record = UploadRecord {
                path: file.path.clone(),
                size: file.size,
                mtime: file.mtime,
                version: file.version.clone(),
                part_size: size,
                upload_id: id.clone(),
            };
            let (dir, text) = (dir.clone(), record.to_text());
            blocking(move || {
                fs::create_dir_all(&dir).ctx("cannot create folder", &dir)?;
                write_atomic(&dir.join("UPLOAD"), text.as_bytes())
            })
            .await
            .map_err(state_err)?;
            id
        }
    };
    let resumed = done.len();
    let id = upload_id.as_str();
    let dir_ref = &dir;
    let todo: Vec<u64> = (0..count)
        .filter(|i| !done.contains_key(&(*i as i32 + 1)))
        .collect();
    let sent = stream::iter(todo)
        .map(|i| async move {
            let offset = i * size;
            let len = size.min(file.size - offset);
            let number = i as i32 + 1;
            let (etag, digests) = match from {
                // Inside the store: the part's bytes never pass through this machine.
                Some(from) => {
                    let etag = ctx
                        .dest
                        .upload_part_copy(key, id, number, from, offset, len)
                        .await
                        .map_err(Failure::from)?;
                    (etag, None)
                }
                None => {
                    let (body, slot) = open_body(ctx, file, offset, len).await?;
                    let etag = ctx
                        .dest
                        .upload_part(key, id, number, body)
                        .await
                        .map_err(Failure::from)?;
                    (etag, slot.get())
                }
            };
            let part = PartDone {
                info: PartInfo {
                    number,
                    etag,
                    size: len,
                },
                digests,
            };
            let (path, text) = (dir_ref.join(format!("part-{number:05}")), part.to_text());
            blocking(move || write_atomic(&path, text.as_bytes()))
                .await
                .map_err(state_err)?;
            super::part_sent(len).await;
            Ok::<_, Failure>(part)
        })
        .buffer_unordered(ctx.job.upload_thread_num_per_large_file.max(1) as usize)
        .try_collect::<Vec<_>>()
        .await?;
    let mut parts: Vec<PartDone> = done.into_values().chain(sent).collect();
    parts.sort_by_key(|p| p.info.number);
    let infos: Vec<PartInfo> = parts.iter().map(|p| p.info.clone()).collect();
    let etag = match ctx.dest.complete_multipart(key, id, &infos).await {
        Ok(etag) => etag,
        Err(e) => completed_anyway(ctx, key, file, infos.len())
            .await
            .ok_or(Failure::new(Reason::UploadError, e.message))?,
    };
    forget(&dir).await;
    Ok(Uploaded {
        etag,
        resumed,
        expected: expected(&parts),
    })
}

/// A retried CompleteMultipartUpload whose first try succeeded but whose answer was lost gets
/// NoSuchUpload: the object is there, made of our parts, if its size and `-N` ETag say so.
async fn completed_anyway(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    parts: usize,
) -> Option<String> {
    let meta = ctx.dest.head(key).await.ok()??;
    let etag = meta.etag?;
    let ours = meta.size == file.size
        && etag.trim_matches('"').ends_with(&format!("-{parts}"))
        && meta.metadata.get(crate::dest::META_SRC_MTIME) == Some(&file.mtime.to_string());
    ours.then_some(etag)
}

/// The upload to continue and its parts the server confirms, or `(None, empty)` to start over.
async fn resume(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    part_size: u64,
    dir: &Path,
) -> Result<(Option<String>, BTreeMap<i32, PartDone>), Failure> {
    let Some(record) = load_record(dir).await else {
        forget(dir).await;
        return Ok((None, BTreeMap::new()));
    };
    let unchanged = record.size == file.size
        && record.mtime == file.mtime
        && record.version == file.version
        && record.part_size == part_size;
    if unchanged {
        let server = ctx
            .dest
            .list_parts(key, &record.upload_id)
            .await
            .map_err(Failure::from)?;
        if let Some(server) = server {
            // Servers differ in quoting ETags between UploadPart and ListParts, and some
            // (s3s-fs) list no ETag at all: then the part's size has to do.
            let bare = |e: &str| e.trim_matches('"').to_string();
            let on_server: BTreeMap<i32, PartInfo> =
                server.into_iter().map(|p| (p.number, p)).collect();
            let mut done = {
                let dir = dir.to_path_buf();
                tokio::task::spawn_blocking(move || read_parts(&dir))
                    .await
                    .unwrap_or_default()
            };
            done.retain(|n, mine| {
                on_server
                    .get(n)
                    .is_some_and(|theirs| match bare(&theirs.etag) {
                        e if e.is_empty() => theirs.size == mine.info.size,
                        e => e == bare(&mine.info.etag),
                    })
            });
            tracing::info!(key, parts = done.len(), "resuming multipart upload");
            return Ok((Some(record.upload_id), done));
        }
    } else {
        tracing::info!(key, "file changed since its upload started; starting over");
        discard(ctx, key, dir, &record.upload_id).await;
        return Ok((None, BTreeMap::new()));
    }
    forget(dir).await;
    Ok((None, BTreeMap::new()))
}

async fn discard(ctx: &JobContext, key: &str, dir: &Path, upload_id: &str) {
    // Leave no orphaned parts behind; a failure here only costs storage, so it is logged.
    if let Err(e) = ctx.dest.abort_multipart(key, upload_id).await {
        tracing::warn!("could not abort the stale multipart upload of `{key}`: {e}");
    }
    forget(dir).await;
}

/// The `UPLOAD` record in `dir`, read on the blocking pool.
async fn load_record(dir: &Path) -> Option<UploadRecord> {
    let path = dir.join("UPLOAD");
    tokio::task::spawn_blocking(move || fs::read_to_string(path).ok())
        .await
        .ok()
        .flatten()
        .and_then(|t| UploadRecord::parse(&t))
}

/// Removes a file's upload checkpoint, on the blocking pool.
async fn forget(dir: &Path) {
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || fs::remove_dir_all(dir)).await;
}

/// Gives up a file's upload for good (the file changed or vanished): aborts it on the server
/// and forgets its checkpoint. Uploads that failed on the network are kept for `retry`.
pub async fn abandon(ctx: &JobContext, key: &str, file: &SourceObject) {
    let dir = state_dir(ctx, file);
    if let Some(record) = load_record(&dir).await {
        discard(ctx, key, &dir, &record.upload_id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_record_round_trips() {
        let r = UploadRecord {
            path: crate::source::RelPath(b"a b/\xff=x".to_vec()),
            size: 10,
            mtime: 5,
            version: Some("\"abc\" x".into()),
            part_size: 3,
            upload_id: "abc=def".into(),
        };
        assert_eq!(UploadRecord::parse(&r.to_text()), Some(r));
    }
}
