//! The production cache storage for pingora: sharded in memory, zero-copy hits (`Bytes` slices),
//! seekable for ranges, every variant of a URL grouped so a purge removes them all, and an
//! optional disk tier behind it (see [`super::disk`]). Memory is bounded by pingora's LRU
//! eviction manager, which calls [`Storage::purge`] with `PurgeType::Eviction`.
//!
//! Bans ([`super::bans`]) are checked lazily: an object found in memory or on disk is tested
//! against the bans made since it was last checked before it is served, with no shard lock held
//! while a ban's condition runs; the lurker ([`lurker`]) removes the rest in the background.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

use super::bans::Bans;
use super::disk::{Disk, Id, Record, Slot, Written};
use super::tags;
use crate::metrics;
use service::admission::Frequency;

pub mod fetching;
mod handlers;
mod head;
pub mod lurker;
mod weight;
mod wire;
use handlers::{hit, Miss};
use head::Head;
use weight::{allocated, ENTRY_OVERHEAD};
pub use wire::MemoryHit;

const SHARDS: usize = 64;

/// When a full disk tier was last logged (Unix seconds; 0: never).
static DISK_FULL_LOGGED: AtomicU64 = AtomicU64::new(0);

/// One cached object in memory.
struct Entry {
    variance: Option<HashBinary>,
    url: Bytes,
    /// Its meta, compact; a hit through pingora rebuilds the `CacheMeta` from it.
    head: Head,
    body: Bytes,
    /// The status line and stored headers in HTTP/1.1 wire form, made at the first fast-path
    /// hit (`None`: this object is not one the fast path serves).
    wire: std::sync::OnceLock<Option<Bytes>>,
    /// Surrogate keys from the stored `Surrogate-Key` header (what tag bans match).
    tags: Box<[Box<str>]>,
    /// The ban sequence number this object was last checked at.
    checked: AtomicU64,
}

impl Entry {
    /// An entry for `body` as `meta` describes it.
    fn new(variance: Option<HashBinary>, url: Bytes, meta: &CacheMeta, body: Bytes, checked: u64) -> Entry {
        Entry {
            variance,
            url,
            head: Head::of(meta),
            body,
            wire: Default::default(),
            tags: tags::of(meta.response_header()),
            checked: AtomicU64::new(checked),
        }
    }

    /// What the memory bound charges for this entry: what its body's, URL's and header's
    /// allocations hold, room for the fast path's wire form of its header (made at its first
    /// fast-path hit, if ever: it is charged from the start, since a charge cannot change while
    /// the object is held), and the fixed [`ENTRY_OVERHEAD`].
    fn weight(&self) -> usize {
        allocated(self.body.len())
            + allocated(self.url.len())
            + self.head.bytes()
            + allocated(wire::STATUS_LINE.len() + self.head.lines_len())
            + ENTRY_OVERHEAD
    }

    /// Its meta, rebuilt (`None`, logged, if it cannot be: then it is not served).
    fn meta(&self) -> Option<CacheMeta> {
        let meta = self.head.meta();
        if meta.is_none() {
            tracing::warn!(url = %String::from_utf8_lossy(&self.url), "stored header unreadable: answered as a miss");
        }
        meta
    }
}

type Shard = RwLock<HashMap<HashBinary, Vec<Arc<Entry>>>>;

pub struct Store {
    shards: Box<[Shard]>,
    bytes: AtomicU64,
    max_object: usize,
    disk: Option<Disk>,
    eviction: RwLock<Option<&'static (dyn EvictionManager + Sync)>>,
    pub bans: Bans,
    /// Whether the disk tier may be read: closed until the takedown list has been pulled once
    /// (when one is configured), since it may hold what was taken down while this edge was away.
    disk_open: AtomicBool,
    /// Fetches under way, so the lurker retires no ban they have not been tested against.
    pub fetching: fetching::Fetching,
    /// How often each key was asked for lately: what the disk tier admits by.
    pub frequency: Frequency,
}

