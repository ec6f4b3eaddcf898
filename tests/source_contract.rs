//! The source contract: the checks every source backend must pass, written once over
//! `&dyn Source` and run against real servers on 127.0.0.1 — a local folder, s3s-fs (the
//! sandbox) as srcType oss and s3, moto as srcType s3, nginx behind a URL list as srcType http,
//! the UPYUN test server (tests/common/upyun_server.rs) as srcType youpai, the Qiniu test
//! server as srcType qiniu (getObjectMetaMode stat and head), and Azurite as srcType azure.
//!
//! Each backend is one test running every check; a failure names the backend and the check,
//! and the other checks still run. The fixtures are in tests/common/contract.rs.

mod common;
#[path = "common/contract.rs"]
mod contract;
#[path = "common/contract_azure.rs"]
mod contract_azure;
#[path = "common/contract_qiniu.rs"]
mod contract_qiniu;
#[path = "common/contract_upyun.rs"]
mod contract_upyun;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::proxy::{Faults, Proxy};
use common::servers::{Azurite, Moto};
use common::{AK, BUCKET, SK, Sandbox, content};
use contract::*;
use contract_upyun::UpyunFx;
use ossimport::source::endpoint::S3Vendor;
use ossimport::source::{Probe, Resume, SourceObject};

type Check = Result<(), String>;

/// A check that has not answered by then hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(90);

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// Runs every check against `b`; returns the failures, each naming backend and check.
async fn suite(b: &Bench) -> Vec<String> {
    let mut fails = Vec::new();
    macro_rules! run {
        ($name:literal, $check:ident) => {
            let started = Instant::now();
            match tokio::time::timeout(CHECK_TIMEOUT, $check(b)).await {
                Ok(Ok(())) => eprintln!("[{}] {}: ok ({:?})", b.name, $name, started.elapsed()),
                Ok(Err(why)) => fails.push(format!("[{}] check {}: {why}", b.name, $name)),
                Err(_) => fails.push(format!(
                    "[{}] check {}: no answer within {CHECK_TIMEOUT:?} (a hang)",
                    b.name, $name
                )),
            }
        };
    }
    run!("1 listing pages past 1,000 keys", paging);
    run!(
        "2 units at depth 1, 2, 3 cover srcPrefix exactly once",
        depths
    );
    run!("3 spaces, unicode, +, &, 0-byte objects", names);
    run!("4 listing agrees with probe", probe_agrees);
    run!("5 ranged reads, read twice", ranges);
    run!("7 resume after the N-th entry", resume);
    run!("8 resets and 503s are retried", faults);
    run!("9 check() refuses bad settings", refusals);
    // Last: it changes objects (and puts the base set back).
    run!("6 deleted or rewritten after listing", changes);
    fails
}

/// Check 1: One unit holds the whole bulk folder, which takes more than one page to list.
async fn paging(b: &Bench) -> Check {
    let src = b.source();
    let units = list_units(&*src, 1).await?;
    let largest = units.iter().map(|(_, e)| e.len()).max().unwrap_or(0);
    ensure!(
        largest > 1_000,
        "no unit listed over 1,000 entries (largest: {largest})"
    );
    let bulk: Vec<String> = entries(&units)
        .map(|o| text(&o.path))
        .filter(|p| p.starts_with("bulk/"))
        .collect();
    ensure!(
        bulk.len() == BULK,
        "{} bulk entries listed, want {BULK}",
        bulk.len()
    );
    let distinct: BTreeSet<String> = bulk.into_iter().collect();
    let want: BTreeSet<String> = (0..BULK).map(|i| format!("bulk/f{i:04}")).collect();
    ensure!(
        distinct == want,
        "the bulk entries are not bulk/f0000..f{:04}, each once",
        BULK - 1
    );
    Ok(())
}

/// Check 2: At every depth the units together list exactly the objects under srcPrefix.
async fn depths(b: &Bench) -> Check {
    let src = b.source();
    for depth in [1, 2, 3] {
        let units = list_units(&*src, depth).await?;
        covers_exactly(&b.expected(), &units)
            .map_err(|e| format!("depth {depth} ({} units): {e}", units.len()))?;
    }
    Ok(())
}

