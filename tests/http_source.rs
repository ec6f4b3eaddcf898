//! The http source end to end against nginx, through console.sh with the original's local
//! template turned into an http job (srcType, httpListFilePath, destination settings changed
//! only): a list with the usual faults, the HTTP servers people really have (one that
//! redirects, one that refuses HEAD, one that ignores Range: nginx with `max_ranges 0`), and a
//! list edited after submit. Every file must arrive byte for byte.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::servers::Nginx;
use common::*;

/// An http job over a URL list: the destination sandbox, the package, and the list file
/// (its folder lives as long as the job).
struct HttpJob {
    pkg: Package,
    dest: Sandbox,
    list: PathBuf,
    _dir: tempfile::TempDir,
}

impl HttpJob {
    /// `lines` joined by `end` (`\n` or `\r\n`); `extra` job settings on top.
    fn new(lines: &[String], end: &str, extra: &[(&str, &str)]) -> HttpJob {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("urls.txt");
        let text: String = lines.iter().map(|l| format!("{l}{end}")).collect();
        std::fs::write(&list, text).unwrap();
        let dest = Sandbox::start();
        let list_text = list.to_string_lossy().into_owned();
        let mut overrides = vec![
            ("srcType", "http"),
            ("httpListFilePath", list_text.as_str()),
        ];
        overrides.extend_from_slice(extra);
        let pkg = package("local", &dest, &overrides);
        HttpJob {
            pkg,
            dest,
            list,
            _dir: dir,
        }
    }
}

const LONG: Duration = Duration::from_secs(240);

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
    let job = HttpJob::new(&lines, "\n", &[]);
    let (pkg, dest) = (&job.pkg, &job.dest);
    submit_and_start(pkg);
    let stat = console_wait(
        pkg,
        &["Succeed", "Failed", "Abort"],
        Duration::from_secs(240),
    );
    assert!(
        stat.contains("JobState:Succeed\n"),
        "{stat}\n{}\n{}",
        error_lists(pkg),
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
    let job = HttpJob::new(&[format!("{}/ a.txt", nginx.endpoint)], "\n", &[]);
    let (pkg, dest) = (&job.pkg, &job.dest);
    let out = console(pkg, &["submit"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(
        &job.list,
        format!("{0}/ a.txt\n{0}/ b.txt\n", nginx.endpoint),
    )
    .unwrap();
    let out = console(pkg, &["start"]);
    assert!(out.status.success(), "{}", text(&out));
    let stat = console_wait(
        pkg,
        &["Succeed", "Failed", "Abort"],
        Duration::from_secs(60),
    );
    assert!(
        stat.contains("JobState:Abort\n") && stat.contains("changed after the job was submitted"),
        "{stat}"
    );
    assert!(dest.objects().is_empty());
}

/// A URL list with CRLF line ends, a blank line, a line of one column and a 404: everything
/// else arrives, the job ends Failed and error.list names the bad line and the missing file.
#[test]
fn http_list_from_nginx() {
    let root = tempfile::tempdir().unwrap();
    let on_disk = [
        ("top.txt", b"top level".to_vec()),
        ("a/b/c/deep.txt", content(1, 3000)),
        ("with space/file name.txt", content(2, 10)),
        ("unicode/数据ünïcødé.md", content(3, 77)),
        ("odd/plus+and&amp.txt", content(4, 123)),
        ("empty.bin", Vec::new()),
        ("big/large.bin", content(6, LARGE)),
        ("one-column.txt", content(7, 5)),
        ("unlisted.txt", content(8, 5)),
    ];
    for (rel, bytes) in &on_disk {
        let path = root.path().join("files").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let nginx = Nginx::start(root.path());
    let base = format!("{}/files/", nginx.endpoint);
    let lines = [
        format!("{base} top.txt"),
        format!("{base} a/b/c/deep.txt"),
        String::new(),
        format!("{base} with%20space/file%20name.txt"),
        format!("{base}\tunicode/数据ünïcødé.md"),
        format!("{base} odd/plus+and&amp.txt"),
        format!("{base} empty.bin"),
        format!("{base}one-column.txt"),
        format!("{base} missing.txt"),
        format!("{base} big/large.bin"),
    ];
    let job = HttpJob::new(&lines, "\r\n", &[("destPrefix", "into/http/")]);
    let (pkg, dest) = (&job.pkg, &job.dest);
    let list_text = job.list.to_string_lossy().into_owned();
    submit_and_start(pkg);
    let stat = console_wait(pkg, &["Succeed", "Failed", "Abort"], LONG);
    assert!(
        stat.contains("JobState:Failed\n") && stat.contains("FailedTasks:1\n"),
        "{stat}"
    );
    assert_eq!(console(pkg, &["stat"]).status.code(), Some(1));

    let errors = error_lists(pkg);
    let mut errors: Vec<&str> = errors.lines().collect();
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let bad = format!("BAD_LIST_LINE\t{list_text}:8\t");
    assert!(
        errors[0].starts_with(&bad) && errors[0].contains("line 8: line has 1 column"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("FILE_NOT_FOUND\tmissing.txt\t"),
        "{errors:?}"
    );

    let mut want = BTreeMap::new();
    for (rel, bytes) in &on_disk[..7] {
        want.insert(format!("into/http/{rel}"), bytes.clone());
    }
    assert_same(&dest.objects(), &want);

    // The large file came in three Range GETs, one per part, and never whole.
    let log = nginx.access_log();
    let gets: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("GET /files/big/large.bin "))
        .collect();
    let ranges: Vec<&str> = gets.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
    let part = 5 * MIB;
    let want_ranges = [
        format!("bytes=0-{}", part - 1),
        format!("bytes={part}-{}", 2 * part - 1),
        format!("bytes={}-{}", 2 * part, LARGE - 1),
    ];
    let mut sorted = ranges.clone();
    sorted.sort();
    let mut want_ranges = want_ranges.to_vec();
    want_ranges.sort();
    assert_eq!(sorted, want_ranges, "GETs of the large file:\n{log}");
}
