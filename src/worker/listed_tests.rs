//! The listing audit against the embedded sandbox: it finds each upload however many other
//! keys lie around it, and fails the missing, the short and the replaced.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::*;
use crate::dest::PutOptions;
use crate::dest::s3::tests::sandbox;
use crate::payload::{Body, Memory};

fn body(bytes: &[u8]) -> Body {
    let len = bytes.len() as u64;
    Body::new(Arc::new(Memory(Bytes::copy_from_slice(bytes))), len, "mem")
}

fn uploaded(key: &str, size: u64, etag: &str) -> Uploaded {
    Uploaded {
        key: key.into(),
        path: RelPath(key.as_bytes().to_vec()),
        size,
        started: Some(1_700_000_000),
        etag: etag.into(),
        detail: format!("key={key}"),
    }
}

/// `path → (result words, reason, detail)`.
fn outcomes(records: &[FileRecord]) -> Vec<(String, Option<Reason>, String)> {
    records
        .iter()
        .map(|r| (r.path.to_string(), r.reason, r.detail.clone()))
        .collect()
}

#[tokio::test]
async fn finds_uploads_among_1500_other_keys_and_fails_missing_short_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let dest = sandbox(dir.path()).await;
    let opts = PutOptions::default();
    // 1,500 keys around ours: more than one page lies between the first and the last.
    let others: Vec<String> = (0..1500).map(|i| format!("p/a{i:04}")).collect();
    futures::stream::iter(&others)
        .for_each_concurrent(16, |k| {
            let dest = &dest;
            let opts = &opts;
            async move {
                dest.put(k, body(b"x"), opts).await.unwrap();
            }
        })
        .await;
    let ok_etag = dest.put("p/a0700x", body(b"hello"), &opts).await.unwrap();
    let short_etag = dest.put("p/short", body(b"hel"), &opts).await.unwrap();
    let replaced = dest.put("p/b", body(b"later"), &opts).await.unwrap();
    assert_ne!(replaced, ok_etag);

    let batch = vec![
        uploaded("p/short", 5, &short_etag),
        uploaded("p/a0700x", 5, &ok_etag),
        uploaded("p/a1499", 1, ""),
        uploaded("p/gone", 4, "\"abc\""),
        // The listing shows another object there than the upload made.
        uploaded("p/b", 5, &ok_etag),
        uploaded("p/a0000", 1, ""),
    ];
    let got = outcomes(&audit(&dest, AuditMode::General, batch).await);
    let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["p/a0000", "p/a0700x", "p/a1499", "p/b", "p/gone", "p/short"]
    );
    assert_eq!(got[0].1, None, "{:?}", got[0]);
    assert_eq!(got[1].1, None, "{:?}", got[1]);
    assert!(
        got[1]
            .2
            .starts_with("key=p/a0700x audit=general(listed: size,last-modified"),
        "{:?}",
        got[1]
    );
    assert_eq!(got[2].1, None, "{:?}", got[2]);
    assert_eq!(got[4].1, Some(Reason::Missing), "{:?}", got[4]);
    assert_eq!(got[5].1, Some(Reason::SizeNotMatch), "{:?}", got[5]);
    assert!(got[5].2.contains("source 5 bytes, destination 3 bytes"));
    // s3s-fs lists no ETags, so "replaced" shows only where the store lists them; the
    // unit test of `judge` covers that case.
    assert!(matches!(got[3].1, None | Some(Reason::ChecksumNotMatch)));

    // 1,500 keys sort before `p/b` and after where its listing starts (`p/`): the pages
    // move on from each other's last key.
    let alone = audit(&dest, AuditMode::General, vec![uploaded("p/b", 5, "")]).await;
    assert_eq!(alone[0].reason, None, "{:?}", alone[0]);

    let simple = audit(&dest, AuditMode::Simple, vec![uploaded("p/a0001", 1, "")]).await;
    assert!(
        simple[0]
            .detail
            .ends_with("audit=simple(listed: size; content not verified)"),
        "{:?}",
        simple[0]
    );
}

#[test]
fn judge_fails_an_object_with_another_etag_or_older_than_its_upload() {
    let up = uploaded("k", 3, "\"0CC175B9C0F1B6A831C399E269772661\"");
    let listed = |etag: Option<&str>, modified: i64| ListedObject {
        key: "k".into(),
        size: 3,
        last_modified: Some(modified),
        etag: etag.map(str::to_string),
    };
    let started = up.started.unwrap();
    let same = listed(Some("\"0cc175b9c0f1b6a831c399e269772661\""), started);
    assert!(
        judge(AuditMode::General, &up, Some(&same))
            .unwrap()
            .contains("etag of the upload")
    );
    let other = listed(Some("\"92eb5ffee6ae2fec3ad71c777531578f\""), started);
    let e = judge(AuditMode::General, &up, Some(&other)).unwrap_err();
    assert_eq!(e.reason, Reason::ChecksumNotMatch, "{e:?}");
    // Within the clock skew a signature allows, an earlier time is not a stale object.
    let skewed = listed(None, started - 600);
    assert!(judge(AuditMode::General, &up, Some(&skewed)).is_ok());
    let stale = listed(None, started - 3600);
    let e = judge(AuditMode::General, &up, Some(&stale)).unwrap_err();
    assert_eq!(e.reason, Reason::MtimeNotMatch, "{e:?}");
    // Simple mode compares the size only; a multipart object carries its upload's creation.
    assert!(judge(AuditMode::Simple, &up, Some(&stale)).is_ok());
    let multipart = Uploaded {
        started: None,
        ..up.clone()
    };
    assert!(judge(AuditMode::General, &multipart, Some(&stale)).is_ok());
}

#[test]
fn listing_bounds_stay_on_character_boundaries() {
    assert_eq!(common_prefix("d1/f0012", "d1/f0099"), "d1/f00");
    assert_eq!(common_prefix("a/é1", "a/è2"), "a/");
    assert_eq!(common_prefix("same", "same"), "same");
    // XML cannot carry these: such keys are audited with a HEAD.
    assert!(listable("a b/é+%.txt"));
    assert!(!listable("a\rb") && !listable("x\u{1}") && !listable("y\u{FFFF}"));
    assert_eq!(just_before("d/1"), "d/0\u{10FFFF}");
    assert!(just_before("d/1").as_str() > "d/0/zzzz" && just_before("d/1").as_str() < "d/1");
    assert_eq!(just_before("a/\u{E000}"), "a/");
    assert_eq!(just_before("a/\0"), "a/");
    assert_eq!(just_before(""), "");
}
