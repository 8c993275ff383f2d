//! The local hot cache in front of the fileservers (what DLCS's orchestrator keeps): originals and
//! variants as files in one directory, bounded in bytes, evicted least-recently-used, and still
//! warm after a restart. It serves from the moment it opens, whatever the directory holds: the
//! index is loaded by a scan on its own thread ([`load`]), and until that is through, a read of
//! a file not indexed yet looks on disk. A takedown meanwhile also reaches the files the scan has
//! not seen yet ([`index`]). A full cache admits a new file only if its key is asked for more
//! often than the file it would push out ([`service::admission`]).
//!
//! Files are written without fsync (the cache is rebuildable), so each ends in a trailer
//! ([`file`]): a file a power loss left short, empty or garbled is found on read, removed, and
//! counted as a miss, never served.

mod file;
mod index;
mod load;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::metrics::{HOTCACHE_BYTES, HOTCACHE_EVENTS};
use index::Index;

pub use file::Unsealed as Cached;
use file::TRAILER;

/// The file size the admission sketch is sized for (a variant or a small original).
const TYPICAL_FILE: u64 = 32 << 10;

pub struct HotCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Arc<Mutex<Index>>,
}

/// Keys become file names: only the characters our keys use are accepted.
fn file_name_ok(key: &str) -> bool {
    !key.is_empty() && key.len() <= 200 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(|p| p.into_inner())
}

/// Deletes the least recent files until the cache holds at most `max` bytes.
fn evict_to(dir: &Path, index: &Mutex<Index>, max: u64) {
    let gone = lock(index).evict(max);
    for name in &gone {
        let _ = std::fs::remove_file(dir.join(&**name));
    }
    if !gone.is_empty() {
        HOTCACHE_EVENTS
            .with_label_values(&["eviction"])
            .inc_by(gone.len() as u64);
    }
    HOTCACHE_BYTES.set(lock(index).bytes() as i64);
}

