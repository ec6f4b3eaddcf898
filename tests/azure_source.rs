//! srcType=azure end to end through console.sh, the job file the original's blob.job.cfg with
//! only srcDomain, srcAccessKey, srcSecretKey, srcBucket and the destination changed (and
//! multipartUploadThreshold/PartSize=5m, as in tests/remote_sources.rs, so an 11 MiB blob goes
//! multipart). The source is Azurite (tests/common/servers.rs) with its development account,
//! addressed path style by a full URL in srcDomain; every blob is read back from the
//! destination sandbox and compared byte for byte.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::azure::BlobClient;
use common::servers::{AZURITE_ACCOUNT, AZURITE_KEY, Azurite};
use common::*;

const LONG: Duration = Duration::from_secs(300);
/// 11 MiB + 17: three parts of 5 MiB.
const LARGE: usize = 11 * MIB + 17;
/// More blobs than one List Blobs page (5,000, Azure's maximum and the source's page).
const MANY: usize = 5_001;

/// Puts `blobs` (name → bytes) into a new container, 32 at a time.
fn put_blobs(azurite: &Azurite, container: &str, blobs: &[(String, Vec<u8>)]) {
    let client = BlobClient::new(&azurite.endpoint);
    rt().block_on(async {
        use futures::StreamExt;
        client.create_container(container).await;
        futures::stream::iter(blobs)
            .for_each_concurrent(32, |(name, bytes)| {
                let client = client.clone();
                async move { client.put(container, name, bytes).await }
            })
            .await;
    });
}

/// Every object of the destination bucket, 16 GETs at once (thousands, one by one, take
/// minutes in a debug build).
fn read_dest(dest: &Sandbox) -> BTreeMap<String, Vec<u8>> {
    use futures::StreamExt;
    let client = common::client(&dest.endpoint, AK, SK);
    rt().block_on(async {
        let pages = client
            .list_objects_v2()
            .bucket(BUCKET)
            .into_paginator()
            .send();
        let pages: Vec<_> = pages.try_collect().await.expect("list the destination");
        let keys = pages
            .iter()
            .flat_map(|p| p.contents())
            .filter_map(|o| o.key());
        futures::stream::iter(keys.map(str::to_string))
            .map(|key| {
                let client = client.clone();
                async move {
                    let got = client.get_object().bucket(BUCKET).key(&key).send().await;
                    let body = got.expect("get object").body.collect().await.unwrap();
                    (key, body.into_bytes().to_vec())
                }
            })
            .buffer_unordered(16)
            .collect()
            .await
    })
}

/// The job's stat once it stopped, asserted to be an abort before any task, with one reason,
/// none of `secrets` in it or in the package outside conf/.
fn aborted_at_start(pkg: &Package, dest: &Sandbox, secrets: &[&str]) -> String {
    let stat = console_wait(pkg, &["Succeed", "Failed", "Abort"], LONG);
    assert_aborted_at_start(pkg, dest, &stat, secrets)
}

