//! End to end per remote srcType (oss s3 cos bos ks3 http) through console.sh, each job file
//! the original's template of that type; every object is read back from the destination
//! sandbox and compared byte for byte with the source.
//!
//! Only these template values are changed: srcDomain, srcAccessKey, srcSecretKey, srcBucket,
//! destDomain, destAccessKey, destSecretKey, destBucket, destPrefix (`into/<srcType>/`, so the
//! key mapping is visible), and multipartUploadThreshold/PartSize=5m: the templates' 150m/50m
//! would need an object over 150 MiB to go multipart (the sandbox takes parts of 5 MiB at
//! least). srcPrefix, appId and jobName (local_test, which the harness reads) stay as in the
//! template. ks3 has no template: the s3 one with srcType=ks3. http: the local one with
//! srcType=http and httpListFilePath. sys.properties is the harness's (workingDir=., 8 file
//! threads); the kill test adds a bandwidth cap there so that it can kill mid-upload.
//!
//! Servers: a second sandbox (s3s-fs) for oss and s3, moto for s3, cos, bos and ks3; the http
//! source has its own file (tests/http_source.rs). s3s-fs stores a 0-byte `dir/` object as a folder and never lists it, so the
//! folder-marker skip (audit.log `SKIPPED FOLDER`) is checked on moto.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::proxy::{Faults, Proxy};
use common::servers::Moto;
use common::*;

const LONG: Duration = Duration::from_secs(240);
/// 11 MiB + 17: three parts of 5 MiB.
const LARGE: usize = 11 * MIB + 17;

/// The tree below srcPrefix: relative path → bytes. `dir/` is a console folder marker.
fn tree() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("top.txt", b"top level".to_vec()),
        ("a/b/c/deep.txt", content(1, 3000)),
        ("with space/file name.txt", content(2, 10)),
        ("unicode/数据 ünïcødé.md", content(3, 77)),
        ("odd/plus+and&amp.txt", content(4, 123)),
        ("empty.bin", Vec::new()),
        ("dir/", Vec::new()),
        ("dir/inside.txt", content(5, 500)),
        ("big/large.bin", content(6, LARGE)),
    ]
}

/// An S3 source: its endpoint, the bucket as the server names it, and keys.
struct Remote {
    endpoint: String,
    bucket: String,
    ak: String,
    sk: String,
}

impl Remote {
    fn on_sandbox(sandbox: &Sandbox, bucket: &str) -> Remote {
        let client = sandbox.client();
        rt().block_on(client.create_bucket().bucket(bucket).send())
            .expect("create the source bucket");
        Remote {
            endpoint: sandbox.endpoint.clone(),
            bucket: bucket.into(),
            ak: AK.into(),
            sk: SK.into(),
        }
    }

    fn on_moto(moto: &Moto, bucket: &str) -> Remote {
        moto.create_bucket(bucket);
        let (ak, sk) = ("moto-source-ak".into(), "moto-source-sk".into());
        let endpoint = moto.endpoint.clone();
        let bucket = bucket.into();
        Remote {
            endpoint,
            bucket,
            ak,
            sk,
        }
    }

    fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        Sandbox::read_bucket(&self.endpoint, &self.bucket, &self.ak, &self.sk)
    }
}

