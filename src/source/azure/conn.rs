//! The requests of the azure source, signed with Shared Key: List Blobs pages, Get Blob
//! Properties (HEAD) and ranged Get Blob bodies, each retried while its failure is transient.
//!
//! Error messages name the method, the container or blob and Azure's error code
//! (`x-ms-error-code`), never the error body: for AuthenticationFailed it quotes the request's
//! signature.

use std::sync::Arc;

use base64::Engine;
use futures::future::BoxFuture;
use percent_encoding::utf8_percent_encode;
use reqwest::header::ETAG;
use reqwest::{Client, Method, StatusCode};

use super::auth::{API_VERSION, SharedKey};
use super::listing::{Page, parse_page};
use crate::error::Result;
use crate::payload::{ByteStream, ReadFault, ReadFaultKind, Reopen};
use crate::source::endpoint::{prefixed_key, unprefixed};
use crate::source::{RelPath, SourceObject};
// `/` in a blob name is left as it is: Azure treats it as a path separator of the name.
use crate::source::rest::{self, PATH, UNRESERVED};
use crate::words::refusal;

/// The settings to check when Azure refuses the keys.
const KEYS: &str = "srcAccessKey (account) / srcSecretKey (account key)";

pub(super) struct Conn {
    client: Client,
    key: SharedKey,
    /// `scheme://host[:port]`.
    origin: String,
    /// The path before the container: empty, or `/<account>` in path style.
    root: String,
    pub(super) container: String,
    /// `srcPrefix` as a blob name prefix; relative paths are names without it.
    pub(super) prefix: String,
    /// Blobs per List Blobs page (Azure's maximum is 5,000).
    pub(super) page_size: u32,
    pub(super) retry: crate::backoff::Retry,
}

/// A request failure, and whether it is worth another try.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) message: String,
    transient: bool,
    pub(super) status: Option<StatusCode>,
    pub(super) code: Option<String>,
}

impl Conn {
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub(super) fn new(
        key: SharedKey,
        origin: String,
        root: String,
        container: String,
        prefix: String,
    ) -> Result<Conn> {
        let client = rest::client(Client::builder())?;
        Ok(Conn {
            client,
            key,
            origin,
            root,
            container,
            prefix,
            page_size: 5_000,
            retry: crate::backoff::Retry::new(crate::backoff::REQUEST_TRIES),
        })
    }

    pub(super) fn account(&self) -> &str {
        self.key.account()
    }

    pub(super) fn name(&self, rel: &RelPath) -> String {
        prefixed_key(&self.prefix, rel)
    }

    pub(super) fn rel(&self, name: &str) -> RelPath {
        unprefixed(&self.prefix, name)
    }

    /// One signed request on the container (`blob` None) or a blob, retried while transient;
    /// `what` names it in messages.
    async fn send(
        &self,
        method: Method,
        blob: Option<&str>,
        query: &[(&str, String)],
        headers: &[(&str, String)],
    ) -> std::result::Result<reqwest::Response, Failed> {
        let mut path = format!(
            "{}/{}",
            self.root,
            utf8_percent_encode(&self.container, PATH)
        );
        if let Some(b) = blob {
            path.push('/');
            path.extend(utf8_percent_encode(b, PATH));
        }
        let what = match blob {
            Some(b) => format!("{method} blob `{b}`"),
            None => format!("{method} container `{}`", self.container),
        };
        let mut url = format!("{}{path}", self.origin);
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!(
                "{name}={}",
                utf8_percent_encode(value, UNRESERVED)
            ));
        }
        let call = || async {
            let date = httpdate::fmt_http_date(std::time::SystemTime::now());
            let mut all: Vec<(&str, &str)> =
                vec![("x-ms-date", &date), ("x-ms-version", API_VERSION)];
            all.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
            let q: Vec<(&str, &str)> = query.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let auth = self.key.authorization(method.as_str(), &path, &q, &all);
            let mut req = self.client.request(method.clone(), &url);
            for (name, value) in &all {
                req = req.header(*name, *value);
            }
            let resp = req
                .header("authorization", auth)
                .send()
                .await
                .map_err(|e| Failed {
                    message: format!("{what}: {}", rest::no_answer(&e)),
                    transient: true,
                    status: None,
                    code: None,
                })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            let code = resp
                .headers()
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let why = refusal(status.as_u16(), code.as_deref(), None, KEYS);
            Err(Failed {
                message: format!("{what}: {why}"),
                transient: rest::transient(status),
                status: Some(status),
                code,
            })
        };
        let verdict =
            |f: &Failed| rest::verdict(&f.message, f.transient, f.status.map(|s| s.as_u16()));
        self.retry.run(&what, &call, verdict).await
    }

    /// One List Blobs page under `prefix` (the whole name prefix), after `marker`.
    pub(super) async fn page(
        &self,
        prefix: &str,
        delimited: bool,
        marker: Option<&str>,
        max: u32,
    ) -> std::result::Result<Page, Failed> {
        let mut query = vec![
            ("restype", "container".to_string()),
            ("comp", "list".to_string()),
            ("prefix", prefix.to_string()),
            ("maxresults", max.to_string()),
        ];
        if delimited {
            query.push(("delimiter", "/".to_string()));
        }
        if let Some(m) = marker {
            query.push(("marker", m.to_string()));
        }
        let resp = self.send(Method::GET, None, &query, &[]).await?;
        let body = resp.text().await.map_err(|e| Failed {
            message: format!("LIST `{prefix}`: {}", rest::no_answer(&e)),
            transient: true,
            status: None,
            code: None,
        })?;
        parse_page(&body, |name| self.rel(name)).map_err(|e| Failed {
            message: format!("LIST `{prefix}`: {e}"),
            transient: false,
            status: None,
            code: None,
        })
    }

    /// Get Blob Properties: size, mtime, ETag and Content-MD5; `None` when it is gone.
    pub(super) async fn head(
        &self,
        rel: &RelPath,
    ) -> std::result::Result<Option<SourceObject>, Failed> {
        let name = self.name(rel);
        let resp = match self.send(Method::HEAD, Some(&name), &[], &[]).await {
            Ok(r) => r,
            Err(f) if f.status == Some(StatusCode::NOT_FOUND) => return Ok(None),
            Err(f) => return Err(f),
        };
        let h = resp.headers();
        let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        let size = text("content-length")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut obj = SourceObject::new(
            rel.clone(),
            size,
            text("last-modified").map_or(0, rest::mtime),
        );
        obj.version = text("etag").map(quoted);
        obj.md5 = text("content-md5").and_then(md5_hex);
        Ok(Some(obj))
    }
}

