//! `RelPath`: a file's path relative to the source root (`srcPrefix`), the name every module
//! uses for a file between listing and object key.

use std::fmt;

/// A file's path relative to `srcPrefix`, `/`-separated. Bytes, because a local file name
/// need not be UTF-8; whether it makes a valid OSS key is decided by [`crate::key`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(pub Vec<u8>);

impl RelPath {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Order of a sorted depth-first walk: component by component, so `a/b` < `a-c`.
    pub fn walk_cmp(&self, other: &RelPath) -> std::cmp::Ordering {
        self.0
            .split(|b| *b == b'/')
            .cmp(other.0.split(|b| *b == b'/'))
    }

    /// `self` joined with a child name.
    pub fn join(&self, name: &[u8]) -> RelPath {
        if self.0.is_empty() {
            return RelPath(name.to_vec());
        }
        let mut v = Vec::with_capacity(self.0.len() + 1 + name.len());
        v.extend_from_slice(&self.0);
        v.push(b'/');
        v.extend_from_slice(name);
        RelPath(v)
    }

    /// True when `self` is `dir` or lies under it.
    pub fn is_within(&self, dir: &RelPath) -> bool {
        dir.0.is_empty()
            || self.0 == dir.0
            || (self.0.starts_with(&dir.0) && self.0.get(dir.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::escape::escape(&self.0))
    }
}
