//! The most requested objects, counted cheaply enough for the hit path: one request in
//! `sample_one_in` (per thread) is counted, in one of 16 shards taken with `try_lock` (a busy shard skips
//! the sample rather than wait), under its normalised URL and the `Accept` class it was asked
//! with. A shard past twice its share keeps its most counted half, so memory is bounded, and a
//! key counted after that starts from the highest count dropped (space-saving's rule, in
//! batches: counts may be over, never under, so an object asked for more often than a shard's
//! share of samples is never lost to the long tail). Every 64 × `keep` samples all counts are
//! halved, so the list follows what is popular now. A new edge preloads from a peer's
//! list (`GET /hot.json` on the admin listener, [`crate::warm`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

const SHARDS: usize = 16;

/// Longest URL and host a hot list keeps: longer ones are not counted, so the list's memory is
/// bounded (2 × `keep` entries of at most this much) whatever the requests look like.
pub const MAX_URL: usize = 1024;
pub const MAX_HOST: usize = 255;

/// One counted object: where it is and how it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct HotKey {
    /// The normalised host.
    pub host: String,
    /// The normalised path and query.
    pub url: String,
    /// The `Accept` class (`policy::accept_bucket`): which image formats the asker takes.
    pub accept: String,
}

/// A counted object and its (decayed, sampled) count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counted {
    #[serde(flatten)]
    pub key: HotKey,
    pub count: u32,
}

/// One shard's counts, and the highest count its last prune dropped.
#[derive(Default)]
struct Shard {
    counts: HashMap<HotKey, u32>,
    floor: u32,
}

pub struct Hot {
    shards: [Mutex<Shard>; SHARDS],
    /// Samples between two halvings of every count.
    aging_every: u64,
    /// Samples taken, all threads together (for the aging).
    sampled: AtomicU64,
    sample_one_in: u64,
    per_shard: usize,
}

impl Hot {
    /// Keeps about `keep` objects (at most twice that), counting one request in `sample_one_in`.
    pub fn new(keep: usize, sample_one_in: u64) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            aging_every: 64 * keep.max(1) as u64,
            sampled: AtomicU64::new(0),
            sample_one_in: sample_one_in.max(1),
            per_shard: keep.div_ceil(SHARDS).max(1),
        }
    }

    /// Counts a request, if it is the sampled one; `key` is only built then.
    pub fn record(&self, key: impl FnOnce() -> HotKey) {
        // Which request is sampled is counted per thread: no shared cache line on the hit path.
        thread_local! {
            static SEEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        }
        let n = SEEN.with(|c| {
            let n = c.get();
            c.set(n.wrapping_add(1));
            n
        });
        if n % self.sample_one_in != 0 {
            return;
        }
        let sample = self.sampled.fetch_add(1, Ordering::Relaxed) + 1;
        if sample % self.aging_every == 0 {
            for shard in &self.shards {
                let mut shard = shard.lock();
                shard.floor /= 2;
                shard.counts.values_mut().for_each(|c| *c = c.div_ceil(2));
            }
        }
        let key = key();
        if key.url.len() > MAX_URL || key.host.len() > MAX_HOST || key.accept.len() > 16 {
            return;
        }
        let Some(mut shard) = self.shards[shard_of(&key)].try_lock() else {
            return;
        };
        let floor = shard.floor;
        *shard.counts.entry(key).or_insert(floor) += 1;
        if shard.counts.len() > 2 * self.per_shard {
            let dropped = prune(&mut shard.counts, self.per_shard);
            shard.floor = shard.floor.max(dropped);
        }
    }

    /// The `limit` most counted objects, most counted first.
    pub fn top(&self, limit: usize) -> Vec<Counted> {
        let mut all: Vec<Counted> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .counts
                    .iter()
                    .map(|(k, &count)| Counted {
                        key: k.clone(),
                        count,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.url.cmp(&b.key.url)));
        all.truncate(limit);
        all
    }
}

fn shard_of(key: &HotKey) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key) as usize % SHARDS
}

/// Keeps the `keep` most counted entries; the highest count dropped.
fn prune(map: &mut HashMap<HotKey, u32>, keep: usize) -> u32 {
    let mut counts: Vec<u32> = map.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let floor = counts.get(keep.saturating_sub(1)).copied().unwrap_or(0);
    let (mut kept, mut dropped) = (0, 0);
    map.retain(|_, c| {
        // Ties at the floor are kept only while there is room.
        let keep_it = *c > floor || (*c == floor && kept < keep);
        if keep_it {
            kept += 1;
        } else {
            dropped = dropped.max(*c);
        }
        keep_it
    });
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> HotKey {
        HotKey {
            host: "images.hive.blog".into(),
            url: format!("/DQm{i}/a.jpg"),
            accept: String::new(),
        }
    }

    #[test]
    fn the_most_requested_come_first_and_memory_stays_bounded() {
        let hot = Hot::new(256, 1);
        // A long tail of one-hit objects, and ten objects asked for 50 times each, interleaved.
        for round in 0..50 {
            for hotkey in 0..10 {
                hot.record(|| key(hotkey));
            }
            for tail in 0..200 {
                hot.record(|| key(1000 + round * 200 + tail));
            }
        }
        let top = hot.top(10);
        let mut urls: Vec<String> = top.iter().map(|c| c.key.url.clone()).collect();
        urls.sort();
        let mut want: Vec<String> = (0..10).map(|i| key(i).url).collect();
        want.sort();
        assert_eq!(urls, want);
        let held: usize = hot.shards.iter().map(|s| s.lock().counts.len()).sum();
        assert!(held <= 2 * 256 + SHARDS * 2, "bounded: {held}");
    }

    #[test]
    fn one_in_n_is_counted() {
        let hot = Hot::new(1000, 4);
        let mut built = 0;
        for _ in 0..400 {
            hot.record(|| {
                built += 1;
                key(1)
            });
        }
        assert_eq!(built, 100, "the key is built only for sampled requests");
        assert_eq!(hot.top(5)[0].count, 100);
    }

    #[test]
    fn pruning_keeps_the_most_counted() {
        let mut map: HashMap<HotKey, u32> = (0..10).map(|i| (key(i), i as u32 + 1)).collect();
        assert_eq!(prune(&mut map, 3), 7);
        let mut left: Vec<u32> = map.values().copied().collect();
        left.sort();
        assert_eq!(left, [8, 9, 10]);
        let mut ties: HashMap<HotKey, u32> = (0..10).map(|i| (key(i), 1)).collect();
        prune(&mut ties, 4);
        assert_eq!(ties.len(), 4);
    }

    #[test]
    fn counts_age_so_what_was_popular_long_ago_gives_way() {
        let hot = Hot::new(16, 1);
        for _ in 0..1000 {
            hot.record(|| key(1));
        }
        // Later, another object is asked for steadily, beside a churning tail.
        for round in 0..2000 {
            hot.record(|| key(2));
            hot.record(|| key(10_000 + round));
        }
        let top = hot.top(1);
        assert_eq!(top[0].key, key(2), "{top:?}");
    }

    #[test]
    fn overlong_urls_are_not_kept() {
        let hot = Hot::new(16, 1);
        let long = HotKey {
            host: "h".into(),
            url: format!("/{}", "a".repeat(MAX_URL)),
            accept: String::new(),
        };
        hot.record(|| long.clone());
        hot.record(|| key(1));
        assert_eq!(hot.top(10).len(), 1);
    }
}