impl Store {
    /// A store whose admission sketch is sized for about `objects` cached objects.
    pub fn new(max_object: usize, disk: Option<Disk>, bans: Bans, objects: usize) -> Store {
        Store {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            bytes: AtomicU64::new(0),
            max_object,
            disk,
            eviction: RwLock::new(None),
            bans,
            disk_open: AtomicBool::new(true),
            fetching: Default::default(),
            frequency: Frequency::new(objects),
        }
    }

    /// Starts indexing the disk tier in the background (see [`Disk::start_load`]); the ban
    /// counter is kept above every check number found.
    pub fn start_disk_load(&'static self) {
        let Some(disk) = &self.disk else {
            self.bans.floor_known();
            return;
        };
        disk.start_load(move |checked, done| {
            self.bans.raise_floor(checked);
            if done {
                self.bans.floor_known();
            }
        });
    }

    /// Whether the disk tier's index is still loading, and the bytes it holds.
    pub fn disk_index(&self) -> Option<(bool, usize)> {
        self.disk.as_ref().map(|d| (d.loading(), d.index_bytes()))
    }

    /// Whether the disk tier is read.
    pub fn disk_open(&self) -> bool {
        self.disk_open.load(Ordering::Acquire)
    }

    /// Stops reading the disk tier (until [`Store::open_disk`]); it is still written.
    pub fn close_disk(&self) {
        self.disk_open.store(false, Ordering::Release);
    }

