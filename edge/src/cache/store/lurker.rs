//! The ban lurker (Varnish's name): a background thread that tests objects against the active
//! bans in small batches, memory then disk, removes the ones that match, and retires a ban once
//! every object older than it has been tested (objects still being fetched included: see
//! [`super::fetching`]). It never holds a lock a hit needs while a
//! condition runs or a file is read or deleted (shard locks are held only to copy out a batch of
//! entries or to take one out), and it sleeps twice as long as each batch took, so it uses at
//! most a third of one core while serving goes on.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::cache::key::HashBinary;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{Entry, Store, SHARDS};
use crate::cache::{disk, tags};
use crate::metrics;

/// Objects tested between two pauses.
const BATCH: usize = 256;
/// Files read between two pauses.
const DISK_BATCH: usize = 64;
/// How often an idle lurker looks for new bans.
const IDLE: Duration = Duration::from_millis(100);

/// The lurker as a pingora background service: started once the server runs (after it
/// daemonises), stopped with it.
pub struct Lurker {
    pub store: &'static Store,
}

#[async_trait]
impl BackgroundService for Lurker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stop = Arc::new(AtomicBool::new(false));
        spawn(self.store, stop.clone());
        let _ = shutdown.changed().await;
        stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the lurker thread for `store`; it ends when `stop` is set.
pub fn spawn(store: &'static Store, stop: Arc<AtomicBool>) {
    let started = std::thread::Builder::new()
        .name("edge-ban-lurker".into())
        .spawn(move || loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if store.bans.active().is_empty() {
                std::thread::sleep(IDLE);
                continue;
            }
            let target = store.bans.current();
            let fetching = store.fetching.oldest();
            lurk_memory(store, target);
            let untested = lurk_disk(store, target);
            // After a whole pass every stored object has been tested against the bans up to
            // `target`, except those still being fetched, or fetched during the pass, which
            // carry the number their fetch began at, and any file that could not be read:
            // retire only what all of them have seen.
            let through = [Some(target), fetching, store.fetching.oldest(), untested]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(target);
            match store.bans.retire_through(through) {
                Ok(n) if n > 0 => {
                    tracing::info!(retired = n, through, "bans retired: every older object tested")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not record retired bans; retried"),
            }
            metrics::BANS_ACTIVE.set(store.bans.active().len() as i64);
            std::thread::sleep(IDLE);
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "ban lurker not started: bans are only applied on lookup");
    }
}

/// Pauses for twice `since`'s elapsed time (a third of a core at most).
fn pause(since: Instant) {
    std::thread::sleep(since.elapsed() * 2);
}

/// One pass over memory: objects last tested below `target`, tested now.
fn lurk_memory(store: &Store, target: u64) {
    for i in 0..SHARDS {
        let batch: Vec<(HashBinary, Arc<Entry>)> = {
            let shard = store.shards[i].read();
            shard
                .iter()
                .flat_map(|(p, slots)| slots.iter().map(move |e| (*p, e.clone())))
                .filter(|(_, e)| e.checked.load(Ordering::Acquire) < target)
                .collect()
        };
        for chunk in batch.chunks(BATCH) {
            let t = Instant::now();
            for (primary, entry) in chunk {
                if store.banned(entry, target) {
                    store.drop_banned(primary, entry);
                    metrics::BANNED.with_label_values(&["memory", "lurker"]).inc();
                }
            }
            pause(t);
        }
    }
}

/// One pass over the disk tier's index, shard by shard, reading each untested object's head
/// from its file. Returns the lowest check number of an object it could not test (no ban past
/// it may retire): 0 while the index is loading, since files it has not reached are untested.
fn lurk_disk(store: &Store, target: u64) -> Option<u64> {
    let disk = store.disk.as_ref()?;
    let mut untested: Option<u64> = disk.loading().then_some(0);
    for shard in 0..disk::SHARDS {
        let ids = disk.unchecked(shard, target);
        for chunk in ids.chunks(DISK_BATCH) {
            let t = Instant::now();
            for id in chunk {
                let Some((checked, written)) = disk.check_state(*id) else {
                    continue;
                };
                let banned = match disk.head(*id) {
                    Ok(h) => store
                        .bans
                        .banned_since(checked.max(h.checked), &h.url, &tags::split(&h.tags))
                        .is_some(),
                    // Torn or gone: it would never be served; drop it as a load would.
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::InvalidData | ErrorKind::UnexpectedEof | ErrorKind::NotFound
                        ) =>
                    {
                        true
                    }
                    // Cannot be read now (out of file descriptors, say): tested next pass.
                    Err(_) => {
                        untested = Some(untested.map_or(checked, |u| u.min(checked)));
                        continue;
                    }
                };
                if banned {
                    disk.remove_id(*id);
                    metrics::BANNED.with_label_values(&["disk", "lurker"]).inc();
                } else {
                    disk.mark_checked(*id, target, written);
                }
            }
            pause(t);
        }
    }
    untested
}
