//! ListMultipartUploads for [`S3Destination`]: every page, or `None` from a store that does
//! not offer the listing.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::S3Destination;
use crate::dest::{DestResult, OpenUpload};

impl S3Destination {
    /// Every page of ListMultipartUploads for `key_prefix`; `None` when the store answers
    /// that it does not offer the operation.
    pub(super) async fn list_uploads(
        &self,
        key_prefix: &str,
    ) -> DestResult<Option<Vec<OpenUpload>>> {
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let page = match self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(key_prefix)
                .set_key_marker(key_marker)
                .set_upload_id_marker(id_marker)
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) if not_implemented(&e) => return Ok(None),
                Err(e) => return Err(self.err("ListMultipartUploads", key_prefix, e)),
            };
            uploads.extend(page.uploads().iter().filter_map(|u| {
                Some(OpenUpload {
                    key: u.key()?.to_string(),
                    upload_id: u.upload_id()?.to_string(),
                })
            }));
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            // No markers on a truncated page would ask for the same page forever.
            if !page.is_truncated().unwrap_or(false)
                || (key_marker.is_none() && id_marker.is_none())
            {
                return Ok(Some(uploads));
            }
        }
    }
}

/// The server does not offer the operation at all (s3s-fs: 501 NotImplemented).
fn not_implemented<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ServiceError(se) => {
            se.raw().status().as_u16() == 501 || se.err().code() == Some("NotImplemented")
        }
        _ => false,
    }
}
