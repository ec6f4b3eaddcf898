//! The azure backend of the source contract suite: Azurite as srcType=azure.

use async_trait::async_trait;
use ossimport::source::Source;
use ossimport::source::azure::AzureSource;

use crate::common::azure::BlobClient;
use crate::common::servers::{AZURITE_ACCOUNT, AZURITE_KEY, Azurite};
use crate::contract::{Fixture, PREFIX};

/// `srcType=azure` on Azurite, path style, listing 1,000 blobs a page so that paging shows.
pub struct AzureFx {
    pub endpoint: String,
    pub container: String,
    pub client: BlobClient,
}

impl AzureFx {
    /// Blobs per List Blobs page in the suite (Azure's own maximum, 5,000, is the default).
    pub const PAGE: u32 = 1_000;

    pub async fn new(azurite: &Azurite, container: &str) -> AzureFx {
        let client = BlobClient::new(&azurite.endpoint);
        client.create_container(container).await;
        AzureFx {
            endpoint: azurite.endpoint.clone(),
            container: container.to_string(),
            client,
        }
    }

    fn make(&self, endpoint: &str, container: &str, key: &str) -> Box<dyn Source> {
        let src = AzureSource::new(endpoint, AZURITE_ACCOUNT, key, container, PREFIX);
        Box::new(src.expect("azure source").with_page_size(Self::PAGE))
    }
}

#[async_trait]
impl Fixture for AzureFx {
    fn source(&self, via: Option<&str>) -> Box<dyn Source> {
        self.make(via.unwrap_or(&self.endpoint), &self.container, AZURITE_KEY)
    }
    fn upstream(&self) -> Option<String> {
        Some(self.endpoint.clone())
    }
    async fn put(&self, key: &str, bytes: &[u8]) {
        self.client.put(&self.container, key, bytes).await;
    }
    async fn delete(&self, key: &str) {
        self.client.delete(&self.container, key).await;
    }
    fn refused(&self) -> Vec<(String, Box<dyn Source>, Vec<String>)> {
        let missing = "no-such-container";
        // Base64 of the right length, but not the account's key.
        let wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleS13cm9uZw==";
        vec![
            (
                "a srcBucket (container) that does not exist".into(),
                self.make(&self.endpoint, missing, AZURITE_KEY),
                vec![missing.into(), "srcBucket".into()],
            ),
            (
                "a wrong srcSecretKey".into(),
                self.make(&self.endpoint, &self.container, wrong),
                vec![self.container.clone(), "srcSecretKey".into()],
            ),
            (
                "a srcSecretKey that is not base64".into(),
                self.make(&self.endpoint, &self.container, "not base64!"),
                vec!["srcSecretKey".into(), "base64".into()],
            ),
        ]
    }
}
