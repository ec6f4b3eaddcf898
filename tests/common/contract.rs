//! The backends of the source contract suite (tests/source_contract.rs): a fixture per
//! backend that puts, deletes and rewrites objects on a real server (or a folder), the model
//! of what the source must list, and helpers that list and read through `&dyn Source`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use ossimport::payload::Body;
use ossimport::source::endpoint::{S3Vendor, s3_endpoint};
use ossimport::source::http::HttpSource;
use ossimport::source::local::LocalSource;
use ossimport::source::s3::S3Source;
use ossimport::source::{Probe, RelPath, Resume, ScanUnit, Source, SourceObject};

use crate::common::content;
use crate::common::proxy::client_with_attempts;
use crate::common::servers::Nginx;

/// `srcPrefix` of every backend: keys (paths) under it are the source, the rest must not show.
pub const PREFIX: &str = "data/";
/// Small objects in one folder: more than one ListObjectsV2 page (1,000 keys).
pub const BULK: usize = 2_100;
/// Keys a user's bucket has, relative to srcPrefix, with their sizes.
pub const NAMED: &[(&str, usize)] = &[
    ("root.txt", 120),
    ("zero", 0),
    ("empty/zero.bin", 0),
    ("中文/图 片.jpg", 777),
    ("sp ace/a b.txt", 64),
    ("a+b&c.txt", 33),
    ("plus/c++ & co.txt", 12),
    ("n1/top.txt", 10),
    ("n1/n2/mid.txt", 11),
    ("n1/n2b/side.txt", 13),
    ("n1/n2/n3/deep.txt", 14),
    ("n1/n2/n3/n4/n5/deepest.txt", 15),
    ("big.bin", 300_000),
];
/// Keys beside srcPrefix (from the bucket's root): a sibling folder, a longer name.
pub const OUTSIDE: &[&str] = &["other/o.txt", "dataX", "data.bak/z.txt"];

/// One backend: where its objects live and how the source under test is built.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The source over [`PREFIX`]; through `via` (`http://127.0.0.1:PORT`, a proxy) if given.
    fn source(&self, via: Option<&str>) -> Box<dyn Source>;
    /// The server a fault-injecting proxy can stand in front of; `None`: no network.
    fn upstream(&self) -> Option<String>;
    /// Whether the source built with a `via` lists `path` at all.
    fn proxied(&self, _path: &str) -> bool {
        true
    }
    /// Writes `bytes` at `key` (from the bucket's or folder's root).
    async fn put(&self, key: &str, bytes: &[u8]);
    async fn delete(&self, key: &str);
    /// New bytes at `key`, with a new mtime (and so a new version where the server derives
    /// its ETag from the mtime).
    async fn rewrite(&self, key: &str, bytes: &[u8]) {
        self.put(key, bytes).await;
    }
    /// Sources whose start must be refused: what is wrong, the source, and the words the
    /// error must contain.
    fn refused(&self) -> Vec<(String, Box<dyn Source>, Vec<String>)>;
}

