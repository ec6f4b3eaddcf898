//! How [`S3Destination`] classifies a request whose body failed, against the embedded sandbox:
//! a source that changed under the request fails the same on every try, a reset does not.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};

use super::*;
use crate::payload::{ByteStream, Memory, ReadFaultKind, Reopen};
use crate::sandbox::{SandboxOptions, serve};

/// A destination on the embedded sandbox (bucket `bkt`), its data under `root`.
pub(crate) async fn sandbox(root: &std::path::Path) -> S3Destination {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = SandboxOptions {
        root: root.to_path_buf(),
        host: "127.0.0.1".into(),
        port: 0,
        buckets: vec!["bkt".into()],
        credentials: Some(("ak".into(), "sk".into())),
        stop_file: None,
        request_counts: None,
    };
    tokio::spawn(serve(opts, move |addr| {
        let _ = tx.send(addr);
    }));
    let addr = rx.await.expect("the sandbox is listening");
    S3Destination::new(&S3Settings {
        endpoint: &format!("http://{addr}"),
        bucket: "bkt",
        access_key: "ak",
        secret_key: "sk",
    })
}

/// A source that sends a few bytes, then fails as a dropped connection does.
struct Reset;

impl Reopen for Reset {
    fn open(&self) -> BoxFuture<'static, io::Result<ByteStream>> {
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "source connection reset");
        let chunks = vec![Ok(Bytes::from_static(b"some")), Err(reset)];
        Box::pin(async move { Ok(stream::iter(chunks).boxed()) })
    }
}

#[tokio::test]
async fn a_body_that_changed_is_permanent_and_a_reset_body_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let dest = sandbox(dir.path()).await;
    let opts = PutOptions::default();

    // Listed with 1000 bytes, 5 now: SIZE_NOT_MATCH, whatever the number of tries.
    let short = Body::new(Arc::new(Memory(Bytes::from_static(b"short"))), 1000, "f");
    let e = dest.put("f", short, &opts).await.unwrap_err();
    assert_eq!(e.read_fault, Some(ReadFaultKind::Changed), "{e}");
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("SIZE_NOT_MATCH"), "{e}");

    let reset = Body::new(Arc::new(Reset), 1000, "g");
    let e = dest.put("g", reset, &opts).await.unwrap_err();
    assert_eq!(e.read_fault, None, "{e}");
    assert!(e.transient, "{e}");
}