/// Migrates the tree from `src` (written with `template`, srcType `src_type`, srcBucket
/// `src_bucket`) and checks every object, the key mapping and what stayed behind.
/// `marker_listed`: the server lists a 0-byte `dir/` object (s3s-fs keeps it as a folder).
fn migrate_tree(
    template: &str,
    src_type: &str,
    src: &Remote,
    src_bucket: &str,
    marker_listed: bool,
) {
    let src_prefix = template_value(template, "srcPrefix");
    let key_prefix = src_prefix.trim_start_matches('/').to_string();
    assert!(
        key_prefix.ends_with('/') && key_prefix.len() > 1,
        "{template}: {src_prefix}"
    );
    let stem = key_prefix.trim_end_matches('/');
    let mut objects: Vec<(String, Vec<u8>)> = tree()
        .into_iter()
        .map(|(rel, b)| (format!("{key_prefix}{rel}"), b))
        .collect();
    // Outside srcPrefix: a sibling prefix, the root, and keys sharing its text without the `/`.
    let outside = [
        "other/sibling.txt".to_string(),
        "root.txt".to_string(),
        format!("{stem}.txt"),
        format!("{stem}x/lookalike.txt"),
    ];
    objects.extend(outside.iter().map(|k| (k.clone(), content(9, 64))));
    put_objects(
        &common::client(&src.endpoint, &src.ak, &src.sk),
        &src.bucket,
        &objects,
    );

    let dest = Sandbox::start();
    let dest_prefix = format!("into/{src_type}/");
    let mut overrides = vec![
        ("srcDomain", src.endpoint.as_str()),
        ("srcAccessKey", src.ak.as_str()),
        ("srcSecretKey", src.sk.as_str()),
        ("srcBucket", src_bucket),
        ("destPrefix", dest_prefix.as_str()),
    ];
    if template_value(template, "srcType") != src_type {
        overrides.push(("srcType", src_type));
    }
    let pkg = package(template, &dest, &overrides);
    submit_and_start(&pkg);
    console_succeeds(&pkg, LONG);
    assert_eq!(error_lists(&pkg), "");

    let source = src.objects();
    let marker = format!("{key_prefix}dir/");
    assert_eq!(
        source.contains_key(&marker),
        marker_listed,
        "{:?}",
        source.keys()
    );
    assert_eq!(source.len(), objects.len() - usize::from(!marker_listed));
    // destPrefix + (key minus srcPrefix), byte for byte, folder markers left out.
    let want: BTreeMap<String, Vec<u8>> = source
        .iter()
        .filter_map(|(key, bytes)| {
            let rel = key.strip_prefix(&key_prefix)?;
            let folder = rel.ends_with('/') && bytes.is_empty();
            (!folder).then(|| (format!("{dest_prefix}{rel}"), bytes.clone()))
        })
        .collect();
    assert_eq!(want.len(), tree().len() - 1);
    let got = dest.objects();
    assert_same(&got, &want);
    for key in &outside {
        let name = key.rsplit('/').next().unwrap();
        assert!(
            !got.keys().any(|k| k.ends_with(name)),
            "{key} outside srcPrefix was copied"
        );
    }
    let large = head(&dest, &format!("{dest_prefix}big/large.bin"));
    assert!(
        large.e_tag().unwrap().ends_with("-3\""),
        "not multipart: {large:?}"
    );

    let audit = audit_records(&pkg);
    if marker_listed {
        let folder = &audit["dir/"];
        assert!(
            folder.len() == 1 && folder[0].0 == "SKIPPED" && folder[0].1 == "FOLDER",
            "{folder:?}"
        );
    }
    for (rel, _) in tree().iter().filter(|(rel, _)| !rel.ends_with('/')) {
        let records = &audit[*rel];
        let key = format!("key={dest_prefix}{rel} ");
        assert!(
            records.len() == 1 && records[0].0 == "OK" && records[0].2.contains(&key),
            "{rel}: {records:?}"
        );
    }
}

#[test]
fn oss_from_a_second_sandbox() {
    let src = Sandbox::start();
    let remote = Remote::on_sandbox(&src, "oss-source");
    migrate_tree("oss", "oss", &remote, "oss-source", false);
}

#[test]
fn s3_from_a_second_sandbox() {
    let src = Sandbox::start();
    let remote = Remote::on_sandbox(&src, "s3-source");
    migrate_tree("s3", "s3", &remote, "s3-source", false);
}

#[test]
fn s3_from_moto() {
    let moto = Moto::start();
    let remote = Remote::on_moto(&moto, "s3-source");
    migrate_tree("s3", "s3", &remote, "s3-source", true);
}

/// srcBucket without the APPID: the tool asks for `<srcBucket>-<appId>` (template's appId).
#[test]
fn cos_from_moto_with_the_appid_suffix() {
    let moto = Moto::start();
    let app_id = template_value("cos", "appId");
    let remote = Remote::on_moto(&moto, &format!("cos-source-{app_id}"));
    migrate_tree("cos", "cos", &remote, "cos-source", true);
}

