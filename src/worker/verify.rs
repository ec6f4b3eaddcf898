//! Proof that an object holds the file: the audit after import and the audit job.
//!
//! `simple` compares sizes; `general` adds last-modified (not older than the file), the
//! Content-Type and our metadata; `detailed` adds the content, with the strongest proof the
//! store gives without a download: its CRC-64 (OSS `x-oss-hash-crc64ecma`), else its ETag
//! (the MD5 of a single-part upload, `md5(part md5s)-N` of a multipart one), and only when
//! neither can be compared, a read-back of the object against the source. An audit job first
//! compares what the source reports (its CRC-64 or MD5 ETag) with what the destination
//! reports; otherwise it streams the source through the source trait, whatever the source.

use futures::StreamExt;
use md5::{Digest, Md5};

use crate::config::AuditMode;
use crate::dest::{META_SRC_MTIME, ObjectMeta};
use crate::key::content_type;
use crate::payload::{ByteStream, Hashers, ReadFault, ReadFaultKind, is_md5_hex};
use crate::reason::Reason;
use crate::source::SourceObject;

use super::parts::{Expected, hex, multipart_etag, part_size};
use super::{Failure, JobContext};

/// Checks the object against the file per `mode`; returns the audit.log words saying what
/// proved it.
///
/// # Errors
/// The reason (MISSING, SIZE_NOT_MATCH, MTIME_NOT_MATCH, HEADER_NOT_MATCH,
/// CHECKSUM_NOT_MATCH) and a message.
pub async fn verify(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    mode: AuditMode,
    expected: Option<Expected>,
) -> Result<String, Failure> {
    let meta = match ctx.dest.head(key).await {
        Ok(Some(meta)) => meta,
        Ok(None) => {
            return Err(Failure::new(
                Reason::Missing,
                format!("`{key}` is not at the destination"),
            ));
        }
        Err(e) => return Err(Failure::new(Reason::UploadError, e.message)),
    };
    if meta.size != file.size {
        let msg = format!(
            "source {} bytes, destination {} bytes",
            file.size, meta.size
        );
        return Err(Failure::new(Reason::SizeNotMatch, msg));
    }
    if mode == AuditMode::Simple {
        return Ok("audit=simple(size; content not verified)".into());
    }
    general(key, file, &meta)?;
    if mode == AuditMode::General {
        return Ok("audit=general(size,mtime,headers; content not verified)".into());
    }
    let proof = content(ctx, key, file, &meta, expected).await?;
    Ok(format!("audit=detailed(size,mtime,headers,{proof})"))
}

fn general(key: &str, file: &SourceObject, meta: &ObjectMeta) -> Result<(), Failure> {
    // The source mtime we recorded is exact; the server's upload time is only a fallback,
    // as it also depends on the two clocks agreeing.
    let recorded = meta.metadata.get(META_SRC_MTIME);
    if recorded.is_none() && meta.last_modified.is_some_and(|t| t < file.mtime) {
        return Err(Failure::new(
            Reason::MtimeNotMatch,
            "the object is older than the file",
        ));
    }
    if let Some(recorded) = recorded
        && recorded.parse::<i64>().ok() != Some(file.mtime)
    {
        let msg = format!(
            "the object was made from the file as of {recorded}, the file's mtime is {}",
            file.mtime
        );
        return Err(Failure::new(Reason::MtimeNotMatch, msg));
    }
    let want = content_type(key);
    if meta.content_type.as_deref().is_some_and(|ct| ct != want) {
        let msg = format!("Content-Type is {:?}, expected {want:?}", meta.content_type);
        return Err(Failure::new(Reason::HeaderNotMatch, msg));
    }
    Ok(())
}

pub(super) fn bare(etag: &str) -> String {
    etag.trim_matches('"').to_ascii_lowercase()
}

/// The content proof: `crc64`, `etag`, their `(source)` forms, or `read-back`.
async fn content(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    meta: &ObjectMeta,
    expected: Option<Expected>,
) -> Result<&'static str, Failure> {
    let etag = meta.etag.as_deref().map(bare);
    let expected = match expected {
        Some(e) => e,
        None => {
            if let Some(proof) = source_says(key, file, meta)? {
                return Ok(proof);
            }
            let parts = etag
                .as_deref()
                .and_then(|e| e.split_once('-'))
                .and_then(|(_, n)| n.parse::<u64>().ok());
            from_source(ctx, file, parts).await?
        }
    };
    if let (Some(theirs), Some(ours)) = (meta.crc64, expected.crc64) {
        return if theirs == ours {
            Ok("crc64")
        } else {
            Err(mismatch(key, "CRC-64"))
        };
    }
    if let (Some(theirs), Some(ours)) = (&etag, &expected.etag) {
        if theirs == ours {
            return Ok("etag");
        }
        // A single-part ETag is the MD5 of the content: a difference is final. A multipart
        // one also depends on part sizes we may not know, so the bytes decide.
        if is_md5_hex(theirs) {
            return Err(mismatch(key, "the ETag (MD5)"));
        }
    }
    read_back(ctx, key, file).await?;
    Ok("read-back")
}

fn mismatch(key: &str, what: &str) -> Failure {
    Failure::new(
        Reason::ChecksumNotMatch,
        format!("{what} of `{key}` differs from the source's"),
    )
}

