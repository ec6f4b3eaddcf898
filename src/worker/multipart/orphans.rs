//! Multipart uploads nothing will finish: the ones a crash left before their id was recorded
//! (aborted before a new upload of the same key), and the ones a job's state records (for
//! `clean` to abort).

use std::fs;
use std::path::Path;

use super::UploadRecord;
use crate::dest::OpenUpload;
use crate::source::RelPath;
use crate::worker::JobContext;

/// Aborts the uploads of `key` the store holds open although no record of this job knows
/// them: left by a crash between CreateMultipartUpload and writing `UPLOAD`, their parts
/// would be billed for ever. Best effort: a failure only costs storage, so it is logged.
pub(super) async fn abort_strays(ctx: &JobContext, key: &str) {
    let open = match ctx.dest.list_multipart_uploads(key).await {
        Ok(Some(open)) => open,
        // The store cannot list them (s3s-fs); nothing to look for.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("could not look for stray multipart uploads of `{key}`: {e}");
            return;
        }
    };
    for stray in uploads_of(&open, key) {
        match ctx.dest.abort_multipart(key, &stray.upload_id).await {
            Ok(()) => tracing::info!(
                key,
                upload_id = stray.upload_id,
                "aborted a stray multipart upload no record knew of"
            ),
            Err(e) => tracing::warn!("could not abort a stray multipart upload of `{key}`: {e}"),
        }
    }
}

/// The uploads of exactly `key`: the listing is by prefix, so `a.bin` also lists `a.bin.1`.
fn uploads_of<'a>(open: &'a [OpenUpload], key: &'a str) -> impl Iterator<Item = &'a OpenUpload> {
    open.iter().filter(move |u| u.key == key)
}

/// A multipart upload a job's state records: the file it is for and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownUpload {
    pub path: RelPath,
    pub upload_id: String,
}

/// Every upload recorded under `multipart_dir` (a job's [`crate::workdir::WorkDir::multipart_dir`]),
/// sorted by path; records that cannot be read are left out, since no id can be had from them.
pub fn known_uploads(multipart_dir: &Path) -> Vec<KnownUpload> {
    let Ok(entries) = fs::read_dir(multipart_dir) else {
        return Vec::new();
    };
    let mut known: Vec<KnownUpload> = entries
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("UPLOAD")).ok())
        .filter_map(|text| UploadRecord::parse(&text))
        .map(|r| KnownUpload {
            path: r.path,
            upload_id: r.upload_id,
        })
        .collect();
    known.sort_by(|a, b| a.path.cmp(&b.path));
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uploads_of_exactly_the_key_are_strays() {
        let open = |key: &str, id: &str| OpenUpload {
            key: key.into(),
            upload_id: id.into(),
        };
        let listed = [
            open("big.bin", "1"),
            open("big.bin.1", "2"),
            open("big.bin/x", "3"),
            open("big.bin", "4"),
        ];
        let ids: Vec<&str> = uploads_of(&listed, "big.bin")
            .map(|u| u.upload_id.as_str())
            .collect();
        assert_eq!(ids, ["1", "4"]);
    }

    #[test]
    fn known_uploads_reads_every_record_and_skips_unreadable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let record = |path: &[u8], id: &str| UploadRecord {
            path: RelPath(path.to_vec()),
            size: 1,
            mtime: 2,
            version: None,
            part_size: 1,
            upload_id: id.into(),
        };
        for (folder, r) in [
            ("B", record(b"z/two", "id-2")),
            ("A", record(b"a b", "id-1")),
        ] {
            fs::create_dir_all(dir.path().join(folder)).unwrap();
            fs::write(dir.path().join(folder).join("UPLOAD"), r.to_text()).unwrap();
        }
        fs::create_dir_all(dir.path().join("C")).unwrap();
        fs::write(dir.path().join("C/UPLOAD"), "not a record").unwrap();
        fs::create_dir_all(dir.path().join("D")).unwrap();
        let known = known_uploads(dir.path());
        let got: Vec<(&[u8], &str)> = known
            .iter()
            .map(|k| (k.path.as_bytes(), k.upload_id.as_str()))
            .collect();
        assert_eq!(got, [(&b"a b"[..], "id-1"), (&b"z/two"[..], "id-2")]);
        assert!(known_uploads(&dir.path().join("missing")).is_empty());
    }
}
