//! End to end for srcType=qiniu through console.sh, with the original's qiniu.job.cfg: only
//! srcDomain (the test server as the download domain), srcAccessKey, srcSecretKey, srcBucket
//! and the destination's settings are changed (and multipartUploadThreshold/PartSize=5m, as
//! in tests/remote_sources.rs, so a 11 MiB object goes in parts); srcPrefix stays `docs/`.
//! getObjectMetaMode is the template's `stat`, then `head`.
//!
//! The server is the Qiniu test server (tests/common/qiniu_server.rs); the rs and rsf API
//! hosts point at it through OSSIMPORT_QINIU_RS_HOST / OSSIMPORT_QINIU_RSF_HOST in the
//! environment of console.sh.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::qiniu_server::QiniuServer;
use common::*;

const LONG: Duration = Duration::from_secs(240);
const QAK: &str = "qiniu-ak-e2e";
const QSK: &str = "qiniu-sk-e2e-secret";
const QBUCKET: &str = "e2e-bucket";
/// More than one listing page (1,000 keys).
const MANY: usize = 1_050;
const LARGE: usize = 11 * MIB + 17;

/// A server holding the objects below `docs/` (relative path → bytes) and a few beside it.
fn server_with(objects: &BTreeMap<String, Vec<u8>>) -> QiniuServer {
    let server = QiniuServer::start(QAK, QSK, QBUCKET);
    for (rel, bytes) in objects {
        server.put(&format!("docs/{rel}"), bytes);
    }
    for key in ["other/o.txt", "docsX", "docs.bak/z.txt"] {
        server.put(key, b"not under srcPrefix");
    }
    server
}

fn tree() -> BTreeMap<String, Vec<u8>> {
    let mut objects: BTreeMap<String, Vec<u8>> = (0..MANY)
        .map(|i| (format!("many/f{i:04}.txt"), content(i, 1 + i % 50)))
        .collect();
    objects.insert("large.bin".into(), content(7_000, LARGE));
    objects.insert("中文/图 片.jpg".into(), content(7_001, 777));
    objects.insert("a+b&c.txt".into(), content(7_002, 33));
    objects.insert("deep/n2/n3/file.txt".into(), content(7_003, 14));
    objects.insert("zero".into(), Vec::new());
    objects
}

/// A package with qiniu.job.cfg pointing at `server`, keys `(ak, sk)`.
fn qiniu_package(server: &QiniuServer, dest: &Sandbox, sk: &str, mode: &str) -> Package {
    let overrides = [
        ("srcDomain", server.endpoint.as_str()),
        ("srcAccessKey", QAK),
        ("srcSecretKey", sk),
        ("srcBucket", QBUCKET),
        ("getObjectMetaMode", mode),
    ];
    let mut pkg = package("qiniu", dest, &overrides);
    for var in ["OSSIMPORT_QINIU_RS_HOST", "OSSIMPORT_QINIU_RSF_HOST"] {
        pkg.env.insert(var.into(), server.endpoint.clone());
    }
    pkg
}

fn migrate(mode: &str) {
    let objects = tree();
    let server = server_with(&objects);
    let dest = Sandbox::start();
    let pkg = qiniu_package(&server, &dest, QSK, mode);
    submit_and_start(&pkg);
    console_succeeds(&pkg, LONG);
    // destPrefix is the template's `docs/`.
    let want: BTreeMap<String, Vec<u8>> = objects
        .into_iter()
        .map(|(rel, bytes)| (format!("docs/{rel}"), bytes))
        .collect();
    assert_same(&dest.objects(), &want);
    assert_no_secret(&pkg, QSK);
    // The multipart object is looked at again after its parts: by stat or by HEAD.
    let (stats, heads) = server.looks();
    match mode {
        "stat" => assert!(stats > 0, "no stat request in stat mode"),
        _ => assert!(
            stats == 0 && heads > 1,
            "head mode: {stats} stats, {heads} HEADs"
        ),
    }
}

#[test]
fn qiniu_template_with_get_object_meta_mode_stat() {
    migrate("stat");
}

