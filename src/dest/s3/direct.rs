//! PutObject without the SDK: the request of every small file, signed with SigV4 by hand
//! (header form, `UNSIGNED-PAYLOAD` as the SDK sends for a streamed body) over the reqwest
//! client the REST sources use. Per request the SDK's orchestrator, endpoint rules and
//! config layers cost more CPU than the upload of a 16 KiB file itself; this path does the
//! same request with a fraction of it. Every other request still goes through the SDK.

use percent_encoding::utf8_percent_encode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST, HeaderMap, HeaderValue};
use reqwest::{Client, StatusCode};
use sha2::{Digest, Sha256};

use crate::dest::{DestError, DestResult, PutOptions};
use crate::outage::NoAnswer;
use crate::payload::hex;
use crate::payload::{Body, ReadFault};
use crate::s3client::{ClientSettings, scrub, transient_code};
use crate::source::rest::{UNRESERVED, error_chain, hmac_sha256 as hmac};
use crate::words::{no_answer, refusal};

/// Where and as whom PUTs go; secrets stay inside.
pub struct DirectPut {
    client: Client,
    /// `scheme://host[:port]` of the requests: with the bucket in front for virtual-hosted
    /// style.
    origin: String,
    /// The Host header's value.
    host: String,
    /// `/bucket` in path style, empty in virtual-hosted style.
    path_prefix: String,
    region: String,
    /// `host:port`, for the words of a failure.
    authority: String,
    access_key: String,
    secret_key: String,
}

impl DirectPut {
    /// `None` when the endpoint is not a plain `http(s)://authority`, or the HTTP client
    /// cannot be built: the SDK then sends the PUTs too.
    pub fn new(s: &ClientSettings<'_>, bucket: &str) -> Option<DirectPut> {
        // The Host signed must be the one reqwest sends: the URL's, with the host name in
        // lower case and without a default port.
        let url = reqwest::Url::parse(s.endpoint.trim_end_matches('/')).ok()?;
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https")
            || url.path() != "/"
            || url.query().is_some()
            || !url.username().is_empty()
        {
            return None;
        }
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str()?),
            None => url.host_str()?.to_string(),
        };
        let (host, path_prefix) = match s.path_style {
            true => (authority.to_string(), format!("/{bucket}")),
            false => (format!("{bucket}.{authority}"), String::new()),
        };
        // The SDK, which sends every other request of the destination, uses no proxy from
        // the environment: neither does this.
        let client = crate::source::rest::client(Client::builder().no_proxy()).ok()?;
        Some(DirectPut {
            client,
            origin: format!("{scheme}://{host}"),
            host,
            path_prefix,
            region: s.region.to_string(),
            authority: crate::words::authority(s.endpoint),
            access_key: s.access_key.to_string(),
            secret_key: s.secret_key.to_string(),
        })
    }

    /// Whether this path can send `key`: a URL would resolve its `.` and `..` segments.
    pub fn takes(key: &str) -> bool {
        !key.split('/').any(|seg| seg == "." || seg == "..")
    }

    /// Uploads a whole object in one request; returns its ETag.
    pub async fn put(&self, key: &str, body: Body, opts: &PutOptions) -> DestResult<String> {
        let path = format!("{}/{}", self.path_prefix, encode_key(key));
        let len = body.len();
        let mut headers = vec![
            ("content-length".to_string(), len.to_string()),
            ("content-type".to_string(), opts.content_type.clone()),
            ("x-amz-content-sha256".to_string(), UNSIGNED.to_string()),
        ];
        headers.extend(
            opts.metadata
                .iter()
                .map(|(k, v)| (format!("x-amz-meta-{}", k.to_ascii_lowercase()), v.clone())),
        );
        if opts.server_side_encryption {
            headers.push(("x-amz-server-side-encryption".into(), "AES256".into()));
        }
        let now = amz_date(std::time::SystemTime::now());
        let auth = self.authorization("PUT", &path, &mut headers, &now, UNSIGNED);
        let mut map = HeaderMap::with_capacity(headers.len() + 2);
        for (name, value) in &headers {
            let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                return Err(DestError::fatal(format!(
                    "PUT `{key}`: header {name} cannot be sent as it is"
                )));
            };
            map.insert(name, value);
        }
        map.insert(
            reqwest::header::AUTHORIZATION,
            HeaderValue::from_str(&auth).map_err(|e| DestError::fatal(e.to_string()))?,
        );
        map.remove(HOST);
        debug_assert!(map.contains_key(CONTENT_LENGTH) && map.contains_key(CONTENT_TYPE));
        let sent = self
            .client
            .put(format!("{}{path}", self.origin))
            .headers(map)
            .body(reqwest::Body::wrap_stream(body.stream()))
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) => return Err(self.failed(key, &e)),
        };
        let status = answer.status();
        if status.is_success() {
            let etag = answer.headers().get(ETAG).and_then(|v| v.to_str().ok());
            return Ok(etag.unwrap_or_default().to_string());
        }
        let text = answer.text().await.unwrap_or_default();
        Err(self.refused(key, status, &text))
    }

    /// The `Authorization` header of a request whose body hashes to `payload` (or is
    /// `UNSIGNED-PAYLOAD`); adds `host` and `x-amz-date` to `headers`.
    fn authorization(
        &self,
        method: &str,
        path: &str,
        headers: &mut Vec<(String, String)>,
        amz_date: &str,
        payload: &str,
    ) -> String {
        headers.push(("host".into(), self.host.clone()));
        headers.push(("x-amz-date".into(), amz_date.to_string()));
        headers.sort();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let canonical_headers: String = headers
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        let canonical = format!("{method}\n{path}\n\n{canonical_headers}\n{signed}\n{payload}");
        let day = &amz_date[..8];
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            day.as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            self.access_key
        )
    }

    /// A request that got no answer: worth another try, unless reading the body from the
    /// source failed for good.
    fn failed(&self, key: &str, e: &reqwest::Error) -> DestError {
        let read_fault = ReadFault::find(e).map(|f| f.kind);
        tracing::debug!("{}", self.scrub(format!("PUT {key}: {}", error_chain(e))));
        let (message, no_answer) = match read_fault {
            Some(_) => (format!("PUT {key}: {}", error_chain(e)), None),
            None => {
                let (how, why) = no_answer(e, &self.authority);
                (format!("PUT {key}: {why}"), Some((how, self.scrub(why))))
            }
        };
        DestError {
            message: self.scrub(message),
            transient: read_fault.is_none(),
            read_fault,
            no_answer,
        }
    }

    /// A request the server refused, worded as the SDK path words it.
    fn refused(&self, key: &str, status: StatusCode, text: &str) -> DestError {
        let code = xml_field(text, "Code");
        let keys = "destAccessKey/destSecretKey";
        let why = self.scrub(refusal(
            status.as_u16(),
            code,
            xml_field(text, "Message"),
            keys,
        ));
        let transient = transient_code(status.as_u16(), code.unwrap_or_default());
        DestError {
            message: format!("PUT {key}: {why}"),
            transient,
            read_fault: None,
            no_answer: transient.then_some((NoAnswer::Failing, why)),
        }
    }

    fn scrub(&self, message: String) -> String {
        scrub(
            message,
            [self.access_key.as_str(), self.secret_key.as_str()],
        )
    }
}

