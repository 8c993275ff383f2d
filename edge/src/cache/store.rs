//! The production cache storage for pingora: sharded in memory, zero-copy hits (`Bytes` slices),
//! seekable for ranges, every variant of a URL grouped so a purge removes them all, and an
//! optional disk tier behind it (see [`super::disk`]). Memory is bounded by pingora's LRU
//! eviction manager, which calls [`Storage::purge`] with `PurgeType::Eviction`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use pingora::cache::eviction::{CacheEntryKeyRef, EvictionManager};
use pingora::cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use pingora::cache::storage::{HitHandler, MissHandler, PurgeOutcome, PurgeTarget};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, PurgeType, Storage};
use pingora::Result;

use super::disk::{Disk, Record, Slot};
use crate::metrics;

mod handlers;
mod wire;
use handlers::{hit, Miss};
pub use wire::MemoryHit;

const SHARDS: usize = 64;
/// What an entry costs beyond its body and headers (maps, Arcs, the URL).
const ENTRY_OVERHEAD: usize = 256;

struct Entry {
    variance: Option<HashBinary>,
    url: Bytes,
    meta: CacheMeta,
    meta_bin: (Vec<u8>, Vec<u8>),
    body: Bytes,
    /// The status line and stored headers in HTTP/1.1 wire form, made at the first fast-path
    /// hit (`None`: this object is not one the fast path serves).
    wire: std::sync::OnceLock<Option<Bytes>>,
}

impl Entry {
    fn weight(&self) -> usize {
        self.body.len() + self.meta_bin.0.len() + self.meta_bin.1.len() + self.url.len() + ENTRY_OVERHEAD
    }
}

type Shard = RwLock<HashMap<HashBinary, Vec<Arc<Entry>>>>;

pub struct Store {
    shards: Box<[Shard]>,
    bytes: AtomicU64,
    max_object: usize,
    disk: Option<Disk>,
    eviction: RwLock<Option<&'static (dyn EvictionManager + Sync)>>,
}

impl Store {
    pub fn new(max_object: usize, disk: Option<Disk>) -> Store {
        Store {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            bytes: AtomicU64::new(0),
            max_object,
            disk,
            eviction: RwLock::new(None),
        }
    }

    /// The eviction manager that tracks this storage, told about removals made by bans.
    pub fn set_eviction(&self, m: &'static (dyn EvictionManager + Sync)) {
        *self.eviction.write() = Some(m);
    }

    fn shard(&self, primary: &HashBinary) -> &Shard {
        &self.shards[primary[0] as usize % SHARDS]
    }

    /// Bytes held in memory (bodies, headers and overhead) and objects on disk (count, bytes).
    pub fn usage(&self) -> (u64, Option<(usize, u64)>) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.disk.as_ref().map(Disk::usage),
        )
    }

    fn get(&self, primary: &HashBinary, variance: Option<HashBinary>) -> Option<Arc<Entry>> {
        let shard = self.shard(primary).read();
        shard
            .get(primary)?
            .iter()
            .find(|e| e.variance == variance)
            .cloned()
    }

    fn insert(&self, primary: HashBinary, entry: Arc<Entry>) {
        let w = entry.weight() as u64;
        let mut shard = self.shard(&primary).write();
        let slots = shard.entry(primary).or_default();
        if let Some(i) = slots.iter().position(|e| e.variance == entry.variance) {
            let old = std::mem::replace(&mut slots[i], entry);
            self.bytes.fetch_sub(old.weight() as u64, Ordering::Relaxed);
        } else {
            slots.push(entry);
        }
        self.bytes.fetch_add(w, Ordering::Relaxed);
    }

    /// Removes from memory the variant `variance`, or all variants when `all`.
    fn remove_mem(&self, primary: &HashBinary, variance: Option<HashBinary>, all: bool) -> Vec<Arc<Entry>> {
        let mut shard = self.shard(primary).write();
        let Some(slots) = shard.get_mut(primary) else {
            return Vec::new();
        };
        let removed: Vec<Arc<Entry>> = if all {
            std::mem::take(slots)
        } else {
            match slots.iter().position(|e| e.variance == variance) {
                Some(i) => vec![slots.swap_remove(i)],
                None => Vec::new(),
            }
        };
        if slots.is_empty() {
            shard.remove(primary);
        }
        for e in &removed {
            self.bytes.fetch_sub(e.weight() as u64, Ordering::Relaxed);
        }
        removed
    }

    fn forget(&self, primary: HashBinary, variance: Option<HashBinary>) {
        if let Some(m) = *self.eviction.read() {
            let key = CompactCacheKey {
                primary,
                variance: variance.map(Box::new),
                user_tag: "".into(),
            };
            m.remove(CacheEntryKeyRef::from_entry_id(&key, None));
        }
    }

    /// Removes every variant of one URL (by primary key hash) from memory and disk; how many.
    pub fn purge_primary(&self, primary: &HashBinary) -> usize {
        let gone = self.remove_mem(primary, None, true);
        for e in &gone {
            self.forget(*primary, e.variance);
        }
        let on_disk = self.disk.as_ref().map_or(0, |d| d.remove_primary(primary));
        gone.len().max(on_disk)
    }

    /// Removes every cached object (memory and disk) whose URL part satisfies `matches`: a ban.
    pub fn ban(&self, matches: &dyn Fn(&[u8]) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut gone: Vec<(HashBinary, Option<HashBinary>)> = Vec::new();
            let mut s = shard.write();
            s.retain(|primary, slots| {
                slots.retain(|e| {
                    let hit = matches(&e.url);
                    if hit {
                        self.bytes.fetch_sub(e.weight() as u64, Ordering::Relaxed);
                        gone.push((*primary, e.variance));
                    }
                    !hit
                });
                !slots.is_empty()
            });
            drop(s);
            removed += gone.len();
            for (p, v) in gone {
                self.forget(p, v);
            }
        }
        let on_disk = self.disk.as_ref().map_or(0, |d| d.remove_matching(matches));
        removed.max(on_disk)
    }

    async fn load_from_disk(&'static self, slot: Slot) -> Option<Arc<Entry>> {
        let disk = self.disk.as_ref()?;
        if !disk.contains(&slot) {
            return None;
        }
        let rec = tokio::task::spawn_blocking(move || disk.read(&slot))
            .await
            .ok()??;
        let meta = CacheMeta::deserialize(&rec.meta.0, &rec.meta.1).ok()?;
        let entry = Arc::new(Entry {
            variance: slot.1,
            url: rec.url,
            meta,
            meta_bin: rec.meta,
            body: rec.body,
            wire: Default::default(),
        });
        self.insert(slot.0, entry.clone());
        metrics::CACHE_DISK_READS.inc();
        Some(entry)
    }

    async fn save_to_disk(&'static self, slot: Slot, entry: &Arc<Entry>) {
        let Some(disk) = self.disk.as_ref() else { return };
        let rec = Record {
            url: entry.url.clone(),
            meta: entry.meta_bin.clone(),
            body: entry.body.clone(),
        };
        match tokio::task::spawn_blocking(move || disk.write(&slot, &rec)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "disk cache write failed"),
            Err(e) => tracing::warn!(error = %e, "disk cache write task failed"),
        }
    }
}

