//! The UPYUN REST API requests of the youpai source, each signed as UPYUN's documentation
//! specifies (REST API "认证授权 / 签名认证"): `Authorization: UPYUN <operator>:<signature>`,
//! the signature being Base64(HMAC-SHA1(MD5-hex(password), `METHOD&URI&DATE`)) with an RFC 1123
//! `Date` header, and retried while the failure is transient (5xx, 429, a dropped connection).

use std::time::SystemTime;

use base64::Engine;
use percent_encoding::utf8_percent_encode;
use reqwest::header::{ACCEPT, AUTHORIZATION, DATE, RANGE};
use reqwest::{Client, Method, Response, StatusCode};
use serde::Deserialize;

use crate::error::Result;
use crate::source::endpoint::hide_userinfo;
// Path characters outside `PATH` are percent-encoded (the URI UPYUN signs is the encoded
// one, so client and server agree on it byte for byte).
use crate::source::rest::{self, PATH};

/// The iterator UPYUN answers after the last page of a folder ("获取目录文件列表").
pub(super) const END_ITER: &str = "g2gCZAAEbmV4dGQAA2VvZg";

/// Entries per listing page (`x-list-limit`; UPYUN allows up to 10,000).
pub(super) const LIST_LIMIT: usize = 1_000;

pub(super) struct Api {
    client: Client,
    /// `srcDomain` without a trailing slash.
    base: String,
    /// `srcBucket`: the UPYUN service ("服务名").
    pub(super) service: String,
    operator: String,
    /// MD5 (hex) of the operator's password, the HMAC key; the password itself is not kept.
    key: String,
    pub(super) retry: crate::backoff::Retry,
}

/// A request failure, and whether it is worth another try.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) message: String,
    pub(super) transient: bool,
    pub(super) status: Option<u16>,
    /// UPYUN's error code from the JSON body (`40100005` signature error, ...).
    pub(super) code: Option<u64>,
}

/// One entry of a folder listing (the JSON form, asked for with `Accept: application/json`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Entry {
    pub(super) name: String,
    /// `folder` for a folder, the content type for a file (`N`/`F` in the text form).
    #[serde(rename = "type", default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) length: u64,
    #[serde(default)]
    pub(super) last_modified: i64,
}

impl Entry {
    pub(super) fn is_folder(&self) -> bool {
        self.kind == "folder" || self.kind == "F"
    }
}

#[derive(Deserialize)]
struct ListBody {
    #[serde(default)]
    files: Vec<Entry>,
    iter: Option<String>,
}

/// UPYUN's error body ("API 错误码表"): `{"msg": ..., "code": ..., "id": ...}`.
#[derive(Deserialize)]
struct ErrorBody {
    msg: Option<String>,
    code: Option<u64>,
}

/// One page of a folder: its entries, and the iterator of the next page (none after the last).
pub(super) struct Page {
    pub(super) entries: Vec<Entry>,
    pub(super) next: Option<String>,
}

/// What HEAD says of a path.
pub(super) struct Head {
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) folder: bool,
}

impl Api {
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub(super) fn new(domain: &str, service: &str, operator: &str, password: &str) -> Result<Api> {
        use md5::{Digest, Md5};
        let client = rest::client(Client::builder())?;
        let key = Md5::digest(password.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Api {
            client,
            base: domain.trim().trim_end_matches('/').to_string(),
            service: service.trim_matches('/').to_string(),
            operator: operator.to_string(),
            key,
            retry: crate::backoff::Retry::new(crate::backoff::REQUEST_TRIES),
        })
    }

    /// `srcDomain` as it may appear in messages.
    pub(super) fn domain(&self) -> String {
        hide_userinfo(&self.base)
    }

    /// The encoded request path of `key` (a path in the service, folders ending in `/`).
    pub(super) fn uri(&self, key: &str) -> String {
        format!("/{}/{}", self.service, encode(key))
    }

