//! OSS (or any S3-compatible store) through aws-sdk-s3, with the settings OSS needs.

use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{
    ByteChunks, CopySource, DestError, DestResult, Destination, ListedObject, ListedPage,
    ObjectMeta, OpenUpload, PartInfo, PutOptions,
};
use crate::payload::{Body, ReadFault};
use crate::s3client::{CaptureHeader, ClientSettings, Wording, build_client, describe};
use crate::source::endpoint::{host_of, is_ip_or_localhost, oss_region};

/// Characters kept as is in an `x-amz-copy-source` value: unreserved ones and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

pub struct S3Destination {
    client: Client,
    /// PutObject without the SDK's per-request cost, when the endpoint allows.
    direct: Option<direct::DirectPut>,
    bucket: String,
    /// Scrubbed from every error message: a server may echo the key id back.
    secrets: [String; 2],
    /// `host:port`, for the words of a failure.
    authority: String,
    /// Whether the store lists multipart uploads ([`LISTING_UNKNOWN`], [`LISTING_OFFERED`],
    /// [`LISTING_MISSING`]): a store without it is asked once per run, not once per file.
    upload_listing: AtomicU8,
    /// Held by the first listings while the answer is unknown, so that files starting at
    /// once do not all ask.
    first_listing: tokio::sync::Mutex<()>,
}

const LISTING_UNKNOWN: u8 = 0;
const LISTING_OFFERED: u8 = 1;
const LISTING_MISSING: u8 = 2;

/// The connection settings of a destination; secrets stay inside.
pub struct S3Settings<'a> {
    pub endpoint: &'a str,
    pub bucket: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
}

impl S3Destination {
    pub fn new(s: &S3Settings<'_>) -> Self {
        let endpoint = s.endpoint.trim_end_matches('/');
        let host = host_of(endpoint);
        let region = oss_region(host).unwrap_or_else(|| "us-east-1".into());
        // OSS wants virtual-hosted style; an IP or localhost endpoint has no DNS for that.
        let path_style = is_ip_or_localhost(host);
        let settings = ClientSettings {
            endpoint,
            region: &region,
            path_style,
            access_key: s.access_key,
            secret_key: s.secret_key,
        };
        let client = build_client(&settings);
        let direct = direct::DirectPut::new(&settings, s.bucket);
        S3Destination {
            client,
            direct,
            bucket: s.bucket.to_string(),
            secrets: [s.access_key.to_string(), s.secret_key.to_string()],
            authority: crate::words::authority(endpoint),
            upload_listing: AtomicU8::new(LISTING_UNKNOWN),
            first_listing: tokio::sync::Mutex::new(()),
        }
    }

    /// A request failure as our error, classified, without any secret in it.
    fn err<E>(&self, what: &str, key: &str, e: SdkError<E, HttpResponse>) -> DestError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let wording = Wording {
            authority: &self.authority,
            keys: "destAccessKey/destSecretKey",
            secrets: &self.secrets,
        };
        let f = describe(what, key, &e, &wording);
        // A source that changed or vanished while it was read fails the same way every try.
        let read_fault = ReadFault::find(&e).map(|fault| fault.kind);
        DestError {
            message: f.message,
            transient: f.transient && read_fault.is_none(),
            read_fault,
            no_answer: f.no_answer.filter(|_| read_fault.is_none()),
        }
    }
}

/// An `x-amz-copy-source` value: `bucket/key`, the key percent-encoded.
fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE))
}

fn user_metadata(opts: &PutOptions) -> Option<std::collections::HashMap<String, String>> {
    (!opts.metadata.is_empty()).then(|| opts.metadata.clone().into_iter().collect())
}

/// The upload is gone (completed or aborted already).
fn no_such_upload<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("NoSuchUpload")
}

fn etag(e: Option<&str>) -> String {
    e.unwrap_or_default().to_string()
}

