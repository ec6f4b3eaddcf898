//! A small Qiniu Kodo server for the tests, written from Qiniu's public docs (no emulator
//! exists). It follows these sections of developer.qiniu.com:
//! - 对象存储 > API 文档 > Object 接口 > 资源列举 (`GET /list?bucket&marker&limit&prefix&
//!   delimiter` on rsf: `{"marker","commonPrefixes","items":[{key,putTime,hash,fsize,…}]}`,
//!   limit 1–1000, an empty marker when nothing is left);
//! - 对象存储 > API 文档 > Object 接口 > 资源元信息查询 (`GET /stat/<EncodedEntryURI>` on rs;
//!   612 for a missing key, 631 for a missing bucket);
//! - 安全机制 > 管理凭证 (`Authorization: QBox <ak>:<urlsafe_base64(hmac_sha1(sk,
//!   "<path>?<query>\n"))>`, 401 `{"error":"bad token"}` otherwise);
//! - 安全机制 > 下载凭证 (private URLs `…?e=<deadline>&token=<ak>:<sign of the URL with e>`,
//!   401 for a wrong or expired token);
//! - 对象存储 > 开发者指南 > 文件 hash (qetag: SHA-1 per 4 MiB block, prefix 0x16 or 0x96);
//! - 错误响应 (`{"error":"…"}` bodies; 573 when a resource is asked for too often, 599 for a
//!   server fault).
//!
//! The real service answers rs, rsf and the download domain on different hosts; this server
//! answers all three on one port and tells them apart by path (`/list`, `/stat/`, the rest
//! are downloads), so one proxy can stand in front of it. Downloads serve the one bucket it
//! was started with; listing another bucket gives 631.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};

struct Obj {
    bytes: Bytes,
    /// 100 ns units since the epoch.
    put_time: u64,
    hash: String,
}

struct State {
    ak: String,
    sk: String,
    bucket: String,
    objects: Mutex<BTreeMap<String, Obj>>,
    /// The next this many requests are answered 573 (throttled) / 599 (a server fault).
    throttle_next: AtomicU32,
    fail_next: AtomicU32,
    /// How many throttled / failed answers were given.
    throttled: AtomicU32,
    failed: AtomicU32,
    /// Stat requests and HEADs of a download URL answered so far.
    stats: AtomicU32,
    heads: AtomicU32,
    /// The last put time handed out: every put gets a later one.
    clock: AtomicU64,
}

/// The server, on a free 127.0.0.1 port until dropped.
pub struct QiniuServer {
    pub endpoint: String,
    state: Arc<State>,
    _rt: tokio::runtime::Runtime,
}

impl QiniuServer {
    pub fn start(ak: &str, sk: &str, bucket: &str) -> QiniuServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("qiniu-server")
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            ak: ak.into(),
            sk: sk.into(),
            bucket: bucket.into(),
            objects: Mutex::default(),
            throttle_next: AtomicU32::new(0),
            fail_next: AtomicU32::new(0),
            throttled: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            clock: AtomicU64::new(0),
            stats: AtomicU32::new(0),
            heads: AtomicU32::new(0),
        });
        let shared = state.clone();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        QiniuServer {
            endpoint,
            state,
            _rt: rt,
        }
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let now = (now.as_nanos() / 100) as u64;
        let put_time = self.state.clock.fetch_max(now, Ordering::SeqCst).max(now) + 1;
        self.state.clock.fetch_max(put_time, Ordering::SeqCst);
        let obj = Obj {
            bytes: Bytes::copy_from_slice(bytes),
            put_time,
            hash: qetag(bytes),
        };
        self.state.objects.lock().unwrap().insert(key.into(), obj);
    }

    pub fn delete(&self, key: &str) {
        self.state.objects.lock().unwrap().remove(key);
    }

    /// The next `n` requests are answered 573 (Qiniu's throttle answer).
    pub fn throttle_next(&self, n: u32) {
        self.state.throttle_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests are answered 599 (a server fault).
    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Stat requests and download HEADs answered so far.
    pub fn looks(&self) -> (u32, u32) {
        (
            self.state.stats.load(Ordering::SeqCst),
            self.state.heads.load(Ordering::SeqCst),
        )
    }

    /// Throttled and failed answers given so far.
    pub fn faults_given(&self) -> (u32, u32) {
        (
            self.state.throttled.load(Ordering::SeqCst),
            self.state.failed.load(Ordering::SeqCst),
        )
    }
}

