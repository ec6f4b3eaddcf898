//! A [`Body`] as the SDK's request body: streamed while it is sent, with its exact length,
//! and opened again from its source when the SDK retries the request.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use futures::StreamExt;
use http_body::{Frame, SizeHint};

use crate::payload::{self, Body};

/// The body as the SDK wants it, with its exact length.
pub fn byte_stream(body: Body) -> (ByteStream, i64) {
    let len = body.len();
    let make = move || {
        SdkBody::from_body_1_x(StreamBody {
            stream: Mutex::new(body.stream()),
            len,
        })
    };
    (ByteStream::new(SdkBody::retryable(make)), len as i64)
}

struct StreamBody {
    // Mutex only to make the stream Sync, as the SDK requires; `get_mut` never locks.
    stream: Mutex<payload::ByteStream>,
    len: u64,
}

impl http_body::Body for StreamBody {
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
