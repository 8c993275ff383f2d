//! SHA-256 of a body (after an optional prefix, `PutOptions::digest_prefix`) computed in the same
//! pass that writes it, with the size limit enforced. No MD5: nothing here needs one (a directory
//! fileserver's ETag is the SHA-256, an S3 server makes its own), and at ~2 ms per MiB it was the
//! largest cost of an upload.

use sha2::{Digest, Sha256};

use crate::StoreError;

/// The digests of one object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Digests {
    pub size: u64,
    /// sha256(prefix ‖ body), the prefix being the put's `digest_prefix` (empty by default).
    pub sha256: [u8; 32],
}

impl Digests {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Digests of an in-memory buffer (tests and small objects).
    pub fn of(data: &[u8]) -> Self {
        let mut w = DigestingWriter::new(None);
        // No limit, so this cannot fail.
        let _ = w.update(data);
        w.finish()
    }
}

/// Feeds chunks through SHA-256 and counts bytes; fails as soon as `limit` is crossed.
pub struct DigestingWriter {
    sha256: Sha256,
    size: u64,
    limit: Option<u64>,
    /// Digests given by the caller: only the size is counted, to be checked against them.
    known: Option<Digests>,
}

impl DigestingWriter {
    pub fn new(limit: Option<u64>) -> Self {
        Self::trusting(limit, None, "")
    }

    /// A writer that takes `known` digests (when given) instead of hashing; `finish_checked`
    /// refuses a body whose size is not theirs. Otherwise it hashes `prefix` then the body.
    pub fn trusting(limit: Option<u64>, known: Option<Digests>, prefix: &str) -> Self {
        let mut sha256 = Sha256::new();
        sha256.update(prefix.as_bytes());
        Self {
            sha256,
            size: 0,
            limit,
            known,
        }
    }

    /// The digests: the known ones if the size agrees with them, else those computed.
    pub fn finish_checked(self) -> Result<Digests, StoreError> {
        match self.known {
            Some(d) if d.size == self.size => Ok(d),
            Some(d) => Err(StoreError::Body(std::io::Error::other(format!(
                "the body is {} bytes, not the {} its digests were given for",
                self.size, d.size
            )))),
            None => Ok(self.finish()),
        }
    }

    pub fn update(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.size += chunk.len() as u64;
        if let Some(limit) = self.limit {
            if self.size > limit {
                return Err(StoreError::TooLarge { limit });
            }
        }
        if self.known.is_none() {
            self.sha256.update(chunk);
        }
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Digests {
        Digests {
            size: self.size,
            sha256: self.sha256.finalize().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_and_chunking() {
        let d = Digests::of(b"abc");
        assert_eq!(
            d.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut w = DigestingWriter::new(None);
        w.update(b"a").unwrap();
        w.update(b"bc").unwrap();
        assert_eq!(w.finish(), d);
    }

    #[test]
    fn limit_is_exact() {
        let mut w = DigestingWriter::new(Some(3));
        w.update(b"abc").unwrap();
        assert!(matches!(w.update(b"d"), Err(StoreError::TooLarge { limit: 3 })));
    }

    #[test]
    fn known_digests_are_taken_when_the_size_agrees() {
        let d = Digests::of(b"abc");
        let mut w = DigestingWriter::trusting(None, Some(d), "");
        w.update(b"abc").unwrap();
        assert_eq!(w.finish_checked().unwrap(), d);
        let mut short = DigestingWriter::trusting(None, Some(d), "");
        short.update(b"ab").unwrap();
        assert!(matches!(short.finish_checked(), Err(StoreError::Body(_))));
        let mut limited = DigestingWriter::trusting(Some(2), Some(d), "");
        assert!(matches!(
            limited.update(b"abc"),
            Err(StoreError::TooLarge { limit: 2 })
        ));
        let mut plain = DigestingWriter::trusting(None, None, "");
        plain.update(b"abc").unwrap();
        assert_eq!(plain.finish_checked().unwrap(), d, "nothing known: hashed");
    }

    #[test]
    fn a_prefix_is_hashed_before_the_body() {
        let mut w = DigestingWriter::trusting(Some(3), None, "ab");
        w.update(b"c").unwrap();
        let d = w.finish_checked().unwrap();
        assert_eq!(
            (d.size, d.sha256),
            (1, Digests::of(b"abc").sha256),
            "the size is the body's"
        );
        let mut over = DigestingWriter::trusting(Some(3), None, "abcdef");
        assert!(
            over.update(b"abc").is_ok(),
            "the prefix is not counted against the limit"
        );
    }
}
