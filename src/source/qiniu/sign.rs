//! Qiniu's signatures, from its public docs: the management token (安全机制 > 管理凭证, QBox)
//! for the rs/rsf APIs and the download token (安全机制 > 下载凭证) of a private URL. Both are
//! the URL-safe base64 of an HMAC-SHA1 keyed by the secret key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use percent_encoding::utf8_percent_encode;

// Everything but RFC 3986's unreserved characters and `/` is escaped in a key's path, as
// the download-token doc asks for keys with non-ASCII characters; query values escape `/` too.
use crate::source::rest::{PATH, UNRESERVED as QUERY, hmac_sha1};

/// URL-safe base64 of HMAC-SHA1(`secret`, `data`).
pub fn encoded_sign(secret: &str, data: &[u8]) -> String {
    URL_SAFE.encode(hmac_sha1(secret.as_bytes(), data))
}

/// The `Authorization` value of a management request without a body (GET, or POST with an
/// empty body): `QBox <ak>:<sign of "path?query\n">`.
pub fn qbox_authorization(access_key: &str, secret_key: &str, path_and_query: &str) -> String {
    let signing = format!("{path_and_query}\n");
    format!(
        "QBox {access_key}:{}",
        encoded_sign(secret_key, signing.as_bytes())
    )
}

/// A private download URL of `key` under `domain`, valid until `deadline` (unix s):
/// `<domain>/<key>?e=<deadline>&token=<ak>:<sign of the URL with e>`.
pub fn private_url(
    domain: &str,
    key: &str,
    deadline: u64,
    access_key: &str,
    secret_key: &str,
) -> String {
    let base = format!("{}?e={deadline}", public_url(domain, key));
    let token = format!("{access_key}:{}", encoded_sign(secret_key, base.as_bytes()));
    format!("{base}&token={token}")
}

/// `<domain>/<escaped key>`: where messages say an object is, without any token.
pub fn public_url(domain: &str, key: &str) -> String {
    format!(
        "{}/{}",
        domain.trim_end_matches('/'),
        utf8_percent_encode(key, PATH)
    )
}

/// An entry's `EncodedEntryURI`: URL-safe base64 of `<bucket>:<key>`.
pub fn entry_uri(bucket: &str, key: &str) -> String {
    URL_SAFE.encode(format!("{bucket}:{key}"))
}

/// A query value, escaped.
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the management-token doc (安全机制 > 管理凭证).
    #[test]
    fn management_token_matches_the_docs_example() {
        let got = qbox_authorization(
            "MY_ACCESS_KEY",
            "MY_SECRET_KEY",
            "/move/bmV3ZG9jczpmaW5kX21hbi50eHQ=/bmV3ZG9jczpmaW5kLm1hbi50eHQ=",
        );
        assert_eq!(got, "QBox MY_ACCESS_KEY:FXsYh0wKHYPEsIAgdPD9OfjkeEM=");
    }

    /// The worked example of the download-token doc (安全机制 > 下载凭证).
    #[test]
    fn download_token_matches_the_docs_example() {
        let got = private_url(
            "http://78re52.com1.z0.glb.clouddn.com",
            "resource/flower.jpg",
            1451491200,
            "MY_ACCESS_KEY",
            "MY_SECRET_KEY",
        );
        assert_eq!(
            got,
            "http://78re52.com1.z0.glb.clouddn.com/resource/flower.jpg?e=1451491200\
             &token=MY_ACCESS_KEY:438dd8pXocjYuF-6dTcKMtETB2g="
        );
    }

    #[test]
    fn keys_are_escaped_but_keep_their_slashes() {
        assert_eq!(
            public_url("http://d/", "中 文/a+b&c.txt"),
            "http://d/%E4%B8%AD%20%E6%96%87/a%2Bb%26c.txt"
        );
        assert_eq!(entry_uri("b", "k"), "Yjpr");
        assert_eq!(query_value("a/b c"), "a%2Fb%20c");
    }
}
