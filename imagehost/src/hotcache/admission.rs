//! Which files a full hot cache takes (TinyLFU): every read counts its key in a small frequency
//! sketch, and a new file goes in only if its key was asked for more often, lately, than the
//! file it would push out. A long tail of keys asked for once cannot flush the files asked for
//! all the time; a key asked for twice gets in. Counts halve every `10 × width` reads, so what
//! was popular long ago fades.
//!
//! The sketch is a count-min of four rows of 4-bit counts (one byte each here): about 4 bytes per
//! file the cache can hold, whatever the number of keys seen.

use std::hash::BuildHasher;

pub struct Frequency {
    counts: Vec<u8>,
    /// Row length, a power of two.
    width: usize,
    reads: usize,
    hasher: std::collections::hash_map::RandomState,
}

const ROWS: usize = 4;
const MAX: u8 = 15;

impl Frequency {
    /// A sketch for a cache of about `files` files.
    pub fn new(files: usize) -> Self {
        let width = files.clamp(1 << 10, 1 << 24).next_power_of_two();
        Self {
            counts: vec![0; width * ROWS],
            width,
            reads: 0,
            hasher: Default::default(),
        }
    }

    fn slots(&self, key: &str) -> [usize; ROWS] {
        let h = self.hasher.hash_one(key);
        // Four indexes from one 64-bit hash (Kirsch–Mitzenmacher: h1 + i·h2).
        let (h1, h2) = (h as u32 as usize, ((h >> 32) as usize) | 1);
        std::array::from_fn(|i| i * self.width + (h1.wrapping_add(i.wrapping_mul(h2)) & (self.width - 1)))
    }

    /// `key` was asked for.
    pub fn record(&mut self, key: &str) {
        for s in self.slots(key) {
            self.counts[s] = (self.counts[s] + 1).min(MAX);
        }
        self.reads += 1;
        if self.reads >= 10 * self.width {
            self.reads /= 2;
            for c in &mut self.counts {
                *c /= 2;
            }
        }
    }

    /// How often `key` was asked for lately (an overestimate at worst).
    pub fn estimate(&self, key: &str) -> u8 {
        self.slots(key).iter().map(|&s| self.counts[s]).min().unwrap_or(0)
    }

    /// Whether `candidate` should push `victim` out.
    pub fn admits(&self, candidate: &str, victim: &str) -> bool {
        self.estimate(candidate) > self.estimate(victim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_estimates_and_ageing() {
        let mut f = Frequency::new(1000);
        assert_eq!(f.width, 1024);
        for _ in 0..5 {
            f.record("hot");
        }
        f.record("once");
        assert_eq!(
            (f.estimate("hot"), f.estimate("once"), f.estimate("never")),
            (5, 1, 0)
        );
        assert!(f.admits("hot", "once") && !f.admits("once", "hot"));
        assert!(!f.admits("once", "once"), "a tie keeps what is there");
        for _ in 0..20 {
            f.record("hot");
        }
        assert_eq!(f.estimate("hot"), MAX, "counts saturate");
        // Past 10 × width reads, every count halves.
        for i in 0..10 * 1024 {
            f.record(&format!("k{i}"));
        }
        assert!(f.estimate("hot") <= MAX / 2 + 1, "{}", f.estimate("hot"));
    }
}
