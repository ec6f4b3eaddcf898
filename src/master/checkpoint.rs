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
        format!(
            "{MAGIC}\nunit={}\nlast={}\nseen={}\nfiles={}\nbytes={}\ntasks={}\nfinished={}\n",
            escape(self.unit.as_bytes()),
            self.last
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            self.seen,
            self.files,
            self.bytes,
            self.tasks,
            self.finished
        )
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
        };
        assert_eq!(
            Checkpoint::parse(&cpt.to_text(), Path::new("x.cpt")).unwrap(),
            cpt
        );
        assert_eq!(unit_hash("tree:a").len(), 32);
    }
}
