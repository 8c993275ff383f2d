//! A string that never shows up in logs or `Debug` output (S3 keys, tokens, passwords), and the
//! one way tokens are compared: in constant time.

use serde::{Deserialize, Serialize};
use std::fmt;
use subtle::ConstantTimeEq;

/// A secret value. `Debug` and `Display` print `<redacted>`; call [`Secret::expose`] to use it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `given` is this secret, compared in constant time (see [`same`]).
    pub fn matches(&self, given: &str) -> bool {
        same(given, &self.0)
    }
}

/// Compares a presented token with the expected one without an early exit on the first differing
/// byte, so the time taken does not tell an attacker how much of a guess was right. Only the
/// length can differ in time, and it is not secret enough to matter (`subtle`'s slices compare).
pub fn same(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn tokens_compare_whole() {
        let s = Secret::new("hunter2");
        assert!(s.matches("hunter2"));
        for wrong in ["hunter3", "hunter", "hunter22", "", "HUNTER2"] {
            assert!(!s.matches(wrong), "{wrong}");
        }
        assert!(!Secret::new("").matches(""), "an empty token never authorises");
    }
}