/// A fixture and the model of what its source holds (path relative to srcPrefix → bytes).
pub struct Bench {
    pub name: String,
    pub fx: Box<dyn Fixture>,
    model: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl Bench {
    pub fn new(name: &str, fx: Box<dyn Fixture>) -> Bench {
        Bench {
            name: name.to_string(),
            fx,
            model: Mutex::default(),
        }
    }

    /// Another view of the same objects (the same server, another srcType).
    pub fn with_fixture(&self, name: &str, fx: Box<dyn Fixture>) -> Bench {
        let model = Mutex::new(self.expected());
        Bench {
            name: name.to_string(),
            fx,
            model,
        }
    }

    /// Puts the base set: the bulk folder, the named keys and the keys outside srcPrefix.
    pub async fn populate(&self) {
        let started = std::time::Instant::now();
        let mut all: Vec<(String, Vec<u8>)> = (0..BULK)
            .map(|i| (format!("{PREFIX}bulk/f{i:04}"), content(i, 1 + i % 37)))
            .collect();
        for (i, (rel, len)) in NAMED.iter().enumerate() {
            all.push((format!("{PREFIX}{rel}"), content(50_000 + i, *len)));
        }
        for (i, key) in OUTSIDE.iter().enumerate() {
            all.push((key.to_string(), content(60_000 + i, 9)));
        }
        futures::stream::iter(all)
            .for_each_concurrent(
                32,
                |(key, bytes)| async move { self.put(&key, bytes).await },
            )
            .await;
        eprintln!("[{}] populated in {:?}", self.name, started.elapsed());
    }

    pub fn source(&self) -> Box<dyn Source> {
        self.fx.source(None)
    }

    pub fn expected(&self) -> BTreeMap<String, Vec<u8>> {
        self.model.lock().unwrap().clone()
    }

    pub fn bytes(&self, rel: &str) -> Vec<u8> {
        self.model.lock().unwrap()[rel].clone()
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.fx.put(key, &bytes).await;
        self.note(key, Some(bytes));
    }

    pub async fn rewrite(&self, key: &str, bytes: Vec<u8>) {
        self.fx.rewrite(key, &bytes).await;
        self.note(key, Some(bytes));
    }

    pub async fn delete(&self, key: &str) {
        self.fx.delete(key).await;
        self.note(key, None);
    }

    fn note(&self, key: &str, bytes: Option<Vec<u8>>) {
        let Some(rel) = key.strip_prefix(PREFIX) else {
            return;
        };
        let mut model = self.model.lock().unwrap();
        match bytes {
            Some(b) => model.insert(rel.to_string(), b),
            None => model.remove(rel),
        };
    }
}

pub fn rel(path: &str) -> RelPath {
    RelPath(path.as_bytes().to_vec())
}

pub fn text(path: &RelPath) -> String {
    String::from_utf8_lossy(path.as_bytes()).into_owned()
}

/// Every entry of `unit` from `resume` on; an entry that failed is an error.
pub async fn list(
    src: &dyn Source,
    unit: &ScanUnit,
    resume: Resume,
) -> Result<Vec<SourceObject>, String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let collect = async {
        let mut all = Vec::new();
        while let Some(batch) = rx.recv().await {
            all.extend(batch);
        }
        all
    };
    let (done, entries) = tokio::join!(src.list(unit, resume, tx), collect);
    done.map_err(|e| format!("listing unit {} failed: {e}", unit.id))?;
    entries
        .into_iter()
        .map(|e| e.map_err(|e| format!("unit {} listed a failed entry: {e}", unit.id)))
        .collect()
}

/// The units of `depth` (ids must be unique) and every entry of each.
pub async fn list_units(src: &dyn Source, depth: u32) -> Result<Vec<Listed>, String> {
    let units = src
        .scan_units(depth)
        .await
        .map_err(|e| format!("scan_units({depth}) failed: {e}"))?;
    let mut out: Vec<Listed> = Vec::new();
    for unit in units {
        if out.iter().any(|(u, _)| u.id == unit.id) {
            return Err(format!("scan_units({depth}) gave unit {} twice", unit.id));
        }
        let entries = list(src, &unit, Resume::default()).await?;
        out.push((unit, entries));
    }
    Ok(out)
}

/// A scan unit and what it listed.
pub type Listed = (ScanUnit, Vec<SourceObject>);

pub fn entries(units: &[Listed]) -> impl Iterator<Item = &SourceObject> {
    units.iter().flat_map(|(_, e)| e)
}

pub fn find<'a>(units: &'a [Listed], path: &str) -> Result<&'a SourceObject, String> {
    entries(units)
        .find(|o| o.path == rel(path))
        .ok_or_else(|| format!("`{path}` is not listed"))
}

/// The object as a probe sees it now; missing is an error.
pub async fn probe(src: &dyn Source, obj: &SourceObject) -> Result<SourceObject, String> {
    match src.probe(obj).await {
        Ok(Probe::Present(now)) => Ok(now),
        Ok(Probe::Missing) => Err(format!("probe says `{}` is missing", obj.path)),
        Err(e) => Err(format!("probe of `{}` failed: {e}", obj.path)),
    }
}

