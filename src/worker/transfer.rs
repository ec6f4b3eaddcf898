//! One file from source to destination: key check, re-check of the source, skip-existing,
//! upload (single or multipart), and the audit after import.

use crate::config::AuditMode;
use crate::dest::PutOptions;
use crate::key::{content_type, object_key};
use crate::source::{Probe, SourceObject};
use crate::task::record::{FileRecord, Outcome, reason};

use super::{JobContext, multipart};

/// Moves one file and says how it went; never fails the task by itself.
pub async fn transfer_file(ctx: &JobContext, file: &SourceObject, attempt: u32) -> FileRecord {
    let fail = |why: &str, msg: String| {
        FileRecord::new(Outcome::Failed, why, file.size, file.path.clone(), msg)
    };
    match ctx.source.probe(&file.path).await {
        Ok(Probe::Present(now)) if now.size != file.size => {
            return fail(
                reason::SIZE_NOT_MATCH,
                format!(
                    "listed with {} bytes, now {} bytes; it changed after listing",
                    file.size, now.size
                ),
            );
        }
        Ok(Probe::Present(_)) => {}
        // The user removed a file that had failed before: nothing is left to migrate.
        Ok(Probe::Missing) if attempt > 1 => {
            return FileRecord::new(
                Outcome::Skipped,
                "REMOVED",
                file.size,
                file.path.clone(),
                "the file no longer exists in the source; nothing to retry",
            );
        }
        Ok(Probe::Missing) => {
            return fail(
                reason::FILE_NOT_FOUND,
                "the file was deleted after it was listed".into(),
            );
        }
        Err(e) => return fail(reason::READ_ERROR, e.to_string()),
    }
    let key = match object_key(&ctx.job.dest_prefix, &file.path) {
        Ok(key) => key,
        Err(msg) => return fail(reason::INVALID_KEY, msg),
    };
    if ctx.job.is_skip_exist_file {
        match ctx.dest.head(&key).await {
            Ok(Some(meta))
                if meta.size == file.size
                    && meta.last_modified.is_some_and(|t| t >= file.mtime) =>
            {
                return FileRecord::new(
                    Outcome::Skipped,
                    "EXISTS",
                    file.size,
                    file.path.clone(),
                    format!(
                        "key={key} already at the destination with the same size and a newer last-modified"
                    ),
                );
            }
            Ok(_) => {}
            Err(e) => return fail(reason::UPLOAD_ERROR, e.message),
        }
    }
    let opts = PutOptions {
        content_type: content_type(&key),
        server_side_encryption: ctx.job.is_server_side_encryption,
    };
    let etag = if file.size > ctx.job.multipart_upload_threshold {
        multipart::upload(ctx, &key, file, &opts).await
    } else {
        match ctx.source.open(&file.path, 0, file.size).await {
            Ok(body) => ctx
                .dest
                .put(&key, body, &opts)
                .await
                .map_err(|e| (reason::UPLOAD_ERROR, e.message)),
            Err(e) => Err((reason::READ_ERROR, e.to_string())),
        }
    };
    let etag = match etag {
        Ok(etag) => etag,
        Err((why, msg)) => return fail(why, msg),
    };
    // The body was read to exactly the listed length; a file that grew or shrank meanwhile
    // was changed while it was read.
    if let Ok(Probe::Present(now)) = ctx.source.probe(&file.path).await
        && now.size != file.size
    {
        return fail(
            reason::SIZE_NOT_MATCH,
            format!(
                "changed while it was uploaded: {} bytes listed, {} bytes now",
                file.size, now.size
            ),
        );
    }
    let proof = if ctx.job.is_audit_after_import {
        match audit(ctx, &key, file, &opts).await {
            Ok(proof) => proof,
            Err(msg) => return fail(reason::AUDIT_FAILED, msg),
        }
    } else {
        "audit=off"
    };
    FileRecord::new(
        Outcome::Ok,
        "",
        file.size,
        file.path.clone(),
        format!("key={key} etag={etag} {proof}"),
    )
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
    Ok("audit=general(size,mtime,content-type)")
}
