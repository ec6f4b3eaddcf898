//! What travels over the queue: a task to run, a worker's reports to the tracker, and the
//! tracker's answers. JSON, so an operator can read a stream with the `nats` CLI.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::workdir::write_atomic;

/// A task on the tasks stream.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskMessage {
    /// The task's folder name (`<hash>_<millis>@localhost`).
    pub id: String,
    /// The job's settings as submitted (its job.toml, without any key).
    pub job: String,
    /// The TASK file; `None` when it is over the server's maximum payload and sits in the
    /// object store under `id`.
    pub task: Option<String>,
}

/// A worker's report, on the results stream of its job.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// The worker `host` starts (or takes over) the task; the answer goes to `reply`.
    Open {
        id: String,
        host: String,
        reply: String,
    },
    /// One file's result, as its audit.log line.
    File { id: String, line: String },
    /// A part of a large file is on the server; `upload` is the file's multipart checkpoint,
    /// so another worker can resume the upload at its parts.
    Part {
        id: String,
        bytes: u64,
        path: String,
        upload: Option<UploadState>,
    },
    /// The worker started every file it will; the answer goes to `reply`. `complete`: it ran
    /// every file (it was not stopped), so every file's result was sent before. `abort`: the
    /// job must stop, with this reason.
    End {
        id: String,
        crashed: Option<String>,
        complete: bool,
        abort: Option<String>,
        reply: String,
    },
    /// The worker `host` cannot open the job (`message`), or can again (`None`).
    Trouble {
        host: String,
        message: Option<String>,
    },
}

/// The tracker's answer to an Open or an End.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Which of the TASK's files (by position) already have a result, and the checkpoints of
    /// the unfinished multipart uploads of the others.
    Opened {
        done: Vec<u32>,
        uploads: Vec<UploadState>,
    },
    /// The task was finished (true) or left with files to do (false).
    Ended { finished: bool },
    /// The task is not dispatched (finished already, or its job was cleaned): drop it.
    Gone,
}

/// One file's multipart checkpoint folder (`worker/jobs/<job>/multipart/<dir>/`): its
/// `UPLOAD` and `part-NNNNN` files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    pub dir: String,
    pub files: Vec<(String, String)>,
}

/// Checkpoint folders are named by a hex hash and hold `UPLOAD` and `part-NNNNN` only: a
/// report cannot write anywhere else.
fn safe_names(state: &UploadState) -> bool {
    let dir_ok = !state.dir.is_empty() && state.dir.bytes().all(|b| b.is_ascii_hexdigit());
    dir_ok
        && state.files.iter().all(|(name, _)| {
            name == "UPLOAD"
                || name
                    .strip_prefix("part-")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

impl UploadState {
    /// Reads a checkpoint folder; `None` when it is missing or empty.
    pub fn read(multipart_dir: &Path, dir: &str) -> Option<UploadState> {
        let folder = multipart_dir.join(dir);
        let mut files = Vec::new();
        for name in crate::workdir::list_names(&folder).ok()? {
            if let Ok(text) = std::fs::read_to_string(folder.join(&name)) {
                files.push((name, text));
            }
        }
        let state = UploadState {
            dir: dir.to_string(),
            files,
        };
        (!state.files.is_empty() && safe_names(&state)).then_some(state)
    }

    /// Writes the checkpoint into `multipart_dir`, each file atomically.
    ///
    /// # Errors
    /// When a name is not a checkpoint's, or a file cannot be written.
    pub fn write(&self, multipart_dir: &Path) -> Result<()> {
        if !safe_names(self) {
            return Err(Error::Refused(format!(
                "a multipart checkpoint named `{}` is not one this version writes",
                self.dir
            )));
        }
        let folder = multipart_dir.join(&self.dir);
        std::fs::create_dir_all(&folder)
            .map_err(|e| Error::io("cannot create folder", &folder, e))?;
        for (name, text) in &self.files {
            write_atomic(&folder.join(name), text.as_bytes())?;
        }
        Ok(())
    }
}

/// Encodes a message.
pub fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    serde_json::to_vec(value)
        .expect("queue messages are plain data")
        .into()
}

/// Decodes a message, naming what it should have been when it is not.
///
/// # Errors
/// When the payload is not such a message (another version, or not ours).
pub fn decode<T: for<'a> Deserialize<'a>>(what: &str, payload: &[u8]) -> Result<T> {
    serde_json::from_slice(payload).map_err(|e| {
        Error::Refused(format!(
            "a message on the queue is not a {what} of this version ({e}); are the master and \
             the workers the same version?"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_travel_and_land_only_in_their_folder() {
        let from = tempfile::tempdir().unwrap();
        let dir = from.path().join("0A1B");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("UPLOAD"), "u").unwrap();
        std::fs::write(dir.join("part-00001"), "p1").unwrap();
        let state = UploadState::read(from.path(), "0A1B").unwrap();
        let back: UploadState = decode("checkpoint", &encode(&state)).unwrap();
        let to = tempfile::tempdir().unwrap();
        back.write(to.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(to.path().join("0A1B/part-00001")).unwrap(),
            "p1"
        );
        let evil = UploadState {
            dir: "../x".into(),
            files: vec![("UPLOAD".into(), String::new())],
        };
        assert!(evil.write(to.path()).is_err());
        let evil = UploadState {
            dir: "0A".into(),
            files: vec![("../../TASK".into(), String::new())],
        };
        assert!(evil.write(to.path()).is_err());
        assert!(UploadState::read(from.path(), "missing").is_none());
    }

    #[test]
    fn a_foreign_message_is_refused_in_words() {
        let e = decode::<Report>("report", b"{\"hello\":1}").unwrap_err();
        assert!(e.to_string().contains("same version"), "{e}");
    }
}