#[async_trait]
impl Destination for S3Destination {
    async fn check_access(&self) -> DestResult<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let mut e = self.err("HEAD bucket", &self.bucket, e);
                if e.no_answer.is_some() {
                    e.message.push_str("; check destDomain and the network");
                }
                e
            })
    }

    async fn head(&self, key: &str) -> DestResult<Option<ObjectMeta>> {
        let crc = CaptureHeader::default();
        let sent = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .customize()
            .interceptor(crc.clone())
            .send()
            .await;
        let crc64 = crc.crc64();
        match sent {
            Ok(out) => Ok(Some(ObjectMeta {
                crc64,
                size: out.content_length().unwrap_or_default().max(0) as u64,
                last_modified: out.last_modified().map(|t| t.secs()),
                etag: out.e_tag().map(str::to_string),
                content_type: out.content_type().map(str::to_string),
                metadata: out
                    .metadata()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.err("HEAD", key, e)),
        }
    }

    async fn list_page(&self, prefix: &str, start_after: &str) -> DestResult<ListedPage> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after((!start_after.is_empty()).then(|| start_after.to_string()))
            .send()
            .await
            .map_err(|e| self.err("LIST", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ListedObject {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or_default().max(0) as u64,
                    last_modified: o.last_modified().map(|t| t.secs()),
                    etag: o.e_tag().filter(|e| !e.is_empty()).map(str::to_string),
                })
            })
            .collect();
        Ok(ListedPage {
            objects,
            truncated: out.is_truncated().unwrap_or(false),
        })
    }

    async fn delete(&self, key: &str) -> DestResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err("DELETE", key, e))
    }

    async fn put(&self, key: &str, body: Body, opts: &PutOptions) -> DestResult<String> {
        if let Some(direct) = self
            .direct
            .as_ref()
            .filter(|_| direct::DirectPut::takes(key))
        {
            return direct.put(key, body, opts).await;
        }
        let (body, len) = super::body::byte_stream(body);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len)
            .content_type(&opts.content_type)
            .set_metadata(user_metadata(opts))
            .body(body);
        if opts.server_side_encryption {
            req = req.server_side_encryption(ServerSideEncryption::Aes256);
        }
        let out = req.send().await.map_err(|e| self.err("PUT", key, e))?;
        Ok(etag(out.e_tag()))
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> DestResult<String> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&opts.content_type)
            .set_metadata(user_metadata(opts));
        if opts.server_side_encryption {
            req = req.server_side_encryption(ServerSideEncryption::Aes256);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.err("CreateMultipartUpload", key, e))?;
        out.upload_id().map(str::to_string).ok_or_else(|| {
            DestError::fatal(format!(
                "CreateMultipartUpload `{key}`: the server returned no upload id"
            ))
        })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Body,
    ) -> DestResult<String> {
        let (body, len) = super::body::byte_stream(body);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(len)
            .body(body)
            .send()
            .await
            .map_err(|e| self.err("UploadPart", key, e))?;
        Ok(etag(out.e_tag()))
    }

    async fn read(&self, key: &str) -> DestResult<ByteChunks> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("GET", key, e))?;
        let key = key.to_string();
        let chunks = futures::stream::unfold(Some(out.body), move |body| {
            let key = key.clone();
            async move {
                let mut body = body?;
                match body.next().await {
                    Some(Ok(bytes)) => Some((Ok(bytes), Some(body))),
                    Some(Err(e)) => Some((
                        Err(DestError {
                            message: format!("GET {key}: reading the body failed: {e}"),
                            transient: true,
                            read_fault: None,
                            no_answer: None,
                        }),
                        None,
                    )),
                    None => None,
                }
            }
        });
        Ok(Box::pin(chunks))
    }

    async fn replace_metadata(&self, key: &str, opts: &PutOptions) -> DestResult<String> {
        let source = copy_source(&self.bucket, key);
        let mut req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(source)
            .metadata_directive(MetadataDirective::Replace)
            .content_type(&opts.content_type)
            .set_metadata(user_metadata(opts));
        if opts.server_side_encryption {
            req = req.server_side_encryption(ServerSideEncryption::Aes256);
        }
        req.send()
            .await
            .map(|out| etag(out.copy_object_result().and_then(|r| r.e_tag())))
            .map_err(|e| self.err("CopyObject", key, e))
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> DestResult<Option<Vec<PartInfo>>> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = match self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if no_such_upload(&e) => return Ok(None),
                Err(e) => return Err(self.err("ListParts", key, e)),
            };
            parts.extend(out.parts().iter().map(|p| PartInfo {
                number: p.part_number().unwrap_or_default(),
                etag: etag(p.e_tag()),
                size: p.size().unwrap_or_default().max(0) as u64,
            }));
            marker = out.next_part_number_marker().map(str::to_string);
            if !out.is_truncated().unwrap_or(false) || marker.is_none() {
                return Ok(Some(parts));
            }
        }
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> DestResult<String> {
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.err("CompleteMultipartUpload", key, e))?;
        Ok(etag(out.e_tag()))
    }

    async fn copy_object(
        &self,
        key: &str,
        from: &CopySource,
        opts: &PutOptions,
    ) -> DestResult<String> {
        let mut req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(copy_source(&from.bucket, &from.key))
            .set_copy_source_if_match(from.version.clone())
            // Our headers, not the source's: the same as an upload would set.
            .metadata_directive(MetadataDirective::Replace)
            .content_type(&opts.content_type)
            .set_metadata(user_metadata(opts));
        if opts.server_side_encryption {
            req = req.server_side_encryption(ServerSideEncryption::Aes256);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.err("CopyObject", key, e))?;
        Ok(etag(out.copy_object_result().and_then(|r| r.e_tag())))
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        from: &CopySource,
        offset: u64,
        len: u64,
    ) -> DestResult<String> {
        let range = format!("bytes={offset}-{}", (offset + len).saturating_sub(1));
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(copy_source(&from.bucket, &from.key))
            .copy_source_range(range)
            .set_copy_source_if_match(from.version.clone())
            .send()
            .await
            .map_err(|e| self.err("UploadPartCopy", key, e))?;
        Ok(etag(out.copy_part_result().and_then(|r| r.e_tag())))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> DestResult<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            // Also what a retried abort whose first answer was lost sees.
            Err(e) if no_such_upload(&e) => Ok(()),
            Err(e) => Err(self.err("AbortMultipartUpload", key, e)),
            Ok(_) => Ok(()),
        }
    }

    async fn list_multipart_uploads(
        &self,
        key_prefix: &str,
    ) -> DestResult<Option<Vec<OpenUpload>>> {
        let _first = match self.upload_listing.load(Ordering::Acquire) {
            LISTING_MISSING => return Ok(None),
            LISTING_OFFERED => None,
            _ => Some(self.first_listing.lock().await),
        };
        if self.upload_listing.load(Ordering::Acquire) == LISTING_MISSING {
            return Ok(None);
        }
        let listed = self.list_uploads(key_prefix).await;
        match &listed {
            Ok(Some(_)) => self
                .upload_listing
                .store(LISTING_OFFERED, Ordering::Release),
            Ok(None) => {
                self.upload_listing
                    .store(LISTING_MISSING, Ordering::Release);
                tracing::info!(
                    "the destination does not list multipart uploads; uploads left behind by a \
                     crash cannot be looked for there"
                );
            }
            // Unknown still: the next file asks again.
            Err(_) => {}
        }
        listed
    }
}

mod direct;
mod uploads;

#[cfg(test)]
pub(crate) mod tests;
