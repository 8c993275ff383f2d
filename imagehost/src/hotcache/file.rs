//! A hot cache file's layout. Files are written without fsync (the cache is rebuildable), so each
//! ends in a trailer with the length and CRC-32 of what comes before it: a file a power loss left
//! short, empty or garbled is found on read, never served. An original's file may also carry its
//! content digest (sha256 of the upload challenge prefix and the bytes, what its takedown key is
//! made of), computed when it was fetched: renders of it then need not hash it again.
//!
//!   `HC1\0`: bytes ‖ trailer
//!   `HC2\0`: bytes ‖ digest (32 bytes) ‖ trailer
//!
//! The trailer is the tag, the CRC-32 of everything before it and the length of the bytes (both
//! little-endian).

use bytes::Bytes;

const PLAIN: &[u8; 4] = b"HC1\0";
const WITH_DIGEST: &[u8; 4] = b"HC2\0";
pub const TRAILER: usize = 16;
const DIGEST: usize = 32;

/// A file's contents once its trailer vouched for them.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsealed {
    pub bytes: Bytes,
    pub digest: Option<[u8; 32]>,
}

/// What the index counts of the file for `len` bytes: all of it but its trailer.
pub fn counted(len: usize, digest: bool) -> u64 {
    (len + if digest { DIGEST } else { 0 }) as u64
}

/// What follows `data` in its file: the digest, if any, and the trailer.
pub fn tail(data: &[u8], digest: Option<&[u8; 32]>) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    let mut out = Vec::with_capacity(DIGEST + TRAILER);
    if let Some(d) = digest {
        crc.update(d);
        out.extend_from_slice(d);
    }
    out.extend_from_slice(if digest.is_some() { WITH_DIGEST } else { PLAIN });
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out
}

/// The whole file for `data` (tests).
#[cfg(test)]
pub fn seal(data: &[u8], digest: Option<&[u8; 32]>) -> Vec<u8> {
    [data, &tail(data, digest)].concat()
}

/// The contents of a file whose trailer vouches for them; `None` if it is torn or not ours.
pub fn unseal(mut file: Vec<u8>) -> Option<Unsealed> {
    let vouched = file.len().checked_sub(TRAILER)?;
    let trailer = &file[vouched..];
    let digest_len = match &trailer[..4] {
        t if t == PLAIN => 0,
        t if t == WITH_DIGEST => DIGEST,
        _ => return None,
    };
    let crc = u32::from_le_bytes(trailer[4..8].try_into().ok()?);
    let len = u64::from_le_bytes(trailer[8..].try_into().ok()?);
    let body = vouched.checked_sub(digest_len)?;
    if len != body as u64 || crc32fast::hash(&file[..vouched]) != crc {
        return None;
    }
    let digest = (digest_len > 0).then(|| {
        let mut d = [0u8; 32];
        d.copy_from_slice(&file[body..vouched]);
        d
    });
    file.truncate(body);
    Some(Unsealed {
        bytes: Bytes::from(file),
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_any_damage_is_torn() {
        let digest = [9u8; 32];
        for d in [None, Some(&digest)] {
            let file = seal(b"an original", d);
            let back = unseal(file.clone()).unwrap();
            assert_eq!((&back.bytes[..], back.digest.as_ref()), (&b"an original"[..], d));
            for cut in 0..file.len() {
                assert_eq!(unseal(file[..cut].to_vec()), None, "cut at {cut}");
            }
            for i in 0..file.len() {
                let mut flipped = file.clone();
                flipped[i] ^= 0x10;
                assert_eq!(unseal(flipped), None, "byte {i} flipped");
            }
        }
        assert_eq!(unseal(b"bare bytes with no trailer at all".to_vec()), None);
        let empty = unseal(seal(b"", None)).unwrap();
        assert!(empty.bytes.is_empty() && empty.digest.is_none());
    }
}
