//! A file range as an HTTP request body: read in chunks while it is sent (never whole in
//! memory), paced by the bandwidth cap, hashed on the way, and rebuilt from the file when the
//! SDK retries the request.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use http_body::{Frame, SizeHint};
use md5::{Digest, Md5};

use crate::source::Digests;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::source::Body;

/// Bytes read from the file per chunk.
const CHUNK: usize = 256 * 1024;

/// The body as the SDK wants it, with its exact length.
pub fn byte_stream(body: Body) -> (ByteStream, i64) {
    let len = body.len();
    let make = move || SdkBody::from_body_1_x(FileBody::new(body.clone()));
    (ByteStream::new(SdkBody::retryable(make)), len as i64)
}

struct FileBody {
    // Mutex only to make the stream Sync, as the SDK requires; `get_mut` never locks.
    stream: Mutex<BoxStream<'static, io::Result<Bytes>>>,
    len: u64,
}

struct ReadState {
    body: Body,
    file: Option<tokio::fs::File>,
    remaining: u64,
    hashers: Option<(Md5, crc_fast::Digest)>,
}

impl FileBody {
    fn new(body: Body) -> FileBody {
        let len = body.len();
        let Body::File { digests, .. } = &body;
        let state = ReadState {
            hashers: digests.as_ref().map(|_| {
                (
                    Md5::new(),
                    crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Xz),
                )
            }),
            remaining: len,
            file: None,
            body,
        };
        let stream = stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match next_chunk(&mut state).await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(state))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
        FileBody {
            stream: Mutex::new(stream.boxed()),
            len,
        }
    }
}

async fn next_chunk(s: &mut ReadState) -> io::Result<Option<Bytes>> {
    let Body::File {
        path,
        offset,
        pace,
        digests,
        ..
    } = &s.body;
    if s.remaining == 0 {
        return Ok(None);
    }
    if s.file.is_none() {
        let mut file = tokio::fs::File::open(path).await?;
        file.seek(io::SeekFrom::Start(*offset)).await?;
        s.file = Some(file);
    }
    let want = CHUNK.min(s.remaining as usize);
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        let Some(file) = s.file.as_mut() else { break };
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "`{}` ended early: it changed while it was read (SIZE_NOT_MATCH)",
                    path.display()
                ),
            ));
        }
        filled += n;
    }
    if let Some(limiter) = pace {
        limiter.take(filled).await;
    }
    if let Some((md5, crc)) = s.hashers.as_mut() {
        md5.update(&buf);
        crc.update(&buf);
    }
    s.remaining -= filled as u64;
    // The HTTP client stops polling once Content-Length bytes are out, so the digest is
    // final with the last chunk, not at a later end-of-stream poll.
    if s.remaining == 0
        && let (Some((md5_hasher, crc)), Some(slot)) = (s.hashers.take(), digests)
    {
        slot.set(Digests {
            md5: md5_hasher.finalize().into(),
            crc64: crc.finalize(),
        });
    }
    Ok(Some(Bytes::from(buf)))
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let stream = self
            .get_mut()
            .stream
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        stream
            .poll_next_unpin(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::source::DigestSlot;

    async fn read_all(body: Body) -> io::Result<Vec<u8>> {
        let mut b = FileBody::new(body);
        let mut out = Vec::new();
        while let Some(chunk) = b.stream.get_mut().unwrap().next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn streams_the_range_and_hashes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let slot = Arc::new(DigestSlot::default());
        let body = Body::file(path.clone(), 1000, 600_000).hashed(slot.clone());
        let got = read_all(body).await.unwrap();
        assert_eq!(got, &data[1000..601_000]);
        let d = slot.get().unwrap();
        assert_eq!(d.md5, <[u8; 16]>::from(Md5::digest(&data[1000..601_000])));
        assert_eq!(
            d.crc64,
            crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, &data[1000..601_000])
        );
    }

    #[tokio::test]
    async fn a_file_shorter_than_listed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"short").unwrap();
        let err = read_all(Body::file(path, 0, 10)).await.unwrap_err();
        assert!(err.to_string().contains("SIZE_NOT_MATCH"), "{err}");
    }
}