#[test]
fn bos_from_moto() {
    let moto = Moto::start();
    let remote = Remote::on_moto(&moto, "bos-source");
    migrate_tree("bos", "bos", &remote, "bos-source", true);
}

#[test]
fn ks3_from_moto_with_the_s3_template() {
    let moto = Moto::start();
    let remote = Remote::on_moto(&moto, "ks3-source");
    migrate_tree("s3", "ks3", &remote, "ks3-source", true);
}

/// A wrong source secret is one job-level fault at start, not a failure per file.
#[test]
fn a_wrong_source_secret_aborts_the_job_at_start() {
    let src = Sandbox::start();
    let remote = Remote::on_sandbox(&src, "guarded-source");
    let objects = [("src/a.txt".to_string(), b"a".to_vec())];
    put_objects(&src.client(), &remote.bucket, &objects);
    let dest = Sandbox::start();
    let overrides = [
        ("srcDomain", remote.endpoint.as_str()),
        ("srcAccessKey", AK),
        ("srcSecretKey", "not-the-secret-key"),
        ("srcBucket", "guarded-source"),
    ];
    let pkg = package("oss", &dest, &overrides);
    submit_and_start(&pkg);
    let stat = console_wait(&pkg, &["Succeed", "Failed", "Abort"], LONG);
    let reason = assert_aborted_at_start(&pkg, &dest, &stat, &["not-the-secret-key"]);
    assert!(reason.contains("guarded-source"), "{stat}");
}

/// kill -9 while parts go up from a remote source: the next start resumes each upload and
/// re-sends at most the parts that were in flight.
#[test]
fn kill_9_during_a_remote_multipart_job_resumes_without_resending_finished_parts() {
    let src = Sandbox::start();
    let remote = Remote::on_sandbox(&src, "kill-source");
    let mut objects: Vec<(String, Vec<u8>)> = (0..2)
        .map(|i| (format!("src/large{i}.bin"), content(20 + i, 20 * MIB)))
        .collect();
    objects.push(("src/small.txt".into(), b"small".to_vec()));
    put_objects(&src.client(), &remote.bucket, &objects);
    let dest = Sandbox::start();
    let proxy = Proxy::start(&dest.endpoint, Faults::default());
    let overrides = [
        ("srcDomain", remote.endpoint.as_str()),
        ("srcAccessKey", AK),
        ("srcSecretKey", SK),
        ("srcBucket", "kill-source"),
        ("destDomain", proxy.endpoint.as_str()),
        ("destPrefix", ""),
    ];
    let mut pkg = package("oss", &dest, &overrides);
    // Slow enough to kill in the middle (sys.properties, not the job file).
    pkg.sys
        .insert("workerMaxThroughput(KB/s)".into(), "8192".into());
    let sys: String = pkg.sys.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(pkg.path("conf/sys.properties"), sys).unwrap();
    let threads: usize = template_value("oss", "uploadThreadNumPerLargeFile")
        .parse()
        .unwrap();
    submit_and_start(&pkg);

    let state = pkg.path("worker/jobs/local_test/multipart");
    let count = |name: &str| {
        let entries = walkdir::WalkDir::new(&state).into_iter().flatten();
        entries
            .filter(|e| e.file_name().to_string_lossy().starts_with(name))
            .count()
    };
    let started = Instant::now();
    while count("part-") < 2 {
        assert!(started.elapsed() < LONG, "no parts checkpointed");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_service(&pkg);
    let in_flight = count("UPLOAD");
    assert!(in_flight >= 1, "no upload was in flight at the kill");
    // (object path, part number) of every part checkpointed before the kill.
    let mut finished = Vec::new();
    for upload in std::fs::read_dir(&state).unwrap().flatten() {
        let record = std::fs::read_to_string(upload.path().join("UPLOAD")).unwrap();
        let path = record
            .lines()
            .find_map(|l| l.strip_prefix("path="))
            .unwrap();
        for part in std::fs::read_dir(upload.path()).unwrap().flatten() {
            let name = part.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_prefix("part-") {
                finished.push((path.to_string(), n.parse::<u32>().unwrap().to_string()));
            }
        }
    }

    let out = console(&pkg, &["start"]);
    assert!(out.status.success(), "{}", text(&out));
    console_succeeds(&pkg, LONG);
    assert_same(
        &dest.objects(),
        &objects
            .iter()
            .map(|(k, v)| (k[4..].to_string(), v.clone()))
            .collect(),
    );

    let requests = proxy.requests();
    let parts = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.query_param("partNumber").is_some());
    let creates = requests
        .iter()
        .filter(|r| r.method == "POST" && r.query_param("uploads").is_some());
    let (sent, total_parts) = (parts.count(), 2 * 4);
    eprintln!(
        "{sent} UploadPart requests for {total_parts} parts, {in_flight} uploads in flight at the kill"
    );
    assert_eq!(
        creates.count(),
        2,
        "an upload was started over instead of resumed"
    );
    assert!(
        sent <= total_parts + threads * in_flight,
        "{sent} UploadPart requests"
    );
    for (path, n) in &finished {
        let sends = requests.iter().filter(|r| {
            r.path.ends_with(&format!("/{path}"))
                && r.query_param("partNumber").as_ref() == Some(n)
                && r.status == 200
        });
        assert_eq!(
            sends.count(),
            1,
            "part {n} of {path} finished before the kill"
        );
    }
}

