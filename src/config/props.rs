//! The Java properties syntax: a conf file's text into `key=value` entries with line numbers.
//!
//! The parsing itself (separators, `\` continuation, escapes) is the `java-properties` crate's,
//! decoding UTF-8 since the conf files are UTF-8 (Chinese comments). Two things are done before
//! the text reaches it, both line by line: [`read_text`] rejects a non-UTF-8 line unless it is
//! a comment, and [`parse_entries`] blanks comment lines, which carry no meaning but which the
//! crate would unescape (a `\users` in a commented-out Windows path would be an error).

use std::path::Path;

use java_properties::{LineContent, PropertiesError, PropertiesIter};

use super::ConfigError;

/// One `key=value` of the file, unescaped, value not yet trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line on which the entry starts.
    pub line: usize,
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// Reads the file as UTF-8. Comment lines in another encoding (GBK from a Chinese Windows
/// editor) are tolerated because they carry no meaning; anywhere else it is an error.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    let read = std::fs::read(path).map_err(|e| {
        ConfigError::new(
            path,
            format!("cannot read the file ({e}); check that the file exists and is readable"),
        )
    })?;
    let bytes = match String::from_utf8(read) {
        Ok(text) => return Ok(text),
        Err(not_utf8) => not_utf8.into_bytes(),
    };
    let body = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    let mut text = String::with_capacity(body.len());
    let mut comments = CommentLines::default();
    for (index, (line, end)) in physical_lines(body).enumerate() {
        let is_comment = comments.starts_comment(line);
        match std::str::from_utf8(line) {
            Ok(line) => text.push_str(line),
            Err(_) if is_comment => text.push_str(&String::from_utf8_lossy(line)),
            Err(_) => {
                return Err(ConfigError::new(
                    path,
                    "this line is not UTF-8 text; save the file with UTF-8 encoding",
                )
                .at_line(Some(index + 1)));
            }
        }
        // The line end is `\n`, `\r` or `\r\n`: ASCII.
        text.extend(end.iter().map(|b| char::from(*b)));
    }
    Ok(text)
}

/// Splits `text` into entries with `java_properties::PropertiesIter`, which follows
/// `Properties.load`: `#`/`!` comments, `\` line continuation, `=`, `:` or whitespace as
/// separator, and `\t \n \r \f \uXXXX` escapes.
pub(crate) fn parse_entries(text: &str, path: &Path) -> Result<Vec<Entry>, ConfigError> {
    let text = text.as_bytes();
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let mut input = Vec::with_capacity(text.len() + 1);
    let mut comments = CommentLines::default();
    for (line, end) in physical_lines(text) {
        // An emptied line keeps its line end, so the line numbers stay those of the file.
        if !comments.starts_comment(line) {
            input.extend_from_slice(line);
        }
        input.extend_from_slice(end);
    }
    // The crate drops a last line that ends in a continuation `\` without a line end;
    // `Properties.load` keeps it.
    input.push(b'\n');

    let mut entries = Vec::new();
    for line in PropertiesIter::new_with_encoding(input.as_slice(), encoding_rs::UTF_8) {
        let line = line.map_err(|e| syntax_error(&e, path))?;
        let number = line.line_number();
        if let LineContent::KVPair(key, value) = line.consume_content() {
            entries.push(Entry {
                key,
                value,
                line: number,
            });
        }
    }
    Ok(entries)
}

/// The crate's only parse errors are malformed `\uXXXX` escapes (reading a slice cannot fail).
fn syntax_error(e: &PropertiesError, path: &Path) -> ConfigError {
    let shown = e.to_string();
    // Its Display appends ` (line_number = N)`; the ConfigError carries the line itself.
    let what = shown
        .rsplit_once(" (line_number")
        .map_or(shown.as_str(), |(what, _)| what);
    ConfigError::new(
        path,
        format!(
            "{what} Write \\u followed by 4 hex digits of a character other than a surrogate, \
             or the character itself (the file is UTF-8)"
        ),
    )
    .at_line(e.line_number())
}

/// The physical lines of `bytes` with their line ends, which are `\n`, `\r` or `\r\n` as for
/// `Properties.load` (and `java-properties`, so the line numbers agree with its).
fn physical_lines(bytes: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .position(|b| matches!(b, b'\n' | b'\r'))
            .unwrap_or(rest.len());
        let end_len = match rest[end..] {
            [] => 0,
            [b'\r', b'\n', ..] => 2,
            _ => 1,
        };
        let (line, after) = rest.split_at(end);
        let (line_end, next) = after.split_at(end_len);
        rest = next;
        Some((line, line_end))
    })
}

/// Tells, line after line, which physical lines are comments: `#` or `!` after blanks, unless
/// the line before continues onto this one (`a=\` then `#b` is the value `#b`). Works on
/// bytes, as everything it looks at is ASCII.
#[derive(Default)]
struct CommentLines {
    continued: bool,
}

