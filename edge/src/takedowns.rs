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

use crate::cache::bans::Spec;
use crate::cache::Cache;
use crate::config::TakedownsConfig;
use crate::metrics;

#[derive(Deserialize)]
struct Page {
    takedowns: Vec<Entry>,
    last: u64,
}

#[derive(Deserialize)]
struct Entry {
    key: String,
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    last: u64,
}

pub struct Puller {
    pub cache: &'static Cache,
    pub config: TakedownsConfig,
    pub url: String,
}

impl Puller {
    fn state_file(&self) -> Option<PathBuf> {
        self.cache
            .config
            .disk_dir
            .as_ref()
            .map(|d| d.join("takedowns.json"))
    }

    fn load(&self) -> u64 {
        self.state_file()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
            .map_or(0, |s| s.last)
    }

    fn save(&self, last: u64) {
        let Some(file) = self.state_file() else { return };
        let tmp = file.with_extension("json.tmp");
        let written = std::fs::write(&tmp, serde_json::to_vec(&Saved { last }).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, &file));
        if let Err(e) = written {
            tracing::warn!(error = %e, "takedown list position not kept; the next start pulls again");
        }
    }

    /// Pulls everything after `since`; bans the new keys; the new position.
    async fn pull(&self, client: &reqwest::Client, mut since: u64) -> Result<u64, String> {
        let mut keys = Vec::new();
        loop {
            let mut req = client.get(&self.url).query(&[("since", since)]);
            if let Some(t) = &self.config.token {
                req = req.bearer_auth(t.expose());
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("status {}", resp.status()));
            }
            let page: Page = resp.json().await.map_err(|e| e.to_string())?;
            if page.takedowns.is_empty() {
                break;
            }
            keys.extend(page.takedowns.into_iter().map(|e| e.key));
            since = page.last;
        }
        if !keys.is_empty() {
            let spec = Spec::Tags(keys.clone());
            let condition = spec.compile()?;
            let seq = self
                .cache
                .store
                .bans
                .add(spec, condition)
                .map_err(|e| format!("ban not recorded: {e:?}"))?;
            metrics::BANS_ACTIVE.set(self.cache.store.bans.active().len() as i64);
            tracing::info!(
                keys = keys.len(),
                seq,
                last = since,
                "takedowns pulled and banned"
            );
        }
        Ok(since)
    }
}

#[async_trait]
impl BackgroundService for Puller {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "takedown list client: the disk tier stays closed");
                return;
            }
        };
        let mut last = self.load();
        loop {
            match self.pull(&client, last).await {
                Ok(now) => {
                    if now != last {
                        self.save(now);
                        last = now;
                    }
                    if !self.cache.store.disk_open() {
                        tracing::info!(last, "takedown list pulled: the disk tier is read from now on");
                        self.cache.store.open_disk();
                    }
                }
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "could not pull the takedown list; retrying")
                }
            }
            // Until the first pull the disk tier is closed: try again soon.
            let wait = if self.cache.store.disk_open() {
                self.config.poll_interval
            } else {
                self.config.poll_interval.min(Duration::from_secs(2))
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
