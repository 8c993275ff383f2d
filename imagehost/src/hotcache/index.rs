//! The hot cache's index: each file's size and recency, least recent first for eviction. Files
//! found by the scan at start rank below every file used since, among themselves by modification
//! time; names are held once, shared by both maps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use service::admission::Frequency;

/// Ranks of files used since the start begin here, above any rank made from a modification time.
const LIVE: u64 = 1 << 62;
/// Bits under a found file's modification time (ms) that keep files of the same millisecond apart.
const SPREAD: u32 = 20;

/// What became of a file the scan found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Indexed,
    /// Already indexed: used (read or written) since the start, which ranks it.
    Present,
    /// Taken down while the scan ran: to be deleted, never indexed.
    Doomed,
}

pub struct Index {
    entries: HashMap<Arc<str>, (u64, u64)>, // name → (size, rank)
    order: BTreeMap<u64, Arc<str>>,         // rank → name, least recent first
    bytes: u64,
    next_live: u64,
    found: u64,
    /// True until the scan at start has been through the whole directory.
    loading: bool,
    /// Sources taken down while loading: their files the scan has not reached are not indexed
    /// (and not served) when it reaches them, but deleted.
    doomed: Vec<String>,
    /// How often keys were asked for lately, for admission.
    frequency: Frequency,
}

