//! Unfinished multipart uploads are not left behind to be billed (issue 9, point 6): a stray
//! upload of a key the job is about to upload is aborted, and `clean` aborts the uploads the
//! job's state records, or says which it could not. moto is the destination, as it lists
//! multipart uploads (the embedded s3s-fs does not); jobs run through console.sh with the
//! original's `local` template. Against s3s-fs, which answers 501 to the listing, it is asked
//! once per run and the job goes on.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::proxy::{Faults, Proxy};
use common::servers::Moto;
use common::*;

const LONG: Duration = Duration::from_secs(240);
const BUCKET_NAME: &str = "orphans";
const DEST_AK: &str = "moto-dest-ak";
const DEST_SK: &str = "moto-dest-secret-key";
/// 11 MiB + 17: three parts of 5 MiB.
const LARGE: usize = 11 * MIB + 17;

/// A package with console.sh whose job is the `local` template migrating its src/ into the
/// moto bucket under `into/`, going multipart above 5 MiB; `sys` first goes to sys.properties.
fn package(moto: &Moto, sys: &[(&str, &str)]) -> Package {
    moto.create_bucket(BUCKET_NAME);
    let mut pkg = Package::with_dest(&moto.endpoint);
    for (k, v) in sys {
        pkg.set_sys(k, v);
    }
    install_console(&pkg);
    let src = format!("{}/", pkg.src().display());
    write_template(
        &pkg,
        "local",
        &[
            ("srcPrefix", src.as_str()),
            ("destDomain", moto.endpoint.as_str()),
            ("destAccessKey", DEST_AK),
            ("destSecretKey", DEST_SK),
            ("destBucket", BUCKET_NAME),
            ("destPrefix", "into/"),
            ("multipartUploadThreshold", "5m"),
            ("multipartUploadPartSize", "5m"),
        ],
    );
    pkg
}

fn moto_client(moto: &Moto) -> aws_sdk_s3::Client {
    common::client(&moto.endpoint, DEST_AK, DEST_SK)
}

/// Every multipart upload the bucket holds open: (key, upload id), sorted.
fn open_uploads(moto: &Moto) -> Vec<(String, String)> {
    let client = moto_client(moto);
    let out = rt()
        .block_on(client.list_multipart_uploads().bucket(BUCKET_NAME).send())
        .expect("ListMultipartUploads");
    assert!(!out.is_truncated().unwrap_or(false), "one page expected");
    let mut uploads: Vec<(String, String)> = out
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap().into(), u.upload_id().unwrap().into()))
        .collect();
    uploads.sort();
    uploads
}

/// Starts an upload of `key` with one 5 MiB part, as a crash right after would leave it.
fn start_upload(moto: &Moto, key: &str) -> String {
    let client = moto_client(moto);
    rt().block_on(async {
        let created = client
            .create_multipart_upload()
            .bucket(BUCKET_NAME)
            .key(key)
            .send()
            .await
            .expect("CreateMultipartUpload");
        let id = created.upload_id().unwrap().to_string();
        client
            .upload_part()
            .bucket(BUCKET_NAME)
            .key(key)
            .upload_id(&id)
            .part_number(1)
            .body(content(99, 5 * MIB).into())
            .send()
            .await
            .expect("UploadPart");
        id
    })
}

/// The `UPLOAD` records under the job's multipart state.
fn upload_records(pkg: &Package) -> Vec<PathBuf> {
    let state = pkg.path("worker/jobs/local_test/multipart");
    walkdir::WalkDir::new(state)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "UPLOAD")
        .map(|e| e.into_path())
        .collect()
}

/// Starts a job whose one large file goes up at 512 KB/s, and kills the service with
/// `kill -9` as soon as its upload is recorded; returns the recorded upload id.
fn kill_mid_upload(moto: &Moto) -> (Package, String) {
    let pkg = package(moto, &[("workerMaxThroughput(KB/s)", "512")]);
    pkg.file("big/large.bin", &content(7, LARGE));
    submit_and_start(&pkg);
    let started = Instant::now();
    let record = loop {
        if let Some(record) = upload_records(&pkg).pop() {
            break record;
        }
        assert!(started.elapsed() < LONG, "no upload recorded");
        std::thread::sleep(Duration::from_millis(20));
    };
    kill_service(&pkg);
    let text = std::fs::read_to_string(record).unwrap();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("upload_id="))
        .expect("the record has an upload id")
        .to_string();
    (pkg, id)
}

