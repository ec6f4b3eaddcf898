//! The azure source (`srcType=azure`): Azure Blob Storage over its REST API, signed with
//! Shared Key by hand on the crate's reqwest client.
//!
//! `srcAccessKey` is the storage account, `srcSecretKey` its key, `srcBucket` the container and
//! `srcDomain` the endpoint suffix (`core.windows.net` → `https://<account>.blob.<suffix>`), or
//! a full URL (`http://127.0.0.1:10000`) for path style `<url>/<account>/<container>`
//! (emulators, Azure Stack). Scan units are name prefixes found by delimiter listing, as for
//! the S3 sources; each is listed with List Blobs pages (5,000 names at most, by marker) in
//! name order. List Blobs has no start-after, so a resumed unit is listed from its start and
//! the names up to the checkpoint are skipped. Bodies are ranged Get Blob requests pinned to
//! the listed ETag (If-Match).

pub mod auth;
mod conn;
mod listing;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc::Sender;

use super::endpoint::key_prefix;
use super::{Body, ListBatch, Probe, RelPath, Resume, ScanUnit, Scope, Source, SourceObject};
use crate::error::{Error, Result};
use auth::SharedKey;
use conn::{BlobRange, Conn, Failed};

pub struct AzureSource {
    conn: Arc<Conn>,
    bad_key: bool,
}