#[test]
fn azure_from_azurite_with_the_blob_template() {
    let azurite = Azurite::start();
    let src_prefix = template_value("blob", "srcPrefix");
    assert_eq!(src_prefix, "docs/");
    let tree: Vec<(&str, Vec<u8>)> = vec![
        ("top.txt", b"top level".to_vec()),
        ("a/b/c/deep.txt", content(1, 3000)),
        ("with space/file name.txt", content(2, 10)),
        ("unicode/数据 ünïcødé.md", content(3, 77)),
        ("odd/plus+and&amp.txt", content(4, 123)),
        ("empty.bin", Vec::new()),
        ("big/large.bin", content(6, LARGE)),
    ];
    let mut blobs: Vec<(String, Vec<u8>)> = tree
        .iter()
        .map(|(rel, b)| (format!("{src_prefix}{rel}"), b.clone()))
        .collect();
    blobs.extend((0..MANY).map(|i| (format!("{src_prefix}many/f{i:05}"), content(i, i % 13))));
    // Outside srcPrefix: the root, a sibling, a name sharing its text without the `/`.
    let outside = [
        "root.txt",
        "other/sibling.txt",
        "docs.txt",
        "docsx/lookalike.txt",
    ];
    blobs.extend(outside.iter().map(|k| (k.to_string(), content(9, 64))));
    let started = std::time::Instant::now();
    put_blobs(&azurite, "migrated", &blobs);
    eprintln!("{} blobs put in {:?}", blobs.len(), started.elapsed());

    let dest = Sandbox::start();
    let dest_prefix = "into/azure/";
    let overrides = [
        ("srcDomain", azurite.endpoint.as_str()),
        ("srcAccessKey", AZURITE_ACCOUNT),
        ("srcSecretKey", AZURITE_KEY),
        ("srcBucket", "migrated"),
        ("destPrefix", dest_prefix),
    ];
    let pkg = package("blob", &dest, &overrides);
    submit_and_start(&pkg);
    console_succeeds(&pkg, LONG);
    eprintln!("migrated in {:?}", started.elapsed());
    assert_eq!(error_lists(&pkg), "");

    let want: BTreeMap<String, Vec<u8>> = blobs
        .iter()
        .filter_map(|(name, bytes)| {
            let rel = name.strip_prefix(&src_prefix)?;
            Some((format!("{dest_prefix}{rel}"), bytes.clone()))
        })
        .collect();
    assert_eq!(want.len(), tree.len() + MANY);
    assert_same(&read_dest(&dest), &want);
    let large = head(&dest, &format!("{dest_prefix}big/large.bin"));
    assert!(
        large.e_tag().unwrap().ends_with("-3\""),
        "not multipart: {large:?}"
    );
    let audit = audit_records(&pkg);
    assert_eq!(audit.len(), tree.len() + MANY);
    let bad: Vec<_> = audit
        .iter()
        .filter(|(_, r)| r.len() != 1 || r[0].0 != "OK")
        .collect();
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(5)]);
}

/// A wrong account key (valid base64) aborts at start with one reason naming the container
/// and srcSecretKey; neither key appears in any file the job wrote, nor in the stat.
#[test]
fn a_wrong_account_key_aborts_the_job_at_start() {
    let azurite = Azurite::start();
    put_blobs(&azurite, "guarded", &[("docs/a.txt".into(), b"a".to_vec())]);
    let wrong = "bm90LXRoZS1hY2NvdW50LWtleS1ub3QtdGhlLWFjY291bnQta2V5LW5vdC10aGUta2V5";
    let dest = Sandbox::start();
    let overrides = [
        ("srcDomain", azurite.endpoint.as_str()),
        ("srcAccessKey", AZURITE_ACCOUNT),
        ("srcSecretKey", wrong),
        ("srcBucket", "guarded"),
    ];
    let pkg = package("blob", &dest, &overrides);
    submit_and_start(&pkg);
    let reason = aborted_at_start(&pkg, &dest, &[wrong, AZURITE_KEY]);
    assert!(
        reason.contains("guarded") && reason.contains("srcSecretKey"),
        "{reason}"
    );
}

#[test]
fn a_missing_container_aborts_the_job_at_start() {
    let azurite = Azurite::start();
    let dest = Sandbox::start();
    let overrides = [
        ("srcDomain", azurite.endpoint.as_str()),
        ("srcAccessKey", AZURITE_ACCOUNT),
        ("srcSecretKey", AZURITE_KEY),
        ("srcBucket", "no-such-container"),
    ];
    let pkg = package("blob", &dest, &overrides);
    submit_and_start(&pkg);
    let reason = aborted_at_start(&pkg, &dest, &[]);
    assert!(
        reason.contains("no-such-container") && reason.contains("srcBucket"),
        "{reason}"
    );
}