/// Qiniu's file hash: SHA-1 of each 4 MiB block; one block: 0x16 + its SHA-1, more: 0x96 +
/// the SHA-1 of the blocks' SHA-1s; URL-safe base64.
pub fn qetag(bytes: &[u8]) -> String {
    const BLOCK: usize = 4 << 20;
    let mut out = Vec::with_capacity(21);
    if bytes.len() <= BLOCK {
        out.push(0x16);
        out.extend_from_slice(&Sha1::digest(bytes));
    } else {
        let mut all = Sha1::new();
        for block in bytes.chunks(BLOCK) {
            all.update(Sha1::digest(block));
        }
        out.push(0x96);
        out.extend_from_slice(&all.finalize());
    }
    URL_SAFE.encode(out)
}

type Answer = Response<Full<Bytes>>;

fn sign(sk: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(data);
    URL_SAFE.encode(mac.finalize().into_bytes())
}

fn error(status: u16, message: &str) -> Answer {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(format!(
            "{{\"error\":\"{message}\"}}"
        ))))
        .unwrap()
}

fn json(value: serde_json::Value) -> Answer {
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .unwrap()
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn handle(state: &State, req: Request<Incoming>) -> Answer {
    if take(&state.throttle_next) {
        state.throttled.fetch_add(1, Ordering::SeqCst);
        return error(573, "too many requests of the same resource");
    }
    if take(&state.fail_next) {
        state.failed.fetch_add(1, Ordering::SeqCst);
        return error(599, "server internal error, please retry");
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/list" || path.starts_with("/stat/") {
        if !managed_token_ok(state, &req, &path, &query) {
            return error(401, "bad token");
        }
        return if path == "/list" {
            list(state, &query)
        } else {
            state.stats.fetch_add(1, Ordering::SeqCst);
            stat(state, &path["/stat/".len()..])
        };
    }
    download(state, &req, &path, &query)
}

/// 安全机制 > 管理凭证: the token signs the path and query as sent, and a newline.
fn managed_token_ok(state: &State, req: &Request<Incoming>, path: &str, query: &str) -> bool {
    let Some(auth) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((ak, got)) = auth.strip_prefix("QBox ").and_then(|t| t.split_once(':')) else {
        return false;
    };
    let signing = if query.is_empty() {
        format!("{path}\n")
    } else {
        format!("{path}?{query}\n")
    };
    ak == state.ak && got == sign(&state.sk, signing.as_bytes())
}

fn params(query: &str) -> BTreeMap<String, String> {
    url_pairs(query)
        .into_iter()
        .map(|(k, v)| (k, decode(&v)))
        .collect()
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

fn decode(text: &str) -> String {
    let plus = text.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Markers are opaque to clients; like the service's, this one is base64 of the position.
fn marker_key(marker: &str) -> Option<String> {
    let raw = URL_SAFE.decode(marker).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v["k"].as_str().map(str::to_string)
}

fn list(state: &State, query: &str) -> Answer {
    let q = params(query);
    if q.get("bucket") != Some(&state.bucket) {
        return error(631, "no such bucket");
    }
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 1000,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return error(400, "invalid limit"),
    };
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let delimiter = q.get("delimiter").cloned().filter(|d| !d.is_empty());
    let after = match q.get("marker").filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => match marker_key(m) {
            Some(k) => Some(k),
            None => return error(400, "invalid marker"),
        },
    };
    let objects = state.objects.lock().unwrap();
    let (mut items, mut prefixes) = (Vec::new(), Vec::<String>::new());
    let mut last: Option<&String> = None;
    let mut more = false;
    let from = after.clone().unwrap_or_default();
    for (key, obj) in objects.range(from..) {
        if Some(key) == after.as_ref() || !key.starts_with(&prefix) {
            continue;
        }
        let folder = delimiter.as_ref().and_then(|d| {
            key[prefix.len()..]
                .find(d.as_str())
                .map(|at| key[..prefix.len() + at + d.len()].to_string())
        });
        // Keys under the folder just rolled up go with it.
        if let Some(f) = &folder
            && prefixes.last() == Some(f)
        {
            last = Some(key);
            continue;
        }
        if items.len() + prefixes.len() == limit {
            more = true;
            break;
        }
        match folder {
            Some(f) => prefixes.push(f),
            None => items.push(serde_json::json!({
                "key": key, "fsize": obj.bytes.len(), "hash": obj.hash,
                "putTime": obj.put_time, "mimeType": "application/octet-stream",
                "type": 0, "status": 0,
            })),
        }
        last = Some(key);
    }
    let marker = match (more, last) {
        (true, Some(k)) => URL_SAFE.encode(serde_json::json!({"c": 0, "k": k}).to_string()),
        _ => String::new(),
    };
    json(serde_json::json!({"marker": marker, "commonPrefixes": prefixes, "items": items}))
}

fn stat(state: &State, entry: &str) -> Answer {
    let Some((bucket, key)) = URL_SAFE
        .decode(entry)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|e| {
            e.split_once(':')
                .map(|(b, k)| (b.to_string(), k.to_string()))
        })
    else {
        return error(400, "invalid EncodedEntryURI");
    };
    if bucket != state.bucket {
        return error(631, "no such bucket");
    }
    let objects = state.objects.lock().unwrap();
    let Some(obj) = objects.get(&key) else {
        return error(612, "no such file or directory");
    };
    let md5: String = <md5::Md5 as md5::Digest>::digest(&obj.bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json(serde_json::json!({
        "fsize": obj.bytes.len(), "hash": obj.hash, "md5": md5, "putTime": obj.put_time,
        "mimeType": "application/octet-stream", "type": 0,
    }))
}

/// 安全机制 > 下载凭证: the token signs the URL up to and with `e`; it is the last parameter.
fn download(state: &State, req: &Request<Incoming>, path: &str, query: &str) -> Answer {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(405, "method not allowed");
    }
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some((signed, token)) = query.rsplit_once("&token=") else {
        return error(401, "download token not specified");
    };
    let Some(deadline) = signed
        .strip_prefix("e=")
        .and_then(|e| e.parse::<u64>().ok())
    else {
        return error(401, "bad token");
    };
    let url = format!("http://{host}{path}?{signed}");
    let want = format!("{}:{}", state.ak, sign(&state.sk, url.as_bytes()));
    if token != want {
        return error(401, "bad token");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    if deadline < now.as_secs() {
        return error(401, "token out of date");
    }
    if req.method() == Method::HEAD {
        state.heads.fetch_add(1, Ordering::SeqCst);
    }
    let key = percent_encoding::percent_decode_str(&path[1..])
        .decode_utf8_lossy()
        .into_owned();
    let objects = state.objects.lock().unwrap();
    let Some(obj) = objects.get(&key) else {
        return error(404, "Document not found");
    };
    let total = obj.bytes.len() as u64;
    let modified = UNIX_EPOCH + Duration::from_secs(obj.put_time / 10_000_000);
    let answer = Response::builder()
        .header("ETag", format!("\"{}\"", obj.hash))
        .header("Last-Modified", httpdate::fmt_http_date(modified))
        .header("Accept-Ranges", "bytes")
        .header("Content-Type", "application/octet-stream");
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'));
    let (status, first, end, answer) = match range {
        None => (200, 0, total, answer),
        Some((a, b)) => {
            let first: u64 = a.parse().unwrap_or(0);
            let last = b
                .parse::<u64>()
                .map_or(total.saturating_sub(1), |l| l.min(total.saturating_sub(1)));
            if first >= total || last < first {
                return Response::builder()
                    .status(416)
                    .header("Content-Range", format!("bytes */{total}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
            }
            let answer = answer.header("Content-Range", format!("bytes {first}-{last}/{total}"));
            (206, first, last + 1, answer)
        }
    };
    let answer = answer.status(status).header("Content-Length", end - first);
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        obj.bytes.slice(first as usize..end as usize)
    };
    answer.body(Full::new(body)).unwrap()
}
