//! What the REST-speaking sources (http, azure, qiniu, upyun) share: the HTTP client, the
//! characters left as they are in a URL, which answers are worth another try, and the reading
//! of a ranged GET's answer.

use crate::backoff::Verdict;
use crate::outage::NoAnswer;
use std::time::Duration;

use futures::stream::{StreamExt, TryStreamExt};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderMap};
use reqwest::{Client, ClientBuilder, Response, StatusCode};
use sha1::Sha1;

use crate::error::{Error, Result};
use crate::payload::{ByteStream, ReadFault, ReadFaultKind};

/// Percent-encoded in a URL component: everything but RFC 3986's unreserved characters.
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encoded in a URL path: the same, with `/` left as the separator it is.
pub(crate) const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// `builder` with the timeouts every source uses, built.
///
/// # Errors
/// When the HTTP client cannot be built (no TLS roots).
pub(crate) fn client(builder: ClientBuilder) -> Result<Client> {
    builder
        .connect_timeout(Duration::from_secs(10))
        // A stalled transfer becomes a retried error instead of a hang.
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| Error::Source(format!("cannot set up the HTTP client: {e}")))
}

/// Whether an unsuccessful status is worth another try: a server error, a throttle, a timeout.
pub(crate) fn transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Why a request got no (whole) answer, in words: `cannot connect to host:port (connection
/// refused)`. The causes go to the log at DEBUG, without the URL (a private URL carries a
/// token).
pub(crate) fn no_answer(e: &reqwest::Error) -> String {
    let authority = e
        .url()
        .map(|u| crate::words::authority(u.as_str()))
        .unwrap_or_default();
    if let Some(cause) = std::error::Error::source(e) {
        tracing::debug!("request to {authority} failed: {}", error_chain(cause));
    }
    crate::words::no_answer(e, &authority).1
}

/// How a REST source's failure counts for retries and outages, from the status and our own
/// words for the cause. Only an endpoint that cannot be reached at all (refused, no such
/// host) makes a source outage: a 5xx or a timeout may be one object's, and an outage probed
/// by that object's read would hold the job until it gives up.
pub(crate) fn verdict(message: &str, transient: bool, status: Option<u16>) -> Verdict {
    let unreachable = transient
        && status.is_none()
        && (message.contains("(connection refused)") || message.contains("(DNS)"));
    Verdict {
        transient,
        no_answer: unreachable.then(|| (NoAnswer::Unreachable, without_queries(message))),
        answered: status.is_some_and(|s| s < 500 && s != 429),
    }
}

/// `text` with the query of every URL in it cut (`http://h/a?token=x:` → `http://h/a:`): what
/// `stat` shows of an outage must not carry a signed URL's token.
fn without_queries(text: &str) -> String {
    let words = text
        .split(' ')
        .map(|word| match (word.contains("://"), word.find('?')) {
            (true, Some(at)) => {
                let colon = if word.ends_with(':') { ":" } else { "" };
                format!("{}{colon}", &word[..at])
            }
            _ => word.to_string(),
        });
    words.collect::<Vec<_>>().join(" ")
}

/// An error and its causes in one line (reqwest's Display stops at the outermost).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// HMAC-SHA1 of `data` keyed by `key` (callers encode it as their API asks).
pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `data` keyed by `key` (SigV4, Azure Shared Key).
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `Last-Modified` (RFC 1123) as unix seconds; 0 when unreadable.
pub(crate) fn mtime(text: &str) -> i64 {
    httpdate::parse_http_date(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// The object's whole size as a GET answer gives it: the total after the slash of
/// `bytes 0-99/1234` when `ranged`, else the length of a whole-file answer.
pub(crate) fn total_size(headers: &HeaderMap, ranged: bool) -> Option<u64> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let total = match ranged {
        true => header(CONTENT_RANGE).and_then(|r| r.rsplit('/').next()),
        false => header(CONTENT_LENGTH),
    };
    total.and_then(|t| t.parse::<u64>().ok())
}

/// Why a 206 answer is not the range asked for (`requested` = `bytes=a-b`), if it is not: a
/// proxy that serves another range would put the wrong bytes at a part's offset.
pub(crate) fn wrong_range(headers: &HeaderMap, requested: Option<&str>) -> Option<String> {
    let asked = requested?.strip_prefix("bytes=")?;
    let served = headers
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes "))
        .and_then(|r| r.split('/').next());
    match served {
        Some(served) if served == asked => None,
        Some(served) => Some(format!(
            "asked for bytes {asked}, the answer holds {served}"
        )),
        None => Some(format!(
            "asked for bytes {asked}, the answer has no Content-Range"
        )),
    }
}

/// The checks every GET of an object's bytes passes, in this order: a Range the server ignored
/// (200, not 206: the worker then sends the file in one piece), a size that is no longer the
/// listed one (a rewrite), and a 206 of another range than `range` (`bytes=a-b`) asked for.
/// `what` names the request in the messages (`GET <url>`).
pub(crate) fn check_answer(
    resp: &Response,
    range: Option<&str>,
    size: u64,
    what: &str,
) -> std::io::Result<()> {
    if range.is_some() && resp.status() != StatusCode::PARTIAL_CONTENT {
        return Err(ReadFault::io(
            ReadFaultKind::RangeIgnored,
            format!("{what}: the server ignored the Range header (RANGE_NOT_SUPPORTED)"),
        ));
    }
    if let Some(total) = total_size(resp.headers(), range.is_some())
        && total != size
    {
        return Err(ReadFault::io(
            ReadFaultKind::Changed,
            format!(
                "{what}: it has {total} bytes, listed with {size} (SIZE_NOT_MATCH: changed \
                 after it was listed)"
            ),
        ));
    }
    // Right size, wrong place: the bytes would land at another offset.
    match wrong_range(resp.headers(), range) {
        Some(why) => Err(std::io::Error::other(format!("{what}: {why}"))),
        None => Ok(()),
    }
}

/// The body of an answer as a stream, a failure carrying its causes.
pub(crate) fn byte_stream(resp: Response) -> ByteStream {
    resp.bytes_stream()
        .map_err(|e| std::io::Error::other(error_chain(&e)))
        .boxed()
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_outage_cause_carries_no_url_query() {
        assert_eq!(
            without_queries("GET http://h/a.txt?X-Amz-Signature=s3cr3t: cannot connect to h:80"),
            "GET http://h/a.txt: cannot connect to h:80"
        );
    }

    use super::*;

    #[test]
    fn a_206_must_hold_the_range_asked_for() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, "bytes 100-199/1000".parse().unwrap());
        assert_eq!(wrong_range(&h, Some("bytes=100-199")), None);
        assert!(wrong_range(&h, Some("bytes=0-99")).is_some());
        assert_eq!(wrong_range(&h, None), None);
        assert!(wrong_range(&HeaderMap::new(), Some("bytes=0-99")).is_some());
    }
}
