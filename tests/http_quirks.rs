//! The http source against the HTTP servers people really have: one that redirects, one that
//! refuses HEAD, and one that ignores Range (nginx with `max_ranges 0`). Each file must
//! arrive byte for byte, through console.sh with the original's local template turned into
//! an http job (srcType, httpListFilePath, destination settings changed only).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::servers::Nginx;
use common::*;

/// Over the 5 MiB multipart threshold the harness sets: three parts if ranges worked.
const LARGE: usize = 11 * MIB + 5;

/// `/old/` redirects to `/files/`, `/nohead/` answers HEAD with 405, `/norange/` sends whole
/// files to Range requests (200, not 206).
const QUIRKS: &str = r#"
    location /old/ { rewrite ^/old/(.*)$ /files/$1 permanent; }
    location /nohead/ { if ($request_method = HEAD) { return 405; } }
    location /norange/ { max_ranges 0; }
"#;

#[test]
fn redirects_refused_heads_and_ignored_ranges_still_copy_every_byte() {
    let root = tempfile::tempdir().unwrap();
    let files = [
        ("files/moved.txt", content(1, 4000)),
        ("nohead/plain.txt", content(2, 3000)),
        ("nohead/big.bin", content(3, LARGE)),
        ("norange/whole.bin", content(4, LARGE)),
    ];
    for (rel, bytes) in &files {
        let path = root.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let nginx = Nginx::start_with(root.path(), QUIRKS);
    let at = |dir: &str| format!("{}/{dir}/", nginx.endpoint);
    let lines = [
        format!("{} moved.txt", at("old")),
        format!("{} plain.txt", at("nohead")),
        format!("{} big.bin", at("nohead")),
        format!("{} whole.bin", at("norange")),
    ];
    let list = tempfile::tempdir().unwrap();
    let list_path = list.path().join("urls.txt");
    std::fs::write(&list_path, lines.map(|l| l + "\n").concat()).unwrap();

    let dest = Sandbox::start();
    let list_text = list_path.to_string_lossy().into_owned();
    let pkg = package(
        "local",
        &dest,
        &[("srcType", "http"), ("httpListFilePath", &list_text)],
    );
    submit_and_start(&pkg);
    let stat = console_wait(
        &pkg,
        &["Succeed", "Failed", "Abort"],
        Duration::from_secs(240),
    );
    assert!(
        stat.contains("JobState:Succeed\n"),
        "{stat}\n{}\n{}",
        error_lists(&pkg),
        nginx.error_log()
    );
    // The template's own destPrefix stays.
    let prefix = template_value("local", "destPrefix");
    let want: BTreeMap<String, Vec<u8>> = [
        ("moved.txt", &files[0].1),
        ("plain.txt", &files[1].1),
        ("big.bin", &files[2].1),
        ("whole.bin", &files[3].1),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
    .collect();
    assert_same(&dest.objects(), &want);

    let log = nginx.access_log();
    // The refused HEAD was answered by a one-byte GET; its parts by Range GETs.
    assert!(
        log.lines()
            .any(|l| l == "GET /nohead/big.bin 206 bytes=0-0"),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with("GET /old/moved.txt 301")),
        "{log}"
    );
    // The server without ranges: one whole-file GET made the object, and the log says why.
    let whole = log
        .lines()
        .filter(|l| l.starts_with("GET /norange/whole.bin 200 -"))
        .count();
    assert_eq!(whole, 1, "{log}");
    let service_log = std::fs::read_to_string(pkg.path("logs/ossimport2.log")).unwrap();
    assert!(
        service_log.contains("ignores Range"),
        "no warning in the log:\n{service_log}"
    );
}

/// The list is the job's listing: an edit after submit would skip or repeat entries, so the
/// service refuses to go on with it, with one reason, until the list is put back or the job
/// is submitted again.
#[test]
fn a_list_edited_after_submit_aborts_the_job_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), b"a").unwrap();
    let nginx = Nginx::start(root.path());
    let list = tempfile::tempdir().unwrap();
    let list_path = list.path().join("urls.txt");
    std::fs::write(&list_path, format!("{}/ a.txt\n", nginx.endpoint)).unwrap();
    let dest = Sandbox::start();
    let list_text = list_path.to_string_lossy().into_owned();
    let pkg = package(
        "local",
        &dest,
        &[("srcType", "http"), ("httpListFilePath", &list_text)],
    );
    let out = console(&pkg, &["submit"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(
        &list_path,
        format!("{0}/ a.txt\n{0}/ b.txt\n", nginx.endpoint),
    )
    .unwrap();
    let out = console(&pkg, &["start"]);
    assert!(out.status.success(), "{}", text(&out));
    let stat = console_wait(
        &pkg,
        &["Succeed", "Failed", "Abort"],
        Duration::from_secs(60),
    );
    assert!(
        stat.contains("JobState:Abort\n") && stat.contains("changed after the job was submitted"),
        "{stat}"
    );
    assert!(dest.objects().is_empty());
}