impl CommentLines {
    fn starts_comment(&mut self, line: &[u8]) -> bool {
        let first = line.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\x0c'));
        let comment = !self.continued && matches!(first, Some(b'#' | b'!'));
        // A comment never continues; any other line does when it ends in an odd number of `\`.
        let backslashes = line.iter().rev().take_while(|b| **b == b'\\').count();
        self.continued = !comment && backslashes % 2 == 1;
        comment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String, usize)> {
        parse_entries(text, Path::new("t.cfg"))
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value, e.line))
            .collect()
    }

    fn kv(key: &str, value: &str, line: usize) -> (String, String, usize) {
        (key.to_string(), value.to_string(), line)
    }

    #[test]
    fn separators_comments_and_lines() {
        let text = "#注释 comment\n! bang\n\n  a=1\nb : 2\nc 3\nd\ne=\nf = x = y\r\ng\t=\tz \n";
        assert_eq!(
            parse(text),
            vec![
                kv("a", "1", 4),
                kv("b", "2", 5),
                kv("c", "3", 6),
                kv("d", "", 7),
                kv("e", "", 8),
                kv("f", "x = y", 9),
                kv("g", "z ", 10),
            ]
        );
    }

    #[test]
    fn key_with_parentheses_and_slash() {
        assert_eq!(
            parse("workerMaxThroughput(KB/s)=100000000"),
            vec![kv("workerMaxThroughput(KB/s)", "100000000", 1)]
        );
    }

    #[test]
    fn continuation_and_escapes() {
        let text =
            "a=one \\\n    two\nb=c:\\\\dir\\\\\nc=\\u4e2d\\u6587\\t!\nd\\=x=1\n# x \\\ne=😀\n";
        assert_eq!(
            parse(text),
            vec![
                kv("a", "one two", 1),
                kv("b", "c:\\dir\\", 3),
                kv("c", "中文\t!", 4),
                kv("d=x", "1", 5),
                kv("e", "😀", 7),
            ]
        );
    }

    #[test]
    fn utf8_values_and_bom() {
        assert_eq!(
            parse("\u{feff}srcPrefix=/数据/\n"),
            vec![kv("srcPrefix", "/数据/", 1)]
        );
    }

    #[test]
    fn malformed_unicode_escape_is_located() {
        // java-properties decodes one UTF-16 unit per escape, so a surrogate pair is refused.
        for bad in ["k=\\u12", "k=\\uzzzz", "k=\\uD83D", "k=\\uD83D\\uDE00"] {
            let err = parse_entries(&format!("# c\n{bad}\n"), Path::new("t.cfg")).unwrap_err();
            assert_eq!(err.line, Some(2), "{bad}");
            assert!(err.message.contains("\\u"), "{}", err.message);
        }
    }

    #[test]
    fn comments_are_never_unescaped_but_a_continued_line_is_no_comment() {
        let text = "# srcPrefix=c:\\users\\u\\\n  ! \\uZZ\na=\\\n#b\nc=1\\\n!d=2\ne=\\\n\n#f=\\u\n";
        assert_eq!(
            parse(text),
            vec![kv("a", "#b", 3), kv("c", "1!d=2", 5), kv("e", "", 7)]
        );
    }

    #[test]
    fn cr_and_crlf_end_lines_like_properties_load() {
        assert_eq!(
            parse("a=1\rb=2\r\nc=3\n\rd=4"),
            vec![
                kv("a", "1", 1),
                kv("b", "2", 2),
                kv("c", "3", 3),
                kv("d", "4", 5)
            ]
        );
    }

    #[test]
    fn trailing_backslash_at_end_of_file() {
        assert_eq!(parse("a=1\\"), vec![kv("a", "1", 1)]);
    }

    #[test]
    fn read_text_reports_missing_file_and_bad_encoding() {
        let dir = std::env::temp_dir().join(format!("ossimport-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.cfg");
        let err = read_text(&missing).unwrap_err();
        assert_eq!(err.path, missing);
        assert!(
            err.message
                .contains("check that the file exists and is readable")
        );

        // GBK in a comment is harmless; in a value it would silently corrupt a path.
        let file = dir.join("gbk.cfg");
        std::fs::write(&file, b"#\xd6\xd0\xce\xc4\na=1\n").unwrap();
        assert!(read_text(&file).unwrap().ends_with("a=1\n"));
        std::fs::write(&file, b"a=1\nsrcPrefix=/\xd6\xd0/\n").unwrap();
        let err = read_text(&file).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("UTF-8"));
        // A `#` line continuing a value is part of the value, so GBK there is an error too.
        std::fs::write(&file, b"\xef\xbb\xbf#\xd6\xd0\r\na=\\\r\n#\xd6\xd0\r\n").unwrap();
        let err = read_text(&file).unwrap_err();
        assert_eq!(err.line, Some(3));
        // Through to the entries, with the GBK comment after the BOM.
        std::fs::write(&file, b"\xef\xbb\xbf#\xd6\xd0\\u\r\na=1\r\n").unwrap();
        let text = read_text(&file).unwrap();
        let entries = parse_entries(&text, &file).unwrap();
        assert_eq!(
            entries,
            vec![Entry {
                key: "a".into(),
                value: "1".into(),
                line: 2
            }]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