const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

/// A key as S3 canonicalizes it in a path: each segment percent-encoded once, `/` kept.
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|seg| utf8_percent_encode(seg, UNRESERVED).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
fn amz_date(t: std::time::SystemTime) -> String {
    let iso = humantime::format_rfc3339_seconds(t).to_string();
    iso.chars().filter(|c| !matches!(c, '-' | ':')).collect()
}

/// The text of the first `<name>` element of an S3 error answer.
fn xml_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published "GET Object" example of SigV4 for S3 (header form).
    #[test]
    fn signs_the_aws_documentation_example() {
        let put = DirectPut {
            client: Client::new(),
            origin: "https://examplebucket.s3.amazonaws.com".into(),
            host: "examplebucket.s3.amazonaws.com".into(),
            path_prefix: String::new(),
            region: "us-east-1".into(),
            authority: "examplebucket.s3.amazonaws.com:443".into(),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        let mut headers = vec![
            ("range".to_string(), "bytes=0-9".to_string()),
            (
                "x-amz-content-sha256".to_string(),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_string(),
            ),
        ];
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let auth = put.authorization("GET", "/test.txt", &mut headers, "20130524T000000Z", empty);
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn signs_the_host_reqwest_sends() {
        let settings = |endpoint: &'static str| ClientSettings {
            endpoint,
            region: "us-east-1",
            path_style: endpoint.starts_with("http://127."),
            access_key: "ak",
            secret_key: "sk",
        };
        let put = DirectPut::new(&settings("https://OSS-cn-Hangzhou.aliyuncs.com:443"), "bkt");
        let put = put.expect("a plain endpoint");
        assert_eq!(put.host, "bkt.oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(put.origin, "https://bkt.oss-cn-hangzhou.aliyuncs.com");
        let put = DirectPut::new(&settings("http://127.0.0.1:9000"), "bkt").unwrap();
        assert_eq!(
            (put.host.as_str(), put.path_prefix.as_str()),
            ("127.0.0.1:9000", "/bkt")
        );
        assert!(DirectPut::new(&settings("http://h/some/path"), "bkt").is_none());
    }

    #[test]
    fn keys_are_encoded_per_segment_and_dot_segments_stay_with_the_sdk() {
        assert_eq!(encode_key("a b+c/é.txt"), "a%20b%2Bc/%C3%A9.txt");
        assert_eq!(encode_key("d//x~y"), "d//x~y");
        assert!(DirectPut::takes("a/b.c/..d"));
        assert!(!DirectPut::takes("a/../b"));
        assert!(!DirectPut::takes("./b"));
        assert_eq!(amz_date(std::time::UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            xml_field(
                "<Error><Code>SlowDown</Code><Message>m</Message></Error>",
                "Code"
            ),
            Some("SlowDown")
        );
    }
}
