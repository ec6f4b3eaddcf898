//! The audit after import by bucket listing (`auditMode` simple and general): the uploads of a
//! task are proved in batches, one ListObjectsV2 page for up to 1,000 objects, instead of a
//! HEAD per file. A listing gives each object's size, last-modified and (on S3 and OSS) ETag,
//! which is what these modes compare; detailed mode and audit jobs still look at each object.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::AuditMode;
use crate::dest::{DestError, Destination, ListedObject};
use crate::reason::Reason;
use crate::relpath::RelPath;
use crate::task::TaskId;
use crate::task::record::{FileRecord, Outcome};
use crate::tracker::TrackerHandle;

use super::verify::bare;
use super::{Failure, JobContext};

/// A file whose upload succeeded and whose audit waits for the task's next listing.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub key: String,
    pub path: RelPath,
    pub size: u64,
    /// When the upload started, unix seconds on this machine's clock; `None` for a multipart
    /// upload, whose object carries the time its upload was created, perhaps days before a
    /// resumed upload ended.
    pub started: Option<i64>,
    /// The ETag the upload got back ("" when the store sent none).
    pub etag: String,
    /// The record's detail so far (`key=… etag=…` and notes); the proof is appended.
    pub detail: String,
}

/// Whether a bucket listing shows `key` as it is: XML 1.0 cannot carry control characters
/// (a listing may turn `\r` into `\n`, or fail to parse), nor U+FFFE and U+FFFF. Such keys
/// are audited with a HEAD.
pub fn listable(key: &str) -> bool {
    !key.chars()
        .any(|c| c < ' ' || matches!(c, '\u{FFFE}' | '\u{FFFF}'))
}

/// Uploads one round of listing proves at most: one page.
const BATCH: usize = 1000;
/// How long the first upload of a batch waits for others to join it, so that a listing proves
/// many files (a task's end does not wait); the files' results become durable that much
/// later, and a kill in that second sends them again at the next start.
const LINGER: Duration = Duration::from_secs(1);
/// Room in the queue from the uploads to the auditor. With the batch being gathered, it bounds
/// the files of a task that are uploaded but not yet recorded (a `kill -9` sends them again).
pub const QUEUE: usize = 256;
/// Clock difference tolerated between this machine and the store before an object counts as
/// older than its upload (request signatures fail at 15 minutes of skew anyway).
const SKEW_SECS: i64 = 15 * 60;

/// Audits what arrives on `uploads` in batches and hands each file's record to the tracker,
/// until every sender is gone; a stopping job still audits what was uploaded, so that it is
/// not sent again at the next start.
pub async fn run(
    ctx: Arc<JobContext>,
    tracker: TrackerHandle,
    id: TaskId,
    mut uploads: mpsc::Receiver<Uploaded>,
) {
    while let Some(first) = uploads.recv().await {
        let mut batch = vec![first];
        let until = Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(until, uploads.recv()).await {
                Ok(Some(up)) => batch.push(up),
                Ok(None) | Err(_) => break,
            }
        }
        for record in audit(ctx.dest.as_ref(), ctx.job.audit_mode, batch).await {
            super::deliver(&ctx, &tracker, &id, record).await;
        }
    }
}

/// The records of a batch of uploads, each proved or failed by the listing.
pub async fn audit(
    dest: &dyn Destination,
    mode: AuditMode,
    mut batch: Vec<Uploaded>,
) -> Vec<FileRecord> {
    batch.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = batch.iter().map(|up| up.key.as_str()).collect();
    let (mut found, failed) = list_keys(dest, &keys, &mut 0).await;
    if let Some(e) = &failed {
        // A listing the store cannot give (a page that does not move on, an answer that
        // does not parse) must not fail files that are there: the rest are looked at one by
        // one, as before listings proved them.
        tracing::warn!(
            "audit by listing stopped ({}); looking at each object",
            e.message
        );
    }
    let mut heads = Vec::new();
    for key in &keys[found.len()..] {
        heads.push(dest.head(key).await.map(|meta| {
            meta.map(|m| ListedObject {
                key: key.to_string(),
                size: m.size,
                last_modified: m.last_modified,
                etag: m.etag,
            })
        }));
    }
    let mut heads = heads.into_iter();
    batch
        .into_iter()
        .enumerate()
        .map(|(i, up)| {
            let looked = match found.get_mut(i) {
                Some(listed) => Ok(listed.take()),
                None => heads.next().unwrap_or(Ok(None)),
            };
            let proof = match looked {
                Ok(obj) => judge(mode, &up, obj.as_ref()),
                Err(e) => Err(Failure::new(Reason::UploadError, e.message)),
            };
            match proof {
                Ok(proof) => {
                    let detail = format!("{} {proof}", up.detail);
                    FileRecord::new(Outcome::Ok, None, up.size, up.path, detail)
                }
                Err(f) => {
                    FileRecord::new(Outcome::Failed, Some(f.reason), up.size, up.path, f.message)
                }
            }
        })
        .collect()
}

