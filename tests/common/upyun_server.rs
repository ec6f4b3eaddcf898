//! A small UPYUN REST API server for tests (no emulator exists), written from UPYUN's public
//! documentation (github.com/upyun/docs, sources/api/):
//! - rest_api.md "请求方法" and "认证授权 / 签名认证" with authorization.md "签名认证":
//!   every request needs `Date` (RFC 1123) and `Authorization: UPYUN <operator>:<signature>`,
//!   signature = Base64(HMAC-SHA1(MD5-hex(password), `METHOD&URI&DATE`)), valid 30 minutes;
//! - rest_api.md "获取目录文件列表": GET on a folder, paged with `X-List-Limit` (at most
//!   10,000), `X-List-Iter` and `X-List-Order`; the next page's iterator in the
//!   `x-upyun-list-iter` header, `g2gCZAAEbmV4dGQAA2VvZg` after the last page; JSON
//!   `{"files":[{"name","type","length","last_modified"}],"iter"}` with
//!   `Accept: application/json`, else `name\tN|F\tsize\ttime` lines;
//! - rest_api.md "下载文件" (GET, here with `Range` → 206) and "获取文件信息" (HEAD with
//!   `x-upyun-file-type`, `x-upyun-file-size`, `x-upyun-file-date`);
//! - errno.md "API 错误码表": failures answer `{"msg": ..., "code": ..., "id": ...}` with the
//!   listed status and code (401 40100005 signature error, 40100002 date offset error,
//!   40100012 bucket not exist, 404 40400001, 429 42900001, 503 50300000...).
//!
//! Folders are implied by the files under them. A second listener stands in for a CDN in
//! front of the service: unsigned GET/HEAD of `/<path>`. Faults: `throttle(every, statuses)`
//! answers every n-th request with a 429 or 503 in turn. Every request is recorded.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{KeyInit, Mac};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};

mod answers;

use answers::{list, serve_file};

/// The iterator after the last page, as UPYUN's documentation gives it.
pub const END_ITER: &str = "g2gCZAAEbmV4dGQAA2VvZg";

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// "api" or "cdn".
    pub listener: &'static str,
    pub method: String,
    /// The path as received (percent-encoded).
    pub path: String,
    pub range: Option<String>,
    /// `x-list-iter`: the page a listing asked for.
    pub iter: Option<String>,
    pub status: u16,
    /// Every header value, to look for leaked secrets.
    pub headers: Vec<String>,
}

#[derive(Clone)]
struct File {
    bytes: Vec<u8>,
    mtime: i64,
}

#[derive(Default)]
struct State {
    files: Mutex<BTreeMap<String, File>>,
    seen: Mutex<Vec<Seen>>,
    /// Every n-th request answers the next of these statuses, in turn.
    throttle: Mutex<(u64, Vec<u16>)>,
    counter: AtomicU64,
}