impl HotCache {
    /// Opens (creating) `dir`; what is already there is indexed in the background, least
    /// recently written first in line for eviction.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<HotCache> {
        Self::open_with(dir, max_bytes, None)
    }

    /// As `open`, the scan waiting for `start` first (tests look at the cache while it loads).
    fn open_with(
        dir: &Path,
        max_bytes: u64,
        start: Option<std::sync::mpsc::Receiver<()>>,
    ) -> std::io::Result<HotCache> {
        std::fs::create_dir_all(dir)?;
        let cache = HotCache {
            dir: dir.to_path_buf(),
            max_bytes,
            index: Arc::new(Mutex::new(Index::new(
                true,
                (max_bytes / TYPICAL_FILE).min(1 << 24) as usize,
            ))),
        };
        let (dir, index) = (cache.dir.clone(), cache.index.clone());
        std::thread::Builder::new()
            .name("hotcache-index".into())
            .spawn(move || {
                // Loaded however the scan ends, a panic included: reads stop looking on disk.
                struct Loaded(Arc<Mutex<Index>>);
                impl Drop for Loaded {
                    fn drop(&mut self) {
                        lock(&self.0).loaded();
                    }
                }
                let _loaded = Loaded(index.clone());
                if let Some(start) = start {
                    let _ = start.recv();
                }
                load::scan(&dir, &index);
                evict_to(&dir, &index, max_bytes);
            })?;
        tracing::info!(dir = %cache.dir.display(), "hot cache open, its index loading");
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    pub fn bytes(&self) -> u64 {
        self.lock().bytes()
    }

    /// Files indexed.
    pub fn entries(&self) -> usize {
        self.lock().len()
    }

    /// Whether the scan at start is still indexing the directory.
    pub fn loading(&self) -> bool {
        self.lock().loading()
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        self.get_with_digest(key).await.map(|c| c.bytes)
    }

    /// The bytes under `key`, with the content digest they were put with, if any.
    pub async fn get_with_digest(&self, key: &str) -> Option<Cached> {
        let (known, loading) = {
            let mut index = self.lock();
            index.record(key);
            (index.touch(key), index.loading())
        };
        // Not indexed: on disk only if the scan has not reached it yet.
        let on_disk = known || (loading && file_name_ok(key));
        if !on_disk {
            HOTCACHE_EVENTS.with_label_values(&["miss"]).inc();
            return None;
        }
        let read = tokio::fs::read(self.dir.join(key)).await.map(|file| {
            // What the index counts of a file: all but its trailer (as the scan does).
            let stored = file.len().saturating_sub(TRAILER) as u64;
            (file::unseal(file), stored)
        });
        match read {
            Ok((None, _)) => {
                tracing::warn!(key, "hot cache file torn (cut short by a crash); removed");
                HOTCACHE_EVENTS.with_label_values(&["torn"]).inc();
                self.forget(key);
                None
            }
            Ok((Some(data), stored)) => {
                if !known {
                    // On disk, not indexed when looked up: indexed now, unless taken down
                    // meanwhile, or unless the load ended meanwhile without indexing it (then the
                    // scan saw the file, and it is not indexed because it was removed since). The
                    // scan may also have indexed it meanwhile: then it is a hit like any other.
                    let mut index = self.lock();
                    let indexed = index.touch(key);
                    if index.doomed(key) || !(indexed || index.loading()) {
                        drop(index);
                        let _ = std::fs::remove_file(self.dir.join(key));
                        HOTCACHE_EVENTS.with_label_values(&["miss"]).inc();
                        return None;
                    }
                    if !indexed {
                        index.insert(key, stored);
                    }
                }
                HOTCACHE_EVENTS.with_label_values(&["hit"]).inc();
                Some(data)
            }
            Err(_) if !known => {
                HOTCACHE_EVENTS.with_label_values(&["miss"]).inc();
                None
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "hot cache entry unreadable; dropped");
                HOTCACHE_EVENTS.with_label_values(&["error"]).inc();
                self.forget(key);
                None
            }
        }
    }

    /// Stores `data` under `key` (temp file + rename, so a reader never sees half a file).
    pub async fn put(&self, key: &str, data: &Bytes) {
        self.put_with_digest(key, data, None).await
    }

    /// As `put`, with the content digest of `data` (an original's; see [`file`]).
    pub async fn put_with_digest(&self, key: &str, data: &Bytes, digest: Option<[u8; 32]>) {
        let stored = file::counted(data.len(), digest.is_some());
        if !file_name_ok(key) || stored > self.max_bytes / 4 {
            return;
        }
        if !self.lock().admits(key, stored, self.max_bytes) {
            HOTCACHE_EVENTS.with_label_values(&["rejected"]).inc();
            return;
        }
        let tmp = self.dir.join(format!(".tmp{}", rand::random::<u64>()));
        let (tmp2, dest, body) = (tmp.clone(), self.dir.join(key), data.clone());
        let result = tokio::task::spawn_blocking(move || {
            // Its CRC read the whole body: off the runtime, and only once the file is admitted.
            let tail = file::tail(&body, digest.as_ref());
            let mut f = std::fs::File::create(&tmp2)?;
            std::io::Write::write_all(&mut f, &body)?;
            std::io::Write::write_all(&mut f, &tail)?;
            drop(f);
            std::fs::rename(&tmp2, dest)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            tracing::warn!(key, error = %e, "hot cache write failed");
            HOTCACHE_EVENTS.with_label_values(&["error"]).inc();
            return;
        }
        HOTCACHE_EVENTS.with_label_values(&["write"]).inc();
        self.lock().insert(key, stored);
        self.evict();
    }

    /// Drops `key` (while loading, its file whether indexed yet or not).
    pub fn remove(&self, key: &str) {
        if file_name_ok(key) {
            self.forget(key);
        }
    }

    /// Drops a taken-down original and every variant of it (`<source>_…`); how many were
    /// indexed. While the index loads, the ones the scan has not reached are deleted when it does,
    /// and never served before.
    pub fn remove_derived(&self, source: &str) -> usize {
        let gone = self.lock().remove_derived(source);
        for k in &gone {
            let _ = std::fs::remove_file(self.dir.join(&**k));
        }
        HOTCACHE_BYTES.set(self.bytes() as i64);
        gone.len()
    }

    /// Unindexes `key` and deletes its file (`key` is a valid file name).
    fn forget(&self, key: &str) {
        self.lock().remove(key);
        let _ = std::fs::remove_file(self.dir.join(key));
        HOTCACHE_BYTES.set(self.bytes() as i64);
    }

    fn evict(&self) {
        evict_to(&self.dir, &self.index, self.max_bytes);
    }
}

