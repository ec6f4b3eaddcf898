//! The qiniu backend of the source contract suite: the Qiniu test server
//! (tests/common/qiniu_server.rs) as srcType=qiniu, with either getObjectMetaMode.

use std::sync::Arc;

use async_trait::async_trait;
use ossimport::config::ObjectMetaMode;
use ossimport::source::Source;
use ossimport::source::qiniu::{QiniuSettings, QiniuSource};

use crate::common::qiniu_server::QiniuServer;
use crate::contract::{Fixture, PREFIX};

pub const QN_AK: &str = "qiniu-access-key";
pub const QN_SK: &str = "qiniu-secret-key";
pub const QN_BUCKET: &str = "contract-bucket";

#[derive(Clone)]
pub struct QiniuFx {
    pub server: Arc<QiniuServer>,
    pub mode: ObjectMetaMode,
}

impl QiniuFx {
    pub fn start() -> QiniuFx {
        QiniuFx {
            server: Arc::new(QiniuServer::start(QN_AK, QN_SK, QN_BUCKET)),
            mode: ObjectMetaMode::Stat,
        }
    }

    fn make(&self, at: &str, download: &str, bucket: &str, sk: &str) -> Box<dyn Source> {
        let settings = QiniuSettings {
            download: download.to_string(),
            rs: at.to_string(),
            rsf: at.to_string(),
            bucket: bucket.to_string(),
            access_key: QN_AK.to_string(),
            secret_key: sk.to_string(),
        };
        Box::new(QiniuSource::new(settings, PREFIX, self.mode).expect("client builds"))
    }
}

#[async_trait]
impl Fixture for QiniuFx {
    fn source(&self, via: Option<&str>) -> Box<dyn Source> {
        let at = via.unwrap_or(&self.server.endpoint);
        self.make(at, at, QN_BUCKET, QN_SK)
    }
    fn upstream(&self) -> Option<String> {
        Some(self.server.endpoint.clone())
    }
    async fn put(&self, key: &str, bytes: &[u8]) {
        self.server.put(key, bytes);
    }
    async fn delete(&self, key: &str) {
        self.server.delete(key);
    }
    fn refused(&self) -> Vec<(String, Box<dyn Source>, Vec<String>)> {
        let at = &self.server.endpoint;
        // A port nothing listens on: bound, then let go.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        vec![
            (
                "a srcBucket that does not exist".into(),
                self.make(at, at, "no-such-bucket-42", QN_SK),
                vec!["no-such-bucket-42".into(), "631".into(), "srcBucket".into()],
            ),
            (
                "a wrong srcSecretKey".into(),
                self.make(at, at, QN_BUCKET, "wrong-secret-key-000"),
                vec![
                    "401".into(),
                    "bad token".into(),
                    "srcAccessKey/srcSecretKey".into(),
                ],
            ),
            (
                "a srcDomain nothing answers at".into(),
                self.make(at, &closed, QN_BUCKET, QN_SK),
                vec!["srcDomain".into()],
            ),
        ]
    }
}