/// The union of the units' entries is `want`: each path once, with its size.
pub fn covers_exactly(want: &BTreeMap<String, Vec<u8>>, units: &[Listed]) -> Result<(), String> {
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut wrong_size = Vec::new();
    for (unit, entries) in units {
        for o in entries {
            let path = text(&o.path);
            if want.get(&path).is_some_and(|w| w.len() as u64 != o.size) {
                wrong_size.push(format!("{path} ({} bytes)", o.size));
            }
            seen.entry(path).or_default().push(&unit.id);
        }
    }
    let twice = seen.iter().filter(|(_, u)| u.len() > 1);
    let twice = twice.map(|(p, u)| format!("{p} in {u:?}")).collect();
    let extra = seen.keys().filter(|p| !want.contains_key(*p)).cloned();
    let missing = want.keys().filter(|p| !seen.contains_key(*p)).cloned();
    let problems: [(&str, Vec<String>); 4] = [
        ("paths listed more than once", twice),
        ("paths listed that are not under srcPrefix", extra.collect()),
        ("paths not listed", missing.collect()),
        ("paths listed with a wrong size", wrong_size),
    ];
    match problems.into_iter().find(|(_, p)| !p.is_empty()) {
        Some((what, paths)) => {
            let first: Vec<String> = paths.iter().take(5).cloned().collect();
            Err(format!("{} {what}: {}", paths.len(), first.join(", ")))
        }
        None => Ok(()),
    }
}

