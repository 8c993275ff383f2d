//! Memory admission: pingora's byte-bounded LRU, taking a new object into a full memory tier
//! only if its key was asked for lately at least as often as all the objects it would push out
//! together (the least recent of the heaviest LRU shards), as the store's
//! [`service::admission::Frequency`] counts. Among keys asked for equally often, recency decides,
//! so a new image asked for once takes the place of one old image asked for once; a key asked
//! for more often than the flood is never pushed out by it; and an object that needs the room of
//! several others must be asked for as often as they were together, so a large image asked for
//! once does not push out several small ones asked for once (the sketch's counts halve as it
//! ages, so that waits at most one ageing period). The same memory then holds more objects, and
//! hits count by object. An object refused is dropped from memory at once (the disk tier, whose
//! admission is strict TinyLFU, keeps its copy if it took one).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::SystemTime;

use async_trait::async_trait;
use pingora::cache::eviction::lru::Manager;
use pingora::cache::eviction::{CacheEntryKey, CacheEntryKeyRef, EvictionManager};
use pingora::Result;

use super::disk::Id;
use super::store::Store;
use crate::metrics;

pub struct Admitting<const N: usize> {
    pub lru: Manager<N>,
    store: &'static Store,
    /// Objects and bytes this wrapper evicted itself (pingora's counters hold the rest).
    evicted: AtomicUsize,
    evicted_bytes: AtomicUsize,
}

fn id(key: &CacheEntryKey) -> Id {
    let k = key.key();
    Id::of(&(k.primary, k.variance.as_deref().copied()))
}

impl<const N: usize> Admitting<N> {
    pub fn new(lru: Manager<N>, store: &'static Store) -> Self {
        Self {
            lru,
            store,
            evicted: AtomicUsize::new(0),
            evicted_bytes: AtomicUsize::new(0),
        }
    }

    /// Makes room for `item` at `size` bytes (what it adds, if it is tracked already), the
    /// least recent object of the heaviest LRU shard first, as long as those pushed out were
    /// asked for no more often, together, than `item`. Returns the objects pushed out and
    /// whether `item` may go in.
    ///
    /// The decision is made on the least recent object of each shard before any is pushed out,
    /// so a refused object costs the tier nothing. Only an object that needs more room than all
    /// those together is decided on as it goes (then one refused may have pushed some out).
    fn make_room(&self, item: &CacheEntryKey, size: usize) -> (Vec<CacheEntryKey>, bool) {
        let adds = size.saturating_sub(self.lru.peek_weight(item).unwrap_or(0));
        let need = (self.lru.total_size() + adds).saturating_sub(self.lru.weight_limit());
        if need == 0 {
            return (Vec::new(), true);
        }
        let wanted = u32::from(self.store.frequency.estimate(&id(item)));
        let mut heads: Vec<(usize, CacheEntryKey)> = (0..N)
            .filter(|&s| self.lru.shard_len(s) > 0)
            .filter_map(|s| Some((self.lru.shard_weight(s), self.lru.peek_lru(s)?)))
            .collect();
        heads.sort_by_key(|h| std::cmp::Reverse(h.0));
        let (mut pushed, mut freed, mut victims) = (0u32, 0usize, Vec::new());
        for (_, victim) in heads {
            if freed >= need || victim == *item {
                // Enough; or itself the least recent: what it has is as much room as it gets.
                break;
            }
            pushed += u32::from(self.store.frequency.estimate(&id(&victim)));
            if pushed > wanted {
                metrics::CACHE_MEMORY_REFUSED.inc();
                return (Vec::new(), false);
            }
            freed += self.lru.peek_weight(&victim).unwrap_or(0);
            victims.push(victim);
        }
        let mut out = Vec::new();
        for victim in victims {
            self.push_out(&victim);
            out.push(victim);
        }
        while self.lru.total_size() + adds > self.lru.weight_limit() {
            let Some(shard) = (0..N)
                .filter(|&s| self.lru.shard_len(s) > 0)
                .max_by_key(|&s| self.lru.shard_weight(s))
            else {
                break;
            };
            let Some(victim) = self.lru.peek_lru(shard) else {
                break;
            };
            if victim == *item {
                break;
            }
            pushed += u32::from(self.store.frequency.estimate(&id(&victim)));
            if pushed > wanted {
                // Larger than every shard's least recent object together: what it pushed out
                // so far is gone already, and made room for whoever is next.
                metrics::CACHE_MEMORY_REFUSED.inc();
                return (out, false);
            }
            self.push_out(&victim);
            out.push(victim);
        }
        (out, true)
    }