/// A copy of `m` (pingora's `CacheMeta` is not `Clone`): freshness, stale windows, headers and
/// variance; a revalidation's `updated` time is kept as the epoch, so `Age` stays right. Far
/// cheaper than deserializing (zstd) on every hit.
fn clone_meta(m: &CacheMeta) -> CacheMeta {
    let mut c = CacheMeta::new(
        m.fresh_until(),
        m.created(),
        m.stale_while_revalidate_sec(),
        m.stale_if_error_sec(),
        m.response_header_copy(),
    );
    if let Some(v) = m.variance() {
        c.set_variance(v);
    }
    match m.epoch_override() {
        Some(e) => c.set_epoch_override(e),
        None if m.updated() != m.created() => c.set_epoch_override(m.updated()),
        None => {}
    }
    c
}

#[async_trait]
impl Storage for Store {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _t: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let (primary, variance) = (key.primary_bin(), key.variance_bin());
        if let Some(e) = self.get(&primary, variance) {
            return Ok(Some(hit(e)));
        }
        Ok(self.load_from_disk((primary, variance)).await.map(hit))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _t: &SpanHandle,
    ) -> Result<MissHandler> {
        let meta_bin = meta.serialize()?;
        // Sized from Content-Length when the origin sends it, so the buffer does not grow by
        // doubling (a 50 KB body would otherwise sit in a 64 KB allocation for its cached life).
        let length = meta
            .response_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n <= self.max_object)
            .unwrap_or(0);
        Ok(Box::new(Miss {
            store: self,
            primary: key.primary_bin(),
            variance: key.variance_bin(),
            url: Bytes::copy_from_slice(super::key::url_of(key.primary_key())),
            meta: clone_meta(meta),
            meta_bin,
            body: BytesMut::with_capacity(length),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        kind: PurgeType,
        _t: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let key = target.key();
        let (primary, variance) = (key.primary_bin(), key.variance_bin());
        let (removed, on_disk) = match (target, kind) {
            // The LRU evicting one object: memory only, the disk tier keeps it.
            (PurgeTarget::Exact(_), PurgeType::Eviction) => {
                (self.remove_mem(&primary, variance, false).len(), 0)
            }
            (PurgeTarget::Exact(_), PurgeType::Invalidation) => {
                let d = self.disk.as_ref().is_some_and(|d| d.remove(&(primary, variance)));
                (self.remove_mem(&primary, variance, false).len(), d as usize)
            }
            // An invalidation of a URL: every variant, everywhere.
            (PurgeTarget::Active(_), _) => (self.purge_primary(&primary), 0),
        };
        Ok(if removed + on_disk > 0 {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(&'static self, key: &CacheKey, meta: &CacheMeta, _t: &SpanHandle) -> Result<bool> {
        let (primary, variance) = (key.primary_bin(), key.variance_bin());
        let Some(old) = self.get(&primary, variance) else {
            return Ok(false);
        };
        let entry = Arc::new(Entry {
            variance,
            url: old.url.clone(),
            meta: clone_meta(meta),
            meta_bin: meta.serialize()?,
            body: old.body.clone(),
            wire: Default::default(),
        });
        self.insert(primary, entry.clone());
        self.save_to_disk((primary, variance), &entry).await;
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
