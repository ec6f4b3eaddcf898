//! One file from source to destination: re-check of the source, key check, skip-existing,
//! upload (single request or resumable multipart), MD5 metadata, and the audit after import;
//! or, for `jobType=audit`, only the comparison.

use crate::config::{AuditMode, JobType};
use crate::dest::{CopySource, META_MD5, META_SRC_MTIME, ObjectMeta, PutOptions};
use crate::key::{content_type, object_key};
use crate::payload::ReadFaultKind;
use crate::reason::Reason;
use crate::source::{Probe, Source, SourceObject};
use crate::task::record::{FileRecord, Outcome};

use super::listed::{self, Uploaded};
use super::parts::{Expected, hex};
use super::verify::verify;
use super::{Failure, JobContext, multipart};

/// How a file's transfer ended.
pub enum Transferred {
    /// With this record.
    Done(FileRecord),
    /// Uploaded; the audit waits for the task's next bucket listing.
    ToList(Uploaded),
}

/// Moves (or, in an audit job, checks) one file and says how it went; never fails the task.
pub async fn transfer_file(ctx: &JobContext, file: &SourceObject, attempt: u32) -> Transferred {
    let result = match ctx.job.job_type {
        JobType::Import => transfer(ctx, file, attempt).await,
        JobType::Audit => audit_only(ctx, file).await.map(Transferred::Done),
    };
    result.unwrap_or_else(|f| {
        Transferred::Done(FileRecord::new(
            Outcome::Failed,
            Some(f.reason),
            file.size,
            file.path.clone(),
            f.message,
        ))
    })
}

/// The audits a bucket listing proves (size, last-modified, the upload's ETag), many files
/// per request; detailed mode looks at each object.
fn audit_by_listing(mode: AuditMode) -> bool {
    matches!(mode, AuditMode::Simple | AuditMode::General)
}

fn record(
    file: &SourceObject,
    outcome: Outcome,
    why: Option<Reason>,
    detail: String,
) -> FileRecord {
    FileRecord::new(outcome, why, file.size, file.path.clone(), detail)
}

/// A console "folder" of an object store (a key ending in `/`, 0 bytes; the srcPrefix folder
/// itself lists as the empty path) needs no object: it is skipped, in import and audit alike.
/// A key ending in `/` with no bytes: a folder made in an object store's console. Only object
/// stores have them: a local folder that could not be listed is no marker.
pub(crate) fn is_folder_marker(source: &dyn Source, file: &SourceObject) -> bool {
    let path = file.path.as_bytes();
    source.location(file).is_some() && file.size == 0 && (path.is_empty() || path.ends_with(b"/"))
}

fn folder_marker(ctx: &JobContext, file: &SourceObject) -> Option<FileRecord> {
    is_folder_marker(ctx.source.as_ref(), file).then(|| {
        let why = "a folder marker of the source's console (a key ending in /, 0 bytes); \
                   folders need no object in OSS";
        record(file, Outcome::Skipped, Some(Reason::Folder), why.into())
    })
}

/// What the second look at a file decided.
enum Checked {
    /// Go on with the file as it is now (a retry takes the file's current size; a first run
    /// its current mtime, so a resumed upload notices a rewrite in place).
    Use(SourceObject),
    /// The file is done with, with this record.
    Done(FileRecord),
}

/// Looks at the file again before using it.
async fn recheck(ctx: &JobContext, file: &SourceObject, attempt: u32) -> Result<Checked, Failure> {
    match ctx.source.probe(file).await {
        Ok(Probe::Present(now)) if now.size != file.size && attempt == 1 => Err(Failure::new(
            Reason::SizeNotMatch,
            format!(
                "listed with {} bytes, now {} bytes; it changed after listing",
                file.size, now.size
            ),
        )),
        Ok(Probe::Present(now)) => Ok(Checked::Use(now)),
        // The user removed a file that had failed before: nothing is left to migrate.
        // A URL the list still names is not "removed": it stays missing.
        Ok(Probe::Missing) if attempt > 1 && file.locator.is_none() => {
            let why = "the file no longer exists in the source; nothing to retry";
            Ok(Checked::Done(record(
                file,
                Outcome::Skipped,
                Some(Reason::Removed),
                why.into(),
            )))
        }
        Ok(Probe::Missing) => Err(Failure::new(
            Reason::FileNotFound,
            "the file was deleted after it was listed",
        )),
        Err(e) => Err(Failure::new(Reason::ReadError, e.to_string())),
    }
}

