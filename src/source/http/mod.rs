//! The http source (`srcType=http`): a list file of URLs (reference §7), fetched with reqwest.
//!
//! Scan units are ranges of lines of the list, cut every `taskObjectCountLimit` lines and
//! wherever the host changes, so a task never mixes hosts. Each listed line is looked at with
//! HEAD (a GET of `bytes=0-0` where HEAD is refused) for its size, Last-Modified and ETag, a
//! few lines at once, in list order. Bodies are streamed GETs; parts of a large file are
//! Range GETs, and a server that ignores Range makes the worker send the file in one request.
//! The requests themselves are in `conn`.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use tokio::sync::mpsc::Sender;

mod conn;

use super::httplist::parse_line;
use super::{Body, ListBatch, Probe, RelPath, Resume, ScanUnit, Scope, Source, SourceObject};
use crate::error::{Error, Result};
use crate::reason::Reason;
use conn::{Conn, UrlRange};

/// Lines whose HEAD requests are in flight at once while listing.
const HEADS_IN_FLIGHT: usize = 16;

/// A list file's identity: its size and the MD5 of its bytes, to tell an edit after submit
/// (not its mtime: a `touch` or a copy without `-p` changes nothing that matters).
///
/// # Errors
/// When the file cannot be read.
pub fn list_stamp(list: &std::path::Path) -> std::io::Result<String> {
    use md5::{Digest, Md5};
    use std::io::Read;
    let mut file = std::fs::File::open(list)?;
    let (mut md5, mut size) = (Md5::new(), 0u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        size += n as u64;
    }
    let hex: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{size}:{hex}"))
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
        let conn = Conn::new()?;
        Ok(HttpSource {
            list,
            stamp,
            prefix_column,
            relative_column,
            unit_lines: unit_lines.max(1),
            conn: Arc::new(conn),
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

    /// A copy that reads the list file on the blocking pool.
    fn detached(&self) -> HttpSource {
        HttpSource {
            list: self.list.clone(),
            stamp: self.stamp.clone(),
            conn: self.conn.clone(),
            ..*self
        }
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
                    reason: Reason::BadListLine,
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
                reason: Reason::FileNotFound,
                locator: Some(line.url.clone()),
                message: format!("{} answers 404 Not Found", line.url),
            }),
            Err(f) => Err(Error::Listing {
                path: rel,
                reason: Reason::ReadError,
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

#[async_trait]
impl Source for HttpSource {
    fn ride_outages(&self, outage: std::sync::Arc<crate::outage::Outage>) {
        self.conn.retry.ride_outages(outage);
    }

    async fn check(&self) -> Result<()> {
        self.open_list()?;
        let list = self.list.clone();
        let now = tokio::task::spawn_blocking(move || list_stamp(&list))
            .await
            .map_err(|e| Error::Internal(format!("list reader failed: {e}")))?
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
        let this = self.detached();
        tokio::task::spawn_blocking(move || this.scan_units_blocking())
            .await
            .map_err(|e| Error::Internal(format!("list reader failed: {e}")))?
    }

    async fn list(&self, unit: &ScanUnit, resume: Resume, out: Sender<ListBatch>) -> Result<()> {
        // Entries, not lines: blank lines are none, so `seen` skips without a request.
        let (this, unit) = (self.detached(), unit.clone());
        let lines = crate::workdir::blocking(move || this.read_lines(&unit))
            .await?
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
        let range = UrlRange::new(self.conn.clone(), url, obj, offset, len);
        Ok(Body::new(Arc::new(range), len, what))
    }
}