impl Index {
    /// An index for about `files` files.
    pub fn new(loading: bool, files: usize) -> Self {
        Self {
            frequency: Frequency::new(files),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            bytes: 0,
            next_live: LIVE,
            found: 0,
            loading,
            doomed: Vec::new(),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn loading(&self) -> bool {
        self.loading
    }

    /// The scan is through: nothing it has not seen can turn up any more.
    pub fn loaded(&mut self) {
        self.loading = false;
        self.doomed = Vec::new();
    }

    /// `key` was asked for (found or not).
    pub fn record(&mut self, key: &str) {
        self.frequency.record(key);
    }

    /// Whether a new `key` of `size` bytes is taken into a cache of `max` bytes: always while
    /// there is room (or it is there already), else only if asked for more often lately than the
    /// least recent file, which it would push out.
    pub fn admits(&self, key: &str, size: u64, max: u64) -> bool {
        if self.bytes + size <= max || self.entries.contains_key(key) {
            return true;
        }
        match self.order.first_key_value() {
            Some((_, victim)) => self.frequency.admits(key, &**victim),
            None => true,
        }
    }

    /// Marks `key` used now; false if it is not indexed.
    pub fn touch(&mut self, key: &str) -> bool {
        let rank = self.next_live;
        match self.entries.get_mut(key) {
            Some((_, r)) => {
                if let Some(name) = self.order.remove(r) {
                    self.order.insert(rank, name);
                }
                *r = rank;
                self.next_live += 1;
                true
            }
            None => false,
        }
    }

    /// `key` written (or found by a read) now, with `size` bytes.
    pub fn insert(&mut self, key: &str, size: u64) {
        self.remove(key);
        let name: Arc<str> = Arc::from(key);
        self.entries.insert(name.clone(), (size, self.next_live));
        self.order.insert(self.next_live, name);
        self.next_live += 1;
        self.bytes += size;
    }

    /// A file the scan found, last modified at `mtime_ms`.
    pub fn insert_found(&mut self, key: &str, size: u64, mtime_ms: u64) -> Found {
        if self.doomed(key) {
            return Found::Doomed;
        }
        if self.entries.contains_key(key) {
            return Found::Present;
        }
        let spread = self.found & ((1 << SPREAD) - 1);
        self.found += 1;
        let mut rank = (mtime_ms.min((LIVE >> SPREAD) - 1) << SPREAD) | spread;
        // Over 2^20 files of one millisecond: the next free rank (below the live ones).
        while self.order.contains_key(&rank) && rank < LIVE - 1 {
            rank += 1;
        }
        let name: Arc<str> = Arc::from(key);
        self.entries.insert(name.clone(), (size, rank));
        self.order.insert(rank, name);
        self.bytes += size;
        Found::Indexed
    }

    pub fn remove(&mut self, key: &str) -> Option<u64> {
        let (size, rank) = self.entries.remove(key)?;
        self.order.remove(&rank);
        self.bytes -= size;
        Some(size)
    }

    /// Names to delete so that `bytes ≤ max`, least recent first.
    pub fn evict(&mut self, max: u64) -> Vec<Arc<str>> {
        let mut gone = Vec::new();
        while self.bytes > max {
            let Some((_, name)) = self.order.pop_first() else {
                break;
            };
            if let Some((size, _)) = self.entries.remove(&name) {
                self.bytes -= size;
            }
            gone.push(name);
        }
        gone
    }

    /// Unindexes `source` and its variants (`<source>_…`); their names. While loading, the
    /// files the scan has yet to reach are doomed too.
    pub fn remove_derived(&mut self, source: &str) -> Vec<Arc<str>> {
        let gone: Vec<Arc<str>> = self
            .entries
            .keys()
            .filter(|k| derived(k, source))
            .cloned()
            .collect();
        for k in &gone {
            self.remove(k);
        }
        if self.loading {
            self.doomed.push(source.to_string());
        }
        gone
    }

    /// Whether `key` belongs to a source taken down while loading.
    pub fn doomed(&self, key: &str) -> bool {
        self.doomed.iter().any(|s| derived(key, s))
    }
}

/// `key` is `source` or one of its variants.
fn derived(key: &str, source: &str) -> bool {
    key.strip_prefix(source)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found files go first, oldest modification first; then files by last use.
    #[test]
    fn eviction_order_table() {
        let mut ix = Index::new(true, 1000);
        ix.insert("live_a", 10);
        assert_eq!(ix.insert_found("old", 10, 1_000), Found::Indexed);
        assert_eq!(ix.insert_found("older", 10, 500), Found::Indexed);
        assert_eq!(
            ix.insert_found("live_a", 99, 1),
            Found::Present,
            "used since the start"
        );
        ix.insert("live_b", 10);
        assert!(ix.touch("live_a"));
        assert!(!ix.touch("missing"));
        // Files of one millisecond are all kept apart.
        for i in 0..50 {
            assert_eq!(ix.insert_found(&format!("same{i}"), 1, 2_000), Found::Indexed);
        }
        assert_eq!((ix.len(), ix.bytes()), (54, 90));
        let order: Vec<String> = ix.evict(0).iter().map(|n| n.to_string()).collect();
        assert_eq!(&order[..2], ["older", "old"]);
        assert!(order[2..52].iter().all(|n| n.starts_with("same")));
        assert_eq!(&order[52..], ["live_b", "live_a"]);
        assert_eq!((ix.len(), ix.bytes()), (0, 0));
    }

    /// A takedown while loading reaches the files the scan has not seen yet; once loaded,
    /// nothing is doomed any more (every file was seen).
    #[test]
    fn a_takedown_while_loading_dooms_what_the_scan_has_not_reached() {
        let mut ix = Index::new(true, 1000);
        assert_eq!(ix.insert_found("S", 5, 1), Found::Indexed);
        ix.insert("S_640x0", 5);
        ix.insert("SX", 5);
        let mut gone: Vec<String> = ix.remove_derived("S").iter().map(|n| n.to_string()).collect();
        gone.sort();
        assert_eq!(gone, ["S", "S_640x0"]);
        assert_eq!(ix.insert_found("S_100x100", 5, 1), Found::Doomed);
        assert!(ix.doomed("S") && ix.doomed("S_x") && !ix.doomed("SX") && !ix.doomed("T"));
        assert_eq!(ix.insert_found("SX", 5, 1), Found::Present);
        ix.loaded();
        assert!(!ix.doomed("S_100x100") && !ix.loading());
        assert!(
            ix.remove_derived("SX").len() == 1 && ix.doomed.is_empty(),
            "loaded: nothing to doom"
        );
    }
}
