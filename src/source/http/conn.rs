//! The requests of the http source: HEAD (or a one-byte GET) for a URL's size and mtime, and
//! GETs of byte ranges as bodies, each retried while its failure is transient.

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_MATCH, LAST_MODIFIED, RANGE};
use reqwest::{Client, Method, StatusCode};

use crate::error::Result;
use crate::payload::{ByteStream, ReadFault, ReadFaultKind, Reopen};
use crate::source::rest;
use crate::source::{RelPath, SourceObject};

pub(super) struct Conn {
    client: Client,
    pub(super) retry: crate::backoff::Retry,
}

/// A request failure, and whether it is worth another try.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) message: String,
    transient: bool,
    status: Option<StatusCode>,
}

impl Conn {
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub(super) fn new() -> Result<Conn> {
        let client =
            rest::client(Client::builder().redirect(reqwest::redirect::Policy::limited(10)))?;
        Ok(Conn {
            client,
            retry: crate::backoff::Retry::new(crate::backoff::REQUEST_TRIES),
        })
    }

    /// One request, retried while the failure is transient; 404 is `None`.
    async fn send(
        &self,
        method: Method,
        url: &str,
        range: Option<String>,
    ) -> std::result::Result<Option<reqwest::Response>, Failed> {
        self.send_if(method, url, range, None).await
    }

    /// [`Conn::send`], only while the resource still has ETag `version` (If-Match).
    async fn send_if(
        &self,
        method: Method,
        url: &str,
        range: Option<String>,
        version: Option<&str>,
    ) -> std::result::Result<Option<reqwest::Response>, Failed> {
        let call = || async {
            let mut req = self.client.request(method.clone(), url);
            if let Some(r) = &range {
                req = req.header(RANGE, r);
            }
            if let Some(v) = version {
                req = req.header(IF_MATCH, v);
            }
            let resp = req.send().await.map_err(|e| Failed {
                message: format!("{method} {url}: {}", rest::no_answer(&e)),
                transient: true,
                status: None,
            })?;
            let status = resp.status();
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Ok(None);
            }
            if status.is_success() {
                return Ok(Some(resp));
            }
            Err(Failed {
                message: format!(
                    "{method} {url}: {}",
                    crate::words::refusal(status.as_u16(), None, None, "the URL list's links")
                ),
                transient: rest::transient(status),
                status: Some(status),
            })
        };
        let verdict =
            |f: &Failed| rest::verdict(&f.message, f.transient, f.status.map(|s| s.as_u16()));
        self.retry.run(method.as_str(), &call, verdict).await
    }

    /// Size, mtime and ETag of `url`: HEAD, or a one-byte GET where HEAD is refused.
    pub(super) async fn head(
        &self,
        url: &str,
    ) -> std::result::Result<Option<SourceObject>, Failed> {
        let resp = match self.send(Method::HEAD, url, None).await {
            Ok(resp) => resp,
            Err(f) if matches!(f.status.map(|s| s.as_u16()), Some(403 | 405 | 501)) => {
                self.send(Method::GET, url, Some("bytes=0-0".into()))
                    .await?
            }
            Err(f) => return Err(f),
        };
        let Some(resp) = resp else { return Ok(None) };
        let headers = resp.headers();
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
        };
        // A ranged answer carries the full size after the slash: `bytes 0-0/1234`.
        let size = match (resp.status(), text(CONTENT_RANGE)) {
            (StatusCode::PARTIAL_CONTENT, Some(range)) => {
                range.rsplit('/').next().and_then(|s| s.parse().ok())
            }
            _ => text(CONTENT_LENGTH).and_then(|s| s.parse().ok()),
        };
        let Some(size) = size else {
            return Err(Failed {
                message: format!(
                    "{url}: the server gives no Content-Length; its size cannot be known before the copy"
                ),
                transient: false,
                status: Some(resp.status()),
            });
        };
        let mtime = text(LAST_MODIFIED).map_or(0, rest::mtime);
        let mut obj = SourceObject::new(RelPath(Vec::new()), size, mtime);
        // No change marker from the ETag: a farm of servers behind one name gives one file a
        // different ETag per node (inode-based), and pinning reads to it would fail every file.
        // Size and Last-Modified, checked before and after the copy, catch a rewrite instead.
        obj.locator = Some(url.to_string());
        Ok(Some(obj))
    }
}

/// A byte range of one URL.
pub(super) struct UrlRange {
    conn: Arc<Conn>,
    url: String,
    /// The whole file: no Range header, so any server can serve it.
    whole: bool,
    /// The ETag it was listed with: the read is pinned to it (If-Match).
    version: Option<String>,
    /// The file's size as listed or probed.
    size: u64,
    offset: u64,
    len: u64,
}

impl UrlRange {
    pub(super) fn new(
        conn: Arc<Conn>,
        url: String,
        obj: &SourceObject,
        offset: u64,
        len: u64,
    ) -> UrlRange {
        UrlRange {
            conn,
            url,
            whole: offset == 0 && len == obj.size,
            version: obj.version.clone(),
            size: obj.size,
            offset,
            len,
        }
    }
}

impl Reopen for UrlRange {
    fn open(&self) -> BoxFuture<'static, std::io::Result<ByteStream>> {
        let (conn, url, whole, offset, size) = (
            self.conn.clone(),
            self.url.clone(),
            self.whole,
            self.offset,
            self.size,
        );
        let version = self.version.clone();
        let range =
            (!whole).then(|| format!("bytes={offset}-{}", (offset + self.len).saturating_sub(1)));
        Box::pin(async move {
            let resp = conn
                .send_if(Method::GET, &url, range.clone(), version.as_deref())
                .await
                .map_err(|f| {
                    // Answers that will be the same on every try stop the retries.
                    let why = match f.status {
                        Some(StatusCode::PRECONDITION_FAILED) => {
                            " (SIZE_NOT_MATCH: changed after it was listed)"
                        }
                        Some(StatusCode::RANGE_NOT_SATISFIABLE) => {
                            " (SIZE_NOT_MATCH: shorter than when it was listed)"
                        }
                        _ => return std::io::Error::other(f.message),
                    };
                    ReadFault::io(ReadFaultKind::Changed, format!("{}{why}", f.message))
                })?
                .ok_or_else(|| {
                    ReadFault::io(
                        ReadFaultKind::Deleted,
                        format!("GET {url}: 404 (FILE_NOT_FOUND: deleted after it was listed)"),
                    )
                })?;
            // Servers that ignore If-Match still name the version they send.
            let sent = resp.headers().get(ETAG).and_then(|v| v.to_str().ok());
            if let (Some(sent), Some(listed)) = (sent, version.as_deref())
                && !sent.starts_with("W/")
                && sent != listed
            {
                return Err(ReadFault::io(
                    ReadFaultKind::Changed,
                    format!(
                        "GET {url}: the file changed after it was listed (ETag {listed} then, \
                         {sent} now) (SIZE_NOT_MATCH)"
                    ),
                ));
            }
            rest::check_answer(&resp, range.as_deref(), size, &format!("GET {url}"))?;
            Ok(rest::byte_stream(resp))
        })
    }
}
