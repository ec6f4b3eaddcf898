//! One line of an http URL list (srcType=http): the URL to fetch, the relative path it becomes
//! in the object key, and the origin that groups consecutive lines of one host.
//!
//! Decisions where the original leaves room (reference §7):
//! - Columns are split on ASCII whitespace only, like Java's `\s+`: an ideographic or
//!   no-break space is part of a file name and gets percent-encoded.
//! - The URL is prefix + relative path, concatenated as the original does, so
//!   `http://h/img_ 001.jpg` fetches `http://h/img_001.jpg`. A `/` is inserted only when the
//!   prefix has no path at all, where plain concatenation would change the host name.
//! - Leading `/`s of the relative path are dropped from the key (a key must not start with
//!   `/`) and stand for exactly one `/` in the URL.
//! - `.` and `..` segments (also as `%2E`) are errors: the server would resolve them and send
//!   another file than the key names.
//! - A user name in the prefix is an error: it would be copied into logs and error.list.
//! - `%XX` is always decoded for the key, so a name containing a literal `%41` cannot be
//!   listed; write `%2541` for it.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};

/// RFC 3986 unreserved characters and `/` pass; every other byte is sent as `%XX`.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListLine {
    /// the URL to request: prefix column + relative column, with bytes outside the URL-safe set percent-encoded and existing %XX kept
    pub url: String,
    /// the relative path as the object key wants it: %XX decoded (a%20b.jpg -> "a b.jpg"), as bytes
    pub rel: Vec<u8>,
    /// scheme://host[:port] of the url, lower-cased host, for grouping consecutive lines of one host
    pub origin: String,
}