/// A running server (API and CDN listeners), stopped when dropped.
pub struct Upyun {
    /// `http://127.0.0.1:PORT`: srcDomain.
    pub endpoint: String,
    /// `http://127.0.0.1:PORT`: cdnDomain.
    pub cdn: String,
    pub service: String,
    pub operator: String,
    pub password: String,
    state: Arc<State>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

struct Config {
    service: String,
    operator: String,
    password_md5: String,
}

impl Upyun {
    pub fn start(service: &str, operator: &str, password: &str) -> Upyun {
        let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        api.set_nonblocking(true).unwrap();
        cdn.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", api.local_addr().unwrap());
        let cdn_endpoint = format!("http://{}", cdn.local_addr().unwrap());
        let state = Arc::new(State::default());
        let config = Arc::new(Config {
            service: service.to_string(),
            operator: operator.to_string(),
            password_md5: md5_hex(password.as_bytes()),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-upyun")
            .enable_all()
            .build()
            .unwrap();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("test-upyun".into())
            .spawn(move || {
                rt.block_on(async move {
                    let a = serve(api, "api", config.clone(), shared.clone(), stopped.clone());
                    let c = serve(cdn, "cdn", config, shared, stopped);
                    tokio::join!(a, c);
                });
                rt.shutdown_background();
            })
            .unwrap();
        Upyun {
            endpoint,
            cdn: cdn_endpoint,
            service: service.to_string(),
            operator: operator.to_string(),
            password: password.to_string(),
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Writes `bytes` at `key` (a path in the service), dated now.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let mtime = now();
        let file = File {
            bytes: bytes.to_vec(),
            mtime,
        };
        self.state
            .files
            .lock()
            .unwrap()
            .insert(key.to_string(), file);
    }

    /// New bytes at `key`, dated 10 s after the old ones.
    pub fn rewrite(&self, key: &str, bytes: &[u8]) {
        let mut files = self.state.files.lock().unwrap();
        let mtime = files.get(key).map_or_else(now, |f| f.mtime + 10);
        files.insert(
            key.to_string(),
            File {
                bytes: bytes.to_vec(),
                mtime,
            },
        );
    }

    pub fn delete(&self, key: &str) {
        self.state.files.lock().unwrap().remove(key);
    }

    /// Answers every `every`-th request (0: none) with the next of `statuses` in turn (429,
    /// 503) and UPYUN's error body for it.
    pub fn throttle(&self, every: u64, statuses: &[u16]) {
        *self.state.throttle.lock().unwrap() = (every, statuses.to_vec());
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for Upyun {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The signature of UPYUN's authorization section.
pub fn signature(password_md5: &str, method: &str, uri: &str, date: &str) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(password_md5.as_bytes()).unwrap();
    mac.update(format!("{method}&{uri}&{date}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `Authorization` and `Date` for a request made by a test itself.
pub fn sign(operator: &str, password: &str, method: &str, uri: &str, date: &str) -> String {
    let sig = signature(&md5_hex(password.as_bytes()), method, uri, date);
    format!("UPYUN {operator}:{sig}")
}

async fn serve(
    listener: std::net::TcpListener,
    name: &'static str,
    config: Arc<Config>,
    state: Arc<State>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let stream = tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let (config, state) = (config.clone(), state.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (config, state) = (config.clone(), state.clone());
                async move { Ok::<_, Infallible>(handle(req, name, &config, &state)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Answer = Response<Full<Bytes>>;

fn handle(
    req: Request<Incoming>,
    listener: &'static str,
    config: &Config,
    state: &State,
) -> Answer {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let answer = {
        let n = state.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let (every, statuses) = state.throttle.lock().unwrap().clone();
        if every > 0 && !statuses.is_empty() && n.is_multiple_of(every) {
            let status = statuses[(n / every) as usize % statuses.len()];
            let (code, msg) = match status {
                429 => (42900001, "too many requests"),
                _ => (50300000, "unknown error"),
            };
            error(status, code, msg)
        } else if listener == "cdn" {
            cdn(&req, state)
        } else {
            api(&req, config, state)
        }
    };
    state.seen.lock().unwrap().push(Seen {
        listener,
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        range: header("range"),
        iter: header("x-list-iter"),
        status: answer.status().as_u16(),
        headers: req
            .headers()
            .values()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect(),
    });
    answer
}

fn error(status: u16, code: u64, msg: &str) -> Answer {
    static ID: AtomicU64 = AtomicU64::new(1);
    let id = format!("{:032x}", ID.fetch_add(1, Ordering::SeqCst));
    let body = serde_json::json!({ "msg": msg, "code": code, "id": id }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// UPYUN's refusal: status, code and message.
type Refusal = (u16, u64, &'static str);

/// Checks Date and Authorization as UPYUN does; the refusal when they fail.
fn authorize(req: &Request<Incoming>, config: &Config) -> Result<(), Refusal> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let Some(date) = header("date") else {
        return Err((401, 40100001, "need date header"));
    };
    let Some(auth) = header("authorization") else {
        return Err((401, 40100004, "need authorization header"));
    };
    let Ok(when) = httpdate::parse_http_date(date) else {
        return Err((401, 40100016, "invalid date value in header"));
    };
    let skew = match SystemTime::now().duration_since(when) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > Duration::from_secs(30 * 60) {
        return Err((401, 40100002, "date offset error"));
    }
    let Some((realm, credentials)) = auth.split_once(' ') else {
        return Err((401, 40100003, "unknown realm in authorization header"));
    };
    if !realm.eq_ignore_ascii_case("upyun") {
        return Err((401, 40100003, "unknown realm in authorization header"));
    }
    let path = req.uri().path();
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if service != config.service {
        return Err((401, 40100012, "bucket not exist"));
    }
    let (operator, sig) = credentials.split_once(':').unwrap_or((credentials, ""));
    if operator != config.operator {
        return Err((401, 40100006, "user not exists"));
    }
    let want = signature(&config.password_md5, req.method().as_str(), path, date);
    if sig != want {
        return Err((401, 40100005, "signature error"));
    }
    Ok(())
}

fn decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

fn api(req: &Request<Incoming>, config: &Config, state: &State) -> Answer {
    if let Err((status, code, msg)) = authorize(req, config) {
        return error(status, code, msg);
    }
    let path = decode(req.uri().path());
    let key = path
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, k)| k)
        .to_string();
    let files = state.files.lock().unwrap();
    let folder = |k: &str| {
        let f = if k.is_empty() || k.ends_with('/') {
            k.to_string()
        } else {
            format!("{k}/")
        };
        (f.is_empty() || files.keys().any(|name| name.starts_with(&f))).then_some(f)
    };
    match *req.method() {
        Method::HEAD => {
            if let Some(file) = files.get(&key) {
                return Response::builder()
                    .header("x-upyun-file-type", "file")
                    .header("x-upyun-file-size", file.bytes.len().to_string())
                    .header("x-upyun-file-date", file.mtime.to_string())
                    .body(Full::default())
                    .unwrap();
            }
            match folder(&key) {
                Some(_) => Response::builder()
                    .header("x-upyun-file-type", "folder")
                    .header("x-upyun-file-size", "0")
                    .header("x-upyun-file-date", now().to_string())
                    .body(Full::default())
                    .unwrap(),
                None => error(404, 40400001, "file or directory not found"),
            }
        }
        Method::GET => {
            if let Some(file) = files.get(&key).filter(|_| !key.ends_with('/')) {
                return serve_file(req, file);
            }
            match folder(&key) {
                Some(f) => list(req, &files, &f),
                None => error(404, 40400001, "file or directory not found"),
            }
        }
        _ => error(405, 40500000, "method not allowed"),
    }
}

fn cdn(req: &Request<Incoming>, state: &State) -> Answer {
    let key = decode(req.uri().path().trim_start_matches('/'));
    let files = state.files.lock().unwrap();
    match files.get(&key) {
        Some(file) => serve_file(req, file),
        None => Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"Not Found")))
            .unwrap(),
    }
}