#[test]
fn a_stray_upload_of_a_key_the_job_uploads_is_aborted() {
    let moto = Moto::start();
    let pkg = package(&moto, &[]);
    let large = content(6, LARGE);
    pkg.file("big/large.bin", &large);
    for i in 0..3 {
        pkg.file(&format!("small/{i}.txt"), &content(10 + i, 100));
    }
    // As if a crash came between CreateMultipartUpload and the record of its id; the other
    // key only shares the text and must stay.
    let stray = start_upload(&moto, "into/big/large.bin");
    let lookalike = start_upload(&moto, "into/big/large.bin.part");

    submit_and_start(&pkg);
    console_succeeds(&pkg, LONG);
    // Counted before this test lists the uploads itself.
    let listings = moto
        .log()
        .lines()
        .filter(|l| l.contains("\"GET /orphans?uploads") || l.contains("\"GET /orphans/?uploads"))
        .count();
    assert_eq!(
        open_uploads(&moto),
        [("into/big/large.bin.part".to_string(), lookalike)]
    );
    let log = std::fs::read_to_string(pkg.path("logs/ossimport2.log")).unwrap();
    assert!(log.contains("aborted a stray multipart upload"), "{log}");
    assert!(log.contains(&stray), "{log}");
    assert_eq!(
        listings, 1,
        "one listing for the large file, none for the small ones"
    );

    let objects = Sandbox::read_bucket(&moto.endpoint, BUCKET_NAME, DEST_AK, DEST_SK);
    assert!(objects.get("into/big/large.bin") == Some(&large));
    assert_eq!(objects.len(), 4, "{:?}", objects.keys());
}

#[test]
fn clean_aborts_the_uploads_the_job_recorded() {
    let moto = Moto::start();
    let (pkg, id) = kill_mid_upload(&moto);
    assert_eq!(
        open_uploads(&moto),
        [("into/big/large.bin".to_string(), id)],
        "the killed job's upload is open before clean"
    );

    let out = console(&pkg, &["clean"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert_eq!(open_uploads(&moto), []);
    assert!(
        said.contains("Aborted 1 unfinished multipart upload(s) of job:local_test."),
        "{said}"
    );
    assert!(said.contains("Clean job:local_test completed."), "{said}");
    assert!(!pkg.path("worker/jobs/local_test").exists());
}

#[test]
fn clean_names_the_uploads_it_cannot_abort_and_still_cleans() {
    let moto = Moto::start();
    let (pkg, id) = kill_mid_upload(&moto);
    // The destination is gone: the upload cannot be aborted.
    drop(moto);

    let out = console(&pkg, &["clean"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 unfinished multipart upload(s) of job:local_test could not be aborted"),
        "{said}"
    );
    assert!(
        stderr.contains(&format!("key `into/big/large.bin` upload id {id}")),
        "{said}"
    );
    assert!(!said.contains(DEST_SK) && !said.contains(DEST_AK), "{said}");
    assert!(said.contains("Clean job:local_test completed."), "{said}");
    assert!(!pkg.path("worker/jobs/local_test").exists());
    let log = std::fs::read_to_string(pkg.path("logs/clean.log")).unwrap();
    assert!(
        log.contains(&id) && log.contains("into/big/large.bin"),
        "{log}"
    );
}

#[test]
fn a_store_without_the_listing_is_asked_once_per_run() {
    let sandbox = Sandbox::start();
    let proxy = Proxy::start(&sandbox.endpoint, Faults::default());
    let mut pkg = Package::new(&sandbox);
    pkg.set("destDomain", &proxy.endpoint);
    multipart_config(&mut pkg);
    for i in 0..3 {
        pkg.file(&format!("large{i}.bin"), &content(30 + i, 6 * MIB));
    }
    pkg.file("small.txt", b"small");
    pkg.ok(&["submit"]);
    pkg.ok(&["start"]);
    let stat = pkg.wait_for(&["Succeed", "Failed", "Abort"], LONG);
    assert!(stat.contains("JobState:Succeed"), "{stat}");
    assert_eq!(sandbox.objects(), pkg.source_files());
    let listings: Vec<u16> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.query_param("uploads").is_some())
        .map(|r| r.status)
        .collect();
    assert_eq!(listings, [501], "asked once, answered 501");
}
