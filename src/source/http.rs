//! The http source (`srcType=http`): a list file of URLs (reference §7), fetched with reqwest.
//!
//! Scan units are ranges of lines of the list, cut every `taskObjectCountLimit` lines and
//! wherever the host changes, so a task never mixes hosts. Each listed line is looked at with
//! HEAD (a GET of `bytes=0-0` where HEAD is refused) for its size, Last-Modified and ETag, a
//! few lines at once, in list order. Bodies are streamed GETs; parts of a large file are
//! Range GETs, and a server that ignores Range makes the worker send the file in one request.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_MATCH, LAST_MODIFIED, RANGE};
use reqwest::{Client, Method, StatusCode};
use tokio::sync::mpsc::Sender;

use super::httplist::parse_line;
use super::{Body, ListBatch, Probe, RelPath, Resume, ScanUnit, Scope, Source, SourceObject};
use crate::error::{Error, Result};
use crate::payload::{ByteStream, Reopen};
use crate::task::record::reason;

/// Lines whose HEAD requests are in flight at once while listing.
const HEADS_IN_FLIGHT: usize = 16;

/// Words in a body error that make the worker send the file in one request instead.
pub const RANGE_NOT_SUPPORTED: &str = "RANGE_NOT_SUPPORTED";

/// A list file's identity: its size and modification time, to tell an edit after submit.
///
/// # Errors
/// When the file cannot be read.
pub fn list_stamp(list: &std::path::Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(list)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}:{mtime}", meta.len()))
}

pub struct HttpSource {
    list: PathBuf,
    /// [`list_stamp`] at submit; empty for a job submitted before stamps existed.
    stamp: String,
    prefix_column: u32,
    relative_column: u32,
    /// Lines per scan unit at most.
    unit_lines: u64,
    conn: Arc<Conn>,
}

struct Conn {
    client: Client,
    policy: ExponentialBuilder,
}

/// A request failure, and whether it is worth another try.
#[derive(Debug)]
struct Failed {
    message: String,
    transient: bool,
    status: Option<StatusCode>,
}

