//! Multipart upload of one large file: parts streamed from file ranges, several in flight.

use futures::{StreamExt, TryStreamExt, stream};

use crate::dest::{PartInfo, PutOptions};
use crate::source::SourceObject;
use crate::task::record::reason;

use super::JobContext;

/// S3 and OSS allow at most this many parts in one upload.
const MAX_PARTS: u64 = 10_000;

/// The part size actually used: the configured one, grown to stay within 10,000 parts.
pub fn part_size(file_size: u64, configured: u64) -> u64 {
    configured.max(file_size.div_ceil(MAX_PARTS)).max(1)
}

/// Uploads `file` in parts; returns the object's ETag or `(reason, message)`.
pub async fn upload(
    ctx: &JobContext,
    key: &str,
    file: &SourceObject,
    opts: &PutOptions,
) -> Result<String, (&'static str, String)> {
    let size = part_size(file.size, ctx.job.multipart_upload_part_size);
    let count = file.size.div_ceil(size);
    let upload_id = ctx
        .dest
        .create_multipart(key, opts)
        .await
        .map_err(|e| (reason::UPLOAD_ERROR, e.message))?;
    let id = upload_id.as_str();
    let parts = stream::iter(0..count)
        .map(|i| async move {
            let offset = i * size;
            let len = size.min(file.size - offset);
            let body = ctx
                .source
                .open(&file.path, offset, len)
                .await
                .map_err(|e| (reason::READ_ERROR, e.to_string()))?;
            let number = i as i32 + 1;
            let etag = ctx
                .dest
                .upload_part(key, id, number, body)
                .await
                .map_err(|e| (reason::UPLOAD_ERROR, e.message))?;
            Ok::<_, (&'static str, String)>(PartInfo {
                number,
                etag,
                size: len,
            })
        })
        .buffer_unordered(ctx.job.upload_thread_num_per_large_file.max(1) as usize)
        .try_collect::<Vec<_>>()
        .await;
    let result = match parts {
        Ok(mut parts) => {
            parts.sort_by_key(|p| p.number);
            ctx.dest
                .complete_multipart(key, &upload_id, &parts)
                .await
                .map_err(|e| (reason::UPLOAD_ERROR, e.message))
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        // Leave no orphaned parts behind; a failure here only costs storage, so it is logged.
        if let Err(e) = ctx.dest.abort_multipart(key, &upload_id).await {
            tracing::warn!("could not abort the multipart upload of `{key}`: {e}");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_to_stay_within_ten_thousand_parts() {
        assert_eq!(part_size(100, 50), 50);
        let huge = 10_000 * 50 + 1;
        assert_eq!(part_size(huge, 50), 51);
        assert!(huge.div_ceil(part_size(huge, 50)) <= MAX_PARTS);
    }
}
