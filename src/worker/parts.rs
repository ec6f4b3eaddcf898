//! What multipart upload and verification both need to know about parts: the part size
//! actually used, and the checksums (ETag, CRC-64) an object of such parts must have. Kept
//! apart so that neither `multipart` nor `verify` imports the other.

use md5::{Digest, Md5};

/// S3 and OSS allow at most this many parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// The part size actually used: the configured one, grown to stay within 10,000 parts.
pub fn part_size(file_size: u64, configured: u64) -> u64 {
    configured.max(file_size.div_ceil(MAX_PARTS)).max(1)
}

/// The checksums of what was sent (or of the file, for an audit job).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// The ETag an S3 store gives these bytes: `<md5 hex>` or `<md5 of part md5s>-N`.
    pub etag: Option<String>,
    pub crc64: Option<u64>,
}

/// `md5(concat(part md5s))-N`, the ETag S3 stores give a multipart upload.
pub fn multipart_etag(part_md5s: impl Iterator<Item = [u8; 16]>) -> String {
    let mut md5 = Md5::new();
    let mut n = 0;
    for d in part_md5s {
        md5.update(d);
        n += 1;
    }
    format!("{}-{n}", hex(&md5.finalize()))
}

pub use crate::payload::hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_to_stay_within_ten_thousand_parts() {
        assert_eq!(part_size(100, 50), 50);
        let huge = 10_000 * 50 + 1;
        assert_eq!(part_size(huge, 50), 51);
        assert!(huge.div_ceil(part_size(huge, 50)) <= MAX_PARTS);
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        let a: [u8; 16] = Md5::digest(b"part one").into();
        let b: [u8; 16] = Md5::digest(b"part two").into();
        let mut cat = Vec::new();
        cat.extend_from_slice(&a);
        cat.extend_from_slice(&b);
        assert_eq!(
            multipart_etag([a, b].into_iter()),
            format!("{}-2", hex(&Md5::digest(&cat)))
        );
    }
}
