//! End to end for srcType=youpai through console.sh, the job file being the original's
//! youpai.job.cfg with only srcDomain, srcAccessKey, srcSecretKey, srcBucket, destPrefix and
//! the destination's settings changed (plus multipartUploadThreshold/PartSize=5m, as in
//! tests/remote_sources.rs, so an 11 MiB file goes in three parts, and isDownloadFromCdn /
//! cdnDomain in the CDN test). The source is the UPYUN test server
//! (tests/common/upyun_server.rs); every file is read back from the destination sandbox and
//! compared byte for byte.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use common::upyun_server::{Upyun, sign};
use common::*;

const LONG: Duration = Duration::from_secs(300);
/// 11 MiB + 17: three parts of 5 MiB.
const LARGE: usize = 11 * MIB + 17;
/// Files in one folder: more than one listing page (the source asks for 1,000 at a time).
const MANY: usize = 1_003;
const SERVICE: &str = "yp-service";
const OPERATOR: &str = "yp-operator";
const PASSWORD: &str = "yp-password-0123";

/// The files below srcPrefix (relative path → bytes), nested folders and awkward names.
fn tree(many: usize) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("top.txt".into(), b"top level".to_vec()),
        ("a/b/c/deep.txt".into(), content(1, 3000)),
        ("a/b/side.txt".into(), content(7, 30)),
        ("with space/file name.txt".into(), content(2, 10)),
        ("unicode/数据 ünïcødé.md".into(), content(3, 77)),
        ("odd/plus+and&amp.txt".into(), content(4, 123)),
        ("empty.bin".into(), Vec::new()),
        ("big/large.bin".into(), content(6, LARGE)),
    ];
    files.extend((0..many).map(|i| (format!("many/f{i:04}"), content(100 + i, 1 + i % 50))));
    files
}

/// Puts the tree under the template's srcPrefix and a few files beside it; returns the
/// destination keys and bytes the job must produce.
fn populate(server: &Upyun, many: usize, dest_prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let src_prefix = template_value("youpai", "srcPrefix");
    assert_eq!(src_prefix, "docs/");
    for (rel, bytes) in tree(many) {
        server.put(&format!("{src_prefix}{rel}"), &bytes);
    }
    for key in [
        "other/sibling.txt",
        "root.txt",
        "docs.txt",
        "docsx/lookalike.txt",
    ] {
        server.put(key, &content(9, 64));
    }
    tree(many)
        .into_iter()
        .map(|(rel, bytes)| (format!("{dest_prefix}{rel}"), bytes))
        .collect()
}

fn package_for(server: &Upyun, dest: &Sandbox, extra: &[(&str, &str)]) -> Package {
    let mut overrides = vec![
        ("srcDomain", server.endpoint.as_str()),
        ("srcAccessKey", OPERATOR),
        ("srcSecretKey", PASSWORD),
        ("srcBucket", SERVICE),
        ("destPrefix", "into/youpai/"),
    ];
    for (key, value) in extra {
        overrides.retain(|(k, _)| k != key);
        overrides.push((key, value));
    }
    package("youpai", dest, &overrides)
}

#[test]
fn youpai_nested_folders_many_files_and_a_multipart_file_arrive_byte_for_byte() {
    let server = Upyun::start(SERVICE, OPERATOR, PASSWORD);
    let want = populate(&server, MANY, "into/youpai/");
    let dest = Sandbox::start();
    let pkg = package_for(&server, &dest, &[]);
    submit_and_start(&pkg);
    console_succeeds(&pkg, LONG);
    assert_eq!(error_lists(&pkg), "");
    assert_same(&dest.objects(), &want);
    let large = head(&dest, "into/youpai/big/large.bin");
    assert!(
        large.e_tag().unwrap().ends_with("-3\""),
        "not multipart: {large:?}"
    );
    let seen = server.requests();
    // The many/ folder took two pages: the second asked with the first one's iterator.
    assert!(
        seen.iter()
            .any(|r| r.path.ends_with("/many/") && r.iter.is_some()),
        "no second page of many/ was asked for"
    );
    // Parts of the large file were ranged reads answered 206.
    let parts = seen
        .iter()
        .filter(|r| r.path.ends_with("large.bin") && r.method == "GET" && r.status == 206);
    assert!(parts.count() >= 3);
    assert!(seen.iter().all(|r| r.listener == "api"));
}

