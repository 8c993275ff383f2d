//! The local hot cache in front of the fileservers (what DLCS's orchestrator keeps): originals and
//! variants as files in one directory, bounded in bytes, evicted least-recently-used, and still
//! warm after a restart (the index is rebuilt from the directory, oldest files first).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

use crate::metrics::{HOTCACHE_BYTES, HOTCACHE_EVENTS};

pub struct HotCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    entries: HashMap<String, (u64, u64)>, // key → (size, tick)
    order: BTreeMap<u64, String>,         // tick → key, oldest first
    bytes: u64,
    tick: u64,
}

impl Index {
    fn touch(&mut self, key: &str) -> bool {
        let tick = self.tick + 1;
        match self.entries.get_mut(key) {
            Some((_, t)) => {
                self.order.remove(t);
                *t = tick;
                self.order.insert(tick, key.to_string());
                self.tick = tick;
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, key: &str, size: u64) {
        self.remove(key);
        self.tick += 1;
        self.entries.insert(key.to_string(), (size, self.tick));
        self.order.insert(self.tick, key.to_string());
        self.bytes += size;
    }

    fn remove(&mut self, key: &str) -> Option<u64> {
        let (size, tick) = self.entries.remove(key)?;
        self.order.remove(&tick);
        self.bytes -= size;
        Some(size)
    }

    /// Keys to delete so that `bytes ≤ max`, oldest first.
    fn evict(&mut self, max: u64) -> Vec<String> {
        let mut gone = Vec::new();
        while self.bytes > max {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some((size, _)) = self.entries.remove(&key) {
                self.bytes -= size;
            }
            gone.push(key);
        }
        gone
    }
}

/// Keys become file names: only the characters our keys use are accepted.
fn file_name_ok(key: &str) -> bool {
    !key.is_empty() && key.len() <= 200 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl HotCache {
    /// Opens (creating) `dir` and indexes what is already there, least recently written first.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<HotCache> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !file_name_ok(&name) {
                // Half-written temporaries from a crash.
                if name.starts_with(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            let meta = entry.metadata()?;
            found.push((meta.modified().ok(), name, meta.len()));
        }
        found.sort();
        let cache = HotCache {
            dir: dir.to_path_buf(),
            max_bytes,
            index: Mutex::new(Index::default()),
        };
        {
            let mut index = cache.lock();
            for (_, name, size) in found {
                index.insert(&name, size);
            }
        }
        cache.evict();
        let (entries, bytes) = {
            let index = cache.lock();
            (index.entries.len(), index.bytes)
        };
        tracing::info!(dir = %dir.display(), entries, bytes, "hot cache opened");
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        if !self.lock().touch(key) {
            HOTCACHE_EVENTS.with_label_values(&["miss"]).inc();
            return None;
        }
        match tokio::fs::read(self.dir.join(key)).await {
            Ok(data) => {
                HOTCACHE_EVENTS.with_label_values(&["hit"]).inc();
                Some(Bytes::from(data))
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "hot cache entry unreadable; dropped");
                HOTCACHE_EVENTS.with_label_values(&["error"]).inc();
                self.lock().remove(key);
                HOTCACHE_BYTES.set(self.bytes() as i64);
                None
            }
        }
    }

    /// Stores `data` under `key` (temp file + rename, so a reader never sees half a file).
    pub async fn put(&self, key: &str, data: &Bytes) {
        if !file_name_ok(key) || data.len() as u64 > self.max_bytes / 4 {
            return;
        }
        let tmp = self.dir.join(format!(".tmp{}", rand::random::<u64>()));
        let result = async {
            tokio::fs::write(&tmp, data).await?;
            tokio::fs::rename(&tmp, self.dir.join(key)).await
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            tracing::warn!(key, error = %e, "hot cache write failed");
            HOTCACHE_EVENTS.with_label_values(&["error"]).inc();
            return;
        }
        HOTCACHE_EVENTS.with_label_values(&["write"]).inc();
        self.lock().insert(key, data.len() as u64);
        self.evict();
    }

    /// Drops `key`.
    pub fn remove(&self, key: &str) {
        if self.lock().remove(key).is_some() {
            let _ = std::fs::remove_file(self.dir.join(key));
        }
    }

    /// Drops a taken-down original and every variant of it (`<source>_…`); how many. The index
    /// is scanned under its lock, the files removed after.
    pub fn remove_derived(&self, source: &str) -> usize {
        let prefix = format!("{source}_");
        let gone: Vec<String> = {
            let mut index = self.lock();
            let keys: Vec<String> = index
                .entries
                .keys()
                .filter(|k| *k == source || k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in &keys {
                index.remove(k);
            }
            keys
        };
        for k in &gone {
            let _ = std::fs::remove_file(self.dir.join(k));
        }
        HOTCACHE_BYTES.set(self.bytes() as i64);
        gone.len()
    }

    fn evict(&self) {
        let gone = self.lock().evict(self.max_bytes);
        for key in &gone {
            let _ = std::fs::remove_file(self.dir.join(key));
        }
        if !gone.is_empty() {
            HOTCACHE_EVENTS
                .with_label_values(&["eviction"])
                .inc_by(gone.len() as u64);
        }
        HOTCACHE_BYTES.set(self.bytes() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_lru_and_warm_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HotCache::open(dir.path(), 4000).unwrap();
        let kb = Bytes::from(vec![7u8; 1000]);
        for k in ["a", "b", "c", "d"] {
            cache.put(k, &kb).await;
        }
        assert!(cache.get("a").await.is_some()); // a is now the most recent
        cache.put("e", &kb).await; // evicts b, the least recently used
        assert!(cache.get("b").await.is_none());
        assert_eq!(cache.bytes(), 4000);
        assert!(!dir.path().join("b").exists());
        cache.put("../x", &kb).await; // never a path outside the directory
        cache.put("S", &kb).await;
        cache.put("S_640x0", &kb).await;
        cache.put("SX", &kb).await;
        assert_eq!(cache.remove_derived("S"), 2, "the source and its variant, not SX");
        assert!(cache.get("SX").await.is_some() && !dir.path().join("S_640x0").exists());
        cache.remove("SX");
        for k in ["a", "c", "d", "e"] {
            cache.put(k, &kb).await;
        }
        assert!(cache.get("../x").await.is_none());
        drop(cache);

        let cache = HotCache::open(dir.path(), 4000).unwrap();
        assert_eq!(cache.bytes(), 4000);
        for k in ["a", "c", "d", "e"] {
            assert_eq!(
                cache.get(k).await.as_deref(),
                Some(&kb[..]),
                "{k} survives a restart"
            );
        }
        // A smaller bound on restart evicts down to it.
        drop(cache);
        let cache = HotCache::open(dir.path(), 2000).unwrap();
        assert_eq!(cache.bytes(), 2000);
    }
}
