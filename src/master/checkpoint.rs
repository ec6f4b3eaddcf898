//! The scan checkpoint of one unit (`checkpoints/<round>/<hash>.cpt`): where its listing
//! stopped, as the last file of the last persisted task, and how many entries of the unit's
//! listing that file was into (`seen`: sources not ordered by path resume by it).
//!
//! Format (key=value lines, paths escaped as in TASK):
//! ```text
//! # ossimport-rs scan checkpoint v1
//! unit=tree:photos
//! last=photos/2019/img_0042.jpg
//! seen=1250
//! files=1200
//! bytes=73400320
//! tasks=3
//! finished=false
//! ```

use std::path::Path;

use md5::{Digest, Md5};

use crate::error::{Error, IoContext, Result};
use crate::escape::{escape, unescape};
use crate::source::RelPath;
use crate::workdir::write_atomic;

const MAGIC: &str = "# ossimport-rs scan checkpoint v1";

/// The task a checkpoint was advanced for before the task was written (write-ahead): it holds
/// once a task with `hash` exists; otherwise the crash came first and the checkpoint goes back
/// to the position before it. So a restart never splits the same range twice, even when the
/// source changed in between and the re-made task would have another hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unconfirmed {
    pub hash: String,
    pub last: Option<RelPath>,
    pub seen: u64,
    pub files: u64,
    pub bytes: u64,
    pub tasks: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub unit: String,
    pub last: Option<RelPath>,
    /// Entries of the unit's listing up to and including `last`, filtered ones included.
    pub seen: u64,
    pub files: u64,
    pub bytes: u64,
    pub tasks: u64,
    pub finished: bool,
    pub unconfirmed: Option<Unconfirmed>,
}

/// The checkpoint file's name for a unit: upper-case hex MD5 of its id, as the original's.
pub fn unit_hash(unit_id: &str) -> String {
    Md5::digest(unit_id.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

impl Checkpoint {
    pub fn to_text(&self) -> String {
        let path = |p: &Option<RelPath>| p.as_ref().map(ToString::to_string).unwrap_or_default();
        let mut text = format!(
            "{MAGIC}\nunit={}\nlast={}\nseen={}\nfiles={}\nbytes={}\ntasks={}\nfinished={}\n",
            escape(self.unit.as_bytes()),
            path(&self.last),
            self.seen,
            self.files,
            self.bytes,
            self.tasks,
            self.finished
        );
        if let Some(u) = &self.unconfirmed {
            text.push_str(&format!(
                "unconfirmed={}\nprev_last={}\nprev={} {} {} {}\n",
                u.hash,
                path(&u.last),
                u.seen,
                u.files,
                u.bytes,
                u.tasks
            ));
        }
        text
    }

    /// Moves the checkpoint past `files` (the next task, hash `hash`, ending `seen` entries
    /// into the listing), remembering where it was until that task is known to exist.
    pub fn advance(&mut self, hash: String, files: &[crate::source::SourceObject], seen: u64) {
        self.unconfirmed = Some(Unconfirmed {
            hash,
            last: self.last.clone(),
            seen: self.seen,
            files: self.files,
            bytes: self.bytes,
            tasks: self.tasks,
        });
        self.last = files.last().map(|f| f.path.clone()).or(self.last.take());
        self.seen = seen;
        self.files += files.len() as u64;
        self.bytes += files.iter().map(|f| f.size).sum::<u64>();
        self.tasks += 1;
    }

    /// Settles a write-ahead advance after a restart: kept when its task exists, else undone.
    pub fn settle(&mut self, task_exists: bool) {
        if let Some(u) = self.unconfirmed.take()
            && !task_exists
        {
            self.last = u.last;
            self.seen = u.seen;
            self.files = u.files;
            self.bytes = u.bytes;
            self.tasks = u.tasks;
        }
    }

    /// # Errors
    /// When the file is not a checkpoint of this format.
    pub fn parse(text: &str, path: &Path) -> Result<Checkpoint> {
        let bad = |what: &str| Error::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "{what}; delete this file to rescan its folder (files already split are not repeated)"
            ),
        };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("not an ossimport-rs checkpoint"));
        }
        let mut cpt = Checkpoint::default();
        for line in lines {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad("expected key=value"))?;
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad("bad number"));
            match k {
                "unit" => {
                    cpt.unit = String::from_utf8_lossy(&unescape(v).ok_or_else(|| bad("bad unit"))?)
                        .into_owned()
                }
                "last" if v.is_empty() => cpt.last = None,
                "last" => {
                    cpt.last = Some(RelPath(unescape(v).ok_or_else(|| bad("bad last path"))?))
                }
                "seen" => cpt.seen = num(v)?,
                "files" => cpt.files = num(v)?,
                "bytes" => cpt.bytes = num(v)?,
                "tasks" => cpt.tasks = num(v)?,
                "finished" => cpt.finished = v == "true",
                "unconfirmed" => {
                    cpt.unconfirmed
                        .get_or_insert_with(Unconfirmed::default)
                        .hash = v.to_string()
                }
                "prev_last" if !v.is_empty() => {
                    cpt.unconfirmed
                        .get_or_insert_with(Unconfirmed::default)
                        .last = Some(RelPath(
                        unescape(v).ok_or_else(|| bad("bad prev_last path"))?,
                    ))
                }
                "prev" => {
                    let n: Vec<u64> = v.split(' ').map(num).collect::<Result<_>>()?;
                    let [seen, files, bytes, tasks] = n[..] else {
                        return Err(bad("bad prev"));
                    };
                    let u = cpt.unconfirmed.get_or_insert_with(Unconfirmed::default);
                    (u.seen, u.files, u.bytes, u.tasks) = (seen, files, bytes, tasks);
                }
                _ => {}
            }
        }
        Ok(cpt)
    }

    /// The checkpoint at `path`, or a fresh one when there is none yet.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn load(path: &Path, unit: &str) -> Result<Checkpoint> {
        match std::fs::read_to_string(path) {
            Ok(text) => Checkpoint::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoint {
                unit: unit.to_string(),
                ..Checkpoint::default()
            }),
            Err(e) => Err(e).ctx("cannot read checkpoint", path),
        }
    }

    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_text().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips() {
        let cpt = Checkpoint {
            unit: "tree:a b".into(),
            last: Some(RelPath(b"a b/c\nd".to_vec())),
            seen: 4,
            files: 3,
            bytes: 9,
            tasks: 1,
            finished: true,
            unconfirmed: None,
        };
        assert_eq!(
            Checkpoint::parse(&cpt.to_text(), Path::new("x.cpt")).unwrap(),
            cpt
        );
        let mut ahead = cpt.clone();
        let next = [crate::source::SourceObject::new(
            RelPath(b"z y".to_vec()),
            5,
            0,
        )];
        ahead.advance("ABC".into(), &next, 9);
        assert_eq!(
            Checkpoint::parse(&ahead.to_text(), Path::new("x.cpt")).unwrap(),
            ahead
        );
        assert_eq!(
            (ahead.seen, ahead.files, ahead.bytes, ahead.tasks),
            (9, 4, 14, 2)
        );
        let mut kept = ahead.clone();
        kept.settle(true);
        assert_eq!(kept.last, Some(RelPath(b"z y".to_vec())));
        ahead.settle(false);
        assert_eq!(ahead, cpt, "undone to where it was");
        assert_eq!(unit_hash("tree:a").len(), 32);
    }
}