/// An ETag in quotes, as the Get Blob answer gives it (listings give it bare).
pub(super) fn quoted(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

/// A base64 Content-MD5 as lowercase hex; `None` unless it is 16 bytes.
pub(super) fn md5_hex(b64: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    (raw.len() == 16).then(|| crate::payload::hex(&raw))
}

/// What a failed read says about the blob. Answers that will be the same on every try stop
/// the retries; a 412 is looked at again, as Azurite (unlike Azure's 404) answers a deleted
/// blob's If-Match read with it.
async fn read_fault(conn: &Conn, name: &str, f: Failed) -> std::io::Error {
    let status = f.status.map(|s| s.as_u16());
    if status == Some(412) && matches!(conn.head(&conn.rel(name)).await, Ok(None)) {
        let why = " (FILE_NOT_FOUND: deleted after it was listed)";
        return ReadFault::io(ReadFaultKind::Deleted, format!("{}{why}", f.message));
    }
    status
        .and_then(|s| ReadFault::of_status(s, false, &f.message))
        .unwrap_or_else(|| std::io::Error::other(f.message))
}

/// A byte range of one version of a blob.
pub(super) struct BlobRange {
    pub(super) conn: Arc<Conn>,
    pub(super) name: String,
    /// The ETag it was listed with: the read is pinned to it (If-Match).
    pub(super) version: Option<String>,
    pub(super) size: u64,
    pub(super) offset: u64,
    pub(super) len: u64,
}

impl Reopen for BlobRange {
    fn open(&self) -> BoxFuture<'static, std::io::Result<ByteStream>> {
        let (conn, name, version) = (self.conn.clone(), self.name.clone(), self.version.clone());
        let (offset, size) = (self.offset, self.size);
        // A 0-byte blob has no range to ask for; the whole blob is asked without one.
        let ranged = !(offset == 0 && self.len == size);
        let range = format!("bytes={offset}-{}", (offset + self.len).saturating_sub(1));
        Box::pin(async move {
            let mut headers = Vec::new();
            if ranged {
                headers.push(("x-ms-range", range.clone()));
            }
            if let Some(v) = &version {
                headers.push(("If-Match", v.clone()));
            }
            let resp = match conn.send(Method::GET, Some(&name), &[], &headers).await {
                Ok(resp) => resp,
                Err(f) => return Err(read_fault(&conn, &name, f).await),
            };
            let header = |n| resp.headers().get(n).and_then(|v| v.to_str().ok());
            let sent = header(ETAG).map(quoted);
            if let (Some(sent), Some(listed)) = (&sent, &version)
                && sent != listed
            {
                return Err(ReadFault::io(
                    ReadFaultKind::Changed,
                    format!(
                        "GET blob `{name}`: rewritten after it was listed (ETag {listed} then, \
                         {sent} now) (SIZE_NOT_MATCH)"
                    ),
                ));
            }
            rest::check_answer(
                &resp,
                ranged.then_some(range.as_str()),
                size,
                &format!("GET blob `{name}`"),
            )?;
            Ok(rest::byte_stream(resp))
        })
    }
}
