//! The Java properties syntax: a conf file's text into `key=value` entries with line numbers.
//!
//! The syntax is parsed here rather than with the `java-properties` crate because that crate
//! reads UTF-8 only through an `encoding_rs` value it does not re-export, and the conf files
//! are UTF-8 (Chinese comments). The rules are those of `java.util.Properties.load`.

use std::path::Path;

use super::ConfigError;

/// One `key=value` of the file, unescaped, value not yet trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line on which the entry starts.
    pub line: usize,
}

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
    let mut text = String::with_capacity(bytes.len());
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if index > 0 {
            text.push('\n');
        }
        match std::str::from_utf8(line) {
            Ok(line) => text.push_str(line),
            Err(_) if is_comment(&String::from_utf8_lossy(line)) => {
                text.push_str(&String::from_utf8_lossy(line));
            }
            Err(_) => {
                return Err(ConfigError::new(
                    path,
                    "this line is not UTF-8 text; save the file with UTF-8 encoding",
                )
                .at_line(Some(index + 1)));
            }
        }
    }
    Ok(text)
}

fn is_java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

fn is_comment(line: &str) -> bool {
    matches!(
        line.trim_start_matches(is_java_space).chars().next(),
        Some('#' | '!')
    )
}

/// Splits `text` into entries, following `Properties.load`: `#`/`!` comments, `\` line
/// continuation, `=`, `:` or whitespace as separator, and `\t \n \r \f \uXXXX` escapes.
pub(crate) fn parse_entries(text: &str, path: &Path) -> Result<Vec<Entry>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let first = first.trim_start_matches(is_java_space);
        if first.is_empty() || is_comment(first) {
            continue;
        }
        let mut logical = String::from(first);
        // An odd number of trailing backslashes escapes the line break.
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start_matches(is_java_space)),
                None => break,
            }
        }
        let line = index + 1;
        let (key, value) = split_key_value(&logical);
        let located = |message: String| ConfigError::new(path, message).at_line(Some(line));
        entries.push(Entry {
            key: unescape(key).map_err(located)?,
            value: unescape(value).map_err(located)?,
            line,
        });
    }
    Ok(entries)
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    let mut rest = "";
    let mut has_separator = false;
    for (i, c) in line.char_indices() {
        if !escaped && (c == '=' || c == ':' || is_java_space(c)) {
            key_end = i;
            has_separator = !is_java_space(c);
            rest = &line[i + c.len_utf8()..];
            break;
        }
        escaped = c == '\\' && !escaped;
    }
    let mut value = rest.trim_start_matches(is_java_space);
    if !has_separator && let Some(stripped) = value.strip_prefix(['=', ':']) {
        value = stripped.trim_start_matches(is_java_space);
    }
    (&line[..key_end], value)
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut units: Vec<u16> = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush_units(&mut units, &mut out)?;
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let unit = (hex.len() == 4)
                    .then(|| u16::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| {
                        format!("malformed escape `\\u{hex}`; write \\u followed by 4 hex digits")
                    })?;
                // Java strings are UTF-16, so a character outside the BMP arrives as a pair.
                units.push(unit);
            }
            other => {
                flush_units(&mut units, &mut out)?;
                match other {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('f') => out.push('\u{c}'),
                    Some(c) => out.push(c),
                    None => {}
                }
            }
        }
    }
    flush_units(&mut units, &mut out)?;
    Ok(out)
}

fn flush_units(units: &mut Vec<u16>, out: &mut String) -> Result<(), String> {
    if units.is_empty() {
        return Ok(());
    }
    let decoded = String::from_utf16(units)
        .map_err(|_| "a \\u escape is half of a surrogate pair; write both halves".to_string())?;
    out.push_str(&decoded);
    units.clear();
    Ok(())
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
        let text = "a=one \\\n    two\nb=c:\\\\dir\\\\\nc=\\u4e2d\\u6587\\t!\nd\\=x=1\n# x \\\ne=\\uD83D\\uDE00\n";
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
        for bad in ["k=\\u12", "k=\\uzzzz", "k=\\uD83D"] {
            let err = parse_entries(&format!("# c\n{bad}\n"), Path::new("t.cfg")).unwrap_err();
            assert_eq!(err.line, Some(2), "{bad}");
            assert!(err.message.contains("\\u"), "{}", err.message);
        }
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
