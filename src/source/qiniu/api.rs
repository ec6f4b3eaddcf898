//! The requests of the qiniu source, each retried while its failure is transient: a listing
//! page (rsf `/list`), a stat (rs `/stat/<EncodedEntryURI>`), and HEAD or ranged GET of a
//! private download URL. Messages name the object by its URL without the token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, RANGE};
use reqwest::{Client, Method, Response};
use serde::Deserialize;

use super::sign;
use crate::error::Result;
use crate::source::rest;

/// Shows where, never the keys.
impl std::fmt::Debug for QiniuSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QiniuSettings")
            .field("download", &self.download)
            .field("rs", &self.rs)
            .field("rsf", &self.rsf)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// How long a private download URL stays valid: longer than any retried read of one range.
const URL_LIFETIME: Duration = Duration::from_secs(3600);

/// Where and as whom the source talks to Qiniu.
#[derive(Clone)]
pub struct QiniuSettings {
    /// `srcDomain`: the bucket's download domain, a URL.
    pub download: String,
    /// The resource-management (stat) and listing API hosts, URLs.
    pub rs: String,
    pub rsf: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

pub(super) struct Conn {
    client: Client,
    pub(super) at: QiniuSettings,
    pub(super) retry: crate::backoff::Retry,
}

/// A request failure, and whether it is worth another try.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) message: String,
    pub(super) transient: bool,
    pub(super) status: Option<u16>,
}

/// One page of `/list` (对象存储 > API 文档 > 资源列举).
#[derive(Debug, Deserialize)]
pub(super) struct ListPage {
    #[serde(default)]
    pub(super) marker: String,
    #[serde(default, rename = "commonPrefixes")]
    pub(super) common_prefixes: Vec<String>,
    #[serde(default)]
    pub(super) items: Vec<Item>,
}

/// A listed object, or the answer of `/stat` (which has no key).
#[derive(Debug, Deserialize)]
pub(super) struct Item {
    #[serde(default)]
    pub(super) key: String,
    pub(super) fsize: u64,
    pub(super) hash: String,
    /// Units of 100 ns since the epoch.
    #[serde(rename = "putTime")]
    pub(super) put_time: u64,
    #[serde(default)]
    pub(super) md5: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl Conn {
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub(super) fn new(at: QiniuSettings) -> Result<Conn> {
        let client = rest::client(Client::builder())?;
        Ok(Conn {
            client,
            at,
            retry: crate::backoff::Retry::new(crate::backoff::REQUEST_TRIES),
        })
    }

    /// One page of the keys under `prefix` after `marker`, at most 1,000.
    pub(super) async fn list(
        &self,
        prefix: &str,
        delimited: bool,
        marker: &str,
        limit: u32,
    ) -> std::result::Result<ListPage, Failed> {
        let mut path = format!(
            "/list?bucket={}&marker={}&limit={limit}&prefix={}",
            sign::query_value(&self.at.bucket),
            sign::query_value(marker),
            sign::query_value(prefix)
        );
        if delimited {
            path.push_str("&delimiter=%2F");
        }
        let what = format!("LIST `{prefix}` of bucket `{}`", self.at.bucket);
        let resp = self.managed(&self.at.rsf, &path, &what).await?;
        json(resp, &what).await
    }

    /// The stat of `key`; `None` when it does not exist (612).
    pub(super) async fn stat(&self, key: &str) -> std::result::Result<Option<Item>, Failed> {
        let path = format!("/stat/{}", sign::entry_uri(&self.at.bucket, key));
        let what = format!("STAT `{key}` of bucket `{}`", self.at.bucket);
        match self.managed(&self.at.rs, &path, &what).await {
            Ok(resp) => json(resp, &what).await.map(Some),
            Err(f) if f.status == Some(612) => Ok(None),
            Err(f) => Err(f),
        }
    }

    /// A signed GET of `host` + `path_and_query`.
    async fn managed(
        &self,
        host: &str,
        path_and_query: &str,
        what: &str,
    ) -> std::result::Result<Response, Failed> {
        let url = format!("{}{path_and_query}", host.trim_end_matches('/'));
        let auth =
            sign::qbox_authorization(&self.at.access_key, &self.at.secret_key, path_and_query);
        let call = || async {
            let req = self
                .client
                .get(&url)
                .header(AUTHORIZATION, &auth)
                .header("Content-Type", "application/x-www-form-urlencoded");
            answer(req.send().await, what).await
        };
        self.retried(call).await
    }

    /// `key` from the download domain (a private URL, signed anew for each try): HEAD, or
    /// GET of `range`; 404 is `None`.
    pub(super) async fn download(
        &self,
        method: Method,
        key: &str,
        range: Option<&str>,
    ) -> std::result::Result<Option<Response>, Failed> {
        let what = format!("{method} {}", sign::public_url(&self.at.download, key));
        let call = || async {
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_add(URL_LIFETIME)
                .as_secs();
            let url = sign::private_url(
                &self.at.download,
                key,
                deadline,
                &self.at.access_key,
                &self.at.secret_key,
            );
            let mut req = self.client.request(method.clone(), &url);
            if let Some(r) = range {
                req = req.header(RANGE, r);
            }
            match answer(req.send().await, &what).await {
                Ok(resp) => Ok(Some(resp)),
                Err(f) if f.status == Some(404) => Ok(None),
                Err(f) => Err(f),
            }
        };
        self.retried(call).await
    }

    async fn retried<T, F, Fut>(&self, call: F) -> std::result::Result<T, Failed>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, Failed>>,
    {
        let verdict = |f: &Failed| rest::verdict(&f.message, f.transient, f.status);
        self.retry.run("qiniu", &call, verdict).await
    }
}

/// A successful answer, or the failure it stands for with Qiniu's `{"error":"..."}` text.
async fn answer(
    sent: reqwest::Result<Response>,
    what: &str,
) -> std::result::Result<Response, Failed> {
    // Without the URL: a private URL carries the download token.
    let resp = sent.map_err(|e| Failed {
        message: format!("{what}: {}", rest::no_answer(&e)),
        transient: true,
        status: None,
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let code = status.as_u16();
    let body = resp.text().await.unwrap_or_default();
    let said = serde_json::from_str::<ErrorBody>(&body)
        .ok()
        .map(|b| b.error);
    let keys = "srcAccessKey/srcSecretKey";
    let why = crate::words::refusal(code, None, said.as_deref(), keys);
    Err(Failed {
        message: format!("{what}: {why}"),
        // 573 is Qiniu's throttle answer, 599 its server error; both are 5xx like the rest.
        transient: rest::transient(status),
        status: Some(code),
    })
}

/// The JSON body of a successful answer.
async fn json<T: serde::de::DeserializeOwned>(
    resp: Response,
    what: &str,
) -> std::result::Result<T, Failed> {
    let unreadable = |why: String| Failed {
        message: format!("{what}: unreadable answer: {why}"),
        transient: true,
        status: None,
    };
    let body = resp
        .bytes()
        .await
        .map_err(|e| unreadable(rest::no_answer(&e)))?;
    serde_json::from_slice(&body).map_err(|e| unreadable(e.to_string()))
}
