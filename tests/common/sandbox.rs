//! The sandbox S3 server the tests run against: started on a free port (or stopped and
//! started again on the same one, as an outage), read back through the S3 API, and the
//! request counts it keeps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{AK, BIN, BUCKET, SK, client, rt};

/// A sandbox server on a free port, stopped when dropped.
pub struct Sandbox {
    child: Child,
    pub endpoint: String,
    pub data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn start() -> Sandbox {
        Sandbox::start_with(&[])
    }

    /// A sandbox that keeps the number of requests it served, by kind, in `counts` (see
    /// [`request_counts`]).
    pub fn counting(counts: &Path) -> Sandbox {
        Sandbox::start_with(&["--request-counts".as_ref(), counts.as_os_str()])
    }

    fn start_with(extra: &[&std::ffi::OsStr]) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (child, endpoint) = Sandbox::spawn(&data, "0", extra);
        Sandbox {
            child,
            endpoint,
            data,
            _dir: dir,
        }
    }

    /// Serves `data` on `port` (0: a free one); returns the server and its endpoint.
    fn spawn(data: &Path, port: &str, extra: &[&std::ffi::OsStr]) -> (Child, String) {
        let mut child = Command::new(BIN)
            .args([
                "sandbox",
                "--port",
                port,
                "--bucket",
                BUCKET,
                "--access-key",
                AK,
                "--secret-key",
                SK,
            ])
            .arg("--root")
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sandbox starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .trim()
            .strip_prefix("sandbox listening on ")
            .unwrap_or_else(|| panic!("unexpected sandbox output: {line:?}"))
            .to_string();
        (child, endpoint)
    }

    /// Takes the server down, as an outage: connections to its port are refused.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Brings the server back on the same port with the same data.
    pub fn restart(&mut self) {
        let port = self.endpoint.rsplit(':').next().unwrap().to_string();
        let (child, endpoint) = Sandbox::spawn(&self.data, &port, &[]);
        assert_eq!(endpoint, self.endpoint);
        self.child = child;
    }

    pub fn client(&self) -> aws_sdk_s3::Client {
        client(&self.endpoint, AK, SK)
    }

    /// Every object of the test bucket: key → bytes, read back through the S3 API.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        Sandbox::read_bucket(&self.endpoint, BUCKET, AK, SK)
    }

    /// Every object of any bucket on any endpoint, read through the S3 API.
    pub fn read_bucket(
        endpoint: &str,
        bucket: &str,
        ak: &str,
        sk: &str,
    ) -> BTreeMap<String, Vec<u8>> {
        let client = client(endpoint, ak, sk);
        rt().block_on(async {
            let mut out = BTreeMap::new();
            let mut token = None;
            loop {
                let page = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .expect("list objects");
                for obj in page.contents() {
                    let key = obj.key().unwrap().to_string();
                    let body = client
                        .get_object()
                        .bucket(bucket)
                        .key(&key)
                        .send()
                        .await
                        .expect("get object");
                    out.insert(
                        key,
                        body.body.collect().await.unwrap().into_bytes().to_vec(),
                    );
                }
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            out
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The request counts a [`Sandbox::counting`] wrote: kind (`LIST`, `HEAD`, ...) → requests,
/// once they have stayed the same for half a second (the file is rewritten every 200 ms).
pub fn request_counts(path: &Path) -> BTreeMap<String, u64> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// The bucket the shipped conf/local_job.cfg migrates into: the sandbox on 127.0.0.1:9800
/// that import.sh starts.
pub fn quick_start_bucket() -> BTreeMap<String, Vec<u8>> {
    Sandbox::read_bucket(
        "http://127.0.0.1:9800",
        "sample-bucket",
        "sandbox-access-key",
        "sandbox-secret-key",
    )
}
