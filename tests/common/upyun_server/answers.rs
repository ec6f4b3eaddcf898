//! The answers of the UPYUN test server with a body of their own: a file (whole or ranged,
//! rest_api.md "下载文件") and a page of a folder listing ("获取目录文件列表").

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use super::{Answer, END_ITER, File, error, md5_hex};

pub(super) fn serve_file(req: &Request<Incoming>, file: &File) -> Answer {
    let len = file.bytes.len() as u64;
    let builder = Response::builder()
        .header(
            "last-modified",
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(file.mtime as u64)),
        )
        .header("etag", format!("\"{}\"", md5_hex(&file.bytes)))
        .header("accept-ranges", "bytes");
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'));
    let Some((from, to)) = range else {
        let body = if req.method() == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(file.bytes.clone())
        };
        return builder.body(Full::new(body)).unwrap();
    };
    let from: u64 = from.parse().unwrap_or(0);
    let to: u64 = to
        .parse()
        .map_or(len.saturating_sub(1), |t: u64| t.min(len.saturating_sub(1)));
    if from >= len || to < from {
        return Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header("content-range", format!("bytes */{len}"))
            .body(Full::default())
            .unwrap();
    }
    builder
        .status(StatusCode::PARTIAL_CONTENT)
        .header("content-range", format!("bytes {from}-{to}/{len}"))
        .body(Full::new(Bytes::from(
            file.bytes[from as usize..=to as usize].to_vec(),
        )))
        .unwrap()
}

/// One page of `folder`'s direct entries in name order, from the iterator on.
pub(super) fn list(
    req: &Request<Incoming>,
    files: &BTreeMap<String, File>,
    folder: &str,
) -> Answer {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let limit = match header("x-list-limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n,
        Some(_) => return error(400, 40000015, "missing required arguments"),
    };
    let desc = match header("x-list-order") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return error(403, 40300014, "order must be asc or desc"),
    };
    // name → (folder?, length, last_modified)
    let mut children: BTreeMap<String, (bool, u64, i64)> = BTreeMap::new();
    for (key, file) in files.range(folder.to_string()..) {
        let Some(rest) = key.strip_prefix(folder) else {
            break;
        };
        match rest.split_once('/') {
            Some((sub, _)) => {
                let entry = children.entry(sub.to_string()).or_insert((true, 0, 0));
                entry.2 = entry.2.max(file.mtime);
            }
            None => {
                children.insert(
                    rest.to_string(),
                    (false, file.bytes.len() as u64, file.mtime),
                );
            }
        }
    }
    let mut names: Vec<(&String, &(bool, u64, i64))> = children.iter().collect();
    if desc {
        names.reverse();
    }
    // The iterator names the last entry given: the next page starts after it, in list order.
    let after = header("x-list-iter")
        .filter(|i| *i != END_ITER)
        .and_then(|i| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(i)
                .ok()
        })
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let start = match &after {
        Some(a) => names
            .iter()
            .position(|(n, _)| if desc { *n < a } else { *n > a })
            .unwrap_or(names.len()),
        None => 0,
    };
    let page = &names[start..(start + limit).min(names.len())];
    let iter = match page.last() {
        Some((last, _)) if start + limit < names.len() => {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.as_bytes())
        }
        _ => END_ITER.to_string(),
    };
    let json = header("accept").is_some_and(|a| a.contains("application/json"));
    let body = if json {
        let files: Vec<serde_json::Value> = page
            .iter()
            .map(|(name, (is_folder, len, mtime))| {
                let kind = if *is_folder {
                    "folder".to_string()
                } else {
                    mime_guess::from_path(name.as_str()).first_or_octet_stream().to_string()
                };
                serde_json::json!({ "name": name, "type": kind, "length": len, "last_modified": mtime })
            })
            .collect();
        serde_json::json!({ "files": files, "iter": iter }).to_string()
    } else {
        page.iter()
            .map(|(name, (is_folder, len, mtime))| {
                format!(
                    "{name}\t{}\t{len}\t{mtime}",
                    if *is_folder { "F" } else { "N" }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Response::builder()
        .header("x-upyun-list-iter", iter)
        .header(
            "content-type",
            if json {
                "application/json"
            } else {
                "text/plain"
            },
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
