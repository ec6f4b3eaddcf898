//! The bytes that travel from a source to the destination: a [`Body`] is a byte range any
//! source can open again (a retried request re-reads it), with pacing (the bandwidth cap) and
//! hashing (MD5, CRC-64) as stream adapters that work the same for every source.

use std::fmt;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use md5::{Digest, Md5};

use crate::throttle::RateLimiter;

/// A stream of bytes, chunk by chunk.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// How a source read failed for good. Each is the same on every try, so no request is retried
/// for it; the worker decides the file's reason from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFaultKind {
    /// The source changed (size, version, mtime) after it was listed: SIZE_NOT_MATCH.
    Changed,
    /// The source was deleted after it was listed: FILE_NOT_FOUND.
    Deleted,
    /// The source refused the read (access denied, an archived object): READ_ERROR.
    Refused,
    /// The server ignored a Range header. No failure reason of its own: the worker sends the
    /// file in one request instead.
    RangeIgnored,
}

/// A source read that failed for good, carried as the inner error of the `io::Error` a body
/// stream yields. Its text is what users read in error.list; code looks at `kind` only, found
/// with [`ReadFault::find`] however deeply the HTTP client wrapped it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReadFault {
    pub kind: ReadFaultKind,
    pub message: String,
}

impl ReadFault {
    /// The fault as the `io::Error` of a body stream.
    pub fn io(kind: ReadFaultKind, message: impl Into<String>) -> io::Error {
        ReadFault::io_as(io::ErrorKind::Other, kind, message)
    }

    /// The same with the `io::ErrorKind` of the failure it stands for.
    pub fn io_as(
        io_kind: io::ErrorKind,
        kind: ReadFaultKind,
        message: impl Into<String>,
    ) -> io::Error {
        let message = message.into();
        io::Error::new(io_kind, ReadFault { kind, message })
    }

    /// What a source's refused read stands for, by its HTTP status, as the error of the body:
    /// gone (404), another version (412), shorter than listed (416), or refused for good
    /// (another 4xx that is not `transient`); `None` for the rest.
    pub fn of_status(status: u16, transient: bool, message: &str) -> Option<io::Error> {
        let (kind, why) = match status {
            404 => (
                ReadFaultKind::Deleted,
                " (FILE_NOT_FOUND: deleted after it was listed)",
            ),
            412 => (
                ReadFaultKind::Changed,
                " (SIZE_NOT_MATCH: rewritten after it was listed)",
            ),
            416 => (
                ReadFaultKind::Changed,
                " (SIZE_NOT_MATCH: shorter than when it was listed)",
            ),
            // Access denied, an archived object: the same on every try.
            400..500 if !transient => (
                ReadFaultKind::Refused,
                " (READ_ERROR: the source refused the read)",
            ),
            _ => return None,
        };
        Some(ReadFault::io(kind, format!("{message}{why}")))
    }

    /// The fault in `err` or anywhere in its chain of sources.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a ReadFault> {
        let mut next = Some(err);
        while let Some(e) = next {
            if let Some(fault) = e.downcast_ref::<ReadFault>() {
                return Some(fault);
            }
            // `io::Error::source` skips the error it wraps and goes on with that one's source,
            // so the wrapped error itself is looked at here.
            let wrapped = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref);
            if let Some(fault) = wrapped.and_then(|w| ReadFault::find(w)) {
                return Some(fault);
            }
            next = e.source();
        }
        None
    }
}

/// Opens the same bytes again, for each attempt of a request.
pub trait Reopen: Send + Sync {
    fn open(&self) -> BoxFuture<'static, io::Result<ByteStream>>;
}

/// A byte range of a source object, ready to stream without holding it in memory.
#[derive(Clone)]
pub struct Body {
    origin: Arc<dyn Reopen>,
    len: u64,
    /// What the bytes are, for messages (`photos/a.jpg bytes 0-99`).
    what: String,
    /// The process-wide bandwidth cap every chunk passes through.
    pace: Option<Arc<RateLimiter>>,
    /// Receives the checksums of the range once it has been read to the end.
    digests: Option<Arc<DigestSlot>>,
}

impl Body {
    pub fn new(origin: Arc<dyn Reopen>, len: u64, what: impl Into<String>) -> Body {
        Body {
            origin,
            len,
            what: what.into(),
            pace: None,
            digests: None,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same bytes, sent no faster than `limiter` allows.
    pub fn paced(mut self, limiter: Option<Arc<RateLimiter>>) -> Body {
        self.pace = limiter;
        self
    }

    /// The same bytes, with MD5 and CRC-64 computed while they are sent.
    pub fn hashed(mut self, slot: Arc<DigestSlot>) -> Body {
        self.digests = Some(slot);
        self
    }

    /// One pass over the bytes: opened at the first poll, exactly `len` bytes long (a source
    /// that ends early changed after it was listed: SIZE_NOT_MATCH), paced and hashed.
    pub fn stream(&self) -> ByteStream {
        // An empty body is never read, but its checksums are known (and wanted: MD5 metadata).
        if self.len == 0
            && let Some(slot) = &self.digests
        {
            slot.set(Hashers::new().finish());
        }
        let state = Pass {
            body: self.clone(),
            inner: None,
            remaining: self.len,
            hashers: self.digests.as_ref().map(|_| Hashers::new()),
        };
        stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match state.next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(state))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Body({}, {} bytes)", self.what, self.len)
    }
}

/// MD5 and CRC-64/XZ side by side, as every body and every audit read computes them.
pub struct Hashers {
    md5: Md5,
    crc: crc_fast::Digest,
}

impl Hashers {
    pub fn new() -> Hashers {
        Hashers {
            md5: Md5::new(),
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Xz),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        self.crc.update(bytes);
    }

