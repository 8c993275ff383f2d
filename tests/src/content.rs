//! Test content: deterministic bytes, and the imagehoster upload key (`DQm…`) that names them,
//! so replication tests and benchmarks can check every copy against its key.

use sha2::{Digest, Sha256};

/// `len` pseudo-random bytes (xorshift) from `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `D` + base58(0x12 0x20 ‖ sha256("ImageSigningChallenge" ‖ data)), as imagehost derives it.
pub fn upload_key(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"ImageSigningChallenge");
    h.update(data);
    let mut multihash = vec![0x12, 0x20];
    multihash.extend_from_slice(&h.finalize());
    format!("D{}", bs58::encode(multihash).into_string())
}

/// An upload's key and content.
pub fn upload(seed: u64, len: usize) -> (String, Vec<u8>) {
    let data = bytes(seed, len);
    (upload_key(&data), data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_contract_vector() {
        let gif = hex::decode(
            "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b",
        )
        .unwrap();
        assert_eq!(
            super::upload_key(&gif),
            "DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX"
        );
    }
}
