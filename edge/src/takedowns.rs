//! The cluster-wide takedown list, pulled from blobsync (`[takedowns] url`, `GET …?since=N`) at
//! start and every `poll_interval`: each new key becomes a tag ban ([`crate::cache::bans`]), so
//! an edge that was down during a takedown, or missed blobsync's ban, drops every answer derived
//! from the key. Until the first pull succeeds the disk tier is not read at all (what it holds
//! may predate a takedown this edge never heard of); memory starts empty, so nothing else can be
//! stale. The last list number pulled is kept beside the disk tier.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use service::takedown_feed::{next_wait, start_from, Feed};

use crate::cache::bans::Spec;
use crate::cache::tags;
use crate::cache::Cache;
use crate::metrics;

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    last: u64,
    /// The identity of the list `last` is a position in.
    #[serde(default)]
    epoch: Option<String>,
}

pub struct Puller {
    pub cache: &'static Cache,
    pub feed: Feed,
    pub poll_interval: Duration,
}

impl Puller {
    fn state_file(&self) -> Option<PathBuf> {
        self.cache
            .config
            .disk_dir
            .as_ref()
            .map(|d| d.join("takedowns.json"))
    }

    fn load(&self) -> Saved {
        self.state_file()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, saved: &Saved) {
        let Some(file) = self.state_file() else { return };
        let tmp = file.with_extension("json.tmp");
        let written = std::fs::write(&tmp, serde_json::to_vec(saved).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, &file));
        if let Err(e) = written {
            tracing::warn!(error = %e, "takedown list position not kept; the next start pulls again");
        }
    }

    /// Pulls everything after the position (from the start when blobsync's list is not the one
    /// the position was in) and bans the new keys, a page at a time; the new position.
    async fn pull(&self, at: &Saved) -> Result<Saved, String> {
        let cache = self.cache;
        let mut page = self.feed.page(at.last).await?;
        let from = start_from(at.last, at.epoch.as_deref(), page.epoch.as_deref());
        if from != at.last {
            tracing::warn!(
                position = at.last,
                "blobsync's takedown list is a new one (its queue was made again): pulling it from the start"
            );
            page = self.feed.page(from).await?;
        }
        loop {
            if page.keys.is_empty() {
                return Ok(Saved {
                    last: page.last,
                    epoch: page.epoch,
                });
            }
            let (keys, last) = (std::mem::take(&mut page.keys), page.last);
            // A key no answer can be tagged with (see `tags`) has nothing to ban here; it must
            // not stop the keys after it.
            let (keys, skipped): (Vec<String>, Vec<String>) =
                keys.into_iter().partition(|k| tags::is_taggable(k));
            if !skipped.is_empty() {
                tracing::warn!(skipped = ?skipped, "takedown keys no answer can be tagged with: skipped");
            }
            if !keys.is_empty() {
                let count = keys.len();
                let spec = Spec::Tags(keys);
                let condition = spec.compile()?;
                // Recorded durably (written and fsynced): on a blocking thread.
                let seq = tokio::task::spawn_blocking(move || cache.store.bans.add(spec, condition))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("ban not recorded: {e:?}"))?;
                metrics::BANS_ACTIVE.set(cache.store.bans.active().len() as i64);
                tracing::info!(keys = count, seq, last, "takedowns pulled and banned");
            }
            page = self.feed.page(last).await?;
        }
    }
}

#[async_trait]
impl BackgroundService for Puller {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut at = self.load();
        loop {
            match self.pull(&at).await {
                Ok(now) => {
                    if now.last != at.last || now.epoch != at.epoch {
                        self.save(&now);
                        at = now;
                    }
                    let last = at.last;
                    if !self.cache.store.disk_open() {
                        tracing::info!(last, "takedown list pulled: the disk tier is read from now on");
                        self.cache.store.open_disk();
                    }
                }
                Err(e) => {
                    tracing::warn!(url = %self.feed.url(), error = %e, "could not pull the takedown list; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(next_wait(self.cache.store.disk_open(), self.poll_interval)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