impl HttpSource {
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub fn new(
        list: PathBuf,
        stamp: String,
        prefix_column: u32,
        relative_column: u32,
        unit_lines: u64,
    ) -> Result<Self> {
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::limited(10))
            .connect_timeout(Duration::from_secs(10))
            // A stalled transfer becomes a retried error instead of a hang.
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::Source(format!("cannot set up the HTTP client: {e}")))?;
        Ok(HttpSource {
            list,
            stamp,
            prefix_column,
            relative_column,
            unit_lines: unit_lines.max(1),
            conn: Arc::new(Conn {
                client,
                policy: crate::backoff::policy(crate::backoff::REQUEST_TRIES),
            }),
        })
    }

    fn open_list(&self) -> Result<BufReader<std::fs::File>> {
        std::fs::File::open(&self.list)
            .map(BufReader::new)
            .map_err(|e| Error::io("cannot read httpListFilePath", &self.list, e))
    }

    fn scan_units_blocking(&self) -> Result<Vec<ScanUnit>> {
        let mut reader = self.open_list()?;
        let mut units = Vec::new();
        let (mut line_no, mut offset) = (0u64, 0u64);
        // The unit being built: first line, its offset, lines so far, its host.
        let mut current: Option<(u64, u64, u64, String)> = None;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::io("cannot read httpListFilePath", &self.list, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let origin = parse_line(
                &String::from_utf8_lossy(&buf),
                self.prefix_column,
                self.relative_column,
            )
            .ok()
            .flatten()
            .map(|l| l.origin);
            let cut = match (&current, &origin) {
                (None, _) => true,
                (Some((_, _, count, _)), _) if *count >= self.unit_lines => true,
                (Some((_, _, _, host)), Some(o)) => host != o,
                (Some(_), None) => false,
            };
            if cut {
                if let Some(done) = current.take() {
                    units.push(lines_unit(done));
                }
                current = Some((line_no, offset, 0, origin.clone().unwrap_or_default()));
            }
            if let Some(c) = current.as_mut() {
                c.2 += 1;
                if c.3.is_empty()
                    && let Some(o) = origin
                {
                    c.3 = o;
                }
            }
            offset += n as u64;
        }
        units.extend(current.map(lines_unit));
        Ok(units)
    }

    /// The list lines of `unit` from entry `skip` on: line number and the parsed line.
    fn read_lines(&self, unit: &ScanUnit) -> Result<Vec<(u64, String)>> {
        let Scope::Lines {
            first,
            offset,
            count,
        } = unit.scope
        else {
            return Err(Error::Internal(format!("not a list unit: {}", unit.id)));
        };
        let mut reader = self.open_list()?;
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("cannot read httpListFilePath", &self.list, e))?;
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for n in first..first + count {
            buf.clear();
            if reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::io("cannot read httpListFilePath", &self.list, e))?
                == 0
            {
                return Err(Error::Source(format!(
                    "`{}` is shorter than when it was submitted; do not change the list of a \
                     submitted job (clean and submit again)",
                    self.list.display()
                )));
            }
            out.push((n, String::from_utf8_lossy(&buf).into_owned()));
        }
        Ok(out)
    }

    /// A list line as a listed object, or the failure recorded for it.
    async fn entry(&self, line_no: u64, text: String) -> Option<Result<SourceObject>> {
        let line = match parse_line(&text, self.prefix_column, self.relative_column) {
            Ok(None) => return None,
            Ok(Some(line)) => line,
            Err(message) => {
                return Some(Err(Error::Listing {
                    path: RelPath(format!("{}:{line_no}", self.list.display()).into_bytes()),
                    reason: reason::BAD_LIST_LINE,
                    locator: None,
                    message: format!("line {line_no}: {message}"),
                }));
            }
        };
        let rel = RelPath(line.rel);
        Some(match self.conn.head(&line.url).await {
            Ok(Some(mut obj)) => {
                obj.path = rel;
                Ok(obj)
            }
            Ok(None) => Err(Error::Listing {
                path: rel,
                reason: reason::FILE_NOT_FOUND,
                locator: Some(line.url.clone()),
                message: format!("{} answers 404 Not Found", line.url),
            }),
            Err(f) => Err(Error::Listing {
                path: rel,
                reason: reason::READ_ERROR,
                locator: Some(line.url.clone()),
                message: f.message,
            }),
        })
    }
}

fn lines_unit((first, offset, count, _host): (u64, u64, u64, String)) -> ScanUnit {
    ScanUnit {
        id: format!("lines:{first}+{count}"),
        scope: Scope::Lines {
            first,
            offset,
            count,
        },
    }
}

impl Conn {
    /// One request, retried while the failure is transient; 404 is `None`.
    async fn send(
        &self,
        method: Method,
        url: &str,
        range: Option<String>,
    ) -> std::result::Result<Option<reqwest::Response>, Failed> {
        self.send_if(method, url, range, None).await
    }

