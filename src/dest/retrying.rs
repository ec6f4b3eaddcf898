//! Retries for any destination: transient failures (timeouts, resets, 5xx, throttling) are
//! tried again with exponential backoff and full jitter (backon), a bounded number of times;
//! then the failure is the file's. When the store stops answering altogether, the requests
//! wait for it instead ([`Outage`]) and their tries are kept for faults of their own.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    CopySource, DestError, DestResult, Destination, ListedPage, ObjectMeta, OpenUpload, PartInfo,
    PutOptions,
};
use crate::backoff::{Retry, Verdict};
use crate::outage::Outage;
use crate::payload::Body;

pub struct RetryingDestination<D> {
    inner: D,
    retry: Retry,
}

impl<D: Destination> RetryingDestination<D> {
    /// `tries` attempts in all per request, waiting 200 ms, 400 ms, ... up to 10 s between;
    /// with `outages` (the store's, the source's), failures without an answer across the
    /// board are waited out instead, and failures while the source was out are not counted.
    pub fn new(inner: D, tries: usize, outages: Option<(Arc<Outage>, Arc<Outage>)>) -> Self {
        let retry = Retry::new(tries);
        if let Some((store, source)) = outages {
            retry.ride_outages(store);
            retry.bodies_from(source);
        }
        RetryingDestination { inner, retry }
    }

    async fn run<T, F, Fut>(&self, what: &str, op: F) -> DestResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = DestResult<T>>,
    {
        // A request is not sent again to probe the store (a PUT would upload twice): a HEAD
        // of the bucket does.
        let probe = || async {
            match self.inner.check_access().await {
                Err(DestError {
                    no_answer: Some((_, why)),
                    ..
                }) => Err(why),
                _ => Ok(()),
            }
        };
        let verdict = |e: &DestError| Verdict {
            transient: e.transient,
            no_answer: e.no_answer.clone(),
            answered: e.no_answer.is_none() && e.read_fault.is_none(),
        };
        self.retry.run_probing(what, op, verdict, probe).await
    }
}

#[async_trait]
impl<D: Destination> Destination for RetryingDestination<D> {
    async fn check_access(&self) -> DestResult<()> {
        self.run("check", || self.inner.check_access()).await
    }

    async fn head(&self, key: &str) -> DestResult<Option<ObjectMeta>> {
        self.run("HEAD", || self.inner.head(key)).await
    }

    async fn list_page(&self, prefix: &str, start_after: &str) -> DestResult<ListedPage> {
        self.run("LIST", || self.inner.list_page(prefix, start_after))
            .await
    }

    async fn delete(&self, key: &str) -> DestResult<()> {
        self.run("DELETE", || self.inner.delete(key)).await
    }

    async fn put(&self, key: &str, body: Body, opts: &PutOptions) -> DestResult<String> {
        self.run("PUT", || self.inner.put(key, body.clone(), opts))
            .await
    }

    async fn replace_metadata(&self, key: &str, opts: &PutOptions) -> DestResult<String> {
        self.run("CopyObject", || self.inner.replace_metadata(key, opts))
            .await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> DestResult<String> {
        self.run("CreateMultipartUpload", || {
            self.inner.create_multipart(key, opts)
        })
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Body,
    ) -> DestResult<String> {
        self.run("UploadPart", || {
            self.inner.upload_part(key, upload_id, number, body.clone())
        })
        .await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> DestResult<Option<Vec<PartInfo>>> {
        self.run("ListParts", || self.inner.list_parts(key, upload_id))
            .await
    }

    async fn read(&self, key: &str) -> DestResult<super::ByteChunks> {
        self.run("GET", || self.inner.read(key)).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartInfo],
    ) -> DestResult<String> {
        self.run("CompleteMultipartUpload", || {
            self.inner.complete_multipart(key, upload_id, parts)
        })
        .await
    }

    async fn copy_object(
        &self,
        key: &str,
        from: &CopySource,
        opts: &PutOptions,
    ) -> DestResult<String> {
        self.run("CopyObject", || self.inner.copy_object(key, from, opts))
            .await
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
        self.run("UploadPartCopy", || {
            self.inner
                .upload_part_copy(key, upload_id, number, from, offset, len)
        })
        .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> DestResult<()> {
        self.run("AbortMultipartUpload", || {
            self.inner.abort_multipart(key, upload_id)
        })
        .await
    }

    async fn list_multipart_uploads(
        &self,
        key_prefix: &str,
    ) -> DestResult<Option<Vec<OpenUpload>>> {
        self.run("ListMultipartUploads", || {
            self.inner.list_multipart_uploads(key_prefix)
        })
        .await
    }
}
