//! The test proxy itself: transparent forwarding (SigV4 still verifies through it), request
//! recording, and injected 503s and connection resets.

mod common;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use common::proxy::{Faults, Proxy, client_no_retry};
use common::*;

/// Deterministic bytes.
fn content(len: usize) -> Vec<u8> {
    let mut x = 0x1234_5678_9abc_def1_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Whether `key` exists on the sandbox, asked directly (not through the proxy).
fn exists_on_sandbox(sandbox: &Sandbox, key: &str) -> bool {
    let client = sandbox.client();
    rt().block_on(async {
        match client.head_object().bucket(BUCKET).key(key).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => false,
            Err(e) => panic!("head object on sandbox: {e:?}"),
        }
    })
}

#[test]
fn forwards_transparently_and_records_requests() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    assert!(proxy.endpoint.starts_with("http://127.0.0.1:"));
    let client = client_no_retry(&proxy.endpoint, AK, SK);
    let body = content(3 << 20);
    let key = "dir/with space+plus.bin";
    let got = rt().block_on(async {
        client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .metadata("origin", "proxy-selftest")
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .expect("put through the proxy");
        let out = client
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .expect("get through the proxy");
        out.body.collect().await.unwrap().into_bytes().to_vec()
    });
    assert!(got == body, "object read back through the proxy differs");
    assert_eq!(sandbox.objects().get(key), Some(&body));

    let seen = proxy.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let put = &seen[0];
    assert_eq!(put.method, "PUT");
    assert_eq!(put.path, "/test-bucket/dir/with%20space%2Bplus.bin");
    assert_eq!(put.query, "x-id=PutObject");
    assert_eq!(put.query_param("x-id").as_deref(), Some("PutObject"));
    assert_eq!(put.status, 200);
    assert_eq!(put.body_len, 3 << 20);
    assert_eq!(put.header("x-amz-server-side-encryption"), Some("AES256"));
    assert_eq!(put.header("X-Amz-Meta-Origin"), Some("proxy-selftest"));
    assert!(put.header("authorization").is_some());
    assert_eq!(
        put.header("host"),
        Some(proxy.endpoint.strip_prefix("http://").unwrap())
    );
    assert!(
        put.headers
            .iter()
            .all(|(k, _)| *k == k.to_ascii_lowercase())
    );
    let get = &seen[1];
    assert_eq!((get.method.as_str(), get.status), ("GET", 200));
    assert_eq!(get.body_len, 0);
}

#[test]
fn injects_503_slowdown_without_forwarding_then_recovers() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(
        &sandbox.endpoint,
        Faults {
            unavailable_per_mille: 1000,
            ..Faults::default()
        },
    );
    let client = client_no_retry(&proxy.endpoint, AK, SK);
    let put = |key: &'static str| {
        let client = client.clone();
        rt().block_on(async move {
            client
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(ByteStream::from(content(1000)))
                .send()
                .await
                .map_err(Box::new)
        })
    };
    let err = put("slow.bin").expect_err("503 with retries off");
    let SdkError::ServiceError(service) = &*err else {
        panic!("expected a service error, got {err:?}");
    };
    assert_eq!(service.raw().status().as_u16(), 503);
    assert_eq!(service.err().meta().code(), Some("SlowDown"));
    assert_eq!(service.err().meta().message(), Some("injected"));
    assert!(!exists_on_sandbox(&sandbox, "slow.bin"));

    proxy.set_faults(Faults::default());
    put("fine.bin").expect("put once faults are off");
    assert!(exists_on_sandbox(&sandbox, "fine.bin"));

    let seen = proxy.requests();
    let statuses: Vec<(&str, u16, u64)> = seen
        .iter()
        .map(|s| (s.path.as_str(), s.status, s.body_len))
        .collect();
    assert_eq!(
        statuses,
        [
            ("/test-bucket/slow.bin", 503, 1000),
            ("/test-bucket/fine.bin", 200, 1000)
        ]
    );
}

#[test]
fn injects_connection_resets_without_forwarding() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(
        &sandbox.endpoint,
        Faults {
            reset_per_mille: 1000,
            seed: 7,
            ..Faults::default()
        },
    );
    let client = client_no_retry(&proxy.endpoint, AK, SK);
    let result = rt().block_on(async {
        client
            .put_object()
            .bucket(BUCKET)
            .key("reset.bin")
            .body(ByteStream::from(content(3 << 20)))
            .send()
            .await
    });
    let err = result.expect_err("reset with retries off");
    assert!(
        matches!(&err, SdkError::DispatchFailure(f) if f.is_io()),
        "expected a dispatch (IO) failure, got {err:?}"
    );
    assert!(!exists_on_sandbox(&sandbox, "reset.bin"));
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!((seen[0].method.as_str(), seen[0].status), ("PUT", 0));
    assert_eq!(seen[0].query_param("x-id").as_deref(), Some("PutObject"));
}

#[test]
fn seen_helpers_decode() {
    let seen = common::proxy::Seen {
        method: "PUT".into(),
        path: "/b/k".into(),
        query: "partNumber=3&uploadId=a%2Fb%3D%3D&uploads".into(),
        headers: vec![("content-length".into(), "5".into())],
        status: 200,
        body_len: 5,
    };
    assert_eq!(seen.query_param("partNumber").as_deref(), Some("3"));
    assert_eq!(seen.query_param("uploadId").as_deref(), Some("a/b=="));
    assert_eq!(seen.query_param("uploads").as_deref(), Some(""));
    assert_eq!(seen.query_param("nope"), None);
    assert_eq!(seen.header("Content-Length"), Some("5"));
}

#[test]
fn fault_sequence_is_deterministic_and_retries_get_through() {
    let sandbox = Sandbox::start();
    let faults = Faults {
        reset_per_mille: 250,
        unavailable_per_mille: 250,
        seed: 42,
        ..Faults::default()
    };
    let run = || {
        let proxy = Proxy::start(&sandbox.endpoint, faults);
        let client = client_no_retry(&proxy.endpoint, AK, SK);
        rt().block_on(async {
            for i in 0..20 {
                let _ = client
                    .put_object()
                    .bucket(BUCKET)
                    .key(format!("seq/{i}"))
                    .body(ByteStream::from(content(100 + i)))
                    .send()
                    .await;
            }
        });
        proxy
            .requests()
            .iter()
            .map(|s| (s.path.clone(), s.status))
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run(), "same seed, same faults");
    assert_eq!(first.len(), 20);
    let count = |status: u16| first.iter().filter(|(_, s)| *s == status).count();
    assert!(
        count(0) > 0 && count(503) > 0 && count(200) > 0,
        "{first:?}"
    );
    assert_eq!(count(0) + count(503) + count(200), 20, "{first:?}");

    // With the SDK's retries on, every upload gets through the faults in the end.
    let proxy = Proxy::start(&sandbox.endpoint, faults);
    let client = common::proxy::client_with_attempts(&proxy.endpoint, AK, SK, 20);
    rt().block_on(async {
        for i in 0..10 {
            client
                .put_object()
                .bucket(BUCKET)
                .key(format!("retried/{i}"))
                .body(ByteStream::from(content(1 << 16)))
                .send()
                .await
                .unwrap_or_else(|e| panic!("retried/{i}: {e:?}"));
        }
    });
    for i in 0..10 {
        assert!(exists_on_sandbox(&sandbox, &format!("retried/{i}")));
    }
    assert!(proxy.requests().len() > 10);
}
