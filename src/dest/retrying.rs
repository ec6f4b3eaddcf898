//! Retries for any destination: transient failures (timeouts, resets, 5xx, throttling) are
//! tried again with exponential backoff and full jitter (backon), a bounded number of times;
//! then the failure is the file's. When the store stops answering altogether, the requests
//! wait for it instead ([`Outage`]) and their tries are kept for faults of their own.

use std::sync::Arc;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};

use super::{
    CopySource, DestError, DestResult, Destination, ListedPage, ObjectMeta, OpenUpload, PartInfo,
    PutOptions,
};
use crate::outage::Outage;
use crate::payload::Body;

pub struct RetryingDestination<D> {
    inner: D,
    policy: ExponentialBuilder,
    outage: Option<Arc<Outage>>,
}

impl<D: Destination> RetryingDestination<D> {
    /// `tries` attempts in all per request, waiting 200 ms, 400 ms, ... up to 10 s between;
    /// with `outage`, failures without an answer across the board are waited out instead.
    pub fn new(inner: D, tries: usize, outage: Option<Arc<Outage>>) -> Self {
        RetryingDestination {
            inner,
            policy: crate::backoff::policy(tries),
            outage,
        }
    }

    async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> DestResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = DestResult<T>>,
    {
        let mut waits = self.policy.build();
        loop {
            // Nothing new starts while the store is out.
            if let Some(outage) = &self.outage {
                outage.wait(|| self.probe()).await;
            }
            let e = match op().await {
                Ok(done) => {
                    self.answered();
                    return Ok(done);
                }
                Err(e) => e,
            };
            match (&e.no_answer, &self.outage) {
                (Some((how, why)), Some(outage)) if outage.no_answer(*how, why) => continue,
                (None, _) if e.read_fault.is_none() => self.answered(),
                _ => {}
            }
            if !e.transient {
                return Err(e);
            }
            let Some(wait) = waits.next() else {
                return Err(e);
            };
            tracing::debug!("{what}: {}; retrying in {wait:?}", e.message);
            tokio::time::sleep(wait).await;
        }
    }

    fn answered(&self) {
        if let Some(outage) = &self.outage {
            outage.answered();
        }
    }

    /// One look at the store, without retries: `Err` with the cause when it did not answer.
    async fn probe(&self) -> Result<(), String> {
        match self.inner.check_access().await {
            Err(DestError {
                no_answer: Some((_, why)),
                ..
            }) => Err(why),
            _ => Ok(()),
        }
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
