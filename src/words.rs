//! Request failures in words a person reads: what the server said, or why there was no
//! answer, in one short phrase (`cannot connect to 127.0.0.1:9360 (connection refused)`,
//! `access denied (403 AccessDenied)`); the error chain itself is for the log at DEBUG.

use std::error::Error;
use std::io::ErrorKind;

use crate::outage::NoAnswer;

/// Why a request got no answer from `authority` (`host:port`), found in the error's chain.
pub fn no_answer(e: &(dyn Error + 'static), authority: &str) -> (NoAnswer, String) {
    let mut texts = Vec::new();
    let mut next: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(found) = io_cause(io.kind(), authority)
        {
            return found;
        }
        texts.push(err.to_string().to_ascii_lowercase());
        next = err.source();
    }
    let all = texts.join(": ");
    let has = |words: &[&str]| words.iter().any(|w| all.contains(w));
    if has(&["connection refused"]) {
        return refused(authority);
    }
    if has(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
    ]) {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let phrase = format!("cannot find the host {host} (DNS); check the endpoint's name");
        return (NoAnswer::Unreachable, phrase);
    }
    if has(&["timed out", "timeout", "deadline"]) {
        return timed_out(authority);
    }
    if has(&["certificate", "tls", "handshake"]) {
        let detail = texts.last().cloned().unwrap_or_default();
        return (
            NoAnswer::Failing,
            format!("TLS with {authority} failed ({detail})"),
        );
    }
    if has(&[
        "connection reset",
        "broken pipe",
        "connection closed",
        "incomplete message",
    ]) {
        return broke(authority);
    }
    // The innermost error is the most specific; the outer ones repeat it with context.
    let detail = texts.last().cloned().unwrap_or_default();
    (
        NoAnswer::Failing,
        format!("no answer from {authority} ({detail})"),
    )
}

fn io_cause(kind: ErrorKind, authority: &str) -> Option<(NoAnswer, String)> {
    match kind {
        ErrorKind::ConnectionRefused => Some(refused(authority)),
        ErrorKind::TimedOut => Some(timed_out(authority)),
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => Some(broke(authority)),
        _ => None,
    }
}

fn refused(authority: &str) -> (NoAnswer, String) {
    let phrase = format!("cannot connect to {authority} (connection refused)");
    (NoAnswer::Unreachable, phrase)
}

fn timed_out(authority: &str) -> (NoAnswer, String) {
    (
        NoAnswer::Failing,
        format!("no answer from {authority} in time (timed out)"),
    )
}

fn broke(authority: &str) -> (NoAnswer, String) {
    (
        NoAnswer::Failing,
        format!("the connection to {authority} broke (reset)"),
    )
}

/// A server's refusal: what it means, then the status, the error code and the server's own
/// message. `keys` names the settings to check when the keys are refused
/// (`destAccessKey/destSecretKey`).
pub fn refusal(status: u16, code: Option<&str>, said: Option<&str>, keys: &str) -> String {
    let code_text = code.map(|c| format!(" {c}")).unwrap_or_default();
    let said = said
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let check_keys = format!("; check {keys}");
    let (meaning, hint) = match (status, code.unwrap_or_default()) {
        (_, "InvalidAccessKeyId") => ("the access key is not known", check_keys),
        (_, "SignatureDoesNotMatch") => (
            "the signature does not match (a wrong secret key?)",
            check_keys,
        ),
        (403, _) => (
            "access denied",
            format!("{check_keys} and their permissions"),
        ),
        (_, "NoSuchBucket") => (
            "the bucket does not exist",
            "; check the bucket name".into(),
        ),
        (404, _) => ("not found", String::new()),
        (_, "SlowDown" | "Throttling" | "ThrottlingException") | (429, _) => {
            ("the server asks to slow down", String::new())
        }
        (500.., _) => ("server error", String::new()),
        _ => ("refused", String::new()),
    };
    format!("{meaning} ({status}{code_text}{said}){hint}")
}

/// `host:port` of an `http(s)://` URL, for the words; the URL itself when it has none.
pub fn authority(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            _ => url.to_string(),
        },
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_below_http_are_named_by_their_io_kind_or_their_text() {
        let io = std::io::Error::new(ErrorKind::ConnectionRefused, "os error 111");
        assert_eq!(
            no_answer(&io, "127.0.0.1:9360"),
            (
                NoAnswer::Unreachable,
                "cannot connect to 127.0.0.1:9360 (connection refused)".into()
            )
        );
        let dns = std::io::Error::other("dns error: failed to lookup address information");
        let (how, said) = no_answer(&dns, "oss.example:443");
        assert_eq!(how, NoAnswer::Unreachable);
        assert_eq!(
            said,
            "cannot find the host oss.example (DNS); check the endpoint's name"
        );
        let reset = std::io::Error::new(ErrorKind::ConnectionReset, "peer reset");
        assert_eq!(no_answer(&reset, "h:1").0, NoAnswer::Failing);
        assert_eq!(
            no_answer(&std::io::Error::other("weird"), "h:1").1,
            "no answer from h:1 (weird)"
        );
    }

    #[test]
    fn refusals_say_what_they_mean_and_what_to_check() {
        let keys = "destAccessKey/destSecretKey";
        assert_eq!(
            refusal(403, Some("AccessDenied"), None, keys),
            "access denied (403 AccessDenied); check destAccessKey/destSecretKey and their permissions"
        );
        assert_eq!(
            refusal(403, Some("SignatureDoesNotMatch"), Some("bad sig"), keys),
            "the signature does not match (a wrong secret key?) (403 SignatureDoesNotMatch: bad sig); check destAccessKey/destSecretKey"
        );
        assert_eq!(
            refusal(503, Some("SlowDown"), None, keys),
            "the server asks to slow down (503 SlowDown)"
        );
        assert_eq!(refusal(400, None, None, keys), "refused (400)");
        assert_eq!(authority("http://127.0.0.1:9360/x"), "127.0.0.1:9360");
        assert_eq!(authority("https://oss.example"), "oss.example:443");
    }
}
