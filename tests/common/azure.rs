//! A small Shared Key client for the tests: creates containers and writes, rewrites and deletes
//! blobs in Azurite, signed with the crate's own signer (Azurite checks every signature).
#![allow(dead_code)]

use ossimport::source::azure::auth::{API_VERSION, SharedKey};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::common::servers::{AZURITE_ACCOUNT, AZURITE_KEY};

const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

#[derive(Clone)]
pub struct BlobClient {
    endpoint: String,
    key: SharedKey,
    http: reqwest::Client,
}

impl BlobClient {
    /// The development account on the emulator at `endpoint` (`http://127.0.0.1:P`).
    pub fn new(endpoint: &str) -> BlobClient {
        BlobClient {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            key: SharedKey::new(AZURITE_ACCOUNT, AZURITE_KEY).unwrap(),
            http: reqwest::Client::new(),
        }
    }

    /// One signed request; panics unless it succeeds.
    async fn send(&self, method: &str, path: &str, query: &[(&str, &str)], body: Vec<u8>) {
        let path = format!("/{AZURITE_ACCOUNT}/{}", utf8_percent_encode(path, PATH));
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let len = body.len().to_string();
        let mut headers = vec![
            ("x-ms-date", date.as_str()),
            ("x-ms-version", API_VERSION),
            ("Content-Length", len.as_str()),
        ];
        if method == "PUT" && query.is_empty() {
            headers.push(("x-ms-blob-type", "BlockBlob"));
        }
        let auth = self.key.authorization(method, &path, query, &headers);
        let q: Vec<String> = query.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let url = format!("{}{path}?{}", self.endpoint, q.join("&"));
        let mut req = self.http.request(method.parse().unwrap(), &url);
        for (n, v) in &headers {
            req = req.header(*n, *v);
        }
        let resp = req.header("authorization", auth).body(body).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {url}: {status}\n{text}");
    }

    pub async fn create_container(&self, name: &str) {
        self.send("PUT", name, &[("restype", "container")], Vec::new())
            .await;
    }

    /// A block blob at `container/name`; Azurite stores its Content-MD5.
    pub async fn put(&self, container: &str, name: &str, bytes: &[u8]) {
        let path = format!("{container}/{name}");
        self.send("PUT", &path, &[], bytes.to_vec()).await;
    }

    pub async fn delete(&self, container: &str, name: &str) {
        let path = format!("{container}/{name}");
        self.send("DELETE", &path, &[], Vec::new()).await;
    }
}
