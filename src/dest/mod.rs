//! The one trait for the destination and the neutral types it speaks; no SDK type crosses it.

pub mod s3;

use async_trait::async_trait;

use crate::source::Body;

/// What the destination says about an object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    pub size: u64,
    /// Unix seconds.
    pub last_modified: Option<i64>,
    pub etag: Option<String>,
    pub content_type: Option<String>,
}

/// Headers of a new object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutOptions {
    pub content_type: String,
    /// Ask for AES256 server-side encryption (`isServerSideEncryption`).
    pub server_side_encryption: bool,
}

/// A finished part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: i32,
    pub etag: String,
    pub size: u64,
}

/// A destination failure, already retried where retrying made sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DestError {
    pub message: String,
}

pub type DestResult<T> = Result<T, DestError>;

#[async_trait]
pub trait Destination: Send + Sync {
    /// Checks that the bucket is reachable with the credentials, before any work starts.
    async fn check_access(&self) -> DestResult<()>;

    /// The object's metadata, or `None` when there is no such object.
    async fn head(&self, key: &str) -> DestResult<Option<ObjectMeta>>;

    /// Uploads a whole object in one request; returns its ETag.
    async fn put(&self, key: &str, body: Body, opts: &PutOptions) -> DestResult<String>;

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

    /// Completes a multipart upload; returns the object's ETag.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> DestResult<String>;

    /// Abandons a multipart upload so its parts stop costing storage.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> DestResult<()>;
}