    fn push_out(&self, victim: &CacheEntryKey) {
        let weight = self.lru.peek_weight(victim).unwrap_or(0);
        self.lru.remove(CacheEntryKeyRef::from(victim));
        self.evicted.fetch_add(1, Relaxed);
        self.evicted_bytes.fetch_add(weight, Relaxed);
    }
}

#[async_trait]
impl<const N: usize> EvictionManager for Admitting<N> {
    fn total_size(&self) -> usize {
        self.lru.total_size()
    }
    fn total_items(&self) -> usize {
        self.lru.total_items()
    }
    fn evicted_size(&self) -> usize {
        self.lru.evicted_size() + self.evicted_bytes.load(Relaxed)
    }
    fn evicted_items(&self) -> usize {
        self.lru.evicted_items() + self.evicted.load(Relaxed)
    }

    /// A fetched object. What it pushes out, and itself when refused, come back as evicted, so
    /// pingora drops them from memory.
    fn admit(&self, item: CacheEntryKey, size: usize, fresh_until: SystemTime) -> Vec<CacheEntryKey> {
        let (mut out, admitted) = self.make_room(&item, size);
        if !admitted {
            // Dropped from memory by pingora; an earlier copy's entry goes with it.
            self.lru.remove(CacheEntryKeyRef::from(&item));
            out.push(item);
            return out;
        }
        // Room is made; this records the object at its size (a refetch may be larger than the
        // copy it replaces) and evicts whatever a race overfilled.
        out.extend(self.lru.admit(item, size, fresh_until));
        out
    }

    fn increment_weight(
        &self,
        item: &CacheEntryKey,
        delta: usize,
        max_weight: Option<usize>,
    ) -> Vec<CacheEntryKey> {
        self.lru.increment_weight(item, delta, max_weight)
    }

    fn remove(&self, item: CacheEntryKeyRef<'_>) {
        self.lru.remove(item)
    }

    /// A hit; one on an object memory does not track yet (read back from disk) is admitted as
    /// a fetched one would be, and dropped from memory when refused.
    fn access(&self, item: &CacheEntryKey, size: usize, fresh_until: SystemTime) -> bool {
        if self.lru.peek(item) {
            return self.lru.access(item, size, fresh_until);
        }
        let (pushed_out, admitted) = self.make_room(item, size);
        for gone in pushed_out {
            let k = gone.key();
            self.store
                .drop_from_memory(&k.primary, k.variance.as_deref().copied());
        }
        if admitted {
            return self.lru.access(item, size, fresh_until);
        }
        let k = item.key();
        self.store
            .drop_from_memory(&k.primary, k.variance.as_deref().copied());
        false
    }

    fn peek(&self, item: &CacheEntryKey) -> bool {
        self.lru.peek(item)
    }

    async fn save(&self, dir_path: &str) -> Result<()> {
        self.lru.save(dir_path).await
    }