    fn authorization(&self, method: &Method, uri: &str, date: &str) -> String {
        let mac = rest::hmac_sha1(
            self.key.as_bytes(),
            format!("{method}&{uri}&{date}").as_bytes(),
        );
        let signature = base64::engine::general_purpose::STANDARD.encode(mac);
        format!("UPYUN {}:{signature}", self.operator)
    }

    /// One request to `url`, signed for `uri` when given (the API; the CDN takes none),
    /// retried while the failure is transient; 404 is `None`.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &str,
        signed: Option<&str>,
        headers: &[(&str, String)],
    ) -> std::result::Result<Option<Response>, Failed> {
        let call = || async {
            let mut req = self.client.request(method.clone(), url);
            if let Some(uri) = signed {
                let date = httpdate::fmt_http_date(SystemTime::now());
                req = req
                    .header(AUTHORIZATION, self.authorization(&method, uri, &date))
                    .header(DATE, date);
            }
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            let resp = req.send().await.map_err(|e| Failed {
                message: format!("{method} {}: {}", hide_userinfo(url), rest::no_answer(&e)),
                transient: true,
                status: None,
                code: None,
            })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(Some(resp));
            }
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let text = resp.text().await.unwrap_or_default();
            let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
            let code = body.as_ref().and_then(|b| b.code);
            let said = body.as_ref().and_then(|b| b.msg.clone());
            let code_text = code.map(|c| c.to_string());
            let why = crate::words::refusal(
                status.as_u16(),
                code_text.as_deref(),
                said.as_deref(),
                "srcAccessKey (operator) / srcSecretKey (password)",
            );
            Err(Failed {
                message: format!("{method} {}: {why}", hide_userinfo(url)),
                transient: rest::transient(status),
                status: Some(status.as_u16()),
                code,
            })
        };
        let verdict = |f: &Failed| rest::verdict(&f.message, f.transient, f.status);
        self.retry.run(method.as_str(), &call, verdict).await
    }

    /// A signed API request for `key`.
    async fn api(
        &self,
        method: Method,
        key: &str,
        headers: &[(&str, String)],
    ) -> std::result::Result<Option<Response>, Failed> {
        let uri = self.uri(key);
        let url = format!("{}{uri}", self.base);
        self.send(method, &url, Some(&uri), headers).await
    }

    /// One page of `folder` (a service path ending in `/`, or empty for the root), in name
    /// order, from `iter`; `None` when the folder does not exist.
    pub(super) async fn page(
        &self,
        folder: &str,
        iter: Option<&str>,
        limit: usize,
    ) -> std::result::Result<Option<Page>, Failed> {
        let mut headers = vec![
            ("x-list-limit", limit.to_string()),
            ("x-list-order", "asc".to_string()),
            (ACCEPT.as_str(), "application/json".to_string()),
        ];
        if let Some(iter) = iter {
            headers.push(("x-list-iter", iter.to_string()));
        }
        let Some(resp) = self.api(Method::GET, folder, &headers).await? else {
            return Ok(None);
        };
        let header_iter = resp
            .headers()
            .get("x-upyun-list-iter")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let uri = self.uri(folder);
        let bad = |message: String| Failed {
            message,
            transient: false,
            status: None,
            code: None,
        };
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| bad(format!("GET {uri}: {}", rest::no_answer(&e))))?;
        // The JSON form was asked for; the older text form is taken too.
        let body: ListBody = match serde_json::from_slice(&bytes) {
            Ok(body) => body,
            Err(e) => parse_text(&bytes).ok_or_else(|| {
                bad(format!(
                    "GET {uri}: the folder listing is not UPYUN's ({e}); check that srcDomain \
                     is UPYUN's REST API (http://v0.api.upyun.com)"
                ))
            })?,
        };
        let next = body
            .iter
            .or(header_iter)
            .filter(|i| !i.is_empty() && i != END_ITER);
        // A page that says "more" but gives nothing would be asked for again forever.
        if next.is_some() && body.files.is_empty() {
            return Err(bad(format!(
                "GET {uri}: UPYUN gave an empty page with an iterator to go on from"
            )));
        }
        Ok(Some(Page {
            entries: body.files,
            next,
        }))
    }

    /// HEAD of `key`: size, date and kind; `None` when it does not exist.
    pub(super) async fn head(&self, key: &str) -> std::result::Result<Option<Head>, Failed> {
        let Some(resp) = self.api(Method::HEAD, key, &[]).await? else {
            return Ok(None);
        };
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
        };
        let size = header("x-upyun-file-size").and_then(|s| s.trim().parse().ok());
        let Some(size) = size else {
            return Err(Failed {
                message: format!(
                    "HEAD {}: no x-upyun-file-size in UPYUN's answer",
                    self.uri(key)
                ),
                transient: false,
                status: Some(resp.status().as_u16()),
                code: None,
            });
        };
        Ok(Some(Head {
            size,
            mtime: header("x-upyun-file-date")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            folder: header("x-upyun-file-type") == Some("folder"),
        }))
    }

    /// GET of `key` through the API, or from `cdn` (`cdnDomain`) when given.
    pub(super) async fn get(
        &self,
        key: &str,
        cdn: Option<&str>,
        range: Option<String>,
    ) -> std::result::Result<Option<Response>, Failed> {
        let headers: Vec<(&str, String)> = range.map(|r| (RANGE.as_str(), r)).into_iter().collect();
        match cdn {
            Some(cdn) => {
                let url = format!("{}/{}", cdn.trim_end_matches('/'), encode(key));
                self.send(Method::GET, &url, None, &headers).await
            }
            None => self.api(Method::GET, key, &headers).await,
        }
    }
}

