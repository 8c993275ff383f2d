//! Cache objects (`PutOptions::cache`, the proxy bucket) in a directory bucket: written without
//! the fsyncs, so a crash can leave one torn (a body cut short or zeroed, a sidecar empty). Their
//! sidecar, marked `cache`, is an attribute of the body's file (set before the file is renamed
//! into place, so it comes with any name the body has), or where the filesystem takes none,
//! `.meta/<name>.cache.json`, renamed into place before the body, so wherever a cache body
//! survives a crash, that name does too. A reader finding either checks the body against it
//! (size, and for bodies up to [`VERIFY_WHOLE`] the SHA-256) and treats a mismatch as absent.

use sha2::{Digest, Sha256};

use super::Sidecar;

/// Cache bodies up to this size are hashed whole before they are served; larger ones are checked
/// by size only (a crash leaves a torn file short or empty on ext4's ordered mode).
pub const VERIFY_WHOLE: u64 = 8 << 20;

/// What a cache object's sidecar says of the body found with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// No cache sidecar: an ordinary (durable) object, or one from before sidecars.
    NotCache,
    /// A cache object whose body has the recorded size (its hash is checked when read whole).
    Sized(Sidecar),
    /// Torn: a sidecar that does not parse or a body of another size.
    Torn,
}

/// Judges a cache sidecar's bytes (`None`: no such file) against the body's size.
pub fn check(sidecar: Option<&[u8]>, size: u64) -> Check {
    let Some(bytes) = sidecar else {
        return Check::NotCache;
    };
    match serde_json::from_slice::<Sidecar>(bytes) {
        Ok(s) if s.size == size => Check::Sized(s),
        _ => Check::Torn,
    }
}

/// Whether a whole body matches its sidecar's SHA-256.
pub fn intact(sidecar: &Sidecar, body: &[u8]) -> bool {
    let mut h = Sha256::new();
    h.update(sidecar.sha256_prefix.as_bytes());
    h.update(body);
    hex::encode(h.finalize()) == sidecar.sha256
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar(body: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&Sidecar {
            size: body.len() as u64,
            sha256: hex::encode(Sha256::digest(body)),
            sha256_prefix: String::new(),
            md5: String::new(),
            content_type: None,
            metadata: Default::default(),
            cache: true,
        })
        .unwrap()
    }

    #[test]
    fn torn_objects_are_told_apart_from_whole_ones() {
        let body = b"a rendered variant";
        let meta = sidecar(body);
        assert_eq!(check(None, 5), Check::NotCache);
        assert!(matches!(check(Some(&meta), body.len() as u64), Check::Sized(_)));
        assert_eq!(check(Some(&meta), 3), Check::Torn, "body cut short");
        assert_eq!(check(Some(&meta), 0), Check::Torn, "body never written");
        assert_eq!(
            check(Some(b""), body.len() as u64),
            Check::Torn,
            "sidecar never written"
        );
        assert_eq!(
            check(Some(&meta[..10]), body.len() as u64),
            Check::Torn,
            "sidecar cut short"
        );
        let Check::Sized(s) = check(Some(&meta), body.len() as u64) else {
            unreachable!()
        };
        assert!(intact(&s, body));
        assert!(!intact(&s, &[0u8; 18]), "zeroed blocks of the right size");
    }
}