    async fn load(&self, dir_path: &str) -> Result<()> {
        self.lru.load(dir_path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::key::CompactCacheKey;

    fn key(i: u8) -> CacheEntryKey {
        CacheEntryKey::key_only(CompactCacheKey {
            primary: [i; 16],
            variance: None,
            user_tag: "".into(),
        })
    }

    fn admitting(limit: usize) -> Admitting<1> {
        admitting_in::<1>(limit)
    }

    fn admitting_in<const N: usize>(limit: usize) -> Admitting<N> {
        let store: &'static Store = Box::leak(Box::new(Store::new(
            1 << 20,
            None,
            super::super::bans::Bans::in_memory(),
            1024,
        )));
        Admitting::new(Manager::with_capacity(limit, 64), store)
    }

    fn id_of(i: u8) -> Id {
        Id::of(&([i; 16], None))
    }

    /// An object that needs the room of two objects asked for once each is refused at its first
    /// request, pushing nothing out, and taken at its second.
    #[test]
    fn the_room_of_several_objects_is_taken_at_the_second_request() {
        let now = SystemTime::now();
        let a = admitting_in::<16>(1000);
        // Two objects in different shards, each the least recent of its own.
        let shard = |i: u8| a.lru.get_shard_for_key(&key(i));
        let (first, second) = (
            1u8,
            (2..=255u8)
                .find(|&i| shard(i) != shard(1))
                .expect("another shard"),
        );
        let big = if second == 3 { 4 } else { 3 };
        for i in [first, second] {
            a.store.frequency.record(&id_of(i));
            assert!(a.admit(key(i), 500, now).is_empty());
        }
        a.store.frequency.record(&id_of(big));
        assert_eq!(a.admit(key(big), 800, now), vec![key(big)]);
        assert!(a.lru.peek(&key(first)) && a.lru.peek(&key(second)) && !a.lru.peek(&key(big)));
        a.store.frequency.record(&id_of(big));
        let mut out = a.admit(key(big), 800, now);
        out.sort_by_key(|k| k.key().primary);
        assert_eq!(out, vec![key(first), key(second)]);
        assert_eq!((a.lru.peek_weight(&key(big)), a.total_size()), (Some(800), 800));
    }

    /// An object that needs more room than every shard's least recent object together is decided
    /// on as it goes: refused when those it would push out were asked for more often together,
    /// and counted as refused.
    #[test]
    fn a_refusal_decided_as_it_goes_is_counted() {
        let now = SystemTime::now();
        let a = admitting(1000);
        for i in 1..=3 {
            a.store.frequency.record(&id_of(i));
            assert!(a.admit(key(i), 300, now).is_empty());
        }
        for _ in 0..2 {
            a.store.frequency.record(&id_of(9));
        }
        let refused = metrics::CACHE_MEMORY_REFUSED.get();
        let mut out = a.admit(key(9), 900, now);
        out.sort_by_key(|k| k.key().primary);
        assert_eq!(out, vec![key(1), key(2), key(9)], "two pushed out, then refused");
        assert!(a.lru.peek(&key(3)) && !a.lru.peek(&key(9)));
        assert!(metrics::CACHE_MEMORY_REFUSED.get() > refused);
    }

    /// A full tier keeps what is asked for more often, takes what is asked for as often (the
    /// least recent goes), and weighs a refetched object at its new size.
    #[test]
    fn admission_by_frequency_and_weights_of_refetches() {
        let now = SystemTime::now();
        let a = admitting(1000);
        for _ in 0..3 {
            a.store.frequency.record(&id_of(1));
        }
        assert!(a.admit(key(1), 500, now).is_empty());
        assert!(a.admit(key(2), 500, now).is_empty());
        // Full. 1 is used again; 3, asked for once like 2 (now the least recent), replaces it.
        assert!(a.access(&key(1), 500, now));
        a.store.frequency.record(&id_of(2));
        a.store.frequency.record(&id_of(3));
        assert_eq!(a.admit(key(3), 500, now), vec![key(2)]);
        // 1 is now the least recent, and asked for more often than 4: 4 is refused.
        a.store.frequency.record(&id_of(4));
        assert_eq!(a.admit(key(4), 500, now), vec![key(4)]);
        assert!(a.lru.peek(&key(1)) && a.lru.peek(&key(3)));
        assert_eq!(a.total_size(), 1000);
        // A refetch of 3, larger, while 3 is asked for less than 1: refused, dropped whole.
        assert_eq!(a.admit(key(3), 900, now), vec![key(3)]);
        assert!(!a.lru.peek(&key(3)) && a.lru.peek(&key(1)));
        assert_eq!(a.total_size(), 500);
        // Asked for more often than 1, it gets in, then a larger refetch of it is weighed at its
        // new size, room made by pushing 1 out.
        for _ in 0..5 {
            a.store.frequency.record(&id_of(3));
        }
        assert!(a.admit(key(3), 500, now).is_empty());
        assert_eq!(a.admit(key(3), 900, now), vec![key(1)]);
        assert_eq!((a.lru.peek_weight(&key(3)), a.total_size()), (Some(900), 900));
    }
}
