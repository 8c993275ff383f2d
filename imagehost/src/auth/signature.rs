//! Hive's compact recoverable signatures and `STM…` public key strings.
//!
//! A signature is 65 bytes, hex in the URL: `[recovery id + 31] ‖ r ‖ s`. Only headers 31–34
//! ("compressed") are valid; 27–30 are refused, as dhive's recovery refuses them. Canonical form
//! is not required: a high-s signature is normalised (and its recovery id flipped) before recovery.

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use ripemd::{Digest, Ripemd160};

/// Why a signature could not be used. All of these are `invalid_signature` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature is not 65 bytes of hex")]
    Malformed,
    #[error("signature header byte {0} is not 31-34")]
    BadHeader(u8),
    #[error("no public key recovers from this signature")]
    Unrecoverable,
}

#[derive(Debug, Clone)]
pub struct HiveSignature {
    signature: Signature,
    recovery: RecoveryId,
}

impl HiveSignature {
    /// Parses the URL form: 130 hex characters (either case).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let bytes = hex::decode(text).map_err(|_| SignatureError::Malformed)?;
        let bytes: [u8; 65] = bytes.try_into().map_err(|_| SignatureError::Malformed)?;
        let header = bytes[0];
        if !(31..=34).contains(&header) {
            return Err(SignatureError::BadHeader(header));
        }
        let recovery = RecoveryId::from_byte(header - 31).ok_or(SignatureError::BadHeader(header))?;
        let signature = Signature::from_slice(&bytes[1..]).map_err(|_| SignatureError::Unrecoverable)?;
        Ok(Self { signature, recovery })
    }

    /// The `STM…` public key that made this signature over `digest` (signed as is, not re-hashed).
    pub fn recover(&self, digest: &[u8; 32]) -> Result<String, SignatureError> {
        let (sig, rec) = match self.signature.normalize_s() {
            Some(low) => (
                low,
                RecoveryId::new(!self.recovery.is_y_odd(), self.recovery.is_x_reduced()),
            ),
            None => (self.signature, self.recovery),
        };
        let key = VerifyingKey::recover_from_prehash(digest, &sig, rec)
            .map_err(|_| SignatureError::Unrecoverable)?;
        Ok(public_key_string(&key))
    }
}

/// `STM` + base58(compressed point ‖ first 4 bytes of RIPEMD-160(compressed point)).
pub fn public_key_string(key: &VerifyingKey) -> String {
    let point = key.to_encoded_point(true);
    let compressed = point.as_bytes();
    let checksum = Ripemd160::digest(compressed);
    let mut bytes = compressed.to_vec();
    bytes.extend_from_slice(&checksum[..4]);
    format!("STM{}", bs58::encode(bytes).into_string())
}

/// The signature a frontend would send for `digest` with `key` (tests and the local signing tool).
pub fn sign(key: &k256::ecdsa::SigningKey, digest: &[u8; 32]) -> String {
    let (sig, rec) = key
        .sign_prehash_recoverable(digest)
        .expect("signing a 32-byte digest cannot fail");
    let mut out = vec![rec.to_byte() + 31];
    out.extend_from_slice(&sig.to_bytes());
    hex::encode(out)
}

/// A fresh random private key (local accounts, tests and benchmarks).
pub fn random_signing_key() -> k256::ecdsa::SigningKey {
    loop {
        if let Ok(k) = k256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
            return k;
        }
    }
}

/// Encodes a private key as WIF, the inverse of [`signing_key_from_wif`].
pub fn wif_of(key: &k256::ecdsa::SigningKey) -> String {
    use sha2::Sha256;
    let mut raw = vec![0x80];
    raw.extend_from_slice(&key.to_bytes());
    let check = Sha256::digest(Sha256::digest(&raw));
    raw.extend_from_slice(&check[..4]);
    bs58::encode(raw).into_string()
}

