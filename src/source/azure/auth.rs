//! Shared Key authorization for Azure Blob Storage, as "Authorize with Shared Key" in the Azure
//! Storage REST API reference specifies it (Blob service, version 2015-02-21 and later).
//!
//! Public so the tests can write blobs into the emulator with the same account key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The REST API version every request names (`x-ms-version`).
pub const API_VERSION: &str = "2021-12-02";

/// An account name and its decoded key; Debug shows the name only.
#[derive(Clone)]
pub struct SharedKey {
    account: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedKey({}, ***)", self.account)
    }
}

impl SharedKey {
    /// `None` when `key` is not base64 (an account key always is).
    pub fn new(account: &str, key: &str) -> Option<SharedKey> {
        let key = STANDARD.decode(key.trim()).ok()?;
        Some(SharedKey {
            account: account.to_string(),
            key,
        })
    }

    /// A key that signs nothing valid, for a source that refuses to start anyway.
    pub(crate) fn empty(account: &str) -> SharedKey {
        SharedKey {
            account: account.to_string(),
            key: Vec::new(),
        }
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// The `Authorization` value for a request. `path` is the URL's path as sent (still
    /// percent-encoded), `query` its parameters decoded, and `headers` every header the request
    /// carries besides Authorization (names in any case).
    pub fn authorization(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> String {
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map_or("", |(_, v)| *v)
        };
        // Content-Length is signed empty when zero (version 2015-02-21 and later).
        let length = Some(find("content-length"))
            .filter(|l| *l != "0")
            .unwrap_or("");
        let mut text = format!("{method}\n");
        for slot in ["content-encoding", "content-language"] {
            text.push_str(find(slot));
            text.push('\n');
        }
        text.push_str(length);
        text.push('\n');
        for slot in [
            "content-md5",
            "content-type",
            "date",
            "if-modified-since",
            "if-match",
            "if-none-match",
            "if-unmodified-since",
            "range",
        ] {
            text.push_str(find(slot));
            text.push('\n');
        }
        let mut ms: Vec<(String, &str)> = headers
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-ms-"))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim()))
            .collect();
        ms.sort();
        for (name, value) in ms {
            text.push_str(&format!("{name}:{value}\n"));
        }
        text.push_str(&format!("/{}{path}", self.account));
        let mut params: Vec<(String, &str)> = query
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), *v))
            .collect();
        params.sort();
        for (name, value) in params {
            text.push_str(&format!("\n{name}:{value}"));
        }
        let signature =
            STANDARD.encode(crate::source::rest::hmac_sha256(&self.key, text.as_bytes()));
        format!("SharedKey {}:{signature}", self.account)
    }
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    use super::*;

    /// The string to sign of a List Blobs request, checked against an HMAC computed by hand
    /// over the layout the reference documents.
    #[test]
    fn signs_the_documented_layout() {
        let key = SharedKey::new("acct", &STANDARD.encode(b"secret")).unwrap();
        let got = key.authorization(
            "GET",
            "/c",
            &[
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", "a b/"),
            ],
            &[
                ("x-ms-version", API_VERSION),
                ("x-ms-date", "D"),
                ("Content-Length", "0"),
            ],
        );
        let text = format!(
            "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:D\nx-ms-version:{API_VERSION}\n/acct/c\n\
             comp:list\nprefix:a b/\nrestype:container"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(text.as_bytes());
        let want = STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(got, format!("SharedKey acct:{want}"));
        assert!(SharedKey::new("acct", "not base64!").is_none());
    }
}