    pub fn finish(self) -> Digests {
        Digests {
            md5: self.md5.finalize().into(),
            crc64: self.crc.finalize(),
        }
    }
}

impl Default for Hashers {
    fn default() -> Self {
        Hashers::new()
    }
}

struct Pass {
    body: Body,
    inner: Option<ByteStream>,
    remaining: u64,
    hashers: Option<Hashers>,
}

impl Pass {
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        if self.inner.is_none() {
            self.inner = Some(self.body.origin.open().await?);
        }
        let Some(inner) = self.inner.as_mut() else {
            return Ok(None);
        };
        let mut chunk = match inner.next().await {
            Some(chunk) => chunk?,
            None => {
                return Err(ReadFault::io_as(
                    io::ErrorKind::UnexpectedEof,
                    ReadFaultKind::Changed,
                    format!(
                        "{} ended {} bytes early: it changed after it was listed (SIZE_NOT_MATCH)",
                        self.body.what, self.remaining
                    ),
                ));
            }
        };
        // A source that sends more than asked (a server that ignored Range) must not make
        // the object longer than its listing: the destination was promised `len` bytes.
        if chunk.len() as u64 > self.remaining {
            chunk.truncate(self.remaining as usize);
        }
        if let Some(limiter) = &self.body.pace {
            limiter.take(chunk.len()).await;
        }
        if let Some(h) = self.hashers.as_mut() {
            h.update(&chunk);
        }
        self.remaining -= chunk.len() as u64;
        // The HTTP client stops polling once Content-Length bytes are out, so the digest is
        // final with the last chunk, not at a later end-of-stream poll.
        if self.remaining == 0
            && let (Some(h), Some(slot)) = (self.hashers.take(), &self.body.digests)
        {
            slot.set(h.finish());
        }
        Ok(Some(chunk))
    }
}

/// True for a plain MD5 in hex (a single-part S3 ETag), not `<hex>-N`.
/// Bytes as lowercase hex (digests, signatures).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn is_md5_hex(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The checksums of a streamed body, computed while it is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digests {
    pub md5: [u8; 16],
    /// CRC-64/XZ (what OSS calls crc64ecma).
    pub crc64: u64,
}

/// Where a streamed body leaves its checksums: set only by a read that reached the end, so a
/// retried request (which reads again) leaves those of the bytes actually sent.
#[derive(Debug, Default)]
pub struct DigestSlot(std::sync::Mutex<Option<Digests>>);

impl DigestSlot {
    pub fn set(&self, digests: Digests) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(digests);
    }

    pub fn get(&self) -> Option<Digests> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An in-memory origin, for tests and tiny bodies.
pub struct Memory(pub Bytes);

impl Reopen for Memory {
    fn open(&self) -> BoxFuture<'static, io::Result<ByteStream>> {
        // Two chunks, so adapters see a chunk boundary.
        let data = self.0.clone();
        let mid = data.len() / 2;
        let chunks = vec![Ok(data.slice(..mid)), Ok(data.slice(mid..))];
        Box::pin(async move { Ok(stream::iter(chunks).boxed()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(body: &Body) -> io::Result<Vec<u8>> {
        let mut s = body.stream();
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    fn memory(data: &[u8], len: u64) -> Body {
        Body::new(Arc::new(Memory(Bytes::copy_from_slice(data))), len, "mem")
    }

    #[tokio::test]
    async fn hashes_what_it_streams_and_can_be_read_again() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let slot = Arc::new(DigestSlot::default());
        let body = memory(&data, data.len() as u64).hashed(slot.clone());
        assert_eq!(read_all(&body).await.unwrap(), data);
        assert_eq!(read_all(&body).await.unwrap(), data);
        let d = slot.get().unwrap();
        assert_eq!(d.md5, <[u8; 16]>::from(Md5::digest(&data)));
        assert_eq!(
            d.crc64,
            crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, &data)
        );
    }

    #[tokio::test]
    async fn an_empty_body_has_the_checksums_of_nothing() {
        let slot = Arc::new(DigestSlot::default());
        let body = memory(b"", 0).hashed(slot.clone());
        assert!(read_all(&body).await.unwrap().is_empty());
        let d = slot.get().expect("digests of an empty body");
        assert_eq!(d.md5, <[u8; 16]>::from(Md5::digest(b"")));
        assert_eq!(d.crc64, 0);
    }

    #[tokio::test]
    async fn a_source_shorter_than_listed_is_size_not_match() {
        let err = read_all(&memory(b"short", 10)).await.unwrap_err();
        assert!(err.to_string().contains("SIZE_NOT_MATCH"), "{err}");
        assert_eq!(
            ReadFault::find(&err).map(|f| f.kind),
            Some(ReadFaultKind::Changed)
        );
    }

    /// An error that hides another one behind `source()`, as hyper's and the SDK's do.
    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Wrapper(#[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn a_read_fault_is_found_however_deeply_it_is_wrapped() {
        let fault = ReadFault::io(ReadFaultKind::Deleted, "`f` was deleted (FILE_NOT_FOUND)");
        // The text stays the message users read.
        assert_eq!(fault.to_string(), "`f` was deleted (FILE_NOT_FOUND)");
        let wrapped = Wrapper(Box::new(Wrapper(Box::new(io::Error::other(fault)))));
        let found = ReadFault::find(&wrapped).expect("the fault behind two wrappers");
        assert_eq!(found.kind, ReadFaultKind::Deleted);
        let plain = Wrapper(Box::new(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert_eq!(ReadFault::find(&plain), None);
    }

    #[tokio::test]
    async fn a_source_longer_than_asked_is_cut_to_the_listed_length() {
        assert_eq!(read_all(&memory(b"0123456789", 4)).await.unwrap(), b"0123");
    }
}