/// Source and destination are one store (same endpoint, same keys), as in a migration
/// between two buckets of one OSS region: every object is copied inside the store
/// (CopyObject; UploadPartCopy for the large one), so no source object is read and no body
/// is uploaded through the tool; each object still arrives byte for byte.
#[test]
fn one_store_is_copied_server_side() {
    let store = Sandbox::start();
    let proxy = Proxy::start(&store.endpoint, Faults::default());
    let remote = Remote::on_sandbox(&store, "same-store-source");
    let key_prefix = template_value("oss", "srcPrefix");
    let objects: Vec<(String, Vec<u8>)> = tree()
        .into_iter()
        .filter(|(rel, _)| !rel.ends_with('/'))
        .map(|(rel, b)| (format!("{key_prefix}{rel}"), b))
        .collect();
    put_objects(&store.client(), &remote.bucket, &objects);
    let overrides = [
        ("srcDomain", proxy.endpoint.as_str()),
        ("srcAccessKey", AK),
        ("srcSecretKey", SK),
        ("srcBucket", "same-store-source"),
        ("destDomain", proxy.endpoint.as_str()),
        ("destPrefix", "copied/"),
    ];
    let pkg = package("oss", &store, &overrides);
    submit_and_start(&pkg);
    console_succeeds(&pkg, LONG);
    let want: BTreeMap<String, Vec<u8>> = objects
        .iter()
        .map(|(k, v)| (format!("copied/{}", &k[key_prefix.len()..]), v.clone()))
        .collect();
    assert_same(&store.objects(), &want);

    let requests = proxy.requests();
    let source_reads = requests
        .iter()
        .filter(|r| r.method == "GET" && r.query.is_empty())
        .filter(|r| r.path.starts_with("/same-store-source/"));
    assert_eq!(source_reads.count(), 0, "a source object was read");
    let uploaded: u64 = requests.iter().map(|r| r.body_len).sum();
    assert!(
        uploaded < 64 * 1024,
        "{uploaded} request body bytes went through the tool"
    );
    let copies = requests
        .iter()
        .filter(|r| r.header("x-amz-copy-source").is_some() && r.status == 200);
    // One CopyObject per small object, one UploadPartCopy per part of the large one.
    assert_eq!(copies.count(), want.len() - 1 + 3);
    for (rel, records) in audit_records(&pkg) {
        assert!(
            records
                .iter()
                .all(|r| r.0 == "OK" && r.2.contains("copy=server-side")),
            "{rel}: {records:?}"
        );
    }
}
