//! One local scan unit's listing: a depth-first walk of its folder in name order (the order of
//! [`RelPath::walk_cmp`], which lets a unit's checkpoint be a single path).
//!
//! Each folder is read once: its names are decoded and sorted once, then the size and mtime of
//! every file after the resume point are read relative to the open folder
//! (`fs::DirEntry::metadata`: `statx(dirfd, name)` on Linux), not through a path walked again
//! from `/` for every file. A large folder's lookups are shared among a few threads, since they
//! are most of a scan's cost (in the kernel) and `find`, the yardstick, uses one core. The
//! folder is closed before the walk goes down into its sub-folders, so one is open at a time;
//! each level of the walk keeps the rest of its folder (names and sizes), one folder's worth,
//! as the sorted walkdir walk this replaces kept its entries.
//!
//! The items and their order are those of that walkdir walk (`sort_by_file_name`,
//! `follow_links(false)`, sub-trees before the resume point skipped), faults included:
//! a sub-folder that cannot be read is reported where it stands in the order, an entry that
//! cannot be read at the head of its folder (a fault of the folder's stream at the unit),
//! and a file that cannot be looked at in its place. The test module holds that walk as the
//! reference.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tokio::sync::mpsc::Sender;

use super::{mtime_secs, name_bytes};
use crate::error::Error;
use crate::reason::Reason;
use crate::source::{LIST_BATCH, ListBatch, RelPath, SourceObject};

/// Files one thread looks at before another thread is worth starting for a folder.
const LOOKS_PER_THREAD: usize = 256;
/// Entries a thread takes at a time from a folder shared among threads.
const LOOKS_PER_PART: usize = 64;
/// At most this many threads look at one folder's files: the lookups of one folder share
/// its locks in the kernel, and a scan with `scanThreadCount` > 1 has its own threads.
const MAX_LOOK_THREADS: usize = 4;

/// The walk of one unit: its folder, and where a restart resumes it.
pub(super) struct UnitWalk<'a> {
    /// The unit's folder on disk.
    pub base: PathBuf,
    /// The unit's folder relative to `srcPrefix`.
    pub dir: &'a RelPath,
    /// `tree:` (the whole sub-tree) or `files:` (the folder's own files).
    pub recursive: bool,
    pub allow_symlinks: bool,
    /// The last file persisted before a restart: only what follows it is listed.
    pub after: Option<&'a RelPath>,
}

/// A folder's entry as the walk gives it, in order.
enum Step {
    /// A file, looked at.
    File {
        name: Vec<u8>,
        size: u64,
        mtime: i64,
    },
    /// A sub-folder to walk at this point (`path` as read, so a name that is not UTF-8 off
    /// unix still opens).
    Folder { name: Vec<u8>, path: PathBuf },
    /// An entry as read (its type not followed), with the handle its folder is read
    /// through: a file still to look at once the folder is sorted and filtered.
    Look {
        name: Vec<u8>,
        entry: fs::DirEntry,
        ty: fs::FileType,
    },
    /// What cannot be read, as the listing reports it.
    Fault { path: RelPath, message: String },
    /// An entry that is not a file to upload after all.
    Skip,
}

impl Step {
    /// The name of an entry as read; empty for the other steps.
    fn name(&self) -> &[u8] {
        match self {
            Step::Look { name, .. } => name,
            _ => &[],
        }
    }
}

/// A folder being walked: where it is and its entries still to give.
struct Level {
    rel: RelPath,
    steps: std::vec::IntoIter<Step>,
}