/// What the source itself reports about the content, compared with what the destination
/// reports, without reading a byte: the same CRC-64 (OSS to OSS), the same MD5 (single-part
/// S3 objects), or the same multipart ETag (same parts on both sides).
fn source_says(
    key: &str,
    file: &SourceObject,
    meta: &ObjectMeta,
) -> Result<Option<&'static str>, Failure> {
    if let (Some(theirs), Some(ours)) = (meta.crc64, file.crc64) {
        return if theirs == ours {
            Ok(Some("crc64(source)"))
        } else {
            Err(mismatch(key, "CRC-64"))
        };
    }
    let Some(dest) = meta.etag.as_deref().map(bare) else {
        return Ok(None);
    };
    // Only a hint: an encrypted (SSE-KMS) or appendable object has a 32-hex ETag that is not
    // its MD5, so a difference sends the audit to the bytes instead of failing it.
    if let Some(md5) = file.md5.as_deref().map(bare)
        && is_md5_hex(&dest)
        && md5 == dest
    {
        return Ok(Some("etag(source)"));
    }
    let same_parts = file
        .version
        .as_deref()
        .map(bare)
        .is_some_and(|v| v.contains('-') && v == dest);
    Ok(same_parts.then_some("etag(source)"))
}

/// The checksums of the source's bytes, streamed once through the source: their MD5 or,
/// when the object has `parts` parts of our part size, the multipart ETag; and their CRC-64.
async fn from_source(
    ctx: &JobContext,
    file: &SourceObject,
    parts: Option<u64>,
) -> Result<Expected, Failure> {
    let psize = part_size(file.size, ctx.job.multipart_upload_part_size);
    let split = parts
        .filter(|n| *n == file.size.div_ceil(psize).max(1))
        .map(|_| psize);
    let mut stream = source_bytes(ctx, file).await?;
    let mut whole = Hashers::new();
    let mut part = Md5::new();
    let mut part_md5s = Vec::new();
    let mut in_part = 0u64;
    while let Some(chunk) = stream.next().await {
        let mut chunk = &chunk.map_err(read_failure)?[..];
        whole.update(chunk);
        while let Some(ps) = split.filter(|_| !chunk.is_empty()) {
            let take = ((ps - in_part) as usize).min(chunk.len());
            part.update(&chunk[..take]);
            in_part += take as u64;
            chunk = &chunk[take..];
            if in_part == ps {
                part_md5s.push(std::mem::take(&mut part).finalize());
                in_part = 0;
            }
        }
    }
    if in_part > 0 {
        part_md5s.push(part.finalize());
    }
    let whole = whole.finish();
    let etag = match split {
        Some(_) => multipart_etag(part_md5s.iter().map(|d| <[u8; 16]>::from(*d))),
        None => hex(&whole.md5),
    };
    Ok(Expected {
        etag: Some(etag),
        crc64: Some(whole.crc64),
    })
}

/// The whole object as the source gives it, paced like any transfer.
async fn source_bytes(ctx: &JobContext, file: &SourceObject) -> Result<ByteStream, Failure> {
    let body = ctx
        .source
        .open(file, 0, file.size)
        .await
        .map_err(|e| Failure::new(Reason::ReadError, e.to_string()))?
        .paced(ctx.limiter.clone());
    Ok(body.stream())
}

fn read_failure(e: std::io::Error) -> Failure {
    let why = match ReadFault::find(&e).map(|f| f.kind) {
        Some(ReadFaultKind::Changed) => Reason::SizeNotMatch,
        _ => Reason::ReadError,
    };
    Failure::new(why, format!("cannot read the source to check it: {e}"))
}

/// Downloads the object and compares it with the source byte for byte, both streamed.
async fn read_back(ctx: &JobContext, key: &str, file: &SourceObject) -> Result<(), Failure> {
    let mut remote = ctx.dest.read(key).await.map_err(Failure::from)?;
    let mut local = source_bytes(ctx, file).await?;
    let differs = |at: u64| {
        Failure::new(
            Reason::ChecksumNotMatch,
            format!("`{key}` differs from the source at byte {at} or after (read back)"),
        )
    };
    // What one side has given beyond what the other has, so chunk boundaries need not agree.
    let mut pending = bytes::Bytes::new();
    let mut seen = 0u64;
    while let Some(chunk) = remote.next().await {
        let mut chunk = chunk.map_err(Failure::from)?;
        while !chunk.is_empty() {
            if pending.is_empty() {
                pending = match local.next().await {
                    Some(bytes) => bytes.map_err(read_failure)?,
                    None => {
                        let msg =
                            format!("`{key}` is longer than the source's {} bytes", file.size);
                        return Err(Failure::new(Reason::ChecksumNotMatch, msg));
                    }
                };
            }
            let n = pending.len().min(chunk.len());
            if pending[..n] != chunk[..n] {
                return Err(differs(seen));
            }
            seen += n as u64;
            pending = pending.slice(n..);
            chunk = chunk.slice(n..);
        }
    }
    if seen != file.size {
        return Err(Failure::new(
            Reason::ChecksumNotMatch,
            format!("`{key}` has {seen} bytes, the source {}", file.size),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc64_is_the_xz_variant_oss_uses() {
        // The CRC-64/XZ check value (OSS's crc64ecma of "123456789").
        assert_eq!(
            crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, b"123456789"),
            0x995D_C9BB_DF19_39FA
        );
    }
}
