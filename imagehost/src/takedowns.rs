//! The cluster-wide takedown list as every imagehost keeps it: each source key taken down
//! (blobsync's permanent list), so that nothing derived from one is served again — `/<key>/…` in
//! any spelling, `/p/` of it at any size or format, the legacy and avatar redirects that lead
//! there — and an upload of the same bytes is refused, all with 451. Learned two ways: blobsync
//! pushes each takedown to every imagehost's admin listener before the edges drop their copies
//! (`POST /takedowns`), and every node pulls the list (`GET <url>?since=N`) at start and every
//! `poll_interval`, catching up on what it missed while it was down. Kept in `state_file`, so a
//! restart while blobsync is away still refuses everything taken down before. A new key also
//! clears the hot cache of the original and its variants.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use service::takedown_feed::{next_wait, start_from, Feed, Pulled};

use crate::metrics::TAKEDOWNS;

/// The key whose takedown covers `key`: its source, everything before the first `_`.
pub fn source_of(key: &str) -> &str {
    key.split('_').next().unwrap_or(key)
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    /// The last list number pulled from blobsync (0: never pulled).
    last: u64,
    keys: Vec<String>,
    /// The identity of the list `last` is a position in.
    #[serde(default)]
    epoch: Option<String>,
}

pub struct Takedowns {
    keys: RwLock<HashSet<String>>,
    last: AtomicU64,
    /// Pulled at least once (this run, or by an earlier one whose state was kept).
    pulled: AtomicBool,
    file: Option<PathBuf>,
    writing: Mutex<()>,
    epoch: Mutex<Option<String>>,
}

impl Takedowns {
    /// The list kept in `file` (none yet: empty).
    pub fn open(file: Option<PathBuf>) -> std::io::Result<Takedowns> {
        let saved: Saved = match file.as_ref().map(std::fs::read) {
            Some(Ok(b)) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("takedowns state: {e}"))
            })?,
            Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => Saved::default(),
        };
        TAKEDOWNS.set(saved.keys.len() as i64);
        Ok(Takedowns {
            pulled: AtomicBool::new(saved.last > 0),
            last: AtomicU64::new(saved.last),
            keys: RwLock::new(saved.keys.into_iter().collect()),
            file,
            writing: Mutex::new(()),
            epoch: Mutex::new(saved.epoch),
        })
    }

    /// Whether `key` or the source it was derived from was taken down.
    pub fn covers(&self, key: &str) -> bool {
        let keys = self.keys.read();
        !keys.is_empty() && keys.contains(source_of(key))
    }

    /// The last list number pulled.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Whether the list was ever pulled (a node without a source is always ready).
    pub fn pulled(&self) -> bool {
        self.pulled.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.read().is_empty()
    }

    /// The identity of the list the position is in (None before the first pull).
    pub fn epoch(&self) -> Option<String> {
        self.epoch.lock().clone()
    }

    /// Adds source keys (pushed, or pulled up to list number `last`), kept on disk before this
    /// returns; the keys that were new.
    pub fn add(&self, keys: &[String], last: Option<u64>) -> std::io::Result<Vec<String>> {
        self.add_pulled(keys, last, None)
    }

    /// [`Takedowns::add`] for a page of the list named `epoch`: a list other than the one the
    /// position was in (blobsync's queue made again) takes its own position, even a lower one.
    /// Keys are never forgotten.
    pub fn add_pulled(
        &self,
        keys: &[String],
        last: Option<u64>,
        epoch: Option<&str>,
    ) -> std::io::Result<Vec<String>> {
        let _guard = self.writing.lock();
        let known_epoch = self.epoch();
        let relisted = matches!((known_epoch.as_deref(), epoch), (Some(a), Some(b)) if a != b);
        let new_epoch = epoch.map(str::to_string).or(known_epoch.clone());
        let fresh: Vec<String> = {
            let known = self.keys.read();
            keys.iter()
                .map(|k| source_of(k).to_string())
                .filter(|k| !k.is_empty() && !known.contains(k))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        };
        let new_last = match last {
            Some(l) if relisted => l,
            Some(l) => l.max(self.last()),
            None => self.last(),
        };
        if fresh.is_empty() && new_last == self.last() && new_epoch == known_epoch {
            if last.is_some() {
                self.pulled.store(true, Ordering::Release);
            }
            return Ok(fresh);
        }
        let mut all: Vec<String> = self.keys.read().iter().cloned().collect();
        all.extend(fresh.iter().cloned());
        self.save(&Saved {
            last: new_last,
            keys: all,
            epoch: new_epoch.clone(),
        })?;
        self.keys.write().extend(fresh.iter().cloned());
        self.last.store(new_last, Ordering::Release);
        *self.epoch.lock() = new_epoch;
        if last.is_some() {
            self.pulled.store(true, Ordering::Release);
        }
        TAKEDOWNS.set(self.len() as i64);
        Ok(fresh)
    }

    fn save(&self, saved: &Saved) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(saved).unwrap_or_default())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, file)
    }
}