#[test]
fn youpai_with_is_download_from_cdn_downloads_from_the_cdn_and_lists_through_the_api() {
    let server = Upyun::start(SERVICE, OPERATOR, PASSWORD);
    let want = populate(&server, 3, "into/youpai/");
    let dest = Sandbox::start();
    let extra = [
        ("isDownloadFromCdn", "true"),
        ("cdnDomain", server.cdn.as_str()),
    ];
    let pkg = package_for(&server, &dest, &extra);
    submit_and_start(&pkg);
    console_succeeds(&pkg, LONG);
    assert_same(&dest.objects(), &want);
    let seen = server.requests();
    let api_file_gets: Vec<&str> = seen
        .iter()
        .filter(|r| r.listener == "api" && r.method == "GET" && !r.path.ends_with('/'))
        .map(|r| r.path.as_str())
        .collect();
    assert!(
        api_file_gets.is_empty(),
        "files read through the API: {api_file_gets:?}"
    );
    let cdn_gets = seen
        .iter()
        .filter(|r| r.listener == "cdn" && r.method == "GET" && r.status / 100 == 2);
    let paths: std::collections::BTreeSet<&str> = cdn_gets.map(|r| r.path.as_str()).collect();
    // A 0-byte file needs no read.
    let non_empty = want.values().filter(|b| !b.is_empty()).count();
    assert_eq!(paths.len(), non_empty, "{paths:?}");
    // The CDN gets no credentials.
    let cdn_auth = seen
        .iter()
        .filter(|r| r.listener == "cdn")
        .any(|r| r.headers.iter().any(|h| h.starts_with("UPYUN ")));
    assert!(!cdn_auth);
}

#[test]
fn youpai_throttled_and_unavailable_answers_are_retried() {
    let server = Upyun::start(SERVICE, OPERATOR, PASSWORD);
    let want = populate(&server, 40, "into/youpai/");
    // Every third request answers 429 Too Many Requests (UPYUN code 42900001) or 503
    // (50300000), in turn.
    server.throttle(3, &[429, 503]);
    let dest = Sandbox::start();
    let pkg = package_for(&server, &dest, &[]);
    submit_and_start(&pkg);
    console_succeeds(&pkg, LONG);
    assert_eq!(error_lists(&pkg), "");
    assert_same(&dest.objects(), &want);
    let seen = server.requests();
    let faulty = |r: &&common::upyun_server::Seen| matches!(r.status, 429 | 503);
    let count = |status| seen.iter().filter(|r| r.status == status).count();
    let listings = seen.iter().filter(faulty).filter(|r| r.path.ends_with('/'));
    let reads = seen
        .iter()
        .filter(faulty)
        .filter(|r| r.method == "GET" && !r.path.ends_with('/'));
    assert!(
        count(429) >= 5 && count(503) >= 5 && listings.count() > 0 && reads.count() > 0,
        "{} throttled, {} unavailable",
        count(429),
        count(503)
    );
}

#[test]
fn youpai_wrong_password_aborts_the_job_at_start_without_leaking_it() {
    let server = Upyun::start(SERVICE, OPERATOR, PASSWORD);
    populate(&server, 2, "into/youpai/");
    let dest = Sandbox::start();
    let secret = "not-the-password-777";
    let pkg = package_for(&server, &dest, &[("srcSecretKey", secret)]);
    submit_and_start(&pkg);
    let stat = console_wait(&pkg, &["Succeed", "Failed", "Abort"], LONG);
    let reason = assert_aborted_at_start(&pkg, &dest, &stat, &[secret]);
    for word in [SERVICE, "signature error", "srcSecretKey"] {
        assert!(reason.contains(word), "no `{word}` in {stat}");
    }
    let seen = server.requests();
    assert!(seen.iter().all(|r| r.status == 401), "{seen:?}");
    assert!(
        seen.iter()
            .all(|r| !r.headers.iter().any(|h| h.contains(secret)))
    );
}

/// The test server itself: a right signature with a Date an hour old is refused as UPYUN
/// refuses it (401, code 40100002), the same request dated now is answered, and a listing
/// without `Accept: application/json` comes in UPYUN's text form.
#[test]
fn the_upyun_test_server_checks_the_date_and_the_signature() {
    let server = Upyun::start(SERVICE, OPERATOR, PASSWORD);
    server.put("x/a.txt", b"abc");
    let uri = format!("/{SERVICE}/x/");
    let ask = |date: SystemTime, password: &str| {
        let date = httpdate::fmt_http_date(date);
        let auth = sign(OPERATOR, password, "GET", &uri, &date);
        rt().block_on(async {
            let resp = reqwest::Client::new()
                .get(format!("{}{uri}", server.endpoint))
                .header("Date", date)
                .header("Authorization", auth)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    };
    let now = SystemTime::now();
    let (status, body) = ask(now - Duration::from_secs(3600), PASSWORD);
    assert_eq!(status, 401, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], 40100002, "{body}");
    assert!(
        error["msg"].is_string() && error["id"].is_string(),
        "{body}"
    );
    let (status, body) = ask(now, "wrong");
    assert_eq!((status, body.contains("40100005")), (401, true), "{body}");
    let (status, body) = ask(now, PASSWORD);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("a.txt\tN\t3\t"), "{body}");
}
