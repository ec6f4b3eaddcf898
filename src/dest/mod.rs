//! The one trait for the destination and the neutral types it speaks; no SDK type crosses it.

pub mod body;
pub mod retrying;
pub mod s3;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::JobConfig;
use crate::outage::NoAnswer;
use crate::payload::{Body, ReadFaultKind};

/// User metadata key holding the source file's mtime (unix seconds), so skip-existing and
/// audit compare with the file's own time rather than the upload time.
pub const META_SRC_MTIME: &str = "ossimport-src-mtime";
/// User metadata key of the file's MD5 (`workerRecordMd5`); OSS shows it as x-oss-meta-md5.
pub const META_MD5: &str = "md5";

/// What the destination says about an object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    pub size: u64,
    /// Unix seconds.
    pub last_modified: Option<i64>,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    /// User metadata, keys without the `x-amz-meta-` / `x-oss-meta-` prefix.
    pub metadata: BTreeMap<String, String>,
    /// CRC-64/XZ of the content as the store reports it (OSS: `x-oss-hash-crc64ecma`).
    pub crc64: Option<u64>,
}

/// An object as a bucket listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// Unix seconds.
    pub last_modified: Option<i64>,
    /// `None` when the store lists no ETags (s3s-fs).
    pub etag: Option<String>,
}

/// One page of a bucket listing, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedPage {
    pub objects: Vec<ListedObject>,
    /// More keys follow the last one.
    pub truncated: bool,
}

/// Headers of a new object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutOptions {
    pub content_type: String,
    /// Ask for AES256 server-side encryption (`isServerSideEncryption`).
    pub server_side_encryption: bool,
    /// User metadata, keys without prefix.
    pub metadata: BTreeMap<String, String>,
}

/// An object of the same store (same endpoint and keys) to copy server-side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    pub bucket: String,
    pub key: String,
    /// The ETag it was listed with: the copy is pinned to it.
    pub version: Option<String>,
}

/// A finished part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: i32,
    pub etag: String,
    pub size: u64,
}

/// A multipart upload the store holds open: started, neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
}

/// A destination failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DestError {
    pub message: String,
    /// Worth trying again: timeouts, resets, 5xx, throttling.
    pub transient: bool,
    /// The request failed because reading its body from the source failed for good, this way.
    pub read_fault: Option<ReadFaultKind>,
    /// Set when the store gave no answer worth keeping (none at all, or a 5xx): how, and why
    /// in a few words, so that an outage is waited out instead of failing files.
    pub no_answer: Option<(NoAnswer, String)>,
}

impl DestError {
    pub fn fatal(message: impl Into<String>) -> Self {
        DestError {
            message: message.into(),
            transient: false,
            read_fault: None,
            no_answer: None,
        }
    }
}

pub type DestResult<T> = Result<T, DestError>;

/// An object's bytes, chunk by chunk.
pub type ByteChunks = futures::stream::BoxStream<'static, DestResult<bytes::Bytes>>;

#[async_trait]
pub trait Destination: Send + Sync {
    /// Checks that the bucket is reachable with the credentials, before any work starts.
    async fn check_access(&self) -> DestResult<()>;

    /// The object's metadata, or `None` when there is no such object.
    async fn head(&self, key: &str) -> DestResult<Option<ObjectMeta>>;

    /// Up to 1,000 objects whose keys start with `prefix` and sort after `start_after`.
    async fn list_page(&self, prefix: &str, start_after: &str) -> DestResult<ListedPage>;

    /// Removes an object (no error when there is none).
    async fn delete(&self, key: &str) -> DestResult<()>;

    /// Uploads a whole object in one request; returns its ETag.
    async fn put(&self, key: &str, body: Body, opts: &PutOptions) -> DestResult<String>;

    /// Replaces an existing object's headers and metadata in place (server-side copy; no
    /// bytes are sent again).
    async fn replace_metadata(&self, key: &str, opts: &PutOptions) -> DestResult<String>;

    /// Starts a multipart upload; returns the upload id.
    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> DestResult<String>;

    /// Uploads one part; returns its ETag.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Body,
    ) -> DestResult<String>;

    /// The parts the server holds for an upload, or `None` when the upload no longer exists.
    async fn list_parts(&self, key: &str, upload_id: &str) -> DestResult<Option<Vec<PartInfo>>>;

    /// The object's bytes as a stream (for read-back verification).
    async fn read(&self, key: &str) -> DestResult<ByteChunks>;

    /// Completes a multipart upload; returns the object's ETag.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> DestResult<String>;

    /// Copies `from` into `key` inside the store, without the bytes passing through this
    /// machine; the copy fails if `from` no longer has ETag `from.version`. Returns the ETag.
    async fn copy_object(
        &self,
        key: &str,
        from: &CopySource,
        opts: &PutOptions,
    ) -> DestResult<String>;

    /// Uploads bytes `offset..offset+len` of `from` as part `number`, inside the store.
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        from: &CopySource,
        offset: u64,
        len: u64,
    ) -> DestResult<String>;

    /// Abandons a multipart upload so its parts stop costing storage. An upload that no
    /// longer exists is not an error: what the caller wanted is already true.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> DestResult<()>;

    /// The multipart uploads in progress whose keys start with `key_prefix`, or `None` when
    /// the store does not offer this listing (s3s-fs answers 501).
    async fn list_multipart_uploads(&self, key_prefix: &str)
    -> DestResult<Option<Vec<OpenUpload>>>;
}

/// The job's destination (destDomain, destBucket, its keys), each request tried up to
/// `tries` times on transient failures. With `outages` (the store's, the source's), requests
/// wait out an outage of the store instead of spending their tries on it, and a failure while
/// the source was out is not theirs (the service); without, they report it (the one-shot
/// commands).
pub fn open(
    job: &JobConfig,
    tries: usize,
    outages: Option<(Arc<crate::outage::Outage>, Arc<crate::outage::Outage>)>,
) -> Arc<dyn Destination> {
    let s3 = s3::S3Destination::new(&s3::S3Settings {
        endpoint: &job.dest_domain,
        bucket: &job.dest_bucket,
        access_key: job.dest_access_key.expose(),
        secret_key: job.dest_secret_key.expose(),
    });
    Arc::new(retrying::RetryingDestination::new(s3, tries, outages))
}