/// `scheme://host[:port]` and the path before the container, for `srcDomain` and the account.
///
/// # Errors
/// When `srcDomain` is blank or a URL that is not http(s).
pub fn blob_endpoint(domain: &str, account: &str) -> std::result::Result<(String, String), String> {
    let domain = domain.trim();
    if domain.is_empty() {
        return Err(
            "is blank; set it to the storage endpoint suffix (core.windows.net, \
                    core.chinacloudapi.cn) or, for an emulator or Azure Stack, the blob \
                    endpoint's URL (http://127.0.0.1:10000)"
                .into(),
        );
    }
    let Some((scheme, rest)) = domain.split_once("://") else {
        let suffix = domain.trim_matches('/');
        return Ok((format!("https://{account}.blob.{suffix}"), String::new()));
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(format!(
            "`{domain}` is neither an endpoint suffix nor an http:// or https:// URL"
        ));
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/');
    let root = if path.is_empty() {
        format!("/{account}")
    } else {
        format!("/{path}/{account}")
    };
    Ok((format!("{scheme}://{host}"), root))
}

impl AzureSource {
    /// # Errors
    /// When `srcDomain` is unusable or no HTTP client can be built.
    pub fn new(
        domain: &str,
        account: &str,
        account_key: &str,
        container: &str,
        src_prefix: &str,
    ) -> Result<AzureSource> {
        // Not base64: refused by `check`, at start, with the rest of the job's reasons.
        let bad_key = SharedKey::new(account, account_key).is_none();
        let key = SharedKey::new(account, account_key).unwrap_or_else(|| SharedKey::empty(account));
        let (origin, root) =
            blob_endpoint(domain, account).map_err(|e| Error::Source(format!("srcDomain {e}")))?;
        let conn = Conn::new(key, origin, root, container.into(), key_prefix(src_prefix))?;
        Ok(AzureSource {
            conn: Arc::new(conn),
            bad_key,
        })
    }

    /// Blobs per List Blobs page (1 to 5,000; 5,000 unless set), to make paging visible in tests.
    #[must_use]
    pub fn with_page_size(mut self, n: u32) -> AzureSource {
        if let Some(c) = Arc::get_mut(&mut self.conn) {
            c.page_size = n.clamp(1, 5_000);
        }
        self
    }

    /// Folders directly under `dir`, as relative paths ending in `/`.
    async fn subfolders(&self, dir: &RelPath) -> Result<Vec<RelPath>> {
        let c = &self.conn;
        let prefix = c.name(dir);
        let (mut out, mut marker) = (Vec::new(), None);
        loop {
            let page = c
                .page(&prefix, true, marker.as_deref(), c.page_size)
                .await
                .map_err(source_error)?;
            out.extend(page.prefixes.iter().map(|p| c.rel(p)));
            if page.next_marker.is_some() && page.next_marker == marker {
                return Err(repeated_marker(&prefix));
            }
            marker = page.next_marker;
            if marker.is_none() {
                out.dedup();
                return Ok(out);
            }
        }
    }
}

/// A page that points at itself would be listed forever (a server or proxy fault).
fn repeated_marker(prefix: &str) -> Error {
    Error::Source(format!(
        "List Blobs under `{prefix}` answered the same NextMarker twice; the listing cannot go on \
         (check srcDomain: a caching proxy in between?)"
    ))
}

fn source_error(f: Failed) -> Error {
    Error::Source(f.message)
}

#[async_trait]
impl Source for AzureSource {
    fn ride_outages(&self, outage: std::sync::Arc<crate::outage::Outage>) {
        self.conn.retry.ride_outages(outage);
    }

    async fn check(&self) -> Result<()> {
        if self.bad_key {
            return Err(Error::Source(
                "srcSecretKey is not an Azure account key (base64): set it to the storage \
                 account's access key as the portal shows it (Access keys, key1 or key2)"
                    .into(),
            ));
        }
        let c = &self.conn;
        c.page(&c.prefix, true, None, 1)
            .await
            .map(|_| ())
            .map_err(|f| {
                let hint = match (f.status.map(|s| s.as_u16()), f.code.as_deref()) {
                    (_, Some("ContainerNotFound")) => "check srcBucket (the container's name)",
                    (Some(403), _) | (_, Some("AuthenticationFailed")) => {
                        "check srcAccessKey (the storage account's name) and srcSecretKey (its \
                     access key)"
                    }
                    (Some(404), _) => "check srcAccessKey (the storage account) and srcBucket",
                    _ => "check srcDomain and that the storage endpoint is reachable",
                };
                Error::Source(format!(
                    "container `{}` of account `{}`: {}; {hint}",
                    c.container,
                    self.account(),
                    f.message
                ))
            })
    }

    async fn scan_units(&self, max_depth: u32) -> Result<Vec<ScanUnit>> {
        let this = self;
        super::folder_units(max_depth, |dir| async move { this.subfolders(&dir).await }).await
    }

    async fn list(&self, unit: &ScanUnit, resume: Resume, out: Sender<ListBatch>) -> Result<()> {
        let Scope::Tree { dir, recursive } = &unit.scope else {
            return Err(Error::Internal(format!("not an azure unit: {}", unit.id)));
        };
        let c = &self.conn;
        let prefix = c.name(dir);
        let mut marker = None;
        loop {
            let page = c
                .page(&prefix, !recursive, marker.as_deref(), c.page_size)
                .await
                .map_err(source_error)?;
            let batch: ListBatch = page
                .objects
                .into_iter()
                .filter(|o| resume.after.as_ref().is_none_or(|a| o.path > *a))
                .map(Ok)
                .collect();
            if !batch.is_empty() && out.send(batch).await.is_err() {
                return Ok(());
            }
            if page.next_marker.is_some() && page.next_marker == marker {
                return Err(repeated_marker(&prefix));
            }
            marker = page.next_marker;
            if marker.is_none() {
                return Ok(());
            }
        }
    }

    async fn probe(&self, listed: &SourceObject) -> Result<Probe> {
        match self.conn.head(&listed.path).await {
            Ok(Some(obj)) => Ok(Probe::Present(obj)),
            Ok(None) => Ok(Probe::Missing),
            Err(f) => Err(source_error(f)),
        }
    }

    fn pins_reads(&self) -> bool {
        true
    }

    async fn open(&self, obj: &SourceObject, offset: u64, len: u64) -> Result<Body> {
        let name = self.conn.name(&obj.path);
        let what = format!("source blob `{name}`");
        let range = BlobRange {
            conn: self.conn.clone(),
            name,
            version: obj.version.clone(),
            size: obj.size,
            offset,
            len,
        };
        Ok(Body::new(Arc::new(range), len, what))
    }
}

impl AzureSource {
    fn account(&self) -> &str {
        self.conn.account()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_or_url() {
        let at = |d| blob_endpoint(d, "acct");
        let cn = (
            "https://acct.blob.core.chinacloudapi.cn".into(),
            String::new(),
        );
        assert_eq!(at("core.chinacloudapi.cn"), Ok(cn));
        let local = ("http://127.0.0.1:10000".into(), "/acct".into());
        assert_eq!(at("http://127.0.0.1:10000/"), Ok(local));
        let stack = ("https://h".into(), "/x/acct".into());
        assert_eq!(at("https://h/x"), Ok(stack));
        assert!(at("").is_err());
        assert!(at("ftp://h").is_err());
    }
}