async fn transfer(
    ctx: &JobContext,
    listed: &SourceObject,
    attempt: u32,
) -> Result<Transferred, Failure> {
    if let Some(skipped) = folder_marker(ctx, listed) {
        return Ok(Transferred::Done(skipped));
    }
    // A source that pins its reads to the listed version fails the read itself when the
    // object changed or vanished since the listing (SIZE_NOT_MATCH, FILE_NOT_FOUND), so the
    // look before and after the copy would cost two requests per object and prove nothing
    // more. A retry takes the object as it is now. A server-side copy reads nothing here, so
    // it takes the version from a fresh look and pins the copy to it (If-Match).
    // An empty object is never read, so nothing would notice it changed or vanished.
    let pinned = attempt == 1 && ctx.source.pins_reads() && !ctx.server_copy && listed.size > 0;
    let file = &match pinned {
        true => listed.clone(),
        false => match recheck(ctx, listed, attempt).await? {
            Checked::Use(now) => now,
            Checked::Done(record) => return Ok(Transferred::Done(record)),
        },
    };
    let key = object_key(&ctx.job.dest_prefix, &file.path)
        .map_err(|msg| Failure::new(Reason::InvalidKey, msg))?;
    if ctx.job.is_skip_exist_file {
        let existing = ctx.dest.head(&key).await.map_err(Failure::from)?;
        if existing.is_some_and(|m| is_same(&m, file)) {
            let why =
                format!("key={key} already at the destination: same size, not older than the file");
            let skipped = record(file, Outcome::Skipped, Some(Reason::Exists), why);
            return Ok(Transferred::Done(skipped));
        }
    }
    let mut opts = PutOptions {
        content_type: content_type(&key),
        server_side_encryption: ctx.job.is_server_side_encryption,
        metadata: [(META_SRC_MTIME.to_string(), file.mtime.to_string())].into(),
    };
    let started = unix_now();
    let (etag, note, expected) = match upload(ctx, &key, file, &mut opts).await {
        Ok(done) => done,
        Err(failure) => return Err(explain_failure(ctx, &key, file, failure).await),
    };
    // The body was read to exactly the listed length; a file that grew meanwhile was
    // changed while it was read.
    // Parts are separate reads: a store that ignored If-Match could mix versions across them.
    if (!pinned || in_parts(ctx, file))
        && let Ok(Probe::Present(now)) = ctx.source.probe(file).await
        && !file.same_as(&now)
    {
        return Err(Failure::new(
            Reason::SizeNotMatch,
            format!(
                "changed while it was uploaded: {} bytes at mtime {} when read, {} bytes at mtime {} now",
                file.size, file.mtime, now.size, now.mtime
            ),
        ));
    }
    let detail = format!("key={key} etag={etag}{note}");
    let proof = match ctx.job.is_audit_after_import {
        true if audit_by_listing(ctx.job.audit_mode) && listed::listable(&key) => {
            return Ok(Transferred::ToList(Uploaded {
                key,
                path: file.path.clone(),
                size: file.size,
                started: (!in_parts(ctx, file)).then_some(started),
                etag,
                detail,
            }));
        }
        true => verify(ctx, &key, file, ctx.job.audit_mode, expected).await?,
        false => "audit=off".into(),
    };
    let done = record(file, Outcome::Ok, None, format!("{detail} {proof}"));
    Ok(Transferred::Done(done))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `jobType=audit`: compare the file with its object, copy nothing.
async fn audit_only(ctx: &JobContext, file: &SourceObject) -> Result<FileRecord, Failure> {
    if ctx.job.last_modify > 0 && file.mtime > ctx.job.last_modify {
        let why = format!(
            "modified at {} after lastModify={}; not audited",
            file.mtime, ctx.job.last_modify
        );
        return Ok(record(file, Outcome::Skipped, Some(Reason::Modified), why));
    }
    if let Some(skipped) = folder_marker(ctx, file) {
        return Ok(skipped);
    }
    // The probe's view carries what the source says of the content (CRC-64, MD5).
    let file = &match recheck(ctx, file, 1).await? {
        Checked::Use(now) => now,
        Checked::Done(record) => return Ok(record),
    };
    let key = object_key(&ctx.job.dest_prefix, &file.path)
        .map_err(|msg| Failure::new(Reason::InvalidKey, msg))?;
    let proof = verify(ctx, &key, file, ctx.job.audit_mode, None).await?;
    Ok(record(
        file,
        Outcome::Ok,
        None,
        format!("key={key} {proof}"),
    ))
}

/// Skip-existing: same size, and not older than the file — by the source mtime we recorded
/// at upload when present, else by the object's last-modified.
pub(crate) fn is_same(meta: &ObjectMeta, file: &SourceObject) -> bool {
    let recorded = meta
        .metadata
        .get(META_SRC_MTIME)
        .and_then(|v| v.parse::<i64>().ok());
    already_there(meta.size, recorded.or(meta.last_modified), file)
}

/// `isSkipExistFile`'s rule: the object has the file's size and is not older than the file
/// (`time`: the file's mtime recorded at its upload, else the object's last-modified).
pub(crate) fn already_there(size: u64, time: Option<i64>, file: &SourceObject) -> bool {
    size == file.size && time.is_some_and(|t| t >= file.mtime)
}

/// Sends the file; returns the ETag, a note for audit.log and the checksums of what was sent.
async fn upload(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    opts: &mut PutOptions,
) -> Result<(String, String, Option<Expected>), Failure> {
    let from = ctx
        .server_copy
        .then(|| ctx.source.location(file))
        .flatten()
        .map(|at| CopySource {
            bucket: at.bucket,
            key: at.key,
            version: file.version.clone(),
        });
    if in_parts(ctx, file) {
        let up = match multipart::upload(ctx, key, file, opts, from.as_ref()).await {
            Ok(up) => up,
            Err(f) if f.read_fault == Some(ReadFaultKind::RangeIgnored) => {
                tracing::warn!(
                    "{}: the source server ignores Range, so it goes up in one request",
                    file.path
                );
                multipart::abandon(ctx, key, file).await;
                return single_put(ctx, key, file, opts).await;
            }
            Err(failure) => return Err(failure),
        };
        let mut note = String::new();
        if up.resumed > 0 {
            note.push_str(&format!(" resumed_parts={}", up.resumed));
        }
        if ctx.record_md5 {
            // Parts go up in parallel and may resume after a crash, so no single read sees
            // the whole file in order: the original does not record it either.
            note.push_str(" md5=not-recorded(multipart)");
        }
        if from.is_some() {
            note.push_str(" copy=server-side");
        }
        return Ok((up.etag, note, up.expected));
    }
    if let Some(from) = &from {
        return server_copy(ctx, key, from, opts).await;
    }
    single_put(ctx, key, file, opts).await
}

/// Largest object copied by one CopyObject (OSS's documented limit; S3's is 5 GiB).
const MAX_SINGLE_COPY: u64 = 1 << 30;

/// True when the object goes up as a multipart upload: over the threshold, or, copied
/// server-side, over what one CopyObject takes (then by UploadPartCopy).
fn in_parts(ctx: &JobContext, file: &SourceObject) -> bool {
    file.size > ctx.job.multipart_upload_threshold
        || (ctx.server_copy && file.size > MAX_SINGLE_COPY)
}

/// Copies the object inside the store (source and destination are one store).
async fn server_copy(
    ctx: &JobContext,
    key: &str,
    from: &CopySource,
    opts: &PutOptions,
) -> Result<(String, String, Option<Expected>), Failure> {
    let etag = ctx
        .dest
        .copy_object(key, from, opts)
        .await
        .map_err(Failure::from)?;
    // No bytes passed here to hash: a detailed audit takes what the source says of them.
    let mut note = " copy=server-side".to_string();
    if ctx.record_md5 {
        note.push_str(" md5=not-recorded(server-side copy)");
    }
    Ok((etag, note, None))
}

/// Sends the file in one request.
async fn single_put(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    opts: &mut PutOptions,
) -> Result<(String, String, Option<Expected>), Failure> {
    let (body, slot) = super::open_body(ctx, file, 0, file.size).await?;
    let mut etag = ctx.dest.put(key, body, opts).await.map_err(Failure::from)?;
    let digests = slot.get();
    let mut note = String::new();
    if let Some(d) = digests.filter(|_| ctx.record_md5) {
        opts.metadata.insert(META_MD5.to_string(), hex(&d.md5));
        // The digest exists only once the body was sent; a server-side copy attaches it
        // without sending the bytes again.
        // The object is the copy's now; with some encryption its ETag is a new one.
        etag = ctx
            .dest
            .replace_metadata(key, opts)
            .await
            .map_err(Failure::from)?;
        note = format!(" md5={}", hex(&d.md5));
    }
    let expected = digests.map(|d| Expected {
        etag: Some(hex(&d.md5)),
        crc64: Some(d.crc64),
    });
    Ok((etag, note, expected))
}

/// Turns an upload failure into its real cause when the source changed meanwhile.
async fn explain_failure(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    failure: Failure,
) -> Failure {
    let cause = match ctx.source.probe(file).await {
        Ok(Probe::Present(now)) if now.size != file.size => Some(Failure::new(
            Reason::SizeNotMatch,
            format!(
                "changed while it was uploaded: {} bytes listed, {} bytes now",
                file.size, now.size
            ),
        )),
        Ok(Probe::Missing) => Some(Failure::new(
            Reason::FileNotFound,
            "the file was deleted while it was uploaded".to_string(),
        )),
        // The source refused the read itself (access denied, an archived object).
        _ if failure.read_fault == Some(ReadFaultKind::Refused) => {
            Some(Failure::new(Reason::ReadError, failure.message.clone()))
        }
        // A read pinned to the listed version says itself that the version is gone.
        Ok(Probe::Present(now)) if !file.same_as(&now) => Some(Failure::new(
            Reason::SizeNotMatch,
            format!("rewritten after it was listed: {}", failure.message),
        )),
        _ => None,
    };
    match cause {
        Some(cause) => {
            if in_parts(ctx, file) {
                multipart::abandon(ctx, key, file).await;
            }
            cause
        }
        None => failure,
    }
}