    pub fn open_disk(&self) {
        self.disk_open.store(true, Ordering::Release);
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

    /// The object in memory, unless a ban made since it was last checked matches it (then it
    /// is dropped here, and its disk copy is never served either).
    fn get(&self, primary: &HashBinary, variance: Option<HashBinary>) -> Option<Arc<Entry>> {
        let entry = {
            let shard = self.shard(primary).read();
            shard
                .get(primary)?
                .iter()
                .find(|e| e.variance == variance)
                .cloned()?
        };
        if self.banned(&entry, self.bans.current()) {
            self.drop_banned(primary, &entry);
            metrics::BANNED.with_label_values(&["memory", "lookup"]).inc();
            return None;
        }
        Some(entry)
    }

    /// Whether a ban made since `entry` was last checked matches it; if none does, it is marked
    /// checked at `now` (read before the ban list, so no ban is skipped).
    fn banned(&self, entry: &Entry, now: u64) -> bool {
        let checked = entry.checked.load(Ordering::Acquire);
        if checked >= now {
            return false;
        }
        if self.bans.banned_since(checked, &entry.url, &entry.tags).is_some() {
            return true;
        }
        entry.checked.fetch_max(now, Ordering::Release);
        false
    }

    /// Removes exactly `entry` from memory (a newer object may have replaced it meanwhile).
    fn drop_banned(&self, primary: &HashBinary, entry: &Arc<Entry>) {
        let gone = {
            let mut shard = self.shard(primary).write();
            let Some(slots) = shard.get_mut(primary) else {
                return;
            };
            let Some(i) = slots.iter().position(|e| Arc::ptr_eq(e, entry)) else {
                return;
            };
            let gone = slots.swap_remove(i);
            if slots.is_empty() {
                shard.remove(primary);
            }
            gone
        };
        self.bytes.fetch_sub(gone.weight() as u64, Ordering::Relaxed);
        self.forget(*primary, gone.variance);
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

    /// Drops one object from memory only (memory admission refused it; the disk keeps it).
    pub fn drop_from_memory(&self, primary: &HashBinary, variance: Option<HashBinary>) {
        self.remove_mem(primary, variance, false);
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

    async fn load_from_disk(&'static self, slot: Slot) -> Option<Arc<Entry>> {
        let disk = self.disk.as_ref().filter(|_| self.disk_open())?;
        if !disk.contains(&slot) {
            return None;
        }
        let now = self.bans.current();
        let (rec, indexed) = tokio::task::spawn_blocking(move || (disk.read(&slot), disk.checked(&slot)))
            .await
            .ok()?;
        let rec = rec?;
        let checked = rec.checked.max(indexed.unwrap_or(0));
        let tags = tags::split(&String::from_utf8_lossy(&rec.tags));
        if self.bans.banned_since(checked, &rec.url, &tags).is_some() {
            metrics::BANNED.with_label_values(&["disk", "lookup"]).inc();
            let _ = tokio::task::spawn_blocking(move || disk.remove(&slot)).await;
            return None;
        }
        let meta = CacheMeta::deserialize(&rec.meta.0, &rec.meta.1).ok()?;
        // The record's URL and body are slices of the whole file's buffer: copied out, so that
        // the buffer goes and the entry holds what it is charged for.
        let entry = Arc::new(Entry {
            variance: slot.1,
            url: Bytes::copy_from_slice(&rec.url),
            head: Head::of(&meta),
            body: Bytes::copy_from_slice(&rec.body),
            wire: Default::default(),
            tags,
            checked: AtomicU64::new(now),
        });
        self.insert(slot.0, entry.clone());
        metrics::CACHE_DISK_READS.inc();
        Some(entry)
    }

    /// Writes `entry` through to the disk tier, with its meta as pingora serialized it.
    async fn save_to_disk(&'static self, slot: Slot, entry: &Arc<Entry>, meta: (Vec<u8>, Vec<u8>)) {
        let Some(disk) = self.disk.as_ref() else { return };
        let rec = Record {
            url: entry.url.clone(),
            tags: Bytes::from(tags::join(&entry.tags)),
            meta,
            body: entry.body.clone(),
            checked: entry.checked.load(Ordering::Acquire),
        };
        let frequency = &self.frequency;
        match tokio::task::spawn_blocking(move || disk.write(&slot, &rec, frequency)).await {
            Ok(Ok(Written::Refused)) => metrics::CACHE_DISK_REFUSED.inc(),
            Ok(Ok(_)) => metrics::CACHE_DISK_FULL.set(0),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                metrics::CACHE_DISK_WRITE_ERRORS
                    .with_label_values(&["full"])
                    .inc();
                metrics::CACHE_DISK_FULL.set(1);
                // At most once a minute, not once per object: the log may share the disk.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let last = DISK_FULL_LOGGED.load(Ordering::Acquire);
                if (last == 0 || now.saturating_sub(last) >= 60)
                    && DISK_FULL_LOGGED
                        .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    tracing::warn!(
                        error = %e,
                        "disk tier full: serving from memory and what the disk holds; its limit is lowered to what the disk held and least recently used disk objects make room"
                    );
                }
            }
            Ok(Err(e)) => {
                metrics::CACHE_DISK_WRITE_ERRORS.with_label_values(&["io"]).inc();
                tracing::warn!(error = %e, "disk cache write failed");
            }
            Err(e) => tracing::warn!(error = %e, "disk cache write task failed"),
        }
    }
}

#[async_trait]
impl Storage for Store {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _t: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let (primary, variance) = (key.primary_bin(), key.variance_bin());
        self.frequency.record(&Id::of(&(primary, variance)));
        if let Some(e) = self.get(&primary, variance) {
            return Ok(hit(e));
        }
        Ok(self.load_from_disk((primary, variance)).await.and_then(hit))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _t: &SpanHandle,
    ) -> Result<MissHandler> {
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
        let checked = self.bans.current();
        let url = Bytes::copy_from_slice(super::key::url_of(key.primary_key()));
        Ok(Box::new(Miss {
            store: self,
            primary: key.primary_bin(),
            // Bans made from here on apply to this object; older ones did not see it.
            entry: Entry::new(key.variance_bin(), url, meta, Bytes::new(), checked),
            // What the disk tier stores, made while the parsed meta is at hand.
            meta_bin: self.disk.as_ref().map(|_| meta.serialize()).transpose()?,
            body: BytesMut::with_capacity(length),
            _fetch: self.fetching.begin(checked),
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
        let checked = old.checked.load(Ordering::Acquire);
        // Serialized before anything changes: a failure leaves memory and disk as they were.
        let meta_bin = self.disk.as_ref().map(|_| meta.serialize()).transpose()?;
        let entry = Arc::new(Entry::new(
            variance,
            old.url.clone(),
            meta,
            old.body.clone(),
            checked,
        ));
        self.insert(primary, entry.clone());
        if let Some(meta_bin) = meta_bin {
            self.save_to_disk((primary, variance), &entry, meta_bin).await;
        }
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