/// `None` for a blank (or whitespace-only) line. A trailing `\r` (CRLF lists) is accepted.
/// Err: a one-sentence message for error.list, e.g. "line has 1 column, relativePathColumn=2 needs at least 2; write `<url prefix> <relative path>` separated by whitespace" (the caller adds the line number).
pub fn parse_line(
    line: &str,
    prefix_column: u32,
    relative_column: u32,
) -> Result<Option<ListLine>, String> {
    // `\r` counts as a separator, which is what makes CRLF lists work.
    let cols: Vec<&str> = line
        .split(|c: char| c.is_ascii_whitespace() || c == '\x0B')
        .filter(|c| !c.is_empty())
        .collect();
    if cols.is_empty() {
        return Ok(None);
    }
    let (pc, rc) = (prefix_column, relative_column);
    if pc == 0 || rc == 0 || pc == rc {
        return Err(format!(
            "httpPrefixColumn={pc} and relativePathColumn={rc} must be two different columns \
             counted from 1; write httpPrefixColumn=1 and relativePathColumn=2"
        ));
    }
    let column = |c: u32| {
        let index = usize::try_from(c).ok()?.checked_sub(1)?;
        cols.get(index).copied()
    };
    let (Some(prefix), Some(rel_raw)) = (column(pc), column(rc)) else {
        let (name, need) = if rc > pc {
            ("relativePathColumn", rc)
        } else {
            ("httpPrefixColumn", pc)
        };
        let plural = if cols.len() == 1 { "" } else { "s" };
        let hint = match (pc, rc) {
            (1, 2) => "write `<url prefix> <relative path>` separated by whitespace".to_string(),
            _ => format!(
                "write the url prefix in column {pc} and the relative path in column {rc}, \
                 separated by whitespace"
            ),
        };
        return Err(format!(
            "line has {} column{plural}, {name}={need} needs at least {need}; {hint}",
            cols.len()
        ));
    };

    let example = "write it like http://example.com/images/";
    let (scheme, rest) = prefix
        .split_once("://")
        .filter(|(s, _)| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
        .ok_or_else(|| {
            let prefix = super::endpoint::hide_userinfo(prefix);
            format!(
                "url prefix `{prefix}` (column {pc}) is not an http:// or https:// url; {example}"
            )
        })?;
    let scheme = scheme.to_ascii_lowercase();
    // Only the path is encoded: the authority is kept as written, `?` and `#` in the path are
    // taken as parts of file names (a list names files, not queries).
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let origin = origin_of(&scheme, authority).ok_or_else(|| {
        let prefix = super::endpoint::hide_userinfo(prefix);
        format!("url prefix `{prefix}` (column {pc}) has no valid host[:port] or has a user name; {example}")
    })?;

    let rel_text = rel_raw.trim_start_matches('/');
    let rel: Vec<u8> = percent_decode(rel_text.as_bytes()).collect();
    let bad_rel = |why: &str| format!("relative path `{rel_raw}` (column {rc}) {why}");
    if rel.is_empty() {
        return Err(bad_rel(
            "is empty; write the file's path below the url prefix",
        ));
    }
    if rel.first() == Some(&b'/') {
        return Err(bad_rel(
            "starts with an encoded `/` (%2F); write the path without it",
        ));
    }
    if rel
        .split(|b| *b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return Err(bad_rel(
            "has a `.` or `..` segment, which the server would resolve to another file; write the path without it",
        ));
    }
    let slash = path.is_empty() || (rel_raw.starts_with('/') && !path.ends_with('/'));
    let url = format!(
        "{scheme}://{authority}{}{}{}",
        encode(path),
        if slash { "/" } else { "" },
        encode(rel_text)
    );
    Ok(Some(ListLine { url, rel, origin }))
}

/// Percent-encodes `s` for a URL path, keeping `%XX` escapes the list already has.
fn encode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        let hex = |k: usize| b.get(k).is_some_and(u8::is_ascii_hexdigit);
        if b[i] == b'%' && hex(i + 1) && hex(i + 2) {
            out.extend(percent_encode(&b[start..i], ENCODE));
            out.push_str(&s[i..i + 3]);
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    out.extend(percent_encode(&b[start..], ENCODE));
    out
}

/// `scheme://host[:port]`, host lower-cased and the scheme's default port dropped, so that
/// `http://H:80/` and `http://h/` group together; `None` for a malformed authority.
fn origin_of(scheme: &str, authority: &str) -> Option<String> {
    let (host, tail) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, tail) = v6.split_once(']')?;
            addr.parse::<std::net::Ipv6Addr>().ok()?;
            (authority.get(..addr.len() + 2)?, tail)
        }
        None => authority
            .find(':')
            .map_or((authority, ""), |i| authority.split_at(i)),
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
    if !host_ok {
        return None;
    }
    let port = match tail.strip_prefix(':') {
        Some(p) if p.len() <= 5 => Some(p.parse::<u16>().ok().filter(|n| *n > 0)?),
        None if tail.is_empty() => None,
        _ => return None,
    };
    let host = host.to_ascii_lowercase();
    let default = if scheme == "https" { 443 } else { 80 };
    Some(match port {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `line | url | rel | origin` with httpPrefixColumn=1, relativePathColumn=2.
    const GOOD: &[&str] = &[
        // reference §7
        "http://h/aa/ bb.jpg|http://h/aa/bb.jpg|bb.jpg|http://h",
        "http://h/ aa/bb.jpg|http://h/aa/bb.jpg|aa/bb.jpg|http://h",
        // CRLF, tabs, runs of blanks, extra columns; U+3000 and U+00A0 belong to the name
        "http://h/ a.jpg\r|http://h/a.jpg|a.jpg|http://h",
        "  http://h/\t\t a.jpg  \t|http://h/a.jpg|a.jpg|http://h",
        "http://h/ a.jpg 12345 extra|http://h/a.jpg|a.jpg|http://h",
        "http://h/ a\u{3000}b\u{a0}.jpg|http://h/a%E3%80%80b%C2%A0.jpg|a\u{3000}b\u{a0}.jpg|http://h",
        // the URL is encoded, existing %XX kept; the key is decoded
        "http://h/ 中文/图%20片.jpg|http://h/%E4%B8%AD%E6%96%87/%E5%9B%BE%20%E7%89%87.jpg|中文/图 片.jpg|http://h",
        "http://h/ a+b&c.jpg|http://h/a%2Bb%26c.jpg|a+b&c.jpg|http://h",
        "http://h/ q?x=1#frag|http://h/q%3Fx%3D1%23frag|q?x=1#frag|http://h",
        "http://h/ 100%.jpg|http://h/100%25.jpg|100%.jpg|http://h",
        "http://h/ %zz%4|http://h/%25zz%254|%zz%4|http://h",
        "http://h/ a%2fb~_-.x|http://h/a%2fb~_-.x|a/b~_-.x|http://h",
        "http://h/ %E4%B8%AD|http://h/%E4%B8%AD|中|http://h",
        "http://h/ ..a/b..|http://h/..a/b..|..a/b..|http://h",
        // the prefix's path is encoded too; its scheme://authority is kept as written
        "http://h/中文/a+b?/ x.jpg|http://h/%E4%B8%AD%E6%96%87/a%2Bb%3F/x.jpg|x.jpg|http://h",
        "HTTP://Example.COM:8080/x/ y|http://Example.COM:8080/x/y|y|http://example.com:8080",
        "http://h:80/ y|http://h:80/y|y|http://h",
        "https://h:443/ y|https://h:443/y|y|https://h",
        "https://h:80/ y|https://h:80/y|y|https://h:80",
        "http://[::1]:8080/d/ y|http://[::1]:8080/d/y|y|http://[::1]:8080",
        "http://127.0.0.1:9 y|http://127.0.0.1:9/y|y|http://127.0.0.1:9",
        // joining: plain concatenation, one `/` for a bare host or a relative path's leading `/`
        "http://h a.jpg|http://h/a.jpg|a.jpg|http://h",
        "http://h/img_ 001.jpg|http://h/img_001.jpg|001.jpg|http://h",
        "http://h/aa/ /bb.jpg|http://h/aa/bb.jpg|bb.jpg|http://h",
        "http://h/aa //bb.jpg|http://h/aa/bb.jpg|bb.jpg|http://h",
        "http://h/ a//b|http://h/a//b|a//b|http://h",
    ];

    /// `line | start of the error` with httpPrefixColumn=1, relativePathColumn=2.
    const BAD: &[&str] = &[
        "http://h/a.jpg|line has 1 column, relativePathColumn=2 needs at least 2; write `<url prefix> <relative path>` separated by whitespace",
        "ftp://h/ a.jpg|url prefix `ftp://h/` (column 1) is not an http:// or https:// url; write it like http://example.com/images/",
        "h/a/ a.jpg|url prefix `h/a/` (column 1) is not an http://",
        "http:/h/ a.jpg|url prefix `http:/h/` (column 1) is not",
        "http:// a.jpg|url prefix `http://` (column 1) has no valid host[:port] or has a user name",
        "http:///a a.jpg|url prefix `http:///a` (column 1) has no valid host",
        "http://u:p@h/ a.jpg|url prefix `http://***@h/` (column 1) has no valid host",
        "http://h:99999/ a|url prefix",
        "http://h:/ a|url prefix",
        "http://h:0/ a|url prefix",
        "http://[::1/ a|url prefix",
        "http://[zz]/ a|url prefix",
        "http://h?x/ a|url prefix",
        "http://中文.com/ a|url prefix",
        "http://h/ /|relative path `/` (column 2) is empty",
        "http://h/ ///|relative path `///` (column 2) is empty",
        "http://h/ %2Fa|relative path `%2Fa` (column 2) starts with an encoded `/`",
        "http://h/ a/../b|relative path `a/../b` (column 2) has a `.` or `..` segment",
        "http://h/ ./a|relative path `./a` (column 2) has a `.` or `..` segment",
        "http://h/ ..|relative path `..` (column 2) has a",
        "http://h/ a/.|relative path `a/.` (column 2) has a",
        "http://h/ a/%2E%2E/b|relative path `a/%2E%2E/b` (column 2) has a",
    ];

    #[test]
    fn good_lines() {
        for case in GOOD {
            let want: Vec<&str> = case.split('|').collect();
            let got = parse_line(want[0], 1, 2).unwrap().unwrap();
            let rel = String::from_utf8(got.rel).unwrap();
            assert_eq!([got.url.as_str(), &rel, &got.origin], want[1..], "{case}");
        }
        let l = parse_line("http://h/ %FF.bin", 1, 2).unwrap().unwrap();
        assert_eq!(
            (l.url.as_str(), l.rel),
            ("http://h/%FF.bin", b"\xFF.bin".to_vec())
        );
    }

    #[test]
    fn bad_lines() {
        for case in BAD {
            let (line, want) = case.split_once('|').unwrap();
            let got = parse_line(line, 1, 2).unwrap_err();
            assert!(got.starts_with(want), "{line}\n got {got}\nwant {want}");
        }
    }

    #[test]
    fn blank_lines_and_columns() {
        for blank in ["", "   ", "\t\r", "\r"] {
            assert_eq!(parse_line(blank, 1, 2), Ok(None), "{blank:?}");
        }
        let l = parse_line("a/b.jpg http://h/x/", 2, 1).unwrap().unwrap();
        assert_eq!(
            (l.url.as_str(), l.rel),
            ("http://h/x/a/b.jpg", b"a/b.jpg".to_vec())
        );
        assert_eq!(
            parse_line("b.jpg 9 http://h/", 3, 1).unwrap().unwrap().url,
            "http://h/b.jpg"
        );
        let e = parse_line("a b", 3, 1).unwrap_err();
        assert!(e.starts_with("line has 2 columns, httpPrefixColumn=3 needs at least 3; write the url prefix in column 3 and the relative path in column 1"), "{e}");
        for (p, r) in [(0, 2), (1, 0), (2, 2)] {
            assert!(
                parse_line("a b", p, r)
                    .unwrap_err()
                    .starts_with("httpPrefixColumn=")
            );
        }
        assert!(parse_line("a b", u32::MAX, 1).is_err());
    }
}
