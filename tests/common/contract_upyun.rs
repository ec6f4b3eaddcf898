//! The youpai backend of the source contract suite: the UPYUN test server
//! (tests/common/upyun_server.rs) as srcType=youpai, from the API or its CDN.

use async_trait::async_trait;
use ossimport::source::Source;
use ossimport::source::upyun::UpyunSource;

use crate::common::upyun_server::Upyun;
use crate::contract::{Fixture, PREFIX};

/// `srcType=youpai` against the UPYUN test server (tests/common/upyun_server.rs).
pub struct UpyunFx {
    pub server: std::sync::Arc<Upyun>,
    /// Download from the server's CDN listener (`isDownloadFromCdn=true`).
    pub via_cdn: bool,
}

impl UpyunFx {
    fn make(&self, endpoint: &str, service: &str, password: &str) -> Box<dyn Source> {
        self.make_at(endpoint, service, PREFIX, password)
    }

    fn make_at(&self, endpoint: &str, service: &str, prefix: &str, pw: &str) -> Box<dyn Source> {
        let s = &self.server;
        let cdn = self.via_cdn.then_some(s.cdn.as_str());
        let src = UpyunSource::new(endpoint, service, prefix, &s.operator, pw, cdn);
        Box::new(src.expect("http client"))
    }
}

#[async_trait]
impl Fixture for UpyunFx {
    fn source(&self, via: Option<&str>) -> Box<dyn Source> {
        let s = &self.server;
        self.make(via.unwrap_or(&s.endpoint), &s.service, &s.password)
    }
    fn upstream(&self) -> Option<String> {
        // Through the CDN the bodies would pass beside the proxy.
        (!self.via_cdn).then(|| self.server.endpoint.clone())
    }
    async fn put(&self, key: &str, bytes: &[u8]) {
        self.server.put(key, bytes);
    }
    async fn delete(&self, key: &str) {
        self.server.delete(key);
    }
    async fn rewrite(&self, key: &str, bytes: &[u8]) {
        self.server.rewrite(key, bytes);
    }
    fn refused(&self) -> Vec<(String, Box<dyn Source>, Vec<String>)> {
        let s = &self.server;
        let missing = "no-such-service-42";
        let mut out: Vec<(String, Box<dyn Source>, Vec<String>)> = vec![
            (
                "a wrong srcSecretKey".into(),
                self.make(&s.endpoint, &s.service, "wrong-secret-key-000"),
                vec![
                    "signature error".into(),
                    "srcAccessKey".into(),
                    "srcSecretKey".into(),
                ],
            ),
            (
                "a srcBucket that does not exist".into(),
                self.make(&s.endpoint, missing, &s.password),
                vec![missing.into(), "srcBucket".into()],
            ),
            (
                "a srcPrefix folder that does not exist".into(),
                self.make_at(&s.endpoint, &s.service, "no-such-folder/", &s.password),
                vec!["no-such-folder/".into(), "srcPrefix".into()],
            ),
        ];
        // Once: a connection refused is retried with backoff for about 20 s first.
        if !self.via_cdn {
            let dead = "http://127.0.0.1:9";
            out.push((
                "an unreachable srcDomain".into(),
                self.make(dead, &s.service, &s.password),
                vec![dead.into(), "srcDomain".into()],
            ));
        }
        out
    }
}
