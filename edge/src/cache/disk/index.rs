//! The disk tier's index: 1,024 shards of compact tables ([`super::table`]), so a hit, a write
//! and an eviction each take one shard's lock for a few lookups and never wait on each other
//! across shards. Per object it keeps 28 bytes: a 12-byte id (which also names the file), the
//! size, the ban number it was last checked at, its recency and its write generation. URLs and
//! tags stay in the files, read by the lurker when a ban needs them.
//!
//! Recency is a tick: files found at start rank by modification time (seconds, below 2^40),
//! everything used since then above them, in use order. Eviction samples entries (Redis's
//! approximated LRU) and removes the least recent of the sample; below [`EXACT_BELOW`] objects
//! it looks at all of them, so small tiers evict in exact LRU order.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use super::table::Table;
use super::Slot;

pub const SHARDS: usize = 1024;
/// Ticks of objects used since the start begin here (file times in seconds are below).
const LIVE: u64 = 1 << 40;
/// Entries looked at per eviction.
const SAMPLES: usize = 16;
/// Below this many objects, eviction looks at every one (exact LRU).
const EXACT_BELOW: usize = 4096;

/// An object's identity in the index and the name of its file: the first 8 bytes of its
/// primary key hash and 4 of its variance (0 for the primary slot). Two objects sharing an id
/// (about one pair in 10^6 at 10 M objects) share a file: each file also holds its full key,
/// checked on read, so the cost of a collision is a miss, never a wrong answer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Id {
    pub primary: u64,
    pub variance: u32,
}

impl Id {
    pub fn of((primary, variance): &Slot) -> Id {
        let p = u64::from_le_bytes(primary[..8].try_into().unwrap_or_default());
        Id {
            // Never all zero: that marks an empty table slot.
            primary: p.max(1),
            variance: variance.map_or(0, |v| {
                u32::from_le_bytes(v[..4].try_into().unwrap_or_default()).max(1)
            }),
        }
    }

    pub(super) fn raw(self) -> [u32; 3] {
        [self.primary as u32, (self.primary >> 32) as u32, self.variance]
    }

    pub(super) fn from_raw(r: [u32; 3]) -> Id {
        Id {
            primary: r[0] as u64 | (r[1] as u64) << 32,
            variance: r[2],
        }
    }

    /// The file name: the hex of the key bytes the id keeps (16 digits, then `-` and 8 for a
    /// variant), so a file's name starts as the earlier layout's full-key name did.
    pub fn name(self) -> String {
        match self.variance {
            0 => hex::encode(self.primary.to_le_bytes()),
            v => format!(
                "{}-{}",
                hex::encode(self.primary.to_le_bytes()),
                hex::encode(v.to_le_bytes())
            ),
        }
    }

    pub fn parse(name: &str) -> Option<Id> {
        let primary =
            |s: &str| -> Option<u64> { Some(u64::from_le_bytes(hex::decode(s).ok()?.try_into().ok()?)) };
        let variance =
            |s: &str| -> Option<u32> { Some(u32::from_le_bytes(hex::decode(s).ok()?.try_into().ok()?)) };
        let (primary, variance) = match name.split_once('-') {
            Some((p, v)) => (primary(p)?, variance(v).filter(|v| *v != 0)?),
            None => (primary(name)?, 0),
        };
        (primary != 0).then_some(Id { primary, variance })
    }

    fn shard(self) -> usize {
        self.primary as usize % SHARDS
    }
}

/// What the index holds of one object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Meta {
    pub size: u32,
    /// The ban number it was last checked at.
    pub checked: u32,
    /// Recency (48 bits): higher is more recent.
    pub tick: u64,
    /// Which write of the id this is: a ban check made of an older file is not recorded for a
    /// newer one.
    pub written: u16,
}

pub struct Index {
    shards: Box<[Mutex<Table>]>,
    bytes: AtomicU64,
    objects: AtomicU64,
    tick: AtomicU64,
    writes: AtomicU32,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::default())).collect(),
            bytes: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            tick: AtomicU64::new(LIVE),
            writes: AtomicU32::new(0),
        }
    }
}

/// A ban number as the index keeps it (32 bits: four billion bans).
pub fn seq32(seq: u64) -> u32 {
    seq.min(u32::MAX as u64) as u32
}

