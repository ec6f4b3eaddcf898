//! A loopback HTTP/1.1 reverse proxy for tests, placed between the tool and the sandbox: it
//! records every request it sees and, on demand, injects faults (connection resets and `503
//! SlowDown` answers) with a deterministic pseudo-random sequence.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Which faults the proxy injects; per-mille probabilities, deterministic from `seed`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub reset_per_mille: u32,
    pub unavailable_per_mille: u32,
    pub seed: u64,
    /// Requests whose path contains this get 403 AccessDenied, without being forwarded.
    pub forbid: Option<&'static str>,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Percent-encoded path as received, e.g. "/test-bucket/a%20b.txt".
    pub path: String,
    /// Raw query string, "" if none, e.g. "partNumber=3&uploadId=...".
    pub query: String,
    /// All request headers, names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// Status returned to the client (0 when the connection was reset).
    pub status: u16,
    /// Request body bytes received from the client.
    pub body_len: u64,
}

impl Seen {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The percent-decoded value of query parameter `name`; `Some("")` for a bare `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .find(|(k, _)| percent_decode(k) == name)
            .map(|(_, v)| percent_decode(v))
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request in flight or done: the status and body length fill in as it proceeds.
struct Entry {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    status: AtomicU16,
    body_len: Arc<AtomicU64>,
}

/// Called with (method, path, query) after the upstream answered a request with 2xx, before
/// the answer goes back to the client.
type AfterSuccess = Arc<dyn Fn(&str, &str, &str) + Send + Sync>;

struct Shared {
    faults: Mutex<(Faults, u64)>,
    seen: Mutex<Vec<Arc<Entry>>>,
    after_success: Mutex<Option<AfterSuccess>>,
}

enum Fate {
    Forward,
    Reset,
    Unavailable,
    Forbidden,
}

impl Shared {
    fn roll(&self, path: &str) -> Fate {
        let mut guard = self.faults.lock().unwrap();
        let (faults, state) = &mut *guard;
        if faults.forbid.is_some_and(|f| path.contains(f)) {
            return Fate::Forbidden;
        }
        if faults.reset_per_mille == 0 && faults.unavailable_per_mille == 0 {
            return Fate::Forward;
        }
        // xorshift64*
        let mut x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        let r = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % 1000;
        let reset = u64::from(faults.reset_per_mille);
        if r < reset {
            Fate::Reset
        } else if r < reset + u64::from(faults.unavailable_per_mille) {
            Fate::Unavailable
        } else {
            Fate::Forward
        }
    }
}

fn rng_seed(seed: u64) -> u64 {
    // splitmix64, so that small and zero seeds give a good non-zero xorshift state.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let z = z ^ (z >> 31);
    if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z }
}

/// The request body on its way upstream, counting the bytes that pass.
struct Counting {
    inner: Incoming,
    count: Arc<AtomicU64>,
}

impl Body for Counting {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type OutBody = BoxBody<Bytes, hyper::Error>;
type Upstream = Client<HttpConnector, Counting>;

/// A running proxy, stopped when dropped.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts on a free 127.0.0.1 port, forwarding to `upstream` (e.g. "http://127.0.0.1:9000").
    pub fn start(upstream: &str, faults: Faults) -> Proxy {
        let upstream = upstream.trim_end_matches('/').to_string();
        assert!(
            upstream.starts_with("http://"),
            "proxy upstream must be http://host:port, got {upstream:?}"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            faults: Mutex::new((faults, rng_seed(faults.seed))),
            seen: Mutex::new(Vec::new()),
            after_success: Mutex::new(None),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-proxy")
            .enable_all()
            .build()
            .unwrap();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || {
                rt.block_on(serve(listener, upstream, state, stopped));
                rt.shutdown_background();
            })
            .unwrap();
        Proxy {
            endpoint,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every request seen so far (in arrival order).
    pub fn requests(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| Seen {
                method: e.method.clone(),
                path: e.path.clone(),
                query: e.query.clone(),
                headers: e.headers.clone(),
                status: e.status.load(Ordering::SeqCst),
                body_len: e.body_len.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// Runs `hook(method, decoded path, query)` after each request the upstream answered with
    /// 2xx and before the client hears of it: a fault injected there (an object removed or
    /// cut short on the server) is in place when the client's next request arrives.
    pub fn after_success(&self, hook: impl Fn(&str, &str, &str) + Send + Sync + 'static) {
        *self.shared.after_success.lock().unwrap() = Some(Arc::new(hook));
    }

    /// Turn fault injection on/off at runtime (restarts the dice sequence from `faults.seed`).
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = (faults, rng_seed(faults.seed));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    upstream: String,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("proxy listener");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        // Keep the client's own Host header: the request was signed for the proxy's address.
        .set_host(false)
        .build(connector);
    let upstream = Arc::new(upstream);
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let (client, upstream, shared) = (client.clone(), upstream.clone(), shared.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                handle(req, client.clone(), upstream.clone(), shared.clone())
            });
            // Errors here are client disconnects and injected resets: nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The error a service returns to make hyper drop the connection without a response.
#[derive(Debug)]
struct InjectedReset;

impl std::fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for InjectedReset {}

/// Answers with an S3 error instead of forwarding; the body is read (and discarded) so the
/// connection stays usable for keep-alive.
async fn refuse(
    req: Request<Incoming>,
    entry: &Entry,
    status: StatusCode,
    code: &str,
) -> Result<Response<OutBody>, InjectedReset> {
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    entry
                        .body_len
                        .fetch_add(data.len() as u64, Ordering::SeqCst);
                }
            }
            Err(_) => return Err(InjectedReset),
        }
    }
    entry.status.store(status.as_u16(), Ordering::SeqCst);
    Ok(xml_error(status, code, "injected"))
}

async fn handle(
    req: Request<Incoming>,
    client: Upstream,
    upstream: Arc<String>,
    shared: Arc<Shared>,
) -> Result<Response<OutBody>, InjectedReset> {
    let entry = Arc::new(Entry {
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        status: AtomicU16::new(0),
        body_len: Arc::new(AtomicU64::new(0)),
    });
    let fate = {
        // Record and roll under the same lock so arrival order and the dice sequence agree.
        let mut seen = shared.seen.lock().unwrap();
        seen.push(entry.clone());
        shared.roll(&entry.path)
    };
    match fate {
        Fate::Reset => {
            // Returning an error makes hyper close the connection with no response; the body
            // is never read, so nothing reaches the upstream.
            Err(InjectedReset)
        }
        Fate::Unavailable => refuse(req, &entry, StatusCode::SERVICE_UNAVAILABLE, "SlowDown").await,
        Fate::Forbidden => refuse(req, &entry, StatusCode::FORBIDDEN, "AccessDenied").await,
        Fate::Forward => {
            let (mut parts, body) = req.into_parts();
            let path_and_query = parts
                .uri
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("/");
            parts.uri = match format!("{upstream}{path_and_query}").parse() {
                Ok(uri) => uri,
                Err(_) => {
                    entry.status.store(400, Ordering::SeqCst);
                    return Ok(xml_error(
                        StatusCode::BAD_REQUEST,
                        "InvalidURI",
                        "proxy cannot parse the request URI",
                    ));
                }
            };
            let body = Counting {
                inner: body,
                count: entry.body_len.clone(),
            };
            match client.request(Request::from_parts(parts, body)).await {
                Ok(resp) => {
                    entry.status.store(resp.status().as_u16(), Ordering::SeqCst);
                    let hook = shared.after_success.lock().unwrap().clone();
                    if let Some(hook) = hook.filter(|_| resp.status().is_success()) {
                        hook(&entry.method, &percent_decode(&entry.path), &entry.query);
                    }
                    Ok(resp.map(|b| b.boxed()))
                }
                Err(e) => {
                    entry.status.store(502, Ordering::SeqCst);
                    Ok(xml_error(
                        StatusCode::BAD_GATEWAY,
                        "BadGateway",
                        &format!("proxy upstream error: {e}"),
                    ))
                }
            }
        }
    }
}

fn xml_error(status: StatusCode, code: &str, message: &str) -> Response<OutBody> {
    let message = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .header("content-length", xml.len())
        .body(
            Full::new(Bytes::from(xml))
                .map_err(|never: Infallible| match never {})
                .boxed(),
        )
        .unwrap()
}

/// An S3 client configured like the tool's (checksums only when required), making at most
/// `max_attempts` attempts per request (1: SDK retries off) with short backoffs.
pub fn client_with_attempts(
    endpoint: &str,
    ak: &str,
    sk: &str,
    max_attempts: u32,
) -> aws_sdk_s3::Client {
    let retry = if max_attempts <= 1 {
        RetryConfig::disabled()
    } else {
        RetryConfig::standard()
            .with_max_attempts(max_attempts)
            .with_initial_backoff(Duration::from_millis(10))
            .with_max_backoff(Duration::from_millis(100))
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(retry)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// [`client_with_attempts`] without retries: every fault reaches the caller.
pub fn client_no_retry(endpoint: &str, ak: &str, sk: &str) -> aws_sdk_s3::Client {
    client_with_attempts(endpoint, ak, sk, 1)
}
