//! One file from source to destination: re-check of the source, key check, skip-existing,
//! upload (single request or resumable multipart), MD5 metadata, and the audit after import.

use std::sync::Arc;

use crate::config::AuditMode;
use crate::dest::{META_MD5, META_SRC_MTIME, ObjectMeta, PutOptions};
use crate::key::{content_type, object_key};
use crate::source::{Md5Slot, Probe, SourceObject};
use crate::task::record::{FileRecord, Outcome, reason};

use super::{JobContext, multipart};

type Failure = (&'static str, String);

/// Moves one file and says how it went; never fails the task by itself.
pub async fn transfer_file(ctx: &JobContext, file: &SourceObject, attempt: u32) -> FileRecord {
    match transfer(ctx, file, attempt).await {
        Ok(record) => record,
        Err((why, msg)) => FileRecord::new(Outcome::Failed, why, file.size, file.path.clone(), msg),
    }
}

async fn transfer(
    ctx: &JobContext,
    file: &SourceObject,
    attempt: u32,
) -> Result<FileRecord, Failure> {
    let record = |outcome, why: &str, detail: String| {
        FileRecord::new(outcome, why, file.size, file.path.clone(), detail)
    };
    match ctx.source.probe(&file.path).await {
        Ok(Probe::Present(now)) if now.size != file.size => {
            return Err((
                reason::SIZE_NOT_MATCH,
                format!(
                    "listed with {} bytes, now {} bytes; it changed after listing",
                    file.size, now.size
                ),
            ));
        }
        Ok(Probe::Present(_)) => {}
        // The user removed a file that had failed before: nothing is left to migrate.
        Ok(Probe::Missing) if attempt > 1 => {
            let why = "the file no longer exists in the source; nothing to retry";
            return Ok(record(Outcome::Skipped, "REMOVED", why.into()));
        }
        Ok(Probe::Missing) => {
            return Err((
                reason::FILE_NOT_FOUND,
                "the file was deleted after it was listed".into(),
            ));
        }
        Err(e) => return Err((reason::READ_ERROR, e.to_string())),
    }
    let key =
        object_key(&ctx.job.dest_prefix, &file.path).map_err(|msg| (reason::INVALID_KEY, msg))?;
    if ctx.job.is_skip_exist_file {
        let existing = ctx
            .dest
            .head(&key)
            .await
            .map_err(|e| (reason::UPLOAD_ERROR, e.message))?;
        if existing.is_some_and(|m| is_same(&m, file)) {
            let why =
                format!("key={key} already at the destination: same size, not older than the file");
            return Ok(record(Outcome::Skipped, "EXISTS", why));
        }
    }
    let mut opts = PutOptions {
        content_type: content_type(&key),
        server_side_encryption: ctx.job.is_server_side_encryption,
        metadata: [(META_SRC_MTIME.to_string(), file.mtime.to_string())].into(),
    };
    let uploaded = upload(ctx, &key, file, &mut opts).await;
    let (etag, note) = match uploaded {
        Ok(done) => done,
        Err(failure) => return Err(explain_failure(ctx, &key, file, failure).await),
    };
    // The body was read to exactly the listed length; a file that grew meanwhile was
    // changed while it was read.
    if let Ok(Probe::Present(now)) = ctx.source.probe(&file.path).await
        && (now.size != file.size)
    {
        return Err((
            reason::SIZE_NOT_MATCH,
            format!(
                "changed while it was uploaded: {} bytes listed, {} bytes now",
                file.size, now.size
            ),
        ));
    }
    let proof = if ctx.job.is_audit_after_import {
        audit(ctx, &key, file, &opts)
            .await
            .map_err(|msg| (reason::AUDIT_FAILED, msg))?
    } else {
        "audit=off"
    };
    Ok(record(
        Outcome::Ok,
        "",
        format!("key={key} etag={etag}{note} {proof}"),
    ))
}

/// Skip-existing: same size, and not older than the file — by the source mtime we recorded
/// at upload when present, else by the object's last-modified.
fn is_same(meta: &ObjectMeta, file: &SourceObject) -> bool {
    let recorded = meta
        .metadata
        .get(META_SRC_MTIME)
        .and_then(|v| v.parse::<i64>().ok());
    meta.size == file.size
        && recorded
            .or(meta.last_modified)
            .is_some_and(|t| t >= file.mtime)
}

/// Sends the file; returns the ETag and a note for audit.log.
async fn upload(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    opts: &mut PutOptions,
) -> Result<(String, String), Failure> {
    if file.size > ctx.job.multipart_upload_threshold {
        let (etag, resumed) = multipart::upload(ctx, key, file, opts).await?;
        let mut note = String::new();
        if resumed > 0 {
            note.push_str(&format!(" resumed_parts={resumed}"));
        }
        if ctx.record_md5 {
            // Parts go up in parallel and may resume after a crash, so no single read sees
            // the whole file in order: the original does not record it either.
            note.push_str(" md5=not-recorded(multipart)");
        }
        return Ok((etag, note));
    }
    let slot = Arc::new(Md5Slot::default());
    let mut body = ctx
        .source
        .open(&file.path, 0, file.size)
        .await
        .map_err(|e| (reason::READ_ERROR, e.to_string()))?
        .paced(ctx.limiter.clone());
    if ctx.record_md5 {
        body = body.hashed(slot.clone());
    }
    let etag = ctx
        .dest
        .put(key, body, opts)
        .await
        .map_err(|e| (reason::UPLOAD_ERROR, e.message))?;
    let mut note = String::new();
    if let Some(digest) = slot.get().filter(|_| ctx.record_md5) {
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        opts.metadata.insert(META_MD5.to_string(), hex.clone());
        // The digest exists only once the body was sent; a server-side copy attaches it
        // without sending the bytes again.
        ctx.dest
            .replace_metadata(key, opts)
            .await
            .map_err(|e| (reason::UPLOAD_ERROR, e.message))?;
        note = format!(" md5={hex}");
    }
    Ok((etag, note))
}

/// Turns an upload failure into its real cause when the source changed meanwhile.
async fn explain_failure(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    failure: Failure,
) -> Failure {
    let cause = match ctx.source.probe(&file.path).await {
        Ok(Probe::Present(now)) if now.size != file.size => Some((
            reason::SIZE_NOT_MATCH,
            format!(
                "changed while it was uploaded: {} bytes listed, {} bytes now",
                file.size, now.size
            ),
        )),
        Ok(Probe::Missing) => Some((
            reason::FILE_NOT_FOUND,
            "the file was deleted while it was uploaded".to_string(),
        )),
        _ => None,
    };
    match cause {
        Some(cause) => {
            if file.size > ctx.job.multipart_upload_threshold {
                multipart::abandon(ctx, key, file).await;
            }
            cause
        }
        None => failure,
    }
}

/// Compares the object with the file per `auditMode`; says which checks proved it.
async fn audit(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    opts: &PutOptions,
) -> Result<&'static str, String> {
    let meta = match ctx.dest.head(key).await {
        Ok(Some(meta)) => meta,
        Ok(None) => {
            return Err(format!(
                "MISSING: `{key}` is not at the destination after upload"
            ));
        }
        Err(e) => return Err(e.message),
    };
    if meta.size != file.size {
        return Err(format!(
            "SIZE_NOT_MATCH: source {} bytes, destination {} bytes",
            file.size, meta.size
        ));
    }
    if ctx.job.audit_mode == AuditMode::Simple {
        return Ok("audit=simple(size)");
    }
    if meta.last_modified.is_some_and(|t| t < file.mtime) {
        return Err("MTIME_NOT_MATCH: the destination is older than the source file".into());
    }
    if meta
        .content_type
        .as_deref()
        .is_some_and(|ct| ct != opts.content_type)
    {
        return Err(format!(
            "HEADER_NOT_MATCH: Content-Type is {:?}, expected {:?}",
            meta.content_type, opts.content_type
        ));
    }
    for (k, v) in &opts.metadata {
        if meta.metadata.get(k) != Some(v) {
            return Err(format!(
                "HEADER_NOT_MATCH: metadata {k} is {:?}, expected {v:?}",
                meta.metadata.get(k)
            ));
        }
    }
    Ok("audit=general(size,mtime,headers)")
}
