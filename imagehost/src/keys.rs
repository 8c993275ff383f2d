//! Storage keys, byte-exact with the imagehoster (D1): what an upload is stored under.

use sha2::{Digest, Sha256};

/// The ASCII prefix every upload signature covers, with no separator before the file bytes.
pub const CHALLENGE_PREFIX: &[u8] = b"ImageSigningChallenge";

/// Length of an upload key: `D` + 46 base58 characters.
pub const UPLOAD_KEY_LEN: usize = 47;

/// The digests an upload needs, computed in one pass over the file.
#[derive(Clone)]
pub struct UploadHasher {
    /// sha256(prefix ‖ data): what `/:user/:sig` signatures sign, and the storage key's hash.
    signed: Sha256,
    /// sha256(data): what `/cs/` signatures wrap.
    plain: Sha256,
}

impl Default for UploadHasher {
    fn default() -> Self {
        let mut signed = Sha256::new();
        signed.update(CHALLENGE_PREFIX);
        Self {
            signed,
            plain: Sha256::new(),
        }
    }
}

/// The finished digests of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadDigests {
    /// sha256("ImageSigningChallenge" ‖ data).
    pub image_hash: [u8; 32],
    /// sha256(data).
    pub data_hash: [u8; 32],
}

impl UploadHasher {
    pub fn update(&mut self, chunk: &[u8]) {
        self.signed.update(chunk);
        self.plain.update(chunk);
    }

    pub fn finish(self) -> UploadDigests {
        UploadDigests {
            image_hash: self.signed.finalize().into(),
            data_hash: self.plain.finalize().into(),
        }
    }
}

impl UploadDigests {
    pub fn of(data: &[u8]) -> Self {
        let mut h = UploadHasher::default();
        h.update(data);
        h.finish()
    }

    /// The digest a signature must cover: `image_hash` for `/:user/:sig`, and for `/cs/`
    /// sha256("ImageSigningChallenge" ‖ sha256(data)) with the inner hash as raw bytes.
    pub fn signed_digest(&self, checksum_route: bool) -> [u8; 32] {
        if checksum_route {
            let mut h = Sha256::new();
            h.update(CHALLENGE_PREFIX);
            h.update(self.data_hash);
            h.finalize().into()
        } else {
            self.image_hash
        }
    }

    /// `D` + base58(0x12 0x20 ‖ image_hash): an IPFS-style CIDv0 of the signed digest, `DQm…`.
    pub fn upload_key(&self) -> String {
        key_of_hash(&self.image_hash)
    }
}

/// The upload key `data` would be stored under, with one pass over it (the signed digest
/// alone): what a fetched `/p/` original is checked against takedowns by.
pub fn upload_key_of(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(CHALLENGE_PREFIX);
    h.update(data);
    key_of_hash(&h.finalize().into())
}

fn key_of_hash(image_hash: &[u8; 32]) -> String {
    let mut multihash = Vec::with_capacity(34);
    multihash.extend_from_slice(&[0x12, 0x20]);
    multihash.extend_from_slice(image_hash);
    format!("D{}", bs58::encode(multihash).into_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dhive test vector from the contract.
    const GIF: &str =
        "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b";

    #[test]
    fn dhive_vector_key_and_digest() {
        let data = hex::decode(GIF).unwrap();
        let d = UploadDigests::of(&data);
        assert_eq!(
            hex::encode(d.image_hash),
            "c9c61e7f943cd3a56f215e0349ed7ce1c877eaf675cc3bc455da190c6bd13ed4"
        );
        assert_eq!(d.signed_digest(false), d.image_hash);
        assert_eq!(d.upload_key(), "DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX");
        assert_eq!(d.upload_key().len(), UPLOAD_KEY_LEN);
    }

    #[test]
    fn chunking_does_not_change_digests() {
        let data = hex::decode(GIF).unwrap();
        let mut h = UploadHasher::default();
        for c in data.chunks(5) {
            h.update(c);
        }
        assert_eq!(h.finish(), UploadDigests::of(&data));
    }

    #[test]
    fn keys_table() {
        // Same bytes, same key; the key is of prefix ‖ data, not of the raw file.
        let cases: &[(&[u8], &str)] = &[(b"", "DQm"), (b"hello", "DQm"), (b"\x00\xff", "DQm")];
        for (data, prefix) in cases {
            let k = UploadDigests::of(data).upload_key();
            assert_eq!(upload_key_of(data), k, "one pass, the same key");
            assert!(k.starts_with(prefix) && k.len() == UPLOAD_KEY_LEN, "{k}");
            assert_eq!(k, UploadDigests::of(data).upload_key());
            let raw: [u8; 32] = Sha256::digest(data).into();
            assert_ne!(UploadDigests::of(data).image_hash, raw);
        }
    }
}