impl Index {
    fn shard(&self, id: Id) -> parking_lot::MutexGuard<'_, Table> {
        self.shards[id.shard()].lock()
    }

    /// Objects and bytes indexed.
    pub fn usage(&self) -> (usize, u64) {
        (self.objects.load(Relaxed) as usize, self.bytes.load(Relaxed))
    }

    /// Bytes of memory the index holds (its tables).
    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().heap_bytes()).sum::<usize>()
            + SHARDS * std::mem::size_of::<Mutex<Table>>()
    }

    pub fn get(&self, id: Id) -> Option<Meta> {
        self.shard(id).get(id)
    }

    /// Marks `id` used now; its entry, or `None` if it is not indexed.
    pub fn touch(&self, id: Id) -> Option<Meta> {
        let tick = self.tick.fetch_add(1, Relaxed);
        let mut seen = None;
        self.shard(id).update(id, |m| {
            m.tick = tick;
            seen = Some(*m);
        });
        seen
    }

    /// Counts an entry added and one removed. Called with the shard's lock held, so that an
    /// add and the removal of the same entry are never counted in the other order.
    fn account(&self, added: Option<u32>, removed: Option<Meta>) {
        if let Some(size) = added {
            self.bytes.fetch_add(size as u64, Relaxed);
            self.objects.fetch_add(1, Relaxed);
        }
        if let Some(old) = removed {
            self.bytes.fetch_sub(old.size as u64, Relaxed);
            self.objects.fetch_sub(1, Relaxed);
        }
    }

    /// Indexes a file just written (replacing any entry of its id) as the most recent; its
    /// write generation.
    pub fn insert(&self, id: Id, size: u32, checked: u64) -> u16 {
        let written = self.writes.fetch_add(1, Relaxed) as u16;
        let m = Meta {
            size,
            checked: seq32(checked),
            tick: self.tick.fetch_add(1, Relaxed),
            written,
        };
        let mut shard = self.shard(id);
        let old = shard.insert(id, m);
        self.account(Some(size), old);
        written
    }

    /// Indexes a file found on disk, unless its id is indexed already (a write or a read since
    /// the start knows better). `tick`: the file's time in seconds, or `None` for "used now".
    /// True if it was added.
    pub fn insert_found(&self, id: Id, size: u32, checked: u64, tick: Option<u64>) -> bool {
        let m = Meta {
            size,
            checked: seq32(checked),
            tick: tick.map_or_else(|| self.tick.fetch_add(1, Relaxed), |t| t.min(LIVE - 1)),
            written: self.writes.fetch_add(1, Relaxed) as u16,
        };
        let mut shard = self.shard(id);
        if shard.get(id).is_some() {
            return false;
        }
        shard.insert(id, m);
        self.account(Some(size), None);
        true
    }

    pub fn remove(&self, id: Id) -> Option<Meta> {
        let mut shard = self.shard(id);
        let old = shard.remove(id);
        self.account(None, old);
        old
    }

    /// Removes `id`'s entry if it is still the write `written`; whether it did.
    pub fn remove_written(&self, id: Id, written: u16) -> bool {
        let mut shard = self.shard(id);
        if shard.get(id).is_none_or(|m| m.written != written) {
            return false;
        }
        let old = shard.remove(id);
        self.account(None, old);
        true
    }

    /// Every indexed variant of a primary key.
    pub fn of_primary(&self, primary: u64) -> Vec<Id> {
        let probe = Id { primary, variance: 0 };
        self.shard(probe).of_primary(primary)
    }

    /// Notes that `id` passed the bans up to `seq`, if it still holds the write `written`.
    pub fn mark_checked(&self, id: Id, seq: u64, written: u16) {
        self.shard(id).update(id, |m| {
            if m.written == written {
                m.checked = m.checked.max(seq32(seq));
            }
        });
    }

    /// Entries of one shard last checked below `below`.
    pub fn unchecked(&self, shard: usize, below: u64) -> Vec<Id> {
        let below = seq32(below);
        let t = self.shards[shard].lock();
        t.iter()
            .filter(|(_, m)| m.checked < below)
            .map(|(id, _)| id)
            .collect()
    }

    /// The least recent entry, exactly (small tiers) or of a sample of [`SAMPLES`] (large).
    pub fn least_recent(&self) -> Option<(Id, Meta)> {
        let oldest = |a: Option<(Id, Meta)>, b: (Id, Meta)| match a {
            Some(a) if a.1.tick <= b.1.tick => Some(a),
            _ => Some(b),
        };
        if self.objects.load(Relaxed) < EXACT_BELOW as u64 {
            return self
                .shards
                .iter()
                .flat_map(|s| s.lock().iter().collect::<Vec<_>>())
                .fold(None, oldest);
        }
        let mut best = None;
        for _ in 0..SAMPLES {
            let (shard, at) = (
                rand::random::<u32>() as usize % SHARDS,
                rand::random::<u32>() as usize,
            );
            // An empty shard gives the next one's sample.
            let found = (0..SHARDS).find_map(|k| {
                let t = self.shards[(shard + k) % SHARDS].lock();
                let n = t.len();
                (n > 0).then(|| t.sample(at)).flatten()
            });
            if let Some(s) = found {
                best = oldest(best, s);
            }
        }
        best
    }

    /// Takes least recent entries out until at least `bytes` are freed or none is left; their
    /// ids (their files are the caller's to remove).
    pub fn evict(&self, bytes: u64) -> Vec<Id> {
        let (mut freed, mut out) = (0u64, Vec::new());
        while freed < bytes {
            let Some((id, m)) = self.least_recent() else { break };
            // Only if it is still that entry (not touched or rewritten since the sample).
            let mut shard = self.shard(id);
            if shard.get(id) == Some(m) {
                shard.remove(id);
                self.account(None, Some(m));
                freed += m.size as u64;
                out.push(id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_files_and_parse_back() {
        let cases: [(Slot, &str); 3] = [
            (([0xab; 16], None), "abababababababab"),
            (([1; 16], Some([2; 16])), "0101010101010101-02020202"),
            // All-zero primaries and variances still make ids that are not the empty marker.
            (([0; 16], Some([0; 16])), "0100000000000000-01000000"),
        ];
        for (slot, name) in cases {
            let id = Id::of(&slot);
            assert_eq!(id.name(), name);
            assert_eq!(Id::parse(name), Some(id));
            assert_eq!(Id::from_raw(id.raw()), id);
        }
        for bad in [
            "",
            "abc",
            "0000000000000000",
            "abababababababab-0",
            "abababababababab-00000000",
            "zz",
        ] {
            assert_eq!(Id::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn eviction_is_exact_lru_when_small_and_counts_stay_right() {
        let ix = Index::default();
        let ids: Vec<Id> = (1..=5u64)
            .map(|p| Id {
                primary: p * 977,
                variance: 0,
            })
            .collect();
        for id in &ids {
            ix.insert(*id, 100, 0);
        }
        assert!(ix.touch(ids[0]).is_some());
        assert_eq!(ix.evict(150), vec![ids[1], ids[2]]);
        assert_eq!(ix.usage(), (3, 300));
        // Found files rank below everything used since the start, by their time.
        let found = Id {
            primary: 4242,
            variance: 0,
        };
        assert!(ix.insert_found(found, 10, 0, Some(5)));
        assert!(!ix.insert_found(ids[0], 10, 0, Some(1)), "known already");
        assert_eq!(ix.evict(1), vec![found]);
        assert_eq!(ix.usage(), (3, 300));
    }

    #[test]
    fn sampled_eviction_keeps_recently_used_objects() {
        let ix = Index::default();
        let n = 20_000u64;
        for p in 1..=n {
            ix.insert(
                Id {
                    primary: p.wrapping_mul(0x9E37_79B9),
                    variance: 0,
                },
                1,
                0,
            );
        }
        // The most recent tenth is used again; evicting half must spare nearly all of it.
        let hot: Vec<Id> = (n * 9 / 10..=n)
            .map(|p| Id {
                primary: p.wrapping_mul(0x9E37_79B9),
                variance: 0,
            })
            .collect();
        for id in &hot {
            assert!(ix.touch(*id).is_some());
        }
        let gone = ix.evict(n / 2);
        assert_eq!(ix.usage().0 as u64, n - gone.len() as u64);
        let lost = hot.iter().filter(|id| ix.get(**id).is_none()).count();
        assert!(
            lost * 100 < hot.len(),
            "{lost} of {} hot objects evicted",
            hot.len()
        );
    }

    #[test]
    fn bans_walk_every_shard_and_checks_apply_to_the_write_they_tested() {
        let ix = Index::default();
        let a = Id {
            primary: 5,
            variance: 0,
        };
        let b = Id {
            primary: 5,
            variance: 7,
        };
        let w = ix.insert(a, 1, 2);
        ix.insert(b, 1, 9);
        let all: Vec<Id> = (0..SHARDS).flat_map(|s| ix.unchecked(s, 9)).collect();
        assert_eq!(all, vec![a]);
        let mut variants = ix.of_primary(5);
        variants.sort();
        assert_eq!(variants, vec![a, b]);
        // A check of an earlier write of `a` is not recorded for the one there now.
        ix.insert(a, 1, 2);
        ix.mark_checked(a, 9, w);
        assert_eq!(ix.get(a).unwrap().checked, 2);
        let now = ix.get(a).unwrap().written;
        ix.mark_checked(a, 9, now);
        assert_eq!(ix.get(a).unwrap().checked, 9);
        // Nor is a removal meant for the earlier write.
        assert!(!ix.remove_written(a, w) && ix.get(a).is_some());
        assert!(ix.remove_written(a, now) && ix.get(a).is_none());
        assert_eq!(ix.usage(), (1, 1));
    }
}
