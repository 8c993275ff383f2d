//! The cache as pingora sees it: our [`store::Store`] (memory + disk tier), pingora's sharded LRU
//! bounded in bytes with TinyLFU admission ([`admission`]), the cache lock that coalesces a flood for one cold object into one upstream
//! fetch, and the predictor that remembers uncacheable URLs. All `'static`, built once.

mod admission;
pub mod bans;
pub mod disk;
pub mod key;
pub mod policy;
pub mod store;
pub mod tags;

use std::time::Duration;

use pingora::cache::eviction::lru::Manager;
use pingora::cache::eviction::EvictionManager;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::predictor::Predictor;

use crate::config::CacheConfig;
use crate::Error;

const LRU_SHARDS: usize = 16;

pub struct Cache {
    pub store: &'static store::Store,
    pub eviction: &'static admission::Admitting<LRU_SHARDS>,
    pub lock: &'static CacheKeyLockImpl,
    pub predictor: &'static Predictor<16>,
    pub config: CacheConfig,
}

impl Cache {
    /// Builds the cache from config; opens the disk tier when one is configured and starts
    /// indexing it in the background.
    pub fn build(config: &CacheConfig) -> Result<&'static Cache, Error> {
        let disk = match &config.disk_dir {
            Some(dir) => Some(
                disk::Disk::open(dir, config.disk_max_bytes)
                    .map_err(|e| Error::Config(format!("cache.disk_dir {}: {e}", dir.display())))?,
            ),
            None => None,
        };
        // Bans outlive a restart only where objects do: with the disk tier.
        let bans = match &config.disk_dir {
            Some(dir) => bans::Bans::open(dir)
                .map_err(|e| Error::Config(format!("cache.disk_dir {}: bans: {e}", dir.display())))?,
            None => bans::Bans::in_memory(),
        };
        // Sized for what both tiers hold at typical sizes (16 KiB in memory, 32 KiB on disk).
        let objects = config.memory_bytes as usize / 16_384
            + config
                .disk_dir
                .as_ref()
                .map_or(0, |_| config.disk_max_bytes as usize / 32_768);
        let store: &'static store::Store = Box::leak(Box::new(store::Store::new(
            config.max_object_bytes as usize,
            disk,
            bans,
            objects,
        )));
        store.start_disk_load();
        let per_shard = (config.memory_bytes as usize / LRU_SHARDS / 16_384).max(64);
        let eviction: &'static admission::Admitting<LRU_SHARDS> =
            Box::leak(Box::new(admission::Admitting::new(
                Manager::with_capacity(config.memory_bytes as usize, per_shard),
                store,
            )));
        store.set_eviction(eviction);
        let lock: &'static CacheKeyLockImpl = Box::leak(CacheLock::new_boxed(config.lock_age));
        let predictor: &'static Predictor<16> = Box::leak(Box::new(Predictor::new(1024, None)));
        Ok(Box::leak(Box::new(Cache {
            store,
            eviction,
            lock,
            predictor,
            config: config.clone(),
        })))
    }

    /// Memory bytes tracked by the LRU, objects, and cumulative evictions (items, bytes).
    pub fn stats(&self) -> CacheStats {
        let (memory_bytes, disk) = self.store.usage();
        // Once: it visits every shard of the disk index.
        let index = self.store.disk_index();
        CacheStats {
            memory_bytes,
            memory_limit: self.config.memory_bytes,
            objects: self.eviction.total_items(),
            evicted_items: self.eviction.evicted_items(),
            evicted_bytes: self.eviction.evicted_size(),
            disk_objects: disk.map_or(0, |d| d.0),
            disk_bytes: disk.map_or(0, |d| d.1),
            disk_loading: index.is_some_and(|d| d.0),
            disk_index_bytes: index.map_or(0, |d| d.1),
        }
    }

    pub fn lock_wait(&self) -> Duration {
        self.config.lock_wait
    }
}

#[derive(Debug, Clone, Copy)]
pub struct CacheStats {
    pub memory_bytes: u64,
    pub memory_limit: u64,
    pub objects: usize,
    pub evicted_items: usize,
    pub evicted_bytes: usize,
    pub disk_objects: usize,
    pub disk_bytes: u64,
    /// The disk tier's index is still loading.
    pub disk_loading: bool,
    pub disk_index_bytes: usize,
}
