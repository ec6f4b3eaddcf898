//! What a dry run prints: a line per task as it is split and a summary with the first few
//! files of each kind (text), or JSON lines, one object per task and per file reported, then
//! a total (`--json`, for scripts). Nothing but the few examples is kept in memory.

use std::io::Write;

use serde_json::{Value, json};

use crate::config::JobConfig;
use crate::relpath::RelPath;
use crate::source::SourceObject;

/// Files of each kind the text form names before it only counts them.
const EXAMPLES: usize = 20;

/// One task as the master would write it, and what the rehearsal found in it.
pub struct Task {
    unit: String,
    files: u64,
    bytes: u64,
    first: String,
    last: String,
    /// Keys OSS would refuse (their files fail INVALID_KEY).
    pub invalid: u64,
    /// Folder markers of an object store (skipped, not copied).
    pub markers: u64,
    /// Files already at the destination by isSkipExistFile's rule.
    pub existing: u64,
    pub existing_bytes: u64,
    /// Destination requests spent finding them.
    pub listings: u64,
    pub heads: u64,
}

impl Task {
    pub fn new(unit: &str, files: &[SourceObject]) -> Task {
        let path = |f: Option<&SourceObject>| f.map(|f| f.path.to_string()).unwrap_or_default();
        Task {
            unit: unit.to_string(),
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
            first: path(files.first()),
            last: path(files.last()),
            invalid: 0,
            markers: 0,
            existing: 0,
            existing_bytes: 0,
            listings: 0,
            heads: 0,
        }
    }
}

/// A kind of file the summary counts, with its first few examples.
#[derive(Default)]
struct Kind {
    count: u64,
    bytes: u64,
    examples: Vec<String>,
}

enum Which {
    LeftOut,
    Invalid,
    Unlisted,
    Existing,
}

pub struct Report {
    json: bool,
    import_since: i64,
    skip_exist: bool,
    tasks: u64,
    files: u64,
    bytes: u64,
    markers: u64,
    listings: u64,
    heads: u64,
    left_out: Kind,
    invalid: Kind,
    unlisted: Kind,
    existing: Kind,
    out: std::io::Stdout,
}

impl Report {
    pub fn new(json: bool, job: &JobConfig) -> Report {
        let report = Report {
            json,
            import_since: job.import_since,
            skip_exist: job.is_skip_exist_file,
            tasks: 0,
            files: 0,
            bytes: 0,
            markers: 0,
            listings: 0,
            heads: 0,
            left_out: Kind::default(),
            invalid: Kind::default(),
            unlisted: Kind::default(),
            existing: Kind::default(),
            out: std::io::stdout(),
        };
        if !json {
            report.line(&format!(
                "Dry run of job:{}: the source is listed and split as the job would be; \
                 nothing is written",
                job.job_name
            ));
        }
        report
    }

    /// Best effort, like every console output: a closed pipe ends the output, not the run.
    fn line(&self, text: &str) {
        let _ = writeln!(self.out.lock(), "{text}");
    }

    fn object(&self, kind: &str, mut fields: Value) {
        if let Some(map) = fields.as_object_mut() {
            map.insert("kind".into(), kind.into());
        }
        self.line(&fields.to_string());
    }

    pub fn note(&self, text: &str) {
        match self.json {
            true => self.object("note", json!({ "text": text })),
            false => self.line(&format!("Note: {text}")),
        }
    }

    pub fn task(&mut self, task: Task) {
        self.tasks += 1;
        self.files += task.files;
        self.bytes += task.bytes;
        self.markers += task.markers;
        self.listings += task.listings;
        self.heads += task.heads;
        if self.json {
            let mut fields = json!({
                "task": self.tasks,
                "unit": task.unit,
                "files": task.files,
                "bytes": task.bytes,
                "first": task.first,
                "last": task.last,
                "invalid_keys": task.invalid,
                "folder_markers": task.markers,
            });
            if self.skip_exist {
                fields["existing"] =
                    json!({ "files": task.existing, "bytes": task.existing_bytes });
            }
            return self.object("task", fields);
        }
        let mut text = format!(
            "task {}: {} files, {} bytes; unit {}; {} .. {}",
            self.tasks, task.files, task.bytes, task.unit, task.first, task.last
        );
        if self.skip_exist {
            text.push_str(&format!("; {} already at the destination", task.existing));
        }
        self.line(&text);
    }

    pub fn left_out(&mut self, obj: &SourceObject) {
        let fields =
            || json!({ "path": obj.path.to_string(), "size": obj.size, "mtime": obj.mtime });
        let example = || format!("{} (modified {})", obj.path, time(obj.mtime));
        self.file(Which::LeftOut, obj.size, fields, example);
    }