impl UnitWalk<'_> {
    /// Sends the unit's files (and faults) to `out` in batches, until the walk ends or the
    /// receiver is gone (a stopped job).
    pub fn send(&self, out: &Sender<ListBatch>) {
        let mut batch = Vec::with_capacity(LIST_BATCH);
        let mut stack = Vec::new();
        // The unit's own folder: as walkdir's root, followed when it is a link, and nothing
        // when it is no longer a folder.
        match fs::metadata(&self.base).and_then(|meta| {
            meta.is_dir()
                .then(|| self.read_folder(&self.base, self.dir))
                .transpose()
        }) {
            Ok(Some(steps)) => stack.push(Level {
                rel: self.dir.clone(),
                steps: steps.into_iter(),
            }),
            Ok(None) => return,
            Err(e) => batch.push(Err(fault(self.dir.clone(), e.to_string()))),
        }
        while let Some(level) = stack.last_mut() {
            // A stopped job closes the channel; the walk ends here rather than at the tree's
            // end, which can be minutes away and would hold up the service's exit.
            if out.is_closed() {
                return;
            }
            let Some(step) = level.steps.next() else {
                stack.pop();
                continue;
            };
            let item = match step {
                Step::File { name, size, mtime } => {
                    Ok(SourceObject::new(level.rel.join(&name), size, mtime))
                }
                Step::Fault { path, message } => Err(fault(path, message)),
                Step::Folder { name, path } => {
                    let rel = level.rel.join(&name);
                    match self.read_folder(&path, &rel) {
                        Ok(steps) => {
                            stack.push(Level {
                                rel,
                                steps: steps.into_iter(),
                            });
                            continue;
                        }
                        Err(e) => Err(fault(rel, e.to_string())),
                    }
                }
                Step::Look { .. } | Step::Skip => continue,
            };
            batch.push(item);
            if batch.len() >= LIST_BATCH && out.blocking_send(std::mem::take(&mut batch)).is_err() {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = out.blocking_send(batch);
        }
    }

    /// A folder's entries in walk order, its files already looked at; an error when the
    /// folder cannot be opened. One vector holds the folder, sorted and then settled in place.
    fn read_folder(&self, path: &Path, rel: &RelPath) -> io::Result<Vec<Step>> {
        let mut faults = Vec::new();
        let mut steps = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = match entry {
                Ok(entry) => entry,
                // walkdir knew no path for these: they were reported at the unit.
                Err(e) => {
                    faults.push(Step::Fault {
                        path: self.dir.clone(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let name = name_bytes(&entry.file_name());
            match entry.file_type() {
                Ok(ty) => steps.push(Step::Look { name, entry, ty }),
                Err(e) => faults.push(Step::Fault {
                    path: rel.join(&name),
                    message: e.to_string(),
                }),
            }
        }
        // Only `Look`s so far, and names are unique in a folder: one order, however sorted.
        steps.sort_unstable_by(|a, b| a.name().cmp(b.name()));
        let mut looks = 0;
        for step in &mut steps {
            let Step::Look { name, entry, ty } = step else {
                continue;
            };
            // Links to folders are never followed, as in the original.
            if ty.is_dir() {
                *step = if self.recursive && self.enters(&rel.join(name)) {
                    let (name, path) = (std::mem::take(name), entry.path());
                    Step::Folder { name, path }
                } else {
                    Step::Skip
                };
                continue;
            }
            let before = (self.after).is_some_and(|after| rel.join(name).walk_cmp(after).is_le());
            if before || (ty.is_symlink() && !self.allow_symlinks) {
                *step = Step::Skip;
                continue;
            }
            looks += 1;
        }
        self.look_all(&mut steps, looks, rel);
        // walkdir put the faults of a folder first, in the order they came.
        if !faults.is_empty() {
            faults.append(&mut steps);
            steps = faults;
        }
        Ok(steps)
    }

    /// On resume, whole sub-trees before the checkpoint are skipped.
    fn enters(&self, folder: &RelPath) -> bool {
        self.after
            .is_none_or(|after| folder.walk_cmp(after).is_gt() || after.is_within(folder))
    }

    /// Turns every `Look` into a `File`, a `Fault` or a `Skip`, on up to
    /// [`MAX_LOOK_THREADS`] threads when the folder is large.
    fn look_all(&self, steps: &mut [Step], looks: usize, rel: &RelPath) {
        let settle_all = |part: &mut [Step]| {
            for step in part {
                if matches!(step, Step::Look { .. }) {
                    *step = settle(std::mem::replace(step, Step::Skip), rel);
                }
            }
        };
        let helpers = (looks / LOOKS_PER_THREAD).clamp(1, look_threads()) - 1;
        if helpers == 0 {
            settle_all(steps);
            return;
        }
        // Parts go to whichever thread asks next: a helper that starts late, or finds no free
        // core (a compile next to the scan), leaves its share to this thread instead of
        // holding up the folder, and a helper that cannot start at all leaves it everything.
        let parts = Mutex::new(steps.chunks_mut(LOOKS_PER_PART));
        let work = || {
            while let Some(part) = parts.lock().ok().and_then(|mut parts| parts.next()) {
                settle_all(part);
            }
        };
        std::thread::scope(|scope| {
            for _ in 0..helpers {
                let spawned = std::thread::Builder::new()
                    .name("ossimport-scan".into())
                    .spawn_scoped(scope, work);
                if let Err(e) = spawned {
                    tracing::debug!("scan: no helper thread ({e}); looking on fewer");
                    break;
                }
            }
            work();
        });
    }
}

/// A `Look` resolved: the file with its size and mtime, a fault, or nothing when the entry
/// is not a file (a link to a folder, a device, a socket).
fn settle(step: Step, rel: &RelPath) -> Step {
    let Step::Look { name, entry, ty } = step else {
        return step;
    };
    match file_meta(&entry, ty.is_symlink()) {
        Ok(Some(meta)) => Step::File {
            name,
            size: meta.len(),
            mtime: mtime_secs(&meta),
        },
        Ok(None) => Step::Skip,
        Err(e) => Step::Fault {
            path: rel.join(&name),
            message: e.to_string(),
        },
    }
}

/// The metadata of an entry that is a file to upload, links followed (when a link is listed
/// at all); `None` for anything else.
fn file_meta(entry: &fs::DirEntry, symlink: bool) -> io::Result<Option<fs::Metadata>> {
    let mut meta = if symlink {
        fs::metadata(entry.path())?
    } else {
        // Relative to the open folder, and not followed...
        entry.metadata()?
    };
    // ...so a file replaced by a link since the folder was read is looked at through the link,
    // as the walk by path did.
    if meta.file_type().is_symlink() {
        meta = fs::metadata(entry.path())?;
    }
    Ok(meta.is_file().then_some(meta))
}

fn fault(path: RelPath, message: String) -> Error {
    Error::Listing {
        path,
        reason: Reason::ReadError,
        locator: None,
        message,
    }
}

/// Threads that may look at one folder's files: the cores there are, up to
/// [`MAX_LOOK_THREADS`].
fn look_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_LOOK_THREADS)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use walkdir::WalkDir;

    use super::super::LocalSource;
    use super::*;
    use crate::source::ScanUnit;

    /// An item as compared: the path, then the size and mtime of a file or a fault's message.
    type Seen = (String, std::result::Result<(u64, i64), String>);

    fn seen(items: Vec<crate::error::Result<SourceObject>>) -> Vec<Seen> {
        items
            .into_iter()
            .map(|item| match item {
                Ok(obj) => (obj.path.to_string(), Ok((obj.size, obj.mtime))),
                Err(Error::Listing { path, message, .. }) => (path.to_string(), Err(message)),
                Err(e) => panic!("not a listing fault: {e}"),
            })
            .collect()
    }

    fn listed(root: &Path, unit: &ScanUnit, after: Option<&RelPath>, links: bool) -> Vec<Seen> {
        let source = LocalSource::new(root.to_path_buf(), links);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        source.list_blocking(unit, after.cloned(), &tx);
        drop(tx);
        let mut items = Vec::new();
        while let Some(batch) = rx.blocking_recv() {
            items.extend(batch);
        }
        seen(items)
    }

    #[cfg(unix)]
    fn path_bytes(path: &Path) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }

    #[cfg(not(unix))]
    fn path_bytes(path: &Path) -> Vec<u8> {
        path.to_string_lossy().replace('\\', "/").into_bytes()
    }

    /// The walkdir walk this module replaces, kept as the reference for its items and order.
    fn walkdir_listed(
        root: &Path,
        unit: &ScanUnit,
        after: Option<&RelPath>,
        links: bool,
    ) -> Vec<Seen> {
        let crate::source::Scope::Tree { dir, recursive } = &unit.scope else {
            unreachable!()
        };
        let base = LocalSource::new(root.to_path_buf(), links).full_path(dir);
        let mut walker = WalkDir::new(&base)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name();
        if !recursive {
            walker = walker.max_depth(1);
        }
        let rel_of = |p: &Path| -> RelPath {
            match p.strip_prefix(&base) {
                Ok(stripped) if !stripped.as_os_str().is_empty() => dir.join(&path_bytes(stripped)),
                _ => dir.clone(),
            }
        };
        let iter = walker.into_iter().filter_entry(|e| {
            let Some(after) = after else { return true };
            if !e.file_type().is_dir() {
                return true;
            }
            let rel = rel_of(e.path());
            rel.walk_cmp(after).is_gt() || after.is_within(&rel)
        });
        let mut items = Vec::new();
        for entry in iter {
            let item = match entry {
                Ok(entry) if entry.file_type().is_dir() => continue,
                Ok(entry) => {
                    let rel = rel_of(entry.path());
                    if after.is_some_and(|a| rel.walk_cmp(a).is_le()) {
                        continue;
                    }
                    if entry.path_is_symlink() && !links {
                        continue;
                    }
                    match fs::metadata(entry.path()) {
                        Ok(meta) if meta.is_file() => {
                            Ok(SourceObject::new(rel, meta.len(), mtime_secs(&meta)))
                        }
                        Ok(_) => continue,
                        Err(e) => Err(fault(rel, e.to_string())),
                    }
                }
                Err(e) => {
                    let path = e.path().map_or_else(|| base.clone(), Path::to_path_buf);
                    let message = e
                        .io_error()
                        .map_or_else(|| e.to_string(), ToString::to_string);
                    Err(fault(rel_of(&path), message))
                }
            };
            items.push(item);
        }
        seen(items)
    }

    /// Names whose byte order and component order could disagree, links of every kind, a
    /// socket, an empty folder, and a folder large enough to be looked at on several threads.
    fn tricky_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for folder in ["m/y/deeper", "m.o.d", "empty", "big", "0"] {
            fs::create_dir_all(root.join(folder)).unwrap();
        }
        for (file, len) in [
            ("a", 1),
            ("m-n", 2),
            ("m.o", 3),
            ("m/x", 4),
            ("m/y/z", 5),
            ("m/y/deeper/w", 6),
            ("m.o.d/q", 7),
            ("zz", 8),
        ] {
            fs::write(root.join(file), vec![b'x'; len]).unwrap();
        }
        for i in 0..700 {
            fs::write(root.join(format!("big/f{i:04}")), vec![b'y'; i % 7]).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            std::os::unix::fs::symlink(root.join("a"), root.join("link-file")).unwrap();
            std::os::unix::fs::symlink(root.join("m"), root.join("link-dir")).unwrap();
            std::os::unix::fs::symlink(root.join("gone"), root.join("link-broken")).unwrap();
            std::os::unix::fs::symlink(root.join("m/x"), root.join("m/y/link-x")).unwrap();
            std::os::unix::net::UnixListener::bind(root.join("m/sock")).unwrap();
            let odd = std::ffi::OsStr::from_bytes(b"m/\xff\xfe-not-utf8");
            fs::write(root.join(odd), b"odd").unwrap();
        }
        dir
    }

    #[test]
    fn lists_what_the_walkdir_walk_listed_from_every_resume_point() {
        let tree = tricky_tree();
        let root = tree.path();
        let rel = |s: &str| RelPath(s.as_bytes().to_vec());
        let units = [
            ScanUnit::tree(rel(""), true),
            ScanUnit::tree(rel(""), false),
            ScanUnit::tree(rel("m"), true),
            ScanUnit::tree(rel("big"), true),
            ScanUnit::tree(rel("empty"), true),
            // Gone since the units were made: a fault at the unit; a file: nothing.
            ScanUnit::tree(rel("gone"), true),
            ScanUnit::tree(rel("a"), true),
        ];
        for links in [false, true] {
            for unit in &units {
                let all = walkdir_listed(root, unit, None, links);
                // Every listed path, but only every 50th of the large folder's.
                let mut afters: Vec<RelPath> = (all.iter().enumerate())
                    .filter(|(i, (p, _))| !p.starts_with("big/") || i % 50 == 0)
                    .map(|(_, (p, _))| rel(p))
                    .collect();
                afters.extend(["0", "m", "m/y", "m/y/deeper", "big", "empty", "zzz"].map(rel));
                afters.push(RelPath(b"m/\xff".to_vec()));
                assert_eq!(
                    listed(root, unit, None, links),
                    all,
                    "{} links={links}",
                    unit.id
                );
                for after in &afters {
                    assert_eq!(
                        listed(root, unit, Some(after), links),
                        walkdir_listed(root, unit, Some(after), links),
                        "{} after {after} links={links}",
                        unit.id
                    );
                }
            }
        }
        let all = listed(root, &units[0], None, true);
        assert!(all.iter().any(|(p, _)| p == "link-file"), "{all:?}");
        assert!(
            all.iter().any(|(p, r)| p == "link-broken" && r.is_err()),
            "{all:?}"
        );
        assert_eq!(
            all.iter().filter(|(p, _)| p.starts_with("big/")).count(),
            700
        );
        let gone = listed(root, &units[5], None, false);
        assert!(
            matches!(&gone[..], [(p, Err(_))] if p == "gone"),
            "{gone:?}"
        );
    }
}