/// What the listing shows for each of `keys` (sorted): the object, or `None` when it is not
/// there. On a listing failure, the keys from the first one not yet resolved on are left out
/// and the error is returned with the rest. `pages` counts the listing requests.
pub(crate) async fn list_keys(
    dest: &dyn Destination,
    keys: &[&str],
    pages: &mut u64,
) -> (Vec<Option<ListedObject>>, Option<DestError>) {
    let mut found: Vec<Option<ListedObject>> = Vec::with_capacity(keys.len());
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return (found, None);
    };
    let prefix = common_prefix(first, last);
    // The last key listed so far: a page starts after it, or just before the next key wanted
    // when that is further, so keys of other tasks between two of ours are skipped rather
    // than paged through, and every page moves on.
    let mut cursor = String::new();
    while found.len() < keys.len() {
        let next = keys[found.len()];
        let start = just_before(next).max(cursor.clone());
        *pages += 1;
        let page = match dest.list_page(prefix, &start).await {
            Ok(page) => page,
            Err(e) => return (found, Some(e)),
        };
        let end = match (page.truncated, page.objects.last()) {
            (false, _) => None,
            (true, Some(obj)) if obj.key.as_str() > start.as_str() => Some(obj.key.clone()),
            (true, _) => {
                let why = format!(
                    "LIST `{prefix}` after `{start}` answered a page that does not move on but \
                     says more follow; the store's listing cannot be used to audit"
                );
                return (found, Some(DestError::fatal(why)));
            }
        };
        if let Some(end) = &end {
            cursor.clone_from(end);
        }
        let mut objects = page.objects.into_iter().peekable();
        while let Some(&key) = keys.get(found.len()) {
            if end.as_deref().is_some_and(|end| key > end) {
                break;
            }
            while objects.next_if(|o| o.key.as_str() < key).is_some() {}
            found.push(objects.next_if(|o| o.key == key));
        }
    }
    (found, None)
}

/// Whether the listed object is the upload, per `mode`; the audit.log words on success.
fn judge(
    mode: AuditMode,
    up: &Uploaded,
    listed: Option<&ListedObject>,
) -> Result<&'static str, Failure> {
    let Some(obj) = listed else {
        let msg = format!(
            "`{}` is not at the destination: the bucket listing after the upload does not show it",
            up.key
        );
        return Err(Failure::new(Reason::Missing, msg));
    };
    if obj.size != up.size {
        let msg = format!(
            "source {} bytes, destination {} bytes (bucket listing after the upload)",
            up.size, obj.size
        );
        return Err(Failure::new(Reason::SizeNotMatch, msg));
    }
    if mode == AuditMode::Simple {
        return Ok("audit=simple(listed: size; content not verified)");
    }
    if let (Some(t), Some(started)) = (obj.last_modified, up.started)
        && t + SKEW_SECS < started
    {
        let msg = format!(
            "`{}` was last modified at {t}, before its upload started at {started}: the \
             upload did not replace it",
            up.key
        );
        return Err(Failure::new(Reason::MtimeNotMatch, msg));
    }
    match obj.etag.as_deref() {
        // The ETag names the object the upload made, headers and all: a different one means
        // something replaced it since.
        Some(etag) if !up.etag.is_empty() && bare(etag) != bare(&up.etag) => {
            let msg = format!(
                "`{}` is not the object this upload made: the listing shows ETag {etag}, the \
                 upload got {}",
                up.key, up.etag
            );
            Err(Failure::new(Reason::ChecksumNotMatch, msg))
        }
        Some(_) if !up.etag.is_empty() => {
            Ok("audit=general(listed: size,last-modified,etag of the upload; content not verified)")
        }
        _ => Ok("audit=general(listed: size,last-modified; content not verified)"),
    }
}

/// The longest common prefix of two keys, cut at a character boundary.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    &a[..n]
}

/// A key that sorts just before `key`, with nothing between them but keys that start with
/// it: `key` with its last character one lower and followed by the highest character
/// (`d/1` → `d/0\u{10FFFF}`), so that a listing from there does not page through a large
/// sibling (`d/0/…`) to reach `key`; `key` without its last character when that one cannot
/// be lowered.
fn just_before(key: &str) -> String {
    let Some((at, last)) = key.char_indices().last() else {
        return String::new();
    };
    let stem = &key[..at];
    match u32::from(last).checked_sub(1).and_then(char::from_u32) {
        Some(lower) => format!("{stem}{lower}{}", char::MAX),
        None => stem.to_string(),
    }
}

#[cfg(test)]
#[path = "listed_tests.rs"]
mod tests;
