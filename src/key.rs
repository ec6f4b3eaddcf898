//! Source path → OSS object key (`destPrefix` + relative path), and OSS's key rules.

use crate::source::RelPath;

/// OSS's limit on a key's length in bytes.
pub const MAX_KEY_BYTES: usize = 1023;

/// The object key for `path`, or why there can be none (that file fails; the job goes on).
///
/// # Errors
/// A message for error.list when the key breaks OSS's rules: empty, not UTF-8, starting with
/// `/` or `\`, or longer than 1023 bytes.
pub fn object_key(dest_prefix: &str, path: &RelPath) -> Result<String, String> {
    let rel = std::str::from_utf8(path.as_bytes())
        .map_err(|_| "the file name is not valid UTF-8; OSS keys must be UTF-8".to_string())?;
    let key = format!("{dest_prefix}{rel}");
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err("OSS keys cannot start with `/` or `\\`".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes; OSS allows at most {MAX_KEY_BYTES}: shorten the path or destPrefix",
            key.len()
        ));
    }
    Ok(key)
}

/// Content-Type for a key, from its extension.
pub fn content_type(key: &str) -> String {
    mime_guess::from_path(key)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_validates_keys() {
        let p = |s: &[u8]| RelPath(s.to_vec());
        assert_eq!(
            object_key("docs/", &p(b"a/b c.txt")).unwrap(),
            "docs/a/b c.txt"
        );
        assert_eq!(
            object_key("", &p("文件.txt".as_bytes())).unwrap(),
            "文件.txt"
        );
        assert!(object_key("", &p(b"")).unwrap_err().contains("empty"));
        assert!(
            object_key("", &p(b"\\x"))
                .unwrap_err()
                .contains("cannot start")
        );
        assert!(
            object_key("", &p(b"bad\xff"))
                .unwrap_err()
                .contains("UTF-8")
        );
        let long = vec![b'a'; 1024];
        assert!(
            object_key("", &p(&long))
                .unwrap_err()
                .contains("1024 bytes")
        );
        assert!(object_key("", &p(&long[..1023])).is_ok());
    }

    #[test]
    fn content_type_comes_from_the_extension() {
        assert_eq!(content_type("a/b.html"), "text/html");
        assert_eq!(content_type("a/b.jpg"), "image/jpeg");
        assert_eq!(content_type("a/noext"), "application/octet-stream");
    }
}