/// Check 3: Awkward names and empty objects: listed under their exact path, probed and read back.
async fn names(b: &Bench) -> Check {
    let src = b.source();
    let units = list_units(&*src, 1).await?;
    for (name, len) in NAMED.iter().filter(|(_, len)| *len < 1_000) {
        let obj = find(&units, name)?;
        ensure!(
            obj.size == *len as u64,
            "`{name}` listed with {} bytes, want {len}",
            obj.size
        );
        let now = probe(&*src, obj).await?;
        ensure!(
            now.path == obj.path && now.size == obj.size,
            "probe of `{name}` gives {now:?}"
        );
        let got = read_range(&*src, obj, 0, obj.size)
            .await
            .map_err(|e| format!("reading `{name}`: {e}"))?;
        ensure!(
            got == b.bytes(name),
            "`{name}` read back {} other bytes",
            got.len()
        );
    }
    Ok(())
}

/// Check 4: What the listing says of an object is what a probe says.
async fn probe_agrees(b: &Bench) -> Check {
    let src = b.source();
    let units = list_units(&*src, 1).await?;
    let sample = entries(&units).filter(|o| {
        let p = text(&o.path);
        !p.starts_with("bulk/") || p.ends_with("00")
    });
    for obj in sample {
        let now = probe(&*src, obj).await?;
        let versions = match (&obj.version, &now.version) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        ensure!(
            now.path == obj.path && now.size == obj.size && now.mtime == obj.mtime && versions,
            "listed {obj:?}\n probed {now:?}"
        );
    }
    Ok(())
}

/// Check 5: Ranges at the start, the middle and the last byte give exactly those bytes, on every
/// read of the body.
async fn ranges(b: &Bench) -> Check {
    let src = b.source();
    let listed = find(&list_units(&*src, 1).await?, "big.bin")?.clone();
    let probed = probe(&*src, &listed).await?;
    let data = b.bytes("big.bin");
    let n = data.len() as u64;
    for (which, obj) in [("listed", &listed), ("probed", &probed)] {
        for (offset, len) in [(0, 1_000), (n / 2 - 3, 70_001), (n - 1, 1), (0, n)] {
            let what = format!("{which} big.bin bytes {offset}+{len}");
            let body = src
                .open(obj, offset, len)
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            ensure!(body.len() == len, "{what}: body says {} bytes", body.len());
            let want = &data[offset as usize..(offset + len) as usize];
            for pass in ["first", "second"] {
                let got = read(&body)
                    .await
                    .map_err(|e| format!("{what}, {pass} read: {e}"))?;
                ensure!(
                    got == want,
                    "{what}, {pass} read: {} bytes, not the object's",
                    got.len()
                );
            }
        }
    }
    Ok(())
}

/// Check 7: Listing again from the N-th entry (by path, or by count for a URL list) gives exactly
/// the entries after it.
async fn resume(b: &Bench) -> Check {
    let src = b.source();
    for (unit, full) in list_units(&*src, 1)
        .await?
        .iter()
        .filter(|(_, e)| e.len() >= 2)
    {
        let mut cuts = vec![1, full.len() / 2, full.len() - 1];
        if full.len() > 1_001 {
            cuts.extend([1_000, 1_001]); // at and after the end of the first page
        }
        for n in cuts {
            let at = Resume {
                after: Some(full[n - 1].path.clone()),
                seen: n as u64,
            };
            let again = list(&*src, unit, at).await?;
            let want: Vec<String> = full[n..].iter().map(|o| text(&o.path)).collect();
            let got: Vec<String> = again.iter().map(|o| text(&o.path)).collect();
            ensure!(
                got == want,
                "unit {} resumed after entry {n} (`{}`): {} entries, want {} (first {:?}, want {:?})",
                unit.id,
                full[n - 1].path,
                got.len(),
                want.len(),
                got.first(),
                want.first()
            );
        }
    }
    Ok(())
}