#[test]
fn qiniu_template_with_get_object_meta_mode_head() {
    migrate("head");
}

/// 573 (Qiniu's throttle answer) and 599 are retried with the shared backoff.
#[test]
fn qiniu_throttling_and_server_faults_are_retried() {
    let objects: BTreeMap<String, Vec<u8>> = (0..20)
        .map(|i| (format!("t/f{i}.txt"), content(i, 100 + i)))
        .collect();
    let server = server_with(&objects);
    let dest = Sandbox::start();
    let pkg = qiniu_package(&server, &dest, QSK, "stat");
    // The first requests (the start's check and the listing) meet them; the contract suite
    // covers faults during reads (check 8).
    server.throttle_next(4);
    server.fail_next(2);
    submit_and_start(&pkg);
    console_succeeds(&pkg, LONG);
    let want: BTreeMap<String, Vec<u8>> = objects
        .into_iter()
        .map(|(rel, bytes)| (format!("docs/{rel}"), bytes))
        .collect();
    assert_same(&dest.objects(), &want);
    let (throttled, failed) = server.faults_given();
    assert_eq!((throttled, failed), (4, 2), "573s and 599s given");
}

/// A wrong srcSecretKey aborts the job at start with one reason, and the key is nowhere.
#[test]
fn a_wrong_qiniu_secret_aborts_the_job_at_start() {
    let objects = BTreeMap::from([("a.txt".to_string(), b"a".to_vec())]);
    let server = server_with(&objects);
    let dest = Sandbox::start();
    let pkg = qiniu_package(&server, &dest, "not-the-secret-key", "stat");
    submit_and_start(&pkg);
    let stat = console_wait(&pkg, &["Succeed", "Failed", "Abort"], LONG);
    let reason = assert_aborted_at_start(&pkg, &dest, &stat, &["not-the-secret-key"]);
    assert!(
        reason.contains(QBUCKET) && reason.contains("srcAccessKey/srcSecretKey"),
        "{stat}"
    );
    assert_no_secret(&pkg, "not-the-secret-key");
}

/// Neither `secret` nor a download token in any file of the package but its conf/.
fn assert_no_secret(pkg: &Package, secret: &str) {
    for entry in walkdir::WalkDir::new(pkg.dir.path()).into_iter().flatten() {
        if entry.file_type().is_file() && !entry.path().starts_with(pkg.path("conf")) {
            let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
            assert!(
                !text.contains(secret) && !text.contains("token="),
                "{}",
                entry.path().display()
            );
        }
    }
}

/// The test server refuses what the docs say Qiniu refuses, so the tests above prove the
/// source signs correctly: a download signed with another key, an expired `e`, no token.
#[test]
fn the_qiniu_test_server_checks_download_tokens_and_ranges() {
    use ossimport::source::qiniu::sign::private_url;
    let server = server_with(&BTreeMap::from([("r.bin".to_string(), content(1, 1000))]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let get = |url: String, range: Option<&str>| {
        rt.block_on(async {
            let mut req = reqwest::Client::new().get(url);
            if let Some(r) = range {
                req = req.header("Range", r);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap().to_vec())
        })
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = &server.endpoint;
    let (status, body) = get(private_url(at, "docs/r.bin", now + 60, QAK, "wrong"), None);
    assert_eq!(
        (status, body.as_slice()),
        (401, &br#"{"error":"bad token"}"#[..])
    );
    let (status, body) = get(private_url(at, "docs/r.bin", now - 60, QAK, QSK), None);
    assert_eq!(
        (status, body.as_slice()),
        (401, &br#"{"error":"token out of date"}"#[..])
    );
    let (status, _) = get(format!("{at}/docs/r.bin"), None);
    assert_eq!(status, 401);
    let (status, body) = get(
        private_url(at, "docs/r.bin", now + 60, QAK, QSK),
        Some("bytes=10-19"),
    );
    assert_eq!((status, body), (206, content(1, 1000)[10..20].to_vec()));
    let (status, _) = get(private_url(at, "docs/none", now + 60, QAK, QSK), None);
    assert_eq!(status, 404);
}