/// One pass over a body.
pub async fn read(body: &Body) -> Result<Vec<u8>, String> {
    let mut s = body.stream();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Opens `offset..offset+len` of `obj` and reads it; open errors count as read errors.
pub async fn read_range(
    src: &dyn Source,
    obj: &SourceObject,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, String> {
    let body = src
        .open(obj, offset, len)
        .await
        .map_err(|e| e.to_string())?;
    read(&body).await
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes new bytes and moves the mtime 10 s ahead of the old one, so an mtime-based ETag
/// (nginx: `"<mtime>-<size>"`) changes even within the same second.
fn rewrite_file(path: &Path, bytes: &[u8]) {
    let old = std::fs::metadata(path).and_then(|m| m.modified());
    let when = old.unwrap_or_else(|_| SystemTime::now()) + Duration::from_secs(10);
    write_file(path, bytes);
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(when).unwrap();
}

/// `srcType=local` over a temp folder.
pub struct LocalFx {
    pub dir: tempfile::TempDir,
}

#[async_trait]
impl Fixture for LocalFx {
    fn source(&self, _via: Option<&str>) -> Box<dyn Source> {
        Box::new(LocalSource::new(self.dir.path().join(PREFIX), false))
    }
    fn upstream(&self) -> Option<String> {
        None
    }
    async fn put(&self, key: &str, bytes: &[u8]) {
        write_file(&self.dir.path().join(key), bytes);
    }
    async fn delete(&self, key: &str) {
        std::fs::remove_file(self.dir.path().join(key)).unwrap();
    }
    async fn rewrite(&self, key: &str, bytes: &[u8]) {
        rewrite_file(&self.dir.path().join(key), bytes);
    }
    fn refused(&self) -> Vec<(String, Box<dyn Source>, Vec<String>)> {
        let missing = self.dir.path().join("no-such-folder");
        let words = vec!["srcPrefix".into(), missing.display().to_string()];
        let src = Box::new(LocalSource::new(missing, false));
        vec![("a srcPrefix that does not exist".into(), src, words)]
    }
}

/// An S3-compatible server (s3s-fs, moto) as srcType oss, s3, ...
#[derive(Clone)]
pub struct S3Fx {
    pub vendor: S3Vendor,
    pub endpoint: String,
    pub bucket: String,
    pub ak: String,
    pub sk: String,
    /// The server checks signatures, so a wrong secret key must be refused.
    pub checks_keys: bool,
    pub client: aws_sdk_s3::Client,
}

impl S3Fx {
    pub fn new(vendor: S3Vendor, endpoint: &str, bucket: &str, keys: (&str, &str)) -> S3Fx {
        S3Fx {
            vendor,
            endpoint: endpoint.to_string(),
            bucket: bucket.to_string(),
            ak: keys.0.to_string(),
            sk: keys.1.to_string(),
            checks_keys: false,
            client: client_with_attempts(endpoint, keys.0, keys.1, 3),
        }
    }

    fn make(&self, endpoint: &str, bucket: &str, sk: &str) -> Box<dyn Source> {
        let at = s3_endpoint(self.vendor, endpoint, bucket, 0).expect("loopback endpoint");
        assert!(at.path_style, "127.0.0.1 must be addressed path style");
        Box::new(S3Source::new(&at, PREFIX, &self.ak, sk))
    }
}

#[async_trait]
impl Fixture for S3Fx {
    fn source(&self, via: Option<&str>) -> Box<dyn Source> {
        self.make(via.unwrap_or(&self.endpoint), &self.bucket, &self.sk)
    }
    fn upstream(&self) -> Option<String> {
        Some(self.endpoint.clone())
    }
    async fn put(&self, key: &str, bytes: &[u8]) {
        let req = self.client.put_object().bucket(&self.bucket).key(key);
        let body = ByteStream::from(bytes.to_vec());
        req.body(body).send().await.expect("PutObject");
    }
    async fn delete(&self, key: &str) {
        let req = self.client.delete_object().bucket(&self.bucket).key(key);
        req.send().await.expect("DeleteObject");
    }
    fn refused(&self) -> Vec<(String, Box<dyn Source>, Vec<String>)> {
        let missing = "no-such-bucket-42";
        let mut out: Vec<(String, Box<dyn Source>, Vec<String>)> = vec![(
            "a srcBucket that does not exist".into(),
            self.make(&self.endpoint, missing, &self.sk),
            vec![missing.into(), "srcBucket".into()],
        )];
        if self.checks_keys {
            let words = vec![self.bucket.clone(), "srcAccessKey/srcSecretKey".into()];
            let bad = self.make(&self.endpoint, &self.bucket, "wrong-secret-key-000");
            out.push(("a wrong srcSecretKey".into(), bad, words));
        }
        out
    }
}

/// `srcType=http`: nginx serving a folder, and a URL list of the paths under `data/`.
pub struct HttpFx {
    pub root: tempfile::TempDir,
    pub nginx: Nginx,
    lists: tempfile::TempDir,
    /// Paths under srcPrefix, one list line each, in the order they were put.
    lines: Mutex<Vec<String>>,
    made: AtomicUsize,
}

impl HttpFx {
    pub fn start() -> HttpFx {
        let root = tempfile::tempdir().unwrap();
        let nginx = Nginx::start(root.path());
        HttpFx {
            root,
            nginx,
            lists: tempfile::tempdir().unwrap(),
            lines: Mutex::default(),
            made: AtomicUsize::new(0),
        }
    }

    /// Lines per scan unit (`taskObjectCountLimit`): one unit holds more than 1,000 entries.
    pub const UNIT_LINES: u64 = 1_500;
}

/// A path as the relative column of a list line: whitespace separates columns and `%XX` is
/// decoded, so spaces and `%` are written escaped.
fn list_column(rel: &str) -> String {
    rel.replace('%', "%25").replace(' ', "%20")
}

#[async_trait]
impl Fixture for HttpFx {
    fn source(&self, via: Option<&str>) -> Box<dyn Source> {
        let base = via.unwrap_or(&self.nginx.endpoint);
        let n = self.made.fetch_add(1, Ordering::SeqCst);
        let path: PathBuf = self.lists.path().join(format!("list-{n}.txt"));
        let text: String = self
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|rel| via.is_none() || self.proxied(rel))
            .map(|rel| format!("{base}/{PREFIX} {}\n", list_column(rel)))
            .collect();
        std::fs::write(&path, text).unwrap();
        Box::new(HttpSource::new(path, String::new(), 1, 2, Self::UNIT_LINES).expect("http client"))
    }
    fn upstream(&self) -> Option<String> {
        Some(self.nginx.endpoint.clone())
    }
    /// Through a proxy the list leaves out the bulk folder: one HEAD per line, 2,100 of them
    /// with injected faults and their backoffs, would take half a minute.
    fn proxied(&self, path: &str) -> bool {
        !path.starts_with("bulk/")
    }
    async fn put(&self, key: &str, bytes: &[u8]) {
        write_file(&self.root.path().join(key), bytes);
        if let Some(rel) = key.strip_prefix(PREFIX) {
            let mut lines = self.lines.lock().unwrap();
            if !lines.iter().any(|l| l == rel) {
                lines.push(rel.to_string());
            }
        }
    }
    /// The file goes, its list line stays: the URL answers 404.
    async fn delete(&self, key: &str) {
        std::fs::remove_file(self.root.path().join(key)).unwrap();
    }
    async fn rewrite(&self, key: &str, bytes: &[u8]) {
        rewrite_file(&self.root.path().join(key), bytes);
    }
    fn refused(&self) -> Vec<(String, Box<dyn Source>, Vec<String>)> {
        let missing = self.lists.path().join("no-such-list.txt");
        let src =
            HttpSource::new(missing, String::new(), 1, 2, Self::UNIT_LINES).expect("http client");
        let words = vec!["httpListFilePath".into(), "no-such-list.txt".into()];
        vec![(
            "a httpListFilePath that does not exist".into(),
            Box::new(src),
            words,
        )]
    }
}