    /// [`Conn::send`], only while the resource still has ETag `version` (If-Match).
    async fn send_if(
        &self,
        method: Method,
        url: &str,
        range: Option<String>,
        version: Option<&str>,
    ) -> std::result::Result<Option<reqwest::Response>, Failed> {
        let call = || async {
            let mut req = self.client.request(method.clone(), url);
            if let Some(r) = &range {
                req = req.header(RANGE, r);
            }
            if let Some(v) = version {
                req = req.header(IF_MATCH, v);
            }
            let resp = req.send().await.map_err(|e| Failed {
                message: format!("{method} {url}: {}", error_chain(&e)),
                transient: true,
                status: None,
            })?;
            let status = resp.status();
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Ok(None);
            }
            if status.is_success() {
                return Ok(Some(resp));
            }
            Err(Failed {
                message: format!("{method} {url}: HTTP {status}"),
                transient: status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT,
                status: Some(status),
            })
        };
        call.retry(self.policy)
            .when(|f: &Failed| f.transient)
            .notify(|f, wait| tracing::debug!("{}; retrying in {wait:?}", f.message))
            .await
    }

    /// Size, mtime and ETag of `url`: HEAD, or a one-byte GET where HEAD is refused.
    async fn head(&self, url: &str) -> std::result::Result<Option<SourceObject>, Failed> {
        let resp = match self.send(Method::HEAD, url, None).await {
            Ok(resp) => resp,
            Err(f) if matches!(f.status.map(|s| s.as_u16()), Some(403 | 405 | 501)) => {
                self.send(Method::GET, url, Some("bytes=0-0".into()))
                    .await?
            }
            Err(f) => return Err(f),
        };
        let Some(resp) = resp else { return Ok(None) };
        let headers = resp.headers();
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
        };
        // A ranged answer carries the full size after the slash: `bytes 0-0/1234`.
        let size = match (resp.status(), text(CONTENT_RANGE)) {
            (StatusCode::PARTIAL_CONTENT, Some(range)) => {
                range.rsplit('/').next().and_then(|s| s.parse().ok())
            }
            _ => text(CONTENT_LENGTH).and_then(|s| s.parse().ok()),
        };
        let Some(size) = size else {
            return Err(Failed {
                message: format!(
                    "{url}: the server gives no Content-Length; its size cannot be known before the copy"
                ),
                transient: false,
                status: Some(resp.status()),
            });
        };
        let mtime = text(LAST_MODIFIED)
            .and_then(|t| httpdate::parse_http_date(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let mut obj = SourceObject::new(RelPath(Vec::new()), size, mtime);
        // No change marker from the ETag: a farm of servers behind one name gives one file a
        // different ETag per node (inode-based), and pinning reads to it would fail every file.
        // Size and Last-Modified, checked before and after the copy, catch a rewrite instead.
        obj.locator = Some(url.to_string());
        Ok(Some(obj))
    }
}

/// An error and its causes in one line (reqwest's Display stops at the outermost).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[async_trait]
impl Source for HttpSource {
    async fn check(&self) -> Result<()> {
        self.open_list()?;
        let now = list_stamp(&self.list)
            .map_err(|e| Error::io("cannot read httpListFilePath", &self.list, e))?;
        if !self.stamp.is_empty() && now != self.stamp {
            return Err(Error::Source(format!(
                "`{}` changed after the job was submitted; its lines are the job's listing, so \
                 an edit would skip or repeat entries: put it back, or `console.sh clean` and \
                 submit again",
                self.list.display()
            )));
        }
        Ok(())
    }

    async fn scan_units(&self, _max_depth: u32) -> Result<Vec<ScanUnit>> {
        let this = HttpSource {
            list: self.list.clone(),
            stamp: self.stamp.clone(),
            conn: self.conn.clone(),
            ..*self
        };
        tokio::task::spawn_blocking(move || this.scan_units_blocking())
            .await
            .map_err(|e| Error::Internal(format!("list reader failed: {e}")))?
    }