/// Check 8: Through a proxy that resets connections and answers 503: the listing, probes and
/// ranged reads still give the right answers.
async fn faults(b: &Bench) -> Check {
    let Some(upstream) = b.fx.upstream() else {
        eprintln!(
            "[{}] check 8: skipped, no server to put a proxy in front of",
            b.name
        );
        return Ok(());
    };
    let faults = |per_mille, seed| Faults {
        reset_per_mille: per_mille,
        unavailable_per_mille: per_mille,
        seed,
        ..Faults::default()
    };
    // The dice go by arrival order, so which requests fail is the same on every run.
    let proxy = Proxy::start(&upstream, faults(100, 3));
    let src = b.fx.source(Some(&proxy.endpoint));
    let units = list_units(&*src, 2)
        .await
        .map_err(|e| format!("under faults: {e}"))?;
    let mut want = b.expected();
    want.retain(|path, _| b.fx.proxied(path));
    covers_exactly(&want, &units).map_err(|e| format!("listing under faults: {e}"))?;
    let listing_faults = proxy
        .requests()
        .iter()
        .filter(|r| matches!(r.status, 0 | 503))
        .count();
    proxy.set_faults(faults(150, 11));
    for name in [
        "big.bin",
        "中文/图 片.jpg",
        "a+b&c.txt",
        "n1/n2/n3/deep.txt",
        "root.txt",
    ] {
        let obj = find(&units, name)?;
        let now = probe(&*src, obj)
            .await
            .map_err(|e| format!("under faults: {e}"))?;
        ensure!(
            now.size == obj.size,
            "probe of `{name}` under faults: {} bytes",
            now.size
        );
        let data = b.bytes(name);
        let (offset, len) = (data.len() as u64 / 3, data.len() as u64 / 2);
        let got = read_range(&*src, obj, offset, len)
            .await
            .map_err(|e| format!("`{name}` under faults: {e}"))?;
        ensure!(
            got == data[offset as usize..(offset + len) as usize],
            "`{name}` bytes {offset}+{len} under faults are wrong"
        );
    }
    let seen = proxy.requests();
    let resets = seen.iter().filter(|r| r.status == 0).count();
    let unavailable = seen.iter().filter(|r| r.status == 503).count();
    ensure!(
        listing_faults > 0 && resets > 0 && unavailable > 0,
        "too few faults to prove anything: {listing_faults} while listing, {resets} resets and {unavailable} 503s in all"
    );
    Ok(())
}

/// Check 9: A source that cannot work is refused before any work starts, with a message that
/// names the setting to fix.
async fn refusals(b: &Bench) -> Check {
    b.source()
        .check()
        .await
        .map_err(|e| format!("the good settings are refused: {e}"))?;
    for (what, src, words) in b.fx.refused() {
        let err = match src.check().await {
            Err(e) => e.to_string(),
            // A local folder is checked by listing its root.
            Ok(()) => match src.scan_units(1).await {
                Err(e) => e.to_string(),
                Ok(_) => return Err(format!("{what}: check() and scan_units() succeed")),
            },
        };
        eprintln!("[{}] refused {what}: {err}", b.name);
        for word in words {
            ensure!(
                err.contains(&word),
                "{what}: `{err}` does not mention `{word}`"
            );
        }
        ensure!(
            !err.contains("wrong-secret-key"),
            "{what}: the secret key is in `{err}`"
        );
    }
    Ok(())
}

const MUT: [(&str, usize, usize); 4] = [
    ("mut/deleted.bin", 100, 0),
    ("mut/grown.bin", 100, 300),
    ("mut/shrunk.bin", 5_000, 40),
    ("mut/same-size.bin", 3_000, 3_000),
];

/// Check 6: Objects deleted or rewritten between listing and reading never give wrong bytes.
async fn changes(b: &Bench) -> Check {
    let outcome = changes_inner(b).await;
    for (path, _, _) in MUT {
        if b.expected().contains_key(path) {
            b.delete(&format!("{PREFIX}{path}")).await;
        }
    }
    outcome
}

