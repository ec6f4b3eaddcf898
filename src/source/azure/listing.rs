//! One List Blobs answer (`EnumerationResults`, "List Blobs" in the Blob service REST
//! reference) read into our objects, the folders of a delimited listing and the next marker.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

use super::conn::{md5_hex, quoted};
use crate::source::rest::mtime;
use crate::source::{RelPath, SourceObject};

pub(super) struct Page {
    pub(super) objects: Vec<SourceObject>,
    /// Full names of the folders (`BlobPrefix`), ending in the delimiter.
    pub(super) prefixes: Vec<String>,
    pub(super) next_marker: Option<String>,
}

#[derive(Default)]
struct Blob {
    name: String,
    size: u64,
    mtime: i64,
    etag: Option<String>,
    md5: Option<String>,
}

/// Reads one page; `rel` turns a blob's full name into its path under srcPrefix.
pub(super) fn parse_page(xml: &str, rel: impl Fn(&str) -> RelPath) -> Result<Page, String> {
    let mut reader = Reader::from_str(xml);
    let mut page = Page {
        objects: Vec::new(),
        prefixes: Vec::new(),
        next_marker: None,
    };
    // The open elements, and the text of the innermost one.
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    // A name is percent-encoded when it holds characters XML 1.0 cannot carry.
    let mut encoded = false;
    let mut blob = Blob::default();
    let bad = |e: &dyn std::fmt::Display| format!("the listing is not the XML Azure sends: {e}");
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                encoded = name == "Name"
                    && e.try_get_attribute("Encoded")
                        .ok()
                        .flatten()
                        .is_some_and(|a| a.value.as_ref() == b"true");
                if name == "Blob" {
                    blob = Blob::default();
                }
                stack.push(name);
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| bad(&e))?),
            Event::CData(t) => text.push_str(&t.decode().map_err(|e| bad(&e))?),
            Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| bad(&e))? {
                Some(c) => text.push(c),
                None => {
                    let name = r.decode().map_err(|e| bad(&e))?;
                    let known = resolve_predefined_entity(&name);
                    text.push_str(known.ok_or_else(|| bad(&format!("unknown entity &{name};")))?);
                }
            },
            Event::End(_) => {
                let Some(name) = stack.pop() else {
                    return Err(bad(&"an end tag without a start"));
                };
                let parent = stack.last().map(String::as_str);
                let value = std::mem::take(&mut text);
                match (parent, name.as_str()) {
                    (Some("Blob"), "Name") => blob.name = decoded(value, encoded)?,
                    (Some("BlobPrefix"), "Name") => page.prefixes.push(decoded(value, encoded)?),
                    (Some("Properties"), "Content-Length") => {
                        blob.size = value.trim().parse().map_err(|e| bad(&e))?;
                    }
                    (Some("Properties"), "Last-Modified") => blob.mtime = mtime(&value),
                    (Some("Properties"), "Etag") => blob.etag = Some(quoted(value.trim())),
                    (Some("Properties"), "Content-MD5") => blob.md5 = md5_hex(&value),
                    (Some("EnumerationResults"), "NextMarker") if !value.is_empty() => {
                        page.next_marker = Some(value);
                    }
                    (_, "Blob") => {
                        let b = std::mem::take(&mut blob);
                        let mut obj = SourceObject::new(rel(&b.name), b.size, b.mtime);
                        obj.version = b.etag;
                        obj.md5 = b.md5;
                        page.objects.push(obj);
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(page)
}

fn decoded(name: String, encoded: bool) -> Result<String, String> {
    if !encoded {
        return Ok(name);
    }
    percent_encoding::percent_decode_str(&name)
        .decode_utf8()
        .map(|n| n.into_owned())
        .map_err(|e| format!("blob name `{name}` is not UTF-8 once decoded: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_blobs_folders_and_the_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://h/" ContainerName="c"><Prefix>p/</Prefix>
<MaxResults>2</MaxResults><Blobs>
<Blob><Name>p/a &amp; b.txt</Name><Properties><Last-Modified>Tue, 03 Jan 2023 10:00:00 GMT</Last-Modified>
<Etag>0x8DB</Etag><Content-Length>12</Content-Length><Content-MD5>1B2M2Y8AsgTpgAmY7PhCfg==</Content-MD5></Properties></Blob>
<Blob><Name Encoded="true">p/%EF%BF%BEx</Name><Properties><Content-Length>0</Content-Length></Properties></Blob>
<BlobPrefix><Name>p/d/</Name></BlobPrefix></Blobs><NextMarker>2!m</NextMarker></EnumerationResults>"#;
        let page = parse_page(xml, |n| RelPath(n.as_bytes()[2..].to_vec())).unwrap();
        assert_eq!(page.objects.len(), 2);
        let a = &page.objects[0];
        assert_eq!(a.path, RelPath(b"a & b.txt".to_vec()));
        assert_eq!((a.size, a.mtime), (12, 1_672_740_000));
        assert_eq!(a.version.as_deref(), Some("\"0x8DB\""));
        assert_eq!(a.md5.as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"));
        assert_eq!(
            page.objects[1].path,
            RelPath("\u{fffe}x".as_bytes().to_vec())
        );
        assert_eq!(page.prefixes, ["p/d/"]);
        assert_eq!(page.next_marker.as_deref(), Some("2!m"));
    }
}