/// The hit ratio of a cache of `capacity` equal files over `trace` (object numbers), with or
/// without admission, the index alone (no files): for benches of the policy.
pub fn simulated_hit_ratio(trace: &[u32], capacity: usize, admission: bool) -> f64 {
    let mut index = Index::new(false, capacity);
    let mut hits = 0usize;
    for k in trace {
        let key = k.to_string();
        index.record(&key);
        if index.touch(&key) {
            hits += 1;
        } else if !admission || index.admits(&key, 1, capacity as u64) {
            index.insert(&key, 1);
            index.evict(capacity as u64);
        }
    }
    hits as f64 / trace.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(data: &[u8]) -> Vec<u8> {
        file::seal(data, None)
    }

    /// A file cut short, emptied, garbled or written by something else is a miss, and removed;
    /// a whole one is served.
    #[tokio::test]
    async fn a_torn_file_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let whole = sealed(b"a variant's bytes");
        let mut garbled = whole.clone();
        garbled[3] ^= 1;
        for (name, bytes) in [
            ("whole", whole.clone()),
            ("short", whole[..whole.len() - 1].to_vec()),
            ("empty", Vec::new()),
            ("garbled", garbled),
            ("bare", b"a variant's bytes".to_vec()),
        ] {
            std::fs::write(d.join(name), bytes).unwrap();
        }
        let cache = HotCache::open(d, 1 << 20).unwrap();
        cache.loaded().await;
        assert_eq!(
            cache.get("whole").await.as_deref(),
            Some(&b"a variant's bytes"[..])
        );
        for name in ["short", "empty", "garbled", "bare"] {
            assert!(cache.get(name).await.is_none(), "{name} served");
            assert!(!d.join(name).exists(), "{name} left");
        }
        assert_eq!(cache.bytes(), 17, "only the whole file counted");
    }

    impl HotCache {
        async fn loaded(&self) {
            for _ in 0..1000 {
                if !self.loading() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("the hot cache index did not load");
        }
    }

    #[tokio::test]
    async fn bounded_lru_and_warm_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HotCache::open(dir.path(), 4000).unwrap();
        cache.loaded().await;
        let kb = Bytes::from(vec![7u8; 1000]);
        for k in ["a", "b", "c", "d"] {
            cache.put(k, &kb).await;
        }
        assert!(cache.get("a").await.is_some()); // a is now the most recent
        assert!(cache.get("e").await.is_none()); // e is asked for (then rendered and put)
        cache.put("e", &kb).await; // evicts b, the least recently used, never asked for since
        assert!(cache.get("b").await.is_none());
        assert_eq!(cache.bytes(), 4000);
        assert!(!dir.path().join("b").exists());
        cache.put("../x", &kb).await; // never a path outside the directory
        for k in ["S", "S_640x0", "SX"] {
            // Asked for twice (misses, as before a render): more often than any file there.
            for _ in 0..2 {
                assert!(cache.get(k).await.is_none());
            }
            cache.put(k, &kb).await;
        }
        assert_eq!(cache.remove_derived("S"), 2, "the source and its variant, not SX");
        assert!(cache.get("SX").await.is_some() && !dir.path().join("S_640x0").exists());
        cache.remove("SX");
        for k in ["a", "c", "d", "e"] {
            cache.put(k, &kb).await;
        }
        assert!(cache.get("../x").await.is_none());
        drop(cache);

        let cache = HotCache::open(dir.path(), 4000).unwrap();
        cache.loaded().await;
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
        cache.loaded().await;
        assert_eq!(cache.bytes(), 2000);
    }

    /// A flood of keys asked for once each (the long tail) does not push out a file asked for
    /// all the time: each is asked for as often as the least recent file, so it is not taken.
    #[tokio::test]
    async fn a_one_hit_wonder_flood_leaves_the_hot_file_resident() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HotCache::open(dir.path(), 1000).unwrap();
        cache.loaded().await;
        let file = Bytes::from(vec![1u8; 100]);
        assert!(cache.get("hot").await.is_none());
        cache.put("hot", &file).await;
        for i in 0..5 {
            assert!(cache.get("hot").await.is_some());
            let k = format!("warm{i}");
            assert!(cache.get(&k).await.is_none());
            cache.put(&k, &file).await;
        }
        let mut taken = 0;
        for i in 0..2000 {
            let k = format!("tail{i}");
            assert!(cache.get(&k).await.is_none(), "asked for once");
            cache.put(&k, &file).await;
            taken += usize::from(dir.path().join(&k).exists());
            assert!(cache.bytes() <= 1000);
        }
        assert!(cache.get("hot").await.is_some(), "the hot file stayed");
        // Some tail keys look asked for more than once: the sketch counts them in shared slots.
        assert!(taken < 200, "most of the tail was refused: {taken} of 2000 taken");
    }

    /// An original's content digest is kept with its bytes, across a restart; a variant has none.
    #[tokio::test]
    async fn an_originals_digest_is_kept_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let digest = [3u8; 32];
        let original = Bytes::from_static(b"an original's bytes");
        {
            let cache = HotCache::open(dir.path(), 1 << 20).unwrap();
            cache.loaded().await;
            cache.put_with_digest("U1", &original, Some(digest)).await;
            cache.put("U1_100x0", &Bytes::from_static(b"a variant")).await;
            assert_eq!(cache.bytes(), original.len() as u64 + 32 + 9);
        }
        let cache = HotCache::open(dir.path(), 1 << 20).unwrap();
        let got = cache.get_with_digest("U1").await.unwrap();
        assert_eq!((got.bytes, got.digest), (original.clone(), Some(digest)));
        assert_eq!(cache.get("U1").await, Some(original));
        assert_eq!(cache.get_with_digest("U1_100x0").await.unwrap().digest, None);
        cache.loaded().await;
        assert_eq!(
            cache.bytes(),
            19 + 32 + 9,
            "the scan counts files as the writes did"
        );
    }

    /// Before its scan has started, the cache serves what is on disk, takes writes, and a
    /// takedown reaches files it has not indexed: not served, deleted when the scan comes to
    /// them. Once loaded, everything else is indexed and reachable.
    #[tokio::test]
    async fn serves_while_its_index_loads_and_a_takedown_meanwhile_sticks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut names: Vec<String> = (0..300).map(|i| format!("F{i}")).collect();
        names.extend(["A", "S", "S_640x0", "SX"].map(String::from));
        for (i, n) in names.iter().enumerate() {
            std::fs::write(d.join(n), sealed(&[i as u8; 100])).unwrap();
        }
        std::fs::write(d.join(".tmp1"), b"a write in progress").unwrap();
        let (start, held) = std::sync::mpsc::channel();
        let cache = HotCache::open_with(d, 1 << 20, Some(held)).unwrap();
        assert!(cache.loading());
        let a = names.iter().position(|n| n == "A").unwrap();
        assert_eq!(cache.get("A").await.as_deref(), Some(&vec![a as u8; 100][..]));
        assert_eq!(cache.remove_derived("S"), 0, "nothing of S indexed yet");
        assert!(cache.get("S_640x0").await.is_none(), "taken down: not served");
        assert!(cache.get("nothing").await.is_none());
        cache.put("N", &Bytes::from_static(b"new")).await;
        start.send(()).unwrap();
        cache.loaded().await;
        assert!(
            !d.join("S").exists() && !d.join("S_640x0").exists(),
            "deleted when reached"
        );
        for (i, n) in names
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.starts_with("S_") && *n != "S")
        {
            assert_eq!(
                cache.get(n).await.as_deref(),
                Some(&vec![i as u8; 100][..]),
                "{n}"
            );
        }
        assert_eq!(cache.get("N").await.as_deref(), Some(&b"new"[..]));
        assert_eq!(cache.bytes(), 302 * 100 + 3);
        assert!(
            d.join(".tmp1").exists(),
            "a fresh temporary may be a write in progress"
        );
        assert!(cache.get("S").await.is_none());
    }
}
