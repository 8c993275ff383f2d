//! The hot cache's scan at start, on its own thread: every file of the directory indexed in
//! batches while the cache already serves (a read of a file not indexed yet looks on disk), then
//! the cache evicted down to its bound. Temporaries a crash left are removed on the way.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::index::{Found, Index};
use super::{file_name_ok, lock};

/// Entries indexed per taking of the lock, so that requests wait for one batch at most.
const BATCH: usize = 1024;
/// A temporary older than this belongs to no write in progress (a write takes milliseconds).
const STALE_TEMP: Duration = Duration::from_secs(600);

/// Indexes `dir` into `index`, then marks it loaded; how many files were indexed.
pub fn scan(dir: &Path, index: &Mutex<Index>) -> usize {
    let started = Instant::now();
    let mut indexed = 0;
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut batch = Vec::with_capacity(BATCH);
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else { continue };
                if !file_name_ok(&name) {
                    let stale = meta.modified().ok().and_then(|m| m.elapsed().ok()) > Some(STALE_TEMP);
                    if name.starts_with(".tmp") && stale {
                        let _ = std::fs::remove_file(entry.path());
                    }
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                let mtime_ms = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                // The bytes a file holds but its trailer (a torn one is found on read).
                let size = meta.len().saturating_sub(super::TRAILER as u64);
                batch.push((name, size, mtime_ms));
                if batch.len() == BATCH {
                    indexed += add(dir, index, &mut batch);
                }
            }
            indexed += add(dir, index, &mut batch);
        }
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "hot cache directory unreadable"),
    }
    lock(index).loaded();
    tracing::info!(
        dir = %dir.display(),
        indexed,
        seconds = started.elapsed().as_secs_f64(),
        "hot cache index loaded"
    );
    indexed
}

/// One batch into the index; the files of sources taken down meanwhile are deleted instead.
fn add(dir: &Path, index: &Mutex<Index>, batch: &mut Vec<(String, u64, u64)>) -> usize {
    let mut doomed = Vec::new();
    let mut indexed = 0;
    {
        let mut ix = lock(index);
        for (name, size, mtime_ms) in batch.drain(..) {
            match ix.insert_found(&name, size, mtime_ms) {
                Found::Indexed => indexed += 1,
                Found::Present => {}
                Found::Doomed => doomed.push(name),
            }
        }
    }
    for name in doomed {
        let _ = std::fs::remove_file(dir.join(name));
    }
    indexed
}
