//! Which objects a full cache takes (TinyLFU): every request counts its key in a small frequency
//! sketch, and a new object goes in only if its key was asked for more often, lately, than the
//! object it would push out. A long tail of keys asked for once cannot flush the objects asked
//! for all the time; a key asked for twice gets in. Once the requests counted reach `20 × width`,
//! every count halves, and so does the number of requests counted (Caffeine's reset), so what
//! was popular long ago fades. Shared by imagehost's hot cache and the edge's two tiers.
//!
//! The sketch is a count-min of four rows of counts up to 31 (a byte each): 4 bytes per object
//! the cache can hold, whatever the number of keys seen. Caffeine's choice, counts up to 15
//! halved at `10 × width`, forgets too soon to tell the long tail's objects apart: in a
//! simulation of the edge's memory tier on the `peers` trace (Zipf 0.9, 96 MiB), 31 and
//! `20 × width` kept 78.3 % of requests as hits, against 76.9 % before. Longer memory costs
//! adaptation: after the whole popularity order changed at once, the next 500,000 requests (61
//! per count in a row) had 71.9 % hits, against 74.6 % before. Counts up to 255 halved
//! at `40 × width` gained nothing more in the steady state (77.9 %), and had only 66.8 % there.
//!
//! Counts are atomics updated without a lock (an increment lost to a race only undercounts), so
//! every request may record.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};

pub struct Frequency {
    counts: Box<[AtomicU8]>,
    /// Row length, a power of two.
    width: usize,
    requests: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
}

const ROWS: usize = 4;
const MAX: u8 = 31;
/// Requests counted, per count in a row, at which every count halves (and the number counted
/// halves with them: after the first, a halving every `PERIOD / 2 × width` requests).
const PERIOD: usize = 20;

impl Frequency {
    /// A sketch for a cache of about `objects` objects (rows of 1 Ki to 8 Mi counts).
    pub fn new(objects: usize) -> Self {
        let width = objects.clamp(1 << 10, 1 << 23).next_power_of_two();
        Self {
            counts: (0..width * ROWS).map(|_| AtomicU8::new(0)).collect(),
            width,
            requests: AtomicUsize::new(0),
            hasher: Default::default(),
        }
    }

    /// Bytes the sketch holds.
    pub fn bytes(&self) -> usize {
        self.counts.len()
    }

    fn slots<K: Hash + ?Sized>(&self, key: &K) -> [usize; ROWS] {
        let h = self.hasher.hash_one(key);
        // Four indexes from one 64-bit hash (Kirsch–Mitzenmacher: h1 + i·h2).
        let (h1, h2) = (h as u32 as usize, ((h >> 32) as usize) | 1);
        std::array::from_fn(|i| i * self.width + (h1.wrapping_add(i.wrapping_mul(h2)) & (self.width - 1)))
    }

    /// `key` was asked for.
    pub fn record<K: Hash + ?Sized>(&self, key: &K) {
        for s in self.slots(key) {
            let c = &self.counts[s];
            let v = c.load(Relaxed);
            if v < MAX {
                c.store(v + 1, Relaxed);
            }
        }
        // The request that reaches the period halves every count (the others go on counting).
        if self.requests.fetch_add(1, Relaxed) + 1 == PERIOD * self.width {
            self.requests.fetch_sub(PERIOD / 2 * self.width, Relaxed);
            for c in self.counts.iter() {
                c.store(c.load(Relaxed) / 2, Relaxed);
            }
        }
    }

    /// How often `key` was asked for lately (an overestimate at worst).
    pub fn estimate<K: Hash + ?Sized>(&self, key: &K) -> u8 {
        self.slots(key)
            .iter()
            .map(|&s| self.counts[s].load(Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Whether `candidate` should push `victim` out (a tie keeps what is there: TinyLFU's rule,
    /// the best hit ratio on a steady popularity law).
    pub fn admits<K: Hash + ?Sized>(&self, candidate: &K, victim: &K) -> bool {
        self.estimate(candidate) > self.estimate(victim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_estimates_and_ageing() {
        let f = Frequency::new(1000);
        assert_eq!((f.width, f.bytes()), (1024, 4096));
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
        for _ in 0..300 {
            f.record("hot");
        }
        assert_eq!(f.estimate("hot"), MAX, "counts saturate");
        // At PERIOD × width requests, every count halves, and not before.
        let so_far = f.requests.load(Relaxed);
        for i in 0..PERIOD * 1024 - so_far - 1 {
            f.record(&format!("k{i}"));
        }
        assert_eq!(f.estimate("hot"), MAX, "not halved one request early");
        f.record("one more");
        assert_eq!(f.estimate("hot"), MAX / 2);
        assert_eq!(
            f.requests.load(Relaxed),
            PERIOD / 2 * 1024,
            "the count of requests halves too"
        );
        // Keys of any hashable type.
        let f = Frequency::new(10);
        f.record(&42u64);
        assert_eq!((f.estimate(&42u64), f.estimate(&43u64)), (1, 0));
    }
}
