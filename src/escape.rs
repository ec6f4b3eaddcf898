//! Escaping of file paths into one printable line, and back, for every task file format.
//!
//! Paths are bytes (a local file name need not be UTF-8), while task files are UTF-8 text
//! with one record per line: `\` becomes `\\`, control characters and bytes that are not
//! UTF-8 become `\xNN`. Everything else, spaces and non-ASCII letters included, stays as is,
//! so the files remain readable.

use std::fmt::Write;

pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02X}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}

/// The inverse of [`escape`]; `None` on a malformed escape.
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1)? {
            b'\\' => {
                out.push(b'\\');
                i += 2;
            }
            b'x' => {
                let hex = text.get(i + 2..i + 4)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_names() {
        let names: [&[u8]; 6] = [
            b"plain/file.txt",
            "dir with space/ünïcødé 文件.txt".as_bytes(),
            b"tab\there\nnewline\\back",
            b"+ % # ?&=.bin",
            b"bad\xff\xfeutf8",
            b"",
        ];
        for name in names {
            let line = escape(name);
            assert!(!line.contains('\n') && !line.contains('\t'), "{line}");
            assert_eq!(unescape(&line).as_deref(), Some(name), "{line}");
        }
        assert_eq!(escape("a b/ü".as_bytes()), "a b/ü");
    }

    #[test]
    fn rejects_malformed_escapes() {
        assert_eq!(unescape("a\\q"), None);
        assert_eq!(unescape("a\\x4"), None);
        assert_eq!(unescape("trailing\\"), None);
    }
}