    async fn list(&self, unit: &ScanUnit, resume: Resume, out: Sender<ListBatch>) -> Result<()> {
        // Entries, not lines: blank lines are none, so `seen` skips without a request.
        let lines = self
            .read_lines(unit)?
            .into_iter()
            // Blank by the same rule as the line parser (which also takes \x0B as space).
            .filter(|(_, text)| {
                !matches!(
                    parse_line(text, self.prefix_column, self.relative_column),
                    Ok(None)
                )
            })
            .skip(resume.seen as usize);
        let mut entries = stream::iter(lines)
            .map(|(n, text)| self.entry(n, text))
            .buffered(HEADS_IN_FLIGHT);
        let mut batch = Vec::new();
        while let Some(entry) = entries.next().await {
            batch.extend(entry);
            // Small batches: each entry cost a request, so hand them on as they come.
            if batch.len() >= HEADS_IN_FLIGHT && out.send(std::mem::take(&mut batch)).await.is_err()
            {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            let _ = out.send(batch).await;
        }
        Ok(())
    }

    async fn probe(&self, listed: &SourceObject) -> Result<Probe> {
        let Some(url) = &listed.locator else {
            return Err(Error::Source(format!(
                "`{}` has no URL (its list line could not be read); fix the list and submit again",
                listed.path
            )));
        };
        match self.conn.head(url).await {
            Ok(Some(mut obj)) => {
                obj.path = listed.path.clone();
                Ok(Probe::Present(obj))
            }
            Ok(None) => Ok(Probe::Missing),
            Err(f) => Err(Error::Source(f.message)),
        }
    }

    async fn open(&self, obj: &SourceObject, offset: u64, len: u64) -> Result<Body> {
        let Some(url) = obj.locator.clone() else {
            return Err(Error::Source(format!("`{}` has no URL", obj.path)));
        };
        let what = url.clone();
        let range = UrlRange {
            conn: self.conn.clone(),
            url,
            whole: offset == 0 && len == obj.size,
            version: obj.version.clone(),
            size: obj.size,
            offset,
            len,
        };
        Ok(Body::new(Arc::new(range), len, what))
    }
}

/// A byte range of one URL.
struct UrlRange {
    conn: Arc<Conn>,
    url: String,
    /// The whole file: no Range header, so any server can serve it.
    whole: bool,
    /// The ETag it was listed with: the read is pinned to it (If-Match).
    version: Option<String>,
    /// The file's size as listed or probed.
    size: u64,
    offset: u64,
    len: u64,
}

impl Reopen for UrlRange {
    fn open(&self) -> BoxFuture<'static, std::io::Result<ByteStream>> {
        let (conn, url, whole, offset, size) = (
            self.conn.clone(),
            self.url.clone(),
            self.whole,
            self.offset,
            self.size,
        );
        let version = self.version.clone();
        let range =
            (!whole).then(|| format!("bytes={offset}-{}", (offset + self.len).saturating_sub(1)));
        Box::pin(async move {
            let resp = conn
                .send_if(Method::GET, &url, range.clone(), version.as_deref())
                .await
                .map_err(|f| {
                    // The words the worker and the destination read to stop retrying.
                    let why = match f.status {
                        Some(StatusCode::PRECONDITION_FAILED) => {
                            " (SIZE_NOT_MATCH: changed after it was listed)"
                        }
                        Some(StatusCode::RANGE_NOT_SATISFIABLE) => {
                            " (SIZE_NOT_MATCH: shorter than when it was listed)"
                        }
                        _ => "",
                    };
                    std::io::Error::other(format!("{}{why}", f.message))
                })?
                .ok_or_else(|| {
                    std::io::Error::other(format!(
                        "GET {url}: 404 (FILE_NOT_FOUND: deleted after it was listed)"
                    ))
                })?;
            // Servers that ignore If-Match still name the version they send.
            let sent = resp.headers().get(ETAG).and_then(|v| v.to_str().ok());
            if let (Some(sent), Some(listed)) = (sent, version.as_deref())
                && !sent.starts_with("W/")
                && sent != listed
            {
                return Err(std::io::Error::other(format!(
                    "GET {url}: the file changed after it was listed (ETag {listed} then, {sent} \
                     now) (SIZE_NOT_MATCH)"
                )));
            }
            // 200 to a Range request: the server sends the whole file. Right for the first
            // part only by luck, never for the others; the worker then sends it in one piece.
            if range.is_some() && resp.status() != StatusCode::PARTIAL_CONTENT {
                return Err(std::io::Error::other(format!(
                    "GET {url}: the server ignored the Range header ({RANGE_NOT_SUPPORTED})"
                )));
            }
            // Without an ETag to pin the size still tells a rewrite: the total after the
            // slash of `bytes 0-99/1234`, or the length of a whole-file answer.
            let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
            let total = match range {
                Some(_) => header(CONTENT_RANGE).and_then(|r| r.rsplit('/').next()),
                None => header(CONTENT_LENGTH),
            };
            if let Some(total) = total.and_then(|t| t.parse::<u64>().ok())
                && total != size
            {
                return Err(std::io::Error::other(format!(
                    "GET {url}: the file has {total} bytes, listed with {size} (SIZE_NOT_MATCH: \
                     changed after it was listed)"
                )));
            }
            Ok(resp
                .bytes_stream()
                .map_err(|e| std::io::Error::other(error_chain(&e)))
                .boxed())
        })
    }
}