/// [`Takedowns::add_pulled`] on a blocking thread: it writes and fsyncs the state file.
async fn add_blocking(list: &Arc<Takedowns>, page: Pulled) -> Result<Vec<String>, String> {
    let list = list.clone();
    tokio::task::spawn_blocking(move || list.add_pulled(&page.keys, Some(page.last), page.epoch.as_deref()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Every page after the list's position (from the start when blobsync's list is not the one the
/// position was in), each kept before the next is asked for; an empty pull is a pull too (the
/// node is up to date).
async fn pull_pages(list: &Arc<Takedowns>, feed: &Feed, new: &mut Vec<String>) -> Result<(), String> {
    let mut page = feed.page(list.last()).await?;
    let from = start_from(list.last(), list.epoch().as_deref(), page.epoch.as_deref());
    if from != list.last() {
        tracing::warn!(
            position = list.last(),
            "blobsync's takedown list is a new one (its queue was made again): pulling it from the start"
        );
        page = feed.page(from).await?;
    }
    loop {
        let (done, last) = (page.keys.is_empty(), page.last);
        new.extend(add_blocking(list, page).await?);
        if done {
            return Ok(());
        }
        page = feed.page(last).await?;
    }
}

/// Pulls the list from blobsync now and every `interval` (sooner until the first pull succeeds),
/// calling `on_new` with keys it did not know; runs until the process ends.
pub async fn pull_forever(
    list: Arc<Takedowns>,
    feed: Feed,
    interval: Duration,
    on_new: impl Fn(&[String]) + Clone + Send + 'static,
) {
    loop {
        let mut new = Vec::new();
        let pulled = pull_pages(&list, &feed, &mut new).await;
        match pulled {
            Ok(_) if !new.is_empty() => {
                tracing::info!(new = new.len(), last = list.last(), "takedowns pulled");
                // Sweeping the hot cache reads its index and deletes files: off the runtime.
                let on_new = on_new.clone();
                let _ = tokio::task::spawn_blocking(move || on_new(&new)).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(url = %feed.url(), error = %e, "could not pull the takedown list; retrying")
            }
        }
        tokio::time::sleep(next_wait(list.pulled(), interval)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_list_takes_its_own_position_and_keeps_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("takedowns.json");
        let t = Takedowns::open(Some(file.clone())).unwrap();
        t.add_pulled(&["DQmA".into()], Some(40), Some("one")).unwrap();
        t.add_pulled(&[], Some(12), Some("one")).unwrap();
        assert_eq!(t.last(), 40, "the same list never moves back");
        // blobsync's queue made again: its list starts over, numbered from the start.
        assert_eq!(
            t.add_pulled(&["DQmB".into()], Some(2), Some("two")).unwrap(),
            ["DQmB"]
        );
        assert_eq!((t.last(), t.epoch().as_deref()), (2, Some("two")));
        assert!(t.covers("DQmA") && t.covers("DQmB"), "keys are never forgotten");
        let t = Takedowns::open(Some(file)).unwrap();
        assert_eq!((t.last(), t.epoch().as_deref(), t.len()), (2, Some("two"), 2));
    }

    #[test]
    fn keys_cover_their_variants_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/takedowns.json");
        {
            let t = Takedowns::open(Some(file.clone())).unwrap();
            assert!(!t.pulled() && t.is_empty());
            assert_eq!(t.add(&["DQmA".into()], None).unwrap(), ["DQmA"]);
            assert!(!t.pulled(), "a push is not a pull");
            assert_eq!(
                t.add(&["DQmA_Cover_WEBP_320".into(), "Ub".into()], Some(7))
                    .unwrap(),
                ["Ub"]
            );
            assert!(t.pulled());
        }
        let t = Takedowns::open(Some(file)).unwrap();
        assert_eq!((t.last(), t.len(), t.pulled()), (7, 2, true));
        for (key, want) in [
            ("DQmA", true),
            ("DQmA_640x0", true),
            ("Ub_Fit_PNG_5", true),
            ("DQmB", false),
            ("DQmAB", false),
        ] {
            assert_eq!(t.covers(key), want, "{key}");
        }
    }
}