    pub fn invalid_key(&mut self, file: &SourceObject, why: &str) {
        let fields = || json!({ "path": file.path.to_string(), "size": file.size, "why": why });
        let example = || format!("{}: {why}", file.path);
        self.file(Which::Invalid, file.size, fields, example);
    }

    pub fn unlisted(&mut self, path: &RelPath, why: &str) {
        let fields = || json!({ "path": path.to_string(), "why": why });
        self.file(Which::Unlisted, 0, fields, || format!("{path}: {why}"));
    }

    pub fn exists(&mut self, key: &str, file: &SourceObject) {
        let fields = || json!({ "path": file.path.to_string(), "key": key, "size": file.size });
        let example = || format!("{} as {key}", file.path);
        self.file(Which::Existing, file.size, fields, example);
    }

    /// Counts a file of a kind; prints it (JSON) or keeps it as an example (text).
    fn file(
        &mut self,
        which: Which,
        bytes: u64,
        fields: impl FnOnce() -> Value,
        example: impl FnOnce() -> String,
    ) {
        let (kind, name) = match which {
            Which::LeftOut => (&mut self.left_out, "left_out"),
            Which::Invalid => (&mut self.invalid, "invalid_key"),
            Which::Unlisted => (&mut self.unlisted, "unlisted"),
            Which::Existing => (&mut self.existing, "exists"),
        };
        kind.count += 1;
        kind.bytes += bytes;
        if self.json {
            self.object(name, fields());
        } else if kind.examples.len() < EXAMPLES {
            kind.examples.push(example());
        }
    }

    /// Prints the summary; returns the exit code: 1 when some files would fail.
    pub fn finish(self) -> u8 {
        let failing = self.invalid.count + self.unlisted.count;
        let (send_files, send_bytes) = (
            self.files - self.markers - self.invalid.count - self.existing.count,
            self.bytes - self.invalid.bytes - self.existing.bytes,
        );
        if self.json {
            let mut total = json!({
                "tasks": self.tasks,
                "files": self.files,
                "bytes": self.bytes,
                "left_out": { "files": self.left_out.count, "bytes": self.left_out.bytes },
                "invalid_keys": self.invalid.count,
                "unlisted": self.unlisted.count,
                "folder_markers": self.markers,
                "to_send": { "files": send_files, "bytes": send_bytes },
            });
            if self.skip_exist {
                total["existing"] = json!({
                    "files": self.existing.count,
                    "bytes": self.existing.bytes,
                    "listing_requests": self.listings,
                    "head_requests": self.heads,
                });
            }
            self.object("total", total);
            return u8::from(failing > 0);
        }
        if self.import_since > 0 {
            let title = format!(
                "Left out by importSince={} ({}): not modified after it",
                self.import_since,
                time(self.import_since)
            );
            self.kind(&title, &self.left_out, true);
        }
        if self.invalid.count > 0 {
            self.kind(
                "Invalid keys: OSS would refuse them (each file fails INVALID_KEY)",
                &self.invalid,
                false,
            );
        }
        if self.unlisted.count > 0 {
            self.kind(
                "Cannot be listed: each fails in a task of its own; `console.sh retry` lists it again",
                &self.unlisted,
                false,
            );
        }
        if self.markers > 0 {
            self.line(&format!(
                "Folder markers (keys ending in /, 0 bytes; skipped, not copied): {}",
                self.markers
            ));
        }
        if self.skip_exist {
            let title = format!(
                "Already at the destination (isSkipExistFile=true: same size, not older, by the \
                 bucket listing; {} listing requests, {} HEAD requests)",
                self.listings, self.heads
            );
            self.kind(&title, &self.existing, true);
        }
        self.line(&format!(
            "Total: {} tasks, {} files, {} bytes; to send: {} files, {} bytes",
            self.tasks, self.files, self.bytes, send_files, send_bytes
        ));
        u8::from(failing > 0)
    }

    fn kind(&self, title: &str, kind: &Kind, with_bytes: bool) {
        let bytes = match with_bytes {
            true => format!(", {} bytes", kind.bytes),
            false => String::new(),
        };
        self.line(&format!("{title}: {} files{bytes}", kind.count));
        for example in &kind.examples {
            self.line(&format!("  {example}"));
        }
        if kind.count > kind.examples.len() as u64 {
            self.line(&format!(
                "  ... and {} more (`submit --dry-run --json` lists every one)",
                kind.count - kind.examples.len() as u64
            ));
        }
    }
}

/// Unix seconds as an RFC 3339 UTC time.
fn time(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}