/// Decodes a WIF private key (`5…`: base58check of 0x80 ‖ key ‖ sha256d checksum).
pub fn signing_key_from_wif(wif: &str) -> Option<k256::ecdsa::SigningKey> {
    use sha2::Sha256;
    let raw = bs58::decode(wif).into_vec().ok()?;
    if raw.len() != 37 || raw[0] != 0x80 {
        return None;
    }
    let check = Sha256::digest(Sha256::digest(&raw[..33]));
    if check[..4] != raw[33..] {
        return None;
    }
    k256::ecdsa::SigningKey::from_slice(&raw[1..33]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::UploadDigests;

    const GIF: &str =
        "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b";
    const WIF: &str = "5KavJ8prT6ktQxyGKy8SHj5ryXph36ugf5hFgUQarVTcZHo4gYq";
    const PUBLIC: &str = "STM8Ue7FBoqhP88u1x7danatJJ8hSV6SCy2EMdTQYEXnEWfxQPkuE";
    const SIG: &str = "1f7ce2e19a81e0d582fcb47470cdb8dd52c7ebc11d5a61487d06e24e6fea8d88cf60028fcc6e643cd5f89925c67447a2f8912f0d2b2a1a832136caa1091a9ea958";
    const CS_SIG: &str = "1f3226040f907d9b9282887daa1a5736463b5568547e76114fc262c50f63671ea700f303b61fcc4e561d284064aee194d5e6f847610677c037d2749cc939994edd";

    #[test]
    fn wif_round_trips() {
        let key = signing_key_from_wif(WIF).unwrap();
        assert_eq!(wif_of(&key), WIF);
        let fresh = random_signing_key();
        assert_eq!(signing_key_from_wif(&wif_of(&fresh)).unwrap(), fresh);
    }

    #[test]
    fn dhive_vector_recovers_the_public_key() {
        let d = UploadDigests::of(&hex::decode(GIF).unwrap());
        assert_eq!(
            HiveSignature::parse(SIG)
                .unwrap()
                .recover(&d.signed_digest(false).unwrap())
                .unwrap(),
            PUBLIC
        );
        assert_eq!(
            HiveSignature::parse(CS_SIG)
                .unwrap()
                .recover(&d.signed_digest(true).unwrap())
                .unwrap(),
            PUBLIC
        );
        assert_eq!(
            HiveSignature::parse(&SIG.to_uppercase())
                .unwrap()
                .recover(&d.image_hash)
                .unwrap(),
            PUBLIC
        );
        // Over other bytes, the same signature recovers some other key.
        let other = UploadDigests::of(b"other bytes");
        assert_ne!(
            HiveSignature::parse(SIG)
                .unwrap()
                .recover(&other.image_hash)
                .ok()
                .as_deref(),
            Some(PUBLIC)
        );
    }

    #[test]
    fn wif_and_fresh_signatures() {
        let key = signing_key_from_wif(WIF).expect("the vector's WIF decodes");
        assert_eq!(public_key_string(key.verifying_key()), PUBLIC);
        let digest = UploadDigests::of(b"fresh").image_hash;
        let sig = sign(&key, &digest);
        assert_eq!(
            HiveSignature::parse(&sig).unwrap().recover(&digest).unwrap(),
            PUBLIC
        );
        assert!(
            signing_key_from_wif("5KavJ8prT6ktQxyGKy8SHj5ryXph36ugf5hFgUQarVTcZHo4gYr").is_none(),
            "bad checksum"
        );
    }

    #[test]
    fn parse_table() {
        let mut header27 = hex::decode(SIG).unwrap();
        header27[0] = 27;
        let mut header35 = hex::decode(SIG).unwrap();
        header35[0] = 35;
        let cases: Vec<(String, Result<(), SignatureError>)> = vec![
            (SIG.into(), Ok(())),
            (SIG[..128].into(), Err(SignatureError::Malformed)),
            (format!("{SIG}00"), Err(SignatureError::Malformed)),
            (format!("zz{}", &SIG[2..]), Err(SignatureError::Malformed)),
            (String::new(), Err(SignatureError::Malformed)),
            (hex::encode(&header27), Err(SignatureError::BadHeader(27))),
            (hex::encode(&header35), Err(SignatureError::BadHeader(35))),
            (
                format!("1f{}", "00".repeat(64)),
                Err(SignatureError::Unrecoverable),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(HiveSignature::parse(&text).map(|_| ()), want, "{text}");
        }
    }

    #[test]
    fn high_s_signatures_still_recover() {
        let key = signing_key_from_wif(WIF).unwrap();
        let digest = UploadDigests::of(b"malleable").image_hash;
        let (sig, rec) = key.sign_prehash_recoverable(&digest).unwrap();
        // The other valid signature: (r, n - s) with the opposite y parity.
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        let flipped = RecoveryId::new(!rec.is_y_odd(), rec.is_x_reduced());
        let mut bytes = vec![flipped.to_byte() + 31];
        bytes.extend_from_slice(&high.to_bytes());
        assert_eq!(
            HiveSignature::parse(&hex::encode(bytes))
                .unwrap()
                .recover(&digest)
                .unwrap(),
            PUBLIC
        );
    }
}