/// The text form of a listing: `name\tN|F\tsize\ttime` lines; `None` if a line is not.
fn parse_text(bytes: &[u8]) -> Option<ListBody> {
    let text = std::str::from_utf8(bytes).ok()?;
    let files = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut cols = line.split('\t');
            let (name, kind, length, time) =
                (cols.next()?, cols.next()?, cols.next()?, cols.next()?);
            Some(Entry {
                name: name.to_string(),
                kind: kind.to_string(),
                length: length.parse().ok()?,
                last_modified: time.parse().ok()?,
            })
        })
        .collect::<Option<Vec<Entry>>>()?;
    Some(ListBody { files, iter: None })
}

fn encode(key: &str) -> String {
    utf8_percent_encode(key, PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of UPYUN's authorization section, recomputed: operator `operator123`,
    /// password `password123` (MD5 482c811da5d5b4bc6d497ffa98491e38).
    #[test]
    fn the_text_form_of_a_listing_is_read_and_anything_else_is_not() {
        let body =
            parse_text(b"foo.jpg\tN\t4237\t1415096225\nbar\tF\t423404\t1415096260\n").unwrap();
        let got: Vec<(&str, bool, u64, i64)> = body
            .files
            .iter()
            .map(|e| (e.name.as_str(), e.is_folder(), e.length, e.last_modified))
            .collect();
        assert_eq!(
            got,
            [
                ("foo.jpg", false, 4237, 1415096225),
                ("bar", true, 423404, 1415096260)
            ]
        );
        assert!(parse_text(b"").unwrap().files.is_empty());
        assert!(parse_text(b"<html>error</html>").is_none());
    }

    #[test]
    fn the_key_is_the_md5_of_the_password_and_the_uri_is_encoded() {
        let api = Api::new(
            "http://v0.api.upyun.com/",
            "svc",
            "operator123",
            "password123",
        )
        .unwrap();
        assert_eq!(api.key, "482c811da5d5b4bc6d497ffa98491e38");
        assert_eq!(api.uri("a b/中.txt"), "/svc/a%20b/%E4%B8%AD.txt");
        let auth = api.authorization(&Method::GET, "/svc/", "Wed, 09 Nov 2016 14:26:58 GMT");
        assert!(auth.starts_with("UPYUN operator123:"), "{auth}");
        assert!(!auth.contains("password123") && !auth.contains(&api.key));
    }
}
