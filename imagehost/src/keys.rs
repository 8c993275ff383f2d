//! Storage keys, byte-exact with the imagehoster (D1): what an upload is stored under.

use sha2::{Digest, Sha256};

/// The ASCII prefix every upload signature covers, with no separator before the file bytes.
pub const CHALLENGE_PREFIX_TEXT: &str = "ImageSigningChallenge";
pub const CHALLENGE_PREFIX: &[u8] = CHALLENGE_PREFIX_TEXT.as_bytes();

/// Length of an upload key: `D` + 46 base58 characters.
pub const UPLOAD_KEY_LEN: usize = 47;

/// The digests an upload needs, computed in one pass over the file.
#[derive(Clone)]
pub struct UploadHasher {
    /// sha256(prefix ‖ data): the storage key's hash, what `/:user/:sig` signatures sign, and
    /// what each fileserver records of the upload (`PutOptions::digest_prefix`).
    signed: Sha256,
    /// sha256(data), only for `/cs/` uploads: what their signatures wrap. Every other upload is
    /// hashed once (at ~0.75 ms per MiB, a second digest was a fifth of an upload's CPU).
    plain: Option<Sha256>,
}

/// The finished digests of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadDigests {
    /// sha256("ImageSigningChallenge" ‖ data).
    pub image_hash: [u8; 32],
    /// sha256(data), when the hasher was made for `/cs/`.
    pub data_hash: Option<[u8; 32]>,
}

impl UploadHasher {
    /// A hasher for an upload whose signature is checked by `checksum_route`'s rule (`/cs/`).
    pub fn new(checksum_route: bool) -> Self {
        let mut signed = Sha256::new();
        signed.update(CHALLENGE_PREFIX);
        Self {
            signed,
            plain: checksum_route.then(Sha256::new),
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.signed.update(chunk);
        if let Some(plain) = &mut self.plain {
            plain.update(chunk);
        }
    }

    pub fn finish(self) -> UploadDigests {
        UploadDigests {
            image_hash: self.signed.finalize().into(),
            data_hash: self.plain.map(|h| h.finalize().into()),
        }
    }
}

impl UploadDigests {
    /// Both digests of `data` (tools and tests).
    pub fn of(data: &[u8]) -> Self {
        let mut h = UploadHasher::new(true);
        h.update(data);
        h.finish()
    }

    /// The digest a signature must cover: `image_hash` for `/:user/:sig`, and for `/cs/`
    /// sha256("ImageSigningChallenge" ‖ sha256(data)) with the inner hash as raw bytes (`None`
    /// if the plain digest was not computed).
    pub fn signed_digest(&self, checksum_route: bool) -> Option<[u8; 32]> {
        if !checksum_route {
            return Some(self.image_hash);
        }
        let mut h = Sha256::new();
        h.update(CHALLENGE_PREFIX);
        h.update(self.data_hash?);
        Some(h.finalize().into())
    }

    /// `D` + base58(0x12 0x20 ‖ image_hash): an IPFS-style CIDv0 of the signed digest, `DQm…`.
    pub fn upload_key(&self) -> String {
        key_of_hash(&self.image_hash)
    }
}

/// The upload key `data` would be stored under, with one pass over it (the signed digest
/// alone): what a fetched `/p/` original is checked against takedowns by.
pub fn upload_key_of(data: &[u8]) -> String {
    key_of_hash(&upload_digest_of(data))
}

/// sha256("ImageSigningChallenge" ‖ data): the digest an upload key is made of.
pub fn upload_digest_of(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHALLENGE_PREFIX);
    h.update(data);
    h.finalize().into()
}

/// The upload key of a digest from [`upload_digest_of`].
pub fn key_of_hash(image_hash: &[u8; 32]) -> String {
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
        assert_eq!(d.signed_digest(false), Some(d.image_hash));
        assert_eq!(d.upload_key(), "DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX");
        assert_eq!(d.upload_key().len(), UPLOAD_KEY_LEN);
    }

    #[test]
    fn chunking_does_not_change_digests() {
        let data = hex::decode(GIF).unwrap();
        let mut h = UploadHasher::new(true);
        for c in data.chunks(5) {
            h.update(c);
        }
        assert_eq!(h.finish(), UploadDigests::of(&data));
        let mut once = UploadHasher::new(false);
        once.update(&data);
        let once = once.finish();
        assert_eq!(once.image_hash, UploadDigests::of(&data).image_hash);
        assert_eq!(once.signed_digest(false), Some(once.image_hash));
        assert_eq!(once.signed_digest(true), None, "/cs/ needs the plain digest");
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