async fn changes_inner(b: &Bench) -> Check {
    for (i, (path, before, _)) in MUT.iter().enumerate() {
        b.put(&format!("{PREFIX}{path}"), content(70 + i, *before))
            .await;
    }
    let src = b.source();
    let units = list_units(&*src, 1).await?;
    let listed: Vec<SourceObject> = MUT
        .iter()
        .map(|m| find(&units, m.0).cloned())
        .collect::<Result<_, _>>()?;
    let pinned = probe(&*src, &listed[3]).await?;
    b.delete(&format!("{PREFIX}{}", MUT[0].0)).await;
    for (i, (path, _, after)) in MUT.iter().enumerate().skip(1) {
        b.rewrite(&format!("{PREFIX}{path}"), content(80 + i, *after))
            .await;
    }

    let gone = &listed[0];
    let probed = src
        .probe(gone)
        .await
        .map_err(|e| format!("probe of a deleted object: {e}"))?;
    ensure!(
        probed == Probe::Missing,
        "probe of a deleted object: {probed:?}"
    );
    match read_range(&*src, gone, 0, gone.size).await {
        Err(e) => ensure!(
            e.contains("FILE_NOT_FOUND"),
            "reading a deleted object fails without FILE_NOT_FOUND: {e}"
        ),
        Ok(got) => {
            return Err(format!(
                "reading a deleted object gives {} bytes",
                got.len()
            ));
        }
    }

    for (obj, (path, _, after)) in listed.iter().zip(MUT).skip(1).take(2) {
        let now = probe(&*src, obj).await?;
        ensure!(
            now.size == after as u64,
            "probe of rewritten `{path}`: {} bytes, want {after}",
            now.size
        );
        // Without its version too: a store that lists no ETag (s3s-fs) still knows the size.
        let bare = SourceObject {
            version: None,
            ..obj.clone()
        };
        for (how, obj) in [
            ("as listed", obj),
            ("as listed, without its version", &bare),
        ] {
            for (offset, len) in [(0, obj.size), (obj.size / 2, 10)] {
                match read_range(&*src, obj, offset, len).await {
                    Err(e) => ensure!(
                        e.contains("SIZE_NOT_MATCH"),
                        "reading bytes {offset}+{len} of `{path}` {how} fails without SIZE_NOT_MATCH: {e}"
                    ),
                    Ok(_) => {
                        return Err(format!(
                            "`{path}` rewritten with {after} bytes, read {how} ({} bytes) at {offset}+{len}: gives bytes",
                            obj.size
                        ));
                    }
                }
            }
        }
        let fresh = read_range(&*src, &now, 0, now.size)
            .await
            .map_err(|e| format!("`{path}` as probed now: {e}"))?;
        ensure!(
            fresh == b.bytes(path),
            "`{path}` as probed now: not the new bytes"
        );
    }

    // Same size, new bytes: a source with a change marker reads only the version it was
    // given; one without gives the one version it has now, never a mix, or, pinning its
    // reads to size and mtime (a local file), refuses it.
    let (path, new) = (MUT[3].0, b.bytes(MUT[3].0));
    match (
        &pinned.version,
        read_range(&*src, &pinned, 0, pinned.size).await,
    ) {
        (Some(_), Err(e)) => ensure!(
            e.contains("SIZE_NOT_MATCH"),
            "reading `{path}` at an old version fails without SIZE_NOT_MATCH: {e}"
        ),
        (Some(v), Ok(_)) => {
            return Err(format!(
                "`{path}` read at version {v} gives the bytes of another version"
            ));
        }
        // A local file's version is its size and mtime: a source that pins its reads to
        // them refuses the rewritten file as an object store refuses an old ETag.
        (None, Err(e)) if src.pins_reads() => ensure!(
            e.contains("SIZE_NOT_MATCH"),
            "reading `{path}` after a same-size rewrite fails without SIZE_NOT_MATCH: {e}"
        ),
        (None, Err(e)) => {
            return Err(format!(
                "`{path}` (no version) cannot be read after a rewrite: {e}"
            ));
        }
        (None, Ok(got)) => ensure!(
            got == new,
            "`{path}` read after a same-size rewrite gives bytes of neither version alone"
        ),
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn verdict(fails: Vec<String>) {
    assert!(
        fails.is_empty(),
        "the source contract is broken:\n{}",
        fails.join("\n")
    );
}

#[test]
fn local_folder() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let b = Bench::new("local", Box::new(LocalFx { dir }));
        b.populate().await;
        verdict(suite(&b).await);
    });
}

