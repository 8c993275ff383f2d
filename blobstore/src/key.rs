//! Object keys: what a valid key is, and how a fileserver's layout names it on disk or in a bucket.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Longest key accepted (S3 allows 1024 bytes; ours are ≤ ~100, so this only stops abuse).
pub const MAX_KEY_LEN: usize = 512;

/// A validated logical key such as `DQm…`, `U…_Cover_Match_100_100` or `sub/dir/name.ext`.
///
/// Allowed: ASCII letters, digits, `-`, `_`, `.` and `/` between non-empty segments; no segment may
/// start with `.` (so no `.`/`..` traversal and no hidden names, which the directory backend uses
/// for its own bookkeeping). Anything else is refused with [`StoreError::InvalidKey`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(String);

impl Key {
    pub fn new(key: impl Into<String>) -> Result<Self, StoreError> {
        let key = key.into();
        match check(&key) {
            Ok(()) => Ok(Self(key)),
            Err(reason) => Err(StoreError::InvalidKey {
                key: printable(&key),
                reason,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The original's key for a variant key: everything before the first `_` (`U…_200x0` → `U…`).
    pub fn base(&self) -> &str {
        self.0.split('_').next().unwrap_or(&self.0)
    }
}

fn check(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty key");
    }
    if key.len() > MAX_KEY_LEN {
        return Err("key longer than 512 bytes");
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(if c.is_control() {
            "control character in key"
        } else if c == '\\' {
            "backslash in key"
        } else {
            "character outside [A-Za-z0-9._/-] in key"
        });
    }
    for seg in key.split('/') {
        if seg.is_empty() {
            return Err("empty path segment (leading, trailing or double `/`)");
        }
        if seg.starts_with('.') {
            return Err("path segment starting with `.` (traversal or hidden name)");
        }
    }
    Ok(())
}

fn printable(key: &str) -> String {
    let mut s: String = key.chars().take(80).flat_map(|c| c.escape_debug()).collect();
    if key.chars().count() > 80 {
        s.push('…');
    }
    s
}

impl TryFrom<String> for Key {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Key::new(s)
    }
}

impl From<Key> for String {
    fn from(k: Key) -> String {
        k.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// How logical keys are named on a fileserver.
///
/// `partitioned` is the imagehoster's `storage_partitioning`: the last two characters of the
/// original's key, then `/`, then the key (`DQm…4rsj` → `sj/DQm…4rsj`; a variant `U…sLT_200x0` →
/// `LT/U…sLT_200x0`), giving 58² directories. Existing stores of either kind are served in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Flat,
    Partitioned,
}

impl Layout {
    /// The stored name of `key`.
    pub fn stored_name(self, key: &Key) -> Result<String, StoreError> {
        match self {
            Layout::Flat => Ok(key.0.clone()),
            Layout::Partitioned => {
                let base = key.base();
                if key.0.contains('/') || base.len() < 2 {
                    return Err(StoreError::InvalidKey {
                        key: key.0.clone(),
                        reason: "partitioned layout needs a key without `/` whose original part has ≥ 2 characters",
                    });
                }
                Ok(format!("{}/{}", &base[base.len() - 2..], key.0))
            }
        }
    }

    /// The stored-name prefix under which every variant of `source` (`<source>_…`) is listed.
    pub fn variants_prefix(self, source: &str) -> String {
        match self {
            Layout::Partitioned if source.len() >= 2 => {
                format!("{}/{source}_", &source[source.len() - 2..])
            }
            _ => format!("{source}_"),
        }
    }

    /// The logical key of a stored name, or `None` when the name is not one this layout produces.
    pub fn key_of(self, stored: &str) -> Option<Key> {
        match self {
            Layout::Flat => Key::new(stored).ok(),
            Layout::Partitioned => {
                let (prefix, rest) = stored.split_once('/')?;
                let key = Key::new(rest).ok()?;
                (self.stored_name(&key).ok()? == stored && prefix.len() == 2).then_some(key)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_prefix_lists_what_stored_name_names() {
        for layout in [Layout::Flat, Layout::Partitioned] {
            let source = "U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT";
            let variant = Key::new(format!("{source}_Cover_WEBP_320")).unwrap();
            let stored = layout.stored_name(&variant).unwrap();
            assert!(
                stored.starts_with(&layout.variants_prefix(source)),
                "{layout:?}: {stored}"
            );
            let original = Key::new(source).unwrap();
            let stored = layout.stored_name(&original).unwrap();
            assert!(
                !stored.starts_with(&layout.variants_prefix(source)),
                "{layout:?}: the source is not its own variant"
            );
        }
        assert_eq!(Layout::Partitioned.variants_prefix("DQmab"), "ab/DQmab_");
    }

    #[test]
    fn key_validation_table() {
        let long = "a".repeat(MAX_KEY_LEN + 1);
        let cases: &[(&str, Result<(), &str>)] = &[
            ("DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX", Ok(())),
            ("U5du4XL9BgydEutnbj3tA6FGGRnbNbf_Cover_Match_100_100", Ok(())),
            ("U5du4XL9BgydEutnbj3tA6FGGRnbNbf_2000x0", Ok(())),
            ("sj/DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj", Ok(())),
            ("a.b-c_d", Ok(())),
            ("", Err("empty key")),
            (
                "../etc/passwd",
                Err("path segment starting with `.` (traversal or hidden name)"),
            ),
            (
                "a/../b",
                Err("path segment starting with `.` (traversal or hidden name)"),
            ),
            (
                "./a",
                Err("path segment starting with `.` (traversal or hidden name)"),
            ),
            (
                ".hidden",
                Err("path segment starting with `.` (traversal or hidden name)"),
            ),
            (
                "/abs",
                Err("empty path segment (leading, trailing or double `/`)"),
            ),
            (
                "a//b",
                Err("empty path segment (leading, trailing or double `/`)"),
            ),
            ("a/", Err("empty path segment (leading, trailing or double `/`)")),
            ("a\\b", Err("backslash in key")),
            ("a\0b", Err("control character in key")),
            ("a\nb", Err("control character in key")),
            ("a b", Err("character outside [A-Za-z0-9._/-] in key")),
            ("a%2e", Err("character outside [A-Za-z0-9._/-] in key")),
            ("häh", Err("character outside [A-Za-z0-9._/-] in key")),
            (long.as_str(), Err("key longer than 512 bytes")),
        ];
        for (key, want) in cases {
            let got = Key::new(*key).map(|_| ()).map_err(|e| match e {
                StoreError::InvalidKey { reason, .. } => reason,
                other => panic!("unexpected {other:?}"),
            });
            assert_eq!(got, *want, "key {key:?}");
        }
    }

    #[test]
    fn layout_table() {
        let cases = [
            (
                Layout::Flat,
                "DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj",
                "DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj",
            ),
            (
                Layout::Partitioned,
                "DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj",
                "sj/DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj",
            ),
            (
                Layout::Partitioned,
                "U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT",
                "LT/U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT",
            ),
            (
                Layout::Partitioned,
                "U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT_Cover_WEBP_100_100",
                "LT/U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT_Cover_WEBP_100_100",
            ),
            (
                Layout::Partitioned,
                "U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT_2000x0",
                "LT/U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT_2000x0",
            ),
        ];
        for (layout, key, stored) in cases {
            let k = Key::new(key).unwrap();
            assert_eq!(layout.stored_name(&k).unwrap(), stored);
            assert_eq!(layout.key_of(stored), Some(k));
        }
        // Names the layout would never produce are not keys of it.
        assert_eq!(
            Layout::Partitioned.key_of("xx/DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj"),
            None
        );
        assert_eq!(
            Layout::Partitioned.key_of("DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj"),
            None
        );
        assert!(Layout::Partitioned
            .stored_name(&Key::new("a/b").unwrap())
            .is_err());
        assert!(Layout::Partitioned.stored_name(&Key::new("a").unwrap()).is_err());
    }
}