#[test]
fn s3s_fs_as_oss_and_s3() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let mut fx = S3Fx::new(S3Vendor::Oss, &sandbox.endpoint, BUCKET, (AK, SK));
        fx.checks_keys = true;
        let oss = Bench::new("s3s-fs as srcType=oss", Box::new(fx.clone()));
        oss.populate().await;
        let mut fails = suite(&oss).await;
        fx.vendor = S3Vendor::S3;
        let s3 = oss.with_fixture("s3s-fs as srcType=s3", Box::new(fx));
        fails.extend(suite(&s3).await);
        verdict(fails);
    });
}

#[test]
fn moto_as_s3() {
    let moto = Moto::start();
    moto.create_bucket("contract-bucket");
    runtime().block_on(async {
        let fx = S3Fx::new(
            S3Vendor::S3,
            &moto.endpoint,
            "contract-bucket",
            ("any-key", "any-secret"),
        );
        let b = Bench::new("moto as srcType=s3", Box::new(fx));
        b.populate().await;
        verdict(suite(&b).await);
    });
}

#[test]
fn nginx_as_http() {
    let fx = contract::HttpFx::start();
    runtime().block_on(async {
        let b = Bench::new("nginx as srcType=http", Box::new(fx));
        b.populate().await;
        verdict(suite(&b).await);
    });
}

#[test]
fn upyun_server_as_youpai_from_the_api_and_the_cdn() {
    let server = std::sync::Arc::new(common::upyun_server::Upyun::start(
        "contract-svc",
        "contract-op",
        "contract-pw",
    ));
    runtime().block_on(async {
        let fx = UpyunFx {
            server: server.clone(),
            via_cdn: false,
        };
        let api = Bench::new("UPYUN test server as srcType=youpai", Box::new(fx));
        api.populate().await;
        let mut fails = suite(&api).await;
        let fx = UpyunFx {
            server: server.clone(),
            via_cdn: true,
        };
        let cdn = api.with_fixture("UPYUN test server, isDownloadFromCdn=true", Box::new(fx));
        fails.extend(suite(&cdn).await);
        let from_cdn = server
            .requests()
            .iter()
            .filter(|r| r.listener == "cdn")
            .count();
        if from_cdn == 0 {
            fails.push("isDownloadFromCdn=true: no request reached the CDN".into());
        }
        verdict(fails);
    });
}

#[test]
fn azurite_as_azure() {
    let azurite = Azurite::start();
    runtime().block_on(async {
        let fx = contract_azure::AzureFx::new(&azurite, "contract").await;
        let b = Bench::new("azurite as srcType=azure", Box::new(fx));
        b.populate().await;
        let mut fails = suite(&b).await;
        if let Err(why) = content_md5(&b).await {
            fails.push(format!("[{}] Content-MD5: {why}", b.name));
        }
        verdict(fails);
    });
}

#[test]
fn qiniu_test_server_as_qiniu() {
    let fx = contract_qiniu::QiniuFx::start();
    runtime().block_on(async {
        let stat = Bench::new("qiniu server, getObjectMetaMode=stat", Box::new(fx.clone()));
        stat.populate().await;
        let mut fails = suite(&stat).await;
        let mut head = fx.clone();
        head.mode = ossimport::config::ObjectMetaMode::Head;
        let head = stat.with_fixture("qiniu server, getObjectMetaMode=head", Box::new(head));
        fails.extend(suite(&head).await);
        verdict(fails);
    });
}

/// Azure keeps a blob's Content-MD5: a probe gives it as hex MD5, the audit's `etag(source)`.
async fn content_md5(b: &Bench) -> Check {
    use md5::{Digest, Md5};
    let src = b.source();
    let now = probe(src.as_ref(), &SourceObject::new(rel("root.txt"), 0, 0)).await?;
    let hex: String = Md5::digest(b.bytes("root.txt"))
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    ensure!(
        now.md5.as_deref() == Some(hex.as_str()),
        "probe gives md5 {:?}, the bytes' is {hex}",
        now.md5
    );
    Ok(())
}
